//! # tillbridge-square-emulator
//!
//! An emulator of the Square APIs Tillbridge's POS connector uses, over real HTTP, with the
//! response shapes of Square's OpenAPI document (`shared/specs/openapi/square-api.json`):
//! locations, catalog (items, variations, SKUs), inventory counts and changes, orders (search,
//! create with PICKUP/SHIPMENT fulfilments, update, pay), external payments, signed webhooks,
//! Square's error envelope, `Square-Version`, and injectable faults.
//!
//! A control API under `/__emulator/` seeds data, rings up in-store sales and returns, moves
//! fulfilments, takes tills offline and replays their sales late, injects faults and malformed
//! records, and exposes the call log and the webhook log (see `README.md`).
//!
//! Deterministic by default: ids come from a seeded generator and time from an emulator clock
//! that only moves when told to ([`Config::real_time`] switches to wall-clock time for the
//! sandbox).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let (handle, base_url) = tillbridge_square_emulator::start(Default::default()).await?;
//! println!("Square emulator at {base_url}");
//! handle.stop().await;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod contract;
pub mod control;
pub mod error;
pub mod ids;
pub mod state;
pub mod time;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::{CallRecord, Clock, DEFAULT_SQUARE_VERSION, FaultKind, State};
use crate::webhooks::{Delivery, Subscription};

/// The access token the emulator accepts when none is configured.
pub const DEFAULT_TOKEN: &str = "EAAAl-tillbridge-emulator-token";

/// The emulator clock's default start: a Monday morning in January 2026.
pub const DEFAULT_START: &str = "2026-01-05T09:00:00.000Z";

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Bearer token requests must carry.
    pub token: String,
    /// Seed of the id generator.
    pub seed: u64,
    /// Where the emulator clock starts (RFC 3339; manual mode).
    pub start_time: String,
    /// Wall-clock time instead of the manual clock (the sandbox uses this).
    pub real_time: bool,
    /// Where to send webhooks (can also be set through the control API).
    pub webhook: Option<Subscription>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_owned(),
            seed: 42,
            start_time: DEFAULT_START.to_owned(),
            real_time: false,
            webhook: None,
        }
    }
}

/// A small shop for the sandbox and demos: two active locations and a closed one, a tee in two
/// sizes and a mug (two variations sharing the SKU `MUG`, as Square allows), some stock.
pub fn demo_seed() -> Value {
    serde_json::json!({
        "locations": [
            {"id": "LEEDS0000001", "name": "Leeds Briggate"},
            {"id": "YORK00000001", "name": "York Stonegate"},
            {"id": "HULL00000001", "name": "Hull (closed)", "status": "INACTIVE"}
        ],
        "items": [
            {"id": "ITEMTEE", "name": "Organic Tee", "variations": [
                {"id": "VARTEES", "name": "Small", "sku": "TEE-S", "price": 1800},
                {"id": "VARTEEM", "name": "Medium", "sku": "TEE-M", "price": 1800}]},
            {"id": "ITEMMUG", "name": "Stoneware Mug", "variations": [
                {"id": "VARMUG", "name": "Regular", "sku": "MUG", "price": 1250},
                {"id": "VARMUG2", "name": "Seconds", "sku": "MUG", "price": 800}]}
        ],
        "stock": [
            {"variation_id": "VARTEES", "location_id": "LEEDS0000001", "quantity": "12"},
            {"variation_id": "VARTEEM", "location_id": "LEEDS0000001", "quantity": "7"},
            {"variation_id": "VARTEES", "location_id": "YORK00000001", "quantity": "3"},
            {"variation_id": "VARMUG", "location_id": "YORK00000001", "quantity": "24"},
            {"variation_id": "VARMUG2", "location_id": "YORK00000001", "quantity": "5"}
        ]
    })
}

/// Seeds the emulated seller through the control API's logic (same as `POST /__emulator/seed`).
pub fn seed(handle: &Handle, data: &Value) -> Result<Value, ApiError> {
    control::handle(&mut lock(&handle.state), "POST", "/__emulator/seed", data)
}

/// Shared emulator state.
pub type Shared = Arc<Mutex<State>>;

/// Locks the state, recovering it if a handler panicked while holding the lock.
pub fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running emulator.
#[derive(Debug, Clone)]
pub struct Handle {
    server: actix_web::dev::ServerHandle,
    state: Shared,
    base_url: String,
}

