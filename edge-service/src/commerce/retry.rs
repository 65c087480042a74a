//! Which failures are worth another attempt, and how long to wait before it.
//!
//! **Classification** ([`classify_status`], [`Transport`]): 2xx succeeds; 401 is renewable
//! once when the client can fetch a new admin token; 429, 408 and 5xx are retriable; every
//! other 4xx is permanent (Magento validated and refused; the same input fails the same way).
//! Transport failures are retriable: a refused connection before anything was sent, a
//! timeout, a broken connection.
//!
//! Each retriable failure also says whether the request **may have been applied**: 429, 408
//! and a connection that never opened were refused before Magento ran anything; a 5xx, a
//! timeout or a connection broken mid-way may have run the whole service method (PHP keeps
//! running after the client gives up, and a proxy's 502/504 hides whether it finished). The
//! client retries idempotent calls either way; a non-idempotent write that may have been
//! applied is probed before it is retried (see `idempotency`).
//!
//! **Backoff** ([`RetryPolicy::delay`]): capped exponential, `base × 2^(attempt−1)` up to
//! `max_delay`, with "equal jitter": the wait is drawn from `[d/2, d)` by a SplitMix64 hash of
//! the policy's seed, the call id and the attempt, so a seed reproduces every schedule and
//! concurrent calls spread out. A `Retry-After` (seconds or an HTTP date) replaces the
//! computed wait, capped at `max_retry_after`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How an HTTP status is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 401: renew the admin token once, else permanent.
    Unauthorized,
    /// Worth retrying.
    Retriable {
        /// Whether Magento may have run the request.
        maybe_applied: bool,
        /// 429: tell the budget to slow down (5xx do too).
        throttled: bool,
    },
    /// Permanent: 4xx other than 401, 408, 429 (and anything else outside 2xx–5xx).
    Permanent,
}

/// Classifies an HTTP status.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 => StatusClass::Unauthorized,
        429 => StatusClass::Retriable {
            maybe_applied: false,
            throttled: true,
        },
        408 => StatusClass::Retriable {
            maybe_applied: false,
            throttled: false,
        },
        500..=599 => StatusClass::Retriable {
            maybe_applied: true,
            throttled: true,
        },
        _ => StatusClass::Permanent,
    }
}

/// A failure below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The connection could not be opened: nothing was sent.
    Connect,
    /// No answer within the timeout: the request may have run.
    Timeout,
    /// The connection broke, or the answer could not be read: the request may have run.
    Broken,
}

impl Transport {
    /// Whether Magento may have run the request.
    pub fn maybe_applied(self) -> bool {
        !matches!(self, Self::Connect)
    }
}

/// Attempts and waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (≥ 1).
    pub max_attempts: u32,
    /// The first wait.
    pub base_delay: Duration,
    /// No computed wait exceeds this.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
    /// Seed of the jitter.
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            seed: 0x7111_b21d_6e00_0001,
        }
    }
}

/// SplitMix64: a well-mixed 64-bit hash step.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl RetryPolicy {
    /// The capped exponential wait after failed attempt `attempt` (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(32);
        let factor = 1u64 << shift;
        let nanos = self
            .base_delay
            .as_nanos()
            .saturating_mul(u128::from(factor));
        let capped = nanos.min(self.max_delay.as_nanos());
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }

    /// The jittered wait after failed attempt `attempt` of call `call_id`: in
    /// `[ceiling/2, ceiling)`, the same for the same seed, call and attempt.
    pub fn backoff(&self, call_id: u64, attempt: u32) -> Duration {
        let d = self.ceiling(attempt).as_nanos();
        let h = splitmix64(self.seed ^ splitmix64(call_id ^ (u64::from(attempt) << 48)));
        // 53 bits of the hash as a fraction in [0, 1).
        let frac = u128::from(h >> 11);
        let jittered = d / 2 + (d / 2) * frac / (1u128 << 53);
        Duration::from_nanos(u64::try_from(jittered).unwrap_or(u64::MAX))
    }

    /// The wait before the next attempt: `Retry-After` when the server sent one (capped),
    /// else [`RetryPolicy::backoff`].
    pub fn delay(&self, call_id: u64, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(r) => r.min(self.max_retry_after),
            None => self.backoff(call_id, attempt),
        }
    }

    /// The waits a call would make if every attempt failed without `Retry-After`.
    pub fn schedule(&self, call_id: u64) -> Vec<Duration> {
        (1..self.max_attempts.max(1))
            .map(|a| self.backoff(call_id, a))
            .collect()
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) relative to `now`. A date in the past is zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate.
fn parse_http_date(v: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_, rest) = v.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if day == 0 || day > 31 || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    let days = days_from_civil(year, u64::try_from(month).ok()? + 1, day)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::try_from(month).ok()?;
    let d = i64::try_from(day).ok()?;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(202), StatusClass::Success);
        assert_eq!(classify_status(401), StatusClass::Unauthorized);
        assert_eq!(
            classify_status(429),
            StatusClass::Retriable {
                maybe_applied: false,
                throttled: true
            }
        );
        for s in [500, 502, 503, 504] {
            assert_eq!(
                classify_status(s),
                StatusClass::Retriable {
                    maybe_applied: true,
                    throttled: true
                }
            );
        }
        for s in [400, 403, 404, 405, 406, 409, 422] {
            assert_eq!(classify_status(s), StatusClass::Permanent, "{s}");
        }
        assert!(!Transport::Connect.maybe_applied());
        assert!(Transport::Timeout.maybe_applied());
    }

    #[test]
    fn ceiling_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        let c: Vec<u128> = (1..=6).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(c, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(200), Duration::from_millis(1000));
    }

    #[test]
    fn seeded_jitter_is_reproducible_bounded_and_spread() {
        let p = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
            seed: 42,
        };
        let a = p.schedule(7);
        assert_eq!(a, p.schedule(7));
        assert_eq!(a.len(), 5);
        for (i, d) in a.iter().enumerate() {
            let ceiling = p.ceiling(u32::try_from(i).unwrap() + 1);
            assert!(*d >= ceiling / 2 && *d < ceiling, "{d:?} vs {ceiling:?}");
        }
        // Another call or another seed draws other waits.
        assert_ne!(a, p.schedule(8));
        assert_ne!(
            a,
            RetryPolicy {
                seed: 43,
                ..p.clone()
            }
            .schedule(7)
        );
        // Pinned values: a change to the schedule is a visible change.
        let ms: Vec<u128> = a.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, pinned_schedule());
    }

    /// The schedule of seed 42, call 7 (100 ms base, 1 s cap), in milliseconds, computed
    /// independently with a Python transcription of the formula in the module docs.
    fn pinned_schedule() -> Vec<u128> {
        vec![68, 182, 299, 640, 684]
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut state = 0u64;
        let mut next = || {
            let out = splitmix64(state);
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            out
        };
        assert_eq!(next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn retry_after_replaces_the_backoff_and_is_capped() {
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.delay(1, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, 1, Some(Duration::from_secs(300))),
            Duration::from_secs(10)
        );
        assert_eq!(p.delay(1, 2, None), p.backoff(1, 2));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
