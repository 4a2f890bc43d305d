//! Reading a request's SigV4 authentication data, in the order AWS reports problems.
//!
//! Order (`docs/sts-wire-contract.md#sigv4-check-order`: dacut/scratchstack-aws-signature's notes
//! on AWS's error ordering, cross-checked with mhart/dynalite and observed AWS messages): both
//! forms at once → header components without `=` → missing components or date → unsupported
//! algorithm → `host` not signed → malformed date → malformed credential → malformed signature. A
//! presigned request whose `X-Amz-Algorithm` is some other algorithm counts as unauthenticated (AWS
//! answers MissingAuthenticationToken), so [`parse`] returns `Ok(None)` for it.

use std::borrow::Cow;

use super::date::AmzDate;
use super::{
    ALGORITHM, AuthForm, CredentialScope, HttpRequest, MAX_EXPIRES_SECS, MissingAuthorizationParts,
    MissingQueryParams, SigV4Error, SignedRequest, percent,
};

/// Reads the request's SigV4 data.
///
/// `Ok(None)`: the request carries no SigV4 auth at all (→ MissingAuthenticationToken upstream).
///
/// # Errors
///
/// Any malformed authentication data, as the [`SigV4Error`] AWS would report.
pub(crate) fn parse(req: &HttpRequest<'_>) -> Result<Option<SignedRequest>, SigV4Error> {
    let authorization = req.first_header("authorization");
    let presigned = percent::raw_pairs(req.query)
        .any(|(name, _)| *percent::decode_form(name) == *b"X-Amz-Algorithm");
    match (authorization, presigned) {
        (Some(_), true) => Err(SigV4Error::BothAuthForms),
        (Some(value), false) => parse_header_form(req, value).map(Some),
        (None, true) => parse_presigned(req),
        (None, false) => Ok(None),
    }
}

/// The pieces both forms provide, still as text.
struct Fields<'f> {
    form: AuthForm,
    credential: &'f str,
    signed_headers: &'f str,
    signature: &'f str,
    date: DateSource<'f>,
    security_token: Option<String>,
}

enum DateSource<'d> {
    /// `X-Amz-Date`, header or query parameter.
    AmzDate(&'d str),
    /// The HTTP `Date` header.
    HttpDate(&'d str),
}

fn parse_header_form(req: &HttpRequest<'_>, value: &[u8]) -> Result<SignedRequest, SigV4Error> {
    let header = lossy(value);
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    let (algorithm, params) = split_at_byte(header, blank).unwrap_or((header, ""));

    let (mut credential, mut signature, mut signed_headers) = (None, None, None);
    // AWS splits on spaces as well as commas: `Credential= AKID/…` is reported as
    // `'AKID/…' not a valid key=value pair` (boto/boto3#2280). The last occurrence wins.
    for part in pieces(params, separator) {
        let Some((key, val)) = split_at_byte(part, byte(b'=')) else {
            return Err(SigV4Error::MissingEqualSign {
                part: part.to_owned(),
                header: header.to_owned(),
            });
        };
        match key {
            "Credential" => credential = Some(val),
            "Signature" => signature = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            _ => {}
        }
    }

    // X-Amz-Date wins over Date; the text is only copied when an error needs it.
    let amz_date = req.first_header("x-amz-date").map(lossy);
    let http_date = req.first_header("date").map(lossy);
    let date = match (&amz_date, &http_date) {
        (Some(d), _) => Some(DateSource::AmzDate(d)),
        (None, Some(d)) => Some(DateSource::HttpDate(d)),
        (None, None) => None,
    };
    let (Some(credential), Some(signature), Some(signed_headers), Some(date)) =
        (credential, signature, signed_headers, date)
    else {
        return Err(SigV4Error::IncompleteAuthorization(
            MissingAuthorizationParts {
                credential: credential.is_none(),
                signature: signature.is_none(),
                signed_headers: signed_headers.is_none(),
                date: amz_date.is_none() && http_date.is_none(),
                header: header.to_owned(),
            },
        ));
    };
    if algorithm != ALGORITHM {
        return Err(SigV4Error::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }
    let security_token = header_token(req).or_else(|| query_token(req));
    finish(Fields {
        form: AuthForm::Header,
        credential,
        signed_headers,
        signature,
        date,
        security_token,
    })
}

/// The query parameters of the presigned form, each of which may be given once.
const PRESIGNED_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-Security-Token",
];

fn parse_presigned(req: &HttpRequest<'_>) -> Result<Option<SignedRequest>, SigV4Error> {
    for name in PRESIGNED_PARAMS {
        let given = percent::raw_pairs(req.query)
            .filter(|(n, _)| *percent::decode_form(n) == *name.as_bytes())
            .count();
        if given > 1 {
            return Err(SigV4Error::RepeatedQueryParam { name });
        }
    }
    let param = |name: &str| {
        percent::query_param(req.query, name)
            .filter(|v| !v.is_empty())
            .map(|v| lossy(&v).into_owned())
    };
    let algorithm = param("X-Amz-Algorithm");
    let credential = param("X-Amz-Credential");
    let signature = param("X-Amz-Signature");
    let signed_headers = param("X-Amz-SignedHeaders");
    let date = param("X-Amz-Date");
    let missing = MissingQueryParams {
        algorithm: algorithm.is_none(),
        credential: credential.is_none(),
        signature: signature.is_none(),
        signed_headers: signed_headers.is_none(),
        date: date.is_none(),
    };
    let (Some(algorithm), Some(credential), Some(signature), Some(signed_headers), Some(date)) =
        (algorithm, credential, signature, signed_headers, date)
    else {
        return Err(SigV4Error::IncompleteQuery(missing));
    };
    if algorithm != ALGORITHM {
        return Ok(None);
    }
    let security_token = query_token(req).or_else(|| header_token(req));
    let mut signed = finish(Fields {
        form: AuthForm::Presigned,
        credential: &credential,
        signed_headers: &signed_headers,
        signature: &signature,
        date: DateSource::AmzDate(&date),
        security_token,
    })?;
    signed.expires_secs = percent::query_param(req.query, "X-Amz-Expires")
        .map(|v| parse_expires(&v))
        .transpose()?;
    Ok(Some(signed))
}

/// `X-Amz-Expires`: an integer from 1 to 604800 (seven days), optionally signed, leading zeros
/// allowed (`docs/sts-wire-contract.md#sigv4-presigned-expiry`).
fn parse_expires(value: &[u8]) -> Result<i64, SigV4Error> {
    let (negative, digits) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, value),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(SigV4Error::ExpiresNotANumber);
    }
    let significant = digits
        .iter()
        .skip_while(|d| **d == b'0')
        .fold(0_i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    match (negative, significant) {
        (_, 0) => Err(SigV4Error::ExpiresZero),
        (true, _) => Err(SigV4Error::ExpiresNegative),
        (false, n) if n > MAX_EXPIRES_SECS => Err(SigV4Error::ExpiresOverAWeek),
        (false, n) => Ok(n),
    }
}

