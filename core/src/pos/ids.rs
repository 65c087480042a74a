//! Identifiers on both sides of the POS ↔ Commerce bridge, as validated newtypes.
//!
//! Every identifier is built by `parse` (or `TryFrom<&str>` / `TryFrom<String>`, which call
//! it); there is no blanket `From<String>`. Serde deserialisation goes through the same
//! `parse`, so a malformed id in a stored batch or a config file is an error, not a value.
//!
//! The rules are deliberately modest — they reject what would break a later step (empty,
//! surrounding whitespace, control characters, over-long values, whitespace where the target
//! system forbids it) and accept everything the source systems legitimately produce:
//!
//! | type | what | rule |
//! |---|---|---|
//! | [`Sku`] | Commerce (Magento) SKU; also a POS SKU | 1–64 chars, no control chars, no surrounding whitespace |
//! | [`SourceCode`] | Magento MSI `source_code` | 1–255 chars, no whitespace (Magento's `CodeValidator`) |
//! | [`StoreCode`] | the retailer's branch code (what a till file's store column holds) | 1–32 ASCII letters, digits, `-`, `_`, `.` |
//! | [`PosLocationId`] | POS location (Square `location_id`) | 1–64 chars, no whitespace |
//! | [`PosVariationId`] | POS item variation (Square `catalog_object_id`, a file's item code) | 1–128 chars, no surrounding whitespace |
//! | [`PosTransactionId`] | POS sale / return id | 1–192 chars, no surrounding whitespace |
//! | [`PosLineId`] | a line within a transaction | 1–128 chars, no surrounding whitespace |
//! | [`PosTaxId`] | a POS tax definition (Square `CatalogTax` id, a file's tax code) | 1–128 chars, no surrounding whitespace |
//! | [`FulfilmentRequestId`] | our id for a fulfilment request (idempotency key base) | 1–64 chars, no whitespace |
//!
//! Overlap note: `Sku` and `SourceCode` are Commerce identifiers that `core::inventory` also
//! needs; they live here until the two modules share a `core::ids`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {reason}")]
pub struct IdError {
    /// The identifier type, e.g. `"Sku"`.
    pub kind: &'static str,
    /// The rejected text (cut to 80 characters).
    pub value: String,
    /// What is wrong, as a phrase.
    pub reason: IdProblem,
}

/// The machine-readable reason behind an [`IdError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdProblem {
    Empty,
    TooLong { max: usize },
    SurroundingWhitespace,
    ContainsWhitespace,
    ControlCharacter,
    DisallowedCharacter,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Empty => f.write_str("it is empty"),
            IdProblem::TooLong { max } => write!(f, "it is longer than {max} characters"),
            IdProblem::SurroundingWhitespace => f.write_str("it starts or ends with whitespace"),
            IdProblem::ContainsWhitespace => f.write_str("it contains whitespace"),
            IdProblem::ControlCharacter => f.write_str("it contains a control character"),
            IdProblem::DisallowedCharacter => {
                f.write_str("it contains a character not allowed here")
            }
        }
    }
}

/// The character rule an identifier type applies.
#[derive(Debug, Clone, Copy)]
enum Charset {
    /// Anything printable; whitespace inside allowed, not around.
    Printable,
    /// Printable, no whitespace at all.
    NoWhitespace,
    /// ASCII letters, digits, `-`, `_`, `.`.
    Code,
}

fn check(kind: &'static str, text: &str, max: usize, charset: Charset) -> Result<(), IdError> {
    let fail = |reason| IdError {
        kind,
        value: text.chars().take(80).collect(),
        reason,
    };
    if text.is_empty() {
        return Err(fail(IdProblem::Empty));
    }
    if text.chars().count() > max {
        return Err(fail(IdProblem::TooLong { max }));
    }
    if text.chars().any(char::is_control) {
        return Err(fail(IdProblem::ControlCharacter));
    }
    if text.trim() != text {
        return Err(fail(IdProblem::SurroundingWhitespace));
    }
    match charset {
        Charset::Printable => {}
        Charset::NoWhitespace => {
            if text.chars().any(char::is_whitespace) {
                return Err(fail(IdProblem::ContainsWhitespace));
            }
        }
        Charset::Code => {
            if !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(fail(IdProblem::DisallowedCharacter));
            }
        }
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $charset:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest value accepted, in characters.
            pub const MAX_LEN: usize = $max;

            /// Parse a value; see the module table for the rule.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check(stringify!($name), text, $max, $charset)?;
                Ok(Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                check(stringify!($name), &text, $max, $charset)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }
    };
}

