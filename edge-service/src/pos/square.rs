//! The Square connector: [`PosConnector`] over Square's REST API (`../shared/specs/square-pos.md`).
//!
//! # Feeds and their cursors
//!
//! - **Stock changes**: `BatchRetrieveInventoryCounts` with `updated_after` and
//!   `states: [IN_STOCK]` for the covered locations. Square pages these **newest first**, so
//!   no page can be checkpointed by time. One *walk* runs from `updated_after = high-water
//!   mark − overlap` to the last page; every page is a batch whose cursor carries Square's page
//!   token and the largest `calculated_at` seen so far, and the high-water mark moves (to that
//!   maximum) only with the batch of the **last** page. A restart from any committed cursor
//!   resumes the walk (or, if Square says the page token expired, re-walks from the same
//!   `updated_after`); counts are absolute, so re-reading one is harmless. The overlap absorbs
//!   equal timestamps (`updated_after` is strict) and Square's eventual consistency.
//! - **Stock snapshot**: the same endpoint without `updated_after`, page by page.
//! - **Sales**: `SearchOrders` filtered and sorted by `updated_at` (ascending), at most 10
//!   locations per request (Square's limit), walked group by group, same high-water-mark rule.
//!   Sales taken offline reach Square up to 72 h late with their original `created_at` but a
//!   new `updated_at`, so polling by `updated_at` finds them; the transaction keeps the
//!   original time as `occurred_at`. Our own fulfilment orders (source name
//!   [`SquareConfig::order_source`]) are not sales and are left out.
//!
//! Malformed records become [`RecordError`]s naming the record, the JSON path and the value;
//! the other records of the page are kept.
//!
//! # Fulfilment
//!
//! [`PosConnector::create_fulfilment`] creates an order with one PICKUP or SHIPMENT fulfilment
//! and pays it with an EXTERNAL payment (Square only shows paid API orders on the till). Both
//! calls carry idempotency keys derived from the request id, so a retry never makes a second
//! order or payment. Status comes back through `RetrieveOrder`. Staff may split the order in
//! Square's seller tools into `ENTRY_LIST` fulfilments and complete them one at a time (a
//! partial shipment): the status then lists each completed one as a [`Parcel`], and the order
//! is completed only when every fulfilment is.
//!
//! # Errors and retries
//!
//! 429 `RATE_LIMITED`, 5xx, timeouts and connection failures are retried with capped
//! exponential backoff and deterministic jitter (a hash of the seed, the request and the
//! attempt), honouring `Retry-After` when Square sends it; other 4xx answers are permanent and
//! carry Square's `errors[].code/field/detail`.
//!
//! # Webhooks
//!
//! [`verify_signature`] checks `x-square-hmacsha256-signature` = base64(HMAC-SHA256(signature
//! key, notification URL + raw body)) in constant time. A verified event only yields hints;
//! [`WebhookIntake`] de-duplicates them by `event_id` and marks feeds for an early poll, and
//! [`serve_webhooks`] answers Square at once (well inside its 10 s).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tillbridge_core::pos::{
    Currency, FulfilmentKind, FulfilmentRef, FulfilmentRequest, FulfilmentState, FulfilmentStatus,
    Money, Parcel, ParcelLine, PosLineId, PosLocation, PosLocationId, PosTaxId, PosTransaction,
    PosTransactionId, PosVariation, PosVariationId, Sku, StockLevel, TaxLine, Tender, TenderKind,
    Timestamp, TransactionKind, TransactionLine, TransactionState,
};

use super::{
    BatchPayload, BoxFuture, Capabilities, ConnectorId, Feed, FulfilmentReceipt, HintKind,
    PosBatch, PosConnector, PosCursor, PosError, RecordError, RecordErrorKind, WebhookHint,
    WebhookRejection, WebhookRequest, WebhookVerdict, hex,
};

/// The API release our emulator and spec copy follow; sent as `Square-Version`.
pub const SQUARE_VERSION: &str = "2025-08-20";

/// Square's production base URL.
pub const PRODUCTION_URL: &str = "https://connect.squareup.com";

/// The webhook signature header.
pub const SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";

/// A credential that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Retry policy for retriable failures (429, 5xx, timeouts, connection errors).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff; doubled per attempt.
    pub base_delay: Duration,
    /// No single wait exceeds this (a longer `Retry-After` is cut to it).
    pub max_delay: Duration,
    /// Seed of the deterministic jitter.
    pub jitter_seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            jitter_seed: 0x5EED,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): `base × 2^(attempt−1)`, capped, times
    /// a jitter factor in [0.5, 1.0) from a hash of the seed, the request and the attempt; a
    /// `Retry-After` replaces it (capped too).
    pub fn delay(&self, attempt: u32, request_no: u64, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let mut h = Sha256::new();
        h.update(self.jitter_seed.to_le_bytes());
        h.update(request_no.to_le_bytes());
        h.update(attempt.to_le_bytes());
        let d = h.finalize();
        let r = u16::from_le_bytes([d[0], d[1]]);
        // factor = 0.5 + r / 2^17, in [0.5, 1.0)
        let nanos = capped.as_nanos();
        let jittered = nanos / 2 + nanos * u128::from(r) / 131_072;
        Duration::from_nanos(u64::try_from(jittered).unwrap_or(u64::MAX))
    }
}

/// Where webhook deliveries are verified against.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The notification URL exactly as registered in the Square subscription.
    pub notification_url: String,
    pub signature_key: Secret,
}

/// How to reach one Square seller.
#[derive(Debug, Clone)]
pub struct SquareConfig {
    pub id: ConnectorId,
    /// `https://connect.squareup.com`, the sandbox, or an emulator.
    pub base_url: String,
    pub access_token: Secret,
    pub square_version: String,
    /// The locations to read; empty means every ACTIVE location at the start of each walk.
    pub locations: Vec<PosLocationId>,
    /// Page size for counts (1–1000).
    pub counts_page_limit: u32,
    /// Page size for SearchOrders (1–1000).
    pub orders_page_limit: u32,
    /// How far before the high-water mark each stock walk starts again.
    pub stock_overlap: Duration,
    /// How far before the high-water mark each sales walk starts again.
    pub sales_overlap: Duration,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub webhook: Option<WebhookConfig>,
    /// `source.name` of the orders we create (and which the sales feed leaves out).
    pub order_source: String,
}

impl SquareConfig {
    pub fn new(id: ConnectorId, base_url: impl Into<String>, access_token: Secret) -> Self {
        Self {
            id,
            base_url: base_url.into(),
            access_token,
            square_version: SQUARE_VERSION.to_owned(),
            locations: Vec::new(),
            counts_page_limit: 1000,
            orders_page_limit: 500,
            stock_overlap: Duration::from_secs(300),
            sales_overlap: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            webhook: None,
            order_source: "Tillbridge".to_owned(),
        }
    }
}

/// One row of Square's inventory change log (for audit: why did a count move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryMovement {
    pub id: String,
    /// `ADJUSTMENT` or `PHYSICAL_COUNT`.
    pub kind: String,
    pub variation: PosVariationId,
    pub location: PosLocationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_state: Option<String>,
    pub to_state: String,
    pub quantity: Decimal,
    /// When it happened at the till (client time; up to 24 h back).
    pub occurred_at: Timestamp,
    /// When Square received it.
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// The Square connector.
#[derive(Debug)]
pub struct SquareConnector {
    config: SquareConfig,
    http: reqwest::Client,
    requests: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// cursors

/// Stock-changes cursor: the committed high-water mark and, mid-walk, the walk's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StockCursor {
    /// Largest `calculated_at` (ms) of all completed walks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hwm: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    walk: Option<Walk>,
}

/// A walk in progress: the request it repeats, Square's page token, the largest time seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Walk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<i64>,
    locations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_seen: Option<i64>,
}

type SalesCursor = StockCursor;

/// Snapshot cursor: the page token of a snapshot in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotCursor {
    locations: Vec<String>,
    page: String,
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Square's error envelope as a readable sentence: `CODE (field): detail; ...`.
fn square_errors(body: &Value) -> (String, Vec<String>) {
    let mut codes = Vec::new();
    let mut parts = Vec::new();
    for e in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let code = e.get("code").and_then(Value::as_str).unwrap_or("UNKNOWN");
        codes.push(code.to_owned());
        let mut s = code.to_owned();
        if let Some(f) = e.get("field").and_then(Value::as_str) {
            s.push_str(&format!(" ({f})"));
        }
        if let Some(d) = e.get("detail").and_then(Value::as_str) {
            s.push_str(&format!(": {d}"));
        }
        parts.push(s);
    }
    (parts.join("; "), codes)
}

/// Classifies a non-2xx answer: what the caller should do about it.
fn classify(status: u16, body: &Value, retry_after: Option<Duration>, what: &str) -> PosError {
    let (message, codes) = square_errors(body);
    let message = if message.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status} {message}")
    };
    match status {
        429 => PosError::RateLimited { retry_after },
        401 | 403 => PosError::Auth { message },
        404 => PosError::NotFound { what: message },
        409 => PosError::Conflict { message },
        408 | 504 => PosError::Timeout { message },
        s if s >= 500 => PosError::Unavailable { message },
        _ if codes.iter().any(|c| c == "INVALID_CURSOR") => PosError::InvalidCursor { message },
        _ if codes.iter().any(|c| c == "RATE_LIMITED") => PosError::RateLimited { retry_after },
        _ => PosError::InvalidRequest { message },
    }
}

fn parse_retry_after(h: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = h?.to_str().ok()?.trim();
    s.parse::<u64>().ok().map(Duration::from_secs)
}

