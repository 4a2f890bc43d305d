//! The `sts-broker` command: `serve` (the default), `gate` and `admin …`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use sts_broker::Admin;
use sts_broker::{BackendUrl, Broker, Config, Gate, SystemClock};

/// mimalloc's per-thread free lists: every request allocates and frees dozens of small blocks,
/// a quarter of the broker's CPU in glibc's malloc before (BENCHMARKS.md, "After").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sts-broker",
    version,
    about = "AWS-compatible STS GetSessionToken broker with real MFA checks"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the STS and IAM Query APIs (the default).
    Serve(ServeArgs),
    /// Operator commands on the data dir (take effect on a running broker).
    Admin(AdminArgs),
    /// Protect an HTTP API: admit only requests signed with the broker's credentials (and
    /// MFA, with --require-mfa), forward them to --upstream, and answer forward-auth requests.
    Gate(GateArgs),
}

#[derive(Args)]
struct GateArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on (default 127.0.0.1:8081).
    #[arg(long)]
    listen: Option<String>,
    /// Where admitted requests go: http://host:port[/prefix]. Without it, the gate only
    /// answers forward-auth requests, on every path.
    #[arg(long)]
    upstream: Option<String>,
    /// The service name requests must be signed for (default execute-api).
    #[arg(long)]
    service: Option<String>,
    /// Admit only session credentials minted with a verified MFA code.
    #[arg(long)]
    require_mfa: bool,
    /// With MFA, the longest time since the MFA authentication, in seconds.
    #[arg(long, value_name = "SECS")]
    max_mfa_age: Option<i64>,
    /// Time the upstream has to start answering before the gate answers 504 (default 30).
    #[arg(long, value_name = "SECS")]
    upstream_timeout: Option<u64>,
    /// Path of the forward-auth endpoint beside --upstream (default /.sts-broker/verify).
    #[arg(long)]
    verify_path: Option<String>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    insecure_http: bool,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct Common {
    /// Data directory (default ./sts-broker-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// TOML config file overriding the embedded defaults (or STS_BROKER_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Shared identity store of several nodes, postgres://USER@HOST:PORT/DB, instead of the
    /// data dir's SQLite (or STS_BROKER_STORE_URL; put a password there, not here).
    #[arg(long, global = true, value_name = "URL")]
    store_url: Option<String>,
    /// Shared replay guard and MFA lock-out of several nodes, redis://HOST:PORT (or
    /// STS_BROKER_REPLAY_URL).
    #[arg(long, global = true, value_name = "URL")]
    replay_url: Option<String>,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    insecure_http: bool,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// MFA devices.
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Bulk-create benchmark users (BENCHMARKS.md), each with an access key and an enabled
    /// virtual MFA device, and write their credentials and seeds to a new file (mode 0600).
    BenchProvision(BenchProvisionArgs),
    /// Apply the PostgreSQL store's schema migrations (--store-url); nodes also apply them
    /// when they start.
    Migrate,
    /// Copy a SQLite data dir's store (users, keys, devices with their last accepted steps,
    /// server keys, account) into an empty PostgreSQL store; secrets stay sealed with the
    /// master key, which every node then needs.
    CopyStore {
        /// The data dir to copy from (its master.key, unless STS_BROKER_MASTER_KEY is set).
        #[arg(long)]
        from_data_dir: PathBuf,
        /// The PostgreSQL store to fill: postgres://USER@HOST:PORT/DB.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Args)]
struct BenchProvisionArgs {
    /// Number of users to create.
    #[arg(long)]
    users: usize,
    /// The credentials file to create (CSV: user, key id, secret, serial, seed, last step).
    #[arg(long)]
    out: PathBuf,
    /// User names are PREFIX-N.
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[derive(Subcommand)]
enum MfaCommand {
    /// Import hardware TOTP tokens from a vendor seed file (rows: serial,base32seed[,user]).
    ImportHardware {
        /// The seed file.
        #[arg(long)]
        file: PathBuf,
        /// Bind the tokens to this IAM user (or `root`): only it may see and enable them. A
        /// third column binds its row instead.
        #[arg(long)]
        user: Option<String>,
    },
    /// Register a FIDO security key for a user (console-only path; never usable on STS).
    RegisterFido {
        /// The IAM user name (or `root`).
        #[arg(long)]
        user: String,
        /// A name for the key.
        #[arg(long)]
        name: String,
        /// The WebAuthn credential id, base64url.
        #[arg(long)]
        credential_id: String,
        /// The credential public key, base64url.
        #[arg(long)]
        public_key: String,
    },
    /// Enable an MFA device for the account root user (root cannot do it through the API).
    EnableRoot {
        /// Serial of an unassigned virtual (ARN) or hardware device.
        #[arg(long)]
        serial: String,
        /// A code from the device.
        #[arg(long)]
        code1: String,
        /// The next code from the device.
        #[arg(long)]
        code2: String,
    },
    /// Deactivate a device, whoever holds it (root's included).
    Deactivate {
        /// The device serial.
        #[arg(long)]
        serial: String,
    },
    /// Delete a device of any kind, assigned or not (also one no API call can name).
    Delete {
        /// The device serial, as stored.
        #[arg(long)]
        serial: String,
    },
}

fn load_config(common: &Common) -> Result<Config, String> {
    let file = common
        .config
        .clone()
        .or_else(|| std::env::var_os("STS_BROKER_CONFIG").map(PathBuf::from));
    let mut cfg = Config::load(file.as_deref()).map_err(|e| e.to_string())?;
    if let Some(dir) = &common.data_dir {
        cfg.set_data_dir(dir.clone());
    }
    if let Some(url) = &common.store_url {
        cfg.store_url = Some(BackendUrl::from(url.clone()));
    }
    if let Some(url) = &common.replay_url {
        cfg.replay_url = Some(BackendUrl::from(url.clone()));
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Admin(args)) => admin(args),
        Some(Command::Gate(args)) => gate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sts-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut cfg = load_config(&args.common)?;
    if let Some(l) = &args.listen {
        cfg.listen = l
            .parse()
            .map_err(|_| format!("--listen: not an address: {l}"))?;
    }
    cfg.insecure_http |= args.insecure_http;
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert;
        cfg.tls_key = args.tls_key;
    }
    // Before anything opens a file, and before the server derives its connection cap from it.
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let (broker, bootstrap) =
            Broker::open(cfg, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        if let Some(b) = bootstrap {
            println!(
                "new account {}: root credentials written to {} (aws configure import --csv format)",
                broker.account_id(),
                b.credentials_file.display()
            );
        }
        let account = broker.account_id().to_owned();
        let running = broker.start().await.map_err(|e| e.to_string())?;
        let scheme = if running.is_tls() { "https" } else { "http" };
        println!(
            "sts-broker listening on {scheme}://{} (account {account}, started in {} ms)",
            running.local_addr(),
            started.elapsed().as_millis()
        );
        wait_for_signal().await;
        println!("sts-broker shutting down");
        running.shutdown().await;
        Ok(())
    })
}

fn gate(args: GateArgs) -> Result<(), String> {
    let mut cfg = load_config(&args.common)?;
    if let Some(l) = &args.listen {
        cfg.gate_listen = l
            .parse()
            .map_err(|_| format!("--listen: not an address: {l}"))?;
    }
    if args.upstream.is_some() {
        cfg.gate_upstream = args.upstream;
    }
    if let Some(service) = args.service {
        cfg.gate_service = service;
    }
    cfg.gate_require_mfa |= args.require_mfa;
    if args.max_mfa_age.is_some() {
        cfg.gate_max_mfa_age_secs = args.max_mfa_age;
    }
    if let Some(secs) = args.upstream_timeout {
        cfg.gate_upstream_timeout_secs = secs;
    }
    if let Some(path) = args.verify_path {
        cfg.gate_verify_path = path;
    }
    cfg.insecure_http |= args.insecure_http;
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert;
        cfg.tls_key = args.tls_key;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let upstream = cfg.gate_upstream.clone();
        let verify_path = cfg.gate_verify_path.clone();
        let tls = cfg.tls_cert.is_some();
        let gate = Gate::builder(cfg).open().map_err(|e| e.to_string())?;
        let listener = gate.bind().await.map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let policy = gate.policy();
        let mfa = match (policy.require_mfa, policy.max_mfa_age_secs) {
            (true, Some(age)) => format!("MFA required, at most {age} s old"),
            (true, None) => "MFA required".to_owned(),
            (false, Some(age)) => format!("MFA at most {age} s old when present"),
            (false, None) => "MFA not required".to_owned(),
        };
        let scheme = if tls { "https" } else { "http" };
        let doors = match &upstream {
            Some(up) => format!("upstream {up}, forward-auth on {verify_path}"),
            None => "forward-auth on every path".to_owned(),
        };
        println!(
            "sts-broker gate listening on {scheme}://{addr} (service {}, {mfa}, {doors}, account {})",
            policy.service,
            gate.verifier().account_id()
        );
        gate.serve(listener, wait_for_signal())
            .await
            .map_err(|e| e.to_string())?;
        println!("sts-broker gate shutting down");
        Ok(())
    })
}

