//! Property test against an independent signer: random requests signed by `aws-sigv4` must
//! verify, and changing any single signed part must make them fail, while changing unsigned
//! parts must not.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::super::{AuthForm, SignedRequest, canonical, percent};
use super::{OracleSign, Req, Server, oracle_sign, regions};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-3", "", "ap-southeast-2"];

#[derive(Clone, Debug)]
struct Case {
    method: &'static str,
    host: &'static str,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    region: &'static str,
    token: Option<String>,
    presigned: bool,
    content_sha256_header: bool,
    unix: i64,
    now_offset: i64,
    pick: Index,
}

/// Every byte as `%XX`, in upper or lower case hex.
fn pct(bytes: &[u8], lower: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A query name or value as clients put it on the wire.
fn query_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~-]{0,8}",
        // Reserved characters sent raw; a raw `+` means a space on both sides.
        1 => "[A-Za-z0-9!$'()*+,;:@/?-]{1,6}",
        // Percent-encoded UTF-8 (including needlessly encoded unreserved characters).
        2 => ("\\PC{1,3}", any::<bool>()).prop_map(|(s, lower)| pct(s.as_bytes(), lower)),
    ]
}

fn query() -> impl Strategy<Value = String> {
    vec((query_piece(), query_piece(), any::<bool>()), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(n, v, has_eq)| if has_eq { format!("{n}={v}") } else { n })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => "[A-Za-z0-9._~-]{1,8}",
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
        1 => "[A-Za-z0-9!$'()*+,;=:@-]{1,6}",
        1 => ("\\PC{1,3}", any::<bool>()).prop_map(|(s, lower)| pct(s.as_bytes(), lower)),
    ];
    prop_oneof![
        2 => Just("/".to_owned()),
        3 => (vec(segment, 1..4), any::<bool>())
            .prop_map(|(segments, trailing)| {
                format!("/{}{}", segments.join("/"), if trailing { "/" } else { "" })
            }),
    ]
}

/// Extra client headers with odd spacing; `user-agent` is never signed by `aws-sigv4`.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = select(vec![
        "x-a",
        "x-b",
        "x-custom-thing",
        "content-type",
        "user-agent",
        "accept",
        "x-amz-meta-q",
    ]);
    let value = "[ ]{0,3}([!-~]{1,6}[ ]{1,3}){0,2}[!-~]{0,6}[ ]{0,3}";
    vec((name.prop_map(str::to_owned), value), 0..5)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        (query_piece(), "[0-9]{6}").prop_map(|(serial, code)| {
            format!(
                "Action=GetSessionToken&Version=2011-06-15&SerialNumber={serial}&TokenCode={code}"
            )
            .into_bytes()
        }),
        vec(any::<u8>(), 1..48),
    ]
}

prop_compose! {
    fn case()(
        method in select(vec!["GET", "POST"]),
        host in select(vec!["sts.amazonaws.com", "localhost:8443", "127.0.0.1:9000"]),
        path in path(),
        query in query(),
        headers in headers(),
        body in body(),
        region in select(REGIONS.to_vec()),
        token in proptest::option::of("[A-Za-z0-9+/=]{16,48}"),
        presigned in any::<bool>(),
        content_sha256_header in any::<bool>(),
        unix in 946_684_800_i64..4_102_444_800,
        now_offset in -900_i64..=900,
        pick in any::<Index>(),
    ) -> Case {
        Case {
            method, host, path, query, headers, body, region, token, presigned,
            content_sha256_header, unix, now_offset, pick,
        }
    }
}

fn sign_case(c: &Case) -> Req {
    oracle_sign(&OracleSign {
        method: c.method,
        host: c.host,
        path: &c.path,
        query: &c.query,
        headers: &c.headers,
        body: &c.body,
        akid: AKID,
        secret: SECRET,
        region: c.region,
        service: "sts",
        token: c.token.as_deref(),
        presigned: c.presigned,
        content_sha256_header: c.content_sha256_header,
        unix: c.unix,
    })
}

/// Changes one alphanumeric byte (the `pick`-th) to the next one of its class, or appends `x`
/// when there is none. The result always differs from the input.
fn tweak(bytes: &mut Vec<u8>, pick: &Index) {
    let positions: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_alphanumeric())
        .collect();
    if positions.is_empty() {
        bytes.push(b'x');
        return;
    }
    let i = positions[pick.index(positions.len())];
    bytes[i] = match bytes[i] {
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        b => b + 1,
    };
}

fn tweak_str(text: &str, pick: &Index) -> String {
    let mut bytes = text.as_bytes().to_vec();
    tweak(&mut bytes, pick);
    String::from_utf8(bytes).unwrap()
}

fn canonical_uri(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    canonical::push_canonical_uri(&mut out, path);
    out
}

