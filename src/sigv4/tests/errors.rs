//! Every failure with its exact AWS text and kind, plus the acceptance rules around them
//! (lenient whitespace, unsigned extra headers, `Date` fallback, `X-Amz-Expires` bounds).

use super::super::date::AmzDate;
use super::super::{
    AuthForm, CredentialScope, HttpRequest, SIGNATURE_MISMATCH_MESSAGE, ScopePolicy, SigV4Error,
    SigV4ErrorKind, SignedRequest, check_scope_and_time, derive_signing_key, verify_signature,
};
use super::{
    OracleSign, Req, SUITE_SECRET, oracle_sign, regions, signed_sts_request, sreq, sts_server,
};

const VANILLA_SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
/// 2015-08-30T12:36:00Z, the test-suite instant.
const T2015: i64 = 1_440_938_160;
/// An instant for oracle-signed STS requests (2026-01-01T00:00:00Z).
const T2026: i64 = 1_767_225_600;

/// `GET /` from the test suite with the given `Authorization` value.
fn suite_get(authorization: &str) -> Req {
    sreq(&format!(
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:{authorization}"
    ))
}

fn vanilla_authorization() -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
    )
}

fn parse_err(req: &Req) -> SigV4Error {
    req.parse().expect_err("parse should fail")
}

fn suite_server_check(req: &Req) -> Result<Option<SignedRequest>, SigV4Error> {
    let allowed = regions(&["us-east-1"]);
    let server = super::Server {
        regions: &allowed,
        service: "service",
        skew: 900,
        now: T2015,
        secret: SUITE_SECRET,
    };
    server.authenticate(req)
}

fn assert_error(err: &SigV4Error, kind: SigV4ErrorKind, text: &str) {
    assert_eq!(err.to_string(), text, "{err:?}");
    assert_eq!(err.kind(), kind, "{err:?}");
}

#[test]
fn kinds_carry_aws_codes_and_statuses() {
    assert_eq!(
        SigV4ErrorKind::IncompleteSignature.code(),
        "IncompleteSignature"
    );
    assert_eq!(SigV4ErrorKind::IncompleteSignature.http_status(), 400);
    assert_eq!(
        SigV4ErrorKind::SignatureDoesNotMatch.code(),
        "SignatureDoesNotMatch"
    );
    assert_eq!(SigV4ErrorKind::SignatureDoesNotMatch.http_status(), 403);
    assert_eq!(SigV4ErrorKind::RequestExpired.code(), "RequestExpired");
    assert_eq!(SigV4ErrorKind::RequestExpired.http_status(), 400);
}

#[test]
fn no_sigv4_at_all_is_none() {
    let plain = sreq(
        "POST / HTTP/1.1\nHost:sts.amazonaws.com\nX-Amz-Date:20150830T123600Z\n\nAction=GetCallerIdentity",
    );
    assert!(plain.parse().unwrap().is_none());
    let mut stray = plain.clone();
    stray.query = "X-Amz-Signature=00&X-Amz-Credential=a".to_owned();
    assert!(stray.parse().unwrap().is_none());
    // A presigned URL for another algorithm is unauthenticated (AWS: MissingAuthenticationToken).
    let mut other = plain;
    other.query = "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Credential=a%2Fb&X-Amz-Signature=00&X-Amz-SignedHeaders=host&X-Amz-Date=20150830T123600Z".to_owned();
    assert!(other.parse().unwrap().is_none());
}

#[test]
fn both_forms_at_once() {
    let mut req = suite_get(&vanilla_authorization());
    req.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_owned();
    assert_error(
        &parse_err(&req),
        SigV4ErrorKind::SignatureDoesNotMatch,
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    );
}

#[test]
fn missing_equal_sign_matches_observed_sts_text() {
    // Verbatim from boto/boto3#2280 (a space after `Credential=`).
    let header = "AWS4-HMAC-SHA256 Credential= AKIA3E3TXYEALSHHLVWT/20200122/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=cbeed485aed23c03ded6f1ffdefda822d8e22f92ced62d2854947378da569a8e";
    assert_error(
        &parse_err(&suite_get(header)),
        SigV4ErrorKind::IncompleteSignature,
        "'AKIA3E3TXYEALSHHLVWT/20200122/us-east-1/sts/aws4_request' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential= AKIA3E3TXYEALSHHLVWT/20200122/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=cbeed485aed23c03ded6f1ffdefda822d8e22f92ced62d2854947378da569a8e'.",
    );
}

