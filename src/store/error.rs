//! What the identity store can refuse or fail with, and its single mapping to AWS errors.

use crate::protocol::error::ApiError;

/// A refusal (the request cannot apply to the current state) or a fault of the store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No IAM user has that name.
    #[error("The user with name {0} cannot be found.")]
    NoSuchUser(String),
    /// A user with that name (in any case) exists.
    #[error("User with name {0} already exists.")]
    UserExists(String),
    /// DeleteUser while the user still has access keys.
    #[error("Cannot delete entity, must delete access keys first.")]
    UserHasAccessKeys,
    /// DeleteUser while the user still has MFA devices.
    #[error("Cannot delete entity, must delete MFA device first.")]
    UserHasDevices,
    /// No access key has that id (for that user).
    #[error("The Access Key with id {0} cannot be found.")]
    NoSuchAccessKey(String),
    /// A user already has the two access keys IAM allows.
    #[error("Cannot exceed quota for AccessKeysPerUser: 2")]
    AccessKeyQuota,
    /// No MFA device has that serial (or it is not visible to the caller).
    #[error("MFA Device with serial number {0} does not exist.")]
    NoSuchDevice(String),
    /// A virtual device with that path and name exists.
    #[error("MFADevice entity at the same path and name already exists.")]
    DeviceExists,
    /// The device is already enabled for someone.
    #[error("MFA Device is already in use.")]
    DeviceInUse,
    /// DeleteVirtualMFADevice while the device is enabled.
    #[error("You must deactivate a user's virtual MFA device before you can delete it.")]
    DeviceAssigned,
    /// The identity already has as many MFA devices as allowed.
    #[error("Cannot exceed quota for MFADevicesInUsePerUser: {0}")]
    DeviceQuota(u32),
    /// The two codes are not consecutive codes of the device.
    #[error("Authentication code for device is not valid.")]
    InvalidCodes,
    /// The operation is not possible for this kind of device (e.g. a FIDO key through the API).
    #[error("{0}")]
    WrongDeviceKind(String),
    /// SQLite failed.
    #[error("storage failure: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A sealed value could not be opened, or the master key is wrong.
    #[error("sealing failure: {0}")]
    Seal(#[from] crate::store::seal::SealError),
    /// The random source failed.
    #[error("{0}")]
    Random(#[from] crate::ids::RandomError),
    /// A row holds a value the broker never writes.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The writer thread is gone (shutting down).
    #[error("the store is shut down")]
    Closed,
    /// The data dir cannot be used.
    #[error("data dir: {0}")]
    DataDir(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let text = e.to_string();
        match e {
            StoreError::NoSuchUser(_)
            | StoreError::NoSuchAccessKey(_)
            | StoreError::NoSuchDevice(_) => ApiError::NoSuchEntity(text),
            StoreError::UserExists(_) | StoreError::DeviceExists | StoreError::DeviceInUse => {
                ApiError::EntityAlreadyExists(text)
            }
            StoreError::UserHasAccessKeys
            | StoreError::UserHasDevices
            | StoreError::DeviceAssigned => ApiError::DeleteConflict(text),
            StoreError::AccessKeyQuota | StoreError::DeviceQuota(_) => {
                ApiError::LimitExceeded(text)
            }
            StoreError::InvalidCodes => ApiError::InvalidAuthenticationCode,
            StoreError::WrongDeviceKind(_) => ApiError::InvalidInput(text),
            StoreError::Storage(_)
            | StoreError::Seal(_)
            | StoreError::Random(_)
            | StoreError::Corrupt(_)
            | StoreError::Closed
            | StoreError::DataDir(_) => {
                tracing::error!(error = %text, "store failure");
                ApiError::InternalFailure
            }
        }
    }
}
