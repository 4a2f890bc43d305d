//! The operator's `sts-broker admin` commands, through the library and the real binary, on a
//! running broker's data dir: hardware tokens imported from a vendor's seed file (bound to one
//! user, or not), the account root user's MFA, which only the operator enables or deactivates,
//! and deleting any device (README.md;
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_enable_physical.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/enable-virt-mfa-for-root.html).

use crate::support::assert::Outcome as _;
use crate::support::mfa::{
    create_virtual_device, enable_mfa, enabled_device, hardware_token, mfa_serials,
    session_with_mfa, virtual_serials,
};
use crate::support::process::run_admin;
use crate::support::texts;
use crate::support::{
    Failure, PICKUP, TestBroker, assert_sdk_failure, eventually, fresh_dir, session_creds, wall_now,
};

const HW_SEED_1: &[u8] = b"12345678901234567890";
const HW_SEED_2: &[u8] = b"hardware-token-seed-2";

#[tokio::test]
async fn hardware_tokens_imported_by_the_operator_are_enabled_and_used() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let t1 = hardware_token("GAHT12345678", HW_SEED_1);
    let t2 = hardware_token("GAHT87654321", HW_SEED_2);
    let dir = fresh_dir("seeds");

    // Through the library, on the running broker's data dir.
    let seeds = dir.join("seeds.csv");
    std::fs::write(
        &seeds,
        format!("serial,seed\n{},{}\n", t1.serial, t1.seed_b32),
    )
    .unwrap();
    let operator = b.operator();
    assert_eq!(operator.import_hardware(&seeds, None).unwrap(), 1);
    // Importing the same serial again is refused; a file with one bad row imports nothing.
    assert!(operator.import_hardware(&seeds, None).is_err());
    let t3 = hardware_token("GAHT33333333", b"third-token-seed-333");
    let mixed = dir.join("mixed.csv");
    std::fs::write(
        &mixed,
        format!("{},{}\nGAHT44444444,not base32!\n", t3.serial, t3.seed_b32),
    )
    .unwrap();
    assert!(operator.import_hardware(&mixed, None).is_err());
    let t3_only = dir.join("t3.csv");
    std::fs::write(&t3_only, format!("{},{}\n", t3.serial, t3.seed_b32)).unwrap();
    assert_eq!(
        operator.import_hardware(&t3_only, None).unwrap(),
        1,
        "the refused file left nothing behind"
    );
    operator.close();

    // Through the real binary.
    let seeds2 = dir.join("seeds2.csv");
    std::fs::write(
        &seeds2,
        format!("# vendor file\n{},{}\n", t2.serial, t2.seed_b32),
    )
    .unwrap();
    let out = run_admin(
        &["mfa", "import-hardware", "--file", seeds2.to_str().unwrap()],
        &b.data_dir,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "imported 1 hardware MFA device(s)"
    );

    // The running broker picks both up without a restart; users enable them by vendor serial.
    for (creds, user, token) in [(&alice, "alice", &t1), (&bob, "bob", &t2)] {
        eventually(PICKUP, || async {
            match enable_mfa(&b, creds, user, token, (-1, 0)).await {
                Err(e) if Failure::of(&e).code == "NoSuchEntity" => None,
                other => {
                    other.unwrap();
                    Some(())
                }
            }
        })
        .await;
    }
    assert_eq!(mfa_serials(&b, &alice, None).await, [t1.serial.as_str()]);
    // Hardware tokens are not virtual devices.
    assert!(virtual_serials(&b, &b.root, None).await.is_empty());

    b.clock.advance(30);
    let now = b.now();
    let creds = session_with_mfa(&b, &alice, &t1.serial, &t1.code_at(now, 0))
        .await
        .unwrap();
    assert_eq!(
        b.session_seen(&session_creds(&creds)).mfa.unwrap().0,
        "GAHT12345678"
    );
    session_with_mfa(&b, &bob, &t2.serial, &t2.code_at(now, 0))
        .await
        .unwrap();
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &t1.serial, &t1.code_at(now, 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &t2.serial, &t2.code_at(now, 1)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    // The operator's seeds never reach the audit log, only the serials.
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "ImportHardwareMFADevice")
                .count()
                >= 4
        })
        .await;
    assert!(
        lines
            .iter()
            .any(|e| e["action"] == "ImportHardwareMFADevice"
                && e["serial"] == "GAHT87654321"
                && e["outcome"] == "success")
    );
    let raw = b.audit_text();
    for t in [&t1, &t2, &t3] {
        assert!(!raw.contains(&t.seed_b32));
    }
    b.stop().await;
}

