//! Websites and stores, sources, stocks, stock-source links and sales channels (spec §1.1–§1.2,
//! §2.2, §2.5), with the validator chains and the default source / default stock guards.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{MagentoError, Phrase};
use super::ids::{SourceCode, StockId, StoreCode, WebsiteCode, has_template};
use super::model::{Inventory, SalesChannel, Source, Stock, StockSourceLink, Store, Website};
use super::num;

/// Source fields as a caller sends them (`SourceInterface`); absent fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceInput {
    /// `source_code`
    pub source_code: Option<String>,
    /// `name`
    pub name: Option<String>,
    /// `enabled` (default true)
    pub enabled: Option<bool>,
    /// `description`
    pub description: Option<String>,
    /// `latitude`
    #[serde(with = "num::json_number::option")]
    pub latitude: Option<rust_decimal::Decimal>,
    /// `longitude`
    #[serde(with = "num::json_number::option")]
    pub longitude: Option<rust_decimal::Decimal>,
    /// `country_id`
    pub country_id: Option<String>,
    /// `region_id`
    pub region_id: Option<i64>,
    /// `region`
    pub region: Option<String>,
    /// `city`
    pub city: Option<String>,
    /// `street`
    pub street: Option<String>,
    /// `postcode`
    pub postcode: Option<String>,
    /// `contact_name`
    pub contact_name: Option<String>,
    /// `email`
    pub email: Option<String>,
    /// `phone`
    pub phone: Option<String>,
    /// `fax`
    pub fax: Option<String>,
    /// `use_default_carrier_config`
    pub use_default_carrier_config: Option<bool>,
}

impl SourceInput {
    /// The input describing an existing source (to change a few fields and save it back).
    pub fn from_source(source: &Source) -> Self {
        Self {
            source_code: Some(source.source_code.as_str().to_owned()),
            name: Some(source.name.clone()),
            enabled: Some(source.enabled),
            description: source.description.clone(),
            latitude: source.latitude,
            longitude: source.longitude,
            country_id: Some(source.country_id.clone()),
            region_id: source.region_id,
            region: source.region.clone(),
            city: source.city.clone(),
            street: source.street.clone(),
            postcode: Some(source.postcode.clone()),
            contact_name: source.contact_name.clone(),
            email: source.email.clone(),
            phone: source.phone.clone(),
            fax: source.fax.clone(),
            use_default_carrier_config: Some(source.use_default_carrier_config),
        }
    }
}

/// A sales channel as sent (type and code may be missing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SalesChannelInput {
    /// `type`
    #[serde(rename = "type")]
    pub channel_type: Option<String>,
    /// `code`
    pub code: Option<String>,
}

/// Stock fields as sent (`StockInterface` with `extension_attributes.sales_channels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StockInput {
    /// `stock_id` (absent = new stock with the next id)
    pub stock_id: Option<i64>,
    /// `name`
    pub name: Option<String>,
    /// `extension_attributes.sales_channels`; `None` unassigns every channel, like Magento.
    pub sales_channels: Option<Vec<SalesChannelInput>>,
}

/// A stock with its channels, as `StockRepository::get` / the stock resolver return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    /// `stock_id`
    pub stock_id: StockId,
    /// `name`
    pub name: String,
    /// `extension_attributes.sales_channels` (ordered by type, then code)
    pub sales_channels: Vec<SalesChannel>,
}

/// A stock-source link as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkInput {
    /// `stock_id`
    pub stock_id: Option<i64>,
    /// `source_code`
    pub source_code: Option<String>,
    /// `priority`
    pub priority: Option<i64>,
}

fn empty_error(field: &str) -> Phrase {
    Phrase::named("\"%field\" can not be empty.", [("field", json!(field))])
}

fn whitespace_error(field: &str) -> Phrase {
    Phrase::named(
        "\"%field\" can not contain whitespaces.",
        [("field", json!(field))],
    )
}

impl Inventory {
    // ----- websites and stores -------------------------------------------------------------

