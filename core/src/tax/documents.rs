//! The invoice and credit-memo **tax** collectors (`Sales\Model\Order\Invoice\Total\Tax`,
//! `Sales\Model\Order\Creditmemo\Total\Tax`), Magento 2.4.6-p1.
//!
//! They share the document's rounder ([`Calculator`], `Framework\Math\Calculator`) with the
//! collectors that ran before them (subtotal, discount, shipping), so the caller passes it in;
//! [`crate::sales`] runs the whole collector chain on it, the conformance vectors run the tax
//! collector alone. Like Magento, they compute on PHP doubles ([`crate::php::double`]): inputs
//! and outputs are `Decimal`, and an output read back with `D2::of` is the very double Magento
//! held.
//!
//! Null handling follows PHP: amounts that are NULL act as 0 in arithmetic; truthiness (a stored
//! `"0.0000"` is true, a PHP `0` is false) is decided by the caller ([`OrderItemTax::has_tax`]);
//! the one comparison where NULL matters (`shipping_discount_amount >= shipping_amount`, where
//! `null >= null` is true) keeps `Option`s.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::TaxError;
use super::conformance::{Mismatch, compare, dec_or_zero, field, jnum, num, truthy};
use super::rounding::DocRoundType;
use crate::php::double::{Calculator, D2, Dbl};

/// A currency pair: the order (display) currency amount and its base twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Amount2 {
    pub value: Decimal,
    pub base: Decimal,
}

impl Amount2 {
    pub const ZERO: Amount2 = Amount2 {
        value: Decimal::ZERO,
        base: Decimal::ZERO,
    };

    pub fn new(value: Decimal, base: Decimal) -> Self {
        Self { value, base }
    }
}

impl std::ops::Add for Amount2 {
    type Output = Amount2;
    fn add(self, o: Amount2) -> Amount2 {
        Amount2::new(self.value + o.value, self.base + o.base)
    }
}

impl std::ops::Sub for Amount2 {
    type Output = Amount2;
    fn sub(self, o: Amount2) -> Amount2 {
        Amount2::new(self.value - o.value, self.base - o.base)
    }
}

impl std::ops::AddAssign for Amount2 {
    fn add_assign(&mut self, o: Amount2) {
        self.value += o.value;
        self.base += o.base;
    }
}

/// PHP 8 `$a >= $b` where either side may be NULL (NULL compares as boolean false).
pub fn php_ge(a: Option<Decimal>, b: Option<Decimal>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x >= y,
        (None, None) => true,
        (None, Some(y)) => y.is_zero(),
        (Some(_), None) => true,
    }
}

/// The order-item fields the tax collectors read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OrderItemTax {
    pub qty_ordered: Decimal,
    pub qty_invoiced: Decimal,
    pub qty_refunded: Decimal,
    pub tax: Amount2,
    pub tax_invoiced: Amount2,
    pub tax_refunded: Amount2,
    pub dtc: Amount2,
    pub dtc_invoiced: Amount2,
    pub dtc_refunded: Amount2,
    /// PHP truthiness of `tax_amount || discount_tax_compensation_amount` (a stored `"0.0000"`
    /// is true; a PHP `0` and NULL are false).
    pub has_tax: bool,
    /// A parent whose children are calculated (bundle/configurable parent).
    pub is_dummy: bool,
}

/// A document line: the order item, the quantity on this document and whether Magento
/// considers it the last one (`Invoice\Item::isLast` / `Creditmemo\Item::isLast`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DocLine {
    pub order_item: OrderItemTax,
    pub qty: Decimal,
    pub is_last: bool,
}

/// Per-line output of a tax collector. `None` where the collector did not touch the line.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LineTax {
    pub tax: Amount2,
    pub dtc: Amount2,
}

/// The order fields the invoice tax collector reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OrderTaxForInvoice {
    pub tax: Amount2,
    pub tax_invoiced: Amount2,
    pub dtc: Amount2,
    pub dtc_invoiced: Amount2,
    pub shipping_tax: Amount2,
    pub shipping_dtc: Amount2,
    /// Not a column of `sales_order`: NULL after every reload, so normally zero.
    pub shipping_dtc_invoiced: Amount2,
}

