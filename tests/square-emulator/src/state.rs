//! The emulated seller: locations, catalog, inventory, orders, payments, and the emulator's own
//! bookkeeping (clock, ids, faults, webhooks, call log). Everything is plain data behind one
//! mutex; handlers lock, mutate, render JSON and unlock before any await.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, SquareError};
use crate::ids::IdGen;
use crate::time::format_ms;
use crate::webhooks::WebhookState;

/// The `Square-Version` the emulator answers with when the client sends none.
pub const DEFAULT_SQUARE_VERSION: &str = "2025-08-20";

/// The emulator clock: manual (tests set and advance it) or real time plus an offset.
#[derive(Debug, Clone)]
pub struct Clock {
    pub real_time: bool,
    pub manual_ms: i64,
    pub offset_ms: i64,
}

impl Clock {
    pub fn now(&self) -> i64 {
        if self.real_time {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            wall + self.offset_ms
        } else {
            self.manual_ms
        }
    }

    pub fn advance(&mut self, ms: i64) {
        if self.real_time {
            self.offset_ms += ms;
        } else {
            self.manual_ms += ms;
        }
    }

    pub fn set(&mut self, ms: i64) {
        if self.real_time {
            self.offset_ms += ms - self.now();
        } else {
            self.manual_ms = ms;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Location {
    pub id: String,
    pub name: String,
    pub status: String,
    pub country: String,
    pub currency: String,
    pub timezone: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub updated_at: i64,
    pub is_deleted: bool,
    pub variation_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Variation {
    pub id: String,
    pub item_id: String,
    pub name: String,
    pub sku: Option<String>,
    pub price: Option<i64>,
    pub currency: String,
    pub track_inventory: bool,
    pub ordinal: i64,
    pub version: i64,
    pub updated_at: i64,
    pub is_deleted: bool,
}

#[derive(Debug, Clone)]
pub struct Count {
    pub quantity: Decimal,
    pub calculated_at: i64,
}

#[derive(Debug, Clone)]
pub enum ChangeKind {
    Adjustment { from: String, to: String },
    PhysicalCount { state: String },
}

#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    pub kind: ChangeKind,
    pub variation_id: String,
    pub location_id: String,
    pub quantity: Decimal,
    pub occurred_at: i64,
    pub created_at: i64,
    pub product: String,
    pub reference_id: Option<String>,
    pub transaction_id: Option<String>,
    pub total_price: Option<(i64, String)>,
}

#[derive(Debug, Clone)]
pub struct LineItem {
    pub uid: String,
    pub name: Option<String>,
    pub quantity: Decimal,
    pub catalog_object_id: Option<String>,
    pub variation_name: Option<String>,
    pub base_price: i64,
    pub note: Option<String>,
    pub tax_uids: Vec<String>,
    pub metadata: Option<Map<String, Value>>,
    pub gross: i64,
    pub tax: i64,
    pub total: i64,
    pub applied: Vec<(String, String, i64)>,
}

#[derive(Debug, Clone)]
pub struct OrderTax {
    pub uid: String,
    pub name: String,
    pub percentage: Decimal,
    pub inclusive: bool,
    pub line_item_scope: bool,
    pub applied: i64,
}

#[derive(Debug, Clone)]
pub struct Fulfillment {
    pub uid: String,
    pub kind: String,
    pub state: String,
    pub pickup: Option<Map<String, Value>>,
    pub shipment: Option<Map<String, Value>>,
    /// `None`: `line_item_application: ALL` (every line). `Some`: `ENTRY_LIST`, these units.
    pub entries: Option<Vec<FulfillmentEntry>>,
}

/// One entry of an `ENTRY_LIST` fulfilment: units of one line item.
#[derive(Debug, Clone)]
pub struct FulfillmentEntry {
    pub uid: String,
    pub line_item_uid: String,
    pub quantity: Decimal,
}

/// An entry as a client or the seller sent it, before it is checked.
#[derive(Debug, Clone)]
pub struct EntryIn {
    /// Where it sits in the request, e.g. `order.fulfillments[0].entries[1]`.
    pub field: String,
    pub line_item_uid: Option<String>,
    pub quantity: Option<String>,
}

/// Checks `ENTRY_LIST` entries against an order's line items as Square does: every entry
/// names a line item of the order (`line_item_uid`) and a positive decimal `quantity`, and the
/// entries naming one line item add up to at most its quantity; with `exact`, to exactly its
/// quantity (a split must cover what the fulfilment it replaces covered). `lists` holds each
/// fulfilment's field prefix and entries. Answers the parsed entries per fulfilment (uids
/// still empty), or every violation found, each naming its field.
pub fn check_entries(
    lines: &[LineItem],
    lists: &[(String, Vec<EntryIn>)],
    exact: bool,
    total_field: &str,
) -> ApiResult<Vec<Vec<FulfillmentEntry>>> {
    let mut errors = Vec::new();
    let mut bad = |code: &str, detail: String, field: String| {
        errors.push(SquareError {
            category: "INVALID_REQUEST_ERROR".into(),
            code: code.into(),
            detail,
            field: Some(field),
        });
    };
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut out = Vec::new();
    for (prefix, entries) in lists {
        if entries.is_empty() {
            bad(
                "MISSING_REQUIRED_PARAMETER",
                "An ENTRY_LIST fulfillment needs at least one entry.".into(),
                format!("{prefix}.entries"),
            );
        }
        let mut parsed = Vec::new();
        for e in entries {
            let line = match e.line_item_uid.as_deref() {
                None => {
                    bad(
                        "MISSING_REQUIRED_PARAMETER",
                        "Field must be set".into(),
                        format!("{}.line_item_uid", e.field),
                    );
                    None
                }
                Some(uid) => {
                    let l = lines.iter().find(|l| l.uid == uid);
                    if l.is_none() {
                        bad(
                            "NOT_FOUND",
                            format!("The order has no line item with uid `{uid}`."),
                            format!("{}.line_item_uid", e.field),
                        );
                    }
                    l
                }
            };
            let q = match e.quantity.as_deref() {
                None => {
                    bad(
                        "MISSING_REQUIRED_PARAMETER",
                        "Field must be set".into(),
                        format!("{}.quantity", e.field),
                    );
                    None
                }
                Some(raw) => match raw.parse::<Decimal>() {
                    Ok(q) if q > Decimal::ZERO => Some(q),
                    Ok(_) => {
                        bad(
                            "INVALID_VALUE",
                            format!("Quantity `{raw}` must be positive."),
                            format!("{}.quantity", e.field),
                        );
                        None
                    }
                    Err(_) => {
                        bad(
                            "INVALID_VALUE",
                            format!("`{raw}` is not a decimal quantity."),
                            format!("{}.quantity", e.field),
                        );
                        None
                    }
                },
            };
            if let (Some(l), Some(q)) = (line, q) {
                *sums.entry(l.uid.as_str()).or_default() += q;
                parsed.push(FulfillmentEntry {
                    uid: String::new(),
                    line_item_uid: l.uid.clone(),
                    quantity: q,
                });
            }
        }
        out.push(parsed);
    }
    for l in lines {
        let sum = sums.get(l.uid.as_str()).copied().unwrap_or_default();
        if sum > l.quantity {
            bad(
                "INVALID_VALUE",
                format!(
                    "The entries for line item `{}` add up to {}, more than its quantity {}.",
                    l.uid,
                    qty(sum),
                    qty(l.quantity)
                ),
                total_field.to_owned(),
            );
        } else if exact && sum < l.quantity {
            bad(
                "INVALID_VALUE",
                format!(
                    "The entries for line item `{}` add up to {}, less than its quantity {}: every unit must go in one fulfillment.",
                    l.uid,
                    qty(sum),
                    qty(l.quantity)
                ),
                total_field.to_owned(),
            );
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError {
            status: 400,
            errors,
            retry_after: None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ReturnLine {
    pub uid: String,
    pub source_line_item_uid: Option<String>,
    pub name: Option<String>,
    pub quantity: Decimal,
    pub catalog_object_id: Option<String>,
    pub base_price: i64,
    pub gross: i64,
    pub tax: i64,
    pub total: i64,
}

#[derive(Debug, Clone)]
pub struct OrderReturn {
    pub uid: String,
    pub source_order_id: Option<String>,
    pub lines: Vec<ReturnLine>,
}

#[derive(Debug, Clone)]
pub struct Tender {
    pub id: String,
    pub kind: String,
    pub amount: i64,
    pub created_at: i64,
    pub payment_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub location_id: String,
    pub reference_id: Option<String>,
    pub source_name: Option<String>,
    pub customer_id: Option<String>,
    pub currency: String,
    pub line_items: Vec<LineItem>,
    pub taxes: Vec<OrderTax>,
    pub fulfillments: Vec<Fulfillment>,
    pub returns: Vec<OrderReturn>,
    pub tenders: Vec<Tender>,
    pub metadata: Option<Map<String, Value>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub state: String,
    /// Only orders created through the API carry a version (POS orders cannot be updated).
    pub version: Option<i64>,
    pub paid: bool,
    /// Rung up on a till that is offline: invisible to the API until the till replays it.
    pub offline_pending: bool,
    pub stock_deducted: bool,
    /// Units per line item already moved `IN_STOCK → SOLD` (a completed `ENTRY_LIST`
    /// fulfilment takes its units off the shelf before the order completes).
    pub deducted: BTreeMap<String, Decimal>,
}

impl Order {
    pub fn total(&self) -> i64 {
        self.line_items.iter().map(|l| l.total).sum()
    }
    pub fn total_tax(&self) -> i64 {
        self.line_items.iter().map(|l| l.tax).sum()
    }
    pub fn tendered(&self) -> i64 {
        self.tenders.iter().map(|t| t.amount).sum()
    }
    pub fn return_total(&self) -> i64 {
        self.returns
            .iter()
            .flat_map(|r| &r.lines)
            .map(|l| l.total)
            .sum()
    }
    pub fn return_tax(&self) -> i64 {
        self.returns
            .iter()
            .flat_map(|r| &r.lines)
            .map(|l| l.tax)
            .sum()
    }
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub source_type: String,
    pub external_details: Option<Value>,
    pub order_id: Option<String>,
    pub location_id: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
}

/// One injected fault rule (see the README's control API).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct FaultRule {
    #[serde(default)]
    pub id: u64,
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix to match, e.g. `/v2/inventory/counts` (any when absent).
    #[serde(default)]
    pub path: Option<String>,
    pub kind: FaultKind,
    /// Let this many matching calls through before the fault applies.
    #[serde(default)]
    pub skip: u32,
    /// Apply to this many calls, then retire (forever when absent).
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and Square's error body for it.
    Status {
        status: u16,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Delay the answer.
    Latency { ms: u64 },
    /// Hold the request (default 30 s) and then drop the connection's answer with a 504.
    Timeout {
        #[serde(default)]
        ms: Option<u64>,
    },
    /// Serve paged results in the wrong order (inventory counts oldest first; orders reversed).
    OutOfOrderPages,
}

/// One request/response pair in the call log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub operation: Option<String>,
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_body: Value,
}

/// The whole emulated world.
#[derive(Debug)]
pub struct State {
    pub merchant_id: String,
    pub token: String,
    pub clock: Clock,
    pub ids: IdGen,
    pub locations: Vec<Location>,
    pub items: BTreeMap<String, Item>,
    pub variations: BTreeMap<String, Variation>,
    /// (variation id, location id, state) → count.
    pub counts: BTreeMap<(String, String, String), Count>,
    pub changes: Vec<Change>,
    pub orders: BTreeMap<String, Order>,
    pub payments: BTreeMap<String, Payment>,
    pub offline_tills: BTreeSet<String>,
    /// (operation, idempotency key) → (request hash, status, response).
    pub idempotency: HashMap<(String, String), (u64, u16, Value)>,
    /// Raw records served as-is among real ones (to test record-level error handling).
    pub raw_counts: Vec<Value>,
    pub raw_orders: Vec<(String, Value)>,
    pub faults: Vec<FaultRule>,
    pub next_fault_id: u64,
    pub webhooks: WebhookState,
    pub calls: Vec<CallRecord>,
    pub next_call_seq: u64,
    pub catalog_page_size: usize,
    pub version_counter: i64,
}

/// Rounds a decimal amount of minor units to a whole minor unit, half away from zero.
pub fn round_minor(v: Decimal) -> i64 {
    let r = v.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(r).unwrap_or(if r.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub fn money(amount: i64, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

/// Square writes quantities as decimal strings without trailing zeros.
pub fn qty(q: Decimal) -> String {
    q.normalize().to_string()
}

impl State {
    pub fn new(seed: u64, token: String, clock: Clock) -> Self {
        let mut ids = IdGen::new(seed);
        let merchant_id = ids.id(13);
        Self {
            merchant_id,
            token,
            clock,
            ids,
            locations: Vec::new(),
            items: BTreeMap::new(),
            variations: BTreeMap::new(),
            counts: BTreeMap::new(),
            changes: Vec::new(),
            orders: BTreeMap::new(),
            payments: BTreeMap::new(),
            offline_tills: BTreeSet::new(),
            idempotency: HashMap::new(),
            raw_counts: Vec::new(),
            raw_orders: Vec::new(),
            faults: Vec::new(),
            next_fault_id: 1,
            webhooks: WebhookState::default(),
            calls: Vec::new(),
            next_call_seq: 1,
            catalog_page_size: 100,
            version_counter: 0,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn next_catalog_version(&mut self) -> i64 {
        self.version_counter += 1;
        1_700_000_000_000 + self.version_counter
    }

    pub fn location(&self, id: &str) -> Option<&Location> {
        if id == "main" {
            return self.locations.first();
        }
        self.locations.iter().find(|l| l.id == id)
    }

    // -----------------------------------------------------------------------------------------
    // JSON renderings (shapes from Square's OpenAPI document)

    pub fn location_json(&self, l: &Location) -> Value {
        json!({
            "id": l.id, "name": l.name, "status": l.status, "type": "PHYSICAL",
            "country": l.country, "currency": l.currency, "timezone": l.timezone,
            "created_at": format_ms(l.created_at), "merchant_id": self.merchant_id,
            "business_name": "Tillbridge Emulated Retail", "language_code": "en-GB",
            "capabilities": [],
        })
    }

    pub fn variation_json(&self, v: &Variation) -> Value {
        let mut data = json!({
            "item_id": v.item_id, "name": v.name, "ordinal": v.ordinal,
            "pricing_type": if v.price.is_some() { "FIXED_PRICING" } else { "VARIABLE_PRICING" },
            "track_inventory": v.track_inventory, "sellable": true, "stockable": true,
        });
        if let Some(obj) = data.as_object_mut() {
            if let Some(sku) = &v.sku {
                obj.insert("sku".into(), Value::String(sku.clone()));
            }
            if let Some(p) = v.price {
                obj.insert("price_money".into(), money(p, &v.currency));
            }
        }
        json!({
            "type": "ITEM_VARIATION", "id": v.id, "updated_at": format_ms(v.updated_at),
            "version": v.version, "is_deleted": v.is_deleted, "present_at_all_locations": true,
            "item_variation_data": data,
        })
    }

    pub fn item_json(&self, i: &Item) -> Value {
        let variations: Vec<Value> = i
            .variation_ids
            .iter()
            .filter_map(|id| self.variations.get(id))
            .map(|v| self.variation_json(v))
            .collect();
        json!({
            "type": "ITEM", "id": i.id, "updated_at": format_ms(i.updated_at),
            "version": i.version, "is_deleted": i.is_deleted, "present_at_all_locations": true,
            "item_data": {"name": i.name, "variations": variations, "product_type": "REGULAR"},
        })
    }

    pub fn count_json(key: &(String, String, String), c: &Count) -> Value {
        json!({
            "catalog_object_id": key.0, "catalog_object_type": "ITEM_VARIATION",
            "state": key.2, "location_id": key.1, "quantity": qty(c.quantity),
            "calculated_at": format_ms(c.calculated_at),
        })
    }

    pub fn change_json(c: &Change) -> Value {
        let source = match c.product.as_str() {
            "SQUARE_POS" => json!({"product": "SQUARE_POS", "name": "Square Point of Sale"}),
            "EXTERNAL_API" => {
                json!({"product": "EXTERNAL_API", "name": "Tillbridge", "application_id": "sq0idp-tillbridge"})
            }
            p => json!({"product": p}),
        };
        let mut body = json!({
            "id": c.id, "location_id": c.location_id, "catalog_object_id": c.variation_id,
            "catalog_object_type": "ITEM_VARIATION", "quantity": qty(c.quantity),
            "occurred_at": format_ms(c.occurred_at), "created_at": format_ms(c.created_at),
            "source": source,
        });
        let obj = body.as_object_mut();
        let (kind, key) = match (&c.kind, obj) {
            (ChangeKind::Adjustment { from, to }, Some(obj)) => {
                obj.insert("from_state".into(), json!(from));
                obj.insert("to_state".into(), json!(to));
                if let Some(t) = &c.transaction_id {
                    obj.insert("transaction_id".into(), json!(t));
                }
                if let Some((amount, cur)) = &c.total_price {
                    obj.insert("total_price_money".into(), money(*amount, cur));
                }
                if let Some(r) = &c.reference_id {
                    obj.insert("reference_id".into(), json!(r));
                }
                ("ADJUSTMENT", "adjustment")
            }
            (ChangeKind::PhysicalCount { state }, Some(obj)) => {
                obj.insert("state".into(), json!(state));
                if let Some(r) = &c.reference_id {
                    obj.insert("reference_id".into(), json!(r));
                }
                ("PHYSICAL_COUNT", "physical_count")
            }
            (ChangeKind::Adjustment { .. }, None) => ("ADJUSTMENT", "adjustment"),
            (ChangeKind::PhysicalCount { .. }, None) => ("PHYSICAL_COUNT", "physical_count"),
        };
        json!({"type": kind, key: body})
    }

    pub fn order_json(&self, o: &Order) -> Value {
        let cur = o.currency.as_str();
        let mut obj = Map::new();
        let mut put = |k: &str, v: Value| {
            obj.insert(k.to_owned(), v);
        };
        put("id", json!(o.id));
        put("location_id", json!(o.location_id));
        if let Some(r) = &o.reference_id {
            put("reference_id", json!(r));
        }
        if let Some(s) = &o.source_name {
            put("source", json!({"name": s}));
        }
        if let Some(c) = &o.customer_id {
            put("customer_id", json!(c));
        }
        if !o.line_items.is_empty() {
            let lines: Vec<Value> = o.line_items.iter().map(|l| line_json(l, cur)).collect();
            put("line_items", Value::Array(lines));
        }
        if !o.taxes.is_empty() {
            let taxes: Vec<Value> = o
                .taxes
                .iter()
                .map(|t| {
                    json!({
                        "uid": t.uid, "name": t.name, "percentage": qty(t.percentage),
                        "type": if t.inclusive { "INCLUSIVE" } else { "ADDITIVE" },
                        "scope": if t.line_item_scope { "LINE_ITEM" } else { "ORDER" },
                        "applied_money": money(t.applied, cur),
                    })
                })
                .collect();
            put("taxes", Value::Array(taxes));
        }
        if !o.fulfillments.is_empty() {
            let f: Vec<Value> = o
                .fulfillments
                .iter()
                .map(|f| {
                    let mut v = json!({"uid": f.uid, "type": f.kind, "state": f.state,
                        "line_item_application": if f.entries.is_some() { "ENTRY_LIST" } else { "ALL" }});
                    if let Some(obj) = v.as_object_mut() {
                        if let Some(entries) = &f.entries {
                            let e: Vec<Value> = entries
                                .iter()
                                .map(|e| {
                                    json!({"uid": e.uid, "line_item_uid": e.line_item_uid,
                                           "quantity": qty(e.quantity)})
                                })
                                .collect();
                            obj.insert("entries".into(), Value::Array(e));
                        }
                        if let Some(p) = &f.pickup {
                            obj.insert("pickup_details".into(), Value::Object(p.clone()));
                        }
                        if let Some(s) = &f.shipment {
                            obj.insert("shipment_details".into(), Value::Object(s.clone()));
                        }
                    }
                    v
                })
                .collect();
            put("fulfillments", Value::Array(f));
        }
        if !o.returns.is_empty() {
            let r: Vec<Value> = o
                .returns
                .iter()
                .map(|r| {
                    let lines: Vec<Value> = r
                        .lines
                        .iter()
                        .map(|l| {
                            let mut v = json!({
                                "uid": l.uid, "quantity": qty(l.quantity), "item_type": "ITEM",
                                "base_price_money": money(l.base_price, cur),
                                "variation_total_price_money": money(l.gross, cur),
                                "gross_return_money": money(l.gross, cur),
                                "total_tax_money": money(l.tax, cur),
                                "total_discount_money": money(0, cur),
                                "total_money": money(l.total, cur),
                            });
                            if let Some(obj) = v.as_object_mut() {
                                for (k, val) in [
                                    ("name", &l.name),
                                    ("catalog_object_id", &l.catalog_object_id),
                                    ("source_line_item_uid", &l.source_line_item_uid),
                                ] {
                                    if let Some(val) = val {
                                        obj.insert(k.into(), json!(val));
                                    }
                                }
                            }
                            v
                        })
                        .collect();
                    let mut v = json!({"uid": r.uid, "return_line_items": lines});
                    if let (Some(s), Some(obj)) = (&r.source_order_id, v.as_object_mut()) {
                        obj.insert("source_order_id".into(), json!(s));
                    }
                    v
                })
                .collect();
            put("returns", Value::Array(r));
            put(
                "return_amounts",
                json!({"total_money": money(o.return_total(), cur),
                       "tax_money": money(o.return_tax(), cur)}),
            );
        }
        put(
            "net_amounts",
            json!({
                "total_money": money(o.total() - o.return_total(), cur),
                "tax_money": money(o.total_tax() - o.return_tax(), cur),
                "discount_money": money(0, cur), "tip_money": money(0, cur),
                "service_charge_money": money(0, cur),
            }),
        );
        if !o.tenders.is_empty() {
            let t: Vec<Value> = o
                .tenders
                .iter()
                .map(|t| {
                    let mut v = json!({
                        "id": t.id, "location_id": o.location_id, "transaction_id": o.id,
                        "created_at": format_ms(t.created_at), "amount_money": money(t.amount, cur),
                        "type": t.kind,
                    });
                    if let Some(obj) = v.as_object_mut() {
                        if let Some(p) = &t.payment_id {
                            obj.insert("payment_id".into(), json!(p));
                        }
                        if t.kind == "CASH" {
                            obj.insert(
                                "cash_details".into(),
                                json!({"buyer_tendered_money": money(t.amount, cur),
                                       "change_back_money": money(0, cur)}),
                            );
                        }
                    }
                    v
                })
                .collect();
            put("tenders", Value::Array(t));
        }
        if let Some(m) = &o.metadata {
            put("metadata", Value::Object(m.clone()));
        }
        put("created_at", json!(format_ms(o.created_at)));
        put("updated_at", json!(format_ms(o.updated_at)));
        if let Some(c) = o.closed_at {
            put("closed_at", json!(format_ms(c)));
        }
        put("state", json!(o.state));
        if let Some(v) = o.version {
            put("version", json!(v));
        }
        put("total_money", money(o.total(), cur));
        put("total_tax_money", money(o.total_tax(), cur));
        put("total_discount_money", money(0, cur));
        put("total_tip_money", money(0, cur));
        put("total_service_charge_money", money(0, cur));
        put(
            "net_amount_due_money",
            money((o.total() - o.tendered()).max(0), cur),
        );
        Value::Object(obj)
    }

    pub fn payment_json(p: &Payment) -> Value {
        let cur = p.currency.as_str();
        let mut v = json!({
            "id": p.id, "created_at": format_ms(p.created_at), "updated_at": format_ms(p.updated_at),
            "amount_money": money(p.amount, cur), "total_money": money(p.amount, cur),
            "approved_money": money(p.amount, cur), "status": p.status,
            "source_type": p.source_type, "location_id": p.location_id,
            "delay_action": "CANCEL", "version_token": format!("v{}", p.updated_at),
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(e) = &p.external_details {
                obj.insert("external_details".into(), e.clone());
            }
            if let Some(o) = &p.order_id {
                obj.insert("order_id".into(), json!(o));
            }
            if let Some(r) = &p.reference_id {
                obj.insert("reference_id".into(), json!(r));
            }
            if let Some(n) = &p.note {
                obj.insert("note".into(), json!(n));
            }
            if p.source_type == "CASH" {
                obj.insert(
                    "cash_details".into(),
                    json!({"buyer_supplied_money": money(p.amount, cur),
                           "change_back_money": money(0, cur)}),
                );
            }
        }
        v
    }

    // -----------------------------------------------------------------------------------------
    // inventory

    /// Sets or moves stock and records the change; returns the counts it touched (for webhooks).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_change(
        &mut self,
        kind: ChangeKind,
        variation_id: &str,
        location_id: &str,
        quantity: Decimal,
        occurred_at: i64,
        product: &str,
        transaction_id: Option<String>,
        total_price: Option<(i64, String)>,
    ) -> Vec<Value> {
        let now = self.now();
        let id = self.ids.id(26);
        let mut touched = Vec::new();
        let mut bump = |state: &str, delta: Option<Decimal>, set: Option<Decimal>, s: &mut Self| {
            if matches!(state, "NONE" | "SOLD" | "UNLINKED_RETURN") {
                return;
            }
            let key = (
                variation_id.to_owned(),
                location_id.to_owned(),
                state.to_owned(),
            );
            let entry = s.counts.entry(key.clone()).or_insert(Count {
                quantity: Decimal::ZERO,
                calculated_at: now,
            });
            if let Some(d) = delta {
                entry.quantity += d;
            }
            if let Some(v) = set {
                entry.quantity = v;
            }
            entry.calculated_at = now;
            touched.push(Self::count_json(&key, entry));
        };
        match &kind {
            ChangeKind::Adjustment { from, to } => {
                bump(from, Some(-quantity), None, self);
                bump(to, Some(quantity), None, self);
            }
            ChangeKind::PhysicalCount { state } => bump(state, None, Some(quantity), self),
        }
        self.changes.push(Change {
            id,
            kind,
            variation_id: variation_id.to_owned(),
            location_id: location_id.to_owned(),
            quantity,
            occurred_at,
            created_at: now,
            product: product.to_owned(),
            reference_id: None,
            transaction_id,
            total_price,
        });
        touched
    }

    pub fn emit_counts(&mut self, counts: Vec<Value>) {
        if counts.is_empty() {
            return;
        }
        for chunk in counts.chunks(100) {
            let id = self.ids.uuid();
            self.emit(
                "inventory.count.updated",
                "inventory_counts",
                id,
                json!({"inventory_counts": chunk}),
            );
        }
    }

    /// Moves stock IN_STOCK → SOLD for every line of an order (a POS sale, or a fulfilled order).
    /// Units a completed `ENTRY_LIST` fulfilment took off the shelf already are not moved again.
    pub fn deduct_stock_for(&mut self, order_id: &str, occurred_at: i64) {
        self.deduct(order_id, occurred_at, true);
    }

    /// Moves stock IN_STOCK → SOLD for the units of the order's completed `ENTRY_LIST`
    /// fulfilments not moved yet: a parcel leaves the shelf when it is handed over, not when
    /// the last parcel of its order is.
    pub fn deduct_handed_over(&mut self, order_id: &str, occurred_at: i64) {
        self.deduct(order_id, occurred_at, false);
    }

    /// Units per line item handed over by now: every unit once an `ALL` fulfilment completed
    /// (or for an order without fulfilments: a POS sale), else the entries of the completed
    /// `ENTRY_LIST` fulfilments.
    fn handed_over(o: &Order) -> BTreeMap<String, Decimal> {
        let all = o.fulfillments.is_empty()
            || o.fulfillments
                .iter()
                .any(|f| f.entries.is_none() && f.state == "COMPLETED");
        let mut out = BTreeMap::new();
        if all {
            for l in &o.line_items {
                out.insert(l.uid.clone(), l.quantity);
            }
            return out;
        }
        for f in o.fulfillments.iter().filter(|f| f.state == "COMPLETED") {
            for e in f.entries.iter().flatten() {
                *out.entry(e.line_item_uid.clone()).or_default() += e.quantity;
            }
        }
        out
    }

    fn deduct(&mut self, order_id: &str, occurred_at: i64, complete: bool) {
        let Some(o) = self.orders.get(order_id) else {
            return;
        };
        if o.stock_deducted {
            return;
        }
        let handed = Self::handed_over(o);
        let lines: Vec<(String, Decimal, i64)> = o
            .line_items
            .iter()
            .filter_map(|l| {
                let done = o.deducted.get(&l.uid).copied().unwrap_or_default();
                let q = handed.get(&l.uid).copied().unwrap_or_default() - done;
                if q <= Decimal::ZERO {
                    return None;
                }
                let total = if q == l.quantity {
                    l.total
                } else {
                    round_minor(Decimal::from(l.total) * q / l.quantity)
                };
                l.catalog_object_id.clone().map(|c| (c, q, total))
            })
            .collect();
        let returns: Vec<(String, Decimal)> = if complete {
            o.returns
                .iter()
                .flat_map(|r| &r.lines)
                .filter_map(|l| l.catalog_object_id.clone().map(|c| (c, l.quantity)))
                .collect()
        } else {
            Vec::new()
        };
        let (loc, cur) = (o.location_id.clone(), o.currency.clone());
        let mut touched = Vec::new();
        for (var, q, total) in lines {
            if self.variations.get(&var).is_some_and(|v| v.track_inventory) {
                touched.extend(self.apply_change(
                    ChangeKind::Adjustment {
                        from: "IN_STOCK".into(),
                        to: "SOLD".into(),
                    },
                    &var,
                    &loc,
                    q,
                    occurred_at,
                    "SQUARE_POS",
                    Some(order_id.to_owned()),
                    Some((total, cur.clone())),
                ));
            }
        }
        for (var, q) in returns {
            if self.variations.get(&var).is_some_and(|v| v.track_inventory) {
                touched.extend(self.apply_change(
                    ChangeKind::Adjustment {
                        from: "RETURNED_BY_CUSTOMER".into(),
                        to: "IN_STOCK".into(),
                    },
                    &var,
                    &loc,
                    q,
                    occurred_at,
                    "SQUARE_POS",
                    Some(order_id.to_owned()),
                    None,
                ));
            }
        }
        if let Some(o) = self.orders.get_mut(order_id) {
            o.deducted = handed;
            o.stock_deducted = complete;
        }
        self.emit_counts(touched);
    }

    // -----------------------------------------------------------------------------------------
    // orders

    /// Recomputes line, tax and order totals (minor units, half away from zero per line).
    pub fn compute_totals(o: &mut Order) {
        let hundred = Decimal::from(100);
        let mut applied_per_tax: BTreeMap<String, i64> = BTreeMap::new();
        for line in &mut o.line_items {
            line.gross = round_minor(Decimal::from(line.base_price) * line.quantity);
            let taxes: Vec<&OrderTax> = o
                .taxes
                .iter()
                .filter(|t| !t.line_item_scope || line.tax_uids.contains(&t.uid))
                .collect();
            let incl_rate: Decimal = taxes
                .iter()
                .filter(|t| t.inclusive)
                .map(|t| t.percentage)
                .sum();
            let gross = Decimal::from(line.gross);
            let mut incl_total = 0;
            let mut add_total = 0;
            line.applied.clear();
            for t in &taxes {
                let amount = if t.inclusive {
                    round_minor(gross * t.percentage / (hundred + incl_rate))
                } else {
                    let net = gross * hundred / (hundred + incl_rate);
                    round_minor(net * t.percentage / hundred)
                };
                if t.inclusive {
                    incl_total += amount;
                } else {
                    add_total += amount;
                }
                let uid = format!("{}-{}", line.uid, t.uid);
                line.applied.push((uid, t.uid.clone(), amount));
                *applied_per_tax.entry(t.uid.clone()).or_default() += amount;
            }
            line.tax = incl_total + add_total;
            line.total = line.gross + add_total;
        }
        for t in &mut o.taxes {
            t.applied = applied_per_tax.get(&t.uid).copied().unwrap_or(0);
        }
        for r in &mut o.returns {
            for l in &mut r.lines {
                l.gross = round_minor(Decimal::from(l.base_price) * l.quantity);
                l.total = l.gross;
            }
        }
    }

    pub fn order_event_body(o: &Order) -> Value {
        let mut v = json!({
            "order_id": o.id, "location_id": o.location_id, "state": o.state,
            "created_at": format_ms(o.created_at), "updated_at": format_ms(o.updated_at),
        });
        if let (Some(ver), Some(obj)) = (o.version, v.as_object_mut()) {
            obj.insert("version".into(), json!(ver));
        }
        v
    }

    pub fn emit_order_updated(&mut self, order_id: &str) {
        let Some(o) = self.orders.get(order_id) else {
            return;
        };
        let body = Self::order_event_body(o);
        self.emit(
            "order.updated",
            "order_updated",
            order_id.to_owned(),
            json!({ "order_updated": body }),
        );
    }

    /// Moves a fulfilment to `new_state`, stamping Square's read-only timestamps; completes,
    /// cancels and deducts stock as Square does; bumps the version; emits the webhooks.
    pub fn transition_fulfillment(
        &mut self,
        order_id: &str,
        uid: Option<&str>,
        new_state: &str,
        extra: Option<&Map<String, Value>>,
    ) -> ApiResult<()> {
        let now = self.now();
        let o = self
            .orders
            .get_mut(order_id)
            .ok_or_else(|| ApiError::not_found(format!("Order `{order_id}` not found.")))?;
        if matches!(o.state.as_str(), "COMPLETED" | "CANCELED") {
            return Err(ApiError::invalid(
                "BAD_REQUEST",
                format!("Order `{order_id}` is {} and cannot be updated.", o.state),
                "order.state",
            ));
        }
        let idx = match uid {
            Some(u) => o.fulfillments.iter().position(|f| f.uid == u),
            None => (!o.fulfillments.is_empty()).then_some(0),
        }
        .ok_or_else(|| {
            ApiError::invalid(
                "NOT_FOUND",
                format!("Order `{order_id}` has no such fulfillment."),
                "order.fulfillments",
            )
        })?;
        let f = &mut o.fulfillments[idx];
        let old = f.state.clone();
        let allowed = match old.as_str() {
            "PROPOSED" => &[
                "PROPOSED",
                "RESERVED",
                "PREPARED",
                "COMPLETED",
                "CANCELED",
                "FAILED",
            ][..],
            "RESERVED" => &["RESERVED", "PREPARED", "COMPLETED", "CANCELED", "FAILED"][..],
            "PREPARED" => &["PREPARED", "COMPLETED", "CANCELED", "FAILED"][..],
            _ => &[][..],
        };
        if !allowed.contains(&new_state) {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!(
                    "Fulfillment `{}` cannot move from {old} to {new_state}.",
                    f.uid
                ),
                "order.fulfillments[0].state",
            ));
        }
        f.state = new_state.to_owned();
        let ts = Value::String(format_ms(now));
        let stamp = match (f.kind.as_str(), new_state) {
            ("PICKUP", "RESERVED") => Some("accepted_at"),
            ("PICKUP", "PREPARED") => Some("ready_at"),
            ("PICKUP", "COMPLETED") => Some("picked_up_at"),
            ("PICKUP", "CANCELED") => Some("canceled_at"),
            ("PICKUP", "FAILED") => Some("rejected_at"),
            ("SHIPMENT", "RESERVED") => Some("in_progress_at"),
            ("SHIPMENT", "PREPARED") => Some("packaged_at"),
            ("SHIPMENT", "COMPLETED") => Some("shipped_at"),
            ("SHIPMENT", "CANCELED") => Some("canceled_at"),
            ("SHIPMENT", "FAILED") => Some("failed_at"),
            _ => None,
        };
        let details = if f.kind == "PICKUP" {
            f.pickup.get_or_insert_with(Map::new)
        } else {
            f.shipment.get_or_insert_with(Map::new)
        };
        if let Some(k) = stamp {
            details.insert(k.into(), ts);
        }
        if let Some(extra) = extra {
            for (k, v) in extra {
                details.insert(k.clone(), v.clone());
            }
        }
        let uid = f.uid.clone();
        let parcel_done = new_state == "COMPLETED" && f.entries.is_some() && o.paid;
        let all_done = o
            .fulfillments
            .iter()
            .all(|f| matches!(f.state.as_str(), "COMPLETED" | "CANCELED" | "FAILED"));
        let any_completed = o.fulfillments.iter().any(|f| f.state == "COMPLETED");
        let mut deduct = false;
        if all_done {
            if any_completed && o.paid {
                o.state = "COMPLETED".into();
                o.closed_at = Some(now);
                deduct = true;
            } else if !any_completed {
                o.state = "CANCELED".into();
                o.closed_at = Some(now);
            }
        }
        o.updated_at = now;
        o.version = Some(o.version.unwrap_or(1) + 1);
        let mut ev = Self::order_event_body(o);
        if let Some(obj) = ev.as_object_mut() {
            obj.insert(
                "fulfillment_update".into(),
                json!([{"fulfillment_uid": uid, "old_state": old, "new_state": new_state}]),
            );
        }
        if deduct {
            self.deduct_stock_for(order_id, now);
        } else if parcel_done {
            self.deduct_handed_over(order_id, now);
        }
        self.emit(
            "order.fulfillment.updated",
            "order_fulfillment_updated",
            order_id.to_owned(),
            json!({ "order_fulfillment_updated": ev }),
        );
        self.emit_order_updated(order_id);
        Ok(())
    }

    /// Splits a fulfilment into `ENTRY_LIST` fulfilments, one per parcel, as a seller does in
    /// Square's seller tools (the API cannot: it creates orders with one fulfilment). The
    /// fulfilment split (`uid`, or the order's first) must be `ALL` and not finished; the
    /// parcels must cover every unit of every line exactly once. Each new fulfilment takes
    /// the old one's type, state and details under a new uid; the version moves on.
    pub fn split_fulfillment(
        &mut self,
        order_id: &str,
        uid: Option<&str>,
        parcels: &[Vec<EntryIn>],
    ) -> ApiResult<()> {
        let now = self.now();
        let o = self
            .orders
            .get(order_id)
            .ok_or_else(|| ApiError::not_found(format!("Order `{order_id}` not found.")))?;
        if matches!(o.state.as_str(), "COMPLETED" | "CANCELED") {
            return Err(ApiError::invalid(
                "BAD_REQUEST",
                format!("Order `{order_id}` is {} and cannot be updated.", o.state),
                "order.state",
            ));
        }
        let idx = match uid {
            Some(u) => o.fulfillments.iter().position(|f| f.uid == u),
            None => (!o.fulfillments.is_empty()).then_some(0),
        }
        .ok_or_else(|| {
            ApiError::invalid(
                "NOT_FOUND",
                format!("Order `{order_id}` has no such fulfillment."),
                "fulfillment_uid",
            )
        })?;
        let old = &o.fulfillments[idx];
        if old.entries.is_some() {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!(
                    "Fulfillment `{}` is an ENTRY_LIST already; split an ALL fulfillment.",
                    old.uid
                ),
                "fulfillment_uid",
            ));
        }
        if !matches!(old.state.as_str(), "PROPOSED" | "RESERVED" | "PREPARED") {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!(
                    "Fulfillment `{}` is {} and cannot be split.",
                    old.uid, old.state
                ),
                "fulfillment_uid",
            ));
        }
        if parcels.len() < 2 {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                "A split needs at least two parcels.",
                "parcels",
            ));
        }
        let lists: Vec<(String, Vec<EntryIn>)> = parcels
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("parcels[{i}]"), p.clone()))
            .collect();
        let parsed = check_entries(&o.line_items, &lists, true, "parcels")?;
        let template = old.clone();
        let mut new = Vec::new();
        for mut entries in parsed {
            for e in &mut entries {
                e.uid = self.ids.id(22);
            }
            new.push(Fulfillment {
                uid: self.ids.id(22),
                entries: Some(entries),
                ..template.clone()
            });
        }
        let Some(o) = self.orders.get_mut(order_id) else {
            return Ok(());
        };
        o.fulfillments.splice(idx..=idx, new);
        o.updated_at = now;
        o.version = Some(o.version.unwrap_or(1) + 1);
        self.emit_order_updated(order_id);
        Ok(())
    }

    /// Marks an order paid when its tenders cover the total; pickup and shipment orders then
    /// appear on the till; an order without fulfilments completes at once.
    pub fn settle_if_paid(&mut self, order_id: &str) {
        let now = self.now();
        let Some(o) = self.orders.get_mut(order_id) else {
            return;
        };
        if o.paid || o.tendered() < o.total() {
            return;
        }
        o.paid = true;
        let complete = o.fulfillments.is_empty();
        if complete {
            o.state = "COMPLETED".into();
            o.closed_at = Some(now);
        }
        if complete {
            self.deduct_stock_for(order_id, now);
        }
    }

    /// Orders the till at `location_id` shows: POS sales, and paid API orders with a pickup or
    /// shipment fulfilment (unpaid API orders and DELIVERY orders stay off the till).
    pub fn till_orders(&self, location_id: &str) -> Vec<&Order> {
        self.orders
            .values()
            .filter(|o| o.location_id == location_id && !o.offline_pending)
            .filter(|o| {
                o.version.is_none()
                    || (o.paid
                        && o.fulfillments
                            .iter()
                            .any(|f| f.kind == "PICKUP" || f.kind == "SHIPMENT"))
            })
            .collect()
    }
}

fn line_json(l: &LineItem, cur: &str) -> Value {
    let mut v = json!({
        "uid": l.uid, "quantity": qty(l.quantity), "item_type": "ITEM",
        "base_price_money": money(l.base_price, cur),
        "variation_total_price_money": money(l.gross, cur),
        "gross_sales_money": money(l.gross, cur),
        "total_tax_money": money(l.tax, cur),
        "total_discount_money": money(0, cur),
        "total_money": money(l.total, cur),
        "total_service_charge_money": money(0, cur),
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in [
            ("name", &l.name),
            ("catalog_object_id", &l.catalog_object_id),
            ("variation_name", &l.variation_name),
            ("note", &l.note),
        ] {
            if let Some(val) = val {
                obj.insert(k.into(), json!(val));
            }
        }
        if let Some(m) = &l.metadata {
            obj.insert("metadata".into(), Value::Object(m.clone()));
        }
        if !l.applied.is_empty() {
            let a: Vec<Value> = l
                .applied
                .iter()
                .map(|(uid, tax_uid, amount)| {
                    json!({"uid": uid, "tax_uid": tax_uid, "applied_money": money(*amount, cur)})
                })
                .collect();
            obj.insert("applied_taxes".into(), Value::Array(a));
        }
    }
    v
}
