//! `searchCriteria`: the builder and its query-string encoding (spec §2.3).
//!
//! A [`SearchCriteria`] is a list of filter groups that are AND-ed; the filters inside one
//! group are OR-ed; then sort orders, a page size and a 1-based current page. Encoded as
//! Magento's documentation writes it:
//!
//! ```text
//! searchCriteria[filter_groups][G][filters][F][field]=<column>
//! searchCriteria[filter_groups][G][filters][F][value]=<value>
//! searchCriteria[filter_groups][G][filters][F][condition_type]=<op>
//! searchCriteria[sortOrders][S][field]=<column>
//! searchCriteria[sortOrders][S][direction]=ASC|DESC
//! searchCriteria[pageSize]=<n>
//! searchCriteria[currentPage]=<n>
//! ```
//!
//! [`SearchCriteria::query_pairs`] gives the decoded `(name, value)` pairs (what OAuth signs);
//! [`encode_query`] percent-encodes them as RFC 3986 does (everything but `A–Z a–z 0–9 - . _ ~`,
//! so brackets become `%5B`/`%5D`, a space `%20`, a `like` wildcard `%25`), which PHP decodes
//! into the same nested array. A criteria with nothing in it still sends
//! `searchCriteria[currentPage]=1` on routes where the criteria are required, because PHP
//! would otherwise see no `searchCriteria` parameter at all (400 `"%fieldName" is required.`).

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986 unreserved characters are left as they are; everything else is encoded.
pub const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one component (RFC 3986; the same encoding OAuth 1.0a uses).
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, RFC3986).to_string()
}

/// Encodes `(name, value)` pairs as a query string (no leading `?`).
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A filter operator (`condition_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `eq`
    Eq,
    /// `neq`
    Neq,
    /// `gt`
    Gt,
    /// `gteq`
    Gteq,
    /// `lt`
    Lt,
    /// `lteq`
    Lteq,
    /// `moreq`
    Moreq,
    /// `in` (comma-separated list)
    In,
    /// `nin` (comma-separated list)
    Nin,
    /// `like` (SQL `%` wildcards)
    Like,
    /// `nlike`
    Nlike,
    /// `null` (the value is ignored)
    Null,
    /// `notnull` (the value is ignored)
    NotNull,
    /// `from` (range start, inclusive)
    From,
    /// `to` (range end, inclusive)
    To,
    /// `finset` (value in a comma-separated column)
    Finset,
    /// `nfinset`
    Nfinset,
}

impl Condition {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Neq => "neq",
            Self::Gt => "gt",
            Self::Gteq => "gteq",
            Self::Lt => "lt",
            Self::Lteq => "lteq",
            Self::Moreq => "moreq",
            Self::In => "in",
            Self::Nin => "nin",
            Self::Like => "like",
            Self::Nlike => "nlike",
            Self::Null => "null",
            Self::NotNull => "notnull",
            Self::From => "from",
            Self::To => "to",
            Self::Finset => "finset",
            Self::Nfinset => "nfinset",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One filter: `field <condition> value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The column.
    pub field: String,
    /// The value as Magento receives it (lists comma-joined).
    pub value: String,
    /// The operator.
    pub condition: Condition,
}

impl Filter {
    /// A filter.
    pub fn new(field: &str, condition: Condition, value: impl fmt::Display) -> Self {
        Self {
            field: field.to_owned(),
            value: value.to_string(),
            condition,
        }
    }

    /// `field = value`.
    pub fn eq(field: &str, value: impl fmt::Display) -> Self {
        Self::new(field, Condition::Eq, value)
    }

    /// `field IN (values)`.
    pub fn in_list<I, V>(field: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: fmt::Display,
    {
        Self::new(field, Condition::In, join(values))
    }

    /// `field NOT IN (values)`.
    pub fn not_in<I, V>(field: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: fmt::Display,
    {
        Self::new(field, Condition::Nin, join(values))
    }

    /// `field IS NULL` (sent with value `1`; Magento ignores it).
    pub fn is_null(field: &str) -> Self {
        Self::new(field, Condition::Null, 1)
    }

    /// `field IS NOT NULL` (sent with value `1`).
    pub fn not_null(field: &str) -> Self {
        Self::new(field, Condition::NotNull, 1)
    }
}

fn join<I, V>(values: I) -> String
where
    I: IntoIterator<Item = V>,
    V: fmt::Display,
{
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Filters that are OR-ed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct FilterGroup {
    /// The filters.
    pub filters: Vec<Filter>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `ASC`
    Asc,
    /// `DESC`
    Desc,
}

impl Direction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

/// One sort order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortOrder {
    /// The column.
    pub field: String,
    /// The direction.
    pub direction: Direction,
}

/// Search criteria: groups (AND) of filters (OR), sort orders, paging.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct SearchCriteria {
    /// Filter groups, AND-ed.
    pub filter_groups: Vec<FilterGroup>,
    /// Sort orders, in priority order.
    pub sort_orders: Vec<SortOrder>,
    /// Page size (none: Magento's default — all rows, or 20 with input limits on).
    pub page_size: Option<u32>,
    /// 1-based page.
    pub current_page: Option<u32>,
}

impl SearchCriteria {
    /// No filters, no sorting, no paging.
    pub fn new() -> Self {
        Self::default()
    }

