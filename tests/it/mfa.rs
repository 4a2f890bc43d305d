//! Issue 3 through `aws-sdk-iam` / `aws-sdk-sts`: virtual, hardware and FIDO devices, the IAM
//! MFA calls, GetSessionToken's MFA check (window, drift, replay, throttle, FIDO refusal, root),
//! the MFA context of session credentials, admin commands on a running broker, and the audit log.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{TotpKey, base32, step_at};
use aws_sdk_iam::types::AssignmentStatusType;
use aws_sdk_sts::operation::RequestId as _;

use crate::harness::{
    Creds, TestBroker, VirtualDevice, create_virtual_device, enabled_device, eventually,
    jwt_claims, sdk_failure, session_creds,
};
use crate::iam::{err, fail};

const INVALID_CODE: &str = "MultiFactorAuthentication failed with invalid MFA one time pass code.";
const UNABLE: &str = "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.";
const FIDO_REFUSED: &str = "MultiFactorAuthentication failed: FIDO security keys cannot be used with STS API operations. Use a virtual or hardware MFA device.";
const FIDO_API_REFUSED: &str = "FIDO security keys cannot be enabled or synchronized through the AWS CLI or API; register them through the console (sts-broker admin mfa register-fido).";
const BAD_AUTH_CODE: &str = "Authentication code for device is not valid.";
const ROOT_CONSOLE_ONLY: &str = "The account root user's MFA devices can be enabled or deactivated only outside the AWS API: use `sts-broker admin mfa enable-root` or `sts-broker admin mfa deactivate`.";
/// Time a running broker gets to notice an admin change (it polls every 50 ms in tests).
const PICKUP: Duration = Duration::from_secs(10);

type Failure = (u16, String, String);

fn denied(message: &str) -> Failure {
    err(403, "AccessDenied", message)
}

fn invalid_auth_code() -> Failure {
    err(403, "InvalidAuthenticationCode", BAD_AUTH_CODE)
}

/// GetSessionToken with MFA: the credentials, or `(status, code, message)`.
async fn gst(
    b: &TestBroker,
    creds: &Creds,
    serial: &str,
    code: &str,
) -> Result<aws_sdk_sts::types::Credentials, Failure> {
    b.sts(creds)
        .get_session_token()
        .serial_number(serial)
        .token_code(code)
        .send()
        .await
        .map(|o| o.credentials.unwrap())
        .map_err(|e| sdk_failure(&e))
}

/// EnableMFADevice with the device's codes at two step offsets from now.
async fn enable(
    b: &TestBroker,
    caller: &Creds,
    user: &str,
    device: &VirtualDevice,
    offsets: (i64, i64),
) -> Result<(), Failure> {
    let now = b.now();
    b.iam(caller)
        .enable_mfa_device()
        .user_name(user)
        .serial_number(&device.serial)
        .authentication_code1(device.code_at(now, offsets.0))
        .authentication_code2(device.code_at(now, offsets.1))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_failure(&e))
}

/// ResyncMFADevice with the device's codes at two step offsets from now.
async fn resync(
    b: &TestBroker,
    caller: &Creds,
    user: &str,
    device: &VirtualDevice,
    offsets: (i64, i64),
) -> Result<(), Failure> {
    let now = b.now();
    b.iam(caller)
        .resync_mfa_device()
        .user_name(user)
        .serial_number(&device.serial)
        .authentication_code1(device.code_at(now, offsets.0))
        .authentication_code2(device.code_at(now, offsets.1))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_failure(&e))
}

/// A six-digit code that matches no step of `key` within 150 steps of `now`.
fn wrong_code(key: &TotpKey, now: i64) -> String {
    let near: BTreeSet<String> = (-150..=150)
        .map(|k| key.code(step_at(now) + k).to_digits())
        .collect();
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// A device imported from a seed (a hardware token), as a `VirtualDevice` for its codes.
fn token(serial: &str, seed: &[u8]) -> VirtualDevice {
    VirtualDevice {
        serial: serial.to_owned(),
        seed_b32: base32::encode(seed),
        key: TotpKey::new(seed).unwrap(),
    }
}

/// Serials of ListVirtualMFADevices with `status` (None: the parameter left out).
async fn virtual_serials(
    b: &TestBroker,
    creds: &Creds,
    status: Option<AssignmentStatusType>,
) -> Vec<String> {
    let out = b
        .iam(creds)
        .list_virtual_mfa_devices()
        .set_assignment_status(status)
        .send()
        .await
        .unwrap();
    assert!(!out.is_truncated);
    out.virtual_mfa_devices
        .into_iter()
        .map(|d| d.serial_number)
        .collect()
}

async fn mfa_serials(b: &TestBroker, creds: &Creds, user: Option<&str>) -> Vec<String> {
    b.iam(creds)
        .list_mfa_devices()
        .set_user_name(user.map(str::to_owned))
        .send()
        .await
        .unwrap()
        .mfa_devices
        .into_iter()
        .map(|d| d.serial_number)
        .collect()
}

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

// ---------------------------------------------------------------------------------------------
// Virtual devices through IAM.

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
    assert_eq!(base32::decode(&seed_b32).unwrap().len(), 40);

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
        key: TotpKey::from_base32(scanned).unwrap(),
    };
    enable(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();

    // Same path and name again: refused, whoever asks. Another path is another device.
    let dup = err(
        409,
        "EntityAlreadyExists",
        "MFADevice entity at the same path and name already exists.",
    );
    for creds in [&alice, &b.root] {
        assert_eq!(
            fail(
                b.iam(creds)
                    .create_virtual_mfa_device()
                    .virtual_mfa_device_name("alice-phone")
                    .send()
                    .await
            ),
            dup
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
    assert_eq!(
        fail(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name("bad name")
                .send()
                .await
        ),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'bad name' at 'virtualMFADeviceName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )
    );
    // A path outside `/…/` of printable ASCII would make a serial no call could name.
    assert_eq!(
        fail(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name("spaced")
                .path("/a b/")
                .send()
                .await
        ),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value '/a b/' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)"
        )
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
async fn enable_needs_two_consecutive_codes() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    let now = b.now();
    let wrong = wrong_code(&device.key, now);
    // Not consecutive, the same code twice, the wrong order, a wrong code: all refused.
    for (first, second) in [
        (device.code_at(now, 0), device.code_at(now, 2)),
        (device.code_at(now, 0), device.code_at(now, 0)),
        (device.code_at(now, 0), device.code_at(now, -1)),
        (wrong.clone(), device.code_at(now, 0)),
    ] {
        let r = b
            .iam(&alice)
            .enable_mfa_device()
            .user_name("alice")
            .serial_number(&device.serial)
            .authentication_code1(first)
            .authentication_code2(second)
            .send()
            .await;
        assert_eq!(fail(r), invalid_auth_code());
    }
    // Nothing was enabled.
    assert!(mfa_serials(&b, &alice, None).await.is_empty());
    assert_eq!(
        virtual_serials(&b, &alice, Some(AssignmentStatusType::Unassigned)).await,
        [device.serial.as_str()]
    );
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(now, 1))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );
    // Two consecutive codes enable it.
    enable(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [device.serial.as_str()]
    );
    // Already enabled: refused.
    b.clock.advance(60);
    assert_eq!(
        enable(&b, &alice, "alice", &device, (-1, 0))
            .await
            .unwrap_err(),
        err(409, "EntityAlreadyExists", "MFA Device is already in use.")
    );
    // Codes shaped wrong are ValidationErrors.
    let r = b
        .iam(&alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .authentication_code1("12345")
        .authentication_code2("12a456")
        .send()
        .await;
    assert_eq!(
        fail(r),
        err(
            400,
            "ValidationError",
            "2 validation errors detected: Value '12345' at 'authenticationCode1' failed to satisfy constraint: Member must have length greater than or equal to 6; Value '12a456' at 'authenticationCode2' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\d]+"
        )
    );
    // Unknown user, unknown device.
    let bob_device = create_virtual_device(&b.iam(&b.root), "spare").await;
    assert_eq!(
        enable(&b, &b.root, "nobody", &bob_device, (-1, 0))
            .await
            .unwrap_err(),
        err(
            404,
            "NoSuchEntity",
            "The user with name nobody cannot be found."
        )
    );
    let ghost = VirtualDevice {
        serial: format!("arn:aws:iam::{}:mfa/ghost", b.account_id),
        ..token("x", b"0123456789abcdefghij")
    };
    assert_eq!(
        enable(&b, &alice, "alice", &ghost, (-1, 0))
            .await
            .unwrap_err(),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "MFA Device with serial number {} does not exist.",
                ghost.serial
            )
        )
    );
    b.stop().await;
}

