//! Tax-rate resolution, as `Tax\Model\ResourceModel\Calculation` does it.
//!
//! A rate request (country, region, postcode, customer class, product class) selects candidate
//! (rule, rate) rows, orders them `priority ASC, rule id ASC, country DESC, region DESC,
//! postcode DESC, value DESC`, keeps the first row per rate id, then walks the list:
//! within one rule only the first (most specific) rate counts; consecutive rules of the same
//! priority form a group whose percents add; at a priority boundary the group is closed, plain
//! (`calculate_subtotal = 1` on the group's last rule) or compounded on everything before it
//! (`(100 + total) × sum / 100`).

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::TaxError;

/// A tax class (customer or product) as Magento's tax rules reference it: by name or by id.
/// Both spellings are kept as text; `3` and `"3"` are the same class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "String")]
pub struct TaxClass(String);

impl TaxClass {
    /// Parse a class key. Empty keys are rejected: an item without a product class has
    /// `Option::None`, not an empty class.
    pub fn parse(text: &str) -> Result<Self, TaxError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TaxError::invalid(
                "tax_class",
                "a tax class key must not be empty",
            ));
        }
        Ok(Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaxClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<TaxClass> for String {
    fn from(c: TaxClass) -> Self {
        c.0
    }
}

impl TryFrom<serde_json::Value> for TaxClass {
    type Error = TaxError;
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        match v {
            serde_json::Value::String(s) => Self::parse(&s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            other => Err(TaxError::invalid(
                "tax_class",
                format!("expected a name or an id, got {other}"),
            )),
        }
    }
}

/// A row of `tax_calculation_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaxRate {
    pub code: String,
    pub title: String,
    pub country: String,
    /// 0 means any region (`*`).
    pub region_id: u32,
    /// `None` for NULL; `*` and empty match every postcode.
    pub postcode: Option<String>,
    /// A numeric zip range (`zip_is_range`), inclusive.
    pub zip_range: Option<(u64, u64)>,
    /// Percent, as MySQL `DECIMAL(12,4)`.
    pub rate: Decimal,
}

/// A row of `tax_calculation_rule` with its class and rate links.
#[derive(Debug, Clone, PartialEq)]
pub struct TaxRule {
    pub code: String,
    pub priority: i64,
    pub position: i64,
    pub calculate_subtotal: bool,
    pub customer_classes: Vec<TaxClass>,
    pub product_classes: Vec<TaxClass>,
    /// Indexes into [`TaxRateTable::rates`].
    pub rates: Vec<usize>,
}

/// Every rate and rule of a store. Rate ids and rule ids are their positions (+1), as
/// Magento's autoincrement ids follow creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaxRateTable {
    pub rates: Vec<TaxRate>,
    pub rules: Vec<TaxRule>,
}

/// An address as the rate lookup sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaxAddress {
    pub country: Option<String>,
    #[serde(default)]
    pub region_id: u32,
    pub postcode: Option<String>,
}

/// `Calculation::getRateRequest()` output with the product class set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateRequest {
    pub address: TaxAddress,
    pub customer_class: Option<TaxClass>,
    pub product_class: Option<TaxClass>,
}

/// One rate inside an applied-rate group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedRate {
    pub code: String,
    pub title: String,
    pub percent: Decimal,
}

/// One priority group (`getCalculationProcess` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateGroup {
    /// Concatenated rate codes, e.g. `US - 42 - 8.25US - 42 - 5 - 55555`.
    pub id: String,
    pub percent: Decimal,
    pub rates: Vec<AppliedRate>,
}

/// The resolved rate for one request: total percent and its groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRate {
    pub percent: Decimal,
    pub groups: Vec<RateGroup>,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    rule: usize,
    rate: usize,
}

