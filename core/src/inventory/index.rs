//! The stock index (spec §4.1): `inventory_stock_<id>` rows for every stock but the default one,
//! and the legacy stock status standing in for stock 1.
//!
//! Rows are **materialised**, as in Magento: they change when Magento reindexes (source item
//! saves, deletions and decrements, a full reindex, the salability queue), not when
//! reservations are appended or configuration is saved directly. `quantity` ignores
//! reservations; `is_salable` was decided at index time with the reservations of that moment.
//! That is why [`Inventory::get_product_salable_qty`](crate::inventory::Inventory) can return a
//! negative number: the row still says salable while reservations have since exceeded stock.

use std::collections::BTreeSet;

use rust_decimal::Decimal;

use super::ids::{ProductType, SkuKey, SourceCode, StockId};
use super::model::{IndexRow, Inventory};

impl Inventory {
    /// `GetStockItemDataInterface::execute`: the index row of a SKU in a stock. For stock 1 it
    /// is the legacy stock status, falling back to the legacy stock item in multi-source mode
    /// (`StockItemDataHandler`).
    pub fn stock_item_data(&self, sku: &str, stock_id: StockId) -> Option<IndexRow> {
        let key = SkuKey::of(sku);
        if stock_id.is_default() {
            let product = self.products.get(&key)?;
            if let Some(row) = self.legacy_status.get(&key) {
                return Some(*row);
            }
            if self.is_single_source_mode() || !product.product_type.allows_source_items() {
                return None;
            }
            return Some(IndexRow {
                quantity: product.stock_item.qty.unwrap_or(Decimal::ZERO),
                is_salable: product.stock_item.is_in_stock,
            });
        }
        self.index.get(&stock_id)?.get(&key).copied()
    }

    /// Σ reservations of a SKU in a stock (`GetReservationsQuantity`).
    pub fn reservations_quantity(&self, sku: &str, stock_id: StockId) -> Decimal {
        let key = SkuKey::of(sku);
        self.reservations
            .iter()
            .filter(|r| r.stock_id == stock_id && r.sku.key() == key)
            .map(|r| r.quantity)
            .sum()
    }

    /// The `SelectBuilder` row of a simple SKU in stock `stock_id` (≠ 1), or `None` when the SKU
    /// has no item on an enabled linked source.
    pub(crate) fn compute_index_row(&self, stock_id: StockId, key: &SkuKey) -> Option<IndexRow> {
        let mut sources: Vec<SourceCode> = self.enabled_source_codes(stock_id);
        sources.sort();
        sources.dedup();
        // One lookup per source of the stock (the table is keyed by source and SKU), not a scan
        // of every source item: a save reindexes its SKUs, and a large catalogue made each
        // save cost the whole table.
        let items: Vec<_> = sources
            .into_iter()
            .filter_map(|source| self.source_items.get(&(source, key.clone())))
            .collect();
        if items.is_empty() {
            return None;
        }
        let in_stock_qty: Decimal = items
            .iter()
            .filter(|r| r.item.status.in_stock())
            .map(|r| r.item.quantity)
            .sum();
        let in_stock_count = items.iter().filter(|r| r.item.status.in_stock()).count();
        let reservations = self
            .reservations
            .iter()
            .filter(|r| r.stock_id == stock_id && r.sku.key() == *key)
            .map(|r| r.quantity)
            .fold(None, |acc: Option<Decimal>, q| {
                Some(acc.unwrap_or_default() + q)
            });
        let is_salable = match self.products.get(key) {
            // `SkuIsAbsentInCatalogCondition`
            None => true,
            Some(product) => {
                let li = &product.stock_item;
                let global_backorders = self.config.backorders();
                let min_qty = if li.use_config_min_qty {
                    self.config.min_qty()
                } else {
                    li.min_qty
                };
                // `BackordersCondition`
                let backorders_enabled = if global_backorders == 0 {
                    !li.use_config_backorders && li.backorders != 0
                } else {
                    li.use_config_backorders || li.backorders != 0
                };
                let backorders =
                    backorders_enabled && min_qty >= Decimal::ZERO && in_stock_count > 0;
                // `ManageStockCondition`
                let unmanaged = (!li.use_config_manage_stock && !li.manage_stock)
                    || (self.config.manage_stock() == 0 && li.use_config_manage_stock);
                // `MinQtyStockWithReservationsCondition`
                let above_threshold =
                    in_stock_qty + reservations.unwrap_or_default() - min_qty > Decimal::ZERO;
                backorders || unmanaged || above_threshold
            }
        };
        Some(IndexRow {
            quantity: super::num::round4(
                items
                    .iter()
                    .filter(|r| r.item.status.in_stock())
                    .map(|r| r.item.quantity)
                    .sum(),
            ),
            is_salable,
        })
    }

