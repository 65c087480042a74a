//! The routes: health, readiness, metrics, records, commands, exceptions, operator actions,
//! configuration and mapping views.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use tillbridge_core::sync::RecordState;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::params::{KINDS, Params, STATES, clip, path_id};
use super::{
    ApiState, OperatorAction, OperatorRefusal, OperatorRequest, REASONS, auth, dashboard, metrics,
    parse_reason, reason_guide, reason_name, snake, webhooks,
};
use crate::pos::Feed;
use crate::store::{Counts, ExceptionRow, RecordFilter, RecordId, RecordKind, Store, StoreError};

type Answer = Result<HttpResponse, ApiError>;

/// The longest note or name accepted from a person.
const MAX_NOTE: usize = 2000;
const MAX_BY: usize = 100;
/// How many exceptions a filtered listing scans at most.
const MAX_SCAN: u32 = 50_000;

pub(super) fn configure(cfg: &mut web::ServiceConfig, state: ApiState) {
    cfg.app_data(web::Data::new(state))
        .service(
            web::resource("/health")
                .route(web::get().to(health))
                .default_service(web::to(wrong_method)),
        )
        .service(
            web::resource("/ready")
                .route(web::get().to(ready))
                .default_service(web::to(wrong_method)),
        )
        .service(
            web::resource("/metrics")
                .wrap(from_fn(auth::require_token))
                .route(web::get().to(metrics_text))
                .default_service(web::to(wrong_method)),
        )
        .service(
            web::scope("/api")
                .wrap(from_fn(auth::require_token))
                .service(get("/summary").route(web::get().to(summary)))
                .service(get("/records").route(web::get().to(records)))
                .service(get("/records/{id}").route(web::get().to(record)))
                .service(get("/commands").route(web::get().to(commands)))
                .service(get("/commands/{id}").route(web::get().to(command)))
                .service(get("/exceptions").route(web::get().to(exceptions)))
                .service(get("/exceptions/{id}/retry").route(web::post().to(retry)))
                .service(get("/exceptions/{id}/resolve").route(web::post().to(resolve)))
                .service(get("/poll").route(web::post().to(poll)))
                .service(get("/config").route(web::get().to(config)))
                .service(get("/mapping").route(web::get().to(mapping))),
        )
        .service(
            web::resource("/webhooks/{name}")
                .app_data(web::PayloadConfig::new(1 << 20))
                .route(web::post().to(webhooks::receive))
                .default_service(web::to(wrong_method)),
        );
    dashboard::configure(cfg);
    cfg.default_service(web::to(no_route));
}

/// A resource whose other methods answer a JSON 405.
fn get(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(wrong_method))
}

async fn wrong_method(req: HttpRequest) -> Answer {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {}", req.path(), req.method()),
    )
    .field("method"))
}

async fn no_route(req: HttpRequest) -> Answer {
    Err(ApiError::not_found(
        "path",
        format!("no route {} {}", req.method(), clip(req.path())),
    )
    .hint("the routes are listed in docs/runbooks/ops-dashboard-and-api.md"))
}

/// Runs a store call on a blocking thread.
async fn on_store<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = state.store.clone();
    web::block(move || f(store.as_ref()))
        .await
        .map_err(ApiError::blocking)?
        .map_err(|e| ApiError::store(&e))
}

fn json_ok(value: &Value) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

// ---------------------------------------------------------------------------------------------
// health and readiness

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "service": "tillbridge",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Each readiness check with its failure, if any.
async fn readiness(state: &ApiState) -> BTreeMap<&'static str, Result<(), String>> {
    let store = on_store(state, |s| s.cursor("readiness-probe").map(|_| ()))
        .await
        .map_err(|e| e.body.error);
    let runner = state.runner.readiness();
    let channel = if state.operator.is_closed() {
        Err("the runner is not receiving operator actions (it has stopped)".to_owned())
    } else {
        Ok(())
    };
    BTreeMap::from([
        ("store", store),
        ("runner", runner),
        ("operator_channel", channel),
    ])
}

