//! Enabling, resynchronising and deactivating MFA devices with their codes, how many a user may
//! have enabled, that a further one needs MFA, and that unassigned hardware tokens cannot be
//! told from unknown serials (https://docs.aws.amazon.com/IAM/latest/APIReference/API_EnableMFADevice.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_ResyncMFADevice.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeactivateMFADevice.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).

use aws_sdk_iam::types::AssignmentStatusType;

use crate::support::mfa::{
    VirtualDevice, create_virtual_device, enable_mfa, enabled_device, hardware_token, mfa_serials,
    resync_mfa, session_with_mfa, virtual_serials, wrong_code,
};
use crate::support::texts::{self, min_length, pattern, validation};
use crate::support::{Setup, TestBroker, assert_sdk_failure, fresh_dir, session_creds};

// ---------------------------------------------------------------------------------------------
// EnableMFADevice and ResyncMFADevice: two consecutive codes.

#[tokio::test]
async fn enable_needs_two_consecutive_codes() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    let now = b.now();
    let wrong = wrong_code(&device.key, now);
    // Not consecutive, the same code twice, the wrong order, a wrong code: all refused.
    for (first, second) in [
        (device.code_at(now, 0), device.code_at(now, 2)),
        (device.code_at(now, 0), device.code_at(now, 0)),
        (device.code_at(now, 0), device.code_at(now, -1)),
        (wrong.clone(), device.code_at(now, 0)),
    ] {
        let r = b
            .iam(&alice)
            .enable_mfa_device()
            .user_name("alice")
            .serial_number(&device.serial)
            .authentication_code1(first)
            .authentication_code2(second)
            .send()
            .await;
        assert_sdk_failure!(
            r,
            403,
            "InvalidAuthenticationCode",
            texts::INVALID_AUTHENTICATION_CODE,
        );
    }
    // Nothing was enabled.
    assert!(mfa_serials(&b, &alice, None).await.is_empty());
    assert_eq!(
        virtual_serials(&b, &alice, Some(AssignmentStatusType::Unassigned)).await,
        [device.serial.as_str()]
    );
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 1)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    // Two consecutive codes enable it.
    enable_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [device.serial.as_str()]
    );
    // Already enabled: refused (to a caller who may enable a further device at all).
    b.clock.advance(60);
    let mfa = session_creds(
        &session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap(),
    );
    b.clock.advance(60);
    assert_sdk_failure!(
        enable_mfa(&b, &mfa, "alice", &device, (-1, 0)).await,
        409,
        "EntityAlreadyExists",
        texts::MFA_DEVICE_IN_USE,
    );
    // Codes shaped wrong are ValidationErrors.
    let r = b
        .iam(&alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .authentication_code1("12345")
        .authentication_code2("12a456")
        .send()
        .await;
    assert_sdk_failure!(
        r,
        400,
        "ValidationError",
        &validation(&[
            min_length("12345", "authenticationCode1", 6),
            pattern(
                "12a456",
                "authenticationCode2",
                texts::AUTHENTICATION_CODE_PATTERN
            ),
        ]),
    );
    // Unknown user, unknown device.
    let bob_device = create_virtual_device(&b.iam(&b.root), "spare").await;
    assert_sdk_failure!(
        enable_mfa(&b, &b.root, "nobody", &bob_device, (-1, 0)).await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("nobody"),
    );
    let ghost = VirtualDevice {
        serial: format!("arn:aws:iam::{}:mfa/ghost", b.account_id),
        ..hardware_token("x", b"0123456789abcdefghij")
    };
    assert_sdk_failure!(
        enable_mfa(&b, &b.root, "alice", &ghost, (-1, 0)).await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&ghost.serial),
    );
    b.stop().await;
}

