//! The error texts the broker answers with, pinned once, each with its public source: a place
//! that shows the exact text where one was found (an AWS documentation page, or a GitHub issue
//! quoting a real AWS reply), otherwise the AWS page that documents the error or the check. The
//! few texts that are the broker's own wording also name the file of this repository that
//! documents them.

use crate::support::signing::basic_date;

// ---------------------------------------------------------------------------------------------
// Authentication (both services). Codes and statuses of the common errors:
// https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html

/// `InvalidClientTokenId` (403): an unknown, inactive or deleted key, or a bad session token.
/// Quoted from sts:GetCallerIdentity in hashicorp/terraform-provider-aws#24197
/// (https://github.com/hashicorp/terraform-provider-aws/issues/24197).
pub(crate) const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// `ExpiredToken` (403): session credentials past their expiration, as GetCallerIdentity says it
/// (no final period) in miquella/vaulted#107 (https://github.com/miquella/vaulted/issues/107).
pub(crate) const EXPIRED_TOKEN: &str = "The security token included in the request is expired";

/// `InternalFailure` (500): a fault of the broker, here an audit log that cannot be written
/// (README.md, audit log), verbatim from CommonErrors.html (above).
pub(crate) const INTERNAL_FAILURE: &str =
    "The request processing has failed because of an unknown error, exception or failure.";

/// `ServiceUnavailable` (503): a backend the nodes share did not answer in time
/// (`docs/multinode.md#failing-closed`), verbatim from CommonErrors.html (above).
pub(crate) const SERVICE_UNAVAILABLE: &str =
    "The request has failed due to a temporary failure of the server.";

/// `MissingAuthenticationToken` (403): no SigV4 at all. Quoted in
/// abuzuhri/Amazon-SP-API-CSharp#99 (https://github.com/abuzuhri/Amazon-SP-API-CSharp/issues/99).
pub(crate) const MISSING_AUTHENTICATION_TOKEN: &str = "Request is missing Authentication Token";

// ---------------------------------------------------------------------------------------------
// SigV4 refusals. The checks are described at
// https://docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-troubleshooting.html and the
// request format at https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.

/// `SignatureDoesNotMatch` (403), the generic mismatch, as in aws/aws-cli#135
/// (https://github.com/aws/aws-cli/issues/135).
pub(crate) const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// `SignatureDoesNotMatch` (403) for a request dated more than 15 minutes before `now`, as
/// GetCallerIdentity says it in aws/aws-cli#6676 (https://github.com/aws/aws-cli/issues/6676).
pub(crate) fn signature_expired(signed_at: i64, now: i64) -> String {
    format!(
        "Signature expired: {} is now earlier than {} ({} - 15 min.)",
        basic_date(signed_at),
        basic_date(now - 900),
        basic_date(now)
    )
}

/// `SignatureDoesNotMatch` (403) for a request dated more than 15 minutes after `now`; the
/// form is quoted (with a 5-minute service) in serverless/enterprise#11
/// (https://github.com/serverless/enterprise/issues/11).
pub(crate) fn signature_not_yet_current(signed_at: i64, now: i64) -> String {
    format!(
        "Signature not yet current: {} is still later than {} ({} + 15 min.)",
        basic_date(signed_at),
        basic_date(now + 900),
        basic_date(now)
    )
}

/// `SignatureDoesNotMatch` (403): the scope names a region this endpoint does not serve. Quoted
/// from STS, trailing space included, in cognitect-labs/aws-api#27
/// (https://github.com/cognitect-labs/aws-api/issues/27).
pub(crate) fn scope_region(region: &str) -> String {
    format!("Credential should be scoped to a valid region, not '{region}'. ")
}

/// `SignatureDoesNotMatch` (403): the scope names another service. Quoted from a Query API in
/// timkay/aws#111 (https://github.com/timkay/aws/pull/111).
pub(crate) fn scope_service(service: &str) -> String {
    format!("Credential should be scoped to correct service: '{service}'. ")
}

/// `SignatureDoesNotMatch` (403): the scope does not end with `aws4_request` (the terminator
/// create-signed-request.html, above, prescribes).
pub(crate) fn scope_terminator(got: &str) -> String {
    format!("Credential should be scoped with a valid terminator: 'aws4_request', not '{got}'. ")
}

