//! The state changes of the identity store. Each runs inside the writer's transaction (one
//! savepoint per request), checks the current rows, writes, and logs what changed; so every check
//! and its write are atomic, whichever process calls them.

use rusqlite::{OptionalExtension as _, params};

use super::attempts;
use super::error::StoreError;
use super::index::Changed;
use super::rows;
use super::writer::WriteCtx;
use crate::ids;
use crate::mfa::totp::{TokenCode, TotpKey, TotpStep};
use crate::model::{AccessKey, Device, DeviceKind, Owner, User};

/// Access keys an identity may have, as in IAM.
pub(crate) const MAX_ACCESS_KEYS: u32 = 2;
/// Length of a generated virtual-device seed: 40 bytes, 64 base32 characters, as AWS's
/// (`docs/mfa.md#totp-algorithm`).
pub(crate) const VIRTUAL_SEED_BYTES: usize = 40;

fn owner_exists(ctx: &WriteCtx<'_>, owner: &Owner) -> Result<bool, StoreError> {
    match owner {
        Owner::Root => Ok(true),
        Owner::User(id) => Ok(rows::user_by_id(ctx.conn(), id)?.is_some()),
    }
}

fn count(ctx: &WriteCtx<'_>, sql: &str, key: &str) -> Result<i64, StoreError> {
    Ok(ctx
        .conn()
        .prepare_cached(sql)?
        .query_row([key], |r| r.get(0))?)
}

/// Creates an IAM user.
pub(crate) fn create_user(
    ctx: &mut WriteCtx<'_>,
    name: &str,
    path: &str,
) -> Result<User, StoreError> {
    if rows::user_by_name(ctx.conn(), name)?.is_some() {
        return Err(StoreError::UserExists(name.to_owned()));
    }
    let user = User {
        id: ids::user_id()?.into(),
        name: name.to_owned(),
        path: path.to_owned(),
        created_at: ctx.now,
    };
    ctx.conn().execute(
        "INSERT INTO user(id, name, name_lc, path, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            user.id,
            user.name,
            name.to_lowercase(),
            user.path,
            user.created_at.secs()
        ],
    )?;
    ctx.touch(&Changed::User(user.id.to_string()))?;
    Ok(user)
}

/// Deletes an IAM user that has no access keys and no MFA devices left.
pub(crate) fn delete_user(ctx: &mut WriteCtx<'_>, name: &str) -> Result<User, StoreError> {
    let user = rows::user_by_name(ctx.conn(), name)?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
    if count(
        ctx,
        "SELECT COUNT(*) FROM access_key WHERE owner = ?1",
        &user.id,
    )? > 0
    {
        return Err(StoreError::UserHasAccessKeys);
    }
    if count(
        ctx,
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = ?1",
        &user.id,
    )? > 0
    {
        return Err(StoreError::UserHasDevices);
    }
    ctx.conn()
        .execute("DELETE FROM user WHERE id = ?1", [&user.id])?;
    attempts::forget_caller(ctx, &user.id)?;
    ctx.touch(&Changed::User(user.id.to_string()))?;
    Ok(user)
}

/// Creates an access key for `owner`; at most [`MAX_ACCESS_KEYS`].
pub(crate) fn create_access_key(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
) -> Result<AccessKey, StoreError> {
    if !owner_exists(ctx, owner)? {
        return Err(StoreError::Corrupt("access key for a missing user".into()));
    }
    let keys = count(
        ctx,
        "SELECT COUNT(*) FROM access_key WHERE owner = ?1",
        owner.as_db(),
    )?;
    if keys >= i64::from(MAX_ACCESS_KEYS) {
        return Err(StoreError::AccessKeyQuota(MAX_ACCESS_KEYS));
    }
    insert_access_key(ctx, owner)
}

