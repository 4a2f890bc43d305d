//! GetSessionToken's parameters and the credentials it mints, through the Rust SDK and signed raw
//! requests where the SDK cannot send the input
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html).

use crate::support::http::{Req, parse_iso, send_signed, xml_text};
use crate::support::texts::{self, at_least, at_most, max_length, min_length, pattern, validation};
use crate::support::{Creds, TestBroker, assert_sdk_failure, assert_xml_error};

/// `Expiration − now` of SDK credentials.
fn lifetime(b: &TestBroker, c: &aws_sdk_sts::types::Credentials) -> i64 {
    c.expiration().secs() - b.now()
}

async fn gst(
    b: &TestBroker,
    creds: &Creds,
    duration: Option<i32>,
) -> aws_sdk_sts::types::Credentials {
    b.sts(creds)
        .get_session_token()
        .set_duration_seconds(duration)
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// DurationSeconds and the credentials' shape.

#[tokio::test]
async fn get_session_token_defaults_to_43200_with_aws_shaped_credentials() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let c = gst(&b, &alice, None).await;
    assert_eq!(lifetime(&b, &c), 43_200);
    let akid = c.access_key_id();
    assert_eq!(akid.len(), 20, "{akid}");
    assert!(akid.starts_with("ASIA"), "{akid}");
    assert!(
        akid[4..]
            .bytes()
            .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit()),
        "{akid}"
    );
    let secret = c.secret_access_key();
    assert_eq!(secret.len(), 40);
    assert!(
        secret
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"+/=".contains(&x)),
        "{secret}"
    );
    let token = c.session_token();
    assert!(token.len() >= 100, "{}", token.len());
    assert!(!token.contains(secret));
    assert!(token.bytes().all(|x| x.is_ascii_graphic()));
    // Every call mints fresh credentials.
    let again = gst(&b, &alice, None).await;
    assert_ne!(again.access_key_id(), akid);
    assert_ne!(again.secret_access_key(), secret);
    // No secret reaches the audit log.
    let audit = std::fs::read_to_string(b.data_dir.join("audit.log")).unwrap();
    assert!(audit.contains("GetSessionToken"), "{audit}");
    for s in [
        secret,
        token,
        again.secret_access_key(),
        alice.secret.as_str(),
    ] {
        assert!(!audit.contains(s), "a secret is in the audit log");
    }
    b.stop().await;
}

#[tokio::test]
async fn duration_seconds_bounds() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    for d in [900, 3600, 129_600] {
        let c = gst(&b, &alice, Some(d)).await;
        assert_eq!(lifetime(&b, &c), i64::from(d));
    }
    let sts = b.sts(&alice);
    assert_sdk_failure!(
        sts.get_session_token().duration_seconds(899).send().await,
        400,
        "ValidationError",
        &validation(&[at_least("899", "durationSeconds", 900)]),
    );
    assert_sdk_failure!(
        sts.get_session_token()
            .duration_seconds(129_601)
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[at_most("129601", "durationSeconds", 129_600)]),
    );
    assert_sdk_failure!(
        sts.get_session_token().duration_seconds(-1).send().await,
        400,
        "ValidationError",
        &validation(&[at_least("-1", "durationSeconds", 900)]),
    );
    b.stop().await;
}

#[tokio::test]
async fn duration_seconds_integer_forms() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let gst_raw =
        |value: &str| format!("Action=GetSessionToken&Version=2011-06-15&DurationSeconds={value}");
    // `+900` (form-encoded as %2B900) and `0900` mean 900.
    for value in ["%2B900", "0900", "000900"] {
        let resp = send_signed(&b, &alice, &Req::post(&gst_raw(value))).await;
        assert_eq!(resp.status, 200, "{value}: {}", resp.body);
        let exp = parse_iso(xml_text(&resp.body, "Expiration").unwrap());
        assert_eq!(exp - b.now(), 900, "{value}");
    }
    let resp = send_signed(&b, &alice, &Req::post(&gst_raw(""))).await;
    assert_xml_error(&resp, 400, "MalformedInput", texts::MISSING_DECIMAL);
    for (wire, shown) in [
        ("abc", "abc"),
        ("900.0", "900.0"),
        ("2147483648", "2147483648"),
        ("+900", " 900"),
    ] {
        let resp = send_signed(&b, &alice, &Req::post(&gst_raw(wire))).await;
        assert_xml_error(&resp, 400, "MalformedInput", &texts::invalid_decimal(shown));
    }
    b.stop().await;
}

