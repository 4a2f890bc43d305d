//! Booting the broker under test, its clock and its operator. This is the only file of the
//! suite that names `sts_broker` items: when the crate's public face changes, adapt it here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sts_broker::{Admin, AuditTarget, Broker, Clock as _, Config, ManualClock, RunningBroker};

use crate::support::clients::{Creds, root_creds_in};

/// The real wall clock, in seconds.
pub(crate) fn wall_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A number no other call in this test process returns.
pub(crate) fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A fresh directory under the target's scratch space.
pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "it-{tag}-{}-{}",
        std::process::id(),
        unique()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Whatever the umask: a data dir others can write is refused (README.md, the data dir).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    dir
}

/// The settable clock a test broker runs on (and its SDK clients sign with).
#[derive(Clone, Debug)]
pub(crate) struct TestClock(ManualClock);

impl TestClock {
    /// A clock standing at `unix` seconds.
    pub(crate) fn at(unix: i64) -> Self {
        Self(ManualClock::new(unix))
    }

    /// Its time, in Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.0.now().secs()
    }

    /// Moves it forward by `secs`.
    pub(crate) fn advance(&self, secs: i64) {
        self.0.advance(secs);
    }
}

/// The configuration knobs the tests turn; everything else keeps the embedded defaults.
#[derive(Clone, Debug, Default)]
pub(crate) struct Setup {
    mfa_window: Option<u32>,
    max_mfa_devices_per_user: Option<u32>,
    max_virtual_mfa_devices: Option<u32>,
    extra_regions: Vec<String>,
    header_read_timeout_secs: Option<u64>,
    first_request_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    tls: Option<(PathBuf, PathBuf)>,
    audit_log_links_to: Option<PathBuf>,
    store_url: Option<String>,
    replay_url: Option<String>,
}

impl Setup {
    /// Steps accepted on each side of the current one (`mfa_window`).
    pub(crate) fn mfa_window(mut self, steps: u32) -> Self {
        self.mfa_window = Some(steps);
        self
    }

    /// MFA devices a user may have enabled at once (`max_mfa_devices_per_user`).
    pub(crate) fn max_mfa_devices_per_user(mut self, devices: u32) -> Self {
        self.max_mfa_devices_per_user = Some(devices);
        self
    }

    /// Virtual MFA devices the account may hold (`max_virtual_mfa_devices`).
    pub(crate) fn max_virtual_mfa_devices(mut self, devices: u32) -> Self {
        self.max_virtual_mfa_devices = Some(devices);
        self
    }

    /// One more region a signature's scope may name (`regions`).
    pub(crate) fn extra_region(mut self, region: &str) -> Self {
        self.extra_regions.push(region.to_owned());
        self
    }

    /// Seconds a client gets to send its request headers (`header_read_timeout_secs`).
    pub(crate) fn header_read_timeout_secs(mut self, secs: u64) -> Self {
        self.header_read_timeout_secs = Some(secs);
        self
    }

    /// Seconds from accepting a connection to its first request (`first_request_timeout_secs`).
    pub(crate) fn first_request_timeout_secs(mut self, secs: u64) -> Self {
        self.first_request_timeout_secs = Some(secs);
        self
    }

    /// Seconds a connection may wait between requests (`idle_timeout_secs`).
    pub(crate) fn idle_timeout_secs(mut self, secs: u64) -> Self {
        self.idle_timeout_secs = Some(secs);
        self
    }

