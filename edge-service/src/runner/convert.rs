//! From what the POS and Commerce send to what the engine takes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::mapping::{MappingProblem, propose_items_by_pos_sku};
use tillbridge_core::pos::{
    Parcel, PosTransaction, PosVariation, PosVariationId, Sku, SourceCode, Timestamp,
    TransactionKind, TransactionLine, TransactionState,
};
use tillbridge_core::sync::{Delivery, Input, RecordState, WebOrder, WebOrderLine};

use crate::commerce::types::Order;
use crate::config::Settings;
use crate::pos::{BatchPayload, PosBatch};
use crate::store::RecordKind;

/// The engine inputs of a POS batch, each with its external id, and the records that could not
/// be used (each stored too, with the sentence saying why).
#[derive(Debug, Default)]
pub struct Converted {
    pub inputs: Vec<(String, RecordKind, Input)>,
    pub rejected: Vec<Rejected>,
}

/// A POS record the sync cannot use, as it will be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub kind: RecordKind,
    pub external_id: String,
    /// The record as read (or the record error), under a `rejected` key so a replay skips it.
    pub payload: Value,
    /// `Failed` when the POS sent something malformed; `Settled` when the record is fine but
    /// deliberately not synced (location or variation not mapped).
    pub state: RecordState,
    pub detail: String,
}

/// POS variation → Commerce SKU, from the POS catalog: each variation maps to its own POS SKU
/// when no other variation shares it (`core::mapping::propose_items_by_pos_sku`).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_variation: BTreeMap<PosVariationId, Sku>,
    by_sku: BTreeMap<String, PosVariationId>,
    /// Variations left out, with the reason (SKU shared, or no SKU).
    pub problems: Vec<MappingProblem>,
    /// Catalog objects that could not be read.
    pub malformed: usize,
    /// Active POS locations no `[[stores]]` entry maps (read with the catalog).
    pub location_problems: Vec<MappingProblem>,
    /// When it was read (`None`: never).
    pub loaded_at: Option<Timestamp>,
}

impl Catalog {
    pub fn from_variations(variations: &[PosVariation], malformed: usize, now: Timestamp) -> Self {
        let (items, problems) = propose_items_by_pos_sku(variations);
        let mut c = Self {
            problems,
            malformed,
            loaded_at: Some(now),
            ..Self::default()
        };
        for item in items {
            c.by_sku
                .insert(item.sku.as_str().to_lowercase(), item.variation.clone());
            c.by_variation.insert(item.variation, item.sku);
        }
        c
    }

    pub fn sku(&self, variation: &PosVariationId) -> Option<&Sku> {
        self.by_variation.get(variation)
    }

    pub fn variation(&self, sku: &Sku) -> Option<&PosVariationId> {
        self.by_sku.get(&sku.as_str().to_lowercase())
    }

    /// Every mapped variation with its SKU.
    pub fn items(&self) -> impl Iterator<Item = (&PosVariationId, &Sku)> {
        self.by_variation.iter()
    }

    pub fn len(&self) -> usize {
        self.by_variation.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_variation.is_empty()
    }

    /// Why a variation has no SKU here, as a sentence.
    fn why_not(&self, variation: &PosVariationId) -> String {
        for p in &self.problems {
            if p.subject.variations.contains(variation) {
                return p.message.clone();
            }
        }
        if self.loaded_at.is_none() {
            "the POS catalog has not been read yet".to_owned()
        } else {
            format!(
                "POS variation {variation} has no SKU in the POS catalog; give it one in the POS (it is not synced until then)"
            )
        }
    }
}

/// A parcel's lines as the engine takes them: each line's SKU as the POS order carries it
/// (Tillbridge's own orders do), else its variation's SKU in the POS catalog; units of one
/// SKU added up. `Err` names the line that maps to no SKU and why (the parcel waits until the
/// catalog says).
pub fn parcel_lines(
    parcel: &Parcel,
    catalog: Option<&Catalog>,
) -> Result<Vec<(Sku, Decimal)>, String> {
    let mut out: Vec<(Sku, Decimal)> = Vec::new();
    for line in &parcel.lines {
        let sku = match (&line.sku, catalog) {
            (Some(sku), _) => sku.clone(),
            (None, Some(c)) => c
                .sku(&line.variation)
                .cloned()
                .ok_or_else(|| format!("parcel {}: {}", parcel.id, c.why_not(&line.variation)))?,
            (None, None) => {
                return Err(format!(
                    "parcel {}: POS variation {} has no SKU yet: the POS catalog has not been read",
                    parcel.id, line.variation
                ));
            }
        };
        match out.iter_mut().find(|(s, _)| *s == sku) {
            Some((_, q)) => *q += line.quantity,
            None => out.push((sku, line.quantity)),
        }
    }
    Ok(out)
}

fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Map a POS batch. Stock levels become `PosStock` (absolute figures); completed sales become
/// `PosSale` per line (velocity; the stock figure itself comes from the stock feed). The SKU
/// is the record's own when the POS sends one (the file drop), else the catalog's.
pub fn pos_batch(
    pos: &str,
    batch: &PosBatch,
    sources: &BTreeMap<(String, String), SourceCode>,
    catalog: Option<&Catalog>,
    variations: &Mutex<BTreeMap<(String, Sku), PosVariationId>>,
) -> Converted {
    let kind_of_batch = match &batch.payload {
        BatchPayload::Sales { .. } => RecordKind::PosSale,
        _ => RecordKind::PosStock,
    };
    let mut out = Converted::default();
    for e in &batch.record_errors {
        let payload = serde_json::to_value(e).unwrap_or(Value::Null);
        out.rejected.push(Rejected {
            kind: kind_of_batch,
            external_id: format!("error:{}", short_hash(&payload.to_string())),
            payload: json!({ "rejected": payload }),
            state: RecordState::Failed,
            detail: e.to_string(),
        });
    }
    let sku_of = |own: Option<&Sku>, variation: &PosVariationId| -> Result<Sku, String> {
        if let Some(s) = own {
            return Ok(s.clone());
        }
        match catalog {
            Some(c) => c
                .sku(variation)
                .cloned()
                .ok_or_else(|| c.why_not(variation)),
            None => Err("the POS catalog has not been read yet".to_owned()),
        }
    };
    let unmapped = |location: &str| {
        format!(
            "POS location {location} of '{pos}' is not mapped to a Commerce source; add a [[stores]] entry for it (its records are not synced until then)"
        )
    };
    match &batch.payload {
        BatchPayload::StockSnapshot { levels, .. } | BatchPayload::StockChanges { levels } => {
            for level in levels {
                let ext = format!(
                    "stock:{}:{}:{}",
                    level.location.as_str(),
                    level.variation.as_str(),
                    level.as_of.as_millis()
                );
                let Some(source) =
                    sources.get(&(pos.to_owned(), level.location.as_str().to_owned()))
                else {
                    out.rejected.push(Rejected {
                        kind: RecordKind::PosStock,
                        external_id: ext,
                        payload: json!({ "rejected": level }),
                        state: RecordState::Settled,
                        detail: unmapped(level.location.as_str()),
                    });
                    continue;
                };
                let sku = match sku_of(level.pos_sku.as_ref(), &level.variation) {
                    Ok(s) => s,
                    Err(why) => {
                        out.rejected.push(Rejected {
                            kind: RecordKind::PosStock,
                            external_id: ext,
                            payload: json!({ "rejected": level }),
                            state: RecordState::Settled,
                            detail: why,
                        });
                        continue;
                    }
                };
                if let Ok(mut v) = variations.lock() {
                    v.insert((pos.to_owned(), sku.clone()), level.variation.clone());
                }
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
                // Open and cancelled tickets sold nothing (yet).
                if t.state != TransactionState::Completed {
                    continue;
                }
                let sign = match t.kind {
                    TransactionKind::Sale => Decimal::ONE,
                    TransactionKind::Return => -Decimal::ONE,
                };
                let source = sources.get(&(pos.to_owned(), t.location.as_str().to_owned()));
                for line in &t.lines {
                    let sku = match (&line.pos_sku, &line.variation) {
                        (Some(own), _) => Ok(own.clone()),
                        (None, Some(variation)) => sku_of(None, variation),
                        // A custom-amount line (no variation, no SKU) moves no stock.
                        (None, None) => continue,
                    };
                    let rejected = |detail: String| Rejected {
                        kind: RecordKind::PosSale,
                        external_id: sale_id(t, line),
                        payload: json!({ "rejected": {"transaction": t.id.as_str(), "line": line} }),
                        state: RecordState::Settled,
                        detail,
                    };
                    let Some(source) = source else {
                        out.rejected.push(rejected(unmapped(t.location.as_str())));
                        continue;
                    };
                    match sku {
                        Ok(sku) => out.inputs.push(sale(t, line, sku, source, sign)),
                        Err(why) => out.rejected.push(rejected(why)),
                    }
                }
            }
        }
    }
    out
}

