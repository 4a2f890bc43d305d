//! IAM actions (`Version=2010-05-08`): the subset that manages users, access keys and MFA
//! devices with the AWS CLI. Root may do everything; an IAM user manages only its own keys and
//! devices (`docs/iam-mfa-api.md`). Session credentials reach IAM only when they carry MFA
//! (`docs/sts-wire-contract.md#session-credential-limits`).

mod access_keys;
mod mfa_devices;
mod users;

use std::sync::Arc;

use super::RequestCtx;
use crate::audit::{AuditEvent, Outcome};
use crate::model::{Principal, User};
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::params::Params;
use crate::protocol::validate::{Checks, is_name_char, parse_int};
use crate::protocol::xml::{XmlWriter, success_body};
use crate::store::StoreError;
use crate::store::queries::PageRequest;

/// Runs an IAM action; returns the XML body.
pub(super) async fn dispatch(ctx: &RequestCtx<'_>, action: &str) -> Result<String, ApiError> {
    // GetSessionToken credentials without MFA cannot call IAM at all
    // (`docs/sts-wire-contract.md#session-credential-limits`).
    if ctx.caller.session.is_some() && !ctx.caller.mfa_present() {
        return Err(ApiError::InvalidClientTokenId);
    }
    match action {
        "CreateUser" => users::create(ctx).await,
        "GetUser" => users::get(ctx),
        "ListUsers" => users::list(ctx).await,
        "DeleteUser" => users::delete(ctx).await,
        "CreateAccessKey" => access_keys::create(ctx).await,
        "ListAccessKeys" => access_keys::list(ctx).await,
        "UpdateAccessKey" => access_keys::update(ctx).await,
        "DeleteAccessKey" => access_keys::delete(ctx).await,
        "CreateVirtualMFADevice" => mfa_devices::create_virtual(ctx).await,
        "EnableMFADevice" => mfa_devices::enable(ctx).await,
        "ResyncMFADevice" => mfa_devices::resync(ctx).await,
        "DeactivateMFADevice" => mfa_devices::deactivate(ctx).await,
        "DeleteVirtualMFADevice" => mfa_devices::delete_virtual(ctx).await,
        "ListMFADevices" => mfa_devices::list(ctx).await,
        "ListVirtualMFADevices" => mfa_devices::list_virtual(ctx).await,
        "GetMFADevice" => mfa_devices::get(ctx),
        _ => Err(ApiError::InvalidAction {
            action: action.to_owned(),
            version: Service::Iam.version().to_owned(),
        }),
    }
}

/// `arn:aws:iam::ACCOUNT:user/NAME` for error texts about a user the caller may not see.
fn user_arn_for(ctx: &RequestCtx<'_>, name: &str) -> String {
    format!("arn:aws:iam::{}:user/{name}", ctx.account())
}

/// Refuses IAM users: only root may call `action` on `resource`.
fn require_root(ctx: &RequestCtx<'_>, action: &str, resource: &str) -> Result<(), ApiError> {
    match ctx.caller.principal {
        Principal::Root => Ok(()),
        Principal::User(_) => Err(ApiError::not_authorized(&ctx.caller.arn, action, resource)),
    }
}

/// The identity named by `UserName`, or the caller when it is absent. An IAM user may only name
/// itself; root may name any user (NoSuchEntity when there is none).
fn resolve_target(
    ctx: &RequestCtx<'_>,
    action: &str,
    user_name: Option<&str>,
) -> Result<Principal, ApiError> {
    match (&ctx.caller.principal, user_name) {
        (Principal::Root, None) => Ok(Principal::Root),
        (Principal::User(me), None) => Ok(Principal::User(Arc::clone(me))),
        (Principal::User(me), Some(name)) => {
            if me.name.eq_ignore_ascii_case(name) {
                Ok(Principal::User(Arc::clone(me)))
            } else {
                Err(ApiError::not_authorized(
                    &ctx.caller.arn,
                    action,
                    &user_arn_for(ctx, name),
                ))
            }
        }
        (Principal::Root, Some(name)) => ctx
            .index()
            .user_by_name(name)
            .map(Principal::User)
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()).into()),
    }
}

/// Checks an existing-user `UserName` parameter (1–128, `[\w+=,.@-]+`).
fn check_user_name(checks: &mut Checks, member: &str, name: Option<&str>) {
    if let Some(n) = name {
        checks.length(member, n, 1, 128);
        checks.pattern(member, n, "[\\w+=,.@-]+", is_name_char);
    }
}

/// The characters IAM allows inside a path: user paths end at `~`, MFA device paths at DEL, as
/// the IAM model's patterns say.
#[derive(Clone, Copy, Debug)]
enum PathChars {
    /// `\u0021-\u007E`.
    UpTo7E,
    /// `\u0021-\u007F`.
    UpTo7F,
}

/// `Path`: `/` or `/…/` of printable ASCII, up to 512 characters.
fn check_path(checks: &mut Checks, member: &str, path: &str, chars: PathChars) {
    checks.length(member, path, 1, 512);
    let (max, pattern) = match chars {
        PathChars::UpTo7E => (0x7e, "(\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"),
        PathChars::UpTo7F => (0x7f, "(\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)"),
    };
    let ok = path == "/"
        || (path.len() >= 2
            && path.starts_with('/')
            && path.ends_with('/')
            && path.bytes().all(|b| (0x21..=max).contains(&b)));
    if !ok {
        checks.pattern(member, path, pattern, |_| false);
    }
}

