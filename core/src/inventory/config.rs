//! Stock configuration: the global `cataloginventory/*` settings and the per-SKU legacy stock
//! item (`cataloginventory_stock_item`) they fall back to (spec §4, FORMAT §1.2).
//!
//! Stock item configuration is **per SKU**, not per stock: `SaveStockItemConfiguration` ignores
//! its stock argument and writes the legacy row of the default stock. Each setting has a
//! `use_config_*` flag; [`StockItemConfiguration`] resolves them the way the legacy
//! `Stock\Item` getters do, including MSI's `AdaptMinQtyToBackordersPlugin` (a positive
//! out-of-stock threshold counts only without backorders, a negative one only with them).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::num;

/// `cataloginventory/options/can_subtract`
pub const CAN_SUBTRACT: &str = "cataloginventory/options/can_subtract";
/// `cataloginventory/options/can_back_in_stock`
pub const CAN_BACK_IN_STOCK: &str = "cataloginventory/options/can_back_in_stock";
/// `cataloginventory/options/synchronize_with_catalog`
pub const SYNCHRONIZE_WITH_CATALOG: &str = "cataloginventory/options/synchronize_with_catalog";
/// `cataloginventory/options/not_available_message` (2 = "Only X of Y available")
pub const NOT_AVAILABLE_MESSAGE: &str = "cataloginventory/options/not_available_message";
/// `cataloginventory/item_options/manage_stock`
pub const MANAGE_STOCK: &str = "cataloginventory/item_options/manage_stock";
/// `cataloginventory/item_options/backorders`
pub const BACKORDERS: &str = "cataloginventory/item_options/backorders";
/// `cataloginventory/item_options/max_sale_qty`
pub const MAX_SALE_QTY: &str = "cataloginventory/item_options/max_sale_qty";
/// `cataloginventory/item_options/min_sale_qty`
pub const MIN_SALE_QTY: &str = "cataloginventory/item_options/min_sale_qty";
/// `cataloginventory/item_options/min_qty` (the out-of-stock threshold)
pub const MIN_QTY: &str = "cataloginventory/item_options/min_qty";
/// `cataloginventory/item_options/enable_qty_increments`
pub const ENABLE_QTY_INCREMENTS: &str = "cataloginventory/item_options/enable_qty_increments";
/// `cataloginventory/item_options/qty_increments`
pub const QTY_INCREMENTS: &str = "cataloginventory/item_options/qty_increments";
/// `cataloginventory/item_options/auto_return`
pub const AUTO_RETURN: &str = "cataloginventory/item_options/auto_return";

/// Global configuration values, as strings like `core_config_data` stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalConfig {
    values: BTreeMap<String, String>,
    /// Values set for one store view (`<store>_store` scope). Kept, and reported by
    /// [`GlobalConfig::store_value`], but the inventory services read the default scope, as they
    /// do in Magento's integration tests where the current store is the default store.
    #[serde(default)]
    store_values: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        let mut values = BTreeMap::new();
        // magento2 app/code/Magento/CatalogInventory/etc/config.xml defaults.
        for (path, value) in [
            (CAN_SUBTRACT, "1"),
            (CAN_BACK_IN_STOCK, "1"),
            (SYNCHRONIZE_WITH_CATALOG, "0"),
            (NOT_AVAILABLE_MESSAGE, "1"),
            (MANAGE_STOCK, "1"),
            (BACKORDERS, "0"),
            (MAX_SALE_QTY, "10000"),
            (MIN_SALE_QTY, "1"),
            (MIN_QTY, "0"),
            (ENABLE_QTY_INCREMENTS, "0"),
            (QTY_INCREMENTS, "1"),
            (AUTO_RETURN, "0"),
        ] {
            values.insert(path.to_owned(), value.to_owned());
        }
        Self {
            values,
            store_values: BTreeMap::new(),
        }
    }
}

