//! The stock contract, per (SKU, source).
//!
//! > Commerce source quantity for (sku, source) = POS on-hand + units the POS has already
//! > fulfilled for web orders whose Commerce shipment does not exist yet.
//!
//! Why: a web order reserves stock in Commerce (salable quantity drops, source quantity does
//! not). When a store hands the goods over, the POS deducts its on-hand. If Tillbridge pushed
//! that lower on-hand before the Commerce shipment exists, Commerce would lose the unit twice —
//! once in the source quantity, once in the still-open reservation — and the shipment, when it
//! comes, would deduct it a third time or fail. So those units stay "in flight" on top of the
//! POS figure until the shipment (with this `source_code`) is created; Magento then deducts the
//! source and compensates the reservation in one step, and the in-flight units drop in the same
//! step. An in-flight unit counts only against POS figures that already reflect its deduction
//! (`deducted_at ≤ as_of`), so an older observation never adds it twice.
//!
//! A POS that oversold reports a negative on-hand; Commerce gets 0 (plus in-flight units) and
//! the engine raises an exception.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pos::{Sku, SourceCode, Timestamp};

/// A (SKU, source) pair: one Commerce source item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StockKey {
    pub sku: Sku,
    pub source: SourceCode,
}

impl StockKey {
    pub fn new(sku: Sku, source: SourceCode) -> Self {
        Self { sku, source }
    }
}

impl std::fmt::Display for StockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.sku, self.source)
    }
}

/// The POS's figure for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosLevel {
    pub on_hand: Decimal,
    /// When the POS computed it.
    pub as_of: Timestamp,
    /// When Tillbridge received it.
    pub received_at: Timestamp,
}

/// Units the POS has handed over for a web order whose Commerce shipment does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub order: String,
    pub units: Decimal,
    /// When the POS deducted them from its on-hand.
    pub deducted_at: Timestamp,
}

/// Sales over a sliding window, in one-minute buckets (bounded memory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SalesWindow {
    buckets: VecDeque<(i64, Decimal)>,
}

const MINUTE: i64 = 60_000;

impl SalesWindow {
    /// Record `units` sold at `at` (returns and negative figures are ignored: velocity measures
    /// demand).
    pub fn record(&mut self, at: Timestamp, units: Decimal, window_ms: i64) {
        if units <= Decimal::ZERO {
            return;
        }
        let minute = at.as_millis().div_euclid(MINUTE);
        match self.buckets.back_mut() {
            Some((m, u)) if *m == minute => *u += units,
            _ => {
                // Keep buckets in time order; a late sale goes into its own minute.
                let pos = self
                    .buckets
                    .iter()
                    .position(|(m, _)| *m > minute)
                    .unwrap_or(self.buckets.len());
                if pos > 0 && self.buckets[pos - 1].0 == minute {
                    self.buckets[pos - 1].1 += units;
                } else {
                    self.buckets.insert(pos, (minute, units));
                }
            }
        }
        self.trim(at, window_ms);
    }

    fn trim(&mut self, now: Timestamp, window_ms: i64) {
        let oldest = (now.as_millis() - window_ms).div_euclid(MINUTE);
        while self.buckets.front().is_some_and(|(m, _)| *m < oldest) {
            self.buckets.pop_front();
        }
        while self.buckets.len() > 1440 {
            self.buckets.pop_front();
        }
    }

    /// Units sold in the window ending at `now`.
    pub fn units(&self, now: Timestamp, window_ms: i64) -> Decimal {
        let oldest = (now.as_millis() - window_ms).div_euclid(MINUTE);
        self.buckets
            .iter()
            .filter(|(m, _)| *m >= oldest)
            .map(|(_, u)| *u)
            .sum()
    }
}

/// What is in progress against Commerce for a key. At most one mutation per key is in flight,
/// so a push never races a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Busy {
    /// A source-item push carrying this value.
    Push { command: u64 },
    /// A shipment deducting from this source.
    Shipment { command: u64 },
}

