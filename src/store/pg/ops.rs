//! The state changes of the identity store on PostgreSQL: the same operations, checks and
//! answers as `store::ops` (SQLite), each inside one transaction. Where SQLite's single writer
//! serialises every check with its write, these take an advisory lock on what they count
//! (`PgWrite::lock`) or lock the row they change (`FOR UPDATE`), so that the nodes cannot
//! together exceed a quota or enable one device twice; names and serials taken by a racing
//! node are caught by the primary key (`ON CONFLICT DO NOTHING`).

use super::rows::{self, DEVICE_COLUMNS, USER_COLUMNS};
use super::{PgWrite, pg_error};
use crate::ids;
use crate::mfa::totp::{TotpKey, TotpStep};
use crate::model::{AccessKey, Device, DeviceKind, Owner, User};
use crate::store::error::StoreError;
use crate::store::index::Changed;
use crate::store::ops::{
    CodePair, EnableRules, FidoRegistration, MAX_ACCESS_KEYS, NewVirtualDevice, VIRTUAL_SEED_BYTES,
    VirtualQuota, consecutive_step_at, virtual_serial,
};
use crate::store::rows::{key_context, seed_context};

/// The lock every count of an owner's keys and devices takes.
fn owner_lock(owner: &Owner) -> String {
    format!("owner:{}", owner.as_db())
}

/// The lock of the account-wide virtual device count.
const VIRTUAL_DEVICES_LOCK: &str = "account:virtual_devices";

async fn count(w: &PgWrite<'_>, sql: &str, key: &str) -> Result<i64, StoreError> {
    let rows = w.query(sql, &[&key]).await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("a count returned no row".into()))?;
    row.try_get(0).map_err(pg_error)
}

async fn user_by_name(w: &PgWrite<'_>, name: &str) -> Result<Option<User>, StoreError> {
    w.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM iam_user WHERE name_lc = $1"),
        &[&name.to_lowercase()],
    )
    .await?
    .map(|r| rows::user(&r))
    .transpose()
}

async fn owner_exists(w: &PgWrite<'_>, owner: &Owner) -> Result<bool, StoreError> {
    match owner {
        Owner::Root => Ok(true),
        Owner::User(id) => Ok(w
            .query_opt("SELECT 1 FROM iam_user WHERE id = $1", &[&&**id])
            .await?
            .is_some()),
    }
}

/// The device, locked until the commit.
async fn load_device(w: &PgWrite<'_>, serial: &str) -> Result<Device, StoreError> {
    let row = w
        .query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM mfa_device WHERE serial = $1 FOR UPDATE"),
            &[&serial],
        )
        .await?
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))?;
    rows::device(&row, w.sealer)
}

/// CreateUser.
pub(crate) async fn create_user(
    w: &mut PgWrite<'_>,
    name: &str,
    path: &str,
) -> Result<User, StoreError> {
    let user = User {
        id: ids::user_id()?.into(),
        name: name.to_owned(),
        path: path.to_owned(),
        created_at: w.now,
    };
    let n = w
        .execute(
            "INSERT INTO iam_user(id, name, name_lc, path, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[
                &&*user.id,
                &user.name,
                &name.to_lowercase(),
                &user.path,
                &user.created_at.secs(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::UserExists(name.to_owned()));
    }
    w.touch(&Changed::User(user.id.to_string())).await?;
    Ok(user)
}

/// DeleteUser: only without access keys and MFA devices.
pub(crate) async fn delete_user(w: &mut PgWrite<'_>, name: &str) -> Result<User, StoreError> {
    let user = user_by_name(w, name)
        .await?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
    let owner = Owner::User(user.id.clone());
    w.lock(&owner_lock(&owner)).await?;
    if count(
        w,
        "SELECT COUNT(*) FROM access_key WHERE owner = $1",
        &user.id,
    )
    .await?
        > 0
    {
        return Err(StoreError::UserHasAccessKeys);
    }
    if count(
        w,
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = $1",
        &user.id,
    )
    .await?
        > 0
    {
        return Err(StoreError::UserHasDevices);
    }
    w.execute("DELETE FROM iam_user WHERE id = $1", &[&&*user.id])
        .await?;
    w.touch(&Changed::User(user.id.to_string())).await?;
    Ok(user)
}

