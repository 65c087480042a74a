//! Credit memos created from the order (the order page's "Credit Memo", refunded offline):
//! `CreditmemoFactory::createByOrder()` with `initData()`, the credit-memo totals collectors
//! (Subtotal 50, Discount 150, Shipping 200, Tax 250, Cost 300, Grand 400),
//! `Creditmemo::isValidGrandTotal()`, `CreditmemoService::refund()` validation and
//! `RefundOperation`, and the order save.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{CreditmemoRecord, Order, OrderItem, Pair};
use super::num::{locale_get_number, php_qty_eq, php_to_float};
use super::state::{self, Loaded, persist};
use super::{Document, Rejection, RejectionStage};
use crate::php::double::{Calculator, D2, Dbl};
use crate::tax::documents::{
    Amount2, CreditmemoBefore, DocLine, OrderItemTax, OrderTaxForCreditmemo, creditmemo_tax,
};

/// A posted adjustment: an amount in base currency, or a percentage of the order's grand total
/// (`"N%"`, which Magento takes from the order-currency grand total, even for the base amount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Adjustment {
    Amount(Decimal),
    Percent(Decimal),
}

impl Adjustment {
    /// `CreditmemoFactory::parseAdjustmentAmount()`: trim, a trailing `%` makes it a percentage,
    /// the number goes through `Locale\Format::getNumber()`.
    pub fn parse_posted(text: &str) -> Adjustment {
        let t = text.trim();
        let n = locale_get_number(t);
        if t.ends_with('%') {
            Adjustment::Percent(n)
        } else {
            Adjustment::Amount(n)
        }
    }

    /// The base amount `Creditmemo::setAdjustmentAmount()` stores, and its order-currency twin.
    pub fn amounts(self, order: &Order) -> Amount2 {
        self.amounts_dbl(order).dec()
    }

    fn amounts_dbl(self, order: &Order) -> D2 {
        let base = match self {
            Adjustment::Amount(a) => Dbl::of(a).round2(),
            Adjustment::Percent(p) => Dbl::opt(order.grand_total.map(|g| g.value))
                .percent_of(Dbl::of(p))
                .round2(),
        };
        D2::new((base * Dbl::of(order.base_to_order_rate)).round2(), base)
    }
}

impl fmt::Display for Adjustment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Adjustment::Amount(a) => write!(f, "{}", a.normalize()),
            Adjustment::Percent(p) => write!(f, "{}%", p.normalize()),
        }
    }
}

impl From<Adjustment> for String {
    fn from(a: Adjustment) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Adjustment {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        let body = t.strip_suffix('%').unwrap_or(t).trim();
        let n: Decimal = body
            .parse()
            .map_err(|_| format!("adjustment '{s}': expected an amount or 'N%'"))?;
        Ok(if t.ends_with('%') {
            Adjustment::Percent(n)
        } else {
            Adjustment::Amount(n)
        })
    }
}

/// What the admin posts to `createByOrder()`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditmemoRequest {
    /// Quantity per order item id. Empty: refund everything refundable (what the "new credit
    /// memo" page starts from); otherwise a line that is not listed refunds 0.
    #[serde(with = "super::model::item_map")]
    pub qtys: BTreeMap<u32, Decimal>,
    /// Shipping to refund, base currency, including tax when `sales_display_shipping` is 2.
    /// `None` (the REST style) refunds whatever shipping is left.
    pub shipping_amount: Option<Decimal>,
    pub adjustment_positive: Option<Adjustment>,
    pub adjustment_negative: Option<Adjustment>,
}

impl CreditmemoRequest {
    /// The exact request array handed to `createByOrder()` (strings, as posted), read with PHP's
    /// rules: `(float)` quantities, `getNumber()` amounts, `"N%"` adjustments; `null` is unset.
    pub fn from_posted(posted: &Value) -> CreditmemoRequest {
        let text = |v: &Value| -> Option<String> {
            match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        };
        let mut qtys = BTreeMap::new();
        if let Some(map) = posted.get("qtys").and_then(Value::as_object) {
            for (k, v) in map {
                if let (Ok(id), Some(t)) = (k.trim().parse::<u32>(), text(v)) {
                    qtys.insert(id, php_to_float(&t));
                }
            }
        }
        let get = |k: &str| posted.get(k).and_then(text);
        CreditmemoRequest {
            qtys,
            shipping_amount: get("shipping_amount").map(|s| locale_get_number(&s)),
            adjustment_positive: get("adjustment_positive").map(|s| Adjustment::parse_posted(&s)),
            adjustment_negative: get("adjustment_negative").map(|s| Adjustment::parse_posted(&s)),
        }
    }
}

