//! The control API under `/__emulator/` (no auth, JSON; see README.md): world reset and seeding
//! (including every op of the MSI vector format), storefront checkout, consumers and cron, the
//! clock, settings, tokens, faults and the call log.

use serde_json::{Map, Value, json};
use tillbridge_core::inventory::StockId;
use tillbridge_core::inventory::vectors::{self, OpExecutor, OrderRefs};

use crate::auth::{TokenGrant, TokenKind};
use crate::clock::{format_datetime, parse_datetime};
use crate::faults::{FaultKind, FaultRule};
use crate::rest;
use crate::state::{Settings, State, World};

/// A control-API failure: `{"error": message}` with a status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ControlError {
    pub status: u16,
    pub message: String,
    /// Magento's REST error body, when the failure is Magento's (a refused checkout).
    pub magento: Option<Value>,
}

impl ControlError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            magento: None,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
            magento: None,
        }
    }

    pub fn body(&self) -> Value {
        match &self.magento {
            Some(m) => json!({"error": self.message, "magento": m}),
            None => json!({"error": self.message}),
        }
    }
}

type R = Result<Value, ControlError>;

/// Handles `method` on `/__emulator/<path>`.
pub fn handle(st: &mut State, method: &str, path: &str, query: &str, body: &Value) -> R {
    let tail = path
        .strip_prefix("/__emulator")
        .unwrap_or(path)
        .trim_matches('/');
    let segs: Vec<&str> = tail.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", [] | ["health"]) => Ok(json!({"ok": true, "now": st.clock.now_text()})),
        ("POST", ["reset"]) => {
            reset(st, body);
            Ok(json!({"ok": true}))
        }
        ("GET", ["clock"]) => Ok(clock_json(st)),
        ("POST", ["clock"]) => set_clock(st, body),
        ("GET", ["config"]) => Ok(config_json(st)),
        ("POST", ["config"]) => set_config(st, body),
        ("GET", ["faults"]) => Ok(json!({"rules": st.faults})),
        ("POST", ["faults"]) => add_faults(st, body),
        ("DELETE", ["faults"]) => {
            st.faults.clear();
            Ok(json!({"ok": true}))
        }
        ("DELETE", ["faults", id]) => {
            let id: u64 = id.parse().map_err(|_| ControlError::bad("fault id"))?;
            st.faults.retain(|r| r.id != id);
            Ok(json!({"ok": true}))
        }
        ("GET", ["calls"]) => {
            let q = tillbridge_core::inventory::webapi::parse_query(query);
            let since = q
                .get("since")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let calls: Vec<&crate::state::CallRecord> =
                st.calls.iter().filter(|c| c.seq > since).collect();
            Ok(json!({"calls": calls, "next_seq": st.next_call_seq}))
        }
        ("DELETE", ["calls"]) => {
            st.calls.clear();
            Ok(json!({"ok": true}))
        }
        ("GET", ["tokens"]) => Ok(json!({"tokens": st.tokens.grants})),
        ("POST", ["tokens"]) => add_token(st, body),
        ("DELETE", ["tokens", token]) => {
            st.tokens.grants.remove(*token);
            Ok(json!({"ok": true}))
        }
        ("POST", ["ops"]) => run_ops(st, body),
        ("POST", ["orders"]) => {
            crate::sales::place_order(st, body).map_err(|(status, b)| ControlError {
                status,
                message: b
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("checkout failed")
                    .to_owned(),
                magento: b.get("magento").cloned(),
            })
        }
        ("POST", ["query"]) => run_query(st, body),
        ("GET", ["order-refs", reference]) => st
            .world
            .exec
            .order_entity_id(reference)
            .map(|id| json!({"entity_id": id}))
            .ok_or_else(|| ControlError::not_found(format!("no order \"{reference}\""))),
        ("POST", ["consumers", "run"]) => Ok(run_consumers(st, body)),
        ("POST", ["cron", "cleanup-reservations"]) => {
            let deleted = st.world.exec.inventory.cleanup_reservations();
            Ok(json!({"deleted_reservation_ids": deleted}))
        }
        ("GET", ["reservations"]) => Ok(reservations_json(st)),
        ("GET", ["salable-qty", sku, stock]) => {
            let stock = stock
                .parse::<i64>()
                .ok()
                .and_then(|s| StockId::parse(s).ok())
                .ok_or_else(|| ControlError::bad("stock id"))?;
            let q = st
                .world
                .exec
                .inventory
                .get_product_salable_qty(sku, stock)
                .map_err(|e| ControlError::bad(e.rendered()))?;
            Ok(tillbridge_core::inventory::num::decimal_to_json(q))
        }
        _ => Err(ControlError::not_found(format!(
            "no control route {method} /__emulator/{tail}"
        ))),
    }
}

