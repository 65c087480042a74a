//! POS tax lines against what Magento would compute for the same lines.
//!
//! The finance reconciliation and the Magento admin (through WASM) both call [`validate`]:
//! given the lines a till produced (quantity, unit price, tax-inclusive flag, discount, the
//! rate it applied, the tax it charged and, where it reports them, row totals and unit prices)
//! and the Commerce store's tax configuration, it recomputes every line exactly as Magento
//! would and reports **every** discrepancy: line, field, Magento's value, the POS value, and
//! the rounding rule that explains the difference (per-unit vs per-row rounding, TOTAL_BASE's
//! carried remainder, a different rate, store-rate re-basing, tax before/after discount).
//!
//! Malformed lines are reported as record-level input errors naming the field; the other
//! lines are still validated.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::calculator::Algorithm;
use super::rates::{TaxAddress, TaxClass, TaxRate, TaxRateTable, TaxRule};
use super::service::{QuoteDetails, QuoteDetailsItem, TaxDetails, TaxEngine, TaxSettings};
use crate::php::round2;

/// One POS sale or return line, in major units (convert minor units before calling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosTaxLine {
    /// The POS line reference (e.g. Square line item uid), used in every report.
    pub line_id: String,
    #[serde(default)]
    pub sku: Option<String>,
    pub quantity: Decimal,
    /// Unit price as the POS priced it (gross when `tax_included`).
    pub unit_price: Decimal,
    #[serde(default)]
    pub tax_included: bool,
    /// Row discount amount (positive).
    #[serde(default)]
    pub discount_amount: Decimal,
    /// The rate the POS applied, in percent (e.g. 20).
    pub rate: Decimal,
    /// The tax the POS charged on the row.
    pub tax_amount: Decimal,
    /// Optional figures some POS systems report; checked when present.
    #[serde(default)]
    pub row_total: Option<Decimal>,
    #[serde(default)]
    pub row_total_incl_tax: Option<Decimal>,
    #[serde(default)]
    pub price_excl_tax: Option<Decimal>,
    #[serde(default)]
    pub price_incl_tax: Option<Decimal>,
    /// The Commerce product tax class, when the store's own rules should decide the rate.
    #[serde(default)]
    pub tax_class: Option<TaxClass>,
}

/// Where Magento's rate for a line comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RateSource {
    /// Take each line's POS rate as a single Magento rate (checks the arithmetic and rounding
    /// only). The store (origin) rate is the same rate, so no re-basing happens.
    PosRates,
    /// The store's own rate table and customer context, with each line's `tax_class`.
    Store {
        table: TaxRateTable,
        customer_address: TaxAddress,
        customer_class: Option<TaxClass>,
    },
}

/// The Magento configuration to validate against.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationConfig {
    pub settings: TaxSettings,
    pub rates: RateSource,
}

/// Which rule explains a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingRule {
    /// The POS rounds the tax of each unit; Magento (ROW/TOTAL) rounds the row.
    PosRoundsPerUnit,
    /// The POS rounds each row; Magento UNIT_BASE rounds per unit and multiplies.
    PosRoundsPerRow,
    /// Magento TOTAL_BASE carried a rounding remainder from earlier lines into this one.
    TotalBaseCarriedRemainder,
    /// The POS rounds the document total and spreads it; Magento rounds rows.
    PosRoundsTotal,
    /// The POS applied a different rate than Magento's rules give.
    RateDiffers,
    /// Magento re-bases a tax-inclusive price from the store (origin) rate to the customer's.
    StoreRateRebase,
    /// The POS taxes before the discount and Magento after it (or the reverse).
    DiscountOrder,
    /// The difference follows from another field's difference on the same line.
    Derived,
    /// No Magento rounding rule reproduces the POS value.
    Unexplained,
}

/// One difference between the POS and Magento.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub line_index: usize,
    pub line_id: String,
    pub field: String,
    /// What Magento computes.
    pub expected: Decimal,
    /// What the POS reported.
    pub actual: Decimal,
    pub difference: Decimal,
    pub rule: RoundingRule,
    pub explanation: String,
}

/// A line that could not be validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub line_index: usize,
    pub line_id: String,
    pub field: String,
    pub message: String,
}

/// Totals of both sides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationTotals {
    pub pos_tax: Decimal,
    pub magento_tax: Decimal,
    pub difference: Decimal,
}

