//! A real HTTP service on loopback for a gate (or nginx) to forward to: it records every
//! request it receives (headers, body digest and length, whether the body arrived whole) and
//! answers `201` with a header and a body of its own (or, for `GET /download/N`, `200` with N
//! bytes), so that a test can check both directions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};

/// Bodies up to this size are kept whole for byte-for-byte comparisons; larger ones only hashed.
const KEPT_BODY: usize = 1 << 20;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub target: String,
    /// Names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
    /// The body, when at most 1 MiB.
    pub body: Option<Vec<u8>>,
    /// The body ended normally (not cut off by the sender).
    pub complete: bool,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header whose name starts with `prefix`.
    pub(crate) fn headers_starting(&self, prefix: &str) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// How the upstream behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Answer `201` once the body has arrived.
    Answer,
    /// Read the request, then never answer.
    NeverAnswer,
}

/// A recording upstream on `127.0.0.1:0`.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The header the upstream adds to its answers.
pub(crate) const UPSTREAM_HEADER: &str = "x-upstream-answer";

impl Upstream {
    pub(crate) async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move { answer(req, &record, behaviour).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    record: &Mutex<Vec<Seen>>,
    behaviour: Behaviour,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    let mut len = 0u64;
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    hasher.update(&data);
                    len += data.len() as u64;
                    if kept.len() + data.len() <= KEPT_BODY {
                        kept.extend_from_slice(&data);
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let seen = Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: len,
        body_sha256: hex::encode(hasher.finalize()),
        body: (len as usize <= KEPT_BODY).then_some(kept),
        complete,
    };
    let text = format!(
        "received {} bytes, sha256 {}",
        seen.body_len, seen.body_sha256
    );
    record.lock().unwrap().push(seen);
    if behaviour == Behaviour::NeverAnswer {
        std::future::pending::<()>().await;
    }
    // `GET /download/N` answers N bytes of a fixed pattern, for a response streamed back.
    if let Some(n) = parts.uri.path().strip_prefix("/download/") {
        let n: usize = n.parse().unwrap();
        let body: Vec<u8> = (0..n).map(download_byte).collect();
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = hyper::StatusCode::CREATED;
    resp.headers_mut()
        .insert(UPSTREAM_HEADER, "from-the-upstream".parse().unwrap());
    Ok(resp)
}

/// Byte `i` of a `/download/N` answer.
pub(crate) fn download_byte(i: usize) -> u8 {
    (i % 253) as u8
}

/// A loopback address nothing listens on.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}
