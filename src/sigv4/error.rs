//! Every way a SigV4 request can fail, each with the byte-exact message AWS sends.
//!
//! `Display` is the `<Message>` text the client sees; [`SigV4Error::kind`] is the AWS error code
//! and HTTP status. Texts are reproduced exactly as `docs/sts-wire-contract.md#error-table` and
//! `docs/sts-wire-contract.md#sigv4-error-texts` give them: STS's own where it was captured,
//! otherwise what other AWS endpoints were observed to return (sources on each variant).

use std::fmt;

/// The generic mismatch text, observed on STS (`docs/sts-wire-contract.md#error-table`,
/// awslabs/aws-sdk-rust#167).
pub(super) const SIGNATURE_MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The AWS error code a [`SigV4Error`] is reported as. All are `<Type>Sender</Type>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigV4ErrorKind {
    /// `IncompleteSignature`, HTTP 400: the request's authentication data is malformed.
    IncompleteSignature,
    /// `SignatureDoesNotMatch`, HTTP 403: well-formed, but not a valid signature here and now.
    SignatureDoesNotMatch,
    /// `RequestExpired`, HTTP 400: a presigned URL used after its `X-Amz-Expires`.
    RequestExpired,
}

impl SigV4ErrorKind {
    /// The `<Code>` element.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::IncompleteSignature => "IncompleteSignature",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::RequestExpired => "RequestExpired",
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            Self::IncompleteSignature | Self::RequestExpired => 400,
            Self::SignatureDoesNotMatch => 403,
        }
    }
}

/// A SigV4 verification failure. `Display` is the exact AWS `<Message>`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Both an `Authorization` header and an `X-Amz-Algorithm` query parameter were sent
    /// (DynamoDB's text, as mirrored by mhart/dynalite; InvalidSignatureException is the JSON
    /// name of SignatureDoesNotMatch).
    #[error(
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
    )]
    BothAuthForms,

    /// A component of the `Authorization` header has no `=` (observed on STS: boto/boto3#2280).
    #[error(
        "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
    )]
    MissingEqualSign {
        /// The offending component.
        part: String,
        /// The whole header value.
        header: String,
    },

    /// `Credential`, `Signature` or `SignedHeaders` is missing from the `Authorization` header,
    /// or the request has neither `X-Amz-Date` nor `Date` (observed: boto/boto3#2280 on STS,
    /// aws/aws-sdk-js#4285).
    #[error("{0}")]
    IncompleteAuthorization(MissingAuthorizationParts),

    /// A presigned request lacks one of its required `X-Amz-*` query parameters (texts from
    /// mhart/dynalite and dacut/scratchstack-aws-signature, both probed against AWS).
    #[error("{0}")]
    IncompleteQuery(MissingQueryParams),

    /// A presigned request gives one of its `X-Amz-*` query parameters more than once: the
    /// canonical query is sorted, so which value "comes first" is not the signer's choice
    /// (`docs/sts-wire-contract.md#sigv4-authentication-forms`; the broker's wording).
    #[error(
        "AWS query-string parameter '{name}' is given more than once. Re-examine the query-string parameters."
    )]
    RepeatedQueryParam {
        /// The parameter.
        name: &'static str,
    },

    /// `X-Amz-Expires` is not an integer (Amazon S3's text for it, minio/minio-js#1312;
    /// `docs/sts-wire-contract.md#sigv4-presigned-expiry`).
    #[error("X-Amz-Expires should be a number")]
    ExpiresNotANumber,

    /// `X-Amz-Expires` is negative (Amazon S3's text, fog/fog#3528).
    #[error("X-Amz-Expires must be non-negative")]
    ExpiresNegative,

    /// `X-Amz-Expires` is zero; AWS's least value is 1 (the broker's text).
    #[error("X-Amz-Expires must be at least 1 second")]
    ExpiresZero,

    /// `X-Amz-Expires` is over seven days (Amazon S3's text, aws/aws-cli#5464).
    #[error(
        "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds"
    )]
    ExpiresOverAWeek,

    /// The `Authorization` header's algorithm is not `AWS4-HMAC-SHA256`
    /// (dacut/scratchstack-aws-signature, rule 6a of its AWS error-ordering notes).
    #[error("Unsupported AWS 'algorithm': '{algorithm}'.")]
    UnsupportedAlgorithm {
        /// The algorithm token as sent.
        algorithm: String,
    },

    /// The credential is not `AKID/YYYYMMDD/region/service/terminator`
    /// (dacut/scratchstack-aws-signature).
    #[error(
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
    )]
    MalformedCredential {
        /// The credential as sent.
        credential: String,
    },

    /// The request date (`X-Amz-Date`, else `Date`) cannot be parsed
    /// (dacut/scratchstack-aws-signature).
    #[error(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )]
    MalformedDate {
        /// The date as sent.
        value: String,
    },

    /// `host` is not among the signed headers (observed on other services: aws/aws-sdk-php#2469,
    /// aws/aws-sdk-js-v3#3796: InvalidSignatureException, 403).
    #[error("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")]
    HostNotSigned,

    /// A name listed in `SignedHeaders` is not a header of the request (observed on AppSync:
    /// awslabs/aws-mobile-appsync-sdk-js#702, IncompleteSignatureException).
    #[error("'{name}' is named as a SignedHeader, but it does not exist in the HTTP request.")]
    SignedHeaderMissing {
        /// The missing header name.
        name: String,
    },

    /// The signature is not 64 lowercase hex digits, so it can match nothing.
    #[error("{}", SIGNATURE_MISMATCH_MESSAGE)]
    MalformedSignature,

    /// `x-amz-content-sha256` is present but is not the hex SHA-256 of the body; this also
    /// refuses `UNSIGNED-PAYLOAD`, which would leave the form body unauthenticated (text of
    /// S3's XAmzContentSHA256Mismatch; STS has no text of its own for this).
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHashMismatch,

    /// The request date is older than now minus the allowed skew (observed on STS:
    /// aws/aws-cli#6676).
    #[error("Signature expired: {request} is now earlier than {bound} ({now} - {}.)", skew_text(.skew_secs))]
    SignatureExpired {
        /// The request date, basic form.
        request: String,
        /// `now - skew`, basic form.
        bound: String,
        /// The server's now, basic form.
        now: String,
        /// The allowed skew in seconds.
        skew_secs: i64,
    },

    /// The request date is later than now plus the allowed skew
    /// (observed on STS: QT-DevOps/DevOpsIssues#989).
    #[error("Signature not yet current: {request} is still later than {bound} ({now} + {}.)", skew_text(.skew_secs))]
    SignatureNotYetCurrent {
        /// The request date, basic form.
        request: String,
        /// `now + skew`, basic form.
        bound: String,
        /// The server's now, basic form.
        now: String,
        /// The allowed skew in seconds.
        skew_secs: i64,
    },

    /// A presigned URL used at or after `X-Amz-Date` + `X-Amz-Expires` (Amazon S3's text for
    /// it, aws/aws-sdk-js#3493; the code is the common `RequestExpired`,
    /// `docs/sts-wire-contract.md#sigv4-presigned-expiry`).
    #[error("Request has expired")]
    PresignedUrlExpired,

    /// The credential scope names a wrong region, service, terminator or date.
    #[error("{0}")]
    CredentialScope(Box<ScopeMismatch>),

    /// The signature is well-formed but not the one the request and key produce.
    #[error("{}", SIGNATURE_MISMATCH_MESSAGE)]
    SignatureMismatch,
}

