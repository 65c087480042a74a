//! PHP's handling of the values that enter a request, on `Decimal`:
//!
//! * [`php_qty_eq`]: `(string)(double)$a == (string)(double)$b`, the "is last" test of invoice
//!   and credit-memo items (14 significant digits, then a numeric comparison);
//! * [`php_to_float`] and [`locale_get_number`]: how posted strings become numbers (`(float)$s`
//!   and `Locale\Format::getNumber()` for the en_US locale);
//! * [`stored_truthy`]: PHP truthiness of a stored column (`"0.0000"` is true);
//! * [`persist4`]: what a `DECIMAL(p,4)` column keeps.
//!
//! Arithmetic inside a request is PHP's double arithmetic: [`crate::php::double`].

use rust_decimal::{Decimal, RoundingStrategy};

/// The largest scale a `Decimal` can hold.
const MAX_SCALE: i64 = 28;

/// `x` rounded (half away from zero) to `digits` significant digits.
pub fn round_sig(x: Decimal, digits: u32) -> Decimal {
    if x.is_zero() {
        return x;
    }
    let abs = x.abs();
    // magnitude = floor(log10(|x|)) + 1
    let magnitude: i64 = if abs >= Decimal::ONE {
        abs.trunc().to_string().len() as i64
    } else {
        let mut probe = abs;
        let mut m = 1i64;
        while probe < Decimal::ONE && m > -MAX_SCALE {
            probe *= Decimal::TEN;
            m -= 1;
        }
        m
    };
    let dp = (i64::from(digits) - magnitude).clamp(0, MAX_SCALE);
    x.round_dp_with_strategy(dp as u32, RoundingStrategy::MidpointAwayFromZero)
}

/// What a `DECIMAL(p,4)` column stores (and returns on the next load): PHP's
/// `sprintf('%.4F')` of the double `x` stands for.
#[inline]
pub fn persist4(x: Decimal) -> Decimal {
    crate::php::double::Dbl::of(x).persist4()
}

/// `(string)(double)$a == (string)(double)$b` in PHP 8: both sides are printed with 14
/// significant digits and the numeric strings are compared as numbers.
pub fn php_qty_eq(a: Decimal, b: Decimal) -> bool {
    round_sig(a, 14) == round_sig(b, 14)
}

/// PHP's `(float)$string`: the longest leading numeric prefix (after leading whitespace), or 0.
pub fn php_to_float(s: &str) -> Decimal {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let bytes = s.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if digits > 0 || j > frac_start {
            digits += j - frac_start;
            i = j;
        }
    }
    if digits == 0 {
        return Decimal::ZERO;
    }
    let mut end = i;
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            end = j;
        }
    }
    let text = &s[..end];
    let text = text.strip_suffix('.').unwrap_or(text);
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text)
            .ok()
            .or_else(|| text.parse::<Decimal>().ok())
    };
    parsed.unwrap_or(Decimal::ZERO)
}

/// `Magento\Framework\Locale\Format::getNumber()` for a posted string, en_US locale: keep digits,
/// `.`, `,`, `-` (and `^`); with both separators the later one is the decimal point; a lone
/// comma is a decimal point; then `(float)`.
pub fn locale_get_number(s: &str) -> Decimal {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '^' | '.' | ',' | '-'))
        .collect();
    let comma = kept.find(',');
    let dot = kept.find('.');
    let normalized = match (comma, dot) {
        (Some(c), Some(d)) if c > d => kept.replace('.', "").replace(',', "."),
        (Some(_), Some(_)) => kept.replace(',', ""),
        (Some(_), None) => kept.replace(',', "."),
        _ => kept,
    };
    php_to_float(&normalized)
}

/// PHP truthiness of a stored numeric column (`NULL` is false; `"0.0000"` is a non-empty
/// string, hence true).
#[inline]
pub fn stored_truthy<T>(v: &Option<T>) -> bool {
    v.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn round_sig_counts_leading_zeros_as_insignificant() {
        assert_eq!(
            round_sig(dec!(0.0012345678901234567), 15),
            dec!(0.00123456789012346)
        );
        assert_eq!(
            round_sig(dec!(123456.7890123456789), 15),
            dec!(123456.789012346)
        );
        assert_eq!(
            round_sig(dec!(-9.99999999999999999), 15),
            dec!(-10.0000000000000)
        );
    }

    #[test]
    fn is_last_compares_quantities_as_fourteen_digit_strings() {
        assert!(php_qty_eq(dec!(2.000000), dec!(2)));
        assert!(php_qty_eq(dec!(1.000000000000001), dec!(1)));
        assert!(!php_qty_eq(dec!(1.0000000000001), dec!(1)));
        assert!(!php_qty_eq(dec!(0), dec!(1)));
    }

    #[test]
    fn php_float_cast_takes_the_leading_number() {
        assert_eq!(php_to_float("3"), dec!(3));
        assert_eq!(php_to_float("  2.50abc"), dec!(2.50));
        assert_eq!(php_to_float("1e2"), dec!(100));
        assert_eq!(php_to_float("-.5"), dec!(-0.5));
        assert_eq!(php_to_float("abc"), Decimal::ZERO);
        assert_eq!(php_to_float(""), Decimal::ZERO);
        assert_eq!(php_to_float("7."), dec!(7));
    }

    #[test]
    fn locale_number_treats_a_lone_comma_as_decimal_point() {
        assert_eq!(locale_get_number("12.43"), dec!(12.43));
        assert_eq!(locale_get_number("1,5"), dec!(1.5));
        assert_eq!(locale_get_number("1,234.56"), dec!(1234.56));
        assert_eq!(locale_get_number("1.234,56"), dec!(1234.56));
        assert_eq!(locale_get_number("$ 4.95"), dec!(4.95));
        assert_eq!(locale_get_number("10%"), dec!(10));
    }

    #[test]
    fn persist4_rounds_to_four_decimals() {
        assert_eq!(persist4(dec!(0.87857142857142857)), dec!(0.8786));
        assert_eq!(persist4(dec!(23.799999999999997)), dec!(23.8));
    }
}
