//! The tables of spec §1.1 as Rust values, and [`Inventory`], the state they live in.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::{GlobalConfig, LegacyStockItem};
use super::ids::{ProductType, Sku, SkuKey, SourceCode, StockId, StoreCode, WebsiteCode};
use super::num;
use super::sales::Sales;

/// `inventory_source`: a physical location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// `source_code`
    pub source_code: SourceCode,
    /// `name`
    pub name: String,
    /// `enabled`
    pub enabled: bool,
    /// `description`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `latitude`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "num::json_number::option")]
    pub latitude: Option<Decimal>,
    /// `longitude`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "num::json_number::option")]
    pub longitude: Option<Decimal>,
    /// `country_id`
    pub country_id: String,
    /// `region_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_id: Option<i64>,
    /// `region`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `city`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// `street`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// `postcode`
    pub postcode: String,
    /// `contact_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
    /// `email`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `phone`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// `fax`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fax: Option<String>,
    /// `use_default_carrier_config`
    #[serde(default = "yes")]
    pub use_default_carrier_config: bool,
}

fn yes() -> bool {
    true
}

impl Source {
    /// The source created at install (spec §1.2).
    pub fn default_source() -> Self {
        Self {
            source_code: SourceCode::default_source(),
            name: "Default Source".to_owned(),
            enabled: true,
            description: Some("Default Source".to_owned()),
            latitude: Some(Decimal::ZERO),
            longitude: Some(Decimal::ZERO),
            country_id: "US".to_owned(),
            region_id: None,
            region: None,
            city: None,
            street: None,
            postcode: "00000".to_owned(),
            contact_name: None,
            email: None,
            phone: None,
            fax: None,
            use_default_carrier_config: true,
        }
    }
}

/// `inventory_stock`: a virtual aggregation of sources sold through sales channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// `stock_id`
    pub stock_id: StockId,
    /// `name`
    pub name: String,
}

/// `inventory_source_stock_link`: a source in a stock with a priority (1 = first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSourceLink {
    /// `stock_id`
    pub stock_id: StockId,
    /// `source_code`
    pub source_code: SourceCode,
    /// `priority`
    pub priority: u32,
}

/// Source item status (`0` out of stock, `1` in stock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "i64")]
pub enum SourceItemStatus {
    /// `0`
    OutOfStock,
    /// `1`
    InStock,
}

impl SourceItemStatus {
    /// From Magento's integer.
    pub fn from_int(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::OutOfStock),
            1 => Some(Self::InStock),
            _ => None,
        }
    }

    /// Magento's integer.
    pub fn as_int(self) -> u8 {
        match self {
            Self::OutOfStock => 0,
            Self::InStock => 1,
        }
    }

    /// Whether the item is in stock.
    pub fn in_stock(self) -> bool {
        self == Self::InStock
    }
}

impl From<SourceItemStatus> for u8 {
    fn from(value: SourceItemStatus) -> u8 {
        value.as_int()
    }
}

impl TryFrom<i64> for SourceItemStatus {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Self::from_int(value).ok_or_else(|| format!("unknown source item status {value}"))
    }
}

/// `inventory_source_item`: the absolute quantity of a SKU at a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceItem {
    /// `source_code`
    pub source_code: SourceCode,
    /// `sku`
    pub sku: Sku,
    /// `quantity` (`DECIMAL(12,4)`, signed)
    #[serde(with = "num::json_number")]
    pub quantity: Decimal,
    /// `status`
    pub status: SourceItemStatus,
}

/// A stored source item with its auto-increment id (list order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceItemRow {
    pub(crate) id: u64,
    pub(crate) item: SourceItem,
}

/// `inventory_reservation`: an append-only signed quantity per (stock, SKU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// `reservation_id` (auto-increment, the append order)
    pub reservation_id: u64,
    /// `stock_id`
    pub stock_id: StockId,
    /// `sku`
    pub sku: Sku,
    /// `quantity` (`DECIMAL(10,4)`, signed)
    #[serde(with = "num::json_number")]
    pub quantity: Decimal,
    /// `metadata`: the JSON text of the sales event, or NULL
    pub metadata: Option<String>,
}

/// A row of a stock index: `inventory_stock_<id>` (or, for stock 1, the legacy stock status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRow {
    /// `quantity`: Σ quantities of in-stock items on enabled linked sources (reservations are
    /// not in it)
    #[serde(with = "num::json_number")]
    pub quantity: Decimal,
    /// `is_salable`, decided at index time with reservations and threshold
    pub is_salable: bool,
}

/// A website (sales channel of type `website`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Website {
    /// `website_id`
    pub website_id: u32,
    /// `code`
    pub code: WebsiteCode,
}

