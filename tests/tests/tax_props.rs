//! Property tests of the tax engine and the validator.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use proptest::prelude::*;
use rust_decimal::Decimal;
use tillbridge_core::php::round2;
use tillbridge_core::tax::calculator::calc_tax_amount;
use tillbridge_core::tax::validator::{PosTaxLine, RateSource, ValidationConfig, validate};
use tillbridge_core::tax::{
    Algorithm, QuoteDetails, QuoteDetailsItem, TaxAddress, TaxClass, TaxEngine, TaxRate,
    TaxRateTable, TaxRule, TaxSettings,
};

const RATES: [&str; 12] = [
    "5", "7.25", "8.25", "8.875", "9.975", "10", "17.5", "19.6", "20", "21", "5.9125", "0.5",
];

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn price() -> impl Strategy<Value = Decimal> {
    (1i64..5_000_000, 2u32..=4).prop_map(|(m, scale)| Decimal::new(m % 10i64.pow(scale + 3), scale))
}

fn qty() -> impl Strategy<Value = Decimal> {
    (1i64..=12).prop_map(Decimal::from)
}

#[derive(Debug, Clone)]
struct Line {
    qty: Decimal,
    price: Decimal,
    discount_pct: u32,
    included: bool,
    class: usize,
}

fn line() -> impl Strategy<Value = Line> {
    (
        qty(),
        price(),
        prop_oneof![Just(0u32), 1u32..=60, Just(100), Just(130)],
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(qty, price, discount_pct, included, class)| Line {
            qty,
            price,
            discount_pct,
            included,
            class,
        })
}

/// A store with up to three product classes, each with 1–3 rules over 1–2 priorities.
fn table() -> impl Strategy<Value = TaxRateTable> {
    proptest::collection::vec(
        (0usize..RATES.len(), 0i64..2, any::<bool>(), 0usize..3),
        1..5,
    )
    .prop_map(|rules| {
        let mut t = TaxRateTable::default();
        for (i, (rate, priority, subtotal, class)) in rules.into_iter().enumerate() {
            t.rates.push(TaxRate {
                code: format!("R{i}-{}", RATES[rate]),
                title: format!("R{i}"),
                country: "US".into(),
                region_id: 0,
                postcode: Some("*".into()),
                zip_range: None,
                rate: d(RATES[rate]),
            });
            t.rules.push(TaxRule {
                code: format!("rule{i}"),
                priority,
                position: 0,
                calculate_subtotal: subtotal,
                customer_classes: vec![TaxClass::parse("C").unwrap()],
                product_classes: vec![TaxClass::parse(&format!("P{class}")).unwrap()],
                rates: vec![i],
            });
        }
        t
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::UnitBase),
        Just(Algorithm::RowBase),
        Just(Algorithm::TotalBase)
    ]
}

fn us() -> TaxAddress {
    TaxAddress {
        country: Some("US".into()),
        region_id: 42,
        postcode: Some("55555".into()),
    }
}

fn details(lines: &[Line]) -> QuoteDetails {
    QuoteDetails {
        items: lines
            .iter()
            .enumerate()
            .map(|(i, l)| QuoteDetailsItem {
                code: format!("sku-{i}"),
                item_type: "product".into(),
                quantity: l.qty,
                unit_price: l.price,
                discount_amount: round2(
                    l.price * l.qty * Decimal::from(l.discount_pct) / Decimal::ONE_HUNDRED,
                ),
                tax_included: l.included,
                tax_class: Some(TaxClass::parse(&format!("P{}", l.class)).unwrap()),
                parent_code: None,
                associated_item_code: None,
                price_for_tax_calculation: None,
            })
            .collect(),
        shipping_address: Some(us()),
        billing_address: Some(us()),
        customer_tax_class: Some(TaxClass::parse("C").unwrap()),
    }
}

