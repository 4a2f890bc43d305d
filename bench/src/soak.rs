//! `sts-bench soak`: valid traffic at a steady rate, first alone (the quiet run), then beside
//! hostile clients (the mixed run): forged signatures, replayed and wrong MFA codes, oversized
//! bodies, slowloris and silent connections, many at once. It reports the valid requests'
//! errors and p99 in both runs, what the hostile clients got, and the server's RSS and open
//! file descriptors at the start, during and at the end (BENCHMARKS.md, "Soak").
//!
//! Loopback only, bounded in time: every phase has a fixed length and every loop checks a stop
//! flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::creds::{Spent, User, totp};
use crate::drive;
use crate::sign::{Signer, Target, body};

/// How a soak runs and what it tolerates.
pub(crate) struct Settings {
    pub(crate) server_pid: u32,
    pub(crate) quiet: Duration,
    pub(crate) mixed: Duration,
    /// Valid requests per second, over all valid connections.
    pub(crate) rate: f64,
    pub(crate) connections: usize,
    /// Hostile requests per second, over all hostile request connections.
    pub(crate) hostile_rate: f64,
    pub(crate) hostile_connections: usize,
    pub(crate) silent: usize,
    pub(crate) slowloris: usize,
    /// Users kept for the MFA abuse (never used by valid traffic).
    pub(crate) victims: usize,
    /// Longest a silent or slowloris connection may stay open (the broker's
    /// `first_request_timeout_secs` plus slack).
    pub(crate) connection_deadline: Duration,
    pub(crate) max_p99_ratio: f64,
    /// Growth of the valid p99 (ms) tolerated whatever the ratio: below it, a p99 of a
    /// millisecond or less doubles with the scheduler's jitter on a shared machine.
    pub(crate) p99_slack_ms: f64,
    pub(crate) max_rss_growth_mib: f64,
    pub(crate) max_fd_growth: i64,
    pub(crate) settle: Duration,
    pub(crate) mfa_window: i64,
}

/// What the valid clients saw in one run.
struct ValidStats {
    latency_us: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    window: Duration,
}

impl ValidStats {
    fn json(&self) -> Value {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "requests": self.ok + self.errors,
            "ok": self.ok,
            "errors": self.errors,
            "rps": (self.ok + self.errors) as f64 / self.window.as_secs_f64().max(1e-9),
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "max_ms": self.latency_us.max() as f64 / 1000.0,
            "first_error": self.first_error,
        })
    }

    fn p99_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 100_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

/// Resident memory (KiB) and open descriptors of the server.
#[derive(Clone, Copy, Debug)]
struct Usage {
    rss_kib: u64,
    fds: i64,
}

fn usage(pid: u32) -> Result<Usage, String> {
    let rss_kib = crate::procfs::sample(pid)
        .ok_or_else(|| format!("/proc/{pid}: the server is gone"))?
        .rss_kib;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count() as i64;
    Ok(Usage { rss_kib, fds })
}

