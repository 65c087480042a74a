//! A deterministic simulator: the sync engine (`core::sync`) against Magento's MSI model
//! (`core::inventory`, the same model the Commerce emulator serves) and a small till model,
//! under a seeded clock and seeded faults.
//!
//! Commands go to Commerce through the model's REST dispatch (the routes and bodies the
//! Magento client sends), with faults injected on the way: refused before applying, throttled,
//! or applied with the answer lost. Like the real client, a retry of a command whose
//! idempotency key was already applied is answered from what Commerce already holds instead
//! of being applied twice. After every step the invariants of the stock contract can be
//! checked ([`Sim::violations`]); a failing run prints its seed, and `TILLBRIDGE_SIM_SEED`
//! replays it.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::inventory as mage;
use tillbridge_core::inventory::webapi::{RestRequest, dispatch};
use tillbridge_core::pos::{FulfilmentState, Sku, SourceCode, Timestamp};
use tillbridge_core::sync::{
    Command, CommandKind, Delivery, Engine, EngineConfig, Input, Outcome, Output, RoutingConfig,
    SourceRoute, SweepConfig, WebOrder, WebOrderLine,
};

/// The website and stock every simulated store sells through.
pub const WEBSITE: &str = "uk";
pub const STOCK: u32 = 2;

/// What can go wrong between Tillbridge and Commerce, in per-mille of Commerce calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Refused with a 503 before anything was applied.
    pub unavailable: u32,
    /// Answered 429 (throttled) before anything was applied.
    pub throttled: u32,
    /// Applied, but the answer was lost (a timeout on our side).
    pub lost_answer: u32,
}

/// One store of the simulated retailer.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub source: &'static str,
    pub priority: u32,
    pub fulfils: bool,
}

/// A small deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap_or_else(|e| panic!("sku {s}: {e}"))
}

fn src(s: &str) -> SourceCode {
    SourceCode::parse(s).unwrap_or_else(|e| panic!("source {s}: {e}"))
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::Number(n) => n.to_string().parse().unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    pub seed: u64,
    pub now: Timestamp,
    pub engine: Engine,
    pub commerce: mage::Inventory,
    /// The tills: on-hand per (SKU, source).
    pub pos: BTreeMap<(Sku, SourceCode), Decimal>,
    /// POS fulfilments: order → (source, state).
    pub fulfilments: BTreeMap<String, (SourceCode, FulfilmentState)>,
    /// Customer comments written to Commerce orders.
    pub comments: Vec<(String, String)>,
    /// Commerce's source quantity of each shipped (SKU, source) right after each shipment:
    /// (order, SKU, source, quantity).
    pub after_shipments: Vec<(String, Sku, SourceCode, Decimal)>,
    pub faults: Faults,
    rng: Rng,
    deliveries: Vec<(i64, u64, Input)>,
    seq: u64,
    records: u64,
    deliveries_of: BTreeMap<String, Delivery>,
    applied: BTreeSet<String>,
    /// What the service would have stored: every input handed to the engine since the last
    /// snapshot, and every command it executed (the outbox), for a restart from that snapshot.
    inputs_since_snapshot: Vec<(Input, Timestamp)>,
    outbox: BTreeMap<u64, Command>,
    /// Commands whose answer the service stored (the rest of the outbox stays `sent`).
    answered: BTreeSet<u64>,
    snapshot: Option<String>,
    /// Every source-item quantity Commerce accepted, in order: (SKU, source, quantity).
    pub writes: Vec<(Sku, SourceCode, Decimal)>,
    pub commerce_calls: u64,
    pub faults_injected: u64,
    /// What happened, in order (printed when an invariant fails).
    pub log: Vec<String>,
    /// Magento's cron runs its queue consumers (reservations update, salability status,
    /// source items cleanup). Switch off to model a store whose consumers are stuck.
    pub consumers_running: bool,
    cron_at: i64,
}

