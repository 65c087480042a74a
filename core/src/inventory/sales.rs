//! Orders and their documents as far as MSI sees them (spec §3.3–§3.4, §5): placement with the
//! salability check and `order_placed` reservations, cancellation, invoices (virtual items are
//! deducted from sources by priority), shipments (deduction from one source, which may never go
//! below zero), credit memos with and without return to stock, and carts.
//!
//! Orders keep what the inventory flows read: items with their type, parent, `is_virtual`,
//! `is_qty_decimal` and the `qty_*` counters; totals and prices are out of scope here (see
//! [`crate::sales`]).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{MagentoError, Phrase};
use super::ids::{OrderIncrementId, Sku, SourceCode, StockId, StoreCode, Timestamp, WebsiteCode};
use super::model::{Inventory, ShipmentType, SourceItemStatus};
use super::num;
use super::reservations::SalesEvent;
use super::ssa::{InventoryRequest, ItemRequest};

/// An order's `entity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderId(pub u64);

/// A shipment's `entity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShipmentId(pub u64);

/// An invoice's `entity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvoiceId(pub u64);

/// A credit memo's `entity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CreditmemoId(pub u64);

/// `sales_order.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// `new`
    New,
    /// `pending_payment`
    PendingPayment,
    /// `processing`
    Processing,
    /// `complete`
    Complete,
    /// `closed`
    Closed,
    /// `canceled`
    Canceled,
    /// `holded`
    Holded,
    /// `payment_review`
    PaymentReview,
}

impl OrderState {
    /// Parses a state code.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "new" => Self::New,
            "pending_payment" => Self::PendingPayment,
            "processing" => Self::Processing,
            "complete" => Self::Complete,
            "closed" => Self::Closed,
            "canceled" => Self::Canceled,
            "holded" => Self::Holded,
            "payment_review" => Self::PaymentReview,
            _ => return None,
        })
    }

    /// The state code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::PendingPayment => "pending_payment",
            Self::Processing => "processing",
            Self::Complete => "complete",
            Self::Closed => "closed",
            Self::Canceled => "canceled",
            Self::Holded => "holded",
            Self::PaymentReview => "payment_review",
        }
    }

    /// The state's default status (spec §6.7).
    pub fn default_status(self) -> &'static str {
        match self {
            Self::New => "pending",
            other => other.as_str(),
        }
    }

    /// `GetCompleteOrderStateList`: complete, closed, canceled.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::Closed | Self::Canceled)
    }
}

/// A `sales_order_item` row, as far as inventory reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// `item_id`
    pub item_id: u64,
    /// `parent_item_id`
    pub parent_item_id: Option<u64>,
    /// `product_id`
    pub product_id: Option<u64>,
    /// `product_type` (children of grouped products are stored as `grouped`)
    pub product_type: String,
    /// `sku` (a configurable parent carries its child's SKU)
    pub sku: String,
    /// `is_virtual`
    pub is_virtual: bool,
    /// `is_qty_decimal`
    pub is_qty_decimal: bool,
    /// `qty_ordered`
    #[serde(with = "num::json_number")]
    pub qty_ordered: Decimal,
    /// `qty_invoiced`
    #[serde(with = "num::json_number")]
    pub qty_invoiced: Decimal,
    /// `qty_shipped`
    #[serde(with = "num::json_number")]
    pub qty_shipped: Decimal,
    /// `qty_refunded`
    #[serde(with = "num::json_number")]
    pub qty_refunded: Decimal,
    /// `qty_canceled`
    #[serde(with = "num::json_number")]
    pub qty_canceled: Decimal,
    /// `qty_backordered` (NULL when nothing was backordered)
    #[serde(with = "num::json_number::option")]
    pub qty_backordered: Option<Decimal>,
    /// Bundle children: the selection quantity per bundle (`bundle_selection_attributes.qty`).
    #[serde(with = "num::json_number::option", default)]
    pub bundle_selection_qty: Option<Decimal>,
    /// Bundle parents: `shipment_type` = separately.
    #[serde(default)]
    pub ship_separately: bool,
    /// Bundle parents with dynamic price: children carry the price (`isChildrenCalculated`).
    #[serde(default)]
    pub children_calculated: bool,
}

impl OrderItem {
    fn qty_to_invoice(&self) -> Decimal {
        (self.qty_ordered - self.qty_invoiced - self.qty_canceled).max(Decimal::ZERO)
    }

    fn qty_to_ship(&self) -> Decimal {
        (self.qty_ordered - self.qty_shipped - self.qty_refunded - self.qty_canceled)
            .max(Decimal::ZERO)
    }

    fn qty_to_refund(&self) -> Decimal {
        (self.qty_invoiced - self.qty_refunded).max(Decimal::ZERO)
    }

    fn cast_qty(&self, qty: Decimal) -> Decimal {
        let q = if self.is_qty_decimal {
            qty
        } else {
            qty.trunc()
        };
        q.max(Decimal::ZERO)
    }
}

/// A `sales_order` row with its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// `entity_id`
    pub entity_id: OrderId,
    /// `increment_id`
    pub increment_id: OrderIncrementId,
    /// `state`
    pub state: OrderState,
    /// `status`
    pub status: String,
    /// The status before the last document or cancel changed it (for "did the status
    /// change?" checks).
    pub previous_status: String,
    /// The website of the order's store.
    pub website: WebsiteCode,
    /// The store view.
    pub store: Option<StoreCode>,
    /// Items, parents before their children.
    pub items: Vec<OrderItem>,
    /// `created_at`
    pub created_at: Timestamp,
    /// `updated_at`
    pub updated_at: Timestamp,
}

impl Order {
    /// The item with an id.
    pub fn item(&self, item_id: u64) -> Option<&OrderItem> {
        self.items.iter().find(|i| i.item_id == item_id)
    }

    fn parent_of(&self, item: &OrderItem) -> Option<&OrderItem> {
        item.parent_item_id.and_then(|p| self.item(p))
    }

    fn has_children(&self, item: &OrderItem) -> bool {
        self.items
            .iter()
            .any(|c| c.parent_item_id == Some(item.item_id))
    }

    fn children(&self, item: &OrderItem) -> Vec<&OrderItem> {
        self.items
            .iter()
            .filter(|c| c.parent_item_id == Some(item.item_id))
            .collect()
    }

    /// `Order\Item::isDummy($shipment)`.
    fn is_dummy(&self, item: &OrderItem, shipment: bool) -> bool {
        let has_children = self.has_children(item);
        let parent = self.parent_of(item);
        if shipment {
            let separately = match parent {
                Some(p) => p.ship_separately,
                None => item.ship_separately,
            };
            if has_children {
                return separately;
            }
            if parent.is_some() {
                return !separately;
            }
        } else {
            let calculated = match parent {
                Some(p) => p.children_calculated,
                None => item.children_calculated,
            };
            if has_children {
                return calculated;
            }
            if parent.is_some() {
                return !calculated;
            }
        }
        false
    }
}

