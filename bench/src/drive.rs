//! The timed window: keep-alive HTTP/1.1 connections, each writing its pre-signed requests one
//! at a time and reading each response before the next (as `wrk` does), spread over a few
//! threads with a single-threaded Tokio runtime each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One connection's requests.
#[derive(Default)]
pub(crate) struct ConnPlan {
    pub(crate) requests: Vec<Bytes>,
    /// For single-use requests: when each stops being acceptable (it is then skipped).
    pub(crate) expires: Vec<Instant>,
}

/// How a window is run.
pub(crate) struct Settings {
    pub(crate) addr: SocketAddr,
    pub(crate) threads: usize,
    pub(crate) duration: Duration,
    /// Requests are replayed round and round (`true`), or each sent once (`false`).
    pub(crate) cyclic: bool,
    pub(crate) timeout: Duration,
    pub(crate) server_pid: Option<u32>,
}

/// What one connection saw.
pub(crate) struct ConnStats {
    /// Which plan (connection) this is.
    pub(crate) index: usize,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) non_2xx: u64,
    pub(crate) socket_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) reconnects: u64,
    /// Completed after the window closed (not counted in the rate).
    pub(crate) drained: u64,
    /// Requests of its list taken (written to the socket, or skipped as expired).
    pub(crate) sent: usize,
    /// Single-use requests skipped because their code had left the broker's window.
    pub(crate) expired: u64,
    pub(crate) response_bytes: u64,
    pub(crate) first_error: Option<String>,
}

impl ConnStats {
    pub(crate) fn new() -> Result<Self, String> {
        Ok(Self {
            index: 0,
            // 1 µs to 100 s at three significant figures.
            latency_us: Histogram::new_with_bounds(1, 100_000_000, 3)
                .map_err(|e| format!("histogram: {e}"))?,
            ok: 0,
            non_2xx: 0,
            socket_errors: 0,
            timeouts: 0,
            reconnects: 0,
            drained: 0,
            sent: 0,
            expired: 0,
            response_bytes: 0,
            first_error: None,
        })
    }

    fn error(&mut self, what: String) {
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// Why the window closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoppedBy {
    Duration,
    /// A connection sent its last planned request (single-use TOTP codes ran out).
    RequestsUsed,
}

impl StoppedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::RequestsUsed => "requests_used",
        }
    }
}

/// The merged outcome of a window.
pub(crate) struct Outcome {
    pub(crate) per_conn: Vec<ConnStats>,
    pub(crate) window: Duration,
    pub(crate) stopped_by: StoppedBy,
    pub(crate) server_cpu: Option<Duration>,
    pub(crate) server_rss_kib: Option<u64>,
    pub(crate) server_hwm_kib: Option<u64>,
    pub(crate) client_cpu: Option<Duration>,
}

struct Flags {
    stop: AtomicBool,
    exhausted: AtomicBool,
}