/// What the invoice tax collector produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InvoiceTaxResult {
    pub lines: Vec<Option<LineTax>>,
    pub tax: Amount2,
    /// Item DTC only (the invoice's `discount_tax_compensation_amount` field).
    pub dtc: Amount2,
    /// What was added to the grand total: tax + the clamped DTC including shipping DTC.
    pub grand_total_delta: Amount2,
    /// The clamped DTC including shipping DTC (what the grand total received besides tax).
    pub clamped_dtc: Amount2,
    /// Set when this invoice carries the order's shipping tax.
    pub shipping_tax: Option<Amount2>,
    pub shipping_dtc: Option<Amount2>,
}

/// `Invoice\Total\Tax::collect`. `shipping_already_invoiced` is `_canIncludeShipping()`
/// negated: an earlier non-cancelled invoice has a (truthy) shipping amount.
pub fn invoice_tax(
    order: &OrderTaxForInvoice,
    lines: &[DocLine],
    invoice_is_last: bool,
    shipping_already_invoiced: bool,
    calc: &mut Calculator,
) -> InvoiceTaxResult {
    let mut total_tax = D2::ZERO;
    let mut total_dtc = D2::ZERO;
    let mut out_lines = Vec::with_capacity(lines.len());
    for line in lines {
        let oi = &line.order_item;
        if !oi.has_tax || oi.qty_ordered.is_zero() || oi.is_dummy || line.qty <= Decimal::ZERO {
            out_lines.push(None);
            continue;
        }
        let mut tax = D2::of(oi.tax) - D2::of(oi.tax_invoiced);
        let mut dtc = D2::of(oi.dtc) - D2::of(oi.dtc_invoiced);
        if !line.is_last {
            let available = Dbl::of(oi.qty_ordered) - Dbl::of(oi.qty_invoiced);
            let q = Dbl::of(line.qty);
            tax.v = calc.round_price(tax.v / available * q, DocRoundType::Regular, false);
            tax.b = calc.round_price(tax.b / available * q, DocRoundType::Base, false);
            dtc.v = calc.round_price(dtc.v / available * q, DocRoundType::Regular, false);
            dtc.b = calc.round_price(dtc.b / available * q, DocRoundType::Base, false);
        }
        total_tax += tax;
        total_dtc += dtc;
        out_lines.push(Some(LineTax {
            tax: tax.dec(),
            dtc: dtc.dec(),
        }));
    }
    let item_dtc = total_dtc;
    let mut allowed_dtc = D2::of(order.dtc) - D2::of(order.dtc_invoiced);
    let mut shipping_tax = None;
    let mut shipping_dtc = None;
    if !shipping_already_invoiced {
        total_tax += D2::of(order.shipping_tax);
        total_dtc += D2::of(order.shipping_dtc);
        allowed_dtc += D2::of(order.shipping_dtc) - D2::of(order.shipping_dtc_invoiced);
        shipping_tax = Some(order.shipping_tax);
        shipping_dtc = Some(order.shipping_dtc);
    }
    let allowed_tax = D2::of(order.tax) - D2::of(order.tax_invoiced);
    let (tax, dtc) = if invoice_is_last {
        (allowed_tax, allowed_dtc)
    } else {
        (allowed_tax.min(total_tax), allowed_dtc.min(total_dtc))
    };
    InvoiceTaxResult {
        lines: out_lines,
        tax: tax.dec(),
        dtc: item_dtc.dec(),
        grand_total_delta: (tax + dtc).dec(),
        clamped_dtc: dtc.dec(),
        shipping_tax,
        shipping_dtc,
    }
}

/// The order fields the credit-memo tax collector reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OrderTaxForCreditmemo {
    pub tax_invoiced: Amount2,
    pub tax_refunded: Amount2,
    pub dtc_invoiced: Amount2,
    pub dtc_refunded: Amount2,
    pub shipping_tax: Amount2,
    pub shipping_tax_refunded: Amount2,
    pub shipping_dtc: Amount2,
    /// Not a column of `sales_order`: NULL after every reload, so normally zero.
    pub shipping_dtc_refunded: Amount2,
    /// `shipping_amount` / `base_shipping_amount` (NULL-able).
    pub shipping_amount: Option<Decimal>,
    pub base_shipping_amount: Option<Decimal>,
    pub base_shipping_refunded: Decimal,
    pub shipping_discount_amount: Option<Decimal>,
}