fn checks_json(checks: &BTreeMap<&'static str, Result<(), String>>) -> (bool, Value) {
    let ready = checks.values().all(Result::is_ok);
    let body: Map<String, Value> = checks
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            };
            ((*k).to_owned(), v)
        })
        .collect();
    (ready, Value::Object(body))
}

async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let checks = readiness(&state).await;
    let (ok, body) = checks_json(&checks);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut b = HttpResponse::build(status);
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if ok {
        b.json(json!({"ready": true, "checks": body}))
    } else {
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, v)| v.is_err())
            .map(|(k, _)| *k)
            .collect();
        b.json(json!({
            "ready": false,
            "checks": body,
            "error": format!("not ready: {}", failed.join(", ")),
            "component": failed.first().copied().unwrap_or("runner"),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// metrics and summary

async fn metrics_text(state: web::Data<ApiState>) -> HttpResponse {
    let snapshot = state.runner.snapshot();
    let counts = on_store(&state, |s| s.counts()).await.ok();
    let ready = readiness(&state).await.values().all(Result::is_ok);
    let tallies: Vec<metrics::WebhookTally> = state
        .webhooks
        .iter()
        .map(|(name, (_, c))| metrics::WebhookTally {
            endpoint: name.clone(),
            stored: c.stored.load(std::sync::atomic::Ordering::Relaxed),
            duplicate: c.duplicate.load(std::sync::atomic::Ordering::Relaxed),
            rejected: c.rejected.load(std::sync::atomic::Ordering::Relaxed),
        })
        .collect();
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&snapshot, counts.as_ref(), ready, &tallies))
}

fn by_state(pairs: impl Iterator<Item = (RecordState, u64)>) -> (u64, Map<String, Value>) {
    let mut map: BTreeMap<String, u64> = STATES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    let mut total = 0;
    for (state, n) in pairs {
        *map.entry(snake(&state)).or_default() += n;
        total += n;
    }
    (total, map.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

async fn summary(state: web::Data<ApiState>) -> Answer {
    let counts: Counts = on_store(&state, |s| s.counts()).await?;
    let m = state.runner.snapshot();
    let mapping = state.runner.mapping();
    let (ready, checks) = checks_json(&readiness(&state).await);

    let mut reasons: BTreeMap<String, u64> = REASONS
        .iter()
        .map(|r| (reason_name(*r).to_owned(), 0))
        .collect();
    for (reason, n) in &counts.open_exceptions {
        *reasons.entry(reason.clone()).or_default() += n;
    }
    let open_total: u64 = reasons.values().sum();
    let (records_total, records_by_state) =
        by_state(counts.records.iter().map(|(_, s, n)| (*s, *n)));
    let mut by_kind: BTreeMap<&str, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
    for (kind, _, n) in &counts.records {
        *by_kind.entry(kind.as_str()).or_default() += n;
    }
    let (commands_total, commands_by_state) = by_state(counts.commands.iter().copied());
    let errors = mapping
        .problems
        .iter()
        .filter(|p| p.severity == tillbridge_core::mapping::Severity::Error)
        .count();
    Ok(json_ok(&json!({
        "ready": ready,
        "checks": checks,
        "open_exceptions": {"total": open_total, "by_reason": reasons},
        "records": {"total": records_total, "by_state": records_by_state, "by_kind": by_kind},
        "commands": {"total": commands_total, "by_state": commands_by_state},
        "role": m.role,
        "pending_pushes": m.pending_pushes,
        "commands_in_flight": m.commands_in_flight,
        "push_latency_ms": {
            "count": m.push_latency.count,
            "p50": m.push_latency.p50_ms,
            "p99": m.push_latency.p99_ms,
        },
        "budget": {
            "requests_per_second": m.budget_requests_per_second,
            "items_per_second": m.budget_items_per_second,
        },
        "stats": m.stats,
        "mapping": {
            "errors": errors,
            "warnings": mapping.problems.len() - errors,
            "checked_at": mapping.checked_at,
        },
    })))
}

// ---------------------------------------------------------------------------------------------
// records and commands

async fn records(req: HttpRequest, state: web::Data<ApiState>) -> Answer {
    let p = Params::parse(
        req.query_string(),
        &["kind", "state", "contains", "limit", "offset"],
    )?;
    let kind = match p.text("kind") {
        None => None,
        Some(k) => Some(RecordKind::parse(k).ok_or_else(|| {
            ApiError::bad(
                "kind",
                format!("kind '{}' is not one of: {}", clip(k), KINDS.join(", ")),
            )
        })?),
    };
    let record_state: Option<RecordState> = p.choice("state", &STATES)?;
    let contains = p.contains()?;
    let (limit, offset) = p.page()?;
    let filter = RecordFilter {
        kind,
        state: record_state,
        contains,
        limit,
        offset,
    };
    let page = on_store(&state, move |s| s.records(&filter)).await?;
    Ok(json_ok(&json!({
        "items": page.items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

async fn record(state: web::Data<ApiState>, id: web::Path<String>) -> Answer {
    let id: RecordId = path_id(&id, "record")?;
    let found = on_store(&state, move |s| {
        let Some(row) = s.record(id)? else {
            return Ok(None);
        };
        let history = s.record_history(id)?;
        let open = s.exceptions(true, super::params::MAX_LIMIT, 0)?;
        Ok(Some((row, history, open.items)))
    })
    .await?;
    let Some((row, history, open)) = found else {
        return Err(ApiError::not_found("id", format!("no record with id {id}")));
    };
    let text = id.to_string();
    let concerning: Vec<Value> = open
        .into_iter()
        .filter(|e| e.entry.records.contains(&text))
        .map(exception_json)
        .collect();
    let mut body = serde_json::to_value(&row).map_err(ApiError::blocking)?;
    if let Value::Object(map) = &mut body {
        map.insert("history".into(), json!(history));
        map.insert("exceptions".into(), Value::Array(concerning));
    }
    Ok(json_ok(&body))
}

async fn commands(req: HttpRequest, state: web::Data<ApiState>) -> Answer {
    let p = Params::parse(req.query_string(), &["state", "limit", "offset"])?;
    let command_state: Option<RecordState> = p.choice("state", &STATES)?;
    let (limit, offset) = p.page()?;
    let page = on_store(&state, move |s| s.commands(command_state, limit, offset)).await?;
    Ok(json_ok(&json!({
        "items": page.items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

async fn command(state: web::Data<ApiState>, id: web::Path<String>) -> Answer {
    let id: u64 = path_id(&id, "command")?;
    let found = on_store(&state, move |s| {
        let Some(row) = s.command(id)? else {
            return Ok(None);
        };
        Ok(Some((row, s.command_history(id)?)))
    })
    .await?;
    let Some((row, history)) = found else {
        return Err(ApiError::not_found(
            "id",
            format!("no command with id {id}"),
        ));
    };
    let mut body = serde_json::to_value(&row).map_err(ApiError::blocking)?;
    if let Value::Object(map) = &mut body {
        map.insert("history".into(), json!(history));
    }
    Ok(json_ok(&body))
}

// ---------------------------------------------------------------------------------------------
// exceptions

fn exception_json(row: ExceptionRow) -> Value {
    let status = if row.resolved_at.is_some() {
        "resolved"
    } else {
        "open"
    };
    let guide = reason_guide(row.entry.reason);
    let mut v = serde_json::to_value(&row).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("status".into(), json!(status));
        map.insert("guide".into(), json!(guide));
    }
    v
}

async fn exceptions(req: HttpRequest, state: web::Data<ApiState>) -> Answer {
    let p = Params::parse(req.query_string(), &["status", "reason", "limit", "offset"])?;
    let status = p.text("status").unwrap_or("open");
    let open_only = match status {
        "open" => true,
        "resolved" | "all" => false,
        other => {
            return Err(ApiError::bad(
                "status",
                format!(
                    "status '{}' is not one of: open, resolved, all",
                    clip(other)
                ),
            ));
        }
    };
    let reason = match p.text("reason") {
        None => None,
        Some(r) => Some(parse_reason(r).ok_or_else(|| {
            let names: Vec<&str> = REASONS.iter().map(|r| reason_name(*r)).collect();
            ApiError::bad(
                "reason",
                format!("reason '{}' is not one of: {}", clip(r), names.join(", ")),
            )
        })?),
    };
    let (limit, offset) = p.page()?;
    let resolved_only = status == "resolved";
    let (items, total) = if reason.is_none() && !resolved_only {
        let page = on_store(&state, move |s| s.exceptions(open_only, limit, offset)).await?;
        (page.items, page.total)
    } else {
        // The store pages by open/all only: scan and filter here.
        let all = on_store(&state, move |s| {
            let mut out = Vec::new();
            let mut at = 0u32;
            loop {
                let page = s.exceptions(open_only, super::params::MAX_LIMIT, at)?;
                let n = u32::try_from(page.items.len()).unwrap_or(u32::MAX);
                out.extend(page.items);
                at = at.saturating_add(n);
                if n == 0 || u64::from(at) >= page.total || at >= MAX_SCAN {
                    break;
                }
            }
            Ok(out)
        })
        .await?;
        let matching: Vec<ExceptionRow> = all
            .into_iter()
            .filter(|e| !resolved_only || e.resolved_at.is_some())
            .filter(|e| reason.is_none_or(|r| e.entry.reason == r))
            .collect();
        let total = u64::try_from(matching.len()).unwrap_or(u64::MAX);
        let page = matching
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        (page, total)
    };
    let items: Vec<Value> = items.into_iter().map(exception_json).collect();
    Ok(json_ok(&json!({
        "items": items,
        "total": total,
        "status": status,
        "limit": limit,
        "offset": offset,
    })))
}

/// A JSON object body (empty allowed when `required` is false), with only `known` fields.
fn body_object(
    body: &[u8],
    known: &[&str],
    required: bool,
) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if required {
            return Err(ApiError::bad(
                "body",
                format!("the body must be a JSON object with: {}", known.join(", ")),
            ));
        }
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad("body", "the body must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad(
            k,
            format!(
                "unknown field '{}'; this route takes: {}",
                clip(k),
                known.join(", ")
            ),
        ));
    }
    Ok(map)
}

/// An optional string field of at most `max` characters.
fn text_field(
    map: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > max {
                Err(ApiError::bad(
                    name,
                    format!("{name} must be at most {max} characters"),
                ))
            } else if s.is_empty() {
                Ok(None)
            } else {
                Ok(Some(s.to_owned()))
            }
        }
        Some(_) => Err(ApiError::bad(name, format!("{name} must be a string"))),
    }
}

fn by_of(map: &Map<String, Value>) -> Result<String, ApiError> {
    Ok(text_field(map, "by", MAX_BY)?.unwrap_or_else(|| "api".to_owned()))
}

async fn retry(state: web::Data<ApiState>, id: web::Path<String>, body: web::Bytes) -> Answer {
    let id: u64 = path_id(&id, "exception")?;
    let map = body_object(&body, &["by"], false)?;
    let by = by_of(&map)?;
    ask_runner(&state, OperatorAction::RetryException { id, by }).await
}

async fn resolve(state: web::Data<ApiState>, id: web::Path<String>, body: web::Bytes) -> Answer {
    let id: u64 = path_id(&id, "exception")?;
    let map = body_object(&body, &["note", "by"], false)?;
    let Some(note) = text_field(&map, "note", MAX_NOTE)? else {
        return Err(ApiError::bad(
            "note",
            "note is required: say what was done to resolve the exception (it is kept with it)",
        )
        .hint("POST {\"note\": \"counted the shelf, corrected the till\"}"));
    };
    let by = by_of(&map)?;
    ask_runner(&state, OperatorAction::ResolveException { id, note, by }).await
}

async fn poll(state: web::Data<ApiState>, body: web::Bytes) -> Answer {
    let map = body_object(&body, &["connector", "feeds", "by"], false)?;
    let connector = text_field(&map, "connector", 64)?;
    let feeds = match map.get("feeds") {
        None | Some(Value::Null) => Default::default(),
        Some(v) => serde_json::from_value::<Vec<Feed>>(v.clone())
            .map_err(|_| {
                let names: Vec<&str> = Feed::ALL.iter().map(|f| f.as_str()).collect();
                ApiError::bad(
                    "feeds",
                    format!("feeds must be a list of: {}", names.join(", ")),
                )
            })?
            .into_iter()
            .collect(),
    };
    let by = by_of(&map)?;
    let action = OperatorAction::PollNow {
        connector,
        feeds,
        orders: Default::default(),
        catalog: false,
        locations: false,
        reason: format!("operator {by}"),
    };
    send(&state, action.clone(), None)?;
    Ok(HttpResponse::Accepted().json(json!({
        "status": "queued",
        "action": action,
        "message": "the runner polls at its next turn",
    })))
}

/// Hands an action to the runner without waiting.
pub(super) fn send(
    state: &ApiState,
    action: OperatorAction,
    reply: Option<oneshot::Sender<super::OperatorReply>>,
) -> Result<(), ApiError> {
    match state.operator.try_send(OperatorRequest { action, reply }) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            let mut e = ApiError::unavailable(
                "runner",
                "the runner's queue of operator actions is full; try again in a moment",
            );
            e.retry_after = Some(1);
            Err(e)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(ApiError::unavailable(
            "runner",
            "the sync runner is not running, so it cannot take the action",
        )
        .hint("check GET /ready and the service log")),
    }
}

/// Sends an action and waits (up to the reply timeout) for the runner's answer.
async fn ask_runner(state: &ApiState, action: OperatorAction) -> Answer {
    let (tx, rx) = oneshot::channel();
    send(state, action.clone(), Some(tx))?;
    let id = match &action {
        OperatorAction::RetryException { id, .. } | OperatorAction::ResolveException { id, .. } => {
            *id
        }
        OperatorAction::PollNow { .. } => 0,
    };
    match tokio::time::timeout(state.reply_timeout, rx).await {
        Ok(Ok(Ok(ack))) => Ok(HttpResponse::Ok().json(json!({
            "status": "done",
            "action": action,
            "record": ack.record,
            "message": ack.message,
        }))),
        Ok(Ok(Err(refusal))) => Err(match refusal {
            OperatorRefusal::UnknownException { .. } => {
                ApiError::not_found("id", refusal.to_string())
            }
            OperatorRefusal::AlreadyResolved { .. } => {
                ApiError::new(StatusCode::CONFLICT, refusal.to_string()).field("id")
            }
            OperatorRefusal::Unavailable { message } => ApiError::unavailable("runner", message),
        }),
        Ok(Err(_)) | Err(_) => Ok(HttpResponse::Accepted().json(json!({
            "status": "queued",
            "action": action,
            "message": format!(
                "the runner has the request but has not answered yet; watch exception {id}"
            ),
        }))),
    }
}

// ---------------------------------------------------------------------------------------------
// configuration and mapping

async fn config(state: web::Data<ApiState>) -> HttpResponse {
    json_ok(&state.config)
}

async fn mapping(state: web::Data<ApiState>) -> HttpResponse {
    let view = state.runner.mapping();
    let errors = view
        .problems
        .iter()
        .filter(|p| p.severity == tillbridge_core::mapping::Severity::Error)
        .count();
    json_ok(&json!({
        "table": view.table,
        "problems": view.problems,
        "errors": errors,
        "warnings": view.problems.len() - errors,
        "checked_at": view.checked_at,
        "counts": {
            "locations": view.table.locations.len(),
            "items": view.table.items.len(),
            "taxes": view.table.taxes.len(),
        },
    }))
}
