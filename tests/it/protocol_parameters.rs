//! The parts of a request a signature does not cover never change what it does. `Content-Type`
//! is often unsigned (curl --aws-sigv4 never signs it), and the order of the query string is
//! not signed either (the canonical query is sorted: create-signed-request.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). So a parameter
//! given twice, or a body that would not be read, is refused with `InvalidQueryParameter`
//! (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html) rather than resolved
//! one way or the other.

use crate::support::http::{GCI, Req, send, send_signed, xml_text};
use crate::support::mfa::enabled_device;
use crate::support::signing::{OracleSigner, SpecSigner, basic_date, uri_encode};
use crate::support::texts::{self, parameter_given_twice};
use crate::support::{Creds, TestBroker, assert_identity, assert_xml_error};

/// `POST /?query` with a form body, signed as curl signs it: `host` and `x-amz-date` only, so
/// `Content-Type` travels unsigned.
fn split_request(b: &TestBroker, creds: &Creds, query: &str, body: &str) -> Req {
    let t = b.now();
    let mut req = Req::post(body)
        .header("host", &b.addr.to_string())
        .header("x-amz-date", &basic_date(t));
    req.query = query.to_owned();
    SpecSigner::new(creds, t, &["host", "x-amz-date"]).sign(&req)
}

#[tokio::test]
async fn an_unsigned_content_type_cannot_drop_the_mfa_code() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let code = device.code_at(b.now(), 0);
    let body = format!(
        "SerialNumber={}&TokenCode={code}",
        uri_encode(device.serial.as_bytes())
    );
    let signed = split_request(
        &b,
        &alice,
        "Action=GetSessionToken&Version=2011-06-15",
        &body,
    );
    // On the path, Content-Type becomes text/plain: the form body, and its code, would be
    // dropped and a session without MFA issued. It is refused, and nothing is spent.
    for content_type in ["text/plain", "application/json", "multipart/form-data"] {
        let tampered = signed.clone().replace("content-type", content_type);
        assert_xml_error(
            &send(&b, &tampered).await,
            400,
            "InvalidQueryParameter",
            texts::BODY_NOT_READ,
        );
    }
    // As a GET, the body would not be read either.
    let mut get = signed.clone();
    get.method = "GET".into();
    assert_xml_error(
        &send(&b, &get).await,
        400,
        "InvalidQueryParameter",
        texts::BODY_NOT_READ,
    );
    // The request as signed still works, with its code: an MFA session.
    let resp = send(&b, &signed).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let session = Creds::new(
        xml_text(&resp.body, "AccessKeyId").unwrap(),
        xml_text(&resp.body, "SecretAccessKey").unwrap(),
        Some(xml_text(&resp.body, "SessionToken").unwrap()),
    );
    // IAM takes only MFA sessions.
    b.iam(&session).list_mfa_devices().send().await.unwrap();
    let lines = b.audit_lines();
    let issued: Vec<_> = lines
        .iter()
        .filter(|e| e["action"] == "GetSessionToken" && e["outcome"] == "success")
        .collect();
    assert_eq!(issued.len(), 1, "{lines:?}");
    assert_eq!(issued[0]["mfa_authenticated"], true);
    b.stop().await;
}

#[tokio::test]
async fn a_repeated_action_cannot_be_chosen_by_reordering_the_query() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let host = b.addr.to_string();
    let signed = OracleSigner::new(&alice, b.now()).sign(
        &host,
        &Req::get("Action=GetCallerIdentity&Version=2011-06-15&Action=GetSessionToken"),
    );
    // The same signature covers the query in any order; whichever Action comes first, the
    // request is refused.
    let reordered = Req {
        query: "Action=GetSessionToken&Version=2011-06-15&Action=GetCallerIdentity".into(),
        ..signed.clone()
    };
    for req in [&signed, &reordered] {
        assert_xml_error(
            &send(&b, req).await,
            400,
            "InvalidQueryParameter",
            &parameter_given_twice("Action"),
        );
    }
    assert!(
        !b.audit_text().contains("GetSessionToken"),
        "{}",
        b.audit_text()
    );
    b.stop().await;
}

#[tokio::test]
async fn a_parameter_given_twice_anywhere_is_refused() {
    let b = TestBroker::start().await;
    let cases = [
        // Twice in the body, twice in the query, once in each, in any spelling.
        (
            "",
            "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900&DurationSeconds=3600",
            "DurationSeconds",
        ),
        (
            "Action=GetCallerIdentity&Version=2011-06-15&Version=2011-06-15",
            "",
            "Version",
        ),
        ("Action=GetCallerIdentity", GCI, "Action"),
        (
            "Version=2011-06-15",
            "Action=GetCallerIdentity&%56ersion=2011-06-15",
            "Version",
        ),
        (
            "",
            "Action=GetCallerIdentity&Version=2011-06-15&Flag&Flag=",
            "Flag",
        ),
    ];
    for (query, body, name) in cases {
        let mut req = Req::post(body);
        req.query = query.to_owned();
        assert_xml_error(
            &send_signed(&b, &b.root, &req).await,
            400,
            "InvalidQueryParameter",
            &parameter_given_twice(name),
        );
    }
    // Parameters split between the query and a form body, each once, are one request.
    let mut split = Req::post("Version=2011-06-15");
    split.query = "Action=GetCallerIdentity".into();
    assert_identity(&send_signed(&b, &b.root, &split).await, &b.root_arn());
    // An API call in the query with an empty non-form body loses nothing: it is answered.
    let mut empty = Req::post("").replace("content-type", "text/plain");
    empty.query = GCI.into();
    assert_identity(&send_signed(&b, &b.root, &empty).await, &b.root_arn());
    // Without an Action anywhere a POST that is not a form is still not an API call.
    let not_form = Req::post(GCI).replace("content-type", "text/plain");
    let resp = send_signed(&b, &b.root, &not_form).await;
    assert_eq!(resp.status, 302, "{}", resp.body);
    assert_eq!(resp.header("location"), Some(texts::FRONT_DOOR));
    b.stop().await;
}
