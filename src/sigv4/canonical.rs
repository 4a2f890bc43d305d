//! The canonical request and the string to sign, rebuilt from what arrived on the wire.
//!
//! Decisions where clients or documents disagree (each checked against the AWS test suite and
//! the `aws-sigv4` oracle):
//!
//! - **Path**: the non-S3 rule. Dot segments and empty segments are removed (RFC 3986 §5.2.4,
//!   so `/a/b/..` keeps its trailing slash, as `aws-sigv4` does), then every byte outside the
//!   unreserved set and `/` is percent-encoded *again*, so a wire path `/%E1%88%B4` signs as
//!   `/%25E1%2588%25B4` (botocore's `quote(path, safe='/~')` on the already-quoted path).
//! - **Query**: every `name=value` is form-decoded (`%XX` → byte, `+` → space) and re-encoded
//!   with RFC 3986, then sorted by encoded name, then encoded value. A raw `+` therefore signs
//!   as `%20` — as in `aws-sigv4` (smithy-lang/smithy-rs#4227) and as the Query-protocol form
//!   parser reads it, so the signed value is the value the handler acts on; a literal plus must
//!   be sent as `%2B` (botocore, aws-sdk-rust and curl's `--url-query` all do). Invalid escapes
//!   stay literal (`%zz` → `%25zz`) and non-UTF-8 bytes are kept, never replaced.
//! - **Headers**: only the names in `SignedHeaders`, in that order; each value trimmed of
//!   spaces with inner runs of spaces collapsed (the AWS "Trimall" rule and `aws-sigv4`; tabs
//!   are kept, where botocore would fold them); repeated headers joined with `,` in arrival
//!   order.
//! - **Payload**: always the hex SHA-256 of the body; `x-amz-content-sha256` is checked against
//!   it elsewhere, never trusted in its place.

use sha2::{Digest, Sha256};

use super::percent::raw_pairs;
use super::{ALGORITHM, HttpRequest, SigV4Error, SignedRequest};
use crate::percent;

/// Appends the canonical URI of `raw_path`.
pub(super) fn push_canonical_uri(out: &mut Vec<u8>, raw_path: &str) {
    // The path of every STS and IAM call, canonical as it is.
    if raw_path == "/" {
        out.push(b'/');
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in raw_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut path = String::with_capacity(raw_path.len() + 1);
    path.push('/');
    path.push_str(&segments.join("/"));
    let trailing_slash = raw_path.ends_with('/')
        || raw_path.ends_with("/.")
        || raw_path.ends_with("/..")
        || raw_path == "."
        || raw_path == "..";
    if !segments.is_empty() && trailing_slash {
        path.push('/');
    }
    percent::encode_into(out, path.as_bytes(), percent::RFC3986_PATH);
}

/// Appends the canonical query string of `raw_query`. A presigned request's own
/// `X-Amz-Signature` cannot be part of what it signs, so `skip_signature` drops it.
pub(super) fn push_canonical_query(out: &mut Vec<u8>, raw_query: &str, skip_signature: bool) {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = raw_pairs(raw_query)
        .filter_map(|(name, value)| {
            let name = percent::decode_form(name);
            if skip_signature && *name == *b"X-Amz-Signature" {
                return None;
            }
            Some((
                percent::encode(&name),
                percent::encode(&percent::decode_form(value)),
            ))
        })
        .collect();
    pairs.sort_unstable();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
    }
}

/// Appends `value` with leading and trailing spaces removed and inner runs of spaces collapsed:
/// its space-free runs, one space between each (copied whole: a session token is ~1 KB).
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    // Most values hold no space at all; a scan without an early exit vectorises.
    if !value.iter().fold(false, |any, &b| any | (b == b' ')) {
        out.extend_from_slice(value);
        return;
    }
    let mut runs = value.split(|&b| b == b' ').filter(|run| !run.is_empty());
    if let Some(first) = runs.next() {
        out.extend_from_slice(first);
        for run in runs {
            out.push(b' ');
            out.extend_from_slice(run);
        }
    }
}

/// Appends one `name:value1,value2\n` line per signed header.
fn push_canonical_headers(
    out: &mut Vec<u8>,
    req: &HttpRequest<'_>,
    signed_headers: &[String],
) -> Result<(), SigV4Error> {
    for name in signed_headers {
        let mut values = req.header_values(name).peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::SignedHeaderMissing { name: name.clone() });
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(out, value);
        }
        out.push(b'\n');
    }
    Ok(())
}

