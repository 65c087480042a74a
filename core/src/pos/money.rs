//! POS money: integer **minor units** with an ISO 4217 currency.
//!
//! Tills and Square count in minor units (pence); so does everything POS-side in the core.
//! Conversion from major-unit decimals (CSV files, decimal APIs) happens only through
//! [`Money::from_major_exact`] (refuses sub-minor amounts) or
//! [`Money::from_major_half_away_from_zero`] (the named rounding rule, for feeds that
//! legitimately carry more decimals). Adding amounts of different currencies is an error.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic currency code (`GBP`, `EUR`, `JPY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// Why a currency or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not an ISO 4217 currency code (three capital letters, e.g. GBP)")]
    BadCurrency(String),
    #[error("{amount} has more decimals than {currency} allows ({exponent})")]
    TooManyDecimals {
        amount: Decimal,
        currency: Currency,
        exponent: u32,
    },
    #[error("{0} is too large for a money amount")]
    Overflow(Decimal),
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
}

impl Currency {
    pub const GBP: Currency = Currency(*b"GBP");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    /// Parse three capital ASCII letters. (Lower case is refused rather than fixed: a feed
    /// that sends `gbp` is worth a look.)
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let b = text.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([b[0], b[1], b[2]]))
        } else {
            Err(MoneyError::BadCurrency(text.chars().take(20).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in this currency's minor unit (ISO 4217 table for the
    /// currencies that differ from 2).
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            b"CLF" | b"UYW" => 4,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(text: String) -> Result<Self, MoneyError> {
        Self::parse(&text)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Self, MoneyError> {
        Self::parse(text)
    }
}

/// An amount in minor units (pence for GBP) of one currency. May be negative (refunds,
/// rounding adjustments); the field documentation says where a sign is meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (e.g. `1999` = £19.99).
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub const fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// A major-unit amount (`19.99`) that must be a whole number of minor units.
    pub fn from_major_exact(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let exponent = currency.exponent();
        let scaled = amount * Decimal::from(10i64.pow(exponent));
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooManyDecimals {
                amount,
                currency,
                exponent,
            });
        }
        let minor = i64::try_from(scaled).map_err(|_| MoneyError::Overflow(amount))?;
        Ok(Self { minor, currency })
    }

    /// A major-unit amount rounded to minor units half away from zero (the rule Magento's
    /// `PriceCurrency::round` and most tills apply). Use only where a feed legitimately
    /// carries more decimals than the currency.
    pub fn from_major_half_away_from_zero(
        amount: Decimal,
        currency: Currency,
    ) -> Result<Self, MoneyError> {
        let exponent = currency.exponent();
        let rounded =
            amount.round_dp_with_strategy(exponent, RoundingStrategy::MidpointAwayFromZero);
        Self::from_major_exact(rounded, currency)
    }

    /// This amount in major units (`1999` GBP → `19.99`).
    pub fn to_major(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.exponent())
    }

    /// Sum of two amounts of the same currency; an error on a currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow(self.to_major()))?;
        Ok(Money::new(minor, self.currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_major(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn currency_parse_and_exponents() {
        assert_eq!(Currency::parse("GBP"), Ok(Currency::GBP));
        assert!(Currency::parse("gbp").is_err());
        assert!(Currency::parse("GB").is_err());
        assert_eq!(Currency::GBP.exponent(), 2);
        assert_eq!(Currency::parse("JPY").map(|c| c.exponent()), Ok(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.exponent()), Ok(3));
    }

    #[test]
    fn major_units_convert_exactly_or_refuse() {
        assert_eq!(
            Money::from_major_exact(dec!(19.99), Currency::GBP),
            Ok(Money::new(1999, Currency::GBP))
        );
        assert_eq!(
            Money::from_major_exact(dec!(-0.5), Currency::GBP),
            Ok(Money::new(-50, Currency::GBP))
        );
        assert!(matches!(
            Money::from_major_exact(dec!(1.005), Currency::GBP),
            Err(MoneyError::TooManyDecimals { exponent: 2, .. })
        ));
        assert_eq!(
            Money::from_major_half_away_from_zero(dec!(1.005), Currency::GBP),
            Ok(Money::new(101, Currency::GBP))
        );
        assert_eq!(
            Money::from_major_half_away_from_zero(dec!(-1.005), Currency::GBP),
            Ok(Money::new(-101, Currency::GBP))
        );
        assert_eq!(Money::new(1999, Currency::GBP).to_major(), dec!(19.99));
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let a = Money::new(100, Currency::GBP);
        assert_eq!(a.checked_add(a), Ok(Money::new(200, Currency::GBP)));
        assert!(matches!(
            a.checked_add(Money::new(1, Currency::EUR)),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn money_serialises_as_minor_units_and_code() {
        let json = serde_json::to_string(&Money::new(1999, Currency::GBP)).ok();
        assert_eq!(json.as_deref(), Some(r#"{"minor":1999,"currency":"GBP"}"#));
    }
}
