//! Session credentials any broker process can verify without shared state: the access key id is
//! `ASIA` + 16 random characters, the secret is derived as HMAC(derivation key, akid ‖ expiry)
//! and never stored nor put in the token, and the session token is opaque: the claims (who,
//! which parent key, until when, the MFA context) sealed with AES-256-GCM under a key derived
//! from the server key, whose id travels in clear. Verification opens the token and re-derives
//! the secret; both depend on nothing but the token and the ring's keys, so the ring keeps what
//! it opened for the next request that presents the very same token (compared in constant
//! time), and checks the expiry, `nbf` and the access key id on every request.
//!
//! The token is a bearer value that travels in headers, logs of proxies and presigned URLs, so
//! it must show its holder no more than GetCallerIdentity would: not the parent access key, not
//! the MFA device (`docs/sts-wire-contract.md#getsessiontoken-result`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine as _;
use dashmap::DashMap;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids;
use crate::model::Owner;
use crate::store::ServerKey;
use crate::time::UnixTime;

/// Allowed clock difference between broker processes for `nbf`.
const NBF_LEEWAY_SECS: i64 = 5;
/// The first byte of a token: the layout and the key derivation below. A token of any other
/// version (the JWTs of earlier releases included) does not verify.
const TOKEN_VERSION: u8 = 2;
/// HKDF salt and info that turn a server key's token key into the AES-256-GCM key of this
/// version's tokens, and of nothing else.
const TOKEN_KEY_SALT: &[u8] = b"sts-broker session token";
const TOKEN_KEY_INFO: &[u8] = b"v2 AES-256-GCM claims";
/// The sealed claims are padded to a multiple of this many bytes, so that a token's length
/// does not tell whether it carries an MFA context, nor how long a serial is. The largest
/// claims (a 256-character serial) fit in one block.
const CLAIMS_BLOCK: usize = 512;
/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// Most opened tokens kept (about 1.6 KB each: the token, its claims and the secret); past it
/// the ring starts again empty.
const OPENED_CAPACITY: usize = 4_096;

/// The MFA context of credentials obtained with a verified code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MfaContext {
    /// The device's serial number.
    pub serial: String,
    /// When the code was verified (`aws:MultiFactorAuthAge` = now − this).
    pub auth_time: UnixTime,
}

/// What a session token says, once opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionClaims {
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
    /// The opaque token: base64 of the sealed claims.
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
    /// Minting failed (random source or cipher).
    #[error("cannot mint session credentials")]
    Mint,
}

struct RingKey {
    /// Seals and opens the claims of this key's tokens.
    sealing: LessSafeKey,
    derivation: Hmac<Sha256>,
}

impl RingKey {
    fn new(key: &ServerKey) -> Result<Self, SessionError> {
        let prk = Salt::new(HKDF_SHA256, TOKEN_KEY_SALT).extract(key.signing.as_slice());
        let sealing = prk
            .expand(&[TOKEN_KEY_INFO], &AES_256_GCM)
            .map(UnboundKey::from)
            .map_err(|_| SessionError::Mint)?;
        let derivation = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.derivation.as_slice())
            .map_err(|_| SessionError::Mint)?;
        Ok(Self {
            sealing: LessSafeKey::new(sealing),
            derivation,
        })
    }
}

/// A session token this ring opened, with its claims and re-derived secret: what verifying it
/// again would give, since the ring's keys never change.
pub(crate) struct OpenedSession {
    /// The token, as presented.
    token: Box<str>,
    /// What it says.
    pub(crate) claims: SessionClaims,
    /// The session's secret access key.
    pub(crate) secret: Zeroizing<String>,
}

/// Neither the token (a bearer value) nor the secret.
impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("akid", &self.claims.akid)
            .field("exp", &self.claims.exp)
            .finish_non_exhaustive()
    }
}

