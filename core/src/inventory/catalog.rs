//! Catalog products and their legacy stock items: creation (with Magento's product-save stock
//! data rules), legacy stock-item saves, `SaveStockItemConfiguration`, SKU renames, and the
//! default-source synchronisation MSI keeps between the legacy row and source `default`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{LegacyStockItem, StockItemFields};
use super::error::{MagentoError, Phrase};
use super::ids::{ProductType, Sku, SkuKey, SourceCode, WebsiteCode};
use super::model::{BundleOption, IndexRow, Inventory, Product, QueueMessage, ShipmentType};
use super::source_items::SourceItemInput;

/// A product to create (`ProductRepository::save` of a new product).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductInput {
    /// `sku`
    pub sku: Sku,
    /// `type_id`
    pub product_type: ProductType,
    /// `entity_id` to use (next free id when absent).
    #[serde(default)]
    pub product_id: Option<u64>,
    /// `stock_data` exactly as the caller set it (`None`: no stock data).
    #[serde(default)]
    pub stock_data: Option<StockItemFields>,
    /// Configurable children.
    #[serde(default)]
    pub children: Vec<Sku>,
    /// Grouped links (child, default qty).
    #[serde(default)]
    pub grouped: Vec<(Sku, Decimal)>,
    /// Bundle options.
    #[serde(default)]
    pub bundle_options: Vec<BundleOption>,
    /// Bundle shipment type.
    #[serde(default)]
    pub shipment_type: ShipmentType,
    /// Websites.
    #[serde(default)]
    pub websites: Vec<WebsiteCode>,
}

impl ProductInput {
    /// A product of `product_type` with no stock data and no relations.
    pub fn new(sku: Sku, product_type: ProductType) -> Self {
        Self {
            sku,
            product_type,
            product_id: None,
            stock_data: None,
            children: Vec::new(),
            grouped: Vec::new(),
            bundle_options: Vec::new(),
            shipment_type: ShipmentType::Together,
            websites: Vec::new(),
        }
    }
}

impl Inventory {
    /// Creates a catalog product and its legacy stock item, the way a product save with
    /// `stock_data` does: unset `use_config_*` flags of explicitly given values turn off
    /// (`SaveInventoryDataObserver`), the legacy repository save marks a managed item out of
    /// stock when `verifyStock()` fails, and MSI copies the legacy quantity into a `default`
    /// source item when the item is in stock or has a quantity
    /// (`UpdateSourceItemAtLegacyStockItemSavePlugin`).
    pub fn create_product(&mut self, input: &ProductInput) -> Result<u64, MagentoError> {
        let key = input.sku.key();
        if self.products.contains_key(&key) {
            return Err(MagentoError::could_not_save(Phrase::named(
                "The product with SKU \"%1\" already exists.",
                [("1", json!(input.sku.as_str()))],
            )));
        }
        let product_id = input.product_id.unwrap_or(self.next_product_id);
        if self.products.values().any(|p| p.product_id == product_id) {
            return Err(MagentoError::could_not_save(Phrase::new(
                "The product entity id is already used.",
            )));
        }
        self.next_product_id = self.next_product_id.max(product_id + 1);
        let mut stock_item = LegacyStockItem::default();
        if let Some(data) = &input.stock_data {
            data.with_product_save_flags().apply_raw(&mut stock_item);
        }
        self.products.insert(
            key,
            Product {
                product_id,
                sku: input.sku.clone(),
                product_type: input.product_type.clone(),
                children: input.children.clone(),
                grouped: input.grouped.clone(),
                bundle_options: input.bundle_options.clone(),
                shipment_type: input.shipment_type,
                websites: input.websites.clone(),
                stock_item,
            },
        );
        self.legacy_repository_save(&input.sku)?;
        Ok(product_id)
    }