/// The invoice a credit memo is created from (online refunds), with what was already refunded
/// against it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreditmemoInvoice {
    pub tax: Amount2,
    pub shipping_tax: Amount2,
    pub dtc: Amount2,
    pub shipping_dtc: Amount2,
    pub tax_refunded: Amount2,
    pub dtc_refunded: Amount2,
    pub shipping_dtc_refunded: Amount2,
}

/// Credit-memo fields set before the tax collector runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreditmemoBefore {
    /// `shipping_amount` (NULL when the request did not set one and no collector did).
    pub shipping_amount: Option<Decimal>,
    pub base_shipping_amount: Option<Decimal>,
    /// Tax already on the memo (e.g. from WEEE): reduces what may still be refunded.
    pub tax: Amount2,
    pub dtc: Amount2,
    pub shipping_dtc: Amount2,
}

/// What the credit-memo tax collector produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreditmemoTaxResult {
    pub lines: Vec<Option<LineTax>>,
    /// Added to the memo's tax amount.
    pub tax: Amount2,
    pub dtc: Amount2,
    pub shipping_tax: Amount2,
    pub grand_total_delta: Amount2,
    /// The shipping refund was partial: the remainder rule was switched off.
    pub partial_shipping_refund: bool,
}

/// `Creditmemo\Total\Tax::collect`. `shipping_incl_tax_after_discount` is
/// `isShippingIncludeTaxWithTaxAfterDiscount()`: tax after discount and sales display of
/// shipping including tax.
pub fn creditmemo_tax(
    order: &OrderTaxForCreditmemo,
    lines: &[DocLine],
    memo_is_last: bool,
    before: &CreditmemoBefore,
    invoice: Option<&CreditmemoInvoice>,
    shipping_incl_tax_after_discount: bool,
    calc: &mut Calculator,
) -> Result<CreditmemoTaxResult, DocumentTaxError> {
    let mut total_tax = D2::ZERO;
    let mut total_dtc = D2::ZERO;
    let mut out_lines = Vec::with_capacity(lines.len());
    for line in lines {
        let oi = &line.order_item;
        let invoiced_qty = Dbl::of(oi.qty_invoiced);
        if oi.is_dummy || line.qty <= Decimal::ZERO || !invoiced_qty.truthy() {
            out_lines.push(None);
            continue;
        }
        let mut tax = D2::of(oi.tax_invoiced) - D2::of(oi.tax_refunded);
        let mut dtc = D2::of(oi.dtc_invoiced) - D2::of(oi.dtc_refunded);
        if !line.is_last {
            let available = invoiced_qty - Dbl::of(oi.qty_refunded);
            let q = Dbl::of(line.qty);
            tax.v = calc.round_price(tax.v / available * q, DocRoundType::Regular, false);
            tax.b = calc.round_price(tax.b / available * q, DocRoundType::Base, false);
            dtc.v = calc.round_price(dtc.v / available * q, DocRoundType::Regular, false);
            dtc.b = calc.round_price(dtc.b / available * q, DocRoundType::Base, false);
        }
        total_tax += tax;
        total_dtc += dtc;
        out_lines.push(Some(LineTax {
            tax: tax.dec(),
            dtc: dtc.dec(),
        }));
    }

    let mut partial = false;
    let mut shipping_tax = D2::ZERO;
    let base_order_shipping = Dbl::opt(order.base_shipping_amount);
    let discount_ge_shipping = php_ge(order.shipping_discount_amount, order.shipping_amount);
    if let Some(inv) = invoice {
        if base_order_shipping.truthy()
            && let Some(memo_base_shipping) = before.base_shipping_amount
        {
            let factor = Dbl::of(memo_base_shipping) / base_order_shipping;
            let inv_shipping_tax = D2::of(inv.shipping_tax);
            shipping_tax = D2::new(inv_shipping_tax.v * factor, inv_shipping_tax.b * factor);
            let inv_shipping_dtc = D2::of(inv.shipping_dtc);
            total_dtc.v += inv_shipping_dtc.v * factor;
            total_dtc.b += inv_shipping_dtc.b * factor;
            shipping_tax = calc.pair(shipping_tax, false);
            total_dtc = calc.pair(total_dtc, false);
            if (factor < Dbl::of(Decimal::ONE) && inv_shipping_tax.v > Dbl::ZERO)
                || discount_ge_shipping
            {
                partial = true;
            }
            total_tax += shipping_tax;
        }
    } else {
        let mut shipping_dtc = D2::ZERO;
        let delta = base_order_shipping - Dbl::of(order.base_shipping_refunded);
        let memo_base_shipping = Dbl::opt(before.base_shipping_amount);
        if delta > memo_base_shipping || shipping_incl_tax_after_discount {
            let order_shipping = Dbl::opt(order.shipping_amount);
            if !order_shipping.truthy() || !base_order_shipping.truthy() {
                // PHP: DivisionByZeroError (magento/magento2 #36800, #37340, #38053).
                return Err(DocumentTaxError::DivisionByZero);
            }
            let part = Dbl::opt(before.shipping_amount) / order_shipping;
            let base_part = memo_base_shipping / base_order_shipping;
            let st = D2::of(order.shipping_tax);
            let sd = D2::of(order.shipping_dtc);
            shipping_tax = calc.pair(D2::new(st.v * part, st.b * base_part), false);
            shipping_dtc = calc.pair(D2::new(sd.v * part, sd.b * base_part), false);
            if part < Dbl::of(Decimal::ONE) && (st.v > Dbl::ZERO || discount_ge_shipping) {
                partial = true;
            }
        } else if delta == memo_base_shipping {
            shipping_tax = D2::of(order.shipping_tax) - D2::of(order.shipping_tax_refunded);
            shipping_dtc = D2::of(order.shipping_dtc) - D2::of(order.shipping_dtc_refunded);
        }
        total_tax += shipping_tax;
        total_dtc += shipping_dtc;
    }

    let (allowed_tax, allowed_dtc) = match invoice {
        Some(inv) => (
            D2::of(inv.tax) - D2::of(inv.tax_refunded) - D2::of(before.tax),
            D2::of(inv.dtc) + D2::of(inv.shipping_dtc)
                - D2::of(inv.dtc_refunded)
                - D2::of(inv.shipping_dtc_refunded)
                - D2::of(before.dtc)
                - D2::of(before.shipping_dtc),
        ),
        None => (
            D2::of(order.tax_invoiced) - D2::of(order.tax_refunded) - D2::of(before.tax),
            D2::of(order.dtc_invoiced) + D2::of(order.shipping_dtc)
                - D2::of(order.dtc_refunded)
                - D2::of(order.shipping_dtc_refunded)
                - D2::of(before.dtc)
                - D2::of(before.shipping_dtc),
        ),
    };
    let (tax, dtc) = if memo_is_last && !partial {
        (allowed_tax, allowed_dtc)
    } else {
        (allowed_tax.min(total_tax), allowed_dtc.min(total_dtc))
    };
    Ok(CreditmemoTaxResult {
        lines: out_lines,
        tax: tax.dec(),
        dtc: dtc.dec(),
        shipping_tax: shipping_tax.dec(),
        grand_total_delta: (tax + dtc).dec(),
        partial_shipping_refund: partial,
    })
}

