//! Reading rows into the model, unsealing secrets on the way. Shared by the start-up load, the
//! index refresh after every committed change, the read side and the write operations.

use std::sync::Arc;

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

// Borrowed reads: the load reads millions of rows, and a `String` or `Vec` per column that is
// only looked at would be an allocation and a free each.
fn text<'a>(row: &'a Row<'_>, column: usize) -> rusqlite::Result<&'a str> {
    Ok(row.get_ref(column)?.as_str()?)
}

fn text_or_null<'a>(row: &'a Row<'_>, column: usize) -> rusqlite::Result<Option<&'a str>> {
    Ok(row.get_ref(column)?.as_str_or_null()?)
}

fn blob_or_null<'a>(row: &'a Row<'_>, column: usize) -> rusqlite::Result<Option<&'a [u8]>> {
    Ok(row.get_ref(column)?.as_blob_or_null()?)
}

fn time(row: &Row<'_>, column: usize) -> rusqlite::Result<UnixTime> {
    row.get(column).map(UnixTime::from_secs)
}

/// A `user` row.
pub(crate) fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: Arc::from(text(row, 0)?),
        name: row.get(1)?,
        path: row.get(2)?,
        created_at: time(row, 3)?,
    })
}

/// An owner as stored, its user id copied: for readers without an index to share ids with.
pub(crate) fn owner(value: &str) -> Owner {
    if value == "root" {
        Owner::Root
    } else {
        Owner::User(Arc::from(value))
    }
}

/// An `access_key` row, secret unsealed.
pub(crate) fn access_key(row: &Row<'_>, sealer: &Sealer) -> Result<AccessKey, StoreError> {
    access_key_owned_by(row, sealer, &owner)
}

/// An `access_key` row, secret unsealed, its owner from `owner` (which may share the id with
/// the user already in memory).
pub(crate) fn access_key_owned_by(
    row: &Row<'_>,
    sealer: &Sealer,
    owner: &dyn Fn(&str) -> Owner,
) -> Result<AccessKey, StoreError> {
    let id: String = row.get(0)?;
    let sealed = blob_or_null(row, 2)?.unwrap_or_default();
    let secret = sealer.open(&key_context(&id), sealed)?;
    let secret = String::from_utf8(secret.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("secret of {id} is not text")))?;
    Ok(AccessKey {
        owner: owner(text(row, 1)?),
        secret: Zeroizing::new(secret),
        active: row.get(3)?,
        created_at: time(row, 4)?,
        id,
    })
}

/// A `mfa_device` row, its seed unsealed into a TOTP key.
pub(crate) fn device(row: &Row<'_>, sealer: &Sealer) -> Result<Device, StoreError> {
    device_owned_by(row, sealer, &owner)
}

/// A `mfa_device` row, as [`device`], its creator and holder from `owner` (as
/// [`access_key_owned_by`]).
pub(crate) fn device_owned_by(
    row: &Row<'_>,
    sealer: &Sealer,
    owner: &dyn Fn(&str) -> Owner,
) -> Result<Device, StoreError> {
    let serial: String = row.get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("device {serial}: {what}"));
    let totp = |sealed: Option<&[u8]>| -> Result<TotpDevice, StoreError> {
        let sealed = sealed.ok_or_else(|| corrupt("a TOTP device without a seed"))?;
        let seed = sealer.open(&seed_context(&serial), sealed)?;
        let key = TotpKey::new(&seed).map_err(|e| corrupt(&format!("unusable seed: {e}")))?;
        Ok(TotpDevice {
            key,
            drift: row.get(6)?,
            last_step: TotpStep::new(row.get(7)?),
        })
    };
    let owner_at = |column: usize| -> rusqlite::Result<Option<Owner>> {
        Ok(text_or_null(row, column)?.map(owner))
    };
    let kind = match text(row, 1)? {
        "virtual" => DeviceKind::Virtual {
            creator: owner_at(2)?.unwrap_or(Owner::Root),
            totp: totp(blob_or_null(row, 5)?)?,
        },
        "hardware" => DeviceKind::Hardware {
            totp: totp(blob_or_null(row, 5)?)?,
            bound_to: owner_at(8)?,
        },
        "fido" => DeviceKind::Fido,
        other => return Err(corrupt(&format!("kind {other}"))),
    };
    Ok(Device {
        kind,
        assigned_to: owner_at(3)?,
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
