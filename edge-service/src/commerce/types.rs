//! Request and answer shapes of the Commerce calls (spec §2, §3.7, §6), with serde.
//!
//! Quantities and amounts are [`Decimal`] (read from JSON numbers or numeric strings, written
//! as JSON numbers, through `tillbridge_core::inventory::num::json_number`). Identifiers that
//! Magento validates on save are the core's parsed types ([`Sku`], [`SourceCode`],
//! [`StockId`]); order item SKUs stay `String`, because an order line's SKU carries custom
//! option suffixes and may exceed the 64 characters a catalog SKU can have. Fields Magento
//! omits when null are `Option`s; an [`Order`] also keeps its whole JSON (`raw`) for the
//! fields this module does not name (tax, totals, addresses).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tillbridge_core::inventory::num::json_number;
use tillbridge_core::inventory::{Sku, SourceCode, StockId};

pub use tillbridge_core::inventory::sales::{CreditmemoId, InvoiceId, OrderId, ShipmentId};

/// A flag Magento writes as `true`/`false`, `1`/`0` or `"1"`/`"0"`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => Some(n.to_string() != "0"),
        Value::String(s) => Some(!(s.is_empty() || s == "0" || s == "false")),
        _ => None,
    })
}

/// An integer Magento writes as a number or a numeric string.
fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

// ----- inventory ---------------------------------------------------------------------------

/// `status` of a source item (spec §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceItemStatus {
    /// `0`
    OutOfStock,
    /// `1`
    InStock,
}

impl SourceItemStatus {
    /// The column value.
    pub fn code(self) -> u8 {
        match self {
            Self::OutOfStock => 0,
            Self::InStock => 1,
        }
    }
}

impl Serialize for SourceItemStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for SourceItemStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match int_or_string(d)? {
            Some(0) => Ok(Self::OutOfStock),
            Some(1) => Ok(Self::InStock),
            other => Err(D::Error::custom(format!(
                "source item status must be 0 or 1, got {other:?}"
            ))),
        }
    }
}

/// A source item: the absolute quantity of a SKU at a source (spec §2.2, §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceItem {
    /// The SKU.
    pub sku: Sku,
    /// The source.
    pub source_code: SourceCode,
    /// The absolute quantity (never a delta).
    #[serde(with = "json_number")]
    pub quantity: Decimal,
    /// In or out of stock.
    pub status: SourceItemStatus,
}

/// What identifies a source item (the body of `source-items-delete`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceItemKey {
    /// The SKU.
    pub sku: Sku,
    /// The source.
    pub source_code: SourceCode,
}

/// A source (spec §2.2). Only `source_code` is always present in answers; `name`,
/// `country_id` and `postcode` are required on save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The code (primary key).
    pub source_code: SourceCode,
    /// The name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Enabled.
    #[serde(
        default,
        deserialize_with = "flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub enabled: Option<bool>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Latitude.
    #[serde(
        default,
        with = "json_number::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub latitude: Option<Decimal>,
    /// Longitude.
    #[serde(
        default,
        with = "json_number::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub longitude: Option<Decimal>,
    /// ISO country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_id: Option<String>,
    /// Region id.
    #[serde(
        default,
        deserialize_with = "int_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub region_id: Option<i64>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Street.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// Postcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    /// Contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Fax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fax: Option<String>,
    /// Use the default carrier configuration.
    #[serde(
        default,
        deserialize_with = "flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_default_carrier_config: Option<bool>,
    /// Extension attributes (in-store pickup), as Magento sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_attributes: Option<Value>,
}

impl Source {
    /// A source with the fields Magento requires on save.
    pub fn new(source_code: SourceCode, name: &str, country_id: &str, postcode: &str) -> Self {
        Self {
            source_code,
            name: Some(name.to_owned()),
            enabled: Some(true),
            description: None,
            latitude: None,
            longitude: None,
            country_id: Some(country_id.to_owned()),
            region_id: None,
            region: None,
            city: None,
            street: None,
            postcode: Some(postcode.to_owned()),
            contact_name: None,
            email: None,
            phone: None,
            fax: None,
            use_default_carrier_config: None,
            extension_attributes: None,
        }
    }
}

/// A sales channel of a stock (only `website` exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesChannel {
    /// `website`.
    #[serde(rename = "type")]
    pub channel_type: String,
    /// The website code.
    pub code: String,
}

