//! AWS Signature Version 4 verification for a non-S3 service, as pure functions (no IO, no
//! async, no clock).
//!
//! The flow a caller follows, and why it is split this way:
//!
//! 1. [`parse`] reads the `Authorization` header or the presigned `X-Amz-*` query parameters
//!    into a [`SignedRequest`] (or `None` when the request carries no SigV4 at all). It needs no
//!    key, so malformed requests are refused before any lookup.
//! 2. [`check_scope_and_time`] checks the credential scope and the clock skew against policy,
//!    still without a key, so expired or misdirected requests cost no store access.
//! 3. The caller finds the secret for `scope.access_key_id` (and checks any session token),
//!    then [`derive_signing_key`] and [`verify_signature`] rebuild the canonical request and
//!    compare signatures in constant time.
//!
//! Canonicalisation follows the AWS SigV4 test suite and `aws-sigv4` (the oracle in the tests);
//! the places where clients disagree are decided in `canonical.rs` and listed there. Every
//! error's `Display` is the message AWS sends (see [`SigV4Error`]).

pub(crate) mod date;

mod canonical;
mod error;
mod parse;
mod percent;
mod scope;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;

#[cfg(test)]
use error::SIGNATURE_MISMATCH_MESSAGE;
pub(crate) use error::{
    MissingAuthorizationParts, MissingQueryParams, ScopeMismatch, SigV4Error, SigV4ErrorKind,
};
pub(crate) use parse::parse;
pub(crate) use scope::{ScopePolicy, check_scope_and_time};
pub(crate) use verify::{SigningKey, derive_signing_key, verify_signature};

/// The longest validity of a presigned URL, seven days
/// (`docs/sts-wire-contract.md#sigv4-presigned-expiry`).
pub(crate) const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;

/// The only algorithm SigV4 defines for HMAC signing.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The fixed last element of every credential scope.
pub(crate) const TERMINATOR: &str = "aws4_request";

/// The parts of an HTTP request that SigV4 signs, borrowed from whatever server type holds them.
#[derive(Clone, Copy)]
pub(crate) struct HttpRequest<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// Raw path as received on the wire (still percent-encoded), without the query.
    pub path: &'a str,
    /// Raw query string as received, without '?'; "" when absent.
    pub query: &'a str,
    /// Headers in arrival order; names lowercase ASCII. For HTTP/2 the caller adds ("host", authority).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// What the signature covers of the body.
    pub payload: Payload<'a>,
}

/// The body a signature covers.
#[non_exhaustive]
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// The whole body, hashed by the verifier.
    Bytes(&'a [u8]),
    /// The body's SHA-256, as its caller will check the body against while streaming it.
    Sha256([u8; 32]),
}

/// The body's length, never its bytes (a form body holds MFA codes).
impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(body) => write!(f, "Bytes({} bytes)", body.len()),
            Self::Sha256(digest) => write!(f, "Sha256({})", hex::encode(digest)),
        }
    }
}

impl<'a> HttpRequest<'a> {
    /// Values of every header called `name` (ASCII case-insensitive), in arrival order.
    pub(crate) fn header_values(&self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The first header called `name`.
    #[must_use]
    pub(crate) fn first_header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }
}

/// Redacts the values of `authorization` and `x-amz-security-token` and omits the body.
impl fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'h>(&'h [(&'h str, &'h [u8])]);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(n, v)| {
                        let sensitive = n.eq_ignore_ascii_case("authorization")
                            || n.eq_ignore_ascii_case("x-amz-security-token");
                        let shown = if sensitive {
                            "<redacted>".into()
                        } else {
                            String::from_utf8_lossy(v)
                        };
                        (*n, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_len", &self.query.len())
            .field("headers", &Headers(self.headers))
            .field("payload", &self.payload)
            .finish()
    }
}

/// Where the signature travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthForm {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    Header,
    /// `?X-Amz-Algorithm=…&X-Amz-Credential=…&…&X-Amz-Signature=…` (a presigned URL).
    Presigned,
}

/// `AKID/YYYYMMDD/region/service/terminator`, split. Unchecked until [`check_scope_and_time`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CredentialScope {
    /// The access key id the request claims.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// May be empty (botocore with `region_name=''`).
    pub region: String,
    /// Should be the service's signing name, e.g. `sts`.
    pub service: String,
    /// Should be `aws4_request`.
    pub terminator: String,
}

/// The authentication data of a request, parsed but not yet verified.
#[derive(Clone)]
pub(crate) struct SignedRequest {
    /// Header or presigned query.
    pub form: AuthForm,
    /// The credential scope.
    pub scope: CredentialScope,
    /// `SignedHeaders`, in the order sent (clients send them sorted and lowercase).
    pub signed_headers: Vec<String>,
    /// The 32-byte signature the client sent.
    pub signature: [u8; 32],
    /// From X-Amz-Date (header or query), else the Date header.
    pub date: date::AmzDate,
    /// X-Amz-Security-Token header or query parameter.
    pub security_token: Option<String>,
    /// Presigned form: `X-Amz-Expires`, 1 to 604800 seconds, when the URL carries one.
    pub expires_secs: Option<i64>,
}

/// Redacts the session token.
impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("form", &self.form)
            .field("scope", &self.scope)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &hex::encode(self.signature))
            .field("date", &self.date.basic())
            .field("expires_secs", &self.expires_secs)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
