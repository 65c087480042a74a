//! The service: the runner in its loop and the HTTP API beside it, with one shutdown for both.
//! `tillbridge serve` and `tillbridge demo` both start it through [`start`].
//!
//! The API reads the runner through [`Live`] (a copy of the runner's view, refreshed every
//! tick, plus the store's latency samples) and acts through the operator channel, which the
//! runner drains between ticks: a retry or resolve is stored as an `operator` record before
//! the engine sees it, like every other input.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use tillbridge_core::mapping::{LocationMapping, MappingProblem, MappingTable};
use tillbridge_core::pos::{PosLocationId, SourceCode, StoreCode, Timestamp};
use tokio::sync::{mpsc, watch};

use super::convert::Catalog;
use super::{Clock, Runner, RunnerError, RunnerView};
use crate::api::{
    ApiState, LatencySummary, MappingView, MetricsSnapshot, MetricsSource, OperatorRequest,
    WebhookEndpoint,
};
use crate::config::{Settings, StoreSettings};
use crate::store::Store;

/// Latency samples are summarised over the last hour.
const LATENCY_WINDOW_MS: i64 = 3_600_000;
/// Operator requests waiting for the runner before the API answers 503.
const OPERATOR_QUEUE: usize = 64;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error("the API could not start: {0}")]
    Api(String),
    #[error("the runner task failed: {0}")]
    Join(String),
}

/// A running service.
#[allow(missing_debug_implementations)] // holds the server handle and a task
pub struct Service {
    addr: SocketAddr,
    view: Arc<Mutex<RunnerView>>,
    store: Arc<dyn Store>,
    ops: mpsc::Sender<OperatorRequest>,
    shutdown: watch::Sender<bool>,
    api: actix_web::dev::ServerHandle,
    runner: tokio::task::JoinHandle<Result<(), RunnerError>>,
}

impl Service {
    /// Where the API and the dashboard listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (what to open in a browser).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The runner's numbers now.
    pub fn view(&self) -> RunnerView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The channel the API uses (for callers that act like the API, e.g. the demo).
    pub fn operator(&self) -> mpsc::Sender<OperatorRequest> {
        self.ops.clone()
    }

    /// Whether the runner stopped on its own (a storage failure).
    pub fn runner_finished(&self) -> bool {
        self.runner.is_finished()
    }

    /// Stop the runner (it snapshots the engine on the way out) and then the API.
    pub async fn stop(self) -> Result<(), ServiceError> {
        let _ = self.shutdown.send(true);
        let result = self
            .runner
            .await
            .map_err(|e| ServiceError::Join(e.to_string()))?;
        self.api.stop(true).await;
        result.map_err(ServiceError::from)
    }

    /// Run until Ctrl-C (then stop cleanly) or until the runner fails.
    pub async fn run_until_interrupted(mut self) -> Result<(), ServiceError> {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => self.stop().await,
            joined = &mut self.runner => {
                self.api.stop(true).await;
                match joined {
                    Ok(r) => r.map_err(ServiceError::from),
                    Err(e) => Err(ServiceError::Join(e.to_string())),
                }
            }
        }
    }
}

/// Build the runner from `settings`, start its loop and the API on `listener`.
pub async fn start(
    settings: Settings,
    clock: Clock,
    listener: TcpListener,
) -> Result<Service, ServiceError> {
    let parts = super::parts(&settings)?;
    let webhooks = parts.square_webhooks.clone();
    let runner = Runner::new(
        settings.clone(),
        parts.store.clone(),
        parts.commerce,
        parts.pos,
        clock.clone(),
    )?;
    start_runner(runner, &settings, clock, listener, webhooks).await
}

