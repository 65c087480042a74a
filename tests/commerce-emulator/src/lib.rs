//! # tillbridge-commerce-emulator
//!
//! An emulator of Adobe Commerce (Magento 2.4 with MSI) over real HTTP, on Magento's routes and
//! with Magento's shapes: `/rest[/<store>]/V1/...` and `/rest[/<store>]/async[/bulk]/V1/...`
//! for sources, stocks, links, source items, salability, source selection, orders, shipments,
//! invoices, credit memos, comments, bulk status and tokens, plus Tillbridge's own reservation
//! routes (`/V1/tillbridge/...`, as the Magento module implements them).
//!
//! The store itself is `tillbridge_core::inventory` (a pure model of MSI); this crate moves
//! bytes, checks tokens, keeps the REST-only order data (prices, addresses, comments), queues
//! asynchronous operations, and injects faults and throttles. A control API under
//! `/__emulator/` resets and seeds the world, places storefront orders, runs consumers and
//! cron, moves the clock and reads the call log (README.md).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tillbridge_commerce_emulator::{EmulatorConfig, start};
//! let (handle, base_url) = start(EmulatorConfig::default()).await?;
//! // GET {base_url}/rest/V1/inventory/sources with `Authorization: Bearer <token>`
//! handle.stop().await;
//! # Ok(())
//! # }
//! ```

#![recursion_limit = "512"]

pub mod auth;
pub mod bulk;
pub mod clock;
pub mod contract;
pub mod control;
pub mod faults;
pub mod http_client;
pub mod msi;
pub mod rest;
pub mod sales;
pub mod sandbox;
pub mod state;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::faults::FaultKind;
use crate::state::{CallRecord, Settings, State};

/// The integration access token accepted when none is configured.
pub const DEFAULT_TOKEN: &str = "tillbridge-emulator-integration-token";
/// The admin user for `POST /V1/integration/admin/token`.
pub const DEFAULT_ADMIN_USERNAME: &str = "admin";
/// Its password.
pub const DEFAULT_ADMIN_PASSWORD: &str = "tillbridge-admin-1";
/// Where the manual clock starts.
pub const DEFAULT_START: &str = "2026-01-05 09:00:00";

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The integration access token accepted as a bearer token.
    pub token: String,
    /// Seed of the id and fault generators.
    pub seed: u64,
    /// Where the manual clock starts (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub start_time: String,
    /// Wall-clock time instead of the manual clock (the sandbox).
    pub real_time: bool,
    /// Input limits, throttle, admin credentials (all can change through the control API).
    pub settings: Settings,
}

impl Default for EmulatorConfig {
    /// For tests: manual clock, no input limits, no throttle.
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_owned(),
            seed: 42,
            start_time: DEFAULT_START.to_owned(),
            real_time: false,
            settings: Settings::default(),
        }
    }
}

impl EmulatorConfig {
    /// For the sandbox: real time, Magento's input limits on (20 items per synchronous list,
    /// 5 000 asynchronous), and a throttle like a small real store (about 8 requests and 100
    /// source items per second).
    pub fn sandbox(token: &str) -> Self {
        let mut settings = Settings::default();
        settings.input_limits.enabled = true;
        settings.throttle.enabled = true;
        Self {
            token: token.to_owned(),
            real_time: true,
            settings,
            ..Self::default()
        }
    }
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
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Direct access to the emulated store (tests may also use the control API over HTTP).
    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    /// Calls the control API in-process (same as an HTTP call to `/__emulator/<path>`).
    pub fn control(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, control::ControlError> {
        let path = format!("/__emulator/{}", path.trim_start_matches('/'));
        let (p, q) = path.split_once('?').unwrap_or((&path, ""));
        control::handle(&mut lock(&self.state), method, p, q, body)
    }

    /// Stops the server (in-flight requests get a second to finish).
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

/// Starts the emulator on 127.0.0.1 with a free port; returns its handle and base URL.
pub async fn start(config: EmulatorConfig) -> std::io::Result<(Handle, String)> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts the emulator on `addr` (port 0 picks a free port).
pub async fn start_on(
    config: EmulatorConfig,
    addr: SocketAddr,
) -> std::io::Result<(Handle, String)> {
    let clock = if config.real_time {
        Clock::real()
    } else {
        Clock::manual(&config.start_time).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "start_time `{}` is not YYYY-MM-DD HH:MM:SS",
                    config.start_time
                ),
            )
        })?
    };
    let tokens = auth::Tokens::with_integration(&config.token);
    let st = State::new(config.seed, tokens, clock, config.settings.clone());
    let shared: Shared = Arc::new(Mutex::new(st));
    let data = web::Data::new(shared.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
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

fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = HttpResponse::build(code);
    r.insert_header(("content-type", "application/json; charset=utf-8"));
    if let Some(s) = retry_after {
        r.insert_header(("retry-after", s.to_string()));
    }
    r.body(body.to_string())
}

/// A body that announces a length and then fails: the server aborts the connection, so the
/// client sees the response lost after the request was applied.
struct BrokenBody;

impl MessageBody for BrokenBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other(
            "response lost (injected fault)",
        ))))
    }
}

/// The default body of an injected error status, shaped like Magento's.
fn fault_body(status: u16, seq: u64) -> Value {
    match status {
        401 => auth::unauthorized_body(&[]),
        404 => json!({"message": "Request does not match any route."}),
        429 => json!({"message": "Too many requests"}),
        500 => json!({"message": format!(
            "Internal Error. Details are available in Magento log file. Report ID: webapi-{seq:013x}"
        )}),
        502 => json!({"message": "Bad Gateway"}),
        503 => json!({"message": "Service Unavailable"}),
        504 => json!({"message": "Gateway Time-out"}),
        _ => json!({"message": format!("Injected error {status}")}),
    }
}

