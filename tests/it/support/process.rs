//! The real `sts-broker` binary, as an operator runs it: `admin` commands and `serve`.

use std::net::TcpListener;
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

/// `sts-broker serve` on a free loopback port; killed with SIGKILL when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub url: String,
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
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log = std::fs::File::create(data_dir.with_extension(format!("{tag}.log"))).unwrap();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: data_dir.with_extension(format!("{tag}.log")),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "the broker exited during start-up"
            );
            assert!(Instant::now() < deadline, "the broker did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        server
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
