//! The virtual-MFA calls (`docs/iam-mfa-api.md`): CreateVirtualMFADevice, EnableMFADevice (two
//! consecutive codes), ResyncMFADevice, DeactivateMFADevice, DeleteVirtualMFADevice,
//! ListMFADevices, ListVirtualMFADevices, GetMFADevice.
//!
//! Rules beyond AWS's API shapes (`docs/mfa.md#who-may-enable-what`): FIDO keys and the root
//! user's devices cannot be enabled through the API; an IAM user sees and manages only the
//! devices it created or holds, and the hardware tokens not bound to someone else; enabling a
//! further device for, or deactivating one of, an identity that has one enabled needs
//! MFA-backed session credentials; a device is created only if its serial can be named by
//! every call, and within the account's and the user's quotas; code attempts on a registered
//! device count towards its lock-out like GetSessionToken's, per caller for an unassigned
//! hardware token, whose refusals read like an unknown serial's (`docs/mfa.md#throttling`).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;

use super::{
    Audited, PathChars, audit, check_path, check_user_name, no_result, paging, resolve_target,
    with_result, write_principal, write_truncation,
};
use crate::api::RequestCtx;
use crate::mfa::guard::{self, AttemptKey, MfaRefusal, Verdict, VerifyError};
use crate::mfa::totp::TokenCode;
use crate::mfa::{base32, is_u2f_arn, qr};
use crate::model::{Device, DeviceKind, Owner, Principal};
use crate::protocol::error::{ApiError, FIDO_NOT_THROUGH_API};
use crate::protocol::params::Params;
use crate::protocol::validate::{Checks, is_name_char, is_serial_char};
use crate::protocol::xml::XmlWriter;
use crate::store::StoreError;
use crate::store::ops::{self, CodePair, EnableRules, VirtualQuota};
use crate::store::queries::{Assignment, PageRequest};

/// Refusal of EnableMFADevice for the account root user (`docs/mfa.md#root-user-mfa`).
const ROOT_CONSOLE_ONLY: &str = "The account root user's MFA devices can be enabled or deactivated only outside the AWS API: use `sts-broker admin mfa enable-root` or `sts-broker admin mfa deactivate`.";

fn check_serial(checks: &mut Checks, serial: Option<&str>) {
    if let Some(s) = serial {
        checks.length("serialNumber", s, 9, 256);
        checks.pattern("serialNumber", s, "[\\w+=/:,.@-]+", is_serial_char);
    }
}

fn check_code<'a>(checks: &mut Checks, member: &str, code: Option<&'a str>) -> Option<&'a str> {
    let code = checks.required(member, code);
    if let Some(c) = code {
        checks.length(member, c, 6, 6);
        checks.pattern(member, c, "[\\d]+", |ch| ch.is_ascii_digit());
    }
    code
}

/// The device, if the caller may see it: root sees all; a user sees devices assigned to it,
/// unassigned virtual devices it created, and unassigned hardware tokens, which it may
/// physically hold, unless the operator bound them to someone else.
fn visible_device(ctx: &RequestCtx<'_>, serial: &str) -> Result<Arc<Device>, ApiError> {
    let me = ctx.caller.principal.owner();
    ctx.index()
        .device(serial)
        .filter(|d| match (&ctx.caller.principal, &d.assigned_to) {
            (Principal::Root, _) => true,
            (Principal::User(_), Some(holder)) => *holder == me,
            (Principal::User(_), None) => match &d.kind {
                DeviceKind::Virtual { creator, .. } => *creator == me,
                DeviceKind::Hardware { bound_to, .. } => bound_to.as_ref().is_none_or(|b| *b == me),
                DeviceKind::Fido => false,
            },
        })
        .ok_or_else(|| no_such_device(serial))
}

/// What EnableMFADevice says of an unknown serial (`docs/iam-mfa-api.md#enablemfadevice`).
fn no_such_device(serial: &str) -> ApiError {
    StoreError::NoSuchDevice(serial.to_owned()).into()
}

