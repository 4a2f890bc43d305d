//! The listener: accept loop, optional TLS (rustls), HTTP/1.1 and HTTP/2 with limits and a
//! header-read timeout (hyper's needs a timer, or it is silently off), a per-request timeout,
//! and graceful shutdown. It knows nothing of what it serves: a [`Handler`] answers requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

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

/// What answers the requests of a connection.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The body of its responses (a whole XML document, or a stream relayed from elsewhere).
    type Body: hyper::body::Body<Data = Bytes, Error = Self::BodyError> + Send + 'static;
    /// What reading that body can fail with.
    type BodyError: Into<Box<dyn std::error::Error + Send + Sync>>;

    /// Answers one request from `remote`; never fails (failures are error responses).
    fn handle(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;

    /// The answer to a request that took longer than the request timeout.
    fn timeout_response(&self) -> Response<Self::Body>;
}

/// Connection-level settings, from the configuration.
#[derive(Clone)]
pub(crate) struct ServerSettings {
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_header_bytes: usize,
}

impl ServerSettings {
    /// Loads the TLS material of `cfg` and checks that plain HTTP is allowed where it would
    /// be used (`listen` is where the listener is, or will be, bound).
    pub(crate) fn from_config(cfg: &Config, listen: SocketAddr) -> Result<Self, ServeError> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
            _ => None,
        };
        if tls.is_none() && !listen.ip().is_loopback() && !cfg.insecure_http {
            return Err(ServeError::InsecureListen(listen));
        }
        Ok(Self {
            tls,
            header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
            request_timeout: Duration::from_secs(cfg.request_timeout_secs),
            max_header_bytes: cfg.max_header_bytes,
        })
    }

    /// Whether connections speak TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper refuses buffers under 8 KiB; the application checks the exact header limit and
        // answers in AWS's shape, hyper's (and h2's) own limit is the backstop, for both
        // protocols.
        let buf = (self.max_header_bytes.saturating_mul(2)).max(8192);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(buf);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        builder
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

/// Binds `addr`.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown`
/// completes; then lets open requests finish (up to 10 s).
pub(crate) async fn run<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let builder = settings.http_builder();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = Arc::clone(&handler);
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let timeout = settings.request_timeout;
                    match settings.tls.clone() {
                        Some(acceptor) => {
                            let handshake_timeout = settings.header_read_timeout;
                            tokio::spawn(async move {
                                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(io)) => serve(handler, builder, watcher, io, remote, timeout).await,
                                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                                }
                            });
                        }
                        None => {
                            tokio::spawn(serve(handler, builder, watcher, stream, remote, timeout));
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
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

async fn serve<H, I>(
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    remote: SocketAddr,
    request_timeout: Duration,
) where
    H: Handler,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        async move {
            let resp =
                match tokio::time::timeout(request_timeout, handler.handle(req, remote)).await {
                    Ok(resp) => resp,
                    Err(_) => handler.timeout_response(),
                };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
