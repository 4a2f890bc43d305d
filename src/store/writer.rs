//! The single writer: one thread owns the read-write SQLite connection and applies jobs in
//! batches, one transaction per batch (group commit: one fsync for many requests). Each job runs
//! in its own savepoint, so a refused job leaves the others' writes intact. After the commit the
//! writer brings the index up to date from `change_log` and answers the jobs that wait for no
//! audit line; it hands the batch's audit lines to the audit thread
//! ([`AuditWriter`](super::audit_writer::AuditWriter)), which answers the jobs whose answer
//! depends on a line once it is durable, while the writer goes on with the next batch. A caller
//! never sees success for a write that is not durable, nor an index behind it, nor an answer
//! whose audit line is not on disk; and a write's line is written only once the write is
//! committed.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use super::audit_writer::{AuditWriter, Done};
use super::batch;
use super::error::StoreError;
use super::index::{ChangeCursor, Changed, Followed, Index};
use super::seal::Sealer;
use crate::clock::SharedClock;
use crate::time::UnixTime;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// `change_log` rows older than this are pruned.
const CHANGE_LOG_RETENTION_SECS: i64 = 24 * 3600;
/// Idle polls between two prunings of `change_log`.
const POLLS_PER_PRUNE: u32 = 600;

/// Called once the job's fate is known: `Ok` when its writes are committed (and its audit line,
/// if it has one, is durable).
pub(crate) type Completion = Done;
/// A write: runs inside a savepoint; says how it went and how to answer.
pub(crate) type WriteFn = Box<dyn FnOnce(&mut WriteCtx<'_>) -> Ran + Send>;

/// What a write job did inside its savepoint.
pub(crate) struct Ran {
    /// The write succeeded; its savepoint is kept.
    pub(crate) ok: bool,
    /// The audit line the answer depends on, when `ok`.
    pub(crate) audit: Option<RequiredLine>,
    /// How to answer.
    pub(crate) complete: Completion,
}

/// An audit line that a caller's answer depends on.
pub(crate) struct RequiredLine {
    /// The line recording what the caller is about to answer (credentials issued, say).
    pub(crate) line: String,
    /// Makes the line held instead when `line` cannot be made durable and the caller is
    /// refused: built only then, since the log almost always takes the line.
    pub(crate) if_refused: Box<dyn FnOnce() -> String + Send>,
}

impl RequiredLine {
    /// `line`, with what to record instead if it cannot be made durable.
    pub(crate) fn new(line: String, if_refused: impl FnOnce() -> String + Send + 'static) -> Self {
        Self {
            line,
            if_refused: Box::new(if_refused),
        }
    }
}

impl std::fmt::Debug for RequiredLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequiredLine")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// Work for the writer thread: a write.
pub(crate) type Job = WriteFn;

/// What a write job sees.
pub(crate) struct WriteCtx<'a> {
    conn: &'a Connection,
    /// Seals secrets for storage.
    pub(crate) sealer: &'a Sealer,
    /// The account every identity belongs to.
    pub(crate) account_id: &'a str,
    /// The time of this batch.
    pub(crate) now: UnixTime,
}

impl<'a> WriteCtx<'a> {
    /// A context outside the writer thread, for the first-start transaction.
    pub(crate) fn new_for_bootstrap(
        conn: &'a Connection,
        sealer: &'a Sealer,
        account_id: &'a str,
        now: UnixTime,
    ) -> Self {
        Self {
            conn,
            sealer,
            account_id,
            now,
        }
    }

    /// The connection, inside this job's savepoint.
    pub(crate) fn conn(&self) -> &Connection {
        self.conn
    }

    /// Records that a row changed, so every broker process refreshes its index entry.
    pub(crate) fn touch(&mut self, changed: &Changed) -> Result<(), StoreError> {
        let (kind, key) = changed.as_db();
        self.conn
            .prepare_cached("INSERT INTO change_log(kind, key, created_at) VALUES (?1, ?2, ?3)")?
            .execute(rusqlite::params![kind, key, self.now.secs()])?;
        Ok(())
    }
}

