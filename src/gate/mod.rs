//! Front doors that put "MFA required" in front of any HTTP API (`docs/gate.md`):
//!
//! - the gateway: a reverse proxy that admits a request only when it is SigV4-signed with
//!   credentials the broker issued or knows (checked locally by a [`Verifier`] that follows the
//!   broker's data dir, no call to the broker per request), strips the signature, adds identity
//!   headers, and streams the request up and the answer back;
//! - the forward-auth endpoint: the same judgement for a proxy that asks (nginx `auth_request`,
//!   Traefik ForwardAuth, Envoy ext_authz), from the headers it forwards;
//! - [`MfaLayer`]: the same judgement inside a Rust service, as a `tower` layer.
//!
//! All three share `admit::Gatekeeper`. The gateway and forward-auth endpoint are served by
//! `server::run`, so they have the broker's connection limits, timeouts and TLS rule; their
//! refusals go to an audit log of their own.

mod admit;
mod forward_auth;
mod identity;
mod layer;
mod proxy;
mod refusal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use admit::VerifiedBody;
pub use layer::{MfaLayer, MfaService};

use crate::audit::{AuditEvent, AuditLog, AuditTarget, Outcome};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::ids;
use crate::server::{self, ServeError, ServerSettings};
use crate::session::KeyRing;
use crate::store::StoreError;
use crate::store::pg::{PgOptions, PgStore};
use crate::verifier::{Verifier, VerifyPolicy};
use admit::{BoxError, Gatekeeper};
use proxy::{GateResponseBody, Upstream};
use refusal::Refusal;

/// Audit lines waiting for the writer thread; a full queue slows refusals down rather than
/// losing their records.
const AUDIT_QUEUE: usize = 4096;

/// Why a gate could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker's data dir could not be followed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The upstream URL is not usable.
    #[error("{0}")]
    Upstream(String),
    /// The audit log could not be opened.
    #[error("{0}")]
    Audit(std::io::Error),
    /// The listener could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// How to open a gate: its configuration (the `gate_*` keys, and the broker's limits, TLS and
/// audit keys), and the clock it judges by.
pub struct GateBuilder {
    config: Config,
    clock: SharedClock,
    verifier: Option<Verifier>,
}

impl std::fmt::Debug for GateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateBuilder").finish_non_exhaustive()
    }
}

impl GateBuilder {
    /// The clock requests are judged by (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks requests with `verifier` instead of following the configured data dir.
    #[must_use]
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Follows the data dir (read-only), or the PostgreSQL store of `store_url`
    /// (`docs/multinode.md`; then call it inside the Tokio runtime that will serve, where the
    /// follower runs), opens the audit log and prepares the upstream client.
    pub fn open(self) -> Result<Gate, GateError> {
        let config = self.config;
        config.validate()?;
        let mut followed = None;
        let verifier = match (self.verifier, &config.store_url) {
            (Some(v), _) => v,
            (None, None) => Verifier::follow_data_dir(
                &config.data_dir,
                Duration::from_millis(config.change_poll_millis),
            )?,
            (None, Some(url)) => {
                let (store, _) = PgStore::open(PgOptions {
                    data_dir: &config.data_dir,
                    url,
                    timeout: Duration::from_millis(config.store_timeout_millis),
                    load_index: true,
                    bootstrap: false,
                    audit: None,
                    clock: Arc::clone(&self.clock),
                })?;
                let index = store
                    .index()
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("the index was not loaded".into()))?;
                let keys = KeyRing::new(store.server_keys())
                    .map_err(|e| StoreError::Corrupt(format!("server keys: {e}")))?;
                followed = Some(store);
                Verifier::new(index, Arc::new(keys))
            }
        };
        let timeout = Duration::from_secs(config.gate_upstream_timeout_secs);
        let upstream = config
            .gate_upstream
            .as_deref()
            .map(|url| Upstream::new(url, timeout))
            .transpose()
            .map_err(|e| GateError::Upstream(e.to_string()))?;
        let audit = AuditSink::open(&gate_audit_target(&config)).map_err(GateError::Audit)?;
        let policy = VerifyPolicy {
            service: config.gate_service.clone(),
            regions: config.regions.clone(),
            max_skew_secs: config.max_skew_secs,
            require_mfa: config.gate_require_mfa,
            max_mfa_age_secs: config.gate_max_mfa_age_secs,
        };
        let handler = GateHandler {
            keeper: Gatekeeper {
                verifier,
                policy,
                clock: self.clock,
                max_body_bytes: config.max_body_bytes,
            },
            upstream,
            verify_path: config.gate_verify_path.clone(),
            max_header_bytes: config.max_header_bytes,
            tls: config.tls_cert.is_some(),
            audit,
            _followed: followed,
        };
        Ok(Gate {
            handler: Arc::new(handler),
            config,
        })
    }
}

/// The gate writes its own audit file: by default `<data_dir>/gate-audit.log`, never the
/// broker's `audit.log` (the data dir is the broker's; two writers would interleave lines).
fn gate_audit_target(config: &Config) -> AuditTarget {
    if config.audit == AuditTarget::File(config.data_dir.join("audit.log")) {
        AuditTarget::File(config.data_dir.join("gate-audit.log"))
    } else {
        config.audit.clone()
    }
}

/// An opened gate, ready to serve.
pub struct Gate {
    handler: Arc<GateHandler>,
    config: Config,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("policy", &self.handler.keeper.policy)
            .field("upstream", &self.config.gate_upstream)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A builder for a gate on `config`.
    pub fn builder(config: Config) -> GateBuilder {
        GateBuilder {
            config,
            clock: Arc::new(SystemClock),
            verifier: None,
        }
    }

