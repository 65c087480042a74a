//! POS sale and return transactions: lines, tax lines and tenders in minor units.
//!
//! A transaction is identified by its POS id; a later observation of the same id with a
//! higher `version` (or, without versions, a later `updated_at`) is a correction that replaces
//! the earlier one ([`PosTransaction::supersedes`]). Quantities are positive; the
//! transaction's [`TransactionKind`] says whether units left the shop (sale) or came back
//! (return). [`PosTransaction::problems`] lists every inconsistency at once, each with the
//! field path a person can look up.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{PosLineId, PosLocationId, PosTaxId, PosTransactionId, PosVariationId, Sku};
use super::money::{Currency, Money};
use super::time::Timestamp;

/// Which way the units moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Sale,
    Return,
}

/// Where the transaction is in its life. Finance batches read only `Completed` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    Open,
    Completed,
    Cancelled,
}

/// One tax applied to one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxLine {
    /// The POS tax definition (maps to a Commerce tax class), when the POS names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<PosTaxId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Percent, e.g. `20` for UK standard-rate VAT.
    pub rate: Decimal,
    /// True when the line's prices already include this tax (UK VAT normally does).
    pub inclusive: bool,
    /// The tax charged on the line, in minor units (positive).
    pub amount: Money,
}

/// One line of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionLine {
    pub id: PosLineId,
    /// The POS item variation; `None` for custom-amount lines (no stock effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<PosVariationId>,
    /// The POS's own SKU, when it reports one (informational; the mapping decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Units, positive.
    pub quantity: Decimal,
    /// Unit price as the POS priced it (tax-inclusive when the line's taxes are inclusive).
    pub unit_price: Money,
    /// Discount on the line (positive or zero).
    pub discount: Money,
    /// What the customer paid (or got back) for the line, tax included, after discount.
    pub total: Money,
    #[serde(default)]
    pub taxes: Vec<TaxLine>,
}

/// How a transaction was paid (or refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenderKind {
    Cash,
    Card,
    GiftCard,
    /// Paid outside the POS (e.g. an online order paid in Commerce).
    External,
    Other,
}

/// One tender, in minor units (positive; a return's tenders are money given back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tender {
    pub kind: TenderKind,
    pub amount: Money,
    /// The POS's own name for the tender (card brand, "Voucher").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A sale or a return as the POS recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosTransaction {
    pub id: PosTransactionId,
    pub location: PosLocationId,
    pub kind: TransactionKind,
    pub state: TransactionState,
    /// When it happened at the till. Offline sales arrive late with an old `occurred_at`.
    pub occurred_at: Timestamp,
    /// When the POS last changed it; feeds are cursored on this, not on `occurred_at`.
    pub updated_at: Timestamp,
    /// The POS's version counter, where it has one (Square orders created through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub currency: Currency,
    pub lines: Vec<TransactionLine>,
    #[serde(default)]
    pub tenders: Vec<Tender>,
    /// For a return: the sale it returns, when the POS links it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<PosTransactionId>,
}

/// One inconsistency inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionProblem {
    /// Field path, e.g. `lines[2].taxes[0].amount`.
    pub field: String,
    pub message: String,
}

impl PosTransaction {
    /// Sum of the line totals (tax included).
    pub fn total(&self) -> Option<Money> {
        self.lines
            .iter()
            .try_fold(Money::zero(self.currency), |acc, l| {
                acc.checked_add(l.total).ok()
            })
    }

    /// Sum of every tax line's amount.
    pub fn total_tax(&self) -> Option<Money> {
        self.lines
            .iter()
            .flat_map(|l| &l.taxes)
            .try_fold(Money::zero(self.currency), |acc, t| {
                acc.checked_add(t.amount).ok()
            })
    }

    /// True when `self` is a later observation of the same transaction than `other`: a
    /// higher version, or without versions on both, a later `updated_at`.
    pub fn supersedes(&self, other: &PosTransaction) -> bool {
        if self.id != other.id {
            return false;
        }
        match (self.version, other.version) {
            (Some(a), Some(b)) if a != b => a > b,
            _ => self.updated_at > other.updated_at,
        }
    }

