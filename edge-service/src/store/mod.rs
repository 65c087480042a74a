//! Durable storage of the edge service: every inbound record before it is acted on, every
//! outbound command as an outbox row with its idempotency key and attempt history, every
//! record's life (received → planned → sent → confirmed → verified, or failed / stalled with a
//! reason), open and resolved exceptions, feed cursors, and engine snapshots.
//!
//! [`Store`] is the contract; `sql` implements it with diesel on SQLite (the default: one
//! bundled file, WAL) or PostgreSQL (selected by a `postgres://` URL, for several replicas).
//! The engine (`core::sync`) never sees the database: the runner stores each input first, hands
//! it to the engine, and persists the engine's journal and commands.
//!
//! The trait is synchronous: diesel is, and each call is one short transaction. Async callers
//! run it on a blocking thread (`tokio::task::spawn_blocking`) when it matters.

mod pos_records;
mod schema;
pub mod sql;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{Command, ExceptionEntry, Input, Journal, Reason, RecordState};

pub use sql::SqlStore;

/// The id of a stored inbound record. The engine sees it as text (`RecordId::to_string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId(pub i64);

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for RecordId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(RecordId)
    }
}

/// What an inbound record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A POS stock figure.
    PosStock,
    /// A POS sale or return line (velocity).
    PosSale,
    /// A web order's goods returned at a store.
    PosReturn,
    /// A POS fulfilment update.
    Fulfilment,
    /// A Commerce order as polled.
    CommerceOrder,
    /// A webhook as received (signature already checked).
    Webhook,
    /// The answer to an outbound command (so a replay sees exactly what the engine saw).
    CommandResult,
    /// A person's action through the API (retry or resolve an exception).
    Operator,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PosStock => "pos_stock",
            Self::PosSale => "pos_sale",
            Self::PosReturn => "pos_return",
            Self::Fulfilment => "fulfilment",
            Self::CommerceOrder => "commerce_order",
            Self::Webhook => "webhook",
            Self::CommandResult => "command_result",
            Self::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::PosStock,
            Self::PosSale,
            Self::PosReturn,
            Self::Fulfilment,
            Self::CommerceOrder,
            Self::Webhook,
            Self::CommandResult,
            Self::Operator,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An inbound record to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    pub kind: RecordKind,
    /// Where it came from: a connector id (`square:main`, `filedrop:leeds`), `commerce`, `api`.
    pub origin: String,
    /// The sender's own id, when it has one (Square event id, order increment id + updated_at,
    /// file name + row). A second record with the same (kind, origin, external_id) is a
    /// duplicate: it is not stored again.
    pub external_id: Option<String>,
    /// The record as the engine will receive it (a `core::sync::Input` in JSON), or the raw
    /// payload for webhooks. The id is not known before the insert: leave the input's `record`
    /// field empty; [`RecordRow::input`] fills it in.
    pub payload: Value,
    pub received_at: Timestamp,
}

/// A stored inbound record with where it is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRow {
    pub id: RecordId,
    pub kind: RecordKind,
    pub origin: String,
    pub external_id: Option<String>,
    pub payload: Value,
    pub received_at: Timestamp,
    pub state: RecordState,
    /// The last sentence about it (what happened, or what to do).
    pub detail: String,
    pub updated_at: Timestamp,
    /// The newest open exception that names this record, and its machine-readable reason
    /// (a failed or stalled record usually has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

impl RecordRow {
    /// The payload as the engine's input, its `record` set to this row's id. `Ok(None)` when
    /// the payload is not an engine input (a raw webhook, a POS record the mapping does not
    /// cover); an error when it says it is one (`"input"` key) but does not read as one.
    pub fn input(&self) -> Result<Option<Input>, StoreError> {
        if self.payload.get("input").is_none() {
            return Ok(None);
        }
        let mut input: Input =
            serde_json::from_value(self.payload.clone()).map_err(|e| StoreError::Corrupt {
                what: format!("record {} payload", self.id),
                why: e.to_string(),
            })?;
        match &mut input {
            Input::PosStock { record, .. }
            | Input::PosSale { record, .. }
            | Input::CommerceOrder { record, .. }
            | Input::Fulfilment { record, .. }
            | Input::PosReturn { record, .. } => *record = self.id.to_string(),
            Input::Result { .. }
            | Input::Salable { .. }
            | Input::SourceItems { .. }
            | Input::RetryException { .. }
            | Input::ResolveException { .. } => {}
        }
        Ok(Some(input))
    }
}

/// One step of a record's or command's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifeEvent {
    pub state: RecordState,
    pub detail: String,
    pub at: Timestamp,
}

/// An outbound command (outbox row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub command_id: u64,
    /// Unique: executing the same key twice must not act twice.
    pub idempotency_key: String,
    /// `push_source_items`, `create_shipment`, ...
    pub kind: String,
    /// The `core::sync::Command` in JSON.
    pub payload: Value,
    pub state: RecordState,
    pub attempts: u32,
    pub detail: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An exception, open or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionRow {
    #[serde(flatten)]
    pub entry: ExceptionEntry,
    pub resolved_at: Option<Timestamp>,
    pub resolution: Option<String>,
}