    /// Assigns products to websites (`mode` replace or append).
    pub fn assign_products_to_websites(
        &mut self,
        skus: &[Sku],
        websites: &[WebsiteCode],
        replace: bool,
    ) -> Result<(), MagentoError> {
        for sku in skus {
            let product = self
                .products
                .get_mut(&sku.key())
                .ok_or_else(product_not_found)?;
            if replace {
                product.websites = websites.to_vec();
            } else {
                for w in websites {
                    if !product.websites.contains(w) {
                        product.websites.push(w.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// A legacy `StockItemRepository::save` with the given fields written as they are.
    pub fn save_legacy_stock_item(
        &mut self,
        sku: &Sku,
        fields: &StockItemFields,
    ) -> Result<(), MagentoError> {
        let product = self
            .products
            .get_mut(&sku.key())
            .ok_or_else(product_not_found)?;
        fields.apply_raw(&mut product.stock_item);
        self.legacy_repository_save(sku)
    }

    /// `SaveStockItemConfigurationInterface::execute`: the stock id is ignored ("TODO We ignore
    /// $stockId"), the configuration object is written to the legacy row column by column, and
    /// nothing is reindexed.
    pub fn save_stock_item_configuration(
        &mut self,
        sku: &Sku,
        fields: &StockItemFields,
    ) -> Result<(), MagentoError> {
        let config = self.config.clone();
        let product = self
            .products
            .get_mut(&sku.key())
            .ok_or_else(product_not_found)?;
        fields.apply_as_configuration(&mut product.stock_item, &config);
        Ok(())
    }

    /// The legacy repository save and MSI's plugins on it.
    fn legacy_repository_save(&mut self, sku: &Sku) -> Result<(), MagentoError> {
        let config = self.config.clone();
        let key = sku.key();
        let default_item_exists = self
            .source_items
            .contains_key(&(SourceCode::default_source(), key.clone()));
        let Some(product) = self.products.get_mut(&key) else {
            return Err(product_not_found());
        };
        let qty_type = product.product_type.allows_source_items();
        if qty_type {
            let view = product.stock_item.resolve(&config);
            if view.manage_stock() && !view.verify_stock() {
                product.stock_item.is_in_stock = false;
            }
        } else {
            product.stock_item.qty = Some(Decimal::ZERO);
        }
        let item = product.stock_item.clone();
        // `getIsInStock()`: unmanaged items count as in stock.
        let in_stock = item.resolve(&config).is_in_stock();
        let sku = product.sku.clone();
        // The legacy stock indexer runs for the product.
        self.legacy_reindex(&key);
        let align = in_stock || item.qty.is_some_and(|q| !q.is_zero()) || default_item_exists;
        if qty_type && align {
            self.save_source_items(&[SourceItemInput {
                sku: Some(sku.as_str().to_owned()),
                source_code: Some("default".to_owned()),
                quantity: Some(item.qty.unwrap_or(Decimal::ZERO)),
                status: Some(i64::from(in_stock)),
            }])?;
        }
        self.update_default_stock(&[key]);
        Ok(())
    }

    /// Renames a product SKU (a product save with a new SKU): non-default source items are
    /// copied to the new SKU (`CreateSourceItemsPlugin`), the legacy row follows the product
    /// (and, through the legacy save, the `default` source item), and with
    /// `synchronize_with_catalog` the reservation move and the old source items' cleanup are
    /// queued (`inventory.reservations.update`, `inventory.source.items.cleanup`).
    pub fn rename_product_sku(&mut self, from: &Sku, to: &Sku) -> Result<(), MagentoError> {
        let Some(mut product) = self.products.remove(&from.key()) else {
            return Err(product_not_found());
        };
        if self.products.contains_key(&to.key()) {
            self.products.insert(from.key(), product);
            return Err(MagentoError::could_not_save(Phrase::named(
                "The product with SKU \"%1\" already exists.",
                [("1", json!(to.as_str()))],
            )));
        }
        product.sku = to.clone();
        self.products.insert(to.key(), product);
        if let Some(row) = self.legacy_status.remove(&from.key()) {
            self.legacy_status.insert(to.key(), row);
        }
        let copies: Vec<_> = self
            .source_items_for_sku(from)
            .into_iter()
            .filter(|i| !i.source_code.is_default())
            .collect();
        for mut item in copies {
            item.sku = to.clone();
            let key = (item.source_code.clone(), to.key());
            let id = self.next_source_item_id;
            self.next_source_item_id += 1;
            self.source_items
                .entry(key)
                .and_modify(|r| r.item = item.clone())
                .or_insert(super::model::SourceItemRow { id, item });
        }
        if self.config.synchronize_with_catalog() {
            self.queue
                .push(QueueMessage::SourceItemsCleanup { sku: from.clone() });
            self.queue.push(QueueMessage::ReservationsUpdate {
                old: from.clone(),
                new: to.clone(),
            });
        }
        self.legacy_repository_save(to)
    }

    /// The legacy stock item of a SKU, or the made-up one Magento uses for SKUs unknown to the
    /// catalog.
    pub fn legacy_stock_item(&self, sku: &str) -> LegacyStockItem {
        self.product_by_text(sku)
            .map(|p| p.stock_item.clone())
            .unwrap_or_else(LegacyStockItem::for_unknown_sku)
    }

    /// The legacy stock indexer for one product: `cataloginventory_stock_status` from the legacy
    /// row (unmanaged items are in stock).
    pub(crate) fn legacy_reindex(&mut self, key: &SkuKey) {
        let Some(product) = self.products.get(key) else {
            return;
        };
        let view = product.stock_item.resolve(&self.config);
        let row = IndexRow {
            quantity: product.stock_item.qty.unwrap_or(Decimal::ZERO),
            is_salable: !view.manage_stock() || product.stock_item.is_in_stock,
        };
        self.legacy_status.insert(key.clone(), row);
    }

    /// `UpdateDefaultStock`: for source-managed products, the legacy stock status becomes the
    /// legacy quantity and `AreProductsSalable` on stock 1.
    pub(crate) fn update_default_stock(&mut self, keys: &[SkuKey]) {
        for key in keys {
            let Some(product) = self.products.get(key) else {
                continue;
            };
            if !product.product_type.allows_source_items() {
                continue;
            }
            let sku = product.sku.clone();
            let quantity = product.stock_item.qty.unwrap_or(Decimal::ZERO);
            let is_salable = self.is_product_salable(sku.as_str(), super::ids::StockId::DEFAULT);
            self.legacy_status.insert(
                key.clone(),
                IndexRow {
                    quantity,
                    is_salable,
                },
            );
        }
    }

    /// `SetDataToLegacyCatalogInventory` for saved `default` source items of source-managed
    /// products: legacy qty and status follow the source item (out of stock when a managed item
    /// fails `verifyStock()`), then `UpdateDefaultStock`.
    pub(crate) fn sync_legacy_from_default_items(&mut self, items: &[(Sku, Decimal, bool)]) {
        let config = self.config.clone();
        let mut keys = Vec::new();
        for (sku, qty, in_stock) in items {
            let key = sku.key();
            let Some(product) = self.products.get_mut(&key) else {
                continue;
            };
            if !product.product_type.allows_source_items() {
                continue;
            }
            product.stock_item.qty = Some(*qty);
            product.stock_item.is_in_stock = *in_stock;
            let view = product.stock_item.resolve(&config);
            if view.manage_stock() && !view.verify_stock() {
                product.stock_item.is_in_stock = false;
            }
            keys.push(key);
        }
        self.update_default_stock(&keys);
    }

    /// In single-source mode MSI recomputes composite parents' stock status when children
    /// change (`CompositeProductStockStatusProcessor`): a parent is in stock when any child's
    /// legacy item is.
    pub(crate) fn update_composite_parents(&mut self, child_keys: &[SkuKey]) {
        if !self.is_single_source_mode() {
            return;
        }
        let parents: Vec<SkuKey> = self
            .products
            .iter()
            .filter(|(_, p)| p.child_skus().iter().any(|c| child_keys.contains(&c.key())))
            .map(|(k, _)| k.clone())
            .collect();
        for parent in parents {
            let Some(p) = self.products.get(&parent) else {
                continue;
            };
            let any_child_in_stock = p.child_skus().iter().any(|c| {
                self.products
                    .get(&c.key())
                    .is_some_and(|cp| cp.stock_item.resolve(&self.config).is_in_stock())
            });
            if let Some(p) = self.products.get_mut(&parent) {
                p.stock_item.is_in_stock = any_child_in_stock;
            }
            self.legacy_reindex(&parent);
        }
    }
}

fn product_not_found() -> MagentoError {
    MagentoError::no_such_entity(Phrase::new(
        "The product that was requested doesn't exist. Verify the product and try again.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ids::SourceCode;
    use rust_decimal_macros::dec;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    #[test]
    fn product_save_turns_off_use_config_for_given_values_except_manage_stock() {
        let mut inv = Inventory::new();
        let mut input = ProductInput::new(sku("SKU-6"), ProductType::Simple);
        input.stock_data = Some(StockItemFields {
            qty: Some(dec!(0)),
            is_in_stock: Some(true),
            manage_stock: Some(true),
            min_qty: Some(dec!(-3)),
            backorders: Some(1),
            ..StockItemFields::default()
        });
        inv.create_product(&input).unwrap();
        let item = inv.legacy_stock_item("SKU-6");
        assert!(!item.use_config_min_qty);
        assert!(!item.use_config_backorders);
        assert!(item.use_config_manage_stock);
        assert_eq!(item.resolve(inv.config()).min_qty(), dec!(-3));
    }

    #[test]
    fn product_with_stock_gets_a_default_source_item() {
        let mut inv = Inventory::new();
        let mut input = ProductInput::new(sku("simple"), ProductType::Simple);
        input.stock_data = Some(StockItemFields {
            qty: Some(dec!(100)),
            is_in_stock: Some(true),
            ..StockItemFields::default()
        });
        inv.create_product(&input).unwrap();
        let item = inv
            .source_item(&sku("simple"), &SourceCode::default_source())
            .cloned()
            .unwrap();
        assert_eq!(item.quantity, dec!(100));
        assert!(item.status.in_stock());
        // Composite parents never get source items.
        let mut bundle = ProductInput::new(sku("b"), ProductType::Bundle);
        bundle.stock_data = Some(StockItemFields {
            is_in_stock: Some(true),
            ..StockItemFields::default()
        });
        inv.create_product(&bundle).unwrap();
        assert!(inv.source_items_for_sku(&sku("b")).is_empty());
    }
}
