//! Closability (in progress).
use serde::{Deserialize, Serialize};

use super::{CreditmemoRequest, InvoiceRequest};

/// One document of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlannedDocument {
    Invoice(InvoiceRequest),
    Creditmemo(CreditmemoRequest),
}
