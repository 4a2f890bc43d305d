//! The SQLite schema. One file, WAL mode, FULL synchronous: a committed write survives a crash.
//!
//! `meta.schema_version` says which version of the schema a data dir has; opening it for
//! writing upgrades an older one in place (see [`migrate`]), and a newer one is refused.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use super::error::StoreError;

/// Version written to `meta.schema_version`.
///
/// - 1: the first schema.
/// - 2: `mfa_attempt` (the durable failure lock-out) and `mfa_device.bound_to` (hardware
///   tokens bound to one user).
pub(super) const SCHEMA_VERSION: i64 = 2;

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
    bound_to        TEXT,              -- a hardware token only this identity may see and enable
    credential_id   TEXT,
    public_key      TEXT,
    last_step       INTEGER NOT NULL DEFAULT -9223372036854775808,
    drift           INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    CHECK ((kind = 'fido') = (sealed_seed IS NULL))
);
CREATE INDEX IF NOT EXISTS mfa_device_assigned ON mfa_device(assigned_to);
CREATE INDEX IF NOT EXISTS mfa_device_creator ON mfa_device(creator);
-- The MFA failure lock-out: consecutive failures and the lock in force, per device (caller '')
-- or, for an unassigned hardware token, per caller ('root' or a user id). Rows exist only for
-- registered devices and go with them.
CREATE TABLE IF NOT EXISTS mfa_attempt (
    serial       TEXT NOT NULL REFERENCES mfa_device(serial) ON DELETE CASCADE,
    caller       TEXT NOT NULL,
    failures     INTEGER NOT NULL CHECK (failures >= 0),
    locked_until INTEGER,
    PRIMARY KEY (serial, caller)
) WITHOUT ROWID;
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

/// Creates the schema, or upgrades an older one, in one IMMEDIATE transaction: two processes
/// opening the same data dir at once upgrade it once. A data dir written by a newer version is
/// refused rather than misread.
///
/// Each upgrade step looks at what is there rather than trusting the version number alone, so
/// it also completes a database whose first creation stopped halfway.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let exists = |sql: &str| -> rusqlite::Result<bool> { tx.query_row(sql, [], |r| r.get(0)) };
    let found: Option<i64> = if exists(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
    )? {
        tx.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    if let Some(version) = found
        && version > SCHEMA_VERSION
    {
        return Err(StoreError::DataDir(format!(
            "the data dir has schema version {version}; this sts-broker knows versions up to {SCHEMA_VERSION}: upgrade sts-broker"
        )));
    }
    // New tables (version 2's `mfa_attempt`) come with `CREATE`; new columns of old tables
    // need adding.
    tx.execute_batch(CREATE)?;
    if !exists(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('mfa_device') WHERE name = 'bound_to')",
    )? {
        tx.execute_batch("ALTER TABLE mfa_device ADD COLUMN bound_to TEXT;")?;
    }
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of version 1, as the first release created it.
    const VERSION_1: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE server_key (kid TEXT PRIMARY KEY, sealed BLOB NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE user (id TEXT PRIMARY KEY, name TEXT NOT NULL, name_lc TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE access_key (id TEXT PRIMARY KEY, owner TEXT NOT NULL, sealed_secret BLOB NOT NULL,
            active INTEGER NOT NULL CHECK (active IN (0, 1)), created_at INTEGER NOT NULL);
        CREATE INDEX access_key_owner ON access_key(owner);
        CREATE TABLE mfa_device (serial TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('virtual', 'hardware', 'fido')), name TEXT, path TEXT,
            creator TEXT, assigned_to TEXT, enabled_at INTEGER, sealed_seed BLOB, credential_id TEXT,
            public_key TEXT, last_step INTEGER NOT NULL DEFAULT -9223372036854775808,
            drift INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
            CHECK ((kind = 'fido') = (sealed_seed IS NULL)));
        CREATE INDEX mfa_device_assigned ON mfa_device(assigned_to);
        CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'access_key', 'device')), key TEXT NOT NULL,
            created_at INTEGER NOT NULL);
        INSERT INTO meta(key, value) VALUES ('schema_version', 1);
        INSERT INTO mfa_device(serial, kind, sealed_seed, created_at, last_step)
            VALUES ('GAHT12345678', 'hardware', x'00', 1, 42);
    ";

    fn version(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    fn open() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        conn
    }

    #[test]
    fn a_new_database_gets_the_current_schema() {
        let conn = open();
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        // Idempotent.
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn version_1_is_upgraded_in_place() {
        let conn = open();
        conn.execute_batch(VERSION_1).unwrap();
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), 2);
        // The rows are kept; the new column and table are usable, and the lock-out's rows go
        // with their device.
        let (last_step, bound): (i64, Option<String>) = conn
            .query_row(
                "SELECT last_step, bound_to FROM mfa_device WHERE serial = 'GAHT12345678'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((last_step, bound), (42, None));
        conn.execute(
            "INSERT INTO mfa_attempt(serial, caller, failures) VALUES ('GAHT12345678', '', 3)",
            [],
        )
        .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO mfa_attempt(serial, caller, failures) VALUES ('GAHT00000000', '', 1)",
                [],
            )
            .is_err(),
            "a record for a device that does not exist"
        );
        conn.execute("DELETE FROM mfa_device", []).unwrap();
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM mfa_attempt", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let conn = open();
        migrate(&conn).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        let e = migrate(&conn).unwrap_err();
        assert!(e.to_string().contains("upgrade sts-broker"), "{e}");
    }
}