impl Sim {
    /// A retailer with `stores` selling `skus`, each store holding `on_hand` of every SKU,
    /// Commerce seeded with the same figures.
    pub fn new(seed: u64, stores: &[StoreSpec], skus: &[&str], on_hand: Decimal) -> Self {
        let seed = std::env::var("TILLBRIDGE_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(seed);
        let snapshot = json!({
            "websites": [WEBSITE],
            "sources": stores.iter().map(|s| json!({"source_code": s.source})).collect::<Vec<_>>(),
            "stocks": [{"stock_id": STOCK, "websites": [WEBSITE]}],
            "links": stores.iter().map(|s| json!({"stock_id": STOCK, "source_code": s.source, "priority": s.priority})).collect::<Vec<_>>(),
            "products": skus.iter().map(|s| json!({"sku": s})).collect::<Vec<_>>(),
            "source_items": stores.iter().flat_map(|st| skus.iter().map(move |s| json!({
                "source_code": st.source, "sku": s, "quantity": on_hand.to_string().parse::<f64>().unwrap_or(0.0), "status": 1
            }))).collect::<Vec<_>>(),
        });
        let snapshot: mage::preview::Snapshot =
            serde_json::from_value(snapshot).unwrap_or_else(|e| panic!("snapshot: {e}"));
        let commerce = mage::Inventory::from_snapshot(&snapshot)
            .unwrap_or_else(|e| panic!("snapshot refused: {e:?}"));
        let routing = RoutingConfig {
            sources: stores
                .iter()
                .map(|s| SourceRoute {
                    source: src(s.source),
                    priority: s.priority,
                    stock_ids: vec![STOCK],
                    pos_managed: true,
                    fulfils: s.fulfils,
                    name: format!("the {} store", s.source),
                })
                .collect(),
        };
        let now = Timestamp::from_millis(1_700_000_000_000);
        let cfg = EngineConfig {
            routing,
            sweep: SweepConfig {
                every_ms: None,
                page_size: 500,
            },
            ..EngineConfig::default()
        };
        let mut pos = BTreeMap::new();
        for st in stores {
            for s in skus {
                pos.insert((sku(s), src(st.source)), on_hand);
            }
        }
        let mut sim = Self {
            seed,
            now,
            engine: Engine::new(cfg, now),
            commerce,
            pos,
            fulfilments: BTreeMap::new(),
            comments: Vec::new(),
            after_shipments: Vec::new(),
            faults: Faults::default(),
            rng: Rng::new(seed),
            deliveries: Vec::new(),
            seq: 0,
            records: 0,
            deliveries_of: BTreeMap::new(),
            applied: BTreeSet::new(),
            inputs_since_snapshot: Vec::new(),
            outbox: BTreeMap::new(),
            answered: BTreeSet::new(),
            snapshot: None,
            writes: Vec::new(),
            commerce_calls: 0,
            faults_injected: 0,
            log: Vec::new(),
            consumers_running: true,
            cron_at: 0,
        };
        // The tills report what they hold; the engine pushes it (equal to Commerce's figures).
        let keys: Vec<(Sku, SourceCode)> = sim.pos.keys().cloned().collect();
        for (s, so) in keys {
            sim.observe(&s, &so);
        }
        sim
    }

    fn record(&mut self, kind: &str) -> String {
        self.records += 1;
        format!("{kind}:{}", self.records)
    }

    fn mage_ts(&self) -> mage::Timestamp {
        let secs = (self.now.as_millis() - 1_700_000_000_000).max(0) / 1000;
        mage::Timestamp::from_offset_seconds(u64::try_from(secs).unwrap_or(0))
    }

    fn rest(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let now = self.mage_ts();
        let resp = dispatch(
            &mut self.commerce,
            &RestRequest {
                method: method.into(),
                path: path.into(),
                body,
            },
            &now,
        );
        (resp.status, resp.body)
    }

    fn note(&mut self, what: String) {
        self.log.push(format!(
            "{:>8} {what}",
            self.now.as_millis() - 1_700_000_000_000
        ));
    }

    /// The till's current figure goes to the engine.
    pub fn observe(&mut self, s: &Sku, so: &SourceCode) {
        let on_hand = self
            .pos
            .get(&(s.clone(), so.clone()))
            .copied()
            .unwrap_or_default();
        self.note(format!("till {s}@{so} = {on_hand}"));
        let record = self.record("pos-stock");
        self.feed(
            Input::PosStock {
                record,
                sku: s.clone(),
                source: so.clone(),
                on_hand,
                as_of: self.now,
            },
            self.now,
        );
    }

    /// An in-store sale (negative units: a return to the shelf).
    pub fn pos_sale(&mut self, s: &str, so: &str, units: Decimal) {
        let (s, so) = (sku(s), src(so));
        self.note(format!("SALE {units} {s}@{so}"));
        *self.pos.entry((s.clone(), so.clone())).or_default() -= units;
        let record = self.record("pos-sale");
        self.feed(
            Input::PosSale {
                record,
                sku: s.clone(),
                source: so.clone(),
                units,
                at: self.now,
            },
            self.now,
        );
        self.observe(&s, &so);
    }

    /// A storefront checkout in Commerce (salability check and `order_placed` reservations);
    /// then the order reaches the engine by polling.
    pub fn web_order(
        &mut self,
        increment: &str,
        delivery: Delivery,
        lines: &[(&str, i64)],
    ) -> Result<(), String> {
        self.note(format!("WEB ORDER {increment} {delivery:?} {lines:?}"));
        let req = mage::PlaceOrderRequest {
            increment_id: Some(
                mage::OrderIncrementId::parse(increment).map_err(|e| format!("{e:?}"))?,
            ),
            website: mage::WebsiteCode::parse(WEBSITE).map_err(|e| format!("{e:?}"))?,
            store: None,
            lines: lines
                .iter()
                .map(|(s, q)| mage::OrderLine::Product {
                    sku: mage::Sku::parse(s).unwrap_or_else(|e| panic!("{e:?}")),
                    qty: Decimal::from(*q),
                })
                .collect(),
        };
        let now = self.mage_ts();
        self.commerce
            .place_order(&req, &now)
            .map_err(|e| e.rest_body().to_string())?;
        self.deliveries_of.insert(increment.to_owned(), delivery);
        self.poll_order(increment);
        Ok(())
    }

    /// What the order poller sees.
    pub fn web_order_snapshot(&self, increment: &str) -> Option<WebOrder> {
        let o = self.commerce.order_by_increment_id(increment)?;
        let state = serde_json::to_value(o.state).ok()?.as_str()?.to_owned();
        Some(WebOrder {
            increment_id: increment.to_owned(),
            entity_id: o.entity_id.0,
            stock_id: STOCK,
            state,
            updated_at: self.now,
            delivery: self
                .deliveries_of
                .get(increment)
                .cloned()
                .unwrap_or(Delivery::Ship),
            lines: o
                .items
                .iter()
                .map(|i| WebOrderLine {
                    item_id: i.item_id,
                    sku: sku(&i.sku),
                    qty_ordered: i.qty_ordered,
                    qty_shipped: i.qty_shipped,
                    qty_canceled: i.qty_canceled,
                    qty_refunded: i.qty_refunded,
                })
                .collect(),
        })
    }

    fn poll_order(&mut self, increment: &str) {
        if let Some(order) = self.web_order_snapshot(increment) {
            let record = self.record("commerce-order");
            self.feed(Input::CommerceOrder { record, order }, self.now);
        }
    }

    /// The store moves its fulfilment. At `Completed` the till deducts the goods.
    pub fn store_moves(&mut self, increment: &str, state: FulfilmentState, tracking: Option<&str>) {
        self.note(format!("STORE {increment} -> {state:?}"));
        let Some((source, _)) = self.fulfilments.get(increment).cloned() else {
            panic!("no fulfilment for {increment}")
        };
        self.fulfilments
            .insert(increment.to_owned(), (source.clone(), state));
        if state == FulfilmentState::Completed
            && let Some(order) = self.web_order_snapshot(increment)
        {
            for l in &order.lines {
                *self.pos.entry((l.sku.clone(), source.clone())).or_default() -= l.open();
            }
        }
        let record = self.record("fulfilment");
        self.feed(
            Input::Fulfilment {
                record,
                order: increment.to_owned(),
                state,
                at: self.now,
                tracking: tracking.map(str::to_owned),
                lines: None,
            },
            self.now,
        );
        if state == FulfilmentState::Completed
            && let Some(order) = self.web_order_snapshot(increment)
        {
            for l in order.lines {
                self.observe(&l.sku, &source);
            }
        }
    }

    /// The customer cancels in Commerce.
    pub fn commerce_cancel(&mut self, increment: &str) {
        self.note(format!("CANCEL {increment}"));
        let id = self
            .commerce
            .order_by_increment_id(increment)
            .map(|o| o.entity_id.0)
            .unwrap_or_else(|| panic!("no order {increment}"));
        let (status, body) = self.rest("POST", &format!("/V1/orders/{id}/cancel"), None);
        assert_eq!((status, &body), (200, &json!(true)), "cancel {increment}");
        self.poll_order(increment);
    }

    /// The customer brings the goods back to a store. With `restock` the till books them back on
    /// the shelf; without, they are written off (damaged). Either way Commerce refunds them.
    pub fn store_return(
        &mut self,
        increment: &str,
        so: &str,
        lines: &[(&str, i64)],
        restock: bool,
    ) {
        self.note(format!(
            "RETURN {increment} at {so} {lines:?} restock={restock}"
        ));
        let so = src(so);
        if restock {
            for (s, q) in lines {
                *self.pos.entry((sku(s), so.clone())).or_default() += Decimal::from(*q);
            }
        }
        let record = self.record("pos-return");
        let lines: Vec<(Sku, Decimal)> = lines
            .iter()
            .map(|(s, q)| (sku(s), Decimal::from(*q)))
            .collect();
        self.feed(
            Input::PosReturn {
                record,
                order: increment.to_owned(),
                lines: lines.clone(),
                at: self.now,
            },
            self.now,
        );
        if restock {
            for (s, _) in lines {
                self.observe(&s, &so);
            }
        }
    }

    /// The payment is captured in Commerce (an invoice for everything not invoiced yet).
    pub fn invoice(&mut self, increment: &str) {
        self.note(format!("INVOICE {increment}"));
        let id = self
            .commerce
            .order_by_increment_id(increment)
            .map(|o| o.entity_id.0)
            .unwrap_or_else(|| panic!("no order {increment}"));
        let (status, b) = self.rest(
            "POST",
            &format!("/V1/order/{id}/invoice"),
            Some(json!({"capture": true})),
        );
        assert_eq!(status, 200, "invoice {increment}: {b}");
        self.poll_order(increment);
    }

    /// The back office refunds order lines in Commerce (a credit memo through REST), with or
    /// without "return to stock"; the till is not involved.
    pub fn commerce_refund(
        &mut self,
        increment: &str,
        lines: &[(&str, i64)],
        return_to_stock: bool,
    ) {
        self.note(format!(
            "COMMERCE REFUND {increment} {lines:?} return_to_stock={return_to_stock}"
        ));
        let order = self
            .commerce
            .order_by_increment_id(increment)
            .cloned()
            .unwrap_or_else(|| panic!("no order {increment}"));
        let item = |s: &str| {
            order
                .items
                .iter()
                .find(|i| i.sku == s)
                .map(|i| i.item_id)
                .unwrap_or_else(|| panic!("no {s} on {increment}"))
        };
        let items: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({"order_item_id": item(s), "qty": q}))
            .collect();
        let back: Vec<u64> = if return_to_stock {
            lines.iter().map(|(s, _)| item(s)).collect()
        } else {
            Vec::new()
        };
        let body = json!({"items": items, "arguments": {"extension_attributes": {"return_to_stock_items": back}}});
        let (status, b) = self.rest(
            "POST",
            &format!("/V1/order/{}/refund", order.entity_id.0),
            Some(body),
        );
        assert_eq!(status, 200, "refund {increment}: {b}");
        self.poll_order(increment);
    }

