//! The gateway (`sts-broker gate --upstream`): a broker, the gate following its data dir, and a
//! real upstream, all on loopback. What it admits and with which identity headers, the body
//! byte for byte, every refusal and its audit line, and what it answers when the upstream
//! fails (`docs/gate.md`).

use std::time::{Duration, Instant};

use aws_sdk_iam::types::StatusType;
use sha2::{Digest as _, Sha256};

use crate::support::audit::gate_audit_until;
use crate::support::broker::{GateSetup, TestGate};
use crate::support::http::{RawResponse, Req, raw_http};
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::signing::OracleSigner;
use crate::support::texts;
use crate::support::upstream::{Behaviour, UPSTREAM_HEADER, Upstream, closed_port};
use crate::support::{Creds, TestBroker, eventually, session_creds};

/// Alice with her long-term key, an MFA-backed session and a plain session.
struct Alice {
    key: Creds,
    mfa_session: Creds,
    plain_session: Creds,
}

async fn alice(b: &TestBroker) -> Alice {
    let key = b.user_with_key("alice").await;
    let device = enabled_device(b, &key, "alice", "alice-phone").await;
    let mfa = session_with_mfa(b, &key, &device.serial, &device.code_at(b.now(), 1))
        .await
        .unwrap();
    Alice {
        mfa_session: session_creds(&mfa),
        plain_session: b.session(&key).await,
        key,
    }
}

/// `req` signed by `creds` for `execute-api` at `time`, for the gate at `host`.
fn signed(creds: &Creds, time: i64, host: &str, req: &Req) -> Req {
    OracleSigner::new(creds, time)
        .service("execute-api")
        .sign(host, req)
}

async fn send(gate: &TestGate, req: &Req) -> RawResponse {
    raw_http(gate.addr, &req.wire(&gate.host())).await
}

/// A gateway error: status, `x-amzn-ErrorType`, and the JSON body's `__type` and `message`.
fn assert_refused(resp: &RawResponse, status: u16, code: &str, message: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.header("x-amzn-errortype"), Some(code));
    assert!(resp.header("x-amzn-requestid").is_some());
    let body: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(body["__type"], code);
    assert_eq!(body["message"], message, "{}", resp.body);
}

/// Every byte value, several times over, and not valid UTF-8.
fn binary_body() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 256) as u8).collect()
}