/// One credit-memo line as the collectors left it. `None` is a field no collector set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditmemoItem {
    pub order_item_id: u32,
    /// The quantity as set by the factory (`(float)` of the posted value).
    pub qty: Decimal,
    pub price: Amount2,
    pub price_incl_tax: Pair,
    pub base_cost: Option<Decimal>,
    pub row_total: Amount2,
    pub row_total_incl_tax: Pair,
    pub tax_amount: Pair,
    pub discount_tax_compensation_amount: Pair,
    pub discount_amount: Pair,
    /// `Creditmemo\Item::isLast()` when the totals were collected.
    pub is_last: bool,
}

/// A credit memo right after `collectTotals()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creditmemo {
    /// `Creditmemo::isLast()` when the totals were collected.
    pub is_last: bool,
    /// The Tax collector's "partial shipping refund" flag, which switches the remainder off.
    pub partial_shipping_refund: bool,
    pub total_qty: Decimal,
    pub subtotal: Amount2,
    pub subtotal_incl_tax: Amount2,
    /// Negative (a discount reduces the refund) — positive after the negative-shipping-discount
    /// quirk.
    pub discount_amount: Amount2,
    /// The pro-rata shipping discount inside `discount_amount` (unrounded, as Magento leaves it).
    pub shipping_discount: Amount2,
    pub shipping_amount: Amount2,
    pub shipping_incl_tax: Amount2,
    pub shipping_tax_amount: Amount2,
    pub tax_amount: Amount2,
    pub discount_tax_compensation_amount: Amount2,
    pub adjustment_positive: Pair,
    pub adjustment_negative: Pair,
    pub adjustment: Amount2,
    pub base_cost: Decimal,
    pub grand_total: Amount2,
    pub items: Vec<CreditmemoItem>,
}

/// `Magento\Directory\Model\Currency::format()` / `formatTxt()` as the vectors show it:
/// symbol and two decimals.
pub fn format_money(amount: Decimal, currency: &str) -> String {
    let symbol = match currency {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        _ => "",
    };
    let rounded = Dbl::of(amount).round2().dec();
    let text = format!("{:.2}", rounded);
    if symbol.is_empty() {
        format!("{currency} {text}")
    } else {
        format!("{symbol}{text}")
    }
}

fn collect_error(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionStage::Collect, message)
}

fn division_by_zero(file_line: &str) -> Rejection {
    Rejection::new(
        RejectionStage::PhpError,
        format!("DivisionByZeroError: Division by zero ({file_line})"),
    )
}