impl SalesChannel {
    /// A website channel.
    pub fn website(code: &str) -> Self {
        Self {
            channel_type: "website".to_owned(),
            code: code.to_owned(),
        }
    }
}

/// `extension_attributes` of a stock.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockExtension {
    /// The websites selling from the stock. On save the list replaces the stock's channels.
    #[serde(default)]
    pub sales_channels: Vec<SalesChannel>,
}

/// A stock (spec §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// The id (absent when creating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_id: Option<StockId>,
    /// The name.
    pub name: String,
    /// Sales channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_attributes: Option<StockExtension>,
}

/// A stock-source link (spec §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSourceLink {
    /// The stock.
    pub stock_id: StockId,
    /// The source.
    pub source_code: SourceCode,
    /// 1 is first.
    pub priority: u32,
}

/// A `getList` answer: one page of items and the total number of matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct SearchResults<T> {
    /// The page.
    #[serde(default)]
    pub items: Vec<T>,
    /// Magento's echo of the criteria.
    #[serde(default)]
    pub search_criteria: Option<Value>,
    /// All matches, not the page size.
    #[serde(default)]
    pub total_count: u64,
}

/// One row of `are-products-salable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSalability {
    /// The SKU as asked.
    pub sku: String,
    /// The stock.
    pub stock_id: StockId,
    /// Salable.
    pub salable: bool,
}

/// An error of the requested-quantity chain (`back_order-disabled`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalabilityError {
    /// The code.
    pub code: String,
    /// The message.
    pub message: String,
}

/// The answer of `is-product-salable-for-requested-qty` (and one row of the bulk variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedQtySalability {
    /// The SKU (bulk variant only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The stock (bulk variant only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_id: Option<StockId>,
    /// `errors` is empty.
    pub salable: bool,
    /// Why not.
    #[serde(default)]
    pub errors: Vec<SalabilityError>,
}

/// A SKU and a quantity (requested-quantity checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuQty {
    /// The SKU.
    pub sku: Sku,
    /// The quantity.
    pub qty: Decimal,
}

// ----- orders and documents ------------------------------------------------------------------

/// An order line (spec §6.8). Quantities default to 0 when absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderItem {
    /// `item_id`.
    pub item_id: u64,
    /// `order_id`.
    #[serde(default)]
    pub order_id: Option<u64>,
    /// The parent line (configurable/bundle children).
    #[serde(default)]
    pub parent_item_id: Option<u64>,
    /// `simple`, `configurable`, `bundle`, `virtual`, ….
    #[serde(default)]
    pub product_type: Option<String>,
    /// The SKU text as ordered.
    #[serde(default)]
    pub sku: String,
    /// The name.
    #[serde(default)]
    pub name: Option<String>,
    /// Virtual line.
    #[serde(default, deserialize_with = "flag")]
    pub is_virtual: Option<bool>,
    /// Ordered.
    #[serde(default, with = "json_number")]
    pub qty_ordered: Decimal,
    /// Invoiced.
    #[serde(default, with = "json_number")]
    pub qty_invoiced: Decimal,
    /// Shipped.
    #[serde(default, with = "json_number")]
    pub qty_shipped: Decimal,
    /// Refunded.
    #[serde(default, with = "json_number")]
    pub qty_refunded: Decimal,
    /// Canceled.
    #[serde(default, with = "json_number")]
    pub qty_canceled: Decimal,
}

/// An order comment (status history row).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusHistory {
    /// Its id.
    #[serde(default)]
    pub entity_id: Option<u64>,
    /// The order.
    #[serde(default)]
    pub parent_id: Option<u64>,
    /// The text.
    #[serde(default)]
    pub comment: Option<String>,
    /// The order status it set.
    #[serde(default)]
    pub status: Option<String>,
    /// When.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Customer notified.
    #[serde(default, deserialize_with = "flag")]
    pub is_customer_notified: Option<bool>,
    /// Shown on the storefront.
    #[serde(default, deserialize_with = "flag")]
    pub is_visible_on_front: Option<bool>,
}

