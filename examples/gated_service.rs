//! A small axum service that admits only MFA-backed session credentials the broker issued,
//! checked in the service itself by `sts_broker::MfaLayer`: one line on the router.
//!
//! ```sh
//! cargo run --release --example gated_service -- --data-dir "$STS_BROKER_DATA_DIR" \
//!     --listen 127.0.0.1:9100 --max-mfa-age 3600
//! ```
//!
//! Then `GET /hello`, signed for `execute-api` (as `examples/sdk_client.rs` does), answers
//! with the caller's ARN and the age of its MFA authentication; anything else gets the gate's
//! 403 (or 400) JSON error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use sts_broker::{Clock as _, MfaLayer, SystemClock, VerifiedCaller, Verifier, VerifyPolicy};

async fn hello(Extension(caller): Extension<VerifiedCaller>) -> String {
    let age = caller
        .mfa_age_secs(SystemClock.now())
        .map_or_else(|| "no MFA".to_owned(), |s| format!("MFA {s} s ago"));
    format!("hello {} ({age})\n", caller.arn)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let data_dir = arg(&args, "--data-dir")
        .or_else(|| std::env::var("STS_BROKER_DATA_DIR").ok())
        .map(PathBuf::from)
        .ok_or("--data-dir DIR (or STS_BROKER_DATA_DIR) is required")?;
    let listen: SocketAddr = arg(&args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned())
        .parse()?;
    let max_age = arg(&args, "--max-mfa-age").map(|s| s.parse()).transpose()?;

    // Follows the broker's data dir read-only: no call to the broker per request, and a key
    // deactivated there stops working here within the poll interval.
    let verifier = Verifier::follow_data_dir(&data_dir, Duration::from_millis(500))?;
    let policy = VerifyPolicy {
        require_mfa: true,
        max_mfa_age_secs: max_age,
        ..VerifyPolicy::new("execute-api")
    };
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(MfaLayer::new(verifier, policy));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "gated_service listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
