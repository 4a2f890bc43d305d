//! Chaos: `kill -9` of the real binary in the middle of IAM writes, MFA enables and MFA
//! sign-ins under concurrent load, then a restart, several times over.
//!
//! What the store promises (ARCHITECTURE.md, "One request" and "Invariants"): every request's
//! writes run in a savepoint of one transaction per batch, and a request is answered only once
//! its batch has committed, the index has caught up and its audit line is durable. So across a
//! kill, for the requests this test sent:
//! - an acknowledged (answered 200) write is there after the restart, and so is its audit line;
//! - an unanswered one is there whole or not at all: a device is either enabled for its user
//!   (both listings say so, its enabling codes spent) or unassigned in both, never one of each;
//!   a user has at most the one key the test asked for;
//! - a code accepted by GetSessionToken before a kill is refused after it (and so are the codes
//!   that enabled a device);
//! - the database passes `PRAGMA integrity_check` and the audit log has no torn line.
//!
//! The kill point is a number of acknowledged answers drawn from a seeded generator, not a
//! timer: which requests are in flight at that moment varies from run to run, the checks hold
//! for any of them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aws_sdk_iam::operation::RequestId as _;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::support::audit::audit_text_in;
use crate::support::clients::{iam_at, root_creds_in, sts_at};
use crate::support::process::{ServerProcess, integrity_check};
use crate::support::totp::{Totp, step_at};
use crate::support::{Creds, Failure, fresh_dir, wall_now};

/// Kill-and-restart rounds.
const ROUNDS: usize = 10;
/// Concurrent clients in a round.
const WORKERS: usize = 6;
/// Most new users a client starts in one round (the kill normally comes first).
const USERS_PER_ROUND: usize = 12;

/// How a call ended, as a client can know it.
enum Fate<T> {
    /// Answered 200: acknowledged, with its request id.
    Acked(T, String),
    /// Answered with an AWS error: it changed nothing.
    Refused(String),
    /// No complete answer (the broker died): it may or may not have happened.
    Unknown,
}

fn fate<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    rid: impl Fn(&T) -> Option<String>,
) -> Fate<T>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(out) => {
            let id = rid(&out).expect("every answer carries a request id");
            Fate::Acked(out, id)
        }
        Err(e) => {
            let f = Failure::of(&e);
            assert!(f.status < 500, "the broker answered a server error: {f:?}");
            // No status, or a 200 whose body was cut: the write may have committed.
            if f.status == 0 || f.status == 200 {
                Fate::Unknown
            } else {
                Fate::Refused(f.code)
            }
        }
    }
}

/// What the test knows of one state change.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    NotSent,
    Acked(String),
    Unknown,
}

impl Known {
    fn acked(&self) -> bool {
        matches!(self, Self::Acked(_))
    }
}

/// One user of the test, and everything sent for it.
struct UserRec {
    name: String,
    created: Known,
    /// The access key CreateAccessKey returned, with that request's id.
    key: Option<(Creds, String)>,
    key_sent: bool,
    device: Option<DeviceRec>,
}

struct DeviceRec {
    serial: String,
    /// Known once CreateVirtualMFADevice was answered.
    totp: Option<Totp>,
    created: Known,
    enabled: Known,
    /// The step of the second enabling code.
    enable_step: i64,
    deactivated: Known,
    /// Highest step ever sent for this device (answered or not).
    sent_step: i64,
    /// Codes GetSessionToken accepted (step, request id); `bool`: replay already checked.
    accepted: Vec<(i64, String, bool)>,
    enable_codes_checked: bool,
    /// An unanswered enable found applied after a restart.
    enable_applied: bool,
}

impl DeviceRec {
    /// The device can take a GetSessionToken: enabled for sure, and not (maybe) deactivated.
    fn usable(&self) -> bool {
        (self.enabled.acked() || self.enable_applied)
            && self.deactivated == Known::NotSent
            && self.totp.is_some()
    }
}

/// A seeded xorshift generator: the same choices for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Round {
    url: String,
    root: Creds,
    account: String,
    acks: AtomicUsize,
    kill_after: usize,
    killed: AtomicBool,
    kill_now: tokio::sync::Notify,
}

