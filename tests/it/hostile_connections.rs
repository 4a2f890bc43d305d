//! Hostile connections: clients that open connections and never finish a request, or hold
//! them idle, cannot starve the others (README.md: `max_connections`,
//! `first_request_timeout_secs`, `idle_timeout_secs`). The deadlines here are the server's
//! network timers, not the broker's clock, so these tests wait in real time: about a second
//! each, with the deadlines configured to 1 s.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::clients::root_creds_in;
use crate::support::http::{GCI, Req, parse_response, raw_http, send_signed, xml_text};
use crate::support::process::{Launch, ServerProcess};
use crate::support::signing::OracleSigner;
use crate::support::{Setup, TestBroker, assert_identity, fresh_dir, wall_now};

/// The client preface of HTTP/2 (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The time from `since` until the server closed `stream` (end of stream or a reset), reading
/// and discarding whatever it sends; `None` if it was still open at `since + limit`.
async fn closed_after<S: AsyncRead + Unpin>(
    stream: &mut S,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0_u8; 4096];
    loop {
        match tokio::time::timeout_at(since + limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens `n` TCP connections to `addr` that never send a byte.
async fn silent_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    streams
}

/// Asserts that every stream is closed by the server within `limit` of `since`.
async fn assert_all_closed(streams: &mut [TcpStream], since: Instant, limit: Duration) {
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            closed_after(stream, since, limit).await.is_some(),
            "silent connection {i} still open {limit:?} after it was opened"
        );
    }
}

#[tokio::test]
async fn silent_connections_beyond_the_open_file_limit_do_not_starve_a_signed_request() {
    // The attack of a client that opens more connections than the broker has file descriptors
    // and sends nothing, scaled down: the broker runs with 128 descriptors (soft and hard, so
    // it cannot raise them) and the attacker opens 130 connections.
    let data_dir = fresh_dir("fd-flood").join("data");
    let launch = Launch::default()
        .open_files(128)
        .env("STS_BROKER_FIRST_REQUEST_TIMEOUT_SECS", "1");
    let server = ServerProcess::launch(&data_dir, "fd-flood", &launch)
        .await
        .unwrap();
    let root = root_creds_in(&data_dir);
    let opened = Instant::now();
    let mut silent = silent_connections(server.addr, 130).await;

    let host = server.addr.to_string();
    let signed = OracleSigner::new(&root, wall_now()).sign(&host, &Req::post(GCI));
    let asked = Instant::now();
    // `raw_http` gives up after 20 s.
    let resp = raw_http(server.addr, &signed.wire(&host)).await;
    let waited = asked.elapsed();
    assert_eq!(
        resp.status, 200,
        "no answer to a signed request after {waited:?} while 130 silent connections were open: {}",
        resp.body
    );
    assert!(
        xml_text(&resp.body, "Arn").is_some_and(|arn| arn.ends_with(":root")),
        "{}",
        resp.body
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    assert_all_closed(&mut silent, opened, Duration::from_secs(15)).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_broker_raises_its_open_file_limit_to_the_hard_limit() {
    fn nofile(limits: &str) -> (String, String) {
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[3].to_owned(), fields[4].to_owned())
    }
    let (_, hard) = nofile(&std::fs::read_to_string("/proc/self/limits").unwrap());
    assert_ne!(
        hard, "64",
        "this test needs a hard open-file limit above 64"
    );
    let data_dir = fresh_dir("nofile").join("data");
    let server = ServerProcess::launch(&data_dir, "nofile", &Launch::default().soft_open_files(64))
        .await
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    assert_eq!(nofile(&limits), (hard.clone(), hard), "{limits}");
}

#[tokio::test]
async fn a_full_broker_serves_a_signed_request_once_silent_connections_meet_their_deadline() {
    let b = TestBroker::start_with(
        Setup::default()
            .max_connections(50)
            .first_request_timeout_secs(1),
    )
    .await;
    let opened = Instant::now();
    let mut silent = silent_connections(b.addr, 60).await;
    let asked = Instant::now();
    let resp = send_signed(&b, &b.root, &Req::post(GCI)).await;
    let waited = asked.elapsed();
    assert_identity(&resp, &b.root_arn());
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    // It queued behind the 60: the 50 accepted ones had to meet their deadline first.
    assert!(
        waited >= Duration::from_millis(500),
        "answered after {waited:?}: the cap of 50 did not hold 60 connections back"
    );
    assert_all_closed(&mut silent, opened, Duration::from_secs(6)).await;
}

#[tokio::test]
async fn connections_without_a_complete_request_are_closed_by_the_first_request_deadline() {
    // hyper's own header-read timeout is set far off, so only the new deadline can close them.
    let b = TestBroker::start_with(
        Setup::default()
            .first_request_timeout_secs(1)
            .header_read_timeout_secs(30),
    )
    .await;
    let h2_settings = [H2_PREFACE, H2_EMPTY_SETTINGS].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing", Vec::new()),
        ("half the HTTP/2 preface", H2_PREFACE[..16].to_vec()),
        ("the HTTP/2 preface and SETTINGS", h2_settings),
        ("half a request line", b"POST / HT".to_vec()),
        (
            "headers without their end",
            b"POST / HTTP/1.1\r\nHost: x\r\n".to_vec(),
        ),
    ];
    let mut checks = tokio::task::JoinSet::new();
    for (case, bytes) in cases {
        let mut stream = TcpStream::connect(b.addr).await.unwrap();
        let opened = Instant::now();
        stream.write_all(&bytes).await.unwrap();
        checks.spawn(async move {
            let closed = closed_after(&mut stream, opened, Duration::from_secs(5)).await;
            (case, closed)
        });
    }
    while let Some(check) = checks.join_next().await {
        let (case, closed) = check.unwrap();
        let Some(after) = closed else {
            panic!("a connection that sent {case} was still open after 5 s");
        };
        assert!(
            after >= Duration::from_millis(900),
            "{case}: closed after {after:?}"
        );
    }
    assert_identity(
        &send_signed(&b, &b.root, &Req::post(GCI)).await,
        &b.root_arn(),
    );
    b.stop().await;
}