/// Samples the server once a second until `stop`; returns the largest figures seen.
fn sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Usage> {
    std::thread::spawn(move || {
        let mut most = Usage { rss_kib: 0, fds: 0 };
        while !stop.load(Ordering::Relaxed) {
            if let Ok(u) = usage(pid) {
                most.rss_kib = most.rss_kib.max(u.rss_kib);
                most.fds = most.fds.max(u.fds);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        most
    })
}

/// Valid requests: GetCallerIdentity and GetSessionToken (without MFA) of the non-victim
/// users, alternating, signed now (valid for the 15 minutes of skew the broker allows).
fn valid_requests(target: &Target, users: &[User]) -> Result<Vec<Bytes>, String> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (i, u) in users.iter().take(256).enumerate() {
        let signer = Signer {
            access_key_id: &u.access_key_id,
            secret: &u.secret,
            session_token: None,
        };
        let b = if i % 2 == 0 {
            body::get_caller_identity()
        } else {
            body::get_session_token()
        };
        out.push(signer.sign(target, b, now)?.to_wire(&target.path));
    }
    if out.is_empty() {
        return Err("no users left for valid traffic".into());
    }
    Ok(out)
}

/// One run of valid traffic: `connections` keep-alive connections, each paced to its share of
/// `rate`, for `length`.
fn valid_run(
    addr: SocketAddr,
    requests: &[Bytes],
    connections: usize,
    rate: f64,
    length: Duration,
) -> Result<ValidStats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let c = connections.max(1);
    let interval = Duration::from_secs_f64(c as f64 / rate.max(0.1));
    rt.block_on(async {
        let start = Instant::now();
        let end = start + length;
        let mut tasks = tokio::task::JoinSet::new();
        for j in 0..c {
            let mine: Vec<Bytes> = requests.iter().skip(j).step_by(c).cloned().collect();
            let mine = if mine.is_empty() {
                requests.to_vec()
            } else {
                mine
            };
            tasks.spawn(async move {
                let mut hist = histogram()?;
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::with_capacity(16 * 1024);
                // Spread the connections' first requests over one interval.
                let mut next = start + interval.mul_f64(j as f64 / c as f64);
                let mut k = 0usize;
                while next < end {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                    let Some(request) = mine.get(k % mine.len()) else {
                        break;
                    };
                    k += 1;
                    let mut stream = match conn.take() {
                        Some(s) => s,
                        None => match TcpStream::connect(addr).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                s
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let began = Instant::now();
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        drive::exchange(&mut stream, request, &mut buf),
                    )
                    .await;
                    let took = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                    match r {
                        Ok(Ok(resp)) if resp.status == 200 => {
                            ok += 1;
                            let _ = hist.record(took.max(1));
                            if resp.keep_alive {
                                conn = Some(stream);
                            }
                        }
                        Ok(Ok(resp)) => {
                            errors += 1;
                            let _ = hist.record(took.max(1));
                            first_error.get_or_insert(format!(
                                "HTTP {}: {}",
                                resp.status,
                                String::from_utf8_lossy(&resp.body_sample)
                            ));
                        }
                        Ok(Err(e)) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                        Err(_) => {
                            errors += 1;
                            first_error.get_or_insert("no answer within 10 s".into());
                        }
                    }
                }
                Ok::<_, String>((hist, ok, errors, first_error))
            });
        }
        let mut stats = ValidStats {
            latency_us: histogram()?,
            ok: 0,
            errors: 0,
            first_error: None,
            window: Duration::ZERO,
        };
        while let Some(r) = tasks.join_next().await {
            let (hist, ok, errors, first_error) = r.map_err(|e| format!("valid client: {e}"))??;
            stats
                .latency_us
                .add(&hist)
                .map_err(|e| format!("histogram: {e}"))?;
            stats.ok += ok;
            stats.errors += errors;
            if stats.first_error.is_none() {
                stats.first_error = first_error;
            }
        }
        stats.window = start.elapsed();
        Ok(stats)
    })
}

/// The kinds of hostile request, each sent on its own keep-alive connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A valid request with one hex digit of its signature changed.
    BadSignature,
    /// The exact bytes of a GetSessionToken with MFA that the broker already accepted.
    Replay,
    /// GetSessionToken with MFA and a code that is not the device's.
    WrongCode,
    /// A body larger than the broker takes, by Content-Length or chunked.
    Oversized,
}

const KINDS: [Kind; 4] = [
    Kind::BadSignature,
    Kind::Replay,
    Kind::WrongCode,
    Kind::Oversized,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::Replay => "replayed_code",
            Self::WrongCode => "wrong_code",
            Self::Oversized => "oversized_body",
        }
    }
}

/// Per kind: answers by status (0: the connection was closed without an answer).
#[derive(Default)]
struct KindStats {
    sent: u64,
    by_status: std::collections::BTreeMap<u16, u64>,
}

/// What a silent or slowloris connection lived through.
#[derive(Default)]
struct HeldStats {
    opened: u64,
    closed_by_server: u64,
    /// Still open at the end of the run (not counted as closed).
    open_at_end: u64,
    longest: Duration,
    over_deadline: u64,
}

struct Hostile {
    bad_signature: Vec<Bytes>,
    replay: Vec<Bytes>,
    wrong_code: Vec<Bytes>,
    oversized: Vec<Bytes>,
}

