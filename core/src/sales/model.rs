//! The order as Magento's sales code sees it after loading it from the database: the
//! `sales_order` row, its `sales_order_item` rows, the store configuration the collectors read,
//! and the few facts about earlier invoices and credit memos that later documents look at.
//!
//! Amounts are `Option<Amount2>`: `None` is a NULL column (PHP `null`, which counts as 0 in
//! arithmetic but is *false* where `"0.0000"` is *true*), `Some` a stored value with its base
//! twin. Every value between two documents is what a `DECIMAL(…,4)` column returns.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SalesError;
use crate::tax::Algorithm;
use crate::tax::conformance::num;
use crate::tax::documents::Amount2;

/// A nullable pair of columns (`x` and `base_x`).
pub type Pair = Option<Amount2>;

/// `tax/sales_display/shipping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShippingDisplay {
    /// 1: excluding tax.
    #[default]
    ExcludingTax,
    /// 2: including tax.
    IncludingTax,
    /// 3: both.
    Both,
}

impl ShippingDisplay {
    pub fn from_config(v: i64) -> Option<Self> {
        match v {
            1 => Some(Self::ExcludingTax),
            2 => Some(Self::IncludingTax),
            3 => Some(Self::Both),
            _ => None,
        }
    }
}

/// The store configuration the sales documents depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesConfig {
    /// `tax/calculation/algorithm` (the order was built with it; documents do not read it).
    pub algorithm: Algorithm,
    pub price_includes_tax: bool,
    pub shipping_includes_tax: bool,
    /// `tax/calculation/apply_after_discount`.
    pub apply_tax_after_discount: bool,
    /// `tax/calculation/discount_tax` (discount on prices including tax).
    pub discount_tax: bool,
    /// `tax/sales_display/shipping`.
    pub sales_display_shipping: ShippingDisplay,
    /// `sales/zerograndtotal_creditmemo/allow_zero_grandtotal` (Magento default: true).
    pub allow_zero_grandtotal_creditmemo: bool,
}

impl Default for SalesConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::TotalBase,
            price_includes_tax: false,
            shipping_includes_tax: false,
            apply_tax_after_discount: true,
            discount_tax: false,
            sales_display_shipping: ShippingDisplay::ExcludingTax,
            allow_zero_grandtotal_creditmemo: true,
        }
    }
}

impl SalesConfig {
    /// `Tax\Model\Config::displaySalesShippingInclTax()`: only "including tax" (2), not "both".
    pub fn display_shipping_incl_tax(&self) -> bool {
        self.sales_display_shipping == ShippingDisplay::IncludingTax
    }

    /// `isShippingIncludeTaxWithTaxAfterDiscount()` of the credit-memo Shipping and Tax collectors.
    pub fn shipping_incl_tax_with_tax_after_discount(&self) -> bool {
        self.apply_tax_after_discount && self.display_shipping_incl_tax()
    }
}

/// `sales_order.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    #[default]
    New,
    PendingPayment,
    Processing,
    Complete,
    Closed,
    Canceled,
    Holded,
    PaymentReview,
}

impl OrderState {
    pub fn as_magento(self) -> &'static str {
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

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
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

    /// The default status of the state (`Order\Config::getStateDefaultStatus`, stock config).
    pub fn default_status(self) -> &'static str {
        match self {
            Self::New => "pending",
            Self::Holded => "holded",
            Self::PaymentReview => "payment_review",
            other => other.as_magento(),
        }
    }
}

