//! The runner: the edge service's loop around the sync engine.
//!
//! Each tick it (1) reads the POS feeds and Commerce's changed orders, stores every record
//! **before** the engine sees it, commits feed cursors only after their records are stored;
//! (2) hands the records to the engine; (3) persists the engine's journal and stores each
//! command in the outbox before executing it; (4) executes commands concurrently (Commerce
//! through the budgeted, idempotent client; fulfilments through the POS connector) and feeds
//! every answer back as a stored record. The engine decides; the runner only moves data.
//!
//! A restart restores the newest engine snapshot, replays the records stored after it, and
//! resends the commands that were in flight (`Engine::resume`; their idempotency keys make
//! that safe).

pub(crate) mod convert;
pub(crate) mod exec;
pub mod service;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tillbridge_core::pos::{
    FulfilmentRef, FulfilmentState, PosVariationId, Sku, SourceCode, Timestamp,
};
use tillbridge_core::sync::{
    Engine, EngineConfig, Input, Journal, Outcome, Output, RecordState, RoutingConfig, SourceRoute,
    Stats, SweepConfig, VerifyConfig,
};
use tokio::sync::mpsc;

use crate::api::{OperatorAck, OperatorAction, OperatorRefusal, OperatorReply, OperatorRequest};
use crate::commerce::{CommerceClient, OrderCursor};
use crate::config::Settings;
use crate::pos::{Feed, PosConnector, PosCursor};
use crate::store::{NewRecord, RecordId, RecordKind, Store, StoreError};

pub use exec::execute;

/// A clock: real time in the service, a controlled one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
    })
}

/// What a person (through the API) or a webhook asks the runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerOp {
    RetryException {
        id: u64,
        by: String,
    },
    ResolveException {
        id: u64,
        note: String,
        by: String,
    },
    /// Read the POS feeds and Commerce orders now (a webhook arrived).
    PollNow,
    /// Start a reconciliation sweep now.
    Sweep,
}

/// Why the runner stopped or a tick failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("engine snapshot: {0}")]
    Snapshot(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// What the runner exposes to the API and the demo (a copy, refreshed every tick).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunnerView {
    pub stats: Stats,
    pub pending_pushes: usize,
    pub commands_in_flight: usize,
    /// Of those, the ones that change something (`Engine::writes_in_flight`).
    pub writes_in_flight: usize,
    /// Salable-quantity reads queued (`Engine::verifications_waiting`).
    pub verifications_waiting: usize,
    pub open_exceptions: usize,
    pub requests_per_second: u32,
    pub last_tick: Option<Timestamp>,
    pub last_error: Option<String>,
    /// POS records read but not usable (mapping, malformed); each is stored with the reason.
    pub rejected_pos_records: u64,
    /// The Commerce budget's source-items rate now.
    pub items_per_second: u32,
    /// `active` (this replica runs the engine) or `standby`; empty before the first round.
    pub role: String,
    /// This replica's name in the engine lease.
    pub replica: String,
    /// Per POS: how many variations the catalog maps to a SKU, and what it left out.
    pub catalogs: BTreeMap<String, CatalogView>,
}

/// A POS catalog as the runner last read it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogView {
    pub mapped_variations: usize,
    pub malformed_objects: usize,
    /// Sentences about variations that are not synced (shared SKU, no SKU).
    pub problems: Vec<String>,
    pub loaded_at: Option<Timestamp>,
}

/// How often a POS catalog is re-read (a new product at the till is picked up sooner: an
/// unknown variation triggers a re-read, at most once a minute).
const CATALOG_REFRESH_MS: i64 = 15 * 60_000;
const CATALOG_RETRY_MS: i64 = 60_000;
/// The cursor row that keeps the fulfilments being followed across restarts.
const FOLLOWED_KEY: &str = "runner:followed";
/// Orders read per poll, and how far back a caught-up poll reads again.
const ORDER_PAGE: u32 = 100;
const ORDER_OVERLAP_MS: i64 = 10_000;

/// The engine configuration from the service settings.
pub fn engine_config(settings: &Settings) -> EngineConfig {
    let mut sources: Vec<SourceRoute> = settings
        .stores
        .iter()
        .filter_map(|s| {
            Some(SourceRoute {
                source: SourceCode::parse(&s.source).ok()?,
                priority: s.priority,
                stock_ids: s.stocks.clone(),
                pos_managed: true,
                fulfils: s.fulfils,
                name: s.name.clone(),
            })
        })
        .collect();
    sources.extend(settings.warehouses.iter().filter_map(|w| {
        Some(SourceRoute {
            source: SourceCode::parse(&w.source).ok()?,
            priority: w.priority,
            stock_ids: w.stocks.clone(),
            pos_managed: false,
            fulfils: true,
            name: w.name.clone(),
        })
    }));
    let mut cfg = EngineConfig {
        routing: RoutingConfig { sources },
        input_limit: settings.commerce.input_limit,
        ..EngineConfig::default()
    };
    cfg.requests.max_per_second = settings.commerce.requests_per_second.max(1);
    cfg.requests.burst = settings.commerce.requests_per_second.max(1);
    cfg.items.max_per_second = settings.commerce.source_items_per_second.max(1);
    cfg.items.burst = settings.commerce.source_items_per_second.max(1);
    cfg.sweep = SweepConfig {
        every_ms: (settings.engine.sweep_every_minutes > 0).then(|| {
            i64::try_from(settings.engine.sweep_every_minutes * 60_000).unwrap_or(i64::MAX)
        }),
        page_size: 300,
    };
    cfg.verify = VerifyConfig {
        delay_ms: settings.engine.verify_delay_ms,
        sample_every: settings.engine.verify_sample_every,
        threshold: settings.commerce.min_qty,
        ..VerifyConfig::default()
    };
    cfg
}

