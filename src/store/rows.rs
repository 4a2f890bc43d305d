//! Reading rows into the model, unsealing secrets on the way. Shared by the start-up load, the
//! index refresh after every committed change, the read side and the write operations.

use rusqlite::{Connection, OptionalExtension as _, Row};
use zeroize::Zeroizing;

use super::error::StoreError;
use super::seal::Sealer;
use crate::mfa::totp::{TotpKey, TotpStep};
use crate::model::{AccessKey, Device, DeviceKind, Owner, TotpDevice, User};
use crate::time::UnixTime;

/// Columns of `user`, in the order [`user`] reads them.
pub(crate) const USER_COLUMNS: &str = "id, name, path, created_at";
/// Columns of `access_key`, in the order [`access_key`] reads them.
pub(crate) const KEY_COLUMNS: &str = "id, owner, sealed_secret, active, created_at";
/// Columns of `mfa_device`, in the order [`device`] reads them.
pub(crate) const DEVICE_COLUMNS: &str =
    "serial, kind, creator, assigned_to, enabled_at, sealed_seed, drift, last_step, bound_to";

/// The sealing context of an access key's secret.
pub(crate) fn key_context(id: &str) -> String {
    format!("access_key:{id}")
}

/// The sealing context of a device's seed.
pub(crate) fn seed_context(serial: &str) -> String {
    format!("mfa_seed:{serial}")
}

fn time(row: &Row<'_>, column: usize) -> rusqlite::Result<UnixTime> {
    row.get(column).map(UnixTime::from_secs)
}

/// A `user` row.
pub(crate) fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        path: row.get(2)?,
        created_at: time(row, 3)?,
    })
}

/// An `access_key` row, secret unsealed.
pub(crate) fn access_key(row: &Row<'_>, sealer: &Sealer) -> Result<AccessKey, StoreError> {
    let id: String = row.get(0)?;
    let sealed: Vec<u8> = row.get(2)?;
    let secret = sealer.open(&key_context(&id), &sealed)?;
    let secret = String::from_utf8(secret.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("secret of {id} is not text")))?;
    Ok(AccessKey {
        owner: Owner::from_db(row.get(1)?),
        secret: Zeroizing::new(secret),
        active: row.get(3)?,
        created_at: time(row, 4)?,
        id,
    })
}

/// A `mfa_device` row, its seed unsealed into a TOTP key.
pub(crate) fn device(row: &Row<'_>, sealer: &Sealer) -> Result<Device, StoreError> {
    let serial: String = row.get(0)?;
    let kind_text: String = row.get(1)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("device {serial}: {what}"));
    let totp = |sealed: Option<Vec<u8>>| -> Result<TotpDevice, StoreError> {
        let sealed = sealed.ok_or_else(|| corrupt("a TOTP device without a seed"))?;
        let seed = sealer.open(&seed_context(&serial), &sealed)?;
        let key = TotpKey::new(&seed).map_err(|e| corrupt(&format!("unusable seed: {e}")))?;
        Ok(TotpDevice {
            key,
            drift: row.get(6)?,
            last_step: TotpStep::new(row.get(7)?),
        })
    };
    let kind = match kind_text.as_str() {
        "virtual" => DeviceKind::Virtual {
            creator: row
                .get::<_, Option<String>>(2)?
                .map_or(Owner::Root, Owner::from_db),
            totp: totp(row.get(5)?)?,
        },
        "hardware" => DeviceKind::Hardware {
            totp: totp(row.get(5)?)?,
            bound_to: row.get::<_, Option<String>>(8)?.map(Owner::from_db),
        },
        "fido" => DeviceKind::Fido,
        other => return Err(corrupt(&format!("kind {other}"))),
    };
    Ok(Device {
        kind,
        assigned_to: row.get::<_, Option<String>>(3)?.map(Owner::from_db),
        enabled_at: row.get::<_, Option<i64>>(4)?.map(UnixTime::from_secs),
        serial,
    })
}

/// The user with this id.
pub(crate) fn user_by_id(conn: &Connection, id: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user WHERE id = ?1"))?
        .query_row([id], user)
        .optional()?)
}

/// The user with this name, in any case.
pub(crate) fn user_by_name(conn: &Connection, name: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM user WHERE name_lc = ?1"
        ))?
        .query_row([name.to_lowercase()], user)
        .optional()?)
}

/// The access key with this id.
pub(crate) fn key_by_id(
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
pub(crate) fn device_by_serial(
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