/// Where the first space or tab of `bytes` is.
fn blank(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b' ', b'\t', bytes)
}

/// Where the first `,`, space or tab of `bytes` is: what separates `Authorization`'s parts.
fn separator(bytes: &[u8]) -> Option<usize> {
    memchr::memchr3(b',', b' ', b'\t', bytes)
}

/// Where the first `byte` of `bytes` is.
fn byte(byte: u8) -> impl Fn(&[u8]) -> Option<usize> + Copy {
    move |bytes| memchr::memchr(byte, bytes)
}

/// `text` before and after the first separator `find` finds, that byte dropped. The separators
/// this module splits on are ASCII, so both sides are whole UTF-8. Byte searches (`memchr`)
/// rather than `str` patterns: a pattern of several chars decodes the ~200-byte
/// `Authorization` header char by char, on every request.
fn split_at_byte(text: &str, find: impl Fn(&[u8]) -> Option<usize>) -> Option<(&str, &str)> {
    let i = find(text.as_bytes())?;
    Some((text.get(..i)?, text.get(i + 1..)?))
}

/// The non-empty pieces of `text` between bytes matching `sep`.
fn pieces(text: &str, sep: impl Fn(&[u8]) -> Option<usize> + Copy) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        while let Some(text) = rest {
            let (piece, tail) = match split_at_byte(text, sep) {
                Some((piece, tail)) => (piece, Some(tail)),
                None => (text, None),
            };
            rest = tail;
            if !piece.is_empty() {
                return Some(piece);
            }
        }
        None
    })
}

/// The text of `bytes`, invalid UTF-8 replaced. Valid text (every signer sends ASCII) is checked
/// by `from_utf8`, word by word, rather than by `from_utf8_lossy`'s chunk walk, byte by byte: a
/// session token is ~1 KB.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn header_token(req: &HttpRequest<'_>) -> Option<String> {
    req.first_header("x-amz-security-token")
        .map(|v| lossy(v).into_owned())
}

fn query_token(req: &HttpRequest<'_>) -> Option<String> {
    percent::query_param(req.query, "X-Amz-Security-Token").map(|v| lossy(&v).into_owned())
}