/// A shipment (`sales_shipment` + `inventory_shipment_source`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// `entity_id`
    pub entity_id: ShipmentId,
    /// `order_id`
    pub order_id: OrderId,
    /// `extension_attributes.source_code`
    pub source_code: SourceCode,
    /// (order item id, qty) lines.
    pub items: Vec<(u64, Decimal)>,
    /// `total_qty`
    #[serde(with = "num::json_number")]
    pub total_qty: Decimal,
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// `entity_id`
    pub entity_id: InvoiceId,
    /// `order_id`
    pub order_id: OrderId,
    /// (order item id, qty) lines.
    pub items: Vec<(u64, Decimal)>,
    /// Whether it was saved (an unsaved invoice only changed the order in memory).
    pub persisted: bool,
}

/// A credit memo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creditmemo {
    /// `entity_id`
    pub entity_id: CreditmemoId,
    /// `order_id`
    pub order_id: OrderId,
    /// (order item id, qty, back_to_stock) lines.
    pub items: Vec<(u64, Decimal, bool)>,
}

/// A quote (cart) as far as stock checks need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    /// `reserved_order_id`: becomes the order increment id.
    pub reserved_order_id: Option<OrderIncrementId>,
    /// The website the cart sells on.
    pub website: Option<WebsiteCode>,
    /// The store view.
    pub store: Option<StoreCode>,
    /// Lines (SKU, accumulated qty).
    pub items: Vec<(Sku, Decimal)>,
}

/// Sales documents of the instance.
#[derive(Debug, Clone, Default)]
pub struct Sales {
    pub(crate) orders: Vec<Order>,
    pub(crate) shipments: Vec<Shipment>,
    pub(crate) invoices: Vec<Invoice>,
    pub(crate) creditmemos: Vec<Creditmemo>,
    pub(crate) carts: BTreeMap<String, Cart>,
    pub(crate) next_item_id: u64,
    pub(crate) next_increment: u64,
}

/// One line of an order to place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderLine {
    /// A simple, virtual or downloadable product.
    Product {
        /// SKU.
        sku: Sku,
        /// Quantity.
        #[serde(with = "num::json_number")]
        qty: Decimal,
    },
    /// A configurable product with the chosen child.
    Configurable {
        /// Parent SKU.
        parent: Sku,
        /// Child SKU.
        child: Sku,
        /// Quantity.
        #[serde(with = "num::json_number")]
        qty: Decimal,
    },
    /// A bundle with its selections (quantity per bundle).
    Bundle {
        /// Bundle SKU.
        sku: Sku,
        /// Number of bundles.
        #[serde(with = "num::json_number")]
        qty: Decimal,
        /// (child SKU, quantity per bundle).
        selections: Vec<(Sku, Decimal)>,
    },
    /// A grouped product's children (stored as `grouped` items).
    Grouped {
        /// The grouped SKU.
        sku: Sku,
        /// (child SKU, quantity).
        children: Vec<(Sku, Decimal)>,
    },
}

/// A checkout placement (`CartManagement::placeOrder` → `OrderManagement::place`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrderRequest {
    /// The increment id (the quote's `reserved_order_id`); generated when absent.
    pub increment_id: Option<OrderIncrementId>,
    /// The website (its stock is reserved against).
    pub website: WebsiteCode,
    /// The store view.
    pub store: Option<StoreCode>,
    /// Lines.
    pub lines: Vec<OrderLine>,
}

/// How a seeded order reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `OrderManagementInterface::place` (salability check + `order_placed` reservations).
    OrderManagement,
    /// `OrderRepository::save` only: no reservation.
    RepositorySave,
}

/// An item of a seeded order, with the `product_type` the fixture wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedItem {
    /// SKU (for configurables, the parent's).
    pub sku: Sku,
    /// Quantity.
    #[serde(with = "num::json_number")]
    pub qty: Decimal,
    /// `product_type` as stored.
    pub product_type: String,
    /// Configurable child.
    pub child_sku: Option<Sku>,
}

/// An order written directly (fixtures, or an order created outside checkout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedOrder {
    /// `increment_id`
    pub increment_id: OrderIncrementId,
    /// `state`
    pub state: OrderState,
    /// Website.
    pub website: WebsiteCode,
    /// Items.
    pub items: Vec<SeedItem>,
    /// How it is saved.
    pub placement: Placement,
}

/// Which order item a document line targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemRef {
    /// The first item whose SKU (or whose product's SKU) matches.
    Sku(String),
    /// A child item under a parent (by SKUs).
    Child {
        /// The child SKU.
        sku: String,
        /// The parent's SKU.
        parent_sku: String,
    },
    /// An order item id.
    ItemId(u64),
}

/// A document line: an item and an optional quantity (default: everything left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentLine {
    /// The item.
    pub item: ItemRef,
    /// The quantity.
    #[serde(with = "num::json_number::option", default)]
    pub qty: Option<Decimal>,
}

/// Which credit-memo items go back to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReturnToStock {
    /// None (`back_to_stock` false; the REST default).
    #[default]
    None,
    /// These order items (REST `return_to_stock_items`).
    Items(Vec<ItemRef>),
    /// Every item (`auto_return` configuration).
    All,
}

fn doc_error(kind: &str, messages: &[&str]) -> MagentoError {
    MagentoError::localized(Phrase::new(format!(
        "{kind} Document Validation Error(s):\n{}",
        messages.join("\n")
    )))
}

fn sku_text_key(text: &str) -> String {
    text.to_lowercase()
}

impl Inventory {
    // ----- reading ---------------------------------------------------------------------------

    /// An order.
    pub fn order(&self, id: OrderId) -> Result<&Order, MagentoError> {
        self.sales
            .orders
            .iter()
            .find(|o| o.entity_id == id)
            .ok_or_else(entity_not_found)
    }

    /// The order with an increment id.
    pub fn order_by_increment_id(&self, increment_id: &str) -> Option<&Order> {
        self.sales
            .orders
            .iter()
            .find(|o| o.increment_id.as_str() == increment_id)
    }

    /// Every order, by entity id.
    pub fn orders(&self) -> &[Order] {
        &self.sales.orders
    }

    /// A shipment.
    pub fn shipment(&self, id: ShipmentId) -> Result<&Shipment, MagentoError> {
        self.sales
            .shipments
            .iter()
            .find(|s| s.entity_id == id)
            .ok_or_else(entity_not_found)
    }

    /// Shipments of an order.
    pub fn shipments_of(&self, order: OrderId) -> Vec<&Shipment> {
        self.sales
            .shipments
            .iter()
            .filter(|s| s.order_id == order)
            .collect()
    }

    /// A cart.
    pub fn cart(&self, name: &str) -> Option<&Cart> {
        self.sales.carts.get(name)
    }

    fn order_mut(&mut self, id: OrderId) -> Result<&mut Order, MagentoError> {
        self.sales
            .orders
            .iter_mut()
            .find(|o| o.entity_id == id)
            .ok_or_else(entity_not_found)
    }