/// A fulfilment the runner follows at the POS.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Followed {
    pos: String,
    reference: FulfilmentRef,
    state: FulfilmentState,
    version: i64,
    /// The parcels (parts the store split off and handed over on their own) already turned
    /// into inputs, by the POS's id of the part.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    parcels: std::collections::BTreeSet<String>,
}

/// The runner.
pub struct Runner {
    settings: Settings,
    engine: Engine,
    store: Arc<dyn Store>,
    commerce: CommerceClient,
    pos: BTreeMap<String, Arc<dyn PosConnector>>,
    clock: Clock,
    /// (POS id, location) → source.
    sources: BTreeMap<(String, String), SourceCode>,
    /// POS variation per (POS id, SKU), learnt from stock figures.
    variations: Arc<Mutex<BTreeMap<(String, Sku), PosVariationId>>>,
    followed: Arc<Mutex<BTreeMap<String, Followed>>>,
    /// The followed map as last saved (saved again only when it changes).
    followed_saved: String,
    /// The last order poll read everything there was (the next one re-reads a few seconds).
    orders_caught_up: bool,
    /// POS id → its catalog (variation ↔ SKU).
    catalogs: Arc<Mutex<BTreeMap<String, convert::Catalog>>>,
    answers_tx: mpsc::UnboundedSender<Vec<Input>>,
    answers_rx: mpsc::UnboundedReceiver<Vec<Input>>,
    last_record: RecordId,
    next_poll: i64,
    next_fulfilment_poll: i64,
    next_snapshot: i64,
    snapshot_started: bool,
    view: Arc<Mutex<RunnerView>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("last_record", &self.last_record)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Build a runner: restore the newest snapshot and replay what was stored after it, or
    /// start a fresh engine.
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        commerce: CommerceClient,
        pos: BTreeMap<String, Arc<dyn PosConnector>>,
        clock: Clock,
    ) -> Result<Self, RunnerError> {
        let now = clock();
        let (engine, last) = restore(store.as_ref(), &settings, now)?;
        let sources = settings
            .stores
            .iter()
            .filter_map(|s| {
                Some((
                    (s.pos.clone(), s.location.clone()),
                    SourceCode::parse(&s.source).ok()?,
                ))
            })
            .collect();
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let followed_saved = store.cursor(FOLLOWED_KEY)?.unwrap_or_default();
        let followed: BTreeMap<String, Followed> = if followed_saved.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&followed_saved)
                .map_err(|e| RunnerError::Snapshot(format!("followed fulfilments: {e}")))?
        };
        Ok(Self {
            settings,
            engine,
            store,
            commerce,
            pos,
            clock,
            sources,
            variations: Arc::new(Mutex::new(BTreeMap::new())),
            followed: Arc::new(Mutex::new(followed)),
            followed_saved,
            orders_caught_up: true,
            catalogs: Arc::new(Mutex::new(BTreeMap::new())),
            answers_tx,
            answers_rx,
            last_record: last,
            next_poll: 0,
            next_fulfilment_poll: 0,
            next_snapshot: now.as_millis() + 60_000,
            snapshot_started: false,
            view: Arc::new(Mutex::new(RunnerView::default())),
        })
    }

    /// The shared view (stats, exceptions count, budget) for the API and the demo.
    pub fn view(&self) -> Arc<Mutex<RunnerView>> {
        self.view.clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The store the runner writes to (for the API and tests).
    pub fn store_handle(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Store an inbound record, then hand it to the engine. A duplicate (same kind, origin
    /// and external id) is not handed over again.
    fn ingest(
        &mut self,
        kind: RecordKind,
        origin: &str,
        external_id: Option<String>,
        input: impl FnOnce(String) -> Input,
    ) -> Result<(RecordId, bool), RunnerError> {
        let now = (self.clock)();
        // The record id is only known after the insert; store the input with a placeholder id
        // rewritten in the payload right after (one row, two writes in the same thread).
        let placeholder = input(String::new());
        let record = NewRecord {
            kind,
            origin: origin.to_owned(),
            external_id,
            payload: serde_json::to_value(&placeholder).unwrap_or_default(),
            received_at: now,
        };
        let (id, new) = self.store.insert_record(&record)?;
        if !new {
            return Ok((id, false));
        }
        self.last_record = self.last_record.max(id);
        let input = with_record(placeholder, &id.to_string());
        self.engine.handle(input, now);
        Ok((id, true))
    }

    /// One round of work. Returns whether anything happened.
    pub async fn tick(&mut self) -> Result<bool, RunnerError> {
        let now = (self.clock)();
        let mut busy = false;
        // Answers of commands.
        while let Ok(inputs) = self.answers_rx.try_recv() {
            busy = true;
            for input in inputs {
                let ext = Some(format!(
                    "{}:{}",
                    input_command(&input).unwrap_or(0),
                    now.as_millis()
                ));
                self.ingest(RecordKind::CommandResult, "runner", ext, |r| {
                    with_record(input.clone(), &r)
                })?;
            }
        }
        if now.as_millis() >= self.next_poll {
            self.next_poll = now.as_millis()
                + i64::try_from(self.settings.service.poll_interval_ms).unwrap_or(2_000);
            busy |= self.poll_pos().await?;
            busy |= self.poll_orders().await?;
        }
        if now.as_millis() >= self.next_fulfilment_poll {
            self.next_fulfilment_poll = now.as_millis()
                + i64::try_from(self.settings.service.fulfilment_poll_interval_ms).unwrap_or(5_000);
            busy |= self.poll_fulfilments().await?;
        }
        // Decisions.
        let outputs = self.engine.poll(now);
        let mut journal = Vec::new();
        for out in outputs {
            match out {
                Output::Journal(j) => journal.push(j),
                Output::Command(mut cmd) => {
                    busy = true;
                    match self.store.put_command(&cmd, now) {
                        Ok(()) => {}
                        Err(StoreError::DuplicateKey { existing, .. }) => {
                            // The same action under an earlier command id (re-decided after a
                            // restart): its stored outcome answers this one when it has one.
                            if let Some(outcome) = self.outcome_of(existing)? {
                                let _ = self.answers_tx.send(vec![Input::Result {
                                    command: cmd.id,
                                    outcome,
                                }]);
                                continue;
                            }
                            // Still open: run it again; the idempotency key makes the POS and
                            // Commerce act once (as a repeat: it may have been executed).
                            cmd.attempt = cmd.attempt.max(2);
                        }
                        Err(e) => return Err(e.into()),
                    }
                    let ctx = exec::Context {
                        commerce: self.commerce.clone(),
                        pos: self.pos.clone(),
                        settings: Arc::new(self.settings.clone()),
                        variations: self.variations.clone(),
                        catalogs: self.catalogs.clone(),
                        followed: self.followed_handle(),
                        now,
                    };
                    let tx = self.answers_tx.clone();
                    tokio::spawn(async move {
                        let inputs = execute(&ctx, &cmd).await;
                        let _ = tx.send(inputs);
                    });
                }
            }
        }
        if !journal.is_empty() {
            self.store.apply_journal(&journal, now)?;
        }
        self.save_followed(now)?;
        if now.as_millis() >= self.next_snapshot {
            self.snapshot(now)?;
        }
        self.refresh_view(now);
        Ok(busy)
    }

    /// The outcome of a stored command that finished (`None` while it is open).
    fn outcome_of(&self, command: u64) -> Result<Option<Outcome>, RunnerError> {
        let Some(row) = self.store.command(command)? else {
            return Ok(None);
        };
        Ok(match row.state {
            RecordState::Confirmed | RecordState::Verified | RecordState::Settled => {
                Some(Outcome::Ok { latency_ms: 0 })
            }
            // An attempt that failed in a way worth retrying: still underway; run it again
            // (as a repeat, which looks for what the earlier attempt may have done).
            RecordState::Failed if tillbridge_core::sync::is_retry_detail(&row.detail) => None,
            RecordState::Failed => Some(Outcome::Permanent {
                status: 0,
                message: format!("as command {command}: {}", row.detail),
                skus: Vec::new(),
            }),
            _ => None,
        })
    }

    fn followed_handle(&self) -> exec::FollowedMap {
        self.followed.clone()
    }

    /// Persist the fulfilments being followed when they changed (open ones only: a finished
    /// fulfilment needs no more polling).
    fn save_followed(&mut self, now: Timestamp) -> Result<(), RunnerError> {
        let json = match self.followed.lock() {
            Ok(mut f) => {
                f.retain(|_, x| !x.state.is_terminal());
                serde_json::to_string(&*f).unwrap_or_default()
            }
            Err(_) => return Ok(()),
        };
        if json != self.followed_saved {
            self.store.save_cursor(FOLLOWED_KEY, &json, now)?;
            self.followed_saved = json;
        }
        Ok(())
    }

    /// Read a POS's catalog when it was never read, is old, or a record named a variation it
    /// does not know (at most once a minute then).
    async fn refresh_catalog(
        &mut self,
        pos_id: &str,
        connector: &Arc<dyn PosConnector>,
        unknown_seen: bool,
    ) {
        let now = (self.clock)().as_millis();
        let loaded = self
            .catalogs
            .lock()
            .ok()
            .and_then(|c| c.get(pos_id).and_then(|x| x.loaded_at));
        let due = match loaded {
            None => true,
            Some(at) => {
                now - at.as_millis() >= CATALOG_REFRESH_MS
                    || (unknown_seen && now - at.as_millis() >= CATALOG_RETRY_MS)
            }
        };
        if !due {
            return;
        }
        // Active tills nobody mapped: their stock is not synced, which someone should know.
        let mut location_problems = Vec::new();
        match connector.locations().await {
            Ok(locations) => {
                for l in locations.iter().filter(|l| l.active) {
                    if !self
                        .sources
                        .contains_key(&(pos_id.to_owned(), l.id.as_str().to_owned()))
                    {
                        let kind = tillbridge_core::mapping::MappingProblemKind::UnmappedLocation;
                        location_problems.push(tillbridge_core::mapping::MappingProblem {
                            kind,
                            severity: kind.severity(),
                            subject: tillbridge_core::mapping::ProblemSubject {
                                pos_locations: vec![l.id.clone()],
                                ..Default::default()
                            },
                            message: format!(
                                "POS location {} ({}) is active but not mapped to a Commerce source: its stock is not synced; add a [[stores]] entry for it",
                                l.id, l.name
                            ),
                        });
                    }
                }
            }
            Err(e) => self.note_error(format!("{pos_id} locations: {e}")),
        }
        match connector.catalog().await {
            Ok((variations, errors)) => {
                let mut catalog = convert::Catalog::from_variations(
                    &variations,
                    errors.len(),
                    Timestamp::from_millis(now),
                );
                catalog.location_problems = location_problems;
                if let Ok(mut v) = self.view.lock() {
                    v.catalogs.insert(
                        pos_id.to_owned(),
                        CatalogView {
                            mapped_variations: catalog.len(),
                            malformed_objects: catalog.malformed,
                            problems: catalog
                                .location_problems
                                .iter()
                                .chain(catalog.problems.iter())
                                .map(|p| p.message.clone())
                                .collect(),
                            loaded_at: catalog.loaded_at,
                        },
                    );
                }
                if let Ok(mut c) = self.catalogs.lock() {
                    c.insert(pos_id.to_owned(), catalog);
                }
            }
            Err(e) => self.note_error(format!("{pos_id} catalog: {e}")),
        }
    }

    /// Store the POS records the sync cannot use, each with the sentence saying why.
    fn store_rejected(
        &mut self,
        pos_id: &str,
        rejected: Vec<convert::Rejected>,
    ) -> Result<(), RunnerError> {
        let now = (self.clock)();
        let mut journal = Vec::new();
        for r in rejected {
            let (id, new) = self.store.insert_record(&NewRecord {
                kind: r.kind,
                origin: pos_id.to_owned(),
                external_id: Some(r.external_id),
                payload: r.payload,
                received_at: now,
            })?;
            if new {
                self.last_record = self.last_record.max(id);
                journal.push(Journal::Record {
                    record: id.to_string(),
                    state: r.state,
                    detail: r.detail,
                });
            }
        }
        if !journal.is_empty() {
            if let Ok(mut v) = self.view.lock() {
                v.rejected_pos_records += journal.len() as u64;
            }
            self.store.apply_journal(&journal, now)?;
        }
        Ok(())
    }

    /// Snapshot the engine (the newest record it has seen goes with it).
    pub fn snapshot(&mut self, now: Timestamp) -> Result<(), RunnerError> {
        let json = serde_json::to_string(&self.engine)
            .map_err(|e| RunnerError::Snapshot(e.to_string()))?;
        self.store.save_snapshot(&json, self.last_record, now)?;
        self.next_snapshot = now.as_millis()
            + i64::try_from(self.settings.service.snapshot_interval_ms).unwrap_or(60_000);
        self.snapshot_started = true;
        Ok(())
    }

    fn refresh_view(&self, now: Timestamp) {
        if let Ok(mut v) = self.view.lock() {
            v.stats = self.engine.stats().clone();
            v.pending_pushes = self.engine.pending_pushes();
            v.commands_in_flight = self.engine.commands_in_flight();
            v.writes_in_flight = self.engine.writes_in_flight();
            v.verifications_waiting = self.engine.verifications_waiting();
            v.open_exceptions = self.engine.exceptions().count();
            v.requests_per_second = self.engine.budget().requests.rate_per_second();
            v.items_per_second = self.engine.budget().items.rate_per_second();
            v.last_tick = Some(now);
        }
    }

    fn note_error(&self, text: String) {
        if let Ok(mut v) = self.view.lock() {
            v.last_error = Some(text);
        }
    }

    /// Read every POS feed: stock (a snapshot first, then changes) and sales.
    async fn poll_pos(&mut self) -> Result<bool, RunnerError> {
        let mut busy = false;
        let connectors: Vec<(String, Arc<dyn PosConnector>)> = self
            .pos
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (pos_id, connector) in connectors {
            self.refresh_catalog(&pos_id, &connector, false).await;
            let caps = connector.capabilities();
            let mut feeds = Vec::new();
            let snapshot_done = self
                .store
                .cursor(&feed_name(&pos_id, "snapshot-done"))?
                .is_some();
            if caps.stock_snapshot && !snapshot_done {
                feeds.push(Feed::StockSnapshot);
            } else if caps.stock_changes {
                feeds.push(Feed::StockChanges);
            }
            if caps.sales {
                feeds.push(Feed::Sales);
            }
            for feed in feeds {
                // A few pages per tick, so one busy feed cannot starve the rest.
                for _ in 0..5 {
                    let name = feed_name(&pos_id, feed.as_str());
                    let cursor = self
                        .store
                        .cursor(&name)?
                        .map(PosCursor::from_opaque)
                        .unwrap_or_default();
                    let batch = match connector.fetch(feed, &cursor).await {
                        Ok(b) => b,
                        Err(e) => {
                            self.note_error(format!("{pos_id} {feed}: {e}"));
                            break;
                        }
                    };
                    let mut records = self.convert(&pos_id, &batch);
                    if records
                        .rejected
                        .iter()
                        .any(|r| r.detail.contains("no SKU") || r.detail.contains("not been read"))
                    {
                        // Perhaps a product added at the till since the catalog was read.
                        self.refresh_catalog(&pos_id, &connector, true).await;
                        records = self.convert(&pos_id, &batch);
                    }
                    busy |= !records.inputs.is_empty();
                    for (ext, kind, input) in records.inputs {
                        self.ingest(kind, &pos_id, Some(ext), |r| with_record(input, &r))?;
                    }
                    self.store_rejected(&pos_id, records.rejected)?;
                    // Stored: now the cursor may move.
                    let now = (self.clock)();
                    self.store
                        .save_cursor(&name, batch.next_cursor.as_str(), now)?;
                    if let Err(e) = connector.after_commit(feed, &batch.next_cursor).await {
                        self.note_error(format!("{pos_id} {feed} after commit: {e}"));
                    }
                    if !batch.has_more {
                        if feed == Feed::StockSnapshot {
                            self.store.save_cursor(
                                &feed_name(&pos_id, "snapshot-done"),
                                "1",
                                now,
                            )?;
                        }
                        break;
                    }
                }
            }
        }
        Ok(busy)
    }

    fn convert(&self, pos_id: &str, batch: &crate::pos::PosBatch) -> convert::Converted {
        let catalogs = self.catalogs.lock().ok();
        let catalog = catalogs.as_ref().and_then(|c| c.get(pos_id));
        convert::pos_batch(pos_id, batch, &self.sources, catalog, &self.variations)
    }

    /// Read Commerce orders changed since the cursor.
    async fn poll_orders(&mut self) -> Result<bool, RunnerError> {
        let name = "commerce:orders";
        // Stored as `updated_at|entity_id`.
        let cursor = match self.store.cursor(name)? {
            Some(c) => {
                let (at, id) = c.rsplit_once('|').unwrap_or((c.as_str(), "0"));
                OrderCursor {
                    updated_at: at.to_owned(),
                    entity_id: id.parse().unwrap_or(0),
                }
            }
            None => OrderCursor::default(),
        };
        // Magento's `updated_at` has whole seconds, and an order saved in the second the cursor
        // stands on (or committed a moment after a later one was read) sorts behind it. When
        // the last read caught up, read the last few seconds again; the record ids (which
        // carry the order's state and quantities) keep what was already stored from counting
        // twice.
        let read_from = if self.orders_caught_up && !cursor.updated_at.is_empty() {
            OrderCursor {
                updated_at: convert::magento_time_minus(&cursor.updated_at, ORDER_OVERLAP_MS),
                entity_id: 0,
            }
        } else {
            cursor.clone()
        };
        let (orders, next) = match self
            .commerce
            .orders_changed_since(&read_from, ORDER_PAGE)
            .await
        {
            Ok(x) => x,
            Err(e) => {
                self.note_error(format!("commerce orders: {e}"));
                return Ok(false);
            }
        };
        self.orders_caught_up = orders.len() < ORDER_PAGE as usize;
        let mut busy = false;
        for order in orders {
            let Some(web) = convert::web_order(&order, &self.settings) else {
                continue;
            };
            let ext = convert::order_record_id(&web, order.updated_at.as_deref());
            let (_, new) = self.ingest(RecordKind::CommerceOrder, "commerce", Some(ext), |r| {
                Input::CommerceOrder {
                    record: r,
                    order: web,
                }
            })?;
            busy |= new;
        }
        // The cursor never moves back (an overlap read may end before it).
        let key = |c: &OrderCursor| (c.updated_at.clone(), c.entity_id);
        if key(&next) > key(&cursor) {
            let now = (self.clock)();
            self.store.save_cursor(
                name,
                &format!("{}|{}", next.updated_at, next.entity_id),
                now,
            )?;
        }
        Ok(busy)
    }

    /// Ask the POS where each open fulfilment stands.
    async fn poll_fulfilments(&mut self) -> Result<bool, RunnerError> {
        let open: Vec<(String, Followed)> = match self.followed.lock() {
            Ok(f) => f
                .iter()
                .filter(|(_, x)| !x.state.is_terminal())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut busy = false;
        for (order, f) in open {
            let Some(connector) = self.pos.get(&f.pos).cloned() else {
                continue;
            };
            let status = match connector.fulfilment_status(&f.reference).await {
                Ok(s) => s,
                Err(e) => {
                    self.note_error(format!("fulfilment status of {order}: {e}"));
                    continue;
                }
            };
            if status.version < f.version {
                continue;
            }
            // Parcels first: each completed part of a split order is one hand-over of its
            // lines, stored under the POS's id of the part (not the order's version, which
            // moves on with every other part), so it becomes one input however often it is
            // read, across restarts too.
            let fresh: Vec<_> = status
                .parcels
                .iter()
                .filter(|p| !f.parcels.contains(&p.id))
                .collect();
            let mut handed = Vec::new();
            let mut waiting = false;
            for parcel in fresh {
                let lines = {
                    let catalogs = self.catalogs.lock().ok();
                    let catalog = catalogs.as_ref().and_then(|c| c.get(&f.pos));
                    convert::parcel_lines(parcel, catalog)
                };
                let lines = match lines {
                    Ok(l) => l,
                    Err(why) => {
                        // Kept and shown, once, with the reason; the parcel itself is handed
                        // over when a later read maps it (the catalog or mapping fixed).
                        self.note_error(format!("order {order}: {why}"));
                        self.store_rejected(
                            &f.pos,
                            vec![convert::Rejected {
                                kind: RecordKind::Fulfilment,
                                external_id: format!(
                                    "{order}:{}:{}:unmapped",
                                    status.reference.external_order_id, parcel.id
                                ),
                                payload: serde_json::json!({ "rejected": {
                                    "order": order,
                                    "parcel": parcel,
                                    "why": why,
                                }}),
                                state: RecordState::Stalled,
                                detail: format!(
                                    "order {order}: {why}; the parcel is handed over once its items map to SKUs"
                                ),
                            }],
                        )?;
                        waiting = true;
                        continue;
                    }
                };
                let ext = format!(
                    "{order}:{}:{}:Completed",
                    status.reference.external_order_id, parcel.id
                );
                self.ingest(RecordKind::Fulfilment, &f.pos, Some(ext), |r| {
                    Input::Fulfilment {
                        record: r,
                        order: order.clone(),
                        state: FulfilmentState::Completed,
                        at: parcel.completed_at.unwrap_or(status.updated_at),
                        tracking: parcel.tracking_number.clone(),
                        lines: Some(lines),
                    }
                })?;
                handed.push(parcel.id.clone());
            }
            let split = !status.parcels.is_empty() || !f.parcels.is_empty();
            let moved = status.state != f.state && !(waiting && status.state.is_terminal());
            if handed.is_empty() && !moved {
                continue;
            }
            busy = true;
            if let Ok(mut m) = self.followed.lock()
                && let Some(x) = m.get_mut(&order)
            {
                x.parcels.extend(handed);
                if moved {
                    x.state = status.state;
                    x.version = status.version;
                }
            }
            // Once a part went on its own, the parts are the hand-overs: the order's own state
            // (where its least advanced part is; completed when the last part is) adds nothing
            // the engine could act on, except that the store will not hand over the rest
            // (every open part cancelled, rejected or failed).
            let refused = matches!(
                status.state,
                FulfilmentState::Rejected | FulfilmentState::Cancelled | FulfilmentState::Failed
            );
            if !moved || (split && !refused) {
                continue;
            }
            let ext = format!("{order}:{}:{:?}", status.version, status.state);
            let tracking = status.tracking_number.clone();
            self.ingest(RecordKind::Fulfilment, &f.pos, Some(ext), |r| {
                Input::Fulfilment {
                    record: r,
                    order: order.clone(),
                    state: status.state,
                    at: status.updated_at,
                    tracking,
                    lines: None,
                }
            })?;
        }
        Ok(busy)
    }

    /// Apply an operator's action (stored first, like every input). A retry or resolve of an
    /// exception that is not open is refused, not stored.
    pub fn operator(&mut self, op: RunnerOp) -> Result<OperatorReply, RunnerError> {
        let now = (self.clock)();
        let exception_id = match &op {
            RunnerOp::RetryException { id, .. } | RunnerOp::ResolveException { id, .. } => {
                Some(*id)
            }
            RunnerOp::PollNow | RunnerOp::Sweep => None,
        };
        if let Some(id) = exception_id
            && !self.engine.exceptions().any(|e| e.id == id)
        {
            let resolved = self
                .store
                .exceptions(false, crate::store::MAX_LIMIT, 0)?
                .items
                .iter()
                .any(|e| e.entry.id == id && e.resolved_at.is_some());
            return Ok(Err(if resolved {
                OperatorRefusal::AlreadyResolved { id }
            } else {
                OperatorRefusal::UnknownException { id }
            }));
        }
        let (origin, ext, input, message) = match op {
            RunnerOp::RetryException { id, by } => (
                format!("api:{by}"),
                format!("retry:{id}:{}", now.as_millis()),
                Input::RetryException { id },
                format!("exception {id}: retrying now"),
            ),
            RunnerOp::ResolveException { id, note, by } => (
                format!("api:{by}"),
                format!("resolve:{id}:{}", now.as_millis()),
                Input::ResolveException {
                    id,
                    note: format!("{note} (by {by})"),
                },
                format!("exception {id} resolved"),
            ),
            RunnerOp::PollNow => {
                self.next_poll = 0;
                self.next_fulfilment_poll = 0;
                return Ok(Ok(OperatorAck {
                    record: None,
                    message: "polling now".into(),
                }));
            }
            RunnerOp::Sweep => {
                self.engine.request_sweep(now);
                return Ok(Ok(OperatorAck {
                    record: None,
                    message: "a reconciliation sweep starts now".into(),
                }));
            }
        };
        let (record, _) = self.ingest(RecordKind::Operator, &origin, Some(ext), |_| input)?;
        Ok(Ok(OperatorAck {
            record: Some(record),
            message,
        }))
    }

    /// Take one request from the API: act, then answer whoever waits.
    fn take_request(&mut self, request: OperatorRequest) -> Result<(), RunnerError> {
        let op = match request.action {
            OperatorAction::RetryException { id, by } => RunnerOp::RetryException { id, by },
            OperatorAction::ResolveException { id, note, by } => {
                RunnerOp::ResolveException { id, note, by }
            }
            OperatorAction::PollNow { .. } => RunnerOp::PollNow,
        };
        let reply = self.operator(op)?;
        if let Some(tx) = request.reply {
            let _ = tx.send(reply);
        }
        Ok(())
    }

    /// Run until `shutdown` flips, taking operator actions from `ops`.
    pub async fn run(
        mut self,
        mut ops: mpsc::Receiver<OperatorRequest>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let replica = self
            .settings
            .service
            .replica
            .clone()
            .unwrap_or_else(default_replica);
        let ttl = i64::try_from(self.settings.service.lease_ttl_ms.max(300)).unwrap_or(15_000);
        let mut active = false;
        let mut renew_at = 0_i64;
        loop {
            if *shutdown.borrow() {
                if active {
                    let now = (self.clock)();
                    self.snapshot(now)?;
                    self.store.release_lease(ENGINE_LEASE, &replica)?;
                }
                return Ok(());
            }
            let now = (self.clock)();
            if now.as_millis() >= renew_at {
                let held = self.store.acquire_lease(ENGINE_LEASE, &replica, now, ttl)?;
                renew_at = now.as_millis() + ttl / 3;
                if held && !active {
                    // Another replica may have acted since this one last did: start from what
                    // the store holds, not from memory.
                    self.reload(now)?;
                }
                active = held;
                if let Ok(mut v) = self.view.lock() {
                    v.role = if active { "active" } else { "standby" }.to_owned();
                    v.replica.clone_from(&replica);
                }
            }
            if !active {
                // Standby: answer the API, keep storing what in-flight commands of an earlier
                // turn bring back, and try for the lease again soon.
                while let Ok(request) = ops.try_recv() {
                    refuse_standby(request, &replica);
                }
                while let Ok(inputs) = self.answers_rx.try_recv() {
                    self.store_answers(inputs, now)?;
                }
                if let Ok(mut v) = self.view.lock() {
                    v.last_tick = Some(now);
                }
                let wait = (renew_at - now.as_millis()).clamp(5, 1_000);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(5))) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            while let Ok(request) = ops.try_recv() {
                self.take_request(request)?;
            }
            let busy = self.tick().await?;
            let now = (self.clock)();
            let wake = self
                .engine
                .next_wakeup(now)
                .map_or(i64::MAX, |t| t.as_millis());
            let next = wake
                .min(self.next_poll)
                .min(self.next_fulfilment_poll)
                .min(renew_at);
            let wait = if busy {
                5
            } else {
                (next - now.as_millis()).clamp(5, 500)
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(5))) => {}
                Some(request) = ops.recv() => self.take_request(request)?,
                _ = shutdown.changed() => {}
                Some(inputs) = self.answers_rx.recv() => {
                    // Put it back in front: the tick stores and handles it.
                    let _ = self.answers_tx.send(inputs);
                }
            }
        }
    }

    /// Rebuild the engine and the followed fulfilments from the store (taking over the lease).
    fn reload(&mut self, now: Timestamp) -> Result<(), RunnerError> {
        let (engine, last) = restore(self.store.as_ref(), &self.settings, now)?;
        self.engine = engine;
        self.last_record = last;
        let saved = self.store.cursor(FOLLOWED_KEY)?.unwrap_or_default();
        let followed: BTreeMap<String, Followed> = if saved.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&saved)
                .map_err(|e| RunnerError::Snapshot(format!("followed fulfilments: {e}")))?
        };
        if let Ok(mut f) = self.followed.lock() {
            *f = followed;
        }
        self.followed_saved = saved;
        self.next_poll = 0;
        self.next_fulfilment_poll = 0;
        Ok(())
    }

    /// Store command answers as records without handing them to the engine (a standby's).
    fn store_answers(&mut self, inputs: Vec<Input>, now: Timestamp) -> Result<(), RunnerError> {
        for input in inputs {
            let record = NewRecord {
                kind: RecordKind::CommandResult,
                origin: "runner".to_owned(),
                external_id: Some(format!(
                    "{}:{}",
                    input_command(&input).unwrap_or(0),
                    now.as_millis()
                )),
                payload: serde_json::to_value(&input).unwrap_or_default(),
                received_at: now,
            };
            self.store.insert_record(&record)?;
        }
        Ok(())
    }
}

