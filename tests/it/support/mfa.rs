//! MFA devices as a user holds them (serial and TOTP key) and the IAM/STS calls that take
//! their codes, returning the SDK's results for the assertions to read.

use std::collections::BTreeSet;

use aws_sdk_iam::types::AssignmentStatusType;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::support::broker::TestBroker;
use crate::support::clients::Creds;
use crate::support::totp::{Totp, base32_encode, step_at};

/// An MFA device: its serial and its TOTP key.
#[derive(Clone, Debug)]
pub(crate) struct VirtualDevice {
    pub serial: String,
    pub seed_b32: String,
    pub key: Totp,
}

impl VirtualDevice {
    /// The code of the step `offset` steps from `now`.
    pub(crate) fn code_at(&self, now: i64, offset: i64) -> String {
        self.key.code_at(now, offset)
    }
}

/// A device imported from a seed (a hardware token), as a `VirtualDevice` for its codes.
pub(crate) fn hardware_token(serial: &str, seed: &[u8]) -> VirtualDevice {
    VirtualDevice {
        serial: serial.to_owned(),
        seed_b32: base32_encode(seed),
        key: Totp::new(seed),
    }
}

/// Creates a virtual device with `iam`'s credentials and decodes its seed.
pub(crate) async fn create_virtual_device(iam: &aws_sdk_iam::Client, name: &str) -> VirtualDevice {
    let out = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    // The SDK already base64-decoded the blob into the base32 text.
    let seed_b32 = String::from_utf8(out.base32_string_seed.unwrap().into_inner()).unwrap();
    let key = Totp::from_base32(&seed_b32).unwrap();
    VirtualDevice {
        serial: out.serial_number,
        seed_b32,
        key,
    }
}

/// Creates a virtual device as `creds` and enables it for `user` with two consecutive codes
/// (the previous and the current step, as a person typing two codes would).
pub(crate) async fn enabled_device(
    broker: &TestBroker,
    creds: &Creds,
    user: &str,
    name: &str,
) -> VirtualDevice {
    let device = create_virtual_device(&broker.iam(creds), name).await;
    enable_mfa(broker, creds, user, &device, (-1, 0))
        .await
        .unwrap();
    device
}

/// Six-digit codes that match no step of `key` within 150 steps of `now`, in a fixed order.
pub(crate) fn far_codes(key: &Totp, now: i64) -> impl Iterator<Item = String> {
    let near: BTreeSet<String> = (-150..=150).map(|k| key.code(step_at(now) + k)).collect();
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .filter(move |c| !near.contains(c))
}

/// A six-digit code that matches no step of `key` within 150 steps of `now`.
pub(crate) fn wrong_code(key: &Totp, now: i64) -> String {
    far_codes(key, now).next().unwrap()
}

/// GetSessionToken with SerialNumber and TokenCode, as `creds`.
pub(crate) async fn session_with_mfa(
    b: &TestBroker,
    creds: &Creds,
    serial: &str,
    code: &str,
) -> Result<
    aws_sdk_sts::types::Credentials,
    SdkError<aws_sdk_sts::operation::get_session_token::GetSessionTokenError, HttpResponse>,
> {
    b.sts(creds)
        .get_session_token()
        .serial_number(serial)
        .token_code(code)
        .send()
        .await
        .map(|o| o.credentials.unwrap())
}

/// EnableMFADevice with the device's codes at two step offsets from now.
pub(crate) async fn enable_mfa(
    b: &TestBroker,
    caller: &Creds,
    user: &str,
    device: &VirtualDevice,
    offsets: (i64, i64),
) -> Result<
    (),
    SdkError<aws_sdk_iam::operation::enable_mfa_device::EnableMFADeviceError, HttpResponse>,
> {
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
}

/// ResyncMFADevice with the device's codes at two step offsets from now.
pub(crate) async fn resync_mfa(
    b: &TestBroker,
    caller: &Creds,
    user: &str,
    device: &VirtualDevice,
    offsets: (i64, i64),
) -> Result<
    (),
    SdkError<aws_sdk_iam::operation::resync_mfa_device::ResyncMFADeviceError, HttpResponse>,
> {
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
}

/// Serials of ListVirtualMFADevices with `status` (None: the parameter left out).
pub(crate) async fn virtual_serials(
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

/// Serials of ListMFADevices for `user` (None: the caller).
pub(crate) async fn mfa_serials(b: &TestBroker, creds: &Creds, user: Option<&str>) -> Vec<String> {
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
