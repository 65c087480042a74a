//! Running folders of Magento tax vectors through `tillbridge_core::tax::conformance`.
//!
//! The core is pure; this module reads the files, times the run and renders one line per
//! vector: `PASS <id>`, `FAIL <id>: <field> expected <x> got <y>`, or
//! `FAIL <file name>: <reason>` when a file cannot be read, parsed or run.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tillbridge_core::tax::TaxRelease;
use tillbridge_core::tax::conformance::{RunOptions, VectorOutcome, run_vector};

/// A folder could not be run at all (as opposed to vectors failing).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("vector folder {} does not exist", .0.display())]
    DirNotFound(PathBuf),
    #[error("{} is not a folder", .0.display())]
    NotADir(PathBuf),
    #[error("cannot list vector folder {}: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: io::Error },
    #[error("cannot write the report: {0}")]
    Output(#[source] io::Error),
}

/// Why a single file produced no outcome.
#[derive(Debug)]
pub enum FileFailure {
    Read(io::Error),
    Json(serde_json::Error),
    Run(tillbridge_core::tax::TaxError),
}

impl fmt::Display for FileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot read file: {e}"),
            Self::Json(e) => write!(f, "not valid JSON: {e}"),
            Self::Run(e) => write!(f, "cannot run vector: {e}"),
        }
    }
}

/// The result of one vector file.
#[derive(Debug)]
pub struct FileResult {
    pub file: PathBuf,
    pub outcome: Result<VectorOutcome, FileFailure>,
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.outcome.as_ref().is_ok_and(VectorOutcome::passed)
    }

    /// The file's name, for lines about files that have no usable id.
    pub fn file_name(&self) -> String {
        self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The vector's id, or the file name when the vector has none.
    pub fn label(&self) -> String {
        match &self.outcome {
            Ok(outcome) if !outcome.id.is_empty() => outcome.id.clone(),
            _ => self.file_name(),
        }
    }

    /// The report line: `PASS <id>`, `FAIL <id>: <field> expected <x> got <y>` (the first
    /// mismatch, with a count of the others), or `FAIL <file name>: <reason>`.
    pub fn line(&self) -> String {
        match &self.outcome {
            Err(failure) => format!("FAIL {}: {failure}", self.file_name()),
            Ok(outcome) => match outcome.mismatches.split_first() {
                None => format!("PASS {}", self.label()),
                Some((first, rest)) => {
                    let mut line = format!(
                        "FAIL {}: {} expected {} got {}",
                        self.label(),
                        first.field,
                        first.expected,
                        first.actual
                    );
                    if !rest.is_empty() {
                        line.push_str(&format!(" (+{} more mismatches)", rest.len()));
                    }
                    line
                }
            },
        }
    }
}

/// Counts and timing of one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.passed + self.failed
    }

    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// `N passed, M failed`: the last line of `tillbridge conformance tax`.
    pub fn counts_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }

    /// `N vectors in X ms (Y vectors/s)`: the timing line, written to stderr.
    pub fn timing_line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.total() as f64 / secs
        } else {
            0.0
        };
        format!(
            "{} vectors in {:.1} ms ({:.0} vectors/s)",
            self.total(),
            secs * 1000.0,
            rate
        )
    }
}

/// Parse a `--release` value (`2.4.6`, `mainline`, and the aliases the core accepts).
pub fn parse_release(s: &str) -> Result<TaxRelease, String> {
    TaxRelease::parse(s)
        .ok_or_else(|| format!("unknown Magento release '{s}' (use 2.4.6 or mainline)"))
}

