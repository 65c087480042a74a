//! Orders and sales documents as REST shows them (spec §6): the MSI model keeps what moves
//! stock (items and their shipped/invoiced/refunded/canceled quantities, state, shipments with
//! their source); this store adds what a client reads besides — customer, addresses, payment,
//! prices and totals, status history, hold, tracks and comments, invoice and credit-memo
//! amounts — and renders the `sales-data-*` shapes of the official schema.
//!
//! Amounts: prices exclude tax; each row's tax is `round(row × rate)` half away from zero
//! (Magento's ROW_BASE), documents take their share `round(row tax × qty / qty_ordered)`.
//! Orders the model created without prices (vector fixtures) show zero prices.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tillbridge_core::inventory::error::{ErrorKind, MagentoError, Phrase};
use tillbridge_core::inventory::num::{decimal_from_json, decimal_to_json};
use tillbridge_core::inventory::sales::{Order, OrderId, ShipmentId};
use tillbridge_core::inventory::webapi::{self, RestRequest};
use tillbridge_core::inventory::{Inventory, OrderLine, PlaceOrderRequest, Sku, StoreCode};
use tillbridge_core::inventory::{OrderIncrementId, WebsiteCode};

use crate::state::State;

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn num(d: Decimal) -> Value {
    decimal_to_json(d)
}

/// An address (`sales-data-order-address-interface`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub firstname: String,
    pub lastname: String,
    pub street: Vec<String>,
    pub city: String,
    pub postcode: String,
    pub country_id: String,
    pub telephone: String,
    pub region: Option<String>,
    pub email: Option<String>,
}

impl Default for Address {
    fn default() -> Self {
        Self {
            firstname: "Guest".to_owned(),
            lastname: "Customer".to_owned(),
            street: vec!["1 High Street".to_owned()],
            city: "Leeds".to_owned(),
            postcode: "LS1 1AA".to_owned(),
            country_id: "GB".to_owned(),
            telephone: "0113 000 0000".to_owned(),
            region: None,
            email: None,
        }
    }
}

/// Price data of an order item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemPrice {
    pub price: Decimal,
    pub tax_percent: Decimal,
    pub name: Option<String>,
    pub weight: Option<Decimal>,
}

/// A status-history row.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub entity_id: u64,
    pub comment: String,
    pub status: Option<String>,
    pub created_at: String,
    pub is_customer_notified: i64,
    pub is_visible_on_front: i64,
}

/// What REST shows of an order beyond the model.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderData {
    pub customer_email: String,
    pub customer_firstname: String,
    pub customer_lastname: String,
    pub customer_id: Option<u64>,
    pub currency: String,
    pub store_id: u64,
    pub prices: BTreeMap<u64, ItemPrice>,
    pub shipping_amount: Decimal,
    pub shipping_tax_percent: Decimal,
    pub shipping_method: String,
    pub shipping_description: String,
    pub address: Address,
    pub payment_method: String,
    pub histories: Vec<History>,
    /// On hold: the state and status before.
    pub hold: Option<(String, String)>,
    /// A status set through a comment: (the model status it replaced, the new status).
    pub status_override: Option<(String, String)>,
    pub touched_at: Option<String>,
}

impl Default for OrderData {
    fn default() -> Self {
        Self {
            customer_email: "customer@example.com".to_owned(),
            customer_firstname: "Guest".to_owned(),
            customer_lastname: "Customer".to_owned(),
            customer_id: None,
            currency: "GBP".to_owned(),
            store_id: 1,
            prices: BTreeMap::new(),
            shipping_amount: Decimal::ZERO,
            shipping_tax_percent: Decimal::ZERO,
            shipping_method: "flatrate_flatrate".to_owned(),
            shipping_description: "Flat Rate - Fixed".to_owned(),
            address: Address::default(),
            payment_method: "checkmo".to_owned(),
            histories: Vec::new(),
            hold: None,
            status_override: None,
            touched_at: None,
        }
    }
}

/// A comment on a document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocComment {
    pub entity_id: u64,
    pub comment: String,
    pub is_customer_notified: i64,
    pub is_visible_on_front: i64,
    pub created_at: String,
}

/// A shipment track.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub entity_id: u64,
    pub track_number: String,
    pub title: String,
    pub carrier_code: String,
}

/// One document line: order item id, quantity.
pub type Line = (u64, Decimal);

/// A shipment, invoice or credit memo as REST shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub entity_id: u64,
    pub increment_id: String,
    pub order_id: u64,
    pub lines: Vec<Line>,
    pub created_at: String,
    pub comments: Vec<DocComment>,
    pub tracks: Vec<Track>,
    /// Invoices and credit memos: shipping included, adjustments.
    pub shipping_amount: Decimal,
    pub adjustment_positive: Decimal,
    pub adjustment_negative: Decimal,
    /// Credit memos: the invoice refunded.
    pub invoice_id: Option<u64>,
    /// Credit memos: order item ids returned to stock.
    pub returned: Vec<u64>,
}

/// The REST order data and documents.
#[derive(Debug, Clone, Default)]
pub struct SalesStore {
    pub orders: BTreeMap<u64, OrderData>,
    pub shipments: BTreeMap<u64, Document>,
    pub invoices: BTreeMap<u64, Document>,
    pub creditmemos: BTreeMap<u64, Document>,
    next_child_id: u64,
}

impl SalesStore {
    fn next_id(&mut self) -> u64 {
        self.next_child_id += 1;
        self.next_child_id
    }

    fn data(&self, order: u64) -> OrderData {
        self.orders.get(&order).cloned().unwrap_or_default()
    }

    fn data_mut(&mut self, order: u64) -> &mut OrderData {
        self.orders.entry(order).or_default()
    }
}

/// Shape of a line's money.
struct LineMoney {
    price: Decimal,
    tax_percent: Decimal,
    row: Decimal,
    tax: Decimal,
}

fn line_money(order: &Order, data: &OrderData, item_id: u64, qty: Decimal) -> LineMoney {
    let p = data.prices.get(&item_id).cloned().unwrap_or_default();
    let ordered = order
        .item(item_id)
        .map_or(Decimal::ONE, |i| i.qty_ordered.max(Decimal::ONE));
    let full_tax = round2(p.price * ordered * p.tax_percent / Decimal::from(100));
    let tax = if qty == ordered {
        full_tax
    } else {
        round2(full_tax * qty / ordered)
    };
    LineMoney {
        price: p.price,
        tax_percent: p.tax_percent,
        row: round2(p.price * qty),
        tax,
    }
}

struct Totals {
    subtotal: Decimal,
    tax: Decimal,
    shipping: Decimal,
    shipping_tax: Decimal,
    adjustment: Decimal,
}

impl Totals {
    fn grand(&self) -> Decimal {
        self.subtotal + self.tax + self.shipping + self.shipping_tax + self.adjustment
    }
}

