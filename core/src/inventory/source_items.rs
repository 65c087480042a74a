//! Source items: bulk upsert with absolute quantities, deletion, atomic decrement, and the bulk
//! assign / unassign / transfer services (spec §2.4, FORMAT §2 "Source items").

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{MagentoError, Phrase};
use super::ids::{Sku, SkuKey, SourceCode};
use super::model::{Inventory, SourceItem, SourceItemRow, SourceItemStatus};
use super::num;

/// A source item as a caller sends it; absent or `null` fields are `None` and are reported by
/// the validator chain (`"sku" can not be empty.`, `"quantity" should be numeric.`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceItemInput {
    /// `sku`
    pub sku: Option<String>,
    /// `source_code`
    pub source_code: Option<String>,
    /// `quantity` (absolute, not a delta)
    #[serde(with = "num::json_number::option")]
    pub quantity: Option<Decimal>,
    /// `status` (0 or 1)
    pub status: Option<i64>,
}

impl SourceItemInput {
    /// A well-formed item.
    pub fn new(sku: &Sku, source: &SourceCode, quantity: Decimal, in_stock: bool) -> Self {
        Self {
            sku: Some(sku.as_str().to_owned()),
            source_code: Some(source.as_str().to_owned()),
            quantity: Some(quantity),
            status: Some(i64::from(in_stock)),
        }
    }
}

fn field_phrase(text: &'static str, field: &str) -> Phrase {
    Phrase::named(text, [("field", json!(field))])
}

/// The source item validator chain (`SkuValidator`, `SourceCodeValidator`,
/// `QuantityValidator`, `StatusValidator`), every error of every item in order.
pub(crate) fn validate_source_items(items: &[SourceItemInput]) -> Vec<Phrase> {
    let mut errors = Vec::new();
    for item in items {
        let sku = item.sku.clone().unwrap_or_default();
        if sku.trim().is_empty() {
            errors.push(field_phrase("\"%field\" can not be empty.", "sku"));
        }
        if sku.trim() != sku {
            errors.push(field_phrase(
                "\"%field\" can not contain leading or trailing spaces.",
                "sku",
            ));
        }
        let code = item.source_code.clone().unwrap_or_default();
        if code.trim().is_empty() {
            errors.push(field_phrase("\"%field\" can not be empty.", "source_code"));
        }
        if code.chars().any(char::is_whitespace) {
            errors.push(field_phrase(
                "\"%field\" can not contain whitespaces.",
                "source_code",
            ));
        }
        if item.quantity.is_none() {
            errors.push(field_phrase("\"%field\" should be numeric.", "quantity"));
        }
        if item.status.is_none() {
            errors.push(field_phrase("\"%field\" should be numeric.", "status"));
        }
        if !matches!(item.status.unwrap_or(0), 0 | 1) {
            errors.push(field_phrase("\"%field\" should a known status.", "status"));
        }
    }
    errors
}

fn validation_failed(errors: Vec<Phrase>) -> MagentoError {
    let first = errors.first().map(Phrase::render).unwrap_or_default();
    MagentoError::validation(Phrase::new(format!("Validation Failed: {first}")), errors)
}

/// A partial transfer line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialTransferItem {
    /// `sku`
    pub sku: Sku,
    /// `qty`
    #[serde(with = "num::json_number")]
    pub qty: Decimal,
}

impl Inventory {
    /// `SourceItemsSaveInterface::execute`: empty input is "Input data is empty"; every item is
    /// validated and the first error becomes `Validation Failed: <error>` with all errors
    /// listed; an unknown source code fails the whole call ("Could not save Source Item");
    /// otherwise items are upserted in order (a later duplicate wins). Afterwards, like MSI's
    /// plugins: `default` items are copied to the legacy stock item and stock 1's status, the
    /// SKUs are reindexed in every stock linked to their sources, and composite parents follow.
    pub fn save_source_items(&mut self, items: &[SourceItemInput]) -> Result<(), MagentoError> {
        if items.is_empty() {
            return Err(MagentoError::input_data_is_empty());
        }
        let errors = validate_source_items(items);
        if !errors.is_empty() {
            return Err(validation_failed(errors));
        }
        let could_not_save =
            || MagentoError::could_not_save(Phrase::new("Could not save Source Item"));
        let mut parsed = Vec::with_capacity(items.len());
        for item in items {
            let sku = item
                .sku
                .as_deref()
                .and_then(|s| Sku::parse(s).ok())
                .ok_or_else(could_not_save)?;
            let source = item
                .source_code
                .as_deref()
                .and_then(|s| SourceCode::parse(s).ok())
                .filter(|s| self.sources.contains_key(s))
                .ok_or_else(could_not_save)?;
            let quantity = num::round4(item.quantity.unwrap_or_default());
            let status =
                SourceItemStatus::from_int(item.status.unwrap_or(0)).ok_or_else(could_not_save)?;
            parsed.push(SourceItem {
                source_code: source,
                sku,
                quantity,
                status,
            });
        }
        self.write_source_items(&parsed);
        Ok(())
    }

