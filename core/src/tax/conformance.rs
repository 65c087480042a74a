//! Runs Magento's own tax test vectors (`../shared/vectors/tax`, `../shared/vectors/tax-diff`
//! and any other file of the same kinds) against the engine. Pure: the caller reads the files.
//!
//! Kinds: `tax_calculation_service_integration_test`, `quote_totals_integration_scenario`,
//! `calculator_unit_test`, `invoice_total_tax_unit_test`, `creditmemo_total_tax_unit_test`,
//! `delta_round_unit_test`, `runtime_fact`.
//!
//! Comparison follows the vectors: |expected − actual| < 1e-10 (PHPUnit's float delta); an
//! expected 0 or null also matches a field the engine leaves unset.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::TaxError;
use super::calculator::{
    Algorithm, Calculator, CalculatorConfig, ItemRates, LineInput, PreparedGroup, TaxRelease,
};
use super::rates::{AppliedRate, RateGroup, TaxAddress, TaxClass, TaxRate, TaxRateTable, TaxRule};
use super::service::{
    QuoteDetails, QuoteDetailsItem, TaxBasedOn, TaxDetails, TaxEngine, TaxSettings,
};
use crate::php::double::{Calculator as DocumentRounder, Dbl};
use crate::php::php_round_f64;

/// One difference between a vector's expectation and the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

/// The result of one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorOutcome {
    pub id: String,
    pub kind: String,
    pub mismatches: Vec<Mismatch>,
}

impl VectorOutcome {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// How to run vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// The Magento revision to reproduce. Vectors state 2.4.6-p1 results in their main
    /// expectation; with [`TaxRelease::Mainline`], a vector's `version_notes` alternative (when
    /// it has one) is the expectation instead.
    pub release: TaxRelease,
}

/// Tolerance of PHPUnit's `assertEquals` on floats.
fn tolerance() -> Decimal {
    Decimal::new(1, 10)
}

/// Parse a JSON number (or numeric string) exactly.
pub fn num(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string()),
        Value::String(s) => parse_decimal(s.trim()),
        Value::Bool(b) => Some(if *b { Decimal::ONE } else { Decimal::ZERO }),
        _ => None,
    }
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.contains(['e', 'E']) {
        Decimal::from_scientific(s).ok()
    } else {
        Decimal::from_str_exact(s)
            .or_else(|_| Decimal::from_str(s))
            .ok()
    }
}

/// PHP truthiness of a JSON value (`"0"`, `0`, `null`, `false` and `""` are false).
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => num(&Value::Number(n.clone())).is_some_and(|d| !d.is_zero()),
        Some(Value::String(s)) => !(s.is_empty() || s == "0"),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(_)) => true,
    }
}

pub(crate) fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, TaxError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .get(part)
            .ok_or_else(|| TaxError::invalid(path, "missing field"))?;
    }
    Ok(cur)
}

pub(crate) fn dec(v: &Value, path: &str) -> Result<Decimal, TaxError> {
    let f = field(v, path)?;
    num(f).ok_or_else(|| TaxError::invalid(path, format!("expected a number, got {f}")))
}

pub(crate) fn dec_or_zero(v: &Value, path: &str) -> Result<Decimal, TaxError> {
    match field(v, path) {
        Err(_) => Ok(Decimal::ZERO),
        Ok(Value::Null) => Ok(Decimal::ZERO),
        Ok(f) => {
            num(f).ok_or_else(|| TaxError::invalid(path, format!("expected a number, got {f}")))
        }
    }
}