/// A store view and its website.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    /// `code`
    pub code: StoreCode,
    /// The website the store belongs to.
    pub website: WebsiteCode,
}

/// A sales channel of a stock (`inventory_stock_sales_channel`); only `website` exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SalesChannel {
    /// `type` (always `website`)
    #[serde(rename = "type")]
    pub channel_type: String,
    /// `code`
    pub code: String,
}

impl SalesChannel {
    /// A website channel.
    pub fn website(code: &WebsiteCode) -> Self {
        Self {
            channel_type: "website".to_owned(),
            code: code.as_str().to_owned(),
        }
    }
}

/// A bundle selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleSelection {
    /// Child SKU.
    pub sku: Sku,
    /// Default quantity per bundle.
    #[serde(with = "num::json_number")]
    pub qty: Decimal,
    /// Whether the customer may change it.
    #[serde(default)]
    pub can_change_quantity: bool,
}

/// A bundle option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleOption {
    /// Whether the option is required.
    #[serde(default = "yes")]
    pub required: bool,
    /// Its selections.
    pub links: Vec<BundleSelection>,
}

/// How a bundle ships (`shipment_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ShipmentType {
    /// `0`: the parent ships, children follow it.
    #[default]
    Together,
    /// `1`: every child ships on its own.
    Separately,
}

/// A catalog product with its legacy stock item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// `entity_id`
    pub product_id: u64,
    /// `sku`
    pub sku: Sku,
    /// `type_id`
    pub product_type: ProductType,
    /// Configurable children.
    #[serde(default)]
    pub children: Vec<Sku>,
    /// Grouped links (child SKU, default qty).
    #[serde(default)]
    pub grouped: Vec<(Sku, Decimal)>,
    /// Bundle options.
    #[serde(default)]
    pub bundle_options: Vec<BundleOption>,
    /// Bundle shipment type.
    #[serde(default)]
    pub shipment_type: ShipmentType,
    /// Websites the product is assigned to.
    #[serde(default)]
    pub websites: Vec<WebsiteCode>,
    /// The legacy `cataloginventory_stock_item` row.
    #[serde(default)]
    pub stock_item: LegacyStockItem,
}

impl Product {
    /// SKUs of the children whose stock decides this composite product.
    pub fn child_skus(&self) -> Vec<Sku> {
        match self.product_type {
            ProductType::Configurable => self.children.clone(),
            ProductType::Grouped => self.grouped.iter().map(|(s, _)| s.clone()).collect(),
            ProductType::Bundle => self
                .bundle_options
                .iter()
                .flat_map(|o| o.links.iter().map(|l| l.sku.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A message waiting in one of MSI's queues (`process_queue` consumes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "topic")]
pub enum QueueMessage {
    /// `inventory.reservations.update`: move reservations from a renamed SKU.
    #[serde(rename = "inventory.reservations.update")]
    ReservationsUpdate {
        /// Old SKU.
        old: Sku,
        /// New SKU.
        new: Sku,
    },
    /// `inventory.reservations.updateSalabilityStatus`: refresh index `is_salable` after new
    /// reservations.
    #[serde(rename = "inventory.reservations.updateSalabilityStatus")]
    UpdateSalabilityStatus {
        /// The stock.
        stock_id: StockId,
        /// The SKUs reserved.
        skus: Vec<Sku>,
    },
    /// `inventory.source.items.cleanup`: delete source items of a renamed SKU.
    #[serde(rename = "inventory.source.items.cleanup")]
    SourceItemsCleanup {
        /// The old SKU.
        sku: Sku,
    },
}

impl QueueMessage {
    /// The topic / consumer name.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::ReservationsUpdate { .. } => "inventory.reservations.update",
            Self::UpdateSalabilityStatus { .. } => "inventory.reservations.updateSalabilityStatus",
            Self::SourceItemsCleanup { .. } => "inventory.source.items.cleanup",
        }
    }
}

/// The whole MSI state of one Adobe Commerce instance: catalog stock data, sources, stocks,
/// links, sales channels, source items, reservations, the stock indexes, queues and the sales
/// documents that drive reservations. Create it with [`Inventory::new`] (the install defaults of
/// spec §1.2) and change it only through its service methods.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub(crate) config: GlobalConfig,
    pub(crate) websites: Vec<Website>,
    pub(crate) stores: Vec<Store>,
    pub(crate) next_website_id: u32,
    pub(crate) sources: BTreeMap<SourceCode, Source>,
    pub(crate) stocks: BTreeMap<StockId, Stock>,
    pub(crate) next_stock_id: u32,
    pub(crate) links: Vec<StockSourceLink>,
    pub(crate) channels: BTreeMap<WebsiteCode, StockId>,
    pub(crate) products: BTreeMap<SkuKey, Product>,
    pub(crate) next_product_id: u64,
    pub(crate) source_items: BTreeMap<(SourceCode, SkuKey), SourceItemRow>,
    pub(crate) next_source_item_id: u64,
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) next_reservation_id: u64,
    pub(crate) index: BTreeMap<StockId, BTreeMap<SkuKey, IndexRow>>,
    pub(crate) legacy_status: BTreeMap<SkuKey, IndexRow>,
    pub(crate) queue: Vec<QueueMessage>,
    pub(crate) sales: Sales,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new()
    }
}

