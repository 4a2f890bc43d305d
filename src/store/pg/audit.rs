//! A node's audit log when its store is PostgreSQL: a thread that appends lines in batches
//! (one fsync for many requests) and answers, once a line is durable, the request waiting for
//! it. The SQLite store's writer does the same after its commits; here the commit is
//! PostgreSQL's, so an issuance is committed there first and then waits for its line here,
//! before the credentials are returned.
//!
//! When the log cannot be written, a waiting request is refused
//! ([`StoreError::AuditUnavailable`]) and the line recording the refusal is held, as are lines
//! nobody waits for (at most [`MAX_HELD_LINES`](crate::store::writer::MAX_HELD_LINES), then
//! counted and dropped); held lines are written first once the log works again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::store::RequiredLine;
use crate::store::error::StoreError;
use crate::store::writer::MAX_HELD_LINES;

/// Most lines appended together.
const MAX_BATCH: usize = 512;
/// How often held lines are retried when nothing else arrives.
const RETRY_EVERY: Duration = Duration::from_millis(500);

enum Job {
    Free(String),
    Required {
        line: RequiredLine,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The audit thread of a node.
pub(crate) struct AuditWriter {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AuditWriter {
    /// Starts the thread on `log`.
    pub(crate) fn start(log: AuditLog) -> Result<Self, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sts-broker-audit".into())
            .spawn(move || run(log, rx))
            .map_err(|e| StoreError::DataDir(format!("cannot start the audit thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
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
        self.send_job(Job::Required { line, done })?;
        answer.await.map_err(|_| StoreError::Closed)?
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

#[derive(Default)]
struct Held {
    lines: VecDeque<String>,
    dropped: u64,
}

impl Held {
    fn hold(&mut self, line: String) {
        if self.lines.len() < MAX_HELD_LINES {
            self.lines.push_back(line);
        } else {
            self.dropped += 1;
        }
    }
}

fn run(mut log: AuditLog, jobs: Receiver<Job>) {
    let mut held = Held::default();
    loop {
        let first = match jobs.recv_timeout(RETRY_EVERY) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if !held.lines.is_empty() {
                    append(&mut log, &mut held, Vec::new());
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        append(&mut log, &mut held, batch);
    }
    if !held.lines.is_empty() {
        append(&mut log, &mut held, Vec::new());
        if !held.lines.is_empty() {
            tracing::error!(
                lost = held.lines.len() as u64 + held.dropped,
                "shutting down with audit lines the audit log could not take; they are lost"
            );
        }
    }
}

/// Appends the held lines, then the batch's; answers the waiting requests.
fn append(log: &mut AuditLog, held: &mut Held, batch: Vec<Job>) {
    let mut free = Vec::new();
    let mut waiting = Vec::new();
    for job in batch {
        match job {
            Job::Free(line) => free.push(line),
            Job::Required { line, done } => waiting.push((line, done)),
        }
    }
    let lines = held
        .lines
        .iter()
        .map(String::as_str)
        .chain(free.iter().map(String::as_str))
        .chain(waiting.iter().map(|(l, _)| l.line.as_str()));
    match log.append(lines) {
        Ok(()) => {
            if !held.lines.is_empty() || held.dropped > 0 {
                tracing::warn!(
                    written = held.lines.len(),
                    dropped = held.dropped,
                    "the audit log is writable again; the lines held meanwhile are written"
                );
            }
            *held = Held::default();
            for (_, done) in waiting {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) => {
            let was_failing = !held.lines.is_empty();
            if !was_failing || !waiting.is_empty() {
                tracing::error!(
                    error = %e,
                    refused = waiting.len(),
                    "writing the audit log failed: requests that need their audit line are \
                     refused, and the lines are held until the log can be written"
                );
            }
            for line in free {
                held.hold(line);
            }
            for (line, done) in waiting {
                held.hold(line.if_refused);
                let _ = done.send(Err(StoreError::AuditUnavailable));
            }
        }
    }
}
