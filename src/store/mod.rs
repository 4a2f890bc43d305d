//! The identity store: accounts, users, access keys, MFA devices and server keys in an embedded
//! SQLite database (WAL, FULL sync), secrets sealed with the master key.
//!
//! Two ways in, so that nothing reads through a write path and a reader can never write:
//! - [`Store`]: the read-write store of a broker or an admin command. Every write goes through
//!   the single [`writer`] thread (group commit), and audit lines through the
//!   [`audit_writer`] thread; reads that the in-memory [`Index`] does not
//!   answer (listings) run on read-only connections, outside the writer's transaction.
//! - [`ReadOnlyStore`]: a read-only follower (a gateway, an embedding service). It opens the
//!   database read-only, never creates anything, loads the index and the server keys, and
//!   follows `change_log` by polling.
//!
//! The MFA failure lock-out lives here too ([`attempts`]), written by the same writer.
//!
//! Several nodes share a PostgreSQL store instead ([`pg`], `docs/multinode.md`); the API, the
//! admin commands and the gate reach either through [`IdentityStore`] ([`backend`]).

pub(crate) mod attempts;
pub(crate) mod audit_writer;
pub(crate) mod backend;
mod batch;
mod error;
mod index;
mod open;
pub(crate) mod ops;
pub(crate) mod pg;
pub(crate) mod queries;
mod rows;
mod schema;
mod seal;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

pub(crate) use attempts::StoreLimiter;
pub(crate) use backend::IdentityStore;
pub use error::StoreError;
pub(crate) use index::Index;
pub(crate) use open::ServerKey;
pub use open::{Bootstrap, ROOT_CREDENTIALS_FILE};

use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::time::UnixTime;
use audit_writer::AuditWriter;
use index::Followed;
use open::AccountMeta;
use seal::Sealer;
pub(crate) use writer::RequiredLine;
use writer::{Job, Ran, WriteCtx, Writer};

/// Idle read-only connections kept for listings.
const IDLE_READERS: usize = 4;

/// How to open the read-write store.
pub(crate) struct StoreOptions {
    /// Load the in-memory index and keep it current (a broker); admin commands only write.
    pub load_index: bool,
    /// Where the writer appends audit lines.
    pub audit: AuditLog,
    /// How often to look for other processes' changes.
    pub poll: Duration,
    /// The clock of write batches (and of the first start).
    pub clock: SharedClock,
}

