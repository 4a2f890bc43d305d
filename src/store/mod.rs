//! The identity store: accounts, users, access keys, MFA devices and server keys in an embedded
//! SQLite database (WAL, FULL sync), secrets sealed with the master key. Reads on the hot path go
//! to the in-memory [`Index`]; every write goes through the single [`writer`] thread.

pub mod error;
pub mod index;
pub mod model;
pub mod ops;
pub mod rows;
pub mod schema;
pub mod seal;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};
use zeroize::Zeroizing;

pub use error::StoreError;
pub use index::Index;

use crate::clock::SharedClock;
use crate::config::AuditTarget;
use crate::ids;
use crate::mfa::replay::{InMemoryReplayGuard, ReplayGuard};
use model::Owner;
use seal::Sealer;
use writer::{Completion, Job, WriteCtx, Writer};

/// Database file name inside the data dir.
pub const DB_FILE: &str = "sts-broker.db";
/// Root credentials file name inside the data dir (`aws configure import --csv` format).
pub const ROOT_CREDENTIALS_FILE: &str = "root-credentials.csv";
/// Sealing context of the value that proves the master key matches the database.
const SEAL_CHECK: &str = "meta:seal_check";

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Load the in-memory index (the broker); admin commands only write.
    pub load_index: bool,
    /// Where audit lines go.
    pub audit: AuditTarget,
    /// How often to look for other processes' changes.
    pub poll: Duration,
}

/// A session-credential key: `kid`, a JWT signing key and a secret-derivation key.
pub struct ServerKey {
    /// Key id, carried in the JWT header.
    pub kid: String,
    /// HS256 key of session tokens.
    pub signing: Zeroizing<[u8; 32]>,
    /// HMAC key that derives session secrets.
    pub derivation: Zeroizing<[u8; 32]>,
    /// Creation time; the newest key signs.
    pub created_at: i64,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What the first start created.
pub struct Bootstrap {
    /// The root access key, written to `root-credentials.csv`.
    pub root_key_id: String,
    /// Where the credentials were written.
    pub credentials_file: PathBuf,
}

/// The identity store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    account_id: String,
    created_at: i64,
    data_dir: PathBuf,
    index: Option<Arc<Index>>,
    replay: Arc<dyn ReplayGuard>,
    server_keys: Vec<ServerKey>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("account_id", &self.inner.account_id)
            .field("index", &self.inner.index)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating on first use) the store in `data_dir`. On the first start it creates the
    /// account, its root access key (written once to `root-credentials.csv`, mode 0600) and the
    /// first server key.
    pub fn open(
        data_dir: &Path,
        clock: SharedClock,
        options: StoreOptions,
    ) -> Result<(Self, Option<Bootstrap>), StoreError> {
        create_private_dir(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        let fresh = !db_path.exists();
        let sealer = Arc::new(Sealer::load(data_dir, fresh)?);
        let mut conn = Connection::open(&db_path)?;
        schema::configure(&conn)?;
        schema::migrate(&conn)?;
        let bootstrap = initialise(&mut conn, &sealer, data_dir, clock.now().secs())?;
        let account_id: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'account_id'", [], |r| {
                r.get(0)
            })?;
        let created_at: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'created_at'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let check: Vec<u8> =
            conn.query_row("SELECT value FROM meta WHERE key = 'seal_check'", [], |r| {
                r.get(0)
            })?;
        sealer.open(SEAL_CHECK, &check).map_err(|_| {
            StoreError::DataDir(format!(
                "the master key does not open {}; use the key this data dir was created with",
                db_path.display()
            ))
        })?;
        let server_keys = load_server_keys(&conn, &sealer)?;
        let replay: Arc<dyn ReplayGuard> = Arc::new(InMemoryReplayGuard::default());
        let index = if options.load_index {
            Some(Arc::new(Index::load(&conn, &sealer, replay.as_ref())?))
        } else {
            None
        };
        let writer = Writer::new(
            conn,
            Arc::clone(&sealer),
            account_id.clone(),
            clock,
            index.clone(),
            Arc::clone(&replay),
            &options.audit,
            options.poll,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("sts-broker-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::DataDir(format!("cannot start the writer thread: {e}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                account_id,
                created_at,
                data_dir: data_dir.to_owned(),
                index,
                replay,
                server_keys,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
            }),
        };
        Ok((store, bootstrap))
    }

    /// The 12-digit account id.
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    /// When the account (and its root user) was created, Unix seconds.
    pub fn account_created_at(&self) -> i64 {
        self.inner.created_at
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The in-memory index (present when opened with `load_index`).
    pub fn index(&self) -> Option<&Index> {
        self.inner.index.as_deref()
    }

    /// The replay guard of TOTP steps.
    pub fn replay(&self) -> &dyn ReplayGuard {
        self.inner.replay.as_ref()
    }

    /// Session-credential keys, newest first.
    pub fn server_keys(&self) -> &[ServerKey] {
        &self.inner.server_keys
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.inner.jobs.lock().map_err(|_| StoreError::Closed)?;
        guard
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// A write job whose outcome (after the commit) goes to `reply`.
    fn job<T: Send + 'static>(
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
        audit_on_success: Option<String>,
        reply: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Job {
        let run = Box::new(move |ctx: &mut WriteCtx<'_>| {
            let result = op(ctx);
            let ok = result.is_ok();
            let complete: Completion = Box::new(move |committed| reply(committed.and(result)));
            (ok, complete)
        });
        Job::Write {
            run,
            audit_on_success,
        }
    }

    /// Runs `op` in the next group commit; returns once its writes are durable and indexed.
    /// `audit_on_success` is appended to the audit log before the answer when `op` succeeds.
    pub async fn write<T: Send + 'static>(
        &self,
        audit_on_success: Option<String>,
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Self::job(op, audit_on_success, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for synchronous callers (the admin commands). It waits on a plain
    /// channel, not a Tokio one, so it may also be called from inside an async runtime (an
    /// embedding console, a test) without panicking; it then blocks that thread until the commit.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Self::job(op, None, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Appends an audit line without waiting.
    pub fn audit(&self, line: String) {
        if self.send(Job::Audit { line, done: None }).is_err() {
            tracing::error!("audit line dropped: the store is shut down");
        }
    }

    /// Appends an audit line and waits until it is written.
    pub async fn audit_and_wait(&self, line: String) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Audit {
            line,
            done: Some(tx),
        })?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Stops the writer after the queued jobs and waits for it.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::DataDir(format!("{}: {e}", dir.display())))
}

