//! CreateAccessKey, ListAccessKeys, UpdateAccessKey, DeleteAccessKey. An IAM user may manage its
//! own keys; root may manage anyone's.

use super::{check_user_name, no_result, resolve_target, with_result, write_truncation};
use crate::api::RequestCtx;
use crate::model::Principal;
use crate::protocol::error::ApiError;
use crate::protocol::validate::Checks;
use crate::protocol::xml::XmlWriter;

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

/// Checks the optional `UserName` and resolves whose keys the call is about.
fn target(ctx: &RequestCtx<'_>, action: &str) -> Result<Principal, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    checks.finish()?;
    resolve_target(ctx, action, name)
}

pub(super) async fn create(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let target = target(ctx, "CreateAccessKey")?;
    let owner = target.owner();
    let key = ctx.api.store.create_access_key(owner).await?;
    Ok(with_result(ctx, "CreateAccessKey", &|w: &mut XmlWriter| {
        w.open("AccessKey")
            .leaf_opt("UserName", target.user_name())
            .leaf("AccessKeyId", &key.id)
            .leaf("Status", status_text(key.active))
            .leaf("SecretAccessKey", &key.secret)
            .leaf("CreateDate", &key.created_at.iso8601())
            .close("AccessKey");
    }))
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let target = target(ctx, "ListAccessKeys")?;
    let owner = target.owner();
    let keys = ctx.api.store.list_access_keys(owner).await?;
    Ok(with_result(ctx, "ListAccessKeys", &|w: &mut XmlWriter| {
        w.leaf_opt("UserName", target.user_name());
        w.open("AccessKeyMetadata");
        for k in &keys {
            w.open("member")
                .leaf_opt("UserName", target.user_name())
                .leaf("AccessKeyId", &k.id)
                .leaf("Status", status_text(k.active))
                .leaf("CreateDate", &k.created_at.iso8601())
                .close("member");
        }
        w.close("AccessKeyMetadata");
        write_truncation(w, None);
    }))
}

pub(super) async fn update(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let id = checks.required("accessKeyId", ctx.params.get("AccessKeyId"));
    check_key_id(&mut checks, id);
    let status = checks.required("status", ctx.params.get("Status"));
    if let Some(s) = status {
        checks.one_of("status", s, &["Active", "Inactive"]);
    }
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    let (id, active) = checks.finish_with(|| Some((id?.to_owned(), status? == "Active")))?;
    let owner = resolve_target(ctx, "UpdateAccessKey", name)?.owner();
    ctx.api.store.update_access_key(owner, id, active).await?;
    Ok(no_result(ctx, "UpdateAccessKey"))
}

pub(super) async fn delete(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let id = checks.required("accessKeyId", ctx.params.get("AccessKeyId"));
    check_key_id(&mut checks, id);
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    let id = checks.finish_with(|| Some(id?.to_owned()))?;
    let owner = resolve_target(ctx, "DeleteAccessKey", name)?.owner();
    ctx.api.store.delete_access_key(owner, id).await?;
    Ok(no_result(ctx, "DeleteAccessKey"))
}