fn settings(algorithm: Algorithm, after: bool, cross_border: bool) -> TaxSettings {
    TaxSettings {
        algorithm,
        apply_after_discount: after,
        cross_border_trade: cross_border,
        store_origin: us(),
        store_customer_class: Some(TaxClass::parse("C").unwrap()),
        ..TaxSettings::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_negative_tax_for_non_negative_inputs(
        t in table(), lines in proptest::collection::vec(line(), 1..7), algo in algorithm(), after in any::<bool>(), cbt in any::<bool>()
    ) {
        let mut engine = TaxEngine::new(t, settings(algo, after, cbt));
        let res = engine.calculate_tax(&details(&lines), true).unwrap();
        prop_assert!(res.tax_amount >= Decimal::ZERO, "total tax {}", res.tax_amount);
        for item in &res.items {
            prop_assert!(item.row_tax >= Decimal::ZERO, "{}: row tax {}", item.code, item.row_tax);
            prop_assert!(item.price_incl_tax >= Decimal::ZERO);
            for a in &item.applied_taxes {
                prop_assert!(a.amount >= Decimal::ZERO, "{} applied {}", item.code, a.amount);
            }
        }
    }

    #[test]
    fn total_base_row_taxes_sum_to_the_rounded_total(
        rate in 0usize..RATES.len(), lines in proptest::collection::vec(line(), 1..10), after in any::<bool>(), included in any::<bool>()
    ) {
        // One rate, one chain: Magento's delta rounding keeps the running sum of rounded rows
        // within half a cent of the exact sum, so the rows add up to the rounded exact total.
        let pct = d(RATES[rate]);
        let table = TaxRateTable {
            rates: vec![TaxRate { code: "R".into(), title: "R".into(), country: "US".into(), region_id: 0, postcode: None, zip_range: None, rate: pct }],
            rules: vec![TaxRule { code: "r".into(), priority: 0, position: 0, calculate_subtotal: false,
                customer_classes: vec![TaxClass::parse("C").unwrap()], product_classes: vec![TaxClass::parse("P0").unwrap()], rates: vec![0] }],
        };
        let lines: Vec<Line> = lines.into_iter().map(|l| Line { class: 0, included, ..l }).collect();
        let req = details(&lines);
        let mut engine = TaxEngine::new(table, settings(Algorithm::TotalBase, after, true));
        let res = engine.calculate_tax(&req, true).unwrap();
        let exact: Decimal = req.items.iter().map(|it| {
            let row = round2(it.unit_price) * it.quantity;
            let taxable = if after { (row - it.discount_amount).max(Decimal::ZERO) } else { row };
            calc_tax_amount(taxable, pct, included)
        }).sum();
        let rows: Decimal = res.items.iter().map(|i| i.row_tax).sum();
        let seed = Decimal::new(1, 6);
        prop_assert_eq!(rows, round2(exact + seed), "exact {}", exact);
        prop_assert_eq!(rows, res.tax_amount);
    }

    #[test]
    fn validator_finds_nothing_in_the_engines_own_output(
        lines in proptest::collection::vec((qty(), price(), 0usize..RATES.len(), any::<bool>(), 0u32..=60), 1..8),
        algo in algorithm(), after in any::<bool>()
    ) {
        let pos: Vec<PosTaxLine> = lines.iter().enumerate().map(|(i, (q, p, r, incl, disc))| PosTaxLine {
            line_id: format!("L{i}"), sku: None, quantity: *q, unit_price: *p, tax_included: *incl,
            discount_amount: round2(*p * *q * Decimal::from(*disc) / Decimal::ONE_HUNDRED),
            rate: d(RATES[*r]), tax_amount: Decimal::ZERO, row_total: None, row_total_incl_tax: None,
            price_excl_tax: None, price_incl_tax: None, tax_class: None,
        }).collect();
        let cfg = ValidationConfig { settings: settings(algo, after, false), rates: RateSource::PosRates };
        let first = validate(&pos, &cfg);
        prop_assert!(first.errors.is_empty());
        let echoed: Vec<PosTaxLine> = pos.iter().zip(&first.magento_lines).map(|(l, m)| PosTaxLine {
            tax_amount: round2(m.tax_amount),
            row_total: Some(round2(m.row_total)),
            row_total_incl_tax: Some(round2(m.row_total_incl_tax)),
            price_excl_tax: Some(round2(m.price)),
            price_incl_tax: Some(round2(m.price_incl_tax)),
            ..l.clone()
        }).collect();
        let second = validate(&echoed, &cfg);
        prop_assert!(second.is_clean(), "{:?}", second.discrepancies);
        prop_assert_eq!(second.totals.difference, Decimal::ZERO);
    }
}