#[tokio::test]
async fn root_sessions_are_clamped_to_one_hour() {
    let b = TestBroker::start().await;
    for (asked, got) in [
        (None, 3600),
        (Some(7200), 3600),
        (Some(129_600), 3600),
        (Some(900), 900),
        (Some(3599), 3599),
    ] {
        let c = gst(&b, &b.root, asked).await;
        assert_eq!(lifetime(&b, &c), got, "{asked:?}");
    }
    // Out-of-range values are still refused, not clamped.
    assert_sdk_failure!(
        b.sts(&b.root)
            .get_session_token()
            .duration_seconds(129_601)
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[at_most("129601", "durationSeconds", 129_600)]),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SerialNumber and TokenCode.

#[tokio::test]
async fn serial_number_and_token_code_shapes() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let sts = b.sts(&alice);
    let long = "A".repeat(257);
    let cases = [
        (
            "GAHT1234",
            "123456",
            min_length("GAHT1234", "serialNumber", 9),
        ),
        (
            "GAHT 12345678",
            "123456",
            pattern(
                "GAHT 12345678",
                "serialNumber",
                texts::SERIAL_NUMBER_PATTERN,
            ),
        ),
        (
            long.as_str(),
            "123456",
            max_length(&long, "serialNumber", 256),
        ),
        ("GAHT12345678", "12345", min_length("12345", "tokenCode", 6)),
        (
            "GAHT12345678",
            "1234567",
            max_length("1234567", "tokenCode", 6),
        ),
        (
            "GAHT12345678",
            "12a456",
            pattern("12a456", "tokenCode", texts::TOKEN_CODE_PATTERN),
        ),
    ];
    for (serial, code, clause) in cases {
        assert_sdk_failure!(
            sts.get_session_token()
                .serial_number(serial)
                .token_code(code)
                .send()
                .await,
            400,
            "ValidationError",
            &validation(&[clause]),
        );
    }
    assert_sdk_failure!(
        sts.get_session_token()
            .serial_number("GAHT1234")
            .token_code("12a456")
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[
            min_length("GAHT1234", "serialNumber", 9),
            pattern("12a456", "tokenCode", texts::TOKEN_CODE_PATTERN),
        ]),
    );
    // Shape checks apply to each parameter alone too.
    assert_sdk_failure!(
        sts.get_session_token().token_code("12345").send().await,
        400,
        "ValidationError",
        &validation(&[min_length("12345", "tokenCode", 6)]),
    );
    b.stop().await;
}

#[tokio::test]
async fn well_formed_mfa_naming_no_device_is_refused() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let virtual_arn = format!("arn:aws:iam::{}:mfa/alice", b.account_id);
    for creds in [&alice, &b.root] {
        let sts = b.sts(creds);
        for serial in ["GAHT12345678", virtual_arn.as_str()] {
            assert_sdk_failure!(
                sts.get_session_token()
                    .serial_number(serial)
                    .token_code("123456")
                    .send()
                    .await,
                403,
                "AccessDenied",
                texts::MFA_UNABLE_TO_VALIDATE,
            );
            // SerialNumber without TokenCode.
            assert_sdk_failure!(
                sts.get_session_token().serial_number(serial).send().await,
                403,
                "AccessDenied",
                texts::MFA_UNABLE_TO_VALIDATE,
            );
        }
        // TokenCode without SerialNumber.
        assert_sdk_failure!(
            sts.get_session_token().token_code("123456").send().await,
            403,
            "AccessDenied",
            texts::MFA_UNABLE_TO_VALIDATE,
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn session_credentials_cannot_call_get_session_token() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    for parent in [&alice, &b.root] {
        let session = b.session(parent).await;
        let sts = b.sts(&session);
        assert_sdk_failure!(
            sts.get_session_token().send().await,
            403,
            "AccessDenied",
            texts::SESSION_CREDENTIALS,
        );
        assert_sdk_failure!(
            sts.get_session_token().duration_seconds(900).send().await,
            403,
            "AccessDenied",
            texts::SESSION_CREDENTIALS,
        );
    }
    b.stop().await;
}