#[tokio::test]
async fn root_mfa_is_enabled_only_by_the_operator_and_caps_the_session_at_an_hour() {
    let b = TestBroker::start().await;
    let root_iam = b.iam(&b.root);
    let device = create_virtual_device(&root_iam, "root-phone").await;
    // Through the API: refused.
    assert_sdk_failure!(
        enable_mfa(&b, &b.root, "root", &device, (-1, 0)).await,
        403,
        "AccessDenied",
        texts::ROOT_MFA_OPERATOR_ONLY,
    );
    assert_sdk_failure!(
        root_iam
            .deactivate_mfa_device()
            .user_name("root")
            .serial_number(&device.serial)
            .send()
            .await,
        403,
        "AccessDenied",
        texts::ROOT_MFA_OPERATOR_ONLY,
    );
    b.clock.advance(30);
    assert_sdk_failure!(
        session_with_mfa(&b, &b.root, &device.serial, &device.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );

    // The operator enables it; the running broker takes it up without a restart.
    let now = b.now();
    let operator = b.operator();
    operator
        .enable_root(
            &device.serial,
            &device.code_at(now, -1),
            &device.code_at(now, 0),
        )
        .unwrap();
    operator.close();
    b.clock.advance(30);
    let now = b.now();
    let creds = eventually(PICKUP, || async {
        let r = b
            .sts(&b.root)
            .get_session_token()
            .duration_seconds(7200)
            .serial_number(&device.serial)
            .token_code(device.code_at(now, 0))
            .send()
            .await;
        match r {
            Ok(out) => Some(out.credentials.unwrap()),
            refused => {
                assert_sdk_failure!(refused, 403, "AccessDenied", texts::MFA_UNABLE_TO_VALIDATE);
                None
            }
        }
    })
    .await;
    assert_eq!(creds.expiration.secs(), now + 3600);
    let seen = b.session_seen(&session_creds(&creds));
    assert_eq!(seen.mfa.unwrap().0, device.serial);
    assert_eq!(seen.arn, b.root_arn());
    assert_eq!(
        mfa_serials(&b, &b.root, None).await,
        [device.serial.as_str()]
    );
    // The root session with MFA may use IAM.
    let session = session_creds(&creds);
    b.iam(&session)
        .create_user()
        .user_name("made-by-root-session")
        .send()
        .await
        .unwrap();
    // The operator deactivates it again (library); the broker follows.
    let operator = b.operator();
    operator.deactivate(&device.serial).unwrap();
    operator.close();
    b.clock.advance(30);
    let now = b.now();
    let unable = Failure::new(403, "AccessDenied", texts::MFA_UNABLE_TO_VALIDATE);
    eventually(PICKUP, || async {
        let r = session_with_mfa(&b, &b.root, &device.serial, &device.code_at(now, 0)).await;
        (r.refusal().as_ref() == Some(&unable)).then_some(())
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn root_mfa_through_the_real_admin_binary() {
    let b = TestBroker::start().await;
    let device = create_virtual_device(&b.iam(&b.root), "root-token").await;
    // The binary reads the wall clock; this broker's clock is still at the wall time.
    let now = wall_now();
    let out = run_admin(
        &[
            "mfa",
            "enable-root",
            "--serial",
            &device.serial,
            "--code1",
            &device.code_at(now, -1),
            "--code2",
            &device.code_at(now, 0),
        ],
        &b.data_dir,
    );
    assert!(out.status.success(), "{out:?}");
    b.clock.advance(60);
    let now = b.now();
    eventually(PICKUP, || async {
        session_with_mfa(&b, &b.root, &device.serial, &device.code_at(now, 0))
            .await
            .ok()
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_token_bound_to_a_user_is_seen_and_enabled_only_by_that_user() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let mallory = b.user_with_key("mallory").await;
    let t1 = hardware_token("GAHT12345678", HW_SEED_1);
    let t2 = hardware_token("GAHT87654321", HW_SEED_2);
    let dir = fresh_dir("bound");
    // `--user` through the real binary; a third column through the library.
    let for_alice = dir.join("alice.csv");
    std::fs::write(&for_alice, format!("{},{}\n", t1.serial, t1.seed_b32)).unwrap();
    let out = run_admin(
        &[
            "mfa",
            "import-hardware",
            "--file",
            for_alice.to_str().unwrap(),
            "--user",
            "alice",
        ],
        &b.data_dir,
    );
    assert!(out.status.success(), "{out:?}");
    let for_bob = dir.join("bob.csv");
    std::fs::write(
        &for_bob,
        format!("serial,seed,user\n{},{},bob\n", t2.serial, t2.seed_b32),
    )
    .unwrap();
    let operator = b.operator();
    assert_eq!(operator.import_hardware(&for_bob, None).unwrap(), 1);
    // Binding to a user that does not exist imports nothing.
    let t3 = hardware_token("GAHT33333333", b"third-token-seed-333");
    let nobody = dir.join("nobody.csv");
    std::fs::write(&nobody, format!("{},{}\n", t3.serial, t3.seed_b32)).unwrap();
    let e = operator
        .import_hardware(&nobody, Some("nobody"))
        .unwrap_err();
    assert!(e.contains("nobody"), "{e}");
    operator.close();
    let b = b.restart().await;
    // Others, even with the right codes, are told the token does not exist, as for a serial
    // never imported; nothing is counted against it.
    for (creds, user) in [(&mallory, "mallory"), (&bob, "bob")] {
        for offsets in [(0, 2), (-1, 0)] {
            assert_sdk_failure!(
                enable_mfa(&b, creds, user, &t1, offsets).await,
                404,
                "NoSuchEntity",
                &texts::no_such_mfa_device(&t1.serial),
            );
        }
    }
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &t3, (-1, 0)).await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&t3.serial),
    );
    assert_eq!(b.lockout_records(), 0);
    // Its user is told of a wrong code, as for any device of its own, and enables it.
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "alice", &t1, (0, 2)).await,
        403,
        "InvalidAuthenticationCode",
        texts::INVALID_AUTHENTICATION_CODE,
    );
    enable_mfa(&b, &alice, "alice", &t1, (-1, 0)).await.unwrap();
    enable_mfa(&b, &bob, "bob", &t2, (-1, 0)).await.unwrap();
    assert_eq!(mfa_serials(&b, &alice, None).await, [t1.serial.as_str()]);
    assert_eq!(mfa_serials(&b, &bob, None).await, [t2.serial.as_str()]);
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "ImportHardwareMFADevice")
                .count()
                >= 2
        })
        .await;
    assert!(
        lines
            .iter()
            .any(|e| e["action"] == "ImportHardwareMFADevice"
                && e["serial"] == t1.serial.as_str()
                && e["target_user"] == "alice")
    );
    b.stop().await;
}

