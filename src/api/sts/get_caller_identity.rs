//! GetCallerIdentity: who signed this request. Needs no permission; session credentials report
//! the user (or root) that obtained them (`docs/sts-wire-contract.md#getcalleridentity`).

use std::sync::LazyLock;

use crate::api::RequestCtx;
use crate::protocol::Service;
use crate::protocol::xml::LeafBody;

/// The caller's Arn, UserId and Account, in the order live STS uses
/// (`docs/sts-wire-contract.md#getcalleridentity`). The most frequent answer of all, so its
/// constant text is rendered once.
static BODY: LazyLock<LeafBody<3>> = LazyLock::new(|| {
    LeafBody::new(
        "GetCallerIdentity",
        Service::Sts.namespace(),
        ["Arn", "UserId", "Account"],
    )
});

/// Renders the caller's identity.
pub(super) fn handle(ctx: &RequestCtx<'_>) -> String {
    let caller = &ctx.caller;
    BODY.render(
        [&caller.arn, caller.user_id(), &caller.account_id],
        ctx.request_id,
    )
}