/// `MaxItems` (1–1000, default 100) and `Marker` (1–320).
fn paging(params: &Params, checks: &mut Checks) -> Result<PageRequest, ApiError> {
    let max = params.get("MaxItems").map(parse_int).transpose()?;
    if let Some(m) = max {
        checks.range("maxItems", m, 1, 1000);
    }
    let marker = params.get("Marker");
    if let Some(m) = marker {
        checks.length("marker", m, 1, 320);
    }
    Ok(PageRequest {
        max_items: usize::try_from(max.unwrap_or(100).clamp(1, 1000)).unwrap_or(100),
        marker: marker.map(str::to_owned),
    })
}

/// An IAM answer without a result element.
fn no_result(ctx: &RequestCtx<'_>, action: &str) -> String {
    success_body(action, Service::Iam.namespace(), ctx.request_id, None)
}

/// An IAM answer with a result element written by `write`.
fn with_result(ctx: &RequestCtx<'_>, action: &str, write: &dyn Fn(&mut XmlWriter)) -> String {
    success_body(
        action,
        Service::Iam.namespace(),
        ctx.request_id,
        Some(write),
    )
}

/// Writes a `User` structure.
fn write_user(w: &mut XmlWriter, tag: &str, user: &User, account: &str) {
    w.open(tag)
        .leaf("Path", &user.path)
        .leaf("UserName", &user.name)
        .leaf("UserId", &user.id)
        .leaf("Arn", &user.arn(account))
        .leaf("CreateDate", &user.created_at.iso8601())
        .close(tag);
}

/// Writes the `User` structure of a principal. The account root user has no name or path, so
/// AWS reports its id (the account id), ARN and creation date only.
fn write_principal(w: &mut XmlWriter, tag: &str, principal: &Principal, ctx: &RequestCtx<'_>) {
    let account = ctx.account();
    match principal {
        Principal::User(user) => write_user(w, tag, user, account),
        Principal::Root => {
            w.open(tag)
                .leaf("UserId", account)
                .leaf("Arn", &principal.arn(account))
                .leaf("CreateDate", &ctx.api.store.account_created_at().iso8601())
                .close(tag);
        }
    }
}

/// Writes `IsTruncated` and, when truncated, `Marker`.
fn write_truncation(w: &mut XmlWriter, next_marker: Option<&str>) {
    w.leaf(
        "IsTruncated",
        if next_marker.is_some() {
            "true"
        } else {
            "false"
        },
    )
    .leaf_opt("Marker", next_marker);
}

/// What an audited IAM change was about.
struct Audited<'a> {
    action: &'a str,
    serial: Option<&'a str>,
    target_user: Option<&'a str>,
    /// Why it was refused, when it was.
    error: Option<&'a ApiError>,
    /// The audit log's reason, when more precise than the error's (a lock-out answered as a
    /// wrong code, or as an unknown serial).
    reason: Option<&'a str>,
}

/// An audit record of an IAM change by this request.
fn audit(ctx: &RequestCtx<'_>, what: &Audited<'_>) {
    let outcome = if what.error.is_none() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let mut e = AuditEvent::new(ctx.now, ctx.request_id, ctx.account(), what.action, outcome);
    e.principal = Some(&ctx.caller.arn);
    e.access_key_id = Some(&ctx.caller.access_key_id);
    e.serial = what.serial;
    e.target_user = what.target_user;
    e.source_ip = Some(ctx.source_ip);
    e.mfa_authenticated = Some(ctx.caller.mfa_present());
    if let Some(err) = what.error {
        e.error_code = Some(err.code());
        e.reason = Some(what.reason.unwrap_or_else(|| failure_reason(err)));
    }
    ctx.api.store.audit(e.to_line());
}

/// Why an audited IAM change was refused, as a short machine-readable word.
fn failure_reason(err: &ApiError) -> &'static str {
    match err {
        ApiError::InvalidAuthenticationCode => "invalid_codes",
        ApiError::NoSuchEntity(_) => "no_such_entity",
        ApiError::EntityAlreadyExists(_) => "already_exists",
        ApiError::DeleteConflict(_) => "delete_conflict",
        ApiError::LimitExceeded(_) => "limit_exceeded",
        ApiError::AccessDenied(_) => "access_denied",
        ApiError::InvalidInput(_) => "invalid_input",
        ApiError::ValidationError(_) => "validation_error",
        _ => "internal_failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/", "/a/", "/a/b/"] {
            let mut c = Checks::new();
            check_path(&mut c, "path", ok, PathChars::UpTo7E);
            assert!(c.finish().is_ok(), "{ok}");
        }
        for bad in ["a", "/a", "a/", "/a b/", ""] {
            let mut c = Checks::new();
            check_path(&mut c, "path", bad, PathChars::UpTo7E);
            assert!(c.finish().is_err(), "{bad}");
        }
    }
}