#[test]
fn incomplete_authorization_lists_each_missing_part() {
    // Empty header, no date at all (observed text in aws-samples/amazon-elasticsearch-service-with-authentication#4).
    let empty = sreq("GET / HTTP/1.1\nHost:example.amazonaws.com\nAuthorization:");
    assert_error(
        &parse_err(&empty),
        SigV4ErrorKind::IncompleteSignature,
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=",
    );
    // A SigV2 header reaching a SigV4 service (shape of aws/aws-sdk-js#4285).
    let v2 = suite_get("AWS AKIDEXAMPLE:ZmFrZXNpZ25hdHVyZWZha2VzaWduYXQ=");
    assert_error(
        &parse_err(&v2),
        SigV4ErrorKind::IncompleteSignature,
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS AKIDEXAMPLE:ZmFrZXNpZ25hdHVyZWZha2VzaWduYXQ=",
    );
    let no_sig = suite_get("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host");
    assert_error(
        &parse_err(&no_sig),
        SigV4ErrorKind::IncompleteSignature,
        "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host",
    );
    let no_date = sreq(&format!(
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nAuthorization:{}",
        vanilla_authorization()
    ));
    assert_eq!(
        parse_err(&no_date).to_string(),
        format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={}",
            vanilla_authorization()
        )
    );
}

#[test]
fn incomplete_query_lists_each_missing_parameter() {
    let mut req = sreq("GET / HTTP/1.1\nHost:example.amazonaws.com");
    req.query = "X-Amz-Algorithm".to_owned();
    // The same text mhart/dynalite asserts for `?X-Amz-Algorithm`.
    assert_error(
        &parse_err(&req),
        SigV4ErrorKind::IncompleteSignature,
        "AWS query-string parameters must include 'X-Amz-Algorithm'. AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must include 'X-Amz-Date'. Re-examine the query-string parameters.",
    );
    req.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Signature=".to_owned();
    assert_eq!(
        parse_err(&req).to_string(),
        "AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must include 'X-Amz-Date'. Re-examine the query-string parameters."
    );
}

#[test]
fn a_presigned_parameter_given_twice_is_refused() {
    let allowed = regions(&["us-east-1"]);
    let url = signed_sts_request(T2026, true, Some("tok"));
    for name in [
        "X-Amz-Expires",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        let mut twice = url.clone();
        let value = twice
            .query
            .split('&')
            .find(|p| p.starts_with(&format!("{name}=")))
            .unwrap()
            .to_owned();
        // Spelled differently, the name is the same once decoded.
        twice.query = format!("{}&{}", twice.query, value.replacen("X-", "%58-", 1));
        assert_error(
            &sts_server(&allowed, T2026)
                .authenticate(&twice)
                .unwrap_err(),
            SigV4ErrorKind::IncompleteSignature,
            &format!(
                "AWS query-string parameter '{name}' is given more than once. Re-examine the query-string parameters."
            ),
        );
    }
}

#[test]
fn unsupported_algorithm() {
    let header = vanilla_authorization().replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512");
    assert_error(
        &parse_err(&suite_get(&header)),
        SigV4ErrorKind::IncompleteSignature,
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'.",
    );
}

#[test]
fn malformed_credential() {
    for credential in [
        "AKIDEXAMPLE/20150830/us-east-1/service",
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/x",
        "",
    ] {
        let header = format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
        );
        assert_error(
            &parse_err(&suite_get(&header)),
            SigV4ErrorKind::IncompleteSignature,
            &format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
            ),
        );
    }
}

