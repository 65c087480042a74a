//! One request budget for every caller: a token bucket with an AIMD-adjustable rate.
//!
//! Magento's REST layer takes a few requests per second; the stock push, the order poll, the
//! salable-quantity check and the document writes all draw from the same [`Budget`] (clone it
//! into every client; clones share one bucket). Every HTTP attempt, retries and probes
//! included, takes one token.
//!
//! * **Bucket**: `burst` tokens at most, refilled at `rate` tokens per second. A caller that
//!   finds the bucket empty takes a token on credit (the count goes negative) and sleeps
//!   until its token would have been refilled, so waiters are served in arrival order and
//!   the long-run rate never exceeds `rate`.
//! * **AIMD**: [`Budget::on_success`] raises the rate by `additive_increase` up to
//!   `max_rate`; [`Budget::on_throttle`] (a 429, a 5xx, a timeout, a slow answer) multiplies
//!   it by `multiplicative_decrease` down to `min_rate`, at most once per
//!   `decrease_cooldown` (one congestion event that fails many in-flight calls halves the
//!   rate once, as TCP does once per window). A `Retry-After` also holds every caller back
//!   until it has passed.
//! * The client calls the hooks itself; the sync engine may call them too (e.g. when it
//!   judges a verification read too slow).
//!
//! The arithmetic lives in [`BucketState`], a plain value driven by explicit instants, so it
//! is tested without clocks or sleeps; [`Budget`] wraps it in a mutex and sleeps with tokio.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Rates are requests per second.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// The starting rate.
    pub initial_rate: f64,
    /// AIMD never goes below this.
    pub min_rate: f64,
    /// AIMD never goes above this.
    pub max_rate: f64,
    /// Bucket size: requests that may go at once after a quiet spell.
    pub burst: f64,
    /// Added to the rate per successful answer.
    pub additive_increase: f64,
    /// The rate is multiplied by this on a throttle signal (0 < f < 1).
    pub multiplicative_decrease: f64,
    /// At most one decrease per this interval.
    pub decrease_cooldown: Duration,
    /// An answer slower than this counts as a throttle signal.
    pub slow_threshold: Option<Duration>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            initial_rate: 4.0,
            min_rate: 0.5,
            max_rate: 10.0,
            burst: 4.0,
            additive_increase: 0.05,
            multiplicative_decrease: 0.5,
            decrease_cooldown: Duration::from_secs(2),
            slow_threshold: Some(Duration::from_secs(10)),
        }
    }
}

impl BudgetConfig {
    /// A fixed rate (no AIMD movement).
    pub fn fixed(rate: f64, burst: f64) -> Self {
        Self {
            initial_rate: rate,
            min_rate: rate,
            max_rate: rate,
            burst,
            additive_increase: 0.0,
            multiplicative_decrease: 1.0,
            decrease_cooldown: Duration::ZERO,
            slow_threshold: None,
        }
    }

    /// The configuration with its numbers made consistent (positive rates, min ≤ initial ≤
    /// max, burst ≥ 1, factor in (0, 1]).
    fn sanitized(mut self) -> Self {
        let pos = |x: f64, d: f64| if x.is_finite() && x > 0.0 { x } else { d };
        self.min_rate = pos(self.min_rate, 0.1);
        self.max_rate = pos(self.max_rate, self.min_rate).max(self.min_rate);
        self.initial_rate =
            pos(self.initial_rate, self.min_rate).clamp(self.min_rate, self.max_rate);
        self.burst = pos(self.burst, 1.0).max(1.0);
        self.additive_increase = if self.additive_increase.is_finite() {
            self.additive_increase.max(0.0)
        } else {
            0.0
        };
        self.multiplicative_decrease = pos(self.multiplicative_decrease, 0.5).min(1.0);
        self
    }
}

/// Counters and the current rate.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSnapshot {
    /// Current rate (requests per second).
    pub rate: f64,
    /// Tokens in the bucket (negative: owed to waiting callers).
    pub tokens: f64,
    /// Tokens handed out so far.
    pub granted: u64,
    /// Rate increases applied.
    pub increases: u64,
    /// Rate decreases applied.
    pub decreases: u64,
}