/// The validation report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationReport {
    pub discrepancies: Vec<Discrepancy>,
    pub errors: Vec<LineError>,
    pub totals: ValidationTotals,
    /// Magento's numbers per valid line, in input order (index, details).
    pub magento_lines: Vec<MagentoLine>,
}

/// Magento's figures for one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagentoLine {
    pub line_index: usize,
    pub line_id: String,
    pub tax_percent: Decimal,
    pub tax_amount: Decimal,
    pub price: Decimal,
    pub price_incl_tax: Decimal,
    pub row_total: Decimal,
    pub row_total_incl_tax: Decimal,
    pub discount_tax_compensation_amount: Decimal,
}

impl ValidationReport {
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty() && self.errors.is_empty()
    }
}

fn check_line(index: usize, line: &PosTaxLine, errors: &mut Vec<LineError>) -> bool {
    let mut ok = true;
    let mut err = |field: &str, message: String| {
        ok = false;
        errors.push(LineError {
            line_index: index,
            line_id: line.line_id.clone(),
            field: field.to_owned(),
            message,
        });
    };
    if line.line_id.trim().is_empty() {
        err(
            "line_id",
            "a line needs an id so its discrepancies can be traced".into(),
        );
    }
    if line.quantity <= Decimal::ZERO {
        err(
            "quantity",
            format!(
                "must be greater than 0 (returns are validated as positive lines), got {}",
                line.quantity
            ),
        );
    }
    if line.unit_price < Decimal::ZERO {
        err(
            "unit_price",
            format!("must not be negative, got {}", line.unit_price),
        );
    }
    if line.discount_amount < Decimal::ZERO {
        err(
            "discount_amount",
            format!("must not be negative, got {}", line.discount_amount),
        );
    }
    if line.rate < Decimal::ZERO || line.rate > Decimal::ONE_HUNDRED {
        err(
            "rate",
            format!("must be a percent between 0 and 100, got {}", line.rate),
        );
    }
    ok
}

fn pos_rate_class(rate: Decimal) -> TaxClass {
    TaxClass::parse(&format!("pos-rate-{}", rate.normalize())).unwrap_or_else(|_| unreachable!())
}