/// A collector that PHP would abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DocumentTaxError {
    /// `DivisionByZeroError` in `Creditmemo\Total\Tax` (free shipping shown including tax
    /// with tax after discount: magento/magento2 #36800, #37340, #38053).
    #[error("DivisionByZeroError in Creditmemo/Total/Tax.php:139 (magento/magento2 #36800)")]
    DivisionByZero,
}

// ---------------------------------------------------------------------------------------------
// conformance: invoice_total_tax_unit_test / creditmemo_total_tax_unit_test

fn pair(v: &Value, name: &str) -> Result<Amount2, TaxError> {
    Ok(Amount2::new(
        dec_or_zero(v, name)?,
        dec_or_zero(v, &format!("base_{name}"))?,
    ))
}

fn opt_num(v: &Value, name: &str) -> Option<Decimal> {
    v.get(name).and_then(num)
}

fn order_item(oi: &Value) -> Result<OrderItemTax, TaxError> {
    Ok(OrderItemTax {
        qty_ordered: dec_or_zero(oi, "qty_ordered")?,
        qty_invoiced: dec_or_zero(oi, "qty_invoiced")?,
        qty_refunded: dec_or_zero(oi, "qty_refunded")?,
        tax: pair(oi, "tax_amount")?,
        tax_invoiced: pair(oi, "tax_invoiced")?,
        tax_refunded: pair(oi, "tax_refunded")?,
        dtc: pair(oi, "discount_tax_compensation_amount")?,
        dtc_invoiced: pair(oi, "discount_tax_compensation_invoiced")?,
        dtc_refunded: pair(oi, "discount_tax_compensation_refunded")?,
        has_tax: truthy(oi.get("tax_amount")) || truthy(oi.get("discount_tax_compensation_amount")),
        is_dummy: truthy(oi.get("is_dummy")),
    })
}

