//! Virtual MFA devices through `aws-sdk-iam`: creation (serial, seed, QR code), who may touch
//! which device, listing, getting and deleting, the account's and each user's quotas, and that
//! nothing is created that cannot be deleted
//! (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateVirtualMFADevice.html,
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListVirtualMFADevices.html,
//! https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteVirtualMFADevice.html).

use aws_sdk_iam::types::AssignmentStatusType;

use crate::support::mfa::{
    VirtualDevice, create_virtual_device, enable_mfa, enabled_device, mfa_serials,
    session_with_mfa, virtual_serials,
};
use crate::support::texts::{
    self, IAM_SERIAL_NUMBER_PATTERN, enum_value, max_length, pattern, validation,
};
use crate::support::totp::{Totp, base32_decode};
use crate::support::{Setup, TestBroker, assert_sdk_failure, failure};

/// Decodes a PNG and reads the one QR code in it.
fn read_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (width, height) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        buffer[y * info.line_size + x]
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "expected exactly one QR code");
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn create_virtual_device_returns_serial_seed_and_a_scannable_qr_code() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let iam = b.iam(&alice);
    let out = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-phone")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    let acct = &b.account_id;
    assert_eq!(
        out.serial_number,
        format!("arn:aws:iam::{acct}:mfa/alice-phone")
    );
    // The SDK base64-decoded the blob: what is left is the base32 text of a 40-byte seed.
    let seed_b32 = String::from_utf8(out.base32_string_seed.unwrap().into_inner()).unwrap();
    assert_eq!(seed_b32.len(), 64, "{seed_b32}");
    assert!(
        seed_b32
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
    );
    assert_eq!(base32_decode(&seed_b32).unwrap().len(), 40);

    let png_bytes = out.qr_code_png.unwrap().into_inner();
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let uri = read_qr(&png_bytes);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={seed_b32}&")), "{uri}");
    assert!(uri.contains(&format!("alice-phone%40{acct}")), "{uri}");
    assert!(uri.contains("digits=6") && uri.contains("period=30") && uri.contains("SHA1"));

    // An authenticator that scanned the QR code produces codes the broker accepts.
    let scanned = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    let device = VirtualDevice {
        serial: out.serial_number.clone(),
        seed_b32: scanned.to_owned(),
        key: Totp::from_base32(scanned).unwrap(),
    };
    enable_mfa(&b, &alice, "alice", &device, (-1, 0))
        .await
        .unwrap();

    // Same path and name again: refused, whoever asks. Another path is another device.
    for creds in [&alice, &b.root] {
        assert_sdk_failure!(
            b.iam(creds)
                .create_virtual_mfa_device()
                .virtual_mfa_device_name("alice-phone")
                .send()
                .await,
            409,
            "EntityAlreadyExists",
            texts::MFA_DEVICE_EXISTS,
        );
    }
    let other = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-phone")
        .path("/team/")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    assert_eq!(
        other.serial_number,
        format!("arn:aws:iam::{acct}:mfa/team/alice-phone")
    );
    assert_sdk_failure!(
        iam.create_virtual_mfa_device()
            .virtual_mfa_device_name("bad name")
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[pattern(
            "bad name",
            "virtualMFADeviceName",
            texts::USER_NAME_PATTERN
        )]),
    );
    // A path outside `/…/` of printable ASCII would make a serial no call could name.
    assert_sdk_failure!(
        iam.create_virtual_mfa_device()
            .virtual_mfa_device_name("spaced")
            .path("/a b/")
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[pattern("/a b/", "path", texts::MFA_PATH_PATTERN)]),
    );
    assert_eq!(
        virtual_serials(&b, &alice, None).await.len(),
        2,
        "the refused device was not created"
    );
    // Each device has its own seed.
    let third = create_virtual_device(&iam, "alice-tablet").await;
    assert_ne!(third.seed_b32, seed_b32);
    b.stop().await;
}

