//! Audit records: one JSON line per GetSessionToken and per MFA-device change, with time, request
//! id, account, principal, serial, outcome, reason and source address. Never a code, a seed or a
//! secret: the record type has no field that could hold one.
//!
//! The [`AuditLog`] is opened here, from the configured [`AuditTarget`], and handed to the
//! store, whose writer appends lines in the same batch as the writes they record.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::time::UnixTime;

/// Where audit lines go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "String")]
pub enum AuditTarget {
    /// Append JSON lines to this file.
    File(PathBuf),
    /// Write JSON lines to standard output.
    Stdout,
    /// Keep no audit log.
    Off,
}

/// The `audit_log` key: a path, `stdout` (or `-`), or `off` (or empty).
impl From<String> for AuditTarget {
    fn from(value: String) -> Self {
        match value.as_str() {
            "stdout" | "-" => Self::Stdout,
            "off" | "" => Self::Off,
            _ => Self::File(PathBuf::from(value)),
        }
    }
}

/// Where audit lines are appended.
pub(crate) struct AuditLog {
    sink: Sink,
}

enum Sink {
    File(BufWriter<File>),
    Stdout,
    Off,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.sink {
            Sink::File(_) => "file",
            Sink::Stdout => "stdout",
            Sink::Off => "off",
        };
        f.debug_struct("AuditLog").field("sink", &kind).finish()
    }
}

impl AuditLog {
    /// Opens `target` for appending (a file is created with mode 0600).
    pub(crate) fn open(target: &AuditTarget) -> std::io::Result<Self> {
        let sink = match target {
            AuditTarget::File(path) => {
                let mut options = OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(0o600);
                }
                let file = options.open(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()))
                })?;
                Sink::File(BufWriter::new(file))
            }
            AuditTarget::Stdout => Sink::Stdout,
            AuditTarget::Off => Sink::Off,
        };
        Ok(Self { sink })
    }

    /// Appends `lines`, one JSON object each, and flushes them to the sink.
    pub(crate) fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        match &mut self.sink {
            Sink::File(w) => {
                for l in lines {
                    writeln!(w, "{l}")?;
                }
                w.flush()
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for l in lines {
                    writeln!(out, "{l}")?;
                }
                out.flush()
            }
            Sink::Off => Ok(()),
        }
    }

    /// Flushes buffered lines.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::File(w) => w.flush(),
            Sink::Stdout | Sink::Off => Ok(()),
        }
    }
}

/// The outcome of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// The action took effect.
    Success,
    /// The action was refused or failed.
    Failure,
}

/// One audit record.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AuditEvent<'a> {
    /// When, ISO 8601 UTC.
    pub time: String,
    /// The request id returned to the client (or `admin` for operator commands).
    pub request_id: &'a str,
    /// The account.
    pub account: &'a str,
    /// The API action or admin command.
    pub action: &'a str,
    /// The caller's ARN, when authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
    /// The caller's access key id (not a secret; CloudTrail records it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<&'a str>,
    /// The MFA device concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<&'a str>,
    /// The user concerned by an IAM change, when not the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_user: Option<&'a str>,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in a short machine-readable word (`wrong_code`, `replayed`, `fido_key`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The error code returned, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'a str>,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// Whether the issued credentials carry MFA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_authenticated: Option<bool>,
    /// Expiry of issued credentials, ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// The HTTP method of a request a gate judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<&'a str>,
    /// The path (never the query, which may carry a presigned token) of a request a gate
    /// judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
}

impl<'a> AuditEvent<'a> {
    /// A record with the required fields; the rest are set by the caller.
    pub(crate) fn new(
        now: UnixTime,
        request_id: &'a str,
        account: &'a str,
        action: &'a str,
        outcome: Outcome,
    ) -> Self {
        Self {
            time: now.iso8601(),
            request_id,
            account,
            action,
            principal: None,
            access_key_id: None,
            serial: None,
            target_user: None,
            outcome,
            reason: None,
            error_code: None,
            source_ip: None,
            mfa_authenticated: None,
            expiration: None,
            http_method: None,
            path: None,
        }
    }

    /// The JSON line (without newline).
    pub(crate) fn to_line(&self) -> String {
        // Serialising plain strings, numbers and addresses cannot fail; an empty object is a
        // visible, harmless fallback.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_json_with_only_set_fields() {
        let mut e = AuditEvent::new(
            UnixTime::from_secs(0),
            "rid",
            "123456789012",
            "GetSessionToken",
            Outcome::Failure,
        );
        e.serial = Some("arn:aws:iam::123456789012:mfa/a");
        e.reason = Some("wrong_code");
        e.source_ip = Some(IpAddr::from([127, 0, 0, 1]));
        let line = e.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["outcome"], "failure");
        assert_eq!(v["reason"], "wrong_code");
        assert_eq!(v["source_ip"], "127.0.0.1");
        assert!(v.get("principal").is_none());
        assert!(!line.contains('\n'));
    }
}