/// The bucket's arithmetic, driven by explicit instants.
#[derive(Debug, Clone)]
pub struct BucketState {
    config: BudgetConfig,
    rate: f64,
    tokens: f64,
    last_refill: Instant,
    blocked_until: Option<Instant>,
    last_decrease: Option<Instant>,
    granted: u64,
    increases: u64,
    decreases: u64,
}

impl BucketState {
    /// A full bucket at `now`.
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        let config = config.sanitized();
        Self {
            rate: config.initial_rate,
            tokens: config.burst,
            config,
            last_refill: now,
            blocked_until: None,
            last_decrease: None,
            granted: 0,
            increases: 0,
            decreases: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.config.burst);
        self.last_refill = self.last_refill.max(now);
    }

    /// Takes a token at `now`; returns how long the caller must wait before using it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        self.granted += 1;
        let mut wait = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        };
        if let Some(until) = self.blocked_until {
            wait = wait.max(until.saturating_duration_since(now));
        }
        wait
    }

    /// How long anyone must still hold back because of a `Retry-After`.
    pub fn blocked_for(&self, now: Instant) -> Duration {
        self.blocked_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    /// A successful answer: additive increase.
    pub fn on_success(&mut self, now: Instant) {
        self.refill(now);
        let next = (self.rate + self.config.additive_increase).min(self.config.max_rate);
        if next > self.rate {
            self.rate = next;
            self.increases += 1;
        }
    }

    /// A throttle signal: multiplicative decrease (once per cooldown) and, with a
    /// `Retry-After`, a hold on every caller until it has passed.
    pub fn on_throttle(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.refill(now);
        if let Some(r) = retry_after {
            let until = now + r;
            self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            // Nothing may burst out the moment the hold ends.
            self.tokens = self.tokens.min(0.0);
        }
        let cooled = self
            .last_decrease
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.decrease_cooldown);
        if cooled {
            let next = (self.rate * self.config.multiplicative_decrease).max(self.config.min_rate);
            if next < self.rate {
                self.rate = next;
                self.decreases += 1;
            }
            self.last_decrease = Some(now);
        }
    }

    /// The counters.
    pub fn snapshot(&self) -> BudgetSnapshot {
        BudgetSnapshot {
            rate: self.rate,
            tokens: self.tokens,
            granted: self.granted,
            increases: self.increases,
            decreases: self.decreases,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }
}

/// The shared request budget. Clones share one bucket.
#[derive(Debug, Clone)]
pub struct Budget {
    state: Arc<Mutex<BucketState>>,
}