/// Run one vector. `Err` means the file is not a vector this runner can execute (unknown kind,
/// a missing or malformed field); a failed comparison is an `Ok` outcome with mismatches.
pub fn run_vector(vector: &Value, opts: RunOptions) -> Result<VectorOutcome, TaxError> {
    let id = vector
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("<no id>")
        .to_owned();
    let kind = vector
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| TaxError::invalid("kind", "missing"))?
        .to_owned();
    let mismatches = match kind.as_str() {
        "tax_calculation_service_integration_test" => run_service(vector, opts)?,
        "calculator_unit_test" => run_calculator_unit(vector, opts)?,
        "delta_round_unit_test" => run_delta_round(vector)?,
        "runtime_fact" => run_runtime_fact(vector)?,
        "quote_totals_integration_scenario" => super::quote::run_quote_vector(vector, opts)?,
        "invoice_total_tax_unit_test" => super::documents::run_invoice_vector(vector)?,
        "creditmemo_total_tax_unit_test" => super::documents::run_creditmemo_vector(vector)?,
        other => return Err(TaxError::Unsupported(format!("vector kind '{other}'"))),
    };
    Ok(VectorOutcome {
        id,
        kind,
        mismatches,
    })
}

// ---------------------------------------------------------------------------------------------
// comparison

