//! Reservations (spec §3): append-only signed quantities with sales-event metadata, the
//! filters MSI puts in front of every append, the cleanup cron, and the queue consumers that
//! follow reservations (salability refresh, SKU rename).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{MagentoError, Phrase};
use super::ids::{Sku, SkuKey, StockId, WebsiteCode};
use super::model::{IndexRow, Inventory, QueueMessage, Reservation};
use super::num;

/// A reservation to append (`ReservationBuilderInterface` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReservation {
    /// `stock_id`
    pub stock_id: StockId,
    /// `sku`
    pub sku: Sku,
    /// `quantity` (negative reserves, positive compensates)
    #[serde(with = "num::json_number")]
    pub quantity: Decimal,
    /// `metadata` (JSON text) or none.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// A sales event (`SalesEventInterface`) as serialised into reservation metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesEvent {
    /// `event_type`: `order_placed`, `order_canceled`, `shipment_created`, …
    pub event_type: String,
    /// `object_type`: `order` for core events.
    pub object_type: String,
    /// `object_id`: the order entity id as a string (`""` for orders placed before they are
    /// saved).
    pub object_id: String,
    /// `object_increment_id` (`""` when the extension attribute is not set).
    pub object_increment_id: String,
}

impl SalesEvent {
    /// An event about an order.
    pub fn order(event_type: &str, object_id: &str, increment_id: &str) -> Self {
        Self {
            event_type: event_type.to_owned(),
            object_type: "order".to_owned(),
            object_id: object_id.to_owned(),
            object_increment_id: increment_id.to_owned(),
        }
    }

    /// The `metadata` column text, byte for byte what `SalesEventToArrayConverter` + Magento's
    /// JSON serializer write: `{"event_type":…,"object_type":…,"object_id":…,"object_increment_id":…}`.
    pub fn metadata(&self) -> String {
        format!(
            "{{\"event_type\":{},\"object_type\":{},\"object_id\":{},\"object_increment_id\":{}}}",
            num::php_json_string(&self.event_type),
            num::php_json_string(&self.object_type),
            num::php_json_string(&self.object_id),
            num::php_json_string(&self.object_increment_id)
        )
    }
}

/// Which rows a raw delete removes (test plumbing for broken data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationFilter {
    /// Every row.
    All,
    /// Rows whose metadata `event_type` matches.
    EventType(String),
}

impl Inventory {
    /// `AppendReservationsInterface::execute` behind `PreventAppendReservationOnNotManageItemsInStockPlugin`:
    /// nothing is written when `can_subtract` is off; rows of SKUs whose stock is not managed
    /// are dropped; a source-managed SKU not assigned to a (non-default) stock fails. Returns
    /// the ids of the rows written.
    pub fn append_reservations(
        &mut self,
        reservations: &[NewReservation],
    ) -> Result<Vec<u64>, MagentoError> {
        if !self.config.can_subtract() {
            return Ok(Vec::new());
        }
        let mut keep = Vec::new();
        for r in reservations {
            let item = self
                .stock_item_configuration(r.sku.as_str(), r.stock_id)
                .map_err(|_| {
                    MagentoError::localized(Phrase::new(
                        "The requested sku is not assigned to given stock.",
                    ))
                })?;
            if item.resolve(&self.config).manage_stock() {
                keep.push(r.clone());
            }
        }
        Ok(self.insert_reservations(&keep))
    }

    /// Appends rows without any filter (the raw `INSERT` of broken-data fixtures, and the
    /// second half of [`Inventory::append_reservations`]).
    pub fn insert_reservations(&mut self, reservations: &[NewReservation]) -> Vec<u64> {
        let mut ids = Vec::with_capacity(reservations.len());
        for r in reservations {
            let id = self.next_reservation_id;
            self.next_reservation_id += 1;
            self.reservations.push(Reservation {
                reservation_id: id,
                stock_id: r.stock_id,
                sku: r.sku.clone(),
                quantity: num::round4(r.quantity),
                metadata: r.metadata.clone(),
            });
            ids.push(id);
        }
        ids
    }

