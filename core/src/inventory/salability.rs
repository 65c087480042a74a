//! Salable quantity and salability (spec §2.6, §4.2, §4.3): `GetProductSalableQty`,
//! `IsProductSalable` / `AreProductsSalable`, `IsProductSalableForRequestedQty` with Magento's
//! error codes and messages, the backorder quantity and the legacy quote-item check.
//!
//! Two quantities exist side by side, as in Magento:
//! * [`Inventory::get_product_salable_qty`] reads the **index** row (`quantity`, gated by its
//!   `is_salable`) and adds reservations minus the threshold. It is never clamped.
//! * [`Inventory::salable_qty`] (`GetSalableQty`, used by the requested-quantity checks) sums
//!   the **live** in-stock source items of enabled linked sources, plus reservations, minus the
//!   threshold.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{LegacyStockItem, StockItemConfiguration};
use super::error::{MagentoError, Phrase};
use super::ids::{SkuKey, StockId, WebsiteCode};
use super::model::Inventory;
use super::num;

/// One salability error (`ProductSalabilityErrorInterface`): a stable code and the rendered
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalabilityError {
    /// e.g. `is_salable_with_reservations-not_enough_qty`
    pub code: String,
    /// e.g. `Not enough items for sale`
    pub message: String,
}

impl SalabilityError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// `IsProductSalableForRequestedQtyResultInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedQtyResult {
    /// The SKU asked for.
    pub sku: String,
    /// The stock.
    pub stock_id: StockId,
    /// `true` iff `errors` is empty.
    pub salable: bool,
    /// Every error the chain produced (required conditions together, else the union of the
    /// sufficient conditions').
    pub errors: Vec<SalabilityError>,
}

/// `IsProductSalableResultInterface` (`are-products-salable`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsSalableResult {
    /// The SKU.
    pub sku: String,
    /// The stock.
    pub stock_id: StockId,
    /// Whether the product is salable.
    pub salable: bool,
}

/// The legacy `StockStateInterface::checkQuoteItemQty` result as MSI's `GetBackorder` builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QuoteItemQtyCheck {
    /// `has_error`
    pub has_error: bool,
    /// `message`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `quote_message`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_message: Option<String>,
    /// `quote_message_index`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_message_index: Option<String>,
    /// `error_code`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `item_backorders`: how many of the requested units are backordered
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "num::json_number::option", default)]
    pub item_backorders: Option<Decimal>,
}

/// `SkuIsNotAssignedToStockException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkuNotAssigned;

const NOT_ASSIGNED: &str = "The requested sku is not assigned to given stock.";

impl Inventory {
    /// Whether the SKU is a catalog product of a type with source items
    /// (`IsSourceItemManagementAllowedForSku`).
    pub fn is_source_item_managed_sku(&self, sku: &str) -> bool {
        self.product_by_text(sku)
            .is_some_and(|p| p.product_type.allows_source_items())
    }

    /// `IsProductAssignedToStock`: an item of the SKU (any status) on any source linked to the
    /// stock (enabled or not).
    pub fn is_product_assigned_to_stock(&self, sku: &str, stock_id: StockId) -> bool {
        let key = SkuKey::of(sku);
        self.links
            .iter()
            .filter(|l| l.stock_id == stock_id)
            .any(|l| {
                self.source_items
                    .contains_key(&(l.source_code.clone(), key.clone()))
            })
    }

    /// `GetIsAnySourceItemInStock`: an in-stock item on an enabled linked source.
    pub fn is_any_source_item_in_stock(&self, sku: &str, stock_id: StockId) -> bool {
        let key = SkuKey::of(sku);
        self.enabled_source_codes(stock_id).into_iter().any(|c| {
            self.source_items
                .get(&(c, key.clone()))
                .is_some_and(|r| r.item.status.in_stock())
        })
    }

    /// `GetProductAvailableQty`: Σ quantities of in-stock items on enabled linked sources.
    pub fn product_available_qty(&self, sku: &str, stock_id: StockId) -> Decimal {
        let key = SkuKey::of(sku);
        self.enabled_source_codes(stock_id)
            .into_iter()
            .filter_map(|c| self.source_items.get(&(c, key.clone())))
            .filter(|r| r.item.status.in_stock())
            .map(|r| r.item.quantity)
            .sum()
    }

    /// `GetStockItemConfiguration`: the legacy item's configuration, or
    /// [`SkuNotAssigned`] for a source-managed SKU with no item on a non-default stock.
    pub fn stock_item_configuration(
        &self,
        sku: &str,
        stock_id: StockId,
    ) -> Result<LegacyStockItem, SkuNotAssigned> {
        if !stock_id.is_default()
            && self.is_source_item_managed_sku(sku)
            && !self.is_product_assigned_to_stock(sku, stock_id)
        {
            return Err(SkuNotAssigned);
        }
        Ok(self.legacy_stock_item(sku))
    }