/// Drives an HTTP/2 client connection and pings the server every 100 ms (the client is
/// anything but silent) until the server closes it: the time from `since`, and whether it
/// ended cleanly (a GOAWAY), or `None` if it was still open at `since + limit`.
async fn pinging_until_closed<T>(
    mut conn: h2::client::Connection<T>,
    since: Instant,
    limit: Duration,
) -> Option<(Duration, bool)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut pings = conn.ping_pong().unwrap();
    let mut driven = tokio::spawn(conn);
    loop {
        tokio::select! {
            ended = &mut driven => return Some((since.elapsed(), ended.unwrap().is_ok())),
            () = tokio::time::sleep_until(since + limit) => {
                driven.abort();
                return None;
            }
            _ = async {
                let _ = pings.ping(h2::Ping::opaque()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            } => {}
        }
    }
}

#[tokio::test]
async fn an_http2_client_that_only_pings_is_closed_by_the_first_request_deadline() {
    let b = TestBroker::start_with(
        Setup::default()
            .first_request_timeout_secs(1)
            .idle_timeout_secs(30),
    )
    .await;
    let tcp = TcpStream::connect(b.addr).await.unwrap();
    let opened = Instant::now();
    // Holding `_requests` keeps the client side from closing the connection itself.
    let (_requests, conn) = h2::client::handshake(tcp).await.unwrap();
    let Some((after, _)) = pinging_until_closed(conn, opened, Duration::from_secs(5)).await else {
        panic!("an HTTP/2 connection that only pinged was still open after 5 s");
    };
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    b.stop().await;
}

