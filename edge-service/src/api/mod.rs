//! The edge service's HTTP API (actix-web): what operations and finance see of every record.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /health` | none | liveness: the process answers |
//! | `GET /ready` | none | readiness: the store answers, the runner is alive and ready |
//! | `GET /` (+ `/dashboard.js`, `/dashboard.css`) | none (static; the page asks for the token) | the dashboard |
//! | `GET /metrics` | bearer | Prometheus text format 0.0.4, `tillbridge_` prefix |
//! | `GET /api/summary` | bearer | the dashboard's first numbers |
//! | `GET /api/records?kind=&state=&contains=&limit=&offset=` | bearer | inbound records, newest first, with `total` |
//! | `GET /api/records/{id}` | bearer | one record with its life history and the open exceptions naming it |
//! | `GET /api/commands?state=&limit=&offset=`, `GET /api/commands/{id}` | bearer | the outbox, with attempt history |
//! | `GET /api/exceptions?status=open\|resolved\|all&reason=&limit=&offset=` | bearer | exceptions with their reason, sentence and what to do |
//! | `POST /api/exceptions/{id}/retry` | bearer | ask the runner to retry (body optional: `{"by": "..."}`) |
//! | `POST /api/exceptions/{id}/resolve` | bearer | resolve by hand (body `{"note": "...", "by": "..."}`, note required) |
//! | `POST /api/poll` | bearer | ask the runner to poll early (body optional: `{"connector", "feeds", "by"}`) |
//! | `GET /api/config` | bearer | the running configuration, every secret as `"***"` |
//! | `GET /api/mapping` | bearer | the POS ↔ Commerce mapping and its validation problems |
//! | `POST /webhooks/{name}` | the POS's signature | a webhook: verified, stored, answered, then an early poll |
//!
//! The API never touches the engine. Operator actions go to the runner as [`OperatorRequest`]s
//! on a channel; the runner stores them as `operator` records, hands them to the engine and
//! answers on the request's oneshot. Live numbers (engine stats, queue depths, budget, push
//! latency), the mapping view and the runner's readiness come from a [`MetricsSource`] the
//! runner implements. Records, commands and exceptions are read from the [`Store`].
//!
//! Every error body is `{"error": "...", "field": "...", "hint": "..."}`: `field` names the
//! parameter, path segment, body field or header at fault (absent when nothing in the request
//! is, e.g. a store failure, which names the failing `component` instead).

mod auth;
mod dashboard;
mod error;
mod metrics;
mod params;
mod redact;
mod routes;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tillbridge_core::mapping::{MappingProblem, MappingTable};
use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{Reason, Stats};
use tokio::sync::{mpsc, oneshot};

use crate::commerce::auth::Secret;
use crate::pos::square::{SIGNATURE_HEADER, SquareConnector};
use crate::pos::{Feed, PosConnector};
use crate::store::{RecordId, Store};

pub use error::ApiError;
pub use redact::redact_config;

// ---------------------------------------------------------------------------------------------
// operator actions: API -> runner

/// What a person (or a webhook) asks the runner to do. Plain data: the runner stores it as an
/// `operator` record before acting, so a replay sees exactly what the engine saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OperatorAction {
    /// Retry what exception `id` is about (`core::sync::Input::RetryException`).
    RetryException { id: u64, by: String },
    /// Close exception `id` by hand (`core::sync::Input::ResolveException`).
    ResolveException { id: u64, note: String, by: String },
    /// Read POS feeds early (a webhook arrived, or a person asked).
    PollNow {
        /// The connector to poll (its configured id); `None`: every connector.
        connector: Option<String>,
        /// The feeds to read early; empty: every feed.
        feeds: BTreeSet<Feed>,
        /// POS orders whose fulfilment status to re-read.
        orders: BTreeSet<String>,
        /// The catalogue (variations, SKUs) changed.
        catalog: bool,
        /// The locations changed.
        locations: bool,
        /// Why: `webhook square:main evt-1 (record 42)`, `operator alice`.
        reason: String,
    },
}

