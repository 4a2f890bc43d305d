//! IAM access keys through `aws-sdk-iam`: create, list, update, delete, the two-key quota, what
//! an inactive or deleted key does to its sessions, and who may manage whose keys
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_getsessiontoken.html).

use aws_sdk_iam::types::StatusType;

use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::texts::{self, not_authorized};
use crate::support::{Creds, TestBroker, assert_sdk_failure, failure, session_creds};

fn is_key_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("AKIA")
        && id[4..]
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[tokio::test]
async fn access_keys_create_list_update_delete() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    iam.create_user().user_name("alice").send().await.unwrap();
    let k1 = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert!(is_key_id(&k1.access_key_id), "{}", k1.access_key_id);
    assert_eq!(k1.secret_access_key.len(), 40);
    assert!(
        k1.secret_access_key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    );
    assert_eq!(k1.user_name, "alice");
    assert_eq!(k1.status, StatusType::Active);
    let k2 = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert_ne!(k1.access_key_id, k2.access_key_id);
    assert_ne!(k1.secret_access_key, k2.secret_access_key);
    assert_sdk_failure!(
        iam.create_access_key().user_name("alice").send().await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("AccessKeysPerUser", 2),
    );
    let mut listed = b.access_keys("alice").await;
    listed.sort();
    let mut expected = vec![
        (k1.access_key_id.clone(), "Active".to_owned()),
        (k2.access_key_id.clone(), "Active".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        listed, expected,
        "the refused third key left nothing behind"
    );
    let meta = iam
        .list_access_keys()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(!meta.is_truncated);
    assert!(
        meta.access_key_metadata
            .iter()
            .all(|k| k.user_name.as_deref() == Some("alice"))
    );

    // Both keys work; an inactive one is refused at once, a reactivated one works again.
    let c1 = Creds::new(&k1.access_key_id, &k1.secret_access_key, None);
    let c2 = Creds::new(&k2.access_key_id, &k2.secret_access_key, None);
    b.sts(&c1).get_caller_identity().send().await.unwrap();
    b.sts(&c2).get_caller_identity().send().await.unwrap();
    let s1 = b.session(&c1).await;
    let s2 = b.session(&c2).await;
    iam.update_access_key()
        .user_name("alice")
        .access_key_id(&k1.access_key_id)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    assert_sdk_failure!(
        b.sts(&c1).get_caller_identity().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    assert_sdk_failure!(
        b.iam(&c1).get_user().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    // Sessions obtained with the key die with it; the other key's session lives on.
    assert_sdk_failure!(
        b.sts(&s1).get_caller_identity().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    b.sts(&c2).get_caller_identity().send().await.unwrap();
    b.sts(&s2).get_caller_identity().send().await.unwrap();
    let statuses = b.access_keys("alice").await;
    assert!(statuses.contains(&(k1.access_key_id.clone(), "Inactive".to_owned())));
    iam.update_access_key()
        .user_name("alice")
        .access_key_id(&k1.access_key_id)
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
    b.sts(&c1).get_caller_identity().send().await.unwrap();

    // Delete: the key is gone and refused; deleting again is NoSuchEntity.
    iam.delete_access_key()
        .user_name("alice")
        .access_key_id(&k2.access_key_id)
        .send()
        .await
        .unwrap();
    for creds in [&c2, &s2] {
        assert_sdk_failure!(
            b.sts(creds).get_caller_identity().send().await,
            403,
            "InvalidClientTokenId",
            texts::INVALID_TOKEN,
        );
    }
    assert_eq!(
        b.access_keys("alice").await,
        [(k1.access_key_id.clone(), "Active".to_owned())]
    );
    let missing = texts::no_such_access_key(&k2.access_key_id);
    assert_sdk_failure!(
        iam.delete_access_key()
            .user_name("alice")
            .access_key_id(&k2.access_key_id)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &missing,
    );
    assert_sdk_failure!(
        iam.update_access_key()
            .user_name("alice")
            .access_key_id(&k2.access_key_id)
            .status(StatusType::Active)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &missing,
    );
    // A key named under the wrong user is not found either.
    iam.create_user().user_name("bob").send().await.unwrap();
    assert_sdk_failure!(
        iam.delete_access_key()
            .user_name("bob")
            .access_key_id(&k1.access_key_id)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_access_key(&k1.access_key_id),
    );
    b.sts(&c1).get_caller_identity().send().await.unwrap();
    // Keys of a user that does not exist.
    assert_sdk_failure!(
        iam.create_access_key().user_name("nobody").send().await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("nobody"),
    );
    assert_sdk_failure!(
        iam.list_access_keys().user_name("nobody").send().await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("nobody"),
    );
    b.stop().await;
}

#[tokio::test]
async fn root_manages_its_own_keys() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let listed = iam.list_access_keys().send().await.unwrap();
    assert_eq!(listed.access_key_metadata.len(), 1);
    assert_eq!(
        listed.access_key_metadata[0].access_key_id.as_deref(),
        Some(b.root.akid.as_str())
    );
    let second = iam
        .create_access_key()
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert!(is_key_id(&second.access_key_id));
    let root2 = Creds::new(&second.access_key_id, &second.secret_access_key, None);
    assert_eq!(b.caller_arn(&root2).await, b.root_arn());
    assert_sdk_failure!(
        iam.create_access_key().send().await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("AccessKeysPerUser", 2),
    );
    b.iam(&root2)
        .delete_access_key()
        .access_key_id(&second.access_key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        failure(b.sts(&root2).get_caller_identity().send().await).code,
        "InvalidClientTokenId"
    );
    b.stop().await;
}

#[tokio::test]
async fn an_iam_user_manages_only_its_own_keys() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let iam = b.iam(&alice);
    let alice_arn = b.user_arn("alice");
    let bob_arn = b.user_arn("bob");

    // Its own keys, with or without naming itself.
    let own = iam
        .create_access_key()
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert_eq!(own.user_name, "alice");
    assert_sdk_failure!(
        iam.create_access_key().user_name("alice").send().await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("AccessKeysPerUser", 2),
    );
    let mine = iam.list_access_keys().send().await.unwrap();
    assert_eq!(mine.access_key_metadata.len(), 2);
    iam.update_access_key()
        .access_key_id(&own.access_key_id)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    iam.delete_access_key()
        .user_name("alice")
        .access_key_id(&own.access_key_id)
        .send()
        .await
        .unwrap();
    let me = iam.get_user().send().await.unwrap().user.unwrap();
    assert_eq!(me.user_name, "alice");

    // Another user's keys: AccessDenied with IAM's text, nothing changed.
    let bob_keys_before = b.access_keys("bob").await;
    assert_sdk_failure!(
        iam.create_access_key().user_name("bob").send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "CreateAccessKey", &bob_arn),
    );
    assert_sdk_failure!(
        iam.list_access_keys().user_name("bob").send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "ListAccessKeys", &bob_arn),
    );
    assert_sdk_failure!(
        iam.update_access_key()
            .user_name("bob")
            .access_key_id(&bob.akid)
            .status(StatusType::Inactive)
            .send()
            .await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "UpdateAccessKey", &bob_arn),
    );
    assert_sdk_failure!(
        iam.delete_access_key()
            .user_name("bob")
            .access_key_id(&bob.akid)
            .send()
            .await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "DeleteAccessKey", &bob_arn),
    );
    // Naming bob's key without naming bob acts on alice's keys: not found.
    assert_sdk_failure!(
        iam.delete_access_key()
            .access_key_id(&bob.akid)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_access_key(&bob.akid),
    );
    assert_sdk_failure!(
        iam.update_access_key()
            .access_key_id(&bob.akid)
            .status(StatusType::Inactive)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_access_key(&bob.akid),
    );
    assert_sdk_failure!(
        iam.get_user().user_name("bob").send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "GetUser", &bob_arn),
    );
    assert_eq!(b.access_keys("bob").await, bob_keys_before);
    b.sts(&bob).get_caller_identity().send().await.unwrap();

    // Users are root's business.
    assert_sdk_failure!(
        iam.create_user().user_name("carol").send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "CreateUser", &b.user_arn("carol")),
    );
    assert_sdk_failure!(
        iam.list_users().send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "ListUsers", &b.user_arn("")),
    );
    assert_sdk_failure!(
        iam.delete_user().user_name("bob").send().await,
        403,
        "AccessDenied",
        &not_authorized(&alice_arn, "DeleteUser", &bob_arn),
    );
    assert_eq!(b.user_names().await, ["alice", "bob"]);
    b.stop().await;
}

