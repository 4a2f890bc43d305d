//! SigV4 in the query string (presigned URLs), signed by `aws-sigv4`
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).

use crate::support::http::{GCI, Req, send};
use crate::support::signing::{OracleSigner, SpecSigner, basic_date};
use crate::support::texts;
use crate::support::{TestBroker, assert_identity, assert_xml_error};

#[tokio::test]
async fn presigned_get_verifies_until_x_amz_expires() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = OracleSigner::new(&b.root, t)
        .presigned(60)
        .sign(&host, &Req::get(GCI));
    assert!(req.query.contains("X-Amz-Signature="));
    assert!(req.query.contains("X-Amz-Expires=60"));
    assert!(req.get_header("authorization").is_none());
    assert_identity(&send(&b, &req).await, &b.root_arn());
    // Valid for 60 seconds from X-Amz-Date: the 60th second is the first one refused.
    b.clock.advance(59);
    assert_identity(&send(&b, &req).await, &b.root_arn());
    b.clock.advance(1);
    assert_xml_error(
        &send(&b, &req).await,
        400,
        "RequestExpired",
        texts::REQUEST_HAS_EXPIRED,
    );
    // A URL presigned for longer is still bound by the 15 minutes of skew STS allows.
    let t = b.now();
    let hour = OracleSigner::new(&b.root, t)
        .presigned(3600)
        .sign(&host, &Req::get(GCI));
    b.clock.advance(15 * 60);
    assert_identity(&send(&b, &hour).await, &b.root_arn());
    b.clock.advance(1);
    assert_xml_error(
        &send(&b, &hour).await,
        403,
        "SignatureDoesNotMatch",
        &texts::signature_expired(t, b.now()),
    );
    // A presigned URL dated 14 minutes ahead is valid until its own date plus X-Amz-Expires.
    let ahead = OracleSigner::new(&b.root, b.now() + 14 * 60)
        .presigned(1)
        .sign(&host, &Req::get(GCI));
    assert_identity(&send(&b, &ahead).await, &b.root_arn());
    b.clock.advance(14 * 60 + 1);
    assert_xml_error(
        &send(&b, &ahead).await,
        400,
        "RequestExpired",
        texts::REQUEST_HAS_EXPIRED,
    );
    b.stop().await;
}

/// X-Amz-Expires is 1 to 604800 seconds (seven days), an integer
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html); anything else
/// is refused however well the URL is signed.
#[tokio::test]
async fn x_amz_expires_outside_one_second_to_a_week_is_refused() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let presign = |expires: &str| {
        SpecSigner::new(&b.root, t, &["host"])
            .presign(&Req::get(GCI).header("host", &host), expires)
    };
    for (expires, text) in [
        ("abc", texts::EXPIRES_NOT_A_NUMBER),
        ("", texts::EXPIRES_NOT_A_NUMBER),
        ("1.5", texts::EXPIRES_NOT_A_NUMBER),
        ("0x10", texts::EXPIRES_NOT_A_NUMBER),
        ("-5", texts::EXPIRES_NEGATIVE),
        ("0", texts::EXPIRES_ZERO),
        ("-0", texts::EXPIRES_ZERO),
        ("604801", texts::EXPIRES_OVER_A_WEEK),
        ("999999999", texts::EXPIRES_OVER_A_WEEK),
        ("99999999999999999999999999", texts::EXPIRES_OVER_A_WEEK),
    ] {
        let resp = send(&b, &presign(expires)).await;
        assert_xml_error(&resp, 400, "IncompleteSignature", text);
    }
    for expires in ["1", "604800", "0900"] {
        assert_identity(&send(&b, &presign(expires)).await, &b.root_arn());
    }
    // A URL presigned for one second works during that second only.
    let one = presign("1");
    b.clock.advance(1);
    assert_xml_error(
        &send(&b, &one).await,
        400,
        "RequestExpired",
        texts::REQUEST_HAS_EXPIRED,
    );
    b.stop().await;
}

#[tokio::test]
async fn presigned_get_with_session_token() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    let host = b.addr.to_string();
    let req = OracleSigner::new(&session, b.now())
        .presigned(900)
        .sign(&host, &Req::get(GCI));
    assert!(req.query.contains("X-Amz-Security-Token="));
    assert!(req.get_header("x-amz-security-token").is_none());
    assert_identity(&send(&b, &req).await, &b.user_arn("alice"));
    // The token parameter removed → the session key alone is refused.
    let stripped = Req {
        query: req
            .query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Security-Token="))
            .collect::<Vec<_>>()
            .join("&"),
        ..req.clone()
    };
    assert_xml_error(
        &send(&b, &stripped).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // A tampered presigned signature.
    let mut tampered = req.clone();
    let i = tampered.query.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let c = if &tampered.query[i..=i] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.query.replace_range(i..=i, c);
    assert_xml_error(
        &send(&b, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    b.stop().await;
}

#[tokio::test]
async fn both_auth_forms_at_once_are_refused() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let presigned = OracleSigner::new(&b.root, b.now())
        .presigned(60)
        .sign(&host, &Req::get(GCI));
    let header = OracleSigner::new(&b.root, b.now()).sign(&host, &Req::get(GCI));
    let both = presigned
        .clone()
        .header("authorization", header.get_header("authorization").unwrap())
        .header("x-amz-date", header.get_header("x-amz-date").unwrap());
    assert_xml_error(
        &send(&b, &both).await,
        403,
        "SignatureDoesNotMatch",
        texts::BOTH_AUTH_FORMS,
    );
    b.stop().await;
}

#[tokio::test]
async fn presigned_url_lacking_parameters_is_incomplete_signature() {
    let b = TestBroker::start().await;
    let query = format!(
        "{GCI}&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={}",
        basic_date(b.now())
    );
    assert_xml_error(
        &send(&b, &Req::get(&query)).await,
        400,
        "IncompleteSignature",
        &texts::presigned_query_missing(&[
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
        ]),
    );
    b.stop().await;
}
