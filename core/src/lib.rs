//! # tillbridge-core
//!
//! All of Tillbridge's domain logic, with no I/O: observations and the current time go in,
//! decisions come out as data. The edge service executes those decisions; the simulator in
//! `tests/` executes the very same code under injected faults; the Magento admin runs it as
//! WebAssembly (`tillbridge-wasm`).
//!
//! What lives here today:
//! - [`tax`]: Magento 2.4 tax calculation to the cent (rate resolution, UNIT/ROW/TOTAL
//!   algorithms with delta rounding, the quote totals passes, the invoice and credit-memo tax
//!   collectors), a POS tax-line validator, and the conformance runner for Magento's own vectors.
//! - [`sales`]: Magento's invoice / credit-memo document totals and the closability prediction
//!   ("will Magento close this order, and if not, what adjustment closes it?").
//!
//! What will live here (see ARCHITECTURE.md): MSI inventory and reservations, POS mapping,
//! and the sync engine's decisions.
//!
//! Invariants: no `std::time`, no randomness, no files, no network. The crate must build for
//! `wasm32-unknown-unknown`; CI checks that.

pub mod inventory;
pub mod mapping;
pub mod php;
pub mod pos;
pub mod sales;
pub mod sync;
pub mod tax;
