//! `tillbridge demo`: the tax conformance run over the shipped vector folders, as a short
//! report. Reads the vectors, writes nothing, touches no network. (A later issue turns this
//! into a live demo against the emulators.)

use std::io::Write;

use tillbridge_core::tax::conformance::RunOptions;

use crate::cli::{CliError, Status};
use crate::conformance::{self, Summary};
use crate::shared::SharedDir;

/// The folders under `shared/vectors/` the demo runs.
pub const TAX_FOLDERS: [&str; 2] = ["tax", "tax-diff"];

/// How many failure lines the report shows per folder.
const SHOWN_FAILURES: usize = 5;

/// Run the demo and write its report.
pub fn run(shared: &SharedDir, out: &mut dyn Write) -> Result<Status, CliError> {
    writeln!(
        out,
        "Tillbridge demo: Magento tax conformance (expected numbers from Magento 2.4.6-p1)"
    )?;
    writeln!(
        out,
        "shared folder: {} ({})",
        shared.path.display(),
        shared.found_by
    )?;
    let mut total = Summary::default();
    for name in TAX_FOLDERS {
        let dir = shared.path.join("vectors").join(name);
        let mut failures = Vec::new();
        let summary = conformance::run_dir(&dir, RunOptions::default(), |result| {
            if !result.passed() {
                failures.push(result.line());
            }
            Ok(())
        })?;
        writeln!(out)?;
        writeln!(
            out,
            "vectors/{name}: {}; {}",
            summary.counts_line(),
            summary.timing_line()
        )?;
        for line in failures.iter().take(SHOWN_FAILURES) {
            writeln!(out, "  {line}")?;
        }
        if failures.len() > SHOWN_FAILURES {
            writeln!(
                out,
                "  ... and {} more; `tillbridge conformance tax {}` lists every vector",
                failures.len() - SHOWN_FAILURES,
                dir.display()
            )?;
        }
        total.passed += summary.passed;
        total.failed += summary.failed;
        total.elapsed += summary.elapsed;
    }
    writeln!(out)?;
    if total.all_passed() {
        writeln!(out, "all {} vectors passed", total.total())?;
    } else {
        writeln!(out, "{} of {} vectors failed", total.failed, total.total())?;
    }
    Ok(Status::from_all_passed(total.all_passed()))
}
