//! POS domain types: what a point-of-sale system tells us, as data.
//!
//! Connectors in the edge service (Square, file drops, later others) translate their wire
//! formats into these types; everything downstream — stock sync, order routing, finance
//! batches — reads only these. Pure data and pure decisions: no I/O, no clock (instants come
//! in as [`Timestamp`] values).
//!
//! - [`ids`]: validated identifiers (`PosLocationId`, `PosVariationId`, `Sku`, `SourceCode`, ...).
//! - [`money`]: [`Money`] in minor units with a [`Currency`]; quantities are `Decimal`.
//! - [`time`]: [`Timestamp`], UTC milliseconds, RFC 3339 in and out.
//! - [`stock`]: [`StockLevel`] (absolute, with an as-of instant) and [`StockBook`] (newest wins).
//! - [`sales`]: [`PosTransaction`] (sale / return) with lines, [`TaxLine`]s and [`Tender`]s.
//! - [`fulfilment`]: [`FulfilmentRequest`], [`FulfilmentState`] and [`decide_status`].

pub mod fulfilment;
pub mod ids;
pub mod money;
pub mod sales;
pub mod stock;
pub mod time;

use serde::{Deserialize, Serialize};

pub use fulfilment::{
    FulfilmentKind, FulfilmentLine, FulfilmentRef, FulfilmentRequest, FulfilmentState,
    FulfilmentStatus, Parcel, ParcelLine, Recipient, StatusDecision, decide_status,
};
pub use ids::{
    FulfilmentRequestId, IdError, IdProblem, PosLineId, PosLocationId, PosTaxId, PosTransactionId,
    PosVariationId, Sku, SourceCode, StoreCode,
};
pub use money::{Currency, Money, MoneyError};
pub use sales::{
    PosTransaction, TaxLine, Tender, TenderKind, TransactionKind, TransactionLine,
    TransactionProblem, TransactionState,
};
pub use stock::{StockApply, StockBook, StockLevel};
pub use time::{Timestamp, TimestampError};

/// A POS location (a shop, a market stall, a warehouse the POS counts stock in).
///
/// POS systems list inactive locations too (Square does); they stay in the list so their
/// history still maps, and `active` says whether to expect new data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosLocation {
    pub id: PosLocationId,
    pub name: String,
    pub active: bool,
    /// IANA zone name (`Europe/London`), when the POS reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The currency the location trades in (Square: one per location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

/// One POS item variation as the POS catalogue describes it (for the mapping checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosVariation {
    pub id: PosVariationId,
    /// The POS's SKU for it, if any. Square does not make SKUs unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the POS tracks stock for it (untracked variations never get a level).
    pub tracked: bool,
}
