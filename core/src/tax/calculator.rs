//! The three Magento tax calculators (`UnitBaseCalculator`, `RowBaseCalculator`,
//! `TotalBaseCalculator`) for one line, tax excluded or included.
//!
//! One [`Calculator`] is one Magento calculator instance: its rounding chains live as long as it
//! does. `TaxCalculation::calculateTax()` creates a new one per call, and so does
//! [`super::service::calculate_tax`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::rates::RateGroup;
use super::rounding::{ChainKey, DeltaType, TaxDeltaRounder};
use crate::php::round2;

/// `tax/calculation/algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "UNIT_BASE_CALCULATION")]
    UnitBase,
    #[serde(rename = "ROW_BASE_CALCULATION")]
    RowBase,
    #[serde(rename = "TOTAL_BASE_CALCULATION")]
    TotalBase,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [
        Algorithm::UnitBase,
        Algorithm::RowBase,
        Algorithm::TotalBase,
    ];

    /// Parse Magento's config value (`UNIT_BASE_CALCULATION`, also `UNIT`, `unit`).
    pub fn parse(s: &str) -> Option<Self> {
        let up = s.trim().to_ascii_uppercase();
        match up
            .trim_end_matches("_CALCULATION")
            .trim_end_matches("_BASE")
        {
            "UNIT" => Some(Self::UnitBase),
            "ROW" => Some(Self::RowBase),
            "TOTAL" => Some(Self::TotalBase),
            _ => None,
        }
    }

    pub fn as_magento(self) -> &'static str {
        match self {
            Self::UnitBase => "UNIT_BASE_CALCULATION",
            Self::RowBase => "ROW_BASE_CALCULATION",
            Self::TotalBase => "TOTAL_BASE_CALCULATION",
        }
    }
}

/// Which Magento revision's arithmetic to reproduce where revisions differ.
///
/// * `Magento246` (default): 2.4.6-p1. `UnitBaseCalculator` rounds a tax-inclusive unit price to
///   2 decimals before use; the quote shipping discount is rounded (`roundPrice`).
/// * `Mainline`: the newer revision mirrored by Mage-OS (`UnitBaseCalculator@9640f2ee`), which
///   uses the tax-inclusive unit price unrounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TaxRelease {
    #[default]
    #[serde(rename = "2.4.6")]
    Magento246,
    #[serde(rename = "mainline")]
    Mainline,
}

impl TaxRelease {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "2.4.6" | "2.4.6-p1" | "246" => Some(Self::Magento246),
            "mainline" | "newer" => Some(Self::Mainline),
            _ => None,
        }
    }
}

/// The configuration a calculator instance reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalculatorConfig {
    pub algorithm: Algorithm,
    /// `tax/calculation/apply_after_discount`
    pub apply_after_discount: bool,
    /// `tax/calculation/cross_border_trade_enabled`
    pub cross_border_trade: bool,
    pub release: TaxRelease,
}

/// A rate group prepared for the calculator: the group plus its interned chain key.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedGroup {
    pub group: RateGroup,
    pub key: u32,
    /// `percent / 100`, computed once (exact in decimal).
    pub fraction: Decimal,
    /// `percent / item total percent`: this group's share of a tax-inclusive row's tax
    /// (set by [`ItemRates::new`]).
    pub share: Decimal,
}

impl PreparedGroup {
    pub fn new(group: RateGroup, key: u32) -> Self {
        let fraction = percent_fraction(group.percent);
        Self {
            group,
            key,
            fraction,
            share: Decimal::ZERO,
        }
    }
}

/// Everything the calculator needs to know about an item's rates, resolved once per product
/// class: the customer rate (total percent), its chain key (PHP string of the float), the store
/// (origin) rate, and the applied groups.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRates {
    pub percent: Decimal,
    pub percent_key: u32,
    pub store_percent: Decimal,
    pub groups: Vec<PreparedGroup>,
    /// `1 − 1/(1 + percent/100)` and `percent/100`: the factors `calcTaxAmount` multiplies by,
    /// computed once per rate exactly as Magento computes them per call.
    pub incl_factor: Decimal,
    pub fraction: Decimal,
    pub store_incl_factor: Decimal,
}

