//! Magento 2.4 tax, to the cent.
//!
//! The modules follow Magento's own split, so a reader can hold them against the PHP:
//! - [`api`]: JSON requests and answers for the admin (WASM) and the edge service;
//! - [`rounding`]: the tax calculators' delta rounding and the documents' `Math\Calculator`;
//! - [`rates`]: rate resolution (`ResourceModel\Calculation`);
//! - [`calculator`]: UNIT/ROW/TOTAL base calculators;
//! - [`service`]: `TaxCalculation::calculateTax` (parents, children, aggregates);
//! - [`quote`]: the quote totals passes (subtotal, tax_subtotal, shipping, discount, tax, grand);
//! - [`documents`]: the invoice and credit-memo tax collectors;
//! - [`validator`]: POS tax lines against what Magento would compute;
//! - [`conformance`]: runs Magento's own test vectors (all kinds) against the above.

pub mod api;
pub mod calculator;
pub mod conformance;
pub mod documents;
pub mod quote;
pub mod rates;
pub mod rounding;
pub mod service;
pub mod validator;

pub use calculator::{
    Algorithm, Calculator, CalculatorConfig, ItemRates, LineInput, LineResult, TaxRelease,
};
pub use rates::{RateRequest, ResolvedRate, TaxAddress, TaxClass, TaxRate, TaxRateTable, TaxRule};
pub use service::{
    AppliedTax, ItemTaxDetails, QuoteDetails, QuoteDetailsItem, TaxBasedOn, TaxDetails, TaxEngine,
    TaxSettings,
};

/// A record-level tax error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl TaxError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