fn doc_totals(order: &Order, data: &OrderData, doc: &Document) -> Totals {
    let mut t = Totals {
        subtotal: Decimal::ZERO,
        tax: Decimal::ZERO,
        shipping: doc.shipping_amount,
        shipping_tax: round2(doc.shipping_amount * data.shipping_tax_percent / Decimal::from(100)),
        adjustment: doc.adjustment_positive - doc.adjustment_negative,
    };
    for (item, qty) in &doc.lines {
        let m = line_money(order, data, *item, *qty);
        t.subtotal += m.row;
        t.tax += m.tax;
    }
    t
}

fn order_totals(order: &Order, data: &OrderData) -> Totals {
    let mut t = Totals {
        subtotal: Decimal::ZERO,
        tax: Decimal::ZERO,
        shipping: data.shipping_amount,
        shipping_tax: round2(data.shipping_amount * data.shipping_tax_percent / Decimal::from(100)),
        adjustment: Decimal::ZERO,
    };
    for i in &order.items {
        let m = line_money(order, data, i.item_id, i.qty_ordered);
        t.subtotal += m.row;
        t.tax += m.tax;
    }
    t
}

fn address_json(a: &Address, kind: &str, order_id: u64, entity_id: u64, email: &str) -> Value {
    let mut v = json!({
        "address_type": kind,
        "city": a.city,
        "country_id": a.country_id,
        "email": a.email.clone().unwrap_or_else(|| email.to_owned()),
        "entity_id": entity_id,
        "firstname": a.firstname,
        "lastname": a.lastname,
        "parent_id": order_id,
        "postcode": a.postcode,
        "street": a.street,
        "telephone": a.telephone,
    });
    if let (Some(r), Some(m)) = (&a.region, v.as_object_mut()) {
        m.insert("region".to_owned(), json!(r));
    }
    v
}

/// The state and status REST shows (hold and comment statuses over the model's).
fn state_status(order: &Order, data: &OrderData) -> (String, String) {
    if data.hold.is_some() {
        return ("holded".to_owned(), "holded".to_owned());
    }
    let status = match &data.status_override {
        Some((was, new)) if *was == order.status => new.clone(),
        _ => order.status.clone(),
    };
    (order.state.as_str().to_owned(), status)
}

fn updated_at(order: &Order, data: &OrderData) -> String {
    let model = order.updated_at.as_str().to_owned();
    match &data.touched_at {
        Some(t) if *t > model => t.clone(),
        _ => model,
    }
}