/// A `sales_order_item` row (simple products: no parent/child "dummy" items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct OrderItem {
    pub item_id: u32,
    pub sku: String,
    pub name: String,
    pub product_type: String,
    pub is_virtual: bool,
    pub is_qty_decimal: bool,
    pub qty_ordered: Decimal,
    pub qty_invoiced: Decimal,
    pub qty_refunded: Decimal,
    pub qty_shipped: Decimal,
    pub qty_canceled: Decimal,
    pub price: Amount2,
    pub price_incl_tax: Pair,
    pub row_total: Amount2,
    pub row_total_incl_tax: Pair,
    pub tax_amount: Pair,
    pub tax_percent: Option<Decimal>,
    pub discount_amount: Pair,
    pub discount_percent: Option<Decimal>,
    pub discount_tax_compensation_amount: Pair,
    pub base_cost: Option<Decimal>,
    // running totals
    pub row_invoiced: Amount2,
    pub tax_invoiced: Pair,
    pub discount_tax_compensation_invoiced: Pair,
    pub discount_invoiced: Pair,
    pub amount_refunded: Pair,
    pub tax_refunded: Pair,
    pub discount_tax_compensation_refunded: Pair,
    pub discount_refunded: Pair,
}

impl OrderItem {
    /// `Order\Item::getQtyToInvoice()`.
    pub fn qty_to_invoice(&self) -> Decimal {
        (self.qty_ordered - self.qty_invoiced - self.qty_canceled)
            .round_dp(8)
            .max(Decimal::ZERO)
    }

    /// `Order\Item::getQtyToRefund()`.
    pub fn qty_to_refund(&self) -> Decimal {
        (self.qty_invoiced - self.qty_refunded).max(Decimal::ZERO)
    }

    /// `Order\Item::getQtyToShip()`.
    pub fn qty_to_ship(&self) -> Decimal {
        (self.qty_ordered - self.qty_shipped.max(self.qty_refunded) - self.qty_canceled)
            .round_dp(8)
            .max(Decimal::ZERO)
    }

    /// The posted quantity as `processQty()` / `setInvoiceItemQuantity()` turn it into a
    /// quantity: `(int)` unless the item allows decimal quantities, negative becomes 0.
    pub fn process_qty(&self, raw: Decimal) -> Decimal {
        let q = if self.is_qty_decimal {
            raw
        } else {
            raw.trunc()
        };
        q.max(Decimal::ZERO)
    }
}

/// What later documents read from an earlier invoice (`sales_invoice` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct InvoiceRecord {
    /// `shipping_amount`: NULL unless this invoice carried the shipping (`"0.0000"` counts).
    pub shipping_amount: Option<Decimal>,
    /// `discount_amount`: always set by the Discount collector (`"0.0000"` counts).
    pub discount_amount: Option<Decimal>,
    pub grand_total: Amount2,
    pub is_canceled: bool,
}

/// What later documents read from an earlier credit memo (`sales_creditmemo` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CreditmemoRecord {
    pub shipping_incl_tax: Pair,
    pub grand_total: Amount2,
}

/// A `sales_order` row with its items and the store configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Order {
    pub increment_id: Option<String>,
    pub state: OrderState,
    pub status: String,
    pub is_virtual: bool,
    pub base_currency_code: String,
    pub order_currency_code: String,
    pub base_to_order_rate: Decimal,
    pub config: SalesConfig,

    // placement
    pub subtotal: Pair,
    pub subtotal_incl_tax: Pair,
    pub tax_amount: Pair,
    pub discount_amount: Pair,
    pub shipping_amount: Pair,
    pub shipping_incl_tax: Pair,
    pub shipping_tax_amount: Pair,
    pub shipping_discount_amount: Pair,
    pub discount_tax_compensation_amount: Pair,
    pub shipping_discount_tax_compensation_amount: Pair,
    pub grand_total: Pair,
    pub total_qty_ordered: Option<Decimal>,

    // invoicing
    pub subtotal_invoiced: Pair,
    pub tax_invoiced: Pair,
    pub discount_tax_compensation_invoiced: Pair,
    pub shipping_invoiced: Pair,
    pub discount_invoiced: Pair,
    pub total_invoiced: Pair,
    pub total_paid: Pair,
    pub base_total_invoiced_cost: Option<Decimal>,

    // refunding
    pub subtotal_refunded: Pair,
    pub tax_refunded: Pair,
    pub discount_tax_compensation_refunded: Pair,
    pub shipping_refunded: Pair,
    pub shipping_tax_refunded: Pair,
    pub discount_refunded: Pair,
    pub adjustment_positive: Pair,
    pub adjustment_negative: Pair,
    pub total_refunded: Pair,
    pub total_offline_refunded: Pair,

    pub items: Vec<OrderItem>,
    pub invoices: Vec<InvoiceRecord>,
    pub creditmemos: Vec<CreditmemoRecord>,
}

