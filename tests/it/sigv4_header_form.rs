//! SigV4 in the `Authorization` header, over raw HTTP: requests signed by `aws-sigv4` (the
//! oracle) or by hand from the published procedure, every refusal asserted by status, code and
//! exact message (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-troubleshooting.html).

use sha2::{Digest as _, Sha256};

use crate::support::http::{GCI, Req, http_date, send, send_signed};
use crate::support::signing::{OracleSigner, SpecSigner, basic_date};
use crate::support::texts;
use crate::support::{Creds, Setup, TestBroker, assert_identity, assert_xml_error};

#[tokio::test]
async fn spec_signer_agrees_with_aws_sigv4() {
    // Guards the hand-written signer used below: same request, same signature as the oracle.
    let creds = Creds::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let t = 1_700_000_000;
    let host = "127.0.0.1:8080";
    let req = Req::get("Version=2011-06-15&Action=GetCallerIdentity&Zeta=%7e&Alpha=a+b&Flag")
        .header("x-amz-meta-note", "  a   b ");
    let oracle = OracleSigner::new(&creds, t).sign(host, &req);
    let auth = oracle.get_header("authorization").unwrap();
    let mut spec = SpecSigner::new(&creds, t, &["host", "x-amz-date", "x-amz-meta-note"]);
    spec.signed.sort();
    let with_host = req
        .clone()
        .header("host", host)
        .header("x-amz-date", &basic_date(t));
    assert!(
        auth.ends_with(&format!("Signature={}", spec.signature(&with_host))),
        "{auth}\n{}",
        spec.canonical_request(&with_host)
    );
}

// ---------------------------------------------------------------------------------------------
// The date, the payload hash and the signed headers.

#[tokio::test]
async fn date_header_is_the_fallback_for_x_amz_date() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = Req::post(GCI)
        .header("host", &host)
        .header("date", &http_date(t));
    let signed = SpecSigner::new(&b.root, t, &["content-type", "date", "host"]).sign(&req);
    assert!(signed.get_header("x-amz-date").is_none());
    assert_identity(&send(&b, &signed).await, &b.root_arn());
    // The Date header counts for the skew as X-Amz-Date does.
    let old = t - 16 * 60;
    let req = Req::post(GCI)
        .header("host", &host)
        .header("date", &http_date(old));
    let signed = SpecSigner::new(&b.root, old, &["content-type", "date", "host"]).sign(&req);
    assert_xml_error(
        &send(&b, &signed).await,
        403,
        "SignatureDoesNotMatch",
        &texts::signature_expired(old, t),
    );
    b.stop().await;
}

