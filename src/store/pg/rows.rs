//! PostgreSQL rows into the model, unsealing secrets on the way, as `store::rows` does for
//! SQLite's (same columns, same sealing contexts).

use tokio_postgres::Row;
use zeroize::Zeroizing;

use super::pg_error;
use crate::mfa::totp::{TotpKey, TotpStep};
use crate::model::{AccessKey, Device, DeviceKind, Owner, TotpDevice, User};
use crate::store::error::StoreError;
use crate::store::rows::{key_context, seed_context};
use crate::store::seal::Sealer;
use crate::time::UnixTime;

/// Columns of `iam_user`, in the order [`user`] reads them.
pub(super) const USER_COLUMNS: &str = "id, name, path, created_at";
/// Columns of `access_key`, in the order [`access_key`] reads them.
pub(super) const KEY_COLUMNS: &str = "id, owner, sealed_secret, active, created_at";
/// Columns of `mfa_device`, in the order [`device`] reads them.
pub(super) const DEVICE_COLUMNS: &str =
    "serial, kind, creator, assigned_to, enabled_at, sealed_seed, drift, last_step, bound_to";

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: usize,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(pg_error)
}

/// An `iam_user` row.
pub(super) fn user(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: get::<String>(row, 0)?.into(),
        name: get(row, 1)?,
        path: get(row, 2)?,
        created_at: UnixTime::from_secs(get(row, 3)?),
    })
}

/// An `access_key` row, secret unsealed.
pub(super) fn access_key(row: &Row, sealer: &Sealer) -> Result<AccessKey, StoreError> {
    let id: String = get(row, 0)?;
    let sealed: Vec<u8> = get(row, 2)?;
    let secret = sealer.open(&key_context(&id), &sealed)?;
    let secret = String::from_utf8(secret.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("secret of {id} is not text")))?;
    Ok(AccessKey {
        owner: Owner::from_db(get(row, 1)?),
        secret: Zeroizing::new(secret),
        active: get(row, 3)?,
        created_at: UnixTime::from_secs(get(row, 4)?),
        id,
    })
}

/// A `mfa_device` row, its seed unsealed into a TOTP key.
pub(super) fn device(row: &Row, sealer: &Sealer) -> Result<Device, StoreError> {
    let serial: String = get(row, 0)?;
    let kind_text: String = get(row, 1)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("device {serial}: {what}"));
    let totp = || -> Result<TotpDevice, StoreError> {
        let sealed: Option<Vec<u8>> = get(row, 5)?;
        let sealed = sealed.ok_or_else(|| corrupt("a TOTP device without a seed"))?;
        let seed = sealer.open(&seed_context(&serial), &sealed)?;
        let key = TotpKey::new(&seed).map_err(|e| corrupt(&format!("unusable seed: {e}")))?;
        Ok(TotpDevice {
            key,
            drift: get(row, 6)?,
            last_step: TotpStep::new(get(row, 7)?),
        })
    };
    let kind = match kind_text.as_str() {
        "virtual" => DeviceKind::Virtual {
            creator: get::<Option<String>>(row, 2)?.map_or(Owner::Root, Owner::from_db),
            totp: totp()?,
        },
        "hardware" => DeviceKind::Hardware {
            totp: totp()?,
            bound_to: get::<Option<String>>(row, 8)?.map(Owner::from_db),
        },
        "fido" => DeviceKind::Fido,
        other => return Err(corrupt(&format!("kind {other}"))),
    };
    Ok(Device {
        kind,
        assigned_to: get::<Option<String>>(row, 3)?.map(Owner::from_db),
        enabled_at: get::<Option<i64>>(row, 4)?.map(UnixTime::from_secs),
        serial,
    })
}