/// Source items a request writes (for the throttle).
fn source_item_count(body: Option<&Value>) -> usize {
    match body {
        Some(Value::Array(list)) => list.iter().map(|v| source_item_count(Some(v))).sum(),
        Some(Value::Object(m)) => m
            .get("sourceItems")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        _ => 0,
    }
}

#[allow(clippy::too_many_lines)]
async fn dispatch(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let query = req.query_string().to_owned();
    let parsed: Result<Option<Value>, String> = if body.iter().all(u8::is_ascii_whitespace) {
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
                return json_response(400, &json!({"error": format!("invalid JSON: {e}")}), None);
            }
        };
        return match control::handle(&mut lock(&shared), &method, &path, &query, &b) {
            Ok(v) => json_response(200, &v, None),
            Err(e) => json_response(e.status, &e.body(), None),
        };
    }

    let route = rest::parse_path(&path).map_or_else(String::new, |p| {
        let prefix = match p.mode {
            rest::Mode::Sync => "",
            rest::Mode::Async => "/async",
            rest::Mode::Bulk => "/async/bulk",
        };
        format!("{prefix}{}", p.route)
    });
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());

    // Faults and throttle are decided under the lock, waited for outside it.
    let (fired, wait, throttled) = {
        let mut st = lock(&shared);
        let st = &mut *st;
        let fired = faults::pick(&mut st.faults, &mut st.rng, &method, &route, &path);
        let t = st.settings.throttle.clone();
        let mut wait = Duration::ZERO;
        let mut throttled = false;
        if t.enabled && t.requests_per_second > 0.0 {
            let items = source_item_count(parsed.as_ref().ok().and_then(Option::as_ref));
            #[allow(clippy::cast_precision_loss)]
            let mut cost = 1.0 / t.requests_per_second;
            if t.source_items_per_second > 0.0 {
                #[allow(clippy::cast_precision_loss)]
                let extra = items as f64 / t.source_items_per_second;
                cost += extra;
            }
            let now = Instant::now();
            let start = st.busy_until.filter(|b| *b > now).unwrap_or(now);
            let queued = start.duration_since(now);
            if t.max_wait_ms
                .is_some_and(|m| queued > Duration::from_millis(m))
            {
                throttled = true;
            } else {
                let done = start + Duration::from_secs_f64(cost);
                st.busy_until = Some(done);
                wait = done.duration_since(now);
            }
        }
        (fired, wait, throttled)
    };
    let mut fault_names = Vec::new();
    let mut latency = 0u64;
    let mut status_fault: Option<(u16, Value, Option<u64>)> = None;
    let mut timeout: Option<u64> = None;
    let mut lost: Option<(String, u16, u64)> = None;
    for (_, kind) in &fired {
        match kind {
            FaultKind::Latency { ms } => {
                latency += ms;
                fault_names.push(format!("latency {ms}ms"));
            }
            FaultKind::Status {
                status,
                body,
                retry_after,
            } => {
                if status_fault.is_none() {
                    status_fault =
                        Some((*status, body.clone().unwrap_or(Value::Null), *retry_after));
                    fault_names.push(format!("status {status}"));
                }
            }
            FaultKind::Timeout { ms } => {
                if timeout.is_none() {
                    timeout = Some(ms.unwrap_or(30_000));
                    fault_names.push("timeout".to_owned());
                }
            }
            FaultKind::LostResponse { mode, status, ms } => {
                if lost.is_none() {
                    let m = mode.clone().unwrap_or_else(|| "reset".to_owned());
                    fault_names.push(format!("lost_response {m}"));
                    lost = Some((m, status.unwrap_or(502), ms.unwrap_or(30_000)));
                }
            }
        }
    }
    let pause = wait + Duration::from_millis(latency);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }

    let incoming = rest::Incoming {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: parsed.clone(),
        bearer,
    };
    let seq_hint = lock(&shared).next_call_seq;
    let (status, response_body, applied, route_info, retry_after) = if throttled {
        fault_names.push("throttled".to_owned());
        (
            429,
            fault_body(429, seq_hint),
            false,
            rest::parse_path(&path),
            Some(1),
        )
    } else if let Some(ms) = timeout {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        (
            504,
            fault_body(504, seq_hint),
            false,
            rest::parse_path(&path),
            None,
        )
    } else if let Some((s, b, ra)) = status_fault {
        let b = if b.is_null() {
            fault_body(s, seq_hint)
        } else {
            b
        };
        (s, b, false, rest::parse_path(&path), ra)
    } else {
        let out = rest::handle(&mut lock(&shared), &incoming);
        (out.status, out.body, out.applied, out.route, None)
    };

    {
        let mut st = lock(&shared);
        let seq = st.next_call_seq;
        st.next_call_seq += 1;
        let at = st.clock.now_text();
        st.calls.push(CallRecord {
            seq,
            at,
            method,
            path,
            query,
            route: route_info
                .as_ref()
                .map(|r| r.route.clone())
                .unwrap_or_default(),
            store: route_info.as_ref().and_then(|r| r.store.clone()),
            mode: route_info
                .as_ref()
                .map_or("sync", |r| r.mode.as_str())
                .to_owned(),
            request_body: parsed.ok().flatten(),
            status,
            response_body: response_body.clone(),
            applied,
            faults: fault_names,
        });
    }

    if let Some((mode, s, ms)) = lost {
        return match mode.as_str() {
            "status" => json_response(s, &fault_body(s, seq_hint), None),
            "timeout" => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json_response(504, &fault_body(504, seq_hint), None)
            }
            _ => HttpResponse::Ok()
                .insert_header(("content-type", "application/json; charset=utf-8"))
                .body(BrokenBody),
        };
    }
    json_response(status, &response_body, retry_after)
}