#[tokio::test]
async fn x_amz_content_sha256_must_match_the_body() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    // Matching (signed by the oracle).
    let req = OracleSigner::new(&b.root, b.now())
        .with_content_sha256()
        .sign(&host, &Req::post(GCI));
    let body_hash = hex::encode(Sha256::digest(GCI.as_bytes()));
    assert_eq!(
        req.get_header("x-amz-content-sha256"),
        Some(body_hash.as_str())
    );
    assert_identity(&send(&b, &req).await, &b.root_arn());
    // Not matching: UNSIGNED-PAYLOAD, or the hash of another body, each signed as stated.
    let other = hex::encode(Sha256::digest(b"Action=GetSessionToken&Version=2011-06-15"));
    for stated in ["UNSIGNED-PAYLOAD", other.as_str()] {
        let req = Req::post(GCI)
            .header("host", &host)
            .header("x-amz-content-sha256", stated)
            .header("x-amz-date", &basic_date(b.now()));
        let mut spec = SpecSigner::new(
            &b.root,
            b.now(),
            &["content-type", "host", "x-amz-content-sha256", "x-amz-date"],
        );
        spec.payload_hash = Some(stated.to_owned());
        assert_xml_error(
            &send(&b, &spec.sign(&req)).await,
            403,
            "SignatureDoesNotMatch",
            texts::CONTENT_SHA256_MISMATCH,
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn host_must_be_signed() {
    let b = TestBroker::start().await;
    let t = b.now();
    let req = Req::post(GCI).header("x-amz-date", &basic_date(t));
    let signed = SpecSigner::new(&b.root, t, &["content-type", "x-amz-date"]).sign(&req);
    assert_xml_error(
        &send(&b, &signed).await,
        403,
        "SignatureDoesNotMatch",
        texts::HOST_NOT_SIGNED,
    );
    b.stop().await;
}

#[tokio::test]
async fn signed_header_values_are_trimmed_folded_and_duplicates_joined() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let req = Req::post(GCI)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t))
        .header("x-amz-meta-note", "  a   b    c  ")
        .header("x-amz-meta-dup", "one")
        .header("x-amz-meta-dup", "two  three");
    let spec = SpecSigner::new(
        &b.root,
        t,
        &[
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-meta-dup",
            "x-amz-meta-note",
        ],
    );
    assert!(
        spec.canonical_request(&req)
            .contains("\nx-amz-meta-dup:one,two three\nx-amz-meta-note:a b c\n")
    );
    let signed = spec.sign(&req);
    assert_identity(&send(&b, &signed).await, &b.root_arn());
    // Only SignedHeaders count: unsigned headers may be added or changed freely.
    let extra = signed
        .clone()
        .header("user-agent", "curl/8")
        .header("x-unsigned", "anything")
        .header("x-amzn-trace-id", "Root=1-0");
    assert_identity(&send(&b, &extra).await, &b.root_arn());
    // Changing a signed header's value breaks the signature; swapping the duplicates' order too.
    let changed = signed.clone().replace("x-amz-meta-note", "a b d");
    assert_xml_error(
        &send(&b, &changed).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    let swapped = signed
        .clone()
        .without("x-amz-meta-dup")
        .header("x-amz-meta-dup", "two  three")
        .header("x-amz-meta-dup", "one");
    assert_xml_error(
        &send(&b, &swapped).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    // A signed header that is not sent.
    let missing = signed.clone().without("x-amz-meta-note");
    assert_xml_error(
        &send(&b, &missing).await,
        400,
        "IncompleteSignature",
        &texts::signed_header_absent("x-amz-meta-note"),
    );
    b.stop().await;
}

#[tokio::test]
async fn query_is_sorted_rfc3986_with_bare_keys_as_key_equals() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    let query = "Version=2011-06-15&Action=GetCallerIdentity&Zeta=%7e&Alpha=a+b&Flag&Beta=%2F%3a";
    let req = Req::get(query)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t));
    let spec = SpecSigner::new(&b.root, t, &["host", "x-amz-date"]);
    assert_eq!(
        SpecSigner::canonical_query(query),
        "Action=GetCallerIdentity&Alpha=a%20b&Beta=%2F%3A&Flag=&Version=2011-06-15&Zeta=~"
    );
    assert_identity(&send(&b, &spec.sign(&req)).await, &b.root_arn());
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The credential scope and the clock skew.

#[tokio::test]
async fn scope_region_must_be_configured() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    // botocore's region_name='' signs with an empty region.
    let empty = OracleSigner::new(&b.root, b.now())
        .region("")
        .sign(&host, &Req::post(GCI));
    assert!(
        empty
            .get_header("authorization")
            .unwrap()
            .contains("//sts/aws4_request")
    );
    assert_identity(&send(&b, &empty).await, &b.root_arn());
    let other = OracleSigner::new(&b.root, b.now())
        .region("eu-west-3")
        .sign(&host, &Req::post(GCI));
    assert_xml_error(
        &send(&b, &other).await,
        403,
        "SignatureDoesNotMatch",
        &texts::scope_region("eu-west-3"),
    );
    b.stop().await;
    // Once configured, that region is accepted.
    let b = TestBroker::start_with(Setup::default().extra_region("eu-west-3")).await;
    let host = b.addr.to_string();
    let other = OracleSigner::new(&b.root, b.now())
        .region("eu-west-3")
        .sign(&host, &Req::post(GCI));
    assert_identity(&send(&b, &other).await, &b.root_arn());
    b.stop().await;
}

