//! The broker as a library: served on an embedder's own listener until its shutdown signal,
//! and a verifier that follows the broker's data dir for a service of its own (read-only,
//! no call to the broker per request).

use std::time::{Duration, Instant};

use aws_sdk_iam::types::StatusType;

use crate::support::broker::{EmbeddedBroker, GatedService};
use crate::support::clients::sts_at;
use crate::support::http::Req;
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::signing::OracleSigner;
use crate::support::{TestBroker, eventually, fresh_dir, session_creds};

const API_HOST: &str = "api.example.com";

/// `GET /orders`, signed by `creds` for the `execute-api` service at `time`.
fn orders_request(creds: &crate::support::Creds, time: i64) -> Req {
    let mut req = Req::get("limit=5");
    req.path = "/orders".into();
    OracleSigner::new(creds, time)
        .service("execute-api")
        .sign(API_HOST, &req)
}

#[tokio::test]
async fn serve_answers_on_the_embedders_listener_until_its_shutdown_signal() {
    let dir = fresh_dir("embedded");
    let broker = EmbeddedBroker::start(&dir).await;
    let url = format!("http://{}", broker.addr);
    let identity = sts_at(&url, &broker.root)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(identity.arn.unwrap().ends_with(":root"));
    let addr = broker.addr;
    assert_eq!(broker.shutdown().await, Ok(()));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_verifier_following_the_data_dir_admits_what_the_broker_issued() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let now = b.now();
    let mfa_session = session_creds(
        &session_with_mfa(&b, &alice, &device.serial, &device.code_at(now, 1))
            .await
            .unwrap(),
    );
    let plain_session = b.session(&alice).await;
    let service = GatedService::follow(&b.data_dir, "execute-api");
    let mfa_only = GatedService::follow(&b.data_dir, "execute-api").require_mfa(Some(60));
    let alice_arn = b.user_arn("alice");

    // Any credentials the broker knows pass the plain policy; only MFA sessions the strict one.
    assert_eq!(
        service.check(&orders_request(&alice, now), now),
        Ok((alice_arn.clone(), None))
    );
    assert_eq!(
        mfa_only.check(&orders_request(&mfa_session, now), now),
        Ok((alice_arn.clone(), Some(0)))
    );
    for creds in [&alice, &plain_session] {
        assert_eq!(
            mfa_only.check(&orders_request(creds, now), now),
            Err("MFA-backed session credentials are required".to_owned())
        );
    }
    // An MFA authentication older than the policy allows is refused.
    let later = now + 61;
    assert_eq!(
        mfa_only.check(&orders_request(&mfa_session, later), later),
        Err("the MFA authentication is 61 seconds old; at most 60 are allowed".to_owned())
    );
    // A signature for another service does not pass.
    let sts_signed = OracleSigner::new(&alice, now).sign(API_HOST, &Req::get("limit=5"));
    assert!(
        service
            .check(&sts_signed, now)
            .unwrap_err()
            .starts_with("Credential should be scoped to correct service")
    );

    // A key deactivated on the broker stops being admitted, sessions it obtained with it.
    let key_id = alice.akid.clone();
    b.iam(&b.root)
        .update_access_key()
        .user_name("alice")
        .access_key_id(&key_id)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let deactivated = Instant::now();
    eventually(Duration::from_secs(5), || async {
        service
            .check(&orders_request(&alice, now), now)
            .is_err()
            .then_some(())
    })
    .await;
    assert!(deactivated.elapsed() < Duration::from_secs(1));
    // The other verifier follows on its own schedule: wait for it too.
    let refused = eventually(Duration::from_secs(5), || async {
        mfa_only
            .check(&orders_request(&mfa_session, now), now)
            .err()
    })
    .await;
    assert_eq!(
        refused,
        "the credentials that obtained this session are no longer valid"
    );
    b.stop().await;
}
