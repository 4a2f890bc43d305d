//! What a gate answers when it does not forward: an AWS JSON-protocol error (`__type` and
//! `message`, with `x-amzn-ErrorType` and `x-amzn-RequestId` headers), the shape AWS SDKs and
//! botocore read for JSON services (`docs/gate.md#errors`).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::verifier::AuthError;

/// A request the gate refused, or could not relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status a gateway answers with.
    pub(crate) status: StatusCode,
    /// The AWS error code.
    pub(crate) code: &'static str,
    /// What the client is told.
    pub(crate) message: String,
    /// A short word for the audit log.
    pub(crate) reason: &'static str,
    /// The caller authenticated, and only the MFA policy refused it.
    pub(crate) policy: bool,
    /// The access key id the request claimed, for the audit line.
    pub(crate) access_key_id: Option<String>,
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        let reason = match &e {
            AuthError::Unsigned => "unsigned",
            AuthError::Signature(_) => "bad_signature",
            AuthError::UnknownAccessKey => "unknown_key",
            AuthError::UnexpectedSessionToken | AuthError::InvalidSessionToken => {
                "invalid_session_token"
            }
            AuthError::ExpiredSessionToken => "expired",
            AuthError::SessionParentGone => "session_parent_gone",
            AuthError::MfaRequired => "mfa_required",
            AuthError::MfaTooOld { .. } => "mfa_too_old",
        };
        Self {
            status: e.http_status(),
            code: e.code(),
            message: e.to_string(),
            reason,
            policy: e.is_policy_refusal(),
            access_key_id: None,
        }
    }
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, reason: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            message,
            reason,
            policy: false,
            access_key_id: None,
        }
    }

    /// The same refusal, recording the access key id the request claimed.
    pub(crate) fn claimed_by(mut self, access_key_id: Option<&str>) -> Self {
        self.access_key_id = access_key_id.map(str::to_owned);
        self
    }

    /// A body over the limit, without a declared hash to stream it by.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "body_too_large",
            format!(
                "Request body is larger than {limit} bytes. Sign larger bodies with an x-amz-content-sha256 header so that the gate can stream them."
            ),
        )
    }

    /// Headers over the limit.
    pub(crate) fn headers_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            "headers_too_large",
            format!("Request headers are larger than {limit} bytes."),
        )
    }

    /// The client's body broke off or was malformed.
    pub(crate) fn incomplete_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "incomplete_body",
            "The request body could not be read completely.".to_owned(),
        )
    }

    /// A streamed body that did not hash to its signed `x-amz-content-sha256`.
    pub(crate) fn payload_mismatch() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "bad_signature",
            super::admit::PayloadMismatch.to_string(),
        )
    }

    /// A forward-auth request whose body the endpoint cannot see and whose hash is not declared.
    pub(crate) fn body_not_judgeable(method: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "body_not_judgeable",
            format!(
                "The forward-auth endpoint does not see request bodies: a {method} request with a body must sign its SHA-256 in an x-amz-content-sha256 header (or use a presigned URL, or a method without a body)."
            ),
        )
    }

    /// A forward-auth request without a readable original method or URI.
    pub(crate) fn bad_original(what: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "bad_original_request",
            format!("The forward-auth request carries no valid original {what}."),
        )
    }

    /// The upstream could not be reached.
    pub(crate) fn bad_gateway() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            "upstream_unreachable",
            "The upstream service could not be reached.".to_owned(),
        )
    }

    /// The upstream did not answer in time.
    pub(crate) fn gateway_timeout(secs: u64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "GatewayTimeout",
            "upstream_timeout",
            format!("The upstream service did not answer within {secs} seconds."),
        )
    }

    /// The whole request took longer than the request timeout.
    pub(crate) fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "request_timeout",
            "Your socket connection to the server was not read from or written to within the timeout period.".to_owned(),
        )
    }

    /// The JSON error response, with `status` (a forward-auth endpoint answers 401/403 where a
    /// gateway answers the AWS status).
    pub(crate) fn response(&self, status: StatusCode, request_id: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "__type": self.code, "message": self.message });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-requestid", id);
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("AWS4-HMAC-SHA256"),
            );
        }
        resp
    }

    /// The forward-auth status: 403 when the caller authenticated and only the MFA policy
    /// refused it, 401 for everything else (what nginx `auth_request`, Traefik ForwardAuth and
    /// Envoy ext_authz relay to the client).
    pub(crate) fn forward_auth_status(&self) -> StatusCode {
        if self.policy {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
}