#[tokio::test]
async fn a_drifted_device_is_accepted_at_enable_and_its_drift_remembered() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    // The device runs five steps ahead: it shows step now+5 (and showed now+4 before).
    enable_mfa(&b, &alice, "alice", &device, (4, 5))
        .await
        .unwrap();
    b.clock.advance(60);
    let now = b.now();
    // Our own current code is outside the drifted window; the device's current code works.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 5))
        .await
        .unwrap();
    b.clock.advance(60);
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 4))
        .await
        .expect("t-1 of the drifted centre");

    // Beyond the resync window (20 steps) a drift is refused at enable.
    let far = create_virtual_device(&b.iam(&b.root), "far").await;
    b.iam(&b.root)
        .create_user()
        .user_name("bob")
        .send()
        .await
        .unwrap();
    assert_sdk_failure!(
        enable_mfa(&b, &b.root, "bob", &far, (24, 25)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    enable_mfa(&b, &b.root, "bob", &far, (-20, -19))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn resync_learns_a_new_drift() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    // The device's clock jumps nine steps ahead: its codes fail until it is resynchronised.
    b.clock.advance(60);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 9)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    // Wrong or non-consecutive codes do not resync.
    assert_sdk_failure!(
        resync_mfa(&b, &alice, "alice", &device, (8, 10)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    resync_mfa(&b, &alice, "alice", &device, (8, 9))
        .await
        .unwrap();
    b.clock.advance(60);
    let now = b.now();
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 9))
        .await
        .unwrap();
    // Root may resync a user's device too (its clock fixed, ten minutes later: the steps
    // after the last accepted one); a device the user does not hold is not found.
    b.clock.advance(600);
    resync_mfa(&b, &b.root, "alice", &device, (-1, 0))
        .await
        .unwrap();
    b.clock.advance(30);
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    let spare = create_virtual_device(&b.iam(&alice), "spare").await;
    assert_sdk_failure!(
        resync_mfa(&b, &alice, "alice", &spare, (-1, 0)).await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&spare.serial),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// DeactivateMFADevice.

#[tokio::test]
async fn deactivate_needs_an_mfa_session_for_users_and_root_may_deactivate_any() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let arn = b.user_arn("alice");
    // Long-term keys and sessions without MFA may not.
    assert_sdk_failure!(
        b.iam(&alice)
            .deactivate_mfa_device()
            .user_name("alice")
            .serial_number(&device.serial)
            .send()
            .await,
        403,
        "AccessDenied",
        &texts::explicitly_denied(&arn, "DeactivateMFADevice", &arn),
    );
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [device.serial.as_str()]
    );
    // With MFA-backed session credentials it works, UserName defaulting to the caller.
    b.clock.advance(30);
    let mfa = session_creds(
        &session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap(),
    );
    b.iam(&mfa)
        .deactivate_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    assert!(mfa_serials(&b, &alice, None).await.is_empty());
    // A deactivated device no longer validates, even with a fresh code.
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    assert_eq!(
        virtual_serials(&b, &alice, Some(AssignmentStatusType::Unassigned)).await,
        [device.serial.as_str()]
    );
    // Re-enabled, it works again; then root deactivates it with its long-term keys.
    enable_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();
    b.clock.advance(30);
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    b.iam(&b.root)
        .deactivate_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    // Deactivating what is not enabled.
    assert_sdk_failure!(
        b.iam(&b.root)
            .deactivate_mfa_device()
            .user_name("alice")
            .serial_number(&device.serial)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&device.serial),
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// How many devices a user may have enabled.