impl ItemRates {
    pub fn new(
        percent: Decimal,
        percent_key: u32,
        store_percent: Decimal,
        mut groups: Vec<PreparedGroup>,
    ) -> Self {
        for g in &mut groups {
            g.share = if percent.is_zero() {
                Decimal::ZERO
            } else {
                g.group.percent / percent
            };
        }
        Self {
            percent,
            percent_key,
            store_percent,
            groups,
            incl_factor: incl_factor(percent),
            fraction: percent_fraction(percent),
            store_incl_factor: incl_factor(store_percent),
        }
    }
}

/// `percent / 100`, exactly.
pub fn percent_fraction(percent: Decimal) -> Decimal {
    percent / HUNDRED
}

/// The share of tax inside a gross amount at `percent`: `1 − 1/(1 + percent/100)`.
pub fn incl_factor(percent: Decimal) -> Decimal {
    Decimal::ONE - Decimal::ONE / (Decimal::ONE + percent / HUNDRED)
}

/// `round2(x / q)`, computed without a general decimal division when `q` is a small whole
/// number (the usual quantity). Equal to `round2(x / q)` for every input: the rational x/q is
/// rounded half away from zero at 2 decimals in both cases.
#[inline]
pub fn div_round2(x: Decimal, q: Decimal) -> Decimal {
    if q == Decimal::ONE {
        return round2(x);
    }
    let qn = q.normalize();
    if qn.scale() == 0 && x.scale() <= 26 {
        let qi = qn.mantissa();
        if qi > 0 && qi < 1_000_000 {
            // x = m / 10^s; want round(m * 100 / (10^s * q)) / 100.
            let m = x.mantissa();
            let s = x.scale();
            let denom = 10i128.pow(s) * qi;
            if let Some(num) = m.checked_mul(100) {
                let quotient = num / denom;
                let rem = num % denom;
                let twice = rem.abs() * 2;
                let rounded = if twice >= denom {
                    quotient + num.signum()
                } else {
                    quotient
                };
                if let Ok(v) = i64::try_from(rounded) {
                    return Decimal::new(v, 2);
                }
            }
        }
    }
    round2(x / q)
}

/// One `QuoteDetailsItem` as the calculator sees it (quantity already multiplied by the parent's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineInput {
    /// Interned item code (or associated item code), used by UNIT/ROW to key private chains.
    pub item_key: u32,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    /// Row discount amount.
    pub discount_amount: Decimal,
    pub tax_included: bool,
    /// `price_for_tax_calculation` extension attribute (ROW/TOTAL tax-excluded only).
    pub price_for_tax_calculation: Option<Decimal>,
}

/// `TaxDetailsItem` numbers for one line. `applied` holds (group index, amount) pairs in group
/// order; tax-included lines skip 0 % groups, as Magento does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineResult {
    pub row_tax: Decimal,
    pub price: Decimal,
    pub price_incl_tax: Decimal,
    pub row_total: Decimal,
    pub row_total_incl_tax: Decimal,
    pub discount_tax_compensation: Decimal,
    pub tax_percent: Decimal,
    pub applied: Vec<(usize, Decimal)>,
}

/// One Magento calculator instance.
#[derive(Debug, Clone)]
pub struct Calculator {
    pub config: CalculatorConfig,
    rounder: TaxDeltaRounder,
}

const HUNDRED: Decimal = Decimal::ONE_HUNDRED;

/// `Calculation::calcTaxAmount($price, $rate, $priceIncludeTax, false)`.
#[inline]
pub fn calc_tax_amount(price: Decimal, percent: Decimal, price_includes_tax: bool) -> Decimal {
    let r = percent / HUNDRED;
    if price_includes_tax {
        price * (Decimal::ONE - Decimal::ONE / (Decimal::ONE + r))
    } else {
        price * r
    }
}

impl Calculator {
    pub fn new(config: CalculatorConfig) -> Self {
        Self {
            config,
            rounder: TaxDeltaRounder::new(),
        }
    }

    /// Start afresh, as a new Magento calculator instance would.
    pub fn reset(&mut self) {
        self.rounder.reset();
    }

    /// `AbstractCalculator::isSameRateAsStore`.
    fn same_rate_as_store(&self, rate: Decimal, store: Decimal) -> bool {
        self.config.cross_border_trade || (rate - store).abs() < Decimal::new(1, 5)
    }

