//! Replay protection survives `kill -9`: the real binary, the real clock, the Rust SDK. A code
//! accepted before the process is killed is refused after it restarts on the same data dir, and
//! identities created before the kill are still there.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{TotpKey, base32, step_at};

use crate::harness::{
    Creds, TestBroker, audit_lines_in, create_virtual_device, eventually, fresh_dir, iam_at,
    root_creds_in, sdk_failure, sts_at, wall_now,
};

const INVALID_CODE: &str = "MultiFactorAuthentication failed with invalid MFA one time pass code.";

/// The real `sts-broker serve` process; killed with SIGKILL when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts the binary on a free loopback port and waits until it accepts connections.
    async fn start(data_dir: &Path, tag: &str) -> Self {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log = std::fs::File::create(data_dir.with_extension(format!("{tag}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sts-broker"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
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

    /// `kill -9` (std's `Child::kill` sends SIGKILL) and reap.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "{status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn accepted_code_is_still_refused_after_kill_9_and_restart() {
    let data_dir: PathBuf = fresh_dir("kill9").join("data");
    let first = Server::start(&data_dir, "first").await;
    let root = root_creds_in(&data_dir);
    let iam = iam_at(&first.url, &root);
    iam.create_user().user_name("alice").send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let alice = Creds::new(&key.access_key_id, &key.secret_access_key, None);

    // Alice creates and enables her device with two consecutive codes of the real clock.
    let device = iam_at(&first.url, &alice)
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("alice-phone")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device
        .unwrap();
    let seed = String::from_utf8(device.base32_string_seed.unwrap().into_inner()).unwrap();
    let totp = TotpKey::new(&base32::decode(&seed).unwrap()).unwrap();
    let serial = device.serial_number;
    let enabled_step = step_at(wall_now());
    iam_at(&first.url, &alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&serial)
        .authentication_code1(totp.code(enabled_step - 1).to_digits())
        .authentication_code2(totp.code(enabled_step).to_digits())
        .send()
        .await
        .unwrap();

    // The next step's code (t or t+1 for the broker, whenever it reads its clock) is accepted.
    let code = totp.code(enabled_step + 1).to_digits();
    let session = sts_at(&first.url, &alice)
        .get_session_token()
        .serial_number(&serial)
        .token_code(&code)
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    assert!(session.access_key_id.starts_with("ASIA"));
    // A second key made just before the kill; then SIGKILL, no chance to flush anything.
    let late_key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let accepted_at = Instant::now();
    first.kill_9();

    let second = Server::start(&data_dir, "second").await;
    let restarted_in = accepted_at.elapsed();
    let replay = sts_at(&second.url, &alice)
        .get_session_token()
        .serial_number(&serial)
        .token_code(&code)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        sdk_failure(&replay),
        (403, "AccessDenied".to_owned(), INVALID_CODE.to_owned())
    );
    // Refused as a replay, not because time moved the code out of the window.
    let reason = eventually(Duration::from_secs(5), || async {
        audit_lines_in(&data_dir)
            .iter()
            .rev()
            .find(|e| e["action"] == "GetSessionToken" && e["outcome"] == "failure")
            .map(|e| e["reason"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(reason, "replayed");

    // Identities made before the kill are all there.
    let root_iam = iam_at(&second.url, &root);
    let users = root_iam.list_users().send().await.unwrap().users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_name, "alice");
    let late = Creds::new(&late_key.access_key_id, &late_key.secret_access_key, None);
    for creds in [&alice, &late] {
        let who = sts_at(&second.url, creds)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        assert!(who.arn().unwrap().ends_with(":user/alice"));
    }
    let devices = root_iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .mfa_devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].serial_number, serial);
    // Session credentials minted before the kill verify on the restarted process.
    let session = Creds::new(
        &session.access_key_id,
        &session.secret_access_key,
        Some(&session.session_token),
    );
    sts_at(&second.url, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    eprintln!(
        "kill -9: code accepted, process killed, restarted and the same code refused as a replay ({} ms from acceptance to restart)",
        restarted_in.as_millis()
    );
    drop(second);
}

#[tokio::test]
async fn drift_and_the_last_accepted_step_survive_a_restart() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = create_virtual_device(&b.iam(&alice), "alice-phone").await;
    // A device five steps ahead, enabled with its codes.
    let now = b.now();
    b.iam(&alice)
        .enable_mfa_device()
        .user_name("alice")
        .serial_number(&device.serial)
        .authentication_code1(device.code_at(now, 4))
        .authentication_code2(device.code_at(now, 5))
        .send()
        .await
        .unwrap();
    b.clock.advance(60);
    let code = device.code_at(b.now(), 5);
    let gst = |b: &TestBroker, code: String| {
        let sts = b.sts(&alice);
        let serial = device.serial.clone();
        async move {
            sts.get_session_token()
                .serial_number(serial)
                .token_code(code)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_failure(&e))
        }
    };
    gst(&b, code.clone()).await.unwrap();

    let config = b.config.clone();
    let (_, clock) = b.stop().await;
    let b = TestBroker::boot(config, clock).await;
    let refused = Err((403, "AccessDenied".to_owned(), INVALID_CODE.to_owned()));
    assert_eq!(gst(&b, code).await, refused, "replayed after the restart");
    b.clock.advance(30);
    assert_eq!(
        gst(&b, device.code_at(b.now(), 0)).await,
        refused,
        "the drift is remembered: our own step is outside the window"
    );
    gst(&b, device.code_at(b.now(), 5)).await.unwrap();
    b.stop().await;
}