/// Raises the soft open-file limit to the hard one. Each connection holds a descriptor, and the
/// usual soft default (1,024) is what a flood of idle connections exhausts first; the hard
/// limit is the most an unprivileged process may use. `rustix` makes the two system calls
/// without `unsafe` code in this crate (which forbids it).
#[cfg(unix)]
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit (never the case on Linux) is left alone: some systems (macOS)
    // refuse it as a soft limit.
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return;
    };
    if soft >= hard {
        return;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
        Err(e) => tracing::warn!(limit = soft, error = %e, "cannot raise the open-file limit"),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn admin(args: AdminArgs) -> Result<(), String> {
    let cfg = load_config(&args.common)?;
    // These two open no store of their own: they prepare one.
    match &args.command {
        AdminCommand::Migrate => {
            let version = Admin::migrate(&cfg).map_err(|e| e.to_string())?;
            println!("the PostgreSQL store is at schema version {version}");
            return Ok(());
        }
        AdminCommand::CopyStore { from_data_dir, to } => {
            let to = BackendUrl::from(to.clone());
            let copied = Admin::copy_store(from_data_dir, &to).map_err(|e| e.to_string())?;
            println!(
                "copied account {} into {to}: {} users, {} access keys, {} MFA devices, {} server keys",
                copied.account_id,
                copied.users,
                copied.access_keys,
                copied.devices,
                copied.server_keys
            );
            return Ok(());
        }
        _ => {}
    }
    let admin = Admin::open(cfg, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let result = match args.command {
        AdminCommand::BenchProvision(args) => bench_provision(&admin, &args),
        AdminCommand::Migrate | AdminCommand::CopyStore { .. } => Ok(()),
        AdminCommand::Mfa(MfaCommand::ImportHardware { file, user }) => admin
            .import_hardware(&file, user.as_deref())
            .map(|n| println!("imported {n} hardware MFA device(s)")),
        AdminCommand::Mfa(MfaCommand::RegisterFido {
            user,
            name,
            credential_id,
            public_key,
        }) => admin
            .register_fido(&user, &name, &credential_id, &public_key)
            .map(|serial| println!("registered FIDO security key {serial}")),
        AdminCommand::Mfa(MfaCommand::EnableRoot {
            serial,
            code1,
            code2,
        }) => admin
            .enable_root(&serial, &code1, &code2)
            .map(|()| println!("enabled {serial} for the root user")),
        AdminCommand::Mfa(MfaCommand::Deactivate { serial }) => admin
            .deactivate(&serial)
            .map(|()| println!("deactivated {serial}")),
        AdminCommand::Mfa(MfaCommand::Delete { serial }) => {
            admin.delete_device(&serial).map(|holder| match holder {
                Some(_) => println!("deleted {serial} (it was enabled)"),
                None => println!("deleted {serial}"),
            })
        }
    };
    admin.close();
    result.map_err(|e| e.to_string())
}

fn bench_provision(admin: &Admin, args: &BenchProvisionArgs) -> Result<(), sts_broker::AdminError> {
    let started = std::time::Instant::now();
    let mut reported = 0;
    let n = admin.bench_provision(args.users, &args.prefix, &args.out, |done| {
        if done - reported >= 50_000 || done == args.users {
            reported = done;
            eprintln!(
                "provisioned {done}/{} users in {:.1} s",
                args.users,
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    println!(
        "provisioned {n} users with access keys and enabled virtual MFA devices in {:.1} s; credentials in {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
