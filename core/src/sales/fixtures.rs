//! Small orders for the unit tests (one currency unless a rate is given).

use rust_decimal::Decimal;

use super::model::{Order, OrderItem, OrderState, SalesConfig};
use crate::tax::documents::Amount2;

pub(crate) fn p(x: Decimal) -> Option<Amount2> {
    Some(Amount2::new(x, x))
}

/// A line: units, row total, tax, discount.
pub(crate) struct Line(pub u32, pub Decimal, pub Decimal, pub Decimal);

/// An order as placed: lines, shipping amount, shipping tax, shipping discount.
pub(crate) fn order(
    lines: &[Line],
    shipping: Decimal,
    shipping_tax: Decimal,
    shipping_discount: Decimal,
) -> Order {
    let zero = p(Decimal::ZERO);
    let mut items = Vec::new();
    let (mut subtotal, mut tax, mut discount) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for (i, Line(qty, row, line_tax, disc)) in lines.iter().enumerate() {
        let qty = Decimal::from(*qty);
        subtotal += row;
        tax += line_tax;
        discount += disc;
        items.push(OrderItem {
            item_id: i as u32 + 1,
            name: format!("Product {}", i + 1),
            product_type: "simple".to_owned(),
            qty_ordered: qty,
            price: Amount2::new(row / qty, row / qty),
            row_total: Amount2::new(*row, *row),
            row_total_incl_tax: p(row + line_tax),
            tax_amount: p(*line_tax),
            discount_amount: p(*disc),
            discount_tax_compensation_amount: zero,
            base_cost: Some(Decimal::ZERO),
            tax_invoiced: zero,
            discount_invoiced: zero,
            amount_refunded: zero,
            ..OrderItem::default()
        });
    }
    let grand = subtotal + shipping + tax + shipping_tax - discount - shipping_discount;
    Order {
        state: OrderState::New,
        status: "pending".to_owned(),
        base_currency_code: "USD".to_owned(),
        order_currency_code: "USD".to_owned(),
        base_to_order_rate: Decimal::ONE,
        config: SalesConfig::default(),
        subtotal: p(subtotal),
        subtotal_incl_tax: p(subtotal + tax),
        tax_amount: p(tax + shipping_tax),
        discount_amount: p(-(discount + shipping_discount)),
        shipping_amount: p(shipping),
        shipping_incl_tax: p(shipping + shipping_tax),
        shipping_tax_amount: p(shipping_tax),
        shipping_discount_amount: p(shipping_discount),
        discount_tax_compensation_amount: zero,
        shipping_discount_tax_compensation_amount: zero,
        grand_total: p(grand),
        total_qty_ordered: Some(lines.iter().map(|l| Decimal::from(l.0)).sum()),
        items,
        ..Order::default()
    }
}