#[test]
fn malformed_dates() {
    let authz = vanilla_authorization();
    let bad_amz = sreq(&format!(
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:2015-08-30T12:36:00Z\nAuthorization:{authz}"
    ));
    assert_error(
        &parse_err(&bad_amz),
        SigV4ErrorKind::IncompleteSignature,
        "Date must be in ISO-8601 'basic format'. Got '2015-08-30T12:36:00Z'. See http://en.wikipedia.org/wiki/ISO_8601",
    );
    // X-Amz-Date wins over a valid Date header.
    let mut both = bad_amz.clone();
    both = both.header("date", "Sun, 30 Aug 2015 12:36:00 GMT");
    assert!(matches!(parse_err(&both), SigV4Error::MalformedDate { .. }));
    let bad_http = sreq(&format!(
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nDate:yesterday\nAuthorization:{authz}"
    ));
    assert_eq!(
        parse_err(&bad_http).to_string(),
        "Date must be in ISO-8601 'basic format'. Got 'yesterday'. See http://en.wikipedia.org/wiki/ISO_8601"
    );
    let mut query = sreq("GET / HTTP/1.1\nHost:example.amazonaws.com");
    query.query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830&X-Amz-SignedHeaders=host&X-Amz-Signature={VANILLA_SIG}"
    );
    assert!(
        matches!(parse_err(&query), SigV4Error::MalformedDate { value } if value == "20150830")
    );
}

#[test]
fn host_must_be_signed() {
    for signed in ["x-amz-date", "", "hostx;x-amz-date"] {
        let header = vanilla_authorization().replace("host;x-amz-date", signed);
        assert_error(
            &parse_err(&suite_get(&header)),
            SigV4ErrorKind::SignatureDoesNotMatch,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        );
    }
    // verify_signature re-checks it for hand-built SignedRequests.
    let req = suite_get(&vanilla_authorization());
    let mut signed = req.parse().unwrap().unwrap();
    signed.signed_headers = vec!["x-amz-date".to_owned()];
    let key = derive_signing_key(SUITE_SECRET.as_bytes(), "20150830", "us-east-1", "service");
    let err = req
        .with(|http| verify_signature(http, &signed, &key))
        .unwrap_err();
    assert!(matches!(err, SigV4Error::HostNotSigned));
}

#[test]
fn every_signed_header_must_exist() {
    let header = vanilla_authorization().replace("host;x-amz-date", "host;my-header1;x-amz-date");
    assert_error(
        &suite_server_check(&suite_get(&header)).unwrap_err(),
        SigV4ErrorKind::IncompleteSignature,
        "'my-header1' is named as a SignedHeader, but it does not exist in the HTTP request.",
    );
}

#[test]
fn malformed_signatures_cannot_match() {
    for signature in [
        VANILLA_SIG.to_ascii_uppercase(),
        VANILLA_SIG[..63].to_owned(),
        format!("{VANILLA_SIG}0"),
        format!("zz{}", &VANILLA_SIG[2..]),
        String::new(),
    ] {
        let header = vanilla_authorization().replace(VANILLA_SIG, &signature);
        let err = parse_err(&suite_get(&header));
        assert!(
            matches!(err, SigV4Error::MalformedSignature),
            "{signature:?}"
        );
        assert_error(
            &err,
            SigV4ErrorKind::SignatureDoesNotMatch,
            SIGNATURE_MISMATCH_MESSAGE,
        );
    }
}

