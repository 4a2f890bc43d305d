//! The derived SigV4 signing keys of recent callers, so that a request does not redo the
//! four-HMAC derivation its key, day, region and service already had (the AWS SDKs cache it the
//! same way: it changes once a day per key).
//!
//! An entry is found by access key id and used only when it was derived from the very same
//! credential object the verifier holds now (the index's `AccessKey`, or the session the key
//! ring opened) and for the same date, region and service. Those objects are immutable behind
//! their `Arc`: a key whose secret, state or owner changes is a new object. The entry keeps a
//! `Weak` reference to its object, which keeps its address from being reused while the entry
//! lives but not the object itself (a deleted key's secret is dropped, and zeroed, as before);
//! so an equal address is the same object, hence the same secret. Comparing addresses and the
//! scope's public strings costs no hashing (an HMAC tag of the secret and scope, 3 SHA-256
//! blocks, did before) and the cache holds no secret of its own.
//!
//! The cache never decides whether a key may sign: the verifier checks that the key exists and
//! is active (or that the session token is valid) before it asks for the signing key, and the
//! signature is compared as before. Bounded: past [`CAPACITY`] entries it starts again empty.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use dashmap::DashMap;

use crate::sigv4::{self, SigningKey};

/// Most entries held (about 150 bytes each with the map's overhead).
const CAPACITY: usize = 32_768;

/// One cached signing key and what it was derived from.
struct Entry {
    /// The credential object whose secret it was derived from.
    origin: Weak<dyn Any + Send + Sync>,
    date: Box<str>,
    region: Box<str>,
    service: Box<str>,
    key: SigningKey,
}

/// Signing keys by access key id.
pub(crate) struct SigningKeyCache {
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
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self {
            entries: DashMap::new(),
            inserted: AtomicUsize::new(0),
        }
    }

    /// The signing key of `secret`, which belongs to `origin`, for `date`, `region` and
    /// `service`: derived unless the last one derived for `access_key_id` was from `origin`
    /// itself and for the same scope.
    pub(crate) fn signing_key<T: Any + Send + Sync>(
        &self,
        access_key_id: &str,
        origin: &Arc<T>,
        secret: &[u8],
        date: &str,
        region: &str,
        service: &str,
    ) -> SigningKey {
        if let Some(entry) = self.entries.get(access_key_id)
            && std::ptr::addr_eq(entry.origin.as_ptr(), Arc::as_ptr(origin))
            && *entry.date == *date
            && *entry.region == *region
            && *entry.service == *service
        {
            return entry.key.clone();
        }
        let key = sigv4::derive_signing_key(secret, date, region, service);
        if self.inserted.fetch_add(1, Ordering::Relaxed) >= CAPACITY {
            self.entries.clear();
            self.inserted.store(1, Ordering::Relaxed);
        }
        let origin: Weak<T> = Arc::downgrade(origin);
        let origin: Weak<dyn Any + Send + Sync> = origin;
        self.entries.insert(
            access_key_id.into(),
            Entry {
                origin,
                date: date.into(),
                region: region.into(),
                service: service.into(),
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

    fn fresh(secret: &[u8], date: &str, region: &str, service: &str) -> SigningKey {
        sigv4::derive_signing_key(secret, date, region, service)
    }

    #[test]
    fn a_cached_key_is_the_derived_key_of_the_same_object_and_scope() {
        let cache = SigningKeyCache::new();
        let key = Arc::new(String::from("secret"));
        let get = |origin: &Arc<String>, d, r, v| {
            cache.signing_key("AKIA1", origin, origin.as_bytes(), d, r, v)
        };
        let first = get(&key, "20260101", "us-east-1", "sts");
        assert!(same(
            &first,
            &fresh(b"secret", "20260101", "us-east-1", "sts")
        ));
        assert!(same(&get(&key, "20260101", "us-east-1", "sts"), &first));
        // Any change of day, region or service derives again.
        for (date, region, service) in [
            ("20260102", "us-east-1", "sts"),
            ("20260101", "", "sts"),
            ("20260101", "us-east-1", "iam"),
        ] {
            let got = get(&key, date, region, service);
            assert!(same(&got, &fresh(b"secret", date, region, service)));
        }
        // Another object derives again, whatever its secret: a changed key is a new object.
        let first = get(&key, "20260101", "us-east-1", "sts");
        let other = Arc::new(String::from("other"));
        let got = get(&other, "20260101", "us-east-1", "sts");
        assert!(same(&got, &fresh(b"other", "20260101", "us-east-1", "sts")));
        assert!(!same(&got, &first));
    }

    /// The entry does not keep its object alive, and while it lives no other object can take
    /// that object's address.
    #[test]
    fn a_dropped_object_is_never_mistaken_for_a_new_one() {
        let cache = SigningKeyCache::new();
        for i in 0..1_000 {
            let secret = Arc::new(format!("secret-{i}"));
            let got = cache.signing_key(
                "AKIA1",
                &secret,
                secret.as_bytes(),
                "20260101",
                "us-east-1",
                "sts",
            );
            let want = fresh(secret.as_bytes(), "20260101", "us-east-1", "sts");
            assert!(same(&got, &want), "{i}");
            assert_eq!(Arc::strong_count(&secret), 1);
        }
    }

    #[test]
    fn it_stays_bounded() {
        let cache = SigningKeyCache::new();
        let key = Arc::new(String::from("s"));
        for i in 0..CAPACITY + 10 {
            cache.signing_key(
                &format!("AKIA{i}"),
                &key,
                b"s",
                "20260101",
                "us-east-1",
                "sts",
            );
        }
        assert!(cache.entries.len() <= CAPACITY);
        assert!(format!("{cache:?}").starts_with("SigningKeyCache"));
    }
}