/// CreateAccessKey: at most [`MAX_ACCESS_KEYS`] per identity, counted under the owner's lock.
pub(crate) async fn create_access_key(
    w: &mut PgWrite<'_>,
    owner: &Owner,
) -> Result<AccessKey, StoreError> {
    w.lock(&owner_lock(owner)).await?;
    if !owner_exists(w, owner).await? {
        return Err(StoreError::Corrupt("access key for a missing user".into()));
    }
    let keys = count(
        w,
        "SELECT COUNT(*) FROM access_key WHERE owner = $1",
        owner.as_db(),
    )
    .await?;
    if keys >= i64::from(MAX_ACCESS_KEYS) {
        return Err(StoreError::AccessKeyQuota(MAX_ACCESS_KEYS));
    }
    let key = AccessKey {
        id: ids::access_key_id("AKIA")?,
        owner: owner.clone(),
        secret: ids::secret_access_key()?,
        active: true,
        created_at: w.now,
    };
    let sealed = w
        .sealer
        .seal(&key_context(&key.id), key.secret.as_bytes())?;
    w.execute(
        "INSERT INTO access_key(id, owner, sealed_secret, active, created_at) VALUES ($1, $2, $3, TRUE, $4)",
        &[&key.id, &owner.as_db(), &sealed, &key.created_at.secs()],
    )
    .await?;
    w.touch(&Changed::AccessKey(key.id.clone())).await?;
    Ok(key)
}

/// UpdateAccessKey.
pub(crate) async fn update_access_key(
    w: &mut PgWrite<'_>,
    owner: &Owner,
    key_id: &str,
    active: bool,
) -> Result<(), StoreError> {
    let n = w
        .execute(
            "UPDATE access_key SET active = $1 WHERE id = $2 AND owner = $3",
            &[&active, &key_id, &owner.as_db()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NoSuchAccessKey(key_id.to_owned()));
    }
    w.touch(&Changed::AccessKey(key_id.to_owned())).await
}

/// DeleteAccessKey.
pub(crate) async fn delete_access_key(
    w: &mut PgWrite<'_>,
    owner: &Owner,
    key_id: &str,
) -> Result<(), StoreError> {
    let n = w
        .execute(
            "DELETE FROM access_key WHERE id = $1 AND owner = $2",
            &[&key_id, &owner.as_db()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NoSuchAccessKey(key_id.to_owned()));
    }
    w.touch(&Changed::AccessKey(key_id.to_owned())).await
}

/// CreateVirtualMFADevice, within the account's and the creator's quotas (counted under the
/// account's lock, which every creation takes).
pub(crate) async fn create_virtual_device(
    w: &mut PgWrite<'_>,
    name: &str,
    path: &str,
    creator: &Owner,
    quota: VirtualQuota,
) -> Result<NewVirtualDevice, StoreError> {
    let serial = virtual_serial(w.account_id, path, name);
    w.lock(VIRTUAL_DEVICES_LOCK).await?;
    if w.query_opt("SELECT 1 FROM mfa_device WHERE serial = $1", &[&serial])
        .await?
        .is_some()
    {
        return Err(StoreError::DeviceExists(serial));
    }
    let in_account = count(
        w,
        "SELECT COUNT(*) FROM mfa_device WHERE kind = $1",
        "virtual",
    )
    .await?;
    if in_account >= i64::from(quota.per_account) {
        return Err(StoreError::VirtualDeviceQuota(quota.per_account));
    }
    if let Owner::User(id) = creator {
        let unassigned = count(
            w,
            "SELECT COUNT(*) FROM mfa_device WHERE creator = $1 AND kind = 'virtual' AND assigned_to IS NULL",
            id,
        )
        .await?;
        if unassigned >= i64::from(quota.unassigned_per_user) {
            return Err(StoreError::UnassignedDeviceQuota(quota.unassigned_per_user));
        }
    }
    let seed = zeroize::Zeroizing::new(ids::random_bytes::<VIRTUAL_SEED_BYTES>()?.to_vec());
    let sealed = w.sealer.seal(&seed_context(&serial), &seed)?;
    w.execute(
        "INSERT INTO mfa_device(serial, kind, name, path, creator, sealed_seed, created_at) VALUES ($1, 'virtual', $2, $3, $4, $5, $6)",
        &[&serial, &name, &path, &creator.as_db(), &sealed, &w.now.secs()],
    )
    .await?;
    w.touch(&Changed::Device(serial.clone())).await?;
    Ok(NewVirtualDevice { serial, seed })
}

