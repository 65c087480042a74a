//! JSON-facing requests for the tax engine: what the Magento admin (through `tillbridge-wasm`)
//! and the edge service's finance reconciliation send. Plain serde shapes, validated into the
//! engine's types with record-level errors naming the field.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::TaxError;
use super::calculator::{Algorithm, TaxRelease};
use super::rates::{TaxAddress, TaxClass, TaxRate, TaxRateTable, TaxRule};
use super::service::{
    QuoteDetails, QuoteDetailsItem, TaxBasedOn, TaxDetails, TaxEngine, TaxSettings,
};
use super::validator::{PosTaxLine, RateSource, ValidationConfig, ValidationReport, validate};

/// The store's tax configuration (Stores › Configuration › Sales › Tax).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsDto {
    /// `UNIT_BASE_CALCULATION`, `ROW_BASE_CALCULATION` or `TOTAL_BASE_CALCULATION`.
    pub algorithm: String,
    #[serde(default = "yes")]
    pub apply_after_discount: bool,
    #[serde(default)]
    pub cross_border_trade: bool,
    /// `2.4.6` (default) or `mainline`.
    #[serde(default)]
    pub release: Option<String>,
    /// `shipping` (default), `billing` or `origin`.
    #[serde(default)]
    pub based_on: Option<String>,
    #[serde(default)]
    pub store_origin: Option<TaxAddress>,
    /// The default customer group's tax class (for the store rate).
    #[serde(default)]
    pub store_customer_class: Option<TaxClass>,
}

fn yes() -> bool {
    true
}

/// A tax rate row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateDto {
    pub code: String,
    #[serde(default)]
    pub title: Option<String>,
    pub country: String,
    #[serde(default)]
    pub region_id: u32,
    #[serde(default)]
    pub postcode: Option<String>,
    #[serde(default)]
    pub zip_from: Option<u64>,
    #[serde(default)]
    pub zip_to: Option<u64>,
    pub rate: Decimal,
}

/// A tax rule, referencing rates by code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDto {
    pub code: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub position: i64,
    #[serde(default)]
    pub calculate_subtotal: bool,
    pub customer_classes: Vec<TaxClass>,
    pub product_classes: Vec<TaxClass>,
    pub rates: Vec<String>,
}

/// The store's rates and rules.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDto {
    pub rates: Vec<RateDto>,
    pub rules: Vec<RuleDto>,
}

/// `calculateTax` over a quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalculateRequest {
    pub settings: SettingsDto,
    pub table: TableDto,
    pub quote: QuoteDetails,
    #[serde(default = "yes")]
    pub round: bool,
}

/// Where the validator's rates come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum RatesDto {
    /// Use each POS line's own rate (checks arithmetic and rounding only).
    Pos,
    /// The store's rules decide the rate from each line's `tax_class`.
    Store {
        table: TableDto,
        customer_address: TaxAddress,
        customer_class: Option<TaxClass>,
    },
}

/// Validate POS tax lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub settings: SettingsDto,
    pub rates: RatesDto,
    pub lines: Vec<PosTaxLine>,
}

impl SettingsDto {
    pub fn to_settings(&self) -> Result<TaxSettings, TaxError> {
        let algorithm = Algorithm::parse(&self.algorithm).ok_or_else(|| {
            TaxError::invalid(
                "settings.algorithm",
                format!("'{}' is not UNIT_BASE_CALCULATION, ROW_BASE_CALCULATION or TOTAL_BASE_CALCULATION", self.algorithm),
            )
        })?;
        let release = match &self.release {
            None => TaxRelease::default(),
            Some(r) => TaxRelease::parse(r).ok_or_else(|| {
                TaxError::invalid(
                    "settings.release",
                    format!("'{r}' is not 2.4.6 or mainline"),
                )
            })?,
        };
        let based_on = match self.based_on.as_deref() {
            None | Some("shipping") => TaxBasedOn::Shipping,
            Some("billing") => TaxBasedOn::Billing,
            Some("origin") => TaxBasedOn::Origin,
            Some(other) => {
                return Err(TaxError::invalid(
                    "settings.based_on",
                    format!("'{other}' is not shipping, billing or origin"),
                ));
            }
        };
        let defaults = TaxSettings::default();
        Ok(TaxSettings {
            algorithm,
            apply_after_discount: self.apply_after_discount,
            cross_border_trade: self.cross_border_trade,
            release,
            based_on,
            store_origin: self.store_origin.clone().unwrap_or(defaults.store_origin),
            store_customer_class: self
                .store_customer_class
                .clone()
                .or(defaults.store_customer_class),
            default_address: defaults.default_address,
        })
    }
}

