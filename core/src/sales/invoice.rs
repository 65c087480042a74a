//! Invoices: `InvoiceService::prepareInvoice()`, the invoice totals collectors (Subtotal 50,
//! Discount 100, Shipping 150, Tax 200, Cost 250, Grand 350), `Invoice::register()` with
//! `pay()` (offline payment: every invoice is paid), and the order save.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{InvoiceRecord, Order, OrderItem, Pair};
use super::num::{php_qty_eq, stored_truthy};
use super::state::{self, persist};
use super::{Document, Rejection, RejectionStage};
use crate::php::double::{Calculator, D2, Dbl};
use crate::tax::documents::{Amount2, DocLine, OrderItemTax, OrderTaxForInvoice, invoice_tax};

/// What the admin posts: a quantity per order item id. An empty map invoices everything that is
/// left (`prepareInvoice($order, [])`); a non-empty map invoices 0 of every line it omits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InvoiceRequest {
    #[serde(with = "super::model::item_map")]
    pub qtys: BTreeMap<u32, Decimal>,
}

impl InvoiceRequest {
    pub fn new(qtys: impl IntoIterator<Item = (u32, Decimal)>) -> Self {
        Self {
            qtys: qtys.into_iter().collect(),
        }
    }

    /// Invoice everything that is left.
    pub fn all() -> Self {
        Self::default()
    }
}

/// One invoice line as the collectors left it. `None` is a field no collector set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceItem {
    pub order_item_id: u32,
    pub qty: Decimal,
    pub price: Amount2,
    pub price_incl_tax: Pair,
    pub base_cost: Option<Decimal>,
    pub row_total: Amount2,
    pub row_total_incl_tax: Pair,
    pub tax_amount: Pair,
    pub discount_tax_compensation_amount: Pair,
    pub discount_amount: Pair,
    /// `Invoice\Item::isLast()` when the totals were collected.
    pub is_last: bool,
}

/// An invoice right after `collectTotals()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// `Invoice::isLast()` when the totals were collected.
    pub is_last: bool,
    pub total_qty: Decimal,
    pub subtotal: Amount2,
    pub subtotal_incl_tax: Amount2,
    pub discount_amount: Amount2,
    pub shipping_amount: Pair,
    pub shipping_incl_tax: Pair,
    pub tax_amount: Amount2,
    /// Item DTC only (the grand total also holds the shipping DTC).
    pub discount_tax_compensation_amount: Amount2,
    pub shipping_tax_amount: Pair,
    pub shipping_discount_tax_compensation_amount: Pair,
    pub base_cost: Decimal,
    pub grand_total: Amount2,
    pub items: Vec<InvoiceItem>,
}

/// `prepareInvoice()` + `collectTotals()`, on the order as loaded. Errors are Magento's
/// exceptions during preparation.
pub fn prepare_invoice(order: &Order, request: &InvoiceRequest) -> Result<Invoice, Rejection> {
    // Lines: every item with something left to invoice.
    let mut lines: Vec<(usize, Decimal)> = Vec::new();
    let mut total_qty = Decimal::ZERO;
    for (idx, oi) in order.items.iter().enumerate() {
        let to_invoice = oi.qty_to_invoice();
        if to_invoice <= Decimal::ZERO {
            continue;
        }
        let raw = match request.qtys.get(&oi.item_id) {
            Some(q) => *q,
            None if request.qtys.is_empty() => to_invoice,
            None => Decimal::ZERO,
        };
        let qty = oi.process_qty(raw);
        if qty > to_invoice {
            return Err(Rejection::new(
                RejectionStage::InvalidQty,
                format!(
                    "We found an invalid quantity to invoice item \"{}\".",
                    oi.name
                ),
            ));
        }
        lines.push((idx, qty));
        total_qty += raw;
    }
    Ok(collect(order, &lines, total_qty))
}