fn reset(st: &mut State, body: &Value) {
    st.world = World::new();
    st.faults.clear();
    if !body
        .get("keep_calls")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        st.calls.clear();
    }
    if body
        .get("settings")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        st.settings = Settings::default();
    }
    st.busy_until = None;
}

fn clock_json(st: &State) -> Value {
    json!({"now": st.clock.now_text(), "real_time": st.clock.real_time})
}

fn set_clock(st: &mut State, body: &Value) -> R {
    if let Some(at) = body.get("set").and_then(Value::as_str) {
        let s = parse_datetime(at).ok_or_else(|| {
            ControlError::bad(format!("`set`: `{at}` is not YYYY-MM-DD HH:MM:SS"))
        })?;
        st.clock.set(s);
    }
    let mut advance = 0i64;
    for (key, unit) in [
        ("advance_seconds", 1),
        ("advance_minutes", 60),
        ("advance_hours", 3600),
        ("advance_days", 86_400),
    ] {
        if let Some(n) = body.get(key).and_then(Value::as_i64) {
            advance += n * unit;
        }
    }
    st.clock.advance(advance);
    Ok(clock_json(st))
}

fn config_json(st: &State) -> Value {
    json!({
        "settings": st.settings,
        "magento": st.world.exec.inventory.config(),
    })
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn set_config(st: &mut State, body: &Value) -> R {
    let mut current =
        serde_json::to_value(&st.settings).map_err(|e| ControlError::bad(e.to_string()))?;
    let mut patch = body.clone();
    let magento = patch.as_object_mut().and_then(|m| m.remove("magento"));
    merge(&mut current, &patch);
    st.settings =
        serde_json::from_value(current).map_err(|e| ControlError::bad(format!("settings: {e}")))?;
    if let Some(Value::Object(paths)) = magento {
        for (path, v) in paths {
            let text = match v {
                Value::String(s) => s,
                Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
                other => other.to_string(),
            };
            st.world.exec.inventory.set_config("default", &path, &text);
        }
    }
    Ok(config_json(st))
}

fn add_faults(st: &mut State, body: &Value) -> R {
    let list: Vec<Value> = match body.get("rules") {
        Some(Value::Array(l)) => l.clone(),
        _ => vec![body.clone()],
    };
    let mut ids = Vec::new();
    for v in list {
        let mut rule: FaultRule =
            serde_json::from_value(v).map_err(|e| ControlError::bad(format!("fault: {e}")))?;
        if let Some(p) = rule.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ControlError::bad("fault: probability must be within 0..1"));
        }
        if let FaultKind::LostResponse { mode: Some(m), .. } = &rule.kind
            && !["reset", "status", "timeout"].contains(&m.as_str())
        {
            return Err(ControlError::bad(format!(
                "fault: lost_response mode `{m}` (reset, status or timeout)"
            )));
        }
        rule.id = st.next_fault_id;
        rule.fired = 0;
        st.next_fault_id += 1;
        ids.push(rule.id);
        st.faults.push(rule);
    }
    Ok(json!({"ids": ids}))
}

fn add_token(st: &mut State, body: &Value) -> R {
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ControlError::bad("`token` is required"))?;
    let kind = match body.get("kind").and_then(Value::as_str) {
        None | Some("integration") => TokenKind::Integration,
        Some("admin") => TokenKind::Admin,
        Some(other) => return Err(ControlError::bad(format!("token kind `{other}`"))),
    };
    let resources = match body.get("resources") {
        None | Some(Value::Null) => None,
        Some(Value::Array(l)) => Some(
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => return Err(ControlError::bad("`resources` must be a list")),
    };
    let expires_at = body
        .get("expires_in_seconds")
        .and_then(Value::as_i64)
        .map(|s| st.clock.now_seconds() + s);
    st.tokens.grants.insert(
        token.to_owned(),
        TokenGrant {
            kind,
            resources,
            expires_at,
            username: None,
        },
    );
    Ok(json!({"ok": true}))
}

