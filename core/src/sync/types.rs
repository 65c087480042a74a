//! What goes into the engine and what comes out.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ledger::StockKey;
use super::orders::WebOrder;
use crate::pos::{FulfilmentState, Sku, SourceCode, Timestamp};

/// An observation or an answer, always with the id of the stored record it came from (every
/// inbound record is stored before the engine sees it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The POS's on-hand for a SKU at a store (mapped to a Commerce source).
    PosStock {
        record: String,
        sku: Sku,
        source: SourceCode,
        on_hand: Decimal,
        as_of: Timestamp,
    },
    /// Units sold (positive) or returned (negative) at a store: drives sales velocity.
    PosSale {
        record: String,
        sku: Sku,
        source: SourceCode,
        units: Decimal,
        at: Timestamp,
    },
    /// A Commerce order as polled.
    CommerceOrder { record: String, order: WebOrder },
    /// The POS moved a fulfilment. `lines` lists what was handed over on completion (all open
    /// lines when absent); `at` is the POS's time of the change.
    Fulfilment {
        record: String,
        order: String,
        state: FulfilmentState,
        at: Timestamp,
        #[serde(default)]
        tracking: Option<String>,
        #[serde(default)]
        lines: Option<Vec<(Sku, Decimal)>>,
    },
    /// A web order's goods came back at a store: refund them in Commerce.
    PosReturn {
        record: String,
        order: String,
        lines: Vec<(Sku, Decimal)>,
        at: Timestamp,
    },
    /// The answer to a command.
    Result { command: u64, outcome: Outcome },
    /// Salable quantity read back (`None`: Commerce answered with an error for this SKU).
    Salable {
        command: u64,
        sku: Sku,
        stock_id: u32,
        salable: Option<Decimal>,
    },
    /// A page of source items read by the reconciliation sweep.
    SourceItems {
        command: u64,
        items: Vec<(Sku, SourceCode, Decimal)>,
        last_page: bool,
    },
    /// A person asked to retry what an exception is about.
    RetryException { id: u64 },
    /// A person resolved an exception by hand.
    ResolveException { id: u64, note: String },
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok {
        latency_ms: i64,
    },
    /// Worth retrying (5xx, 429, timeout, connection). `throttled`: Commerce signalled load.
    Retriable {
        reason: String,
        throttled: bool,
    },
    /// Refused (4xx): retrying the same call would be refused again. `skus`: the SKUs Commerce
    /// named, when it named any.
    Permanent {
        status: u16,
        message: String,
        #[serde(default)]
        skus: Vec<Sku>,
    },
}

/// The detail a command's record gets when an attempt failed in a way worth retrying: the
/// command is still underway (the engine sends it again), although its record shows
/// `failed` until the next attempt is sent.
pub fn retry_detail(attempt: u32, reason: &str) -> String {
    format!("attempt {attempt}: {reason}")
}