impl GlobalConfig {
    /// Sets a default-scope value.
    pub fn set(&mut self, path: &str, value: &str) {
        self.values.insert(path.to_owned(), value.to_owned());
    }

    /// Sets a value for one store view.
    pub fn set_for_store(&mut self, store: &str, path: &str, value: &str) {
        self.store_values
            .entry(store.to_owned())
            .or_default()
            .insert(path.to_owned(), value.to_owned());
    }

    /// Every default-scope value (path, value).
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The default-scope value of a path.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.values.get(path).map(String::as_str)
    }

    /// The value in effect for a store view (store value, else default).
    pub fn store_value(&self, store: &str, path: &str) -> Option<&str> {
        self.store_values
            .get(store)
            .and_then(|m| m.get(path))
            .map(String::as_str)
            .or_else(|| self.get(path))
    }

    fn decimal(&self, path: &str) -> Decimal {
        self.get(path)
            .map(num::php_string_to_decimal)
            .unwrap_or(Decimal::ZERO)
    }

    fn int(&self, path: &str) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        self.decimal(path).trunc().to_i64().unwrap_or(0)
    }

    /// `getManageStock()` (int).
    pub fn manage_stock(&self) -> i64 {
        self.int(MANAGE_STOCK)
    }

    /// `getBackorders()` (0 no, 1 yes, 2 yes and notify).
    pub fn backorders(&self) -> i64 {
        self.int(BACKORDERS)
    }

    /// `getMinQty()` (float).
    pub fn min_qty(&self) -> Decimal {
        self.decimal(MIN_QTY)
    }

    /// `getMinSaleQty()` (float).
    pub fn min_sale_qty(&self) -> Decimal {
        self.decimal(MIN_SALE_QTY)
    }

    /// `getMaxSaleQty()` (float).
    pub fn max_sale_qty(&self) -> Decimal {
        self.decimal(MAX_SALE_QTY)
    }

    /// `getEnableQtyIncrements()`.
    pub fn enable_qty_increments(&self) -> bool {
        self.int(ENABLE_QTY_INCREMENTS) != 0
    }

    /// `getQtyIncrements()` (float).
    pub fn qty_increments(&self) -> Decimal {
        self.decimal(QTY_INCREMENTS)
    }

    /// `canSubtractQty()`: whether reservations are written at all.
    pub fn can_subtract(&self) -> bool {
        self.int(CAN_SUBTRACT) != 0
    }

    /// `isCanBackInStock()`.
    pub fn can_back_in_stock(&self) -> bool {
        self.int(CAN_BACK_IN_STOCK) != 0
    }

    /// `synchronize_with_catalog`: SKU renames move reservations and clean up source items.
    pub fn synchronize_with_catalog(&self) -> bool {
        self.int(SYNCHRONIZE_WITH_CATALOG) != 0
    }

    /// `not_available_message` = 2 selects "Only X of Y available".
    pub fn only_x_of_y_message(&self) -> bool {
        self.int(NOT_AVAILABLE_MESSAGE) == 2
    }

    /// `auto_return`: credit memos return items to stock by default.
    pub fn auto_return(&self) -> bool {
        self.int(AUTO_RETURN) != 0
    }
}

