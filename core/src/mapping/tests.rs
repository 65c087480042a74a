use super::*;
use crate::pos::{Currency, PosLocation, PosVariation};
use MappingProblemKind::*;

fn loc(id: &str, active: bool) -> PosLocation {
    PosLocation {
        id: PosLocationId::parse(id).unwrap(),
        name: format!("Shop {id}"),
        active,
        timezone: Some("Europe/London".into()),
        currency: Some(Currency::GBP),
    }
}

fn var(id: &str, sku: Option<&str>, tracked: bool) -> PosVariation {
    PosVariation {
        id: PosVariationId::parse(id).unwrap(),
        sku: sku.map(|s| Sku::parse(s).unwrap()),
        name: None,
        tracked,
    }
}

fn lmap(loc: &str, store: &str, source: &str) -> LocationMapping {
    LocationMapping {
        pos_location: PosLocationId::parse(loc).unwrap(),
        store: StoreCode::parse(store).unwrap(),
        source: SourceCode::parse(source).unwrap(),
    }
}

fn imap(var: &str, sku: &str) -> ItemMapping {
    ItemMapping {
        variation: PosVariationId::parse(var).unwrap(),
        sku: Sku::parse(sku).unwrap(),
    }
}

fn tmap(tax: &str, class: &str) -> TaxMapping {
    TaxMapping {
        pos_tax: PosTaxId::parse(tax).unwrap(),
        tax_class: TaxClass::parse(class).unwrap(),
    }
}

fn source(code: &str, enabled: bool, stocks: &[u32]) -> CommerceSource {
    CommerceSource {
        code: SourceCode::parse(code).unwrap(),
        enabled,
        stock_ids: stocks.to_vec(),
    }
}

fn pos_side() -> PosSide {
    PosSide {
        locations: vec![loc("L1", true), loc("L2", true), loc("L3", false)],
        variations: vec![
            var("V1", Some("SKU-1"), true),
            var("V2", Some("SKU-2"), true),
            var("V3", None, false),
        ],
        taxes: vec![PosTaxId::parse("VAT20").unwrap()],
    }
}

fn commerce_side() -> CommerceSide {
    CommerceSide {
        sources: vec![source("leeds", true, &[1]), source("york", true, &[1])],
        skus: vec![Sku::parse("SKU-1").unwrap(), Sku::parse("SKU-2").unwrap()],
        tax_classes: vec![TaxClass::parse("Taxable Goods").unwrap()],
    }
}

fn clean_table() -> MappingTable {
    MappingTable {
        locations: vec![lmap("L1", "LEEDS", "leeds"), lmap("L2", "YORK", "york")],
        items: vec![imap("V1", "SKU-1"), imap("V2", "SKU-2")],
        taxes: vec![tmap("VAT20", "Taxable Goods")],
    }
}

#[test]
fn clean_mapping_has_no_problems_and_resolves_to_lookups() {
    let problems = validate(&clean_table(), &pos_side(), &commerce_side());
    assert_eq!(problems, vec![]);
    let resolved = resolve(&clean_table(), &pos_side(), &commerce_side()).unwrap();
    let idx = &resolved.index;
    let l1 = PosLocationId::parse("L1").unwrap();
    assert_eq!(idx.source_for(&l1).map(|s| s.as_str()), Some("leeds"));
    assert_eq!(
        idx.location_for_store(&StoreCode::parse("YORK").unwrap())
            .map(|l| l.as_str()),
        Some("L2")
    );
    assert_eq!(
        idx.sku_for(&PosVariationId::parse("V2").unwrap())
            .map(|s| s.as_str()),
        Some("SKU-2")
    );
    assert_eq!(
        idx.variation_for(&Sku::parse("SKU-1").unwrap())
            .map(|v| v.as_str()),
        Some("V1")
    );
    assert_eq!(
        idx.tax_class_for(&PosTaxId::parse("VAT20").unwrap())
            .map(|c| c.as_str()),
        Some("Taxable Goods")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let table = MappingTable {
        locations: vec![
            // L1 unmapped (active). L2 → source shared with L9; L9 unknown in POS.
            lmap("L2", "YORK", "york"),
            lmap("L9", "HULL", "york"),
            // L3 is inactive; its source does not exist in Commerce.
            lmap("L3", "BATH", "bath"),
            // source exists but disabled and in no stock
            lmap("L4", "DERBY", "derby"),
        ],
        items: vec![
            imap("V1", "SKU-1"),
            imap("V2", "SKU-1"), // SKU used by two variations
            imap("V7", "SKU-7"), // variation missing in POS, SKU missing in Commerce
        ],
        taxes: vec![tmap("ZERO", "Zero Rated")], // VAT20 unmapped; ZERO unknown; class unknown
    };
    let mut commerce = commerce_side();
    commerce.sources.push(source("derby", false, &[]));
    let mut pos = pos_side();
    pos.locations.push(loc("L4", true));

    let problems = validate(&table, &pos, &commerce);
    let kinds: Vec<MappingProblemKind> = problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![
            SourceSharedByLocations,
            SkuUsedByTwoVariations,
            UnmappedLocation,
            UnknownPosLocation,
            InactiveLocationMapped,
            UnknownSource,
            SourceDisabled,
            SourceNotLinkedToStock,
            SkuMissingInCommerce,
            VariationMissingInPos,
            UnmappedTax,
            UnknownTaxClass,
            UnknownPosTax,
        ]
    );

    let unmapped = &problems[2];
    assert_eq!(unmapped.severity, Severity::Error);
    assert_eq!(unmapped.subject.pos_locations[0].as_str(), "L1");
    assert_eq!(
        unmapped.message,
        "POS location 'L1' (Shop L1) is active but not mapped; add a row giving its store code and MSI source, or deactivate it in the POS."
    );
    let shared = &problems[0];
    assert_eq!(
        shared
            .subject
            .pos_locations
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>(),
        vec!["L2", "L9"]
    );
    assert_eq!(
        shared.subject.source.as_ref().map(|s| s.as_str()),
        Some("york")
    );
    let not_linked = problems
        .iter()
        .find(|p| p.kind == SourceNotLinkedToStock)
        .unwrap();
    assert!(not_linked.message.contains("'derby'"));
    assert!(not_linked.message.contains("Stores › Stocks"));
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .count(),
        3
    );

    let err = resolve(&table, &pos, &commerce).unwrap_err();
    assert_eq!(err.len(), problems.len());
}