    fn cfg<'a>(&'a self, item: &'a LegacyStockItem) -> StockItemConfiguration<'a> {
        item.resolve(&self.config)
    }

    /// `IsProductSalable\ManageStockCondition`: `use_config` compares the config with `1`.
    fn manage_stock_disabled(&self, item: &LegacyStockItem) -> bool {
        if item.use_config_manage_stock {
            self.config.manage_stock() != 1
        } else {
            !item.manage_stock
        }
    }

    /// `IsProductSalable\BackOrderCondition`: backorders on and a threshold ≥ 0.
    fn backorders_allow(&self, item: &LegacyStockItem) -> bool {
        let cfg = self.cfg(item);
        cfg.backorders() != 0 && cfg.min_qty() >= Decimal::ZERO
    }

    /// `GetSalableQty`: live available quantity + reservations − threshold.
    pub fn salable_qty(&self, sku: &str, stock_id: StockId) -> Result<Decimal, SkuNotAssigned> {
        let item = self.stock_item_configuration(sku, stock_id)?;
        Ok(
            self.product_available_qty(sku, stock_id) + self.reservations_quantity(sku, stock_id)
                - self.cfg(&item).min_qty(),
        )
    }

    /// `GetProductSalableQtyInterface::execute` (`GET get-product-salable-quantity`): 404 for a
    /// SKU unknown to the catalog, 400 for composite types, 0 when the index has no row or says
    /// not salable, else index quantity + reservations − threshold — **not clamped**.
    pub fn get_product_salable_qty(
        &self,
        sku: &str,
        stock_id: StockId,
    ) -> Result<Decimal, MagentoError> {
        let product = self.product_by_text(sku).ok_or_else(|| {
            MagentoError::no_such_entity(Phrase::new(
                "The product that was requested doesn't exist. Verify the product and try again.",
            ))
        })?;
        if !product.product_type.allows_source_items() {
            return Err(composite_not_supported_input());
        }
        let Some(row) = self.stock_item_data(sku, stock_id) else {
            return Ok(Decimal::ZERO);
        };
        if !row.is_salable {
            return Ok(Decimal::ZERO);
        }
        let item = self
            .stock_item_configuration(sku, stock_id)
            .map_err(|_| MagentoError::localized(Phrase::new(NOT_ASSIGNED)))?;
        Ok(row.quantity + self.reservations_quantity(sku, stock_id) - self.cfg(&item).min_qty())
    }

    /// `IsProductSalableInterface` (the condition chain; `AreProductsSalable` calls it per SKU).
    /// Required: composite parents must be in stock; a managed, source-managed SKU needs an
    /// in-stock item on an enabled linked source. Then the first sufficient condition wins:
    /// backorders (with a threshold ≥ 0), unmanaged stock, salable with reservations. A SKU not
    /// assigned to the stock is not salable.
    pub fn is_product_salable(&self, sku: &str, stock_id: StockId) -> bool {
        let Ok(item) = self.stock_item_configuration(sku, stock_id) else {
            return false;
        };
        let managed_sku = self.is_source_item_managed_sku(sku);
        if !managed_sku && !self.cfg(&item).is_in_stock() {
            return false;
        }
        if !self.manage_stock_disabled(&item)
            && managed_sku
            && !self.is_any_source_item_in_stock(sku, stock_id)
        {
            return false;
        }
        if self.backorders_allow(&item) || self.manage_stock_disabled(&item) {
            return true;
        }
        // GetIsQtySalable
        let Some(row) = self.stock_item_data(sku, stock_id) else {
            return false;
        };
        if !managed_sku {
            return row.is_salable;
        }
        self.salable_qty(sku, stock_id)
            .is_ok_and(|q| q > Decimal::ZERO)
    }

    /// `AreProductsSalableInterface`.
    pub fn are_products_salable(&self, skus: &[String], stock_id: StockId) -> Vec<IsSalableResult> {
        skus.iter()
            .map(|sku| IsSalableResult {
                sku: sku.clone(),
                stock_id,
                salable: self.is_product_salable(sku, stock_id),
            })
            .collect()
    }

