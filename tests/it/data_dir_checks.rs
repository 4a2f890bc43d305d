//! The data dir is checked, not trusted (README.md, the data dir): the database files are
//! the broker's user's alone, and the broker refuses to start on a data dir or a master key
//! file that another local user owns or can write, saying how to fix it.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::support::process::{Launch, ServerProcess, run_admin};
use crate::support::{TestBroker, TestClock, fresh_dir, wall_now};

/// The owner of the planted files: `nobody` on most systems.
const OTHER_UID: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives `path` to another user; `false` when this process may not (it is not root).
fn give_away(path: &Path) -> bool {
    match std::os::unix::fs::chown(path, Some(OTHER_UID), None) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("not root: the owner checks of this test are skipped");
            false
        }
        Err(e) => panic!("chown {}: {e}", path.display()),
    }
}

/// Gives `path` back to root, the only user [`give_away`] works for.
fn take_back(path: &Path) {
    std::os::unix::fs::chown(path, Some(0), None).unwrap();
}

/// A valid master key, as another user would plant it.
fn some_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7_u8; 32])
}

/// `sts-broker serve` on `data_dir`: `Ok` if it started (it is stopped again), else its stderr.
async fn serve(data_dir: &Path, launch: &Launch) -> Result<(), String> {
    ServerProcess::launch(data_dir, "serve", launch)
        .await
        .map(drop)
}

/// A data dir the real broker has created and stopped.
async fn made_data_dir(tag: &str) -> PathBuf {
    let data_dir = fresh_dir(tag).join("data");
    serve(&data_dir, &Launch::default()).await.unwrap();
    data_dir
}