/// `CreditmemoFactory::createByOrder()` + `collectTotals()`.
pub fn collect_creditmemo(
    order: &Order,
    request: &CreditmemoRequest,
) -> Result<Creditmemo, Rejection> {
    let cfg = &order.config;
    let display_incl = cfg.display_shipping_incl_tax();
    let incl_after = cfg.shipping_incl_tax_with_tax_after_discount();
    let mut calc = Calculator::new();

    // Items: every (non-dummy) order item; `canRefundNoDummyItem` only refuses qty_to_refund < 0.
    struct Line<'a> {
        oi: &'a OrderItem,
        raw: Decimal,
        qty: Decimal,
        last: bool,
    }
    let mut lines = Vec::with_capacity(order.items.len());
    let mut total_qty = Decimal::ZERO;
    for oi in &order.items {
        let raw = match request.qtys.get(&oi.item_id) {
            Some(q) => *q,
            None if request.qtys.is_empty() => oi.qty_to_refund(),
            None => Decimal::ZERO,
        };
        total_qty += raw;
        let qty = oi.process_qty(raw);
        lines.push(Line {
            oi,
            raw,
            qty,
            last: php_qty_eq(qty, oi.qty_to_refund()),
        });
    }

    // initData(): the posted shipping goes into base_shipping_amount and base_shipping_incl_tax;
    // adjustments are stored rounded (percentages of the order grand total).
    let posted_shipping = request.shipping_amount.map(Dbl::of);
    let adjustment_positive = request.adjustment_positive.map(|a| a.amounts_dbl(order));
    let adjustment_negative = request.adjustment_negative.map(|a| a.amounts_dbl(order));

    // Subtotal: Creditmemo\Item::calcRowTotal() (processQty() refuses too large a quantity).
    let mut rows = Vec::with_capacity(lines.len());
    let mut rows_incl = Vec::with_capacity(lines.len());
    let mut subtotal = D2::ZERO;
    let mut subtotal_incl = D2::ZERO;
    for l in &lines {
        let oi = l.oi;
        if l.qty > oi.qty_to_refund() {
            return Err(collect_error(format!(
                "We found an invalid quantity to refund item \"{}\".",
                oi.name
            )));
        }
        let q = Dbl::of(l.qty);
        let invoiced = Dbl::of(oi.qty_invoiced);
        let mut row = D2::of(oi.row_invoiced) - D2::opt(oi.amount_refunded);
        if !l.last && invoiced > Dbl::ZERO {
            let available = invoiced - Dbl::of(oi.qty_refunded);
            row = calc.pair(row.map(|x| x / available * q), false);
        }
        let ordered = Dbl::of(oi.qty_ordered);
        let incl = oi
            .row_total_incl_tax
            .map(|incl| calc.including(D2::of(incl).map(|x| x / ordered * q)));
        subtotal += row;
        subtotal_incl += incl.unwrap_or(D2::ZERO);
        rows.push(row);
        rows_incl.push(incl);
    }
    let mut grand = subtotal;

    // Discount: the shipping share first, from the memo's base shipping amount — which, when
    // none (or 0) was posted, is derived from the order fields the `to_cm` fieldset copied:
    // base_shipping_incl_tax − base_shipping_tax_amount (negative after a posted "0").
    let order_shipping = D2::opt(order.shipping_amount);
    let order_shipping_incl = D2::opt(order.shipping_incl_tax);
    let mut discount = D2::ZERO;
    let mut base_shipping_for_discount = posted_shipping.unwrap_or(Dbl::ZERO);
    if !base_shipping_for_discount.truthy() {
        let incl = posted_shipping.unwrap_or(order_shipping_incl.b);
        let tax = D2::opt(order.shipping_tax_amount).b;
        base_shipping_for_discount = if display_incl { incl } else { incl - tax };
    }
    if base_shipping_for_discount.truthy() && order_shipping.b <= Dbl::ZERO {
        return Err(collect_error(
            "You can not refund shipping if there is no shipping amount.",
        ));
    }
    let mut shipping_discount = D2::ZERO;
    if base_shipping_for_discount.truthy() {
        let (order_base, order_value) = if display_incl {
            (order_shipping_incl.b, order_shipping_incl.v)
        } else {
            (order_shipping.b, order_shipping.v)
        };
        if !order_base.truthy() {
            return Err(division_by_zero("Creditmemo/Total/Discount.php"));
        }
        let base_sd =
            base_shipping_for_discount * D2::opt(order.shipping_discount_amount).b / order_base;
        let sd = order_value * base_sd / order_base;
        shipping_discount = D2::new(sd, base_sd);
        discount += shipping_discount;
    }
    let mut discounts = Vec::with_capacity(lines.len());
    for l in &lines {
        let oi = l.oi;
        let invoiced = D2::opt(oi.discount_invoiced);
        if !invoiced.v.truthy() {
            discounts.push(None);
            continue;
        }
        let mut d = invoiced - D2::opt(oi.discount_refunded);
        if !l.last {
            let available = Dbl::of(oi.qty_invoiced) - Dbl::of(oi.qty_refunded);
            let q = Dbl::of(l.raw);
            d = calc.pair(d.map(|x| x / available * q), true);
        }
        discount += d;
        discounts.push(Some(d));
    }
    grand = grand - discount;

    // Shipping.
    let allowed = order_shipping - D2::opt(order.shipping_refunded);
    let allowed_incl_value = if incl_after {
        let mut r = order_shipping_incl.v;
        for m in &order.creditmemos {
            r -= D2::opt(m.shipping_incl_tax).v;
        }
        r
    } else {
        allowed.v + (D2::opt(order.shipping_tax_amount).v - D2::opt(order.shipping_tax_refunded).v)
    };
    let allowed_incl_base = {
        let mut r = order_shipping_incl.b;
        if incl_after {
            for m in &order.creditmemos {
                r -= D2::opt(m.shipping_incl_tax).b;
            }
        } else {
            r -= D2::opt(order.shipping_refunded).b + D2::opt(order.shipping_tax_refunded).b;
        }
        r.max(Dbl::ZERO)
    };
    let (shipping, shipping_incl) = match posted_shipping {
        Some(posted) => {
            let desired = posted.round2();
            let max_allowed = if display_incl {
                allowed_incl_base
            } else {
                allowed.b
            };
            let original_total = if display_incl {
                order_shipping_incl.b
            } else {
                order_shipping.b
            };
            // "($x < $y + 0.0001) means ($x <= $y) for floats"
            let within = desired < max_allowed.round2() + Dbl::epsilon();
            if !within {
                return Err(collect_error(format!(
                    "Maximum shipping amount allowed to refund is: {}",
                    format_money(max_allowed.dec(), &order.base_currency_code)
                )));
            }
            let ratio = if original_total > Dbl::ZERO {
                desired / original_total
            } else {
                Dbl::ZERO
            };
            let shipping = if desired > max_allowed - Dbl::epsilon() {
                allowed
            } else {
                order_shipping.map(|x| (x * ratio).round2())
            };
            (shipping, order_shipping_incl.map(|x| (x * ratio).round2()))
        }
        None => (
            allowed,
            D2::new(allowed_incl_value.round2(), allowed_incl_base.round2()),
        ),
    };
    grand += shipping;

    // Tax.
    let memo_is_last = if lines.is_empty() {
        !order
            .items
            .iter()
            .any(|i| i.qty_to_refund() > Decimal::ZERO)
    } else {
        lines.iter().all(|l| l.last)
    };
    let tax_lines: Vec<(&OrderItem, Decimal, bool)> =
        lines.iter().map(|l| (l.oi, l.raw, l.last)).collect();
    let tax = tax_step(
        order,
        &tax_lines,
        memo_is_last,
        shipping,
        incl_after,
        &mut calc,
    )?;
    grand = grand + tax.tax + tax.dtc;

    // Cost.
    let mut base_cost = Dbl::ZERO;
    for l in &lines {
        base_cost += Dbl::opt(l.oi.base_cost) * Dbl::of(l.raw);
    }

    // Grand: adjustments.
    let pos = adjustment_positive.unwrap_or(D2::ZERO);
    let neg = adjustment_negative.unwrap_or(D2::ZERO);
    grand = grand + pos - neg;
    let adjustment = pos - neg;

    let items = lines
        .iter()
        .enumerate()
        .map(|(i, l)| CreditmemoItem {
            order_item_id: l.oi.item_id,
            qty: l.raw,
            price: l.oi.price,
            price_incl_tax: l.oi.price_incl_tax,
            base_cost: l.oi.base_cost,
            row_total: rows[i].dec(),
            row_total_incl_tax: rows_incl[i].map(D2::dec),
            tax_amount: tax.lines[i].map(|t| t.0.dec()),
            discount_tax_compensation_amount: tax.lines[i].map(|t| t.1.dec()),
            discount_amount: discounts[i].map(D2::dec),
            is_last: l.last,
        })
        .collect();
    Ok(Creditmemo {
        is_last: memo_is_last,
        partial_shipping_refund: tax.partial_shipping_refund,
        total_qty,
        subtotal: subtotal.dec(),
        subtotal_incl_tax: subtotal_incl.dec(),
        discount_amount: (-discount).dec(),
        shipping_discount: shipping_discount.dec(),
        shipping_amount: shipping.dec(),
        shipping_incl_tax: shipping_incl.dec(),
        shipping_tax_amount: tax.shipping_tax.dec(),
        tax_amount: tax.tax.dec(),
        discount_tax_compensation_amount: tax.dtc.dec(),
        adjustment_positive: adjustment_positive.map(D2::dec),
        adjustment_negative: adjustment_negative.map(D2::dec),
        adjustment: adjustment.dec(),
        base_cost: base_cost.dec(),
        grand_total: grand.dec(),
        items,
    })
}

