//! Booting a broker for a test and talking to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};
pub use otp::{TotpKey, base32, step_at};
use sts_broker::{
    AuditTarget, Broker, Clock, Config, ManualClock, RunningBroker, Throttle, ThrottlePolicy,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Access key id, secret and (for sessions) token.
#[derive(Clone, Debug)]
pub struct Creds {
    pub akid: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Creds {
    pub fn new(akid: &str, secret: &str, token: Option<&str>) -> Self {
        Self {
            akid: akid.to_owned(),
            secret: secret.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    fn provider(&self) -> Credentials {
        Credentials::new(&self.akid, &self.secret, self.token.clone(), None, "it")
    }
}

/// The SDK's clock follows the broker's settable clock, so moving time moves both.
#[derive(Debug)]
struct SdkClock(ManualClock);

impl TimeSource for SdkClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(self.0.now().secs()).unwrap())
    }
}

/// The real wall clock, in seconds.
pub fn wall_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh directory under the target's scratch space.
pub fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A broker booted for one test.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub account_id: String,
    pub root: Creds,
    pub data_dir: PathBuf,
    /// The configuration the broker was booted with.
    pub config: Config,
    /// The broker's MFA lock-out, injected so tests can see how many devices it tracks.
    pub throttle: Arc<Throttle>,
    running: Option<RunningBroker>,
}

impl TestBroker {
    /// A broker with the embedded defaults, its clock at the real time.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A broker whose config `tweak` adjusts (data dir, listen and audit are preset).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = fresh_dir("broker");
        let mut cfg = Config::with_data_dir(&data_dir);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.audit = AuditTarget::File(data_dir.join("audit.log"));
        cfg.change_poll_millis = 50;
        tweak(&mut cfg);
        Self::boot(cfg, ManualClock::new(wall_now())).await
    }

    /// Boots on an existing config and clock (e.g. to restart on the same data dir).
    pub async fn boot(cfg: Config, clock: ManualClock) -> Self {
        let data_dir = cfg.data_dir.clone();
        let throttle = Arc::new(Throttle::new(ThrottlePolicy {
            free_failures: cfg.mfa_free_failures,
            base_backoff_secs: cfg.mfa_base_backoff_secs,
            max_backoff_secs: cfg.mfa_max_backoff_secs,
        }));
        let (broker, _) = Broker::builder(cfg.clone())
            .clock(Arc::new(clock.clone()))
            .attempt_limiter(throttle.clone())
            .open()
            .unwrap();
        let account_id = broker.account_id().to_owned();
        let running = broker.start().await.unwrap();
        Self {
            addr: running.local_addr(),
            clock,
            account_id,
            root: root_creds_in(&data_dir),
            data_dir,
            config: cfg,
            throttle,
            running: Some(running),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn now(&self) -> i64 {
        self.clock.now().secs()
    }

    /// An STS client signing with the broker's settable clock.
    pub fn sts(&self, creds: &Creds) -> aws_sdk_sts::Client {
        sts_client(&self.url(), creds, Some(&self.clock))
    }

    /// An IAM client signing with the broker's settable clock.
    pub fn iam(&self, creds: &Creds) -> aws_sdk_iam::Client {
        iam_client(&self.url(), creds, Some(&self.clock))
    }

    /// Creates a user and an access key for it, as root.
    pub async fn user_with_key(&self, name: &str) -> Creds {
        let iam = self.iam(&self.root);
        iam.create_user().user_name(name).send().await.unwrap();
        let key = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        Creds::new(&key.access_key_id, &key.secret_access_key, None)
    }

    /// Session credentials from GetSessionToken without MFA.
    pub async fn session(&self, creds: &Creds) -> Creds {
        let c = self
            .sts(creds)
            .get_session_token()
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap();
        session_creds(&c)
    }

    /// Every audit line so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines_in(&self.data_dir)
    }

    /// Stops the broker and flushes its store.
    pub async fn stop(mut self) -> (PathBuf, ManualClock) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        (self.data_dir.clone(), self.clock.clone())
    }
}