impl TaxRateTable {
    /// `Calculation::getRate()` and `getAppliedRates()` in one pass. A request without a
    /// country, a customer class or a product class resolves to 0 % with no groups.
    pub fn resolve(&self, req: &RateRequest) -> ResolvedRate {
        let (Some(country), Some(customer), Some(product)) = (
            req.address.country.as_deref(),
            req.customer_class.as_ref(),
            req.product_class.as_ref(),
        ) else {
            return ResolvedRate::default();
        };
        if country.is_empty() {
            return ResolvedRate::default();
        }
        let filter = PostcodeFilter::new(country, req.address.postcode.as_deref());
        let mut rows: Vec<Candidate> = Vec::new();
        for (rule_idx, rule) in self.rules.iter().enumerate() {
            if !rule.customer_classes.contains(customer) || !rule.product_classes.contains(product)
            {
                continue;
            }
            for &rate_idx in &rule.rates {
                let Some(rate) = self.rates.get(rate_idx) else {
                    continue;
                };
                if !rate.country.eq_ignore_ascii_case(country) {
                    continue;
                }
                if rate.region_id != 0 && rate.region_id != req.address.region_id {
                    continue;
                }
                if !filter.matches(rate) {
                    continue;
                }
                rows.push(Candidate {
                    rule: rule_idx,
                    rate: rate_idx,
                });
            }
        }
        rows.sort_by(|a, b| self.order(a, b));
        let mut seen = Vec::with_capacity(rows.len());
        rows.retain(|c| {
            if seen.contains(&c.rate) {
                false
            } else {
                seen.push(c.rate);
                true
            }
        });
        self.combine(&rows)
    }

    fn order(&self, a: &Candidate, b: &Candidate) -> Ordering {
        let (ra, rb) = (&self.rules[a.rule], &self.rules[b.rule]);
        let (xa, xb) = (&self.rates[a.rate], &self.rates[b.rate]);
        ra.priority
            .cmp(&rb.priority)
            .then(a.rule.cmp(&b.rule))
            .then_with(|| mysql_str_cmp(Some(&xb.country), Some(&xa.country)))
            .then(xb.region_id.cmp(&xa.region_id))
            .then_with(|| mysql_str_cmp(xb.postcode.as_deref(), xa.postcode.as_deref()))
            .then(xb.rate.cmp(&xa.rate))
    }

    /// `_calculateRate` + `getCalculationProcess` over the filtered, ordered rows.
    fn combine(&self, rows: &[Candidate]) -> ResolvedRate {
        let mut total = Decimal::ZERO;
        let mut groups = Vec::new();
        let mut current = Decimal::ZERO;
        let mut ids = String::new();
        let mut members = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let first = rows[i];
            let rule = &self.rules[first.rule];
            let rate = &self.rates[first.rate];
            members.push(AppliedRate {
                code: rate.code.clone(),
                title: rate.title.clone(),
                percent: rate.rate,
            });
            ids.push_str(&rate.code);
            // Only the first (most specific) rate of a rule counts.
            while i + 1 < rows.len() && rows[i + 1].rule == first.rule {
                i += 1;
            }
            current += rate.rate;
            let boundary =
                i + 1 >= rows.len() || self.rules[rows[i + 1].rule].priority != rule.priority;
            if boundary {
                let last_rule = &self.rules[rows[i].rule];
                let percent = if last_rule.calculate_subtotal {
                    current
                } else {
                    (Decimal::ONE_HUNDRED + total) * current / Decimal::ONE_HUNDRED
                };
                total += percent;
                groups.push(RateGroup {
                    id: std::mem::take(&mut ids),
                    percent,
                    rates: std::mem::take(&mut members),
                });
                current = Decimal::ZERO;
            }
            i += 1;
        }
        ResolvedRate {
            percent: total,
            groups,
        }
    }
}

/// MySQL string ordering for the rate columns: NULL sorts lowest, comparison is
/// case-insensitive (the `utf8_general_ci` family).
fn mysql_str_cmp(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x
            .bytes()
            .map(|c| c.to_ascii_uppercase())
            .cmp(y.bytes().map(|c| c.to_ascii_uppercase())),
    }
}