/// What `Creditmemo\Total\Tax` produced.
struct TaxStep {
    lines: Vec<Option<(D2, D2)>>,
    tax: D2,
    dtc: D2,
    shipping_tax: D2,
    partial_shipping_refund: bool,
}

/// `Creditmemo\Total\Tax::collect()` for an order-based memo:
/// [`crate::tax::documents::creditmemo_tax`] on this document's rounder, with the order as the
/// database returns it (`shipping_discount_tax_compensation_refunded` is not a column, so it
/// reads NULL), and PHP's `DivisionByZeroError` when the order has no shipping amount but the
/// pro-rata shipping branch runs (magento/magento2 #36800).
fn tax_step(
    order: &Order,
    lines: &[(&OrderItem, Decimal, bool)],
    memo_is_last: bool,
    memo_shipping: D2,
    incl_after: bool,
    calc: &mut Calculator,
) -> Result<TaxStep, Rejection> {
    let z = |p: Pair| p.unwrap_or_default();
    let doc_lines: Vec<DocLine> = lines
        .iter()
        .map(|&(oi, qty, last)| DocLine {
            order_item: OrderItemTax {
                qty_ordered: oi.qty_ordered,
                qty_invoiced: oi.qty_invoiced,
                qty_refunded: oi.qty_refunded,
                tax: z(oi.tax_amount),
                tax_invoiced: z(oi.tax_invoiced),
                tax_refunded: z(oi.tax_refunded),
                dtc: z(oi.discount_tax_compensation_amount),
                dtc_invoiced: z(oi.discount_tax_compensation_invoiced),
                dtc_refunded: z(oi.discount_tax_compensation_refunded),
                has_tax: true,
                is_dummy: false,
            },
            qty,
            is_last: last,
        })
        .collect();
    let order_tax = OrderTaxForCreditmemo {
        tax_invoiced: z(order.tax_invoiced),
        tax_refunded: z(order.tax_refunded),
        dtc_invoiced: z(order.discount_tax_compensation_invoiced),
        dtc_refunded: z(order.discount_tax_compensation_refunded),
        shipping_tax: z(order.shipping_tax_amount),
        shipping_tax_refunded: z(order.shipping_tax_refunded),
        shipping_dtc: z(order.shipping_discount_tax_compensation_amount),
        shipping_dtc_refunded: Amount2::ZERO,
        shipping_amount: order.shipping_amount.map(|a| a.value),
        base_shipping_amount: order.shipping_amount.map(|a| a.base),
        base_shipping_refunded: z(order.shipping_refunded).base,
        shipping_discount_amount: order.shipping_discount_amount.map(|a| a.value),
    };
    let shipping = memo_shipping.dec();
    let before = CreditmemoBefore {
        shipping_amount: Some(shipping.value),
        base_shipping_amount: Some(shipping.base),
        ..CreditmemoBefore::default()
    };
    let r = creditmemo_tax(
        &order_tax,
        &doc_lines,
        memo_is_last,
        &before,
        None,
        incl_after,
        calc,
    )
    .map_err(|_| division_by_zero("Creditmemo/Total/Tax.php:139"))?;
    Ok(TaxStep {
        lines: r
            .lines
            .iter()
            .map(|l| l.map(|t| (D2::of(t.tax), D2::of(t.dtc))))
            .collect(),
        tax: D2::of(r.tax),
        dtc: D2::of(r.dtc),
        shipping_tax: D2::of(r.shipping_tax),
        partial_shipping_refund: r.partial_shipping_refund,
    })
}

