//! The virtual-MFA calls the seed names: CreateVirtualMFADevice, EnableMFADevice (two
//! consecutive codes), ResyncMFADevice, DeactivateMFADevice, DeleteVirtualMFADevice,
//! ListMFADevices, ListVirtualMFADevices, GetMFADevice.
//!
//! Rules beyond AWS's API shapes (seed and issue text): FIDO keys and the root user's devices
//! cannot be enabled through the API; an IAM user sees and manages only the devices it created
//! or holds; deactivating one's own device needs MFA-backed session credentials; code attempts
//! on a registered device count towards its lock-out like GetSessionToken's.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;

use super::{
    PathChars, Target, audit, check_path, check_user_name, paging, resolve_target, write_root_user,
    write_truncation, write_user,
};
use crate::app::RequestCtx;
use crate::auth::Principal;
use crate::mfa::totp::TokenCode;
use crate::mfa::{base32, is_u2f_arn, qr};
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::validate::{Checks, is_name_char, is_serial_char};
use crate::protocol::xml::{XmlWriter, success_body};
use crate::store::StoreError;
use crate::store::model::{Device, DeviceKind, Owner};
use crate::store::ops::{self, Assignment, CodeCheck};
use crate::time::UnixTime;

/// Refusal of EnableMFADevice for the account root user (seed: console only).
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

/// The device, if the caller may see it: root sees all; a user sees devices assigned to it and
/// unassigned devices it created (or unassigned hardware tokens, which it may physically hold).
fn visible_device(ctx: &RequestCtx<'_>, serial: &str) -> Result<Arc<Device>, ApiError> {
    let index = ctx.state.index()?;
    let me = ctx.caller.owner();
    index
        .device(serial)
        .filter(|d| match (&ctx.caller.principal, &d.assigned_to) {
            (Principal::Root, _) => true,
            (Principal::User(_), Some(holder)) => *holder == me,
            (Principal::User(_), None) => match &d.creator {
                Some(creator) => *creator == me,
                None => d.kind == DeviceKind::Hardware,
            },
        })
        .ok_or_else(|| StoreError::NoSuchDevice(serial.to_owned()).into())
}

/// The identity an MFA call is about; `root` is refused by name (console only).
fn mfa_target(ctx: &RequestCtx<'_>, action: &str, name: Option<&str>) -> Result<Target, ApiError> {
    match resolve_target(ctx, action, name) {
        Err(ApiError::NoSuchEntity(_))
            if matches!(ctx.caller.principal, Principal::Root)
                && name.is_some_and(|n| n.eq_ignore_ascii_case("root")) =>
        {
            Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)))
        }
        other => other,
    }
}

/// Runs a two-code write under the device's lock-out: refused while locked; the attempt counts
/// as a failure from the start (so concurrent attempts cannot slip past a lock while the write
/// is queued), a good pair clears the count, and a refusal that never judged the codes (quota,
/// device in use…) takes the attempt back.
async fn with_codes<T: Send + 'static>(
    ctx: &RequestCtx<'_>,
    serial: &str,
    op: impl FnOnce(&mut crate::store::writer::WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let throttle = &ctx.state.throttle;
    if throttle.begin_attempt(serial, ctx.now).is_err() {
        return Err(ApiError::InvalidAuthenticationCode);
    }
    match ctx.state.store.write(None, op).await {
        Ok(v) => {
            throttle.record_success(serial);
            Ok(v)
        }
        Err(StoreError::InvalidCodes) => Err(ApiError::InvalidAuthenticationCode),
        Err(e) => {
            throttle.cancel_attempt(serial);
            Err(e.into())
        }
    }
}

fn no_result(action: &str, ctx: &RequestCtx<'_>) -> String {
    success_body(action, Service::Iam.namespace(), ctx.request_id, None)
}

