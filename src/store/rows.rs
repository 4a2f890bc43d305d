//! Reading rows into the model, unsealing secrets on the way. Shared by the start-up load, the
//! refresh after every committed change, and the write operations.

use rusqlite::{Connection, OptionalExtension as _, Row};
use zeroize::Zeroizing;

use super::error::StoreError;
use super::model::{AccessKey, Device, DeviceKind, Owner, User};
use super::seal::Sealer;
use crate::mfa::totp::TotpKey;

/// Columns of `user`, in the order [`user`] reads them.
pub const USER_COLUMNS: &str = "id, name, path, created_at";
/// Columns of `access_key`, in the order [`access_key`] reads them.
pub const KEY_COLUMNS: &str = "id, owner, sealed_secret, active, created_at";
/// Columns of `mfa_device`, in the order [`device`] reads them.
pub const DEVICE_COLUMNS: &str = "serial, kind, name, path, creator, assigned_to, enabled_at, sealed_seed, credential_id, public_key, drift, last_step, created_at";

/// The sealing context of an access key's secret.
pub fn key_context(id: &str) -> String {
    format!("access_key:{id}")
}

/// The sealing context of a device's seed.
pub fn seed_context(serial: &str) -> String {
    format!("mfa_seed:{serial}")
}

/// A `user` row.
pub fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        path: row.get(2)?,
        created_at: row.get(3)?,
    })
}

/// An `access_key` row, secret unsealed.
pub fn access_key(row: &Row<'_>, sealer: &Sealer) -> Result<AccessKey, StoreError> {
    let id: String = row.get(0)?;
    let sealed: Vec<u8> = row.get(2)?;
    let secret = sealer.open(&key_context(&id), &sealed)?;
    let secret = String::from_utf8(secret.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("secret of {id} is not text")))?;
    Ok(AccessKey {
        owner: Owner::from_db(row.get(1)?),
        secret: Zeroizing::new(secret),
        active: row.get(3)?,
        created_at: row.get(4)?,
        id,
    })
}

/// A `mfa_device` row, seed unsealed into a TOTP key.
pub fn device(row: &Row<'_>, sealer: &Sealer) -> Result<Device, StoreError> {
    let serial: String = row.get(0)?;
    let kind_text: String = row.get(1)?;
    let kind = DeviceKind::from_db(&kind_text)
        .ok_or_else(|| StoreError::Corrupt(format!("device {serial} has kind {kind_text}")))?;
    let sealed_seed: Option<Vec<u8>> = row.get(7)?;
    let totp = match sealed_seed {
        Some(sealed) => {
            let seed = sealer.open(&seed_context(&serial), &sealed)?;
            Some(TotpKey::new(&seed).map_err(|e| {
                StoreError::Corrupt(format!("device {serial} has an unusable seed: {e}"))
            })?)
        }
        None => None,
    };
    let credential_id: Option<String> = row.get(8)?;
    let public_key: Option<String> = row.get(9)?;
    Ok(Device {
        kind,
        name: row.get(2)?,
        path: row.get(3)?,
        creator: row.get::<_, Option<String>>(4)?.map(Owner::from_db),
        assigned_to: row.get::<_, Option<String>>(5)?.map(Owner::from_db),
        enabled_at: row.get(6)?,
        totp,
        fido: credential_id.zip(public_key),
        drift: row.get(10)?,
        last_step: row.get(11)?,
        created_at: row.get(12)?,
        serial,
    })
}

/// The user with this id.
pub fn user_by_id(conn: &Connection, id: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM user WHERE id = ?1"),
            [id],
            user,
        )
        .optional()?)
}

/// The user with this name, in any case.
pub fn user_by_name(conn: &Connection, name: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM user WHERE name_lc = ?1"),
            [name.to_lowercase()],
            user,
        )
        .optional()?)
}

/// The access key with this id.
pub fn key_by_id(
    conn: &Connection,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<AccessKey>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM access_key WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(access_key(row, sealer)?)),
        None => Ok(None),
    }
}

/// The device with this serial.
pub fn device_by_serial(
    conn: &Connection,
    sealer: &Sealer,
    serial: &str,
) -> Result<Option<Device>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM mfa_device WHERE serial = ?1"
    ))?;
    let mut rows = stmt.query([serial])?;
    match rows.next()? {
        Some(row) => Ok(Some(device(row, sealer)?)),
        None => Ok(None),
    }
}
