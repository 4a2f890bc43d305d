//! The single writer: one thread owns the read-write SQLite connection and applies jobs in
//! batches, one transaction per batch (group commit: one fsync for many requests). Each job runs
//! in its own savepoint, so a refused job leaves the others' writes intact. After the commit the
//! writer refreshes the index from `change_log`, appends audit lines, and only then answers the
//! jobs: a caller never sees success for a write that is not durable, nor an index behind it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::error::StoreError;
use super::index::{Changed, Index};
use super::seal::Sealer;
use crate::clock::SharedClock;
use crate::config::AuditTarget;
use crate::mfa::replay::ReplayGuard;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// `change_log` rows older than this are pruned.
const CHANGE_LOG_RETENTION_SECS: i64 = 24 * 3600;

/// Called once the job's fate is known: `Ok` when its writes are committed.
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside a savepoint; says whether it succeeded and how to answer.
pub type WriteFn = Box<dyn FnOnce(&mut WriteCtx<'_>) -> (bool, Completion) + Send>;

/// Work for the writer thread.
pub enum Job {
    /// Run a write; append `audit` only if it succeeded and was committed.
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
pub struct WriteCtx<'a> {
    conn: &'a Connection,
    /// Seals secrets for storage.
    pub sealer: &'a Sealer,
    /// The account every identity belongs to.
    pub account_id: &'a str,
    /// The time of this batch, Unix seconds.
    pub now: i64,
}

impl<'a> WriteCtx<'a> {
    /// A context outside the writer thread, for the first-start transaction.
    pub fn new_for_bootstrap(
        conn: &'a Connection,
        sealer: &'a Sealer,
        account_id: &'a str,
        now: i64,
    ) -> Self {
        Self {
            conn,
            sealer,
            account_id,
            now,
        }
    }

    /// The connection, inside this job's savepoint.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// Records that a row changed, so every broker refreshes its index entry.
    pub fn touch(&mut self, changed: &Changed) -> Result<(), StoreError> {
        let (kind, key) = match changed {
            Changed::User(k) => ("user", k),
            Changed::AccessKey(k) => ("access_key", k),
            Changed::Device(k) => ("device", k),
        };
        self.conn.execute(
            "INSERT INTO change_log(kind, key, created_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![kind, key, self.now],
        )?;
        Ok(())
    }
}

/// The writer's state.
pub struct Writer {
    conn: Connection,
    sealer: Arc<Sealer>,
    account_id: String,
    clock: SharedClock,
    index: Option<Arc<Index>>,
    replay: Arc<dyn ReplayGuard>,
    audit: AuditSink,
    last_seen_change: i64,
    poll: Duration,
    polls_since_prune: u32,
}

impl Writer {
    /// A writer over an open, migrated connection.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conn: Connection,
        sealer: Arc<Sealer>,
        account_id: String,
        clock: SharedClock,
        index: Option<Arc<Index>>,
        replay: Arc<dyn ReplayGuard>,
        audit: &AuditTarget,
        poll: Duration,
    ) -> Result<Self, StoreError> {
        let last_seen_change =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM change_log", [], |r| {
                r.get(0)
            })?;
        Ok(Self {
            conn,
            sealer,
            account_id,
            clock,
            index,
            replay,
            audit: AuditSink::open(audit)?,
            last_seen_change,
            poll,
            polls_since_prune: 0,
        })
    }

    /// Serves jobs until every sender is gone.
    pub fn run(mut self, jobs: Receiver<Job>) {
        let mut last_idle = std::time::Instant::now();
        loop {
            // Under constant load the queue is never empty; look for other processes' changes
            // at least once per poll interval anyway.
            if last_idle.elapsed() >= self.poll {
                self.idle();
                last_idle = std::time::Instant::now();
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
        self.audit.flush();
    }

    fn refresh_or_log(&mut self) {
        if let Err(e) = self.apply_changes() {
            tracing::error!(error = %e, "refreshing the index from change_log failed");
        }
    }

    /// Between batches: pick up other processes' changes, prune the change log now and then.
    fn idle(&mut self) {
        self.refresh_or_log();
        self.polls_since_prune += 1;
        if self.polls_since_prune >= 600 {
            self.polls_since_prune = 0;
            let cutoff = self.clock.now().secs() - CHANGE_LOG_RETENTION_SECS;
            if let Err(e) = self
                .conn
                .execute("DELETE FROM change_log WHERE created_at < ?1", [cutoff])
            {
                tracing::warn!(error = %e, "pruning change_log failed");
            }
        }
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
            self.refresh_or_log();
        }
        for (ok, _, line) in &mut completions {
            if *ok && committed.is_ok() {
                audit_lines.extend(line.take());
            }
        }
        self.audit.write_lines(&audit_lines);
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
        let now = self.clock.now().secs();
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

    /// Refreshes the index for every change logged since the last look.
    fn apply_changes(&mut self) -> Result<(), StoreError> {
        let Some(index) = self.index.clone() else {
            return Ok(());
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, kind, key FROM change_log WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([self.last_seen_change], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        let mut seen = HashSet::new();
        for (seq, kind, key) in rows {
            self.last_seen_change = seq;
            let changed = match kind.as_str() {
                "user" => Changed::User(key),
                "access_key" => Changed::AccessKey(key),
                "device" => Changed::Device(key),
                _ => continue,
            };
            if seen.insert(changed.clone()) {
                index.refresh(&self.conn, &self.sealer, self.replay.as_ref(), &changed)?;
            }
        }
        Ok(())
    }
}

/// Where audit lines are appended.
enum AuditSink {
    File(BufWriter<File>),
    Stdout,
    Off,
}

impl AuditSink {
    fn open(target: &AuditTarget) -> Result<Self, StoreError> {
        Ok(match target {
            AuditTarget::File(path) => {
                let mut options = OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(0o600);
                }
                let file = options.open(path).map_err(|e| {
                    StoreError::DataDir(format!("audit log {}: {e}", path.display()))
                })?;
                Self::File(BufWriter::new(file))
            }
            AuditTarget::Stdout => Self::Stdout,
            AuditTarget::Off => Self::Off,
        })
    }

    fn write_lines(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let result = match self {
            Self::File(w) => lines
                .iter()
                .try_for_each(|l| writeln!(w, "{l}"))
                .and_then(|()| w.flush()),
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                lines
                    .iter()
                    .try_for_each(|l| writeln!(out, "{l}"))
                    .and_then(|()| out.flush())
            }
            Self::Off => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "writing the audit log failed");
        }
    }

    fn flush(&mut self) {
        if let Self::File(w) = self {
            let _ = w.flush();
        }
    }
}
