//! The state changes of the identity store. Each runs inside the writer's transaction (one
//! savepoint per request), checks the current rows, writes, and logs what changed; so every check
//! and its write are atomic, whichever process calls them.

use rusqlite::{OptionalExtension as _, params};

use super::error::StoreError;
use super::index::Changed;
use super::model::{AccessKey, Device, DeviceKind, Owner, User};
use super::rows;
use super::writer::WriteCtx;
use crate::ids;
use crate::mfa::totp::{TokenCode, TotpKey, step_at};

/// Access keys an identity may have, as in IAM.
pub const MAX_ACCESS_KEYS: i64 = 2;
/// Length of a generated virtual-device seed: 40 bytes, 64 base32 characters, as AWS's.
pub const VIRTUAL_SEED_BYTES: usize = 40;

fn owner_exists(ctx: &WriteCtx<'_>, owner: &Owner) -> Result<bool, StoreError> {
    match owner {
        Owner::Root => Ok(true),
        Owner::User(id) => Ok(rows::user_by_id(ctx.conn(), id)?.is_some()),
    }
}

/// Creates an IAM user.
pub fn create_user(ctx: &mut WriteCtx<'_>, name: &str, path: &str) -> Result<User, StoreError> {
    if rows::user_by_name(ctx.conn(), name)?.is_some() {
        return Err(StoreError::UserExists(name.to_owned()));
    }
    let user = User {
        id: ids::user_id()?,
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
            user.created_at
        ],
    )?;
    ctx.touch(&Changed::User(user.id.clone()))?;
    Ok(user)
}

/// Deletes an IAM user that has no access keys and no MFA devices left.
pub fn delete_user(ctx: &mut WriteCtx<'_>, name: &str) -> Result<User, StoreError> {
    let user = rows::user_by_name(ctx.conn(), name)?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
    let keys: i64 = ctx.conn().query_row(
        "SELECT COUNT(*) FROM access_key WHERE owner = ?1",
        [&user.id],
        |r| r.get(0),
    )?;
    if keys > 0 {
        return Err(StoreError::UserHasAccessKeys);
    }
    let devices: i64 = ctx.conn().query_row(
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = ?1",
        [&user.id],
        |r| r.get(0),
    )?;
    if devices > 0 {
        return Err(StoreError::UserHasDevices);
    }
    ctx.conn()
        .execute("DELETE FROM user WHERE id = ?1", [&user.id])?;
    ctx.touch(&Changed::User(user.id.clone()))?;
    Ok(user)
}

/// Creates an access key for `owner`; at most [`MAX_ACCESS_KEYS`].
pub fn create_access_key(ctx: &mut WriteCtx<'_>, owner: &Owner) -> Result<AccessKey, StoreError> {
    if !owner_exists(ctx, owner)? {
        return Err(StoreError::Corrupt("access key for a missing user".into()));
    }
    let count: i64 = ctx.conn().query_row(
        "SELECT COUNT(*) FROM access_key WHERE owner = ?1",
        [owner.as_db()],
        |r| r.get(0),
    )?;
    if count >= MAX_ACCESS_KEYS {
        return Err(StoreError::AccessKeyQuota);
    }
    insert_access_key(ctx, owner)
}

/// Inserts a new active key without quota checks (bootstrap of the root key).
pub fn insert_access_key(ctx: &mut WriteCtx<'_>, owner: &Owner) -> Result<AccessKey, StoreError> {
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
        params![key.id, owner.as_db(), sealed, key.created_at],
    )?;
    ctx.touch(&Changed::AccessKey(key.id.clone()))?;
    Ok(key)
}

