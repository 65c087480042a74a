//! The double path: how Magento computes **inside one request**.
//!
//! Between requests every amount is a `DECIMAL(…,4)` string, and Tillbridge holds it as a
//! `Decimal`. Within a request Magento's collectors compute in IEEE doubles, and the noise of
//! those doubles decides cents in real orders. Two examples from the sales-diff vectors:
//!
//! * `140.4 / 5 × 3` is `84.24000000000001` in doubles. `Math\Calculator::deltaRound()` keeps the
//!   `1.4e-14` remainder, the next line's `2.595` becomes `2.594999999999986`, and PHP's
//!   `round()` (15 significant digits) rounds it to `2.59`, where exact decimals give `2.60`
//!   (vector 0057).
//! * a remainder of `−0.0016666666666687` turns `2.1766666666666667` into `2.174999999999998`,
//!   which PHP's pre-rounding reads as `2.175` and rounds up (vector 0047).
//!
//! So the collectors, `register()` and `RefundOperation` run on [`Dbl`]: a PHP double, loaded
//! from the stored decimal text exactly as PHP's `(float)"12.3400"` does, combined in PHP's
//! operation order, rounded with PHP 8.2's `round()` ([`php_round`], the C algorithm itself), and
//! turned back into a `Decimal` only at the edges: [`Dbl::dec`] (the shortest text that reads
//! back as the same double — what PHP prints with `serialize_precision = -1`) for document
//! values, [`Dbl::persist4`] (`sprintf('%.4F')`, what the database stores) for columns.
//!
//! Nothing outside this module does arithmetic on `f64`.

#![allow(clippy::float_cmp)] // PHP `==`, `<`, `min()` on doubles are exact comparisons, on purpose.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

use rust_decimal::Decimal;

use crate::tax::documents::Amount2;
use crate::tax::rounding::DocRoundType;

/// `10^p` as PHP's `php_intpow10()` returns it (exact table up to 22).
fn intpow10(p: i32) -> f64 {
    if (0..=22).contains(&p) {
        // exact: every power of ten up to 1e22 is a double
        [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ][p as usize]
    } else {
        10f64.powi(p)
    }
}

/// `php_round_helper()`, mode `PHP_ROUND_HALF_UP`.
fn round_helper(v: f64) -> f64 {
    if v >= 0.0 {
        (v + 0.5).floor()
    } else {
        (v - 0.5).ceil()
    }
}

/// PHP 8.2's `_php_math_round($value, $places)` (mode half up), step by step in doubles.
///
/// It pre-rounds to 15 significant digits by *multiplying* the double by `10^(14 − ⌊log10⌋)`;
/// that product is itself rounded, so a value a few ulps below a midpoint can land on it and
/// round up: `round(75.90499999999994, 2)` is `75.91` (×1e13 = `759049999999999.5`). Rounding the
/// exact 15-digit decimal expansion instead ([`crate::php::php_round_f64`]) gives `75.90`.
pub fn php_round(value: f64, places: i32) -> f64 {
    if !value.is_finite() || value == 0.0 {
        return value;
    }
    let precision_places = 14 - value.abs().log10().floor() as i32;
    let f1 = intpow10(places.abs());
    let mut tmp = if precision_places > places && precision_places - 15 < places {
        let pre = round_helper(if precision_places >= 0 {
            value * intpow10(precision_places)
        } else {
            value / intpow10(-precision_places)
        });
        pre / intpow10((places - precision_places).abs())
    } else {
        let t = if places >= 0 { value * f1 } else { value / f1 };
        if t.abs() >= 1e15 {
            return value;
        }
        t
    };
    tmp = round_helper(tmp);
    if places > 0 { tmp / f1 } else { tmp * f1 }
}

/// A PHP double. `==`, `<`, … are PHP's comparisons of two floats (exact).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Dbl(f64);

impl Dbl {
    pub const ZERO: Dbl = Dbl(0.0);