/// Everything Tillbridge knows about one source item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockEntry {
    pub pos: Option<PosLevel>,
    pub in_flight: Vec<InFlight>,
    /// What Commerce holds as far as Tillbridge knows (confirmed pushes, confirmed shipments,
    /// sweep reads). `None` until known.
    pub commerce: Option<Decimal>,
    /// The mutation in progress, if any.
    pub busy: Option<Busy>,
    /// The value being pushed, while a push is in progress.
    pub sending: Option<Decimal>,
    /// When the first change not yet in Commerce arrived (for latency).
    pub dirty_since: Option<Timestamp>,
    /// The POS records waiting for this key's next confirmed push.
    pub waiting_records: Vec<String>,
    pub sales: SalesWindow,
    /// A permanent refusal from Commerce for this key (cleared by a new POS figure).
    pub refused: Option<String>,
    /// Commerce changed the source item while a push was on its way (see
    /// [`StockEntry::forget_commerce`]): that push's confirmation does not make the value known.
    #[serde(default)]
    pub unknown_after_send: bool,
}

/// How a POS figure was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservationOutcome {
    /// The newest figure for the key.
    Applied,
    /// Older than what the ledger holds: ignored.
    Stale,
}

impl StockEntry {
    /// The quantity Commerce should hold: max(on-hand, 0) + in-flight units the on-hand already
    /// reflects. `None` before the first POS figure.
    pub fn target(&self) -> Option<Decimal> {
        let pos = self.pos.as_ref()?;
        let in_flight: Decimal = self
            .in_flight
            .iter()
            .filter(|f| f.deducted_at.as_millis() <= pos.as_of.as_millis())
            .map(|f| f.units)
            .sum();
        Some(pos.on_hand.max(Decimal::ZERO) + in_flight)
    }

    /// Whether Commerce needs a push: the target differs from what Commerce holds (or is about
    /// to hold), and Commerce has not refused this key.
    pub fn needs_push(&self) -> bool {
        match self.target() {
            None => false,
            Some(t) => self.refused.is_none() && self.sending.or(self.commerce) != Some(t),
        }
    }

    /// Take a POS figure if it is not older than the one held.
    pub fn observe(
        &mut self,
        on_hand: Decimal,
        as_of: Timestamp,
        now: Timestamp,
    ) -> ObservationOutcome {
        if let Some(p) = &self.pos
            && p.as_of.as_millis() > as_of.as_millis()
        {
            return ObservationOutcome::Stale;
        }
        self.pos = Some(PosLevel {
            on_hand,
            as_of,
            received_at: now,
        });
        self.refused = None;
        ObservationOutcome::Applied
    }

    /// Commerce changed this source item on its own (a credit memo put units back on the
    /// source or deducted them from it): what it holds is unknown until the next confirmed
    /// push, so the till's figure goes out again. A push already on its way may land before
    /// that change, so its confirmation does not make the value known either.
    pub fn forget_commerce(&mut self) {
        self.commerce = None;
        if self.sending.is_some() {
            self.unknown_after_send = true;
        }
    }

    /// What Commerce holds once the push carrying `value` is confirmed.
    pub fn push_confirmed(&mut self, value: Decimal) {
        self.commerce = if std::mem::take(&mut self.unknown_after_send) {
            None
        } else {
            Some(value)
        };
        self.sending = None;
        self.busy = None;
    }

    /// Units in flight for an order.
    pub fn in_flight_for(&self, order: &str) -> Decimal {
        self.in_flight
            .iter()
            .filter(|f| f.order == order)
            .map(|f| f.units)
            .sum()
    }