/// `SignatureDoesNotMatch` (403): the scope's date is not the request's
/// (signature-v4-troubleshooting.html, above, quotes the text up to "from HTTP").
pub(crate) fn scope_date(scope_date: &str, request_date: &str) -> String {
    format!(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{}', from '{request_date}'. ",
        &request_date[..8]
    )
}

/// `SignatureDoesNotMatch` (403): `x-amz-content-sha256` states another hash than the body's
/// (the header: create-signed-request.html, above).
pub(crate) const CONTENT_SHA256_MISMATCH: &str =
    "The provided 'x-amz-content-sha256' header does not match what was computed.";

/// `SignatureDoesNotMatch` (403): `host` is not signed. Quoted in aws/aws-sdk-php#2469
/// (https://github.com/aws/aws-sdk-php/issues/2469).
pub(crate) const HOST_NOT_SIGNED: &str =
    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.";

/// `SignatureDoesNotMatch` (403): a presigned URL that also carries an `Authorization` header
/// (the two forms: create-signed-request.html, above).
pub(crate) const BOTH_AUTH_FORMS: &str =
    "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.";

/// `IncompleteSignature` (400): a part of `Authorization` without `=`, e.g. a space after
/// `Credential=`. Quoted from STS in boto/boto3#2280 (https://github.com/boto/boto3/issues/2280).
pub(crate) fn missing_equal_sign(part: &str, header: &str) -> String {
    format!(
        "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
    )
}

/// One clause of [`incomplete_authorization`].
pub(crate) const REQUIRES_CREDENTIAL: &str =
    "Authorization header requires 'Credential' parameter.";
/// One clause of [`incomplete_authorization`].
pub(crate) const REQUIRES_SIGNATURE: &str = "Authorization header requires 'Signature' parameter.";
/// One clause of [`incomplete_authorization`].
pub(crate) const REQUIRES_SIGNED_HEADERS: &str =
    "Authorization header requires 'SignedHeaders' parameter.";
/// One clause of [`incomplete_authorization`].
pub(crate) const REQUIRES_DATE: &str =
    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.";

/// `IncompleteSignature` (400): the missing parts of `Authorization`, then the header. All four
/// clauses are quoted in aws/chalice#828 (https://github.com/aws/chalice/issues/828).
pub(crate) fn incomplete_authorization(clauses: &[&str], header: &str) -> String {
    format!("{} Authorization={header}", clauses.join(" "))
}

/// `IncompleteSignature` (400): an algorithm other than `AWS4-HMAC-SHA256` (the only one
/// create-signed-request.html, above, defines).
pub(crate) fn unsupported_algorithm(algorithm: &str) -> String {
    format!("Unsupported AWS 'algorithm': '{algorithm}'.")
}

/// `IncompleteSignature` (400): a credential that is not `keyid/date/region/service/term`.
/// Quoted in mhart/aws4#97 (https://github.com/mhart/aws4/issues/97).
pub(crate) fn credential_elements(credential: &str) -> String {
    format!(
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
    )
}

