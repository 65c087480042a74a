//! The order's own decisions: `Order::canInvoice()`, `canCreditmemo()` (with its zero-total and
//! adjustment-fee special cases), `canShip()`, `ResourceModel\Order\Handler\State::check()`,
//! and the 4-decimal persistence that separates two requests.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{Order, OrderState, Pair};
use super::num::persist4;
use crate::php::double::{D2, Dbl};
use crate::tax::documents::Amount2;

/// `canCreditmemo()`'s "nothing left" threshold.
pub const LEFTOVER_EPSILON: Decimal = Decimal::from_parts(1, 0, 0, false, 4);

/// What Magento's `Order` methods say about a freshly loaded order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFlags {
    pub can_invoice: bool,
    pub can_creditmemo: bool,
    pub can_ship: bool,
    pub state: OrderState,
    pub is_closed: bool,
    /// `PriceCurrency::round(total_paid) − total_refunded`, the amount `canCreditmemo()` tests.
    pub refundable_leftover: Decimal,
    /// The same in base currency.
    pub base_refundable_leftover: Decimal,
}

impl OrderFlags {
    /// |leftover| ≥ 0.0001 in either currency.
    pub fn has_leftover(&self) -> bool {
        self.refundable_leftover.abs() >= LEFTOVER_EPSILON
            || self.base_refundable_leftover.abs() >= LEFTOVER_EPSILON
    }
}

/// The flags of an order as loaded (what `flags_after` records).
pub fn flags(order: &Order) -> OrderFlags {
    let left = refundable_leftover(order);
    OrderFlags {
        can_invoice: can_invoice(order),
        can_creditmemo: can_creditmemo(order, Loaded::FromDatabase),
        can_ship: can_ship(order),
        state: order.state,
        is_closed: order.state == OrderState::Closed,
        refundable_leftover: left.value,
        base_refundable_leftover: left.base,
    }
}

/// `round(total_paid) − total_refunded` in both currencies, as the PHP double Magento tests.
pub fn refundable_leftover(order: &Order) -> Amount2 {
    leftover_dbl(order).dec()
}

fn leftover_dbl(order: &Order) -> D2 {
    D2::opt(order.total_paid).map(Dbl::round2) - D2::opt(order.total_refunded)
}

fn can_unhold(o: &Order) -> bool {
    o.state == OrderState::Holded
}

fn is_payment_review(o: &Order) -> bool {
    o.state == OrderState::PaymentReview
}

/// `Order::canInvoice()`.
pub fn can_invoice(o: &Order) -> bool {
    if can_unhold(o) || is_payment_review(o) {
        return false;
    }
    if matches!(
        o.state,
        OrderState::Canceled | OrderState::Complete | OrderState::Closed
    ) {
        return false;
    }
    o.items.iter().any(|i| i.qty_to_invoice() > Decimal::ZERO)
}

/// Whether the totals `canCreditmemo()` compares were just computed in this request (PHP
/// doubles, where `null == 0.0`) or loaded from the database (strings, where
/// `null == "0.0000"` is false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    InRequest,
    FromDatabase,
}

/// `Order::canCreditmemo()`.
pub fn can_creditmemo(o: &Order, loaded: Loaded) -> bool {
    if can_unhold(o)
        || is_payment_review(o)
        || matches!(o.state, OrderState::Canceled | OrderState::Closed)
    {
        return false;
    }
    let leftover = leftover_dbl(o).v;
    let eps = Dbl::epsilon();
    if D2::opt(o.grand_total).v.abs() < eps {
        return can_creditmemo_for_zero_total(o, leftover, loaded);
    }
    let is_refund_zero = leftover.abs() < eps;
    // The leftover equals the adjustment fees taken so far.
    let has_adjustment_fee = (leftover - D2::opt(o.adjustment_negative).v).abs() < eps;
    !(is_refund_zero || has_adjustment_fee)
}

fn value(p: Pair) -> Option<Decimal> {
    p.map(|a| a.value)
}

fn can_creditmemo_for_zero_total(o: &Order, leftover: Dbl, loaded: Loaded) -> bool {
    let paid = value(o.total_paid);
    // `$totalPaid <= $grandTotal`: NULL <= "x" is true (NULL compares as "").
    let paid_le_grand = match (paid, value(o.grand_total)) {
        (None, _) => true,
        (Some(p), Some(g)) => p <= g,
        (Some(_), None) => false,
    };
    let has_due = can_invoice(o) && paid_le_grand;
    let has_memos = !o.creditmemos.is_empty();
    let refunded = value(o.total_refunded);
    let refunded_eq_paid = match loaded {
        Loaded::InRequest => refunded.unwrap_or_default() == paid.unwrap_or_default(),
        Loaded::FromDatabase => refunded == paid,
    };
    let paid_is_refunded = refunded_eq_paid && has_memos;
    let fee_case =
        !paid_le_grand && (leftover - D2::opt(o.adjustment_negative).v).abs() < Dbl::epsilon();
    !(has_due || paid_is_refunded || fee_case)
}