fn item_json(order: &Order, data: &OrderData, item_id: u64) -> Value {
    let Some(i) = order.item(item_id) else {
        return Value::Null;
    };
    let m = line_money(order, data, i.item_id, i.qty_ordered);
    let p = data.prices.get(&i.item_id).cloned().unwrap_or_default();
    let incl = round2(m.price * (Decimal::ONE + m.tax_percent / Decimal::from(100)));
    let invoiced = line_money(order, data, i.item_id, i.qty_invoiced);
    let refunded = line_money(order, data, i.item_id, i.qty_refunded);
    let mut v = json!({
        "amount_refunded": num(refunded.row),
        "base_amount_refunded": num(refunded.row),
        "base_discount_amount": 0,
        "base_original_price": num(m.price),
        "base_price": num(m.price),
        "base_price_incl_tax": num(incl),
        "base_row_invoiced": num(invoiced.row),
        "base_row_total": num(m.row),
        "base_row_total_incl_tax": num(m.row + m.tax),
        "base_tax_amount": num(m.tax),
        "base_tax_invoiced": num(invoiced.tax),
        "created_at": order.created_at.as_str(),
        "discount_amount": 0,
        "discount_invoiced": 0,
        "discount_percent": 0,
        "is_qty_decimal": i64::from(i.is_qty_decimal),
        "is_virtual": i64::from(i.is_virtual),
        "item_id": i.item_id,
        "name": p.name.clone().unwrap_or_else(|| i.sku.clone()),
        "order_id": order.entity_id.0,
        "original_price": num(m.price),
        "price": num(m.price),
        "price_incl_tax": num(incl),
        "product_type": i.product_type,
        "qty_canceled": num(i.qty_canceled),
        "qty_invoiced": num(i.qty_invoiced),
        "qty_ordered": num(i.qty_ordered),
        "qty_refunded": num(i.qty_refunded),
        "qty_shipped": num(i.qty_shipped),
        "row_invoiced": num(invoiced.row),
        "row_total": num(m.row),
        "row_total_incl_tax": num(m.row + m.tax),
        "sku": i.sku,
        "store_id": data.store_id,
        "tax_amount": num(m.tax),
        "tax_invoiced": num(invoiced.tax),
        "tax_percent": num(m.tax_percent),
        "tax_refunded": num(refunded.tax),
        "updated_at": updated_at(order, data),
        "weight": num(p.weight.unwrap_or(Decimal::ONE)),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(pid) = i.product_id {
            obj.insert("product_id".to_owned(), json!(pid));
        }
        if let Some(parent) = i.parent_item_id {
            obj.insert("parent_item_id".to_owned(), json!(parent));
            let parent_json = item_json(order, data, parent);
            if !parent_json.is_null() {
                obj.insert("parent_item".to_owned(), parent_json);
            }
        }
        if let Some(b) = i.qty_backordered {
            obj.insert("qty_backordered".to_owned(), num(b));
        }
    }
    v
}

fn history_json(h: &History, order_id: u64) -> Value {
    let mut v = json!({
        "comment": h.comment,
        "created_at": h.created_at,
        "entity_id": h.entity_id,
        "entity_name": "order",
        "is_customer_notified": h.is_customer_notified,
        "is_visible_on_front": h.is_visible_on_front,
        "parent_id": order_id,
    });
    if let (Some(s), Some(m)) = (&h.status, v.as_object_mut()) {
        m.insert("status".to_owned(), json!(s));
    }
    v
}

/// `sales-data-order-interface`.
pub fn order_json(inv: &Inventory, store: &SalesStore, order: &Order) -> Value {
    let data = store.data(order.entity_id.0);
    let id = order.entity_id.0;
    let t = order_totals(order, &data);
    let grand = t.grand();
    let mut invoiced = Totals {
        subtotal: Decimal::ZERO,
        tax: Decimal::ZERO,
        shipping: Decimal::ZERO,
        shipping_tax: Decimal::ZERO,
        adjustment: Decimal::ZERO,
    };
    for d in store.invoices.values().filter(|d| d.order_id == id) {
        let x = doc_totals(order, &data, d);
        invoiced.subtotal += x.subtotal;
        invoiced.tax += x.tax + x.shipping_tax;
        invoiced.shipping += x.shipping;
    }
    let invoiced_total = invoiced.subtotal + invoiced.tax + invoiced.shipping;
    let mut refunded = Totals {
        subtotal: Decimal::ZERO,
        tax: Decimal::ZERO,
        shipping: Decimal::ZERO,
        shipping_tax: Decimal::ZERO,
        adjustment: Decimal::ZERO,
    };
    let mut refunded_total = Decimal::ZERO;
    for d in store.creditmemos.values().filter(|d| d.order_id == id) {
        let x = doc_totals(order, &data, d);
        refunded.subtotal += x.subtotal;
        refunded.tax += x.tax + x.shipping_tax;
        refunded.shipping += x.shipping;
        refunded_total += x.grand();
    }
    let (state, status) = state_status(order, &data);
    let items: Vec<Value> = order
        .items
        .iter()
        .map(|i| item_json(order, &data, i.item_id))
        .collect();
    let qty: Decimal = order
        .items
        .iter()
        .filter(|i| i.parent_item_id.is_none())
        .map(|i| i.qty_ordered)
        .sum();
    let stock_id = inv
        .assigned_stock_id_for_website(order.website.as_str())
        .map_or(1, i64::from);
    let shipping_incl = t.shipping + t.shipping_tax;
    let mut histories: Vec<Value> = data.histories.iter().map(|h| history_json(h, id)).collect();
    histories.reverse();
    let mut v = json!({
        "base_currency_code": data.currency,
        "base_discount_amount": 0,
        "base_grand_total": num(grand),
        "base_discount_tax_compensation_amount": 0,
        "base_shipping_amount": num(t.shipping),
        "base_shipping_incl_tax": num(shipping_incl),
        "base_shipping_invoiced": num(invoiced.shipping),
        "base_shipping_refunded": num(refunded.shipping),
        "base_shipping_tax_amount": num(t.shipping_tax),
        "base_subtotal": num(t.subtotal),
        "base_subtotal_incl_tax": num(t.subtotal + t.tax),
        "base_subtotal_invoiced": num(invoiced.subtotal),
        "base_subtotal_refunded": num(refunded.subtotal),
        "base_tax_amount": num(t.tax + t.shipping_tax),
        "base_tax_invoiced": num(invoiced.tax),
        "base_tax_refunded": num(refunded.tax),
        "base_to_global_rate": 1,
        "base_to_order_rate": 1,
        "base_total_due": num(grand - invoiced_total),
        "base_total_invoiced": num(invoiced_total),
        "base_total_offline_refunded": num(refunded_total),
        "base_total_paid": num(invoiced_total),
        "base_total_qty_ordered": num(qty),
        "base_total_refunded": num(refunded_total),
        "billing_address_id": id * 2 - 1,
        "created_at": order.created_at.as_str(),
        "customer_email": data.customer_email,
        "customer_firstname": data.customer_firstname,
        "customer_group_id": i64::from(data.customer_id.is_some()),
        "customer_is_guest": i64::from(data.customer_id.is_none()),
        "customer_lastname": data.customer_lastname,
        "customer_note_notify": 1,
        "discount_amount": 0,
        "email_sent": 1,
        "entity_id": id,
        "global_currency_code": data.currency,
        "grand_total": num(grand),
        "discount_tax_compensation_amount": 0,
        "increment_id": order.increment_id.as_str(),
        "is_virtual": i64::from(order.items.iter().all(|i| i.is_virtual)),
        "order_currency_code": data.currency,
        "protect_code": format!("{:06x}", id.wrapping_mul(0x9E37_79B9) & 0xff_ffff),
        "quote_id": id,
        "shipping_amount": num(t.shipping),
        "shipping_description": data.shipping_description,
        "shipping_incl_tax": num(shipping_incl),
        "shipping_invoiced": num(invoiced.shipping),
        "shipping_refunded": num(refunded.shipping),
        "shipping_tax_amount": num(t.shipping_tax),
        "state": state,
        "status": status,
        "store_currency_code": data.currency,
        "store_id": data.store_id,
        "store_name": "Main Website\nMain Website Store\nDefault Store View",
        "store_to_base_rate": 0,
        "store_to_order_rate": 0,
        "subtotal": num(t.subtotal),
        "subtotal_incl_tax": num(t.subtotal + t.tax),
        "subtotal_invoiced": num(invoiced.subtotal),
        "subtotal_refunded": num(refunded.subtotal),
        "tax_amount": num(t.tax + t.shipping_tax),
        "tax_invoiced": num(invoiced.tax),
        "tax_refunded": num(refunded.tax),
        "total_due": num(grand - invoiced_total),
        "total_invoiced": num(invoiced_total),
        "total_item_count": order.items.len(),
        "total_offline_refunded": num(refunded_total),
        "total_paid": num(invoiced_total),
        "total_qty_ordered": num(qty),
        "total_refunded": num(refunded_total),
        "updated_at": updated_at(order, &data),
        "weight": num(qty),
        "items": items,
        "billing_address": address_json(&data.address, "billing", id, id * 2 - 1, &data.customer_email),
        "payment": {
            "account_status": null,
            "additional_information": [payment_title(&data.payment_method)],
            "amount_ordered": num(grand),
            "amount_paid": num(invoiced_total),
            "amount_refunded": num(refunded_total),
            "base_amount_ordered": num(grand),
            "base_amount_paid": num(invoiced_total),
            "base_amount_refunded": num(refunded_total),
            "base_shipping_amount": num(t.shipping),
            "cc_last4": null,
            "entity_id": id,
            "method": data.payment_method,
            "parent_id": id,
            "shipping_amount": num(t.shipping),
        },
        "status_histories": histories,
        "extension_attributes": {
            "shipping_assignments": [{
                "shipping": {
                    "address": address_json(&data.address, "shipping", id, id * 2, &data.customer_email),
                    "method": data.shipping_method,
                    "total": {
                        "base_shipping_amount": num(t.shipping),
                        "base_shipping_incl_tax": num(shipping_incl),
                        "base_shipping_tax_amount": num(t.shipping_tax),
                        "shipping_amount": num(t.shipping),
                        "shipping_incl_tax": num(shipping_incl),
                        "shipping_tax_amount": num(t.shipping_tax),
                    }
                },
                "items": order.items.iter().map(|i| item_json(order, &data, i.item_id)).collect::<Vec<_>>(),
                "stock_id": stock_id,
            }],
            "applied_taxes": [],
            "item_applied_taxes": [],
            "converting_from_quote": false,
        },
    });
    if let (Some(m), Some(c)) = (v.as_object_mut(), data.customer_id) {
        m.insert("customer_id".to_owned(), json!(c));
    }
    if let (Some(m), Some((s, st))) = (v.as_object_mut(), &data.hold) {
        m.insert("hold_before_state".to_owned(), json!(s));
        m.insert("hold_before_status".to_owned(), json!(st));
    }
    v
}

fn payment_title(method: &str) -> &str {
    match method {
        "checkmo" => "Check / Money order",
        "cashondelivery" => "Cash On Delivery",
        "banktransfer" => "Bank Transfer Payment",
        "free" => "No Payment Information Required",
        other => other,
    }
}

fn comment_json(c: &DocComment, parent: u64) -> Value {
    json!({
        "comment": c.comment,
        "created_at": c.created_at,
        "entity_id": c.entity_id,
        "is_customer_notified": c.is_customer_notified,
        "is_visible_on_front": c.is_visible_on_front,
        "parent_id": parent,
    })
}

fn shipment_json(inv: &Inventory, store: &SalesStore, id: u64) -> Result<Value, MagentoError> {
    let s = inv.shipment(ShipmentId(id))?;
    let order = inv.order(s.order_id)?;
    let data = store.data(s.order_id.0);
    let doc = store.shipments.get(&id);
    let created = doc.map_or_else(
        || order.updated_at.as_str().to_owned(),
        |d| d.created_at.clone(),
    );
    let items: Vec<Value> = s
        .items
        .iter()
        .enumerate()
        .map(|(n, (item_id, qty))| {
            let i = order.item(*item_id);
            let p = data.prices.get(item_id).cloned().unwrap_or_default();
            json!({
                "entity_id": id * 1000 + n as u64 + 1,
                "name": p.name.clone().unwrap_or_else(|| i.map(|x| x.sku.clone()).unwrap_or_default()),
                "parent_id": id,
                "price": num(p.price),
                "product_id": i.and_then(|x| x.product_id),
                "row_total": num(round2(p.price * *qty)),
                "sku": i.map(|x| x.sku.clone()),
                "weight": num(p.weight.unwrap_or(Decimal::ONE)),
                "order_item_id": item_id,
                "qty": num(*qty),
            })
        })
        .map(strip_nulls)
        .collect();
    let tracks: Vec<Value> = doc.map_or_else(Vec::new, |d| {
        d.tracks
            .iter()
            .map(|t| {
                json!({
                    "order_id": s.order_id.0,
                    "created_at": created,
                    "entity_id": t.entity_id,
                    "parent_id": id,
                    "updated_at": created,
                    "weight": null,
                    "qty": null,
                    "description": null,
                    "track_number": t.track_number,
                    "title": t.title,
                    "carrier_code": t.carrier_code,
                })
            })
            .collect()
    });
    let comments: Vec<Value> = doc.map_or_else(Vec::new, |d| {
        d.comments.iter().map(|c| comment_json(c, id)).collect()
    });
    Ok(json!({
        "billing_address_id": s.order_id.0 * 2 - 1,
        "created_at": created,
        "customer_id": data.customer_id,
        "email_sent": 0,
        "entity_id": id,
        "increment_id": doc.map_or_else(|| format!("{id:09}"), |d| d.increment_id.clone()),
        "order_id": s.order_id.0,
        "packages": [],
        "shipping_address_id": s.order_id.0 * 2,
        "store_id": data.store_id,
        "total_qty": num(s.total_qty),
        "updated_at": created,
        "items": items,
        "tracks": tracks,
        "comments": comments,
        "extension_attributes": {"source_code": s.source_code.as_str()},
    }))
    .map(strip_nulls)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| {
                    !v.is_null() || matches!(k.as_str(), "weight" | "qty" | "description")
                })
                .collect(),
        ),
        other => other,
    }
}

