//! The acceptance path through the Rust SDK: root creates a user and key, the user
//! gets session credentials, the session identifies itself.

use crate::harness::TestBroker;

#[tokio::test]
async fn root_user_session_round_trip() {
    let b = TestBroker::start().await;
    let root_id = b.sts(&b.root).get_caller_identity().send().await.unwrap();
    assert_eq!(
        root_id.arn(),
        Some(format!("arn:aws:iam::{}:root", b.account_id).as_str())
    );
    assert_eq!(root_id.user_id(), Some(b.account_id.as_str()));

    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    assert!(session.akid.starts_with("ASIA"));
    let who = b.sts(&session).get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:iam::{}:user/alice", b.account_id).as_str())
    );
    assert!(who.user_id().unwrap().starts_with("AIDA"));
    b.stop().await;
}

/// The `Date` header follows the broker's clock: an SDK client that corrects its signing time by
/// it keeps working when that clock moves.
#[tokio::test]
async fn one_sdk_client_survives_a_clock_jump() {
    let b = TestBroker::start().await;
    let sts = b.sts(&b.root);
    sts.get_caller_identity().send().await.unwrap();
    b.clock.advance(20 * 60);
    sts.get_caller_identity().send().await.unwrap();
    b.stop().await;
}
