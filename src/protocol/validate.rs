//! Smithy-style constraint checks that collect every violation into one `ValidationError`,
//! worded as AWS words them (`docs/sts-wire-contract.md#validation-errors`): member names are
//! lowerCamel, values quoted.

use super::error::ApiError;

/// Collects constraint violations for one request.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    clauses: Vec<String>,
}

/// Java's `\w`: ASCII letters, digits and underscore.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `[\w+=/:,.@-]`: MFA serial numbers (STS and IAM).
pub(crate) fn is_serial_char(c: char) -> bool {
    is_word(c) || "+=/:,.@-".contains(c)
}

/// `[\w+=,.@-]`: IAM user and device names.
pub(crate) fn is_name_char(c: char) -> bool {
    is_word(c) || "+=,.@-".contains(c)
}

impl Checks {
    /// No violations yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn violation(&mut self, value: Option<&str>, member: &str, constraint: &str) {
        let shown = match value {
            Some(v) => format!("'{v}'"),
            None => "null".to_owned(),
        };
        self.clauses.push(format!(
            "Value {shown} at '{member}' failed to satisfy constraint: Member must {constraint}"
        ));
    }

    /// A required member; records `must not be null` when absent.
    pub(crate) fn required<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        if value.is_none() {
            self.violation(None, member, "not be null");
        }
        value
    }

    /// A string length in characters.
    pub(crate) fn length(&mut self, member: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            self.violation(
                Some(value),
                member,
                &format!("have length greater than or equal to {min}"),
            );
        } else if n > max {
            self.violation(
                Some(value),
                member,
                &format!("have length less than or equal to {max}"),
            );
        }
    }

    /// Every character matches the class of `pattern`.
    pub(crate) fn pattern(
        &mut self,
        member: &str,
        value: &str,
        pattern: &str,
        ok: fn(char) -> bool,
    ) {
        if !value.chars().all(ok) {
            self.violation(
                Some(value),
                member,
                &format!("satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    /// One of an enumeration's values.
    pub(crate) fn one_of(&mut self, member: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.violation(
                Some(value),
                member,
                &format!("satisfy enum value set: [{}]", allowed.join(", ")),
            );
        }
    }

    /// A value within `min..=max`.
    pub(crate) fn range(&mut self, member: &str, value: i64, min: i64, max: i64) {
        let text = value.to_string();
        if value < min {
            self.violation(
                Some(&text),
                member,
                &format!("have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.violation(
                Some(&text),
                member,
                &format!("have value less than or equal to {max}"),
            );
        }
    }

    /// `Err(ValidationError)` when anything was recorded.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.clauses.is_empty() {
            Ok(())
        } else {
            Err(ApiError::ValidationError(self.clauses))
        }
    }

    /// [`finish`](Self::finish), then the input `build` makes of the checked values. Every
    /// value [`required`](Self::required) returned is present once no violation was recorded,
    /// so `build` can take them with `?`; were one missing, that is the broker's fault, and it
    /// is answered as such rather than with a made-up value.
    pub(crate) fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        build().ok_or_else(|| {
            tracing::error!("a required parameter passed validation without a value");
            ApiError::InternalFailure
        })
    }
}

/// Parses a Query-protocol integer as AWS does (`docs/sts-wire-contract.md#parameter-decoding`):
/// `+900` and `0900` are 900; empty, fractions, words and values outside i32 are `MalformedInput`.
pub(crate) fn parse_int(value: &str) -> Result<i64, ApiError> {
    if value.is_empty() {
        return Err(ApiError::MalformedInput(
            "missing value for decimal type".to_owned(),
        ));
    }
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    let parsed = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<i32>().ok()
    } else {
        None
    };
    parsed.map(i64::from).ok_or_else(|| {
        ApiError::MalformedInput(format!("invalid value for decimal type: '{value}'"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_clause_matches_aws() {
        let mut c = Checks::new();
        c.range("durationSeconds", 899, 900, 129_600);
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
        );
    }

    #[test]
    fn several_clauses_join_with_semicolons() {
        let mut c = Checks::new();
        c.length("serialNumber", "short", 9, 256);
        c.pattern("tokenCode", "12a456", "[\\d]*", |ch| ch.is_ascii_digit());
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            "2 validation errors detected: Value 'short' at 'serialNumber' failed to satisfy constraint: Member must have length greater than or equal to 9; Value '12a456' at 'tokenCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\d]*"
        );
    }

    #[test]
    fn enum_clause() {
        let mut c = Checks::new();
        c.one_of("status", "On", &["Active", "Inactive"]);
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            "1 validation error detected: Value 'On' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
        );
    }

    #[test]
    fn null_clause() {
        let mut c = Checks::new();
        assert!(c.required("userName", None).is_none());
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            "1 validation error detected: Value null at 'userName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn integers_parse_like_aws() {
        assert_eq!(parse_int("+900").unwrap(), 900);
        assert_eq!(parse_int("0900").unwrap(), 900);
        assert_eq!(parse_int("-1").unwrap(), -1);
        assert_eq!(
            parse_int("").unwrap_err(),
            ApiError::MalformedInput("missing value for decimal type".into())
        );
        for bad in ["abc", "900.0", "2147483648", "+", " 900", "1e3"] {
            assert!(
                matches!(parse_int(bad), Err(ApiError::MalformedInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn character_classes() {
        assert!(
            "arn:aws:iam::123456789012:mfa/a_b+c=d,e.f@g-h"
                .chars()
                .all(is_serial_char)
        );
        assert!(!is_serial_char(' '));
        assert!(!is_name_char('/'));
        assert!(!is_name_char('é'));
    }
}