/// The identity an MFA call is about; `root` is refused by name (console only).
fn mfa_target(
    ctx: &RequestCtx<'_>,
    action: &str,
    name: Option<&str>,
) -> Result<Principal, ApiError> {
    match resolve_target(ctx, action, name) {
        Err(ApiError::NoSuchEntity(_))
            if ctx.caller.principal.is_root()
                && name.is_some_and(|n| n.eq_ignore_ascii_case("root")) =>
        {
            Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)))
        }
        other => other,
    }
}

/// CreateVirtualMFADevice's parameters.
struct CreateVirtual {
    name: String,
    path: String,
}

impl CreateVirtual {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let name = checks.required("virtualMFADeviceName", params.get("VirtualMFADeviceName"));
        if let Some(n) = name {
            checks.length("virtualMFADeviceName", n, 1, 226);
            checks.pattern("virtualMFADeviceName", n, "[\\w+=,.@-]+", is_name_char);
        }
        let path = params.get("Path").unwrap_or("/");
        check_path(&mut checks, "path", path, PathChars::UpTo7F);
        checks.finish_with(|| {
            Some(Self {
                name: name?.to_owned(),
                path: path.to_owned(),
            })
        })
    }
}

pub(super) async fn create_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    const ACTION: &str = "CreateVirtualMFADevice";
    let CreateVirtual { name, path } = CreateVirtual::parse(ctx.params)?;
    // Refuse what no call could name later: every call that takes a serial checks it against
    // IAM's SerialNumber shape, DeleteVirtualMFADevice included, so a serial outside it would
    // make a device nobody can delete (`docs/iam-mfa-api.md#createvirtualmfadevice`).
    let mut checks = Checks::new();
    check_serial(
        &mut checks,
        Some(&ops::virtual_serial(ctx.account(), &path, &name)),
    );
    checks.finish()?;
    let creator = ctx.caller.principal.owner();
    let quota = VirtualQuota {
        per_account: ctx.api.config.max_virtual_mfa_devices,
        unassigned_per_user: ctx.api.config.max_unassigned_mfa_devices_per_user,
    };
    let n = name.clone();
    let result = ctx
        .api
        .store
        .create_virtual_device(n, path, creator, quota)
        .await
        .map_err(ApiError::from);
    audit(
        ctx,
        &Audited {
            action: ACTION,
            serial: result.as_ref().ok().map(|d| d.serial.as_str()),
            target_user: None,
            error: result.as_ref().err(),
            reason: None,
        },
    );
    let device = result?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed_b32 = zeroize::Zeroizing::new(base32::encode(&device.seed));
    let uri = zeroize::Zeroizing::new(qr::otpauth_uri(
        &ctx.api.config.mfa_issuer,
        &format!("{name}@{}", ctx.account()),
        &seed_b32,
    ));
    let png = qr::qr_png(&uri).map_err(|e| {
        tracing::error!(error = %e, "QR code generation failed");
        ApiError::InternalFailure
    })?;
    let seed_b64 = zeroize::Zeroizing::new(b64.encode(seed_b32.as_bytes()));
    let png_b64 = b64.encode(&png);
    Ok(with_result(ctx, ACTION, &|w: &mut XmlWriter| {
        w.open("VirtualMFADevice")
            .leaf("SerialNumber", &device.serial)
            .leaf("Base32StringSeed", &seed_b64)
            .leaf("QRCodePNG", &png_b64)
            .close("VirtualMFADevice");
    }))
}

/// The parameters EnableMFADevice and ResyncMFADevice share.
struct TwoCodes {
    user_name: String,
    serial: String,
    codes: (TokenCode, TokenCode),
}

impl TwoCodes {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let user_name = checks.required("userName", params.get("UserName"));
        check_user_name(&mut checks, "userName", user_name);
        let serial = checks.required("serialNumber", params.get("SerialNumber"));
        check_serial(&mut checks, serial);
        let c1 = check_code(
            &mut checks,
            "authenticationCode1",
            params.get("AuthenticationCode1"),
        );
        let c2 = check_code(
            &mut checks,
            "authenticationCode2",
            params.get("AuthenticationCode2"),
        );
        checks.finish_with(|| {
            Some(Self {
                user_name: user_name?.to_owned(),
                serial: serial?.to_owned(),
                // Both passed the six-digit checks, so they parse.
                codes: (TokenCode::parse(c1?)?, TokenCode::parse(c2?)?),
            })
        })
    }
}