    /// Creates a website (and, when given, its store view). Magento assigns every new website
    /// to the default stock (`AssignWebsiteToDefaultStockPlugin`).
    pub fn create_website(
        &mut self,
        code: &WebsiteCode,
        store: Option<&StoreCode>,
    ) -> Result<u32, MagentoError> {
        if self.websites.iter().any(|w| &w.code == code) || code.as_str() == "admin" {
            return Err(MagentoError::could_not_save(Phrase::new(
                "Website with the same code already exists.",
            )));
        }
        let id = self.next_website_id;
        self.next_website_id += 1;
        self.websites.push(Website {
            website_id: id,
            code: code.clone(),
        });
        if let Some(store) = store {
            self.stores.push(Store {
                code: store.clone(),
                website: code.clone(),
            });
        }
        self.channels
            .entry(code.clone())
            .or_insert(StockId::DEFAULT);
        Ok(id)
    }

    /// Deletes a website, its stores and its sales-channel link (`DeleteWebsiteToStockLinkPlugin`).
    pub fn delete_website(&mut self, code: &WebsiteCode) -> Result<(), MagentoError> {
        if !self.websites.iter().any(|w| &w.code == code) {
            return Err(MagentoError::no_such_entity(Phrase::named(
                "The website with code %1 that was requested wasn't found. Verify the website and try again.",
                [("1", json!(code.as_str()))],
            )));
        }
        self.websites.retain(|w| &w.code != code);
        self.stores.retain(|s| &s.website != code);
        self.channels.remove(code);
        Ok(())
    }

    /// Whether a website exists (`admin` always does).
    pub fn website_exists(&self, code: &str) -> bool {
        code == "admin" || self.websites.iter().any(|w| w.code.as_str() == code)
    }

    /// The website of a store view (`default` is the default store of `base`).
    pub fn store_website(&self, store: &str) -> Option<WebsiteCode> {
        self.stores
            .iter()
            .find(|s| s.code.as_str() == store)
            .map(|s| s.website.clone())
    }

    /// `GetAssignedStockIdForWebsite`: the stock a website sells from, if linked.
    pub fn assigned_stock_id_for_website(&self, code: &str) -> Option<StockId> {
        self.channels
            .iter()
            .find(|(w, _)| w.as_str() == code)
            .map(|(_, s)| *s)
    }

    /// `StockByWebsiteIdResolver` for a website code: its stock, or "No linked stock found".
    pub fn stock_for_website(&self, code: &WebsiteCode) -> Result<StockId, MagentoError> {
        if code.as_str() == "admin" {
            return Ok(StockId::DEFAULT);
        }
        self.assigned_stock_id_for_website(code.as_str())
            .ok_or_else(no_linked_stock)
    }

    // ----- sources -------------------------------------------------------------------------