#[test]
fn duplicates_inside_the_table_are_reported_and_block_the_index() {
    let table = MappingTable {
        locations: vec![
            lmap("L1", "LEEDS", "leeds"),
            lmap("L1", "LEEDS2", "leeds2"),
            lmap("L2", "LEEDS", "york"),
        ],
        items: vec![imap("V1", "SKU-1"), imap("V1", "SKU-2")],
        taxes: vec![tmap("VAT20", "Taxable Goods"), tmap("VAT20", "Other")],
    };
    let problems = MappingIndex::build(&table).unwrap_err();
    let kinds: Vec<MappingProblemKind> = problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DuplicateLocationMapping,
            DuplicateStoreCode,
            DuplicateVariationMapping,
            DuplicateTaxMapping
        ]
    );
    assert_eq!(
        problems[2].message,
        "POS variation 'V1' is mapped 2 times (to 'SKU-1', 'SKU-2'); keep one row for it."
    );
}

#[test]
fn untracked_unmapped_variation_is_not_a_problem_but_tracked_one_is_a_warning() {
    let mut table = clean_table();
    table.items.retain(|m| m.variation.as_str() != "V2");
    let problems = validate(&table, &pos_side(), &commerce_side());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, UnmappedVariation);
    assert_eq!(problems[0].severity, Severity::Warning);
    assert_eq!(
        problems[0].subject.sku.as_ref().map(|s| s.as_str()),
        Some("SKU-2")
    );
    // A warning alone still resolves.
    let resolved = resolve(&table, &pos_side(), &commerce_side()).unwrap();
    assert_eq!(resolved.warnings.len(), 1);
}

#[test]
fn proposal_by_pos_sku_refuses_case_insensitive_duplicates() {
    let vars = vec![
        var("V1", Some("ABC"), true),
        var("V2", Some("abc"), true),
        var("V3", Some("XYZ"), true),
        var("V4", None, true),
    ];
    let (items, problems) = propose_items_by_pos_sku(&vars);
    assert_eq!(items, vec![imap("V3", "XYZ")]);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, SkuUsedByTwoVariations);
    assert_eq!(
        problems[0]
            .subject
            .variations
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>(),
        vec!["V1", "V2"]
    );
}

#[test]
fn problems_serialise_with_snake_case_kinds() {
    let table = MappingTable::default();
    let mut pos = PosSide::default();
    pos.locations.push(loc("L1", true));
    let problems = validate(&table, &pos, &CommerceSide::default());
    let json = serde_json::to_value(&problems).unwrap();
    assert_eq!(json[0]["kind"], "unmapped_location");
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["subject"]["pos_locations"][0], "L1");
}

#[test]
fn skus_compare_case_insensitively_as_magento_does() {
    let mut table = clean_table();
    table.items = vec![imap("V1", "sku-1"), imap("V2", "SKU-1")];
    let mut commerce = commerce_side();
    commerce.skus = vec![Sku::parse("Sku-1").unwrap()];
    let problems = validate(&table, &pos_side(), &commerce);
    let kinds: Vec<MappingProblemKind> = problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, vec![SkuUsedByTwoVariations]);
    assert_eq!(problems[0].subject.variations.len(), 2);

    table.items = vec![imap("V1", "sku-1"), imap("V2", "SKU-2")];
    let idx = MappingIndex::build(&table).unwrap();
    assert_eq!(
        idx.variation_for(&Sku::parse("SKU-1").unwrap())
            .map(|v| v.as_str()),
        Some("V1")
    );
}