/// `POST /__emulator/ops {"ops": [...]}`: MSI vector ops (FORMAT.md §2) applied in order to
/// the world, through the model (an op's `rest` form is ignored here: send it over REST).
/// Stops at the first failure; answers each op's result.
fn run_ops(st: &mut State, body: &Value) -> R {
    let list = match body.get("ops") {
        Some(Value::Array(l)) => l.clone(),
        _ => match body.get("op") {
            Some(op) => vec![op.clone()],
            None => return Err(ControlError::bad("`ops` (a list) is required")),
        },
    };
    let mut results = Vec::new();
    for raw in list {
        let mut raw = raw;
        if let Some(m) = raw.as_object_mut() {
            m.remove("rest");
        }
        let op = vectors::parse_op(&raw).map_err(ControlError::bad)?;
        match st.world.exec.apply(&op) {
            Ok(out) => results.push(json!({
                "ok": true,
                "result": out.result,
                "created_stock_id": out.created_stock_id,
                "cart_item_qty": out.cart_item_qty,
            })),
            Err(f) => {
                results.push(failure_json(&f));
                return Ok(json!({"results": results, "failed": true}));
            }
        }
    }
    Ok(json!({"results": results, "failed": false}))
}

pub(crate) fn failure_json(f: &vectors::OpFailure) -> Value {
    json!({
        "ok": false,
        "http_status": f.http_status,
        "message": f.message,
        "rendered": f.rendered,
        "parameters": f.parameters,
        "body": f.body,
        "exception": f.exception,
        "localized": f.localized,
        "unsupported": f.unsupported,
    })
}

/// `POST /__emulator/query {"check": {"<kind>": {args}}}`: evaluates an MSI vector check's
/// query (FORMAT.md §4) and answers `{"value": ...}` or `{"failure": ...}`.
fn run_query(st: &mut State, body: &Value) -> R {
    let mut check = body
        .get("check")
        .cloned()
        .ok_or_else(|| ControlError::bad("`check` is required"))?;
    if let Some(m) = check.as_object_mut() {
        m.remove("rest");
        if !m.keys().any(|k| {
            matches!(
                k.as_str(),
                "equals"
                    | "not_equals"
                    | "equals_capture"
                    | "contains"
                    | "not_contains"
                    | "contains_once"
                    | "items_contain"
                    | "errors"
                    | "error"
            )
        }) {
            m.insert("equals".to_owned(), Value::Null);
        }
    }
    let check = vectors::parse_check(&check).map_err(ControlError::bad)?;
    Ok(match st.world.exec.query(&check) {
        Ok(v) => json!({"value": v}),
        Err(f) => json!({"failure": failure_json(&f)}),
    })
}

/// Runs consumers: `async.operations.all` (queued REST operations), and the model's
/// `inventory.*` queues. `{"consumer": name?, "max_messages": n?}`; all when absent.
fn run_consumers(st: &mut State, body: &Value) -> Value {
    let consumer = body.get("consumer").and_then(Value::as_str);
    let max = body
        .get("max_messages")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok());
    let mut report = Map::new();
    if consumer.is_none_or(|c| c == "async.operations.all") {
        let open = st.world.bulk.open_operations();
        let open: Vec<_> = match max {
            Some(n) => open.into_iter().take(n).collect(),
            None => open,
        };
        for at in &open {
            let Some(op) = st
                .world
                .bulk
                .bulks
                .get(at.0)
                .and_then(|b| b.operations.get(at.1))
                .cloned()
            else {
                continue;
            };
            let (status, body) = rest::dispatch_sync(st, &op.method, &op.route, "", Some(op.body));
            st.world.bulk.finish(*at, status, &body);
        }
        report.insert("async.operations.all".to_owned(), json!(open.len()));
    }
    for name in [
        "inventory.reservations.update",
        "inventory.reservations.updateSalabilityStatus",
        "inventory.reservations.cleanup",
        "inventory.indexer.sourceItem",
        "inventory.source.items.cleanup",
    ] {
        if consumer.is_none_or(|c| c == name) {
            let n = st.world.exec.inventory.process_queue(name, max);
            report.insert(name.to_owned(), json!(n));
        }
    }
    json!({"processed": report})
}

fn reservations_json(st: &State) -> Value {
    let rows: Vec<Value> = st
        .world
        .exec
        .inventory
        .reservations()
        .iter()
        .map(|r| {
            json!({
                "reservation_id": r.reservation_id,
                "stock_id": i64::from(r.stock_id),
                "sku": r.sku.as_str(),
                "quantity": tillbridge_core::inventory::num::decimal_to_json(r.quantity),
                "metadata": r.metadata,
            })
        })
        .collect();
    json!({"reservations": rows})
}

/// Formats seconds as Magento's datetime (re-exported for the README examples).
pub fn datetime(seconds: i64) -> String {
    format_datetime(seconds)
}
