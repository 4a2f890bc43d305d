//! Each node's in-memory [`Index`] of a PostgreSQL store, kept current from `change_log`.
//!
//! A node listens (`LISTEN`) on a dedicated connection and catches up by sequence number on
//! every notification, every second anyway, and after every (re)connection: notifications sent
//! while a listener was disconnected are lost, and the catch-up by `seq` finds what they
//! announced. Because `seq` is taken under a lock held until the commit (`PgWrite::touch`),
//! a node that has applied `seq` n has seen every change committed before it, so nothing is
//! skipped. When changes the node had not seen were pruned, it loads the whole index again.
//! A node's own writes catch its index up before they are answered ([`Follower::catch_up_to`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::AsyncMessage;

use super::rows::{self, DEVICE_COLUMNS, KEY_COLUMNS, USER_COLUMNS};
use super::{CHANGE_LOG_LOCK, CHANGES_CHANNEL, pg_error, tls};
use crate::clock::SharedClock;
use crate::store::error::StoreError;
use crate::store::index::{Changed, Index};
use crate::store::seal::Sealer;

/// The listeners' `application_name`.
pub(crate) const LISTENER_NAME: &str = "sts-broker-listener";
/// How often a node catches up without a notification.
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// Wait before connecting the listener again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// Catch-ups between two prunings of `change_log` by this node.
const CATCH_UPS_PER_PRUNE: u32 = 600;
/// `change_log` rows older than this are pruned.
const RETENTION_SECS: i64 = 24 * 3600;

/// The newest change at this moment, pruned ones included.
const HEAD: &str = "SELECT GREATEST(COALESCE((SELECT MAX(seq) FROM change_log), 0), \
                    COALESCE((SELECT through FROM change_log_pruned), 0))";

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    column: usize,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(pg_error)
}

/// Loads every identity and the `seq` the load is consistent with, in one read-only
/// REPEATABLE READ transaction (one snapshot).
pub(crate) async fn load(
    client: &tokio_postgres::Client,
    sealer: &Sealer,
    account_id: &str,
) -> Result<(Index, i64), StoreError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg_error)?;
    let loaded = async {
        let head = client.query_one(HEAD, &[]).await.map_err(pg_error)?;
        let cursor: i64 = get(&head, 0)?;
        let index = Index::empty(account_id);
        for row in client
            .query(&format!("SELECT {USER_COLUMNS} FROM iam_user"), &[])
            .await
            .map_err(pg_error)?
        {
            let user = rows::user(&row)?;
            let id = user.id.clone();
            index.apply_user(&id, Some(user));
        }
        for row in client
            .query(&format!("SELECT {KEY_COLUMNS} FROM access_key"), &[])
            .await
            .map_err(pg_error)?
        {
            let key = rows::access_key(&row, sealer)?;
            let id = key.id.clone();
            index.apply_access_key(&id, Some(key));
        }
        for row in client
            .query(&format!("SELECT {DEVICE_COLUMNS} FROM mfa_device"), &[])
            .await
            .map_err(pg_error)?
        {
            let device = rows::device(&row, sealer)?;
            let serial = device.serial.clone();
            index.apply_device(&serial, Some(device));
        }
        Ok::<_, StoreError>((index, cursor))
    }
    .await;
    let end = if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(pg_error)?;
    loaded
}

/// What a follower needs.
pub(crate) struct FollowerSetup {
    pub config: tokio_postgres::Config,
    pub pool: Pool,
    pub sealer: Arc<Sealer>,
    pub account_id: String,
    pub index: Arc<Index>,
    pub cursor: i64,
    pub timeout: Duration,
    pub clock: SharedClock,
}

struct Shared {
    index: Arc<Index>,
    /// The newest `seq` applied; held while catching up, so catch-ups never overlap.
    cursor: tokio::sync::Mutex<i64>,
    pool: Pool,
    sealer: Arc<Sealer>,
    account_id: String,
    listening: AtomicBool,
    timeout: Duration,
    clock: SharedClock,
}

