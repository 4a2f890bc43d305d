//! MFA gating for a Rust service: a `tower` layer that admits a request only when the
//! [`Verifier`] verifies it under a [`VerifyPolicy`], and hands the [`VerifiedCaller`] to the
//! service in the request's extensions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Body;

use super::admit::{BoxError, Gatekeeper, VerifiedBody};
use crate::clock::{SharedClock, SystemClock};
use crate::ids;
use crate::verifier::{VerifiedCaller, Verifier, VerifyPolicy};

/// The default limit on a body read whole (one without a declared `x-amz-content-sha256`).
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// A `tower` layer that lets through only requests signed with credentials the verifier knows
/// and that satisfy the policy (for instance, MFA-backed session credentials at most five
/// minutes after their MFA code); the others get the AWS error the gateway would answer
/// (`docs/gate.md#errors`).
///
/// The service behind it receives a `Request<VerifiedBody<B>>` with the [`VerifiedCaller`] in
/// its extensions. A body whose SHA-256 the client signed in `x-amz-content-sha256` is streamed
/// and checked as it flows (it ends in an error instead of its last chunk if it does not match);
/// any other body is read whole, up to 1 MiB by default, and hashed before the request is
/// verified.
///
/// With axum, one line:
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use aws_credential_types::Credentials;
/// use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
/// use aws_sigv4::sign::v4;
/// use axum::{Extension, Router, routing::get};
/// use http_body_util::BodyExt as _;
/// use sts_broker::{
///     AccessKey, CredentialLookup, ManualClock, MfaLayer, Owner, User, UnixTime,
///     VerifiedCaller, Verifier, VerifyPolicy,
/// };
/// use tower_service::Service as _;
///
/// # struct OneKey(Arc<AccessKey>, Arc<User>);
/// # impl CredentialLookup for OneKey {
/// #     fn account_id(&self) -> &str { "123456789012" }
/// #     fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
/// #         (id == self.0.id).then(|| Arc::clone(&self.0))
/// #     }
/// #     fn user(&self, id: &str) -> Option<Arc<User>> {
/// #         (id == &*self.1.id).then(|| Arc::clone(&self.1))
/// #     }
/// # }
/// # let alice = User {
/// #     id: "AIDAEXAMPLEALICE12345".into(),
/// #     name: "alice".into(),
/// #     path: "/".into(),
/// #     created_at: UnixTime::default(),
/// # };
/// # let key = AccessKey::new(
/// #     "AKIAEXAMPLEALICE1234",
/// #     Owner::User(alice.id.clone()),
/// #     "alice-secret-access-key-0123456789abcdef",
/// # );
/// // In production: Verifier::follow_data_dir(broker_data_dir, poll).
/// let verifier = Verifier::with_credentials(Arc::new(OneKey(Arc::new(key), Arc::new(alice))));
/// let now = 1_767_225_600;
/// let clock = Arc::new(ManualClock::new(now));
///
/// async fn orders(Extension(caller): Extension<VerifiedCaller>) -> String {
///     format!("orders of {}", caller.arn)
/// }
///
/// let open = VerifyPolicy::new("execute-api");
/// let mfa_only = VerifyPolicy { require_mfa: true, max_mfa_age_secs: Some(300), ..open.clone() };
/// let mut app = Router::new()
///     .route("/orders", get(orders))
///     .layer(MfaLayer::new(verifier.clone(), open).clock(clock.clone()));
/// let mut strict = Router::new()
///     .route("/orders", get(orders))
///     .layer(MfaLayer::new(verifier, mfa_only).clock(clock));
///
/// // A client signs `GET /orders` for `execute-api` with alice's long-term key.
/// let signed = || -> Result<http::Request<axum::body::Body>, Box<dyn std::error::Error>> {
///     let mut request = http::Request::get("http://api.example.com/orders").body(())?;
///     let identity = Credentials::new(
///         "AKIAEXAMPLEALICE1234",
///         "alice-secret-access-key-0123456789abcdef",
///         None,
///         None,
///         "example",
///     )
///     .into();
///     let params = v4::SigningParams::builder()
///         .identity(&identity)
///         .region("us-east-1")
///         .name("execute-api")
///         .time(UNIX_EPOCH + Duration::from_secs(now as u64))
///         .settings(SigningSettings::default())
///         .build()?
///         .into();
///     let signable = SignableRequest::new(
///         "GET",
///         request.uri().to_string(),
///         std::iter::empty(),
///         SignableBody::Bytes(&[]),
///     )?;
///     let (instructions, _) = sign(signable, &params)?.into_parts();
///     instructions.apply_to_request_http1x(&mut request);
///     Ok(request.map(|()| axum::body::Body::empty()))
/// };
///
/// tokio::runtime::Runtime::new()?.block_on(async {
///     let resp = app.call(signed()?).await?;
///     assert_eq!(resp.status(), 200);
///     let body = resp.into_body().collect().await?.to_bytes();
///     assert_eq!(body, "orders of arn:aws:iam::123456789012:user/alice");
///
///     // A long-term key has no MFA context: the strict policy answers 403 AccessDenied.
///     let resp = strict.call(signed()?).await?;
///     assert_eq!(resp.status(), 403);
///     assert_eq!(resp.headers()["x-amzn-errortype"], "AccessDenied");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MfaLayer {
    keeper: Arc<Gatekeeper>,
}

