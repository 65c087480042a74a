//! `tillbridge conformance msi DIR` and `tillbridge sandbox commerce`, run as a user would run
//! them: every shipped MSI case passes over HTTP; a case with a changed expectation fails with
//! a line naming the check, and the run exits 1.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tillbridge");

fn msi_dir() -> PathBuf {
    let shared = std::env::var_os("TILLBRIDGE_SHARED_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
            PathBuf::from,
        );
    shared.join("vectors").join("msi")
}

#[test]
fn every_shipped_msi_case_passes_over_http() {
    let out = Command::new(BIN)
        .args(["conformance", "msi"])
        .arg(msi_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"159 passed, 0 failed"), "{stdout}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("PASS ")).count(), 159);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_changed_expectation_fails_naming_the_check_and_exits_1() {
    let src = msi_dir();
    let dir = std::env::temp_dir().join(format!("tillbridge-msi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cases")).unwrap();
    std::fs::copy(src.join("fixtures.json"), dir.join("fixtures.json")).unwrap();
    let id = "salable-qty.get-product-salable-qty.standard-world";
    std::fs::copy(
        src.join("cases").join(format!("{id}.json")),
        dir.join("cases").join(format!("{id}.json")),
    )
    .unwrap();
    // Magento asserts 8.5 for SKU-1 on stock 10; claim 9 in a copy.
    let rest = "rest.source-items-save.null-sku";
    let text = std::fs::read_to_string(src.join("cases").join(format!("{rest}.json"))).unwrap();
    std::fs::write(dir.join("cases").join(format!("{rest}.json")), &text).unwrap();
    let case = std::fs::read_to_string(src.join("cases").join(format!("{id}.json"))).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&case).unwrap();
    v["id"] = serde_json::json!("changed");
    v["expect"][0]["equals"] = serde_json::json!(9);
    std::fs::write(dir.join("cases").join("changed.json"), v.to_string()).unwrap();

    let out = Command::new(BIN)
        .args(["conformance", "msi"])
        .arg(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"FAIL changed: expect[0] salable_qty {\"sku\":\"SKU-1\",\"stock_id\":10} expected 9 got 8.5"),
        "{stdout}"
    );
    assert!(lines.contains(&format!("PASS {id}").as_str()), "{stdout}");
    assert!(lines.contains(&format!("PASS {rest}").as_str()), "{stdout}");
    assert_eq!(lines.last(), Some(&"2 passed, 1 failed"));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_folder_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["conformance", "msi", "/nonexistent/msi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fixtures.json"));
}

#[test]
fn the_commerce_sandbox_accepts_its_token_and_refuses_others() {
    let mut child = Command::new(BIN)
        .args([
            "sandbox",
            "commerce",
            "--port",
            "0",
            "--token",
            "sandbox-token",
            "--unlimited",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut base = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) =
            line.strip_prefix("Adobe Commerce (Magento 2.4 + MSI) emulator listening on ")
        {
            base = rest.to_owned();
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let client = tillbridge_commerce_emulator::http_client::Client::new(&base).unwrap();
    let status = |token: &str| {
        client
            .request("GET", "/rest/V1/inventory/sources", Some(token), None)
            .map(|r| r.status)
    };
    let ok = status("sandbox-token");
    let refused = status("other");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((ok.unwrap(), refused.unwrap()), (200, 401));
}