/// Inserts a new active key without quota checks (bootstrap of the root key).
pub(crate) fn insert_access_key(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
) -> Result<AccessKey, StoreError> {
    let key = AccessKey {
        id: ids::access_key_id("AKIA")?,
        owner: owner.clone(),
        secret: ids::secret_access_key()?,
        active: true,
        created_at: ctx.now,
    };
    let sealed = ctx
        .sealer
        .seal(&rows::key_context(&key.id), key.secret.as_bytes())?;
    ctx.conn().execute(
        "INSERT INTO access_key(id, owner, sealed_secret, active, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
        params![key.id, owner.as_db(), sealed, key.created_at.secs()],
    )?;
    ctx.touch(&Changed::AccessKey(key.id.clone()))?;
    Ok(key)
}

/// Sets a key of `owner` Active or Inactive.
pub(crate) fn update_access_key(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
    key_id: &str,
    active: bool,
) -> Result<(), StoreError> {
    let n = ctx.conn().execute(
        "UPDATE access_key SET active = ?1 WHERE id = ?2 AND owner = ?3",
        params![active, key_id, owner.as_db()],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchAccessKey(key_id.to_owned()));
    }
    ctx.touch(&Changed::AccessKey(key_id.to_owned()))
}

/// Deletes a key of `owner`.
pub(crate) fn delete_access_key(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
    key_id: &str,
) -> Result<(), StoreError> {
    let n = ctx.conn().execute(
        "DELETE FROM access_key WHERE id = ?1 AND owner = ?2",
        params![key_id, owner.as_db()],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchAccessKey(key_id.to_owned()));
    }
    ctx.touch(&Changed::AccessKey(key_id.to_owned()))
}

/// What CreateVirtualMFADevice hands back once, and never again.
pub(crate) struct NewVirtualDevice {
    /// `arn:aws:iam::ACCOUNT:mfa{path}{name}`.
    pub(crate) serial: String,
    /// The seed, for the base32 string and the QR code.
    pub(crate) seed: zeroize::Zeroizing<Vec<u8>>,
}

/// The serial of the virtual device `path` + `name` in `account_id`.
pub(crate) fn virtual_serial(account_id: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account_id}:mfa{path}{name}")
}

/// How many virtual devices may exist (`docs/iam-mfa-api.md#createvirtualmfadevice`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VirtualQuota {
    /// In the account, assigned or not.
    pub(crate) per_account: u32,
    /// Unassigned ones an IAM user created.
    pub(crate) unassigned_per_user: u32,
}

/// Creates an unassigned virtual device with a new random seed, within `quota`.
pub(crate) fn create_virtual_device(
    ctx: &mut WriteCtx<'_>,
    name: &str,
    path: &str,
    creator: &Owner,
    quota: VirtualQuota,
) -> Result<NewVirtualDevice, StoreError> {
    let serial = virtual_serial(ctx.account_id, path, name);
    let exists: Option<i64> = ctx
        .conn()
        .query_row(
            "SELECT 1 FROM mfa_device WHERE serial = ?1",
            [&serial],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::DeviceExists(serial));
    }
    // Counting scans every device; an unlimited quota (the operator's bulk path) has nothing
    // to count against, and a scan per device would make provisioning quadratic.
    if quota.per_account < u32::MAX {
        let in_account: i64 = ctx
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM mfa_device WHERE kind = 'virtual'")?
            .query_row([], |r| r.get(0))?;
        if in_account >= i64::from(quota.per_account) {
            return Err(StoreError::VirtualDeviceQuota(quota.per_account));
        }
    }
    if let Owner::User(id) = creator {
        let unassigned = count(
            ctx,
            "SELECT COUNT(*) FROM mfa_device WHERE creator = ?1 AND kind = 'virtual' AND assigned_to IS NULL",
            id,
        )?;
        if unassigned >= i64::from(quota.unassigned_per_user) {
            return Err(StoreError::UnassignedDeviceQuota(quota.unassigned_per_user));
        }
    }
    let seed = zeroize::Zeroizing::new(ids::random_bytes::<VIRTUAL_SEED_BYTES>()?.to_vec());
    let sealed = ctx.sealer.seal(&rows::seed_context(&serial), &seed)?;
    ctx.conn().execute(
        "INSERT INTO mfa_device(serial, kind, name, path, creator, sealed_seed, created_at) VALUES (?1, 'virtual', ?2, ?3, ?4, ?5, ?6)",
        params![serial, name, path, creator.as_db(), sealed, ctx.now.secs()],
    )?;
    ctx.touch(&Changed::Device(serial.clone()))?;
    Ok(NewVirtualDevice { serial, seed })
}