/// A node's follower of the change log (a task on the serving runtime).
pub(crate) struct Follower {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Follower {
    /// Starts following from `setup.cursor` on `runtime`.
    pub(crate) fn start(runtime: &tokio::runtime::Handle, setup: FollowerSetup) -> Self {
        let shared = Arc::new(Shared {
            index: setup.index,
            cursor: tokio::sync::Mutex::new(setup.cursor),
            pool: setup.pool,
            sealer: setup.sealer,
            account_id: setup.account_id,
            listening: AtomicBool::new(false),
            timeout: setup.timeout,
            clock: setup.clock,
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        runtime.spawn(run(Arc::clone(&shared), setup.config, stopped));
        Self { shared, stop }
    }

    /// The identities.
    pub(crate) fn index(&self) -> &Arc<Index> {
        &self.shared.index
    }

    /// Whether the listener is connected (notifications arrive).
    pub(crate) fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::Relaxed)
    }

    /// Applies every change up to `seq` at least (a write of this node just committed it).
    pub(crate) async fn catch_up_to(&self, seq: i64) -> Result<(), StoreError> {
        let mut cursor = self.shared.cursor.lock().await;
        if *cursor >= seq {
            return Ok(());
        }
        let client = self
            .shared
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL connection pool: {e}")))?;
        catch_up(&self.shared, &client, &mut cursor).await
    }

