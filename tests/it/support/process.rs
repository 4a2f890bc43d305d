//! The real `sts-broker` binary, as an operator runs it: `admin` commands and `serve`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary Cargo built for this test run.
const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// `sts-broker admin ARGS… --data-dir DATA_DIR`, run to completion.
pub(crate) fn run_admin(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

/// How `sts-broker serve` is launched beyond the defaults: extra environment variables, and
/// the open-file limits the process starts with (set by `sh`'s `ulimit` just before `exec`, so
/// only the broker's process is affected, never the test's).
#[derive(Clone, Debug, Default)]
pub(crate) struct Launch {
    env: Vec<(String, String)>,
    ulimit: Option<String>,
}

impl Launch {
    /// Sets `name=value` in the broker's environment.
    pub(crate) fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Soft and hard open-file limits both `n` (`ulimit -n n`).
    pub(crate) fn open_files(mut self, n: u64) -> Self {
        self.ulimit = Some(format!("-n {n}"));
        self
    }

    /// Only the soft open-file limit lowered to `n`; the hard limit stays the test's.
    pub(crate) fn soft_open_files(mut self, n: u64) -> Self {
        self.ulimit = Some(format!("-S -n {n}"));
        self
    }
}

/// `sts-broker serve` on a free loopback port; killed with SIGKILL when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the binary on `data_dir` (its stderr in `<data_dir>.<tag>.log`) and waits until it
    /// accepts connections.
    pub(crate) async fn start(data_dir: &Path, tag: &str) -> Self {
        Self::start_with_env(data_dir, tag, &[]).await
    }

    /// [`start`](Self::start) with these environment variables set (`STS_BROKER_*` keys).
    pub(crate) async fn start_with_env(data_dir: &Path, tag: &str, env: &[(&str, &str)]) -> Self {
        let launch = env.iter().fold(Launch::default(), |launch, (name, value)| {
            launch.env(name, value)
        });
        match Self::launch(data_dir, tag, &launch).await {
            Ok(server) => server,
            Err(stderr) => panic!("the broker exited during start-up: {stderr}"),
        }
    }

    /// Starts the binary as `launch` says and waits until it accepts connections, or exits:
    /// then its stderr is the error.
    pub(crate) async fn launch(
        data_dir: &Path,
        tag: &str,
        launch: &Launch,
    ) -> Result<Self, String> {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log_path = data_dir.with_extension(format!("{tag}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mut command = match &launch.ulimit {
            // `$0` is the binary and `$@` its arguments, so nothing is re-quoted.
            Some(ulimit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                sh
            }
            None => Command::new(BIN),
        };
        command
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(data_dir)
            .envs(launch.env.iter().map(|(n, v)| (n, v)))
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().unwrap();
        let addr: SocketAddr = listen.parse().unwrap();
        let mut server = Self {
            child,
            url: format!("http://{listen}"),
            addr,
            log: log_path.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{status}: {stderr}"));
            }
            assert!(Instant::now() < deadline, "the broker did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(server)
    }

    /// The broker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the broker wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` (std's `Child::kill` sends SIGKILL) and reap.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "{status:?}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SQLite's own verdict on the database file `db` (`PRAGMA integrity_check`, then
/// `PRAGMA foreign_key_check`): `"ok"` when both find nothing. Opened read-only, so it can run
/// beside a broker that has the file open.
pub(crate) fn integrity_check(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let mut fk = conn.prepare("PRAGMA foreign_key_check").unwrap();
    let broken: Vec<String> = fk
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    if broken.is_empty() {
        integrity
    } else {
        format!("{integrity}; foreign keys broken in {broken:?}")
    }
}

/// `sts-broker gate --listen 127.0.0.1:0 --data-dir DATA_DIR ARGS…`, once it reports its
/// address; killed when dropped.
pub(crate) struct GateProcess {
    child: Child,
    pub addr: std::net::SocketAddr,
}

impl GateProcess {
    /// Starts the gate (its stderr in `<data_dir>.gate.log`) and reads its address from the
    /// line it prints when listening.
    pub(crate) async fn start(data_dir: &Path, args: &[&str]) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("gate.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["gate", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead as _;
            std::io::BufReader::new(stdout).lines().next()
        })
        .await
        .unwrap();
        let line = match line {
            Some(Ok(line)) => line,
            other => panic!(
                "the gate printed no address ({other:?}); its log: {}",
                std::fs::read_to_string(data_dir.with_extension("gate.log")).unwrap_or_default()
            ),
        };
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    pub(crate) fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
