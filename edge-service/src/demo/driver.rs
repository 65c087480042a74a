//! The shop floor and the web shop of the demo: plays the world's schedule against the
//! emulators in real time while Tillbridge runs, as the people involved would.
//!
//! - Till staff ring up baskets and returns (`POST /__emulator/sales`, `/returns` on the
//!   Square emulator); a customer cannot buy what the shelf does not hold, so a line the shelf
//!   cannot cover is sold short.
//! - Web customers check out on Commerce (`POST /__emulator/orders`), for delivery or for
//!   collection at a store that holds the goods.
//! - When a web order appears on a till (Tillbridge sent it there), staff set the goods aside,
//!   accept it, and hand it over later (shipped with a tracking number, or collected); a store
//!   that cannot cover it declines it, and Tillbridge routes it elsewhere.
//! - Customer service cancels the orders whose customers changed their mind (Commerce REST),
//!   captures payment once an order has shipped (an invoice), and refunds a returned parcel:
//!   the goods go back on the shelf at the till, the credit memo refunds without returning
//!   stock in Commerce (the till's figure is the truth).
//!
//! Everything that moves stock at the tills goes through this driver, so its shelf model is
//! the physical truth the summary measures Commerce against. It reads the till screens and
//! Commerce's order records in-process (the emulators run in this process); every action goes
//! over HTTP, as a person's would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::world::{Action, WebDelivery, World};

/// Where the emulators are and how to talk to them.
#[allow(missing_debug_implementations)] // emulator handles
pub struct Endpoints {
    pub http: reqwest::Client,
    pub square: String,
    pub square_handle: tillbridge_square_emulator::Handle,
    pub commerce: String,
    pub commerce_token: String,
    pub commerce_handle: tillbridge_commerce_emulator::Handle,
    /// Square location id per store.
    pub locations: Vec<String>,
    /// Square variation id per product.
    pub variations: Vec<String>,
}

/// What a till does with a web order Tillbridge sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// On the till; staff decide at `decide_at`.
    New {
        decide_at: Instant,
        covered: bool,
    },
    /// Accepted, goods set aside; they leave at `handover_at` (never, for a customer who will
    /// cancel).
    Accepted {
        handover_at: Instant,
    },
    HandedOver,
    /// Declined (the shelf could not cover it).
    Declined,
    /// Withdrawn by Tillbridge after Commerce cancelled the order.
    Withdrawn,
}

#[derive(Debug, Clone)]
struct TillOrder {
    web: usize,
    store: usize,
    lines: Vec<(usize, Decimal)>,
    pickup: bool,
    stage: Stage,
}

/// One web order's life as the driver saw it.
#[derive(Debug, Clone, Default)]
pub struct WebRun {
    pub increment_id: Option<String>,
    pub entity_id: Option<u64>,
    /// Commerce refused the checkout (not salable online), with its message.
    pub refused: Option<String>,
    /// Commerce accepted it although no store had the goods on the shelf at that moment.
    pub oversold: bool,
    /// Where the customer collects (after the driver checked the store holds the goods).
    pub collect_at: Option<usize>,
    /// The customer asked to cancel; done in Commerce.
    pub cancel_due: bool,
    pub cancelled: bool,
    /// Customer service cancelled it because no store could fulfil it.
    pub cancelled_unfulfillable: bool,
    pub refund_due: bool,
    pub refunded: bool,
    pub invoiced: bool,
    /// The store that handed it over, and what.
    pub handed: Option<(usize, Vec<(usize, Decimal)>)>,
    /// Stores that declined it.
    pub declined_by: Vec<usize>,
    pub pickup: bool,
}

impl WebRun {
    /// Nothing more will happen to it.
    fn finished(&self, shipped: bool) -> bool {
        if self.refused.is_some() {
            return true;
        }
        if self.cancelled || self.cancelled_unfulfillable {
            return true;
        }
        self.handed.is_some() && shipped && (!self.refund_due || self.refunded)
    }
}