    /// Upserts valid items and runs the after-save plugins.
    pub(crate) fn write_source_items(&mut self, items: &[SourceItem]) {
        let mut changed = Vec::new();
        let mut default_items = Vec::new();
        for item in items {
            let key = (item.source_code.clone(), item.sku.key());
            if let Some(row) = self.source_items.get_mut(&key) {
                row.item.quantity = item.quantity;
                row.item.status = item.status;
            } else {
                let id = self.next_source_item_id;
                self.next_source_item_id += 1;
                self.source_items.insert(
                    key.clone(),
                    SourceItemRow {
                        id,
                        item: item.clone(),
                    },
                );
            }
            changed.push(key);
            if item.source_code.is_default() {
                default_items.push((item.sku.clone(), item.quantity, item.status.in_stock()));
            }
        }
        self.sync_legacy_from_default_items(&default_items);
        self.reindex_after_source_items(&changed);
        let keys: Vec<SkuKey> = changed.iter().map(|(_, k)| k.clone()).collect();
        self.update_composite_parents(&keys);
    }

    /// Re-saves the SKU's first source item unchanged (tests do this to reindex a SKU after
    /// changing its stock configuration).
    pub fn resave_source_items(&mut self, sku: &Sku) -> Result<(), MagentoError> {
        let first = self
            .source_items_for_sku(sku)
            .into_iter()
            .next()
            .ok_or_else(MagentoError::input_data_is_empty)?;
        self.write_source_items(&[first]);
        Ok(())
    }

    /// `SourceItemsDeleteInterface::execute`: unassigns SKUs from sources. `default` items of
    /// source-managed products zero the legacy stock item; the affected stocks are reindexed.
    pub fn delete_source_items(&mut self, items: &[(SourceCode, Sku)]) -> Result<(), MagentoError> {
        if items.is_empty() {
            return Err(MagentoError::input_data_is_empty());
        }
        let mut changed = Vec::new();
        for (source, sku) in items {
            let key = (source.clone(), sku.key());
            if self.source_items.remove(&key).is_some() {
                changed.push(key);
            }
            if source.is_default() {
                let k = sku.key();
                let allowed = self
                    .products
                    .get(&k)
                    .is_some_and(|p| p.product_type.allows_source_items());
                if allowed {
                    if let Some(p) = self.products.get_mut(&k) {
                        p.stock_item.qty = Some(Decimal::ZERO);
                        p.stock_item.is_in_stock = false;
                    }
                    self.legacy_reindex(&k);
                }
            }
        }
        self.reindex_after_source_items(&changed);
        Ok(())
    }

    /// `DecrementSourceItemQty`: `quantity = quantity - qty` per item (status untouched in the
    /// table), then the reindex and legacy synchronisation plugins. `statuses` carries the
    /// status the caller computed (the source deduction service), which only the legacy stock of
    /// `default` items receives.
    pub(crate) fn decrement_source_items_internal(
        &mut self,
        decrements: &[(SourceCode, Sku, Decimal, SourceItemStatus)],
    ) {
        let mut changed = Vec::new();
        let mut default_items = Vec::new();
        for (source, sku, qty, status) in decrements {
            let key = (source.clone(), sku.key());
            if let Some(row) = self.source_items.get_mut(&key) {
                row.item.quantity = num::round4(row.item.quantity - *qty);
                if source.is_default() {
                    default_items.push((row.item.sku.clone(), row.item.quantity, *status));
                }
                changed.push(key);
            }
        }
        self.reindex_after_source_items(&changed);
        // SynchronizeLegacyStockAfterDecrementStockPlugin
        let config = self.config.clone();
        for (sku, qty, status) in default_items {
            let key = sku.key();
            let Some(product) = self.products.get_mut(&key) else {
                continue;
            };
            product.stock_item.qty = Some(qty);
            let mut in_stock = status.in_stock();
            let view = product.stock_item.resolve(&config);
            if view.manage_stock() {
                product.stock_item.is_in_stock = in_stock;
                if !product.stock_item.resolve(&config).verify_stock() {
                    in_stock = false;
                }
            }
            self.legacy_status.insert(
                key,
                super::model::IndexRow {
                    quantity: qty,
                    is_salable: in_stock,
                },
            );
        }
        let keys: Vec<SkuKey> = changed.iter().map(|(_, k)| k.clone()).collect();
        self.update_composite_parents(&keys);
    }

