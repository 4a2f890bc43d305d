//! The STS and IAM front door: one request, top to bottom. Limits, Query parameters, the front
//! door (302 for a missing Action), SigV4 verification, dispatch to STS or IAM, and the AWS XML
//! reply. Every failure becomes an [`ApiError`] rendered in one place.

mod context;
mod health;
mod iam;
mod sts;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};

pub(crate) use context::RequestCtx;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::ids;
use crate::mfa::guard::{AttemptLimiter, ReplayGuard};
use crate::mfa::redis::RedisMfa;
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::params::Params;
use crate::session::KeyRing;
use crate::store::{IdentityStore, Index, StoreLimiter};
use crate::time::UnixTime;
use crate::verifier::{Payload, Presented, Verifier, VerifyPolicy};

/// Where AWS redirects requests without an Action (`docs/sts-wire-contract.md#front-door`).
const FRONT_DOOR: &str = "https://aws.amazon.com/iam";

/// Everything a request needs, shared by all connections.
pub(crate) struct Api {
    /// Configuration.
    pub(crate) config: Config,
    /// Time.
    pub(crate) clock: SharedClock,
    /// Identities, durable.
    pub(crate) store: IdentityStore,
    /// Identities, in memory.
    pub(crate) index: Arc<Index>,
    /// Session-token keys.
    pub(crate) keys: Arc<KeyRing>,
    /// SigV4 and credentials.
    pub(crate) verifier: Verifier,
    /// The last accepted TOTP step per device.
    pub(crate) replay: Arc<dyn ReplayGuard>,
    /// MFA failure lock-outs, per device (and per caller for unassigned hardware tokens).
    pub(crate) limiter: Arc<dyn AttemptLimiter>,
    /// The shared replay and lock-out backend, when there is one (for `/readyz`).
    pub(crate) replay_backend: Option<Arc<RedisMfa>>,
    /// The store's own lock-out, when it and the store's record of accepted steps are all the
    /// MFA state there is (nothing injected, no shared backend): GetSessionToken then judges a
    /// code in one write (`StoreLimiter::claim_and_record`).
    pub(crate) embedded_mfa: Option<Arc<StoreLimiter>>,
    sts_policy: VerifyPolicy,
    iam_policy: VerifyPolicy,
}

/// What a handled request turns into.
enum Reply {
    Xml(Service, String),
    Redirect(String),
}

