//! JSON in, JSON out: the closability prediction for the Magento admin (through
//! `tillbridge-wasm`) and the edge service's finance reconciliation.
//!
//! Request: `{"order": {...sales_order row...}, "order_items": [...], "config": {...},
//! "invoices": [...], "creditmemos": [...], "plan": [{"type": "invoice", ...} |
//! {"type": "creditmemo", ...}]}` — rows as Magento's database returns them (see
//! [`super::Order::from_magento`]). Answer: a [`super::ClosabilityReport`], or
//! `{"errors": [{"field", "message"}]}` listing every malformed field.

use serde::Deserialize;
use serde_json::{Value, json};

use super::closability::{ClosabilityReport, PlannedDocument, predict};
use super::{Order, SalesError};

/// A closability request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosabilityRequest {
    pub order: Value,
    pub order_items: Vec<Value>,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub invoices: Vec<Value>,
    #[serde(default)]
    pub creditmemos: Vec<Value>,
    pub plan: Vec<PlannedDocument>,
}

/// Build the order and run the prediction.
pub fn closability(req: &ClosabilityRequest) -> Result<ClosabilityReport, SalesError> {
    let order = Order::from_magento(&req.order, &req.order_items, &req.config)?
        .with_documents(&req.invoices, &req.creditmemos)?;
    predict(&order, &req.plan)
}

fn errors(list: Vec<(String, String)>) -> Value {
    json!({"errors": list.into_iter().map(|(f, m)| json!({"field": f, "message": m})).collect::<Vec<_>>()})
}

/// JSON text in, JSON text out.
pub fn closability_json(json_text: &str) -> String {
    let answer = match serde_json::from_str::<ClosabilityRequest>(json_text) {
        Err(e) => errors(vec![(
            format!("line {} column {}", e.line(), e.column()),
            e.to_string(),
        )]),
        Ok(req) => match closability(&req) {
            Ok(report) => serde_json::to_value(report)
                .unwrap_or_else(|e| errors(vec![(String::new(), e.to_string())])),
            Err(SalesError::Invalid { violations }) => errors(
                violations
                    .into_iter()
                    .map(|v| (v.field, v.message))
                    .collect(),
            ),
        },
    };
    answer.to_string()
}