#[tokio::test]
async fn an_mfa_session_is_admitted_and_the_upstream_sees_who_with_the_exact_body() {
    let b = TestBroker::start().await;
    let a = alice(&b).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(format!("{}/api", upstream.url())),
            require_mfa: true,
            max_mfa_age_secs: Some(300),
            ..GateSetup::default()
        },
    )
    .await;
    let body = binary_body();
    let mut req = Req::post("");
    req.path = "/orders/42".into();
    req.query = "expand=items&limit=5".into();
    req.body = body.clone();
    let req = req
        .replace("content-type", "application/octet-stream")
        // Copies of the identity headers a client might try: never forwarded.
        .header(
            "x-sts-broker-principal-arn",
            "arn:aws:iam::999999999999:root",
        )
        .header("x-sts-broker-mfa-authenticated", "true")
        .header("x-sts-broker-anything", "spoofed");
    b.clock.advance(7);
    // Once with the body hashed by the gate, once streamed against a declared hash.
    for signer in [
        OracleSigner::new(&a.mfa_session, b.now()).service("execute-api"),
        OracleSigner::new(&a.mfa_session, b.now())
            .service("execute-api")
            .with_content_sha256(),
    ] {
        let resp = send(&gate, &signer.sign(&gate.host(), &req)).await;
        assert_eq!(resp.status, 201, "{}", resp.body);
        assert_eq!(resp.header(UPSTREAM_HEADER), Some("from-the-upstream"));
        let digest = hex::encode(Sha256::digest(&body));
        assert_eq!(
            resp.body,
            format!("received {} bytes, sha256 {digest}", body.len())
        );
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.target, "/api/orders/42?expand=items&limit=5");
        assert_eq!(s.body.as_deref(), Some(body.as_slice()));
        assert!(s.complete);
        assert_eq!(
            s.headers_starting("x-sts-broker-"),
            [
                ("x-sts-broker-principal-arn".into(), b.user_arn("alice")),
                ("x-sts-broker-account".into(), b.account_id.clone()),
                (
                    "x-sts-broker-user-id".into(),
                    s.header("x-sts-broker-user-id").unwrap().to_owned()
                ),
                ("x-sts-broker-mfa-authenticated".into(), "true".into()),
                ("x-sts-broker-mfa-age".into(), "7".into()),
            ]
        );
        assert!(
            s.header("x-sts-broker-user-id")
                .unwrap()
                .starts_with("AIDA")
        );
        for gone in [
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ] {
            assert_eq!(s.header(gone), None, "{gone} reached the upstream");
        }
        assert_eq!(s.header("host"), Some(upstream.addr.to_string().as_str()));
        assert_eq!(s.header("x-forwarded-host"), Some(gate.host().as_str()));
        assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(s.header("content-type"), Some("application/octet-stream"));
    }
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_presigned_url_is_admitted_and_its_signature_never_reaches_the_upstream() {
    let b = TestBroker::start().await;
    let a = alice(&b).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(upstream.url()),
            require_mfa: true,
            ..GateSetup::default()
        },
    )
    .await;
    let mut req = Req::get("report=monthly");
    req.path = "/reports".into();
    let presigned = OracleSigner::new(&a.mfa_session, b.now())
        .service("execute-api")
        .presigned(300)
        .sign(&gate.host(), &req);
    assert!(presigned.query.contains("X-Amz-Security-Token="));
    let resp = send(&gate, &presigned).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let seen = upstream.seen();
    assert_eq!(seen[0].target, "/reports?report=monthly");
    assert_eq!(
        seen[0].header("x-sts-broker-mfa-authenticated"),
        Some("true")
    );
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn refusals_under_require_mfa_are_403_with_a_clear_message_and_audited() {
    let b =
        TestBroker::start_with(crate::support::Setup::default().extra_region("eu-west-1")).await;
    let a = alice(&b).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(upstream.url()),
            require_mfa: true,
            max_mfa_age_secs: Some(300),
            ..GateSetup::default()
        },
    )
    .await;
    let host = gate.host();
    let mut req = Req::get("limit=5");
    req.path = "/orders".into();
    let now = b.now();

    for creds in [&a.key, &a.plain_session, &b.root] {
        let resp = send(&gate, &signed(creds, now, &host, &req)).await;
        assert_refused(&resp, 403, "AccessDenied", texts::GATE_MFA_REQUIRED);
    }
    let resp = send(&gate, &req).await;
    assert_refused(
        &resp,
        403,
        "MissingAuthenticationToken",
        texts::GATE_UNSIGNED,
    );

    let sts_signed = OracleSigner::new(&a.mfa_session, now).sign(&host, &req);
    let resp = send(&gate, &sts_signed).await;
    assert_refused(
        &resp,
        403,
        "SignatureDoesNotMatch",
        &texts::scope_service("execute-api"),
    );
    let elsewhere = OracleSigner::new(&a.mfa_session, now)
        .service("execute-api")
        .region("ap-south-2")
        .sign(&host, &req);
    assert_refused(
        &send(&gate, &elsewhere).await,
        403,
        "SignatureDoesNotMatch",
        &texts::scope_region("ap-south-2"),
    );
    // Another region the broker's configuration accepts is admitted.
    let eu = OracleSigner::new(&a.mfa_session, now)
        .service("execute-api")
        .region("eu-west-1")
        .sign(&host, &req);
    assert_eq!(send(&gate, &eu).await.status, 201);

    // Tampering with what was signed: the path, or the signature itself.
    let mut tampered = signed(&a.mfa_session, now, &host, &req);
    tampered.path = "/orders/all".into();
    assert_refused(
        &send(&gate, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    let good = signed(&a.mfa_session, now, &host, &req);
    let auth = good.get_header("authorization").unwrap();
    let flipped = format!(
        "{}{}",
        &auth[..auth.len() - 1],
        if auth.ends_with('0') { '1' } else { '0' }
    );
    assert_refused(
        &send(&gate, &good.clone().replace("authorization", &flipped)).await,
        403,
        "SignatureDoesNotMatch",
        texts::SIGNATURE_MISMATCH,
    );
    let unknown = Creds::new("AKIAEXAMPLEUNKNOWN00", "x", None);
    assert_refused(
        &send(&gate, &signed(&unknown, now, &host, &req)).await,
        403,
        "InvalidClientTokenId",
        texts::GATE_UNKNOWN_KEY,
    );

    // MFA older than --max-mfa-age.
    b.clock.advance(301);
    let later = b.now();
    assert_refused(
        &send(&gate, &signed(&a.mfa_session, later, &host, &req)).await,
        403,
        "AccessDenied",
        &texts::gate_mfa_too_old(301, 300),
    );
    // Expired session credentials (GetSessionToken's default is 12 hours).
    b.clock.advance(43_200);
    let expired = b.now();
    assert_refused(
        &send(&gate, &signed(&a.mfa_session, expired, &host, &req)).await,
        403,
        "ExpiredToken",
        texts::GATE_EXPIRED,
    );
    // A signature more than 15 minutes old.
    assert_refused(
        &send(&gate, &signed(&a.key, expired - 901, &host, &req)).await,
        403,
        "SignatureDoesNotMatch",
        &texts::signature_expired(expired - 901, expired),
    );

    // Only the one admitted request reached the upstream; every refusal has its audit line.
    assert_eq!(upstream.seen().len(), 1);
    let lines = gate_audit_until(&b.data_dir, |l| l.len() >= 12).await;
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "mfa_required",
            "mfa_required",
            "mfa_required",
            "unsigned",
            "bad_signature",
            "bad_signature",
            "bad_signature",
            "bad_signature",
            "unknown_key",
            "mfa_too_old",
            "expired",
            "bad_signature",
        ]
    );
    for l in &lines {
        assert_eq!(l["action"], "Gateway");
        assert_eq!(l["outcome"], "failure");
        assert!(l["path"].as_str().unwrap().starts_with("/orders"));
        assert_eq!(l["http_method"], "GET");
        assert_eq!(l["source_ip"], "127.0.0.1");
        assert_eq!(l["account"], b.account_id.as_str());
    }
    assert_eq!(lines[0]["access_key_id"], a.key.akid.as_str());
    assert_eq!(lines[0]["error_code"], "AccessDenied");
    let text = std::fs::read_to_string(b.data_dir.join("gate-audit.log")).unwrap();
    assert!(!text.contains(a.mfa_session.token.as_deref().unwrap()));
    assert!(!text.contains("limit=5"));
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_match_its_signed_hash_never_reaches_the_upstream_whole() {
    let b = TestBroker::start().await;
    let a = alice(&b).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(upstream.url()),
            require_mfa: true,
            ..GateSetup::default()
        },
    )
    .await;
    let mut req = Req::post("");
    req.body = vec![b'a'; 200_000];
    let declared = OracleSigner::new(&a.mfa_session, b.now())
        .service("execute-api")
        .with_content_sha256()
        .sign(&gate.host(), &req);
    // Same length, one byte changed at the very end: the signature (over the declared hash)
    // is valid, the body is not the one signed.
    let mut swapped = declared.clone();
    *swapped.body.last_mut().unwrap() = b'b';
    let resp = send(&gate, &swapped).await;
    assert_refused(
        &resp,
        403,
        "SignatureDoesNotMatch",
        texts::CONTENT_SHA256_MISMATCH,
    );
    let seen = upstream.seen();
    assert!(
        seen.iter().all(|s| !s.complete || s.body_len < 200_000),
        "the upstream received the whole tampered body"
    );
    // Without a declared hash, a body over max_body_bytes is refused before anything is sent.
    let mut big = Req::post("");
    big.body = vec![b'x'; 65_537];
    let big = signed(&a.mfa_session, b.now(), &gate.host(), &big);
    let resp = send(&gate, &big).await;
    assert_eq!(resp.status, 413, "{}", resp.body);
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("RequestEntityTooLarge")
    );
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_a_silent_one_504() {
    let b = TestBroker::start().await;
    let a = alice(&b).await;
    let down = closed_port().await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(format!("http://{down}")),
            ..GateSetup::default()
        },
    )
    .await;
    let req = Req::get("");
    let resp = send(&gate, &signed(&a.mfa_session, b.now(), &gate.host(), &req)).await;
    assert_refused(&resp, 502, "BadGateway", texts::GATE_UPSTREAM_UNREACHABLE);
    gate.stop().await;

    let silent = Upstream::start(Behaviour::NeverAnswer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(silent.url()),
            upstream_timeout_secs: Some(1),
            ..GateSetup::default()
        },
    )
    .await;
    let resp = send(&gate, &signed(&a.key, b.now(), &gate.host(), &req)).await;
    assert_refused(
        &resp,
        504,
        "GatewayTimeout",
        &texts::gate_upstream_timeout(1),
    );
    assert_eq!(silent.seen().len(), 1);
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_key_deactivated_on_the_broker_is_refused_by_the_gate_within_a_second() {
    let b = TestBroker::start().await;
    let a = alice(&b).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(upstream.url()),
            ..GateSetup::default()
        },
    )
    .await;
    let req = Req::get("");
    let now = b.now();
    for creds in [&a.key, &a.mfa_session] {
        assert_eq!(
            send(&gate, &signed(creds, now, &gate.host(), &req))
                .await
                .status,
            201
        );
    }
    b.iam(&b.root)
        .update_access_key()
        .user_name("alice")
        .access_key_id(&a.key.akid)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let deactivated = Instant::now();
    eventually(Duration::from_secs(5), || async {
        let resp = send(&gate, &signed(&a.key, now, &gate.host(), &req)).await;
        (resp.status == 403).then_some(())
    })
    .await;
    assert!(
        deactivated.elapsed() < Duration::from_secs(1),
        "took {:?}",
        deactivated.elapsed()
    );
    // The sessions it obtained go with it.
    assert_refused(
        &send(&gate, &signed(&a.mfa_session, now, &gate.host(), &req)).await,
        403,
        "InvalidClientTokenId",
        texts::GATE_SESSION_PARENT_GONE,
    );
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_gate_speaks_https_and_http2_with_the_brokers_tls_settings() {
    let dir = crate::support::fresh_dir("gate-tls");
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let b =
        TestBroker::start_with(crate::support::Setup::default().tls(&cert_path, &key_path)).await;
    let upstream = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            upstream: Some(upstream.url()),
            ..GateSetup::default()
        },
    )
    .await;
    let resp = crate::support::http::curl(vec![
        "--http2".into(),
        "--cacert".into(),
        cert_path.to_string_lossy().into_owned(),
        "--aws-sigv4".into(),
        "aws:amz:us-east-1:execute-api".into(),
        "--user".into(),
        format!("{}:{}", b.root.akid, b.root.secret),
        format!("https://{}/orders?limit=5", gate.host()),
    ])
    .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let seen = upstream.seen();
    assert_eq!(seen[0].target, "/orders?limit=5");
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen[0].header("x-sts-broker-principal-arn"),
        Some(b.root_arn().as_str())
    );
    assert_eq!(
        seen[0].header("x-sts-broker-mfa-authenticated"),
        Some("false")
    );
    gate.stop().await;
    b.stop().await;
}