/// `IncompleteSignature` (400): a request date not in `YYYYMMDDTHHMMSSZ` (the format
/// create-signed-request.html, above, prescribes).
pub(crate) fn date_not_basic_format(date: &str) -> String {
    format!(
        "Date must be in ISO-8601 'basic format'. Got '{date}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )
}

/// `IncompleteSignature` (400): a presigned URL without these `X-Amz-*` parameters (the
/// query-string form: create-signed-request.html, above).
pub(crate) fn presigned_query_missing(parameters: &[&str]) -> String {
    let clauses: Vec<String> = parameters
        .iter()
        .map(|p| format!("AWS query-string parameters must include '{p}'."))
        .collect();
    format!(
        "{} Re-examine the query-string parameters.",
        clauses.join(" ")
    )
}

/// `RequestExpired` (400), the common error for a request that arrives "more than 15 minutes
/// after the request expiration date (such as for pre-signed URLs)" (CommonErrors.html, above),
/// for a presigned URL past `X-Amz-Date` + `X-Amz-Expires`; the text is Amazon S3's for the same
/// case, quoted in aws/aws-sdk-js#3493 (https://github.com/aws/aws-sdk-js/issues/3493).
pub(crate) const REQUEST_HAS_EXPIRED: &str = "Request has expired";

/// `IncompleteSignature` (400): an `X-Amz-Expires` that is not a number; Amazon S3's text, quoted
/// in minio/minio-js#1312 (https://github.com/minio/minio-js/issues/1312).
pub(crate) const EXPIRES_NOT_A_NUMBER: &str = "X-Amz-Expires should be a number";

/// `IncompleteSignature` (400): a negative `X-Amz-Expires`; Amazon S3's text, quoted in fog/fog#3528
/// (https://github.com/fog/fog/issues/3528).
pub(crate) const EXPIRES_NEGATIVE: &str = "X-Amz-Expires must be non-negative";

/// `IncompleteSignature` (400): `X-Amz-Expires=0`. AWS documents 1 as the least value
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html); the wording
/// is the broker's (docs/sts-wire-contract.md, openapi/openapi.yaml).
pub(crate) const EXPIRES_ZERO: &str = "X-Amz-Expires must be at least 1 second";

/// `IncompleteSignature` (400): `X-Amz-Expires` over 604800 (seven days, the most AWS allows:
/// sigv4-query-string-auth.html, above); Amazon S3's text, quoted in aws/aws-cli#5464
/// (https://github.com/aws/aws-cli/issues/5464).
pub(crate) const EXPIRES_OVER_A_WEEK: &str = "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds";

/// `IncompleteSignature` (400): a header named in `SignedHeaders` that the request lacks (the
/// canonical headers: create-signed-request.html, above).
pub(crate) fn signed_header_absent(name: &str) -> String {
    format!("'{name}' is named as a SignedHeader, but it does not exist in the HTTP request.")
}

// ---------------------------------------------------------------------------------------------
// The Query protocol's front door (CommonErrors.html, above).

/// Where a request without `Action` (or a POST without a form content type) is sent with 302;
/// the broker's contract: openapi/openapi.yaml.
pub(crate) const FRONT_DOOR: &str = "https://aws.amazon.com/iam";

/// `InvalidAction` (400): an action unknown for the version. The version text when `Version` is
/// absent is [`NO_VERSION_SPECIFIED`]; the wording: openapi/openapi.yaml.
pub(crate) fn invalid_action(action: &str, version: &str) -> String {
    format!("Could not find operation {action} for version {version}")
}

/// What [`invalid_action`] names when the request has no `Version`.
pub(crate) const NO_VERSION_SPECIFIED: &str = "NO_VERSION_SPECIFIED";

/// `MalformedQueryString` (404), verbatim from CommonErrors.html (above).
pub(crate) const MALFORMED_QUERY_STRING: &str = "The query string contains a syntax error.";

/// `InvalidQueryParameter` (400, "The AWS query string is malformed or does not adhere to AWS
/// standards": CommonErrors.html, above): a parameter given twice, in the query string, the form
/// body or both. AWS lets the first win; the broker refuses, in its own words
/// (docs/sts-wire-contract.md, openapi/openapi.yaml).
pub(crate) fn parameter_given_twice(name: &str) -> String {
    format!(
        "The parameter '{name}' is given more than once; give each parameter once, in the query string or in the form body."
    )
}

/// `InvalidQueryParameter` (400, as above): an API call with a body that is not a form body of a
/// POST, which would not be read; the broker's wording (docs/sts-wire-contract.md,
/// openapi/openapi.yaml).
pub(crate) const BODY_NOT_READ: &str = "The request body is not read: only a POST with Content-Type application/x-www-form-urlencoded carries parameters in its body. Send the parameters in the query string or in such a body.";

/// `MalformedInput` (400): an empty integer parameter (`DurationSeconds` is an integer:
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html); the wording:
/// openapi/openapi.yaml.
pub(crate) const MISSING_DECIMAL: &str = "missing value for decimal type";

/// `MalformedInput` (400): an integer parameter that is not one, as the broker shows it back
/// (openapi/openapi.yaml).
pub(crate) fn invalid_decimal(shown: &str) -> String {
    format!("invalid value for decimal type: '{shown}'")
}

