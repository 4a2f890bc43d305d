//! Audit records: one JSON line per GetSessionToken and per MFA-device change, with time, request
//! id, account, principal, serial, outcome, reason and source address. Never a code, a seed or a
//! secret: the record type has no field that could hold one.
//!
//! The [`AuditLog`] is opened here, from the configured [`AuditTarget`], and handed to the
//! store, whose audit thread appends lines in batches, a write's line once the write is
//! committed. An append returns only once its lines are durable (written and fsynced), because
//! credentials are returned only after their line is (README.md, audit log); when it fails, the
//! audit thread holds the lines and tries again.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[cfg(test)]
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
    File(AuditFile),
    Stdout,
    Off,
}

/// An audit file, opened for appending; after a failed append it is opened again, so that a
/// file replaced or recreated meanwhile (or a volume mounted again) is the one written.
struct AuditFile {
    path: PathBuf,
    file: Option<File>,
    /// A failed append left part of a line that could not be cut off: the next append starts
    /// with a newline, so that the fragment stays a line of its own.
    torn: bool,
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
            AuditTarget::File(path) => Sink::File(AuditFile {
                file: Some(open_append(path)?),
                path: path.clone(),
                torn: false,
            }),
            AuditTarget::Stdout => Sink::Stdout,
            AuditTarget::Off => Sink::Off,
        };
        Ok(Self { sink })
    }

    /// Appends `lines`, one JSON object each. When it returns `Ok`, they are durable: written
    /// and fsynced for a file, written and flushed to standard output (whose reader decides
    /// what durable means). On an error none of them counts as written.
    pub(crate) fn append<'l>(
        &mut self,
        lines: impl IntoIterator<Item = &'l str>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        if buf.is_empty() {
            return Ok(());
        }
        match &mut self.sink {
            Sink::File(f) => f.append(buf),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()
            }
            Sink::Off => Ok(()),
        }
    }
}

impl AuditFile {
    fn append(&mut self, mut buf: Vec<u8>) -> std::io::Result<()> {
        if self.torn {
            buf.insert(0, b'\n');
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&self.path)?),
        };
        let start = file.metadata()?.len();
        let (written, result) = write_and_sync(file, &buf);
        match result {
            Ok(()) => {
                self.torn = false;
                Ok(())
            }
            Err(e) => {
                // Cut off what this append wrote, unless someone else (an admin command)
                // appended after it; then mark it torn instead.
                let cut = written > 0
                    && file.metadata().is_ok_and(|m| m.len() == start + written)
                    && file.set_len(start).is_ok();
                self.torn |= written > 0 && !cut;
                self.file = None;
                Err(e)
            }
        }
    }
}

/// Writes all of `buf` and syncs it; how many bytes reached the file in any case.
fn write_and_sync(file: &mut File, buf: &[u8]) -> (u64, std::io::Result<()>) {
    let mut written = 0_usize;
    while let Some(rest) = buf.get(written..).filter(|r| !r.is_empty()) {
        match file.write(rest) {
            Ok(0) => return (written as u64, Err(ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (written as u64, Err(e)),
        }
    }
    (written as u64, file.sync_data())
}

/// Opens `path` for appending, creating it with mode 0600; a file just created is made
/// durable in its directory too.
fn open_append(path: &Path) -> std::io::Result<File> {
    let existed = path.exists();
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let describe = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()))
    };
    let file = options.open(path).map_err(describe)?;
    if !existed && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(describe)?;
    }
    Ok(file)
}

/// The outcome of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize), serde(rename_all = "lowercase"))]
pub(crate) enum Outcome {
    /// The action took effect.
    Success,
    /// The action was refused or failed.
    Failure,
}

/// One audit record. The tests check its line against serde_json's serialisation of the same
/// fields, in this order.
#[derive(Clone, Debug)]
#[cfg_attr(test, derive(Serialize))]
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
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub principal: Option<&'a str>,
    /// The caller's access key id (not a secret; CloudTrail records it too).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub access_key_id: Option<&'a str>,
    /// The MFA device concerned.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub serial: Option<&'a str>,
    /// The user concerned by an IAM change, when not the caller.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub target_user: Option<&'a str>,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in a short machine-readable word (`wrong_code`, `replayed`, `fido_key`…).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub reason: Option<&'a str>,
    /// The error code returned, on failure.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub error_code: Option<&'a str>,
    /// The client's address.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub source_ip: Option<IpAddr>,
    /// Whether the caller proved MFA: a verified code, or a session that carries one; on a
    /// success of GetSessionToken, whether the issued credentials carry MFA.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub mfa_authenticated: Option<bool>,
    /// Expiry of issued credentials, ISO 8601.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub expiration: Option<String>,
    /// The HTTP method of a request a gate judged.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub http_method: Option<&'a str>,
    /// The path (never the query, which may carry a presigned token) of a request a gate
    /// judged.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub path: Option<&'a str>,
    /// An outage of the audit log: since when its lines could not be written, ISO 8601.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub since: Option<String>,
    /// An outage of the audit log: the lines held during it, written right after this one.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub held_lines: Option<u64>,
    /// An outage of the audit log: the lines lost because too many were held.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub dropped_lines: Option<u64>,
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
            since: None,
            held_lines: None,
            dropped_lines: None,
        }
    }

    /// The JSON line (without newline): the set fields in declaration order, strings escaped
    /// as RFC 8259 requires (`"`, `\\` and control characters; the same bytes serde_json
    /// writes). Written by hand into one pre-sized buffer: every GetSessionToken writes a line,
    /// and serde_json's serialiser cost about as much as the rest of the line's work.
    pub(crate) fn to_line(&self) -> String {
        let mut line = JsonLine(String::with_capacity(512));
        line.0.push('{');
        line.string("time", &self.time);
        line.string("request_id", self.request_id);
        line.string("account", self.account);
        line.string("action", self.action);
        line.opt_string("principal", self.principal);
        line.opt_string("access_key_id", self.access_key_id);
        line.opt_string("serial", self.serial);
        line.opt_string("target_user", self.target_user);
        line.string(
            "outcome",
            match self.outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            },
        );
        line.opt_string("reason", self.reason);
        line.opt_string("error_code", self.error_code);
        if let Some(ip) = self.source_ip {
            line.key("source_ip");
            line.0.push('"');
            // An address's text holds nothing to escape.
            let _ = std::fmt::Write::write_fmt(&mut line.0, format_args!("{ip}"));
            line.0.push('"');
        }
        if let Some(b) = self.mfa_authenticated {
            line.key("mfa_authenticated");
            line.0.push_str(if b { "true" } else { "false" });
        }
        line.opt_string("expiration", self.expiration.as_deref());
        line.opt_string("http_method", self.http_method);
        line.opt_string("path", self.path);
        line.opt_string("since", self.since.as_deref());
        line.opt_number("held_lines", self.held_lines);
        line.opt_number("dropped_lines", self.dropped_lines);
        line.0.push('}');
        line.0
    }
}