/// PHP `is_numeric` for the strings a postcode can be.
fn php_is_numeric(s: &str) -> bool {
    let t = s
        .trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .trim_end();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    if t.is_empty() {
        return false;
    }
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(p) => (&t[..p], Some(&t[p + 1..])),
        None => (t, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// The postcode part of `_getRates`: search templates, US ZIP+4 / PT reduction, numeric ranges.
struct PostcodeFilter {
    any: bool,
    templates: Vec<String>,
    numeric: Option<u64>,
    /// (zip from, zip to, the request postcode as typed) for a non-ZIP+4 `A-B` request.
    range: Option<(String, String, String)>,
}

/// `tax/calculation/postcode_substring_length`-style limit Magento applies (default 10).
const POSTCODE_SUBSTRING_LENGTH: usize = 10;

impl PostcodeFilter {
    fn new(country: &str, postcode: Option<&str>) -> Self {
        let mut numeric = postcode.is_some_and(php_is_numeric);
        let mut range = None;
        let mut original = None;
        let mut code = postcode.map(str::to_owned);
        if let Some(pc) = postcode
            && let Some(dash) = pc.rfind('-')
            && dash > 0
            && dash + 1 < pc.len()
        {
            // preg_match('/^(.+)-(.+)$/') is greedy: split at the last dash.
            let (left, right) = (&pc[..dash], &pc[dash + 1..]);
            let zip4 =
                country.eq_ignore_ascii_case("US") && php_is_numeric(right) && right.len() == 4;
            let pt =
                country.eq_ignore_ascii_case("PT") && php_is_numeric(right) && right.len() == 3;
            if zip4 || pt {
                numeric = true;
                original = Some(pc.to_owned());
                code = Some(left.to_owned());
            } else {
                range = Some((left.to_owned(), right.to_owned(), pc.to_owned()));
            }
        }
        let any = code.as_deref() == Some("*") && range.is_none();
        let templates = if any || range.is_some() {
            Vec::new()
        } else {
            search_templates(code.as_deref(), original.as_deref())
        };
        let numeric_value = if numeric {
            code.as_deref().and_then(|c| c.trim().parse::<u64>().ok())
        } else {
            None
        };
        Self {
            any,
            templates,
            numeric: numeric_value,
            range,
        }
    }

    fn matches(&self, rate: &TaxRate) -> bool {
        if let Some((from, to)) = rate.zip_range {
            // Range rates only come in through the UNION branch.
            if let Some(n) = self.numeric {
                return from <= n && n <= to;
            }
            if let Some((lo, hi, _)) = &self.range {
                let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u64>(), hi.trim().parse::<u64>()) else {
                    return false;
                };
                return from >= lo && to <= hi;
            }
            return false;
        }
        if self.any {
            return true;
        }
        match rate.postcode.as_deref() {
            None | Some("*") | Some("") => true,
            Some(p) => {
                if let Some((_, _, literal)) = &self.range {
                    // A non-ZIP+4 "A-B" request matches the literal postcode only.
                    return literal.eq_ignore_ascii_case(p);
                }
                self.templates.iter().any(|t| t.eq_ignore_ascii_case(p))
            }
        }
    }
}

/// `_createSearchPostCodeTemplates`.
fn search_templates(postcode: Option<&str>, exact: Option<&str>) -> Vec<String> {
    let cut = |s: &str| {
        s.chars()
            .take(POSTCODE_SUBSTRING_LENGTH)
            .collect::<String>()
    };
    let base = postcode.map(cut).unwrap_or_default();
    let mut out = vec![base.clone(), format!("{base}*")];
    let stem = match exact {
        Some(e) if !e.is_empty() => {
            let e = cut(e);
            out.push(e.clone());
            e
        }
        _ => base,
    };
    let chars: Vec<char> = stem.chars().collect();
    for i in 1..chars.len() {
        let prefix: String = chars[..chars.len() - i].iter().collect();
        out.push(format!("{prefix}*"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn class(s: &str) -> TaxClass {
        TaxClass::parse(s).unwrap()
    }

    fn rate(code: &str, region: u32, postcode: &str, pct: Decimal) -> TaxRate {
        TaxRate {
            code: code.into(),
            title: code.into(),
            country: "US".into(),
            region_id: region,
            postcode: Some(postcode.into()),
            zip_range: None,
            rate: pct,
        }
    }

    fn rule(code: &str, priority: i64, subtotal: bool, rates: Vec<usize>) -> TaxRule {
        TaxRule {
            code: code.into(),
            priority,
            position: 0,
            calculate_subtotal: subtotal,
            customer_classes: vec![class("C")],
            product_classes: vec![class("P")],
            rates,
        }
    }

    fn request(postcode: &str) -> RateRequest {
        RateRequest {
            address: TaxAddress {
                country: Some("US".into()),
                region_id: 42,
                postcode: Some(postcode.into()),
            },
            customer_class: Some(class("C")),
            product_class: Some(class("P")),
        }
    }

    #[test]
    fn later_priorities_compound_and_same_priority_rules_add() {
        let table = TaxRateTable {
            rates: vec![
                rate("US - 42 - 8.25", 42, "*", dec!(8.25)),
                rate("US - 42 - 5 - 55555", 42, "55555", dec!(5)),
                rate("US - 42 - 11 - 55555", 42, "55555", dec!(11)),
            ],
            rules: vec![
                rule("a", 0, false, vec![0]),
                rule("b", 0, false, vec![1]),
                rule("c", 1, false, vec![2]),
            ],
        };
        let r = table.resolve(&request("55555"));
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].percent, dec!(13.25));
        assert_eq!(r.groups[0].id, "US - 42 - 8.25US - 42 - 5 - 55555");
        assert_eq!(r.groups[1].percent, dec!(12.4575));
        assert_eq!(r.percent, dec!(25.7075));
    }

    #[test]
    fn calculate_subtotal_only_sums_plainly() {
        let table = TaxRateTable {
            rates: vec![rate("a", 42, "*", dec!(7.5)), rate("b", 42, "*", dec!(5.5))],
            rules: vec![rule("a", 1, false, vec![0]), rule("b", 2, true, vec![1])],
        };
        assert_eq!(table.resolve(&request("1")).percent, dec!(13));
        let table = TaxRateTable {
            rules: vec![rule("a", 1, false, vec![0]), rule("b", 2, false, vec![1])],
            ..table
        };
        assert_eq!(table.resolve(&request("1")).percent, dec!(13.4125));
    }

    #[test]
    fn most_specific_rate_of_a_rule_wins() {
        let table = TaxRateTable {
            rates: vec![
                rate("star", 42, "*", dec!(10)),
                rate("exact", 42, "55555", dec!(5)),
                rate("prefix", 42, "55*", dec!(7)),
            ],
            rules: vec![rule("a", 0, false, vec![0, 1, 2])],
        };
        let r = table.resolve(&request("55555-1234"));
        assert_eq!(r.percent, dec!(5));
        assert_eq!(r.groups[0].id, "exact");
        let r = table.resolve(&request("55123"));
        assert_eq!(r.groups[0].id, "prefix");
        let r = table.resolve(&request("99999"));
        assert_eq!(r.groups[0].id, "star");
    }

    #[test]
    fn missing_product_class_means_no_tax() {
        let table = TaxRateTable {
            rates: vec![rate("a", 42, "*", dec!(10))],
            rules: vec![rule("a", 0, false, vec![0])],
        };
        let mut req = request("1");
        req.product_class = None;
        assert_eq!(table.resolve(&req), ResolvedRate::default());
    }

    #[test]
    fn numeric_zip_ranges_match_inclusively() {
        let mut r = rate("range", 42, "90000-90100", dec!(9));
        r.zip_range = Some((90000, 90100));
        let table = TaxRateTable {
            rates: vec![r],
            rules: vec![rule("a", 0, false, vec![0])],
        };
        assert_eq!(table.resolve(&request("90100")).percent, dec!(9));
        assert_eq!(table.resolve(&request("90101")).percent, dec!(0));
    }
}
