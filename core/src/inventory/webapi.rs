//! Magento's REST layer over the model, without I/O: a request (method, path with query string,
//! JSON body) goes in, a status and a JSON body come out (spec §2, §6, §8).
//!
//! It reproduces the web-API framework's input processing (top-level keys are the service
//! method's parameter names, data objects accept snake_case and camelCase, scalars are type
//! checked with Magento's "Error occurred during …" messages, `PUT` path parameters override the
//! body's id) and its output (void → `[]`, nulls omitted, error bodies of spec §8.2). The
//! HTTP emulator only has to move bytes and check credentials; the conformance runner drives the
//! same function in-process.
//!
//! Routes: the inventory routes of spec §2.1 (sources, stocks, links, source items, salability,
//! stock resolver, source selection, bulk), the order document routes of spec §6.1 that move
//! stock (`ship`, `invoice`, `refund`, `cancel`, order and shipment reads), and the Tillbridge
//! reservation routes of spec §3.7.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{ErrorKind, MagentoError, Phrase};
use super::ids::{Sku, SourceCode, StockId, Timestamp};
use super::model::Inventory;
use super::num;
use super::reservations::NewReservation;
use super::sales::{DocumentLine, ItemRef, OrderId, ReturnToStock, ShipmentId};
use super::search::{Filter, FilterGroup, SearchCriteria, SortOrder, stock_json};
use super::source_items::{PartialTransferItem, SourceItemInput};
use super::ssa::{InventoryRequest, ItemRequest};
use super::structure::{LinkInput, SalesChannelInput, SourceInput, StockInput};

/// A REST request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestRequest {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: String,
    /// The path, optionally with `/rest[/<store>]` and a query string
    /// (`/V1/inventory/are-products-salable?skus%5B0%5D=A&stockId=1`).
    pub path: String,
    /// The JSON body.
    #[serde(default)]
    pub body: Option<Value>,
}

/// A REST response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl RestResponse {
    fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    fn error(e: &MagentoError) -> Self {
        Self {
            status: e.http_status(),
            body: e.rest_body(),
        }
    }
}

/// Handles one request against the model. `now` stamps documents it creates.
pub fn dispatch(inv: &mut Inventory, request: &RestRequest, now: &Timestamp) -> RestResponse {
    match route(inv, request, now) {
        Ok(body) => RestResponse::ok(body),
        Err(e) => RestResponse::error(&e),
    }
}

fn route_not_found() -> MagentoError {
    MagentoError::new(
        ErrorKind::RouteNotFound,
        Phrase::new("Request does not match any route."),
    )
}

fn type_error(field: Option<&str>, value: &Value, expected: &str) -> MagentoError {
    let shown = match value {
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => "array".to_owned(),
        Value::Bool(b) => if *b { "1" } else { "" }.to_owned(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
    };
    let details = format!(
        "The \"{shown}\" value's type is invalid. The \"{expected}\" type was expected. Verify and try again."
    );
    let text = match field {
        Some(f) => format!("Error occurred during \"{f}\" processing. {details}"),
        None => details,
    };
    MagentoError::new(ErrorKind::WebapiInput, Phrase::new(text))
}

fn required(name: &str) -> MagentoError {
    MagentoError::new(
        ErrorKind::WebapiInput,
        Phrase::named(
            "\"%fieldName\" is required. Enter and try again.",
            [("fieldName", json!(name))],
        ),
    )
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A data-object field by snake_case or camelCase name.
fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| obj.get(camel(name)))
}

fn get_string(obj: &Value, name: &str) -> Result<Option<String>, MagentoError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(if *b { "1" } else { "" }.to_owned())),
        Some(v) => Err(type_error(Some(name), v, "string")),
    }
}

fn get_float(obj: &Value, name: &str) -> Result<Option<Decimal>, MagentoError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ (Value::Number(_) | Value::String(_))) => num::decimal_from_json(v)
            .map(Some)
            .ok_or_else(|| type_error(Some(name), v, "float")),
        Some(v) => Err(type_error(Some(name), v, "float")),
    }
}

fn get_int(obj: &Value, name: &str) -> Result<Option<i64>, MagentoError> {
    use rust_decimal::prelude::ToPrimitive;
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ (Value::Number(_) | Value::String(_))) => num::decimal_from_json(v)
            .and_then(|d| d.trunc().to_i64())
            .map(Some)
            .ok_or_else(|| type_error(Some(name), v, "int")),
        Some(v) => Err(type_error(Some(name), v, "int")),
    }
}

