//! The broker's request limits and its resilience to bad input on the wire (README.md,
//! `max_body_bytes`, `max_header_bytes`, `header_read_timeout_secs`): oversized or malformed
//! requests get an AWS XML error or a closed connection, never a half-done change.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::http::{FORM_UTF8, GCI, Req, parse_response, raw_exchange, send_signed};
use crate::support::signing::OracleSigner;
use crate::support::texts;
use crate::support::{Creds, Setup, TestBroker, assert_identity, assert_xml_error};

#[tokio::test]
async fn body_limit_is_64_kib() {
    let b = TestBroker::start().await;
    // Exactly 64 KiB is accepted.
    let prefix = format!("{GCI}&Pad=");
    let body = format!("{prefix}{}", "x".repeat(64 * 1024 - prefix.len()));
    assert_eq!(body.len(), 65_536);
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(&body)).await,
        &b.root_arn(),
    );
    let too_large = texts::body_too_large(65_536);
    // One byte more, with Content-Length.
    let body = format!("{body}x");
    let resp = raw_exchange(b.addr, &Req::post(&body).wire(&b.addr.to_string())).await;
    assert_xml_error(&resp, 413, "RequestEntityTooLarge", &too_large);
    // Chunked.
    let chunk = "x".repeat(40 * 1024);
    let mut wire = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM_UTF8}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b.addr
    );
    for _ in 0..3 {
        wire.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    wire.push_str("0\r\n\r\n");
    let resp = raw_exchange(b.addr, wire.as_bytes()).await;
    assert_xml_error(&resp, 413, "RequestEntityTooLarge", &too_large);
    // A declared length over the limit is refused before the body is read.
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM_UTF8}\r\nContent-Length: 10000000\r\n\r\n",
        b.addr
    );
    let resp = raw_exchange(b.addr, head.as_bytes()).await;
    assert_xml_error(&resp, 413, "RequestEntityTooLarge", &too_large);
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

#[tokio::test]
async fn header_limit_is_16_kib() {
    let b = TestBroker::start().await;
    let too_large = texts::headers_too_large(16_384);
    let req = Req::post(GCI).header("x-padding", &"p".repeat(17 * 1024));
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_xml_error(&resp, 431, "RequestHeaderFieldsTooLarge", &too_large);
    // Many headers add up the same way.
    let mut req = Req::post(GCI);
    for i in 0..90 {
        req = req.header(&format!("x-h{i}"), &"v".repeat(200));
    }
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_xml_error(&resp, 431, "RequestHeaderFieldsTooLarge", &too_large);
    // More than hyper's 100-header cap: refused with a bare 431 by hyper itself (reported).
    let mut req = Req::post(GCI);
    for i in 0..150 {
        req = req.header(&format!("x-h{i}"), "v");
    }
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_eq!(resp.status, 431);
    // A huge header line (beyond any buffer) is cut off without harm.
    let req = Req::post(GCI).header("x-huge", &"h".repeat(1024 * 1024));
    let resp = raw_exchange(b.addr, &req.wire(&b.addr.to_string())).await;
    assert_ne!(resp.status, 200);
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

#[tokio::test]
async fn slow_client_is_cut_off_by_the_header_read_timeout() {
    let b = TestBroker::start_with(Setup::default().header_read_timeout_secs(1)).await;
    // One client stops in the middle of its headers, another sends a request line and trickles
    // one header byte at a time; both are waited for together (the suite's only real wait).
    let stalled = async {
        let mut stream = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
        (read.is_ok(), started.elapsed(), buf)
    };
    let trickling = async {
        let mut stream = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let mut cut = false;
        while started.elapsed() < Duration::from_secs(2) {
            if stream.write_all(b"X").await.is_err() {
                cut = true;
                break;
            }
            let mut byte = [0_u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte));
            if let Ok(Ok(0) | Err(_)) = read.await {
                cut = true;
                break;
            }
        }
        (cut, started.elapsed())
    };
    let ((closed, elapsed, buf), (cut, trickle_elapsed)) = tokio::join!(stalled, trickling);
    assert!(closed, "the stalled connection was still open after 2 s");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert_ne!(parse_response(&buf).status, 200);
    assert!(cut, "the trickling connection was still open after 2 s");
    assert!(
        trickle_elapsed >= Duration::from_millis(900),
        "{trickle_elapsed:?}"
    );
    // The server still serves.
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

#[tokio::test]
async fn garbage_on_the_wire_does_not_hurt_the_server() {
    let b = TestBroker::start().await;
    let huge_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200 * 1024));
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage \r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"
            .to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        huge_line.into_bytes(),
        (0..=255u8).cycle().take(70_000).collect(),
    ];
    for input in inputs {
        let resp = raw_exchange(b.addr, &input).await;
        assert_ne!(resp.status, 200);
        assert_identity(
            &send_signed(&b, &b.root, &Req::post(GCI)).await,
            &b.root_arn(),
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn failed_requests_leave_the_store_unchanged() {
    let b = TestBroker::start().await;
    let host = b.addr.to_string();
    let create = "Action=CreateUser&Version=2010-05-08&UserName=mallory";
    let iam_at = |creds: &Creds, t: i64, body: &str| {
        OracleSigner::new(creds, t)
            .service("iam")
            .sign(&host, &Req::post(body))
    };
    let good = iam_at(&b.root, b.now(), create);
    let auth = good.get_header("authorization").unwrap().to_owned();
    let last = if auth.ends_with('0') { "1" } else { "0" };
    let tampered = good.clone().replace(
        "authorization",
        &format!("{}{last}", &auth[..auth.len() - 1]),
    );
    let unknown = Creds::new("AKIAZZZZZZZZZZZZZZZZ", &b.root.secret, None);
    let mut body_changed = good.clone();
    body_changed.body = b"Action=CreateUser&Version=2010-05-08&UserName=mallorx".to_vec();
    let refused = [
        (tampered, 403),
        (iam_at(&b.root, b.now() - 20 * 60, create), 403),
        (iam_at(&unknown, b.now(), create), 403),
        (body_changed, 403),
        (good.clone().without("authorization"), 403),
        (
            OracleSigner::new(&b.root, b.now())
                .service("iam")
                .region("eu-west-3")
                .sign(&host, &Req::post(create)),
            403,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                "Action=CreateUser&Version=2011-06-15&UserName=mallory",
            ),
            403,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                "Action=CreateUser&Version=2010-05-08&UserName=mallory&X=%zz",
            ),
            404,
        ),
        (
            iam_at(
                &b.root,
                b.now(),
                &format!("{create}&Pad={}", "x".repeat(70_000)),
            ),
            413,
        ),
    ];
    for (req, status) in refused {
        let resp = raw_exchange(b.addr, &req.wire(&host)).await;
        assert_eq!(resp.status, status, "{}", resp.body);
    }
    let users = b.iam(&b.root).list_users().send().await.unwrap();
    assert!(users.users().is_empty(), "{users:?}");
    b.stop().await;
}