/// Spends one fresh code per victim (GetSessionToken with MFA, answered 200) and keeps the
/// exact request bytes for replaying; signs the other hostile requests.
fn hostile_requests(
    target: &Target,
    victims: &[User],
    valid_users: &[User],
    spent: &mut Spent,
    w: i64,
) -> Result<Hostile, String> {
    let now = SystemTime::now();
    let unix = crate::plan::unix_now() as i64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut replay = Vec::new();
    let mut wrong_code = Vec::new();
    for (i, u) in victims.iter().enumerate() {
        let signer = Signer {
            access_key_id: &u.access_key_id,
            secret: &u.secret,
            session_token: None,
        };
        // The first step later than anything sent, valid now and in ten seconds.
        let step = (totp::step_at(unix + 10) - w).max(spent.get(i) + 1);
        if step > totp::step_at(unix) + w {
            continue;
        }
        spent.mark(i, step);
        spent.save()?;
        let good = signer
            .sign(
                target,
                body::get_session_token_mfa(&u.serial, totp::code(&u.seed, step)),
                now,
            )?
            .to_wire(&target.path);
        let answered = rt.block_on(async {
            let mut conn = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            drive::exchange_keep_body(&mut conn, &good).await
        })?;
        if answered.status != 200 {
            return Err(format!(
                "a victim's fresh code was refused (HTTP {}): {}",
                answered.status,
                String::from_utf8_lossy(&answered.body)
            ));
        }
        replay.push(good);
        // Not one of the codes of the steps around now.
        let real: Vec<u32> = (-w - 1..=w + 1)
            .map(|d| totp::code(&u.seed, totp::step_at(unix) + d))
            .collect();
        let wrong = (0..1_000_000u32)
            .map(|c| (c * 7919 + i as u32 * 104_729) % 1_000_000)
            .find(|c| !real.contains(c))
            .unwrap_or(0);
        wrong_code.push(
            signer
                .sign(target, body::get_session_token_mfa(&u.serial, wrong), now)?
                .to_wire(&target.path),
        );
    }
    if replay.is_empty() {
        return Err(
            "no victim had an unused code to spend: wait for the next 30 s step or provision more users"
                .into(),
        );
    }
    let mut bad_signature = Vec::new();
    for u in valid_users.iter().take(64) {
        let signed = Signer {
            access_key_id: &u.access_key_id,
            secret: &u.secret,
            session_token: None,
        }
        .sign(target, body::get_caller_identity(), now)?;
        let mut wire = signed.to_wire(&target.path).to_vec();
        // The signature's last hex digit, changed: the only difference from a valid request.
        let marker = b"Signature=";
        if let Some(at) = wire.windows(marker.len()).position(|w| w == marker) {
            let end = at + marker.len() + 63;
            if let Some(b) = wire.get_mut(end) {
                *b = if *b == b'0' { b'1' } else { b'0' };
            }
        }
        bad_signature.push(Bytes::from(wire));
    }
    let host = &target.authority;
    let big = vec![b'a'; 256 * 1024];
    let mut by_length = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        8 * 1024 * 1024
    )
    .into_bytes();
    by_length.extend_from_slice(&big);
    let mut chunked = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        big.len()
    )
    .into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    Ok(Hostile {
        bad_signature,
        replay,
        wrong_code,
        oversized: vec![Bytes::from(by_length), Bytes::from(chunked)],
    })
}

/// Sends `requests` round and round on one connection at `interval`, until `stop`.
async fn flood(
    addr: SocketAddr,
    requests: Vec<Bytes>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> KindStats {
    let mut stats = KindStats::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    let mut next = Instant::now();
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next = (next + interval).max(Instant::now());
        let Some(request) = requests.get(k % requests.len().max(1)) else {
            break;
        };
        k += 1;
        let mut stream = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        stats.sent += 1;
        let r = tokio::time::timeout(
            Duration::from_secs(15),
            drive::exchange(&mut stream, request, &mut buf),
        )
        .await;
        match r {
            Ok(Ok(resp)) => {
                *stats.by_status.entry(resp.status).or_default() += 1;
                if resp.keep_alive {
                    conn = Some(stream);
                }
            }
            // Closed, reset or timed out without an answer: counted as 0.
            _ => *stats.by_status.entry(0).or_default() += 1,
        }
    }
    stats
}

