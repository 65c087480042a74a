//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! Counters come from the engine's stats (cumulative since the engine's first start: they are
//! part of its snapshot), gauges from the runner and the store. Push latency is a summary in
//! seconds with the 0.5 and 0.99 quantiles. Every family has HELP and TYPE lines; every series
//! an alert may watch is present even at zero (all exception reasons, for example), so an alert
//! on "> 0" never waits for a series to appear.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use rust_decimal::Decimal;

use super::{MetricsSnapshot, REASONS, reason_name, snake};
use crate::store::Counts;

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Webhook deliveries of one endpoint: stored, duplicate, rejected.
pub(crate) struct WebhookTally {
    pub endpoint: String,
    pub stored: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Milliseconds as seconds, exactly (`1234` → `1.234`).
fn seconds(ms: i64) -> Decimal {
    Decimal::new(ms, 3).normalize()
}

/// The whole exposition.
pub(crate) fn render(
    m: &MetricsSnapshot,
    counts: Option<&Counts>,
    ready: bool,
    webhooks: &[WebhookTally],
) -> String {
    let mut t = Text(String::with_capacity(4096));
    t.one(
        "tillbridge_ready",
        "gauge",
        "1 when the store answers and the runner is ready (as GET /ready).",
        u8::from(ready),
    );
    t.one(
        "tillbridge_store_up",
        "gauge",
        "1 when the store answered this scrape's counts.",
        u8::from(counts.is_some()),
    );

    let s = &m.stats;
    let counters: [(&str, &str, u64); 11] = [
        (
            "tillbridge_pos_events_total",
            "POS observations the engine handled (stock figures, sales).",
            s.pos_events,
        ),
        (
            "tillbridge_commerce_requests_total",
            "Requests sent to Adobe Commerce.",
            s.commerce_requests,
        ),
        (
            "tillbridge_pos_requests_total",
            "Requests sent to the POS (fulfilment requests and cancellations).",
            s.pos_requests,
        ),
        (
            "tillbridge_items_written_total",
            "Source items written to Commerce.",
            s.items_written,
        ),
        (
            "tillbridge_pushes_confirmed_total",
            "Source-item pushes Commerce confirmed.",
            s.pushes_confirmed,
        ),
        (
            "tillbridge_shipments_created_total",
            "Commerce shipments created for store-fulfilled orders.",
            s.shipments_created,
        ),
        (
            "tillbridge_web_orders_total",
            "Commerce web orders the engine took in.",
            s.web_orders,
        ),
        (
            "tillbridge_retries_total",
            "Commands retried after a retriable failure.",
            s.retries,
        ),
        (
            "tillbridge_throttles_total",
            "Throttle signals from Commerce (429, 5xx, timeouts, slow answers).",
            s.throttles,
        ),
        (
            "tillbridge_verifications_total",
            "Salable-quantity read-backs.",
            s.verifications,
        ),
        (
            "tillbridge_stale_observations_total",
            "POS figures older than one already applied (ignored).",
            s.stale_observations,
        ),
    ];
    for (name, help, v) in counters {
        t.one(name, "counter", help, v);
    }
    t.one(
        "tillbridge_drift_units_total",
        "counter",
        "Units by which Commerce's source quantities differed from the POS when the sweep read them.",
        s.drift_units.normalize(),
    );

    t.one(
        "tillbridge_engine_active",
        "gauge",
        "1 when this replica holds the engine lease and runs the sync, 0 on standby.",
        u8::from(m.role == "active"),
    );
    t.one(
        "tillbridge_pending_pushes",
        "gauge",
        "Stock keys waiting for a push to Commerce.",
        m.pending_pushes,
    );
    t.one(
        "tillbridge_commands_in_flight",
        "gauge",
        "Commands sent and not yet answered.",
        m.commands_in_flight,
    );
    t.one(
        "tillbridge_budget_requests_per_second",
        "gauge",
        "The Commerce request budget's current rate (AIMD).",
        m.budget_requests_per_second,
    );
    t.one(
        "tillbridge_budget_items_per_second",
        "gauge",
        "The Commerce source-item budget's current rate (AIMD).",
        m.budget_items_per_second,
    );

    let l = &m.push_latency;
    t.family(
        "tillbridge_push_latency_seconds",
        "summary",
        "Time from a stock change's arrival to Commerce's confirmation, over the runner's window.",
    );
    for (q, v) in [("0.5", l.p50_ms), ("0.99", l.p99_ms)] {
        match v {
            Some(ms) => t.sample(
                "tillbridge_push_latency_seconds",
                &[("quantile", q)],
                seconds(ms),
            ),
            None => t.sample("tillbridge_push_latency_seconds", &[("quantile", q)], "NaN"),
        }
    }
    t.sample(
        "tillbridge_push_latency_seconds_sum",
        &[],
        seconds(l.sum_ms),
    );
    t.sample("tillbridge_push_latency_seconds_count", &[], l.count);

    if let Some(c) = counts {
        let mut open: BTreeMap<String, u64> = REASONS
            .iter()
            .map(|r| (reason_name(*r).to_owned(), 0))
            .collect();
        for (reason, n) in &c.open_exceptions {
            *open.entry(reason.clone()).or_default() += n;
        }
        t.family(
            "tillbridge_open_exceptions",
            "gauge",
            "Open exceptions by reason (GET /api/exceptions?reason=...).",
        );
        for (reason, n) in &open {
            t.sample("tillbridge_open_exceptions", &[("reason", reason)], n);
        }

        t.family(
            "tillbridge_records",
            "gauge",
            "Stored inbound records by kind and state.",
        );
        let mut records: BTreeMap<(&str, String), u64> = BTreeMap::new();
        for (kind, state, n) in &c.records {
            *records.entry((kind.as_str(), snake(state))).or_default() += n;
        }
        for ((kind, state), n) in &records {
            t.sample("tillbridge_records", &[("kind", kind), ("state", state)], n);
        }

        t.family("tillbridge_commands", "gauge", "Outbox commands by state.");
        let mut commands: BTreeMap<String, u64> = BTreeMap::new();
        for (state, n) in &c.commands {
            *commands.entry(snake(state)).or_default() += n;
        }
        for (state, n) in &commands {
            t.sample("tillbridge_commands", &[("state", state)], n);
        }
    }

    if !webhooks.is_empty() {
        t.family(
            "tillbridge_webhook_deliveries_total",
            "counter",
            "Webhook deliveries by endpoint and outcome (stored, duplicate, rejected) since the API started.",
        );
        for w in webhooks {
            for (outcome, n) in [
                ("stored", w.stored),
                ("duplicate", w.duplicate),
                ("rejected", w.rejected),
            ] {
                t.sample(
                    "tillbridge_webhook_deliveries_total",
                    &[("endpoint", &w.endpoint), ("outcome", outcome)],
                    n,
                );
            }
        }
    }
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LatencySummary;

    #[test]
    fn text_has_help_type_and_exact_values() {
        let mut m = MetricsSnapshot::default();
        m.stats.pos_events = 7;
        m.stats.drift_units = Decimal::new(25, 1);
        m.push_latency = LatencySummary::from_samples(&[100, 200, 1500]);
        let out = render(&m, None, true, &[]);
        assert!(out.contains("# HELP tillbridge_pos_events_total "));
        assert!(out.contains(
            "# TYPE tillbridge_pos_events_total counter\ntillbridge_pos_events_total 7\n"
        ));
        assert!(out.contains("tillbridge_drift_units_total 2.5\n"));
        assert!(out.contains("tillbridge_push_latency_seconds{quantile=\"0.5\"} 0.2\n"));
        assert!(out.contains("tillbridge_push_latency_seconds{quantile=\"0.99\"} 1.5\n"));
        assert!(out.contains("tillbridge_push_latency_seconds_sum 1.8\n"));
        assert!(out.contains("tillbridge_store_up 0\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let l = LatencySummary::from_samples(&(1..=100).rev().collect::<Vec<i64>>());
        assert_eq!(
            (l.p50_ms, l.p99_ms, l.count, l.sum_ms),
            (Some(50), Some(99), 100, 5050)
        );
        let one = LatencySummary::from_samples(&[42]);
        assert_eq!((one.p50_ms, one.p99_ms), (Some(42), Some(42)));
        assert_eq!(LatencySummary::from_samples(&[]).p50_ms, None);
    }
}
