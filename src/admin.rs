//! Operator commands that act on the store directly (the console-only paths of
//! `docs/mfa.md#who-may-enable-what`): import hardware TOTP seeds (optionally bound to one
//! user), register FIDO security keys, enable or deactivate MFA devices of the root user, and
//! delete any device. They write through the same operations as the API, and a running broker
//! picks the changes up from `change_log` within its poll interval, without a restart. With
//! `store_url`, they act on the PostgreSQL store every node shares (`docs/multinode.md`), and
//! [`Admin::copy_store`] and [`Admin::migrate`] move a store there.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::SharedClock;
use crate::config::{BackendUrl, Config};
use crate::mfa::base32;
use crate::mfa::totp::TokenCode;
use crate::model::Owner;
use crate::protocol::error::ApiError;
use crate::protocol::validate::{is_name_char, is_serial_char};
use crate::store::backend::HardwareRow;
use crate::store::ops::{self, CodePair, EnableRules, FidoRegistration};
use crate::store::pg::{self, PgOptions, PgStore};
use crate::store::{IdentityStore, Store, StoreError, StoreOptions};

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
    store: IdentityStore,
    config: Config,
    clock: SharedClock,
    /// Runs the store's async operations for these synchronous commands.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        // Not `drop`: that blocks, and panics inside an async context (a test, a console).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What `copy-store` copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The account id, the same on both sides.
    pub account_id: String,
    /// IAM users.
    pub users: usize,
    /// Access keys, the root user's included.
    pub access_keys: usize,
    /// MFA devices of every kind, with their last accepted steps and drift.
    pub devices: usize,
    /// Session-credential server keys.
    pub server_keys: usize,
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
        config
            .validate()
            .map_err(|e| AdminError::Input(e.to_string()))?;
        Store::create_data_dir(&config.data_dir)?;
        let audit = AuditLog::open(&config.audit).map_err(|e| AdminError::Input(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| AdminError::Input(format!("cannot start a runtime: {e}")))?;
        let (store, bootstrap) = match &config.store_url {
            None => {
                let (store, bootstrap) = Store::open(
                    &config.data_dir,
                    StoreOptions {
                        load_index: false,
                        audit,
                        poll: Duration::from_millis(config.change_poll_millis),
                        clock: Arc::clone(&clock),
                    },
                )?;
                (IdentityStore::Sqlite(store), bootstrap)
            }
            Some(url) => {
                let (store, bootstrap) = PgStore::open(PgOptions {
                    data_dir: &config.data_dir,
                    url,
                    timeout: Duration::from_millis(config.store_timeout_millis),
                    load_index: false,
                    bootstrap: true,
                    audit: Some(audit),
                    clock: Arc::clone(&clock),
                })?;
                (IdentityStore::Postgres(store), bootstrap)
            }
        };
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
            runtime: Some(runtime),
        })
    }

    /// `sts-broker admin migrate`: applies the PostgreSQL store's migrations (`store_url`);
    /// the schema version it is at afterwards.
    pub fn migrate(config: &Config) -> Result<i32, AdminError> {
        let url = config
            .store_url
            .as_ref()
            .ok_or_else(|| AdminError::Input("migrate needs --store-url postgres://…".into()))?;
        Ok(pg::migrate_only(
            url,
            Duration::from_millis(config.store_timeout_millis).max(Duration::from_secs(10)),
        )?)
    }

    /// `sts-broker admin copy-store`: copies the SQLite store of `from_data_dir` (its
    /// account, server keys, users, keys and devices with their last accepted steps) into the
    /// empty PostgreSQL store at `to`, secrets still sealed with the master key
    /// (`STS_BROKER_MASTER_KEY`, else `from_data_dir`'s `master.key`), which every node on
    /// PostgreSQL then needs.
    pub fn copy_store(from_data_dir: &Path, to: &BackendUrl) -> Result<CopyReport, AdminError> {
        let copied = pg::copy::copy_store(from_data_dir, to, Duration::from_secs(30))?;
        Ok(CopyReport {
            account_id: copied.account_id,
            users: copied.users,
            access_keys: copied.access_keys,
            devices: copied.devices,
            server_keys: copied.server_keys,
        })
    }

    /// Runs a store operation to completion. On a thread of its own, so that a command may be
    /// called from inside another runtime (an embedding console, a test) without panicking.
    fn block<T: Send>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Closed);
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(work))
                .join()
                .map_err(|_| StoreError::Closed)?
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
        let imported: Vec<(String, Option<String>)> = rows
            .iter()
            .map(|(s, _, holder)| (s.clone(), holder.as_ref().map(|(name, _)| name.clone())))
            .collect();
        let rows: Vec<HardwareRow> = rows
            .into_iter()
            .map(|(s, seed, holder)| (s, seed, holder.map(|(_, o)| o)))
            .collect();
        let result = self.block(self.store.import_hardware(rows));
        match result {
            Ok(()) => {
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
            .block(self.store.user_by_name(name.to_owned()))?
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
        let result = self.block(self.store.register_fido_key(key));
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
        let result = self.block(self.store.enable_device(pair, rules));
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
        let result = self
            .block(self.store.deactivate_any_device(serial.to_owned()))
            .map(|_| ());
        self.audit("DeactivateMFADevice", Some(serial), None, result.is_ok());
        result.map_err(Into::into)
    }

    /// Deletes a device of any kind, assigned or not: also one whose serial no API call can
    /// name (created by an earlier version), or a name taken by someone else's spare device.
    /// Returns the identity that had it enabled (`root` or the user id), if any.
    pub fn delete_device(&self, serial: &str) -> Result<Option<Owner>, AdminError> {
        let result = self.block(self.store.delete_any_device(serial.to_owned()));
        self.audit("DeleteMFADevice", Some(serial), None, result.is_ok());
        result.map_err(Into::into)
    }

    /// Flushes and stops the store.
    pub fn close(self) {
        self.store.close();
    }
}