    /// `SourceRepositoryInterface::save` (create or update). Runs the source validator chain
    /// (name, code, postcode, country, default-source-disable) and reports every violation as
    /// one `ValidationException("Validation Failed")`. Sources are never deleted.
    pub fn save_source(&mut self, input: &SourceInput) -> Result<(), MagentoError> {
        let mut errors = Vec::new();
        let name = input.name.clone().unwrap_or_default();
        if name.trim().is_empty() {
            errors.push(empty_error("name"));
        }
        if has_template(&name) {
            errors.push(Phrase::new("Validation Failed"));
        }
        let code_text = input.source_code.clone().unwrap_or_default();
        if code_text.trim().is_empty() {
            errors.push(empty_error("source_code"));
        }
        if code_text.chars().any(char::is_whitespace) {
            errors.push(whitespace_error("source_code"));
        }
        if has_template(&code_text) {
            errors.push(Phrase::new("Validation Failed"));
        }
        let postcode = input.postcode.clone().unwrap_or_default();
        if postcode.trim().is_empty() {
            errors.push(empty_error("postcode"));
        }
        let country = input.country_id.clone().unwrap_or_default();
        if country.trim().is_empty() {
            errors.push(empty_error("country_id"));
        }
        let enabled = input.enabled.unwrap_or(true);
        if code_text == "default" && !enabled {
            errors.push(Phrase::new("Default source can not be disabled."));
        }
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new("Validation Failed"),
                errors,
            ));
        }
        let code = SourceCode::parse(&code_text)
            .map_err(|_| MagentoError::could_not_save(Phrase::new("Could not save Source")))?;
        let previous = self.sources.get(&code).cloned();
        let keep = |given: &Option<String>, old: Option<&Option<String>>| {
            given.clone().or_else(|| old.cloned().flatten())
        };
        let source = Source {
            source_code: code.clone(),
            name,
            enabled,
            description: keep(
                &input.description,
                previous.as_ref().map(|p| &p.description),
            ),
            latitude: input
                .latitude
                .or(previous.as_ref().and_then(|p| p.latitude)),
            longitude: input
                .longitude
                .or(previous.as_ref().and_then(|p| p.longitude)),
            country_id: country,
            region_id: input
                .region_id
                .or(previous.as_ref().and_then(|p| p.region_id)),
            region: keep(&input.region, previous.as_ref().map(|p| &p.region)),
            city: keep(&input.city, previous.as_ref().map(|p| &p.city)),
            street: keep(&input.street, previous.as_ref().map(|p| &p.street)),
            postcode,
            contact_name: keep(
                &input.contact_name,
                previous.as_ref().map(|p| &p.contact_name),
            ),
            email: keep(&input.email, previous.as_ref().map(|p| &p.email)),
            phone: keep(&input.phone, previous.as_ref().map(|p| &p.phone)),
            fax: keep(&input.fax, previous.as_ref().map(|p| &p.fax)),
            use_default_carrier_config: input
                .use_default_carrier_config
                .or(previous.as_ref().map(|p| p.use_default_carrier_config))
                .unwrap_or(true),
        };
        // Enabling or disabling a source only invalidates the stock index
        // (`InvalidateAfterEnablingOrDisablingSourcePlugin`); rows change at the next reindex.
        self.sources.insert(code, source);
        Ok(())
    }

    /// `SourceRepositoryInterface::get`.
    pub fn get_source(&self, code: &str) -> Result<&Source, MagentoError> {
        self.sources
            .iter()
            .find(|(c, _)| c.as_str() == code)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                MagentoError::no_such_entity(Phrase::named(
                    "Source with code \"%value\" does not exist.",
                    [("value", json!(code))],
                ))
            })
    }

    /// `IsSingleSourceModeInterface`: fewer than two **enabled** sources.
    pub fn is_single_source_mode(&self) -> bool {
        self.sources.values().filter(|s| s.enabled).count() < 2
    }

    // ----- stocks and sales channels -------------------------------------------------------

    /// `StockRepositoryInterface::save`: validates (name, then every sales channel: type, code,
    /// website existence), creates or updates the stock, then replaces its sales channels
    /// (`SaveSalesChannelsLinksPlugin`): websites listed move to this stock, websites dropped
    /// fall back to the default stock. Returns the stock id.
    pub fn save_stock(&mut self, input: &StockInput) -> Result<StockId, MagentoError> {
        let mut errors = Vec::new();
        let name = input.name.clone().unwrap_or_default();
        if name.trim().is_empty() {
            errors.push(empty_error("name"));
        }
        if let Some(channels) = &input.sales_channels {
            for channel in channels {
                let channel_type = channel.channel_type.clone().unwrap_or_default();
                if channel_type.trim().is_empty() {
                    errors.push(empty_error("type"));
                }
                let code = channel.code.clone().unwrap_or_default();
                if code.trim().is_empty() {
                    errors.push(empty_error("code"));
                }
                if channel_type == "website" && !self.website_exists(&code) {
                    errors.push(Phrase::named(
                        "The website with code \"%code\" does not exist.",
                        [("code", json!(code))],
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new("Validation Failed"),
                errors,
            ));
        }
        let stock_id = match input.stock_id {
            Some(id) => StockId::parse(id)
                .map_err(|_| MagentoError::could_not_save(Phrase::new("Could not save Stock")))?,
            None => {
                let next = self
                    .next_stock_id
                    .max(self.stocks.keys().map(|s| s.get() + 1).max().unwrap_or(1));
                StockId::parse(i64::from(next)).map_err(|_| {
                    MagentoError::could_not_save(Phrase::new("Could not save Stock"))
                })?
            }
        };
        self.next_stock_id = self.next_stock_id.max(stock_id.get() + 1);
        self.stocks.insert(stock_id, Stock { stock_id, name });
        let wanted: Vec<WebsiteCode> = input
            .sales_channels
            .iter()
            .flatten()
            .filter(|c| c.channel_type.as_deref() == Some("website"))
            .filter_map(|c| c.code.as_deref().and_then(|c| WebsiteCode::parse(c).ok()))
            .collect();
        self.replace_sales_channels(stock_id, &wanted);
        Ok(stock_id)
    }

    /// Replaces the website channels of a stock: listed websites move here; websites this
    /// stock loses go back to the default stock.
    pub(crate) fn replace_sales_channels(&mut self, stock_id: StockId, websites: &[WebsiteCode]) {
        let before: Vec<WebsiteCode> = self
            .channels
            .iter()
            .filter(|(_, s)| **s == stock_id)
            .map(|(w, _)| w.clone())
            .collect();
        self.channels.retain(|_, s| *s != stock_id);
        for w in websites {
            self.channels.insert(w.clone(), stock_id);
        }
        for w in before {
            if !websites.contains(&w) {
                self.channels.insert(w, StockId::DEFAULT);
            }
        }
    }

    /// Assigns websites to a stock: `append` keeps the stock's current channels, `replace`
    /// sets the full list (a stock save with that channel list).
    pub fn assign_sales_channels(
        &mut self,
        stock_id: StockId,
        websites: &[WebsiteCode],
        append: bool,
    ) -> Result<(), MagentoError> {
        let stock = self.get_stock(stock_id)?;
        let mut list: Vec<SalesChannelInput> = if append {
            stock
                .sales_channels
                .iter()
                .map(|c| SalesChannelInput {
                    channel_type: Some(c.channel_type.clone()),
                    code: Some(c.code.clone()),
                })
                .collect()
        } else {
            Vec::new()
        };
        for w in websites {
            if !list.iter().any(|c| c.code.as_deref() == Some(w.as_str())) {
                list.push(SalesChannelInput {
                    channel_type: Some("website".to_owned()),
                    code: Some(w.as_str().to_owned()),
                });
            }
        }
        self.save_stock(&StockInput {
            stock_id: Some(i64::from(stock_id)),
            name: Some(stock.name),
            sales_channels: Some(list),
        })?;
        Ok(())
    }

    /// `StockRepositoryInterface::get` with its sales channels.
    pub fn get_stock(&self, stock_id: StockId) -> Result<StockView, MagentoError> {
        let stock = self.stocks.get(&stock_id).ok_or_else(|| {
            MagentoError::no_such_entity(Phrase::named(
                "Stock with id \"%value\" does not exist.",
                [("value", json!(i64::from(stock_id)))],
            ))
        })?;
        Ok(self.stock_view(stock))
    }

    /// `StockRepositoryInterface::get` for any integer (unknown and non-positive ids are
    /// "does not exist").
    pub fn get_stock_by_number(&self, stock_id: i64) -> Result<StockView, MagentoError> {
        match StockId::parse(stock_id) {
            Ok(id) => self.get_stock(id),
            Err(_) => Err(MagentoError::no_such_entity(Phrase::named(
                "Stock with id \"%value\" does not exist.",
                [("value", json!(stock_id))],
            ))),
        }
    }

    fn stock_view(&self, stock: &Stock) -> StockView {
        let mut sales_channels: Vec<SalesChannel> = self
            .channels
            .iter()
            .filter(|(_, s)| **s == stock.stock_id)
            .map(|(w, _)| SalesChannel::website(w))
            .collect();
        sales_channels.sort();
        StockView {
            stock_id: stock.stock_id,
            name: stock.name.clone(),
            sales_channels,
        }
    }

    /// Every stock with its channels (`StockRepository::getList` without criteria).
    pub fn list_stocks(&self) -> Vec<StockView> {
        self.stocks.values().map(|s| self.stock_view(s)).collect()
    }

    /// `StockRepositoryInterface::deleteById`: the default stock and stocks with sales channels
    /// cannot be deleted; unknown ids are "There is no stock with …". Links of the stock go
    /// with it (FK cascade).
    pub fn delete_stock(&mut self, stock_id: i64) -> Result<(), MagentoError> {
        if stock_id == 1 {
            return Err(MagentoError::could_not_delete(Phrase::new(
                "Default Stock could not be deleted.",
            )));
        }
        let id = StockId::parse(stock_id).ok();
        if let Some(id) = id
            && self.channels.values().any(|s| *s == id)
        {
            return Err(MagentoError::could_not_delete(Phrase::new(
                "Stock has at least one sale channel and could not be deleted.",
            )));
        }
        let Some(id) = id.filter(|i| self.stocks.contains_key(i)) else {
            return Err(MagentoError::no_such_entity(Phrase::named(
                "There is no stock with \"%fieldValue\" for \"%fieldName\". Verify and try again.",
                [
                    ("fieldName", json!("stock_id")),
                    ("fieldValue", json!(stock_id)),
                ],
            )));
        };
        self.stocks.remove(&id);
        self.links.retain(|l| l.stock_id != id);
        self.index.remove(&id);
        Ok(())
    }

    /// `StockResolverInterface::execute(type, code)`: the stock of a sales channel, or
    /// `NoSuchEntityException("No linked stock found")`.
    pub fn resolve_stock(&self, channel_type: &str, code: &str) -> Result<StockView, MagentoError> {
        let stock_id = if channel_type == "website" && code == "admin" {
            Some(StockId::DEFAULT)
        } else if channel_type == "website" {
            self.assigned_stock_id_for_website(code)
        } else {
            None
        };
        let stock_id = stock_id.ok_or_else(no_linked_stock)?;
        self.get_stock(stock_id)
    }

    // ----- stock-source links --------------------------------------------------------------

    /// `StockSourceLinksSaveInterface`: validates every link (source code, stock id, a priority
    /// above 0, nothing may touch the default source or stock except `default`→1), then upserts
    /// priorities. Link changes only invalidate the index (rows change at the next reindex).
    pub fn save_stock_source_links(&mut self, links: &[LinkInput]) -> Result<(), MagentoError> {
        if links.is_empty() {
            return Err(MagentoError::input_data_is_empty());
        }
        let mut errors = Vec::new();
        for link in links {
            let code = link.source_code.clone().unwrap_or_default();
            if code.trim().is_empty() {
                errors.push(empty_error("source_code"));
            }
            if code.chars().any(char::is_whitespace) {
                errors.push(whitespace_error("source_code"));
            }
            if link.stock_id.is_none() {
                errors.push(empty_error("stock_id"));
            }
            if link.priority.unwrap_or(0) <= 0 {
                errors.push(Phrase::named(
                    "\"%field\" should be greater then 0.",
                    [("field", json!("priority"))],
                ));
            }
            let initial = link.stock_id == Some(1) && code == "default";
            if !initial && (link.stock_id == Some(1) || code == "default") {
                errors.push(Phrase::new(
                    "Can not save link related to Default Source or Default Stock",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(MagentoError::validation(
                Phrase::new("Validation Failed"),
                errors,
            ));
        }
        let could_not_save =
            || MagentoError::could_not_save(Phrase::new("Could not save StockSourceLinks"));
        let mut parsed = Vec::new();
        for link in links {
            let stock = link
                .stock_id
                .and_then(|s| StockId::parse(s).ok())
                .filter(|s| self.stocks.contains_key(s))
                .ok_or_else(could_not_save)?;
            let code = link
                .source_code
                .as_deref()
                .and_then(|c| SourceCode::parse(c).ok())
                .filter(|c| self.sources.contains_key(c))
                .ok_or_else(could_not_save)?;
            let priority =
                u32::try_from(link.priority.unwrap_or(1)).map_err(|_| could_not_save())?;
            parsed.push((stock, code, priority));
        }
        for (stock_id, source_code, priority) in parsed {
            if let Some(existing) = self
                .links
                .iter_mut()
                .find(|l| l.stock_id == stock_id && l.source_code == source_code)
            {
                existing.priority = priority;
            } else {
                self.links.push(StockSourceLink {
                    stock_id,
                    source_code,
                    priority,
                });
            }
        }
        Ok(())
    }

    /// `StockSourceLinksDeleteInterface`: links touching the default source or stock cannot be
    /// deleted.
    pub fn delete_stock_source_links(
        &mut self,
        links: &[(StockId, SourceCode)],
    ) -> Result<(), MagentoError> {
        if links.is_empty() {
            return Err(MagentoError::input_data_is_empty());
        }
        for (stock, source) in links {
            if stock.is_default() || source.is_default() {
                return Err(MagentoError::localized(Phrase::new(
                    "Can not delete link related to Default Source or Default Stock",
                )));
            }
        }
        self.links.retain(|l| {
            !links
                .iter()
                .any(|(s, c)| *s == l.stock_id && *c == l.source_code)
        });
        Ok(())
    }

    /// `GetSourcesAssignedToStockOrderedByPriority`: every linked source, disabled ones
    /// included, by ascending priority (empty for an unknown stock).
    pub fn sources_assigned_to_stock(&self, stock_id: StockId) -> Vec<Source> {
        let mut links: Vec<(usize, &StockSourceLink)> = self
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.stock_id == stock_id)
            .collect();
        links.sort_by_key(|(i, l)| (l.priority, *i));
        links
            .into_iter()
            .filter_map(|(_, l)| self.sources.get(&l.source_code).cloned())
            .collect()
    }

    /// Codes of the enabled sources linked to a stock, by priority.
    pub(crate) fn enabled_source_codes(&self, stock_id: StockId) -> Vec<SourceCode> {
        self.sources_assigned_to_stock(stock_id)
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| s.source_code)
            .collect()
    }

    /// Stocks a source is linked to.
    pub(crate) fn stocks_of_source(&self, source: &SourceCode) -> Vec<StockId> {
        let mut out: Vec<StockId> = self
            .links
            .iter()
            .filter(|l| &l.source_code == source)
            .map(|l| l.stock_id)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn no_linked_stock() -> MagentoError {
    MagentoError::no_such_entity(Phrase::new("No linked stock found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(code: &str, name: &str) -> SourceInput {
        SourceInput {
            source_code: Some(code.to_owned()),
            name: Some(name.to_owned()),
            postcode: Some("00000".to_owned()),
            country_id: Some("US".to_owned()),
            ..SourceInput::default()
        }
    }

    #[test]
    fn source_validation_reports_every_violation_in_chain_order() {
        let mut inv = Inventory::new();
        let err = inv
            .save_source(&SourceInput {
                source_code: Some("a b".to_owned()),
                ..SourceInput::default()
            })
            .unwrap_err();
        let raw: Vec<String> = err.errors.iter().map(|e| e.render()).collect();
        assert_eq!(
            raw,
            vec![
                "\"name\" can not be empty.",
                "\"source_code\" can not contain whitespaces.",
                "\"postcode\" can not be empty.",
                "\"country_id\" can not be empty."
            ]
        );
        assert_eq!(err.message.raw(), "Validation Failed");
    }

    #[test]
    fn default_source_cannot_be_disabled() {
        let mut inv = Inventory::new();
        let mut input = SourceInput::from_source(&Source::default_source());
        input.enabled = Some(false);
        let err = inv.save_source(&input).unwrap_err();
        assert_eq!(err.errors[0].raw(), "Default source can not be disabled.");
    }

    #[test]
    fn links_may_not_touch_the_default_stock() {
        let mut inv = Inventory::new();
        inv.save_source(&source("eu-1", "EU")).unwrap();
        let err = inv
            .save_stock_source_links(&[
                LinkInput {
                    stock_id: Some(1),
                    source_code: Some("default".to_owned()),
                    priority: Some(1),
                },
                LinkInput {
                    stock_id: Some(1),
                    source_code: Some("eu-1".to_owned()),
                    priority: Some(1),
                },
            ])
            .unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(
            err.errors[0].raw(),
            "Can not save link related to Default Source or Default Stock"
        );
    }

    #[test]
    fn dropped_website_falls_back_to_the_default_stock() {
        let mut inv = Inventory::new();
        let eu = WebsiteCode::parse("eu").unwrap();
        inv.create_website(&eu, None).unwrap();
        let id = inv
            .save_stock(&StockInput {
                stock_id: None,
                name: Some("EU".to_owned()),
                sales_channels: Some(vec![SalesChannelInput {
                    channel_type: Some("website".to_owned()),
                    code: Some("eu".to_owned()),
                }]),
            })
            .unwrap();
        assert_eq!(inv.assigned_stock_id_for_website("eu"), Some(id));
        assert!(inv.delete_stock(i64::from(id)).is_err());
        inv.save_stock(&StockInput {
            stock_id: Some(i64::from(id)),
            name: Some("EU".to_owned()),
            sales_channels: Some(vec![]),
        })
        .unwrap();
        assert_eq!(
            inv.assigned_stock_id_for_website("eu"),
            Some(StockId::DEFAULT)
        );
        assert!(inv.delete_stock(i64::from(id)).is_ok());
        assert_eq!(
            inv.delete_stock(1).unwrap_err().rendered(),
            "Default Stock could not be deleted."
        );
    }
}