fn get_bool(obj: &Value, name: &str) -> Result<Option<bool>, MagentoError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64().is_some_and(|f| f != 0.0))),
        Some(Value::String(s)) => match s.as_str() {
            "1" | "true" => Ok(Some(true)),
            "0" | "false" | "" => Ok(Some(false)),
            _ => Err(type_error(Some(name), &Value::String(s.clone()), "bool")),
        },
        Some(v) => Err(type_error(Some(name), v, "bool")),
    }
}

fn get_array<'a>(obj: &'a Value, name: &str) -> Result<Option<&'a Vec<Value>>, MagentoError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(type_error(Some(name), v, "array")),
    }
}

fn path_int(segment: &str) -> Result<i64, MagentoError> {
    segment
        .parse::<i64>()
        .map_err(|_| type_error(None, &Value::String(segment.to_owned()), "int"))
}

fn path_float(segment: &str) -> Result<Decimal, MagentoError> {
    num::parse_decimal(segment)
        .filter(|_| num::is_php_numeric(segment))
        .ok_or_else(|| type_error(None, &Value::String(segment.to_owned()), "float"))
}

fn stock_id_of(value: i64) -> StockId {
    StockId::parse(value).unwrap_or(StockId::DEFAULT)
}

fn no_stock(value: i64) -> MagentoError {
    MagentoError::no_such_entity(Phrase::named(
        "Stock with id \"%value\" does not exist.",
        [("value", json!(value))],
    ))
}

// ----- query strings ---------------------------------------------------------------------------

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a PHP-style query string (`a[b][0][c]=1`) into nested JSON objects (numeric keys
/// stay object keys; readers treat objects with numeric keys as lists).
pub fn parse_query(query: &str) -> Value {
    let mut root = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        let value = percent_decode(v);
        let mut path: Vec<String> = Vec::new();
        match key.find('[') {
            Some(pos) => {
                path.push(key[..pos].to_owned());
                let mut rest = &key[pos..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let Some(end) = stripped.find(']') else { break };
                    path.push(stripped[..end].to_owned());
                    rest = &stripped[end + 1..];
                }
            }
            None => path.push(key),
        }
        let mut node = &mut root;
        for (i, segment) in path.iter().enumerate() {
            if i + 1 == path.len() {
                node.insert(segment.clone(), Value::String(value.clone()));
                break;
            }
            let next = node
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(m) = next else { break };
            node = m;
        }
    }
    Value::Object(root)
}

/// The values of an object with numeric keys (or of an array), in key order.
fn list_of(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(m)) => {
            let mut entries: Vec<(i64, Value)> = m
                .iter()
                .map(|(k, v)| (k.parse::<i64>().unwrap_or(i64::MAX), v.clone()))
                .collect();
            entries.sort_by_key(|(k, _)| *k);
            entries.into_iter().map(|(_, v)| v).collect()
        }
        _ => Vec::new(),
    }
}

/// Reads `searchCriteria[...]` from a parsed query.
pub fn search_criteria_from_query(query: &Value) -> Option<SearchCriteria> {
    let sc = query.get("searchCriteria")?;
    let groups = sc.get("filter_groups").or_else(|| sc.get("filterGroups"));
    let filter_groups = list_of(groups)
        .iter()
        .map(|g| FilterGroup {
            filters: list_of(g.get("filters"))
                .iter()
                .map(|f| Filter {
                    field: f
                        .get("field")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    value: f
                        .get("value")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    condition_type: f
                        .get("condition_type")
                        .or_else(|| f.get("conditionType"))
                        .and_then(Value::as_str)
                        .unwrap_or("eq")
                        .to_owned(),
                })
                .collect(),
        })
        .collect();
    let sort_orders = list_of(sc.get("sortOrders").or_else(|| sc.get("sort_orders")))
        .iter()
        .map(|s| SortOrder {
            field: s
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            direction: s
                .get("direction")
                .and_then(Value::as_str)
                .unwrap_or("ASC")
                .to_owned(),
        })
        .collect();
    let num_of = |k: &str, k2: &str| {
        sc.get(k)
            .or_else(|| sc.get(k2))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<usize>().ok())
    };
    Some(SearchCriteria {
        filter_groups,
        sort_orders,
        page_size: num_of("pageSize", "page_size"),
        current_page: num_of("currentPage", "current_page"),
    })
}

