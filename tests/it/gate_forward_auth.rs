//! The forward-auth endpoint behind a real nginx, configured with the shipped
//! `examples/nginx/sts-broker-gate.conf`: admitted and refused requests, the identity headers
//! the API sees, and the requests it cannot judge without their body (`docs/gate.md`).

use sha2::{Digest as _, Sha256};

use crate::support::audit::gate_audit_until;
use crate::support::broker::{GateSetup, TestGate};
use crate::support::http::{RawResponse, Req, raw_http};
use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::nginx::Nginx;
use crate::support::signing::OracleSigner;
use crate::support::upstream::{Behaviour, Upstream};
use crate::support::{TestBroker, session_creds};

#[tokio::test]
async fn nginx_auth_request_admits_mfa_sessions_and_refuses_the_rest() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    let mfa = session_creds(
        &session_with_mfa(&b, &alice, &device.serial, &device.code_at(b.now(), 1))
            .await
            .unwrap(),
    );
    let plain = b.session(&alice).await;
    let api = Upstream::start(Behaviour::Answer).await;
    let gate = TestGate::start(
        &b,
        GateSetup {
            require_mfa: true,
            ..GateSetup::default()
        },
    )
    .await;
    let Some(nginx) = Nginx::start(gate.addr, api.addr).await else {
        return;
    };
    let host = nginx.addr.to_string();
    let send = |req: Req| {
        let host = host.clone();
        async move { raw_http(nginx.addr, &req.wire(&host)).await }
    };
    let sign = |creds, req: &Req| {
        OracleSigner::new(creds, b.now())
            .service("execute-api")
            .sign(&host, req)
    };
    let mut get = Req::get("limit=5");
    get.path = "/orders".into();
    let refused = |resp: &RawResponse, status: u16, code: &str| {
        assert_eq!(resp.status, status, "{}", nginx.error_log());
        assert_eq!(resp.header("x-sts-broker-error"), Some(code));
    };

    // Admitted: the API sees the caller, never the signature or a client's copy of the headers.
    let spoofing = get.clone().header(
        "x-sts-broker-principal-arn",
        "arn:aws:iam::999999999999:root",
    );
    let resp = send(sign(&mfa, &spoofing)).await;
    assert_eq!(resp.status, 201, "{} {}", resp.body, nginx.error_log());
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/orders?limit=5");
    assert_eq!(
        seen[0].header("x-sts-broker-principal-arn"),
        Some(b.user_arn("alice").as_str())
    );
    assert_eq!(
        seen[0].header("x-sts-broker-account"),
        Some(b.account_id.as_str())
    );
    assert!(
        seen[0]
            .header("x-sts-broker-user-id")
            .unwrap()
            .starts_with("AIDA")
    );
    assert_eq!(
        seen[0].header("x-sts-broker-mfa-authenticated"),
        Some("true")
    );
    assert_eq!(seen[0].header("x-sts-broker-mfa-age"), Some("0"));
    for gone in ["authorization", "x-amz-security-token", "x-amz-date"] {
        assert_eq!(seen[0].header(gone), None, "{gone} reached the API");
    }

    // A presigned URL, judged from the URI nginx forwards.
    let presigned = OracleSigner::new(&mfa, b.now())
        .service("execute-api")
        .presigned(300)
        .sign(&host, &get);
    assert_eq!(send(presigned).await.status, 201);

    // A body is judged by its signed hash; the API receives it whole.
    let mut post = Req::post("");
    post.path = "/orders".into();
    post.body = (0..100_000u32).map(|i| (i % 256) as u8).collect();
    let declared = OracleSigner::new(&mfa, b.now())
        .service("execute-api")
        .with_content_sha256()
        .sign(&host, &post);
    let resp = send(declared).await;
    assert_eq!(resp.status, 201, "{}", nginx.error_log());
    let last = api.seen().pop().unwrap();
    assert_eq!(last.body.as_deref(), Some(post.body.as_slice()));
    assert_eq!(
        last.header("x-amz-content-sha256"),
        Some(hex::encode(Sha256::digest(&post.body)).as_str())
    );

    // Refused: no MFA (403), not signed or unverifiable (401). None reaches the API.
    let before = api.seen().len();
    refused(&send(sign(&alice, &get)).await, 403, "AccessDenied");
    refused(&send(sign(&plain, &get)).await, 403, "AccessDenied");
    refused(&send(get.clone()).await, 401, "MissingAuthenticationToken");
    let mut tampered = sign(&mfa, &get);
    tampered.query = "limit=500".into();
    refused(&send(tampered).await, 401, "SignatureDoesNotMatch");
    // Without x-amz-content-sha256 the endpoint cannot know what the signature covers.
    refused(&send(sign(&mfa, &post)).await, 401, "IncompleteSignature");
    let other_service = OracleSigner::new(&mfa, b.now()).sign(&host, &get);
    refused(&send(other_service).await, 401, "SignatureDoesNotMatch");
    assert_eq!(api.seen().len(), before);

    let lines = gate_audit_until(&b.data_dir, |l| l.len() >= 6).await;
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "mfa_required",
            "mfa_required",
            "unsigned",
            "bad_signature",
            "body_not_judgeable",
            "bad_signature"
        ]
    );
    assert!(lines.iter().all(|l| l["action"] == "ForwardAuth"));
    drop(nginx);
    gate.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_direct_request_is_judged_as_itself_body_included() {
    // Envoy's ext_authz sends the original method, path and headers (and the body, when told
    // to) to the authorization service itself.
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let gate = TestGate::start(&b, GateSetup::default()).await;
    let host = gate.host();
    let mut post = Req::post("");
    post.path = "/orders".into();
    post.body = b"{\"item\":42}".to_vec();
    let signed = OracleSigner::new(&alice, b.now())
        .service("execute-api")
        .sign(&host, &post);
    let resp = raw_http(gate.addr, &signed.wire(&host)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("x-sts-broker-principal-arn"),
        Some(b.user_arn("alice").as_str())
    );
    assert_eq!(resp.header("x-sts-broker-mfa-authenticated"), Some("false"));
    assert_eq!(resp.header("x-sts-broker-mfa-age"), None);
    let mut changed = signed.clone();
    changed.body = b"{\"item\":43}".to_vec();
    let resp = raw_http(gate.addr, &changed.wire(&host)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("AWS4-HMAC-SHA256"));
    gate.stop().await;
    b.stop().await;
}