impl Budget {
    /// A budget starting full.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(BucketState::new(config, Instant::now()))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BucketState> {
        // A panic while holding the lock leaves consistent numbers behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a token; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        let wait = self.lock().reserve(start);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // A `Retry-After` that arrived while we slept holds us too.
        loop {
            let hold = self.lock().blocked_for(Instant::now());
            if hold.is_zero() {
                break;
            }
            tokio::time::sleep(hold).await;
        }
        start.elapsed()
    }

    /// Hook: a successful, timely answer.
    pub fn on_success(&self) {
        self.lock().on_success(Instant::now());
    }

    /// Hook: a 429, a 5xx, a timeout or a slow answer (`retry_after` from the server, if any).
    pub fn on_throttle(&self, retry_after: Option<Duration>) {
        self.lock().on_throttle(Instant::now(), retry_after);
    }

    /// Whether an answer that took `elapsed` counts as slow.
    pub fn is_slow(&self, elapsed: Duration) -> bool {
        self.lock()
            .config()
            .slow_threshold
            .is_some_and(|t| elapsed > t)
    }

    /// The current rate and counters.
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.lock().snapshot()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(BudgetConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(10)
    }

    #[test]
    fn a_full_bucket_serves_the_burst_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = BucketState::new(BudgetConfig::fixed(10.0, 3.0), t0);
        let waits: Vec<Duration> = (0..6).map(|_| b.reserve(t0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert!(close(waits[3], ms(100)));
        assert!(close(waits[4], ms(200)));
        assert!(close(waits[5], ms(300)));
        // After the debt is repaid and a quiet second passes, the burst is back (not more).
        let later = t0 + Duration::from_secs(2);
        let waits: Vec<Duration> = (0..4).map(|_| b.reserve(later)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert!(close(waits[3], ms(100)));
        assert_eq!(b.snapshot().granted, 10);
    }

    #[test]
    fn requests_in_any_window_never_exceed_burst_plus_rate_times_window() {
        // Callers arriving every 10 ms, all served at `arrival + wait`.
        let t0 = Instant::now();
        let mut b = BucketState::new(BudgetConfig::fixed(5.0, 2.0), t0);
        let starts: Vec<Instant> = (0..100)
            .map(|i| {
                let at = t0 + ms(10 * i);
                at + b.reserve(at)
            })
            .collect();
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .take_while(|t| t.duration_since(*s) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 2 + 5, "{in_window} requests in one second");
        }
    }

    #[test]
    fn aimd_increases_additively_and_decreases_multiplicatively_once_per_cooldown() {
        let t0 = Instant::now();
        let cfg = BudgetConfig {
            initial_rate: 4.0,
            min_rate: 1.0,
            max_rate: 5.0,
            burst: 1.0,
            additive_increase: 0.5,
            multiplicative_decrease: 0.5,
            decrease_cooldown: Duration::from_secs(1),
            slow_threshold: None,
        };
        let mut b = BucketState::new(cfg, t0);
        b.on_success(t0);
        assert!((b.snapshot().rate - 4.5).abs() < 1e-9);
        b.on_success(t0);
        b.on_success(t0);
        assert!((b.snapshot().rate - 5.0).abs() < 1e-9, "capped at max_rate");
        b.on_throttle(t0, None);
        assert!((b.snapshot().rate - 2.5).abs() < 1e-9);
        // A second signal of the same congestion event does not halve again.
        b.on_throttle(t0 + ms(500), None);
        assert!((b.snapshot().rate - 2.5).abs() < 1e-9);
        b.on_throttle(t0 + ms(1500), None);
        assert!((b.snapshot().rate - 1.25).abs() < 1e-9);
        b.on_throttle(t0 + ms(3000), None);
        assert!(
            (b.snapshot().rate - 1.0).abs() < 1e-9,
            "floored at min_rate"
        );
        let s = b.snapshot();
        assert_eq!((s.increases, s.decreases), (2, 3));
    }

    #[test]
    fn retry_after_holds_every_caller_and_stops_the_burst() {
        let t0 = Instant::now();
        let mut b = BucketState::new(BudgetConfig::fixed(10.0, 5.0), t0);
        b.on_throttle(t0, Some(Duration::from_secs(2)));
        assert_eq!(b.blocked_for(t0 + ms(500)), Duration::from_millis(1500));
        let w = b.reserve(t0 + ms(500));
        assert!(close(w, ms(1500)));
        assert_eq!(b.blocked_for(t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn nonsense_configuration_is_made_consistent() {
        let t0 = Instant::now();
        let b = BucketState::new(
            BudgetConfig {
                initial_rate: f64::NAN,
                min_rate: -1.0,
                max_rate: 0.0,
                burst: 0.0,
                additive_increase: f64::INFINITY,
                multiplicative_decrease: 7.0,
                decrease_cooldown: Duration::ZERO,
                slow_threshold: None,
            },
            t0,
        );
        let c = b.config();
        assert!(c.min_rate > 0.0 && c.max_rate >= c.min_rate);
        assert!(c.initial_rate >= c.min_rate && c.initial_rate <= c.max_rate);
        assert!(c.burst >= 1.0);
        assert!(c.additive_increase.abs() < f64::EPSILON);
        assert!(c.multiplicative_decrease <= 1.0);
    }

    #[tokio::test]
    async fn clones_share_one_bucket() {
        let a = Budget::new(BudgetConfig::fixed(1000.0, 2.0));
        let b = a.clone();
        a.acquire().await;
        b.acquire().await;
        assert_eq!(a.snapshot().granted, 2);
        assert_eq!(b.snapshot().granted, 2);
    }
}
