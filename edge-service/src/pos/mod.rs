//! Where POS data enters Tillbridge: the [`PosConnector`] trait, its batches and cursors,
//! and the durable [`PosInbox`].
//!
//! # The contract
//!
//! A connector reads one *feed* ([`Feed`]: stock snapshot, stock changes, sales) from a
//! cursor and returns a [`PosBatch`]: the records, the record-level errors (a malformed record
//! is named, never dropped silently, and never stops the good records), and the cursor that
//! follows the batch. The caller then
//!
//! 1. stores the batch durably ([`PosInbox::store_batch`] returns only after an fsync'd
//!    write; a batch already stored, same [`BatchId`], is acknowledged, not stored twice),
//! 2. **then** commits the cursor ([`PosInbox::commit_cursor`] names the batch it follows and
//!    refuses a cursor whose batch is not stored),
//! 3. then tells the connector ([`PosConnector::after_commit`]) so it can tidy up (the file
//!    drop moves the file aside).
//!
//! A crash between any two steps re-delivers the batch on restart (the old cursor is still the
//! committed one); the inbox recognises it by its content-derived [`BatchId`], so nothing is
//! lost and nothing is stored twice. [`poll_once`] is exactly these three steps.
//!
//! # Why boxed futures
//!
//! The edge service holds its connectors as `Box<dyn PosConnector>` (one per configured
//! POS, chosen at run time from configuration). `async fn` in traits is not object-safe, so
//! the async methods return [`BoxFuture`] (a pinned, boxed, `Send` future). One allocation
//! per call is nothing next to an HTTP request or a file read. [`PosInbox`] does the same so
//! the file, SQLite and PostgreSQL inboxes are interchangeable at run time.

pub mod filedrop;
pub mod inbox;
pub mod square;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tillbridge_core::pos::{
    FulfilmentRef, FulfilmentRequest, FulfilmentState, FulfilmentStatus, PosLocation,
    PosLocationId, PosTransaction, PosTransactionId, PosVariation, PosVariationId, StockLevel,
    Timestamp,
};

pub use inbox::{FileInbox, InboxError, PosInbox, StoreOutcome, StoredBatch};

/// A pinned, boxed, `Send` future: what the object-safe async methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// ---------------------------------------------------------------------------------------------
// identity, feeds, cursors

/// The configured name of one connector instance (`square-main`, `filedrop-leeds`): 1–64
/// ASCII letters, digits, `-`, `_`. It names cursor files, so it must be path-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectorId(String);