    /// The verifier the gate checks requests with.
    pub fn verifier(&self) -> &Verifier {
        &self.handler.keeper.verifier
    }

    /// What the gate admits.
    pub fn policy(&self) -> &VerifyPolicy {
        &self.handler.keeper.policy
    }

    /// Binds `gate_listen`.
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, GateError> {
        Ok(server::bind(self.config.gate_listen).await?)
    }

    /// Serves on `listener` until `shutdown` completes, then lets open requests finish. Plain
    /// HTTP needs a loopback address or `insecure_http`, as for the broker.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GateError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: self.config.gate_listen,
            source,
        })?;
        // A request has the broker's request timeout to arrive, plus the upstream's to be
        // answered; the upstream's own limit answers 504 first.
        let mut limits = self.config.clone();
        limits.request_timeout_secs = limits
            .request_timeout_secs
            .saturating_add(limits.gate_upstream_timeout_secs);
        let settings = ServerSettings::from_config(&limits, addr)?;
        server::run(listener, self.handler, settings, shutdown).await;
        Ok(())
    }
}

/// The gate's answer to each request.
struct GateHandler {
    keeper: Gatekeeper,
    upstream: Option<Upstream>,
    verify_path: String,
    max_header_bytes: usize,
    tls: bool,
    audit: AuditSink,
    /// The PostgreSQL store whose follower keeps the verifier current, when there is one.
    _followed: Option<PgStore>,
}

impl GateHandler {
    async fn answer(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<GateResponseBody> {
        let forward_auth = match &self.upstream {
            None => true,
            Some(_) => req.uri().path() == self.verify_path,
        };
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        let result = if header_bytes > self.max_header_bytes {
            Err(Refusal::headers_too_large(self.max_header_bytes))
        } else if forward_auth {
            self.forward_auth(req).await
        } else {
            self.proxy(req, remote).await
        };
        match result {
            Ok(resp) => resp,
            Err(refusal) => {
                // Only the gate's own answers need an id; an admitted request costs none.
                let request_id = ids::request_id();
                let status = if forward_auth && refusal.status.is_client_error() {
                    refusal.forward_auth_status()
                } else {
                    refusal.status
                };
                let action = if forward_auth {
                    "ForwardAuth"
                } else {
                    "Gateway"
                };
                self.record(
                    &refusal,
                    action,
                    &request_id,
                    method.as_str(),
                    &path,
                    remote,
                )
                .await;
                refusal.response(status, &request_id).map(Either::Right)
            }
        }
    }

    async fn forward_auth(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<GateResponseBody>, Refusal> {
        let caller = self.keeper.judge(req).await?;
        let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
        identity::insert(resp.headers_mut(), &caller, self.keeper.clock.now());
        Ok(resp)
    }

    async fn proxy(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Result<Response<GateResponseBody>, Refusal> {
        let Some(upstream) = &self.upstream else {
            return Err(Refusal::bad_gateway());
        };
        let (parts, body, caller) = self.keeper.admit(req).await?;
        let now = self.keeper.clock.now();
        let resp = upstream
            .forward(parts, body, &caller, now, remote, self.tls)
            .await?;
        Ok(resp.map(Either::Left))
    }

    async fn record(
        &self,
        refusal: &Refusal,
        action: &str,
        request_id: &str,
        method: &str,
        path: &str,
        remote: SocketAddr,
    ) {
        let account = self.keeper.verifier.account_id();
        let mut event = AuditEvent::new(
            self.keeper.clock.now(),
            request_id,
            account,
            action,
            Outcome::Failure,
        );
        event.reason = Some(refusal.reason);
        event.error_code = Some(refusal.code);
        event.access_key_id = refusal.access_key_id.as_deref();
        event.source_ip = Some(remote.ip());
        event.http_method = Some(method);
        event.path = Some(path);
        self.audit.send(event.to_line()).await;
    }
}

impl server::Handler for GateHandler {
    type Body = GateResponseBody;
    type BodyError = BoxError;

    fn handle(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<GateResponseBody>> + Send {
        self.answer(req, remote)
    }

    fn timeout_response(&self) -> Response<GateResponseBody> {
        let mut resp = Refusal::request_timeout()
            .response(StatusCode::REQUEST_TIMEOUT, &ids::request_id())
            .map(Either::Right);
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

/// The gate's audit log, written by a thread of its own so that file IO never blocks a
/// request's task.
struct AuditSink {
    lines: Option<tokio::sync::mpsc::Sender<String>>,
}

impl AuditSink {
    fn open(target: &AuditTarget) -> std::io::Result<Self> {
        if *target == AuditTarget::Off {
            return Ok(Self { lines: None });
        }
        let mut log = AuditLog::open(target)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(AUDIT_QUEUE);
        std::thread::Builder::new()
            .name("gate-audit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(line) = rx.blocking_recv() {
                    batch.push(line);
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(line) => batch.push(line),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = log.append(batch.iter().map(String::as_str)) {
                        tracing::error!(error = %e, "cannot write the gate's audit log");
                    }
                    batch.clear();
                }
            })?;
        Ok(Self { lines: Some(tx) })
    }

    async fn send(&self, line: String) {
        if let Some(tx) = &self.lines
            && tx.send(line).await.is_err()
        {
            tracing::error!("the gate's audit writer has stopped");
        }
    }
}
