//! SigV4, the Query front door, responses and bad input, driven over raw HTTP with requests
//! signed by `aws-sigv4` (the oracle) or by hand from the spec text, and with `curl --aws-sigv4`.
//! Every refusal is asserted by status, code and byte-exact message (sts-contract §1–§4).

use std::time::{Duration, Instant, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use sts_broker::Broker;
use sts_broker::{AuditTarget, Config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{
    Creds, RawResponse, TestBroker, fresh_dir, parse_response, raw_http, wall_now, xml_text,
};

// ---------------------------------------------------------------------------------------------
// Helpers: requests, signers, curl, assertions.
// ---------------------------------------------------------------------------------------------

/// The form content type botocore sends.
pub const FORM_UTF8: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// GetCallerIdentity's form body.
pub const GCI: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// The generic signature-mismatch text.
pub const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
/// InvalidClientTokenId's text.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// An HTTP/1.1 request as it will go on the wire (header names lowercase).
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    /// `POST /` with a form body and botocore's content type.
    pub fn post(body: &str) -> Self {
        Self {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![("content-type".into(), FORM_UTF8.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// `GET /?query`.
    pub fn get(query: &str) -> Self {
        Self {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (kept in order, duplicates allowed).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Removes every header called `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the value of header `name`.
    pub fn replace(self, name: &str, value: &str) -> Self {
        self.without(name).header(name, value)
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The bytes on the wire: adds `Host` (unless present), `Content-Length` for a POST or a
    /// body, and `Connection: close`.
    pub fn wire(&self, host: &str) -> Vec<u8> {
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

/// RFC 3986 encoding (unreserved kept).
pub fn uri_encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Form-decodes one query piece (`+` is a space).
fn form_decode(raw: &str) -> Vec<u8> {
    let b = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Signs `req` with the `aws-sigv4` crate (header or presigned form) for the broker `host`.
#[derive(Clone, Debug)]
pub struct OracleSigner {
    pub creds: Creds,
    pub region: String,
    pub service: String,
    pub time: i64,
    pub presigned: bool,
    pub expires_secs: u64,
    pub content_sha256: bool,
}

impl OracleSigner {
    pub fn new(creds: &Creds, time: i64) -> Self {
        Self {
            creds: creds.clone(),
            region: "us-east-1".into(),
            service: "sts".into(),
            time,
            presigned: false,
            expires_secs: 3600,
            content_sha256: false,
        }
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    pub fn service(mut self, service: &str) -> Self {
        self.service = service.into();
        self
    }

    pub fn presigned(mut self, expires_secs: u64) -> Self {
        self.presigned = true;
        self.expires_secs = expires_secs;
        self
    }

    pub fn with_content_sha256(mut self) -> Self {
        self.content_sha256 = true;
        self
    }

    /// The signed request: `host` is added and signed, then the signer's headers or query
    /// parameters are appended.
    pub fn sign(&self, host: &str, req: &Req) -> Req {
        let mut req = req.clone();
        if req.get_header("host").is_none() {
            req.headers.insert(0, ("host".into(), host.into()));
        }
        let uri = format!("http://{host}{}", req.target());
        let identity: Identity = Credentials::new(
            &self.creds.akid,
            &self.creds.secret,
            self.creds.token.clone(),
            None,
            "it",
        )
        .into();
        let mut settings = SigningSettings::default();
        if self.presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(self.expires_secs));
        }
        if self.content_sha256 {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(self.time).unwrap()))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            &req.method,
            uri,
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(&req.body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let (headers, query_params) = instructions.into_parts();
        for h in headers {
            req.headers
                .push((h.name().to_ascii_lowercase(), h.value().to_owned()));
        }
        for (name, value) in query_params {
            if !req.query.is_empty() {
                req.query.push('&');
            }
            req.query.push_str(&uri_encode(name.as_bytes()));
            req.query.push('=');
            req.query.push_str(&uri_encode(value.as_bytes()));
        }
        req
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A signer written from the SigV4 spec text (sts-contract §4), for what `aws-sigv4` cannot
/// produce: a `Date` header instead of `X-Amz-Date`, any scope, duplicate headers, any
/// payload-hash header. It adds no header itself: the request must already carry the date.
#[derive(Clone, Debug)]
pub struct SpecSigner {
    pub creds: Creds,
    /// The request timestamp, basic form (the string to sign's second line).
    pub request_date: String,
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// `SignedHeaders`, in this order.
    pub signed: Vec<String>,
    /// Overrides the payload hash line (as a client honouring `x-amz-content-sha256` would).
    pub payload_hash: Option<String>,
}

impl SpecSigner {
    /// Signs at `time` (basic date and scope date derived from it), region us-east-1, `sts`.
    pub fn new(creds: &Creds, time: i64, signed: &[&str]) -> Self {
        let basic = basic_date(time);
        Self {
            creds: creds.clone(),
            scope_date: basic[..8].to_owned(),
            request_date: basic,
            region: "us-east-1".into(),
            service: "sts".into(),
            terminator: "aws4_request".into(),
            signed: signed.iter().map(|s| (*s).to_owned()).collect(),
            payload_hash: None,
        }
    }

    /// The canonical query: decoded, RFC 3986 re-encoded, sorted; `X-Amz-Signature` left out.
    pub fn canonical_query(query: &str) -> String {
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .filter(|(n, _)| *n != "X-Amz-Signature")
            .map(|(n, v)| (uri_encode(&form_decode(n)), uri_encode(&form_decode(v))))
            .collect();
        pairs.sort();
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Trimmed values with space runs folded, duplicates joined with `,` in order.
    fn canonical_headers(&self, req: &Req) -> String {
        let mut out = String::new();
        for name in &self.signed {
            let values: Vec<String> = req
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| {
                    v.split(' ')
                        .filter(|w| !w.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            out.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        out
    }

    /// The canonical request text.
    pub fn canonical_request(&self, req: &Req) -> String {
        let hash = self
            .payload_hash
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(&req.body)));
        format!(
            "{}\n{}\n{}\n{}\n{}\n{hash}",
            req.method,
            req.path,
            Self::canonical_query(&req.query),
            self.canonical_headers(req),
            self.signed.join(";"),
        )
    }

    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.scope_date, self.region, self.service, self.terminator
        )
    }

    /// The lowercase hex signature.
    pub fn signature(&self, req: &Req) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.request_date,
            self.scope(),
            hex::encode(Sha256::digest(self.canonical_request(req).as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.creds.secret).as_bytes(),
            self.scope_date.as_bytes(),
        );
        for part in [&self.region, &self.service, &self.terminator] {
            key = hmac(&key, part.as_bytes());
        }
        hex::encode(hmac(&key, string_to_sign.as_bytes()))
    }

    /// `req` with its `Authorization` header appended.
    pub fn sign(&self, req: &Req) -> Req {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
            self.creds.akid,
            self.scope(),
            self.signed.join(";"),
            self.signature(req)
        );
        req.clone().header("authorization", &auth)
    }
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn basic_date(unix: i64) -> String {
    let t = aws_sdk_sts::primitives::DateTime::from_secs(unix)
        .fmt(aws_sdk_sts::primitives::DateTimeFormat::DateTime)
        .unwrap();
    // 2026-08-23T12:00:00Z → 20260823T120000Z
    t.replace(['-', ':'], "")
}

/// RFC 1123, as an HTTP `Date` header.
pub fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap()))
}

/// Unix seconds of an ISO-8601 `Expiration`.
pub fn parse_iso(text: &str) -> i64 {
    aws_sdk_sts::primitives::DateTime::from_str(
        text,
        aws_sdk_sts::primitives::DateTimeFormat::DateTime,
    )
    .unwrap()
    .secs()
}

/// Sends `req` to the broker.
pub async fn send(b: &TestBroker, req: &Req) -> RawResponse {
    raw_http(b.addr, &req.wire(&b.addr.to_string())).await
}

/// Signs `req` with `aws-sigv4` at the broker's now and sends it.
pub async fn send_signed(b: &TestBroker, creds: &Creds, req: &Req) -> RawResponse {
    let host = b.addr.to_string();
    send(b, &OracleSigner::new(creds, b.now()).sign(&host, req)).await
}

/// Sends bytes, tolerating a server that answers (and closes) before it read everything.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// Runs curl (off the runtime, so the in-process broker keeps serving); returns the parsed
/// `-i` output.
pub async fn curl(args: Vec<String>) -> RawResponse {
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
pub fn curl_sigv4_args(creds: &Creds, extra: &[&str]) -> Vec<String> {
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

/// XML text with the five predefined entities decoded.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Asserts an AWS XML error: status, Content-Type, Type, Code, Message, and the request id in
/// both header and body.
#[track_caller]
pub fn assert_error(resp: &RawResponse, status: u16, code: &str, message: &str) {
    assert_eq!(
        (
            resp.status,
            xml_text(&resp.body, "Code"),
            xml_text(&resp.body, "Message").map(unescape).as_deref()
        ),
        (status, Some(code), Some(message)),
        "unexpected reply: {}",
        resp.body
    );
    assert_eq!(resp.header("content-type"), Some("text/xml"));
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    assert_eq!(xml_text(&resp.body, "Type"), Some(kind));
    let rid = xml_text(&resp.body, "RequestId").unwrap();
    assert_eq!(resp.header("x-amzn-requestid"), Some(rid));
}

/// Asserts a 200 GetCallerIdentity reply naming `arn`.
#[track_caller]
pub fn assert_identity(resp: &RawResponse, arn: &str) {
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(xml_text(&resp.body, "Arn"), Some(arn), "{}", resp.body);
}

fn root_arn(b: &TestBroker) -> String {
    format!("arn:aws:iam::{}:root", b.account_id)
}

fn user_arn(b: &TestBroker, name: &str) -> String {
    format!("arn:aws:iam::{}:user/{name}", b.account_id)
}

/// `<Message>` of a reply.
fn message(resp: &RawResponse) -> &str {
    xml_text(&resp.body, "Message").unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Clients: curl --aws-sigv4 (unsigned Content-Type), the oracle signer, botocore's encoding.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn curl_sigv4_post_with_unsigned_content_type() {
    let b = TestBroker::start().await;
    let resp = curl(curl_sigv4_args(&b.root, &["-d", GCI, &b.url()])).await;
    assert_identity(&resp, &root_arn(&b));
    assert_eq!(xml_text(&resp.body, "UserId"), Some(b.account_id.as_str()));
    b.stop().await;
}

#[tokio::test]
async fn curl_sigv4_with_charset_content_type_and_get_query() {
    let b = TestBroker::start().await;
    // A Content-Type given with -H is signed by curl.
    let ct = format!("Content-Type: {FORM_UTF8}");
    let resp = curl(curl_sigv4_args(&b.root, &["-H", &ct, "-d", GCI, &b.url()])).await;
    assert_identity(&resp, &root_arn(&b));
    let url = format!("{}/?{GCI}", b.url());
    let resp = curl(curl_sigv4_args(&b.root, &[&url])).await;
    assert_identity(&resp, &root_arn(&b));
    b.stop().await;
}

#[tokio::test]
async fn curl_sigv4_with_session_token_header() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    let resp = curl(curl_sigv4_args(&session, &["-d", GCI, &b.url()])).await;
    assert_identity(&resp, &user_arn(&b, "alice"));
    assert!(xml_text(&resp.body, "UserId").unwrap().starts_with("AIDA"));
    // The same session key without its token is refused.
    let bare = Creds::new(&session.akid, &session.secret, None);
    let resp = curl(curl_sigv4_args(&bare, &["-d", GCI, &b.url()])).await;
    assert_error(&resp, 403, "InvalidClientTokenId", INVALID_TOKEN);
    b.stop().await;
}

#[tokio::test]
async fn post_form_with_and_without_charset_and_signed_get() {
    let b = TestBroker::start().await;
    for ct in [
        "application/x-www-form-urlencoded",
        FORM_UTF8,
        "application/x-www-form-urlencoded;charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let req = Req::post(GCI).replace("content-type", ct);
        assert_identity(&send_signed(&b, &b.root, &req).await, &root_arn(&b));
    }
    assert_identity(
        &send_signed(&b, &b.root, &Req::get(GCI)).await,
        &root_arn(&b),
    );
    // GetSessionToken as the IAM User Guide shows it: a GET with everything in the query.
    let user = b.user_with_key("getter").await;
    let query = "Version=2011-06-15&Action=GetSessionToken&DurationSeconds=7200";
    let resp = send_signed(&b, &user, &Req::get(query)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let exp = parse_iso(xml_text(&resp.body, "Expiration").unwrap());
    assert_eq!(exp - b.now(), 7200);
    b.stop().await;
}

#[tokio::test]
async fn botocore_form_encoding_is_decoded() {
    let b = TestBroker::start().await;
    // quote_plus: ':' → %3A, '/' → %2F, ' ' → '+'.
    let body = "Action=GetSessionToken&Version=2011-06-15&SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Fa+b&TokenCode=123456";
    let resp = send_signed(&b, &b.root, &Req::post(body)).await;
    assert_error(
        &resp,
        400,
        "ValidationError",
        "1 validation error detected: Value 'arn:aws:iam::123456789012:mfa/a b' at 'serialNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=/:,.@-]*",
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Front door (contract §1).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_without_content_type_redirects_to_the_front_door() {
    let b = TestBroker::start().await;
    let req = Req::post(GCI).without("content-type");
    for resp in [send(&b, &req).await, send_signed(&b, &b.root, &req).await] {
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("location"), Some("https://aws.amazon.com/iam"));
        assert_eq!(resp.body, "");
        assert_eq!(resp.header("content-type"), Some("text/xml"));
        assert!(resp.header("x-amzn-requestid").is_some());
        assert!(resp.header("x-amz-sts-extended-request-id").is_some());
    }
    b.stop().await;
}

#[tokio::test]
async fn missing_action_redirects_with_the_query() {
    let b = TestBroker::start().await;
    let resp = send_signed(&b, &b.root, &Req::post("Version=2011-06-15")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("https://aws.amazon.com/iam"));
    assert_eq!(resp.body, "");
    let resp = send(&b, &Req::get("Version=2011-06-15")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some("https://aws.amazon.com/iam?Version=2011-06-15")
    );
    b.stop().await;
}

#[tokio::test]
async fn unknown_or_empty_action_is_invalid_action() {
    let b = TestBroker::start().await;
    let cases = [
        (
            "Action=NoSuchAction&Version=2011-06-15",
            "Could not find operation NoSuchAction for version 2011-06-15",
        ),
        (
            "Action=&Version=2011-06-15",
            "Could not find operation  for version 2011-06-15",
        ),
    ];
    for (body, text) in cases {
        let resp = send_signed(&b, &b.root, &Req::post(body)).await;
        assert_error(&resp, 400, "InvalidAction", text);
        assert!(
            resp.body.starts_with(
                "<ErrorResponse xmlns=\"http://webservices.amazon.com/AWSFault/2005-15-09\">\n"
            ),
            "{}",
            resp.body
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn missing_empty_or_other_version_is_invalid_action() {
    let b = TestBroker::start().await;
    let cases = [
        (
            "Action=GetCallerIdentity",
            "Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED",
        ),
        (
            "Action=GetCallerIdentity&Version=",
            "Could not find operation GetCallerIdentity for version ",
        ),
        (
            "Action=GetCallerIdentity&Version=2000-01-01",
            "Could not find operation GetCallerIdentity for version 2000-01-01",
        ),
    ];
    for (body, text) in cases {
        let resp = send_signed(&b, &b.root, &Req::post(body)).await;
        assert_error(&resp, 400, "InvalidAction", text);
        let resp = send_signed(&b, &b.root, &Req::get(body)).await;
        assert_error(&resp, 400, "InvalidAction", text);
    }
    b.stop().await;
}

#[tokio::test]
async fn duplicate_parameters_first_wins_and_unknown_are_ignored() {
    let b = TestBroker::start().await;
    let ok = "Action=GetCallerIdentity&Version=2011-06-15&Action=NoSuchAction&Version=2000-01-01";
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(ok)).await,
        &root_arn(&b),
    );
    let bad = "Action=NoSuchAction&Version=2011-06-15&Action=GetCallerIdentity";
    assert_error(
        &send_signed(&b, &b.root, &Req::post(bad)).await,
        400,
        "InvalidAction",
        "Could not find operation NoSuchAction for version 2011-06-15",
    );
    let unknown = "Foo=bar&Action=GetCallerIdentity&Flag&Version=2011-06-15&RoleArn=x";
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(unknown)).await,
        &root_arn(&b),
    );
    assert_identity(
        &send_signed(&b, &b.root, &Req::get(unknown)).await,
        &root_arn(&b),
    );
    // A duplicate DurationSeconds: the first decides.
    let user = b.user_with_key("dup").await;
    let body = "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900&DurationSeconds=3600";
    let resp = send_signed(&b, &user, &Req::post(body)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let exp = parse_iso(xml_text(&resp.body, "Expiration").unwrap());
    assert_eq!(exp - b.now(), 900);
    b.stop().await;
}

#[tokio::test]
async fn malformed_form_encoding_is_a_clean_error() {
    let b = TestBroker::start().await;
    let text = "The query string contains a syntax error.";
    let bodies: [&[u8]; 4] = [
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%zz",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%4",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%ff%fe",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=\xff\xfe",
    ];
    for body in bodies {
        let mut req = Req::post("");
        req.body = body.to_vec();
        assert_error(&send(&b, &req).await, 404, "MalformedQueryString", text);
        assert_error(
            &send_signed(&b, &b.root, &req).await,
            404,
            "MalformedQueryString",
            text,
        );
    }
    let resp = send(
        &b,
        &Req::get("Action=GetCallerIdentity&Version=2011-06-15&X=%zz"),
    )
    .await;
    assert_error(&resp, 404, "MalformedQueryString", text);
    // The server is still fine.
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &root_arn(&b),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Responses (contract §2, §3).
// ---------------------------------------------------------------------------------------------

fn assert_sts_headers(resp: &RawResponse) -> String {
    assert_eq!(resp.header("content-type"), Some("text/xml"));
    let rid = resp.header("x-amzn-requestid").unwrap().to_owned();
    // A UUID v4.
    assert_eq!(rid.len(), 36, "{rid}");
    assert_eq!(rid.as_bytes()[14], b'4', "{rid}");
    assert_eq!(rid.matches('-').count(), 4, "{rid}");
    let extended = resp.header("x-amz-sts-extended-request-id").unwrap();
    use base64::Engine as _;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(extended)
            .is_ok(),
        "{extended}"
    );
    assert!(resp.header("date").is_some());
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    rid
}

#[tokio::test]
async fn get_caller_identity_response_is_byte_exact() {
    let b = TestBroker::start().await;
    let resp = send_signed(&b, &b.root, &Req::post(GCI)).await;
    assert_eq!(resp.status, 200);
    let rid = assert_sts_headers(&resp);
    let acct = &b.account_id;
    assert_eq!(
        resp.body,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>arn:aws:iam::{acct}:root</Arn>\n    <UserId>{acct}</UserId>\n    <Account>{acct}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
        )
    );
    // Every request gets its own id.
    let again = send_signed(&b, &b.root, &Req::post(GCI)).await;
    assert_ne!(again.header("x-amzn-requestid"), Some(rid.as_str()));
    b.stop().await;
}

#[tokio::test]
async fn error_response_is_byte_exact() {
    let b = TestBroker::start().await;
    let resp = send(&b, &Req::post(GCI)).await;
    assert_eq!(resp.status, 403);
    let rid = assert_sts_headers(&resp);
    assert_eq!(
        resp.body,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>MissingAuthenticationToken</Code>\n    <Message>Request is missing Authentication Token</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n"
        )
    );
    b.stop().await;
}

#[tokio::test]
async fn get_session_token_response_has_the_contract_shape() {
    let b = TestBroker::start().await;
    let user = b.user_with_key("shape").await;
    let resp = send_signed(
        &b,
        &user,
        &Req::post("Action=GetSessionToken&Version=2011-06-15"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let rid = assert_sts_headers(&resp);
    let akid = xml_text(&resp.body, "AccessKeyId").unwrap();
    let secret = xml_text(&resp.body, "SecretAccessKey").unwrap();
    let token = xml_text(&resp.body, "SessionToken").unwrap();
    let exp = xml_text(&resp.body, "Expiration").unwrap();
    assert_eq!(
        resp.body,
        format!(
            "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetSessionTokenResult>\n    <Credentials>\n      <AccessKeyId>{akid}</AccessKeyId>\n      <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{exp}</Expiration>\n    </Credentials>\n  </GetSessionTokenResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetSessionTokenResponse>\n"
        )
    );
    // Whole seconds, UTC, `Z`.
    assert_eq!(exp.len(), 20, "{exp}");
    assert!(exp.ends_with('Z'));
    assert_eq!(parse_iso(exp) - b.now(), 43_200);
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SigV4 (contract §4; checklist 10–13).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spec_signer_agrees_with_aws_sigv4() {
    // Guards the hand-written signer used below: same request, same signature as the oracle.
    let creds = Creds::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let t = 1_700_000_000;
    let host = "127.0.0.1:8080";
    let req = Req::get("Version=2011-06-15&Action=GetCallerIdentity&Zeta=%7e&Alpha=a+b&Flag")
        .header("x-amz-meta-note", "  a   b ");
    let oracle = OracleSigner::new(&creds, t).sign(host, &req);
    let auth = oracle.get_header("authorization").unwrap();
    let mut spec = SpecSigner::new(&creds, t, &["host", "x-amz-date", "x-amz-meta-note"]);
    spec.signed.sort();
    let with_host = req
        .clone()
        .header("host", host)
        .header("x-amz-date", &basic_date(t));
    assert!(
        auth.ends_with(&format!("Signature={}", spec.signature(&with_host))),
        "{auth}\n{}",
        spec.canonical_request(&with_host)
    );
}

#[tokio::test]
async fn presigned_get_verifies_and_ignores_x_amz_expires() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = OracleSigner::new(&b.root, t)
        .presigned(60)
        .sign(&host, &Req::get(GCI));
    assert!(req.query.contains("X-Amz-Signature="));
    assert!(req.query.contains("X-Amz-Expires=60"));
    assert!(req.get_header("authorization").is_none());
    assert_identity(&send(&b, &req).await, &root_arn(&b));
    // X-Amz-Expires=60 is ignored: the URL stays valid 15 minutes around X-Amz-Date.
    b.clock.advance(14 * 60);
    assert_identity(&send(&b, &req).await, &root_arn(&b));
    b.clock.advance(2 * 60);
    let now = b.now();
    assert_error(
        &send(&b, &req).await,
        403,
        "SignatureDoesNotMatch",
        &format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            basic_date(t),
            basic_date(now - 900),
            basic_date(now)
        ),
    );
    // A presigned URL dated 14 minutes ahead is accepted too.
    let ahead = OracleSigner::new(&b.root, b.now() + 14 * 60)
        .presigned(1)
        .sign(&host, &Req::get(GCI));
    assert_identity(&send(&b, &ahead).await, &root_arn(&b));
    b.stop().await;
}

#[tokio::test]
async fn presigned_get_with_session_token() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    let host = b.addr.to_string();
    let req = OracleSigner::new(&session, b.now())
        .presigned(900)
        .sign(&host, &Req::get(GCI));
    assert!(req.query.contains("X-Amz-Security-Token="));
    assert!(req.get_header("x-amz-security-token").is_none());
    assert_identity(&send(&b, &req).await, &user_arn(&b, "alice"));
    // The token parameter removed → the session key alone is refused.
    let stripped = Req {
        query: req
            .query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Security-Token="))
            .collect::<Vec<_>>()
            .join("&"),
        ..req.clone()
    };
    assert_error(
        &send(&b, &stripped).await,
        403,
        "InvalidClientTokenId",
        INVALID_TOKEN,
    );
    // A tampered presigned signature.
    let mut tampered = req.clone();
    let i = tampered.query.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let c = if &tampered.query[i..=i] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.query.replace_range(i..=i, c);
    assert_error(
        &send(&b, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    b.stop().await;
}

#[tokio::test]
async fn date_header_is_the_fallback_for_x_amz_date() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = Req::post(GCI)
        .header("host", &host)
        .header("date", &http_date(t));
    let signed = SpecSigner::new(&b.root, t, &["content-type", "date", "host"]).sign(&req);
    assert!(signed.get_header("x-amz-date").is_none());
    assert_identity(&send(&b, &signed).await, &root_arn(&b));
    // The Date header counts for the skew as X-Amz-Date does.
    let old = t - 16 * 60;
    let req = Req::post(GCI)
        .header("host", &host)
        .header("date", &http_date(old));
    let signed = SpecSigner::new(&b.root, old, &["content-type", "date", "host"]).sign(&req);
    assert_error(
        &send(&b, &signed).await,
        403,
        "SignatureDoesNotMatch",
        &format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            basic_date(old),
            basic_date(t - 900),
            basic_date(t)
        ),
    );
    b.stop().await;
}

#[tokio::test]
async fn x_amz_content_sha256_must_match_the_body() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    // Matching (signed by the oracle).
    let req = OracleSigner::new(&b.root, b.now())
        .with_content_sha256()
        .sign(&host, &Req::post(GCI));
    let body_hash = hex::encode(Sha256::digest(GCI.as_bytes()));
    assert_eq!(
        req.get_header("x-amz-content-sha256"),
        Some(body_hash.as_str())
    );
    assert_identity(&send(&b, &req).await, &root_arn(&b));
    // Not matching: UNSIGNED-PAYLOAD, or the hash of another body, each signed as stated.
    let other = hex::encode(Sha256::digest(b"Action=GetSessionToken&Version=2011-06-15"));
    for stated in ["UNSIGNED-PAYLOAD", other.as_str()] {
        let req = Req::post(GCI)
            .header("host", &host)
            .header("x-amz-content-sha256", stated)
            .header("x-amz-date", &basic_date(b.now()));
        let mut spec = SpecSigner::new(
            &b.root,
            b.now(),
            &["content-type", "host", "x-amz-content-sha256", "x-amz-date"],
        );
        spec.payload_hash = Some(stated.to_owned());
        assert_error(
            &send(&b, &spec.sign(&req)).await,
            403,
            "SignatureDoesNotMatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn host_must_be_signed() {
    let b = TestBroker::start().await;
    let t = b.now();
    let req = Req::post(GCI).header("x-amz-date", &basic_date(t));
    let signed = SpecSigner::new(&b.root, t, &["content-type", "x-amz-date"]).sign(&req);
    assert_error(
        &send(&b, &signed).await,
        403,
        "SignatureDoesNotMatch",
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    );
    b.stop().await;
}

#[tokio::test]
async fn scope_region_must_be_configured() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    // botocore's region_name='' signs with an empty region.
    let empty = OracleSigner::new(&b.root, b.now())
        .region("")
        .sign(&host, &Req::post(GCI));
    assert!(
        empty
            .get_header("authorization")
            .unwrap()
            .contains("//sts/aws4_request")
    );
    assert_identity(&send(&b, &empty).await, &root_arn(&b));
    let other = OracleSigner::new(&b.root, b.now())
        .region("eu-west-3")
        .sign(&host, &Req::post(GCI));
    assert_error(
        &send(&b, &other).await,
        403,
        "SignatureDoesNotMatch",
        "Credential should be scoped to a valid region, not 'eu-west-3'. ",
    );
    b.stop().await;
    // Once configured, that region is accepted.
    let b = TestBroker::start_with(|c| c.regions.push("eu-west-3".into())).await;
    let host = b.addr.to_string();
    let other = OracleSigner::new(&b.root, b.now())
        .region("eu-west-3")
        .sign(&host, &Req::post(GCI));
    assert_identity(&send(&b, &other).await, &root_arn(&b));
    b.stop().await;
}

#[tokio::test]
async fn scope_service_terminator_and_date_are_checked() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    for service in ["iam", "s3"] {
        let req = OracleSigner::new(&b.root, t)
            .service(service)
            .sign(&host, &Req::post(GCI));
        assert_error(
            &send(&b, &req).await,
            403,
            "SignatureDoesNotMatch",
            "Credential should be scoped to correct service: 'sts'. ",
        );
    }
    let req = Req::post(GCI)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t));
    let signed = ["content-type", "host", "x-amz-date"];
    let mut spec = SpecSigner::new(&b.root, t, &signed);
    spec.terminator = "aws5_request".into();
    assert_error(
        &send(&b, &spec.sign(&req)).await,
        403,
        "SignatureDoesNotMatch",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. ",
    );
    let mut spec = SpecSigner::new(&b.root, t, &signed);
    let day_before = basic_date(t - 86_400)[..8].to_owned();
    spec.scope_date = day_before.clone();
    assert_error(
        &send(&b, &spec.sign(&req)).await,
        403,
        "SignatureDoesNotMatch",
        &format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{day_before}' != '{}', from '{}'. ",
            &basic_date(t)[..8],
            basic_date(t)
        ),
    );
    // A correct hand-signed request passes, so only the scope made the difference.
    let spec = SpecSigner::new(&b.root, t, &signed);
    assert_identity(&send(&b, &spec.sign(&req)).await, &root_arn(&b));
    b.stop().await;
}

#[tokio::test]
async fn skew_of_sixteen_minutes_is_refused_fourteen_accepted() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let now = b.now();
    let at = |t: i64| OracleSigner::new(&b.root, t).sign(&host, &Req::post(GCI));
    for offset in [-14 * 60, 14 * 60, -15 * 60, 15 * 60] {
        assert_identity(&send(&b, &at(now + offset)).await, &root_arn(&b));
    }
    let old = now - 16 * 60;
    assert_error(
        &send(&b, &at(old)).await,
        403,
        "SignatureDoesNotMatch",
        &format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            basic_date(old),
            basic_date(now - 900),
            basic_date(now)
        ),
    );
    let ahead = now + 16 * 60;
    assert_error(
        &send(&b, &at(ahead)).await,
        403,
        "SignatureDoesNotMatch",
        &format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            basic_date(ahead),
            basic_date(now + 900),
            basic_date(now)
        ),
    );
    b.stop().await;
}

#[tokio::test]
async fn wrong_signature_secret_or_body_is_signature_does_not_match() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let good = OracleSigner::new(&b.root, b.now()).sign(&host, &Req::post(GCI));
    // Tampered signature (last hex digit).
    let auth = good.get_header("authorization").unwrap().to_owned();
    let last = if auth.ends_with('0') { "1" } else { "0" };
    let tampered = good.clone().replace(
        "authorization",
        &format!("{}{last}", &auth[..auth.len() - 1]),
    );
    assert_error(
        &send(&b, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    // Wrong secret.
    let wrong = Creds::new(
        &b.root.akid,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    assert_error(
        &send_signed(&b, &wrong, &Req::post(GCI)).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    // Body changed after signing (same length).
    let mut changed = good.clone();
    changed.body = b"Action=GetCallerIdentity&Version=2011-06-16".to_vec();
    assert_error(
        &send(&b, &changed).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    // The right signature in uppercase hex, or cut short, matches nothing.
    let (head, sig) = auth.split_once("Signature=").unwrap();
    for bad in [sig.to_uppercase(), sig[..63].to_owned()] {
        let req = good
            .clone()
            .replace("authorization", &format!("{head}Signature={bad}"));
        assert_error(
            &send(&b, &req).await,
            403,
            "SignatureDoesNotMatch",
            MISMATCH,
        );
    }
    assert_identity(&send(&b, &good).await, &root_arn(&b));
    b.stop().await;
}

#[tokio::test]
async fn unknown_key_and_no_auth() {
    let b = TestBroker::start().await;
    let unknown = Creds::new("AKIAZZZZZZZZZZZZZZZZ", &b.root.secret, None);
    assert_error(
        &send_signed(&b, &unknown, &Req::post(GCI)).await,
        403,
        "InvalidClientTokenId",
        INVALID_TOKEN,
    );
    let unknown_session = Creds::new(
        "ASIAZZZZZZZZZZZZZZZZ",
        &b.root.secret,
        Some("x".repeat(120).as_str()),
    );
    assert_error(
        &send_signed(&b, &unknown_session, &Req::post(GCI)).await,
        403,
        "InvalidClientTokenId",
        INVALID_TOKEN,
    );
    for req in [Req::post(GCI), Req::get(GCI)] {
        assert_error(
            &send(&b, &req).await,
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn malformed_authorization_is_incomplete_signature() {
    let b = TestBroker::start().await;
    let t = b.now();
    let akid = &b.root.akid;
    let scope = format!("{}/us-east-1/sts/aws4_request", &basic_date(t)[..8]);
    let sig = "0".repeat(64);
    let with_date = |auth: &str| {
        Req::post(GCI)
            .header("x-amz-date", &basic_date(t))
            .header("authorization", auth)
    };
    // A space after `Credential=` (boto/boto3#2280).
    let header = format!(
        "AWS4-HMAC-SHA256 Credential= {akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &format!(
            "'{akid}/{scope}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
        ),
    );
    // Missing parts.
    let header = format!("AWS4-HMAC-SHA256 Credential={akid}/{scope}");
    assert_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &format!(
            "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={header}"
        ),
    );
    let header =
        format!("AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=host, Signature={sig}");
    let no_date = Req::post(GCI).header("authorization", &header);
    assert_error(
        &send(&b, &no_date).await,
        400,
        "IncompleteSignature",
        &format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
        ),
    );
    // A bare word: every part is missing.
    let garbage = Req::post(GCI).header("authorization", "garbage");
    assert_error(
        &send(&b, &garbage).await,
        400,
        "IncompleteSignature",
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=garbage",
    );
    // Another algorithm.
    let header = format!(
        "AWS4-HMAC-SHA512 Credential={akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'.",
    );
    // A credential with four elements.
    let short = format!("{akid}/{}/us-east-1/sts", &basic_date(t)[..8]);
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={short}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{short}'"
        ),
    );
    // An unreadable date.
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    let bad_date = Req::post(GCI)
        .header("x-amz-date", "2026-01-01T00:00:00Z")
        .header("authorization", &header);
    assert_error(
        &send(&b, &bad_date).await,
        400,
        "IncompleteSignature",
        "Date must be in ISO-8601 'basic format'. Got '2026-01-01T00:00:00Z'. See http://en.wikipedia.org/wiki/ISO_8601",
    );
    // A presigned URL lacking parameters.
    let query = format!(
        "{GCI}&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={}",
        basic_date(t)
    );
    assert_error(
        &send(&b, &Req::get(&query)).await,
        400,
        "IncompleteSignature",
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.",
    );
    b.stop().await;
}

#[tokio::test]
async fn both_auth_forms_at_once_are_refused() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let presigned = OracleSigner::new(&b.root, b.now())
        .presigned(60)
        .sign(&host, &Req::get(GCI));
    let header = OracleSigner::new(&b.root, b.now()).sign(&host, &Req::get(GCI));
    let both = presigned
        .clone()
        .header("authorization", header.get_header("authorization").unwrap())
        .header("x-amz-date", header.get_header("x-amz-date").unwrap());
    assert_error(
        &send(&b, &both).await,
        403,
        "SignatureDoesNotMatch",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    );
    b.stop().await;
}

// Canonicalisation (checklist 13), hand-signed from the spec text.

#[tokio::test]
async fn signed_header_values_are_trimmed_folded_and_duplicates_joined() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = Req::post(GCI)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t))
        .header("x-amz-meta-note", "  a   b    c  ")
        .header("x-amz-meta-dup", "one")
        .header("x-amz-meta-dup", "two  three");
    let spec = SpecSigner::new(
        &b.root,
        t,
        &[
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-meta-dup",
            "x-amz-meta-note",
        ],
    );
    assert!(
        spec.canonical_request(&req)
            .contains("\nx-amz-meta-dup:one,two three\nx-amz-meta-note:a b c\n")
    );
    let signed = spec.sign(&req);
    assert_identity(&send(&b, &signed).await, &root_arn(&b));
    // Only SignedHeaders count: unsigned headers may be added or changed freely.
    let extra = signed
        .clone()
        .header("user-agent", "curl/8")
        .header("x-unsigned", "anything")
        .header("x-amzn-trace-id", "Root=1-0");
    assert_identity(&send(&b, &extra).await, &root_arn(&b));
    // Changing a signed header's value breaks the signature; swapping the duplicates' order too.
    let changed = signed.clone().replace("x-amz-meta-note", "a b d");
    assert_error(
        &send(&b, &changed).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    let swapped = signed
        .clone()
        .without("x-amz-meta-dup")
        .header("x-amz-meta-dup", "two  three")
        .header("x-amz-meta-dup", "one");
    assert_error(
        &send(&b, &swapped).await,
        403,
        "SignatureDoesNotMatch",
        MISMATCH,
    );
    // A signed header that is not sent.
    let missing = signed.clone().without("x-amz-meta-note");
    assert_error(
        &send(&b, &missing).await,
        400,
        "IncompleteSignature",
        "'x-amz-meta-note' is named as a SignedHeader, but it does not exist in the HTTP request.",
    );
    b.stop().await;
}

#[tokio::test]
async fn query_is_sorted_rfc3986_with_bare_keys_as_key_equals() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let query = "Version=2011-06-15&Action=GetCallerIdentity&Zeta=%7e&Alpha=a+b&Flag&Beta=%2F%3a";
    let req = Req::get(query)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t));
    let spec = SpecSigner::new(&b.root, t, &["host", "x-amz-date"]);
    assert_eq!(
        SpecSigner::canonical_query(query),
        "Action=GetCallerIdentity&Alpha=a%20b&Beta=%2F%3A&Flag=&Version=2011-06-15&Zeta=~"
    );
    assert_identity(&send(&b, &spec.sign(&req)).await, &root_arn(&b));
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Limits and bad input.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn body_limit_is_64_kib() {
    let b = TestBroker::start().await;
    // Exactly 64 KiB is accepted.
    let prefix = format!("{GCI}&Pad=");
    let body = format!("{prefix}{}", "x".repeat(64 * 1024 - prefix.len()));
    assert_eq!(body.len(), 65_536);
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(&body)).await,
        &root_arn(&b),
    );
    // One byte more, with Content-Length.
    let body = format!("{body}x");
    let resp = raw_exchange(b.addr, &Req::post(&body).wire(&b.addr.to_string())).await;
    assert_error(
        &resp,
        413,
        "RequestEntityTooLarge",
        "Request body is larger than 65536 bytes.",
    );
    // Chunked.
    let chunk = "x".repeat(40 * 1024);
    let mut wire = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM_UTF8}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b.addr
    );
    for _ in 0..3 {
        wire.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    wire.push_str("0\r\n\r\n");
    let resp = raw_exchange(b.addr, wire.as_bytes()).await;
    assert_error(
        &resp,
        413,
        "RequestEntityTooLarge",
        "Request body is larger than 65536 bytes.",
    );
    // A declared length over the limit is refused before the body is read.
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM_UTF8}\r\nContent-Length: 10000000\r\n\r\n",
        b.addr
    );
    let resp = raw_exchange(b.addr, head.as_bytes()).await;
    assert_error(
        &resp,
        413,
        "RequestEntityTooLarge",
        "Request body is larger than 65536 bytes.",
    );
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &root_arn(&b),
    );
    b.stop().await;
}

#[tokio::test]
async fn header_limit_is_16_kib() {
    let b = TestBroker::start().await;
    let req = Req::post(GCI).header("x-padding", &"p".repeat(17 * 1024));
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_error(
        &resp,
        431,
        "RequestHeaderFieldsTooLarge",
        "Request headers are larger than 16384 bytes.",
    );
    // Many headers add up the same way.
    let mut req = Req::post(GCI);
    for i in 0..90 {
        req = req.header(&format!("x-h{i}"), &"v".repeat(200));
    }
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_error(
        &resp,
        431,
        "RequestHeaderFieldsTooLarge",
        "Request headers are larger than 16384 bytes.",
    );
    // More than hyper's 100-header cap: refused with a bare 431 by hyper itself (reported).
    let mut req = Req::post(GCI);
    for i in 0..150 {
        req = req.header(&format!("x-h{i}"), "v");
    }
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_eq!(resp.status, 431);
    // A huge header line (beyond any buffer) is cut off without harm.
    let req = Req::post(GCI).header("x-huge", &"h".repeat(1024 * 1024));
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_ne!(resp.status, 200);
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &root_arn(&b),
    );
    b.stop().await;
}

#[tokio::test]
async fn slow_client_is_cut_off_by_the_header_read_timeout() {
    let b = TestBroker::start_with(|c| c.header_read_timeout_secs = 1).await;
    // One client stops in the middle of its headers, another sends a request line and trickles
    // one header byte at a time; both are waited for together (the suite's only real wait).
    let stalled = async {
        let mut stream = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
        (read.is_ok(), started.elapsed(), buf)
    };
    let trickling = async {
        let mut stream = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let mut cut = false;
        while started.elapsed() < Duration::from_secs(2) {
            if stream.write_all(b"X").await.is_err() {
                cut = true;
                break;
            }
            let mut byte = [0_u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte));
            if let Ok(Ok(0) | Err(_)) = read.await {
                cut = true;
                break;
            }
        }
        (cut, started.elapsed())
    };
    let ((closed, elapsed, buf), (cut, trickle_elapsed)) = tokio::join!(stalled, trickling);
    assert!(closed, "the stalled connection was still open after 2 s");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert_ne!(parse_response(&buf).status, 200);
    assert!(cut, "the trickling connection was still open after 2 s");
    assert!(
        trickle_elapsed >= Duration::from_millis(900),
        "{trickle_elapsed:?}"
    );
    // The server still serves.
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &root_arn(&b),
    );
    b.stop().await;
}

#[tokio::test]
async fn garbage_on_the_wire_does_not_hurt_the_server() {
    let b = TestBroker::start().await;
    let huge_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200 * 1024));
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage \r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"
            .to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        huge_line.into_bytes(),
        (0..=255u8).cycle().take(70_000).collect(),
    ];
    for input in inputs {
        let resp = raw_exchange(b.addr, &input).await;
        assert_ne!(resp.status, 200);
        assert_identity(
            &send_signed(&b, &b.root, &Req::post(GCI)).await,
            &root_arn(&b),
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn failed_requests_leave_the_store_unchanged() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let create = "Action=CreateUser&Version=2010-05-08&UserName=mallory";
    let iam_at = |creds: &Creds, t: i64, body: &str| {
        OracleSigner::new(creds, t)
            .service("iam")
            .sign(&host, &Req::post(body))
    };
    let good = iam_at(&b.root, b.now(), create);
    let auth = good.get_header("authorization").unwrap().to_owned();
    let last = if auth.ends_with('0') { "1" } else { "0" };
    let tampered = good.clone().replace(
        "authorization",
        &format!("{}{last}", &auth[..auth.len() - 1]),
    );
    let unknown = Creds::new("AKIAZZZZZZZZZZZZZZZZ", &b.root.secret, None);
    let mut body_changed = good.clone();
    body_changed.body = b"Action=CreateUser&Version=2010-05-08&UserName=mallorx".to_vec();
    let refused = [
        (tampered, 403),
        (iam_at(&b.root, b.now() - 20 * 60, create), 403),
        (iam_at(&unknown, b.now(), create), 403),
        (body_changed, 403),
        (good.clone().without("authorization"), 403),
        (
            OracleSigner::new(&b.root, b.now())
                .service("iam")
                .region("eu-west-3")
                .sign(&host, &Req::post(create)),
            403,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                "Action=CreateUser&Version=2011-06-15&UserName=mallory",
            ),
            403,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                "Action=CreateUser&Version=2010-05-08&UserName=mallory&X=%zz",
            ),
            404,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                &format!("{create}&Pad={}", "x".repeat(70_000)),
            ),
            413,
        ),
    ];
    for (req, status) in refused {
        let resp = raw_exchange(b.addr, &req.wire(&host)).await;
        assert_eq!(resp.status, status, "{}", resp.body);
    }
    let users = b.iam(&b.root).list_users().send().await.unwrap();
    assert!(users.users().is_empty(), "{users:?}");
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// TLS and the listen policy.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls_serves_https_to_curl() {
    let dir = fresh_dir("tls");
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let b = TestBroker::start_with(move |cfg| {
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
    })
    .await;
    let url = format!("https://{}/", b.addr);
    let cacert = cert_path.to_string_lossy().into_owned();
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--cacert", &cacert, "-d", GCI, &url],
    ))
    .await;
    assert_identity(&resp, &root_arn(&b));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_exchange(b.addr, &Req::post(GCI).wire(&b.addr.to_string())).await;
    assert_eq!(plain.status, 0);
    b.stop().await;
}

#[tokio::test]
async fn non_loopback_without_tls_is_refused_unless_insecure_http() {
    let dir = fresh_dir("listen");
    let mut cfg = Config::with_data_dir(&dir);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    cfg.audit = AuditTarget::Off;
    let clock = std::sync::Arc::new(sts_broker::ManualClock::new(wall_now()));
    let (broker, _) = Broker::open(cfg.clone(), clock.clone()).unwrap();
    match broker.start().await {
        Ok(_) => panic!("listening on 0.0.0.0 without TLS was allowed"),
        Err(e) => assert_eq!(
            e.to_string(),
            "refusing to listen on 0.0.0.0:0 without TLS: configure tls_cert/tls_key, or pass --insecure-http"
        ),
    }
    cfg.insecure_http = true;
    let (broker, _) = Broker::open(cfg, clock).unwrap();
    let running = match broker.start().await {
        Ok(r) => r,
        Err(e) => panic!("--insecure-http refused: {e}"),
    };
    assert!(running.local_addr().ip().is_unspecified());
    assert!(!running.is_tls());
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// botocore (checklist 1 and 15) and HTTP/2.
// ---------------------------------------------------------------------------------------------

/// Drives the broker with boto3: success, errors as `ClientError.response`, quote_plus form
/// bodies and `region_name=''`. Prints one JSON document.
const BOTO_SCRIPT: &str = r#"
import json, os, boto3, botocore.config
from botocore.exceptions import ClientError
cfg = botocore.config.Config(retries={"max_attempts": 1}, parameter_validation=False)
def client(akid, secret, token=None, region="us-east-1"):
    return boto3.client("sts", endpoint_url=os.environ["EP"], region_name=region,
        aws_access_key_id=akid, aws_secret_access_key=secret, aws_session_token=token, config=cfg)
def err(call):
    try:
        call()
        return None
    except ClientError as e:
        return {"error": e.response["Error"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                "request_id": e.response["ResponseMetadata"]["RequestId"],
                "header_id": e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")}
user = client(os.environ["AKID"], os.environ["SECRET"])
out = {"user_arn": user.get_caller_identity()["Arn"]}
c = user.get_session_token(DurationSeconds=900)["Credentials"]
session = client(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["session_arn"] = session.get_caller_identity()["Arn"]
out["session_gst"] = err(lambda: session.get_session_token())
out["duration"] = err(lambda: user.get_session_token(DurationSeconds=899))
out["serial"] = err(lambda: user.get_session_token(SerialNumber="arn:aws:iam::123456789012:mfa/a b", TokenCode="123456"))
out["no_device"] = err(lambda: user.get_session_token(SerialNumber="arn:aws:iam::123456789012:mfa/alice", TokenCode="123456"))
out["empty_region_arn"] = client(os.environ["AKID"], os.environ["SECRET"], region="").get_caller_identity()["Arn"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn botocore_reads_results_and_errors() {
    let have_boto3 = std::process::Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_boto3 {
        // .ci/run puts its virtualenv (with boto3) first on PATH and sets this variable, so
        // there the test cannot be skipped.
        assert!(
            std::env::var_os("STS_BROKER_REQUIRE_BOTO3").is_none(),
            "STS_BROKER_REQUIRE_BOTO3 is set but python3 cannot import boto3"
        );
        eprintln!("SKIPPED: python3 with boto3 is not installed");
        return;
    }
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let envs = [
        ("EP", b.url()),
        ("AKID", alice.akid.clone()),
        ("SECRET", alice.secret.clone()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", BOTO_SCRIPT])
            .envs(envs)
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn = user_arn(&b, "alice");
    assert_eq!(v["user_arn"], arn.as_str());
    assert_eq!(v["session_arn"], arn.as_str());
    assert_eq!(v["empty_region_arn"], arn.as_str());
    let check = |key: &str, status: u16, code: &str, message: &str| {
        let e = &v[key];
        assert_eq!(e["status"], status, "{key}: {e}");
        assert_eq!(
            e["error"],
            serde_json::json!({"Type": "Sender", "Code": code, "Message": message}),
            "{key}"
        );
        assert_eq!(e["request_id"], e["header_id"], "{key}");
        assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{key}");
    };
    check(
        "session_gst",
        403,
        "AccessDenied",
        "Cannot call GetSessionToken with session credentials",
    );
    check(
        "duration",
        400,
        "ValidationError",
        "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
    );
    check(
        "serial",
        400,
        "ValidationError",
        "1 validation error detected: Value 'arn:aws:iam::123456789012:mfa/a b' at 'serialNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=/:,.@-]*",
    );
    check(
        "no_device",
        403,
        "AccessDenied",
        "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.",
    );
    b.stop().await;
}

#[tokio::test]
async fn curl_sigv4_over_http2_signs_the_authority() {
    let b = TestBroker::start().await;
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--http2-prior-knowledge", "-d", GCI, &b.url()],
    ))
    .await;
    assert_identity(&resp, &root_arn(&b));
    let resp = curl(vec![
        "--http2-prior-knowledge".into(),
        "-d".into(),
        GCI.into(),
        b.url(),
    ])
    .await;
    assert_error(
        &resp,
        403,
        "MissingAuthenticationToken",
        "Request is missing Authentication Token",
    );
    b.stop().await;
}

#[tokio::test]
async fn http2_oversized_headers_get_the_aws_error() {
    let b = TestBroker::start().await;
    let pad = format!("x-padding: {}", "p".repeat(20 * 1024));
    let resp = curl(vec![
        "--http2-prior-knowledge".into(),
        "-H".into(),
        pad,
        "-d".into(),
        GCI.into(),
        b.url(),
    ])
    .await;
    assert_error(
        &resp,
        431,
        "RequestHeaderFieldsTooLarge",
        "Request headers are larger than 16384 bytes.",
    );
    // Beyond the backstop, h2 itself refuses; the server carries on.
    let pad = format!("x-padding: {}", "p".repeat(40 * 1024));
    let out = tokio::task::spawn_blocking({
        let url = b.url();
        move || {
            std::process::Command::new("curl")
                .args(["-s", "-i", "--max-time", "20", "--http2-prior-knowledge"])
                .args(["-H", &pad, "-d", GCI, &url])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_ne!(parse_response(&out.stdout).status, 200);
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--http2-prior-knowledge", "-d", GCI, &b.url()],
    ))
    .await;
    assert_identity(&resp, &root_arn(&b));
    b.stop().await;
}