/// An action with the channel the runner answers on. `reply` is absent for actions nobody
/// waits for (`PollNow`).
#[derive(Debug)]
pub struct OperatorRequest {
    pub action: OperatorAction,
    pub reply: Option<oneshot::Sender<OperatorReply>>,
}

/// The runner's answer to an operator action.
pub type OperatorReply = Result<OperatorAck, OperatorRefusal>;

/// The runner took the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAck {
    /// The `operator` record the runner stored for it.
    pub record: Option<RecordId>,
    /// What happened, for the person who asked.
    pub message: String,
}

/// Why the runner did not take an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum OperatorRefusal {
    /// Answered as 404, naming the id.
    #[error("there is no exception with id {id}")]
    UnknownException { id: u64 },
    /// Answered as 409.
    #[error("exception {id} is already resolved")]
    AlreadyResolved { id: u64 },
    /// Answered as 503 (e.g. the store cannot write).
    #[error("{message}")]
    Unavailable { message: String },
}

// ---------------------------------------------------------------------------------------------
// what the runner shows: metrics, mapping, readiness

/// Push latency (a change's arrival to Commerce's confirmation), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub sum_ms: i64,
    /// Median; `None` without samples.
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

impl LatencySummary {
    /// Count, sum and nearest-rank quantiles of `samples` (any order), e.g. the store's
    /// `latencies(since)` over the last hour.
    pub fn from_samples(samples: &[i64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |per_mille: usize| -> Option<i64> {
            let n = sorted.len();
            if n == 0 {
                return None;
            }
            let rank = (n * per_mille).div_ceil(1000).max(1);
            sorted.get(rank - 1).copied()
        };
        Self {
            count: u64::try_from(sorted.len()).unwrap_or(u64::MAX),
            sum_ms: sorted.iter().fold(0i64, |a, b| a.saturating_add(*b)),
            p50_ms: rank(500),
            p99_ms: rank(990),
        }
    }
}

/// The live numbers of the runner and its engine, taken at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// The engine's counters (`Engine::stats`).
    pub stats: Stats,
    /// Stock keys waiting for a push (`Engine::pending_pushes`).
    pub pending_pushes: u64,
    /// Commands sent and not answered (`Engine::commands_in_flight`).
    pub commands_in_flight: u64,
    /// The Commerce budget's current rates (`budget().requests / .items`, `rate_per_second`).
    pub budget_requests_per_second: u32,
    pub budget_items_per_second: u32,
    /// Push latency over the runner's window.
    pub push_latency: LatencySummary,
    /// `active` (this replica runs the engine), `standby` (another one does), or empty
    /// before the runner's first round.
    #[serde(default)]
    pub role: String,
}

/// The POS ↔ Commerce mapping as the runner holds it, with the problems its last check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingView {
    pub table: MappingTable,
    /// `core::mapping::validate` against what the POS and Commerce listed.
    pub problems: Vec<MappingProblem>,
    /// When that check ran (`None`: not yet).
    pub checked_at: Option<Timestamp>,
}

/// What the API reads from the runner: live numbers, the mapping, readiness. Implementations
/// answer from memory (e.g. the copy the runner refreshes every tick, plus the store's latency
/// samples through [`LatencySummary::from_samples`]): the API calls these on its request
/// threads, for every `/metrics`, `/ready` and `/api/summary`.
pub trait MetricsSource: Send + Sync {
    /// Engine stats, queue depths, budget and latency, now.
    fn snapshot(&self) -> MetricsSnapshot;

    /// The mapping and its validation problems.
    fn mapping(&self) -> MappingView;

    /// `Ok` once the runner has replayed the store and its loop is turning; otherwise a
    /// sentence saying what it is waiting for (shown by `/ready` and the dashboard).
    fn readiness(&self) -> Result<(), String>;
}

// ---------------------------------------------------------------------------------------------
// webhooks