/// Compare `actual` against `expected`, recursively. Numbers within 1e-10; an expected 0/null
/// matches a missing field; extra fields in `actual` are ignored.
pub fn compare(path: &str, expected: &Value, actual: Option<&Value>, out: &mut Vec<Mismatch>) {
    let push = |out: &mut Vec<Mismatch>, exp: &Value, act: Option<&Value>| {
        out.push(Mismatch {
            field: path.to_owned(),
            expected: render(Some(exp)),
            actual: render(act),
        })
    };
    match expected {
        Value::Object(map) => match actual {
            Some(Value::Object(act)) => {
                for (k, v) in map {
                    compare(&join(path, k), v, act.get(k), out);
                }
            }
            _ => {
                for (k, v) in map {
                    compare(&join(path, k), v, None, out);
                }
            }
        },
        Value::Array(items) => {
            let act = actual.and_then(Value::as_array);
            let len = act.map_or(0, Vec::len);
            if len != items.len() {
                out.push(Mismatch {
                    field: format!("{path}.length"),
                    expected: items.len().to_string(),
                    actual: len.to_string(),
                });
            }
            for (i, v) in items.iter().enumerate() {
                compare(&format!("{path}[{i}]"), v, act.and_then(|a| a.get(i)), out);
            }
        }
        Value::Null => {
            if let Some(a) = actual
                && !a.is_null()
                && num(a).is_none_or(|d| !d.is_zero())
            {
                push(out, expected, actual);
            }
        }
        Value::Number(_) | Value::Bool(_) if num(expected).is_some() => {
            let exp = num(expected).unwrap_or_default();
            match actual.and_then(num) {
                Some(a) if (a - exp).abs() < tolerance() => {}
                None if exp.is_zero() && actual.is_none_or(Value::is_null) => {}
                _ => push(out, expected, actual),
            }
        }
        Value::String(s) => match actual {
            Some(Value::String(a)) if a == s => {}
            _ => {
                // Numeric strings compare as numbers.
                if let (Some(e), Some(a)) = (num(expected), actual.and_then(num))
                    && (a - e).abs() < tolerance()
                {
                    return;
                }
                push(out, expected, actual)
            }
        },
        _ => {
            if actual != Some(expected) {
                push(out, expected, actual)
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn render(v: Option<&Value>) -> String {
    match v {
        None => "<unset>".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A decimal as a JSON number (exact text).
pub fn jnum(d: Decimal) -> Value {
    let text = d.normalize().to_string();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// environment parsing shared by the service and quote kinds

fn region(v: Option<&Value>) -> Result<u32, TaxError> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.trim() == "*" || s.trim().is_empty() => Ok(0),
        Some(other) => num(other)
            .and_then(|d| u32::try_from(d.trunc().mantissa()).ok())
            .ok_or_else(|| {
                TaxError::invalid("region_id", format!("expected a region id, got {other}"))
            }),
    }
}

pub(crate) fn address(v: Option<&Value>) -> Result<Option<TaxAddress>, TaxError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(TaxAddress {
        country: v
            .get("country")
            .or_else(|| v.get("country_id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        region_id: region(v.get("region_id"))?,
        postcode: match v.get("postcode") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
    }))
}

fn class_of(v: &Value, path: &str) -> Result<TaxClass, TaxError> {
    match v {
        Value::String(s) => TaxClass::parse(s),
        Value::Number(n) => TaxClass::parse(&n.to_string()),
        other => Err(TaxError::invalid(
            path,
            format!("expected a tax class, got {other}"),
        )),
    }
}

pub(crate) fn opt_class(v: Option<&Value>, path: &str) -> Result<Option<TaxClass>, TaxError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::Number(n)) if n.to_string() == "0" => Ok(None),
        Some(v) => class_of(v, path).map(Some),
    }
}

/// Build the rate table from a vector's `tax_rates` / `tax_rules`.
pub(crate) fn rate_table(rates: &Value, rules: &Value) -> Result<TaxRateTable, TaxError> {
    let mut table = TaxRateTable::default();
    for (i, r) in rates
        .as_array()
        .ok_or_else(|| TaxError::invalid("tax_rates", "expected a list"))?
        .iter()
        .enumerate()
    {
        let path = format!("tax_rates[{i}]");
        let code = r
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| TaxError::invalid(format!("{path}.code"), "missing"))?;
        let postcode = match r.get("postcode").or_else(|| r.get("tax_postcode")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let zip_range = match (
            r.get("zip_from").and_then(num),
            r.get("zip_to").and_then(num),
        ) {
            (Some(a), Some(b)) => Some((a.trunc().mantissa() as u64, b.trunc().mantissa() as u64)),
            _ => None,
        };
        table.rates.push(TaxRate {
            code: code.to_owned(),
            title: r
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(code)
                .to_owned(),
            country: r
                .get("country")
                .or_else(|| r.get("tax_country_id"))
                .and_then(Value::as_str)
                .unwrap_or("US")
                .to_owned(),
            region_id: region(r.get("region_id").or_else(|| r.get("tax_region_id")))?,
            postcode,
            zip_range,
            rate: dec(r, "rate")
                .map_err(|_| TaxError::invalid(format!("{path}.rate"), "expected a number"))?,
        });
    }
    for (i, r) in rules
        .as_array()
        .ok_or_else(|| TaxError::invalid("tax_rules", "expected a list"))?
        .iter()
        .enumerate()
    {
        let path = format!("tax_rules[{i}]");
        let list = |key: &str| -> Result<Vec<TaxClass>, TaxError> {
            r.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(j, c)| class_of(c, &format!("{path}.{key}[{j}]")))
                        .collect()
                })
                .unwrap_or_else(|| Ok(Vec::new()))
        };
        let mut rate_idx = Vec::new();
        for (j, code) in r
            .get("tax_rates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let code = code.as_str().ok_or_else(|| {
                TaxError::invalid(format!("{path}.tax_rates[{j}]"), "expected a rate code")
            })?;
            let idx = table
                .rates
                .iter()
                .position(|x| x.code == code)
                .ok_or_else(|| {
                    TaxError::invalid(
                        format!("{path}.tax_rates[{j}]"),
                        format!("unknown rate code '{code}'"),
                    )
                })?;
            rate_idx.push(idx);
        }
        table.rules.push(TaxRule {
            code: r
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            priority: r
                .get("priority")
                .and_then(num)
                .map_or(0, |d| d.trunc().mantissa() as i64),
            position: r
                .get("position")
                .and_then(num)
                .map_or(0, |d| d.trunc().mantissa() as i64),
            calculate_subtotal: truthy(r.get("calculate_subtotal")),
            customer_classes: list("customer_tax_classes")?,
            product_classes: list("product_tax_classes")?,
            rates: rate_idx,
        });
    }
    Ok(table)
}

// ---------------------------------------------------------------------------------------------
// tax_calculation_service_integration_test