    /// `IsProductSalableForRequestedQtyInterface` (the chain Magento also uses for
    /// `AreProductsSalableForRequestedQty` and at checkout). Fails with a `LocalizedException`
    /// for composite types.
    pub fn is_product_salable_for_requested_qty(
        &self,
        sku: &str,
        stock_id: StockId,
        requested: Decimal,
    ) -> Result<RequestedQtyResult, MagentoError> {
        if self
            .product_by_text(sku)
            .is_some_and(|p| !p.product_type.allows_source_items())
        {
            return Err(MagentoError::localized(Phrase::new(
                "Can't check requested quantity for products without Source Items support.",
            )));
        }
        let errors = match self.requested_qty_chain(sku, stock_id, requested) {
            Ok(errors) => errors,
            Err(SkuNotAssigned) => vec![SalabilityError::new(
                "requested-sku-is-not-assigned-to-given-stock",
                NOT_ASSIGNED,
            )],
        };
        Ok(RequestedQtyResult {
            sku: sku.to_owned(),
            stock_id,
            salable: errors.is_empty(),
            errors,
        })
    }

    /// `AreProductsSalableForRequestedQtyInterface`.
    pub fn are_products_salable_for_requested_qty(
        &self,
        requests: &[(String, Decimal)],
        stock_id: StockId,
    ) -> Result<Vec<RequestedQtyResult>, MagentoError> {
        requests
            .iter()
            .map(|(sku, qty)| self.is_product_salable_for_requested_qty(sku, stock_id, *qty))
            .collect()
    }

    fn requested_qty_chain(
        &self,
        sku: &str,
        stock_id: StockId,
        requested: Decimal,
    ) -> Result<Vec<SalabilityError>, SkuNotAssigned> {
        // Required: IsCorrectQtyCondition, IsAnySourceItemInStockCondition.
        let mut required = Vec::new();
        let item = self.stock_item_configuration(sku, stock_id)?;
        let cfg = self.cfg(&item);
        if let Some(e) = correct_qty_error(&cfg, requested) {
            required.push(e);
        }
        let managed_sku = self.is_source_item_managed_sku(sku);
        let any_in_stock = self.manage_stock_disabled(&item)
            || !managed_sku
            || self.is_any_source_item_in_stock(sku, stock_id);
        if !any_in_stock {
            required.push(SalabilityError::new(
                "is_any_source_item_in_stock-no_source_items_in_stock",
                "There are no source items with the in stock status",
            ));
        }
        if !required.is_empty() {
            return Ok(required);
        }
        // Sufficient: back_order (10), manage_stock (20), is_salable_with_reservations (30).
        let mut sufficient = Vec::new();
        if self.backorders_allow(&item) {
            return Ok(Vec::new());
        }
        sufficient.push(SalabilityError::new(
            "back_order-disabled",
            "Backorders are disabled",
        ));
        if self.manage_stock_disabled(&item) {
            return Ok(Vec::new());
        }
        sufficient.push(SalabilityError::new(
            "manage_stock-enabled",
            "Manage stock is enabled",
        ));
        if self.stock_item_data(sku, stock_id).is_none() {
            sufficient.push(SalabilityError::new(
                "is_salable_with_reservations-no_data",
                "The requested sku is not assigned to given stock",
            ));
            return Ok(sufficient);
        }
        let left = self.salable_qty(sku, stock_id)?;
        if num::bccomp4(left, requested) == std::cmp::Ordering::Less {
            let message = if self.config.only_x_of_y_message() {
                format!(
                    "Only {} of {} available",
                    num::php_float_string(left),
                    num::php_float_string(requested)
                )
            } else {
                "Not enough items for sale".to_owned()
            };
            sufficient.push(SalabilityError::new(
                "is_salable_with_reservations-not_enough_qty",
                message,
            ));
            return Ok(sufficient);
        }
        Ok(Vec::new())
    }

    /// `GetBackorderQty`: how many of `requested` units would be backordered (0 without
    /// backorders or without an index row), capped at `requested`.
    pub fn backorder_qty(
        &self,
        sku: &str,
        stock_id: StockId,
        requested: Decimal,
    ) -> Result<Decimal, MagentoError> {
        let item = self
            .stock_item_configuration(sku, stock_id)
            .map_err(|_| MagentoError::localized(Phrase::new(NOT_ASSIGNED)))?;
        let cfg = self.cfg(&item);
        if !(cfg.manage_stock() && matches!(cfg.backorders(), 1 | 2)) {
            return Ok(Decimal::ZERO);
        }
        if self.stock_item_data(sku, stock_id).is_none() {
            return Ok(Decimal::ZERO);
        }
        let salable = self.get_product_salable_qty(sku, stock_id)?;
        let mut qty = requested - salable - cfg.min_qty();
        if qty < Decimal::ZERO {
            qty = Decimal::ZERO;
        }
        if num::bccomp4(requested, qty) == std::cmp::Ordering::Less {
            qty = requested;
        }
        Ok(qty)
    }