string_id!(
    /// A Commerce (Magento) SKU. Magento's limit is 64 characters; inner spaces are allowed.
    Sku,
    64,
    Charset::Printable
);
string_id!(
    /// A Magento MSI source code (`source_code`): no whitespace anywhere.
    SourceCode,
    255,
    Charset::NoWhitespace
);
string_id!(
    /// The retailer's own code for a shop (branch), as till exports and people use it
    /// (`LDN01`, `leeds-briggate`). Not a Magento store-view code.
    StoreCode,
    32,
    Charset::Code
);
string_id!(
    /// A POS location (Square `location_id`, at most 32 characters there).
    PosLocationId,
    64,
    Charset::NoWhitespace
);
string_id!(
    /// A POS item variation: the unit that carries stock and a price (Square
    /// `ITEM_VARIATION` id; a file drop's item code).
    PosVariationId,
    128,
    Charset::Printable
);
string_id!(
    /// A POS sale or return (Square order id, a till's receipt number).
    PosTransactionId,
    192,
    Charset::Printable
);
string_id!(
    /// A line within a POS transaction (Square line item `uid`, a file's line number).
    PosLineId,
    128,
    Charset::Printable
);
string_id!(
    /// A POS tax definition (Square `CatalogTax` id, a till's tax code such as `S` or `Z`).
    PosTaxId,
    128,
    Charset::Printable
);
string_id!(
    /// Our id for a fulfilment request sent to a store; connectors derive their
    /// idempotency keys from it (Square `reference_id` allows 40 characters, so keep it short).
    FulfilmentRequestId,
    64,
    Charset::NoWhitespace
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_inner_spaces_and_rejects_surrounding_whitespace() {
        assert_eq!(
            Sku::parse("MB 01").map(|s| s.to_string()),
            Ok("MB 01".to_owned())
        );
        let err = Sku::parse(" MB01").err();
        assert_eq!(
            err.map(|e| e.reason),
            Some(IdProblem::SurroundingWhitespace)
        );
    }

    #[test]
    fn sku_longer_than_magento_limit_is_rejected() {
        let long = "x".repeat(65);
        assert_eq!(
            Sku::parse(&long).err().map(|e| e.reason),
            Some(IdProblem::TooLong { max: 64 })
        );
        assert!(Sku::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn source_code_rejects_inner_whitespace() {
        assert_eq!(
            SourceCode::parse("leeds store").err().map(|e| e.reason),
            Some(IdProblem::ContainsWhitespace)
        );
        assert!(SourceCode::parse("leeds_store").is_ok());
    }

    #[test]
    fn store_code_allows_only_code_characters() {
        assert!(StoreCode::parse("LDN-01.a_b").is_ok());
        assert_eq!(
            StoreCode::parse("LDN/01").err().map(|e| e.reason),
            Some(IdProblem::DisallowedCharacter)
        );
    }

    #[test]
    fn empty_and_control_characters_are_rejected_with_the_type_named() {
        let e = PosLocationId::parse("").err();
        assert_eq!(e.as_ref().map(|e| e.kind), Some("PosLocationId"));
        assert_eq!(e.map(|e| e.reason), Some(IdProblem::Empty));
        assert_eq!(
            PosTransactionId::parse("a\u{7}b").err().map(|e| e.reason),
            Some(IdProblem::ControlCharacter)
        );
    }

    #[test]
    fn serde_goes_through_parse() {
        let ok: Result<Sku, _> = serde_json::from_str("\"24-MB01\"");
        assert_eq!(ok.ok().map(String::from), Some("24-MB01".to_owned()));
        let bad: Result<Sku, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
    }
}