#[tokio::test]
async fn the_operator_deletes_any_device() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let mallory = b.user_with_key("mallory").await;
    let enabled = enabled_device(&b, &alice, "alice", "alice-phone").await;
    // A name squatted by another user's spare device.
    let squatted = create_virtual_device(&b.iam(&mallory), "bob-phone").await;
    let token = hardware_token("GAHT12345678", HW_SEED_1);
    let seeds = fresh_dir("delete").join("seeds.csv");
    std::fs::write(&seeds, format!("{},{}\n", token.serial, token.seed_b32)).unwrap();
    let operator = b.operator();
    operator.import_hardware(&seeds, None).unwrap();
    let fido = operator
        .register_fido("mallory", "key1", "Y3JlZGVudGlhbA", "cHVibGljLWtleQ")
        .unwrap();
    // Through the library: an enabled device, a hardware token, a FIDO key.
    assert!(operator.delete_device(&enabled.serial).unwrap());
    assert!(!operator.delete_device(&token.serial).unwrap());
    assert!(operator.delete_device(&fido).unwrap());
    let e = operator.delete_device("GAHT00000000").unwrap_err();
    assert!(e.contains("GAHT00000000"), "{e}");
    operator.close();
    // Through the real binary.
    let out = run_admin(
        &["mfa", "delete", "--serial", &squatted.serial],
        &b.data_dir,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("deleted {}", squatted.serial)
    );
    let out = run_admin(
        &["mfa", "delete", "--serial", &squatted.serial],
        &b.data_dir,
    );
    assert!(!out.status.success(), "{out:?}");
    // The running broker follows: the enabled device no longer validates, the name is free.
    b.clock.advance(30);
    let now = b.now();
    let unable = Failure::new(403, "AccessDenied", texts::MFA_UNABLE_TO_VALIDATE);
    eventually(PICKUP, || async {
        let r = session_with_mfa(&b, &alice, &enabled.serial, &enabled.code_at(now, 0)).await;
        (r.refusal().as_ref() == Some(&unable)).then_some(())
    })
    .await;
    assert!(mfa_serials(&b, &alice, None).await.is_empty());
    eventually(PICKUP, || async {
        b.iam(&alice)
            .create_virtual_mfa_device()
            .virtual_mfa_device_name("bob-phone")
            .send()
            .await
            .ok()
    })
    .await;
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "DeleteMFADevice")
                .count()
                >= 6
        })
        .await;
    let deleted: Vec<_> = lines
        .iter()
        .filter(|e| e["action"] == "DeleteMFADevice" && e["outcome"] == "success")
        .map(|e| e["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        deleted,
        [
            enabled.serial.clone(),
            token.serial.clone(),
            fido,
            squatted.serial.clone()
        ]
    );
    b.stop().await;
}