/// What a two-code call does once its device and target are known.
enum TwoCodeOp {
    Enable { max_devices: u32 },
    Resync,
}

/// A refused two-code call: what the client is told, and the audit log's reason when it is
/// more precise than the error's.
struct Refused {
    error: ApiError,
    reason: Option<&'static str>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            reason: None,
        }
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// Checks two codes under the device's lock-out and applies `op` in the same write: refused
/// while locked; a wrong pair stays counted as a failure; a refusal that never judged the codes
/// (quota, device in use…) gives the attempt back. Audited under `action` either way.
async fn two_code_call(
    ctx: &RequestCtx<'_>,
    action: &'static str,
    op: TwoCodeOp,
) -> Result<String, ApiError> {
    let input = TwoCodes::parse(ctx.params)?;
    let result = two_codes_checked(ctx, action, &input, op).await;
    let refused = result.as_ref().err();
    audit(
        ctx,
        &Audited {
            action,
            serial: Some(&input.serial),
            target_user: Some(&input.user_name),
            error: refused.map(|r| &r.error),
            reason: refused.and_then(|r| r.reason),
        },
    );
    result.map(|()| no_result(ctx, action)).map_err(|r| r.error)
}

/// EnableMFADevice's checks of an IAM user's call that do not depend on the device, made
/// before it is looked up so that their answers say nothing about which serials exist: a
/// long-term key alone may enable only an identity's first device, as deactivation needs MFA
/// too (`docs/mfa.md#who-may-enable-what`), and the identity's quota (only its own enabled
/// device is told apart, as in use).
async fn check_enable_caller(
    ctx: &RequestCtx<'_>,
    action: &str,
    target: &Principal,
    serial: &str,
    max_devices: u32,
) -> Result<(), ApiError> {
    if ctx.caller.principal.is_root() {
        return Ok(());
    }
    let owner = target.owner();
    let counted = owner.clone();
    let held = ctx.api.store.enabled_device_count(counted).await?;
    if held > 0 && !ctx.caller.mfa_present() {
        return Err(ApiError::explicit_deny(
            &ctx.caller.arn,
            action,
            &ctx.caller.arn,
        ));
    }
    if held >= i64::from(max_devices) {
        let own = ctx
            .index()
            .device(serial)
            .is_some_and(|d| d.assigned_to.as_ref() == Some(&owner));
        return Err(if own {
            StoreError::DeviceInUse
        } else {
            StoreError::DeviceQuota(max_devices)
        }
        .into());
    }
    Ok(())
}