/// The legacy `cataloginventory_stock_item` row of a product (stock 1, website 0). Column
/// defaults are those of `CatalogInventory/etc/db_schema.xml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacyStockItem {
    /// `qty` (NULL until set).
    #[serde(with = "num::json_number::option")]
    pub qty: Option<Decimal>,
    /// `is_in_stock`
    pub is_in_stock: bool,
    /// `manage_stock`
    pub manage_stock: bool,
    /// `use_config_manage_stock`
    pub use_config_manage_stock: bool,
    /// `min_qty`
    #[serde(with = "num::json_number")]
    pub min_qty: Decimal,
    /// `use_config_min_qty`
    pub use_config_min_qty: bool,
    /// `backorders`
    pub backorders: i64,
    /// `use_config_backorders`
    pub use_config_backorders: bool,
    /// `min_sale_qty`
    #[serde(with = "num::json_number")]
    pub min_sale_qty: Decimal,
    /// `use_config_min_sale_qty`
    pub use_config_min_sale_qty: bool,
    /// `max_sale_qty`
    #[serde(with = "num::json_number")]
    pub max_sale_qty: Decimal,
    /// `use_config_max_sale_qty`
    pub use_config_max_sale_qty: bool,
    /// `is_qty_decimal`
    pub is_qty_decimal: bool,
    /// `qty_increments`
    #[serde(with = "num::json_number")]
    pub qty_increments: Decimal,
    /// `use_config_qty_increments`
    pub use_config_qty_increments: bool,
    /// `enable_qty_increments`
    pub enable_qty_increments: bool,
    /// `use_config_enable_qty_inc`
    pub use_config_enable_qty_inc: bool,
}

impl Default for LegacyStockItem {
    fn default() -> Self {
        Self {
            qty: None,
            is_in_stock: false,
            manage_stock: false,
            use_config_manage_stock: true,
            min_qty: Decimal::ZERO,
            use_config_min_qty: true,
            backorders: 0,
            use_config_backorders: true,
            min_sale_qty: Decimal::ONE,
            use_config_min_sale_qty: true,
            max_sale_qty: Decimal::ZERO,
            use_config_max_sale_qty: true,
            is_qty_decimal: false,
            qty_increments: Decimal::ZERO,
            use_config_qty_increments: true,
            enable_qty_increments: false,
            use_config_enable_qty_inc: true,
        }
    }
}

impl LegacyStockItem {
    /// The item `GetLegacyStockItem` makes up for a SKU unknown to the catalog: a fresh model
    /// with `manage_stock` forced on ("Make possible to Manage Stock for Products removed from
    /// Catalog"); every `use_config_*` is unset (false) on such an object.
    pub fn for_unknown_sku() -> Self {
        Self {
            qty: None,
            is_in_stock: false,
            manage_stock: true,
            use_config_manage_stock: false,
            min_qty: Decimal::ZERO,
            use_config_min_qty: false,
            backorders: 0,
            use_config_backorders: false,
            min_sale_qty: Decimal::ZERO,
            use_config_min_sale_qty: false,
            max_sale_qty: Decimal::ZERO,
            use_config_max_sale_qty: false,
            is_qty_decimal: false,
            qty_increments: Decimal::ZERO,
            use_config_qty_increments: false,
            enable_qty_increments: false,
            use_config_enable_qty_inc: false,
        }
    }

    /// The configuration view of this row under `config`.
    pub fn resolve<'a>(&'a self, config: &'a GlobalConfig) -> StockItemConfiguration<'a> {
        StockItemConfiguration { item: self, config }
    }
}

/// `StockItemConfigurationInterface`: the legacy item's getters with their `use_config_*`
/// fallbacks and MSI's plugins applied.
#[derive(Debug, Clone, Copy)]
pub struct StockItemConfiguration<'a> {
    item: &'a LegacyStockItem,
    config: &'a GlobalConfig,
}