/// A virtual MFA device: its serial and its TOTP key, from CreateVirtualMFADevice.
pub struct VirtualDevice {
    pub serial: String,
    pub seed_b32: String,
    pub key: TotpKey,
}

impl VirtualDevice {
    /// The code of the step `offset` steps from `now`.
    pub fn code_at(&self, now: i64, offset: i64) -> String {
        self.key.code(step_at(now) + offset).to_digits()
    }
}

/// Creates a virtual device as `creds` and decodes its seed.
pub async fn create_virtual_device(iam: &aws_sdk_iam::Client, name: &str) -> VirtualDevice {
    let out = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    // The SDK already base64-decoded the blob into the base32 text.
    let seed_b32 = String::from_utf8(out.base32_string_seed.unwrap().into_inner()).unwrap();
    let key = TotpKey::new(&base32::decode(&seed_b32).unwrap()).unwrap();
    VirtualDevice {
        serial: out.serial_number,
        seed_b32,
        key,
    }
}

/// Creates a virtual device as `creds` and enables it for `user` with two consecutive codes
/// (the previous and the current step, as a person typing two codes would).
pub async fn enabled_device(
    broker: &TestBroker,
    creds: &Creds,
    user: &str,
    name: &str,
) -> VirtualDevice {
    let iam = broker.iam(creds);
    let device = create_virtual_device(&iam, name).await;
    let now = broker.now();
    iam.enable_mfa_device()
        .user_name(user)
        .serial_number(&device.serial)
        .authentication_code1(device.code_at(now, -1))
        .authentication_code2(device.code_at(now, 0))
        .send()
        .await
        .unwrap();
    device
}

/// A raw HTTP/1.1 exchange (the request must carry `Connection: close`).
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads the whole response.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// Parses a Content-Length-framed HTTP/1.1 response.
pub fn parse_response(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The text of `<tag>` in an XML body.
pub fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(&body[start..end])
}

/// `(code, message)` of an SDK error, as botocore would read them.
pub fn sdk_error<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> (String, String)
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let meta = err.as_service_error().map(|e| {
        (
            e.code().unwrap_or("").to_owned(),
            e.message().unwrap_or("").to_owned(),
        )
    });
    meta.unwrap_or_else(|| (String::new(), format!("{err:?}")))
}

// ---------------------------------------------------------------------------------------------
// Helpers of the IAM / MFA / durability suites.

/// The HTTP status of an SDK error (0 when there was no response).
pub fn sdk_status<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> u16 {
    err.raw_response().map_or(0, |r| r.status().as_u16())
}

/// `(status, code, message)` of an SDK error.
pub fn sdk_failure<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> (u16, String, String)
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let (code, message) = sdk_error(err);
    (sdk_status(err), code, message)
}

/// The claims of a session token (a JWT): its payload, decoded without checking anything.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An STS client for a broker at `url`, signing with `clock` (the real clock when `None`).
fn sts_client(url: &str, creds: &Creds, clock: Option<&ManualClock>) -> aws_sdk_sts::Client {
    let mut conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds.provider())
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled());
    if let Some(c) = clock {
        conf = conf.time_source(SharedTimeSource::new(SdkClock(c.clone())));
    }
    aws_sdk_sts::Client::from_conf(conf.build())
}

/// An IAM client for a broker at `url`, signing with `clock` (the real clock when `None`).
fn iam_client(url: &str, creds: &Creds, clock: Option<&ManualClock>) -> aws_sdk_iam::Client {
    let mut conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds.provider())
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled());
    if let Some(c) = clock {
        conf = conf.time_source(SharedTimeSource::new(SdkClock(c.clone())));
    }
    aws_sdk_iam::Client::from_conf(conf.build())
}

/// SDK clients for a broker at `url` that sign with the real clock (for the real binary).
pub fn sts_at(url: &str, creds: &Creds) -> aws_sdk_sts::Client {
    sts_client(url, creds, None)
}

