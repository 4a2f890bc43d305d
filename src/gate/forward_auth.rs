//! The forward-auth endpoint: judges the original request a proxy describes (nginx
//! `auth_request`, Traefik ForwardAuth, Envoy ext_authz) without seeing its body
//! (`docs/gate.md#forward-auth`).
//!
//! The original method and URI come from `X-Original-Method`/`X-Original-URI` (nginx, as the
//! example configuration sets them) or `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik); the
//! host from `X-Forwarded-Host`, else `Host`; the signature from the forwarded headers. A
//! request without those headers is judged as itself (Envoy sends the original method and
//! path, and the body when configured to). The proxy must set these headers itself, replacing
//! any a client sent: the endpoint trusts them, and should be reachable only by the proxy.
//!
//! The body is judged by its signed `x-amz-content-sha256` when the client sends one; a
//! request the proxy says has no body (no `X-Original-Content-Length` or 0, no
//! `X-Original-Transfer-Encoding`) is judged with the empty body; any other is refused, as the
//! endpoint cannot know what its signature covers.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Body;

use super::admit::{BoxError, Gatekeeper, content_length, declared_sha256};
use super::refusal::Refusal;
use crate::verifier::{Payload, VerifiedCaller};

/// Headers a proxy adds to describe the original request; they are not part of it.
const DESCRIPTIVE: [&str; 9] = [
    "x-original-method",
    "x-original-uri",
    "x-original-content-length",
    "x-original-transfer-encoding",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
];

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The original request as the proxy describes it: its parts, and whether it had a body.
struct Original {
    parts: Parts,
    has_body: bool,
}

/// Rebuilds the original request from a forward-auth request's parts; `None` when the proxy
/// describes none (the request is then its own original).
fn described(parts: &Parts) -> Result<Option<Original>, Refusal> {
    let headers = &parts.headers;
    let method = header_text(headers, "x-original-method")
        .or_else(|| header_text(headers, "x-forwarded-method"));
    let uri =
        header_text(headers, "x-original-uri").or_else(|| header_text(headers, "x-forwarded-uri"));
    let (method, uri) = match (method, uri) {
        (None, None) => return Ok(None),
        (_, None) => return Err(Refusal::bad_original("URI")),
        (m, Some(u)) => (m.unwrap_or("GET"), u),
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::bad_original("method"))?;
    let uri: Uri = uri.parse().map_err(|_| Refusal::bad_original("URI"))?;
    if uri.path_and_query().is_none() || uri.scheme().is_some() {
        return Err(Refusal::bad_original("URI"));
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .cloned();
    let length = header_text(headers, "x-original-content-length");
    let chunked = header_text(headers, "x-original-transfer-encoding").is_some();
    let has_body = chunked || length.is_some_and(|n| n != "0");

    let mut original_headers = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if DESCRIPTIVE.contains(&n)
            || n == "content-length"
            || n == "transfer-encoding"
            || n == "connection"
            || n == "host"
        {
            continue;
        }
        original_headers.append(name.clone(), value.clone());
    }
    if let Some(host) = host {
        original_headers.insert(header::HOST, host);
    }
    if let Some(n) = length.and_then(|n| HeaderValue::from_str(n).ok()) {
        original_headers.insert(header::CONTENT_LENGTH, n);
    }
    let (mut rebuilt, ()) = Request::new(()).into_parts();
    rebuilt.method = method;
    rebuilt.uri = uri;
    rebuilt.headers = original_headers;
    Ok(Some(Original {
        parts: rebuilt,
        has_body,
    }))
}

impl Gatekeeper {
    /// Judges the request a forward-auth call describes (or, when it describes none, the call
    /// itself, body included within the body limit).
    pub(crate) async fn judge<B>(&self, req: Request<B>) -> Result<VerifiedCaller, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        if let Some(original) = described(&parts)? {
            let parts = original.parts;
            if let Some(digest) = declared_sha256(&parts.headers) {
                return self.verify(&parts, Payload::Sha256(digest));
            }
            if original.has_body {
                return Err(Refusal::body_not_judgeable(parts.method.as_str()));
            }
            return self.verify(&parts, Payload::Bytes(&[]));
        }
        if let Some(digest) = declared_sha256(&parts.headers) {
            return self.verify(&parts, Payload::Sha256(digest));
        }
        if content_length(&parts.headers).is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(Refusal::too_large(self.max_body_bytes));
        }
        let bytes = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Refusal::too_large(self.max_body_bytes));
            }
            Err(_) => return Err(Refusal::incomplete_body()),
        };
        self.verify(&parts, Payload::Bytes(&bytes))
    }
}

/// The method, URI, headers (`name: value`, sorted) and body flag of a described original.
#[cfg(test)]
type Rebuilt = (String, String, Vec<String>, bool);

/// The original a forward-auth request with `headers` describes.
#[cfg(test)]
fn rebuilt(headers: &[(&str, &str)]) -> Result<Option<Rebuilt>, Refusal> {
    let mut req = Request::get("/.sts-broker/verify");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    Ok(described(&parts)?.map(|o| {
        let mut names: Vec<String> = o
            .parts
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        names.sort();
        (
            o.parts.method.to_string(),
            o.parts.uri.to_string(),
            names,
            o.has_body,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_description() {
        let got = rebuilt(&[
            ("host", "api.example.com"),
            ("x-original-method", "POST"),
            ("x-original-uri", "/orders?limit=5"),
            ("x-original-content-length", "12"),
            ("authorization", "AWS4-HMAC-SHA256 x"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-length", "0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.0, "POST");
        assert_eq!(got.1, "/orders?limit=5");
        assert_eq!(
            got.2,
            [
                "authorization: AWS4-HMAC-SHA256 x",
                "content-length: 12",
                "host: api.example.com"
            ]
        );
        assert!(got.3);
    }

    #[test]
    fn traefik_description_prefers_the_forwarded_host() {
        let got = rebuilt(&[
            ("host", "auth.internal:8081"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/orders"),
            ("x-forwarded-host", "api.example.com"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.2, ["host: api.example.com"]);
        assert!(!got.3);
    }

    #[test]
    fn no_description_and_bad_descriptions() {
        assert_eq!(rebuilt(&[("host", "h")]).unwrap(), None);
        for bad in [
            vec![("x-original-method", "GET")],
            vec![("x-original-uri", "http://elsewhere/x")],
            vec![("x-original-uri", "/x"), ("x-original-method", "G T")],
        ] {
            assert!(rebuilt(&bad).is_err(), "{bad:?}");
        }
    }
}
