//! What the store keeps, as the rest of the broker sees it.

use std::fmt;

use zeroize::Zeroizing;

use crate::mfa::totp::TotpKey;

/// Who an access key or an MFA device belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The account root user.
    Root,
    /// An IAM user, by user id.
    User(String),
}

impl Owner {
    /// The value stored in the database.
    pub fn as_db(&self) -> &str {
        match self {
            Self::Root => "root",
            Self::User(id) => id,
        }
    }

    /// The inverse of [`Owner::as_db`].
    pub fn from_db(value: String) -> Self {
        if value == "root" {
            Self::Root
        } else {
            Self::User(value)
        }
    }
}

/// An IAM user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `AIDA…`.
    pub id: String,
    /// The name as created (unique regardless of case).
    pub name: String,
    /// IAM path, `/` by default.
    pub path: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl User {
    /// `arn:aws:iam::ACCOUNT:user{path}{name}`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:user{}{}", self.path, self.name)
    }
}

/// A long-term access key.
#[derive(Clone)]
pub struct AccessKey {
    /// `AKIA…`.
    pub id: String,
    /// Whose key it is.
    pub owner: Owner,
    /// The secret access key, unsealed.
    pub secret: Zeroizing<String>,
    /// `Active` (true) or `Inactive`.
    pub active: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("secret", &"<redacted>")
            .field("active", &self.active)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The three MFA device types of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A TOTP app; created through CreateVirtualMFADevice.
    Virtual,
    /// A hardware TOTP token imported by the operator.
    Hardware,
    /// A FIDO security key; console (admin) only, never usable on STS.
    Fido,
}

impl DeviceKind {
    /// The value stored in the database.
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Virtual => "virtual",
            Self::Hardware => "hardware",
            Self::Fido => "fido",
        }
    }

    /// The inverse of [`DeviceKind::as_db`].
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "virtual" => Some(Self::Virtual),
            "hardware" => Some(Self::Hardware),
            "fido" => Some(Self::Fido),
            _ => None,
        }
    }
}

/// An MFA device.
#[derive(Clone)]
pub struct Device {
    /// Virtual: `arn:aws:iam::ACCOUNT:mfa{path}{name}`; hardware: the vendor serial; FIDO:
    /// `arn:aws:iam::ACCOUNT:u2f/user/NAME/KEYNAME-XXXXXXXX`.
    pub serial: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Virtual device name or FIDO key name.
    pub name: Option<String>,
    /// Virtual device path.
    pub path: Option<String>,
    /// Who created a virtual device (users may only manage the unassigned ones they created).
    pub creator: Option<Owner>,
    /// Whose device it is, when enabled.
    pub assigned_to: Option<Owner>,
    /// When it was enabled, Unix seconds.
    pub enabled_at: Option<i64>,
    /// The TOTP key (virtual and hardware devices).
    pub totp: Option<TotpKey>,
    /// FIDO credential id and public key (base64url), as registered.
    pub fido: Option<(String, String)>,
    /// The device clock's offset from ours, in steps, learnt at enable or resync.
    pub drift: i64,
    /// Last accepted TOTP step, as stored.
    pub last_step: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("assigned_to", &self.assigned_to)
            .field("enabled_at", &self.enabled_at)
            .field("drift", &self.drift)
            .finish_non_exhaustive()
    }
}
