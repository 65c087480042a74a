//! # tillbridge-edge
//!
//! The shell around `tillbridge-core`: everything that touches files, clocks, the network or the
//! terminal lives here, so the core can stay sans-I/O.
//!
//! Today it holds the `tillbridge` command-line tool:
//! - [`conformance`]: runs folders of Magento tax vectors through the core's conformance runner
//!   and reports one line per vector (`tillbridge conformance tax DIR`).
//! - [`demo`]: the sync live against both emulators over a generated retail world, with a
//!   summary (`tillbridge demo`).
//! - [`bench`]: tax throughput with a same-process baseline, as a Markdown report
//!   (`tillbridge bench tax`).
//! - [`shared`]: finds the `shared/` reference folder (`TILLBRIDGE_SHARED_DIR`, `../shared`, ...).
//! - [`cli`]: the argument definitions and the dispatch; `main.rs` only parses and calls [`cli::run`].
//!
//! Later issues add the POS poller and the Commerce committer here.

pub mod api;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod commerce;
pub mod config;
pub mod conformance;
pub mod conformance_msi;
pub mod demo;
pub mod pos;
pub mod replay;
pub mod restore;
pub mod runner;
pub mod sandbox;
pub mod shared;
pub mod store;
