//! The sync engine's decisions, sans-I/O: observations and the current time in, commands and
//! bookkeeping out. The edge service executes the commands and persists the journal; the
//! simulator in `tests/` drives the very same engine under injected faults.
//!
//! - [`ledger`]: the stock contract per (SKU, source);
//! - [`orders`]: web order routing and the fulfilment flow;
//! - [`budget`]: the shared Commerce budget (token buckets with AIMD);
//! - [`types`]: inputs, commands, outcomes, record states, exception reasons;
//! - [`engine`]: [`Engine`], which ties them together;
//! - [`audit`]: POS vs Commerce vs the engine's view, every discrepancy with its cause;
//! - [`replay`]: what one stored record decides when handed to the engine again.

pub mod audit;
pub mod budget;
pub mod engine;
pub mod ledger;
pub mod orders;
pub mod replay;
pub mod types;

pub use engine::{Engine, EngineConfig, RetryConfig, Stats, SweepConfig, VerifyConfig};
pub use ledger::{StockEntry, StockKey};
pub use orders::{Delivery, RoutingConfig, SourceRoute, WebOrder, WebOrderLine};
pub use types::{
    Command, CommandKind, ExceptionEntry, Input, Journal, Outcome, Output, Reason, RecordState,
    SourceItemWrite, is_retry_detail, retry_detail,
};