/// A POS webhook endpoint, served at `POST /webhooks/{name}`.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// Verifies deliveries (`PosConnector::verify_webhook`).
    pub connector: Arc<dyn PosConnector>,
    /// The notification URL exactly as registered with the POS: what the signature covers.
    pub notification_url: String,
    /// The `origin` of the stored records, e.g. `square:main`.
    pub origin: String,
    /// The signature header, named in error bodies.
    pub signature_header: String,
}

impl WebhookEndpoint {
    /// Square: the notification URL from the connector's webhook configuration, origin
    /// `square:<id>`, header `x-square-hmacsha256-signature`.
    pub fn square(connector: Arc<SquareConnector>) -> Self {
        let notification_url = connector
            .config()
            .webhook
            .as_ref()
            .map(|w| w.notification_url.clone())
            .unwrap_or_default();
        let origin = format!("square:{}", connector.id().as_str());
        Self {
            connector,
            notification_url,
            origin,
            signature_header: SIGNATURE_HEADER.to_owned(),
        }
    }
}

/// Webhook deliveries by endpoint and outcome, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct WebhookCounters {
    pub stored: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// the state

/// Why an [`ApiState`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiSetupError {
    #[error(
        "service.api_token is empty: set a long random token (every API route but health needs it)"
    )]
    EmptyToken,
    #[error("webhook endpoint name {0:?} must be 1-64 ASCII letters, digits, '-' or '_'")]
    BadWebhookName(String),
}

/// A clock for the times the API itself stamps (webhook arrival).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock as a [`Timestamp`].
pub fn system_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// Everything the API's handlers use. Cheap to clone (all shared).
#[derive(Clone)]
pub struct ApiState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) token: Secret,
    pub(crate) operator: mpsc::Sender<OperatorRequest>,
    pub(crate) runner: Arc<dyn MetricsSource>,
    /// Redacted once, at construction.
    pub(crate) config: Arc<Value>,
    pub(crate) webhooks: Arc<BTreeMap<String, (WebhookEndpoint, Arc<WebhookCounters>)>>,
    pub(crate) clock: Clock,
    pub(crate) reply_timeout: Duration,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .field("token", &self.token)
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("reply_timeout", &self.reply_timeout)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API over `store`, guarded by `token`, sending operator actions on `operator` and
    /// reading live numbers from `runner`. No configuration view and no webhooks until
    /// [`ApiState::with_config`] and [`ApiState::with_webhook`].
    pub fn new(
        store: Arc<dyn Store>,
        token: Secret,
        operator: mpsc::Sender<OperatorRequest>,
        runner: Arc<dyn MetricsSource>,
    ) -> Result<Self, ApiSetupError> {
        if token.expose().trim().is_empty() {
            return Err(ApiSetupError::EmptyToken);
        }
        Ok(Self {
            store,
            token,
            operator,
            runner,
            config: Arc::new(Value::Object(serde_json::Map::new())),
            webhooks: Arc::new(BTreeMap::new()),
            clock: Arc::new(system_clock),
            reply_timeout: Duration::from_secs(10),
        })
    }

    /// The configuration `GET /api/config` shows (e.g. `serde_json::to_value(&settings)`).
    /// It is redacted here, once: every value under a secret-looking key (`token`, `secret`,
    /// `password`, `key`, ...) and every string that contains one of `secrets` (and the API
    /// token) becomes `"***"`.
    pub fn with_config(mut self, config: Value, secrets: &[Secret]) -> Self {
        let mut all: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        all.push(self.token.expose());
        self.config = Arc::new(redact_config(config, &all));
        self
    }

    /// Serve `endpoint` at `POST /webhooks/{name}` (`name`: 1-64 letters, digits, `-`, `_`;
    /// e.g. `square`).
    pub fn with_webhook(
        mut self,
        name: impl Into<String>,
        endpoint: WebhookEndpoint,
    ) -> Result<Self, ApiSetupError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ApiSetupError::BadWebhookName(name));
        }
        let mut map = (*self.webhooks).clone();
        map.insert(name, (endpoint, Arc::new(WebhookCounters::default())));
        self.webhooks = Arc::new(map);
        Ok(self)
    }

    /// The clock webhook arrivals are stamped with (default: the system clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a retry/resolve waits for the runner's answer before answering `202 queued`
    /// (default 10 s).
    pub fn with_reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// mounting