    /// The till deducts an order's open units and its new figure reaches the engine (and
    /// Commerce) before the news that the order was handed over, as when the stock feed is
    /// read more often than fulfilments; then the hand-over arrives.
    pub fn store_ships_figure_first(&mut self, increment: &str) {
        let Some((source, _)) = self.fulfilments.get(increment).cloned() else {
            panic!("no fulfilment for {increment}")
        };
        let Some(order) = self.web_order_snapshot(increment) else {
            panic!("no order {increment}")
        };
        self.note(format!("STORE {increment} ships; its figure arrives first"));
        for l in &order.lines {
            *self.pos.entry((l.sku.clone(), source.clone())).or_default() -= l.open();
        }
        for l in &order.lines {
            self.observe(&l.sku, &source);
        }
        let handed_at = self.now;
        self.run(60_000);
        self.fulfilments.insert(
            increment.to_owned(),
            (source.clone(), FulfilmentState::Completed),
        );
        let record = self.record("fulfilment");
        self.feed(
            Input::Fulfilment {
                record,
                order: increment.to_owned(),
                state: FulfilmentState::Completed,
                at: handed_at,
                tracking: None,
                lines: None,
            },
            self.now,
        );
    }

    /// The store hands over part of an order (a parcel): the till deducts those units.
    pub fn store_hands_over(&mut self, increment: &str, lines: &[(&str, i64)]) {
        let Some((source, _)) = self.fulfilments.get(increment).cloned() else {
            panic!("no fulfilment for {increment}")
        };
        self.fulfilments.insert(
            increment.to_owned(),
            (source.clone(), FulfilmentState::Completed),
        );
        let lines: Vec<(Sku, Decimal)> = lines
            .iter()
            .map(|(s, q)| (sku(s), Decimal::from(*q)))
            .collect();
        for (s, q) in &lines {
            *self.pos.entry((s.clone(), source.clone())).or_default() -= *q;
        }
        let record = self.record("fulfilment");
        self.feed(
            Input::Fulfilment {
                record,
                order: increment.to_owned(),
                state: FulfilmentState::Completed,
                at: self.now,
                tracking: None,
                lines: Some(lines.clone()),
            },
            self.now,
        );
        for (s, _) in lines {
            self.observe(&s, &source);
        }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let i = usize::try_from(self.rng.below(items.len() as u64)).unwrap_or(0);
        items.get(i).cloned()
    }