#[tokio::test]
async fn enable_attempts_are_throttled_per_device() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    for _ in 0..5 {
        assert_eq!(
            enable(&b, &alice, "alice", &device, (0, 2))
                .await
                .unwrap_err(),
            invalid_auth_code()
        );
    }
    // Locked: even two good codes are refused, until the back-off has passed.
    assert_eq!(
        enable(&b, &alice, "alice", &device, (-1, 0))
            .await
            .unwrap_err(),
        invalid_auth_code()
    );
    b.clock.advance(29);
    assert_eq!(
        enable(&b, &alice, "alice", &device, (-1, 0))
            .await
            .unwrap_err(),
        invalid_auth_code()
    );
    b.clock.advance(1);
    enable(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_device_created_again_under_a_deleted_name_starts_unlocked() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let old = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    for _ in 0..5 {
        assert_eq!(
            enable(&b, &alice, "alice", &old, (0, 2)).await.unwrap_err(),
            invalid_auth_code()
        );
    }
    b.iam(&alice)
        .delete_virtual_mfa_device()
        .serial_number(&old.serial)
        .send()
        .await
        .unwrap();
    // Same serial, new seed: a new device, with no lock-out inherited from the old one.
    let new = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    assert_eq!(new.serial, old.serial);
    enable(&b, &alice, "alice", &new, (-1, 0)).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_drifted_device_is_accepted_at_enable_and_its_drift_remembered() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    // The device runs five steps ahead: it shows step now+5 (and showed now+4 before).
    enable(&b, &alice, "alice", &device, (4, 5)).await.unwrap();
    b.clock.advance(60);
    let now = b.now();
    // Our own current code is outside the drifted window; the device's current code works.
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(now, 0))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    gst(&b, &alice, &device.serial, &device.code_at(now, 5))
        .await
        .unwrap();
    b.clock.advance(60);
    gst(&b, &alice, &device.serial, &device.code_at(b.now(), 4))
        .await
        .expect("t-1 of the drifted centre");

    // Beyond the resync window (20 steps) a drift is refused at enable.
    let far = create_virtual_device(&b.iam(&b.root), "far").await;
    b.iam(&b.root)
        .create_user()
        .user_name("bob")
        .send()
        .await
        .unwrap();
    assert_eq!(
        enable(&b, &b.root, "bob", &far, (24, 25))
            .await
            .unwrap_err(),
        invalid_auth_code()
    );
    enable(&b, &b.root, "bob", &far, (-20, -19)).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn resync_learns_a_new_drift() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    // The device's clock jumps nine steps ahead: its codes fail until it is resynchronised.
    b.clock.advance(60);
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(b.now(), 9))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    // Wrong or non-consecutive codes do not resync.
    assert_eq!(
        resync(&b, &alice, "alice", &device, (8, 10))
            .await
            .unwrap_err(),
        invalid_auth_code()
    );
    resync(&b, &alice, "alice", &device, (8, 9)).await.unwrap();
    b.clock.advance(60);
    let now = b.now();
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(now, 0))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    gst(&b, &alice, &device.serial, &device.code_at(now, 9))
        .await
        .unwrap();
    // Root may resync a user's device too (its clock fixed, ten minutes later: the steps
    // after the last accepted one); a device the user does not hold is not found.
    b.clock.advance(600);
    resync(&b, &b.root, "alice", &device, (-1, 0))
        .await
        .unwrap();
    b.clock.advance(30);
    gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    let spare = create_virtual_device(&b.iam(&alice), "spare").await;
    assert_eq!(
        resync(&b, &alice, "alice", &spare, (-1, 0))
            .await
            .unwrap_err(),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "MFA Device with serial number {} does not exist.",
                spare.serial
            )
        )
    );
    b.stop().await;
}

