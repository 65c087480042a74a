//! The reservation preview: from a snapshot of an instance and a list of pending events (POS
//! stock pushes, orders, shipments, invoices, cancels, refunds, raw reservations), the salable
//! quantity per stock after each event — what Magento will show once those events reach it.
//!
//! Input and output are serde types meant to cross the WASM boundary as JSON. The snapshot is
//! loaded into a fresh [`Inventory`], fully reindexed, and every event runs through the same
//! service methods the emulator uses, so a preview is exactly the model's behaviour: orders are
//! checked for salability and may be rejected, shipments fail rather than take a source below
//! zero, absolute stock pushes never touch reservations. With `process_queues` (default) the
//! salability queue is consumed after each event, as Magento's consumers would shortly after.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::StockItemFields;
use super::error::{MagentoError, Phrase};
use super::ids::{OrderIncrementId, ProductType, Sku, SourceCode, StockId, Timestamp, WebsiteCode};
use super::model::{Inventory, SourceItem};
use super::num;
use super::reservations::NewReservation;
use super::sales::{
    DocumentLine, ItemRef, OrderLine, OrderState, PlaceOrderRequest, Placement, ReturnToStock,
    SeedItem, SeedOrder,
};
use super::source_items::SourceItemInput;
use super::structure::{LinkInput, SalesChannelInput, SourceInput, StockInput};

/// A source in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSource {
    /// `source_code`
    pub source_code: SourceCode,
    /// `name` (defaults to the code)
    #[serde(default)]
    pub name: Option<String>,
    /// `enabled` (default true)
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A stock in a snapshot with the websites that sell from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStock {
    /// `stock_id`
    pub stock_id: StockId,
    /// `name`
    #[serde(default)]
    pub name: Option<String>,
    /// Website codes of its sales channels.
    #[serde(default)]
    pub websites: Vec<WebsiteCode>,
}

/// A link in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotLink {
    /// `stock_id`
    pub stock_id: StockId,
    /// `source_code`
    pub source_code: SourceCode,
    /// `priority`
    pub priority: u32,
}

/// A product in a snapshot (its stock configuration as `stock_item` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProduct {
    /// `sku`
    pub sku: Sku,
    /// `type_id` (default simple)
    #[serde(default = "simple", rename = "type")]
    pub product_type: ProductType,
    /// Stock configuration (`use_config_*` flags and values).
    #[serde(default)]
    pub stock_item: StockItemFields,
    /// Configurable children.
    #[serde(default)]
    pub children: Vec<Sku>,
}

fn simple() -> ProductType {
    ProductType::Simple
}

/// A reservation in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotReservation {
    /// `stock_id`
    pub stock_id: StockId,
    /// `sku`
    pub sku: Sku,
    /// `quantity`
    #[serde(with = "num::json_number")]
    pub quantity: Decimal,
    /// `metadata`
    #[serde(default)]
    pub metadata: Option<String>,
}

/// An order line in a snapshot, with what already happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOrderItem {
    /// SKU.
    pub sku: Sku,
    /// `qty_ordered`
    #[serde(with = "num::json_number")]
    pub qty_ordered: Decimal,
    /// `qty_invoiced`
    #[serde(default, with = "num::json_number")]
    pub qty_invoiced: Decimal,
    /// `qty_shipped`
    #[serde(default, with = "num::json_number")]
    pub qty_shipped: Decimal,
    /// `qty_refunded`
    #[serde(default, with = "num::json_number")]
    pub qty_refunded: Decimal,
    /// `qty_canceled`
    #[serde(default, with = "num::json_number")]
    pub qty_canceled: Decimal,
}

/// An open order in a snapshot (its reservations are in the snapshot's reservation list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOrder {
    /// `increment_id`
    pub increment_id: OrderIncrementId,
    /// Website.
    pub website: WebsiteCode,
    /// `state` (default processing)
    #[serde(default = "processing")]
    pub state: OrderState,
    /// Items.
    pub items: Vec<SnapshotOrderItem>,
}

fn processing() -> OrderState {
    OrderState::Processing
}

/// What a preview starts from: the inventory facts of one instance. Everything is optional;
/// the install defaults (source `default`, stock 1, website `base`) are always there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Configuration values by path (`cataloginventory/item_options/min_qty` …).
    pub config: BTreeMap<String, String>,
    /// Websites besides `base`.
    pub websites: Vec<WebsiteCode>,
    /// Sources besides `default`.
    pub sources: Vec<SnapshotSource>,
    /// Stocks besides 1, with their websites.
    pub stocks: Vec<SnapshotStock>,
    /// Stock-source links besides `default`→1.
    pub links: Vec<SnapshotLink>,
    /// Catalog products with their stock configuration.
    pub products: Vec<SnapshotProduct>,
    /// Source items (absolute quantities).
    pub source_items: Vec<SourceItem>,
    /// Reservations.
    pub reservations: Vec<SnapshotReservation>,
    /// Open orders (so that later shipments, cancels and refunds have something to act on).
    pub orders: Vec<SnapshotOrder>,
}