/// Imports a hardware TOTP token (the operator's command), bound to `bound_to` when given.
pub(crate) async fn import_hardware_device(
    w: &mut PgWrite<'_>,
    serial: &str,
    seed: &[u8],
    bound_to: Option<&Owner>,
) -> Result<(), StoreError> {
    TotpKey::new(seed).map_err(|e| StoreError::UnusableSeed {
        serial: serial.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(owner) = bound_to
        && !owner_exists(w, owner).await?
    {
        return Err(StoreError::NoSuchUser(owner.as_db().to_owned()));
    }
    let sealed = w.sealer.seal(&seed_context(serial), seed)?;
    let n = w
        .execute(
            "INSERT INTO mfa_device(serial, kind, sealed_seed, bound_to, created_at) VALUES ($1, 'hardware', $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&serial, &sealed, &bound_to.map(Owner::as_db), &w.now.secs()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::DeviceExists(serial.to_owned()));
    }
    w.touch(&Changed::Device(serial.to_owned())).await
}

async fn held_devices(w: &PgWrite<'_>, owner: &Owner) -> Result<i64, StoreError> {
    count(
        w,
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = $1",
        owner.as_db(),
    )
    .await
}

/// Registers (and so enables) a FIDO security key (the operator's command).
pub(crate) async fn register_fido_key(
    w: &mut PgWrite<'_>,
    key: &FidoRegistration,
) -> Result<String, StoreError> {
    w.lock(&owner_lock(&key.owner)).await?;
    if !owner_exists(w, &key.owner).await? {
        return Err(StoreError::NoSuchUser(key.owner_name.clone()));
    }
    if held_devices(w, &key.owner).await? >= i64::from(key.max_devices) {
        return Err(StoreError::DeviceQuota(key.max_devices));
    }
    let suffix: String = hex::encode(ids::random_bytes::<4>()?).to_uppercase();
    let serial = format!(
        "arn:aws:iam::{}:u2f/user/{}/{}-{suffix}",
        w.account_id, key.owner_name, key.key_name
    );
    w.execute(
        "INSERT INTO mfa_device(serial, kind, name, assigned_to, enabled_at, credential_id, public_key, created_at) VALUES ($1, 'fido', $2, $3, $4, $5, $6, $4)",
        &[
            &serial,
            &key.key_name,
            &key.owner.as_db(),
            &w.now.secs(),
            &key.credential_id,
            &key.public_key,
        ],
    )
    .await?;
    w.touch(&Changed::Device(serial.clone())).await?;
    Ok(serial)
}

/// EnableMFADevice: the owner's quota is counted under the owner's lock, the device is locked
/// while it is checked and assigned, and both codes are consumed.
pub(crate) async fn enable_device(
    w: &mut PgWrite<'_>,
    pair: &CodePair,
    rules: EnableRules,
) -> Result<Device, StoreError> {
    w.lock(&owner_lock(&pair.owner)).await?;
    let device = load_device(w, &pair.serial).await?;
    if device.is_fido() {
        return Err(StoreError::FidoKey);
    }
    if device.assigned_to.is_some() {
        return Err(StoreError::DeviceInUse);
    }
    if !owner_exists(w, &pair.owner).await? {
        return Err(StoreError::NoSuchDevice(pair.serial.clone()));
    }
    let held = held_devices(w, &pair.owner).await?;
    if !rules.may_add_to_enabled && held > 0 {
        return Err(StoreError::MfaRequired);
    }
    if held >= i64::from(rules.max_devices) {
        return Err(StoreError::DeviceQuota(rules.max_devices));
    }
    let (step, drift) = consecutive_step_at(w.now, &device, pair)?;
    w.execute(
        "UPDATE mfa_device SET assigned_to = $1, enabled_at = $2, drift = $3, last_step = $4 WHERE serial = $5",
        &[&pair.owner.as_db(), &w.now.secs(), &drift, &step.get(), &pair.serial],
    )
    .await?;
    w.touch(&Changed::Device(pair.serial.clone())).await?;
    load_device(w, &pair.serial).await
}

/// ResyncMFADevice.
pub(crate) async fn resync_device(w: &mut PgWrite<'_>, pair: &CodePair) -> Result<(), StoreError> {
    let device = load_device(w, &pair.serial).await?;
    if device.assigned_to.as_ref() != Some(&pair.owner) {
        return Err(StoreError::NoSuchDevice(pair.serial.clone()));
    }
    if device.is_fido() {
        return Err(StoreError::FidoKey);
    }
    let (step, drift) = consecutive_step_at(w.now, &device, pair)?;
    w.execute(
        "UPDATE mfa_device SET drift = $1, last_step = $2 WHERE serial = $3",
        &[&drift, &step.get(), &pair.serial],
    )
    .await?;
    w.touch(&Changed::Device(pair.serial.clone())).await
}

/// DeactivateMFADevice: the device goes back to the pool (its last step stays); a FIDO key's
/// registration is removed.
pub(crate) async fn deactivate_device(
    w: &mut PgWrite<'_>,
    serial: &str,
    owner: &Owner,
) -> Result<Device, StoreError> {
    let device = load_device(w, serial).await?;
    if device.assigned_to.as_ref() != Some(owner) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.is_fido() {
        w.execute("DELETE FROM mfa_device WHERE serial = $1", &[&serial])
            .await?;
    } else {
        w.execute(
            "UPDATE mfa_device SET assigned_to = NULL, enabled_at = NULL, drift = 0 WHERE serial = $1",
            &[&serial],
        )
        .await?;
    }
    w.touch(&Changed::Device(serial.to_owned())).await?;
    Ok(device)
}

/// Deactivates a device whoever holds it (the operator's command).
pub(crate) async fn deactivate_any_device(
    w: &mut PgWrite<'_>,
    serial: &str,
) -> Result<Device, StoreError> {
    let owner = load_device(w, serial)
        .await?
        .assigned_to
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))?;
    deactivate_device(w, serial, &owner).await
}

