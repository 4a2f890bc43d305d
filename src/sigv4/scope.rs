//! Policy checks that need no key: clock skew and credential scope.
//!
//! They run before the secret is looked up so that stale, early or misdirected requests cost
//! no store access. A presigned URL's own expiry is checked first, then skew, as AWS does
//! (dacut/scratchstack-aws-signature's error-ordering rules 10-13); every failing scope clause
//! is then reported at once.

use crate::time::UnixTime;

use super::{ScopeMismatch, SigV4Error, SignedRequest, TERMINATOR};

/// What a credential scope must name, and how far a request's clock may be off.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScopePolicy<'a> {
    /// Accepted scope regions; may contain "" for botocore's `region_name=''`.
    pub regions: &'a [String],
    /// The service signing name, e.g. `sts`.
    pub service: &'a str,
    /// Allowed difference between the request date and now, in seconds (STS: 900).
    pub max_skew_secs: i64,
}

/// A presigned URL's `X-Amz-Expires`, ±skew against now, then terminator, service, region (from
/// the allowed set, which may contain "" for botocore's region_name=''), and scope date == first
/// 8 chars of the request date.
///
/// # Errors
///
/// [`SigV4Error::PresignedUrlExpired`], [`SigV4Error::SignatureExpired`],
/// [`SigV4Error::SignatureNotYetCurrent`] or [`SigV4Error::CredentialScope`].
pub(crate) fn check_scope_and_time(
    signed: &SignedRequest,
    policy: &ScopePolicy<'_>,
    now_unix: i64,
) -> Result<(), SigV4Error> {
    let skew = policy.max_skew_secs.max(0);
    let request = signed.date.unix();
    // A presigned URL is good for X-Amz-Expires seconds from its date: `[date, date + expires)`
    // on the signer's clock, with the skew below still bounding both ends
    // (`docs/sts-wire-contract.md#sigv4-presigned-expiry`). Its own limit is checked first,
    // being the more specific answer.
    if let Some(expires) = signed.expires_secs
        && now_unix >= request.saturating_add(expires)
    {
        return Err(SigV4Error::PresignedUrlExpired);
    }
    let earliest = now_unix.saturating_sub(skew);
    if request < earliest {
        return Err(SigV4Error::SignatureExpired {
            request: signed.date.basic().to_owned(),
            bound: UnixTime::from_secs(earliest).basic(),
            now: UnixTime::from_secs(now_unix).basic(),
            skew_secs: skew,
        });
    }
    let latest = now_unix.saturating_add(skew);
    if request > latest {
        return Err(SigV4Error::SignatureNotYetCurrent {
            request: signed.date.basic().to_owned(),
            bound: UnixTime::from_secs(latest).basic(),
            now: UnixTime::from_secs(now_unix).basic(),
            skew_secs: skew,
        });
    }

    let scope = &signed.scope;
    let request_date8 = signed.date.date8();
    let mismatch = ScopeMismatch {
        region: (!policy.regions.contains(&scope.region)).then(|| scope.region.clone()),
        expected_service: (scope.service != policy.service).then(|| policy.service.to_owned()),
        terminator: (scope.terminator != TERMINATOR).then(|| scope.terminator.clone()),
        date: (scope.date != request_date8).then(|| {
            (
                scope.date.clone(),
                request_date8.to_owned(),
                signed.date.basic().to_owned(),
            )
        }),
    };
    if mismatch.any() {
        return Err(SigV4Error::CredentialScope(Box::new(mismatch)));
    }
    Ok(())
}