/// `Order::canShip()` (no shipments are modelled: `qty_shipped` comes from the row).
pub fn can_ship(o: &Order) -> bool {
    if can_unhold(o) || is_payment_review(o) || o.is_virtual || o.state == OrderState::Canceled {
        return false;
    }
    o.items.iter().any(|i| {
        i.qty_to_ship() > Decimal::ZERO && !i.is_virtual && i.qty_refunded != i.qty_ordered
    })
}

fn is_partially_refunded_order_shipped(o: &Order) -> bool {
    let shipped: Decimal = o.items.iter().map(|i| i.qty_shipped.trunc()).sum();
    let refunded: Decimal = o
        .items
        .iter()
        .filter(|i| i.product_type == "simple")
        .map(|i| i.qty_refunded.trunc())
        .sum();
    shipped > Decimal::ZERO && o.total_qty_ordered.unwrap_or_default() <= refunded + shipped
}

fn set_state(o: &mut Order, s: OrderState) {
    o.state = s;
    o.status = s.default_status().to_owned();
}

/// `ResourceModel\Order\Handler\State::check()`, run by every order save on the order as it is
/// in memory.
pub fn check(o: &mut Order, is_in_process: bool) {
    let mut current = o.state;
    if current == OrderState::New && is_in_process {
        set_state(o, OrderState::Processing);
        current = OrderState::Processing;
    }
    if o.state == OrderState::Canceled || can_unhold(o) || can_invoice(o) {
        return;
    }
    if matches!(current, OrderState::Processing | OrderState::Complete)
        && !can_creditmemo(o, Loaded::InRequest)
        && !can_ship(o)
        && !o.is_virtual
    {
        set_state(o, OrderState::Closed);
    } else if current == OrderState::Processing
        && (!can_ship(o) || is_partially_refunded_order_shipped(o))
    {
        set_state(o, OrderState::Complete);
    } else if o.is_virtual && o.status == "closed" {
        o.state = OrderState::Closed;
    }
}

fn p4(p: &mut Pair) {
    if let Some(a) = p {
        a.value = persist4(a.value);
        a.base = persist4(a.base);
    }
}

fn a4(a: &mut Amount2) {
    a.value = persist4(a.value);
    a.base = persist4(a.base);
}

fn d4(d: &mut Option<Decimal>) {
    if let Some(x) = d {
        *x = persist4(*x);
    }
}