impl ConnectorId {
    pub fn parse(text: &str) -> Result<Self, PosError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(PosError::Config {
                message: format!(
                    "connector id {text:?} must be 1-64 ASCII letters, digits, '-' or '_'"
                ),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ConnectorId {
    type Error = PosError;
    fn try_from(text: String) -> Result<Self, PosError> {
        Self::parse(&text)
    }
}

impl From<ConnectorId> for String {
    fn from(id: ConnectorId) -> String {
        id.0
    }
}

/// One cursored stream of POS records. Each feed has its own cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// Full stock levels for the covered locations (start-up, reconciliation, after a gap).
    StockSnapshot,
    /// Stock levels that changed since the cursor (still absolute levels).
    StockChanges,
    /// Sales and returns created or updated since the cursor.
    Sales,
}

impl Feed {
    pub const ALL: [Feed; 3] = [Feed::StockSnapshot, Feed::StockChanges, Feed::Sales];

    pub fn as_str(self) -> &'static str {
        match self {
            Feed::StockSnapshot => "stock_snapshot",
            Feed::StockChanges => "stock_changes",
            Feed::Sales => "sales",
        }
    }
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position in a feed, opaque to everyone but the connector that made it.
///
/// Connectors put whatever they need inside (Square: an `updated_at` high-water mark and a
/// page token; the file drop: the last file's name and hash) — usually JSON through
/// [`PosCursor::encode`] / [`PosCursor::decode`]. The empty cursor, [`PosCursor::start`],
/// means "from the beginning".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PosCursor(String);

impl PosCursor {
    /// The beginning of a feed.
    pub fn start() -> Self {
        Self(String::new())
    }

    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }

    /// Wrap a connector's own cursor text.
    pub fn from_opaque(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor holding `state` as JSON.
    pub fn encode<T: Serialize>(state: &T) -> Result<Self, PosError> {
        serde_json::to_string(state)
            .map(Self)
            .map_err(|e| PosError::Internal {
                message: format!("cursor encoding failed: {e}"),
            })
    }

    /// The state inside a cursor made by [`PosCursor::encode`]; `None` for the start cursor.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, PosError> {
        if self.is_start() {
            return Ok(None);
        }
        serde_json::from_str(&self.0)
            .map(Some)
            .map_err(|e| PosError::InvalidCursor {
                message: format!("cursor {:?} is not ours: {e}", self.0),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// capabilities

/// What a connector can do. Calling an operation it does not declare returns
/// [`PosError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub stock_snapshot: bool,
    pub stock_changes: bool,
    pub sales: bool,
    /// Can create fulfilment requests (send a Commerce order to a store).
    pub fulfilment_requests: bool,
    /// Can report a fulfilment's status.
    pub fulfilment_status: bool,
    /// Receives webhooks (and can verify them).
    pub webhooks: bool,
}

impl Capabilities {
    pub fn supports(&self, feed: Feed) -> bool {
        match feed {
            Feed::StockSnapshot => self.stock_snapshot,
            Feed::StockChanges => self.stock_changes,
            Feed::Sales => self.sales,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// batches and record errors

/// The records a batch carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchPayload {
    /// A full snapshot (or one page of it) for `locations` as of `as_of`: a variation at a
    /// covered location that is absent from the whole snapshot has no stock there.
    StockSnapshot {
        as_of: Timestamp,
        locations: Vec<PosLocationId>,
        levels: Vec<StockLevel>,
    },
    /// Levels that changed (absolute values).
    StockChanges { levels: Vec<StockLevel> },
    /// Sales and returns, new or updated.
    Sales { transactions: Vec<PosTransaction> },
}

impl BatchPayload {
    /// How many records (levels or transactions) the payload holds.
    pub fn len(&self) -> usize {
        match self {
            BatchPayload::StockSnapshot { levels, .. } | BatchPayload::StockChanges { levels } => {
                levels.len()
            }
            BatchPayload::Sales { transactions } => transactions.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty payload of the kind a feed carries.
    pub fn empty(feed: Feed, as_of: Timestamp) -> Self {
        match feed {
            Feed::StockSnapshot => BatchPayload::StockSnapshot {
                as_of,
                locations: Vec::new(),
                levels: Vec::new(),
            },
            Feed::StockChanges => BatchPayload::StockChanges { levels: Vec::new() },
            Feed::Sales => BatchPayload::Sales {
                transactions: Vec::new(),
            },
        }
    }
}

/// A batch's identity: SHA-256 (hex) over its connector, feed, source and content. The same
/// content re-delivered after a crash has the same id; different content never does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(String);

impl BatchId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a connector returns for one read of one feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosBatch {
    pub id: BatchId,
    pub connector: ConnectorId,
    pub feed: Feed,
    /// Where the records came from, for people: a file name, an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub payload: BatchPayload,
    /// Records that could not be read, each named; the good records are in `payload`.
    pub record_errors: Vec<RecordError>,
    /// The cursor after this batch: commit it once the batch is stored.
    pub next_cursor: PosCursor,
    /// More data is ready now (read again without waiting).
    pub has_more: bool,
}

#[derive(Serialize)]
struct IdInput<'a> {
    connector: &'a ConnectorId,
    feed: Feed,
    source: &'a Option<String>,
    payload: &'a BatchPayload,
    record_errors: &'a [RecordError],
}

impl PosBatch {
    /// Build a batch; its id is derived from everything but the cursor and `has_more` (a
    /// re-read can return a different page token for the same records).
    pub fn new(
        connector: ConnectorId,
        feed: Feed,
        source: Option<String>,
        payload: BatchPayload,
        record_errors: Vec<RecordError>,
        next_cursor: PosCursor,
        has_more: bool,
    ) -> Self {
        let id = Self::compute_id(&connector, feed, &source, &payload, &record_errors);
        Self {
            id,
            connector,
            feed,
            source,
            payload,
            record_errors,
            next_cursor,
            has_more,
        }
    }

    fn compute_id(
        connector: &ConnectorId,
        feed: Feed,
        source: &Option<String>,
        payload: &BatchPayload,
        record_errors: &[RecordError],
    ) -> BatchId {
        let input = IdInput {
            connector,
            feed,
            source,
            payload,
            record_errors,
        };
        // Serialising plain structs and vectors cannot fail; an empty digest input would
        // still give a stable id.
        let bytes = serde_json::to_vec(&input).unwrap_or_default();
        BatchId(hex(&Sha256::digest(&bytes)))
    }

    /// True when the stored id matches the content (a stored batch was not altered).
    pub fn id_matches_content(&self) -> bool {
        Self::compute_id(
            &self.connector,
            self.feed,
            &self.source,
            &self.payload,
            &self.record_errors,
        ) == self.id
    }

    /// Nothing to store: no records and no errors.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty() && self.record_errors.is_empty()
    }
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// What kind of record-level problem; stable, machine-readable (`snake_case` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordErrorKind {
    /// A required field is absent or empty.
    MissingField,
    /// A number that does not parse (or has more decimals than allowed).
    BadNumber,
    /// A stock level below zero where the feed forbids it.
    NegativeStock,
    /// A SKU / item code the mapping does not know.
    UnknownSku,
    /// A store code the mapping does not know.
    UnknownStore,
    /// A POS location the mapping does not know.
    UnknownLocation,
    /// A date or time that does not parse.
    BadTimestamp,
    /// An identifier that is not well formed (empty, too long, bad characters).
    BadIdentifier,
    /// A currency code that is not ISO 4217, or a different currency than expected.
    BadCurrency,
    /// A value outside its allowed set (e.g. a transaction kind other than sale/return).
    BadValue,
    /// The record disagrees with itself or its siblings (tenders ≠ totals, one transaction
    /// split across stores, the same item twice in one snapshot).
    Inconsistent,
    /// A record spread over several rows (a transaction's lines) held back whole because
    /// one of its rows is bad; that row has its own error.
    HeldBack,
    /// The whole file / payload could not be read (encoding, header, empty).
    Unreadable,
    /// The file matched no configured kind.
    UnknownFileKind,
}

/// One record that could not be used, named precisely enough to find and fix it.
///
/// The optional texts are `Box<str>` to keep the type under clippy's `result_large_err`
/// limit, so functions can return `Result<_, RecordError>` directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    pub kind: RecordErrorKind,
    /// The file name or endpoint the record came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<str>>,
    /// The record's identity where known (a transaction id, a Square object id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Box<str>>,
    /// Row in the file, counting the header as row 1 (what a spreadsheet shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// Column in the file, 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The field: a column header, or a JSON path for API payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<Box<str>>,
    /// The offending value (cut to 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<str>>,
    /// A sentence a person can act on.
    pub message: String,
}

impl RecordError {
    /// A record error with only a kind and a message; fill the rest with the builders.
    pub fn new(kind: RecordErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            source: None,
            record: None,
            row: None,
            column: None,
            field: None,
            value: None,
            message: message.into(),
        }
    }

    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into().into_boxed_str());
        self
    }

    pub fn record(mut self, record: impl Into<String>) -> Self {
        self.record = Some(record.into().into_boxed_str());
        self
    }

    pub fn at(mut self, row: u64, column: Option<u32>) -> Self {
        self.row = Some(row);
        self.column = column;
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into().into_boxed_str());
        self
    }

    pub fn value(mut self, value: &str) -> Self {
        self.value = Some(value.chars().take(100).collect::<String>().into_boxed_str());
        self
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.source {
            write!(f, "{s}")?;
        }
        if let Some(r) = self.row {
            write!(f, " row {r}")?;
        }
        if let Some(c) = self.column {
            write!(f, " column {c}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        if let Some(rec) = &self.record {
            write!(f, " [{rec}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// errors

/// Whether retrying the same call later can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Back off and retry (rate limits, outages, timeouts, I/O hiccups).
    Retriable,
    /// Retrying the same call will fail again: fix configuration, credentials or data.
    Permanent,
}

/// A connector failure for a whole call (record-level problems are [`RecordError`]s inside a
/// batch instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosError {
    #[error("rate limited by the POS{}", retry_after.map(|d| format!(" (retry after {} ms)", d.as_millis())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("POS unavailable: {message}")]
    Unavailable { message: String },
    #[error("timed out: {message}")]
    Timeout { message: String },
    #[error("I/O error: {message}")]
    Io { message: String },
    #[error("POS rejected our credentials: {message} (re-authorise this connector)")]
    Auth { message: String },
    #[error("POS rejected the request: {message}")]
    InvalidRequest { message: String },
    #[error("conflict (stale version): {message} (re-read and retry)")]
    Conflict { message: String },
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("invalid cursor: {message} (start the feed again from a snapshot)")]
    InvalidCursor { message: String },
    #[error("{operation} is not supported by this connector")]
    Unsupported { operation: &'static str },
    #[error("configuration: {message}")]
    Config { message: String },
    #[error("unreadable POS response: {message}")]
    Malformed { message: String },
    #[error("internal: {message}")]
    Internal { message: String },
}

impl PosError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PosError::RateLimited { .. }
            | PosError::Unavailable { .. }
            | PosError::Timeout { .. }
            | PosError::Io { .. }
            | PosError::Conflict { .. } => ErrorClass::Retriable,
            PosError::Auth { .. }
            | PosError::InvalidRequest { .. }
            | PosError::NotFound { .. }
            | PosError::InvalidCursor { .. }
            | PosError::Unsupported { .. }
            | PosError::Config { .. }
            | PosError::Malformed { .. }
            | PosError::Internal { .. } => ErrorClass::Permanent,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.class() == ErrorClass::Retriable
    }

    /// How long the POS asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PosError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    pub fn io(context: &str, err: &std::io::Error) -> Self {
        PosError::Io {
            message: format!("{context}: {err}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// webhooks

/// An incoming webhook delivery, as received (raw body bytes: signatures cover them exactly).
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The notification URL exactly as registered with the POS (not as seen behind a proxy).
    pub url: &'a str,
    /// Header names and values as received.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl WebhookRequest<'_> {
    /// A header's value, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a verified webhook says happened. Webhooks are hints: the caller reacts by reading
/// the matching feed early, never by applying the payload as truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hint", rename_all = "snake_case")]
pub enum HintKind {
    StockChanged {
        locations: Vec<PosLocationId>,
        variations: Vec<PosVariationId>,
    },
    SalesChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transaction: Option<PosTransactionId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<PosLocationId>,
    },
    FulfilmentChanged {
        external_order_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_state: Option<FulfilmentState>,
    },
    CatalogChanged,
    LocationsChanged,
    /// A verified event we have no use for (kept for the log).
    Other {
        event_type: String,
    },
}

/// One hint from a verified delivery, with the POS's event id for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookHint {
    pub event_id: String,
    pub kind: HintKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

/// Why a delivery was refused (answer 4xx, log, never process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WebhookRejection {
    MissingSignature,
    BadSignature,
    /// Signed correctly but the body is not an event we can read.
    Malformed {
        message: String,
    },
}

/// The outcome of verifying one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum WebhookVerdict {
    Verified { hints: Vec<WebhookHint> },
    Rejected { rejection: WebhookRejection },
}

// ---------------------------------------------------------------------------------------------
// the connector

/// What a fulfilment request became in the POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentReceipt {
    pub reference: FulfilmentRef,
    pub state: FulfilmentState,
    pub version: i64,
}

/// A catalog read: the variations, and the objects that could not be read.
pub type CatalogRead = (Vec<PosVariation>, Vec<RecordError>);

/// A POS, as Tillbridge reads it. See the module documentation for the cursor contract.
///
/// Feed methods take the last **committed** cursor ([`PosCursor::start`] the first time) and
/// return one batch; calling again with the same cursor returns the same records (or more, if
/// more arrived), which is what makes re-delivery after a crash safe. A feed method never
/// skips a record because of another record's error: bad records become [`RecordError`]s in
/// the batch. Operations the connector does not declare in [`Capabilities`] return
/// [`PosError::Unsupported`] (the default bodies do exactly that).
pub trait PosConnector: Send + Sync + fmt::Debug {
    /// This instance's configured name.
    fn id(&self) -> &ConnectorId;