#[tokio::test]
async fn scope_service_terminator_and_date_are_checked() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let t = b.now();
    for service in ["iam", "s3"] {
        let req = OracleSigner::new(&b.root, t)
            .service(service)
            .sign(&host, &Req::post(GCI));
        assert_xml_error(
            &send(&b, &req).await,
            403,
            "SignatureDoesNotMatch",
            &texts::scope_service("sts"),
        );
    }
    let req = Req::post(GCI)
        .header("host", &host)
        .header("x-amz-date", &basic_date(t));
    let signed = ["content-type", "host", "x-amz-date"];
    let mut spec = SpecSigner::new(&b.root, t, &signed);
    spec.terminator = "aws5_request".into();
    assert_xml_error(
        &send(&b, &spec.sign(&req)).await,
        403,
        "SignatureDoesNotMatch",
        &texts::scope_terminator("aws5_request"),
    );
    let mut spec = SpecSigner::new(&b.root, t, &signed);
    let day_before = basic_date(t - 86_400)[..8].to_owned();
    spec.scope_date = day_before.clone();
    assert_xml_error(
        &send(&b, &spec.sign(&req)).await,
        403,
        "SignatureDoesNotMatch",
        &texts::scope_date(&day_before, &basic_date(t)),
    );
    // A correct hand-signed request passes, so only the scope made the difference.
    let spec = SpecSigner::new(&b.root, t, &signed);
    assert_identity(&send(&b, &spec.sign(&req)).await, &b.root_arn());
    b.stop().await;
}

