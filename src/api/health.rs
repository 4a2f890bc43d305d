//! `GET /healthz` (the process is up) and `GET /readyz` (the store and the replay backend
//! answer, and the index is loaded) on the API's own address, for a load balancer
//! (`docs/multinode.md#health`). Unauthenticated, so they answer no identity data: a status
//! word and, when not ready, which backend is not.
//!
//! Only a `GET` or `HEAD` of exactly these paths without a query string is a probe: the AWS
//! Query API ignores the path, and a signed API call to `/healthz?Action=…` is still one.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::Api;

/// Which probe a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    Live,
    Ready,
}

/// The probe `req` asks for, if it is one.
pub(super) fn probe<B>(req: &Request<B>) -> Option<Probe> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) || req.uri().query().is_some() {
        return None;
    }
    match req.uri().path() {
        "/healthz" => Some(Probe::Live),
        "/readyz" => Some(Probe::Ready),
        _ => None,
    }
}

/// The probe's answer: 200 `{"status":"ok"}`, or 503 naming what is not ready.
pub(super) async fn answer(api: &Api, probe: Probe) -> Response<Full<Bytes>> {
    let failing = match probe {
        Probe::Live => Vec::new(),
        Probe::Ready => {
            let mut failing = Vec::new();
            if let Err(reason) = api.store.ready().await {
                tracing::warn!(%reason, "not ready: the identity store");
                failing.push("store");
            }
            if let Some(redis) = &api.replay_backend
                && let Err(e) = redis.ping().await
            {
                tracing::warn!(error = %e, "not ready: the replay backend");
                failing.push("replay");
            }
            failing
        }
    };
    let (status, body) = if failing.is_empty() {
        (StatusCode::OK, "{\"status\":\"ok\"}\n".to_owned())
    } else {
        let names: Vec<String> = failing.iter().map(|n| format!("\"{n}\"")).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"status\":\"unavailable\",\"failing\":[{}]}}\n",
                names.join(",")
            ),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&api.clock.now().http_date()) {
        h.insert(header::DATE, v);
    }
    resp
}
