//! A Magento client nobody here wrote drives the emulator unchanged: PyMagento (PyPI
//! `pymagento`, pinned in `client_check/requirements.txt`) lists and saves sources, source
//! items and links, reads, holds, invoices, ships and refunds an order, and reads shipments,
//! invoices, credit memos and bulk status (`client_check/check.py`).
//!
//! The interpreter: `TILLBRIDGE_PYMAGENTO_PYTHON`, else the venv `scripts/test.sh` makes
//! (`/var/tmp/tillbridge-squareup-venv`, shared with the Square SDK check), else `python3` if it
//! can `import magento`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Emu;
use serde_json::json;

const VENV_PYTHON: &str = "/var/tmp/tillbridge-squareup-venv/bin/python";

fn python_with_pymagento() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TILLBRIDGE_PYMAGENTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    [PathBuf::from(VENV_PYTHON), PathBuf::from("python3")]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import magento.client"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymagento_works_against_the_emulator_unchanged() {
    let python = python_with_pymagento().unwrap_or_else(|| {
        panic!(
            "no Python with pymagento: run scripts/test.sh (it installs it into {VENV_PYTHON}), \
             or pip install -r tests/commerce-emulator/client_check/requirements.txt, or set \
             TILLBRIDGE_PYMAGENTO_PYTHON"
        )
    });
    let emu = Emu::start().await;
    common::scenario::seed(&emu).await;
    let order = common::scenario::checkout(
        &emu,
        "000000042",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15, "tax_percent": 20},
               {"sku": "MUG", "qty": 1, "price": 8.25, "tax_percent": 20}]),
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("client_check/check.py");
    let (base, token) = (emu.base.clone(), emu.token.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .args([base, token, order.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pymagento check failed");
    assert!(stdout.contains("all pymagento checks passed"));
    // Everything it did went through Magento's routes with its bearer token, under /rest/all.
    let calls = emu.calls().await;
    assert!(calls.iter().filter(|c| c["store"] == "all").count() >= 30);
}
