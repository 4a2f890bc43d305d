//! Every failure a client can see, in one place: its AWS code, HTTP status, Type and
//! byte-exact message (`docs/sts-wire-contract.md#error-table`,
//! `docs/iam-mfa-api.md#error-messages`). Lower layers convert into [`ApiError`]; nothing else
//! decides what goes on the wire.

use std::borrow::Cow;

use http::StatusCode;

use super::Service;
use super::xml::XmlWriter;
use crate::mfa::guard::{GuardError, MfaRefusal};
use crate::store::StoreError;
use crate::verifier::AuthError;

/// `AccessDenied` text for a wrong (or replayed, or throttled) TOTP code.
pub(crate) const MFA_INVALID_CODE: &str =
    "MultiFactorAuthentication failed with invalid MFA one time pass code.";
/// `AccessDenied` text for a serial that is unknown, not the caller's or not enabled (two spaces).
pub(crate) const MFA_UNABLE_TO_VALIDATE: &str = "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.";
/// `AccessDenied` text for a FIDO security key named on the STS path.
pub(crate) const MFA_FIDO_NOT_ALLOWED: &str = "MultiFactorAuthentication failed: FIDO security keys cannot be used with STS API operations. Use a virtual or hardware MFA device.";
/// `AccessDenied` text for session credentials calling GetSessionToken.
pub(crate) const SESSION_CANNOT_GET_SESSION_TOKEN: &str =
    "Cannot call GetSessionToken with session credentials";
/// IAM `EntityAlreadyExists` text for a virtual device name taken at that path.
pub(crate) const DEVICE_EXISTS: &str = "MFADevice entity at the same path and name already exists.";
/// IAM `EntityAlreadyExists` text for a device already enabled for someone.
pub(crate) const DEVICE_IN_USE: &str = "MFA Device is already in use.";
/// IAM `DeleteConflict` text for DeleteUser while the user has access keys.
pub(crate) const USER_HAS_ACCESS_KEYS: &str =
    "Cannot delete entity, must delete access keys first.";
/// IAM `DeleteConflict` text for DeleteUser while the user has MFA devices.
pub(crate) const USER_HAS_DEVICES: &str = "Cannot delete entity, must delete MFA device first.";
/// IAM `DeleteConflict` text for DeleteVirtualMFADevice on an enabled device.
pub(crate) const DEVICE_ASSIGNED: &str =
    "You must deactivate a user's virtual MFA device before you can delete it.";
/// The quota a `LimitExceeded` names for the virtual MFA devices of the account
/// (`max_virtual_mfa_devices`).
pub(crate) const VIRTUAL_DEVICES_QUOTA: &str = "VirtualMFADevicesPerAccount";
/// The quota a `LimitExceeded` names for the unassigned virtual MFA devices one IAM user holds
/// (`max_unassigned_mfa_devices_per_user`).
pub(crate) const UNASSIGNED_DEVICES_QUOTA: &str = "UnassignedVirtualMFADevicesPerUser";
/// `InvalidInput` text for a FIDO security key named on EnableMFADevice or ResyncMFADevice.
pub(crate) const FIDO_NOT_THROUGH_API: &str = "FIDO security keys cannot be enabled or synchronized through the AWS CLI or API; register them through the console (sts-broker admin mfa register-fido).";