    /// A trading day of `events` random events: till sales and restocks, web orders (shipped
    /// and click-and-collect), stores moving fulfilments (or declining without stock),
    /// cancellations and returns, with the engine running in between.
    pub fn random_day(&mut self, events: usize) {
        let keys: Vec<(Sku, SourceCode)> = self.pos.keys().cloned().collect();
        let skus: Vec<Sku> = keys
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let stores: Vec<SourceCode> = self
            .engine
            .config()
            .routing
            .sources
            .iter()
            .filter(|s| s.fulfils)
            .map(|s| s.source.clone())
            .collect();
        let mut next_order = 200_000_000u64;
        for _ in 0..events {
            match self.rng.below(10) {
                0..=2 => {
                    if let Some((s, so)) = self.pick(&keys) {
                        let on_hand = self.pos[&(s.clone(), so.clone())];
                        if on_hand > Decimal::ZERO {
                            self.pos_sale(s.as_str(), so.as_str(), Decimal::ONE);
                        }
                    }
                }
                3 => {
                    if let Some((s, so)) = self.pick(&keys) {
                        let units = Decimal::from(1 + self.rng.below(4));
                        self.pos_sale(s.as_str(), so.as_str(), -units);
                    }
                }
                4 | 5 => {
                    next_order += 1;
                    let inc = next_order.to_string();
                    let delivery = if self.rng.below(3) == 0 {
                        match self.pick(&stores) {
                            Some(st) => Delivery::Pickup { store: st },
                            None => Delivery::Ship,
                        }
                    } else {
                        Delivery::Ship
                    };
                    let n = 1 + self.rng.below(2);
                    let mut lines: Vec<(String, i64)> = Vec::new();
                    for _ in 0..n {
                        if let Some(s) = self.pick(&skus)
                            && !lines.iter().any(|(x, _)| x == s.as_str())
                        {
                            lines.push((
                                s.to_string(),
                                1 + i64::try_from(self.rng.below(2)).unwrap_or(0),
                            ));
                        }
                    }
                    let lines_ref: Vec<(&str, i64)> =
                        lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
                    let _ = self.web_order(&inc, delivery, &lines_ref);
                }
                6 | 7 => {
                    let open: Vec<String> = self
                        .fulfilments
                        .iter()
                        .filter(|(_, (_, st))| !st.is_terminal())
                        .map(|(o, _)| o.clone())
                        .collect();
                    if let Some(o) = self.pick(&open) {
                        self.advance_fulfilment(&o);
                    }
                }
                8 => {
                    let cancellable: Vec<String> = self
                        .fulfilments
                        .iter()
                        .filter(|(_, (_, st))| {
                            matches!(
                                st,
                                FulfilmentState::Requested
                                    | FulfilmentState::Accepted
                                    | FulfilmentState::Ready
                            )
                        })
                        .map(|(o, _)| o.clone())
                        .collect();
                    if let Some(o) = self.pick(&cancellable) {
                        self.commerce_cancel(&o);
                    }
                }
                _ => {
                    let shipped: Vec<(String, SourceCode)> = self
                        .fulfilments
                        .iter()
                        .filter(|(_, (_, st))| *st == FulfilmentState::Completed)
                        .map(|(o, (so, _))| (o.clone(), so.clone()))
                        .collect();
                    if let Some((o, so)) = self.pick(&shipped)
                        && let Some(order) = self.web_order_snapshot(&o)
                        && let Some(line) =
                            order.lines.iter().find(|l| l.qty_shipped > l.qty_refunded)
                    {
                        let restock = self.rng.below(2) == 0;
                        let s = line.sku.to_string();
                        self.store_return(&o, so.as_str(), &[(s.as_str(), 1)], restock);
                    }
                }
            }
            if self.rng.below(30) == 0 {
                self.crash_and_restart_mid_flight();
            }
            let pause = i64::try_from(self.rng.below(5_000)).unwrap_or(0);
            self.run(pause);
        }
    }