/// A JSON object being written, fields comma-separated.
struct JsonLine(String);

impl JsonLine {
    fn key(&mut self, name: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(name);
        self.0.push_str("\":");
    }

    fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        self.0.push('"');
        push_json_escaped(&mut self.0, value);
        self.0.push('"');
    }

    fn opt_string(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.string(name, v);
        }
    }

    fn opt_number(&mut self, name: &str, value: Option<u64>) {
        if let Some(n) = value {
            self.key(name);
            let _ = std::fmt::Write::write_fmt(&mut self.0, format_args!("{n}"));
        }
    }
}

/// Appends `text` escaped for a JSON string: runs without `"`, `\` or a control character are
/// copied whole.
fn push_json_escaped(out: &mut String, text: &str) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both ends are character boundaries.
        out.push_str(text.get(start..i).unwrap_or_default());
        if short.is_empty() {
            // A control character: 0x00-0x1f, so its hex digits are 0-1 and 0-f.
            let hex = |d: u8| char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 });
            out.push_str("\\u00");
            out.push(hex(b >> 4));
            out.push(hex(b & 0xf));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(text.get(start..).unwrap_or_default());
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
        assert!(v.get("held_lines").is_none());
        assert!(!line.contains('\n'));
    }

    #[test]
    fn line_is_what_serde_json_writes_for_every_field_and_character() {
        let mut text = String::new();
        for c in (0u32..0x80)
            .chain([0xe9, 0x2028, 0x1f600])
            .filter_map(char::from_u32)
        {
            text.push(c);
        }
        let texts = [
            "",
            "plain",
            "a\"b\\c/d",
            text.as_str(),
            "\u{7f}\u{0}x\u{1f}",
        ];
        for t in texts {
            let mut e = AuditEvent::new(UnixTime::from_secs(86_399), t, t, t, Outcome::Success);
            assert_eq!(e.to_line(), serde_json::to_string(&e).unwrap());
            e.principal = Some(t);
            e.access_key_id = Some(t);
            e.serial = Some(t);
            e.target_user = Some(t);
            e.outcome = Outcome::Failure;
            e.reason = Some(t);
            e.error_code = Some(t);
            e.source_ip = Some(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]));
            e.mfa_authenticated = Some(false);
            e.expiration = Some(t.to_owned());
            e.http_method = Some(t);
            e.path = Some(t);
            e.since = Some(t.to_owned());
            e.held_lines = Some(0);
            e.dropped_lines = Some(u64::MAX);
            assert_eq!(e.to_line(), serde_json::to_string(&e).unwrap());
            e.mfa_authenticated = Some(true);
            e.source_ip = Some(IpAddr::from([10, 0, 0, 1]));
            assert_eq!(e.to_line(), serde_json::to_string(&e).unwrap());
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sts-audit-{tag}-{}", crate::ids::request_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_are_lines_in_a_private_file() {
        let dir = scratch("file");
        let path = dir.join("audit.log");
        let mut log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        log.append(["{\"a\":1}", "{\"b\":2}"]).unwrap();
        log.append([]).unwrap();
        log.append(["{\"c\":3}"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A device that refuses every write (ENOSPC) makes an append fail; once the path can be
    /// written again (here: the link replaced by a file), the next append opens it afresh.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_append_fails_and_the_next_one_reopens_the_path() {
        let dir = scratch("full");
        let path = dir.join("audit.log");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let mut log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        let err = log.append(["{}"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        assert!(log.append(["{}"]).is_err());
        std::fs::remove_file(&path).unwrap();
        log.append(["{\"after\":1}"]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"after\":1}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_line_stays_a_line_of_its_own() {
        let dir = scratch("torn");
        let path = dir.join("audit.log");
        let mut log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        std::fs::write(&path, "{\"half").unwrap();
        if let Sink::File(f) = &mut log.sink {
            f.torn = true;
        }
        log.append(["{\"whole\":1}"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"half\n{\"whole\":1}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