/// The server keys that seal session tokens and derive their secrets.
pub(crate) struct KeyRing {
    /// The key that seals; `None` for a ring that only refuses (no server keys).
    current: Option<String>,
    keys: HashMap<String, RingKey>,
    /// The last token opened per session access key id.
    opened: DashMap<Box<str>, Arc<OpenedSession>>,
    /// Entries inserted since `opened` was last cleared (an upper bound on its length).
    inserted: AtomicUsize,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `version ‖ kid length ‖ kid`: the clear part of a token, and the associated data its claims
/// are sealed with, so that neither can be changed without the token failing to open.
fn token_header(kid: &str) -> Result<Vec<u8>, SessionError> {
    let len = u8::try_from(kid.len()).map_err(|_| SessionError::Mint)?;
    let mut header = Vec::with_capacity(2 + kid.len());
    header.push(TOKEN_VERSION);
    header.push(len);
    header.extend_from_slice(kid.as_bytes());
    Ok(header)
}

impl KeyRing {
    /// A ring of `keys`; the newest seals, all open.
    pub(crate) fn new(keys: &[ServerKey]) -> Result<Self, SessionError> {
        let newest = keys
            .iter()
            .max_by_key(|k| k.created_at)
            .ok_or(SessionError::Mint)?;
        let mut ring = HashMap::new();
        for k in keys {
            // Refused here rather than at the first mint: the kid must fit the token header.
            token_header(&k.kid)?;
            ring.insert(k.kid.clone(), RingKey::new(k)?);
        }
        Ok(Self {
            current: Some(newest.kid.clone()),
            keys: ring,
            opened: DashMap::new(),
            inserted: AtomicUsize::new(0),
        })
    }

    /// A ring without keys: it mints nothing and refuses every session token, for a verifier
    /// of long-term credentials only.
    pub(crate) fn empty() -> Self {
        Self {
            current: None,
            keys: HashMap::new(),
            opened: DashMap::new(),
            inserted: AtomicUsize::new(0),
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

    /// `header ‖ nonce ‖ AES-256-GCM(claims, padded) ‖ tag`, base64 (the alphabet of AWS's own
    /// session tokens, `docs/sts-wire-contract.md#getsessiontoken-result`).
    fn seal(
        kid: &str,
        key: &RingKey,
        claims: &SessionClaims,
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, SessionError> {
        let header = token_header(kid)?;
        let mut body = Zeroizing::new(serde_json::to_vec(claims).map_err(|_| SessionError::Mint)?);
        // JSON ends at its closing brace; the spaces after it are whitespace to the parser.
        let padded = body.len().div_ceil(CLAIMS_BLOCK).max(1) * CLAIMS_BLOCK;
        body.resize(padded, b' ');
        key.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header.as_slice()),
                &mut *body,
            )
            .map_err(|_| SessionError::Mint)?;
        let mut token = header;
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&body);
        Ok(base64::engine::general_purpose::STANDARD.encode(token))
    }