fn collect(order: &Order, lines: &[(usize, Decimal)], total_qty: Decimal) -> Invoice {
    let mut calc = Calculator::new();
    let previous = &order.invoices;
    let lines: Vec<(&OrderItem, Decimal, bool)> = lines
        .iter()
        .map(|&(idx, qty)| {
            let oi = &order.items[idx];
            (oi, qty, php_qty_eq(qty, oi.qty_to_invoice()))
        })
        .collect();
    let is_last = lines.iter().all(|l| l.2);

    // Subtotal: Invoice\Item::calcRowTotal(), then the remainder / min() clamp.
    let mut rows = Vec::with_capacity(lines.len());
    let mut rows_incl = Vec::with_capacity(lines.len());
    let mut subtotal = D2::ZERO;
    let mut subtotal_incl = D2::ZERO;
    for &(oi, qty, last) in &lines {
        let q = Dbl::of(qty);
        let ordered = Dbl::of(oi.qty_ordered);
        let mut row = D2::of(oi.row_total) - D2::of(oi.row_invoiced);
        if !last {
            let available = ordered - Dbl::of(oi.qty_invoiced);
            row = calc.pair(row.map(|x| x / available * q), false);
        }
        let incl = oi
            .row_total_incl_tax
            .map(|incl| calc.including(D2::of(incl).map(|x| x / ordered * q)));
        subtotal += row;
        subtotal_incl += incl.unwrap_or(D2::ZERO);
        rows.push(row);
        rows_incl.push(incl);
    }
    let allowed = D2::opt(order.subtotal) - D2::opt(order.subtotal_invoiced);
    let subtotal = if is_last {
        allowed
    } else {
        allowed.min(subtotal)
    };
    let mut grand = subtotal;

    // Discount: the order's shipping discount goes on the first invoice only (any earlier
    // invoice has a stored, truthy discount_amount, even "0.0000").
    let mut discount = D2::ZERO;
    if !previous.iter().any(|p| stored_truthy(&p.discount_amount)) {
        discount += D2::opt(order.shipping_discount_amount);
    }
    let mut discounts = Vec::with_capacity(lines.len());
    for &(oi, qty, last) in &lines {
        let item_discount = D2::opt(oi.discount_amount);
        let ordered = Dbl::of(oi.qty_ordered);
        // `(double)$orderItem->getDiscountAmount()`: only the order-currency amount is tested.
        if !item_discount.v.truthy() || !ordered.truthy() {
            discounts.push(None);
            continue;
        }
        let mut d = item_discount - D2::opt(oi.discount_invoiced);
        if !last {
            let active = ordered - Dbl::of(oi.qty_invoiced);
            let q = Dbl::of(qty);
            d = calc.pair(d.map(|x| x / active * q), true);
        }
        discount += d;
        discounts.push(Some(d));
    }
    let near_zero = Dbl::epsilon();
    let after = |g: Dbl, d: Dbl| {
        if (g - d).abs() < near_zero {
            Dbl::ZERO
        } else {
            g - d
        }
    };
    grand = D2::new(after(grand.v, discount.v), after(grand.b, discount.b));

    // Shipping: the whole order shipping on the first invoice (a stored "0.0000" counts).
    let mut shipping = None;
    if stored_truthy(&order.shipping_amount)
        && !previous
            .iter()
            .any(|p| p.shipping_amount.is_some() && !p.is_canceled)
    {
        let s = D2::opt(order.shipping_amount);
        shipping = Some(s);
        grand += s;
    }

    // Tax.
    let shipping_already_invoiced = previous
        .iter()
        .any(|p| stored_truthy(&p.shipping_amount) && !p.is_canceled);
    let tax = tax_step(order, &lines, is_last, shipping_already_invoiced, &mut calc);
    grand = grand + tax.tax + tax.grand_dtc;

    // Cost.
    let mut base_cost = Dbl::ZERO;
    for &(oi, qty, _) in &lines {
        base_cost += Dbl::opt(oi.base_cost) * Dbl::of(qty);
    }

    let items = lines
        .iter()
        .enumerate()
        .map(|(i, &(oi, qty, last))| InvoiceItem {
            order_item_id: oi.item_id,
            qty,
            price: oi.price,
            price_incl_tax: oi.price_incl_tax,
            base_cost: oi.base_cost,
            row_total: rows[i].dec(),
            row_total_incl_tax: rows_incl[i].map(D2::dec),
            tax_amount: tax.lines[i].map(|t| t.0.dec()),
            discount_tax_compensation_amount: tax.lines[i].map(|t| t.1.dec()),
            discount_amount: discounts[i].map(D2::dec),
            is_last: last,
        })
        .collect();
    Invoice {
        is_last,
        total_qty,
        subtotal: subtotal.dec(),
        subtotal_incl_tax: subtotal_incl.dec(),
        discount_amount: (-discount).dec(),
        shipping_amount: shipping.map(D2::dec),
        shipping_incl_tax: shipping
            .and(order.shipping_incl_tax)
            .map(|a| D2::of(a).dec()),
        tax_amount: tax.tax.dec(),
        discount_tax_compensation_amount: tax.item_dtc.dec(),
        shipping_tax_amount: tax.shipping_tax.map(D2::dec),
        shipping_discount_tax_compensation_amount: tax.shipping_dtc.map(D2::dec),
        base_cost: base_cost.dec(),
        grand_total: grand.dec(),
        items,
    }
}