    fn next_item_id(&mut self) -> u64 {
        self.sales.next_item_id += 1;
        self.sales.next_item_id
    }

    // ----- carts -------------------------------------------------------------------------------

    /// Creates an empty cart.
    pub fn create_cart(
        &mut self,
        name: &str,
        reserved_order_id: Option<OrderIncrementId>,
        website: Option<WebsiteCode>,
        store: Option<StoreCode>,
    ) {
        self.sales.carts.insert(
            name.to_owned(),
            Cart {
                reserved_order_id,
                website,
                store,
                items: Vec::new(),
            },
        );
    }

    /// `Quote::addProduct`: the line's accumulated quantity goes through the quote item check
    /// ([`Inventory::check_quote_item_qty`]); an error is a `LocalizedException` and the
    /// quantity is not added. Returns the line's new quantity.
    pub fn add_to_cart(
        &mut self,
        cart: &str,
        website: &WebsiteCode,
        sku: &Sku,
        qty: Decimal,
    ) -> Result<Decimal, MagentoError> {
        if self.product(sku).is_none() {
            return Err(MagentoError::no_such_entity(Phrase::new(
                "The product that was requested doesn't exist. Verify the product and try again.",
            )));
        }
        let current = self
            .sales
            .carts
            .get(cart)
            .and_then(|c| c.items.iter().find(|(s, _)| s.key() == sku.key()))
            .map(|(_, q)| *q)
            .unwrap_or_default();
        let total = current + qty;
        let check = self.check_quote_item_qty(sku.as_str(), website, total, qty)?;
        if check.has_error {
            return Err(MagentoError::localized(Phrase::new(
                check.message.unwrap_or_default(),
            )));
        }
        let entry = self
            .sales
            .carts
            .entry(cart.to_owned())
            .or_insert_with(|| Cart {
                reserved_order_id: None,
                website: Some(website.clone()),
                store: None,
                items: Vec::new(),
            });
        if let Some(line) = entry.items.iter_mut().find(|(s, _)| s.key() == sku.key()) {
            line.1 = total;
        } else {
            entry.items.push((sku.clone(), total));
        }
        Ok(total)
    }

    // ----- placing -------------------------------------------------------------------------------

    fn generate_increment_id(&mut self) -> OrderIncrementId {
        loop {
            self.sales.next_increment += 1;
            let text = format!("{:09}", self.sales.next_increment);
            if self.order_by_increment_id(&text).is_none()
                && let Ok(id) = OrderIncrementId::parse(&text)
            {
                return id;
            }
        }
    }