fn service_settings(vector: &Value, opts: RunOptions) -> Result<TaxSettings, TaxError> {
    let algorithm = vector
        .get("algorithm")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .ok_or_else(|| TaxError::invalid("algorithm", "missing or unknown algorithm"))?;
    let mut s = TaxSettings {
        algorithm,
        release: opts.release,
        ..TaxSettings::default()
    };
    if let Some(cfg) = vector.pointer("/environment/tax_config") {
        if let Some(v) = cfg.get("apply_tax_after_discount") {
            s.apply_after_discount = truthy(Some(v));
        }
        if let Some(v) = cfg.get("cross_border_trade_enabled") {
            s.cross_border_trade = truthy(Some(v));
        }
        if let Some(v) = cfg.get("tax_based_on").and_then(Value::as_str) {
            s.based_on = match v {
                "billing" => TaxBasedOn::Billing,
                "origin" => TaxBasedOn::Origin,
                _ => TaxBasedOn::Shipping,
            };
        }
        if let Some(origin) = address(cfg.get("store_origin"))? {
            s.store_origin = origin;
        }
        if let Some(c) = opt_class(
            cfg.get("store_rate_customer_tax_class"),
            "environment.tax_config.store_rate_customer_tax_class",
        )? {
            s.store_customer_class = Some(c);
        }
    }
    Ok(s)
}

fn service_items(vector: &Value) -> Result<Vec<QuoteDetailsItem>, TaxError> {
    let items = field(vector, "quote_details.items")?
        .as_array()
        .ok_or_else(|| TaxError::invalid("quote_details.items", "expected a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let path = format!("quote_details.items[{i}]");
            Ok(QuoteDetailsItem {
                code: it
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TaxError::invalid(format!("{path}.code"), "missing"))?
                    .to_owned(),
                item_type: it
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("product")
                    .to_owned(),
                quantity: dec(it, "quantity").map_err(|_| {
                    TaxError::invalid(format!("{path}.quantity"), "expected a number")
                })?,
                unit_price: dec(it, "unit_price").map_err(|_| {
                    TaxError::invalid(format!("{path}.unit_price"), "expected a number")
                })?,
                discount_amount: dec_or_zero(it, "discount_amount")?,
                tax_included: truthy(it.get("tax_included").or_else(|| it.get("is_tax_included"))),
                tax_class: opt_class(it.get("tax_class_key"), &format!("{path}.tax_class_key"))?,
                parent_code: it
                    .get("parent_code")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                associated_item_code: it
                    .get("associated_item_code")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                price_for_tax_calculation: it.get("price_for_tax_calculation").and_then(num),
            })
        })
        .collect()
}

/// `TaxDetails` in the array shape of the integration test's `convertObjectToArray()`.
pub fn tax_details_json(details: &TaxDetails) -> Value {
    let applied_item = |a: &super::service::AppliedTax| {
        let rates: Map<String, Value> = a
            .rates
            .iter()
            .map(|r| {
                (
                    r.code.clone(),
                    json!({"percent": jnum(r.percent), "code": r.code, "title": r.title}),
                )
            })
            .collect();
        json!({"amount": jnum(a.amount), "percent": jnum(a.percent), "tax_rate_key": a.tax_rate_key, "rates": rates})
    };
    let mut items = Map::new();
    for it in &details.items {
        let v = if it.is_parent {
            json!({
                "code": it.code, "type": it.item_type, "price": jnum(it.price), "price_incl_tax": jnum(it.price_incl_tax),
                "row_total": jnum(it.row_total), "row_total_incl_tax": jnum(it.row_total_incl_tax), "row_tax": jnum(it.row_tax),
            })
        } else {
            let applied: Map<String, Value> = it
                .applied_taxes
                .iter()
                .map(|a| (a.tax_rate_key.clone(), applied_item(a)))
                .collect();
            json!({
                "code": it.code, "type": it.item_type, "row_tax": jnum(it.row_tax), "price": jnum(it.price),
                "price_incl_tax": jnum(it.price_incl_tax), "row_total": jnum(it.row_total),
                "row_total_incl_tax": jnum(it.row_total_incl_tax),
                "discount_tax_compensation_amount": jnum(it.discount_tax_compensation_amount),
                "associated_item_code": it.associated_item_code, "tax_percent": jnum(it.tax_percent),
                "applied_taxes": applied,
            })
        };
        items.insert(it.code.clone(), v);
    }
    let applied: Vec<Value> = details
        .applied_taxes
        .iter()
        .map(|a| {
            let rates: Vec<Value> =
                a.rates.iter().map(|r| json!({"code": r.code, "title": r.title, "percent": jnum(r.percent)})).collect();
            json!({"amount": jnum(a.amount), "percent": jnum(a.percent), "tax_rate_key": a.tax_rate_key, "rates": rates})
        })
        .collect();
    json!({
        "subtotal": jnum(details.subtotal),
        "tax_amount": jnum(details.tax_amount),
        "discount_tax_compensation_amount": jnum(details.discount_tax_compensation_amount),
        "applied_taxes": applied,
        "items": items,
    })
}