/// The lease the active replica holds.
const ENGINE_LEASE: &str = "engine";

/// `host:pid`, unique enough among replicas.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "replica".to_owned());
    format!("{host}:{}", std::process::id())
}

fn refuse_standby(request: OperatorRequest, replica: &str) {
    if let Some(tx) = request.reply {
        let _ = tx.send(Err(OperatorRefusal::Unavailable {
            message: format!(
                "replica {replica} is on standby (another replica runs the engine); ask the active one"
            ),
        }));
    }
}

/// The engine as the store has it (`crate::restore`: the newest snapshot, ids above everything
/// stored, the records stored after it replayed), and the commands that were in flight sent
/// again.
fn restore(
    store: &dyn Store,
    settings: &Settings,
    now: Timestamp,
) -> Result<(Engine, RecordId), RunnerError> {
    let restored = crate::restore::restore(store, settings, now)?;
    let mut engine = restored.engine;
    engine.resume(now);
    Ok((engine, restored.last))
}

fn feed_name(pos: &str, feed: &str) -> String {
    format!("pos:{pos}:{feed}")
}

/// The command an answer belongs to.
fn input_command(input: &Input) -> Option<u64> {
    match input {
        Input::Result { command, .. }
        | Input::Salable { command, .. }
        | Input::SourceItems { command, .. } => Some(*command),
        _ => None,
    }
}

