//! The Commerce request budget: a token bucket whose rate adapts (AIMD).
//!
//! Magento's REST is slow (tens to hundreds of source items a second, a few requests a
//! second). Every worker draws from one budget of *requests* and one of *items*; when Commerce
//! answers 429 or 5xx, times out or slows down, the rate is cut multiplicatively, and every
//! window of clean answers adds a fixed step back, up to the configured ceiling.
//!
//! Pure: time comes in as a parameter; amounts are integers (milli-tokens), so a run is
//! reproducible bit for bit.

use serde::{Deserialize, Serialize};

use crate::pos::Timestamp;

const MILLI: u64 = 1000;

/// Configuration of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Tokens per second at full speed (the ceiling).
    pub max_per_second: u32,
    /// The floor the rate never drops below.
    pub min_per_second: u32,
    /// How many tokens may accumulate (burst).
    pub burst: u32,
}

/// How the rate adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AimdConfig {
    /// Added to the rate (tokens/s) after each window of clean answers.
    pub increase_per_window: u32,
    /// Multiplied into the rate on a throttle signal, in per-mille (500 = halve).
    pub decrease_per_mille: u32,
    /// Length of the clean window, milliseconds.
    pub window_ms: i64,
    /// An answer slower than this counts as a throttle signal, milliseconds.
    pub slow_ms: i64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            increase_per_window: 1,
            decrease_per_mille: 500,
            window_ms: 5_000,
            slow_ms: 5_000,
        }
    }
}

/// One adaptive token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    cfg: BucketConfig,
    /// Current rate, milli-tokens per second.
    rate: u64,
    /// Available milli-tokens.
    level: u64,
    refilled_at: Timestamp,
}

