//! The sync engine: observations and the current time in, commands and bookkeeping out.
//!
//! [`Engine::handle`] takes one [`Input`] (already stored by the caller), [`Engine::poll`]
//! returns what to do now: commands allowed by the Commerce budget, and journal entries to
//! persist. [`Engine::next_wakeup`] says when polling again can produce something new. The edge
//! service and the simulator drive the same engine.
//!
//! Order of work in `poll`, most urgent first: POS commands (fulfilment requests and
//! cancellations: they cost no Commerce budget), customer-facing Commerce calls (shipments,
//! cancellations, credit memos, comments), stock pushes ordered by oversell risk, verification
//! reads, and the reconciliation sweep.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::budget::{AimdConfig, BucketConfig, Budget, LoadSignal};
use super::ledger::{Busy, InFlight, ObservationOutcome, StockEntry, StockKey};
use super::orders::{OrderFlow, RouteDecision, RoutingConfig, ShipmentState, open_demand};
use super::types::{
    Command, CommandKind, ExceptionEntry, Input, Journal, Outcome, Output, Reason, RecordState,
    SourceItemWrite,
};
use crate::pos::{FulfilmentState, Sku, SourceCode, Timestamp};

/// Retry policy for commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryConfig {
    pub base_ms: i64,
    pub max_ms: i64,
    /// After this many failed attempts an exception is raised (retries go on, at the cap).
    pub raise_after: u32,
    /// After this many, the command is given up (the exception stays; a person can retry).
    pub give_up_after: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_ms: 500,
            max_ms: 60_000,
            raise_after: 5,
            give_up_after: 12,
        }
    }
}

/// Read-back of salable quantity after changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyConfig {
    /// Wait this long after a confirmed change before reading (indexers).
    pub delay_ms: i64,
    /// SKUs selling at least this many units per hour are always verified.
    pub high_velocity_per_hour: Decimal,
    /// Of the others, one change in this many is verified (0: none).
    pub sample_every: u32,
    /// Reads before `salable_did_not_move` is raised.
    pub max_reads: u32,
    /// `cataloginventory/item_options/min_qty` (out-of-stock threshold).
    pub threshold: Decimal,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            delay_ms: 2_000,
            high_velocity_per_hour: Decimal::ONE,
            sample_every: 10,
            max_reads: 3,
            threshold: Decimal::ZERO,
        }
    }
}

/// The low-priority full reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// Start a sweep this often (`None`: never).
    pub every_ms: Option<i64>,
    pub page_size: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            every_ms: Some(3_600_000),
            page_size: 500,
        }
    }
}

/// Everything the engine is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub requests: BucketConfig,
    pub items: BucketConfig,
    pub aimd: AimdConfig,
    /// Source items per push request (Magento's synchronous input limit is 20).
    pub input_limit: usize,
    /// Commerce requests in progress at once.
    pub max_in_flight: usize,
    pub routing: RoutingConfig,
    /// Window of the sales velocity, milliseconds.
    pub velocity_window_ms: i64,
    pub retry: RetryConfig,
    pub verify: VerifyConfig,
    pub sweep: SweepConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            requests: BucketConfig {
                max_per_second: 8,
                min_per_second: 1,
                burst: 8,
            },
            items: BucketConfig {
                max_per_second: 100,
                min_per_second: 5,
                burst: 100,
            },
            aimd: AimdConfig::default(),
            input_limit: 20,
            max_in_flight: 4,
            routing: RoutingConfig::default(),
            velocity_window_ms: 3_600_000,
            retry: RetryConfig::default(),
            verify: VerifyConfig::default(),
            sweep: SweepConfig::default(),
        }
    }
}

/// Counters for the dashboard, `/metrics` and the demo summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub pos_events: u64,
    pub commerce_requests: u64,
    pub pos_requests: u64,
    pub items_written: u64,
    pub pushes_confirmed: u64,
    pub shipments_created: u64,
    pub web_orders: u64,
    pub retries: u64,
    pub throttles: u64,
    pub verifications: u64,
    pub drift_units: Decimal,
    pub stale_observations: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InFlightCommand {
    command: Command,
    sent_at: Timestamp,
    /// For pushes: the value and records of each key.
    keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Retry {
    at: Timestamp,
    command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VerifyTask {
    at: Timestamp,
    sku: Sku,
    stock_id: u32,
    reads: u32,
}

/// A key that failed to push: retry no earlier than `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct KeyBackoff {
    at: Timestamp,
    attempts: u32,
    /// Push alone (isolating a refused item in a batch).
    alone: bool,
}

/// The sync engine. Serializable: the service may snapshot it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    cfg: EngineConfig,
    #[serde(with = "pairs")]
    ledger: BTreeMap<StockKey, StockEntry>,
    pending: BTreeSet<StockKey>,
    #[serde(with = "pairs")]
    backoff: BTreeMap<StockKey, KeyBackoff>,
    orders: BTreeMap<String, OrderFlow>,
    budget: Budget,
    next_id: u64,
    in_flight: BTreeMap<u64, InFlightCommand>,
    /// Commands ready to go, POS first then Commerce, in order.
    pos_queue: VecDeque<Command>,
    commerce_queue: VecDeque<Command>,
    retries: Vec<Retry>,
    verify: Vec<VerifyTask>,
    verify_counter: u64,
    sweep_next: Option<Timestamp>,
    sweep_running: bool,
    exceptions: BTreeMap<u64, ExceptionEntry>,
    journal: Vec<Journal>,
    stats: Stats,
    /// From a start until the first sweep has read every page: a source item whose Commerce
    /// figure is not known yet waits for that read instead of being written blind, so a first
    /// start against a Commerce that already holds the tills' figures writes only what differs
    /// (reading 300 source items costs one request; writing them, fifteen).
    #[serde(default)]
    learning: bool,
}

/// Maps with structured keys serialize as lists of pairs (JSON keys must be strings).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<
        'de,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    >(
        d: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        Vec::<(K, V)>::deserialize(d).map(|v| v.into_iter().collect())
    }
}

fn jitter(id: u64, attempt: u32, span: i64) -> i64 {
    // A stable pseudo-random spread (splitmix64 of id and attempt): no clock, no RNG.
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 30;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    if span <= 0 {
        0
    } else {
        (x % (span as u64 + 1)) as i64
    }
}

/// Units refunded per SKU over an order's lines.
fn refunded_per_sku(order: &super::orders::WebOrder) -> BTreeMap<Sku, Decimal> {
    let mut out: BTreeMap<Sku, Decimal> = BTreeMap::new();
    for l in &order.lines {
        if l.qty_refunded > Decimal::ZERO {
            *out.entry(l.sku.clone()).or_default() += l.qty_refunded;
        }
    }
    out
}

impl Engine {
    pub fn new(cfg: EngineConfig, now: Timestamp) -> Self {
        let budget = Budget::new(cfg.requests, cfg.items, cfg.aimd, now);
        let sweep_next = cfg.sweep.every_ms.map(|ms| now.add_millis(ms));
        Self {
            cfg,
            ledger: BTreeMap::new(),
            pending: BTreeSet::new(),
            backoff: BTreeMap::new(),
            orders: BTreeMap::new(),
            budget,
            next_id: 1,
            in_flight: BTreeMap::new(),
            pos_queue: VecDeque::new(),
            commerce_queue: VecDeque::new(),
            retries: Vec::new(),
            verify: Vec::new(),
            verify_counter: 0,
            sweep_next,
            sweep_running: false,
            exceptions: BTreeMap::new(),
            journal: Vec::new(),
            stats: Stats::default(),
            learning: false,
        }
    }

