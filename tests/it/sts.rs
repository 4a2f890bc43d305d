//! STS through the official Rust SDK (and a few signed raw requests where the SDK cannot send
//! the input): GetCallerIdentity for every kind of caller, GetSessionToken's parameters and
//! credentials, and the life of session credentials (contract checklist 2–4, 8–10).

use std::path::Path;

use aws_sdk_iam::types::StatusType;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use sts_broker::ManualClock;
use sts_broker::{AuditTarget, Config};

use crate::harness::{Creds, TestBroker, sdk_error, xml_text};
use crate::sigv4_http::{GCI, INVALID_TOKEN, Req, assert_error, parse_iso, send_signed};

const EXPIRED: &str = "The security token included in the request is expired";
const UNABLE: &str = "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.";
const SESSION_GST: &str = "Cannot call GetSessionToken with session credentials";

/// Asserts that an SDK call failed with this status, code and message.
#[track_caller]
fn assert_sdk_err<T, E>(
    res: Result<T, SdkError<E, HttpResponse>>,
    status: u16,
    code: &str,
    message: &str,
) where
    T: std::fmt::Debug,
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let err = res.expect_err("the call succeeded");
    let got_status = err.raw_response().map(|r| r.status().as_u16());
    let (got_code, got_message) = sdk_error(&err);
    assert_eq!(
        (got_status, got_code.as_str(), got_message.as_str()),
        (Some(status), code, message)
    );
}

fn root_arn(b: &TestBroker) -> String {
    format!("arn:aws:iam::{}:root", b.account_id)
}

fn user_arn(b: &TestBroker, name: &str) -> String {
    format!("arn:aws:iam::{}:user/{name}", b.account_id)
}

/// `Expiration − now` of SDK credentials.
fn lifetime(b: &TestBroker, c: &aws_sdk_sts::types::Credentials) -> i64 {
    c.expiration().secs() - b.now()
}

fn creds_of(c: &aws_sdk_sts::types::Credentials) -> Creds {
    Creds::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    )
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

/// `(status, code, message)` of a caller-identity call.
async fn identity_arn(b: &TestBroker, creds: &Creds) -> Result<String, (u16, String, String)> {
    match b.sts(creds).get_caller_identity().send().await {
        Ok(out) => Ok(out.arn().unwrap().to_owned()),
        Err(e) => {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            let (code, message) = sdk_error(&e);
            Err((status, code, message))
        }
    }
}

fn invalid_token() -> Result<String, (u16, String, String)> {
    Err((403, "InvalidClientTokenId".into(), INVALID_TOKEN.into()))
}

