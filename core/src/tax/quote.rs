//! (in progress)
use serde_json::Value;
use super::TaxError;
use super::conformance::{Mismatch, RunOptions};
pub fn run_quote_vector(_v: &Value, _o: RunOptions) -> Result<Vec<Mismatch>, TaxError> { Err(TaxError::Unsupported("quote".into())) }