/// The read-write identity store.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    meta: AccountMeta,
    data_dir: PathBuf,
    sealer: Arc<Sealer>,
    index: Option<Arc<Index>>,
    server_keys: Vec<ServerKey>,
    readers: Mutex<Vec<Connection>>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    audit: Arc<AuditWriter>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("account_id", &self.inner.meta.account_id)
            .field("index", &self.inner.index)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating on first use) the store in `data_dir`. On the first start it creates the
    /// account, its root access key (written once to `root-credentials.csv`, mode 0600) and the
    /// first server key.
    pub(crate) fn open(
        data_dir: &Path,
        options: StoreOptions,
    ) -> Result<(Self, Option<Bootstrap>), StoreError> {
        let opened = open::read_write(data_dir, options.clock.now())?;
        let sealer = Arc::new(opened.sealer);
        let mut conn = opened.conn;
        let server_keys = open::server_keys(&conn, &sealer)?;
        let index = if options.load_index {
            let (index, cursor) = Index::load(&mut conn, &sealer, &opened.meta.account_id)?;
            Some((Arc::new(index), cursor))
        } else {
            None
        };
        let served = index.as_ref().map(|(i, _)| Arc::clone(i));
        let audit = Arc::new(AuditWriter::start(
            options.audit,
            Arc::clone(&options.clock),
            opened.meta.account_id.clone(),
            options.poll,
        )?);
        let writer = Writer {
            conn,
            sealer: Arc::clone(&sealer),
            account_id: opened.meta.account_id.clone(),
            clock: options.clock,
            index,
            audit: Arc::clone(&audit),
            poll: options.poll,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("sts-broker-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::DataDir(format!("cannot start the writer thread: {e}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                meta: opened.meta,
                data_dir: data_dir.to_owned(),
                sealer,
                index: served,
                server_keys,
                readers: Mutex::new(Vec::new()),
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                audit,
            }),
        };
        Ok((store, opened.bootstrap))
    }

    /// Creates `data_dir` (mode 0700) if it does not exist, before anything is put in it
    /// (an audit log opened before the store, say).
    pub(crate) fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
        open::create_private_dir(data_dir)
    }

    /// The 12-digit account id.
    pub(crate) fn account_id(&self) -> &str {
        &self.inner.meta.account_id
    }

    /// When the account (and its root user) was created.
    pub(crate) fn account_created_at(&self) -> UnixTime {
        self.inner.meta.created_at
    }

    /// The in-memory index (present when opened with `load_index`).
    pub(crate) fn index(&self) -> Option<&Arc<Index>> {
        self.inner.index.as_ref()
    }

    /// Session-credential keys, newest first.
    pub(crate) fn server_keys(&self) -> &[ServerKey] {
        &self.inner.server_keys
    }

    /// Runs `read` on a read-only connection, off the async runtime's threads and outside the
    /// writer's transaction; it sees every write committed before it started.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &Sealer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let idle = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match idle {
                Some(conn) => conn,
                None => open::read_only_connection(&inner.data_dir)?,
            };
            let result = read(&conn, &inner.sealer);
            if let Ok(mut readers) = inner.readers.lock()
                && readers.len() < IDLE_READERS
            {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// [`Store::read`] for synchronous callers (tests).
    #[cfg(test)]
    pub(crate) fn read_blocking<T>(
        &self,
        read: impl FnOnce(&Connection, &Sealer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = open::read_only_connection(&self.inner.data_dir)?;
        read(&conn, &self.inner.sealer)
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.inner.jobs.lock().map_err(|_| StoreError::Closed)?;
        guard
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// A write job whose outcome (after the commit) goes to `reply`; `audit` chooses, from the
    /// operation's result, the audit line its answer depends on.
    fn job<T: Send + 'static>(
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
        audit: impl FnOnce(&T) -> Option<RequiredLine> + Send + 'static,
        reply: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Job {
        Box::new(move |ctx: &mut WriteCtx<'_>| {
            let result = op(ctx);
            let line = result.as_ref().ok().and_then(audit);
            Ran {
                ok: result.is_ok(),
                audit: line,
                complete: Box::new(move |committed| reply(committed.and(result))),
            }
        })
    }

    /// Runs `op` in the next group commit; returns once its writes are durable and indexed.
    /// When `op` succeeds and `audit_on_success` is given, that line is durable in the audit log
    /// before the answer, or the answer is [`StoreError::AuditUnavailable`] (the write stays
    /// committed; the line's `if_refused` is recorded instead).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        audit_on_success: Option<RequiredLine>,
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_audited(op, move |_| audit_on_success).await
    }

    /// [`Store::write`] whose audit line depends on what `op` returned (none: no line).
    pub(crate) async fn write_audited<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
        audit: impl FnOnce(&T) -> Option<RequiredLine> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Self::job(op, audit, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for synchronous callers (the admin commands). It waits on a plain
    /// channel, not a Tokio one, so it may also be called from inside an async runtime (an
    /// embedding console, a test) without panicking; it then blocks that thread until the commit.
    pub(crate) fn write_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Self::job(
            op,
            |_| None,
            move |r| {
                let _ = tx.send(r);
            },
        ))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Appends an audit line without waiting. If the audit log cannot take it, the audit
    /// thread holds it and writes it once the log works again.
    pub(crate) fn audit(&self, line: String) {
        self.inner.audit.send(line);
    }

    /// Appends an audit line and waits until it is durable; if it cannot be,
    /// [`StoreError::AuditUnavailable`], and the line's `if_refused` is recorded instead.
    pub(crate) async fn audit_and_wait(&self, line: RequiredLine) -> Result<(), StoreError> {
        self.inner.audit.send_and_wait(line).await
    }

    /// Stops the writer after the queued jobs and waits for it.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        // After the writer: it hands the last batch's lines over before it ends.
        self.inner.audit.close();
    }
}