    /// The store's next move on a fulfilment: accept, then hand over if the till holds the
    /// goods, else decline.
    pub fn advance_fulfilment(&mut self, order: &str) {
        let Some((source, state)) = self.fulfilments.get(order).cloned() else {
            return;
        };
        let Some(snap) = self.web_order_snapshot(order) else {
            return;
        };
        match state {
            FulfilmentState::Requested => self.store_moves(order, FulfilmentState::Accepted, None),
            FulfilmentState::Accepted | FulfilmentState::Ready => {
                let has_goods = snap.lines.iter().all(|l| {
                    self.pos
                        .get(&(l.sku.clone(), source.clone()))
                        .copied()
                        .unwrap_or_default()
                        >= l.open()
                });
                if has_goods && !snap.is_canceled() {
                    self.store_moves(order, FulfilmentState::Completed, None);
                } else {
                    self.store_moves(order, FulfilmentState::Rejected, None);
                }
            }
            _ => {}
        }
    }

    /// End of the day: every store settles its open fulfilments.
    pub fn finish_open_fulfilments(&mut self) {
        for _ in 0..4 {
            let open: Vec<String> = self
                .fulfilments
                .iter()
                .filter(|(_, (_, st))| !st.is_terminal())
                .map(|(o, _)| o.clone())
                .collect();
            for o in open {
                self.advance_fulfilment(&o);
                self.run(10_000);
            }
        }
    }

    fn outcome(&mut self, status: u16, body: &Value) -> Outcome {
        let latency_ms = 20 + i64::try_from(self.rng.below(80)).unwrap_or(0);
        match status {
            200 => Outcome::Ok { latency_ms },
            429 => Outcome::Retriable {
                reason: "429 Too Many Requests".into(),
                throttled: true,
            },
            500..=599 => Outcome::Retriable {
                reason: format!("{status}"),
                throttled: true,
            },
            _ => Outcome::Permanent {
                status,
                message: body
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                skus: Vec::new(),
            },
        }
    }

    /// Execute one command; returns the inputs the answer produces.
    fn execute(&mut self, cmd: &Command) -> Vec<Input> {
        self.outbox.entry(cmd.id).or_insert_with(|| cmd.clone());
        let inputs = self.execute_inner(cmd);
        let answer = inputs.first().map(|i| match i {
            Input::Result { outcome, .. } => format!("{outcome:?}"),
            other => format!("{other:?}").chars().take(120).collect(),
        });
        self.note(
            format!(
                "#{} {} {:?} -> {}",
                cmd.id,
                cmd.idempotency_key,
                cmd.kind,
                answer.unwrap_or_default()
            )
            .chars()
            .take(400)
            .collect(),
        );
        inputs
    }