impl StockItemConfiguration<'_> {
    /// The raw legacy row.
    pub fn item(&self) -> &LegacyStockItem {
        self.item
    }

    /// `getManageStock()`.
    pub fn manage_stock(&self) -> bool {
        if self.item.use_config_manage_stock {
            self.config.manage_stock() != 0
        } else {
            self.item.manage_stock
        }
    }

    /// `getBackorders()`.
    pub fn backorders(&self) -> i64 {
        if self.item.use_config_backorders {
            self.config.backorders()
        } else {
            self.item.backorders
        }
    }

    /// The threshold before MSI's plugin (`use_config_min_qty` resolved).
    pub fn raw_min_qty(&self) -> Decimal {
        if self.item.use_config_min_qty {
            self.config.min_qty()
        } else {
            self.item.min_qty
        }
    }

    /// `getMinQty()` after `AdaptMinQtyToBackordersPlugin`: with backorders a positive
    /// threshold counts as 0 and a negative one is kept; without backorders a negative
    /// threshold counts as 0.
    pub fn min_qty(&self) -> Decimal {
        let raw = self.raw_min_qty();
        if self.backorders() != 0 {
            if raw >= Decimal::ZERO {
                Decimal::ZERO
            } else {
                raw
            }
        } else if raw > Decimal::ZERO {
            raw
        } else {
            Decimal::ZERO
        }
    }

    /// `getMinSaleQty()`.
    pub fn min_sale_qty(&self) -> Decimal {
        if self.item.use_config_min_sale_qty {
            self.config.min_sale_qty()
        } else {
            self.item.min_sale_qty
        }
    }

    /// `getMaxSaleQty()`.
    pub fn max_sale_qty(&self) -> Decimal {
        if self.item.use_config_max_sale_qty {
            self.config.max_sale_qty()
        } else {
            self.item.max_sale_qty
        }
    }

    /// `getEnableQtyIncrements()`.
    pub fn enable_qty_increments(&self) -> bool {
        if self.item.use_config_enable_qty_inc {
            self.config.enable_qty_increments()
        } else {
            self.item.enable_qty_increments
        }
    }

    /// `getQtyIncrements()` as `StockItemConfiguration` returns it: 0 when disabled or not
    /// positive, truncated to an integer unless the item allows decimal quantities.
    pub fn qty_increments(&self) -> Decimal {
        if !self.enable_qty_increments() {
            return Decimal::ZERO;
        }
        let mut v = if self.item.use_config_qty_increments {
            self.config.qty_increments()
        } else {
            self.item.qty_increments
        };
        if !self.item.is_qty_decimal {
            v = v.trunc();
        }
        if v <= Decimal::ZERO { Decimal::ZERO } else { v }
    }

    /// `isQtyDecimal()`.
    pub fn is_qty_decimal(&self) -> bool {
        self.item.is_qty_decimal
    }

    /// `getIsInStock()`: always true for unmanaged items.
    pub fn is_in_stock(&self) -> bool {
        if !self.manage_stock() {
            return true;
        }
        self.item.is_in_stock
    }

    /// `StockStateProvider::verifyStock()` with `AdaptVerifyStockToNegativeMinQtyPlugin`.
    pub fn verify_stock(&self) -> bool {
        let qty = match self.item.qty {
            None if self.manage_stock() => return false,
            None => Decimal::ZERO,
            Some(q) => q,
        };
        if self.backorders() == 0 && qty <= self.min_qty() {
            return false;
        }
        if self.backorders() != 0 && self.min_qty() < Decimal::ZERO && qty < self.min_qty() {
            return false;
        }
        true
    }
}

/// The fields a stock-item configuration update may set (FORMAT §2 `update_stock_item_config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockItemFields {
    /// `manage_stock`
    pub manage_stock: Option<bool>,
    /// `use_config_manage_stock`
    pub use_config_manage_stock: Option<bool>,
    /// `backorders`
    pub backorders: Option<i64>,
    /// `use_config_backorders`
    pub use_config_backorders: Option<bool>,
    /// `min_qty`
    #[serde(with = "num::json_number::option")]
    pub min_qty: Option<Decimal>,
    /// `use_config_min_qty`
    pub use_config_min_qty: Option<bool>,
    /// `min_sale_qty`
    #[serde(with = "num::json_number::option")]
    pub min_sale_qty: Option<Decimal>,
    /// `use_config_min_sale_qty`
    pub use_config_min_sale_qty: Option<bool>,
    /// `max_sale_qty`
    #[serde(with = "num::json_number::option")]
    pub max_sale_qty: Option<Decimal>,
    /// `use_config_max_sale_qty`
    pub use_config_max_sale_qty: Option<bool>,
    /// `enable_qty_increments`
    pub enable_qty_increments: Option<bool>,
    /// `use_config_enable_qty_inc`
    pub use_config_enable_qty_inc: Option<bool>,
    /// `qty_increments`
    #[serde(with = "num::json_number::option")]
    pub qty_increments: Option<Decimal>,
    /// `use_config_qty_increments`
    pub use_config_qty_increments: Option<bool>,
    /// `is_qty_decimal`
    pub is_qty_decimal: Option<bool>,
    /// `qty` (legacy saves and product creation only)
    #[serde(with = "num::json_number::option")]
    pub qty: Option<Decimal>,
    /// `is_in_stock` (legacy saves and product creation only)
    pub is_in_stock: Option<bool>,
}