pub(super) async fn create_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = checks.required(
        "virtualMFADeviceName",
        ctx.params.get("VirtualMFADeviceName"),
    );
    if let Some(n) = name {
        checks.length("virtualMFADeviceName", n, 1, 226);
        checks.pattern("virtualMFADeviceName", n, "[\\w+=,.@-]+", is_name_char);
    }
    let path = ctx.params.get("Path").unwrap_or("/");
    check_path(&mut checks, "path", path, PathChars::UpTo7F);
    checks.finish()?;
    let name = name.unwrap_or_default().to_owned();
    let creator = ctx.caller.owner();
    let (n, p) = (name.clone(), path.to_owned());
    let result = ctx
        .state
        .store
        .write(None, move |w| {
            ops::create_virtual_device(w, &n, &p, &creator)
        })
        .await
        .map_err(ApiError::from);
    let device = match result {
        Ok(d) => d,
        Err(e) => {
            audit(ctx, "CreateVirtualMFADevice", None, None, Err(&e));
            return Err(e);
        }
    };
    audit(
        ctx,
        "CreateVirtualMFADevice",
        Some(&device.serial),
        None,
        Ok(()),
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed_b32 = zeroize::Zeroizing::new(base32::encode(&device.seed));
    let uri = zeroize::Zeroizing::new(qr::otpauth_uri(
        &ctx.state.config.mfa_issuer,
        &format!("{name}@{}", ctx.account()),
        &seed_b32,
    ));
    let png = qr::qr_png(&uri).map_err(|e| {
        tracing::error!(error = %e, "QR code generation failed");
        ApiError::InternalFailure
    })?;
    let seed_b64 = zeroize::Zeroizing::new(b64.encode(seed_b32.as_bytes()));
    let png_b64 = b64.encode(&png);
    Ok(success_body(
        "CreateVirtualMFADevice",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("VirtualMFADevice")
                .leaf("SerialNumber", &device.serial)
                .leaf("Base32StringSeed", &seed_b64)
                .leaf("QRCodePNG", &png_b64)
                .close("VirtualMFADevice");
        }),
    ))
}

/// The parameters EnableMFADevice and ResyncMFADevice share.
struct TwoCodeRequest<'a> {
    user_name: Option<&'a str>,
    serial: &'a str,
    codes: (TokenCode, TokenCode),
}

fn parse_two_code_request<'a>(ctx: &RequestCtx<'a>) -> Result<TwoCodeRequest<'a>, ApiError> {
    let params = ctx.params;
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
    checks.finish()?;
    // Both passed the six-digit checks, so they parse.
    let codes = c1
        .and_then(TokenCode::parse)
        .zip(c2.and_then(TokenCode::parse))
        .ok_or(ApiError::InvalidAuthenticationCode)?;
    Ok(TwoCodeRequest {
        user_name,
        serial: serial.unwrap_or_default(),
        codes,
    })
}

/// Parses a two-code request, runs `checked` on it, audits the outcome under `action`.
async fn audited_two_code_action(
    ctx: &RequestCtx<'_>,
    action: &str,
    checked: impl AsyncFnOnce(&TwoCodeRequest<'_>) -> Result<(), ApiError>,
) -> Result<String, ApiError> {
    let req = parse_two_code_request(ctx)?;
    let result = checked(&req).await;
    audit(
        ctx,
        action,
        Some(req.serial),
        req.user_name,
        result.as_ref().map(|_| ()),
    );
    result.map(|()| no_result(action, ctx))
}

pub(super) async fn enable(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    audited_two_code_action(ctx, "EnableMFADevice", async |req| {
        enable_checked(ctx, req).await
    })
    .await
}

async fn enable_checked(ctx: &RequestCtx<'_>, req: &TwoCodeRequest<'_>) -> Result<(), ApiError> {
    let target = mfa_target(ctx, "EnableMFADevice", req.user_name)?;
    if matches!(target, Target::Root) {
        return Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)));
    }
    if is_u2f_arn(req.serial) {
        return Err(ApiError::InvalidInput(ops::fido_api_refusal()));
    }
    let device = visible_device(ctx, req.serial)?;
    if device.kind == DeviceKind::Fido {
        return Err(ApiError::InvalidInput(ops::fido_api_refusal()));
    }
    let (owner, codes) = (target.owner(), req.codes);
    let check = CodeCheck {
        window: ctx.state.config.mfa_resync_window,
    };
    let max = ctx.state.config.max_mfa_devices_per_user;
    let s = req.serial.to_owned();
    with_codes(ctx, req.serial, move |w| {
        ops::enable_device(w, &s, &owner, codes, check, max).map(|_| ())
    })
    .await
}