/// First start: account id, seal check, root key, server key, and the credentials file, all in
/// one transaction (the file is written before the commit, so a crash leaves nothing half-made).
fn initialise(
    conn: &mut Connection,
    sealer: &Sealer,
    data_dir: &Path,
    now: i64,
) -> Result<Option<Bootstrap>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'account_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if existing.is_some() {
        return Ok(None);
    }
    let account_id = ids::account_id()?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('account_id', ?1)",
        [&account_id],
    )?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('created_at', ?1)",
        [now],
    )?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('seal_check', ?1)",
        [sealer.seal(SEAL_CHECK, b"sts-broker")?],
    )?;
    insert_server_key(&tx, sealer, now)?;
    let mut ctx = WriteCtx::new_for_bootstrap(&tx, sealer, &account_id, now);
    let root = ops::insert_access_key(&mut ctx, &Owner::Root)?;
    let path = data_dir.join(ROOT_CREDENTIALS_FILE);
    let csv = Zeroizing::new(format!(
        "User Name,Access key ID,Secret access key\nroot,{},{}\n",
        root.id,
        root.secret.as_str()
    ));
    let tmp = data_dir.join(format!("{ROOT_CREDENTIALS_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    seal::write_private(&tmp, csv.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| StoreError::DataDir(format!("{}: {e}", path.display())))?;
    tx.commit()?;
    Ok(Some(Bootstrap {
        root_key_id: root.id,
        credentials_file: path,
    }))
}

fn insert_server_key(conn: &Connection, sealer: &Sealer, now: i64) -> Result<(), StoreError> {
    let kid = hex::encode(ids::random_bytes::<8>()?);
    let material = Zeroizing::new(ids::random_bytes::<64>()?);
    let sealed = sealer.seal(&format!("server_key:{kid}"), material.as_slice())?;
    conn.execute(
        "INSERT INTO server_key(kid, sealed, created_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![kid, sealed, now],
    )?;
    Ok(())
}

fn load_server_keys(conn: &Connection, sealer: &Sealer) -> Result<Vec<ServerKey>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT kid, sealed, created_at FROM server_key ORDER BY created_at DESC")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys = Vec::with_capacity(rows.len());
    for (kid, sealed, created_at) in rows {
        let material = sealer.open(&format!("server_key:{kid}"), &sealed)?;
        let (signing, derivation) = material
            .split_first_chunk::<32>()
            .and_then(|(s, rest)| Some((*s, *rest.first_chunk::<32>()?)))
            .ok_or_else(|| StoreError::Corrupt(format!("server key {kid} is too short")))?;
        keys.push(ServerKey {
            kid,
            signing: Zeroizing::new(signing),
            derivation: Zeroizing::new(derivation),
            created_at,
        });
    }
    if keys.is_empty() {
        return Err(StoreError::Corrupt("no server key".into()));
    }
    Ok(keys)
}