// ---------------------------------------------------------------------------------------------
// GetCallerIdentity.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_caller_identity_for_root_user_and_session() {
    let b = TestBroker::start().await;
    let root = b.sts(&b.root).get_caller_identity().send().await.unwrap();
    assert_eq!(root.arn(), Some(root_arn(&b).as_str()));
    assert_eq!(root.user_id(), Some(b.account_id.as_str()));
    assert_eq!(root.account(), Some(b.account_id.as_str()));

    let alice = b.user_with_key("alice").await;
    let user = b.sts(&alice).get_caller_identity().send().await.unwrap();
    let aida = user.user_id().unwrap().to_owned();
    assert_eq!(user.arn(), Some(user_arn(&b, "alice").as_str()));
    assert!(aida.starts_with("AIDA"), "{aida}");
    assert_eq!(aida.len(), 21, "{aida}");
    assert!(
        aida.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert_eq!(user.account(), Some(b.account_id.as_str()));

    // Session credentials report the user that obtained them, not the session key.
    let session = b.session(&alice).await;
    let who = b.sts(&session).get_caller_identity().send().await.unwrap();
    assert_eq!(who.arn(), Some(user_arn(&b, "alice").as_str()));
    assert_eq!(who.user_id(), Some(aida.as_str()));
    assert_eq!(who.account(), Some(b.account_id.as_str()));

    let root_session = b.session(&b.root).await;
    let who = b
        .sts(&root_session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.arn(), Some(root_arn(&b).as_str()));
    assert_eq!(who.user_id(), Some(b.account_id.as_str()));
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// GetSessionToken: DurationSeconds and credential shapes.
// ---------------------------------------------------------------------------------------------

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
    assert_sdk_err(
        sts.get_session_token().duration_seconds(899).send().await,
        400,
        "ValidationError",
        "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
    );
    assert_sdk_err(
        sts.get_session_token()
            .duration_seconds(129_601)
            .send()
            .await,
        400,
        "ValidationError",
        "1 validation error detected: Value '129601' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 129600",
    );
    assert_sdk_err(
        sts.get_session_token().duration_seconds(-1).send().await,
        400,
        "ValidationError",
        "1 validation error detected: Value '-1' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
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
    assert_error(
        &resp,
        400,
        "MalformedInput",
        "missing value for decimal type",
    );
    for (wire, shown) in [
        ("abc", "abc"),
        ("900.0", "900.0"),
        ("2147483648", "2147483648"),
        ("+900", " 900"),
    ] {
        let resp = send_signed(&b, &alice, &Req::post(&gst_raw(wire))).await;
        assert_error(
            &resp,
            400,
            "MalformedInput",
            &format!("invalid value for decimal type: '{shown}'"),
        );
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
    assert_sdk_err(
        b.sts(&b.root)
            .get_session_token()
            .duration_seconds(129_601)
            .send()
            .await,
        400,
        "ValidationError",
        "1 validation error detected: Value '129601' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 129600",
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// GetSessionToken: SerialNumber / TokenCode.
// ---------------------------------------------------------------------------------------------

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
            "Value 'GAHT1234' at 'serialNumber' failed to satisfy constraint: Member must have length greater than or equal to 9",
        ),
        (
            "GAHT 12345678",
            "123456",
            "Value 'GAHT 12345678' at 'serialNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=/:,.@-]*",
        ),
        (
            long.as_str(),
            "123456",
            &*format!(
                "Value '{long}' at 'serialNumber' failed to satisfy constraint: Member must have length less than or equal to 256"
            ),
        ),
        (
            "GAHT12345678",
            "12345",
            "Value '12345' at 'tokenCode' failed to satisfy constraint: Member must have length greater than or equal to 6",
        ),
        (
            "GAHT12345678",
            "1234567",
            "Value '1234567' at 'tokenCode' failed to satisfy constraint: Member must have length less than or equal to 6",
        ),
        (
            "GAHT12345678",
            "12a456",
            "Value '12a456' at 'tokenCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\d]*",
        ),
    ];
    for (serial, code, clause) in cases {
        assert_sdk_err(
            sts.get_session_token()
                .serial_number(serial)
                .token_code(code)
                .send()
                .await,
            400,
            "ValidationError",
            &format!("1 validation error detected: {clause}"),
        );
    }
    assert_sdk_err(
        sts.get_session_token()
            .serial_number("GAHT1234")
            .token_code("12a456")
            .send()
            .await,
        400,
        "ValidationError",
        "2 validation errors detected: Value 'GAHT1234' at 'serialNumber' failed to satisfy constraint: Member must have length greater than or equal to 9; Value '12a456' at 'tokenCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\d]*",
    );
    // Shape checks apply to each parameter alone too.
    assert_sdk_err(
        sts.get_session_token().token_code("12345").send().await,
        400,
        "ValidationError",
        "1 validation error detected: Value '12345' at 'tokenCode' failed to satisfy constraint: Member must have length greater than or equal to 6",
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
            assert_sdk_err(
                sts.get_session_token()
                    .serial_number(serial)
                    .token_code("123456")
                    .send()
                    .await,
                403,
                "AccessDenied",
                UNABLE,
            );
            // SerialNumber without TokenCode.
            assert_sdk_err(
                sts.get_session_token().serial_number(serial).send().await,
                403,
                "AccessDenied",
                UNABLE,
            );
        }
        // TokenCode without SerialNumber.
        assert_sdk_err(
            sts.get_session_token().token_code("123456").send().await,
            403,
            "AccessDenied",
            UNABLE,
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
        assert_sdk_err(
            sts.get_session_token().send().await,
            403,
            "AccessDenied",
            SESSION_GST,
        );
        assert_sdk_err(
            sts.get_session_token().duration_seconds(900).send().await,
            403,
            "AccessDenied",
            SESSION_GST,
        );
    }
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Session credentials: expiry, bad tokens, revocation, statelessness.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expired_session_is_expired_token() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = creds_of(&gst(&b, &alice, Some(900)).await);
    b.clock.advance(899);
    assert_eq!(identity_arn(&b, &session).await, Ok(user_arn(&b, "alice")));
    b.clock.advance(1);
    assert_eq!(
        identity_arn(&b, &session).await,
        Err((403, "ExpiredToken".into(), EXPIRED.into()))
    );
    assert_sdk_err(
        b.sts(&session).get_session_token().send().await,
        403,
        "ExpiredToken",
        EXPIRED,
    );
    // The user's long-term key is unaffected.
    assert_eq!(identity_arn(&b, &alice).await, Ok(user_arn(&b, "alice")));
    // Also through a raw signed request.
    let resp = send_signed(&b, &session, &Req::post(GCI)).await;
    assert_error(&resp, 403, "ExpiredToken", EXPIRED);
    b.stop().await;
}

#[tokio::test]
async fn missing_foreign_or_tampered_token_is_invalid_client_token_id() {
    let b = TestBroker::start().await;
    let other = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    let token = session.token.clone().unwrap();

    // Missing token.
    let bare = Creds::new(&session.akid, &session.secret, None);
    assert_eq!(identity_arn(&b, &bare).await, invalid_token());
    // Another session's (valid) token under this session's key id.
    let second = b.session(&alice).await;
    let swapped = Creds::new(&session.akid, &session.secret, second.token.as_deref());
    assert_eq!(identity_arn(&b, &swapped).await, invalid_token());
    // A token minted by another broker (other key ring), with its own key pair.
    let foreign = other.session(&other.root).await;
    assert_eq!(identity_arn(&b, &foreign).await, invalid_token());
    // Tampered tokens: one character of the header, the claims, the signature; truncated; junk.
    let mut variants = Vec::new();
    for at in [5, token.len() / 2, token.len() - 3] {
        let mut t = token.clone().into_bytes();
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        variants.push(String::from_utf8(t).unwrap());
    }
    variants.push(token[..token.len() - 10].to_owned());
    variants.push("not-a-token".to_owned());
    variants.push(String::new());
    for t in variants {
        let creds = Creds::new(&session.akid, &session.secret, Some(&t));
        assert_eq!(identity_arn(&b, &creds).await, invalid_token(), "{t}");
    }
    // A long-term key presented with a session token.
    let mixed = Creds::new(&alice.akid, &alice.secret, Some(&token));
    assert_eq!(identity_arn(&b, &mixed).await, invalid_token());
    // The right token with a wrong secret is a signature mismatch.
    let wrong_secret = Creds::new(&session.akid, &alice.secret, Some(&token));
    let (status, code, _) = identity_arn(&b, &wrong_secret).await.unwrap_err();
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
    // The genuine session still works.
    assert_eq!(identity_arn(&b, &session).await, Ok(user_arn(&b, "alice")));
    other.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn inactive_key_stops_the_key_and_its_sessions_at_once() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let alice = b.user_with_key("alice").await;
    let second_key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let alice2 = Creds::new(
        &second_key.access_key_id,
        &second_key.secret_access_key,
        None,
    );
    let session = b.session(&alice).await;
    let session2 = b.session(&alice2).await;
    let ok = Ok(user_arn(&b, "alice"));

    let set = |key: &str, status: StatusType| {
        iam.update_access_key()
            .user_name("alice")
            .access_key_id(key)
            .status(status)
            .send()
    };
    set(&alice.akid, StatusType::Inactive).await.unwrap();
    assert_eq!(identity_arn(&b, &alice).await, invalid_token());
    assert_eq!(identity_arn(&b, &session).await, invalid_token());
    // The other key and the session it obtained are untouched.
    assert_eq!(identity_arn(&b, &alice2).await, ok);
    assert_eq!(identity_arn(&b, &session2).await, ok);
    // An inactive key cannot obtain sessions either.
    assert_sdk_err(
        b.sts(&alice).get_session_token().send().await,
        403,
        "InvalidClientTokenId",
        INVALID_TOKEN,
    );
    // Active again: both work again.
    set(&alice.akid, StatusType::Active).await.unwrap();
    assert_eq!(identity_arn(&b, &alice).await, ok);
    assert_eq!(identity_arn(&b, &session).await, ok);
    b.stop().await;
}

#[tokio::test]
async fn deleted_key_or_user_stops_its_sessions_at_once() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    iam.delete_access_key()
        .user_name("alice")
        .access_key_id(&alice.akid)
        .send()
        .await
        .unwrap();
    assert_eq!(identity_arn(&b, &alice).await, invalid_token());
    assert_eq!(identity_arn(&b, &session).await, invalid_token());

    // A user deleted (after its keys) and re-created under the same name: old sessions stay dead.
    let bob = b.user_with_key("bob").await;
    let bob_session = b.session(&bob).await;
    let old_id = b
        .sts(&bob)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .user_id()
        .unwrap()
        .to_owned();
    iam.delete_access_key()
        .user_name("bob")
        .access_key_id(&bob.akid)
        .send()
        .await
        .unwrap();
    iam.delete_user().user_name("bob").send().await.unwrap();
    assert_eq!(identity_arn(&b, &bob).await, invalid_token());
    assert_eq!(identity_arn(&b, &bob_session).await, invalid_token());
    let bob_again = b.user_with_key("bob").await;
    let new_id = b
        .sts(&bob_again)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .user_id()
        .unwrap()
        .to_owned();
    assert_ne!(old_id, new_id);
    assert_eq!(identity_arn(&b, &bob_session).await, invalid_token());
    assert_eq!(identity_arn(&b, &bob).await, invalid_token());
    b.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn config_for(dir: &Path) -> Config {
    let mut cfg = Config::with_data_dir(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.audit = AuditTarget::File(dir.join("audit.log"));
    cfg.change_poll_millis = 50;
    cfg
}

#[tokio::test]
async fn a_second_broker_with_the_same_keys_verifies_sessions_statelessly() {
    let first = TestBroker::start().await;
    let alice = first.user_with_key("alice").await;
    let (dir, clock) = first.stop().await;
    let copy = dir.with_file_name(format!(
        "{}-copy",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&dir, &copy);
    let a = TestBroker::boot(config_for(&dir), clock.clone()).await;
    let b = TestBroker::boot(config_for(&copy), clock).await;
    assert_eq!(a.account_id, b.account_id);

    // Minted by A after the copy was taken: B has never seen this session.
    let session = a.session(&alice).await;
    let who = b.sts(&session).get_caller_identity().send().await.unwrap();
    assert_eq!(who.arn(), Some(user_arn(&b, "alice").as_str()));
    // And the other way round; expiry is judged the same on both.
    let from_b = creds_of(&gst(&b, &alice, Some(900)).await);
    assert_eq!(identity_arn(&a, &from_b).await, Ok(user_arn(&a, "alice")));
    a.clock.advance(900);
    assert_eq!(
        identity_arn(&a, &from_b).await,
        Err((403, "ExpiredToken".into(), EXPIRED.into()))
    );
    assert_eq!(
        identity_arn(&b, &from_b).await,
        Err((403, "ExpiredToken".into(), EXPIRED.into()))
    );
    // A third broker with its own data dir (other keys) does not accept them.
    let stranger = TestBroker::boot(
        config_for(&crate::harness::fresh_dir("stranger")),
        ManualClock::new(a.now()),
    )
    .await;
    assert_eq!(identity_arn(&stranger, &session).await, invalid_token());
    stranger.stop().await;
    a.stop().await;
    b.stop().await;
}
