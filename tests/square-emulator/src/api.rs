//! The Square endpoints: request parsing, validation with Square's error codes, filtering,
//! sorting and cursor paging. Pure functions over [`State`]; the server module does HTTP.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::ids::fnv1a;
use crate::state::{
    ChangeKind, EntryIn, Fulfillment, LineItem, Order, OrderTax, Payment, State, Tender,
    check_entries,
};
use crate::time::{format_ms, parse_ms};

/// Square's `operationId` for a method and path (e.g. `SearchOrders`), for the call log and the
/// contract test; `None` for paths the emulator does not implement.
pub fn operation_of(method: &str, path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match (method, segs.as_slice()) {
        ("GET", ["v2", "locations"]) => "ListLocations",
        ("GET", ["v2", "locations", _]) => "RetrieveLocation",
        ("GET", ["v2", "catalog", "list"]) => "ListCatalog",
        ("POST", ["v2", "catalog", "search"]) => "SearchCatalogObjects",
        ("POST", ["v2", "catalog", "batch-retrieve"]) => "BatchRetrieveCatalogObjects",
        ("POST", ["v2", "inventory", "counts", "batch-retrieve"]) => "BatchRetrieveInventoryCounts",
        ("POST", ["v2", "inventory", "changes", "batch-retrieve"]) => {
            "BatchRetrieveInventoryChanges"
        }
        ("POST", ["v2", "orders"]) => "CreateOrder",
        ("POST", ["v2", "orders", "search"]) => "SearchOrders",
        ("POST", ["v2", "orders", "batch-retrieve"]) => "BatchRetrieveOrders",
        ("GET", ["v2", "orders", _]) => "RetrieveOrder",
        ("PUT", ["v2", "orders", _]) => "UpdateOrder",
        ("POST", ["v2", "orders", _, "pay"]) => "PayOrder",
        ("POST", ["v2", "payments"]) => "CreatePayment",
        ("GET", ["v2", "payments", _]) => "GetPayment",
        _ => return None,
    })
}

/// Dispatches one authenticated `/v2/...` call.
pub fn route(
    s: &mut State,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
    out_of_order: bool,
) -> ApiResult<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let empty = Value::Object(Map::new());
    let b = body.unwrap_or(&empty);
    match (method, segs.as_slice()) {
        ("GET", ["v2", "locations"]) => list_locations(s),
        ("GET", ["v2", "locations", id]) => retrieve_location(s, id),
        ("GET", ["v2", "catalog", "list"]) => list_catalog(s, query),
        ("POST", ["v2", "catalog", "search"]) => search_catalog(s, b),
        ("POST", ["v2", "catalog", "batch-retrieve"]) => batch_retrieve_catalog(s, b),
        ("POST", ["v2", "inventory", "counts", "batch-retrieve"]) => {
            batch_counts(s, b, out_of_order)
        }
        ("POST", ["v2", "inventory", "changes", "batch-retrieve"]) => batch_changes(s, b),
        ("POST", ["v2", "orders"]) => idempotent(s, "CreateOrder", b, create_order),
        ("POST", ["v2", "orders", "search"]) => search_orders(s, b, out_of_order),
        ("POST", ["v2", "orders", "batch-retrieve"]) => batch_retrieve_orders(s, b),
        ("GET", ["v2", "orders", id]) => retrieve_order(s, id),
        ("PUT", ["v2", "orders", id]) => {
            let id = (*id).to_owned();
            idempotent(s, "UpdateOrder", b, |s, b| update_order(s, &id, b))
        }
        ("POST", ["v2", "orders", id, "pay"]) => {
            let id = (*id).to_owned();
            idempotent(s, "PayOrder", b, |s, b| pay_order(s, &id, b))
        }
        ("POST", ["v2", "payments"]) => idempotent(s, "CreatePayment", b, create_payment),
        ("GET", ["v2", "payments", id]) => get_payment(s, id),
        _ => Err(ApiError::not_found(format!(
            "The emulator does not implement {method} {path}."
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

fn parse<T: for<'de> Deserialize<'de>>(b: &Value) -> ApiResult<T> {
    serde_json::from_value(b.clone())
        .map_err(|e| ApiError::invalid("BAD_REQUEST", format!("Invalid request body: {e}"), "body"))
}

fn parse_time(s: &str, field: &str) -> ApiResult<i64> {
    parse_ms(s).ok_or_else(|| {
        ApiError::invalid(
            "INVALID_TIME",
            format!("`{s}` is not an RFC 3339 timestamp."),
            field,
        )
    })
}

fn parse_qty(s: &str, field: &str) -> ApiResult<Decimal> {
    s.parse::<Decimal>().map_err(|_| {
        ApiError::invalid(
            "INVALID_VALUE",
            format!("`{s}` is not a decimal quantity."),
            field,
        )
    })
}

/// Hash of the request body without `cursor` (a cursor is only valid for the same request).
fn body_hash(b: &Value) -> u64 {
    let mut b = b.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("cursor");
    }
    fnv1a(b.to_string().as_bytes())
}

/// An opaque cursor: offset, a frozen "now" (SearchOrders' default end), body hash.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    offset: usize,
    frozen_now: i64,
}

fn encode_cursor(c: Cursor, hash: u64) -> String {
    format!("{:x}.{:x}.{hash:016x}", c.offset, c.frozen_now)
}

fn decode_cursor(raw: Option<&str>, hash: u64, now: i64) -> ApiResult<Cursor> {
    let Some(raw) = raw else {
        return Ok(Cursor {
            offset: 0,
            frozen_now: now,
        });
    };
    let bad = || {
        ApiError::invalid(
            "INVALID_CURSOR",
            "The cursor is invalid, expired, or was issued for a different request.",
            "cursor",
        )
    };
    let parts: Vec<&str> = raw.split('.').collect();
    let [off, frozen, h] = parts.as_slice() else {
        return Err(bad());
    };
    let offset = usize::from_str_radix(off, 16).map_err(|_| bad())?;
    let frozen_now = i64::from_str_radix(frozen, 16).map_err(|_| bad())?;
    let h = u64::from_str_radix(h, 16).map_err(|_| bad())?;
    if h != hash {
        return Err(bad());
    }
    Ok(Cursor { offset, frozen_now })
}

fn page<T: Clone>(items: &[T], c: Cursor, limit: usize, hash: u64) -> (Vec<T>, Option<String>) {
    let start = c.offset.min(items.len());
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| {
        encode_cursor(
            Cursor {
                offset: end,
                frozen_now: c.frozen_now,
            },
            hash,
        )
    });
    (items[start..end].to_vec(), next)
}

fn check_limit(limit: Option<i64>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(l) if l >= 1 && usize::try_from(l).is_ok_and(|l| l <= max) => {
            Ok(usize::try_from(l).unwrap_or(default))
        }
        Some(l) => Err(ApiError::invalid(
            "INVALID_VALUE",
            format!("`limit` must be between 1 and {max}; got {l}."),
            "limit",
        )),
    }
}

