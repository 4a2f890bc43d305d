//! What a handler sees of one authenticated request.

use std::net::IpAddr;

use super::Api;
use crate::protocol::params::Params;
use crate::store::Index;
use crate::time::UnixTime;
use crate::verifier::VerifiedCaller;

/// An authenticated request, as handlers see it.
pub(crate) struct RequestCtx<'a> {
    /// The broker's shared state.
    pub(crate) api: &'a Api,
    /// Who is calling.
    pub(crate) caller: VerifiedCaller,
    /// The Query parameters.
    pub(crate) params: &'a Params,
    /// This request's id.
    pub(crate) request_id: &'a str,
    /// The client's address.
    pub(crate) source_ip: IpAddr,
    /// The time the request is judged at.
    pub(crate) now: UnixTime,
}

impl RequestCtx<'_> {
    /// The account id.
    pub(crate) fn account(&self) -> &str {
        &self.caller.account_id
    }

    /// The identities.
    pub(crate) fn index(&self) -> &Index {
        &self.api.index
    }
}