impl SigV4Error {
    /// The AWS error code and status this failure is reported with.
    #[must_use]
    pub fn kind(&self) -> SigV4ErrorKind {
        match self {
            Self::MissingEqualSign { .. }
            | Self::IncompleteAuthorization(_)
            | Self::IncompleteQuery(_)
            | Self::RepeatedQueryParam { .. }
            | Self::ExpiresNotANumber
            | Self::ExpiresNegative
            | Self::ExpiresZero
            | Self::ExpiresOverAWeek
            | Self::UnsupportedAlgorithm { .. }
            | Self::MalformedCredential { .. }
            | Self::MalformedDate { .. }
            | Self::SignedHeaderMissing { .. } => SigV4ErrorKind::IncompleteSignature,
            Self::BothAuthForms
            | Self::HostNotSigned
            | Self::MalformedSignature
            | Self::PayloadHashMismatch
            | Self::SignatureExpired { .. }
            | Self::SignatureNotYetCurrent { .. }
            | Self::CredentialScope(_)
            | Self::SignatureMismatch => SigV4ErrorKind::SignatureDoesNotMatch,
            Self::PresignedUrlExpired => SigV4ErrorKind::RequestExpired,
        }
    }
}

/// `15 min` for whole minutes, else `90 sec`.
fn skew_text(skew_secs: &i64) -> String {
    if skew_secs % 60 == 0 {
        format!("{} min", skew_secs / 60)
    } else {
        format!("{skew_secs} sec")
    }
}