/// A line of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// SKU.
    pub sku: Sku,
    /// Quantity.
    #[serde(with = "num::json_number")]
    pub qty: Decimal,
}

/// A pending event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PreviewEvent {
    /// A POS stock push: absolute quantity of a SKU at a source.
    PosStockPush {
        /// The source.
        source_code: SourceCode,
        /// The SKU.
        sku: Sku,
        /// Absolute quantity.
        #[serde(with = "num::json_number")]
        quantity: Decimal,
        /// In stock (default: quantity > 0).
        #[serde(default)]
        in_stock: Option<bool>,
    },
    /// A web order placed on a website.
    OrderPlaced {
        /// Increment id (generated when absent).
        #[serde(default)]
        increment_id: Option<OrderIncrementId>,
        /// Website.
        website: WebsiteCode,
        /// Lines.
        items: Vec<EventLine>,
    },
    /// A shipment from a source (all remaining items when `items` is absent).
    Shipment {
        /// The order.
        increment_id: OrderIncrementId,
        /// The source (Magento's fallback when absent).
        #[serde(default)]
        source_code: Option<SourceCode>,
        /// Lines.
        #[serde(default)]
        items: Option<Vec<EventLine>>,
    },
    /// An invoice (virtual items are deducted at this point).
    Invoice {
        /// The order.
        increment_id: OrderIncrementId,
        /// Lines.
        #[serde(default)]
        items: Option<Vec<EventLine>>,
    },
    /// A cancellation.
    Cancel {
        /// The order.
        increment_id: OrderIncrementId,
    },
    /// A credit memo.
    Refund {
        /// The order.
        increment_id: OrderIncrementId,
        /// Lines.
        #[serde(default)]
        items: Option<Vec<EventLine>>,
        /// SKUs returned to stock.
        #[serde(default)]
        return_to_stock: Vec<Sku>,
    },
    /// A raw reservation (e.g. a custom POS reservation of our Magento module).
    Reservation {
        /// Stock.
        stock_id: StockId,
        /// SKU.
        sku: Sku,
        /// Signed quantity.
        #[serde(with = "num::json_number")]
        quantity: Decimal,
        /// Metadata JSON text.
        #[serde(default)]
        metadata: Option<String>,
    },
}

/// A preview request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewRequest {
    /// The starting state.
    #[serde(default)]
    pub snapshot: Snapshot,
    /// The events, in order.
    pub events: Vec<PreviewEvent>,
    /// SKUs to report (default: every SKU the snapshot's source items and the events mention).
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Run the salability queue after each event (default true).
    #[serde(default = "yes")]
    pub process_queues: bool,
}

/// The salable quantity of a SKU in a stock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalableLine {
    /// SKU.
    pub sku: Sku,
    /// Stock.
    pub stock_id: StockId,
    /// `GetProductSalableQty` (absent when Magento would answer with an error).
    #[serde(with = "num::json_number::option")]
    pub salable_qty: Option<Decimal>,
    /// `IsProductSalable`.
    pub is_salable: bool,
    /// Σ reservations.
    #[serde(with = "num::json_number")]
    pub reservations: Decimal,
}

/// The outcome of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewStep {
    /// Position in the request.
    pub index: usize,
    /// Whether Magento would accept the event.
    pub ok: bool,
    /// Magento's message when it would not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Salable quantities after the event.
    pub salable: Vec<SalableLine>,
}

/// A preview answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewResponse {
    /// Salable quantities before the first event.
    pub initial: Vec<SalableLine>,
    /// One step per event.
    pub steps: Vec<PreviewStep>,
}

