//! The Adobe Commerce (Magento 2.4) REST client: MSI inventory, orders and documents, bulk
//! endpoints, tokens, and our module's reservation routes (spec `magento-msi-rest.md`).
//!
//! ```text
//!  callers (stock push, order poll, verification, document writes)
//!      │  typed calls: save_source_items, salable_quantity, orders_changed_since, ship, …
//!      ▼
//!  CommerceClient ── execute ──▶ Budget (one token bucket, AIMD) ──▶ auth (bearer / admin
//!      │                          token / OAuth 1.0a) ──▶ reqwest ──▶ classify (retry)
//!      │                          ◀── backoff with seeded jitter, probe before retrying a
//!      │                              non-idempotent write (idempotency)
//!      └──▶ CallRecord per call ──▶ CallObserver (logs), and inside every CommerceError
//! ```
//!
//! * [`client`]: [`CommerceClient`], one method per call, the executor, the paging helper
//!   ([`Pages`]) and the keyset order poll ([`CommerceClient::orders_changed_since`]).
//! * [`auth`]: [`Secret`], [`Credentials`], OAuth 1.0a signing, admin tokens.
//! * [`search`]: the `searchCriteria` builder and its query-string encoding.
//! * [`budget`]: the shared token bucket with AIMD hooks (`on_success`, `on_throttle`).
//! * [`retry`]: which failures are retried, and the capped exponential backoff.
//! * [`idempotency`]: keys, comment markers and the probes that make every outbound call
//!   idempotent.
//! * [`errors`]: [`CommerceError`] and Magento's error bodies with `%placeholder` rendering.
//! * [`observe`]: [`CallRecord`] and observers.
//! * [`types`]: request and answer shapes (quantities as `Decimal`).
//!
//! ```no_run
//! # async fn push() -> Result<(), Box<dyn std::error::Error>> {
//! use rust_decimal::Decimal;
//! use tillbridge_core::inventory::{Sku, SourceCode, StockId};
//! use tillbridge_edge::commerce::types::{SourceItem, SourceItemStatus};
//! use tillbridge_edge::commerce::{
//!     Budget, BudgetConfig, ClientConfig, CommerceClient, Credentials, IdempotencyKey, Secret,
//! };
//!
//! // One budget per Commerce, cloned into every client and caller.
//! let budget = Budget::new(BudgetConfig::default());
//! let config = ClientConfig::new("https://shop.example.com", Credentials::Bearer(Secret::new("…")));
//! let client = CommerceClient::new(config, budget.clone())?;
//! let tee = Sku::parse("TEE-S")?;
//! let item = SourceItem {
//!     sku: tee.clone(),
//!     source_code: SourceCode::parse("store-01")?,
//!     quantity: Decimal::from(12),
//!     status: SourceItemStatus::InStock,
//! };
//! client.save_source_items(&IdempotencyKey::parse("push:store-01:42")?, &[item]).await?;
//! let salable = client.salable_quantity(&tee, StockId::parse(2)?).await?;
//! # let _ = salable;
//! # Ok(())
//! # }
//! ```
//!
//! The client does no business logic: which quantities to push, which order to ship from
//! which source, and when, is decided by the core and executed by the sync engine. It never
//! splits a list for the caller (a list over Magento's input limit is refused unsent), and it
//! never logs a secret.

pub mod auth;
pub mod budget;
pub mod client;
pub mod errors;
pub mod idempotency;
pub mod observe;
pub mod retry;
pub mod search;
pub mod types;

pub use auth::{Credentials, OAuthCredentials, Secret, SignatureMethod};
pub use budget::{Budget, BudgetConfig, BudgetSnapshot};
pub use client::{Called, ClientConfig, CommerceClient, OrderCursor, Pages, Searchable};
pub use errors::{CommerceError, ErrorKind, MagentoErrorBody, Parameters};
pub use idempotency::IdempotencyKey;
pub use observe::{CallObserver, CallOutcome, CallRecord, MemoryLog, NoObserver, StderrObserver};
pub use retry::RetryPolicy;
pub use search::{Condition, Direction, Filter, SearchCriteria};
