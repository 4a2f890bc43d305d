//! Why a request was not verified, in the verifier's own terms; `protocol` words it for the
//! STS/IAM wire, a gateway for its own answer.

use crate::sigv4::SigV4Error;

/// A request the verifier refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no SigV4 authentication.
    #[error("the request is not signed")]
    Unsigned,
    /// The SigV4 data is malformed, misdirected, outside the skew, or the signature does not
    /// match; the text is AWS's.
    #[error("{0}")]
    Signature(SigV4Error),
    /// No active long-term access key has this id.
    #[error("the access key is unknown or inactive")]
    UnknownAccessKey,
    /// A session token came with a long-term access key.
    #[error("a session token was sent with a long-term access key")]
    UnexpectedSessionToken,
    /// The session token is malformed, forged, or for another access key id.
    #[error("the session token is invalid")]
    InvalidSessionToken,
    /// The session credentials have expired.
    #[error("the session credentials have expired")]
    ExpiredSessionToken,
    /// The key that obtained the session, or its user, is gone or inactive.
    #[error("the credentials that obtained this session are no longer valid")]
    SessionParentGone,
    /// The policy admits only MFA-backed session credentials.
    #[error("MFA-backed session credentials are required")]
    MfaRequired,
    /// The MFA authentication behind the session is older than the policy allows.
    #[error("the MFA authentication is {age} seconds old; at most {max} are allowed")]
    MfaTooOld {
        /// Seconds since the MFA authentication.
        age: i64,
        /// The policy's limit.
        max: i64,
    },
}
