//! The crate's one percent codec, on `percent-encoding`: RFC 3986 encoding as SigV4 and the Key
//! Uri Format want it, and the two form decoders the broker needs.
//!
//! - Encoding leaves only the unreserved characters (`A-Z a-z 0-9 - . _ ~`) as they are, with
//!   uppercase hex, as SigV4's canonical request requires byte for byte; the path variant also
//!   keeps `/`.
//! - [`decode_form`] is lenient and byte-exact, for SigV4 canonicalisation: it must accept
//!   whatever a client signed, so an invalid escape stays literal, and bytes that are not UTF-8
//!   stay those bytes (a lossy decode would map distinct inputs to one U+FFFD and make them
//!   interchangeable under one signature).
//! - [`decode_form_strict`] is for the Query protocol's parameters, which must be text: a
//!   malformed escape or non-UTF-8 result is refused rather than guessed at.
//!
//! Both decoders read `+` as a space, as `application/x-www-form-urlencoded` does; the crate
//! only knows `%XX`, so `+` is replaced before decoding (a `%2B` decodes to a `+` that stays).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

/// Every byte except RFC 3986's unreserved characters.
pub(crate) const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// [`RFC3986`] with `/` left as it is, for paths.
pub(crate) const RFC3986_PATH: &AsciiSet = &RFC3986.remove(b'/');

/// Appends `input` to `out`, percent-encoding the bytes in `set`.
pub(crate) fn encode_into(out: &mut Vec<u8>, input: &[u8], set: &'static AsciiSet) {
    for piece in percent_encode(input, set) {
        out.extend_from_slice(piece.as_bytes());
    }
}

/// `input` with every byte but the unreserved ones percent-encoded.
pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    encode_into(&mut out, input, RFC3986);
    out
}

/// `text` (as UTF-8) with every byte but the unreserved ones percent-encoded.
pub(crate) fn encode_str(text: &str) -> String {
    percent_encode(text.as_bytes(), RFC3986).to_string()
}

/// Decodes form text leniently: `%XX` is a byte, `+` is a space, and a `%` not followed by two
/// hex digits stays a literal `%`. Borrows when there is nothing to decode.
pub(crate) fn decode_form(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'+') {
        return percent_decode(input).into();
    }
    let spaced: Vec<u8> = input
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Cow::Owned(percent_decode(&spaced).collect())
}

/// Decodes form text strictly: as [`decode_form`], but `None` when a `%` is not followed by two
/// hex digits or the result is not UTF-8.
pub(crate) fn decode_form_strict(input: &[u8]) -> Option<String> {
    // Hex digits are never `%`, so checking every `%` is checking every escape.
    let escapes_are_valid = input
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'%')
        .all(|(i, _)| {
            input
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        });
    if !escapes_are_valid {
        return None;
    }
    String::from_utf8(decode_form(input).into_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(encode(b"-._~AZaz09"), b"-._~AZaz09");
        assert_eq!(encode(b"a b+c=d&e/f%"), b"a%20b%2Bc%3Dd%26e%2Ff%25");
        assert_eq!(encode("\u{1234}".as_bytes()), b"%E1%88%B4");
        assert_eq!(encode(&[0x00, 0x7f, 0x80, 0xff]), b"%00%7F%80%FF");
        assert_eq!(encode_str("Zoë+/?&=#%"), "Zo%C3%AB%2B%2F%3F%26%3D%23%25");
        let mut path = Vec::new();
        encode_into(&mut path, b"/a b/%41~", RFC3986_PATH);
        assert_eq!(path, b"/a%20b/%2541~");
    }

    #[test]
    fn every_byte_encodes_as_rfc3986_says() {
        for b in 0..=u8::MAX {
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            let want = if unreserved {
                vec![b]
            } else {
                format!("%{b:02X}").into_bytes()
            };
            assert_eq!(encode(&[b]), want, "byte {b:#04x}");
        }
    }

    #[test]
    fn decodes_form_text_leniently() {
        assert!(matches!(decode_form(b"plain"), Cow::Borrowed(s) if s == b"plain"));
        assert_eq!(&*decode_form(b"a+b%20c"), b"a b c");
        assert_eq!(&*decode_form(b"%2B%2b+"), b"++ ");
        assert_eq!(&*decode_form(b"%E1%88%B4"), "\u{1234}".as_bytes());
        assert_eq!(&*decode_form(b"%FF%fe"), &[0xff, 0xfe]);
        assert_eq!(&*decode_form(b"100%"), b"100%");
        assert_eq!(&*decode_form(b"%4"), b"%4");
        assert_eq!(&*decode_form(b"%zz%"), b"%zz%");
        assert_eq!(&*decode_form(b"%%41+%+"), b"%A % ");
    }

    #[test]
    fn decodes_form_text_strictly() {
        assert_eq!(decode_form_strict(b"").as_deref(), Some(""));
        assert_eq!(decode_form_strict(b"a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(decode_form_strict(b"%2B%2b").as_deref(), Some("++"));
        assert_eq!(decode_form_strict(b"%C3%A9t%c3%a9").as_deref(), Some("été"));
        for bad in [
            &b"%"[..],
            b"%4",
            b"100%",
            b"%zz",
            b"%4g",
            b"%%41",
            b"a%2",
            b"%ff%fe",
            b"\xff",
            b"%C3",
        ] {
            assert_eq!(decode_form_strict(bad), None, "{bad:?}");
        }
    }
}
