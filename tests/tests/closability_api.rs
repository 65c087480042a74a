//! The closability JSON API (what the Magento admin calls through WASM) on Magento's own
//! sales-diff orders.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use serde_json::{Value, json};
use tillbridge_core::sales::api::closability_json;
use tillbridge_tests::{json_files, vectors_dir};

fn first_vectors(n: usize) -> Vec<Value> {
    json_files(&vectors_dir("sales-diff"))
        .into_iter()
        .take(n)
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn invoicing_and_refunding_everything_closes_or_comes_with_a_verified_proposal() {
    let mut closed = 0;
    for v in first_vectors(20) {
        let req = json!({
            "order": v["order"],
            "order_items": v["order_items"],
            "config": v["config"],
            "plan": [{"type": "invoice"}, {"type": "creditmemo"}]
        });
        let out: Value = serde_json::from_str(&closability_json(&req.to_string())).unwrap();
        assert!(out.get("errors").is_none(), "{}: {out}", v["id"]);
        let closes = out["run"]["closes"].as_bool().unwrap();
        let proposal_closes = out["proposal"]["verified"]["closes"].as_bool();
        assert!(
            closes || proposal_closes == Some(true) || out["unresolved"].is_string(),
            "{}: neither closes nor proposes: {out}",
            v["id"]
        );
        if closes {
            closed += 1;
            let leftover = out["run"]["flags"]["refundable_leftover"]
                .as_str()
                .map(|s| s.parse::<f64>().unwrap());
            assert!(
                leftover.is_none_or(|l| l.abs() < 0.0001),
                "{}: {out}",
                v["id"]
            );
        }
    }
    assert!(
        closed >= 10,
        "most full refunds close as they are; {closed} of 20 did"
    );
}

#[test]
fn a_plan_without_invoice_names_the_units_left_to_invoice() {
    let v = &first_vectors(1)[0];
    let req = json!({"order": v["order"], "order_items": v["order_items"], "config": v["config"], "plan": []});
    let out: Value = serde_json::from_str(&closability_json(&req.to_string())).unwrap();
    assert_eq!(out["run"]["closes"], json!(false));
    let blockers = out["blockers"].as_array().unwrap();
    assert!(
        blockers
            .iter()
            .any(|b| b["blocker"] == json!("units_to_invoice")),
        "{out}"
    );
}

#[test]
fn malformed_rows_are_reported_field_by_field() {
    let req = json!({
        "order": {"state": "nonsense", "base_to_order_rate": "x"},
        "order_items": [{"item_id": "one"}],
        "plan": []
    });
    let out: Value = serde_json::from_str(&closability_json(&req.to_string())).unwrap();
    let fields: Vec<&str> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"order.state"), "{fields:?}");
    assert!(
        fields.len() >= 2,
        "every problem, not just the first: {fields:?}"
    );
}
