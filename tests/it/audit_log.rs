//! The audit log: one JSON line per GetSessionToken and per MFA-device change, with the
//! request id the client saw, the reason of every refusal, and never a code, seed or secret
//! (README.md, `audit_log`; the request id: https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html).

use std::collections::BTreeSet;

use aws_sdk_sts::operation::RequestId as _;

use crate::support::mfa::{
    create_virtual_device, enable_mfa, resync_mfa, session_with_mfa, wrong_code,
};
use crate::support::texts;
use crate::support::{TestBroker, assert_sdk_failure, failure, session_creds};

/// Every maximal run of exactly six digits in `text`.
fn six_digit_runs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            if run.len() == 6 {
                out.insert(run.clone());
            }
            run.clear();
        }
    }
    out
}

#[tokio::test]
async fn audit_log_records_every_get_session_token_and_device_change_and_no_secret() {
    use base64::Engine as _;
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let iam = b.iam(&alice);
    let mut codes = Vec::new();
    let mut secrets = vec![b.root.secret.clone(), alice.secret.clone()];

    let device = create_virtual_device(&iam, "alice-phone").await;
    secrets.push(device.seed_b32.clone());
    secrets.push(base64::engine::general_purpose::STANDARD.encode(&device.seed_b32));
    let now = b.now();
    codes.extend([device.code_at(now, 0), device.code_at(now, 2)]);
    assert!(
        enable_mfa(&b, &alice, "alice", &device, (0, 2))
            .await
            .is_err()
    );
    codes.extend([device.code_at(now, -1), device.code_at(now, 0)]);
    enable_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();

    b.clock.advance(30);
    let now = b.now();
    let plain = b.sts(&alice).get_session_token().send().await.unwrap();
    let plain_rid = plain.request_id().unwrap().to_owned();
    let plain = plain.credentials.unwrap();
    secrets.extend([plain.secret_access_key.clone(), plain.session_token.clone()]);
    let code = device.code_at(now, 0);
    codes.push(code.clone());
    let ok = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&device.serial)
        .token_code(&code)
        .send()
        .await
        .unwrap();
    let ok_rid = ok.request_id().unwrap().to_owned();
    let mfa = ok.credentials.unwrap();
    secrets.extend([mfa.secret_access_key.clone(), mfa.session_token.clone()]);
    let replay = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&device.serial)
        .token_code(&code)
        .send()
        .await
        .unwrap_err();
    let replay_rid = replay.request_id().unwrap().to_owned();
    let wrong = wrong_code(&device.key, now);
    codes.push(wrong.clone());
    session_with_mfa(&b, &alice, &device.serial, &wrong)
        .await
        .unwrap_err();
    session_with_mfa(&b, &alice, "GAHT99999999", &device.code_at(now, 1))
        .await
        .unwrap_err();
    codes.push(device.code_at(now, 1));
    b.clock.advance(60);
    let now = b.now();
    codes.extend([device.code_at(now, -1), device.code_at(now, 0)]);
    resync_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();
    let mfa_creds = session_creds(&mfa);
    b.iam(&mfa_creds)
        .deactivate_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    iam.delete_virtual_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    // A malformed TokenCode holding a real code, and session credentials asking again.
    let long_code = format!("{}7", device.code_at(now, 1));
    secrets.push(long_code.clone());
    assert_eq!(
        failure(session_with_mfa(&b, &alice, &device.serial, &long_code).await).code,
        "ValidationError"
    );
    assert_sdk_failure!(
        b.sts(&session_creds(&plain))
            .get_session_token()
            .send()
            .await,
        403,
        "AccessDenied",
        texts::SESSION_CREDENTIALS,
    );
    session_with_mfa(
        &b,
        &alice,
        &format!("arn:aws:iam::{}:u2f/user/alice/k-ABCDEF12", b.account_id),
        "123456",
    )
    .await
    .unwrap_err();

    let lines = b
        .audit_until(|l| l.iter().any(|e| e["reason"] == "fido_key"))
        .await;
    let acct = b.account_id.as_str();
    let alice_arn = b.user_arn("alice");
    for e in &lines {
        for field in ["time", "request_id", "account", "action", "outcome"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
        assert_eq!(e["account"], acct);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        if e["request_id"] != "admin" {
            assert_eq!(e["principal"], alice_arn.as_str(), "{e}");
            assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
        }
        if e["outcome"] == "failure" {
            assert!(e["reason"].is_string(), "a failure without a reason: {e}");
        }
    }
    let find = |action: &str, outcome: &str| {
        lines
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .collect::<Vec<_>>()
    };
    let serial = device.serial.as_str();
    assert_eq!(
        find("CreateVirtualMFADevice", "success")[0]["serial"],
        serial
    );
    assert_eq!(find("EnableMFADevice", "failure")[0]["serial"], serial);
    assert_eq!(find("EnableMFADevice", "success")[0]["serial"], serial);
    assert_eq!(find("ResyncMFADevice", "success")[0]["serial"], serial);
    assert_eq!(find("DeactivateMFADevice", "success")[0]["serial"], serial);
    assert_eq!(
        find("DeactivateMFADevice", "success")[0]["mfa_authenticated"],
        true
    );
    assert_eq!(
        find("DeleteVirtualMFADevice", "success")[0]["serial"],
        serial
    );
    let gst_ok = find("GetSessionToken", "success");
    assert_eq!(gst_ok.len(), 2);
    assert_eq!(gst_ok[0]["request_id"], plain_rid.as_str());
    assert_eq!(gst_ok[0]["mfa_authenticated"], false);
    assert!(gst_ok[0].get("serial").is_none());
    assert_eq!(gst_ok[1]["request_id"], ok_rid.as_str());
    assert_eq!(gst_ok[1]["mfa_authenticated"], true);
    assert_eq!(gst_ok[1]["serial"], serial);
    assert_eq!(gst_ok[1]["access_key_id"], alice.akid.as_str());
    let reasons: Vec<(&str, &str)> = find("GetSessionToken", "failure")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap(),
                e["serial"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let fido = format!("arn:aws:iam::{acct}:u2f/user/alice/k-ABCDEF12");
    assert_eq!(
        reasons,
        [
            ("replayed", serial),
            ("wrong_code", serial),
            ("unknown_device", "GAHT99999999"),
            ("validation_error", ""),
            ("session_credentials", ""),
            ("fido_key", fido.as_str()),
        ]
    );
    let replay_line = find("GetSessionToken", "failure")[0];
    assert_eq!(replay_line["request_id"], replay_rid.as_str());
    assert_eq!(replay_line["error_code"], "AccessDenied");

    // No code, seed or secret anywhere in the raw file.
    let raw = b.audit_text();
    for s in &secrets {
        assert!(
            !raw.contains(s.as_str()),
            "a secret leaked into the audit log"
        );
    }
    let runs = six_digit_runs(&raw);
    for c in &codes {
        assert!(!runs.contains(c), "code {c} leaked into the audit log");
    }
    b.stop().await;
}