    /// What this connector can do.
    fn capabilities(&self) -> Capabilities;

    /// The POS's locations, inactive ones included.
    fn locations(&self) -> BoxFuture<'_, Result<Vec<PosLocation>, PosError>>;

    /// The next part of a full stock snapshot. A snapshot is the run of batches from a start
    /// cursor to the first with `has_more == false`.
    fn stock_snapshot<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        let _ = cursor;
        unsupported("stock_snapshot")
    }

    /// Stock levels changed since `cursor` (absolute levels).
    fn stock_changes<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        let _ = cursor;
        unsupported("stock_changes")
    }

    /// Sales and returns created or updated since `cursor`.
    fn sales<'a>(&'a self, cursor: &'a PosCursor) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        let _ = cursor;
        unsupported("sales")
    }

    /// Send a Commerce order to a store. Idempotent on `request.id`: submitting the same
    /// request again returns the first receipt, never a second POS order.
    fn create_fulfilment<'a>(
        &'a self,
        request: &'a FulfilmentRequest,
    ) -> BoxFuture<'a, Result<FulfilmentReceipt, PosError>> {
        let _ = request;
        unsupported("create_fulfilment")
    }

    /// A fulfilment's current status in the POS.
    fn fulfilment_status<'a>(
        &'a self,
        reference: &'a FulfilmentRef,
    ) -> BoxFuture<'a, Result<FulfilmentStatus, PosError>> {
        let _ = reference;
        unsupported("fulfilment_status")
    }

    /// The POS's item variations with their SKUs, for the SKU mapping (stock counts and order
    /// lines name variations, not SKUs). Malformed catalog objects come back as record errors.
    /// Connectors whose records carry the SKU themselves (the file drop) return an empty list.
    fn catalog(&self) -> BoxFuture<'_, Result<CatalogRead, PosError>> {
        Box::pin(async { Ok((Vec::new(), Vec::new())) })
    }

    /// Withdraw a fulfilment the store has not completed (Commerce cancelled the order).
    /// Idempotent: withdrawing a cancelled fulfilment returns its status. A fulfilment the
    /// store already completed cannot be withdrawn ([`PosError::InvalidRequest`]).
    fn cancel_fulfilment<'a>(
        &'a self,
        reference: &'a FulfilmentRef,
    ) -> BoxFuture<'a, Result<FulfilmentStatus, PosError>> {
        let _ = reference;
        unsupported("cancel_fulfilment")
    }

    /// Verify a webhook delivery's signature and read its hints. A bad or missing signature
    /// is `Ok(Rejected)`; `Err` means the connector cannot verify at all (no webhooks, no
    /// key configured).
    fn verify_webhook(&self, request: &WebhookRequest<'_>) -> Result<WebhookVerdict, PosError> {
        let _ = request;
        Err(PosError::Unsupported {
            operation: "verify_webhook",
        })
    }

    /// Called after the caller committed `cursor` for `feed` (the batch is stored). The file
    /// drop moves the file aside here; API connectors usually do nothing.
    fn after_commit<'a>(
        &'a self,
        feed: Feed,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<(), PosError>> {
        let _ = (feed, cursor);
        Box::pin(async { Ok(()) })
    }

    /// Read `feed` from `cursor` (dispatches to the feed's method).
    fn fetch<'a>(
        &'a self,
        feed: Feed,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        match feed {
            Feed::StockSnapshot => self.stock_snapshot(cursor),
            Feed::StockChanges => self.stock_changes(cursor),
            Feed::Sales => self.sales(cursor),
        }
    }
}