impl TableDto {
    /// Build the rate table; every unknown rate code and every duplicate is reported.
    pub fn to_table(&self) -> Result<TaxRateTable, Vec<TaxError>> {
        let mut errors = Vec::new();
        let mut table = TaxRateTable::default();
        for (i, r) in self.rates.iter().enumerate() {
            if self.rates[..i].iter().any(|x| x.code == r.code) {
                errors.push(TaxError::invalid(
                    format!("table.rates[{i}].code"),
                    format!("duplicate rate code '{}'", r.code),
                ));
            }
            if r.rate < Decimal::ZERO {
                errors.push(TaxError::invalid(
                    format!("table.rates[{i}].rate"),
                    format!("must not be negative, got {}", r.rate),
                ));
            }
            let zip_range = match (r.zip_from, r.zip_to) {
                (Some(a), Some(b)) if a <= b => Some((a, b)),
                (None, None) => None,
                _ => {
                    errors.push(TaxError::invalid(
                        format!("table.rates[{i}].zip_from"),
                        "zip_from and zip_to go together, from ≤ to",
                    ));
                    None
                }
            };
            table.rates.push(TaxRate {
                code: r.code.clone(),
                title: r.title.clone().unwrap_or_else(|| r.code.clone()),
                country: r.country.clone(),
                region_id: r.region_id,
                postcode: r.postcode.clone(),
                zip_range,
                rate: r.rate,
            });
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let mut idx = Vec::new();
            for (j, code) in rule.rates.iter().enumerate() {
                match self.rates.iter().position(|r| &r.code == code) {
                    Some(p) => idx.push(p),
                    None => errors.push(TaxError::invalid(
                        format!("table.rules[{i}].rates[{j}]"),
                        format!("unknown rate code '{code}'"),
                    )),
                }
            }
            table.rules.push(TaxRule {
                code: rule.code.clone(),
                priority: rule.priority,
                position: rule.position,
                calculate_subtotal: rule.calculate_subtotal,
                customer_classes: rule.customer_classes.clone(),
                product_classes: rule.product_classes.clone(),
                rates: idx,
            });
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }
}

/// A JSON error answer: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub errors: Vec<FieldError>,
}

/// One problem with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl From<&TaxError> for FieldError {
    fn from(e: &TaxError) -> Self {
        match e {
            TaxError::Invalid { field, message } => FieldError {
                field: field.clone(),
                message: message.clone(),
            },
            TaxError::Unsupported(m) => FieldError {
                field: String::new(),
                message: format!("unsupported: {m}"),
            },
        }
    }
}

