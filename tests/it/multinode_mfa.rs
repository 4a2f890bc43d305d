//! MFA across nodes (`docs/multinode.md`): one code raced at three nodes is accepted once,
//! and the lock-out counts every node's failures and holds on every node.

use crate::multinode_identities::{caught_up, three_nodes};
use crate::support::engines::Engines;
use crate::support::mfa::{enabled_device, far_codes, session_with_mfa};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_sent_to_three_nodes_at_once_is_accepted_once_per_round() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let frank = a.user_with_key("frank").await;
    let device = enabled_device(&a, &a.root, "frank", "frank-phone").await;
    caught_up(&a, &[&b, &c]).await;
    for round in 0..20 {
        // A new step each round (the nodes share the settable clock).
        a.clock.advance(30);
        let code = device.code_at(a.now(), 0);
        let (ra, rb, rc) = tokio::join!(
            session_with_mfa(&a, &frank, &device.serial, &code),
            session_with_mfa(&b, &frank, &device.serial, &code),
            session_with_mfa(&c, &frank, &device.serial, &code),
        );
        let won = [ra.is_ok(), rb.is_ok(), rc.is_ok()];
        assert_eq!(
            won.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {won:?}"
        );
        for lost in [ra, rb, rc].into_iter().filter_map(Result::err) {
            let status = lost.raw_response().map(|r| r.status().as_u16());
            assert_eq!(status, Some(403), "round {round}: {lost:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_on_any_node_lock_the_device_on_every_node() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let grace = a.user_with_key("grace").await;
    let device = enabled_device(&a, &a.root, "grace", "grace-phone").await;
    caught_up(&a, &[&b, &c]).await;
    let nodes = [&a, &b, &c];
    // The five free failures, spread over the nodes.
    for (n, wrong) in far_codes(&device.key, a.now()).take(5).enumerate() {
        let node = nodes[n % 3];
        assert!(
            session_with_mfa(node, &grace, &device.serial, &wrong)
                .await
                .is_err()
        );
    }
    // Locked now: a correct code is refused on every node, each with a new step.
    for node in nodes {
        a.clock.advance(1);
        let code = device.code_at(a.now(), 1);
        assert!(
            session_with_mfa(node, &grace, &device.serial, &code)
                .await
                .is_err(),
            "a correct code was accepted while locked"
        );
    }
    // Each node audited its refusal as a lock-out.
    for node in nodes {
        node.audit_until(|lines| lines.iter().any(|l| l["reason"] == "throttled"))
            .await;
    }
    // The first lock lasts 30 s; then a correct code is accepted again, on any node.
    a.clock.advance(31);
    let code = device.code_at(a.now(), 0);
    session_with_mfa(&c, &grace, &device.serial, &code)
        .await
        .unwrap();
}
