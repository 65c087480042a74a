//! Magento's MSI test vectors (`shared/vectors/msi`, 159 cases of `magento/inventory`) over
//! HTTP: ops and checks with a `rest` form go through the emulator's REST routes, the rest
//! through its control API. Every case must pass.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use tillbridge_commerce_emulator::msi;

fn msi_dir() -> PathBuf {
    let shared = std::env::var("TILLBRIDGE_SHARED_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    shared.join("vectors").join("msi")
}

#[test]
fn every_msi_vector_passes_over_http() {
    let mut lines = Vec::new();
    let outcomes = msi::run_dir(&msi_dir(), |o| lines.extend(msi::outcome_lines(o))).unwrap();
    for l in &lines {
        println!("{l}");
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    assert_eq!(outcomes.len(), 159, "expected the 159 MSI cases");
    assert_eq!(failed, 0, "see the FAIL lines above");
}
