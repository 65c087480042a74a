//! `Tax\Model\TaxCalculation::calculateTax()`: one call, one calculator instance.
//!
//! Items are processed in the order the top-level items were given; a parent's children are
//! processed (in their order) at the parent's position, with quantity = parent qty × child qty.
//! The parent row is the sum of its children; aggregates count the children only.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::TaxError;
use super::calculator::{
    Algorithm, Calculator, CalculatorConfig, ItemRates, LineInput, LineResult, PreparedGroup,
    TaxRelease,
};
use super::rates::{AppliedRate, RateRequest, TaxAddress, TaxClass, TaxRateTable};
use crate::php::{php_float_key, round2};

/// `tax/calculation/based_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaxBasedOn {
    #[default]
    Shipping,
    Billing,
    Origin,
}

/// The store's tax configuration, as far as the calculation service reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaxSettings {
    pub algorithm: Algorithm,
    pub apply_after_discount: bool,
    pub cross_border_trade: bool,
    pub release: TaxRelease,
    pub based_on: TaxBasedOn,
    /// `shipping/origin/*`: the address of the store (origin) rate.
    pub store_origin: TaxAddress,
    /// The default customer group's tax class, used for the store rate.
    pub store_customer_class: Option<TaxClass>,
    /// `tax/defaults/*`: the fallback address.
    pub default_address: TaxAddress,
}

impl Default for TaxSettings {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::TotalBase,
            apply_after_discount: true,
            cross_border_trade: false,
            release: TaxRelease::Magento246,
            based_on: TaxBasedOn::Shipping,
            store_origin: TaxAddress {
                country: Some("US".into()),
                region_id: 12,
                postcode: Some("90034".into()),
            },
            store_customer_class: Some(TaxClass::parse("3").unwrap_or_else(|_| unreachable!())),
            default_address: TaxAddress {
                country: Some("US".into()),
                region_id: 0,
                postcode: None,
            },
        }
    }
}

impl TaxSettings {
    pub fn calculator_config(&self) -> CalculatorConfig {
        CalculatorConfig {
            algorithm: self.algorithm,
            apply_after_discount: self.apply_after_discount,
            cross_border_trade: self.cross_border_trade,
            release: self.release,
        }
    }
}

/// A `QuoteDetailsItem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteDetailsItem {
    pub code: String,
    #[serde(rename = "type", default = "product_type")]
    pub item_type: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    #[serde(default)]
    pub discount_amount: Decimal,
    #[serde(default)]
    pub tax_included: bool,
    #[serde(default)]
    pub tax_class: Option<TaxClass>,
    #[serde(default)]
    pub parent_code: Option<String>,
    #[serde(default)]
    pub associated_item_code: Option<String>,
    #[serde(default)]
    pub price_for_tax_calculation: Option<Decimal>,
}

fn product_type() -> String {
    "product".to_owned()
}

/// A `QuoteDetails` request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuoteDetails {
    pub items: Vec<QuoteDetailsItem>,
    #[serde(default)]
    pub shipping_address: Option<TaxAddress>,
    #[serde(default)]
    pub billing_address: Option<TaxAddress>,
    #[serde(default)]
    pub customer_tax_class: Option<TaxClass>,
}

/// An applied tax (rate group) with its amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedTax {
    pub tax_rate_key: String,
    pub percent: Decimal,
    pub amount: Decimal,
    pub rates: Vec<AppliedRate>,
}

/// `TaxDetailsItem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemTaxDetails {
    pub code: String,
    #[serde(rename = "type")]
    pub item_type: String,
    pub row_tax: Decimal,
    pub price: Decimal,
    pub price_incl_tax: Decimal,
    pub row_total: Decimal,
    pub row_total_incl_tax: Decimal,
    pub discount_tax_compensation_amount: Decimal,
    pub tax_percent: Decimal,
    pub applied_taxes: Vec<AppliedTax>,
    pub associated_item_code: Option<String>,
    /// A parent row (sum of its children): only the price and row fields are meaningful.
    pub is_parent: bool,
}

/// `TaxDetails`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaxDetails {
    pub subtotal: Decimal,
    pub tax_amount: Decimal,
    pub discount_tax_compensation_amount: Decimal,
    pub applied_taxes: Vec<AppliedTax>,
    pub items: Vec<ItemTaxDetails>,
}

impl TaxDetails {
    pub fn item(&self, code: &str) -> Option<&ItemTaxDetails> {
        self.items.iter().find(|i| i.code == code)
    }
}

/// A store's tax engine: the rate table, the settings, and caches of resolved rates and
/// interned rounding-chain keys. `calculate_tax` is `TaxCalculation::calculateTax`.
#[derive(Debug, Clone)]
pub struct TaxEngine {
    table: TaxRateTable,
    settings: TaxSettings,
    keys: FxHashMap<String, u32>,
    resolved: FxHashMap<(RateRequest, RateRequest), usize>,
    prepared: Vec<ItemRates>,
    /// The customer context of the last call and its product class → rates index map, so a
    /// quote's items resolve without rebuilding rate requests.
    context: Option<(TaxAddress, Option<TaxClass>)>,
    by_class: FxHashMap<Option<TaxClass>, usize>,
}