/// DeleteVirtualMFADevice: an unassigned virtual device.
pub(crate) async fn delete_virtual_device(
    w: &mut PgWrite<'_>,
    serial: &str,
) -> Result<Device, StoreError> {
    let device = load_device(w, serial).await?;
    if !matches!(device.kind, DeviceKind::Virtual { .. }) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.assigned_to.is_some() {
        return Err(StoreError::DeviceAssigned);
    }
    w.execute("DELETE FROM mfa_device WHERE serial = $1", &[&serial])
        .await?;
    w.touch(&Changed::Device(serial.to_owned())).await?;
    Ok(device)
}

/// Deletes a device whatever it is (the operator's command); who had it enabled.
pub(crate) async fn delete_any_device(
    w: &mut PgWrite<'_>,
    serial: &str,
) -> Result<Option<Owner>, StoreError> {
    let row = w
        .query_opt(
            "DELETE FROM mfa_device WHERE serial = $1 RETURNING assigned_to",
            &[&serial],
        )
        .await?
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))?;
    let holder: Option<String> = row.try_get(0).map_err(pg_error)?;
    w.touch(&Changed::Device(serial.to_owned())).await?;
    Ok(holder.map(Owner::from_db))
}

/// Makes an accepted TOTP step durable: the authority on replays across nodes. The update
/// applies only if the step is later than the stored one, and READ COMMITTED re-checks that
/// condition on the newest row after waiting for a concurrent update, so of nodes racing with
/// the same code exactly one changes the row; `false` for the others (a replay), whatever the
/// replay guard said.
pub(crate) async fn record_accepted_step(
    w: &mut PgWrite<'_>,
    serial: &str,
    step: TotpStep,
) -> Result<bool, StoreError> {
    let n = w
        .execute(
            "UPDATE mfa_device SET last_step = $1 WHERE serial = $2 AND last_step < $1 AND assigned_to IS NOT NULL",
            &[&step.get(), &serial],
        )
        .await?;
    Ok(n == 1)
}
