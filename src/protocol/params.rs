//! The AWS Query protocol's parameters: `application/x-www-form-urlencoded` pairs from the
//! query string and the body. Each name may be given once, in the query string or in the body:
//! AWS lets the first occurrence win, but the canonical query a signature covers is sorted, so
//! the "first" of two values is chosen by whoever can reorder the query, not by the signer; the
//! broker refuses the request instead (`docs/sts-wire-contract.md#parameter-decoding`). Unknown
//! names are ignored by the handlers (`docs/sts-wire-contract.md#front-door`).

use std::ops::Range;

use super::error::ApiError;

/// Decoded request parameters in arrival order.
///
/// Every request parses a form, so the decoded text of all names and values lives in one
/// string and the pairs are ranges of it: two allocations per request instead of two per pair.
#[derive(Clone, Default)]
pub(crate) struct Params {
    text: String,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

/// Names only: values may be MFA codes, presigned signatures or session tokens.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Params {
    /// Parses one form-encoded string (`+` is a space, `%XX` a byte) and appends its pairs.
    /// Malformed escapes or non-UTF-8 text are refused, and so is a name already given (in this
    /// string or an earlier one).
    pub(crate) fn extend_from_form(&mut self, form: &[u8]) -> Result<(), ApiError> {
        // Most requests have one of the two (query string or body) empty.
        if form.is_empty() {
            return Ok(());
        }
        // The usual form (SDKs escape little in an STS call) has nothing to decode: then it is
        // copied once, whole, and its names and values are ranges of that copy. A `+` or `%`
        // anywhere sends every piece through the decoder instead. (A fold without early exit:
        // the compiler checks many bytes at a time.)
        let plain = form
            .iter()
            .fold(true, |p, &b| p & (b != b'%') & (b != b'+'));
        let copied = match std::str::from_utf8(form) {
            Ok(whole) if plain => {
                self.text.reserve(form.len());
                let base = self.text.len();
                self.text.push_str(whole);
                Some(base)
            }
            _ => None,
        };
        // Each `&` (or the end) closes a part, whose first `=` splits it.
        let mut start = 0;
        while start <= form.len() {
            let rest = form.get(start..).unwrap_or_default();
            let end = rest
                .iter()
                .position(|&b| b == b'&')
                .map_or(form.len(), |n| start + n);
            let part = form.get(start..end).unwrap_or_default();
            if !part.is_empty() {
                let eq = part.iter().position(|&b| b == b'=').map(|n| start + n);
                self.push_pair(form, copied, start, eq, end)?;
            }
            start = end + 1;
        }
        Ok(())
    }

    /// Appends the pair in `form[start..end]`, split at `eq` when it has an `=`: as ranges of
    /// the form's copy at `copied`, or decoded onto the end of the text.
    fn push_pair(
        &mut self,
        form: &[u8],
        copied: Option<usize>,
        start: usize,
        eq: Option<usize>,
        end: usize,
    ) -> Result<(), ApiError> {
        let name_end = eq.unwrap_or(end);
        let value_start = eq.map_or(end, |eq| eq + 1);
        let name = match copied {
            Some(base) => base + start..base + name_end,
            None => self.push_decoded(form.get(start..name_end).unwrap_or_default())?,
        };
        let name_bytes = self.text.as_bytes().get(name.clone()).unwrap_or_default();
        if self
            .pairs
            .iter()
            .any(|(n, _)| self.text.as_bytes().get(n.clone()) == Some(name_bytes))
        {
            let name = self.text.get(name).unwrap_or_default().to_owned();
            return Err(ApiError::DuplicateParameter(name));
        }
        let value = match copied {
            Some(base) => base + value_start..base + end,
            None => self.push_decoded(form.get(value_start..end).unwrap_or_default())?,
        };
        self.pairs.push((name, value));
        Ok(())
    }

    /// Form-decodes `raw` onto the end of the text, strictly (a malformed escape or non-UTF-8
    /// text is refused), and returns where it landed.
    fn push_decoded(&mut self, raw: &[u8]) -> Result<Range<usize>, ApiError> {
        let at = self.text.len();
        if raw.iter().any(|&b| b == b'%' || b == b'+') {
            let decoded =
                crate::percent::decode_form_strict(raw).ok_or(ApiError::MalformedQueryString)?;
            self.text.push_str(&decoded);
        } else {
            let text = std::str::from_utf8(raw).map_err(|_| ApiError::MalformedQueryString)?;
            self.text.push_str(text);
        }
        Ok(at..self.text.len())
    }