#[tokio::test]
async fn skew_of_sixteen_minutes_is_refused_fourteen_accepted() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let now = b.now();
    let at = |t: i64| OracleSigner::new(&b.root, t).sign(&host, &Req::post(GCI));
    for offset in [-14 * 60, 14 * 60, -15 * 60, 15 * 60] {
        assert_identity(&send(&b, &at(now + offset)).await, &b.root_arn());
    }
    let old = now - 16 * 60;
    assert_xml_error(
        &send(&b, &at(old)).await,
        403,
        "SignatureDoesNotMatch",
        &texts::signature_expired(old, now),
    );
    let ahead = now + 16 * 60;
    assert_xml_error(
        &send(&b, &at(ahead)).await,
        403,
        "SignatureDoesNotMatch",
        &texts::signature_not_yet_current(ahead, now),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Wrong signatures, unknown keys, malformed headers.

#[tokio::test]
async fn wrong_signature_secret_or_body_is_signature_does_not_match() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let good = OracleSigner::new(&b.root, b.now()).sign(&host, &Req::post(GCI));
    // Tampered signature (last hex digit).
    let auth = good.get_header("authorization").unwrap().to_owned();
    let last = if auth.ends_with('0') { "1" } else { "0" };
    let tampered = good.clone().replace(
        "authorization",
        &format!("{}{last}", &auth[..auth.len() - 1]),
    );
    assert_xml_error(
        &send(&b, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    // Wrong secret.
    let wrong = Creds::new(
        &b.root.akid,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    assert_xml_error(
        &send_signed(&b, &wrong, &Req::post(GCI)).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    // Body changed after signing (same length).
    let mut changed = good.clone();
    changed.body = b"Action=GetCallerIdentity&Version=2011-06-16".to_vec();
    assert_xml_error(
        &send(&b, &changed).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    // The right signature in uppercase hex, or cut short, matches nothing.
    let (head, sig) = auth.split_once("Signature=").unwrap();
    for bad in [sig.to_uppercase(), sig[..63].to_owned()] {
        let req = good
            .clone()
            .replace("authorization", &format!("{head}Signature={bad}"));
        assert_xml_error(
            &send(&b, &req).await,
            403,
            "SignatureDoesNotMatch",
            texts::SIGNATURE_MISMATCH,
        );
    }
    assert_identity(&send(&b, &good).await, &b.root_arn());
    b.stop().await;
}

#[tokio::test]
async fn unknown_key_and_no_auth() {
    let b = TestBroker::start().await;
    let unknown = Creds::new("AKIAZZZZZZZZZZZZZZZZ", &b.root.secret, None);
    assert_xml_error(
        &send_signed(&b, &unknown, &Req::post(GCI)).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    let unknown_session = Creds::new(
        "ASIAZZZZZZZZZZZZZZZZ",
        &b.root.secret,
        Some("x".repeat(120).as_str()),
    );
    assert_xml_error(
        &send_signed(&b, &unknown_session, &Req::post(GCI)).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    for req in [Req::post(GCI), Req::get(GCI)] {
        assert_xml_error(
            &send(&b, &req).await,
            403,
            "MissingAuthenticationToken",
            texts::MISSING_AUTHENTICATION_TOKEN,
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn malformed_authorization_is_incomplete_signature() {
    let b = TestBroker::start().await;
    let t = b.now();
    let akid = &b.root.akid;
    let scope = format!("{}/us-east-1/sts/aws4_request", &basic_date(t)[..8]);
    let sig = "0".repeat(64);
    let with_date = |auth: &str| {
        Req::post(GCI)
            .header("x-amz-date", &basic_date(t))
            .header("authorization", auth)
    };
    // A space after `Credential=` (texts::missing_equal_sign cites where STS answered so).
    let header = format!(
        "AWS4-HMAC-SHA256 Credential= {akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_xml_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &texts::missing_equal_sign(&format!("{akid}/{scope}"), &header),
    );
    // Missing parts.
    let header = format!("AWS4-HMAC-SHA256 Credential={akid}/{scope}");
    assert_xml_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &texts::incomplete_authorization(
            &[texts::REQUIRES_SIGNATURE, texts::REQUIRES_SIGNED_HEADERS],
            &header,
        ),
    );
    let header =
        format!("AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=host, Signature={sig}");
    let no_date = Req::post(GCI).header("authorization", &header);
    assert_xml_error(
        &send(&b, &no_date).await,
        400,
        "IncompleteSignature",
        &texts::incomplete_authorization(&[texts::REQUIRES_DATE], &header),
    );
    // A bare word: every part is missing.
    let garbage = Req::post(GCI).header("authorization", "garbage");
    assert_xml_error(
        &send(&b, &garbage).await,
        400,
        "IncompleteSignature",
        &texts::incomplete_authorization(
            &[
                texts::REQUIRES_CREDENTIAL,
                texts::REQUIRES_SIGNATURE,
                texts::REQUIRES_SIGNED_HEADERS,
                texts::REQUIRES_DATE,
            ],
            "garbage",
        ),
    );
    // Another algorithm.
    let header = format!(
        "AWS4-HMAC-SHA512 Credential={akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_xml_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &texts::unsupported_algorithm("AWS4-HMAC-SHA512"),
    );
    // A credential with four elements.
    let short = format!("{akid}/{}/us-east-1/sts", &basic_date(t)[..8]);
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={short}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    assert_xml_error(
        &send(&b, &with_date(&header)).await,
        400,
        "IncompleteSignature",
        &texts::credential_elements(&short),
    );
    // An unreadable date.
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    let bad_date = Req::post(GCI)
        .header("x-amz-date", "2026-01-01T00:00:00Z")
        .header("authorization", &header);
    assert_xml_error(
        &send(&b, &bad_date).await,
        400,
        "IncompleteSignature",
        &texts::date_not_basic_format("2026-01-01T00:00:00Z"),
    );
    b.stop().await;
}