impl Bucket {
    pub fn new(cfg: BucketConfig, now: Timestamp) -> Self {
        let rate = u64::from(cfg.max_per_second.max(1)) * MILLI;
        Self {
            cfg,
            rate,
            level: u64::from(cfg.burst.max(1)) * MILLI,
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let elapsed = now.as_millis().saturating_sub(self.refilled_at.as_millis());
        if elapsed <= 0 {
            return;
        }
        let add = self.rate.saturating_mul(elapsed as u64) / 1000;
        let cap = u64::from(self.cfg.burst.max(1)) * MILLI;
        self.level = (self.level.saturating_add(add)).min(cap);
        self.refilled_at = now;
    }

    /// Take `n` tokens if they are there.
    pub fn try_take(&mut self, now: Timestamp, n: u32) -> bool {
        self.refill(now);
        let need = u64::from(n) * MILLI;
        if self.level >= need {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Whether `n` tokens are there, without taking them.
    pub fn has(&mut self, now: Timestamp, n: u32) -> bool {
        self.refill(now);
        self.level >= u64::from(n) * MILLI
    }

    /// When `n` tokens will be there at the current rate (`now` if they are).
    pub fn ready_at(&mut self, now: Timestamp, n: u32) -> Timestamp {
        self.refill(now);
        let need = (u64::from(n) * MILLI).min(u64::from(self.cfg.burst.max(1)) * MILLI);
        if self.level >= need {
            return now;
        }
        let missing = need - self.level;
        let ms = missing.saturating_mul(1000).div_ceil(self.rate.max(1));
        now.add_millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The current rate in tokens per second (rounded down).
    pub fn rate_per_second(&self) -> u32 {
        u32::try_from(self.rate / MILLI).unwrap_or(u32::MAX)
    }

    fn increase(&mut self, step: u32) {
        let max = u64::from(self.cfg.max_per_second.max(1)) * MILLI;
        self.rate = (self.rate + u64::from(step) * MILLI).min(max);
    }

    fn decrease(&mut self, per_mille: u32) {
        let min = u64::from(self.cfg.min_per_second.max(1)) * MILLI;
        self.rate = (self.rate * u64::from(per_mille.min(1000)) / 1000).max(min);
    }
}

/// The shared Commerce budget: requests and source items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub requests: Bucket,
    pub items: Bucket,
    aimd: AimdConfig,
    clean_since: Timestamp,
    throttles: u64,
}

/// What Commerce's answer says about load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSignal {
    /// Answered, in this many milliseconds.
    Answered { latency_ms: i64 },
    /// 429, 5xx, a timeout or a refused connection.
    Throttled,
}

impl Budget {
    pub fn new(
        requests: BucketConfig,
        items: BucketConfig,
        aimd: AimdConfig,
        now: Timestamp,
    ) -> Self {
        Self {
            requests: Bucket::new(requests, now),
            items: Bucket::new(items, now),
            aimd,
            clean_since: now,
            throttles: 0,
        }
    }

    /// Take one request carrying `items` items, if both are there.
    pub fn try_take(&mut self, now: Timestamp, items: u32) -> bool {
        if self.requests.has(now, 1) && self.items.has(now, items) {
            let took = self.requests.try_take(now, 1) && self.items.try_take(now, items);
            debug_assert!(took);
            took
        } else {
            false
        }
    }

    /// When a request with `items` items can go.
    pub fn ready_at(&mut self, now: Timestamp, items: u32) -> Timestamp {
        let a = self.requests.ready_at(now, 1);
        let b = self.items.ready_at(now, items);
        if a.as_millis() >= b.as_millis() { a } else { b }
    }

    /// Feed back what Commerce's answer says about load.
    pub fn observe(&mut self, now: Timestamp, signal: LoadSignal) {
        let throttled = match signal {
            LoadSignal::Throttled => true,
            LoadSignal::Answered { latency_ms } => latency_ms > self.aimd.slow_ms,
        };
        if throttled {
            self.throttles += 1;
            self.requests.decrease(self.aimd.decrease_per_mille);
            self.items.decrease(self.aimd.decrease_per_mille);
            self.clean_since = now;
        } else if now.as_millis() - self.clean_since.as_millis() >= self.aimd.window_ms {
            self.requests.increase(self.aimd.increase_per_window);
            self.items
                .increase(self.aimd.increase_per_window.saturating_mul(10));
            self.clean_since = now;
        }
    }

    /// Throttle signals seen so far.
    pub fn throttles(&self) -> u64 {
        self.throttles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn budget() -> Budget {
        Budget::new(
            BucketConfig {
                max_per_second: 8,
                min_per_second: 1,
                burst: 8,
            },
            BucketConfig {
                max_per_second: 100,
                min_per_second: 5,
                burst: 100,
            },
            AimdConfig::default(),
            t(0),
        )
    }

    #[test]
    fn requests_are_limited_by_both_buckets() {
        let mut b = budget();
        // 100 items of burst: five requests of 20 items, then the items bucket is empty.
        for _ in 0..5 {
            assert!(b.try_take(t(0), 20));
        }
        assert!(!b.try_take(t(0), 20));
        // 20 items need 200 ms at 100 items/s.
        assert_eq!(b.ready_at(t(0), 20), t(200));
        assert!(b.try_take(t(200), 20));
    }

    #[test]
    fn a_throttle_halves_the_rate_and_clean_windows_add_it_back() {
        let mut b = budget();
        b.observe(t(1_000), LoadSignal::Throttled);
        assert_eq!(b.requests.rate_per_second(), 4);
        assert_eq!(b.items.rate_per_second(), 50);
        b.observe(t(2_000), LoadSignal::Answered { latency_ms: 100 });
        assert_eq!(
            b.requests.rate_per_second(),
            4,
            "not a full clean window yet"
        );
        b.observe(t(6_000), LoadSignal::Answered { latency_ms: 100 });
        assert_eq!(b.requests.rate_per_second(), 5);
        assert_eq!(b.items.rate_per_second(), 60);
        // A slow answer is a throttle signal too.
        b.observe(t(7_000), LoadSignal::Answered { latency_ms: 9_000 });
        assert_eq!(b.requests.rate_per_second(), 2);
        assert_eq!(b.throttles(), 2);
    }

    #[test]
    fn the_rate_never_goes_below_the_floor_or_above_the_ceiling() {
        let mut b = budget();
        for i in 0..20 {
            b.observe(t(i), LoadSignal::Throttled);
        }
        assert_eq!(b.requests.rate_per_second(), 1);
        assert_eq!(b.items.rate_per_second(), 5);
        for i in 0..100 {
            b.observe(
                t(10_000 + i * 5_000),
                LoadSignal::Answered { latency_ms: 10 },
            );
        }
        assert_eq!(b.requests.rate_per_second(), 8);
        assert_eq!(b.items.rate_per_second(), 100);
    }
}