fn results_json(r: super::search::SearchResults) -> Value {
    json!({"items": r.items, "search_criteria": r.search_criteria, "total_count": r.total_count})
}

// ----- inputs ------------------------------------------------------------------------------------

pub(crate) fn source_input(v: &Value) -> Result<SourceInput, MagentoError> {
    Ok(SourceInput {
        source_code: get_string(v, "source_code")?,
        name: get_string(v, "name")?,
        enabled: get_bool(v, "enabled")?,
        description: get_string(v, "description")?,
        latitude: get_float(v, "latitude")?,
        longitude: get_float(v, "longitude")?,
        country_id: get_string(v, "country_id")?,
        region_id: get_int(v, "region_id")?,
        region: get_string(v, "region")?,
        city: get_string(v, "city")?,
        street: get_string(v, "street")?,
        postcode: get_string(v, "postcode")?,
        contact_name: get_string(v, "contact_name")?,
        email: get_string(v, "email")?,
        phone: get_string(v, "phone")?,
        fax: get_string(v, "fax")?,
        use_default_carrier_config: get_bool(v, "use_default_carrier_config")?,
    })
}

pub(crate) fn stock_input(v: &Value) -> Result<StockInput, MagentoError> {
    let channels = match field(v, "extension_attributes").map(|e| get_array(e, "sales_channels")) {
        Some(r) => r?.map(|list| {
            list.iter()
                .map(|c| {
                    Ok(SalesChannelInput {
                        channel_type: get_string(c, "type")?,
                        code: get_string(c, "code")?,
                    })
                })
                .collect::<Result<Vec<_>, MagentoError>>()
        }),
        None => None,
    };
    Ok(StockInput {
        stock_id: get_int(v, "stock_id")?,
        name: get_string(v, "name")?,
        sales_channels: channels.transpose()?,
    })
}

/// Converts a `sourceItems` entry the way the REST input processor does.
pub fn source_item_input(v: &Value) -> Result<SourceItemInput, MagentoError> {
    Ok(SourceItemInput {
        sku: get_string(v, "sku")?,
        source_code: get_string(v, "source_code")?,
        quantity: get_float(v, "quantity")?,
        status: get_int(v, "status")?,
    })
}

fn link_input(v: &Value) -> Result<LinkInput, MagentoError> {
    Ok(LinkInput {
        stock_id: get_int(v, "stock_id")?,
        source_code: get_string(v, "source_code")?,
        priority: get_int(v, "priority")?,
    })
}

fn body_of(request: &RestRequest) -> Value {
    request.body.clone().unwrap_or(Value::Object(Map::new()))
}

fn skus_of(list: Option<&Vec<Value>>) -> Vec<Sku> {
    list.into_iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(|s| Sku::parse(s).ok()))
        .collect()
}

fn source_codes_of(list: Option<&Vec<Value>>) -> Vec<SourceCode> {
    list.into_iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(|s| SourceCode::parse(s).ok()))
        .collect()
}

fn document_lines(items: Option<&Vec<Value>>) -> Result<Option<Vec<DocumentLine>>, MagentoError> {
    let Some(items) = items else { return Ok(None) };
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .map(|i| {
            let id = get_int(i, "order_item_id")?.ok_or_else(|| required("order_item_id"))?;
            Ok(DocumentLine {
                item: ItemRef::ItemId(u64::try_from(id).unwrap_or(0)),
                qty: get_float(i, "qty")?,
            })
        })
        .collect::<Result<Vec<_>, MagentoError>>()
        .map(Some)
}

fn order_json(inv: &Inventory, id: OrderId) -> Result<Value, MagentoError> {
    let o = inv.order(id)?;
    Ok(json!({
        "entity_id": o.entity_id.0,
        "increment_id": o.increment_id.as_str(),
        "state": o.state.as_str(),
        "status": o.status,
        "created_at": o.created_at.as_str(),
        "updated_at": o.updated_at.as_str(),
        "items": o.items.iter().map(|i| {
            let mut m = json!({
                "item_id": i.item_id,
                "product_type": i.product_type,
                "sku": i.sku,
                "is_virtual": i.is_virtual,
                "qty_ordered": num::decimal_to_json(i.qty_ordered),
                "qty_invoiced": num::decimal_to_json(i.qty_invoiced),
                "qty_shipped": num::decimal_to_json(i.qty_shipped),
                "qty_refunded": num::decimal_to_json(i.qty_refunded),
                "qty_canceled": num::decimal_to_json(i.qty_canceled),
            });
            if let (Some(obj), Some(p)) = (m.as_object_mut(), i.parent_item_id) {
                obj.insert("parent_item_id".to_owned(), json!(p));
            }
            if let (Some(obj), Some(b)) = (m.as_object_mut(), i.qty_backordered) {
                obj.insert("qty_backordered".to_owned(), num::decimal_to_json(b));
            }
            m
        }).collect::<Vec<_>>(),
    }))
}

