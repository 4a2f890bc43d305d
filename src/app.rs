//! One request, top to bottom: limits, Query parameters, the front door (302 for a missing
//! Action), SigV4 authentication, dispatch to STS or IAM, and the AWS XML reply. Every failure
//! becomes an [`ApiError`] rendered in one place.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};

use crate::auth::{Authenticator, Caller};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::ids;
use crate::mfa::throttle::Throttle;
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::params::Params;
use crate::session::KeyRing;
use crate::sigv4::{self, HttpRequest};
use crate::store::{Index, Store};
use crate::time::UnixTime;
use crate::{iam, sts};

/// Where AWS redirects requests without an Action.
const FRONT_DOOR: &str = "https://aws.amazon.com/iam";

/// Everything a request needs, shared by all connections.
pub struct AppState {
    /// Configuration.
    pub config: Config,
    /// Time.
    pub clock: SharedClock,
    /// Identities.
    pub store: Store,
    /// Session-token keys.
    pub keys: KeyRing,
    /// Per-device MFA failure lock-outs.
    pub throttle: Throttle,
}

impl AppState {
    /// The in-memory index (always loaded for a serving broker).
    pub fn index(&self) -> Result<&Index, ApiError> {
        self.store.index().ok_or(ApiError::InternalFailure)
    }
}

/// An authenticated request, as handlers see it.
pub struct RequestCtx<'a> {
    /// Shared state.
    pub state: &'a AppState,
    /// Who is calling.
    pub caller: Caller,
    /// The Query parameters.
    pub params: &'a Params,
    /// This request's id.
    pub request_id: &'a str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The time the request is judged at.
    pub now: i64,
    /// The caller's ARN.
    pub caller_arn: String,
}

impl RequestCtx<'_> {
    /// The account id.
    pub fn account(&self) -> &str {
        self.state.store.account_id()
    }
}

/// What a handled request turns into.
enum Reply {
    Xml(Service, String),
    Redirect(String),
}

/// Handles one HTTP request; never fails (failures are AWS error responses).
pub async fn handle<B>(
    state: &AppState,
    req: Request<B>,
    remote: SocketAddr,
) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request_id = ids::request_id();
    let (reply, service) = match handle_inner(state, req, remote, &request_id).await {
        Ok(Reply::Xml(service, body)) => (Ok(body), service),
        Ok(Reply::Redirect(location)) => {
            let mut resp = redirect(&location, &request_id);
            set_date(&mut resp, state.clock.now());
            return resp;
        }
        Err((service, e)) => (Err(e), service),
    };
    let mut resp = match reply {
        Ok(body) => xml_response(StatusCode::OK, body, &request_id, service),
        Err(e) => error_response(&e, &request_id, service),
    };
    set_date(&mut resp, state.clock.now());
    resp
}

/// Sets `Date` from the broker's clock rather than hyper's: SDKs correct their signing time by
/// the skew they see in it, so it must be the clock the broker judges requests by.
pub fn set_date<B>(resp: &mut Response<B>, now: UnixTime) {
    if let Ok(v) = HeaderValue::from_str(&now.http_date()) {
        resp.headers_mut().insert(header::DATE, v);
    }
}

/// The error reply for `e`.
pub fn error_response(e: &ApiError, request_id: &str, service: Service) -> Response<Full<Bytes>> {
    tracing::debug!(request_id, code = e.code(), "request refused");
    xml_response(e.status(), e.body(service, request_id), request_id, service)
}

async fn handle_inner<B>(
    state: &AppState,
    req: Request<B>,
    remote: SocketAddr,
    request_id: &str,
) -> Result<Reply, (Service, ApiError)>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let sts_err = |e| (Service::Sts, e);
    let cfg = &state.config;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > cfg.max_header_bytes {
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
    }
    let Some(action) = params.get("Action") else {
        let location = if query.is_empty() {
            FRONT_DOOR.to_owned()
        } else {
            format!("{FRONT_DOOR}?{query}")
        };
        return Ok(Reply::Redirect(location));
    };

    // SigV4 sees the request exactly as it came; HTTP/2 carries the host as :authority.
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    if let Some(a) = authority
        .as_deref()
        .filter(|_| !parts.headers.contains_key(header::HOST))
    {
        headers.push(("host", a.as_bytes()));
    }
    let http_req = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query,
        headers: &headers,
        body: &body,
    };
    let version = params.get("Version");
    let signed = sigv4::parse(&http_req);
    let scope_service = signed
        .as_ref()
        .ok()
        .and_then(|s| s.as_ref())
        .map(|s| s.scope.service.as_str());
    let service = Service::for_request(version, scope_service);
    let fail = |e: ApiError| (service, e);
    let signed = signed.map_err(|e| fail(e.into()))?;
    let now = state.clock.now().secs();
    let index = state.index().map_err(fail)?;
    let caller = Authenticator {
        index,
        keys: &state.keys,
        regions: &cfg.regions,
        max_skew_secs: cfg.max_skew_secs,
    }
    .authenticate(&http_req, signed, service, now)
    .map_err(fail)?;

    if version != Some(service.version()) {
        return Err(fail(ApiError::InvalidAction {
            action: action.to_owned(),
            version: version.unwrap_or("NO_VERSION_SPECIFIED").to_owned(),
        }));
    }
    let caller_arn = caller.arn(state.store.account_id());
    let ctx = RequestCtx {
        state,
        caller,
        caller_arn,
        params: &params,
        request_id,
        source_ip: remote.ip(),
        now,
    };
    let body = match service {
        Service::Sts => sts::dispatch(&ctx, action).await,
        Service::Iam => iam::dispatch(&ctx, action).await,
    }
    .map_err(fail)?;
    Ok(Reply::Xml(service, body))
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
/// reply, redirects included (contract §2).
fn insert_request_headers(h: &mut http::HeaderMap, request_id: &str, service: Service) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
        if service == Service::Sts {
            let extended = base64::engine::general_purpose::STANDARD
                .encode(format!("1:sts-broker:S:{request_id}"));
            if let Ok(x) = HeaderValue::from_str(&extended) {
                h.insert("x-amz-sts-extended-request-id", x);
            }
        }
    }
}

fn redirect(location: &str, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    // Without an Action the service is unknown; live STS sends its headers on this redirect.
    insert_request_headers(h, request_id, Service::Sts);
    resp
}