/// Imports a hardware TOTP token from a vendor seed file row, bound to `bound_to` when given
/// (then only that identity may see and enable it).
pub(crate) fn import_hardware_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    seed: &[u8],
    bound_to: Option<&Owner>,
) -> Result<(), StoreError> {
    TotpKey::new(seed).map_err(|e| StoreError::UnusableSeed {
        serial: serial.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(owner) = bound_to
        && !owner_exists(ctx, owner)?
    {
        return Err(StoreError::NoSuchUser(owner.as_db().to_owned()));
    }
    let sealed = ctx.sealer.seal(&rows::seed_context(serial), seed)?;
    let n = ctx.conn().execute(
        "INSERT OR IGNORE INTO mfa_device(serial, kind, sealed_seed, bound_to, created_at) VALUES (?1, 'hardware', ?2, ?3, ?4)",
        params![serial, sealed, bound_to.map(Owner::as_db), ctx.now.secs()],
    )?;
    if n == 0 {
        return Err(StoreError::DeviceExists(serial.to_owned()));
    }
    ctx.touch(&Changed::Device(serial.to_owned()))
}

/// A FIDO security key to register, as the console would.
pub(crate) struct FidoRegistration {
    /// Whose key.
    pub(crate) owner: Owner,
    /// The owner's name in the serial (`root` for the root user).
    pub(crate) owner_name: String,
    /// The key's name.
    pub(crate) key_name: String,
    /// WebAuthn credential id, base64url.
    pub(crate) credential_id: String,
    /// Credential public key, base64url.
    pub(crate) public_key: String,
    /// Devices the owner may hold.
    pub(crate) max_devices: u32,
}

/// Registers (and so enables) a FIDO security key; returns its serial.
pub(crate) fn register_fido_key(
    ctx: &mut WriteCtx<'_>,
    key: &FidoRegistration,
) -> Result<String, StoreError> {
    if !owner_exists(ctx, &key.owner)? {
        return Err(StoreError::NoSuchUser(key.owner_name.clone()));
    }
    check_device_quota(ctx, &key.owner, key.max_devices)?;
    let suffix: String = hex::encode(ids::random_bytes::<4>()?).to_uppercase();
    let serial = format!(
        "arn:aws:iam::{}:u2f/user/{}/{}-{suffix}",
        ctx.account_id, key.owner_name, key.key_name
    );
    ctx.conn().execute(
        "INSERT INTO mfa_device(serial, kind, name, assigned_to, enabled_at, credential_id, public_key, created_at) VALUES (?1, 'fido', ?2, ?3, ?4, ?5, ?6, ?4)",
        params![
            serial,
            key.key_name,
            key.owner.as_db(),
            ctx.now.secs(),
            key.credential_id,
            key.public_key
        ],
    )?;
    ctx.touch(&Changed::Device(serial.clone()))?;
    Ok(serial)
}

fn held_devices(ctx: &WriteCtx<'_>, owner: &Owner) -> Result<i64, StoreError> {
    count(
        ctx,
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = ?1",
        owner.as_db(),
    )
}

fn check_device_quota(ctx: &WriteCtx<'_>, owner: &Owner, max: u32) -> Result<(), StoreError> {
    if held_devices(ctx, owner)? >= i64::from(max) {
        return Err(StoreError::DeviceQuota(max));
    }
    Ok(())
}

fn load_device(ctx: &WriteCtx<'_>, serial: &str) -> Result<Device, StoreError> {
    rows::device_by_serial(ctx.conn(), ctx.sealer, serial)?
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))
}