    /// Connections served at once (`max_connections`).
    pub(crate) fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Serve HTTPS with this PEM certificate and key (`tls_cert`, `tls_key`).
    pub(crate) fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_owned(), key.to_owned()));
        self
    }

    /// `<data_dir>/audit.log` starts as a symbolic link to `target` (`/dev/full`: every write
    /// fails with ENOSPC); removing the link lets the broker create a real file there.
    pub(crate) fn audit_log_links_to(mut self, target: &Path) -> Self {
        self.audit_log_links_to = Some(target.to_owned());
        self
    }

    /// Several nodes: the PostgreSQL store at `store_url` and the Redis at `replay_url`
    /// (`store_url`, `replay_url`).
    pub(crate) fn shared(mut self, store_url: &str, replay_url: &str) -> Self {
        self.store_url = Some(store_url.to_owned());
        self.replay_url = Some(replay_url.to_owned());
        self
    }

    fn apply(&self, cfg: &mut Config) {
        if let Some(url) = &self.store_url {
            cfg.store_url = Some(url.clone().into());
        }
        if let Some(url) = &self.replay_url {
            cfg.replay_url = Some(url.clone().into());
        }
        if let Some(steps) = self.mfa_window {
            cfg.mfa_window = steps;
        }
        if let Some(devices) = self.max_mfa_devices_per_user {
            cfg.max_mfa_devices_per_user = devices;
        }
        if let Some(devices) = self.max_virtual_mfa_devices {
            cfg.max_virtual_mfa_devices = devices;
        }
        cfg.regions.extend(self.extra_regions.iter().cloned());
        if let Some(secs) = self.header_read_timeout_secs {
            cfg.header_read_timeout_secs = secs;
        }
        if let Some(secs) = self.first_request_timeout_secs {
            cfg.first_request_timeout_secs = secs;
        }
        if let Some(secs) = self.idle_timeout_secs {
            cfg.idle_timeout_secs = secs;
        }
        if let Some(n) = self.max_connections {
            cfg.max_connections = Some(n);
        }
        if let Some((cert, key)) = &self.tls {
            cfg.tls_cert = Some(cert.clone());
            cfg.tls_key = Some(key.clone());
        }
    }
}