/// MFA-backed session credentials of `creds` from `device`, half a minute from now (the clock
/// moves on, so the code is a fresh step).
async fn mfa_session(
    b: &TestBroker,
    creds: &crate::support::Creds,
    device: &VirtualDevice,
) -> crate::support::Creds {
    b.clock.advance(30);
    session_creds(
        &session_with_mfa(b, creds, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn one_device_per_user_by_default() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let first = enabled_device(&b, &alice, "alice", "first").await;
    let second = create_virtual_device(&b.iam(&alice), "second").await;
    let mfa = mfa_session(&b, &alice, &first).await;
    assert_sdk_failure!(
        enable_mfa(&b, &mfa, "alice", &second, (-1, 0)).await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("MFADevicesInUsePerUser", 1),
    );
    assert_eq!(mfa_serials(&b, &alice, None).await, [first.serial.as_str()]);
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &second.serial, &second.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    session_with_mfa(&b, &alice, &first.serial, &first.code_at(b.now(), 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn two_devices_when_configured() {
    let b = TestBroker::start_with(Setup::default().max_mfa_devices_per_user(2)).await;
    let alice = b.user_with_key("alice").await;
    let first = enabled_device(&b, &alice, "alice", "first").await;
    let mfa = mfa_session(&b, &alice, &first).await;
    let second = enabled_device(&b, &mfa, "alice", "second").await;
    let third = create_virtual_device(&b.iam(&alice), "third").await;
    assert_sdk_failure!(
        enable_mfa(&b, &mfa, "alice", &third, (-1, 0)).await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("MFADevicesInUsePerUser", 2),
    );
    // Either device is enough.
    b.clock.advance(30);
    for d in [&first, &second] {
        session_with_mfa(&b, &alice, &d.serial, &d.code_at(b.now(), 0))
            .await
            .unwrap();
    }
    b.stop().await;
}

#[tokio::test]
async fn eight_devices_at_most() {
    let b = TestBroker::start_with(Setup::default().max_mfa_devices_per_user(8)).await;
    let alice = b.user_with_key("alice").await;
    let mut devices = vec![enabled_device(&b, &alice, "alice", "d1").await];
    let mfa = mfa_session(&b, &alice, &devices[0]).await;
    for n in 2..=8 {
        devices.push(enabled_device(&b, &mfa, "alice", &format!("d{n}")).await);
    }
    let ninth = create_virtual_device(&b.iam(&alice), "d9").await;
    assert_sdk_failure!(
        enable_mfa(&b, &mfa, "alice", &ninth, (-1, 0)).await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("MFADevicesInUsePerUser", 8),
    );
    assert_eq!(mfa_serials(&b, &alice, None).await.len(), 8);
    b.clock.advance(30);
    for d in [&devices[0], &devices[7]] {
        session_with_mfa(&b, &alice, &d.serial, &d.code_at(b.now(), 0))
            .await
            .unwrap();
    }
    // A configuration beyond AWS's quota is refused (`docs/mfa.md#device-count`).
    assert!(!b.accepts(&Setup::default().max_mfa_devices_per_user(9)));
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A second device needs MFA: a long-term key alone cannot swap the device.

#[tokio::test]
async fn a_long_term_key_alone_cannot_enable_a_second_device() {
    let b = TestBroker::start_with(Setup::default().max_mfa_devices_per_user(2)).await;
    let alice = b.user_with_key("alice").await;
    let arn = b.user_arn("alice");
    // Alice's first device needs no MFA: there is none yet.
    let victim = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    // A thief with only alice's long-term key creates a device of its own but cannot enable it,
    // so it never gets an MFA session to deactivate alice's device with.
    let thief = create_virtual_device(&b.iam(&alice), "thief-phone").await;
    let denied = texts::explicitly_denied(&arn, "EnableMFADevice", &arn);
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &thief, (-1, 0)).await,
        403,
        "AccessDenied",
        &denied,
    );
    // Whatever the serial names: an unknown one gets the same answer, so nothing is learnt.
    let ghost = VirtualDevice {
        serial: "GAHT00000000".to_owned(),
        ..hardware_token("x", b"0123456789abcdefghij")
    };
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &ghost, (-1, 0)).await,
        403,
        "AccessDenied",
        &denied,
    );
    // A session without MFA is no better (it cannot call IAM at all).
    let plain = b.session(&alice).await;
    assert_sdk_failure!(
        enable_mfa(&b, &plain, "alice", &thief, (-1, 0)).await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &thief.serial, &thief.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [victim.serial.as_str()]
    );
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "EnableMFADevice" && e["error_code"] == "AccessDenied")
                .count()
                >= 2
        })
        .await;
    assert!(lines.iter().any(|e| e["action"] == "EnableMFADevice"
        && e["serial"] == thief.serial.as_str()
        && e["reason"] == "access_denied"));
    // With an MFA session from her device, alice adds the second one; root needs none.
    let mfa = mfa_session(&b, &alice, &victim).await;
    enable_mfa(&b, &mfa, "alice", &thief, (-1, 0))
        .await
        .unwrap();
    assert_eq!(mfa_serials(&b, &alice, None).await.len(), 2);
    let bob = b.user_with_key("bob").await;
    enabled_device(&b, &bob, "bob", "bob-phone").await;
    enabled_device(&b, &b.root, "bob", "bob-spare").await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Unassigned hardware tokens cannot be told from unknown serials.

#[tokio::test]
async fn a_wrong_code_on_an_unassigned_hardware_token_answers_as_an_unknown_serial() {
    let b = TestBroker::start().await;
    let mallory = b.user_with_key("mallory").await;
    let token = hardware_token("GAHT12345678", b"12345678901234567890");
    let seeds = fresh_dir("seeds").join("seeds.csv");
    std::fs::write(&seeds, format!("{},{}\n", token.serial, token.seed_b32)).unwrap();
    let operator = b.operator();
    operator.import_hardware(&seeds, None).unwrap();
    operator.close();
    let b = b.restart().await;
    let unknown = VirtualDevice {
        serial: "GAHT87654321".to_owned(),
        ..token.clone()
    };
    // Wrong codes, then (locked out) any codes: each answer is the unknown serial's.
    for attempt in 0..7 {
        for device in [&token, &unknown] {
            assert_sdk_failure!(
                enable_mfa(&b, &mallory, "mallory", device, (0, 2)).await,
                404,
                "NoSuchEntity",
                &texts::no_such_mfa_device(&device.serial),
                "attempt {attempt} on {}",
                device.serial
            );
        }
    }
    // Root, who sees every device, is told the truth.
    assert_sdk_failure!(
        enable_mfa(&b, &b.root, "mallory", &token, (0, 2)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    b.stop().await;
}
