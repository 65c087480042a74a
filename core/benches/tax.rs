//! Criterion benchmark: tax lines per second per algorithm, one core.
//!
//! Each iteration prices one 10-line quote on a fresh calculator instance (as Magento creates
//! one per `calculateTax` call), with rates resolved once per product class, as the engine
//! caches them. The baseline is the naive computation a till does (round(price × qty × rate))
//! over the same lines, so the ratio shows what Magento's exactness costs.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tillbridge_core::php::round2;
use tillbridge_core::tax::calculator::{
    Calculator, CalculatorConfig, ItemRates, LineInput, LineResult, PreparedGroup,
};
use tillbridge_core::tax::rates::{AppliedRate, RateGroup};
use tillbridge_core::tax::{Algorithm, TaxRelease};

fn lines(tax_included: bool) -> Vec<LineInput> {
    (0..10u32)
        .map(|i| LineInput {
            item_key: i,
            quantity: Decimal::from(1 + i % 4),
            unit_price: Decimal::new(999 + 137 * i64::from(i), 2),
            discount_amount: if i % 3 == 0 {
                Decimal::new(150, 2)
            } else {
                Decimal::ZERO
            },
            tax_included,
            price_for_tax_calculation: None,
        })
        .collect()
}

fn rates() -> ItemRates {
    let pct = Decimal::new(20, 0);
    ItemRates::new(
        pct,
        0,
        pct,
        vec![PreparedGroup::new(
            RateGroup {
                id: "GB VAT".into(),
                percent: pct,
                rates: vec![AppliedRate {
                    code: "GB VAT".into(),
                    title: "VAT".into(),
                    percent: pct,
                }],
            },
            1,
        )],
    )
}

fn bench(c: &mut Criterion) {
    let rates = rates();
    let mut group = c.benchmark_group("tax_lines");
    group.throughput(Throughput::Elements(10));
    for included in [false, true] {
        let input = lines(included);
        let mode = if included { "incl" } else { "excl" };
        for algorithm in Algorithm::ALL {
            let cfg = CalculatorConfig {
                algorithm,
                apply_after_discount: true,
                cross_border_trade: false,
                release: TaxRelease::Magento246,
            };
            let mut calc = Calculator::new(cfg);
            let mut out = LineResult::default();
            group.bench_function(format!("{}_{mode}", algorithm.as_magento()), |b| {
                b.iter(|| {
                    calc.reset();
                    let mut total = Decimal::ZERO;
                    for l in &input {
                        calc.calculate_into(black_box(l), &rates, true, &mut out);
                        total += out.row_tax;
                    }
                    black_box(total)
                })
            });
        }
        group.bench_function(format!("baseline_naive_{mode}"), |b| {
            b.iter(|| {
                let mut total = Decimal::ZERO;
                for l in &input {
                    total += round2(black_box(l).unit_price * l.quantity * Decimal::new(20, 2));
                }
                black_box(total)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