/// The configuration of a test broker on `data_dir`: loopback on a free port, the audit log in
/// `<data_dir>/audit.log`, admin changes polled every 50 ms.
fn config_for(data_dir: &Path) -> Config {
    let mut cfg = Config::with_data_dir(data_dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.audit = AuditTarget::File(data_dir.join("audit.log"));
    cfg.change_poll_millis = 50;
    cfg
}

/// A broker booted in-process for one test.
pub(crate) struct TestBroker {
    pub addr: SocketAddr,
    pub clock: TestClock,
    pub account_id: String,
    pub root: Creds,
    pub data_dir: PathBuf,
    /// Where this broker appends its audit lines.
    pub audit_file: PathBuf,
    config: Config,
    running: Option<RunningBroker>,
}

impl TestBroker {
    /// A broker with the embedded defaults on a fresh data dir, its clock at the real time.
    pub(crate) async fn start() -> Self {
        Self::start_with(Setup::default()).await
    }

    /// Like [`start`](Self::start), with `setup`'s knobs turned.
    pub(crate) async fn start_with(setup: Setup) -> Self {
        let data_dir = fresh_dir("broker");
        let mut cfg = config_for(&data_dir);
        setup.apply(&mut cfg);
        if let Some(target) = &setup.audit_log_links_to {
            std::os::unix::fs::symlink(target, data_dir.join("audit.log")).unwrap();
        }
        Self::boot(cfg, TestClock::at(wall_now())).await
    }

    /// A broker on an existing data dir (its keys, its store) with the default test setup.
    pub(crate) async fn boot_on(data_dir: &Path, clock: TestClock) -> Self {
        Self::boot(config_for(data_dir), clock).await
    }

    async fn boot(cfg: Config, clock: TestClock) -> Self {
        let data_dir = cfg.data_dir.clone();
        let AuditTarget::File(audit_file) = cfg.audit.clone() else {
            panic!("a test broker audits to a file");
        };
        let (broker, _) = Broker::builder(cfg.clone())
            .clock(Arc::new(clock.0.clone()))
            .open()
            .unwrap();
        let account_id = broker.account_id().to_owned();
        let running = broker.start().await.unwrap();
        let creds_file = data_dir.join("root-credentials.csv");
        Self {
            addr: running.local_addr(),
            clock,
            account_id,
            root: if creds_file.exists() {
                root_creds_in(&data_dir)
            } else {
                Creds::new("", "", None)
            },
            data_dir,
            audit_file,
            config: cfg,
            running: Some(running),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The broker's time.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Stops the broker and flushes its store; its data dir and clock, to boot again.
    pub(crate) async fn stop(mut self) -> (PathBuf, TestClock) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        (self.data_dir.clone(), self.clock.clone())
    }

    /// Stops the broker and boots it again with the same configuration and clock.
    pub(crate) async fn restart(self) -> Self {
        let config = self.config.clone();
        let (_, clock) = self.stop().await;
        Self::boot(config, clock).await
    }

    /// A second broker on this broker's data dir and clock, with its own store connections,
    /// writer thread and index, as a second process sharing the data dir has; it audits to
    /// `<data_dir>/audit.peer.log`.
    pub(crate) async fn peer(&self) -> Self {
        let mut cfg = self.config.clone();
        cfg.audit = AuditTarget::File(self.data_dir.join("audit.peer.log"));
        Self::boot(cfg, self.clock.clone()).await
    }

    /// Another node of this broker's shared store (`Setup::shared`): its own data dir (holding
    /// a copy of this node's master key, as an operator distributes it), audit log, pool,
    /// index and follower; the same configuration and clock.
    pub(crate) async fn node(&self) -> Self {
        let data_dir = fresh_dir("node");
        std::fs::copy(
            self.data_dir.join("master.key"),
            data_dir.join("master.key"),
        )
        .unwrap();
        let mut cfg = self.config.clone();
        cfg.set_data_dir(data_dir.clone());
        cfg.audit = AuditTarget::File(data_dir.join("audit.log"));
        let mut node = Self::boot(cfg, self.clock.clone()).await;
        // The account's root credentials were written where it was created.
        node.root = self.root.clone();
        node
    }

    /// A broker on the PostgreSQL store at `store_url` and the Redis at `replay_url`, whose
    /// data dir gets `master_key_from`'s master key (a store copied from that data dir).
    pub(crate) async fn node_of(
        master_key_from: &Path,
        store_url: &str,
        replay_url: &str,
        clock: TestClock,
    ) -> Self {
        let data_dir = fresh_dir("node");
        std::fs::copy(
            master_key_from.join("master.key"),
            data_dir.join("master.key"),
        )
        .unwrap();
        let mut cfg = config_for(&data_dir);
        Setup::default()
            .shared(store_url, replay_url)
            .apply(&mut cfg);
        let mut node = Self::boot(cfg, clock).await;
        node.root = root_creds_in(master_key_from);
        node
    }

    /// How many failure records the MFA lock-out keeps: the rows of the store's `mfa_attempt`
    /// table (README.md, "Where state lives" in ARCHITECTURE.md), read from the data dir.
    pub(crate) fn lockout_records(&self) -> usize {
        let db = rusqlite::Connection::open_with_flags(
            self.data_dir.join("sts-broker.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let rows: i64 = db
            .query_row("SELECT COUNT(*) FROM mfa_attempt", [], |r| r.get(0))
            .unwrap();
        usize::try_from(rows).unwrap()
    }

    /// Whether this broker's configuration with `setup` applied passes the broker's validation.
    pub(crate) fn accepts(&self, setup: &Setup) -> bool {
        let mut cfg = self.config.clone();
        setup.apply(&mut cfg);
        cfg.validate().is_ok()
    }

    /// The operator's tools on this broker's data dir (same configuration, same clock).
    pub(crate) fn operator(&self) -> Operator {
        let config = self.config.clone();
        Operator(Admin::open(config, Arc::new(self.clock.0.clone())).unwrap())
    }
}

/// The operator's `sts-broker admin` commands, through the library. Errors are their texts.
pub(crate) struct Operator(Admin);

impl Operator {
    /// Imports hardware tokens from a `serial,seed[,user]` file, bound to `user` when given;
    /// how many were imported.
    pub(crate) fn import_hardware(&self, file: &Path, user: Option<&str>) -> Result<usize, String> {
        self.0
            .import_hardware(file, user)
            .map_err(|e| e.to_string())
    }

    /// Deletes a device of any kind; whether it was enabled.
    pub(crate) fn delete_device(&self, serial: &str) -> Result<bool, String> {
        self.0
            .delete_device(serial)
            .map(|holder| holder.is_some())
            .map_err(|e| e.to_string())
    }

    /// Registers a FIDO security key for `user`; its serial.
    pub(crate) fn register_fido(
        &self,
        user: &str,
        name: &str,
        credential_id: &str,
        public_key: &str,
    ) -> Result<String, String> {
        self.0
            .register_fido(user, name, credential_id, public_key)
            .map_err(|e| e.to_string())
    }

    /// Enables a device for the account root user with two consecutive codes.
    pub(crate) fn enable_root(&self, serial: &str, code1: &str, code2: &str) -> Result<(), String> {
        self.0
            .enable_root(serial, code1, code2)
            .map_err(|e| e.to_string())
    }

    /// Deactivates a device, whoever holds it.
    pub(crate) fn deactivate(&self, serial: &str) -> Result<(), String> {
        self.0.deactivate(serial).map_err(|e| e.to_string())
    }

    /// Closes the data dir.
    pub(crate) fn close(self) {
        self.0.close();
    }
}

/// A broker started on `0.0.0.0:0` without TLS, on `data_dir`, with the real clock and no audit
/// log: the start-up error's text, or the running broker's address and whether it spoke TLS (it
/// is shut down before returning).
pub(crate) async fn listen_on_all_interfaces(
    data_dir: &Path,
    insecure_http: bool,
) -> Result<(SocketAddr, bool), String> {
    let mut cfg = Config::with_data_dir(data_dir);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    cfg.audit = AuditTarget::Off;
    cfg.insecure_http = insecure_http;
    let (broker, _) = Broker::open(cfg, Arc::new(ManualClock::new(wall_now()))).unwrap();
    let running = broker.start().await.map_err(|e| e.to_string())?;
    let seen = (running.local_addr(), running.is_tls());
    running.shutdown().await;
    Ok(seen)
}

/// A broker embedded in the test process, served on a listener the test bound, until the test
/// sends its shutdown signal: [`Broker::serve`] as an embedding service would use it.
pub(crate) struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub root: Creds,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), String>>,
}

impl EmbeddedBroker {
    /// Opens `data_dir` and serves it on a fresh loopback listener.
    pub(crate) async fn start(data_dir: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (broker, _) =
            Broker::open(config_for(data_dir), Arc::new(ManualClock::new(wall_now()))).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            broker
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| e.to_string())
        });
        Self {
            addr,
            root: root_creds_in(data_dir),
            stop,
            served,
        }
    }

    /// Sends the shutdown signal; what `serve` returned.
    pub(crate) async fn shutdown(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.served.await.unwrap()
    }
}