    /// Apply a new configuration to a restored engine (routing, budget ceilings, verification),
    /// keeping its state.
    pub fn reconfigure(&mut self, cfg: EngineConfig) {
        self.cfg = cfg;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn ledger(&self) -> &BTreeMap<StockKey, StockEntry> {
        &self.ledger
    }

    pub fn orders(&self) -> &BTreeMap<String, OrderFlow> {
        &self.orders
    }

    pub fn exceptions(&self) -> impl Iterator<Item = &ExceptionEntry> {
        self.exceptions.values()
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Keys waiting for a push.
    pub fn pending_pushes(&self) -> usize {
        self.pending.len()
    }

    /// Commands sent and not answered.
    pub fn commands_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Commands in flight that change something in Commerce or at a till (not the salable
    /// reads and sweep pages, which only look).
    pub fn writes_in_flight(&self) -> usize {
        self.in_flight
            .values()
            .filter(|c| {
                !matches!(
                    c.command.kind,
                    CommandKind::ReadSalable { .. } | CommandKind::ReadSourceItems { .. }
                )
            })
            .count()
    }

    /// Salable-quantity reads waiting for their time or for budget (verification runs at the
    /// lowest priority, so after a busy spell they drain behind the writes).
    pub fn verifications_waiting(&self) -> usize {
        self.verify.len()
    }

    /// Nothing left to do until new input: no queued, retrying, pending or in-flight work.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.in_flight.is_empty()
            && self.pos_queue.is_empty()
            && self.commerce_queue.is_empty()
            && self.retries.is_empty()
            && self.verify.is_empty()
            && !self.sweep_running
            && !self
                .orders
                .values()
                .any(|f| matches!(f.shipment, ShipmentState::Pending { command: None, .. }))
    }

    /// New commands and exceptions get ids above `floor`. After a restart from a snapshot
    /// older than the outbox, the ids issued after the snapshot are taken; the service calls
    /// this with the largest id it has stored.
    pub fn ids_above(&mut self, floor: u64) {
        self.next_id = self.next_id.max(floor.saturating_add(1));
    }

    fn new_command(&mut self, key: String, kind: CommandKind) -> Command {
        let id = self.next_id;
        self.next_id += 1;
        Command {
            id,
            idempotency_key: key,
            attempt: 1,
            kind,
        }
    }

    fn record(&mut self, record: &str, state: RecordState, detail: impl Into<String>) {
        self.journal.push(Journal::Record {
            record: record.to_owned(),
            state,
            detail: detail.into(),
        });
    }

    fn command_state(&mut self, command: u64, state: RecordState, detail: impl Into<String>) {
        self.journal.push(Journal::Command {
            command,
            state,
            detail: detail.into(),
        });
    }

    /// Raise an exception unless one with the same subject and reason is open.
    fn raise(
        &mut self,
        now: Timestamp,
        subject: String,
        reason: Reason,
        message: String,
        records: Vec<String>,
    ) -> u64 {
        if let Some(e) = self
            .exceptions
            .values_mut()
            .find(|e| e.subject == subject && e.reason == reason)
        {
            for r in records {
                if !e.records.contains(&r) {
                    e.records.push(r);
                }
            }
            return e.id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = ExceptionEntry {
            id,
            subject,
            reason,
            message,
            raised_at: now,
            records,
        };
        self.journal.push(Journal::Raised(entry.clone()));
        self.exceptions.insert(id, entry);
        id
    }

    fn resolve(&mut self, now: Timestamp, subject: &str, reason: Reason, note: &str) {
        let ids: Vec<u64> = self
            .exceptions
            .values()
            .filter(|e| e.subject == subject && e.reason == reason)
            .map(|e| e.id)
            .collect();
        for id in ids {
            self.exceptions.remove(&id);
            self.journal.push(Journal::Resolved {
                id,
                at: now,
                note: note.to_owned(),
            });
        }
    }

    fn entry(&mut self, key: &StockKey) -> &mut StockEntry {
        self.ledger.entry(key.clone()).or_default()
    }

    fn touch(&mut self, key: &StockKey, now: Timestamp) {
        let needs = self.ledger.get(key).is_some_and(StockEntry::needs_push);
        if needs {
            let e = self.entry(key);
            e.dirty_since = Some(e.dirty_since.unwrap_or(now));
            self.pending.insert(key.clone());
        }
    }

    fn is_pos_managed(&self, source: &SourceCode) -> bool {
        self.cfg
            .routing
            .source(source)
            .is_none_or(|s| s.pos_managed)
    }

    // -----------------------------------------------------------------------------------------
    // inputs

    /// Take one input (already stored by the caller).
    pub fn handle(&mut self, input: Input, now: Timestamp) {
        match input {
            Input::PosStock {
                record,
                sku,
                source,
                on_hand,
                as_of,
            } => self.on_pos_stock(record, sku, source, on_hand, as_of, now),
            Input::PosSale {
                record,
                sku,
                source,
                units,
                at,
            } => {
                self.stats.pos_events += 1;
                let window = self.cfg.velocity_window_ms;
                self.entry(&StockKey::new(sku, source))
                    .sales
                    .record(at, units, window);
                self.record(&record, RecordState::Settled, "sales velocity updated");
            }
            Input::CommerceOrder { record, order } => self.on_order(record, order, now),
            Input::Fulfilment {
                record,
                order,
                state,
                at,
                tracking,
                lines,
            } => self.on_fulfilment(record, order, state, at, tracking, lines, now),
            Input::PosReturn {
                record,
                order,
                lines,
                at: _,
            } => self.on_pos_return(record, order, lines, now),
            Input::Result { command, outcome } => self.on_result(command, outcome, now),
            Input::Salable {
                command,
                sku,
                stock_id,
                salable,
            } => self.on_salable(command, sku, stock_id, salable, now),
            Input::SourceItems {
                command,
                items,
                last_page,
            } => self.on_source_items(command, items, last_page, now),
            Input::RetryException { id } => self.on_retry_exception(id, now),
            Input::ResolveException { id, note } => {
                if self.exceptions.remove(&id).is_some() {
                    self.journal.push(Journal::Resolved { id, at: now, note });
                }
            }
        }
    }

    fn on_pos_stock(
        &mut self,
        record: String,
        sku: Sku,
        source: SourceCode,
        on_hand: Decimal,
        as_of: Timestamp,
        now: Timestamp,
    ) {
        self.stats.pos_events += 1;
        let key = StockKey::new(sku, source);
        self.record(
            &record,
            RecordState::Received,
            format!("{key}: on hand {on_hand} as of {as_of}"),
        );
        if !self.is_pos_managed(&key.source) {
            self.record(
                &record,
                RecordState::Settled,
                format!("source {} is not managed by a POS", key.source),
            );
            return;
        }
        let outcome = self.entry(&key).observe(on_hand, as_of, now);
        if outcome == ObservationOutcome::Stale {
            self.stats.stale_observations += 1;
            self.record(
                &record,
                RecordState::Superseded,
                "a newer figure is already held",
            );
            return;
        }
        self.backoff.remove(&key);
        self.resolve(
            now,
            &key.to_string(),
            Reason::CommerceRefused,
            "a new POS figure arrived",
        );
        if on_hand < Decimal::ZERO {
            self.raise(
                now,
                key.to_string(),
                Reason::NegativeOnHand,
                format!(
                    "The till reports {on_hand} on hand for {} at {}: it sold stock it did not have. Commerce gets 0; count the shelf and correct the POS.",
                    key.sku, key.source
                ),
                vec![record.clone()],
            );
        } else {
            self.resolve(
                now,
                &key.to_string(),
                Reason::NegativeOnHand,
                "the till reports a non-negative figure again",
            );
        }
        if self.ledger.get(&key).is_some_and(StockEntry::needs_push) {
            self.touch(&key, now);
            let e = self.entry(&key);
            e.waiting_records.push(record.clone());
            let target = e.target().unwrap_or_default();
            self.record(
                &record,
                RecordState::Planned,
                format!("push {target} to {key}"),
            );
        } else {
            self.record(
                &record,
                RecordState::Settled,
                "Commerce already holds this quantity",
            );
        }
    }

    fn on_order(&mut self, record: String, order: super::orders::WebOrder, now: Timestamp) {
        let id = order.increment_id.clone();
        self.record(
            &record,
            RecordState::Received,
            format!("order {id} ({})", order.state),
        );
        let refunded_before = self
            .orders
            .get(&id)
            .map(|f| refunded_per_sku(&f.order))
            .unwrap_or_default();
        let is_new = !self.orders.contains_key(&id);
        if is_new {
            self.stats.web_orders += 1;
            self.orders
                .insert(id.clone(), OrderFlow::new(order.clone()));
        }
        let Some(flow) = self.orders.get_mut(&id) else {
            return;
        };
        if !is_new && flow.order.updated_at.as_millis() > order.updated_at.as_millis() {
            self.record(
                &record,
                RecordState::Superseded,
                "an older copy of the order",
            );
            return;
        }
        flow.order = order;
        flow.records.push(record.clone());
        let refunded: Vec<Sku> = refunded_per_sku(&flow.order)
            .into_iter()
            .filter(|(sku, q)| refunded_before.get(sku).is_none_or(|b| q > b))
            .map(|(sku, _)| sku)
            .collect();
        let stock_id = flow.order.stock_id;
        let (canceled, finished) = (flow.order.is_withdrawn(), flow.order.is_finished());
        let routed = flow.source.is_some() || flow.warehouse || flow.unroutable;
        if !refunded.is_empty() {
            self.after_refund(&refunded, stock_id, now);
        }
        if canceled {
            self.on_commerce_cancel(&id, &record, now);
            // The cancellation released its reservations: check that customers see the stock.
            let keys: Vec<StockKey> = self
                .orders
                .get(&id)
                .map(|f| {
                    let skus: Vec<Sku> = f.order.lines.iter().map(|l| l.sku.clone()).collect();
                    self.cfg
                        .routing
                        .sources
                        .iter()
                        .filter(|s| s.stock_ids.contains(&f.order.stock_id))
                        .flat_map(|s| {
                            skus.iter()
                                .map(move |k| StockKey::new(k.clone(), s.source.clone()))
                        })
                        .take(skus.len())
                        .collect()
                })
                .unwrap_or_default();
            for key in keys {
                self.schedule_verify_forced(&key, now, true);
            }
            return;
        }
        // The rest of a split order the store would not hand over: settled once Commerce no
        // longer expects it (cancelled or refunded there).
        if self.orders.get(&id).is_some_and(|f| {
            f.fulfilment == Some(FulfilmentState::Completed)
                && units_left_after_handovers(f).is_empty()
        }) {
            self.resolve(
                now,
                &format!("order {id}"),
                Reason::PosRefused,
                "nothing is left to hand over: Commerce cancelled or refunded the rest",
            );
        }
        if !routed && !finished {
            self.route(&id, &record, now);
        } else {
            self.record(&record, RecordState::Settled, "order updated");
        }
    }

    /// A credit memo moves source quantities on Commerce's side: with "return to stock" the
    /// shipped units go back on the source they left; without it, units that never shipped are
    /// deducted from the stock's sources by priority. On a source a till manages, the till's
    /// figure is the truth, so what Commerce holds there is unknown now: push the till's figure
    /// again (absolute, so a refund that moved nothing costs one write).
    fn after_refund(&mut self, skus: &[Sku], stock_id: u32, now: Timestamp) {
        let sources: Vec<SourceCode> = self
            .cfg
            .routing
            .sources
            .iter()
            .filter(|s| s.pos_managed && s.stock_ids.contains(&stock_id))
            .map(|s| s.source.clone())
            .collect();
        for sku in skus {
            for source in &sources {
                let key = StockKey::new(sku.clone(), source.clone());
                if let Some(e) = self.ledger.get_mut(&key) {
                    e.forget_commerce();
                    self.touch(&key, now);
                }
            }
        }
    }

    fn route(&mut self, id: &str, record: &str, now: Timestamp) {
        let Some(flow) = self.orders.get(id) else {
            return;
        };
        let ledger = &self.ledger;
        let decision = self
            .cfg
            .routing
            .route(&flow.order, &flow.declined, |sku, source| {
                ledger
                    .get(&StockKey::new(sku.clone(), source.clone()))
                    .and_then(|e| e.pos.as_ref().map(|p| p.on_hand))
            });
        match decision {
            RouteDecision::Store { source } => {
                let (lines, pickup) = {
                    let flow = &self.orders[id];
                    (
                        flow.order
                            .lines
                            .iter()
                            .filter(|l| l.open() > Decimal::ZERO)
                            .map(|l| (l.sku.clone(), l.open()))
                            .collect::<Vec<_>>(),
                        matches!(flow.order.delivery, super::orders::Delivery::Pickup { .. }),
                    )
                };
                let cmd = self.new_command(
                    format!("fulfil:{id}:{source}"),
                    CommandKind::CreateFulfilment {
                        order: id.to_owned(),
                        source: source.clone(),
                        lines,
                        pickup,
                    },
                );
                if let Some(flow) = self.orders.get_mut(id) {
                    flow.source = Some(source.clone());
                    flow.pos_command = Some(cmd.id);
                    flow.fulfilment = None;
                }
                self.record(
                    record,
                    RecordState::Planned,
                    format!("route order {id} to {source}"),
                );
                self.command_state(
                    cmd.id,
                    RecordState::Planned,
                    format!("ask {source} to fulfil order {id}"),
                );
                self.pos_queue.push_back(cmd);
                self.resolve(now, &format!("order {id}"), Reason::Unroutable, "routed");
            }
            RouteDecision::Warehouse { source } => {
                if let Some(flow) = self.orders.get_mut(id) {
                    flow.warehouse = true;
                    flow.source = Some(source.clone());
                }
                self.record(
                    record,
                    RecordState::Settled,
                    format!("order {id} ships from warehouse {source} (Commerce's own process)"),
                );
            }
            RouteDecision::Nowhere { reason } => {
                if let Some(flow) = self.orders.get_mut(id) {
                    flow.unroutable = true;
                }
                self.record(
                    record,
                    RecordState::Stalled,
                    format!("unroutable: {reason}"),
                );
                self.raise(
                    now,
                    format!("order {id}"),
                    Reason::Unroutable,
                    format!("Order {id} cannot be routed: {reason}. Send it from a warehouse, move stock, or cancel it in Commerce."),
                    vec![record.to_owned()],
                );
            }
        }
    }

    fn on_commerce_cancel(&mut self, id: &str, record: &str, now: Timestamp) {
        // Nobody has to route the order or find another store for it any more.
        for reason in [Reason::Unroutable, Reason::PosRefused] {
            self.resolve(
                now,
                &format!("order {id}"),
                reason,
                "the order was cancelled in Commerce",
            );
        }
        let Some(flow) = self.orders.get(id) else {
            return;
        };
        let source = flow.source.clone();
        match (flow.fulfilment, source, flow.cancel_sent) {
            // Every parcel the store handed over has shipped: Commerce cancelled the rest (what
            // the store would not hand over), and nothing at the store is affected.
            (Some(FulfilmentState::Completed), _, _)
                if flow.shipments > 0
                    && flow.handovers.is_empty()
                    && !matches!(flow.shipment, ShipmentState::Pending { .. }) =>
            {
                self.record(
                    record,
                    RecordState::Settled,
                    format!("order {id}: the rest cancelled in Commerce; every parcel handed over has shipped"),
                );
            }
            (Some(FulfilmentState::Completed), _, _) => {
                self.record(
                    record,
                    RecordState::Stalled,
                    format!("order {id} cancelled after the store handed it over"),
                );
                self.handed_over_after_cancel(id, vec![record.to_owned()], now);
            }
            (state, Some(source), false)
                if !flow.warehouse && !state.is_some_and(FulfilmentState::is_terminal) =>
            {
                let cmd = self.new_command(
                    format!("cancel:{id}:{source}"),
                    CommandKind::CancelFulfilment {
                        order: id.to_owned(),
                        source: source.clone(),
                    },
                );
                if let Some(flow) = self.orders.get_mut(id) {
                    flow.cancel_sent = true;
                    flow.pos_command = Some(cmd.id);
                }
                self.record(
                    record,
                    RecordState::Planned,
                    format!("withdraw order {id} from {source}"),
                );
                self.command_state(
                    cmd.id,
                    RecordState::Planned,
                    format!("cancel the fulfilment of {id} at {source}"),
                );
                self.pos_queue.push_back(cmd);
            }
            _ => self.record(
                record,
                RecordState::Settled,
                format!("order {id} cancelled"),
            ),
        }
        // A cancelled order will never ship: drop in-flight units (the POS figure brings the
        // goods back when the store puts them back on the shelf).
        let keys: Vec<StockKey> = self
            .ledger
            .iter()
            .filter(|(_, e)| e.in_flight_for(id) > Decimal::ZERO)
            .map(|(k, _)| k.clone())
            .collect();
        let completed = self
            .orders
            .get(id)
            .is_some_and(|f| f.fulfilment == Some(FulfilmentState::Completed));
        if !completed {
            for key in keys {
                let units = self.entry(&key).in_flight_for(id);
                self.entry(&key).drop_in_flight(id, units);
                self.touch(&key, now);
            }
        }
    }

    /// The store handed over an order that Commerce has cancelled (or refunded in full before it
    /// shipped), whichever Tillbridge heard of first. Commerce will not take a shipment for it
    /// and has released its reservation, so the goods that left are a till movement like any
    /// other: nothing stays in flight, Commerce follows the till's figure, and a person recovers
    /// the goods or settles with the customer. A shipment already sent waits for its answer
    /// (a refusal comes back here).
    fn handed_over_after_cancel(&mut self, id: &str, records: Vec<String>, now: Timestamp) {
        let subject = format!("order {id}");
        let note = "the till reports the order handed over";
        let what = if self.orders.get(id).is_some_and(|f| f.order.is_canceled()) {
            "cancelled"
        } else {
            "refunded in full"
        };
        self.resolve(now, &subject, Reason::PosRefused, note);
        self.resolve(now, &subject, Reason::ShipmentFailed, note);
        self.raise(
            now,
            subject,
            Reason::CancelAfterHandover,
            format!("Commerce {what} order {id} after the store handed it over. Recover the goods or refund through a return; stock figures follow the till."),
            records,
        );
        let Some(flow) = self.orders.get_mut(id) else {
            return;
        };
        if matches!(
            flow.shipment,
            ShipmentState::Pending {
                command: Some(_),
                ..
            }
        ) {
            return;
        }
        if matches!(flow.shipment, ShipmentState::Pending { .. }) {
            flow.shipment = ShipmentState::None;
        }
        flow.handovers.clear();
        let keys: Vec<StockKey> = self
            .ledger
            .iter()
            .filter(|(_, e)| e.in_flight_for(id) > Decimal::ZERO)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let units = self.entry(&key).in_flight_for(id);
            self.entry(&key).drop_in_flight(id, units);
            self.touch(&key, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fulfilment(
        &mut self,
        record: String,
        id: String,
        state: FulfilmentState,
        at: Timestamp,
        tracking: Option<String>,
        lines: Option<Vec<(Sku, Decimal)>>,
        now: Timestamp,
    ) {
        self.stats.pos_events += 1;
        self.record(
            &record,
            RecordState::Received,
            format!("order {id}: fulfilment {state:?}"),
        );
        let Some(flow) = self.orders.get_mut(&id) else {
            self.record(&record, RecordState::Stalled, "unknown order");
            self.raise(
                now,
                format!("order {id}"),
                Reason::UnknownOrder,
                format!("The POS reports fulfilment {state:?} for order {id}, which Tillbridge has not seen in Commerce. Check the order number on the till."),
                vec![record.clone()],
            );
            return;
        };
        let current = flow.fulfilment.unwrap_or(FulfilmentState::Requested);
        // A further parcel of an order the store already handed over in part.
        let another_parcel = current == FulfilmentState::Completed
            && state == FulfilmentState::Completed
            && lines.is_some();
        // The store handed over part of a split order, then cancelled (or could not do) the
        // rest: what is left stays reserved in Commerce until someone decides.
        if current == FulfilmentState::Completed
            && matches!(
                state,
                FulfilmentState::Rejected | FulfilmentState::Cancelled | FulfilmentState::Failed
            )
            && !flow.cancel_sent
        {
            let left = units_left_after_handovers(flow);
            if !left.is_empty() {
                let name = flow.source.as_ref().map_or_else(String::new, |s| {
                    self.cfg
                        .routing
                        .source(s)
                        .map_or_else(|| s.to_string(), |r| r.name.clone())
                });
                let listed = left
                    .iter()
                    .map(|(sku, q)| format!("{sku} × {}", q.normalize()))
                    .collect::<Vec<_>>()
                    .join(", ");
                flow.records.push(record.clone());
                self.record(
                    &record,
                    RecordState::Stalled,
                    format!("the store will not hand over the rest: {listed}"),
                );
                self.raise(
                    now,
                    format!("order {id}"),
                    Reason::PosRefused,
                    format!("{name} handed over part of order {id} and {} the rest ({listed}), which Commerce still reserves. Cancel those lines in Commerce (a credit memo or cancelling the order releases the reservation), or ship them from elsewhere.", match state { FulfilmentState::Rejected => "declined", FulfilmentState::Failed => "could not fulfil", _ => "cancelled" }),
                    vec![record.clone()],
                );
                return;
            }
        }
        if flow.fulfilment.is_some() && !another_parcel && !current.can_become(state) {
            self.record(
                &record,
                RecordState::Superseded,
                format!("{current:?} → {state:?} is not a forward move"),
            );
            return;
        }
        flow.fulfilment = Some(state);
        flow.records.push(record.clone());
        let Some(source) = flow.source.clone() else {
            self.record(&record, RecordState::Settled, "order not routed to a store");
            return;
        };
        let name = self
            .cfg
            .routing
            .source(&source)
            .map_or_else(|| source.to_string(), |s| s.name.clone());
        let (entity_id, pickup) = (
            flow.order.entity_id,
            matches!(flow.order.delivery, super::orders::Delivery::Pickup { .. }),
        );
        match state {
            FulfilmentState::Requested => self.record(&record, RecordState::Settled, "requested"),
            FulfilmentState::Accepted => {
                self.comment(
                    &id,
                    entity_id,
                    "accepted",
                    format!("Your order is being prepared at {name}."),
                    false,
                );
                self.record(&record, RecordState::Planned, "comment: being prepared");
            }
            FulfilmentState::Ready => {
                if pickup {
                    self.comment(
                        &id,
                        entity_id,
                        "ready",
                        format!("Your order is ready for collection at {name}."),
                        true,
                    );
                }
                self.record(&record, RecordState::Planned, "comment: ready");
            }
            FulfilmentState::Completed => {
                let handed: Vec<(Sku, Decimal)> = match lines {
                    Some(l) => l,
                    None => flow
                        .order
                        .lines
                        .iter()
                        .filter(|l| l.open() > Decimal::ZERO)
                        .map(|l| (l.sku.clone(), l.open()))
                        .collect(),
                };
                match &mut flow.shipment {
                    // Not sent yet: the parcels travel as one shipment.
                    ShipmentState::Pending {
                        lines,
                        command: None,
                        ..
                    } => {
                        for (sku, units) in &handed {
                            match lines.iter_mut().find(|(s, _)| s == sku) {
                                Some((_, u)) => *u += *units,
                                None => lines.push((sku.clone(), *units)),
                            }
                        }
                    }
                    // A shipment is on its way: this parcel goes next.
                    ShipmentState::Pending {
                        command: Some(_), ..
                    } => {
                        flow.handovers.push((handed.clone(), tracking));
                    }
                    _ => {
                        flow.shipment = ShipmentState::Pending {
                            lines: handed.clone(),
                            tracking,
                            command: None,
                        };
                    }
                }
                for (sku, units) in &handed {
                    let key = StockKey::new(sku.clone(), source.clone());
                    self.entry(&key).in_flight.push(InFlight {
                        order: id.clone(),
                        units: *units,
                        deducted_at: at,
                    });
                    self.touch(&key, now);
                }
                let withdrawn = self.orders.get(&id).is_some_and(|f| f.order.is_withdrawn());
                if withdrawn {
                    self.record(
                        &record,
                        RecordState::Stalled,
                        format!("handed over at {source} after Commerce cancelled the order"),
                    );
                    self.handed_over_after_cancel(&id, vec![record.clone()], now);
                } else {
                    self.record(
                        &record,
                        RecordState::Planned,
                        format!("create the Commerce shipment from {source}"),
                    );
                }
            }
            FulfilmentState::Rejected | FulfilmentState::Cancelled | FulfilmentState::Failed => {
                let cancel_sent = flow.cancel_sent;
                if cancel_sent {
                    self.record(
                        &record,
                        RecordState::Confirmed,
                        "withdrawn after Commerce cancelled",
                    );
                    self.resolve(
                        now,
                        &format!("order {id}"),
                        Reason::PosRefused,
                        "withdrawn at the till",
                    );
                    return;
                }
                flow.declined.push(source.clone());
                flow.source = None;
                self.record(
                    &record,
                    RecordState::Planned,
                    format!("{name} declined: route again"),
                );
                self.route(&id, &record, now);
            }
        }
    }

    fn comment(&mut self, id: &str, entity_id: u64, what: &str, text: String, notify: bool) {
        let cmd = self.new_command(
            format!("comment:{id}:{what}"),
            CommandKind::OrderComment {
                order: id.to_owned(),
                entity_id,
                comment: text.clone(),
                notify,
            },
        );
        self.command_state(cmd.id, RecordState::Planned, text);
        self.commerce_queue.push_back(cmd);
    }

    fn on_pos_return(
        &mut self,
        record: String,
        id: String,
        lines: Vec<(Sku, Decimal)>,
        now: Timestamp,
    ) {
        self.stats.pos_events += 1;
        self.record(
            &record,
            RecordState::Received,
            format!("return for order {id}"),
        );
        let Some(flow) = self.orders.get(&id) else {
            self.record(&record, RecordState::Stalled, "unknown order");
            self.raise(
                now,
                format!("order {id}"),
                Reason::UnknownOrder,
                format!(
                    "A return at the till refers to order {id}, which Tillbridge has not seen."
                ),
                vec![record],
            );
            return;
        };
        let items: Vec<(u64, Decimal)> = lines
            .iter()
            .filter_map(|(sku, qty)| {
                flow.order
                    .lines
                    .iter()
                    .find(|l| &l.sku == sku)
                    .map(|l| (l.item_id, *qty))
            })
            .collect();
        let entity_id = flow.order.entity_id;
        let store = flow
            .source
            .as_ref()
            .map_or_else(|| "a store".to_owned(), |s| s.to_string());
        let cmd = self.new_command(
            format!("memo:{id}:{record}"),
            CommandKind::CreditMemo {
                order: id.clone(),
                entity_id,
                items,
                comment: format!("Returned at {store}; refunded."),
            },
        );
        self.record(&record, RecordState::Planned, "credit memo");
        self.command_state(
            cmd.id,
            RecordState::Planned,
            format!("refund the returned items of order {id}"),
        );
        self.commerce_queue.push_back(cmd);
    }

    // -----------------------------------------------------------------------------------------
    // answers

    fn on_result(&mut self, id: u64, outcome: Outcome, now: Timestamp) {
        let Some(done) = self.in_flight.remove(&id) else {
            return;
        };
        let cmd = done.command;
        if cmd.kind.to_commerce() {
            let signal = match &outcome {
                Outcome::Ok { latency_ms } => Some(LoadSignal::Answered {
                    latency_ms: *latency_ms,
                }),
                Outcome::Retriable {
                    throttled: true, ..
                } => Some(LoadSignal::Throttled),
                _ => None,
            };
            if let Some(s) = signal {
                if s == LoadSignal::Throttled {
                    self.stats.throttles += 1;
                }
                self.budget.observe(now, s);
            }
        }
        match outcome {
            Outcome::Ok { .. } => self.on_ok(cmd, done.keys, now),
            Outcome::Retriable { reason, .. } => self.on_retriable(cmd, done.keys, reason, now),
            Outcome::Permanent {
                status,
                message,
                skus,
            } => self.on_permanent(cmd, done.keys, status, message, skus, now),
        }
    }

    fn on_ok(
        &mut self,
        cmd: Command,
        keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)>,
        now: Timestamp,
    ) {
        self.command_state(cmd.id, RecordState::Confirmed, cmd.kind.name());
        match cmd.kind {
            CommandKind::PushSourceItems { .. } => {
                self.stats.pushes_confirmed += 1;
                for (key, value, records, since) in keys {
                    self.entry(&key).push_confirmed(value);
                    self.backoff.remove(&key);
                    if let Some(since) = since {
                        self.journal.push(Journal::Latency {
                            key: key.clone(),
                            ms: now.as_millis() - since.as_millis(),
                        });
                    }
                    for r in &records {
                        self.record(
                            r,
                            RecordState::Confirmed,
                            format!("Commerce holds {value} at {key}"),
                        );
                    }
                    self.resolve(now, &key.to_string(), Reason::Timeout, "pushed");
                    self.touch(&key, now);
                    self.schedule_verify(&key, now);
                }
            }
            CommandKind::CreateShipment { order, source, .. } => {
                self.stats.shipments_created += 1;
                let lines = match self.orders.get_mut(&order).map(|f| {
                    f.shipments += 1;
                    let next = if f.handovers.is_empty() {
                        ShipmentState::Created
                    } else {
                        let (lines, tracking) = f.handovers.remove(0);
                        ShipmentState::Pending {
                            lines,
                            tracking,
                            command: None,
                        }
                    };
                    std::mem::replace(&mut f.shipment, next)
                }) {
                    Some(ShipmentState::Pending { lines, .. }) => lines,
                    _ => Vec::new(),
                };
                for (sku, units) in lines {
                    let key = StockKey::new(sku, source.clone());
                    let e = self.entry(&key);
                    e.drop_in_flight(&order, units);
                    // Magento deducted the source when it created the shipment.
                    e.commerce = e.commerce.map(|q| q - units);
                    e.busy = None;
                    self.touch(&key, now);
                    self.schedule_verify(&key, now);
                }
                let records = self
                    .orders
                    .get(&order)
                    .map(|f| f.records.clone())
                    .unwrap_or_default();
                for r in &records {
                    self.record(
                        r,
                        RecordState::Confirmed,
                        format!("shipment created from {source}"),
                    );
                }
                self.resolve(
                    now,
                    &format!("order {order}"),
                    Reason::ShipmentFailed,
                    "shipment created",
                );
            }
            CommandKind::CreateFulfilment { order, .. } => {
                if let Some(f) = self.orders.get_mut(&order) {
                    f.pos_command = None;
                    if f.fulfilment.is_none() {
                        f.fulfilment = Some(FulfilmentState::Requested);
                    }
                }
            }
            CommandKind::CancelFulfilment { order, .. } => {
                if let Some(f) = self.orders.get_mut(&order) {
                    f.pos_command = None;
                    f.fulfilment = Some(FulfilmentState::Cancelled);
                }
            }
            CommandKind::ReadSourceItems { .. } | CommandKind::ReadSalable { .. } => {}
            CommandKind::CancelOrder { .. }
            | CommandKind::CreditMemo { .. }
            | CommandKind::OrderComment { .. } => {}
        }
    }

    fn backoff_ms(&self, id: u64, attempt: u32) -> i64 {
        let r = self.cfg.retry;
        let exp = r
            .base_ms
            .saturating_mul(1i64 << attempt.min(20))
            .min(r.max_ms);
        exp - exp / 5 + jitter(id, attempt, exp * 2 / 5)
    }

    fn on_retriable(
        &mut self,
        cmd: Command,
        keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)>,
        reason: String,
        now: Timestamp,
    ) {
        self.stats.retries += 1;
        self.command_state(
            cmd.id,
            RecordState::Failed,
            super::types::retry_detail(cmd.attempt, &reason),
        );
        if let CommandKind::PushSourceItems { .. } = cmd.kind {
            // Absolute writes: release the keys; the next push carries the newest target.
            for (key, _, records, since) in keys {
                let attempts = self.backoff.get(&key).map_or(0, |b| b.attempts) + 1;
                let wait = self.backoff_ms(cmd.id, attempts);
                self.backoff.insert(
                    key.clone(),
                    KeyBackoff {
                        at: now.add_millis(wait),
                        attempts,
                        alone: false,
                    },
                );
                let e = self.entry(&key);
                e.sending = None;
                e.busy = None;
                // The write may have been applied with its answer lost: what Commerce holds is
                // unknown until the next confirmed push (absolute, so it converges).
                e.commerce = None;
                e.unknown_after_send = false;
                e.dirty_since = since.or(e.dirty_since);
                for r in records {
                    if !e.waiting_records.contains(&r) {
                        e.waiting_records.push(r);
                    }
                }
                self.pending.insert(key.clone());
                if attempts >= self.cfg.retry.raise_after {
                    let records = self
                        .ledger
                        .get(&key)
                        .map(|e| e.waiting_records.clone())
                        .unwrap_or_default();
                    self.raise(
                        now,
                        key.to_string(),
                        Reason::Timeout,
                        format!("{attempts} pushes of {key} did not get through ({reason}). Tillbridge keeps retrying; check Commerce's health."),
                        records,
                    );
                }
            }
            return;
        }
        if cmd.attempt >= self.cfg.retry.give_up_after {
            self.give_up(
                cmd,
                format!(
                    "gave up after {} attempts: {reason}",
                    self.cfg.retry.give_up_after
                ),
                now,
            );
            return;
        }
        if cmd.attempt >= self.cfg.retry.raise_after {
            self.raise(
                now,
                format!("command {} ({})", cmd.id, cmd.kind.name()),
                Reason::Timeout,
                format!(
                    "{} attempts of {} did not get through ({reason}); retrying.",
                    cmd.attempt,
                    cmd.kind.name()
                ),
                Vec::new(),
            );
        }
        let wait = self.backoff_ms(cmd.id, cmd.attempt);
        let mut next = cmd;
        next.attempt += 1;
        self.retries.push(Retry {
            at: now.add_millis(wait),
            command: next,
        });
    }

    fn give_up(&mut self, cmd: Command, why: String, now: Timestamp) {
        self.command_state(cmd.id, RecordState::Stalled, why.clone());
        match &cmd.kind {
            CommandKind::CreateShipment { order, source, .. } => {
                let order = order.clone();
                let source = source.clone();
                self.release_shipment_keys(&order, &source);
                if let Some(f) = self.orders.get_mut(&order) {
                    f.shipment = ShipmentState::Failed {
                        reason: why.clone(),
                    };
                }
                self.raise(now, format!("order {order}"), Reason::ShipmentFailed, format!("The Commerce shipment of order {order} from {source} could not be created: {why}. Retry once Commerce answers."), Vec::new());
            }
            _ => {
                if let CommandKind::ReadSourceItems { .. } = cmd.kind {
                    self.sweep_failed();
                }
                self.raise(
                    now,
                    format!("command {} ({})", cmd.id, cmd.kind.name()),
                    Reason::Timeout,
                    format!("{} could not be completed: {why}.", cmd.kind.name()),
                    Vec::new(),
                );
            }
        }
    }

    /// A sweep page could not be read: the sweep ends (the next one starts on schedule), and
    /// source items still unknown are written as they are.
    fn sweep_failed(&mut self) {
        self.sweep_running = false;
        self.learning = false;
    }

    fn release_shipment_keys(&mut self, order: &str, source: &SourceCode) {
        let lines = match self.orders.get(order).map(|f| &f.shipment) {
            Some(ShipmentState::Pending { lines, .. }) => lines.clone(),
            _ => Vec::new(),
        };
        for (sku, _) in lines {
            let key = StockKey::new(sku, source.clone());
            if let Some(e) = self.ledger.get_mut(&key)
                && matches!(e.busy, Some(Busy::Shipment { .. }))
            {
                e.busy = None;
            }
        }
    }

    fn on_permanent(
        &mut self,
        cmd: Command,
        keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)>,
        status: u16,
        message: String,
        skus: Vec<Sku>,
        now: Timestamp,
    ) {
        self.command_state(cmd.id, RecordState::Failed, format!("{status}: {message}"));
        match cmd.kind.clone() {
            CommandKind::PushSourceItems { items } => {
                let alone = items.len() == 1;
                for (key, _, records, since) in keys {
                    let named = skus.contains(&key.sku);
                    let e = self.entry(&key);
                    e.sending = None;
                    e.busy = None;
                    e.dirty_since = since.or(e.dirty_since);
                    if alone || named {
                        e.refused = Some(message.clone());
                        for r in &records {
                            self.record(
                                r,
                                RecordState::Failed,
                                format!("Commerce refused {key}: {message}"),
                            );
                        }
                        self.pending.remove(&key);
                        self.raise(
                            now,
                            key.to_string(),
                            Reason::CommerceRefused,
                            format!("Commerce refused the quantity for {} at {} ({status}: {message}). Check that the SKU exists in Commerce and is assigned to the source; Tillbridge retries when the till sends a new figure or on request.", key.sku, key.source),
                            records,
                        );
                    } else {
                        // Someone else in the batch was refused: push each key alone to find it.
                        let e = self.entry(&key);
                        e.waiting_records.extend(records);
                        self.backoff.insert(
                            key.clone(),
                            KeyBackoff {
                                at: now,
                                attempts: 0,
                                alone: true,
                            },
                        );
                        self.pending.insert(key.clone());
                    }
                }
            }
            CommandKind::CreateShipment { order, source, .. }
                if self
                    .orders
                    .get(&order)
                    .is_some_and(|f| f.order.is_withdrawn()) =>
            {
                // Commerce cancelled it while the shipment was on its way.
                self.release_shipment_keys(&order, &source);
                if let Some(f) = self.orders.get_mut(&order) {
                    f.shipment = ShipmentState::None;
                }
                let records = self
                    .orders
                    .get(&order)
                    .map(|f| f.records.clone())
                    .unwrap_or_default();
                self.handed_over_after_cancel(&order, records, now);
            }
            CommandKind::CancelFulfilment { order, source } => {
                let completed = self.orders.get_mut(&order).is_some_and(|f| {
                    f.pos_command = None;
                    f.fulfilment == Some(FulfilmentState::Completed)
                });
                // Handed over already: that exception is open. Otherwise the store may still
                // send goods Commerce will not ship.
                if !completed {
                    self.raise(
                        now,
                        format!("order {order}"),
                        Reason::PosRefused,
                        format!("Commerce cancelled order {order}, but the POS at {source} did not withdraw it ({message}). Withdraw it at the till so the goods are not sent."),
                        self.orders.get(&order).map(|f| f.records.clone()).unwrap_or_default(),
                    );
                }
            }
            CommandKind::CreateShipment { order, source, .. } => {
                self.release_shipment_keys(&order, &source);
                if let Some(f) = self.orders.get_mut(&order) {
                    f.shipment = ShipmentState::Failed {
                        reason: message.clone(),
                    };
                }
                self.raise(
                    now,
                    format!("order {order}"),
                    Reason::ShipmentFailed,
                    format!("Commerce refused the shipment of order {order} from {source} ({status}: {message}). The goods left the store; create the shipment by hand once the source quantity is right."),
                    self.orders.get(&order).map(|f| f.records.clone()).unwrap_or_default(),
                );
            }
            CommandKind::CreateFulfilment { order, source, .. } => {
                // The POS would not take it: treat as declined and route again.
                if let Some(f) = self.orders.get_mut(&order) {
                    f.pos_command = None;
                    f.declined.push(source.clone());
                    f.source = None;
                }
                self.raise(now, format!("order {order}"), Reason::PosRefused, format!("The POS at {source} refused the fulfilment request for order {order} ({status}: {message})."), Vec::new());
                let record = format!("command:{}", cmd.id);
                self.route(&order, &record, now);
            }
            other => {
                if let CommandKind::ReadSourceItems { .. } = other {
                    self.sweep_failed();
                }
                self.raise(
                    now,
                    format!("command {} ({})", cmd.id, other.name()),
                    Reason::CommerceRefused,
                    format!("{} was refused ({status}: {message}).", other.name()),
                    Vec::new(),
                );
            }
        }
    }

    fn schedule_verify(&mut self, key: &StockKey, now: Timestamp) {
        self.schedule_verify_forced(key, now, false);
    }

    fn schedule_verify_forced(&mut self, key: &StockKey, now: Timestamp, force: bool) {
        let vcfg = &self.cfg.verify;
        let velocity = self.ledger.get(key).map_or(Decimal::ZERO, |e| {
            e.sales.units(now, self.cfg.velocity_window_ms)
        }) * Decimal::from(3_600_000)
            / Decimal::from(self.cfg.velocity_window_ms.max(1));
        self.verify_counter += 1;
        let sampled = vcfg.sample_every > 0
            && self
                .verify_counter
                .is_multiple_of(u64::from(vcfg.sample_every));
        let under_watch = self.exceptions.values().any(|e| {
            e.reason == Reason::SalableDidNotMove
                && e.subject.starts_with(&format!("{} in stock ", key.sku))
        });
        if velocity < vcfg.high_velocity_per_hour && !sampled && !force && !under_watch {
            return;
        }
        let stocks: Vec<u32> = self
            .cfg
            .routing
            .source(&key.source)
            .map(|s| s.stock_ids.clone())
            .unwrap_or_default();
        let at = now.add_millis(vcfg.delay_ms);
        for stock_id in stocks {
            if !self
                .verify
                .iter()
                .any(|v| v.sku == key.sku && v.stock_id == stock_id)
            {
                self.verify.push(VerifyTask {
                    at,
                    sku: key.sku.clone(),
                    stock_id,
                    reads: 0,
                });
            }
        }
    }

    /// What Commerce's salable quantity should be for a SKU in a stock, if every source of the
    /// stock is known and quiet.
    pub fn expected_salable(&self, sku: &Sku, stock_id: u32) -> Option<Decimal> {
        let mut total = Decimal::ZERO;
        for s in self
            .cfg
            .routing
            .sources
            .iter()
            .filter(|s| s.stock_ids.contains(&stock_id))
        {
            let key = StockKey::new(sku.clone(), s.source.clone());
            match self.ledger.get(&key) {
                Some(e) if e.busy.is_some() || self.pending.contains(&key) => return None,
                Some(e) => {
                    let q = e.commerce?;
                    if q > Decimal::ZERO {
                        total += q;
                    }
                }
                None if s.pos_managed => return None,
                None => return None,
            }
        }
        Some(total - open_demand(&self.orders, sku, stock_id) - self.cfg.verify.threshold)
    }

    fn on_salable(
        &mut self,
        id: u64,
        sku: Sku,
        stock_id: u32,
        salable: Option<Decimal>,
        now: Timestamp,
    ) {
        let Some(done) = self.in_flight.remove(&id) else {
            return;
        };
        self.budget
            .observe(now, LoadSignal::Answered { latency_ms: 0 });
        self.command_state(
            done.command.id,
            RecordState::Confirmed,
            "salable quantity read",
        );
        self.stats.verifications += 1;
        let reads = match &done.command.kind {
            CommandKind::ReadSalable { .. } => done.command.attempt,
            _ => 1,
        };
        let subject = format!("{sku} in stock {stock_id}");
        let Some(expected) = self.expected_salable(&sku, stock_id) else {
            // Something is moving: look again later.
            if reads < self.cfg.verify.max_reads + 2 {
                self.verify.push(VerifyTask {
                    at: now.add_millis(self.cfg.verify.delay_ms),
                    sku,
                    stock_id,
                    reads,
                });
            }
            return;
        };
        // Magento answers 0 once its index decided the SKU is not salable (at or below the
        // threshold); above it, the exact figure.
        let matches = match salable {
            Some(s) if expected > Decimal::ZERO => s == expected,
            Some(s) => s == expected || s.is_zero(),
            None => false,
        };
        if matches {
            self.resolve(
                now,
                &subject,
                Reason::SalableDidNotMove,
                "Commerce shows the expected salable quantity",
            );
            let keys: Vec<StockKey> = self
                .ledger
                .keys()
                .filter(|k| k.sku == sku)
                .cloned()
                .collect();
            for key in keys {
                let records = std::mem::take(&mut self.entry(&key).waiting_records);
                for r in records {
                    self.record(
                        &r,
                        RecordState::Verified,
                        format!("salable {expected} in stock {stock_id}"),
                    );
                }
            }
            return;
        }
        if reads < self.cfg.verify.max_reads {
            self.verify.push(VerifyTask {
                at: now.add_millis(self.cfg.verify.delay_ms),
                sku,
                stock_id,
                reads,
            });
            return;
        }
        // Keep looking (slowly) while the exception is open, so it resolves itself when
        // Commerce catches up.
        self.verify.push(VerifyTask {
            at: now.add_millis(self.cfg.verify.delay_ms * 15),
            sku: sku.clone(),
            stock_id,
            reads: 0,
        });
        let shown = salable.map_or_else(|| "an error".to_owned(), |s| s.to_string());
        let records: Vec<String> = self
            .ledger
            .iter()
            .filter(|(k, _)| k.sku == sku)
            .flat_map(|(_, e)| e.waiting_records.clone())
            .collect();
        self.raise(
            now,
            subject,
            Reason::SalableDidNotMove,
            format!(
                "Commerce shows salable {shown} for {sku} in stock {stock_id}; Tillbridge expects {expected} (source quantities it sent, minus open web orders, minus the threshold). Check Magento's indexers and the inventory.reservations queue consumers."
            ),
            records,
        );
    }

    fn on_source_items(
        &mut self,
        id: u64,
        items: Vec<(Sku, SourceCode, Decimal)>,
        last_page: bool,
        now: Timestamp,
    ) {
        let Some(done) = self.in_flight.remove(&id) else {
            return;
        };
        self.command_state(
            done.command.id,
            RecordState::Confirmed,
            format!("{} source items read", items.len()),
        );
        for (sku, source, qty) in items {
            if !self.is_pos_managed(&source) {
                continue;
            }
            let key = StockKey::new(sku, source);
            // The first read after a start: learn what Commerce holds for every source item
            // whose figure is unknown and that was never sent (nothing of ours can have moved
            // it since the page was read; shipments wait for a known figure).
            if self.learning
                && !self.backoff.contains_key(&key)
                && self
                    .ledger
                    .get(&key)
                    .is_none_or(|e| e.commerce.is_none() && e.busy.is_none() && e.sending.is_none())
            {
                let e = self.entry(&key);
                if let Some(t) = e.target()
                    && t != qty
                {
                    self.stats.drift_units += (t - qty).abs();
                }
                self.entry(&key).commerce = Some(qty);
                self.touch(&key, now);
                continue;
            }
            let Some(e) = self.ledger.get_mut(&key) else {
                continue;
            };
            if e.busy.is_some() || self.pending.contains(&key) {
                continue;
            }
            if e.commerce != Some(qty) {
                if let Some(t) = e.target() {
                    self.stats.drift_units += (t - qty).abs();
                }
                e.commerce = Some(qty);
                self.touch(&key, now);
            }
        }
        if last_page {
            self.sweep_running = false;
            self.learning = false;
        } else if let CommandKind::ReadSourceItems { page, page_size } = done.command.kind {
            let cmd = self.new_command(
                format!("sweep:{}:{}", now.as_millis(), page + 1),
                CommandKind::ReadSourceItems {
                    page: page + 1,
                    page_size,
                },
            );
            self.commerce_queue.push_back(cmd);
        }
    }

    fn on_retry_exception(&mut self, id: u64, now: Timestamp) {
        let Some(e) = self.exceptions.remove(&id) else {
            return;
        };
        self.journal.push(Journal::Resolved {
            id,
            at: now,
            note: "retry requested".into(),
        });
        match e.reason {
            Reason::CommerceRefused | Reason::Timeout => {
                let keys: Vec<StockKey> = self
                    .ledger
                    .keys()
                    .filter(|k| k.to_string() == e.subject)
                    .cloned()
                    .collect();
                for key in keys {
                    self.entry(&key).refused = None;
                    self.backoff.remove(&key);
                    self.touch(&key, now);
                }
            }
            Reason::Unroutable | Reason::PosRefused => {
                let order = e.subject.trim_start_matches("order ").to_owned();
                if let Some(f) = self.orders.get_mut(&order) {
                    f.unroutable = false;
                    f.declined.clear();
                    f.source = None;
                }
                self.route(&order, &format!("exception:{id}"), now);
            }
            Reason::ShipmentFailed => {
                let order = e.subject.trim_start_matches("order ").to_owned();
                if let Some(f) = self.orders.get_mut(&order)
                    && let ShipmentState::Failed { .. } = f.shipment
                {
                    // Rebuild the pending shipment from the in-flight units.
                    let source = f.source.clone();
                    let lines: Vec<(Sku, Decimal)> = match &source {
                        Some(s) => self
                            .ledger
                            .iter()
                            .filter(|(k, _)| &k.source == s)
                            .map(|(k, en)| (k.sku.clone(), en.in_flight_for(&order)))
                            .filter(|(_, u)| *u > Decimal::ZERO)
                            .collect(),
                        None => Vec::new(),
                    };
                    if let Some(f) = self.orders.get_mut(&order) {
                        f.shipment = ShipmentState::Pending {
                            lines,
                            tracking: None,
                            command: None,
                        };
                    }
                }
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // poll

    fn take_commerce(&mut self, now: Timestamp, items: u32) -> bool {
        if self
            .in_flight
            .values()
            .filter(|c| c.command.kind.to_commerce())
            .count()
            >= self.cfg.max_in_flight
        {
            return false;
        }
        if self.budget.try_take(now, items) {
            self.stats.commerce_requests += 1;
            true
        } else {
            false
        }
    }

    fn send(
        &mut self,
        cmd: Command,
        keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)>,
        now: Timestamp,
        out: &mut Vec<Output>,
    ) {
        self.command_state(
            cmd.id,
            RecordState::Sent,
            format!("attempt {}", cmd.attempt),
        );
        self.in_flight.insert(
            cmd.id,
            InFlightCommand {
                command: cmd.clone(),
                sent_at: now,
                keys,
            },
        );
        out.push(Output::Command(cmd));
    }

    /// Priority of a pending key: stock-outs and decreases first, then by sales velocity
    /// against the quantity left, then by age.
    fn push_priority(
        &self,
        key: &StockKey,
        now: Timestamp,
    ) -> (u8, std::cmp::Reverse<Decimal>, i64) {
        let Some(e) = self.ledger.get(key) else {
            return (9, std::cmp::Reverse(Decimal::ZERO), 0);
        };
        let target = e.target().unwrap_or_default();
        let current = e.commerce;
        let class = match current {
            Some(c) if target.is_zero() && c > Decimal::ZERO => 0,
            Some(c) if target < c => 1,
            None => 2,
            _ => 3,
        };
        let velocity = e.sales.units(now, self.cfg.velocity_window_ms);
        let risk = velocity / target.max(Decimal::ONE);
        (
            class,
            std::cmp::Reverse(risk),
            e.dirty_since.map_or(0, Timestamp::as_millis),
        )
    }

    /// What to do now.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        // Due retries go back to their queues.
        let (due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.at.as_millis() <= now.as_millis());
        self.retries = later;
        for r in due {
            if r.command.kind.to_commerce() {
                self.commerce_queue.push_front(r.command);
            } else {
                self.pos_queue.push_back(r.command);
            }
        }
        // POS commands.
        while let Some(cmd) = self.pos_queue.pop_front() {
            self.stats.pos_requests += 1;
            self.send(cmd, Vec::new(), now, &mut out);
        }
        // Shipments whose keys are free.
        self.queue_shipments();
        // Customer-facing Commerce calls, then pushes, then reads.
        while let Some(cmd) = self.commerce_queue.front() {
            let items = cmd.kind.items();
            if !self.take_commerce(now, items) {
                break;
            }
            if let Some(cmd) = self.commerce_queue.pop_front() {
                self.send(cmd, Vec::new(), now, &mut out);
            }
        }
        if self.commerce_queue.is_empty() {
            if self.learning {
                // Read what Commerce holds before writing what it may already hold.
                self.poll_sweep(now, &mut out);
            }
            self.poll_pushes(now, &mut out);
            self.poll_verify(now, &mut out);
            self.poll_sweep(now, &mut out);
        }
        out.extend(self.journal.drain(..).map(Output::Journal));
        out
    }

    fn queue_shipments(&mut self) {
        let ready: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, f)| matches!(f.shipment, ShipmentState::Pending { command: None, .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let Some(flow) = self.orders.get(&id) else {
                continue;
            };
            let Some(source) = flow.source.clone() else {
                continue;
            };
            let ShipmentState::Pending {
                lines, tracking, ..
            } = &flow.shipment
            else {
                continue;
            };
            let keys: Vec<StockKey> = lines
                .iter()
                .map(|(s, _)| StockKey::new(s.clone(), source.clone()))
                .collect();
            if keys
                .iter()
                .any(|k| self.ledger.get(k).is_some_and(|e| e.busy.is_some()))
            {
                continue; // a push is on its way: ship after it lands
            }
            // Commerce must hold the till's figure plus the units in flight before the shipment
            // deducts them. A lower figure pushed before the hand-over was known would otherwise
            // be deducted twice (and a source at 0 refuses the shipment): push first.
            let stale: Vec<StockKey> = keys
                .iter()
                .filter(|k| self.ledger.get(k).is_some_and(StockEntry::needs_push))
                .cloned()
                .collect();
            if !stale.is_empty() {
                self.pending.extend(stale);
                continue;
            }
            let items: Vec<(u64, Decimal)> = lines
                .iter()
                .filter_map(|(sku, units)| {
                    flow.order
                        .lines
                        .iter()
                        .find(|l| &l.sku == sku)
                        .map(|l| (l.item_id, *units))
                })
                .collect();
            let name = self
                .cfg
                .routing
                .source(&source)
                .map_or_else(|| source.to_string(), |s| s.name.clone());
            let pickup = matches!(flow.order.delivery, super::orders::Delivery::Pickup { .. });
            let comment = match (pickup, tracking) {
                (true, _) => format!("Collected at {name}."),
                (false, Some(t)) => format!("Shipped from {name}, tracking {t}."),
                (false, None) => format!("Shipped from {name}."),
            };
            // The key names the parcel, not an engine counter: the same parcel decided again
            // after a restart carries the same key, so Commerce creates it once.
            let parcel = flow.shipments + 1;
            let kind = CommandKind::CreateShipment {
                order: id.clone(),
                entity_id: flow.order.entity_id,
                source: source.clone(),
                items,
                tracking: tracking.clone(),
                comment,
            };
            let cmd = self.new_command(format!("ship:{id}:{source}:{parcel}"), kind);
            for k in &keys {
                self.entry(k).busy = Some(Busy::Shipment { command: cmd.id });
            }
            if let Some(f) = self.orders.get_mut(&id)
                && let ShipmentState::Pending { command, .. } = &mut f.shipment
            {
                *command = Some(cmd.id);
            }
            self.command_state(
                cmd.id,
                RecordState::Planned,
                format!("ship order {id} from {source}"),
            );
            self.commerce_queue.push_front(cmd);
        }
    }

    fn poll_pushes(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        loop {
            let mut candidates: Vec<StockKey> = Vec::new();
            let mut settled: Vec<StockKey> = Vec::new();
            for key in &self.pending {
                let Some(e) = self.ledger.get(key) else {
                    settled.push(key.clone());
                    continue;
                };
                if !e.needs_push() {
                    if e.busy.is_none() {
                        settled.push(key.clone());
                    }
                    continue;
                }
                if e.busy.is_some()
                    || self
                        .backoff
                        .get(key)
                        .is_some_and(|b| b.at.as_millis() > now.as_millis())
                {
                    continue;
                }
                if self.learning && e.commerce.is_none() && !self.backoff.contains_key(key) {
                    continue; // the first sweep tells what Commerce holds
                }
                candidates.push(key.clone());
            }
            for key in settled {
                self.pending.remove(&key);
                let e = self.entry(&key);
                e.dirty_since = None;
                let records = std::mem::take(&mut e.waiting_records);
                for r in records {
                    self.record(
                        &r,
                        RecordState::Settled,
                        "Commerce already holds this quantity",
                    );
                }
            }
            if candidates.is_empty() {
                return;
            }
            candidates.sort_by_cached_key(|k| self.push_priority(k, now));
            let alone_first = candidates
                .first()
                .is_some_and(|k| self.backoff.get(k).is_some_and(|b| b.alone));
            let size = if alone_first {
                1
            } else {
                self.cfg.input_limit.max(1)
            };
            let batch: Vec<StockKey> = candidates
                .into_iter()
                .filter(|k| alone_first || !self.backoff.get(k).is_some_and(|b| b.alone))
                .take(size)
                .collect();
            let items = u32::try_from(batch.len()).unwrap_or(u32::MAX);
            if !self.take_commerce(now, items) {
                return;
            }
            let mut writes = Vec::with_capacity(batch.len());
            let mut keys = Vec::with_capacity(batch.len());
            let id = self.next_id;
            for key in batch {
                let e = self.entry(&key);
                let Some(target) = e.target() else { continue };
                e.sending = Some(target);
                e.busy = Some(Busy::Push { command: id });
                let records = std::mem::take(&mut e.waiting_records);
                let since = e.dirty_since.take();
                writes.push(SourceItemWrite {
                    sku: key.sku.clone(),
                    source: key.source.clone(),
                    quantity: target,
                    status: u8::from(target > Decimal::ZERO),
                });
                for r in &records {
                    self.journal.push(Journal::Record {
                        record: r.clone(),
                        state: RecordState::Sent,
                        detail: format!("push {target} to {key}"),
                    });
                }
                keys.push((key.clone(), target, records, since));
                self.pending.remove(&key);
                if let Some(b) = self.backoff.get_mut(&key) {
                    b.alone = false;
                }
            }
            self.stats.items_written += writes.len() as u64;
            let cmd = self.new_command(
                format!("push:{id}"),
                CommandKind::PushSourceItems { items: writes },
            );
            self.send(cmd, keys, now, out);
        }
    }

    fn poll_verify(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        self.verify.sort_by_key(|v| v.at.as_millis());
        while let Some(task) = self.verify.first() {
            if task.at.as_millis() > now.as_millis() || !self.take_commerce(now, 0) {
                return;
            }
            let task = self.verify.remove(0);
            // A read changes nothing: each read has its own key (the id), so re-reading the
            // same SKU later is not mistaken for a repeat of the first read.
            let id = self.next_id;
            let mut cmd = self.new_command(
                format!("salable:{}:{}:{id}", task.sku, task.stock_id),
                CommandKind::ReadSalable {
                    sku: task.sku,
                    stock_id: task.stock_id,
                },
            );
            cmd.attempt = task.reads + 1;
            self.send(cmd, Vec::new(), now, out);
        }
    }

    fn poll_sweep(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let Some(next) = self.sweep_next else { return };
        if self.sweep_running
            || next.as_millis() > now.as_millis()
            || (!self.pending.is_empty() && !self.learning)
        {
            return;
        }
        if !self.take_commerce(now, 0) {
            return;
        }
        self.sweep_running = true;
        self.sweep_next = self.cfg.sweep.every_ms.map(|ms| now.add_millis(ms));
        let cmd = self.new_command(
            format!("sweep:{}:1", now.as_millis()),
            CommandKind::ReadSourceItems {
                page: 1,
                page_size: self.cfg.sweep.page_size,
            },
        );
        self.send(cmd, Vec::new(), now, out);
    }

    /// A stored answer handed over again while the engine is rebuilt from the store (the
    /// snapshot, then every record stored after it), with the command it answers as the outbox
    /// holds it.
    ///
    /// An engine restored from an older snapshot never decided the commands issued after it,
    /// so their answers name ids it does not know, and [`Input::Result`] would drop them. What
    /// those commands did is a fact the ledger must learn in order, before anything is decided
    /// again: a confirmed push set what Commerce holds, and a created shipment took its units
    /// out of flight and deducted them from the source. Without that, the restored engine
    /// would push the till's figure plus the shipped units (Commerce's older figure differs
    /// from the target) before the shipment, decided again, is answered from the outbox: the
    /// shipped units would come back. Any other answer changes nothing here: the command is
    /// decided again after the restart and answered from the outbox (or sent again under its
    /// idempotency key).
    pub fn replay_result(&mut self, command: Command, outcome: Outcome, now: Timestamp) {
        let id = command.id;
        if self.in_flight.contains_key(&id) {
            self.on_result(id, outcome, now);
            return;
        }
        if !matches!(outcome, Outcome::Ok { .. }) {
            return;
        }
        let keys = match &command.kind {
            CommandKind::PushSourceItems { items } => {
                let keys: Vec<(StockKey, Decimal, Vec<String>, Option<Timestamp>)> = items
                    .iter()
                    .map(|w| StockKey::new(w.sku.clone(), w.source.clone()))
                    .zip(items.iter().map(|w| w.quantity))
                    // A key another command holds is that command's to settle.
                    .filter(|(k, _)| self.ledger.get(k).is_none_or(|e| e.busy.is_none()))
                    .map(|(k, q)| (k, q, Vec::new(), None))
                    .collect();
                if keys.is_empty() {
                    return;
                }
                keys
            }
            CommandKind::CreateShipment { order, source, .. } => {
                // Only the parcel the order is waiting to ship (its key names the parcel).
                let waiting = self.orders.get(order).is_some_and(|f| {
                    f.source.as_ref() == Some(source)
                        && matches!(f.shipment, ShipmentState::Pending { .. })
                        && command.idempotency_key
                            == format!("ship:{order}:{source}:{}", f.shipments + 1)
                });
                if !waiting {
                    return;
                }
                Vec::new()
            }
            _ => return,
        };
        self.in_flight.insert(
            id,
            InFlightCommand {
                command,
                sent_at: now,
                keys,
            },
        );
        self.on_result(id, outcome, now);
    }

    /// A command the outbox holds as sent but never answered, handed over while the engine is
    /// rebuilt from the store, after every record stored after the snapshot (and before
    /// [`Engine::resume`]).
    ///
    /// The service may have died after Commerce executed it but before its answer was stored.
    /// For a shipment that matters: Magento has deducted the shipped units from the source,
    /// but the restored engine still counts them in flight, and if it decided a push for the
    /// same source item before the shipment decided again is answered (say a walk-in sale
    /// made the till's figure plus the units in flight differ from what Commerce held), the
    /// push would write the shipped units back, and the shipment, answered from what Commerce
    /// already holds, would not take them out again. So the shipment the order is waiting to
    /// make (its key names the parcel) is adopted as in flight, holding its source items like
    /// a sent shipment: `resume` sends it again under its idempotency key (Commerce acts once)
    /// and no push for those items is decided until it is answered. Any other command changes
    /// nothing here: pushes are absolute and decided again, the rest acts on orders, not on
    /// quantities.
    pub fn replay_open(&mut self, command: Command, now: Timestamp) {
        let id = command.id;
        if self.in_flight.contains_key(&id) {
            return;
        }
        let CommandKind::CreateShipment { order, source, .. } = &command.kind else {
            return;
        };
        let Some(flow) = self.orders.get(order) else {
            return;
        };
        let ShipmentState::Pending {
            lines,
            command: None,
            ..
        } = &flow.shipment
        else {
            return; // not waiting, or another command holds the parcel
        };
        if flow.source.as_ref() != Some(source)
            || command.idempotency_key != format!("ship:{order}:{source}:{}", flow.shipments + 1)
        {
            return;
        }
        let keys: Vec<StockKey> = lines
            .iter()
            .map(|(s, _)| StockKey::new(s.clone(), source.clone()))
            .collect();
        if keys.iter().any(|k| {
            self.ledger
                .get(k)
                .is_some_and(|e| matches!(e.busy, Some(Busy::Shipment { .. })))
        }) {
            return; // one mutation per source item: another shipment holds it
        }
        let order = order.clone();
        for k in &keys {
            // A push still in flight from the snapshot is released by `resume`.
            self.entry(k).busy = Some(Busy::Shipment { command: id });
        }
        if let Some(f) = self.orders.get_mut(&order)
            && let ShipmentState::Pending { command, .. } = &mut f.shipment
        {
            *command = Some(id);
        }
        self.in_flight.insert(
            id,
            InFlightCommand {
                command,
                sent_at: now,
                keys: Vec::new(),
            },
        );
    }

    /// After a restart: the commands that were in flight when the service stopped are sent again
    /// (their idempotency keys make that safe), and a reconciliation sweep is requested.
    pub fn resume(&mut self, now: Timestamp) {
        let in_flight = std::mem::take(&mut self.in_flight);
        for (_, c) in in_flight {
            let mut cmd = c.command;
            if let CommandKind::PushSourceItems { .. } = cmd.kind {
                // Absolute writes: release the keys; the next push carries the newest target.
                for (key, _, records, since) in c.keys {
                    let e = self.entry(&key);
                    // A shipment adopted by `replay_open` holds the key now.
                    if e.busy == Some(Busy::Push { command: cmd.id }) {
                        e.busy = None;
                    }
                    e.sending = None;
                    e.commerce = None;
                    e.unknown_after_send = false;
                    e.dirty_since = since.or(e.dirty_since);
                    e.waiting_records.extend(records);
                    self.pending.insert(key);
                }
                continue;
            }
            cmd.attempt += 1;
            self.retries.push(Retry {
                at: now,
                command: cmd,
            });
        }
        self.sweep_next = Some(now);
        self.learning = true;
    }

    /// Start a reconciliation sweep at the next poll (e.g. `tillbridge audit`, or at start).
    pub fn request_sweep(&mut self, now: Timestamp) {
        self.sweep_next = Some(now);
    }

    /// When polling can next produce work, if nothing else happens.
    pub fn next_wakeup(&mut self, now: Timestamp) -> Option<Timestamp> {
        let mut at: Option<i64> = None;
        let mut consider = |t: i64| at = Some(at.map_or(t, |a| a.min(t)));
        for r in &self.retries {
            consider(r.at.as_millis());
        }
        for v in &self.verify {
            consider(v.at.as_millis());
        }
        for b in self.backoff.values() {
            consider(b.at.as_millis());
        }
        if let Some(s) = self.sweep_next {
            consider(s.as_millis());
        }
        if !self.pending.is_empty() || !self.commerce_queue.is_empty() {
            consider(self.budget.ready_at(now, 1).as_millis());
        }
        at.map(|t| Timestamp::from_millis(t.max(now.as_millis())))
    }
}

/// Units of an order Commerce still expects to ship that no store has handed over: what it
/// still reserves ([`super::orders::WebOrder::open_units`]) less the parcels handed over whose
/// shipment is queued or in progress.
fn units_left_after_handovers(flow: &OrderFlow) -> Vec<(Sku, Decimal)> {
    let mut left: Vec<(Sku, Decimal)> = Vec::new();
    for l in &flow.order.lines {
        if !left.iter().any(|(s, _)| *s == l.sku) {
            left.push((l.sku.clone(), flow.order.open_units(&l.sku)));
        }
    }
    let mut handed: Vec<&(Sku, Decimal)> = flow.handovers.iter().flat_map(|p| p.0.iter()).collect();
    if let ShipmentState::Pending { lines, .. } = &flow.shipment {
        handed.extend(lines.iter());
    }
    for (sku, q) in handed {
        if let Some((_, open)) = left.iter_mut().find(|(s, _)| s == sku) {
            *open = (*open - *q).max(Decimal::ZERO);
        }
    }
    left.retain(|(_, q)| *q > Decimal::ZERO);
    left
}