/// Users written per transaction by [`Admin::bench_provision`]: large enough that the fsync per
/// commit is lost in the work, small enough that a failure loses little and memory stays flat.
const BENCH_PROVISION_CHUNK: usize = 2_000;

/// The header of the file [`Admin::bench_provision`] writes, one user per following row.
pub const BENCH_CREDENTIALS_HEADER: &str =
    "user,access_key_id,secret_access_key,mfa_serial,mfa_seed_base32,last_step";

/// One provisioned user, as written to the credentials file.
struct BenchUser {
    name: String,
    access_key_id: String,
    secret: zeroize::Zeroizing<String>,
    serial: String,
    seed: zeroize::Zeroizing<Vec<u8>>,
    last_step: i64,
}

// The bulk path of the benchmark (BENCHMARKS.md): a separate block so that it stays apart from
// the operator commands above.
impl Admin {
    /// Creates `users` IAM users named `{prefix}-{n}` (n zero-padded), each with an access key
    /// and an enabled virtual MFA device, through the same store operations as CreateUser,
    /// CreateAccessKey, CreateVirtualMFADevice and EnableMFADevice (the last with two
    /// consecutive codes of the new seed), a few thousand users per transaction.
    /// Each committed chunk is appended to `out` (created with mode 0600; it must not exist):
    /// [`BENCH_CREDENTIALS_HEADER`], then one row per user, `last_step` being the TOTP step the
    /// enabling consumed. `progress` is told the running count after each chunk.
    pub fn bench_provision(
        &self,
        users: usize,
        prefix: &str,
        out: &Path,
        mut progress: impl FnMut(usize),
    ) -> Result<usize, AdminError> {
        use std::io::Write as _;

        let width = users.saturating_sub(1).max(1).to_string().len();
        if prefix.is_empty() || prefix.len() + 1 + width > 64 || !prefix.chars().all(is_name_char) {
            return Err(AdminError::Input(format!(
                "the prefix must be characters of [\\w+=,.@-] leaving room for -{} in 64",
                "0".repeat(width)
            )));
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(out)
            .map_err(|e| AdminError::Input(format!("{}: {e}", out.display())))?;
        let mut file = std::io::BufWriter::new(file);
        let io = |e: std::io::Error| AdminError::Input(format!("{}: {e}", out.display()));
        writeln!(file, "{BENCH_CREDENTIALS_HEADER}").map_err(io)?;
        let store = self.store.sqlite().ok_or_else(|| {
            AdminError::Input(
                "bench-provision writes to the embedded store: provision a data dir, then copy it \
                 with `sts-broker admin copy-store`"
                    .into(),
            )
        })?;
        let max_devices = self.config.max_mfa_devices_per_user;
        let window = self.config.mfa_resync_window;
        let mut done = 0;
        while done < users {
            let names: Vec<String> = (done..users.min(done + BENCH_PROVISION_CHUNK))
                .map(|n| format!("{prefix}-{n:0width$}"))
                .collect();
            let created = store
                .write_blocking(move |w| {
                    names
                        .into_iter()
                        .map(|name| provision_one(w, name, max_devices, window))
                        .collect::<Result<Vec<_>, _>>()
                })
                .inspect_err(|_| self.audit("BenchProvision", None, None, false))?;
            for u in &created {
                self.audit(
                    "CreateVirtualMFADevice",
                    Some(&u.serial),
                    Some(&u.name),
                    true,
                );
                self.audit("EnableMFADevice", Some(&u.serial), Some(&u.name), true);
                writeln!(
                    file,
                    "{},{},{},{},{},{}",
                    u.name,
                    u.access_key_id,
                    u.secret.as_str(),
                    u.serial,
                    zeroize::Zeroizing::new(base32::encode(&u.seed)).as_str(),
                    u.last_step
                )
                .map_err(io)?;
            }
            done += created.len();
            progress(done);
        }
        file.flush().map_err(io)?;
        file.get_ref().sync_all().map_err(io)?;
        Ok(done)
    }
}

/// One user with a key and an enabled virtual device, inside the writer's transaction.
fn provision_one(
    w: &mut crate::store::writer::WriteCtx<'_>,
    name: String,
    max_devices: u32,
    window: u32,
) -> Result<BenchUser, StoreError> {
    use crate::mfa::totp::{TotpKey, TotpStep};

    let user = ops::create_user(w, &name, "/")?;
    let owner = Owner::User(user.id);
    let key = ops::create_access_key(w, &owner)?;
    // The operator provisions beyond the API's quotas: a benchmark needs more devices than
    // `max_virtual_mfa_devices` lets users create.
    let unlimited = ops::VirtualQuota {
        per_account: u32::MAX,
        unassigned_per_user: u32::MAX,
    };
    let device = ops::create_virtual_device(w, &name, "/", &owner, unlimited)?;
    let totp = TotpKey::new(&device.seed).map_err(|e| StoreError::UnusableSeed {
        serial: device.serial.clone(),
        reason: e.to_string(),
    })?;
    // The codes of the previous and the current step, as an authenticator app shows them.
    let now = TotpStep::at(w.now);
    let pair = CodePair {
        serial: device.serial.clone(),
        owner,
        codes: (totp.code(now - 1), totp.code(now)),
        window,
    };
    let rules = ops::EnableRules {
        max_devices,
        may_add_to_enabled: true,
    };
    let enabled = ops::enable_device(w, &pair, rules)?;
    let last_step = enabled
        .totp()
        .map(|t| t.last_step.get())
        .ok_or(StoreError::FidoKey)?;
    Ok(BenchUser {
        name,
        access_key_id: key.id,
        secret: key.secret,
        serial: device.serial,
        seed: device.seed,
        last_step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditTarget;
    use crate::clock::ManualClock;
    use crate::mfa::totp::{TotpKey, TotpStep};
    use crate::store::ReadOnlyStore;

    #[test]
    fn bench_provision_writes_usable_credentials_of_enabled_devices() {
        let dir =
            std::env::temp_dir().join(format!("sts-admin-bench-{}", crate::ids::request_id()));
        let mut config = Config::with_data_dir(dir.join("data"));
        config.audit = AuditTarget::Off;
        let clock: SharedClock = Arc::new(ManualClock::new(1_700_000_000));
        let admin = Admin::open(config, clock).unwrap();
        let out = dir.join("creds.csv");
        let mut seen = Vec::new();
        let n = admin
            .bench_provision(3, "t", &out, |done| seen.push(done))
            .unwrap();
        assert_eq!((n, seen), (3, vec![3]));
        // The file is never overwritten, and the prefix must leave a valid IAM name.
        assert!(matches!(
            admin.bench_provision(1, "t", &out, |_| {}),
            Err(AdminError::Input(_))
        ));
        assert!(matches!(
            admin.bench_provision(1, "bad name", &dir.join("other.csv"), |_| {}),
            Err(AdminError::Input(_))
        ));
        admin.close();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(BENCH_CREDENTIALS_HEADER));
        let store = ReadOnlyStore::open(&dir.join("data"), Duration::from_secs(60)).unwrap();
        let index = store.index();
        let now = TotpStep::at(crate::time::UnixTime::from_secs(1_700_000_000));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            let f: Vec<&str> = row.split(',').collect();
            assert_eq!(f.len(), 6, "{row}");
            assert_eq!(f[0], format!("t-{i}"));
            let user = index.user_by_name(f[0]).unwrap();
            let key = index.access_key(f[1]).unwrap();
            assert_eq!(key.owner, Owner::User(user.id.clone()));
            assert!(key.active);
            assert_eq!(key.secret.as_str(), f[2]);
            let device = index.device(f[3]).unwrap();
            assert_eq!(device.assigned_to, Some(Owner::User(user.id.clone())));
            let totp = device.totp().unwrap();
            // Enabled with the codes of the previous and the current step: no drift, the
            // current step spent, and the file's seed is the device's.
            assert_eq!((totp.drift, totp.last_step), (0, now));
            assert_eq!(f[5], now.get().to_string());
            let seed = base32::decode(f[4]).unwrap();
            let from_file = TotpKey::new(&seed).unwrap();
            for step in [now + 1, now + 2] {
                assert_eq!(from_file.code(step), totp.key.code(step));
            }
        }
        store.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
