//! Will Magento close this order?
//!
//! Given an [`Order`] and a *planned* sequence of invoices and credit memos (for instance the
//! documents a POS refund turns into: quantities per line, a shipping refund, adjustments),
//! [`predict`] runs the plan through the same model as [`super::create_invoice`] /
//! [`super::create_creditmemo`] and reports:
//!
//! * the outcome of every document (created, or refused with Magento's stage and message);
//! * whether `Handler\State::check()` closes the order at the end, and if not, what blocks it
//!   ([`Blocker`]: units left to invoice or ship, a refundable leftover, a refused document);
//! * where the leftover `round(total_paid) − total_refunded` comes from ([`LeftoverCause`]:
//!   per-line remainders and unrefunded units, shipping not refunded, the negative shipping
//!   discount of a memo that posted shipping `0`, adjustment fees and refunds, the per-memo
//!   cent rounding of `total_refunded`, totals clamps of single documents), each with the
//!   document and the line it comes from; the causes add up to the leftover;
//! * a [`Proposal`] that closes the order — the last credit memo refunding every remaining unit
//!   and the remaining shipping, and an `adjustment_positive` / `adjustment_negative` sized so
//!   that `total_refunded` lands on `round(total_paid)` — chosen among candidates that respect
//!   Magento's validations (no refund above the amount paid in base currency, a valid grand
//!   total) and **verified** by running the changed plan again. When no adjustment pair lands
//!   both currencies on the full shipping (earlier memos refunded more in base currency than
//!   their order-currency amounts convert to), the last memo refunds the fewest cents less
//!   shipping that let one do (up to a dollar).
//!
//! Closing means what Magento decides: every unit invoiced and refunded (nothing left to ship;
//! shipments are not modelled) and `canCreditmemo()` false, i.e. the order-currency leftover
//! below 0.0001 (or equal to the adjustment fees taken). A multi-currency order can be left with
//! an order-currency cent that no base-currency adjustment can reach without refunding more than
//! was paid in base currency; the report then says so in [`ClosabilityReport::unresolved`].

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::creditmemo::{Adjustment, Creditmemo, CreditmemoRequest, collect_creditmemo};
use super::invoice::{Invoice, InvoiceRequest};
use super::model::{Order, OrderState};
use super::state::{self, OrderFlags};
use super::{
    Document, RejectionStage, SalesError, Violation, admin_default_shipping_amount,
    create_creditmemo, create_invoice,
};
use crate::php::double::{D2, Dbl};
use crate::tax::documents::Amount2;

/// One document of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlannedDocument {
    Invoice(InvoiceRequest),
    Creditmemo(CreditmemoRequest),
}

/// Invoice or credit memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    Creditmemo,
}

/// Why Magento refused a planned document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionInfo {
    pub stage: RejectionStage,
    pub message: String,
    /// For [`RejectionStage::Refund`]: what was still refundable (base currency).
    pub available_refund: Option<Decimal>,
}

/// What happened to one planned document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentOutcome {
    /// Position in the plan.
    pub index: usize,
    pub kind: DocumentKind,
    pub created: bool,
    /// The collected grand total (order currency and base), when Magento collected it.
    pub grand_total: Option<Amount2>,
    /// `isLast()` of the document when it was collected.
    pub is_last: Option<bool>,
    /// Credit memos: the Tax collector's partial-shipping flag (no tax remainder).
    pub partial_shipping_refund: Option<bool>,
    pub rejection: Option<RejectionInfo>,
}

/// The plan run through the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRun {
    pub documents: Vec<DocumentOutcome>,
    /// The order's flags after the last document.
    pub flags: OrderFlags,
    /// Magento closes the order (state `closed`).
    pub closes: bool,
    /// The adjustment fees taken over the order's life (`adjustment_negative`). Magento also
    /// closes an order whose leftover equals them: the fees stay with the merchant.
    pub fees_kept: Amount2,
}

impl PlanRun {
    /// The documents Magento would refuse.
    pub fn rejections(&self) -> impl Iterator<Item = &DocumentOutcome> {
        self.documents.iter().filter(|d| !d.created)
    }

    /// `round(total_paid) − total_refunded` after the plan (order currency, base).
    pub fn leftover(&self) -> Amount2 {
        Amount2::new(
            self.flags.refundable_leftover,
            self.flags.base_refundable_leftover,
        )
    }
}

/// What keeps `Handler\State::check()` from closing the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "blocker", rename_all = "snake_case")]
pub enum Blocker {
    /// A planned document is refused.
    Rejected {
        document: usize,
        stage: RejectionStage,
        message: String,
    },
    /// Units are left to invoice (`canInvoice()`).
    UnitsToInvoice { order_item_id: u32, qty: Decimal },
    /// Units are neither refunded nor shipped (`canShip()`).
    UnitsNotRefunded { order_item_id: u32, qty: Decimal },
    /// `canCreditmemo()` is still true: money is left to refund.
    RefundableLeftover { leftover: Amount2 },
    /// The order is not in a state `check()` closes from (processing / complete).
    State { state: OrderState },
}

/// Where a part of the leftover comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// A line with units invoiced but not refunded: its unrefunded row, tax and discount.
    UnitsNotRefunded,
    /// A fully refunded line whose refunded row / tax / discount differ from what was invoiced.
    LineRemainder,
    /// Shipping (with its tax, net of its discount) invoiced but not refunded.
    ShippingNotRefunded,
    /// A memo that posted shipping `0`: Magento derived the shipping amount as
    /// `0 − shipping tax`, hence a negative shipping discount, and refunded that much extra
    /// (magento/magento2 #19899, #22343).
    NegativeShippingDiscount,
    /// An adjustment fee (`adjustment_negative`) kept.
    AdjustmentFee,
    /// An adjustment refund (`adjustment_positive`) paid out on top.
    AdjustmentRefund,
    /// `total_refunded` is rounded to cents on every memo; the memo's grand total was not.
    RefundRounding,
    /// `canCreditmemo()` rounds `total_paid` to cents.
    PaidRounding,
    /// A document's tax / DTC / subtotal total differs from the sum of its lines (Magento's
    /// `min(allowed, sum)` clamps; a memo that is not "last" or refunds shipping partially gets
    /// no remainder; an invoice's grand total holds the shipping DTC).
    DocumentTotals,
    /// The rest: documents from before the plan, 4-decimal storage.
    Other,
}

/// One part of the leftover. The amounts of all causes add up to the leftover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverCause {
    pub kind: CauseKind,
    /// The planned document it comes from, if one.
    pub document: Option<usize>,
    /// The order line it comes from, if one.
    pub order_item_id: Option<u32>,
    /// Contribution to the leftover (positive: money left unrefunded), order currency and base.
    pub amount: Amount2,
    pub detail: String,
}