impl Order {
    /// The item with Magento id `item_id`.
    pub fn item(&self, item_id: u32) -> Option<&OrderItem> {
        self.items.iter().find(|i| i.item_id == item_id)
    }

    /// Build an order from Magento's rows, as the database returns them (`sales_order`,
    /// `sales_order_item[]`) and the store configuration (keys as in the sales-diff vectors:
    /// `algorithm`, `price_includes_tax`, `shipping_includes_tax`, `apply_tax_after_discount`,
    /// `apply_discount_on_prices_including_tax`, `sales_display_shipping`,
    /// `allow_zero_grandtotal_creditmemo`). Every malformed field is reported.
    pub fn from_magento(
        order: &Value,
        items: &[Value],
        config: &Value,
    ) -> Result<Order, SalesError> {
        let mut p = RowParser::default();
        let cfg = p.config(config);
        let state = match order.get("state").and_then(Value::as_str) {
            None => OrderState::New,
            Some(s) => OrderState::parse(s).unwrap_or_else(|| {
                p.bad("order.state", format!("unknown state '{s}'"));
                OrderState::New
            }),
        };
        let mut o = Order {
            increment_id: order
                .get("increment_id")
                .and_then(|v| v.as_str().map(str::to_owned)),
            state,
            status: order
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or(state.default_status())
                .to_owned(),
            is_virtual: p.flag(order, "order", "is_virtual"),
            base_currency_code: order
                .get("base_currency_code")
                .and_then(Value::as_str)
                .unwrap_or("USD")
                .to_owned(),
            order_currency_code: order
                .get("order_currency_code")
                .and_then(Value::as_str)
                .unwrap_or("USD")
                .to_owned(),
            base_to_order_rate: p
                .opt(order, "order", "base_to_order_rate")
                .unwrap_or(Decimal::ONE),
            config: cfg,
            ..Order::default()
        };
        let pair =
            |p: &mut RowParser, name: &str| p.pair(order, "order", name, &format!("base_{name}"));
        o.subtotal = pair(&mut p, "subtotal");
        o.subtotal_incl_tax = pair(&mut p, "subtotal_incl_tax");
        o.tax_amount = pair(&mut p, "tax_amount");
        o.discount_amount = pair(&mut p, "discount_amount");
        o.shipping_amount = pair(&mut p, "shipping_amount");
        o.shipping_incl_tax = pair(&mut p, "shipping_incl_tax");
        o.shipping_tax_amount = pair(&mut p, "shipping_tax_amount");
        o.shipping_discount_amount = pair(&mut p, "shipping_discount_amount");
        o.discount_tax_compensation_amount = pair(&mut p, "discount_tax_compensation_amount");
        o.shipping_discount_tax_compensation_amount = p.pair(
            order,
            "order",
            "shipping_discount_tax_compensation_amount",
            "base_shipping_discount_tax_compensation_amnt",
        );
        o.grand_total = pair(&mut p, "grand_total");
        o.total_qty_ordered = p.opt(order, "order", "total_qty_ordered");
        o.subtotal_invoiced = pair(&mut p, "subtotal_invoiced");
        o.tax_invoiced = pair(&mut p, "tax_invoiced");
        o.discount_tax_compensation_invoiced = pair(&mut p, "discount_tax_compensation_invoiced");
        o.shipping_invoiced = pair(&mut p, "shipping_invoiced");
        o.discount_invoiced = pair(&mut p, "discount_invoiced");
        o.total_invoiced = pair(&mut p, "total_invoiced");
        o.total_paid = pair(&mut p, "total_paid");
        o.base_total_invoiced_cost = p.opt(order, "order", "base_total_invoiced_cost");
        o.subtotal_refunded = pair(&mut p, "subtotal_refunded");
        o.tax_refunded = pair(&mut p, "tax_refunded");
        o.discount_tax_compensation_refunded = pair(&mut p, "discount_tax_compensation_refunded");
        o.shipping_refunded = pair(&mut p, "shipping_refunded");
        o.shipping_tax_refunded = pair(&mut p, "shipping_tax_refunded");
        o.discount_refunded = pair(&mut p, "discount_refunded");
        o.adjustment_positive = pair(&mut p, "adjustment_positive");
        o.adjustment_negative = pair(&mut p, "adjustment_negative");
        o.total_refunded = pair(&mut p, "total_refunded");
        o.total_offline_refunded = pair(&mut p, "total_offline_refunded");

        for (i, row) in items.iter().enumerate() {
            let ctx = format!("order_items[{i}]");
            let item = p.item(row, &ctx);
            if o.items.iter().any(|x| x.item_id == item.item_id) {
                p.bad(
                    format!("{ctx}.item_id"),
                    format!("duplicate item id {}", item.item_id),
                );
            }
            o.items.push(item);
        }
        if o.items.is_empty() {
            p.bad("order_items", "an order needs at least one item");
        }
        if o.base_to_order_rate <= Decimal::ZERO {
            p.bad("order.base_to_order_rate", "must be positive");
        }
        p.finish().map(|()| o)
    }
}

