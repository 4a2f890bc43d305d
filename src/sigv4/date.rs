//! Timestamps as SigV4 and the STS/IAM wire formats spell them.
//!
//! SigV4 signs the ISO-8601 *basic* form (`20150830T123600Z`) and scopes credentials by its first
//! eight characters; STS `Expiration` and IAM `CreateDate` use the *extended* form
//! (`2026-01-01T00:00:00Z`). Parsing lives here; the calendar and the text forms are
//! [`crate::time`]'s.

use std::time::UNIX_EPOCH;

use crate::time::{UnixTime, days_in_month, from_civil};

/// A request timestamp: whole seconds since the Unix epoch plus the basic-format text that goes
/// into the string to sign. Built only by parsing a valid date or from a Unix time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AmzDate {
    unix: i64,
    basic: String,
}

impl AmzDate {
    /// Parses the `X-Amz-Date` form `YYYYMMDDTHHMMSSZ` (UTC, no fractions, no offset).
    #[must_use]
    pub(crate) fn parse_basic(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
            return None;
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 4, 2)?;
        let day = digits(b, 6, 2)?;
        let hour = digits(b, 9, 2)?;
        let minute = digits(b, 11, 2)?;
        let second = digits(b, 13, 2)?;
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let unix = from_civil((year, month, day), (hour, minute, second)).secs();
        Some(Self {
            unix,
            basic: text.to_owned(),
        })
    }

    /// Parses an HTTP `Date` header, the fallback when a request carries no `X-Amz-Date`:
    /// RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850 / asctime forms via
    /// `httpdate`.
    ///
    /// The RFC 1123 form is read here rather than by `httpdate` so that a weekday that does
    /// not match the date is tolerated: the weekday is redundant, and the AWS test suite's own
    /// `Date: Mon, 09 Sep 2011 23:36:00 GMT` (a Friday) is signed with it.
    #[must_use]
    pub(crate) fn parse_http_date(text: &str) -> Option<Self> {
        if let Some(date) = Self::parse_rfc1123(text) {
            return Some(date);
        }
        let time = httpdate::parse_http_date(text).ok()?;
        let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Self::from_unix(i64::try_from(secs).ok()?))
    }

    /// `Ddd, DD Mon YYYY HH:MM:SS GMT`, any weekday name accepted.
    fn parse_rfc1123(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        const WEEKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
        const MONTHS: [&[u8]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        if b.len() != 29
            || !WEEKDAYS.contains(&b.get(..3)?)
            || b.get(3..5)? != b", "
            || b.get(7) != Some(&b' ')
            || b.get(11) != Some(&b' ')
            || b.get(16) != Some(&b' ')
            || b.get(19) != Some(&b':')
            || b.get(22) != Some(&b':')
            || b.get(25..)? != b" GMT"
        {
            return None;
        }
        let month_name = b.get(8..11)?;
        let month = MONTHS.iter().position(|m| *m == month_name)?;
        let basic = format!(
            "{}{:02}{}T{}{}{}Z",
            text.get(12..16)?,
            month + 1,
            text.get(5..7)?,
            text.get(17..19)?,
            text.get(20..22)?,
            text.get(23..25)?,
        );
        Self::parse_basic(&basic)
    }

    /// The timestamp for `unix` seconds since the epoch.
    #[must_use]
    pub(crate) fn from_unix(unix: i64) -> Self {
        Self {
            unix,
            basic: UnixTime::from_secs(unix).basic(),
        }
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub(crate) fn unix(&self) -> i64 {
        self.unix
    }

    /// The basic ISO-8601 text, `YYYYMMDDTHHMMSSZ`.
    #[must_use]
    pub(crate) fn basic(&self) -> &str {
        &self.basic
    }

    /// `YYYYMMDD`, the date a credential scope must carry.
    #[must_use]
    pub(crate) fn date8(&self) -> &str {
        self.basic.get(..8).unwrap_or(&self.basic)
    }
}

/// ASCII digits `b[start..start + len]` as a number; `None` on any other byte.
fn digits(b: &[u8], start: usize, len: usize) -> Option<i64> {
    b.get(start..start + len)?
        .iter()
        .try_fold(0_i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_inputs_do_not_panic() {
        for unix in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
            let _ = AmzDate::from_unix(unix).date8().len();
        }
    }

    #[test]
    fn parses_basic_form() {
        let d = AmzDate::parse_basic("20150830T123600Z").unwrap();
        assert_eq!(d.unix(), 1_440_938_160);
        assert_eq!(d.basic(), "20150830T123600Z");
        assert_eq!(d.date8(), "20150830");
        assert_eq!(
            AmzDate::parse_basic("20000229T235959Z").unwrap().unix(),
            951_868_799
        );
        assert_eq!(AmzDate::from_unix(1_440_938_160), d);
    }

    #[test]
    fn rejects_malformed_basic_form() {
        for bad in [
            "",
            "20150830T123600",
            "20150830T123600z",
            "20150830t123600Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600.000Z",
            "20151301T000000Z",
            "20150001T000000Z",
            "20150200T000000Z",
            "20150230T000000Z",
            "21000229T000000Z",
            "20150830T240000Z",
            "20150830T126000Z",
            "20150830T123660Z",
            "2015083OT123600Z",
            "+0150830T123600Z",
            "20150830T12360\u{e9}",
        ] {
            assert_eq!(AmzDate::parse_basic(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_http_date_fallback() {
        let d = AmzDate::parse_http_date("Fri, 09 Sep 2011 23:36:00 GMT").unwrap();
        assert_eq!(d.basic(), "20110909T233600Z");
        assert_eq!(d.date8(), "20110909");
        // The test suite's wrong weekday is tolerated.
        assert_eq!(
            AmzDate::parse_http_date("Mon, 09 Sep 2011 23:36:00 GMT"),
            Some(d.clone())
        );
        // Obsolete forms, through httpdate.
        assert_eq!(
            AmzDate::parse_http_date("Friday, 09-Sep-11 23:36:00 GMT"),
            Some(d.clone())
        );
        assert_eq!(
            AmzDate::parse_http_date("Fri Sep  9 23:36:00 2011"),
            Some(d)
        );
        for bad in [
            "",
            "yesterday",
            "Fri, 31 Sep 2011 23:36:00 GMT",
            "Fri, 09 Sep 2011 24:36:00 GMT",
            "Fri, 09 Sep 2011 23:36:00 UTC",
            "Xyz, 09 Sep 2011 23:36:00 GMT",
            "Fri, 09 Sept 2011 23:36:00 GMT",
            "Fri,\u{a0}09 Sep 2011 23:36:00 GMT",
        ] {
            assert_eq!(AmzDate::parse_http_date(bad), None, "{bad:?}");
        }
    }
}