    /// `AbstractCalculator::calculatePriceInclTax`: re-base a gross store price on the customer rate.
    pub fn rebase_price_incl_tax(
        store_gross: Decimal,
        store_rate: Decimal,
        customer_rate: Decimal,
        round: bool,
    ) -> Decimal {
        Self::rebase_with(
            store_gross,
            incl_factor(store_rate),
            percent_fraction(customer_rate),
            round,
        )
    }

    #[inline]
    fn rebase_with(
        store_gross: Decimal,
        store_incl_factor: Decimal,
        customer_fraction: Decimal,
        round: bool,
    ) -> Decimal {
        let store_tax = store_gross * store_incl_factor;
        let net = store_gross - store_tax;
        let gross = net + net * customer_fraction;
        if round { round2(gross) } else { gross }
    }

    #[inline]
    fn chain(&self, kind: DeltaType, item: u32, tax_included: bool, rate: u32) -> ChainKey {
        let item = match self.config.algorithm {
            Algorithm::TotalBase => None,
            Algorithm::UnitBase | Algorithm::RowBase => Some(item),
        };
        ChainKey {
            kind,
            item,
            tax_included,
            rate,
        }
    }

    #[inline]
    fn before_discount_type(&self) -> DeltaType {
        if self.config.apply_after_discount {
            DeltaType::TaxBeforeDiscount
        } else {
            DeltaType::Regular
        }
    }

    /// `AbstractCalculator::calculate()` for one line.
    pub fn calculate(&mut self, line: &LineInput, rates: &ItemRates, round: bool) -> LineResult {
        let mut out = LineResult::default();
        self.calculate_into(line, rates, round, &mut out);
        out
    }

    /// As [`Calculator::calculate`], reusing `out` (and its `applied` buffer).
    pub fn calculate_into(
        &mut self,
        line: &LineInput,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        out.applied.clear();
        out.tax_percent = rates.percent;
        match (self.config.algorithm, line.tax_included) {
            (Algorithm::UnitBase, false) => self.unit_excl(line, rates, round, out),
            (Algorithm::UnitBase, true) => self.unit_incl(line, rates, round, out),
            (_, false) => self.aggregate_excl(line, rates, round, out),
            (_, true) => self.aggregate_incl(line, rates, round, out),
        }
    }

    fn unit_excl(
        &mut self,
        line: &LineInput,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        let q = line.quantity;
        let price = round2(line.unit_price);
        let after = self.config.apply_after_discount;
        let bt = self.before_discount_type();
        let mut unit_tax = Decimal::ZERO;
        let mut unit_tax_before = Decimal::ZERO;
        for (idx, g) in rates.groups.iter().enumerate() {
            let before = price * g.fraction;
            let before = self.rounder.delta_round(
                before,
                self.chain(bt, line.item_key, false, g.key),
                round,
            );
            let mut after_amount = before;
            if after {
                let unit_discount = if line.discount_amount.is_zero() {
                    Decimal::ZERO
                } else {
                    line.discount_amount / q
                };
                let taxable = (price - unit_discount).max(Decimal::ZERO);
                let a = taxable * g.fraction;
                after_amount = self.rounder.delta_round(
                    a,
                    self.chain(DeltaType::Regular, line.item_key, false, g.key),
                    round,
                );
            }
            out.applied.push((idx, after_amount * q));
            unit_tax += after_amount;
            unit_tax_before += before;
        }
        out.row_tax = unit_tax * q;
        out.price = price;
        out.price_incl_tax = price + unit_tax_before;
        out.row_total = price * q;
        out.row_total_incl_tax = out.price_incl_tax * q;
        out.discount_tax_compensation = Decimal::ZERO;
    }

    fn unit_incl(
        &mut self,
        line: &LineInput,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        let q = line.quantity;
        let rate = rates.percent;
        let mut price_incl = match self.config.release {
            TaxRelease::Magento246 => round2(line.unit_price),
            TaxRelease::Mainline => line.unit_price,
        };
        if !self.same_rate_as_store(rate, rates.store_percent) {
            price_incl =
                Self::rebase_with(price_incl, rates.store_incl_factor, rates.fraction, round);
        }
        let bt = self.before_discount_type();
        let unit_tax = price_incl * rates.incl_factor;
        let mut unit_tax = self.rounder.delta_round(
            unit_tax,
            self.chain(bt, line.item_key, true, rates.percent_key),
            round,
        );
        let price = price_incl - unit_tax;
        let mut dtc = Decimal::ZERO;
        if self.config.apply_after_discount {
            let unit_discount = if line.discount_amount.is_zero() {
                Decimal::ZERO
            } else {
                line.discount_amount / q
            };
            let taxable = (price_incl - unit_discount).max(Decimal::ZERO);
            let a = taxable * rates.incl_factor;
            let a = self.rounder.delta_round(
                a,
                self.chain(DeltaType::Regular, line.item_key, true, rates.percent_key),
                round,
            );
            dtc = (unit_tax - a) * q;
            unit_tax = a;
        }
        let row_tax = unit_tax * q;
        self.split_applied(row_tax, rates, round, out);
        out.row_tax = row_tax;
        out.price = price;
        out.price_incl_tax = price_incl;
        out.row_total = price * q;
        out.row_total_incl_tax = price_incl * q;
        out.discount_tax_compensation = dtc;
    }