/// One change the proposal makes to the plan (indices refer to the *changed* plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PlanChange {
    /// A document the model says Magento refuses is left out.
    RemoveDocument { index: usize, reason: String },
    /// An invoice for the units left to invoice.
    InsertInvoice {
        at: usize,
        #[serde(with = "super::model::item_map")]
        qtys: BTreeMap<u32, Decimal>,
    },
    /// A credit memo for what is left to refund.
    AppendCreditmemo { at: usize },
    SetQty {
        document: usize,
        order_item_id: u32,
        from: Decimal,
        to: Decimal,
    },
    SetShipping {
        document: usize,
        from: Option<Decimal>,
        to: Option<Decimal>,
    },
    SetAdjustmentPositive {
        document: usize,
        from: Option<Adjustment>,
        to: Option<Adjustment>,
    },
    SetAdjustmentNegative {
        document: usize,
        from: Option<Adjustment>,
        to: Option<Adjustment>,
    },
}

/// A changed plan that closes the order, verified by running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub plan: Vec<PlannedDocument>,
    pub changes: Vec<PlanChange>,
    /// The run of the changed plan: `verified.closes` is true, no document is refused.
    pub verified: PlanRun,
}

/// What [`predict`] says about a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosabilityReport {
    pub run: PlanRun,
    pub blockers: Vec<Blocker>,
    /// Where the leftover comes from (empty when there is none); largest first.
    pub causes: Vec<LeftoverCause>,
    /// A verified change that closes the order; `None` when the plan closes it already or no
    /// candidate does (then `unresolved` says why).
    pub proposal: Option<Proposal>,
    pub unresolved: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// running a plan

/// A created document with the refunded totals around it (for the attribution).
#[derive(Debug, Clone)]
struct TraceEntry {
    index: usize,
    document: Document,
    refunded_before: Amount2,
    refunded_after: Amount2,
}

/// Run `plan` on `order`; refused documents change nothing and the run continues.
pub fn run_plan(order: &Order, plan: &[PlannedDocument]) -> (PlanRun, Order) {
    let (run, order, _) = run_traced(order, plan);
    (run, order)
}

fn run_traced(order: &Order, plan: &[PlannedDocument]) -> (PlanRun, Order, Vec<TraceEntry>) {
    let mut current = order.clone();
    let mut documents = Vec::with_capacity(plan.len());
    let mut trace = Vec::new();
    for (index, doc) in plan.iter().enumerate() {
        let (kind, result) = match doc {
            PlannedDocument::Invoice(r) => (
                DocumentKind::Invoice,
                create_invoice(&current, r).map(|(i, o)| (Document::Invoice(i), o)),
            ),
            PlannedDocument::Creditmemo(r) => (
                DocumentKind::Creditmemo,
                create_creditmemo(&current, r).map(|(c, o)| (Document::Creditmemo(c), o)),
            ),
        };
        match result {
            Ok((document, after)) => {
                documents.push(outcome(index, kind, Some(&document), None));
                trace.push(TraceEntry {
                    index,
                    document,
                    refunded_before: opt(current.total_refunded),
                    refunded_after: opt(after.total_refunded),
                });
                current = after;
            }
            Err(rej) => {
                let info = RejectionInfo {
                    stage: rej.stage,
                    message: rej.message.clone(),
                    available_refund: rej.available_refund,
                };
                documents.push(outcome(index, kind, rej.collected.as_deref(), Some(info)));
            }
        }
    }
    let flags = state::flags(&current);
    let closes = flags.is_closed;
    let fees_kept = current.adjustment_negative.unwrap_or(Amount2::ZERO);
    let run = PlanRun {
        documents,
        flags,
        closes,
        fees_kept,
    };
    (run, current, trace)
}

fn outcome(
    index: usize,
    kind: DocumentKind,
    doc: Option<&Document>,
    rejection: Option<RejectionInfo>,
) -> DocumentOutcome {
    let (grand_total, is_last, partial) = match doc {
        Some(Document::Invoice(i)) => (Some(i.grand_total), Some(i.is_last), None),
        Some(Document::Creditmemo(c)) => (
            Some(c.grand_total),
            Some(c.is_last),
            Some(c.partial_shipping_refund),
        ),
        None => (None, None, None),
    };
    DocumentOutcome {
        index,
        kind,
        created: rejection.is_none(),
        grand_total,
        is_last,
        partial_shipping_refund: partial,
        rejection,
    }
}

// ---------------------------------------------------------------------------------------------
// prediction

