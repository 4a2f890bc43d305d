//! What the identity store can refuse or fail with. The variants say what happened in the
//! store's own terms; what a client is told is decided by `protocol`.

/// A refusal (the request cannot apply to the current state) or a fault of the store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No IAM user has that name.
    #[error("no user named {0}")]
    NoSuchUser(String),
    /// A user with that name (in any case) exists.
    #[error("a user named {0} already exists")]
    UserExists(String),
    /// DeleteUser while the user still has access keys.
    #[error("the user still has access keys")]
    UserHasAccessKeys,
    /// DeleteUser while the user still has MFA devices.
    #[error("the user still has MFA devices")]
    UserHasDevices,
    /// No access key has that id (for that user).
    #[error("no access key {0}")]
    NoSuchAccessKey(String),
    /// The identity already has as many access keys as allowed.
    #[error("at most {0} access keys per identity")]
    AccessKeyQuota(u32),
    /// No MFA device has that serial (or it is not visible to the caller).
    #[error("no MFA device {0}")]
    NoSuchDevice(String),
    /// A device with that serial exists.
    #[error("an MFA device {0} already exists")]
    DeviceExists(String),
    /// The device is already enabled for someone.
    #[error("the MFA device is already enabled")]
    DeviceInUse,
    /// DeleteVirtualMFADevice while the device is enabled.
    #[error("the MFA device is enabled; deactivate it first")]
    DeviceAssigned,
    /// The identity already has as many MFA devices as allowed.
    #[error("at most {0} MFA devices per identity")]
    DeviceQuota(u32),
    /// The account holds as many virtual MFA devices as allowed.
    #[error("at most {0} virtual MFA devices per account")]
    VirtualDeviceQuota(u32),
    /// The IAM user holds as many unassigned virtual MFA devices it created as allowed.
    #[error("at most {0} unassigned virtual MFA devices per user")]
    UnassignedDeviceQuota(u32),
    /// EnableMFADevice for an identity that already has a device enabled, by a caller without
    /// MFA (`docs/mfa.md#who-may-enable-what`).
    #[error("enabling a further MFA device needs MFA-backed session credentials")]
    MfaRequired,
    /// The two codes are not consecutive codes of the device, or not later than the last
    /// accepted step.
    #[error("the authentication codes are not valid")]
    InvalidCodes,
    /// A FIDO security key named where only TOTP devices can be used.
    #[error("FIDO security keys cannot be enabled or synchronized this way")]
    FidoKey,
    /// A TOTP seed that cannot key a device.
    #[error("the seed of {serial} is unusable: {reason}")]
    UnusableSeed {
        /// The device.
        serial: String,
        /// Why.
        reason: String,
    },
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
    /// The audit line an answer depends on could not be made durable (the audit log cannot be
    /// written); the answer must not be given.
    #[error("the audit log cannot be written")]
    AuditUnavailable,
    /// The data dir cannot be used.
    #[error("data dir: {0}")]
    DataDir(String),
    /// The shared store (PostgreSQL) did not answer in time, or failed: nothing was decided,
    /// and the request is refused until it answers again.
    #[error("the shared store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether this is a fault of the broker (storage, sealing, randomness, shutdown) rather
    /// than a refusal of the request.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Self::Storage(_)
                | Self::Seal(_)
                | Self::Random(_)
                | Self::Corrupt(_)
                | Self::Closed
                | Self::AuditUnavailable
                | Self::DataDir(_)
                | Self::Unavailable(_)
        )
    }
}
