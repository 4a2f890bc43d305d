//! Broker configuration: embedded defaults, overridden by an optional TOML file, then by
//! `STS_BROKER_*` environment variables, then by command-line flags (applied in `main`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where audit lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    /// Append JSON lines to this file.
    File(PathBuf),
    /// Write JSON lines to standard output.
    Stdout,
    /// Keep no audit log.
    Off,
}

/// Everything the broker needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded store, the master key and the root credentials file.
    pub data_dir: PathBuf,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_http: bool,
    /// PEM certificate chain; with `tls_key`, the broker speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Regions a credential scope may name; `""` is botocore's `region_name=''`.
    pub regions: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest total size of request headers accepted.
    pub max_header_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_secs: u64,
    /// Time a whole request may take, body included.
    pub request_timeout_secs: u64,
    /// Allowed clock skew of signed requests.
    pub max_skew_secs: i64,
    /// TOTP acceptance window, in steps on each side of now (0–2).
    pub mfa_window: u32,
    /// Window searched by EnableMFADevice/ResyncMFADevice to learn a device's drift, in steps.
    pub mfa_resync_window: u32,
    /// MFA devices an identity may have enabled (1 as the seed says; at most 8).
    pub max_mfa_devices_per_user: u32,
    /// Consecutive MFA failures before a device is locked out.
    pub mfa_free_failures: u32,
    /// First lock-out, doubled by each further failure.
    pub mfa_base_backoff_secs: i64,
    /// Longest lock-out.
    pub mfa_max_backoff_secs: i64,
    /// Issuer shown by authenticator apps for virtual devices.
    pub mfa_issuer: String,
    /// Where audit lines go.
    pub audit: AuditTarget,
    /// How often the broker looks for changes made by `sts-broker admin` or another process.
    pub change_poll_millis: u64,
}

impl Config {
    /// The embedded defaults, for a data dir.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            audit: AuditTarget::File(data_dir.join("audit.log")),
            data_dir,
            insecure_http: false,
            tls_cert: None,
            tls_key: None,
            regions: vec!["us-east-1".to_owned(), String::new()],
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout_secs: 5,
            request_timeout_secs: 10,
            max_skew_secs: 15 * 60,
            mfa_window: 1,
            mfa_resync_window: 20,
            max_mfa_devices_per_user: 1,
            mfa_free_failures: 5,
            mfa_base_backoff_secs: 30,
            mfa_max_backoff_secs: 15 * 60,
            mfa_issuer: "sts-broker".to_owned(),
            change_poll_millis: 500,
        }
    }

    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = Self::with_data_dir("sts-broker-data");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let overrides: Overrides =
                toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
            cfg.apply(overrides)?;
        }
        cfg.apply(Overrides::from_env()?)?;
        Ok(cfg)
    }

    /// Sets the data dir; an audit file still at the old default follows it.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        if self.audit == AuditTarget::File(self.data_dir.join("audit.log")) {
            self.audit = AuditTarget::File(dir.join("audit.log"));
        }
        self.data_dir = dir;
    }

    fn apply(&mut self, o: Overrides) -> Result<(), ConfigError> {
        if let Some(dir) = o.data_dir {
            self.set_data_dir(dir);
        }
        if let Some(v) = o.listen {
            self.listen = v
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("listen: not an address: {v}")))?;
        }
        set(&mut self.insecure_http, o.insecure_http);
        if o.tls_cert.is_some() {
            self.tls_cert = o.tls_cert;
        }
        if o.tls_key.is_some() {
            self.tls_key = o.tls_key;
        }
        set(&mut self.regions, o.regions);
        set(&mut self.max_body_bytes, o.max_body_bytes);
        set(&mut self.max_header_bytes, o.max_header_bytes);
        set(
            &mut self.header_read_timeout_secs,
            o.header_read_timeout_secs,
        );
        set(&mut self.request_timeout_secs, o.request_timeout_secs);
        set(&mut self.mfa_window, o.mfa_window);
        set(&mut self.mfa_resync_window, o.mfa_resync_window);
        set(
            &mut self.max_mfa_devices_per_user,
            o.max_mfa_devices_per_user,
        );
        set(&mut self.mfa_free_failures, o.mfa_free_failures);
        set(&mut self.mfa_base_backoff_secs, o.mfa_base_backoff_secs);
        set(&mut self.mfa_max_backoff_secs, o.mfa_max_backoff_secs);
        set(&mut self.mfa_issuer, o.mfa_issuer);
        set(&mut self.change_poll_millis, o.change_poll_millis);
        if let Some(a) = o.audit_log {
            self.audit = match a.as_str() {
                "stdout" | "-" => AuditTarget::Stdout,
                "off" | "" => AuditTarget::Off,
                path => AuditTarget::File(PathBuf::from(path)),
            };
        }
        self.validate()
    }

    /// Checks the limits the rest of the broker relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mfa_window > 2 {
            return Err(ConfigError::Invalid("mfa_window must be 0, 1 or 2".into()));
        }
        if !(1..=8).contains(&self.max_mfa_devices_per_user) {
            return Err(ConfigError::Invalid(
                "max_mfa_devices_per_user must be between 1 and 8".into(),
            ));
        }
        if self.mfa_resync_window < self.mfa_window || self.mfa_resync_window > 120 {
            return Err(ConfigError::Invalid(
                "mfa_resync_window must be between mfa_window and 120".into(),
            ));
        }
        if self.mfa_free_failures == 0 || self.mfa_base_backoff_secs <= 0 {
            return Err(ConfigError::Invalid(
                "mfa_free_failures and mfa_base_backoff_secs must be positive".into(),
            ));
        }
        if self.mfa_max_backoff_secs < self.mfa_base_backoff_secs {
            return Err(ConfigError::Invalid(
                "mfa_max_backoff_secs must be at least mfa_base_backoff_secs".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.max_body_bytes == 0 || self.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be positive and max_header_bytes at least 1024".into(),
            ));
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// The optional keys of the config file; environment variables use the same names in upper
/// case with an `STS_BROKER_` prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    insecure_http: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    regions: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    mfa_window: Option<u32>,
    mfa_resync_window: Option<u32>,
    max_mfa_devices_per_user: Option<u32>,
    mfa_free_failures: Option<u32>,
    mfa_base_backoff_secs: Option<i64>,
    mfa_max_backoff_secs: Option<i64>,
    mfa_issuer: Option<String>,
    audit_log: Option<String>,
    change_poll_millis: Option<u64>,
}