impl std::fmt::Debug for MfaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaLayer")
            .field("policy", &self.keeper.policy)
            .field("max_body_bytes", &self.keeper.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl MfaLayer {
    /// Admits what `verifier` verifies under `policy`, judged by the system clock.
    pub fn new(verifier: Verifier, policy: VerifyPolicy) -> Self {
        Self {
            keeper: Arc::new(Gatekeeper {
                verifier,
                policy,
                clock: Arc::new(SystemClock),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            }),
        }
    }

    fn rebuilt(&self, change: impl FnOnce(&mut Gatekeeper)) -> Self {
        let mut keeper = Gatekeeper {
            verifier: self.keeper.verifier.clone(),
            policy: self.keeper.policy.clone(),
            clock: Arc::clone(&self.keeper.clock),
            max_body_bytes: self.keeper.max_body_bytes,
        };
        change(&mut keeper);
        Self {
            keeper: Arc::new(keeper),
        }
    }

    /// Judges requests (signature dates, MFA age, expiry) by `clock`.
    #[must_use]
    pub fn clock(self, clock: SharedClock) -> Self {
        self.rebuilt(|k| k.clock = clock)
    }

    /// The largest body read whole, when the client does not sign its hash (default 1 MiB);
    /// larger ones are refused with 413.
    #[must_use]
    pub fn max_body_bytes(self, limit: usize) -> Self {
        self.rebuilt(|k| k.max_body_bytes = limit)
    }
}

impl<S> tower_layer::Layer<S> for MfaLayer {
    type Service = MfaService<S>;

    fn layer(&self, inner: S) -> MfaService<S> {
        MfaService {
            inner,
            keeper: Arc::clone(&self.keeper),
        }
    }
}

/// The service [`MfaLayer`] wraps around another.
#[derive(Clone)]
pub struct MfaService<S> {
    inner: S,
    keeper: Arc<Gatekeeper>,
}

impl<S> std::fmt::Debug for MfaService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaService")
            .field("policy", &self.keeper.policy)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for MfaService<S>
where
    S: tower_service::Service<Request<VerifiedBody<B>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let keeper = Arc::clone(&self.keeper);
        // The clone that was polled ready serves this request; the fresh one waits its turn
        // (tower's usual pattern for services that are not ready-agnostic).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            match keeper.admit(req).await {
                Ok((parts, body, caller)) => {
                    let mut req = Request::from_parts(parts, body);
                    req.extensions_mut().insert::<VerifiedCaller>(caller);
                    inner.call(req).await.map(|r| r.map(Either::Left))
                }
                Err(refusal) => Ok(refusal
                    .response(refusal.status, &ids::request_id())
                    .map(Either::Right)),
            }
        })
    }
}