pub(super) async fn resync(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    audited_two_code_action(ctx, "ResyncMFADevice", async |req| {
        resync_checked(ctx, req).await
    })
    .await
}

async fn resync_checked(ctx: &RequestCtx<'_>, req: &TwoCodeRequest<'_>) -> Result<(), ApiError> {
    let target = mfa_target(ctx, "ResyncMFADevice", req.user_name)?;
    let device = visible_device(ctx, req.serial)?;
    if device.kind == DeviceKind::Fido {
        return Err(ApiError::InvalidInput(ops::fido_api_refusal()));
    }
    let (owner, codes) = (target.owner(), req.codes);
    let check = CodeCheck {
        window: ctx.state.config.mfa_resync_window,
    };
    let s = req.serial.to_owned();
    with_codes(ctx, req.serial, move |w| {
        ops::resync_device(w, &s, &owner, codes, check)
    })
    .await
}

pub(super) async fn deactivate(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    let serial = checks.required("serialNumber", ctx.params.get("SerialNumber"));
    check_serial(&mut checks, serial);
    checks.finish()?;
    let serial = serial.unwrap_or_default();
    let result = async {
        let target = mfa_target(ctx, "DeactivateMFADevice", name)?;
        if matches!(target, Target::Root) {
            return Err(ApiError::AccessDenied(Cow::Borrowed(ROOT_CONSOLE_ONLY)));
        }
        if matches!(ctx.caller.principal, Principal::User(_)) && !ctx.caller.has_mfa() {
            // As the usual "deny unless MultiFactorAuthPresent" policy would answer.
            return Err(ApiError::AccessDenied(Cow::Owned(format!(
                "User: {} is not authorized to perform: iam:DeactivateMFADevice on resource: {} with an explicit deny in an identity-based policy",
                ctx.caller_arn, ctx.caller_arn
            ))));
        }
        visible_device(ctx, serial)?;
        let owner = target.owner();
        let s = serial.to_owned();
        ctx.state
            .store
            .write(None, move |w| ops::deactivate_device(w, &s, &owner).map(|_| ()))
            .await
            .map_err(ApiError::from)
    }
    .await;
    audit(
        ctx,
        "DeactivateMFADevice",
        Some(serial),
        name,
        result.as_ref().map(|_| ()),
    );
    result.map(|()| no_result("DeactivateMFADevice", ctx))
}

pub(super) async fn delete_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let serial = checks.required("serialNumber", ctx.params.get("SerialNumber"));
    check_serial(&mut checks, serial);
    checks.finish()?;
    let serial = serial.unwrap_or_default();
    let result = async {
        visible_device(ctx, serial)?;
        let s = serial.to_owned();
        ctx.state
            .store
            .write(None, move |w| ops::delete_virtual_device(w, &s).map(|_| ()))
            .await
            .map_err(ApiError::from)?;
        // The serial may name a new device later (same path and name, new seed): it must not
        // inherit this one's lock-out, and a deleted device's entry must not linger.
        ctx.state.throttle.forget(serial);
        Ok(())
    }
    .await;
    audit(
        ctx,
        "DeleteVirtualMFADevice",
        Some(serial),
        None,
        result.as_ref().map(|_| ()),
    );
    result.map(|()| no_result("DeleteVirtualMFADevice", ctx))
}