#[test]
fn payload_hash_header_must_state_the_body_hash() {
    let good = signed_sts_request(T2026, false, None);
    let allowed = regions(&["us-east-1"]);
    assert!(
        sts_server(&allowed, T2026)
            .authenticate(&good)
            .unwrap()
            .is_some()
    );
    for stated in [
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ] {
        let req = good.clone().header("x-amz-content-sha256", stated);
        assert_error(
            &sts_server(&allowed, T2026).authenticate(&req).unwrap_err(),
            SigV4ErrorKind::SignatureDoesNotMatch,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
    }
}

#[test]
fn wrong_secret_is_a_mismatch() {
    let req = suite_get(&vanilla_authorization());
    let signed = req.parse().unwrap().unwrap();
    let key = derive_signing_key(b"not the secret", "20150830", "us-east-1", "service");
    let err = req
        .with(|http| verify_signature(http, &signed, &key))
        .unwrap_err();
    assert_error(
        &err,
        SigV4ErrorKind::SignatureDoesNotMatch,
        SIGNATURE_MISMATCH_MESSAGE,
    );
    assert_eq!(
        SIGNATURE_MISMATCH_MESSAGE,
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    );
}

/// A parsed request with the given date and scope, for the key-free checks.
fn signed_at(
    basic: &str,
    date: &str,
    region: &str,
    service: &str,
    terminator: &str,
) -> SignedRequest {
    SignedRequest {
        form: AuthForm::Header,
        scope: CredentialScope {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            terminator: terminator.to_owned(),
        },
        signed_headers: vec!["host".to_owned()],
        signature: [0; 32],
        date: AmzDate::parse_basic(basic).unwrap(),
        security_token: None,
        expires_secs: None,
    }
}

fn check(
    signed: &SignedRequest,
    allowed: &[&str],
    skew: i64,
    now_basic: &str,
) -> Result<(), SigV4Error> {
    let allowed = regions(allowed);
    let policy = ScopePolicy {
        regions: &allowed,
        service: "sts",
        max_skew_secs: skew,
    };
    check_scope_and_time(
        signed,
        &policy,
        AmzDate::parse_basic(now_basic).unwrap().unix(),
    )
}

#[test]
fn skew_messages_match_observed_sts_text() {
    // aws/aws-cli#6676 and QT-DevOps/DevOpsIssues#989, verbatim.
    let old = signed_at(
        "20220127T001427Z",
        "20220127",
        "us-east-1",
        "sts",
        "aws4_request",
    );
    assert_error(
        &check(&old, &["us-east-1"], 900, "20220127T015928Z").unwrap_err(),
        SigV4ErrorKind::SignatureDoesNotMatch,
        "Signature expired: 20220127T001427Z is now earlier than 20220127T014428Z (20220127T015928Z - 15 min.)",
    );
    let early = signed_at(
        "20210112T194419Z",
        "20210112",
        "us-east-1",
        "sts",
        "aws4_request",
    );
    assert_error(
        &check(&early, &["us-east-1"], 900, "20210112T071125Z").unwrap_err(),
        SigV4ErrorKind::SignatureDoesNotMatch,
        "Signature not yet current: 20210112T194419Z is still later than 20210112T072625Z (20210112T071125Z + 15 min.)",
    );
    assert_eq!(
        check(&old, &["us-east-1"], 300, "20220127T015928Z")
            .unwrap_err()
            .to_string(),
        "Signature expired: 20220127T001427Z is now earlier than 20220127T015428Z (20220127T015928Z - 5 min.)"
    );
    assert_eq!(
        check(&early, &["us-east-1"], 90, "20210112T071125Z")
            .unwrap_err()
            .to_string(),
        "Signature not yet current: 20210112T194419Z is still later than 20210112T071255Z (20210112T071125Z + 90 sec.)"
    );
}

#[test]
fn skew_window_is_inclusive() {
    let signed = signed_at(
        "20260101T120000Z",
        "20260101",
        "us-east-1",
        "sts",
        "aws4_request",
    );
    for (now, ok) in [
        ("20260101T120000Z", true),
        ("20260101T121400Z", true),
        ("20260101T114600Z", true),
        ("20260101T121500Z", true),
        ("20260101T114500Z", true),
        ("20260101T121501Z", false),
        ("20260101T114459Z", false),
        ("20260101T121600Z", false),
        ("20260101T114400Z", false),
    ] {
        assert_eq!(
            check(&signed, &["us-east-1"], 900, now).is_ok(),
            ok,
            "{now}"
        );
    }
    // Extreme clocks saturate instead of overflowing.
    let policy_regions = regions(&["us-east-1"]);
    for now in [i64::MIN, i64::MAX] {
        let policy = ScopePolicy {
            regions: &policy_regions,
            service: "sts",
            max_skew_secs: i64::MAX,
        };
        let _ = check_scope_and_time(&signed, &policy, now);
    }
}

#[test]
fn scope_clauses_match_aws_text() {
    let now = "20260101T120000Z";
    // Region text verbatim from cognitect-labs/aws-api#27, trailing space included.
    let region = signed_at(now, "20260101", "ap-southeast-2", "sts", "aws4_request");
    assert_error(
        &check(&region, &["us-east-1"], 900, now).unwrap_err(),
        SigV4ErrorKind::SignatureDoesNotMatch,
        "Credential should be scoped to a valid region, not 'ap-southeast-2'. ",
    );
    let service = signed_at(now, "20260101", "us-east-1", "s3", "aws4_request");
    assert_eq!(
        check(&service, &["us-east-1"], 900, now)
            .unwrap_err()
            .to_string(),
        "Credential should be scoped to correct service: 'sts'. "
    );
    let terminator = signed_at(now, "20260101", "us-east-1", "sts", "aws4_reqest");
    assert_eq!(
        check(&terminator, &["us-east-1"], 900, now)
            .unwrap_err()
            .to_string(),
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_reqest'. "
    );
    let date = signed_at(now, "20251231", "us-east-1", "sts", "aws4_request");
    assert_eq!(
        check(&date, &["us-east-1"], 900, now)
            .unwrap_err()
            .to_string(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20251231' != '20260101', from '20260101T120000Z'. "
    );
    let all = signed_at(now, "20251231", "mars-1", "iam", "x");
    assert_eq!(
        check(&all, &["us-east-1"], 900, now)
            .unwrap_err()
            .to_string(),
        "Credential should be scoped to a valid region, not 'mars-1'. Credential should be scoped to correct service: 'sts'. Credential should be scoped with a valid terminator: 'aws4_request', not 'x'. Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20251231' != '20260101', from '20260101T120000Z'. "
    );
    // botocore's region_name='' signs an empty region; allowed only when configured.
    let empty = signed_at(now, "20260101", "", "sts", "aws4_request");
    assert!(check(&empty, &["us-east-1", ""], 900, now).is_ok());
    assert_eq!(
        check(&empty, &["us-east-1"], 900, now)
            .unwrap_err()
            .to_string(),
        "Credential should be scoped to a valid region, not ''. "
    );
    assert!(check(&region, &["us-east-1", "ap-southeast-2"], 900, now).is_ok());
}

#[test]
fn header_whitespace_is_lenient_and_last_value_wins() {
    for header in [
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date,Signature={VANILLA_SIG}"
        ),
        format!(
            "  AWS4-HMAC-SHA256   Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request ,  SignedHeaders=host;x-amz-date,\tSignature={VANILLA_SIG}  "
        ),
        format!(
            "AWS4-HMAC-SHA256 Signature=00, Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
        ),
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}, Extra=ignored"
        ),
    ] {
        assert!(
            suite_server_check(&suite_get(&header)).unwrap().is_some(),
            "{header}"
        );
    }
}