    /// `PlaceReservationsForSalesEventInterface`: one reservation per item for the stock of the
    /// website, skipping composite types (SKUs unknown to the catalog are kept), then queues the
    /// salability refresh (`inventory.reservations.updateSalabilityStatus`).
    pub fn place_reservations_for_sales_event(
        &mut self,
        items: &[(Sku, Decimal)],
        website: &WebsiteCode,
        event: &SalesEvent,
    ) -> Result<(), MagentoError> {
        if items.is_empty() {
            return Ok(());
        }
        let stock_id = self.stock_for_website(website)?;
        let metadata = event.metadata();
        let reservations: Vec<NewReservation> = items
            .iter()
            .filter(|(sku, _)| {
                self.product(sku)
                    .is_none_or(|p| p.product_type.allows_source_items())
            })
            .map(|(sku, qty)| NewReservation {
                stock_id,
                sku: sku.clone(),
                quantity: *qty,
                metadata: Some(metadata.clone()),
            })
            .collect();
        self.append_reservations(&reservations)?;
        self.queue.push(QueueMessage::UpdateSalabilityStatus {
            stock_id,
            skus: items.iter().map(|(s, _)| s.clone()).collect(),
        });
        Ok(())
    }

    /// Raw delete of reservation rows (`which_last`: only the row with the highest id).
    pub fn delete_reservations(&mut self, filter: &ReservationFilter, which_last: bool) -> usize {
        let matches = |r: &Reservation| match filter {
            ReservationFilter::All => true,
            ReservationFilter::EventType(t) => metadata_field(r.metadata.as_deref(), "event_type")
                .is_some_and(|v| v == Value::String(t.clone())),
        };
        if which_last {
            let last = self
                .reservations
                .iter()
                .filter(|r| matches(r))
                .map(|r| r.reservation_id)
                .max();
            let Some(id) = last else { return 0 };
            self.reservations.retain(|r| r.reservation_id != id);
            return 1;
        }
        let before = self.reservations.len();
        self.reservations.retain(|r| !matches(r));
        before - self.reservations.len()
    }