/// A failure reported to the client as an AWS XML error.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request carries no SigV4 authentication.
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    /// Unknown, deleted or inactive access key; a session key without a valid token.
    #[error("The security token included in the request is invalid.")]
    InvalidClientTokenId,
    /// Session credentials past their expiry.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// Signature, skew or credential-scope failure; the text comes from the verifier.
    #[error("{0}")]
    SignatureDoesNotMatch(String),
    /// A malformed or incomplete SigV4 authorization.
    #[error("{0}")]
    IncompleteSignature(String),
    /// A presigned URL used after its `X-Amz-Expires`.
    #[error("{0}")]
    RequestExpired(String),
    /// Unknown action, or an action not in the given version.
    #[error("Could not find operation {action} for version {version}")]
    InvalidAction {
        /// The action as sent.
        action: String,
        /// The version as sent, or `NO_VERSION_SPECIFIED`.
        version: String,
    },
    /// Constraint violations, one clause each.
    #[error("{} validation error{} detected: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("; "))]
    ValidationError(Vec<String>),
    /// A parameter that cannot be parsed as its type.
    #[error("{0}")]
    MalformedInput(String),
    /// Form encoding that cannot be decoded.
    #[error("The query string contains a syntax error.")]
    MalformedQueryString,
    /// A parameter given more than once, in the query string, the body or both
    /// (`docs/sts-wire-contract.md#parameter-decoding`).
    #[error(
        "The parameter '{0}' is given more than once; give each parameter once, in the query string or in the form body."
    )]
    DuplicateParameter(String),
    /// A body that would not be read as parameters, sent with an API call
    /// (`docs/sts-wire-contract.md#parameter-decoding`).
    #[error(
        "The request body is not read: only a POST with Content-Type application/x-www-form-urlencoded carries parameters in its body. Send the parameters in the query string or in such a body."
    )]
    UnreadBody,
    /// The caller may not do this, or MFA failed; the text says which.
    #[error("{0}")]
    AccessDenied(Cow<'static, str>),
    /// IAM: the named entity does not exist.
    #[error("{0}")]
    NoSuchEntity(String),
    /// IAM: an entity with that name already exists.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// IAM: the entity still has dependents.
    #[error("{0}")]
    DeleteConflict(String),
    /// IAM: a quota would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// IAM: a parameter value is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// IAM: the two authentication codes do not verify.
    #[error("Authentication code for device is not valid.")]
    InvalidAuthenticationCode,
    /// The body is larger than the configured limit.
    #[error("Request body is larger than {0} bytes.")]
    RequestEntityTooLarge(usize),
    /// The headers are larger than the configured limit.
    #[error("Request headers are larger than {0} bytes.")]
    RequestHeaderFieldsTooLarge(usize),
    /// The client did not send its request in time.
    #[error(
        "Your socket connection to the server was not read from or written to within the timeout period."
    )]
    RequestTimeout,
    /// A backend the broker shares with its other nodes (PostgreSQL, Redis) did not answer in
    /// time or failed: nothing was decided, and the client may retry (`docs/multinode.md#failing-closed`).
    #[error("The request has failed due to a temporary failure of the server.")]
    ServiceUnavailable,
    /// A fault of the broker (storage, internal invariant); details go to the log only.
    #[error("The request processing has failed because of an unknown error, exception or failure.")]
    InternalFailure,
}

impl ApiError {
    /// `AccessDenied` with a fixed text.
    pub(crate) const fn access_denied(message: &'static str) -> Self {
        Self::AccessDenied(Cow::Borrowed(message))
    }

    /// IAM's authorization failure for an IAM user.
    pub(crate) fn not_authorized(caller_arn: &str, action: &str, resource: &str) -> Self {
        Self::AccessDenied(Cow::Owned(format!(
            "User: {caller_arn} is not authorized to perform: iam:{action} on resource: {resource} because no identity-based policy allows the iam:{action} action"
        )))
    }

    /// IAM's refusal by an explicit deny, as the usual "deny unless MultiFactorAuthPresent"
    /// self-management policy would answer
    /// (https://docs.aws.amazon.com/IAM/latest/UserGuide/tutorial_users-self-manage-mfa-and-creds.html).
    pub(crate) fn explicit_deny(caller_arn: &str, action: &str, resource: &str) -> Self {
        Self::AccessDenied(Cow::Owned(format!(
            "User: {caller_arn} is not authorized to perform: iam:{action} on resource: {resource} with an explicit deny in an identity-based policy"
        )))
    }

    /// The AWS error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationToken",
            Self::InvalidClientTokenId => "InvalidClientTokenId",
            Self::ExpiredToken => "ExpiredToken",
            Self::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::RequestExpired(_) => "RequestExpired",
            Self::InvalidAction { .. } => "InvalidAction",
            Self::ValidationError(_) => "ValidationError",
            Self::MalformedInput(_) => "MalformedInput",
            Self::MalformedQueryString => "MalformedQueryString",
            Self::DuplicateParameter(_) => "InvalidQueryParameter",
            Self::UnreadBody => "InvalidQueryParameter",
            Self::AccessDenied(_) => "AccessDenied",
            Self::NoSuchEntity(_) => "NoSuchEntity",
            Self::EntityAlreadyExists(_) => "EntityAlreadyExists",
            Self::DeleteConflict(_) => "DeleteConflict",
            Self::LimitExceeded(_) => "LimitExceeded",
            Self::InvalidInput(_) => "InvalidInput",
            Self::InvalidAuthenticationCode => "InvalidAuthenticationCode",
            Self::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Self::RequestHeaderFieldsTooLarge(_) => "RequestHeaderFieldsTooLarge",
            Self::RequestTimeout => "RequestTimeout",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::InternalFailure => "InternalFailure",
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MissingAuthenticationToken
            | Self::InvalidClientTokenId
            | Self::ExpiredToken
            | Self::SignatureDoesNotMatch(_)
            | Self::AccessDenied(_)
            | Self::InvalidAuthenticationCode => StatusCode::FORBIDDEN,
            Self::IncompleteSignature(_)
            | Self::RequestExpired(_)
            | Self::InvalidAction { .. }
            | Self::ValidationError(_)
            | Self::MalformedInput(_)
            | Self::DuplicateParameter(_)
            | Self::UnreadBody
            | Self::InvalidInput(_) => StatusCode::BAD_REQUEST,
            // AWS's common-errors table gives MalformedQueryString a 404
            // (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html).
            Self::MalformedQueryString | Self::NoSuchEntity(_) => StatusCode::NOT_FOUND,
            Self::EntityAlreadyExists(_) | Self::DeleteConflict(_) | Self::LimitExceeded(_) => {
                StatusCode::CONFLICT
            }
            Self::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestHeaderFieldsTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalFailure => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error XML body.
    pub(crate) fn body(&self, service: Service, request_id: &str) -> String {
        let namespace = match self {
            Self::InvalidAction { .. } => "http://webservices.amazon.com/AWSFault/2005-15-09",
            _ => service.namespace(),
        };
        let kind = if self.status().is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let mut w = XmlWriter::new();
        w.open_ns("ErrorResponse", Some(namespace))
            .open("Error")
            .leaf("Type", kind)
            .leaf("Code", self.code())
            .leaf("Message", &self.to_string())
            .close("Error")
            .leaf("RequestId", request_id)
            .close("ErrorResponse");
        w.finish()
    }
}

