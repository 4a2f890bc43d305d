//! Session credentials any broker process can verify without shared state: the access key id is
//! `ASIA` + 16 random characters, the secret is derived as HMAC(derivation key, akid ‖ expiry)
//! and never stored nor put in the token, and the session token is a JWT (HS256, `kid` header)
//! carrying who, until when and the MFA context. Verification re-derives the secret.

use std::collections::HashMap;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids;
use crate::model::Owner;
use crate::store::ServerKey;
use crate::time::UnixTime;

/// `iss` of every session token.
const ISSUER: &str = "sts-broker";
/// `aud` of every session token.
const AUDIENCE: &str = "sts-broker/session";
/// Allowed clock difference between broker processes for `nbf`.
const NBF_LEEWAY_SECS: i64 = 5;

/// The MFA context of credentials obtained with a verified code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MfaContext {
    /// The device's serial number.
    pub serial: String,
    /// When the code was verified (`aws:MultiFactorAuthAge` = now − this).
    pub auth_time: UnixTime,
}

/// What a session token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The principal: `root` or a user id.
    pub sub: String,
    /// Account id.
    pub acct: String,
    /// The session access key id (`ASIA…`).
    pub akid: String,
    /// The long-term key that obtained the session; the session dies with it.
    pub pk: String,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
    /// Present when MFA was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaContext>,
}

impl SessionClaims {
    /// The principal as an owner.
    pub(crate) fn owner(&self) -> Owner {
        Owner::from_db(self.sub.clone())
    }
}

/// Freshly minted session credentials.
pub(crate) struct SessionCredentials {
    /// `ASIA…`.
    pub access_key_id: String,
    /// 40-character secret.
    pub secret_access_key: Zeroizing<String>,
    /// The JWT.
    pub session_token: String,
    /// Expiry.
    pub expiration: UnixTime,
}

/// What a session is minted for.
#[derive(Clone, Debug)]
pub(crate) struct SessionGrant<'a> {
    /// Who the session acts as.
    pub owner: &'a Owner,
    /// The account.
    pub account_id: &'a str,
    /// The long-term key that obtains it; the session dies with that key.
    pub parent_key: &'a str,
    /// When it starts.
    pub now: UnixTime,
    /// How long it lasts, in seconds.
    pub duration_secs: i64,
    /// The MFA authentication behind it, if any.
    pub mfa: Option<MfaContext>,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Why session credentials were refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The token is malformed, forged, from another key ring, or for another key id.
    #[error("invalid session token")]
    Invalid,
    /// The token was valid but has expired.
    #[error("expired session token")]
    Expired,
    /// Minting failed (random source or encoder).
    #[error("cannot mint session credentials")]
    Mint,
}

struct RingKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    derivation: Hmac<Sha256>,
}

