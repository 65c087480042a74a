//! Magento Multi-Source Inventory (MSI), as a pure model of one Adobe Commerce 2.4 instance.
//!
//! # The model
//!
//! [`Inventory`] holds the tables of spec §1.1 (`magento-msi-rest.md`): sources, stocks,
//! stock-source links with priorities, website sales channels, catalog products with their
//! legacy stock items, source items (absolute quantity and status), append-only reservations,
//! the stock indexes, MSI's queues, and the sales documents that move stock. Everything changes
//! through service methods named after Magento's (`save_source_items`, `append_reservations`,
//! `ship`, …) that return typed results or a [`MagentoError`] carrying Magento's exact phrase,
//! parameters and aggregated validation errors (spec §8). There is no I/O: time comes in as a
//! [`Timestamp`] parameter, ids are sequences, and the crate builds for
//! `wasm32-unknown-unknown`.
//!
//! # What is reproduced (and where it is pinned down)
//!
//! * **Install defaults and guards** (§1.2): source `default`, stock 1, `default`→1, website
//!   `base`; the default source cannot be disabled, links may not touch the default source or
//!   stock, the default stock and stocks with sales channels cannot be deleted. A website
//!   belongs to one stock; dropped websites fall back to stock 1 ([`structure`]).
//! * **Stock configuration per SKU** with `use_config_*` fallbacks to the global
//!   `cataloginventory/*` values, MSI's `AdaptMinQtyToBackordersPlugin` (a positive threshold
//!   only counts without backorders, a negative one only with them), product-save rules for
//!   `use_config_*`, and `SaveStockItemConfiguration` writing effective values without a
//!   reindex ([`config`], [`catalog`]).
//! * **Source items** (§2.4): bulk upsert of absolute quantities with every validation error,
//!   deletion, atomic decrement, bulk assign/unassign/transfer and partial transfer
//!   ([`source_items`]); `default` items are mirrored into the legacy stock item and stock 1's
//!   status.
//! * **The stock index** (§4.1): materialised rows per stock, rebuilt when Magento rebuilds
//!   them (source item changes, full reindex, the salability queue) — not when reservations are
//!   appended. Stock 1's "index" is the legacy stock status ([`index`]).
//! * **Salable quantity and salability** (§2.6, §4.2, §4.3): `GetProductSalableQty` (index
//!   quantity + reservations − threshold, gated by the index `is_salable`, **never clamped**),
//!   the `IsProductSalable` chain, and the requested-quantity chain with Magento's error codes
//!   and messages (`is_correct_qty-*`, `back_order-disabled`, `manage_stock-enabled`,
//!   `is_salable_with_reservations-*`, `requested-sku-is-not-assigned-to-given-stock`, …),
//!   backorder quantities and the quote-item check ([`salability`]).
//! * **Reservations** (§3): `PlaceReservationsForSalesEvent` with byte-exact metadata, the
//!   filters in front of every append (`can_subtract`, unmanaged stock, unassigned SKUs), the
//!   cleanup cron's grouping rule, and the queue consumers ([`reservations`]).
//! * **Sales flows** (§3.3, §5): placement (salability check, `order_placed` −qty), cancel
//!   (`ordered − max(shipped, invoiced) − canceled`), invoices (virtual items deducted by source
//!   priority, `invoice_created`), shipments (deduction from one source that fails rather than
//!   go below zero, `shipment_created`), credit memos with and without return to stock
//!   (`creditmemo_created`), and re-saving a credit memo without new reservations ([`sales`]).
//! * **Source selection** (§2.7) by priority ([`ssa`]); **search criteria** (§2.3)
//!   ([`search`]).
//! * **The reservation CLI** (§3.6): `list-inconsistencies` and `create-compensations` with
//!   Magento's output text ([`cli`]).
//! * **REST** (§2, §6, §8): [`webapi::dispatch`] maps a method, path and JSON body onto the
//!   model with Magento's input conversion and error bodies; an HTTP server only moves bytes.
//! * **Reservation preview**: [`preview::preview`] replays pending events on a snapshot and
//!   reports salable quantities after each ([`preview`]).
//!
//! Magento's own test suite (159 cases of `magento/inventory`, `shared/vectors/msi/`) runs
//! against this model through [`vectors`]; every case passes.
//!
//! # Using it
//!
//! A shell (the Commerce emulator, the edge service's tests) owns an [`Inventory`] and either
//! calls the service methods or hands it REST requests:
//!
//! ```
//! use rust_decimal::Decimal;
//! use serde_json::json;
//! use tillbridge_core::inventory::webapi::{RestRequest, dispatch};
//! use tillbridge_core::inventory::{Inventory, ProductType, Sku, StockId, Timestamp};
//! use tillbridge_core::inventory::catalog::ProductInput;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut inv = Inventory::new();
//! inv.create_product(&ProductInput::new(Sku::parse("A")?, ProductType::Simple))?;
//! let now = Timestamp::parse("2024-05-01 10:00:00")?;
//!
//! // POST /V1/inventory/source-items, exactly as Magento answers it.
//! let push = RestRequest {
//!     method: "POST".into(),
//!     path: "/rest/V1/inventory/source-items".into(),
//!     body: Some(json!({"sourceItems": [
//!         {"sku": "A", "source_code": "default", "quantity": 12, "status": 1}
//!     ]})),
//! };
//! let response = dispatch(&mut inv, &push, &now);
//! assert_eq!((response.status, response.body), (200, json!([])));
//!
//! // A validation failure carries Magento's error body.
//! let bad = RestRequest { body: Some(json!({"sourceItems": [{"sku": "A"}]})), ..push };
//! let response = dispatch(&mut inv, &bad, &now);
//! assert_eq!(response.status, 400);
//! assert_eq!(response.body["message"], "Validation Failed: \"source_code\" can not be empty.");
//!
//! // The same model, called directly.
//! assert_eq!(inv.get_product_salable_qty("A", StockId::DEFAULT)?, Decimal::from(12));
//! # Ok(())
//! # }
//! ```
//!
//! # Deliberate limits
//!
//! Quantities are exact decimals (4-decimal columns); Magento's doubles agree for such
//! inputs. Store-scoped configuration is stored but the services read the default scope (as
//! Magento's tests do with the default store current). The distance source-selection algorithm,
//! in-store pickup, low-stock notifications and asynchronous order placement are not modelled.
//! Source codes compare case-sensitively; SKUs compare case-insensitively (MySQL collation).

pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod ids;
pub mod index;
pub mod model;
pub mod num;
pub mod preview;
pub mod reservations;
pub mod salability;
pub mod sales;
pub mod search;
pub mod source_items;
pub mod ssa;
pub mod structure;
#[cfg(test)]
mod tests;
pub mod vectors;
pub mod webapi;

pub use config::{GlobalConfig, LegacyStockItem, StockItemConfiguration, StockItemFields};
pub use error::{ErrorKind, MagentoError, Phrase, PhraseParams};
pub use ids::{
    IdError, OrderIncrementId, ProductType, Sku, SkuKey, SourceCode, StockId, StoreCode, Timestamp,
    WebsiteCode,
};
pub use model::{
    IndexRow, Inventory, Product, QueueMessage, Reservation, SalesChannel, Source, SourceItem,
    SourceItemStatus, Stock, StockSourceLink, Website,
};
pub use reservations::{NewReservation, SalesEvent};
pub use salability::{IsSalableResult, QuoteItemQtyCheck, RequestedQtyResult, SalabilityError};
pub use sales::{
    DocumentLine, ItemRef, OrderId, OrderLine, OrderState, PlaceOrderRequest, ReturnToStock,
};
pub use source_items::SourceItemInput;
pub use structure::{LinkInput, SalesChannelInput, SourceInput, StockInput, StockView};
