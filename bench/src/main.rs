//! `sts-bench`: the load generator of the sts-broker benchmark (BENCHMARKS.md).
//!
//! - `run`: one timed window of one workload at one concurrency against one target, requests
//!   signed before the window; prints a summary on stderr and one JSON line on stdout.
//! - `sessions`: obtains MFA session credentials from a broker (for `run --workload
//!   gci-session --sessions FILE`).
//! - `wait`: polls a target with a signed GetCallerIdentity until it answers 200 (start-up).
//! - `wrk-script`: the same request as a `wrk` Lua script, to check the generator against wrk.
//! - `soak`: valid traffic alone, then beside hostile clients; errors, p99, RSS and descriptors.

mod creds;
mod drive;
mod plan;
mod procfs;
mod sign;
mod soak;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::creds::{Spent, User, totp};
use crate::plan::{Session, Workload};
use crate::sign::{Signer, Target, body};

#[derive(Parser)]
#[command(
    name = "sts-bench",
    about = "Load generator for sts-broker (BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one timed window and print its figures (JSON on stdout).
    Run(RunArgs),
    /// Obtain MFA session credentials from a broker and write them to a file (mode 0600).
    Sessions(SessionsArgs),
    /// Wait until the target answers a signed GetCallerIdentity; print the seconds it took.
    Wait(WaitArgs),
    /// Write the workload's first request as a wrk Lua script.
    WrkScript(WrkArgs),
    /// Valid traffic alone, then beside hostile clients; fails when the valid requests suffer
    /// or the server's memory or descriptors grow (BENCHMARKS.md, "Soak").
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The server's process id (its RSS and /proc/PID/fd are read).
    #[arg(long)]
    server_pid: u32,
    /// Seconds of valid traffic alone.
    #[arg(long, default_value_t = 30.0)]
    quiet: f64,
    /// Seconds of valid traffic beside the hostile clients.
    #[arg(long, default_value_t = 180.0)]
    duration: f64,
    /// Valid requests per second (GetCallerIdentity and GetSessionToken, alternating).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Valid keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Hostile requests per second (forged signatures, replayed and wrong codes, oversized
    /// bodies), over all hostile request connections.
    #[arg(long, default_value_t = 200.0)]
    hostile_rate: f64,
    /// Hostile request connections.
    #[arg(long, default_value_t = 64)]
    hostile_connections: usize,
    /// Connections that never send a byte.
    #[arg(long, default_value_t = 512)]
    silent: usize,
    /// Connections that send a header line every half second and never end their head.
    #[arg(long, default_value_t = 128)]
    slowloris: usize,
    /// Provisioned users kept for the MFA abuse (the first ones of the file).
    #[arg(long, default_value_t = 16)]
    victims: usize,
    /// Longest a silent or slowloris connection may stay open, seconds (the broker's
    /// first_request_timeout_secs, 10, plus slack).
    #[arg(long, default_value_t = 15.0)]
    connection_deadline: f64,
    /// Largest mixed/quiet ratio of the valid requests' p99.
    #[arg(long, default_value_t = 2.0)]
    max_p99_ratio: f64,
    /// Growth of the valid p99 (ms) tolerated whatever the ratio.
    #[arg(long, default_value_t = 5.0)]
    p99_slack_ms: f64,
    /// Largest RSS growth from start to end, MiB.
    #[arg(long, default_value_t = 32.0)]
    max_rss_growth_mib: f64,
    /// Largest growth of open descriptors from start to end.
    #[arg(long, default_value_t = 16)]
    max_fd_growth: i64,
    /// Most seconds to wait after the mixed run for the hostile connections to be closed.
    #[arg(long, default_value_t = 20.0)]
    settle: f64,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// The target, http://host:port[/path].
    #[arg(long)]
    url: String,
    /// SigV4 service name the requests are signed for (`sts` for the broker; a gateway's
    /// upstream service name when measuring `sts-broker gate`).
    #[arg(long, default_value = "sts")]
    service: String,
    /// SigV4 region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The credentials file of `sts-broker admin bench-provision`.
    #[arg(long)]
    creds: PathBuf,
    /// Record of the TOTP steps already sent (default: CREDS.spent).
    #[arg(long)]
    spent: Option<PathBuf>,
    /// The broker's TOTP acceptance window, in steps each side (its `mfa_window`).
    #[arg(long, default_value_t = 1)]
    mfa_window: i64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// What to send.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Open connections, each with one request in flight.
    #[arg(short, long, default_value_t = 64)]
    concurrency: usize,
    /// Length of the timed window, seconds.
    #[arg(short, long, default_value_t = 8.0)]
    duration: f64,
    /// Client threads (like wrk -t).
    #[arg(short, long, default_value_t = 2)]
    threads: usize,
    /// The server's process id, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The target checks nothing (the floor, moto): codes may repeat, sessions are synthetic.
    #[arg(long)]
    unchecked: bool,
    /// Session credentials for gci-session (from `sts-bench sessions`); without it they are
    /// obtained from the broker first (or made up, with --unchecked).
    #[arg(long)]
    sessions: Option<PathBuf>,
    /// Session credentials to obtain when --sessions is not given.
    #[arg(long, default_value_t = 64)]
    session_count: usize,
    /// Distinct requests replayed by the replayable workloads.
    #[arg(long, default_value_t = 1024)]
    pool: usize,
    /// Most single-use (gst-mfa) requests signed for the window.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: usize,
    /// With fewer unused codes than this, wait for the next TOTP step before the window.
    #[arg(long, default_value_t = 0)]
    min_requests: usize,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// A label copied into the JSON line (e.g. the target's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Length of the synthetic session tokens used with --unchecked (the broker's length).
    #[arg(long, default_value_t = 0)]
    token_len: usize,
}

