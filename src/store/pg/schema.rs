//! The PostgreSQL schema, as numbered migrations recorded in `sts_broker_migration`. Every
//! node applies the missing ones at start (or the operator does, with `sts-broker admin
//! migrate`), in one transaction under an advisory lock, so nodes started together migrate
//! once; a store migrated by a newer version is refused rather than misread.
//!
//! Text that is ordered or compared (names, serials, owners) uses the `C` collation, so that
//! listings page in byte order, as SQLite's do, whatever the database's locale.

use super::{MIGRATE_LOCK, pg_error};
use crate::store::error::StoreError;

/// The migrations, in order; a migration is never edited once released, only added.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE account (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seal_check BYTEA NOT NULL
);
-- Signing and derivation keys of session credentials, sealed: every node verifies every
-- node's sessions.
CREATE TABLE server_key (
    kid        TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE iam_user (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    name_lc    TEXT COLLATE "C" NOT NULL UNIQUE,
    path       TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE access_key (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    sealed_secret BYTEA NOT NULL,
    active        BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX access_key_owner ON access_key(owner);
CREATE TABLE mfa_device (
    serial        TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('virtual', 'hardware', 'fido')),
    name          TEXT COLLATE "C",
    path          TEXT COLLATE "C",
    creator       TEXT COLLATE "C",
    assigned_to   TEXT COLLATE "C",
    enabled_at    BIGINT,
    sealed_seed   BYTEA,
    bound_to      TEXT COLLATE "C",
    credential_id TEXT,
    public_key    TEXT,
    last_step     BIGINT NOT NULL DEFAULT -9223372036854775808,
    drift         BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    CHECK ((kind = 'fido') = (sealed_seed IS NULL))
);
CREATE INDEX mfa_device_assigned ON mfa_device(assigned_to);
CREATE INDEX mfa_device_creator ON mfa_device(creator);
-- Every identity change; `seq` is taken under an advisory lock held until the commit, so its
-- order is the commit order.
CREATE TABLE change_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('user', 'access_key', 'device')),
    key        TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- How far the change log was pruned: a node behind it reloads its index.
CREATE TABLE change_log_pruned (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    through   BIGINT NOT NULL
);
"#,
)];

/// The newest migration this version knows.
pub(crate) const LATEST: i32 = 1;

/// Applies the missing migrations; the version the store is at afterwards.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sts_broker_migration (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM sts_broker_migration",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let current: i32 = row.try_get(0).map_err(pg_error)?;
    if current > LATEST {
        return Err(StoreError::DataDir(format!(
            "the PostgreSQL store has schema version {current}; this sts-broker knows versions up to {LATEST}: upgrade sts-broker"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO sts_broker_migration(version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(LATEST)
}
