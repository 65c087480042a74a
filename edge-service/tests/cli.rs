//! The `tillbridge` binary, run as a user would run it, against the shared vector folders and
//! against temporary folders holding corrupted copies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use rust_decimal::Decimal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tillbridge");

/// The shared folder, found the way the scripts find it.
fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TILLBRIDGE_SHARED_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let repo_sibling = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if repo_sibling.is_dir() {
        return repo_sibling;
    }
    PathBuf::from("/work/shared")
}

fn vectors(name: &str) -> PathBuf {
    let dir = shared_dir().join("vectors").join(name);
    assert!(
        dir.is_dir(),
        "{} not found; set TILLBRIDGE_SHARED_DIR",
        dir.display()
    );
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read vector folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tillbridge-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: Option<i32>,
    lines: Vec<String>,
    stderr: String,
}

fn tillbridge(args: &[&str]) -> Run {
    let output: Output = Command::new(BIN)
        .args(args)
        .env("TILLBRIDGE_SHARED_DIR", shared_dir())
        .output()
        .expect("run tillbridge");
    Run {
        code: output.status.code(),
        lines: String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn conformance_tax(dir: &Path) -> Run {
    tillbridge(&["conformance", "tax", dir.to_str().expect("utf-8 path")])
}

/// Parse the last line, `N passed, M failed`.
fn counts(run: &Run) -> (usize, usize) {
    let last = run.lines.last().expect("a last line");
    let (passed, failed) = last
        .strip_suffix(" failed")
        .and_then(|s| s.split_once(" passed, "))
        .unwrap_or_else(|| panic!("last line is not `N passed, M failed`: {last}"));
    (passed.parse().expect("N"), failed.parse().expect("M"))
}

/// Add `delta` to a JSON number, exactly.
fn shifted(v: &Value, delta: &str) -> Value {
    let n = Decimal::from_str(&v.to_string()).expect("a number")
        + Decimal::from_str(delta).expect("a delta");
    serde_json::from_str(&n.to_string()).expect("a JSON number")
}

#[test]
fn shared_tax_folder_prints_one_line_per_vector_and_exit_status_follows_the_counts() {
    let dir = vectors("tax");
    let files = json_files(&dir);
    assert!(!files.is_empty());
    let run = conformance_tax(&dir);

    let (passed, failed) = counts(&run);
    let verdicts = &run.lines[..run.lines.len() - 1];
    assert_eq!(
        verdicts.len(),
        files.len(),
        "one line per json file:\n{}",
        run.lines.join("\n")
    );
    assert!(
        verdicts
            .iter()
            .all(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
    );
    assert_eq!(
        verdicts.iter().filter(|l| l.starts_with("PASS ")).count(),
        passed
    );
    assert_eq!(passed + failed, files.len());
    assert_eq!(run.code, Some(if failed == 0 { 0 } else { 1 }));
    assert!(
        run.stderr.contains("vectors/s"),
        "stderr reports the rate: {}",
        run.stderr
    );
}

#[test]
fn shared_tax_diff_folder_passes_completely() {
    let run = conformance_tax(&vectors("tax-diff"));
    let failures: Vec<&String> = run.lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        run.lines.last().map(String::as_str),
        Some("300 passed, 0 failed")
    );
    assert_eq!(run.code, Some(0));
}

#[test]
fn corrupted_expected_number_fails_that_vector_naming_the_field() {
    let files = json_files(&vectors("tax-diff"));
    let (intact, victim) = (&files[0], &files[1]);
    let tmp = TempDir::new("corrupt");
    std::fs::copy(intact, tmp.path().join("a_intact.json")).expect("copy");
    std::fs::write(tmp.path().join("README.md"), "not a vector").expect("write readme");

    let mut vector: Value =
        serde_json::from_str(&std::fs::read_to_string(victim).expect("read")).expect("json");
    let id = vector["id"].as_str().expect("id").to_owned();
    let original = vector["expected_tax_details"]["tax_amount"].clone();
    let corrupted = shifted(&original, "0.01");
    vector["expected_tax_details"]["tax_amount"] = corrupted.clone();
    std::fs::write(tmp.path().join("b_corrupted.json"), vector.to_string()).expect("write");

    let run = conformance_tax(tmp.path());
    assert_eq!(run.lines.len(), 3, "{:#?}", run.lines);
    assert!(run.lines[0].starts_with("PASS "), "{}", run.lines[0]);
    let fail = &run.lines[1];
    assert!(fail.starts_with(&format!("FAIL {id}: ")), "{fail}");
    assert!(
        fail.contains(&format!("tax_amount expected {corrupted} got {original}")),
        "names the field and both numbers: {fail}"
    );
    assert_eq!(run.lines[2], "1 passed, 1 failed");
    assert_eq!(run.code, Some(1));
}

#[test]
fn unparseable_json_file_fails_by_file_name() {
    let tmp = TempDir::new("garbage");
    std::fs::copy(
        &json_files(&vectors("tax-diff"))[0],
        tmp.path().join("good.json"),
    )
    .expect("copy");
    std::fs::write(
        tmp.path().join("truncated.json"),
        "{\"id\": \"x\", \"kind\": ",
    )
    .expect("write");

    let run = conformance_tax(tmp.path());
    assert_eq!(run.lines.len(), 3, "{:#?}", run.lines);
    assert!(run.lines[0].starts_with("PASS "), "{}", run.lines[0]);
    assert!(
        run.lines[1].starts_with("FAIL truncated.json: "),
        "{}",
        run.lines[1]
    );
    assert!(run.lines[1].contains("JSON"), "says why: {}", run.lines[1]);
    assert_eq!(run.lines[2], "1 passed, 1 failed");
    assert_eq!(run.code, Some(1));
}

#[test]
fn empty_folder_runs_nothing_and_passes() {
    let tmp = TempDir::new("empty");
    let run = conformance_tax(tmp.path());
    assert_eq!(run.lines, vec!["0 passed, 0 failed".to_owned()]);
    assert_eq!(run.code, Some(0));
}

#[test]
fn missing_folder_is_a_usage_error() {
    let tmp = TempDir::new("missing");
    let missing = tmp.path().join("no-such-folder");
    let run = conformance_tax(&missing);
    assert_eq!(run.code, Some(2));
    assert!(run.lines.is_empty(), "{:#?}", run.lines);
    assert!(
        run.stderr.contains("no-such-folder"),
        "names the folder: {}",
        run.stderr
    );
}

#[test]
fn unknown_release_is_a_usage_error() {
    let run = tillbridge(&["conformance", "tax", "--release", "1.9", "."]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("1.9"), "{}", run.stderr);
}

#[test]
fn bench_tax_writes_a_report_with_every_algorithm_and_the_baseline() {
    let tmp = TempDir::new("bench");
    let report = tmp.path().join("benchmarks.md");
    // An earlier report with the live demo's figures: the rewrite keeps that section.
    std::fs::write(
        &report,
        "# Benchmarks\n\nold tax figures\n\n## Live demo\n\ndemo figures 0 drift\n",
    )
    .expect("seed the report");
    let run = tillbridge(&[
        "bench",
        "tax",
        "--seconds",
        "0.02",
        "--out",
        report.to_str().expect("utf-8 path"),
        "--vectors",
        vectors("tax").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let md = std::fs::read_to_string(&report).expect("report written");
    for algorithm in [
        "UNIT_BASE_CALCULATION",
        "ROW_BASE_CALCULATION",
        "TOTAL_BASE_CALCULATION",
    ] {
        assert_eq!(
            md.matches(&format!("| {algorithm} |")).count(),
            2,
            "{algorithm} row per price mode:\n{md}"
        );
    }
    assert_eq!(md.matches("| baseline").count(), 2);
    assert!(
        md.contains("tillbridge bench tax --seconds 0.02"),
        "the report names its command"
    );
    assert!(
        md.contains("45 passed, 0 failed"),
        "conformance figures:\n{md}"
    );
    assert!(!md.contains("old tax figures"), "{md}");
    assert!(
        md.ends_with("## Live demo\n\ndemo figures 0 drift\n"),
        "the live demo section is kept:\n{md}"
    );
}
