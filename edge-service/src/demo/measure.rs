//! The demo's closing figures: drift read from both emulators, oversells, exceptions with
//! their explanation, and the summary (text and JSON).
//!
//! Drift is measured from outside Tillbridge: for every (SKU, store) the Commerce emulator's
//! source quantity is compared with the Square emulator's on-hand plus the units the store
//! handed over for web orders whose Commerce shipment does not exist yet (the stock contract,
//! ARCHITECTURE.md), and the differences are summed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::sync::Stats;
use tillbridge_core::sync::types::Reason;

use super::DemoArgs;
use super::driver::Driver;
use super::world::World;
use crate::api::{LatencySummary, reason_guide, reason_name};
use crate::runner::RunnerView;
use crate::store::ExceptionRow;

/// One source item that does not hold what the contract says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub sku: String,
    pub source: String,
    pub commerce: Option<Decimal>,
    pub till: Decimal,
    pub in_flight: Decimal,
}

/// What both emulators hold at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// Σ |Commerce source qty − (max(till on-hand, 0) + in flight)|.
    pub drift_units: Decimal,
    pub source_items: usize,
    /// The first few mismatches (for the report).
    pub mismatches: Vec<Mismatch>,
    pub mismatch_count: usize,
    /// (SKU, store) with a negative on-hand at the till.
    pub negative_on_hand: Vec<(String, String)>,
    /// The till's figure differs from the shop floor's count (the driver's own bookkeeping):
    /// a bug in the demo or the emulator, never expected.
    pub floor_mismatches: usize,
}

/// Read both emulators and compare.
pub fn measure(driver: &Driver<'_>, world: &World) -> Measured {
    let ep = driver.endpoints();
    // The tills: IN_STOCK per (variation, location).
    let mut till: BTreeMap<(usize, usize), Decimal> = BTreeMap::new();
    {
        let shared = ep.square_handle.state();
        let s = tillbridge_square_emulator::lock(&shared);
        let store_of: BTreeMap<&str, usize> = ep
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let product_of: BTreeMap<&str, usize> = ep
            .variations
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i))
            .collect();
        for ((variation, location, state), count) in &s.counts {
            if state != "IN_STOCK" {
                continue;
            }
            if let (Some(&si), Some(&pi)) = (
                store_of.get(location.as_str()),
                product_of.get(variation.as_str()),
            ) {
                till.insert((si, pi), count.quantity);
            }
        }
    }
    // Commerce: source items, and what each handed-over order has shipped.
    let mut commerce: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut in_flight: BTreeMap<(usize, usize), Decimal> = BTreeMap::new();
    {
        let shared = ep.commerce_handle.state();
        let st = tillbridge_commerce_emulator::lock(&shared);
        let inv = &st.world.exec.inventory;
        for item in inv.source_items() {
            commerce.insert(
                (
                    item.sku.as_str().to_owned(),
                    item.source_code.as_str().to_owned(),
                ),
                item.quantity,
            );
        }
        for (entity, store, lines) in driver.handovers() {
            let Ok(order) = inv.order(tillbridge_core::inventory::OrderId(entity)) else {
                continue;
            };
            for (p, units) in lines {
                let sku = &world.products[p].sku;
                let shipped: Decimal = order
                    .items
                    .iter()
                    .filter(|i| i.parent_item_id.is_none() && &i.sku == sku)
                    .map(|i| i.qty_shipped)
                    .sum();
                let left = (units - shipped).max(Decimal::ZERO);
                if left > Decimal::ZERO {
                    *in_flight.entry((store, p)).or_default() += left;
                }
            }
        }
    }
    let mut m = Measured::default();
    for (si, store) in world.stores.iter().enumerate() {
        for (pi, product) in world.products.iter().enumerate() {
            let on_hand = till.get(&(si, pi)).copied().unwrap_or_default();
            if on_hand != driver.shelf[si][pi] {
                m.floor_mismatches += 1;
            }
            if on_hand < Decimal::ZERO {
                m.negative_on_hand
                    .push((product.sku.clone(), store.source.clone()));
            }
            let flight = in_flight.get(&(si, pi)).copied().unwrap_or_default();
            let expected = on_hand.max(Decimal::ZERO) + flight;
            let held = commerce
                .get(&(product.sku.clone(), store.source.clone()))
                .copied();
            m.source_items += usize::from(held.is_some());
            let diff = (held.unwrap_or_default() - expected).abs();
            if diff > Decimal::ZERO || held.is_none() {
                m.drift_units += diff;
                m.mismatch_count += 1;
                if m.mismatches.len() < 10 {
                    m.mismatches.push(Mismatch {
                        sku: product.sku.clone(),
                        source: store.source.clone(),
                        commerce: held,
                        till: on_hand,
                        in_flight: flight,
                    });
                }
            }
        }
    }
    m
}

/// How long each phase took.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub opening: Duration,
    pub day: Duration,
    pub settle: Duration,
    pub total: Duration,
    /// The sync settled within the bound.
    pub settled: bool,
}

