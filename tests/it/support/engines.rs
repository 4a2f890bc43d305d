//! Real PostgreSQL and Redis for the multi-node tests, started by the test on free loopback
//! ports (Debian's `postgresql` and `redis-server` packages) and removed when dropped. A test
//! whose engines are not installed is skipped with a message, unless
//! `STS_BROKER_REQUIRE_ENGINES` is set (CI installs them and sets it): then it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn redis_binary() -> Option<PathBuf> {
    on_path("redis-server")
        .or_else(|| on_path("valkey-server"))
        .or_else(|| {
            ["/usr/bin/redis-server", "/usr/bin/valkey-server"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
}

/// PostgreSQL's server binaries: `initdb` on `PATH` (its directory holds `postgres` too), or
/// else the newest version under Debian's `/usr/lib/postgresql/<version>/bin`, which the
/// `postgresql` package does not put on `PATH`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let on_path = on_path("initdb")
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|bin| bin.join("postgres").is_file());
    on_path.or_else(|| {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                    .then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    })
}

/// Whether the engines are here; when not, says so (or fails, when they are required).
fn available() -> Option<(PathBuf, PathBuf)> {
    match (redis_binary(), postgres_bin_dir()) {
        (Some(redis), Some(pg)) => Some((redis, pg)),
        (redis, pg) => {
            // .ci/run installs Debian's redis-server and postgresql and sets this variable, so
            // there these tests cannot be skipped.
            assert!(
                std::env::var_os("STS_BROKER_REQUIRE_ENGINES").is_none(),
                "STS_BROKER_REQUIRE_ENGINES is set but {} not installed",
                match (redis, pg) {
                    (None, None) => "redis-server and PostgreSQL (initdb, postgres) are",
                    (None, _) => "redis-server is",
                    _ => "PostgreSQL (initdb, postgres) is",
                }
            );
            eprintln!(
                "SKIPPED: redis-server or PostgreSQL is not installed \
                 (apt-get install redis-server postgresql)"
            );
            None
        }
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server of the test's own: no persistence, `DEBUG` allowed from loopback.
pub(crate) struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    fn spawn(&mut self) {
        let log = self.dir.join("redis.log");
        let mut child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "local", "--dir"])
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(self.port, &mut child, "redis-server", &log);
        self.child = Some(child);
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again, empty, on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill_9();
        self.spawn();
    }

    /// Runs a command (`FLUSHALL`, `CLIENT PAUSE 2000 ALL`…) and returns its answer as text.
    pub(crate) async fn command(&self, args: &[&str]) -> String {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let v: redis::Value = cmd.query_async(&mut c).await.unwrap();
        format!("{v:?}")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own (`initdb` in a temporary directory, run as the
/// `postgres` user when the test runs as root, which PostgreSQL refuses to be).
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Postgres {
    fn as_server_user(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn init(&self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = self
            .as_server_user(&self.bin.join("initdb"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "--auth=trust",
                "--username=sts",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&mut self) {
        let log = self.dir.join("postgres.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = self
            .as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        wait_for_port(self.port, &mut child, "postgres", &log);
        self.child = Some(child);
    }

    /// `postgres://sts@127.0.0.1:PORT/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://sts@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown (SIGINT): clients are disconnected, the data stays.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "postgres did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same data and port.
    pub(crate) fn start(&mut self) {
        self.spawn();
    }

    /// Runs `sql` as the superuser; the first column of each row, as text.
    pub(crate) async fn sql(&self, sql: &str) -> Vec<String> {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let rows = client.simple_query(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_owned())
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Both engines, started for one test.
pub(crate) struct Engines {
    pub postgres: Postgres,
    pub redis: Redis,
    base: PathBuf,
}

impl Engines {
    /// Starts a fresh PostgreSQL and Redis, or `None` (skipped) when they are not installed.
    pub(crate) fn start() -> Option<Self> {
        let (redis_bin, pg_bin) = available()?;
        // As root, under /tmp, which the postgres user can reach whatever TMPDIR says.
        let tmp = if is_root() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let base = tmp.join(format!(
            "sts-it-engines-{}-{}",
            std::process::id(),
            crate::support::broker::unique()
        ));
        let mut postgres = Postgres {
            bin: pg_bin,
            dir: base.join("pg"),
            port: free_port(),
            child: None,
        };
        postgres.init();
        postgres.spawn();
        let redis_dir = base.join("redis");
        std::fs::create_dir_all(&redis_dir).unwrap();
        let mut redis = Redis {
            bin: redis_bin,
            dir: redis_dir,
            port: free_port(),
            child: None,
        };
        redis.spawn();
        Some(Self {
            postgres,
            redis,
            base,
        })
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        self.redis.kill_9();
        if let Some(mut child) = self.postgres.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
