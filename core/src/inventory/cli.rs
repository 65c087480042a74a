//! The reservation CLI (spec §3.6): `inventory:reservation:list-inconsistencies` and
//! `inventory:reservation:create-compensations`, with Magento's exact output text.
//!
//! An inconsistency item's value is the expected outstanding quantity (positive) plus the
//! order's real reservations; a missing `order_placed` of 3 gives `+3`, and the compensation
//! the CLI prints is the negated value. Console markup (`<info>`, `<comment>`, `<error>`) is
//! not part of the text: Symfony strips it on a plain output.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::MagentoError;
use super::ids::{Sku, StockId};
use super::model::Inventory;
use super::num;
use super::reservations::{NewReservation, metadata_field};
use super::sales::Order;

/// One `SalableQuantityInconsistency`: an order on a stock and its unbalanced SKUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inconsistency {
    /// The order increment id.
    pub order_increment_id: String,
    /// The order entity id (0 when unknown).
    pub object_id: u64,
    /// The stock.
    pub stock_id: StockId,
    /// The order status, when the order was found.
    pub order_status: String,
    /// Whether an order is attached (`FilterExistingOrders`).
    pub has_assigned_order: bool,
    /// SKU → expected outstanding + Σ reservations (insertion order).
    pub items: Vec<(String, Decimal)>,
}

impl Inconsistency {
    fn add(&mut self, sku: &str, qty: Decimal) {
        match self.items.iter_mut().find(|(s, _)| s == sku) {
            Some(e) => e.1 += qty,
            None => self.items.push((sku.to_owned(), qty)),
        }
    }

    /// The value of a SKU (`getItems()[sku]`).
    pub fn item(&self, sku: &str) -> Option<Decimal> {
        self.items.iter().find(|(s, _)| s == sku).map(|(_, q)| *q)
    }
}

/// Text a command prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliOutput {
    /// Lines joined with `\n` (no trailing newline).
    pub text: String,
    /// The exit code (`-1` is what `list-inconsistencies` returns when something was found).
    pub exit_code: i32,
}

/// Which inconsistencies `list-inconsistencies` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OrderFilter {
    /// All.
    #[default]
    All,
    /// `-c`: orders whose status is complete, closed or canceled.
    Complete,
    /// `-i`: the others.
    Incomplete,
}

/// `/(?P<increment_id>.*):(?P<sku>.*):(?P<quantity>.*):(?P<stock_id>.*)/`: greedy, so the
/// last three colons split the fields and the increment id keeps any extra ones.
pub fn parse_compensation_argument(argument: &str) -> Option<(String, String, String, String)> {
    let line = argument.split('\n').find(|l| l.matches(':').count() >= 3)?;
    let mut parts = line.rsplitn(4, ':');
    let stock = parts.next()?.to_owned();
    let qty = parts.next()?.to_owned();
    let sku = parts.next()?.to_owned();
    let inc = parts.next()?.to_owned();
    Some((inc, sku, qty, stock))
}

const PATTERN: &str = "/(?P<increment_id>.*):(?P<sku>.*):(?P<quantity>.*):(?P<stock_id>.*)/";

struct Collector {
    items: Vec<(String, Inconsistency)>,
}

impl Collector {
    fn entry(&mut self, key: &str, stock_id: StockId) -> &mut Inconsistency {
        if let Some(pos) = self.items.iter().position(|(k, _)| k == key) {
            return &mut self.items[pos].1;
        }
        self.items.push((
            key.to_owned(),
            Inconsistency {
                order_increment_id: String::new(),
                object_id: 0,
                stock_id,
                order_status: String::new(),
                has_assigned_order: false,
                items: Vec::new(),
            },
        ));
        let last = self.items.len() - 1;
        &mut self.items[last].1
    }

    fn has(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| k == key)
    }
}

struct ExistingReservation {
    object_id: u64,
    increment_id: String,
    stock_id: StockId,
    sku: String,
    quantity: Decimal,
}

impl Inventory {
    fn increment_id_of_entity(&self, entity_id: u64) -> String {
        self.sales
            .orders
            .iter()
            .find(|o| o.entity_id.0 == entity_id)
            .map(|o| o.increment_id.as_str().to_owned())
            .unwrap_or_default()
    }

