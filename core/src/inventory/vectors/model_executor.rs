//! [`ModelExecutor`]: runs vector ops and checks in-process against an [`Inventory`].
//!
//! Ops and checks with a `rest` form (and `rest_call`s) go through [`webapi::dispatch`], the
//! way the HTTP runner sends them to the emulator; everything else calls the model's service
//! methods directly (the "control API").

// Failures are rich, cold-path reports (raw and rendered message, REST body); boxing them
// would only add noise to every executor.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::{
    Check, IdOrAlias, LineSpec, Op, OpExecutor, OpFailure, OpKind, OpOutput, OrderRefs,
    PlaceItemSpec, Query, check_value_from_rest, rest_request_for_check, rest_request_for_op,
};
use crate::inventory::catalog::ProductInput;
use crate::inventory::config::StockItemFields;
use crate::inventory::error::MagentoError;
use crate::inventory::ids::{
    OrderIncrementId, ProductType, Sku, SourceCode, StockId, StoreCode, Timestamp, WebsiteCode,
};
use crate::inventory::model::{BundleOption, BundleSelection, Inventory, ShipmentType};
use crate::inventory::num;
use crate::inventory::reservations::{NewReservation, ReservationFilter};
use crate::inventory::sales::{
    CreditmemoId, DocumentLine, ItemRef, OrderId, OrderLine, OrderState, PlaceOrderRequest,
    Placement, ReturnToStock, SeedItem, SeedOrder, ShipmentId,
};
use crate::inventory::search::{FilterGroup, SearchCriteria, SortOrder};
use crate::inventory::ssa::{InventoryRequest, ItemRequest};
use crate::inventory::structure::{LinkInput, SalesChannelInput, SourceInput, StockInput};
use crate::inventory::webapi::{self, RestResponse};

/// Executes vectors against an in-process [`Inventory`] (fresh install defaults).
#[derive(Debug, Clone)]
pub struct ModelExecutor {
    /// The instance under test.
    pub inventory: Inventory,
    clock: u64,
    orders: BTreeMap<String, OrderId>,
    shipments: BTreeMap<String, ShipmentId>,
    creditmemos: BTreeMap<String, CreditmemoId>,
}

impl Default for ModelExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelExecutor {
    /// A fresh instance.
    pub fn new() -> Self {
        Self {
            inventory: Inventory::new(),
            clock: 0,
            orders: BTreeMap::new(),
            shipments: BTreeMap::new(),
            creditmemos: BTreeMap::new(),
        }
    }

    fn now(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp::from_offset_seconds(self.clock)
    }

    fn order_id(&self, reference: &str) -> Result<OrderId, OpFailure> {
        self.orders
            .get(reference)
            .copied()
            .or_else(|| {
                self.inventory
                    .order_by_increment_id(reference)
                    .map(|o| o.entity_id)
            })
            .ok_or_else(|| plain(format!("unknown order reference \"{reference}\"")))
    }

    fn website_for(
        &self,
        website: Option<&str>,
        store: Option<&str>,
        cart: Option<&str>,
    ) -> Result<WebsiteCode, OpFailure> {
        if let Some(w) = website {
            return website_code(w);
        }
        if let Some(s) = store {
            let s = if s == "default" { "default" } else { s };
            if let Some(w) = self.inventory.store_website(s) {
                return Ok(w);
            }
        }
        if let Some(w) = cart
            .and_then(|c| self.inventory.cart(c))
            .and_then(|c| c.website.clone())
        {
            return Ok(w);
        }
        Ok(WebsiteCode::base())
    }

    fn dispatch(&mut self, request: &webapi::RestRequest) -> RestResponse {
        let now = self.now();
        webapi::dispatch(&mut self.inventory, request, &now)
    }
}

impl OrderRefs for ModelExecutor {
    fn order_entity_id(&self, reference: &str) -> Option<u64> {
        self.order_id(reference).ok().map(|o| o.0)
    }
}

fn plain(message: String) -> OpFailure {
    OpFailure {
        rendered: message.clone(),
        message,
        ..OpFailure::default()
    }
}

fn failure(e: MagentoError) -> OpFailure {
    OpFailure {
        http_status: Some(e.http_status()),
        message: e.message.raw().to_owned(),
        rendered: e.rendered(),
        parameters: e.message.has_params().then(|| e.message.params_json()),
        body: Some(e.rest_body()),
        exception: Some(e.exception_class().to_owned()),
        localized: e.kind.is_localized(),
        unsupported: false,
    }
}

fn sku(text: &str) -> Result<Sku, OpFailure> {
    Sku::parse(text).map_err(|e| plain(format!("invalid SKU \"{text}\": {e}")))
}

fn source_code(text: &str) -> Result<SourceCode, OpFailure> {
    SourceCode::parse(text).map_err(|e| plain(format!("invalid source code \"{text}\": {e}")))
}

fn website_code(text: &str) -> Result<WebsiteCode, OpFailure> {
    WebsiteCode::parse(text).map_err(|e| plain(format!("invalid website \"{text}\": {e}")))
}

