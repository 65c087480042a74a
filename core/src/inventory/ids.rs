//! Identifiers of the inventory domain, parsed (not validated) at the boundary.
//!
//! Each newtype can only hold a value Magento would store: a [`Sku`] is non-empty, has no
//! surrounding spaces and fits `varchar(64)`; a [`SourceCode`] has no whitespace and no `${…}`
//! template; a [`StockId`] is a positive integer. They are built with `parse` / `TryFrom`; there
//! is no blanket `From<String>`. SKU comparisons follow MySQL's case-insensitive collation
//! ([`Sku::key`]), as Magento's unique keys and `WHERE sku = ?` lookups do (spec §1.1).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value is not a valid identifier. The text mirrors Magento's validator messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty after trimming (`NotAnEmptyString`).
    #[error("\"{field}\" can not be empty.")]
    Empty {
        /// The field name.
        field: &'static str,
    },
    /// Leading or trailing spaces (`NoSpaceBeforeAndAfterString`).
    #[error("\"{field}\" can not contain leading or trailing spaces.")]
    SurroundingSpaces {
        /// The field name.
        field: &'static str,
    },
    /// Any whitespace (`NoWhitespaceInString`).
    #[error("\"{field}\" can not contain whitespaces.")]
    Whitespace {
        /// The field name.
        field: &'static str,
    },
    /// A `${…}` template (`NoSpecialCharsInString`).
    #[error("\"{field}\" contains a template expression.")]
    Template {
        /// The field name.
        field: &'static str,
    },
    /// Longer than the column.
    #[error("\"{field}\" is longer than {max} characters.")]
    TooLong {
        /// The field name.
        field: &'static str,
        /// The column width.
        max: usize,
    },
    /// Not a positive integer.
    #[error("\"{field}\" must be a positive integer, got {value}.")]
    NotPositive {
        /// The field name.
        field: &'static str,
        /// The rejected value.
        value: i64,
    },
}

/// `NoSpecialCharsInString`: `/\$[:]*{(.)*}/`.
pub(crate) fn has_template(value: &str) -> bool {
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'$' {
            continue;
        }
        let mut j = i + 1;
        while j < bytes.len() && bytes[j] == b':' {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'{' && value[j + 1..].contains('}') {
            return true;
        }
    }
    false
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as Magento stores it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A product SKU (`varchar(64)`), non-empty, without leading or trailing spaces.
    Sku
);

impl Sku {
    /// Parses a SKU the way `SkuValidator` accepts it.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty { field: "sku" });
        }
        if value.trim() != value {
            return Err(IdError::SurroundingSpaces { field: "sku" });
        }
        if value.chars().count() > 64 {
            return Err(IdError::TooLong {
                field: "sku",
                max: 64,
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The comparison key: MySQL's case-insensitive collation on `sku` columns.
    pub fn key(&self) -> SkuKey {
        SkuKey::of(&self.0)
    }
}

/// A case-folded SKU, the key under which source items, index rows and reservations are
/// matched (MySQL `utf8_general_ci` comparisons).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkuKey(String);

impl SkuKey {
    /// The key of any SKU text.
    pub fn of(text: &str) -> Self {
        Self(text.to_lowercase())
    }

    /// The folded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(
    /// A source code (`inventory_source.source_code`): non-empty, no whitespace, no `${…}`.
    SourceCode
);

impl SourceCode {
    /// Parses a source code the way the source validators accept it.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty {
                field: "source_code",
            });
        }
        if value.chars().any(char::is_whitespace) {
            return Err(IdError::Whitespace {
                field: "source_code",
            });
        }
        if has_template(value) {
            return Err(IdError::Template {
                field: "source_code",
            });
        }
        if value.chars().count() > 255 {
            return Err(IdError::TooLong {
                field: "source_code",
                max: 255,
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// `default`, the source created at install.
    pub fn default_source() -> Self {
        Self("default".to_owned())
    }

    /// Whether this is the default source.
    pub fn is_default(&self) -> bool {
        self.0 == "default"
    }
}

string_id!(
    /// A website code (sales channel code of type `website`).
    WebsiteCode
);

impl WebsiteCode {
    /// Parses a website code: non-empty, no whitespace.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty { field: "code" });
        }
        if value.chars().any(char::is_whitespace) {
            return Err(IdError::Whitespace { field: "code" });
        }
        Ok(Self(value.to_owned()))
    }

    /// `base`, the main website.
    pub fn base() -> Self {
        Self("base".to_owned())
    }
}

string_id!(
    /// A store-view code.
    StoreCode
);

impl StoreCode {
    /// Parses a store code: non-empty, no whitespace.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty { field: "store" });
        }
        if value.chars().any(char::is_whitespace) {
            return Err(IdError::Whitespace { field: "store" });
        }
        Ok(Self(value.to_owned()))
    }
}

string_id!(
    /// An order increment id (`sales_order.increment_id`), e.g. `000000123`.
    OrderIncrementId
);

impl OrderIncrementId {
    /// Parses an increment id: non-empty, no surrounding spaces, at most 50 characters.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty {
                field: "increment_id",
            });
        }
        if value.trim() != value {
            return Err(IdError::SurroundingSpaces {
                field: "increment_id",
            });
        }
        if value.chars().count() > 50 {
            return Err(IdError::TooLong {
                field: "increment_id",
                max: 50,
            });
        }
        Ok(Self(value.to_owned()))
    }
}