#[test]
fn unsigned_headers_do_not_matter() {
    // curl signs only host and x-amz-date and sends its Content-Type unsigned; user-agent is
    // never signed by the SDKs.
    let signed = oracle_sign(&OracleSign {
        method: "POST",
        host: "localhost:8443",
        path: "/",
        query: "",
        headers: &[],
        body: b"Action=GetCallerIdentity&Version=2011-06-15",
        akid: "AKIAIOSFODNN7EXAMPLE",
        secret: SUITE_SECRET,
        region: "us-east-1",
        service: "sts",
        token: None,
        presigned: false,
        content_sha256_header: false,
        unix: T2026,
    });
    let req = signed
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "curl/8.5.0")
        .header("accept", "*/*");
    let allowed = regions(&["us-east-1"]);
    let out = sts_server(&allowed, T2026)
        .authenticate(&req)
        .unwrap()
        .unwrap();
    assert_eq!(out.signed_headers, ["host", "x-amz-date"]);
}

#[test]
fn presigned_validity_is_x_amz_expires_within_the_skew_window() {
    let allowed = regions(&["us-east-1"]);
    let url = signed_sts_request(T2026, true, Some("session-token-value"));
    assert!(url.query.contains("X-Amz-Expires=3600"));
    let ok = sts_server(&allowed, T2026 + 899)
        .authenticate(&url)
        .unwrap()
        .unwrap();
    assert_eq!(ok.form, AuthForm::Presigned);
    assert_eq!(ok.expires_secs, Some(3600));
    assert_eq!(ok.security_token.as_deref(), Some("session-token-value"));
    // An hour asked for; the skew still ends it after 15 minutes.
    let err = sts_server(&allowed, T2026 + 1000)
        .authenticate(&url)
        .unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureExpired { .. }), "{err}");
    // Past its own expiry, a presigned request is expired, whatever the skew allows.
    let mut short = signed_at(
        "20260101T000000Z",
        "20260101",
        "us-east-1",
        "sts",
        "aws4_request",
    );
    short.form = AuthForm::Presigned;
    short.expires_secs = Some(60);
    assert!(check(&short, &["us-east-1"], 900, "20260101T000059Z").is_ok());
    assert_error(
        &check(&short, &["us-east-1"], 900, "20260101T000100Z").unwrap_err(),
        SigV4ErrorKind::RequestExpired,
        "Request has expired",
    );
    // Dated ahead of the server (within the skew), it lasts until its own date + expires.
    assert!(check(&short, &["us-east-1"], 900, "20251231T235000Z").is_ok());
    // Extreme values saturate.
    short.expires_secs = Some(i64::MAX);
    assert!(check(&short, &["us-east-1"], 900, "20260101T000100Z").is_ok());
}