    /// Every inconsistency found (empty when the transaction is coherent): money in another
    /// currency than the transaction's, non-positive quantities, negative discounts, taxes or
    /// tenders, tax rates outside 0–100 %, a return without lines, and, for a completed
    /// transaction that lists tenders, tenders that do not add up to the line totals.
    pub fn problems(&self) -> Vec<TransactionProblem> {
        let mut out = Vec::new();
        let mut push =
            |field: String, message: String| out.push(TransactionProblem { field, message });
        if self.lines.is_empty() {
            push(
                "lines".into(),
                "a transaction needs at least one line".into(),
            );
        }
        let cur = self.currency;
        for (i, line) in self.lines.iter().enumerate() {
            for (name, m) in [
                ("unit_price", line.unit_price),
                ("discount", line.discount),
                ("total", line.total),
            ] {
                if m.currency != cur {
                    push(
                        format!("lines[{i}].{name}"),
                        format!("is in {}, the transaction is in {cur}", m.currency),
                    );
                }
            }
            if line.quantity <= Decimal::ZERO {
                push(
                    format!("lines[{i}].quantity"),
                    format!(
                        "must be positive (got {}); the transaction kind says sale or return",
                        line.quantity
                    ),
                );
            }
            if line.discount.minor < 0 {
                push(
                    format!("lines[{i}].discount"),
                    "must not be negative".into(),
                );
            }
            for (j, tax) in line.taxes.iter().enumerate() {
                if tax.amount.currency != cur {
                    push(
                        format!("lines[{i}].taxes[{j}].amount"),
                        format!("is in {}, the transaction is in {cur}", tax.amount.currency),
                    );
                }
                if tax.amount.minor < 0 {
                    push(
                        format!("lines[{i}].taxes[{j}].amount"),
                        "must not be negative".into(),
                    );
                }
                if tax.rate < Decimal::ZERO || tax.rate > Decimal::ONE_HUNDRED {
                    push(
                        format!("lines[{i}].taxes[{j}].rate"),
                        format!("{} % is outside 0–100 %", tax.rate),
                    );
                }
            }
        }
        let mut tender_sum: Option<i64> = Some(0);
        for (k, t) in self.tenders.iter().enumerate() {
            if t.amount.currency != cur {
                push(
                    format!("tenders[{k}].amount"),
                    format!("is in {}, the transaction is in {cur}", t.amount.currency),
                );
            }
            if t.amount.minor < 0 {
                push(
                    format!("tenders[{k}].amount"),
                    "must not be negative".into(),
                );
            }
            tender_sum = tender_sum.and_then(|s| s.checked_add(t.amount.minor));
        }
        if self.state == TransactionState::Completed && !self.tenders.is_empty() {
            let lines: Option<i64> = self
                .lines
                .iter()
                .try_fold(0i64, |s, l| s.checked_add(l.total.minor));
            if let (Some(tenders), Some(lines)) = (tender_sum, lines)
                && tenders != lines
            {
                push(
                    "tenders".into(),
                    format!(
                        "add up to {} but the lines total {}",
                        Money::new(tenders, cur),
                        Money::new(lines, cur)
                    ),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn gbp(minor: i64) -> Money {
        Money::new(minor, Currency::GBP)
    }

    fn sale() -> PosTransaction {
        PosTransaction {
            id: PosTransactionId::parse("T1").unwrap(),
            location: PosLocationId::parse("L1").unwrap(),
            kind: TransactionKind::Sale,
            state: TransactionState::Completed,
            occurred_at: Timestamp::from_millis(1000),
            updated_at: Timestamp::from_millis(2000),
            version: None,
            currency: Currency::GBP,
            lines: vec![TransactionLine {
                id: PosLineId::parse("1").unwrap(),
                variation: Some(PosVariationId::parse("V1").unwrap()),
                pos_sku: None,
                name: None,
                quantity: dec!(2),
                unit_price: gbp(600),
                discount: gbp(0),
                total: gbp(1200),
                taxes: vec![TaxLine {
                    tax: None,
                    name: Some("VAT".into()),
                    rate: dec!(20),
                    inclusive: true,
                    amount: gbp(200),
                }],
            }],
            tenders: vec![Tender {
                kind: TenderKind::Card,
                amount: gbp(1200),
                detail: None,
            }],
            original: None,
        }
    }

    #[test]
    fn coherent_sale_has_no_problems_and_sums() {
        let t = sale();
        assert_eq!(t.problems(), vec![]);
        assert_eq!(t.total(), Some(gbp(1200)));
        assert_eq!(t.total_tax(), Some(gbp(200)));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut t = sale();
        t.lines[0].quantity = dec!(0);
        t.lines[0].taxes[0].amount = Money::new(200, Currency::EUR);
        t.lines[0].taxes[0].rate = dec!(120);
        t.tenders[0].amount = gbp(1000);
        let fields: Vec<String> = t.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "lines[0].quantity",
                "lines[0].taxes[0].amount",
                "lines[0].taxes[0].rate",
                "tenders"
            ]
        );
    }

    #[test]
    fn later_version_supersedes_and_falls_back_to_updated_at() {
        let a = sale();
        let mut b = sale();
        b.updated_at = Timestamp::from_millis(3000);
        assert!(b.supersedes(&a));
        assert!(!a.supersedes(&b));
        let mut c = a.clone();
        c.version = Some(2);
        let mut d = b.clone();
        d.version = Some(1);
        assert!(c.supersedes(&d), "version wins over updated_at");
    }
}
