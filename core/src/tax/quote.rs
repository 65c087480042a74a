//! The quote totals pipeline of Magento 2.4.6-p1, as far as tax is concerned.
//!
//! Collectors run in `sort_order`: subtotal (100) → tax_subtotal (200) → discount (300) →
//! shipping (350) → tax_shipping (375) → shipping_discount (400) → tax (450) → grand_total
//! (550). Each tax collector calls the calculation service with a fresh calculator instance,
//! base currency and display currency separately (identical here: one currency).
//!
//! Supported cart rules: `by_percent` (with `discount_step`, `discount_qty`,
//! `apply_to_shipping`, `stop_rules_processing`), which is what Magento's tax scenarios use.
//! Other actions are rejected with [`TaxError::Unsupported`] rather than computed wrongly.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::TaxError;
use super::calculator::Algorithm;
use super::conformance::{
    Mismatch, RunOptions, address, compare, dec_or_zero, field, jnum, num, opt_class, rate_table,
    truthy,
};
use super::rates::{AppliedRate, TaxAddress, TaxClass};
use super::service::{
    ItemTaxDetails, QuoteDetails, QuoteDetailsItem, TaxBasedOn, TaxDetails, TaxEngine, TaxSettings,
};
use crate::php::{php_float_key, round_dp, round2};

/// Store configuration read by the quote collectors (beyond the calculation service's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuoteTaxConfig {
    /// `tax/calculation/price_includes_tax`
    pub price_includes_tax: bool,
    /// `tax/calculation/shipping_includes_tax`
    pub shipping_includes_tax: bool,
    /// `tax/calculation/discount_tax`: apply the discount on prices including tax.
    pub discount_tax: bool,
    /// `tax/calculation/apply_tax_on` = 1: tax the original price, not the custom price.
    pub apply_tax_on_original_price: bool,
    /// `tax/classes/shipping_tax_class` (none: shipping is not taxed).
    pub shipping_tax_class: Option<TaxClass>,
}

/// A cart item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteItemInput {
    pub sku: String,
    /// Catalog (original) price, in the store's price mode.
    pub price: Decimal,
    pub qty: Decimal,
    pub tax_class: Option<TaxClass>,
    /// An admin custom price, if any.
    pub custom_price: Option<Decimal>,
}

/// A cart price rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartRule {
    pub simple_action: String,
    /// Percent for `by_percent`.
    pub discount_amount: Decimal,
    pub apply_to_shipping: bool,
    pub discount_step: Decimal,
    pub discount_qty: Option<Decimal>,
    pub stop_rules_processing: bool,
}

/// A quote: items, addresses, the carrier's shipping price and the cart rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuoteInput {
    pub items: Vec<QuoteItemInput>,
    pub shipping_address: Option<TaxAddress>,
    pub billing_address: Option<TaxAddress>,
    pub customer_tax_class: Option<TaxClass>,
    /// The shipping price as the carrier entered it (`None`: no shipping method).
    pub shipping_amount: Option<Decimal>,
    pub cart_rules: Vec<CartRule>,
}

/// Per-item results (`sales_quote_item` fields).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuoteItemTotals {
    pub sku: String,
    pub price: Decimal,
    pub custom_price: Option<Decimal>,
    pub original_custom_price: Option<Decimal>,
    pub price_incl_tax: Decimal,
    pub row_total: Decimal,
    pub row_total_incl_tax: Decimal,
    pub tax_amount: Decimal,
    pub tax_percent: Decimal,
    pub discount_amount: Decimal,
    pub discount_percent: Decimal,
    pub discount_tax_compensation_amount: Decimal,
    pub applied_taxes: Vec<super::service::AppliedTax>,
}

/// Address totals (`sales_quote_address` fields), single currency (base = display).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuoteTotals {
    pub subtotal: Decimal,
    pub subtotal_incl_tax: Decimal,
    pub tax_amount: Decimal,
    pub shipping_amount: Decimal,
    pub shipping_incl_tax: Decimal,
    pub shipping_tax_amount: Decimal,
    pub shipping_discount_amount: Decimal,
    pub discount_amount: Decimal,
    pub discount_tax_compensation_amount: Decimal,
    pub shipping_discount_tax_compensation_amount: Decimal,
    pub grand_total: Decimal,
    pub applied_taxes: Vec<super::service::AppliedTax>,
    pub items: Vec<QuoteItemTotals>,
}

#[derive(Debug, Clone, Default)]
struct ItemState {
    code: String,
    calc_price: Decimal,
    original_price: Decimal,
    discount_amount: Decimal,
    discount_percent: Decimal,
    discount_calculation_price: Decimal,
    details: Option<ItemTaxDetails>,
}