fn invoice_json(
    inv: &Inventory,
    store: &SalesStore,
    doc: &Document,
) -> Result<Value, MagentoError> {
    let order = inv.order(OrderId(doc.order_id))?;
    let data = store.data(doc.order_id);
    let t = doc_totals(order, &data, doc);
    let refunded = store
        .creditmemos
        .values()
        .any(|m| m.invoice_id == Some(doc.entity_id));
    Ok(json!({
        "base_currency_code": data.currency,
        "base_discount_amount": 0,
        "base_grand_total": num(t.grand()),
        "base_discount_tax_compensation_amount": 0,
        "base_shipping_amount": num(t.shipping),
        "base_shipping_incl_tax": num(t.shipping + t.shipping_tax),
        "base_shipping_tax_amount": num(t.shipping_tax),
        "base_subtotal": num(t.subtotal),
        "base_subtotal_incl_tax": num(t.subtotal + t.tax),
        "base_tax_amount": num(t.tax + t.shipping_tax),
        "base_to_global_rate": 1,
        "base_to_order_rate": 1,
        "billing_address_id": doc.order_id * 2 - 1,
        "can_void_flag": 0,
        "created_at": doc.created_at,
        "discount_amount": 0,
        "email_sent": 0,
        "entity_id": doc.entity_id,
        "global_currency_code": data.currency,
        "grand_total": num(t.grand()),
        "discount_tax_compensation_amount": 0,
        "increment_id": doc.increment_id,
        "is_used_for_refund": i64::from(refunded),
        "order_currency_code": data.currency,
        "order_id": doc.order_id,
        "shipping_address_id": doc.order_id * 2,
        "shipping_amount": num(t.shipping),
        "shipping_incl_tax": num(t.shipping + t.shipping_tax),
        "shipping_tax_amount": num(t.shipping_tax),
        "state": 2,
        "store_currency_code": data.currency,
        "store_id": data.store_id,
        "store_to_base_rate": 0,
        "store_to_order_rate": 0,
        "subtotal": num(t.subtotal),
        "subtotal_incl_tax": num(t.subtotal + t.tax),
        "tax_amount": num(t.tax + t.shipping_tax),
        "total_qty": num(doc.lines.iter().map(|(_, q)| *q).sum()),
        "updated_at": doc.created_at,
        "items": doc_items_json(order, &data, doc),
        "comments": doc.comments.iter().map(|c| comment_json(c, doc.entity_id)).collect::<Vec<_>>(),
    }))
}

fn doc_items_json(order: &Order, data: &OrderData, doc: &Document) -> Vec<Value> {
    doc.lines
        .iter()
        .enumerate()
        .map(|(n, (item_id, qty))| {
            let m = line_money(order, data, *item_id, *qty);
            let i = order.item(*item_id);
            let p = data.prices.get(item_id).cloned().unwrap_or_default();
            let incl = round2(m.price * (Decimal::ONE + m.tax_percent / Decimal::from(100)));
            let mut v = json!({
                "base_cost": 0,
                "base_discount_amount": 0,
                "base_discount_tax_compensation_amount": 0,
                "base_price": num(m.price),
                "base_price_incl_tax": num(incl),
                "base_row_total": num(m.row),
                "base_row_total_incl_tax": num(m.row + m.tax),
                "base_tax_amount": num(m.tax),
                "discount_amount": 0,
                "entity_id": doc.entity_id * 1000 + n as u64 + 1,
                "discount_tax_compensation_amount": 0,
                "name": p.name.clone().unwrap_or_else(|| i.map(|x| x.sku.clone()).unwrap_or_default()),
                "parent_id": doc.entity_id,
                "price": num(m.price),
                "price_incl_tax": num(incl),
                "row_total": num(m.row),
                "row_total_incl_tax": num(m.row + m.tax),
                "sku": i.map_or_else(String::new, |x| x.sku.clone()),
                "tax_amount": num(m.tax),
                "order_item_id": item_id,
                "qty": num(*qty),
            });
            if let (Some(obj), Some(pid)) = (v.as_object_mut(), i.and_then(|x| x.product_id)) {
                obj.insert("product_id".to_owned(), json!(pid));
            }
            v
        })
        .collect()
}

