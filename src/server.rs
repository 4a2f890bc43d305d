//! The listener: accept loop, optional TLS (rustls), HTTP/1.1 and HTTP/2 with limits, and
//! graceful shutdown. It knows nothing of what it serves: a [`Handler`] answers requests.
//!
//! No client can hold the server by holding connections open. At most `max_connections` are
//! served at once: the accept loop takes a slot before it accepts, so a full server leaves new
//! connections in the kernel's listen backlog, in arrival order, and takes no file descriptor
//! for them. Each connection then has deadlines that only requests satisfy, not bytes:
//! - from accept to its first request's headers (`first_request_timeout_secs`), over the TLS
//!   handshake, hyper-util's protocol sniff and the headers, which hyper's own header-read
//!   timeout does not cover (it starts after the sniff); missed, the connection is cut;
//! - between requests (`idle_timeout_secs`), for HTTP/1.1 keep-alive and for HTTP/2, which has
//!   no idle timeout of its own (its PINGs only detect dead peers); missed, the connection is
//!   closed gracefully (HTTP/2: GOAWAY), and cut if it is still open a second later.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// How long connections may take to finish after shutdown starts.
const DRAIN_SECS: u64 = 10;
/// Connections the kernel queues while every slot is taken (it caps this at
/// `net.core.somaxconn`). Queued, a client is served in its turn once a slot frees; past the
/// queue its SYNs are dropped and it retries after a second or more. `TcpListener::bind`'s 128
/// would be full after a few dozen silent connections.
const LISTEN_BACKLOG: u32 = 1024;
/// Streams a client may have open at once on one HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Interval of the HTTP/2 PINGs that detect a dead peer while a request is in progress.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Open-file descriptors kept back from connections: a quarter of the limit plus this many,
/// for the store (the writer's database, `-wal` and `-shm` files, and a reader connection per
/// listing in progress), the audit log, the listener, the runtime's own and the TLS files.
const RESERVED_FILES: u64 = 32;
/// Ceiling of the derived connection cap: past it, memory (each connection's buffers and
/// task) rather than file descriptors is what a flood of connections would exhaust.
const MAX_DERIVED_CONNECTIONS: usize = 16_384;
/// Time a closing connection with no request in progress is left to finish closing (to take
/// its last response, or for HTTP/2 the GOAWAY's PING round trip) before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Least interval between two "connection cap reached" warnings.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

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
    first_request_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
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
            first_request_timeout: Duration::from_secs(cfg.first_request_timeout_secs),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
            max_connections: cfg
                .max_connections
                .unwrap_or_else(|| connections_for(open_file_limit())),
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
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(H2_KEEP_ALIVE));
        builder
    }
}

/// The soft open-file limit of this process (`sts-broker serve` raises it to the hard limit at
/// start); `None` when unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The default connection cap for an open-file limit: what is left once the descriptors the
/// rest of the broker needs are kept back, at least 1 and at most
/// [`MAX_DERIVED_CONNECTIONS`].
fn connections_for(open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return MAX_DERIVED_CONNECTIONS;
    };
    let spare = limit.saturating_sub(RESERVED_FILES.saturating_add(limit / 4));
    usize::try_from(spare)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_DERIVED_CONNECTIONS)
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

/// Binds `addr` with a listen backlog of [`LISTEN_BACKLOG`].
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted broker can bind again at once.
        #[cfg(not(windows))]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ServeError::Bind { addr, source })
}

