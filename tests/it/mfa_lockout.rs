//! Guessing is throttled per device: five failures lock it, the lock doubles up to fifteen
//! minutes, a locked device refuses even the right code with the wrong-code text, and concurrent
//! guesses get no more than five checks. The lock-out lives in the store: a restart or a second
//! broker on the data dir grants no more guesses. An unassigned hardware token counts failures
//! per caller, so a guesser locks out only itself (README.md, `mfa_free_failures`/
//! `mfa_*_backoff_secs`, docs/mfa.md#throttling; the refusals:
//! https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_EnableMFADevice.html).

use std::sync::Arc;

use crate::support::mfa::{
    create_virtual_device, enable_mfa, enabled_device, far_codes, hardware_token, mfa_serials,
    session_with_mfa, wrong_code,
};
use crate::support::texts;
use crate::support::{TestBroker, assert_sdk_failure, failure, fresh_dir};

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

// ---------------------------------------------------------------------------------------------
// The lock-out lives in the store: a restart or a second broker on the data dir grants nothing.

/// Waits until `b` has audited `n` GetSessionToken refusals of a locked device (refusals are
/// audited in the background).
async fn throttled(b: &TestBroker, n: usize) {
    b.audit_until(|l| {
        l.iter()
            .filter(|e| e["action"] == "GetSessionToken" && e["reason"] == "throttled")
            .count()
            >= n
    })
    .await;
}