/// `SalesRule\Model\Utility` rounding deltas, keyed by the PHP string of the discount percent.
#[derive(Debug, Default)]
struct DiscountRounder {
    deltas: FxHashMap<String, Decimal>,
}

/// Run the quote totals collectors.
pub fn collect_totals(
    engine: &mut TaxEngine,
    cfg: &QuoteTaxConfig,
    quote: &QuoteInput,
) -> Result<QuoteTotals, TaxError> {
    for (i, rule) in quote.cart_rules.iter().enumerate() {
        if rule.simple_action != "by_percent" {
            return Err(TaxError::Unsupported(format!(
                "cart_rules[{i}].simple_action '{}' (only by_percent is reproduced)",
                rule.simple_action
            )));
        }
    }
    let mut items: Vec<ItemState> = Vec::with_capacity(quote.items.len());
    for (i, it) in quote.items.iter().enumerate() {
        if it.qty <= Decimal::ZERO {
            return Err(TaxError::invalid(
                format!("items[{i}].qty"),
                format!("quantity of '{}' must be greater than 0", it.sku),
            ));
        }
        items.push(ItemState {
            code: format!("sequence-{}", i + 1),
            calc_price: it.custom_price.unwrap_or(it.price),
            original_price: it.price,
            ..ItemState::default()
        });
    }
    let details_for = |items: &[ItemState], with_discount: bool| -> Vec<QuoteDetailsItem> {
        items
            .iter()
            .zip(&quote.items)
            .map(|(st, it)| QuoteDetailsItem {
                code: st.code.clone(),
                item_type: "product".into(),
                quantity: it.qty,
                unit_price: st.calc_price,
                discount_amount: if with_discount {
                    st.discount_amount
                } else {
                    Decimal::ZERO
                },
                tax_included: cfg.price_includes_tax,
                tax_class: it.tax_class.clone(),
                parent_code: None,
                associated_item_code: None,
                price_for_tax_calculation: Some(if cfg.apply_tax_on_original_price {
                    st.original_price
                } else {
                    st.calc_price
                }),
            })
            .collect()
    };
    let request = |items: Vec<QuoteDetailsItem>| QuoteDetails {
        items,
        shipping_address: quote.shipping_address.clone(),
        billing_address: quote.billing_address.clone(),
        customer_tax_class: quote.customer_tax_class.clone(),
    };

    // tax_subtotal (200): items without discounts; sets the discount calculation price.
    let sub = engine.calculate_tax(&request(details_for(&items, false)), true)?;
    for st in items.iter_mut() {
        let d = sub.item(&st.code).cloned();
        if let Some(d) = &d {
            st.discount_calculation_price = if cfg.discount_tax {
                d.price_incl_tax
            } else {
                d.price
            };
        }
        st.details = d;
    }

    // discount (300): item discounts.
    let mut rounder = DiscountRounder::default();
    for rule in &quote.cart_rules {
        let mut applied = false;
        for (st, it) in items.iter_mut().zip(&quote.items) {
            let price = st.discount_calculation_price;
            if price < Decimal::ZERO {
                continue;
            }
            let mut qty = match rule.discount_qty {
                Some(q) if !q.is_zero() => it.qty.min(q),
                _ => it.qty,
            };
            if !rule.discount_step.is_zero() {
                qty = (qty / rule.discount_step).floor() * rule.discount_step;
            }
            let pct = rule.discount_amount.min(Decimal::ONE_HUNDRED);
            // ByPercent::_calculate
            let mut amount = (qty * price - st.discount_amount) * (pct / Decimal::ONE_HUNDRED);
            if rule.discount_qty.is_none_or(|q| q.is_zero() || q >= qty) {
                st.discount_percent = (st.discount_percent + pct).min(Decimal::ONE_HUNDRED);
            }
            // Utility::deltaRoundingFix
            let row_total = st.details.as_ref().map_or(Decimal::ZERO, |d| d.row_total);
            let row_total_incl = st
                .details
                .as_ref()
                .map_or(Decimal::ZERO, |d| d.row_total_incl_tax);
            let key = php_float_key(st.discount_percent);
            if !st.discount_percent.is_zero() && row_total > Decimal::ZERO {
                let delta = rounder.deltas.get(&key).copied().unwrap_or_default();
                amount += delta;
                rounder.deltas.insert(key, amount - round2(amount));
            }
            if st.discount_percent == Decimal::ONE_HUNDRED {
                let over = row_total_incl - amount;
                if over < Decimal::ZERO {
                    amount += over;
                }
            }
            amount = round2(amount);
            // Utility::minFix
            amount = (st.discount_amount + amount).min(price * qty);
            st.discount_amount = amount;
            applied = true;
        }
        if rule.stop_rules_processing && applied {
            break;
        }
    }

    // shipping (350) + tax_shipping (375): the shipping line alone, without discount.
    let shipping_line = |discount: Decimal| QuoteDetailsItem {
        code: "shipping".into(),
        item_type: "shipping".into(),
        quantity: Decimal::ONE,
        unit_price: quote.shipping_amount.unwrap_or_default(),
        discount_amount: discount,
        tax_included: cfg.shipping_includes_tax,
        tax_class: cfg.shipping_tax_class.clone(),
        parent_code: None,
        associated_item_code: None,
        price_for_tax_calculation: None,
    };
    let mut shipping_excl = Decimal::ZERO;
    let mut shipping_for_discount = None;
    if quote.shipping_amount.is_some() && !quote.items.is_empty() {
        let ship = engine.calculate_tax(&request(vec![shipping_line(Decimal::ZERO)]), true)?;
        if let Some(s) = ship.item("shipping") {
            shipping_excl = s.row_total;
            if cfg.discount_tax {
                shipping_for_discount = Some(s.row_total_incl_tax);
            }
        }
    }

    // shipping_discount (400): Validator::processShippingAmount.
    let mut shipping_discount = Decimal::ZERO;
    if !shipping_excl.is_zero() {
        let base_amount = shipping_for_discount
            .filter(|v| !v.is_zero())
            .unwrap_or(shipping_excl);
        for rule in &quote.cart_rules {
            if !rule.apply_to_shipping {
                continue;
            }
            let pct = rule.discount_amount.min(Decimal::ONE_HUNDRED);
            let amount = (base_amount - shipping_discount) * pct / Decimal::ONE_HUNDRED;
            let amount = (shipping_discount + amount).min(base_amount);
            shipping_discount = round2(amount);
            if rule.stop_rules_processing {
                break;
            }
        }
    }

    // tax (450): items with discounts, then the shipping line with its discount, one call.
    let mut lines = details_for(&items, true);
    let has_shipping = quote.shipping_amount.is_some() && !quote.items.is_empty();
    if has_shipping {
        lines.push(shipping_line(shipping_discount));
    }
    let fin = engine.calculate_tax(&request(lines), true)?;
    Ok(assemble(
        quote,
        cfg,
        &items,
        &fin,
        has_shipping,
        shipping_discount,
    ))
}

