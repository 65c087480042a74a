//! Instants as data: [`Timestamp`] is UTC milliseconds since the Unix epoch.
//!
//! The core never reads a clock; times arrive inside observations (a POS `calculated_at`, a
//! file's `as_of` column) or as the caller's `now`. RFC 3339 text is parsed here by hand (no
//! date crate in the core) with full precision accepted and **truncated to milliseconds**
//! (Square's webhook times carry nanoseconds; milliseconds are what Commerce and our stores
//! keep). Output is always `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A UTC instant with millisecond precision. Serialised as RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(i64);

/// Why a text is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a timestamp: {reason} (expected RFC 3339, e.g. 2025-03-01T09:30:00Z)")]
pub struct TimestampError {
    pub value: String,
    pub reason: &'static str,
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `ms` milliseconds (negative moves back), saturating.
    pub const fn add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parse RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`, `z` and a space
    /// instead of `T` are accepted (RFC 3339 §5.6 note).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let (local, rest) = parse_local(text)?;
        let offset_min = parse_offset(text, rest)?;
        Ok(Self(local - i64::from(offset_min) * 60_000))
    }

    /// Parse a date-time without an offset (`YYYY-MM-DDTHH:MM:SS[.fraction]`, or a date
    /// `YYYY-MM-DD` meaning midnight) as local time at a fixed offset from UTC in minutes.
    /// Till exports often write local time; the caller names the offset.
    pub fn parse_naive(text: &str, utc_offset_minutes: i32) -> Result<Self, TimestampError> {
        let err = |reason| TimestampError {
            value: text.chars().take(60).collect(),
            reason,
        };
        let local = if text.len() == 10 {
            let b = text.as_bytes();
            let (y, m, d) = parse_date(text, b).ok_or_else(|| err("bad date"))?;
            days_from_civil(y, m, d) * 86_400_000
        } else {
            let (local, rest) = parse_local(text)?;
            if !rest.is_empty() {
                return Err(err("unexpected text after the time"));
            }
            local
        };
        Ok(Self(local - i64::from(utc_offset_minutes) * 60_000))
    }
}

fn parse_date(text: &str, b: &[u8]) -> Option<(i64, u32, u32)> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(text.get(0..4)?)?;
    let m = digits(text.get(5..7)?)?;
    let d = digits(text.get(8..10)?)?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m as u32) {
        return None;
    }
    Some((y, m as u32, d as u32))
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse `YYYY-MM-DD?HH:MM:SS[.frac]`; returns local millis and the rest of the text.
fn parse_local(text: &str) -> Result<(i64, &str), TimestampError> {
    let err = |reason| TimestampError {
        value: text.chars().take(60).collect(),
        reason,
    };
    let b = text.as_bytes();
    if b.len() < 19 {
        return Err(err("too short"));
    }
    let (y, m, d) = parse_date(text, b).ok_or_else(|| err("bad date"))?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err("missing 'T' between date and time"));
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err("bad time"));
    }
    let hh = text
        .get(11..13)
        .and_then(digits)
        .ok_or_else(|| err("bad hour"))?;
    let mm = text
        .get(14..16)
        .and_then(digits)
        .ok_or_else(|| err("bad minute"))?;
    let ss = text
        .get(17..19)
        .and_then(digits)
        .ok_or_else(|| err("bad second"))?;
    // 60 is a leap second; we fold it into the next second's first instant minus nothing.
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(err("time out of range"));
    }
    let mut rest = text.get(19..).unwrap_or("");
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(err("empty fraction of a second"));
        }
        let f = frac.get(..n).unwrap_or("");
        let mut ms_digits: String = f.chars().take(3).collect();
        while ms_digits.len() < 3 {
            ms_digits.push('0');
        }
        millis = digits(&ms_digits).ok_or_else(|| err("bad fraction"))?;
        rest = frac.get(n..).unwrap_or("");
    }
    let days = days_from_civil(y, m, d);
    let local = days * 86_400_000
        + hh * 3_600_000
        + mm * 60_000
        + ss.min(59) * 1000
        + millis
        + if ss == 60 { 1000 } else { 0 };
    Ok((local, rest))
}

fn parse_offset(text: &str, rest: &str) -> Result<i32, TimestampError> {
    let err = |reason| TimestampError {
        value: text.chars().take(60).collect(),
        reason,
    };
    match rest {
        "Z" | "z" => Ok(0),
        "" => Err(err("missing UTC offset ('Z' or ±HH:MM)")),
        _ => {
            let b = rest.as_bytes();
            if b.len() != 6 || !matches!(b[0], b'+' | b'-') || b[3] != b':' {
                return Err(err("bad UTC offset"));
            }
            let h = rest
                .get(1..3)
                .and_then(digits)
                .ok_or_else(|| err("bad UTC offset"))?;
            let m = rest
                .get(4..6)
                .and_then(digits)
                .ok_or_else(|| err("bad UTC offset"))?;
            if h > 23 || m > 59 {
                return Err(err("UTC offset out of range"));
            }
            let total = (h * 60 + m) as i32;
            Ok(if b[0] == b'-' { -total } else { total })
        }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let h = ms_of_day / 3_600_000;
        let mi = ms_of_day / 60_000 % 60;
        let s = ms_of_day / 1000 % 60;
        let ms = ms_of_day % 1000;
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl TryFrom<String> for Timestamp {
    type Error = TimestampError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_square_nanosecond_times_truncating_to_millis() {
        let t = Timestamp::parse("2019-10-29T18:38:45.455006797Z").ok();
        assert_eq!(t.map(Timestamp::as_millis), Some(1_572_374_325_455));
        assert_eq!(
            t.map(|t| t.to_string()),
            Some("2019-10-29T18:38:45.455Z".to_owned())
        );
    }

    #[test]
    fn offsets_are_applied() {
        let a = Timestamp::parse("2025-03-30T02:30:00+01:00").ok();
        let b = Timestamp::parse("2025-03-30T01:30:00Z").ok();
        assert_eq!(a, b);
        let c = Timestamp::parse("2025-03-29T20:30:00-05:00").ok();
        assert_eq!(c, b);
    }

    #[test]
    fn epoch_and_leap_day_round_trip() {
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z").ok(),
            Some(Timestamp::EPOCH)
        );
        for text in [
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00.000Z",
            "1969-12-31T23:59:59.000Z",
        ] {
            let t = Timestamp::parse(text).ok();
            assert_eq!(t.map(|t| t.to_string()).as_deref(), Some(text));
        }
    }

    #[test]
    fn malformed_times_are_rejected_with_a_reason() {
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01",
            "yesterday",
            "2025-01-01T00:00:00+1:00",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} should fail");
        }
        let e = Timestamp::parse("2025-01-01T00:00:00").err();
        assert_eq!(
            e.map(|e| e.reason),
            Some("missing UTC offset ('Z' or ±HH:MM)")
        );
    }

    #[test]
    fn naive_local_times_use_the_given_offset() {
        let t = Timestamp::parse_naive("2025-06-01 10:00:00", 60).ok();
        assert_eq!(t, Timestamp::parse("2025-06-01T09:00:00Z").ok());
        let d = Timestamp::parse_naive("2025-06-01", 0).ok();
        assert_eq!(d, Timestamp::parse("2025-06-01T00:00:00Z").ok());
        assert!(Timestamp::parse_naive("2025-06-01T10:00:00Z", 0).is_err());
    }
}