/// Two consecutive codes of a device, as EnableMFADevice and ResyncMFADevice take them.
pub(crate) struct CodePair {
    /// The device.
    pub(crate) serial: String,
    /// Whose device it is (Enable: who it is for).
    pub(crate) owner: Owner,
    /// The first code and the one after it.
    pub(crate) codes: (TokenCode, TokenCode),
    /// Steps searched on each side of now to learn the device's drift.
    pub(crate) window: u32,
}

/// Finds the step of two consecutive codes around now; the second code's step must be later
/// than anything accepted before. Returns `(second step, drift in steps)`.
fn consecutive_step(
    ctx: &WriteCtx<'_>,
    device: &Device,
    pair: &CodePair,
) -> Result<(TotpStep, i64), StoreError> {
    consecutive_step_at(ctx.now, device, pair)
}

/// [`consecutive_step`] at `now`, for any store.
pub(crate) fn consecutive_step_at(
    now: crate::time::UnixTime,
    device: &Device,
    pair: &CodePair,
) -> Result<(TotpStep, i64), StoreError> {
    let totp = device.totp().ok_or(StoreError::FidoKey)?;
    let now_step = TotpStep::at(now);
    let found = totp
        .key
        .find_consecutive(pair.codes.0, pair.codes.1, now_step, pair.window)
        .ok_or(StoreError::InvalidCodes)?;
    let second_step = found + 1;
    if second_step <= totp.last_step {
        return Err(StoreError::InvalidCodes);
    }
    Ok((second_step, second_step.steps_since(now_step)))
}

/// Who may enable how many devices for an identity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnableRules {
    /// Devices an identity may have enabled.
    pub(crate) max_devices: u32,
    /// Whether the caller may add a device to an identity that already has one enabled: root,
    /// the operator, or MFA-backed session credentials. A long-term key alone may enable only
    /// a first device (`docs/mfa.md#who-may-enable-what`).
    pub(crate) may_add_to_enabled: bool,
}

/// EnableMFADevice: assigns a virtual or hardware device after two consecutive codes,
/// remembering the device's drift and consuming both codes; the device's failure records go
/// in the same transaction.
pub(crate) fn enable_device(
    ctx: &mut WriteCtx<'_>,
    pair: &CodePair,
    rules: EnableRules,
) -> Result<Device, StoreError> {
    let device = load_device(ctx, &pair.serial)?;
    if device.is_fido() {
        return Err(StoreError::FidoKey);
    }
    if device.assigned_to.is_some() {
        return Err(StoreError::DeviceInUse);
    }
    if !owner_exists(ctx, &pair.owner)? {
        return Err(StoreError::NoSuchDevice(pair.serial.clone()));
    }
    if !rules.may_add_to_enabled && held_devices(ctx, &pair.owner)? > 0 {
        return Err(StoreError::MfaRequired);
    }
    check_device_quota(ctx, &pair.owner, rules.max_devices)?;
    let (step, drift) = consecutive_step(ctx, &device, pair)?;
    ctx.conn().execute(
        "UPDATE mfa_device SET assigned_to = ?1, enabled_at = ?2, drift = ?3, last_step = ?4 WHERE serial = ?5",
        params![pair.owner.as_db(), ctx.now.secs(), drift, step.get(), pair.serial],
    )?;
    attempts::forget_device(ctx, &pair.serial)?;
    ctx.touch(&Changed::Device(pair.serial.clone()))?;
    load_device(ctx, &pair.serial)
}

/// ResyncMFADevice: learns the drift of the owner's enabled device from two consecutive codes.
pub(crate) fn resync_device(ctx: &mut WriteCtx<'_>, pair: &CodePair) -> Result<(), StoreError> {
    let device = load_device(ctx, &pair.serial)?;
    if device.assigned_to.as_ref() != Some(&pair.owner) {
        return Err(StoreError::NoSuchDevice(pair.serial.clone()));
    }
    if device.is_fido() {
        return Err(StoreError::FidoKey);
    }
    let (step, drift) = consecutive_step(ctx, &device, pair)?;
    ctx.conn().execute(
        "UPDATE mfa_device SET drift = ?1, last_step = ?2 WHERE serial = ?3",
        params![drift, step.get(), pair.serial],
    )?;
    attempts::forget_device(ctx, &pair.serial)?;
    ctx.touch(&Changed::Device(pair.serial.clone()))
}