    fn execute_inner(&mut self, cmd: &Command) -> Vec<Input> {
        let id = cmd.id;
        if !cmd.kind.to_commerce() {
            match &cmd.kind {
                CommandKind::CreateFulfilment { order, source, .. } => {
                    self.fulfilments
                        .insert(order.clone(), (source.clone(), FulfilmentState::Requested));
                }
                CommandKind::CancelFulfilment { order, source } => {
                    self.fulfilments
                        .insert(order.clone(), (source.clone(), FulfilmentState::Cancelled));
                }
                _ => {}
            }
            return vec![Input::Result {
                command: id,
                outcome: Outcome::Ok { latency_ms: 10 },
            }];
        }
        self.commerce_calls += 1;
        // Faults before anything is applied.
        if self.rng.per_mille(self.faults.unavailable) {
            self.faults_injected += 1;
            return vec![Input::Result {
                command: id,
                outcome: Outcome::Retriable {
                    reason: "503 Service Unavailable".into(),
                    throttled: true,
                },
            }];
        }
        if self.rng.per_mille(self.faults.throttled) {
            self.faults_injected += 1;
            return vec![Input::Result {
                command: id,
                outcome: Outcome::Retriable {
                    reason: "429 Too Many Requests".into(),
                    throttled: true,
                },
            }];
        }
        let lose_answer = self.rng.per_mille(self.faults.lost_answer);
        // The client's idempotent retry: a key already applied is not applied again.
        let already = self.applied.contains(&cmd.idempotency_key);
        let mut follow = Vec::new();
        let result = match &cmd.kind {
            CommandKind::PushSourceItems { items } => {
                let body = json!({"sourceItems": items.iter().map(|i| json!({
                    "sku": i.sku.as_str(), "source_code": i.source.as_str(),
                    "quantity": i.quantity.to_string().parse::<f64>().unwrap_or(0.0), "status": i.status
                })).collect::<Vec<_>>()});
                let (st, b) = self.rest("POST", "/V1/inventory/source-items", Some(body));
                if st == 200 {
                    self.writes.extend(
                        items
                            .iter()
                            .map(|i| (i.sku.clone(), i.source.clone(), i.quantity)),
                    );
                }
                self.outcome(st, &b)
            }
            CommandKind::CreateShipment {
                order,
                entity_id,
                source,
                items,
                comment,
                ..
            } => {
                let (st, b) = if already {
                    (200, json!(0))
                } else {
                    let body = json!({
                        "items": items.iter().map(|(i, q)| json!({"order_item_id": i, "qty": q.to_string().parse::<f64>().unwrap_or(0.0)})).collect::<Vec<_>>(),
                        "notify": true, "appendComment": true, "comment": {"comment": comment, "is_visible_on_front": 1},
                        "arguments": {"extension_attributes": {"source_code": source.as_str()}}
                    });
                    self.rest("POST", &format!("/V1/order/{entity_id}/ship"), Some(body))
                };
                if st == 200 && !already {
                    self.comments.push((order.clone(), comment.clone()));
                    let skus: Vec<Sku> = self
                        .commerce
                        .order_by_increment_id(order)
                        .map(|o| {
                            o.items
                                .iter()
                                .filter(|i| items.iter().any(|(id, _)| *id == i.item_id))
                                .map(|i| sku(&i.sku))
                                .collect()
                        })
                        .unwrap_or_default();
                    for s in skus {
                        let q = self.commerce_qty(s.as_str(), source.as_str());
                        self.after_shipments
                            .push((order.clone(), s, source.clone(), q));
                    }
                    // The card payment is captured when the goods leave (authorise at checkout,
                    // capture on dispatch): invoice what was shipped.
                    let body = json!({"capture": true, "items": items.iter().map(|(i, q)| json!({"order_item_id": i, "qty": q.to_string().parse::<f64>().unwrap_or(0.0)})).collect::<Vec<_>>()});
                    let (ist, ib) = self.rest(
                        "POST",
                        &format!("/V1/order/{entity_id}/invoice"),
                        Some(body),
                    );
                    assert_eq!(ist, 200, "capture on dispatch for {order}: {ib}");
                }
                follow.push(order.clone());
                self.outcome(st, &b)
            }
            CommandKind::CancelOrder {
                order,
                entity_id,
                comment,
            } => {
                let (st, b) = if already {
                    (200, json!(true))
                } else {
                    self.rest("POST", &format!("/V1/orders/{entity_id}/cancel"), None)
                };
                if st == 200 {
                    self.comments.push((order.clone(), comment.clone()));
                }
                follow.push(order.clone());
                self.outcome(st, &b)
            }
            CommandKind::CreditMemo {
                order,
                entity_id,
                items,
                comment,
            } => {
                let (st, b) = if already {
                    (200, json!(0))
                } else {
                    let body = json!({
                        "items": items.iter().map(|(i, q)| json!({"order_item_id": i, "qty": q.to_string().parse::<f64>().unwrap_or(0.0)})).collect::<Vec<_>>(),
                        "notify": true, "arguments": {"extension_attributes": {"return_to_stock_items": []}}
                    });
                    self.rest("POST", &format!("/V1/order/{entity_id}/refund"), Some(body))
                };
                if st == 200 {
                    self.comments.push((order.clone(), comment.clone()));
                }
                follow.push(order.clone());
                self.outcome(st, &b)
            }
            CommandKind::OrderComment { order, comment, .. } => {
                if !already {
                    self.comments.push((order.clone(), comment.clone()));
                }
                Outcome::Ok { latency_ms: 30 }
            }
            CommandKind::ReadSalable { sku: s, stock_id } => {
                let (st, b) = self.rest(
                    "GET",
                    &format!("/V1/inventory/get-product-salable-quantity/{s}/{stock_id}"),
                    None,
                );
                let salable = (st == 200).then(|| dec(&b));
                return vec![Input::Salable {
                    command: id,
                    sku: s.clone(),
                    stock_id: *stock_id,
                    salable,
                }];
            }
            CommandKind::ReadSourceItems { page, page_size } => {
                let (_, b) = self.rest("GET", &format!("/V1/inventory/source-items?searchCriteria[pageSize]={page_size}&searchCriteria[currentPage]={page}"), None);
                let items: Vec<(Sku, SourceCode, Decimal)> = b["items"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|i| {
                                (
                                    sku(i["sku"].as_str().unwrap_or("?")),
                                    src(i["source_code"].as_str().unwrap_or("?")),
                                    dec(&i["quantity"]),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let total = b["total_count"].as_u64().unwrap_or(0);
                let last_page = u64::from(*page) * u64::from(*page_size) >= total;
                return vec![Input::SourceItems {
                    command: id,
                    items,
                    last_page,
                }];
            }
            CommandKind::CreateFulfilment { .. } | CommandKind::CancelFulfilment { .. } => {
                Outcome::Ok { latency_ms: 10 }
            }
        };
        if matches!(result, Outcome::Ok { .. }) {
            self.applied.insert(cmd.idempotency_key.clone());
        }
        let mut inputs = Vec::new();
        if lose_answer && matches!(result, Outcome::Ok { .. }) {
            self.faults_injected += 1;
            inputs.push(Input::Result {
                command: id,
                outcome: Outcome::Retriable {
                    reason: "timeout (applied, answer lost)".into(),
                    throttled: false,
                },
            });
        } else {
            inputs.push(Input::Result {
                command: id,
                outcome: result,
            });
        }
        for order in follow {
            if let Some(o) = self.web_order_snapshot(&order) {
                self.records += 1;
                inputs.push(Input::CommerceOrder {
                    record: format!("commerce-order:{}", self.records),
                    order: o,
                });
            }
        }
        inputs
    }

    /// The service dies with commands in flight: their answers are lost, and a new engine is
    /// restored from a snapshot of the old one (the service snapshots it and replays what came
    /// after). Commands already applied in Commerce are sent again under the same idempotency
    /// keys; Commerce must not act twice.
    pub fn crash_and_restart_mid_flight(&mut self) {
        // Execute the next round of commands but lose every answer.
        for out in self.engine.poll(self.now) {
            if let Output::Command(cmd) = out {
                let _ = self.execute(&cmd);
            }
        }
        self.deliveries.clear();
        let json = serde_json::to_string(&self.engine).unwrap_or_else(|e| panic!("snapshot: {e}"));
        let mut engine: Engine =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("restore: {e}"));
        engine.resume(self.now);
        self.engine = engine;
        self.note("RESTART".to_owned());
    }

    /// Hand an input to the engine, as the service does once it is stored.
    fn feed(&mut self, input: Input, now: Timestamp) {
        if let Input::Result { command, .. }
        | Input::Salable { command, .. }
        | Input::SourceItems { command, .. } = &input
        {
            self.answered.insert(*command);
        }
        self.inputs_since_snapshot.push((input.clone(), now));
        self.engine.handle(input, now);
    }

    /// The service snapshots its engine (what [`Sim::crash_and_restore_snapshot`] goes back to).
    pub fn save_snapshot(&mut self) {
        self.snapshot =
            Some(serde_json::to_string(&self.engine).unwrap_or_else(|e| panic!("snapshot: {e}")));
        self.inputs_since_snapshot.clear();
    }

    /// The service dies without a closing snapshot, as the runner restarts: the last snapshot
    /// saved (a fresh engine when there is none), ids above every command issued, every input
    /// stored after the snapshot handed over again (answers with the command they answer, as
    /// the outbox holds it), the commands the outbox holds as sent but never answered, then
    /// `resume`. Answers not delivered yet are lost.
    pub fn crash_and_restore_snapshot(&mut self) {
        self.deliveries.clear();
        let mut engine: Engine = match &self.snapshot {
            Some(json) => serde_json::from_str(json).unwrap_or_else(|e| panic!("restore: {e}")),
            None => Engine::new(self.engine.config().clone(), self.now),
        };
        engine.ids_above(self.outbox.keys().max().copied().unwrap_or(0));
        for (input, at) in self.inputs_since_snapshot.clone() {
            match input {
                Input::Result { command, outcome } => match self.outbox.get(&command) {
                    Some(cmd) => engine.replay_result(cmd.clone(), outcome, at),
                    None => engine.handle(Input::Result { command, outcome }, at),
                },
                other => engine.handle(other, at),
            }
        }
        for (id, cmd) in &self.outbox {
            if !self.answered.contains(id) {
                engine.replay_open(cmd.clone(), self.now);
            }
        }
        engine.resume(self.now);
        self.engine = engine;
        self.note("CRASH; RESTORED FROM THE LAST SNAPSHOT".to_owned());
    }

    /// Like [`Sim::run`], but stops right after Commerce executed a shipment, before its answer
    /// reaches the engine (a crash then loses it). Returns whether a shipment was executed.
    pub fn run_until_a_shipment_is_executed(&mut self, max_ms: i64) -> bool {
        let end = self.now.as_millis() + max_ms;
        loop {
            self.cron();
            let outputs = self.engine.poll(self.now);
            let mut shipped = false;
            for out in outputs {
                if let Output::Command(cmd) = out {
                    shipped |= matches!(cmd.kind, CommandKind::CreateShipment { .. });
                    for input in self.execute(&cmd) {
                        self.seq += 1;
                        self.deliveries
                            .push((self.now.as_millis() + 50, self.seq, input));
                    }
                }
            }
            if shipped {
                return true;
            }
            self.deliveries.sort_by_key(|(at, seq, _)| (*at, *seq));
            if let Some(pos) = self
                .deliveries
                .iter()
                .position(|(at, _, _)| *at <= self.now.as_millis())
            {
                let (_, _, input) = self.deliveries.remove(pos);
                let now = self.now;
                self.feed(input, now);
                continue;
            }
            let next_delivery = self.deliveries.first().map(|(at, _, _)| *at);
            let wake = self.engine.next_wakeup(self.now).map(Timestamp::as_millis);
            let next = match (next_delivery, wake) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => self.now.as_millis() + 100,
            };
            let next = next.max(self.now.as_millis() + 1);
            if next > end {
                return false;
            }
            self.now = Timestamp::from_millis(next);
        }
    }

    /// Magento's cron: the MSI queue consumers, every five simulated seconds.
    fn cron(&mut self) {
        if !self.consumers_running || self.now.as_millis() < self.cron_at {
            return;
        }
        self.cron_at = self.now.as_millis() + 5_000;
        for topic in [
            "inventory.reservations.update",
            "inventory.reservations.updateSalabilityStatus",
            "inventory.source.items.cleanup",
        ] {
            self.commerce.process_queue(topic, None);
        }
    }

    /// Run until the engine has nothing left to do (or `max_ms` of simulated time passed).
    pub fn run(&mut self, max_ms: i64) {
        let end = self.now.as_millis() + max_ms;
        loop {
            self.cron();
            let outputs = self.engine.poll(self.now);
            for out in outputs {
                if let Output::Command(cmd) = out {
                    let latency = 10 + i64::try_from(self.rng.below(90)).unwrap_or(0);
                    for input in self.execute(&cmd) {
                        self.seq += 1;
                        self.deliveries
                            .push((self.now.as_millis() + latency, self.seq, input));
                    }
                }
            }
            self.deliveries.sort_by_key(|(at, seq, _)| (*at, *seq));
            if let Some(pos) = self
                .deliveries
                .iter()
                .position(|(at, _, _)| *at <= self.now.as_millis())
            {
                let (_, _, input) = self.deliveries.remove(pos);
                let now = self.now;
                self.feed(input, now);
                continue;
            }
            if self.deliveries.is_empty() && self.engine.is_idle() {
                return;
            }
            let next_delivery = self.deliveries.first().map(|(at, _, _)| *at);
            let wake = self.engine.next_wakeup(self.now).map(Timestamp::as_millis);
            let next = match (next_delivery, wake) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => self.now.as_millis() + 100,
            };
            let next = next.max(self.now.as_millis() + 1);
            if next > end {
                return;
            }
            self.now = Timestamp::from_millis(next);
        }
    }

