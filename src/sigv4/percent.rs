//! Percent-decoding and SigV4's RFC 3986 encoding, on bytes.
//!
//! Canonicalisation decodes what the client sent and encodes it again, so two spellings of the
//! same value (`%7E` and `~`, `+` and `%20`) sign the same, and two different values never do.
//! Decoding is byte-exact: an escape that is not valid UTF-8 stays the same bytes (unlike a
//! lossy UTF-8 decode, which would map distinct inputs to one U+FFFD and make them
//! interchangeable under one signature).

use std::borrow::Cow;

/// RFC 3986 unreserved characters, the only bytes SigV4 leaves unencoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The uppercase hex digit of a nibble (`n < 16`).
fn hex_digit(n: u8) -> u8 {
    if n < 10 { b'0' + n } else { b'A' + n - 10 }
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', hex_digit(b >> 4), hex_digit(b & 0x0f)]);
}

/// Appends `input` to `out`, percent-encoding every byte except the unreserved set and, when
/// `keep_slash`, `/`. Hex digits are uppercase.
pub(super) fn encode_into(out: &mut Vec<u8>, input: &[u8], keep_slash: bool) {
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b);
        } else {
            push_escaped(out, b);
        }
    }
}

/// Encodes a query name or value for the canonical query string.
pub(super) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    encode_into(&mut out, input, false);
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text as the Query protocol reads it: `%XX` is a
/// byte, `+` is a space, and a `%` not followed by two hex digits stays a literal `%`.
pub(super) fn decode_form(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_value);
                let lo = input.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Splits a raw query string into `(name, value)` pairs as sent, without decoding. Empty
/// pieces (`a=1&&b=2`) are skipped; a piece without `=` has an empty value.
pub(super) fn raw_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (
                piece.get(..eq).unwrap_or_default(),
                piece.get(eq + 1..).unwrap_or_default(),
            ),
            None => (piece, &b""[..]),
        })
}

/// The first value of the query parameter whose decoded name is `name`, decoded.
pub(super) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, [u8]>> {
    raw_pairs(query)
        .find(|(n, _)| *decode_form(n) == *name.as_bytes())
        .map(|(_, v)| decode_form(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(encode(b"-._~AZaz09"), b"-._~AZaz09");
        assert_eq!(encode(b"a b+c=d&e/f%"), b"a%20b%2Bc%3Dd%26e%2Ff%25");
        assert_eq!(encode("\u{1234}".as_bytes()), b"%E1%88%B4");
        assert_eq!(encode(&[0x00, 0xff]), b"%00%FF");
        let mut path = Vec::new();
        encode_into(&mut path, b"/a b/%41", true);
        assert_eq!(path, b"/a%20b/%2541");
    }

    #[test]
    fn decodes_form_text() {
        assert_eq!(&*decode_form(b"plain"), b"plain");
        assert_eq!(&*decode_form(b"a+b%20c"), b"a b c");
        assert_eq!(&*decode_form(b"%2B%2b"), b"++");
        assert_eq!(&*decode_form(b"%E1%88%B4"), "\u{1234}".as_bytes());
        assert_eq!(&*decode_form(b"%FF%fe"), &[0xff, 0xfe]);
        assert_eq!(&*decode_form(b"100%"), b"100%");
        assert_eq!(&*decode_form(b"%4"), b"%4");
        assert_eq!(&*decode_form(b"%zz%"), b"%zz%");
    }

    #[test]
    fn splits_raw_pairs() {
        let pairs: Vec<_> = raw_pairs("a=1&&b&c=x=y&=v&").collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (&b"b"[..], &b""[..]),
                (&b"c"[..], &b"x=y"[..]),
                (&b""[..], &b"v"[..]),
            ]
        );
        assert_eq!(raw_pairs("").count(), 0);
    }

    #[test]
    fn finds_first_param_by_decoded_name() {
        let q = "X%2DAmz%2DDate=1&X-Amz-Date=2";
        assert_eq!(query_param(q, "X-Amz-Date").as_deref(), Some(&b"1"[..]));
        assert_eq!(query_param(q, "x-amz-date"), None);
    }
}