    /// `(float)` of the stored decimal text (`"12.3400"`): the nearest double.
    pub fn of(d: Decimal) -> Dbl {
        Dbl(d.to_string().parse::<f64>().unwrap_or(0.0))
    }

    /// A nullable column in arithmetic: NULL is 0.
    pub fn opt(d: Option<Decimal>) -> Dbl {
        d.map_or(Dbl::ZERO, Dbl::of)
    }

    /// The exact decimal text PHP prints for this double (`serialize_precision = -1`, i.e. the
    /// shortest representation that reads back as the same double), as a `Decimal`.
    pub fn dec(self) -> Decimal {
        shortest_decimal(self.0)
    }

    /// What a `DECIMAL(…,4)` column stores: `sprintf('%.4F', $value)`.
    pub fn persist4(self) -> Decimal {
        let text = format!("{:.4}", self.0);
        match text.parse::<Decimal>() {
            Ok(d) if d.is_zero() => Decimal::ZERO,
            Ok(d) => d,
            Err(_) => Decimal::ZERO,
        }
    }

    /// `PriceCurrency::round()`: PHP 8.2 `round($x, 2)`.
    pub fn round2(self) -> Dbl {
        Dbl(php_round(self.0, 2))
    }

    /// PHP truthiness of a float (`0.0` and `-0.0` are false).
    pub fn truthy(self) -> bool {
        self.0 != 0.0
    }

    pub fn abs(self) -> Dbl {
        Dbl(self.0.abs())
    }

    /// PHP `min($a, $b)`: `$b` only if it is strictly smaller.
    pub fn min(self, other: Dbl) -> Dbl {
        if other.0 < self.0 { other } else { self }
    }

    /// PHP `max($a, $b)`: `$b` only if it is strictly larger.
    pub fn max(self, other: Dbl) -> Dbl {
        if other.0 > self.0 { other } else { self }
    }

    /// `0.0001`, the tolerance Magento writes into its float comparisons.
    pub fn epsilon() -> Dbl {
        Dbl(0.0001)
    }

    /// `$x / 100`.
    pub fn percent_of(self, percent: Dbl) -> Dbl {
        Dbl(self.0 * percent.0 / 100.0)
    }
}

impl Add for Dbl {
    type Output = Dbl;
    fn add(self, o: Dbl) -> Dbl {
        Dbl(self.0 + o.0)
    }
}

impl Sub for Dbl {
    type Output = Dbl;
    fn sub(self, o: Dbl) -> Dbl {
        Dbl(self.0 - o.0)
    }
}

impl Mul for Dbl {
    type Output = Dbl;
    fn mul(self, o: Dbl) -> Dbl {
        Dbl(self.0 * o.0)
    }
}

impl Div for Dbl {
    type Output = Dbl;
    fn div(self, o: Dbl) -> Dbl {
        Dbl(self.0 / o.0)
    }
}

impl Neg for Dbl {
    type Output = Dbl;
    fn neg(self) -> Dbl {
        Dbl(-self.0)
    }
}

impl AddAssign for Dbl {
    fn add_assign(&mut self, o: Dbl) {
        self.0 += o.0;
    }
}

impl SubAssign for Dbl {
    fn sub_assign(&mut self, o: Dbl) {
        self.0 -= o.0;
    }
}

/// A value and its base twin, as doubles.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct D2 {
    pub v: Dbl,
    pub b: Dbl,
}

impl D2 {
    pub const ZERO: D2 = D2 {
        v: Dbl::ZERO,
        b: Dbl::ZERO,
    };

    pub fn new(v: Dbl, b: Dbl) -> D2 {
        D2 { v, b }
    }

    pub fn of(a: Amount2) -> D2 {
        D2::new(Dbl::of(a.value), Dbl::of(a.base))
    }

    /// A nullable pair of columns: NULL is 0.
    pub fn opt(p: Option<Amount2>) -> D2 {
        p.map_or(D2::ZERO, D2::of)
    }

