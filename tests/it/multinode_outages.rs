//! Failing closed (`docs/multinode.md#failing-closed`): while Redis or PostgreSQL is away
//! (killed, paused, stopped) an MFA attempt is refused within the timeout with a 503 and
//! nothing is minted; the nodes recover by themselves when the engine returns; a Redis that
//! lost its data cannot make a spent code valid again, because PostgreSQL decides.

use std::time::{Duration, Instant};

use crate::multinode_identities::{caught_up, three_nodes};
use crate::support::engines::Engines;
use crate::support::http::raw_http;
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::{TestBroker, eventually, texts};

/// Refused with AWS's 503, within the timeout (and some scheduling slack).
async fn refused_503(node: &TestBroker, creds: &crate::support::Creds, serial: &str, code: &str) {
    let started = Instant::now();
    let e = session_with_mfa(node, creds, serial, code)
        .await
        .expect_err("an MFA attempt succeeded while its backend was away");
    let waited = started.elapsed();
    let f = crate::support::Failure::of(&e);
    assert_eq!(
        (f.status, f.code.as_str(), f.message.as_str()),
        (503, "ServiceUnavailable", texts::SERVICE_UNAVAILABLE),
        "{e:?}"
    );
    assert!(waited < Duration::from_secs(3), "refused after {waited:?}");
}

/// `GET path` (a health probe): the status and the body.
async fn probe(node: &TestBroker, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
    let resp = raw_http(node.addr, request.as_bytes()).await;
    (resp.status, resp.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_paused_or_flushed_fails_closed_and_recovers() {
    let Some(mut engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let heidi = a.user_with_key("heidi").await;
    let device = enabled_device(&a, &a.root, "heidi", "heidi-phone").await;
    let session = a.session(&heidi).await;
    caught_up(&a, &[&b, &c]).await;

    // Killed.
    engines.redis.kill_9();
    a.clock.advance(30);
    refused_503(&b, &heidi, &device.serial, &device.code_at(a.now(), 0)).await;
    // What does not need Redis keeps working.
    assert_eq!(c.caller_arn(&session).await, a.user_arn("heidi"));
    assert_eq!(c.caller_arn(&heidi).await, a.user_arn("heidi"));
    // The load balancer is told: live, not ready, because of Redis (`docs/multinode.md#health`).
    assert_eq!(
        probe(&c, "/healthz").await,
        (200, "{\"status\":\"ok\"}\n".to_owned())
    );
    assert_eq!(
        probe(&c, "/readyz").await,
        (
            503,
            "{\"status\":\"unavailable\",\"failing\":[\"replay\"]}\n".to_owned()
        )
    );
    engines.redis.restart();
    // Each try with a new code: a script Redis ran after the attempt's timeout spent its code.
    let fresh_code = || {
        a.clock.advance(30);
        device.code_at(a.now(), 0)
    };
    eventually(Duration::from_secs(10), || async {
        session_with_mfa(&b, &heidi, &device.serial, &fresh_code())
            .await
            .ok()
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        (probe(&c, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    // Paused.
    engines
        .redis
        .command(&["CLIENT", "PAUSE", "2000", "ALL"])
        .await;
    refused_503(&c, &heidi, &device.serial, &fresh_code()).await;
    let code = eventually(Duration::from_secs(10), || async {
        let code = fresh_code();
        session_with_mfa(&c, &heidi, &device.serial, &code)
            .await
            .ok()
            .map(|_| code)
    })
    .await;

    // Flushed: the last accepted code is still refused, by PostgreSQL.
    engines.redis.command(&["FLUSHALL"]).await;
    let e = session_with_mfa(&a, &heidi, &device.serial, &code)
        .await
        .unwrap_err();
    let f = crate::support::Failure::of(&e);
    assert_eq!((f.status, f.code.as_str()), (403, "AccessDenied"), "{e:?}");
    a.audit_until(|lines| lines.iter().any(|l| l["reason"] == "replayed"))
        .await;
    // And the next code works.
    a.clock.advance(30);
    session_with_mfa(&a, &heidi, &device.serial, &device.code_at(a.now(), 0))
        .await
        .unwrap();
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_fails_closed_and_the_nodes_resume_and_catch_up() {
    let Some(mut engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let ivan = a.user_with_key("ivan").await;
    let device = enabled_device(&a, &a.root, "ivan", "ivan-phone").await;
    caught_up(&a, &[&b, &c]).await;
    engines.postgres.stop();
    a.clock.advance(30);
    let code = device.code_at(a.now(), 0);
    refused_503(&b, &ivan, &device.serial, &code).await;
    // The refusal is audited with its reason.
    b.audit_until(|lines| {
        lines
            .iter()
            .any(|l| l["reason"] == "store_failure" && l["error_code"] == "ServiceUnavailable")
    })
    .await;
    // Long-term keys and sessions are verified from each node's index meanwhile.
    assert_eq!(c.caller_arn(&ivan).await, a.user_arn("ivan"));
    let (status, body) = probe(&c, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"store\""), "{body}");
    engines.postgres.start();
    // The nodes resume: a write on one reaches the others.
    eventually(Duration::from_secs(15), || async {
        c.iam(&c.root).list_users().send().await.ok().map(|_| ())
    })
    .await;
    eventually(Duration::from_secs(15), || async {
        (probe(&c, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let judy = c.user_with_key("judy").await;
    for node in [&a, &b] {
        eventually(Duration::from_secs(5), || async {
            node.sts(&judy)
                .get_caller_identity()
                .send()
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }
    a.clock.advance(30);
    session_with_mfa(&b, &ivan, &device.serial, &device.code_at(a.now(), 0))
        .await
        .unwrap();
}
