//! Whole-verifier tests: the AWS SigV4 test suite (`suite`), the `aws-sigv4` signer as an
//! oracle with tampering (`oracle`), every error text (`errors`), and garbage input (`garbage`).
//! Shared here: an owned request type, the full authentication pipeline, a parser for the
//! suite's `.sreq` text, and the oracle signer.

mod errors;
mod garbage;
mod oracle;
mod suite;

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::{
    AuthForm, HttpRequest, Payload, ScopePolicy, SigV4Error, SignedRequest, canonical,
    check_scope_and_time, derive_signing_key, parse, verify_signature,
};

/// The AWS test suite's credentials (public documentation values).
pub(super) const SUITE_AKID: &str = "AKIDEXAMPLE";
pub(super) const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// An owned request, so tests can build and mutate them.
#[derive(Clone, Debug, Default)]
pub(super) struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Req {
    pub(super) fn with<R>(&self, f: impl FnOnce(&HttpRequest<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        f(&HttpRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            payload: Payload::Bytes(&self.body),
        })
    }

    pub(super) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    pub(super) fn parse(&self) -> Result<Option<SignedRequest>, SigV4Error> {
        self.with(parse)
    }
}

/// What a server accepts: which regions, which service, how much skew, and when "now" is.
pub(super) struct Server<'a> {
    pub regions: &'a [String],
    pub service: &'a str,
    pub skew: i64,
    pub now: i64,
    pub secret: &'a str,
}

impl Server<'_> {
    /// The whole pipeline the broker runs: parse, scope and time, key, signature.
    pub(super) fn authenticate(&self, req: &Req) -> Result<Option<SignedRequest>, SigV4Error> {
        req.with(|http| {
            let Some(signed) = parse(http)? else {
                return Ok(None);
            };
            let policy = ScopePolicy {
                regions: self.regions,
                service: self.service,
                max_skew_secs: self.skew,
            };
            check_scope_and_time(&signed, &policy, self.now)?;
            let scope = &signed.scope;
            let key = derive_signing_key(
                self.secret.as_bytes(),
                &scope.date,
                &scope.region,
                &scope.service,
            );
            verify_signature(http, &signed, &key)?;
            Ok(Some(signed))
        })
    }
}

pub(super) fn regions(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| (*r).to_owned()).collect()
}

/// Reads a request written like the test suite's `.sreq` files: a request line
/// `METHOD target HTTP/1.1`, `Name:value` lines (the value kept exactly as written after the
/// colon, so leading spaces reach the verifier), a blank line and the body. Header names are
/// lowercased, as a server hands them over.
pub(super) fn sreq(text: &str) -> Req {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.as_bytes().to_vec())
        })
        .collect();
    Req {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// How the oracle should sign.
#[derive(Clone, Debug)]
pub(super) struct OracleSign<'a> {
    pub method: &'a str,
    /// `host[:port]`, sent as the `host` header.
    pub host: &'a str,
    pub path: &'a str,
    /// Raw wire query, without `?`.
    pub query: &'a str,
    /// Headers the client sets before signing (all signed except `aws-sigv4`'s excluded ones).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub akid: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub token: Option<&'a str>,
    pub presigned: bool,
    pub content_sha256_header: bool,
    pub unix: i64,
}

/// RFC 3986 encoding for putting the oracle's presigning parameters on the URL.
fn url_encode(text: &str) -> String {
    let mut out = Vec::new();
    crate::percent::encode_into(&mut out, text.as_bytes(), crate::percent::RFC3986);
    String::from_utf8(out).unwrap()
}

