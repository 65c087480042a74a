//! Magento's two delta-rounding machines.
//!
//! * [`TaxDeltaRounder`]: `Tax\Model\Calculation\AbstractCalculator::deltaRound`. One per
//!   tax-calculation-service call (a new calculator instance each time). Chains are keyed by
//!   (type, item, direction, rate key); each chain starts at `+0.000001` so that the first value
//!   of a chain rounds half *up* (even when negative). Zero input passes through untouched.
//! * [`DocRoundType`]: the chains of `Framework\Math\Calculator::deltaRound`, used by invoices
//!   and credit memos through `roundPrice($price, $type, $negative)`; the rounder itself works on
//!   PHP doubles, as Magento's does: [`crate::php::double::Calculator`].

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::php::round2;

/// The seed of every tax-calculator chain ("to avoid non-deterministic behaviour with rounding
/// of 0.5", `AbstractCalculator::deltaRound`).
pub const TAX_DELTA_SEED: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

/// The delta type names of `AbstractCalculator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeltaType {
    /// `regular`
    Regular,
    /// `tax_before_discount`
    TaxBeforeDiscount,
    /// `applied_tax_amount`
    AppliedTaxAmount,
}

/// The identity of one rounding chain inside a calculator instance.
///
/// Magento builds the key as the string `type . itemCode . direction` plus the rate key; this is
/// the same identity in structured form. `item` is `None` for TOTAL_BASE and for the applied-tax
/// split (chains shared by all items of the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainKey {
    pub kind: DeltaType,
    pub item: Option<u32>,
    pub tax_included: bool,
    pub rate: u32,
}

/// `AbstractCalculator::deltaRound` state for one calculator instance.
#[derive(Debug, Default, Clone)]
pub struct TaxDeltaRounder {
    deltas: FxHashMap<ChainKey, Decimal>,
}

impl TaxDeltaRounder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget every chain (a fresh calculator instance), keeping the allocation.
    pub fn reset(&mut self) {
        self.deltas.clear();
    }

    /// Round `price` on chain `key`. With `round == false` the delta is still applied and kept
    /// (Magento's behaviour), but the result is not rounded.
    #[inline]
    pub fn delta_round(&mut self, price: Decimal, key: ChainKey, round: bool) -> Decimal {
        if price.is_zero() {
            return price;
        }
        let delta = self.deltas.entry(key).or_insert(TAX_DELTA_SEED);
        let adjusted = price + *delta;
        let rounded = if round { round2(adjusted) } else { adjusted };
        *delta = adjusted - rounded;
        rounded
    }

    /// The pending remainder of a chain, if the chain exists (for diagnostics and tests).
    pub fn delta(&self, key: &ChainKey) -> Option<Decimal> {
        self.deltas.get(key).copied()
    }
}

/// The rounder types used by invoices and credit memos (`roundPrice($price, $type)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocRoundType {
    Regular,
    Base,
    Including,
    IncludingBase,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn key(rate: u32) -> ChainKey {
        ChainKey {
            kind: DeltaType::Regular,
            item: None,
            tax_included: false,
            rate,
        }
    }

    #[test]
    fn first_value_of_a_chain_rounds_half_up_even_when_negative() {
        let mut r = TaxDeltaRounder::new();
        assert_eq!(r.delta_round(dec!(-0.825), key(1), true), dec!(-0.82));
        let mut r = TaxDeltaRounder::new();
        assert_eq!(r.delta_round(dec!(0.825), key(1), true), dec!(0.83));
    }

    #[test]
    fn remainder_is_carried_along_one_chain_only() {
        let mut r = TaxDeltaRounder::new();
        // 10.00 and 11.00 at 8.25 % on one TOTAL chain: 0.825 -> 0.83, then 0.9075 - 0.004999 -> 0.90.
        assert_eq!(r.delta_round(dec!(0.825), key(1), true), dec!(0.83));
        assert_eq!(r.delta_round(dec!(0.9075), key(1), true), dec!(0.90));
        // Another rate key starts afresh.
        assert_eq!(r.delta_round(dec!(0.9075), key(2), true), dec!(0.91));
    }

    #[test]
    fn zero_passes_through_without_touching_the_chain() {
        let mut r = TaxDeltaRounder::new();
        assert_eq!(r.delta_round(Decimal::ZERO, key(1), true), Decimal::ZERO);
        assert_eq!(r.delta(&key(1)), None);
    }
}