/// The writer's state.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) account_id: String,
    pub(crate) clock: SharedClock,
    /// The index this process serves from, when it keeps one.
    pub(crate) index: Option<(Arc<Index>, ChangeCursor)>,
    /// Where committed writes' audit lines go.
    pub(crate) audit: Arc<AuditWriter>,
    pub(crate) poll: Duration,
}

impl Writer {
    /// Serves jobs until every sender is gone.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        // Room for every statement the jobs cache (rusqlite keeps 16 by default), so that
        // none is parsed again because another pushed it out.
        self.conn.set_prepared_statement_cache_capacity(128);
        let mut last_idle = Instant::now();
        let mut polls_since_prune = 0;
        loop {
            // Under constant load the queue is never empty; look for other processes' changes
            // at least once per poll interval anyway.
            if last_idle.elapsed() >= self.poll {
                self.follow_or_log();
                polls_since_prune += 1;
                if polls_since_prune >= POLLS_PER_PRUNE {
                    polls_since_prune = 0;
                    if let Err(e) = self.prune_change_log() {
                        tracing::warn!(error = %e, "pruning change_log failed");
                    }
                }
                last_idle = Instant::now();
            }
            let first = match jobs.recv_timeout(self.poll) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.run_batch(batch::take(first, &jobs, MAX_BATCH));
        }
    }

    /// Brings the index up to date with `change_log`, loading it afresh when changes it had
    /// not seen were pruned.
    fn follow_or_log(&mut self) {
        let Some((index, cursor)) = &mut self.index else {
            return;
        };
        match index.follow(&self.conn, &self.sealer, cursor) {
            Ok(Followed::Applied) => {}
            Ok(Followed::Gap) => {
                match Index::load(&mut self.conn, &self.sealer, &self.account_id) {
                    Ok((fresh, at)) => {
                        index.replace_with(fresh);
                        *cursor = at;
                    }
                    Err(e) => tracing::error!(error = %e, "reloading the index failed"),
                }
            }
            Err(e) => tracing::error!(error = %e, "refreshing the index from change_log failed"),
        }
    }

    /// Deletes old `change_log` rows and records how far, so that a follower that had not
    /// seen them reloads instead of missing them.
    fn prune_change_log(&mut self) -> Result<(), StoreError> {
        let cutoff = self.clock.now().minus_secs(CHANGE_LOG_RETENTION_SECS);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let through: Option<i64> = tx
            .query_row(
                "SELECT MAX(seq) FROM change_log WHERE created_at < ?1",
                [cutoff.secs()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        if let Some(through) = through {
            tx.execute("DELETE FROM change_log WHERE seq <= ?1", [through])?;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('change_log_pruned_through', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [through],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn run_batch(&mut self, writes: Vec<Job>) {
        let mut completions: Vec<(Completion, Option<RequiredLine>)> = Vec::new();
        let committed = self.commit_writes(writes, &mut completions);
        if committed.is_ok() && !completions.is_empty() {
            self.follow_or_log();
        }
        // A write without an audit line is durable and indexed now: answer it at once. The
        // lines of the others go to the audit thread, which answers each once its line is
        // durable; the writer goes on with the next batch meanwhile. A write's line is due
        // only once the write is committed.
        let mut lines = Vec::new();
        for (complete, line) in completions {
            match (&committed, line) {
                (Ok(()), Some(line)) => lines.push((line, complete)),
                (Ok(()), None) => complete(Ok(())),
                (Err(e), _) => complete(Err(StoreError::Corrupt(format!("commit failed: {e}")))),
            }
        }
        if !lines.is_empty() {
            self.audit.send_many(lines);
        }
    }

    fn commit_writes(
        &mut self,
        writes: Vec<WriteFn>,
        completions: &mut Vec<(Completion, Option<RequiredLine>)>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        // A job that never runs drops its reply channel; its caller then sees `Closed`.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Each job in a savepoint of its own, opened and closed through cached statements:
        // rusqlite's `Savepoint` would parse its SQL afresh for every job.
        for run in writes {
            tx.prepare_cached("SAVEPOINT job")?.execute([])?;
            let mut ctx = WriteCtx {
                conn: &tx,
                sealer: &self.sealer,
                account_id: &self.account_id,
                now,
            };
            let ran = run(&mut ctx);
            if !ran.ok {
                // A refused job leaves nothing behind.
                tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
            }
            tx.prepare_cached("RELEASE job")?.execute([])?;
            completions.push((ran.complete, ran.audit.filter(|_| ran.ok)));
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;

    /// A writer on an in-memory database with one table `t(n)`, auditing to `target`.
    fn writer(target: crate::audit::AuditTarget) -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(n INTEGER)").unwrap();
        let audit = AuditWriter::start(
            AuditLog::open(&target).unwrap(),
            Arc::new(crate::clock::SystemClock),
            "123456789012".into(),
            Duration::from_secs(1),
        )
        .unwrap();
        Writer {
            conn,
            sealer: Arc::new(Sealer::new(&[7; 32]).unwrap()),
            account_id: "123456789012".into(),
            clock: Arc::new(crate::clock::SystemClock),
            index: None,
            audit: Arc::new(audit),
            poll: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_refused_job_leaves_nothing_and_the_others_are_committed() {
        let mut writer = writer(crate::audit::AuditTarget::Off);
        let job = |n: i64, ok: bool| -> WriteFn {
            Box::new(move |ctx: &mut WriteCtx<'_>| {
                ctx.conn()
                    .execute("INSERT INTO t(n) VALUES (?1)", [n])
                    .unwrap();
                Ran {
                    ok,
                    audit: None,
                    complete: Box::new(|_| {}),
                }
            })
        };
        let mut completions = Vec::new();
        writer
            .commit_writes(
                vec![job(1, true), job(2, false), job(3, true), job(4, false)],
                &mut completions,
            )
            .unwrap();
        let kept: Vec<i64> = writer
            .conn
            .prepare("SELECT n FROM t ORDER BY n")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [1, 3]);
        assert_eq!(completions.len(), 4);
    }

    #[test]
    fn a_write_without_a_line_is_answered_before_the_batch_audit_append() {
        let dir =
            std::env::temp_dir().join(format!("sts-writer-early-{}", crate::ids::request_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.log");
        let mut writer = writer(crate::audit::AuditTarget::File(log.clone()));
        // What the audit log held when each job was answered, in the order of the answers.
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(&str, String)>::new()));
        let job = |name: &'static str, line: Option<&str>| -> Job {
            let seen = Arc::clone(&seen);
            let log = log.clone();
            let line =
                line.map(|l| RequiredLine::new(l.to_owned(), || "{\"refused\":true}".into()));
            Box::new(move |ctx: &mut WriteCtx<'_>| {
                ctx.conn()
                    .execute("INSERT INTO t(n) VALUES (1)", [])
                    .unwrap();
                Ran {
                    ok: true,
                    audit: line,
                    complete: Box::new(move |r| {
                        assert!(r.is_ok());
                        let held = std::fs::read_to_string(&log).unwrap_or_default();
                        seen.lock().unwrap().push((name, held));
                    }),
                }
            })
        };
        writer.run_batch(vec![
            job("issued", Some("{\"issued\":1}")),
            job("counted", None),
        ]);
        // The audit thread answers the job with a line: stop it once it has written.
        writer.audit.close();
        let seen = seen.lock().unwrap();
        let names: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
        // The attempt-like job did not wait for the other job's audit line...
        assert_eq!(names, ["counted", "issued"]);
        assert!(!seen[0].1.contains("issued"));
        // ...and the job with a line was answered only once its line was on disk.
        assert!(seen[1].1.contains("{\"issued\":1}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