    /// The names given so far, in order.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .map(|(name, _)| self.text.get(name.clone()).unwrap_or_default())
    }

    /// The value given for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        // Bytes compared, so that only the one value found is checked for char boundaries.
        let text = self.text.as_bytes();
        self.pairs
            .iter()
            .find(|(n, _)| text.get(n.clone()) == Some(name.as_bytes()))
            .and_then(|(_, v)| self.text.get(v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Params, ApiError> {
        let mut p = Params::default();
        p.extend_from_form(s.as_bytes())?;
        Ok(p)
    }

    #[test]
    fn botocore_encoding_decodes() {
        let p = parse("Action=GetSessionToken&Version=2011-06-15&SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Fa+b&TokenCode=123456").unwrap();
        assert_eq!(p.get("Action"), Some("GetSessionToken"));
        assert_eq!(
            p.get("SerialNumber"),
            Some("arn:aws:iam::123456789012:mfa/a b")
        );
    }

    #[test]
    fn missing_value_is_empty() {
        let p = parse("A=1&B&&C=").unwrap();
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.get("B"), Some(""));
        assert_eq!(p.get("C"), Some(""));
        assert_eq!(p.get("D"), None);
    }

    /// However it is spelled, and wherever the first one came from.
    #[test]
    fn a_name_given_twice_is_refused() {
        for form in [
            "A=1&A=2",
            "A=1&A=1",
            "A&A",
            "%41=1&A=2",
            "=1&=2",
            "A=1&B=2&A",
        ] {
            assert!(
                matches!(parse(form), Err(ApiError::DuplicateParameter(_))),
                "{form}"
            );
        }
        assert_eq!(
            parse("Action=x&Version=y&Action=z").err(),
            Some(ApiError::DuplicateParameter("Action".into()))
        );
        let mut p = parse("Action=GetSessionToken").unwrap();
        assert_eq!(
            p.extend_from_form(b"TokenCode=1&Action=GetCallerIdentity"),
            Err(ApiError::DuplicateParameter("Action".into()))
        );
        assert!(p.extend_from_form(b"SerialNumber=s").is_ok());
    }

    #[test]
    fn malformed_escapes_and_non_utf8_are_refused() {
        assert!(matches!(
            parse("A=%zz"),
            Err(ApiError::MalformedQueryString)
        ));
        assert!(matches!(parse("A=%4"), Err(ApiError::MalformedQueryString)));
        assert!(matches!(
            parse("A=%ff%fe"),
            Err(ApiError::MalformedQueryString)
        ));
        let mut p = Params::default();
        assert!(p.extend_from_form(b"A=\xff").is_err());
    }

    #[test]
    fn debug_shows_names_only() {
        let p = parse("TokenCode=123456&Action=GetSessionToken").unwrap();
        assert_eq!(format!("{p:?}"), "[\"TokenCode\", \"Action\"]");
    }

    /// The decoder as it was before names and values shared one string: each piece decoded on
    /// its own. Both must agree on every form, errors included.
    fn reference(forms: &[&[u8]]) -> Result<Vec<(String, String)>, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let decode = |raw: &[u8]| {
            crate::percent::decode_form_strict(raw).ok_or(ApiError::MalformedQueryString)
        };
        for form in forms {
            for part in form.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
                let (name, value) = match part.iter().position(|b| *b == b'=') {
                    Some(eq) => (&part[..eq], &part[eq + 1..]),
                    None => (part, &[][..]),
                };
                let name = decode(name)?;
                if pairs.iter().any(|(n, _)| *n == name) {
                    return Err(ApiError::DuplicateParameter(name));
                }
                pairs.push((name, decode(value)?));
            }
        }
        Ok(pairs)
    }

    fn parsed(forms: &[&[u8]]) -> Result<Vec<(String, String)>, ApiError> {
        let mut p = Params::default();
        for form in forms {
            p.extend_from_form(form)?;
        }
        Ok(p.names()
            .map(|n| (n.to_owned(), p.get(n).unwrap().to_owned()))
            .collect())
    }

    /// Every form of up to five bytes from an alphabet with each delimiter, escape, a plus, and
    /// bytes that are UTF-8 only in the right order; alone, and after a query string.
    #[test]
    fn agrees_with_the_piece_by_piece_decoder() {
        const ALPHABET: &[u8] = b"Ab=&%4+\xc3\xa9\xff";
        let mut forms: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = forms.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|f| {
                    ALPHABET.iter().map(move |&b| {
                        let mut g = f.clone();
                        g.push(b);
                        g
                    })
                })
                .collect();
            forms.extend(last.iter().cloned());
        }
        for form in &forms {
            assert_eq!(parsed(&[form]), reference(&[form]), "{form:?}");
        }
        for query in [&b"A=b"[..], b"b=%C3%A9", b"%41", b"b&A+=1"] {
            for form in forms.iter().step_by(7) {
                let both = [query, form.as_slice()];
                assert_eq!(parsed(&both), reference(&both), "{query:?} {form:?}");
            }
        }
    }

    #[test]
    fn utf8_escapes_decode() {
        assert_eq!(parse("N=%C3%A9t%C3%A9").unwrap().get("N"), Some("été"));
    }
}
