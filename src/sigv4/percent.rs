//! Query strings as SigV4 reads them: split into raw pairs, decoded with the crate's lenient,
//! byte-exact form decoder (`crate::percent`).
//!
//! Canonicalisation decodes what the client sent and encodes it again, so two spellings of the
//! same value (`%7E` and `~`, `+` and `%20`) sign the same, and two different values never do.

use std::borrow::Cow;

pub(super) use crate::percent::decode_form;

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
