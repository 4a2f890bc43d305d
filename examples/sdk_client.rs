//! aws-sdk-rust against sts-broker: MFA session credentials from GetSessionToken, then a call
//! to an API that only admits them (behind `sts-broker gate`, or `examples/gated_service.rs`),
//! signed for `execute-api` with `aws-sigv4`, as API Gateway's IAM authorization expects.
//!
//! Environment:
//! - `STS_ENDPOINT`: the broker, e.g. `http://127.0.0.1:8080`
//! - `GATED_URL`: the protected API, e.g. `http://127.0.0.1:9100/hello`
//! - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: a long-term key of the user
//! - `MFA_SERIAL`, `MFA_CODE`: the user's MFA device and a fresh code
//!
//! ```sh
//! cargo run --release --example sdk_client
//! ```

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let long_term = Credentials::new(
        env("AWS_ACCESS_KEY_ID")?,
        env("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "example",
    );
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(env("STS_ENDPOINT")?)
            .credentials_provider(long_term)
            .build(),
    );
    let session = sts
        .get_session_token()
        .serial_number(env("MFA_SERIAL")?)
        .token_code(env("MFA_CODE")?)
        .duration_seconds(3600)
        .send()
        .await?
        .credentials
        .ok_or("GetSessionToken returned no credentials")?;
    println!("MFA session {}", session.access_key_id);

    // Sign `GET GATED_URL` for execute-api with the session credentials (token included).
    let url = env("GATED_URL")?;
    let identity = Credentials::new(
        session.access_key_id,
        session.secret_access_key,
        Some(session.session_token),
        None,
        "sts-broker",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut request = http::Request::get(&url).body(Full::new(Bytes::new()))?;
    instructions.apply_to_request_http1x(&mut request);

    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("{status}\n{}", String::from_utf8_lossy(&body));
    if !status.is_success() {
        return Err(format!("the gated service answered {status}").into());
    }
    Ok(())
}