/// Start an assembled runner and the API.
pub async fn start_runner(
    runner: Runner,
    settings: &Settings,
    clock: Clock,
    listener: TcpListener,
    square_webhooks: Vec<(String, Arc<crate::pos::square::SquareConnector>)>,
) -> Result<Service, ServiceError> {
    let store = runner.store_handle();
    let view = runner.view();
    let live = Arc::new(Live {
        view: view.clone(),
        store: store.clone(),
        catalogs: runner.catalogs.clone(),
        stores: settings.stores.clone(),
        clock: clock.clone(),
        stale_after_ms: stale_after(settings),
    });
    let (ops_tx, ops_rx) = mpsc::channel(OPERATOR_QUEUE);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let token = crate::commerce::Secret::new(settings.service.api_token.expose());
    let mut secrets = vec![];
    if let Some(t) = &settings.commerce.token {
        secrets.push(crate::commerce::Secret::new(t.expose()));
    }
    if let Some(p) = &settings.commerce.admin_password {
        secrets.push(crate::commerce::Secret::new(p.expose()));
    }
    for p in &settings.pos {
        if let crate::config::PosSettings::Square {
            token,
            webhook_signature_key,
            ..
        } = p
        {
            secrets.push(crate::commerce::Secret::new(token.expose()));
            if let Some(k) = webhook_signature_key {
                secrets.push(crate::commerce::Secret::new(k.expose()));
            }
        }
    }
    let mut state = ApiState::new(store.clone(), token, ops_tx.clone(), live)
        .map_err(|e| ServiceError::Api(e.to_string()))?
        .with_config(settings.redacted(), &secrets)
        .with_clock(clock);
    for (id, connector) in square_webhooks {
        state = state
            .with_webhook(id, WebhookEndpoint::square(connector))
            .map_err(|e| ServiceError::Api(e.to_string()))?;
    }
    let (api, addr) =
        crate::api::serve(state, listener).map_err(|e| ServiceError::Api(e.to_string()))?;
    let runner = tokio::spawn(runner.run(ops_rx, shutdown_rx));
    Ok(Service {
        addr,
        view,
        store,
        ops: ops_tx,
        shutdown: shutdown_tx,
        api,
        runner,
    })
}

/// A runner whose last round is older than this is not ready (ten poll intervals, at least
/// 30 s).
fn stale_after(settings: &Settings) -> i64 {
    i64::try_from(settings.service.poll_interval_ms.saturating_mul(10))
        .unwrap_or(i64::MAX)
        .max(30_000)
}

/// What the API reads from the runner.
pub struct Live {
    view: Arc<Mutex<RunnerView>>,
    store: Arc<dyn Store>,
    catalogs: Arc<Mutex<BTreeMap<String, Catalog>>>,
    stores: Vec<StoreSettings>,
    clock: Clock,
    stale_after_ms: i64,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    fn view(&self) -> RunnerView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl MetricsSource for Live {
    fn snapshot(&self) -> MetricsSnapshot {
        let v = self.view();
        let since = Timestamp::from_millis((self.clock)().as_millis() - LATENCY_WINDOW_MS);
        let samples = self.store.latencies(since).unwrap_or_default();
        MetricsSnapshot {
            stats: v.stats.clone(),
            pending_pushes: v.pending_pushes as u64,
            commands_in_flight: v.commands_in_flight as u64,
            budget_requests_per_second: v.requests_per_second,
            budget_items_per_second: v.items_per_second,
            push_latency: LatencySummary::from_samples(&samples),
            role: v.role,
        }
    }

    fn mapping(&self) -> MappingView {
        let mut table = MappingTable::default();
        for s in &self.stores {
            let (Ok(pos_location), Ok(source)) = (
                PosLocationId::parse(&s.location),
                SourceCode::parse(&s.source),
            ) else {
                continue;
            };
            let Ok(store) = StoreCode::parse(&s.source) else {
                continue;
            };
            table.locations.push(LocationMapping {
                pos_location,
                store,
                source,
            });
        }
        let mut problems: Vec<MappingProblem> = Vec::new();
        let mut checked_at: Option<Timestamp> = None;
        if let Ok(catalogs) = self.catalogs.lock() {
            for c in catalogs.values() {
                for (variation, sku) in c.items() {
                    table.items.push(tillbridge_core::mapping::ItemMapping {
                        variation: variation.clone(),
                        sku: sku.clone(),
                    });
                }
                problems.extend(c.location_problems.iter().cloned());
                problems.extend(c.problems.iter().cloned());
                checked_at = match (checked_at, c.loaded_at) {
                    (Some(a), Some(b)) => Some(if a.as_millis() <= b.as_millis() { a } else { b }),
                    (a, b) => a.or(b),
                };
            }
        }
        MappingView {
            table,
            problems,
            checked_at,
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let v = self.view();
        let now = (self.clock)().as_millis();
        match v.last_tick {
            None => Err(
                "the runner has not finished its first round yet (restoring its state, reading the POS)"
                    .to_owned(),
            ),
            Some(t) if now - t.as_millis() > self.stale_after_ms => Err(format!(
                "the runner's last round was {} s ago{}",
                (now - t.as_millis()) / 1000,
                v.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            )),
            Some(_) => Ok(()),
        }
    }
}