impl Handle {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Direct access to the emulated world (tests may also use the control API over HTTP).
    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    /// Stops the server (in-flight requests get a second to finish).
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

/// Starts the emulator on 127.0.0.1 with a free port; returns its handle and base URL.
pub async fn start(config: Config) -> std::io::Result<(Handle, String)> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts the emulator on `addr` (port 0 picks a free port).
pub async fn start_on(config: Config, addr: SocketAddr) -> std::io::Result<(Handle, String)> {
    let start_ms = time::parse_ms(&config.start_time).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("start_time `{}` is not RFC 3339", config.start_time),
        )
    })?;
    let clock = Clock {
        real_time: config.real_time,
        manual_ms: start_ms,
        offset_ms: 0,
    };
    let mut st = State::new(config.seed, config.token.clone(), clock);
    st.webhooks.subscription = config.webhook.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
    st.webhooks.sender = Some(tx);
    let shared: Shared = Arc::new(Mutex::new(st));

    let for_task = shared.clone();
    let retry_tx = lock(&shared).webhooks.sender.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Some(d) = rx.recv().await {
            let rec = webhooks::deliver(&client, &d).await;
            let failed = !rec.status.is_some_and(|s| (200..300).contains(&s));
            lock(&for_task).webhooks.deliveries.push(rec);
            if failed
                && d.retries_left > 0
                && let Some(tx) = retry_tx.clone()
            {
                // Retry later with an increasing delay, as Square does.
                let mut next = d.clone();
                next.retries_left -= 1;
                next.retry_number += 1;
                next.retry_delay_ms = d.retry_delay_ms.saturating_mul(2);
                let wait = Duration::from_millis(d.retry_delay_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(next);
                });
            }
        }
    });

    let data = web::Data::new(shared.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
            .default_service(web::to(dispatch))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let base_url = format!("http://{bound}");
    Ok((
        Handle {
            server: handle,
            state: shared,
            base_url: base_url.clone(),
        },
        base_url,
    ))
}

fn json_response(
    status: u16,
    body: &Value,
    version: &str,
    retry_after: Option<u64>,
) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = HttpResponse::build(code);
    r.insert_header(("content-type", "application/json"));
    r.insert_header(("square-version", version.to_owned()));
    if let Some(s) = retry_after {
        r.insert_header(("retry-after", s.to_string()));
    }
    r.body(body.to_string())
}

fn is_square_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

async fn dispatch(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let query = req.query_string().to_owned();
    let parsed: Result<Option<Value>, String> = if body.is_empty() {
        Ok(None)
    } else {
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| e.to_string())
    };

    if path == "/__emulator" || path.starts_with("/__emulator/") {
        let b = match parsed {
            Ok(b) => b.unwrap_or(Value::Null),
            Err(e) => {
                let err = ApiError::invalid("BAD_REQUEST", format!("Invalid JSON: {e}"), "body");
                return json_response(400, &err.body(), DEFAULT_SQUARE_VERSION, None);
            }
        };
        let res = control::handle(&mut lock(&shared), &method, &path, &b);
        return match res {
            Ok(v) => json_response(200, &v, DEFAULT_SQUARE_VERSION, None),
            Err(e) => json_response(e.status, &e.body(), DEFAULT_SQUARE_VERSION, None),
        };
    }

    let operation = api::operation_of(&method, &path);
    let requested_version = req
        .headers()
        .get("square-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let version = requested_version
        .clone()
        .filter(|v| is_square_version(v))
        .unwrap_or_else(|| DEFAULT_SQUARE_VERSION.to_owned());
    let auth_ok = {
        let token = lock(&shared).token.clone();
        req.headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}"))
    };

    // Faults: pick every rule that matches, consuming its skip/times budget.
    let mut status_fault: Option<ApiError> = None;
    let mut delay_ms: u64 = 0;
    let mut timeout_ms: Option<u64> = None;
    let mut out_of_order = false;
    if auth_ok {
        let mut st = lock(&shared);
        for rule in &mut st.faults {
            let m_ok = rule
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&method));
            let p_ok = rule.path.as_deref().is_none_or(|p| path.starts_with(p));
            if !(m_ok && p_ok) || rule.times == Some(0) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if let Some(t) = &mut rule.times {
                *t -= 1;
            }
            match &rule.kind {
                FaultKind::Status {
                    status,
                    code,
                    retry_after,
                } => {
                    if status_fault.is_none() {
                        status_fault =
                            Some(ApiError::for_status(*status, code.as_deref(), *retry_after));
                    }
                }
                FaultKind::Latency { ms } => delay_ms += ms,
                FaultKind::Timeout { ms } => timeout_ms = Some(ms.unwrap_or(30_000)),
                FaultKind::OutOfOrderPages => out_of_order = true,
            }
        }
        st.faults.retain(|r| r.times != Some(0));
    }
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }

    let result: Result<Value, ApiError> = if !auth_ok {
        Err(ApiError::unauthorized())
    } else if requested_version
        .as_deref()
        .is_some_and(|v| !is_square_version(v))
    {
        Err(ApiError::invalid(
            "INVALID_SQUARE_VERSION_FORMAT",
            "Square-Version must look like YYYY-MM-DD.",
            "Square-Version",
        ))
    } else if let Some(ms) = timeout_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Err(ApiError::for_status(504, None, None))
    } else if let Some(e) = status_fault {
        Err(e)
    } else {
        match &parsed {
            Err(e) => Err(ApiError::invalid(
                "BAD_REQUEST",
                format!("Invalid JSON: {e}"),
                "body",
            )),
            Ok(b) => api::route(
                &mut lock(&shared),
                &method,
                &path,
                &query,
                b.as_ref(),
                out_of_order,
            ),
        }
    };

    let (status, body, retry_after) = match result {
        Ok(v) => (200, v, None),
        Err(e) => (e.status, e.body(), e.retry_after),
    };
    {
        let mut st = lock(&shared);
        let seq = st.next_call_seq;
        st.next_call_seq += 1;
        st.calls.push(CallRecord {
            seq,
            method: method.clone(),
            path: path.clone(),
            query,
            operation: operation.map(str::to_owned),
            request_body: parsed.ok().flatten(),
            status,
            response_body: body.clone(),
        });
    }
    json_response(status, &body, &version, retry_after)
}