/// Build the engine for one configuration (and algorithm / discount-order variant).
fn engine_for(
    cfg: &ValidationConfig,
    lines: &[(usize, &PosTaxLine)],
    settings: TaxSettings,
) -> (TaxEngine, QuoteDetails) {
    let customer_class = TaxClass::parse("pos-customer").unwrap_or_else(|_| unreachable!());
    let (table, address, customer, settings) = match &cfg.rates {
        RateSource::Store {
            table,
            customer_address,
            customer_class,
        } => (
            table.clone(),
            customer_address.clone(),
            customer_class.clone(),
            settings,
        ),
        RateSource::PosRates => {
            let mut table = TaxRateTable::default();
            let mut seen: Vec<Decimal> = Vec::new();
            for (_, l) in lines {
                if seen.contains(&l.rate) || l.rate.is_zero() {
                    continue;
                }
                seen.push(l.rate);
                let code = format!("POS {}%", l.rate.normalize());
                table.rates.push(TaxRate {
                    code: code.clone(),
                    title: code.clone(),
                    country: "XX".into(),
                    region_id: 0,
                    postcode: Some("*".into()),
                    zip_range: None,
                    rate: l.rate,
                });
                table.rules.push(TaxRule {
                    code,
                    priority: 0,
                    position: 0,
                    calculate_subtotal: false,
                    customer_classes: vec![customer_class.clone()],
                    product_classes: vec![pos_rate_class(l.rate)],
                    rates: vec![table.rates.len() - 1],
                });
            }
            let address = TaxAddress {
                country: Some("XX".into()),
                region_id: 0,
                postcode: None,
            };
            let settings = TaxSettings {
                store_origin: address.clone(),
                store_customer_class: Some(customer_class.clone()),
                ..settings
            };
            (table, address, Some(customer_class), settings)
        }
    };
    let items = lines
        .iter()
        .map(|(i, l)| QuoteDetailsItem {
            code: format!("line-{i}"),
            item_type: "product".into(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            discount_amount: l.discount_amount,
            tax_included: l.tax_included,
            tax_class: match &cfg.rates {
                RateSource::PosRates => (!l.rate.is_zero()).then(|| pos_rate_class(l.rate)),
                RateSource::Store { .. } => l.tax_class.clone(),
            },
            parent_code: None,
            associated_item_code: None,
            price_for_tax_calculation: None,
        })
        .collect();
    let details = QuoteDetails {
        items,
        shipping_address: Some(address.clone()),
        billing_address: Some(address),
        customer_tax_class: customer,
    };
    (TaxEngine::new(table, settings), details)
}

fn run(
    cfg: &ValidationConfig,
    lines: &[(usize, &PosTaxLine)],
    settings: TaxSettings,
) -> Option<TaxDetails> {
    let (mut engine, details) = engine_for(cfg, lines, settings);
    engine.calculate_tax(&details, true).ok()
}

/// Validate POS lines against Magento's computation under `cfg`.
pub fn validate(lines: &[PosTaxLine], cfg: &ValidationConfig) -> ValidationReport {
    let mut report = ValidationReport::default();
    let valid: Vec<(usize, &PosTaxLine)> = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| check_line(*i, l, &mut report.errors))
        .collect();
    if valid.is_empty() {
        return report;
    }
    let Some(main) = run(cfg, &valid, cfg.settings.clone()) else {
        return report;
    };
    // Alternatives used only to explain differences.
    let alt = |algorithm: Algorithm| {
        run(
            cfg,
            &valid,
            TaxSettings {
                algorithm,
                ..cfg.settings.clone()
            },
        )
    };
    let (unit, row) = (alt(Algorithm::UnitBase), alt(Algorithm::RowBase));
    let flipped = run(
        cfg,
        &valid,
        TaxSettings {
            apply_after_discount: !cfg.settings.apply_after_discount,
            ..cfg.settings.clone()
        },
    );
    let no_rebase = run(
        cfg,
        &valid,
        TaxSettings {
            cross_border_trade: true,
            ..cfg.settings.clone()
        },
    );

    for (pos, (index, line)) in valid.iter().enumerate() {
        let code = format!("line-{index}");
        let Some(m) = main.item(&code) else { continue };
        report.magento_lines.push(MagentoLine {
            line_index: *index,
            line_id: line.line_id.clone(),
            tax_percent: m.tax_percent,
            tax_amount: m.row_tax,
            price: m.price,
            price_incl_tax: m.price_incl_tax,
            row_total: m.row_total,
            row_total_incl_tax: m.row_total_incl_tax,
            discount_tax_compensation_amount: m.discount_tax_compensation_amount,
        });
        report.totals.pos_tax += line.tax_amount;
        report.totals.magento_tax += m.row_tax;
        let mut push = |field: &str,
                        expected: Decimal,
                        actual: Decimal,
                        rule: RoundingRule,
                        explanation: String| {
            report.discrepancies.push(Discrepancy {
                line_index: *index,
                line_id: line.line_id.clone(),
                field: field.to_owned(),
                expected,
                actual,
                difference: actual - expected,
                rule,
                explanation,
            });
        };
        let rate_differs = (m.tax_percent - line.rate).abs() >= Decimal::new(1, 4);
        if rate_differs {
            push(
                "rate",
                m.tax_percent,
                line.rate,
                RoundingRule::RateDiffers,
                format!(
                    "the POS applied {}% but Magento's tax rules give {}% for this line",
                    line.rate.normalize(),
                    m.tax_percent.normalize()
                ),
            );
        }
        let tax_expected = round2(m.row_tax);
        if line.tax_amount != tax_expected {
            let (rule, explanation) = if rate_differs {
                (
                    RoundingRule::Derived,
                    "follows from the different rate".to_owned(),
                )
            } else {
                explain_tax(
                    cfg,
                    line,
                    &code,
                    pos,
                    m.row_tax,
                    unit.as_ref(),
                    row.as_ref(),
                    flipped.as_ref(),
                    no_rebase.as_ref(),
                )
            };
            push(
                "tax_amount",
                tax_expected,
                line.tax_amount,
                rule,
                explanation,
            );
        }
        let derived = |what: &str| {
            if rate_differs || line.tax_amount != tax_expected {
                (
                    RoundingRule::Derived,
                    format!("{what} follows from the tax difference on this line"),
                )
            } else {
                (
                    RoundingRule::Unexplained,
                    format!(
                        "{what} differs although the tax agrees: check the POS price and quantity"
                    ),
                )
            }
        };
        for (field, pos_value, magento) in [
            ("row_total", line.row_total, m.row_total),
            (
                "row_total_incl_tax",
                line.row_total_incl_tax,
                m.row_total_incl_tax,
            ),
            ("price_excl_tax", line.price_excl_tax, m.price),
            ("price_incl_tax", line.price_incl_tax, m.price_incl_tax),
        ] {
            if let Some(v) = pos_value
                && v != round2(magento)
            {
                let (rule, text) = derived(field);
                push(field, round2(magento), v, rule, text);
            }
        }
    }
    report.totals.difference = report.totals.pos_tax - report.totals.magento_tax;
    report
}

