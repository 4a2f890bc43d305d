//! The storage boundary the API, the admin commands and the gate use: one method per
//! operation, taking the request types `store::ops` and `store::queries` define, answered by
//! the embedded SQLite [`Store`] (through its writer thread, unchanged) or by the shared
//! [`PgStore`] (`docs/multinode.md`). An enum rather than a trait object: two known backends,
//! no boxed futures on the request path.

use std::sync::Arc;

use super::error::StoreError;
use super::ops::{self, CodePair, EnableRules, FidoRegistration, NewVirtualDevice, VirtualQuota};
use super::pg::{self, PgStore};
use super::queries::{self, Assignment, KeyMetadata, Page, PageRequest};
use super::{Index, RequiredLine, ServerKey, Store};
use crate::mfa::totp::TotpStep;
use crate::model::{AccessKey, Device, Owner, User};
use crate::time::UnixTime;

/// The identity store of a broker or an admin command.
#[derive(Clone, Debug)]
pub(crate) enum IdentityStore {
    /// The embedded store of one machine.
    Sqlite(Store),
    /// The store shared by several nodes.
    Postgres(PgStore),
}

/// A hardware token to import: serial, seed, and the identity it is bound to.
pub(crate) type HardwareRow = (String, zeroize::Zeroizing<Vec<u8>>, Option<Owner>);

impl IdentityStore {
    /// The 12-digit account id.
    pub(crate) fn account_id(&self) -> &str {
        match self {
            Self::Sqlite(s) => s.account_id(),
            Self::Postgres(s) => s.account_id(),
        }
    }

    /// When the account was created.
    pub(crate) fn account_created_at(&self) -> UnixTime {
        match self {
            Self::Sqlite(s) => s.account_created_at(),
            Self::Postgres(s) => s.account_created_at(),
        }
    }

    /// The in-memory index, when loaded.
    pub(crate) fn index(&self) -> Option<&Arc<Index>> {
        match self {
            Self::Sqlite(s) => s.index(),
            Self::Postgres(s) => s.index(),
        }
    }

    /// Session-credential keys, newest first.
    pub(crate) fn server_keys(&self) -> &[ServerKey] {
        match self {
            Self::Sqlite(s) => s.server_keys(),
            Self::Postgres(s) => s.server_keys(),
        }
    }

    /// The embedded store, for what only it has (its own lock-out, bulk provisioning).
    pub(crate) fn sqlite(&self) -> Option<&Store> {
        match self {
            Self::Sqlite(s) => Some(s),
            Self::Postgres(_) => None,
        }
    }

