//! The derived SigV4 signing keys of recent callers, so that a request does not redo the
//! four-HMAC derivation its key, day, region and service already had (the AWS SDKs cache it the
//! same way: it changes once a day per key).
//!
//! An entry is found by access key id and used only when its tag matches: the tag is an HMAC,
//! under a random key of this process, of the secret, the date, the region and the service. A
//! secret that changed, another scope or another day never meet a cached key; the cache holds
//! neither secrets nor anything from which one could be recovered beyond what the signing key
//! itself gives (one day, one region, one service). The tags are compared in constant time.
//!
//! The cache never decides whether a key may sign: the verifier checks that the key exists and
//! is active (or that the session token is valid) before it asks for the signing key, and the
//! signature is compared as before. Bounded: past [`CAPACITY`] entries it starts again empty.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::sigv4::{self, SigningKey};

/// Most entries held (about 120 bytes each with the map's overhead).
const CAPACITY: usize = 32_768;

/// One cached signing key and what it was derived from, as a tag.
struct Entry {
    tag: [u8; 32],
    key: SigningKey,
}

/// Signing keys by access key id.
pub(crate) struct SigningKeyCache {
    /// HMAC-SHA256 keyed with this process's random tag key, ready to be cloned.
    tagger: Hmac<Sha256>,
    entries: DashMap<Box<str>, Entry>,
    /// Entries inserted since the map was last cleared (an upper bound on its length).
    inserted: AtomicUsize,
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyCache")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl SigningKeyCache {
    /// An empty cache with a fresh random tag key. When the random source fails, the tag key is
    /// all zeros: tags then still bind secret and scope (they are never shown to anyone), only
    /// without the secrecy of the tag key, which nothing relies on.
    pub(crate) fn new() -> Self {
        // A key of SHA-256's block size, which HMAC uses as it is (RFC 2104 §2).
        let tag_key = zeroize::Zeroizing::new(crate::ids::random_bytes::<64>().unwrap_or([0; 64]));
        let tagger = <Hmac<Sha256> as KeyInit>::new(&(*tag_key).into());
        Self {
            tagger,
            entries: DashMap::new(),
            inserted: AtomicUsize::new(0),
        }
    }

    fn tag(&self, secret: &[u8], date: &str, region: &str, service: &str) -> [u8; 32] {
        let mut mac = self.tagger.clone();
        // Lengths first, so that no two different tuples feed the same bytes.
        for part in [
            secret,
            date.as_bytes(),
            region.as_bytes(),
            service.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The signing key of `secret` for `date`, `region` and `service`, derived unless the last
    /// one derived for `access_key_id` was for the same secret and scope.
    pub(crate) fn signing_key(
        &self,
        access_key_id: &str,
        secret: &[u8],
        date: &str,
        region: &str,
        service: &str,
    ) -> SigningKey {
        let tag = self.tag(secret, date, region, service);
        if let Some(entry) = self.entries.get(access_key_id)
            && bool::from(entry.tag.ct_eq(&tag))
        {
            return entry.key.clone();
        }
        let key = sigv4::derive_signing_key(secret, date, region, service);
        if self.inserted.fetch_add(1, Ordering::Relaxed) >= CAPACITY {
            self.entries.clear();
            self.inserted.store(1, Ordering::Relaxed);
        }
        self.entries.insert(
            access_key_id.into(),
            Entry {
                tag,
                key: key.clone(),
            },
        );
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &SigningKey, b: &SigningKey) -> bool {
        a.expose() == b.expose()
    }

    #[test]
    fn a_cached_key_is_the_derived_key_of_the_same_secret_and_scope() {
        let cache = SigningKeyCache::new();
        let fresh = |s: &[u8], d, r, v| sigv4::derive_signing_key(s, d, r, v);
        let first = cache.signing_key("AKIA1", b"secret", "20260101", "us-east-1", "sts");
        assert!(same(
            &first,
            &fresh(b"secret", "20260101", "us-east-1", "sts")
        ));
        let again = cache.signing_key("AKIA1", b"secret", "20260101", "us-east-1", "sts");
        assert!(same(&again, &first));
        // Any change of secret, day, region or service derives again.
        for (secret, date, region, service) in [
            (&b"other"[..], "20260101", "us-east-1", "sts"),
            (b"secret", "20260102", "us-east-1", "sts"),
            (b"secret", "20260101", "", "sts"),
            (b"secret", "20260101", "us-east-1", "iam"),
        ] {
            let got = cache.signing_key("AKIA1", secret, date, region, service);
            assert!(same(&got, &fresh(secret, date, region, service)));
        }
        // Parts cannot be shifted from one field into the next.
        assert_ne!(
            cache.tag(b"secret", "2026", "0101us-east-1", "sts"),
            cache.tag(b"secret", "20260101", "us-east-1", "sts")
        );
    }

    #[test]
    fn it_stays_bounded() {
        let cache = SigningKeyCache::new();
        for i in 0..CAPACITY + 10 {
            cache.signing_key(&format!("AKIA{i}"), b"s", "20260101", "us-east-1", "sts");
        }
        assert!(cache.entries.len() <= CAPACITY);
        assert!(format!("{cache:?}").starts_with("SigningKeyCache"));
    }
}