#[tokio::test]
async fn a_user_manages_only_its_own_devices() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let bob_device = enabled_device(&b, &bob, "bob", "bob-phone").await;
    let bob_spare = create_virtual_device(&b.iam(&bob), "bob-spare").await;
    let alice_device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    let not_authorized =
        |action: &str| texts::not_authorized(&b.user_arn("alice"), action, &b.user_arn("bob"));
    // Enabling for someone else, listing or deactivating someone else's devices: refused.
    assert_sdk_failure!(
        enable_mfa(&b, &alice, "bob", &alice_device, (-1, 0)).await,
        403,
        "AccessDenied",
        &not_authorized("EnableMFADevice"),
    );
    assert_sdk_failure!(
        b.iam(&alice)
            .list_mfa_devices()
            .user_name("bob")
            .send()
            .await,
        403,
        "AccessDenied",
        &not_authorized("ListMFADevices"),
    );
    // Another user's devices, assigned or not, do not exist for alice.
    for serial in [&bob_device.serial, &bob_spare.serial] {
        assert_sdk_failure!(
            b.iam(&alice)
                .enable_mfa_device()
                .user_name("alice")
                .serial_number(serial)
                .authentication_code1("123456")
                .authentication_code2("234567")
                .send()
                .await,
            404,
            "NoSuchEntity",
            &texts::no_such_mfa_device(serial),
        );
        assert_eq!(
            failure(
                b.iam(&alice)
                    .delete_virtual_mfa_device()
                    .serial_number(serial)
                    .send()
                    .await
            )
            .code,
            "NoSuchEntity"
        );
    }
    assert_eq!(
        virtual_serials(&b, &alice, None).await,
        [alice_device.serial.as_str()]
    );
    // Bob's devices are untouched.
    assert_eq!(
        mfa_serials(&b, &bob, None).await,
        [bob_device.serial.as_str()]
    );
    assert_eq!(
        virtual_serials(&b, &bob, Some(AssignmentStatusType::Unassigned)).await,
        [bob_spare.serial.as_str()]
    );
    b.stop().await;
}

#[tokio::test]
async fn list_get_and_delete_devices() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let root_iam = b.iam(&b.root);
    let assigned = enabled_device(&b, &b.root, "alice", "a-assigned").await;
    let spare1 = create_virtual_device(&root_iam, "b-spare").await;
    let spare2 = create_virtual_device(&root_iam, "c-spare").await;

    // ListMFADevices: root names the user; the user lists its own.
    let listed = root_iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(!listed.is_truncated);
    assert_eq!(listed.mfa_devices.len(), 1);
    assert_eq!(listed.mfa_devices[0].user_name, "alice");
    assert_eq!(listed.mfa_devices[0].serial_number, assigned.serial);
    assert_eq!(listed.mfa_devices[0].enable_date.secs(), b.now());
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [assigned.serial.as_str()]
    );
    assert!(mfa_serials(&b, &b.root, None).await.is_empty());
    assert_sdk_failure!(
        root_iam.list_mfa_devices().user_name("nobody").send().await,
        404,
        "NoSuchEntity",
        &texts::no_such_user("nobody"),
    );

    // ListVirtualMFADevices by assignment status; no status means Any.
    let all = vec![
        assigned.serial.clone(),
        spare1.serial.clone(),
        spare2.serial.clone(),
    ];
    assert_eq!(virtual_serials(&b, &b.root, None).await, all);
    assert_eq!(
        virtual_serials(&b, &b.root, Some(AssignmentStatusType::Any)).await,
        all
    );
    assert_eq!(
        virtual_serials(&b, &b.root, Some(AssignmentStatusType::Assigned)).await,
        [assigned.serial.as_str()]
    );
    assert_eq!(
        virtual_serials(&b, &b.root, Some(AssignmentStatusType::Unassigned)).await,
        [spare1.serial.clone(), spare2.serial.clone()]
    );
    let detail = root_iam
        .list_virtual_mfa_devices()
        .assignment_status(AssignmentStatusType::Assigned)
        .send()
        .await
        .unwrap();
    let d = &detail.virtual_mfa_devices[0];
    let user = d.user.as_ref().unwrap();
    assert_eq!(user.user_name, "alice");
    assert_eq!(user.arn, b.user_arn("alice"));
    assert_eq!(d.enable_date.unwrap().secs(), b.now());
    assert!(d.base32_string_seed.is_none() && d.qr_code_png.is_none());
    let unassigned = root_iam
        .list_virtual_mfa_devices()
        .assignment_status(AssignmentStatusType::Unassigned)
        .send()
        .await
        .unwrap();
    assert!(
        unassigned
            .virtual_mfa_devices
            .iter()
            .all(|d| d.user.is_none() && d.enable_date.is_none())
    );
    assert_sdk_failure!(
        root_iam
            .list_virtual_mfa_devices()
            .assignment_status(AssignmentStatusType::from("Enabled"))
            .send()
            .await,
        400,
        "ValidationError",
        &validation(&[enum_value(
            "Enabled",
            "assignmentStatus",
            texts::ASSIGNMENT_STATUS_VALUES
        )]),
    );
    // Paging.
    let mut pages = Vec::new();
    let mut marker = None;
    loop {
        let out = root_iam
            .list_virtual_mfa_devices()
            .max_items(2)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        assert_eq!(out.is_truncated, out.marker.is_some());
        pages.push(
            out.virtual_mfa_devices
                .into_iter()
                .map(|d| d.serial_number)
                .collect::<Vec<_>>(),
        );
        marker = out.marker;
        if marker.is_none() {
            break;
        }
        assert!(pages.len() < 5);
    }
    assert_eq!(pages, [all[..2].to_vec(), all[2..].to_vec()]);

    // GetMFADevice.
    let got = b
        .iam(&alice)
        .get_mfa_device()
        .serial_number(&assigned.serial)
        .send()
        .await
        .unwrap();
    assert_eq!(got.user_name.as_deref(), Some("alice"));
    assert_eq!(got.serial_number, assigned.serial);
    assert_eq!(got.enable_date.unwrap().secs(), b.now());
    let by_root = root_iam
        .get_mfa_device()
        .user_name("alice")
        .serial_number(&assigned.serial)
        .send()
        .await
        .unwrap();
    assert_eq!(by_root.serial_number, assigned.serial);
    assert_sdk_failure!(
        root_iam
            .get_mfa_device()
            .user_name("alice")
            .serial_number(&spare1.serial)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&spare1.serial),
    );

    // Delete: refused while assigned, fine once deactivated, then gone.
    assert_sdk_failure!(
        root_iam
            .delete_virtual_mfa_device()
            .serial_number(&assigned.serial)
            .send()
            .await,
        409,
        "DeleteConflict",
        texts::DEACTIVATE_BEFORE_DELETE,
    );
    assert_eq!(virtual_serials(&b, &b.root, None).await, all);
    root_iam
        .deactivate_mfa_device()
        .user_name("alice")
        .serial_number(&assigned.serial)
        .send()
        .await
        .unwrap();
    root_iam
        .delete_virtual_mfa_device()
        .serial_number(&assigned.serial)
        .send()
        .await
        .unwrap();
    root_iam
        .delete_virtual_mfa_device()
        .serial_number(&spare1.serial)
        .send()
        .await
        .unwrap();
    assert_eq!(
        virtual_serials(&b, &b.root, None).await,
        [spare2.serial.as_str()]
    );
    assert_sdk_failure!(
        root_iam
            .delete_virtual_mfa_device()
            .serial_number(&spare1.serial)
            .send()
            .await,
        404,
        "NoSuchEntity",
        &texts::no_such_mfa_device(&spare1.serial),
    );
    // A deleted device validates nothing; its name can be reused with a new seed.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &assigned.serial, &assigned.code_at(b.now(), 1)).await,
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    let again = create_virtual_device(&root_iam, "a-assigned").await;
    assert_eq!(again.serial, assigned.serial);
    assert_ne!(again.seed_b32, assigned.seed_b32);
    // A user deletes the spare device it created.
    let own = create_virtual_device(&b.iam(&alice), "alice-own").await;
    b.iam(&alice)
        .delete_virtual_mfa_device()
        .serial_number(&own.serial)
        .send()
        .await
        .unwrap();
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// No unbounded growth from one user, and nothing created that cannot be deleted.

