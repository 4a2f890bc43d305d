//! CreateUser, GetUser, ListUsers, DeleteUser.

use super::{
    PathChars, Target, check_path, check_user_name, paging, require_root, resolve_target,
    write_root_user, write_truncation, write_user,
};
use crate::app::RequestCtx;
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::validate::{Checks, is_name_char};
use crate::protocol::xml::{XmlWriter, success_body};
use crate::store::ops;

pub(super) async fn create(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = checks.required("userName", ctx.params.get("UserName"));
    if let Some(n) = name {
        checks.length("userName", n, 1, 64);
        checks.pattern("userName", n, "[\\w+=,.@-]+", is_name_char);
    }
    let path = ctx.params.get("Path").unwrap_or("/");
    check_path(&mut checks, "path", path, PathChars::UpTo7E);
    checks.finish()?;
    let name = name.unwrap_or_default().to_owned();
    require_root(
        ctx,
        "CreateUser",
        &format!("arn:aws:iam::{}:user{path}{name}", ctx.account()),
    )?;
    let path = path.to_owned();
    let user = ctx
        .state
        .store
        .write(None, move |w| ops::create_user(w, &name, &path))
        .await?;
    let account = ctx.account();
    Ok(success_body(
        "CreateUser",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| write_user(w, "User", &user, account)),
    ))
}

pub(super) fn get(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = ctx.params.get("UserName");
    check_user_name(&mut checks, "userName", name);
    checks.finish()?;
    let target = resolve_target(ctx, "GetUser", name)?;
    let account = ctx.account();
    Ok(success_body(
        "GetUser",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| match &target {
            Target::User(user) => write_user(w, "User", user, account),
            Target::Root => write_root_user(w, ctx),
        }),
    ))
}

pub(super) async fn list(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let prefix = ctx.params.get("PathPrefix").unwrap_or("/");
    checks.length("pathPrefix", prefix, 1, 512);
    checks.pattern("pathPrefix", prefix, "\\u002F[\\u0021-\\u007F]*", |c| {
        ('\u{21}'..='\u{7f}').contains(&c)
    });
    let (max, marker) = paging(ctx, &mut checks)?;
    checks.finish()?;
    require_root(
        ctx,
        "ListUsers",
        &format!("arn:aws:iam::{}:user/", ctx.account()),
    )?;
    let prefix = prefix.to_owned();
    let page = ctx
        .state
        .store
        .write(None, move |w| {
            ops::list_users(w, &prefix, marker.as_deref(), max)
        })
        .await?;
    let account = ctx.account();
    Ok(success_body(
        "ListUsers",
        Service::Iam.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.open("Users");
            for user in &page.items {
                write_user(w, "member", user, account);
            }
            w.close("Users");
            write_truncation(w, page.next_marker.as_deref());
        }),
    ))
}

pub(super) async fn delete(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let mut checks = Checks::new();
    let name = checks.required("userName", ctx.params.get("UserName"));
    check_user_name(&mut checks, "userName", name);
    checks.finish()?;
    let name = name.unwrap_or_default().to_owned();
    require_root(ctx, "DeleteUser", &super::user_arn_for(ctx, &name))?;
    ctx.state
        .store
        .write(None, move |w| ops::delete_user(w, &name))
        .await?;
    Ok(success_body(
        "DeleteUser",
        Service::Iam.namespace(),
        ctx.request_id,
        None,
    ))
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
