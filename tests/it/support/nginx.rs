//! A real nginx (Debian's package) on a free loopback port, configured with the repository's
//! own `examples/nginx/sts-broker-gate.conf`, its three addresses replaced by the test's.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::broker::fresh_dir;

/// The example configuration, as shipped.
const SNIPPET: &str = include_str!("../../../examples/nginx/sts-broker-gate.conf");

/// A running nginx; stopped when dropped.
pub(crate) struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Nginx {
    /// nginx in front of `api`, asking the gate at `gate`. `None` when nginx is not installed,
    /// unless `STS_BROKER_REQUIRE_NGINX` is set (CI installs it and sets it), where it fails.
    pub(crate) async fn start(gate: SocketAddr, api: SocketAddr) -> Option<Self> {
        let Some(bin) = nginx_binary() else {
            assert!(
                std::env::var_os("STS_BROKER_REQUIRE_NGINX").is_none(),
                "nginx is required (STS_BROKER_REQUIRE_NGINX) but not installed"
            );
            eprintln!("skipped: nginx is not installed (apt-get install nginx)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let snippet = SNIPPET
            .replace("127.0.0.1:8081", &gate.to_string())
            .replace("127.0.0.1:9000", &api.to_string())
            .replace("127.0.0.1:8088", &addr.to_string());
        assert_ne!(snippet, SNIPPET, "the example's addresses changed");
        let dir = fresh_dir("nginx");
        std::fs::write(dir.join("sts-broker-gate.conf"), snippet).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 include {d}/sts-broker-gate.conf;\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                nginx.child.try_wait().unwrap().is_none(),
                "nginx exited: {}",
                nginx.error_log()
            );
            assert!(Instant::now() < deadline, "nginx did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Some(nginx)
    }

    /// nginx's error log so far.
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
