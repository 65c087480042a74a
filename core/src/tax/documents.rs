//! (in progress)
use serde_json::Value;
use super::TaxError;
use super::conformance::Mismatch;
pub fn run_invoice_vector(_v: &Value) -> Result<Vec<Mismatch>, TaxError> { Err(TaxError::Unsupported("invoice".into())) }
pub fn run_creditmemo_vector(_v: &Value) -> Result<Vec<Mismatch>, TaxError> { Err(TaxError::Unsupported("creditmemo".into())) }
