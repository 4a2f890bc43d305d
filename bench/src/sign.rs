//! Requests signed with the `aws-sigv4` crate (the SDKs' signer) and laid out as the bytes an
//! HTTP/1.1 client sends, so that the timed window only writes them.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;

/// Where requests go, and what they are signed for.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `host:port` as the `Host` header carries it.
    pub(crate) authority: String,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// The request path.
    pub(crate) path: String,
    /// The SigV4 service name (`sts`; another for a gateway in front of another service).
    pub(crate) service: String,
    /// The SigV4 region.
    pub(crate) region: String,
}

impl Target {
    /// Parses `http://host:port[/path]`.
    pub(crate) fn new(url: &str, service: &str, region: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        Ok(Self {
            authority: authority.to_owned(),
            addr,
            path: path.to_owned(),
            service: service.to_owned(),
            region: region.to_owned(),
        })
    }
}

/// Credentials to sign with.
pub(crate) struct Signer<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) session_token: Option<&'a str>,
}

/// A signed POST: its headers (in order) and its form body.
pub(crate) struct Signed {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

impl Signer<'_> {
    /// Signs a POST of `body` to `target` at `time`.
    pub(crate) fn sign(
        &self,
        target: &Target,
        body: String,
        time: SystemTime,
    ) -> Result<Signed, String> {
        let identity: Identity = Credentials::new(
            self.access_key_id,
            self.secret,
            self.session_token.map(str::to_owned),
            None,
            "sts-bench",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&target.region)
            .name(&target.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let mut headers = vec![
            ("host".to_owned(), target.authority.clone()),
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
        ];
        let uri = format!("http://{}{}", target.authority, target.path);
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| format!("signable request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let (signed_headers, _) = instructions.into_parts();
        for h in signed_headers {
            headers.push((h.name().to_ascii_lowercase(), h.value().to_owned()));
        }
        Ok(Signed { headers, body })
    }
}

impl Signed {
    /// The request as an HTTP/1.1 client writes it (keep-alive is HTTP/1.1's default).
    pub(crate) fn to_wire(&self, path: &str) -> Bytes {
        let mut out = Vec::with_capacity(256 + self.body.len() + 64 * self.headers.len());
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(self.body.as_bytes());
        Bytes::from(out)
    }
}

/// The Query-protocol bodies of the workloads (botocore's parameter order and encoding).
pub(crate) mod body {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    /// RFC 3986 unreserved characters stay; everything else is percent-encoded.
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');

    /// GetSessionToken without MFA.
    pub(crate) fn get_session_token() -> String {
        "Action=GetSessionToken&Version=2011-06-15".to_owned()
    }

    /// GetSessionToken with a device serial and its code.
    pub(crate) fn get_session_token_mfa(serial: &str, code: u32) -> String {
        format!(
            "Action=GetSessionToken&Version=2011-06-15&SerialNumber={}&TokenCode={code:06}",
            utf8_percent_encode(serial, QUERY)
        )
    }

    /// GetCallerIdentity.
    pub(crate) fn get_caller_identity() -> String {
        "Action=GetCallerIdentity&Version=2011-06-15".to_owned()
    }
}