    /// Drop an order's in-flight units (its shipment exists, or it will never ship).
    pub fn drop_in_flight(&mut self, order: &str, units: Decimal) -> Decimal {
        let mut left = units;
        let mut dropped = Decimal::ZERO;
        self.in_flight.retain_mut(|f| {
            if f.order != order || left <= Decimal::ZERO {
                return true;
            }
            let take = f.units.min(left);
            f.units -= take;
            left -= take;
            dropped += take;
            f.units > Decimal::ZERO
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn in_flight_units_count_only_against_figures_that_reflect_them() {
        let mut e = StockEntry::default();
        e.observe(dec!(5), t(100), t(110));
        e.in_flight.push(InFlight {
            order: "1001".into(),
            units: dec!(1),
            deducted_at: t(200),
        });
        // The figure at 100 still holds the unit: 5, not 6.
        assert_eq!(e.target(), Some(dec!(5)));
        // The till's figure after the hand-over is 4; Commerce keeps 5 until the shipment.
        e.observe(dec!(4), t(200), t(210));
        assert_eq!(e.target(), Some(dec!(5)));
        assert_eq!(e.drop_in_flight("1001", dec!(1)), dec!(1));
        assert_eq!(e.target(), Some(dec!(4)));
    }

    #[test]
    fn an_older_figure_never_replaces_a_newer_one() {
        let mut e = StockEntry::default();
        assert_eq!(
            e.observe(dec!(3), t(500), t(510)),
            ObservationOutcome::Applied
        );
        assert_eq!(
            e.observe(dec!(9), t(400), t(520)),
            ObservationOutcome::Stale
        );
        assert_eq!(e.target(), Some(dec!(3)));
    }

    #[test]
    fn a_negative_on_hand_pushes_zero_plus_in_flight() {
        let mut e = StockEntry::default();
        e.observe(dec!(-2), t(100), t(100));
        e.in_flight.push(InFlight {
            order: "7".into(),
            units: dec!(1),
            deducted_at: t(50),
        });
        assert_eq!(e.target(), Some(dec!(1)));
    }

    #[test]
    fn needs_push_compares_with_what_commerce_holds_or_is_receiving() {
        let mut e = StockEntry::default();
        e.observe(dec!(2), t(1), t(1));
        assert!(e.needs_push(), "Commerce unknown");
        e.sending = Some(dec!(2));
        assert!(!e.needs_push(), "already on its way");
        e.sending = None;
        e.commerce = Some(dec!(2));
        assert!(!e.needs_push());
        e.observe(dec!(1), t(2), t(2));
        assert!(e.needs_push());
    }

    #[test]
    fn a_value_commerce_changed_on_its_own_is_pushed_again_even_past_a_push_in_flight() {
        let mut e = StockEntry::default();
        e.observe(dec!(4), t(1), t(1));
        e.commerce = Some(dec!(4));
        assert!(!e.needs_push());
        // A credit memo returned a unit to the source: Commerce may hold 5 now.
        e.forget_commerce();
        assert!(e.needs_push());
        // The push of 4 is on its way when another credit memo lands.
        e.sending = Some(dec!(4));
        e.busy = Some(Busy::Push { command: 7 });
        assert!(!e.needs_push());
        e.forget_commerce();
        // Confirmed, but the memo may have landed after it: still unknown, pushed again.
        e.push_confirmed(dec!(4));
        assert_eq!(e.commerce, None);
        assert!(e.needs_push());
        e.sending = Some(dec!(4));
        e.push_confirmed(dec!(4));
        assert_eq!(e.commerce, Some(dec!(4)));
        assert!(!e.needs_push());
    }

    #[test]
    fn sales_window_counts_the_last_hour_only() {
        let mut w = SalesWindow::default();
        let hour = 3_600_000;
        w.record(t(0), dec!(2), hour);
        w.record(t(30 * MINUTE), dec!(1), hour);
        w.record(t(30 * MINUTE + 5), dec!(1), hour);
        assert_eq!(w.units(t(30 * MINUTE), hour), dec!(4));
        assert_eq!(w.units(t(90 * MINUTE), hour), dec!(2));
        w.record(t(10 * MINUTE), dec!(3), hour); // a late offline sale lands in its own minute
        assert_eq!(w.units(t(40 * MINUTE), hour), dec!(7));
    }
}
