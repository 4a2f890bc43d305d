//! Operator commands that act on the store directly (the console-only paths of
//! `docs/mfa.md#who-may-enable-what`): import hardware TOTP seeds (optionally bound to one
//! user), register FIDO security keys, enable or deactivate MFA devices of the root user, and
//! delete any device. They write through the same operations as the API, and a running broker
//! picks the changes up from `change_log` within its poll interval, without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::mfa::base32;
use crate::mfa::totp::TokenCode;
use crate::model::Owner;
use crate::protocol::error::ApiError;
use crate::protocol::validate::{is_name_char, is_serial_char};
use crate::store::ops::{self, CodePair, EnableRules, FidoRegistration};
use crate::store::{Store, StoreError, StoreOptions, queries};

/// Why an admin command failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is not acceptable; nothing was changed.
    #[error("{0}")]
    Input(String),
    /// The store refused the change, in the words the API would use; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The store failed; nothing was changed.
    #[error(transparent)]
    Store(StoreError),
}

/// Operators read the same texts as API clients (`MFA Device with serial number … does not
/// exist.`); faults keep the store's own description.
impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        if e.is_fault() {
            Self::Store(e)
        } else {
            Self::Refused(ApiError::from(e).to_string())
        }
    }
}

/// An open store for admin commands.
pub struct Admin {
    store: Store,
    config: Config,
    clock: SharedClock,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("account_id", &self.store.account_id())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Opens the data dir of `config` (created on first use, like `serve`).
    pub fn open(config: Config, clock: SharedClock) -> Result<Self, AdminError> {
        Store::create_data_dir(&config.data_dir)?;
        let audit = AuditLog::open(&config.audit).map_err(|e| AdminError::Input(e.to_string()))?;
        let (store, bootstrap) = Store::open(
            &config.data_dir,
            StoreOptions {
                load_index: false,
                audit,
                poll: Duration::from_millis(config.change_poll_millis),
                clock: Arc::clone(&clock),
            },
        )?;
        if let Some(b) = bootstrap {
            eprintln!(
                "created a new account; root credentials written to {}",
                b.credentials_file.display()
            );
        }
        Ok(Self {
            store,
            config,
            clock,
        })
    }

    fn audit(&self, action: &str, serial: Option<&str>, target: Option<&str>, ok: bool) {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut e = AuditEvent::new(
            self.clock.now(),
            "admin",
            self.store.account_id(),
            action,
            outcome,
        );
        e.principal = Some("operator");
        e.serial = serial;
        e.target_user = target;
        e.reason = (!ok).then_some("rejected");
        self.store.audit(e.to_line());
    }

