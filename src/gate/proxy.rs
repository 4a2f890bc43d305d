//! Relaying an admitted request to the upstream and its answer back, both streamed.
//!
//! On the way up the gate removes what only it may read (the SigV4 headers and presigned query
//! parameters, so a session token never reaches the upstream), the hop-by-hop headers (RFC 9110
//! §7.6.1) and any client copy of the identity headers, then adds the identity headers and the
//! usual `X-Forwarded-*`. On the way down only hop-by-hop headers are removed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::admit::VerifiedBody;
use super::identity;
use super::refusal::Refusal;
use crate::percent;
use crate::time::UnixTime;
use crate::verifier::VerifiedCaller;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The request headers that carry the signature; the upstream has no use for them, and the
/// session token among them is a credential.
const SIGNING_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The presigned-URL query parameters (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
const PRESIGNED_PARAMS: [&[u8]; 7] = [
    b"X-Amz-Algorithm",
    b"X-Amz-Credential",
    b"X-Amz-Date",
    b"X-Amz-Expires",
    b"X-Amz-SignedHeaders",
    b"X-Amz-Signature",
    b"X-Amz-Security-Token",
];

/// Why an upstream URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("upstream URL {url:?}: {why}")]
pub(crate) struct BadUpstream {
    url: String,
    why: &'static str,
}

/// Where admitted requests go.
pub(crate) struct Upstream {
    client: Client<HttpConnector, VerifiedBody<Incoming>>,
    authority: Authority,
    host: HeaderValue,
    prefix: String,
    timeout: Duration,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port[/prefix]`), which must start answering within
    /// `timeout`.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, BadUpstream> {
        let bad = |why| BadUpstream {
            url: url.to_owned(),
            why,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// upstreams are supported (put the upstream on loopback or a private network)",
            ));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("an upstream URL has no query"));
        }
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            client,
            authority,
            host,
            prefix,
            timeout,
        })
    }

    /// Sends the admitted request up and returns the upstream's answer as it starts.
    pub(crate) async fn forward(
        &self,
        mut parts: Parts,
        body: VerifiedBody<Incoming>,
        caller: &VerifiedCaller,
        now: UnixTime,
        remote: SocketAddr,
        tls: bool,
    ) -> Result<Response<Incoming>, Refusal> {
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let uri = self.target(&parts.uri)?;
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        for name in SIGNING_HEADERS {
            headers.remove(name);
        }
        identity::strip_client_copies(headers);
        identity::insert(headers, caller, now);
        headers.insert(header::HOST, self.host.clone());
        append_forwarded_for(headers, remote);
        if let Some(host) = original_host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let fault = body.fault();
        let request = Request::from_parts(parts, body);
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(Refusal::gateway_timeout(self.timeout.as_secs())),
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
            Ok(Err(e)) => {
                if fault.mismatch() {
                    Err(Refusal::payload_mismatch())
                } else if fault.client() {
                    Err(Refusal::incomplete_body())
                } else {
                    tracing::warn!(error = %e, "upstream request failed");
                    Err(Refusal::bad_gateway())
                }
            }
        }
    }

    /// The upstream URI for a request to `original`: the prefix, the path, and the query less
    /// the presigned parameters.
    fn target(&self, original: &Uri) -> Result<Uri, Refusal> {
        let mut path_and_query = format!("{}{}", self.prefix, original.path());
        if let Some(query) = original.query() {
            let kept = without_presigned_params(query);
            if !kept.is_empty() {
                path_and_query.push('?');
                path_and_query.push_str(&kept);
            }
        }
        let path_and_query =
            PathAndQuery::try_from(path_and_query).map_err(|_| Refusal::bad_original("URI"))?;
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| Refusal::bad_original("URI"))
    }
}

/// `query` without the presigned-URL parameters, the others as sent and in order.
pub(crate) fn without_presigned_params(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            let name = percent::decode_form(name.as_bytes());
            !pair.is_empty() && !PRESIGNED_PARAMS.contains(&&*name)
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Removes the hop-by-hop headers, and those a `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For`.
fn append_forwarded_for(headers: &mut HeaderMap, remote: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let previous: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut value = previous.join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(&remote.ip().to_string());
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// The body of a response the gate relays or writes itself.
pub(crate) type GateResponseBody = http_body_util::Either<Incoming, http_body_util::Full<Bytes>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_parameters_are_dropped_and_the_rest_kept_as_sent() {
        assert_eq!(
            without_presigned_params(
                "limit=5&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F1&q=a+b%20c&X-Amz-Security-Token=t&X-Amz-Signature=00&X%2DAmz%2DDate=1"
            ),
            "limit=5&q=a+b%20c"
        );
        assert_eq!(without_presigned_params("X-Amz-Signature=1"), "");
        assert_eq!(without_presigned_params("a&&b="), "a&b=");
    }

    #[test]
    fn connection_named_headers_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upstream_urls() {
        let up = Upstream::new("http://127.0.0.1:9000/api/", Duration::from_secs(1)).unwrap();
        let uri: Uri = "/orders?x=1&X-Amz-Signature=2".parse().unwrap();
        assert_eq!(
            up.target(&uri).unwrap().to_string(),
            "http://127.0.0.1:9000/api/orders?x=1"
        );
        for bad in ["https://h/", "ftp://h", "/path", "http://h/?q=1"] {
            assert!(Upstream::new(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }
}
