//! Issue 2's IAM lines through `aws-sdk-iam`: users, access keys, who may do what, the exact
//! error texts and statuses, and that no refused request changes the store.

use aws_sdk_iam::types::StatusType;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::harness::{Creds, TestBroker, enabled_device, sdk_failure};

/// `(status, code, message)` of a call that must fail.
pub fn fail<T, E>(r: Result<T, SdkError<E, HttpResponse>>) -> (u16, String, String)
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match r {
        Ok(_) => panic!("the call succeeded but must fail"),
        Err(e) => sdk_failure(&e),
    }
}

/// The expected `(status, code, message)`.
pub fn err(status: u16, code: &str, message: &str) -> (u16, String, String) {
    (status, code.to_owned(), message.to_owned())
}

fn not_authorized(b: &TestBroker, caller: &str, action: &str, resource: &str) -> String {
    format!(
        "User: arn:aws:iam::{acct}:user/{caller} is not authorized to perform: iam:{action} on resource: {resource} because no identity-based policy allows the iam:{action} action",
        acct = b.account_id
    )
}

async fn user_names(b: &TestBroker) -> Vec<String> {
    let out = b.iam(&b.root).list_users().send().await.unwrap();
    assert!(!out.is_truncated);
    out.users.into_iter().map(|u| u.user_name).collect()
}

async fn key_ids(b: &TestBroker, user: &str) -> Vec<(String, String)> {
    b.iam(&b.root)
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key_metadata
        .into_iter()
        .map(|k| {
            (
                k.access_key_id.unwrap(),
                k.status.unwrap().as_str().to_owned(),
            )
        })
        .collect()
}

fn is_key_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("AKIA")
        && id[4..]
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

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
    assert_eq!(
        created.arn,
        format!("arn:aws:iam::{}:user/alice", b.account_id)
    );
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
    assert_eq!(
        with_path.arn,
        format!("arn:aws:iam::{}:user/ops/ops-bob", b.account_id)
    );

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
    assert_eq!(me.arn, format!("arn:aws:iam::{}:root", b.account_id));
    assert_eq!(me.user_id, b.account_id);

    let names = user_names(&b).await;
    assert_eq!(names, ["alice", "ops-bob"]);
    let ops = iam.list_users().path_prefix("/ops/").send().await.unwrap();
    assert_eq!(ops.users.len(), 1);
    assert_eq!(ops.users[0].user_name, "ops-bob");

    iam.delete_user().user_name("alice").send().await.unwrap();
    assert_eq!(
        fail(iam.get_user().user_name("alice").send().await),
        err(
            404,
            "NoSuchEntity",
            "The user with name alice cannot be found."
        )
    );
    assert_eq!(
        fail(iam.delete_user().user_name("alice").send().await),
        err(
            404,
            "NoSuchEntity",
            "The user with name alice cannot be found."
        )
    );
    assert_eq!(user_names(&b).await, ["ops-bob"]);
    // The name is free again.
    iam.create_user().user_name("Alice").send().await.unwrap();
    assert_eq!(user_names(&b).await, ["Alice", "ops-bob"]);
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
    assert_eq!(
        fail(iam.list_users().max_items(0).send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )
    );
    assert_eq!(
        fail(iam.list_users().max_items(1001).send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value '1001' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to 1000"
        )
    );
    b.stop().await;
}

#[tokio::test]
async fn user_names_are_unique_regardless_of_case() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    iam.create_user().user_name("alice").send().await.unwrap();
    for dup in ["alice", "Alice", "ALICE"] {
        assert_eq!(
            fail(iam.create_user().user_name(dup).send().await),
            err(
                409,
                "EntityAlreadyExists",
                &format!("User with name {dup} already exists.")
            )
        );
    }
    // The refused creations left nothing behind.
    assert_eq!(user_names(&b).await, ["alice"]);
    b.stop().await;
}

