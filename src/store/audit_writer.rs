//! The audit thread of a store: it appends lines in batches (one fsync for many requests) and
//! answers, once a line is durable, whoever waits for it.
//!
//! Both stores use it. With SQLite, the writer thread hands over the lines of a batch once the
//! batch is committed and goes on with the next batch while this thread makes them durable, so
//! a commit's fsync and the audit log's overlap instead of adding up; lines that depend on no
//! write (GetSessionToken without MFA, refusals) come here directly. With PostgreSQL, an
//! issuance is committed there first and then waits for its line here. Either way the
//! credentials are returned only once their line is on disk.
//!
//! When the log cannot be written, a waiting request is refused
//! ([`StoreError::AuditUnavailable`]) and the line recording the refusal is held, as are lines
//! nobody waits for (at most [`MAX_HELD_LINES`], then counted and dropped). Held lines are
//! written as soon as the log works again (by the next batch, or by a retry when nothing
//! arrives), after a line recording the outage (README.md, audit log).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::RequiredLine;
use super::batch;
use super::error::StoreError;
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::SharedClock;
use crate::time::UnixTime;

/// Most jobs appended together.
const MAX_BATCH: usize = 512;
/// Most audit lines held while the audit log cannot be written (a few MB); beyond, lines are
/// counted and dropped, and the count is recorded once the log works again.
pub(crate) const MAX_HELD_LINES: usize = 10_000;

/// Told whether a line is durable (`Ok`) or was refused.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Job {
    /// A line nobody waits for.
    Free(String),
    /// A line someone waits for.
    Required(RequiredLine, Done),
    /// The lines of a committed write batch, in order.
    Many(Vec<(RequiredLine, Done)>),
}