fn answer_errors(errors: &[TaxError]) -> ErrorAnswer {
    ErrorAnswer {
        errors: errors.iter().map(FieldError::from).collect(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ErrorAnswer> {
    serde_json::from_str(json).map_err(|e| ErrorAnswer {
        errors: vec![FieldError {
            field: format!("line {} column {}", e.line(), e.column()),
            message: e.to_string(),
        }],
    })
}

/// `calculateTax` for a JSON request.
pub fn calculate(req: &CalculateRequest) -> Result<TaxDetails, ErrorAnswer> {
    let mut errors = Vec::new();
    let settings = req.settings.to_settings().map_err(|e| errors.push(e)).ok();
    let table = req.table.to_table().map_err(|e| errors.extend(e)).ok();
    let (Some(settings), Some(table)) = (settings, table) else {
        return Err(answer_errors(&errors));
    };
    let mut engine = TaxEngine::new(table, settings);
    engine
        .calculate_tax(&req.quote, req.round)
        .map_err(|e| answer_errors(&[e]))
}

/// Validate POS lines for a JSON request.
pub fn validate_lines(req: &ValidateRequest) -> Result<ValidationReport, ErrorAnswer> {
    let settings = req
        .settings
        .to_settings()
        .map_err(|e| answer_errors(&[e]))?;
    let rates = match &req.rates {
        RatesDto::Pos => RateSource::PosRates,
        RatesDto::Store {
            table,
            customer_address,
            customer_class,
        } => RateSource::Store {
            table: table.to_table().map_err(|e| answer_errors(&e))?,
            customer_address: customer_address.clone(),
            customer_class: customer_class.clone(),
        },
    };
    Ok(validate(&req.lines, &ValidationConfig { settings, rates }))
}

fn to_json<T: Serialize>(r: Result<T, ErrorAnswer>) -> String {
    let v = match r {
        Ok(v) => serde_json::to_value(v),
        Err(e) => serde_json::to_value(e),
    };
    v.map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{{\"errors\":[{{\"field\":\"\",\"message\":\"{e}\"}}]}}"))
}

/// JSON in, JSON out: a `TaxDetails` or `{"errors": [...]}`.
pub fn calculate_json(json: &str) -> String {
    to_json(parse::<CalculateRequest>(json).and_then(|r| calculate(&r)))
}

/// JSON in, JSON out: a `ValidationReport` or `{"errors": [...]}`.
pub fn validate_json(json: &str) -> String {
    to_json(parse::<ValidateRequest>(json).and_then(|r| validate_lines(&r)))
}

/// Items of a `calculateTax` request, for building quotes from other shapes.
pub fn item(
    code: &str,
    quantity: Decimal,
    unit_price: Decimal,
    tax_class: Option<TaxClass>,
) -> QuoteDetailsItem {
    QuoteDetailsItem {
        code: code.to_owned(),
        item_type: "product".into(),
        quantity,
        unit_price,
        discount_amount: Decimal::ZERO,
        tax_included: false,
        tax_class,
        parent_code: None,
        associated_item_code: None,
        price_for_tax_calculation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn gb_table() -> Value {
        json!({
            "rates": [{"code": "GB VAT", "country": "GB", "postcode": "*", "rate": "20"}],
            "rules": [{"code": "Standard", "customer_classes": ["Retail"], "product_classes": ["Standard"], "rates": ["GB VAT"]}]
        })
    }

    #[test]
    fn calculate_json_prices_a_quote() {
        let req = json!({
            "settings": {"algorithm": "ROW_BASE_CALCULATION", "store_origin": {"country": "GB"}, "store_customer_class": "Retail"},
            "table": gb_table(),
            "quote": {
                "items": [{"code": "a", "quantity": "2", "unit_price": "9.99", "tax_class": "Standard"}],
                "shipping_address": {"country": "GB"},
                "customer_tax_class": "Retail"
            }
        });
        let out: Value = serde_json::from_str(&calculate_json(&req.to_string())).unwrap();
        assert_eq!(out["tax_amount"], json!("4.00"), "{out}");
        assert_eq!(out["items"][0]["price_incl_tax"], json!("11.99"));
    }

    #[test]
    fn every_request_error_names_its_field() {
        let req = json!({
            "settings": {"algorithm": "SOMETIMES", "release": "2.3"},
            "table": {"rates": [], "rules": [{"code": "x", "customer_classes": [], "product_classes": [], "rates": ["nope", "also"]}]},
            "quote": {"items": []}
        });
        let out: Value = serde_json::from_str(&calculate_json(&req.to_string())).unwrap();
        let fields: Vec<&str> = out["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "settings.algorithm",
                "table.rules[0].rates[0]",
                "table.rules[0].rates[1]"
            ]
        );
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let out: Value = serde_json::from_str(&validate_json("{\"settings\": ")).unwrap();
        assert!(
            out["errors"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with("line 1")
        );
    }

    #[test]
    fn validate_json_explains_a_per_unit_till() {
        let req = json!({
            "settings": {"algorithm": "ROW_BASE_CALCULATION"},
            "rates": {"source": "pos"},
            "lines": [{"line_id": "sq-1", "quantity": "2", "unit_price": "10.00", "rate": "8.25", "tax_amount": "1.66"}]
        });
        let out: Value = serde_json::from_str(&validate_json(&req.to_string())).unwrap();
        assert_eq!(
            out["discrepancies"][0]["rule"],
            json!("pos_rounds_per_unit"),
            "{out}"
        );
        assert_eq!(out["discrepancies"][0]["expected"], json!("1.65"));
    }
}