#[tokio::test]
async fn session_credentials_reach_iam_only_with_mfa() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;

    // Without MFA: every IAM call is InvalidClientTokenId; STS still answers.
    let plain = b.session(&alice).await;
    let plain_iam = b.iam(&plain);
    assert_sdk_failure!(
        plain_iam.get_user().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    assert_sdk_failure!(
        plain_iam.list_access_keys().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    assert_sdk_failure!(
        plain_iam.create_access_key().send().await,
        403,
        "InvalidClientTokenId",
        texts::INVALID_TOKEN,
    );
    b.sts(&plain).get_caller_identity().send().await.unwrap();
    assert_eq!(b.access_keys("alice").await.len(), 1);

    // With MFA: allowed, with the user's own permissions.
    b.clock.advance(30);
    let mfa = session_creds(
        &session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap(),
    );
    let iam = b.iam(&mfa);
    let me = iam.get_user().send().await.unwrap().user.unwrap();
    assert_eq!(me.user_name, "alice");
    let new_key = iam
        .create_access_key()
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert_eq!(new_key.user_name, "alice");
    assert_eq!(b.access_keys("alice").await.len(), 2);
    assert_eq!(
        failure(iam.list_users().send().await).code,
        "AccessDenied",
        "MFA does not make a user root"
    );
    b.stop().await;
}
