//! The identity store on PostgreSQL, shared by several broker nodes (`docs/multinode.md`): the
//! same model and guarantees as the SQLite store (sealed secrets, one master key for every
//! node, server keys stored once, the conditional update that accepts a TOTP step at most once),
//! with PostgreSQL's transactions instead of the single writer thread.
//!
//! - Every operation is one transaction from a connection pool, under a timeout
//!   ([`PgStore::write`], [`PgStore::read`]); a timeout or a connection failure is
//!   [`StoreError::Unavailable`], which the API answers 503. Nothing falls back to memory.
//! - Quotas hold across nodes: an operation that counts before it inserts first takes a
//!   transaction-scoped advisory lock on what it counts (the owner, the account's virtual
//!   devices), so two nodes cannot both pass the same count.
//! - Every identity change is logged in `change_log` under a second advisory lock held until
//!   the commit, so that `seq` order is commit order, and announced with `NOTIFY`; each node's
//!   [`follow::Follower`] applies the log to its in-memory [`Index`].
//! - Audit lines go to the node's own audit log through [`AuditWriter`], durable before
//!   an issuance is answered, as with SQLite.

pub(crate) mod copy;
pub(crate) mod follow;
pub(crate) mod ops;
pub(crate) mod queries;
mod rows;
mod schema;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use zeroize::Zeroizing;

use super::audit_writer::AuditWriter;
use super::error::StoreError;
use super::index::{Changed, Index};
use super::open::{SEAL_CHECK, ServerKey, unseal_server_keys};
use super::seal::{self, Sealer};
use super::{Bootstrap, ROOT_CREDENTIALS_FILE};
use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::config::BackendUrl;
use crate::ids;
use crate::model::Owner;
use crate::time::UnixTime;
use follow::Follower;

/// How often lines held while the audit log failed are retried when nothing else arrives.
const AUDIT_RETRY: Duration = Duration::from_millis(500);
/// Connections each node keeps to PostgreSQL at most.
const POOL_SIZE: usize = 16;
/// The channel `NOTIFY` announces identity changes on.
pub(crate) const CHANGES_CHANNEL: &str = "sts_broker_changes";
/// Advisory lock keys (`pg_advisory_xact_lock`): the change log's order, the first start, and
/// the schema's migrations. Arbitrary constants, fixed forever: every node must use the same.
const CHANGE_LOG_LOCK: i64 = 0x5354_5342_0001;
const BOOTSTRAP_LOCK: i64 = 0x5354_5342_0002;
pub(crate) const MIGRATE_LOCK: i64 = 0x5354_5342_0003;

/// Maps a PostgreSQL or connection failure: nothing was decided.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}: {}", db.code().code(), db.message()),
        None => format!("PostgreSQL: {e}"),
    })
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL connection pool: {e}"))
}

fn timed_out(what: &str, limit: Duration) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL did not answer {what} within {limit:?}"))
}

/// The TLS connector: rustls with the system's roots (plus `SSL_CERT_FILE`, for a private CA),
/// used when the URL's `sslmode` asks for TLS (`prefer`, the default, uses it when the server
/// offers it).
pub(crate) fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store cannot use is skipped, as a browser would.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::DataDir(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Parses the store URL (its password never goes into an error).
pub(crate) fn pg_config(url: &BackendUrl) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url.expose().parse().map_err(|_| {
        StoreError::DataDir(format!(
            "store_url {url} is not a PostgreSQL connection URL (postgres://USER[:PASSWORD]@HOST:PORT/DB)"
        ))
    })?;
    // The idempotent migrations (`CREATE … IF NOT EXISTS`) make the server send a NOTICE at
    // every start, which the driver logs; warnings and errors still come through. An operator's
    // own `options` in the URL win.
    if config.get_options().is_none() {
        config.options("-c client_min_messages=warning");
    }
    Ok(config)
}