fn shipment_json(inv: &Inventory, id: ShipmentId) -> Result<Value, MagentoError> {
    let s = inv.shipment(id)?;
    Ok(json!({
        "entity_id": s.entity_id.0,
        "order_id": s.order_id.0,
        "total_qty": num::decimal_to_json(s.total_qty),
        "items": s.items.iter().map(|(i, q)| json!({"order_item_id": i, "qty": num::decimal_to_json(*q)})).collect::<Vec<_>>(),
        "extension_attributes": {"source_code": s.source_code.as_str()},
    }))
}

fn document_failure(e: MagentoError, prefix: &str, fallback: &'static str) -> MagentoError {
    if e.message.raw().starts_with(prefix) {
        e
    } else {
        MagentoError::localized(Phrase::new(fallback))
    }
}

/// Metadata of a Tillbridge reservation: a JSON object written in PHP's `json_encode` style,
/// or a string taken as is.
fn metadata_text(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(m)) => Some(format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => num::php_json_string(s),
                        other => other.to_string(),
                    };
                    format!("{}:{}", num::php_json_string(k), value)
                })
                .collect::<Vec<_>>()
                .join(",")
        )),
        Some(other) => Some(other.to_string()),
    }
}

// ----- routing -----------------------------------------------------------------------------------