fn with_cursor(mut v: Value, cursor: Option<String>) -> Value {
    if let (Some(c), Some(o)) = (cursor, v.as_object_mut()) {
        o.insert("cursor".into(), Value::String(c));
    }
    v
}

/// Runs a write once per idempotency key: the same key and body replays the first answer;
/// the same key with another body is `IDEMPOTENCY_KEY_REUSED`.
fn idempotent(
    s: &mut State,
    op: &str,
    b: &Value,
    f: impl FnOnce(&mut State, &Value) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let key = b
        .get("idempotency_key")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(key) = key else {
        return f(s, b);
    };
    let hash = fnv1a(b.to_string().as_bytes());
    let k = (op.to_owned(), key);
    if let Some((h, _status, resp)) = s.idempotency.get(&k) {
        if *h == hash {
            return Ok(resp.clone());
        }
        return Err(ApiError::invalid(
            "IDEMPOTENCY_KEY_REUSED",
            "The idempotency key was already used for a different request.",
            "idempotency_key",
        ));
    }
    let res = f(s, b)?;
    s.idempotency.insert(k, (hash, 200, res.clone()));
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// locations

fn list_locations(s: &State) -> ApiResult<Value> {
    let mut locs: Vec<_> = s.locations.iter().collect();
    locs.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let locs: Vec<Value> = locs.into_iter().map(|l| s.location_json(l)).collect();
    Ok(json!({ "locations": locs }))
}

fn retrieve_location(s: &State, id: &str) -> ApiResult<Value> {
    let l = s
        .location(id)
        .ok_or_else(|| ApiError::not_found(format!("Location `{id}` not found.")))?;
    Ok(json!({ "location": s.location_json(l) }))
}

// ---------------------------------------------------------------------------------------------
// catalog

fn catalog_objects(
    s: &State,
    types: &[String],
    include_deleted: bool,
) -> Vec<(String, i64, Value)> {
    let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let mut out = Vec::new();
    if want("ITEM") {
        for i in s
            .items
            .values()
            .filter(|i| include_deleted || !i.is_deleted)
        {
            out.push((i.id.clone(), i.updated_at, s.item_json(i)));
        }
    }
    if want("ITEM_VARIATION") {
        for v in s
            .variations
            .values()
            .filter(|v| include_deleted || !v.is_deleted)
        {
            out.push((v.id.clone(), v.updated_at, s.variation_json(v)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A query parameter, percent-decoded (`+` is a space, as in forms).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn list_catalog(s: &State, query: &str) -> ApiResult<Value> {
    let types: Vec<String> = query_param(query, "types")
        .map(|t| {
            t.split(',')
                .map(|x| x.trim().to_uppercase())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let objs: Vec<Value> = catalog_objects(s, &types, false)
        .into_iter()
        .map(|o| o.2)
        .collect();
    let hash = fnv1a(format!("catalog/list?{types:?}").as_bytes());
    let cursor = decode_cursor(query_param(query, "cursor").as_deref(), hash, s.now())?;
    let (p, next) = page(&objs, cursor, s.catalog_page_size.max(1), hash);
    Ok(with_cursor(json!({ "objects": p }), next))
}

#[derive(Debug, Default, Deserialize)]
struct SearchCatalogReq {
    #[serde(default)]
    object_types: Vec<String>,
    #[serde(default)]
    include_deleted_objects: Option<bool>,
    #[serde(default)]
    begin_time: Option<String>,
    #[serde(default)]
    query: Option<CatalogQuery>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CatalogQuery {
    #[serde(default)]
    exact_query: Option<AttrQuery>,
    #[serde(default)]
    prefix_query: Option<PrefixQuery>,
}

#[derive(Debug, Default, Deserialize)]
struct AttrQuery {
    attribute_name: String,
    attribute_value: String,
}

#[derive(Debug, Default, Deserialize)]
struct PrefixQuery {
    attribute_name: String,
    attribute_prefix: String,
}

fn attribute<'a>(obj: &'a Value, name: &str) -> Option<&'a str> {
    let data = obj
        .get("item_variation_data")
        .or_else(|| obj.get("item_data"))?;
    data.get(name).and_then(Value::as_str)
}

fn search_catalog(s: &State, b: &Value) -> ApiResult<Value> {
    let req: SearchCatalogReq = parse(b)?;
    let begin = req
        .begin_time
        .as_deref()
        .map(|t| parse_time(t, "begin_time"))
        .transpose()?;
    let types: Vec<String> = req.object_types.iter().map(|t| t.to_uppercase()).collect();
    let q = req.query.unwrap_or_default();
    let mut objs: Vec<Value> =
        catalog_objects(s, &types, req.include_deleted_objects.unwrap_or(false))
            .into_iter()
            .filter(|(_, updated, _)| begin.is_none_or(|b| *updated > b))
            .map(|o| o.2)
            .collect();
    if let Some(e) = &q.exact_query {
        objs.retain(|o| {
            attribute(o, &e.attribute_name)
                .is_some_and(|v| v.eq_ignore_ascii_case(&e.attribute_value))
        });
    }
    if let Some(p) = &q.prefix_query {
        let prefix = p.attribute_prefix.to_lowercase();
        objs.retain(|o| {
            attribute(o, &p.attribute_name).is_some_and(|v| v.to_lowercase().starts_with(&prefix))
        });
    }
    let limit = match req.limit {
        Some(l) if (1..=1000).contains(&l) => usize::try_from(l).unwrap_or(100),
        _ => 100,
    };
    let hash = body_hash(b);
    let cursor = decode_cursor(req.cursor.as_deref(), hash, s.now())?;
    let (p, next) = page(&objs, cursor, limit, hash);
    let latest = s
        .items
        .values()
        .map(|i| i.updated_at)
        .chain(s.variations.values().map(|v| v.updated_at))
        .max()
        .unwrap_or(0);
    Ok(with_cursor(
        json!({ "objects": p, "latest_time": format_ms(latest) }),
        next,
    ))
}

fn batch_retrieve_catalog(s: &State, b: &Value) -> ApiResult<Value> {
    #[derive(Deserialize)]
    struct Req {
        object_ids: Vec<String>,
    }
    let req: Req = parse(b)?;
    let objs: Vec<Value> = req
        .object_ids
        .iter()
        .filter_map(|id| {
            s.variations
                .get(id)
                .map(|v| s.variation_json(v))
                .or_else(|| s.items.get(id).map(|i| s.item_json(i)))
        })
        .collect();
    Ok(json!({ "objects": objs }))
}

// ---------------------------------------------------------------------------------------------
// inventory

#[derive(Debug, Default, Deserialize)]
struct InventoryReq {
    #[serde(default)]
    catalog_object_ids: Option<Vec<String>>,
    #[serde(default)]
    location_ids: Option<Vec<String>>,
    #[serde(default)]
    states: Option<Vec<String>>,
    #[serde(default)]
    types: Option<Vec<String>>,
    #[serde(default)]
    updated_after: Option<String>,
    #[serde(default)]
    updated_before: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

fn in_filter(filter: &Option<Vec<String>>, v: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| f.is_empty() || f.iter().any(|x| x == v))
}

/// BatchRetrieveInventoryCounts: newest first by `calculated_at`; `updated_after` is strict.
fn batch_counts(s: &State, b: &Value, out_of_order: bool) -> ApiResult<Value> {
    let req: InventoryReq = parse(b)?;
    let after = req
        .updated_after
        .as_deref()
        .map(|t| parse_time(t, "updated_after"))
        .transpose()?;
    let limit = check_limit(req.limit, 1000, 1000)?;
    // Sort and page first, render only the page: a walk over a large catalogue reads the same
    // counts page by page, and rendering every match for every page made each page cost the
    // whole catalogue.
    let mut rows: Vec<(i64, String, Result<CountRef<'_>, &Value>)> = s
        .counts
        .iter()
        .filter(|(k, c)| {
            in_filter(&req.catalog_object_ids, &k.0)
                && in_filter(&req.location_ids, &k.1)
                && in_filter(&req.states, &k.2)
                && after.is_none_or(|a| c.calculated_at > a)
        })
        .map(|(k, c)| {
            (
                c.calculated_at,
                format!("{}/{}/{}", k.0, k.1, k.2),
                Ok((k, c)),
            )
        })
        .collect();
    for raw in &s.raw_counts {
        let at = raw
            .get("calculated_at")
            .and_then(Value::as_str)
            .and_then(parse_ms);
        let loc = raw.get("location_id").and_then(Value::as_str).unwrap_or("");
        if (loc.is_empty() || in_filter(&req.location_ids, loc))
            && after.is_none_or(|a| at.is_none_or(|t| t > a))
        {
            rows.push((at.unwrap_or(i64::MAX), String::new(), Err(raw)));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if out_of_order {
        rows.reverse();
    }
    let hash = body_hash(b);
    let cursor = decode_cursor(req.cursor.as_deref(), hash, s.now())?;
    let (p, next) = page(&rows, cursor, limit, hash);
    let p: Vec<Value> = p
        .into_iter()
        .map(|(_, _, r)| match r {
            Ok((k, c)) => State::count_json(k, c),
            Err(raw) => raw.clone(),
        })
        .collect();
    Ok(with_cursor(json!({ "counts": p }), next))
}

/// A count as stored: its (variation, location, state) key and value.
type CountRef<'a> = (&'a (String, String, String), &'a crate::state::Count);

/// BatchRetrieveInventoryChanges: oldest first by `occurred_at`; both time bounds apply to the
/// server receipt time `created_at` (the spec words them ambiguously; we document the choice).
fn batch_changes(s: &State, b: &Value) -> ApiResult<Value> {
    let req: InventoryReq = parse(b)?;
    let after = req
        .updated_after
        .as_deref()
        .map(|t| parse_time(t, "updated_after"))
        .transpose()?;
    let before = req
        .updated_before
        .as_deref()
        .map(|t| parse_time(t, "updated_before"))
        .transpose()?;
    let limit = check_limit(req.limit, 1000, 1000)?;
    if let Some(t) = &req.types
        && t.iter().any(|x| x == "TRANSFER")
    {
        return Err(ApiError::invalid(
            "INVALID_ENUM_VALUE",
            "TRANSFER cannot be used as a type filter.",
            "types",
        ));
    }
    let types = req
        .types
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| vec!["PHYSICAL_COUNT".into(), "ADJUSTMENT".into()]);
    let mut rows: Vec<_> = s
        .changes
        .iter()
        .filter(|c| {
            let (t, states_ok) = match &c.kind {
                ChangeKind::Adjustment { from, to } => (
                    "ADJUSTMENT",
                    in_filter(&req.states, from) || in_filter(&req.states, to),
                ),
                ChangeKind::PhysicalCount { state } => {
                    ("PHYSICAL_COUNT", in_filter(&req.states, state))
                }
            };
            types.iter().any(|x| x == t)
                && states_ok
                && in_filter(&req.catalog_object_ids, &c.variation_id)
                && in_filter(&req.location_ids, &c.location_id)
                && after.is_none_or(|a| c.created_at > a)
                && before.is_none_or(|bf| c.created_at < bf)
        })
        .collect();
    rows.sort_by(|a, b| {
        a.occurred_at
            .cmp(&b.occurred_at)
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
    let all: Vec<Value> = rows.into_iter().map(State::change_json).collect();
    let hash = body_hash(b);
    let cursor = decode_cursor(req.cursor.as_deref(), hash, s.now())?;
    let (p, next) = page(&all, cursor, limit, hash);
    Ok(with_cursor(json!({ "changes": p }), next))
}

// ---------------------------------------------------------------------------------------------
// orders

#[derive(Debug, Deserialize)]
struct MoneyIn {
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LineIn {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    quantity: String,
    #[serde(default)]
    catalog_object_id: Option<String>,
    #[serde(default)]
    base_price_money: Option<MoneyIn>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    applied_taxes: Vec<AppliedTaxIn>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct AppliedTaxIn {
    tax_uid: String,
}

#[derive(Debug, Deserialize)]
struct TaxIn {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    percentage: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FulfillmentIn {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    pickup_details: Option<Map<String, Value>>,
    #[serde(default)]
    shipment_details: Option<Map<String, Value>>,
    #[serde(default)]
    line_item_application: Option<String>,
    #[serde(default)]
    entries: Option<Vec<EntryJson>>,
}

#[derive(Debug, Deserialize)]
struct EntryJson {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    line_item_uid: Option<String>,
    #[serde(default)]
    quantity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderIn {
    location_id: String,
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(default)]
    source: Option<SourceIn>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    line_items: Vec<LineIn>,
    #[serde(default)]
    taxes: Vec<TaxIn>,
    #[serde(default)]
    fulfillments: Vec<FulfillmentIn>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SourceIn {
    #[serde(default)]
    name: Option<String>,
}

const READ_ONLY_PICKUP: &[&str] = &[
    "placed_at",
    "accepted_at",
    "rejected_at",
    "ready_at",
    "expired_at",
    "picked_up_at",
    "canceled_at",
];
const READ_ONLY_SHIPMENT: &[&str] = &[
    "placed_at",
    "in_progress_at",
    "packaged_at",
    "shipped_at",
    "failed_at",
];

fn create_order(s: &mut State, b: &Value) -> ApiResult<Value> {
    let Some(order) = b.get("order") else {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "Field must be set",
            "order",
        ));
    };
    if order.get("location_id").is_none() {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "Field must be set",
            "order.location_id",
        ));
    }
    let o: OrderIn = parse(order)?;
    let loc = s.location(&o.location_id).cloned().ok_or_else(|| {
        ApiError::invalid(
            "NOT_FOUND",
            format!("Location `{}` not found.", o.location_id),
            "order.location_id",
        )
    })?;
    if o.reference_id
        .as_ref()
        .is_some_and(|r| r.chars().count() > 40)
    {
        return Err(ApiError::invalid(
            "VALUE_TOO_LONG",
            "Must be at most 40 characters.",
            "order.reference_id",
        ));
    }
    if o.fulfillments.len() > 1 {
        return Err(ApiError::invalid(
            "INVALID_VALUE",
            "An order can be created with at most one fulfillment.",
            "order.fulfillments",
        ));
    }
    if o.line_items.is_empty() {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "An order needs at least one line item.",
            "order.line_items",
        ));
    }
    let now = s.now();
    let currency = loc.currency.clone();
    let mut taxes = Vec::new();
    for (i, t) in o.taxes.iter().enumerate() {
        let field = format!("order.taxes[{i}].percentage");
        let pct = parse_qty(t.percentage.as_deref().unwrap_or("0"), &field)?;
        taxes.push(OrderTax {
            uid: t.uid.clone().unwrap_or_else(|| format!("tax-{i}")),
            name: t.name.clone().unwrap_or_else(|| "Tax".into()),
            percentage: pct,
            inclusive: t.kind.as_deref() == Some("INCLUSIVE"),
            line_item_scope: t.scope.as_deref() == Some("LINE_ITEM"),
            applied: 0,
        });
    }
    let mut lines = Vec::new();
    for (i, l) in o.line_items.iter().enumerate() {
        let q = parse_qty(&l.quantity, &format!("order.line_items[{i}].quantity"))?;
        if q <= Decimal::ZERO {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                "Quantity must be positive.",
                &format!("order.line_items[{i}].quantity"),
            ));
        }
        let var = l
            .catalog_object_id
            .as_ref()
            .map(|id| {
                s.variations.get(id).cloned().ok_or_else(|| {
                    ApiError::invalid(
                        "NOT_FOUND",
                        format!("Catalog object `{id}` not found."),
                        &format!("order.line_items[{i}].catalog_object_id"),
                    )
                })
            })
            .transpose()?;
        if let Some(m) = &l.base_price_money
            && let Some(c) = &m.currency
            && c != &currency
        {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!("Currency {c} does not match the location's {currency}."),
                &format!("order.line_items[{i}].base_price_money.currency"),
            ));
        }
        let price = l
            .base_price_money
            .as_ref()
            .and_then(|m| m.amount)
            .or_else(|| var.as_ref().and_then(|v| v.price))
            .ok_or_else(|| {
                ApiError::invalid(
                    "MISSING_REQUIRED_PARAMETER",
                    "A line item needs base_price_money or a fixed-price catalog variation.",
                    &format!("order.line_items[{i}].base_price_money"),
                )
            })?;
        if l.name.is_none() && var.is_none() {
            return Err(ApiError::invalid(
                "MISSING_REQUIRED_PARAMETER",
                "A custom line item needs a name.",
                &format!("order.line_items[{i}].name"),
            ));
        }
        let item_name = var
            .as_ref()
            .and_then(|v| s.items.get(&v.item_id))
            .map(|i| i.name.clone());
        lines.push(LineItem {
            uid: l.uid.clone().unwrap_or_else(|| s.ids.id(22)),
            name: l.name.clone().or(item_name),
            quantity: q,
            catalog_object_id: l.catalog_object_id.clone(),
            variation_name: var.as_ref().map(|v| v.name.clone()),
            base_price: price,
            note: l.note.clone(),
            tax_uids: l.applied_taxes.iter().map(|t| t.tax_uid.clone()).collect(),
            metadata: l.metadata.clone(),
            gross: 0,
            tax: 0,
            total: 0,
            applied: Vec::new(),
        });
    }
    let mut entry_lists = Vec::new();
    for (i, f) in o.fulfillments.iter().enumerate() {
        let field = format!("order.fulfillments[{i}]");
        match (f.line_item_application.as_deref(), &f.entries) {
            (None | Some("ALL"), None) => entry_lists.push(None),
            (None | Some("ALL"), Some(_)) => {
                return Err(ApiError::invalid(
                    "INVALID_VALUE",
                    "`entries` must be unset when `line_item_application` is ALL.",
                    &format!("{field}.entries"),
                ));
            }
            (Some("ENTRY_LIST"), entries) => {
                let list: Vec<EntryIn> = entries
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(j, e)| EntryIn {
                        field: format!("{field}.entries[{j}]"),
                        line_item_uid: e.line_item_uid.clone(),
                        quantity: e.quantity.clone(),
                    })
                    .collect();
                let total = format!("{field}.entries");
                let mut parsed = check_entries(&lines, &[(field, list)], false, &total)?;
                let mut parsed = parsed.pop().unwrap_or_default();
                for (e, given) in parsed.iter_mut().zip(entries.iter().flatten()) {
                    e.uid = given.uid.clone().unwrap_or_else(|| s.ids.id(22));
                }
                entry_lists.push(Some(parsed));
            }
            (Some(other), _) => {
                return Err(ApiError::invalid(
                    "INVALID_ENUM_VALUE",
                    format!("`{other}` is not a line item application: use ALL or ENTRY_LIST."),
                    &format!("{field}.line_item_application"),
                ));
            }
        }
    }
    let mut fulfillments = Vec::new();
    for ((i, f), entries) in o.fulfillments.iter().enumerate().zip(entry_lists) {
        let kind = f.kind.clone().unwrap_or_else(|| "PICKUP".into());
        if !matches!(kind.as_str(), "PICKUP" | "SHIPMENT" | "DELIVERY") {
            return Err(ApiError::invalid(
                "INVALID_ENUM_VALUE",
                format!("`{kind}` is not a fulfillment type."),
                &format!("order.fulfillments[{i}].type"),
            ));
        }
        let strip = |m: &Option<Map<String, Value>>, ro: &[&str]| {
            m.clone().map(|mut m| {
                for k in ro {
                    m.remove(*k);
                }
                m.insert("placed_at".into(), Value::String(format_ms(now)));
                m
            })
        };
        let mut pickup = strip(&f.pickup_details, READ_ONLY_PICKUP);
        let mut shipment = strip(&f.shipment_details, READ_ONLY_SHIPMENT);
        if kind == "PICKUP" && pickup.is_none() {
            pickup = strip(&Some(Map::new()), READ_ONLY_PICKUP);
        }
        if kind == "SHIPMENT" && shipment.is_none() {
            shipment = strip(&Some(Map::new()), READ_ONLY_SHIPMENT);
        }
        fulfillments.push(Fulfillment {
            uid: f.uid.clone().unwrap_or_else(|| s.ids.id(22)),
            kind,
            state: f.state.clone().unwrap_or_else(|| "PROPOSED".into()),
            pickup,
            shipment,
            entries,
        });
    }
    let id = s.ids.id(26);
    let mut order = Order {
        id: id.clone(),
        location_id: loc.id.clone(),
        reference_id: o.reference_id,
        source_name: o.source.and_then(|s| s.name),
        customer_id: o.customer_id,
        currency,
        line_items: lines,
        taxes,
        fulfillments,
        returns: Vec::new(),
        tenders: Vec::new(),
        metadata: o.metadata,
        created_at: now,
        updated_at: now,
        closed_at: None,
        state: if o.state.as_deref() == Some("DRAFT") {
            "DRAFT".into()
        } else {
            "OPEN".into()
        },
        version: Some(1),
        paid: false,
        offline_pending: false,
        stock_deducted: false,
        deducted: BTreeMap::new(),
    };
    State::compute_totals(&mut order);
    let json_out = s.order_json(&order);
    let created = json!({
        "order_id": id, "version": 1, "location_id": order.location_id, "state": order.state,
        "created_at": format_ms(now),
    });
    s.orders.insert(id.clone(), order);
    s.emit(
        "order.created",
        "order_created",
        id,
        json!({ "order_created": created }),
    );
    Ok(json!({ "order": json_out }))
}

fn retrieve_order(s: &State, id: &str) -> ApiResult<Value> {
    let o = s
        .orders
        .get(id)
        .filter(|o| !o.offline_pending)
        .ok_or_else(|| ApiError::not_found(format!("Order `{id}` not found.")))?;
    Ok(json!({ "order": s.order_json(o) }))
}

fn batch_retrieve_orders(s: &State, b: &Value) -> ApiResult<Value> {
    #[derive(Deserialize)]
    struct Req {
        order_ids: Vec<String>,
    }
    let req: Req = parse(b)?;
    if req.order_ids.len() > 100 {
        return Err(ApiError::invalid(
            "ARRAY_LENGTH_TOO_LONG",
            "At most 100 order ids.",
            "order_ids",
        ));
    }
    let orders: Vec<Value> = req
        .order_ids
        .iter()
        .filter_map(|id| s.orders.get(id).filter(|o| !o.offline_pending))
        .map(|o| s.order_json(o))
        .collect();
    Ok(json!({ "orders": orders }))
}

fn update_order(s: &mut State, id: &str, b: &Value) -> ApiResult<Value> {
    let order = b.get("order").cloned().unwrap_or(Value::Null);
    let current = s
        .orders
        .get(id)
        .filter(|o| !o.offline_pending)
        .ok_or_else(|| ApiError::not_found(format!("Order `{id}` not found.")))?;
    let Some(cur_version) = current.version else {
        return Err(ApiError::invalid(
            "BAD_REQUEST",
            "Orders not created through the Orders API cannot be updated.",
            "order_id",
        ));
    };
    match order.get("version").and_then(Value::as_i64) {
        None => {
            return Err(ApiError::invalid(
                "MISSING_REQUIRED_PARAMETER",
                "Field must be set",
                "order.version",
            ));
        }
        Some(v) if v != cur_version => {
            let mut e = ApiError::new(
                409,
                "INVALID_REQUEST_ERROR",
                "CONFLICT",
                format!("Order version {v} is stale; the current version is {cur_version}."),
            );
            e.errors[0].field = Some("order.version".into());
            return Err(e);
        }
        Some(_) => {}
    }
    if matches!(current.state.as_str(), "COMPLETED" | "CANCELED") {
        return Err(ApiError::invalid(
            "BAD_REQUEST",
            format!("Order `{id}` is {} and cannot be updated.", current.state),
            "order.state",
        ));
    }
    let fulfillments = order
        .get("fulfillments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for f in &fulfillments {
        let uid = f.get("uid").and_then(Value::as_str);
        let mut extra = Map::new();
        for key in ["shipment_details", "pickup_details"] {
            if let Some(Value::Object(m)) = f.get(key) {
                for (k, v) in m {
                    if !READ_ONLY_PICKUP.contains(&k.as_str())
                        && !READ_ONLY_SHIPMENT.contains(&k.as_str())
                    {
                        extra.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let state = match f.get("state").and_then(Value::as_str) {
            Some(st) => st.to_owned(),
            None => {
                let o = s.orders.get(id);
                o.and_then(|o| {
                    o.fulfillments
                        .iter()
                        .find(|x| uid.is_none_or(|u| x.uid == u))
                        .map(|x| x.state.clone())
                })
                .unwrap_or_else(|| "PROPOSED".into())
            }
        };
        s.transition_fulfillment(id, uid, &state, Some(&extra))?;
        changed = true;
    }
    let now = s.now();
    if let Some(o) = s.orders.get_mut(id) {
        if let Some(r) = order.get("reference_id").and_then(Value::as_str) {
            o.reference_id = Some(r.to_owned());
            changed = true;
        }
        if let Some(Value::Object(m)) = order.get("metadata") {
            o.metadata.get_or_insert_with(Map::new).extend(m.clone());
            changed = true;
        }
        if order.get("state").and_then(Value::as_str) == Some("CANCELED") && !o.paid {
            o.state = "CANCELED".into();
            o.closed_at = Some(now);
            changed = true;
        }
        if changed && fulfillments.is_empty() {
            o.updated_at = now;
            o.version = Some(o.version.unwrap_or(1) + 1);
        }
    }
    if changed && fulfillments.is_empty() {
        s.emit_order_updated(id);
    }
    retrieve_order(s, id)
}

fn pay_order(s: &mut State, id: &str, b: &Value) -> ApiResult<Value> {
    #[derive(Deserialize)]
    struct Req {
        #[serde(default)]
        order_version: Option<i64>,
        #[serde(default)]
        payment_ids: Vec<String>,
    }
    let req: Req = parse(b)?;
    let o = s
        .orders
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("Order `{id}` not found.")))?;
    if let Some(v) = req.order_version
        && Some(v) != o.version
    {
        return Err(ApiError::new(
            409,
            "INVALID_REQUEST_ERROR",
            "CONFLICT",
            "order_version is stale.",
        ));
    }
    let now = s.now();
    let mut tenders = Vec::new();
    for pid in &req.payment_ids {
        let p = s.payments.get_mut(pid).ok_or_else(|| {
            ApiError::invalid(
                "NOT_FOUND",
                format!("Payment `{pid}` not found."),
                "payment_ids",
            )
        })?;
        if p.order_id.as_deref() != Some(id) {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                "The payment belongs to another order.",
                "payment_ids",
            ));
        }
        if p.status == "APPROVED" {
            p.status = "COMPLETED".into();
            p.updated_at = now;
            tenders.push(Tender {
                id: p.id.clone(),
                kind: if p.source_type == "CASH" {
                    "CASH"
                } else {
                    "OTHER"
                }
                .into(),
                amount: p.amount,
                created_at: now,
                payment_id: Some(p.id.clone()),
            });
        }
    }
    if let Some(o) = s.orders.get_mut(id) {
        let paid_total: i64 = o.tendered() + tenders.iter().map(|t| t.amount).sum::<i64>();
        if paid_total < o.total() {
            return Err(ApiError::invalid(
                "PAYMENT_AMOUNT_MISMATCH",
                "The payments do not cover the order total.",
                "payment_ids",
            ));
        }
        o.tenders.extend(tenders);
        o.updated_at = now;
        o.version = Some(o.version.unwrap_or(1) + 1);
    }
    s.settle_if_paid(id);
    s.emit_order_updated(id);
    retrieve_order(s, id)
}

// ---------------------------------------------------------------------------------------------
// SearchOrders

#[derive(Debug, Default, Deserialize)]
struct SearchOrdersReq {
    #[serde(default)]
    location_ids: Vec<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    query: Option<SearchQuery>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    return_entries: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    filter: Option<SearchFilter>,
    #[serde(default)]
    sort: Option<SearchSort>,
}

#[derive(Debug, Default, Deserialize)]
struct SearchFilter {
    #[serde(default)]
    state_filter: Option<StateFilter>,
    #[serde(default)]
    date_time_filter: Option<BTreeMap<String, TimeRange>>,
    #[serde(default)]
    fulfillment_filter: Option<FulfillmentFilter>,
    #[serde(default)]
    source_filter: Option<SourceFilter>,
}

#[derive(Debug, Default, Deserialize)]
struct StateFilter {
    states: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TimeRange {
    #[serde(default)]
    start_at: Option<String>,
    #[serde(default)]
    end_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FulfillmentFilter {
    #[serde(default)]
    fulfillment_types: Vec<String>,
    #[serde(default)]
    fulfillment_states: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SourceFilter {
    #[serde(default)]
    source_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SearchSort {
    sort_field: String,
    #[serde(default)]
    sort_order: Option<String>,
}

fn order_time(o: &Order, field: &str) -> Option<i64> {
    match field {
        "CREATED_AT" | "created_at" => Some(o.created_at),
        "UPDATED_AT" | "updated_at" => Some(o.updated_at),
        "CLOSED_AT" | "closed_at" => o.closed_at,
        _ => None,
    }
}

fn search_orders(s: &State, b: &Value, out_of_order: bool) -> ApiResult<Value> {
    let req: SearchOrdersReq = parse(b)?;
    if req.location_ids.is_empty() {
        return Err(ApiError::invalid(
            "MISSING_REQUIRED_PARAMETER",
            "At least one location id is required.",
            "location_ids",
        ));
    }
    if req.location_ids.len() > 10 {
        return Err(ApiError::invalid(
            "ARRAY_LENGTH_TOO_LONG",
            format!(
                "At most 10 location ids per request; got {}.",
                req.location_ids.len()
            ),
            "location_ids",
        ));
    }
    let limit = check_limit(req.limit, 500, 1000)?;
    let q = req.query.unwrap_or_default();
    let filter = q.filter.unwrap_or_default();
    let sort_field = q
        .sort
        .as_ref()
        .map_or("CREATED_AT".to_owned(), |s| s.sort_field.clone());
    if !matches!(
        sort_field.as_str(),
        "CREATED_AT" | "UPDATED_AT" | "CLOSED_AT"
    ) {
        return Err(ApiError::invalid(
            "INVALID_ENUM_VALUE",
            format!("`{sort_field}` is not a sort field."),
            "query.sort.sort_field",
        ));
    }
    let desc = q
        .sort
        .as_ref()
        .and_then(|s| s.sort_order.as_deref())
        .is_none_or(|o| o != "ASC");
    let hash = body_hash(b);
    let cursor = decode_cursor(req.cursor.as_deref(), hash, s.now())?;
    let mut range: Option<(String, Option<i64>, i64)> = None;
    if let Some(dt) = &filter.date_time_filter {
        if dt.len() > 1 {
            return Err(ApiError::invalid(
                "BAD_REQUEST",
                "Only one date_time_filter field may be set.",
                "query.filter.date_time_filter",
            ));
        }
        if let Some((field, r)) = dt.iter().next() {
            if !field.eq_ignore_ascii_case(&sort_field) {
                return Err(ApiError::invalid(
                    "BAD_REQUEST",
                    format!(
                        "When filtering on `{field}`, query.sort.sort_field must be {}.",
                        field.to_uppercase()
                    ),
                    "query.sort.sort_field",
                ));
            }
            let start = r
                .start_at
                .as_deref()
                .map(|t| parse_time(t, "query.filter.date_time_filter.start_at"))
                .transpose()?;
            let end = r
                .end_at
                .as_deref()
                .map(|t| parse_time(t, "query.filter.date_time_filter.end_at"))
                .transpose()?
                .unwrap_or(cursor.frozen_now);
            range = Some((field.clone(), start, end));
        }
    }
    let mut hits: Vec<(i64, String, Result<&crate::state::Order, &Value>)> = Vec::new();
    for o in s.orders.values() {
        if o.offline_pending || !req.location_ids.contains(&o.location_id) {
            continue;
        }
        if let Some(sf) = &filter.state_filter
            && !sf.states.contains(&o.state)
        {
            continue;
        }
        if let Some((field, start, end)) = &range {
            let Some(t) = order_time(o, field) else {
                continue;
            };
            if start.is_some_and(|st| t < st) || t > *end {
                continue;
            }
        }
        if let Some(ff) = &filter.fulfillment_filter {
            let ok = o.fulfillments.iter().any(|f| {
                (ff.fulfillment_types.is_empty() || ff.fulfillment_types.contains(&f.kind))
                    && (ff.fulfillment_states.is_empty()
                        || ff.fulfillment_states.contains(&f.state))
            });
            if !ok {
                continue;
            }
        }
        if let Some(src) = &filter.source_filter
            && !src.source_names.is_empty()
            && !o
                .source_name
                .as_ref()
                .is_some_and(|n| src.source_names.contains(n))
        {
            continue;
        }
        let key = order_time(o, &sort_field).unwrap_or(0);
        hits.push((key, o.id.clone(), Ok(o)));
    }
    for (loc, raw) in &s.raw_orders {
        if !req.location_ids.contains(loc) {
            continue;
        }
        let t = raw
            .get(sort_field.to_lowercase())
            .and_then(Value::as_str)
            .and_then(parse_ms);
        if let Some((_, start, end)) = &range
            && let Some(t) = t
            && (start.is_some_and(|st| t < st) || t > *end)
        {
            continue;
        }
        let id = raw
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        hits.push((t.unwrap_or(cursor.frozen_now), id, Err(raw)));
    }
    hits.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    if desc {
        hits.reverse();
    }
    if out_of_order {
        hits.reverse();
    }
    // Render only the page (see `batch_counts`).
    let (p, next) = page(&hits, cursor, limit, hash);
    let p: Vec<Value> = p
        .into_iter()
        .map(|(_, _, hit)| match hit {
            Ok(o) if req.return_entries.unwrap_or(false) => {
                let mut e = json!({"order_id": o.id, "location_id": o.location_id});
                if let (Some(ver), Some(obj)) = (o.version, e.as_object_mut()) {
                    obj.insert("version".into(), json!(ver));
                }
                e
            }
            Ok(o) => s.order_json(o),
            Err(raw) => raw.clone(),
        })
        .collect();
    let key = if req.return_entries.unwrap_or(false) {
        "order_entries"
    } else {
        "orders"
    };
    Ok(with_cursor(json!({ key: p }), next))
}

// ---------------------------------------------------------------------------------------------
// payments

#[derive(Debug, Deserialize)]
struct CreatePaymentReq {
    source_id: String,
    #[serde(default)]
    amount_money: Option<MoneyIn>,
    #[serde(default)]
    autocomplete: Option<bool>,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    location_id: Option<String>,
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    external_details: Option<Value>,
}

fn create_payment(s: &mut State, b: &Value) -> ApiResult<Value> {
    for f in ["source_id", "idempotency_key"] {
        if b.get(f).is_none() {
            return Err(ApiError::invalid(
                "MISSING_REQUIRED_PARAMETER",
                "Field must be set",
                f,
            ));
        }
    }
    let req: CreatePaymentReq = parse(b)?;
    let source_type = match req.source_id.as_str() {
        "EXTERNAL" => "EXTERNAL",
        "CASH" => "CASH",
        other => {
            return Err(ApiError::invalid(
                "INVALID_VALUE",
                format!("The emulator accepts EXTERNAL and CASH sources only, not `{other}`."),
                "source_id",
            ));
        }
    };
    if source_type == "EXTERNAL" {
        let ok = req
            .external_details
            .as_ref()
            .is_some_and(|e| e.get("type").is_some() && e.get("source").is_some());
        if !ok {
            return Err(ApiError::invalid(
                "MISSING_REQUIRED_PARAMETER",
                "EXTERNAL payments need external_details with type and source.",
                "external_details",
            ));
        }
    }
    let amount = req
        .amount_money
        .as_ref()
        .and_then(|m| m.amount)
        .ok_or_else(|| {
            ApiError::invalid(
                "MISSING_REQUIRED_PARAMETER",
                "Field must be set",
                "amount_money.amount",
            )
        })?;
    if amount < 0 {
        return Err(ApiError::invalid(
            "INVALID_VALUE",
            "amount_money.amount must not be negative.",
            "amount_money.amount",
        ));
    }
    let now = s.now();
    let (location_id, currency) = match &req.order_id {
        Some(oid) => {
            let o = s.orders.get(oid).ok_or_else(|| {
                ApiError::invalid("NOT_FOUND", format!("Order `{oid}` not found."), "order_id")
            })?;
            if matches!(o.state.as_str(), "COMPLETED" | "CANCELED") {
                return Err(ApiError::invalid(
                    "BAD_REQUEST",
                    format!("Order `{oid}` is {}.", o.state),
                    "order_id",
                ));
            }
            if amount > (o.total() - o.tendered()) {
                return Err(ApiError::invalid(
                    "PAYMENT_AMOUNT_MISMATCH",
                    "The payment exceeds the order's amount due.",
                    "amount_money.amount",
                ));
            }
            (o.location_id.clone(), o.currency.clone())
        }
        None => {
            let loc = match &req.location_id {
                Some(l) => s.location(l),
                None => s.locations.first(),
            }
            .ok_or_else(|| ApiError::invalid("NOT_FOUND", "No such location.", "location_id"))?;
            (loc.id.clone(), loc.currency.clone())
        }
    };
    if let Some(c) = req.amount_money.as_ref().and_then(|m| m.currency.clone())
        && c != currency
    {
        return Err(ApiError::invalid(
            "INVALID_VALUE",
            format!("Currency {c} does not match {currency}."),
            "amount_money.currency",
        ));
    }
    let autocomplete = req.autocomplete.unwrap_or(true);
    let id = s.ids.id(26);
    let p = Payment {
        id: id.clone(),
        created_at: now,
        updated_at: now,
        amount,
        currency,
        status: if autocomplete {
            "COMPLETED"
        } else {
            "APPROVED"
        }
        .into(),
        source_type: source_type.into(),
        external_details: req.external_details.clone(),
        order_id: req.order_id.clone(),
        location_id,
        reference_id: req.reference_id.clone(),
        note: req.note.clone(),
    };
    let out = State::payment_json(&p);
    s.payments.insert(id.clone(), p);
    if let Some(oid) = &req.order_id
        && autocomplete
    {
        if let Some(o) = s.orders.get_mut(oid) {
            o.tenders.push(Tender {
                id: id.clone(),
                kind: if source_type == "CASH" {
                    "CASH"
                } else {
                    "OTHER"
                }
                .into(),
                amount,
                created_at: now,
                payment_id: Some(id.clone()),
            });
            o.updated_at = now;
            o.version = Some(o.version.unwrap_or(1) + 1);
        }
        s.settle_if_paid(oid);
        s.emit_order_updated(oid);
    }
    s.emit("payment.created", "payment", id, json!({ "payment": out }));
    Ok(json!({ "payment": out }))
}

fn get_payment(s: &State, id: &str) -> ApiResult<Value> {
    let p = s
        .payments
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("Payment `{id}` not found.")))?;
    Ok(json!({ "payment": State::payment_json(p) }))
}