    /// Stops the task.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Applies the changes after `cursor`, or reloads everything after a gap.
async fn catch_up(
    shared: &Shared,
    client: &tokio_postgres::Client,
    cursor: &mut i64,
) -> Result<(), StoreError> {
    let pruned = client
        .query_one(
            "SELECT COALESCE((SELECT through FROM change_log_pruned), 0)",
            &[],
        )
        .await
        .map_err(pg_error)?;
    if get::<i64>(&pruned, 0)? > *cursor {
        let (fresh, at) = load(client, &shared.sealer, &shared.account_id).await?;
        shared.index.replace_with(fresh);
        *cursor = at;
        tracing::info!(
            seq = at,
            "changes this node had not seen were pruned: index reloaded"
        );
        return Ok(());
    }
    let changes = client
        .query(
            "SELECT seq, kind, key FROM change_log WHERE seq > $1 ORDER BY seq",
            &[&*cursor],
        )
        .await
        .map_err(pg_error)?;
    let mut seen = HashSet::new();
    for row in &changes {
        let seq: i64 = get(row, 0)?;
        let kind: String = get(row, 1)?;
        let key: String = get(row, 2)?;
        if let Some(changed) = Changed::from_db(&kind, key)
            && seen.insert(changed.clone())
        {
            refresh(shared, client, &changed).await?;
        }
        *cursor = seq;
    }
    Ok(())
}

/// Re-reads one changed row; a missing row removes the entry.
async fn refresh(
    shared: &Shared,
    client: &tokio_postgres::Client,
    changed: &Changed,
) -> Result<(), StoreError> {
    let index = &shared.index;
    match changed {
        Changed::User(id) => {
            let row = client
                .query_opt(
                    &format!("SELECT {USER_COLUMNS} FROM iam_user WHERE id = $1"),
                    &[id],
                )
                .await
                .map_err(pg_error)?;
            index.apply_user(id, row.map(|r| rows::user(&r)).transpose()?);
        }
        Changed::AccessKey(id) => {
            let row = client
                .query_opt(
                    &format!("SELECT {KEY_COLUMNS} FROM access_key WHERE id = $1"),
                    &[id],
                )
                .await
                .map_err(pg_error)?;
            let key = row
                .map(|r| rows::access_key(&r, &shared.sealer))
                .transpose()?;
            index.apply_access_key(id, key);
        }
        Changed::Device(serial) => {
            let row = client
                .query_opt(
                    &format!("SELECT {DEVICE_COLUMNS} FROM mfa_device WHERE serial = $1"),
                    &[serial],
                )
                .await
                .map_err(pg_error)?;
            let device = row.map(|r| rows::device(&r, &shared.sealer)).transpose()?;
            index.apply_device(serial, device);
        }
    }
    Ok(())
}

/// Deletes `change_log` rows older than a day and records how far, under the change log's
/// lock, so that a node that had not seen them reloads instead of missing them.
async fn prune(shared: &Shared, client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let cutoff = shared.clock.now().minus_secs(RETENTION_SECS).secs();
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOG_LOCK])
        .await
        .map_err(pg_error)?;
    let row = tx
        .query_one(
            "SELECT MAX(seq) FROM change_log WHERE created_at < $1",
            &[&cutoff],
        )
        .await
        .map_err(pg_error)?;
    if let Some(through) = get::<Option<i64>>(&row, 0)? {
        tx.execute("DELETE FROM change_log WHERE seq <= $1", &[&through])
            .await
            .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO change_log_pruned(through) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET through = GREATEST(change_log_pruned.through, excluded.through)",
            &[&through],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

/// The follower's task: (re)connect, listen, catch up; until stopped.
async fn run(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut reported = false;
    let mut catch_ups = 0_u32;
    loop {
        let mut inner = stopped.clone();
        let session = follow_once(&shared, &config, &mut inner, &mut catch_ups);
        let ended = tokio::select! {
            ended = session => ended,
            _ = until_stopped(&mut stopped) => return,
        };
        let was_listening = shared.listening.swap(false, Ordering::Relaxed);
        match ended {
            Ok(()) => return,
            Err(e) => {
                // Reported when an outage starts, not on every retry.
                if was_listening || !reported {
                    tracing::error!(error = %e, "the PostgreSQL change listener is down; reconnecting");
                }
                reported = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
            _ = until_stopped(&mut stopped) => return,
        }
    }
}

/// One listener connection's life: `Ok` when stopped, `Err` when the connection failed.
async fn follow_once(
    shared: &Shared,
    config: &tokio_postgres::Config,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
    catch_ups: &mut u32,
) -> Result<(), StoreError> {
    let limit = shared.timeout.max(Duration::from_secs(2));
    // Named, so that an operator can tell the listeners in `pg_stat_activity`.
    let mut config = config.clone();
    config.application_name(LISTENER_NAME);
    let (mut client, mut connection) = tokio::time::timeout(limit, config.connect(tls()?))
        .await
        .map_err(|_| StoreError::Unavailable("the listener's connection timed out".into()))?
        .map_err(pg_error)?;
    let (notify, mut notified) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The connection's messages: notifications wake the catch-up; its end ends this session.
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if notify.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the PostgreSQL change listener's connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await
        .map_err(pg_error)?;
    // Whatever was announced while no listener was connected.
    timed_catch_up(shared, &client, limit).await?;
    if !shared.listening.swap(true, Ordering::Relaxed) {
        tracing::info!("following the PostgreSQL change log");
    }
    loop {
        tokio::select! {
            woke = notified.recv() => {
                if woke.is_none() {
                    return Err(StoreError::Unavailable("the listener's connection closed".into()));
                }
                // Several notifications, one catch-up.
                while notified.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(CATCH_UP_EVERY) => {
                *catch_ups += 1;
                if *catch_ups >= CATCH_UPS_PER_PRUNE {
                    *catch_ups = 0;
                    if let Err(e) = prune(shared, &mut client).await {
                        tracing::warn!(error = %e, "pruning change_log failed");
                    }
                }
            }
            _ = until_stopped(stopped) => return Ok(()),
        }
        timed_catch_up(shared, &client, limit).await?;
    }
}

async fn timed_catch_up(
    shared: &Shared,
    client: &tokio_postgres::Client,
    limit: Duration,
) -> Result<(), StoreError> {
    let work = async {
        let mut cursor = shared.cursor.lock().await;
        catch_up(shared, client, &mut cursor).await
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| StoreError::Unavailable("catching up with change_log timed out".into()))?
}

/// Completes once the follower is told to stop (or its owner is gone).
async fn until_stopped(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let stop = stopped.wait_for(|s| *s).await.is_ok();
    let _ = stop;
}