impl SquareConnector {
    pub fn new(config: SquareConfig) -> Result<Self, PosError> {
        if config.base_url.trim().is_empty() {
            return Err(PosError::Config {
                message: "square: base_url is empty".into(),
            });
        }
        for (name, v) in [
            ("counts_page_limit", config.counts_page_limit),
            ("orders_page_limit", config.orders_page_limit),
        ] {
            if !(1..=1000).contains(&v) {
                return Err(PosError::Config {
                    message: format!("square: {name} must be 1-1000, got {v}"),
                });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| PosError::Config {
                message: format!("square: HTTP client: {e}"),
            })?;
        Ok(Self {
            config,
            http,
            requests: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &SquareConfig {
        &self.config
    }

    /// One Square call with retries; returns the JSON body of a 2xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PosError> {
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let what = format!("{method} {path}");
        let request_no = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.config.access_token.expose())
                .header("Square-Version", &self.config.square_version)
                .header("Accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let err = match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let retry_after = parse_retry_after(res.headers().get("retry-after"));
                    let text = res.text().await.map_err(|e| PosError::Io {
                        message: format!("{what}: reading the answer: {e}"),
                    });
                    match text {
                        Ok(text) => {
                            let parsed: Result<Value, _> = serde_json::from_str(&text);
                            if (200..300).contains(&status) {
                                return parsed.map_err(|e| PosError::Malformed {
                                    message: format!("{what}: answer is not JSON: {e}"),
                                });
                            }
                            classify(status, &parsed.unwrap_or(Value::Null), retry_after, &what)
                        }
                        Err(e) => e,
                    }
                }
                Err(e) if e.is_timeout() => PosError::Timeout {
                    message: format!("{what}: {e}"),
                },
                Err(e) => PosError::Unavailable {
                    message: format!("{what}: {e}"),
                },
            };
            if !err.is_retriable()
                || matches!(err, PosError::Conflict { .. })
                || attempt >= self.config.retry.max_attempts
            {
                return Err(err);
            }
            let wait = self
                .config
                .retry
                .delay(attempt, request_no, err.retry_after());
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, PosError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, PosError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The covered location ids: configured, or every ACTIVE location now.
    async fn covered_locations(&self) -> Result<Vec<String>, PosError> {
        if !self.config.locations.is_empty() {
            return Ok(self
                .config
                .locations
                .iter()
                .map(|l| l.as_str().to_owned())
                .collect());
        }
        let locs = self.fetch_locations().await?;
        Ok(locs
            .into_iter()
            .filter(|l| l.active)
            .map(|l| l.id.as_str().to_owned())
            .collect())
    }

    async fn fetch_locations(&self) -> Result<Vec<PosLocation>, PosError> {
        let body = self.get("/v2/locations").await?;
        let mut out = Vec::new();
        for l in body
            .get("locations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = l
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| PosLocationId::parse(s).ok())
            else {
                continue;
            };
            out.push(PosLocation {
                id,
                name: l
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                active: l.get("status").and_then(Value::as_str) == Some("ACTIVE"),
                timezone: l.get("timezone").and_then(Value::as_str).map(str::to_owned),
                currency: l
                    .get("currency")
                    .and_then(Value::as_str)
                    .and_then(|c| Currency::parse(c).ok()),
            });
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // catalog

    /// Every item variation (with SKU and tracking flag), paging `ListCatalog`; malformed
    /// objects become record errors.
    pub async fn catalog_variations(
        &self,
    ) -> Result<(Vec<PosVariation>, Vec<RecordError>), PosError> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut cursor: Option<String> = None;
        let source = "GET /v2/catalog/list";
        for _ in 0..10_000 {
            let path = match &cursor {
                Some(c) => format!(
                    "/v2/catalog/list?types=ITEM_VARIATION&cursor={}",
                    url_encode(c)
                ),
                None => "/v2/catalog/list?types=ITEM_VARIATION".to_owned(),
            };
            let body = self.get(&path).await?;
            for (i, o) in body
                .get("objects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                match parse_variation(o) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        let field = format!("objects[{i}]{}", e.field.clone().unwrap_or_default());
                        errors.push(e.source(source).field(field));
                    }
                }
            }
            cursor = body
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok((out, errors))
    }

    /// Variations whose SKU matches (case-insensitively; Square does not make SKUs unique, so
    /// there may be several).
    pub async fn variations_by_sku(&self, sku: &str) -> Result<Vec<PosVariation>, PosError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut body = json!({"object_types": ["ITEM_VARIATION"],
                "query": {"exact_query": {"attribute_name": "sku", "attribute_value": sku}}});
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let res = self.post("/v2/catalog/search", &body).await?;
            for o in res
                .get("objects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Ok(v) = parse_variation(o) {
                    out.push(v);
                }
            }
            cursor = res.get("cursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // inventory

    /// Square's change log for the covered locations between two receipt times (audit).
    pub async fn inventory_history(
        &self,
        after: Option<Timestamp>,
        before: Option<Timestamp>,
    ) -> Result<(Vec<InventoryMovement>, Vec<RecordError>), PosError> {
        let locations = self.covered_locations().await?;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut cursor: Option<String> = None;
        let source = "POST /v2/inventory/changes/batch-retrieve";
        for _ in 0..100_000 {
            let mut body = json!({"location_ids": locations, "types": ["PHYSICAL_COUNT", "ADJUSTMENT"],
                                  "limit": self.config.counts_page_limit});
            if let Some(a) = after {
                body["updated_after"] = json!(a.to_string());
            }
            if let Some(b) = before {
                body["updated_before"] = json!(b.to_string());
            }
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let res = self
                .post("/v2/inventory/changes/batch-retrieve", &body)
                .await?;
            for (i, c) in res
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                match parse_movement(c) {
                    Ok(m) => out.push(m),
                    Err(e) => {
                        let field = format!("changes[{i}]{}", e.field.clone().unwrap_or_default());
                        errors.push(e.source(source).field(field));
                    }
                }
            }
            cursor = res.get("cursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok((out, errors))
    }

    /// One page of counts; on an expired page token, the walk restarts from its first page.
    async fn counts_page(
        &self,
        locations: &[String],
        after: Option<i64>,
        page: Option<&str>,
    ) -> Result<Value, PosError> {
        let mut body = json!({"location_ids": locations, "states": ["IN_STOCK"],
                              "limit": self.config.counts_page_limit});
        if let Some(a) = after {
            body["updated_after"] = json!(Timestamp::from_millis(a).to_string());
        }
        if let Some(p) = page {
            body["cursor"] = json!(p);
        }
        self.post("/v2/inventory/counts/batch-retrieve", &body)
            .await
    }

    fn batch(
        &self,
        feed: Feed,
        payload: BatchPayload,
        errors: Vec<RecordError>,
        next: PosCursor,
        has_more: bool,
        source: &str,
    ) -> PosBatch {
        PosBatch::new(
            self.config.id.clone(),
            feed,
            Some(source.to_owned()),
            payload,
            errors,
            next,
            has_more,
        )
    }

    async fn read_stock_changes(&self, cursor: &PosCursor) -> Result<PosBatch, PosError> {
        let state: StockCursor = cursor.decode()?.unwrap_or_default();
        let source = "POST /v2/inventory/counts/batch-retrieve";
        let mut walk = match state.walk.clone() {
            Some(w) => w,
            None => Walk {
                after: state.hwm.map(|h| h - ms_of(self.config.stock_overlap)),
                locations: self.covered_locations().await?,
                ..Walk::default()
            },
        };
        let res = match self
            .counts_page(&walk.locations, walk.after, walk.page.as_deref())
            .await
        {
            Err(PosError::InvalidCursor { .. }) if walk.page.is_some() => {
                // Square's page tokens expire: walk again from the first page (counts are
                // absolute values, so records read twice are harmless).
                walk.page = None;
                walk.max_seen = None;
                self.counts_page(&walk.locations, walk.after, None).await?
            }
            other => other?,
        };
        let (levels, errors, page_max) = parse_counts(&res, source);
        walk.max_seen = max_opt(walk.max_seen, page_max);
        let next_page = res.get("cursor").and_then(Value::as_str).map(str::to_owned);
        let (next, has_more) = match next_page {
            Some(p) => {
                walk.page = Some(p);
                (
                    StockCursor {
                        hwm: state.hwm,
                        walk: Some(walk),
                    },
                    true,
                )
            }
            None => (
                StockCursor {
                    hwm: max_opt(state.hwm, walk.max_seen),
                    walk: None,
                },
                false,
            ),
        };
        Ok(self.batch(
            Feed::StockChanges,
            BatchPayload::StockChanges { levels },
            errors,
            PosCursor::encode(&next)?,
            has_more,
            source,
        ))
    }

    async fn read_stock_snapshot(&self, cursor: &PosCursor) -> Result<PosBatch, PosError> {
        let state: Option<SnapshotCursor> = cursor.decode()?;
        let source = "POST /v2/inventory/counts/batch-retrieve";
        let (locations, page) = match state {
            Some(s) => (s.locations, Some(s.page)),
            None => (self.covered_locations().await?, None),
        };
        let res = match self.counts_page(&locations, None, page.as_deref()).await {
            Err(PosError::InvalidCursor { message }) => {
                return Err(PosError::InvalidCursor {
                    message: format!("{message} (the snapshot must start again)"),
                });
            }
            other => other?,
        };
        let (levels, errors, page_max) = parse_counts(&res, source);
        let next_page = res.get("cursor").and_then(Value::as_str).map(str::to_owned);
        let has_more = next_page.is_some();
        let next = match next_page {
            Some(p) => PosCursor::encode(&SnapshotCursor {
                locations: locations.clone(),
                page: p,
            })?,
            None => PosCursor::start(),
        };
        let loc_ids = locations
            .iter()
            .filter_map(|l| PosLocationId::parse(l).ok())
            .collect();
        Ok(self.batch(
            Feed::StockSnapshot,
            BatchPayload::StockSnapshot {
                as_of: Timestamp::from_millis(page_max.unwrap_or(0)),
                locations: loc_ids,
                levels,
            },
            errors,
            next,
            has_more,
            source,
        ))
    }

    // -----------------------------------------------------------------------------------------
    // sales

    async fn orders_page(
        &self,
        locations: &[String],
        start: Option<i64>,
        page: Option<&str>,
    ) -> Result<Value, PosError> {
        let mut filter = json!({"state_filter": {"states": ["OPEN", "COMPLETED", "CANCELED"]}});
        if let Some(s) = start {
            filter["date_time_filter"] =
                json!({"updated_at": {"start_at": Timestamp::from_millis(s).to_string()}});
        }
        let mut body = json!({
            "location_ids": locations, "limit": self.config.orders_page_limit,
            "return_entries": false,
            "query": {"filter": filter, "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}},
        });
        if let Some(p) = page {
            body["cursor"] = json!(p);
        }
        self.post("/v2/orders/search", &body).await
    }

    async fn read_sales(&self, cursor: &PosCursor) -> Result<PosBatch, PosError> {
        let state: SalesCursor = cursor.decode()?.unwrap_or_default();
        let source = "POST /v2/orders/search";
        let mut walk = match state.walk.clone() {
            Some(w) => w,
            None => Walk {
                after: state.hwm.map(|h| h - ms_of(self.config.sales_overlap)),
                locations: self.covered_locations().await?,
                group: Some(0),
                ..Walk::default()
            },
        };
        let groups: Vec<Vec<String>> = walk.locations.chunks(10).map(<[String]>::to_vec).collect();
        let g = walk.group.unwrap_or(0);
        let Some(group) = groups.get(g) else {
            // No locations: nothing to read; the mark stays.
            let next = SalesCursor {
                hwm: state.hwm,
                walk: None,
            };
            return Ok(self.batch(
                Feed::Sales,
                BatchPayload::Sales {
                    transactions: Vec::new(),
                },
                Vec::new(),
                PosCursor::encode(&next)?,
                false,
                source,
            ));
        };
        let res = match self
            .orders_page(group, walk.after, walk.page.as_deref())
            .await
        {
            Err(PosError::InvalidCursor { .. }) if walk.page.is_some() => {
                walk.page = None;
                self.orders_page(group, walk.after, None).await?
            }
            other => other?,
        };
        let (transactions, errors, page_max) =
            parse_orders(&res, source, &self.config.order_source);
        walk.max_seen = max_opt(walk.max_seen, page_max);
        let next_page = res.get("cursor").and_then(Value::as_str).map(str::to_owned);
        let (next, has_more) = if let Some(p) = next_page {
            walk.page = Some(p);
            (
                SalesCursor {
                    hwm: state.hwm,
                    walk: Some(walk),
                },
                true,
            )
        } else if g + 1 < groups.len() {
            walk.page = None;
            walk.group = Some(g + 1);
            (
                SalesCursor {
                    hwm: state.hwm,
                    walk: Some(walk),
                },
                true,
            )
        } else {
            (
                SalesCursor {
                    hwm: max_opt(state.hwm, walk.max_seen),
                    walk: None,
                },
                false,
            )
        };
        Ok(self.batch(
            Feed::Sales,
            BatchPayload::Sales { transactions },
            errors,
            PosCursor::encode(&next)?,
            has_more,
            source,
        ))
    }

    // -----------------------------------------------------------------------------------------
    // fulfilment

    async fn submit_fulfilment(
        &self,
        r: &FulfilmentRequest,
    ) -> Result<FulfilmentReceipt, PosError> {
        if r.order_reference.chars().count() > 40 {
            return Err(PosError::InvalidRequest {
                message: format!(
                    "order reference {:?} is longer than Square's 40-character reference_id",
                    r.order_reference
                ),
            });
        }
        let cur = r.currency.as_str();
        let lines: Vec<Value> = r
            .lines
            .iter()
            .map(|l| {
                json!({
                    "catalog_object_id": l.variation.as_str(), "name": l.name,
                    "quantity": l.quantity.normalize().to_string(),
                    "base_price_money": {"amount": l.unit_price.minor, "currency": cur},
                    "metadata": {"sku": l.sku.as_str()},
                })
            })
            .collect();
        let mut recipient = json!({"display_name": r.recipient.display_name});
        if let Some(e) = &r.recipient.email {
            recipient["email_address"] = json!(e);
        }
        if let Some(p) = &r.recipient.phone {
            recipient["phone_number"] = json!(p);
        }
        let fulfilment = match r.kind {
            FulfilmentKind::Pickup => {
                let mut d = json!({"recipient": recipient});
                match r.pickup_at {
                    Some(t) => {
                        d["schedule_type"] = json!("SCHEDULED");
                        d["pickup_at"] = json!(t.to_string());
                    }
                    None => d["schedule_type"] = json!("ASAP"),
                }
                if let Some(n) = &r.note {
                    d["note"] = json!(n.chars().take(500).collect::<String>());
                }
                json!({"type": "PICKUP", "state": "PROPOSED", "pickup_details": d})
            }
            FulfilmentKind::Shipment => {
                let mut d = json!({"recipient": recipient});
                if let Some(n) = &r.note {
                    d["shipping_note"] = json!(n);
                }
                json!({"type": "SHIPMENT", "state": "PROPOSED", "shipment_details": d})
            }
        };
        let key = idempotency_key("order", r.id.as_str(), 192);
        let body = json!({
            "idempotency_key": key,
            "order": {
                "location_id": r.location.as_str(), "reference_id": r.order_reference,
                "source": {"name": self.config.order_source},
                "line_items": lines, "fulfillments": [fulfilment],
                "metadata": {"tillbridge_request": r.id.as_str()},
            },
        });
        let created = self.post("/v2/orders", &body).await?;
        let order = created.get("order").ok_or_else(|| PosError::Malformed {
            message: "POST /v2/orders: answer has no order".into(),
        })?;
        let order_id = str_field(order, "id")?.to_owned();
        let total = order
            .pointer("/total_money/amount")
            .and_then(Value::as_i64)
            .ok_or_else(|| PosError::Malformed {
                message: format!("order {order_id}: no total_money.amount"),
            })?;
        if total > 0 {
            let pay = json!({
                "idempotency_key": idempotency_key("pay", r.id.as_str(), 45),
                "source_id": "EXTERNAL", "order_id": order_id, "autocomplete": true,
                "amount_money": {"amount": total, "currency": cur},
                "reference_id": r.order_reference,
                "external_details": {"type": "OTHER", "source": "Adobe Commerce",
                                     "source_id": r.order_reference},
            });
            match self.post("/v2/payments", &pay).await {
                Ok(_) => {}
                // Paid already by an earlier attempt whose answer we lost.
                Err(PosError::InvalidRequest { message })
                    if message.contains("PAYMENT_AMOUNT_MISMATCH") =>
                {
                    let current = self.get(&format!("/v2/orders/{order_id}")).await?;
                    let due = current
                        .pointer("/order/net_amount_due_money/amount")
                        .and_then(Value::as_i64)
                        .unwrap_or(total);
                    if due != 0 {
                        return Err(PosError::InvalidRequest { message });
                    }
                }
                Err(e) => return Err(e),
            }
        } else {
            // A zero-total order (everything discounted) is paid with no payments.
            let version = order.get("version").and_then(Value::as_i64);
            let mut pay = json!({"idempotency_key": idempotency_key("pay", r.id.as_str(), 192),
                                 "payment_ids": []});
            if let Some(v) = version {
                pay["order_version"] = json!(v);
            }
            match self.post(&format!("/v2/orders/{order_id}/pay"), &pay).await {
                // An earlier attempt paid it already (its version moved on).
                Ok(_) | Err(PosError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let current = self.get(&format!("/v2/orders/{order_id}")).await?;
        let order = current.get("order").ok_or_else(|| PosError::Malformed {
            message: format!("GET /v2/orders/{order_id}: answer has no order"),
        })?;
        let status = status_of(order, r.id.clone(), None)?;
        Ok(FulfilmentReceipt {
            reference: status.reference,
            state: status.state,
            version: status.version,
        })
    }

    /// Withdraw a fulfilment: `UpdateOrder` setting its state to `CANCELED` at the order's
    /// current version. Re-reading first makes it idempotent (a cancelled fulfilment is
    /// returned as it is) and a stale version (someone at the till touched the order in
    /// between) is a `Conflict` the caller retries.
    async fn withdraw_fulfilment(
        &self,
        reference: &FulfilmentRef,
    ) -> Result<FulfilmentStatus, PosError> {
        let path = format!("/v2/orders/{}", url_encode(&reference.external_order_id));
        let res = self.get(&path).await?;
        let order = res.get("order").ok_or_else(|| PosError::Malformed {
            message: format!("order {}: answer has no order", reference.external_order_id),
        })?;
        let location = order.get("location_id").cloned().unwrap_or(Value::Null);
        let current = status_of(
            order,
            reference.request.clone(),
            reference.external_fulfilment_id.as_deref(),
        )?;
        match current.state {
            FulfilmentState::Cancelled | FulfilmentState::Rejected | FulfilmentState::Failed => {
                return Ok(current);
            }
            FulfilmentState::Completed => {
                return Err(PosError::InvalidRequest {
                    message: format!(
                        "Square order {} is already completed at the till; it cannot be withdrawn",
                        reference.external_order_id
                    ),
                });
            }
            FulfilmentState::Requested | FulfilmentState::Accepted | FulfilmentState::Ready => {}
        }
        let fulfilments = order
            .get("fulfillments")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // A split order: withdraw every part not handed over yet.
        let uids: Vec<String> = if is_split(fulfilments) {
            fulfilments
                .iter()
                .filter(|f| {
                    matches!(
                        f.get("state").and_then(Value::as_str),
                        Some("PROPOSED" | "RESERVED" | "PREPARED")
                    )
                })
                .filter_map(|f| f.get("uid").and_then(Value::as_str).map(str::to_owned))
                .collect()
        } else {
            current
                .reference
                .external_fulfilment_id
                .clone()
                .into_iter()
                .collect()
        };
        if uids.is_empty() {
            return Err(PosError::Malformed {
                message: format!(
                    "Square order {}: fulfilment has no uid",
                    reference.external_order_id
                ),
            });
        }
        let key = idempotency_key(
            "cancel",
            &format!("{}:{}", reference.request.as_str(), current.version),
            192,
        );
        let cancels: Vec<Value> = uids
            .iter()
            .map(|uid| json!({"uid": uid, "state": "CANCELED"}))
            .collect();
        let body = json!({
            "idempotency_key": key,
            "order": {
                "location_id": location,
                "version": current.version,
                "fulfillments": cancels,
            },
        });
        self.call(reqwest::Method::PUT, &path, Some(&body)).await?;
        self.read_fulfilment(reference).await
    }

    async fn read_fulfilment(
        &self,
        reference: &FulfilmentRef,
    ) -> Result<FulfilmentStatus, PosError> {
        let res = self
            .get(&format!(
                "/v2/orders/{}",
                url_encode(&reference.external_order_id)
            ))
            .await?;
        let order = res.get("order").ok_or_else(|| PosError::Malformed {
            message: format!("order {}: answer has no order", reference.external_order_id),
        })?;
        status_of(
            order,
            reference.request.clone(),
            reference.external_fulfilment_id.as_deref(),
        )
    }
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `tb-<purpose>-<hex of SHA-256(request id)>`, cut to Square's limit for the endpoint.
fn idempotency_key(purpose: &str, request: &str, max: usize) -> String {
    let h = hex(&Sha256::digest(request.as_bytes()));
    let mut k = format!("tb-{purpose}-{h}");
    k.truncate(max);
    k
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, PosError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| PosError::Malformed {
            message: format!("missing `{key}`"),
        })
}

fn map_fulfilment_state(s: &str, rejected: bool) -> Option<FulfilmentState> {
    Some(match s {
        "PROPOSED" => FulfilmentState::Requested,
        "RESERVED" => FulfilmentState::Accepted,
        "PREPARED" => FulfilmentState::Ready,
        "COMPLETED" => FulfilmentState::Completed,
        "CANCELED" => FulfilmentState::Cancelled,
        "FAILED" if rejected => FulfilmentState::Rejected,
        "FAILED" => FulfilmentState::Failed,
        _ => return None,
    })
}

/// Whether the order's fulfilment was split into parts (Square: several fulfilments, or an
/// `ENTRY_LIST` one), so its status is read over all of them.
fn is_split(fulfilments: &[Value]) -> bool {
    fulfilments.len() > 1
        || fulfilments
            .iter()
            .any(|f| f.get("line_item_application").and_then(Value::as_str) == Some("ENTRY_LIST"))
}

/// The pickup or shipment details of a fulfilment (`Null` when it has neither).
fn details_of(f: &Value) -> Value {
    f.get("pickup_details")
        .or_else(|| f.get("shipment_details"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn state_of(order_id: &str, f: &Value) -> Result<FulfilmentState, PosError> {
    let raw_state = f.get("state").and_then(Value::as_str).unwrap_or_default();
    let rejected = details_of(f).get("rejected_at").is_some();
    map_fulfilment_state(raw_state, rejected).ok_or_else(|| PosError::Malformed {
        message: format!("order {order_id}: unknown fulfilment state {raw_state:?}"),
    })
}

/// The status of our fulfilment in a Square order. An order whose fulfilment a seller split
/// into `ENTRY_LIST` fulfilments (Square's seller tools can; its API creates one) is read over
/// all of them: each completed one is a [`Parcel`]; the order is `Completed` only once every
/// fulfilment is, otherwise it is where its least advanced open fulfilment is (or, with none
/// open, the first one that was cancelled, rejected or failed).
fn status_of(
    order: &Value,
    request: tillbridge_core::pos::FulfilmentRequestId,
    uid: Option<&str>,
) -> Result<FulfilmentStatus, PosError> {
    let order_id = str_field(order, "id")?.to_owned();
    let fulfilments = order
        .get("fulfillments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let not_found = || PosError::NotFound {
        what: format!("fulfilment of Square order {order_id}"),
    };
    let updated_at = order
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(|t| Timestamp::parse(t).ok())
        .ok_or_else(|| PosError::Malformed {
            message: format!("order {order_id}: bad updated_at"),
        })?;
    let version = order.get("version").and_then(Value::as_i64).unwrap_or(0);
    let reason_of = |details: &Value| {
        details
            .get("cancel_reason")
            .or_else(|| details.get("failure_reason"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let tracking_of = |details: &Value| {
        details
            .get("tracking_number")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if !is_split(fulfilments) {
        let f = fulfilments
            .iter()
            .find(|f| uid.is_none_or(|u| f.get("uid").and_then(Value::as_str) == Some(u)))
            .ok_or_else(not_found)?;
        let details = details_of(f);
        return Ok(FulfilmentStatus {
            reference: FulfilmentRef {
                request,
                external_order_id: order_id.clone(),
                external_fulfilment_id: f.get("uid").and_then(Value::as_str).map(str::to_owned),
            },
            state: state_of(&order_id, f)?,
            version,
            updated_at,
            tracking_number: tracking_of(&details),
            reason: reason_of(&details),
            parcels: Vec::new(),
        });
    }
    let mut states = Vec::new();
    let mut parcels = Vec::new();
    for (i, f) in fulfilments.iter().enumerate() {
        let state = state_of(&order_id, f)?;
        states.push((state, reason_of(&details_of(f))));
        if state == FulfilmentState::Completed {
            parcels.push(parcel_of(order, &order_id, i, f)?);
        }
    }
    let open = states
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .min_by_key(|(s, _)| match s {
            FulfilmentState::Requested => 0,
            FulfilmentState::Accepted => 1,
            _ => 2,
        });
    let (state, reason) = match open {
        Some((s, _)) => (*s, None),
        None => states
            .iter()
            .find(|(s, _)| *s != FulfilmentState::Completed)
            .cloned()
            .unwrap_or((FulfilmentState::Completed, None)),
    };
    Ok(FulfilmentStatus {
        reference: FulfilmentRef {
            request,
            external_order_id: order_id,
            external_fulfilment_id: uid.map(str::to_owned),
        },
        state,
        version,
        updated_at,
        tracking_number: parcels.last().and_then(|p| p.tracking_number.clone()),
        reason,
        parcels,
    })
}

/// A completed `ENTRY_LIST` fulfilment as a parcel: its entries as variations (and the SKU our
/// orders carry in the line's metadata) and quantities. An `ALL` fulfilment completed beside
/// others hands over what no other fulfilment lists.
fn parcel_of(order: &Value, order_id: &str, i: usize, f: &Value) -> Result<Parcel, PosError> {
    let malformed = |field: String, what: &str| PosError::Malformed {
        message: format!("order {order_id}: {field}: {what}"),
    };
    let id = f
        .get("uid")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("fulfillments[{i}].uid"), "missing"))?
        .to_owned();
    let items = order
        .get("line_items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let entries: Vec<(String, Decimal)> = match f.get("entries").and_then(Value::as_array) {
        Some(entries) => entries
            .iter()
            .enumerate()
            .map(|(j, e)| {
                let field = format!("fulfillments[{i}].entries[{j}]");
                let line = e
                    .get("line_item_uid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed(format!("{field}.line_item_uid"), "missing"))?;
                let q = e
                    .get("quantity")
                    .and_then(Value::as_str)
                    .and_then(|q| q.parse::<Decimal>().ok())
                    .filter(|q| *q > Decimal::ZERO)
                    .ok_or_else(|| {
                        malformed(format!("{field}.quantity"), "not a positive quantity")
                    })?;
                Ok((line.to_owned(), q))
            })
            .collect::<Result<_, PosError>>()?,
        None => {
            // What the other fulfilments do not list.
            let listed: Vec<(String, Decimal)> = order
                .get("fulfillments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|o| o.get("entries").and_then(Value::as_array))
                .flatten()
                .filter_map(|e| {
                    Some((
                        e.get("line_item_uid")?.as_str()?.to_owned(),
                        e.get("quantity")?.as_str()?.parse::<Decimal>().ok()?,
                    ))
                })
                .collect();
            items
                .iter()
                .filter_map(|l| {
                    let uid = l.get("uid")?.as_str()?;
                    let q = l.get("quantity")?.as_str()?.parse::<Decimal>().ok()?;
                    let taken: Decimal = listed
                        .iter()
                        .filter(|(u, _)| u == uid)
                        .map(|(_, q)| *q)
                        .sum();
                    (q > taken).then(|| (uid.to_owned(), q - taken))
                })
                .collect()
        }
    };
    let mut lines = Vec::new();
    for (line_uid, quantity) in entries {
        let (j, line) = items
            .iter()
            .enumerate()
            .find(|(_, l)| l.get("uid").and_then(Value::as_str) == Some(line_uid.as_str()))
            .ok_or_else(|| {
                malformed(
                    format!("fulfillments[{i}]"),
                    &format!("no line item {line_uid:?}"),
                )
            })?;
        let variation = line
            .get("catalog_object_id")
            .and_then(Value::as_str)
            .and_then(|v| PosVariationId::parse(v).ok())
            .ok_or_else(|| {
                malformed(
                    format!("line_items[{j}].catalog_object_id"),
                    "a handed-over line without a catalog variation",
                )
            })?;
        let sku = line
            .pointer("/metadata/sku")
            .and_then(Value::as_str)
            .and_then(|s| Sku::parse(s).ok());
        lines.push(ParcelLine {
            variation,
            sku,
            quantity,
        });
    }
    let details = details_of(f);
    let completed_at = ["shipped_at", "picked_up_at"]
        .iter()
        .find_map(|k| details.get(*k).and_then(Value::as_str))
        .and_then(|t| Timestamp::parse(t).ok());
    Ok(Parcel {
        id,
        lines,
        tracking_number: details
            .get("tracking_number")
            .and_then(Value::as_str)
            .map(str::to_owned),
        completed_at,
    })
}

// ---------------------------------------------------------------------------------------------
// record parsing (every failure names the record and the field)

fn parse_variation(o: &Value) -> Result<PosVariation, RecordError> {
    let id_text = o.get("id").and_then(Value::as_str).unwrap_or_default();
    let id = PosVariationId::parse(id_text).map_err(|e| {
        RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
            .field(".id")
            .value(id_text)
    })?;
    let data = o.get("item_variation_data").ok_or_else(|| {
        RecordError::new(RecordErrorKind::MissingField, "no item_variation_data")
            .record(id_text)
            .field(".item_variation_data")
    })?;
    let sku = match data.get("sku").and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Some(Sku::parse(s).map_err(|e| {
            RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
                .record(id_text)
                .field(".item_variation_data.sku")
                .value(s)
        })?),
        _ => None,
    };
    Ok(PosVariation {
        id,
        sku,
        name: data.get("name").and_then(Value::as_str).map(str::to_owned),
        tracked: data
            .get("track_inventory")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn parse_movement(c: &Value) -> Result<InventoryMovement, RecordError> {
    let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
    let key = match kind {
        "ADJUSTMENT" => "adjustment",
        "PHYSICAL_COUNT" => "physical_count",
        other => {
            return Err(RecordError::new(
                RecordErrorKind::BadValue,
                format!("change type {other:?}"),
            )
            .field(".type")
            .value(other));
        }
    };
    let b = c.get(key).cloned().unwrap_or(Value::Null);
    let id = b
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let field = |name: &str| format!(".{key}.{name}");
    let s = |name: &str| -> Result<String, RecordError> {
        b.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                RecordError::new(RecordErrorKind::MissingField, format!("no {name}"))
                    .record(id.clone())
                    .field(field(name))
            })
    };
    let ts = |name: &str| -> Result<Timestamp, RecordError> {
        let t = s(name)?;
        Timestamp::parse(&t).map_err(|e| {
            RecordError::new(RecordErrorKind::BadTimestamp, e.to_string())
                .record(id.clone())
                .field(field(name))
                .value(&t)
        })
    };
    let qty_text = s("quantity")?;
    let quantity = qty_text.parse::<Decimal>().map_err(|_| {
        RecordError::new(
            RecordErrorKind::BadNumber,
            format!("quantity {qty_text:?} is not a decimal"),
        )
        .record(id.clone())
        .field(field("quantity"))
        .value(&qty_text)
    })?;
    let bad_id = |e: tillbridge_core::pos::IdError, name: &str| {
        RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
            .record(id.clone())
            .field(field(name))
    };
    Ok(InventoryMovement {
        id: id.clone(),
        kind: kind.to_owned(),
        variation: PosVariationId::parse(&s("catalog_object_id")?)
            .map_err(|e| bad_id(e, "catalog_object_id"))?,
        location: PosLocationId::parse(&s("location_id")?).map_err(|e| bad_id(e, "location_id"))?,
        from_state: b
            .get("from_state")
            .and_then(Value::as_str)
            .map(str::to_owned),
        to_state: b
            .get("to_state")
            .or_else(|| b.get("state"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        quantity,
        occurred_at: ts("occurred_at")?,
        created_at: ts("created_at")?,
        source_product: b
            .pointer("/source/product")
            .and_then(Value::as_str)
            .map(str::to_owned),
        transaction_id: b
            .get("transaction_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Counts → levels, record errors, and the largest `calculated_at` of the well-formed ones.
fn parse_counts(res: &Value, source: &str) -> (Vec<StockLevel>, Vec<RecordError>, Option<i64>) {
    let mut levels = Vec::new();
    let mut errors = Vec::new();
    let mut max: Option<i64> = None;
    for (i, c) in res
        .get("counts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match parse_count(c) {
            Ok(l) => {
                max = max_opt(max, Some(l.as_of.as_millis()));
                levels.push(l);
            }
            Err(e) => {
                let field = format!("counts[{i}]{}", e.field.clone().unwrap_or_default());
                errors.push(e.source(source).field(field));
            }
        }
    }
    (levels, errors, max)
}

fn parse_count(c: &Value) -> Result<StockLevel, RecordError> {
    let var = c.get("catalog_object_id").and_then(Value::as_str);
    let loc = c.get("location_id").and_then(Value::as_str);
    let record = format!("{}@{}", var.unwrap_or("?"), loc.unwrap_or("?"));
    let missing = |name: &str| {
        RecordError::new(RecordErrorKind::MissingField, format!("no {name}"))
            .record(record.clone())
            .field(format!(".{name}"))
    };
    let variation = PosVariationId::parse(var.ok_or_else(|| missing("catalog_object_id"))?)
        .map_err(|e| {
            RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
                .record(record.clone())
                .field(".catalog_object_id")
        })?;
    let location =
        PosLocationId::parse(loc.ok_or_else(|| missing("location_id"))?).map_err(|e| {
            RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
                .record(record.clone())
                .field(".location_id")
        })?;
    let q = c
        .get("quantity")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("quantity"))?;
    let available = q.parse::<Decimal>().map_err(|_| {
        RecordError::new(
            RecordErrorKind::BadNumber,
            format!("quantity {q:?} is not a decimal"),
        )
        .record(record.clone())
        .field(".quantity")
        .value(q)
    })?;
    if available.scale() > 5 {
        return Err(
            RecordError::new(RecordErrorKind::BadNumber, "more than 5 decimals")
                .record(record.clone())
                .field(".quantity")
                .value(q),
        );
    }
    let t = c
        .get("calculated_at")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("calculated_at"))?;
    let as_of = Timestamp::parse(t).map_err(|e| {
        RecordError::new(RecordErrorKind::BadTimestamp, e.to_string())
            .record(record.clone())
            .field(".calculated_at")
            .value(t)
    })?;
    Ok(StockLevel {
        location,
        variation,
        pos_sku: None,
        available,
        as_of,
    })
}

/// Orders → transactions (a sale, a return, or both for an exchange), record errors, and the
/// largest `updated_at` among the well-formed orders.
fn parse_orders(
    res: &Value,
    source: &str,
    own_source: &str,
) -> (Vec<PosTransaction>, Vec<RecordError>, Option<i64>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut max = None;
    for (i, o) in res
        .get("orders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        // Even an order we skip or cannot read moves the mark, if its updated_at is readable
        // (its error is in the batch, so it is not lost).
        let updated = o
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|t| Timestamp::parse(t).ok());
        if o.pointer("/source/name").and_then(Value::as_str) == Some(own_source) {
            max = max_opt(max, updated.map(Timestamp::as_millis));
            continue;
        }
        match parse_order(o) {
            Ok(ts) => {
                max = max_opt(max, updated.map(Timestamp::as_millis));
                out.extend(ts);
            }
            Err(e) => {
                max = max_opt(max, updated.map(Timestamp::as_millis));
                let field = format!("orders[{i}]{}", e.field.clone().unwrap_or_default());
                errors.push(e.source(source).field(field));
            }
        }
    }
    (out, errors, max)
}

struct OrderCtx<'a> {
    id: &'a str,
    currency: Currency,
}

impl OrderCtx<'_> {
    fn err(&self, kind: RecordErrorKind, field: &str, message: impl Into<String>) -> RecordError {
        RecordError::new(kind, message).record(self.id).field(field)
    }

    fn money(&self, v: &Value, field: &str) -> Result<Money, RecordError> {
        let amount = v.get("amount").and_then(Value::as_i64).ok_or_else(|| {
            self.err(
                RecordErrorKind::BadNumber,
                &format!("{field}.amount"),
                "amount is not an integer of minor units",
            )
        })?;
        let cur = match v.get("currency").and_then(Value::as_str) {
            Some(c) => Currency::parse(c).map_err(|e| {
                self.err(
                    RecordErrorKind::BadCurrency,
                    &format!("{field}.currency"),
                    e.to_string(),
                )
                .value(c)
            })?,
            None => self.currency,
        };
        if cur != self.currency {
            return Err(self.err(
                RecordErrorKind::BadCurrency,
                &format!("{field}.currency"),
                format!("{cur} in an order in {}", self.currency),
            ));
        }
        Ok(Money::new(amount, cur))
    }

    fn money_or_zero(&self, v: Option<&Value>, field: &str) -> Result<Money, RecordError> {
        match v {
            Some(v) => self.money(v, field),
            None => Ok(Money::zero(self.currency)),
        }
    }

    fn qty(&self, v: Option<&Value>, field: &str) -> Result<Decimal, RecordError> {
        let text = v
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(RecordErrorKind::MissingField, field, "no quantity"))?;
        text.parse::<Decimal>().map_err(|_| {
            self.err(
                RecordErrorKind::BadNumber,
                field,
                format!("quantity {text:?} is not a decimal"),
            )
            .value(text)
        })
    }
}

fn parse_order(o: &Value) -> Result<Vec<PosTransaction>, RecordError> {
    let id_text = o.get("id").and_then(Value::as_str).unwrap_or_default();
    let id = PosTransactionId::parse(id_text).map_err(|e| {
        RecordError::new(RecordErrorKind::BadIdentifier, e.to_string()).field(".id")
    })?;
    let loc_text = o
        .get("location_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let location = PosLocationId::parse(loc_text).map_err(|e| {
        RecordError::new(RecordErrorKind::BadIdentifier, e.to_string())
            .record(id_text)
            .field(".location_id")
    })?;
    let cur_text = o
        .pointer("/total_money/currency")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let currency = Currency::parse(cur_text).map_err(|e| {
        RecordError::new(RecordErrorKind::BadCurrency, e.to_string())
            .record(id_text)
            .field(".total_money.currency")
            .value(cur_text)
    })?;
    let ctx = OrderCtx {
        id: id_text,
        currency,
    };
    let ts = |name: &str| -> Result<Timestamp, RecordError> {
        let t = o.get(name).and_then(Value::as_str).unwrap_or_default();
        Timestamp::parse(t).map_err(|e| {
            ctx.err(
                RecordErrorKind::BadTimestamp,
                &format!(".{name}"),
                e.to_string(),
            )
            .value(t)
        })
    };
    let occurred_at = ts("created_at")?;
    let updated_at = ts("updated_at")?;
    let state = match o.get("state").and_then(Value::as_str) {
        Some("OPEN") => TransactionState::Open,
        Some("COMPLETED") => TransactionState::Completed,
        Some("CANCELED") => TransactionState::Cancelled,
        Some("DRAFT") => return Ok(Vec::new()),
        other => {
            return Err(ctx
                .err(
                    RecordErrorKind::BadValue,
                    ".state",
                    format!("order state {other:?}"),
                )
                .value(other.unwrap_or_default()));
        }
    };
    let version = o.get("version").and_then(Value::as_i64);

    // taxes by uid, for the per-line tax lines
    let taxes: Vec<&Value> = o
        .get("taxes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let tax_lines = |line: &Value, field: &str| -> Result<Vec<TaxLine>, RecordError> {
        let mut out = Vec::new();
        for (k, a) in line
            .get("applied_taxes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let f = format!("{field}.applied_taxes[{k}]");
            let uid = a.get("tax_uid").and_then(Value::as_str).unwrap_or_default();
            let tax = taxes
                .iter()
                .find(|t| t.get("uid").and_then(Value::as_str) == Some(uid))
                .ok_or_else(|| {
                    ctx.err(
                        RecordErrorKind::Inconsistent,
                        &format!("{f}.tax_uid"),
                        format!("no order tax with uid {uid:?}"),
                    )
                    .value(uid)
                })?;
            let pct = tax.get("percentage").and_then(Value::as_str).unwrap_or("0");
            let rate = pct.parse::<Decimal>().map_err(|_| {
                ctx.err(
                    RecordErrorKind::BadNumber,
                    &format!("{f}.percentage"),
                    format!("tax percentage {pct:?}"),
                )
                .value(pct)
            })?;
            let amount =
                ctx.money_or_zero(a.get("applied_money"), &format!("{f}.applied_money"))?;
            out.push(TaxLine {
                tax: tax
                    .get("catalog_object_id")
                    .and_then(Value::as_str)
                    .and_then(|t| PosTaxId::parse(t).ok()),
                name: tax.get("name").and_then(Value::as_str).map(str::to_owned),
                rate,
                inclusive: tax.get("type").and_then(Value::as_str) == Some("INCLUSIVE"),
                amount,
            });
        }
        Ok(out)
    };
    let line = |l: &Value, field: &str, total_key: &str| -> Result<TransactionLine, RecordError> {
        let uid = l.get("uid").and_then(Value::as_str).unwrap_or_default();
        let lid = PosLineId::parse(uid).map_err(|e| {
            ctx.err(
                RecordErrorKind::BadIdentifier,
                &format!("{field}.uid"),
                e.to_string(),
            )
        })?;
        let variation = match l.get("catalog_object_id").and_then(Value::as_str) {
            Some(v) => Some(PosVariationId::parse(v).map_err(|e| {
                ctx.err(
                    RecordErrorKind::BadIdentifier,
                    &format!("{field}.catalog_object_id"),
                    e.to_string(),
                )
            })?),
            None => None,
        };
        let _ = total_key;
        Ok(TransactionLine {
            id: lid,
            variation,
            pos_sku: None,
            name: l.get("name").and_then(Value::as_str).map(str::to_owned),
            quantity: ctx.qty(l.get("quantity"), &format!("{field}.quantity"))?,
            unit_price: ctx.money_or_zero(
                l.get("base_price_money"),
                &format!("{field}.base_price_money"),
            )?,
            discount: ctx.money_or_zero(
                l.get("total_discount_money"),
                &format!("{field}.total_discount_money"),
            )?,
            total: ctx.money(
                l.get("total_money").unwrap_or(&Value::Null),
                &format!("{field}.total_money"),
            )?,
            taxes: tax_lines(l, field)?,
        })
    };

    let mut sale_lines = Vec::new();
    for (j, l) in o
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        sale_lines.push(line(l, &format!(".line_items[{j}]"), "total_money")?);
    }
    let mut return_lines = Vec::new();
    let mut original = None;
    for (r, ret) in o
        .get("returns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(src) = ret.get("source_order_id").and_then(Value::as_str) {
            original = PosTransactionId::parse(src).ok();
        }
        for (j, l) in ret
            .get("return_line_items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            return_lines.push(line(
                l,
                &format!(".returns[{r}].return_line_items[{j}]"),
                "total_money",
            )?);
        }
    }
    let mut tenders = Vec::new();
    for (k, t) in o
        .get("tenders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = match t.get("type").and_then(Value::as_str) {
            Some("CASH") => TenderKind::Cash,
            Some("CARD" | "THIRD_PARTY_CARD") => TenderKind::Card,
            Some("SQUARE_GIFT_CARD") => TenderKind::GiftCard,
            _ => TenderKind::Other,
        };
        tenders.push(Tender {
            kind,
            amount: ctx.money_or_zero(
                t.get("amount_money"),
                &format!(".tenders[{k}].amount_money"),
            )?,
            detail: t.get("type").and_then(Value::as_str).map(str::to_owned),
        });
    }
    if sale_lines.is_empty() && return_lines.is_empty() {
        return Err(ctx.err(
            RecordErrorKind::MissingField,
            ".line_items",
            "an order with no line items and no returns",
        ));
    }
    let make = |tid: PosTransactionId, kind, lines, tenders, original| PosTransaction {
        id: tid,
        location: location.clone(),
        kind,
        state,
        occurred_at,
        updated_at,
        version,
        currency,
        lines,
        tenders,
        original,
    };
    let mut out = Vec::new();
    let has_sale = !sale_lines.is_empty();
    if has_sale {
        out.push(make(
            id.clone(),
            TransactionKind::Sale,
            sale_lines,
            tenders.clone(),
            None,
        ));
    }
    if !return_lines.is_empty() {
        let rid = if has_sale {
            PosTransactionId::parse(&format!("{id_text}:return"))
                .map_err(|e| ctx.err(RecordErrorKind::BadIdentifier, ".id", e.to_string()))?
        } else {
            id.clone()
        };
        let t = if has_sale { Vec::new() } else { tenders };
        out.push(make(
            rid,
            TransactionKind::Return,
            return_lines,
            t,
            original,
        ));
    }
    for t in &out {
        let problems = t.problems();
        if let Some(p) = problems.first() {
            let all: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Err(ctx.err(
                RecordErrorKind::Inconsistent,
                &format!(".{}", p.field),
                all.join("; "),
            ));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// webhooks

/// Square's webhook signature check: base64(HMAC-SHA256(key, notification URL + body)) equals
/// the header, compared in constant time (`hmac`'s `verify_slice`). A header that is not
/// base64 is simply a mismatch.
pub fn verify_signature(
    signature_key: &str,
    notification_url: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signature_key.as_bytes()) else {
        return false;
    };
    mac.update(notification_url.as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The hints of a verified event body.
fn hints_of(event: &Value) -> Result<Vec<WebhookHint>, String> {
    let event_id = event
        .get("event_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("no event_id")?
        .to_owned();
    let kind = event.get("type").and_then(Value::as_str).ok_or("no type")?;
    let created_at = event
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|t| Timestamp::parse(t).ok());
    let object = event
        .pointer("/data/object")
        .cloned()
        .unwrap_or(Value::Null);
    let hint = |k: HintKind| WebhookHint {
        event_id: event_id.clone(),
        kind: k,
        created_at,
    };
    let order_field = |key: &str, name: &str| {
        object
            .get(key)
            .and_then(|o| o.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(match kind {
        "inventory.count.updated" => {
            let mut locs = BTreeSet::new();
            let mut vars = BTreeSet::new();
            for c in object
                .get("inventory_counts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(l) = c
                    .get("location_id")
                    .and_then(Value::as_str)
                    .and_then(|l| PosLocationId::parse(l).ok())
                {
                    locs.insert(l);
                }
                if let Some(v) = c
                    .get("catalog_object_id")
                    .and_then(Value::as_str)
                    .and_then(|v| PosVariationId::parse(v).ok())
                {
                    vars.insert(v);
                }
            }
            vec![hint(HintKind::StockChanged {
                locations: locs.into_iter().collect(),
                variations: vars.into_iter().collect(),
            })]
        }
        "order.created" | "order.updated" => {
            let key = if kind == "order.created" {
                "order_created"
            } else {
                "order_updated"
            };
            let order_id = order_field(key, "order_id");
            let mut out = vec![hint(HintKind::SalesChanged {
                transaction: order_id
                    .as_deref()
                    .and_then(|o| PosTransactionId::parse(o).ok()),
                location: order_field(key, "location_id")
                    .and_then(|l| PosLocationId::parse(&l).ok()),
            })];
            if kind == "order.updated"
                && let Some(o) = order_id
            {
                // The store moves a fulfilment in Order Manager, which Square reports only as
                // order.updated: let the fulfilment side re-read the order.
                out.push(hint(HintKind::FulfilmentChanged {
                    external_order_id: o,
                    new_state: None,
                }));
            }
            out
        }
        "order.fulfillment.updated" => {
            let o = object
                .get("order_fulfillment_updated")
                .cloned()
                .unwrap_or(Value::Null);
            let order_id = o
                .get("order_id")
                .and_then(Value::as_str)
                .ok_or("no order_id")?
                .to_owned();
            let new_state = o
                .get("fulfillment_update")
                .and_then(Value::as_array)
                .and_then(|u| u.last())
                .and_then(|u| u.get("new_state"))
                .and_then(Value::as_str)
                .and_then(|s| map_fulfilment_state(s, false));
            vec![hint(HintKind::FulfilmentChanged {
                external_order_id: order_id,
                new_state,
            })]
        }
        "catalog.version.updated" => vec![hint(HintKind::CatalogChanged)],
        k if k.starts_with("location.") => vec![hint(HintKind::LocationsChanged)],
        other => vec![hint(HintKind::Other {
            event_type: other.to_owned(),
        })],
    })
}

impl SquareConnector {
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<WebhookVerdict, PosError> {
        let cfg = self
            .config
            .webhook
            .as_ref()
            .ok_or_else(|| PosError::Config {
                message: "square: no webhook signature key configured".into(),
            })?;
        if cfg.signature_key.expose().is_empty() || cfg.notification_url.is_empty() {
            return Err(PosError::Config {
                message: "square: webhook signature key and notification URL must not be empty"
                    .into(),
            });
        }
        let Some(sig) = request.header(SIGNATURE_HEADER) else {
            return Ok(WebhookVerdict::Rejected {
                rejection: WebhookRejection::MissingSignature,
            });
        };
        // Square signs the URL as registered; the request carries which one it was sent to.
        let url = if request.url.is_empty() {
            cfg.notification_url.as_str()
        } else {
            request.url
        };
        if !verify_signature(cfg.signature_key.expose(), url, request.body, sig) {
            return Ok(WebhookVerdict::Rejected {
                rejection: WebhookRejection::BadSignature,
            });
        }
        let event: Value = match serde_json::from_slice(request.body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(WebhookVerdict::Rejected {
                    rejection: WebhookRejection::Malformed {
                        message: format!("body is not JSON: {e}"),
                    },
                });
            }
        };
        match hints_of(&event) {
            Ok(hints) => Ok(WebhookVerdict::Verified { hints }),
            Err(message) => Ok(WebhookVerdict::Rejected {
                rejection: WebhookRejection::Malformed {
                    message: message.to_owned(),
                },
            }),
        }
    }
}

impl PosConnector for SquareConnector {
    fn id(&self) -> &ConnectorId {
        &self.config.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            stock_snapshot: true,
            stock_changes: true,
            sales: true,
            fulfilment_requests: true,
            fulfilment_status: true,
            webhooks: self.config.webhook.is_some(),
        }
    }

    fn locations(&self) -> BoxFuture<'_, Result<Vec<PosLocation>, PosError>> {
        Box::pin(self.fetch_locations())
    }

    fn stock_snapshot<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        Box::pin(self.read_stock_snapshot(cursor))
    }

    fn stock_changes<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        Box::pin(self.read_stock_changes(cursor))
    }

    fn sales<'a>(&'a self, cursor: &'a PosCursor) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        Box::pin(self.read_sales(cursor))
    }

    fn create_fulfilment<'a>(
        &'a self,
        request: &'a FulfilmentRequest,
    ) -> BoxFuture<'a, Result<FulfilmentReceipt, PosError>> {
        Box::pin(self.submit_fulfilment(request))
    }

    fn fulfilment_status<'a>(
        &'a self,
        reference: &'a FulfilmentRef,
    ) -> BoxFuture<'a, Result<FulfilmentStatus, PosError>> {
        Box::pin(self.read_fulfilment(reference))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<super::CatalogRead, PosError>> {
        Box::pin(self.catalog_variations())
    }

    fn cancel_fulfilment<'a>(
        &'a self,
        reference: &'a FulfilmentRef,
    ) -> BoxFuture<'a, Result<FulfilmentStatus, PosError>> {
        Box::pin(self.withdraw_fulfilment(reference))
    }

    fn verify_webhook(&self, request: &WebhookRequest<'_>) -> Result<WebhookVerdict, PosError> {
        self.verify(request)
    }
}

// ---------------------------------------------------------------------------------------------
// webhook intake: verify, de-duplicate, wake the poller

/// Remembers the last `capacity` event ids, so a redelivered event is recognised.
#[derive(Debug)]
pub struct EventDeduper {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl EventDeduper {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// True the first time an event id is offered (within the window).
    pub fn first_time(&mut self, event_id: &str) -> bool {
        if self.seen.contains(event_id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(event_id.to_owned());
        self.seen.insert(event_id.to_owned());
        true
    }
}

/// What the intake did with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeOutcome {
    /// The HTTP status to answer Square with (200 accepted or duplicate, 401 bad signature,
    /// 400 malformed, 500 when we cannot verify at all).
    pub status: u16,
    /// Hints seen for the first time.
    pub new_hints: Vec<WebhookHint>,
    /// Hints whose event id was already seen.
    pub duplicates: usize,
    pub rejection: Option<WebhookRejection>,
}

/// Feeds (and fulfilment orders) a webhook asked to read early.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlyPoll {
    pub feeds: BTreeSet<Feed>,
    pub orders: BTreeSet<String>,
    pub catalog: bool,
    pub locations: bool,
}

impl EarlyPoll {
    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty() && self.orders.is_empty() && !self.catalog && !self.locations
    }
}

