//! POS ↔ Commerce mapping: which POS location is which shop and which MSI source, which POS
//! variation is which Commerce SKU, which POS tax is which Commerce tax class.
//!
//! The mapping is configuration a person writes (or accepts from [`propose_items_by_pos_sku`]);
//! nothing here guesses by name. [`validate`] holds a [`MappingTable`] against what the POS
//! ([`PosSide`]) and Commerce ([`CommerceSide`]) say exists and returns **every** problem at
//! once, each with a machine-readable [`MappingProblemKind`], a [`Severity`], the ids
//! involved and a sentence a person can act on. [`MappingIndex`] is the lookup the rest of
//! the system uses; [`resolve`] builds it only when no problem is an error.
//!
//! | kind | severity | what it means |
//! |---|---|---|
//! | `unmapped_location` | error | an active POS location has no mapping |
//! | `unknown_pos_location` | error | the mapping names a location the POS does not list |
//! | `inactive_location_mapped` | warning | the mapping names an inactive POS location |
//! | `duplicate_location_mapping` | error | a POS location is mapped twice |
//! | `duplicate_store_code` | error | one store code names two POS locations |
//! | `source_shared_by_locations` | error | two POS locations feed one MSI source (their levels would overwrite each other) |
//! | `unknown_source` | error | the source does not exist in Commerce |
//! | `source_disabled` | warning | the source exists but is disabled |
//! | `source_not_linked_to_stock` | error | the source is in no MSI stock, so its quantities never reach a sales channel |
//! | `duplicate_variation_mapping` | error | a POS variation is mapped twice |
//! | `sku_used_by_two_variations` | error | two POS variations map to one Commerce SKU |
//! | `sku_missing_in_commerce` | error | the mapped SKU does not exist in Commerce |
//! | `variation_missing_in_pos` | error | the mapped variation does not exist in the POS |
//! | `unmapped_variation` | warning | a stock-tracked POS variation has no SKU mapping (its stock is not synced) |
//! | `duplicate_tax_mapping` | error | a POS tax is mapped twice |
//! | `unmapped_tax` | error | a POS tax has no Commerce tax class (sales using it cannot be booked) |
//! | `unknown_tax_class` | error | the mapped tax class does not exist in Commerce |
//! | `unknown_pos_tax` | warning | the mapping names a POS tax the POS does not list |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pos::{
    PosLocation, PosLocationId, PosTaxId, PosVariation, PosVariationId, Sku, SourceCode, StoreCode,
};
use crate::tax::TaxClass;

/// One POS location's place in Commerce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationMapping {
    pub pos_location: PosLocationId,
    /// The retailer's code for the shop (what till files carry).
    pub store: StoreCode,
    /// The MSI source whose quantities this location's stock sets.
    pub source: SourceCode,
}

/// One POS variation's Commerce SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMapping {
    pub variation: PosVariationId,
    pub sku: Sku,
}

/// One POS tax's Commerce product tax class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxMapping {
    pub pos_tax: PosTaxId,
    pub tax_class: TaxClass,
}

/// The mapping as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingTable {
    #[serde(default)]
    pub locations: Vec<LocationMapping>,
    #[serde(default)]
    pub items: Vec<ItemMapping>,
    #[serde(default)]
    pub taxes: Vec<TaxMapping>,
}

/// What the POS says exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosSide {
    #[serde(default)]
    pub locations: Vec<PosLocation>,
    #[serde(default)]
    pub variations: Vec<PosVariation>,
    #[serde(default)]
    pub taxes: Vec<PosTaxId>,
}

/// One MSI source as Commerce reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommerceSource {
    pub code: SourceCode,
    pub enabled: bool,
    /// The MSI stocks the source is linked to (`stock_id`s); empty = linked to none.
    #[serde(default)]
    pub stock_ids: Vec<u32>,
}

/// What Commerce says exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommerceSide {
    #[serde(default)]
    pub sources: Vec<CommerceSource>,
    #[serde(default)]
    pub skus: Vec<Sku>,
    #[serde(default)]
    pub tax_classes: Vec<TaxClass>,
}

/// How bad a problem is: errors stop [`resolve`]; warnings are reported and tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// The machine-readable kind of a mapping problem (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingProblemKind {
    UnmappedLocation,
    UnknownPosLocation,
    InactiveLocationMapped,
    DuplicateLocationMapping,
    DuplicateStoreCode,
    SourceSharedByLocations,
    UnknownSource,
    SourceDisabled,
    SourceNotLinkedToStock,
    DuplicateVariationMapping,
    SkuUsedByTwoVariations,
    SkuMissingInCommerce,
    VariationMissingInPos,
    UnmappedVariation,
    DuplicateTaxMapping,
    UnmappedTax,
    UnknownTaxClass,
    UnknownPosTax,
}

