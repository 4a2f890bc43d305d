//! The life of session credentials: expiry, missing or foreign or tampered tokens, revocation
//! with their key or user, and verification without shared state
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_use-resources.html).

use std::path::Path;

use aws_sdk_iam::types::StatusType;
use aws_sdk_sts::operation::get_caller_identity::{
    GetCallerIdentityError, GetCallerIdentityOutput,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::support::http::{GCI, Req, send_signed};
use crate::support::texts;
use crate::support::{
    Creds, TestBroker, TestClock, assert_sdk_failure, assert_xml_error, failure, fresh_dir,
};

/// GetCallerIdentity as `creds`.
async fn whoami(
    b: &TestBroker,
    creds: &Creds,
) -> Result<GetCallerIdentityOutput, SdkError<GetCallerIdentityError, HttpResponse>> {
    b.sts(creds).get_caller_identity().send().await
}

async fn gst_900(b: &TestBroker, creds: &Creds) -> Creds {
    let c = b
        .sts(creds)
        .get_session_token()
        .duration_seconds(900)
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    crate::support::session_creds(&c)
}

#[tokio::test]
async fn expired_session_is_expired_token() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = gst_900(&b, &alice).await;
    b.clock.advance(899);
    assert_eq!(b.caller_arn(&session).await, b.user_arn("alice"));
    b.clock.advance(1);
    assert_sdk_failure!(
        whoami(&b, &session).await,
        403,
        "ExpiredToken",
        texts::EXPIRED_TOKEN,
    );
    assert_sdk_failure!(
        b.sts(&session).get_session_token().send().await,
        403,
        "ExpiredToken",
        texts::EXPIRED_TOKEN,
    );
    // The user's long-term key is unaffected.
    assert_eq!(b.caller_arn(&alice).await, b.user_arn("alice"));
    // Also through a raw signed request.
    let resp = send_signed(&b, &session, &Req::post(GCI)).await;
    assert_xml_error(&resp, 403, "ExpiredToken", texts::EXPIRED_TOKEN);
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
    assert_sdk_failure!(
        whoami(&b, &bare).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // Another session's (valid) token under this session's key id.
    let second = b.session(&alice).await;
    let swapped = Creds::new(&session.akid, &session.secret, second.token.as_deref());
    assert_sdk_failure!(
        whoami(&b, &swapped).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // A token minted by another broker (other key ring), with its own key pair.
    let foreign = other.session(&other.root).await;
    assert_sdk_failure!(
        whoami(&b, &foreign).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
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
        assert_sdk_failure!(
            whoami(&b, &creds).await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
            "{t}"
        );
    }
    // A long-term key presented with a session token.
    let mixed = Creds::new(&alice.akid, &alice.secret, Some(&token));
    assert_sdk_failure!(
        whoami(&b, &mixed).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // The right token with a wrong secret is a signature mismatch.
    let wrong_secret = Creds::new(&session.akid, &alice.secret, Some(&token));
    let refused = failure(whoami(&b, &wrong_secret).await);
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (403, "SignatureDoesNotMatch")
    );
    // The genuine session still works.
    assert_eq!(b.caller_arn(&session).await, b.user_arn("alice"));
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
    let arn = b.user_arn("alice");

    let set = |key: &str, status: StatusType| {
        iam.update_access_key()
            .user_name("alice")
            .access_key_id(key)
            .status(status)
            .send()
    };
    set(&alice.akid, StatusType::Inactive).await.unwrap();
    for creds in [&alice, &session] {
        assert_sdk_failure!(
            whoami(&b, creds).await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
        );
    }
    // The other key and the session it obtained are untouched.
    assert_eq!(b.caller_arn(&alice2).await, arn);
    assert_eq!(b.caller_arn(&session2).await, arn);
    // An inactive key cannot obtain sessions either.
    assert_sdk_failure!(
        b.sts(&alice).get_session_token().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // Active again: both work again.
    set(&alice.akid, StatusType::Active).await.unwrap();
    assert_eq!(b.caller_arn(&alice).await, arn);
    assert_eq!(b.caller_arn(&session).await, arn);
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
    for creds in [&alice, &session] {
        assert_sdk_failure!(
            whoami(&b, creds).await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
        );
    }

    // A user deleted (after its keys) and re-created under the same name: old sessions stay dead.
    let bob = b.user_with_key("bob").await;
    let bob_session = b.session(&bob).await;
    let old_id = whoami(&b, &bob)
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
    for creds in [&bob, &bob_session] {
        assert_sdk_failure!(
            whoami(&b, creds).await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
        );
    }
    let bob_again = b.user_with_key("bob").await;
    let new_id = whoami(&b, &bob_again)
        .await
        .unwrap()
        .user_id()
        .unwrap()
        .to_owned();
    assert_ne!(old_id, new_id);
    for creds in [&bob_session, &bob] {
        assert_sdk_failure!(
            whoami(&b, creds).await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
        );
    }
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
    let a = TestBroker::boot_on(&dir, clock.clone()).await;
    let b = TestBroker::boot_on(&copy, clock).await;
    assert_eq!(a.account_id, b.account_id);

    // Minted by A after the copy was taken: B has never seen this session.
    let session = a.session(&alice).await;
    assert_eq!(b.caller_arn(&session).await, b.user_arn("alice"));
    // And the other way round; expiry is judged the same on both.
    let from_b = gst_900(&b, &alice).await;
    assert_eq!(a.caller_arn(&from_b).await, a.user_arn("alice"));
    a.clock.advance(900);
    for broker in [&a, &b] {
        assert_sdk_failure!(
            whoami(broker, &from_b).await,
            403,
            "ExpiredToken",
            texts::EXPIRED_TOKEN,
        );
    }
    // A third broker with its own data dir (other keys) does not accept them.
    let stranger = TestBroker::boot_on(&fresh_dir("stranger"), TestClock::at(a.now())).await;
    assert_sdk_failure!(
        whoami(&stranger, &session).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    stranger.stop().await;
    a.stop().await;
    b.stop().await;
}
