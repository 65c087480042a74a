//! The typed Commerce client: one method per REST call, all through one executor.
//!
//! The executor ([`CommerceClient`]'s private `execute`) does, for every attempt: take a token
//! from the shared [`Budget`], authorize (bearer, cached admin token, or an OAuth signature
//! with a fresh nonce), send with the per-attempt timeout, classify the answer (`retry`),
//! feed the budget's AIMD hooks (success; 429/5xx/timeout/slow = throttle), and either return,
//! renew the admin token once after a 401, fail permanently, or wait and retry. Writes that
//! are not idempotent are probed before a retry (`idempotency`). Every call ends with one
//! [`CallRecord`] handed to the observer and carried by its error.
//!
//! URLs: `<base_url>/rest[/<store>]/V1/...` for synchronous calls, and
//! `<base_url>/rest/<store or "default">/async[/bulk]/V1/...` for asynchronous ones. Path
//! segments (SKUs) are percent-encoded.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tillbridge_core::inventory::num::{decimal_from_json, decimal_to_json};
use tillbridge_core::inventory::{Sku, SourceCode, StockId, StoreCode};

use super::auth::{Credentials, NonceSource, Secret, oauth_header, unix_now};
use super::budget::Budget;
use super::errors::{CommerceError, ErrorKind, MagentoErrorBody};
use super::idempotency::{DocumentKind, Guard, IdempotencyKey, Probe};
use super::observe::{CallObserver, CallOutcome, CallRecord, NoObserver};
use super::retry::{RetryPolicy, StatusClass, Transport, classify_status, parse_retry_after};
use super::search::{Condition, Direction, Filter, SearchCriteria, encode_component, encode_query};
use super::types::{
    AsyncResponse, BulkStatus, Created, CreditMemo, CreditmemoId, DocumentLine, Invoice, InvoiceId,
    InvoiceRequest, NewReservation, Order, OrderComment, OrderId, OrderProgress, ProductSalability,
    RefundRequest, RequestedQtySalability, Reservation, ReservationInconsistency, SearchResults,
    ShipRequest, Shipment, ShipmentId, SkuQty, Source, SourceItem, SourceItemKey, StatusHistory,
    Stock, StockSourceLink,
};

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where `/rest` lives: `https://shop.example.com` (a path prefix is kept).
    pub base_url: String,
    /// Store view code in the path (`None`: `/rest/V1/...`, the default store view).
    pub store_code: Option<StoreCode>,
    /// How to authenticate.
    pub credentials: Credentials,
    /// Per attempt, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// To open a connection.
    pub connect_timeout: Duration,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// Items per list in a synchronous request (Magento's input limit, default 20; `None`:
    /// unchecked). A longer list is refused before it is sent.
    pub sync_input_limit: Option<usize>,
    /// Items per list in an asynchronous request (default 5 000).
    pub async_input_limit: Option<usize>,
    /// Page size the paging helpers use when the criteria set none (Magento's maximum is
    /// 300).
    pub default_page_size: u32,
    /// The paging helpers stop with an error after this many pages.
    pub max_pages: u32,
    /// `User-Agent`.
    pub user_agent: String,
}

impl ClientConfig {
    /// Defaults: 30 s per attempt, 5 s to connect, 5 attempts, input limits 20 / 5 000,
    /// pages of 100.
    pub fn new(base_url: &str, credentials: Credentials) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            store_code: None,
            credentials,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            sync_input_limit: Some(20),
            async_input_limit: Some(5000),
            default_page_size: 100,
            max_pages: 10_000,
            user_agent: concat!("tillbridge/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A value with the record of the call that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Called<T> {
    /// The value.
    pub value: T,
    /// The call.
    pub record: CallRecord,
}

/// Which URL family a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Sync,
    Async,
    AsyncBulk,
}

/// How a call may be retried.
#[derive(Debug)]
enum Safety<'a> {
    /// A read.
    Read,
    /// Applying twice is applying once.
    Idempotent,
    /// A delete: a 404 after an attempt that may have been applied means done.
    Delete,
    /// Not idempotent: probe after a failure that may have been applied.
    Guarded(Guard<'a>),
    /// Not idempotent and no probe: a failure that may have been applied is ambiguous.
    Unguarded,
}

/// One call to make.
#[derive(Debug)]
struct Call<'a> {
    method: Method,
    route: &'static str,
    prefix: Prefix,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    safety: Safety<'a>,
    key: Option<&'a IdempotencyKey>,
    authenticated: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, route: &'static str, path: String) -> Self {
        let safety = if method == Method::GET {
            Safety::Read
        } else {
            Safety::Idempotent
        };
        Self {
            method,
            route,
            prefix: Prefix::Sync,
            path,
            query: Vec::new(),
            body: None,
            safety,
            key: None,
            authenticated: true,
        }
    }

    fn get(route: &'static str, path: String) -> Self {
        Self::new(Method::GET, route, path)
    }

    fn post(route: &'static str, path: String, body: Value) -> Self {
        Self::new(Method::POST, route, path).body(body)
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }

    fn key(mut self, key: &'a IdempotencyKey) -> Self {
        self.key = Some(key);
        self
    }

    fn safety(mut self, safety: Safety<'a>) -> Self {
        self.safety = safety;
        self
    }

    fn prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }
}

/// An item type with a `getList` route.
pub trait Searchable: DeserializeOwned + Send {
    /// The route (`/V1/inventory/source-items`).
    const PATH: &'static str;
    /// Whether Magento requires `searchCriteria` on it.
    const CRITERIA_REQUIRED: bool;
}

macro_rules! searchable {
    ($t:ty, $path:literal, $required:literal) => {
        impl Searchable for $t {
            const PATH: &'static str = $path;
            const CRITERIA_REQUIRED: bool = $required;
        }
    };
}

searchable!(Source, "/V1/inventory/sources", false);
searchable!(Stock, "/V1/inventory/stocks", false);
searchable!(StockSourceLink, "/V1/inventory/stock-source-links", true);
searchable!(SourceItem, "/V1/inventory/source-items", true);
searchable!(Order, "/V1/orders", true);
searchable!(Shipment, "/V1/shipments", true);
searchable!(Invoice, "/V1/invoices", true);
searchable!(CreditMemo, "/V1/creditmemos", true);

/// The position of the order poll: the last order seen, by `updated_at` then `entity_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct OrderCursor {
    /// `updated_at` of the last order seen (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub updated_at: String,
    /// Its `entity_id` (0: start at the first order of that second).
    pub entity_id: u64,
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    fetched: Instant,
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    http: reqwest::Client,
    budget: Budget,
    observer: Arc<dyn CallObserver>,
    calls: AtomicU64,
    nonces: NonceSource,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    generations: AtomicU64,
}

/// The Commerce REST client. Cheap to clone; clones share the connection pool, the budget,
/// the admin token and the call counter.
#[derive(Debug, Clone)]
pub struct CommerceClient {
    inner: Arc<Inner>,
    /// Guarded writes through this handle repeat an earlier call (see
    /// [`CommerceClient::repeating`]).
    repeat: bool,
}

type Answer = Result<(u16, Option<Duration>, Vec<u8>), (Transport, String)>;

fn seg(text: &str) -> String {
    encode_component(text)
}

fn lines_json(lines: &[DocumentLine]) -> Value {
    serde_json::to_value(lines).unwrap_or(Value::Array(Vec::new()))
}

fn comment_json(text: String) -> Value {
    json!({"comment": text, "is_visible_on_front": 0})
}