    /// Whether the store answers (the readiness probe): the SQLite writer always does while
    /// the process runs; PostgreSQL is asked.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(s) => s.ready().await,
        }
    }

    /// Appends an audit line without waiting.
    pub(crate) fn audit(&self, line: String) {
        match self {
            Self::Sqlite(s) => s.audit(line),
            Self::Postgres(s) => s.audit(line),
        }
    }

    /// Appends an audit line and waits until it is durable.
    pub(crate) async fn audit_and_wait(&self, line: RequiredLine) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.audit_and_wait(line).await,
            Self::Postgres(s) => s.audit_and_wait(line).await,
        }
    }

    /// Stops the writer (or the follower and audit thread) after what is queued.
    pub(crate) fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close(),
            Self::Postgres(s) => s.close(),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Writes

    /// CreateUser.
    pub(crate) async fn create_user(&self, name: String, path: String) -> Result<User, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::create_user(w, &name, &path))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::create_user(w, &name, &path).await)
                    .await
            }
        }
    }

    /// DeleteUser.
    pub(crate) async fn delete_user(&self, name: String) -> Result<User, StoreError> {
        match self {
            Self::Sqlite(s) => s.write(None, move |w| ops::delete_user(w, &name)).await,
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::delete_user(w, &name).await)
                    .await
            }
        }
    }

    /// CreateAccessKey.
    pub(crate) async fn create_access_key(&self, owner: Owner) -> Result<AccessKey, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::create_access_key(w, &owner))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::create_access_key(w, &owner).await)
                    .await
            }
        }
    }

    /// UpdateAccessKey.
    pub(crate) async fn update_access_key(
        &self,
        owner: Owner,
        key_id: String,
        active: bool,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| {
                    ops::update_access_key(w, &owner, &key_id, active)
                })
                .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::update_access_key(w, &owner, &key_id, active).await)
                    .await
            }
        }
    }

    /// DeleteAccessKey.
    pub(crate) async fn delete_access_key(
        &self,
        owner: Owner,
        key_id: String,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::delete_access_key(w, &owner, &key_id))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::delete_access_key(w, &owner, &key_id).await)
                    .await
            }
        }
    }

    /// CreateVirtualMFADevice.
    pub(crate) async fn create_virtual_device(
        &self,
        name: String,
        path: String,
        creator: Owner,
        quota: VirtualQuota,
    ) -> Result<NewVirtualDevice, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| {
                    ops::create_virtual_device(w, &name, &path, &creator, quota)
                })
                .await
            }
            Self::Postgres(s) => {
                s.write(async |w| {
                    pg::ops::create_virtual_device(w, &name, &path, &creator, quota).await
                })
                .await
            }
        }
    }

    /// EnableMFADevice (and the operator's enable-root).
    pub(crate) async fn enable_device(
        &self,
        pair: CodePair,
        rules: EnableRules,
    ) -> Result<Device, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::enable_device(w, &pair, rules))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::enable_device(w, &pair, rules).await)
                    .await
            }
        }
    }

    /// ResyncMFADevice.
    pub(crate) async fn resync_device(&self, pair: CodePair) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.write(None, move |w| ops::resync_device(w, &pair)).await,
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::resync_device(w, &pair).await)
                    .await
            }
        }
    }

    /// DeactivateMFADevice.
    pub(crate) async fn deactivate_device(
        &self,
        serial: String,
        owner: Owner,
    ) -> Result<Device, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::deactivate_device(w, &serial, &owner))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::deactivate_device(w, &serial, &owner).await)
                    .await
            }
        }
    }

    /// The operator's deactivation, whoever holds the device.
    pub(crate) async fn deactivate_any_device(&self, serial: String) -> Result<Device, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::deactivate_any_device(w, &serial))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::deactivate_any_device(w, &serial).await)
                    .await
            }
        }
    }

    /// DeleteVirtualMFADevice.
    pub(crate) async fn delete_virtual_device(&self, serial: String) -> Result<Device, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::delete_virtual_device(w, &serial))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::delete_virtual_device(w, &serial).await)
                    .await
            }
        }
    }

    /// The operator's deletion of any device; who had it enabled.
    pub(crate) async fn delete_any_device(
        &self,
        serial: String,
    ) -> Result<Option<Owner>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::delete_any_device(w, &serial))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::delete_any_device(w, &serial).await)
                    .await
            }
        }
    }

    /// The operator's import of hardware tokens, all or nothing.
    pub(crate) async fn import_hardware(&self, rows: Vec<HardwareRow>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| {
                    for (serial, seed, holder) in &rows {
                        ops::import_hardware_device(w, serial, seed, holder.as_ref())?;
                    }
                    Ok(())
                })
                .await
            }
            Self::Postgres(s) => {
                s.write(async |w| {
                    for (serial, seed, holder) in &rows {
                        pg::ops::import_hardware_device(w, serial, seed, holder.as_ref()).await?;
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// The operator's registration of a FIDO key; its serial.
    pub(crate) async fn register_fido_key(
        &self,
        key: FidoRegistration,
    ) -> Result<String, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(None, move |w| ops::register_fido_key(w, &key))
                    .await
            }
            Self::Postgres(s) => {
                s.write(async |w| pg::ops::register_fido_key(w, &key).await)
                    .await
            }
        }
    }

    /// Makes an accepted TOTP step durable, with `line` durable in the audit log before the
    /// answer: `Err(InvalidCodes)` when the store already holds that step or a later one
    /// (another node or process accepted it first), and then no success line is written.
    pub(crate) async fn record_accepted_step(
        &self,
        serial: String,
        step: TotpStep,
        line: RequiredLine,
    ) -> Result<(), StoreError> {
        match self {
            // One group commit makes the step durable, clears the failures and writes the
            // audit line (fsynced).
            Self::Sqlite(s) => {
                s.write(Some(line), move |w| {
                    match ops::record_accepted_step(w, &serial, step)? {
                        true => Ok(()),
                        false => Err(StoreError::InvalidCodes),
                    }
                })
                .await
            }
            // PostgreSQL commits the step (the authority across nodes), then the node's own
            // audit log makes the line durable; a line that cannot be is answered
            // AuditUnavailable, the step staying spent, as with SQLite.
            Self::Postgres(s) => {
                let recorded = s
                    .write(async |w| pg::ops::record_accepted_step(w, &serial, step).await)
                    .await?;
                if !recorded {
                    return Err(StoreError::InvalidCodes);
                }
                s.audit_and_wait(line).await
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Reads the index does not answer

    /// ListAccessKeys.
    pub(crate) async fn list_access_keys(
        &self,
        owner: Owner,
    ) -> Result<Vec<KeyMetadata>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, _| queries::list_access_keys(conn, &owner))
                    .await
            }
            Self::Postgres(s) => {
                s.read(async |r| pg::queries::list_access_keys(r, &owner).await)
                    .await
            }
        }
    }

    /// ListUsers.
    pub(crate) async fn list_users(
        &self,
        path_prefix: String,
        page: PageRequest,
    ) -> Result<Page<User>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, _| queries::list_users(conn, &path_prefix, &page))
                    .await
            }
            Self::Postgres(s) => {
                s.read(async |r| pg::queries::list_users(r, &path_prefix, &page).await)
                    .await
            }
        }
    }

    /// ListMFADevices.
    pub(crate) async fn list_assigned_devices(
        &self,
        owner: Owner,
    ) -> Result<Vec<Device>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, sealer| queries::list_assigned_devices(conn, sealer, &owner))
                    .await
            }
            Self::Postgres(s) => {
                s.read(async |r| pg::queries::list_assigned_devices(r, &owner).await)
                    .await
            }
        }
    }

    /// How many devices `owner` has enabled.
    pub(crate) async fn enabled_device_count(&self, owner: Owner) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, _| queries::enabled_device_count(conn, &owner))
                    .await
            }
            Self::Postgres(s) => {
                s.read(async |r| pg::queries::enabled_device_count(r, &owner).await)
                    .await
            }
        }
    }

    /// ListVirtualMFADevices.
    pub(crate) async fn list_virtual_devices(
        &self,
        assignment: Assignment,
        visible_to: Option<Owner>,
        page: PageRequest,
    ) -> Result<Page<Device>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, sealer| {
                    queries::list_virtual_devices(
                        conn,
                        sealer,
                        assignment,
                        visible_to.as_ref(),
                        &page,
                    )
                })
                .await
            }
            Self::Postgres(s) => {
                s.read(async |r| {
                    pg::queries::list_virtual_devices(r, assignment, visible_to.as_ref(), &page)
                        .await
                })
                .await
            }
        }
    }

    /// The user with this name, in any case.
    pub(crate) async fn user_by_name(&self, name: String) -> Result<Option<User>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.read(move |conn, _| queries::user_by_name(conn, &name))
                    .await
            }
            Self::Postgres(s) => {
                s.read(async |r| pg::queries::user_by_name(r, &name).await)
                    .await
            }
        }
    }
}