    /// The row of a composite product (grouped / configurable / bundle indexers): quantity is
    /// the children's sum; salable when the parent's legacy item is in stock and a child (for
    /// bundles: every required option and at least one option) is salable.
    pub(crate) fn compute_composite_row(
        &self,
        stock_id: StockId,
        key: &SkuKey,
    ) -> Option<IndexRow> {
        let product = self.products.get(key)?;
        let rows = self.index.get(&stock_id);
        let child_row = |sku: &super::ids::Sku| rows.and_then(|r| r.get(&sku.key())).copied();
        let parent_in_stock = product.stock_item.is_in_stock;
        match product.product_type {
            ProductType::Grouped | ProductType::Configurable => {
                let child_rows: Vec<IndexRow> =
                    product.child_skus().iter().filter_map(child_row).collect();
                if child_rows.is_empty() {
                    return None;
                }
                Some(IndexRow {
                    quantity: child_rows.iter().map(|r| r.quantity).sum(),
                    is_salable: parent_in_stock && child_rows.iter().any(|r| r.is_salable),
                })
            }
            ProductType::Bundle => {
                let mut any_row = false;
                let mut quantity = Decimal::ZERO;
                let mut any_option = false;
                let mut required_missing = false;
                for option in &product.bundle_options {
                    let option_rows: Vec<IndexRow> = option
                        .links
                        .iter()
                        .map(|l| &l.sku)
                        .filter_map(child_row)
                        .collect();
                    any_row |= !option_rows.is_empty();
                    quantity += option_rows.iter().map(|r| r.quantity).sum::<Decimal>();
                    let available = option_rows.iter().any(|r| r.is_salable);
                    any_option |= available;
                    required_missing |= option.required && !available;
                }
                if !any_row {
                    return None;
                }
                Some(IndexRow {
                    quantity,
                    is_salable: parent_in_stock && any_option && !required_missing,
                })
            }
            _ => None,
        }
    }

    /// Reindexes SKUs in one stock (delete + insert of their rows), then the composite
    /// products that contain them.
    pub(crate) fn reindex_skus_in_stock(&mut self, stock_id: StockId, keys: &[SkuKey]) {
        if stock_id.is_default() {
            return;
        }
        for key in keys {
            let row = self.compute_index_row(stock_id, key);
            let table = self.index.entry(stock_id).or_default();
            match row {
                Some(r) => {
                    table.insert(key.clone(), r);
                }
                None => {
                    table.remove(key);
                }
            }
        }
        let parents: Vec<SkuKey> = self
            .products
            .iter()
            .filter(|(_, p)| !p.product_type.allows_source_items())
            .filter(|(_, p)| p.child_skus().iter().any(|c| keys.contains(&c.key())))
            .map(|(k, _)| k.clone())
            .collect();
        for parent in parents {
            let row = self.compute_composite_row(stock_id, &parent);
            let table = self.index.entry(stock_id).or_default();
            match row {
                Some(r) => {
                    table.insert(parent, r);
                }
                None => {
                    table.remove(&parent);
                }
            }
        }
    }

    /// The synchronous reindex after source items changed (`SourceItemIndexer::executeList`):
    /// each SKU is reindexed in every stock its source is linked to.
    pub(crate) fn reindex_after_source_items(&mut self, changed: &[(SourceCode, SkuKey)]) {
        let mut per_stock: std::collections::BTreeMap<StockId, BTreeSet<SkuKey>> =
            std::collections::BTreeMap::new();
        for (source, key) in changed {
            for stock in self.stocks_of_source(source) {
                per_stock.entry(stock).or_default().insert(key.clone());
            }
        }
        for (stock, keys) in per_stock {
            let keys: Vec<SkuKey> = keys.into_iter().collect();
            self.reindex_skus_in_stock(stock, &keys);
        }
    }

    /// A full reindex (`InventoryIndexer::executeFull`) of the given stocks, all when `None`.
    /// For stock 1 it recomputes the legacy stock status of every product: quantity from the
    /// legacy item, status from `AreProductsSalable` (source-managed products) or the legacy
    /// flag (composites).
    pub fn reindex(&mut self, stock_ids: Option<&[StockId]>) {
        let stocks: Vec<StockId> = match stock_ids {
            Some(ids) => ids.to_vec(),
            None => self.stocks.keys().copied().collect(),
        };
        for stock in stocks.iter().copied().filter(|s| !s.is_default()) {
            if !self.stocks.contains_key(&stock) {
                continue;
            }
            let sources = self.enabled_source_codes(stock);
            let keys: BTreeSet<SkuKey> = self
                .source_items
                .values()
                .filter(|r| sources.contains(&r.item.source_code))
                .map(|r| r.item.sku.key())
                .collect();
            let mut table = std::collections::BTreeMap::new();
            for key in &keys {
                if let Some(row) = self.compute_index_row(stock, key) {
                    table.insert(key.clone(), row);
                }
            }
            self.index.insert(stock, table);
            let composites: Vec<SkuKey> = self
                .products
                .iter()
                .filter(|(_, p)| !p.product_type.allows_source_items())
                .map(|(k, _)| k.clone())
                .collect();
            for key in composites {
                if let Some(row) = self.compute_composite_row(stock, &key) {
                    self.index.entry(stock).or_default().insert(key, row);
                }
            }
        }
        if stocks.iter().any(|s| s.is_default()) {
            let keys: Vec<SkuKey> = self.products.keys().cloned().collect();
            for key in &keys {
                self.legacy_reindex(key);
            }
            self.update_default_stock(&keys);
        }
    }

    /// Every row of a stock index (for stock 1, the legacy stock status), by SKU key.
    pub fn index_rows(&self, stock_id: StockId) -> Vec<(String, IndexRow)> {
        if stock_id.is_default() {
            return self
                .legacy_status
                .iter()
                .map(|(k, r)| (k.as_str().to_owned(), *r))
                .collect();
        }
        self.index
            .get(&stock_id)
            .map(|t| t.iter().map(|(k, r)| (k.as_str().to_owned(), *r)).collect())
            .unwrap_or_default()
    }
}
