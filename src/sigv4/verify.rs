//! Key derivation and the signature check itself.
//!
//! The comparison is constant-time (`crate::ct`). The payload hash is the one of the body received
//! or, for a caller that streams the body, the SHA-256 it was given and checks the body against
//! itself; an `x-amz-content-sha256` header is accepted only when it states that same hash, so
//! `UNSIGNED-PAYLOAD` can never leave a body (an STS form's Action, TokenCode…)
//! unauthenticated.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{HttpRequest, Payload, SigV4Error, SignedRequest, TERMINATOR, canonical};

/// `kSigning` = HMAC chain of secret, date, region, service and `aws4_request`. Valid for one
/// access key, day, region and service, so callers may cache it on that tuple. Kept as the
/// HMAC keyed with it, its two padded key blocks already hashed: a cached key then signs with
/// two SHA-256 blocks fewer per request.
#[derive(Clone)]
pub(crate) struct SigningKey {
    mac: Hmac<Sha256>,
    #[cfg(test)]
    bytes: [u8; 32],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[cfg(test)]
impl SigningKey {
    /// The key's bytes, for tests that compare keys.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length (RFC 2104 §2), so `new_from_slice` never refuses one; were
    // it to, the all-zero tag would fail every signature comparison: fail closed, no panic.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// Derives `kSigning` for `date` (`YYYYMMDD`), `region` and `service`.
#[must_use]
pub(crate) fn derive_signing_key(
    secret_access_key: &[u8],
    date: &str,
    region: &str,
    service: &str,
) -> SigningKey {
    let mut secret = Vec::with_capacity(4 + secret_access_key.len());
    secret.extend_from_slice(b"AWS4");
    secret.extend_from_slice(secret_access_key);
    let k_date = hmac_sha256(&secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = zeroize::Zeroizing::new(hmac_sha256(&k_service, TERMINATOR.as_bytes()));
    // HMAC pads a key shorter than SHA-256's block with zeros (RFC 2104 §2): the same key as a
    // whole block, which `KeyInit::new` takes without a fallible length check.
    let mut block = zeroize::Zeroizing::new([0_u8; 64]);
    for (b, k) in block.iter_mut().zip(k_signing.iter()) {
        *b = *k;
    }
    SigningKey {
        mac: <Hmac<Sha256> as KeyInit>::new(&(*block).into()),
        #[cfg(test)]
        bytes: *k_signing,
    }
}

/// Rebuild canonical request + string to sign, compare in constant time (`crate::ct`). Also: every
/// name in SignedHeaders must be present; `host` must be signed; if `x-amz-content-sha256` is
/// present it must equal hex(sha256(body)) (reject UNSIGNED-PAYLOAD etc.).
///
/// # Errors
///
/// [`SigV4Error::HostNotSigned`], [`SigV4Error::PayloadHashMismatch`],
/// [`SigV4Error::SignedHeaderMissing`] or [`SigV4Error::SignatureMismatch`].
pub(crate) fn verify_signature(
    req: &HttpRequest<'_>,
    signed: &SignedRequest,
    key: &SigningKey,
) -> Result<(), SigV4Error> {
    if !signed
        .signed_headers
        .iter()
        .any(|h| h == "host" || h == ":authority")
    {
        return Err(SigV4Error::HostNotSigned);
    }
    let digest: [u8; 32] = match req.payload {
        Payload::Bytes(body) => Sha256::digest(body).into(),
        Payload::Sha256(digest) => digest,
    };
    let mut hex_digits = [0u8; 64];
    // 32 bytes always fit 64 hex digits, which are ASCII.
    let _ = hex::encode_to_slice(digest, &mut hex_digits);
    let payload_hash = std::str::from_utf8(&hex_digits).unwrap_or_default();
    if req
        .header_values("x-amz-content-sha256")
        .any(|v| v.trim_ascii() != payload_hash.as_bytes())
    {
        return Err(SigV4Error::PayloadHashMismatch);
    }
    let canonical_request = canonical::canonical_request(req, signed, payload_hash)?;
    let string_to_sign = canonical::string_to_sign(signed, &canonical_request);
    let mut mac = key.mac.clone();
    mac.update(&string_to_sign);
    let expected: [u8; 32] = mac.finalize().into_bytes().into();
    if crate::ct::same_bytes(&expected, &signed.signature) {
        Ok(())
    } else {
        Err(SigV4Error::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test case 2 (short key) and case 6 (131-byte key, hashed first).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn derives_the_documented_signing_key() {
        // AWS General Reference, "Examples of how to derive a signing key for Signature Version 4"
        // (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam).
        let key = derive_signing_key(
            b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key.expose()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    }
}