fn assemble(
    quote: &QuoteInput,
    cfg: &QuoteTaxConfig,
    items: &[ItemState],
    fin: &TaxDetails,
    has_shipping: bool,
    shipping_discount: Decimal,
) -> QuoteTotals {
    let mut t = QuoteTotals::default();
    let mut item_discounts = Decimal::ZERO;
    for (st, it) in items.iter().zip(&quote.items) {
        let Some(d) = fin.item(&st.code) else {
            continue;
        };
        t.subtotal += d.row_total;
        t.subtotal_incl_tax += d.row_total_incl_tax;
        t.tax_amount += d.row_tax;
        t.discount_tax_compensation_amount += d.discount_tax_compensation_amount;
        item_discounts += st.discount_amount;
        let custom_price = it.custom_price.map(|c| {
            if cfg.apply_tax_on_original_price {
                c
            } else {
                d.price
            }
        });
        t.items.push(QuoteItemTotals {
            sku: it.sku.clone(),
            price: d.price,
            custom_price,
            original_custom_price: it.custom_price,
            price_incl_tax: d.price_incl_tax,
            row_total: d.row_total,
            row_total_incl_tax: d.row_total_incl_tax,
            tax_amount: d.row_tax,
            tax_percent: d.tax_percent,
            discount_amount: st.discount_amount,
            discount_percent: st.discount_percent,
            discount_tax_compensation_amount: d.discount_tax_compensation_amount,
            applied_taxes: d.applied_taxes.clone(),
        });
        save_applied(&mut t.applied_taxes, &d.applied_taxes);
    }
    if has_shipping && let Some(s) = fin.item("shipping") {
        t.shipping_amount = s.row_total;
        t.shipping_incl_tax = s.row_total_incl_tax;
        t.shipping_tax_amount = s.row_tax;
        t.shipping_discount_tax_compensation_amount = s.discount_tax_compensation_amount;
        t.tax_amount += s.row_tax;
        save_applied(&mut t.applied_taxes, &s.applied_taxes);
    }
    t.shipping_discount_amount = shipping_discount;
    t.discount_amount = -(item_discounts + shipping_discount);
    let sum = t.subtotal
        + t.shipping_amount
        + t.tax_amount
        + t.discount_amount
        + t.discount_tax_compensation_amount
        + t.shipping_discount_tax_compensation_amount;
    t.grand_total = round_dp(sum, 4);
    t
}