/// An order (spec §6.8): the fields the sync reads, and the whole JSON in `raw`.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// `entity_id`.
    pub entity_id: OrderId,
    /// `increment_id`.
    pub increment_id: String,
    /// `state` (`new`, `processing`, `complete`, `closed`, `canceled`, …).
    pub state: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `created_at` (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub created_at: Option<String>,
    /// `updated_at` (UTC).
    pub updated_at: Option<String>,
    /// `store_id`.
    pub store_id: Option<i64>,
    /// `total_refunded`.
    pub total_refunded: Option<Decimal>,
    /// The lines.
    pub items: Vec<OrderItem>,
    /// Comments, when the answer carries them (`None` when the key is absent).
    pub status_histories: Option<Vec<StatusHistory>>,
    /// The order as Magento sent it.
    pub raw: Value,
}

#[derive(Deserialize)]
struct OrderWire {
    entity_id: u64,
    #[serde(default)]
    increment_id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default, deserialize_with = "int_or_string")]
    store_id: Option<i64>,
    #[serde(default, with = "json_number::option")]
    total_refunded: Option<Decimal>,
    #[serde(default)]
    items: Vec<OrderItem>,
    #[serde(default)]
    status_histories: Option<Vec<StatusHistory>>,
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let w: OrderWire = serde_json::from_value(raw.clone()).map_err(D::Error::custom)?;
        Ok(Self {
            entity_id: OrderId(w.entity_id),
            increment_id: w.increment_id,
            state: w.state,
            status: w.status,
            created_at: w.created_at,
            updated_at: w.updated_at,
            store_id: w.store_id,
            total_refunded: w.total_refunded,
            items: w.items,
            status_histories: w.status_histories,
            raw,
        })
    }
}

/// A line of a shipment, invoice or credit memo (answers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocumentItem {
    /// The order line.
    pub order_item_id: u64,
    /// The quantity.
    #[serde(with = "json_number")]
    pub qty: Decimal,
    /// The SKU.
    #[serde(default)]
    pub sku: Option<String>,
}

/// A comment of a shipment, invoice or credit memo.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DocumentComment {
    /// The text.
    #[serde(default)]
    pub comment: String,
    /// When.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `extension_attributes` of a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ShipmentExtension {
    /// The source it was shipped from (MSI).
    #[serde(default)]
    pub source_code: Option<String>,
}

/// A shipment (spec §6.8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Shipment {
    /// `entity_id`.
    pub entity_id: u64,
    /// The order.
    pub order_id: u64,
    /// `increment_id`.
    #[serde(default)]
    pub increment_id: Option<String>,
    /// Total quantity.
    #[serde(default, with = "json_number::option")]
    pub total_qty: Option<Decimal>,
    /// The lines.
    #[serde(default)]
    pub items: Vec<DocumentItem>,
    /// Comments.
    #[serde(default)]
    pub comments: Vec<DocumentComment>,
    /// The source.
    #[serde(default)]
    pub extension_attributes: Option<ShipmentExtension>,
}

/// An invoice (spec §6.8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Invoice {
    /// `entity_id`.
    pub entity_id: u64,
    /// The order.
    pub order_id: u64,
    /// `increment_id`.
    #[serde(default)]
    pub increment_id: Option<String>,
    /// 1 open, 2 paid, 3 canceled.
    #[serde(default, deserialize_with = "int_or_string")]
    pub state: Option<i64>,
    /// Grand total.
    #[serde(default, with = "json_number::option")]
    pub grand_total: Option<Decimal>,
    /// The lines.
    #[serde(default)]
    pub items: Vec<DocumentItem>,
    /// Comments.
    #[serde(default)]
    pub comments: Vec<DocumentComment>,
}

/// A credit memo (spec §6.8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreditMemo {
    /// `entity_id`.
    pub entity_id: u64,
    /// The order.
    pub order_id: u64,
    /// The invoice refunded, if any.
    #[serde(default)]
    pub invoice_id: Option<u64>,
    /// `increment_id`.
    #[serde(default)]
    pub increment_id: Option<String>,
    /// 1 open, 2 refunded, 3 canceled.
    #[serde(default, deserialize_with = "int_or_string")]
    pub state: Option<i64>,
    /// Grand total.
    #[serde(default, with = "json_number::option")]
    pub grand_total: Option<Decimal>,
    /// The lines.
    #[serde(default)]
    pub items: Vec<DocumentItem>,
    /// Comments.
    #[serde(default)]
    pub comments: Vec<DocumentComment>,
}

