//! Opening a data dir: the read-write open that creates the account on the first start, and
//! the read-only open that creates nothing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior};
use zeroize::Zeroizing;

use super::error::StoreError;
use super::seal::{self, Sealer};
use super::writer::WriteCtx;
use super::{ops, schema};
use crate::ids;
use crate::model::Owner;
use crate::time::UnixTime;

/// Database file name inside the data dir.
const DB_FILE: &str = "sts-broker.db";
/// Root credentials file name inside the data dir (`aws configure import --csv` format).
pub const ROOT_CREDENTIALS_FILE: &str = "root-credentials.csv";
/// Sealing context of the value that proves the master key matches the database.
pub(super) const SEAL_CHECK: &str = "meta:seal_check";

/// A session-credential key: `kid`, a JWT signing key and a secret-derivation key.
pub(crate) struct ServerKey {
    /// Key id, carried in the JWT header.
    pub kid: String,
    /// HS256 key of session tokens.
    pub signing: Zeroizing<[u8; 32]>,
    /// HMAC key that derives session secrets.
    pub derivation: Zeroizing<[u8; 32]>,
    /// Creation time; the newest key signs.
    pub created_at: UnixTime,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What the first start created.
#[derive(Debug)]
pub struct Bootstrap {
    /// The root access key, written to `root-credentials.csv`.
    pub root_key_id: String,
    /// Where the credentials were written.
    pub credentials_file: PathBuf,
}

/// The account a data dir holds.
#[derive(Clone, Debug)]
pub(super) struct AccountMeta {
    pub(super) account_id: String,
    pub(super) created_at: UnixTime,
}

/// An opened data dir.
pub(super) struct Opened {
    pub(super) conn: Connection,
    pub(super) sealer: Sealer,
    pub(super) meta: AccountMeta,
    pub(super) bootstrap: Option<Bootstrap>,
}

/// Opens (creating on first use) the data dir for writing.
pub(super) fn read_write(data_dir: &Path, now: UnixTime) -> Result<Opened, StoreError> {
    create_private_dir(data_dir)?;
    let db_path = data_dir.join(DB_FILE);
    let fresh = !db_path.exists();
    let sealer = Sealer::load(data_dir, fresh)?;
    private_db_files(&db_path)?;
    let mut conn = Connection::open(&db_path)?;
    schema::configure(&conn)?;
    schema::migrate(&conn)?;
    let bootstrap = initialise(&mut conn, &sealer, data_dir, now)?;
    let meta = account_meta(&conn, &sealer, &db_path)?;
    Ok(Opened {
        conn,
        sealer,
        meta,
        bootstrap,
    })
}

/// Opens an existing data dir read-only: no directory, key, database or row is created.
pub(super) fn read_only(data_dir: &Path) -> Result<Opened, StoreError> {
    check_data_dir(data_dir)?;
    let db_path = data_dir.join(DB_FILE);
    if !db_path.exists() {
        return Err(StoreError::DataDir(format!(
            "{} does not exist; start the broker on this data dir first",
            db_path.display()
        )));
    }
    let sealer = Sealer::load(data_dir, false)?;
    let conn = read_only_connection(data_dir)?;
    let meta = account_meta(&conn, &sealer, &db_path)?;
    Ok(Opened {
        conn,
        sealer,
        meta,
        bootstrap: None,
    })
}

/// A read-only connection to the data dir's database.
pub(super) fn read_only_connection(data_dir: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        data_dir.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

fn account_meta(
    conn: &Connection,
    sealer: &Sealer,
    db_path: &Path,
) -> Result<AccountMeta, StoreError> {
    let meta = |key: &str| {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .optional()
    };
    let account_id = match meta("account_id")? {
        Some(rusqlite::types::Value::Text(id)) => id,
        _ => {
            return Err(StoreError::DataDir(format!(
                "{} holds no account",
                db_path.display()
            )));
        }
    };
    let created_at = match meta("created_at")? {
        Some(rusqlite::types::Value::Integer(t)) => UnixTime::from_secs(t),
        _ => UnixTime::from_secs(0),
    };
    let check = match meta("seal_check")? {
        Some(rusqlite::types::Value::Blob(b)) => b,
        _ => return Err(StoreError::Corrupt("no seal check".into())),
    };
    sealer.open(SEAL_CHECK, &check).map_err(|_| {
        StoreError::DataDir(format!(
            "the master key does not open {}; use the key this data dir was created with",
            db_path.display()
        ))
    })?;
    Ok(AccountMeta {
        account_id,
        created_at,
    })
}

/// Creates `dir` (mode 0700) if it does not exist, then checks it as [`check_data_dir`] does.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::DataDir(format!("{}: {e}", dir.display())))?;
    check_data_dir(dir)
}

/// Refuses a data dir that another local user could write to: they could plant a master key
/// of their own (then read every secret sealed with it) or replace the database. It may be
/// readable by others: its files are not.
fn check_data_dir(dir: &Path) -> Result<(), StoreError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| StoreError::DataDir(format!("{}: {e}", dir.display())))?;
    let dir = dir.display();
    match seal::check_private(&meta, 0o022) {
        Ok(()) => Ok(()),
        Err(seal::Exposed::Owner { owner, me }) => Err(StoreError::DataDir(format!(
            "{dir} is owned by uid {owner}, not by uid {me} that runs the broker (nor root), so \
             that user could replace the master key or the database; if its contents are yours, \
             run `chown -R {me} {dir}`, else use another data dir"
        ))),
        Err(seal::Exposed::Mode(mode)) => Err(StoreError::DataDir(format!(
            "{dir} is writable by group or others (mode {mode:04o}), so another user could \
             replace the master key or the database; run `chmod go-w {dir}`"
        ))),
    }
}