/// A stock id (`inventory_stock.stock_id`), a positive integer. Stock `1` is the default stock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct StockId(u32);

impl StockId {
    /// The default stock (`1`).
    pub const DEFAULT: StockId = StockId(1);

    /// Parses a stock id.
    pub fn parse(value: i64) -> Result<Self, IdError> {
        if value <= 0 || value > i64::from(u32::MAX) {
            return Err(IdError::NotPositive {
                field: "stock_id",
                value,
            });
        }
        Ok(Self(value as u32))
    }

    /// The numeric id.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether this is the default stock.
    pub fn is_default(self) -> bool {
        self.0 == 1
    }
}

impl TryFrom<i64> for StockId {
    type Error = IdError;
    fn try_from(value: i64) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<StockId> for i64 {
    fn from(value: StockId) -> i64 {
        i64::from(value.0)
    }
}

impl fmt::Display for StockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for StockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StockId({})", self.0)
    }
}

/// A point in time as Magento stores it in `DATETIME` columns (`YYYY-MM-DD HH:MM:SS`, UTC).
/// The caller supplies it; the model never reads a clock.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(String);

impl Timestamp {
    /// Parses `YYYY-MM-DD HH:MM:SS`.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let b = value.as_bytes();
        let shape_ok = b.len() == 19
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(IdError::Empty { field: "timestamp" });
        }
        Ok(Self(value.to_owned()))
    }

    /// A timestamp `seconds` after 2024-01-01 00:00:00 (deterministic clocks in tests).
    pub fn from_offset_seconds(seconds: u64) -> Self {
        let days = seconds / 86_400;
        let rem = seconds % 86_400;
        // Walk the calendar from 2024-01-01 (enough for test clocks; leap years handled).
        let (mut year, mut month, mut day) = (2024u64, 1u64, 1u64);
        let mut left = days;
        loop {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let month_len = match month {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ => {
                    if leap {
                        29
                    } else {
                        28
                    }
                }
            };
            if left + day <= month_len {
                day += left;
                break;
            }
            left -= month_len - day + 1;
            day = 1;
            month += 1;
            if month > 12 {
                month = 1;
                year += 1;
            }
        }
        Self(format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        ))
    }

    /// The `DATETIME` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Timestamp {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(&value)
    }
}

impl From<Timestamp> for String {
    fn from(value: Timestamp) -> String {
        value.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

/// A catalog product type (`catalog_product_entity.type_id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductType {
    /// `simple`
    Simple,
    /// `virtual`
    Virtual,
    /// `downloadable`
    Downloadable,
    /// `configurable`
    Configurable,
    /// `bundle`
    Bundle,
    /// `grouped`
    Grouped,
}

impl ProductType {
    /// Parses a `type_id`.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "simple" => Self::Simple,
            "virtual" => Self::Virtual,
            "downloadable" => Self::Downloadable,
            "configurable" => Self::Configurable,
            "bundle" => Self::Bundle,
            "grouped" => Self::Grouped,
            _ => return None,
        })
    }

    /// The `type_id` text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Virtual => "virtual",
            Self::Downloadable => "downloadable",
            Self::Configurable => "configurable",
            Self::Bundle => "bundle",
            Self::Grouped => "grouped",
        }
    }

    /// `IsSourceItemManagementAllowedForProductType`: the "qty" types carry source items and
    /// reservations; composite parents do not (spec §1.3).
    pub fn allows_source_items(&self) -> bool {
        matches!(self, Self::Simple | Self::Virtual | Self::Downloadable)
    }

    /// Virtual and downloadable items are never shipped.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Self::Virtual | Self::Downloadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_rejects_what_the_sku_validator_rejects() {
        assert_eq!(Sku::parse(""), Err(IdError::Empty { field: "sku" }));
        assert_eq!(Sku::parse(" "), Err(IdError::Empty { field: "sku" }));
        assert_eq!(
            Sku::parse(" A"),
            Err(IdError::SurroundingSpaces { field: "sku" })
        );
        assert!(Sku::parse("SKU-1").is_ok());
        assert_eq!(
            Sku::parse("SKU-1").map(|s| s.key()),
            Sku::parse("sku-1").map(|s| s.key())
        );
    }

    #[test]
    fn source_code_rejects_whitespace_and_templates() {
        assert!(SourceCode::parse("source code").is_err());
        assert!(SourceCode::parse("${x}").is_err());
        assert!(SourceCode::parse("$::{x}").is_err());
        assert!(SourceCode::parse("eu-1").is_ok());
    }

    #[test]
    fn stock_id_is_positive() {
        assert!(StockId::parse(0).is_err());
        assert!(StockId::parse(-1).is_err());
        assert_eq!(StockId::parse(1), Ok(StockId::DEFAULT));
    }

    #[test]
    fn timestamps_are_calendar_correct() {
        assert_eq!(
            Timestamp::from_offset_seconds(0).as_str(),
            "2024-01-01 00:00:00"
        );
        assert_eq!(
            Timestamp::from_offset_seconds(60 * 86_400 + 3661).as_str(),
            "2024-03-01 01:01:01"
        );
        assert!(Timestamp::parse("2024-05-01 10:00:00").is_ok());
        assert!(Timestamp::parse("2024-05-01").is_err());
    }
}
