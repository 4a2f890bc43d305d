//! STS actions (`Version=2011-06-15`). One file per action: parse → apply → render.

mod get_caller_identity;
mod get_session_token;

use super::RequestCtx;
use crate::protocol::Service;
use crate::protocol::error::ApiError;

/// Runs an STS action; returns the XML body.
pub(super) async fn dispatch(ctx: &RequestCtx<'_>, action: &str) -> Result<String, ApiError> {
    match action {
        "GetCallerIdentity" => Ok(get_caller_identity::handle(ctx)),
        "GetSessionToken" => Box::pin(get_session_token::handle(ctx)).await,
        _ => Err(ApiError::InvalidAction {
            action: action.to_owned(),
            version: Service::Sts.version().to_owned(),
        }),
    }
}