/// Every `*.json` file directly in `dir`, sorted by name. Other files (README.md, FORMAT.md)
/// and sub-folders are ignored.
pub fn vector_files(dir: &Path) -> Result<Vec<PathBuf>, ConformanceError> {
    if !dir.exists() {
        return Err(ConformanceError::DirNotFound(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(ConformanceError::NotADir(dir.to_path_buf()));
    }
    let read_err = |source| ConformanceError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Read, parse and run one vector file.
pub fn run_file(path: &Path, opts: RunOptions) -> FileResult {
    let outcome = std::fs::read_to_string(path)
        .map_err(FileFailure::Read)
        .and_then(|text| serde_json::from_str::<Value>(&text).map_err(FileFailure::Json))
        .and_then(|value| {
            let mut outcome = run_vector(&value, opts).map_err(FileFailure::Run)?;
            // A vector without an id is named by its file.
            if value.get("id").and_then(Value::as_str).is_none() {
                outcome.id = String::new();
            }
            Ok(outcome)
        });
    FileResult {
        file: path.to_path_buf(),
        outcome,
    }
}

/// Run every vector file of `dir` in name order, handing each result to `each` as soon as it
/// is known (so long runs show progress).
pub fn run_dir(
    dir: &Path,
    opts: RunOptions,
    mut each: impl FnMut(&FileResult) -> io::Result<()>,
) -> Result<Summary, ConformanceError> {
    let files = vector_files(dir)?;
    let start = Instant::now();
    let mut summary = Summary::default();
    for file in &files {
        let result = run_file(file, opts);
        if result.passed() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        each(&result).map_err(ConformanceError::Output)?;
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use tillbridge_core::tax::conformance::Mismatch;

    use super::*;

    fn outcome(id: &str, mismatches: Vec<Mismatch>) -> FileResult {
        FileResult {
            file: PathBuf::from("/v/case.json"),
            outcome: Ok(VectorOutcome {
                id: id.into(),
                kind: "k".into(),
                mismatches,
            }),
        }
    }

    fn mismatch(field: &str, expected: &str, actual: &str) -> Mismatch {
        Mismatch {
            field: field.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }

    #[test]
    fn passing_vector_prints_pass_and_its_id() {
        assert_eq!(outcome("case_1", vec![]).line(), "PASS case_1");
    }

    #[test]
    fn failing_vector_prints_its_first_mismatch_and_counts_the_rest() {
        let one = outcome("case_1", vec![mismatch("tax_amount", "9.43", "9.42")]);
        assert_eq!(one.line(), "FAIL case_1: tax_amount expected 9.43 got 9.42");
        let three = outcome(
            "case_1",
            vec![
                mismatch("a", "1", "2"),
                mismatch("b", "3", "4"),
                mismatch("c", "5", "6"),
            ],
        );
        assert_eq!(
            three.line(),
            "FAIL case_1: a expected 1 got 2 (+2 more mismatches)"
        );
    }

    #[test]
    fn vector_without_id_is_named_by_its_file() {
        assert_eq!(outcome("", vec![]).line(), "PASS case.json");
    }

    #[test]
    fn unreadable_file_prints_fail_with_the_file_name_and_reason() {
        let result = FileResult {
            file: PathBuf::from("/v/broken.json"),
            outcome: Err(FileFailure::Run(
                tillbridge_core::tax::TaxError::Unsupported("vector kind 'x'".into()),
            )),
        };
        assert!(!result.passed());
        assert_eq!(
            result.line(),
            "FAIL broken.json: cannot run vector: unsupported: vector kind 'x'"
        );
    }

    #[test]
    fn summary_lines_count_and_time() {
        let summary = Summary {
            passed: 3,
            failed: 1,
            elapsed: Duration::from_millis(2),
        };
        assert_eq!(summary.counts_line(), "3 passed, 1 failed");
        assert_eq!(
            summary.timing_line(),
            "4 vectors in 2.0 ms (2000 vectors/s)"
        );
        assert!(!summary.all_passed());
    }

    #[test]
    fn release_names_parse_and_unknown_ones_are_refused() {
        assert_eq!(parse_release("2.4.6"), Ok(TaxRelease::Magento246));
        assert_eq!(parse_release("mainline"), Ok(TaxRelease::Mainline));
        assert!(parse_release("2.3").is_err());
    }
}