impl TaxEngine {
    pub fn new(table: TaxRateTable, settings: TaxSettings) -> Self {
        Self {
            table,
            settings,
            keys: FxHashMap::default(),
            resolved: FxHashMap::default(),
            prepared: Vec::new(),
            context: None,
            by_class: FxHashMap::default(),
        }
    }

    /// The rate table (fixed for the engine's life: resolved rates are cached).
    pub fn table(&self) -> &TaxRateTable {
        &self.table
    }

    /// The store settings (fixed for the engine's life).
    pub fn settings(&self) -> &TaxSettings {
        &self.settings
    }

    fn intern(&mut self, key: &str) -> u32 {
        if let Some(&k) = self.keys.get(key) {
            return k;
        }
        let k = self.keys.len() as u32;
        self.keys.insert(key.to_owned(), k);
        k
    }

    /// The customer address the rate request uses (`Calculation::getRateRequest`, guest path).
    pub fn customer_address(&self, details: &QuoteDetails) -> TaxAddress {
        let has_country = |a: &Option<TaxAddress>| {
            a.as_ref()
                .is_some_and(|a| a.country.as_deref().is_some_and(|c| !c.is_empty()))
        };
        match self.settings.based_on {
            TaxBasedOn::Origin => self.settings.store_origin.clone(),
            TaxBasedOn::Shipping if has_country(&details.shipping_address) => {
                details.shipping_address.clone().unwrap_or_default()
            }
            TaxBasedOn::Shipping if has_country(&details.billing_address) => {
                details.billing_address.clone().unwrap_or_default()
            }
            TaxBasedOn::Billing if has_country(&details.billing_address) => {
                details.billing_address.clone().unwrap_or_default()
            }
            TaxBasedOn::Billing if has_country(&details.shipping_address) => {
                details.shipping_address.clone().unwrap_or_default()
            }
            _ => self.settings.default_address.clone(),
        }
    }

    /// Resolve (and cache) the calculator's view of the rates for one product class.
    pub fn item_rates(
        &mut self,
        address: &TaxAddress,
        customer: Option<&TaxClass>,
        product: Option<&TaxClass>,
    ) -> usize {
        let customer_req = RateRequest {
            address: address.clone(),
            customer_class: customer.cloned(),
            product_class: product.cloned(),
        };
        let store_req = RateRequest {
            address: self.settings.store_origin.clone(),
            customer_class: self.settings.store_customer_class.clone(),
            product_class: product.cloned(),
        };
        let cache_key = (customer_req, store_req);
        if let Some(&idx) = self.resolved.get(&cache_key) {
            return idx;
        }
        let customer = self.table.resolve(&cache_key.0);
        let store = self.table.resolve(&cache_key.1);
        let percent_key = self.intern(&format!("rate:{}", php_float_key(customer.percent)));
        let groups = customer
            .groups
            .into_iter()
            .map(|g| {
                let key = self.intern(&format!("group:{}", g.id));
                PreparedGroup::new(g, key)
            })
            .collect();
        let rates = ItemRates::new(customer.percent, percent_key, store.percent, groups);
        let idx = self.prepared.len();
        self.prepared.push(rates);
        self.resolved.insert(cache_key, idx);
        idx
    }

    pub fn prepared(&self, idx: usize) -> &ItemRates {
        &self.prepared[idx]
    }