/// A line of a ship/invoice/refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentLine {
    /// The order line.
    pub order_item_id: u64,
    /// The quantity.
    #[serde(with = "json_number")]
    pub qty: Decimal,
}

/// A tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Track {
    /// The number.
    pub track_number: String,
    /// The carrier's title.
    pub title: String,
    /// The carrier code (`ups`, `custom`, …).
    pub carrier_code: String,
}

/// What one order line has been through, for telling whether a lost write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineProgress {
    /// `qty_invoiced`.
    pub invoiced: Decimal,
    /// `qty_shipped`.
    pub shipped: Decimal,
    /// `qty_refunded`.
    pub refunded: Decimal,
    /// `qty_canceled`.
    pub canceled: Decimal,
}

/// The document-related state of an order at one moment: the baseline a non-idempotent
/// document write compares against when its answer is lost (see `idempotency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderProgress {
    /// The order.
    pub order_id: OrderId,
    /// `state`.
    pub state: Option<String>,
    /// `total_refunded`.
    pub total_refunded: Option<Decimal>,
    /// Per order line.
    pub lines: BTreeMap<u64, LineProgress>,
}

impl OrderProgress {
    /// The progress of an order as read.
    pub fn of(order: &Order) -> Self {
        Self {
            order_id: order.entity_id,
            state: order.state.clone(),
            total_refunded: order.total_refunded,
            lines: order
                .items
                .iter()
                .map(|i| {
                    (
                        i.item_id,
                        LineProgress {
                            invoiced: i.qty_invoiced,
                            shipped: i.qty_shipped,
                            refunded: i.qty_refunded,
                            canceled: i.qty_canceled,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// `POST /V1/order/:orderId/ship` (spec §6.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShipRequest {
    /// Lines; empty = every shippable line at its remaining quantity.
    pub items: Vec<DocumentLine>,
    /// The source to deduct from (always send it for multi-source stocks).
    pub source_code: Option<SourceCode>,
    /// E-mail the customer.
    pub notify: bool,
    /// A comment (the idempotency marker is appended to it).
    pub comment: Option<String>,
    /// Tracking numbers.
    pub tracks: Vec<Track>,
    /// The order as the caller last read it; when absent the client reads it first.
    pub baseline: Option<OrderProgress>,
}

/// `POST /V1/order/:orderId/invoice` (spec §6.3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvoiceRequest {
    /// Lines; empty = everything invoiceable.
    pub items: Vec<DocumentLine>,
    /// Capture online.
    pub capture: bool,
    /// E-mail the customer.
    pub notify: bool,
    /// A comment (the idempotency marker is appended to it).
    pub comment: Option<String>,
    /// The order as the caller last read it; when absent the client reads it first.
    pub baseline: Option<OrderProgress>,
}

/// `POST /V1/order/:orderId/refund` and `POST /V1/invoice/:invoiceId/refund` (spec §6.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefundRequest {
    /// Lines; empty = everything refundable.
    pub items: Vec<DocumentLine>,
    /// Order item ids whose refunded quantity goes back to stock.
    pub return_to_stock_items: Vec<u64>,
    /// Shipping refunded (omitted: the invoice's shipping is refunded).
    pub shipping_amount: Option<Decimal>,
    /// Adjustment refund.
    pub adjustment_positive: Option<Decimal>,
    /// Adjustment fee.
    pub adjustment_negative: Option<Decimal>,
    /// E-mail the customer.
    pub notify: bool,
    /// A comment (the idempotency marker is appended to it).
    pub comment: Option<String>,
    /// The order as the caller last read it; when absent the client reads it first.
    pub baseline: Option<OrderProgress>,
}

/// `POST /V1/orders/:id/comments` (spec §6.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderComment {
    /// The text (the idempotency marker is appended to it).
    pub comment: String,
    /// The status to set; pass the order's current status to leave it unchanged.
    pub status: Option<String>,
    /// E-mail the customer.
    pub notify_customer: bool,
    /// Show on the storefront.
    pub visible_on_front: bool,
}

/// The result of a non-idempotent document write (ship, invoice, refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created<Id> {
    /// Magento answered with the new document's id.
    New(Id),
    /// The answer was lost; the probe found the document this call created (by its marker).
    Recovered(Id),
    /// The answer was lost; the order shows exactly this request's effect, but the document
    /// could not be identified (this Commerce does not return document comments).
    AppliedWithoutId,
}

impl<Id: Copy> Created<Id> {
    /// The document id, when known.
    pub fn id(&self) -> Option<Id> {
        match self {
            Self::New(id) | Self::Recovered(id) => Some(*id),
            Self::AppliedWithoutId => None,
        }
    }
}

// ----- asynchronous and bulk -----------------------------------------------------------------

/// One element of an asynchronous answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AsyncItemStatus {
    /// 0-based index in the request.
    pub id: u64,
    /// SHA-256 of the element.
    #[serde(default)]
    pub data_hash: Option<String>,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Why rejected.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Code of a rejection.
    #[serde(default, deserialize_with = "int_or_string")]
    pub error_code: Option<i64>,
}

/// The 202 answer of an `/async` or `/async/bulk` call (spec §2.8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AsyncResponse {
    /// The bulk to poll.
    pub bulk_uuid: String,
    /// One status per element.
    #[serde(default)]
    pub request_items: Vec<AsyncItemStatus>,
    /// Whether any element was rejected.
    #[serde(default)]
    pub errors: bool,
}

