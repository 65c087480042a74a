//! PHP's numeric behaviour, reproduced where Magento's observable results depend on it.
//!
//! This module is the **one** place where Tillbridge imitates PHP. Everything else in the core
//! is `rust_decimal::Decimal`.
//!
//! * Magento rounds money with `PriceCurrency::round()`, i.e. PHP `round($x, 2)`: half away from
//!   zero, after PHP (≤ 8.3) pre-rounds the double to 15 significant digits. For decimal inputs
//!   that is "round half away from zero on the decimal value", which is what [`round2`] does on
//!   a `Decimal`; the tax calculators (whose chains start at +0.000001) reproduce Magento's 345
//!   tax vectors this way.
//! * Within one invoice or credit-memo request, Magento's double noise decides cents (a
//!   `1.4e-14` remainder left by `140.4 / 5 × 3` in `Math\Calculator` rounds the next line
//!   down). [`double`] is PHP's double path: [`double::Dbl`], PHP 8.2's `round()` step by step
//!   ([`double::php_round`]), and the document rounder. Values enter and leave it as `Decimal`.
//! * PHP turns a float into a string with `precision = 14` (significant digits, trailing zeros
//!   dropped). Magento uses such strings as keys of its rounding-delta arrays (the total tax rate
//!   of a tax-inclusive line, the cart-rule discount percent); [`php_float_key`] produces them.

pub mod double;

use rust_decimal::{Decimal, RoundingStrategy};

/// `PriceCurrency::round()`: PHP `round($x, 2)` on a decimal value (half away from zero).
#[inline]
pub fn round2(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// PHP `round($x, $places)` on a decimal value (half away from zero).
#[inline]
pub fn round_dp(x: Decimal, places: u32) -> Decimal {
    x.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
}

/// PHP 8.2 `round($value, $places)` on an IEEE double (see [`double::php_round`]).
pub fn php_round_f64(value: f64, places: u32) -> f64 {
    double::php_round(value, i32::try_from(places).unwrap_or(i32::MAX))
}

/// PHP's `(string)$float` with `precision = 14`: at most 14 significant digits, no trailing
/// zeros, no trailing dot (`13.4125`, `20`, `45.7369691921`).
pub fn php_float_key(x: Decimal) -> String {
    if x.is_zero() {
        return "0".to_owned();
    }
    let digits_before_point = {
        let abs = x.abs().trunc();
        if abs.is_zero() {
            0
        } else {
            abs.to_string().len() as i64
        }
    };
    let rounded = if digits_before_point > 0 {
        let dp = (14 - digits_before_point).max(0) as u32;
        round_dp(x, dp)
    } else {
        // Leading zeros after the point do not count as significant digits.
        let mut scale = 14u32;
        let mut probe = x.abs();
        while probe < Decimal::ONE && scale < 27 {
            probe *= Decimal::TEN;
            if probe < Decimal::ONE {
                scale += 1;
            }
        }
        round_dp(x, scale.min(28))
    };
    rounded.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn round2_is_half_away_from_zero() {
        assert_eq!(round2(dec!(1.005)), dec!(1.01));
        assert_eq!(round2(dec!(-0.825)), dec!(-0.83));
        assert_eq!(round2(dec!(18.545)), dec!(18.55));
        assert_eq!(round2(dec!(16.9344)), dec!(16.93));
    }

    #[test]
    fn php_round_f64_pre_rounds_to_fifteen_digits() {
        // 1.005 is 1.00499999999999989... as a double; PHP still gives 1.01.
        assert_eq!(php_round_f64(1.005, 2).to_string(), "1.01");
        assert_eq!(php_round_f64(2.675, 2).to_string(), "2.68");
        assert_eq!(php_round_f64(-15.455, 2).to_string(), "-15.46");
        assert_eq!(php_round_f64(44.954545454545, 2).to_string(), "44.95");
        // The pre-rounding multiplies the double, which lands on a midpoint: PHP gives 75.91.
        assert_eq!(php_round_f64(75.904_999_999_999_94, 2).to_string(), "75.91");
    }

    #[test]
    fn float_keys_match_php_precision_14() {
        assert_eq!(php_float_key(dec!(13.4125)), "13.4125");
        assert_eq!(php_float_key(dec!(20.0000)), "20");
        assert_eq!(php_float_key(dec!(7.249999999999999)), "7.25");
        assert_eq!(php_float_key(dec!(45.736969192100004)), "45.7369691921");
        assert_eq!(php_float_key(dec!(0.5)), "0.5");
    }
}
