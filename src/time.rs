//! Time as the broker counts it: whole seconds since the Unix epoch ([`UnixTime`]), and the
//! text forms the wire needs. SigV4 signs the ISO-8601 *basic* form (`20150830T123600Z`) and
//! scopes credentials by its first eight characters; STS `Expiration`, IAM `CreateDate` and the
//! audit log use the *extended* form (`2026-01-01T00:00:00Z`); HTTP's `Date` header uses
//! RFC 9110's IMF-fixdate.
//!
//! The calendar arithmetic is Howard Hinnant's days-from-civil algorithm
//! (<https://howardhinnant.github.io/date_algorithms.html>), written here so that every input,
//! an attacker's included, maps to a result without panicking and without a calendar crate.

use std::fmt;

use serde::{Deserialize, Serialize};

const SECS_PER_DAY: i64 = 86_400;

/// An instant, in whole seconds since 1970-01-01T00:00:00Z.
///
/// The broker judges every request at one such instant read from its injected clock, so
/// signature skew, TOTP steps, session expiry and lock-outs agree with each other and move
/// together in tests.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(i64);

impl UnixTime {
    /// The instant `secs` seconds after the epoch (negative before it).
    #[must_use]
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    #[must_use]
    pub const fn secs(self) -> i64 {
        self.0
    }

    /// `secs` later (earlier when negative), saturating at the ends of time.
    #[must_use]
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `secs` earlier, saturating at the ends of time.
    #[must_use]
    pub const fn minus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later), saturating.
    #[must_use]
    pub const fn secs_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `20260101T000000Z`.
    #[must_use]
    pub fn basic(self) -> String {
        let (y, mo, d, h, mi, s) = split(self.0);
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
    }

    /// `2026-01-01T00:00:00Z`.
    #[must_use]
    pub fn iso8601(self) -> String {
        let (y, mo, d, h, mi, s) = split(self.0);
        if !(0..=9999).contains(&y) {
            return format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
        }
        // Written digit by digit: this is on every GetSessionToken answer and audit line.
        let mut out = String::with_capacity(20);
        push_digits(&mut out, y, 4);
        for (sep, n) in [('-', mo), ('-', d), ('T', h), (':', mi), (':', s)] {
            out.push(sep);
            push_digits(&mut out, n, 2);
        }
        out.push('Z');
        out
    }

    /// `20260101`.
    #[must_use]
    pub fn date8(self) -> String {
        let (y, mo, d, ..) = split(self.0);
        format!("{y:04}{mo:02}{d:02}")
    }

    /// `Thu, 01 Jan 2026 00:00:00 GMT`, for HTTP's `Date` header. The form has four-digit
    /// years after 1970, so instants outside those years are clamped to the nearest one
    /// (`httpdate` would panic on them).
    #[must_use]
    pub fn http_date(self) -> String {
        const LAST_FOUR_DIGIT_YEAR_SECOND: i64 = 253_402_300_799;
        let secs = u64::try_from(self.0.clamp(0, LAST_FOUR_DIGIT_YEAR_SECOND)).unwrap_or(0);
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }
}

/// Appends the last `width` decimal digits of `n` (0 ≤ `n`), zero-padded.
fn push_digits(out: &mut String, n: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10_i64.pow(place)).rem_euclid(10);
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}

/// The extended ISO-8601 form.
impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso8601())
    }
}

fn split(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(SECS_PER_DAY);
    let rem = unix.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Whether `year` of the proleptic Gregorian calendar has a 29 February.
pub(crate) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1..=12) of `year`.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The instant of a valid civil date and time of day (UTC); the caller checks the ranges.
pub(crate) fn from_civil(
    (year, month, day): (i64, i64, i64),
    (hour, minute, second): (i64, i64, i64),
) -> UnixTime {
    UnixTime(days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day 1..=31).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]. Total for every `i64` day count the callers produce
/// (`unix / 86400` stays far from overflow).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(t(0).basic(), "19700101T000000Z");
        assert_eq!(t(0).iso8601(), "1970-01-01T00:00:00Z");
        assert_eq!(t(1_767_225_600).basic(), "20260101T000000Z");
        assert_eq!(t(1_767_225_600).iso8601(), "2026-01-01T00:00:00Z");
        assert_eq!(t(1_767_225_600).date8(), "20260101");
        assert_eq!(t(1_767_225_600).to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(
            t(1_767_225_600).http_date(),
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
        // The instant of the AWS SigV4 test suite's requests.
        assert_eq!(t(1_440_938_160).basic(), "20150830T123600Z");
        assert_eq!(t(951_782_400).iso8601(), "2000-02-29T00:00:00Z");
        assert_eq!(t(4_107_542_400).iso8601(), "2100-03-01T00:00:00Z");
        assert_eq!(t(-1).iso8601(), "1969-12-31T23:59:59Z");
        assert_eq!(t(253_402_300_799).iso8601(), "9999-12-31T23:59:59Z");
        // The digit-by-digit form is the formatted one, across years and times of day.
        for unix in (-62_167_219_200_i64..253_402_300_799).step_by(7_777_777_777) {
            let (y, mo, d, h, mi, s) = split(unix);
            assert_eq!(
                t(unix).iso8601(),
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
            );
        }
        assert_eq!(t(253_402_300_800).iso8601(), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        for unix in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
            let _ = t(unix).basic();
            let _ = t(unix).iso8601();
            let _ = t(unix).date8();
            let _ = t(unix).http_date();
            let _ = t(unix).plus_secs(i64::MAX).minus_secs(i64::MAX);
            let _ = t(unix).secs_since(t(-unix.saturating_add(1)));
        }
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(t(i64::MAX).plus_secs(1), t(i64::MAX));
        assert_eq!(t(i64::MIN).minus_secs(1), t(i64::MIN));
        assert_eq!(t(100).secs_since(t(40)), 60);
        assert_eq!(t(40).secs_since(t(100)), -60);
    }

    #[test]
    fn civil_round_trip_over_five_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }
}