#[tokio::test]
async fn failures_and_the_lock_survive_a_restart() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    for _ in 0..3 {
        assert_sdk_failure!(
            session_with_mfa(
                &b,
                &alice,
                &device.serial,
                &wrong_code(&device.key, b.now())
            )
            .await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    // Three failures are remembered across the restart: two more lock the device.
    let b = b.restart().await;
    for _ in 0..2 {
        assert_sdk_failure!(
            session_with_mfa(
                &b,
                &alice,
                &device.serial,
                &wrong_code(&device.key, b.now())
            )
            .await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    let right = || async {
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await
    };
    assert_sdk_failure!(right().await, 403, "AccessDenied", texts::MFA_INVALID_CODE);
    throttled(&b, 1).await;
    // So is the lock itself.
    let b = b.restart().await;
    let right = || async {
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await
    };
    b.clock.advance(29);
    assert_sdk_failure!(right().await, 403, "AccessDenied", texts::MFA_INVALID_CODE);
    throttled(&b, 2).await;
    b.clock.advance(1);
    right().await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_second_broker_on_the_data_dir_grants_no_more_guesses() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let peer = b.peer().await;
    b.clock.advance(30);
    // Five failures spread over the two brokers lock the device on both.
    for i in 0..5 {
        let node = if i % 2 == 0 { &b } else { &peer };
        assert_sdk_failure!(
            session_with_mfa(
                node,
                &alice,
                &device.serial,
                &wrong_code(&device.key, b.now())
            )
            .await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    for node in [&b, &peer] {
        assert_sdk_failure!(
            session_with_mfa(node, &alice, &device.serial, &device.code_at(b.now(), 0)).await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
        throttled(node, 1).await;
    }
    // Once the lock is over, a success on one broker clears the count for both: four more
    // failures on the other still leave the device open.
    b.clock.advance(30);
    session_with_mfa(&peer, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    b.clock.advance(30);
    for _ in 0..4 {
        assert_sdk_failure!(
            session_with_mfa(
                &b,
                &alice,
                &device.serial,
                &wrong_code(&device.key, b.now())
            )
            .await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE
        );
    }
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    peer.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_at_two_brokers_get_no_more_than_five_code_checks() {
    const PARALLEL: usize = 128;
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let peer = b.peer().await;
    b.clock.advance(30);
    let guesses: Vec<String> = far_codes(&device.key, b.now()).take(PARALLEL).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(PARALLEL));
    let tasks: Vec<_> = guesses
        .into_iter()
        .enumerate()
        .map(|(i, guess)| {
            let sts = if i % 2 == 0 {
                b.sts(&alice)
            } else {
                peer.sts(&alice)
            };
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
    let refusals = |node: &TestBroker| {
        let node_lines = node.audit_lines();
        let count = |reason: &str| node_lines.iter().filter(|e| e["reason"] == reason).count();
        (count("wrong_code"), count("throttled"))
    };
    let seen = |node: &TestBroker| {
        node.audit_lines()
            .iter()
            .filter(|e| e["action"] == "GetSessionToken")
            .count()
    };
    crate::support::eventually(std::time::Duration::from_secs(5), || {
        let done = seen(&b) + seen(&peer) >= PARALLEL;
        async move { done.then_some(()) }
    })
    .await;
    let (mine, theirs) = (refusals(&b), refusals(&peer));
    eprintln!("concurrent guesses at two brokers: {mine:?} and {theirs:?} (checked, throttled)");
    assert_eq!(mine.0 + theirs.0, 5, "codes checked");
    assert_eq!(mine.1 + theirs.1, PARALLEL - 5, "refused unchecked");
    peer.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// An unassigned hardware token, which anyone may claim to hold: failures count per caller.

#[tokio::test]
async fn wrong_codes_on_an_unassigned_hardware_token_lock_out_only_the_guesser() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let mallory = b.user_with_key("mallory").await;
    let token = hardware_token("GAHT12345678", b"12345678901234567890");
    let seeds = fresh_dir("seeds").join("seeds.csv");
    std::fs::write(&seeds, format!("{},{}\n", token.serial, token.seed_b32)).unwrap();
    let operator = b.operator();
    operator.import_hardware(&seeds, None).unwrap();
    operator.close();
    let b = b.restart().await;
    // Mallory guesses until locked out, then even the right codes are refused to her…
    for _ in 0..5 {
        failure(enable_mfa(&b, &mallory, "mallory", &token, (0, 2)).await);
    }
    failure(enable_mfa(&b, &mallory, "mallory", &token, (-1, 0)).await);
    // …but the token's holder is not locked out.
    enable_mfa(&b, &alice, "alice", &token, (-1, 0))
        .await
        .unwrap();
    let lines = b
        .audit_until(|l| l.iter().any(|e| e["reason"] == "throttled"))
        .await;
    assert!(lines.iter().any(|e| e["action"] == "EnableMFADevice"
        && e["serial"] == token.serial.as_str()
        && e["principal"] == b.user_arn("mallory").as_str()
        && e["reason"] == "throttled"));
    assert_eq!(mfa_serials(&b, &alice, None).await, [token.serial.as_str()]);
    // Enabled, the token counts failures as alice's device; mallory's record went.
    assert_eq!(b.lockout_records(), 0);
    b.stop().await;
}

#[tokio::test]
async fn a_deleted_users_records_go_with_it() {
    let b = TestBroker::start().await;
    let mallory = b.user_with_key("mallory").await;
    let token = hardware_token("GAHT12345678", b"12345678901234567890");
    let seeds = fresh_dir("seeds").join("seeds.csv");
    std::fs::write(&seeds, format!("{},{}\n", token.serial, token.seed_b32)).unwrap();
    let operator = b.operator();
    operator.import_hardware(&seeds, None).unwrap();
    operator.close();
    let b = b.restart().await;
    failure(enable_mfa(&b, &mallory, "mallory", &token, (0, 2)).await);
    failure(enable_mfa(&b, &b.root, "mallory", &token, (0, 2)).await);
    assert_eq!(
        b.lockout_records(),
        2,
        "mallory's and root's, at the one token"
    );
    let root_iam = b.iam(&b.root);
    root_iam
        .delete_access_key()
        .user_name("mallory")
        .access_key_id(&mallory.akid)
        .send()
        .await
        .unwrap();
    root_iam
        .delete_user()
        .user_name("mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(b.lockout_records(), 1, "root's");
    b.stop().await;
}