/// One connection outside the pool (start-up work, the change listener); its driver runs on
/// the current runtime until the client is dropped or the connection fails.
pub(crate) async fn connect_one(
    config: &tokio_postgres::Config,
    limit: Duration,
) -> Result<tokio_postgres::Client, StoreError> {
    let connecting = config.connect(tls()?);
    let (client, connection) = tokio::time::timeout(limit, connecting)
        .await
        .map_err(|_| timed_out("a connection", limit))?
        .map_err(pg_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// How to open the PostgreSQL store.
pub(crate) struct PgOptions<'a> {
    /// Where the master key file, the root credentials file and the audit log live.
    pub data_dir: &'a Path,
    /// The store.
    pub url: &'a BackendUrl,
    /// Each call's time limit.
    pub timeout: Duration,
    /// Follow the change log into an in-memory index (a broker or a gate); admin commands
    /// only write.
    pub load_index: bool,
    /// Create the account when the store has none (a broker, an admin command; not a gate).
    pub bootstrap: bool,
    /// Where audit lines go (`None`: a gate, which writes none here).
    pub audit: Option<AuditLog>,
    /// The clock of writes.
    pub clock: SharedClock,
}

/// The account a store holds.
#[derive(Clone, Debug)]
struct Account {
    id: String,
    created_at: UnixTime,
}

/// The PostgreSQL identity store of one node.
#[derive(Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sealer: Arc<Sealer>,
    account: Account,
    server_keys: Vec<ServerKey>,
    timeout: Duration,
    clock: SharedClock,
    follower: Option<Follower>,
    audit: Option<AuditWriter>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The follower's task holds no reference to the store: it is told to stop.
        if let Some(f) = &self.follower {
            f.stop();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("account_id", &self.inner.account.id)
            .finish_non_exhaustive()
    }
}

/// Runs `work` on a runtime of its own, on a thread of its own: the synchronous open paths
/// (the builder's `open`, admin commands) may be called from inside an async runtime, which
/// must not be blocked on itself.
pub(crate) fn run_apart<T: Send>(
    work: impl Future<Output = Result<T, StoreError>> + Send,
) -> Result<T, StoreError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::DataDir(format!("cannot start a runtime: {e}")))?
                    .block_on(work)
            })
            .join()
            .map_err(|_| StoreError::Closed)?
    })
}