#[tokio::test]
async fn validation_errors_use_the_aws_texts() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    assert_eq!(
        fail(iam.create_user().user_name("bad name!").send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'bad name!' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )
    );
    let long = "a".repeat(65);
    assert_eq!(
        fail(iam.create_user().user_name(&long).send().await),
        err(
            400,
            "ValidationError",
            &format!(
                "1 validation error detected: Value '{long}' at 'userName' failed to satisfy constraint: Member must have length less than or equal to 64"
            )
        )
    );
    assert_eq!(
        fail(iam.create_user().user_name("").send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value '' at 'userName' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )
    );
    assert_eq!(
        fail(iam.create_user().user_name("ok").path("ops").send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'ops' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
        )
    );
    assert_eq!(
        fail(iam.get_user().user_name("no such").send().await),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'no such' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )
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
    assert_eq!(
        fail(
            iam.update_access_key()
                .user_name("alice")
                .access_key_id(&key.access_key_id)
                .status(StatusType::from("Enabled"))
                .send()
                .await
        ),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'Enabled' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
        )
    );
    assert_eq!(
        fail(
            iam.update_access_key()
                .user_name("alice")
                .access_key_id("AKIA-short")
                .status(StatusType::from("Off"))
                .send()
                .await
        ),
        err(
            400,
            "ValidationError",
            "3 validation errors detected: Value 'AKIA-short' at 'accessKeyId' failed to satisfy constraint: Member must have length greater than or equal to 16; Value 'AKIA-short' at 'accessKeyId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]+; Value 'Off' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
        )
    );
    // Nothing changed: the key is still active, no user appeared.
    assert_eq!(
        key_ids(&b, "alice").await,
        [(key.access_key_id.clone(), "Active".to_owned())]
    );
    assert_eq!(user_names(&b).await, ["alice"]);
    b.stop().await;
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
    assert_eq!(
        fail(iam.create_access_key().user_name("alice").send().await),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for AccessKeysPerUser: 2"
        )
    );
    let mut listed = key_ids(&b, "alice").await;
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
    let invalid = err(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    );
    assert_eq!(fail(b.sts(&c1).get_caller_identity().send().await), invalid);
    assert_eq!(fail(b.iam(&c1).get_user().send().await), invalid);
    // Sessions obtained with the key die with it; the other key's session lives on.
    assert_eq!(fail(b.sts(&s1).get_caller_identity().send().await), invalid);
    b.sts(&c2).get_caller_identity().send().await.unwrap();
    b.sts(&s2).get_caller_identity().send().await.unwrap();
    let statuses = key_ids(&b, "alice").await;
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
    assert_eq!(fail(b.sts(&c2).get_caller_identity().send().await), invalid);
    assert_eq!(fail(b.sts(&s2).get_caller_identity().send().await), invalid);
    assert_eq!(
        key_ids(&b, "alice").await,
        [(k1.access_key_id.clone(), "Active".to_owned())]
    );
    let missing = err(
        404,
        "NoSuchEntity",
        &format!(
            "The Access Key with id {} cannot be found.",
            k2.access_key_id
        ),
    );
    assert_eq!(
        fail(
            iam.delete_access_key()
                .user_name("alice")
                .access_key_id(&k2.access_key_id)
                .send()
                .await
        ),
        missing
    );
    assert_eq!(
        fail(
            iam.update_access_key()
                .user_name("alice")
                .access_key_id(&k2.access_key_id)
                .status(StatusType::Active)
                .send()
                .await
        ),
        missing
    );
    // A key named under the wrong user is not found either.
    iam.create_user().user_name("bob").send().await.unwrap();
    assert_eq!(
        fail(
            iam.delete_access_key()
                .user_name("bob")
                .access_key_id(&k1.access_key_id)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "The Access Key with id {} cannot be found.",
                k1.access_key_id
            )
        )
    );
    b.sts(&c1).get_caller_identity().send().await.unwrap();
    // Keys of a user that does not exist.
    assert_eq!(
        fail(iam.create_access_key().user_name("nobody").send().await),
        err(
            404,
            "NoSuchEntity",
            "The user with name nobody cannot be found."
        )
    );
    assert_eq!(
        fail(iam.list_access_keys().user_name("nobody").send().await),
        err(
            404,
            "NoSuchEntity",
            "The user with name nobody cannot be found."
        )
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
    let who = b.sts(&root2).get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:iam::{}:root", b.account_id).as_str())
    );
    assert_eq!(
        fail(iam.create_access_key().send().await),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for AccessKeysPerUser: 2"
        )
    );
    b.iam(&root2)
        .delete_access_key()
        .access_key_id(&second.access_key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        fail(b.sts(&root2).get_caller_identity().send().await).1,
        "InvalidClientTokenId"
    );
    b.stop().await;
}