impl Overrides {
    fn from_env() -> Result<Self, ConfigError> {
        fn var(name: &str) -> Option<String> {
            std::env::var(format!("STS_BROKER_{name}")).ok()
        }
        fn num<T: std::str::FromStr>(name: &str) -> Result<Option<T>, ConfigError> {
            var(name)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        ConfigError::Invalid(format!("STS_BROKER_{name}: not a number: {v}"))
                    })
                })
                .transpose()
        }
        fn flag(name: &str) -> Result<Option<bool>, ConfigError> {
            var(name)
                .map(|v| match v.trim() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" | "" => Ok(false),
                    _ => Err(ConfigError::Invalid(format!(
                        "STS_BROKER_{name}: not a boolean: {v}"
                    ))),
                })
                .transpose()
        }
        Ok(Self {
            listen: var("LISTEN"),
            data_dir: var("DATA_DIR").map(PathBuf::from),
            insecure_http: flag("INSECURE_HTTP")?,
            tls_cert: var("TLS_CERT").map(PathBuf::from),
            tls_key: var("TLS_KEY").map(PathBuf::from),
            regions: var("REGIONS").map(|v| v.split(',').map(|r| r.trim().to_owned()).collect()),
            max_body_bytes: num("MAX_BODY_BYTES")?,
            max_header_bytes: num("MAX_HEADER_BYTES")?,
            header_read_timeout_secs: num("HEADER_READ_TIMEOUT_SECS")?,
            request_timeout_secs: num("REQUEST_TIMEOUT_SECS")?,
            mfa_window: num("MFA_WINDOW")?,
            mfa_resync_window: num("MFA_RESYNC_WINDOW")?,
            max_mfa_devices_per_user: num("MAX_MFA_DEVICES_PER_USER")?,
            mfa_free_failures: num("MFA_FREE_FAILURES")?,
            mfa_base_backoff_secs: num("MFA_BASE_BACKOFF_SECS")?,
            mfa_max_backoff_secs: num("MFA_MAX_BACKOFF_SECS")?,
            mfa_issuer: var("MFA_ISSUER"),
            audit_log: var("AUDIT_LOG"),
            change_poll_millis: num("CHANGE_POLL_MILLIS")?,
        })
    }
}

/// Why a configuration could not be loaded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO failure.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for the known keys.
    #[error("invalid config file: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::with_data_dir("d");
        c.validate().unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 8080);
        assert!(c.regions.iter().any(|r| r.is_empty()));
        assert!(c.regions.iter().any(|r| r == "us-east-1"));
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("d/audit.log")));
    }

    #[test]
    fn file_overrides_apply_and_unknown_keys_are_refused() {
        let mut c = Config::with_data_dir("d");
        let o: Overrides = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nmfa_window = 2\nregions = [\"eu-west-1\"]\naudit_log = \"stdout\"\ndata_dir = \"x\"",
        )
        .unwrap();
        c.apply(o).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.mfa_window, 2);
        assert_eq!(c.regions, vec!["eu-west-1".to_owned()]);
        assert_eq!(c.audit, AuditTarget::Stdout);
        assert_eq!(c.data_dir, PathBuf::from("x"));
        assert!(toml::from_str::<Overrides>("nope = 1").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut c = Config::with_data_dir("d");
        let o: Overrides = toml::from_str("mfa_window = 3").unwrap();
        assert!(c.apply(o).is_err());
        let o: Overrides = toml::from_str("max_mfa_devices_per_user = 9").unwrap();
        assert!(c.apply(o).is_err());
    }

    #[test]
    fn moving_the_data_dir_moves_the_default_audit_file() {
        let mut c = Config::with_data_dir("a");
        c.set_data_dir(PathBuf::from("b"));
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("b/audit.log")));
    }
}
