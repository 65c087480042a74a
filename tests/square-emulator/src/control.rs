//! The control API under `/__emulator/`: seed, ring up sales and returns, move fulfilments,
//! take tills offline, set the clock, inject faults and malformed records, read the call log
//! and the webhook log. No auth (it is a test and demo harness). See the crate README.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{
    ChangeKind, EntryIn, Item, LineItem, Location, Order, OrderReturn, OrderTax, ReturnLine, State,
    Tender, Variation,
};
use crate::time::{format_ms, parse_ms};
use crate::webhooks::{Subscription, WebhookFaults};

fn parse<T: for<'de> Deserialize<'de>>(b: &Value) -> ApiResult<T> {
    serde_json::from_value(b.clone()).map_err(|e| {
        ApiError::invalid(
            "BAD_REQUEST",
            format!("Invalid control request: {e}"),
            "body",
        )
    })
}

fn dec(v: &Value, field: &str) -> ApiResult<Decimal> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    s.parse()
        .map_err(|_| ApiError::invalid("INVALID_VALUE", format!("`{v}` is not a decimal."), field))
}

/// Dispatches one control call; answers 200 with JSON or a Square-shaped error.
pub fn handle(s: &mut State, method: &str, path: &str, body: &Value) -> ApiResult<Value> {
    let rest = path.trim_start_matches("/__emulator").trim_matches('/');
    let segs: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    match (method, segs.as_slice()) {
        ("GET", ["health"]) => Ok(json!({"ok": true, "merchant_id": s.merchant_id})),
        ("GET", ["clock"]) => Ok(clock_json(s)),
        ("POST", ["clock"]) => set_clock(s, body),
        ("POST", ["config"]) => {
            if let Some(n) = body.get("catalog_page_size").and_then(Value::as_u64) {
                s.catalog_page_size = usize::try_from(n.max(1)).unwrap_or(100);
            }
            Ok(json!({"catalog_page_size": s.catalog_page_size}))
        }
        ("POST", ["seed"]) => seed(s, body),
        ("POST", ["stock"]) => set_stock(s, body),
        ("GET", ["stock"]) => Ok(stock_json(s)),
        ("POST", ["sales"]) => ring_up(s, body, false),
        ("POST", ["returns"]) => ring_up(s, body, true),
        ("POST", ["orders", id, "fulfillment"]) => advance(s, id, body),
        ("POST", ["orders", id, "split"]) => split(s, id, body),
        ("GET", ["orders", id]) => s
            .orders
            .get(*id)
            .map(|o| {
                json!({"order": s.order_json(o), "offline_pending": o.offline_pending,
                            "paid": o.paid})
            })
            .ok_or_else(|| ApiError::not_found(format!("Order `{id}` not found."))),
        ("POST", ["tills", loc, "offline"]) => {
            require_location(s, loc)?;
            s.offline_tills.insert((*loc).to_owned());
            Ok(json!({"location_id": loc, "offline": true}))
        }
        ("POST", ["tills", loc, "online"]) => replay(s, loc),
        ("GET", ["tills", loc, "orders"]) => {
            let orders: Vec<Value> = s.till_orders(loc).iter().map(|o| s.order_json(o)).collect();
            Ok(json!({"location_id": loc, "orders": orders}))
        }
        ("GET", ["faults"]) => Ok(json!({"rules": s.faults})),
        ("POST", ["faults"]) => add_faults(s, body),
        ("DELETE", ["faults"]) => {
            s.faults.clear();
            Ok(json!({"rules": []}))
        }
        ("POST", ["webhooks", "subscription"]) => {
            let sub: Subscription = parse(body)?;
            s.webhooks.subscription = Some(sub.clone());
            Ok(json!({"subscription": sub}))
        }
        ("DELETE", ["webhooks", "subscription"]) => {
            s.webhooks.subscription = None;
            Ok(json!({"subscription": null}))
        }
        ("POST", ["webhooks", "faults"]) => {
            s.webhooks.faults = parse::<WebhookFaults>(body)?;
            Ok(json!({"faults": s.webhooks.faults}))
        }
        ("POST", ["webhooks", "flush"]) => Ok(json!({"released": s.webhooks.flush()})),
        ("GET", ["webhooks"]) => Ok(json!({
            "subscription": s.webhooks.subscription, "events": s.webhooks.events,
            "deliveries": s.webhooks.deliveries, "held": s.webhooks.held.len(),
        })),
        ("POST", ["inject", "count"]) => {
            let rec = body.get("record").cloned().unwrap_or_else(|| body.clone());
            s.raw_counts.push(rec);
            Ok(json!({"injected_counts": s.raw_counts.len()}))
        }
        ("POST", ["inject", "order"]) => {
            let loc = body
                .get("location_id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid("MISSING_REQUIRED_PARAMETER", "location_id", "location_id")
                })?
                .to_owned();
            let rec = body.get("record").cloned().unwrap_or(Value::Null);
            s.raw_orders.push((loc, rec));
            Ok(json!({"injected_orders": s.raw_orders.len()}))
        }
        ("DELETE", ["inject"]) => {
            s.raw_counts.clear();
            s.raw_orders.clear();
            Ok(json!({"injected_counts": 0, "injected_orders": 0}))
        }
        ("GET", ["calls"]) => Ok(json!({"calls": s.calls})),
        ("DELETE", ["calls"]) => {
            s.calls.clear();
            Ok(json!({"calls": []}))
        }
        _ => Err(ApiError::not_found(format!(
            "No control endpoint {method} {path}; see tests/square-emulator/README.md."
        ))),
    }
}