    /// The cleanup cron (`inventory_cleanup_reservations`, spec §3.5): rows are grouped by
    /// `JSON_EXTRACT(metadata, '$.object_id')` and, separately, by `'$.object_increment_id'`;
    /// every group whose quantities sum to zero is deleted (the union of both passes). Groups
    /// span SKUs and stocks; rows without the key (or without metadata) form one NULL group.
    /// Returns the deleted reservation ids.
    pub fn cleanup_reservations(&mut self) -> Vec<u64> {
        let mut delete: BTreeSet<u64> = BTreeSet::new();
        for field in ["object_id", "object_increment_id"] {
            let mut groups: BTreeMap<String, (Decimal, Vec<u64>)> = BTreeMap::new();
            for r in &self.reservations {
                let key = metadata_field(r.metadata.as_deref(), field)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "NULL".to_owned());
                let entry = groups.entry(key).or_insert((Decimal::ZERO, Vec::new()));
                entry.0 += r.quantity;
                entry.1.push(r.reservation_id);
            }
            for (sum, ids) in groups.into_values() {
                if sum.is_zero() {
                    delete.extend(ids);
                }
            }
        }
        self.reservations
            .retain(|r| !delete.contains(&r.reservation_id));
        delete.into_iter().collect()
    }

    /// Runs a queue consumer on up to `max_messages` of its messages; returns how many were
    /// processed. Consumers: `inventory.reservations.update` (moves a renamed SKU's
    /// reservations), `inventory.reservations.updateSalabilityStatus` (rewrites index
    /// `is_salable` where `IsProductSalable` now disagrees; parents too),
    /// `inventory.source.items.cleanup` (deletes a renamed SKU's old source items).
    pub fn process_queue(&mut self, consumer: &str, max_messages: Option<usize>) -> usize {
        let mut processed = 0;
        while max_messages.is_none_or(|m| processed < m) {
            let Some(pos) = self.queue.iter().position(|m| m.topic() == consumer) else {
                break;
            };
            let message = self.queue.remove(pos);
            processed += 1;
            match message {
                QueueMessage::ReservationsUpdate { old, new } => {
                    let old_key = old.key();
                    for r in &mut self.reservations {
                        if r.sku.key() == old_key {
                            r.sku = new.clone();
                        }
                    }
                }
                QueueMessage::UpdateSalabilityStatus { stock_id, skus } => {
                    self.update_salability_status(stock_id, &skus);
                }
                QueueMessage::SourceItemsCleanup { sku } => {
                    let items: Vec<_> = self
                        .source_items_for_sku(&sku)
                        .into_iter()
                        .map(|i| (i.source_code, i.sku))
                        .collect();
                    if !items.is_empty() {
                        // Cannot fail: the list is not empty.
                        let _ = self.delete_source_items(&items);
                    }
                }
            }
        }
        processed
    }

    /// `UpdateIndexSalabilityStatus`: for each SKU whose `IsProductSalable` differs from its
    /// index row, rewrite `is_salable` (stock 1: the legacy status); then the same for their
    /// composite parents.
    fn update_salability_status(&mut self, stock_id: StockId, skus: &[Sku]) {
        let changed = self.refresh_is_salable(stock_id, skus);
        if changed.is_empty() {
            return;
        }
        let changed_keys: Vec<SkuKey> = changed.iter().map(Sku::key).collect();
        let parents: Vec<Sku> = self
            .products
            .values()
            .filter(|p| {
                p.child_skus()
                    .iter()
                    .any(|c| changed_keys.contains(&c.key()))
            })
            .map(|p| p.sku.clone())
            .collect();
        self.refresh_is_salable(stock_id, &parents);
    }

    fn refresh_is_salable(&mut self, stock_id: StockId, skus: &[Sku]) -> Vec<Sku> {
        let mut changed = Vec::new();
        for sku in skus {
            let now = self.is_product_salable(sku.as_str(), stock_id);
            let current = self
                .stock_item_data(sku.as_str(), stock_id)
                .is_some_and(|r| r.is_salable);
            if now == current {
                continue;
            }
            changed.push(sku.clone());
            let key = sku.key();
            if stock_id.is_default() {
                if let Some(row) = self.legacy_status.get_mut(&key) {
                    row.is_salable = now;
                } else if let Some(p) = self.products.get(&key) {
                    let quantity = p.stock_item.qty.unwrap_or_default();
                    self.legacy_status.insert(
                        key,
                        IndexRow {
                            quantity,
                            is_salable: now,
                        },
                    );
                }
            } else if let Some(row) = self.index.get_mut(&stock_id).and_then(|t| t.get_mut(&key)) {
                row.is_salable = now;
            }
        }
        changed
    }
}

impl Inventory {
    /// The legacy `StockManagement::revertProductsSale($items, $websiteId)` as MSI replaces it
    /// (`ProcessRevertProductsSalePlugin`): `+qty` per source-managed item for the website's
    /// stock, event `revert_products_sale` / `legacy_stock_management_api`.
    pub fn legacy_revert_products_sale(
        &mut self,
        website: &WebsiteCode,
        items: &[(Sku, Decimal)],
    ) -> Result<(), MagentoError> {
        let items: Vec<(Sku, Decimal)> = items
            .iter()
            .filter(|(sku, _)| {
                self.product(sku)
                    .is_some_and(|p| p.product_type.allows_source_items())
            })
            .cloned()
            .collect();
        self.place_reservations_for_sales_event(
            &items,
            website,
            &SalesEvent {
                event_type: "revert_products_sale".to_owned(),
                object_type: "legacy_stock_management_api".to_owned(),
                object_id: "none".to_owned(),
                object_increment_id: String::new(),
            },
        )
    }