/// The webhook endpoint's logic: verify with the connector, drop duplicates by `event_id`,
/// and record which reads to run early. It never applies a payload as data.
#[derive(Debug)]
pub struct WebhookIntake {
    connector: Arc<SquareConnector>,
    dedupe: Mutex<EventDeduper>,
    pending: Mutex<EarlyPoll>,
    wake: tokio::sync::Notify,
}

impl WebhookIntake {
    pub fn new(connector: Arc<SquareConnector>) -> Self {
        Self {
            connector,
            dedupe: Mutex::new(EventDeduper::new(10_000)),
            pending: Mutex::new(EarlyPoll::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn receive(&self, request: &WebhookRequest<'_>) -> IntakeOutcome {
        let verdict = match self.connector.verify_webhook(request) {
            Ok(v) => v,
            Err(_) => {
                return IntakeOutcome {
                    status: 500,
                    new_hints: Vec::new(),
                    duplicates: 0,
                    rejection: None,
                };
            }
        };
        let hints = match verdict {
            WebhookVerdict::Verified { hints } => hints,
            WebhookVerdict::Rejected { rejection } => {
                let status = if matches!(rejection, WebhookRejection::Malformed { .. }) {
                    400
                } else {
                    401
                };
                return IntakeOutcome {
                    status,
                    new_hints: Vec::new(),
                    duplicates: 0,
                    rejection: Some(rejection),
                };
            }
        };
        let mut fresh = Vec::new();
        let mut duplicates = 0;
        {
            let mut seen = self
                .dedupe
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut first: Option<(String, bool)> = None;
            for h in hints {
                // One event can carry several hints: judge the event once.
                let is_new = match &first {
                    Some((id, new)) if *id == h.event_id => *new,
                    _ => {
                        let new = seen.first_time(&h.event_id);
                        first = Some((h.event_id.clone(), new));
                        new
                    }
                };
                if is_new {
                    fresh.push(h);
                } else {
                    duplicates += 1;
                }
            }
        }
        if !fresh.is_empty() {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for h in &fresh {
                match &h.kind {
                    HintKind::StockChanged { .. } => {
                        p.feeds.insert(Feed::StockChanges);
                    }
                    HintKind::SalesChanged { .. } => {
                        p.feeds.insert(Feed::Sales);
                    }
                    HintKind::FulfilmentChanged {
                        external_order_id, ..
                    } => {
                        p.orders.insert(external_order_id.clone());
                    }
                    HintKind::CatalogChanged => p.catalog = true,
                    HintKind::LocationsChanged => p.locations = true,
                    HintKind::Other { .. } => {}
                }
            }
            drop(p);
            self.wake.notify_one();
        }
        IntakeOutcome {
            status: 200,
            new_hints: fresh,
            duplicates,
            rejection: None,
        }
    }

    /// Takes the pending early-poll requests (empty if none).
    pub fn take_pending(&self) -> EarlyPoll {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Waits until a webhook asks for an early poll, then takes the request.
    pub async fn next_early_poll(&self) -> EarlyPoll {
        loop {
            let p = self.take_pending();
            if !p.is_empty() {
                return p;
            }
            self.wake.notified().await;
        }
    }
}

/// Serves `POST {path}` for Square's webhooks on `listener` (bind it first, so the URL you
/// register is known before the server runs), answering at once from
/// [`WebhookIntake::receive`]. Returns the server handle and the bound address.
pub async fn serve_webhooks(
    intake: Arc<WebhookIntake>,
    listener: std::net::TcpListener,
    path: &str,
) -> std::io::Result<(actix_web::dev::ServerHandle, std::net::SocketAddr)> {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

    async fn handle(
        req: HttpRequest,
        body: web::Bytes,
        intake: web::Data<Arc<WebhookIntake>>,
        url: web::Data<String>,
    ) -> HttpResponse {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let request = WebhookRequest {
            url: url.as_str(),
            headers: &headers,
            body: &body,
        };
        let out = intake.receive(&request);
        let code = actix_web::http::StatusCode::from_u16(out.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(code).finish()
    }

    let url = intake
        .connector
        .config()
        .webhook
        .as_ref()
        .map(|w| w.notification_url.clone())
        .unwrap_or_default();
    let data = web::Data::new(intake);
    let url = web::Data::new(url);
    let path = path.to_owned();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(url.clone())
            .route(&path, web::post().to(handle))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the webhook server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((handle, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
    const URL: &str = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    const KEY: &str = "Ibxx_5AKakO-3qeNVR61Dw";
    const SIG: &str = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";

    /// A Tillbridge order for MUG×2 + TEE×1 split by the seller into two `ENTRY_LIST`
    /// fulfilments in the given states.
    fn split_order(first: &str, second: &str, version: i64) -> Value {
        json!({
            "id": "ORDER1", "version": version, "updated_at": "2026-01-05T10:00:00Z",
            "line_items": [
                {"uid": "l-mug", "catalog_object_id": "VARMUG", "quantity": "2",
                 "metadata": {"sku": "MUG"}},
                {"uid": "l-tee", "catalog_object_id": "VARTEE", "quantity": "1"}],
            "fulfillments": [
                {"uid": "f-1", "type": "SHIPMENT", "state": first,
                 "line_item_application": "ENTRY_LIST",
                 "entries": [{"uid": "e-1", "line_item_uid": "l-mug", "quantity": "2"}],
                 "shipment_details": {"tracking_number": "RM1", "shipped_at": "2026-01-05T09:30:00Z"}},
                {"uid": "f-2", "type": "SHIPMENT", "state": second,
                 "line_item_application": "ENTRY_LIST",
                 "entries": [{"uid": "e-2", "line_item_uid": "l-tee", "quantity": "1"}],
                 "shipment_details": {}}]
        })
    }

    fn request() -> tillbridge_core::pos::FulfilmentRequestId {
        tillbridge_core::pos::FulfilmentRequestId::parse("100000001").unwrap()
    }

    #[test]
    fn each_completed_part_of_a_split_order_is_a_parcel_and_the_order_completes_with_the_last() {
        let half = status_of(
            &split_order("COMPLETED", "RESERVED", 7),
            request(),
            Some("f-0"),
        )
        .unwrap();
        assert_eq!(half.state, FulfilmentState::Accepted, "one part is left");
        assert_eq!(half.version, 7);
        assert_eq!(
            half.reference.external_fulfilment_id.as_deref(),
            Some("f-0"),
            "the reference stays the one Tillbridge created"
        );
        assert_eq!(
            half.parcels,
            vec![Parcel {
                id: "f-1".into(),
                lines: vec![ParcelLine {
                    variation: PosVariationId::parse("VARMUG").unwrap(),
                    sku: Some(Sku::parse("MUG").unwrap()),
                    quantity: Decimal::from(2),
                }],
                tracking_number: Some("RM1".into()),
                completed_at: Some(Timestamp::parse("2026-01-05T09:30:00Z").unwrap()),
            }]
        );

        let done = status_of(
            &split_order("COMPLETED", "COMPLETED", 8),
            request(),
            Some("f-0"),
        )
        .unwrap();
        assert_eq!(done.state, FulfilmentState::Completed);
        assert_eq!(done.parcels.len(), 2);
        assert_eq!(
            done.parcels[0], half.parcels[0],
            "a parcel reads the same again"
        );
        assert_eq!(done.parcels[1].id, "f-2");
        assert_eq!(
            done.parcels[1].lines,
            vec![ParcelLine {
                variation: PosVariationId::parse("VARTEE").unwrap(),
                sku: None,
                quantity: Decimal::ONE,
            }]
        );
        assert_eq!(done.parcels[1].tracking_number, None);

        // The rest withdrawn after one part went: not completed, and the part stays a parcel.
        let rest = status_of(&split_order("COMPLETED", "CANCELED", 9), request(), None).unwrap();
        assert_eq!(rest.state, FulfilmentState::Cancelled);
        assert_eq!(rest.parcels.len(), 1);
    }

    #[test]
    fn an_order_with_one_all_fulfilment_has_no_parcels() {
        let order = json!({
            "id": "ORDER2", "version": 3, "updated_at": "2026-01-05T10:00:00Z",
            "line_items": [{"uid": "l", "catalog_object_id": "VARMUG", "quantity": "2"}],
            "fulfillments": [{"uid": "f", "type": "SHIPMENT", "state": "COMPLETED",
                "line_item_application": "ALL",
                "shipment_details": {"tracking_number": "RM9"}}]
        });
        let s = status_of(&order, request(), Some("f")).unwrap();
        assert_eq!(s.state, FulfilmentState::Completed);
        assert_eq!(s.tracking_number.as_deref(), Some("RM9"));
        assert!(s.parcels.is_empty());
    }

    #[test]
    fn a_part_naming_a_line_the_order_lacks_is_malformed_and_says_where() {
        let mut order = split_order("COMPLETED", "RESERVED", 7);
        order["fulfillments"][0]["entries"][0]["line_item_uid"] = json!("l-gone");
        let e = status_of(&order, request(), None).unwrap_err();
        assert!(
            e.to_string().contains("fulfillments[0]") && e.to_string().contains("l-gone"),
            "{e}"
        );
    }

    /// Square's published example (square-python-sdk tests/utilities/test_webhooks_helper.py)
    /// and its negative cases.
    #[test]
    fn squares_published_signature_example_verifies_and_its_negatives_fail() {
        assert!(verify_signature(KEY, URL, BODY.as_bytes(), SIG));
        let short_url = &URL[..URL.len() - 1];
        assert!(!verify_signature(KEY, short_url, BODY.as_bytes(), SIG));
        assert!(!verify_signature(
            "MCmhFRxGX82xMwg5FsaoQA",
            URL,
            BODY.as_bytes(),
            SIG
        ));
        assert!(!verify_signature(
            KEY,
            URL,
            BODY.as_bytes(),
            "1z2n3DEJJiUPKcPzQo1ftvbxGdw="
        ));
        let other_date = BODY.replace("2022-07-13T20:30:59", "2022-07-13T20:30:58");
        assert!(!verify_signature(KEY, URL, other_date.as_bytes(), SIG));
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(BODY).unwrap_or(Value::Null),
        )
        .unwrap_or_default();
        assert!(!verify_signature(KEY, URL, pretty.as_bytes(), SIG));
        assert!(!verify_signature(
            KEY,
            URL,
            BODY.as_bytes(),
            "not base64 at all!"
        ));
    }

    #[test]
    fn backoff_doubles_is_capped_jittered_deterministically_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            jitter_seed: 7,
        };
        let d: Vec<Duration> = (1..=6).map(|a| p.delay(a, 3, None)).collect();
        for (i, x) in d.iter().enumerate() {
            let full = Duration::from_millis((100u64 << i).min(1000));
            assert!(
                *x >= full / 2 && *x < full,
                "attempt {} waited {x:?}",
                i + 1
            );
        }
        assert_eq!(d, (1..=6).map(|a| p.delay(a, 3, None)).collect::<Vec<_>>());
        assert_ne!(p.delay(1, 3, None), p.delay(1, 4, None));
        assert_eq!(
            p.delay(1, 3, Some(Duration::from_millis(250))),
            Duration::from_millis(250)
        );
        assert_eq!(
            p.delay(1, 3, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn square_error_bodies_are_classified() {
        let body = serde_json::json!({"errors": [{"category": "INVALID_REQUEST_ERROR",
            "code": "INVALID_CURSOR", "field": "cursor", "detail": "expired"}]});
        assert!(matches!(
            classify(400, &body, None, "x"),
            PosError::InvalidCursor { .. }
        ));
        let auth = serde_json::json!({"errors": [{"category": "AUTHENTICATION_ERROR", "code": "UNAUTHORIZED", "detail": "no"}]});
        let e = classify(401, &auth, None, "GET /v2/locations");
        assert_eq!(
            e,
            PosError::Auth {
                message: "GET /v2/locations: HTTP 401 UNAUTHORIZED: no".into()
            }
        );
        assert!(!e.is_retriable());
        assert!(classify(503, &Value::Null, None, "x").is_retriable());
        assert_eq!(
            classify(429, &Value::Null, Some(Duration::from_secs(2)), "x").retry_after(),
            Some(Duration::from_secs(2))
        );
        let bad = serde_json::json!({"errors": [{"category": "INVALID_REQUEST_ERROR",
            "code": "VALUE_TOO_LONG", "field": "order.reference_id", "detail": "Must be at most 40 characters."}]});
        assert_eq!(
            classify(400, &bad, None, "POST /v2/orders"),
            PosError::InvalidRequest {
                message: "POST /v2/orders: HTTP 400 VALUE_TOO_LONG (order.reference_id): Must be at most 40 characters.".into()
            }
        );
    }

    #[test]
    fn deduper_forgets_only_beyond_its_window() {
        let mut d = EventDeduper::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("a"), "a fell out of the window");
        assert!(!d.first_time("c"));
    }

    #[test]
    fn idempotency_keys_are_stable_and_fit_squares_limits() {
        let k = idempotency_key("pay", "REQ-1", 45);
        assert_eq!(k.len(), 45);
        assert_eq!(k, idempotency_key("pay", "REQ-1", 45));
        assert_ne!(k, idempotency_key("pay", "REQ-2", 45));
        assert!(k.starts_with("tb-pay-"));
    }
}
