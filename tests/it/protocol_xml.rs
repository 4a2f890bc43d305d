//! Every reply is XML 1.0, whatever a client sends: values shown back in error messages may hold
//! characters XML does not allow (the `Char` production, https://www.w3.org/TR/xml/#charsets),
//! and the broker replaces them rather than send a document no parser can read.

use crate::support::http::{Req, send, send_signed, unescape, xml_text};
use crate::support::signing::OracleSigner;
use crate::support::texts::{self, invalid_action};
use crate::support::{TestBroker, assert_xml_error, assert_xml10};

/// U+FFFD, what a character XML forbids is shown as.
const REPLACED: char = char::REPLACEMENT_CHARACTER;

#[tokio::test]
async fn control_characters_shown_back_in_errors_are_replaced() {
    let b = TestBroker::start().await;
    // NUL, SOH, ESC, U+FFFE and U+FFFF in the action a client asked for, echoed by InvalidAction.
    let query = "Action=%00a%01b%1Bc%EF%BF%BEd%EF%BF%BF&Version=2011-06-15";
    let shown = format!("{REPLACED}a{REPLACED}b{REPLACED}c{REPLACED}d{REPLACED}");
    for req in [Req::get(query), Req::post(query)] {
        let resp = send_signed(&b, &b.root, &req).await;
        assert_xml10(&resp.body);
        assert_xml_error(
            &resp,
            400,
            "InvalidAction",
            &invalid_action(&shown, "2011-06-15"),
        );
    }
    // Tab and line feed are XML characters and stay; a carriage return travels as a reference.
    let resp = send_signed(
        &b,
        &b.root,
        &Req::get("Action=a%09b%0Ac%0Dd&Version=2011-06-15"),
    )
    .await;
    assert_xml10(&resp.body);
    assert!(resp.body.contains("a\tb\nc&#xD;d"), "{}", resp.body);
    // The same in an IAM ValidationError, which shows the value it refuses.
    let iam = OracleSigner::new(&b.root, b.now()).service("iam");
    let body = "Action=CreateUser&Version=2010-05-08&UserName=al%07ice%0B";
    let resp = send(&b, &iam.sign(&b.addr.to_string(), &Req::post(body))).await;
    assert_xml10(&resp.body);
    let value = format!("al{REPLACED}ice{REPLACED}");
    assert_xml_error(
        &resp,
        400,
        "ValidationError",
        &texts::validation(&[texts::pattern(&value, "userName", texts::USER_NAME_PATTERN)]),
    );
    assert_eq!(
        unescape(xml_text(&resp.body, "Message").unwrap())
            .matches(REPLACED)
            .count(),
        2
    );
    b.stop().await;
}