#[tokio::test]
async fn a_user_manages_only_its_own_devices() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let acct = &b.account_id;
    let bob_device = enabled_device(&b, &bob, "bob", "bob-phone").await;
    let bob_spare = create_virtual_device(&b.iam(&bob), "bob-spare").await;
    let alice_device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    let not_authorized = |action: &str| {
        format!(
            "User: arn:aws:iam::{acct}:user/alice is not authorized to perform: iam:{action} on resource: arn:aws:iam::{acct}:user/bob because no identity-based policy allows the iam:{action} action"
        )
    };
    // Enabling for someone else, listing or deactivating someone else's devices: refused.
    assert_eq!(
        enable(&b, &alice, "bob", &alice_device, (-1, 0))
            .await
            .unwrap_err(),
        denied(&not_authorized("EnableMFADevice"))
    );
    assert_eq!(
        fail(
            b.iam(&alice)
                .list_mfa_devices()
                .user_name("bob")
                .send()
                .await
        ),
        denied(&not_authorized("ListMFADevices"))
    );
    // Another user's devices, assigned or not, do not exist for alice.
    for serial in [&bob_device.serial, &bob_spare.serial] {
        assert_eq!(
            fail(
                b.iam(&alice)
                    .enable_mfa_device()
                    .user_name("alice")
                    .serial_number(serial)
                    .authentication_code1("123456")
                    .authentication_code2("234567")
                    .send()
                    .await
            ),
            err(
                404,
                "NoSuchEntity",
                &format!("MFA Device with serial number {serial} does not exist.")
            )
        );
        assert_eq!(
            fail(
                b.iam(&alice)
                    .delete_virtual_mfa_device()
                    .serial_number(serial)
                    .send()
                    .await
            )
            .1,
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
async fn deactivate_needs_an_mfa_session_for_users_and_root_may_deactivate_any() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let acct = &b.account_id;
    let arn = format!("arn:aws:iam::{acct}:user/alice");
    let explicit_deny = format!(
        "User: {arn} is not authorized to perform: iam:DeactivateMFADevice on resource: {arn} with an explicit deny in an identity-based policy"
    );
    // Long-term keys and sessions without MFA may not.
    assert_eq!(
        fail(
            b.iam(&alice)
                .deactivate_mfa_device()
                .user_name("alice")
                .serial_number(&device.serial)
                .send()
                .await
        ),
        denied(&explicit_deny)
    );
    assert_eq!(
        mfa_serials(&b, &alice, None).await,
        [device.serial.as_str()]
    );
    // With MFA-backed session credentials it works, UserName defaulting to the caller.
    b.clock.advance(30);
    let mfa = session_creds(
        &gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap(),
    );
    b.iam(&mfa)
        .deactivate_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    assert!(mfa_serials(&b, &alice, None).await.is_empty());
    // A deactivated device no longer validates, even with a fresh code.
    b.clock.advance(30);
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );
    assert_eq!(
        virtual_serials(&b, &alice, Some(AssignmentStatusType::Unassigned)).await,
        [device.serial.as_str()]
    );
    // Re-enabled, it works again; then root deactivates it with its long-term keys.
    enable(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();
    b.clock.advance(30);
    gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    b.iam(&b.root)
        .deactivate_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    b.clock.advance(30);
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );
    // Deactivating what is not enabled.
    assert_eq!(
        fail(
            b.iam(&b.root)
                .deactivate_mfa_device()
                .user_name("alice")
                .serial_number(&device.serial)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "MFA Device with serial number {} does not exist.",
                device.serial
            )
        )
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
    let acct = &b.account_id;

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
    assert_eq!(
        fail(root_iam.list_mfa_devices().user_name("nobody").send().await),
        err(
            404,
            "NoSuchEntity",
            "The user with name nobody cannot be found."
        )
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
    assert_eq!(user.arn, format!("arn:aws:iam::{acct}:user/alice"));
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
    assert_eq!(
        fail(
            root_iam
                .list_virtual_mfa_devices()
                .assignment_status(AssignmentStatusType::from("Enabled"))
                .send()
                .await
        ),
        err(
            400,
            "ValidationError",
            "1 validation error detected: Value 'Enabled' at 'assignmentStatus' failed to satisfy constraint: Member must satisfy enum value set: [Assigned, Unassigned, Any]"
        )
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
    assert_eq!(
        fail(
            root_iam
                .get_mfa_device()
                .user_name("alice")
                .serial_number(&spare1.serial)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "MFA Device with serial number {} does not exist.",
                spare1.serial
            )
        )
    );

    // Delete: refused while assigned, fine once deactivated, then gone.
    assert_eq!(
        fail(
            root_iam
                .delete_virtual_mfa_device()
                .serial_number(&assigned.serial)
                .send()
                .await
        ),
        err(
            409,
            "DeleteConflict",
            "You must deactivate a user's virtual MFA device before you can delete it."
        )
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
    assert_eq!(
        fail(
            root_iam
                .delete_virtual_mfa_device()
                .serial_number(&spare1.serial)
                .send()
                .await
        ),
        err(
            404,
            "NoSuchEntity",
            &format!(
                "MFA Device with serial number {} does not exist.",
                spare1.serial
            )
        )
    );
    // A deleted device validates nothing; its name can be reused with a new seed.
    assert_eq!(
        gst(&b, &alice, &assigned.serial, &assigned.code_at(b.now(), 1))
            .await
            .unwrap_err(),
        denied(UNABLE)
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

#[tokio::test]
async fn one_device_per_user_by_default() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let first = enabled_device(&b, &alice, "alice", "first").await;
    let second = create_virtual_device(&b.iam(&alice), "second").await;
    assert_eq!(
        enable(&b, &alice, "alice", &second, (-1, 0))
            .await
            .unwrap_err(),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for MFADevicesInUsePerUser: 1"
        )
    );
    assert_eq!(mfa_serials(&b, &alice, None).await, [first.serial.as_str()]);
    b.clock.advance(30);
    assert_eq!(
        gst(&b, &alice, &second.serial, &second.code_at(b.now(), 0))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );
    gst(&b, &alice, &first.serial, &first.code_at(b.now(), 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn two_devices_when_configured() {
    let b = TestBroker::start_with(|cfg| cfg.max_mfa_devices_per_user = 2).await;
    let alice = b.user_with_key("alice").await;
    let first = enabled_device(&b, &alice, "alice", "first").await;
    let second = enabled_device(&b, &alice, "alice", "second").await;
    let third = create_virtual_device(&b.iam(&alice), "third").await;
    assert_eq!(
        enable(&b, &alice, "alice", &third, (-1, 0))
            .await
            .unwrap_err(),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for MFADevicesInUsePerUser: 2"
        )
    );
    // Either device is enough.
    b.clock.advance(30);
    gst(&b, &alice, &first.serial, &first.code_at(b.now(), 0))
        .await
        .unwrap();
    gst(&b, &alice, &second.serial, &second.code_at(b.now(), 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn eight_devices_at_most() {
    let b = TestBroker::start_with(|cfg| cfg.max_mfa_devices_per_user = 8).await;
    let alice = b.user_with_key("alice").await;
    let mut devices = Vec::new();
    for n in 1..=8 {
        devices.push(enabled_device(&b, &alice, "alice", &format!("d{n}")).await);
    }
    let ninth = create_virtual_device(&b.iam(&alice), "d9").await;
    assert_eq!(
        enable(&b, &alice, "alice", &ninth, (-1, 0))
            .await
            .unwrap_err(),
        err(
            409,
            "LimitExceeded",
            "Cannot exceed quota for MFADevicesInUsePerUser: 8"
        )
    );
    assert_eq!(mfa_serials(&b, &alice, None).await.len(), 8);
    b.clock.advance(30);
    for d in [&devices[0], &devices[7]] {
        gst(&b, &alice, &d.serial, &d.code_at(b.now(), 0))
            .await
            .unwrap();
    }
    // A configuration beyond AWS's quota is refused.
    let mut cfg = b.config.clone();
    cfg.max_mfa_devices_per_user = 9;
    assert!(cfg.validate().is_err());
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// GetSessionToken with MFA.

#[tokio::test]
async fn window_edges_at_the_default_window_of_one() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-2, 2, -3, 3] {
        assert_eq!(
            gst(&b, &alice, &device.serial, &device.code_at(now, offset))
                .await
                .unwrap_err(),
            denied(INVALID_CODE),
            "t{offset:+}"
        );
    }
    gst(&b, &alice, &device.serial, &device.code_at(now, -1))
        .await
        .expect("t-1");
    gst(&b, &alice, &device.serial, &device.code_at(now, 1))
        .await
        .expect("t+1");
    // Accepting t+1 retired t: it is refused like a wrong code.
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(now, 0))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    b.stop().await;
}

#[tokio::test]
async fn window_zero_accepts_only_the_current_step() {
    let b = TestBroker::start_with(|cfg| cfg.mfa_window = 0).await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-1, 1] {
        assert_eq!(
            gst(&b, &alice, &device.serial, &device.code_at(now, offset))
                .await
                .unwrap_err(),
            denied(INVALID_CODE),
            "t{offset:+}"
        );
    }
    gst(&b, &alice, &device.serial, &device.code_at(now, 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn window_two_accepts_two_steps_each_side() {
    let b = TestBroker::start_with(|cfg| cfg.mfa_window = 2).await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(300);
    let now = b.now();
    for offset in [-3, 3] {
        assert_eq!(
            gst(&b, &alice, &device.serial, &device.code_at(now, offset))
                .await
                .unwrap_err(),
            denied(INVALID_CODE),
            "t{offset:+}"
        );
    }
    gst(&b, &alice, &device.serial, &device.code_at(now, -2))
        .await
        .expect("t-2");
    gst(&b, &alice, &device.serial, &device.code_at(now, 2))
        .await
        .expect("t+2");
    // Three steps each side is beyond what the configuration allows.
    let mut cfg = b.config.clone();
    cfg.mfa_window = 3;
    assert!(cfg.validate().is_err());
    b.stop().await;
}

#[tokio::test]
async fn wrong_foreign_unknown_and_deactivated_serials() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let a_dev = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let b_dev = enabled_device(&b, &bob, "bob", "bob-phone").await;
    b.clock.advance(30);
    let now = b.now();
    // A wrong code for one's own device.
    assert_eq!(
        gst(&b, &alice, &a_dev.serial, &wrong_code(&a_dev.key, now))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    // Bob's device with Bob's valid code, an unknown serial, a user ARN: unable to validate.
    let acct = &b.account_id;
    for serial in [
        b_dev.serial.clone(),
        format!("arn:aws:iam::{acct}:mfa/nobody"),
        "GAHT00000000".to_owned(),
        format!("arn:aws:iam::{acct}:user/alice"),
    ] {
        assert_eq!(
            gst(&b, &alice, &serial, &b_dev.code_at(now, 0))
                .await
                .unwrap_err(),
            denied(UNABLE),
            "{serial}"
        );
    }
    // Bob's code was not consumed by alice's attempt.
    gst(&b, &bob, &b_dev.serial, &b_dev.code_at(now, 0))
        .await
        .unwrap();
    // Made-up serials leave no throttle state behind.
    for n in 0..20 {
        let _ = gst(&b, &alice, &format!("GAHT{n:08}"), "123456").await;
    }
    assert_eq!(b.throttle.len(), 1, "only alice's device counts");
    // A serial without a code, or a code without a serial: refused, never credentials.
    let r = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&a_dev.serial)
        .send()
        .await;
    assert_eq!(fail(r), denied(UNABLE));
    let r = b
        .sts(&alice)
        .get_session_token()
        .token_code(a_dev.code_at(now, 0))
        .send()
        .await;
    assert_eq!(fail(r), denied(UNABLE));
    // The code that was offered alone was not consumed either.
    gst(&b, &alice, &a_dev.serial, &a_dev.code_at(now, 0))
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn replayed_code_is_refused_like_a_wrong_one() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    // The enabling codes are spent.
    assert_eq!(
        gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    b.clock.advance(30);
    let code = device.code_at(b.now(), 0);
    gst(&b, &alice, &device.serial, &code).await.unwrap();
    let wrong = gst(
        &b,
        &alice,
        &device.serial,
        &wrong_code(&device.key, b.now()),
    )
    .await
    .unwrap_err();
    // Two replays: with the wrong code and the replay below, four failures, one short of a lock.
    for _ in 0..2 {
        let replay = gst(&b, &alice, &device.serial, &code).await.unwrap_err();
        assert_eq!(replay, denied(INVALID_CODE));
        assert_eq!(replay, wrong, "a replay reads exactly as a wrong code");
    }
    // Still within the window 29 s later: still refused. The next step's code works.
    b.clock.advance(29);
    assert_eq!(
        gst(&b, &alice, &device.serial, &code).await.unwrap_err(),
        denied(INVALID_CODE)
    );
    b.clock.advance(1);
    gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "replayed").count() >= 4)
        .await;
    assert_eq!(
        lines
            .iter()
            .filter(|e| e["action"] == "GetSessionToken" && e["reason"] == "wrong_code")
            .count(),
        1
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_code_have_exactly_one_winner() {
    const PARALLEL: usize = 32;
    const ROUNDS: usize = 5;
    let b = Arc::new(TestBroker::start().await);
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let mut winners_per_round = Vec::new();
    for _ in 0..ROUNDS {
        // Past any lock-out the losers of the previous round caused.
        b.clock.advance(20 * 60);
        let code = device.code_at(b.now(), 0);
        // Fresh clients each round: the SDK corrects its signing time by the skew it saw in
        // earlier responses' Date headers (the wall clock), which moving the test clock breaks.
        let clients: Vec<_> = (0..PARALLEL).map(|_| b.sts(&alice)).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(PARALLEL));
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|sts| {
                let (barrier, serial, code) =
                    (Arc::clone(&barrier), device.serial.clone(), code.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    sts.get_session_token()
                        .serial_number(serial)
                        .token_code(code)
                        .send()
                        .await
                        .map_err(|e| sdk_failure(&e))
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => winners += 1,
                Err(e) => assert_eq!(e, denied(INVALID_CODE)),
            }
        }
        winners_per_round.push(winners);
    }
    assert_eq!(winners_per_round, vec![1; ROUNDS]);
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "GetSessionToken")
                .count()
                >= PARALLEL * ROUNDS
        })
        .await;
    let successes = lines
        .iter()
        .filter(|e| e["action"] == "GetSessionToken" && e["outcome"] == "success")
        .count();
    assert_eq!(successes, ROUNDS);
    eprintln!(
        "concurrency: {ROUNDS} rounds x {PARALLEL} parallel GetSessionToken with one code: winners per round {winners_per_round:?}"
    );
    Arc::try_unwrap(b).ok().unwrap().stop().await;
}

#[tokio::test]
async fn throttle_locks_after_five_failures_backs_off_and_caps_at_fifteen_minutes() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let try_wrong = || async {
        gst(
            &b,
            &alice,
            &device.serial,
            &wrong_code(&device.key, b.now()),
        )
        .await
        .unwrap_err()
    };
    let try_right = || async { gst(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await };
    for _ in 0..5 {
        assert_eq!(try_wrong().await, denied(INVALID_CODE));
    }
    // Locked for 30 s: even the right code is refused, with the wrong-code text.
    let mut locks = Vec::new();
    let mut lock = 30;
    loop {
        assert_eq!(try_right().await.unwrap_err(), denied(INVALID_CODE));
        b.clock.advance(lock - 1);
        assert_eq!(
            try_right().await.unwrap_err(),
            denied(INVALID_CODE),
            "1 s before the end of a {lock} s lock"
        );
        b.clock.advance(1);
        locks.push(lock);
        if locks.len() == 7 {
            break;
        }
        // The lock is over: one more failure locks again, twice as long, up to 15 minutes.
        assert_eq!(try_wrong().await, denied(INVALID_CODE));
        lock = (lock * 2).min(900);
    }
    assert_eq!(locks, [30, 60, 120, 240, 480, 900, 900]);
    // After the last lock, the right code gets in and clears the count.
    try_right().await.unwrap();
    b.clock.advance(30);
    for _ in 0..4 {
        assert_eq!(try_wrong().await, denied(INVALID_CODE));
    }
    try_right().await.unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "throttled").count() >= 14)
        .await;
    assert!(
        lines
            .iter()
            .filter(|e| e["reason"] == "throttled")
            .all(|e| e["serial"] == device.serial.as_str() && e["outcome"] == "failure")
    );
    b.stop().await;
}

#[tokio::test]
async fn session_token_carries_the_mfa_context() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let auth_time = b.now();
    let with = gst(&b, &alice, &device.serial, &device.code_at(auth_time, 0))
        .await
        .unwrap();
    let claims = jwt_claims(&with.session_token);
    assert_eq!(claims["mfa"]["serial"], device.serial.as_str());
    assert_eq!(claims["mfa"]["auth_time"], auth_time);
    assert_eq!(claims["exp"], auth_time + 43_200);
    assert_eq!(with.expiration.secs(), auth_time + 43_200);
    let without = b.session(&alice).await;
    let plain = jwt_claims(without.token.as_deref().unwrap());
    assert!(plain.get("mfa").is_none(), "{plain}");
    // The MFA session is the user, and may call IAM; an hour later the context is unchanged.
    b.clock.advance(3600);
    let mfa = session_creds(&with);
    let who = b.sts(&mfa).get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:iam::{}:user/alice", b.account_id).as_str())
    );
    assert_eq!(mfa_serials(&b, &mfa, None).await, [device.serial.as_str()]);
    assert_eq!(
        fail(b.iam(&without).list_mfa_devices().send().await),
        err(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid."
        )
    );
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Hardware tokens, FIDO keys and the root user: the operator's paths.