    fn add_order_data(&self, collector: &mut Collector, order: &Order) -> Result<(), MagentoError> {
        let stock = self.stock_for_website(&order.website)?;
        let key = format!("{}-{}", order.increment_id, stock);
        let entry = collector.entry(&key, stock);
        entry.order_increment_id = order.increment_id.as_str().to_owned();
        entry.has_assigned_order = true;
        entry.order_status = order.status.clone();
        Ok(())
    }

    /// `GetSalableQuantityInconsistencies::execute($bunchSize)`: the bunches it yields, each
    /// already filtered (zero sums, SKUs not assigned to the stock or not managed, entries
    /// without an order).
    pub fn salable_quantity_inconsistencies(
        &self,
        bunch_size: usize,
    ) -> Result<Vec<Vec<Inconsistency>>, MagentoError> {
        let bunch_size = bunch_size.max(1);
        let open: Vec<&Order> = self
            .sales
            .orders
            .iter()
            .filter(|o| !o.state.is_final())
            .collect();
        let max_page = open.len().div_ceil(bunch_size).max(1);
        // LoadExistingReservations: order reservations keyed "<increment>-<stock>".
        let mut existing: Vec<(String, Vec<ExistingReservation>)> = Vec::new();
        for r in &self.reservations {
            let Some(meta) = r.metadata.as_deref() else {
                continue;
            };
            if metadata_field(Some(meta), "object_type") != Some(serde_json::json!("order")) {
                continue;
            }
            let object_id = metadata_field(Some(meta), "object_id")
                .map(|v| php_int(&v))
                .unwrap_or(0);
            let increment_id = match metadata_field(Some(meta), "object_increment_id") {
                Some(v) => php_string(&v),
                None => self.increment_id_of_entity(object_id),
            };
            let key = format!("{increment_id}-{}", r.stock_id);
            let entry = ExistingReservation {
                object_id,
                increment_id,
                stock_id: r.stock_id,
                sku: r.sku.as_str().to_owned(),
                quantity: r.quantity,
            };
            match existing.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(entry),
                None => existing.push((key, vec![entry])),
            }
        }
        let mut bunches = Vec::new();
        for page in 1..=max_page {
            let mut collector = Collector { items: Vec::new() };
            // AddExpectedReservations
            let start = (page - 1) * bunch_size;
            for order in open.iter().skip(start).take(bunch_size) {
                let stock = self.stock_for_website(&order.website)?;
                let key = format!("{}-{}", order.increment_id, stock);
                for item in &order.items {
                    let allowed = super::ids::ProductType::parse(&item.product_type)
                        .is_some_and(|t| t.allows_source_items())
                        || item.product_type == "grouped";
                    if !allowed {
                        continue;
                    }
                    let parent = item.parent_item_id.and_then(|p| order.item(p));
                    let (canceled, invoiced, shipped, refunded) = match parent {
                        Some(p) if !p.qty_ordered.is_zero() && !p.ship_separately => {
                            let unit = item.qty_ordered / p.qty_ordered;
                            (
                                unit * p.qty_canceled,
                                unit * p.qty_invoiced,
                                unit * p.qty_shipped,
                                unit * p.qty_refunded,
                            )
                        }
                        _ => (
                            item.qty_canceled,
                            item.qty_invoiced,
                            item.qty_shipped,
                            item.qty_refunded,
                        ),
                    };
                    let qty = item.qty_ordered
                        - canceled
                        - refunded
                        - if item.is_virtual { invoiced } else { shipped };
                    let entry = collector.entry(&key, stock);
                    entry.object_id = order.entity_id.0;
                    entry.order_increment_id = order.increment_id.as_str().to_owned();
                    entry.has_assigned_order = true;
                    entry.add(&item.sku, qty);
                    self.add_order_data(&mut collector, order)?;
                }
            }
            // mergeExistingReservations
            let is_last = page == max_page;
            let mut kept = Vec::new();
            for (key, reservations) in existing.drain(..) {
                if collector.has(&key) || is_last {
                    for r in reservations {
                        let entry = collector.entry(&key, r.stock_id);
                        entry.object_id = r.object_id;
                        entry.order_increment_id = r.increment_id.clone();
                        entry.has_assigned_order = r.object_id != 0 || !r.increment_id.is_empty();
                        entry.stock_id = r.stock_id;
                        entry.add(&r.sku, r.quantity);
                    }
                } else {
                    kept.push((key, reservations));
                }
            }
            existing = kept;
            // AddCompletedOrdersToForUnresolvedReservations
            let ids: Vec<u64> = collector
                .items
                .iter()
                .map(|(_, i)| i.object_id)
                .filter(|i| *i != 0)
                .collect();
            let increments: Vec<String> = collector
                .items
                .iter()
                .map(|(_, i)| i.order_increment_id.clone())
                .filter(|i| !i.is_empty())
                .collect();
            let finals: Vec<&Order> = self
                .sales
                .orders
                .iter()
                .filter(|o| o.state.is_final())
                .filter(|o| {
                    ids.contains(&o.entity_id.0)
                        || increments.iter().any(|i| i == o.increment_id.as_str())
                })
                .collect();
            for order in finals {
                self.add_order_data(&mut collector, order)?;
            }
            // filterItems
            let mut items: Vec<Inconsistency> =
                collector.items.into_iter().map(|(_, i)| i).collect();
            for i in &mut items {
                i.items.retain(|(_, q)| !q.is_zero());
            }
            items.retain(|i| !i.items.is_empty());
            for i in &mut items {
                let stock = i.stock_id;
                let mut filtered = Vec::new();
                for (sku, qty) in &i.items {
                    if !self.is_product_assigned_to_stock(sku, stock) {
                        continue;
                    }
                    let Ok(item) = self.stock_item_configuration(sku, stock) else {
                        continue;
                    };
                    if item.resolve(&self.config).manage_stock() {
                        filtered.push((sku.clone(), *qty));
                    }
                }
                i.items = filtered;
            }
            items.retain(|i| !i.items.is_empty());
            items.retain(|i| i.has_assigned_order);
            bunches.push(items);
        }
        Ok(bunches)
    }

    /// `bin/magento inventory:reservation:list-inconsistencies [-c|-i] [-r] [-b N]`.
    pub fn list_inconsistencies(
        &self,
        filter: OrderFilter,
        raw: bool,
        bunch_size: usize,
    ) -> Result<CliOutput, MagentoError> {
        let mut lines = Vec::new();
        let mut found = false;
        for bunch in self.salable_quantity_inconsistencies(bunch_size)? {
            let bunch: Vec<Inconsistency> = bunch
                .into_iter()
                .filter(|i| {
                    let complete =
                        matches!(i.order_status.as_str(), "complete" | "closed" | "canceled");
                    match filter {
                        OrderFilter::All => true,
                        OrderFilter::Complete => complete,
                        OrderFilter::Incomplete => !complete,
                    }
                })
                .collect();
            found |= !bunch.is_empty();
            lines.extend(format_inconsistencies(&bunch, raw));
        }
        if !found {
            return Ok(CliOutput {
                text: "No order inconsistencies were found".to_owned(),
                exit_code: 0,
            });
        }
        Ok(CliOutput {
            text: lines.join("\n"),
            exit_code: -1,
        })
    }

    /// `bin/magento inventory:reservation:create-compensations <arg>...`: each argument
    /// `<increment_id>:<sku>:<qty>:<stock_id>` appends one `manual_compensation` reservation
    /// (through the usual append filters). An increment id with no order is a PHP fatal error
    /// in Magento (magento/inventory#3177): the run stops there with exit code 255.
    pub fn create_compensations(&mut self, arguments: &[String]) -> CliOutput {
        let mut lines = vec!["Following reservations were created:".to_owned()];
        let mut has_errors = false;
        for argument in arguments {
            let Some((inc, sku, qty, stock)) = parse_compensation_argument(argument) else {
                has_errors = true;
                lines.push(format!(
                    "  - Error while parsing argument \"{argument}\". Given argument does not match pattern \"{PATTERN}\""
                ));
                continue;
            };
            let Some(order) = self.order_by_increment_id(&inc).cloned() else {
                lines.push(
                    "PHP Fatal error:  Uncaught Error: Call to a member function getEntityId() on bool"
                        .to_owned(),
                );
                return CliOutput {
                    text: lines.join("\n"),
                    exit_code: 255,
                };
            };
            let quantity = num::php_string_to_decimal(&qty);
            let stock_number = num::php_string_to_decimal(&stock).trunc();
            let built = Sku::parse(&sku).map_err(|e| e.to_string()).and_then(|s| {
                use rust_decimal::prelude::ToPrimitive;
                StockId::parse(stock_number.to_i64().unwrap_or(0))
                    .map(|st| (s, st))
                    .map_err(|_| "\"stock_id\" is expected to be a number.".to_owned())
            });
            let (sku_id, stock_id) = match built {
                Ok(v) => v,
                Err(message) => {
                    lines.push(format!(
                        "  - Argument \"{argument}\" caused exception \"{message}\""
                    ));
                    continue;
                }
            };
            let metadata = format!(
                "{{\"event_type\":\"manual_compensation\",\"object_type\":\"order\",\"object_id\":{},\"object_increment_id\":{}}}",
                num::php_json_string(&order.entity_id.0.to_string()),
                num::php_json_string(order.increment_id.as_str())
            );
            let reservation = NewReservation {
                stock_id,
                sku: sku_id.clone(),
                quantity,
                metadata: Some(metadata),
            };
            match self.append_reservations(&[reservation]) {
                Ok(_) => lines.push(format!(
                    "  - Product {} was compensated by {} for stock {}",
                    sku_id,
                    num::php_plus_f(quantity),
                    stock_id
                )),
                Err(e) => lines.push(format!(
                    "  - Argument \"{argument}\" caused exception \"{}\"",
                    e.rendered()
                )),
            }
        }
        CliOutput {
            text: lines.join("\n"),
            exit_code: i32::from(has_errors),
        }
    }
}