/// Status of a queued operation (spec §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    /// `1`
    Complete,
    /// `2`
    RetriablyFailed,
    /// `3`
    NotRetriablyFailed,
    /// `4`
    Open,
    /// `5`
    Rejected,
    /// Any other code.
    Other(i64),
}

impl OperationStatus {
    /// The status of a code.
    pub fn of(code: i64) -> Self {
        match code {
            1 => Self::Complete,
            2 => Self::RetriablyFailed,
            3 => Self::NotRetriablyFailed,
            4 => Self::Open,
            5 => Self::Rejected,
            n => Self::Other(n),
        }
    }

    /// The code.
    pub fn code(self) -> i64 {
        match self {
            Self::Complete => 1,
            Self::RetriablyFailed => 2,
            Self::NotRetriablyFailed => 3,
            Self::Open => 4,
            Self::Rejected => 5,
            Self::Other(n) => n,
        }
    }

    /// Finished (successfully or not).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Open)
    }
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_string(d)?
            .map(Self::of)
            .ok_or_else(|| D::Error::custom("operation status is not a number"))
    }
}

/// One operation of `GET /V1/bulk/:uuid/status` (and of the detailed variant).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BulkOperation {
    /// The operation id.
    pub id: u64,
    /// Its status.
    pub status: OperationStatus,
    /// `Service execution success …` or the failure message.
    #[serde(default)]
    pub result_message: Option<String>,
    /// The failure code.
    #[serde(default, deserialize_with = "int_or_string")]
    pub error_code: Option<i64>,
    /// The queue topic (detailed status only).
    #[serde(default)]
    pub topic_name: Option<String>,
    /// The request as queued (detailed status only).
    #[serde(default)]
    pub serialized_data: Option<String>,
}

/// `GET /V1/bulk/:uuid/status` and `…/detailed-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BulkStatus {
    /// The bulk uuid.
    #[serde(default)]
    pub bulk_id: Option<String>,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// Operations.
    #[serde(default)]
    pub operations_list: Vec<BulkOperation>,
    /// Number of operations scheduled.
    #[serde(default)]
    pub operation_count: Option<u64>,
    /// When scheduled.
    #[serde(default)]
    pub start_time: Option<String>,
}

impl BulkStatus {
    /// Every operation has finished.
    pub fn is_finished(&self) -> bool {
        self.operations_list.iter().all(|o| o.status.is_final())
    }

    /// Every operation completed successfully.
    pub fn is_complete(&self) -> bool {
        self.operations_list
            .iter()
            .all(|o| o.status == OperationStatus::Complete)
    }
}

// ----- Tillbridge module routes (spec §3.7) --------------------------------------------------

/// A row of `inventory_reservation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// The id (append order).
    pub reservation_id: u64,
    /// The stock.
    pub stock_id: StockId,
    /// The SKU.
    pub sku: Sku,
    /// Signed quantity.
    #[serde(with = "json_number")]
    pub quantity: Decimal,
    /// The JSON text of the sales event.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// The sales event of a reservation we append (written as its `metadata`, keys in Magento's