/// A connection that sends nothing (`slow: false`) or a header line every half second and never
/// ends its head (`slow: true`), reopened each time the server closes it, until `stop`.
async fn held(
    addr: SocketAddr,
    slow: bool,
    deadline: Duration,
    stop: Arc<AtomicBool>,
    spread: Duration,
) -> HeldStats {
    let mut stats = HeldStats::default();
    tokio::time::sleep(spread).await;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        stats.opened += 1;
        let opened = Instant::now();
        if slow {
            let _ = conn
                .write_all(b"POST / HTTP/1.1\r\nhost: soak\r\ncontent-type: application/x-www-form-urlencoded\r\n")
                .await;
        }
        let mut byte = [0u8; 512];
        let closed = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            let tick = tokio::time::sleep(Duration::from_millis(500));
            tokio::select! {
                r = conn.read(&mut byte) => match r {
                    // EOF or reset: closed by the server (an answer, e.g. 408, may come first).
                    Ok(0) | Err(_) => break true,
                    Ok(_) => {}
                },
                () = tick => {
                    if slow && conn.write_all(b"x-soak: slowly\r\n").await.is_err() {
                        break true;
                    }
                }
            }
        };
        let lived = opened.elapsed();
        stats.longest = stats.longest.max(lived);
        if lived > deadline {
            stats.over_deadline += 1;
        }
        if closed {
            stats.closed_by_server += 1;
        } else {
            stats.open_at_end += 1;
        }
    }
    stats
}

/// What the hostile clients saw: per kind of request, then the silent and slowloris connections.
type HostileOutcome = (Vec<(Kind, KindStats)>, HeldStats, HeldStats);

/// The hostile clients, on their own thread and runtime, until `stop`.
fn hostile_run(
    addr: SocketAddr,
    hostile: Hostile,
    s: &Settings,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<HostileOutcome, String>> {
    let (conns, rate, silent, slowloris, deadline) = (
        s.hostile_connections.max(KINDS.len()),
        s.hostile_rate,
        s.silent,
        s.slowloris,
        s.connection_deadline,
    );
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(async move {
            let interval = Duration::from_secs_f64(conns as f64 / rate.max(0.1));
            let mut floods = tokio::task::JoinSet::new();
            for j in 0..conns {
                let kind = KINDS[j % KINDS.len()];
                let requests = match kind {
                    Kind::BadSignature => hostile.bad_signature.clone(),
                    Kind::Replay => hostile.replay.clone(),
                    Kind::WrongCode => hostile.wrong_code.clone(),
                    Kind::Oversized => hostile.oversized.clone(),
                };
                let stop = Arc::clone(&stop);
                floods.spawn(async move { (kind, flood(addr, requests, interval, stop).await) });
            }
            let mut holders = tokio::task::JoinSet::new();
            let n = silent + slowloris;
            for j in 0..n {
                let stop = Arc::clone(&stop);
                // Opened over the first two seconds, so that they do not all expire together.
                let spread = Duration::from_secs_f64(2.0 * j as f64 / n.max(1) as f64);
                let slow = j >= silent;
                holders
                    .spawn(async move { (slow, held(addr, slow, deadline, stop, spread).await) });
            }
            let mut kinds: Vec<(Kind, KindStats)> =
                KINDS.iter().map(|&k| (k, KindStats::default())).collect();
            while let Some(r) = floods.join_next().await {
                let (kind, st) = r.map_err(|e| format!("hostile client: {e}"))?;
                if let Some((_, total)) = kinds.iter_mut().find(|(k, _)| *k == kind) {
                    total.sent += st.sent;
                    for (status, count) in st.by_status {
                        *total.by_status.entry(status).or_default() += count;
                    }
                }
            }
            let (mut quiet_ones, mut slow_ones) = (HeldStats::default(), HeldStats::default());
            while let Some(r) = holders.join_next().await {
                let (slow, st) = r.map_err(|e| format!("hostile connection: {e}"))?;
                let total = if slow {
                    &mut slow_ones
                } else {
                    &mut quiet_ones
                };
                total.opened += st.opened;
                total.closed_by_server += st.closed_by_server;
                total.open_at_end += st.open_at_end;
                total.longest = total.longest.max(st.longest);
                total.over_deadline += st.over_deadline;
            }
            Ok((kinds, quiet_ones, slow_ones))
        })
    })
}