    /// `TaxCalculation::calculateTax($quoteDetails, $storeId, $round)`.
    pub fn calculate_tax(
        &mut self,
        details: &QuoteDetails,
        round: bool,
    ) -> Result<TaxDetails, TaxError> {
        let mut result = TaxDetails::default();
        if details.items.is_empty() {
            return Ok(result);
        }
        let address = self.customer_address(details);
        let customer = details.customer_tax_class.clone();
        let same_context = self
            .context
            .as_ref()
            .is_some_and(|(a, c)| *a == address && *c == customer);
        if !same_context {
            self.context = Some((address.clone(), customer.clone()));
            self.by_class.clear();
        }
        // computeRelationships
        let mut top: Vec<usize> = Vec::new();
        let mut children: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
        for (i, item) in details.items.iter().enumerate() {
            validate_item(i, item)?;
            match item.parent_code.as_deref() {
                None => {
                    if let Some(pos) = top.iter().position(|&t| details.items[t].code == item.code)
                    {
                        top[pos] = i;
                    } else {
                        top.push(i);
                    }
                }
                Some(parent) => children.entry(parent).or_default().push(i),
            }
        }
        let mut calc = Calculator::new(self.settings.calculator_config());
        let mut codes: FxHashMap<&str, u32> = FxHashMap::default();
        let mut line_out = LineResult::default();
        for &t in &top {
            let parent = &details.items[t];
            if let Some(kids) = children.get(parent.code.as_str()) {
                let (mut row_total, mut row_incl, mut row_tax) =
                    (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
                for &c in kids {
                    let child = &details.items[c];
                    let qty = parent.quantity * child.quantity;
                    let item = self.process(
                        &mut calc,
                        &mut codes,
                        &address,
                        customer.as_ref(),
                        child,
                        qty,
                        round,
                        &mut line_out,
                    );
                    row_total += item.row_total;
                    row_incl += item.row_total_incl_tax;
                    row_tax += item.row_tax;
                    aggregate(&mut result, &item);
                    result.items.push(item);
                }
                if parent.quantity.is_zero() {
                    return Err(TaxError::invalid(
                        format!("items[{t}].quantity"),
                        "a parent item needs a non-zero quantity",
                    ));
                }
                result.items.push(ItemTaxDetails {
                    code: parent.code.clone(),
                    item_type: parent.item_type.clone(),
                    row_tax,
                    price: round2(row_total / parent.quantity),
                    price_incl_tax: round2(row_incl / parent.quantity),
                    row_total,
                    row_total_incl_tax: row_incl,
                    discount_tax_compensation_amount: Decimal::ZERO,
                    tax_percent: Decimal::ZERO,
                    applied_taxes: Vec::new(),
                    associated_item_code: None,
                    is_parent: true,
                });
            } else {
                let qty = parent.quantity;
                let item = self.process(
                    &mut calc,
                    &mut codes,
                    &address,
                    customer.as_ref(),
                    parent,
                    qty,
                    round,
                    &mut line_out,
                );
                aggregate(&mut result, &item);
                result.items.push(item);
            }
        }
        Ok(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn process<'a>(
        &mut self,
        calc: &mut Calculator,
        codes: &mut FxHashMap<&'a str, u32>,
        address: &TaxAddress,
        customer: Option<&TaxClass>,
        item: &'a QuoteDetailsItem,
        quantity: Decimal,
        round: bool,
        out: &mut LineResult,
    ) -> ItemTaxDetails {
        let rates_idx = match self.by_class.get(&item.tax_class) {
            Some(&idx) => idx,
            None => {
                let idx = self.item_rates(address, customer, item.tax_class.as_ref());
                self.by_class.insert(item.tax_class.clone(), idx);
                idx
            }
        };
        let chain_code = item.associated_item_code.as_deref().unwrap_or(&item.code);
        let next = codes.len() as u32;
        let item_key = *codes.entry(chain_code).or_insert(next);
        let line = LineInput {
            item_key,
            quantity,
            unit_price: item.unit_price,
            discount_amount: item.discount_amount,
            tax_included: item.tax_included,
            price_for_tax_calculation: item.price_for_tax_calculation,
        };
        let rates = &self.prepared[rates_idx];
        calc.calculate_into(&line, rates, round, out);
        let applied_taxes = out
            .applied
            .iter()
            .map(|&(g, amount)| {
                let group = &rates.groups[g].group;
                AppliedTax {
                    tax_rate_key: group.id.clone(),
                    percent: group.percent,
                    amount,
                    rates: group.rates.clone(),
                }
            })
            .collect();
        ItemTaxDetails {
            code: item.code.clone(),
            item_type: item.item_type.clone(),
            row_tax: out.row_tax,
            price: out.price,
            price_incl_tax: out.price_incl_tax,
            row_total: out.row_total,
            row_total_incl_tax: out.row_total_incl_tax,
            discount_tax_compensation_amount: out.discount_tax_compensation,
            tax_percent: out.tax_percent,
            applied_taxes,
            associated_item_code: item.associated_item_code.clone(),
            is_parent: false,
        }
    }
}

fn validate_item(index: usize, item: &QuoteDetailsItem) -> Result<(), TaxError> {
    if item.code.trim().is_empty() {
        return Err(TaxError::invalid(
            format!("items[{index}].code"),
            "an item needs a code",
        ));
    }
    if item.quantity <= Decimal::ZERO {
        return Err(TaxError::invalid(
            format!("items[{index}].quantity"),
            format!(
                "quantity of item '{}' must be greater than 0, got {}",
                item.code, item.quantity
            ),
        ));
    }
    Ok(())
}

/// `TaxCalculation::aggregateItemData`.
fn aggregate(result: &mut TaxDetails, item: &ItemTaxDetails) {
    result.subtotal += item.row_total;
    result.tax_amount += item.row_tax;
    result.discount_tax_compensation_amount += item.discount_tax_compensation_amount;
    for applied in &item.applied_taxes {
        if let Some(existing) = result
            .applied_taxes
            .iter_mut()
            .find(|a| a.tax_rate_key == applied.tax_rate_key)
        {
            existing.amount += applied.amount;
        } else {
            result.applied_taxes.push(applied.clone());
        }
    }
}