#[tokio::test]
async fn the_database_files_are_the_owners_alone() {
    let data_dir = fresh_dir("db-modes").join("data");
    let b = TestBroker::boot_on(&data_dir, TestClock::at(wall_now())).await;
    // While the broker runs, the database is in WAL mode with its -wal and -shm files.
    for file in ["sts-broker.db", "sts-broker.db-wal", "sts-broker.db-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data_dir.join("master.key")), 0o600);
    assert_eq!(mode(&data_dir.join("root-credentials.csv")), 0o600);
    assert_eq!(mode(&data_dir), 0o700);
    let (_, clock) = b.stop().await;

    // Files an earlier version left readable by everyone are tightened at the next start.
    chmod(&data_dir.join("sts-broker.db"), 0o644);
    let b = TestBroker::boot_on(&data_dir, clock).await;
    for file in ["sts-broker.db", "sts-broker.db-wal", "sts-broker.db-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    b.stop().await;
}

#[tokio::test]
async fn a_master_key_planted_in_a_world_writable_data_dir_is_refused() {
    // Another local user finds the data dir writable, and puts a key of their own there before
    // the first start: every secret sealed with it would be theirs to read.
    let data_dir = fresh_dir("planted").join("data");
    std::fs::create_dir(&data_dir).unwrap();
    chmod(&data_dir, 0o777);
    let key = data_dir.join("master.key");
    std::fs::write(&key, some_key()).unwrap();
    chmod(&key, 0o644);
    let planted_by_other = give_away(&key);

    let refusal = serve(&data_dir, &Launch::default())
        .await
        .expect_err("the broker started on a world-writable data dir");
    let dir = data_dir.display();
    assert!(
        refusal.contains(&format!(
            "sts-broker: data dir: {dir} is writable by group or others (mode 0777)"
        )),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!("run `chmod go-w {dir}`")),
        "{refusal}"
    );
    assert!(!data_dir.join("sts-broker.db").exists());

    // With the directory fixed, the key itself is still refused.
    chmod(&data_dir, 0o700);
    let refusal = serve(&data_dir, &Launch::default())
        .await
        .expect_err("the broker started with a planted master key");
    let key_path = key.display();
    if planted_by_other {
        assert!(
            refusal.contains(&format!(
                "master key file {key_path} is owned by uid {OTHER_UID}, not by uid"
            )),
            "{refusal}"
        );
        assert!(refusal.contains("remove it"), "{refusal}");
    } else {
        assert!(
            refusal.contains(&format!("run `chmod 600 {key_path}`")),
            "{refusal}"
        );
    }
    assert!(!data_dir.join("sts-broker.db").exists());

    // Without it, the broker starts and makes its own.
    std::fs::remove_file(&key).unwrap();
    serve(&data_dir, &Launch::default()).await.unwrap();
    assert_ne!(std::fs::read_to_string(&key).unwrap(), some_key());
}

#[tokio::test]
async fn a_master_key_others_can_read_or_write_is_refused_until_fixed() {
    let data_dir = made_data_dir("key-mode").await;
    let key = data_dir.join("master.key");
    let key_path = key.display();
    for bad in [0o640, 0o620, 0o604, 0o602, 0o666] {
        chmod(&key, bad);
        let refusal = serve(&data_dir, &Launch::default())
            .await
            .expect_err("the broker started with an exposed master key");
        assert!(
            refusal.contains(&format!(
                "master key file {key_path} is readable or writable by group or others \
                 (mode {bad:04o}); run `chmod 600 {key_path}`"
            )),
            "{refusal}"
        );
    }
    // The operator's commands open the same data dir, and refuse it the same way.
    let out = run_admin(&["mfa", "deactivate", "--serial", "none"], &data_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("run `chmod 600"), "{stderr}");

    chmod(&key, 0o600);
    serve(&data_dir, &Launch::default()).await.unwrap();
    chmod(&key, 0o400);
    serve(&data_dir, &Launch::default()).await.unwrap();

    if give_away(&key) {
        let refusal = serve(&data_dir, &Launch::default())
            .await
            .expect_err("the broker started with another user's master key");
        assert!(
            refusal.contains(&format!(
                "master key file {key_path} is owned by uid {OTHER_UID}"
            )),
            "{refusal}"
        );
        take_back(&key);
        serve(&data_dir, &Launch::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_data_dir_others_can_write_or_own_is_refused_until_fixed() {
    let data_dir = made_data_dir("dir-mode").await;
    let dir = data_dir.display();
    for bad in [0o770, 0o757, 0o1777] {
        chmod(&data_dir, bad);
        let refusal = serve(&data_dir, &Launch::default())
            .await
            .expect_err("the broker started on a data dir others can write");
        assert!(
            refusal.contains(&format!(
                "data dir: {dir} is writable by group or others (mode {bad:04o})"
            )),
            "{refusal}"
        );
    }
    // Readable is fine: the files inside are not.
    chmod(&data_dir, 0o755);
    serve(&data_dir, &Launch::default()).await.unwrap();

    if give_away(&data_dir) {
        let refusal = serve(&data_dir, &Launch::default())
            .await
            .expect_err("the broker started on another user's data dir");
        assert!(
            refusal.contains(&format!("data dir: {dir} is owned by uid {OTHER_UID}")),
            "{refusal}"
        );
        assert!(refusal.contains("chown -R"), "{refusal}");
        take_back(&data_dir);
        serve(&data_dir, &Launch::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_master_key_from_the_environment_leaves_only_the_data_dir_to_check() {
    let data_dir = fresh_dir("env-key").join("data");
    std::fs::create_dir(&data_dir).unwrap();
    chmod(&data_dir, 0o700);
    // A key file that would be refused is not read when the environment supplies the key.
    let ignored = data_dir.join("master.key");
    std::fs::write(&ignored, "not even a key").unwrap();
    chmod(&ignored, 0o666);
    let launch = Launch::default().env("STS_BROKER_MASTER_KEY", &some_key());
    serve(&data_dir, &launch).await.unwrap();
    // The directory still is checked.
    chmod(&data_dir, 0o777);
    let refusal = serve(&data_dir, &launch)
        .await
        .expect_err("the broker started on a world-writable data dir");
    assert!(
        refusal.contains("is writable by group or others"),
        "{refusal}"
    );
}