    /// AND one filter (a group of one).
    pub fn filter(mut self, field: &str, condition: Condition, value: impl fmt::Display) -> Self {
        self.filter_groups.push(FilterGroup {
            filters: vec![Filter::new(field, condition, value)],
        });
        self
    }

    /// AND `field = value`.
    pub fn eq(self, field: &str, value: impl fmt::Display) -> Self {
        self.filter(field, Condition::Eq, value)
    }

    /// AND a group of filters that are OR-ed.
    pub fn any_of(mut self, filters: impl IntoIterator<Item = Filter>) -> Self {
        let filters: Vec<Filter> = filters.into_iter().collect();
        if !filters.is_empty() {
            self.filter_groups.push(FilterGroup { filters });
        }
        self
    }

    /// AND one prepared filter.
    pub fn and(self, filter: Filter) -> Self {
        self.any_of([filter])
    }

    /// Then sort by `field`.
    pub fn sort(mut self, field: &str, direction: Direction) -> Self {
        self.sort_orders.push(SortOrder {
            field: field.to_owned(),
            direction,
        });
        self
    }

    /// The page size.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// The 1-based page.
    pub fn current_page(mut self, page: u32) -> Self {
        self.current_page = Some(page);
        self
    }

    /// Rows changed at or after `since` (`YYYY-MM-DD HH:MM:SS`, UTC), oldest first, the way
    /// the order poll reads them (spec §6.6: `gteq` plus a dedupe on the caller's side,
    /// because many rows share a second).
    pub fn updated_since(since: &str, page_size: u32) -> Self {
        Self::new()
            .filter("updated_at", Condition::Gteq, since)
            .sort("updated_at", Direction::Asc)
            .sort("entity_id", Direction::Asc)
            .page_size(page_size)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.filter_groups.is_empty()
            && self.sort_orders.is_empty()
            && self.page_size.is_none()
            && self.current_page.is_none()
    }