/// `RequestEntityTooLarge` (413), the broker's own limit (README.md, `max_body_bytes`).
pub(crate) fn body_too_large(limit: usize) -> String {
    format!("Request body is larger than {limit} bytes.")
}

/// `RequestHeaderFieldsTooLarge` (431), the broker's own limit (README.md, `max_header_bytes`).
pub(crate) fn headers_too_large(limit: usize) -> String {
    format!("Request headers are larger than {limit} bytes.")
}

// ---------------------------------------------------------------------------------------------
// ValidationError (400): "N validation error(s) detected: " and one clause per violated
// constraint, `; `-separated. The constraints are the API references' (each pattern below cites
// its page); the form is quoted for GetSessionToken's DurationSeconds in goldstack/goldstack#425
// (https://github.com/goldstack/goldstack/pull/425).

/// The whole ValidationError message for these clauses.
pub(crate) fn validation(clauses: &[String]) -> String {
    let count = clauses.len();
    let noun = if count == 1 { "error" } else { "errors" };
    format!("{count} validation {noun} detected: {}", clauses.join("; "))
}

fn clause(value: &str, member: &str, constraint: &str) -> String {
    format!("Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}")
}

/// A number below its minimum.
pub(crate) fn at_least(value: &str, member: &str, min: i64) -> String {
    clause(
        value,
        member,
        &format!("have value greater than or equal to {min}"),
    )
}

/// A number above its maximum.
pub(crate) fn at_most(value: &str, member: &str, max: i64) -> String {
    clause(
        value,
        member,
        &format!("have value less than or equal to {max}"),
    )
}

/// A text shorter than its minimum length.
pub(crate) fn min_length(value: &str, member: &str, min: usize) -> String {
    clause(
        value,
        member,
        &format!("have length greater than or equal to {min}"),
    )
}

/// A text longer than its maximum length.
pub(crate) fn max_length(value: &str, member: &str, max: usize) -> String {
    clause(
        value,
        member,
        &format!("have length less than or equal to {max}"),
    )
}

/// A text outside its pattern.
pub(crate) fn pattern(value: &str, member: &str, pattern: &str) -> String {
    clause(
        value,
        member,
        &format!("satisfy regular expression pattern: {pattern}"),
    )
}

/// A value outside its enumeration.
pub(crate) fn enum_value(value: &str, member: &str, values: &str) -> String {
    clause(value, member, &format!("satisfy enum value set: {values}"))
}

/// GetSessionToken's `SerialNumber` (length 9–256):
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html
pub(crate) const SERIAL_NUMBER_PATTERN: &str = r"[\w+=/:,.@-]*";
/// GetSessionToken's `TokenCode` (length 6), same page.
pub(crate) const TOKEN_CODE_PATTERN: &str = r"[\d]*";
/// IAM `UserName` (length 1–64): https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html
pub(crate) const USER_NAME_PATTERN: &str = r"[\w+=,.@-]+";
/// CreateUser's `Path`, same page.
pub(crate) const USER_PATH_PATTERN: &str = r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)";
/// CreateVirtualMFADevice's `Path` and `VirtualMFADeviceName` ([`USER_NAME_PATTERN`]):
/// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateVirtualMFADevice.html
pub(crate) const MFA_PATH_PATTERN: &str = r"(\u002F)|(\u002F[\u0021-\u007F]+\u002F)";
/// EnableMFADevice's `AuthenticationCode1`/`2` (length 6):
/// https://docs.aws.amazon.com/IAM/latest/APIReference/API_EnableMFADevice.html
pub(crate) const AUTHENTICATION_CODE_PATTERN: &str = r"[\d]+";
/// UpdateAccessKey's `AccessKeyId` (length 16–128):
/// https://docs.aws.amazon.com/IAM/latest/APIReference/API_UpdateAccessKey.html
pub(crate) const ACCESS_KEY_ID_PATTERN: &str = r"[\w]+";
/// UpdateAccessKey's `Status`, same page.
pub(crate) const STATUS_VALUES: &str = "[Active, Inactive]";
/// ListVirtualMFADevices' `AssignmentStatus`:
/// https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListVirtualMFADevices.html
pub(crate) const ASSIGNMENT_STATUS_VALUES: &str = "[Assigned, Unassigned, Any]";

