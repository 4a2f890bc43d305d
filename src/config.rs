//! Broker configuration: embedded defaults, overridden by an optional TOML file, then by
//! `STS_BROKER_*` environment variables, then by command-line flags (applied in `main`).
//!
//! Every deserialized field of [`Config`] is a key: the file names it as is, the environment
//! upper-cased after `STS_BROKER_`. The layers are merged key by key and deserialized once, so a
//! new key needs only its field, its doc and its default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde::de::value::{SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

pub(crate) use crate::audit::AuditTarget;

/// Prefix of the environment variables that set keys.
const ENV_PREFIX: &str = "STS_BROKER_";

/// Data dir when neither a layer nor a flag names one.
const DEFAULT_DATA_DIR: &str = "sts-broker-data";

/// Everything the broker needs to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default = "Config::embedded", deny_unknown_fields)]
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
    /// Regions a credential scope may name; `""` is botocore's `region_name=''`. In the
    /// environment, a comma-separated list.
    pub regions: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest total size of request headers accepted.
    pub max_header_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_secs: u64,
    /// Time a whole request may take, body included.
    pub request_timeout_secs: u64,
    /// Time from accepting a connection to its first request's headers, the TLS handshake and
    /// the protocol sniff included; a connection that has not sent one by then is closed.
    pub first_request_timeout_secs: u64,
    /// Time a connection may wait for its next request (HTTP/1.1 keep-alive, or HTTP/2 with
    /// no stream open) before it is closed (HTTP/2: sent a GOAWAY).
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog. When unset, derived
    /// from the open-file limit (see README.md).
    pub max_connections: Option<usize>,
    /// Allowed clock skew of signed requests. Not a key: it stays at AWS's 15 minutes.
    #[serde(skip)]
    pub max_skew_secs: i64,
    /// TOTP acceptance window, in steps on each side of now (0–2).
    pub mfa_window: u32,
    /// Window searched by EnableMFADevice/ResyncMFADevice to learn a device's drift, in steps.
    pub mfa_resync_window: u32,
    /// MFA devices an identity may have enabled: 1 by default, AWS's limit before November 2022;
    /// at most 8, today's (`docs/mfa.md#device-count`).
    pub max_mfa_devices_per_user: u32,
    /// Virtual MFA devices the account may hold, assigned or not: AWS ties this quota to the
    /// user quota, 5,000 (`docs/iam-mfa-api.md#createvirtualmfadevice`).
    pub max_virtual_mfa_devices: u32,
    /// Unassigned virtual MFA devices an IAM user may have created and hold at once, so that
    /// no user can fill the account's quota or take every name (`docs/iam-mfa-api.md#createvirtualmfadevice`).
    pub max_unassigned_mfa_devices_per_user: u32,
    /// Consecutive MFA failures before a device is locked out.
    pub mfa_free_failures: u32,
    /// First lock-out, doubled by each further failure.
    pub mfa_base_backoff_secs: i64,
    /// Longest lock-out.
    pub mfa_max_backoff_secs: i64,
    /// Issuer shown by authenticator apps for virtual devices.
    pub mfa_issuer: String,
    /// Where audit lines go; key `audit_log`.
    #[serde(rename = "audit_log")]
    pub audit: AuditTarget,
    /// How often the broker looks for changes made by `sts-broker admin` or another process
    /// (and a gate, for the broker's changes).
    pub change_poll_millis: u64,
    /// Address `sts-broker gate` listens on.
    pub gate_listen: SocketAddr,
    /// Where the gate forwards admitted requests: an `http://host:port[/prefix]` URL. Without
    /// one, the gate only answers forward-auth requests, on every path.
    pub gate_upstream: Option<String>,
    /// The credential-scope service requests to the gate must be signed for.
    pub gate_service: String,
    /// The gate admits only session credentials minted with a verified MFA code.
    pub gate_require_mfa: bool,
    /// With MFA, the longest time since the MFA authentication (`aws:MultiFactorAuthAge`).
    pub gate_max_mfa_age_secs: Option<i64>,
    /// Time the upstream has to answer (response headers) before the gate answers 504.
    pub gate_upstream_timeout_secs: u64,
    /// Path of the gate's forward-auth endpoint when it also forwards to an upstream.
    pub gate_verify_path: String,
    /// The shared identity store of several nodes: `postgres://USER[:PASSWORD]@HOST:PORT/DB`
    /// (`?sslmode=require` for TLS). Unset: the embedded SQLite store in `data_dir`.
    pub store_url: Option<BackendUrl>,
    /// The shared replay guard and MFA lock-out of several nodes: `redis://HOST:PORT[/DB]`, or
    /// `rediss://` for TLS (Redis or Valkey). Unset: the embedded ones (`docs/multinode.md`).
    pub replay_url: Option<BackendUrl>,
    /// Time every call to the shared store may take before the request is refused (503).
    pub store_timeout_millis: u64,
    /// Time every call to the replay backend may take before the MFA attempt is refused (503).
    pub replay_timeout_millis: u64,
}

