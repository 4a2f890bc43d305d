//! GetCallerIdentity: who signed this request. Needs no permission; session credentials report
//! the user (or root) that obtained them (`docs/sts-wire-contract.md#getcalleridentity`).

use crate::api::RequestCtx;
use crate::protocol::Service;
use crate::protocol::xml::{XmlWriter, success_body};

/// Renders the caller's Arn, UserId and Account, in the order live STS uses
/// (`docs/sts-wire-contract.md#getcalleridentity`).
pub(super) fn handle(ctx: &RequestCtx<'_>) -> String {
    let caller = &ctx.caller;
    success_body(
        "GetCallerIdentity",
        Service::Sts.namespace(),
        ctx.request_id,
        Some(&|w: &mut XmlWriter| {
            w.leaf("Arn", &caller.arn)
                .leaf("UserId", caller.user_id())
                .leaf("Account", &caller.account_id);
        }),
    )
}