impl PgStore {
    /// Applies the migrations and, with `bootstrap`, creates the account on the first start;
    /// then loads the server keys and, with `load_index`, the index, whose follower runs on
    /// the current Tokio runtime (the one that will serve). Blocks the calling thread.
    pub(crate) fn open(options: PgOptions<'_>) -> Result<(Self, Option<Bootstrap>), StoreError> {
        let config = pg_config(options.url)?;
        let timeout = options.timeout;
        let data_dir = options.data_dir.to_owned();
        let now = options.clock.now();
        let load_index = options.load_index;
        let bootstrap_allowed = options.bootstrap;
        let runtime = if load_index {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::DataDir("the PostgreSQL store is opened inside a Tokio runtime".into())
            })?)
        } else {
            None
        };
        let startup = Duration::from_secs(10).max(timeout);
        let cfg = config.clone();
        let (sealer, account, server_keys, bootstrap, loaded) = run_apart(async move {
            let mut client = connect_one(&cfg, startup).await?;
            schema::migrate(&mut client).await?;
            let fresh = account(&client).await?.is_none();
            let sealer = Sealer::load(&data_dir, fresh && bootstrap_allowed)?;
            let bootstrap = if fresh && bootstrap_allowed {
                initialise(&mut client, &sealer, &data_dir, now).await?
            } else {
                None
            };
            let account = account(&client).await?.ok_or_else(|| {
                StoreError::DataDir(
                    "the PostgreSQL store holds no account yet: start a broker on it, or copy a \
                     SQLite store into it with `sts-broker admin copy-store`"
                        .into(),
                )
            })?;
            check_seal(&client, &sealer).await?;
            let keys = server_keys(&client, &sealer).await?;
            let loaded = if load_index {
                Some(follow::load(&client, &sealer, &account.id).await?)
            } else {
                None
            };
            Ok((sealer, account, keys, bootstrap, loaded))
        })?;
        let sealer = Arc::new(sealer);
        let manager = Manager::from_config(
            config.clone(),
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::DataDir(format!("PostgreSQL pool: {e}")))?;
        let follower = match (loaded, runtime) {
            (Some((index, cursor)), Some(handle)) => Some(Follower::start(
                &handle,
                follow::FollowerSetup {
                    config,
                    pool: pool.clone(),
                    sealer: Arc::clone(&sealer),
                    account_id: account.id.clone(),
                    index: Arc::new(index),
                    cursor,
                    timeout,
                    clock: Arc::clone(&options.clock),
                },
            )),
            _ => None,
        };
        let audit = options
            .audit
            .map(|log| {
                AuditWriter::start(
                    log,
                    Arc::clone(&options.clock),
                    account.id.clone(),
                    AUDIT_RETRY,
                )
            })
            .transpose()?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                sealer,
                account,
                server_keys,
                timeout,
                clock: options.clock,
                follower,
                audit,
            }),
        };
        Ok((store, bootstrap))
    }

    /// The 12-digit account id.
    pub(crate) fn account_id(&self) -> &str {
        &self.inner.account.id
    }

    /// When the account was created.
    pub(crate) fn account_created_at(&self) -> UnixTime {
        self.inner.account.created_at
    }

    /// The in-memory index, when this store follows the change log.
    pub(crate) fn index(&self) -> Option<&Arc<Index>> {
        self.inner.follower.as_ref().map(Follower::index)
    }

    /// Session-credential keys, newest first.
    pub(crate) fn server_keys(&self) -> &[ServerKey] {
        &self.inner.server_keys
    }

    /// Whether the store answers now and the index follows it (the readiness probe).
    pub(crate) async fn ready(&self) -> Result<(), String> {
        let limit = self.inner.timeout;
        let ping = async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(limit, ping).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(timed_out("the readiness probe", limit).to_string()),
        }
        match &self.inner.follower {
            Some(f) if !f.is_listening() => {
                Err("the change listener is not connected yet".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Runs `op` in one transaction and commits it, within the store timeout; then, if it
    /// changed identities, brings this node's index up to them, so that a write is answered
    /// only once this node serves it (as with SQLite).
    pub(crate) async fn write<T>(
        &self,
        op: impl AsyncFnOnce(&mut PgWrite<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let inner = &self.inner;
        let limit = inner.timeout;
        let work = async {
            let mut client = inner.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let mut w = PgWrite {
                tx,
                sealer: &inner.sealer,
                account_id: &inner.account.id,
                now: inner.clock.now(),
                last_seq: None,
            };
            let out = op(&mut w).await?;
            let last_seq = w.last_seq;
            w.tx.commit().await.map_err(pg_error)?;
            Ok::<_, StoreError>((out, last_seq))
        };
        let (out, last_seq) = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| timed_out("a write", limit))??;
        if let (Some(seq), Some(follower)) = (last_seq, &inner.follower) {
            tokio::time::timeout(limit, follower.catch_up_to(seq))
                .await
                .map_err(|_| timed_out("the index catch-up", limit))??;
        }
        Ok(out)
    }

    /// Runs a read on a pooled connection, within the store timeout.
    pub(crate) async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&PgRead<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let inner = &self.inner;
        let limit = inner.timeout;
        let work = async {
            let client = inner.pool.get().await.map_err(pool_error)?;
            let r = PgRead {
                client: &client,
                sealer: &inner.sealer,
            };
            read(&r).await
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| timed_out("a read", limit))?
    }

    /// Appends an audit line without waiting (held and retried if the log cannot take it).
    pub(crate) fn audit(&self, line: String) {
        match &self.inner.audit {
            Some(a) => a.send(line),
            None => tracing::error!("audit line dropped: this store keeps no audit log"),
        }
    }

    /// Appends an audit line and waits until it is durable, or
    /// [`StoreError::AuditUnavailable`] (its `if_refused` is then held instead).
    pub(crate) async fn audit_and_wait(&self, line: super::RequiredLine) -> Result<(), StoreError> {
        match &self.inner.audit {
            Some(a) => a.send_and_wait(line).await,
            None => Err(StoreError::AuditUnavailable),
        }
    }

    /// Stops following and flushes the audit log.
    pub(crate) fn close(&self) {
        if let Some(f) = &self.inner.follower {
            f.stop();
        }
        if let Some(a) = &self.inner.audit {
            a.close();
        }
    }
}

/// What a write operation sees: its transaction, and what the SQLite `WriteCtx` offers.
pub(crate) struct PgWrite<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    /// Seals secrets for storage.
    pub(crate) sealer: &'a Sealer,
    /// The account every identity belongs to.
    pub(crate) account_id: &'a str,
    /// The time of this write.
    pub(crate) now: UnixTime,
    last_seq: Option<i64>,
}