#[tokio::test]
async fn a_user_holds_at_most_ten_unassigned_devices() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let iam = b.iam(&alice);
    let mut made = Vec::new();
    for i in 0..10 {
        made.push(create_virtual_device(&iam, &format!("alice-{i}")).await);
    }
    let eleventh = || async {
        iam.create_virtual_mfa_device()
            .virtual_mfa_device_name("alice-10")
            .send()
            .await
    };
    assert_sdk_failure!(
        eleventh().await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("UnassignedVirtualMFADevicesPerUser", 10),
    );
    assert_eq!(virtual_serials(&b, &alice, None).await.len(), 10);
    // The limit is alice's: bob and root still create devices.
    create_virtual_device(&b.iam(&bob), "bob-0").await;
    create_virtual_device(&b.iam(&b.root), "root-0").await;
    // An enabled device is no longer unassigned, and a deleted one no longer held.
    enable_mfa(&b, &alice, "alice", &made[0], (-1, 0))
        .await
        .unwrap();
    eleventh().await.unwrap();
    assert_sdk_failure!(
        create_virtual_device_result(&iam, "alice-11").await,
        409,
        "LimitExceeded",
        &texts::quota_exceeded("UnassignedVirtualMFADevicesPerUser", 10),
    );
    iam.delete_virtual_mfa_device()
        .serial_number(&made[1].serial)
        .send()
        .await
        .unwrap();
    create_virtual_device(&iam, "alice-11").await;
    let lines = b
        .audit_until(|l| l.iter().any(|e| e["reason"] == "limit_exceeded"))
        .await;
    assert!(lines.iter().any(|e| e["action"] == "CreateVirtualMFADevice"
        && e["outcome"] == "failure"
        && e["error_code"] == "LimitExceeded"));
    b.stop().await;
}