    /// Imports `serial,base32seed[,user]` rows (blank lines, `#` comments and a `serial,…`
    /// header are skipped), all or nothing. A row's user, or else `user`, binds the token to
    /// that identity: only it may see and enable the token. Returns the number imported.
    pub fn import_hardware(&self, file: &Path, user: Option<&str>) -> Result<usize, AdminError> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| AdminError::Input(format!("{}: {e}", file.display())))?,
        );
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ',').map(str::trim);
            let (Some(serial), Some(seed)) = (fields.next(), fields.next()) else {
                return Err(AdminError::Input(format!(
                    "line {}: expected serial,base32seed[,user]",
                    n + 1
                )));
            };
            if n == 0 && serial.eq_ignore_ascii_case("serial") {
                continue;
            }
            if !(9..=256).contains(&serial.len()) || !serial.chars().all(is_serial_char) {
                return Err(AdminError::Input(format!(
                    "line {}: serial must be 9-256 characters of [\\w+=/:,.@-]",
                    n + 1
                )));
            }
            if serial.starts_with("arn:") {
                return Err(AdminError::Input(format!(
                    "line {}: hardware serials are vendor serials, not ARNs",
                    n + 1
                )));
            }
            let seed = zeroize::Zeroizing::new(base32::decode(seed).map_err(|e| {
                AdminError::Input(format!("line {}: seed is not base32: {e}", n + 1))
            })?);
            let holder = match fields.next().filter(|u| !u.is_empty()).or(user) {
                Some(name) => Some((name.to_owned(), self.owner_by_name(name)?)),
                None => None,
            };
            rows.push((serial.to_owned(), seed, holder));
        }
        let count = rows.len();
        let result = self.store.write_blocking(move |w| {
            for (serial, seed, holder) in &rows {
                ops::import_hardware_device(w, serial, seed, holder.as_ref().map(|(_, o)| o))?;
            }
            Ok(rows
                .into_iter()
                .map(|(s, _, holder)| (s, holder.map(|(name, _)| name)))
                .collect::<Vec<_>>())
        });
        match result {
            Ok(imported) => {
                for (serial, holder) in &imported {
                    self.audit(
                        "ImportHardwareMFADevice",
                        Some(serial),
                        holder.as_deref(),
                        true,
                    );
                }
                Ok(count)
            }
            Err(e) => {
                self.audit("ImportHardwareMFADevice", None, None, false);
                Err(match e {
                    StoreError::DeviceExists(serial) => AdminError::Refused(format!(
                        "{serial}: a device with this serial already exists"
                    )),
                    other => other.into(),
                })
            }
        }
    }

    fn owner_by_name(&self, name: &str) -> Result<Owner, AdminError> {
        if name.eq_ignore_ascii_case("root") {
            return Ok(Owner::Root);
        }
        let user = self
            .store
            .read_blocking(|conn, _| queries::user_by_name(conn, name))?
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))?;
        Ok(Owner::User(user.id))
    }

    /// Registers a FIDO security key for a user (or `root`); returns its serial.
    pub fn register_fido(
        &self,
        user: &str,
        key_name: &str,
        credential_id: &str,
        public_key: &str,
    ) -> Result<String, AdminError> {
        let b64url = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        if !b64url(credential_id) || !b64url(public_key) {
            return Err(AdminError::Input(
                "credential id and public key must be base64url".into(),
            ));
        }
        if key_name.is_empty() || key_name.len() > 64 || !key_name.chars().all(is_name_char) {
            return Err(AdminError::Input(
                "key name must be 1-64 characters of [\\w+=,.@-]".into(),
            ));
        }
        let key = FidoRegistration {
            owner: self.owner_by_name(user)?,
            owner_name: user.to_owned(),
            key_name: key_name.to_owned(),
            credential_id: credential_id.to_owned(),
            public_key: public_key.to_owned(),
            max_devices: self.config.max_mfa_devices_per_user,
        };
        let result = self
            .store
            .write_blocking(move |w| ops::register_fido_key(w, &key));
        self.audit(
            "RegisterFIDOSecurityKey",
            result.as_deref().ok(),
            Some(user),
            result.is_ok(),
        );
        Ok(result?)
    }

    /// Enables an unassigned virtual or hardware device for the root user with two consecutive
    /// codes.
    pub fn enable_root(&self, serial: &str, code1: &str, code2: &str) -> Result<(), AdminError> {
        let codes = TokenCode::parse(code1)
            .zip(TokenCode::parse(code2))
            .ok_or_else(|| AdminError::Input("codes must be six digits each".into()))?;
        let pair = CodePair {
            serial: serial.to_owned(),
            owner: Owner::Root,
            codes,
            window: self.config.mfa_resync_window,
        };
        // The operator stands in for the console, where the root user has signed in.
        let rules = EnableRules {
            max_devices: self.config.max_mfa_devices_per_user,
            may_add_to_enabled: true,
        };
        let result = self
            .store
            .write_blocking(move |w| ops::enable_device(w, &pair, rules));
        self.audit(
            "EnableMFADevice",
            Some(serial),
            Some("root"),
            result.is_ok(),
        );
        result.map(|_| ()).map_err(Into::into)
    }

    /// Deactivates a device whoever holds it (root's included).
    pub fn deactivate(&self, serial: &str) -> Result<(), AdminError> {
        let s = serial.to_owned();
        let result = self
            .store
            .write_blocking(move |w| ops::deactivate_any_device(w, &s).map(|_| ()));
        self.audit("DeactivateMFADevice", Some(serial), None, result.is_ok());
        result.map_err(Into::into)
    }

    /// Deletes a device of any kind, assigned or not: also one whose serial no API call can
    /// name (created by an earlier version), or a name taken by someone else's spare device.
    /// Returns the identity that had it enabled (`root` or the user id), if any.
    pub fn delete_device(&self, serial: &str) -> Result<Option<Owner>, AdminError> {
        let s = serial.to_owned();
        let result = self
            .store
            .write_blocking(move |w| ops::delete_any_device(w, &s));
        self.audit("DeleteMFADevice", Some(serial), None, result.is_ok());
        result.map_err(Into::into)
    }

    /// Flushes and stops the store.
    pub fn close(self) {
        self.store.close();
    }
}