/// A store's audit thread.
pub(crate) struct AuditWriter {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the thread on `log`. The outage record names `account_id` and is dated by
    /// `clock`; held lines are retried every `retry` when nothing else arrives.
    pub(crate) fn start(
        log: AuditLog,
        clock: SharedClock,
        account_id: String,
        retry: Duration,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = Thread {
            log,
            clock,
            account_id,
            held: HeldLines::default(),
        };
        let handle = std::thread::Builder::new()
            .name("sts-broker-audit".into())
            .spawn(move || thread.run(rx, retry))
            .map_err(|e| StoreError::DataDir(format!("cannot start the audit thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(handle)),
        })
    }

    fn send_job(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().map_err(|_| StoreError::Closed)?;
        jobs.as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// Appends a line nobody waits for.
    pub(crate) fn send(&self, line: String) {
        if self.send_job(Job::Free(line)).is_err() {
            tracing::error!("audit line dropped: the audit thread is shut down");
        }
    }

    /// Appends a line and waits until it is durable.
    pub(crate) async fn send_and_wait(&self, line: RequiredLine) -> Result<(), StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let done: Done = Box::new(move |r| {
            let _ = done.send(r);
        });
        self.send_job(Job::Required(line, done))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends committed writes' lines, in order; each `Done` is told once its line is
    /// durable (or refused). If the thread is gone, the `Done`s are dropped unanswered, which
    /// their waiters see as [`StoreError::Closed`].
    pub(crate) fn send_many(&self, lines: Vec<(RequiredLine, Done)>) {
        if self.send_job(Job::Many(lines)).is_err() {
            tracing::error!("audit lines dropped: the audit thread is shut down");
        }
    }

    /// Writes what is queued (and held, if the log works) and stops the thread.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Audit lines that could not be written yet, oldest first.
#[derive(Debug, Default)]
struct HeldLines {
    lines: VecDeque<String>,
    /// Lines lost because [`MAX_HELD_LINES`] were already held.
    dropped: u64,
    /// When the first unwritten line failed.
    since: Option<UnixTime>,
}

impl HeldLines {
    fn hold(&mut self, line: String) {
        if self.lines.len() < MAX_HELD_LINES {
            self.lines.push_back(line);
        } else {
            self.dropped += 1;
        }
    }

    /// Whether the audit log has failed since it last took everything.
    fn failing(&self) -> bool {
        self.since.is_some()
    }
}

/// What the audit thread owns.
struct Thread {
    log: AuditLog,
    clock: SharedClock,
    account_id: String,
    held: HeldLines,
}

impl Thread {
    fn run(mut self, jobs: Receiver<Job>, retry: Duration) {
        loop {
            let first = match jobs.recv_timeout(retry) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if self.held.failing() {
                        // Nothing else to do: see whether the log works again.
                        self.append_batch(Vec::new());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.append_batch(batch::take(first, &jobs, MAX_BATCH));
        }
        if self.held.failing() && self.append(&[]).is_err() {
            tracing::error!(
                lost = self.held.lines.len() as u64 + self.held.dropped,
                "shutting down with audit lines the audit log could not take; they are lost"
            );
        }
    }

    /// Appends the held lines (after a line recording their outage) and then `lines`, and
    /// makes them durable. On failure every line stays unwritten: the caller decides what is
    /// held.
    fn append(&mut self, lines: &[&str]) -> std::io::Result<()> {
        let outage = self.held.since.map(|since| {
            let mut e = AuditEvent::new(
                self.clock.now(),
                "audit-log",
                &self.account_id,
                "AuditLogUnavailable",
                Outcome::Failure,
            );
            e.reason = Some("write_failed");
            e.since = Some(since.iso8601());
            e.held_lines = Some(self.held.lines.len() as u64);
            e.dropped_lines = Some(self.held.dropped);
            e.to_line()
        });
        let all = outage
            .iter()
            .map(String::as_str)
            .chain(self.held.lines.iter().map(String::as_str))
            .chain(lines.iter().copied());
        match self.log.append(all) {
            Ok(()) => {
                if let Some(since) = self.held.since.take() {
                    tracing::warn!(
                        since = %since.iso8601(),
                        written = self.held.lines.len(),
                        dropped = self.held.dropped,
                        "the audit log is writable again; the lines held meanwhile are written"
                    );
                    self.held = HeldLines::default();
                }
                Ok(())
            }
            Err(e) => {
                if self.held.since.is_none() {
                    self.held.since = Some(self.clock.now());
                }
                Err(e)
            }
        }
    }

    /// Appends a batch (after anything held) and answers whoever waits.
    fn append_batch(&mut self, batch: Vec<Job>) {
        let mut free = Vec::new();
        let mut waiting = Vec::new();
        for job in batch {
            match job {
                Job::Free(line) => free.push(line),
                Job::Required(line, done) => waiting.push((line, done)),
                Job::Many(lines) => waiting.extend(lines),
            }
        }
        let lines: Vec<&str> = free
            .iter()
            .map(String::as_str)
            .chain(waiting.iter().map(|(l, _)| l.line.as_str()))
            .collect();
        let was_failing = self.held.failing();
        let dropped_before = self.held.dropped;
        let durable = if lines.is_empty() && !was_failing {
            Ok(())
        } else {
            self.append(&lines)
        };
        match durable {
            Ok(()) => {
                for (_, done) in waiting {
                    done(Ok(()));
                }
            }
            Err(e) => {
                // Reported when the outage starts and whenever it refuses a request; lines
                // nobody waits for are held quietly in between.
                if !was_failing || !waiting.is_empty() {
                    tracing::error!(
                        error = %e,
                        refused = waiting.len(),
                        held = self.held.lines.len() + free.len() + waiting.len(),
                        "writing the audit log failed: requests that need their audit line \
                         are refused, and the lines are held until the log can be written"
                    );
                }
                for line in free {
                    self.held.hold(line);
                }
                for (line, done) in waiting {
                    self.held.hold((line.if_refused)());
                    done(Err(StoreError::AuditUnavailable));
                }
                if self.held.dropped > dropped_before {
                    tracing::error!(
                        dropped = self.held.dropped,
                        "audit lines dropped: more than {MAX_HELD_LINES} held"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_are_bounded_and_count_what_they_drop() {
        let mut held = HeldLines::default();
        for i in 0..MAX_HELD_LINES + 5 {
            held.hold(format!("{{\"n\":{i}}}"));
        }
        assert_eq!(held.lines.len(), MAX_HELD_LINES);
        assert_eq!(held.dropped, 5);
        // The oldest are kept: they are the ones an operator needs to see first.
        assert_eq!(held.lines.front().map(String::as_str), Some("{\"n\":0}"));
    }
}
