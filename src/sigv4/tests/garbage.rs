//! Network input must never panic: arbitrary bytes, and near-miss SigV4 built from real
//! fragments, go through every public function.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::super::{ScopePolicy, check_scope_and_time, derive_signing_key, verify_signature};
use super::{Req, regions};

const HEX64: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

/// Runs the whole pipeline and touches every error's text and kind.
fn exercise(req: &Req, now: i64, skew: i64) {
    let allowed = regions(&["us-east-1", ""]);
    req.with(|http| match super::super::parse(http) {
        Ok(Some(signed)) => {
            let _ = format!("{signed:?}");
            let policy = ScopePolicy {
                regions: &allowed,
                service: "sts",
                max_skew_secs: skew,
            };
            if let Err(e) = check_scope_and_time(&signed, &policy, now) {
                let _ = (e.to_string(), e.kind());
            }
            let scope = &signed.scope;
            let key = derive_signing_key(b"secret", &scope.date, &scope.region, &scope.service);
            if let Err(e) = verify_signature(http, &signed, &key) {
                let _ = (e.to_string(), e.kind());
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = (e.to_string(), e.kind(), format!("{e:?}"));
        }
    });
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "authorization",
            "x-amz-date",
            "date",
            "host",
            "x-amz-security-token",
            "x-amz-content-sha256",
            "my-header1"
        ])
        .prop_map(str::to_owned),
        "[A-Za-z-]{1,8}",
    ]
}

fn fragments(pieces: Vec<&'static str>, max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![4 => select(pieces).prop_map(str::to_owned), 1 => "\\PC{0,4}"],
        0..max,
    )
    .prop_map(|v| v.concat())
}

fn authorization() -> impl Strategy<Value = String> {
    fragments(
        vec![
            "AWS4-HMAC-SHA256",
            " ",
            " ",
            ",",
            ", ",
            "=",
            "\t",
            "/",
            ";",
            "Credential=",
            "SignedHeaders=",
            "Signature=",
            "host",
            "host;x-amz-date",
            "x-amz-date",
            "AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request",
            "20150830",
            "us-east-1",
            "aws4_request",
            HEX64,
            "\u{1234}",
            "%",
        ],
        14,
    )
}

fn query() -> impl Strategy<Value = String> {
    fragments(
        vec![
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm",
            "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20150830T123600Z",
            "X-Amz-SignedHeaders=host",
            "X-Amz-SignedHeaders=host%3Bx-amz-date",
            "X-Amz-Signature=",
            HEX64,
            "X-Amz-Security-Token=tok",
            "X-Amz-Expires=3600",
            "&",
            "=",
            "%",
            "%E1",
            "%e1%88",
            "+",
            "%FF",
            "X-Amz-Signature",
        ],
        10,
    )
}

fn amz_date() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"20150830T123600Z".to_vec()),
        Just(b"Mon, 09 Sep 2011 23:36:00 GMT".to_vec()),
        "[0-9TZ]{0,18}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(
        method in "\\PC{0,6}",
        path in "\\PC{0,24}",
        query in "\\PC{0,40}",
        headers in vec((header_name(), vec(any::<u8>(), 0..48)), 0..6),
        body in vec(any::<u8>(), 0..32),
        now in any::<i64>(),
        skew in any::<i64>(),
    ) {
        exercise(&Req { method, path, query, headers, body }, now, skew);
    }

    #[test]
    fn near_miss_sigv4_never_panics(
        authorization in proptest::option::of(authorization()),
        query in query(),
        date in proptest::option::of(amz_date()),
        http_date in proptest::option::of(amz_date()),
        extra in vec((header_name(), vec(any::<u8>(), 0..16)), 0..3),
        path in select(vec!["/", "", "//a/../", "/%E1%88%B4", "/..", "*"]),
        now in prop_oneof![Just(1_440_938_160_i64), any::<i64>()],
        skew in prop_oneof![Just(900_i64), any::<i64>()],
    ) {
        let mut headers = vec![("host".to_owned(), b"sts.amazonaws.com".to_vec())];
        if let Some(a) = authorization {
            headers.push(("authorization".to_owned(), a.into_bytes()));
        }
        if let Some(d) = date {
            headers.push(("x-amz-date".to_owned(), d));
        }
        if let Some(d) = http_date {
            headers.push(("date".to_owned(), d));
        }
        headers.extend(extra);
        let req = Req {
            method: "POST".to_owned(),
            path: path.to_owned(),
            query,
            headers,
            body: b"Action=GetCallerIdentity".to_vec(),
        };
        exercise(&req, now, skew);
    }
}