#[allow(clippy::too_many_lines)]
fn route(
    inv: &mut Inventory,
    request: &RestRequest,
    now: &Timestamp,
) -> Result<Value, MagentoError> {
    let (path, query) = request
        .path
        .split_once('?')
        .map_or((request.path.as_str(), ""), |(p, q)| (p, q));
    let query = parse_query(query);
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if segments.first().map(String::as_str) == Some("rest") {
        segments.remove(0);
        if segments.first().is_some_and(|s| s != "V1") {
            segments.remove(0);
        }
    }
    if segments.first().map(String::as_str) != Some("V1") {
        return Err(route_not_found());
    }
    let s: Vec<&str> = segments.iter().skip(1).map(String::as_str).collect();
    let method = request.method.to_uppercase();
    let body = body_of(request);
    match (method.as_str(), s.as_slice()) {
        // --- sources
        ("GET", ["inventory", "sources"]) => {
            let criteria = search_criteria_from_query(&query).unwrap_or_default();
            Ok(results_json(inv.search_sources(&criteria)))
        }
        ("GET", ["inventory", "sources", code]) => {
            Ok(serde_json::to_value(inv.get_source(code)?).unwrap_or(Value::Null))
        }
        ("POST", ["inventory", "sources"]) | ("PUT", ["inventory", "sources", _]) => {
            let source = field(&body, "source")
                .cloned()
                .ok_or_else(|| required("source"))?;
            let mut input = source_input(&source)?;
            if let ["inventory", "sources", code] = s.as_slice() {
                input.source_code = Some((*code).to_owned());
            }
            inv.save_source(&input)?;
            Ok(json!([]))
        }
        (
            "GET",
            [
                "inventory",
                "get-sources-assigned-to-stock-ordered-by-priority",
                id,
            ],
        ) => {
            let id = path_int(id)?;
            let sources = StockId::parse(id)
                .map(|s| inv.sources_assigned_to_stock(s))
                .unwrap_or_default();
            Ok(serde_json::to_value(sources).unwrap_or(Value::Null))
        }
        // --- stocks
        ("GET", ["inventory", "stocks"]) => {
            let criteria = search_criteria_from_query(&query).unwrap_or_default();
            Ok(results_json(inv.search_stocks(&criteria)))
        }
        ("GET", ["inventory", "stocks", id]) => {
            let v = inv.get_stock_by_number(path_int(id)?)?;
            Ok(stock_json(v.stock_id, &v.name, &v.sales_channels))
        }
        ("POST", ["inventory", "stocks"]) | ("PUT", ["inventory", "stocks", _]) => {
            let stock = field(&body, "stock")
                .cloned()
                .ok_or_else(|| required("stock"))?;
            let mut input = stock_input(&stock)?;
            if let ["inventory", "stocks", id] = s.as_slice() {
                input.stock_id = Some(path_int(id)?);
            }
            let id = inv.save_stock(&input)?;
            Ok(json!(i64::from(id)))
        }
        ("DELETE", ["inventory", "stocks", id]) => {
            inv.delete_stock(path_int(id)?)?;
            Ok(json!([]))
        }
        // --- links
        ("GET", ["inventory", "stock-source-links"]) => {
            let criteria =
                search_criteria_from_query(&query).ok_or_else(|| required("searchCriteria"))?;
            Ok(results_json(inv.search_stock_source_links(&criteria)))
        }
        ("POST", ["inventory", "stock-source-links"]) => {
            let links = get_array(&body, "links")?.ok_or_else(|| required("links"))?;
            let inputs = links
                .iter()
                .map(link_input)
                .collect::<Result<Vec<_>, _>>()?;
            inv.save_stock_source_links(&inputs)?;
            Ok(json!([]))
        }
        ("POST", ["inventory", "stock-source-links-delete"]) => {
            let links = get_array(&body, "links")?.ok_or_else(|| required("links"))?;
            let mut pairs = Vec::new();
            for l in links {
                let i = link_input(l)?;
                if let (Some(st), Some(code)) = (
                    i.stock_id.and_then(|x| StockId::parse(x).ok()),
                    i.source_code
                        .as_deref()
                        .and_then(|c| SourceCode::parse(c).ok()),
                ) {
                    pairs.push((st, code));
                }
            }
            inv.delete_stock_source_links(&pairs)?;
            Ok(json!([]))
        }
        // --- source items
        ("GET", ["inventory", "source-items"]) => {
            let criteria =
                search_criteria_from_query(&query).ok_or_else(|| required("searchCriteria"))?;
            Ok(results_json(inv.search_source_items(&criteria)))
        }
        ("POST", ["inventory", "source-items"]) => {
            let items = get_array(&body, "sourceItems")?.ok_or_else(|| required("sourceItems"))?;
            let inputs = items
                .iter()
                .map(source_item_input)
                .collect::<Result<Vec<_>, _>>()?;
            inv.save_source_items(&inputs)?;
            Ok(json!([]))
        }
        ("POST", ["inventory", "source-items-delete"]) => {
            let items = get_array(&body, "sourceItems")?.ok_or_else(|| required("sourceItems"))?;
            let mut pairs = Vec::new();
            for i in items {
                let input = source_item_input(i)?;
                if let (Some(code), Some(sku)) = (
                    input
                        .source_code
                        .as_deref()
                        .and_then(|c| SourceCode::parse(c).ok()),
                    input.sku.as_deref().and_then(|c| Sku::parse(c).ok()),
                ) {
                    pairs.push((code, sku));
                }
            }
            if pairs.is_empty() && !items.is_empty() {
                return Err(MagentoError::could_not_delete(Phrase::new(
                    "Could not delete Source Items",
                )));
            }
            inv.delete_source_items(&pairs)?;
            Ok(json!([]))
        }
        // --- salability
        ("GET", ["inventory", "get-product-salable-quantity", sku, stock]) => {
            let stock = path_int(stock)?;
            let id = StockId::parse(stock).map_err(|_| no_stock(stock))?;
            Ok(num::decimal_to_json(inv.get_product_salable_qty(sku, id)?))
        }
        ("GET", ["inventory", "is-product-salable", sku, stock]) => {
            let stock = stock_id_of(path_int(stock)?);
            Ok(json!(inv.is_product_salable(sku, stock)))
        }
        ("GET", ["inventory", "are-products-salable"]) => {
            let skus: Vec<String> = list_of(query.get("skus"))
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let stock = query
                .get("stockId")
                .and_then(Value::as_str)
                .ok_or_else(|| required("stockId"))?;
            let stock = stock_id_of(path_int(stock)?);
            Ok(json!(
                inv.are_products_salable(&skus, stock)
                    .iter()
                    .map(|r| json!({"sku": r.sku, "stock_id": i64::from(r.stock_id), "salable": r.salable}))
                    .collect::<Vec<_>>()
            ))
        }
        (
            "GET",
            [
                "inventory",
                "is-product-salable-for-requested-qty",
                sku,
                stock,
                qty,
            ],
        ) => {
            let stock = stock_id_of(path_int(stock)?);
            let qty = path_float(qty)?;
            let r = inv.is_product_salable_for_requested_qty(sku, stock, qty)?;
            Ok(json!({"salable": r.salable, "errors": r.errors}))
        }
        ("GET", ["inventory", "are-product-salable-for-requested-qty"]) => {
            let requests: Vec<(String, Decimal)> = list_of(query.get("skuRequests"))
                .iter()
                .map(|r| {
                    let sku = r
                        .get("sku")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let qty = r
                        .get("qty")
                        .and_then(Value::as_str)
                        .and_then(num::parse_decimal)
                        .unwrap_or_default();
                    (sku, qty)
                })
                .collect();
            let stock = query
                .get("stockId")
                .and_then(Value::as_str)
                .ok_or_else(|| required("stockId"))?;
            let stock = stock_id_of(path_int(stock)?);
            let results = inv.are_products_salable_for_requested_qty(&requests, stock)?;
            Ok(json!(
                results
                    .iter()
                    .map(|r| json!({"sku": r.sku, "stock_id": i64::from(r.stock_id), "salable": r.salable, "errors": r.errors}))
                    .collect::<Vec<_>>()
            ))
        }
        ("GET", ["inventory", "stock-resolver", channel_type, code]) => {
            let v = inv.resolve_stock(channel_type, code)?;
            Ok(stock_json(v.stock_id, &v.name, &v.sales_channels))
        }
        // --- source selection
        ("GET", ["inventory", "source-selection-algorithm-list"]) => Ok(serde_json::to_value(
            super::ssa::source_selection_algorithms(),
        )
        .unwrap_or(Value::Null)),
        ("POST", ["inventory", "source-selection-algorithm-result"]) => {
            let request =
                field(&body, "inventoryRequest").ok_or_else(|| required("inventoryRequest"))?;
            let stock = get_int(request, "stock_id")?.ok_or_else(|| required("stockId"))?;
            let items = get_array(request, "items")?
                .map(|list| {
                    list.iter()
                        .map(|i| {
                            Ok(ItemRequest {
                                sku: get_string(i, "sku")?.unwrap_or_default(),
                                qty: get_float(i, "qty")?.unwrap_or_default(),
                            })
                        })
                        .collect::<Result<Vec<_>, MagentoError>>()
                })
                .transpose()?
                .unwrap_or_default();
            let algorithm =
                get_string(&body, "algorithmCode")?.unwrap_or_else(|| "priority".to_owned());
            let r = inv.source_selection(
                &InventoryRequest {
                    stock_id: stock_id_of(stock),
                    items,
                },
                &algorithm,
            )?;
            Ok(serde_json::to_value(r).unwrap_or(Value::Null))
        }
        // --- bulk
        ("POST", ["inventory", "bulk-product-source-assign"]) => {
            let n = inv.bulk_assign_sources(
                &skus_of(get_array(&body, "skus")?),
                &source_codes_of(get_array(&body, "sourceCodes")?),
            )?;
            Ok(json!(n))
        }
        ("POST", ["inventory", "bulk-product-source-unassign"]) => {
            let n = inv.bulk_unassign_sources(
                &skus_of(get_array(&body, "skus")?),
                &source_codes_of(get_array(&body, "sourceCodes")?),
            )?;
            Ok(json!(n))
        }
        ("POST", ["inventory", "bulk-product-source-transfer"]) => {
            let origin =
                get_string(&body, "originSource")?.ok_or_else(|| required("originSource"))?;
            let destination = get_string(&body, "destinationSource")?
                .ok_or_else(|| required("destinationSource"))?;
            let parse = |c: &str| {
                SourceCode::parse(c).map_err(|_| {
                    MagentoError::validation(
                        Phrase::new("Validation Error: Select different sources for origin and destination."),
                        vec![],
                    )
                })
            };
            let ok = inv.bulk_inventory_transfer(
                &skus_of(get_array(&body, "skus")?),
                &parse(&origin)?,
                &parse(&destination)?,
                get_bool(&body, "unassignFromOrigin")?.unwrap_or(false),
            )?;
            Ok(json!(ok))
        }
        ("POST", ["inventory", "bulk-partial-source-transfer"]) => {
            let origin = get_string(&body, "origin_source_code")?
                .ok_or_else(|| required("originSourceCode"))?;
            let destination = get_string(&body, "destination_source_code")?
                .ok_or_else(|| required("destinationSourceCode"))?;
            let items = get_array(&body, "items")?
                .map(|list| {
                    list.iter()
                        .filter_map(|i| {
                            let sku = get_string(i, "sku").ok().flatten()?;
                            let qty = get_float(i, "qty").ok().flatten()?;
                            Some(PartialTransferItem {
                                sku: Sku::parse(&sku).ok()?,
                                qty,
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            inv.bulk_partial_inventory_transfer(&origin, &destination, &items)?;
            Ok(json!([]))
        }
        // --- orders and documents
        ("GET", ["orders", id]) => {
            order_json(inv, OrderId(u64::try_from(path_int(id)?).unwrap_or(0)))
        }
        ("POST", ["orders", id, "cancel"]) => {
            let ok = inv.cancel(OrderId(u64::try_from(path_int(id)?).unwrap_or(0)), now)?;
            Ok(json!(ok))
        }
        ("POST", ["order", id, "ship"]) => {
            let order = OrderId(u64::try_from(path_int(id)?).unwrap_or(0));
            inv.order(order)?;
            let lines = document_lines(get_array(&body, "items")?)?;
            let source = field(&body, "arguments")
                .and_then(|a| field(a, "extension_attributes"))
                .map(|e| get_string(e, "source_code"))
                .transpose()?
                .flatten()
                .and_then(|c| SourceCode::parse(&c).ok());
            let shipment = inv
                .ship(order, lines.as_deref(), source.as_ref(), now)
                .map_err(|e| {
                    document_failure(
                        e,
                        "Shipment Document Validation Error(s)",
                        "Could not save a shipment, see error log for details",
                    )
                })?;
            Ok(json!(shipment.0))
        }
        ("POST", ["order", id, "invoice"]) => {
            let order = OrderId(u64::try_from(path_int(id)?).unwrap_or(0));
            inv.order(order)?;
            let lines = document_lines(get_array(&body, "items")?)?;
            let invoice = inv
                .invoice(order, lines.as_deref(), true, now)
                .map_err(|e| {
                    document_failure(
                        e,
                        "Invoice Document Validation Error(s)",
                        "Could not save an invoice, see error log for details",
                    )
                })?;
            Ok(json!(invoice.0))
        }
        ("POST", ["order", id, "refund"]) => {
            let order = OrderId(u64::try_from(path_int(id)?).unwrap_or(0));
            inv.order(order)?;
            let lines = document_lines(get_array(&body, "items")?)?;
            let returned: Vec<ItemRef> = field(&body, "arguments")
                .and_then(|a| field(a, "extension_attributes"))
                .and_then(|e| e.get("return_to_stock_items"))
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_u64)
                        .map(ItemRef::ItemId)
                        .collect()
                })
                .unwrap_or_default();
            let rts = if returned.is_empty() {
                if inv.config().auto_return() {
                    ReturnToStock::All
                } else {
                    ReturnToStock::None
                }
            } else {
                ReturnToStock::Items(returned)
            };
            let memo = inv
                .refund(order, lines.as_deref(), &rts, now)
                .map_err(|e| {
                    document_failure(
                        e,
                        "Creditmemo Document Validation Error(s)",
                        "Could not save a Creditmemo, see error log for details",
                    )
                })?;
            Ok(json!(memo.0))
        }
        ("GET", ["shipment", id]) => {
            shipment_json(inv, ShipmentId(u64::try_from(path_int(id)?).unwrap_or(0)))
        }
        // --- Tillbridge reservation routes (spec §3.7; our module, not Magento's)
        ("GET", ["tillbridge", "reservations"]) => {
            let sku = query
                .get("sku")
                .and_then(Value::as_str)
                .map(str::to_lowercase);
            let stock = query
                .get("stockId")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok());
            let rows: Vec<Value> = inv
                .reservations()
                .iter()
                .filter(|r| {
                    sku.as_deref()
                        .is_none_or(|s| r.sku.as_str().to_lowercase() == s)
                })
                .filter(|r| stock.is_none_or(|s| i64::from(r.stock_id) == s))
                .map(|r| {
                    json!({
                        "reservation_id": r.reservation_id,
                        "stock_id": i64::from(r.stock_id),
                        "sku": r.sku.as_str(),
                        "quantity": num::decimal_to_json(r.quantity),
                        "metadata": r.metadata,
                    })
                })
                .collect();
            Ok(Value::Array(rows))
        }
        ("GET", ["tillbridge", "reservations-sum", sku, stock]) => {
            let stock = stock_id_of(path_int(stock)?);
            Ok(num::decimal_to_json(inv.reservations_quantity(sku, stock)))
        }
        ("POST", ["tillbridge", "reservations"]) => {
            let list = get_array(&body, "reservations")?.ok_or_else(|| required("reservations"))?;
            if list.is_empty() {
                return Err(MagentoError::input_data_is_empty());
            }
            let mut built = Vec::new();
            for r in list {
                let mut errors = Vec::new();
                let stock = get_int(r, "stock_id")
                    .ok()
                    .flatten()
                    .and_then(|s| StockId::parse(s).ok());
                if stock.is_none() {
                    errors.push(Phrase::new("\"stock_id\" is expected to be a number."));
                }
                let sku = get_string(r, "sku")?.and_then(|s| Sku::parse(&s).ok());
                if sku.is_none() {
                    errors.push(Phrase::new("\"sku\" can not be empty."));
                }
                let qty = get_float(r, "quantity")?;
                if qty.is_none() {
                    errors.push(Phrase::new("\"quantity\" can not be null."));
                }
                if get_int(r, "reservation_id")?.is_some() {
                    return Err(MagentoError::input(Phrase::named(
                        "Cannot update Reservation %reservation",
                        [(
                            "reservation",
                            field(r, "reservation_id").cloned().unwrap_or(Value::Null),
                        )],
                    )));
                }
                let (Some(stock_id), Some(sku), Some(quantity)) = (stock, sku, qty) else {
                    return Err(MagentoError::validation(
                        Phrase::new("Validation Failed"),
                        errors,
                    ));
                };
                built.push(NewReservation {
                    stock_id,
                    sku,
                    quantity,
                    metadata: metadata_text(field(r, "metadata")),
                });
            }
            inv.append_reservations(&built)?;
            Ok(json!([]))
        }
        _ => Err(route_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_offset_seconds(0)
    }

    fn call(inv: &mut Inventory, method: &str, path: &str, body: Option<Value>) -> RestResponse {
        dispatch(
            inv,
            &RestRequest {
                method: method.to_owned(),
                path: path.to_owned(),
                body,
            },
            &now(),
        )
    }

    #[test]
    fn query_strings_nest_like_php() {
        let q = parse_query("skus%5B0%5D=SKU-1&skus%5B1%5D=B&stockId=10&a[b][c]=x%2By+z");
        assert_eq!(list_of(q.get("skus")), vec![json!("SKU-1"), json!("B")]);
        assert_eq!(q["a"]["b"]["c"], json!("x+y z"));
    }

    #[test]
    fn type_errors_use_the_input_processor_text() {
        let mut inv = Inventory::new();
        let r = call(
            &mut inv,
            "POST",
            "/V1/inventory/source-items",
            Some(
                json!({"sourceItems": [{"sku": "A", "source_code": "default", "quantity": "test", "status": 1}]}),
            ),
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            json!({"message": "Error occurred during \"quantity\" processing. The \"test\" value's type is invalid. The \"float\" type was expected. Verify and try again."})
        );
        let r = call(
            &mut inv,
            "GET",
            "/V1/inventory/get-sources-assigned-to-stock-ordered-by-priority/x",
            None,
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body["message"],
            json!(
                "The \"x\" value's type is invalid. The \"int\" type was expected. Verify and try again."
            )
        );
    }

    #[test]
    fn unknown_routes_are_404() {
        let mut inv = Inventory::new();
        let r = call(&mut inv, "GET", "/rest/default/V1/nope", None);
        assert_eq!(r.status, 404);
        assert_eq!(
            r.body,
            json!({"message": "Request does not match any route."})
        );
        let r = call(&mut inv, "GET", "/rest/V1/inventory/stocks/1", None);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!({"stock_id": 1, "name": "Default Stock", "extension_attributes": {"sales_channels": [{"type": "website", "code": "base"}]}})
        );
    }
}