#[derive(Args)]
struct SessionsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// How many.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Where to write them (CSV: access key id, secret, token).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct WaitArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Count from this Unix time (seconds, fractional) instead of from this command's start.
    #[arg(long)]
    since: Option<f64>,
}

#[derive(Args)]
struct WrkArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Which request.
    #[arg(long, value_enum, default_value = "gci-key")]
    workload: Workload,
    /// Session credentials file, for gci-session.
    #[arg(long)]
    sessions: Option<PathBuf>,
    /// The Lua script to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(&a),
        Command::Sessions(a) => sessions_cmd(&a),
        Command::Wait(a) => wait(&a),
        Command::WrkScript(a) => wrk_script(&a),
        Command::Soak(a) => soak(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sts-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Loaded {
    target: Target,
    users: Vec<User>,
    spent: Spent,
}

fn load(t: &TargetArgs) -> Result<Loaded, String> {
    let target = Target::new(&t.url, &t.service, &t.region)?;
    let users = creds::load(&t.creds)?;
    let spent_path = t.spent.clone().unwrap_or_else(|| {
        let mut p = t.creds.clone().into_os_string();
        p.push(".spent");
        PathBuf::from(p)
    });
    let spent = Spent::load(spent_path, &users);
    Ok(Loaded {
        target,
        users,
        spent,
    })
}

fn run(a: &RunArgs) -> Result<(), String> {
    let Loaded {
        target,
        users,
        mut spent,
    } = load(&a.target)?;
    let sessions = if a.workload == Workload::GciSession {
        match &a.sessions {
            Some(file) => read_sessions(file)?,
            None if a.unchecked => plan::synthetic_sessions(
                a.session_count.max(1),
                if a.token_len > 0 { a.token_len } else { 600 },
            ),
            None => obtain_sessions(
                &target,
                &users,
                &mut spent,
                a.target.mfa_window,
                a.session_count,
            )?,
        }
    } else {
        Vec::new()
    };
    let duration = Duration::from_secs_f64(a.duration.max(0.01));
    let prepared = Instant::now();
    let opts = plan::Options {
        target: &target,
        users: &users,
        sessions: &sessions,
        workload: a.workload,
        concurrency: a.concurrency.max(1),
        threads: a.threads.max(1),
        pool: a.pool,
        max_requests: a.max_requests,
        min_requests: a.min_requests,
        mfa_window: a.target.mfa_window,
        unchecked: a.unchecked,
    };
    let before = spent.snapshot();
    let built = plan::build(&opts, &mut spent)?;
    let planned: usize = built.plans.iter().map(|p| p.requests.len()).sum();
    let sign_secs = prepared.elapsed().as_secs_f64();
    let settings = drive::Settings {
        addr: target.addr,
        threads: a.threads.max(1),
        duration,
        cyclic: built.cyclic,
        timeout: Duration::from_secs_f64(a.timeout.max(0.001)),
        server_pid: a.server_pid,
    };
    let codes = built.codes;
    let outcome = drive::run(&settings, built.plans);
    // Single-use codes: keep as spent only what was written to a socket.
    if let Some(codes) = &codes {
        let mut sent_steps = before;
        if let Ok(o) = &outcome {
            for (conn, stats) in codes.iter().zip(&o.per_conn) {
                for &(u, step) in conn.iter().take(stats.sent) {
                    if let Some(s) = sent_steps.get_mut(u) {
                        *s = (*s).max(step);
                    }
                }
            }
            spent.restore(sent_steps);
        }
        spent.save()?;
    }
    let o = outcome?;
    report(
        a,
        &target,
        &o,
        planned,
        built.request_bytes,
        sign_secs,
        users.len(),
    )
}

fn report(
    a: &RunArgs,
    target: &Target,
    o: &drive::Outcome,
    planned: usize,
    request_bytes: usize,
    sign_secs: f64,
    users: usize,
) -> Result<(), String> {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 100_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let (mut ok, mut non_2xx, mut socket, mut timeouts, mut reconnects, mut drained, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let expired: u64 = o.per_conn.iter().map(|s| s.expired).sum();
    let mut first_error = None;
    for s in &o.per_conn {
        hist.add(&s.latency_us)
            .map_err(|e| format!("histogram: {e}"))?;
        ok += s.ok;
        non_2xx += s.non_2xx;
        socket += s.socket_errors;
        timeouts += s.timeouts;
        reconnects += s.reconnects;
        drained += s.drained;
        bytes += s.response_bytes;
        if first_error.is_none() {
            first_error.clone_from(&s.first_error);
        }
    }
    let completed = ok + non_2xx;
    let secs = o.window.as_secs_f64();
    let rps = completed as f64 / secs.max(1e-9);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let per_req_us = |cpu: Option<Duration>| {
        cpu.filter(|_| completed > 0)
            .map(|c| c.as_secs_f64() * 1e6 / completed as f64)
    };
    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    let line = json!({
        "label": a.label,
        "url": a.target.url,
        "service": target.service,
        "workload": a.workload.name(),
        "concurrency": a.concurrency,
        "threads": a.threads,
        "users": users,
        "window_s": secs,
        "stopped_by": o.stopped_by.as_str(),
        "requests": completed,
        "rps": rps,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": hist.max() as f64 / 1000.0,
        "mean_ms": hist.mean() / 1000.0,
        "ok": ok,
        "non_2xx": non_2xx,
        "socket_errors": socket,
        "timeouts": timeouts,
        "errors": non_2xx + socket + timeouts,
        "reconnects": reconnects,
        "drained": drained,
        "planned_requests": planned,
        "expired_skipped": expired,
        "sign_s": sign_secs,
        "server_cpu_us_per_req": per_req_us(o.server_cpu),
        "server_rss_mib": mib(o.server_rss_kib),
        "server_peak_rss_mib": mib(o.server_hwm_kib),
        "client_cpu_us_per_req": per_req_us(o.client_cpu),
        "request_bytes": request_bytes,
        "response_bytes": bytes.checked_div(completed).unwrap_or(0),
        "first_error": first_error,
    });
    eprintln!(
        "{:<8} {:<11} c{:<3} {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms  errors {}  {} requests in {:.2} s ({}){}",
        a.label,
        a.workload.name(),
        a.concurrency,
        rps,
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        non_2xx + socket + timeouts,
        completed,
        secs,
        o.stopped_by.as_str(),
        per_req_us(o.server_cpu)
            .map(|c| format!("  server {c:.1} µs CPU/req"))
            .unwrap_or_default(),
    );
    if let Some(e) = &first_error {
        eprintln!("  first error: {e}");
    }
    println!("{line}");
    Ok(())
}

/// Obtains `count` MFA session credentials from the broker, one never-used code each.
fn obtain_sessions(
    target: &Target,
    users: &[User],
    spent: &mut Spent,
    w: i64,
    count: usize,
) -> Result<Vec<Session>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut out = Vec::new();
    rt.block_on(async {
        let mut conn = tokio::net::TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        for (i, u) in users.iter().enumerate() {
            if out.len() >= count {
                break;
            }
            let now = plan::unix_now();
            // The first step later than anything sent, valid now and in ten seconds.
            let low = (totp::step_at(now as i64 + 10) - w).max(spent.get(i) + 1);
            let high = totp::step_at(now as i64) + w;
            // A step whose digits repeat an earlier step's would be a replay (see
            // `plan::repeats_earlier_code`).
            let Some(low) = (low..=high).find(|&step| {
                !plan::repeats_earlier_code(&u.seed, step, totp::code(&u.seed, step), w)
            }) else {
                continue;
            };
            spent.mark(i, low);
            spent.save()?;
            let signed = Signer {
                access_key_id: &u.access_key_id,
                secret: &u.secret,
                session_token: None,
            }
            .sign(
                target,
                body::get_session_token_mfa(&u.serial, totp::code(&u.seed, low)),
                std::time::SystemTime::now(),
            )?;
            let resp = drive::exchange_keep_body(&mut conn, &signed.to_wire(&target.path)).await?;
            let text = String::from_utf8_lossy(&resp.body);
            if resp.status != 200 {
                return Err(format!(
                    "GetSessionToken with MFA: HTTP {}: {text}",
                    resp.status
                ));
            }
            let field = |tag: &str| {
                text.split_once(&format!("<{tag}>"))
                    .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
                    .map(|(v, _)| v.to_owned())
                    .ok_or_else(|| format!("no {tag} in the GetSessionToken response"))
            };
            out.push(Session {
                access_key_id: field("AccessKeyId")?,
                secret: field("SecretAccessKey")?,
                token: field("SessionToken")?,
            });
            if !resp.keep_alive {
                conn = tokio::net::TcpStream::connect(target.addr)
                    .await
                    .map_err(|e| format!("connect {}: {e}", target.addr))?;
            }
        }
        Ok::<(), String>(())
    })?;
    if out.len() < count {
        return Err(format!(
            "only {} of {count} session credentials: every other device's codes are spent for now",
            out.len()
        ));
    }
    Ok(out)
}

fn read_sessions(file: &Path) -> Result<Vec<Session>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let sessions: Vec<Session> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("access_key_id,"))
        .map(|l| {
            let mut f = l.splitn(3, ',');
            match (f.next(), f.next(), f.next()) {
                (Some(a), Some(s), Some(t)) => Ok(Session {
                    access_key_id: a.to_owned(),
                    secret: s.to_owned(),
                    token: t.to_owned(),
                }),
                _ => Err(format!(
                    "{}: expected access_key_id,secret,token",
                    file.display()
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    if sessions.is_empty() {
        return Err(format!("{}: no sessions", file.display()));
    }
    Ok(sessions)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn sessions_cmd(a: &SessionsArgs) -> Result<(), String> {
    let Loaded {
        target,
        users,
        mut spent,
    } = load(&a.target)?;
    let sessions = obtain_sessions(&target, &users, &mut spent, a.target.mfa_window, a.count)?;
    let mut text = String::from("access_key_id,secret_access_key,session_token\n");
    for s in &sessions {
        text.push_str(&format!("{},{},{}\n", s.access_key_id, s.secret, s.token));
    }
    write_private(&a.out, &text)?;
    let token_len = sessions.first().map_or(0, |s| s.token.len());
    println!(
        "{}",
        json!({"sessions": sessions.len(), "token_len": token_len, "out": a.out.display().to_string()})
    );
    Ok(())
}

fn wait(a: &WaitArgs) -> Result<(), String> {
    let Loaded { target, users, .. } = load(&a.target)?;
    let since = a.since.unwrap_or_else(plan::unix_now);
    let user = users.first().ok_or("no users")?;
    let request = Signer {
        access_key_id: &user.access_key_id,
        secret: &user.secret,
        session_token: None,
    }
    .sign(
        &target,
        body::get_caller_identity(),
        std::time::SystemTime::now(),
    )?
    .to_wire(&target.path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let give_up = Instant::now() + Duration::from_secs_f64(a.timeout);
    let mut last = String::new();
    rt.block_on(async {
        while Instant::now() < give_up {
            match tokio::net::TcpStream::connect(target.addr).await {
                Ok(mut conn) => match drive::exchange_keep_body(&mut conn, &request).await {
                    Ok(r) if r.status == 200 => {
                        let secs = plan::unix_now() - since;
                        println!("{}", json!({ "ready_s": secs }));
                        return Ok(());
                    }
                    Ok(r) => last = format!("HTTP {}", r.status),
                    Err(e) => last = e,
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(format!(
            "{} did not answer 200 within {} s ({last})",
            a.target.url, a.timeout
        ))
    })
}

fn soak(a: &SoakArgs) -> Result<(), String> {
    let Loaded {
        target,
        users,
        mut spent,
    } = load(&a.target)?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let settings = soak::Settings {
        server_pid: a.server_pid,
        quiet: secs(a.quiet),
        mixed: secs(a.duration),
        rate: a.rate,
        connections: a.connections,
        hostile_rate: a.hostile_rate,
        hostile_connections: a.hostile_connections,
        silent: a.silent,
        slowloris: a.slowloris,
        victims: a.victims,
        connection_deadline: secs(a.connection_deadline),
        max_p99_ratio: a.max_p99_ratio,
        p99_slack_ms: a.p99_slack_ms,
        max_rss_growth_mib: a.max_rss_growth_mib,
        max_fd_growth: a.max_fd_growth,
        settle: secs(a.settle),
        mfa_window: a.target.mfa_window,
    };
    soak::run(&target, &users, &mut spent, &settings)
}

fn wrk_script(a: &WrkArgs) -> Result<(), String> {
    let Loaded {
        target,
        users,
        mut spent,
    } = load(&a.target)?;
    let sessions = match &a.sessions {
        Some(f) => read_sessions(f)?,
        None => plan::synthetic_sessions(1, 600),
    };
    let opts = plan::Options {
        target: &target,
        users: &users,
        sessions: &sessions,
        workload: a.workload,
        concurrency: 1,
        threads: 1,
        pool: 1,
        max_requests: 1,
        min_requests: 0,
        mfa_window: a.target.mfa_window,
        unchecked: true,
    };
    let built = plan::build(&opts, &mut spent)?;
    let first = built.first.ok_or("nothing was signed")?;
    let lua = |s: &str| format!("{s:?}");
    let mut script = format!(
        "-- sts-bench wrk-script: {} (signed; wrk adds Host and Content-Length)\nwrk.method = \"POST\"\nwrk.path = {}\nwrk.body = {}\n",
        a.workload.name(),
        lua(&target.path),
        lua(&first.body)
    );
    for (n, v) in &first.headers {
        if n != "host" {
            script.push_str(&format!("wrk.headers[{}] = {}\n", lua(n), lua(v)));
        }
    }
    write_private(&a.out, &script)
}