/// A verifier of a service of one's own, following a broker's data dir read-only.
pub(crate) struct GatedService {
    verifier: sts_broker::Verifier,
    policy: sts_broker::VerifyPolicy,
}

/// What a verifier reads from session credentials (their token): whose they are, until when,
/// and the MFA authentication behind them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionSeen {
    pub arn: String,
    pub expires_at: i64,
    /// The device's serial and when its code was verified.
    pub mfa: Option<(String, i64)>,
}

impl GatedService {
    /// Follows `data_dir` every 50 ms, for requests signed for `service`.
    pub(crate) fn follow(data_dir: &Path, service: &str) -> Self {
        let verifier =
            sts_broker::Verifier::follow_data_dir(data_dir, std::time::Duration::from_millis(50))
                .unwrap();
        Self {
            verifier,
            policy: sts_broker::VerifyPolicy::new(service),
        }
    }

    /// Admits only MFA-backed session credentials, at most `max_age_secs` after the MFA code.
    pub(crate) fn require_mfa(mut self, max_age_secs: Option<i64>) -> Self {
        self.policy.require_mfa = true;
        self.policy.max_mfa_age_secs = max_age_secs;
        self
    }

    /// The caller's ARN and MFA age, or the refusal's text, for `req` at `now`.
    pub(crate) fn check(
        &self,
        req: &crate::support::http::Req,
        now: i64,
    ) -> Result<(String, Option<i64>), String> {
        let at = sts_broker::UnixTime::from_secs(now);
        self.verify(req, now)
            .map(|caller| (caller.arn.clone(), caller.mfa_age_secs(at)))
    }

