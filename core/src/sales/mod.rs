//! Magento 2.4.6-p1's invoice and credit-memo documents, and whether an order will close.
//!
//! # The model
//!
//! An [`Order`] is the `sales_order` row with its `sales_order_item` rows, exactly as Magento
//! loads them (4-decimal values, NULL kept apart from `0.0000`), the store configuration the
//! collectors read ([`SalesConfig`]), and the facts later documents read from earlier ones
//! ([`model::InvoiceRecord`], [`model::CreditmemoRecord`]). Each document is one admin request:
//!
//! * [`create_invoice`] (`Adminhtml\Order\Invoice\Save`, offline payment): `canInvoice()`,
//!   `prepareInvoice()`, the invoice collectors Subtotal → Discount → Shipping → Tax → Cost →
//!   Grand, the empty-invoice check, `Invoice::register()` and `pay()`, then the order save;
//! * [`create_creditmemo`] (`Adminhtml\Order\Creditmemo\Save`, order-based, offline refund):
//!   `canCreditmemo()`, `CreditmemoFactory::createByOrder()` with `initData()` (posted shipping,
//!   `"N%"` adjustments), the credit-memo collectors Subtotal → Discount → Shipping → Tax → Cost →
//!   Grand, `isValidGrandTotal()`, `CreditmemoService` validation ("The most money available to
//!   refund is $X."), `RefundOperation` (with `total_refunded` rounded to cents on every memo),
//!   then the order save.
//!
//! Every save runs `Handler\State::check()` on the in-memory order and then persists: each
//! amount becomes what a `DECIMAL(…,4)` column returns. The returned order is the next request's
//! input, and [`flags`] evaluates `canInvoice()` / `canCreditmemo()` / `canShip()` and the
//! refundable leftover on it. A refused request returns a [`Rejection`] with Magento's stage and
//! message (and the collected document when collection ran); nothing is saved.
//!
//! The collectors share one [`DocumentRounder`](crate::tax::rounding::DocumentRounder) per
//! document (`Math\Calculator` delta rounding per type), and the Tax step is
//! [`crate::tax::documents`]. The remainder ("last") rules compare quantities as PHP float
//! strings ([`num::php_qty_eq`]); PHP truthiness of stored strings is kept where Magento depends
//! on it (`"0.0000"` shipping or discount on an earlier invoice counts as set); money is rounded
//! with PHP's `round()` semantics ([`num::php_round2`]).
//!
//! [`closability`] runs a planned sequence of documents on an order and predicts whether Magento
//! closes it; if not, it explains the leftover and proposes a verified adjustment.
//!
//! # What is not reproduced
//!
//! * Credit memos created from an invoice (`createByInvoice`, online refunds), bundles and
//!   configurables (dummy items), shipments, cancellations, WEEE, store credit, gift cards and
//!   reward points, observers, the payment's own bookkeeping and status history.
//! * PHP double noise inside one request (`431.80400000000003`): documents are exact decimals.
//!   Where a double decision could differ from the decimal one (a 4th-decimal midpoint when
//!   persisting), the decimal result is kept.
//! * Currency formatting in messages is the symbol and two decimals (`$1611.46`), without
//!   locale grouping.

pub mod closability;
pub mod creditmemo;
pub mod invoice;
pub mod model;
pub mod num;
pub mod php_double;
pub mod state;

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
