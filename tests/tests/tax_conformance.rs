//! Every Magento tax vector in `shared/vectors/tax` and `shared/vectors/tax-diff` passes.

use tillbridge_core::tax::TaxRelease;
use tillbridge_core::tax::conformance::RunOptions;
use tillbridge_tests::{failures, run_tax_folder, vectors_dir};

#[test]
fn all_magento_tax_vectors_pass_on_2_4_6() {
    let results = run_tax_folder(&vectors_dir("tax"), RunOptions::default());
    assert_eq!(results.len(), 45, "the shipped folder holds 45 vectors");
    let failed = failures(&results);
    assert!(failed.is_empty(), "{} of {} failed:\n{}", failed.len(), results.len(), failed.join("\n"));
}

#[test]
fn all_randomized_magento_php_vectors_pass_on_2_4_6() {
    let results = run_tax_folder(&vectors_dir("tax-diff"), RunOptions::default());
    assert_eq!(results.len(), 300, "the shipped folder holds 300 vectors");
    let failed = failures(&results);
    assert!(failed.is_empty(), "{} of {} failed:\n{}", failed.len(), results.len(), failed.join("\n"));
}