/// The lines `list-inconsistencies` prints for a bunch (pretty or `-r` raw).
pub fn format_inconsistencies(inconsistencies: &[Inconsistency], raw: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for i in inconsistencies {
        if !raw {
            lines.push(format!("Order {}:", i.order_increment_id));
        }
        for (sku, qty) in &i.items {
            if raw {
                lines.push(format!(
                    "{}:{}:{}:{}",
                    i.order_increment_id,
                    sku,
                    num::php_f(-*qty),
                    i.stock_id
                ));
            } else {
                lines.push(format!(
                    "  - Product {} should be compensated by {} for stock {}",
                    sku,
                    num::php_plus_f(-*qty),
                    i.stock_id
                ));
            }
        }
    }
    lines
}

fn php_int(v: &serde_json::Value) -> u64 {
    use rust_decimal::prelude::ToPrimitive;
    match v {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => num::php_string_to_decimal(s).trunc().to_u64().unwrap_or(0),
        _ => 0,
    }
}

fn php_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn compensation_arguments_split_on_the_last_three_colons() {
        assert_eq!(
            parse_compensation_argument("172:bike-123:2.000000:1"),
            Some((
                "172".into(),
                "bike-123".into(),
                "2.000000".into(),
                "1".into()
            ))
        );
        assert_eq!(
            parse_compensation_argument("a:b:c:d:e"),
            Some(("a:b".into(), "c".into(), "d".into(), "e".into()))
        );
        assert_eq!(parse_compensation_argument("a:b:c"), None);
    }

    #[test]
    fn output_formats_are_magentos() {
        let i = Inconsistency {
            order_increment_id: "172".into(),
            object_id: 1,
            stock_id: StockId::DEFAULT,
            order_status: "processing".into(),
            has_assigned_order: true,
            items: vec![("bike-123".into(), dec!(-2))],
        };
        assert_eq!(
            format_inconsistencies(std::slice::from_ref(&i), false),
            vec![
                "Order 172:".to_owned(),
                "  - Product bike-123 should be compensated by +2.000000 for stock 1".to_owned()
            ]
        );
        assert_eq!(
            format_inconsistencies(&[i], true),
            vec!["172:bike-123:2.000000:1".to_owned()]
        );
    }
}