fn held_json(h: &HeldStats) -> Value {
    json!({
        "opened": h.opened,
        "closed_by_server": h.closed_by_server,
        "open_at_end": h.open_at_end,
        "longest_s": (h.longest.as_secs_f64() * 10.0).round() / 10.0,
        "over_deadline": h.over_deadline,
    })
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Waits until the server's descriptors are back within `bound` of `base`, or `settle` passed.
fn settle(pid: u32, base: i64, bound: i64, settle: Duration) -> Result<(Usage, f64), String> {
    let began = Instant::now();
    loop {
        let u = usage(pid)?;
        if u.fds <= base + bound || began.elapsed() >= settle {
            return Ok((u, began.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the soak; prints a summary on stderr and one JSON line on stdout. `Err` when a
/// requirement failed (after printing the figures).
pub(crate) fn run(
    target: &Target,
    users: &[User],
    spent: &mut Spent,
    s: &Settings,
) -> Result<(), String> {
    let victims = s.victims.clamp(1, users.len().saturating_sub(1).max(1));
    let (victim_users, valid_users) = users.split_at(victims.min(users.len()));
    if valid_users.is_empty() {
        return Err("provision more users than --victims".into());
    }
    let valid = valid_requests(target, valid_users)?;
    let hostile = hostile_requests(target, victim_users, valid_users, spent, s.mfa_window)?;
    let pid = s.server_pid;

    // Warm-up, then the start figures once its connections are closed.
    valid_run(
        target.addr,
        &valid,
        s.connections,
        s.rate,
        Duration::from_secs(2),
    )?;
    let (start, _) = settle(pid, 0, i64::MAX / 2, Duration::ZERO)?;
    std::thread::sleep(Duration::from_millis(500));
    let start = usage(pid).unwrap_or(start);
    eprintln!(
        "soak: start: RSS {} MiB, {} fds; quiet run {:.0} s at {} req/s on {} connections",
        mib(start.rss_kib),
        start.fds,
        s.quiet.as_secs_f64(),
        s.rate,
        s.connections
    );

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid, Arc::clone(&stop_sampling));
    let quiet = valid_run(target.addr, &valid, s.connections, s.rate, s.quiet)?;
    stop_sampling.store(true, Ordering::Relaxed);
    let quiet_most = sampling.join().map_err(|_| "sampler panicked")?;
    eprintln!(
        "soak: quiet: {} requests, {} errors, p99 {:.2} ms",
        quiet.ok + quiet.errors,
        quiet.errors,
        quiet.p99_ms()
    );

    eprintln!(
        "soak: mixed run {:.0} s: valid as before, and {} hostile req/s on {} connections, {} silent and {} slowloris connections",
        s.mixed.as_secs_f64(),
        s.hostile_rate,
        s.hostile_connections,
        s.silent,
        s.slowloris
    );
    let stop_hostile = Arc::new(AtomicBool::new(false));
    let hostile_thread = hostile_run(target.addr, hostile, s, Arc::clone(&stop_hostile));
    // Let the hostile connections open before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid, Arc::clone(&stop_sampling));
    let mixed = valid_run(target.addr, &valid, s.connections, s.rate, s.mixed)?;
    stop_sampling.store(true, Ordering::Relaxed);
    let mixed_most = sampling.join().map_err(|_| "sampler panicked")?;
    stop_hostile.store(true, Ordering::Relaxed);
    let (kinds, silent, slow) = hostile_thread
        .join()
        .map_err(|_| "hostile thread panicked")??;
    let (end, settled_s) = settle(pid, start.fds, s.max_fd_growth, s.settle)?;

    let ratio = mixed.p99_ms() / quiet.p99_ms().max(0.001);
    let rss_growth = mib(end.rss_kib.saturating_sub(start.rss_kib));
    let fd_growth = end.fds - start.fds;
    let mut failures = Vec::new();
    if quiet.errors > 0 || mixed.errors > 0 {
        failures.push(format!(
            "valid requests failed: {} quiet, {} mixed (first: {:?})",
            quiet.errors,
            mixed.errors,
            mixed.first_error.as_ref().or(quiet.first_error.as_ref())
        ));
    }
    if ratio > s.max_p99_ratio && mixed.p99_ms() - quiet.p99_ms() > s.p99_slack_ms {
        failures.push(format!(
            "valid p99 {:.2} ms mixed vs {:.2} ms quiet: {ratio:.2}x > {}x (and more than {} ms)",
            mixed.p99_ms(),
            quiet.p99_ms(),
            s.max_p99_ratio,
            s.p99_slack_ms
        ));
    }
    if rss_growth > s.max_rss_growth_mib {
        failures.push(format!(
            "RSS grew {rss_growth} MiB (> {} MiB)",
            s.max_rss_growth_mib
        ));
    }
    if fd_growth > s.max_fd_growth {
        failures.push(format!(
            "{fd_growth} more fds after {settled_s:.1} s (> {})",
            s.max_fd_growth
        ));
    }
    let mut hostile_json = serde_json::Map::new();
    for (kind, st) in &kinds {
        let accepted: u64 = st
            .by_status
            .iter()
            .filter(|(c, _)| (200..300).contains(*c))
            .map(|(_, n)| n)
            .sum();
        let server_errors: u64 = st
            .by_status
            .iter()
            .filter(|(c, _)| **c >= 500)
            .map(|(_, n)| n)
            .sum();
        if accepted > 0 {
            failures.push(format!("{} accepted {accepted} times", kind.name()));
        }
        if server_errors > 0 {
            failures.push(format!("{} got {server_errors} server errors", kind.name()));
        }
        if st.sent == 0 {
            failures.push(format!("no {} request was sent", kind.name()));
        }
        let statuses: serde_json::Map<String, Value> = st
            .by_status
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        hostile_json.insert(
            kind.name().into(),
            json!({"sent": st.sent, "by_status": statuses}),
        );
    }
    for (name, h) in [("silent", &silent), ("slowloris", &slow)] {
        if h.over_deadline > 0 {
            failures.push(format!(
                "{} {name} connections outlived {:.0} s (longest {:.1} s)",
                h.over_deadline,
                s.connection_deadline.as_secs_f64(),
                h.longest.as_secs_f64()
            ));
        }
    }
    let line = json!({
        "quiet": quiet.json(),
        "mixed": mixed.json(),
        "p99_ratio": (ratio * 1000.0).round() / 1000.0,
        "hostile": hostile_json,
        "silent": held_json(&silent),
        "slowloris": held_json(&slow),
        "rss_mib": {"start": mib(start.rss_kib), "quiet_max": mib(quiet_most.rss_kib), "mixed_max": mib(mixed_most.rss_kib), "end": mib(end.rss_kib)},
        "fds": {"start": start.fds, "quiet_max": quiet_most.fds, "mixed_max": mixed_most.fds, "end": end.fds, "settled_s": (settled_s * 10.0).round() / 10.0},
        "settings": {
            "quiet_s": s.quiet.as_secs_f64(), "mixed_s": s.mixed.as_secs_f64(), "rate": s.rate,
            "connections": s.connections, "hostile_rate": s.hostile_rate,
            "hostile_connections": s.hostile_connections, "silent": s.silent,
            "slowloris": s.slowloris, "victims": victims,
        },
        "failures": failures,
        "ok": failures.is_empty(),
    });
    let hostile_sent: u64 = kinds.iter().map(|(_, st)| st.sent).sum();
    eprintln!(
        "soak: mixed: {} requests, {} errors, p99 {:.2} ms ({ratio:.2}x quiet); {hostile_sent} hostile requests; silent {} opened / {} closed by the broker, slowloris {} / {} (longest {:.1} s); RSS {} -> {} MiB (max {}), fds {} -> {} (max {})",
        mixed.ok + mixed.errors,
        mixed.errors,
        mixed.p99_ms(),
        silent.opened,
        silent.closed_by_server,
        slow.opened,
        slow.closed_by_server,
        silent.longest.max(slow.longest).as_secs_f64(),
        mib(start.rss_kib),
        mib(end.rss_kib),
        mib(mixed_most.rss_kib),
        start.fds,
        end.fds,
        mixed_most.fds,
    );
    println!("{line}");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak failed: {}", failures.join("; ")))
    }
}
