//! GetCallerIdentity through the Rust SDK: who root, an IAM user and their session credentials
//! are (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

use crate::support::TestBroker;

/// The acceptance path: root creates a user and key, the user gets session credentials, the
/// session identifies itself.
#[tokio::test]
async fn root_user_session_round_trip() {
    let b = TestBroker::start().await;
    let root_id = b.sts(&b.root).get_caller_identity().send().await.unwrap();
    assert_eq!(root_id.arn(), Some(b.root_arn().as_str()));
    assert_eq!(root_id.user_id(), Some(b.account_id.as_str()));

    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    assert!(session.akid.starts_with("ASIA"));
    let who = b.sts(&session).get_caller_identity().send().await.unwrap();
    assert_eq!(who.arn(), Some(b.user_arn("alice").as_str()));
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

#[tokio::test]
async fn get_caller_identity_for_root_user_and_session() {
    let b = TestBroker::start().await;
    let root = b.sts(&b.root).get_caller_identity().send().await.unwrap();
    assert_eq!(root.arn(), Some(b.root_arn().as_str()));
    assert_eq!(root.user_id(), Some(b.account_id.as_str()));
    assert_eq!(root.account(), Some(b.account_id.as_str()));

    let alice = b.user_with_key("alice").await;
    let user = b.sts(&alice).get_caller_identity().send().await.unwrap();
    let aida = user.user_id().unwrap().to_owned();
    assert_eq!(user.arn(), Some(b.user_arn("alice").as_str()));
    assert!(aida.starts_with("AIDA"), "{aida}");
    assert_eq!(aida.len(), 21, "{aida}");
    assert!(
        aida.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert_eq!(user.account(), Some(b.account_id.as_str()));

    // Session credentials report the user that obtained them, not the session key.
    let session = b.session(&alice).await;
    let who = b.sts(&session).get_caller_identity().send().await.unwrap();
    assert_eq!(who.arn(), Some(b.user_arn("alice").as_str()));
    assert_eq!(who.user_id(), Some(aida.as_str()));
    assert_eq!(who.account(), Some(b.account_id.as_str()));

    let root_session = b.session(&b.root).await;
    let who = b
        .sts(&root_session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.arn(), Some(b.root_arn().as_str()));
    assert_eq!(who.user_id(), Some(b.account_id.as_str()));
    b.stop().await;
}