fn clock_json(s: &State) -> Value {
    json!({"now": format_ms(s.now()), "now_ms": s.now(), "real_time": s.clock.real_time})
}

fn set_clock(s: &mut State, b: &Value) -> ApiResult<Value> {
    if let Some(t) = b.get("set").and_then(Value::as_str) {
        let ms = parse_ms(t).ok_or_else(|| {
            ApiError::invalid("INVALID_TIME", format!("`{t}` is not RFC 3339."), "set")
        })?;
        s.clock.set(ms);
    }
    if let Some(ms) = b.get("advance_ms").and_then(Value::as_i64) {
        s.clock.advance(ms);
    }
    if let Some(sec) = b.get("advance_seconds").and_then(Value::as_i64) {
        s.clock.advance(sec * 1000);
    }
    if let Some(h) = b.get("advance_hours").and_then(Value::as_i64) {
        s.clock.advance(h * 3_600_000);
    }
    Ok(clock_json(s))
}

fn require_location(s: &State, id: &str) -> ApiResult<Location> {
    s.locations
        .iter()
        .find(|l| l.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::invalid(
                "NOT_FOUND",
                format!("Location `{id}` not found."),
                "location_id",
            )
        })
}

/// Finds a variation by `variation_id` or by `sku` (first match; SKUs may repeat in Square).
fn find_variation(s: &State, v: &Value, field: &str) -> ApiResult<Variation> {
    if let Some(id) = v.get("variation_id").and_then(Value::as_str) {
        return s.variations.get(id).cloned().ok_or_else(|| {
            ApiError::invalid("NOT_FOUND", format!("Variation `{id}` not found."), field)
        });
    }
    if let Some(sku) = v.get("sku").and_then(Value::as_str) {
        return s
            .variations
            .values()
            .find(|x| x.sku.as_deref() == Some(sku))
            .cloned()
            .ok_or_else(|| {
                ApiError::invalid(
                    "NOT_FOUND",
                    format!("No variation with SKU `{sku}`."),
                    field,
                )
            });
    }
    Err(ApiError::invalid(
        "MISSING_REQUIRED_PARAMETER",
        "Give variation_id or sku.",
        field,
    ))
}