/// Runs the window over `plans` (one per connection).
pub(crate) fn run(settings: &Settings, plans: Vec<ConnPlan>) -> Result<Outcome, String> {
    let flags = Arc::new(Flags {
        stop: AtomicBool::new(false),
        exhausted: AtomicBool::new(false),
    });
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let threads = settings.threads.clamp(1, plans.len().max(1));
    let mut groups: Vec<Vec<(usize, ConnPlan)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, p) in plans.into_iter().enumerate() {
        if let Some(g) = groups.get_mut(i % threads) {
            g.push((i, p));
        }
    }
    let mut handles = Vec::new();
    for group in groups {
        let flags = Arc::clone(&flags);
        let mut go = go_rx.clone();
        let ready = ready_tx.clone();
        let addr = settings.addr;
        let cyclic = settings.cyclic;
        let timeout = settings.timeout;
        let handle = std::thread::Builder::new()
            .name("sts-bench-conn".into())
            .spawn(move || -> Result<Vec<ConnStats>, String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime: {e}"))?;
                rt.block_on(async move {
                    let mut streams = Vec::new();
                    for _ in 0..group.len() {
                        match connect(addr).await.and_then(|s| Ok((s, ConnStats::new()?))) {
                            Ok(s) => streams.push(s),
                            Err(e) => {
                                let _ = ready.send(Err(e.clone()));
                                return Err(e);
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    go.wait_for(|go| *go)
                        .await
                        .map_err(|_| "aborted".to_owned())?;
                    let mut tasks = tokio::task::JoinSet::new();
                    for ((index, plan), (stream, mut stats)) in group.into_iter().zip(streams) {
                        stats.index = index;
                        let flags = Arc::clone(&flags);
                        tasks.spawn(connection(
                            addr, stream, stats, plan, cyclic, timeout, flags,
                        ));
                    }
                    let mut out = Vec::new();
                    while let Some(r) = tasks.join_next().await {
                        out.push(r.map_err(|e| format!("connection task: {e}"))?);
                    }
                    Ok(out)
                })
            })
            .map_err(|e| format!("thread: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("connecting to {}: {e}", settings.addr)),
            Err(_) => return Err("a connection thread died".into()),
        }
    }
    let server_before = settings.server_pid.and_then(crate::procfs::sample);
    let client_before = crate::procfs::sample(std::process::id());
    let start = Instant::now();
    let _ = go_tx.send(true);
    let end = start + settings.duration;
    let stopped_by = loop {
        let now = Instant::now();
        if flags.exhausted.load(Ordering::Relaxed) {
            break StoppedBy::RequestsUsed;
        }
        if now >= end {
            break StoppedBy::Duration;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(5)));
    };
    flags.stop.store(true, Ordering::Relaxed);
    let window = start.elapsed();
    let server_after = settings.server_pid.and_then(crate::procfs::sample);
    let client_after = crate::procfs::sample(std::process::id());
    let mut per_conn = Vec::new();
    for h in handles {
        per_conn.extend(
            h.join()
                .map_err(|_| "a connection thread panicked".to_owned())??,
        );
    }
    per_conn.sort_by_key(|s| s.index);
    let delta = |a: Option<crate::procfs::Sample>, b: Option<crate::procfs::Sample>| {
        a.zip(b).map(|(a, b)| b.cpu.saturating_sub(a.cpu))
    };
    Ok(Outcome {
        per_conn,
        window,
        stopped_by,
        server_cpu: delta(server_before, server_after),
        server_rss_kib: server_after.map(|s| s.rss_kib),
        server_hwm_kib: server_after.map(|s| s.hwm_kib),
        client_cpu: delta(client_before, client_after),
    })
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    Ok(s)
}

async fn connection(
    addr: SocketAddr,
    stream: TcpStream,
    mut stats: ConnStats,
    plan: ConnPlan,
    cyclic: bool,
    timeout: Duration,
    flags: Arc<Flags>,
) -> ConnStats {
    let mut stream = Some(stream);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut next = 0usize;
    let n = plan.requests.len();
    while !flags.stop.load(Ordering::Relaxed) {
        if n == 0 || (!cyclic && next >= n) {
            flags.exhausted.store(true, Ordering::Relaxed);
            break;
        }
        if !cyclic && plan.expires.get(next).is_some_and(|&e| Instant::now() >= e) {
            stats.expired += 1;
            next += 1;
            stats.sent = next;
            continue;
        }
        let Some(request) = plan.requests.get(next % n) else {
            break;
        };
        next += 1;
        let mut conn = match stream.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => {
                    stats.reconnects += 1;
                    s
                }
                Err(e) => {
                    stats.socket_errors += 1;
                    stats.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    next -= 1;
                    continue;
                }
            },
        };
        stats.sent = if cyclic { n } else { next };
        let began = Instant::now();
        let exchanged = tokio::time::timeout(timeout, exchange(&mut conn, request, &mut buf)).await;
        let took = began.elapsed();
        let counted = !flags.stop.load(Ordering::Relaxed);
        match exchanged {
            Ok(Ok(resp)) => {
                if !counted {
                    stats.drained += 1;
                } else {
                    let _ = stats
                        .latency_us
                        .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1));
                    stats.response_bytes += resp.bytes as u64;
                    if (200..300).contains(&resp.status) {
                        stats.ok += 1;
                    } else {
                        stats.non_2xx += 1;
                        stats.error(format!(
                            "HTTP {}: {}",
                            resp.status,
                            String::from_utf8_lossy(&resp.body_sample)
                        ));
                    }
                }
                if resp.keep_alive {
                    stream = Some(conn);
                }
            }
            Ok(Err(e)) => {
                stats.socket_errors += 1;
                stats.error(e);
            }
            Err(_) => {
                stats.timeouts += 1;
                stats.error(format!("no response within {timeout:?}"));
            }
        }
    }
    stats
}

