//! From what the POS and Commerce send to what the engine takes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rust_decimal::Decimal;
use tillbridge_core::pos::{PosVariationId, Sku, SourceCode, TransactionKind};
use tillbridge_core::sync::{Delivery, Input, WebOrder, WebOrderLine};

use crate::commerce::types::Order;
use crate::config::Settings;
use crate::pos::{BatchPayload, PosBatch};
use crate::store::RecordKind;

/// The engine inputs of a POS batch, each with its external id, and the count of records that
/// could not be used (unmapped location, no SKU, malformed).
#[derive(Debug, Default)]
pub struct Converted {
    pub inputs: Vec<(String, RecordKind, Input)>,
    pub rejected: u64,
}

fn commerce_sku(pos_sku: Option<&Sku>) -> Option<Sku> {
    pos_sku.cloned()
}

/// Map a POS batch. Stock levels become `PosStock` (absolute figures); completed sales become
/// `PosSale` per line (velocity; the stock figure itself comes from the stock feed).
pub fn pos_batch(
    pos: &str,
    batch: &PosBatch,
    sources: &BTreeMap<(String, String), SourceCode>,
    variations: &Mutex<BTreeMap<(String, Sku), PosVariationId>>,
) -> Converted {
    let mut out = Converted {
        inputs: Vec::new(),
        rejected: batch.record_errors.len() as u64,
    };
    match &batch.payload {
        BatchPayload::StockSnapshot { levels, .. } | BatchPayload::StockChanges { levels } => {
            for level in levels {
                let Some(source) =
                    sources.get(&(pos.to_owned(), level.location.as_str().to_owned()))
                else {
                    out.rejected += 1;
                    continue;
                };
                let Some(sku) = commerce_sku(level.pos_sku.as_ref()) else {
                    out.rejected += 1;
                    continue;
                };
                if let Ok(mut v) = variations.lock() {
                    v.insert((pos.to_owned(), sku.clone()), level.variation.clone());
                }
                let ext = format!(
                    "stock:{}:{}:{}",
                    level.location.as_str(),
                    level.variation.as_str(),
                    level.as_of.as_millis()
                );
                out.inputs.push((
                    ext,
                    RecordKind::PosStock,
                    Input::PosStock {
                        record: String::new(),
                        sku,
                        source: source.clone(),
                        on_hand: level.available,
                        as_of: level.as_of,
                    },
                ));
            }
        }
        BatchPayload::Sales { transactions } => {
            for t in transactions {
                let Some(source) = sources.get(&(pos.to_owned(), t.location.as_str().to_owned()))
                else {
                    out.rejected += 1;
                    continue;
                };
                let sign = match t.kind {
                    TransactionKind::Sale => Decimal::ONE,
                    TransactionKind::Return => -Decimal::ONE,
                };
                for line in &t.lines {
                    let Some(sku) = commerce_sku(line.pos_sku.as_ref()) else {
                        continue;
                    };
                    let ext = format!(
                        "sale:{}:{}:{}",
                        t.id.as_str(),
                        line.id.as_str(),
                        t.version.unwrap_or(0)
                    );
                    out.inputs.push((
                        ext,
                        RecordKind::PosSale,
                        Input::PosSale {
                            record: String::new(),
                            sku,
                            source: source.clone(),
                            units: sign * line.quantity,
                            at: t.occurred_at,
                        },
                    ));
                }
            }
        }
    }
    out
}

fn millis(text: &str) -> i64 {
    // `YYYY-MM-DD HH:MM:SS` (UTC) as Magento writes it.
    let t = text.replace(' ', "T");
    let t = if t.ends_with('Z') { t } else { format!("{t}Z") };
    tillbridge_core::pos::Timestamp::parse(&t)
        .map(|ts| ts.as_millis())
        .unwrap_or(0)
}

/// A Commerce order as the engine sees it. Composite parents are skipped (their children carry
/// the stock). The pickup store is the In-Store Pickup `pickup_location_code`, or the shipping
/// description when the method is the configured pickup method.
pub fn web_order(order: &Order, settings: &Settings) -> Option<WebOrder> {
    let raw = &order.raw;
    let method = raw
        .pointer("/extension_attributes/shipping_assignments/0/shipping/method")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let pickup_code = raw
        .pointer("/extension_attributes/pickup_location_code")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| {
            (method == settings.commerce.pickup_method).then(|| {
                raw.get("shipping_description")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
        });
    let delivery = match pickup_code
        .filter(|c| !c.is_empty())
        .and_then(|c| SourceCode::parse(&c).ok())
    {
        Some(store) => Delivery::Pickup { store },
        None => Delivery::Ship,
    };
    let stock_id = settings
        .commerce
        .website_stocks
        .values()
        .next()
        .copied()
        .unwrap_or(1);
    let lines = order
        .items
        .iter()
        .filter(|i| {
            !matches!(
                i.product_type.as_deref(),
                Some("configurable" | "bundle" | "grouped")
            )
        })
        .filter_map(|i| {
            Some(WebOrderLine {
                item_id: i.item_id,
                sku: Sku::parse(&i.sku).ok()?,
                qty_ordered: i.qty_ordered,
                qty_shipped: i.qty_shipped,
                qty_canceled: i.qty_canceled,
                qty_refunded: i.qty_refunded,
            })
        })
        .collect();
    Some(WebOrder {
        increment_id: order.increment_id.clone(),
        entity_id: order.entity_id.0,
        stock_id,
        state: order.state.clone().unwrap_or_else(|| "new".into()),
        updated_at: tillbridge_core::pos::Timestamp::from_millis(millis(
            order.updated_at.as_deref().unwrap_or_default(),
        )),
        delivery,
        lines,
    })
}
