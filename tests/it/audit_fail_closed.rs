//! No credentials leave the broker before their audit line is on disk (README.md, audit log).
//! The audit log here is a real device that refuses every write, `/dev/full` (ENOSPC, as on a
//! full disk): GetSessionToken answers `InternalFailure` and issues nothing, the refusal is
//! kept and written, with a record of the outage, once the log can be written again, and an MFA
//! code spent in a refused attempt stays spent.

use std::path::Path;
use std::time::Duration;

use crate::support::clients::{root_creds_in, sts_at};
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::process::ServerProcess;
use crate::support::texts;
use crate::support::{Setup, TestBroker, assert_sdk_failure, fresh_dir};

const DEV_FULL: &str = "/dev/full";

#[tokio::test]
async fn no_credentials_without_a_durable_audit_line() {
    assert!(Path::new(DEV_FULL).exists(), "this test needs {DEV_FULL}");
    let b = TestBroker::start_with(Setup::default().audit_log_links_to(Path::new(DEV_FULL))).await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let now = b.now();
    let code = device.code_at(now, 0);

    // Without MFA and with a right code: refused, nothing issued.
    assert_sdk_failure!(
        b.sts(&alice).get_session_token().send().await,
        500,
        "InternalFailure",
        texts::INTERNAL_FAILURE,
    );
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &code).await,
        500,
        "InternalFailure",
        texts::INTERNAL_FAILURE,
    );
    // What needs no audit line still works.
    assert_eq!(b.caller_arn(&alice).await, b.user_arn("alice"));

    // The disk has room again: the log is written, the refusals in it, with the outage.
    std::fs::remove_file(b.data_dir.join("audit.log")).unwrap();
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "GetSessionToken")
                .count()
                == 2
        })
        .await;
    let outage: Vec<_> = lines
        .iter()
        .filter(|e| e["action"] == "AuditLogUnavailable")
        .collect();
    assert_eq!(outage.len(), 1, "{lines:#?}");
    assert_eq!(outage[0]["outcome"], "failure");
    assert!(outage[0]["held_lines"].as_u64().unwrap() >= 4, "{lines:#?}");
    assert_eq!(outage[0]["dropped_lines"], 0);
    let refused: Vec<_> = lines
        .iter()
        .filter(|e| e["action"] == "GetSessionToken")
        .collect();
    for e in &refused {
        assert_eq!(e["outcome"], "failure", "{e}");
        assert_eq!(e["reason"], "audit_log_unavailable", "{e}");
        assert_eq!(e["error_code"], "InternalFailure", "{e}");
        assert!(e.get("expiration").is_none(), "{e}");
    }
    assert_eq!(refused[0]["mfa_authenticated"], false);
    assert_eq!(refused[1]["serial"], device.serial.as_str());
    assert_eq!(refused[1]["mfa_authenticated"], true);
    // The device changes made during the outage are there too, in order, before the refusals.
    let actions: Vec<&str> = lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "AuditLogUnavailable",
            "CreateVirtualMFADevice",
            "EnableMFADevice",
            "GetSessionToken",
            "GetSessionToken"
        ],
        "{lines:#?}"
    );

    // The code spent in the refused attempt stays spent; a new request is issued, and audited.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &code).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    b.sts(&alice).get_session_token().send().await.unwrap();
    let lines = b
        .audit_until(|l| {
            l.iter()
                .any(|e| e["outcome"] == "success" && e["action"] == "GetSessionToken")
        })
        .await;
    let last: Vec<_> = lines.iter().rev().take(2).collect();
    assert_eq!(last[0]["outcome"], "success");
    assert_eq!(last[1]["reason"], "replayed");
    b.stop().await;
}

/// The real binary, its audit log on `/dev/full` for good: every GetSessionToken is refused, and
/// the operator is told why on stderr.
#[tokio::test]
async fn the_binary_reports_an_unwritable_audit_log_on_stderr() {
    assert!(Path::new(DEV_FULL).exists(), "this test needs {DEV_FULL}");
    let data_dir = fresh_dir("audit-dev-full");
    let server =
        ServerProcess::start_with_env(&data_dir, "serve", &[("STS_BROKER_AUDIT_LOG", DEV_FULL)])
            .await;
    let root = root_creds_in(&data_dir);
    let sts = sts_at(&server.url, &root);
    assert_sdk_failure!(
        sts.get_session_token().send().await,
        500,
        "InternalFailure",
        texts::INTERNAL_FAILURE,
    );
    assert!(sts.get_caller_identity().send().await.is_ok());
    let said = crate::support::eventually(Duration::from_secs(5), || {
        let log = server.stderr();
        async move { log.contains("audit log").then_some(log) }
    })
    .await;
    assert!(said.contains("ERROR"), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
}