/// The canonical request for `req` as `signed` describes it, with `payload_hash` (lowercase hex)
/// as its last line.
pub(super) fn canonical_request(
    req: &HttpRequest<'_>,
    signed: &SignedRequest,
    payload_hash: &str,
) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(256 + req.query.len() + 64 * signed.signed_headers.len());
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    push_canonical_uri(&mut out, req.path);
    out.push(b'\n');
    push_canonical_query(
        &mut out,
        req.query,
        signed.form == super::AuthForm::Presigned,
    );
    out.push(b'\n');
    push_canonical_headers(&mut out, req, &signed.signed_headers)?;
    out.push(b'\n');
    for (i, name) in signed.signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// `AWS4-HMAC-SHA256\n<basic date>\n<scope>\n<hex sha256(canonical request)>`, written
/// into one buffer of the right size.
pub(super) fn string_to_sign(signed: &SignedRequest, canonical_request: &[u8]) -> Vec<u8> {
    let mut hash = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(Sha256::digest(canonical_request), &mut hash);
    let scope = &signed.scope;
    let date = signed.date.basic();
    let mut out = Vec::with_capacity(
        ALGORITHM.len()
            + date.len()
            + scope.date.len()
            + scope.region.len()
            + scope.service.len()
            + scope.terminator.len()
            + hash.len()
            + 6,
    );
    for (part, sep) in [
        (ALGORITHM, b'\n'),
        (date, b'\n'),
        (scope.date.as_str(), b'/'),
        (scope.region.as_str(), b'/'),
        (scope.service.as_str(), b'/'),
        (scope.terminator.as_str(), b'\n'),
    ] {
        out.extend_from_slice(part.as_bytes());
        out.push(sep);
    }
    out.extend_from_slice(&hash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(path: &str) -> String {
        let mut out = Vec::new();
        push_canonical_uri(&mut out, path);
        String::from_utf8(out).unwrap()
    }

    fn query(raw: &str, presigned: bool) -> String {
        let mut out = Vec::new();
        push_canonical_query(&mut out, raw, presigned);
        String::from_utf8(out).unwrap()
    }

    fn trimmed(value: &str) -> String {
        let mut out = Vec::new();
        push_trimmed(&mut out, value.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn normalises_and_double_encodes_paths() {
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/../..", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/example space/", "/example%20space/"),
            ("/\u{1234}", "/%E1%88%B4"),
            ("/%E1%88%B4", "/%25E1%2588%25B4"),
            ("/-._~0123456789AZaz", "/-._~0123456789AZaz"),
            ("/a+b:c@d", "/a%2Bb%3Ac%40d"),
            ("*", "/%2A"),
        ] {
            assert_eq!(uri(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn decodes_reencodes_and_sorts_query() {
        for (raw, want) in [
            ("", ""),
            ("Param2=value2&Param1=value1", "Param1=value1&Param2=value2"),
            ("Param1=value2&Param1=Value1", "Param1=Value1&Param1=value2"),
            ("key", "key="),
            ("a=1&&b=2&", "a=1&b=2"),
            ("\u{1234}=bar", "%E1%88%B4=bar"),
            ("%e1%88%b4=bar", "%E1%88%B4=bar"),
            ("a=%7e%41", "a=~A"),
            ("a=b+c", "a=b%20c"),
            ("a=b%2Bc", "a=b%2Bc"),
            ("a=x=y", "a=x%3Dy"),
            ("a=100%", "a=100%25"),
            ("a=%FF", "a=%FF"),
            ("a-b=1&a=2", "a=2&a-b=1"),
            ("X-Amz-Signature=abc&x=1", "X-Amz-Signature=abc&x=1"),
        ] {
            assert_eq!(query(raw, false), want, "{raw:?}");
        }
        assert_eq!(
            query("X-Amz-Signature=abc&x=1&X%2DAmz-Signature=d", true),
            "x=1"
        );
    }

    #[test]
    fn trims_and_collapses_spaces_only() {
        assert_eq!(trimmed("  a   b  c  "), "a b c");
        assert_eq!(trimmed("\"a   b   c\""), "\"a b c\"");
        assert_eq!(trimmed(""), "");
        assert_eq!(trimmed("    "), "");
        assert_eq!(trimmed("a\t\tb"), "a\t\tb");
        assert_eq!(trimmed("no-space\tat-all"), "no-space\tat-all");
        assert_eq!(trimmed(" lead"), "lead");
        assert_eq!(trimmed("trail "), "trail");
    }
}