/// A read-only view of a pooled connection.
pub(crate) struct PgRead<'a> {
    client: &'a deadpool_postgres::Client,
    /// Opens sealed secrets.
    pub(crate) sealer: &'a Sealer,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl PgWrite<'_> {
    /// Executes `sql` (prepared once per connection); the number of rows changed.
    pub(crate) async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let stmt = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.execute(&stmt, params).await.map_err(pg_error)
    }

    /// The rows of `sql`.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let stmt = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.query(&stmt, params).await.map_err(pg_error)
    }

    /// The row of `sql`, if any.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let stmt = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.query_opt(&stmt, params).await.map_err(pg_error)
    }

    /// Takes the transaction-scoped advisory lock named `name`: other nodes' transactions
    /// that take it wait until this one ends, so a count made after it stays true until the
    /// commit.
    pub(crate) async fn lock(&self, name: &str) -> Result<(), StoreError> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await
        .map(|_| ())
    }

    /// Records that a row changed: a `change_log` row, numbered under a lock held until the
    /// commit (so a node that has read `seq` n has seen every commit before it), and a
    /// `NOTIFY` delivered at the commit.
    pub(crate) async fn touch(&mut self, changed: &Changed) -> Result<(), StoreError> {
        if self.last_seq.is_none() {
            self.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOG_LOCK])
                .await?;
        }
        let (kind, key) = changed.as_db();
        let row = self
            .query_opt(
                "WITH c AS (INSERT INTO change_log(kind, key, created_at) VALUES ($1, $2, $3) RETURNING seq)
                 SELECT seq, pg_notify($4, seq::text)::text FROM c",
                &[&kind, &key, &self.now.secs(), &CHANGES_CHANNEL],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("change_log insert returned nothing".into()))?;
        self.last_seq = Some(row.try_get(0).map_err(pg_error)?);
        Ok(())
    }
}

impl PgRead<'_> {
    /// The rows of `sql`.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let stmt = self.client.prepare_cached(sql).await.map_err(pg_error)?;
        self.client.query(&stmt, params).await.map_err(pg_error)
    }

    /// The row of `sql`, if any.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let stmt = self.client.prepare_cached(sql).await.map_err(pg_error)?;
        self.client.query_opt(&stmt, params).await.map_err(pg_error)
    }
}

async fn account(client: &tokio_postgres::Client) -> Result<Option<Account>, StoreError> {
    let row = client
        .query_opt("SELECT id, created_at FROM account", &[])
        .await
        .map_err(pg_error)?;
    row.map(|r| {
        Ok(Account {
            id: r.try_get(0).map_err(pg_error)?,
            created_at: UnixTime::from_secs(r.try_get(1).map_err(pg_error)?),
        })
    })
    .transpose()
}