    /// `DecrementSourceItemQty` for callers: validates the items exist, then decrements.
    pub fn decrement_source_items(
        &mut self,
        decrements: &[(SourceCode, Sku, Decimal)],
    ) -> Result<(), MagentoError> {
        if decrements.is_empty() {
            return Err(MagentoError::input_data_is_empty());
        }
        let mut full = Vec::new();
        for (source, sku, qty) in decrements {
            let item = self.source_item(sku, source).ok_or_else(|| {
                MagentoError::could_not_save(Phrase::new("Could not save Source Item"))
            })?;
            full.push((source.clone(), sku.clone(), *qty, item.status));
        }
        self.decrement_source_items_internal(&full);
        Ok(())
    }

    /// `BulkSourceAssignInterface`: creates missing (SKU, source) pairs with quantity 0, out of
    /// stock, for source-managed products; returns how many were **created**.
    pub fn bulk_assign_sources(
        &mut self,
        skus: &[Sku],
        sources: &[SourceCode],
    ) -> Result<usize, MagentoError> {
        let errors: Vec<Phrase> = sources
            .iter()
            .filter(|s| !self.sources.contains_key(*s))
            .map(|s| {
                Phrase::named(
                    "Source %sourceCode does not exist",
                    [("sourceCode", json!(s.as_str()))],
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new("Validation Error"),
                errors,
            ));
        }
        let mut count = 0;
        let mut changed = Vec::new();
        for sku in skus {
            let Some(product) = self.products.get(&sku.key()) else {
                continue;
            };
            if !product.product_type.allows_source_items() {
                continue;
            }
            let sku = product.sku.clone();
            for source in sources {
                let key = (source.clone(), sku.key());
                if self.source_items.contains_key(&key) {
                    continue;
                }
                let id = self.next_source_item_id;
                self.next_source_item_id += 1;
                self.source_items.insert(
                    key.clone(),
                    SourceItemRow {
                        id,
                        item: SourceItem {
                            source_code: source.clone(),
                            sku: sku.clone(),
                            quantity: Decimal::ZERO,
                            status: SourceItemStatus::OutOfStock,
                        },
                    },
                );
                changed.push(key);
                count += 1;
            }
        }
        self.reindex_after_source_items(&changed);
        Ok(count)
    }

    /// `BulkSourceUnassignInterface`: deletes the pairs; returns how many rows were deleted.
    /// Unassigning `default` zeroes the legacy stock items.
    pub fn bulk_unassign_sources(
        &mut self,
        skus: &[Sku],
        sources: &[SourceCode],
    ) -> Result<usize, MagentoError> {
        let mut changed = Vec::new();
        for sku in skus {
            for source in sources {
                let key = (source.clone(), sku.key());
                if self.source_items.remove(&key).is_some() {
                    changed.push(key);
                }
            }
        }
        if sources.iter().any(SourceCode::is_default) {
            for sku in skus {
                if let Some(p) = self.products.get_mut(&sku.key()) {
                    p.stock_item.qty = Some(Decimal::ZERO);
                    p.stock_item.is_in_stock = false;
                }
                self.legacy_reindex(&sku.key());
            }
        }
        let count = changed.len();
        self.reindex_after_source_items(&changed);
        Ok(count)
    }