impl Order {
    /// Attach the order's earlier documents as the database returns them (`sales_invoice` and
    /// `sales_creditmemo` rows), for an order that is not new: later invoices read the invoices'
    /// `shipping_amount`, `discount_amount` and `state` (3 = canceled), later credit memos the
    /// memos' `shipping_incl_tax` / `base_shipping_incl_tax`, and `canCreditmemo()` of a
    /// zero-total order whether any memo exists.
    pub fn with_documents(
        mut self,
        invoices: &[Value],
        creditmemos: &[Value],
    ) -> Result<Order, SalesError> {
        let mut p = RowParser::default();
        for (i, row) in invoices.iter().enumerate() {
            let ctx = format!("invoices[{i}]");
            let state = p.opt(row, &ctx, "state");
            self.invoices.push(InvoiceRecord {
                shipping_amount: p.opt(row, &ctx, "shipping_amount"),
                discount_amount: p.opt(row, &ctx, "discount_amount"),
                grand_total: p
                    .pair(row, &ctx, "grand_total", "base_grand_total")
                    .unwrap_or_default(),
                is_canceled: state == Some(Decimal::from(3)),
            });
        }
        for (i, row) in creditmemos.iter().enumerate() {
            let ctx = format!("creditmemos[{i}]");
            self.creditmemos.push(CreditmemoRecord {
                shipping_incl_tax: p.pair(row, &ctx, "shipping_incl_tax", "base_shipping_incl_tax"),
                grand_total: p
                    .pair(row, &ctx, "grand_total", "base_grand_total")
                    .unwrap_or_default(),
            });
        }
        p.finish().map(|()| self)
    }
}

/// Collects every violation while reading rows.
#[derive(Debug, Default)]
struct RowParser {
    violations: Vec<super::Violation>,
}