    /// What the session credentials that signed `req` carry, checked at `now`; `None` for a
    /// long-term key.
    pub(crate) fn session(
        &self,
        req: &crate::support::http::Req,
        now: i64,
    ) -> Result<Option<SessionSeen>, String> {
        let caller = self.verify(req, now)?;
        Ok(caller.session.as_ref().map(|s| SessionSeen {
            arn: caller.arn.clone(),
            expires_at: s.expires_at.secs(),
            mfa: s
                .mfa
                .as_ref()
                .map(|m| (m.serial.clone(), m.authenticated_at.secs())),
        }))
    }

    fn verify(
        &self,
        req: &crate::support::http::Req,
        now: i64,
    ) -> Result<sts_broker::VerifiedCaller, String> {
        let mut builder = http::Request::builder()
            .method(req.method.as_str())
            .uri(req.target());
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let at = sts_broker::UnixTime::from_secs(now);
        self.verifier
            .verify(
                &parts,
                sts_broker::Payload::Bytes(&req.body),
                &self.policy,
                at,
            )
            .map_err(|e| e.to_string())
    }
}

/// The gate knobs the tests turn (`gate_*` keys); the rest is the broker's test configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct GateSetup {
    pub upstream: Option<String>,
    pub require_mfa: bool,
    pub max_mfa_age_secs: Option<i64>,
    pub upstream_timeout_secs: Option<u64>,
    pub max_body_bytes: Option<usize>,
}

/// `sts-broker gate` in the test process, following a test broker's data dir (every 50 ms)
/// and judging by the broker's settable clock, on a fresh loopback port.
pub(crate) struct TestGate {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl TestGate {
    pub(crate) async fn start(b: &TestBroker, setup: GateSetup) -> Self {
        let mut cfg = b.config.clone();
        cfg.gate_listen = "127.0.0.1:0".parse().unwrap();
        cfg.gate_upstream = setup.upstream;
        cfg.gate_require_mfa = setup.require_mfa;
        cfg.gate_max_mfa_age_secs = setup.max_mfa_age_secs;
        if let Some(secs) = setup.upstream_timeout_secs {
            cfg.gate_upstream_timeout_secs = secs;
        }
        if let Some(limit) = setup.max_body_bytes {
            cfg.max_body_bytes = limit;
        }
        let gate = sts_broker::Gate::builder(cfg)
            .clock(Arc::new(b.clock.0.clone()))
            .open()
            .unwrap();
        let listener = gate.bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            gate.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { addr, stop, served }
    }

    /// The `host:port` clients sign and send as `Host`.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
    }
}

impl TestBroker {
    /// What a verifier following this broker's data dir reads, now, from the session
    /// credentials `creds` (a GetCallerIdentity signed with them).
    pub(crate) fn session_seen(&self, creds: &Creds) -> SessionSeen {
        let service = GatedService::follow(&self.data_dir, "sts");
        let req = crate::support::signing::OracleSigner::new(creds, self.now()).sign(
            &self.addr.to_string(),
            &crate::support::http::Req::get(crate::support::http::GCI),
        );
        service
            .session(&req, self.now())
            .unwrap()
            .expect("session credentials")
    }
}
