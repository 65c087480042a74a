//! Magento 2.4.6-p1's invoice and credit-memo documents, and whether an order will close.
//!
//! # The model
//!
//! An [`Order`] is the `sales_order` row with its `sales_order_item` rows as Magento loads them
//! (4-decimal values; NULL kept apart from `0.0000`, because PHP treats the string `"0.0000"` as
//! true), the store configuration the collectors read ([`SalesConfig`]), and what later
//! documents read from earlier ones ([`model::InvoiceRecord`], [`model::CreditmemoRecord`]).
//! [`Order::from_magento`] builds it from Magento's rows and reports every malformed field.
//!
//! Each document is one admin request on the order as the previous request left it:
//!
//! * [`create_invoice`] (`Adminhtml\Order\Invoice\Save`, offline payment): `canInvoice()`,
//!   `InvoiceService::prepareInvoice()`, the collectors Subtotal → Discount → Shipping → Tax →
//!   Cost → Grand, the empty-invoice check, `Invoice::register()` with `pay()`;
//! * [`create_creditmemo`] (`Adminhtml\Order\Creditmemo\Save`, order-based memo refunded
//!   offline): `canCreditmemo()`, `CreditmemoFactory::createByOrder()` with `initData()` (posted
//!   shipping, `"N%"` adjustments), the collectors Subtotal → Discount → Shipping → Tax → Cost →
//!   Grand, `isValidGrandTotal()`, `CreditmemoService` validation ("The most money available to
//!   refund is $X."), `RefundOperation` (`total_refunded` rounded to cents on every memo).
//!
//! Every save runs `Handler\State::check()` on the in-memory order, then persists it: each
//! amount becomes what a `DECIMAL(…,4)` column returns, and that order is the next request's
//! input. [`flags`] evaluates `canInvoice()`, `canCreditmemo()`, `canShip()` and the refundable
//! leftover on it. A refused request returns a [`Rejection`] with Magento's stage and message
//! (and the document when it was collected); nothing is saved.
//!
//! # Decimals between requests, PHP doubles within one
//!
//! State is `Decimal`. Inside a request Magento computes in IEEE doubles, and the sales-diff
//! vectors show that the doubles decide cents: `140.4 / 5 × 3 = 84.24000000000001` leaves a
//! `1.4e-14` remainder in `Math\Calculator` that rounds the next line's `2.595` down, and PHP's
//! `round()` pre-rounds by multiplying the double, which rounds `75.90499999999994` up. Exact
//! decimals miss 14 of the 150 vectors. So the collectors, `register()`, `RefundOperation` and
//! the flags run on [`crate::php::double::Dbl`], PHP's operations in PHP's order, and every value leaves
//! the request as a `Decimal` again: the shortest text of the double for documents (what
//! Magento holds in memory, e.g. `23.799999999999997`), `sprintf('%.4F')` for stored columns.
//! The Tax step is the algorithm of [`crate::tax::documents`] on that path; unit tests hold the
//! two against each other and against Magento's own `TaxTest` data.
//!
//! The remainder ("last") rules compare quantities as PHP float strings
//! ([`num::php_qty_eq`]); posted strings are read as PHP reads them ([`num::php_to_float`],
//! [`num::locale_get_number`]).
//!
//! [`closability`] runs a planned sequence of documents, predicts whether Magento closes the
//! order, explains the leftover and proposes a verified change that closes it.
//!
//! # What is not reproduced
//!
//! * Credit memos created from an invoice (`createByInvoice`, online refunds), bundles and
//!   configurables (dummy items), shipments, cancellations, WEEE, store credit, gift cards,
//!   reward points, observers, the payment's own bookkeeping and status history.
//! * `canCreditmemo()`'s `forced_can_creditmemo` and action flags.
//! * Currency formatting in messages is the symbol and two decimals (`$1611.46`), as the
//!   sales-diff vectors record it, without locale grouping.

pub mod api;
pub mod closability;
pub mod creditmemo;
#[cfg(test)]
mod fixtures;
pub mod invoice;
pub mod model;
pub mod num;
pub mod state;

pub use closability::{ClosabilityReport, PlannedDocument, Proposal, predict, run_plan};
pub use creditmemo::{
    Adjustment, Creditmemo, CreditmemoItem, CreditmemoRequest, admin_default_shipping_amount,
    collect_creditmemo, create_creditmemo,
};
pub use invoice::{Invoice, InvoiceItem, InvoiceRequest, create_invoice, prepare_invoice};
pub use model::{Order, OrderItem, OrderState, SalesConfig, ShippingDisplay};
pub use state::{OrderFlags, flags};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One malformed input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

/// Malformed input (every violation found, not just the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SalesError {
    #[error("invalid input: {}", .violations.iter().map(|v| format!("{}: {}", v.field, v.message)).collect::<Vec<_>>().join("; "))]
    Invalid { violations: Vec<Violation> },
}

impl SalesError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            violations: vec![Violation {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

/// Where Magento refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionStage {
    /// `Order::canInvoice()` is false.
    CanInvoice,
    /// `prepareInvoice()`: a quantity above what is left to invoice.
    InvalidQty,
    /// The invoice has no quantity.
    TotalQty,
    /// The credit-memo loader refuses: `Order::canCreditmemo()` is false.
    CanCreditmemo,
    /// A `LocalizedException` while collecting the credit memo.
    Collect,
    /// `Creditmemo::isValidGrandTotal()` is false.
    ValidGrandTotal,
    /// `CreditmemoService` refund validation against the amount paid.
    Refund,
    /// PHP threw an `Error` (Magento bug), e.g. `DivisionByZeroError` in the credit-memo Tax
    /// collector for free shipping with shipping displayed incl. tax and tax after discount.
    PhpError,
}

impl RejectionStage {
    /// The stage name used by the sales-diff vectors (`None` for a PHP `Error`).
    pub fn vector_name(self) -> Option<&'static str> {
        Some(match self {
            Self::CanInvoice => "can_invoice",
            Self::InvalidQty => "invalid_qty",
            Self::TotalQty => "total_qty",
            Self::CanCreditmemo => "can_creditmemo",
            Self::Collect => "collect",
            Self::ValidGrandTotal => "valid_grand_total",
            Self::Refund => "refund",
            Self::PhpError => return None,
        })
    }
}

/// A document Magento collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Document {
    Invoice(Invoice),
    Creditmemo(Creditmemo),
}

/// Magento refused the request; nothing was saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{stage:?}: {message}")]
pub struct Rejection {
    pub stage: RejectionStage,
    pub message: String,
    /// For [`RejectionStage::Refund`]: base total paid − base total refunded.
    pub available_refund: Option<Decimal>,
    /// The document as collected, when the refusal came after collection.
    pub collected: Option<Box<Document>>,
}

impl Rejection {
    pub fn new(stage: RejectionStage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
            available_refund: None,
            collected: None,
        }
    }

    pub fn with_document(mut self, doc: Document) -> Self {
        self.collected = Some(Box::new(doc));
        self
    }
}