/// CreateVirtualMFADevice's raw result.
async fn create_virtual_device_result(
    iam: &aws_sdk_iam::Client,
    name: &str,
) -> Result<
    aws_sdk_iam::operation::create_virtual_mfa_device::CreateVirtualMfaDeviceOutput,
    aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_iam::operation::create_virtual_mfa_device::CreateVirtualMFADeviceError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
> {
    iam.create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await
}

#[tokio::test]
async fn the_account_holds_at_most_max_virtual_mfa_devices() {
    let b = TestBroker::start_with(Setup::default().max_virtual_mfa_devices(4)).await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let enabled = enabled_device(&b, &alice, "alice", "alice-phone").await;
    create_virtual_device(&b.iam(&alice), "alice-spare").await;
    create_virtual_device(&b.iam(&bob), "bob-spare").await;
    create_virtual_device(&b.iam(&b.root), "root-spare").await;
    // Assigned or not, by anyone, root included: four is the account's quota.
    for creds in [&bob, &b.root] {
        assert_sdk_failure!(
            create_virtual_device_result(&b.iam(creds), "one-more").await,
            409,
            "LimitExceeded",
            &texts::quota_exceeded("VirtualMFADevicesPerAccount", 4),
        );
    }
    assert_eq!(virtual_serials(&b, &b.root, None).await.len(), 4);
    // Deleting one makes room for one.
    b.iam(&bob)
        .delete_virtual_mfa_device()
        .serial_number(format!("arn:aws:iam::{}:mfa/bob-spare", b.account_id))
        .send()
        .await
        .unwrap();
    create_virtual_device(&b.iam(&bob), "one-more").await;
    assert_eq!(
        failure(create_virtual_device_result(&b.iam(&bob), "two-more").await).code,
        "LimitExceeded"
    );
    // The configuration is validated.
    assert!(!b.accepts(&Setup::default().max_virtual_mfa_devices(0)));
    assert!(mfa_serials(&b, &alice, None).await == [enabled.serial.as_str()]);
    b.stop().await;
}

#[tokio::test]
async fn every_device_that_can_be_created_can_be_deleted() {
    let b = TestBroker::start().await;
    let root_iam = b.iam(&b.root);
    let acct = b.account_id.clone();
    let serial_of = |path: &str, name: &str| format!("arn:aws:iam::{acct}:mfa{path}{name}");
    // Characters IAM allows in a path but not in a serial, and a serial longer than 256
    // characters: refused at creation, since DeleteVirtualMFADevice could not name them.
    let long_path = format!("/{}/", "p".repeat(300));
    for (path, clause) in [
        (
            "/a~b#c/".to_owned(),
            pattern(
                &serial_of("/a~b#c/", "dev"),
                "serialNumber",
                IAM_SERIAL_NUMBER_PATTERN,
            ),
        ),
        (
            long_path.clone(),
            max_length(&serial_of(&long_path, "dev"), "serialNumber", 256),
        ),
    ] {
        assert_sdk_failure!(
            root_iam
                .create_virtual_mfa_device()
                .virtual_mfa_device_name("dev")
                .path(&path)
                .send()
                .await,
            400,
            "ValidationError",
            &validation(&[clause]),
            "{path}"
        );
    }
    assert!(virtual_serials(&b, &b.root, None).await.is_empty());
    // At the edge: a serial of exactly 256 characters is created and deleted; one more is not.
    let prefix = serial_of("/", "").len();
    let name = "n".repeat(256 - prefix);
    let edge = create_virtual_device(&root_iam, &name).await;
    assert_eq!(edge.serial.len(), 256);
    let over = format!("/{}/", "q".repeat(256 - prefix - 1));
    assert_eq!(serial_of(&over, "dev").len(), 259);
    assert_eq!(
        failure(
            root_iam
                .create_virtual_mfa_device()
                .virtual_mfa_device_name("dev")
                .path(&over)
                .send()
                .await
        )
        .code,
        "ValidationError"
    );
    let pathed = root_iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("dev")
        .path("/team:a@b/x.y=z,w+v-u_t/")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap()
        .serial_number;
    for serial in [&edge.serial, &pathed] {
        root_iam
            .delete_virtual_mfa_device()
            .serial_number(serial)
            .send()
            .await
            .unwrap();
    }
    assert!(virtual_serials(&b, &b.root, None).await.is_empty());
    b.stop().await;
}
