//! Guessing is throttled per device: five failures lock it, the lock doubles up to fifteen
//! minutes, a locked device refuses even the right code with the wrong-code text, and concurrent
//! guesses get no more than five checks (README.md, `mfa_free_failures`/`mfa_*_backoff_secs`;
//! the refusals: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_EnableMFADevice.html).

use std::sync::Arc;

use crate::support::mfa::{
    create_virtual_device, enable_mfa, enabled_device, far_codes, session_with_mfa, wrong_code,
};
use crate::support::texts;
use crate::support::{TestBroker, assert_sdk_failure, failure};

#[tokio::test]
async fn enable_attempts_are_throttled_per_device() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    for _ in 0..5 {
        assert_sdk_failure!(
            enable_mfa(&b, &alice, "alice", &device, (0, 2)).await,
            403,
            "InvalidAuthenticationCode",
            texts::INVALID_AUTHENTICATION_CODE,
        );
    }
    // Locked: even two good codes are refused, until the back-off has passed.
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &device, (-1, 0)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    b.clock.advance(29);
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &device, (-1, 0)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    b.clock.advance(1);
    enable_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_device_created_again_under_a_deleted_name_starts_unlocked() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let old = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    for _ in 0..5 {
        assert_sdk_failure!(
            enable_mfa(&b, &alice, "alice", &old, (0, 2)).await,
            403,
            "InvalidAuthenticationCode",
            texts::INVALID_AUTHENTICATION_CODE,
        );
    }
    b.iam(&alice)
        .delete_virtual_mfa_device()
        .serial_number(&old.serial)
        .send()
        .await
        .unwrap();
    // Same serial, new seed: a new device, with no lock-out inherited from the old one.
    let new = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    assert_eq!(new.serial, old.serial);
    enable_mfa(&b, &alice, "alice", &new, (-1, 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn throttle_locks_after_five_failures_backs_off_and_caps_at_fifteen_minutes() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let try_wrong = || async {
        failure(
            session_with_mfa(
                &b,
                &alice,
                &device.serial,
                &wrong_code(&device.key, b.now()),
            )
            .await,
        )
    };
    let try_right = || async {
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await
    };
    for _ in 0..5 {
        assert_sdk_failure!(
            try_wrong().await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    // Locked for 30 s: even the right code is refused, with the wrong-code text.
    let mut locks = Vec::new();
    let mut lock = 30;
    loop {
        assert_sdk_failure!(
            try_right().await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
        b.clock.advance(lock - 1);
        assert_sdk_failure!(
            try_right().await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE,
            "1 s before the end of a {lock} s lock"
        );
        b.clock.advance(1);
        locks.push(lock);
        if locks.len() == 7 {
            break;
        }
        // The lock is over: one more failure locks again, twice as long, up to 15 minutes.
        assert_sdk_failure!(
            try_wrong().await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
        lock = (lock * 2).min(900);
    }
    assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900]);
    // After the last lock, the right code gets in and clears the count.
    try_right().await.unwrap();
    b.clock.advance(30);
    for _ in 0..4 {
        assert_sdk_failure!(
            try_wrong().await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    try_right().await.unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "throttled").count() >= 14)
        .await;
    assert!(
        lines
            .iter()
            .filter(|e| e["reason"] == "throttled")
            .all(|e| e["serial"] == device.serial.as_str() && e["outcome"] == "failure")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_get_no_more_than_five_code_checks() {
    const PARALLEL: usize = 256;
    let b = Arc::new(TestBroker::start().await);
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let guesses: Vec<String> = far_codes(&device.key, b.now()).take(PARALLEL).collect();
    let clients: Vec<_> = (0..PARALLEL).map(|_| b.sts(&alice)).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(PARALLEL));
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(guesses)
        .map(|(sts, guess)| {
            let (barrier, serial) = (Arc::clone(&barrier), device.serial.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                sts.get_session_token()
                    .serial_number(serial)
                    .token_code(guess)
                    .send()
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_sdk_failure!(
            t.await.unwrap(),
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "GetSessionToken")
                .count()
                >= PARALLEL
        })
        .await;
    let checked = lines.iter().filter(|e| e["reason"] == "wrong_code").count();
    let throttled = lines.iter().filter(|e| e["reason"] == "throttled").count();
    eprintln!("concurrent guesses: {checked} checked, {throttled} refused unchecked");
    assert_eq!((checked, throttled), (5, PARALLEL - 5));
    Arc::try_unwrap(b).ok().unwrap().stop().await;
}
