//! # tillbridge-wasm
//!
//! The Tillbridge core for the Magento admin, compiled to WebAssembly. The admin's AMD module
//! (in `magento-module/`) loads it to validate tax lines and, in later issues, to preview
//! reservations and predict whether an order will close, with the very same code the edge
//! service runs. No business rule is written twice. Exports: [`calculate_tax`],
//! [`validate_tax_lines`], [`predict_closability`], [`preview_reservations`], [`version`].
//!
//! The boundary is JSON text in, JSON text out: money stays decimal strings on both sides
//! (never JavaScript floats), and every error is `{"errors": [{"field", "message"}]}`.

use wasm_bindgen::prelude::wasm_bindgen;

/// The crate version, so the admin can show which engine answered.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Magento's `calculateTax` for a quote: `{settings, table, quote, round?}` → `TaxDetails`.
#[wasm_bindgen]
pub fn calculate_tax(request_json: &str) -> String {
    tillbridge_core::tax::api::calculate_json(request_json)
}

/// Compare POS tax lines with Magento: `{settings, rates, lines}` → `ValidationReport` with
/// every discrepancy, its field, both values and the rounding rule that explains it.
#[wasm_bindgen]
pub fn validate_tax_lines(request_json: &str) -> String {
    tillbridge_core::tax::api::validate_json(request_json)
}

/// Will Magento close this order after the planned invoices and credit memos?
/// `{order, order_items, config, invoices?, creditmemos?, plan}` → `ClosabilityReport` (the run,
/// what blocks closing, where a leftover comes from, and a verified proposal that closes it).
#[wasm_bindgen]
pub fn predict_closability(request_json: &str) -> String {
    tillbridge_core::sales::api::closability_json(request_json)
}

/// What pending events (POS stock pushes, orders, shipments, cancels, refunds) will do to
/// salable quantity: `{snapshot, events, skus?}` → salable quantity per SKU and stock before and
/// after each event, with Magento's refusal on any event it would refuse.
#[wasm_bindgen]
pub fn preview_reservations(request_json: &str) -> String {
    tillbridge_core::inventory::preview::preview_json(request_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn validate_tax_lines_reports_the_total_base_carry() {
        let req = json!({
            "settings": {"algorithm": "TOTAL_BASE_CALCULATION"},
            "rates": {"source": "pos"},
            "lines": [
                {"line_id": "1", "quantity": "1", "unit_price": "10.00", "rate": "8.25", "tax_amount": "0.83"},
                {"line_id": "2", "quantity": "1", "unit_price": "11.00", "rate": "8.25", "tax_amount": "0.91"}
            ]
        });
        let out: Value = serde_json::from_str(&validate_tax_lines(&req.to_string())).expect("json");
        let d = &out["discrepancies"];
        assert_eq!(d.as_array().map(Vec::len), Some(1), "{out}");
        assert_eq!(d[0]["line_id"], json!("2"));
        assert_eq!(d[0]["rule"], json!("total_base_carried_remainder"));
        assert_eq!(out["totals"]["difference"], json!("0.01"));
    }

    #[test]
    fn calculate_tax_answers_errors_as_json() {
        let out: Value = serde_json::from_str(&calculate_tax("not json")).expect("json");
        assert!(out["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }

    #[test]
    fn predict_closability_names_every_bad_field() {
        let req = json!({"order": {"state": "nonsense"}, "order_items": [{"item_id": "one"}], "plan": []});
        let out: Value =
            serde_json::from_str(&predict_closability(&req.to_string())).expect("json");
        let errors = out["errors"].as_array().map_or(0, Vec::len);
        assert!(errors >= 2, "{out}");
    }

    #[test]
    fn preview_reservations_shows_a_store_sale_eating_into_web_stock() {
        let req = json!({
            "snapshot": {
                "websites": ["uk"],
                "sources": [{"source_code": "shop-1"}],
                "stocks": [{"stock_id": 2, "websites": ["uk"]}],
                "links": [{"stock_id": 2, "source_code": "shop-1", "priority": 1}],
                "products": [{"sku": "MUG"}],
                "source_items": [{"source_code": "shop-1", "sku": "MUG", "quantity": 3, "status": 1}]
            },
            "events": [
                {"type": "order_placed", "increment_id": "100", "website": "uk", "items": [{"sku": "MUG", "qty": 1}]},
                {"type": "pos_stock_push", "source_code": "shop-1", "sku": "MUG", "quantity": 1}
            ]
        });
        let out: Value =
            serde_json::from_str(&preview_reservations(&req.to_string())).expect("json");
        let qty = |step: &Value| step["salable"][0]["salable_qty"].clone();
        assert_eq!(qty(&json!({"salable": out["initial"]})), json!(3), "{out}");
        assert_eq!(
            qty(&out["steps"][0]),
            json!(2),
            "the web order reserves one"
        );
        assert_eq!(
            qty(&out["steps"][1]),
            json!(0),
            "the till sold two: one on hand, one reserved"
        );
    }

    #[test]
    fn version_is_the_crate_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }
}