/// Whether a `failed` command record is an attempt to be retried ([`retry_detail`]) rather
/// than a refusal.
pub fn is_retry_detail(detail: &str) -> bool {
    detail
        .strip_prefix("attempt ")
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One source item to write (absolute quantity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceItemWrite {
    pub sku: Sku,
    pub source: SourceCode,
    pub quantity: Decimal,
    /// 1 in stock, 0 out of stock.
    pub status: u8,
}

/// What the engine asks the service to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommandKind {
    /// `POST /V1/inventory/source-items`.
    PushSourceItems { items: Vec<SourceItemWrite> },
    /// `POST /V1/order/{id}/ship` with `arguments.extension_attributes.source_code`.
    CreateShipment {
        order: String,
        entity_id: u64,
        source: SourceCode,
        items: Vec<(u64, Decimal)>,
        tracking: Option<String>,
        comment: String,
    },
    /// Ask the store's POS to fulfil (pickup or shipment order on the till).
    CreateFulfilment {
        order: String,
        source: SourceCode,
        lines: Vec<(Sku, Decimal)>,
        pickup: bool,
    },
    /// Withdraw a fulfilment request from the POS.
    CancelFulfilment { order: String, source: SourceCode },
    /// `POST /V1/orders/{id}/cancel` plus a customer comment.
    CancelOrder {
        order: String,
        entity_id: u64,
        comment: String,
    },
    /// `POST /V1/order/{id}/refund` (offline credit memo, no return to stock: the POS's own
    /// figure brings the units back).
    CreditMemo {
        order: String,
        entity_id: u64,
        items: Vec<(u64, Decimal)>,
        comment: String,
    },
    /// `POST /V1/orders/{id}/comments`.
    OrderComment {
        order: String,
        entity_id: u64,
        comment: String,
        notify: bool,
    },
    /// `GET /V1/inventory/get-product-salable-quantity/{sku}/{stockId}`.
    ReadSalable { sku: Sku, stock_id: u32 },
    /// `GET /V1/inventory/source-items` (one page), for the reconciliation sweep.
    ReadSourceItems { page: u32, page_size: u32 },
}

impl CommandKind {
    /// Whether the command goes to Commerce (and draws from its budget).
    pub fn to_commerce(&self) -> bool {
        !matches!(
            self,
            CommandKind::CreateFulfilment { .. } | CommandKind::CancelFulfilment { .. }
        )
    }

    /// Source items the command carries (for the item budget).
    pub fn items(&self) -> u32 {
        match self {
            CommandKind::PushSourceItems { items } => {
                u32::try_from(items.len()).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::PushSourceItems { .. } => "push_source_items",
            CommandKind::CreateShipment { .. } => "create_shipment",
            CommandKind::CreateFulfilment { .. } => "create_fulfilment",
            CommandKind::CancelFulfilment { .. } => "cancel_fulfilment",
            CommandKind::CancelOrder { .. } => "cancel_order",
            CommandKind::CreditMemo { .. } => "credit_memo",
            CommandKind::OrderComment { .. } => "order_comment",
            CommandKind::ReadSalable { .. } => "read_salable",
            CommandKind::ReadSourceItems { .. } => "read_source_items",
        }
    }
}

/// A command with its identity. The idempotency key is stable across retries: executing the
/// same key twice must not act twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: u64,
    pub idempotency_key: String,
    pub attempt: u32,
    pub kind: CommandKind,
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Received,
    Planned,
    Sent,
    Confirmed,
    Verified,
    /// Replaced by a newer record before it mattered (an older stock figure, a coalesced change).
    Superseded,
    /// Nothing to do (Commerce already holds it).
    Settled,
    Failed,
    Stalled,
}

/// Machine-readable reasons of exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The till reports a negative on-hand (it sold stock it did not have).
    NegativeOnHand,
    /// Commerce refused a write (4xx).
    CommerceRefused,
    /// Retries did not get through.
    Timeout,
    /// Commerce's salable quantity does not reflect what was sent.
    SalableDidNotMove,
    /// No source can fulfil a web order.
    Unroutable,
    /// The POS could not take a fulfilment request.
    PosRefused,
    /// The Commerce shipment could not be created.
    ShipmentFailed,
    /// Commerce cancelled an order the store had already handed over.
    CancelAfterHandover,
    /// A POS update for an order Tillbridge does not know.
    UnknownOrder,
}

/// An exception: a record or subject that stalled, with its reason and a sentence to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionEntry {
    pub id: u64,
    /// What it is about: `sku@source`, `order 100000123`, `sku in stock 2`, a record id.
    pub subject: String,
    pub reason: Reason,
    pub message: String,
    pub raised_at: Timestamp,
    /// The records concerned.
    pub records: Vec<String>,
}

/// Bookkeeping the service persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "journal", rename_all = "snake_case")]
pub enum Journal {
    /// An inbound record moved.
    Record {
        record: String,
        state: RecordState,
        detail: String,
    },
    /// A command moved (its outbox row).
    Command {
        command: u64,
        state: RecordState,
        detail: String,
    },
    Raised(ExceptionEntry),
    Resolved {
        id: u64,
        at: Timestamp,
        note: String,
    },
    /// A change reached Commerce `ms` after it arrived.
    Latency {
        key: StockKey,
        ms: i64,
    },
}

/// One output of [`super::Engine::poll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    Command(Command),
    Journal(Journal),
}

#[cfg(test)]
mod retry_detail_tests {
    use super::*;

    #[test]
    fn a_retry_detail_reads_back_and_a_refusal_does_not() {
        assert!(is_retry_detail(&retry_detail(3, "503 Service Unavailable")));
        assert!(!is_retry_detail(
            "400: The order does not allow a shipment to be created."
        ));
        assert!(!is_retry_detail("attempt 2 sent"));
        assert!(!is_retry_detail("attempt x: y"));
    }
}
