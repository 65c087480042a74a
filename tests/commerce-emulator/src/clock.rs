//! The emulator clock: a manual clock (tests; moves only when told to) or wall-clock time plus
//! an offset (the sandbox). Magento stores sales timestamps as MySQL `DATETIME` strings in UTC,
//! `YYYY-MM-DD HH:MM:SS`; that is the only format the emulator writes.

use std::time::{SystemTime, UNIX_EPOCH};

use tillbridge_core::inventory::Timestamp;

/// The clock.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Wall-clock time (plus `offset_seconds`) instead of the manual time.
    pub real_time: bool,
    /// The manual time, in seconds since the Unix epoch.
    pub manual_seconds: i64,
    /// Added to wall-clock time (`advance` in real-time mode).
    pub offset_seconds: i64,
}

impl Clock {
    /// A manual clock at `start` (`YYYY-MM-DD HH:MM:SS`).
    pub fn manual(start: &str) -> Option<Self> {
        Some(Self {
            real_time: false,
            manual_seconds: parse_datetime(start)?,
            offset_seconds: 0,
        })
    }

    /// Wall-clock time.
    pub fn real() -> Self {
        Self {
            real_time: true,
            manual_seconds: 0,
            offset_seconds: 0,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now_seconds(&self) -> i64 {
        if self.real_time {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            wall + self.offset_seconds
        } else {
            self.manual_seconds
        }
    }

    /// Now, as Magento writes it.
    pub fn now_text(&self) -> String {
        format_datetime(self.now_seconds())
    }

    /// Now, as the MSI model takes it.
    pub fn now(&self) -> Timestamp {
        Timestamp::parse(&self.now_text()).unwrap_or_else(|_| Timestamp::from_offset_seconds(0))
    }

    /// Moves the clock forward (or back, with a negative value).
    pub fn advance(&mut self, seconds: i64) {
        if self.real_time {
            self.offset_seconds += seconds;
        } else {
            self.manual_seconds += seconds;
        }
    }

    /// Sets the time (manual mode; in real-time mode it sets the offset so that now = `at`).
    pub fn set(&mut self, at: i64) {
        if self.real_time {
            self.offset_seconds += at - self.now_seconds();
        } else {
            self.manual_seconds = at;
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
pub fn format_datetime(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS` (an optional `Z` or fraction is
/// ignored) or `YYYY-MM-DD`.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((d, t)) => (d, t),
        None => (t, "00:00:00"),
    };
    let mut dp = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (dp.next()??, dp.next()??, dp.next()??);
    let time = time.split('.').next().unwrap_or("0");
    let mut tp = time.split(':').map(|p| p.parse::<i64>().ok());
    let h = tp.next().flatten().unwrap_or(0);
    let mi = tp.next().flatten().unwrap_or(0);
    let s = tp.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip_through_the_calendar() {
        for text in [
            "1970-01-01 00:00:00",
            "2024-02-29 23:59:59",
            "2026-01-05 09:00:00",
            "2100-03-01 12:30:00",
        ] {
            let s = parse_datetime(text);
            assert_eq!(s.map(format_datetime).as_deref(), Some(text));
        }
        assert_eq!(
            parse_datetime("2026-01-05T09:00:00.000Z"),
            parse_datetime("2026-01-05 09:00:00")
        );
        assert_eq!(parse_datetime("2026-13-01"), None);
    }

    #[test]
    fn the_manual_clock_moves_only_when_told() {
        let mut c = Clock::manual("2026-01-05 09:00:00").unwrap_or_else(Clock::real);
        assert_eq!(c.now_text(), "2026-01-05 09:00:00");
        c.advance(3600 * 24);
        assert_eq!(c.now_text(), "2026-01-06 09:00:00");
    }
}
