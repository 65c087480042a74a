//! Every Magento tax vector in `shared/vectors/tax` and `shared/vectors/tax-diff` passes.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use tillbridge_core::tax::TaxRelease;
use tillbridge_core::tax::conformance::RunOptions;
use tillbridge_tests::{failures, run_tax_folder, vectors_dir};

#[test]
fn all_magento_tax_vectors_pass_on_2_4_6() {
    let results = run_tax_folder(&vectors_dir("tax"), RunOptions::default());
    assert_eq!(results.len(), 45, "the shipped folder holds 45 vectors");
    let failed = failures(&results);
    assert!(
        failed.is_empty(),
        "{} of {} failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

#[test]
fn all_randomized_magento_php_vectors_pass_on_2_4_6() {
    let results = run_tax_folder(&vectors_dir("tax-diff"), RunOptions::default());
    assert_eq!(results.len(), 300, "the shipped folder holds 300 vectors");
    let failed = failures(&results);
    assert!(
        failed.is_empty(),
        "{} of {} failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

#[test]
fn mainline_release_matches_the_newer_unit_base_revision() {
    // 24 UNIT cases carry `version_notes`: the newer UnitBaseCalculator does not round a
    // tax-inclusive unit price first. With the mainline release the runner compares against
    // that alternative; every other vector is unaffected by the difference.
    let opts = RunOptions {
        release: TaxRelease::Mainline,
    };
    let results = run_tax_folder(&vectors_dir("tax-diff"), opts);
    let failed = failures(&results);
    assert!(
        failed.is_empty(),
        "{} failed on mainline:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn the_release_setting_changes_the_result_where_magento_revisions_differ() {
    // Running the 2.4.6 expectations with the mainline arithmetic must fail exactly on the
    // cases whose alternative differs: proof that the switch is real, not cosmetic.
    let dir = vectors_dir("tax-diff");
    let mut differing = 0;
    for path in tillbridge_tests::json_files(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v.get("version_notes").is_none() {
            continue;
        }
        differing += 1;
        // Drop the alternative so the mainline run is compared with the 2.4.6 numbers.
        v.as_object_mut().unwrap().remove("version_notes");
        let outcome = tillbridge_core::tax::conformance::run_vector(
            &v,
            RunOptions {
                release: TaxRelease::Mainline,
            },
        )
        .unwrap();
        assert!(
            !outcome.passed(),
            "{} should differ between releases",
            outcome.id
        );
    }
    assert_eq!(differing, 24);
}

#[test]
fn a_changed_expectation_is_reported_with_its_field() {
    // Negative control: the comparison is not vacuous.
    let path = vectors_dir("tax-diff").join("magento_php_diff_row_1.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["expected_tax_details"]["items"]["sku_1"]["row_tax"] = serde_json::json!(1.82);
    let outcome = tillbridge_core::tax::conformance::run_vector(&v, RunOptions::default()).unwrap();
    assert_eq!(outcome.mismatches.len(), 1, "{:?}", outcome.mismatches);
    let m = &outcome.mismatches[0];
    assert_eq!(m.field, "items.sku_1.row_tax");
    assert_eq!((m.expected.as_str(), m.actual.as_str()), ("1.82", "1.81"));
}
