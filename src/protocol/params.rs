//! The AWS Query protocol's parameters: `application/x-www-form-urlencoded` pairs from the
//! query string and the body. Each name may be given once, in the query string or in the body:
//! AWS lets the first occurrence win, but the canonical query a signature covers is sorted, so
//! the "first" of two values is chosen by whoever can reorder the query, not by the signer; the
//! broker refuses the request instead (`docs/sts-wire-contract.md#parameter-decoding`). Unknown
//! names are ignored by the handlers (`docs/sts-wire-contract.md#front-door`).

use super::error::ApiError;

/// Decoded request parameters in arrival order.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// Names only: values may be MFA codes, presigned signatures or session tokens.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Params {
    /// Parses one form-encoded string (`+` is a space, `%XX` a byte) and appends its pairs.
    /// Malformed escapes or non-UTF-8 text are refused, and so is a name already given (in this
    /// string or an earlier one).
    pub(crate) fn extend_from_form(&mut self, form: &[u8]) -> Result<(), ApiError> {
        for part in form.split(|b| *b == b'&') {
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.iter().position(|b| *b == b'=') {
                Some(eq) => (
                    part.get(..eq).unwrap_or_default(),
                    part.get(eq + 1..).unwrap_or_default(),
                ),
                None => (part, &[][..]),
            };
            let name = decode(name)?;
            if self.get(&name).is_some() {
                return Err(ApiError::DuplicateParameter(name));
            }
            self.pairs.push((name, decode(value)?));
        }
        Ok(())
    }

    /// The value given for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Form-decodes one name or value, strictly: a malformed escape or non-UTF-8 text is refused.
fn decode(raw: &[u8]) -> Result<String, ApiError> {
    crate::percent::decode_form_strict(raw).ok_or(ApiError::MalformedQueryString)
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

    #[test]
    fn utf8_escapes_decode() {
        assert_eq!(parse("N=%C3%A9t%C3%A9").unwrap().get("N"), Some("été"));
    }
}