async fn two_codes_checked(
    ctx: &RequestCtx<'_>,
    action: &str,
    input: &TwoCodes,
    op: TwoCodeOp,
) -> Result<(), Refused> {
    let target = mfa_target(ctx, action, Some(&input.user_name))?;
    if let TwoCodeOp::Enable { max_devices } = op {
        if target.is_root() {
            return Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)).into());
        }
        if is_u2f_arn(&input.serial) {
            return Err(ApiError::InvalidInput(FIDO_NOT_THROUGH_API.to_owned()).into());
        }
        check_enable_caller(ctx, action, &target, &input.serial, max_devices).await?;
    }
    let device = visible_device(ctx, &input.serial)?;
    if device.is_fido() {
        return Err(ApiError::InvalidInput(FIDO_NOT_THROUGH_API.to_owned()).into());
    }
    if let TwoCodeOp::Resync = op
        && device.assigned_to.as_ref() != Some(&target.owner())
    {
        // Only an enabled device is resynchronised; anything else is not counted as an attempt.
        return Err(no_such_device(&input.serial).into());
    }
    // An unassigned hardware token may be claimed by anyone: each caller's failures are its
    // own, and unless the operator bound the token to the caller, a refusal reads like an
    // unknown serial's, so guessing neither locks the holder out nor tells what was imported.
    let caller = ctx.caller.principal.owner();
    let (per_caller, hidden) = match (&device.kind, &device.assigned_to) {
        (DeviceKind::Hardware { bound_to, .. }, None) => {
            (true, bound_to.is_none() && !ctx.caller.principal.is_root())
        }
        _ => (false, false),
    };
    let key = if per_caller {
        AttemptKey::caller_at(&input.serial, caller.as_db())
    } else {
        AttemptKey::device(&input.serial)
    };
    let pair = CodePair {
        serial: input.serial.clone(),
        owner: target.owner(),
        codes: input.codes,
        window: ctx.api.config.mfa_resync_window,
    };
    let may_add_to_enabled = ctx.caller.principal.is_root() || ctx.caller.mfa_present();
    let store = &ctx.api.store;
    let verified = guard::verify(ctx.api.limiter.as_ref(), key, ctx.now, async || {
        let written = match op {
            TwoCodeOp::Enable { max_devices } => {
                let rules = EnableRules {
                    max_devices,
                    may_add_to_enabled,
                };
                store.enable_device(pair, rules).await.map(|_| ())
            }
            TwoCodeOp::Resync => store.resync_device(pair).await,
        };
        match written {
            Ok(()) => Verdict::Accepted(()),
            Err(StoreError::InvalidCodes) => Verdict::Refused(MfaRefusal::InvalidCodes),
            Err(e) => Verdict::Unjudged(e),
        }
    })
    .await;
    match verified {
        Ok(()) => Ok(()),
        Err(VerifyError::Refused(refusal)) => Err(Refused {
            error: if hidden {
                no_such_device(&input.serial)
            } else {
                ApiError::iam_mfa_refusal(refusal)
            },
            reason: Some(refusal.reason()),
        }),
        Err(VerifyError::Guard(e)) => Err(ApiError::from(e).into()),
        // Another device was enabled meanwhile; as checked before the attempt.
        Err(VerifyError::Unjudged(StoreError::MfaRequired)) => {
            Err(ApiError::explicit_deny(&ctx.caller.arn, action, &ctx.caller.arn).into())
        }
        Err(VerifyError::Unjudged(e)) => Err(e.into()),
    }
}

pub(super) async fn enable(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let max_devices = ctx.api.config.max_mfa_devices_per_user;
    two_code_call(ctx, "EnableMFADevice", TwoCodeOp::Enable { max_devices }).await
}

pub(super) async fn resync(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    two_code_call(ctx, "ResyncMFADevice", TwoCodeOp::Resync).await
}

/// A serial and, optionally, whose device it is.
struct DeviceRef {
    user_name: Option<String>,
    serial: String,
}

impl DeviceRef {
    fn parse(params: &Params, with_user: bool) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let user_name = params.get("UserName").filter(|_| with_user);
        check_user_name(&mut checks, "userName", user_name);
        let serial = checks.required("serialNumber", params.get("SerialNumber"));
        check_serial(&mut checks, serial);
        checks.finish_with(|| {
            Some(Self {
                user_name: user_name.map(str::to_owned),
                serial: serial?.to_owned(),
            })
        })
    }
}

pub(super) async fn deactivate(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    const ACTION: &str = "DeactivateMFADevice";
    let input = DeviceRef::parse(ctx.params, true)?;
    let result = async {
        let target = mfa_target(ctx, ACTION, input.user_name.as_deref())?;
        if target.is_root() {
            return Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)));
        }
        if !ctx.caller.principal.is_root() && !ctx.caller.mfa_present() {
            return Err(ApiError::explicit_deny(
                &ctx.caller.arn,
                ACTION,
                &ctx.caller.arn,
            ));
        }
        visible_device(ctx, &input.serial)?;
        let owner = target.owner();
        let serial = input.serial.clone();
        ctx.api
            .store
            .deactivate_device(serial, owner)
            .await
            .map(|_| ())
            .map_err(ApiError::from)
    }
    .await;
    audit(
        ctx,
        &Audited {
            action: ACTION,
            serial: Some(&input.serial),
            target_user: input.user_name.as_deref(),
            error: result.as_ref().err(),
            reason: None,
        },
    );
    result.map(|()| no_result(ctx, ACTION))
}