    /// The legacy `StockStateInterface::checkQuoteItemQty` as MSI replaces it (`GetBackorder`):
    /// checks `max(item_qty, qty_to_check)` on the website's stock; errors set `has_error`,
    /// `message`, `quote_message`, `quote_message_index = "qty"`; otherwise the "back order
    /// the remaining" notice (backorders = 2) and `item_backorders`.
    pub fn check_quote_item_qty(
        &self,
        sku: &str,
        website: &WebsiteCode,
        item_qty: Decimal,
        qty_to_check: Decimal,
    ) -> Result<QuoteItemQtyCheck, MagentoError> {
        let qty = item_qty.max(qty_to_check);
        let stock_id = self.stock_for_website(website)?;
        let result = self.is_product_salable_for_requested_qty(sku, stock_id, qty)?;
        let mut out = QuoteItemQtyCheck::default();
        if !result.salable {
            for error in &result.errors {
                out.has_error = true;
                out.message = Some(error.message.clone());
                out.quote_message = Some(error.message.clone());
                out.quote_message_index = Some("qty".to_owned());
                out.error_code = Some(error.code.clone());
            }
            return Ok(out);
        }
        let item = self
            .stock_item_configuration(sku, stock_id)
            .map_err(|_| MagentoError::localized(Phrase::new(NOT_ASSIGNED)))?;
        let cfg = self.cfg(&item);
        if cfg.manage_stock() && cfg.backorders() == 2 {
            let backordered = self.backorder_qty(sku, stock_id, qty)?;
            if backordered > Decimal::ZERO {
                out.message = Some(
                    Phrase::positional(
                        "We don't have as many quantity as you requested, but we'll back order the remaining %1.",
                        vec![num::decimal_to_json(backordered)],
                    )
                    .render(),
                );
            }
        }
        let backordered = self.backorder_qty(sku, stock_id, qty)?;
        if backordered > Decimal::ZERO {
            out.item_backorders = Some(backordered);
        }
        Ok(out)
    }
}

/// `IsCorrectQtyCondition`: minimum sale quantity, maximum sale quantity, quantity increments,
/// decimal quantities — the first failing check.
fn correct_qty_error(
    cfg: &StockItemConfiguration<'_>,
    requested: Decimal,
) -> Option<SalabilityError> {
    let min_sale = cfg.min_sale_qty();
    if !min_sale.is_zero() && requested < min_sale {
        return Some(SalabilityError::new(
            "is_correct_qty-min_sale_qty",
            Phrase::positional(
                "The fewest you may purchase is %1.",
                vec![json!(num::php_float_string(min_sale))],
            )
            .render(),
        ));
    }
    let max_sale = cfg.max_sale_qty();
    if !max_sale.is_zero() && requested > max_sale {
        return Some(SalabilityError::new(
            "is_correct_qty-max_sale_qty",
            "The requested qty exceeds the maximum qty allowed in shopping cart",
        ));
    }
    let increments = cfg.qty_increments();
    if !increments.is_zero() && !exact_division_is_zero(requested, increments) {
        return Some(SalabilityError::new(
            "is_correct_qty-qty_increment",
            Phrase::positional(
                "You can buy this product only in quantities of %1 at a time.",
                vec![json!(num::php_float_string(increments))],
            )
            .render(),
        ));
    }
    if !cfg.is_qty_decimal() && requested.fract() != Decimal::ZERO {
        return Some(SalabilityError::new(
            "is_correct_qty-is_qty_decimal",
            "You cannot use decimal quantity for this product.",
        ));
    }
    None
}

/// `Math\Division::getExactDivision() === 0`: the remainder (`fmod`) is within
/// `divisor / 10000` of 0 or of the divisor.
fn exact_division_is_zero(dividend: Decimal, divisor: Decimal) -> bool {
    let epsilon = (divisor / Decimal::from(10_000)).abs();
    let remainder = dividend % divisor;
    (remainder - divisor).abs() < epsilon || remainder.abs() < epsilon
}

fn composite_not_supported_input() -> MagentoError {
    MagentoError::input(Phrase::new(
        "Can't check requested quantity for products without Source Items support.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn exact_division_tolerates_float_noise_like_magento() {
        assert!(exact_division_is_zero(dec!(9), dec!(3)));
        assert!(!exact_division_is_zero(dec!(1), dec!(3)));
        assert!(!exact_division_is_zero(dec!(0.9999), dec!(1)));
        assert!(exact_division_is_zero(dec!(2.99999), dec!(3)));
    }
}
