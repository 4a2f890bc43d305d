//! The identities the broker keeps (users, access keys, MFA devices) and who can act: the
//! types every layer shares, holding no IO. The store reads and writes them; the verifier, the
//! API and the admin commands read them.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::mfa::totp::{TotpKey, TotpStep};
use crate::time::UnixTime;

/// Who an access key or an MFA device belongs to, as stored: a reference, not the identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The account root user.
    Root,
    /// An IAM user, by user id: shared with the [`User`] it names, so that a million keys and
    /// devices hold no copies of their owners' ids (the index interns them at load).
    User(Arc<str>),
}

impl Owner {
    /// The value stored in the database: `root` or the user id.
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
            Self::User(value.into())
        }
    }
}

/// An IAM user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `AIDA…`, shared with every [`Owner`] that names this user.
    pub id: Arc<str>,
    /// The name as created (unique regardless of case).
    pub name: String,
    /// IAM path, `/` by default.
    pub path: String,
    /// Creation time.
    pub created_at: UnixTime,
}

impl User {
    /// `arn:aws:iam::ACCOUNT:user{path}{name}`.
    pub fn arn(&self, account_id: &str) -> String {
        // One string of the right size, filled by copies: this runs on every verified request,
        // where `format!`'s machinery cost more than the copying (BENCHMARKS.md).
        ["arn:aws:iam::", account_id, ":user", &self.path, &self.name].concat()
    }
}

/// An identity that signs requests and holds keys and devices: the account root user or an
/// IAM user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The account root user.
    Root,
    /// An IAM user.
    User(Arc<User>),
}

impl Principal {
    /// As a stored reference.
    pub fn owner(&self) -> Owner {
        match self {
            Self::Root => Owner::Root,
            Self::User(u) => Owner::User(u.id.clone()),
        }
    }

    /// `arn:aws:iam::ACCOUNT:root` or the user's ARN.
    pub fn arn(&self, account_id: &str) -> String {
        match self {
            Self::Root => ["arn:aws:iam::", account_id, ":root"].concat(),
            Self::User(u) => u.arn(account_id),
        }
    }

    /// GetCallerIdentity's `UserId`: the account id for root, the `AIDA…` id for a user.
    pub fn user_id<'a>(&'a self, account_id: &'a str) -> &'a str {
        match self {
            Self::Root => account_id,
            Self::User(u) => &u.id,
        }
    }

    /// The IAM user, unless root.
    pub fn user(&self) -> Option<&Arc<User>> {
        match self {
            Self::Root => None,
            Self::User(u) => Some(u),
        }
    }

    /// The user name, unless root (which has none).
    pub fn user_name(&self) -> Option<&str> {
        self.user().map(|u| u.name.as_str())
    }

    /// Whether this is the account root user.
    pub fn is_root(&self) -> bool {
        matches!(self, Self::Root)
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
    /// Creation time.
    pub created_at: UnixTime,
}

impl AccessKey {
    /// An active key `id` of `owner` with `secret`, for a [`CredentialLookup`] of one's own.
    ///
    /// [`CredentialLookup`]: crate::CredentialLookup
    pub fn new(id: impl Into<String>, owner: Owner, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            owner,
            secret: Zeroizing::new(secret.into()),
            active: true,
            created_at: UnixTime::default(),
        }
    }
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

/// What a TOTP device (virtual or hardware) has beyond its serial.
#[derive(Clone)]
pub(crate) struct TotpDevice {
    /// The keyed TOTP secret.
    pub key: TotpKey,
    /// The device clock's offset from ours in steps, learnt at enable or resync.
    pub drift: i64,
    /// The last accepted step, as stored ([`TotpStep::BEFORE_ALL`] before the first).
    pub last_step: TotpStep,
}

/// The three MFA device types AWS documents, each with exactly what it needs: a TOTP device
/// can be checked on STS; a FIDO key carries no TOTP secret, so it never can.
#[derive(Clone)]
pub(crate) enum DeviceKind {
    /// A TOTP app; created through CreateVirtualMFADevice.
    Virtual {
        /// Who created it (users may only manage the unassigned ones they created).
        creator: Owner,
        /// The TOTP secret and state.
        totp: TotpDevice,
    },
    /// A hardware TOTP token imported by the operator.
    Hardware {
        /// The TOTP secret and state.
        totp: TotpDevice,
        /// The one identity the operator bound it to (only it may see and enable it), or
        /// `None` for a token anyone holding it may enable.
        bound_to: Option<Owner>,
    },
    /// A FIDO security key; registered by the operator, never usable on STS. Its WebAuthn
    /// credential stays in the store, for the console that will check assertions.
    Fido,
}

/// An MFA device.
#[derive(Clone)]
pub(crate) struct Device {
    /// Virtual: `arn:aws:iam::ACCOUNT:mfa{path}{name}`; hardware: the vendor serial; FIDO:
    /// `arn:aws:iam::ACCOUNT:u2f/user/NAME/KEYNAME-XXXXXXXX`.
    pub serial: String,
    /// What it is, with its secret.
    pub kind: DeviceKind,
    /// Whose device it is, when enabled.
    pub assigned_to: Option<Owner>,
    /// When it was enabled.
    pub enabled_at: Option<UnixTime>,
}

impl Device {
    /// The TOTP secret and state, unless this is a FIDO key.
    pub(crate) fn totp(&self) -> Option<&TotpDevice> {
        match &self.kind {
            DeviceKind::Virtual { totp, .. } | DeviceKind::Hardware { totp, .. } => Some(totp),
            DeviceKind::Fido => None,
        }
    }

    /// Whether this is a FIDO security key.
    pub(crate) fn is_fido(&self) -> bool {
        matches!(self.kind, DeviceKind::Fido)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::Virtual { .. } => "virtual",
            DeviceKind::Hardware { .. } => "hardware",
            DeviceKind::Fido => "fido",
        };
        f.debug_struct("Device")
            .field("serial", &self.serial)
            .field("kind", &kind)
            .field("assigned_to", &self.assigned_to)
            .field("enabled_at", &self.enabled_at)
            .finish_non_exhaustive()
    }
}