/// Reads one Content-Length-framed response from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> crate::support::http::RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&buf[..end + 4]);
            let length: usize = head.header("content-length").unwrap().parse().unwrap();
            if buf.len() >= end + 4 + length {
                return parse_response(&buf);
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn idle_http1_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let b = TestBroker::start_with(
        Setup::default()
            .idle_timeout_secs(1)
            .header_read_timeout_secs(30),
    )
    .await;
    let host = b.addr.to_string();
    let mut stream = TcpStream::connect(b.addr).await.unwrap();
    // Requests 300 ms apart for longer than the idle timeout keep the connection open:
    // idleness closes it, not age.
    for _ in 0..4 {
        let signed = OracleSigner::new(&b.root, b.now()).sign(&host, &Req::post(GCI));
        let wire = String::from_utf8(signed.wire(&host)).unwrap();
        let keep_alive = wire.replacen("Connection: close\r\n", "", 1);
        stream.write_all(keep_alive.as_bytes()).await.unwrap();
        assert_identity(&read_response(&mut stream).await, &b.root_arn());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let idle = Instant::now() - Duration::from_millis(300);
    let Some(after) = closed_after(&mut stream, idle, Duration::from_secs(5)).await else {
        panic!("an idle HTTP/1.1 connection was still open after 5 s");
    };
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn idle_http2_connections_are_sent_away_after_the_idle_timeout() {
    let b = TestBroker::start_with(Setup::default().idle_timeout_secs(1)).await;
    let tcp = TcpStream::connect(b.addr).await.unwrap();
    let (requests, conn) = h2::client::handshake(tcp).await.unwrap();
    let mut driven = tokio::spawn(pinging_until_closed(
        conn,
        Instant::now(),
        Duration::from_secs(30),
    ));
    let mut requests = requests.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/", b.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap();
    let (response, mut body) = requests.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(GCI.as_bytes()), true)
        .unwrap();
    let response = response.await.unwrap();
    // Unsigned: refused, but a request all the same.
    assert_eq!(response.status(), 403);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let answered = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut driven).await;
    let Ok(Ok(Some((_, clean)))) = ended else {
        driven.abort();
        panic!("an idle HTTP/2 connection was still open 5 s after its last response");
    };
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    assert!(
        clean,
        "the idle connection was cut instead of sent a GOAWAY"
    );
    drop(requests);
    b.stop().await;
}

#[tokio::test]
async fn tls_connections_are_closed_by_the_first_request_deadline() {
    let dir = fresh_dir("tls-deadline");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let b = TestBroker::start_with(
        Setup::default()
            .tls(&cert_path, &key_path)
            .first_request_timeout_secs(1)
            .header_read_timeout_secs(30),
    )
    .await;

    // No handshake at all.
    let mut tcp = TcpStream::connect(b.addr).await.unwrap();
    let opened = Instant::now();
    let after = closed_after(&mut tcp, opened, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|a| a >= Duration::from_millis(900)),
        "a connection without a TLS handshake: closed after {after:?}"
    );

    // A complete handshake, then silence.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(b.addr).await.unwrap();
    let opened = Instant::now();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let after = closed_after(&mut tls, opened, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|a| a >= Duration::from_millis(900)),
        "a TLS connection silent after its handshake: closed after {after:?}"
    );
    b.stop().await;
}

#[tokio::test]
async fn http2_settings_limit_concurrent_streams_and_header_lists() {
    let b = TestBroker::start().await;
    let mut stream = TcpStream::connect(b.addr).await.unwrap();
    stream
        .write_all(&[H2_PREFACE, H2_EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    // The server's first frame is its SETTINGS (RFC 9113, section 3.4).
    let mut header = [0_u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "not a SETTINGS frame: {header:?}");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0_u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS (3) and SETTINGS_MAX_HEADER_LIST_SIZE (6).
    assert!(settings.contains(&(3, 128)), "{settings:?}");
    assert!(settings.contains(&(6, 32 * 1024)), "{settings:?}");
    b.stop().await;
}