#[test]
fn x_amz_expires_must_be_one_second_to_a_week() {
    let url = signed_sts_request(T2026, true, None);
    let with = |value: &str| {
        let mut req = url.clone();
        req.query = req
            .query
            .replace("X-Amz-Expires=3600", &format!("X-Amz-Expires={value}"));
        req.parse()
    };
    for (value, want) in [
        ("abc", "X-Amz-Expires should be a number"),
        ("", "X-Amz-Expires should be a number"),
        ("1e3", "X-Amz-Expires should be a number"),
        ("%2B", "X-Amz-Expires should be a number"),
        ("-", "X-Amz-Expires should be a number"),
        ("%FF", "X-Amz-Expires should be a number"),
        ("-5", "X-Amz-Expires must be non-negative"),
        (
            "-99999999999999999999999",
            "X-Amz-Expires must be non-negative",
        ),
        ("0", "X-Amz-Expires must be at least 1 second"),
        ("-000", "X-Amz-Expires must be at least 1 second"),
        (
            "604801",
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds",
        ),
        (
            "99999999999999999999999",
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds",
        ),
    ] {
        let err = with(value).unwrap_err();
        assert_error(&err, SigV4ErrorKind::IncompleteSignature, want);
    }
    for (value, secs) in [("1", 1), ("604800", 604_800), ("%2B60", 60), ("00060", 60)] {
        assert_eq!(
            with(value).unwrap().unwrap().expires_secs,
            Some(secs),
            "{value}"
        );
    }
    // Without X-Amz-Expires, the skew alone bounds the URL; the header form has none.
    let mut bare = url.clone();
    bare.query = bare.query.replace("X-Amz-Expires=3600&", "");
    assert_eq!(bare.parse().unwrap().unwrap().expires_secs, None);
    let header = signed_sts_request(T2026, false, None);
    assert_eq!(header.parse().unwrap().unwrap().expires_secs, None);
}

#[test]
fn debug_output_redacts_secrets() {
    let req = signed_sts_request(T2026, false, Some("very-secret-session-token"));
    let signed = req.parse().unwrap().unwrap();
    let shown = format!("{signed:?}");
    assert!(!shown.contains("very-secret-session-token"), "{shown}");
    assert!(shown.contains("<redacted>"));
    req.with(|http: &HttpRequest<'_>| {
        let shown = format!("{http:?}");
        assert!(!shown.contains("very-secret-session-token"), "{shown}");
        assert!(!shown.contains("Signature="), "{shown}");
    });
    let key = derive_signing_key(SUITE_SECRET.as_bytes(), "20260101", "us-east-1", "sts");
    assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
}