    /// `BulkInventoryTransferInterface`: moves the whole quantity of each SKU from `origin` to
    /// `destination` (destination quantity = origin + destination, status copied from the
    /// origin item), then empties (quantity 0, out of stock) or unassigns the origin. Reproduces
    /// Magento's quirk: when the origin item is missing but the destination exists, nothing
    /// changes.
    pub fn bulk_inventory_transfer(
        &mut self,
        skus: &[Sku],
        origin: &SourceCode,
        destination: &SourceCode,
        unassign_from_origin: bool,
    ) -> Result<bool, MagentoError> {
        let mut errors = Vec::new();
        if !self.sources.contains_key(origin) {
            errors.push(Phrase::named(
                "Origin source %sourceCode does not exist",
                [("sourceCode", json!(origin.as_str()))],
            ));
        }
        if !self.sources.contains_key(destination) {
            errors.push(Phrase::named(
                "Destination source %sourceCode does not exist",
                [("sourceCode", json!(destination.as_str()))],
            ));
        }
        if origin == destination {
            errors.push(Phrase::new("Cannot transfer a source on itself"));
        }
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new(
                    "Validation Error: Select different sources for origin and destination.",
                ),
                errors,
            ));
        }
        let mut processed = Vec::new();
        let mut changed = Vec::new();
        for sku in skus {
            let Some(product) = self.products.get(&sku.key()) else {
                continue;
            };
            if !product.product_type.allows_source_items() {
                continue;
            }
            let sku = product.sku.clone();
            let org = self.source_item(&sku, origin).cloned();
            let dst = self.source_item(&sku, destination).cloned();
            let total = org.as_ref().map(|i| i.quantity).unwrap_or_default()
                + dst.as_ref().map(|i| i.quantity).unwrap_or_default();
            let status = org
                .as_ref()
                .or(dst.as_ref())
                .map(|i| i.status)
                .unwrap_or(SourceItemStatus::OutOfStock);
            let key = (destination.clone(), sku.key());
            match (&org, &dst) {
                (_, None) => {
                    let id = self.next_source_item_id;
                    self.next_source_item_id += 1;
                    self.source_items.insert(
                        key.clone(),
                        SourceItemRow {
                            id,
                            item: SourceItem {
                                source_code: destination.clone(),
                                sku: sku.clone(),
                                quantity: num::round4(total),
                                status,
                            },
                        },
                    );
                }
                (Some(_), Some(_)) => {
                    if let Some(row) = self.source_items.get_mut(&key) {
                        row.item.quantity = num::round4(total);
                        row.item.status = status;
                    }
                }
                (None, Some(_)) => {}
            }
            if destination.is_default() {
                self.sync_legacy_from_default_items(&[(sku.clone(), total, status.in_stock())]);
            }
            changed.push(key);
            processed.push(sku);
        }
        for sku in &processed {
            let key = (origin.clone(), sku.key());
            if unassign_from_origin {
                self.source_items.remove(&key);
            } else if let Some(row) = self.source_items.get_mut(&key) {
                row.item.quantity = Decimal::ZERO;
                row.item.status = SourceItemStatus::OutOfStock;
            }
            if origin.is_default() {
                if let Some(p) = self.products.get_mut(&sku.key()) {
                    p.stock_item.qty = Some(Decimal::ZERO);
                    p.stock_item.is_in_stock = false;
                }
                self.legacy_reindex(&sku.key());
            }
            changed.push(key);
        }
        self.reindex_after_source_items(&changed);
        Ok(true)
    }

    /// `BulkPartialInventoryTransferInterface`: moves `qty` of each SKU between two existing
    /// source items (the destination becomes in stock). Validation reports every problem:
    /// unknown sources, same source, quantity above the origin's, missing items.
    pub fn bulk_partial_inventory_transfer(
        &mut self,
        origin: &str,
        destination: &str,
        items: &[PartialTransferItem],
    ) -> Result<(), MagentoError> {
        let mut errors = Vec::new();
        let origin_code = SourceCode::parse(origin)
            .ok()
            .filter(|c| self.sources.contains_key(c));
        let destination_code = SourceCode::parse(destination)
            .ok()
            .filter(|c| self.sources.contains_key(c));
        if origin_code.is_none() {
            errors.push(Phrase::named(
                "Origin source %sourceCode does not exist",
                [("sourceCode", json!(origin))],
            ));
        }
        if destination_code.is_none() {
            errors.push(Phrase::named(
                "Destination source %sourceCode does not exist",
                [("sourceCode", json!(destination))],
            ));
        }
        if origin == destination {
            errors.push(Phrase::new("Cannot transfer a source on itself"));
        }
        let missing = |sku: &Sku, source: &str| {
            Phrase::named(
                "%message",
                [(
                    "message",
                    json!(format!("Source item for {sku} and {source} does not exist")),
                )],
            )
        };
        for item in items {
            let org = origin_code
                .as_ref()
                .and_then(|c| self.source_item(&item.sku, c));
            match org {
                None => {
                    errors.push(missing(&item.sku, origin));
                    continue;
                }
                Some(o) if o.quantity < item.qty => errors.push(Phrase::named(
                    "Requested transfer amount for sku %sku is not available",
                    [("sku", json!(item.sku.as_str()))],
                )),
                Some(_) => {}
            }
            let dst = destination_code
                .as_ref()
                .and_then(|c| self.source_item(&item.sku, c));
            if dst.is_none() {
                errors.push(missing(&item.sku, destination));
            }
        }
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new("Transfer validation failed"),
                errors,
            ));
        }
        let (Some(origin_code), Some(destination_code)) = (origin_code, destination_code) else {
            return Ok(());
        };
        let mut changed = Vec::new();
        for item in items {
            let okey = (origin_code.clone(), item.sku.key());
            let dkey = (destination_code.clone(), item.sku.key());
            let mut origin_after = None;
            if let Some(row) = self.source_items.get_mut(&okey) {
                row.item.quantity = num::round4(row.item.quantity - item.qty);
                origin_after = Some((row.item.quantity, row.item.status));
            }
            let mut dest_after = None;
            if let Some(row) = self.source_items.get_mut(&dkey) {
                row.item.quantity = num::round4(row.item.quantity + item.qty);
                row.item.status = SourceItemStatus::InStock;
                dest_after = Some(row.item.quantity);
            }
            if origin_code.is_default() {
                if let Some((q, s)) = origin_after {
                    self.sync_legacy_from_default_items(&[(item.sku.clone(), q, s.in_stock())]);
                }
            } else if destination_code.is_default()
                && let Some(q) = dest_after
            {
                self.sync_legacy_from_default_items(&[(item.sku.clone(), q, true)]);
            }
            changed.push(okey);
            changed.push(dkey);
        }
        self.reindex_after_source_items(&changed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::structure::SourceInput;
    use rust_decimal_macros::dec;

    fn world() -> Inventory {
        let mut inv = Inventory::new();
        for code in ["eu-1", "eu-2"] {
            inv.save_source(&SourceInput {
                source_code: Some(code.to_owned()),
                name: Some(code.to_owned()),
                postcode: Some("p".to_owned()),
                country_id: Some("FR".to_owned()),
                ..SourceInput::default()
            })
            .unwrap();
        }
        inv
    }

    #[test]
    fn save_reports_every_error_and_names_the_first_in_the_message() {
        let mut inv = world();
        let err = inv
            .save_source_items(&[SourceItemInput {
                sku: Some(" ".to_owned()),
                source_code: Some("eu-1".to_owned()),
                quantity: Some(dec!(1.5)),
                status: Some(1),
            }])
            .unwrap_err();
        assert_eq!(
            err.message.raw(),
            "Validation Failed: \"sku\" can not be empty."
        );
        assert_eq!(err.errors.len(), 2);
        assert_eq!(
            err.errors[1].raw(),
            "\"%field\" can not contain leading or trailing spaces."
        );
    }

    #[test]
    fn save_is_an_absolute_upsert_and_later_duplicates_win() {
        let mut inv = world();
        let sku = Sku::parse("A").unwrap();
        let eu1 = SourceCode::parse("eu-1").unwrap();
        inv.save_source_items(&[
            SourceItemInput::new(&sku, &eu1, dec!(3), true),
            SourceItemInput::new(&sku, &eu1, dec!(7), true),
        ])
        .unwrap();
        assert_eq!(
            inv.source_item(&sku, &eu1).map(|i| i.quantity),
            Some(dec!(7))
        );
        inv.save_source_items(&[SourceItemInput::new(&sku, &eu1, dec!(-2), true)])
            .unwrap();
        assert_eq!(
            inv.source_item(&sku, &eu1).map(|i| i.quantity),
            Some(dec!(-2)),
            "negative quantities are accepted"
        );
    }

    #[test]
    fn unknown_source_fails_the_whole_batch() {
        let mut inv = world();
        let sku = Sku::parse("A").unwrap();
        let err = inv
            .save_source_items(&[
                SourceItemInput::new(&sku, &SourceCode::parse("eu-1").unwrap(), dec!(1), true),
                SourceItemInput {
                    sku: Some("A".to_owned()),
                    source_code: Some("nope".to_owned()),
                    quantity: Some(dec!(1)),
                    status: Some(1),
                },
            ])
            .unwrap_err();
        assert_eq!(err.rendered(), "Could not save Source Item");
        assert!(inv.source_items().is_empty());
    }
}