    /// The key and claims of `token`, if one of this ring's keys sealed it.
    fn open(&self, token: &str) -> Result<(&RingKey, SessionClaims), SessionError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| SessionError::Invalid)?;
        let (&version, rest) = raw.split_first().ok_or(SessionError::Invalid)?;
        let (&kid_len, rest) = rest.split_first().ok_or(SessionError::Invalid)?;
        if version != TOKEN_VERSION {
            return Err(SessionError::Invalid);
        }
        let (kid, rest) = rest
            .split_at_checked(usize::from(kid_len))
            .ok_or(SessionError::Invalid)?;
        let key = std::str::from_utf8(kid)
            .ok()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(SessionError::Invalid)?;
        let (nonce, sealed) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or(SessionError::Invalid)?;
        if sealed.len() < TAG_LEN + CLAIMS_BLOCK {
            return Err(SessionError::Invalid);
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SessionError::Invalid)?;
        let header = raw.get(..2 + kid.len()).ok_or(SessionError::Invalid)?;
        let mut body = Zeroizing::new(sealed.to_vec());
        let claims = key
            .sealing
            .open_in_place(nonce, Aad::from(header), &mut body)
            .map_err(|_| SessionError::Invalid)?;
        let claims = serde_json::from_slice(claims).map_err(|_| SessionError::Invalid)?;
        Ok((key, claims))
    }

    /// Mints credentials for `grant`.
    pub(crate) fn mint(&self, grant: SessionGrant<'_>) -> Result<SessionCredentials, SessionError> {
        let kid = self.current.as_ref().ok_or(SessionError::Mint)?;
        let key = self.keys.get(kid).ok_or(SessionError::Mint)?;
        // The key id's 16 random bytes and the token's nonce, from one call to the DRBG (each
        // call costs an AES key schedule and a state update, more than the bytes themselves).
        let random = ids::random_bytes::<{ 16 + NONCE_LEN }>().map_err(|_| SessionError::Mint)?;
        let (id_bytes, nonce_bytes) = random.split_at(16);
        let id_bytes: &[u8; 16] = id_bytes.try_into().map_err(|_| SessionError::Mint)?;
        let nonce: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| SessionError::Mint)?;
        let akid = ids::access_key_id_from("ASIA", id_bytes);
        let exp = grant.now.plus_secs(grant.duration_secs);
        let claims = SessionClaims {
            sub: grant.owner.as_db().to_owned(),
            acct: grant.account_id.to_owned(),
            akid: akid.clone(),
            pk: grant.parent_key.to_owned(),
            iat: grant.now,
            nbf: grant.now,
            exp,
            mfa: grant.mfa,
        };
        // A random nonce per token: a server key seals far fewer than the 2^32 tokens after
        // which random 96-bit nonces would risk repeating.
        let token = Self::seal(kid, key, &claims, nonce)?;
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
    ) -> Result<Arc<OpenedSession>, SessionError> {
        let opened = self.opened_token(access_key_id, token)?;
        let claims = &opened.claims;
        if claims.akid != access_key_id || claims.nbf > now.plus_secs(NBF_LEEWAY_SECS) {
            return Err(SessionError::Invalid);
        }
        if now >= claims.exp {
            return Err(SessionError::Expired);
        }
        Ok(opened)
    }

    /// `token` opened, and its secret derived: kept from the last time `access_key_id` came
    /// with this very token, else done now and kept.
    fn opened_token(
        &self,
        access_key_id: &str,
        token: &str,
    ) -> Result<Arc<OpenedSession>, SessionError> {
        let kept = self
            .opened
            .get(access_key_id)
            .map(|entry| Arc::clone(entry.value()));
        if let Some(kept) = kept
            && crate::ct::same_bytes(kept.token.as_bytes(), token.as_bytes())
        {
            return Ok(kept);
        }
        let (key, claims) = self.open(token)?;
        let secret = Self::derive_secret(key, &claims.akid, claims.exp);
        let opened = Arc::new(OpenedSession {
            token: token.into(),
            claims,
            secret,
        });
        // Kept only where it will be looked for: a token presented with another key id is
        // refused by the caller and leaves the kept one of its own key id in place.
        if opened.claims.akid == access_key_id {
            if self.inserted.fetch_add(1, Ordering::Relaxed) >= OPENED_CAPACITY {
                self.opened.clear();
                self.inserted.store(1, Ordering::Relaxed);
            }
            self.opened
                .insert(access_key_id.into(), Arc::clone(&opened));
        }
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `token` with its middle byte changed (to another base64 character).
    fn one_byte_changed(token: &str) -> String {
        let mut bytes = token.as_bytes().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn server_key(kid: &str, seed: u8, created_at: i64) -> ServerKey {
        ServerKey {
            kid: kid.to_owned(),
            signing: Zeroizing::new([seed; 32]),
            derivation: Zeroizing::new([seed.wrapping_add(1); 32]),
            created_at: t(created_at),
        }
    }

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(&[server_key(&format!("k{seed}"), seed, 1)]).unwrap()
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
            .map(|o| (o.claims.clone(), o.secret.clone()))
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
        let tampered = one_byte_changed(&c.session_token);
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
            .map(|o| (o.claims.clone(), o.secret.clone()))
            .unwrap();
        assert_eq!(claims.mfa, Some(mfa));
    }

    #[test]
    fn another_process_with_the_same_keys_verifies() {
        let c = ring(4).mint(grant(&Owner::Root, 10, 900)).unwrap();
        let (_, secret) = ring(4)
            .verify(&c.access_key_id, &c.session_token, t(20))
            .map(|o| (o.claims.clone(), o.secret.clone()))
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

    /// The token shows its holder nothing: not the parent key, the account, the principal, the
    /// serial, nor (through its length) whether there is an MFA context at all.
    #[test]
    fn tokens_are_opaque_and_of_one_length() {
        let r = ring(5);
        let user = Owner::User("AIDAEXAMPLEUSER12345".into());
        let serial = "arn:aws:iam::123456789012:mfa/alice-phone".to_owned();
        let with = r
            .mint(SessionGrant {
                mfa: Some(MfaContext {
                    serial: serial.clone(),
                    auth_time: t(1_000),
                }),
                ..grant(&user, 1_000, 900)
            })
            .unwrap();
        let without = r.mint(grant(&user, 1_000, 900)).unwrap();
        let long = r
            .mint(SessionGrant {
                mfa: Some(MfaContext {
                    serial: "s".repeat(256),
                    auth_time: t(1_000),
                }),
                ..grant(&user, 1_000, 900)
            })
            .unwrap();
        assert_eq!(with.session_token.len(), without.session_token.len());
        assert_eq!(with.session_token.len(), long.session_token.len());
        for c in [&with, &without, &long] {
            let token = &c.session_token;
            assert!(token.len() >= 100);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
                "{token}"
            );
            let raw = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap();
            for needle in [
                "AKIAPARENT",
                "123456789012",
                "AIDAEXAMPLEUSER12345",
                serial.as_str(),
                "alice",
                c.access_key_id.as_str(),
            ] {
                let found = raw.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "{needle} readable in the token");
                assert!(!token.contains(needle), "{needle} in the token text");
            }
            // Only the version and the key id are in clear.
            assert_eq!(raw[0], TOKEN_VERSION);
            assert_eq!(&raw[2..2 + usize::from(raw[1])], b"k5");
        }
        // Two tokens for the same grant differ (a fresh nonce each).
        let again = r.mint(grant(&user, 1_000, 900)).unwrap();
        assert_ne!(again.session_token, without.session_token);
    }

    /// The clear header is bound to the sealed claims: another version byte, another key id, a
    /// cut or a lengthened token, an old JWT: all invalid.
    #[test]
    fn the_header_and_the_body_cannot_be_changed() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut two = KeyRing::new(&[server_key("k1", 1, 1), server_key("k2", 2, 2)]).unwrap();
        two.current = Some("k1".into());
        let c = two.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
        assert!(
            two.verify(&c.access_key_id, &c.session_token, t(1_100))
                .is_ok()
        );
        let raw = b64.decode(&c.session_token).unwrap();
        let forged = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = raw.clone();
            f(&mut bytes);
            two.verify(&c.access_key_id, &b64.encode(&bytes), t(1_100))
                .unwrap_err()
        };
        assert_eq!(forged(&|b| b[0] = 1), SessionError::Invalid);
        assert_eq!(forged(&|b| b[0] = 3), SessionError::Invalid);
        // The same claims offered as sealed by the other key of the ring.
        assert_eq!(forged(&|b| b[3] = b'2'), SessionError::Invalid);
        assert_eq!(forged(&|b| b[1] = 1), SessionError::Invalid);
        assert_eq!(forged(&|b| b[1] = 255), SessionError::Invalid);
        assert_eq!(forged(&|b| b.truncate(b.len() - 1)), SessionError::Invalid);
        assert_eq!(forged(&|b| b.truncate(20)), SessionError::Invalid);
        assert_eq!(forged(&|b| b.push(0)), SessionError::Invalid);
        assert_eq!(forged(&|b| b.clear()), SessionError::Invalid);
        let last = raw.len() - 1;
        assert_eq!(forged(&|b| b[last] ^= 1), SessionError::Invalid);
        // A JWT of an earlier release, and garbage of every shape.
        for token in [
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJyb290In0.c2lnbmF0dXJl",
            "",
            "AgJrMQ==",
            "not base64!",
        ] {
            assert_eq!(
                two.verify(&c.access_key_id, token, t(1_100)).unwrap_err(),
                SessionError::Invalid,
                "{token}"
            );
        }
    }

    /// A token sealed by an earlier build with the same server key still opens: the layout and
    /// the key derivation are part of the contract between broker processes and releases.
    #[test]
    fn a_pinned_token_still_opens() {
        let r = ring(1);
        let claims = SessionClaims {
            sub: "root".into(),
            acct: "123456789012".into(),
            akid: "ASIAEXAMPLEEXAMPLE12".into(),
            pk: "AKIAPARENT".into(),
            iat: t(1_000),
            nbf: t(1_000),
            exp: t(1_900),
            mfa: Some(MfaContext {
                serial: "arn:aws:iam::123456789012:mfa/root".into(),
                auth_time: t(1_000),
            }),
        };
        let token =
            KeyRing::seal("k1", r.keys.get("k1").unwrap(), &claims, [7; NONCE_LEN]).unwrap();
        assert_eq!(token, PINNED_TOKEN);
        let (opened, secret) = r
            .verify("ASIAEXAMPLEEXAMPLE12", PINNED_TOKEN, t(1_100))
            .map(|o| (o.claims.clone(), o.secret.clone()))
            .unwrap();
        assert_eq!(opened, claims);
        assert_eq!(secret.as_str(), "oC4s/Z2Ao7VQNAXK/+/YEtGzI7kpoGuhPWhTj5SE");
    }

    /// Opened independently with Python's `cryptography` (HKDF-SHA256 as RFC 5869 defines it
    /// with the salt and info above, then `AESGCM` with the header as associated data); its
    /// plaintext is the claims above as JSON, padded with spaces to 512 bytes.
    const PINNED_TOKEN: &str = "AgJrMQcHBwcHBwcHBwcHB55dIUk9ipjbfD8YAildd0Z/4CFYT/1ISEOC+PV7KCG4S28kQbHHH2UsKfJfsREYqfG2hMsH02KrZUxPICBRyT9hr/lWVIYn/b003HVH+bzNfS2Ywqwy+AN3KYB/DoYV3hjE3XwEzaxB+sJOuRh+nnbv9JKYyEYRytT9KsyyZHZFmMDFhtuwdKxGCA1hHrwfI/VyZHHLdTcq09EDUJL4tA8p40HHCyuBlt0EZbxeUnJ0tu+nR3a5x4FkuEdhfCa1GA3vh4iwb0CMVErQT7fDyjIGvyf2HCcgWk55eBBEh/4J8+AiOmYjTtfH4YR8vCBDMbVMBTBdUGeq/G7UlBrJCAWVHaekBV8oEP/hDqRb6TZnQRn5rxnxepcSH0Y2ck8xcYJFWUx2cOklPzoQgIeV8JOagCa2Xt3IdlklBId8BuVNtsJFooiOSZUhcQlMA1GAHgn5GgcBJG6r70W5JrbmvW1pJSTz/S7BhJVYNl44WAx9xCkx18diEcb7PSo/zk2BHEUvSg+Yemhzki8ctTdhiDMWoSnEyZg5fUayUhvBh+/GhkJBfS9aTJXMponuSlBVf+Djs+iBDFzHQiJG2DKKaIT5uJsjW/DwexRWBqfB7RGuZt0o+I7M9A1fXEnZpjT3IlF+/erCnzVIBY5oceTwzcvOxUgse4vIIU+ggn9risjLo060fMkcQMdhEwjA3N255A==";

    /// A token opened once is not opened again, but every check that depends on the request
    /// (the key id it came with, the time) still runs, and any other token is opened afresh.
    #[test]
    fn a_kept_token_is_checked_again_on_every_request() {
        let r = ring(6);
        let c = r.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
        let first = r
            .verify(&c.access_key_id, &c.session_token, t(1_100))
            .unwrap();
        let again = r
            .verify(&c.access_key_id, &c.session_token, t(1_200))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.secret.as_str(), c.secret_access_key.as_str());
        assert_eq!(r.opened.len(), 1);
        assert_eq!(
            r.verify(&c.access_key_id, &c.session_token, t(1_900))
                .unwrap_err(),
            SessionError::Expired
        );
        assert_eq!(
            r.verify(&c.access_key_id, &c.session_token, t(990))
                .unwrap_err(),
            SessionError::Invalid
        );
        assert_eq!(
            r.verify("ASIAOTHER", &c.session_token, t(1_100))
                .unwrap_err(),
            SessionError::Invalid
        );
        // One byte changed, one added, one cut: opened, and refused.
        let tampered = one_byte_changed(&c.session_token);
        let longer = format!("{}A", c.session_token);
        let shorter = &c.session_token[..c.session_token.len() - 1];
        for token in [tampered.as_str(), longer.as_str(), shorter] {
            assert_eq!(
                r.verify(&c.access_key_id, token, t(1_100)).unwrap_err(),
                SessionError::Invalid
            );
        }
        // A second session of the same ring is opened and kept beside the first.
        let d = r.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
        let other = r
            .verify(&d.access_key_id, &d.session_token, t(1_100))
            .unwrap();
        assert_eq!(other.secret.as_str(), d.secret_access_key.as_str());
        assert!(Arc::ptr_eq(
            &first,
            &r.verify(&c.access_key_id, &c.session_token, t(1_100))
                .unwrap()
        ));
    }

    #[test]
    fn kept_tokens_stay_bounded() {
        let r = ring(7);
        for _ in 0..OPENED_CAPACITY + 10 {
            let c = r.mint(grant(&Owner::Root, 1_000, 900)).unwrap();
            r.verify(&c.access_key_id, &c.session_token, t(1_100))
                .unwrap();
        }
        assert!(r.opened.len() <= OPENED_CAPACITY);
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
