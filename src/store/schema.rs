//! The SQLite schema. One file, WAL mode, FULL synchronous: a committed write survives a crash.

use rusqlite::Connection;

/// Version written to `meta.schema_version`.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Creates the tables when missing.
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
-- Signing and derivation keys of session credentials; `sealed` holds both.
CREATE TABLE IF NOT EXISTS server_key (
    kid        TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    name_lc    TEXT NOT NULL UNIQUE,   -- IAM names are unique regardless of case
    path       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- owner is 'root' or a user id.
CREATE TABLE IF NOT EXISTS access_key (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_key_owner ON access_key(owner);
-- kind says what can ever be checked: FIDO keys have no seed and are never used on STS.
CREATE TABLE IF NOT EXISTS mfa_device (
    serial          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('virtual', 'hardware', 'fido')),
    name            TEXT,
    path            TEXT,
    creator         TEXT,              -- who created a virtual device ('root' or a user id)
    assigned_to     TEXT,              -- 'root', a user id, or NULL when not enabled
    enabled_at      INTEGER,
    sealed_seed     BLOB,
    credential_id   TEXT,
    public_key      TEXT,
    last_step       INTEGER NOT NULL DEFAULT -9223372036854775808,
    drift           INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    CHECK ((kind = 'fido') = (sealed_seed IS NULL))
);
CREATE INDEX IF NOT EXISTS mfa_device_assigned ON mfa_device(assigned_to);
-- Every identity change, so that a running broker picks up what `sts-broker admin` (or another
-- process) wrote.
CREATE TABLE IF NOT EXISTS change_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('user', 'access_key', 'device')),
    key        TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Opens the connection settings every connection uses.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Creates or checks the schema.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(CREATE)?;
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )?;
    Ok(())
}