fn creditmemo_json(
    inv: &Inventory,
    store: &SalesStore,
    doc: &Document,
) -> Result<Value, MagentoError> {
    let order = inv.order(OrderId(doc.order_id))?;
    let data = store.data(doc.order_id);
    let t = doc_totals(order, &data, doc);
    let mut v = json!({
        "adjustment": num(t.adjustment),
        "adjustment_negative": num(doc.adjustment_negative),
        "adjustment_positive": num(doc.adjustment_positive),
        "base_adjustment": num(t.adjustment),
        "base_adjustment_negative": num(doc.adjustment_negative),
        "base_adjustment_positive": num(doc.adjustment_positive),
        "base_currency_code": data.currency,
        "base_discount_amount": 0,
        "base_grand_total": num(t.grand()),
        "base_discount_tax_compensation_amount": 0,
        "base_shipping_amount": num(t.shipping),
        "base_shipping_incl_tax": num(t.shipping + t.shipping_tax),
        "base_shipping_tax_amount": num(t.shipping_tax),
        "base_subtotal": num(t.subtotal),
        "base_subtotal_incl_tax": num(t.subtotal + t.tax),
        "base_tax_amount": num(t.tax + t.shipping_tax),
        "base_to_global_rate": 1,
        "base_to_order_rate": 1,
        "billing_address_id": doc.order_id * 2 - 1,
        "created_at": doc.created_at,
        "creditmemo_status": 2,
        "discount_amount": 0,
        "email_sent": 0,
        "entity_id": doc.entity_id,
        "global_currency_code": data.currency,
        "grand_total": num(t.grand()),
        "discount_tax_compensation_amount": 0,
        "increment_id": doc.increment_id,
        "order_currency_code": data.currency,
        "order_id": doc.order_id,
        "shipping_address_id": doc.order_id * 2,
        "shipping_amount": num(t.shipping),
        "shipping_incl_tax": num(t.shipping + t.shipping_tax),
        "shipping_tax_amount": num(t.shipping_tax),
        "state": 2,
        "store_currency_code": data.currency,
        "store_id": data.store_id,
        "store_to_base_rate": 0,
        "store_to_order_rate": 0,
        "subtotal": num(t.subtotal),
        "subtotal_incl_tax": num(t.subtotal + t.tax),
        "tax_amount": num(t.tax + t.shipping_tax),
        "updated_at": doc.created_at,
        "items": doc_items_json(order, &data, doc),
        "comments": doc.comments.iter().map(|c| comment_json(c, doc.entity_id)).collect::<Vec<_>>(),
    });
    if let (Some(m), Some(inv_id)) = (v.as_object_mut(), doc.invoice_id) {
        m.insert("invoice_id".to_owned(), json!(inv_id));
    }
    Ok(v)
}

fn search_results(rows: Vec<Value>, query: &str, required: bool) -> Result<Value, MagentoError> {
    let q = webapi::parse_query(query);
    let criteria = match webapi::search_criteria_from_query(&q) {
        Some(c) => c,
        None if required => {
            return Err(MagentoError::new(
                ErrorKind::WebapiInput,
                Phrase::named(
                    "\"%fieldName\" is required. Enter and try again.",
                    [("fieldName", json!("searchCriteria"))],
                ),
            ));
        }
        None => Default::default(),
    };
    let r = criteria.apply(rows);
    Ok(
        json!({"items": r.items, "search_criteria": r.search_criteria, "total_count": r.total_count}),
    )
}

fn no_entity() -> MagentoError {
    MagentoError::no_such_entity(Phrase::new(
        "The entity that was requested doesn't exist. Verify the entity and try again.",
    ))
}

fn id_of(segment: &str) -> Result<u64, MagentoError> {
    segment.parse::<u64>().map_err(|_| {
        MagentoError::new(
            ErrorKind::WebapiInput,
            Phrase::new(format!(
                "The \"{segment}\" value's type is invalid. The \"int\" type was expected. Verify and try again."
            )),
        )
    })
}

fn order_of(inv: &Inventory, id: u64) -> Result<&Order, MagentoError> {
    inv.order(OrderId(id)).map_err(|_| no_entity())
}

/// (item id → (invoiced, shipped, refunded)) of an order.
fn snapshot(order: &Order) -> BTreeMap<u64, (Decimal, Decimal, Decimal)> {
    order
        .items
        .iter()
        .map(|i| (i.item_id, (i.qty_invoiced, i.qty_shipped, i.qty_refunded)))
        .collect()
}

fn diff(
    before: &BTreeMap<u64, (Decimal, Decimal, Decimal)>,
    after: &Order,
    pick: impl Fn(&(Decimal, Decimal, Decimal)) -> Decimal,
) -> Vec<Line> {
    after
        .items
        .iter()
        .filter_map(|i| {
            let now = pick(&(i.qty_invoiced, i.qty_shipped, i.qty_refunded));
            let was = before.get(&i.item_id).map_or(Decimal::ZERO, &pick);
            (now > was).then_some((i.item_id, now - was))
        })
        .collect()
}

fn int_of(v: Option<&Value>) -> i64 {
    v.and_then(|x| match x {
        Value::Bool(b) => Some(i64::from(*b)),
        other => {
            decimal_from_json(other).and_then(|d| rust_decimal::prelude::ToPrimitive::to_i64(&d))
        }
    })
    .unwrap_or(0)
}

fn doc_comment(store: &mut SalesStore, body: &Value, now: &str) -> Vec<DocComment> {
    let Some(c) = body.get("comment").filter(|c| c.is_object()) else {
        return Vec::new();
    };
    let text = c.get("comment").and_then(Value::as_str).unwrap_or("");
    if text.is_empty() {
        return Vec::new();
    }
    vec![DocComment {
        entity_id: store.next_id(),
        comment: text.to_owned(),
        is_customer_notified: i64::from(
            body.get("notify").and_then(Value::as_bool).unwrap_or(false),
        ),
        is_visible_on_front: int_of(c.get("is_visible_on_front")),
        created_at: now.to_owned(),
    }]
}

