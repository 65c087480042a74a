//! Magento's REST front controller, as far as a client can tell: the route prefixes
//! (`/rest[/<store>][/async[/bulk]]/V1/...`), bearer authentication and ACL (401), JSON
//! decoding, web-API input limits, the asynchronous and bulk variants (202), `?fields=`
//! filtering, and dispatch to the inventory model ([`webapi::dispatch`]), the order store
//! ([`crate::sales`]) and the bulk status routes.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tillbridge_core::inventory::num;
use tillbridge_core::inventory::webapi::{self, RestRequest};

use crate::auth::{self, TokenKind};
use crate::bulk;
use crate::state::State;

/// How a request reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Async,
    Bulk,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Bulk => "bulk",
        }
    }
}

/// A parsed REST path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    pub store: Option<String>,
    pub mode: Mode,
    /// `/V1/...`
    pub route: String,
}

/// Splits `/rest[/<store>][/async[/bulk]]/V1/...`.
pub fn parse_path(path: &str) -> Option<RoutePath> {
    let rest = path.strip_prefix("/rest/")?;
    let mut segs: Vec<&str> = rest.split('/').collect();
    let mut store = None;
    if segs.first().is_some_and(|s| *s != "V1" && *s != "async") {
        store = Some(segs.remove(0).to_owned());
    }
    let mut mode = Mode::Sync;
    if segs.first() == Some(&"async") {
        segs.remove(0);
        mode = Mode::Async;
        if segs.first() == Some(&"bulk") {
            segs.remove(0);
            mode = Mode::Bulk;
        }
    }
    if segs.first() != Some(&"V1") {
        return None;
    }
    Some(RoutePath {
        store,
        mode,
        route: format!("/{}", segs.join("/")),
    })
}

/// A request as the front controller sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The body, parsed (`Err` = not JSON).
    pub body: Result<Option<Value>, String>,
    /// The `Authorization: Bearer` token.
    pub bearer: Option<String>,
}

/// What the front controller answered.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub body: Value,
    /// The request changed the store (or queued a change).
    pub applied: bool,
    pub route: Option<RoutePath>,
}

fn error(status: u16, body: Value) -> Outcome {
    Outcome {
        status,
        body,
        applied: false,
        route: None,
    }
}

fn route_not_found() -> Value {
    json!({"message": "Request does not match any route."})
}

fn is_write(method: &str) -> bool {
    !method.eq_ignore_ascii_case("GET")
}

/// Handles a REST request (everything after faults and throttling).
pub fn handle(st: &mut State, req: &Incoming) -> Outcome {
    let method = req.method.to_uppercase();
    let Some(rp) = parse_path(&req.path) else {
        return error(404, route_not_found());
    };
    let segs: Vec<&str> = rp
        .route
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect();
    let mut out = handle_route(st, req, &method, &rp, &segs);
    out.route = Some(rp);
    out
}

fn handle_route(
    st: &mut State,
    req: &Incoming,
    method: &str,
    rp: &RoutePath,
    segs: &[&str],
) -> Outcome {
    // Token endpoints need no token.
    if rp.mode == Mode::Sync && method == "POST" && segs == ["integration", "admin", "token"] {
        return admin_token(st, req);
    }
    let resources = auth::resources_of(method, segs);
    if resources.is_empty() && !known_unprotected(method, segs) {
        return error(404, route_not_found());
    }
    let now = st.clock.now_seconds();
    let grant = req
        .bearer
        .as_deref()
        .and_then(|t| st.tokens.check(t, now))
        .filter(|g| g.kind != TokenKind::Integration || st.settings.integration_as_bearer)
        .cloned();
    let Some(grant) = grant else {
        return error(401, auth::unauthorized_body(&resources));
    };
    if !auth::allows(&grant, &resources) {
        return error(401, auth::unauthorized_body(&resources));
    }
    let body = match &req.body {
        Ok(b) => b.clone(),
        Err(_) => return error(400, json!({"message": "Decoding error."})),
    };
    match rp.mode {
        Mode::Sync => {}
        Mode::Async | Mode::Bulk => {
            return queue_async(st, method, rp, segs, body, &grant.kind);
        }
    }
    if let Some(e) = check_input_limits(st, segs, body.as_ref(), false) {
        return error(400, e);
    }
    let query = match apply_default_page_size(st, &req.query) {
        Ok(q) => q,
        Err(e) => return error(400, e),
    };
    let (status, mut value) = dispatch_sync(st, method, &rp.route, &query, body);
    if status == 200
        && let Some(fields) = webapi::parse_query(&req.query)
            .get("fields")
            .and_then(Value::as_str)
    {
        value = filter_fields(&value, &parse_fields(fields));
    }
    Outcome {
        status,
        body: value,
        applied: is_write(method) && status < 400,
        route: None,
    }
}