impl RowParser {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(super::Violation {
            field: field.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), SalesError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(SalesError::Invalid {
                violations: self.violations,
            })
        }
    }

    /// A nullable numeric column: absent or null is `None`.
    fn opt(&mut self, row: &Value, ctx: &str, name: &str) -> Option<Decimal> {
        match row.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => match num(v) {
                Some(d) => Some(d),
                None => {
                    self.bad(
                        format!("{ctx}.{name}"),
                        format!("expected a number, got {v}"),
                    );
                    None
                }
            },
        }
    }

    /// A numeric column with a schema default.
    fn with_default(&mut self, row: &Value, ctx: &str, name: &str, default: Decimal) -> Decimal {
        match row.get(name) {
            None => default,
            Some(_) => self.opt(row, ctx, name).unwrap_or(default),
        }
    }

    fn pair(&mut self, row: &Value, ctx: &str, name: &str, base: &str) -> Pair {
        let v = self.opt(row, ctx, name);
        let b = self.opt(row, ctx, base);
        match (v, b) {
            (None, None) => None,
            (v, b) => Some(Amount2::new(v.unwrap_or_default(), b.unwrap_or_default())),
        }
    }

    /// A pair of nullable columns that default to 0 when the row does not mention them.
    fn pair_default0(&mut self, row: &Value, ctx: &str, name: &str, base: &str) -> Pair {
        if row.get(name).is_none() && row.get(base).is_none() {
            return Some(Amount2::ZERO);
        }
        self.pair(row, ctx, name, base)
    }

    fn flag(&mut self, row: &Value, ctx: &str, name: &str) -> bool {
        match row.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => match num(v) {
                Some(d) => !d.is_zero(),
                None => {
                    self.bad(
                        format!("{ctx}.{name}"),
                        format!("expected 0/1 or a boolean, got {v}"),
                    );
                    false
                }
            },
        }
    }

    fn text(row: &Value, name: &str) -> String {
        row.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    fn item(&mut self, row: &Value, ctx: &str) -> OrderItem {
        let item_id = match row.get("item_id").and_then(num) {
            Some(d) if d.fract().is_zero() && d > Decimal::ZERO && d <= Decimal::from(u32::MAX) => {
                u32::try_from(d.mantissa() / 10i128.pow(d.scale())).unwrap_or(0)
            }
            other => {
                self.bad(
                    format!("{ctx}.item_id"),
                    format!("expected a positive integer, got {other:?}"),
                );
                0
            }
        };
        let zero = Decimal::ZERO;
        let qty_ordered = self.with_default(row, ctx, "qty_ordered", zero);
        if qty_ordered <= zero {
            self.bad(format!("{ctx}.qty_ordered"), "must be positive");
        }
        let row_total = self.pair(row, ctx, "row_total", "base_row_total");
        if row_total.is_none() {
            self.bad(format!("{ctx}.row_total"), "missing (NOT NULL column)");
        }
        let price = self.pair(row, ctx, "price", "base_price");
        OrderItem {
            item_id,
            sku: Self::text(row, "sku"),
            name: Self::text(row, "name"),
            product_type: row
                .get("product_type")
                .and_then(Value::as_str)
                .unwrap_or("simple")
                .to_owned(),
            is_virtual: self.flag(row, ctx, "is_virtual"),
            is_qty_decimal: self.flag(row, ctx, "is_qty_decimal"),
            qty_ordered,
            qty_invoiced: self.with_default(row, ctx, "qty_invoiced", zero),
            qty_refunded: self.with_default(row, ctx, "qty_refunded", zero),
            qty_shipped: self.with_default(row, ctx, "qty_shipped", zero),
            qty_canceled: self.with_default(row, ctx, "qty_canceled", zero),
            price: price.unwrap_or_default(),
            price_incl_tax: self.pair(row, ctx, "price_incl_tax", "base_price_incl_tax"),
            row_total: row_total.unwrap_or_default(),
            row_total_incl_tax: self.pair(
                row,
                ctx,
                "row_total_incl_tax",
                "base_row_total_incl_tax",
            ),
            tax_amount: self.pair_default0(row, ctx, "tax_amount", "base_tax_amount"),
            tax_percent: self.opt(row, ctx, "tax_percent"),
            discount_amount: self.pair_default0(
                row,
                ctx,
                "discount_amount",
                "base_discount_amount",
            ),
            discount_percent: self.opt(row, ctx, "discount_percent"),
            discount_tax_compensation_amount: self.pair(
                row,
                ctx,
                "discount_tax_compensation_amount",
                "base_discount_tax_compensation_amount",
            ),
            base_cost: if row.get("base_cost").is_none() {
                Some(zero)
            } else {
                self.opt(row, ctx, "base_cost")
            },
            row_invoiced: self
                .pair(row, ctx, "row_invoiced", "base_row_invoiced")
                .unwrap_or_default(),
            tax_invoiced: self.pair_default0(row, ctx, "tax_invoiced", "base_tax_invoiced"),
            discount_tax_compensation_invoiced: self.pair(
                row,
                ctx,
                "discount_tax_compensation_invoiced",
                "base_discount_tax_compensation_invoiced",
            ),
            discount_invoiced: self.pair_default0(
                row,
                ctx,
                "discount_invoiced",
                "base_discount_invoiced",
            ),
            amount_refunded: self.pair_default0(
                row,
                ctx,
                "amount_refunded",
                "base_amount_refunded",
            ),
            tax_refunded: self.pair(row, ctx, "tax_refunded", "base_tax_refunded"),
            discount_tax_compensation_refunded: self.pair(
                row,
                ctx,
                "discount_tax_compensation_refunded",
                "base_discount_tax_compensation_refunded",
            ),
            discount_refunded: self.pair(row, ctx, "discount_refunded", "base_discount_refunded"),
        }
    }

    fn config(&mut self, c: &Value) -> SalesConfig {
        let d = SalesConfig::default();
        let algorithm = match c.get("algorithm") {
            None | Some(Value::Null) => d.algorithm,
            Some(v) => match v.as_str().and_then(Algorithm::parse) {
                Some(a) => a,
                None => {
                    self.bad("config.algorithm", format!("unknown algorithm {v}"));
                    d.algorithm
                }
            },
        };
        let display = match c.get("sales_display_shipping") {
            None | Some(Value::Null) => d.sales_display_shipping,
            Some(v) => {
                match num(v).and_then(|n| {
                    if n.fract().is_zero() {
                        i64::try_from(n.mantissa()).ok()
                    } else {
                        None
                    }
                }) {
                    Some(n) => ShippingDisplay::from_config(n).unwrap_or_else(|| {
                        self.bad(
                            "config.sales_display_shipping",
                            format!("expected 1, 2 or 3, got {v}"),
                        );
                        d.sales_display_shipping
                    }),
                    None => {
                        self.bad(
                            "config.sales_display_shipping",
                            format!("expected 1, 2 or 3, got {v}"),
                        );
                        d.sales_display_shipping
                    }
                }
            }
        };
        let mut flag_or = |name: &str, default: bool| {
            if c.get(name).is_none() {
                default
            } else {
                self.flag(c, "config", name)
            }
        };
        SalesConfig {
            algorithm,
            price_includes_tax: flag_or("price_includes_tax", d.price_includes_tax),
            shipping_includes_tax: flag_or("shipping_includes_tax", d.shipping_includes_tax),
            apply_tax_after_discount: flag_or(
                "apply_tax_after_discount",
                d.apply_tax_after_discount,
            ),
            discount_tax: flag_or("apply_discount_on_prices_including_tax", d.discount_tax),
            sales_display_shipping: display,
            allow_zero_grandtotal_creditmemo: flag_or(
                "allow_zero_grandtotal_creditmemo",
                d.allow_zero_grandtotal_creditmemo,
            ),
        }
    }
}

