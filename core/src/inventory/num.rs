//! Quantities: `DECIMAL(12,4)` / `DECIMAL(10,4)` storage, JSON numbers, and the few places where
//! Magento prints a PHP float.
//!
//! Every quantity is a [`Decimal`]. Magento computes in doubles, but every input here has at most
//! four decimals (the column scale), so exact decimal arithmetic reproduces what Magento stores
//! and compares (`bccomp(..., 4)`). Rounding happens at one named point, [`round4`], when a value
//! is written to a `DECIMAL(…,4)` column (MySQL rounds half away from zero).

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// The value a `DECIMAL(…,4)` column stores (MySQL rounds half away from zero).
pub fn round4(value: Decimal) -> Decimal {
    value
        .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// `bccomp((string)$a, (string)$b, 4)`: compares after truncating both to 4 decimals.
pub fn bccomp4(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    let ta = a.round_dp_with_strategy(4, RoundingStrategy::ToZero);
    let tb = b.round_dp_with_strategy(4, RoundingStrategy::ToZero);
    ta.cmp(&tb)
}

/// A JSON number or numeric string as a decimal (`is_numeric` semantics: optional sign, digits,
/// optional fraction, optional exponent, surrounding whitespace allowed at the start).
pub fn decimal_from_json(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => parse_decimal(&n.to_string()),
        Value::String(s) => {
            if is_php_numeric(s) {
                parse_decimal(s.trim())
            } else {
                None
            }
        }
        Value::Bool(b) => Some(if *b { Decimal::ONE } else { Decimal::ZERO }),
        _ => None,
    }
}

/// Parses a decimal literal, including scientific notation.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let plain = text.strip_prefix('+').unwrap_or(text);
    Decimal::from_str(plain)
        .ok()
        .or_else(|| Decimal::from_scientific(plain).ok())
}

/// PHP's `is_numeric()` for strings: leading whitespace, optional sign, digits with an optional
/// fraction (or a fraction alone), optional exponent; trailing whitespace allowed (PHP 8).
pub fn is_php_numeric(text: &str) -> bool {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.trim_end_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let bytes = t.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let f = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        let e = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j == e {
            return false;
        }
        i = j;
    }
    i == bytes.len()
}

/// PHP's `(float)` / `(int)` cast of a string: the longest numeric prefix, else 0.
pub fn php_string_to_decimal(text: &str) -> Decimal {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let bytes = t.as_bytes();
    let mut end = 0;
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let mut seen_digit = false;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
        seen_digit = true;
        end = i;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
            seen_digit = true;
            end = i;
        }
    }
    if !seen_digit {
        return Decimal::ZERO;
    }
    parse_decimal(&t[..end]).unwrap_or(Decimal::ZERO)
}

/// A decimal as a JSON number (`100`, `8.5`, `-2.25`): never a string, never a trailing `.0`.
pub fn decimal_to_json(value: Decimal) -> Value {
    let text = value.normalize().to_string();
    serde_json::from_str::<serde_json::Number>(&text)
        .map(Value::Number)
        .unwrap_or(Value::String(text))
}

/// How PHP prints a float in a message (`(string)$float`, precision 14): `7`, `4.5`, `-0.5`.
pub fn php_float_string(value: Decimal) -> String {
    let v = value.normalize();
    if v.is_zero() {
        return "0".to_owned();
    }
    v.to_string()
}

/// `sprintf('%f', $x)`: six decimals, rounded half away from zero.
pub fn php_f(value: Decimal) -> String {
    format!(
        "{:.6}",
        value.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    )
}

/// `sprintf('%+f', $x)`: like [`php_f`] with an explicit sign (`+2.000000`, `-2.000000`).
pub fn php_plus_f(value: Decimal) -> String {
    let body = php_f(value);
    if body.starts_with('-') {
        body
    } else {
        format!("+{body}")
    }
}

/// A `DECIMAL(12,4)` value as MySQL returns it to PHP: a string with four decimals (`"3.0000"`).
pub fn four_dp_string(value: Decimal) -> String {
    format!("{:.4}", round4(value))
}

/// Serde helpers: a decimal written as a JSON number and read from a number or numeric string.
pub mod json_number {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use serde_json::Value;

    /// Writes the decimal as a JSON number.
    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&super::decimal_to_json(*value), serializer)
    }

    /// Reads a JSON number or numeric string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let v = Value::deserialize(deserializer)?;
        super::decimal_from_json(&v).ok_or_else(|| D::Error::custom(format!("not a number: {v}")))
    }

    /// The same for `Option<Decimal>` (`null` and absence are `None`).
    pub mod option {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
        use serde_json::Value;

        /// Writes `None` as `null`, a value as a JSON number.
        pub fn serialize<S: Serializer>(
            value: &Option<Decimal>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => {
                    serde::Serialize::serialize(&super::super::decimal_to_json(*v), serializer)
                }
                None => serializer.serialize_none(),
            }
        }

        /// Reads `null`, a JSON number or a numeric string.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Decimal>, D::Error> {
            let v = Value::deserialize(deserializer)?;
            if v.is_null() {
                return Ok(None);
            }
            super::super::decimal_from_json(&v)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a number: {v}")))
        }
    }
}

/// PHP's `json_encode()` of a string with default flags (escapes `/` and non-ASCII as `\uXXXX`),
/// which is how Magento's JSON serializer writes reservation metadata.
pub fn php_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn round4_rounds_half_away_from_zero_like_a_decimal_column() {
        assert_eq!(round4(dec!(1.00005)), dec!(1.0001));
        assert_eq!(round4(dec!(-1.00005)), dec!(-1.0001));
        assert_eq!(round4(dec!(8.5)), dec!(8.5));
    }

    #[test]
    fn php_numeric_accepts_what_is_numeric_accepts() {
        assert!(is_php_numeric("999999"));
        assert!(is_php_numeric(" 1.5"));
        assert!(is_php_numeric("-.5"));
        assert!(is_php_numeric("1e3"));
        assert!(!is_php_numeric(""));
        assert!(!is_php_numeric("test"));
        assert!(!is_php_numeric("1.5x"));
    }

    #[test]
    fn php_casts_take_the_numeric_prefix() {
        assert_eq!(php_string_to_decimal("-3"), dec!(-3));
        assert_eq!(php_string_to_decimal("-3.000000"), dec!(-3));
        assert_eq!(php_string_to_decimal("--2"), dec!(0));
        assert_eq!(php_string_to_decimal("12abc"), dec!(12));
    }

    #[test]
    fn php_float_formats() {
        assert_eq!(php_plus_f(dec!(2)), "+2.000000");
        assert_eq!(php_plus_f(dec!(-2)), "-2.000000");
        assert_eq!(php_f(dec!(-3)), "-3.000000");
        assert_eq!(php_float_string(dec!(7.0)), "7");
        assert_eq!(php_float_string(dec!(4.50)), "4.5");
        assert_eq!(four_dp_string(dec!(3)), "3.0000");
    }

    #[test]
    fn json_numbers_are_plain() {
        assert_eq!(decimal_to_json(dec!(100.0)).to_string(), "100");
        assert_eq!(decimal_to_json(dec!(8.50)).to_string(), "8.5");
        assert_eq!(
            decimal_from_json(&serde_json::json!("1.5")),
            Some(dec!(1.5))
        );
    }

    #[test]
    fn php_json_escapes_slashes() {
        assert_eq!(php_json_string("a/b"), "\"a\\/b\"");
        assert_eq!(php_json_string("é"), "\"\\u00e9\"");
    }
}
