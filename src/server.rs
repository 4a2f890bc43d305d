//! The listener: accept loop, optional TLS (rustls), HTTP/1.1 and HTTP/2 with limits and a
//! header-read timeout (hyper's needs a timer, or it is silently off), a per-request timeout,
//! and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::app::{self, AppState};
use crate::ids;
use crate::protocol::Service;
use crate::protocol::error::ApiError;

/// How long connections may take to finish after shutdown starts.
const DRAIN_SECS: u64 = 10;

/// Why the listener could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP beyond loopback was not explicitly allowed.
    #[error(
        "refusing to listen on {0} without TLS: configure tls_cert/tls_key, or pass --insecure-http"
    )]
    InsecureListen(SocketAddr),
    /// The certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
}

/// A broker that is accepting connections.
pub struct Listening {
    /// The bound address (useful with port 0).
    pub local_addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// Stops accepting, lets open requests finish (up to 10 s), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Loads a rustls server config from PEM files.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the configured address and serves until [`Listening::shutdown`].
pub async fn listen(state: Arc<AppState>) -> Result<Listening, ServeError> {
    let cfg = &state.config;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        _ => None,
    };
    if tls.is_none() && !cfg.listen.ip().is_loopback() && !cfg.insecure_http {
        return Err(ServeError::InsecureListen(cfg.listen));
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (shutdown, rx) = watch::channel(false);
    let has_tls = tls.is_some();
    let task = tokio::spawn(accept_loop(state, listener, tls, rx));
    Ok(Listening {
        local_addr,
        tls: has_tls,
        shutdown,
        task,
    })
}

fn http_builder(state: &AppState) -> auto::Builder<TokioExecutor> {
    let cfg = &state.config;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper refuses buffers under 8 KiB; the application checks the exact header limit and
    // answers in AWS's shape, hyper's (and h2's) own limit is the backstop, for both protocols.
    let buf = (cfg.max_header_bytes.saturating_mul(2)).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs))
        .max_buf_size(buf);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

async fn accept_loop(
    state: Arc<AppState>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = http_builder(&state);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    match tls.clone() {
                        Some(acceptor) => {
                            let handshake_timeout = Duration::from_secs(state.config.header_read_timeout_secs);
                            tokio::spawn(async move {
                                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(io)) => serve(state, builder, watcher, io, remote).await,
                                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                                }
                            });
                        }
                        None => {
                            tokio::spawn(serve(state, builder, watcher, stream, remote));
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(DRAIN_SECS)) => {
            tracing::warn!("connections still open after {DRAIN_SECS} s; closing");
        }
    }
}

async fn serve<I>(
    state: Arc<AppState>,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    remote: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let limit = Duration::from_secs(state.config.request_timeout_secs);
            let resp = match tokio::time::timeout(limit, app::handle(&state, req, remote)).await {
                Ok(resp) => resp,
                Err(_) => {
                    let mut resp = app::error_response(
                        &ApiError::RequestTimeout,
                        &ids::request_id(),
                        Service::Sts,
                    );
                    app::set_date(&mut resp, state.clock.now());
                    resp
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