fn held_document_error(kind: &str) -> MagentoError {
    let what = match kind {
        "ship" => (
            "Shipment",
            "The order does not allow a shipment to be created.",
        ),
        "invoice" => (
            "Invoice",
            "The order does not allow an invoice to be created.",
        ),
        _ => ("Creditmemo", "We can't create creditmemo for the order."),
    };
    MagentoError::localized(Phrase::new(format!(
        "{} Document Validation Error(s):\n{}",
        what.0, what.1
    )))
}

fn err(e: &MagentoError) -> (u16, Value) {
    (e.http_status(), e.rest_body())
}

/// Sales routes (`segs` after `V1`); `None` when the route is not one of them.
#[allow(clippy::too_many_lines)]
pub fn route(
    st: &mut State,
    method: &str,
    segs: &[&str],
    query: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let empty = Value::Object(Map::new());
    let body = body.unwrap_or(&empty);
    let now_text = st.clock.now_text();
    let result: Result<Value, (u16, Value)> = match (method, segs) {
        ("GET", ["orders"]) => {
            let inv = &st.world.exec.inventory;
            let rows = inv
                .orders()
                .iter()
                .map(|o| order_json(inv, &st.world.sales, o))
                .collect();
            search_results(rows, query, true).map_err(me)
        }
        ("GET", ["orders", "items"]) => {
            let inv = &st.world.exec.inventory;
            let rows = inv
                .orders()
                .iter()
                .flat_map(|o| {
                    let data = st.world.sales.data(o.entity_id.0);
                    o.items
                        .iter()
                        .map(|i| item_json(o, &data, i.item_id))
                        .collect::<Vec<_>>()
                })
                .collect();
            search_results(rows, query, true).map_err(me)
        }
        ("GET", ["orders", "items", id]) => id_of(id).and_then(|id| {
            let inv = &st.world.exec.inventory;
            inv.orders()
                .iter()
                .find(|o| o.item(id).is_some())
                .map(|o| item_json(o, &st.world.sales.data(o.entity_id.0), id))
                .ok_or_else(no_entity)
        }).map_err(me),
        ("GET", ["orders", id]) => id_of(id).and_then(|id| {
            let inv = &st.world.exec.inventory;
            order_of(inv, id).map(|o| order_json(inv, &st.world.sales, o))
        }).map_err(me),
        ("GET", ["orders", id, "comments"]) => id_of(id).and_then(|id| {
            order_of(&st.world.exec.inventory, id)?;
            let data = st.world.sales.data(id);
            let items: Vec<Value> = data.histories.iter().map(|h| history_json(h, id)).collect();
            Ok(json!({"items": items, "search_criteria": {"filter_groups": []}, "total_count": items.len()}))
        }).map_err(me),
        ("GET", ["orders", id, "statuses"]) => id_of(id).and_then(|id| {
            let o = order_of(&st.world.exec.inventory, id)?;
            Ok(json!(state_status(o, &st.world.sales.data(id)).1))
        }).map_err(me),
        ("POST", ["orders", id, "comments"]) => id_of(id).and_then(|id| {
            let o = order_of(&st.world.exec.inventory, id)?.clone();
            let h = body
                .get("statusHistory")
                .filter(|h| h.is_object())
                .ok_or_else(|| {
                    MagentoError::new(
                        ErrorKind::WebapiInput,
                        Phrase::named(
                            "\"%fieldName\" is required. Enter and try again.",
                            [("fieldName", json!("statusHistory"))],
                        ),
                    )
                })?;
            let entity_id = st.world.sales.next_id();
            let status = h
                .get("status")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            let data = st.world.sales.data_mut(id);
            if let Some(s) = &status
                && data.hold.is_none()
                && *s != o.status
            {
                data.status_override = Some((o.status.clone(), s.clone()));
            }
            data.histories.push(History {
                entity_id,
                comment: h.get("comment").and_then(Value::as_str).unwrap_or("").to_owned(),
                status: status.or_else(|| Some(state_status(&o, data).1)),
                created_at: now_text.clone(),
                is_customer_notified: int_of(h.get("is_customer_notified")),
                is_visible_on_front: int_of(h.get("is_visible_on_front")),
            });
            data.touched_at = Some(now_text.clone());
            Ok(json!(true))
        }).map_err(me),
        ("POST", ["orders", id, "hold"]) => id_of(id).and_then(|id| {
            let o = order_of(&st.world.exec.inventory, id)?.clone();
            let data = st.world.sales.data_mut(id);
            let state = o.state.as_str();
            if data.hold.is_some()
                || matches!(state, "canceled" | "complete" | "closed" | "payment_review" | "holded")
            {
                return Err(MagentoError::localized(Phrase::new("A hold action is not available.")));
            }
            let (_, status) = state_status(&o, data);
            data.hold = Some((state.to_owned(), status));
            data.touched_at = Some(now_text.clone());
            Ok(json!(true))
        }).map_err(me),
        ("POST", ["orders", id, "unhold"]) => id_of(id).and_then(|id| {
            order_of(&st.world.exec.inventory, id)?;
            let data = st.world.sales.data_mut(id);
            if data.hold.take().is_none() {
                return Err(MagentoError::localized(Phrase::new("You cannot remove the hold.")));
            }
            data.touched_at = Some(now_text.clone());
            Ok(json!(true))
        }).map_err(me),
        ("POST", ["orders", id, "cancel"]) => cancel(st, id, body, &now_text),
        ("POST", ["order", id, kind @ ("ship" | "invoice" | "refund")]) => {
            id_of(id)
                .map_err(me)
                .and_then(|id| document(st, id, kind, body, None, &now_text))
        }
        ("POST", ["invoice", id, "refund"]) => id_of(id)
            .and_then(|id| {
                st.world
                    .sales
                    .invoices
                    .get(&id)
                    .cloned()
                    .ok_or_else(no_entity)
            })
            .map_err(me)
            .and_then(|doc| {
                document(st, doc.order_id, "refund", body, Some(doc.entity_id), &now_text)
            }),
        ("GET", ["shipments"]) => {
            let inv = &st.world.exec.inventory;
            let rows = inv
                .orders()
                .iter()
                .flat_map(|o| inv.shipments_of(o.entity_id))
                .filter_map(|s| shipment_json(inv, &st.world.sales, s.entity_id.0).ok())
                .collect();
            search_results(rows, query, true).map_err(me)
        }
        ("GET", ["shipment", id]) => id_of(id).and_then(|id| {
            shipment_json(&st.world.exec.inventory, &st.world.sales, id).map_err(|_| no_entity())
        }).map_err(me),
        ("GET", ["shipment", id, "comments"]) => id_of(id).map(|id| {
            let items: Vec<Value> = st
                .world
                .sales
                .shipments
                .get(&id)
                .map(|d| d.comments.iter().map(|c| comment_json(c, id)).collect())
                .unwrap_or_default();
            json!({"items": items, "search_criteria": {"filter_groups": []}, "total_count": items.len()})
        }).map_err(me),
        ("GET", ["invoices"]) => {
            let inv = &st.world.exec.inventory;
            let rows = st
                .world
                .sales
                .invoices
                .values()
                .filter_map(|d| invoice_json(inv, &st.world.sales, d).ok())
                .collect();
            search_results(rows, query, true).map_err(me)
        }
        ("GET", ["invoices", id]) => id_of(id).and_then(|id| {
            let d = st.world.sales.invoices.get(&id).ok_or_else(no_entity)?;
            invoice_json(&st.world.exec.inventory, &st.world.sales, d)
        }).map_err(me),
        ("GET", ["invoices", id, "comments"]) => id_of(id).map(|id| {
            let items: Vec<Value> = st
                .world
                .sales
                .invoices
                .get(&id)
                .map(|d| d.comments.iter().map(|c| comment_json(c, id)).collect())
                .unwrap_or_default();
            json!({"items": items, "search_criteria": {"filter_groups": []}, "total_count": items.len()})
        }).map_err(me),
        ("GET", ["creditmemos"]) => {
            let inv = &st.world.exec.inventory;
            let rows = st
                .world
                .sales
                .creditmemos
                .values()
                .filter_map(|d| creditmemo_json(inv, &st.world.sales, d).ok())
                .collect();
            search_results(rows, query, true).map_err(me)
        }
        ("GET", ["creditmemo", id]) => id_of(id).and_then(|id| {
            let d = st.world.sales.creditmemos.get(&id).ok_or_else(no_entity)?;
            creditmemo_json(&st.world.exec.inventory, &st.world.sales, d)
        }).map_err(me),
        ("GET", ["creditmemo", id, "comments"]) => id_of(id).map(|id| {
            let items: Vec<Value> = st
                .world
                .sales
                .creditmemos
                .get(&id)
                .map(|d| d.comments.iter().map(|c| comment_json(c, id)).collect())
                .unwrap_or_default();
            json!({"items": items, "search_criteria": {"filter_groups": []}, "total_count": items.len()})
        }).map_err(me),
        _ => return None,
    };
    Some(match result {
        Ok(v) => (200, v),
        Err(e) => e,
    })
}

