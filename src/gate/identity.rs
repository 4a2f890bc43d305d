//! The identity headers a gate adds to an admitted request (`docs/gate.md#identity-headers`),
//! and the stripping of every copy a client sent: an upstream can trust them only if no client
//! can set them.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::time::UnixTime;
use crate::verifier::VerifiedCaller;

/// The prefix of every header the gate speaks for; client copies of any are dropped.
pub(crate) const PREFIX: &str = "x-sts-broker-";

/// The caller's ARN.
pub(crate) const PRINCIPAL_ARN: HeaderName = HeaderName::from_static("x-sts-broker-principal-arn");
/// The account id.
pub(crate) const ACCOUNT: HeaderName = HeaderName::from_static("x-sts-broker-account");
/// GetCallerIdentity's `UserId`.
pub(crate) const USER_ID: HeaderName = HeaderName::from_static("x-sts-broker-user-id");
/// `true` for session credentials minted with a verified MFA code, else `false`.
pub(crate) const MFA_AUTHENTICATED: HeaderName =
    HeaderName::from_static("x-sts-broker-mfa-authenticated");
/// Seconds since the MFA authentication (`aws:MultiFactorAuthAge`), with MFA only.
pub(crate) const MFA_AGE: HeaderName = HeaderName::from_static("x-sts-broker-mfa-age");

/// Removes every header whose name starts with [`PREFIX`].
pub(crate) fn strip_client_copies(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

/// Adds the identity headers of `caller` at `now` (after [`strip_client_copies`]).
pub(crate) fn insert(headers: &mut HeaderMap, caller: &VerifiedCaller, now: UnixTime) {
    // ARNs, account and user ids are ASCII the broker minted; a value that could not be a
    // header value is left out rather than forwarded malformed.
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(PRINCIPAL_ARN, &caller.arn);
    put(ACCOUNT, &caller.account_id);
    put(USER_ID, caller.user_id());
    put(
        MFA_AUTHENTICATED,
        if caller.mfa_present() {
            "true"
        } else {
            "false"
        },
    );
    if let Some(age) = caller.mfa_age_secs(now) {
        put(MFA_AGE, &age.to_string());
    }
}