fn put_decimal(map: &mut Map<String, Value>, key: &str, value: Option<Decimal>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), decimal_to_json(v));
    }
}

impl CommerceClient {
    /// A client drawing from `budget` (clone one budget into every client that talks to the
    /// same Commerce).
    pub fn new(config: ClientConfig, budget: Budget) -> Result<Self, CommerceError> {
        Self::with_observer(config, budget, Arc::new(NoObserver))
    }

    /// A client that hands the record of every call to `observer`.
    pub fn with_observer(
        config: ClientConfig,
        budget: Budget,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, CommerceError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| Self::config_error(&format!("HTTP client: {e}")))?;
        url::Url::parse(&config.base_url)
            .map_err(|e| Self::config_error(&format!("base URL {:?}: {e}", config.base_url)))?;
        let seed = config.retry.seed ^ unix_now();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                budget,
                observer,
                calls: AtomicU64::new(0),
                nonces: NonceSource::new(seed),
                token: tokio::sync::Mutex::new(None),
                generations: AtomicU64::new(0),
            }),
            repeat: false,
        })
    }

    /// A handle whose guarded writes (documents, order comments, cancels, reservations) repeat
    /// an earlier call whose outcome is unknown — a retry after its answer was lost, or a
    /// command sent again after a restart: each runs its probe before sending, and a write
    /// the probe finds (its key's marker) answers without being sent again. Shares
    /// everything else with `self`.
    #[must_use]
    pub fn repeating(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            repeat: true,
        }
    }

    fn config_error(message: &str) -> CommerceError {
        CommerceError::new(
            ErrorKind::InvalidRequest {
                message: message.to_owned(),
            },
            CallRecord {
                call_id: 0,
                method: "-",
                route: "(configuration)",
                path: String::new(),
                status: None,
                attempts: 0,
                elapsed: Duration::ZERO,
                budget_wait: Duration::ZERO,
                idempotency_key: None,
                outcome: CallOutcome::Failed,
            },
        )
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The shared budget (for its hooks and counters).
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    // ----- the executor ----------------------------------------------------------------------

    fn url_for(&self, call: &Call<'_>) -> Result<url::Url, String> {
        let c = &self.inner.config;
        let store = c.store_code.as_ref().map(|s| seg(s.as_str()));
        let rest = match (call.prefix, store) {
            (Prefix::Sync, None) => "/rest".to_owned(),
            (Prefix::Sync, Some(s)) => format!("/rest/{s}"),
            (Prefix::Async, s) => format!("/rest/{}/async", s.as_deref().unwrap_or("default")),
            (Prefix::AsyncBulk, s) => {
                format!("/rest/{}/async/bulk", s.as_deref().unwrap_or("default"))
            }
        };
        let mut text = format!("{}{rest}{}", c.base_url, call.path);
        if !call.query.is_empty() {
            text.push('?');
            text.push_str(&encode_query(&call.query));
        }
        url::Url::parse(&text).map_err(|e| format!("URL {text:?}: {e}"))
    }

    fn record(&self, call: &Call<'_>, call_id: u64, path: String) -> CallRecord {
        CallRecord {
            call_id,
            method: method_name(&call.method),
            route: call.route,
            path,
            status: None,
            attempts: 0,
            elapsed: Duration::ZERO,
            budget_wait: Duration::ZERO,
            idempotency_key: call.key.cloned(),
            outcome: CallOutcome::Failed,
        }
    }

    fn finish(&self, mut record: CallRecord, start: Instant, outcome: CallOutcome) -> CallRecord {
        record.elapsed = start.elapsed();
        record.outcome = outcome;
        self.inner.observer.record(&record);
        record
    }

    fn fail(&self, record: CallRecord, start: Instant, kind: ErrorKind) -> CommerceError {
        CommerceError::new(kind, self.finish(record, start, CallOutcome::Failed))
    }

    async fn send_once(
        &self,
        call: &Call<'_>,
        url: &url::Url,
        authorization: Option<&Secret>,
    ) -> Answer {
        let c = &self.inner.config;
        let mut rb = self
            .inner
            .http
            .request(call.method.clone(), url.clone())
            .timeout(c.request_timeout)
            .header(ACCEPT, "application/json");
        if let Some(a) = authorization {
            let mut value = HeaderValue::from_str(a.expose()).map_err(|_| {
                (
                    Transport::Connect,
                    "the credentials are not a valid header".to_owned(),
                )
            })?;
            value.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, value);
        }
        if let Some(k) = call.key {
            rb = rb.header("X-Tillbridge-Idempotency-Key", k.as_str());
        }
        if let Some(b) = &call.body {
            let bytes = serde_json::to_vec(b).unwrap_or_default();
            rb = rb.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let classify = |e: &reqwest::Error| {
            if e.is_connect() {
                Transport::Connect
            } else if e.is_timeout() {
                Transport::Timeout
            } else {
                Transport::Broken
            }
        };
        match rb.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                match res.bytes().await {
                    Ok(b) => Ok((status, retry_after, b.to_vec())),
                    Err(e) => {
                        let t = if e.is_timeout() {
                            Transport::Timeout
                        } else {
                            Transport::Broken
                        };
                        Err((t, error_chain(&e)))
                    }
                }
            }
            Err(e) => {
                let t = classify(&e);
                Err((t, error_chain(&e)))
            }
        }
    }

    async fn authorization(
        &self,
        call: &Call<'_>,
        url: &url::Url,
    ) -> Result<Option<(Secret, u64)>, CommerceError> {
        if !call.authenticated {
            return Ok(None);
        }
        match &self.inner.config.credentials {
            Credentials::None => Ok(None),
            Credentials::Bearer(t) => Ok(Some((Secret::new(format!("Bearer {}", t.expose())), 0))),
            Credentials::Admin { .. } => {
                let (token, generation) = self.admin_token_with_generation().await?;
                Ok(Some((
                    Secret::new(format!("Bearer {}", token.expose())),
                    generation,
                )))
            }
            Credentials::OAuth(creds) => {
                let nonce = self.inner.nonces.next();
                Ok(Some((
                    oauth_header(
                        creds,
                        call.method.as_str(),
                        url,
                        &call.query,
                        &nonce,
                        unix_now(),
                    ),
                    0,
                )))
            }
        }
    }

    /// Runs a call: budget, auth, send, classify, retry, probe, record.
    async fn execute(&self, call: Call<'_>) -> Result<Called<Value>, CommerceError> {
        let start = Instant::now();
        let call_id = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let url = match self.url_for(&call) {
            Ok(u) => u,
            Err(message) => {
                let rec = self.record(&call, call_id, call.path.clone());
                return Err(self.fail(rec, start, ErrorKind::InvalidRequest { message }));
            }
        };
        let mut rec = self.record(&call, call_id, url.path().to_owned());
        if self.repeat
            && let Safety::Guarded(guard) = &call.safety
        {
            match Box::pin(self.probe(guard)).await {
                Probe::Applied(value) => {
                    return Ok(Called {
                        value,
                        record: self.finish(rec, start, CallOutcome::Recovered),
                    });
                }
                Probe::NotApplied => {}
                Probe::Unknown(reason) => {
                    return Err(self.fail(
                        rec,
                        start,
                        ErrorKind::Ambiguous {
                            reason: format!("an earlier attempt may have been applied; {reason}"),
                        },
                    ));
                }
            }
        }
        let policy = self.inner.config.retry.clone();
        let max_attempts = policy.max_attempts.max(1);
        let mut renewed = false;
        let mut maybe_applied_before = false;
        loop {
            rec.attempts += 1;
            rec.budget_wait += self.inner.budget.acquire().await;
            let (auth, generation) = match self.authorization(&call, &url).await {
                Ok(Some((a, g))) => (Some(a), g),
                Ok(None) => (None, 0),
                Err(e) => {
                    // The token call failed; this call fails with its cause.
                    return Err(self.fail(rec, start, e.kind().clone()));
                }
            };
            let sent = Instant::now();
            let answer = self.send_once(&call, &url, auth.as_ref()).await;
            let took = sent.elapsed();
            let (kind, maybe_applied, retry_after) = match answer {
                Ok((status, retry_after, bytes)) => {
                    rec.status = Some(status);
                    match classify_status(status) {
                        StatusClass::Success => {
                            if self.inner.budget.is_slow(took) {
                                self.inner.budget.on_throttle(None);
                            } else {
                                self.inner.budget.on_success();
                            }
                            let value = if bytes.iter().all(u8::is_ascii_whitespace) {
                                Ok(Value::Null)
                            } else {
                                serde_json::from_slice::<Value>(&bytes)
                            };
                            return match value {
                                Ok(value) => Ok(Called {
                                    value,
                                    record: self.finish(rec, start, CallOutcome::Ok),
                                }),
                                Err(e) => Err(self.fail(
                                    rec,
                                    start,
                                    ErrorKind::Decode {
                                        message: format!("the answer is not JSON: {e}"),
                                    },
                                )),
                            };
                        }
                        StatusClass::Unauthorized => {
                            let body = MagentoErrorBody::parse(&bytes, status);
                            let renewable = call.authenticated
                                && matches!(
                                    self.inner.config.credentials,
                                    Credentials::Admin { .. }
                                );
                            if renewable && !renewed {
                                renewed = true;
                                self.forget_admin_token(generation).await;
                                continue;
                            }
                            return Err(self.fail(
                                rec,
                                start,
                                ErrorKind::Unauthorized {
                                    body: Box::new(body),
                                },
                            ));
                        }
                        StatusClass::Permanent => {
                            let body = MagentoErrorBody::parse(&bytes, status);
                            // A refusal after an attempt that may have run can be that attempt
                            // landing late ("The order does not allow a shipment to be
                            // created."): look once more before reporting it.
                            if maybe_applied_before
                                && let Safety::Guarded(guard) = &call.safety
                                && let Probe::Applied(value) = Box::pin(self.probe(guard)).await
                            {
                                return Ok(Called {
                                    value,
                                    record: self.finish(rec, start, CallOutcome::Recovered),
                                });
                            }
                            if status == 404
                                && matches!(call.safety, Safety::Delete)
                                && maybe_applied_before
                                && !body.is_route_not_found()
                            {
                                // The earlier attempt deleted it.
                                return Ok(Called {
                                    value: json!([]),
                                    record: self.finish(rec, start, CallOutcome::Recovered),
                                });
                            }
                            return Err(self.fail(
                                rec,
                                start,
                                ErrorKind::Rejected {
                                    status,
                                    body: Box::new(body),
                                },
                            ));
                        }
                        StatusClass::Retriable {
                            maybe_applied,
                            throttled,
                        } => {
                            if throttled {
                                // A `Retry-After` holds every caller, capped like the
                                // call's own wait.
                                self.inner.budget.on_throttle(
                                    retry_after
                                        .filter(|_| status == 429)
                                        .map(|r| r.min(policy.max_retry_after)),
                                );
                            }
                            let kind = if status == 429 {
                                ErrorKind::Throttled { retry_after }
                            } else {
                                ErrorKind::Server {
                                    status,
                                    body: Box::new(MagentoErrorBody::parse(&bytes, status)),
                                }
                            };
                            (kind, maybe_applied, retry_after)
                        }
                    }
                }
                Err((transport, message)) => {
                    let kind = match transport {
                        Transport::Timeout => {
                            self.inner.budget.on_throttle(None);
                            ErrorKind::Timeout {
                                timeout: self.inner.config.request_timeout,
                            }
                        }
                        Transport::Connect | Transport::Broken => ErrorKind::Connection { message },
                    };
                    (kind, transport.maybe_applied(), None)
                }
            };
            maybe_applied_before |= maybe_applied;
            let last = rec.attempts >= max_attempts;
            let probe = maybe_applied && matches!(call.safety, Safety::Guarded(_));
            if maybe_applied && matches!(call.safety, Safety::Unguarded) {
                return Err(self.fail(
                    rec,
                    start,
                    ErrorKind::Ambiguous {
                        reason: format!("{kind}; this call has no probe"),
                    },
                ));
            }
            if last && !probe {
                return Err(self.fail(rec, start, kind));
            }
            tokio::time::sleep(policy.delay(call_id, rec.attempts, retry_after)).await;
            if let Safety::Guarded(guard) = &call.safety
                && maybe_applied
            {
                match Box::pin(self.probe(guard)).await {
                    Probe::Applied(value) => {
                        return Ok(Called {
                            value,
                            record: self.finish(rec, start, CallOutcome::Recovered),
                        });
                    }
                    Probe::NotApplied if last => return Err(self.fail(rec, start, kind)),
                    Probe::NotApplied => {}
                    Probe::Unknown(reason) => {
                        return Err(self.fail(
                            rec,
                            start,
                            ErrorKind::Ambiguous {
                                reason: format!("{kind}; then {reason}"),
                            },
                        ));
                    }
                }
            }
        }
    }

    async fn value(&self, call: Call<'_>) -> Result<Value, CommerceError> {
        self.execute(call).await.map(|c| c.value)
    }

    async fn typed<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, CommerceError> {
        let called = self.execute(call).await?;
        serde_json::from_value::<T>(called.value).map_err(|e| {
            CommerceError::new(
                ErrorKind::Decode {
                    message: format!("unexpected answer shape: {e}"),
                },
                CallRecord {
                    outcome: CallOutcome::Failed,
                    ..called.record
                },
            )
        })
    }

    fn refuse(
        &self,
        route: &'static str,
        key: Option<&IdempotencyKey>,
        message: String,
    ) -> CommerceError {
        let mut call = Call::new(Method::POST, route, route.to_owned());
        call.key = key;
        let rec = self.record(&call, 0, route.to_owned());
        self.fail(rec, Instant::now(), ErrorKind::InvalidRequest { message })
    }

    fn check_list(
        &self,
        route: &'static str,
        key: &IdempotencyKey,
        len: usize,
        limit: Option<usize>,
    ) -> Result<(), CommerceError> {
        if len == 0 {
            return Err(self.refuse(route, Some(key), "Input data is empty".to_owned()));
        }
        if let Some(max) = limit
            && len > max
        {
            return Err(self.refuse(
                route,
                Some(key),
                format!("{len} items exceed the input limit of {max} per request; split the list"),
            ));
        }
        Ok(())
    }

    // ----- raw access ------------------------------------------------------------------------

    /// Any call, for routes this client does not wrap. `GET`, `PUT` and `DELETE` are retried
    /// as idempotent; a `POST` that may have been applied is not retried (it fails as
    /// ambiguous).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: Vec<(String, String)>,
        body: Option<Value>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Called<Value>, CommerceError> {
        let safety = if method == Method::GET {
            Safety::Read
        } else if method == Method::POST {
            Safety::Unguarded
        } else {
            Safety::Idempotent
        };
        let mut call = Call::new(method, "(raw)", path.to_owned())
            .query(query)
            .safety(safety);
        call.body = body;
        call.key = key;
        self.execute(call).await
    }

    // ----- auth ------------------------------------------------------------------------------

    async fn admin_token_with_generation(&self) -> Result<(Secret, u64), CommerceError> {
        let Credentials::Admin {
            username,
            password,
            max_age,
        } = &self.inner.config.credentials
        else {
            return Err(self.refuse(
                "/V1/integration/admin/token",
                None,
                "the client has no admin credentials".to_owned(),
            ));
        };
        let mut slot = self.inner.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.fetched.elapsed() < *max_age
        {
            return Ok((t.token.clone(), t.generation));
        }
        let token = Box::pin(self.fetch_admin_token(username, password)).await?;
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some(CachedToken {
            token: token.clone(),
            fetched: Instant::now(),
            generation,
        });
        Ok((token, generation))
    }

    async fn forget_admin_token(&self, generation: u64) {
        let mut slot = self.inner.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.generation == generation) {
            *slot = None;
        }
    }

    /// `POST /V1/integration/admin/token`: a new admin token for these credentials.
    pub async fn fetch_admin_token(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<Secret, CommerceError> {
        let mut call = Call::post(
            "/V1/integration/admin/token",
            "/V1/integration/admin/token".to_owned(),
            json!({"username": username, "password": password.expose()}),
        );
        call.authenticated = false;
        self.typed::<String>(call).await.map(Secret::new)
    }

    /// The cached admin token (fetched when missing or older than its `max_age`).
    pub async fn admin_token(&self) -> Result<Secret, CommerceError> {
        self.admin_token_with_generation().await.map(|(t, _)| t)
    }

    // ----- search and paging -----------------------------------------------------------------

    /// One page of a `getList` route.
    pub async fn search<T: Searchable>(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<T>, CommerceError> {
        let query = if T::CRITERIA_REQUIRED {
            criteria.required_query_pairs()
        } else {
            criteria.query_pairs()
        };
        self.typed(Call::get(T::PATH, T::PATH.to_owned()).query(query))
            .await
    }

    /// The pages of a search, one request each (page size: the criteria's, else the
    /// configured default).
    pub fn pages<T: Searchable>(&self, criteria: SearchCriteria) -> Pages<'_, T> {
        let size = criteria
            .page_size
            .unwrap_or(self.inner.config.default_page_size)
            .max(1);
        Pages {
            client: self,
            page: criteria.current_page.unwrap_or(1).max(1),
            criteria: criteria.page_size(size),
            seen: 0,
            done: false,
            _item: PhantomData,
        }
    }

    /// Every item of a search, page by page.
    pub async fn search_all<T: Searchable>(
        &self,
        criteria: SearchCriteria,
    ) -> Result<Vec<T>, CommerceError> {
        let mut pages = self.pages::<T>(criteria);
        let mut out = Vec::new();
        while let Some(page) = pages.next_page().await? {
            out.extend(page.items);
        }
        Ok(out)
    }

    // ----- sources, stocks, links ------------------------------------------------------------

    /// `GET /V1/inventory/sources`.
    pub async fn sources(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<Source>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/inventory/sources/:sourceCode`.
    pub async fn source(&self, code: &SourceCode) -> Result<Source, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/sources/:sourceCode",
            format!("/V1/inventory/sources/{}", seg(code.as_str())),
        ))
        .await
    }

    /// `POST /V1/inventory/sources`: creates the source, or updates it when the code exists.
    pub async fn save_source(
        &self,
        key: &IdempotencyKey,
        source: &Source,
    ) -> Result<(), CommerceError> {
        self.value(
            Call::post(
                "/V1/inventory/sources",
                "/V1/inventory/sources".to_owned(),
                json!({"source": source}),
            )
            .key(key),
        )
        .await
        .map(drop)
    }

    /// `PUT /V1/inventory/sources/:sourceCode`.
    pub async fn update_source(
        &self,
        key: &IdempotencyKey,
        source: &Source,
    ) -> Result<(), CommerceError> {
        self.value(
            Call::new(
                Method::PUT,
                "/V1/inventory/sources/:sourceCode",
                format!("/V1/inventory/sources/{}", seg(source.source_code.as_str())),
            )
            .body(json!({"source": source}))
            .key(key),
        )
        .await
        .map(drop)
    }

    /// `GET /V1/inventory/get-sources-assigned-to-stock-ordered-by-priority/:stockId`.
    pub async fn sources_by_priority(&self, stock: StockId) -> Result<Vec<Source>, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/get-sources-assigned-to-stock-ordered-by-priority/:stockId",
            format!(
                "/V1/inventory/get-sources-assigned-to-stock-ordered-by-priority/{}",
                stock.get()
            ),
        ))
        .await
    }

    /// `GET /V1/inventory/stocks`.
    pub async fn stocks(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<Stock>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/inventory/stocks/:stockId`.
    pub async fn stock(&self, id: StockId) -> Result<Stock, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/stocks/:stockId",
            format!("/V1/inventory/stocks/{}", id.get()),
        ))
        .await
    }

    /// `GET /V1/inventory/stock-resolver/website/:code`: the stock selling on a website.
    pub async fn stock_by_website(&self, website: &str) -> Result<Stock, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/stock-resolver/:type/:code",
            format!("/V1/inventory/stock-resolver/website/{}", seg(website)),
        ))
        .await
    }

    /// Saves a stock: `PUT /V1/inventory/stocks/:id` when it has an id (idempotent), else
    /// `POST /V1/inventory/stocks` guarded by its name (the stocks with that name are read
    /// first; a lost answer is recovered by finding the new one). Returns the id.
    pub async fn save_stock(
        &self,
        key: &IdempotencyKey,
        stock: &Stock,
    ) -> Result<StockId, CommerceError> {
        let id: i64 = match stock.stock_id {
            Some(id) => {
                self.typed(
                    Call::new(
                        Method::PUT,
                        "/V1/inventory/stocks/:stockId",
                        format!("/V1/inventory/stocks/{}", id.get()),
                    )
                    .body(json!({"stock": stock}))
                    .key(key),
                )
                .await?
            }
            None => {
                let existing: Vec<StockId> = self
                    .search_all::<Stock>(SearchCriteria::new().eq("name", &stock.name))
                    .await?
                    .into_iter()
                    .filter_map(|s| s.stock_id)
                    .collect();
                self.typed(
                    Call::post(
                        "/V1/inventory/stocks",
                        "/V1/inventory/stocks".to_owned(),
                        json!({"stock": stock}),
                    )
                    .key(key)
                    .safety(Safety::Guarded(Guard::NewStock {
                        name: &stock.name,
                        existing,
                    })),
                )
                .await?
            }
        };
        StockId::parse(id).map_err(|e| {
            self.refuse(
                "/V1/inventory/stocks",
                Some(key),
                format!("Magento answered stock id {id}: {e}"),
            )
        })
    }

    /// `DELETE /V1/inventory/stocks/:stockId`.
    pub async fn delete_stock(
        &self,
        key: &IdempotencyKey,
        id: StockId,
    ) -> Result<(), CommerceError> {
        self.value(
            Call::new(
                Method::DELETE,
                "/V1/inventory/stocks/:stockId",
                format!("/V1/inventory/stocks/{}", id.get()),
            )
            .key(key)
            .safety(Safety::Delete),
        )
        .await
        .map(drop)
    }

    /// `GET /V1/inventory/stock-source-links`.
    pub async fn stock_source_links(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<StockSourceLink>, CommerceError> {
        self.search(criteria).await
    }

    /// `POST /V1/inventory/stock-source-links`.
    pub async fn save_stock_source_links(
        &self,
        key: &IdempotencyKey,
        links: &[StockSourceLink],
    ) -> Result<(), CommerceError> {
        const ROUTE: &str = "/V1/inventory/stock-source-links";
        self.check_list(ROUTE, key, links.len(), self.inner.config.sync_input_limit)?;
        self.value(Call::post(ROUTE, ROUTE.to_owned(), json!({"links": links})).key(key))
            .await
            .map(drop)
    }

    /// `POST /V1/inventory/stock-source-links-delete`.
    pub async fn delete_stock_source_links(
        &self,
        key: &IdempotencyKey,
        links: &[StockSourceLink],
    ) -> Result<(), CommerceError> {
        const ROUTE: &str = "/V1/inventory/stock-source-links-delete";
        self.check_list(ROUTE, key, links.len(), self.inner.config.sync_input_limit)?;
        self.value(
            Call::post(ROUTE, ROUTE.to_owned(), json!({"links": links}))
                .key(key)
                .safety(Safety::Delete),
        )
        .await
        .map(drop)
    }

    // ----- source items ----------------------------------------------------------------------

    /// `GET /V1/inventory/source-items` (one page).
    pub async fn source_items(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<SourceItem>, CommerceError> {
        self.search(criteria).await
    }

    /// `POST /V1/inventory/source-items`: absolute quantities, at most `sync_input_limit`
    /// items (Magento writes all or none).
    pub async fn save_source_items(
        &self,
        key: &IdempotencyKey,
        items: &[SourceItem],
    ) -> Result<(), CommerceError> {
        const ROUTE: &str = "/V1/inventory/source-items";
        self.check_list(ROUTE, key, items.len(), self.inner.config.sync_input_limit)?;
        self.value(Call::post(ROUTE, ROUTE.to_owned(), json!({"sourceItems": items})).key(key))
            .await
            .map(drop)
    }

    /// `POST /V1/inventory/source-items-delete` (unassigns the SKUs from the sources).
    pub async fn delete_source_items(
        &self,
        key: &IdempotencyKey,
        items: &[SourceItemKey],
    ) -> Result<(), CommerceError> {
        const ROUTE: &str = "/V1/inventory/source-items-delete";
        self.check_list(ROUTE, key, items.len(), self.inner.config.sync_input_limit)?;
        self.value(
            Call::post(ROUTE, ROUTE.to_owned(), json!({"sourceItems": items}))
                .key(key)
                .safety(Safety::Delete),
        )
        .await
        .map(drop)
    }

    /// `POST /async/V1/inventory/source-items`: one queued operation (202).
    pub async fn async_save_source_items(
        &self,
        key: &IdempotencyKey,
        items: &[SourceItem],
    ) -> Result<AsyncResponse, CommerceError> {
        const ROUTE: &str = "/async/V1/inventory/source-items";
        self.check_list(ROUTE, key, items.len(), self.inner.config.async_input_limit)?;
        self.typed(
            Call::post(
                ROUTE,
                "/V1/inventory/source-items".to_owned(),
                json!({"sourceItems": items}),
            )
            .prefix(Prefix::Async)
            .key(key),
        )
        .await
    }

    /// `POST /async/bulk/V1/inventory/source-items`: one queued operation per batch (202).
    pub async fn bulk_save_source_items(
        &self,
        key: &IdempotencyKey,
        batches: &[Vec<SourceItem>],
    ) -> Result<AsyncResponse, CommerceError> {
        const ROUTE: &str = "/async/bulk/V1/inventory/source-items";
        self.check_list(
            ROUTE,
            key,
            batches.len(),
            self.inner.config.async_input_limit,
        )?;
        for b in batches {
            self.check_list(ROUTE, key, b.len(), self.inner.config.async_input_limit)?;
        }
        let body: Vec<Value> = batches.iter().map(|b| json!({"sourceItems": b})).collect();
        self.typed(
            Call::post(
                ROUTE,
                "/V1/inventory/source-items".to_owned(),
                Value::Array(body),
            )
            .prefix(Prefix::AsyncBulk)
            .key(key),
        )
        .await
    }

    /// `GET /V1/bulk/:bulkUuid/status`.
    pub async fn bulk_status(&self, bulk_uuid: &str) -> Result<BulkStatus, CommerceError> {
        self.typed(Call::get(
            "/V1/bulk/:bulkUuid/status",
            format!("/V1/bulk/{}/status", seg(bulk_uuid)),
        ))
        .await
    }

    /// `GET /V1/bulk/:bulkUuid/detailed-status`.
    pub async fn bulk_detailed_status(&self, bulk_uuid: &str) -> Result<BulkStatus, CommerceError> {
        self.typed(Call::get(
            "/V1/bulk/:bulkUuid/detailed-status",
            format!("/V1/bulk/{}/detailed-status", seg(bulk_uuid)),
        ))
        .await
    }

    /// `GET /V1/bulk/:bulkUuid/operation-status/:status`: how many operations have a status.
    pub async fn bulk_operation_count(
        &self,
        bulk_uuid: &str,
        status: super::types::OperationStatus,
    ) -> Result<u64, CommerceError> {
        self.typed(Call::get(
            "/V1/bulk/:bulkUuid/operation-status/:status",
            format!(
                "/V1/bulk/{}/operation-status/{}",
                seg(bulk_uuid),
                status.code()
            ),
        ))
        .await
    }

    // ----- salability ------------------------------------------------------------------------

    /// `GET /V1/inventory/get-product-salable-quantity/:sku/:stockId` (not clamped: can be
    /// negative).
    pub async fn salable_quantity(
        &self,
        sku: &Sku,
        stock: StockId,
    ) -> Result<Decimal, CommerceError> {
        let called = self
            .execute(Call::get(
                "/V1/inventory/get-product-salable-quantity/:sku/:stockId",
                format!(
                    "/V1/inventory/get-product-salable-quantity/{}/{}",
                    seg(sku.as_str()),
                    stock.get()
                ),
            ))
            .await?;
        decimal_from_json(&called.value).ok_or_else(|| {
            CommerceError::new(
                ErrorKind::Decode {
                    message: format!("salable quantity is not a number: {}", called.value),
                },
                CallRecord {
                    outcome: CallOutcome::Failed,
                    ..called.record
                },
            )
        })
    }

    /// `GET /V1/inventory/is-product-salable/:sku/:stockId`.
    pub async fn is_product_salable(
        &self,
        sku: &Sku,
        stock: StockId,
    ) -> Result<bool, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/is-product-salable/:sku/:stockId",
            format!(
                "/V1/inventory/is-product-salable/{}/{}",
                seg(sku.as_str()),
                stock.get()
            ),
        ))
        .await
    }

    /// `GET /V1/inventory/are-products-salable?skus[i]=…&stockId=…`.
    pub async fn are_products_salable(
        &self,
        skus: &[Sku],
        stock: StockId,
    ) -> Result<Vec<ProductSalability>, CommerceError> {
        let mut query: Vec<(String, String)> = skus
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("skus[{i}]"), s.as_str().to_owned()))
            .collect();
        query.push(("stockId".to_owned(), stock.get().to_string()));
        self.typed(
            Call::get(
                "/V1/inventory/are-products-salable",
                "/V1/inventory/are-products-salable".to_owned(),
            )
            .query(query),
        )
        .await
    }

    /// `GET /V1/inventory/is-product-salable-for-requested-qty/:sku/:stockId/:requestedQty`.
    pub async fn is_product_salable_for_requested_qty(
        &self,
        sku: &Sku,
        stock: StockId,
        qty: Decimal,
    ) -> Result<RequestedQtySalability, CommerceError> {
        self.typed(Call::get(
            "/V1/inventory/is-product-salable-for-requested-qty/:sku/:stockId/:requestedQty",
            format!(
                "/V1/inventory/is-product-salable-for-requested-qty/{}/{}/{}",
                seg(sku.as_str()),
                stock.get(),
                qty.normalize()
            ),
        ))
        .await
    }

    /// `GET /V1/inventory/are-product-salable-for-requested-qty/` (Magento's spelling and
    /// trailing slash).
    pub async fn are_products_salable_for_requested_qty(
        &self,
        requests: &[SkuQty],
        stock: StockId,
    ) -> Result<Vec<RequestedQtySalability>, CommerceError> {
        let mut query = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            query.push((format!("skuRequests[{i}][sku]"), r.sku.as_str().to_owned()));
            query.push((
                format!("skuRequests[{i}][qty]"),
                r.qty.normalize().to_string(),
            ));
        }
        query.push(("stockId".to_owned(), stock.get().to_string()));
        self.typed(
            Call::get(
                "/V1/inventory/are-product-salable-for-requested-qty/",
                "/V1/inventory/are-product-salable-for-requested-qty/".to_owned(),
            )
            .query(query),
        )
        .await
    }

    // ----- orders ----------------------------------------------------------------------------

    /// `GET /V1/orders` (one page).
    pub async fn orders(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<Order>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/orders/:id`.
    pub async fn order(&self, id: OrderId) -> Result<Order, CommerceError> {
        self.typed(Call::get("/V1/orders/:id", format!("/V1/orders/{}", id.0)))
            .await
    }

    /// The next orders changed after `cursor`, oldest first, and the cursor after them.
    ///
    /// Keyset paging: `updated_at ≥ t AND (updated_at > t OR entity_id > id)`, sorted by
    /// `updated_at` then `entity_id`, always page 1. Unlike page numbers, this neither skips
    /// nor repeats an order when another order is updated while the poll pages (an updated
    /// order moves behind the cursor's end and is read again later, as it should be). An
    /// empty answer returns the same cursor.
    pub async fn orders_changed_since(
        &self,
        cursor: &OrderCursor,
        page_size: u32,
    ) -> Result<(Vec<Order>, OrderCursor), CommerceError> {
        let mut criteria = SearchCriteria::new();
        if !cursor.updated_at.is_empty() {
            criteria = criteria
                .filter("updated_at", Condition::Gteq, &cursor.updated_at)
                .any_of([
                    Filter::new("updated_at", Condition::Gt, &cursor.updated_at),
                    Filter::new("entity_id", Condition::Gt, cursor.entity_id),
                ]);
        }
        let criteria = criteria
            .sort("updated_at", Direction::Asc)
            .sort("entity_id", Direction::Asc)
            .page_size(page_size.max(1))
            .current_page(1);
        let page = self.orders(&criteria).await?;
        let next = page.items.last().map_or_else(
            || cursor.clone(),
            |o| OrderCursor {
                updated_at: o.updated_at.clone().unwrap_or_default(),
                entity_id: o.entity_id.0,
            },
        );
        Ok((page.items, next))
    }

    /// The order's progress now (the baseline of a document write).
    pub async fn order_progress(&self, id: OrderId) -> Result<OrderProgress, CommerceError> {
        self.order(id).await.map(|o| OrderProgress::of(&o))
    }

    /// `GET /V1/orders/:id/comments`.
    pub async fn order_comments(
        &self,
        id: OrderId,
    ) -> Result<SearchResults<StatusHistory>, CommerceError> {
        self.typed(Call::get(
            "/V1/orders/:id/comments",
            format!("/V1/orders/{}/comments", id.0),
        ))
        .await
    }

    /// `POST /V1/orders/:id/comments`, with the key's marker appended to the text.
    pub async fn add_order_comment(
        &self,
        key: &IdempotencyKey,
        id: OrderId,
        comment: &OrderComment,
    ) -> Result<bool, CommerceError> {
        let mut history = json!({
            "comment": key.mark(Some(&comment.comment)),
            "is_customer_notified": i32::from(comment.notify_customer),
            "is_visible_on_front": i32::from(comment.visible_on_front),
            "parent_id": id.0,
        });
        if let (Some(s), Some(obj)) = (&comment.status, history.as_object_mut()) {
            obj.insert("status".to_owned(), json!(s));
        }
        self.typed(
            Call::post(
                "/V1/orders/:id/comments",
                format!("/V1/orders/{}/comments", id.0),
                json!({"statusHistory": history}),
            )
            .key(key)
            .safety(Safety::Guarded(Guard::OrderComment {
                order_id: id,
                marker: key.marker(),
            })),
        )
        .await
    }

    /// `POST /V1/orders/:id/cancel`: `true` if canceled, `false` if Magento could not.
    pub async fn cancel_order(
        &self,
        key: &IdempotencyKey,
        id: OrderId,
    ) -> Result<bool, CommerceError> {
        self.typed(
            Call::post(
                "/V1/orders/:id/cancel",
                format!("/V1/orders/{}/cancel", id.0),
                json!({}),
            )
            .key(key)
            .safety(Safety::Guarded(Guard::Cancel { order_id: id })),
        )
        .await
    }

    async fn baseline(
        &self,
        order_id: OrderId,
        given: Option<&OrderProgress>,
    ) -> Result<OrderProgress, CommerceError> {
        match given {
            Some(b) if b.order_id == order_id => Ok(b.clone()),
            _ => self.order_progress(order_id).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn document<'a>(
        &self,
        kind: DocumentKind,
        route: &'static str,
        path: String,
        body: Value,
        key: &'a IdempotencyKey,
        order_id: OrderId,
        lines: &'a [DocumentLine],
        baseline: OrderProgress,
    ) -> Result<Created<u64>, CommerceError> {
        let called = self
            .execute(
                Call::post(route, path, body)
                    .key(key)
                    .safety(Safety::Guarded(Guard::Document {
                        kind,
                        order_id,
                        marker: key.marker(),
                        lines,
                        baseline,
                    })),
            )
            .await?;
        let recovered = called.record.outcome == CallOutcome::Recovered;
        match (&called.value, recovered) {
            (Value::Null, true) => Ok(Created::AppliedWithoutId),
            (v, _) => match v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            {
                Some(id) if recovered => Ok(Created::Recovered(id)),
                Some(id) => Ok(Created::New(id)),
                None => Err(CommerceError::new(
                    ErrorKind::Decode {
                        message: format!("expected a document id, got {v}"),
                    },
                    CallRecord {
                        outcome: CallOutcome::Failed,
                        ..called.record
                    },
                )),
            },
        }
    }

    /// `POST /V1/order/:orderId/ship`. Not idempotent in Magento; guarded (see
    /// `idempotency`): the key's marker goes into the shipment comment.
    pub async fn ship(
        &self,
        key: &IdempotencyKey,
        order_id: OrderId,
        request: &ShipRequest,
    ) -> Result<Created<ShipmentId>, CommerceError> {
        let baseline = self.baseline(order_id, request.baseline.as_ref()).await?;
        let mut body = Map::new();
        if !request.items.is_empty() {
            body.insert("items".into(), lines_json(&request.items));
        }
        body.insert("notify".into(), json!(request.notify));
        body.insert("appendComment".into(), json!(false));
        body.insert(
            "comment".into(),
            comment_json(key.mark(request.comment.as_deref())),
        );
        if !request.tracks.is_empty() {
            body.insert("tracks".into(), json!(request.tracks));
        }
        if let Some(source) = &request.source_code {
            body.insert(
                "arguments".into(),
                json!({"extension_attributes": {"source_code": source.as_str()}}),
            );
        }
        let created = self
            .document(
                DocumentKind::Shipment,
                "/V1/order/:orderId/ship",
                format!("/V1/order/{}/ship", order_id.0),
                Value::Object(body),
                key,
                order_id,
                &request.items,
                baseline,
            )
            .await?;
        Ok(map_created(created, ShipmentId))
    }

    /// `POST /V1/order/:orderId/invoice`. Guarded like [`CommerceClient::ship`].
    pub async fn invoice(
        &self,
        key: &IdempotencyKey,
        order_id: OrderId,
        request: &InvoiceRequest,
    ) -> Result<Created<InvoiceId>, CommerceError> {
        let baseline = self.baseline(order_id, request.baseline.as_ref()).await?;
        let mut body = Map::new();
        body.insert("capture".into(), json!(request.capture));
        if !request.items.is_empty() {
            body.insert("items".into(), lines_json(&request.items));
        }
        body.insert("notify".into(), json!(request.notify));
        body.insert("appendComment".into(), json!(false));
        body.insert(
            "comment".into(),
            comment_json(key.mark(request.comment.as_deref())),
        );
        let created = self
            .document(
                DocumentKind::Invoice,
                "/V1/order/:orderId/invoice",
                format!("/V1/order/{}/invoice", order_id.0),
                Value::Object(body),
                key,
                order_id,
                &request.items,
                baseline,
            )
            .await?;
        Ok(map_created(created, InvoiceId))
    }

    fn refund_body(key: &IdempotencyKey, request: &RefundRequest) -> Map<String, Value> {
        let mut body = Map::new();
        if !request.items.is_empty() {
            body.insert("items".into(), lines_json(&request.items));
        }
        body.insert("notify".into(), json!(request.notify));
        body.insert("appendComment".into(), json!(false));
        body.insert(
            "comment".into(),
            comment_json(key.mark(request.comment.as_deref())),
        );
        let mut args = Map::new();
        put_decimal(&mut args, "shipping_amount", request.shipping_amount);
        put_decimal(
            &mut args,
            "adjustment_positive",
            request.adjustment_positive,
        );
        put_decimal(
            &mut args,
            "adjustment_negative",
            request.adjustment_negative,
        );
        if !request.return_to_stock_items.is_empty() {
            args.insert(
                "extension_attributes".into(),
                json!({"return_to_stock_items": request.return_to_stock_items}),
            );
        }
        if !args.is_empty() {
            body.insert("arguments".into(), Value::Object(args));
        }
        body
    }

    /// `POST /V1/order/:orderId/refund` (offline credit memo). Guarded like
    /// [`CommerceClient::ship`].
    pub async fn refund_order(
        &self,
        key: &IdempotencyKey,
        order_id: OrderId,
        request: &RefundRequest,
    ) -> Result<Created<CreditmemoId>, CommerceError> {
        let baseline = self.baseline(order_id, request.baseline.as_ref()).await?;
        let created = self
            .document(
                DocumentKind::CreditMemo,
                "/V1/order/:orderId/refund",
                format!("/V1/order/{}/refund", order_id.0),
                Value::Object(Self::refund_body(key, request)),
                key,
                order_id,
                &request.items,
                baseline,
            )
            .await?;
        Ok(map_created(created, CreditmemoId))
    }

    /// `POST /V1/invoice/:invoiceId/refund`. The invoice is read first when the request has
    /// no baseline (to find its order).
    pub async fn refund_invoice(
        &self,
        key: &IdempotencyKey,
        invoice_id: InvoiceId,
        request: &RefundRequest,
        online: bool,
    ) -> Result<Created<CreditmemoId>, CommerceError> {
        let order_id = match &request.baseline {
            Some(b) => b.order_id,
            None => OrderId(self.invoice_by_id(invoice_id).await?.order_id),
        };
        let baseline = self.baseline(order_id, request.baseline.as_ref()).await?;
        let mut body = Self::refund_body(key, request);
        body.insert("isOnline".into(), json!(online));
        let created = self
            .document(
                DocumentKind::CreditMemo,
                "/V1/invoice/:invoiceId/refund",
                format!("/V1/invoice/{}/refund", invoice_id.0),
                Value::Object(body),
                key,
                order_id,
                &request.items,
                baseline,
            )
            .await?;
        Ok(map_created(created, CreditmemoId))
    }

    /// `GET /V1/shipments` (one page).
    pub async fn shipments(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<Shipment>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/shipment/:id`.
    pub async fn shipment(&self, id: ShipmentId) -> Result<Shipment, CommerceError> {
        self.typed(Call::get(
            "/V1/shipment/:id",
            format!("/V1/shipment/{}", id.0),
        ))
        .await
    }

    /// `GET /V1/invoices` (one page).
    pub async fn invoices(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<Invoice>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/invoices/:id`.
    pub async fn invoice_by_id(&self, id: InvoiceId) -> Result<Invoice, CommerceError> {
        self.typed(Call::get(
            "/V1/invoices/:id",
            format!("/V1/invoices/{}", id.0),
        ))
        .await
    }

    /// `GET /V1/creditmemos` (one page).
    pub async fn credit_memos(
        &self,
        criteria: &SearchCriteria,
    ) -> Result<SearchResults<CreditMemo>, CommerceError> {
        self.search(criteria).await
    }

    /// `GET /V1/creditmemo/:id`.
    pub async fn credit_memo(&self, id: CreditmemoId) -> Result<CreditMemo, CommerceError> {
        self.typed(Call::get(
            "/V1/creditmemo/:id",
            format!("/V1/creditmemo/{}", id.0),
        ))
        .await
    }

    // ----- Tillbridge module (spec §3.7) -----------------------------------------------------

    /// `GET /V1/tillbridge/reservations?sku=…&stockId=…`.
    pub async fn reservations(
        &self,
        sku: Option<&Sku>,
        stock: Option<StockId>,
    ) -> Result<Vec<Reservation>, CommerceError> {
        let mut query = Vec::new();
        if let Some(s) = sku {
            query.push(("sku".to_owned(), s.as_str().to_owned()));
        }
        if let Some(s) = stock {
            query.push(("stockId".to_owned(), s.get().to_string()));
        }
        self.typed(
            Call::get(
                "/V1/tillbridge/reservations",
                "/V1/tillbridge/reservations".to_owned(),
            )
            .query(query),
        )
        .await
    }

    /// `GET /V1/tillbridge/reservations-sum/:sku/:stockId`.
    pub async fn reservations_sum(
        &self,
        sku: &Sku,
        stock: StockId,
    ) -> Result<Decimal, CommerceError> {
        let called = self
            .execute(Call::get(
                "/V1/tillbridge/reservations-sum/:sku/:stockId",
                format!(
                    "/V1/tillbridge/reservations-sum/{}/{}",
                    seg(sku.as_str()),
                    stock.get()
                ),
            ))
            .await?;
        decimal_from_json(&called.value).ok_or_else(|| {
            CommerceError::new(
                ErrorKind::Decode {
                    message: format!("reservation sum is not a number: {}", called.value),
                },
                CallRecord {
                    outcome: CallOutcome::Failed,
                    ..called.record
                },
            )
        })
    }

    /// `POST /V1/tillbridge/reservations`: appends (compensation) reservations. Guarded: a
    /// lost answer is recovered by finding rows with the same stock, SKU, quantity and
    /// metadata, so each reservation's metadata must name it uniquely (`object_id`).
    pub async fn append_reservations(
        &self,
        key: &IdempotencyKey,
        reservations: &[NewReservation],
    ) -> Result<(), CommerceError> {
        const ROUTE: &str = "/V1/tillbridge/reservations";
        self.check_list(
            ROUTE,
            key,
            reservations.len(),
            self.inner.config.sync_input_limit,
        )?;
        self.value(
            Call::post(
                ROUTE,
                ROUTE.to_owned(),
                json!({"reservations": reservations}),
            )
            .key(key)
            .safety(Safety::Guarded(Guard::Reservations { rows: reservations })),
        )
        .await
        .map(drop)
    }

    /// `GET /V1/tillbridge/inconsistencies`: what `inventory:reservation:list-inconsistencies
    /// -r` prints, as JSON, one row per order, SKU and stock (accepts a bare list or
    /// `{"items": […]}`).
    pub async fn reservation_inconsistencies(
        &self,
    ) -> Result<Vec<ReservationInconsistency>, CommerceError> {
        let called = self
            .execute(Call::get(
                "/V1/tillbridge/inconsistencies",
                "/V1/tillbridge/inconsistencies".to_owned(),
            ))
            .await?;
        let list = match called.value {
            Value::Object(mut m) => m.remove("items").unwrap_or(Value::Array(Vec::new())),
            other => other,
        };
        serde_json::from_value(list).map_err(|e| {
            CommerceError::new(
                ErrorKind::Decode {
                    message: format!("unexpected answer shape: {e}"),
                },
                CallRecord {
                    outcome: CallOutcome::Failed,
                    ..called.record
                },
            )
        })
    }
}

fn map_created<Id>(c: Created<u64>, f: impl Fn(u64) -> Id) -> Created<Id> {
    match c {
        Created::New(id) => Created::New(f(id)),
        Created::Recovered(id) => Created::Recovered(f(id)),
        Created::AppliedWithoutId => Created::AppliedWithoutId,
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// A transport error with its causes (hyper's "connection closed before message completed",
/// "Connection refused (os error 111)"), without the URL.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = current {
        let part = err.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        current = err.source();
    }
    text
}

/// The paging helper: one page per call to [`Pages::next_page`], until `total_count` items
/// were seen, a page comes back short or empty, or `max_pages` is reached (an error).
///
/// Page numbers are fine for stable data (sources, source items). For data that changes while
/// it is paged (orders polled by `updated_at`), use [`CommerceClient::orders_changed_since`].
#[derive(Debug)]
pub struct Pages<'c, T> {
    client: &'c CommerceClient,
    criteria: SearchCriteria,
    page: u32,
    seen: u64,
    done: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T: Searchable> Pages<'_, T> {
    /// The next page, or `None` when there is no more.
    pub async fn next_page(&mut self) -> Result<Option<SearchResults<T>>, CommerceError> {
        if self.done {
            return Ok(None);
        }
        if self.page > self.client.inner.config.max_pages {
            self.done = true;
            return Err(self.client.refuse(
                T::PATH,
                None,
                format!(
                    "more than {} pages; narrow the search",
                    self.client.inner.config.max_pages
                ),
            ));
        }
        let criteria = self.criteria.clone().current_page(self.page);
        let result = self.client.search::<T>(&criteria).await?;
        let n = result.items.len() as u64;
        self.seen += n;
        self.page += 1;
        let size = u64::from(self.criteria.page_size.unwrap_or(1));
        if n == 0 || self.seen >= result.total_count || n < size {
            self.done = true;
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(result))
    }

    /// Items seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commerce::auth::Secret;

    fn client(store: Option<&str>) -> CommerceClient {
        let mut c = ClientConfig::new(
            "http://127.0.0.1:9/shop/",
            Credentials::Bearer(Secret::new("t")),
        );
        c.store_code = store.map(|s| StoreCode::parse(s).unwrap());
        CommerceClient::new(c, Budget::default()).unwrap()
    }

    #[test]
    fn urls_follow_the_store_and_async_prefixes() {
        let c = client(None);
        let call = Call::get("/V1/x", "/V1/inventory/sources".to_owned())
            .query(vec![("searchCriteria[pageSize]".into(), "5".into())]);
        assert_eq!(
            c.url_for(&call).unwrap().as_str(),
            "http://127.0.0.1:9/shop/rest/V1/inventory/sources?searchCriteria%5BpageSize%5D=5"
        );
        let call =
            Call::get("/V1/x", "/V1/inventory/source-items".to_owned()).prefix(Prefix::AsyncBulk);
        assert_eq!(
            c.url_for(&call).unwrap().as_str(),
            "http://127.0.0.1:9/shop/rest/default/async/bulk/V1/inventory/source-items"
        );
        let c = client(Some("all"));
        let call =
            Call::get("/V1/x", "/V1/inventory/source-items".to_owned()).prefix(Prefix::Async);
        assert_eq!(
            c.url_for(&call).unwrap().as_str(),
            "http://127.0.0.1:9/shop/rest/all/async/V1/inventory/source-items"
        );
        let call = Call::get(
            "/V1/x",
            format!("/V1/inventory/is-product-salable/{}/1", seg("A/B 1")),
        );
        assert_eq!(
            c.url_for(&call).unwrap().path(),
            "/shop/rest/all/V1/inventory/is-product-salable/A%2FB%201/1"
        );
    }

    #[test]
    fn refund_bodies_carry_arguments_only_when_given() {
        let key = IdempotencyKey::parse("r-1").unwrap();
        let body = CommerceClient::refund_body(&key, &RefundRequest::default());
        assert_eq!(
            Value::Object(body),
            json!({"notify": false, "appendComment": false,
                   "comment": {"comment": "[tillbridge:r-1]", "is_visible_on_front": 0}})
        );
        let body = CommerceClient::refund_body(
            &key,
            &RefundRequest {
                items: vec![DocumentLine {
                    order_item_id: 3,
                    qty: Decimal::ONE,
                }],
                return_to_stock_items: vec![3],
                shipping_amount: Some(Decimal::ZERO),
                comment: Some("POS return".into()),
                ..RefundRequest::default()
            },
        );
        assert_eq!(
            Value::Object(body),
            json!({"items": [{"order_item_id": 3, "qty": 1}], "notify": false, "appendComment": false,
                   "comment": {"comment": "POS return\n[tillbridge:r-1]", "is_visible_on_front": 0},
                   "arguments": {"shipping_amount": 0, "extension_attributes": {"return_to_stock_items": [3]}}})
        );
    }

    #[tokio::test]
    async fn oversized_and_empty_lists_are_refused_before_sending() {
        let c = client(None);
        let key = IdempotencyKey::parse("k").unwrap();
        let e = c.save_source_items(&key, &[]).await.unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidRequest { .. }));
        assert_eq!(e.call().attempts, 0);
        let item = SourceItem {
            sku: tillbridge_core::inventory::Sku::parse("A").unwrap(),
            source_code: SourceCode::parse("s").unwrap(),
            quantity: Decimal::ONE,
            status: super::super::types::SourceItemStatus::InStock,
        };
        let e = c
            .save_source_items(&key, &vec![item; 21])
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("21 items exceed the input limit of 20"),
            "{e}"
        );
        assert_eq!(c.budget().snapshot().granted, 0);
    }
}