fn delegate(st: &mut State, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let now = st.clock.now();
    let r = webapi::dispatch(
        &mut st.world.exec.inventory,
        &RestRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            body: Some(body.clone()),
        },
        &now,
    );
    (r.status, r.body)
}

fn me(e: MagentoError) -> (u16, Value) {
    err(&e)
}

fn cancel(st: &mut State, id: &str, body: &Value, now_text: &str) -> Result<Value, (u16, Value)> {
    let id = id_of(id).map_err(me)?;
    order_of(&st.world.exec.inventory, id).map_err(me)?;
    if st.world.sales.data(id).hold.is_some() {
        return Ok(json!(false));
    }
    let (status, v) = delegate(st, "POST", &format!("/V1/orders/{id}/cancel"), body);
    if status >= 400 {
        return Err((status, v));
    }
    if v == json!(true) {
        st.world.sales.data_mut(id).touched_at = Some(now_text.to_owned());
    }
    Ok(v)
}

/// `ShipmentFactory::prepareItems` ships `min(requested, qty to ship)` of a plain item (neither
/// parent nor child); a request for more than is left ships what is left, and a request for
/// nothing left is refused as a shipment without products.
fn cap_ship_quantities(order: &Order, body: &mut Value) {
    let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    for line in items {
        let Some(item) = line
            .get("order_item_id")
            .and_then(Value::as_u64)
            .and_then(|id| order.item(id))
        else {
            continue;
        };
        let plain = item.parent_item_id.is_none()
            && !order
                .items
                .iter()
                .any(|c| c.parent_item_id == Some(item.item_id));
        let left = (item.qty_ordered - item.qty_shipped - item.qty_refunded - item.qty_canceled)
            .max(Decimal::ZERO);
        if plain
            && let Some(q) = line.get("qty").and_then(decimal_from_json)
            && q > left
        {
            line["qty"] = num(left);
        }
    }
}

/// `POST /V1/order/:id/ship|invoice|refund` (and `/V1/invoice/:id/refund`): the model moves
/// stock and quantities; the document's lines are what the order's quantities moved by.
fn document(
    st: &mut State,
    order_id: u64,
    kind: &str,
    body: &Value,
    invoice: Option<u64>,
    now_text: &str,
) -> Result<Value, (u16, Value)> {
    let before = snapshot(order_of(&st.world.exec.inventory, order_id).map_err(me)?);
    if st.world.sales.data(order_id).hold.is_some() {
        return Err(me(held_document_error(kind)));
    }
    let mut body = body.clone();
    if kind == "refund"
        && let Some(inv_id) = invoice
        && body
            .get("items")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        && let Some(doc) = st.world.sales.invoices.get(&inv_id)
    {
        let lines: Vec<Value> = doc
            .lines
            .iter()
            .map(|(i, q)| json!({"order_item_id": i, "qty": num(*q)}))
            .collect();
        body["items"] = json!(lines);
    }
    if kind == "ship" {
        cap_ship_quantities(
            order_of(&st.world.exec.inventory, order_id).map_err(me)?,
            &mut body,
        );
    }
    let (status, v) = delegate(st, "POST", &format!("/V1/order/{order_id}/{kind}"), &body);
    if status >= 400 {
        return Err((status, v));
    }
    let Some(doc_id) = v.as_u64() else {
        return Ok(v);
    };
    let after = order_of(&st.world.exec.inventory, order_id)
        .map_err(me)?
        .clone();
    let lines = match kind {
        "ship" => st
            .world
            .exec
            .inventory
            .shipment(ShipmentId(doc_id))
            .map(|s| s.items.clone())
            .unwrap_or_else(|_| diff(&before, &after, |t| t.1)),
        "invoice" => diff(&before, &after, |t| t.0),
        _ => diff(&before, &after, |t| t.2),
    };
    let comments = doc_comment(&mut st.world.sales, &body, now_text);
    let mut tracks = Vec::new();
    if kind == "ship" {
        for t in body
            .get("tracks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let entity_id = st.world.sales.next_id();
            let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            tracks.push(Track {
                entity_id,
                track_number: s("track_number"),
                title: s("title"),
                carrier_code: s("carrier_code"),
            });
        }
    }
    let data = st.world.sales.data(order_id);
    let shipping_amount = match kind {
        "invoice" => {
            let already: Decimal = st
                .world
                .sales
                .invoices
                .values()
                .filter(|d| d.order_id == order_id)
                .map(|d| d.shipping_amount)
                .sum();
            data.shipping_amount - already
        }
        "refund" => {
            let invoiced: Decimal = st
                .world
                .sales
                .invoices
                .values()
                .filter(|d| d.order_id == order_id)
                .map(|d| d.shipping_amount)
                .sum();
            let refunded: Decimal = st
                .world
                .sales
                .creditmemos
                .values()
                .filter(|d| d.order_id == order_id)
                .map(|d| d.shipping_amount)
                .sum();
            body.pointer("/arguments/shipping_amount")
                .and_then(decimal_from_json)
                .unwrap_or(invoiced - refunded)
        }
        _ => Decimal::ZERO,
    };
    let arg = |k: &str| {
        body.pointer(&format!("/arguments/{k}"))
            .and_then(decimal_from_json)
            .unwrap_or(Decimal::ZERO)
    };
    let returned: Vec<u64> = body
        .pointer("/arguments/extension_attributes/return_to_stock_items")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let doc = Document {
        entity_id: doc_id,
        increment_id: format!("{doc_id:09}"),
        order_id,
        lines,
        created_at: now_text.to_owned(),
        comments,
        tracks,
        shipping_amount,
        adjustment_positive: if kind == "refund" {
            arg("adjustment_positive")
        } else {
            Decimal::ZERO
        },
        adjustment_negative: if kind == "refund" {
            arg("adjustment_negative")
        } else {
            Decimal::ZERO
        },
        invoice_id: invoice.or_else(|| {
            (kind == "refund")
                .then(|| {
                    st.world
                        .sales
                        .invoices
                        .values()
                        .find(|d| d.order_id == order_id)
                        .map(|d| d.entity_id)
                })
                .flatten()
        }),
        returned,
    };
    let store = &mut st.world.sales;
    match kind {
        "ship" => store.shipments.insert(doc_id, doc),
        "invoice" => store.invoices.insert(doc_id, doc),
        _ => store.creditmemos.insert(doc_id, doc),
    };
    store.data_mut(order_id).touched_at = Some(now_text.to_owned());
    Ok(v)
}