pub(super) async fn delete_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    const ACTION: &str = "DeleteVirtualMFADevice";
    let DeviceRef { serial, .. } = DeviceRef::parse(ctx.params, false)?;
    let result = async {
        visible_device(ctx, &serial)?;
        let s = serial.clone();
        ctx.api
            .store
            .delete_virtual_device(s)
            .await
            .map(|_| ())
            .map_err(ApiError::from)?;
        // The serial may name a new device later (same path and name, new seed): it must not
        // inherit this one's lock-out or last step, and a deleted device's entries must not
        // linger.
        ctx.api.limiter.forget(&serial).await?;
        ctx.api.replay.forget(&serial).await?;
        Ok(())
    }
    .await;
    audit(
        ctx,
        &Audited {
            action: ACTION,
            serial: Some(&serial),
            target_user: None,
            error: result.as_ref().err(),
            reason: None,
        },
    );
    result.map(|()| no_result(ctx, ACTION))
}

/// `UserName` of a device holder in listings; root has none.
fn holder_name(ctx: &RequestCtx<'_>, owner: &Owner) -> Option<String> {
    match owner {
        Owner::Root => None,
        Owner::User(id) => ctx.index().user(id).map(|u| u.name.clone()),
    }
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    paging(ctx.params, &mut checks)?;
    checks.finish()?;
    let target = resolve_target(ctx, "ListMFADevices", name)?;
    let owner = target.owner();
    let devices = ctx.api.store.list_assigned_devices(owner).await?;
    Ok(with_result(ctx, "ListMFADevices", &|w: &mut XmlWriter| {
        w.open("MFADevices");
        for d in &devices {
            w.open("member")
                .leaf_opt("UserName", target.user_name())
                .leaf("SerialNumber", &d.serial)
                .leaf_opt("EnableDate", d.enabled_at.map(|t| t.iso8601()).as_deref())
                .close("member");
        }
        w.close("MFADevices");
        write_truncation(w, None);
    }))
}

/// ListVirtualMFADevices's parameters.
struct ListVirtual {
    assignment: Assignment,
    page: PageRequest,
}

impl ListVirtual {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let status = params.get("AssignmentStatus").unwrap_or("Any");
        checks.one_of(
            "assignmentStatus",
            status,
            &["Assigned", "Unassigned", "Any"],
        );
        let page = paging(params, &mut checks)?;
        checks.finish()?;
        let assignment = match status {
            "Assigned" => Assignment::Assigned,
            "Unassigned" => Assignment::Unassigned,
            _ => Assignment::Any,
        };
        Ok(Self { assignment, page })
    }
}

pub(super) async fn list_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let ListVirtual { assignment, page } = ListVirtual::parse(ctx.params)?;
    let visible_to = match ctx.caller.principal {
        Principal::Root => None,
        Principal::User(_) => Some(ctx.caller.principal.owner()),
    };
    let page = ctx
        .api
        .store
        .list_virtual_devices(assignment, visible_to, page)
        .await?;
    let index = ctx.index();
    Ok(with_result(
        ctx,
        "ListVirtualMFADevices",
        &|w: &mut XmlWriter| {
            w.open("VirtualMFADevices");
            for d in &page.items {
                w.open("member").leaf("SerialNumber", &d.serial);
                match &d.assigned_to {
                    Some(Owner::User(id)) => {
                        if let Some(u) = index.user(id) {
                            write_principal(w, "User", &Principal::User(u), ctx);
                        }
                    }
                    Some(Owner::Root) => write_principal(w, "User", &Principal::Root, ctx),
                    None => {}
                }
                w.leaf_opt("EnableDate", d.enabled_at.map(|t| t.iso8601()).as_deref())
                    .close("member");
            }
            w.close("VirtualMFADevices");
            write_truncation(w, page.next_marker.as_deref());
        },
    ))
}

pub(super) fn get(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let input = DeviceRef::parse(ctx.params, true)?;
    let target = resolve_target(ctx, "GetMFADevice", input.user_name.as_deref())?;
    let device = visible_device(ctx, &input.serial)?;
    let owner = target.owner();
    if device.assigned_to.as_ref() != Some(&owner) {
        return Err(StoreError::NoSuchDevice(input.serial).into());
    }
    let user_name = holder_name(ctx, &owner);
    Ok(with_result(ctx, "GetMFADevice", &|w: &mut XmlWriter| {
        w.leaf_opt("UserName", user_name.as_deref())
            .leaf("SerialNumber", &device.serial)
            .leaf_opt(
                "EnableDate",
                device.enabled_at.map(|t| t.iso8601()).as_deref(),
            );
    }))
}