/// What every connection of one listener shares.
struct Shared<H> {
    handler: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    settings: ServerSettings,
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown`
/// completes; then lets open requests finish (up to 10 s).
pub(crate) async fn run<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = settings.max_connections.min(Semaphore::MAX_PERMITS);
    tracing::info!(max_connections, "serving connections");
    // A slot is taken before accepting rather than after: a full server then leaves new
    // connections queued in the backlog, served in order as slots free up, instead of
    // accepting them only to close them (which would still cost a descriptor each, and turn
    // every legitimate client away while the flood lasts).
    let slots = Arc::new(Semaphore::new(max_connections));
    let shared = Arc::new(Shared {
        handler,
        builder: settings.http_builder(),
        settings,
    });
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full: Option<Instant> = None;
    loop {
        while connections.try_join_next().is_some() {}
        if slots.available_permits() == 0
            && warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
        {
            tracing::warn!(
                max_connections,
                "connection cap reached: new connections wait until one closes"
            );
            warned_full = Some(Instant::now());
        }
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            Arc::clone(&shared),
            stream,
            remote,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(DRAIN_SECS), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {DRAIN_SECS} s; closing");
        connections.shutdown().await;
    }
}

/// One accepted connection, holding its `_slot` until it closes: the TLS handshake, if any,
/// then the HTTP exchange, all under the first-request deadline.
async fn connection<H: Handler>(
    shared: Arc<Shared<H>>,
    stream: TcpStream,
    remote: SocketAddr,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let first_request_by = Instant::now() + shared.settings.first_request_timeout;
    let Some(acceptor) = shared.settings.tls.clone() else {
        return exchange(&shared, stream, remote, first_request_by, stopping).await;
    };
    let handshake = tokio::select! {
        handshake = tokio::time::timeout_at(first_request_by, acceptor.accept(stream)) => handshake,
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    match handshake {
        Ok(Ok(tls)) => exchange(&shared, tls, remote, first_request_by, stopping).await,
        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%remote, "connection cut: no request before its deadline"),
    }
}

/// What a connection's requests have done so far, which decides its next deadline.
#[derive(Clone, Copy, Debug)]
struct Tally {
    /// Requests whose headers have arrived.
    requests: u64,
    /// Of those, the ones not yet answered (their response body not yet all sent).
    busy: usize,
    /// When `busy` last fell to 0.
    idle_since: Instant,
}

/// A connection's time limits.
#[derive(Clone, Copy, Debug)]
struct Deadlines {
    /// When it is cut if no request's headers have arrived.
    first_request_by: Instant,
    /// How long it may wait for its next request.
    idle_timeout: Duration,
    /// How long a request in progress may still take once the connection is closing.
    request_timeout: Duration,
}

/// What happens next to a connection, unless a request starts or ends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// It is cut at that instant.
    Cut(Instant),
    /// It is asked to close at that instant (HTTP/1.1: closed; HTTP/2: a GOAWAY).
    Close(Instant),
    /// Nothing: a request is in progress, under the request timeout.
    Wait,
}

impl Tally {
    /// The next step for a connection, `closing` since an instant or not.
    fn next(&self, limits: &Deadlines, closing: Option<Instant>) -> Next {
        match closing {
            // A request in progress gets its time; then, as for an idle connection, the
            // client has a moment to take its response and the close (HTTP/2: a PING round
            // trip and the final GOAWAY) before the connection is cut.
            Some(since) if self.busy > 0 => Next::Cut(since + limits.request_timeout),
            Some(since) => Next::Cut(since.max(self.idle_since) + CLOSE_GRACE),
            None if self.requests == 0 => Next::Cut(limits.first_request_by),
            None if self.busy > 0 => Next::Wait,
            None => Next::Close(self.idle_since + limits.idle_timeout),
        }
    }
}

/// A connection's [`Tally`], kept by its requests and read by its deadline loop.
///
/// Requests do not wake the loop while the connection is open: that would cost two extra
/// polls of the whole connection per request. The loop instead sleeps to the earlier of its
/// deadline and `idle_timeout` from now, and looks again: until the connection closes, what
/// requests do only moves its deadline later, except that a connection falling idle closes
/// `idle_timeout` after its last request ends, which is never sooner than `idle_timeout` after
/// the loop last looked. Once it is closing, the end of a request can bring its cut closer, so
/// every end then wakes the loop.
struct Activity {
    tally: Mutex<Tally>,
    /// Set by the loop when the connection starts closing.
    closing: AtomicBool,
    /// A request ended while the connection was closing.
    ended: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            tally: Mutex::new(Tally {
                requests: 0,
                busy: 0,
                idle_since: now,
            }),
            closing: AtomicBool::new(false),
            ended: Notify::new(),
        }
    }

    /// The tally as it is now. A poisoned lock (a panic while it was held, which the plain
    /// counter updates under it cannot cause) still holds a usable tally.
    fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A request in progress on a connection, from its headers until its response is sent (or
/// abandoned): while one is, the connection is not idle.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.update(|t| {
            t.requests = t.requests.saturating_add(1);
            t.busy = t.busy.saturating_add(1);
        });
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|t| {
            t.busy = t.busy.saturating_sub(1);
            if t.busy == 0 {
                t.idle_since = Instant::now();
            }
        });
        // After the update (both SeqCst with the loop's store and its read of the tally):
        // either the loop sees this end in the tally, or this sees `closing` and wakes it.
        if self.0.closing.load(Ordering::SeqCst) {
            self.0.ended.notify_one();
        }
    }
}

/// A response body that keeps its request [`Busy`] until it is dropped; otherwise the body
/// itself, size hint included (hyper frames HTTP/1.1 by it).
struct BusyBody<B> {
    body: Pin<Box<B>>,
    _busy: Busy,
}

impl<B: hyper::body::Body> hyper::body::Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Sleeps until `at`, or forever.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves HTTP on `io` until the client closes it, a deadline closes it, or shutdown.
async fn exchange<H, I>(
    shared: &Shared<H>,
    io: I,
    remote: SocketAddr,
    first_request_by: Instant,
    mut stopping: watch::Receiver<bool>,
) where
    H: Handler,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(Instant::now()));
    let request_timeout = shared.settings.request_timeout;
    let service = {
        let handler = Arc::clone(&shared.handler);
        let activity = Arc::clone(&activity);
        service_fn(move |req: Request<Incoming>| {
            // hyper calls the service once a request's headers are in: that is what lifts the
            // first-request deadline and stops the idle clock.
            let busy = Busy::start(&activity);
            let handler = Arc::clone(&handler);
            async move {
                // The handler's future (the API's is over 2 KB) is moved into the box once;
                // unboxed, it would be copied whole each time hyper and the timeout move the
                // futures that hold it, several times a request.
                let handling = Box::pin(handler.handle(req, remote));
                let resp = match tokio::time::timeout(request_timeout, handling).await {
                    Ok(resp) => resp,
                    Err(_) => handler.timeout_response(),
                };
                // The request stays busy until hyper drops its body, sent or abandoned, so the
                // idle clock of a streamed response starts at its end.
                Ok::<_, Infallible>(resp.map(|body| BusyBody {
                    body: Box::pin(body),
                    _busy: busy,
                }))
            }
        })
    };
    let conn = shared.builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let limits = Deadlines {
        first_request_by,
        idle_timeout: shared.settings.idle_timeout,
        request_timeout,
    };
    // Since when the connection has been asked to close.
    let mut closing: Option<Instant> = None;
    loop {
        let looked = Instant::now();
        let next = activity.tally().next(&limits, closing);
        let at = match next {
            Next::Cut(at) | Next::Close(at) => Some(at),
            Next::Wait => None,
        };
        // Open, the loop looks again by `idle_timeout` from now at the latest (see `Activity`);
        // closing, it is woken by every request's end.
        let wake = match closing {
            Some(_) => at,
            None => {
                let again = looked + limits.idle_timeout;
                Some(at.map_or(again, |at| at.min(again)))
            }
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.ended.notified(), if closing.is_some() => {}
            () = until(wake) => {
                // Requests may have moved the deadline since the loop looked: only the one of
                // the tally as it is now acts, once it has passed; otherwise, look again.
                let now = Instant::now();
                match activity.tally().next(&limits, closing) {
                    Next::Cut(at) if at <= now => {
                        tracing::debug!(%remote, "connection cut at its deadline");
                        return;
                    }
                    Next::Close(at) if at <= now => {
                        tracing::debug!(%remote, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        activity.closing.store(true, Ordering::SeqCst);
                    }
                    Next::Cut(_) | Next::Close(_) | Next::Wait => {}
                }
            }
            _ = stopping.wait_for(|stop| *stop), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
                activity.closing.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_keeps_descriptors_back() {
        // The common soft default, and the test's 128 of tests/it/hostile_connections.rs.
        assert_eq!(connections_for(Some(1024)), 1024 - 32 - 256);
        assert_eq!(connections_for(Some(128)), 64);
        assert_eq!(connections_for(Some(64)), 16);
        assert_eq!(connections_for(Some(40)), 1);
        assert_eq!(connections_for(Some(0)), 1);
        assert_eq!(connections_for(Some(1 << 20)), MAX_DERIVED_CONNECTIONS);
        assert_eq!(connections_for(Some(u64::MAX)), MAX_DERIVED_CONNECTIONS);
        assert_eq!(connections_for(None), MAX_DERIVED_CONNECTIONS);
    }

    #[test]
    fn only_requests_move_a_connections_deadline() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        let limits = Deadlines {
            first_request_by: secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(20),
        };
        let mut tally = Tally {
            requests: 0,
            busy: 0,
            idle_since: start,
        };
        assert_eq!(tally.next(&limits, None), Next::Cut(secs(10)));
        tally.requests = 1;
        tally.busy = 1;
        assert_eq!(tally.next(&limits, None), Next::Wait);
        tally.busy = 0;
        tally.idle_since = secs(3);
        assert_eq!(tally.next(&limits, None), Next::Close(secs(63)));
        // Closing since 70 s: cut a moment later, or once the request in progress had its time.
        assert_eq!(tally.next(&limits, Some(secs(70))), Next::Cut(secs(71)));
        tally.busy = 1;
        assert_eq!(tally.next(&limits, Some(secs(70))), Next::Cut(secs(90)));
        tally.busy = 0;
        tally.idle_since = secs(75);
        assert_eq!(tally.next(&limits, Some(secs(70))), Next::Cut(secs(76)));
    }

    #[tokio::test]
    async fn a_busy_request_counts_until_it_is_dropped() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let a = Busy::start(&activity);
        let b = Busy::start(&activity);
        let c = Busy::start(&activity);
        assert_eq!((activity.tally().requests, activity.tally().busy), (3, 3));
        drop(a);
        assert_eq!(activity.tally().busy, 2);
        // Open, an end wakes nobody: the loop looks again on its own.
        let woken = || tokio::time::timeout(Duration::ZERO, activity.ended.notified());
        assert!(woken().await.is_err());
        // Closing, every end wakes the loop (a permit waits for it if it is not waiting yet).
        activity.closing.store(true, Ordering::SeqCst);
        drop(b);
        assert!(woken().await.is_ok());
        assert_eq!(activity.tally().busy, 1);
        let before = Instant::now();
        drop(c);
        assert!(woken().await.is_ok());
        assert_eq!(activity.tally().busy, 0);
        assert!(activity.tally().idle_since >= before);
        assert_eq!(activity.tally().requests, 3);
    }
}