/// See [`sts_at`].
pub fn iam_at(url: &str, creds: &Creds) -> aws_sdk_iam::Client {
    iam_client(url, creds, None)
}

/// Every line of `<data_dir>/audit.log`, parsed.
pub fn audit_lines_in(data_dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Session credentials out of an SDK `Credentials`.
pub fn session_creds(c: &aws_sdk_sts::types::Credentials) -> Creds {
    Creds::new(
        &c.access_key_id,
        &c.secret_access_key,
        Some(&c.session_token),
    )
}

/// The root credentials in `<data_dir>/root-credentials.csv`.
pub fn root_creds_in(data_dir: &std::path::Path) -> Creds {
    let csv = std::fs::read_to_string(data_dir.join("root-credentials.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    Creds::new(row[1], row[2], None)
}

/// Polls `probe` every 20 ms until it yields a value, for at most `limit` (admin changes reach a
/// running broker through its change-log poll, 50 ms in tests).
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestBroker {
    /// The operator's view of this broker's data dir (same config, same clock).
    pub fn admin(&self) -> sts_broker::Admin {
        sts_broker::Admin::open(self.config.clone(), Arc::new(self.clock.clone())).unwrap()
    }

    /// The raw audit log.
    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("audit.log")).unwrap_or_default()
    }

    /// The audit lines once `done` holds for them (refusals are appended asynchronously).
    pub async fn audit_until(
        &self,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        eventually(Duration::from_secs(5), || {
            let lines = self.audit_lines();
            let ok = done(&lines);
            async move { ok.then_some(lines) }
        })
        .await
    }
}

/// RFC 6238 codes and RFC 4648 base32, written here as an independent oracle of the broker's.
pub mod otp {
    use hmac::{Hmac, Mac as _};
    use sha1::Sha1;

    /// The TOTP step containing `unix`.
    pub fn step_at(unix: i64) -> i64 {
        unix.div_euclid(30)
    }

    /// A six-digit code.
    pub struct Code(u32);

    impl Code {
        pub fn to_digits(&self) -> String {
            format!("{:06}", self.0)
        }
    }

    /// A device secret.
    #[derive(Clone)]
    pub struct TotpKey(Vec<u8>);

    impl TotpKey {
        pub fn new(seed: &[u8]) -> Result<Self, String> {
            if seed.len() < 10 {
                return Err("seed too short".into());
            }
            Ok(Self(seed.to_vec()))
        }

        pub fn from_base32(text: &str) -> Result<Self, String> {
            Self::new(&base32::decode(text)?)
        }

        /// RFC 4226 §5.3 on the step counter.
        pub fn code(&self, step: i64) -> Code {
            let mut mac = <Hmac<Sha1> as hmac::KeyInit>::new_from_slice(&self.0).unwrap();
            mac.update(&(step as u64).to_be_bytes());
            let digest = mac.finalize().into_bytes();
            let offset = usize::from(digest[19] & 0x0f);
            let word = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap());
            Code((word & 0x7fff_ffff) % 1_000_000)
        }
    }

    /// RFC 4648 base32, upper case, unpadded.
    pub mod base32 {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

        pub fn encode(bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(5) {
                let mut buf = [0u8; 5];
                buf[..chunk.len()].copy_from_slice(chunk);
                let bits = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
                let chars = (chunk.len() * 8).div_ceil(5);
                for i in 0..chars {
                    out.push(char::from(ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize]));
                }
            }
            out
        }

        pub fn decode(text: &str) -> Result<Vec<u8>, String> {
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u64, 0u32);
            for c in text.trim_end_matches('=').bytes() {
                let v = ALPHABET
                    .iter()
                    .position(|&a| a == c.to_ascii_uppercase())
                    .ok_or_else(|| format!("not base32: {c}"))?;
                acc = (acc << 5) | v as u64;
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                }
            }
            Ok(out)
        }
    }
}