    /// The legacy `StockManagement::backItemQty($productId, $qty, $scopeId)` as MSI replaces it
    /// (`ProcessBackItemQtyPlugin`): `+qty` for the website's stock, event `back_item_qty`.
    /// SKUs unknown to the catalog are ignored.
    pub fn legacy_back_item_qty(
        &mut self,
        website: &WebsiteCode,
        sku: &Sku,
        qty: Decimal,
    ) -> Result<(), MagentoError> {
        let Some(product) = self.product(sku) else {
            return Ok(());
        };
        if !product.product_type.allows_source_items() {
            return Ok(());
        }
        let sku = product.sku.clone();
        self.place_reservations_for_sales_event(
            &[(sku, qty)],
            website,
            &SalesEvent {
                event_type: "back_item_qty".to_owned(),
                object_type: "legacy_stock_management_api".to_owned(),
                object_id: "none".to_owned(),
                object_increment_id: String::new(),
            },
        )
    }
}

/// `JSON_EXTRACT(metadata, '$.<field>')`: the field's JSON value, `None` for NULL.
pub(crate) fn metadata_field(metadata: Option<&str>, field: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(metadata?).ok()?;
    value.get(field).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn r(stock: i64, sku: &str, qty: Decimal, meta: Option<SalesEvent>) -> NewReservation {
        NewReservation {
            stock_id: StockId::parse(stock).unwrap(),
            sku: Sku::parse(sku).unwrap(),
            quantity: qty,
            metadata: meta.map(|m| m.metadata()),
        }
    }

    #[test]
    fn metadata_is_byte_exact() {
        assert_eq!(
            SalesEvent::order("order_placed", "", "test_order_1").metadata(),
            "{\"event_type\":\"order_placed\",\"object_type\":\"order\",\"object_id\":\"\",\"object_increment_id\":\"test_order_1\"}"
        );
    }

    #[test]
    fn cleanup_deletes_groups_that_sum_to_zero_across_skus() {
        let mut inv = Inventory::new();
        inv.insert_reservations(&[
            r(
                1,
                "A",
                dec!(-2),
                Some(SalesEvent::order("order_placed", "", "100")),
            ),
            r(
                1,
                "B",
                dec!(-1),
                Some(SalesEvent::order("order_placed", "", "100")),
            ),
            r(
                1,
                "A",
                dec!(3),
                Some(SalesEvent::order("order_canceled", "7", "100")),
            ),
            r(
                1,
                "A",
                dec!(-5),
                Some(SalesEvent::order("order_placed", "", "200")),
            ),
        ]);
        // Increment-id groups: "100" sums to 0 (across SKUs A and B) → deleted; "200" stays.
        let deleted = inv.cleanup_reservations();
        assert_eq!(deleted, vec![1, 2, 3]);
        assert_eq!(inv.reservations().len(), 1);
        assert_eq!(inv.reservations()[0].quantity, dec!(-5));
    }

    #[test]
    fn cleanup_keeps_open_orders() {
        let mut inv = Inventory::new();
        inv.insert_reservations(&[
            r(
                1,
                "A",
                dec!(-5),
                Some(SalesEvent::order("order_placed", "", "7")),
            ),
            r(
                1,
                "A",
                dec!(3),
                Some(SalesEvent::order("shipment_created", "1", "7")),
            ),
        ]);
        assert!(inv.cleanup_reservations().is_empty());
        inv.insert_reservations(&[r(
            1,
            "A",
            dec!(2),
            Some(SalesEvent::order("order_canceled", "1", "7")),
        )]);
        assert_eq!(inv.cleanup_reservations().len(), 3);
    }
}