impl MappingProblemKind {
    pub fn severity(self) -> Severity {
        use MappingProblemKind::*;
        match self {
            InactiveLocationMapped | SourceDisabled | UnmappedVariation | UnknownPosTax => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
    }
}

/// The ids a problem is about (only the relevant ones are set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemSubject {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pos_locations: Vec<PosLocationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variations: Vec<PosVariationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_tax: Option<PosTaxId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_class: Option<TaxClass>,
}

/// One mapping problem: kind, severity, the ids involved, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingProblem {
    pub kind: MappingProblemKind,
    pub severity: Severity,
    pub subject: ProblemSubject,
    pub message: String,
}

impl fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.message)
    }
}

/// How Commerce compares SKUs: case-insensitively (MySQL's `_ci` collation on `sku`).
pub fn sku_key(sku: &Sku) -> String {
    sku.as_str().to_lowercase()
}

fn problem(kind: MappingProblemKind, subject: ProblemSubject, message: String) -> MappingProblem {
    MappingProblem {
        kind,
        severity: kind.severity(),
        subject,
        message,
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Problems inside the table alone (duplicates), independent of either side.
fn table_problems(table: &MappingTable) -> Vec<MappingProblem> {
    use MappingProblemKind::*;
    let mut out = Vec::new();

    let mut by_location: BTreeMap<&PosLocationId, Vec<&LocationMapping>> = BTreeMap::new();
    let mut by_store: BTreeMap<&StoreCode, BTreeSet<&PosLocationId>> = BTreeMap::new();
    let mut by_source: BTreeMap<&SourceCode, BTreeSet<&PosLocationId>> = BTreeMap::new();
    for m in &table.locations {
        by_location.entry(&m.pos_location).or_default().push(m);
        by_store
            .entry(&m.store)
            .or_default()
            .insert(&m.pos_location);
        by_source
            .entry(&m.source)
            .or_default()
            .insert(&m.pos_location);
    }
    for (loc, rows) in &by_location {
        if rows.len() > 1 {
            out.push(problem(
                DuplicateLocationMapping,
                ProblemSubject {
                    pos_locations: vec![(*loc).clone()],
                    ..Default::default()
                },
                format!(
                    "POS location '{loc}' is mapped {} times; keep one row for it in the location mapping.",
                    rows.len()
                ),
            ));
        }
    }
    for (store, locs) in &by_store {
        if locs.len() > 1 {
            let locs: Vec<PosLocationId> = locs.iter().map(|l| (*l).clone()).collect();
            out.push(problem(
                DuplicateStoreCode,
                ProblemSubject {
                    pos_locations: locs.clone(),
                    store: Some((*store).clone()),
                    ..Default::default()
                },
                format!(
                    "Store code '{store}' is given to POS locations {}; give each shop its own store code.",
                    list(&locs)
                ),
            ));
        }
    }
    for (source, locs) in &by_source {
        if locs.len() > 1 {
            let locs: Vec<PosLocationId> = locs.iter().map(|l| (*l).clone()).collect();
            out.push(problem(
                SourceSharedByLocations,
                ProblemSubject {
                    pos_locations: locs.clone(),
                    source: Some((*source).clone()),
                    ..Default::default()
                },
                format!(
                    "POS locations {} all feed MSI source '{source}', so their stock levels would overwrite each other; give each location its own source.",
                    list(&locs)
                ),
            ));
        }
    }

    let mut by_variation: BTreeMap<&PosVariationId, BTreeSet<&Sku>> = BTreeMap::new();
    // Magento compares SKUs case-insensitively (MySQL collation), so `ABC` and `abc` are one
    // product; the first spelling met is the one named.
    let mut by_sku: BTreeMap<String, (&Sku, BTreeSet<&PosVariationId>)> = BTreeMap::new();
    let mut variation_rows: BTreeMap<&PosVariationId, usize> = BTreeMap::new();
    for m in &table.items {
        by_variation.entry(&m.variation).or_default().insert(&m.sku);
        by_sku
            .entry(sku_key(&m.sku))
            .or_insert_with(|| (&m.sku, BTreeSet::new()))
            .1
            .insert(&m.variation);
        *variation_rows.entry(&m.variation).or_default() += 1;
    }
    for (var, n) in &variation_rows {
        if *n > 1 {
            let skus: Vec<Sku> = by_variation
                .get(var)
                .map(|s| s.iter().map(|s| (*s).clone()).collect())
                .unwrap_or_default();
            out.push(problem(
                DuplicateVariationMapping,
                ProblemSubject {
                    variations: vec![(*var).clone()],
                    ..Default::default()
                },
                format!(
                    "POS variation '{var}' is mapped {n} times (to {}); keep one row for it.",
                    list(&skus)
                ),
            ));
        }
    }
    for (sku, vars) in by_sku.values() {
        if vars.len() > 1 {
            let vars: Vec<PosVariationId> = vars.iter().map(|v| (*v).clone()).collect();
            out.push(problem(
                SkuUsedByTwoVariations,
                ProblemSubject {
                    variations: vars.clone(),
                    sku: Some((*sku).clone()),
                    ..Default::default()
                },
                format!(
                    "Commerce SKU '{sku}' is mapped from POS variations {}; their stock would overwrite each other. Map each variation to its own SKU, or merge them in the POS.",
                    list(&vars)
                ),
            ));
        }
    }

    let mut tax_rows: BTreeMap<&PosTaxId, usize> = BTreeMap::new();
    for m in &table.taxes {
        *tax_rows.entry(&m.pos_tax).or_default() += 1;
    }
    for (tax, n) in &tax_rows {
        if *n > 1 {
            out.push(problem(
                DuplicateTaxMapping,
                ProblemSubject {
                    pos_tax: Some((*tax).clone()),
                    ..Default::default()
                },
                format!("POS tax '{tax}' is mapped {n} times; keep one row for it."),
            ));
        }
    }
    out
}

/// Every problem with `table` against what the POS and Commerce say exists. Empty = clean.
/// The order is stable: table duplicates, then locations, items and taxes, each sorted by id.
pub fn validate(
    table: &MappingTable,
    pos: &PosSide,
    commerce: &CommerceSide,
) -> Vec<MappingProblem> {
    use MappingProblemKind::*;
    let mut out = table_problems(table);

    // Locations.
    let pos_locations: BTreeMap<&PosLocationId, &PosLocation> =
        pos.locations.iter().map(|l| (&l.id, l)).collect();
    let mapped_locations: BTreeSet<&PosLocationId> =
        table.locations.iter().map(|m| &m.pos_location).collect();
    let sources: BTreeMap<&SourceCode, &CommerceSource> =
        commerce.sources.iter().map(|s| (&s.code, s)).collect();
    for (id, loc) in &pos_locations {
        if loc.active && !mapped_locations.contains(id) {
            out.push(problem(
                UnmappedLocation,
                ProblemSubject {
                    pos_locations: vec![(*id).clone()],
                    ..Default::default()
                },
                format!(
                    "POS location '{id}' ({}) is active but not mapped; add a row giving its store code and MSI source, or deactivate it in the POS.",
                    loc.name
                ),
            ));
        }
    }
    let mut seen_rows = BTreeSet::new();
    for m in &table.locations {
        if !seen_rows.insert((&m.pos_location, &m.store, &m.source)) {
            continue;
        }
        let subject = ProblemSubject {
            pos_locations: vec![m.pos_location.clone()],
            store: Some(m.store.clone()),
            source: Some(m.source.clone()),
            ..Default::default()
        };
        match pos_locations.get(&m.pos_location) {
            None => out.push(problem(
                UnknownPosLocation,
                subject.clone(),
                format!(
                    "Store '{}' is mapped to POS location '{}', which the POS does not list; correct the location id or remove the row.",
                    m.store, m.pos_location
                ),
            )),
            Some(loc) if !loc.active => out.push(problem(
                InactiveLocationMapped,
                subject.clone(),
                format!(
                    "POS location '{}' ({}) is inactive; its mapping to source '{}' stays for history, but expect no new data.",
                    m.pos_location, loc.name, m.source
                ),
            )),
            Some(_) => {}
        }
        match sources.get(&m.source) {
            None => out.push(problem(
                UnknownSource,
                subject,
                format!(
                    "MSI source '{}' (for POS location '{}') does not exist in Commerce; create it under Stores › Sources or correct the code.",
                    m.source, m.pos_location
                ),
            )),
            Some(src) => {
                if !src.enabled {
                    out.push(problem(
                        SourceDisabled,
                        subject.clone(),
                        format!(
                            "MSI source '{}' (for POS location '{}') is disabled; Commerce ignores its quantities until it is enabled.",
                            m.source, m.pos_location
                        ),
                    ));
                }
                if src.stock_ids.is_empty() {
                    out.push(problem(
                        SourceNotLinkedToStock,
                        subject,
                        format!(
                            "MSI source '{}' (for POS location '{}') is not assigned to any stock, so its quantities never reach a sales channel; assign it under Stores › Stocks.",
                            m.source, m.pos_location
                        ),
                    ));
                }
            }
        }
    }

    // Items.
    let pos_variations: BTreeMap<&PosVariationId, &PosVariation> =
        pos.variations.iter().map(|v| (&v.id, v)).collect();
    let commerce_skus: BTreeSet<String> = commerce.skus.iter().map(sku_key).collect();
    let mapped_variations: BTreeSet<&PosVariationId> =
        table.items.iter().map(|m| &m.variation).collect();
    let mut seen_items = BTreeSet::new();
    for m in &table.items {
        if !seen_items.insert((&m.variation, &m.sku)) {
            continue;
        }
        let subject = ProblemSubject {
            variations: vec![m.variation.clone()],
            sku: Some(m.sku.clone()),
            ..Default::default()
        };
        if !commerce_skus.contains(&sku_key(&m.sku)) {
            out.push(problem(
                SkuMissingInCommerce,
                subject.clone(),
                format!(
                    "SKU '{}' (mapped from POS variation '{}') does not exist in Commerce; create the product or correct the SKU.",
                    m.sku, m.variation
                ),
            ));
        }
        if !pos_variations.contains_key(&m.variation) {
            out.push(problem(
                VariationMissingInPos,
                subject,
                format!(
                    "POS variation '{}' (mapped to SKU '{}') does not exist in the POS catalogue; correct the variation id or remove the row.",
                    m.variation, m.sku
                ),
            ));
        }
    }
    for (id, v) in &pos_variations {
        if v.tracked && !mapped_variations.contains(id) {
            let sku_hint = v
                .sku
                .as_ref()
                .map(|s| format!(" (POS SKU '{s}')"))
                .unwrap_or_default();
            out.push(problem(
                UnmappedVariation,
                ProblemSubject {
                    variations: vec![(*id).clone()],
                    sku: v.sku.clone(),
                    ..Default::default()
                },
                format!(
                    "POS variation '{id}'{sku_hint} tracks stock but has no Commerce SKU; its stock is not synced until it is mapped."
                ),
            ));
        }
    }

    // Taxes.
    let classes: BTreeSet<&TaxClass> = commerce.tax_classes.iter().collect();
    let pos_taxes: BTreeSet<&PosTaxId> = pos.taxes.iter().collect();
    let mapped_taxes: BTreeSet<&PosTaxId> = table.taxes.iter().map(|m| &m.pos_tax).collect();
    for tax in &pos_taxes {
        if !mapped_taxes.contains(tax) {
            out.push(problem(
                UnmappedTax,
                ProblemSubject {
                    pos_tax: Some((*tax).clone()),
                    ..Default::default()
                },
                format!(
                    "POS tax '{tax}' has no Commerce tax class; sales that use it cannot be booked until it is mapped."
                ),
            ));
        }
    }
    let mut seen_taxes = BTreeSet::new();
    for m in &table.taxes {
        if !seen_taxes.insert((&m.pos_tax, &m.tax_class)) {
            continue;
        }
        let subject = ProblemSubject {
            pos_tax: Some(m.pos_tax.clone()),
            tax_class: Some(m.tax_class.clone()),
            ..Default::default()
        };
        if !classes.contains(&m.tax_class) {
            out.push(problem(
                UnknownTaxClass,
                subject.clone(),
                format!(
                    "Tax class '{}' (for POS tax '{}') does not exist in Commerce; create it under Stores › Tax Rules or correct the name.",
                    m.tax_class, m.pos_tax
                ),
            ));
        }
        if !pos_taxes.contains(&m.pos_tax) {
            out.push(problem(
                UnknownPosTax,
                subject,
                format!(
                    "POS tax '{}' is mapped but the POS does not list it; the row is unused.",
                    m.pos_tax
                ),
            ));
        }
    }
    out
}

/// The mapping as lookups. Built only from a table without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingIndex {
    locations: BTreeMap<PosLocationId, LocationMapping>,
    stores: BTreeMap<StoreCode, PosLocationId>,
    sources: BTreeMap<SourceCode, PosLocationId>,
    skus: BTreeMap<PosVariationId, Sku>,
    /// By [`sku_key`]: Magento's SKUs are case-insensitive.
    variations: BTreeMap<String, PosVariationId>,
    taxes: BTreeMap<PosTaxId, TaxClass>,
}

impl MappingIndex {
    /// Index a table on its own (no POS or Commerce facts): refuses only duplicates, which
    /// would make a lookup ambiguous. Connectors without a catalogue (file drops) use this.
    pub fn build(table: &MappingTable) -> Result<Self, Vec<MappingProblem>> {
        let problems = table_problems(table);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut idx = MappingIndex::default();
        for m in &table.locations {
            idx.stores.insert(m.store.clone(), m.pos_location.clone());
            idx.sources.insert(m.source.clone(), m.pos_location.clone());
            idx.locations.insert(m.pos_location.clone(), m.clone());
        }
        for m in &table.items {
            idx.skus.insert(m.variation.clone(), m.sku.clone());
            idx.variations.insert(sku_key(&m.sku), m.variation.clone());
        }
        for m in &table.taxes {
            idx.taxes.insert(m.pos_tax.clone(), m.tax_class.clone());
        }
        Ok(idx)
    }

    pub fn location(&self, id: &PosLocationId) -> Option<&LocationMapping> {
        self.locations.get(id)
    }

    pub fn source_for(&self, id: &PosLocationId) -> Option<&SourceCode> {
        self.locations.get(id).map(|m| &m.source)
    }

    pub fn location_for_store(&self, store: &StoreCode) -> Option<&PosLocationId> {
        self.stores.get(store)
    }

    pub fn location_for_source(&self, source: &SourceCode) -> Option<&PosLocationId> {
        self.sources.get(source)
    }

    pub fn sku_for(&self, variation: &PosVariationId) -> Option<&Sku> {
        self.skus.get(variation)
    }

    pub fn variation_for(&self, sku: &Sku) -> Option<&PosVariationId> {
        self.variations.get(&sku_key(sku))
    }

    pub fn tax_class_for(&self, tax: &PosTaxId) -> Option<&TaxClass> {
        self.taxes.get(tax)
    }

    /// Every mapped POS location.
    pub fn locations(&self) -> impl Iterator<Item = &LocationMapping> {
        self.locations.values()
    }
}

/// A usable mapping plus the warnings it was accepted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub index: MappingIndex,
    pub warnings: Vec<MappingProblem>,
}