const HW_SEED_1: &[u8] = b"12345678901234567890";
const HW_SEED_2: &[u8] = b"hardware-token-seed-2";

#[tokio::test]
async fn hardware_tokens_imported_by_the_operator_are_enabled_and_used() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let t1 = token("GAHT12345678", HW_SEED_1);
    let t2 = token("GAHT87654321", HW_SEED_2);
    let dir = crate::harness::fresh_dir("seeds");

    // Through the library, on the running broker's data dir.
    let seeds = dir.join("seeds.csv");
    std::fs::write(
        &seeds,
        format!("serial,seed\n{},{}\n", t1.serial, t1.seed_b32),
    )
    .unwrap();
    let admin = b.admin();
    assert_eq!(admin.import_hardware(&seeds).unwrap(), 1);
    // Importing the same serial again is refused; a file with one bad row imports nothing.
    assert!(admin.import_hardware(&seeds).is_err());
    let t3 = token("GAHT33333333", b"third-token-seed-333");
    let mixed = dir.join("mixed.csv");
    std::fs::write(
        &mixed,
        format!("{},{}\nGAHT44444444,not base32!\n", t3.serial, t3.seed_b32),
    )
    .unwrap();
    assert!(admin.import_hardware(&mixed).is_err());
    let t3_only = dir.join("t3.csv");
    std::fs::write(&t3_only, format!("{},{}\n", t3.serial, t3.seed_b32)).unwrap();
    assert_eq!(
        admin.import_hardware(&t3_only).unwrap(),
        1,
        "the refused file left nothing behind"
    );
    admin.close();

    // Through the real binary.
    let seeds2 = dir.join("seeds2.csv");
    std::fs::write(
        &seeds2,
        format!("# vendor file\n{},{}\n", t2.serial, t2.seed_b32),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args(["admin", "mfa", "import-hardware", "--file"])
        .arg(&seeds2)
        .arg("--data-dir")
        .arg(&b.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "imported 1 hardware MFA device(s)"
    );

    // The running broker picks both up without a restart; users enable them by vendor serial.
    eventually(PICKUP, || async {
        match enable(&b, &alice, "alice", &t1, (-1, 0)).await {
            Err(e) if e.1 == "NoSuchEntity" => None,
            other => {
                other.unwrap();
                Some(())
            }
        }
    })
    .await;
    eventually(PICKUP, || async {
        match enable(&b, &bob, "bob", &t2, (-1, 0)).await {
            Err(e) if e.1 == "NoSuchEntity" => None,
            other => {
                other.unwrap();
                Some(())
            }
        }
    })
    .await;
    assert_eq!(mfa_serials(&b, &alice, None).await, [t1.serial.as_str()]);
    // Hardware tokens are not virtual devices.
    assert!(virtual_serials(&b, &b.root, None).await.is_empty());

    b.clock.advance(30);
    let now = b.now();
    let creds = gst(&b, &alice, &t1.serial, &t1.code_at(now, 0))
        .await
        .unwrap();
    assert_eq!(
        jwt_claims(&creds.session_token)["mfa"]["serial"],
        "GAHT12345678"
    );
    gst(&b, &bob, &t2.serial, &t2.code_at(now, 0))
        .await
        .unwrap();
    assert_eq!(
        gst(&b, &alice, &t1.serial, &t1.code_at(now, 0))
            .await
            .unwrap_err(),
        denied(INVALID_CODE)
    );
    assert_eq!(
        gst(&b, &alice, &t2.serial, &t2.code_at(now, 1))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );
    // The operator's seeds never reach the audit log, only the serials.
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "ImportHardwareMFADevice")
                .count()
                >= 4
        })
        .await;
    assert!(
        lines
            .iter()
            .any(|e| e["action"] == "ImportHardwareMFADevice"
                && e["serial"] == "GAHT87654321"
                && e["outcome"] == "success")
    );
    let raw = b.audit_text();
    for t in [&t1, &t2, &t3] {
        assert!(!raw.contains(&t.seed_b32));
    }
    b.stop().await;
}