    pub fn dec(self) -> Amount2 {
        Amount2::new(self.v.dec(), self.b.dec())
    }

    pub fn persist4(self) -> Amount2 {
        Amount2::new(self.v.persist4(), self.b.persist4())
    }

    pub fn min(self, o: D2) -> D2 {
        D2::new(self.v.min(o.v), self.b.min(o.b))
    }

    pub fn map(self, f: impl Fn(Dbl) -> Dbl) -> D2 {
        D2::new(f(self.v), f(self.b))
    }
}

impl Add for D2 {
    type Output = D2;
    fn add(self, o: D2) -> D2 {
        D2::new(self.v + o.v, self.b + o.b)
    }
}

impl Sub for D2 {
    type Output = D2;
    fn sub(self, o: D2) -> D2 {
        D2::new(self.v - o.v, self.b - o.b)
    }
}

impl Neg for D2 {
    type Output = D2;
    fn neg(self) -> D2 {
        D2::new(-self.v, -self.b)
    }
}

impl AddAssign for D2 {
    fn add_assign(&mut self, o: D2) {
        self.v += o.v;
        self.b += o.b;
    }
}

/// `Framework\Math\Calculator` per document and type (`roundPrice($price, $type, $negative)`),
/// on doubles: delta seed 0, zero passes through, `negative` flips the remainder around use.
#[derive(Debug, Default, Clone)]
pub struct Calculator {
    deltas: [f64; 4],
}

impl Calculator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn round_price(&mut self, price: Dbl, kind: DocRoundType, negative: bool) -> Dbl {
        if !price.truthy() {
            return price;
        }
        let slot = &mut self.deltas[kind as usize];
        if negative {
            *slot = -*slot;
        }
        let adjusted = price.0 + *slot;
        let rounded = php_round(adjusted, 2);
        *slot = adjusted - rounded;
        if negative {
            *slot = -*slot;
        }
        Dbl(rounded)
    }

    /// Round a pair on the `regular` / `base` chains.
    pub fn pair(&mut self, price: D2, negative: bool) -> D2 {
        D2::new(
            self.round_price(price.v, DocRoundType::Regular, negative),
            self.round_price(price.b, DocRoundType::Base, negative),
        )
    }

    /// Round a pair on the `including` / `including_base` chains.
    pub fn including(&mut self, price: D2) -> D2 {
        D2::new(
            self.round_price(price.v, DocRoundType::Including, false),
            self.round_price(price.b, DocRoundType::IncludingBase, false),
        )
    }
}