/// Counters of what happened on the floor and in the web shop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub baskets: u64,
    pub units_sold: Decimal,
    /// Basket lines the shelf could not cover (in full or in part), and baskets with nothing
    /// left to sell.
    pub lines_short: u64,
    pub baskets_lost: u64,
    pub returns: u64,
    pub web_placed: u64,
    pub web_refused: u64,
    pub shipped: u64,
    pub collected: u64,
    pub declined_at_till: u64,
    pub cancelled: u64,
    pub cancelled_unfulfillable: u64,
    pub refunded: u64,
    pub invoiced: u64,
    /// Requests an emulator refused that the driver did not expect (each is in `problems`).
    pub failed_actions: u64,
}

/// The driver.
#[allow(missing_debug_implementations)] // emulator handles
pub struct Driver<'w> {
    world: &'w World,
    ep: Endpoints,
    /// On hand at the tills (the physical truth).
    pub shelf: Vec<Vec<Decimal>>,
    /// Set aside for accepted web orders.
    held: Vec<Vec<Decimal>>,
    pub web: Vec<WebRun>,
    tills: BTreeMap<String, TillOrder>,
    product_of_variation: BTreeMap<String, usize>,
    store_of_location: BTreeMap<String, usize>,
    web_of_increment: BTreeMap<String, usize>,
    pub tally: Tally,
    /// Things that went wrong on the driver's side, as sentences.
    pub problems: Vec<String>,
    /// Notable moments, printed live by the caller (drained).
    pub notes: Vec<String>,
    next_event: usize,
    opened_at: Instant,
    tracking_seq: u64,
}

fn qty_text(q: Decimal) -> String {
    q.normalize().to_string()
}