/// Signs with `aws-sigv4` (the independent oracle) and returns the request as a server would
/// receive it.
pub(super) fn oracle_sign(o: &OracleSign<'_>) -> Req {
    let uri = if o.query.is_empty() {
        format!("https://{}{}", o.host, o.path)
    } else {
        format!("https://{}{}?{}", o.host, o.path, o.query)
    };
    let identity: Identity =
        Credentials::new(o.akid, o.secret, o.token.map(str::to_owned), None, "oracle").into();
    let mut settings = SigningSettings::default();
    if o.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(3600));
    }
    if o.content_sha256_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(o.unix).unwrap());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(o.region)
        .name(o.service)
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        o.method,
        uri.clone(),
        o.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(o.body),
    )
    .unwrap_or_else(|e| panic!("oracle rejects {uri}: {e}"));
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();

    let mut headers = vec![("host".to_owned(), o.host.as_bytes().to_vec())];
    headers.extend(
        o.headers
            .iter()
            .map(|(n, v)| (n.clone(), v.as_bytes().to_vec())),
    );
    headers.extend(
        instructions
            .headers()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())),
    );
    let mut query = o.query.to_owned();
    for (name, value) in instructions.params() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&url_encode(name));
        query.push('=');
        query.push_str(&url_encode(value));
    }
    Req {
        method: o.method.to_owned(),
        path: o.path.to_owned(),
        query,
        headers,
        body: o.body.to_vec(),
    }
}

/// A plain STS request signed by the oracle at `unix`, for tests that need one valid request.
pub(super) fn signed_sts_request(unix: i64, presigned: bool, token: Option<&str>) -> Req {
    let body = if presigned {
        &b""[..]
    } else {
        b"Action=GetSessionToken&Version=2011-06-15&SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Falice&TokenCode=123456"
    };
    let headers = if presigned {
        Vec::new()
    } else {
        vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )]
    };
    oracle_sign(&OracleSign {
        method: if presigned { "GET" } else { "POST" },
        host: "sts.amazonaws.com",
        path: "/",
        query: if presigned {
            "Action=GetCallerIdentity&Version=2011-06-15"
        } else {
            ""
        },
        headers: &headers,
        body,
        akid: "AKIAIOSFODNN7EXAMPLE",
        secret: SUITE_SECRET,
        region: "us-east-1",
        service: "sts",
        token,
        presigned,
        content_sha256_header: false,
        unix,
    })
}

/// The broker's usual policy around `now`.
pub(super) fn sts_server(regions: &[String], now: i64) -> Server<'_> {
    Server {
        regions,
        service: "sts",
        skew: 900,
        now,
        secret: SUITE_SECRET,
    }
}

pub(super) fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A caller that streams the body verifies with its SHA-256 instead of its bytes: the same
/// requests pass, a different digest fails, and a declared `x-amz-content-sha256` must state
/// that digest.
#[test]
fn a_body_digest_verifies_like_the_body() {
    use sha2::{Digest as _, Sha256};
    let now = 1_700_000_000;
    let regions = regions(&["us-east-1"]);
    let server = sts_server(&regions, now);
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    for content_sha256_header in [false, true] {
        let req = oracle_sign(&OracleSign {
            method: "POST",
            host: "sts.amazonaws.com",
            path: "/",
            query: "",
            headers: &headers,
            body,
            akid: "AKIAIOSFODNN7EXAMPLE",
            secret: SUITE_SECRET,
            region: "us-east-1",
            service: "sts",
            token: None,
            presigned: false,
            content_sha256_header,
            unix: now,
        });
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut other = digest;
        other[0] ^= 1;
        let verify = |payload: Payload<'_>| {
            let header_list: Vec<(&str, &[u8])> = req
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let http = HttpRequest {
                method: &req.method,
                path: &req.path,
                query: &req.query,
                headers: &header_list,
                payload,
            };
            let signed = parse(&http).unwrap().unwrap();
            let key = derive_signing_key(
                server.secret.as_bytes(),
                &signed.scope.date,
                &signed.scope.region,
                &signed.scope.service,
            );
            verify_signature(&http, &signed, &key)
        };
        assert_eq!(verify(Payload::Bytes(body)), Ok(()));
        assert_eq!(verify(Payload::Sha256(digest)), Ok(()));
        let refused = verify(Payload::Sha256(other)).unwrap_err();
        if content_sha256_header {
            assert_eq!(refused, SigV4Error::PayloadHashMismatch);
        } else {
            assert_eq!(refused, SigV4Error::SignatureMismatch);
        }
    }
}
