//! Authentication: SigV4 → the calling principal. Order of checks (contract §3, §4): the request
//! must carry SigV4 at all, be well-formed, be scoped to this service, a known region and the
//! request date, and be within the skew; then the access key (or session token) must be valid —
//! checked before the signature, as AWS does; last, the signature itself, in constant time.

use std::sync::Arc;

use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::session::{KeyRing, SessionClaims, SessionError};
use crate::sigv4::{self, HttpRequest, ScopePolicy, SignedRequest};
use crate::store::Index;
use crate::store::model::{Owner, User};

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The account root user.
    Root,
    /// An IAM user.
    User(Arc<User>),
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// Present when the request was signed with session credentials.
    pub session: Option<SessionClaims>,
}

impl Caller {
    /// The principal as a store owner.
    pub fn owner(&self) -> Owner {
        match &self.principal {
            Principal::Root => Owner::Root,
            Principal::User(u) => Owner::User(u.id.clone()),
        }
    }

    /// `arn:aws:iam::ACCOUNT:root` or the user's ARN.
    pub fn arn(&self, account_id: &str) -> String {
        match &self.principal {
            Principal::Root => format!("arn:aws:iam::{account_id}:root"),
            Principal::User(u) => u.arn(account_id),
        }
    }

    /// GetCallerIdentity's UserId: the account id for root, the `AIDA…` id for a user.
    pub fn user_id<'a>(&'a self, account_id: &'a str) -> &'a str {
        match &self.principal {
            Principal::Root => account_id,
            Principal::User(u) => &u.id,
        }
    }

    /// The IAM user, unless root.
    pub fn user(&self) -> Option<&Arc<User>> {
        match &self.principal {
            Principal::Root => None,
            Principal::User(u) => Some(u),
        }
    }

    /// Whether the request was signed with session credentials that carry MFA.
    pub fn has_mfa(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(SessionClaims::mfa_present)
    }
}

/// What authentication needs from the broker.
pub struct Authenticator<'a> {
    /// Identities.
    pub index: &'a Index,
    /// Session-token keys.
    pub keys: &'a KeyRing,
    /// Allowed credential-scope regions.
    pub regions: &'a [String],
    /// Allowed skew.
    pub max_skew_secs: i64,
}

impl Authenticator<'_> {
    /// Authenticates a parsed request for `service` at `now`.
    pub fn authenticate(
        &self,
        req: &HttpRequest<'_>,
        signed: Option<SignedRequest>,
        service: Service,
        now: i64,
    ) -> Result<Caller, ApiError> {
        let signed = signed.ok_or(ApiError::MissingAuthenticationToken)?;
        let policy = ScopePolicy {
            regions: self.regions,
            service: service.signing_name(),
            max_skew_secs: self.max_skew_secs,
        };
        sigv4::check_scope_and_time(&signed, &policy, now)?;
        let akid = signed.scope.access_key_id.as_str();
        let (caller, secret) = if akid.starts_with("ASIA") {
            self.session_caller(&signed, now)?
        } else {
            self.long_term_caller(&signed)?
        };
        let key = sigv4::derive_signing_key(
            secret.as_bytes(),
            &signed.scope.date,
            &signed.scope.region,
            &signed.scope.service,
        );
        sigv4::verify_signature(req, &signed, &key)?;
        Ok(caller)
    }

    fn principal(&self, owner: &Owner) -> Option<Principal> {
        match owner {
            Owner::Root => Some(Principal::Root),
            Owner::User(id) => self.index.user(id).map(Principal::User),
        }
    }

    fn long_term_caller(
        &self,
        signed: &SignedRequest,
    ) -> Result<(Caller, zeroize::Zeroizing<String>), ApiError> {
        // A session token sent with a long-term key is as invalid as a wrong key.
        if signed.security_token.is_some() {
            return Err(ApiError::InvalidClientTokenId);
        }
        let key = self
            .index
            .access_key(&signed.scope.access_key_id)
            .filter(|k| k.active)
            .ok_or(ApiError::InvalidClientTokenId)?;
        let principal = self
            .principal(&key.owner)
            .ok_or(ApiError::InvalidClientTokenId)?;
        Ok((
            Caller {
                principal,
                access_key_id: key.id.clone(),
                session: None,
            },
            key.secret.clone(),
        ))
    }

    fn session_caller(
        &self,
        signed: &SignedRequest,
        now: i64,
    ) -> Result<(Caller, zeroize::Zeroizing<String>), ApiError> {
        let token = signed
            .security_token
            .as_deref()
            .ok_or(ApiError::InvalidClientTokenId)?;
        let (claims, secret) = self
            .keys
            .verify(&signed.scope.access_key_id, token, now)
            .map_err(|e| match e {
                SessionError::Expired => ApiError::ExpiredToken,
                _ => ApiError::InvalidClientTokenId,
            })?;
        // The session lives only as long as the key that obtained it and its principal.
        let owner = claims.owner();
        let parent_alive = self
            .index
            .access_key(&claims.pk)
            .is_some_and(|k| k.active && k.owner == owner);
        if !parent_alive {
            return Err(ApiError::InvalidClientTokenId);
        }
        let principal = self
            .principal(&owner)
            .ok_or(ApiError::InvalidClientTokenId)?;
        Ok((
            Caller {
                principal,
                access_key_id: claims.akid.clone(),
                session: Some(claims),
            },
            secret,
        ))
    }
}