impl<'w> Driver<'w> {
    pub fn new(world: &'w World, ep: Endpoints, opened_at: Instant) -> Self {
        let product_of_variation = ep
            .variations
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i))
            .collect();
        let store_of_location = ep
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        let stores = world.stores.len();
        let products = world.products.len();
        Self {
            world,
            ep,
            shelf: world.stock.clone(),
            held: vec![vec![Decimal::ZERO; products]; stores],
            web: vec![WebRun::default(); world.web_orders.len()],
            tills: BTreeMap::new(),
            product_of_variation,
            store_of_location,
            web_of_increment: BTreeMap::new(),
            tally: Tally::default(),
            problems: Vec::new(),
            notes: Vec::new(),
            next_event: 0,
            opened_at,
            tracking_seq: 0,
        }
    }

    /// Milliseconds of the day gone.
    pub fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.opened_at.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Every scheduled event has been played.
    pub fn schedule_done(&self) -> bool {
        self.next_event >= self.world.events.len()
    }

    /// When the next scheduled event is due (from the opening).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.world.events.get(self.next_event).map(|e| e.at_ms)
    }

    fn available(&self, store: usize, product: usize) -> Decimal {
        (self.shelf[store][product] - self.held[store][product]).max(Decimal::ZERO)
    }

    fn covers(&self, store: usize, lines: &[(usize, Decimal)]) -> bool {
        lines.iter().all(|(p, q)| self.available(store, *p) >= *q)
    }

    fn problem(&mut self, text: String) {
        self.tally.failed_actions += 1;
        self.problems.push(text);
    }

    async fn post(&self, url: String, body: Value, bearer: Option<&str>) -> Result<Value, String> {
        let mut req = self.ep.http.post(&url).json(&body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!("{status}: {v}"))
        }
    }

    /// Play what is due, then look after the tills and the web orders. `closing`: the day is
    /// over (what was scheduled later happens now; cancels and refunds no longer wait).
    pub async fn step(&mut self, closing: bool) {
        let now_ms = self.elapsed_ms();
        while let Some(e) = self.world.events.get(self.next_event) {
            if e.at_ms > now_ms && !closing {
                break;
            }
            let action = e.action.clone();
            self.next_event += 1;
            self.play(action).await;
        }
        self.watch_tills(closing).await;
        self.customer_service(closing).await;
    }

    async fn play(&mut self, action: Action) {
        match action {
            Action::Sale { store, lines } => self.sale(store, &lines).await,
            Action::Return {
                store,
                product,
                units,
            } => {
                let body = json!({"location_id": self.ep.locations[store],
                    "lines": [{"variation_id": self.ep.variations[product], "quantity": qty_text(units)}]});
                match self
                    .post(format!("{}/__emulator/returns", self.ep.square), body, None)
                    .await
                {
                    Ok(_) => {
                        self.shelf[store][product] += units;
                        self.tally.returns += 1;
                    }
                    Err(e) => self.problem(format!("a return at {}: {e}", self.store(store))),
                }
            }
            Action::WebOrder { order } => self.checkout(order).await,
            Action::Cancel { order } => self.web[order].cancel_due = true,
            Action::Refund { order } => self.web[order].refund_due = true,
        }
    }

    fn store(&self, i: usize) -> &str {
        &self.world.stores[i].name
    }

    async fn sale(&mut self, store: usize, lines: &[(usize, Decimal)]) {
        let mut sold = Vec::new();
        for (p, q) in lines {
            let take = (*q).min(self.available(store, *p));
            if take < *q {
                self.tally.lines_short += 1;
            }
            if take > Decimal::ZERO {
                sold.push((*p, take));
            }
        }
        if sold.is_empty() {
            self.tally.baskets_lost += 1;
            return;
        }
        let body = json!({
            "location_id": self.ep.locations[store],
            "lines": sold.iter().map(|(p, q)| json!({"variation_id": self.ep.variations[*p], "quantity": qty_text(*q)})).collect::<Vec<_>>(),
            "tender": "CARD",
        });
        match self
            .post(format!("{}/__emulator/sales", self.ep.square), body, None)
            .await
        {
            Ok(_) => {
                for (p, q) in sold {
                    self.shelf[store][p] -= q;
                    self.tally.units_sold += q;
                }
                self.tally.baskets += 1;
            }
            Err(e) => self.problem(format!("a basket at {}: {e}", self.store(store))),
        }
    }

    async fn checkout(&mut self, order: usize) {
        let spec = &self.world.web_orders[order];
        let lines = spec.lines.clone();
        // Magento's in-store pickup offers stores whose source holds the goods: the customer's
        // first choice if it does, else the first store that does, else delivery.
        let collect_at = match spec.delivery {
            WebDelivery::Collect { store } if self.covers(store, &lines) => Some(store),
            WebDelivery::Collect { .. } => {
                (0..self.world.stores.len()).find(|s| self.covers(*s, &lines))
            }
            WebDelivery::Ship => None,
        };
        let on_shelves = |d: &Self| {
            lines.iter().all(|(p, q)| {
                (0..d.world.stores.len())
                    .map(|s| d.available(s, *p))
                    .sum::<Decimal>()
                    >= *q
            })
        };
        let physically_there = on_shelves(self);
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| {
                let product = &self.world.products[*p];
                json!({"sku": product.sku, "qty": qty_text(*q), "price": product.price().to_string(),
                       "name": product.name, "tax_percent": "20"})
            })
            .collect();
        let shipping = match collect_at {
            Some(s) => json!({"amount": "0", "method": "instore_pickup",
                              "description": self.world.stores[s].source}),
            None => json!({"amount": "3.95", "tax_percent": "20", "method": "flatrate_flatrate",
                           "description": "Flat Rate - Fixed"}),
        };
        let body = json!({
            "items": items,
            "shipping": shipping,
            "customer": {"email": format!("customer{}@example.com", order + 1),
                         "firstname": "Web", "lastname": format!("Customer {}", order + 1)},
        });
        match self
            .post(
                format!("{}/__emulator/orders", self.ep.commerce),
                body,
                None,
            )
            .await
        {
            Ok(v) => {
                let increment = v
                    .get("increment_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let run = &mut self.web[order];
                run.increment_id = Some(increment.clone());
                run.entity_id = v.get("entity_id").and_then(Value::as_u64);
                run.collect_at = collect_at;
                run.pickup = collect_at.is_some();
                run.oversold = !physically_there;
                self.web_of_increment.insert(increment.clone(), order);
                self.tally.web_placed += 1;
                if !physically_there {
                    self.notes.push(format!(
                        "web order {increment} accepted by Commerce although no shelf holds every line (an oversell)"
                    ));
                }
            }
            Err(e) => {
                // Commerce would not sell it (salable quantity too low): a lost web sale, not
                // a wrong one.
                self.web[order].refused = Some(e);
                self.tally.web_refused += 1;
            }
        }
    }

    /// New web orders on the tills, and what staff do with them.
    async fn watch_tills(&mut self, closing: bool) {
        let now = Instant::now();
        // Read the till screens (API orders with a pickup or shipment fulfilment, paid).
        let mut seen: Vec<TillScreen> = Vec::new();
        {
            let shared = self.ep.square_handle.state();
            let s = tillbridge_square_emulator::lock(&shared);
            for (id, o) in &s.orders {
                if o.version.is_none() || !o.paid {
                    continue;
                }
                let Some(f) = o
                    .fulfillments
                    .iter()
                    .find(|f| f.kind == "PICKUP" || f.kind == "SHIPMENT")
                else {
                    continue;
                };
                let known = self.tills.get(id);
                let interesting = match known {
                    None => true,
                    Some(t) => matches!(t.stage, Stage::New { .. } | Stage::Accepted { .. }),
                };
                if !interesting {
                    continue;
                }
                seen.push((
                    id.clone(),
                    o.location_id.clone(),
                    o.reference_id.clone().unwrap_or_default(),
                    o.line_items
                        .iter()
                        .filter_map(|l| l.catalog_object_id.clone().map(|c| (c, l.quantity)))
                        .collect(),
                    f.kind == "PICKUP",
                    f.state.clone(),
                ));
            }
        }
        for (id, location, reference, lines, pickup, state) in seen {
            if !self.tills.contains_key(&id) {
                let (Some(&store), Some(&web)) = (
                    self.store_of_location.get(&location),
                    self.web_of_increment.get(&reference),
                ) else {
                    self.problem(format!(
                        "till order {id} at {location} names web order '{reference}', which the web shop did not place"
                    ));
                    self.tills.insert(
                        id,
                        TillOrder {
                            web: usize::MAX,
                            store: 0,
                            lines: Vec::new(),
                            pickup,
                            stage: Stage::Declined,
                        },
                    );
                    continue;
                };
                let lines: Vec<(usize, Decimal)> = lines
                    .iter()
                    .filter_map(|(v, q)| self.product_of_variation.get(v).map(|p| (*p, *q)))
                    .collect();
                let spec = &self.world.web_orders[web];
                let covered = self.covers(store, &lines);
                if covered {
                    // Staff take the goods off the shelf as soon as the order prints.
                    for (p, q) in &lines {
                        self.held[store][*p] += *q;
                    }
                }
                let decide_at = now + Duration::from_millis(ms(spec.accept_after_ms));
                self.tills.insert(
                    id.clone(),
                    TillOrder {
                        web,
                        store,
                        lines,
                        pickup,
                        stage: Stage::New { decide_at, covered },
                    },
                );
            }
            if state == "CANCELED" {
                self.withdrawn(&id);
            }
        }
        // Act on what is due.
        let due: Vec<String> = self
            .tills
            .iter()
            .filter(|(_, t)| match t.stage {
                Stage::New { decide_at, .. } => closing || decide_at <= now,
                Stage::Accepted { handover_at } => {
                    let cancelling = self.world.web_orders[t.web].cancelled;
                    !cancelling && (closing || handover_at <= now)
                }
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            self.act(&id).await;
        }
    }

    fn withdrawn(&mut self, id: &str) {
        let Some(t) = self.tills.get_mut(id) else {
            return;
        };
        let held = match t.stage {
            Stage::New { covered, .. } => covered,
            Stage::Accepted { .. } => true,
            _ => return,
        };
        t.stage = Stage::Withdrawn;
        let (store, lines, web) = (t.store, t.lines.clone(), t.web);
        if held {
            for (p, q) in lines {
                self.held[store][p] -= q;
            }
        }
        if let Some(inc) = self.web[web].increment_id.clone() {
            self.notes.push(format!(
                "web order {inc}: Tillbridge withdrew it from the {} till after Commerce cancelled it",
                self.world.stores[store].name
            ));
        }
    }

    async fn act(&mut self, id: &str) {
        let Some(t) = self.tills.get(id).cloned() else {
            return;
        };
        let url = format!("{}/__emulator/orders/{id}/fulfillment", self.ep.square);
        let spec = &self.world.web_orders[t.web];
        match t.stage {
            Stage::New { covered: true, .. } => {
                match self.post(url, json!({"action": "accepted"}), None).await {
                    Ok(_) => {
                        let handover_at = Instant::now()
                            + Duration::from_millis(ms(
                                spec.handover_after_ms - spec.accept_after_ms
                            ));
                        if let Some(x) = self.tills.get_mut(id) {
                            x.stage = Stage::Accepted { handover_at };
                        }
                    }
                    // Withdrawn meanwhile (the order was cancelled): the next look sees it.
                    Err(e) if e.contains("cannot be updated") => {}
                    Err(e) => self.problem(format!("accepting till order {id}: {e}")),
                }
            }
            Stage::New { covered: false, .. } => {
                let body = json!({"action": "failed", "failure_reason": "not on the shelf"});
                match self.post(url, body, None).await {
                    Ok(_) => {
                        if let Some(x) = self.tills.get_mut(id) {
                            x.stage = Stage::Declined;
                        }
                        self.tally.declined_at_till += 1;
                        self.web[t.web].declined_by.push(t.store);
                        if let Some(inc) = self.web[t.web].increment_id.clone() {
                            self.notes.push(format!(
                                "web order {inc}: {} cannot cover it and declines; Tillbridge routes it again",
                                self.world.stores[t.store].name
                            ));
                        }
                    }
                    Err(e) if e.contains("cannot be updated") => {}
                    Err(e) => self.problem(format!("declining till order {id}: {e}")),
                }
            }
            Stage::Accepted { .. } => {
                self.tracking_seq += 1;
                let body = if t.pickup {
                    json!({"action": "picked_up"})
                } else {
                    json!({"action": "shipped", "carrier": "Royal Mail",
                           "tracking_number": format!("RM{:08}GB", 10_000_000 + self.tracking_seq)})
                };
                match self.post(url, body, None).await {
                    Ok(_) => {
                        for (p, q) in &t.lines {
                            self.held[t.store][*p] -= *q;
                            self.shelf[t.store][*p] -= *q;
                        }
                        if let Some(x) = self.tills.get_mut(id) {
                            x.stage = Stage::HandedOver;
                        }
                        self.web[t.web].handed = Some((t.store, t.lines.clone()));
                        if t.pickup {
                            self.tally.collected += 1;
                        } else {
                            self.tally.shipped += 1;
                        }
                    }
                    Err(e) if e.contains("cannot be updated") => {}
                    Err(e) => self.problem(format!("handing over till order {id}: {e}")),
                }
            }
            _ => {}
        }
    }

    /// Commerce's view of an order: (every line shipped, state).
    fn commerce_order(&self, entity_id: u64) -> Option<(bool, String)> {
        let shared = self.ep.commerce_handle.state();
        let st = tillbridge_commerce_emulator::lock(&shared);
        let o = st
            .world
            .exec
            .inventory
            .order(tillbridge_core::inventory::OrderId(entity_id))
            .ok()?;
        let shipped = o
            .items
            .iter()
            .filter(|i| i.parent_item_id.is_none())
            .all(|i| i.qty_shipped >= i.qty_ordered);
        Some((shipped, format!("{:?}", o.state).to_lowercase()))
    }

    /// Items of an order as (item id, SKU, quantity ordered).
    fn commerce_items(&self, entity_id: u64) -> Vec<(u64, String, Decimal)> {
        let shared = self.ep.commerce_handle.state();
        let st = tillbridge_commerce_emulator::lock(&shared);
        st.world
            .exec
            .inventory
            .order(tillbridge_core::inventory::OrderId(entity_id))
            .map(|o| {
                o.items
                    .iter()
                    .filter(|i| i.parent_item_id.is_none())
                    .map(|i| (i.item_id, i.sku.clone(), i.qty_ordered))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Cancels, captures, refunds, and orders nobody can fulfil.
    async fn customer_service(&mut self, closing: bool) {
        let token = self.ep.commerce_token.clone();
        for w in 0..self.web.len() {
            let run = self.web[w].clone();
            let (Some(entity), Some(increment)) = (run.entity_id, run.increment_id.clone()) else {
                continue;
            };
            if run.cancelled || run.cancelled_unfulfillable {
                continue;
            }
            // The customer changed their mind: cancel once the store has it in hand (or at
            // closing, wherever it is), unless it has already left.
            if run.cancel_due && run.handed.is_none() {
                let at_store = self
                    .tills
                    .values()
                    .any(|t| t.web == w && matches!(t.stage, Stage::Accepted { .. }));
                if at_store || closing {
                    let url = format!("{}/rest/V1/orders/{entity}/cancel", self.ep.commerce);
                    match self.post(url, Value::Null, Some(&token)).await {
                        Ok(Value::Bool(true)) => {
                            self.web[w].cancelled = true;
                            self.tally.cancelled += 1;
                            self.notes.push(format!(
                                "web order {increment}: the customer cancels it in Commerce"
                            ));
                        }
                        Ok(v) => {
                            self.problem(format!("cancelling {increment}: Commerce answered {v}"))
                        }
                        Err(e) => self.problem(format!("cancelling {increment}: {e}")),
                    }
                }
                continue;
            }
            let Some((shipped, _state)) = self.commerce_order(entity) else {
                continue;
            };
            // Payment is captured once the goods have left (authorise at checkout, capture on
            // shipment): an invoice for the whole order.
            if shipped && run.handed.is_some() && !run.invoiced {
                let url = format!("{}/rest/V1/order/{entity}/invoice", self.ep.commerce);
                match self
                    .post(url, json!({"capture": true, "notify": false}), Some(&token))
                    .await
                {
                    Ok(_) => {
                        self.web[w].invoiced = true;
                        self.tally.invoiced += 1;
                    }
                    Err(e) => self.problem(format!("invoicing {increment}: {e}")),
                }
                continue;
            }
            // The parcel comes back to the store that sent it: back on the shelf at the till,
            // refunded in Commerce without returning stock there (the till's figure is the
            // truth; Tillbridge pushes it).
            if run.refund_due && !run.refunded && run.invoiced {
                let Some((store, lines)) = run.handed.clone() else {
                    continue;
                };
                let body = json!({
                    "location_id": self.ep.locations[store],
                    "lines": lines.iter().map(|(p, q)| json!({"variation_id": self.ep.variations[*p], "quantity": qty_text(*q)})).collect::<Vec<_>>(),
                });
                if let Err(e) = self
                    .post(format!("{}/__emulator/returns", self.ep.square), body, None)
                    .await
                {
                    self.problem(format!("returning {increment} at the till: {e}"));
                    self.web[w].refunded = true;
                    continue;
                }
                for (p, q) in &lines {
                    self.shelf[store][*p] += *q;
                }
                let items: Vec<Value> = self
                    .commerce_items(entity)
                    .into_iter()
                    .map(|(item, _, qty)| json!({"order_item_id": item, "qty": qty_text(qty)}))
                    .collect();
                let url = format!("{}/rest/V1/order/{entity}/refund", self.ep.commerce);
                let body = json!({"items": items, "notify": false,
                                  "arguments": {"shipping_amount": 0, "adjustment_positive": 0, "adjustment_negative": 0}});
                match self.post(url, body, Some(&token)).await {
                    Ok(_) => {
                        self.tally.refunded += 1;
                        self.notes.push(format!(
                            "web order {increment}: returned at {} and refunded in Commerce",
                            self.world.stores[store].name
                        ));
                    }
                    Err(e) => self.problem(format!("refunding {increment}: {e}")),
                }
                self.web[w].refunded = true;
            }
        }
    }

    /// Customer service cancels orders Tillbridge could not place with any store (it raised
    /// an exception for each): the customer is told and refunded.
    pub async fn cancel_unfulfillable(&mut self, orders: &BTreeSet<String>) {
        let token = self.ep.commerce_token.clone();
        for increment in orders {
            let Some(&w) = self.web_of_increment.get(increment) else {
                continue;
            };
            let run = &self.web[w];
            if run.cancelled || run.cancelled_unfulfillable || run.handed.is_some() {
                continue;
            }
            let Some(entity) = run.entity_id else {
                continue;
            };
            let url = format!("{}/rest/V1/orders/{entity}/cancel", self.ep.commerce);
            match self.post(url, Value::Null, Some(&token)).await {
                Ok(Value::Bool(true)) => {
                    self.web[w].cancelled_unfulfillable = true;
                    self.tally.cancelled_unfulfillable += 1;
                    self.notes.push(format!(
                        "web order {increment}: no store can fulfil it; customer service cancels it"
                    ));
                }
                Ok(v) => self.problem(format!("cancelling {increment}: Commerce answered {v}")),
                Err(e) => self.problem(format!("cancelling {increment}: {e}")),
            }
        }
    }

    /// Web orders still in progress (placed, not finished).
    pub fn open_web_orders(&self) -> usize {
        (0..self.web.len())
            .filter(|&w| {
                let run = &self.web[w];
                if run.increment_id.is_none() && run.refused.is_none() {
                    return !self.schedule_done(); // not placed yet
                }
                let shipped = run
                    .entity_id
                    .and_then(|e| self.commerce_order(e))
                    .is_some_and(|(s, _)| s);
                !run.finished(shipped)
            })
            .count()
    }

    /// Till orders still waiting for staff.
    pub fn open_till_orders(&self) -> usize {
        self.tills
            .values()
            .filter(|t| matches!(t.stage, Stage::New { .. } | Stage::Accepted { .. }))
            .count()
    }

    /// Units handed over per (store, product) for each web order, with the order's entity id.
    pub fn handovers(&self) -> Vec<Handover> {
        self.web
            .iter()
            .filter_map(|r| {
                let (store, lines) = r.handed.clone()?;
                Some((r.entity_id?, store, lines))
            })
            .collect()
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.ep
    }

    /// The increment ids of orders the driver knows were oversold or declined everywhere.
    pub fn short_orders(&self) -> BTreeSet<String> {
        self.web
            .iter()
            .filter(|r| r.oversold || !r.declined_by.is_empty() || r.cancelled_unfulfillable)
            .filter_map(|r| r.increment_id.clone())
            .collect()
    }
}

fn ms(v: i64) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(0)
}

/// A web order as a till screen shows it: order id, location, Commerce increment id, the lines
/// (SKU, quantity), whether it ships, and its fulfilment state.
type TillScreen = (String, String, String, Vec<(String, Decimal)>, bool, String);

/// Units handed over for one web order: its Commerce entity id, the store, (product, units).
pub type Handover = (u64, usize, Vec<(usize, Decimal)>);