    /// Commerce's source quantity for a key.
    pub fn commerce_qty(&mut self, s: &str, so: &str) -> Decimal {
        let (_, b) = self.rest(
            "GET",
            &format!(
                "/V1/inventory/source-items?searchCriteria[filterGroups][0][filters][0][field]=sku&searchCriteria[filterGroups][0][filters][0][value]={s}&searchCriteria[filterGroups][1][filters][0][field]=source_code&searchCriteria[filterGroups][1][filters][0][value]={so}"
            ),
            None,
        );
        b["items"]
            .as_array()
            .and_then(|a| a.first())
            .map_or(Decimal::ZERO, |i| dec(&i["quantity"]))
    }

    /// Commerce's salable quantity for a SKU in the stock.
    pub fn salable(&mut self, s: &str) -> Decimal {
        let (_, b) = self.rest(
            "GET",
            &format!("/V1/inventory/get-product-salable-quantity/{s}/{STOCK}"),
            None,
        );
        dec(&b)
    }

    /// Units Commerce still reserves for unfinished orders of a SKU.
    pub fn open_web_demand(&self, s: &str) -> Decimal {
        self.commerce
            .orders()
            .iter()
            .filter(|o| {
                !matches!(
                    serde_json::to_value(o.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .as_deref(),
                    Some("complete" | "closed" | "canceled")
                )
            })
            .flat_map(|o| o.items.iter())
            .filter(|i| i.sku == s)
            .map(|i| {
                (i.qty_ordered - i.qty_shipped - i.qty_canceled - i.qty_refunded).max(Decimal::ZERO)
            })
            .sum()
    }

    /// Every violation of the stock contract once the engine is idle: Commerce source quantity
    /// equals the till's on-hand; salable equals on-hand minus open web demand; reservations of
    /// finished orders sum to zero; Magento's inconsistency list is empty.
    pub fn violations(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.cron_at = 0;
        self.cron();
        let keys: Vec<(Sku, SourceCode)> = self.pos.keys().cloned().collect();
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for (s, so) in &keys {
            skus.insert(s.to_string());
            let on_hand = self.pos[&(s.clone(), so.clone())].max(Decimal::ZERO);
            let c = self.commerce_qty(s.as_str(), so.as_str());
            if c != on_hand {
                out.push(format!("{s}@{so}: Commerce holds {c}, the till {on_hand}"));
            }
        }
        for s in &skus {
            let on_hand: Decimal = keys
                .iter()
                .filter(|(k, _)| k.as_str() == s)
                .map(|k| self.pos[k].max(Decimal::ZERO))
                .sum();
            let expected = on_hand - self.open_web_demand(s);
            let salable = self.salable(s);
            // Magento answers 0 once its index decided the SKU is not salable (at or below the
            // threshold); above it, the exact figure.
            let ok = if expected > Decimal::ZERO {
                salable == expected
            } else {
                salable == expected || salable.is_zero()
            };
            if !ok {
                out.push(format!("{s}: salable {salable}, expected {expected} (on hand {on_hand} − open web demand)"));
            }
        }
        // Reservations of finished orders sum to zero.
        let finished: BTreeSet<String> = self
            .commerce
            .orders()
            .iter()
            .filter(|o| {
                matches!(
                    serde_json::to_value(o.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .as_deref(),
                    Some("complete" | "closed" | "canceled")
                )
            })
            .map(|o| o.increment_id.as_str().to_owned())
            .collect();
        let mut sums: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for r in self.commerce.reservations() {
            let meta: Value = r
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or(Value::Null);
            let inc = meta["object_increment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if finished.contains(&inc) {
                *sums.entry((inc, r.sku.as_str().to_owned())).or_default() += r.quantity;
            }
        }
        for ((inc, s), q) in sums {
            if !q.is_zero() {
                out.push(format!(
                    "reservations of finished order {inc} for {s} sum to {q}"
                ));
            }
        }
        match self
            .commerce
            .list_inconsistencies(mage::cli::OrderFilter::All, true, 50)
        {
            Ok(o) if o.exit_code == 0 => {}
            Ok(o) => out.push(format!("inconsistencies: {}", o.text)),
            Err(e) => out.push(format!("list-inconsistencies failed: {e:?}")),
        }
        out
    }

    /// Panic with the seed (and the end of the log) if the contract is violated.
    pub fn assert_consistent(&mut self, step: &str) {
        let v = self.violations();
        if !v.is_empty() {
            let tail: Vec<&String> = self
                .log
                .iter()
                .rev()
                .take(80)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "seed {} after {step}: {v:#?}\nexceptions: {:#?}\nlast events:\n{}",
                self.seed,
                self.engine.exceptions().collect::<Vec<_>>(),
                tail.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
