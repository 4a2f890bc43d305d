//! The derived SigV4 signing keys of recent callers, so that a request does not redo the
//! four-HMAC derivation its key, day, region and service already had (the AWS SDKs cache it the
//! same way: it changes once a day per key).
//!
//! An entry is found by the address of the credential object it was derived from (the index's
//! `AccessKey`, or the session the key ring opened), and used only for the same date, region
//! and service. Those objects are immutable behind
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
    /// The scope's date, region and service, each followed by `/` (none of them holds one: the
    /// credential scope is split on it): one allocation to compare rather than three.
    scope: Box<str>,
    key: SigningKey,
}

/// Whether `stored` is `date/region/service/`.
fn is_scope(stored: &str, date: &str, region: &str, service: &str) -> bool {
    let mut rest = stored;
    for part in [date, region, service] {
        match rest.strip_prefix(part).and_then(|r| r.strip_prefix('/')) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Signing keys by the address of the credential object they were derived from. An entry's
/// `Weak` keeps that address from being reused while the entry lives, so the address alone
/// names the object; and finding an entry costs no key string to compare, which at a
/// thousand callers is a cache miss more per request.
pub(crate) struct SigningKeyCache {
    entries: DashMap<usize, Entry>,
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
    /// `service`: derived unless the last one derived from `origin` itself was for the same
    /// scope.
    pub(crate) fn signing_key<T: Any + Send + Sync>(
        &self,
        origin: &Arc<T>,
        secret: &[u8],
        date: &str,
        region: &str,
        service: &str,
    ) -> SigningKey {
        let address = Arc::as_ptr(origin).addr();
        if let Some(entry) = self.entries.get(&address)
            && std::ptr::addr_eq(entry.origin.as_ptr(), Arc::as_ptr(origin))
            && is_scope(&entry.scope, date, region, service)
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
            address,
            Entry {
                origin,
                scope: [date, "/", region, "/", service, "/"].concat().into(),
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
        let get =
            |origin: &Arc<String>, d, r, v| cache.signing_key(origin, origin.as_bytes(), d, r, v);
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
            let got = cache.signing_key(&secret, secret.as_bytes(), "20260101", "us-east-1", "sts");
            let want = fresh(secret.as_bytes(), "20260101", "us-east-1", "sts");
            assert!(same(&got, &want), "{i}");
            assert_eq!(Arc::strong_count(&secret), 1);
        }
    }

    #[test]
    fn a_scope_matches_only_itself() {
        assert!(is_scope(
            "20260101/us-east-1/sts/",
            "20260101",
            "us-east-1",
            "sts"
        ));
        assert!(is_scope("20260101//sts/", "20260101", "", "sts"));
        for (date, region, service) in [
            ("20260101", "us-east-1", "st"),
            ("20260101", "us-east-", "sts"),
            ("2026010", "us-east-1", "sts"),
            ("20260101", "us-east-1/sts", ""),
            ("20260101", "us-east-1", "sts/"),
        ] {
            assert!(
                !is_scope("20260101/us-east-1/sts/", date, region, service),
                "{date} {region} {service}"
            );
        }
    }

    #[test]
    fn it_stays_bounded() {
        let cache = SigningKeyCache::new();
        for _ in 0..CAPACITY + 10 {
            let key = Arc::new(String::from("s"));
            cache.signing_key(&key, b"s", "20260101", "us-east-1", "sts");
        }
        assert!(cache.entries.len() <= CAPACITY);
        assert!(format!("{cache:?}").starts_with("SigningKeyCache"));
    }
}
