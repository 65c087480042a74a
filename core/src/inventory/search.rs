//! `searchCriteria` (spec §2.3): filter groups (OR inside a group, AND across groups), sort
//! orders, paging, and the echo of the criteria in search results.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::num;

/// One filter (`condition_type` defaults to `eq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The column.
    pub field: String,
    /// The value as sent (comma-separated for `in` / `nin`).
    pub value: String,
    /// `eq`, `neq`, `gt`, `gteq`, `lt`, `lteq`, `moreq`, `from`, `to`, `like`, `nlike`, `in`,
    /// `nin`, `finset`, `nfinset`, `null`, `notnull`.
    #[serde(default = "eq")]
    pub condition_type: String,
}

fn eq() -> String {
    "eq".to_owned()
}

/// A group of filters (OR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FilterGroup {
    /// The filters.
    pub filters: Vec<Filter>,
}

/// A sort order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortOrder {
    /// The column.
    pub field: String,
    /// `ASC` or `DESC`.
    pub direction: String,
}

/// `SearchCriteriaInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SearchCriteria {
    /// Filter groups (AND).
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    /// Sort orders.
    #[serde(default)]
    pub sort_orders: Vec<SortOrder>,
    /// Page size (all rows when absent).
    #[serde(default)]
    pub page_size: Option<usize>,
    /// Current page, 1-based.
    #[serde(default)]
    pub current_page: Option<usize>,
}

/// Search results: the page of rows, the total count of matches and the echoed criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// `items`
    pub items: Vec<Value>,
    /// `search_criteria`
    pub search_criteria: Value,
    /// `total_count` (matches, not the page size)
    pub total_count: usize,
}

impl SearchCriteria {
    /// One `eq` filter per (field, value), each in its own group.
    pub fn equals(pairs: &[(&str, String)]) -> Self {
        Self {
            filter_groups: pairs
                .iter()
                .map(|(f, v)| FilterGroup {
                    filters: vec![Filter {
                        field: (*f).to_owned(),
                        value: v.clone(),
                        condition_type: eq(),
                    }],
                })
                .collect(),
            ..Self::default()
        }
    }

    /// The `search_criteria` echo: only the keys that were set.
    pub fn echo(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "filter_groups".to_owned(),
            Value::Array(
                self.filter_groups
                    .iter()
                    .map(|g| {
                        serde_json::json!({"filters": g.filters.iter().map(|f| serde_json::json!({
                            "field": f.field, "value": f.value, "condition_type": f.condition_type
                        })).collect::<Vec<_>>()})
                    })
                    .collect(),
            ),
        );
        if !self.sort_orders.is_empty() {
            m.insert(
                "sort_orders".to_owned(),
                Value::Array(
                    self.sort_orders
                        .iter()
                        .map(|s| serde_json::json!({"field": s.field, "direction": s.direction}))
                        .collect(),
                ),
            );
        }
        if let Some(p) = self.page_size {
            m.insert("page_size".to_owned(), Value::from(p));
        }
        if let Some(p) = self.current_page {
            m.insert("current_page".to_owned(), Value::from(p));
        }
        Value::Object(m)
    }

    /// Filters, sorts and pages JSON rows. A page beyond the last one returns the last page,
    /// as Magento's collections clamp the page number.
    pub fn apply(&self, rows: Vec<Value>) -> SearchResults {
        let mut matched: Vec<Value> = rows
            .into_iter()
            .filter(|row| {
                self.filter_groups
                    .iter()
                    .all(|g| g.filters.is_empty() || g.filters.iter().any(|f| matches(row, f)))
            })
            .collect();
        let total_count = matched.len();
        for order in self.sort_orders.iter().rev() {
            let desc = order.direction.eq_ignore_ascii_case("DESC");
            matched.sort_by(|a, b| {
                let o = compare(a.get(&order.field), b.get(&order.field));
                if desc { o.reverse() } else { o }
            });
        }
        let items = match self.page_size {
            Some(size) if size > 0 => {
                let last_page = total_count.div_ceil(size).max(1);
                let page = self.current_page.unwrap_or(1).clamp(1, last_page);
                matched
                    .into_iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .collect()
            }
            _ => matched,
        };
        SearchResults {
            items,
            search_criteria: self.echo(),
            total_count,
        }
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (a, b) = (
        a.cloned().unwrap_or(Value::Null),
        b.cloned().unwrap_or(Value::Null),
    );
    match (num::decimal_from_json(&a), num::decimal_from_json(&b)) {
        (Some(x), Some(y)) if !matches!(a, Value::String(_)) || !matches!(b, Value::String(_)) => {
            x.cmp(&y)
        }
        _ => as_text(&a).to_lowercase().cmp(&as_text(&b).to_lowercase()),
    }
}