/// Validate and index: `Ok` when no problem is an error (warnings ride along), otherwise
/// `Err` with every problem, warnings included.
pub fn resolve(
    table: &MappingTable,
    pos: &PosSide,
    commerce: &CommerceSide,
) -> Result<Resolved, Vec<MappingProblem>> {
    let problems = validate(table, pos, commerce);
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(problems);
    }
    let index = MappingIndex::build(table)?;
    Ok(Resolved {
        index,
        warnings: problems,
    })
}

/// Propose item mappings from the POS's own SKUs (variation → the Commerce SKU spelled the
/// same), for a person to review. SKUs shared by several variations (Square allows that;
/// compared case-insensitively, as Square searches them) are not proposed and come back as
/// `sku_used_by_two_variations` problems; variations without a SKU are skipped.
pub fn propose_items_by_pos_sku(
    variations: &[PosVariation],
) -> (Vec<ItemMapping>, Vec<MappingProblem>) {
    let mut by_key: BTreeMap<String, Vec<&PosVariation>> = BTreeMap::new();
    for v in variations {
        if let Some(sku) = &v.sku {
            by_key
                .entry(sku.as_str().to_lowercase())
                .or_default()
                .push(v);
        }
    }
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for group in by_key.values() {
        match group.as_slice() {
            [one] => {
                if let Some(sku) = &one.sku {
                    items.push(ItemMapping {
                        variation: one.id.clone(),
                        sku: sku.clone(),
                    });
                }
            }
            many => {
                let vars: Vec<PosVariationId> = many.iter().map(|v| v.id.clone()).collect();
                let sku = many.first().and_then(|v| v.sku.clone());
                let shown = sku.as_ref().map(ToString::to_string).unwrap_or_default();
                problems.push(problem(
                    MappingProblemKind::SkuUsedByTwoVariations,
                    ProblemSubject {
                        variations: vars.clone(),
                        sku,
                        ..Default::default()
                    },
                    format!(
                        "POS SKU '{shown}' is used by POS variations {}; give each variation its own SKU in the POS, or map them by hand.",
                        list(&vars)
                    ),
                ));
            }
        }
    }
    items.sort_by(|a, b| a.variation.cmp(&b.variation));
    (items, problems)
}

#[cfg(test)]
mod tests;