fn stock(id: &IdOrAlias) -> Result<StockId, OpFailure> {
    id.id()
        .and_then(|i| StockId::parse(i).ok())
        .ok_or_else(|| plain(format!("invalid stock id {id}")))
}

fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(_) | Value::String(_) => num::decimal_from_json(v).map(|d| !d.is_zero()),
        _ => None,
    }
}

/// Stock-item keys as fixtures write them (`true`, `1`, `8.5`).
fn stock_fields(map: &Map<String, Value>) -> Result<StockItemFields, OpFailure> {
    let mut f = StockItemFields::default();
    for (k, v) in map {
        let b =
            || loose_bool(v).ok_or_else(|| plain(format!("stock_item.{k}: not a boolean: {v}")));
        let d = || {
            num::decimal_from_json(v)
                .ok_or_else(|| plain(format!("stock_item.{k}: not a number: {v}")))
        };
        match k.as_str() {
            "qty" => f.qty = Some(d()?),
            "is_in_stock" => f.is_in_stock = Some(b()?),
            "manage_stock" => f.manage_stock = Some(b()?),
            "use_config_manage_stock" => f.use_config_manage_stock = Some(b()?),
            "is_qty_decimal" => f.is_qty_decimal = Some(b()?),
            "min_qty" => f.min_qty = Some(d()?),
            "use_config_min_qty" => f.use_config_min_qty = Some(b()?),
            "backorders" => {
                f.backorders = Some(match v {
                    Value::Bool(x) => i64::from(*x),
                    other => {
                        use rust_decimal::prelude::ToPrimitive;
                        num::decimal_from_json(other)
                            .and_then(|x| x.to_i64())
                            .ok_or_else(|| plain(format!("stock_item.backorders: {other}")))?
                    }
                })
            }
            "use_config_backorders" => f.use_config_backorders = Some(b()?),
            "min_sale_qty" => f.min_sale_qty = Some(d()?),
            "use_config_min_sale_qty" => f.use_config_min_sale_qty = Some(b()?),
            "max_sale_qty" => f.max_sale_qty = Some(d()?),
            "use_config_max_sale_qty" => f.use_config_max_sale_qty = Some(b()?),
            "enable_qty_increments" => f.enable_qty_increments = Some(b()?),
            "use_config_enable_qty_inc" => f.use_config_enable_qty_inc = Some(b()?),
            "qty_increments" => f.qty_increments = Some(d()?),
            "use_config_qty_increments" => f.use_config_qty_increments = Some(b()?),
            other => return Err(plain(format!("unknown stock_item field \"{other}\""))),
        }
    }
    Ok(f)
}

fn lines(items: &Option<Vec<LineSpec>>) -> Option<Vec<DocumentLine>> {
    items.as_ref().map(|list| {
        list.iter()
            .map(|l| DocumentLine {
                item: match (&l.sku, &l.parent_sku) {
                    (Some(s), Some(p)) => ItemRef::Child {
                        sku: s.clone(),
                        parent_sku: p.clone(),
                    },
                    (Some(s), None) => ItemRef::Sku(s.clone()),
                    (None, _) => ItemRef::Sku(String::new()),
                },
                qty: l.qty,
            })
            .collect()
    })
}

fn criteria(args: &Value) -> SearchCriteria {
    let mut c = SearchCriteria::default();
    if let Some(filter) = args.get("filter").and_then(Value::as_object) {
        for (field, value) in filter {
            c.filter_groups.push(FilterGroup {
                filters: vec![crate::inventory::search::Filter {
                    field: field.clone(),
                    value: match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                    condition_type: "eq".to_owned(),
                }],
            });
        }
    }
    if let Some(sort) = args.get("sort").and_then(Value::as_array) {
        for s in sort {
            c.sort_orders.push(SortOrder {
                field: s
                    .get("field")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                direction: s
                    .get("direction")
                    .and_then(Value::as_str)
                    .unwrap_or("ASC")
                    .to_owned(),
            });
        }
    }
    let n = |k: &str| {
        args.get(k)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
    };
    c.page_size = n("page_size");
    c.current_page = n("current_page");
    c
}

impl ModelExecutor {
    fn place_lines(&self, items: &[PlaceItemSpec]) -> Result<Vec<OrderLine>, OpFailure> {
        let mut out = Vec::new();
        for item in items {
            let parent = sku(&item.sku)?;
            let qty = item.qty.unwrap_or(Decimal::ONE);
            if let Some(child) = &item.child_sku {
                out.push(OrderLine::Configurable {
                    parent,
                    child: sku(child)?,
                    qty,
                });
            } else if !item.bundle_options_qty.is_empty() {
                out.push(OrderLine::Bundle {
                    sku: parent,
                    qty,
                    selections: item
                        .bundle_options_qty
                        .iter()
                        .map(|(s, q)| Ok((sku(s)?, *q)))
                        .collect::<Result<_, OpFailure>>()?,
                });
            } else if !item.bundle_selections.is_empty() {
                let product = self.inventory.product(&parent).cloned();
                let mut selections = Vec::new();
                for s in &item.bundle_selections {
                    let child = sku(s)?;
                    let per = product
                        .as_ref()
                        .and_then(|p| {
                            p.bundle_options
                                .iter()
                                .flat_map(|o| o.links.iter())
                                .find(|l| l.sku.key() == child.key())
                                .map(|l| l.qty)
                        })
                        .unwrap_or(Decimal::ONE);
                    selections.push((child, per));
                }
                out.push(OrderLine::Bundle {
                    sku: parent,
                    qty,
                    selections,
                });
            } else if !item.child_skus.is_empty() {
                // AddGroupedProductToCartFixture: one of each child (FORMAT note, derived).
                out.push(OrderLine::Grouped {
                    sku: parent,
                    children: item
                        .child_skus
                        .iter()
                        .map(|s| Ok((sku(s)?, Decimal::ONE)))
                        .collect::<Result<_, OpFailure>>()?,
                });
            } else {
                out.push(OrderLine::Product { sku: parent, qty });
            }
        }
        Ok(out)
    }