/// The IAM answer to a store refusal; a store fault is logged here and answered as an
/// internal failure, without its details.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchUser(name) => {
                Self::NoSuchEntity(format!("The user with name {name} cannot be found."))
            }
            StoreError::NoSuchAccessKey(id) => {
                Self::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
            }
            StoreError::NoSuchDevice(serial) => Self::NoSuchEntity(format!(
                "MFA Device with serial number {serial} does not exist."
            )),
            StoreError::UserExists(name) => {
                Self::EntityAlreadyExists(format!("User with name {name} already exists."))
            }
            StoreError::DeviceExists(_) => Self::EntityAlreadyExists(DEVICE_EXISTS.to_owned()),
            StoreError::DeviceInUse => Self::EntityAlreadyExists(DEVICE_IN_USE.to_owned()),
            StoreError::UserHasAccessKeys => Self::DeleteConflict(USER_HAS_ACCESS_KEYS.to_owned()),
            StoreError::UserHasDevices => Self::DeleteConflict(USER_HAS_DEVICES.to_owned()),
            StoreError::DeviceAssigned => Self::DeleteConflict(DEVICE_ASSIGNED.to_owned()),
            StoreError::AccessKeyQuota(max) => {
                Self::LimitExceeded(format!("Cannot exceed quota for AccessKeysPerUser: {max}"))
            }
            StoreError::DeviceQuota(max) => Self::LimitExceeded(format!(
                "Cannot exceed quota for MFADevicesInUsePerUser: {max}"
            )),
            StoreError::VirtualDeviceQuota(max) => Self::LimitExceeded(format!(
                "Cannot exceed quota for {VIRTUAL_DEVICES_QUOTA}: {max}"
            )),
            StoreError::UnassignedDeviceQuota(max) => Self::LimitExceeded(format!(
                "Cannot exceed quota for {UNASSIGNED_DEVICES_QUOTA}: {max}"
            )),
            StoreError::InvalidCodes => Self::InvalidAuthenticationCode,
            StoreError::FidoKey => Self::InvalidInput(FIDO_NOT_THROUGH_API.to_owned()),
            e @ StoreError::UnusableSeed { .. } => Self::InvalidInput(e.to_string()),
            StoreError::Unavailable(reason) => {
                tracing::error!(%reason, "the shared store is unavailable");
                Self::ServiceUnavailable
            }
            // `MfaRequired` is worded by EnableMFADevice, which knows the caller
            // (`ApiError::explicit_deny`); reaching here is a bug, refused all the same.
            e => {
                tracing::error!(error = %e, "store failure");
                Self::InternalFailure
            }
        }
    }
}

/// The STS answer to a refused request; the reasons AWS does not tell apart get one answer.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unsigned => Self::MissingAuthenticationToken,
            AuthError::Signature(e) => e.into(),
            AuthError::UnknownAccessKey
            | AuthError::UnexpectedSessionToken
            | AuthError::InvalidSessionToken
            | AuthError::SessionParentGone => Self::InvalidClientTokenId,
            AuthError::ExpiredSessionToken => Self::ExpiredToken,
            e @ (AuthError::MfaRequired | AuthError::MfaTooOld { .. }) => {
                Self::AccessDenied(Cow::Owned(e.to_string()))
            }
        }
    }
}