/// Sets a key of `owner` Active or Inactive.
pub fn update_access_key(
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
pub fn delete_access_key(
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

/// One line of ListAccessKeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// `AKIA…`.
    pub id: String,
    /// Active or not.
    pub active: bool,
    /// Creation time.
    pub created_at: i64,
}

/// The keys of `owner`, oldest first.
pub fn list_access_keys(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
) -> Result<Vec<KeyMetadata>, StoreError> {
    let mut stmt = ctx.conn().prepare_cached(
        "SELECT id, active, created_at FROM access_key WHERE owner = ?1 ORDER BY created_at, id",
    )?;
    let keys = stmt
        .query_map([owner.as_db()], |r| {
            Ok(KeyMetadata {
                id: r.get(0)?,
                active: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// A page of a listing: the items and, when truncated, the marker of the next page.
#[derive(Debug)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts, when there is one.
    pub next_marker: Option<String>,
}

/// Users whose path starts with `path_prefix`, by name, after `marker`.
pub fn list_users(
    ctx: &mut WriteCtx<'_>,
    path_prefix: &str,
    marker: Option<&str>,
    max_items: usize,
) -> Result<Page<User>, StoreError> {
    let mut stmt = ctx.conn().prepare_cached(&format!(
        "SELECT {} FROM user WHERE name_lc > ?1 AND substr(path, 1, length(?2)) = ?2 ORDER BY name_lc LIMIT ?3",
        rows::USER_COLUMNS
    ))?;
    let limit = i64::try_from(max_items.saturating_add(1)).unwrap_or(i64::MAX);
    let mut users = stmt
        .query_map(
            params![marker.unwrap_or(""), path_prefix, limit],
            rows::user,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let next_marker = if users.len() > max_items {
        users.truncate(max_items);
        users.last().map(|u| u.name.to_lowercase())
    } else {
        None
    };
    Ok(Page {
        items: users,
        next_marker,
    })
}

/// How TOTP codes are checked in a write.
#[derive(Clone, Copy, Debug)]
pub struct CodeCheck {
    /// Steps searched on each side of the device's expected step.
    pub window: u32,
}

/// What CreateVirtualMFADevice hands back once, and never again.
pub struct NewVirtualDevice {
    /// `arn:aws:iam::ACCOUNT:mfa{path}{name}`.
    pub serial: String,
    /// The seed, for the base32 string and the QR code.
    pub seed: zeroize::Zeroizing<Vec<u8>>,
}

/// Creates an unassigned virtual device with a new random seed.
pub fn create_virtual_device(
    ctx: &mut WriteCtx<'_>,
    name: &str,
    path: &str,
    creator: &Owner,
) -> Result<NewVirtualDevice, StoreError> {
    let serial = format!("arn:aws:iam::{}:mfa{path}{name}", ctx.account_id);
    let exists: Option<i64> = ctx
        .conn()
        .query_row(
            "SELECT 1 FROM mfa_device WHERE serial = ?1",
            [&serial],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::DeviceExists);
    }
    let seed = zeroize::Zeroizing::new(ids::random_bytes::<VIRTUAL_SEED_BYTES>()?.to_vec());
    let sealed = ctx.sealer.seal(&rows::seed_context(&serial), &seed)?;
    ctx.conn().execute(
        "INSERT INTO mfa_device(serial, kind, name, path, creator, sealed_seed, created_at) VALUES (?1, 'virtual', ?2, ?3, ?4, ?5, ?6)",
        params![serial, name, path, creator.as_db(), sealed, ctx.now],
    )?;
    ctx.touch(&Changed::Device(serial.clone()))?;
    Ok(NewVirtualDevice { serial, seed })
}

/// Imports a hardware TOTP token from a vendor seed file row.
pub fn import_hardware_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    seed: &[u8],
) -> Result<(), StoreError> {
    TotpKey::new(seed)
        .map_err(|e| StoreError::WrongDeviceKind(format!("seed of {serial}: {e}")))?;
    let sealed = ctx.sealer.seal(&rows::seed_context(serial), seed)?;
    let n = ctx.conn().execute(
        "INSERT OR IGNORE INTO mfa_device(serial, kind, sealed_seed, created_at) VALUES (?1, 'hardware', ?2, ?3)",
        params![serial, sealed, ctx.now],
    )?;
    if n == 0 {
        return Err(StoreError::DeviceExists);
    }
    ctx.touch(&Changed::Device(serial.to_owned()))
}

/// Registers (and so enables) a FIDO security key for a user or root, as the console would.
pub fn register_fido_key(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
    owner_name: &str,
    key_name: &str,
    credential_id: &str,
    public_key: &str,
    max_devices: u32,
) -> Result<String, StoreError> {
    if !owner_exists(ctx, owner)? {
        return Err(StoreError::NoSuchUser(owner_name.to_owned()));
    }
    check_device_quota(ctx, owner, max_devices)?;
    let suffix: String = hex::encode(ids::random_bytes::<4>()?).to_uppercase();
    let serial = format!(
        "arn:aws:iam::{}:u2f/user/{owner_name}/{key_name}-{suffix}",
        ctx.account_id
    );
    ctx.conn().execute(
        "INSERT INTO mfa_device(serial, kind, name, assigned_to, enabled_at, credential_id, public_key, created_at) VALUES (?1, 'fido', ?2, ?3, ?4, ?5, ?6, ?4)",
        params![serial, key_name, owner.as_db(), ctx.now, credential_id, public_key],
    )?;
    ctx.touch(&Changed::Device(serial.clone()))?;
    Ok(serial)
}

fn check_device_quota(ctx: &WriteCtx<'_>, owner: &Owner, max: u32) -> Result<(), StoreError> {
    let count: i64 = ctx.conn().query_row(
        "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = ?1",
        [owner.as_db()],
        |r| r.get(0),
    )?;
    if count >= i64::from(max) {
        return Err(StoreError::DeviceQuota(max));
    }
    Ok(())
}

fn load_device(ctx: &WriteCtx<'_>, serial: &str) -> Result<Device, StoreError> {
    rows::device_by_serial(ctx.conn(), ctx.sealer, serial)?
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()))
}

/// Finds the step of two consecutive codes around the device's expected step; the second
/// code's step must be later than anything accepted before.
fn consecutive_step(
    ctx: &WriteCtx<'_>,
    device: &Device,
    first: TokenCode,
    second: TokenCode,
    check: CodeCheck,
) -> Result<i64, StoreError> {
    let key = device
        .totp
        .as_ref()
        .ok_or_else(|| StoreError::WrongDeviceKind(fido_api_refusal()))?;
    let now_step = step_at(ctx.now);
    let found = key
        .find_consecutive(first, second, now_step, check.window)
        .ok_or(StoreError::InvalidCodes)?;
    let second_step = found.saturating_add(1);
    if second_step <= device.last_step {
        return Err(StoreError::InvalidCodes);
    }
    Ok(second_step)
}

/// The refusal for FIDO keys on the API path.
pub fn fido_api_refusal() -> String {
    "FIDO security keys cannot be enabled or synchronized through the AWS CLI or API; register them through the console (sts-broker admin mfa register-fido).".to_owned()
}

/// EnableMFADevice: assigns a virtual or hardware device to `owner` after two consecutive codes,
/// remembering the device's drift and consuming both codes.
pub fn enable_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    owner: &Owner,
    codes: (TokenCode, TokenCode),
    check: CodeCheck,
    max_devices: u32,
) -> Result<Device, StoreError> {
    let device = load_device(ctx, serial)?;
    if device.kind == DeviceKind::Fido {
        return Err(StoreError::WrongDeviceKind(fido_api_refusal()));
    }
    if device.assigned_to.is_some() {
        return Err(StoreError::DeviceInUse);
    }
    if !owner_exists(ctx, owner)? {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    check_device_quota(ctx, owner, max_devices)?;
    let step = consecutive_step(ctx, &device, codes.0, codes.1, check)?;
    let drift = step - step_at(ctx.now);
    ctx.conn().execute(
        "UPDATE mfa_device SET assigned_to = ?1, enabled_at = ?2, drift = ?3, last_step = ?4 WHERE serial = ?5",
        params![owner.as_db(), ctx.now, drift, step, serial],
    )?;
    ctx.touch(&Changed::Device(serial.to_owned()))?;
    load_device(ctx, serial)
}

/// ResyncMFADevice: learns the drift of `owner`'s enabled device from two consecutive codes.
pub fn resync_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    owner: &Owner,
    codes: (TokenCode, TokenCode),
    check: CodeCheck,
) -> Result<(), StoreError> {
    let device = load_device(ctx, serial)?;
    if device.assigned_to.as_ref() != Some(owner) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.kind == DeviceKind::Fido {
        return Err(StoreError::WrongDeviceKind(fido_api_refusal()));
    }
    let step = consecutive_step(ctx, &device, codes.0, codes.1, check)?;
    let drift = step - step_at(ctx.now);
    ctx.conn().execute(
        "UPDATE mfa_device SET drift = ?1, last_step = ?2 WHERE serial = ?3",
        params![drift, step, serial],
    )?;
    ctx.touch(&Changed::Device(serial.to_owned()))
}

/// DeactivateMFADevice: unassigns `owner`'s device. Virtual and hardware devices go back to
/// the unassigned pool (their last accepted step stays, so old codes stay spent); a FIDO key's
/// registration is removed.
pub fn deactivate_device(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    owner: &Owner,
) -> Result<Device, StoreError> {
    let device = load_device(ctx, serial)?;
    if device.assigned_to.as_ref() != Some(owner) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()));
    }
    if device.kind == DeviceKind::Fido {
        ctx.conn()
            .execute("DELETE FROM mfa_device WHERE serial = ?1", [serial])?;
    } else {
        ctx.conn().execute(
            "UPDATE mfa_device SET assigned_to = NULL, enabled_at = NULL, drift = 0 WHERE serial = ?1",
            [serial],
        )?;
    }
    ctx.touch(&Changed::Device(serial.to_owned()))?;
    Ok(device)
}

