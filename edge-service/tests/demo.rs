//! `tillbridge demo` as a newcomer runs it: the real binary, both emulators in-process, the sync
//! live over a (small) generated world, the summary on stdout and as JSON.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tillbridge");

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tillbridge-demo-test-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_short_demo_syncs_a_small_world_with_zero_drift_and_writes_its_summary() {
    let dir = temp_dir("short");
    let summary = dir.join("summary.json");
    let output = Command::new(BIN)
        .args([
            "demo",
            "--minutes",
            "0.4",
            "--stores",
            "3",
            "--skus",
            "80",
            "--seed",
            "7",
            "--summary-json",
        ])
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The report a newcomer reads: the world, the dashboard URL, the summary and the verdict.
    assert!(stdout.contains("3 stores"), "{stdout}");
    assert!(stdout.contains("dashboard  http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("sale→Commerce latency"), "{stdout}");
    assert!(stdout.contains("\nPASS: "), "{stdout}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    for key in [
        "pos_events",
        "commerce_requests",
        "items_written",
        "latency_ms_p50",
        "latency_ms_p99",
        "web_orders",
        "oversells",
        "drift_units",
        "open_exceptions",
    ] {
        assert!(json.get(key).is_some(), "summary lacks {key}: {json}");
    }
    assert_eq!(json["drift_units"], serde_json::json!(0), "{json}");
    assert_eq!(
        json["unexplained_exceptions"],
        serde_json::json!(0),
        "{json}"
    );
    assert_eq!(json["passed"], Value::Bool(true), "{json}");
    assert_eq!(json["world"]["stores"], serde_json::json!(3));
    assert_eq!(json["world"]["skus"], serde_json::json!(80));
    // Something happened: the tills were read, Commerce written, web orders taken and timed.
    let n = |k: &str| json[k].as_u64().unwrap_or(0);
    assert!(n("pos_events") >= 240, "every till figure is read: {json}");
    assert!(
        n("commerce_requests") > 0 && n("items_written") > 0,
        "{json}"
    );
    assert!(n("web_orders") > 0, "{json}");
    assert!(json["latency_ms_p50"].as_i64().is_some(), "{json}");
    assert!(
        json["latency_ms_p99"].as_i64() >= json["latency_ms_p50"].as_i64(),
        "{json}"
    );
    // The temporary database is gone after the run.
    let db_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("database"))
        .unwrap();
    let db = db_line.split_whitespace().last().unwrap();
    assert!(!std::path::Path::new(db).exists(), "{db} left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_demo_options_are_named_and_exit_2() {
    let output = Command::new(BIN)
        .args(["demo", "--stores", "0", "--minutes", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--stores 0"), "{stderr}");
    assert!(stderr.contains("--minutes 0"), "{stderr}");
}