impl Api {
    /// The API over an opened store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        clock: SharedClock,
        store: IdentityStore,
        index: Arc<Index>,
        keys: Arc<KeyRing>,
        replay: Arc<dyn ReplayGuard>,
        limiter: Arc<dyn AttemptLimiter>,
    ) -> Self {
        let policy = |service: Service| VerifyPolicy {
            regions: config.regions.clone(),
            max_skew_secs: config.max_skew_secs,
            ..VerifyPolicy::new(service.signing_name())
        };
        let verifier = Verifier::new(index.clone(), Arc::clone(&keys));
        Self {
            sts_policy: policy(Service::Sts),
            iam_policy: policy(Service::Iam),
            config,
            clock,
            store,
            index,
            keys,
            verifier,
            replay,
            limiter,
            replay_backend: None,
            embedded_mfa: None,
        }
    }

    /// Handles one HTTP request; never fails (failures are AWS error responses).
    pub(crate) async fn handle<B>(
        &self,
        req: Request<B>,
        remote: SocketAddr,
    ) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(probe) = health::probe(&req) {
            return Box::pin(health::answer(self, probe)).await;
        }
        let request_id = ids::request_id();
        let (reply, service) = match self.handle_inner(req, remote, &request_id).await {
            Ok(Reply::Xml(service, body)) => (Ok(body), service),
            Ok(Reply::Redirect(location)) => {
                let mut resp = redirect(&location, &request_id);
                set_date(&mut resp, self.clock.now());
                return resp;
            }
            Err((service, e)) => (Err(e), service),
        };
        let mut resp = match reply {
            Ok(body) => xml_response(StatusCode::OK, body, &request_id, service),
            Err(e) => error_response(&e, &request_id, service),
        };
        set_date(&mut resp, self.clock.now());
        resp
    }

    /// The answer to a request that took longer than the request timeout.
    pub(crate) fn timeout_response(&self) -> Response<Full<Bytes>> {
        let mut resp = error_response(&ApiError::RequestTimeout, &ids::request_id(), Service::Sts);
        set_date(&mut resp, self.clock.now());
        resp
    }

    async fn handle_inner<B>(
        &self,
        req: Request<B>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Result<Reply, (Service, ApiError)>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let sts_err = |e| (Service::Sts, e);
        let cfg = &self.config;
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > cfg.max_header_bytes {
            // Read what fits of the body first: an HTTP/2 stream answered while its client is
            // still sending is reset, and some clients then lose the answer itself.
            let _ = Limited::new(req.into_body(), cfg.max_body_bytes)
                .collect()
                .await;
            return Err(sts_err(ApiError::RequestHeaderFieldsTooLarge(
                cfg.max_header_bytes,
            )));
        }
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > cfg.max_body_bytes as u64) {
            return Err(sts_err(ApiError::RequestEntityTooLarge(cfg.max_body_bytes)));
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, cfg.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(sts_err(ApiError::RequestEntityTooLarge(cfg.max_body_bytes)));
            }
            Err(e) => {
                tracing::debug!(request_id, error = %e, "request body unreadable");
                return Err(sts_err(ApiError::MalformedQueryString));
            }
        };

        let query = parts.uri.query().unwrap_or("");
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if parts.method == Method::POST && content_type.is_none() {
            return Ok(Reply::Redirect(FRONT_DOOR.to_owned()));
        }
        let mut params = Params::default();
        params.extend_from_form(query.as_bytes()).map_err(sts_err)?;
        let is_form = content_type.is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        if parts.method == Method::POST && is_form {
            params.extend_from_form(&body).map_err(sts_err)?;
        } else if !body.is_empty() && params.get("Action").is_some() {
            // Content-Type is often unsigned (curl --aws-sigv4 never signs it), so a body
            // dropped because of it would let anyone on the path strip signed parameters such
            // as TokenCode from an API call (`docs/sts-wire-contract.md#parameter-decoding`).
            return Err(sts_err(ApiError::UnreadBody));
        }
        let Some(action) = params.get("Action") else {
            let location = if query.is_empty() {
                FRONT_DOOR.to_owned()
            } else {
                format!("{FRONT_DOOR}?{query}")
            };
            return Ok(Reply::Redirect(location));
        };

        let version = params.get("Version");
        let presented = Presented::new(&parts, Payload::Bytes(&body));
        let service = Service::for_request(version, presented.scope_service());
        let fail = |e: ApiError| (service, e);
        let policy = match service {
            Service::Sts => &self.sts_policy,
            Service::Iam => &self.iam_policy,
        };
        let now = self.clock.now();
        let caller = self
            .verifier
            .verify_presented(&presented, policy, now)
            .map_err(|e| fail(e.into()))?;

        if version != Some(service.version()) {
            return Err(fail(ApiError::InvalidAction {
                action: action.to_owned(),
                version: version.unwrap_or("NO_VERSION_SPECIFIED").to_owned(),
            }));
        }
        let ctx = RequestCtx {
            api: self,
            caller,
            params: &params,
            request_id,
            source_ip: remote.ip(),
            now,
        };
        let body = match service {
            Service::Sts => sts::dispatch(&ctx, action).await,
            Service::Iam => Box::pin(iam::dispatch(&ctx, action)).await,
        }
        .map_err(fail)?;
        Ok(Reply::Xml(service, body))
    }
}

impl crate::server::Handler for Api {
    type Body = Full<Bytes>;
    type BodyError = Infallible;

    fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        Api::handle(self, req, remote)
    }

    fn timeout_response(&self) -> Response<Full<Bytes>> {
        Api::timeout_response(self)
    }
}

/// Sets `Date` from the broker's clock rather than hyper's: SDKs correct their signing time by
/// the skew they see in it, so it must be the clock the broker judges requests by.
fn set_date<B>(resp: &mut Response<B>, now: UnixTime) {
    // The text changes once a second; each worker thread keeps the last one it made (a
    // `HeaderValue` clone shares its bytes).
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let value = LAST.with_borrow_mut(|last| match last {
        Some((secs, v)) if *secs == now.secs() => Some(v.clone()),
        _ => {
            let v = HeaderValue::from_str(&now.http_date()).ok()?;
            *last = Some((now.secs(), v.clone()));
            Some(v)
        }
    });
    if let Some(v) = value {
        resp.headers_mut().insert(header::DATE, v);
    }
}