/// A storefront checkout (`POST /__emulator/orders`): the cart's salability check and
/// `order_placed` reservations happen in the model; prices, customer and addresses are kept
/// here. Answers the order as REST shows it.
pub fn place_order(st: &mut State, body: &Value) -> Result<Value, (u16, Value)> {
    let bad = |m: String| (400, json!({"error": m}));
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad("`items` (a non-empty list) is required".to_owned()))?;
    let mut lines = Vec::new();
    let mut prices = Vec::new();
    for (n, it) in items.iter().enumerate() {
        let sku_text = it
            .get("sku")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("items[{n}].sku is required")))?;
        let sku = Sku::parse(sku_text).map_err(|e| bad(format!("items[{n}].sku: {e}")))?;
        let qty = it
            .get("qty")
            .and_then(decimal_from_json)
            .filter(|q| *q > Decimal::ZERO)
            .ok_or_else(|| bad(format!("items[{n}].qty must be a positive number")))?;
        let line = match it.get("child_sku").and_then(Value::as_str) {
            Some(c) => OrderLine::Configurable {
                parent: sku,
                child: Sku::parse(c).map_err(|e| bad(format!("items[{n}].child_sku: {e}")))?,
                qty,
            },
            None => OrderLine::Product { sku, qty },
        };
        lines.push(line);
        prices.push(ItemPrice {
            price: it
                .get("price")
                .and_then(decimal_from_json)
                .unwrap_or(Decimal::ZERO),
            tax_percent: it
                .get("tax_percent")
                .and_then(decimal_from_json)
                .unwrap_or(Decimal::ZERO),
            name: it.get("name").and_then(Value::as_str).map(str::to_owned),
            weight: it.get("weight").and_then(decimal_from_json),
        });
    }
    let website = body
        .get("website")
        .and_then(Value::as_str)
        .map(WebsiteCode::parse)
        .transpose()
        .map_err(|e| bad(format!("website: {e}")))?
        .unwrap_or_else(WebsiteCode::base);
    let store = body
        .get("store")
        .and_then(Value::as_str)
        .map(StoreCode::parse)
        .transpose()
        .map_err(|e| bad(format!("store: {e}")))?;
    let increment_id = body
        .get("increment_id")
        .and_then(Value::as_str)
        .map(OrderIncrementId::parse)
        .transpose()
        .map_err(|e| bad(format!("increment_id: {e}")))?;
    let now = st.clock.now();
    let id = st
        .world
        .exec
        .inventory
        .place_order(
            &PlaceOrderRequest {
                increment_id,
                website,
                store,
                lines,
            },
            &now,
        )
        .map_err(|e| {
            (
                400,
                json!({"error": e.rendered(), "magento": e.rest_body()}),
            )
        })?;
    let order = st
        .world
        .exec
        .inventory
        .order(id)
        .map_err(|e| (500, json!({"error": e.rendered()})))?
        .clone();
    let mut data = OrderData::default();
    let tops: Vec<u64> = order
        .items
        .iter()
        .filter(|i| i.parent_item_id.is_none())
        .map(|i| i.item_id)
        .collect();
    for (item_id, price) in tops.into_iter().zip(prices) {
        data.prices.insert(item_id, price);
    }
    if let Some(c) = body.get("customer") {
        let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(e) = s("email") {
            data.customer_email = e;
        }
        if let Some(f) = s("firstname") {
            data.customer_firstname = f.clone();
            data.address.firstname = f;
        }
        if let Some(l) = s("lastname") {
            data.customer_lastname = l.clone();
            data.address.lastname = l;
        }
        data.customer_id = c.get("id").and_then(Value::as_u64);
    }
    if let Some(a) = body.get("address") {
        let mut merged = serde_json::to_value(&data.address).unwrap_or(Value::Null);
        if let (Some(m), Some(p)) = (merged.as_object_mut(), a.as_object()) {
            for (k, v) in p {
                m.insert(k.clone(), v.clone());
            }
        }
        data.address = serde_json::from_value(merged).map_err(|e| bad(format!("address: {e}")))?;
    }
    if let Some(s) = body.get("shipping") {
        if let Some(a) = s.get("amount").and_then(decimal_from_json) {
            data.shipping_amount = a;
        }
        if let Some(t) = s.get("tax_percent").and_then(decimal_from_json) {
            data.shipping_tax_percent = t;
        }
        if let Some(m) = s.get("method").and_then(Value::as_str) {
            data.shipping_method = m.to_owned();
        }
        if let Some(d) = s.get("description").and_then(Value::as_str) {
            data.shipping_description = d.to_owned();
        }
    }
    if let Some(c) = body.get("currency").and_then(Value::as_str) {
        data.currency = c.to_owned();
    }
    if let Some(p) = body.get("payment_method").and_then(Value::as_str) {
        data.payment_method = p.to_owned();
    }
    st.world.sales.orders.insert(id.0, data);
    let inv = &st.world.exec.inventory;
    Ok(order_json(inv, &st.world.sales, &order))
}