/// order). `object_id` should name the compensation uniquely: a lost answer is recovered by
/// finding a row with the same stock, SKU, quantity and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationMetadata {
    /// `event_type` (e.g. `manual_compensation`, `pos_sale`).
    pub event_type: String,
    /// `object_type` (`order` for order compensations).
    pub object_type: String,
    /// `object_id`.
    pub object_id: String,
    /// `object_increment_id`.
    pub object_increment_id: String,
}

/// A reservation to append.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewReservation {
    /// The stock.
    pub stock_id: StockId,
    /// The SKU.
    pub sku: Sku,
    /// Signed quantity.
    #[serde(with = "json_number")]
    pub quantity: Decimal,
    /// The event.
    pub metadata: ReservationMetadata,
}

/// One unbalanced SKU of an order on a stock, with the compensation that balances it (a line
/// of `list-inconsistencies -r`: `increment_id:sku:compensation:stock_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationInconsistency {
    /// The order.
    pub order_increment_id: String,
    /// Its entity id, when known.
    #[serde(default)]
    pub order_id: Option<u64>,
    /// Its status, when known.
    #[serde(default)]
    pub order_status: Option<String>,
    /// The SKU.
    pub sku: String,
    /// The stock.
    pub stock_id: StockId,
    /// The reservation to append (`−s`, where `s` is the unbalanced sum).
    #[serde(with = "json_number")]
    pub compensation: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn source_items_read_numbers_and_numeric_strings_and_write_numbers() {
        let item: SourceItem = serde_json::from_value(
            json!({"sku": "A", "source_code": "s1", "quantity": "12.5000", "status": "1"}),
        )
        .unwrap();
        assert_eq!(item.quantity, dec("12.5"));
        assert_eq!(item.status, SourceItemStatus::InStock);
        let item: SourceItem = serde_json::from_value(
            json!({"sku": "A", "source_code": "s1", "quantity": 3, "status": 0}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"sku": "A", "source_code": "s1", "quantity": 3, "status": 0})
        );
        assert!(
            serde_json::from_value::<SourceItem>(
                json!({"sku": " A", "source_code": "s1", "quantity": 1, "status": 1})
            )
            .is_err()
        );
    }

    #[test]
    fn orders_keep_raw_json_and_read_flags_as_ints() {
        let raw = json!({
            "entity_id": 7, "increment_id": "000000007", "state": "new", "status": "pending",
            "updated_at": "2024-05-01 10:00:00", "store_id": 1, "grand_total": 10.5,
            "items": [{"item_id": 1, "sku": "A", "is_virtual": 0, "qty_ordered": 2, "qty_shipped": "1.0000"}]
        });
        let o: Order = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(o.entity_id, OrderId(7));
        assert_eq!(o.items[0].is_virtual, Some(false));
        assert_eq!(o.items[0].qty_shipped, dec("1"));
        assert_eq!(o.items[0].qty_invoiced, Decimal::ZERO);
        assert_eq!(o.status_histories, None);
        assert_eq!(o.raw, raw);
        let p = OrderProgress::of(&o);
        assert_eq!(p.lines[&1].shipped, dec("1"));
    }

    #[test]
    fn bulk_status_reads_operation_codes() {
        let s: BulkStatus = serde_json::from_value(json!({
            "bulk_id": "u", "operations_list": [
                {"id": 1, "status": 1, "result_message": "Service execution success", "error_code": null},
                {"id": 2, "status": 4}
            ], "operation_count": 2
        }))
        .unwrap();
        assert!(!s.is_finished());
        assert_eq!(s.operations_list[0].status, OperationStatus::Complete);
        assert_eq!(OperationStatus::of(9).code(), 9);
    }

    #[test]
    fn reservation_metadata_keeps_magentos_key_order() {
        let r = NewReservation {
            stock_id: StockId::parse(1).unwrap(),
            sku: Sku::parse("A").unwrap(),
            quantity: dec("-2"),
            metadata: ReservationMetadata {
                event_type: "manual_compensation".into(),
                object_type: "order".into(),
                object_id: "comp-1".into(),
                object_increment_id: "000000001".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"stock_id":1,"sku":"A","quantity":-2,"metadata":{"event_type":"manual_compensation","object_type":"order","object_id":"comp-1","object_increment_id":"000000001"}}"#
        );
    }
}