fn value_eq(row_value: &Value, wanted: &str) -> bool {
    match row_value {
        Value::Number(_) | Value::Bool(_) => {
            match (
                num::decimal_from_json(row_value),
                num::parse_decimal(wanted),
            ) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
        }
        other => as_text(other).to_lowercase() == wanted.to_lowercase(),
    }
}

fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&t, &p)
}

fn matches(row: &Value, f: &Filter) -> bool {
    let v = row.get(&f.field).cloned().unwrap_or(Value::Null);
    let ord = || compare(Some(&v), Some(&Value::String(f.value.clone())));
    let numeric_ord = || match (num::decimal_from_json(&v), num::parse_decimal(&f.value)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => None,
    };
    let cmp = || numeric_ord().unwrap_or_else(ord);
    let list = || f.value.split(',').map(str::trim).collect::<Vec<_>>();
    match f.condition_type.as_str() {
        "eq" => !v.is_null() && value_eq(&v, &f.value),
        "neq" => !v.is_null() && !value_eq(&v, &f.value),
        "gt" => !v.is_null() && cmp() == Ordering::Greater,
        "gteq" | "moreq" | "from" => !v.is_null() && cmp() != Ordering::Less,
        "lt" => !v.is_null() && cmp() == Ordering::Less,
        "lteq" | "to" => !v.is_null() && cmp() != Ordering::Greater,
        "like" => !v.is_null() && like(&as_text(&v), &f.value),
        "nlike" => !v.is_null() && !like(&as_text(&v), &f.value),
        "in" => !v.is_null() && list().iter().any(|x| value_eq(&v, x)),
        "nin" => !v.is_null() && !list().iter().any(|x| value_eq(&v, x)),
        "finset" => as_text(&v).split(',').any(|x| x == f.value),
        "nfinset" => !as_text(&v).split(',').any(|x| x == f.value),
        "null" => v.is_null(),
        "notnull" => !v.is_null(),
        _ => false,
    }
}

use super::ids::StockId;
use super::model::Inventory;

impl Inventory {
    /// `SourceItemRepositoryInterface::getList`.
    pub fn search_source_items(&self, criteria: &SearchCriteria) -> SearchResults {
        let rows = self
            .source_items()
            .into_iter()
            .map(|i| {
                serde_json::json!({
                    "sku": i.sku.as_str(),
                    "source_code": i.source_code.as_str(),
                    "quantity": num::decimal_to_json(i.quantity),
                    "status": i.status.as_int(),
                })
            })
            .collect();
        criteria.apply(rows)
    }

    /// `GetStockSourceLinksInterface::execute`.
    pub fn search_stock_source_links(&self, criteria: &SearchCriteria) -> SearchResults {
        let rows = self
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "stock_id": i64::from(l.stock_id),
                    "source_code": l.source_code.as_str(),
                    "priority": l.priority,
                })
            })
            .collect();
        criteria.apply(rows)
    }

    /// `SourceRepositoryInterface::getList`.
    pub fn search_sources(&self, criteria: &SearchCriteria) -> SearchResults {
        let rows = self
            .sources
            .values()
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
            .collect();
        criteria.apply(rows)
    }

    /// `StockRepositoryInterface::getList` (with sales channels).
    pub fn search_stocks(&self, criteria: &SearchCriteria) -> SearchResults {
        let rows = self
            .list_stocks()
            .into_iter()
            .map(|s| stock_json(s.stock_id, &s.name, &s.sales_channels))
            .collect();
        criteria.apply(rows)
    }
}

/// A stock as the REST API renders it.
pub fn stock_json(stock_id: StockId, name: &str, channels: &[super::model::SalesChannel]) -> Value {
    serde_json::json!({
        "stock_id": i64::from(stock_id),
        "name": name,
        "extension_attributes": {"sales_channels": channels},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_and_across_or_within_and_pages_clamp() {
        let rows = vec![
            json!({"sku": "A", "quantity": 5.5}),
            json!({"sku": "A", "quantity": 3}),
            json!({"sku": "B", "quantity": 10}),
        ];
        let mut c = SearchCriteria::equals(&[("sku", "a".to_owned())]);
        c.sort_orders.push(SortOrder {
            field: "quantity".to_owned(),
            direction: "DESC".to_owned(),
        });
        c.page_size = Some(1);
        c.current_page = Some(2);
        let r = c.apply(rows.clone());
        assert_eq!(r.total_count, 2);
        assert_eq!(r.items, vec![json!({"sku": "A", "quantity": 3})]);
        c.current_page = Some(9);
        assert_eq!(
            c.apply(rows).items,
            vec![json!({"sku": "A", "quantity": 3})]
        );
        assert!(like("SKU-12", "sku-%"));
    }
}