impl Inventory {
    /// Builds an instance from a snapshot (then fully reindexed).
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Inventory, MagentoError> {
        let mut inv = Inventory::new();
        for (path, value) in &snapshot.config {
            inv.set_config("default", path, value);
        }
        for w in &snapshot.websites {
            if w.as_str() != "base" {
                inv.create_website(w, None)?;
            }
        }
        for s in &snapshot.sources {
            if s.source_code.is_default() {
                continue;
            }
            inv.save_source(&SourceInput {
                source_code: Some(s.source_code.as_str().to_owned()),
                name: Some(
                    s.name
                        .clone()
                        .unwrap_or_else(|| s.source_code.as_str().to_owned()),
                ),
                enabled: Some(s.enabled),
                country_id: Some("US".to_owned()),
                postcode: Some("00000".to_owned()),
                ..SourceInput::default()
            })?;
        }
        for st in &snapshot.stocks {
            if st.stock_id.is_default() {
                continue;
            }
            inv.save_stock(&StockInput {
                stock_id: Some(i64::from(st.stock_id)),
                name: Some(
                    st.name
                        .clone()
                        .unwrap_or_else(|| format!("Stock {}", st.stock_id)),
                ),
                sales_channels: Some(
                    st.websites
                        .iter()
                        .map(|w| SalesChannelInput {
                            channel_type: Some("website".to_owned()),
                            code: Some(w.as_str().to_owned()),
                        })
                        .collect(),
                ),
            })?;
        }
        let links: Vec<LinkInput> = snapshot
            .links
            .iter()
            .filter(|l| !(l.stock_id.is_default() && l.source_code.is_default()))
            .map(|l| LinkInput {
                stock_id: Some(i64::from(l.stock_id)),
                source_code: Some(l.source_code.as_str().to_owned()),
                priority: Some(i64::from(l.priority)),
            })
            .collect();
        if !links.is_empty() {
            inv.save_stock_source_links(&links)?;
        }
        for p in &snapshot.products {
            let mut input =
                super::catalog::ProductInput::new(p.sku.clone(), p.product_type.clone());
            let mut fields = p.stock_item.clone();
            // Quantities come from the snapshot's source items, not from the legacy row.
            fields.qty = None;
            fields.is_in_stock = fields.is_in_stock.or(Some(true));
            input.stock_data = Some(fields);
            input.children = p.children.clone();
            inv.create_product(&input)?;
        }
        // A product with `is_in_stock` may have got a default item from the legacy sync;
        // the snapshot's items are authoritative.
        let synced: Vec<(SourceCode, Sku)> = inv
            .source_items()
            .into_iter()
            .filter(|i| {
                !snapshot
                    .source_items
                    .iter()
                    .any(|s| s.source_code == i.source_code && s.sku.key() == i.sku.key())
            })
            .map(|i| (i.source_code, i.sku))
            .collect();
        if !synced.is_empty() {
            inv.delete_source_items(&synced)?;
        }
        if !snapshot.source_items.is_empty() {
            inv.write_source_items(&snapshot.source_items);
        }
        inv.insert_reservations(
            &snapshot
                .reservations
                .iter()
                .map(|r| NewReservation {
                    stock_id: r.stock_id,
                    sku: r.sku.clone(),
                    quantity: r.quantity,
                    metadata: r.metadata.clone(),
                })
                .collect::<Vec<_>>(),
        );
        let now = Timestamp::from_offset_seconds(0);
        for o in &snapshot.orders {
            let id = inv.create_order(
                &SeedOrder {
                    increment_id: o.increment_id.clone(),
                    state: o.state,
                    website: o.website.clone(),
                    items: o
                        .items
                        .iter()
                        .map(|i| SeedItem {
                            sku: i.sku.clone(),
                            qty: i.qty_ordered,
                            product_type: inv
                                .product(&i.sku)
                                .map(|p| p.product_type.as_str().to_owned())
                                .unwrap_or_else(|| "simple".to_owned()),
                            child_sku: None,
                        })
                        .collect(),
                    placement: Placement::RepositorySave,
                },
                &now,
            )?;
            inv.set_item_progress(id, &o.items);
        }
        inv.reindex(None);
        Ok(inv)
    }

