//! CreateAccessKey, ListAccessKeys, UpdateAccessKey, DeleteAccessKey. An IAM user may manage its
//! own keys; root may manage anyone's.

use super::{Target, check_user_name, resolve_target, write_truncation};
use crate::app::RequestCtx;
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::validate::Checks;
use crate::protocol::xml::{XmlWriter, success_body};
use crate::store::ops;
use crate::time::UnixTime;

fn status_text(active: bool) -> &'static str {
    if active { "Active" } else { "Inactive" }
}

/// `AccessKeyId`: 16–128 word characters.
fn check_key_id(checks: &mut Checks, id: Option<&str>) {
    if let Some(id) = id {
        checks.length("accessKeyId", id, 16, 128);
        checks.pattern("accessKeyId", id, "[\\w]+", |c| {
            c.is_ascii_alphanumeric() || c == '_'
        });
    }
}

fn target(ctx: &RequestCtx<'_>, action: &str, checks: Checks) -> Result<Target, ApiError> {
    let name = ctx.params.get("UserName");
    let mut checks = checks;
    check_user_name(&mut checks, "userName", name);
    checks.finish()?;
    resolve_target(ctx, action, name)
}

pub(super) async fn create(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let target = target(ctx, "CreateAccessKey", Checks::new())?;
    let owner = target.owner();
    let key = ctx
        .state
        .store
        .write(None, move |w| ops::create_access_key(w, &owner))
        .await?;
    Ok(success_body(
        "CreateAccessKey",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("AccessKey")
                .leaf_opt("UserName", target.user_name())
                .leaf("AccessKeyId", &key.id)
                .leaf("Status", status_text(key.active))
                .leaf("SecretAccessKey", &key.secret)
                .leaf("CreateDate", &UnixTime::from_secs(key.created_at).iso8601())
                .close("AccessKey");
        }),
    ))
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let target = target(ctx, "ListAccessKeys", Checks::new())?;
    let owner = target.owner();
    let keys = ctx
        .state
        .store
        .write(None, move |w| ops::list_access_keys(w, &owner))
        .await?;
    Ok(success_body(
        "ListAccessKeys",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.leaf_opt("UserName", target.user_name());
            w.open("AccessKeyMetadata");
            for k in &keys {
                w.open("member")
                    .leaf_opt("UserName", target.user_name())
                    .leaf("AccessKeyId", &k.id)
                    .leaf("Status", status_text(k.active))
                    .leaf("CreateDate", &UnixTime::from_secs(k.created_at).iso8601())
                    .close("member");
            }
            w.close("AccessKeyMetadata");
            write_truncation(w, None);
        }),
    ))
}

pub(super) async fn update(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let id = checks.required("accessKeyId", ctx.params.get("AccessKeyId"));
    check_key_id(&mut checks, id);
    let status = checks.required("status", ctx.params.get("Status"));
    if let Some(s) = status {
        checks.one_of("status", s, &["Active", "Inactive"]);
    }
    let target = target(ctx, "UpdateAccessKey", checks)?;
    let owner = target.owner();
    let id = id.unwrap_or_default().to_owned();
    let active = status == Some("Active");
    ctx.state
        .store
        .write(None, move |w| {
            ops::update_access_key(w, &owner, &id, active)
        })
        .await?;
    Ok(success_body(
        "UpdateAccessKey",
        Service::Iam.namespace(),
        ctx.request_id,
        None,
    ))
}

pub(super) async fn delete(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let id = checks.required("accessKeyId", ctx.params.get("AccessKeyId"));
    check_key_id(&mut checks, id);
    let target = target(ctx, "DeleteAccessKey", checks)?;
    let owner = target.owner();
    let id = id.unwrap_or_default().to_owned();
    ctx.state
        .store
        .write(None, move |w| ops::delete_access_key(w, &owner, &id))
        .await?;
    Ok(success_body(
        "DeleteAccessKey",
        Service::Iam.namespace(),
        ctx.request_id,
        None,
    ))
}
