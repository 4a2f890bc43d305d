//! The Query protocol's front door over raw HTTP: form and query encodings, the 302 for requests
//! that are not API calls, `Action`/`Version`, unknown parameters, and the exact
//! bytes of replies (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html,
//! https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

use crate::support::http::{
    FORM_UTF8, GCI, RawResponse, Req, parse_iso, send, send_signed, xml_text,
};
use crate::support::texts::{self, invalid_action};
use crate::support::{TestBroker, assert_identity, assert_xml_error};

// ---------------------------------------------------------------------------------------------
// Encodings.

#[tokio::test]
async fn post_form_with_and_without_charset_and_signed_get() {
    let b = TestBroker::start().await;
    for ct in [
        "application/x-www-form-urlencoded",
        FORM_UTF8,
        "application/x-www-form-urlencoded;charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let req = Req::post(GCI).replace("content-type", ct);
        assert_identity(&send_signed(&b, &b.root, &req).await, &b.root_arn());
    }
    assert_identity(
        &send_signed(&b, &b.root, &Req::get(GCI)).await,
        &b.root_arn(),
    );
    // GetSessionToken as the IAM User Guide shows it: a GET with everything in the query.
    let user = b.user_with_key("getter").await;
    let query = "Version=2011-06-15&Action=GetSessionToken&DurationSeconds=7200";
    let resp = send_signed(&b, &user, &Req::get(query)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let exp = parse_iso(xml_text(&resp.body, "Expiration").unwrap());
    assert_eq!(exp - b.now(), 7200);
    b.stop().await;
}

#[tokio::test]
async fn botocore_form_encoding_is_decoded() {
    let b = TestBroker::start().await;
    // quote_plus: ':' → %3A, '/' → %2F, ' ' → '+'.
    let body = "Action=GetSessionToken&Version=2011-06-15&SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Fa+b&TokenCode=123456";
    let resp = send_signed(&b, &b.root, &Req::post(body)).await;
    assert_xml_error(
        &resp,
        400,
        "ValidationError",
        &texts::validation(&[texts::pattern(
            "arn:aws:iam::123456789012:mfa/a b",
            "serialNumber",
            texts::SERIAL_NUMBER_PATTERN,
        )]),
    );
    b.stop().await;
}

#[tokio::test]
async fn malformed_form_encoding_is_a_clean_error() {
    let b = TestBroker::start().await;
    let bodies: [&[u8]; 4] = [
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%zz",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%4",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=%ff%fe",
        b"Action=GetCallerIdentity&Version=2011-06-15&X=\xff\xfe",
    ];
    for body in bodies {
        let mut req = Req::post("");
        req.body = body.to_vec();
        assert_xml_error(
            &send(&b, &req).await,
            404,
            "MalformedQueryString",
            texts::MALFORMED_QUERY_STRING,
        );
        assert_xml_error(
            &send_signed(&b, &b.root, &req).await,
            404,
            "MalformedQueryString",
            texts::MALFORMED_QUERY_STRING,
        );
    }
    let resp = send(
        &b,
        &Req::get("Action=GetCallerIdentity&Version=2011-06-15&X=%zz"),
    )
    .await;
    assert_xml_error(
        &resp,
        404,
        "MalformedQueryString",
        texts::MALFORMED_QUERY_STRING,
    );
    // The server is still fine.
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Not an API call: the redirect.

#[tokio::test]
async fn post_without_content_type_redirects_to_the_front_door() {
    let b = TestBroker::start().await;
    let req = Req::post(GCI).without("content-type");
    for resp in [send(&b, &req).await, send_signed(&b, &b.root, &req).await] {
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("location"), Some(texts::FRONT_DOOR));
        assert_eq!(resp.body, "");
        assert_eq!(resp.header("content-type"), Some("text/xml"));
        assert!(resp.header("x-amzn-requestid").is_some());
        assert!(resp.header("x-amz-sts-extended-request-id").is_some());
    }
    b.stop().await;
}

#[tokio::test]
async fn missing_action_redirects_with_the_query() {
    let b = TestBroker::start().await;
    let resp = send_signed(&b, &b.root, &Req::post("Version=2011-06-15")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some(texts::FRONT_DOOR));
    assert_eq!(resp.body, "");
    let resp = send(&b, &Req::get("Version=2011-06-15")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some(format!("{}?Version=2011-06-15", texts::FRONT_DOOR).as_str())
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Action, Version and the other parameters.

#[tokio::test]
async fn unknown_or_empty_action_is_invalid_action() {
    let b = TestBroker::start().await;
    let cases = [
        (
            "Action=NoSuchAction&Version=2011-06-15",
            invalid_action("NoSuchAction", "2011-06-15"),
        ),
        (
            "Action=&Version=2011-06-15",
            invalid_action("", "2011-06-15"),
        ),
    ];
    for (body, text) in cases {
        let resp = send_signed(&b, &b.root, &Req::post(body)).await;
        assert_xml_error(&resp, 400, "InvalidAction", &text);
        assert!(
            resp.body.starts_with(
                "<ErrorResponse xmlns=\"http://webservices.amazon.com/AWSFault/2005-15-09\">\n"
            ),
            "{}",
            resp.body
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn missing_empty_or_other_version_is_invalid_action() {
    let b = TestBroker::start().await;
    let cases = [
        (
            "Action=GetCallerIdentity",
            invalid_action("GetCallerIdentity", texts::NO_VERSION_SPECIFIED),
        ),
        (
            "Action=GetCallerIdentity&Version=",
            invalid_action("GetCallerIdentity", ""),
        ),
        (
            "Action=GetCallerIdentity&Version=2000-01-01",
            invalid_action("GetCallerIdentity", "2000-01-01"),
        ),
    ];
    for (body, text) in cases {
        let resp = send_signed(&b, &b.root, &Req::post(body)).await;
        assert_xml_error(&resp, 400, "InvalidAction", &text);
        let resp = send_signed(&b, &b.root, &Req::get(body)).await;
        assert_xml_error(&resp, 400, "InvalidAction", &text);
    }
    b.stop().await;
}

#[tokio::test]
async fn unknown_parameters_are_ignored() {
    let b = TestBroker::start().await;
    // (A parameter given twice is refused: protocol_parameters.rs.)
    let unknown = "Foo=bar&Action=GetCallerIdentity&Flag&Version=2011-06-15&RoleArn=x";
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(unknown)).await,
        &b.root_arn(),
    );
    assert_identity(
        &send_signed(&b, &b.root, &Req::get(unknown)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The exact replies.

/// Asserts the headers every STS reply carries; its request id.
fn assert_sts_headers(resp: &RawResponse) -> String {
    assert_eq!(resp.header("content-type"), Some("text/xml"));
    let rid = resp.header("x-amzn-requestid").unwrap().to_owned();
    // A UUID v4.
    assert_eq!(rid.len(), 36, "{rid}");
    assert_eq!(rid.as_bytes()[14], b'4', "{rid}");
    assert_eq!(rid.matches('-').count(), 4, "{rid}");
    let extended = resp.header("x-amz-sts-extended-request-id").unwrap();
    use base64::Engine as _;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(extended)
            .is_ok(),
        "{extended}"
    );
    assert!(resp.header("date").is_some());
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    rid
}

#[tokio::test]
async fn get_caller_identity_response_is_byte_exact() {
    let b = TestBroker::start().await;
    let resp = send_signed(&b, &b.root, &Req::post(GCI)).await;
    assert_eq!(resp.status, 200);
    let rid = assert_sts_headers(&resp);
    let acct = &b.account_id;
    assert_eq!(
        resp.body,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>arn:aws:iam::{acct}:root</Arn>\n    <UserId>{acct}</UserId>\n    <Account>{acct}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
        )
    );
    // Every request gets its own id.
    let again = send_signed(&b, &b.root, &Req::post(GCI)).await;
    assert_ne!(again.header("x-amzn-requestid"), Some(rid.as_str()));
    b.stop().await;
}

#[tokio::test]
async fn error_response_is_byte_exact() {
    let b = TestBroker::start().await;
    let resp = send(&b, &Req::post(GCI)).await;
    assert_eq!(resp.status, 403);
    let rid = assert_sts_headers(&resp);
    let message = texts::MISSING_AUTHENTICATION_TOKEN;
    assert_eq!(
        resp.body,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>MissingAuthenticationToken</Code>\n    <Message>{message}</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n"
        )
    );
    b.stop().await;
}

/// The layout of `docs/sts-wire-contract.md#success-body`, byte for byte, with the credentials of
/// `docs/sts-wire-contract.md#getsessiontoken-result`.
#[tokio::test]
async fn get_session_token_response_has_the_contract_shape() {
    let b = TestBroker::start().await;
    let user = b.user_with_key("shape").await;
    let resp = send_signed(
        &b,
        &user,
        &Req::post("Action=GetSessionToken&Version=2011-06-15"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let rid = assert_sts_headers(&resp);
    let akid = xml_text(&resp.body, "AccessKeyId").unwrap();
    let secret = xml_text(&resp.body, "SecretAccessKey").unwrap();
    let token = xml_text(&resp.body, "SessionToken").unwrap();
    let exp = xml_text(&resp.body, "Expiration").unwrap();
    assert_eq!(
        resp.body,
        format!(
            "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetSessionTokenResult>\n    <Credentials>\n      <AccessKeyId>{akid}</AccessKeyId>\n      <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{exp}</Expiration>\n    </Credentials>\n  </GetSessionTokenResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetSessionTokenResponse>\n"
        )
    );
    // Whole seconds, UTC, `Z`.
    assert_eq!(exp.len(), 20, "{exp}");
    assert!(exp.ends_with('Z'));
    assert_eq!(parse_iso(exp) - b.now(), 43_200);
    b.stop().await;
}