/// The shipping amount the "new credit memo" page pre-fills: a preview memo refunding
/// everything (`createByOrder($order, ['qtys' => []])`), its base shipping amount (incl. tax
/// when `sales_display_shipping` is 2), rounded to cents.
pub fn admin_default_shipping_amount(order: &Order) -> Result<Decimal, Rejection> {
    let preview = collect_creditmemo(order, &CreditmemoRequest::default())?;
    let amount = if order.config.display_shipping_incl_tax() {
        preview.shipping_incl_tax.base
    } else {
        preview.shipping_amount.base
    };
    Ok(Dbl::of(amount).round2().dec())
}

/// `CreditmemoService::validateForRefund()`: the memo must not take `base_total_refunded` above
/// `base_total_paid` (both rounded to cents). Returns the amount still available when it would.
pub fn refund_overdraw(order: &Order, memo: &Creditmemo) -> Option<Decimal> {
    let refunded = Dbl::opt(order.total_refunded.map(|a| a.base));
    let paid = Dbl::opt(order.total_paid.map(|a| a.base));
    if (refunded + Dbl::of(memo.grand_total.base)).round2() > paid.round2() {
        Some((paid - refunded).dec())
    } else {
        None
    }
}

/// `Adminhtml\Order\Creditmemo\Save` (offline refund): refuse if the order cannot be
/// credit-memoed, create and collect, refuse an invalid grand total, validate against the amount
/// paid, run `RefundOperation` (per-memo cent rounding of `total_refunded`), then
/// `Handler\State::check()` and persist (4 dp).
pub fn create_creditmemo(
    order: &Order,
    request: &CreditmemoRequest,
) -> Result<(Creditmemo, Order), Rejection> {
    if !state::can_creditmemo(order, Loaded::FromDatabase) {
        return Err(Rejection::new(
            RejectionStage::CanCreditmemo,
            "We can't create credit memo for the order.",
        ));
    }
    let memo = collect_creditmemo(order, request)?;
    if memo.grand_total.value <= Decimal::ZERO && !order.config.allow_zero_grandtotal_creditmemo {
        return Err(Rejection::new(
            RejectionStage::ValidGrandTotal,
            "The credit memo's total must be positive.",
        )
        .with_document(Document::Creditmemo(memo)));
    }
    if let Some(available) = refund_overdraw(order, &memo) {
        let mut rej = Rejection::new(
            RejectionStage::Refund,
            format!(
                "The most money available to refund is {}.",
                format_money(available, &order.base_currency_code)
            ),
        )
        .with_document(Document::Creditmemo(memo));
        rej.available_refund = Some(available);
        return Err(rej);
    }
    let mut o = order.clone();
    refund(&mut o, &memo);
    state::check(&mut o, false);
    persist(&mut o);
    Ok((memo, o))
}