    fn product_item(
        &mut self,
        sku: &Sku,
        qty: Decimal,
        product_type: Option<&str>,
        parent: Option<u64>,
    ) -> Result<OrderItem, MagentoError> {
        let product = self.product(sku).cloned();
        let item_id = self.next_item_id();
        let (product_id, type_text, is_virtual, is_qty_decimal, sku_text) = match product {
            Some(p) => (
                Some(p.product_id),
                product_type
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.product_type.as_str().to_owned()),
                p.product_type.is_virtual(),
                p.stock_item.is_qty_decimal,
                p.sku.as_str().to_owned(),
            ),
            None => (
                None,
                product_type.unwrap_or("simple").to_owned(),
                false,
                false,
                sku.as_str().to_owned(),
            ),
        };
        Ok(OrderItem {
            item_id,
            parent_item_id: parent,
            product_id,
            product_type: type_text,
            sku: sku_text,
            is_virtual,
            is_qty_decimal,
            qty_ordered: num::round4(qty),
            qty_invoiced: Decimal::ZERO,
            qty_shipped: Decimal::ZERO,
            qty_refunded: Decimal::ZERO,
            qty_canceled: Decimal::ZERO,
            qty_backordered: None,
            bundle_selection_qty: None,
            ship_separately: false,
            children_calculated: false,
        })
    }

    fn build_items(&mut self, lines: &[OrderLine]) -> Result<Vec<OrderItem>, MagentoError> {
        let mut items = Vec::new();
        for line in lines {
            match line {
                OrderLine::Product { sku, qty } => {
                    self.require_product(sku)?;
                    items.push(self.product_item(sku, *qty, None, None)?);
                }
                OrderLine::Configurable { parent, child, qty } => {
                    self.require_product(parent)?;
                    self.require_product(child)?;
                    let mut p = self.product_item(parent, *qty, None, None)?;
                    // The configurable line carries the chosen child's SKU.
                    p.sku = child.as_str().to_owned();
                    p.is_virtual = false;
                    let pid = p.item_id;
                    items.push(p);
                    items.push(self.product_item(child, *qty, None, Some(pid))?);
                }
                OrderLine::Bundle {
                    sku,
                    qty,
                    selections,
                } => {
                    let product = self.require_product(sku)?;
                    let mut p = self.product_item(sku, *qty, None, None)?;
                    p.ship_separately = product.shipment_type == ShipmentType::Separately;
                    p.children_calculated = true;
                    p.is_virtual = false;
                    let pid = p.item_id;
                    items.push(p);
                    for (child, per_bundle) in selections {
                        self.require_product(child)?;
                        let mut c =
                            self.product_item(child, *qty * *per_bundle, None, Some(pid))?;
                        c.bundle_selection_qty = Some(*per_bundle);
                        items.push(c);
                    }
                }
                OrderLine::Grouped { sku, children } => {
                    self.require_product(sku)?;
                    for (child, qty) in children {
                        self.require_product(child)?;
                        items.push(self.product_item(child, *qty, Some("grouped"), None)?);
                    }
                }
            }
        }
        Ok(items)
    }

    fn require_product(&self, sku: &Sku) -> Result<super::model::Product, MagentoError> {
        self.product(sku).cloned().ok_or_else(|| {
            MagentoError::no_such_entity(Phrase::new(
                "The product that was requested doesn't exist. Verify the product and try again.",
            ))
        })
    }

    /// `AppendReservationsAfterOrderPlacementPlugin` (deferred mode): quantities summed per
    /// product, composite types skipped, `CheckItemsQuantity` (the requested-quantity chain; the
    /// last error of the first unsalable SKU becomes a `LocalizedException`), then `order_placed`
    /// reservations of `-qty` with `object_id` = the order id known at that moment.
    fn reserve_for_placement(
        &mut self,
        items: &[OrderItem],
        website: &WebsiteCode,
        object_id: &str,
        increment_id: &str,
    ) -> Result<(), MagentoError> {
        let mut by_product: Vec<(u64, Decimal)> = Vec::new();
        for item in items {
            let Some(pid) = item.product_id else { continue };
            match by_product.iter_mut().find(|(p, _)| *p == pid) {
                Some(e) => e.1 += item.qty_ordered,
                None => by_product.push((pid, item.qty_ordered)),
            }
        }
        let mut by_sku: Vec<(Sku, Decimal)> = Vec::new();
        for (pid, qty) in by_product {
            let Some(product) = self.products.values().find(|p| p.product_id == pid) else {
                continue;
            };
            if !product.product_type.allows_source_items() {
                continue;
            }
            by_sku.push((product.sku.clone(), qty));
        }
        let stock_id = self.stock_for_website(website)?;
        for (sku, qty) in &by_sku {
            let result = self.is_product_salable_for_requested_qty(sku.as_str(), stock_id, *qty)?;
            if !result.salable {
                let last = result
                    .errors
                    .last()
                    .map(|e| e.message.clone())
                    .unwrap_or_default();
                return Err(MagentoError::localized(Phrase::new(last)));
            }
        }
        let reserve: Vec<(Sku, Decimal)> = by_sku.into_iter().map(|(s, q)| (s, -q)).collect();
        self.place_reservations_for_sales_event(
            &reserve,
            website,
            &SalesEvent::order("order_placed", object_id, increment_id),
        )
    }

    /// Checkout placement: builds the items, records `qty_backordered`, checks salability and
    /// appends `order_placed` reservations (`object_id` is `""`: the order is not saved yet),
    /// then saves the order in state `new` / status `pending`.
    pub fn place_order(
        &mut self,
        request: &PlaceOrderRequest,
        now: &Timestamp,
    ) -> Result<OrderId, MagentoError> {
        let mut items = self.build_items(&request.lines)?;
        let stock_id = self.stock_for_website(&request.website)?;
        for item in &mut items {
            let allowed = self
                .product_by_text(&item.sku)
                .is_some_and(|p| p.product_type.allows_source_items());
            if allowed && item.product_id.is_some() {
                let bo = self
                    .backorder_qty(&item.sku, stock_id, item.qty_ordered)
                    .unwrap_or_default();
                if bo > Decimal::ZERO {
                    item.qty_backordered = Some(bo);
                }
            }
        }
        let increment_id = match &request.increment_id {
            Some(i) => i.clone(),
            None => self.generate_increment_id(),
        };
        if self.order_by_increment_id(increment_id.as_str()).is_some() {
            return Err(MagentoError::could_not_save(Phrase::new(
                "The order increment id is already used.",
            )));
        }
        self.reserve_for_placement(&items, &request.website, "", increment_id.as_str())?;
        Ok(self.save_new_order(
            increment_id,
            OrderState::New,
            request.website.clone(),
            request.store.clone(),
            items,
            now,
        ))
    }

    fn save_new_order(
        &mut self,
        increment_id: OrderIncrementId,
        state: OrderState,
        website: WebsiteCode,
        store: Option<StoreCode>,
        items: Vec<OrderItem>,
        now: &Timestamp,
    ) -> OrderId {
        let id = OrderId(self.sales.orders.len() as u64 + 1);
        self.sales.orders.push(Order {
            entity_id: id,
            increment_id,
            state,
            status: state.default_status().to_owned(),
            previous_status: state.default_status().to_owned(),
            website,
            store,
            items,
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        id
    }

    /// Writes an order directly, as fixtures do. With [`Placement::OrderManagement`] it is
    /// placed first (salability check, `order_placed` with `object_id` `""`); with
    /// [`Placement::RepositorySave`] no reservation is written.
    pub fn create_order(
        &mut self,
        seed: &SeedOrder,
        now: &Timestamp,
    ) -> Result<OrderId, MagentoError> {
        let mut items = Vec::new();
        for s in &seed.items {
            match &s.child_sku {
                Some(child) => {
                    let mut p = self.product_item(&s.sku, s.qty, Some(&s.product_type), None)?;
                    p.is_virtual = false;
                    let pid = p.item_id;
                    items.push(p);
                    items.push(self.product_item(child, s.qty, Some("simple"), Some(pid))?);
                }
                None => {
                    items.push(self.product_item(&s.sku, s.qty, Some(&s.product_type), None)?)
                }
            }
        }
        if self
            .order_by_increment_id(seed.increment_id.as_str())
            .is_some()
        {
            return Err(MagentoError::could_not_save(Phrase::new(
                "The order increment id is already used.",
            )));
        }
        if seed.placement == Placement::OrderManagement {
            self.reserve_for_placement(&items, &seed.website, "", seed.increment_id.as_str())?;
        }
        Ok(self.save_new_order(
            seed.increment_id.clone(),
            seed.state,
            seed.website.clone(),
            None,
            items,
            now,
        ))
    }

    /// `OrderManagementInterface::place` on an order that is already saved: the reservation's
    /// `object_id` is its entity id.
    pub fn place_existing_order(&mut self, id: OrderId) -> Result<(), MagentoError> {
        let order = self.order(id)?.clone();
        self.reserve_for_placement(
            &order.items,
            &order.website,
            &order.entity_id.0.to_string(),
            order.increment_id.as_str(),
        )
    }

    /// Patches the SKU text of an order item (fixture detail). `which` is `child`, `parent`, or
    /// the current SKU of the item.
    pub fn set_order_item_sku(
        &mut self,
        id: OrderId,
        which: &str,
        sku: &str,
    ) -> Result<(), MagentoError> {
        let order = self.order_mut(id)?;
        let pos = match which {
            "child" => order.items.iter().position(|i| i.parent_item_id.is_some()),
            "parent" => order.items.iter().position(|i| i.parent_item_id.is_none()),
            other => order
                .items
                .iter()
                .position(|i| sku_text_key(&i.sku) == sku_text_key(other)),
        };
        let pos = pos.ok_or_else(entity_not_found)?;
        order.items[pos].sku = sku.to_owned();
        Ok(())
    }

    // ----- documents -----------------------------------------------------------------------------

    fn resolve_item(&self, order: &Order, item: &ItemRef) -> Result<u64, MagentoError> {
        let product_sku = |i: &OrderItem| {
            i.product_id
                .and_then(|pid| self.products.values().find(|p| p.product_id == pid))
                .map(|p| sku_text_key(p.sku.as_str()))
        };
        let matches = |i: &OrderItem, sku: &str| {
            sku_text_key(&i.sku) == sku_text_key(sku)
                || product_sku(i).as_deref() == Some(sku_text_key(sku).as_str())
        };
        let found = match item {
            ItemRef::ItemId(id) => order.item(*id).map(|i| i.item_id),
            ItemRef::Sku(sku) => order
                .items
                .iter()
                .find(|i| matches(i, sku))
                .map(|i| i.item_id),
            ItemRef::Child { sku, parent_sku } => order
                .items
                .iter()
                .find(|i| {
                    matches(i, sku) && order.parent_of(i).is_some_and(|p| matches(p, parent_sku))
                })
                .map(|i| i.item_id),
        };
        found.ok_or_else(|| {
            MagentoError::localized(Phrase::new(
                "The order does not contain the requested item.",
            ))
        })
    }

    /// `GetSkuFromOrderItem`: source-managed items use their product's SKU, others the stored
    /// SKU text (a configurable parent stores its child's SKU).
    fn sku_from_order_item(&self, item: &OrderItem) -> String {
        let allowed = super::ids::ProductType::parse(&item.product_type)
            .is_some_and(|t| t.allows_source_items());
        if allowed
            && let Some(p) = item
                .product_id
                .and_then(|pid| self.products.values().find(|p| p.product_id == pid))
        {
            return p.sku.as_str().to_owned();
        }
        item.sku.clone()
    }

    /// `SourceDeductionService::execute`: every line is checked first (unmanaged SKUs are
    /// skipped; a missing source item or a quantity that would go below zero fails the whole
    /// request), then quantities are decremented. Returns the lines actually deducted.
    fn source_deduction(
        &mut self,
        source: &SourceCode,
        stock_id: StockId,
        lines: &[(Sku, Decimal)],
    ) -> Result<(), MagentoError> {
        let mut decrements = Vec::new();
        for (sku, qty) in lines {
            let item = self
                .stock_item_configuration(sku.as_str(), stock_id)
                .map_err(|_| {
                    MagentoError::localized(Phrase::new(
                        "The requested sku is not assigned to given stock.",
                    ))
                })?;
            let cfg = item.resolve(&self.config);
            if !cfg.manage_stock() {
                continue;
            }
            let source_item = self.source_item(sku, source).cloned().ok_or_else(|| {
                MagentoError::no_such_entity(Phrase::positional(
                    "Source item not found by source code: %1 and sku: %2.",
                    vec![json!(source.as_str()), json!(sku.as_str())],
                ))
            })?;
            let after = source_item.quantity - *qty;
            if after < Decimal::ZERO {
                return Err(MagentoError::localized(Phrase::new(
                    "Not all of your products are available in the requested quantity.",
                )));
            }
            // getSourceStockStatus
            let current = cfg.is_in_stock();
            let mut calculated = SourceItemStatus::InStock;
            if after == cfg.min_qty() && cfg.backorders() == 0 {
                calculated = SourceItemStatus::OutOfStock;
            }
            let status = if self.config.can_back_in_stock() && after > cfg.min_qty() && !current {
                SourceItemStatus::InStock
            } else if !current {
                SourceItemStatus::OutOfStock
            } else {
                calculated
            };
            decrements.push((source.clone(), sku.clone(), *qty, status));
        }
        if !decrements.is_empty() {
            self.decrement_source_items_internal(&decrements);
        }
        Ok(())
    }

    fn refresh_state(&mut self, id: OrderId, now: &Timestamp) {
        let Some(pos) = self.sales.orders.iter().position(|o| o.entity_id == id) else {
            return;
        };
        let order = self.sales.orders[pos].clone();
        let before = order.status.clone();
        let mut state = order.state;
        if !matches!(state, OrderState::Canceled | OrderState::Holded) {
            let invoice_items: Vec<&OrderItem> = order
                .items
                .iter()
                .filter(|i| !order.is_dummy(i, false))
                .collect();
            let ship_items: Vec<&OrderItem> = order
                .items
                .iter()
                .filter(|i| !i.is_virtual && !order.is_dummy(i, true))
                .collect();
            let all_invoiced = invoice_items.iter().all(|i| i.qty_to_invoice().is_zero());
            let all_shipped = ship_items.iter().all(|i| i.qty_to_ship().is_zero());
            let all_refunded = invoice_items.iter().all(|i| {
                i.qty_refunded >= i.qty_ordered - i.qty_canceled && !i.qty_refunded.is_zero()
            });
            state = if all_refunded {
                OrderState::Closed
            } else if all_invoiced && all_shipped {
                OrderState::Complete
            } else {
                OrderState::Processing
            };
        }
        let order = &mut self.sales.orders[pos];
        order.previous_status = before;
        order.state = state;
        order.status = state.default_status().to_owned();
        order.updated_at = now.clone();
    }

    /// Creates an invoice (`items`: `None` = everything left to invoice). A saved invoice with
    /// virtual items deducts them from the sources the priority algorithm selects and appends
    /// `invoice_created` `+qty` per deduction (`VirtualSourceDeductionProcessor`). An unsaved
    /// invoice (`persist = false`) only registers the quantities on the order in memory.
    pub fn invoice(
        &mut self,
        id: OrderId,
        items: Option<&[DocumentLine]>,
        persist: bool,
        now: &Timestamp,
    ) -> Result<InvoiceId, MagentoError> {
        let order = self.order(id)?.clone();
        if matches!(
            order.state,
            OrderState::Canceled | OrderState::Complete | OrderState::Closed | OrderState::Holded
        ) || order.items.iter().all(|i| i.qty_to_invoice().is_zero())
        {
            return Err(doc_error(
                "Invoice",
                &["The order does not allow an invoice to be created."],
            ));
        }
        let mut lines: Vec<(u64, Decimal)> = Vec::new();
        match items {
            None => {
                for i in order.items.iter().filter(|i| i.parent_item_id.is_none()) {
                    let q = i.qty_to_invoice();
                    if q > Decimal::ZERO {
                        lines.push((i.item_id, q));
                    }
                }
            }
            Some(list) => {
                for line in list {
                    let item_id = self.resolve_item(&order, &line.item)?;
                    let item = order.item(item_id).ok_or_else(entity_not_found)?;
                    let q = line.qty.unwrap_or_else(|| item.qty_to_invoice());
                    lines.push((item_id, q));
                }
            }
        }
        // Children follow their parent in proportion.
        let mut register: Vec<(u64, Decimal)> = lines.clone();
        for (item_id, q) in &lines {
            let Some(parent) = order.item(*item_id) else {
                continue;
            };
            for child in order.children(parent) {
                if !lines.iter().any(|(l, _)| *l == child.item_id) {
                    register.push((child.item_id, *q * child.qty_ordered / parent.qty_ordered));
                }
            }
        }
        let stock_id = self.stock_for_website(&order.website)?;
        if persist {
            // VirtualSourceDeductionProcessor
            let mut request = Vec::new();
            for (item_id, q) in &register {
                let Some(item) = order.item(*item_id) else {
                    continue;
                };
                if order.is_dummy(item, false) || !item.is_virtual {
                    continue;
                }
                request.push(ItemRequest {
                    sku: self.sku_from_order_item(item),
                    qty: item.cast_qty(*q),
                });
            }
            if !request.is_empty() {
                let selection = self.priority_source_selection(&InventoryRequest {
                    stock_id,
                    items: request,
                });
                let event = SalesEvent::order(
                    "invoice_created",
                    &order.entity_id.0.to_string(),
                    order.increment_id.as_str(),
                );
                for (source, source_lines) in selection.deductions_per_source() {
                    self.source_deduction(&source, stock_id, &source_lines)?;
                    self.place_reservations_for_sales_event(&source_lines, &order.website, &event)?;
                }
            }
        }
        {
            let o = self.order_mut(id)?;
            for (item_id, q) in &register {
                if let Some(i) = o.items.iter_mut().find(|i| i.item_id == *item_id) {
                    i.qty_invoiced = num::round4(i.qty_invoiced + *q);
                }
            }
        }
        let invoice_id = InvoiceId(self.sales.invoices.len() as u64 + 1);
        self.sales.invoices.push(Invoice {
            entity_id: invoice_id,
            order_id: id,
            items: lines,
            persisted: persist,
        });
        self.refresh_state(id, now);
        Ok(invoice_id)
    }

    /// Creates a shipment (`items`: `None` = every shippable item at its remaining quantity).
    /// The source is `source_code`, else the stock's only linked source, else `default`
    /// (`AssignSourceCodeToShipmentPlugin`). The shipped quantity per SKU is deducted from that
    /// source — failing with "Not all of your products are available in the requested
    /// quantity." rather than going below zero — and `shipment_created` `+qty` is appended.
    pub fn ship(
        &mut self,
        id: OrderId,
        items: Option<&[DocumentLine]>,
        source_code: Option<&SourceCode>,
        now: &Timestamp,
    ) -> Result<ShipmentId, MagentoError> {
        let order = self.order(id)?.clone();
        let shippable = |i: &OrderItem| !i.is_virtual && !order.is_dummy(i, true);
        let mut lines: Vec<(u64, Decimal)> = Vec::new();
        match items {
            None => {
                for i in order.items.iter().filter(|i| shippable(i)) {
                    let q = i.qty_to_ship();
                    if q > Decimal::ZERO {
                        lines.push((i.item_id, q));
                    }
                }
            }
            Some(list) => {
                for line in list {
                    let mut item_id = self.resolve_item(&order, &line.item)?;
                    if let Some(item) = order.item(item_id)
                        && order.is_dummy(item, true)
                        && let Some(p) = order.parent_of(item)
                    {
                        item_id = p.item_id;
                    }
                    let item = order.item(item_id).ok_or_else(entity_not_found)?;
                    let mut q = line.qty.unwrap_or_else(|| item.qty_to_ship());
                    // ShipmentFactory::prepareItems: a plain item (neither parent nor child)
                    // ships at most what is left to ship.
                    if item.parent_item_id.is_none() && !order.has_children(item) {
                        q = q.min(item.qty_to_ship());
                    }
                    lines.push((item_id, q));
                }
            }
        }
        if matches!(
            order.state,
            OrderState::Canceled | OrderState::Complete | OrderState::Closed | OrderState::Holded
        ) || lines.iter().all(|(_, q)| q.is_zero())
        {
            return Err(doc_error(
                "Shipment",
                &[
                    "The order does not allow a shipment to be created.",
                    "You can't create a shipment without products.",
                ],
            ));
        }
        let stock_id = self.stock_for_website(&order.website)?;
        let source = match source_code {
            Some(s) => s.clone(),
            None => {
                let assigned = self.sources_assigned_to_stock(stock_id);
                if assigned.len() == 1 {
                    assigned[0].source_code.clone()
                } else {
                    SourceCode::default_source()
                }
            }
        };
        // GetItemsToDeductFromShipment
        let mut deduct: Vec<(Sku, Decimal)> = Vec::new();
        let mut add = |sku: String, qty: Decimal| {
            if let Ok(sku) = Sku::parse(&sku) {
                match deduct.iter_mut().find(|(s, _)| s.key() == sku.key()) {
                    Some(e) => e.1 += qty,
                    None => deduct.push((sku, qty)),
                }
            }
        };
        for (item_id, q) in &lines {
            let Some(item) = order.item(*item_id) else {
                continue;
            };
            if item.product_id.is_none() {
                continue;
            }
            if order.has_children(item) {
                if order.is_dummy(item, true) {
                    continue;
                }
                for child in order.children(item) {
                    if child.is_virtual {
                        continue;
                    }
                    match child.bundle_selection_qty {
                        Some(per) => add(self.sku_from_order_item(child), child.cast_qty(per * *q)),
                        None => add(self.sku_from_order_item(item), item.cast_qty(*q)),
                    }
                }
            } else {
                add(self.sku_from_order_item(item), item.cast_qty(*q));
            }
        }
        self.source_deduction(&source, stock_id, &deduct)?;
        let event = SalesEvent::order(
            "shipment_created",
            &order.entity_id.0.to_string(),
            order.increment_id.as_str(),
        );
        self.place_reservations_for_sales_event(&deduct, &order.website, &event)?;
        {
            let o = self.order_mut(id)?;
            let snapshot = o.clone();
            for (item_id, q) in &lines {
                let Some(parent) = snapshot.item(*item_id) else {
                    continue;
                };
                let children: Vec<(u64, Decimal)> = snapshot
                    .children(parent)
                    .iter()
                    .map(|c| (c.item_id, *q * c.qty_ordered / parent.qty_ordered))
                    .collect();
                if let Some(i) = o.items.iter_mut().find(|i| i.item_id == *item_id) {
                    i.qty_shipped = num::round4(i.qty_shipped + *q);
                }
                for (cid, cq) in children {
                    if let Some(c) = o.items.iter_mut().find(|i| i.item_id == cid) {
                        c.qty_shipped = num::round4(c.qty_shipped + cq);
                    }
                }
            }
        }
        let shipment_id = ShipmentId(self.sales.shipments.len() as u64 + 1);
        let total_qty = lines.iter().map(|(_, q)| *q).sum();
        self.sales.shipments.push(Shipment {
            entity_id: shipment_id,
            order_id: id,
            source_code: source,
            items: lines,
            total_qty,
        });
        self.refresh_state(id, now);
        Ok(shipment_id)
    }

    /// `OrderManagementInterface::cancel`. Returns `false` (nothing changes) when the order
    /// cannot be canceled (fully invoiced, complete, closed, canceled, on hold). Each item
    /// appends `order_canceled` `+(ordered − max(shipped, invoiced) − canceled)` (configurable
    /// and ship-together bundle children through their parent), then is marked canceled.
    pub fn cancel(&mut self, id: OrderId, now: &Timestamp) -> Result<bool, MagentoError> {
        let order = self.order(id)?.clone();
        let all_invoiced = order.items.iter().all(|i| i.qty_to_invoice().is_zero());
        if all_invoiced
            || matches!(
                order.state,
                OrderState::Canceled
                    | OrderState::Complete
                    | OrderState::Closed
                    | OrderState::Holded
            )
        {
            return Ok(false);
        }
        let event = SalesEvent::order(
            "order_canceled",
            &order.entity_id.0.to_string(),
            order.increment_id.as_str(),
        );
        let to_cancel =
            |i: &OrderItem| i.qty_ordered - i.qty_shipped.max(i.qty_invoiced) - i.qty_canceled;
        for item in &order.items {
            let mut list: Vec<(String, Decimal)> = Vec::new();
            if order.has_children(item) {
                if !order.is_dummy(item, true) {
                    for child in order.children(item) {
                        match child.bundle_selection_qty {
                            Some(per) => {
                                let shipped = per * item.qty_shipped;
                                let q = child.qty_ordered
                                    - shipped.max(child.qty_invoiced)
                                    - child.qty_canceled;
                                list.push((self.sku_from_order_item(child), q));
                            }
                            None => list.push((self.sku_from_order_item(item), to_cancel(item))),
                        }
                    }
                }
            } else if !order.is_dummy(item, true) {
                list.push((self.sku_from_order_item(item), to_cancel(item)));
            }
            let mut grouped: Vec<(Sku, Decimal)> = Vec::new();
            for (sku, q) in list {
                if q.is_zero() {
                    continue;
                }
                let Ok(sku) = Sku::parse(&sku) else { continue };
                match grouped.iter_mut().find(|(s, _)| s.key() == sku.key()) {
                    Some(e) => e.1 += q,
                    None => grouped.push((sku, q)),
                }
            }
            self.place_reservations_for_sales_event(&grouped, &order.website, &event)?;
        }
        let o = self.order_mut(id)?;
        o.previous_status = o.status.clone();
        for item in &mut o.items {
            let q = (item.qty_ordered - item.qty_invoiced - item.qty_canceled)
                .min(item.qty_ordered - item.qty_shipped - item.qty_refunded - item.qty_canceled)
                .max(Decimal::ZERO);
            item.qty_canceled += q;
        }
        o.state = OrderState::Canceled;
        o.status = OrderState::Canceled.default_status().to_owned();
        o.updated_at = now.clone();
        Ok(true)
    }

    /// Creates and saves a credit memo (`items`: `None` = everything invoiced and not yet
    /// refunded). Items **not** returned to stock: the part never deducted from a source
    /// (unshipped, or virtual and not invoice-deducted) is deducted now by source priority and
    /// compensated with `creditmemo_created` `+qty` (`DeductSourceItemQuantityOnRefundPlugin`;
    /// virtual items are skipped). Items returned to stock: the deducted part goes back to the
    /// sources it came from, the rest is compensated with `creditmemo_created`
    /// (`ProcessRefundItems`).
    pub fn refund(
        &mut self,
        id: OrderId,
        items: Option<&[DocumentLine]>,
        return_to_stock: &ReturnToStock,
        now: &Timestamp,
    ) -> Result<CreditmemoId, MagentoError> {
        let order = self.order(id)?.clone();
        if matches!(order.state, OrderState::Canceled | OrderState::Closed)
            || order.items.iter().all(|i| i.qty_to_refund().is_zero())
        {
            return Err(doc_error(
                "Creditmemo",
                &["We can't create creditmemo for the order."],
            ));
        }
        let mut lines: Vec<(u64, Decimal)> = Vec::new();
        match items {
            None => {
                for i in &order.items {
                    let q = i.qty_to_refund();
                    if q > Decimal::ZERO {
                        lines.push((i.item_id, q));
                    }
                }
            }
            Some(list) => {
                for line in list {
                    let item_id = self.resolve_item(&order, &line.item)?;
                    let item = order.item(item_id).ok_or_else(entity_not_found)?;
                    lines.push((item_id, line.qty.unwrap_or_else(|| item.qty_to_refund())));
                }
            }
        }
        let return_ids: Vec<u64> = match return_to_stock {
            ReturnToStock::None => Vec::new(),
            ReturnToStock::All => order.items.iter().map(|i| i.item_id).collect(),
            ReturnToStock::Items(refs) => {
                let mut ids = Vec::new();
                for r in refs {
                    ids.push(self.resolve_item(&order, r)?);
                }
                ids
            }
        };
        let auto_return = matches!(return_to_stock, ReturnToStock::All);
        // Register the refund on the order items first (as `Creditmemo::refund()` does).
        let mut refunded = order.clone();
        for (item_id, q) in &lines {
            if let Some(i) = refunded.items.iter_mut().find(|i| i.item_id == *item_id) {
                i.qty_refunded = num::round4(i.qty_refunded + *q);
            }
        }
        let stock_id = self.stock_for_website(&order.website)?;
        let website = order.website.clone();
        let event = SalesEvent::order(
            "creditmemo_created",
            &order.entity_id.0.to_string(),
            order.increment_id.as_str(),
        );
        // Per SKU: (qty, processed qty), as both plugins aggregate them.
        let aggregate = |filter: &dyn Fn(&OrderItem, u64) -> bool| {
            let mut out: Vec<(String, Decimal, Decimal)> = Vec::new();
            for (item_id, q) in &lines {
                let Some(item) = refunded.item(*item_id) else {
                    continue;
                };
                if !filter(item, *item_id) {
                    continue;
                }
                let sku = self.sku_from_order_item(item);
                let processed = item.qty_invoiced - item.qty_refunded + *q;
                match out
                    .iter_mut()
                    .find(|(s, _, _)| sku_text_key(s) == sku_text_key(&sku))
                {
                    Some(e) => {
                        e.1 += *q;
                        e.2 += processed;
                    }
                    None => out.push((sku, *q, processed)),
                }
            }
            out
        };
        let source_managed = |item: &OrderItem| {
            let t = if item.product_type == "grouped" {
                "simple"
            } else {
                item.product_type.as_str()
            };
            super::ids::ProductType::parse(t).is_some_and(|t| t.allows_source_items())
        };
        let back_to_stock = |item_id: u64| auto_return || return_ids.contains(&item_id);
        // Items kept (not returned): DeductSourceItemQuantityOnRefundPlugin.
        let kept = aggregate(&|item, item_id| {
            source_managed(item) && !back_to_stock(item_id) && !item.is_virtual
        });
        let kept: Vec<_> = kept
            .into_iter()
            .filter(|(sku, q, _)| *q > Decimal::ZERO && self.product_by_text(sku).is_some())
            .collect();
        // Items returned to stock (computed now: both plugins read the order as refunded).
        let returned = aggregate(&|item, item_id| back_to_stock(item_id) && source_managed(item));
        if !kept.is_empty() {
            let kept_ids: Vec<u64> = lines
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| !back_to_stock(*i))
                .collect();
            let deducted = self.source_deducted_items(&refunded, &kept_ids, stock_id);
            let mut request = Vec::new();
            for (sku, q, processed) in &kept {
                let d = total_deducted(&deducted, sku);
                let p = *processed - d;
                let back = if p > Decimal::ZERO { *q - p } else { *q };
                let to_source = if back > Decimal::ZERO { *q - back } else { *q };
                request.push(ItemRequest {
                    sku: sku.clone(),
                    qty: to_source,
                });
            }
            let selection = self.priority_source_selection(&InventoryRequest {
                stock_id,
                items: request,
            });
            for (source, source_lines) in selection.deductions_per_source() {
                self.source_deduction(&source, stock_id, &source_lines)?;
                self.place_reservations_for_sales_event(&source_lines, &website, &event)?;
            }
        }
        // Items returned to stock: ProcessReturnQtyOnCreditMemoPlugin → ProcessRefundItems.
        if !returned.is_empty() {
            let deducted = self.source_deducted_items(&refunded, &return_ids, stock_id);
            let mut to_sell: Vec<(Sku, Decimal)> = Vec::new();
            let mut back_per_source: Vec<(SourceCode, Vec<(Sku, Decimal)>)> = Vec::new();
            for (sku, q, processed) in &returned {
                let d = total_deducted(&deducted, sku);
                let p = *processed - d;
                let mut back_to_source = if p > Decimal::ZERO { *q - p } else { *q };
                let back_to_stock = if back_to_source > Decimal::ZERO {
                    *q - back_to_source
                } else {
                    *q
                };
                let Ok(parsed) = Sku::parse(sku) else {
                    continue;
                };
                if back_to_stock > Decimal::ZERO {
                    to_sell.push((parsed.clone(), back_to_stock));
                }
                for (source, entries) in &deducted {
                    for (dsku, dqty) in entries {
                        if sku_text_key(dsku) != sku_text_key(sku)
                            || back_to_source < Decimal::new(1, 7)
                        {
                            continue;
                        }
                        let back = (*dqty).min(back_to_source);
                        match back_per_source.iter_mut().find(|(s, _)| s == source) {
                            Some((_, v)) => v.push((parsed.clone(), -back)),
                            None => back_per_source
                                .push((source.clone(), vec![(parsed.clone(), -back)])),
                        }
                        back_to_source -= back;
                    }
                }
            }
            for (source, source_lines) in back_per_source {
                self.source_deduction(&source, stock_id, &source_lines)?;
            }
            self.place_reservations_for_sales_event(&to_sell, &website, &event)?;
        }
        {
            let o = self.order_mut(id)?;
            for (item_id, q) in &lines {
                if let Some(i) = o.items.iter_mut().find(|i| i.item_id == *item_id) {
                    i.qty_refunded = num::round4(i.qty_refunded + *q);
                }
            }
        }
        let memo_id = CreditmemoId(self.sales.creditmemos.len() as u64 + 1);
        self.sales.creditmemos.push(Creditmemo {
            entity_id: memo_id,
            order_id: id,
            items: lines
                .iter()
                .map(|(i, q)| (*i, *q, back_to_stock(*i)))
                .collect(),
        });
        self.refresh_state(id, now);
        Ok(memo_id)
    }

    /// Saves an existing credit memo again: the refund plugins only act on new credit memos,
    /// so nothing happens to stock or reservations.
    pub fn resave_creditmemo(&mut self, id: CreditmemoId) -> Result<(), MagentoError> {
        if self.sales.creditmemos.iter().any(|c| c.entity_id == id) {
            Ok(())
        } else {
            Err(entity_not_found())
        }
    }

    /// `GetSourceDeductedOrderItemsChain`: shipped quantities per source (all shipments,
    /// sources sorted by the stock's priority, a SKU kept under the first source it appears
    /// at) plus invoiced virtual items (listed items only) under their highest-priority
    /// source.
    fn source_deducted_items(
        &self,
        order: &Order,
        listed: &[u64],
        stock_id: StockId,
    ) -> Vec<(SourceCode, Vec<(String, Decimal)>)> {
        let mut per_source: Vec<(SourceCode, Vec<(String, Decimal)>)> = Vec::new();
        let push = |list: &mut Vec<(SourceCode, Vec<(String, Decimal)>)>,
                    source: &SourceCode,
                    sku: String,
                    qty: Decimal| {
            match list.iter_mut().find(|(s, _)| s == source) {
                Some((_, v)) => match v
                    .iter_mut()
                    .find(|(k, _)| sku_text_key(k) == sku_text_key(&sku))
                {
                    Some(e) => e.1 += qty,
                    None => v.push((sku, qty)),
                },
                None => list.push((source.clone(), vec![(sku, qty)])),
            }
        };
        // Shipped items (GetShippedItemsPerSourceByPriority).
        let mut shipped: Vec<(SourceCode, Vec<(String, Decimal)>)> = Vec::new();
        for shipment in self.shipments_of(order.entity_id) {
            for (item_id, q) in &shipment.items {
                let Some(item) = order.item(*item_id) else {
                    continue;
                };
                if order.has_children(item) {
                    if order.is_dummy(item, true) {
                        continue;
                    }
                    for child in order.children(item) {
                        if child.is_virtual {
                            continue;
                        }
                        match child.bundle_selection_qty {
                            Some(per) => push(
                                &mut shipped,
                                &shipment.source_code,
                                self.sku_from_order_item(child),
                                child.cast_qty(per * *q),
                            ),
                            None => push(
                                &mut shipped,
                                &shipment.source_code,
                                self.sku_from_order_item(item),
                                item.cast_qty(*q),
                            ),
                        }
                    }
                } else {
                    push(
                        &mut shipped,
                        &shipment.source_code,
                        self.sku_from_order_item(item),
                        item.cast_qty(*q),
                    );
                }
            }
        }
        let priority: Vec<SourceCode> = self
            .sources_assigned_to_stock(stock_id)
            .into_iter()
            .map(|s| s.source_code)
            .collect();
        shipped.sort_by_key(|(s, _)| priority.iter().position(|p| p == s).unwrap_or(usize::MAX));
        let mut sku_home: Vec<(String, SourceCode)> = Vec::new();
        for (source, entries) in shipped {
            for (sku, qty) in entries {
                let home = sku_home
                    .iter()
                    .find(|(k, _)| sku_text_key(k) == sku_text_key(&sku))
                    .map(|(_, s)| s.clone());
                match home {
                    Some(h) => push(&mut per_source, &h, sku, qty),
                    None => {
                        sku_home.push((sku.clone(), source.clone()));
                        push(&mut per_source, &source, sku, qty);
                    }
                }
            }
        }
        // Invoiced virtual items (GetInvoicedItemsPerSourceByPriority).
        for invoice in self
            .sales
            .invoices
            .iter()
            .filter(|i| i.order_id == order.entity_id)
        {
            for (item_id, q) in &invoice.items {
                let Some(item) = order.item(*item_id) else {
                    continue;
                };
                let listed_item = listed.contains(item_id)
                    || item.parent_item_id.is_some_and(|p| listed.contains(&p));
                if !listed_item || !item.is_virtual || order.is_dummy(item, false) {
                    continue;
                }
                let sku = self.sku_from_order_item(item);
                let source = priority
                    .iter()
                    .find(|s| {
                        self.source_items
                            .contains_key(&((*s).clone(), super::ids::SkuKey::of(&sku)))
                    })
                    .cloned()
                    .unwrap_or_else(SourceCode::default_source);
                push(&mut per_source, &source, sku, *q);
            }
        }
        per_source
    }
}

fn total_deducted(deducted: &[(SourceCode, Vec<(String, Decimal)>)], sku: &str) -> Decimal {
    deducted
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|(k, _)| sku_text_key(k) == sku_text_key(sku))
        .map(|(_, q)| *q)
        .sum()
}

fn entity_not_found() -> MagentoError {
    MagentoError::no_such_entity(Phrase::new(
        "The entity that was requested doesn't exist. Verify the entity and try again.",
    ))
}
