//! Square's own Python SDK (PyPI `squareup`, pinned in `sdk_check/requirements.txt` to the
//! 2025-08-20 API release our spec copy is) drives the emulator unchanged, its base URL
//! pointed at it, and asserts on the typed models it parses (`sdk_check/check.py`).
//!
//! The interpreter: `TILLBRIDGE_SQUAREUP_PYTHON`, else the venv `scripts/test.sh` makes
//! (`/var/tmp/tillbridge-squareup-venv`), else `python3` if it can `import square`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Emu;
use serde_json::json;
use tillbridge_square_emulator::DEFAULT_TOKEN;
use tillbridge_square_emulator::contract::Spec;

const VENV_PYTHON: &str = "/var/tmp/tillbridge-squareup-venv/bin/python";

fn python_with_squareup() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TILLBRIDGE_SQUAREUP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let candidates = [PathBuf::from(VENV_PYTHON), PathBuf::from("python3")];
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import square"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squares_python_sdk_parses_every_emulator_response() {
    let python = python_with_squareup().unwrap_or_else(|| {
        panic!(
            "no Python with Square's SDK: run scripts/test.sh (it makes {VENV_PYTHON}), or \
             pip install -r tests/square-emulator/sdk_check/requirements.txt, or set \
             TILLBRIDGE_SQUAREUP_PYTHON"
        )
    });
    let emu = Emu::start().await;
    emu.seed_basic().await;
    emu.ctl("POST", "config", json!({"catalog_page_size": 2}))
        .await;
    emu.advance_seconds(60).await;
    emu.ctl(
        "POST",
        "sales",
        json!({"location_id": "LEEDS0000001", "tender": "CARD",
               "lines": [{"sku": "TEE-S", "quantity": "2"}],
               "tax": {"name": "VAT", "percentage": "20", "inclusive": true}}),
    )
    .await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk_check/check.py");
    let base = emu.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("SQUARE_BASE_URL", base)
            .env("SQUARE_TOKEN", DEFAULT_TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("SDK CHECK OK: 26 checks"), "{stdout}");

    // The SDK really talked to the emulator: every call is in the log, none unrouted.
    let calls = emu.ctl("GET", "calls", json!(null)).await;
    let ops: Vec<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["operation"].as_str().unwrap_or("UNROUTED"))
        .collect();
    for op in [
        "ListLocations",
        "ListCatalog",
        "SearchCatalogObjects",
        "BatchRetrieveInventoryCounts",
        "BatchRetrieveInventoryChanges",
        "SearchOrders",
        "CreateOrder",
        "CreatePayment",
        "RetrieveOrder",
        "UpdateOrder",
        "GetPayment",
    ] {
        assert!(ops.contains(&op), "the SDK never called {op}: {ops:?}");
    }
    assert!(!ops.contains(&"UNROUTED"), "{ops:?}");

    // And every answer the SDK got conforms to Square's OpenAPI document.
    let spec = Spec::load(&common::square_spec_path()).unwrap();
    for c in calls["calls"].as_array().unwrap() {
        let op = c["operation"].as_str().unwrap();
        let status = u16::try_from(c["status"].as_u64().unwrap()).unwrap();
        let schema = spec.response_schema(op, status).unwrap();
        let v = spec.validate(schema, &c["response_body"]);
        assert!(v.is_empty(), "{op} {status}: {v:?}");
    }
    emu.handle.stop().await;
}