/// A read-only follower of a data dir: the identities and server keys, kept current by polling
/// `change_log`. It opens the database read-only and creates nothing, not even a master key.
pub(crate) struct ReadOnlyStore {
    meta: AccountMeta,
    index: Arc<Index>,
    server_keys: Vec<ServerKey>,
    stop: Mutex<Option<Sender<()>>>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore")
            .field("account_id", &self.meta.account_id)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyStore {
    /// Opens the existing store in `data_dir` read-only and follows its changes every `poll`.
    pub(crate) fn open(data_dir: &Path, poll: Duration) -> Result<Self, StoreError> {
        let opened = open::read_only(data_dir)?;
        let mut conn = opened.conn;
        let server_keys = open::server_keys(&conn, &opened.sealer)?;
        let (index, cursor) = Index::load(&mut conn, &opened.sealer, &opened.meta.account_id)?;
        let index = Arc::new(index);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let followed = Arc::clone(&index);
        let sealer = opened.sealer;
        let account_id = opened.meta.account_id.clone();
        let follower = std::thread::Builder::new()
            .name("sts-broker-follower".into())
            .spawn(move || {
                let mut cursor = cursor;
                // Stops when the store is closed (a message, or the sender dropped).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(poll) {
                    match followed.follow(&conn, &sealer, &mut cursor) {
                        Ok(Followed::Applied) => {}
                        Ok(Followed::Gap) => match Index::load(&mut conn, &sealer, &account_id) {
                            Ok((fresh, at)) => {
                                followed.replace_with(fresh);
                                cursor = at;
                            }
                            Err(e) => tracing::error!(error = %e, "reloading the index failed"),
                        },
                        Err(e) => tracing::error!(error = %e, "following change_log failed"),
                    }
                }
            })
            .map_err(|e| StoreError::DataDir(format!("cannot start the follower thread: {e}")))?;
        Ok(Self {
            meta: opened.meta,
            index,
            server_keys,
            stop: Mutex::new(Some(stop)),
            follower: Mutex::new(Some(follower)),
        })
    }

    /// The identities, kept current.
    pub(crate) fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Session-credential keys, newest first.
    pub(crate) fn server_keys(&self) -> &[ServerKey] {
        &self.server_keys
    }

    /// Stops following.
    pub(crate) fn close(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
        let handle = self.follower.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for ReadOnlyStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Owner;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sts-store-{tag}-{}", crate::ids::request_id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn open_rw(dir: &Path) -> Store {
        let (store, bootstrap) = Store::open(
            dir,
            StoreOptions {
                load_index: true,
                audit: AuditLog::open(&crate::audit::AuditTarget::Off).unwrap(),
                poll: Duration::from_millis(20),
                clock: Arc::new(ManualClock::new(1_700_000_000)),
            },
        )
        .unwrap();
        assert!(bootstrap.is_some());
        store
    }

    /// A store whose audit log is `<dir>/audit.log`, a link to `/dev/full` (every write fails
    /// with ENOSPC) until the test removes it.
    #[cfg(target_os = "linux")]
    fn open_with_full_audit_log(dir: &Path) -> Store {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("audit.log");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let (store, _) = Store::open(
            dir,
            StoreOptions {
                load_index: true,
                audit: AuditLog::open(&crate::audit::AuditTarget::File(path)).unwrap(),
                poll: Duration::from_millis(20),
                clock: Arc::new(ManualClock::new(1_700_000_000)),
            },
        )
        .unwrap();
        store
    }