/// `$x + $y` on a nullable column, as PHP computes it (the result is always set).
fn add(p: Pair, a: D2) -> Pair {
    Some((D2::opt(p) + a).dec())
}

/// `RefundOperation::execute()` (offline).
fn refund(o: &mut Order, memo: &Creditmemo) {
    for item in &memo.items {
        if item.qty <= Decimal::ZERO {
            continue;
        }
        let Some(oi) = o.items.iter_mut().find(|x| x.item_id == item.order_item_id) else {
            continue;
        };
        let q = oi.process_qty(item.qty);
        oi.qty_refunded = (Dbl::of(oi.qty_refunded) + Dbl::of(q)).dec();
        oi.tax_refunded = add(oi.tax_refunded, D2::opt(item.tax_amount));
        oi.discount_tax_compensation_refunded = add(
            oi.discount_tax_compensation_refunded,
            D2::opt(item.discount_tax_compensation_amount),
        );
        oi.amount_refunded = add(oi.amount_refunded, D2::of(item.row_total));
        oi.discount_refunded = add(oi.discount_refunded, D2::opt(item.discount_amount));
    }
    let grand = D2::of(memo.grand_total);
    // total_refunded is rounded to cents on every memo.
    o.total_refunded = Some((D2::opt(o.total_refunded) + grand).map(Dbl::round2).dec());
    o.subtotal_refunded = add(o.subtotal_refunded, D2::of(memo.subtotal));
    o.tax_refunded = add(o.tax_refunded, D2::of(memo.tax_amount));
    o.discount_tax_compensation_refunded = add(
        o.discount_tax_compensation_refunded,
        D2::of(memo.discount_tax_compensation_amount),
    );
    o.shipping_refunded = add(o.shipping_refunded, D2::of(memo.shipping_amount));
    o.shipping_tax_refunded = add(o.shipping_tax_refunded, D2::of(memo.shipping_tax_amount));
    o.adjustment_positive = add(o.adjustment_positive, D2::opt(memo.adjustment_positive));
    o.adjustment_negative = add(o.adjustment_negative, D2::opt(memo.adjustment_negative));
    o.discount_refunded = add(o.discount_refunded, D2::of(memo.discount_amount));
    o.total_offline_refunded = add(o.total_offline_refunded, grand);
    o.base_total_invoiced_cost =
        Some((Dbl::opt(o.base_total_invoiced_cost) - Dbl::of(memo.base_cost)).dec());
    o.creditmemos.push(CreditmemoRecord {
        shipping_incl_tax: Some(memo.shipping_incl_tax),
        grand_total: memo.grand_total,
    });
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;
    use serde_json::json;

    use super::*;
    use crate::sales::fixtures::{Line, order};
    use crate::sales::model::ShippingDisplay;
    use crate::sales::{InvoiceRequest, create_invoice};

    fn invoiced(o: &Order) -> Order {
        create_invoice(o, &InvoiceRequest::all())
            .expect("invoiced")
            .1
    }

    fn memo(qtys: &[(u32, Decimal)], shipping: Option<Decimal>) -> CreditmemoRequest {
        CreditmemoRequest {
            qtys: qtys.iter().copied().collect(),
            shipping_amount: shipping,
            ..CreditmemoRequest::default()
        }
    }

    #[test]
    fn a_percent_adjustment_is_a_share_of_the_order_currency_grand_total() {
        let mut o = order(
            &[Line(1, dec!(100), dec!(0), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        o.grand_total = Some(Amount2::new(dec!(123.45), dec!(82.30)));
        o.base_to_order_rate = dec!(1.5);
        // base: round(123.45 × 10 / 100) = 12.35 (taken from the order currency!);
        // order currency: round(12.35 × 1.5) = 18.53
        assert_eq!(
            Adjustment::parse_posted("10%").amounts(&o),
            Amount2::new(dec!(18.53), dec!(12.35))
        );
        assert_eq!(
            Adjustment::parse_posted(" 2,5 ").amounts(&o),
            Amount2::new(dec!(3.75), dec!(2.5))
        );
    }

    #[test]
    fn posted_values_are_read_like_php() {
        assert_eq!(
            Adjustment::parse_posted("12.5%"),
            Adjustment::Percent(dec!(12.5))
        );
        assert_eq!(
            Adjustment::parse_posted("$ 1,234.50"),
            Adjustment::Amount(dec!(1234.50))
        );
        let r = CreditmemoRequest::from_posted(&json!({
            "qtys": {"1": "2", "2": "x", "3": 1},
            "shipping_amount": "4,95",
            "adjustment_negative": "3%",
            "adjustment_positive": null
        }));
        assert_eq!(r.qtys.get(&1), Some(&dec!(2)));
        assert_eq!(r.qtys.get(&2), Some(&Decimal::ZERO));
        assert_eq!(r.qtys.get(&3), Some(&dec!(1)));
        assert_eq!(r.shipping_amount, Some(dec!(4.95)));
        assert_eq!(r.adjustment_negative, Some(Adjustment::Percent(dec!(3))));
        assert_eq!(r.adjustment_positive, None);
        assert_eq!(
            serde_json::to_value(Adjustment::Percent(dec!(3))).ok(),
            Some(json!("3%"))
        );
        assert_eq!(
            serde_json::from_value::<Adjustment>(json!("1.50")).ok(),
            Some(Adjustment::Amount(dec!(1.50)))
        );
    }

    #[test]
    fn total_refunded_is_rounded_to_cents_on_every_memo() {
        // 2 × 10.00, shipping 10.00 with a 3.33 shipping discount: grand total 26.67.
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(0), dec!(0))],
            dec!(10),
            dec!(0),
            dec!(3.33),
        ));
        let (first, after) =
            create_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(5)))).expect("refunded");
        // 10 − 5 × 3.33 / 10 + 5: the pro-rata shipping discount is not rounded (and is a
        // double: 1.6649999999999998).
        assert_eq!(first.shipping_discount.value.round_dp(10), dec!(1.665));
        assert_eq!(first.grand_total.value.round_dp(10), dec!(13.335));
        assert_eq!(after.total_refunded.map(|t| t.value), Some(dec!(13.34)));
        // The second half asks round(13.34 + 13.335) = 26.68 > 26.67 paid.
        let second = create_creditmemo(&after, &memo(&[(1, dec!(1))], Some(dec!(5))));
        let rej = second.expect_err("refused");
        assert_eq!(rej.stage, RejectionStage::Refund);
        // base_total_paid − base_total_refunded, a double: 26.67 − 13.34
        assert_eq!(
            rej.available_refund.map(|a| a.round_dp(10)),
            Some(dec!(13.33))
        );
        assert_eq!(rej.message, "The most money available to refund is $13.33.");
    }

    #[test]
    fn posting_zero_shipping_gives_a_negative_shipping_discount() {
        // Shipping 10.00 taxed 2.00, shipping discount 1.00.
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(10),
            dec!(2),
            dec!(1),
        ));
        let m = collect_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(0)))).expect("collected");
        // "shipping" for the discount = 0 − 2.00 (shipping tax) → discount −2 × 1 / 10
        assert_eq!(m.shipping_discount.value, dec!(-0.2));
        assert_eq!(m.discount_amount.value, dec!(0.2));
        assert_eq!(m.grand_total.value, dec!(11.2)); // 10 + 1 tax + 0.20
        assert!(m.partial_shipping_refund);
    }

    #[test]
    fn free_shipping_shown_incl_tax_with_tax_after_discount_dies_in_magento() {
        let mut o = order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        o.config.sales_display_shipping = ShippingDisplay::IncludingTax;
        o.config.apply_tax_after_discount = true;
        let o = invoiced(&o);
        let r = create_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(0))));
        assert_eq!(
            r.map(|_| ()).map_err(|e| e.stage),
            Err(RejectionStage::PhpError)
        );
    }

    #[test]
    fn shipping_above_what_is_left_is_refused_and_the_default_is_what_is_left() {
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(10),
            dec!(2),
            dec!(0),
        ));
        let too_much = create_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(10.01))));
        let rej = too_much.expect_err("refused");
        assert_eq!(rej.stage, RejectionStage::Collect);
        assert_eq!(
            rej.message,
            "Maximum shipping amount allowed to refund is: $10.00"
        );
        let (_, after) =
            create_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(4)))).expect("refunded");
        assert_eq!(admin_default_shipping_amount(&after), Ok(dec!(6)));
        let mut incl = after.clone();
        incl.config.sales_display_shipping = ShippingDisplay::IncludingTax;
        // 12.00 incl. tax ordered; 4.00 + 0.80 tax refunded
        assert_eq!(admin_default_shipping_amount(&incl), Ok(dec!(7.2)));
    }

    #[test]
    fn a_quantity_above_what_is_refundable_is_refused_while_collecting() {
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        ));
        let r = collect_creditmemo(&o, &memo(&[(1, dec!(3))], None));
        let rej = r.expect_err("refused");
        assert_eq!(rej.stage, RejectionStage::Collect);
        assert_eq!(
            rej.message,
            "We found an invalid quantity to refund item \"Product 1\"."
        );
    }

    #[test]
    fn the_tax_step_refunds_pro_rata_tax_and_the_whole_shipping_tax() {
        // 3 units, tax 24.32; refund 1 with all the shipping: 24.32 / 3 = 8.1067 -> 8.11 on
        // the memo's own rounder, plus the order's shipping tax 2.45.
        let o = invoiced(&order(
            &[Line(3, dec!(297), dec!(24.32), dec!(0))],
            dec!(10),
            dec!(2.45),
            dec!(0),
        ));
        let m = collect_creditmemo(&o, &memo(&[(1, dec!(1))], Some(dec!(10)))).expect("collected");
        assert_eq!(m.items[0].tax_amount.map(|t| t.value), Some(dec!(8.11)));
        assert_eq!(m.shipping_tax_amount.value, dec!(2.45));
        assert_eq!(m.tax_amount.value.round_dp(10), dec!(10.56));
    }
}
