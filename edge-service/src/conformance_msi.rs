//! `tillbridge conformance msi DIR`: Magento's MSI test vectors (format:
//! `shared/vectors/msi/FORMAT.md`) against a fresh Commerce emulator over HTTP. Ops and checks
//! with a `rest` form (and `rest_call`s) go through Magento's REST routes, everything else
//! through the emulator's control API; the emulator is reset before every case.
//!
//! Output: `PASS <id>` or `FAIL <id>: <check> expected <x> got <y>` (one line per failed
//! expectation), then `N passed, M failed`.

use std::io::Write;
use std::path::Path;

use tillbridge_commerce_emulator::msi;

use crate::cli::{CliError, Status};

/// Runs every case in `dir` (its `cases/` folder, or the folder itself) with the fixtures of
/// `dir/fixtures.json`.
pub fn run(dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<Status, CliError> {
    let started = std::time::Instant::now();
    let mut write_error: Option<std::io::Error> = None;
    let outcomes = msi::run_dir(dir, |outcome| {
        for line in msi::outcome_lines(outcome) {
            if let Err(e) = writeln!(out, "{line}")
                && write_error.is_none()
            {
                write_error = Some(e);
            }
        }
    })
    .map_err(|e| CliError::Msi(e.to_string()))?;
    if let Some(e) = write_error {
        return Err(CliError::Output(e));
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed)?;
    out.flush()?;
    writeln!(
        err,
        "{} MSI cases over HTTP in {:.1}s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(Status::from_all_passed(failed == 0))
}