/// The URL of a backend (PostgreSQL, Redis). Its password never appears in a `Debug` output
/// or a log line.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct BackendUrl(String);

impl From<String> for BackendUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl BackendUrl {
    /// The URL as given, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme, lower-cased (`postgres`, `redis`…).
    pub fn scheme(&self) -> String {
        self.0
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The URL with its password (in the user info or a `password` parameter) replaced by
    /// `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_owned();
        };
        let (authority_end, _) = rest
            .char_indices()
            .find(|&(_, c)| c == '/' || c == '?')
            .unwrap_or((rest.len(), ' '));
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{user_info}@{host}"),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let params: Vec<String> = query
                    .split('&')
                    .map(|p| match p.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => p.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", params.join("&"))
            }
            None => tail.to_owned(),
        };
        format!("{scheme}://{authority}{tail}")
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
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
            first_request_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: None,
            max_skew_secs: 15 * 60,
            mfa_window: 1,
            mfa_resync_window: 20,
            max_mfa_devices_per_user: 1,
            max_virtual_mfa_devices: 5_000,
            max_unassigned_mfa_devices_per_user: 10,
            mfa_free_failures: 5,
            mfa_base_backoff_secs: 30,
            mfa_max_backoff_secs: 15 * 60,
            mfa_issuer: "sts-broker".to_owned(),
            change_poll_millis: 500,
            gate_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            gate_upstream: None,
            gate_service: "execute-api".to_owned(),
            gate_require_mfa: false,
            gate_max_mfa_age_secs: None,
            gate_upstream_timeout_secs: 30,
            gate_verify_path: "/.sts-broker/verify".to_owned(),
            store_url: None,
            replay_url: None,
            store_timeout_millis: 1_000,
            replay_timeout_millis: 300,
        }
    }

    fn embedded() -> Self {
        Self::with_data_dir(DEFAULT_DATA_DIR)
    }

    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()?;
        // A variable that is not Unicode cannot hold a key's value; like an unset one, it is
        // ignored rather than fatal, as unrelated `STS_BROKER_*` variables may exist.
        let env = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        Self::from_layers(text.as_deref(), env)
    }

    /// Defaults, then the TOML `file` text (if any), then `env` as (name, value) pairs; the
    /// environment is a parameter so tests need not mutate the process's.
    fn from_layers(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut layers = BTreeMap::new();
        if let Some(text) = file {
            let table: toml::Table =
                toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
            layers.extend(
                table
                    .into_iter()
                    .map(|(key, value)| (key, Layer::File(value))),
            );
        }
        for (var, value) in env {
            let Some(name) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only the documented upper-case spelling counts.
            if name.bytes().any(|b| b.is_ascii_lowercase()) {
                continue;
            }
            let key = name.to_ascii_lowercase();
            layers.insert(key, Layer::Env { var, value });
        }
        let mut cfg = Self::deserialize(Layers(layers)).map_err(|e| e.0)?;
        // The default audit file lives in the data dir, so it follows a data dir set by a layer.
        let dir = std::mem::replace(&mut cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        cfg.set_data_dir(dir);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets the data dir; an audit file still at the old default follows it.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        if self.audit == AuditTarget::File(self.data_dir.join("audit.log")) {
            self.audit = AuditTarget::File(dir.join("audit.log"));
        }
        self.data_dir = dir;
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
        if self.max_virtual_mfa_devices == 0 || self.max_unassigned_mfa_devices_per_user == 0 {
            return Err(ConfigError::Invalid(
                "max_virtual_mfa_devices and max_unassigned_mfa_devices_per_user must be positive"
                    .into(),
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
        if self.first_request_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "first_request_timeout_secs and idle_timeout_secs must be positive".into(),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::Invalid(
                "max_connections must be positive".into(),
            ));
        }
        if self.max_body_bytes == 0 || self.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be positive and max_header_bytes at least 1024".into(),
            ));
        }
        if self.gate_max_mfa_age_secs.is_some_and(|s| s <= 0) {
            return Err(ConfigError::Invalid(
                "gate_max_mfa_age_secs must be positive".into(),
            ));
        }
        if self.gate_upstream_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "gate_upstream_timeout_secs must be positive".into(),
            ));
        }
        if !self.gate_verify_path.starts_with('/') {
            return Err(ConfigError::Invalid(
                "gate_verify_path must start with /".into(),
            ));
        }
        if let Some(url) = &self.store_url
            && !matches!(url.scheme().as_str(), "postgres" | "postgresql")
        {
            return Err(ConfigError::Invalid(format!(
                "store_url must be a postgres:// URL, not {url}"
            )));
        }
        if let Some(url) = &self.replay_url
            && !matches!(
                url.scheme().as_str(),
                "redis" | "rediss" | "valkey" | "valkeys"
            )
        {
            return Err(ConfigError::Invalid(format!(
                "replay_url must be a redis:// or rediss:// URL, not {url}"
            )));
        }
        if self.store_timeout_millis == 0 || self.replay_timeout_millis == 0 {
            return Err(ConfigError::Invalid(
                "store_timeout_millis and replay_timeout_millis must be positive".into(),
            ));
        }
        if self.gate_service.is_empty() {
            return Err(ConfigError::Invalid(
                "gate_service must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// Where a key's value came from; errors name it so the user knows what to fix.
enum Layer {
    File(toml::Value),
    Env { var: String, value: String },
}

/// The merged layers, each key from the last layer that set it, read as a map by
/// `Config::deserialize`.
struct Layers(BTreeMap<String, Layer>);

/// Carries a [`ConfigError`] through serde, which needs an error type it can construct.
#[derive(Debug)]
struct LoadError(ConfigError);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LoadError {}

impl de::Error for LoadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(ConfigError::Invalid(msg.to_string()))
    }
}

impl<'de> Deserializer<'de> for Layers {
    type Error = LoadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LoadError> {
        visitor.visit_map(Entries {
            entries: self.0.into_iter(),
            pending: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LoadError> {
        // Unknown keys in the file are mistakes to refuse, but the environment holds other
        // `STS_BROKER_*` variables (the config file's path, the master key) that are not keys.
        let mut layers = self.0;
        layers
            .retain(|key, layer| matches!(layer, Layer::File(_)) || fields.contains(&key.as_str()));
        Self(layers).deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct Entries {
    entries: std::collections::btree_map::IntoIter<String, Layer>,
    pending: Option<(String, Layer)>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = LoadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, LoadError> {
        let Some((key, layer)) = self.entries.next() else {
            return Ok(None);
        };
        let name: StringDeserializer<de::value::Error> = key.clone().into_deserializer();
        self.pending = Some((key, layer));
        // Only file keys can be unknown: unknown variables were dropped.
        seed.deserialize(name)
            .map(Some)
            .map_err(|e| LoadError(ConfigError::Parse(e.to_string())))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, LoadError> {
        match self.pending.take() {
            Some((key, Layer::File(value))) => seed
                .deserialize(value)
                .map_err(|e| LoadError(ConfigError::Parse(format!("{key}: {}", e.message())))),
            Some((_, Layer::Env { var, value })) => seed
                .deserialize(EnvValue(&value))
                .map_err(|e| LoadError(ConfigError::Invalid(format!("{var}: {e}")))),
            None => Err(de::Error::custom("a value was read before its key")),
        }
    }
}

/// An environment variable's text, read as whatever type its key has.
struct EnvValue<'a>(&'a str);

impl EnvValue<'_> {
    fn number<T: FromStr>(&self) -> Result<T, de::value::Error> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format_args!("not a number: {}", self.0)))
    }
}

impl<'de> IntoDeserializer<'de, de::value::Error> for EnvValue<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

// Every width is covered so that a new key of any numeric type parses from the environment
// rather than being refused as a string.
macro_rules! env_numbers {
    ($($method:ident => $visit:ident,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, de::value::Error> {
            visitor.$visit(self.number()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for EnvValue<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.trim() {
            "1" | "true" | "yes" => visitor.visit_bool(true),
            // Setting a variable to nothing is how shells and service files clear a flag.
            "0" | "false" | "no" | "" => visitor.visit_bool(false),
            _ => Err(de::Error::custom(format_args!("not a boolean: {}", self.0))),
        }
    }

    env_numbers! {
        deserialize_i8 => visit_i8,
        deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64,
        deserialize_i128 => visit_i128,
        deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16,
        deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64,
        deserialize_u128 => visit_u128,
        deserialize_f32 => visit_f32,
        deserialize_f64 => visit_f64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        SeqDeserializer::new(self.0.split(',').map(|item| EnvValue(item.trim())))
            .deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct map struct
        enum identifier ignored_any
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

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn load(file: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_layers(Some(file), env(vars))
    }

    fn refusal(file: &str, vars: &[(&str, &str)]) -> String {
        match load(file, vars) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

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
    fn no_layers_give_the_embedded_defaults() {
        let c = Config::from_layers(None, env(&[])).unwrap();
        let d = Config::embedded();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.max_skew_secs, 15 * 60);
    }

    #[test]
    fn file_overrides_apply_and_unknown_keys_are_refused() {
        let c = load(
            "listen = \"0.0.0.0:9000\"\nmfa_window = 2\nregions = [\"eu-west-1\"]\naudit_log = \"stdout\"\ndata_dir = \"x\"",
            &[],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.mfa_window, 2);
        assert_eq!(c.regions, vec!["eu-west-1".to_owned()]);
        assert_eq!(c.audit, AuditTarget::Stdout);
        assert_eq!(c.data_dir, PathBuf::from("x"));
        let e = refusal("nope = 1", &[]);
        assert!(e.starts_with("invalid config file: "), "{e}");
        assert!(e.contains("unknown field `nope`"), "{e}");
        // Not a key, so not settable from the file either.
        assert!(load("max_skew_secs = 1", &[]).is_err());
    }

    #[test]
    fn backend_urls_come_from_the_environment_and_never_show_their_password() {
        let c = load(
            "",
            &[
                (
                    "STS_BROKER_STORE_URL",
                    "postgres://sts:s3cret@db.example:5432/sts?sslmode=require&password=x",
                ),
                ("STS_BROKER_REPLAY_URL", "rediss://:hunter2@cache:6380/0"),
            ],
        )
        .unwrap();
        let store = c.store_url.as_ref().unwrap();
        assert!(store.expose().contains("s3cret"));
        assert_eq!(
            store.redacted(),
            "postgres://sts:***@db.example:5432/sts?sslmode=require&password=***"
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert_eq!(c.replay_url.as_ref().unwrap().scheme(), "rediss");
        let e = refusal("store_url = \"mysql://db/sts\"", &[]);
        assert!(e.contains("store_url must be a postgres:// URL"), "{e}");
        let e = refusal("replay_url = \"memcached://x\"", &[]);
        assert!(e.contains("replay_url must be a redis://"), "{e}");
        assert!(load("store_timeout_millis = 0", &[]).is_err());
    }

    #[test]
    fn file_values_keep_their_toml_types() {
        let e = refusal("mfa_window = \"2\"", &[]);
        assert!(e.starts_with("invalid config file: mfa_window: "), "{e}");
        let e = refusal("insecure_http = \"yes\"", &[]);
        assert!(e.starts_with("invalid config file: insecure_http: "), "{e}");
        let e = refusal("regions = \"us-east-1,eu-west-1\"", &[]);
        assert!(e.starts_with("invalid config file: regions: "), "{e}");
        let e = refusal("listen = \"nowhere\"", &[]);
        assert!(e.starts_with("invalid config file: listen: "), "{e}");
        let e = refusal("mfa_window = ", &[]);
        assert!(e.starts_with("invalid config file: "), "{e}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(load("mfa_window = 3", &[]).is_err());
        assert!(load("max_mfa_devices_per_user = 9", &[]).is_err());
        let e = refusal("max_unassigned_mfa_devices_per_user = 0", &[]);
        assert!(e.contains("must be positive"), "{e}");
        let c = load(
            "max_virtual_mfa_devices = 20",
            &[("STS_BROKER_MAX_UNASSIGNED_MFA_DEVICES_PER_USER", "3")],
        )
        .unwrap();
        assert_eq!(
            (
                c.max_virtual_mfa_devices,
                c.max_unassigned_mfa_devices_per_user
            ),
            (20, 3)
        );
        let e = refusal("", &[("STS_BROKER_MFA_WINDOW", "3")]);
        assert_eq!(e, "invalid configuration: mfa_window must be 0, 1 or 2");
        let e = refusal("tls_cert = \"c.pem\"", &[]);
        assert!(
            e.contains("tls_cert and tls_key must be given together"),
            "{e}"
        );
    }

    #[test]
    fn connection_limits() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.first_request_timeout_secs, 10);
        assert_eq!(c.idle_timeout_secs, 60);
        assert_eq!(c.max_connections, None);
        let c = load(
            "max_connections = 500\nidle_timeout_secs = 5",
            &[("STS_BROKER_FIRST_REQUEST_TIMEOUT_SECS", "2")],
        )
        .unwrap();
        assert_eq!(c.max_connections, Some(500));
        assert_eq!(c.idle_timeout_secs, 5);
        assert_eq!(c.first_request_timeout_secs, 2);
        let c = load("", &[("STS_BROKER_MAX_CONNECTIONS", "64")]).unwrap();
        assert_eq!(c.max_connections, Some(64));
        let e = refusal("max_connections = 0", &[]);
        assert_eq!(e, "invalid configuration: max_connections must be positive");
        let e = refusal("", &[("STS_BROKER_IDLE_TIMEOUT_SECS", "0")]);
        assert_eq!(
            e,
            "invalid configuration: first_request_timeout_secs and idle_timeout_secs must be positive"
        );
        assert!(load("first_request_timeout_secs = 0", &[]).is_err());
        assert!(load("max_connections = -1", &[]).is_err());
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_the_defaults() {
        let c = load(
            "mfa_window = 2\nmfa_issuer = \"file\"\nlisten = \"127.0.0.1:9000\"",
            &[
                ("STS_BROKER_MFA_WINDOW", "0"),
                ("STS_BROKER_MFA_ISSUER", "env"),
            ],
        )
        .unwrap();
        assert_eq!(c.mfa_window, 0);
        assert_eq!(c.mfa_issuer, "env");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.mfa_resync_window, 20);
    }

    #[test]
    fn only_the_merged_result_is_validated() {
        let c = load(
            "tls_cert = \"c.pem\"\nmfa_window = 3",
            &[
                ("STS_BROKER_TLS_KEY", "k.pem"),
                ("STS_BROKER_MFA_WINDOW", "2"),
            ],
        )
        .unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!(c.mfa_window, 2);
    }

    #[test]
    fn environment_values_are_read_by_type() {
        let c = load(
            "",
            &[
                ("STS_BROKER_LISTEN", "[::1]:8443"),
                ("STS_BROKER_REGIONS", "us-east-1, eu-west-1 ,"),
                ("STS_BROKER_MAX_BODY_BYTES", " 1024 "),
                ("STS_BROKER_MFA_BASE_BACKOFF_SECS", "60"),
                ("STS_BROKER_MFA_MAX_BACKOFF_SECS", "60"),
                ("STS_BROKER_TLS_CERT", "c.pem"),
                ("STS_BROKER_TLS_KEY", "k.pem"),
                ("STS_BROKER_MFA_ISSUER", "1e3"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "[::1]:8443".parse::<SocketAddr>().unwrap());
        assert_eq!(c.regions, ["us-east-1", "eu-west-1", ""]);
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.mfa_base_backoff_secs, 60);
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.mfa_issuer, "1e3");
    }

    #[test]
    fn environment_booleans() {
        for (text, want) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            (" yes ", true),
            ("0", false),
            ("false", false),
            ("no", false),
            ("", false),
        ] {
            let c = load(
                "insecure_http = true",
                &[("STS_BROKER_INSECURE_HTTP", text)],
            )
            .unwrap();
            assert_eq!(c.insecure_http, want, "{text:?}");
        }
    }

    #[test]
    fn environment_audit_log() {
        for (text, want) in [
            ("stdout", AuditTarget::Stdout),
            ("-", AuditTarget::Stdout),
            ("off", AuditTarget::Off),
            ("", AuditTarget::Off),
            (
                "/var/log/sts.log",
                AuditTarget::File(PathBuf::from("/var/log/sts.log")),
            ),
        ] {
            let c = load("audit_log = \"stdout\"", &[("STS_BROKER_AUDIT_LOG", text)]).unwrap();
            assert_eq!(c.audit, want, "{text:?}");
        }
    }

    #[test]
    fn a_bad_variable_is_named() {
        let e = refusal("", &[("STS_BROKER_MFA_WINDOW", "two")]);
        assert_eq!(
            e,
            "invalid configuration: STS_BROKER_MFA_WINDOW: not a number: two"
        );
        let e = refusal("", &[("STS_BROKER_MAX_BODY_BYTES", "-1")]);
        assert_eq!(
            e,
            "invalid configuration: STS_BROKER_MAX_BODY_BYTES: not a number: -1"
        );
        let e = refusal("", &[("STS_BROKER_INSECURE_HTTP", "maybe")]);
        assert_eq!(
            e,
            "invalid configuration: STS_BROKER_INSECURE_HTTP: not a boolean: maybe"
        );
        let e = refusal("", &[("STS_BROKER_LISTEN", "nowhere")]);
        assert!(
            e.starts_with("invalid configuration: STS_BROKER_LISTEN: "),
            "{e}"
        );
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let c = load(
            "",
            &[
                ("STS_BROKER_CONFIG", "/etc/sts-broker.toml"),
                ("STS_BROKER_MASTER_KEY", "not a number"),
                ("STS_BROKER_MAX_SKEW_SECS", "1"),
                ("STS_BROKER_mfa_window", "two"),
                ("STS_BROKER_", "x"),
                ("MFA_WINDOW", "two"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.max_skew_secs, 15 * 60);
        assert_eq!(c.mfa_window, 1);
    }

    #[test]
    fn gate_keys_from_file_and_environment() {
        let c = load(
            "gate_upstream = \"http://127.0.0.1:9000\"\ngate_require_mfa = true",
            &[
                ("STS_BROKER_GATE_MAX_MFA_AGE_SECS", "300"),
                ("STS_BROKER_GATE_SERVICE", "orders"),
            ],
        )
        .unwrap();
        assert_eq!(c.gate_upstream.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.gate_require_mfa);
        assert_eq!(c.gate_max_mfa_age_secs, Some(300));
        assert_eq!(c.gate_service, "orders");
        assert_eq!(c.gate_verify_path, "/.sts-broker/verify");
        let e = refusal("", &[("STS_BROKER_GATE_MAX_MFA_AGE_SECS", "0")]);
        assert_eq!(
            e,
            "invalid configuration: gate_max_mfa_age_secs must be positive"
        );
    }

    #[test]
    fn moving_the_data_dir_moves_the_default_audit_file() {
        let mut c = Config::with_data_dir("a");
        c.set_data_dir(PathBuf::from("b"));
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("b/audit.log")));
        let c = load("", &[("STS_BROKER_DATA_DIR", "e")]).unwrap();
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("e/audit.log")));
        let c = load("audit_log = \"f.log\"", &[("STS_BROKER_DATA_DIR", "e")]).unwrap();
        assert_eq!(c.audit, AuditTarget::File(PathBuf::from("f.log")));
    }
}