/// A map keyed by order item id, written with string keys (JSON objects) and read back from
/// them, also inside internally tagged enums (where serde cannot parse integer keys itself).
pub mod item_map {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<u32, Decimal>, s: S) -> Result<S::Ok, S::Error> {
        let as_text: BTreeMap<String, Decimal> =
            map.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        as_text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, Decimal>, D::Error> {
        let raw = BTreeMap::<String, Decimal>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                k.trim()
                    .parse::<u32>()
                    .map(|id| (id, v))
                    .map_err(|_| D::Error::custom(format!("order item id '{k}' is not a number")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_are_read_as_the_database_returns_them() {
        let order = json!({"state": "new", "status": "pending", "base_to_order_rate": 1.5,
            "grand_total": 15.0, "base_grand_total": 10.0, "shipping_amount": 0.0,
            "base_shipping_amount": 0.0, "subtotal_invoiced": null});
        let items = [json!({"item_id": 1, "qty_ordered": 2.0, "row_total": 15.0,
            "base_row_total": 10.0, "tax_amount": 0.0, "base_tax_amount": 0.0})];
        let config = json!({"algorithm": "UNIT_BASE_CALCULATION", "sales_display_shipping": 2,
            "apply_tax_after_discount": 1, "apply_discount_on_prices_including_tax": 0});
        let o = Order::from_magento(&order, &items, &config).expect("valid rows");
        assert_eq!(o.base_to_order_rate, dec!(1.5));
        assert_eq!(o.grand_total, Some(Amount2::new(dec!(15), dec!(10))));
        // "0.0000" is kept apart from NULL
        assert_eq!(o.shipping_amount, Some(Amount2::ZERO));
        assert_eq!(o.subtotal_invoiced, None);
        assert!(o.config.display_shipping_incl_tax());
        assert!(o.config.shipping_incl_tax_with_tax_after_discount());
        let item = &o.items[0];
        // schema defaults of the counters: 0 where the column has one, NULL otherwise
        assert_eq!(item.tax_invoiced, Some(Amount2::ZERO));
        assert_eq!(item.tax_refunded, None);
        assert_eq!(item.row_invoiced, Amount2::ZERO);
        assert_eq!(item.qty_to_invoice(), dec!(2));
    }

    #[test]
    fn earlier_documents_are_attached_from_their_rows() {
        let order = json!({"state": "processing", "grand_total": 10.0, "base_grand_total": 10.0});
        let items = [
            json!({"item_id": 1, "qty_ordered": 2.0, "qty_invoiced": 1.0, "row_total": 10.0,
            "base_row_total": 10.0}),
        ];
        let o = Order::from_magento(&order, &items, &json!({}))
            .and_then(|o| {
                o.with_documents(
                    &[json!({"shipping_amount": "0.0000", "discount_amount": "0.0000", "state": 2,
                        "grand_total": 5.0, "base_grand_total": 5.0})],
                    &[json!({"shipping_incl_tax": null, "base_shipping_incl_tax": null, "grand_total": 1.0})],
                )
            })
            .expect("valid rows");
        assert_eq!(o.invoices[0].shipping_amount, Some(Decimal::ZERO));
        assert!(!o.invoices[0].is_canceled);
        assert_eq!(o.creditmemos[0].shipping_incl_tax, None);
        let bad = o.with_documents(&[json!({"shipping_amount": "x"})], &[]);
        assert!(matches!(bad, Err(SalesError::Invalid { .. })));
    }

    #[test]
    fn every_malformed_field_is_reported() {
        let order = json!({"state": "shipped", "grand_total": "abc"});
        let items = [
            json!({"item_id": 0, "qty_ordered": -1}),
            json!({"item_id": 2, "qty_ordered": 1, "row_total": 1}),
        ];
        let config = json!({"sales_display_shipping": 7});
        let Err(SalesError::Invalid { violations }) = Order::from_magento(&order, &items, &config)
        else {
            panic!("expected violations");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "config.sales_display_shipping",
                "order.state",
                "order.grand_total",
                "order_items[0].item_id",
                "order_items[0].qty_ordered",
                "order_items[0].row_total",
            ]
        );
    }
}
