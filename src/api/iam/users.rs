//! CreateUser, GetUser, ListUsers, DeleteUser.

use super::{
    PathChars, check_path, check_user_name, paging, require_root, resolve_target, with_result,
    write_principal, write_truncation, write_user,
};
use crate::api::RequestCtx;
use crate::protocol::error::ApiError;
use crate::protocol::params::Params;
use crate::protocol::validate::{Checks, is_name_char};
use crate::protocol::xml::XmlWriter;
use crate::store::queries::PageRequest;

/// CreateUser's parameters.
struct CreateUser {
    name: String,
    path: String,
}

impl CreateUser {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let name = checks.required("userName", params.get("UserName"));
        if let Some(n) = name {
            checks.length("userName", n, 1, 64);
            checks.pattern("userName", n, "[\\w+=,.@-]+", is_name_char);
        }
        let path = params.get("Path").unwrap_or("/");
        check_path(&mut checks, "path", path, PathChars::UpTo7E);
        checks.finish_with(|| {
            Some(Self {
                name: name?.to_owned(),
                path: path.to_owned(),
            })
        })
    }
}

pub(super) async fn create(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let CreateUser { name, path } = CreateUser::parse(ctx.params)?;
    require_root(
        ctx,
        "CreateUser",
        &format!("arn:aws:iam::{}:user{path}{name}", ctx.account()),
    )?;
    let user = ctx.api.store.create_user(name, path).await?;
    let account = ctx.account();
    Ok(with_result(ctx, "CreateUser", &|w: &mut XmlWriter| {
        write_user(w, "User", &user, account);
    }))
}

pub(super) fn get(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    checks.finish()?;
    let target = resolve_target(ctx, "GetUser", name)?;
    Ok(with_result(ctx, "GetUser", &|w: &mut XmlWriter| {
        write_principal(w, "User", &target, ctx);
    }))
}

/// ListUsers's parameters.
struct ListUsers {
    path_prefix: String,
    page: PageRequest,
}

impl ListUsers {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let mut checks = Checks::new();
        let prefix = params.get("PathPrefix").unwrap_or("/");
        checks.length("pathPrefix", prefix, 1, 512);
        checks.pattern("pathPrefix", prefix, "\\u002F[\\u0021-\\u007F]*", |c| {
            ('\u{21}'..='\u{7f}').contains(&c)
        });
        let page = paging(params, &mut checks)?;
        checks.finish()?;
        Ok(Self {
            path_prefix: prefix.to_owned(),
            page,
        })
    }
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let ListUsers { path_prefix, page } = ListUsers::parse(ctx.params)?;
    require_root(
        ctx,
        "ListUsers",
        &format!("arn:aws:iam::{}:user/", ctx.account()),
    )?;
    let page = ctx.api.store.list_users(path_prefix, page).await?;
    let account = ctx.account();
    Ok(with_result(ctx, "ListUsers", &|w: &mut XmlWriter| {
        w.open("Users");
        for user in &page.items {
            write_user(w, "member", user, account);
        }
        w.close("Users");
        write_truncation(w, page.next_marker.as_deref());
    }))
}

pub(super) async fn delete(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = checks.required("userName", ctx.params.get("UserName"));
    check_user_name(&mut checks, "userName", name);
    let name = checks.finish_with(|| Some(name?.to_owned()))?;
    require_root(ctx, "DeleteUser", &super::user_arn_for(ctx, &name))?;
    ctx.api.store.delete_user(name).await?;
    Ok(super::no_result(ctx, "DeleteUser"))
}