#[tokio::test]
async fn fido_keys_are_never_enabled_through_the_api_nor_used_on_sts() {
    let b = TestBroker::start_with(|cfg| cfg.max_mfa_devices_per_user = 2).await;
    let alice = b.user_with_key("alice").await;
    let bob = b.user_with_key("bob").await;
    let acct = b.account_id.clone();
    let virtual_device = enabled_device(&b, &alice, "alice", "alice-phone").await;

    let admin = b.admin();
    let serial = admin
        .register_fido(
            "alice",
            "yubikey",
            "Y3JlZGVudGlhbC1pZA",
            "cHVibGljLWtleS1ieXRlcw",
        )
        .unwrap();
    let prefix = format!("arn:aws:iam::{acct}:u2f/user/alice/yubikey-");
    let suffix = serial.strip_prefix(&prefix).unwrap();
    assert_eq!(suffix.len(), 8);
    assert!(
        suffix
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert!(
        admin
            .register_fido("alice", "bad name", "AA", "BB")
            .is_err()
    );
    assert!(admin.register_fido("nobody", "key", "AA", "BB").is_err());
    admin.close();
    // The real binary registers one for bob.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args([
            "admin",
            "mfa",
            "register-fido",
            "--user",
            "bob",
            "--name",
            "bobkey",
            "--credential-id",
            "Ym9iLWNyZWQ",
            "--public-key",
            "Ym9iLXB1Yg",
            "--data-dir",
        ])
        .arg(&b.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let bob_serial = stdout
        .trim()
        .strip_prefix("registered FIDO security key ")
        .unwrap()
        .to_owned();
    assert!(bob_serial.starts_with(&format!("arn:aws:iam::{acct}:u2f/user/bob/bobkey-")));

    // The running broker lists it for alice once it has picked the change up.
    let listed = eventually(PICKUP, || async {
        let s = mfa_serials(&b, &alice, None).await;
        (s.len() == 2).then_some(s)
    })
    .await;
    assert!(listed.contains(&serial));
    eventually(PICKUP, || async {
        (mfa_serials(&b, &bob, None).await == [bob_serial.as_str()]).then_some(())
    })
    .await;

    // Enabling a FIDO key through the API: refused with a clear error, registered or not.
    let made_up = format!("arn:aws:iam::{acct}:u2f/user/alice/other-ABCDEF12");
    for s in [&serial, &made_up] {
        let r = b
            .iam(&alice)
            .enable_mfa_device()
            .user_name("alice")
            .serial_number(s)
            .authentication_code1("123456")
            .authentication_code2("234567")
            .send()
            .await;
        assert_eq!(fail(r), err(400, "InvalidInput", FIDO_API_REFUSED), "{s}");
        let r = b
            .iam(&alice)
            .resync_mfa_device()
            .user_name("alice")
            .serial_number(s)
            .authentication_code1("123456")
            .authentication_code2("234567")
            .send()
            .await;
        assert_eq!(
            fail(r).1,
            if s == &serial {
                "InvalidInput"
            } else {
                "NoSuchEntity"
            }
        );
    }

    // GetSessionToken with a FIDO serial (registered, someone else's, or just the u2f form),
    // with a valid-looking code or without one: the FIDO refusal, and no code is looked at.
    b.clock.advance(30);
    let now = b.now();
    for s in [&serial, &bob_serial, &made_up] {
        for _ in 0..6 {
            assert_eq!(
                gst(&b, &alice, s, &virtual_device.code_at(now, 0))
                    .await
                    .unwrap_err(),
                denied(FIDO_REFUSED),
                "{s}"
            );
            let r = b
                .sts(&alice)
                .get_session_token()
                .serial_number(s)
                .send()
                .await;
            assert_eq!(fail(r), denied(FIDO_REFUSED), "{s} without a code");
        }
    }
    assert_eq!(
        b.throttle.len(),
        0,
        "FIDO attempts never count as code failures"
    );
    // The code offered with the FIDO serial was not consumed: the virtual device takes it.
    gst(
        &b,
        &alice,
        &virtual_device.serial,
        &virtual_device.code_at(now, 0),
    )
    .await
    .unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "fido_key").count() >= 36)
        .await;
    assert!(
        lines
            .iter()
            .filter(|e| e["action"] == "GetSessionToken" && e["outcome"] == "failure")
            .all(|e| e["reason"] == "fido_key")
    );
    assert!(
        lines
            .iter()
            .any(|e| e["action"] == "RegisterFIDOSecurityKey" && e["serial"] == serial.as_str())
    );
    b.stop().await;
}

