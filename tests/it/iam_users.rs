//! IAM users through `aws-sdk-iam`: create, get, list (with paging), delete, names unique in any
//! case, the ValidationError texts, and the conflicts that keep a user alive; no refused request
//! changes the store (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html).

use aws_sdk_iam::types::StatusType;

use crate::support::mfa::enabled_device;
use crate::support::texts::{
    self, at_least, at_most, enum_value, max_length, min_length, pattern, validation,
};
use crate::support::{TestBroker, assert_sdk_failure};

#[tokio::test]
async fn create_get_list_delete_user() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let created = iam
        .create_user()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(created.user_name, "alice");
    assert_eq!(created.path, "/");
    assert_eq!(created.arn, b.user_arn("alice"));
    assert_eq!(created.user_id.len(), 21);
    assert!(created.user_id.starts_with("AIDA"));
    assert_eq!(created.create_date.secs(), b.now());

    let with_path = iam
        .create_user()
        .user_name("ops-bob")
        .path("/ops/")
        .send()
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(with_path.path, "/ops/");
    assert_eq!(with_path.arn, b.user_arn("ops/ops-bob"));

    // GetUser by name, in any case (IAM names are case-insensitive).
    let got = iam
        .get_user()
        .user_name("ALICE")
        .send()
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(got.user_id, created.user_id);
    assert_eq!(got.user_name, "alice");
    // GetUser without a name: the caller. Root is reported by its ARN and account id.
    let me = iam.get_user().send().await.unwrap().user.unwrap();
    assert_eq!(me.arn, b.root_arn());
    assert_eq!(me.user_id, b.account_id);

    assert_eq!(b.user_names().await, ["alice", "ops-bob"]);
    let ops = iam.list_users().path_prefix("/ops/").send().await.unwrap();
    assert_eq!(ops.users.len(), 1);
    assert_eq!(ops.users[0].user_name, "ops-bob");

    iam.delete_user().user_name("alice").send().await.unwrap();
    assert_sdk_failure!(
        iam.get_user().user_name("alice").send().await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("alice"),
    );
    assert_sdk_failure!(
        iam.delete_user().user_name("alice").send().await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("alice"),
    );
    assert_eq!(b.user_names().await, ["ops-bob"]);
    // The name is free again.
    iam.create_user().user_name("Alice").send().await.unwrap();
    assert_eq!(b.user_names().await, ["Alice", "ops-bob"]);
    b.stop().await;
}

#[tokio::test]
async fn list_users_pages_with_max_items_and_marker() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    for name in ["erin", "Carol", "alice", "dave", "bob"] {
        iam.create_user().user_name(name).send().await.unwrap();
    }
    let mut pages = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = iam
            .list_users()
            .max_items(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        let names: Vec<String> = out.users.iter().map(|u| u.user_name.clone()).collect();
        assert_eq!(out.is_truncated, out.marker.is_some());
        pages.push(names);
        match out.marker {
            Some(m) => marker = Some(m),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages,
        [vec!["alice", "bob"], vec!["Carol", "dave"], vec!["erin"]]
    );
    // One page holding everything is not truncated.
    let all = iam.list_users().max_items(5).send().await.unwrap();
    assert!(!all.is_truncated);
    assert_eq!(all.marker, None);
    assert_eq!(all.users.len(), 5);
    assert_sdk_failure!(
        iam.list_users().max_items(0).send().await,
        400,
        "ValidationError",
        &validation(&[at_least("0", "maxItems", 1)]),
    );
    assert_sdk_failure!(
        iam.list_users().max_items(1001).send().await,
        400,
        "ValidationError",
        &validation(&[at_most("1001", "maxItems", 1000)]),
    );
    b.stop().await;
}

#[tokio::test]
async fn user_names_are_unique_regardless_of_case() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    iam.create_user().user_name("alice").send().await.unwrap();
    for dup in ["alice", "Alice", "ALICE"] {
        assert_sdk_failure!(
            iam.create_user().user_name(dup).send().await,
            409,
            "EntityAlreadyExists",
            &texts::user_exists(dup),
        );
    }
    // The refused creations left nothing behind.
    assert_eq!(b.user_names().await, ["alice"]);
    b.stop().await;
}

#[tokio::test]
async fn validation_errors_use_the_aws_texts() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    assert_sdk_failure!(
        iam.create_user().user_name("bad name!").send().await,
        400,
        "ValidationError",
        &validation(&[pattern("bad name!", "userName", texts::USER_NAME_PATTERN)]),
    );
    let long = "a".repeat(65);
    assert_sdk_failure!(
        iam.create_user().user_name(&long).send().await,
        400,
        "ValidationError",
        &validation(&[max_length(&long, "userName", 64)]),
    );
    assert_sdk_failure!(
        iam.create_user().user_name("").send().await,
        400,
        "ValidationError",
        &validation(&[min_length("", "userName", 1)]),
    );
    assert_sdk_failure!(
        iam.create_user().user_name("ok").path("ops").send().await,
        400,
        "ValidationError",
        &validation(&[pattern("ops", "path", texts::USER_PATH_PATTERN)]),
    );
    assert_sdk_failure!(
        iam.get_user().user_name("no such").send().await,
        400,
        "ValidationError",
        &validation(&[pattern("no such", "userName", texts::USER_NAME_PATTERN)]),
    );
    iam.create_user().user_name("alice").send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert_sdk_failure!(
        iam.update_access_key()
            .user_name("alice")
            .access_key_id(&key.access_key_id)
            .status(StatusType::from("Enabled"))
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[enum_value("Enabled", "status", texts::STATUS_VALUES)]),
    );
    assert_sdk_failure!(
        iam.update_access_key()
            .user_name("alice")
            .access_key_id("AKIA-short")
            .status(StatusType::from("Off"))
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[
            min_length("AKIA-short", "accessKeyId", 16),
            pattern("AKIA-short", "accessKeyId", texts::ACCESS_KEY_ID_PATTERN),
            enum_value("Off", "status", texts::STATUS_VALUES),
        ]),
    );
    // Nothing changed: the key is still active, no user appeared.
    assert_eq!(
        b.access_keys("alice").await,
        [(key.access_key_id.clone(), "Active".to_owned())]
    );
    assert_eq!(b.user_names().await, ["alice"]);
    b.stop().await;
}

#[tokio::test]
async fn delete_user_conflicts_while_keys_or_devices_remain() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let alice = b.user_with_key("alice").await;
    assert_sdk_failure!(
        iam.delete_user().user_name("alice").send().await,
        409,
        "DeleteConflict",
        texts::DELETE_KEYS_FIRST,
    );
    // The refused delete changed nothing: the user and the key still work.
    assert_eq!(b.user_names().await, ["alice"]);
    b.sts(&alice).get_caller_identity().send().await.unwrap();

    let device = enabled_device(&b, &b.root, "alice", "alice-phone").await;
    iam.delete_access_key()
        .user_name("alice")
        .access_key_id(&alice.akid)
        .send()
        .await
        .unwrap();
    assert_sdk_failure!(
        iam.delete_user().user_name("alice").send().await,
        409,
        "DeleteConflict",
        texts::DELETE_MFA_FIRST,
    );
    assert_eq!(b.user_names().await, ["alice"]);
    let devices = iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(devices.mfa_devices.len(), 1);

    iam.deactivate_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    iam.delete_user().user_name("alice").send().await.unwrap();
    assert!(b.user_names().await.is_empty());
    b.stop().await;
}