/// One id per line of a completed transaction: a completed ticket's lines do not change, and
/// a later version (a fulfilment note, a refund elsewhere) must not count the sale twice.
fn sale_id(t: &PosTransaction, line: &TransactionLine) -> String {
    format!("sale:{}:{}", t.id.as_str(), line.id.as_str())
}

fn sale(
    t: &PosTransaction,
    line: &TransactionLine,
    sku: Sku,
    source: &SourceCode,
    sign: Decimal,
) -> (String, RecordKind, Input) {
    (
        sale_id(t, line),
        RecordKind::PosSale,
        Input::PosSale {
            record: String::new(),
            sku,
            source: source.clone(),
            units: sign * line.quantity,
            at: t.occurred_at,
        },
    )
}

/// `updated_at` as Magento writes it (`YYYY-MM-DD HH:MM:SS`, UTC) moved back by `ms`.
pub fn magento_time_minus(text: &str, ms: i64) -> String {
    let t = Timestamp::from_millis(millis(text) - ms).to_string();
    // `YYYY-MM-DDTHH:MM:SS.mmmZ` → `YYYY-MM-DD HH:MM:SS`
    t.replacen('T', " ", 1).chars().take(19).collect()
}

/// The stored id of one read of an order: the order, when it changed, and what it says (state
/// and every line's quantities), so two changes within Magento's one-second `updated_at` are
/// two records, and reading the same change again is one.
pub fn order_record_id(order: &WebOrder, updated_at: Option<&str>) -> String {
    let mut what = order.state.clone();
    for l in &order.lines {
        what.push_str(&format!(
            "|{}:{}:{}:{}:{}",
            l.item_id, l.qty_ordered, l.qty_shipped, l.qty_canceled, l.qty_refunded
        ));
    }
    format!(
        "{}@{}#{}",
        order.increment_id,
        updated_at.unwrap_or_default(),
        short_hash(&what)
    )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn order(state: &str, shipped: i64) -> WebOrder {
        WebOrder {
            increment_id: "000000042".into(),
            entity_id: 42,
            stock_id: 2,
            state: state.into(),
            updated_at: Timestamp::from_millis(0),
            delivery: Delivery::Ship,
            lines: vec![WebOrderLine {
                item_id: 7,
                sku: Sku::parse("MUG").unwrap(),
                qty_ordered: Decimal::from(2),
                qty_shipped: Decimal::from(shipped),
                qty_canceled: Decimal::ZERO,
                qty_refunded: Decimal::ZERO,
            }],
        }
    }

    #[test]
    fn two_changes_in_one_second_are_two_records_and_a_reread_is_one() {
        let at = Some("2026-11-27 09:00:01");
        let a = order_record_id(&order("new", 0), at);
        assert_eq!(a, order_record_id(&order("new", 0), at));
        assert_ne!(a, order_record_id(&order("canceled", 0), at));
        assert_ne!(a, order_record_id(&order("new", 1), at));
        assert!(a.starts_with("000000042@2026-11-27 09:00:01#"), "{a}");
    }

    #[test]
    fn magento_times_move_back_across_midnight() {
        assert_eq!(
            magento_time_minus("2026-11-27 00:00:05", 10_000),
            "2026-11-26 23:59:55"
        );
        assert_eq!(
            magento_time_minus("2026-11-27 09:00:00", 0),
            "2026-11-27 09:00:00"
        );
    }

    fn var(id: &str, sku: Option<&str>) -> PosVariation {
        PosVariation {
            id: PosVariationId::parse(id).unwrap(),
            sku: sku.map(|s| Sku::parse(s).unwrap()),
            name: None,
            tracked: true,
        }
    }

    #[test]
    fn the_catalog_maps_unique_skus_and_says_why_it_left_the_rest_out() {
        let c = Catalog::from_variations(
            &[
                var("V1", Some("MUG")),
                var("V2", Some("cap")),
                var("V3", Some("CAP")),
                var("V4", None),
            ],
            1,
            Timestamp::from_millis(5),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.sku(&PosVariationId::parse("V1").unwrap())
                .unwrap()
                .as_str(),
            "MUG"
        );
        assert_eq!(
            c.variation(&Sku::parse("mug").unwrap()).unwrap().as_str(),
            "V1"
        );
        assert!(
            c.why_not(&PosVariationId::parse("V2").unwrap())
                .contains("'cap'")
        );
        assert!(
            c.why_not(&PosVariationId::parse("V4").unwrap())
                .contains("has no SKU")
        );
        assert_eq!(c.malformed, 1);
    }
}
