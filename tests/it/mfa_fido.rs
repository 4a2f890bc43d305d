//! FIDO security keys: registered only by the operator (the console's path), listed like other
//! devices, never enabled or resynchronised through the API, and refused on GetSessionToken
//! before any code is looked at
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_fido_supported_configurations.html,
//! https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html).

use crate::support::mfa::{enabled_device, mfa_serials, session_with_mfa};
use crate::support::process::run_admin;
use crate::support::texts;
use crate::support::{PICKUP, Setup, TestBroker, assert_sdk_failure, eventually, failure};

#[tokio::test]
async fn fido_keys_are_never_enabled_through_the_api_nor_used_on_sts() {
    let b = TestBroker::start_with(Setup::default().max_mfa_devices_per_user(2)).await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let acct = b.account_id.clone();
    let virtual_device = enabled_device(&b, &alice, "alice", "alice-phone").await;

    let operator = b.operator();
    let serial = operator
        .register_fido(
            "alice",
            "yubikey",
            "Y3JlZGVudGlhbC1pZA",
            "cHVibGljLWtleS1ieXRlcw",
        )
        .unwrap();
    let prefix = format!("arn:aws:iam::{acct}:u2f/user/alice/yubikey-");
    let suffix = serial.strip_prefix(&prefix).unwrap();
    assert_eq!(suffix.len(), 8);
    assert!(
        suffix
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert!(
        operator
            .register_fido("alice", "bad name", "AA", "BB")
            .is_err()
    );
    assert!(operator.register_fido("nobody", "key", "AA", "BB").is_err());
    operator.close();
    // The real binary registers one for bob.
    let out = run_admin(
        &[
            "mfa",
            "register-fido",
            "--user",
            "bob",
            "--name",
            "bobkey",
            "--credential-id",
            "Ym9iLWNyZWQ",
            "--public-key",
            "Ym9iLXB1Yg",
        ],
        &b.data_dir,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let bob_serial = stdout
        .trim()
        .strip_prefix("registered FIDO security key ")
        .unwrap()
        .to_owned();
    assert!(bob_serial.starts_with(&format!("arn:aws:iam::{acct}:u2f/user/bob/bobkey-")));

    // The running broker lists it for alice once it has picked the change up.
    let listed = eventually(PICKUP, || async {
        let s = mfa_serials(&b, &alice, None).await;
        (s.len() == 2).then_some(s)
    })
    .await;
    assert!(listed.contains(&serial));
    eventually(PICKUP, || async {
        (mfa_serials(&b, &bob, None).await == [bob_serial.as_str()]).then_some(())
    })
    .await;

    // Enabling a FIDO key through the API: refused with a clear error, registered or not.
    let made_up = format!("arn:aws:iam::{acct}:u2f/user/alice/other-ABCDEF12");
    for s in [&serial, &made_up] {
        let r = b
            .iam(&alice)
            .enable_mfa_device()
            .user_name("alice")
            .serial_number(s)
            .authentication_code1("123456")
            .authentication_code2("234567")
            .send()
            .await;
        assert_sdk_failure!(r, 400, "InvalidInput", texts::FIDO_NOT_THROUGH_API, "{s}");
        let r = b
            .iam(&alice)
            .resync_mfa_device()
            .user_name("alice")
            .serial_number(s)
            .authentication_code1("123456")
            .authentication_code2("234567")
            .send()
            .await;
        assert_eq!(
            failure(r).code,
            if s == &serial {
                "InvalidInput"
            } else {
                "NoSuchEntity"
            }
        );
    }

    // GetSessionToken with a FIDO serial (registered, someone else's, or just the u2f form),
    // with a valid-looking code or without one: the FIDO refusal, and no code is looked at.
    b.clock.advance(30);
    let now = b.now();
    for s in [&serial, &bob_serial, &made_up] {
        for _ in 0..6 {
            assert_sdk_failure!(
                session_with_mfa(&b, &alice, s, &virtual_device.code_at(now, 0)).await,
                403,
                "AccessDenied",
                texts::MFA_FIDO_ON_STS,
                "{s}"
            );
            let r = b
                .sts(&alice)
                .get_session_token()
                .serial_number(s)
                .send()
                .await;
            assert_sdk_failure!(
                r,
                403,
                "AccessDenied",
                texts::MFA_FIDO_ON_STS,
                "{s} without a code"
            );
        }
    }
    assert_eq!(
        b.lockout_records(),
        0,
        "FIDO attempts never count as code failures"
    );
    // The code offered with the FIDO serial was not consumed: the virtual device takes it.
    session_with_mfa(
        &b,
        &alice,
        &virtual_device.serial,
        &virtual_device.code_at(now, 0),
    )
    .await
    .unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "fido_key").count() >= 36)
        .await;
    assert!(
        lines
            .iter()
            .filter(|e| e["action"] == "GetSessionToken" && e["outcome"] == "failure")
            .all(|e| e["reason"] == "fido_key")
    );
    assert!(
        lines
            .iter()
            .any(|e| e["action"] == "RegisterFIDOSecurityKey" && e["serial"] == serial.as_str())
    );
    b.stop().await;
}