/// An open exception and whether the world explains it.
#[derive(Debug, Clone)]
pub struct ExplainedException {
    pub id: u64,
    pub reason: Reason,
    pub subject: String,
    pub message: String,
    /// Why it is expected in this world (`None`: nothing explains it).
    pub explanation: Option<String>,
}

/// The closing summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: Stats,
    pub opening: Stats,
    pub latency: LatencySummary,
    pub measured: Measured,
    pub oversold_orders: u64,
    pub exceptions: Vec<ExplainedException>,
    pub timings: Timings,
    pub tally: super::driver::Tally,
    pub problems: Vec<String>,
    pub seed: u64,
    pub stores: usize,
    pub skus: usize,
    pub minutes: f64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        view: &RunnerView,
        samples: &[i64],
        measured: &Measured,
        driver: &Driver<'_>,
        world: &World,
        exceptions: &[ExceptionRow],
        timings: Timings,
        args: &DemoArgs,
        opening: &Stats,
    ) -> Self {
        let short = driver.short_orders();
        let explain = |e: &ExceptionRow| -> Option<String> {
            let order = e.entry.subject.strip_prefix("order ");
            match e.entry.reason {
                Reason::Unroutable | Reason::PosRefused => order
                    .filter(|o| short.contains(*o))
                    .map(|o| format!("order {o} was sold online while no store could cover it (an oversell counted above)")),
                Reason::NegativeOnHand => measured
                    .negative_on_hand
                    .iter()
                    .any(|(sku, source)| e.entry.subject == format!("{sku}@{source}"))
                    .then(|| "the till shows a negative figure (an oversell counted above)".to_owned()),
                _ => None,
            }
        };
        let exceptions = exceptions
            .iter()
            .map(|e| ExplainedException {
                id: e.entry.id,
                reason: e.entry.reason,
                subject: e.entry.subject.clone(),
                message: e.entry.message.clone(),
                explanation: explain(e),
            })
            .collect();
        Self {
            stats: view.stats.clone(),
            opening: opening.clone(),
            latency: LatencySummary::from_samples(samples),
            measured: measured.clone(),
            oversold_orders: u64::try_from(driver.web.iter().filter(|w| w.oversold).count())
                .unwrap_or(0),
            exceptions,
            timings,
            tally: driver.tally.clone(),
            problems: driver.problems.clone(),
            seed: world.spec.seed,
            stores: world.stores.len(),
            skus: world.products.len(),
            minutes: args.minutes,
        }
    }

    /// Oversold web orders plus tills left below zero.
    pub fn oversells(&self) -> u64 {
        self.oversold_orders + u64::try_from(self.measured.negative_on_hand.len()).unwrap_or(0)
    }

    pub fn unexplained(&self) -> usize {
        self.exceptions
            .iter()
            .filter(|e| e.explanation.is_none())
            .count()
    }

    /// Zero drift, every open exception explained, the sync settled, and the shop floor agrees
    /// with the tills.
    pub fn passed(&self) -> bool {
        self.measured.drift_units.is_zero()
            && self.unexplained() == 0
            && self.timings.settled
            && self.measured.floor_mismatches == 0
            && self.problems.is_empty()
    }

    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let t = &self.tally;
        let s = &self.stats;
        let ms = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x} ms"));
        writeln!(out, "Summary")?;
        writeln!(
            out,
            "  POS events              {} ({} at the opening: the tills' stock; then {} baskets, {} units sold, {} returns, web orders at the tills)",
            super::thousands(s.pos_events),
            super::thousands(self.opening.pos_events),
            super::thousands(t.baskets),
            t.units_sold.normalize(),
            t.returns
        )?;
        writeln!(
            out,
            "  Commerce requests       {} ({} at the opening)",
            super::thousands(s.commerce_requests),
            super::thousands(self.opening.commerce_requests)
        )?;
        writeln!(
            out,
            "  items written           {} ({} at the opening), {} pushes, {} shipments",
            super::thousands(s.items_written),
            super::thousands(self.opening.items_written),
            super::thousands(s.pushes_confirmed),
            s.shipments_created
        )?;
        writeln!(
            out,
            "  sale→Commerce latency   p50 {}, p99 {} ({} changes, from a POS change arriving to Commerce confirming it)",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            self.latency.count
        )?;
        writeln!(
            out,
            "  web orders              {} ({} shipped from a store, {} collected, {} cancelled by the customer, {} refunded; {} declined at a till and routed again; {} checkouts refused by Commerce as out of stock)",
            s.web_orders,
            t.shipped,
            t.collected,
            t.cancelled,
            t.refunded,
            t.declined_at_till,
            t.web_refused
        )?;
        writeln!(
            out,
            "  oversells               {} ({} web orders sold with no shelf holding them, {} tills below zero)",
            self.oversells(),
            self.oversold_orders,
            self.measured.negative_on_hand.len()
        )?;
        writeln!(
            out,
            "  drift                   {} units over {} source items (Commerce vs the tills plus units in flight, read from both emulators)",
            self.measured.drift_units.normalize(),
            super::usize_text(self.stores * self.skus)
        )?;
        for m in &self.measured.mismatches {
            writeln!(
                out,
                "    {}@{}: Commerce {}, till {}, in flight {}",
                m.sku,
                m.source,
                m.commerce
                    .map_or_else(|| "none".to_owned(), |q| q.normalize().to_string()),
                m.till.normalize(),
                m.in_flight.normalize()
            )?;
        }
        if self.measured.mismatch_count > self.measured.mismatches.len() {
            writeln!(
                out,
                "    ... and {} more",
                self.measured.mismatch_count - self.measured.mismatches.len()
            )?;
        }
        writeln!(
            out,
            "  open exceptions         {} ({} unexplained)",
            self.exceptions.len(),
            self.unexplained()
        )?;
        for e in &self.exceptions {
            writeln!(
                out,
                "    #{} {} — {}: {}",
                e.id,
                reason_name(e.reason),
                e.subject,
                e.message
            )?;
            match &e.explanation {
                Some(x) => writeln!(out, "      explained: {x}")?,
                None => writeln!(
                    out,
                    "      UNEXPLAINED in this world; what to do: {}",
                    reason_guide(e.reason)
                )?,
            }
        }
        for p in &self.problems {
            writeln!(out, "  problem: {p}")?;
        }
        if self.measured.floor_mismatches > 0 {
            writeln!(
                out,
                "  problem: {} till figures differ from the shop floor's own count",
                self.measured.floor_mismatches
            )?;
        }
        writeln!(
            out,
            "  time                    opening {}, day {}, settling {}{}, {} in all",
            super::seconds(self.timings.opening),
            super::seconds(self.timings.day),
            super::seconds(self.timings.settle),
            if self.timings.settled {
                ""
            } else {
                " (did not settle)"
            },
            super::seconds(self.timings.total)
        )?;
        writeln!(out)?;
        if self.passed() {
            writeln!(
                out,
                "PASS: Commerce holds exactly what the tills hold, and every open exception is explained"
            )?;
        } else {
            writeln!(
                out,
                "FAIL: {}",
                [
                    (!self.measured.drift_units.is_zero()).then_some("drift is not zero"),
                    (self.unexplained() > 0).then_some("an exception is unexplained"),
                    (!self.timings.settled).then_some("the sync did not settle"),
                    (self.measured.floor_mismatches > 0 || !self.problems.is_empty())
                        .then_some("the demo itself hit a problem"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")
            )?;
        }
        Ok(())
    }

    /// The summary as JSON: the keys the issue names, then more detail.
    pub fn json(&self) -> Value {
        let number = |d: Decimal| -> Value {
            d.normalize()
                .to_string()
                .parse::<serde_json::Number>()
                .map_or(Value::Null, Value::Number)
        };
        let t = &self.tally;
        let s = &self.stats;
        json!({
            "pos_events": s.pos_events,
            "commerce_requests": s.commerce_requests,
            "items_written": s.items_written,
            "latency_ms_p50": self.latency.p50_ms,
            "latency_ms_p99": self.latency.p99_ms,
            "web_orders": s.web_orders,
            "oversells": self.oversells(),
            "drift_units": number(self.measured.drift_units),
            "open_exceptions": self.exceptions.len(),
            "unexplained_exceptions": self.unexplained(),
            "passed": self.passed(),
            "exceptions": self.exceptions.iter().map(|e| json!({
                "id": e.id,
                "reason": reason_name(e.reason),
                "subject": e.subject,
                "message": e.message,
                "explained": e.explanation.is_some(),
                "explanation": e.explanation,
            })).collect::<Vec<_>>(),
            "world": {
                "seed": self.seed,
                "stores": self.stores,
                "skus": self.skus,
                "source_items": self.stores * self.skus,
                "minutes": self.minutes,
            },
            "day": {
                "baskets": t.baskets,
                "units_sold": number(t.units_sold),
                "lines_short": t.lines_short,
                "returns": t.returns,
                "web_orders_placed": t.web_placed,
                "checkouts_refused": t.web_refused,
                "shipped": t.shipped,
                "collected": t.collected,
                "declined_at_till": t.declined_at_till,
                "cancelled": t.cancelled,
                "cancelled_unfulfillable": t.cancelled_unfulfillable,
                "refunded": t.refunded,
            },
            "opening": {
                "pos_events": self.opening.pos_events,
                "commerce_requests": self.opening.commerce_requests,
                "items_written": self.opening.items_written,
                "seconds": self.timings.opening.as_secs_f64(),
            },
            "latency_samples": self.latency.count,
            "pushes_confirmed": s.pushes_confirmed,
            "shipments_created": s.shipments_created,
            "retries": s.retries,
            "throttles": s.throttles,
            "verifications": s.verifications,
            "oversold_web_orders": self.oversold_orders,
            "negative_on_hand": self.measured.negative_on_hand.len(),
            "settled": self.timings.settled,
            "settle_seconds": self.timings.settle.as_secs_f64(),
            "total_seconds": self.timings.total.as_secs_f64(),
            "problems": self.problems,
        })
    }
}