    fn aggregate_excl(
        &mut self,
        line: &LineInput,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        let q = line.quantity;
        let price = round2(line.unit_price);
        let row_total = price * q;
        let taxed_row = match line.price_for_tax_calculation {
            Some(p) if !p.is_zero() => round2(p) * q,
            _ => row_total,
        };
        let after = self.config.apply_after_discount;
        let bt = self.before_discount_type();
        let mut row_tax = Decimal::ZERO;
        let mut row_tax_before = Decimal::ZERO;
        for (idx, g) in rates.groups.iter().enumerate() {
            let before = taxed_row * g.fraction;
            let before = self.rounder.delta_round(
                before,
                self.chain(bt, line.item_key, false, g.key),
                round,
            );
            let mut after_amount = before;
            if after {
                let taxable = (taxed_row - line.discount_amount).max(Decimal::ZERO);
                let a = taxable * g.fraction;
                after_amount = self.rounder.delta_round(
                    a,
                    self.chain(DeltaType::Regular, line.item_key, false, g.key),
                    round,
                );
            }
            out.applied.push((idx, after_amount));
            row_tax += after_amount;
            row_tax_before += before;
        }
        let row_incl = row_total + row_tax_before;
        let price_incl = if round {
            div_round2(row_incl, q)
        } else {
            row_incl / q
        };
        out.row_tax = row_tax;
        out.price = price;
        out.price_incl_tax = price_incl;
        out.row_total = row_total;
        out.row_total_incl_tax = row_incl;
        out.discount_tax_compensation = Decimal::ZERO;
    }

    fn aggregate_incl(
        &mut self,
        line: &LineInput,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        let q = line.quantity;
        let rate = rates.percent;
        let mut price_incl = round2(line.unit_price);
        let mut row_incl = price_incl * q;
        if !self.same_rate_as_store(rate, rates.store_percent) {
            price_incl =
                Self::rebase_with(price_incl, rates.store_incl_factor, rates.fraction, round);
            row_incl = price_incl * q;
        }
        let bt = self.before_discount_type();
        let exact = row_incl * rates.incl_factor;
        let mut row_tax = self.rounder.delta_round(
            exact,
            self.chain(bt, line.item_key, true, rates.percent_key),
            round,
        );
        let row_total = row_incl - row_tax;
        let price = if round {
            div_round2(row_total, q)
        } else {
            row_total / q
        };
        let mut dtc = Decimal::ZERO;
        if self.config.apply_after_discount {
            let taxable = (row_incl - line.discount_amount).max(Decimal::ZERO);
            let a = taxable * rates.incl_factor;
            let a = self.rounder.delta_round(
                a,
                self.chain(DeltaType::Regular, line.item_key, true, rates.percent_key),
                round,
            );
            dtc = row_tax - a;
            row_tax = a;
        }
        self.split_applied(row_tax, rates, round, out);
        out.row_tax = row_tax;
        out.price = price;
        out.price_incl_tax = price_incl;
        out.row_total = row_total;
        out.row_total_incl_tax = row_incl;
        out.discount_tax_compensation = dtc;
    }

