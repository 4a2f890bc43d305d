//! What survives a restart: replay protection and the MFA lock-out across `kill -9` of the real
//! binary (real clock, Rust SDK), identities made just before the kill, and a device's drift and
//! last accepted step across an orderly restart (README.md: a code is never accepted twice, even
//! across `kill -9`; a restart grants no more guesses).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::audit::audit_lines_in;
use crate::support::clients::{iam_at, root_creds_in, sts_at};
use crate::support::mfa::{create_virtual_device, enable_mfa, session_with_mfa, wrong_code};
use crate::support::process::ServerProcess;
use crate::support::texts;
use crate::support::totp::{Totp, step_at};
use crate::support::{Creds, TestBroker, assert_sdk_failure, eventually, fresh_dir, wall_now};

#[tokio::test]
async fn accepted_code_is_still_refused_after_kill_9_and_restart() {
    let data_dir: PathBuf = fresh_dir("kill9").join("data");
    let first = ServerProcess::start(&data_dir, "first").await;
    let root = root_creds_in(&data_dir);
    let iam = iam_at(&first.url, &root);
    iam.create_user().user_name("alice").send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let alice = Creds::new(&key.access_key_id, &key.secret_access_key, None);

    // Alice creates and enables her device with two consecutive codes of the real clock.
    let device = iam_at(&first.url, &alice)
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-phone")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    let seed = String::from_utf8(device.base32_string_seed.unwrap().into_inner()).unwrap();
    let totp = Totp::from_base32(&seed).unwrap();
    let serial = device.serial_number;
    let enabled_step = step_at(wall_now());
    iam_at(&first.url, &alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&serial)
        .authentication_code1(totp.code(enabled_step - 1))
        .authentication_code2(totp.code(enabled_step))
        .send()
        .await
        .unwrap();

    // The next step's code (t or t+1 for the broker, whenever it reads its clock) is accepted.
    let code = totp.code(enabled_step + 1);
    let session = sts_at(&first.url, &alice)
        .get_session_token()
        .serial_number(&serial)
        .token_code(&code)
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    assert!(session.access_key_id.starts_with("ASIA"));
    // A second key made just before the kill; then SIGKILL, no chance to flush anything.
    let late_key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let accepted_at = Instant::now();
    first.kill_9();

    let second = ServerProcess::start(&data_dir, "second").await;
    let restarted_in = accepted_at.elapsed();
    assert_sdk_failure!(
        sts_at(&second.url, &alice)
            .get_session_token()
            .serial_number(&serial)
            .token_code(&code)
            .send()
            .await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    // Refused as a replay, not because time moved the code out of the window.
    let reason = eventually(Duration::from_secs(5), || async {
        audit_lines_in(&data_dir)
            .iter()
            .rev()
            .find(|e| e["action"] == "GetSessionToken" && e["outcome"] == "failure")
            .map(|e| e["reason"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(reason, "replayed");

    // Identities made before the kill are all there.
    let root_iam = iam_at(&second.url, &root);
    let users = root_iam.list_users().send().await.unwrap().users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_name, "alice");
    let late = Creds::new(&late_key.access_key_id, &late_key.secret_access_key, None);
    for creds in [&alice, &late] {
        let who = sts_at(&second.url, creds)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        assert!(who.arn().unwrap().ends_with(":user/alice"));
    }
    let devices = root_iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .mfa_devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].serial_number, serial);
    // Session credentials minted before the kill verify on the restarted process.
    let session = Creds::new(
        &session.access_key_id,
        &session.secret_access_key,
        Some(&session.session_token),
    );
    sts_at(&second.url, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    eprintln!(
        "kill -9: code accepted, process killed, restarted and the same code refused as a replay ({} ms from acceptance to restart)",
        restarted_in.as_millis()
    );
    drop(second);
}

#[tokio::test]
async fn drift_and_the_last_accepted_step_survive_a_restart() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    // A device five steps ahead, enabled with its codes.
    enable_mfa(&b, &alice, "alice", &device, (4, 5))
        .await
        .unwrap();
    b.clock.advance(60);
    let code = device.code_at(b.now(), 5);
    session_with_mfa(&b, &alice, &device.serial, &code)
        .await
        .unwrap();

    let b = b.restart().await;
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &code).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
        "replayed after the restart"
    );
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
        "the drift is remembered: our own step is outside the window"
    );
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 5))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_lock_out_survives_kill_9_and_restart() {
    let data_dir: PathBuf = fresh_dir("kill9-lock").join("data");
    let first = ServerProcess::start(&data_dir, "first").await;
    let root = root_creds_in(&data_dir);
    let iam = iam_at(&first.url, &root);
    iam.create_user().user_name("alice").send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let alice = Creds::new(&key.access_key_id, &key.secret_access_key, None);
    let device = iam_at(&first.url, &alice)
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-phone")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    let seed = String::from_utf8(device.base32_string_seed.unwrap().into_inner()).unwrap();
    let totp = Totp::from_base32(&seed).unwrap();
    let serial = device.serial_number;
    let step = step_at(wall_now());
    iam_at(&first.url, &alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&serial)
        .authentication_code1(totp.code(step - 1))
        .authentication_code2(totp.code(step))
        .send()
        .await
        .unwrap();
    // Five wrong codes lock the device for 30 s of the real clock; then SIGKILL.
    for _ in 0..5 {
        assert_sdk_failure!(
            sts_at(&first.url, &alice)
                .get_session_token()
                .serial_number(&serial)
                .token_code(wrong_code(&totp, wall_now()))
                .send()
                .await,
            403,
            "AccessDenied",
            texts::MFA_INVALID_CODE,
        );
    }
    let locked_at = Instant::now();
    first.kill_9();

    let second = ServerProcess::start(&data_dir, "second").await;
    // The next step's code has never been used: only the lock can refuse it.
    let fresh = totp.code(step_at(wall_now()) + 1);
    assert_sdk_failure!(
        sts_at(&second.url, &alice)
            .get_session_token()
            .serial_number(&serial)
            .token_code(&fresh)
            .send()
            .await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    let elapsed = locked_at.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "the lock had ended before the check ({elapsed:?})"
    );
    // Refused unchecked, by the lock the first process recorded.
    eventually(Duration::from_secs(5), || async {
        audit_lines_in(&data_dir)
            .iter()
            .any(|e| e["action"] == "GetSessionToken" && e["reason"] == "throttled")
            .then_some(())
    })
    .await;
    drop(second);
}