/// The engine and request of a `tax_calculation_service_integration_test` vector, ready to
/// run (used by the runner below and by `tillbridge bench tax`).
pub fn service_case(
    vector: &Value,
    opts: RunOptions,
) -> Result<(TaxEngine, QuoteDetails), TaxError> {
    let env = field(vector, "environment")?;
    let table = rate_table(field(env, "tax_rates")?, field(env, "tax_rules")?)?;
    let settings = service_settings(vector, opts)?;
    let details = QuoteDetails {
        items: service_items(vector)?,
        shipping_address: address(env.get("shipping_address"))?,
        billing_address: address(env.get("billing_address"))?,
        customer_tax_class: opt_class(
            env.get("customer_tax_class"),
            "environment.customer_tax_class",
        )?,
    };
    Ok((TaxEngine::new(table, settings), details))
}

fn run_service(vector: &Value, opts: RunOptions) -> Result<Vec<Mismatch>, TaxError> {
    let (mut engine, details) = service_case(vector, opts)?;
    let result = engine.calculate_tax(&details, true)?;
    let actual = tax_details_json(&result);
    let expected = match (
        opts.release,
        vector.pointer("/version_notes/expected_tax_details_alternative"),
    ) {
        (TaxRelease::Mainline, Some(alt)) => alt,
        _ => field(vector, "expected_tax_details")?,
    };
    let mut out = Vec::new();
    compare("", expected, Some(&actual), &mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// calculator_unit_test: sequential calls on one calculator instance

fn run_calculator_unit(vector: &Value, opts: RunOptions) -> Result<Vec<Mismatch>, TaxError> {
    let input = field(vector, "input")?;
    let algorithm = vector
        .get("algorithm")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .ok_or_else(|| TaxError::invalid("algorithm", "missing or unknown"))?;
    let config = CalculatorConfig {
        algorithm,
        apply_after_discount: truthy(input.pointer("/config/apply_tax_after_discount")),
        cross_border_trade: truthy(input.pointer("/config/cross_border_trade_enabled")),
        release: opts.release,
    };
    let groups = input
        .get("applied_rates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, g)| {
                    let id = match g.get("id") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    let rates = g
                        .get("rates")
                        .and_then(Value::as_array)
                        .map(|rs| {
                            rs.iter()
                                .map(|r| AppliedRate {
                                    code: r
                                        .get("code")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_owned(),
                                    title: r
                                        .get("title")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_owned(),
                                    percent: r.get("percent").and_then(num).unwrap_or_default(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    PreparedGroup::new(
                        RateGroup {
                            id,
                            percent: g.get("percent").and_then(num).unwrap_or_default(),
                            rates,
                        },
                        i as u32 + 1,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rates = ItemRates::new(
        dec(input, "customer_rate")?,
        0,
        dec(input, "store_rate")?,
        groups,
    );
    let line = LineInput {
        item_key: 0,
        quantity: dec(input, "quantity")?,
        unit_price: dec(input, "unit_price")?,
        discount_amount: dec_or_zero(input, "item_discount_amount")?,
        tax_included: truthy(input.get("is_tax_included")),
        price_for_tax_calculation: None,
    };
    let code = input
        .get("item_code")
        .and_then(Value::as_str)
        .unwrap_or("CODE");
    let item_type = input
        .get("item_type")
        .and_then(Value::as_str)
        .unwrap_or("TYPE");
    // A test double that stubs deltaRound() leaves only price_incl_tax meaningful.
    let only_price_incl = vector
        .get("test_double")
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains("deltaRound"));
    let mut calc = Calculator::new(config);
    let mut out = Vec::new();
    for (i, call) in field(vector, "calls")?
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let round = call.get("round").and_then(Value::as_bool).unwrap_or(true);
        let res = calc.calculate(&line, &rates, round);
        let actual = json!({
            "row_tax": jnum(res.row_tax), "price": jnum(res.price), "price_incl_tax": jnum(res.price_incl_tax),
            "row_total": jnum(res.row_total), "row_total_incl_tax": jnum(res.row_total_incl_tax),
            "discount_tax_compensation_amount": jnum(res.discount_tax_compensation),
            "tax_percent": jnum(res.tax_percent), "code": code, "type": item_type,
        });
        let mut expected = field(call, "expected")?.clone();
        if only_price_incl && let Some(obj) = expected.as_object_mut() {
            obj.retain(|k, _| k == "price_incl_tax");
        }
        compare(&format!("calls[{i}]"), &expected, Some(&actual), &mut out);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// delta_round_unit_test and runtime_fact

fn run_delta_round(vector: &Value) -> Result<Vec<Mismatch>, TaxError> {
    let mut out = Vec::new();
    let mut rounder = DocumentRounder::new();
    for (i, case) in field(vector, "cases")?
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if case
            .get("fresh_instance")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            rounder = DocumentRounder::new();
        }
        let price = dec(case, "price")?;
        let negative = truthy(case.get("negative"));
        let got = rounder
            .round_price(
                Dbl::of(price),
                super::rounding::DocRoundType::Regular,
                negative,
            )
            .dec();
        compare(
            &format!("cases[{i}]"),
            field(case, "expected")?,
            Some(&jnum(got)),
            &mut out,
        );
    }
    Ok(out)
}

fn run_runtime_fact(vector: &Value) -> Result<Vec<Mismatch>, TaxError> {
    let mut out = Vec::new();
    for (i, case) in field(vector, "cases")?
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let input = field(case, "input")?;
        let as_f64: f64 = input
            .to_string()
            .parse()
            .map_err(|_| TaxError::invalid(format!("cases[{i}].input"), "not a number"))?;
        if let Some(exp) = case.get("round_2") {
            let got = php_round_f64(as_f64, 2);
            compare(
                &format!("cases[{i}].round_2"),
                exp,
                Some(&json!(got)),
                &mut out,
            );
        }
        if let Some(exp) = case.get("delta_round_first_call") {
            // The tax calculators' first call on a chain: round($x + 0.000001, 2) on the double.
            let got = php_round_f64(as_f64 + 0.000001, 2);
            compare(
                &format!("cases[{i}].delta_round_first_call"),
                exp,
                Some(&json!(got)),
                &mut out,
            );
            // And the decimal engine must agree with PHP on the decimal literal.
            let exact = dec(case, "input")?;
            let mut r = super::rounding::TaxDeltaRounder::new();
            let key = super::rounding::ChainKey {
                kind: super::rounding::DeltaType::Regular,
                item: None,
                tax_included: false,
                rate: 0,
            };
            let got = r.delta_round(exact, key, true);
            compare(
                &format!("cases[{i}].delta_round_first_call(decimal)"),
                exp,
                Some(&jnum(got)),
                &mut out,
            );
        }
    }
    Ok(out)
}