/// `UserName` of a device holder in listings; root has none.
fn holder_name(ctx: &RequestCtx<'_>, owner: &Owner) -> Option<String> {
    match owner {
        Owner::Root => None,
        Owner::User(id) => ctx
            .state
            .store
            .index()
            .and_then(|i| i.user(id))
            .map(|u| u.name.clone()),
    }
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    paging(ctx, &mut checks)?;
    checks.finish()?;
    let target = resolve_target(ctx, "ListMFADevices", name)?;
    let owner = target.owner();
    let devices = ctx
        .state
        .store
        .write(None, move |w| ops::list_assigned_devices(w, &owner))
        .await?;
    Ok(success_body(
        "ListMFADevices",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("MFADevices");
            for d in &devices {
                w.open("member")
                    .leaf_opt("UserName", target.user_name())
                    .leaf("SerialNumber", &d.serial)
                    .leaf_opt(
                        "EnableDate",
                        d.enabled_at
                            .map(|t| UnixTime::from_secs(t).iso8601())
                            .as_deref(),
                    )
                    .close("member");
            }
            w.close("MFADevices");
            write_truncation(w, None);
        }),
    ))
}

pub(super) async fn list_virtual(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let status = ctx.params.get("AssignmentStatus").unwrap_or("Any");
    checks.one_of(
        "assignmentStatus",
        status,
        &["Assigned", "Unassigned", "Any"],
    );
    let (max, marker) = paging(ctx, &mut checks)?;
    checks.finish()?;
    let assignment = match status {
        "Assigned" => Assignment::Assigned,
        "Unassigned" => Assignment::Unassigned,
        _ => Assignment::Any,
    };
    let visible_to = match ctx.caller.principal {
        Principal::Root => None,
        Principal::User(_) => Some(ctx.caller.owner()),
    };
    let page = ctx
        .state
        .store
        .write(None, move |w| {
            ops::list_virtual_devices(w, assignment, visible_to.as_ref(), marker.as_deref(), max)
        })
        .await?;
    let account = ctx.account();
    let index = ctx.state.index()?;
    Ok(success_body(
        "ListVirtualMFADevices",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("VirtualMFADevices");
            for d in &page.items {
                w.open("member").leaf("SerialNumber", &d.serial);
                match &d.assigned_to {
                    Some(Owner::User(id)) => {
                        if let Some(u) = index.user(id) {
                            write_user(w, "User", &u, account);
                        }
                    }
                    Some(Owner::Root) => write_root_user(w, ctx),
                    None => {}
                }
                w.leaf_opt(
                    "EnableDate",
                    d.enabled_at
                        .map(|t| UnixTime::from_secs(t).iso8601())
                        .as_deref(),
                )
                .close("member");
            }
            w.close("VirtualMFADevices");
            write_truncation(w, page.next_marker.as_deref());
        }),
    ))
}

pub(super) fn get(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    let serial = checks.required("serialNumber", ctx.params.get("SerialNumber"));
    check_serial(&mut checks, serial);
    checks.finish()?;
    let serial = serial.unwrap_or_default();
    let target = resolve_target(ctx, "GetMFADevice", name)?;
    let device = visible_device(ctx, serial)?;
    let owner = target.owner();
    if device.assigned_to.as_ref() != Some(&owner) {
        return Err(StoreError::NoSuchDevice(serial.to_owned()).into());
    }
    let user_name = holder_name(ctx, &owner);
    Ok(success_body(
        "GetMFADevice",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.leaf_opt("UserName", user_name.as_deref())
                .leaf("SerialNumber", &device.serial)
                .leaf_opt(
                    "EnableDate",
                    device
                        .enabled_at
                        .map(|t| UnixTime::from_secs(t).iso8601())
                        .as_deref(),
                );
        }),
    ))
}
