//! Transports: HTTPS with a configured certificate, the refusal to serve plain HTTP beyond
//! loopback, and HTTP/2 (README.md, `tls_cert`/`tls_key`, `--insecure-http`).

use crate::support::broker::listen_on_all_interfaces;
use crate::support::http::{GCI, Req, curl, curl_sigv4_args, parse_response, raw_exchange};
use crate::support::texts;
use crate::support::{Setup, TestBroker, assert_identity, assert_xml_error, fresh_dir};

#[tokio::test]
async fn tls_serves_https_to_curl() {
    let dir = fresh_dir("tls");
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let b = TestBroker::start_with(Setup::default().tls(&cert_path, &key_path)).await;
    let url = format!("https://{}/", b.addr);
    let cacert = cert_path.to_string_lossy().into_owned();
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--cacert", &cacert, "-d", GCI, &url],
    ))
    .await;
    assert_identity(&resp, &b.root_arn());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_exchange(b.addr, &Req::post(GCI).wire(&b.addr.to_string())).await;
    assert_eq!(plain.status, 0);
    b.stop().await;
}

#[tokio::test]
async fn non_loopback_without_tls_is_refused_unless_insecure_http() {
    let dir = fresh_dir("listen");
    assert_eq!(
        listen_on_all_interfaces(&dir, false).await,
        Err(
            "refusing to listen on 0.0.0.0:0 without TLS: configure tls_cert/tls_key, or pass --insecure-http"
                .to_owned()
        ),
        "listening on 0.0.0.0 without TLS was allowed"
    );
    let (addr, tls) = match listen_on_all_interfaces(&dir, true).await {
        Ok(seen) => seen,
        Err(e) => panic!("--insecure-http refused: {e}"),
    };
    assert!(addr.ip().is_unspecified());
    assert!(!tls);
}

#[tokio::test]
async fn curl_sigv4_over_http2_signs_the_authority() {
    let b = TestBroker::start().await;
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--http2-prior-knowledge", "-d", GCI, &b.url()],
    ))
    .await;
    assert_identity(&resp, &b.root_arn());
    let resp = curl(vec![
        "--http2-prior-knowledge".into(),
        "-d".into(),
        GCI.into(),
        b.url(),
    ])
    .await;
    assert_xml_error(
        &resp,
        403,
        "MissingAuthenticationToken",
        texts::MISSING_AUTHENTICATION_TOKEN,
    );
    b.stop().await;
}

#[tokio::test]
async fn http2_oversized_headers_get_the_aws_error() {
    let b = TestBroker::start().await;
    let pad = format!("x-padding: {}", "p".repeat(20 * 1024));
    let resp = curl(vec![
        "--http2-prior-knowledge".into(),
        "-H".into(),
        pad,
        "-d".into(),
        GCI.into(),
        b.url(),
    ])
    .await;
    assert_xml_error(
        &resp,
        431,
        "RequestHeaderFieldsTooLarge",
        &texts::headers_too_large(16_384),
    );
    // Beyond the backstop, h2 itself refuses; the server carries on.
    let pad = format!("x-padding: {}", "p".repeat(40 * 1024));
    let out = tokio::task::spawn_blocking({
        let url = b.url();
        move || {
            std::process::Command::new("curl")
                .args(["-s", "-i", "--max-time", "20", "--http2-prior-knowledge"])
                .args(["-H", &pad, "-d", GCI, &url])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_ne!(parse_response(&out.stdout).status, 200);
    let resp = curl(curl_sigv4_args(
        &b.root,
        &["--http2-prior-knowledge", "-d", GCI, &b.url()],
    ))
    .await;
    assert_identity(&resp, &b.root_arn());
    b.stop().await;
}