/// Filters for record listings (all optional; newest first). A `limit` of 0 means
/// [`DEFAULT_LIMIT`]; limits above [`MAX_LIMIT`] are capped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordFilter {
    pub kind: Option<RecordKind>,
    pub state: Option<RecordState>,
    /// Text the payload, detail or external id contains (a SKU, an order number), ignoring
    /// ASCII case. `%` and `_` are plain characters.
    pub contains: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// Page size when a listing asks for 0.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a listing returns.
pub const MAX_LIMIT: u32 = 1000;

/// A page of results and the total count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Storage errors. A store that cannot write must stop the service from acting.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("bad database URL '{0}': use a file path, sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("stored data is unreadable ({what}): {why}")]
    Corrupt { what: String, why: String },
    /// A command with a different id already holds this idempotency key: executing it would
    /// act twice. The runner must not execute `command`; `existing` is the one to follow.
    #[error(
        "command {command}: idempotency key '{key}' already belongs to command {existing} (not executed twice; follow command {existing})"
    )]
    DuplicateKey {
        key: String,
        command: u64,
        existing: u64,
    },
    /// The command id is stored with another idempotency key (the engine reused an id, e.g.
    /// after restarting from an older snapshot). Not executed; the stored command is kept.
    #[error(
        "command {command} (key '{key}') was not stored: id {command} already holds key '{stored_key}'"
    )]
    CommandIdTaken {
        command: u64,
        key: String,
        stored_key: String,
    },
}

/// The storage contract.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Store an inbound record durably. Returns its id and whether it is new (`false`: a
    /// duplicate of an earlier record with the same kind, origin and external id, whose id is
    /// returned).
    fn insert_record(&self, record: &NewRecord) -> Result<(RecordId, bool), StoreError>;

    /// Persist what the engine wrote in its journal: record and command states (with history),
    /// exceptions raised and resolved, latency samples. One transaction. A command's state may
    /// be journalled before the command is stored (its plan): it is kept in the history and
    /// the row starts from it; a `planned` entry never moves a command back from `sent` or
    /// later. Entries about records this store does not hold (not a stored id) are ignored.
    fn apply_journal(&self, entries: &[Journal], now: Timestamp) -> Result<(), StoreError>;

    /// Store a command the engine emitted, right before it is executed: the row is `sent`
    /// with "attempt N" in its history. Re-storing the same command id with a higher attempt
    /// records the new attempt; the same attempt again changes nothing. A different command id
    /// with a key already stored is refused ([`StoreError::DuplicateKey`]), and so is a
    /// stored id with another key ([`StoreError::CommandIdTaken`]): the caller must not execute
    /// a refused command.
    fn put_command(&self, command: &Command, now: Timestamp) -> Result<(), StoreError>;

    fn record(&self, id: RecordId) -> Result<Option<RecordRow>, StoreError>;
    fn record_history(&self, id: RecordId) -> Result<Vec<LifeEvent>, StoreError>;
    fn records(&self, filter: &RecordFilter) -> Result<Page<RecordRow>, StoreError>;
    /// Inbound records after `after` in id order (replay after a restart).
    fn records_after(&self, after: RecordId, limit: u32) -> Result<Vec<RecordRow>, StoreError>;

    fn command(&self, id: u64) -> Result<Option<OutboxRow>, StoreError>;
    fn command_history(&self, id: u64) -> Result<Vec<LifeEvent>, StoreError>;
    fn commands(
        &self,
        state: Option<RecordState>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<OutboxRow>, StoreError>;

    fn exceptions(
        &self,
        open_only: bool,
        limit: u32,
        offset: u32,
    ) -> Result<Page<ExceptionRow>, StoreError>;

    /// Latency samples (ms) recorded since `since`.
    fn latencies(&self, since: Timestamp) -> Result<Vec<i64>, StoreError>;

    /// A feed cursor (opaque text) by name.
    fn cursor(&self, feed: &str) -> Result<Option<String>, StoreError>;
    fn save_cursor(&self, feed: &str, cursor: &str, now: Timestamp) -> Result<(), StoreError>;

    /// The newest engine snapshot: the engine's JSON and the last record it had seen.
    fn snapshot(&self) -> Result<Option<(String, RecordId)>, StoreError>;
    fn save_snapshot(
        &self,
        engine_json: &str,
        last_record: RecordId,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Counts for `/metrics` and readiness: records by kind and state, commands by state, open
    /// exceptions by reason.
    fn counts(&self) -> Result<Counts, StoreError>;

    /// Take or renew the lease `name` for `holder` until `now + ttl_ms`. True when `holder`
    /// holds it afterwards: it was free, had expired, or was already `holder`'s. Replicas
    /// sharing one PostgreSQL database use it so exactly one runs the engine at a time.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Give the lease up (a clean stop), so a standby takes over at once.
    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// Aggregate counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub records: Vec<(RecordKind, RecordState, u64)>,
    pub commands: Vec<(RecordState, u64)>,
    pub open_exceptions: Vec<(String, u64)>,
}