impl Round {
    fn ack(&self) {
        if self.acks.fetch_add(1, Ordering::SeqCst) + 1 == self.kill_after {
            self.kill_now.notify_one();
        }
    }

    fn over(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// Counts of what the clients saw, for the closing line.
#[derive(Default)]
struct Tally {
    acked: usize,
    refused: usize,
    unknown: usize,
}

impl Tally {
    fn add<T>(&mut self, f: &Fate<T>) {
        match f {
            Fate::Acked(..) => self.acked += 1,
            Fate::Refused(_) => self.refused += 1,
            Fate::Unknown => self.unknown += 1,
        }
    }
}

/// GetSessionToken with the device's next unused code, if one is valid now.
async fn sign_in(round: &Round, user: &mut UserRec, tally: &mut Tally) {
    let Some((creds, _)) = &user.key else { return };
    let Some(dev) = user.device.as_mut().filter(|d| d.usable()) else {
        return;
    };
    let now = step_at(wall_now());
    let step = (dev.sent_step + 1).max(now);
    if step > now + 1 {
        return;
    }
    dev.sent_step = step;
    let code = dev.totp.as_ref().unwrap().code(step);
    let f = fate(
        sts_at(&round.url, creds)
            .get_session_token()
            .serial_number(&dev.serial)
            .token_code(code)
            .send()
            .await,
        |o| aws_sdk_sts::operation::RequestId::request_id(o).map(str::to_owned),
    );
    tally.add(&f);
    if let Fate::Acked(_, rid) = f {
        dev.accepted.push((step, rid, false));
        round.ack();
    }
}

/// One new user, as far as the broker lets it get: user, key, device, enable, a sign-in, and
/// for one in four a deactivation by root.
async fn new_user(round: &Round, name: String, rng: &mut Rng, tally: &mut Tally) -> UserRec {
    let root_iam = iam_at(&round.url, &round.root);
    let mut user = UserRec {
        name: name.clone(),
        created: Known::Unknown,
        key: None,
        key_sent: false,
        device: None,
    };
    let f = fate(root_iam.create_user().user_name(&name).send().await, |o| {
        o.request_id().map(str::to_owned)
    });
    tally.add(&f);
    match f {
        Fate::Acked(_, rid) => {
            user.created = Known::Acked(rid);
            round.ack();
        }
        Fate::Refused(code) => panic!("CreateUser {name} refused: {code}"),
        Fate::Unknown => return user,
    }
    if round.over() {
        return user;
    }
    user.key_sent = true;
    let f = fate(
        root_iam.create_access_key().user_name(&name).send().await,
        |o| o.request_id().map(str::to_owned),
    );
    tally.add(&f);
    match f {
        Fate::Acked(out, rid) => {
            let k = out.access_key.unwrap();
            user.key = Some((
                Creds::new(&k.access_key_id, &k.secret_access_key, None),
                rid,
            ));
            round.ack();
        }
        Fate::Refused(code) => panic!("CreateAccessKey {name} refused: {code}"),
        Fate::Unknown => return user,
    }
    if round.over() {
        return user;
    }
    let creds = user.key.as_ref().unwrap().0.clone();
    let iam = iam_at(&round.url, &creds);
    let mut dev = DeviceRec {
        serial: format!("arn:aws:iam::{}:mfa/{name}", round.account),
        totp: None,
        created: Known::Unknown,
        enabled: Known::NotSent,
        enable_step: 0,
        deactivated: Known::NotSent,
        sent_step: 0,
        accepted: Vec::new(),
        enable_codes_checked: false,
        enable_applied: false,
    };
    let f = fate(
        iam.create_virtual_mfa_device()
            .virtual_mfa_device_name(&name)
            .send()
            .await,
        |o| o.request_id().map(str::to_owned),
    );
    tally.add(&f);
    match f {
        Fate::Acked(out, rid) => {
            let d = out.virtual_mfa_device.unwrap();
            assert_eq!(d.serial_number, dev.serial);
            let seed = String::from_utf8(d.base32_string_seed.unwrap().into_inner()).unwrap();
            dev.totp = Some(Totp::from_base32(&seed).unwrap());
            dev.created = Known::Acked(rid);
            round.ack();
        }
        Fate::Refused(code) => panic!("CreateVirtualMFADevice {name} refused: {code}"),
        Fate::Unknown => {
            user.device = Some(dev);
            return user;
        }
    }
    if round.over() {
        user.device = Some(dev);
        return user;
    }
    let totp = dev.totp.clone().unwrap();
    let step = step_at(wall_now());
    dev.enable_step = step;
    dev.sent_step = step;
    dev.enabled = Known::Unknown;
    let f = fate(
        iam.enable_mfa_device()
            .user_name(&name)
            .serial_number(&dev.serial)
            .authentication_code1(totp.code(step - 1))
            .authentication_code2(totp.code(step))
            .send()
            .await,
        |o| o.request_id().map(str::to_owned),
    );
    tally.add(&f);
    match f {
        Fate::Acked(_, rid) => {
            dev.enabled = Known::Acked(rid);
            round.ack();
        }
        Fate::Refused(code) => panic!("EnableMFADevice {name} refused: {code}"),
        Fate::Unknown => {
            user.device = Some(dev);
            return user;
        }
    }
    user.device = Some(dev);
    if round.over() {
        return user;
    }
    sign_in(round, &mut user, tally).await;
    if round.over() || rng.below(4) != 0 {
        return user;
    }
    let dev = user.device.as_mut().unwrap();
    dev.deactivated = Known::Unknown;
    let f = fate(
        root_iam
            .deactivate_mfa_device()
            .user_name(&name)
            .serial_number(&dev.serial)
            .send()
            .await,
        |o| o.request_id().map(str::to_owned),
    );
    tally.add(&f);
    match f {
        Fate::Acked(_, rid) => {
            dev.deactivated = Known::Acked(rid);
            round.ack();
        }
        Fate::Refused(code) => panic!("DeactivateMFADevice {name} refused: {code}"),
        Fate::Unknown => {}
    }
    user
}

/// One client of a round: sign-ins with its earlier users' devices, then new users, until the
/// broker is killed.
async fn worker(
    round: Arc<Round>,
    id: usize,
    round_no: usize,
    mut users: Vec<UserRec>,
    seed: u64,
) -> (Vec<UserRec>, Tally) {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..USERS_PER_ROUND {
        if round.over() {
            break;
        }
        for u in users.iter_mut() {
            if round.over() {
                break;
            }
            sign_in(&round, u, &mut tally).await;
        }
        if round.over() {
            break;
        }
        let name = format!("chaos-{round_no}-{id}-{i}");
        let user = new_user(&round, name, &mut rng, &mut tally).await;
        users.push(user);
    }
    (users, tally)
}

/// What the audit log owes an acknowledged write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Required,
    Counted,
    None,
}

/// What the restarted broker shows, checked against everything the clients were told.
struct Checked {
    acked_writes: usize,
    /// Acknowledged MFA-device changes whose audit line is missing.
    device_changes_unaudited: usize,
    replays_in_window: usize,
    unknown_resolved: usize,
}

async fn verify(
    server: &ServerProcess,
    data_dir: &Path,
    root: &Creds,
    users: &mut [UserRec],
) -> Checked {
    assert_eq!(integrity_check(&data_dir.join("sts-broker.db")), "ok");

    // The audit log: every line whole, and the request ids of every success.
    let text = audit_text_in(data_dir);
    let mut audited = HashSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a torn audit line ({e}): {line:?}"));
        if v["outcome"] == "success" {
            audited.insert(v["request_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the audit log ends mid-line"
    );

    let iam = iam_at(&server.url, root);
    let listed = iam.list_users().max_items(1000).send().await.unwrap();
    assert!(!listed.is_truncated);
    let names: HashSet<String> = listed.users.into_iter().map(|u| u.user_name).collect();
    let devices = iam
        .list_virtual_mfa_devices()
        .max_items(1000)
        .send()
        .await
        .unwrap();
    assert!(!devices.is_truncated);
    let assigned: HashMap<String, Option<String>> = devices
        .virtual_mfa_devices
        .into_iter()
        .map(|d| (d.serial_number, d.user.map(|u| u.user_name)))
        .collect();

    let mut checked = Checked {
        acked_writes: 0,
        device_changes_unaudited: 0,
        replays_in_window: 0,
        unknown_resolved: 0,
    };
    let (mut acked, mut unaudited) = (0, 0);
    // Credentials leave only once their audit line is durable (Line::Required); an MFA-device
    // change is answered once committed and its line written after (README.md, audit log), so
    // a kill between the two loses the line (Line::Counted); IAM user and key changes have none.
    let mut audited_if = |known: &Known, line: Line, what: &str| {
        if let Known::Acked(rid) = known {
            acked += 1;
            if line != Line::None && !audited.contains(rid) {
                assert!(
                    line != Line::Required,
                    "{what}: acknowledged, no audit line ({rid})"
                );
                unaudited += 1;
            }
        }
    };
    let now = step_at(wall_now());
    let mut code_refused = Vec::new();
    for u in users.iter_mut() {
        let exists = names.contains(&u.name);
        match &u.created {
            Known::Acked(_) => assert!(exists, "{}: acknowledged CreateUser lost", u.name),
            Known::Unknown if exists => checked.unknown_resolved += 1,
            _ => {}
        }
        audited_if(&u.created, Line::None, "CreateUser");
        if !exists {
            assert!(u.key.is_none() && u.device.is_none(), "{}: gone", u.name);
            continue;
        }
        let keys = iam
            .list_access_keys()
            .user_name(&u.name)
            .send()
            .await
            .unwrap()
            .access_key_metadata;
        assert!(
            keys.len() <= usize::from(u.key_sent),
            "{}: keys {keys:?}",
            u.name
        );
        if let Some((creds, rid)) = &u.key {
            audited_if(&Known::Acked(rid.clone()), Line::None, "CreateAccessKey");
            assert_eq!(keys.len(), 1, "{}: acknowledged key lost", u.name);
            let arn = sts_at(&server.url, creds)
                .get_caller_identity()
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: acknowledged key refused: {e:?}", u.name))
                .arn
                .unwrap();
            assert!(arn.ends_with(&format!(":user/{}", u.name)), "{arn}");
        }
        let Some(dev) = u.device.as_mut() else {
            continue;
        };
        let in_virtual = assigned.get(&dev.serial);
        if dev.created.acked() {
            assert!(
                in_virtual.is_some(),
                "{}: acknowledged device lost",
                dev.serial
            );
        }
        for (known, what) in [
            (&dev.created, "CreateVirtualMFADevice"),
            (&dev.enabled, "EnableMFADevice"),
            (&dev.deactivated, "DeactivateMFADevice"),
        ] {
            audited_if(known, Line::Counted, what);
        }
        let Some(assignment) = in_virtual else {
            assert_eq!(dev.enabled, Known::NotSent, "{}", dev.serial);
            continue;
        };
        // Both views of the assignment agree: never enabled in one and free in the other.
        let mfa = iam
            .list_mfa_devices()
            .user_name(&u.name)
            .send()
            .await
            .unwrap()
            .mfa_devices;
        let listed_for_user = mfa.iter().any(|d| d.serial_number == dev.serial);
        assert_eq!(
            assignment.as_deref() == Some(u.name.as_str()),
            listed_for_user,
            "{}: assigned to {assignment:?} in ListVirtualMFADevices, listed for {}: {listed_for_user}",
            dev.serial,
            u.name
        );
        assert!(assignment.is_none() || assignment.as_deref() == Some(u.name.as_str()));
        let enabled_now = listed_for_user;
        match (&dev.enabled, &dev.deactivated) {
            (Known::Acked(_), Known::NotSent) => {
                assert!(enabled_now, "{}: acknowledged enable lost", dev.serial)
            }
            (_, Known::Acked(_)) => {
                assert!(
                    !enabled_now,
                    "{}: acknowledged deactivation lost",
                    dev.serial
                )
            }
            (Known::NotSent, _) => assert!(!enabled_now, "{}", dev.serial),
            _ => checked.unknown_resolved += 1,
        }
        // Enabled (acknowledged or not): its enabling codes are spent.
        if enabled_now && !dev.enable_codes_checked {
            dev.enable_codes_checked = true;
            if let (Some(totp), Some((creds, _))) = (&dev.totp, &u.key) {
                for step in [dev.enable_step - 1, dev.enable_step] {
                    code_refused.push((
                        creds.clone(),
                        dev.serial.clone(),
                        totp.code(step),
                        step,
                        true,
                    ));
                }
            }
            // An unanswered enable that happened: the device is usable from now on.
            dev.enable_applied = true;
        }
        // Every accepted code is refused after the kill.
        if let (Some(totp), Some((creds, _))) = (&dev.totp, &u.key) {
            for (step, rid, replayed) in dev.accepted.iter_mut() {
                audited_if(
                    &Known::Acked(rid.clone()),
                    Line::Required,
                    "GetSessionToken",
                );
                if !*replayed {
                    *replayed = true;
                    code_refused.push((
                        creds.clone(),
                        dev.serial.clone(),
                        totp.code(*step),
                        *step,
                        enabled_now,
                    ));
                }
            }
        }
    }
    checked.acked_writes = acked;
    checked.device_changes_unaudited = unaudited;
    for (creds, serial, code, step, enabled) in code_refused {
        let r = sts_at(&server.url, &creds)
            .get_session_token()
            .serial_number(&serial)
            .token_code(&code)
            .send()
            .await;
        let f = Failure::of(&r.expect_err("a spent code was accepted after a kill -9"));
        assert_eq!((f.status, f.code.as_str()), (403, "AccessDenied"), "{f:?}");
        // On an enabled device, within the broker's window (±1 step), only the replay rule can
        // have refused it.
        if enabled && step >= now - 1 {
            checked.replays_in_window += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_under_load() {
    let seed: u64 = std::env::var("STS_BROKER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a0_5000_0008);
    let mut rng = Rng(seed);
    let data_dir = fresh_dir("chaos").join("data");
    let mut server = ServerProcess::start(&data_dir, "chaos-0").await;
    let root = root_creds_in(&data_dir);
    let root_arn = sts_at(&server.url, &root)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let account = root_arn.split(':').nth(4).unwrap().to_owned();
    let mut by_worker: Vec<Vec<UserRec>> = (0..WORKERS).map(|_| Vec::new()).collect();
    let (mut tally, mut totals) = (Tally::default(), (0, 0, 0));
    let mut unaudited = 0;
    for round_no in 0..ROUNDS {
        let round = Arc::new(Round {
            url: server.url.clone(),
            root: root.clone(),
            account: account.clone(),
            acks: AtomicUsize::new(0),
            kill_after: 4 + rng.below(36) as usize,
            killed: AtomicBool::new(false),
            kill_now: tokio::sync::Notify::new(),
        });
        let tasks: Vec<_> = std::mem::take(&mut by_worker)
            .into_iter()
            .enumerate()
            .map(|(id, users)| {
                tokio::spawn(worker(
                    Arc::clone(&round),
                    id,
                    round_no,
                    users,
                    rng.next() | 1,
                ))
            })
            .collect();
        round.kill_now.notified().await;
        round.killed.store(true, Ordering::SeqCst);
        server.kill_9();
        for t in tasks {
            let (users, t) = t.await.unwrap();
            by_worker.push(users);
            tally.acked += t.acked;
            tally.refused += t.refused;
            tally.unknown += t.unknown;
        }
        server = ServerProcess::start(&data_dir, &format!("chaos-{}", round_no + 1)).await;
        let mut all: Vec<UserRec> = by_worker.iter_mut().flat_map(std::mem::take).collect();
        let c = verify(&server, &data_dir, &root, &mut all).await;
        totals = (
            c.acked_writes,
            totals.1 + c.replays_in_window,
            totals.2 + c.unknown_resolved,
        );
        unaudited = c.device_changes_unaudited;
        // Give the users back to their workers (names carry the worker's id).
        for u in all {
            let id: usize = u.name.split('-').nth(2).unwrap().parse().unwrap();
            by_worker[id].push(u);
        }
    }
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!(
        "chaos: seed {seed:#x}, {ROUNDS} kills; answers: {} acknowledged, {} refused, {} unanswered; \
         {} acknowledged writes checked after the last kill, {} spent codes refused within the window, \
         {} unanswered writes found applied whole; {unaudited} acknowledged MFA-device changes \
         without an audit line",
        tally.acked, tally.refused, tally.unknown, totals.0, totals.1, totals.2
    );
    assert!(
        tally.acked >= ROUNDS * 4,
        "too little load: {}",
        tally.acked
    );
    assert!(totals.1 > 0, "no replay was checked within the TOTP window");
}