/// What `Invoice\Total\Tax` produced.
struct TaxStep {
    /// (tax, DTC) per line; `None` where the collector skipped the line.
    lines: Vec<Option<(D2, D2)>>,
    tax: D2,
    /// The invoice's DTC field: items only.
    item_dtc: D2,
    /// What the grand total gets: the clamped DTC including the shipping DTC.
    grand_dtc: D2,
    shipping_tax: Option<D2>,
    shipping_dtc: Option<D2>,
}

/// `Invoice\Total\Tax::collect()`: [`crate::tax::documents::invoice_tax`] on this document's
/// rounder, with the order as the database returns it (a stored `"0.0000"` is truthy; the
/// order has no `shipping_discount_tax_compensation_invoiced` column, so it reads NULL).
fn tax_step(
    order: &Order,
    lines: &[(&OrderItem, Decimal, bool)],
    invoice_is_last: bool,
    shipping_already_invoiced: bool,
    calc: &mut Calculator,
) -> TaxStep {
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
                has_tax: stored_truthy(&oi.tax_amount)
                    || stored_truthy(&oi.discount_tax_compensation_amount),
                is_dummy: false,
            },
            qty,
            is_last: last,
        })
        .collect();
    let order_tax = OrderTaxForInvoice {
        tax: z(order.tax_amount),
        tax_invoiced: z(order.tax_invoiced),
        dtc: z(order.discount_tax_compensation_amount),
        dtc_invoiced: z(order.discount_tax_compensation_invoiced),
        shipping_tax: z(order.shipping_tax_amount),
        shipping_dtc: z(order.shipping_discount_tax_compensation_amount),
        shipping_dtc_invoiced: Amount2::ZERO,
    };
    let r = invoice_tax(
        &order_tax,
        &doc_lines,
        invoice_is_last,
        shipping_already_invoiced,
        calc,
    );
    TaxStep {
        lines: r
            .lines
            .iter()
            .map(|l| l.map(|t| (D2::of(t.tax), D2::of(t.dtc))))
            .collect(),
        tax: D2::of(r.tax),
        item_dtc: D2::of(r.dtc),
        grand_dtc: D2::of(r.clamped_dtc),
        shipping_tax: r.shipping_tax.map(D2::of),
        shipping_dtc: r.shipping_dtc.map(D2::of),
    }
}

