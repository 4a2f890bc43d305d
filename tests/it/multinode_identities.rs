//! Several broker nodes on one PostgreSQL store and one Redis (`docs/multinode.md`): what one
//! node writes, every node serves within a second, through LISTEN/NOTIFY and the catch-up by
//! sequence number, even when a listener's connection is cut; quotas hold when the nodes race;
//! session credentials minted by one node verify on the others and on a gateway.

use std::time::Duration;

use crate::support::broker::{GateSetup, TestGate};
use crate::support::engines::Engines;
use crate::support::http::{GCI, Req, raw_http};
use crate::support::mfa::{create_virtual_device, enable_mfa, enabled_device, session_with_mfa};
use crate::support::signing::OracleSigner;
use crate::support::{Creds, Setup, TestBroker, eventually, session_creds};

/// Three nodes of one store, the first having created the account.
pub(crate) async fn three_nodes(engines: &Engines) -> (TestBroker, TestBroker, TestBroker) {
    let setup = Setup::default().shared(&engines.postgres.url(), &engines.redis.url());
    let a = TestBroker::start_with(setup).await;
    let b = a.node().await;
    let c = a.node().await;
    (a, b, c)
}

/// Waits until `others` have applied every change `origin` committed so far: a marker user
/// created on `origin` after them works on each (a node applies the change log in sequence
/// order, so the marker comes last).
pub(crate) async fn caught_up(origin: &TestBroker, others: &[&TestBroker]) {
    let marker = origin
        .user_with_key(&format!("marker-{}", crate::support::broker::unique()))
        .await;
    for node in others {
        eventually(Duration::from_secs(5), || async {
            identity_works(node, &marker).await.then_some(())
        })
        .await;
    }
}

async fn identity_works(node: &TestBroker, creds: &Creds) -> bool {
    node.sts(creds).get_caller_identity().send().await.is_ok()
}

/// A change committed on one node is served by `nodes` within one second.
async fn within_a_second(nodes: &[&TestBroker], creds: &Creds, usable: bool) {
    for node in nodes {
        eventually(Duration::from_secs(1), || async {
            (identity_works(node, creds).await == usable).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_on_one_node_reaches_every_node_within_a_second() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    // A user, key and device created on A work on B and C.
    let alice = a.user_with_key("alice").await;
    let device = enabled_device(&a, &a.root, "alice", "alice-phone").await;
    within_a_second(&[&b, &c], &alice, true).await;
    let now = b.now();
    eventually(Duration::from_secs(1), || async {
        session_with_mfa(&c, &alice, &device.serial, &device.code_at(now, 1))
            .await
            .ok()
    })
    .await;
    // A key deactivated on B is refused by A and C.
    b.iam(&b.root)
        .update_access_key()
        .user_name("alice")
        .access_key_id(&alice.akid)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    assert!(
        !identity_works(&b, &alice).await,
        "B serves its own write at once"
    );
    within_a_second(&[&a, &c], &alice, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_made_while_a_listener_was_cut_still_reach_every_node() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let listeners =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sts-broker-listener'";
    eventually(Duration::from_secs(10), || async {
        (engines.postgres.sql(listeners).await == ["3"]).then_some(())
    })
    .await;
    let terminated = engines
        .postgres
        .sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'sts-broker-listener'",
        )
        .await;
    assert_eq!(terminated, ["3"], "one listener per node");
    // Written while the listeners reconnect: their notifications are lost, the catch-up is not.
    let bob = a.user_with_key("bob").await;
    for node in [&b, &c] {
        eventually(Duration::from_secs(5), || async {
            identity_works(node, &bob).await.then_some(())
        })
        .await;
    }
    // Listening again: the next change arrives within a second.
    let carol = c.user_with_key("carol").await;
    within_a_second(&[&a, &b], &carol, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_device_quota_holds_when_three_nodes_race() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    a.user_with_key("dave").await;
    let root = a.iam(&a.root);
    let mut devices = Vec::new();
    for n in 0..3 {
        devices.push(create_virtual_device(&root, &format!("dave-{n}")).await);
    }
    for node in [&b, &c] {
        eventually(Duration::from_secs(5), || async {
            let listed = node
                .iam(&node.root)
                .list_virtual_mfa_devices()
                .send()
                .await
                .ok()?;
            (listed.virtual_mfa_devices.len() == 3).then_some(())
        })
        .await;
    }
    // Each node enables a different device for the same user at the same moment; one user may
    // hold one device (`max_mfa_devices_per_user`).
    let (ra, rb, rc) = tokio::join!(
        enable_mfa(&a, &a.root, "dave", &devices[0], (-1, 0)),
        enable_mfa(&b, &b.root, "dave", &devices[1], (-1, 0)),
        enable_mfa(&c, &c.root, "dave", &devices[2], (-1, 0)),
    );
    let enabled = [ra.is_ok(), rb.is_ok(), rc.is_ok()];
    assert_eq!(
        enabled.iter().filter(|ok| **ok).count(),
        1,
        "{enabled:?} {ra:?} {rb:?} {rc:?}"
    );
    let held = engines
        .postgres
        .sql("SELECT count(*) FROM mfa_device WHERE assigned_to IS NOT NULL AND kind = 'virtual'")
        .await;
    assert_eq!(held, ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_credentials_minted_on_one_node_work_on_the_others_and_a_gateway() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let (a, b, c) = three_nodes(&engines).await;
    let erin = a.user_with_key("erin").await;
    let device = enabled_device(&a, &a.root, "erin", "erin-phone").await;
    let minted = session_with_mfa(&a, &erin, &device.serial, &device.code_at(a.now(), 1))
        .await
        .unwrap();
    let session = session_creds(&minted);
    caught_up(&a, &[&b, &c]).await;
    for node in [&b, &c] {
        assert_eq!(node.caller_arn(&session).await, a.user_arn("erin"));
    }
    // A gateway following the same store (forward-auth only) admits them, MFA required.
    let gate = TestGate::start(
        &c,
        GateSetup {
            require_mfa: true,
            ..GateSetup::default()
        },
    )
    .await;
    let host = gate.host();
    let signed = OracleSigner::new(&session, c.now())
        .service("execute-api")
        .sign(&host, &Req::get("page=1"));
    let resp = raw_http(gate.addr, &signed.wire(&host)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("x-sts-broker-principal-arn"),
        Some(a.user_arn("erin").as_str())
    );
    // GetCallerIdentity with the session works on every node.
    let gci = OracleSigner::new(&session, b.now()).sign(&b.addr.to_string(), &Req::get(GCI));
    assert_eq!(
        raw_http(b.addr, &gci.wire(&b.addr.to_string()))
            .await
            .status,
        200
    );
    gate.stop().await;
}