    fn required(name: &str) -> RequiredLine {
        let refused = format!("{{\"{name}\":\"refused\"}}");
        RequiredLine::new(format!("{{\"{name}\":\"issued\"}}"), move || refused)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unwritable_audit_log_refuses_what_needs_its_line_and_holds_the_rest() {
        let dir = scratch("audit-full");
        let store = open_with_full_audit_log(&dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A write that needs its line: committed (it cannot be undone), but refused.
        let refused = runtime.block_on(store.write(Some(required("write")), |w| {
            ops::create_user(w, "carol", "/")
        }));
        assert!(
            matches!(refused, Err(StoreError::AuditUnavailable)),
            "{refused:?}"
        );
        assert!(store.index().unwrap().user_by_name("carol").is_some());
        // A line nobody waits for is taken; one a caller waits for is refused.
        store.audit("{\"free\":1}".to_owned());
        let waited = runtime.block_on(store.audit_and_wait(required("wait")));
        assert!(matches!(waited, Err(StoreError::AuditUnavailable)));
        // A write without a line, and a failed write's line, need nothing.
        store
            .write_blocking(|w| ops::create_user(w, "dave", "/"))
            .unwrap();
        let failed = runtime.block_on(store.write(Some(required("never")), |w| {
            ops::create_user(w, "dave", "/")
        }));
        assert!(matches!(failed, Err(StoreError::UserExists(_))));
        // Room again: the outage, then what was held, in order, then new lines.
        std::fs::remove_file(dir.join("audit.log")).unwrap();
        eventually(|| std::fs::read_to_string(dir.join("audit.log")).is_ok_and(|t| !t.is_empty()));
        runtime
            .block_on(store.audit_and_wait(required("after")))
            .unwrap();
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let outage: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(outage["action"], "AuditLogUnavailable");
        assert_eq!(outage["since"], "2023-11-14T22:13:20Z");
        assert_eq!(outage["held_lines"], 3);
        assert_eq!(outage["dropped_lines"], 0);
        assert_eq!(
            lines[1..],
            [
                "{\"write\":\"refused\"}",
                "{\"free\":1}",
                "{\"wait\":\"refused\"}",
                "{\"after\":\"issued\"}"
            ]
        );
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn eventually(mut probe: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !probe() {
            assert!(std::time::Instant::now() < deadline, "not within 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_read_only_store_creates_nothing() {
        let dir = scratch("ro-empty");
        assert!(matches!(
            ReadOnlyStore::open(&dir, Duration::from_millis(20)),
            Err(StoreError::DataDir(_))
        ));
        assert!(!dir.exists(), "a read-only open created the data dir");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(ReadOnlyStore::open(&dir, Duration::from_millis(20)).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_read_only_store_follows_the_writer() {
        let dir = scratch("ro-follow");
        let store = open_rw(&dir);
        let alice = store
            .write_blocking(|w| ops::create_user(w, "alice", "/"))
            .unwrap();
        let follower = ReadOnlyStore::open(&dir, Duration::from_millis(20)).unwrap();
        assert_eq!(
            follower.index().account_id(),
            store.index().unwrap().account_id()
        );
        assert_eq!(follower.server_keys().len(), store.server_keys().len());
        assert!(follower.index().user_by_name("ALICE").is_some());
        let owner = Owner::User(alice.id.clone());
        let key = store
            .write_blocking(move |w| ops::create_access_key(w, &owner))
            .unwrap();
        eventually(|| follower.index().access_key(&key.id).is_some());
        let owner = Owner::User(alice.id);
        let id = key.id.clone();
        store
            .write_blocking(move |w| ops::update_access_key(w, &owner, &id, false))
            .unwrap();
        eventually(|| {
            follower
                .index()
                .access_key(&key.id)
                .is_some_and(|k| !k.active)
        });
        follower.close();
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_see_committed_writes_without_the_writer() {
        let dir = scratch("read");
        let store = open_rw(&dir);
        for name in ["carol", "alice", "bob"] {
            store
                .write_blocking(move |w| ops::create_user(w, name, "/"))
                .unwrap();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = queries::PageRequest {
            marker: None,
            max_items: 2,
        };
        let page = runtime
            .block_on(store.read(move |conn, _| queries::list_users(conn, "/", &first)))
            .unwrap();
        let names: Vec<_> = page.items.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        let next = queries::PageRequest {
            marker: page.next_marker,
            max_items: 2,
        };
        let page = runtime
            .block_on(store.read(move |conn, _| queries::list_users(conn, "/", &next)))
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_marker, None);
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pruned_change_log_makes_a_follower_reload() {
        let dir = scratch("gap");
        let store = open_rw(&dir);
        let follower = ReadOnlyStore::open(&dir, Duration::from_millis(20)).unwrap();
        // Another writer prunes changes the follower has not seen yet.
        store
            .write_blocking(|w| ops::create_user(w, "dave", "/").map(|_| ()))
            .unwrap();
        store
            .write_blocking(|w| {
                w.conn().execute(
                    "INSERT OR REPLACE INTO meta(key, value)
                     SELECT 'change_log_pruned_through', MAX(seq) FROM change_log",
                    [],
                )?;
                w.conn().execute("DELETE FROM change_log", [])?;
                Ok(())
            })
            .unwrap();
        eventually(|| follower.index().user_by_name("dave").is_some());
        // Reloaded once: the follower is now past the pruned changes and follows new ones.
        store
            .write_blocking(|w| ops::create_user(w, "erin", "/").map(|_| ()))
            .unwrap();
        eventually(|| follower.index().user_by_name("erin").is_some());
        follower.close();
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
