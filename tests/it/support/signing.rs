//! SigV4 signers: the `aws-sigv4` crate as the oracle, and a signer written from the published
//! procedure (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html) for
//! the requests `aws-sigv4` cannot produce.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::support::clients::Creds;
use crate::support::http::Req;

/// `YYYYMMDDTHHMMSSZ`, the SigV4 request date.
pub(crate) fn basic_date(unix: i64) -> String {
    let t = aws_sdk_sts::primitives::DateTime::from_secs(unix)
        .fmt(aws_sdk_sts::primitives::DateTimeFormat::DateTime)
        .unwrap();
    // 2026-08-23T12:00:00Z → 20260823T120000Z
    t.replace(['-', ':'], "")
}

/// RFC 3986 encoding (unreserved kept).
pub(crate) fn uri_encode(raw: &[u8]) -> String {
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

/// Signs a request with the `aws-sigv4` crate (header or presigned form) for the broker `host`.
#[derive(Clone, Debug)]
pub(crate) struct OracleSigner {
    pub creds: Creds,
    pub region: String,
    pub service: String,
    pub time: i64,
    pub presigned: bool,
    pub expires_secs: u64,
    pub content_sha256: bool,
}

impl OracleSigner {
    pub(crate) fn new(creds: &Creds, time: i64) -> Self {
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

    pub(crate) fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    pub(crate) fn service(mut self, service: &str) -> Self {
        self.service = service.into();
        self
    }

    pub(crate) fn presigned(mut self, expires_secs: u64) -> Self {
        self.presigned = true;
        self.expires_secs = expires_secs;
        self
    }

    pub(crate) fn with_content_sha256(mut self) -> Self {
        self.content_sha256 = true;
        self
    }

    /// The signed request: `host` is added and signed, then the signer's headers or query
    /// parameters are appended.
    pub(crate) fn sign(&self, host: &str, req: &Req) -> Req {
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

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A signer written from the published SigV4 procedure, for what `aws-sigv4` cannot produce:
/// a `Date` header instead of `X-Amz-Date`, any scope, duplicate headers, any payload-hash
/// header. It adds no header itself: the request must already carry the date.
#[derive(Clone, Debug)]
pub(crate) struct SpecSigner {
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
    pub(crate) fn new(creds: &Creds, time: i64, signed: &[&str]) -> Self {
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
    pub(crate) fn canonical_query(query: &str) -> String {
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
    pub(crate) fn canonical_request(&self, req: &Req) -> String {
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

    pub(crate) fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.scope_date, self.region, self.service, self.terminator
        )
    }

    /// The lowercase hex signature.
    pub(crate) fn signature(&self, req: &Req) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.request_date,
            self.scope(),
            hex::encode(Sha256::digest(self.canonical_request(req).as_bytes()))
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.creds.secret).as_bytes(),
            self.scope_date.as_bytes(),
        );
        for part in [&self.region, &self.service, &self.terminator] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
    }

    /// `req` presigned: the `X-Amz-*` query parameters, `X-Amz-Expires` carrying `expires`
    /// exactly as given (a signer cannot be made to write a malformed one), then the signature
    /// over them. `req` must carry the `host` header, which is signed.
    pub(crate) fn presign(&self, req: &Req, expires: &str) -> Req {
        let mut req = req.clone();
        let credential = format!("{}/{}", self.creds.akid, self.scope());
        let mut params = vec![
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
            ("X-Amz-Credential", credential),
            ("X-Amz-Date", self.request_date.clone()),
            ("X-Amz-Expires", expires.to_owned()),
            ("X-Amz-SignedHeaders", self.signed.join(";")),
        ];
        if let Some(token) = &self.creds.token {
            params.push(("X-Amz-Security-Token", token.clone()));
        }
        for (name, value) in params {
            if !req.query.is_empty() {
                req.query.push('&');
            }
            req.query
                .push_str(&format!("{name}={}", uri_encode(value.as_bytes())));
        }
        let signature = self.signature(&req);
        req.query.push_str(&format!("&X-Amz-Signature={signature}"));
        req
    }

    /// `req` with its `Authorization` header appended.
    pub(crate) fn sign(&self, req: &Req) -> Req {
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