impl Inventory {
    /// A fresh instance with Magento's install defaults: source `default`, stock `1` "Default
    /// Stock" linked to it with priority 1, website `base` (store `default`) selling through
    /// stock 1, and the `cataloginventory` configuration defaults.
    pub fn new() -> Self {
        let mut sources = BTreeMap::new();
        sources.insert(SourceCode::default_source(), Source::default_source());
        let mut stocks = BTreeMap::new();
        stocks.insert(
            StockId::DEFAULT,
            Stock {
                stock_id: StockId::DEFAULT,
                name: "Default Stock".to_owned(),
            },
        );
        let base = WebsiteCode::base();
        let mut channels = BTreeMap::new();
        channels.insert(base.clone(), StockId::DEFAULT);
        let default_store = StoreCode::parse("default").map(|code| Store {
            code,
            website: base.clone(),
        });
        Self {
            config: GlobalConfig::default(),
            websites: vec![Website {
                website_id: 1,
                code: base,
            }],
            stores: default_store.into_iter().collect(),
            next_website_id: 2,
            sources,
            stocks,
            next_stock_id: 2,
            links: vec![StockSourceLink {
                stock_id: StockId::DEFAULT,
                source_code: SourceCode::default_source(),
                priority: 1,
            }],
            channels,
            products: BTreeMap::new(),
            next_product_id: 1,
            source_items: BTreeMap::new(),
            next_source_item_id: 1,
            reservations: Vec::new(),
            next_reservation_id: 1,
            index: BTreeMap::new(),
            legacy_status: BTreeMap::new(),
            queue: Vec::new(),
            sales: Sales::default(),
        }
    }

    /// The global configuration.
    pub fn config(&self) -> &GlobalConfig {
        &self.config
    }

    /// Sets a configuration value. `scope` is `default`, `default_store`, `current_store`
    /// (all the default scope) or `<store>_store` for one store view.
    pub fn set_config(&mut self, scope: &str, path: &str, value: &str) {
        match scope.strip_suffix("_store") {
            Some(store) if store != "default" && store != "current" => {
                self.config.set_for_store(store, path, value);
            }
            _ => self.config.set(path, value),
        }
    }

    /// The catalog product of a SKU.
    pub fn product(&self, sku: &Sku) -> Option<&Product> {
        self.products.get(&sku.key())
    }

    /// The catalog product of a SKU text (case-insensitive).
    pub(crate) fn product_by_text(&self, sku: &str) -> Option<&Product> {
        self.products.get(&SkuKey::of(sku))
    }

    /// Every source item, in insertion order.
    pub fn source_items(&self) -> Vec<SourceItem> {
        let mut rows: Vec<&SourceItemRow> = self.source_items.values().collect();
        rows.sort_by_key(|r| r.id);
        rows.into_iter().map(|r| r.item.clone()).collect()
    }

    /// The source item of a SKU at a source.
    pub fn source_item(&self, sku: &Sku, source: &SourceCode) -> Option<&SourceItem> {
        self.source_items
            .get(&(source.clone(), sku.key()))
            .map(|r| &r.item)
    }

    /// Every source item of a SKU, in insertion order.
    pub fn source_items_for_sku(&self, sku: &Sku) -> Vec<SourceItem> {
        let key = sku.key();
        let mut rows: Vec<&SourceItemRow> = self
            .source_items
            .values()
            .filter(|r| r.item.sku.key() == key)
            .collect();
        rows.sort_by_key(|r| r.id);
        rows.into_iter().map(|r| r.item.clone()).collect()
    }

    /// Every reservation, in `reservation_id` order.
    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// Messages waiting in the queues.
    pub fn queued_messages(&self) -> &[QueueMessage] {
        &self.queue
    }

    /// Every source (ordered by code).
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    /// Every stock.
    pub fn stocks(&self) -> impl Iterator<Item = &Stock> {
        self.stocks.values()
    }

    /// Every stock-source link, in save order.
    pub fn stock_source_links(&self) -> &[StockSourceLink] {
        &self.links
    }

    /// Every website.
    pub fn websites(&self) -> &[Website] {
        &self.websites
    }

    /// Every catalog product.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }
}