fn doc_lines(doc: &Value) -> Result<Vec<(String, DocLine)>, TaxError> {
    let items = field(doc, "items")?
        .as_object()
        .ok_or_else(|| TaxError::invalid("items", "expected an object"))?;
    items
        .iter()
        .map(|(name, it)| {
            Ok((
                name.clone(),
                DocLine {
                    order_item: order_item(field(it, "order_item")?)?,
                    qty: dec_or_zero(it, "qty")?,
                    is_last: truthy(it.get("is_last")),
                },
            ))
        })
        .collect()
}

/// Run an `invoice_total_tax_unit_test` vector.
pub fn run_invoice_vector(vector: &Value) -> Result<Vec<Mismatch>, TaxError> {
    let order_v = field(vector, "order")?;
    let invoice_v = field(vector, "invoice")?;
    let order = OrderTaxForInvoice {
        tax: pair(order_v, "tax_amount")?,
        tax_invoiced: pair(order_v, "tax_invoiced")?,
        dtc: pair(order_v, "discount_tax_compensation_amount")?,
        dtc_invoiced: pair(order_v, "discount_tax_compensation_invoiced")?,
        shipping_tax: pair(order_v, "shipping_tax_amount")?,
        shipping_dtc: pair(order_v, "shipping_discount_tax_compensation_amount")?,
        shipping_dtc_invoiced: pair(order_v, "shipping_discount_tax_compensation_invoiced")?,
    };
    let shipping_already_invoiced = vector
        .get("previous_invoices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| truthy(p.get("shipping_amount")) && !truthy(p.get("is_canceled")));
    let lines = doc_lines(invoice_v)?;
    let plain: Vec<DocLine> = lines.iter().map(|(_, l)| l.clone()).collect();
    let mut rounder = Calculator::new();
    let res = invoice_tax(
        &order,
        &plain,
        truthy(invoice_v.get("is_last")),
        shipping_already_invoiced,
        &mut rounder,
    );
    let data = invoice_v.get("data_fields").cloned().unwrap_or(json!({}));
    let grand = pair(&data, "grand_total")? + res.grand_total_delta;
    let mut items = serde_json::Map::new();
    for ((name, _), lt) in lines.iter().zip(&res.lines) {
        let v = match lt {
            Some(t) => json!({"tax_amount": jnum(t.tax.value), "base_tax_amount": jnum(t.tax.base),
                "discount_tax_compensation_amount": jnum(t.dtc.value), "base_discount_tax_compensation_amount": jnum(t.dtc.base)}),
            None => json!({}),
        };
        items.insert(name.clone(), v);
    }
    let actual = json!({
        "invoice_items": items,
        "invoice_data": {
            "grand_total": jnum(grand.value), "base_grand_total": jnum(grand.base),
            "tax_amount": jnum(res.tax.value), "base_tax_amount": jnum(res.tax.base),
            "discount_tax_compensation_amount": jnum(res.dtc.value), "base_discount_tax_compensation_amount": jnum(res.dtc.base),
        }
    });
    let mut out = Vec::new();
    compare("", field(vector, "expected")?, Some(&actual), &mut out);
    Ok(out)
}

/// Run a `creditmemo_total_tax_unit_test` vector.
pub fn run_creditmemo_vector(vector: &Value) -> Result<Vec<Mismatch>, TaxError> {
    let o = field(vector, "order")?;
    let memo = field(vector, "creditmemo")?;
    let order = OrderTaxForCreditmemo {
        tax_invoiced: pair(o, "tax_invoiced")?,
        tax_refunded: pair(o, "tax_refunded")?,
        dtc_invoiced: pair(o, "discount_tax_compensation_invoiced")?,
        dtc_refunded: pair(o, "discount_tax_compensation_refunded")?,
        shipping_tax: pair(o, "shipping_tax_amount")?,
        shipping_tax_refunded: pair(o, "shipping_tax_refunded")?,
        shipping_dtc: pair(o, "shipping_discount_tax_compensation_amount")?,
        shipping_dtc_refunded: pair(o, "shipping_discount_tax_compensation_refunded")?,
        shipping_amount: opt_num(o, "shipping_amount"),
        base_shipping_amount: opt_num(o, "base_shipping_amount"),
        base_shipping_refunded: dec_or_zero(o, "base_shipping_refunded").and_then(|v| {
            if v.is_zero() {
                dec_or_zero(o, "base_shipping_amount_refunded")
            } else {
                Ok(v)
            }
        })?,
        shipping_discount_amount: opt_num(o, "shipping_discount_amount"),
    };
    let pre = memo
        .get("pre_existing_fields")
        .cloned()
        .unwrap_or(json!({}));
    let before = CreditmemoBefore {
        shipping_amount: opt_num(&pre, "shipping_amount"),
        base_shipping_amount: opt_num(&pre, "base_shipping_amount"),
        tax: pair(&pre, "tax_amount")?,
        dtc: pair(&pre, "discount_tax_compensation_amount")?,
        shipping_dtc: pair(&pre, "shipping_discount_tax_compensation_amount")?,
    };
    let invoice = match memo.get("invoice") {
        Some(inv) if inv.is_object() => Some(CreditmemoInvoice {
            tax: pair(inv, "tax_amount")?,
            shipping_tax: pair(inv, "shipping_tax_amount")?,
            dtc: pair(inv, "discount_tax_compensation_amount")?,
            shipping_dtc: pair(inv, "shipping_discount_tax_compensation_amount")?,
            tax_refunded: Amount2::ZERO,
            dtc_refunded: Amount2::ZERO,
            shipping_dtc_refunded: Amount2::ZERO,
        }),
        _ => None,
    };
    let shipping_incl_after =
        truthy(vector.pointer("/config/shipping_include_tax_with_tax_after_discount"));
    let lines = doc_lines(memo)?;
    let plain: Vec<DocLine> = lines.iter().map(|(_, l)| l.clone()).collect();
    let mut rounder = Calculator::new();
    let res = creditmemo_tax(
        &order,
        &plain,
        truthy(memo.get("is_last")),
        &before,
        invoice.as_ref(),
        shipping_incl_after,
        &mut rounder,
    )
    .map_err(|e| TaxError::Unsupported(e.to_string()))?;
    let grand = pair(&pre, "grand_total")? + res.grand_total_delta;
    let tax = before.tax + res.tax;
    let mut items = serde_json::Map::new();
    for ((name, _), lt) in lines.iter().zip(&res.lines) {
        let v = match lt {
            Some(t) => json!({"tax_amount": jnum(t.tax.value), "base_tax_amount": jnum(t.tax.base),
                "discount_tax_compensation_amount": jnum(t.dtc.value), "base_discount_tax_compensation_amount": jnum(t.dtc.base)}),
            None => json!({}),
        };
        items.insert(name.clone(), v);
    }
    let actual = json!({
        "creditmemo_items": items,
        "creditmemo_data": {
            "grand_total": jnum(grand.value), "base_grand_total": jnum(grand.base),
            "tax_amount": jnum(tax.value), "base_tax_amount": jnum(tax.base),
            "shipping_tax_amount": jnum(res.shipping_tax.value), "base_shipping_tax_amount": jnum(res.shipping_tax.base),
            "discount_tax_compensation_amount": jnum(res.dtc.value), "base_discount_tax_compensation_amount": jnum(res.dtc.base),
        }
    });
    let mut out = Vec::new();
    compare("", field(vector, "expected")?, Some(&actual), &mut out);
    Ok(out)
}