    /// `AbstractCalculator::getAppliedTaxes`: split a tax-inclusive row tax over the groups on
    /// chains shared by every item of the call; an amount that would overshoot the row tax is
    /// clipped to what is left.
    fn split_applied(
        &mut self,
        row_tax: Decimal,
        rates: &ItemRates,
        round: bool,
        out: &mut LineResult,
    ) {
        let mut total_applied = Decimal::ZERO;
        for (idx, g) in rates.groups.iter().enumerate() {
            if g.group.percent.is_zero() {
                continue;
            }
            // Magento: $rowTax / $totalTaxRate * $percent; the ratio is computed once per rate.
            let share = row_tax * g.share;
            let key = ChainKey {
                kind: DeltaType::AppliedTaxAmount,
                item: None,
                tax_included: true,
                rate: g.key,
            };
            let mut amount = self.rounder.delta_round(share, key, round);
            if total_applied + amount > row_tax {
                amount = row_tax - total_applied;
            }
            total_applied += amount;
            out.applied.push((idx, amount));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tax::rates::AppliedRate;
    use rust_decimal_macros::dec;

    fn rates(pct: Decimal, store: Decimal) -> ItemRates {
        ItemRates::new(
            pct,
            1,
            store,
            vec![PreparedGroup::new(
                RateGroup {
                    id: "g".into(),
                    percent: pct,
                    rates: vec![AppliedRate {
                        code: "g".into(),
                        title: "g".into(),
                        percent: pct,
                    }],
                },
                2,
            )],
        )
    }

    fn cfg(algorithm: Algorithm) -> CalculatorConfig {
        CalculatorConfig {
            algorithm,
            apply_after_discount: true,
            cross_border_trade: false,
            release: TaxRelease::Magento246,
        }
    }

    fn line(item: u32, q: Decimal, price: Decimal, incl: bool) -> LineInput {
        LineInput {
            item_key: item,
            quantity: q,
            unit_price: price,
            discount_amount: Decimal::ZERO,
            tax_included: incl,
            price_for_tax_calculation: None,
        }
    }

    #[test]
    fn unit_base_rounds_per_unit_and_row_base_per_row() {
        let r = rates(dec!(8.25), dec!(8.25));
        let unit = Calculator::new(cfg(Algorithm::UnitBase)).calculate(
            &line(1, dec!(2), dec!(10), false),
            &r,
            true,
        );
        assert_eq!(unit.row_tax, dec!(1.66));
        let row = Calculator::new(cfg(Algorithm::RowBase)).calculate(
            &line(1, dec!(2), dec!(10), false),
            &r,
            true,
        );
        assert_eq!(row.row_tax, dec!(1.65));
        assert_eq!(row.price_incl_tax, dec!(10.83));
    }

    #[test]
    fn total_base_carries_the_remainder_to_the_next_row() {
        let r = rates(dec!(8.25), dec!(8.25));
        let mut calc = Calculator::new(cfg(Algorithm::TotalBase));
        let a = calc.calculate(&line(1, dec!(1), dec!(10), false), &r, true);
        let b = calc.calculate(&line(2, dec!(1), dec!(11), false), &r, true);
        assert_eq!((a.row_tax, b.row_tax), (dec!(0.83), dec!(0.90)));
        let mut calc = Calculator::new(cfg(Algorithm::RowBase));
        let a = calc.calculate(&line(1, dec!(1), dec!(10), false), &r, true);
        let b = calc.calculate(&line(2, dec!(1), dec!(11), false), &r, true);
        assert_eq!((a.row_tax, b.row_tax), (dec!(0.83), dec!(0.91)));
    }

    #[test]
    fn div_round2_equals_decimal_division_then_round() {
        for (x, q) in [
            (dec!(8.47), dec!(2)),
            (dec!(-8.47), dec!(2)),
            (dec!(10.005), dec!(3)),
            (dec!(0.015), dec!(1)),
            (dec!(2976.913), dec!(12)),
            (dec!(1.0000000001), dec!(7)),
            (dec!(33.3333), dec!(2.5)),
            (dec!(0.025), dec!(5)),
        ] {
            assert_eq!(div_round2(x, q), round2(x / q), "{x} / {q}");
        }
    }

    #[test]
    fn tax_inclusive_price_is_rebased_from_the_store_rate() {
        // 9.99 gross at a 10 % store rate, customer at 20 %, cross-border off: 10.90 gross.
        let r = rates(dec!(20), dec!(10));
        let res = Calculator::new(cfg(Algorithm::UnitBase)).calculate(
            &line(1, dec!(2), dec!(9.99), true),
            &r,
            true,
        );
        assert_eq!(res.price_incl_tax, dec!(10.90));
        assert_eq!(res.row_tax, dec!(3.64));
        assert_eq!(res.row_total, dec!(18.16));
    }
}