/// The server keys that sign session tokens and derive their secrets.
pub(crate) struct KeyRing {
    /// The key that signs; `None` for a ring that only refuses (no server keys).
    current: Option<String>,
    keys: HashMap<String, RingKey>,
    validation: Validation,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keys`; the newest signs, all verify.
    pub(crate) fn new(keys: &[ServerKey]) -> Result<Self, SessionError> {
        let newest = keys
            .iter()
            .max_by_key(|k| k.created_at)
            .ok_or(SessionError::Mint)?;
        let mut ring = HashMap::new();
        for k in keys {
            let derivation =
                <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(k.derivation.as_slice())
                    .map_err(|_| SessionError::Mint)?;
            ring.insert(
                k.kid.clone(),
                RingKey {
                    encoding: EncodingKey::from_secret(k.signing.as_slice()),
                    decoding: DecodingKey::from_secret(k.signing.as_slice()),
                    derivation,
                },
            );
        }
        // Time claims are checked against the injected clock in `verify`, so the library's own
        // system-time checks are off; their presence is still required.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self {
            current: Some(newest.kid.clone()),
            keys: ring,
            validation,
        })
    }

    /// A ring without keys: it mints nothing and refuses every session token, for a verifier
    /// of long-term credentials only.
    pub(crate) fn empty() -> Self {
        Self {
            current: None,
            keys: HashMap::new(),
            validation: Validation::new(Algorithm::HS256),
        }
    }

    fn derive_secret(key: &RingKey, akid: &str, exp: UnixTime) -> Zeroizing<String> {
        let mut mac = key.derivation.clone();
        mac.update(akid.as_bytes());
        mac.update(b"\0");
        mac.update(exp.secs().to_string().as_bytes());
        let digest: Zeroizing<[u8; 32]> = Zeroizing::new(mac.finalize().into_bytes().into());
        let mut text =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(digest.as_slice()));
        // 32 bytes encode to 44 characters; AWS secrets are 40
        // (`docs/sts-wire-contract.md#getsessiontoken-result`).
        text.truncate(40);
        text
    }

    /// Mints credentials for `grant`.
    pub(crate) fn mint(&self, grant: SessionGrant<'_>) -> Result<SessionCredentials, SessionError> {
        let kid = self.current.as_ref().ok_or(SessionError::Mint)?;
        let key = self.keys.get(kid).ok_or(SessionError::Mint)?;
        let akid = ids::access_key_id("ASIA").map_err(|_| SessionError::Mint)?;
        let exp = grant.now.plus_secs(grant.duration_secs);
        let claims = SessionClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: grant.owner.as_db().to_owned(),
            acct: grant.account_id.to_owned(),
            akid: akid.clone(),
            pk: grant.parent_key.to_owned(),
            iat: grant.now,
            nbf: grant.now,
            exp,
            mfa: grant.mfa,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|_| SessionError::Mint)?;
        Ok(SessionCredentials {
            secret_access_key: Self::derive_secret(key, &akid, exp),
            access_key_id: akid,
            session_token: token,
            expiration: exp,
        })
    }

    /// Checks a session token presented with `access_key_id` at `now`; returns its claims and
    /// the re-derived secret.
    pub(crate) fn verify(
        &self,
        access_key_id: &str,
        token: &str,
        now: UnixTime,
    ) -> Result<(SessionClaims, Zeroizing<String>), SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(SessionError::Invalid)?;
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &self.validation)
            .map_err(|_| SessionError::Invalid)?
            .claims;
        if claims.akid != access_key_id || claims.nbf > now.plus_secs(NBF_LEEWAY_SECS) {
            return Err(SessionError::Invalid);
        }
        if now >= claims.exp {
            return Err(SessionError::Expired);
        }
        let secret = Self::derive_secret(key, &claims.akid, claims.exp);
        Ok((claims, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(&[ServerKey {
            kid: format!("k{seed}"),
            signing: Zeroizing::new([seed; 32]),
            derivation: Zeroizing::new([seed.wrapping_add(1); 32]),
            created_at: t(1),
        }])
        .unwrap()
    }

    fn grant<'a>(owner: &'a Owner, now: i64, duration_secs: i64) -> SessionGrant<'a> {
        SessionGrant {
            owner,
            account_id: "123456789012",
            parent_key: "AKIAPARENT",
            now: t(now),
            duration_secs,
            mfa: None,
        }
    }

    #[test]
    fn minted_credentials_have_aws_shapes_and_verify() {
        let r = ring(1);
        let user = Owner::User("AIDAX".into());
        let c = r.mint(grant(&user, 1_000, 900)).unwrap();
        assert!(c.access_key_id.starts_with("ASIA"));
        assert_eq!(c.access_key_id.len(), 20);
        assert_eq!(c.secret_access_key.len(), 40);
        assert!(c.session_token.len() >= 100);
        assert_eq!(c.expiration, t(1_900));
        assert!(!c.session_token.contains(c.secret_access_key.as_str()));
        let (claims, secret) = r
            .verify(&c.access_key_id, &c.session_token, t(1_899))
            .unwrap();
        assert_eq!(secret.as_str(), c.secret_access_key.as_str());
        assert_eq!(claims.owner(), user);
        assert_eq!(claims.pk, "AKIAPARENT");
        assert_eq!(claims.mfa, None);
    }

    #[test]
    fn expiry_is_exact_and_uses_the_given_clock() {
        let r = ring(1);
        let c = r.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
        assert_eq!(
            r.verify(&c.access_key_id, &c.session_token, t(1_900))
                .unwrap_err(),
            SessionError::Expired
        );
        // Not yet valid (before nbf minus leeway).
        assert_eq!(
            r.verify(&c.access_key_id, &c.session_token, t(990))
                .unwrap_err(),
            SessionError::Invalid
        );
    }

    #[test]
    fn foreign_tampered_or_mismatched_tokens_are_invalid() {
        let r = ring(1);
        let other = ring(2);
        let c = r.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
        assert_eq!(
            other
                .verify(&c.access_key_id, &c.session_token, t(1_100))
                .unwrap_err(),
            SessionError::Invalid
        );
        assert_eq!(
            r.verify("ASIAOTHER", &c.session_token, t(1_100))
                .unwrap_err(),
            SessionError::Invalid
        );
        let mut tampered = c.session_token.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            r.verify(&c.access_key_id, &tampered, t(1_100)).unwrap_err(),
            SessionError::Invalid
        );
        assert_eq!(
            r.verify(&c.access_key_id, "garbage", t(1_100)).unwrap_err(),
            SessionError::Invalid
        );
    }

    #[test]
    fn mfa_context_round_trips() {
        let r = ring(3);
        let mfa = MfaContext {
            serial: "arn:aws:iam::1:mfa/a".into(),
            auth_time: t(1_000),
        };
        let c = r
            .mint(SessionGrant {
                mfa: Some(mfa.clone()),
                ..grant(&Owner::Root, 1_000, 3600)
            })
            .unwrap();
        let (claims, _) = r
            .verify(&c.access_key_id, &c.session_token, t(1_100))
            .unwrap();
        assert_eq!(claims.mfa, Some(mfa));
    }

    #[test]
    fn another_process_with_the_same_keys_verifies() {
        let c = ring(4).mint(grant(&Owner::Root, 10, 900)).unwrap();
        let (_, secret) = ring(4)
            .verify(&c.access_key_id, &c.session_token, t(20))
            .unwrap();
        assert_eq!(secret.as_str(), c.secret_access_key.as_str());
    }

    #[test]
    fn derived_secrets_are_stable_across_releases() {
        // Values from Python: base64(HMAC-SHA256(derivation key, akid || 0 || exp))[..40].
        // Sessions outlive a broker upgrade only while these stay the same.
        let r = ring(1);
        let key = r.keys.get("k1").unwrap();
        assert_eq!(
            KeyRing::derive_secret(key, "ASIAEXAMPLEEXAMPLE12", t(1_900)).as_str(),
            "oC4s/Z2Ao7VQNAXK/+/YEtGzI7kpoGuhPWhTj5SE"
        );
        let r = ring(4);
        let key = r.keys.get("k4").unwrap();
        assert_eq!(
            KeyRing::derive_secret(key, "ASIAZZZZZZZZZZZZZZZZ", t(1_767_225_600)).as_str(),
            "GmiXeC/wJhDIps/AoGuNWrAIqaXeekCLFTwa44ik"
        );
    }

    #[test]
    fn an_empty_ring_mints_nothing_and_refuses_every_token() {
        let empty = KeyRing::empty();
        assert_eq!(
            empty.mint(grant(&Owner::Root, 10, 900)).unwrap_err(),
            SessionError::Mint
        );
        let c = ring(1).mint(grant(&Owner::Root, 10, 900)).unwrap();
        assert_eq!(
            empty
                .verify(&c.access_key_id, &c.session_token, t(20))
                .unwrap_err(),
            SessionError::Invalid
        );
    }
}