#[tokio::test]
async fn delete_user_conflicts_while_keys_or_devices_remain() {
    let b = TestBroker::start().await;
    let iam = b.iam(&b.root);
    let alice = b.user_with_key("alice").await;
    let keys_first = err(
        409,
        "DeleteConflict",
        "Cannot delete entity, must delete access keys first.",
    );
    assert_eq!(
        fail(iam.delete_user().user_name("alice").send().await),
        keys_first
    );
    // The refused delete changed nothing: the user and the key still work.
    assert_eq!(user_names(&b).await, ["alice"]);
    b.sts(&alice).get_caller_identity().send().await.unwrap();

    let device = enabled_device(&b, &b.root, "alice", "alice-phone").await;
    iam.delete_access_key()
        .user_name("alice")
        .access_key_id(&alice.akid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        fail(iam.delete_user().user_name("alice").send().await),
        err(
            409,
            "DeleteConflict",
            "Cannot delete entity, must delete MFA device first."
        )
    );
    assert_eq!(user_names(&b).await, ["alice"]);
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
    assert!(user_names(&b).await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn an_iam_user_manages_only_its_own_keys() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let iam = b.iam(&alice);
    let acct = &b.account_id;
    let bob_arn = format!("arn:aws:iam::{acct}:user/bob");

    // Its own keys, with or without naming itself.
    let own = iam
        .create_access_key()
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    assert_eq!(own.user_name, "alice");
    assert_eq!(
        fail(iam.create_access_key().user_name("alice").send().await),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for AccessKeysPerUser: 2"
        )
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
    let bob_keys_before = key_ids(&b, "bob").await;
    assert_eq!(
        fail(iam.create_access_key().user_name("bob").send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "CreateAccessKey", &bob_arn)
        )
    );
    assert_eq!(
        fail(iam.list_access_keys().user_name("bob").send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "ListAccessKeys", &bob_arn)
        )
    );
    assert_eq!(
        fail(
            iam.update_access_key()
                .user_name("bob")
                .access_key_id(&bob.akid)
                .status(StatusType::Inactive)
                .send()
                .await
        ),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "UpdateAccessKey", &bob_arn)
        )
    );
    assert_eq!(
        fail(
            iam.delete_access_key()
                .user_name("bob")
                .access_key_id(&bob.akid)
                .send()
                .await
        ),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "DeleteAccessKey", &bob_arn)
        )
    );
    // Naming bob's key without naming bob acts on alice's keys: not found.
    assert_eq!(
        fail(
            iam.delete_access_key()
                .access_key_id(&bob.akid)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!("The Access Key with id {} cannot be found.", bob.akid)
        )
    );
    assert_eq!(
        fail(
            iam.update_access_key()
                .access_key_id(&bob.akid)
                .status(StatusType::Inactive)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!("The Access Key with id {} cannot be found.", bob.akid)
        )
    );
    assert_eq!(
        fail(iam.get_user().user_name("bob").send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "GetUser", &bob_arn)
        )
    );
    assert_eq!(key_ids(&b, "bob").await, bob_keys_before);
    b.sts(&bob).get_caller_identity().send().await.unwrap();

    // Users are root's business.
    assert_eq!(
        fail(iam.create_user().user_name("carol").send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(
                &b,
                "alice",
                "CreateUser",
                &format!("arn:aws:iam::{acct}:user/carol")
            )
        )
    );
    assert_eq!(
        fail(iam.list_users().send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(
                &b,
                "alice",
                "ListUsers",
                &format!("arn:aws:iam::{acct}:user/")
            )
        )
    );
    assert_eq!(
        fail(iam.delete_user().user_name("bob").send().await),
        err(
            403,
            "AccessDenied",
            &not_authorized(&b, "alice", "DeleteUser", &bob_arn)
        )
    );
    assert_eq!(user_names(&b).await, ["alice", "bob"]);
    b.stop().await;
}

#[tokio::test]
async fn session_credentials_reach_iam_only_with_mfa() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;

    // Without MFA: every IAM call is InvalidClientTokenId; STS still answers.
    let plain = b.session(&alice).await;
    let invalid = err(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    );
    assert_eq!(fail(b.iam(&plain).get_user().send().await), invalid);
    assert_eq!(fail(b.iam(&plain).list_access_keys().send().await), invalid);
    assert_eq!(
        fail(b.iam(&plain).create_access_key().send().await),
        invalid
    );
    b.sts(&plain).get_caller_identity().send().await.unwrap();
    assert_eq!(key_ids(&b, "alice").await.len(), 1);

    // With MFA: allowed, with the user's own permissions.
    b.clock.advance(30);
    let out = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&device.serial)
        .token_code(device.code_at(b.now(), 0))
        .send()
        .await
        .unwrap();
    let mfa = crate::harness::session_creds(out.credentials.as_ref().unwrap());
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
    assert_eq!(key_ids(&b, "alice").await.len(), 2);
    assert_eq!(
        fail(iam.list_users().send().await).1,
        "AccessDenied",
        "MFA does not make a user root"
    );
    b.stop().await;
}
