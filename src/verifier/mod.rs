//! One verifier, many front doors: SigV4 plus credentials, for any service name, knowing no
//! STS or IAM wire format and writing nothing. The STS/IAM API is one client of it; a gateway,
//! a forward-auth endpoint or an embedding service are others.
//!
//! Order of checks (the order AWS reports problems in; see
//! `docs/sts-wire-contract.md#sigv4-check-order`): the request must carry SigV4 at all and be
//! well-formed; it must be scoped to the policy's service, a known region and the request date, and
//! be within the skew; then the access key (or session token) must be valid, checked before the
//! signature, as AWS does; then the signature itself, in constant time; last, the policy's MFA
//! requirements.

mod error;
mod key_cache;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

pub use error::AuthError;

use crate::model::{AccessKey, Principal, User};
use crate::session::{KeyRing, OpenedSession, SessionError};
pub use crate::sigv4::Payload;
use crate::sigv4::{self, HttpRequest, ScopePolicy, SigV4Error, SignedRequest};
use crate::store::{Index, ReadOnlyStore, StoreError};
use crate::time::UnixTime;

/// The answer AWS gives to each refusal, for front doors other than the STS/IAM API (a gateway,
/// a forward-auth endpoint, a service's own middleware). The codes and statuses are STS's
/// common errors (`docs/sts-wire-contract.md#error-table`); the STS/IAM API words the messages
/// in `protocol`, the other front doors use the [`Display`](std::fmt::Display) text.
impl AuthError {
    /// The AWS error code: `MissingAuthenticationToken`, `IncompleteSignature`,
    /// `SignatureDoesNotMatch`, `InvalidClientTokenId`, `ExpiredToken` or `AccessDenied`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsigned => "MissingAuthenticationToken",
            Self::Signature(e) => e.kind().code(),
            Self::UnknownAccessKey
            | Self::UnexpectedSessionToken
            | Self::InvalidSessionToken
            | Self::SessionParentGone => "InvalidClientTokenId",
            Self::ExpiredSessionToken => "ExpiredToken",
            Self::MfaRequired | Self::MfaTooOld { .. } => "AccessDenied",
        }
    }

    /// The HTTP status: 400 for malformed authentication data (`IncompleteSignature`), 403 for
    /// everything else.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Self::Signature(e) => http::StatusCode::from_u16(e.kind().http_status())
                .unwrap_or(http::StatusCode::FORBIDDEN),
            _ => http::StatusCode::FORBIDDEN,
        }
    }

    /// Whether the caller proved who it is and only the policy's MFA requirements refused it
    /// (a forward-auth endpoint answers 403 for these, 401 for the others).
    pub fn is_policy_refusal(&self) -> bool {
        matches!(self, Self::MfaRequired | Self::MfaTooOld { .. })
    }
}

/// Where the verifier finds long-term credentials and the identities they belong to.
pub trait CredentialLookup: Send + Sync {
    /// The account every identity belongs to.
    fn account_id(&self) -> &str;
    /// The long-term access key with this id, active or not. The verifier reuses the signing
    /// key it derived from a key only while this returns the same `Arc` (a changed key is a new
    /// one); a fresh `Arc` per call is correct, but derives on every request.
    fn access_key(&self, id: &str) -> Option<Arc<AccessKey>>;
    /// The IAM user with this id.
    fn user(&self, id: &str) -> Option<Arc<User>>;
}

impl CredentialLookup for Index {
    fn account_id(&self) -> &str {
        Index::account_id(self)
    }

    fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
        Index::access_key(self, id)
    }

    fn user(&self, id: &str) -> Option<Arc<User>> {
        Index::user(self, id)
    }
}