/// Set an input's record id.
fn with_record(input: Input, record: &str) -> Input {
    let r = record.to_owned();
    match input {
        Input::PosStock {
            sku,
            source,
            on_hand,
            as_of,
            ..
        } => Input::PosStock {
            record: r,
            sku,
            source,
            on_hand,
            as_of,
        },
        Input::PosSale {
            sku,
            source,
            units,
            at,
            ..
        } => Input::PosSale {
            record: r,
            sku,
            source,
            units,
            at,
        },
        Input::CommerceOrder { order, .. } => Input::CommerceOrder { record: r, order },
        Input::Fulfilment {
            order,
            state,
            at,
            tracking,
            lines,
            ..
        } => Input::Fulfilment {
            record: r,
            order,
            state,
            at,
            tracking,
            lines,
        },
        Input::PosReturn {
            order, lines, at, ..
        } => Input::PosReturn {
            record: r,
            order,
            lines,
            at,
        },
        other => other,
    }
}

/// What a runner is built from.
#[allow(missing_debug_implementations)] // trait objects and a client
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub commerce: CommerceClient,
    pub pos: BTreeMap<String, Arc<dyn PosConnector>>,
    /// The Square connectors that receive webhooks (for the API's `/webhooks/{id}`).
    pub square_webhooks: Vec<(String, Arc<crate::pos::square::SquareConnector>)>,
}