/// The error reply for `e`.
fn error_response(e: &ApiError, request_id: &str, service: Service) -> Response<Full<Bytes>> {
    tracing::debug!(request_id, code = e.code(), "request refused");
    xml_response(e.status(), e.body(service, request_id), request_id, service)
}

fn xml_response(
    status: StatusCode,
    body: String,
    request_id: &str,
    service: Service,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    insert_request_headers(resp.headers_mut(), request_id, service);
    resp
}

/// `Content-Type`, `x-amzn-RequestId` and, for STS, `x-amz-sts-extended-request-id`: on every
/// reply, redirects included (`docs/sts-wire-contract.md#response-headers`).
fn insert_request_headers(h: &mut http::HeaderMap, request_id: &str, service: Service) {
    const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-amzn-requestid");
    const EXTENDED_ID: header::HeaderName =
        header::HeaderName::from_static("x-amz-sts-extended-request-id");
    // Checked when the program is built, not on every reply.
    const TEXT_XML: HeaderValue = HeaderValue::from_static("text/xml");
    h.insert(header::CONTENT_TYPE, TEXT_XML);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
        if service == Service::Sts
            && let Some(x) = extended_request_id(request_id)
        {
            h.insert(EXTENDED_ID, x);
        }
    }
}

/// The extended request id: `1:sts-broker:S:` and the request id, in base64.
fn extended_request_id(request_id: &str) -> Option<HeaderValue> {
    const PREFIX: &str = "1:sts-broker:S:";
    // The prefix is 15 bytes, five whole 3-byte groups of base64, so the encoding of the prefix
    // and the id is the encoding of the prefix (this, checked by a test) then that of the id.
    const PREFIX_BASE64: &[u8] = b"MTpzdHMtYnJva2VyOlM6";
    let engine = &base64::engine::general_purpose::STANDARD;
    // Room for any id the broker makes (a UUID's 36 characters are 48 in base64).
    let mut buf = [0u8; 128];
    let (prefix, rest) = buf.split_at_mut(PREFIX_BASE64.len());
    prefix.copy_from_slice(PREFIX_BASE64);
    let value = match engine.encode_slice(request_id, rest) {
        Ok(n) => HeaderValue::from_bytes(buf.get(..PREFIX_BASE64.len() + n)?),
        // An id too long for the buffer: encode it the long way.
        Err(_) => HeaderValue::from_str(&engine.encode(format!("{PREFIX}{request_id}"))),
    };
    value.ok()
}

fn redirect(location: &str, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    // Without an Action the service is unknown; live STS sends its headers on this redirect
    // (`docs/sts-wire-contract.md#front-door`).
    insert_request_headers(h, request_id, Service::Sts);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers every reply carries, as a plain rendering of the contract builds them
    /// (`docs/sts-wire-contract.md#response-headers`).
    fn expected(request_id: &str, service: Service) -> Vec<(String, Vec<u8>)> {
        let mut want = vec![
            ("content-type".to_owned(), b"text/xml".to_vec()),
            (
                "x-amzn-requestid".to_owned(),
                request_id.as_bytes().to_vec(),
            ),
        ];
        if service == Service::Sts {
            let plain = format!("1:sts-broker:S:{request_id}");
            let extended = base64::engine::general_purpose::STANDARD.encode(plain);
            want.push((
                "x-amz-sts-extended-request-id".to_owned(),
                extended.into_bytes(),
            ));
        }
        want
    }

    fn inserted(request_id: &str, service: Service) -> Vec<(String, Vec<u8>)> {
        let mut h = http::HeaderMap::new();
        insert_request_headers(&mut h, request_id, service);
        h.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    /// In order, byte for byte, for ids of every length the buffer takes and longer.
    #[test]
    fn request_headers_are_the_contract_ones() {
        let uuid = "0b7e3c0a-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let ids = (0..130).map(|n| "x".repeat(n)).chain([uuid.to_owned()]);
        for id in ids {
            for service in [Service::Sts, Service::Iam] {
                assert_eq!(inserted(&id, service), expected(&id, service), "{id:?}");
            }
        }
        // An id that is no header value gets neither id header, as before.
        assert_eq!(
            inserted("a\nb", Service::Sts),
            vec![("content-type".to_owned(), b"text/xml".to_vec())]
        );
    }
}