fn unsupported<'a, T: Send + 'a>(operation: &'static str) -> BoxFuture<'a, Result<T, PosError>> {
    Box::pin(async move { Err(PosError::Unsupported { operation }) })
}

// ---------------------------------------------------------------------------------------------
// one poll, the contract in code

/// What one [`poll_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub feed: Feed,
    pub batch: BatchId,
    pub source: Option<String>,
    /// Records in the batch.
    pub records: usize,
    pub record_errors: usize,
    /// Whether the inbox stored it now or already had it (a re-delivery); `None` when the
    /// batch was empty and the cursor did not move (nothing stored, nothing committed).
    pub stored: Option<StoreOutcome>,
    pub has_more: bool,
}

/// Why a poll stopped. The committed cursor is unchanged unless the failure came after the
/// commit (`AfterCommit`), in which case the batch is safe and the next poll finishes the job.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("reading the POS: {0}")]
    Connector(#[source] PosError),
    #[error("storing the batch: {0}")]
    Inbox(#[source] InboxError),
    #[error("tidying up after the commit (the batch is stored): {0}")]
    AfterCommit(#[source] PosError),
}

/// Read one batch of `feed` from the committed cursor, store it, commit the cursor, tell the
/// connector. See the module documentation.
pub async fn poll_once(
    connector: &dyn PosConnector,
    inbox: &dyn PosInbox,
    feed: Feed,
) -> Result<PollReport, PollError> {
    let cursor = inbox
        .load_cursor(connector.id(), feed)
        .await
        .map_err(PollError::Inbox)?
        .unwrap_or_default();
    let batch = connector
        .fetch(feed, &cursor)
        .await
        .map_err(PollError::Connector)?;
    // Nothing read and the cursor did not move: nothing to store or commit.
    let stored = if batch.is_empty() && batch.next_cursor == cursor {
        None
    } else {
        let stored = inbox.store_batch(&batch).await.map_err(PollError::Inbox)?;
        inbox
            .commit_cursor(connector.id(), feed, &batch.next_cursor, &batch.id)
            .await
            .map_err(PollError::Inbox)?;
        connector
            .after_commit(feed, &batch.next_cursor)
            .await
            .map_err(PollError::AfterCommit)?;
        Some(stored)
    };
    Ok(PollReport {
        feed,
        batch: batch.id.clone(),
        source: batch.source.clone(),
        records: batch.payload.len(),
        record_errors: batch.record_errors.len(),
        stored,
        has_more: batch.has_more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> ConnectorId {
        ConnectorId::parse("test-1").unwrap()
    }

    #[test]
    fn batch_id_depends_on_content_not_on_cursor() {
        let a = PosBatch::new(
            cid(),
            Feed::Sales,
            Some("f.csv".into()),
            BatchPayload::empty(Feed::Sales, Timestamp::EPOCH),
            vec![RecordError::new(RecordErrorKind::BadNumber, "x")],
            PosCursor::from_opaque("c1"),
            false,
        );
        let b = PosBatch::new(
            cid(),
            Feed::Sales,
            Some("f.csv".into()),
            BatchPayload::empty(Feed::Sales, Timestamp::EPOCH),
            vec![RecordError::new(RecordErrorKind::BadNumber, "x")],
            PosCursor::from_opaque("c2"),
            true,
        );
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.as_str().len(), 64);
        let c = PosBatch::new(
            cid(),
            Feed::Sales,
            Some("g.csv".into()),
            BatchPayload::empty(Feed::Sales, Timestamp::EPOCH),
            vec![RecordError::new(RecordErrorKind::BadNumber, "x")],
            PosCursor::from_opaque("c1"),
            false,
        );
        assert_ne!(a.id, c.id);
        assert!(a.id_matches_content());
    }

    #[test]
    fn cursor_round_trips_state_and_rejects_foreign_text() {
        let c = PosCursor::encode(&("file.csv", 3u32)).unwrap();
        assert_eq!(
            c.decode::<(String, u32)>().unwrap(),
            Some(("file.csv".into(), 3))
        );
        assert_eq!(PosCursor::start().decode::<(String, u32)>().unwrap(), None);
        let bad = PosCursor::from_opaque("not json").decode::<(String, u32)>();
        assert!(matches!(bad, Err(PosError::InvalidCursor { .. })));
    }

    #[test]
    fn errors_are_classified() {
        assert!(PosError::RateLimited { retry_after: None }.is_retriable());
        assert!(
            PosError::Io {
                message: "x".into()
            }
            .is_retriable()
        );
        assert!(
            !PosError::Auth {
                message: "x".into()
            }
            .is_retriable()
        );
        assert!(!PosError::Unsupported { operation: "x" }.is_retriable());
        assert_eq!(
            PosError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
            .retry_after(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn connector_id_is_path_safe() {
        assert!(ConnectorId::parse("square-main_1").is_ok());
        assert!(ConnectorId::parse("../x").is_err());
        assert!(ConnectorId::parse("").is_err());
    }

    #[test]
    fn webhook_header_lookup_ignores_case() {
        let headers = vec![("X-Square-HmacSha256-Signature".to_owned(), "abc".to_owned())];
        let req = WebhookRequest {
            url: "https://x",
            headers: &headers,
            body: b"{}",
        };
        assert_eq!(req.header("x-square-hmacsha256-signature"), Some("abc"));
        assert_eq!(req.header("other"), None);
    }
}