/// `CommonTaxCollector::_saveAppliedTaxes`: aggregate by group id, ignoring 0 % groups.
fn save_applied(
    into: &mut Vec<super::service::AppliedTax>,
    applied: &[super::service::AppliedTax],
) {
    for a in applied {
        if a.percent.is_zero() {
            continue;
        }
        match into.iter_mut().find(|x| x.tax_rate_key == a.tax_rate_key) {
            Some(x) => x.amount += a.amount,
            None => into.push(a.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// conformance: quote_totals_integration_scenario

fn config_flag(cfg: &Value, key: &str) -> bool {
    truthy(cfg.get(key))
}

/// Run a `quote_totals_integration_scenario` vector.
pub fn run_quote_vector(vector: &Value, opts: RunOptions) -> Result<Vec<Mismatch>, TaxError> {
    let cfg = field(vector, "config")?;
    let env = field(vector, "environment")?;
    if env
        .get("base_currency_equals_quote_currency")
        .is_some_and(|v| v == &Value::Bool(false))
    {
        return Err(TaxError::Unsupported(
            "quote scenarios with a display currency different from the base currency".into(),
        ));
    }
    let algorithm = cfg
        .get("algorithm")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .ok_or_else(|| TaxError::invalid("config.algorithm", "missing or unknown"))?;
    let settings = TaxSettings {
        algorithm,
        apply_after_discount: cfg
            .get("apply_tax_after_discount")
            .is_none_or(|v| truthy(Some(v))),
        cross_border_trade: config_flag(cfg, "cross_border_trade_enabled"),
        release: opts.release,
        based_on: match cfg.get("tax_based_on").and_then(Value::as_str) {
            Some("billing") => TaxBasedOn::Billing,
            Some("origin") => TaxBasedOn::Origin,
            _ => TaxBasedOn::Shipping,
        },
        store_origin: address(env.get("store_origin_address"))?
            .unwrap_or_else(|| TaxSettings::default().store_origin),
        store_customer_class: opt_class(
            env.get("store_rate_customer_tax_class"),
            "environment.store_rate_customer_tax_class",
        )?,
        default_address: TaxSettings::default().default_address,
    };
    let qcfg = QuoteTaxConfig {
        price_includes_tax: config_flag(cfg, "catalog_prices_include_tax"),
        shipping_includes_tax: config_flag(cfg, "shipping_prices_include_tax"),
        discount_tax: config_flag(cfg, "apply_discount_on_prices_including_tax"),
        apply_tax_on_original_price: cfg
            .get("apply_tax_on")
            .and_then(num)
            .is_some_and(|v| v == Decimal::ONE),
        shipping_tax_class: opt_class(cfg.get("shipping_tax_class"), "config.shipping_tax_class")?,
    };
    let table = rate_table(field(vector, "tax_rates")?, field(vector, "tax_rules")?)?;
    let q = field(vector, "quote")?;
    let mut items = Vec::new();
    for (i, it) in field(q, "items")?
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("quote.items[{i}]");
        items.push(QuoteItemInput {
            sku: it
                .get("sku")
                .and_then(Value::as_str)
                .ok_or_else(|| TaxError::invalid(format!("{path}.sku"), "missing"))?
                .to_owned(),
            price: it
                .get("price")
                .and_then(num)
                .ok_or_else(|| TaxError::invalid(format!("{path}.price"), "expected a number"))?,
            qty: it
                .get("qty")
                .and_then(num)
                .ok_or_else(|| TaxError::invalid(format!("{path}.qty"), "expected a number"))?,
            tax_class: opt_class(it.get("tax_class"), &format!("{path}.tax_class"))?,
            custom_price: it.get("custom_price").and_then(num),
        });
    }
    let total_qty: Decimal = items.iter().map(|i| i.qty).sum();
    let shipping_amount = match q.get("shipping") {
        None | Some(Value::Null) => None,
        Some(s) => Some(match s.get("shipping_price_input").and_then(num) {
            Some(v) => v,
            None => {
                s.get("flatrate_price_per_item")
                    .and_then(num)
                    .unwrap_or(Decimal::new(5, 0))
                    * total_qty
            }
        }),
    };
    let mut rules = Vec::new();
    for r in q
        .get("cart_rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        rules.push(CartRule {
            simple_action: r
                .get("simple_action")
                .and_then(Value::as_str)
                .unwrap_or("by_percent")
                .to_owned(),
            discount_amount: dec_or_zero(r, "discount_amount")?,
            apply_to_shipping: truthy(r.get("apply_to_shipping")),
            discount_step: dec_or_zero(r, "discount_step")?,
            discount_qty: r.get("discount_qty").and_then(num),
            stop_rules_processing: r
                .get("stop_rules_processing")
                .is_none_or(|v| truthy(Some(v))),
        });
    }
    let quote = QuoteInput {
        items,
        shipping_address: address(q.get("shipping_address"))?,
        billing_address: address(q.get("billing_address"))?,
        customer_tax_class: opt_class(
            env.get("customer_tax_class"),
            "environment.customer_tax_class",
        )?,
        shipping_amount,
        cart_rules: rules,
    };
    let mut engine = TaxEngine::new(table, settings);
    let totals = collect_totals(&mut engine, &qcfg, &quote)?;
    let actual = totals_json(&totals);
    let mut out = Vec::new();
    compare("", field(vector, "expected")?, Some(&actual), &mut out);
    Ok(out)
}

fn twin(map: &mut Map<String, Value>, name: &str, v: Decimal) {
    map.insert(name.to_owned(), jnum(v));
    map.insert(format!("base_{name}"), jnum(v));
}

/// Totals in the shape of Magento's scenario expectations (`address` and `items` by sku).
pub fn totals_json(t: &QuoteTotals) -> Value {
    let mut address = Map::new();
    twin(&mut address, "subtotal", t.subtotal);
    twin(&mut address, "subtotal_incl_tax", t.subtotal_incl_tax);
    twin(&mut address, "tax_amount", t.tax_amount);
    twin(&mut address, "shipping_amount", t.shipping_amount);
    twin(&mut address, "shipping_incl_tax", t.shipping_incl_tax);
    twin(&mut address, "shipping_tax_amount", t.shipping_tax_amount);
    twin(
        &mut address,
        "shipping_discount_amount",
        t.shipping_discount_amount,
    );
    twin(&mut address, "discount_amount", t.discount_amount);
    twin(
        &mut address,
        "discount_tax_compensation_amount",
        t.discount_tax_compensation_amount,
    );
    twin(
        &mut address,
        "shipping_discount_tax_compensation_amount",
        t.shipping_discount_tax_compensation_amount,
    );
    twin(&mut address, "grand_total", t.grand_total);
    let applied: Map<String, Value> = t
        .applied_taxes
        .iter()
        .map(|a| {
            let rates: Vec<Value> = a.rates.iter().map(rate_json).collect();
            (
                a.tax_rate_key.clone(),
                json!({"percent": jnum(a.percent), "amount": jnum(a.amount), "base_amount": jnum(a.amount), "rates": rates}),
            )
        })
        .collect();
    address.insert("applied_taxes".into(), Value::Object(applied));
    let mut items = Map::new();
    for it in &t.items {
        let mut m = Map::new();
        twin(&mut m, "row_total", it.row_total);
        twin(&mut m, "price", it.price);
        twin(&mut m, "price_incl_tax", it.price_incl_tax);
        twin(&mut m, "row_total_incl_tax", it.row_total_incl_tax);
        twin(&mut m, "tax_amount", it.tax_amount);
        twin(&mut m, "discount_amount", it.discount_amount);
        twin(
            &mut m,
            "discount_tax_compensation_amount",
            it.discount_tax_compensation_amount,
        );
        m.insert("tax_percent".into(), jnum(it.tax_percent));
        m.insert("discount_percent".into(), jnum(it.discount_percent));
        if let Some(c) = it.custom_price {
            m.insert("custom_price".into(), jnum(c));
        }
        if let Some(c) = it.original_custom_price {
            m.insert("original_custom_price".into(), jnum(c));
        }
        // CommonTaxCollector::convertAppliedTaxes, as stored on the quote item.
        let applied: Vec<Value> = it
            .applied_taxes
            .iter()
            .map(|a| {
                let rates: Vec<Value> = a.rates.iter().map(rate_json).collect();
                json!({"amount": jnum(a.amount), "base_amount": jnum(a.amount), "percent": jnum(a.percent),
                    "id": a.tax_rate_key, "rates": rates, "item_id": null, "item_type": "product", "associated_item_id": null})
            })
            .collect();
        m.insert("applied_taxes".into(), Value::Array(applied));
        items.insert(it.sku.clone(), Value::Object(m));
    }
    json!({"address": address, "items": items})
}

fn rate_json(r: &AppliedRate) -> Value {
    json!({"code": r.code, "title": r.title, "percent": jnum(r.percent)})
}
