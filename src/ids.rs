//! Random identifiers and secrets shaped like AWS's: account ids, `AIDA…` user ids, `AKIA…` /
//! `ASIA…` access key ids, 40-character secrets and request ids. All randomness comes from
//! aws-lc's DRBG (already in the tree for TLS and sealing).

use base64::Engine as _;
use zeroize::Zeroizing;

/// The host's random source failed; nothing random can be made.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Upper-case RFC 4648 base32 alphabet: the characters of AWS key and user ids.
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `N` random bytes.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// `len` characters of [`ID_ALPHABET`].
fn random_id_chars(len: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| RandomError)?;
    Ok(id_chars(&buf))
}

/// One character of [`ID_ALPHABET`] per byte of `random`; 256 is a multiple of 32, so `b % 32`
/// is uniform.
fn id_chars(random: &[u8]) -> String {
    random
        .iter()
        // `b % 32` is always a valid index of the 32-byte alphabet.
        .map(|b| {
            char::from(
                ID_ALPHABET
                    .get(usize::from(b % 32))
                    .copied()
                    .unwrap_or(b'A'),
            )
        })
        .collect()
}

/// A long-term (`AKIA`) or session (`ASIA`) access key id: the prefix and 16 characters.
pub(crate) fn access_key_id(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}{}", random_id_chars(16)?))
}

/// [`access_key_id`] from 16 random bytes the caller drew (with others it needed, in one call
/// to the DRBG).
pub(crate) fn access_key_id_from(prefix: &str, random: &[u8; 16]) -> String {
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    id.push_str(&id_chars(random));
    id
}

/// An IAM user id: `AIDA` and 17 characters, 21 in all as AWS's
/// (`docs/sts-wire-contract.md#getcalleridentity`).
pub(crate) fn user_id() -> Result<String, RandomError> {
    Ok(format!("AIDA{}", random_id_chars(17)?))
}

/// A 40-character secret access key from 30 random bytes (base64, no padding needed).
pub(crate) fn secret_access_key() -> Result<Zeroizing<String>, RandomError> {
    let bytes = Zeroizing::new(random_bytes::<30>()?);
    Ok(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(bytes.as_slice()),
    ))
}

/// A 12-digit account id without a leading zero (scripts read it as a number).
pub(crate) fn account_id() -> Result<String, RandomError> {
    let mut digits = String::with_capacity(12);
    while digits.len() < 12 {
        for b in random_bytes::<16>()? {
            // Rejection sampling keeps the digits uniform: 250 is a multiple of 10.
            if b >= 250 || (digits.is_empty() && b % 10 == 0) {
                continue;
            }
            if digits.len() < 12 {
                digits.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(digits)
}

/// Request ids draw on a per-thread pool of DRBG output, refilled [`ID_POOL_BYTES`] at a time:
/// one DRBG call (its lock, reseed check and AES key schedule) per 32 ids rather than per id,
/// on every answer. The bytes are as random as the DRBG's; they only need to be unique.
const ID_POOL_BYTES: usize = 512;

/// 16 bytes from this thread's pool, or `None` when the random source failed.
fn request_id_bytes() -> Option<[u8; 16]> {
    thread_local! {
        static POOL: std::cell::RefCell<(usize, [u8; ID_POOL_BYTES])> =
            const { std::cell::RefCell::new((ID_POOL_BYTES, [0; ID_POOL_BYTES])) };
    }
    POOL.with_borrow_mut(|(used, pool)| {
        if *used + 16 > ID_POOL_BYTES {
            // On failure `used` stays at the end: no byte is ever handed out twice.
            aws_lc_rs::rand::fill(pool).ok()?;
            *used = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(pool.get(*used..*used + 16)?);
        *used += 16;
        Some(out)
    })
}

/// A UUID v4 request id. Falls back to a counter-based id if the random source fails, since a
/// request id needs to be unique, not secret.
pub(crate) fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut b = request_id_bytes().unwrap_or_else(|| {
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_be_bytes());
        b
    });
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    // 8-4-4-4-12 hex digits, written straight into one buffer (this is on every answer).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        for nibble in [byte >> 4, byte & 0x0f] {
            if let (Some(slot), Some(digit)) = (id.get_mut(at), HEX.get(usize::from(nibble))) {
                *slot = *digit;
            }
            at += 1;
        }
    }
    // Hex digits and dashes are ASCII.
    String::from_utf8_lossy(&id).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_aws() {
        let akid = access_key_id("AKIA").unwrap();
        let drawn = access_key_id_from(
            "ASIA",
            &[0, 31, 32, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        );
        assert_eq!(drawn, "ASIAA7A7BCDEFGHIJKLM");
        assert_eq!(akid.len(), 20);
        assert!(akid.starts_with("AKIA"));
        assert!(akid.bytes().all(|b| ID_ALPHABET.contains(&b)));
        let uid = user_id().unwrap();
        assert_eq!(uid.len(), 21);
        assert!(uid.starts_with("AIDA"));
        let secret = secret_access_key().unwrap();
        assert_eq!(secret.len(), 40);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        );
        let acct = account_id().unwrap();
        assert_eq!(acct.len(), 12);
        assert!(acct.bytes().all(|b| b.is_ascii_digit()));
        assert!(!acct.starts_with('0'));
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        for (i, c) in a.bytes().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(c, b'-', "{a}");
            } else {
                assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{a}");
            }
        }
        // Past one pool refill, every id is still new.
        let many: std::collections::HashSet<String> = (0..100).map(|_| request_id()).collect();
        assert_eq!(many.len(), 100);
    }
}
