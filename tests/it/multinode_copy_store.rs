//! Moving up from one machine (`docs/multinode.md#moving-up`): `sts-broker admin copy-store`
//! copies a populated SQLite data dir into PostgreSQL; every user, key and device works on
//! the nodes, secrets still sealed with the same master key, and a code accepted before the
//! copy stays spent.

use crate::support::engines::Engines;
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::process::run_admin;
use crate::support::{TestBroker, session_creds};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copied_store_serves_every_identity_and_keeps_spent_codes_spent() {
    let Some(engines) = Engines::start() else {
        return;
    };
    let single = TestBroker::start().await;
    let kim = single.user_with_key("kim").await;
    let device = enabled_device(&single, &single.root, "kim", "kim-phone").await;
    let leo = single.user_with_key("leo").await;
    let spent = device.code_at(single.now(), 1);
    session_with_mfa(&single, &kim, &device.serial, &spent)
        .await
        .unwrap();
    let (data_dir, clock) = single.stop().await;

    let out = run_admin(
        &[
            "copy-store",
            "--from-data-dir",
            data_dir.to_str().unwrap(),
            "--to",
            &engines.postgres.url(),
        ],
        &data_dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 users, 3 access keys, 1 MFA devices"),
        "{stdout}"
    );
    // A second copy is refused: the store is no longer empty.
    let again = run_admin(
        &[
            "copy-store",
            "--from-data-dir",
            data_dir.to_str().unwrap(),
            "--to",
            &engines.postgres.url(),
        ],
        &data_dir,
    );
    assert!(!again.status.success());

    let a = TestBroker::node_of(
        &data_dir,
        &engines.postgres.url(),
        &engines.redis.url(),
        clock,
    )
    .await;
    let b = a.node().await;
    for node in [&a, &b] {
        assert_eq!(node.caller_arn(&kim).await, node.user_arn("kim"));
        assert_eq!(node.caller_arn(&leo).await, node.user_arn("leo"));
        assert_eq!(node.caller_arn(&node.root).await, node.root_arn());
    }
    // The code accepted on SQLite is refused on PostgreSQL (Redis has never seen it).
    assert!(
        session_with_mfa(&b, &kim, &device.serial, &spent)
            .await
            .is_err()
    );
    b.audit_until(|lines| lines.iter().any(|l| l["reason"] == "replayed"))
        .await;
    // The step after the spent one is accepted.
    a.clock.advance(30);
    let fresh = session_with_mfa(&a, &kim, &device.serial, &device.code_at(a.now(), 1))
        .await
        .unwrap();
    assert_eq!(
        b.caller_arn(&session_creds(&fresh)).await,
        b.user_arn("kim")
    );
}