impl StockItemFields {
    /// Every configuration column of a legacy row (not `qty` / `is_in_stock`).
    pub fn from_item(item: &LegacyStockItem) -> Self {
        Self {
            manage_stock: Some(item.manage_stock),
            use_config_manage_stock: Some(item.use_config_manage_stock),
            backorders: Some(item.backorders),
            use_config_backorders: Some(item.use_config_backorders),
            min_qty: Some(item.min_qty),
            use_config_min_qty: Some(item.use_config_min_qty),
            min_sale_qty: Some(item.min_sale_qty),
            use_config_min_sale_qty: Some(item.use_config_min_sale_qty),
            max_sale_qty: Some(item.max_sale_qty),
            use_config_max_sale_qty: Some(item.use_config_max_sale_qty),
            enable_qty_increments: Some(item.enable_qty_increments),
            use_config_enable_qty_inc: Some(item.use_config_enable_qty_inc),
            qty_increments: Some(item.qty_increments),
            use_config_qty_increments: Some(item.use_config_qty_increments),
            is_qty_decimal: Some(item.is_qty_decimal),
            qty: None,
            is_in_stock: None,
        }
    }

    /// Writes the given fields onto a legacy row as they are (a legacy repository save).
    pub fn apply_raw(&self, item: &mut LegacyStockItem) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { item.$f = v; } )* };
        }
        set!(
            manage_stock,
            use_config_manage_stock,
            backorders,
            use_config_backorders,
            min_qty,
            use_config_min_qty,
            min_sale_qty,
            use_config_min_sale_qty,
            max_sale_qty,
            use_config_max_sale_qty,
            enable_qty_increments,
            use_config_enable_qty_inc,
            qty_increments,
            use_config_qty_increments,
            is_qty_decimal,
            is_in_stock
        );
        if let Some(q) = self.qty {
            item.qty = Some(num::round4(q));
        }
    }

    /// Product creation (`SaveInventoryDataObserver::getStockData`): a value given for
    /// `min_qty`, `min_sale_qty`, `max_sale_qty`, `backorders`, `enable_qty_increments` or
    /// `qty_increments` without its `use_config_*` flag turns that flag off.
    pub fn with_product_save_flags(&self) -> Self {
        let mut f = self.clone();
        if f.min_qty.is_some() && f.use_config_min_qty.is_none() {
            f.use_config_min_qty = Some(false);
        }
        if f.min_sale_qty.is_some() && f.use_config_min_sale_qty.is_none() {
            f.use_config_min_sale_qty = Some(false);
        }
        if f.max_sale_qty.is_some() && f.use_config_max_sale_qty.is_none() {
            f.use_config_max_sale_qty = Some(false);
        }
        if f.backorders.is_some() && f.use_config_backorders.is_none() {
            f.use_config_backorders = Some(false);
        }
        if f.enable_qty_increments.is_some() && f.use_config_enable_qty_inc.is_none() {
            f.use_config_enable_qty_inc = Some(false);
        }
        if f.qty_increments.is_some() && f.use_config_qty_increments.is_none() {
            f.use_config_qty_increments = Some(false);
        }
        f
    }

    /// `SaveStockItemConfiguration`: load the configuration object, set the given fields, and
    /// write **every** column from the object's getters (so `use_config` values are
    /// materialised and the threshold is written after `AdaptMinQtyToBackordersPlugin`).
    pub fn apply_as_configuration(&self, item: &mut LegacyStockItem, config: &GlobalConfig) {
        let mut object = item.clone();
        let mut raw = self.clone();
        raw.qty = None;
        raw.is_in_stock = None;
        raw.apply_raw(&mut object);
        let view = object.resolve(config);
        let written = LegacyStockItem {
            qty: item.qty,
            is_in_stock: view.is_in_stock(),
            manage_stock: view.manage_stock(),
            use_config_manage_stock: object.use_config_manage_stock,
            min_qty: view.min_qty(),
            use_config_min_qty: object.use_config_min_qty,
            backorders: view.backorders(),
            use_config_backorders: object.use_config_backorders,
            min_sale_qty: view.min_sale_qty(),
            use_config_min_sale_qty: object.use_config_min_sale_qty,
            max_sale_qty: view.max_sale_qty(),
            use_config_max_sale_qty: object.use_config_max_sale_qty,
            is_qty_decimal: object.is_qty_decimal,
            qty_increments: view.qty_increments(),
            use_config_qty_increments: object.use_config_qty_increments,
            enable_qty_increments: view.enable_qty_increments(),
            use_config_enable_qty_inc: object.use_config_enable_qty_inc,
        };
        *item = written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn negative_threshold_counts_only_with_backorders() {
        let config = GlobalConfig::default();
        let mut item = LegacyStockItem {
            use_config_min_qty: false,
            min_qty: dec!(-4.5),
            ..LegacyStockItem::default()
        };
        assert_eq!(item.resolve(&config).min_qty(), dec!(0));
        item.use_config_backorders = false;
        item.backorders = 1;
        assert_eq!(item.resolve(&config).min_qty(), dec!(-4.5));
        item.min_qty = dec!(10);
        assert_eq!(
            item.resolve(&config).min_qty(),
            dec!(0),
            "positive = 0 with backorders"
        );
        item.backorders = 0;
        assert_eq!(item.resolve(&config).min_qty(), dec!(10));
    }

    #[test]
    fn use_config_flags_fall_back_to_global_values() {
        let mut config = GlobalConfig::default();
        config.set(MIN_QTY, "5");
        config.set(MANAGE_STOCK, "0");
        let item = LegacyStockItem::default();
        let view = item.resolve(&config);
        assert_eq!(view.min_qty(), dec!(5));
        assert!(!view.manage_stock());
        assert!(view.is_in_stock(), "unmanaged items are always in stock");
        assert_eq!(view.max_sale_qty(), dec!(10000));
    }

    #[test]
    fn qty_increments_are_integers_for_non_decimal_items() {
        let config = GlobalConfig::default();
        let item = LegacyStockItem {
            use_config_enable_qty_inc: false,
            enable_qty_increments: true,
            use_config_qty_increments: false,
            qty_increments: dec!(2.5),
            ..LegacyStockItem::default()
        };
        assert_eq!(item.resolve(&config).qty_increments(), dec!(2));
    }

    #[test]
    fn configuration_save_materialises_effective_values() {
        let config = GlobalConfig::default();
        let mut item = LegacyStockItem::default();
        StockItemFields {
            use_config_min_qty: Some(false),
            min_qty: Some(dec!(-4.5)),
            ..StockItemFields::default()
        }
        .apply_as_configuration(&mut item, &config);
        assert_eq!(
            item.min_qty,
            dec!(0),
            "written through the backorders plugin"
        );
        assert_eq!(item.max_sale_qty, dec!(10000));
    }
}
