//! Raw HTTP/1.1 to the broker: requests built byte by byte, replies parsed, and curl.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::broker::TestBroker;
use crate::support::clients::Creds;
use crate::support::signing::OracleSigner;

/// The form content type botocore sends.
pub(crate) const FORM_UTF8: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// GetCallerIdentity's form body.
pub(crate) const GCI: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// A parsed HTTP/1.1 reply.
pub(crate) struct RawResponse {
    /// 0 when no status line came back.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a Content-Length-framed HTTP/1.1 response.
pub(crate) fn parse_response(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends raw bytes (which must carry `Connection: close`) and reads the whole response.
pub(crate) async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// Sends raw bytes (which must carry `Connection: close`) and returns the raw response, for
/// bodies that are not text.
pub(crate) async fn raw_http_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    buf
}

/// Sends bytes, tolerating a server that answers (and closes) before it read everything.
pub(crate) async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// The text of `<tag>` in an XML body.
pub(crate) fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(&body[start..end])
}

/// XML text with the five predefined entities decoded.
pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An HTTP/1.1 request as it will go on the wire (header names lowercase).
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    /// `POST /` with a form body and botocore's content type.
    pub(crate) fn post(body: &str) -> Self {
        Self {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![("content-type".into(), FORM_UTF8.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// `GET /?query`.
    pub(crate) fn get(query: &str) -> Self {
        Self {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (kept in order, duplicates allowed).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Removes every header called `name`.
    pub(crate) fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the value of header `name`.
    pub(crate) fn replace(self, name: &str, value: &str) -> Self {
        self.without(name).header(name, value)
    }

    pub(crate) fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request target: path and query.
    pub(crate) fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The bytes on the wire: adds `Host` (unless present), `Content-Length` for a POST or a
    /// body, and `Connection: close`.
    pub(crate) fn wire(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target());
        if self.get_header("host").is_none() {
            out.push_str(&format!("Host: {host}\r\n"));
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if self.method == "POST" || !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Sends `req` to the broker.
pub(crate) async fn send(b: &TestBroker, req: &Req) -> RawResponse {
    raw_http(b.addr, &req.wire(&b.addr.to_string())).await
}

/// Signs `req` with `aws-sigv4` at the broker's now and sends it.
pub(crate) async fn send_signed(b: &TestBroker, creds: &Creds, req: &Req) -> RawResponse {
    let host = b.addr.to_string();
    send(b, &OracleSigner::new(creds, b.now()).sign(&host, req)).await
}

/// RFC 1123, as an HTTP `Date` header.
pub(crate) fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap()))
}

/// Unix seconds of an ISO-8601 `Expiration`.
pub(crate) fn parse_iso(text: &str) -> i64 {
    aws_sdk_sts::primitives::DateTime::from_str(
        text,
        aws_sdk_sts::primitives::DateTimeFormat::DateTime,
    )
    .unwrap()
    .secs()
}

/// Runs curl (off the runtime, so the in-process broker keeps serving); returns the parsed
/// `-i` output.
pub(crate) async fn curl(args: Vec<String>) -> RawResponse {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
}

/// `curl --aws-sigv4 aws:amz:us-east-1:sts --user AKID:SECRET` plus `extra`.
pub(crate) fn curl_sigv4_args(creds: &Creds, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--aws-sigv4".to_owned(),
        "aws:amz:us-east-1:sts".to_owned(),
        "--user".to_owned(),
        format!("{}:{}", creds.akid, creds.secret),
    ];
    if let Some(token) = &creds.token {
        args.push("-H".into());
        args.push(format!("x-amz-security-token: {token}"));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}