/// Makes the database and its `-wal` and `-shm` files readable by their owner only. SQLite
/// creates a database with mode 0644 and gives its `-wal` and `-shm` files the database's mode
/// (`findCreateFileMode` in SQLite's `os_unix.c`), so the database is created 0600 before
/// SQLite opens it; files an earlier version left 0644 are tightened.
fn private_db_files(db_path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let failed = |path: &Path, e: std::io::Error| {
            StoreError::DataDir(format!("{}: {e}", path.display()))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(db_path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(db_path, e)),
        }
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let mut shm = db_path.as_os_str().to_owned();
        shm.push("-shm");
        for path in [db_path.to_owned(), PathBuf::from(wal), PathBuf::from(shm)] {
            let mode = match std::fs::metadata(&path) {
                Ok(meta) => meta.permissions().mode() & 0o777,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&path, e)),
            };
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| failed(&path, e))?;
                tracing::info!(
                    file = %path.display(),
                    "tightened mode {mode:04o} to 0600: the database is for the broker's user only"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db_path;
    Ok(())
}

/// First start: account id, seal check, root key, server key, and the credentials file, all in
/// one transaction (the file is written before the commit, so a crash leaves nothing half-made).
fn initialise(
    conn: &mut Connection,
    sealer: &Sealer,
    data_dir: &Path,
    now: UnixTime,
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
        [now.secs()],
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

fn insert_server_key(conn: &Connection, sealer: &Sealer, now: UnixTime) -> Result<(), StoreError> {
    let kid = hex::encode(ids::random_bytes::<8>()?);
    let material = Zeroizing::new(ids::random_bytes::<64>()?);
    let sealed = sealer.seal(&format!("server_key:{kid}"), material.as_slice())?;
    conn.execute(
        "INSERT INTO server_key(kid, sealed, created_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![kid, sealed, now.secs()],
    )?;
    Ok(())
}

/// The session-credential keys, newest first.
pub(super) fn server_keys(
    conn: &Connection,
    sealer: &Sealer,
) -> Result<Vec<ServerKey>, StoreError> {
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
    unseal_server_keys(sealer, rows)
}

/// Opens the sealed server keys read from either store (`kid`, sealed material, creation
/// time), in the order given; none at all is a corrupt store.
pub(super) fn unseal_server_keys(
    sealer: &Sealer,
    rows: Vec<(String, Vec<u8>, i64)>,
) -> Result<Vec<ServerKey>, StoreError> {
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
            created_at: UnixTime::from_secs(created_at),
        });
    }
    if keys.is_empty() {
        return Err(StoreError::Corrupt("no server key".into()));
    }
    Ok(keys)
}