/// Mounts every route on an actix `App` (or a scope): `App::new().configure(|c|
/// api::configure(c, state))`. Also sets a JSON 404 as the default service.
pub fn configure(cfg: &mut web::ServiceConfig, state: ApiState) {
    routes::configure(cfg, state);
}

/// Runs the API on `listener` (bind it first; port 0 is fine) on the current tokio runtime.
/// Returns the server's handle (stop it with `handle.stop(true)`) and the bound address.
pub fn serve(
    state: ApiState,
    listener: std::net::TcpListener,
) -> std::io::Result<(actix_web::dev::ServerHandle, std::net::SocketAddr)> {
    use actix_web::{App, HttpServer};
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |c| configure(c, state))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the API server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((handle, bound))
}

// ---------------------------------------------------------------------------------------------
// exception reasons: names and what to do (the runbook's table, in the API)

/// Every exception reason, in the order the dashboard lists them.
pub const REASONS: [Reason; 9] = [
    Reason::SalableDidNotMove,
    Reason::CommerceRefused,
    Reason::Timeout,
    Reason::NegativeOnHand,
    Reason::Unroutable,
    Reason::PosRefused,
    Reason::ShipmentFailed,
    Reason::CancelAfterHandover,
    Reason::UnknownOrder,
];

/// The machine name of a reason (`salable_did_not_move`), as the core serialises it.
pub fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::NegativeOnHand => "negative_on_hand",
        Reason::CommerceRefused => "commerce_refused",
        Reason::Timeout => "timeout",
        Reason::SalableDidNotMove => "salable_did_not_move",
        Reason::Unroutable => "unroutable",
        Reason::PosRefused => "pos_refused",
        Reason::ShipmentFailed => "shipment_failed",
        Reason::CancelAfterHandover => "cancel_after_handover",
        Reason::UnknownOrder => "unknown_order",
    }
}

/// What to do about an exception of this reason (the runbook's sentence; the exception's own
/// message says what happened).
pub fn reason_guide(reason: Reason) -> &'static str {
    match reason {
        Reason::NegativeOnHand => {
            "The till sold stock it did not have; Commerce was sent 0. Count the shelf and correct the figure on the till; the exception closes when the till reports a non-negative figure."
        }
        Reason::CommerceRefused => {
            "Commerce refused the write (4xx). Check the SKU exists in Commerce and is assigned to the source, fix it there, then Retry."
        }
        Reason::Timeout => {
            "Retries did not get through (5xx, 429, timeouts). Check Commerce is up and not throttling; Tillbridge keeps retrying. Retry once it answers."
        }
        Reason::SalableDidNotMove => {
            "Commerce's salable quantity does not show what was sent. Check Magento's indexers (bin/magento indexer:status) and the inventory.reservations consumers; Retry to re-read."
        }
        Reason::Unroutable => {
            "No source can fulfil the web order. Move stock, send it from a warehouse, or cancel it in Commerce; Retry routes it again."
        }
        Reason::PosRefused => {
            "The store's POS refused the fulfilment request. Check the store and location are active on the POS; Retry routes the order again."
        }
        Reason::ShipmentFailed => {
            "The Commerce shipment could not be created. Fix the cause named in the message (source quantity, order state), then Retry."
        }
        Reason::CancelAfterHandover => {
            "Commerce cancelled an order the store had already handed over. Recover the goods or refund through a return, then Resolve with a note."
        }
        Reason::UnknownOrder => {
            "The POS names an order Tillbridge has not seen in Commerce. Check the order number on the till; Resolve with a note once handled."
        }
    }
}

/// The snake_case name a unit enum value serialises to (`RecordState::Stalled` → `stalled`).
pub(crate) fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Parses a reason's machine name.
pub fn parse_reason(text: &str) -> Option<Reason> {
    REASONS.into_iter().find(|r| reason_name(*r) == text)
}