/// Which parts an `Authorization` header lacks. Each missing part contributes one clause, in
/// AWS's order, and the header value closes the message
/// (`docs/sts-wire-contract.md#sigv4-error-texts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissingAuthorizationParts {
    /// No `Credential=`.
    pub credential: bool,
    /// No `Signature=`.
    pub signature: bool,
    /// No `SignedHeaders=`.
    pub signed_headers: bool,
    /// Neither an `X-Amz-Date` nor a `Date` header.
    pub date: bool,
    /// The `Authorization` header value as sent.
    pub header: String,
}

impl fmt::Display for MissingAuthorizationParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (missing, param) in [
            (self.credential, "Credential"),
            (self.signature, "Signature"),
            (self.signed_headers, "SignedHeaders"),
        ] {
            if missing {
                write!(f, "Authorization header requires '{param}' parameter. ")?;
            }
        }
        if self.date {
            f.write_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")?;
        }
        write!(f, "Authorization={}", self.header)
    }
}

/// Which of the presigned query parameters are absent or empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissingQueryParams {
    /// No `X-Amz-Algorithm` value.
    pub algorithm: bool,
    /// No `X-Amz-Credential`.
    pub credential: bool,
    /// No `X-Amz-Signature`.
    pub signature: bool,
    /// No `X-Amz-SignedHeaders`.
    pub signed_headers: bool,
    /// No `X-Amz-Date`.
    pub date: bool,
}

impl fmt::Display for MissingQueryParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (missing, param) in [
            (self.algorithm, "X-Amz-Algorithm"),
            (self.credential, "X-Amz-Credential"),
            (self.signature, "X-Amz-Signature"),
            (self.signed_headers, "X-Amz-SignedHeaders"),
            (self.date, "X-Amz-Date"),
        ] {
            if missing {
                write!(f, "AWS query-string parameters must include '{param}'. ")?;
            }
        }
        f.write_str("Re-examine the query-string parameters.")
    }
}

/// The credential-scope checks that failed. AWS reports every failing clause, each ending in
/// `". "` (the trailing space is observed on the region clause, cognitect-labs/aws-api#27).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeMismatch {
    /// The scope's region, when it is not an allowed one.
    pub region: Option<String>,
    /// The expected service, when the scope names another.
    pub expected_service: Option<String>,
    /// The scope's terminator, when it is not `aws4_request`.
    pub terminator: Option<String>,
    /// `(scope date, request YYYYMMDD, request basic date)` when the dates differ.
    pub date: Option<(String, String, String)>,
}

impl ScopeMismatch {
    pub(super) fn any(&self) -> bool {
        self.region.is_some()
            || self.expected_service.is_some()
            || self.terminator.is_some()
            || self.date.is_some()
    }
}

impl fmt::Display for ScopeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(region) = &self.region {
            write!(
                f,
                "Credential should be scoped to a valid region, not '{region}'. "
            )?;
        }
        if let Some(service) = &self.expected_service {
            write!(
                f,
                "Credential should be scoped to correct service: '{service}'. "
            )?;
        }
        if let Some(terminator) = &self.terminator {
            write!(
                f,
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
            )?;
        }
        if let Some((scope, expected, request)) = &self.date {
            write!(
                f,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{expected}', from '{request}'. "
            )?;
        }
        Ok(())
    }
}
