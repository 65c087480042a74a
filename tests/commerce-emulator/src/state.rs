//! The emulated store: the Magento instance (the MSI model with its orders and documents), the
//! REST-only order data, queued bulk operations, tokens, settings, faults, the clock and the
//! call log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tillbridge_core::inventory::vectors::ModelExecutor;

use crate::auth::Tokens;
use crate::bulk::BulkStore;
use crate::clock::Clock;
use crate::faults::{FaultRule, Rng};
use crate::sales::SalesStore;

/// Magento's web-API input limits (spec §9.2; off unless enabled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputLimits {
    /// `webapi/validation/input_limit_enabled`.
    pub enabled: bool,
    /// Items per list parameter, synchronous requests (`webapi/sync/default_input_array_size_limit`).
    pub sync_array_max: usize,
    /// Items per list parameter, asynchronous requests.
    pub async_array_max: usize,
    /// `webapi/validation/maximum_page_size`.
    pub max_page_size: usize,
    /// `webapi/validation/default_page_size` (applied when a search sends no `pageSize`).
    pub default_page_size: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            enabled: false,
            sync_array_max: 20,
            async_array_max: 5000,
            max_page_size: 300,
            default_page_size: 20,
        }
    }
}

/// How fast the emulated store answers: every request costs `1 / requests_per_second`
/// seconds plus `1 / source_items_per_second` per source item it writes, and requests are
/// served one after another (a small store's PHP-FPM pool behind one database). Off unless
/// enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttle {
    pub enabled: bool,
    pub requests_per_second: f64,
    pub source_items_per_second: f64,
    /// When a request would wait longer than this, answer 429 instead of waiting (a CDN or
    /// rate limiter in front of the store); wait for ever when absent.
    pub max_wait_ms: Option<u64>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            enabled: false,
            requests_per_second: 8.0,
            source_items_per_second: 100.0,
            max_wait_ms: None,
        }
    }
}

/// Settings that the control API can change at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub input_limits: InputLimits,
    pub throttle: Throttle,
    /// Admin user for `POST /V1/integration/admin/token`.
    pub admin_username: String,
    pub admin_password: String,
    /// `Magento_TwoFactorAuth` on: the admin token endpoint refuses after checking the
    /// credentials (spec §7.3).
    pub admin_2fa: bool,
    /// `oauth/consumer/enable_integration_as_bearer`: integration tokens work as bearer tokens.
    pub integration_as_bearer: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            input_limits: InputLimits::default(),
            throttle: Throttle::default(),
            admin_username: crate::DEFAULT_ADMIN_USERNAME.to_owned(),
            admin_password: crate::DEFAULT_ADMIN_PASSWORD.to_owned(),
            admin_2fa: false,
            integration_as_bearer: true,
        }
    }
}

/// One exchange, as the call log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub seq: u64,
    /// Emulator time.
    pub at: String,
    pub method: String,
    /// The path as sent (without the query string).
    pub path: String,
    pub query: String,
    /// The route, `/V1/...` (empty when the path is not a REST route).
    pub route: String,
    /// The store code in the path, if any.
    pub store: Option<String>,
    /// `sync`, `async` or `bulk`.
    pub mode: String,
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_body: Value,
    /// Whether the request changed (or would have changed) the store.
    pub applied: bool,
    /// Faults that fired (`latency`, `status 503`, `lost_response reset`, ...).
    pub faults: Vec<String>,
}

/// The Magento instance: the MSI model (which also holds orders, shipments, invoices and
/// credit memos as MSI sees them, and the vector references), the REST order data, and bulk
/// operations.
#[derive(Debug, Clone)]
pub struct World {
    /// The model, wrapped in the vector executor so that control-API ops use the same code
    /// path as the in-process conformance run.
    pub exec: ModelExecutor,
    pub sales: SalesStore,
    pub bulk: BulkStore,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// Install defaults.
    pub fn new() -> Self {
        Self {
            exec: ModelExecutor::new(),
            sales: SalesStore::default(),
            bulk: BulkStore::default(),
        }
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct State {
    pub world: World,
    pub settings: Settings,
    pub tokens: Tokens,
    pub clock: Clock,
    pub faults: Vec<FaultRule>,
    pub next_fault_id: u64,
    pub rng: Rng,
    pub seed: u64,
    pub calls: Vec<CallRecord>,
    pub next_call_seq: u64,
    /// The throttle's queue: when the store is free again.
    pub busy_until: Option<std::time::Instant>,
}

impl State {
    pub fn new(seed: u64, tokens: Tokens, clock: Clock, settings: Settings) -> Self {
        Self {
            world: World::new(),
            settings,
            tokens,
            clock,
            faults: Vec::new(),
            next_fault_id: 1,
            rng: Rng::new(seed),
            seed,
            calls: Vec::new(),
            next_call_seq: 1,
            busy_until: None,
        }
    }
}