// ---------------------------------------------------------------------------------------------
// GetSessionToken with MFA (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html).

/// `AccessDenied` (403): a wrong, replayed or throttled code for the caller's device. Quoted
/// from GetSessionToken in lonelyplanet/aws-mfa#20 (https://github.com/lonelyplanet/aws-mfa/issues/20).
pub(crate) const MFA_INVALID_CODE: &str =
    "MultiFactorAuthentication failed with invalid MFA one time pass code.";

/// `AccessDenied` (403): a serial that is not the caller's enabled device, or a serial or code
/// alone. Quoted (two spaces included) in aws/aws-cli#6325
/// (https://github.com/aws/aws-cli/issues/6325).
pub(crate) const MFA_UNABLE_TO_VALIDATE: &str = "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.";

/// `AccessDenied` (403): session credentials calling GetSessionToken. Quoted in
/// aws/aws-sdk-net#1704 (https://github.com/aws/aws-sdk-net/issues/1704).
pub(crate) const SESSION_CREDENTIALS: &str = "Cannot call GetSessionToken with session credentials";

/// `AccessDenied` (403): a FIDO security key's serial on GetSessionToken. Security keys work only
/// in the console (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_fido_supported_configurations.html);
/// the wording is the broker's: openapi/openapi.yaml.
pub(crate) const MFA_FIDO_ON_STS: &str = "MultiFactorAuthentication failed: FIDO security keys cannot be used with STS API operations. Use a virtual or hardware MFA device.";

// ---------------------------------------------------------------------------------------------
// IAM users and access keys (https://docs.aws.amazon.com/IAM/latest/APIReference/).

/// `NoSuchEntity` (404) for a user, as in ansible/ansible#45593
/// (https://github.com/ansible/ansible/issues/45593).
pub(crate) fn no_such_user(name: &str) -> String {
    format!("The user with name {name} cannot be found.")
}

/// `EntityAlreadyExists` (409) from CreateUser, as in ucopacme/aws-orgs#12
/// (https://github.com/ucopacme/aws-orgs/issues/12).
pub(crate) fn user_exists(name: &str) -> String {
    format!("User with name {name} already exists.")
}

/// `NoSuchEntity` (404) for an access key not held by the named user
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteAccessKey.html).
pub(crate) fn no_such_access_key(id: &str) -> String {
    format!("The Access Key with id {id} cannot be found.")
}

/// `LimitExceeded` (409) at a quota; `AccessKeysPerUser: 2` is quoted in bartekj/aws-tools#29
/// (https://github.com/bartekj/aws-tools/issues/29); the quotas:
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
pub(crate) fn quota_exceeded(quota: &str, limit: u32) -> String {
    format!("Cannot exceed quota for {quota}: {limit}")
}

/// `DeleteConflict` (409) from DeleteUser while access keys remain, as in
/// aws-controllers-k8s/community#2229 (https://github.com/aws-controllers-k8s/community/issues/2229).
pub(crate) const DELETE_KEYS_FIRST: &str = "Cannot delete entity, must delete access keys first.";

/// `DeleteConflict` (409) from DeleteUser while an MFA device remains, as in ansible/ansible#27247
/// (https://github.com/ansible/ansible/issues/27247).
pub(crate) const DELETE_MFA_FIRST: &str = "Cannot delete entity, must delete MFA device first.";

/// `AccessDenied` (403) for an IAM user acting beyond itself; the form is quoted for
/// iam:PassRole in alphagov/govuk-infrastructure#2439
/// (https://github.com/alphagov/govuk-infrastructure/pull/2439) and explained at
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
pub(crate) fn not_authorized(caller_arn: &str, action: &str, resource: &str) -> String {
    format!(
        "User: {caller_arn} is not authorized to perform: iam:{action} on resource: {resource} because no identity-based policy allows the iam:{action} action"
    )
}

/// `AccessDenied` (403) by an explicit deny (troubleshoot_access-denied.html, above).
pub(crate) fn explicitly_denied(caller_arn: &str, action: &str, resource: &str) -> String {
    format!(
        "User: {caller_arn} is not authorized to perform: iam:{action} on resource: {resource} with an explicit deny in an identity-based policy"
    )
}