/// What a request must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// The credential-scope service name, e.g. `sts` or `execute-api`.
    pub service: String,
    /// Accepted credential-scope regions; `""` is botocore's `region_name=''`.
    pub regions: Vec<String>,
    /// Allowed difference between the request's date and now, in seconds.
    pub max_skew_secs: i64,
    /// Admit only session credentials minted with a verified MFA code.
    pub require_mfa: bool,
    /// With MFA, the longest time since the MFA authentication, in seconds
    /// (`aws:MultiFactorAuthAge`).
    pub max_mfa_age_secs: Option<i64>,
}

impl VerifyPolicy {
    /// A policy for `service` with the broker's defaults: regions `us-east-1` and `""`,
    /// 15 minutes of skew, no MFA requirement.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            regions: vec!["us-east-1".to_owned(), String::new()],
            max_skew_secs: 15 * 60,
            require_mfa: false,
            max_mfa_age_secs: None,
        }
    }
}

/// How a request was authenticated with MFA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaAuthentication {
    /// The device's serial number.
    pub serial: String,
    /// When the code was verified.
    pub authenticated_at: UnixTime,
}

/// What session credentials carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionContext {
    /// When the credentials expire.
    pub expires_at: UnixTime,
    /// Present when the session was minted with a verified MFA code.
    pub mfa: Option<MfaAuthentication>,
}

/// A request whose signature and credentials checked out.
#[derive(Clone, Debug)]
pub struct VerifiedCaller {
    /// Who signed.
    pub principal: Principal,
    /// The account.
    pub account_id: String,
    /// The principal's ARN.
    pub arn: String,
    /// The access key id that signed (`AKIA…`, or `ASIA…` for a session).
    pub access_key_id: String,
    /// Present when the request was signed with session credentials.
    pub session: Option<SessionContext>,
    /// The long-term key that signed, or that obtained the session.
    pub(crate) parent_access_key_id: String,
}

impl VerifiedCaller {
    /// GetCallerIdentity's `UserId`: the account id for root, the `AIDA…` id for a user.
    pub fn user_id(&self) -> &str {
        self.principal.user_id(&self.account_id)
    }

    /// `aws:MultiFactorAuthPresent`: session credentials minted with a verified MFA code.
    pub fn mfa_present(&self) -> bool {
        self.mfa().is_some()
    }

    /// The MFA authentication behind the session, if any.
    pub fn mfa(&self) -> Option<&MfaAuthentication> {
        self.session.as_ref().and_then(|s| s.mfa.as_ref())
    }

    /// `aws:MultiFactorAuthAge` at `now`, in seconds, when MFA was used.
    pub fn mfa_age_secs(&self, now: UnixTime) -> Option<i64> {
        self.mfa()
            .map(|m| now.secs_since(m.authenticated_at).max(0))
    }
}

/// A request as presented, its SigV4 data read once: the STS/IAM front door needs the
/// credential scope's service to pick the policy before verifying.
pub struct Presented<'a> {
    parts: &'a Parts,
    headers: Vec<(&'a str, &'a [u8])>,
    payload: Payload<'a>,
    signed: Result<Option<SignedRequest>, SigV4Error>,
}

impl<'a> Presented<'a> {
    /// Reads the SigV4 data of `parts`. HTTP/2 carries the host as `:authority`, which SigV4
    /// signs as `host`.
    pub fn new(parts: &'a Parts, payload: Payload<'a>) -> Self {
        let mut headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        if !parts.headers.contains_key(http::header::HOST)
            && let Some(authority) = parts.uri.authority()
        {
            headers.push(("host", authority.as_str().as_bytes()));
        }
        let mut presented = Self {
            parts,
            headers,
            payload,
            signed: Ok(None),
        };
        presented.signed = sigv4::parse(&presented.http());
        presented
    }

    fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: self.parts.method.as_str(),
            path: self.parts.uri.path(),
            query: self.parts.uri.query().unwrap_or(""),
            headers: &self.headers,
            payload: self.payload,
        }
    }

    /// The access key id the credential scope claims, when the request carries a readable one
    /// (for the record of a refusal; it is not verified).
    pub fn access_key_id(&self) -> Option<&str> {
        match &self.signed {
            Ok(Some(s)) => Some(&s.scope.access_key_id),
            _ => None,
        }
    }

    /// The service named by the credential scope, when the request carries a readable one.
    pub fn scope_service(&self) -> Option<&str> {
        match &self.signed {
            Ok(Some(s)) => Some(&s.scope.service),
            _ => None,
        }
    }
}

/// Checks SigV4 requests against credentials the broker issued or knows.
///
/// A service of one's own, with its own credential source, checks a request signed for it by
/// any AWS signer (here aws-sigv4, as the AWS SDKs sign):
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use aws_credential_types::Credentials;
/// use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
/// use aws_sigv4::sign::v4;
/// use sha2::Digest as _;
/// use sts_broker::{
///     AccessKey, AuthError, CredentialLookup, Owner, Payload, UnixTime, User, Verifier,
///     VerifyPolicy,
/// };
///
/// /// One IAM user with one access key.
/// struct OneKey(Arc<AccessKey>, Arc<User>);
///
/// impl CredentialLookup for OneKey {
///     fn account_id(&self) -> &str {
///         "123456789012"
///     }
///     fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
///         (id == self.0.id).then(|| Arc::clone(&self.0))
///     }
///     fn user(&self, id: &str) -> Option<Arc<User>> {
///         (id == &*self.1.id).then(|| Arc::clone(&self.1))
///     }
/// }
///
/// let alice = User {
///     id: "AIDAEXAMPLEALICE12345".into(),
///     name: "alice".into(),
///     path: "/".into(),
///     created_at: UnixTime::default(),
/// };
/// let key = AccessKey::new(
///     "AKIAEXAMPLEALICE1234",
///     Owner::User(alice.id.clone()),
///     "alice-secret-access-key-0123456789abcdef",
/// );
/// let verifier = Verifier::with_credentials(Arc::new(OneKey(Arc::new(key), Arc::new(alice))));
///
/// // The client side: sign `GET /orders` for the `execute-api` service.
/// let now = 1_767_225_600;
/// let mut request = http::Request::get("https://api.example.com/orders?limit=5")
///     .body(Vec::new())?;
/// let identity = Credentials::new(
///     "AKIAEXAMPLEALICE1234",
///     "alice-secret-access-key-0123456789abcdef",
///     None,
///     None,
///     "example",
/// )
/// .into();
/// let params = v4::SigningParams::builder()
///     .identity(&identity)
///     .region("us-east-1")
///     .name("execute-api")
///     .time(UNIX_EPOCH + Duration::from_secs(now))
///     .settings(SigningSettings::default())
///     .build()?
///     .into();
/// let signable = SignableRequest::new(
///     "GET",
///     request.uri().to_string(),
///     std::iter::empty(),
///     SignableBody::Bytes(&[]),
/// )?;
/// let (instructions, _) = sign(signable, &params)?.into_parts();
/// instructions.apply_to_request_http1x(&mut request);
///
/// // The service side.
/// let (parts, body) = request.into_parts();
/// let policy = VerifyPolicy::new("execute-api");
/// let at = UnixTime::from_secs(now as i64);
/// let caller = verifier.verify(&parts, Payload::Bytes(&body), &policy, at)?;
/// assert_eq!(caller.arn, "arn:aws:iam::123456789012:user/alice");
/// assert!(!caller.mfa_present());
///
/// // A long-term key has no MFA context, so a policy that requires MFA refuses it.
/// let strict = VerifyPolicy { require_mfa: true, ..policy.clone() };
/// let refused = verifier.verify(&parts, Payload::Bytes(&body), &strict, at).unwrap_err();
/// assert_eq!(refused, AuthError::MfaRequired);
/// // What an HTTP front door answers: AWS's status and code, and a clear message.
/// assert_eq!((refused.http_status().as_u16(), refused.code()), (403, "AccessDenied"));
/// assert_eq!(refused.to_string(), "MFA-backed session credentials are required");
///
/// // A streaming service passes the body's declared SHA-256 instead of the body, and checks
/// // the body against it as it reads it (as `MfaLayer` and `sts-broker gate` do).
/// let empty: [u8; 32] = sha2::Sha256::digest(b"").into();
/// assert!(verifier.verify(&parts, Payload::Sha256(empty), &policy, at).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    credentials: Arc<dyn CredentialLookup>,
    keys: Arc<KeyRing>,
    /// Signing keys derived for recent requests.
    signing_keys: Arc<key_cache::SigningKeyCache>,
    /// The follower that keeps `credentials` current, when this verifier owns one; held so
    /// that it follows for as long as the verifier lives.
    _follower: Option<Arc<ReadOnlyStore>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("account_id", &self.credentials.account_id())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of the identities in `credentials` and the sessions `keys` minted.
    pub(crate) fn new(credentials: Arc<dyn CredentialLookup>, keys: Arc<KeyRing>) -> Self {
        Self {
            credentials,
            keys,
            signing_keys: Arc::new(key_cache::SigningKeyCache::new()),
            _follower: None,
        }
    }

    /// A verifier of the long-term keys `credentials` knows; it refuses every session token
    /// (it has no server keys to check them with).
    pub fn with_credentials(credentials: Arc<dyn CredentialLookup>) -> Self {
        Self::new(credentials, Arc::new(KeyRing::empty()))
    }

    /// A verifier over a broker's data dir, opened read-only (nothing is created or written)
    /// and following the broker's changes every `poll`: a key deactivated or a user deleted on
    /// the broker stops verifying here within that interval. The master key comes from
    /// `STS_BROKER_MASTER_KEY` or the data dir's `master.key`, as the broker's does.
    pub fn follow_data_dir(data_dir: &Path, poll: Duration) -> Result<Self, StoreError> {
        let store = Arc::new(ReadOnlyStore::open(data_dir, poll)?);
        let keys = KeyRing::new(store.server_keys())
            .map_err(|e| StoreError::Corrupt(format!("server keys: {e}")))?;
        Ok(Self {
            credentials: store.index().clone(),
            keys: Arc::new(keys),
            signing_keys: Arc::new(key_cache::SigningKeyCache::new()),
            _follower: Some(store),
        })
    }

    /// The account whose credentials this verifier knows.
    pub fn account_id(&self) -> &str {
        self.credentials.account_id()
    }

    /// Verifies `parts` with `payload` against `policy` at `now`.
    pub fn verify(
        &self,
        parts: &Parts,
        payload: Payload<'_>,
        policy: &VerifyPolicy,
        now: UnixTime,
    ) -> Result<VerifiedCaller, AuthError> {
        self.verify_presented(&Presented::new(parts, payload), policy, now)
    }

    /// Verifies a request whose SigV4 data was already read.
    pub fn verify_presented(
        &self,
        request: &Presented<'_>,
        policy: &VerifyPolicy,
        now: UnixTime,
    ) -> Result<VerifiedCaller, AuthError> {
        let signed = match &request.signed {
            Ok(Some(signed)) => signed,
            Ok(None) => return Err(AuthError::Unsigned),
            Err(e) => return Err(AuthError::Signature(e.clone())),
        };
        let scope = ScopePolicy {
            regions: &policy.regions,
            service: &policy.service,
            max_skew_secs: policy.max_skew_secs,
        };
        sigv4::check_scope_and_time(signed, &scope, now.secs()).map_err(AuthError::Signature)?;
        // Only once the key is found active (or the session token valid) may a cached signing
        // key stand in for the derivation.
        let (caller, key) = if signed.scope.access_key_id.starts_with("ASIA") {
            let (caller, session) = self.session_caller(signed, now)?;
            let key = self.signing_key(signed, &session, session.secret.as_bytes());
            (caller, key)
        } else {
            let (caller, access_key) = self.long_term_caller(signed)?;
            let key = self.signing_key(signed, &access_key, access_key.secret.as_bytes());
            (caller, key)
        };
        sigv4::verify_signature(&request.http(), signed, &key).map_err(AuthError::Signature)?;
        if policy.require_mfa && !caller.mfa_present() {
            return Err(AuthError::MfaRequired);
        }
        if let (Some(max), Some(age)) = (policy.max_mfa_age_secs, caller.mfa_age_secs(now))
            && age > max
        {
            return Err(AuthError::MfaTooOld { age, max });
        }
        Ok(caller)
    }

    /// The signing key for `signed`'s scope from `secret`, which belongs to `origin`.
    fn signing_key<T: std::any::Any + Send + Sync>(
        &self,
        signed: &SignedRequest,
        origin: &Arc<T>,
        secret: &[u8],
    ) -> sigv4::SigningKey {
        let scope = &signed.scope;
        self.signing_keys
            .signing_key(origin, secret, &scope.date, &scope.region, &scope.service)
    }

    fn principal(&self, owner: &crate::model::Owner) -> Option<Principal> {
        match owner {
            crate::model::Owner::Root => Some(Principal::Root),
            crate::model::Owner::User(id) => self.credentials.user(id).map(Principal::User),
        }
    }

    fn caller(
        &self,
        principal: Principal,
        access_key_id: String,
        parent_access_key_id: String,
        session: Option<SessionContext>,
    ) -> VerifiedCaller {
        let account_id = self.credentials.account_id().to_owned();
        VerifiedCaller {
            arn: principal.arn(&account_id),
            principal,
            account_id,
            access_key_id,
            session,
            parent_access_key_id,
        }
    }

    fn long_term_caller(
        &self,
        signed: &SignedRequest,
    ) -> Result<(VerifiedCaller, Arc<AccessKey>), AuthError> {
        // A session token sent with a long-term key is as invalid as a wrong key.
        if signed.security_token.is_some() {
            return Err(AuthError::UnexpectedSessionToken);
        }
        let key = self
            .credentials
            .access_key(&signed.scope.access_key_id)
            .filter(|k| k.active)
            .ok_or(AuthError::UnknownAccessKey)?;
        let principal = self
            .principal(&key.owner)
            .ok_or(AuthError::UnknownAccessKey)?;
        let caller = self.caller(principal, key.id.clone(), key.id.clone(), None);
        Ok((caller, key))
    }

    fn session_caller(
        &self,
        signed: &SignedRequest,
        now: UnixTime,
    ) -> Result<(VerifiedCaller, Arc<OpenedSession>), AuthError> {
        let token = signed
            .security_token
            .as_deref()
            .ok_or(AuthError::InvalidSessionToken)?;
        let opened = self
            .keys
            .verify(&signed.scope.access_key_id, token, now)
            .map_err(|e| match e {
                SessionError::Expired => AuthError::ExpiredSessionToken,
                _ => AuthError::InvalidSessionToken,
            })?;
        let claims = &opened.claims;
        // The session lives only as long as the key that obtained it and its principal.
        let owner = claims.owner();
        let parent_alive = self
            .credentials
            .access_key(&claims.pk)
            .is_some_and(|k| k.active && k.owner == owner);
        if !parent_alive {
            return Err(AuthError::SessionParentGone);
        }
        let principal = self.principal(&owner).ok_or(AuthError::SessionParentGone)?;
        let session = SessionContext {
            expires_at: claims.exp,
            mfa: claims.mfa.as_ref().map(|m| MfaAuthentication {
                serial: m.serial.clone(),
                authenticated_at: m.auth_time,
            }),
        };
        let caller = self.caller(
            principal,
            claims.akid.clone(),
            claims.pk.clone(),
            Some(session),
        );
        Ok((caller, opened))
    }
}