/// DeleteVirtualMFADevice: removes an unassigned virtual device.
pub fn delete_virtual_device(ctx: &mut WriteCtx<'_>, serial: &str) -> Result<Device, StoreError> {
    let device = load_device(ctx, serial)?;
    if device.kind != DeviceKind::Virtual {
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

/// Makes an accepted TOTP step durable. `false` when the stored step is already at or past it
/// (another process accepted it first): the code must then be refused as a replay.
pub fn record_accepted_step(
    ctx: &mut WriteCtx<'_>,
    serial: &str,
    step: i64,
) -> Result<bool, StoreError> {
    let n = ctx.conn().execute(
        "UPDATE mfa_device SET last_step = ?1 WHERE serial = ?2 AND last_step < ?1 AND assigned_to IS NOT NULL",
        params![step, serial],
    )?;
    Ok(n == 1)
}

/// Devices assigned to `owner`, by enable date.
pub fn list_assigned_devices(
    ctx: &mut WriteCtx<'_>,
    owner: &Owner,
) -> Result<Vec<Device>, StoreError> {
    let mut stmt = ctx.conn().prepare_cached(&format!(
        "SELECT {} FROM mfa_device WHERE assigned_to = ?1 ORDER BY enabled_at, serial",
        rows::DEVICE_COLUMNS
    ))?;
    let mut q = stmt.query([owner.as_db()])?;
    let mut out = Vec::new();
    while let Some(row) = q.next()? {
        out.push(rows::device(row, ctx.sealer)?);
    }
    Ok(out)
}

/// Which virtual devices ListVirtualMFADevices returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// Enabled for someone.
    Assigned,
    /// Not enabled.
    Unassigned,
    /// Both.
    Any,
}

/// Virtual devices by serial after `marker`; `creator` limits them to the ones an IAM user
/// created or has assigned (users see only their own).
pub fn list_virtual_devices(
    ctx: &mut WriteCtx<'_>,
    assignment: Assignment,
    visible_to: Option<&Owner>,
    marker: Option<&str>,
    max_items: usize,
) -> Result<Page<Device>, StoreError> {
    let status = match assignment {
        Assignment::Assigned => "AND assigned_to IS NOT NULL",
        Assignment::Unassigned => "AND assigned_to IS NULL",
        Assignment::Any => "",
    };
    let mut stmt = ctx.conn().prepare_cached(&format!(
        "SELECT {} FROM mfa_device WHERE kind = 'virtual' AND serial > ?1 {status} AND (?2 IS NULL OR assigned_to = ?2 OR (assigned_to IS NULL AND creator = ?2)) ORDER BY serial LIMIT ?3",
        rows::DEVICE_COLUMNS
    ))?;
    let limit = i64::try_from(max_items.saturating_add(1)).unwrap_or(i64::MAX);
    let mut q = stmt.query(params![
        marker.unwrap_or(""),
        visible_to.map(Owner::as_db),
        limit
    ])?;
    let mut items = Vec::new();
    while let Some(row) = q.next()? {
        items.push(rows::device(row, ctx.sealer)?);
    }
    let next_marker = if items.len() > max_items {
        items.truncate(max_items);
        items.last().map(|d| d.serial.clone())
    } else {
        None
    };
    Ok(Page { items, next_marker })
}