#[tokio::test]
async fn root_mfa_is_enabled_only_by_the_operator_and_caps_the_session_at_an_hour() {
    let b = TestBroker::start().await;
    let root_iam = b.iam(&b.root);
    let device = create_virtual_device(&root_iam, "root-phone").await;
    // Through the API: refused.
    assert_eq!(
        enable(&b, &b.root, "root", &device, (-1, 0))
            .await
            .unwrap_err(),
        denied(ROOT_CONSOLE_ONLY)
    );
    assert_eq!(
        fail(
            root_iam
                .deactivate_mfa_device()
                .user_name("root")
                .serial_number(&device.serial)
                .send()
                .await
        ),
        denied(ROOT_CONSOLE_ONLY)
    );
    b.clock.advance(30);
    assert_eq!(
        gst(&b, &b.root, &device.serial, &device.code_at(b.now(), 0))
            .await
            .unwrap_err(),
        denied(UNABLE)
    );

    // The operator enables it; the running broker takes it up without a restart.
    let now = b.now();
    let admin = b.admin();
    admin
        .enable_root(
            &device.serial,
            &device.code_at(now, -1),
            &device.code_at(now, 0),
        )
        .unwrap();
    admin.close();
    b.clock.advance(30);
    let now = b.now();
    let creds = eventually(PICKUP, || async {
        let r = b
            .sts(&b.root)
            .get_session_token()
            .duration_seconds(7200)
            .serial_number(&device.serial)
            .token_code(device.code_at(now, 0))
            .send()
            .await;
        match r {
            Ok(out) => Some(out.credentials.unwrap()),
            Err(e) => {
                assert_eq!(sdk_failure(&e), denied(UNABLE));
                None
            }
        }
    })
    .await;
    assert_eq!(creds.expiration.secs(), now + 3600);
    let claims = jwt_claims(&creds.session_token);
    assert_eq!(claims["mfa"]["serial"], device.serial.as_str());
    assert_eq!(claims["sub"], "root");
    assert_eq!(
        mfa_serials(&b, &b.root, None).await,
        [device.serial.as_str()]
    );
    // The root session with MFA may use IAM.
    let session = session_creds(&creds);
    b.iam(&session)
        .create_user()
        .user_name("made-by-root-session")
        .send()
        .await
        .unwrap();
    // The operator deactivates it again (library); the broker follows.
    let admin = b.admin();
    admin.deactivate(&device.serial).unwrap();
    admin.close();
    b.clock.advance(30);
    let now = b.now();
    eventually(PICKUP, || async {
        let r = gst(&b, &b.root, &device.serial, &device.code_at(now, 0)).await;
        (r == Err(denied(UNABLE))).then_some(())
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn root_mfa_through_the_real_admin_binary() {
    let b = TestBroker::start().await;
    let device = create_virtual_device(&b.iam(&b.root), "root-token").await;
    // The binary reads the wall clock; this broker's clock is still at the wall time.
    let now = crate::harness::wall_now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args(["admin", "mfa", "enable-root", "--serial", &device.serial])
        .args(["--code1", &device.code_at(now, -1)])
        .args(["--code2", &device.code_at(now, 0)])
        .arg("--data-dir")
        .arg(&b.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    b.clock.advance(60);
    let now = b.now();
    eventually(PICKUP, || async {
        gst(&b, &b.root, &device.serial, &device.code_at(now, 0))
            .await
            .ok()
    })
    .await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The audit log.

/// Every maximal run of exactly six digits in `text`.
fn six_digit_runs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            if run.len() == 6 {
                out.insert(run.clone());
            }
            run.clear();
        }
    }
    out
}

#[tokio::test]
async fn audit_log_records_every_get_session_token_and_device_change_and_no_secret() {
    use base64::Engine as _;
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let iam = b.iam(&alice);
    let mut codes = Vec::new();
    let mut secrets = vec![b.root.secret.clone(), alice.secret.clone()];

    let device = create_virtual_device(&iam, "alice-phone").await;
    secrets.push(device.seed_b32.clone());
    secrets.push(base64::engine::general_purpose::STANDARD.encode(&device.seed_b32));
    let now = b.now();
    codes.extend([device.code_at(now, 0), device.code_at(now, 2)]);
    assert!(enable(&b, &alice, "alice", &device, (0, 2)).await.is_err());
    codes.extend([device.code_at(now, -1), device.code_at(now, 0)]);
    enable(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();

    b.clock.advance(30);
    let now = b.now();
    let plain = b.sts(&alice).get_session_token().send().await.unwrap();
    let plain_rid = plain.request_id().unwrap().to_owned();
    let plain = plain.credentials.unwrap();
    secrets.extend([plain.secret_access_key.clone(), plain.session_token.clone()]);
    let code = device.code_at(now, 0);
    codes.push(code.clone());
    let ok = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&device.serial)
        .token_code(&code)
        .send()
        .await
        .unwrap();
    let ok_rid = ok.request_id().unwrap().to_owned();
    let mfa = ok.credentials.unwrap();
    secrets.extend([mfa.secret_access_key.clone(), mfa.session_token.clone()]);
    let replay = b
        .sts(&alice)
        .get_session_token()
        .serial_number(&device.serial)
        .token_code(&code)
        .send()
        .await
        .unwrap_err();
    let replay_rid = replay.request_id().unwrap().to_owned();
    let wrong = wrong_code(&device.key, now);
    codes.push(wrong.clone());
    gst(&b, &alice, &device.serial, &wrong).await.unwrap_err();
    gst(&b, &alice, "GAHT99999999", &device.code_at(now, 1))
        .await
        .unwrap_err();
    codes.push(device.code_at(now, 1));
    b.clock.advance(60);
    let now = b.now();
    codes.extend([device.code_at(now, -1), device.code_at(now, 0)]);
    resync(&b, &alice, "alice", &device, (-1, 0)).await.unwrap();
    let mfa_creds = session_creds(&mfa);
    b.iam(&mfa_creds)
        .deactivate_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    iam.delete_virtual_mfa_device()
        .serial_number(&device.serial)
        .send()
        .await
        .unwrap();
    // A malformed TokenCode holding a real code, and session credentials asking again.
    let long_code = format!("{}7", device.code_at(now, 1));
    secrets.push(long_code.clone());
    assert_eq!(
        gst(&b, &alice, &device.serial, &long_code)
            .await
            .unwrap_err()
            .1,
        "ValidationError"
    );
    assert_eq!(
        fail(
            b.sts(&session_creds(&plain))
                .get_session_token()
                .send()
                .await
        ),
        denied("Cannot call GetSessionToken with session credentials")
    );
    gst(
        &b,
        &alice,
        &format!("arn:aws:iam::{}:u2f/user/alice/k-ABCDEF12", b.account_id),
        "123456",
    )
    .await
    .unwrap_err();

    let lines = b
        .audit_until(|l| l.iter().any(|e| e["reason"] == "fido_key"))
        .await;
    let acct = b.account_id.as_str();
    let alice_arn = format!("arn:aws:iam::{acct}:user/alice");
    for e in &lines {
        for field in ["time", "request_id", "account", "action", "outcome"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
        assert_eq!(e["account"], acct);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        if e["request_id"] != "admin" {
            assert_eq!(e["principal"], alice_arn.as_str(), "{e}");
            assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
        }
        if e["outcome"] == "failure" {
            assert!(e["reason"].is_string(), "a failure without a reason: {e}");
        }
    }
    let find = |action: &str, outcome: &str| {
        lines
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .collect::<Vec<_>>()
    };
    let serial = device.serial.as_str();
    assert_eq!(
        find("CreateVirtualMFADevice", "success")[0]["serial"],
        serial
    );
    assert_eq!(find("EnableMFADevice", "failure")[0]["serial"], serial);
    assert_eq!(find("EnableMFADevice", "success")[0]["serial"], serial);
    assert_eq!(find("ResyncMFADevice", "success")[0]["serial"], serial);
    assert_eq!(find("DeactivateMFADevice", "success")[0]["serial"], serial);
    assert_eq!(
        find("DeactivateMFADevice", "success")[0]["mfa_authenticated"],
        true
    );
    assert_eq!(
        find("DeleteVirtualMFADevice", "success")[0]["serial"],
        serial
    );
    let gst_ok = find("GetSessionToken", "success");
    assert_eq!(gst_ok.len(), 2);
    assert_eq!(gst_ok[0]["request_id"], plain_rid.as_str());
    assert_eq!(gst_ok[0]["mfa_authenticated"], false);
    assert!(gst_ok[0].get("serial").is_none());
    assert_eq!(gst_ok[1]["request_id"], ok_rid.as_str());
    assert_eq!(gst_ok[1]["mfa_authenticated"], true);
    assert_eq!(gst_ok[1]["serial"], serial);
    assert_eq!(gst_ok[1]["access_key_id"], alice.akid.as_str());
    let reasons: Vec<(&str, &str)> = find("GetSessionToken", "failure")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap(),
                e["serial"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let fido = format!("arn:aws:iam::{acct}:u2f/user/alice/k-ABCDEF12");
    assert_eq!(
        reasons,
        [
            ("replayed", serial),
            ("wrong_code", serial),
            ("unknown_device", "GAHT99999999"),
            ("validation_error", ""),
            ("session_credentials", ""),
            ("fido_key", fido.as_str()),
        ]
    );
    let replay_line = find("GetSessionToken", "failure")[0];
    assert_eq!(replay_line["request_id"], replay_rid.as_str());
    assert_eq!(replay_line["error_code"], "AccessDenied");

    // No code, seed or secret anywhere in the raw file.
    let raw = b.audit_text();
    for s in &secrets {
        assert!(
            !raw.contains(s.as_str()),
            "a secret leaked into the audit log"
        );
    }
    let runs = six_digit_runs(&raw);
    for c in &codes {
        assert!(!runs.contains(c), "code {c} leaked into the audit log");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_get_no_more_than_five_code_checks() {
    const PARALLEL: usize = 256;
    let b = Arc::new(TestBroker::start().await);
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let now = b.now();
    let near: BTreeSet<String> = (-150..=150)
        .map(|k| device.key.code(step_at(now) + k).to_digits())
        .collect();
    let guesses: Vec<String> = (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(PARALLEL)
        .collect();
    let clients: Vec<_> = (0..PARALLEL).map(|_| b.sts(&alice)).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(PARALLEL));
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(guesses)
        .map(|(sts, guess)| {
            let (barrier, serial) = (Arc::clone(&barrier), device.serial.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                sts.get_session_token()
                    .serial_number(serial)
                    .token_code(guess)
                    .send()
                    .await
                    .map_err(|e| sdk_failure(&e))
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err(), denied(INVALID_CODE));
    }
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "GetSessionToken")
                .count()
                >= PARALLEL
        })
        .await;
    let checked = lines.iter().filter(|e| e["reason"] == "wrong_code").count();
    let throttled = lines.iter().filter(|e| e["reason"] == "throttled").count();
    eprintln!("concurrent guesses: {checked} checked, {throttled} refused unchecked");
    assert_eq!((checked, throttled), (5, PARALLEL - 5));
    Arc::try_unwrap(b).ok().unwrap().stop().await;
}