/// DeactivateMFADevice: unassigns `owner`'s device. Virtual and hardware devices go back to
/// the unassigned pool (their last accepted step stays, so old codes stay spent); a FIDO key's
/// registration is removed.
pub(crate) fn deactivate_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    owner: &Owner,
) -> Result<Device, StoreError> {
    let device = load_device(ctx, serial)?;
    if device.assigned_to.as_ref() != Some(owner) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.is_fido() {
        ctx.conn()
            .execute("DELETE FROM mfa_device WHERE serial = ?1", [serial])?;
    } else {
        ctx.conn().execute(
            "UPDATE mfa_device SET assigned_to = NULL, enabled_at = NULL, drift = 0 WHERE serial = ?1",
            [serial],
        )?;
        // Its failures were its holder's; unassigned, it is counted afresh (per caller, for a
        // hardware token).
        attempts::forget_device(ctx, serial)?;
    }
    ctx.touch(&Changed::Device(serial.to_owned()))?;
    Ok(device)
}

/// Deactivates a device whoever holds it (the operator's command).
pub(crate) fn deactivate_any_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
) -> Result<Device, StoreError> {
    let owner = load_device(ctx, serial)?
        .assigned_to
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))?;
    deactivate_device(ctx, serial, &owner)
}

/// DeleteVirtualMFADevice: removes an unassigned virtual device.
pub(crate) fn delete_virtual_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
) -> Result<Device, StoreError> {
    let device = load_device(ctx, serial)?;
    if !matches!(device.kind, DeviceKind::Virtual { .. }) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.assigned_to.is_some() {
        return Err(StoreError::DeviceAssigned);
    }
    ctx.conn()
        .execute("DELETE FROM mfa_device WHERE serial = ?1", [serial])?;
    ctx.touch(&Changed::Device(serial.to_owned()))?;
    Ok(device)
}

/// Deletes a device whatever it is and whoever holds it (the operator's command): also the
/// devices no API call can name. Its failure records go with it.
pub(crate) fn delete_any_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
) -> Result<Option<Owner>, StoreError> {
    let holder: Option<Option<String>> = ctx
        .conn()
        .query_row(
            "SELECT assigned_to FROM mfa_device WHERE serial = ?1",
            [serial],
            |r| r.get(0),
        )
        .optional()?;
    let Some(holder) = holder else {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    };
    ctx.conn()
        .execute("DELETE FROM mfa_device WHERE serial = ?1", [serial])?;
    ctx.touch(&Changed::Device(serial.to_owned()))?;
    Ok(holder.map(Owner::from_db))
}

/// Makes an accepted TOTP step durable and clears the device's failures, in one statement
/// pair of the same transaction (the success costs no commit of its own). `false` when the
/// stored step is already at or past it (another process accepted it first): the code must
/// then be refused as a replay, and the failures stay.
pub(crate) fn record_accepted_step(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    step: TotpStep,
) -> Result<bool, StoreError> {
    let recorded = record_step(ctx, serial, step)?;
    if recorded {
        attempts::forget_device(ctx, serial)?;
    }
    Ok(recorded)
}

/// Records `step` as the device's last accepted step if it is later than the one stored (the
/// replay authority: of racing writers, one changes the row); `false` otherwise, or when the
/// device is not assigned. The failures are the caller's to settle.
pub(crate) fn record_step(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    step: TotpStep,
) -> Result<bool, StoreError> {
    let n = ctx.conn().prepare_cached(
        "UPDATE mfa_device SET last_step = ?1 WHERE serial = ?2 AND last_step < ?1 AND assigned_to IS NOT NULL",
    )?
    .execute(params![step.get(), serial])?;
    Ok(n == 1)
}
