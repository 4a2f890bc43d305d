//! A TOTP code is accepted once (README.md): a replay reads exactly as a wrong code, and concurrent
//! requests with one code have one winner (the refusal:
//! https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html). That a spent
//! code stays spent across a restart is in durability.rs.

use std::sync::Arc;

use crate::support::mfa::{enabled_device, session_with_mfa, wrong_code};
use crate::support::texts;
use crate::support::{TestBroker, assert_sdk_failure, failure};

#[tokio::test]
async fn replayed_code_is_refused_like_a_wrong_one() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    // The enabling codes are spent.
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0)).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    b.clock.advance(30);
    let code = device.code_at(b.now(), 0);
    session_with_mfa(&b, &alice, &device.serial, &code)
        .await
        .unwrap();
    let wrong = failure(
        session_with_mfa(
            &b,
            &alice,
            &device.serial,
            &wrong_code(&device.key, b.now()),
        )
        .await,
    );
    // Two replays: with the wrong code and the replay below, four failures, one short of a lock.
    for _ in 0..2 {
        let replay = failure(session_with_mfa(&b, &alice, &device.serial, &code).await);
        assert_sdk_failure!(&replay, 403, "AccessDenied", texts::MFA_INVALID_CODE);
        assert_eq!(replay, wrong, "a replay reads exactly as a wrong code");
    }
    // Still within the window 29 s later: still refused. The next step's code works.
    b.clock.advance(29);
    assert_sdk_failure!(
        session_with_mfa(&b, &alice, &device.serial, &code).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    b.clock.advance(1);
    session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 0))
        .await
        .unwrap();
    let lines = b
        .audit_until(|l| l.iter().filter(|e| e["reason"] == "replayed").count() >= 4)
        .await;
    assert_eq!(
        lines
            .iter()
            .filter(|e| e["action"] == "GetSessionToken" && e["reason"] == "wrong_code")
            .count(),
        1
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_code_have_exactly_one_winner() {
    const PARALLEL: usize = 32;
    const ROUNDS: usize = 5;
    let b = Arc::new(TestBroker::start().await);
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let mut winners_per_round = Vec::new();
    for _ in 0..ROUNDS {
        // Past any lock-out the losers of the previous round caused.
        b.clock.advance(20 * 60);
        let code = device.code_at(b.now(), 0);
        // Fresh clients each round: the SDK corrects its signing time by the skew it saw in
        // earlier responses' Date headers (the wall clock), which moving the test clock breaks.
        let clients: Vec<_> = (0..PARALLEL).map(|_| b.sts(&alice)).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(PARALLEL));
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|sts| {
                let (barrier, serial, code) =
                    (Arc::clone(&barrier), device.serial.clone(), code.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    sts.get_session_token()
                        .serial_number(serial)
                        .token_code(code)
                        .send()
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => winners += 1,
                refused => {
                    assert_sdk_failure!(refused, 403, "AccessDenied", texts::MFA_INVALID_CODE)
                }
            }
        }
        winners_per_round.push(winners);
    }
    assert_eq!(winners_per_round, vec![1; ROUNDS]);
    let lines = b
        .audit_until(|l| {
            l.iter()
                .filter(|e| e["action"] == "GetSessionToken")
                .count()
                >= PARALLEL * ROUNDS
        })
        .await;
    let successes = lines
        .iter()
        .filter(|e| e["action"] == "GetSessionToken" && e["outcome"] == "success")
        .count();
    assert_eq!(successes, ROUNDS);
    eprintln!(
        "concurrency: {ROUNDS} rounds x {PARALLEL} parallel GetSessionToken with one code: winners per round {winners_per_round:?}"
    );
    Arc::try_unwrap(b).ok().unwrap().stop().await;
}

#[tokio::test]
async fn two_brokers_on_one_data_dir_accept_a_code_once_and_audit_one_success() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let peer = b.peer().await;
    b.clock.advance(30);
    // Each broker's in-memory guard accepts the code; the store lets only one record it.
    let code = device.code_at(b.now(), 0);
    let (here, there) = tokio::join!(
        session_with_mfa(&b, &alice, &device.serial, &code),
        session_with_mfa(&peer, &alice, &device.serial, &code),
    );
    assert_eq!(
        usize::from(here.is_ok()) + usize::from(there.is_ok()),
        1,
        "exactly one winner: {here:?} / {there:?}"
    );
    let loser = if here.is_ok() { &peer } else { &b };
    assert_sdk_failure!(
        session_with_mfa(loser, &alice, &device.serial, &code).await,
        403,
        "AccessDenied",
        texts::MFA_INVALID_CODE,
    );
    // The audit logs tell the same story: one success, and only refusals besides.
    let gst = |node: &TestBroker| {
        node.audit_lines()
            .into_iter()
            .filter(|e| e["action"] == "GetSessionToken")
            .collect::<Vec<_>>()
    };
    crate::support::eventually(std::time::Duration::from_secs(5), || {
        let seen = gst(&b).len() + gst(&peer).len();
        async move { (seen >= 3).then_some(()) }
    })
    .await;
    let all: Vec<_> = gst(&b).into_iter().chain(gst(&peer)).collect();
    let successes = all.iter().filter(|e| e["outcome"] == "success").count();
    assert_eq!(successes, 1, "{all:#?}");
    assert_eq!(
        all.iter()
            .filter(|e| e["outcome"] == "failure" && e["reason"] == "replayed")
            .count(),
        2
    );
    peer.stop().await;
    b.stop().await;
}