/// Each way of changing one signed part, labelled.
fn tamperings(req: &Req, signed: &SignedRequest, pick: &Index) -> Vec<(String, Req)> {
    let mut out = Vec::new();
    let mut push = |what: String, r: Req| out.push((what, r));

    let mut r = req.clone();
    r.method = if req.method == "GET" { "POST" } else { "GET" }.to_owned();
    push("method".into(), r);

    let mut r = req.clone();
    r.path.push('x');
    push("path+x".into(), r);
    let mut r = req.clone();
    r.path = tweak_str(&req.path, pick);
    if canonical_uri(&r.path) != canonical_uri(&req.path) {
        push("path".into(), r);
    }

    let pieces: Vec<&str> = req.query.split('&').collect();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (*piece, None),
        };
        if signed.form == AuthForm::Presigned
            && *percent::decode_form(name.as_bytes()) == *b"X-Amz-Signature"
        {
            let mut sig = value.unwrap_or_default().as_bytes().to_vec();
            flip_hex(&mut sig, pick);
            let mut r = req.clone();
            r.query = replace_piece(
                &pieces,
                i,
                &format!("{name}={}", String::from_utf8(sig).unwrap()),
            );
            push("X-Amz-Signature".into(), r);
            continue;
        }
        let new_name = tweak_str(name, pick);
        let renamed = match value {
            Some(v) => format!("{new_name}={v}"),
            None => new_name,
        };
        let mut r = req.clone();
        r.query = replace_piece(&pieces, i, &renamed);
        push(format!("query name {name}"), r);
        let new_value = tweak_str(value.unwrap_or_default(), pick);
        let mut r = req.clone();
        r.query = replace_piece(&pieces, i, &format!("{name}={new_value}"));
        push(format!("query value of {name}"), r);
    }

    for (i, (name, value)) in req.headers.iter().enumerate() {
        if !signed.signed_headers.iter().any(|h| h == name) {
            continue;
        }
        let mut r = req.clone();
        tweak(&mut r.headers[i].1, pick);
        push(format!("header {name}: {}", super::lossy(value)), r);
    }

    if signed.form == AuthForm::Header {
        let (i, value) = req
            .headers
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n == "authorization")
            .map(|(i, (_, v))| (i, v))
            .unwrap();
        let at = value.windows(10).position(|w| w == b"Signature=").unwrap() + 10;
        let mut r = req.clone();
        let mut sig = r.headers[i].1[at..at + 64].to_vec();
        flip_hex(&mut sig, pick);
        r.headers[i].1.splice(at..at + 64, sig);
        push("Authorization signature".into(), r);
    }

    let mut r = req.clone();
    if r.body.is_empty() {
        r.body.push(b'x');
    } else {
        let i = pick.index(r.body.len());
        r.body[i] ^= 0x01;
    }
    push("body".into(), r);

    out
}

fn flip_hex(sig: &mut [u8], pick: &Index) {
    let i = pick.index(sig.len());
    sig[i] = if sig[i] == b'0' { b'1' } else { b'0' };
}

fn replace_piece(pieces: &[&str], index: usize, with: &str) -> String {
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| if i == index { with } else { p })
        .collect::<Vec<_>>()
        .join("&")
}

/// Changes to parts outside the signature, which must not matter.
fn harmless(req: &Req, signed: &SignedRequest, pick: &Index) -> Vec<(String, Req)> {
    let mut out = vec![(
        "extra unsigned header".to_owned(),
        req.clone().header("x-forwarded-for", "10.0.0.1"),
    )];
    for (i, (name, _)) in req.headers.iter().enumerate() {
        if name == "authorization" || signed.signed_headers.iter().any(|h| h == name) {
            continue;
        }
        let mut r = req.clone();
        tweak(&mut r.headers[i].1, pick);
        out.push((format!("unsigned header {name}"), r));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn oracle_signed_requests_verify_and_tampering_is_rejected(c in case()) {
        let req = sign_case(&c);
        let allowed = regions(&REGIONS);
        let server = Server {
            regions: &allowed,
            service: "sts",
            skew: 900,
            now: c.unix + c.now_offset,
            secret: SECRET,
        };

        let signed = match server.authenticate(&req) {
            Ok(Some(signed)) => signed,
            other => return Err(TestCaseError::fail(format!("rejected {other:?}\n{req:#?}"))),
        };
        let form = if c.presigned { AuthForm::Presigned } else { AuthForm::Header };
        prop_assert_eq!(signed.form, form);
        prop_assert_eq!(&signed.scope.access_key_id, AKID);
        prop_assert_eq!(&signed.scope.region, c.region);
        prop_assert_eq!(&signed.security_token, &c.token);

        for (what, tampered) in tamperings(&req, &signed, &c.pick) {
            let result = server.authenticate(&tampered);
            prop_assert!(
                !matches!(result, Ok(Some(_))),
                "accepted after changing {}: {:#?}",
                what,
                tampered
            );
        }
        for (what, changed) in harmless(&req, &signed, &c.pick) {
            let result = server.authenticate(&changed);
            prop_assert!(
                matches!(result, Ok(Some(_))),
                "rejected after changing {}: {:?}",
                what,
                result
            );
        }
    }
}
