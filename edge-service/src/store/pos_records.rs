//! A POS batch as inbound records: what the SQL inbox stores next to the raw batch.
//!
//! | batch content | record kind | external id | payload |
//! |---|---|---|---|
//! | a stock level (snapshot or change) | `pos_stock` | `location/variation@as_of` | `Input::PosStock` |
//! | a line of a completed sale or return with a variation | `pos_sale` | `transaction/line` | `Input::PosSale` (units negative for a return) |
//!
//! The origin is the connector id. A level or line whose location or variation the mapping
//! does not cover is stored too, as the POS reported it, and settled at once with a sentence
//! naming what to map ([`PosRecord::settled`]): its stock is not synced, as `core::mapping`
//! says of unmapped variations. Transactions that are not completed, lines without a variation
//! (custom amounts) and record errors produce no records; the raw batch keeps them.
//!
//! The external id of a sale line has no version: a corrected transaction is not counted twice.
//! A snapshot's "absent means zero" rule spans every page of the snapshot, so it is not applied
//! here; the runner reads the raw batches (`SqlStore::batches`) for it.

use serde_json::{Value, json};
use tillbridge_core::mapping::MappingIndex;
use tillbridge_core::pos::{StockLevel, Timestamp, TransactionKind, TransactionState};
use tillbridge_core::sync::Input;

use super::{NewRecord, RecordKind};
use crate::pos::{BatchPayload, PosBatch};

/// One record made from a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PosRecord {
    pub record: NewRecord,
    /// `Some(sentence)`: nothing to do for the engine (not mapped); the record is stored as
    /// `settled` with this detail and never handed to the engine.
    pub settled: Option<String>,
}

/// The records of `batch`, in batch order.
pub(crate) fn batch_records(
    batch: &PosBatch,
    mapping: Option<&MappingIndex>,
    received_at: Timestamp,
) -> Vec<PosRecord> {
    let origin = batch.connector.as_str();
    match &batch.payload {
        BatchPayload::StockSnapshot { levels, .. } | BatchPayload::StockChanges { levels } => {
            levels
                .iter()
                .map(|level| stock_record(origin, level, mapping, received_at))
                .collect()
        }
        BatchPayload::Sales { transactions } => {
            let mut out = Vec::new();
            for t in transactions {
                if t.state != TransactionState::Completed {
                    continue;
                }
                let source = mapping.and_then(|m| m.source_for(&t.location));
                for line in &t.lines {
                    let Some(variation) = &line.variation else {
                        continue;
                    };
                    let sku = mapping.and_then(|m| m.sku_for(variation));
                    let units = match t.kind {
                        TransactionKind::Sale => line.quantity,
                        TransactionKind::Return => -line.quantity,
                    };
                    let (payload, settled) = match (sku, source) {
                        (Some(sku), Some(source)) => (
                            input_json(&Input::PosSale {
                                record: String::new(),
                                sku: sku.clone(),
                                source: source.clone(),
                                units,
                                at: t.occurred_at,
                            }),
                            None,
                        ),
                        _ => (
                            json!({
                                "pos": "sale_line",
                                "transaction": t.id,
                                "kind": t.kind,
                                "location": t.location,
                                "occurred_at": t.occurred_at,
                                "line": line,
                            }),
                            Some(unmapped(
                                mapping,
                                sku.is_none(),
                                source.is_none(),
                                variation.as_str(),
                                t.location.as_str(),
                            )),
                        ),
                    };
                    out.push(PosRecord {
                        record: NewRecord {
                            kind: RecordKind::PosSale,
                            origin: origin.to_owned(),
                            external_id: Some(format!("{}/{}", t.id, line.id)),
                            payload,
                            received_at,
                        },
                        settled,
                    });
                }
            }
            out
        }
    }
}

fn stock_record(
    origin: &str,
    level: &StockLevel,
    mapping: Option<&MappingIndex>,
    received_at: Timestamp,
) -> PosRecord {
    let sku = mapping.and_then(|m| m.sku_for(&level.variation));
    let source = mapping.and_then(|m| m.source_for(&level.location));
    let (payload, settled) = match (sku, source) {
        (Some(sku), Some(source)) => (
            input_json(&Input::PosStock {
                record: String::new(),
                sku: sku.clone(),
                source: source.clone(),
                on_hand: level.available,
                as_of: level.as_of,
            }),
            None,
        ),
        _ => (
            json!({ "pos": "stock_level", "level": level }),
            Some(unmapped(
                mapping,
                sku.is_none(),
                source.is_none(),
                level.variation.as_str(),
                level.location.as_str(),
            )),
        ),
    };
    PosRecord {
        record: NewRecord {
            kind: RecordKind::PosStock,
            origin: origin.to_owned(),
            external_id: Some(format!(
                "{}/{}@{}",
                level.location, level.variation, level.as_of
            )),
            payload,
            received_at,
        },
        settled,
    }
}

fn input_json(input: &Input) -> Value {
    // An `Input` is plain data (strings, decimals, timestamps): serialising it cannot fail.
    serde_json::to_value(input).unwrap_or(Value::Null)
}

fn unmapped(
    mapping: Option<&MappingIndex>,
    no_sku: bool,
    no_source: bool,
    variation: &str,
    location: &str,
) -> String {
    if mapping.is_none() {
        return "not synced: no POS mapping is configured (map POS locations to MSI sources and \
                variations to SKUs)"
            .to_owned();
    }
    let mut missing = Vec::new();
    if no_sku {
        missing.push(format!("POS variation {variation} has no Commerce SKU"));
    }
    if no_source {
        missing.push(format!("POS location {location} has no MSI source"));
    }
    format!(
        "not synced: {} in the mapping (add it to sync this stock)",
        missing.join(" and ")
    )
}