#[allow(clippy::too_many_arguments)]
fn explain_tax(
    cfg: &ValidationConfig,
    line: &PosTaxLine,
    code: &str,
    position: usize,
    magento: Decimal,
    unit: Option<&TaxDetails>,
    row: Option<&TaxDetails>,
    flipped: Option<&TaxDetails>,
    no_rebase: Option<&TaxDetails>,
) -> (RoundingRule, String) {
    let algo = cfg.settings.algorithm.as_magento();
    let tax_of = |d: Option<&TaxDetails>| d.and_then(|d| d.item(code)).map(|i| round2(i.row_tax));
    let pos = line.tax_amount;
    if cfg.settings.algorithm == Algorithm::TotalBase && tax_of(row) == Some(pos) {
        let row_value = tax_of(row).unwrap_or_default();
        return (
            RoundingRule::TotalBaseCarriedRemainder,
            format!(
                "the POS rounds this line on its own ({row_value}); Magento TOTAL_BASE carried a rounding remainder of {} from the {} line(s) before it",
                (magento - row_value).normalize(),
                position
            ),
        );
    }
    if cfg.settings.algorithm != Algorithm::UnitBase && tax_of(unit) == Some(pos) {
        return (
            RoundingRule::PosRoundsPerUnit,
            format!(
                "the POS rounds the tax of each unit and multiplies by {}; Magento ({algo}) rounds the row once",
                line.quantity.normalize()
            ),
        );
    }
    if cfg.settings.algorithm == Algorithm::UnitBase && tax_of(row) == Some(pos) {
        return (
            RoundingRule::PosRoundsPerRow,
            format!(
                "the POS rounds the row's tax once; Magento (UNIT_BASE) rounds each unit's tax and multiplies by {}",
                line.quantity.normalize()
            ),
        );
    }
    if !line.discount_amount.is_zero() && tax_of(flipped) == Some(pos) {
        let (pos_order, magento_order) = if cfg.settings.apply_after_discount {
            ("before", "after")
        } else {
            ("after", "before")
        };
        return (
            RoundingRule::DiscountOrder,
            format!(
                "the POS taxes the line {pos_order} the {} discount; Magento applies tax {magento_order} discount",
                line.discount_amount.normalize()
            ),
        );
    }
    if line.tax_included && tax_of(no_rebase) == Some(pos) {
        return (
            RoundingRule::StoreRateRebase,
            "Magento re-bases the tax-inclusive price from the store (origin) rate to the customer's rate; the POS keeps the gross price (enable cross-border trade to match)".to_owned(),
        );
    }
    // A POS that rounds only the document total and spreads it leaves rows off by a cent.
    if (pos - magento).abs() <= Decimal::new(1, 2) {
        return (
            RoundingRule::PosRoundsTotal,
            "one cent off Magento's row tax: the POS probably rounds the receipt total and spreads the remainder over its lines".to_owned(),
        );
    }
    (
        RoundingRule::Unexplained,
        format!(
            "Magento computes {} with {algo}; no Magento rounding rule reproduces the POS value",
            round2(magento)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn line(id: &str, q: Decimal, price: Decimal, rate: Decimal, tax: Decimal) -> PosTaxLine {
        PosTaxLine {
            line_id: id.into(),
            sku: None,
            quantity: q,
            unit_price: price,
            tax_included: false,
            discount_amount: Decimal::ZERO,
            rate,
            tax_amount: tax,
            row_total: None,
            row_total_incl_tax: None,
            price_excl_tax: None,
            price_incl_tax: None,
            tax_class: None,
        }
    }

    fn cfg(algorithm: Algorithm) -> ValidationConfig {
        ValidationConfig {
            settings: TaxSettings {
                algorithm,
                ..TaxSettings::default()
            },
            rates: RateSource::PosRates,
        }
    }

    #[test]
    fn matching_lines_are_clean() {
        let r = validate(
            &[line("a", dec!(2), dec!(10), dec!(8.25), dec!(1.65))],
            &cfg(Algorithm::RowBase),
        );
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.totals.magento_tax, dec!(1.65));
    }

    #[test]
    fn per_unit_rounding_on_the_till_is_named() {
        let r = validate(
            &[line("a", dec!(2), dec!(10), dec!(8.25), dec!(1.66))],
            &cfg(Algorithm::RowBase),
        );
        assert_eq!(r.discrepancies.len(), 1);
        let d = &r.discrepancies[0];
        assert_eq!(
            (d.field.as_str(), d.expected, d.actual, d.rule),
            (
                "tax_amount",
                dec!(1.65),
                dec!(1.66),
                RoundingRule::PosRoundsPerUnit
            )
        );
    }

    #[test]
    fn total_base_remainder_is_named_on_the_line_it_lands_on() {
        let lines = [
            line("a", dec!(1), dec!(10), dec!(8.25), dec!(0.83)),
            line("b", dec!(1), dec!(11), dec!(8.25), dec!(0.91)),
        ];
        let r = validate(&lines, &cfg(Algorithm::TotalBase));
        assert_eq!(r.discrepancies.len(), 1, "{r:?}");
        let d = &r.discrepancies[0];
        assert_eq!(
            (d.line_id.as_str(), d.expected, d.actual, d.rule),
            (
                "b",
                dec!(0.90),
                dec!(0.91),
                RoundingRule::TotalBaseCarriedRemainder
            )
        );
        assert_eq!(r.totals.difference, dec!(0.01));
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut bad = line("", dec!(0), dec!(-1), dec!(120), dec!(0));
        bad.discount_amount = dec!(-2);
        let good = line("ok", dec!(1), dec!(10), dec!(20), dec!(2.50));
        let r = validate(&[bad, good], &cfg(Algorithm::RowBase));
        let fields: Vec<&str> = r.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "line_id",
                "quantity",
                "unit_price",
                "discount_amount",
                "rate"
            ]
        );
        assert_eq!(r.discrepancies.len(), 1);
        assert_eq!(r.discrepancies[0].expected, dec!(2.00));
        assert_eq!(r.discrepancies[0].rule, RoundingRule::Unexplained);
    }

    #[test]
    fn a_different_rate_is_reported_with_the_derived_tax() {
        let table = TaxRateTable {
            rates: vec![TaxRate {
                code: "GB".into(),
                title: "GB".into(),
                country: "GB".into(),
                region_id: 0,
                postcode: Some("*".into()),
                zip_range: None,
                rate: dec!(20),
            }],
            rules: vec![TaxRule {
                code: "std".into(),
                priority: 0,
                position: 0,
                calculate_subtotal: false,
                customer_classes: vec![TaxClass::parse("retail").unwrap()],
                product_classes: vec![TaxClass::parse("standard").unwrap()],
                rates: vec![0],
            }],
        };
        let address = TaxAddress {
            country: Some("GB".into()),
            region_id: 0,
            postcode: None,
        };
        let cfg = ValidationConfig {
            settings: TaxSettings {
                algorithm: Algorithm::RowBase,
                store_origin: address.clone(),
                store_customer_class: Some(TaxClass::parse("retail").unwrap()),
                ..TaxSettings::default()
            },
            rates: RateSource::Store {
                table,
                customer_address: address,
                customer_class: Some(TaxClass::parse("retail").unwrap()),
            },
        };
        let mut l = line("a", dec!(1), dec!(10), dec!(5), dec!(0.50));
        l.tax_class = Some(TaxClass::parse("standard").unwrap());
        let r = validate(&[l], &cfg);
        let rules: Vec<(&str, RoundingRule)> = r
            .discrepancies
            .iter()
            .map(|d| (d.field.as_str(), d.rule))
            .collect();
        assert_eq!(
            rules,
            [
                ("rate", RoundingRule::RateDiffers),
                ("tax_amount", RoundingRule::Derived)
            ]
        );
    }
}