fn seed(s: &mut State, b: &Value) -> ApiResult<Value> {
    let now = s.now();
    let mut loc_ids = Map::new();
    for (i, l) in b
        .get("locations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("locations[{i}]");
        let name = l
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("MISSING_REQUIRED_PARAMETER", "name", &field))?
            .to_owned();
        let id = l
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| s.ids.id(13), str::to_owned);
        let get = |k: &str, d: &str| l.get(k).and_then(Value::as_str).unwrap_or(d).to_owned();
        let loc = Location {
            id: id.clone(),
            name: name.clone(),
            status: get("status", "ACTIVE"),
            country: get("country", "GB"),
            currency: get("currency", "GBP"),
            timezone: get("timezone", "Europe/London"),
            created_at: now,
        };
        s.locations.retain(|x| x.id != id);
        s.locations.push(loc);
        loc_ids.insert(name, Value::String(id));
    }
    let mut skus = Map::new();
    let mut item_ids = Vec::new();
    let mut touched_catalog = false;
    for (i, it) in b
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("items[{i}]");
        let name = it
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("MISSING_REQUIRED_PARAMETER", "name", &field))?
            .to_owned();
        let id = it
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| s.ids.id(24), str::to_owned);
        let currency = s
            .locations
            .first()
            .map_or_else(|| "GBP".to_owned(), |l| l.currency.clone());
        let mut var_ids = Vec::new();
        for (j, v) in it
            .get("variations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let vid = v
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| s.ids.id(24), str::to_owned);
            let version = s.next_catalog_version();
            let var = Variation {
                id: vid.clone(),
                item_id: id.clone(),
                name: v
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("Regular")
                    .to_owned(),
                sku: v.get("sku").and_then(Value::as_str).map(str::to_owned),
                price: v.get("price").and_then(Value::as_i64),
                currency: v
                    .get("currency")
                    .and_then(Value::as_str)
                    .map_or_else(|| currency.clone(), str::to_owned),
                track_inventory: v
                    .get("track_inventory")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                ordinal: i64::try_from(j).unwrap_or(0),
                version,
                updated_at: now,
                is_deleted: false,
            };
            if let Some(sku) = &var.sku {
                skus.insert(sku.clone(), Value::String(vid.clone()));
            }
            s.variations.insert(vid.clone(), var);
            var_ids.push(vid);
        }
        let version = s.next_catalog_version();
        s.items.insert(
            id.clone(),
            Item {
                id: id.clone(),
                name,
                version,
                updated_at: now,
                is_deleted: false,
                variation_ids: var_ids,
            },
        );
        item_ids.push(Value::String(id));
        touched_catalog = true;
    }
    if touched_catalog {
        s.emit(
            "catalog.version.updated",
            "catalog_version",
            String::new(),
            json!({"catalog_version": {"updated_at": format_ms(now)}}),
        );
    }
    let stock = b.get("stock").cloned().unwrap_or(Value::Null);
    let mut counts = Vec::new();
    if let Some(rows) = stock.as_array() {
        for (i, row) in rows.iter().enumerate() {
            counts.extend(physical_count(s, row, &format!("stock[{i}]"))?);
        }
    }
    s.emit_counts(counts);
    Ok(json!({"locations": loc_ids, "items": item_ids, "variations_by_sku": skus}))
}

fn physical_count(s: &mut State, row: &Value, field: &str) -> ApiResult<Vec<Value>> {
    let var = find_variation(s, row, field)?;
    let loc = row
        .get("location_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("MISSING_REQUIRED_PARAMETER", "location_id", field))?;
    require_location(s, loc)?;
    let q = dec(row.get("quantity").unwrap_or(&Value::Null), field)?;
    let state = row
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("IN_STOCK")
        .to_owned();
    let now = s.now();
    Ok(s.apply_change(
        ChangeKind::PhysicalCount { state },
        &var.id,
        loc,
        q,
        now,
        "DASHBOARD",
        None,
        None,
    ))
}

fn set_stock(s: &mut State, b: &Value) -> ApiResult<Value> {
    let rows = match b.get("counts").and_then(Value::as_array) {
        Some(rows) => rows.clone(),
        None => vec![b.clone()],
    };
    let mut touched = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        touched.extend(physical_count(s, row, &format!("counts[{i}]"))?);
    }
    s.emit_counts(touched.clone());
    Ok(json!({"counts": touched}))
}

fn stock_json(s: &State) -> Value {
    let counts: Vec<Value> = s
        .counts
        .iter()
        .map(|(k, c)| State::count_json(k, c))
        .collect();
    json!({"counts": counts})
}

#[derive(Debug, Deserialize)]
struct TaxSpec {
    #[serde(default)]
    name: Option<String>,
    percentage: Value,
    #[serde(default)]
    inclusive: bool,
}