/// The shortest decimal text that reads back as `x`, as a `Decimal` (28 decimals at most).
fn shortest_decimal(x: f64) -> Decimal {
    if x == 0.0 || !x.is_finite() {
        return Decimal::ZERO;
    }
    // `{:e}` is the shortest round-trip representation: "d.ddddde-N".
    let text = format!("{x:e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let Ok(mut m) = digits.parse::<i128>() else {
        return Decimal::ZERO;
    };
    let mut scale = (digits.len() as i64 - 1) - exp;
    while scale < 0 {
        m *= 10;
        scale += 1;
    }
    let mut d = Decimal::from_i128_with_scale(m, 0);
    if scale > 0 {
        // Decimal holds at most 28 decimals: round away the excess (values this small are noise).
        let keep = scale.min(28) as u32;
        let shift = (scale - i64::from(keep)) as u32;
        if shift > 0 {
            let p = 10i128.pow(shift.min(38));
            let q = m / p;
            let r = m % p;
            m = if r * 2 >= p { q + 1 } else { q };
        }
        d = Decimal::from_i128_with_scale(m, keep);
    }
    if negative { -d } else { d }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn php_round_pre_rounds_by_multiplying_the_double() {
        assert_eq!(php_round(75.90499999999994, 2), 75.91);
        assert_eq!(php_round(2.594999999999986, 2), 2.59);
        assert_eq!(php_round(2.174999999999998, 2), 2.18);
        for (x, r) in [
            (1.005, 1.01),
            (2.675, 2.68),
            (0.285, 0.29),
            (-0.825, -0.83),
            (-15.455, -15.46),
            (44.954545454545, 44.95),
        ] {
            assert_eq!(php_round(x, 2), r, "{x}");
        }
        assert_eq!(php_round(213.49999999999997, 0), 214.0);
        assert_eq!(php_round(0.0004, 2), 0.0);
    }

    #[test]
    fn doubles_carry_the_noise_php_sees() {
        let x = Dbl::of(dec!(140.4)) / Dbl::of(dec!(5)) * Dbl::of(dec!(3));
        assert_eq!(x.dec(), dec!(84.24000000000001));
        assert_eq!(x.persist4(), dec!(84.24));
        assert_eq!(
            (Dbl::of(dec!(23.8)) - Dbl::of(dec!(0.0000001))).dec(),
            dec!(23.7999999)
        );
    }

    #[test]
    fn calculator_keeps_the_double_remainder() {
        // Vector 0057, invoice 1: the 1.4e-14 remainder of 84.24000000000001 makes 2.595 round down.
        let mut c = Calculator::new();
        let d = |x| Dbl::of(x);
        let r = DocRoundType::Regular;
        assert_eq!(
            c.round_price(d(dec!(17.34)) / d(dec!(6)) * d(dec!(3)), r, false)
                .dec(),
            dec!(8.67)
        );
        assert_eq!(
            c.round_price(d(dec!(140.4)) / d(dec!(5)) * d(dec!(3)), r, false)
                .dec(),
            dec!(84.24)
        );
        assert_eq!(
            c.round_price(d(dec!(44.94)) / d(dec!(6)) * d(dec!(3)), r, false)
                .dec(),
            dec!(22.47)
        );
        assert_eq!(
            c.round_price(d(dec!(5.19)) / d(dec!(6)) * d(dec!(3)), r, true)
                .dec(),
            dec!(2.59)
        );
    }

    #[test]
    fn pre_rounding_reads_2_174999999999998_as_2_175() {
        // Vector 0047, invoice 1: rows, discounts, then the first line's tax on one chain.
        let mut c = Calculator::new();
        let d = |x| Dbl::of(x);
        let r = DocRoundType::Regular;
        c.round_price(d(dec!(79.21)) / d(dec!(6)) * d(dec!(2)), r, false);
        c.round_price(d(dec!(44.05)) / d(dec!(6)) * d(dec!(3)), r, false);
        c.round_price(d(dec!(4.29)) / d(dec!(6)) * d(dec!(2)), r, true);
        c.round_price(d(dec!(2.64)) / d(dec!(6)) * d(dec!(3)), r, true);
        let v = c.round_price(d(dec!(6.53)) / d(dec!(6)) * d(dec!(2)), r, false);
        assert_eq!(v.dec(), dec!(2.18));
        let w = c.round_price(d(dec!(8.81)) / d(dec!(6)) * d(dec!(3)), r, false);
        assert_eq!(w.dec(), dec!(4.40));
    }

    #[test]
    fn shortest_text_round_trips() {
        for x in [
            0.1,
            2.6000000000000005,
            431.80400000000003,
            -0.005000000000002114,
            1.7763568394002505e-12,
            1e20,
        ] {
            let d = shortest_decimal(x);
            assert_eq!(d.to_string().parse::<f64>().ok(), Some(x), "{x}");
        }
        assert_eq!(shortest_decimal(-0.0), Decimal::ZERO);
        // Below 1e-28 nothing is left; tiny remainders keep 28 decimals.
        assert_eq!(
            shortest_decimal(1.7763568394002505e-15),
            dec!(0.0000000000000017763568394003)
        );
    }
}