fn known_unprotected(_method: &str, _segs: &[&str]) -> bool {
    false
}

/// Runs a synchronous route (also what the async consumer does for each operation).
pub fn dispatch_sync(
    st: &mut State,
    method: &str,
    route: &str,
    query: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let segs: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    if let ["bulk", rest @ ..] = segs.as_slice() {
        return bulk_route(st, method, rest, query);
    }
    if let Some(answer) = crate::sales::route(st, method, &segs, query, body.as_ref()) {
        return answer;
    }
    if let ["tillbridge", "inconsistencies"] = segs.as_slice() {
        return (200, inconsistencies(st));
    }
    let path = if query.is_empty() {
        route.to_owned()
    } else {
        format!("{route}?{query}")
    };
    let now = st.clock.now();
    let request = RestRequest {
        method: method.to_owned(),
        path,
        body,
    };
    let r = webapi::dispatch(&mut st.world.exec.inventory, &request, &now);
    (r.status, r.body)
}

/// `GET /V1/tillbridge/inconsistencies`: `inventory:reservation:list-inconsistencies` as JSON,
/// one row per (order, SKU, stock) with the compensation that fixes it (our module's route).
fn inconsistencies(st: &State) -> Value {
    let inv = &st.world.exec.inventory;
    let rows: Vec<Value> = inv
        .salable_quantity_inconsistencies(50)
        .map(|bunches| {
            bunches
                .iter()
                .flatten()
                .flat_map(|i| {
                    i.items.iter().map(move |(sku, qty)| {
                        let compensation = -*qty;
                        json!({
                            "order_increment_id": i.order_increment_id,
                            "order_id": i.object_id,
                            "order_status": i.order_status,
                            "sku": sku,
                            "stock_id": i64::from(i.stock_id),
                            "quantity": num::decimal_to_json(*qty),
                            "compensation": num::decimal_to_json(compensation),
                            "compensation_argument": format!(
                                "{}:{sku}:{}:{}",
                                i.order_increment_id,
                                six_decimals(compensation),
                                i64::from(i.stock_id)
                            ),
                        })
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!(rows)
}

/// PHP's `%f` (six decimals).
fn six_decimals(d: Decimal) -> String {
    format!("{:.6}", d.round_dp(6))
}

fn bulk_route(st: &State, method: &str, segs: &[&str], query: &str) -> (u16, Value) {
    let not_found = |uuid: &str| {
        (
            404,
            json!({"message": "Bulk uuid %bulkUuid not exist", "parameters": {"bulkUuid": uuid}}),
        )
    };
    match (method, segs) {
        ("GET", []) => {
            let q = webapi::parse_query(query);
            let criteria = webapi::search_criteria_from_query(&q).unwrap_or_default();
            let mut r = criteria.apply(bulk::operation_rows(&st.world.bulk));
            // `start_time` is searchable (the bulk's) but not part of an operation.
            for item in &mut r.items {
                if let Some(m) = item.as_object_mut() {
                    m.remove("start_time");
                }
            }
            (
                200,
                json!({"items": r.items, "search_criteria": r.search_criteria, "total_count": r.total_count}),
            )
        }
        ("GET", [uuid, "status"]) => match st.world.bulk.get(uuid) {
            Some(b) => (200, b.status_json()),
            None => not_found(uuid),
        },
        ("GET", [uuid, "detailed-status"]) => match st.world.bulk.get(uuid) {
            Some(b) => (200, b.detailed_json()),
            None => not_found(uuid),
        },
        ("GET", [uuid, "operation-status", status]) => match st.world.bulk.get(uuid) {
            Some(b) => (
                200,
                json!(b.count_with_status(status.parse::<u8>().unwrap_or(0))),
            ),
            None => not_found(uuid),
        },
        _ => (404, route_not_found()),
    }
}

fn queue_async(
    st: &mut State,
    method: &str,
    rp: &RoutePath,
    segs: &[&str],
    body: Option<Value>,
    kind: &TokenKind,
) -> Outcome {
    if method == "GET" {
        return error(404, route_not_found());
    }
    let elements: Vec<Value> = match (rp.mode, body) {
        (Mode::Bulk, Some(Value::Array(list))) => list,
        (Mode::Bulk, _) => {
            return error(
                400,
                json!({"message": "Request body is expected to be an array of entities."}),
            );
        }
        (_, b) => vec![b.unwrap_or(Value::Object(Map::new()))],
    };
    for e in &elements {
        if let Some(err) = check_input_limits(st, segs, Some(e), true) {
            return error(400, err);
        }
    }
    let mut ops = Vec::new();
    for e in elements {
        let route = if rp.mode == Mode::Bulk {
            fill_by_params(&rp.route, &e)
        } else {
            rp.route.clone()
        };
        ops.push((method.to_owned(), route, e));
    }
    let uuid = uuid_of(st);
    let start = st.clock.now_text();
    let description = format!("Topic {}", bulk::topic_of(method, &rp.route));
    let user_type = match kind {
        TokenKind::Integration => 1,
        TokenKind::Admin => 2,
    };
    let body = st
        .world
        .bulk
        .enqueue(uuid, start, user_type, ops, description);
    Outcome {
        status: 202,
        body,
        applied: true,
        route: None,
    }
}

/// `by<Param>` segments of bulk routes take their value from the element
/// (`/V1/inventory/sources/bySourceCode` + `{"sourceCode": "x", ...}`).
fn fill_by_params(route: &str, element: &Value) -> String {
    route
        .split('/')
        .map(|seg| match seg.strip_prefix("by") {
            Some(name) if name.chars().next().is_some_and(char::is_uppercase) => {
                let mut key = String::new();
                let mut cs = name.chars();
                if let Some(c) = cs.next() {
                    key.extend(c.to_lowercase());
                    key.push_str(cs.as_str());
                }
                match element.get(&key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => seg.to_owned(),
                }
            }
            _ => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn uuid_of(st: &mut State) -> String {
    let a = st.rng.next_u64();
    let b = st.rng.next_u64();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The PHP data interface whose list a body parameter is (for the input-limit message).
fn list_type_of(param: &str) -> &'static str {
    match param {
        "sourceItems" => "\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface",
        "links" => "\\Magento\\InventoryApi\\Api\\Data\\StockSourceLinkInterface",
        "items" => "\\Magento\\Sales\\Api\\Data\\ShipmentItemCreationInterface",
        "reservations" => "\\Tillbridge\\PosSync\\Api\\Data\\ReservationInterface",
        "tracks" => "\\Magento\\Sales\\Api\\Data\\ShipmentTrackCreationInterface",
        "skus" | "sourceCodes" => "string",
        _ => "array",
    }
}

/// `Maximum items of type "%type" is %max` when a list parameter is longer than the limit.
fn check_input_limits(
    st: &State,
    segs: &[&str],
    body: Option<&Value>,
    asynchronous: bool,
) -> Option<Value> {
    let limits = &st.settings.input_limits;
    if !limits.enabled {
        return None;
    }
    let max = if asynchronous {
        limits.async_array_max
    } else {
        limits.sync_array_max
    };
    let obj = body?.as_object()?;
    for (k, v) in obj {
        if let Some(list) = v.as_array()
            && list.len() > max
        {
            let ty = match (k.as_str(), segs) {
                ("items", ["order", _, "invoice"]) => {
                    "\\Magento\\Sales\\Api\\Data\\InvoiceItemCreationInterface"
                }
                ("items", ["order" | "invoice", _, "refund"]) => {
                    "\\Magento\\Sales\\Api\\Data\\CreditmemoItemCreationInterface"
                }
                (other, _) => list_type_of(other),
            };
            return Some(json!({
                "message": "Maximum items of type \"%type\" is %max",
                "parameters": {"type": ty, "max": max}
            }));
        }
    }
    None
}

/// With input limits on, a search without `pageSize` gets the default page size, and a larger
/// one than the maximum is refused.
fn apply_default_page_size(st: &State, query: &str) -> Result<String, Value> {
    let limits = &st.settings.input_limits;
    if !limits.enabled || !query.contains("searchCriteria") {
        return Ok(query.to_owned());
    }
    let parsed = webapi::parse_query(query);
    let sc = parsed.get("searchCriteria");
    let size = sc
        .and_then(|s| s.get("pageSize").or_else(|| s.get("page_size")))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<usize>().ok());
    match size {
        Some(n) if n > limits.max_page_size => Err(json!({
            "message": "Maximum SearchCriteria pageSize is %max",
            "parameters": {"max": limits.max_page_size}
        })),
        Some(_) => Ok(query.to_owned()),
        None => Ok(format!(
            "{query}&searchCriteria%5BpageSize%5D={}",
            limits.default_page_size
        )),
    }
}

fn admin_token(st: &mut State, req: &Incoming) -> Outcome {
    let body = match &req.body {
        Ok(b) => b.clone().unwrap_or(Value::Null),
        Err(_) => return error(400, json!({"message": "Decoding error."})),
    };
    let username = body.get("username").and_then(Value::as_str).unwrap_or("");
    let password = body.get("password").and_then(Value::as_str).unwrap_or("");
    let mut missing = Vec::new();
    if username.is_empty() {
        missing.push("username");
    }
    if password.is_empty() {
        missing.push("password");
    }
    if !missing.is_empty() {
        let errors: Vec<Value> = missing
            .iter()
            .map(|f| json!({"message": "\"%fieldName\" is required. Enter and try again.", "parameters": {"fieldName": f}}))
            .collect();
        return error(
            400,
            json!({"message": "One or more input exceptions have occurred.", "errors": errors}),
        );
    }
    if username != st.settings.admin_username || password != st.settings.admin_password {
        return error(
            401,
            json!({"message": "The account sign-in was incorrect or your account is disabled temporarily. Please wait and try again later."}),
        );
    }
    if st.settings.admin_2fa {
        return error(
            401,
            json!({"message": "Please use the 2fa provider-specific endpoints to obtain a token.",
                   "parameters": {"active_providers": ["google"]}}),
        );
    }
    let now = st.clock.now_seconds();
    let seed = st.seed;
    let token = st.tokens.issue_admin(username, now, seed);
    Outcome {
        status: 200,
        body: json!(token),
        applied: false,
        route: None,
    }
}

// ----- ?fields= --------------------------------------------------------------------------------

/// One requested field, with its own sub-fields (`items[sku,qty]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub children: Vec<FieldSpec>,
}

/// Parses `items[increment_id,entity_id],total_count`.
pub fn parse_fields(text: &str) -> Vec<FieldSpec> {
    fn list(chars: &[char], i: &mut usize) -> Vec<FieldSpec> {
        let mut out = Vec::new();
        let mut name = String::new();
        while *i < chars.len() {
            let c = chars[*i];
            *i += 1;
            match c {
                ',' => {
                    if !name.trim().is_empty() {
                        out.push(FieldSpec {
                            name: name.trim().to_owned(),
                            children: Vec::new(),
                        });
                    }
                    name.clear();
                }
                '[' => {
                    let children = list(chars, i);
                    out.push(FieldSpec {
                        name: name.trim().to_owned(),
                        children,
                    });
                    name.clear();
                    if chars.get(*i) == Some(&',') {
                        *i += 1;
                    }
                }
                ']' => break,
                other => name.push(other),
            }
        }
        if !name.trim().is_empty() {
            out.push(FieldSpec {
                name: name.trim().to_owned(),
                children: Vec::new(),
            });
        }
        out
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    list(&chars, &mut i)
}

/// Keeps only the requested fields (lists are filtered element by element).
pub fn filter_fields(value: &Value, fields: &[FieldSpec]) -> Value {
    if fields.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(list) => Value::Array(list.iter().map(|v| filter_fields(v, fields)).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for f in fields {
                if let Some(v) = m.get(&f.name) {
                    out.insert(f.name.clone(), filter_fields(v, &f.children));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_store_mode_and_route() {
        let p = parse_path("/rest/all/async/bulk/V1/inventory/source-items");
        assert_eq!(
            p,
            Some(RoutePath {
                store: Some("all".into()),
                mode: Mode::Bulk,
                route: "/V1/inventory/source-items".into()
            })
        );
        assert_eq!(
            parse_path("/rest/V1/orders/1").map(|p| (p.store, p.mode)),
            Some((None, Mode::Sync))
        );
        assert_eq!(parse_path("/V1/orders"), None);
        assert_eq!(parse_path("/rest/default/V2/orders"), None);
    }

    #[test]
    fn fields_filter_nested_lists() {
        let f = parse_fields("items[increment_id,entity_id],total_count");
        let v = json!({"items": [{"increment_id": "1", "entity_id": 1, "state": "new"}], "total_count": 1, "search_criteria": {}});
        assert_eq!(
            filter_fields(&v, &f),
            json!({"items": [{"increment_id": "1", "entity_id": 1}], "total_count": 1})
        );
    }

    #[test]
    fn bulk_routes_take_path_parameters_from_the_element() {
        assert_eq!(
            fill_by_params(
                "/V1/inventory/sources/bySourceCode",
                &json!({"sourceCode": "s1"})
            ),
            "/V1/inventory/sources/s1"
        );
    }
}