/// What was read of one response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) keep_alive: bool,
    /// Header and body bytes.
    pub(crate) bytes: usize,
    /// The body of a non-2xx answer (for the report), else empty.
    pub(crate) body_sample: Vec<u8>,
    /// The whole body, when asked for.
    pub(crate) body: Vec<u8>,
}

/// Writes one request and reads its response (Content-Length, chunked, or close-delimited).
pub(crate) async fn exchange(
    conn: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Response, String> {
    exchange_inner(conn, request, buf, false).await
}

/// [`exchange`], keeping the body.
pub(crate) async fn exchange_keep_body(
    conn: &mut TcpStream,
    request: &[u8],
) -> Result<Response, String> {
    let mut buf = Vec::new();
    exchange_inner(conn, request, &mut buf, true).await
}

async fn exchange_inner(
    conn: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    keep_body: bool,
) -> Result<Response, String> {
    conn.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    let (status, head_len, framing, keep_alive) = loop {
        read_more(conn, buf).await?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let http10 = resp.version == Some(0);
                let mut framing = Framing::Close;
                let mut keep_alive = !http10;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or("bad content-length")?;
                        framing = Framing::Length(v);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Framing::Chunked;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        if h.value.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive = true;
                        }
                    }
                }
                if framing == Framing::Close {
                    keep_alive = false;
                }
                break (status, len, framing, keep_alive);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("bad response: {e}")),
        }
    };
    let body_range = match framing {
        Framing::Length(len) => {
            while buf.len() < head_len + len {
                read_more(conn, buf).await?;
            }
            if buf.len() > head_len + len {
                return Err("bytes after the response".into());
            }
            head_len..head_len + len
        }
        Framing::Chunked => {
            let end = loop {
                if let Some(end) = chunked_end(buf.get(head_len..).unwrap_or_default())? {
                    break head_len + end;
                }
                read_more(conn, buf).await?;
            };
            head_len..end
        }
        Framing::Close => {
            loop {
                let before = buf.len();
                buf.reserve(4096);
                let n = conn.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 || buf.len() == before {
                    break;
                }
            }
            head_len..buf.len()
        }
    };
    let body = buf.get(body_range).unwrap_or_default();
    let success = (200..300).contains(&status);
    Ok(Response {
        status,
        keep_alive,
        bytes: buf.len(),
        body_sample: if success {
            Vec::new()
        } else {
            body.iter().take(400).copied().collect()
        },
        body: if keep_body { body.to_vec() } else { Vec::new() },
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(16 * 1024);
    }
    let n = conn.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed mid-response".into());
    }
    Ok(())
}

/// The end of a complete chunked body in `b` (after the last chunk and the empty trailer), or
/// `None` when more is needed. The body's chunks are not reassembled: only framing matters here.
fn chunked_end(b: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(b.get(at..).unwrap_or_default()) else {
            return Ok(None);
        };
        let line = b.get(at..at + line_end).unwrap_or_default();
        let size_text = line.split(|&c| c == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        at += line_end + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(end) = find_crlf(b.get(at..).unwrap_or_default()) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if b.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::chunked_end;

    #[test]
    fn chunked_framing() {
        let body = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        assert_eq!(chunked_end(body).ok().flatten(), Some(body.len()));
        assert_eq!(chunked_end(&body[..body.len() - 1]).ok().flatten(), None);
        assert!(chunked_end(b"zz\r\n").is_err());
    }
}