/// Build the runner from settings (see [`parts`]).
pub fn assemble(settings: Settings, clock: Clock) -> Result<Runner, RunnerError> {
    let p = parts(&settings)?;
    Runner::new(settings, p.store, p.commerce, p.pos, clock)
}

/// Build the runner's parts from settings: the store (SQLite file or PostgreSQL URL), the
/// Commerce client (bearer or admin credentials; pacing is the engine's budget, so the client's
/// own bucket only guards against bursts), and the POS connectors.
pub fn parts(settings: &Settings) -> Result<Parts, RunnerError> {
    use crate::commerce::{Budget, BudgetConfig, ClientConfig, Credentials};
    let store: Arc<dyn Store> = Arc::new(crate::store::sql::SqlStore::open(
        &settings.service.database,
    )?);
    let mut square_webhooks = Vec::new();
    let credentials = match (
        &settings.commerce.token,
        &settings.commerce.admin_username,
        &settings.commerce.admin_password,
    ) {
        (Some(t), _, _) => Credentials::Bearer(crate::commerce::Secret::new(t.expose())),
        (None, Some(u), Some(p)) => Credentials::admin(u, crate::commerce::Secret::new(p.expose())),
        _ => return Err(RunnerError::Config("commerce: no credentials".into())),
    };
    let mut client_cfg = ClientConfig::new(&settings.commerce.base_url, credentials);
    client_cfg.sync_input_limit = Some(settings.commerce.input_limit);
    if let Some(code) = &settings.commerce.store_code {
        client_cfg.store_code = Some(
            tillbridge_core::inventory::StoreCode::parse(code)
                .map_err(|e| RunnerError::Config(format!("commerce.store_code: {e:?}")))?,
        );
    }
    let rate = f64::from(settings.commerce.requests_per_second.max(1)) * 2.0;
    let budget = Budget::new(BudgetConfig {
        initial_rate: rate,
        max_rate: rate,
        burst: rate,
        ..BudgetConfig::default()
    });
    let commerce = CommerceClient::new(client_cfg, budget)
        .map_err(|e| RunnerError::Config(format!("commerce client: {e}")))?;
    let mut pos: BTreeMap<String, Arc<dyn PosConnector>> = BTreeMap::new();
    for p in &settings.pos {
        match p {
            crate::config::PosSettings::Square {
                id,
                base_url,
                token,
                webhook_signature_key,
                notification_url,
            } => {
                let cid = crate::pos::ConnectorId::parse(id)
                    .map_err(|e| RunnerError::Config(format!("pos '{id}': {e}")))?;
                let mut cfg = crate::pos::square::SquareConfig::new(
                    cid,
                    base_url.clone(),
                    crate::pos::square::Secret::new(token.expose()),
                );
                if let (Some(key), Some(url)) = (webhook_signature_key, notification_url) {
                    cfg.webhook = Some(crate::pos::square::WebhookConfig {
                        notification_url: url.clone(),
                        signature_key: crate::pos::square::Secret::new(key.expose()),
                    });
                }
                cfg.locations = settings
                    .stores
                    .iter()
                    .filter(|s| &s.pos == id)
                    .filter_map(|s| tillbridge_core::pos::PosLocationId::parse(&s.location).ok())
                    .collect();
                let has_webhook = cfg.webhook.is_some();
                let connector = Arc::new(
                    crate::pos::square::SquareConnector::new(cfg)
                        .map_err(|e| RunnerError::Config(format!("pos '{id}': {e}")))?,
                );
                if has_webhook {
                    square_webhooks.push((id.clone(), connector.clone()));
                }
                pos.insert(id.clone(), connector);
            }
            crate::config::PosSettings::FileDrop {
                id,
                folder,
                settle_ms,
                require_ok_marker,
            } => {
                let cid = crate::pos::ConnectorId::parse(id)
                    .map_err(|e| RunnerError::Config(format!("pos '{id}': {e}")))?;
                // The files name stores by their `[[stores]]` location code.
                let mut table = tillbridge_core::mapping::MappingTable::default();
                for (i, s) in settings
                    .stores
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| &s.pos == id)
                {
                    let bad = |what: &str, e: &dyn std::fmt::Display| {
                        RunnerError::Config(format!("stores[{i}].{what}: {e}"))
                    };
                    table
                        .locations
                        .push(tillbridge_core::mapping::LocationMapping {
                            pos_location: tillbridge_core::pos::PosLocationId::parse(&s.location)
                                .map_err(|e| bad("location", &e))?,
                            store: tillbridge_core::pos::StoreCode::parse(&s.location)
                                .map_err(|e| bad("location", &e))?,
                            source: SourceCode::parse(&s.source).map_err(|e| bad("source", &e))?,
                        });
                }
                let index = tillbridge_core::mapping::MappingIndex::build(&table).map_err(|p| {
                    RunnerError::Config(format!(
                        "pos '{id}': {}",
                        p.iter()
                            .map(|p| p.message.clone())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
                let mut cfg = crate::pos::filedrop::FileDropConfig::new(cid, folder, index);
                cfg.items_are_skus = true;
                cfg.settle = Duration::from_millis(*settle_ms);
                cfg.require_ok_marker = *require_ok_marker;
                let connector = crate::pos::filedrop::FileDropConnector::open(cfg)
                    .map_err(|e| RunnerError::Config(format!("pos '{id}': {e}")))?;
                pos.insert(id.clone(), Arc::new(connector));
            }
        }
    }
    Ok(Parts {
        store,
        commerce,
        pos,
        square_webhooks,
    })
}