fn finish(fields: Fields<'_>) -> Result<SignedRequest, SigV4Error> {
    let mut signed_headers: Vec<String> = Vec::with_capacity(4);
    let mut rest = fields.signed_headers;
    loop {
        match split_at_byte(rest, byte(b';')) {
            Some((name, tail)) => {
                signed_headers.push(name.to_owned());
                rest = tail;
            }
            None => {
                signed_headers.push(rest.to_owned());
                break;
            }
        }
    }
    if !signed_headers
        .iter()
        .any(|h| h == "host" || h == ":authority")
    {
        return Err(SigV4Error::HostNotSigned);
    }
    let date = match fields.date {
        DateSource::AmzDate(text) => AmzDate::parse_basic(text),
        DateSource::HttpDate(text) => AmzDate::parse_http_date(text),
    };
    let Some(date) = date else {
        let (DateSource::AmzDate(value) | DateSource::HttpDate(value)) = fields.date;
        return Err(SigV4Error::MalformedDate {
            value: value.to_owned(),
        });
    };
    let scope = parse_credential(fields.credential)?;
    let signature = parse_signature(fields.signature).ok_or(SigV4Error::MalformedSignature)?;
    Ok(SignedRequest {
        form: fields.form,
        scope,
        signed_headers,
        signature,
        date,
        security_token: fields.security_token,
        expires_secs: None,
    })
}

fn parse_credential(credential: &str) -> Result<CredentialScope, SigV4Error> {
    let malformed = || SigV4Error::MalformedCredential {
        credential: credential.to_owned(),
    };
    let slash = byte(b'/');
    let (akid, rest) = split_at_byte(credential, slash).ok_or_else(malformed)?;
    let (date, rest) = split_at_byte(rest, slash).ok_or_else(malformed)?;
    let (region, rest) = split_at_byte(rest, slash).ok_or_else(malformed)?;
    let (service, terminator) = split_at_byte(rest, slash).ok_or_else(malformed)?;
    if slash(terminator.as_bytes()).is_some() {
        return Err(malformed());
    }
    Ok(CredentialScope {
        access_key_id: akid.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        terminator: terminator.to_owned(),
    })
}

/// Exactly 64 lowercase hex digits, as every signer emits; anything else cannot match.
fn parse_signature(text: &str) -> Option<[u8; 32]> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let digits: &[u8; 64] = text.as_bytes().try_into().ok()?;
    let mut out = [0_u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_ascii_separators_only() {
        assert_eq!(split_at_byte("a=b=c", byte(b'=')), Some(("a", "b=c")));
        assert_eq!(split_at_byte("=", byte(b'=')), Some(("", "")));
        assert_eq!(split_at_byte("abc", byte(b'=')), None);
        let found: Vec<&str> = pieces(",a, b\t\tc,,é,", separator).collect();
        assert_eq!(found, ["a", "b", "c", "é"]);
        assert_eq!(pieces("", byte(b',')).count(), 0);
        assert_eq!(pieces(",,,", byte(b',')).count(), 0);
    }

    #[test]
    fn credentials_have_exactly_five_parts() {
        let scope = parse_credential("AKID/20260101/us-east-1/sts/aws4_request").unwrap();
        assert_eq!(
            (
                scope.access_key_id.as_str(),
                scope.date.as_str(),
                scope.region.as_str(),
                scope.service.as_str(),
                scope.terminator.as_str()
            ),
            ("AKID", "20260101", "us-east-1", "sts", "aws4_request")
        );
        let empty = parse_credential("AKID/20260101//sts/aws4_request").unwrap();
        assert_eq!(empty.region, "");
        for bad in [
            "AKID/20260101/us-east-1/sts",
            "AKID/20260101/us-east-1/sts/aws4_request/",
            "AKID/20260101/us-east-1/sts/aws4_request/x",
            "AKID",
            "",
        ] {
            assert!(
                matches!(
                    parse_credential(bad),
                    Err(SigV4Error::MalformedCredential { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_are_64_lowercase_hex_digits() {
        let text = "0123456789abcdef00ff7f80a5c3e1d2b4968778695a4b3c2d1e0f1a2b3c4d5e";
        let mut want = [0_u8; 32];
        hex::decode_to_slice(text, &mut want).unwrap();
        assert_eq!(parse_signature(text), Some(want));
        assert_eq!(parse_signature(&text.to_uppercase()), None);
        assert_eq!(parse_signature(&text[..62]), None);
        assert_eq!(parse_signature(&format!("{text}00")), None);
        assert_eq!(parse_signature(&text.replace('a', "g")), None);
        assert_eq!(parse_signature(&format!("{}é", &text[..62])), None);
    }

    #[test]
    fn lossy_borrows_valid_text_and_replaces_invalid_bytes() {
        assert!(matches!(
            lossy(b"IQoJb3JpZ2luX2Vj+/="),
            Cow::Borrowed("IQoJb3JpZ2luX2Vj+/=")
        ));
        assert_eq!(lossy(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(lossy(b"\xe2\x82"), "\u{fffd}");
    }
}
