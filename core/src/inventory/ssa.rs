//! Source selection (spec §2.7): the priority algorithm and `GetDefaultSortedSourcesResult`.
//!
//! For each requested SKU (matched case-insensitively) the in-stock items of the given sources
//! are walked in source order; each yields `qty_to_deduct = min(max(available, 0), remaining)`,
//! including rows that deduct 0. `shippable` means every request was covered (epsilon 1e-7).
//! Reservations and other stocks are ignored; nothing is changed.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{MagentoError, Phrase};
use super::ids::{Sku, SkuKey, SourceCode, StockId};
use super::model::Inventory;
use super::num;

/// A requested line (`ItemRequestInterface`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRequest {
    /// SKU text as sent.
    pub sku: String,
    /// Quantity.
    #[serde(with = "num::json_number")]
    pub qty: Decimal,
}

/// `InventoryRequestInterface`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// The stock.
    pub stock_id: StockId,
    /// Lines.
    pub items: Vec<ItemRequest>,
}

/// `SourceSelectionItemInterface`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSelectionItem {
    /// `source_code`
    pub source_code: SourceCode,
    /// `sku` (as stored on the source item)
    pub sku: Sku,
    /// `qty_to_deduct`
    #[serde(with = "num::json_number")]
    pub qty_to_deduct: Decimal,
    /// `qty_available`
    #[serde(with = "num::json_number")]
    pub qty_available: Decimal,
}

/// `SourceSelectionResultInterface`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSelectionResult {
    /// `source_selection_items`
    pub source_selection_items: Vec<SourceSelectionItem>,
    /// `shippable`
    pub shippable: bool,
}

impl SourceSelectionResult {
    /// Deduction requests per source: lines with `qty_to_deduct ≥ 0.000001`, grouped by source
    /// in first-appearance order.
    pub fn deductions_per_source(&self) -> Vec<(SourceCode, Vec<(Sku, Decimal)>)> {
        let mut out: Vec<(SourceCode, Vec<(Sku, Decimal)>)> = Vec::new();
        for item in &self.source_selection_items {
            if item.qty_to_deduct < Decimal::new(1, 6) {
                continue;
            }
            match out.iter_mut().find(|(s, _)| *s == item.source_code) {
                Some((_, lines)) => lines.push((item.sku.clone(), item.qty_to_deduct)),
                None => out.push((
                    item.source_code.clone(),
                    vec![(item.sku.clone(), item.qty_to_deduct)],
                )),
            }
        }
        out
    }
}

/// An algorithm of `source-selection-algorithm-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionAlgorithm {
    /// `code`
    pub code: String,
    /// `title`
    pub title: String,
    /// `description`
    pub description: String,
}

/// `GetSourceSelectionAlgorithmListInterface` (both algorithms Magento ships).
pub fn source_selection_algorithms() -> Vec<SelectionAlgorithm> {
    vec![
        SelectionAlgorithm {
            code: "distance".to_owned(),
            title: "Distance Priority".to_owned(),
            description: "Algorithm which provides Source Selections based on shipping address distance from the source".to_owned(),
        },
        SelectionAlgorithm {
            code: "priority".to_owned(),
            title: "Source Priority".to_owned(),
            description: "Algorithm which provides Source Selections based on predefined priority of Source".to_owned(),
        },
    ]
}

impl Inventory {
    /// `GetDefaultSortedSourcesResult::execute` with caller-sorted sources.
    pub fn default_sorted_sources_result(
        &self,
        request: &InventoryRequest,
        sorted_sources: &[SourceCode],
    ) -> SourceSelectionResult {
        let mut remaining: Vec<(SkuKey, Decimal)> = Vec::new();
        for item in &request.items {
            let key = SkuKey::of(&item.sku);
            match remaining.iter_mut().find(|(k, _)| *k == key) {
                Some(e) => e.1 = item.qty,
                None => remaining.push((key, item.qty)),
            }
        }
        let mut rows: Vec<(usize, u64, &super::model::SourceItem)> = self
            .source_items
            .values()
            .filter(|r| r.item.status.in_stock())
            .filter(|r| remaining.iter().any(|(k, _)| *k == r.item.sku.key()))
            .filter_map(|r| {
                sorted_sources
                    .iter()
                    .position(|s| *s == r.item.source_code)
                    .map(|p| (p, r.id, &r.item))
            })
            .collect();
        rows.sort_by_key(|(p, id, _)| (*p, *id));
        let mut items = Vec::new();
        for (_, _, source_item) in rows {
            let key = source_item.sku.key();
            let left = remaining
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, q)| *q)
                .unwrap_or_default();
            let available = source_item.quantity;
            let deduct = available.max(Decimal::ZERO).min(left);
            items.push(SourceSelectionItem {
                source_code: source_item.source_code.clone(),
                sku: source_item.sku.clone(),
                qty_to_deduct: deduct,
                qty_available: available,
            });
            if let Some(e) = remaining.iter_mut().find(|(k, _)| *k == key) {
                e.1 -= deduct;
            }
        }
        let shippable = remaining.iter().all(|(_, q)| *q < Decimal::new(1, 7));
        SourceSelectionResult {
            source_selection_items: items,
            shippable,
        }
    }

    /// The priority algorithm: enabled sources of the stock by link priority.
    pub fn priority_source_selection(&self, request: &InventoryRequest) -> SourceSelectionResult {
        let sources = self.enabled_source_codes(request.stock_id);
        self.default_sorted_sources_result(request, &sources)
    }

    /// `SourceSelectionServiceInterface::execute`. Only `priority` is modelled (the distance
    /// algorithm needs geocoding).
    pub fn source_selection(
        &self,
        request: &InventoryRequest,
        algorithm: &str,
    ) -> Result<SourceSelectionResult, MagentoError> {
        match algorithm {
            "priority" => Ok(self.priority_source_selection(request)),
            other => Err(MagentoError::localized(Phrase::named(
                "The source selection algorithm \"%code\" is not supported by this model.",
                [("code", json!(other))],
            ))),
        }
    }
}
