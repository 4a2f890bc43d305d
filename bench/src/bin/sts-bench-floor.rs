//! `sts-bench-floor`: the benchmark's floor, the least an HTTP/1.1 server on hyper can do per
//! request. It reads the whole body and answers a fixed XML document the size of the broker's
//! typical reply, with the same headers, and checks nothing.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Parser)]
#[command(
    name = "sts-bench-floor",
    about = "Fixed-response hyper server (BENCHMARKS.md)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Size of the response body, bytes (the broker's GetSessionToken reply by default).
    #[arg(long, default_value_t = 1127)]
    body_bytes: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// A GetSessionToken-shaped document padded to `size` bytes inside its session token.
fn body(size: usize) -> Bytes {
    let head = "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetSessionTokenResult>\n    <Credentials>\n      <AccessKeyId>ASIAFLOORFLOORFLOOR0</AccessKeyId>\n      <SecretAccessKey>floorfloorfloorfloorfloorfloorfloorfloor</SecretAccessKey>\n      <SessionToken>";
    let tail = "</SessionToken>\n      <Expiration>2030-01-01T00:00:00Z</Expiration>\n    </Credentials>\n  </GetSessionTokenResult>\n  <ResponseMetadata>\n    <RequestId>00000000-0000-4000-8000-000000000000</RequestId>\n  </ResponseMetadata>\n</GetSessionTokenResponse>\n";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(size);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    Bytes::from(s)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sts-bench-floor: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sts-bench-floor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", cli.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let fixed = body(cli.body_bytes);
    println!(
        "sts-bench-floor listening on http://{addr} ({} byte body)",
        fixed.len()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let fixed = fixed.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let fixed = fixed.clone();
                async move {
                    // Read the body, as any real handler must.
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/xml")
                            .header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
                            .body(Full::new(fixed))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