/// `Adminhtml\Order\Invoice\Save` with an offline payment: refuse if the order cannot be
/// invoiced, prepare and collect, refuse an empty invoice, register (items, `pay()`, order
/// totals), mark the order in process, run `Handler\State::check()` and persist (4 dp).
pub fn create_invoice(
    order: &Order,
    request: &InvoiceRequest,
) -> Result<(Invoice, Order), Rejection> {
    if !state::can_invoice(order) {
        return Err(Rejection::new(
            RejectionStage::CanInvoice,
            "The order does not allow an invoice to be created.",
        ));
    }
    let invoice = prepare_invoice(order, request)?;
    if invoice.total_qty.is_zero() {
        return Err(Rejection::new(
            RejectionStage::TotalQty,
            "The invoice can't be created without products. Add products and try again.",
        )
        .with_document(Document::Invoice(invoice)));
    }
    let mut o = order.clone();
    register(&mut o, &invoice);
    state::check(&mut o, true);
    persist(&mut o);
    Ok((invoice, o))
}

/// `$x + $y` on a nullable column, as PHP computes it (the result is always set).
fn add(p: Pair, a: D2) -> Pair {
    Some((D2::opt(p) + a).dec())
}

/// `Invoice::register()`: items with qty > 0 register into their order items, `pay()` adds the
/// grand total to `total_paid`, and the order's `*_invoiced` totals grow.
fn register(o: &mut Order, inv: &Invoice) {
    for item in &inv.items {
        if item.qty <= Decimal::ZERO {
            continue;
        }
        let Some(oi) = o.items.iter_mut().find(|x| x.item_id == item.order_item_id) else {
            continue;
        };
        oi.qty_invoiced = (Dbl::of(oi.qty_invoiced) + Dbl::of(item.qty)).dec();
        oi.tax_invoiced = add(oi.tax_invoiced, D2::opt(item.tax_amount));
        oi.discount_tax_compensation_invoiced = add(
            oi.discount_tax_compensation_invoiced,
            D2::opt(item.discount_tax_compensation_amount),
        );
        oi.discount_invoiced = add(oi.discount_invoiced, D2::opt(item.discount_amount));
        oi.row_invoiced = (D2::of(oi.row_invoiced) + D2::of(item.row_total)).dec();
    }
    // pay(): the first invoice sets total_paid, later ones add to it.
    let grand = D2::of(inv.grand_total);
    let paid = if o.invoices.is_empty() {
        grand
    } else {
        grand + D2::opt(o.total_paid)
    };
    o.total_paid = Some(paid.dec());
    o.total_invoiced = add(o.total_invoiced, grand);
    o.subtotal_invoiced = add(o.subtotal_invoiced, D2::of(inv.subtotal));
    o.tax_invoiced = add(o.tax_invoiced, D2::of(inv.tax_amount));
    o.discount_tax_compensation_invoiced = add(
        o.discount_tax_compensation_invoiced,
        D2::of(inv.discount_tax_compensation_amount),
    );
    o.shipping_invoiced = add(o.shipping_invoiced, D2::opt(inv.shipping_amount));
    o.discount_invoiced = add(o.discount_invoiced, D2::of(inv.discount_amount));
    o.base_total_invoiced_cost =
        Some((Dbl::opt(o.base_total_invoiced_cost) + Dbl::of(inv.base_cost)).dec());
    o.invoices.push(InvoiceRecord {
        shipping_amount: inv.shipping_amount.map(|s| s.value),
        discount_amount: Some(inv.discount_amount.value),
        grand_total: inv.grand_total,
        is_canceled: false,
    });
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::sales::fixtures::{Line, order};
    use crate::sales::model::OrderState;
    use crate::sales::state::flags;

    /// Magento's `Invoice\Total\TaxTest` "partial_invoice": 3 × item_1 and 3 × item_2 at 99.00,
    /// 8.19 % tax, shipping tax 2.45; the first invoice takes 1 + 2 units.
    fn tax_test_order() -> Order {
        let mut o = order(
            &[
                Line(3, dec!(297), dec!(24.32), dec!(0)),
                Line(3, dec!(297), dec!(24.33), dec!(0)),
            ],
            dec!(10),
            dec!(2.45),
            dec!(0),
        );
        o.tax_amount = Some(Amount2::new(dec!(53.56), dec!(53.56)));
        o
    }

    #[test]
    fn tax_step_matches_magentos_unit_test() {
        let o = tax_test_order();
        let inv = prepare_invoice(&o, &InvoiceRequest::new([(1, dec!(1)), (2, dec!(2))]))
            .expect("prepared");
        let taxes: Vec<Decimal> = inv
            .items
            .iter()
            .map(|i| i.tax_amount.map(|t| t.value).unwrap_or_default())
            .collect();
        assert_eq!(taxes, vec![dec!(8.11), dec!(16.22)]);
        // PHP doubles: 8.11 + 16.22 + 2.45 is 26.779999999999998 (Magento's test: within 1e-10).
        assert_eq!(inv.tax_amount.value, dec!(26.779999999999998));
        assert_eq!(inv.shipping_tax_amount.map(|a| a.value), Some(dec!(2.45)));
    }

    #[test]
    fn item_is_last_when_the_quantity_equals_what_is_left_to_invoice() {
        let o = tax_test_order();
        let inv = prepare_invoice(&o, &InvoiceRequest::new([(1, dec!(3)), (2, dec!(2))]))
            .expect("prepared");
        assert!(inv.items[0].is_last);
        assert!(!inv.items[1].is_last);
        assert!(!inv.is_last);
        // The last line takes the remainder unrounded, the other is pro-rata.
        assert_eq!(inv.items[0].tax_amount.map(|t| t.value), Some(dec!(24.32)));
        assert_eq!(inv.items[1].tax_amount.map(|t| t.value), Some(dec!(16.22)));
    }

    #[test]
    fn a_zero_shipping_is_copied_and_counts_as_invoiced_shipping() {
        let o = order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        let (first, after) =
            create_invoice(&o, &InvoiceRequest::new([(1, dec!(1))])).expect("invoiced");
        // "0.0000" is truthy in PHP: the first invoice carries the (zero) shipping.
        assert_eq!(first.shipping_amount.map(|s| s.value), Some(Decimal::ZERO));
        assert_eq!(after.invoices[0].shipping_amount, Some(Decimal::ZERO));
        let (second, _) = create_invoice(&after, &InvoiceRequest::all()).expect("invoiced");
        assert_eq!(second.shipping_amount, None);
        assert_eq!(second.shipping_tax_amount, None);
    }

    #[test]
    fn the_shipping_discount_goes_on_the_first_invoice_only() {
        let o = order(
            &[Line(2, dec!(20), dec!(0), dec!(4))],
            dec!(10),
            dec!(0),
            dec!(1.5),
        );
        let (first, after) =
            create_invoice(&o, &InvoiceRequest::new([(1, dec!(1))])).expect("invoiced");
        assert_eq!(first.discount_amount.value, dec!(-3.5)); // 1.50 + 4.00 / 2
        let (second, after) = create_invoice(&after, &InvoiceRequest::all()).expect("invoiced");
        assert_eq!(second.discount_amount.value, dec!(-2));
        assert_eq!(after.discount_invoiced.map(|d| d.value), Some(dec!(-5.5)));
        // pay(): total_paid is the sum of the grand totals.
        assert_eq!(after.total_paid.map(|d| d.value), Some(dec!(24.5)));
        assert_eq!(after.state, OrderState::Processing);
        assert!(!flags(&after).can_invoice);
    }

    #[test]
    fn refusals_name_magentos_stage() {
        let o = tax_test_order();
        let empty = create_invoice(&o, &InvoiceRequest::new([(1, dec!(0)), (2, dec!(0))]));
        assert_eq!(
            empty.map(|_| ()).map_err(|r| r.stage),
            Err(RejectionStage::TotalQty)
        );
        let too_many = create_invoice(&o, &InvoiceRequest::new([(1, dec!(4))]));
        assert_eq!(
            too_many.map(|_| ()).map_err(|r| r.stage),
            Err(RejectionStage::InvalidQty)
        );
        let (_, all) = create_invoice(&o, &InvoiceRequest::all()).expect("invoiced");
        let again = create_invoice(&all, &InvoiceRequest::all());
        assert_eq!(
            again.map(|_| ()).map_err(|r| r.stage),
            Err(RejectionStage::CanInvoice)
        );
    }
}
