//! The single writer: one thread owns the read-write SQLite connection and applies jobs in
//! batches, one transaction per batch (group commit: one fsync for many requests). Each job runs
//! in its own savepoint, so a refused job leaves the others' writes intact. After the commit the
//! writer brings the index up to date from `change_log`, appends the batch's audit lines, and
//! only then answers the jobs: a caller never sees success for a write that is not durable, nor
//! an index behind it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use super::error::StoreError;
use super::index::{ChangeCursor, Changed, Followed, Index};
use super::seal::Sealer;
use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::time::UnixTime;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// `change_log` rows older than this are pruned.
const CHANGE_LOG_RETENTION_SECS: i64 = 24 * 3600;
/// Idle polls between two prunings of `change_log`.
const POLLS_PER_PRUNE: u32 = 600;

/// Called once the job's fate is known: `Ok` when its writes are committed.
pub(crate) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside a savepoint; says whether it succeeded and how to answer.
pub(crate) type WriteFn = Box<dyn FnOnce(&mut WriteCtx<'_>) -> (bool, Completion) + Send>;

/// Work for the writer thread.
pub(crate) enum Job {
    /// Run a write; append `audit_on_success` only if it succeeded and was committed.
    Write {
        /// The write.
        run: WriteFn,
        /// Audit line written after the commit when the write succeeded.
        audit_on_success: Option<String>,
    },
    /// Append an audit line; `done` is answered once it is flushed.
    Audit {
        /// One JSON line, without the newline.
        line: String,
        /// Answered after the flush.
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
}

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
    pub(crate) audit: AuditLog,
    pub(crate) poll: Duration,
}

impl Writer {
    /// Serves jobs until every sender is gone.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
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
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
        if let Err(e) = self.audit.flush() {
            tracing::error!(error = %e, "flushing the audit log failed");
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

    fn run_batch(&mut self, batch: Vec<Job>) {
        let mut completions: Vec<(bool, Completion, Option<String>)> = Vec::new();
        let mut audit_lines: Vec<String> = Vec::new();
        let mut waiters = Vec::new();
        let mut writes = Vec::new();
        for job in batch {
            match job {
                Job::Write {
                    run,
                    audit_on_success,
                } => writes.push((run, audit_on_success)),
                Job::Audit { line, done } => {
                    audit_lines.push(line);
                    waiters.extend(done);
                }
            }
        }
        let committed = if writes.is_empty() {
            Ok(())
        } else {
            self.commit_writes(writes, &mut completions)
        };
        if committed.is_ok() && !completions.is_empty() {
            self.follow_or_log();
        }
        for (ok, _, line) in &mut completions {
            if *ok && committed.is_ok() {
                audit_lines.extend(line.take());
            }
        }
        if let Err(e) = self.audit.append(&audit_lines) {
            tracing::error!(error = %e, "writing the audit log failed");
        }
        for (_, complete, _) in completions {
            complete(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
            });
        }
        for done in waiters {
            let _ = done.send(());
        }
    }

    fn commit_writes(
        &mut self,
        writes: Vec<(WriteFn, Option<String>)>,
        completions: &mut Vec<(bool, Completion, Option<String>)>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        // A job that never runs drops its reply channel; its caller then sees `Closed`.
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (run, audit) in writes {
            let sp = tx.savepoint()?;
            let mut ctx = WriteCtx {
                conn: &sp,
                sealer: &self.sealer,
                account_id: &self.account_id,
                now,
            };
            let (ok, complete) = run(&mut ctx);
            if ok {
                sp.commit()?;
            } else {
                // Dropping a savepoint rolls it back: a refused job leaves nothing behind.
                drop(sp);
            }
            completions.push((ok, complete, audit));
        }
        tx.commit()?;
        Ok(())
    }
}