// ---------------------------------------------------------------------------------------------
// IAM MFA devices.

/// `EntityAlreadyExists` (409) from CreateVirtualMFADevice
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateVirtualMFADevice.html).
pub(crate) const MFA_DEVICE_EXISTS: &str =
    "MFADevice entity at the same path and name already exists.";

/// `EntityAlreadyExists` (409) from EnableMFADevice for an enabled device
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_EnableMFADevice.html).
pub(crate) const MFA_DEVICE_IN_USE: &str = "MFA Device is already in use.";

/// IAM's `SerialNumber` (length 9–256), which DeleteVirtualMFADevice and EnableMFADevice check:
/// https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteVirtualMFADevice.html
pub(crate) const IAM_SERIAL_NUMBER_PATTERN: &str = r"[\w+=/:,.@-]+";

/// `InvalidAuthenticationCode` (403) from EnableMFADevice and ResyncMFADevice (same page).
pub(crate) const INVALID_AUTHENTICATION_CODE: &str = "Authentication code for device is not valid.";

/// `NoSuchEntity` (404) for a device the named user does not hold
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeactivateMFADevice.html).
pub(crate) fn no_such_mfa_device(serial: &str) -> String {
    format!("MFA Device with serial number {serial} does not exist.")
}

/// `DeleteConflict` (409) from DeleteVirtualMFADevice while the device is assigned
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteVirtualMFADevice.html).
pub(crate) const DEACTIVATE_BEFORE_DELETE: &str =
    "You must deactivate a user's virtual MFA device before you can delete it.";

/// `InvalidInput` (400): a FIDO key on EnableMFADevice or ResyncMFADevice. Security keys are
/// registered in the console only
/// (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_fido_supported_configurations.html);
/// the wording is the broker's: openapi/openapi.yaml.
pub(crate) const FIDO_NOT_THROUGH_API: &str = "FIDO security keys cannot be enabled or synchronized through the AWS CLI or API; register them through the console (sts-broker admin mfa register-fido).";

/// `AccessDenied` (403): EnableMFADevice or DeactivateMFADevice for the account root user, whose
/// MFA is managed outside the API (https://docs.aws.amazon.com/IAM/latest/UserGuide/enable-virt-mfa-for-root.html);
/// the broker's path is the operator's (README.md, openapi/openapi.yaml).
pub(crate) const ROOT_MFA_OPERATOR_ONLY: &str = "The account root user's MFA devices can be enabled or deactivated only outside the AWS API: use `sts-broker admin mfa enable-root` or `sts-broker admin mfa deactivate`.";

// ---------------------------------------------------------------------------------------------
// The gate's own texts (the broker's wording: docs/gate.md#errors). Codes and statuses are
// STS's common errors; these messages say which check failed.

/// `MissingAuthenticationToken` (403) from the gate.
pub(crate) const GATE_UNSIGNED: &str = "the request is not signed";
/// `InvalidClientTokenId` (403): an unknown or inactive long-term key.
pub(crate) const GATE_UNKNOWN_KEY: &str = "the access key is unknown or inactive";
/// `InvalidClientTokenId` (403): a session whose key or user is gone.
pub(crate) const GATE_SESSION_PARENT_GONE: &str =
    "the credentials that obtained this session are no longer valid";
/// `ExpiredToken` (403).
pub(crate) const GATE_EXPIRED: &str = "the session credentials have expired";
/// `AccessDenied` (403) under `--require-mfa`.
pub(crate) const GATE_MFA_REQUIRED: &str = "MFA-backed session credentials are required";
/// `BadGateway` (502).
pub(crate) const GATE_UPSTREAM_UNREACHABLE: &str = "The upstream service could not be reached.";

/// `AccessDenied` (403): an MFA authentication older than `--max-mfa-age`.
pub(crate) fn gate_mfa_too_old(age: i64, max: i64) -> String {
    format!("the MFA authentication is {age} seconds old; at most {max} are allowed")
}

/// `GatewayTimeout` (504).
pub(crate) fn gate_upstream_timeout(secs: u64) -> String {
    format!("The upstream service did not answer within {secs} seconds.")
}
