//! GetCallerIdentity: who signed this request. Needs no permission; session credentials report
//! the user (or root) that obtained them (contract §2).

use crate::app::RequestCtx;
use crate::protocol::Service;
use crate::protocol::error::ApiError;
use crate::protocol::xml::{XmlWriter, success_body};

/// Renders the caller's Arn, UserId and Account, in the order live STS uses.
pub fn handle(ctx: &RequestCtx<'_>) -> Result<String, ApiError> {
    let account = ctx.account();
    let arn = &ctx.caller_arn;
    let user_id = ctx.caller.user_id(account);
    Ok(success_body(
        "GetCallerIdentity",
        Service::Sts.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.leaf("Arn", arn)
                .leaf("UserId", user_id)
                .leaf("Account", account);
        }),
    ))
}