    /// The decoded `(name, value)` pairs, in a stable order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (g, group) in self.filter_groups.iter().enumerate() {
            for (f, filter) in group.filters.iter().enumerate() {
                let base = format!("searchCriteria[filter_groups][{g}][filters][{f}]");
                out.push((format!("{base}[field]"), filter.field.clone()));
                out.push((format!("{base}[value]"), filter.value.clone()));
                out.push((
                    format!("{base}[condition_type]"),
                    filter.condition.as_str().to_owned(),
                ));
            }
        }
        for (s, sort) in self.sort_orders.iter().enumerate() {
            out.push((
                format!("searchCriteria[sortOrders][{s}][field]"),
                sort.field.clone(),
            ));
            out.push((
                format!("searchCriteria[sortOrders][{s}][direction]"),
                sort.direction.as_str().to_owned(),
            ));
        }
        if let Some(n) = self.page_size {
            out.push(("searchCriteria[pageSize]".to_owned(), n.to_string()));
        }
        if let Some(n) = self.current_page {
            out.push(("searchCriteria[currentPage]".to_owned(), n.to_string()));
        }
        out
    }

    /// The pairs for a route whose criteria are required: never empty.
    pub fn required_query_pairs(&self) -> Vec<(String, String)> {
        let pairs = self.query_pairs();
        if pairs.is_empty() {
            vec![("searchCriteria[currentPage]".to_owned(), "1".to_owned())]
        } else {
            pairs
        }
    }

    /// The encoded query string.
    pub fn to_query_string(&self) -> String {
        encode_query(&self.query_pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_filter_encodes_like_the_documentation() {
        let c = SearchCriteria::new().eq("sku", "24-MB01");
        assert_eq!(
            c.to_query_string(),
            "searchCriteria%5Bfilter_groups%5D%5B0%5D%5Bfilters%5D%5B0%5D%5Bfield%5D=sku&\
             searchCriteria%5Bfilter_groups%5D%5B0%5D%5Bfilters%5D%5B0%5D%5Bvalue%5D=24-MB01&\
             searchCriteria%5Bfilter_groups%5D%5B0%5D%5Bfilters%5D%5B0%5D%5Bcondition_type%5D=eq"
        );
    }

    #[test]
    fn groups_are_anded_filters_in_a_group_ored_then_sort_and_paging() {
        let c = SearchCriteria::new()
            .any_of([Filter::eq("sku", "A"), Filter::in_list("sku", ["B", "C"])])
            .filter("quantity", Condition::Gt, 0)
            .sort("sku", Direction::Desc)
            .page_size(50)
            .current_page(2);
        let pairs: Vec<String> = c
            .query_pairs()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            pairs,
            vec![
                "searchCriteria[filter_groups][0][filters][0][field]=sku",
                "searchCriteria[filter_groups][0][filters][0][value]=A",
                "searchCriteria[filter_groups][0][filters][0][condition_type]=eq",
                "searchCriteria[filter_groups][0][filters][1][field]=sku",
                "searchCriteria[filter_groups][0][filters][1][value]=B,C",
                "searchCriteria[filter_groups][0][filters][1][condition_type]=in",
                "searchCriteria[filter_groups][1][filters][0][field]=quantity",
                "searchCriteria[filter_groups][1][filters][0][value]=0",
                "searchCriteria[filter_groups][1][filters][0][condition_type]=gt",
                "searchCriteria[sortOrders][0][field]=sku",
                "searchCriteria[sortOrders][0][direction]=DESC",
                "searchCriteria[pageSize]=50",
                "searchCriteria[currentPage]=2",
            ]
        );
    }

    #[test]
    fn every_condition_has_its_wire_name() {
        let all = [
            (Condition::Eq, "eq"),
            (Condition::Neq, "neq"),
            (Condition::Gt, "gt"),
            (Condition::Gteq, "gteq"),
            (Condition::Lt, "lt"),
            (Condition::Lteq, "lteq"),
            (Condition::Moreq, "moreq"),
            (Condition::In, "in"),
            (Condition::Nin, "nin"),
            (Condition::Like, "like"),
            (Condition::Nlike, "nlike"),
            (Condition::Null, "null"),
            (Condition::NotNull, "notnull"),
            (Condition::From, "from"),
            (Condition::To, "to"),
            (Condition::Finset, "finset"),
            (Condition::Nfinset, "nfinset"),
        ];
        for (c, name) in all {
            assert_eq!(c.to_string(), name);
        }
        assert_eq!(Filter::is_null("email").value, "1");
        assert_eq!(Filter::not_null("email").condition, Condition::NotNull);
        assert_eq!(Filter::not_in("sku", [1, 2]).value, "1,2");
    }

    #[test]
    fn values_are_percent_encoded_per_rfc_3986() {
        let c = SearchCriteria::new()
            .filter("sku", Condition::Like, "24-MB% ü/&=+")
            .filter("created_at", Condition::From, "2024-05-01 10:00:00");
        let q = c.to_query_string();
        assert!(
            q.contains("%5Bvalue%5D=24-MB%25%20%C3%BC%2F%26%3D%2B&"),
            "{q}"
        );
        assert!(q.contains("%5Bvalue%5D=2024-05-01%2010%3A00%3A00&"), "{q}");
        assert!(q.ends_with("%5Bcondition_type%5D=from"));
        assert_eq!(encode_component("a-b.c_d~e"), "a-b.c_d~e");
    }

    #[test]
    fn the_order_poll_criteria() {
        let c = SearchCriteria::updated_since("2024-05-01 10:00:00", 100).current_page(1);
        let pairs = c.query_pairs();
        assert_eq!(
            pairs[2],
            (
                "searchCriteria[filter_groups][0][filters][0][condition_type]".to_owned(),
                "gteq".to_owned()
            )
        );
        assert_eq!(
            pairs[3],
            (
                "searchCriteria[sortOrders][0][field]".to_owned(),
                "updated_at".to_owned()
            )
        );
        assert_eq!(pairs.len(), 3 + 4 + 2);
    }

    #[test]
    fn required_criteria_are_never_empty() {
        assert!(SearchCriteria::new().is_empty());
        assert_eq!(
            SearchCriteria::new().required_query_pairs(),
            vec![("searchCriteria[currentPage]".to_owned(), "1".to_owned())]
        );
        assert!(SearchCriteria::new().query_pairs().is_empty());
        assert!(SearchCriteria::new().any_of([]).is_empty());
    }
}