async fn check_seal(client: &tokio_postgres::Client, sealer: &Sealer) -> Result<(), StoreError> {
    let row = client
        .query_one("SELECT seal_check FROM account", &[])
        .await
        .map_err(pg_error)?;
    let sealed: Vec<u8> = row.try_get(0).map_err(pg_error)?;
    sealer.open(SEAL_CHECK, &sealed).map_err(|_| {
        StoreError::DataDir(
            "the master key does not open the PostgreSQL store: every node needs the key the \
             store was created with (STS_BROKER_MASTER_KEY or its master.key)"
                .into(),
        )
    })?;
    Ok(())
}

/// The session-credential keys, newest first.
async fn server_keys(
    client: &tokio_postgres::Client,
    sealer: &Sealer,
) -> Result<Vec<ServerKey>, StoreError> {
    let rows = client
        .query(
            "SELECT kid, sealed, created_at FROM server_key ORDER BY created_at DESC, kid",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let rows = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg_error)?;
    unseal_server_keys(sealer, rows)
}

/// First start: the account, its seal check, the first server key and the root access key in
/// one transaction, under a lock, so that nodes started together create one account. The
/// credentials file is written (to this node's data dir) before the commit.
async fn initialise(
    client: &mut tokio_postgres::Client,
    sealer: &Sealer,
    data_dir: &Path,
    now: UnixTime,
) -> Result<Option<Bootstrap>, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
        .await
        .map_err(pg_error)?;
    let exists = tx
        .query_opt("SELECT 1 FROM account", &[])
        .await
        .map_err(pg_error)?;
    if exists.is_some() {
        return Ok(None);
    }
    let account_id = ids::account_id()?;
    let check = sealer.seal(SEAL_CHECK, b"sts-broker")?;
    tx.execute(
        "INSERT INTO account(id, created_at, seal_check) VALUES ($1, $2, $3)",
        &[&account_id, &now.secs(), &check],
    )
    .await
    .map_err(pg_error)?;
    let kid = hex::encode(ids::random_bytes::<8>()?);
    let material = Zeroizing::new(ids::random_bytes::<64>()?);
    let sealed = sealer.seal(&format!("server_key:{kid}"), material.as_slice())?;
    tx.execute(
        "INSERT INTO server_key(kid, sealed, created_at) VALUES ($1, $2, $3)",
        &[&kid, &sealed, &now.secs()],
    )
    .await
    .map_err(pg_error)?;
    let key_id = ids::access_key_id("AKIA")?;
    let secret = ids::secret_access_key()?;
    let sealed = sealer.seal(&super::rows::key_context(&key_id), secret.as_bytes())?;
    tx.execute(
        "INSERT INTO access_key(id, owner, sealed_secret, active, created_at) VALUES ($1, $2, $3, TRUE, $4)",
        &[&key_id, &Owner::Root.as_db(), &sealed, &now.secs()],
    )
    .await
    .map_err(pg_error)?;
    let path = data_dir.join(ROOT_CREDENTIALS_FILE);
    let csv = Zeroizing::new(format!(
        "User Name,Access key ID,Secret access key\nroot,{key_id},{}\n",
        secret.as_str()
    ));
    let tmp = data_dir.join(format!("{ROOT_CREDENTIALS_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    seal::write_private(&tmp, csv.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| StoreError::DataDir(format!("{}: {e}", path.display())))?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Some(Bootstrap {
        root_key_id: key_id,
        credentials_file: path,
    }))
}

/// `sts-broker admin migrate`: applies the migrations this version knows; the version after.
pub(crate) fn migrate_only(url: &BackendUrl, limit: Duration) -> Result<i32, StoreError> {
    let config = pg_config(url)?;
    run_apart(async move {
        let mut client = connect_one(&config, limit).await?;
        schema::migrate(&mut client).await
    })
}