/// A replay guard or attempt limiter that could not answer: the attempt is refused, and the
/// client may retry once the backend answers again (`docs/multinode.md#failing-closed`).
impl From<GuardError> for ApiError {
    fn from(e: GuardError) -> Self {
        tracing::error!(error = %e, "MFA state backend failure");
        Self::ServiceUnavailable
    }
}

impl ApiError {
    /// GetSessionToken's answer to a refused MFA check: AWS's two texts, plus ours for FIDO
    /// keys. A lock-out and a spent code read as a wrong code, so none is an oracle.
    pub(crate) fn sts_mfa_refusal(refusal: MfaRefusal) -> Self {
        Self::access_denied(match refusal {
            MfaRefusal::FidoKey => MFA_FIDO_NOT_ALLOWED,
            MfaRefusal::UnknownDevice | MfaRefusal::Incomplete => MFA_UNABLE_TO_VALIDATE,
            MfaRefusal::Locked { .. }
            | MfaRefusal::WrongCode
            | MfaRefusal::Replayed
            | MfaRefusal::InvalidCodes => MFA_INVALID_CODE,
        })
    }

    /// EnableMFADevice's and ResyncMFADevice's answer to a refused pair of codes.
    pub(crate) fn iam_mfa_refusal(refusal: MfaRefusal) -> Self {
        match refusal {
            MfaRefusal::FidoKey => Self::InvalidInput(FIDO_NOT_THROUGH_API.to_owned()),
            MfaRefusal::UnknownDevice
            | MfaRefusal::Incomplete
            | MfaRefusal::Locked { .. }
            | MfaRefusal::WrongCode
            | MfaRefusal::Replayed
            | MfaRefusal::InvalidCodes => Self::InvalidAuthenticationCode,
        }
    }
}

impl From<crate::sigv4::SigV4Error> for ApiError {
    fn from(e: crate::sigv4::SigV4Error) -> Self {
        match e.kind() {
            crate::sigv4::SigV4ErrorKind::IncompleteSignature => {
                Self::IncompleteSignature(e.to_string())
            }
            crate::sigv4::SigV4ErrorKind::SignatureDoesNotMatch => {
                Self::SignatureDoesNotMatch(e.to_string())
            }
            crate::sigv4::SigV4ErrorKind::RequestExpired => Self::RequestExpired(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_counts_its_clauses() {
        let one = ApiError::ValidationError(vec!["a".into()]);
        assert_eq!(one.to_string(), "1 validation error detected: a");
        let two = ApiError::ValidationError(vec!["a".into(), "b".into()]);
        assert_eq!(two.to_string(), "2 validation errors detected: a; b");
    }

    #[test]
    fn invalid_action_text_keeps_empty_values() {
        let e = ApiError::InvalidAction {
            action: String::new(),
            version: "2011-06-15".into(),
        };
        assert_eq!(
            e.to_string(),
            "Could not find operation  for version 2011-06-15"
        );
        assert!(e.body(Service::Sts, "r").contains("AWSFault/2005-15-09"));
    }

    /// The layout of `docs/sts-wire-contract.md#error-body`, byte for byte.
    #[test]
    fn error_body_has_the_contract_shape() {
        let body = ApiError::access_denied(SESSION_CANNOT_GET_SESSION_TOKEN)
            .body(Service::Sts, "58c5dbae-abef-11e0-8cfe-09039844ac7d");
        assert_eq!(
            body,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>AccessDenied</Code>\n    <Message>Cannot call GetSessionToken with session credentials</Message>\n  </Error>\n  <RequestId>58c5dbae-abef-11e0-8cfe-09039844ac7d</RequestId>\n</ErrorResponse>\n"
        );
    }

    #[test]
    fn server_errors_are_receiver_faults() {
        let body = ApiError::InternalFailure.body(Service::Iam, "r");
        assert!(body.contains("<Type>Receiver</Type>"));
        assert!(body.contains("https://iam.amazonaws.com/doc/2010-05-08/"));
    }

    #[test]
    fn an_unavailable_backend_is_a_503_receiver_fault() {
        let e = ApiError::from(GuardError::Timeout);
        assert_eq!((e.status().as_u16(), e.code()), (503, "ServiceUnavailable"));
        assert!(e.body(Service::Sts, "r").contains("<Type>Receiver</Type>"));
        let e = ApiError::from(StoreError::Unavailable("timed out".into()));
        assert_eq!(e, ApiError::ServiceUnavailable);
        assert_eq!(
            e.to_string(),
            "The request has failed due to a temporary failure of the server."
        );
    }

    #[test]
    fn mfa_texts_are_byte_exact() {
        assert!(MFA_UNABLE_TO_VALIDATE.contains("code.  Please"));
        assert_eq!(
            ApiError::ExpiredToken.to_string(),
            "The security token included in the request is expired"
        );
    }
}