    /// Exports the facts a [`Snapshot`] holds (configuration, websites, sources, stocks,
    /// links, products with their stock configuration, source items, reservations, orders that
    /// are not complete, closed or canceled).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            config: self
                .config
                .values()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            websites: self
                .websites
                .iter()
                .filter(|w| w.code.as_str() != "base")
                .map(|w| w.code.clone())
                .collect(),
            sources: self
                .sources
                .values()
                .filter(|s| !s.source_code.is_default())
                .map(|s| SnapshotSource {
                    source_code: s.source_code.clone(),
                    name: Some(s.name.clone()),
                    enabled: s.enabled,
                })
                .collect(),
            stocks: self
                .list_stocks()
                .into_iter()
                .filter(|s| !s.stock_id.is_default())
                .map(|s| SnapshotStock {
                    stock_id: s.stock_id,
                    name: Some(s.name),
                    websites: s
                        .sales_channels
                        .iter()
                        .filter_map(|c| WebsiteCode::parse(&c.code).ok())
                        .collect(),
                })
                .collect(),
            links: self
                .links
                .iter()
                .filter(|l| !(l.stock_id.is_default() && l.source_code.is_default()))
                .map(|l| SnapshotLink {
                    stock_id: l.stock_id,
                    source_code: l.source_code.clone(),
                    priority: l.priority,
                })
                .collect(),
            products: self
                .products
                .values()
                .map(|p| SnapshotProduct {
                    sku: p.sku.clone(),
                    product_type: p.product_type.clone(),
                    stock_item: StockItemFields::from_item(&p.stock_item),
                    children: p.children.clone(),
                })
                .collect(),
            source_items: self.source_items(),
            reservations: self
                .reservations
                .iter()
                .map(|r| SnapshotReservation {
                    stock_id: r.stock_id,
                    sku: r.sku.clone(),
                    quantity: r.quantity,
                    metadata: r.metadata.clone(),
                })
                .collect(),
            orders: self
                .sales
                .orders
                .iter()
                .filter(|o| !o.state.is_final())
                .map(|o| SnapshotOrder {
                    increment_id: o.increment_id.clone(),
                    website: o.website.clone(),
                    state: o.state,
                    items: o
                        .items
                        .iter()
                        .filter(|i| i.parent_item_id.is_none())
                        .filter_map(|i| {
                            Some(SnapshotOrderItem {
                                sku: Sku::parse(&i.sku).ok()?,
                                qty_ordered: i.qty_ordered,
                                qty_invoiced: i.qty_invoiced,
                                qty_shipped: i.qty_shipped,
                                qty_refunded: i.qty_refunded,
                                qty_canceled: i.qty_canceled,
                            })
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn set_item_progress(&mut self, id: super::sales::OrderId, items: &[SnapshotOrderItem]) {
        if let Some(order) = self.sales.orders.iter_mut().find(|o| o.entity_id == id) {
            for (item, progress) in order.items.iter_mut().zip(items) {
                item.qty_invoiced = progress.qty_invoiced;
                item.qty_shipped = progress.qty_shipped;
                item.qty_refunded = progress.qty_refunded;
                item.qty_canceled = progress.qty_canceled;
            }
        }
    }

    fn salable_lines(&self, skus: &[Sku]) -> Vec<SalableLine> {
        let mut out = Vec::new();
        for sku in skus {
            for stock in self.stocks.keys() {
                if !self.is_product_assigned_to_stock(sku.as_str(), *stock) {
                    continue;
                }
                out.push(SalableLine {
                    sku: sku.clone(),
                    stock_id: *stock,
                    salable_qty: self.get_product_salable_qty(sku.as_str(), *stock).ok(),
                    is_salable: self.is_product_salable(sku.as_str(), *stock),
                    reservations: self.reservations_quantity(sku.as_str(), *stock),
                });
            }
        }
        out
    }

    fn apply_preview_event(
        &mut self,
        event: &PreviewEvent,
        now: &Timestamp,
    ) -> Result<(), MagentoError> {
        let order_of = |inv: &Inventory, inc: &OrderIncrementId| {
            inv.order_by_increment_id(inc.as_str())
                .map(|o| o.entity_id)
                .ok_or_else(|| {
                    MagentoError::no_such_entity(Phrase::new(
                        "The entity that was requested doesn't exist. Verify the entity and try again.",
                    ))
                })
        };
        let lines = |items: &Option<Vec<EventLine>>| {
            items.as_ref().map(|list| {
                list.iter()
                    .map(|l| DocumentLine {
                        item: ItemRef::Sku(l.sku.as_str().to_owned()),
                        qty: Some(l.qty),
                    })
                    .collect::<Vec<_>>()
            })
        };
        match event {
            PreviewEvent::PosStockPush {
                source_code,
                sku,
                quantity,
                in_stock,
            } => self.save_source_items(&[SourceItemInput::new(
                sku,
                source_code,
                *quantity,
                in_stock.unwrap_or(*quantity > Decimal::ZERO),
            )]),
            PreviewEvent::OrderPlaced {
                increment_id,
                website,
                items,
            } => self
                .place_order(
                    &PlaceOrderRequest {
                        increment_id: increment_id.clone(),
                        website: website.clone(),
                        store: None,
                        lines: items
                            .iter()
                            .map(|l| OrderLine::Product {
                                sku: l.sku.clone(),
                                qty: l.qty,
                            })
                            .collect(),
                    },
                    now,
                )
                .map(|_| ()),
            PreviewEvent::Shipment {
                increment_id,
                source_code,
                items,
            } => {
                let id = order_of(self, increment_id)?;
                self.ship(id, lines(items).as_deref(), source_code.as_ref(), now)
                    .map(|_| ())
            }
            PreviewEvent::Invoice {
                increment_id,
                items,
            } => {
                let id = order_of(self, increment_id)?;
                self.invoice(id, lines(items).as_deref(), true, now)
                    .map(|_| ())
            }
            PreviewEvent::Cancel { increment_id } => {
                let id = order_of(self, increment_id)?;
                if self.cancel(id, now)? {
                    Ok(())
                } else {
                    Err(MagentoError::localized(Phrase::new(
                        "The order cannot be canceled.",
                    )))
                }
            }
            PreviewEvent::Refund {
                increment_id,
                items,
                return_to_stock,
            } => {
                let id = order_of(self, increment_id)?;
                let rts = if return_to_stock.is_empty() {
                    ReturnToStock::None
                } else {
                    ReturnToStock::Items(
                        return_to_stock
                            .iter()
                            .map(|s| ItemRef::Sku(s.as_str().to_owned()))
                            .collect(),
                    )
                };
                self.refund(id, lines(items).as_deref(), &rts, now)
                    .map(|_| ())
            }
            PreviewEvent::Reservation {
                stock_id,
                sku,
                quantity,
                metadata,
            } => self
                .append_reservations(&[NewReservation {
                    stock_id: *stock_id,
                    sku: sku.clone(),
                    quantity: *quantity,
                    metadata: metadata.clone(),
                }])
                .map(|_| ()),
        }
    }
}

/// Runs a preview. Fails only when the snapshot itself is invalid; events Magento would refuse
/// are reported in their step and leave the state unchanged.
pub fn preview(request: &PreviewRequest) -> Result<PreviewResponse, MagentoError> {
    let mut inv = Inventory::from_snapshot(&request.snapshot)?;
    let mut skus: Vec<Sku> = request.skus.clone();
    if skus.is_empty() {
        let mut push = |s: &Sku| {
            if !skus.iter().any(|k| k.key() == s.key()) {
                skus.push(s.clone());
            }
        };
        for i in &request.snapshot.source_items {
            push(&i.sku);
        }
        for e in &request.events {
            match e {
                PreviewEvent::PosStockPush { sku, .. } | PreviewEvent::Reservation { sku, .. } => {
                    push(sku)
                }
                PreviewEvent::OrderPlaced { items, .. } => items.iter().for_each(|l| push(&l.sku)),
                PreviewEvent::Shipment { items, .. }
                | PreviewEvent::Invoice { items, .. }
                | PreviewEvent::Refund { items, .. } => {
                    items.iter().flatten().for_each(|l| push(&l.sku))
                }
                PreviewEvent::Cancel { .. } => {}
            }
        }
    }
    let initial = inv.salable_lines(&skus);
    let mut steps = Vec::with_capacity(request.events.len());
    for (index, event) in request.events.iter().enumerate() {
        let now = Timestamp::from_offset_seconds(index as u64 + 1);
        let before = inv.clone();
        let outcome = inv.apply_preview_event(event, &now);
        let error = match outcome {
            Ok(()) => None,
            Err(e) => {
                inv = before;
                Some(e.rendered())
            }
        };
        if request.process_queues {
            inv.process_queue("inventory.reservations.updateSalabilityStatus", None);
        }
        steps.push(PreviewStep {
            index,
            ok: error.is_none(),
            error,
            salable: inv.salable_lines(&skus),
        });
    }
    Ok(PreviewResponse { initial, steps })
}

/// JSON text in, JSON text out, for the Magento admin (through `tillbridge-wasm`): a
/// [`PreviewResponse`], or `{"errors": [...]}` for malformed JSON, or Magento's error body
/// (`{"message", "parameters", "errors"}`) when the snapshot itself is refused.
pub fn preview_json(request_json: &str) -> String {
    let answer = match serde_json::from_str::<PreviewRequest>(request_json) {
        Err(e) => serde_json::json!({"errors": [{
            "field": format!("line {} column {}", e.line(), e.column()),
            "message": e.to_string(),
        }]}),
        Ok(req) => match preview(&req) {
            Ok(resp) => serde_json::to_value(resp).unwrap_or_else(
                |e| serde_json::json!({"errors": [{"field": "", "message": e.to_string()}]}),
            ),
            Err(e) => e.rest_body(),
        },
    };
    answer.to_string()
}