    fn create_product(&mut self, spec: &Map<String, Value>) -> Result<OpOutput, OpFailure> {
        let v = Value::Object(spec.clone());
        let sku_text = v
            .get("sku")
            .and_then(Value::as_str)
            .ok_or_else(|| plain("create_product without sku".to_owned()))?;
        let type_text = v.get("type").and_then(Value::as_str).unwrap_or("simple");
        let product_type = ProductType::parse(type_text)
            .ok_or_else(|| plain(format!("unknown product type \"{type_text}\"")))?;
        let mut input = ProductInput::new(sku(sku_text)?, product_type);
        input.product_id = v.get("product_id").and_then(Value::as_u64);
        input.stock_data = match v.get("stock_item").and_then(Value::as_object) {
            Some(map) => Some(stock_fields(map)?),
            // `#[DataFixture(ProductFixture)]` defaults (Magento\Catalog\Test\Fixture\Product).
            None if v.get("fixture_alias").is_some() => Some(StockItemFields {
                use_config_manage_stock: Some(true),
                qty: Some(Decimal::from(100)),
                is_qty_decimal: Some(false),
                is_in_stock: Some(true),
                ..StockItemFields::default()
            }),
            None => None,
        };
        for c in super::strings(&v, "children") {
            input.children.push(sku(&c)?);
        }
        if let Some(links) = v.get("links").and_then(Value::as_array) {
            for l in links {
                let child = l.get("sku").and_then(Value::as_str).unwrap_or("");
                let qty = l
                    .get("qty")
                    .and_then(num::decimal_from_json)
                    .unwrap_or(Decimal::ONE);
                input.grouped.push((sku(child)?, qty));
            }
        }
        if let Some(options) = v.get("options").and_then(Value::as_array) {
            for o in options {
                let mut links = Vec::new();
                for l in o
                    .get("links")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    links.push(BundleSelection {
                        sku: sku(l.get("sku").and_then(Value::as_str).unwrap_or(""))?,
                        qty: l
                            .get("qty")
                            .and_then(num::decimal_from_json)
                            .unwrap_or(Decimal::ONE),
                        can_change_quantity: l
                            .get("can_change_quantity")
                            .and_then(loose_bool)
                            .unwrap_or(false),
                    });
                }
                input.bundle_options.push(BundleOption {
                    required: o.get("required").and_then(loose_bool).unwrap_or(true),
                    links,
                });
            }
        }
        if v.get("shipment_type").and_then(Value::as_str) == Some("separately") {
            input.shipment_type = ShipmentType::Separately;
        }
        match v.get("websites") {
            Some(Value::String(all)) if all == "all" => {
                input.websites = self
                    .inventory
                    .websites()
                    .iter()
                    .map(|w| w.code.clone())
                    .collect();
            }
            Some(Value::Array(list)) => {
                for w in list.iter().filter_map(Value::as_str) {
                    input.websites.push(website_code(w)?);
                }
            }
            _ => {}
        }
        let id = self.inventory.create_product(&input).map_err(failure)?;
        let from_legacy = v
            .get("default_source_item_from_legacy")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if from_legacy
            && self
                .inventory
                .source_item(&input.sku, &SourceCode::default_source())
                .is_none()
        {
            // Single-source sync of the legacy qty into a `default` item (FORMAT §2, derived;
            // product_virtual.php sets no stock data and is treated as qty 100).
            let qty = input
                .stock_data
                .as_ref()
                .and_then(|d| d.qty)
                .unwrap_or(Decimal::from(100));
            self.inventory
                .save_source_items(&[crate::inventory::source_items::SourceItemInput::new(
                    &input.sku,
                    &SourceCode::default_source(),
                    qty,
                    true,
                )])
                .map_err(failure)?;
        }
        Ok(OpOutput {
            result: Some(json!(id)),
            ..OpOutput::default()
        })
    }

    #[allow(clippy::too_many_lines)]
    fn apply_model(&mut self, op: &Op) -> Result<OpOutput, OpFailure> {
        let ok = || Ok(OpOutput::default());
        let inv = &mut self.inventory;
        match &op.kind {
            OpKind::Noop
            | OpKind::ApplyFixture { .. }
            | OpKind::Expect { .. }
            | OpKind::Capture { .. } => ok(),
            OpKind::CreateWebsite { code, store_code } => {
                let store = store_code
                    .as_deref()
                    .map(StoreCode::parse)
                    .transpose()
                    .map_err(|e| plain(e.to_string()))?;
                inv.create_website(&website_code(code)?, store.as_ref())
                    .map_err(failure)?;
                ok()
            }
            OpKind::DeleteWebsite { code } => {
                inv.delete_website(&website_code(code)?).map_err(failure)?;
                ok()
            }
            OpKind::CreateSource { fields } => {
                let v = Value::Object(fields.clone());
                let mut input = webapi::source_input(&v).map_err(failure)?;
                if input.name.is_none() {
                    // Test fixtures name generated sources after their code.
                    input.name = input.source_code.clone();
                }
                inv.save_source(&input).map_err(failure)?;
                ok()
            }
            OpKind::UpdateSource {
                source_code,
                fields,
            } => {
                let existing = inv.get_source(source_code).map_err(failure)?.clone();
                let mut v = serde_json::to_value(SourceInput::from_source(&existing))
                    .map_err(|e| plain(e.to_string()))?;
                if let Some(m) = v.as_object_mut() {
                    for (k, val) in fields {
                        m.insert(k.clone(), val.clone());
                    }
                }
                let input = webapi::source_input(&v).map_err(failure)?;
                inv.save_source(&input).map_err(failure)?;
                ok()
            }
            OpKind::CreateStock {
                stock_id,
                name,
                sales_channels,
                alias,
            } => {
                let channels = sales_channels.as_ref().map(|list| {
                    list.iter()
                        .map(|c| SalesChannelInput {
                            channel_type: c.get("type").and_then(Value::as_str).map(str::to_owned),
                            code: c.get("code").and_then(Value::as_str).map(str::to_owned),
                        })
                        .collect()
                });
                let id = inv
                    .save_stock(&StockInput {
                        stock_id: stock_id.id(),
                        name: name
                            .clone()
                            .or_else(|| alias.clone())
                            .or(Some(format!("stock-{stock_id}"))),
                        sales_channels: channels,
                    })
                    .map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(i64::from(id))),
                    created_stock_id: Some(i64::from(id)),
                    ..OpOutput::default()
                })
            }
            OpKind::DeleteStock { stock_id } => {
                let id = stock_id
                    .id()
                    .ok_or_else(|| plain(format!("unbound stock {stock_id}")))?;
                inv.delete_stock(id).map_err(failure)?;
                ok()
            }
            OpKind::SaveStockSourceLinks { links } => {
                let inputs: Vec<LinkInput> = links
                    .iter()
                    .map(|(s, c, p)| LinkInput {
                        stock_id: s.id(),
                        source_code: Some(c.clone()),
                        priority: Some(*p),
                    })
                    .collect();
                inv.save_stock_source_links(&inputs).map_err(failure)?;
                ok()
            }
            OpKind::DeleteStockSourceLinks { links } => {
                let pairs = links
                    .iter()
                    .map(|(s, c)| Ok((stock(s)?, source_code(c)?)))
                    .collect::<Result<Vec<_>, OpFailure>>()?;
                inv.delete_stock_source_links(&pairs).map_err(failure)?;
                ok()
            }
            OpKind::AssignSalesChannels {
                stock_id,
                websites,
                append,
            } => {
                let codes = websites
                    .iter()
                    .map(|w| website_code(w))
                    .collect::<Result<Vec<_>, _>>()?;
                inv.assign_sales_channels(stock(stock_id)?, &codes, *append)
                    .map_err(failure)?;
                ok()
            }
            OpKind::CreateProduct { spec } => {
                let spec = spec.clone();
                self.create_product(&spec)
            }
            OpKind::UpdateLegacyStockItem { sku: s, fields } => {
                inv.save_legacy_stock_item(&sku(s)?, &stock_fields(fields)?)
                    .map_err(failure)?;
                ok()
            }
            OpKind::AssignProductsToWebsites {
                skus,
                websites,
                replace,
            } => {
                let skus = skus.iter().map(|s| sku(s)).collect::<Result<Vec<_>, _>>()?;
                let websites = websites
                    .iter()
                    .map(|w| website_code(w))
                    .collect::<Result<Vec<_>, _>>()?;
                inv.assign_products_to_websites(&skus, &websites, *replace)
                    .map_err(failure)?;
                ok()
            }
            OpKind::RenameProductSku { from, to } => {
                inv.rename_product_sku(&sku(from)?, &sku(to)?)
                    .map_err(failure)?;
                ok()
            }
            OpKind::SaveSourceItems { items } => {
                let inputs = items
                    .iter()
                    .map(webapi::source_item_input)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failure)?;
                inv.save_source_items(&inputs).map_err(failure)?;
                ok()
            }
            OpKind::ResaveSourceItems { sku: s } => {
                inv.resave_source_items(&sku(s)?).map_err(failure)?;
                ok()
            }
            OpKind::DeleteSourceItems { items } => {
                let pairs = items
                    .iter()
                    .map(|(c, s)| Ok((source_code(c)?, sku(s)?)))
                    .collect::<Result<Vec<_>, OpFailure>>()?;
                inv.delete_source_items(&pairs).map_err(failure)?;
                ok()
            }
            OpKind::DecrementSourceItems { items } => {
                let list = items
                    .iter()
                    .map(|(c, s, q)| Ok((source_code(c)?, sku(s)?, *q)))
                    .collect::<Result<Vec<_>, OpFailure>>()?;
                inv.decrement_source_items(&list).map_err(failure)?;
                ok()
            }
            OpKind::BulkAssignSources { skus, source_codes } => {
                let skus = skus.iter().map(|s| sku(s)).collect::<Result<Vec<_>, _>>()?;
                let codes = source_codes
                    .iter()
                    .map(|c| source_code(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let n = inv.bulk_assign_sources(&skus, &codes).map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(n)),
                    ..OpOutput::default()
                })
            }
            OpKind::BulkUnassignSources { skus, source_codes } => {
                let skus = skus.iter().map(|s| sku(s)).collect::<Result<Vec<_>, _>>()?;
                let codes = source_codes
                    .iter()
                    .map(|c| source_code(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let n = inv.bulk_unassign_sources(&skus, &codes).map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(n)),
                    ..OpOutput::default()
                })
            }
            OpKind::BulkInventoryTransfer {
                skus,
                origin,
                destination,
                unassign,
            } => {
                let skus = skus.iter().map(|s| sku(s)).collect::<Result<Vec<_>, _>>()?;
                let r = inv
                    .bulk_inventory_transfer(
                        &skus,
                        &source_code(origin)?,
                        &source_code(destination)?,
                        *unassign,
                    )
                    .map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(r)),
                    ..OpOutput::default()
                })
            }
            OpKind::SetConfig { scope, path, value } => {
                inv.set_config(scope, path, value);
                ok()
            }
            OpKind::UpdateStockItemConfig { sku: s, fields, .. } => {
                let fields = stock_fields(fields)?;
                match op.via.as_deref() {
                    Some("StockItemRepository(legacy)") => {
                        inv.save_legacy_stock_item(&sku(s)?, &fields)
                    }
                    _ => inv.save_stock_item_configuration(&sku(s)?, &fields),
                }
                .map_err(failure)?;
                ok()
            }
            OpKind::AppendReservations { reservations } => {
                let mut list = Vec::new();
                for r in reservations {
                    let stock_id = r
                        .get("stock_id")
                        .and_then(Value::as_i64)
                        .and_then(|s| StockId::parse(s).ok())
                        .ok_or_else(|| plain(format!("reservation stock_id: {r}")))?;
                    list.push(NewReservation {
                        stock_id,
                        sku: sku(r.get("sku").and_then(Value::as_str).unwrap_or(""))?,
                        quantity: r
                            .get("quantity")
                            .and_then(num::decimal_from_json)
                            .ok_or_else(|| plain(format!("reservation quantity: {r}")))?,
                        metadata: match r.get("metadata") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(s)) => Some(s.clone()),
                            Some(other) => Some(other.to_string()),
                        },
                    });
                }
                let ids = inv.append_reservations(&list).map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(ids)),
                    ..OpOutput::default()
                })
            }
            OpKind::InsertReservationRow {
                stock_id,
                sku: s,
                quantity,
                metadata,
            } => {
                inv.insert_reservations(&[NewReservation {
                    stock_id: stock(stock_id)?,
                    sku: sku(s)?,
                    quantity: *quantity,
                    metadata: metadata.clone(),
                }]);
                ok()
            }
            OpKind::DeleteReservations { event_type, last } => {
                let filter = match event_type {
                    Some(t) => ReservationFilter::EventType(t.clone()),
                    None => ReservationFilter::All,
                };
                let n = inv.delete_reservations(&filter, *last);
                Ok(OpOutput {
                    result: Some(json!(n)),
                    ..OpOutput::default()
                })
            }
            OpKind::CreateCompensation { argument } => {
                let out = inv.create_compensations(std::slice::from_ref(argument));
                if out.exit_code == 255 {
                    return Err(plain(out.text));
                }
                Ok(OpOutput {
                    result: Some(json!(out.text)),
                    ..OpOutput::default()
                })
            }
            OpKind::Reindex { stock_ids } => {
                match stock_ids {
                    Some(ids) => {
                        let ids = ids.iter().map(stock).collect::<Result<Vec<_>, _>>()?;
                        inv.reindex(Some(&ids));
                    }
                    None => inv.reindex(None),
                }
                ok()
            }
            OpKind::ProcessQueue {
                consumer,
                max_messages,
            } => {
                let n = inv.process_queue(consumer, *max_messages);
                Ok(OpOutput {
                    result: Some(json!(n)),
                    ..OpOutput::default()
                })
            }
            OpKind::LegacyRevertProductsSale { website, items } => {
                let items = items
                    .iter()
                    .map(|(s, q)| Ok((sku(s)?, *q)))
                    .collect::<Result<Vec<_>, OpFailure>>()?;
                inv.legacy_revert_products_sale(&website_code(website)?, &items)
                    .map_err(failure)?;
                ok()
            }
            OpKind::LegacyBackItemQty {
                website,
                sku: s,
                qty,
            } => {
                inv.legacy_back_item_qty(&website_code(website)?, &sku(s)?, *qty)
                    .map_err(failure)?;
                ok()
            }
            OpKind::CreateCart {
                cart,
                reserved_order_id,
                website,
                store,
            } => {
                let website = match (website, store) {
                    (None, None) => None,
                    _ => Some(self.website_for(website.as_deref(), store.as_deref(), None)?),
                };
                let reserved = reserved_order_id
                    .as_deref()
                    .map(OrderIncrementId::parse)
                    .transpose()
                    .map_err(|e| plain(e.to_string()))?;
                let store = store
                    .as_deref()
                    .map(StoreCode::parse)
                    .transpose()
                    .map_err(|e| plain(e.to_string()))?;
                self.inventory.create_cart(cart, reserved, website, store);
                ok()
            }
            OpKind::AddToCart {
                cart,
                new_cart,
                website,
                store,
                sku: s,
                qty,
            } => {
                let website = self.website_for(website.as_deref(), store.as_deref(), Some(cart))?;
                if *new_cart {
                    self.inventory
                        .create_cart(cart, None, Some(website.clone()), None);
                }
                let total = self
                    .inventory
                    .add_to_cart(cart, &website, &sku(s)?, *qty)
                    .map_err(failure)?;
                Ok(OpOutput {
                    cart_item_qty: Some(num::decimal_to_json(total)),
                    ..OpOutput::default()
                })
            }
            OpKind::PlaceOrder {
                order,
                cart,
                website,
                store,
                items,
            } => {
                let website =
                    self.website_for(website.as_deref(), store.as_deref(), cart.as_deref())?;
                let increment_id = cart
                    .as_deref()
                    .and_then(|c| self.inventory.cart(c))
                    .and_then(|c| c.reserved_order_id.clone());
                let store = store.as_deref().and_then(|s| StoreCode::parse(s).ok());
                let request = PlaceOrderRequest {
                    increment_id,
                    website,
                    store,
                    lines: self.place_lines(items)?,
                };
                let now = self.now();
                let id = self
                    .inventory
                    .place_order(&request, &now)
                    .map_err(failure)?;
                self.orders.insert(order.clone(), id);
                Ok(OpOutput {
                    result: Some(json!(id.0)),
                    ..OpOutput::default()
                })
            }
            OpKind::CreateOrder {
                order,
                increment_id,
                state,
                website,
                via,
                items,
            } => {
                let seed = SeedOrder {
                    increment_id: OrderIncrementId::parse(increment_id)
                        .map_err(|e| plain(e.to_string()))?,
                    state: OrderState::parse(state)
                        .ok_or_else(|| plain(format!("unknown state {state}")))?,
                    website: website_code(website)?,
                    items: items
                        .iter()
                        .map(|i| {
                            Ok(SeedItem {
                                sku: sku(&i.sku)?,
                                qty: i.qty,
                                product_type: i.product_type.clone(),
                                child_sku: i.child_sku.as_deref().map(sku).transpose()?,
                            })
                        })
                        .collect::<Result<_, OpFailure>>()?,
                    placement: if via == "order_management_place" {
                        Placement::OrderManagement
                    } else {
                        Placement::RepositorySave
                    },
                };
                let now = self.now();
                let id = self.inventory.create_order(&seed, &now).map_err(failure)?;
                self.orders.insert(order.clone(), id);
                ok()
            }
            OpKind::PlaceExistingOrder { order } => {
                let id = self.order_id(order)?;
                self.inventory.place_existing_order(id).map_err(failure)?;
                ok()
            }
            OpKind::SetOrderItemSku {
                order,
                item,
                sku: s,
            } => {
                let id = self.order_id(order)?;
                self.inventory
                    .set_order_item_sku(id, item, s)
                    .map_err(failure)?;
                ok()
            }
            OpKind::Invoice {
                order,
                items,
                persist,
            } => {
                let id = self.order_id(order)?;
                let now = self.now();
                let lines = lines(items);
                let invoice = self
                    .inventory
                    .invoice(id, lines.as_deref(), *persist, &now)
                    .map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(invoice.0)),
                    ..OpOutput::default()
                })
            }
            OpKind::Ship {
                shipment,
                order,
                items,
                source_code: code,
            } => {
                let id = self.order_id(order)?;
                let now = self.now();
                let code = code.as_deref().map(source_code).transpose()?;
                let lines = lines(items);
                let s = self
                    .inventory
                    .ship(id, lines.as_deref(), code.as_ref(), &now)
                    .map_err(failure)?;
                if let Some(r) = shipment {
                    self.shipments.insert(r.clone(), s);
                }
                Ok(OpOutput {
                    result: Some(json!(s.0)),
                    ..OpOutput::default()
                })
            }
            OpKind::Cancel { order } => {
                let id = self.order_id(order)?;
                let now = self.now();
                let r = self.inventory.cancel(id, &now).map_err(failure)?;
                Ok(OpOutput {
                    result: Some(json!(r)),
                    ..OpOutput::default()
                })
            }
            OpKind::Refund {
                creditmemo,
                order,
                items,
                return_to_stock,
            } => {
                let id = self.order_id(order)?;
                let now = self.now();
                let rts = if return_to_stock.is_empty() {
                    ReturnToStock::None
                } else {
                    ReturnToStock::Items(
                        return_to_stock
                            .iter()
                            .map(|s| ItemRef::Sku(s.clone()))
                            .collect(),
                    )
                };
                let lines = lines(items);
                let memo = self
                    .inventory
                    .refund(id, lines.as_deref(), &rts, &now)
                    .map_err(failure)?;
                if let Some(r) = creditmemo {
                    self.creditmemos.insert(r.clone(), memo);
                }
                Ok(OpOutput {
                    result: Some(json!(memo.0)),
                    ..OpOutput::default()
                })
            }
            OpKind::ResaveCreditmemo { creditmemo } => {
                let id = self
                    .creditmemos
                    .get(creditmemo)
                    .copied()
                    .ok_or_else(|| plain(format!("unknown credit memo \"{creditmemo}\"")))?;
                self.inventory.resave_creditmemo(id).map_err(failure)?;
                ok()
            }
            OpKind::RestCall => Err(plain("rest_call without a rest form".to_owned())),
            OpKind::Unknown { name } => Err(OpFailure::unsupported(&format!("op \"{name}\""))),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn query_model(&mut self, check: &Check) -> Result<Value, OpFailure> {
        let inv = &self.inventory;
        Ok(match &check.query {
            Query::SalableQty { sku, stock_id } => num::decimal_to_json(
                inv.get_product_salable_qty(sku, stock(stock_id)?)
                    .map_err(failure)?,
            ),
            Query::IsSalable { sku, stock_id } => {
                json!(inv.is_product_salable(sku, stock(stock_id)?))
            }
            Query::IsSalableForRequestedQty { sku, stock_id, qty } => {
                let r = inv
                    .is_product_salable_for_requested_qty(sku, stock(stock_id)?, *qty)
                    .map_err(failure)?;
                json!({"salable": r.salable, "errors": r.errors})
            }
            Query::StockIndex { sku, stock_id } => match inv.stock_item_data(sku, stock(stock_id)?)
            {
                Some(row) => json!({
                    "quantity": num::decimal_to_json(row.quantity),
                    "is_salable": u8::from(row.is_salable),
                }),
                None => Value::Null,
            },
            Query::SourceItemQty {
                sku: s,
                source_code: c,
            } => inv
                .source_item(&sku(s)?, &source_code(c)?)
                .map(|i| num::decimal_to_json(i.quantity))
                .unwrap_or(Value::Null),
            Query::SourceItemStatus {
                sku: s,
                source_code: c,
            } => inv
                .source_item(&sku(s)?, &source_code(c)?)
                .map(|i| json!(i.status.as_int()))
                .unwrap_or(Value::Null),
            Query::SourceCodesForSku { sku: s } => json!(
                inv.source_items_for_sku(&sku(s)?)
                    .iter()
                    .map(|i| i.source_code.as_str().to_owned())
                    .collect::<Vec<_>>()
            ),
            Query::SourceItemsList { args } => {
                let r = inv.search_source_items(&criteria(args));
                json!({"items": r.items, "total_count": r.total_count, "search_criteria": r.search_criteria})
            }
            Query::StockSourceLinksList { args } => {
                let r = inv.search_stock_source_links(&criteria(args));
                json!({"items": r.items, "total_count": r.total_count, "search_criteria": r.search_criteria})
            }
            Query::SourcesAssignedToStock { stock_id } => {
                serde_json::to_value(inv.sources_assigned_to_stock(stock(stock_id)?))
                    .map_err(|e| plain(e.to_string()))?
            }
            Query::ReservationsSum { sku, stock_id } => {
                num::decimal_to_json(inv.reservations_quantity(sku, stock(stock_id)?))
            }
            Query::ReservationsCount { sku: s } => {
                let key = sku(s)?.key();
                json!(
                    inv.reservations()
                        .iter()
                        .filter(|r| r.sku.key() == key)
                        .count()
                )
            }
            Query::ReservationsExist { sku: s } => {
                let key = sku(s)?.key();
                json!(inv.reservations().iter().any(|r| r.sku.key() == key))
            }
            Query::LastReservationMetadata => inv
                .reservations()
                .iter()
                .max_by_key(|r| r.reservation_id)
                .and_then(|r| r.metadata.clone())
                .map(Value::String)
                .unwrap_or(Value::Null),
            Query::OrderItemQtyBackordered { order, sku: s } => {
                let id = self.order_id(order)?;
                let o = inv.order(id).map_err(failure)?;
                o.items
                    .iter()
                    .find(|i| i.sku.eq_ignore_ascii_case(s))
                    .and_then(|i| i.qty_backordered)
                    .map(num::decimal_to_json)
                    .unwrap_or(Value::Null)
            }
            Query::OrderStatusChanged { order } => {
                let id = self.order_id(order)?;
                let o = inv.order(id).map_err(failure)?;
                json!(o.previous_status != o.status)
            }
            Query::Shipment { shipment } => {
                let id = self
                    .shipments
                    .get(shipment)
                    .copied()
                    .ok_or_else(|| plain(format!("unknown shipment \"{shipment}\"")))?;
                let s = inv.shipment(id).map_err(failure)?;
                json!({
                    "entity_id": s.entity_id.0,
                    "order_id": s.order_id.0,
                    "total_qty": num::four_dp_string(s.total_qty),
                    "extension_attributes": {"source_code": s.source_code.as_str()},
                })
            }
            Query::CheckQuoteItemQty {
                sku,
                website,
                item_qty,
                qty_to_check,
                ..
            } => serde_json::to_value(
                inv.check_quote_item_qty(sku, &website_code(website)?, *item_qty, *qty_to_check)
                    .map_err(failure)?,
            )
            .map_err(|e| plain(e.to_string()))?,
            Query::SourceSelection {
                stock_id,
                algorithm,
                items,
            } => serde_json::to_value(
                inv.source_selection(
                    &InventoryRequest {
                        stock_id: stock(stock_id)?,
                        items: items
                            .iter()
                            .map(|(s, q)| ItemRequest {
                                sku: s.clone(),
                                qty: *q,
                            })
                            .collect(),
                    },
                    algorithm,
                )
                .map_err(failure)?,
            )
            .map_err(|e| plain(e.to_string()))?,
            Query::SourceSelectionForSortedSources {
                stock_id,
                items,
                sorted_sources,
            } => {
                let sorted = sorted_sources
                    .iter()
                    .map(|c| source_code(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let r = inv.default_sorted_sources_result(
                    &InventoryRequest {
                        stock_id: stock(stock_id)?,
                        items: items
                            .iter()
                            .map(|(s, q)| ItemRequest {
                                sku: s.clone(),
                                qty: *q,
                            })
                            .collect(),
                    },
                    &sorted,
                );
                let mut map = Map::new();
                for i in &r.source_selection_items {
                    map.insert(
                        format!("{}/{}", i.source_code, i.sku),
                        json!({
                            "qty_to_deduct": num::decimal_to_json(i.qty_to_deduct),
                            "qty_available": num::decimal_to_json(i.qty_available),
                        }),
                    );
                }
                json!({"items": map, "item_count": r.source_selection_items.len(), "shippable": r.shippable})
            }
            Query::InconsistenciesCount { bunch_size } => {
                let bunches = inv
                    .salable_quantity_inconsistencies(*bunch_size)
                    .map_err(failure)?;
                json!(bunches.iter().map(Vec::len).sum::<usize>())
            }
            Query::InconsistencyQty { sku } => {
                let bunches = inv.salable_quantity_inconsistencies(50).map_err(failure)?;
                bunches
                    .iter()
                    .flatten()
                    .next()
                    .and_then(|i| i.item(sku))
                    .map(num::decimal_to_json)
                    .unwrap_or(Value::Null)
            }
            Query::InconsistenciesEachBunchEmpty { bunch_size } => {
                let bunches = inv
                    .salable_quantity_inconsistencies(*bunch_size)
                    .map_err(failure)?;
                json!(bunches.iter().all(Vec::is_empty))
            }
            Query::ResolveStock { channel_type, code } => {
                let v = inv.resolve_stock(channel_type, code).map_err(failure)?;
                json!({"stock_id": i64::from(v.stock_id), "name": v.name, "sales_channels": v.sales_channels})
            }
            Query::StockSalesChannels { stock_id } => {
                let v = inv.get_stock(stock(stock_id)?).map_err(failure)?;
                serde_json::to_value(v.sales_channels).map_err(|e| plain(e.to_string()))?
            }
            Query::AssignedStockIdForWebsite { code } => inv
                .assigned_stock_id_for_website(code)
                .map(|s| json!(i64::from(s)))
                .unwrap_or(Value::Null),
            Query::IsSingleSourceMode => json!(inv.is_single_source_mode()),
            Query::Unknown { name } => {
                return Err(OpFailure::unsupported(&format!("check \"{name}\"")));
            }
        })
    }
}

impl OpExecutor for ModelExecutor {
    fn apply(&mut self, op: &Op) -> Result<OpOutput, OpFailure> {
        if let Some(request) = rest_request_for_op(op, self) {
            let response = self.dispatch(&request);
            if response.status >= 400 {
                return Err(OpFailure::from_rest(&response));
            }
            if let OpKind::Ship {
                shipment: Some(r), ..
            } = &op.kind
                && let Some(id) = response.body.as_u64()
            {
                self.shipments.insert(r.clone(), ShipmentId(id));
            }
            return Ok(OpOutput {
                result: Some(response.body),
                ..OpOutput::default()
            });
        }
        self.apply_model(op)
    }

    fn query(&mut self, check: &Check) -> Result<Value, OpFailure> {
        if let Some(request) = rest_request_for_check(check) {
            let response = self.dispatch(&request);
            return check_value_from_rest(check, &response);
        }
        self.query_model(check)
    }
}
