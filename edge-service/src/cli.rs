//! The `tillbridge` command line: argument definitions and dispatch.
//!
//! Exit codes: 0 everything passed, 1 some vector failed, 2 the run could not happen (bad
//! arguments, a missing folder, an unwritable terminal).

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tillbridge_core::tax::TaxRelease;
use tillbridge_core::tax::conformance::RunOptions;

use crate::conformance::{self, ConformanceError};
use crate::shared::{self, SharedDirError};
use crate::{bench, demo};

/// Exit code of a run that could not happen (the same code clap uses for bad arguments).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "tillbridge",
    version,
    about = "Tillbridge: POS <-> Adobe Commerce (Magento 2) sync"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sync beside Adobe Commerce: poll the POS and Commerce, commit stock and orders,
    /// serve the API and dashboard, until Ctrl-C.
    Serve {
        /// The TOML configuration (`TILLBRIDGE_*` environment variables override it; see
        /// docs/configuration.md).
        #[arg(long, short, default_value = "tillbridge.toml")]
        config: PathBuf,
    },
    /// Compare every POS stock level of the mapped stores with Commerce's source items and
    /// Tillbridge's own view; list every discrepancy with its cause. Exit 0 when every one is
    /// explained, 1 when any is unexplained (docs/runbooks/ops-audit-and-replay.md).
    Audit {
        /// The service's TOML configuration (`TILLBRIDGE_*` environment variables override it).
        #[arg(long, short, default_value = "tillbridge.toml")]
        config: PathBuf,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Do not ask Commerce whether each SKU exists as a product (one request per SKU).
        #[arg(long)]
        no_product_check: bool,
    },
    /// Hand one stored record to the engine again and show what it decides now (a dry run);
    /// with --execute, act on it through the outbox (idempotent: a repeat does not act twice).
    Replay {
        /// The service's TOML configuration (`TILLBRIDGE_*` environment variables override it).
        #[arg(long, short, default_value = "tillbridge.toml")]
        config: PathBuf,
        /// The stored record's id (the dashboard's records, or GET /api/records).
        record: i64,
        /// Act: store, put the commands in the outbox and execute them.
        #[arg(long)]
        execute: bool,
    },
    /// Check the core against Magento's own test vectors.
    Conformance {
        #[command(subcommand)]
        suite: Suite,
    },
    /// The sync live on this machine: a generated retail world (10 stores, 2,000 SKUs) in the
    /// Square and Commerce emulators, a trading day compressed to a few minutes, the dashboard
    /// URL printed, and a summary (drift, oversells, latency, exceptions) at the end. Exit 0
    /// when Commerce ends with zero drift and every open exception is explained.
    Demo(crate::demo::DemoArgs),
    /// Measure throughput and write a Markdown report.
    Bench {
        #[command(subcommand)]
        what: BenchSuite,
    },
    /// Run an emulator of an outside system on this machine, until Ctrl-C.
    Sandbox {
        #[command(subcommand)]
        suite: SandboxSuite,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxSuite {
    /// The Square POS emulator: Square's API (locations, catalog, inventory, orders, payments,
    /// signed webhooks) plus a control API under /__emulator/ (tests/square-emulator/README.md).
    Pos {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The access token to accept (a default is printed when absent).
        #[arg(long)]
        token: Option<String>,
        /// Send signed webhooks to this URL.
        #[arg(long)]
        webhook_url: Option<String>,
        /// The webhook signature key (a default is printed when absent).
        #[arg(long)]
        signature_key: Option<String>,
        /// Start with no locations, items or stock (default: a small demo shop).
        #[arg(long)]
        empty: bool,
    },
    /// The Adobe Commerce (Magento 2.4 + MSI) emulator: Magento's REST routes for inventory,
    /// orders and documents, with input limits and a throttle like a small real store, plus a
    /// control API under /__emulator/ (tests/commerce-emulator/README.md).
    Commerce {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The integration token to accept as a bearer token (a default is printed when absent).
        #[arg(long)]
        token: Option<String>,
        /// Start with Magento's install defaults only (default: a small demo shop).
        #[arg(long)]
        empty: bool,
        /// No input limits and no throttle.
        #[arg(long)]
        unlimited: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchSuite {
    /// Tax lines per second per algorithm (engine, full service, naive baseline), and the
    /// conformance run over a vector folder.
    Tax {
        /// Seconds spent on each figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Where to write the Markdown report (printed to stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Vector folder for the conformance timing (default: shared/vectors/tax-diff).
        #[arg(long)]
        vectors: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Suite {
    /// Run every *.json tax vector in DIR; one PASS/FAIL line per vector, then the counts.
    Tax {
        /// Folder of tax vectors (e.g. ../shared/vectors/tax).
        dir: PathBuf,
        /// Magento release whose results to reproduce: 2.4.6 or mainline.
        #[arg(long, default_value = "2.4.6", value_parser = conformance::parse_release)]
        release: TaxRelease,
    },
    /// Run every Magento MSI case in DIR (shared/vectors/msi format) against a fresh Commerce
    /// emulator over HTTP; one PASS/FAIL line per case, then the counts.
    Msi {
        /// Folder of MSI vectors (fixtures.json and cases/), e.g. ../shared/vectors/msi.
        dir: PathBuf,
    },
}

/// How a run that happened ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
}

impl Status {
    pub fn from_all_passed(all_passed: bool) -> Self {
        if all_passed {
            Self::Passed
        } else {
            Self::Failed
        }
    }

    /// The process exit code: 0 or 1.
    pub fn code(self) -> u8 {
        match self {
            Self::Passed => 0,
            Self::Failed => 1,
        }
    }
}

/// A run that could not happen; exits with [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Conformance(#[from] ConformanceError),
    #[error("demo: {0}")]
    Demo(String),
    #[error(transparent)]
    SharedDir(#[from] SharedDirError),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("serve: {0}")]
    Serve(String),
    #[error("conformance msi: {0}")]
    Msi(String),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("replay: {0}")]
    Replay(#[from] crate::replay::ReplayError),
}

/// The part of a benchmarks report that `bench tax --out` keeps when it rewrites the file.
pub const KEPT_SECTION: &str = "## Live demo";

/// Run a parsed command line, writing the report to `out` and timings to `err`.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<Status, CliError> {
    match &cli.command {
        Command::Serve { config } => serve(config, out),
        Command::Audit {
            config,
            json,
            no_product_check,
        } => crate::audit::cli(
            config,
            json.as_deref(),
            crate::audit::AuditOptions {
                product_check: !*no_product_check,
            },
            out,
            err,
        ),
        Command::Replay {
            config,
            record,
            execute,
        } => crate::replay::cli(config, *record, *execute, out),
        Command::Conformance {
            suite: Suite::Tax { dir, release },
        } => conformance_tax(dir, RunOptions { release: *release }, out, err),
        Command::Conformance {
            suite: Suite::Msi { dir },
        } => crate::conformance_msi::run(dir, out, err),
        Command::Sandbox {
            suite:
                SandboxSuite::Commerce {
                    port,
                    token,
                    empty,
                    unlimited,
                },
        } => tillbridge_commerce_emulator::sandbox::run(
            &tillbridge_commerce_emulator::sandbox::SandboxOptions {
                port: *port,
                token: token.clone(),
                empty: *empty,
                unlimited: *unlimited,
            },
            out,
        )
        .map(|()| Status::Passed)
        .map_err(|e| CliError::Sandbox(e.to_string())),
        Command::Demo(args) => demo::run(args, out),
        Command::Bench {
            what:
                BenchSuite::Tax {
                    seconds,
                    out: path,
                    vectors,
                },
        } => {
            let vectors = match vectors {
                Some(v) => Some(v.clone()),
                None => shared::locate()
                    .ok()
                    .map(|s| s.path.join("vectors").join("tax-diff")),
            };
            let load = || {
                std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|l| l.split_whitespace().next().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned())
            };
            let load_before = load();
            let report = bench::run(*seconds, vectors.as_deref(), |step| {
                let _ = writeln!(err, "measuring {step} ...");
            });
            let command = format!("tillbridge bench tax --seconds {seconds}");
            let machine = format!(
                "{} ({} logical CPUs; 1-minute load average {} before the run, {} after — other \
                 work on the machine lowers every figure, the ratios less so)",
                std::env::consts::ARCH,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                load_before,
                load()
            );
            let mut md = report.markdown(&command, &machine);
            match path {
                Some(p) => {
                    // The live demo's figures (recorded by hand from `tillbridge demo`) stay.
                    if let Some(kept) = std::fs::read_to_string(p)
                        .ok()
                        .and_then(|old| old.find(KEPT_SECTION).map(|i| old[i..].to_owned()))
                    {
                        md.push('\n');
                        md.push_str(&kept);
                    }
                    std::fs::write(p, &md)?;
                    writeln!(out, "wrote {}", p.display())?;
                }
                None => write!(out, "{md}")?,
            }
            Ok(Status::Passed)
        }
        Command::Sandbox {
            suite:
                SandboxSuite::Pos {
                    port,
                    token,
                    webhook_url,
                    signature_key,
                    empty,
                },
        } => crate::sandbox::pos(
            crate::sandbox::PosOptions {
                port: *port,
                token: token.clone(),
                webhook_url: webhook_url.clone(),
                signature_key: signature_key.clone(),
                empty: *empty,
            },
            out,
        ),
    }
}

/// `tillbridge conformance tax DIR`.
pub fn conformance_tax(
    dir: &std::path::Path,
    opts: RunOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CliError> {
    let summary = conformance::run_dir(dir, opts, |result| writeln!(out, "{}", result.line()))?;
    writeln!(out, "{}", summary.counts_line())?;
    out.flush()?;
    writeln!(err, "{}", summary.timing_line())?;
    Ok(Status::from_all_passed(summary.all_passed()))
}

/// `tillbridge serve`: load the configuration, start the runner and the API, run until Ctrl-C.
fn serve(config: &std::path::Path, out: &mut dyn Write) -> Result<Status, CliError> {
    let settings = crate::config::Settings::load(config)?;
    let listener = std::net::TcpListener::bind(&settings.service.listen).map_err(|e| {
        CliError::Serve(format!(
            "service.listen: cannot listen on {}: {e}",
            settings.service.listen
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let database = crate::store::sql::describe_url(&settings.service.database);
    runtime.block_on(async {
        let service =
            crate::runner::service::start(settings, crate::runner::system_clock(), listener)
                .await
                .map_err(|e| CliError::Serve(e.to_string()))?;
        writeln!(out, "tillbridge serve: configuration {}", config.display())?;
        writeln!(out, "  database   {database}")?;
        writeln!(
            out,
            "  dashboard  {}/  (API under /api, Prometheus at /metrics; bearer token: service.api_token)",
            service.url()
        )?;
        writeln!(out, "  stop with Ctrl-C (the engine's state is saved on the way out)")?;
        out.flush()?;
        service
            .run_until_interrupted()
            .await
            .map_err(|e| CliError::Serve(e.to_string()))?;
        writeln!(out, "tillbridge serve: stopped cleanly")?;
        Ok(Status::Passed)
    })
}