/// Check a plan against the order: item ids must exist, quantities, shipping amounts and
/// adjustments must not be negative. Every violation is reported.
pub fn validate_plan(order: &Order, plan: &[PlannedDocument]) -> Result<(), SalesError> {
    let mut violations = Vec::new();
    let mut bad = |field: String, message: &str| {
        violations.push(Violation {
            field,
            message: message.to_owned(),
        })
    };
    for (i, doc) in plan.iter().enumerate() {
        let qtys = match doc {
            PlannedDocument::Invoice(r) => &r.qtys,
            PlannedDocument::Creditmemo(r) => &r.qtys,
        };
        for (id, q) in qtys {
            if order.item(*id).is_none() {
                bad(format!("plan[{i}].qtys.{id}"), "no such order item");
            }
            if *q < Decimal::ZERO {
                bad(
                    format!("plan[{i}].qtys.{id}"),
                    "quantity must not be negative",
                );
            }
        }
        if let PlannedDocument::Creditmemo(r) = doc {
            if r.shipping_amount.is_some_and(|s| s < Decimal::ZERO) {
                bad(format!("plan[{i}].shipping_amount"), "must not be negative");
            }
            for (name, adj) in [
                ("adjustment_positive", r.adjustment_positive),
                ("adjustment_negative", r.adjustment_negative),
            ] {
                let negative = match adj {
                    Some(Adjustment::Amount(a)) | Some(Adjustment::Percent(a)) => a < Decimal::ZERO,
                    None => false,
                };
                if negative {
                    bad(format!("plan[{i}].{name}"), "must not be negative");
                }
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SalesError::Invalid { violations })
    }
}

/// Run the plan, explain what keeps the order open, and propose a verified change that closes
/// it.
///
/// ```
/// # use tillbridge_core::sales::closability::{predict, PlannedDocument};
/// # use tillbridge_core::sales::{CreditmemoRequest, InvoiceRequest, Order};
/// # fn demo(order: &Order) -> Result<(), tillbridge_core::sales::SalesError> {
/// let plan = vec![
///     PlannedDocument::Invoice(InvoiceRequest::all()),
///     PlannedDocument::Creditmemo(CreditmemoRequest::default()),
/// ];
/// let report = predict(order, &plan)?;
/// if !report.run.closes {
///     if let Some(p) = &report.proposal {
///         assert!(p.verified.closes);
///     }
/// }
/// # Ok(()) }
/// ```
pub fn predict(order: &Order, plan: &[PlannedDocument]) -> Result<ClosabilityReport, SalesError> {
    validate_plan(order, plan)?;
    let (run, fin, trace) = run_traced(order, plan);
    let blockers = blockers(&run, &fin);
    let causes = attribute(order, &fin, &trace);
    let clean = run.rejections().next().is_none();
    if run.closes && clean {
        return Ok(ClosabilityReport {
            run,
            blockers,
            causes,
            proposal: None,
            unresolved: None,
        });
    }
    let (proposal, unresolved) = match propose(order, plan, &fin) {
        Ok(p) => (Some(p), None),
        Err(why) => (None, Some(why)),
    };
    Ok(ClosabilityReport {
        run,
        blockers,
        causes,
        proposal,
        unresolved,
    })
}

fn blockers(run: &PlanRun, fin: &Order) -> Vec<Blocker> {
    let mut out = Vec::new();
    for d in run.rejections() {
        if let Some(r) = &d.rejection {
            out.push(Blocker::Rejected {
                document: d.index,
                stage: r.stage,
                message: r.message.clone(),
            });
        }
    }
    if run.closes {
        return out;
    }
    if !matches!(fin.state, OrderState::Processing | OrderState::Complete) {
        out.push(Blocker::State { state: fin.state });
    }
    for i in &fin.items {
        let q = i.qty_to_invoice();
        if q > Decimal::ZERO {
            out.push(Blocker::UnitsToInvoice {
                order_item_id: i.item_id,
                qty: q,
            });
        }
    }
    for i in &fin.items {
        let q = i.qty_to_ship();
        if q > Decimal::ZERO && i.qty_refunded != i.qty_ordered {
            out.push(Blocker::UnitsNotRefunded {
                order_item_id: i.item_id,
                qty: q,
            });
        }
    }
    if run.flags.can_creditmemo {
        out.push(Blocker::RefundableLeftover {
            leftover: run.leftover(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// attribution

/// A cause amount worth reporting: a ten-thousandth or more in either currency.
fn nonzero(a: Amount2) -> bool {
    a.value.abs() >= state::LEFTOVER_EPSILON || a.base.abs() >= state::LEFTOVER_EPSILON
}

fn neg(a: Amount2) -> Amount2 {
    Amount2::new(-a.value, -a.base)
}

fn opt(p: Option<Amount2>) -> Amount2 {
    p.unwrap_or(Amount2::ZERO)
}

/// Four decimals, as the amounts are stored.
fn tidy(a: Amount2) -> Amount2 {
    Amount2::new(
        a.value.round_dp(4).normalize(),
        a.base.round_dp(4).normalize(),
    )
}

fn show(a: Amount2) -> String {
    let a = tidy(a);
    if a.value == a.base {
        format!("{}", a.value)
    } else {
        format!("{} (base {})", a.value, a.base)
    }
}

/// The line amounts of a document: Σ rows, Σ tax, Σ DTC, Σ item discounts.
fn line_sums<'a>(
    items: impl Iterator<
        Item = (
            &'a Amount2,
            &'a Option<Amount2>,
            &'a Option<Amount2>,
            &'a Option<Amount2>,
        ),
    >,
) -> [Amount2; 4] {
    let mut sums = [Amount2::ZERO; 4];
    for (row, tax, dtc, disc) in items {
        sums[0] += *row;
        sums[1] += opt(*tax);
        sums[2] += opt(*dtc);
        sums[3] += opt(*disc);
    }
    sums
}

fn invoice_sums(inv: &Invoice) -> [Amount2; 4] {
    line_sums(inv.items.iter().map(|i| {
        (
            &i.row_total,
            &i.tax_amount,
            &i.discount_tax_compensation_amount,
            &i.discount_amount,
        )
    }))
}

fn memo_sums(cm: &Creditmemo) -> [Amount2; 4] {
    line_sums(cm.items.iter().map(|i| {
        (
            &i.row_total,
            &i.tax_amount,
            &i.discount_tax_compensation_amount,
            &i.discount_amount,
        )
    }))
}

/// Split the final leftover into causes that add up to it (exact decimal arithmetic on the
/// stored and collected values; what is left is [`CauseKind::Other`]).
fn attribute(start: &Order, fin: &Order, trace: &[TraceEntry]) -> Vec<LeftoverCause> {
    let mut causes: Vec<LeftoverCause> = Vec::new();
    let mut explained = Amount2::ZERO;
    let mut push = |kind, document, order_item_id, amount: Amount2, detail: String| {
        if nonzero(amount) {
            explained += amount;
            causes.push(LeftoverCause {
                kind,
                document,
                order_item_id,
                amount: tidy(amount),
                detail,
            });
        }
    };
    let leftover = state::refundable_leftover(fin);

    let paid = opt(fin.total_paid);
    let paid_rounding = Amount2::new(
        Dbl::of(paid.value).round2().dec() - paid.value,
        Dbl::of(paid.base).round2().dec() - paid.base,
    );
    push(
        CauseKind::PaidRounding,
        None,
        None,
        paid_rounding,
        format!("total_paid {} is compared rounded to cents", show(paid)),
    );

    // Lines.
    for oi in &fin.items {
        let row = oi.row_invoiced - opt(oi.amount_refunded);
        let tax = opt(oi.tax_invoiced) - opt(oi.tax_refunded);
        let dtc =
            opt(oi.discount_tax_compensation_invoiced) - opt(oi.discount_tax_compensation_refunded);
        let disc = opt(oi.discount_invoiced) - opt(oi.discount_refunded);
        let residue = row + tax + dtc - disc;
        let last_memo = trace
            .iter()
            .rev()
            .find(|t| match &t.document {
                Document::Creditmemo(c) => c
                    .items
                    .iter()
                    .any(|i| i.order_item_id == oi.item_id && i.qty > Decimal::ZERO),
                Document::Invoice(_) => false,
            })
            .map(|t| t.index);
        let parts = format!(
            "row {}, tax {}, DTC {}, discount {}",
            show(row),
            show(tax),
            show(dtc),
            show(disc)
        );
        if oi.qty_refunded < oi.qty_invoiced {
            let missing = (oi.qty_invoiced - oi.qty_refunded).normalize();
            let detail = format!(
                "{missing} of {} invoiced units not refunded: {parts}",
                oi.qty_invoiced.normalize()
            );
            push(
                CauseKind::UnitsNotRefunded,
                last_memo,
                Some(oi.item_id),
                residue,
                detail,
            );
        } else {
            let detail = format!("all units refunded, left on the line: {parts}");
            push(
                CauseKind::LineRemainder,
                last_memo,
                Some(oi.item_id),
                residue,
                detail,
            );
        }
    }

    // Shipping: amount, its tax, net of its discount (the order's shipping discount is invoiced
    // with the first invoice; memos refund a pro-rata share of it).
    let shipping = opt(fin.shipping_invoiced) - opt(fin.shipping_refunded);
    let mut shipping_tax_invoiced = Amount2::ZERO;
    let mut shipping_discount_invoiced = Amount2::ZERO;
    if start.shipping_invoiced.is_some() {
        shipping_tax_invoiced += opt(start.shipping_tax_amount);
    }
    if !start.invoices.is_empty() {
        shipping_discount_invoiced += opt(start.shipping_discount_amount);
    }
    let mut shipping_discount_refunded = Amount2::ZERO;
    let mut quirks = Vec::new();
    for t in trace {
        match &t.document {
            Document::Invoice(inv) => {
                shipping_tax_invoiced += opt(inv.shipping_tax_amount);
                // discount_amount = −(shipping discount + item discounts)
                shipping_discount_invoiced += neg(inv.discount_amount) - invoice_sums(inv)[3];
            }
            Document::Creditmemo(cm) => {
                let sd = cm.shipping_discount;
                if sd.value < Decimal::ZERO || sd.base < Decimal::ZERO {
                    quirks.push((t.index, cm.shipping_amount, sd));
                } else {
                    shipping_discount_refunded += sd;
                }
            }
        }
    }
    for (index, memo_shipping, sd) in quirks {
        push(
            CauseKind::NegativeShippingDiscount,
            Some(index),
            None,
            sd,
            format!(
                "shipping refund {} posted as 0: Magento derived the memo's shipping as 0 − shipping \
                 tax and refunded a negative shipping discount of {}",
                show(memo_shipping),
                show(sd)
            ),
        );
    }
    let shipping_tax = shipping_tax_invoiced - opt(fin.shipping_tax_refunded);
    let shipping_discount = shipping_discount_invoiced - shipping_discount_refunded;
    push(
        CauseKind::ShippingNotRefunded,
        None,
        None,
        shipping + shipping_tax - shipping_discount,
        format!(
            "invoiced minus refunded: shipping {}, shipping tax {}, shipping discount {}",
            show(shipping),
            show(shipping_tax),
            show(shipping_discount)
        ),
    );

    // Per document: adjustments, per-memo rounding of total_refunded, totals clamps.
    for t in trace {
        match &t.document {
            Document::Invoice(inv) => {
                let [rows, tax, dtc, _] = invoice_sums(inv);
                // grand = subtotal − discounts + shipping + tax + DTC (incl. shipping DTC)
                let lines = rows
                    + inv.discount_amount
                    + opt(inv.shipping_amount)
                    + tax
                    + opt(inv.shipping_tax_amount)
                    + dtc;
                let clamp = inv.grand_total - lines;
                let detail = format!(
                    "invoice grand total differs from its lines by {} (subtotal / tax clamps, shipping DTC)",
                    show(clamp)
                );
                push(
                    CauseKind::DocumentTotals,
                    Some(t.index),
                    None,
                    clamp,
                    detail,
                );
            }
            Document::Creditmemo(cm) => {
                let fee = opt(cm.adjustment_negative);
                push(
                    CauseKind::AdjustmentFee,
                    Some(t.index),
                    None,
                    fee,
                    format!("adjustment fee {} kept", show(fee)),
                );
                let extra = opt(cm.adjustment_positive);
                push(
                    CauseKind::AdjustmentRefund,
                    Some(t.index),
                    None,
                    neg(extra),
                    format!("adjustment refund {} paid out", show(extra)),
                );
                let added = t.refunded_after - t.refunded_before;
                push(
                    CauseKind::RefundRounding,
                    Some(t.index),
                    None,
                    cm.grand_total - added,
                    format!(
                        "grand total {} added to total_refunded as {}",
                        show(cm.grand_total),
                        show(added)
                    ),
                );
                let [_, tax, dtc, _] = memo_sums(cm);
                let clamp = cm.tax_amount - tax - cm.shipping_tax_amount
                    + cm.discount_tax_compensation_amount
                    - dtc;
                let why = if cm.partial_shipping_refund {
                    "partial shipping refund: no tax remainder"
                } else if !cm.is_last {
                    "not the last memo: tax is min(allowed, sum of lines)"
                } else {
                    "last memo: the remainder of tax and DTC"
                };
                push(
                    CauseKind::DocumentTotals,
                    Some(t.index),
                    None,
                    neg(clamp),
                    format!(
                        "memo tax and DTC differ from its lines and shipping tax by {} ({why})",
                        show(clamp)
                    ),
                );
            }
        }
    }

    let explained = causes.iter().fold(Amount2::ZERO, |acc, c| acc + c.amount);
    let other = leftover - explained;
    let mut push = |kind, document, order_item_id, amount: Amount2, detail: String| {
        if nonzero(amount) {
            causes.push(LeftoverCause {
                kind,
                document,
                order_item_id,
                amount,
                detail,
            });
        }
    };
    push(
        CauseKind::Other,
        None,
        None,
        other,
        "documents from before the plan, 4-decimal storage".to_owned(),
    );
    causes.sort_by(|a, b| {
        b.amount
            .value
            .abs()
            .cmp(&a.amount.value.abs())
            .then(b.amount.base.abs().cmp(&a.amount.base.abs()))
    });
    causes
}

// ---------------------------------------------------------------------------------------------
// proposal

/// A candidate plan with the changes that made it.
#[derive(Debug, Clone)]
struct Candidate {
    plan: Vec<PlannedDocument>,
    changes: Vec<PlanChange>,
}

fn last_memo_index(plan: &[PlannedDocument]) -> Option<usize> {
    plan.iter()
        .rposition(|d| matches!(d, PlannedDocument::Creditmemo(_)))
}

fn propose(order: &Order, plan: &[PlannedDocument], fin: &Order) -> Result<Proposal, String> {
    let left = state::refundable_leftover(fin);
    let lasts: Vec<(u8, LastMemo)> = structural_bases(order, plan, fin)
        .into_iter()
        .filter_map(|(tier, base)| Some((tier, LastMemo::prepare(order, base)?)))
        .collect();
    // Candidates by tier (simplest changes first); the first tier with a candidate that closes
    // cleanly wins, and within it the fewest and smallest changes.
    let mut tiers: BTreeMap<u8, Vec<Candidate>> = BTreeMap::new();
    for (base_tier, last) in &lasts {
        for (offset, cand) in last.candidates() {
            tiers.entry(base_tier + offset).or_default().push(cand);
        }
    }
    let mut tried = 0usize;
    for candidates in tiers.into_values() {
        if let Some(p) = best_closing(order, candidates, &mut tried) {
            return Ok(p);
        }
    }
    // Then the last memo posts "no shipping" the other way: `0` where the plan left the
    // shipping to Magento, or the other way round. With no shipping left, a memo that leaves
    // it to Magento still takes the whole shipping discount off again (the discount collector
    // reads the order's shipping incl. tax − shipping tax), while a posted `0` refunds a
    // negative shipping discount (magento/magento2 #19899): a different sub-cent remainder
    // for the adjustments to work with.
    let candidates: Vec<Candidate> = lasts
        .iter()
        .flat_map(|(_, last)| last.no_shipping_posted_otherwise())
        .collect();
    if let Some(p) = best_closing(order, candidates, &mut tried) {
        return Ok(p);
    }
    // Then the last memo refunds less of the remaining shipping, a cent more at a time, with
    // the adjustments that land `total_refunded` on `round(total_paid)`: the smallest departure
    // from "all the shipping" that closes wins.
    for cents in FIRST_SEARCHED_SHIPPING_CENTS..=SHIPPING_SEARCH_MAX_CENTS {
        let candidates: Vec<Candidate> = lasts
            .iter()
            .flat_map(|(_, last)| last.shipping_below(cents))
            .collect();
        if let Some(p) = best_closing(order, candidates, &mut tried) {
            return Ok(p);
        }
    }
    Err(format!(
        "none of {tried} candidate changes closes the order (leftover {} / base {}); {}",
        left.value.normalize(),
        left.base.normalize(),
        if order.base_to_order_rate != Decimal::ONE {
            "in a multi-currency order an order-currency cent can be out of reach of base-currency adjustments that stay within the base amount paid"
        } else {
            "the plan needs a manual review"
        }
    ))
}

/// Of `candidates`, the one whose run closes the order with no refused document and the fewest
/// and smallest changes, verified.
fn best_closing(order: &Order, candidates: Vec<Candidate>, tried: &mut usize) -> Option<Proposal> {
    let mut best: Option<((usize, Decimal), Candidate, PlanRun)> = None;
    for cand in candidates {
        *tried += 1;
        let (run, _) = run_plan(order, &cand.plan);
        if !(run.closes && run.rejections().next().is_none()) {
            continue;
        }
        let score = (change_weight(&cand.changes), adjustment_size(&cand.changes));
        if best.as_ref().is_none_or(|(s, _, _)| score < *s) {
            best = Some((score, cand, run));
        }
    }
    best.map(|(_, cand, run)| Proposal {
        plan: cand.plan,
        changes: cand.changes,
        verified: run,
    })
}

/// How much a list of changes departs from the plan: leaving a document out weighs most.
fn change_weight(changes: &[PlanChange]) -> usize {
    changes
        .iter()
        .map(|c| match c {
            PlanChange::RemoveDocument { .. } => 3,
            _ => 1,
        })
        .sum()
}

/// The adjustment amounts a list of changes sets.
fn adjustment_size(changes: &[PlanChange]) -> Decimal {
    changes
        .iter()
        .map(|c| match c {
            PlanChange::SetAdjustmentPositive { to: Some(a), .. }
            | PlanChange::SetAdjustmentNegative { to: Some(a), .. } => match a {
                Adjustment::Amount(x) | Adjustment::Percent(x) => x.abs(),
            },
            _ => Decimal::ZERO,
        })
        .sum()
}

/// Plans with the structure fixed, with their tier: everything invoiced and a last credit memo
/// (tier 0); refused memos before the last one left out (tier 0); an earlier memo refunding a
/// cent or three less shipping, so the last one refunds it (tier 3).
fn structural_bases(order: &Order, plan: &[PlannedDocument], fin: &Order) -> Vec<(u8, Candidate)> {
    let mut out = Vec::new();
    let mut base = Candidate {
        plan: plan.to_vec(),
        changes: Vec::new(),
    };
    // Units left to invoice: one more invoice before the last memo.
    let to_invoice: BTreeMap<u32, Decimal> = fin
        .items
        .iter()
        .filter(|i| i.qty_to_invoice() > Decimal::ZERO)
        .map(|i| (i.item_id, i.qty_to_invoice().normalize()))
        .collect();
    if !to_invoice.is_empty() {
        let at = last_memo_index(&base.plan).unwrap_or(base.plan.len());
        base.plan.insert(
            at,
            PlannedDocument::Invoice(InvoiceRequest {
                qtys: to_invoice.clone(),
            }),
        );
        base.changes.push(PlanChange::InsertInvoice {
            at,
            qtys: to_invoice,
        });
    }
    if last_memo_index(&base.plan).is_none() {
        let at = base.plan.len();
        base.plan
            .push(PlannedDocument::Creditmemo(CreditmemoRequest::default()));
        base.changes.push(PlanChange::AppendCreditmemo { at });
    }
    out.push((0, base.clone()));

    // Variant: leave out the refused memos before the last one.
    let (run, _) = run_plan(order, &base.plan);
    let last = last_memo_index(&base.plan).unwrap_or(0);
    let refused: Vec<usize> = run
        .rejections()
        .filter(|d| d.kind == DocumentKind::Creditmemo && d.index < last)
        .map(|d| d.index)
        .collect();
    if !refused.is_empty() {
        // Repair: a refused memo refunds at most what is left (quantities capped, shipping as
        // the admin would pre-fill it).
        let mut repaired = base.clone();
        for &i in &refused {
            let (_, before) = run_plan(order, &repaired.plan[..i]);
            let PlannedDocument::Creditmemo(r) = &repaired.plan[i] else {
                continue;
            };
            let mut memo = r.clone();
            for (id, q) in memo.qtys.iter_mut() {
                let cap = before
                    .item(*id)
                    .map_or(Decimal::ZERO, |oi| oi.qty_to_refund());
                if *q > cap {
                    repaired.changes.push(PlanChange::SetQty {
                        document: i,
                        order_item_id: *id,
                        from: *q,
                        to: cap.normalize(),
                    });
                    *q = cap.normalize();
                }
            }
            if let (Some(posted), Ok(default)) =
                (memo.shipping_amount, admin_default_shipping_amount(&before))
                && posted > default
            {
                repaired.changes.push(PlanChange::SetShipping {
                    document: i,
                    from: Some(posted),
                    to: Some(default),
                });
                memo.shipping_amount = Some(default);
            }
            repaired.plan[i] = PlannedDocument::Creditmemo(memo);
        }
        if repaired.changes.len() > base.changes.len() {
            out.push((0, repaired));
        }
        let mut v = base.clone();
        for &i in refused.iter().rev() {
            let reason = run.documents[i]
                .rejection
                .as_ref()
                .map(|r| r.message.clone())
                .unwrap_or_default();
            v.plan.remove(i);
            v.changes
                .push(PlanChange::RemoveDocument { index: i, reason });
        }
        out.push((0, v.clone()));
        base = v;
    }

    // Variants: an earlier memo refunds a cent or three less shipping and the last memo the
    // rest, which shifts the order-currency rounding of the shipping split (multi-currency).
    // A memo that left the shipping to Magento refunded what was left; the variant posts it.
    let last = last_memo_index(&base.plan).unwrap_or(0);
    let earlier = (0..last).rev().find_map(|k| {
        let PlannedDocument::Creditmemo(r) = &base.plan[k] else {
            return None;
        };
        let s = match r.shipping_amount {
            Some(s) => s,
            None => {
                let (_, before) = run_plan(order, &base.plan[..k]);
                admin_default_shipping_amount(&before).ok()?
            }
        };
        (s > Decimal::ZERO).then(|| (k, r.clone(), s))
    });
    if let Some((k, r, s)) = earlier {
        for cents in 1..=3 {
            let v = s - Decimal::new(cents, 2);
            if v < Decimal::ZERO {
                break;
            }
            let mut c = base.clone();
            let mut memo = r.clone();
            memo.shipping_amount = Some(v);
            c.plan[k] = PlannedDocument::Creditmemo(memo);
            c.changes.push(PlanChange::SetShipping {
                document: k,
                from: r.shipping_amount,
                to: Some(v),
            });
            out.push((3, c));
        }
    }
    out
}

fn memo_at(plan: &[PlannedDocument], m: usize) -> CreditmemoRequest {
    match &plan[m] {
        PlannedDocument::Creditmemo(r) => r.clone(),
        PlannedDocument::Invoice(_) => CreditmemoRequest::default(),
    }
}

/// The first shipping reduction (base cents below the remaining shipping) that the second pass
/// of [`propose`] tries; [`LastMemo::candidates`] tries the ones before it.
const FIRST_SEARCHED_SHIPPING_CENTS: i64 = 3;

/// How far below the remaining shipping the second pass of [`propose`] searches the last memo's
/// shipping refund, in base cents.
///
/// Each posted cent of shipping moves the memo's order-currency total against its base total by
/// a fraction of a cent: Magento rounds the order-currency shipping on its own
/// (`round(shipping × ratio)`) and leaves the pro-rata shipping discount unrounded. When earlier
/// memos refunded more in base currency than their order-currency amounts convert to (a posted
/// shipping `0` refunds a negative shipping discount; adjustments are rounded per currency),
/// no adjustment pair on the full shipping lands both currencies (the base side would refund
/// more than was paid); a few cents less shipping does.
const SHIPPING_SEARCH_MAX_CENTS: i64 = 100;

/// The last credit memo of a base plan, prepared: the order before it, and the memo refunding
/// every remaining unit and the remaining shipping (as the admin pre-fills it).
struct LastMemo {
    base: Candidate,
    /// Index of the memo in the plan.
    m: usize,
    before: Order,
    planned: CreditmemoRequest,
    memo: CreditmemoRequest,
    /// The base's changes, the quantities and the shipping set on the memo.
    changes: Vec<PlanChange>,
    default_shipping: Option<Decimal>,
}

impl LastMemo {
    fn prepare(order: &Order, base: Candidate) -> Option<LastMemo> {
        let m = last_memo_index(&base.plan)?;
        let (_, before) = run_plan(order, &base.plan[..m]);
        let planned = memo_at(&base.plan, m);
        let mut memo = planned.clone();
        let mut changes = base.changes.clone();

        // Every remaining unit.
        if !planned.qtys.is_empty()
            || before
                .items
                .iter()
                .any(|i| i.qty_to_refund() > Decimal::ZERO)
        {
            let mut qtys = BTreeMap::new();
            for oi in &before.items {
                let want = oi.qty_to_refund().normalize();
                let had = if planned.qtys.is_empty() {
                    want
                } else {
                    planned
                        .qtys
                        .get(&oi.item_id)
                        .copied()
                        .unwrap_or(Decimal::ZERO)
                };
                if had != want {
                    changes.push(PlanChange::SetQty {
                        document: m,
                        order_item_id: oi.item_id,
                        from: had,
                        to: want,
                    });
                }
                qtys.insert(oi.item_id, want);
            }
            memo.qtys = qtys;
        }
        // The remaining shipping, as the admin pre-fills it.
        let default_shipping = admin_default_shipping_amount(&before).ok();
        if let (Some(posted), Some(default)) = (planned.shipping_amount, default_shipping)
            && posted != default
        {
            memo.shipping_amount = Some(default);
            changes.push(PlanChange::SetShipping {
                document: m,
                from: Some(posted),
                to: Some(default),
            });
        }
        Some(LastMemo {
            base,
            m,
            before,
            planned,
            memo,
            changes,
            default_shipping,
        })
    }

    fn with(&self, memo: &CreditmemoRequest, changes: Vec<PlanChange>) -> Candidate {
        let mut plan = self.base.plan.clone();
        plan[self.m] = PlannedDocument::Creditmemo(memo.clone());
        Candidate { plan, changes }
    }

    fn is_shipping_change(&self, c: &PlanChange) -> bool {
        matches!(c, PlanChange::SetShipping { document, .. } if *document == self.m)
    }

    fn set_shipping(&self, to: Decimal) -> PlanChange {
        PlanChange::SetShipping {
            document: self.m,
            from: self.planned.shipping_amount,
            to: Some(to),
        }
    }

    /// The shipping amount the variants count from: the posted one, or, for a memo that leaves
    /// the shipping to Magento (REST style), what the admin pre-fills (all that is left).
    fn shipping_center(&self) -> Option<Decimal> {
        self.memo
            .shipping_amount
            .or(self.default_shipping)
            .filter(|s| *s > Decimal::ZERO)
    }

    /// Candidates for the last memo, with their tier offset: refund every remaining unit and
    /// the remaining shipping (0), then the adjustments that land `total_refunded` on
    /// `round(total_paid)` (1), also with the shipping refund a cent or two off it — posted
    /// explicitly when the plan left the shipping to Magento (2).
    fn candidates(&self) -> Vec<(u8, Candidate)> {
        let mut out = vec![(0u8, self.with(&self.memo, self.changes.clone()))];
        let default_change = self
            .changes
            .iter()
            .find(|c| self.is_shipping_change(c))
            .cloned();
        out.extend(
            self.adjusted(self.memo.shipping_amount, default_change)
                .into_iter()
                .map(|c| (1, c)),
        );
        // A memo that leaves the shipping to Magento refunds all that is left; the variants
        // post it explicitly, as the admin pre-fills it, and a cent or two below. Posted,
        // Magento rounds the order-currency shipping on its own (`round(shipping × ratio)`)
        // while the shipping discount follows the base amount, which can reach an
        // order-currency cent that no base-currency adjustment reaches.
        let deltas = match self.memo.shipping_amount {
            Some(_) => &[-1i64, -2, 1][..],
            None => &[0i64, -1, -2][..],
        };
        if let Some(s) = self.shipping_center() {
            for delta in deltas.iter().map(|&c| Decimal::new(c, 2)) {
                let v = s + delta;
                if v >= Decimal::ZERO {
                    out.extend(
                        self.adjusted(Some(v), Some(self.set_shipping(v)))
                            .into_iter()
                            .map(|c| (2, c)),
                    );
                }
            }
        }
        out
    }

    /// The memo refunding `cents` base cents less than the remaining shipping, with the
    /// adjustments that close the order.
    fn shipping_below(&self, cents: i64) -> Vec<Candidate> {
        let Some(s) = self.shipping_center() else {
            return Vec::new();
        };
        let v = s - Decimal::new(cents, 2);
        if v < Decimal::ZERO {
            return Vec::new();
        }
        self.adjusted(Some(v), Some(self.set_shipping(v)))
    }

    /// A memo refunding no shipping, posted the other way: `0` instead of leaving it to
    /// Magento when none is left, or left to Magento instead of `0`; with the adjustments that
    /// close the order.
    fn no_shipping_posted_otherwise(&self) -> Vec<Candidate> {
        let other = match self.memo.shipping_amount {
            None if self.default_shipping.is_some_and(|s| s.is_zero()) => Some(Decimal::ZERO),
            Some(s) if s.is_zero() => None,
            _ => return Vec::new(),
        };
        let change = PlanChange::SetShipping {
            document: self.m,
            from: self.planned.shipping_amount,
            to: other,
        };
        self.adjusted(other, Some(change))
    }

    /// The memo with `shipping` posted and the adjustments [`solve_adjustments`] finds for it.
    fn adjusted(
        &self,
        shipping: Option<Decimal>,
        shipping_change: Option<PlanChange>,
    ) -> Vec<Candidate> {
        let m = self.m;
        let planned = &self.planned;
        let mut probe = self.memo.clone();
        probe.shipping_amount = shipping;
        probe.adjustment_positive = None;
        probe.adjustment_negative = None;
        let Ok(collected) = collect_creditmemo(&self.before, &probe) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (pos, neg) in solve_adjustments(&self.before, &collected) {
            let mut c = probe.clone();
            c.adjustment_positive = pos;
            c.adjustment_negative = neg;
            let mut ch: Vec<PlanChange> = self
                .changes
                .iter()
                .filter(|c| !self.is_shipping_change(c))
                .cloned()
                .collect();
            ch.extend(shipping_change.clone());
            if pos != planned.adjustment_positive {
                ch.push(PlanChange::SetAdjustmentPositive {
                    document: m,
                    from: planned.adjustment_positive,
                    to: pos,
                });
            }
            if neg != planned.adjustment_negative {
                ch.push(PlanChange::SetAdjustmentNegative {
                    document: m,
                    from: planned.adjustment_negative,
                    to: neg,
                });
            }
            out.push(self.with(&c, ch));
        }
        out
    }
}

/// How far the smaller side of a two-sided adjustment pair is searched, in base cents.
const SMALLER_SIDE_MAX_CENTS: i64 = 200;

/// Base-currency adjustments `(positive, negative)` for a memo collected without adjustments
/// such that, on `before`, `round(total_refunded + grand)` lands on `round(total_paid)` in the
/// order currency, the refund stays within the base amount paid, and the grand total is valid.
/// Best first: base leftover zero too, one-sided, smallest.
fn solve_adjustments(
    before: &Order,
    memo: &Creditmemo,
) -> Vec<(Option<Adjustment>, Option<Adjustment>)> {
    let paid = D2::opt(before.total_paid);
    let refunded = D2::opt(before.total_refunded);
    let target = paid.map(Dbl::round2);
    let g0 = D2::of(memo.grand_total);
    let eps = Dbl::epsilon();
    let allow_zero = before.config.allow_zero_grandtotal_creditmemo;
    let cent = Decimal::new(1, 2);

    // What the order currency needs, and its base estimate.
    let need = (target.v - (refunded.v + g0.v)).dec();
    let estimate = if before.base_to_order_rate.is_zero() {
        need
    } else {
        (need / before.base_to_order_rate).round_dp(2)
    };
    // Pairs whose base net is within five cents of the estimate. Each side is converted and
    // rounded on its own (`round(base × rate)`), so a two-sided pair can move the
    // order-currency net a cent away from what its base net converts to; the smaller side
    // runs up to `SMALLER_SIDE_MAX_CENTS` to find such a pair (0.07 / 1.14 at 1.0833).
    let mut pairs = Vec::new();
    for k in -5..=5i64 {
        let net = estimate + cent * Decimal::from(k);
        for j in 0..=SMALLER_SIDE_MAX_CENTS {
            let small = cent * Decimal::from(j);
            pairs.push(if net >= Decimal::ZERO {
                (net + small, small)
            } else {
                (small, small - net)
            });
        }
    }

    let mut found: Vec<((bool, bool, Decimal), Decimal, Decimal)> = Vec::new();
    for (ap, an) in pairs {
        if ap.is_zero() && an.is_zero() {
            continue;
        }
        let pos = Adjustment::Amount(ap).amounts(before);
        let neg = Adjustment::Amount(an).amounts(before);
        let (pos, neg) = (D2::of(pos), D2::of(neg));
        let grand = g0 + pos - neg;
        if !allow_zero && grand.v <= Dbl::ZERO {
            continue;
        }
        // CreditmemoService::validateForRefund (base).
        if (refunded.b + grand.b).round2() > paid.b.round2() {
            continue;
        }
        let after = (refunded + grand).map(Dbl::round2);
        if (target.v - after.v).abs() >= eps {
            continue;
        }
        let base_left = (target.b - after.b).abs() >= eps;
        let two_sided = !ap.is_zero() && !an.is_zero();
        found.push(((base_left, two_sided, ap + an), ap, an));
    }
    found.sort_by_key(|a| a.0);
    found
        .into_iter()
        .take(3)
        .map(|(_, ap, an)| {
            (
                (!ap.is_zero()).then_some(Adjustment::Amount(ap)),
                (!an.is_zero()).then_some(Adjustment::Amount(an)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::sales::fixtures::{Line, order};

    fn memo(qty: Decimal, shipping: Decimal) -> PlannedDocument {
        PlannedDocument::Creditmemo(CreditmemoRequest {
            qtys: [(1, qty)].into_iter().collect(),
            shipping_amount: Some(shipping),
            ..CreditmemoRequest::default()
        })
    }

    fn kinds(r: &ClosabilityReport) -> Vec<CauseKind> {
        r.causes.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn per_memo_rounding_is_closed_with_a_one_cent_fee_on_the_last_memo() {
        // 2 × 10.00, shipping 10.00 with a 3.33 shipping discount: 26.67 paid. Each half
        // refunds 13.335, and total_refunded is rounded per memo: 13.34, then 26.68 > 26.67.
        let o = order(
            &[Line(2, dec!(20), dec!(0), dec!(0))],
            dec!(10),
            dec!(0),
            dec!(3.33),
        );
        let plan = vec![
            PlannedDocument::Invoice(InvoiceRequest::all()),
            memo(dec!(1), dec!(5)),
            memo(dec!(1), dec!(5)),
        ];
        let r = predict(&o, &plan).expect("valid plan");
        assert!(!r.run.closes);
        let refused = r.run.rejections().next().expect("the last memo is refused");
        assert_eq!(refused.index, 2);
        assert_eq!(
            refused.rejection.as_ref().map(|x| x.stage),
            Some(RejectionStage::Refund)
        );
        assert!(matches!(
            r.blockers[0],
            Blocker::Rejected { document: 2, .. }
        ));
        assert_eq!(r.run.leftover().value.round_dp(10), dec!(13.33));
        let k = kinds(&r);
        assert!(k.contains(&CauseKind::UnitsNotRefunded));
        assert!(k.contains(&CauseKind::ShippingNotRefunded));
        assert!(k.contains(&CauseKind::RefundRounding));
        let p = r.proposal.expect("a proposal");
        assert_eq!(
            p.changes,
            vec![PlanChange::SetAdjustmentNegative {
                document: 2,
                from: None,
                to: Some(Adjustment::Amount(dec!(0.01))),
            }]
        );
        assert!(p.verified.closes);
        assert_eq!(p.verified.leftover().value, Decimal::ZERO);
    }

    #[test]
    fn a_plan_that_never_refunds_shipping_gets_it_on_the_last_memo() {
        // Shipping 10.00 taxed 2.00 with a 1.00 discount; every memo posts shipping 0, which
        // also triggers the negative shipping discount.
        let o = order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(10),
            dec!(2),
            dec!(1),
        );
        let plan = vec![
            PlannedDocument::Invoice(InvoiceRequest::all()),
            memo(dec!(1), dec!(0)),
            memo(dec!(1), dec!(0)),
        ];
        let r = predict(&o, &plan).expect("valid plan");
        assert!(!r.run.closes);
        let k = kinds(&r);
        assert!(k.contains(&CauseKind::ShippingNotRefunded));
        assert!(k.contains(&CauseKind::NegativeShippingDiscount));
        let quirk = r
            .causes
            .iter()
            .find(|c| c.kind == CauseKind::NegativeShippingDiscount);
        assert_eq!(quirk.map(|c| c.document), Some(Some(1)));
        let total = r.causes.iter().fold(Amount2::ZERO, |a, c| a + c.amount);
        assert_eq!(total.value.round_dp(8), r.run.leftover().value.round_dp(8));
        let p = r.proposal.expect("a proposal");
        assert!(p.changes.iter().any(|c| matches!(
            c,
            PlanChange::SetShipping {
                document: 2,
                from: Some(_),
                to: Some(_)
            }
        )));
        assert!(p.verified.closes);
        assert!(p.verified.rejections().next().is_none());
    }

    #[test]
    fn a_plan_that_closes_needs_no_proposal() {
        let o = order(
            &[Line(2, dec!(20), dec!(2), dec!(0))],
            dec!(10),
            dec!(2),
            dec!(0),
        );
        let plan = vec![
            PlannedDocument::Invoice(InvoiceRequest::all()),
            PlannedDocument::Creditmemo(CreditmemoRequest::default()),
        ];
        let r = predict(&o, &plan).expect("valid plan");
        assert!(r.run.closes);
        assert!(r.causes.is_empty() && r.blockers.is_empty() && r.proposal.is_none());
    }

    #[test]
    fn an_unfinished_plan_gets_the_missing_invoice_and_memo() {
        let o = order(
            &[Line(3, dec!(30), dec!(3), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        let plan = vec![PlannedDocument::Invoice(InvoiceRequest::new([(
            1,
            dec!(2),
        )]))];
        let r = predict(&o, &plan).expect("valid plan");
        assert!(r.blockers.contains(&Blocker::UnitsToInvoice {
            order_item_id: 1,
            qty: dec!(1)
        }));
        let p = r.proposal.expect("a proposal");
        assert!(matches!(
            p.changes[0],
            PlanChange::InsertInvoice { at: 1, .. }
        ));
        assert!(matches!(
            p.changes[1],
            PlanChange::AppendCreditmemo { at: 2 }
        ));
        assert!(p.verified.closes);
    }

    #[test]
    fn a_malformed_plan_reports_every_violation() {
        let o = order(
            &[Line(1, dec!(10), dec!(0), dec!(0))],
            dec!(0),
            dec!(0),
            dec!(0),
        );
        let plan = vec![PlannedDocument::Creditmemo(CreditmemoRequest {
            qtys: [(1, dec!(-1)), (7, dec!(1))].into_iter().collect(),
            shipping_amount: Some(dec!(-2)),
            ..CreditmemoRequest::default()
        })];
        let Err(SalesError::Invalid { violations }) = predict(&o, &plan) else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "plan[0].qtys.1",
                "plan[0].qtys.7",
                "plan[0].shipping_amount"
            ]
        );
    }

    #[test]
    fn plans_and_reports_round_trip_through_json() {
        let o = order(
            &[Line(2, dec!(20), dec!(0), dec!(0))],
            dec!(10),
            dec!(0),
            dec!(3.33),
        );
        let plan = vec![
            PlannedDocument::Invoice(InvoiceRequest::all()),
            memo(dec!(1), dec!(5)),
            memo(dec!(1), dec!(5)),
        ];
        let text = serde_json::to_string(&plan).expect("serializable");
        let back: Vec<PlannedDocument> = serde_json::from_str(&text).expect("deserializable");
        assert_eq!(back, plan);
        let r = predict(&o, &plan).expect("valid plan");
        let json = serde_json::to_string(&r).expect("serializable");
        let again: ClosabilityReport = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(again, r);
        let unfinished = vec![PlannedDocument::Invoice(InvoiceRequest::new([(
            1,
            dec!(1),
        )]))];
        let r = predict(&o, &unfinished).expect("valid plan");
        assert!(matches!(
            r.proposal.as_ref().map(|p| &p.changes[0]),
            Some(PlanChange::InsertInvoice { .. })
        ));
        let json = serde_json::to_string(&r).expect("serializable");
        let again: ClosabilityReport = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(again, r);
        let order_json = serde_json::to_string(&o).expect("serializable");
        assert_eq!(serde_json::from_str::<Order>(&order_json).ok(), Some(o));
    }
}