/// Save and reload: every amount as a `DECIMAL(…,4)` column returns it.
pub fn persist(o: &mut Order) {
    for p in [
        &mut o.subtotal,
        &mut o.subtotal_incl_tax,
        &mut o.tax_amount,
        &mut o.discount_amount,
        &mut o.shipping_amount,
        &mut o.shipping_incl_tax,
        &mut o.shipping_tax_amount,
        &mut o.shipping_discount_amount,
        &mut o.discount_tax_compensation_amount,
        &mut o.shipping_discount_tax_compensation_amount,
        &mut o.grand_total,
        &mut o.subtotal_invoiced,
        &mut o.tax_invoiced,
        &mut o.discount_tax_compensation_invoiced,
        &mut o.shipping_invoiced,
        &mut o.discount_invoiced,
        &mut o.total_invoiced,
        &mut o.total_paid,
        &mut o.subtotal_refunded,
        &mut o.tax_refunded,
        &mut o.discount_tax_compensation_refunded,
        &mut o.shipping_refunded,
        &mut o.shipping_tax_refunded,
        &mut o.discount_refunded,
        &mut o.adjustment_positive,
        &mut o.adjustment_negative,
        &mut o.total_refunded,
        &mut o.total_offline_refunded,
    ] {
        p4(p);
    }
    d4(&mut o.total_qty_ordered);
    d4(&mut o.base_total_invoiced_cost);
    for i in &mut o.items {
        for q in [
            &mut i.qty_ordered,
            &mut i.qty_invoiced,
            &mut i.qty_refunded,
            &mut i.qty_shipped,
            &mut i.qty_canceled,
        ] {
            *q = persist4(*q);
        }
        a4(&mut i.row_invoiced);
        for p in [
            &mut i.tax_invoiced,
            &mut i.discount_tax_compensation_invoiced,
            &mut i.discount_invoiced,
            &mut i.amount_refunded,
            &mut i.tax_refunded,
            &mut i.discount_tax_compensation_refunded,
            &mut i.discount_refunded,
        ] {
            p4(p);
        }
    }
    for inv in &mut o.invoices {
        d4(&mut inv.shipping_amount);
        d4(&mut inv.discount_amount);
        a4(&mut inv.grand_total);
    }
    for cm in &mut o.creditmemos {
        p4(&mut cm.shipping_incl_tax);
        a4(&mut cm.grand_total);
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::sales::fixtures::{Line, order};
    use crate::sales::{
        Adjustment, CreditmemoRequest, InvoiceRequest, create_creditmemo, create_invoice,
    };

    fn invoiced(o: &Order) -> Order {
        create_invoice(o, &InvoiceRequest::all())
            .expect("invoiced")
            .1
    }

    fn refund_all(o: &Order, fee: Option<Decimal>) -> Order {
        let request = CreditmemoRequest {
            adjustment_negative: fee.map(Adjustment::Amount),
            ..CreditmemoRequest::default()
        };
        create_creditmemo(o, &request).expect("refunded").1
    }

    #[test]
    fn a_full_refund_closes_the_order() {
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(5),
            dec!(1),
            dec!(0),
        ));
        let f = flags(&o);
        assert!(f.can_creditmemo && f.can_ship && !f.can_invoice);
        assert_eq!(f.state, OrderState::Processing);
        assert_eq!(f.refundable_leftover, dec!(28));
        let closed = refund_all(&o, None);
        let f = flags(&closed);
        assert!(f.is_closed && !f.can_creditmemo && !f.can_ship);
        assert_eq!(f.refundable_leftover, Decimal::ZERO);
    }

    #[test]
    fn a_leftover_equal_to_the_adjustment_fees_counts_as_nothing_left() {
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(5),
            dec!(1),
            dec!(0),
        ));
        let closed = refund_all(&o, Some(dec!(3)));
        let f = flags(&closed);
        assert_eq!(f.refundable_leftover, dec!(3));
        assert!(!f.can_creditmemo);
        assert!(f.is_closed);
    }

    #[test]
    fn a_cent_left_keeps_the_order_complete() {
        let o = invoiced(&order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(5),
            dec!(1),
            dec!(0),
        ));
        let request = CreditmemoRequest {
            adjustment_negative: Some(Adjustment::Amount(dec!(0.01))),
            ..CreditmemoRequest::default()
        };
        let (_, after) = create_creditmemo(&o, &request).expect("refunded");
        // The fee case only applies to the whole leftover: 0.01 left == 0.01 fee closes too.
        assert!(flags(&after).is_closed);
        let mut shy = o.clone();
        shy.total_paid = Some(Amount2::new(dec!(28.01), dec!(28.01)));
        let after = refund_all(&shy, None);
        let f = flags(&after);
        assert_eq!(f.refundable_leftover.round_dp(10), dec!(0.01)); // a PHP double
        assert!(f.can_creditmemo);
        assert_eq!(f.state, OrderState::Complete);
    }

    #[test]
    fn a_zero_total_order_can_be_credit_memoed_once_and_then_closes() {
        // 100 % discount, free shipping: grand total 0.
        let o = invoiced(&order(
            &[Line(1, dec!(10), dec!(0), dec!(10))],
            dec!(0),
            dec!(0),
            dec!(0),
        ));
        assert_eq!(o.total_paid.map(|p| p.value), Some(Decimal::ZERO));
        // canCreditmemoForZeroTotal: nothing due, nothing refunded yet (NULL != "0.0000").
        assert!(can_creditmemo(&o, Loaded::FromDatabase));
        let closed = refund_all(&o, None);
        assert!(!can_creditmemo(&closed, Loaded::FromDatabase));
        assert!(flags(&closed).is_closed);
    }

    #[test]
    fn closed_and_held_orders_cannot_be_credit_memoed() {
        let mut o = invoiced(&order(
            &[Line(1, dec!(10), dec!(0), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        ));
        o.state = OrderState::Closed;
        assert!(!can_creditmemo(&o, Loaded::FromDatabase));
        o.state = OrderState::Holded;
        assert!(!can_creditmemo(&o, Loaded::FromDatabase));
        assert!(!can_invoice(&o));
    }

    #[test]
    fn persisting_keeps_four_decimals() {
        let mut o = order(
            &[Line(1, dec!(10), dec!(0), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        o.total_paid = Some(Amount2::new(
            dec!(23.799999999999997),
            dec!(101.71499999999999),
        ));
        persist(&mut o);
        assert_eq!(o.total_paid, Some(Amount2::new(dec!(23.8), dec!(101.715))));
    }
}