/// Rings up an in-store sale (or, with `is_return`, a return) as the till would: a completed
/// POS order without a version, a tender, stock moved IN_STOCK → SOLD (or back). On an offline
/// till the sale waits, invisible to the API, until the till comes back online.
fn ring_up(s: &mut State, b: &Value, is_return: bool) -> ApiResult<Value> {
    let loc_id = b
        .get("location_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid("MISSING_REQUIRED_PARAMETER", "location_id", "location_id")
        })?;
    let loc = require_location(s, loc_id)?;
    let now = s.now();
    let created_at = match b.get("created_at").and_then(Value::as_str) {
        Some(t) => parse_ms(t)
            .ok_or_else(|| ApiError::invalid("INVALID_TIME", "created_at", "created_at"))?,
        None => now,
    };
    let lines_in = b
        .get("lines")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if lines_in.is_empty() {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "lines",
            "lines",
        ));
    }
    let taxes: Vec<OrderTax> = match b.get("tax") {
        Some(t) if !t.is_null() => {
            let t: TaxSpec = parse(t)?;
            vec![OrderTax {
                uid: "tax-1".into(),
                name: t.name.unwrap_or_else(|| "VAT".into()),
                percentage: dec(&t.percentage, "tax.percentage")?,
                inclusive: t.inclusive,
                line_item_scope: false,
                applied: 0,
            }]
        }
        _ => Vec::new(),
    };
    let mut lines = Vec::new();
    let mut return_lines = Vec::new();
    for (i, l) in lines_in.iter().enumerate() {
        let field = format!("lines[{i}]");
        let var = find_variation(s, l, &field)?;
        let q = dec(l.get("quantity").unwrap_or(&json!("1")), &field)?;
        let price = l
            .get("unit_price")
            .and_then(Value::as_i64)
            .or(var.price)
            .ok_or_else(|| ApiError::invalid("MISSING_REQUIRED_PARAMETER", "unit_price", &field))?;
        let name = s.items.get(&var.item_id).map(|i| i.name.clone());
        let uid = s.ids.id(22);
        if is_return {
            return_lines.push(ReturnLine {
                uid,
                source_line_item_uid: l
                    .get("source_line_item_uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                name,
                quantity: q,
                catalog_object_id: Some(var.id.clone()),
                base_price: price,
                gross: 0,
                tax: 0,
                total: 0,
            });
        } else {
            lines.push(LineItem {
                uid,
                name,
                quantity: q,
                catalog_object_id: Some(var.id.clone()),
                variation_name: Some(var.name.clone()),
                base_price: price,
                note: None,
                tax_uids: Vec::new(),
                metadata: None,
                gross: 0,
                tax: 0,
                total: 0,
                applied: Vec::new(),
            });
        }
    }
    let id = s.ids.id(26);
    let returns = if is_return {
        vec![OrderReturn {
            uid: s.ids.id(22),
            source_order_id: b
                .get("source_order_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            lines: return_lines,
        }]
    } else {
        Vec::new()
    };
    let offline = s.offline_tills.contains(loc_id);
    let mut order = Order {
        id: id.clone(),
        location_id: loc.id.clone(),
        reference_id: b
            .get("reference_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        source_name: Some("Square Point of Sale".into()),
        customer_id: None,
        currency: loc.currency.clone(),
        line_items: lines,
        taxes: if is_return { Vec::new() } else { taxes },
        fulfillments: Vec::new(),
        returns,
        tenders: Vec::new(),
        metadata: None,
        created_at,
        updated_at: created_at,
        closed_at: Some(created_at),
        state: "COMPLETED".into(),
        version: None,
        paid: true,
        offline_pending: offline,
        stock_deducted: false,
        deducted: std::collections::BTreeMap::new(),
    };
    State::compute_totals(&mut order);
    let total = order.total();
    if total > 0 {
        let tender = b
            .get("tender")
            .and_then(Value::as_str)
            .unwrap_or("CASH")
            .to_uppercase();
        order.tenders.push(Tender {
            id: s.ids.id(26),
            kind: if tender == "CARD" {
                "CARD".into()
            } else {
                "CASH".into()
            },
            amount: total,
            created_at,
            payment_id: None,
        });
    }
    s.orders.insert(id.clone(), order);
    if !offline {
        s.deduct_stock_for(&id, created_at);
        s.emit_order_updated(&id);
    }
    let o = s
        .orders
        .get(&id)
        .map(|o| s.order_json(o))
        .unwrap_or(Value::Null);
    Ok(json!({"order_id": id, "offline": offline, "order": o}))
}

/// Brings a till back online: its held sales reach Square now (`updated_at` = now) with their
/// original `created_at`, and their stock moves carry the original `occurred_at`.
fn replay(s: &mut State, loc: &str) -> ApiResult<Value> {
    require_location(s, loc)?;
    s.offline_tills.remove(loc);
    let now = s.now();
    let pending: Vec<(i64, String)> = s
        .orders
        .values()
        .filter(|o| o.location_id == loc && o.offline_pending)
        .map(|o| (o.created_at, o.id.clone()))
        .collect();
    let mut sorted = pending;
    sorted.sort();
    let mut ids = Vec::new();
    for (created, id) in sorted {
        if let Some(o) = s.orders.get_mut(&id) {
            o.offline_pending = false;
            o.updated_at = now;
        }
        s.deduct_stock_for(&id, created);
        s.emit_order_updated(&id);
        ids.push(Value::String(id));
    }
    Ok(json!({"location_id": loc, "offline": false, "replayed": ids}))
}

/// Splits an order's fulfilment into parcels as a seller does in Square's seller tools:
/// `{fulfillment_uid?, parcels: [[{line_item_uid | sku | variation_id, quantity}, ...], ...]}`.
fn split(s: &mut State, id: &str, b: &Value) -> ApiResult<Value> {
    let o = s
        .orders
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("Order `{id}` not found.")))?;
    let Some(raw) = b.get("parcels").and_then(Value::as_array) else {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "Give parcels: a list of lists of {line_item_uid | sku | variation_id, quantity}.",
            "parcels",
        ));
    };
    let mut parcels = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let Some(entries) = p.as_array() else {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                "A parcel is a list of entries.",
                &format!("parcels[{i}]"),
            ));
        };
        let mut list = Vec::new();
        for (j, e) in entries.iter().enumerate() {
            let field = format!("parcels[{i}][{j}]");
            let line_item_uid = match e.get("line_item_uid").and_then(Value::as_str) {
                Some(u) => Some(u.to_owned()),
                None => {
                    // By product: the one line of the order that sells that variation.
                    let var = find_variation(s, e, &field)?;
                    let mut of_var = o
                        .line_items
                        .iter()
                        .filter(|l| l.catalog_object_id.as_deref() == Some(var.id.as_str()));
                    match (of_var.next(), of_var.next()) {
                        (Some(l), None) => Some(l.uid.clone()),
                        (None, _) => {
                            return Err(ApiError::invalid(
                                "NOT_FOUND",
                                format!(
                                    "Order `{id}` has no line item for variation `{}`.",
                                    var.id
                                ),
                                &field,
                            ));
                        }
                        (Some(_), Some(_)) => {
                            return Err(ApiError::invalid(
                                "INVALID_VALUE",
                                format!(
                                    "Order `{id}` has several line items for variation `{}`: give line_item_uid.",
                                    var.id
                                ),
                                &field,
                            ));
                        }
                    }
                }
            };
            let quantity = match e.get("quantity") {
                Some(Value::String(q)) => Some(q.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            list.push(EntryIn {
                field,
                line_item_uid,
                quantity,
            });
        }
        parcels.push(list);
    }
    let uid = b
        .get("fulfillment_uid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.split_fulfillment(id, uid.as_deref(), &parcels)?;
    let o = s
        .orders
        .get(id)
        .map(|o| s.order_json(o))
        .unwrap_or(Value::Null);
    Ok(json!({"order": o}))
}

/// Moves an order's fulfilment as store staff would in Square's Order Manager.
fn advance(s: &mut State, id: &str, b: &Value) -> ApiResult<Value> {
    let action = b.get("action").and_then(Value::as_str).unwrap_or("");
    let state = match action {
        "accepted" | "accept" => "RESERVED",
        "picked" | "packed" | "ready" => "PREPARED",
        "shipped" | "picked_up" | "collected" | "completed" => "COMPLETED",
        "cancelled" | "canceled" => "CANCELED",
        "failed" | "rejected" => "FAILED",
        other => {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!(
                    "Unknown action `{other}`: use accepted, picked, shipped, picked_up, cancelled or failed."
                ),
                "action",
            ));
        }
    };
    let mut extra = Map::new();
    for k in [
        "tracking_number",
        "carrier",
        "tracking_url",
        "cancel_reason",
        "failure_reason",
    ] {
        if let Some(v) = b.get(k) {
            extra.insert(k.to_owned(), v.clone());
        }
    }
    let uid = b
        .get("fulfillment_uid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.transition_fulfillment(id, uid.as_deref(), state, Some(&extra))?;
    let o = s
        .orders
        .get(id)
        .map(|o| s.order_json(o))
        .unwrap_or(Value::Null);
    Ok(json!({"order": o}))
}

fn add_faults(s: &mut State, b: &Value) -> ApiResult<Value> {
    let rules: Vec<Value> = match b.get("rules").and_then(Value::as_array) {
        Some(r) => r.clone(),
        None => vec![b.clone()],
    };
    for r in rules {
        let mut rule: crate::state::FaultRule = parse(&r)?;
        rule.id = s.next_fault_id;
        s.next_fault_id += 1;
        s.faults.push(rule);
    }
    Ok(json!({"rules": s.faults}))
}
