//! GetSessionToken with SerialNumber and TokenCode: the window of accepted steps, which serials
//! validate, and the MFA context the session carries
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_configure-api-require.html).

use crate::support::mfa::{enabled_device, mfa_serials, session_with_mfa, wrong_code};
use crate::support::texts;
use crate::support::{Setup, TestBroker, assert_sdk_failure, session_creds};

// ---------------------------------------------------------------------------------------------
// The window.

#[tokio::test]
async fn window_edges_at_the_default_window_of_one() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-2, 2, -3, 3] {
        assert_sdk_failure!(
            session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, offset)).await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE,
            "t{offset:+}"
        );
    }
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, -1))
        .await
        .expect("t-1");
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 1))
        .await
        .expect("t+1");
    // Accepting t+1 retired t: it is refused like a wrong code.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    b.stop().await;
}

#[tokio::test]
async fn window_zero_accepts_only_the_current_step() {
    let b = TestBroker::start_with(Setup::default().mfa_window(0)).await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-1, 1] {
        assert_sdk_failure!(
            session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, offset)).await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE,
            "t{offset:+}"
        );
    }
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn window_two_accepts_two_steps_each_side() {
    let b = TestBroker::start_with(Setup::default().mfa_window(2)).await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-3, 3] {
        assert_sdk_failure!(
            session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, offset)).await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE,
            "t{offset:+}"
        );
    }
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, -2))
        .await
        .expect("t-2");
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 2))
        .await
        .expect("t+2");
    // Three steps each side is beyond what the configuration allows.
    assert!(!b.accepts(&Setup::default().mfa_window(3)));
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Which serial validates.

#[tokio::test]
async fn wrong_foreign_unknown_and_deactivated_serials() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let a_dev = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let b_dev = enabled_device(&b, &bob, "bob", "bob-phone").await;
    b.clock.advance(30);
    let now = b.now();
    // A wrong code for one's own device.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &a_dev.serial, &wrong_code(&a_dev.key, now)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    // Bob's device with Bob's valid code, an unknown serial, a user ARN: unable to validate.
    let acct = &b.account_id;
    for serial in [
        b_dev.serial.clone(),
        format!("arn:aws:iam::{acct}:mfa/nobody"),
        "GAHT00000000".to_owned(),
        b.user_arn("alice"),
    ] {
        assert_sdk_failure!(
            session_with_mfa(&b, &alice, &serial, &b_dev.code_at(now, 0)).await,
            403,
            "AccessDenied",
            texts::MFA_UNABLE_TO_VALIDATE,
            "{serial}"
        );
    }
    // Bob's code was not consumed by alice's attempt.
    session_with_mfa(&b, &bob, &b_dev.serial, &b_dev.code_at(now, 0))
        .await
        .unwrap();
    // Made-up serials leave no lock-out records behind.
    for n in 0..20 {
        let _ = session_with_mfa(&b, &alice, &format!("GAHT{n:08}"), "123456").await;
    }
    assert_eq!(b.lockout_records(), 1, "only alice's device counts");
    // A serial without a code, or a code without a serial: refused, never credentials.
    assert_sdk_failure!(
        b.sts(&alice)
            .get_session_token()
            .serial_number(&a_dev.serial)
            .send()
            .await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    assert_sdk_failure!(
        b.sts(&alice)
            .get_session_token()
            .token_code(a_dev.code_at(now, 0))
            .send()
            .await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    // The code that was offered alone was not consumed either.
    session_with_mfa(&b, &alice, &a_dev.serial, &a_dev.code_at(now, 0))
        .await
        .unwrap();
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What the session carries.

#[tokio::test]
async fn session_token_carries_the_mfa_context() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let auth_time = b.now();
    let with = session_with_mfa(&b, &alice, &device.serial, &device.code_at(auth_time, 0))
        .await
        .unwrap();
    // What the token carries, as a verifier of the broker's credentials reads it.
    let seen = b.session_seen(&session_creds(&with));
    assert_eq!(seen.mfa, Some((device.serial.clone(), auth_time)));
    assert_eq!(seen.expires_at, auth_time + 43_200);
    assert_eq!(seen.arn, b.user_arn("alice"));
    assert_eq!(with.expiration.secs(), auth_time + 43_200);
    let without = b.session(&alice).await;
    assert_eq!(b.session_seen(&without).mfa, None);
    // The MFA session is the user, and may call IAM; an hour later the context is unchanged.
    b.clock.advance(3600);
    let mfa = session_creds(&with);
    assert_eq!(b.caller_arn(&mfa).await, b.user_arn("alice"));
    assert_eq!(mfa_serials(&b, &mfa, None).await, [device.serial.as_str()]);
    assert_sdk_failure!(
        b.iam(&without).list_mfa_devices().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    b.stop().await;
}
