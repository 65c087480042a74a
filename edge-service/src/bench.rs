//! `tillbridge bench tax`: tax lines per second per algorithm on one core, with a baseline
//! measured in the same process, written as a Markdown report (`docs/benchmarks.md`).
//!
//! Three figures per algorithm and price mode:
//! - **engine**: the calculator alone (rates resolved once, as the engine caches them), one
//!   fresh calculator instance per 10-line quote, as Magento creates one per call;
//! - **service**: the whole `calculateTax` call (item mapping, rate cache, applied taxes);
//! - **baseline**: the naive computation a till does, `round(price × qty × rate)`, over the
//!   same lines. Ratios against it show what Magento's exactness costs.
//!
//! Then the conformance run over a vector folder (default `shared/vectors/tax-diff`), for scale
//! against Magento's own PHP (about 5,800 lines per second on this class of machine, as quoted
//! in the issue; not measured here).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tillbridge_core::php::round2;
use tillbridge_core::tax::calculator::{
    Calculator, CalculatorConfig, ItemRates, LineInput, LineResult, PreparedGroup,
};
use tillbridge_core::tax::conformance::RunOptions;
use tillbridge_core::tax::rates::{AppliedRate, RateGroup};
use tillbridge_core::tax::{
    Algorithm, QuoteDetails, QuoteDetailsItem, TaxAddress, TaxClass, TaxEngine, TaxRate,
    TaxRateTable, TaxRelease, TaxRule, TaxSettings,
};

use crate::conformance;

/// Magento's own PHP on the tax-diff cases, as quoted for scale (lines per second).
pub const MAGENTO_PHP_LINES_PER_SECOND: f64 = 5_800.0;

const LINES_PER_QUOTE: usize = 10;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub lines: u64,
    pub elapsed: Duration,
}

impl Figure {
    pub fn per_second(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub engine: Vec<(Algorithm, bool, Figure)>,
    pub service: Vec<(Algorithm, bool, Figure)>,
    pub baseline: Vec<(bool, Figure)>,
    pub conformance: Option<(PathBuf, usize, usize, u64, Duration)>,
    /// The folder's service cases, parsed once, computed repeatedly: (cases, lines, elapsed).
    pub vector_engine: Option<Figure>,
    pub seconds: f64,
}

/// A deterministic stream of awkward prices and quantities (no randomness source needed).
fn workload(tax_included: bool) -> Vec<LineInput> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..LINES_PER_QUOTE * 100)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let cents = 1 + (state % 50_000) as i64;
            let scale = 2 + (state >> 20) % 3;
            LineInput {
                item_key: (i % LINES_PER_QUOTE) as u32,
                quantity: Decimal::from(1 + (state >> 8) % 6),
                unit_price: Decimal::new(
                    cents * 10i64.pow(scale as u32 - 2) + (state >> 30) as i64 % 10,
                    scale as u32,
                ),
                discount_amount: if (state >> 40).is_multiple_of(3) {
                    Decimal::new(((state >> 44) % 500) as i64, 2)
                } else {
                    Decimal::ZERO
                },
                tax_included,
                price_for_tax_calculation: None,
            }
        })
        .collect()
}

fn vat_rates() -> ItemRates {
    let pct = Decimal::from(20);
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

fn timed(budget: Duration, mut round: impl FnMut() -> u64) -> (u64, Duration) {
    // Warm up briefly, then measure whole rounds until the budget is spent.
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        black_box(round());
    }
    let start = Instant::now();
    let mut lines = 0;
    while start.elapsed() < budget {
        lines += round();
    }
    (lines, start.elapsed())
}

fn measure_engine(algorithm: Algorithm, included: bool, budget: Duration) -> Figure {
    let input = workload(included);
    let rates = vat_rates();
    let config = CalculatorConfig {
        algorithm,
        apply_after_discount: true,
        cross_border_trade: false,
        release: TaxRelease::Magento246,
    };
    let mut calc = Calculator::new(config);
    let mut out = LineResult::default();
    let (lines, elapsed) = timed(budget, || {
        let mut total = Decimal::ZERO;
        for quote in input.chunks(LINES_PER_QUOTE) {
            calc.reset();
            for line in quote {
                calc.calculate_into(black_box(line), &rates, true, &mut out);
                total += out.row_tax;
            }
        }
        black_box(total);
        input.len() as u64
    });
    Figure {
        name: format!("engine {} {}", algorithm.as_magento(), mode(included)),
        lines,
        elapsed,
    }
}

fn measure_baseline(included: bool, budget: Duration) -> Figure {
    let input = workload(included);
    let rate = Decimal::new(20, 2);
    let (lines, elapsed) = timed(budget, || {
        let mut total = Decimal::ZERO;
        for line in &input {
            total += round2(black_box(line.unit_price) * line.quantity * rate);
        }
        black_box(total);
        input.len() as u64
    });
    Figure {
        name: format!("baseline naive {}", mode(included)),
        lines,
        elapsed,
    }
}

fn measure_service(algorithm: Algorithm, included: bool, budget: Duration) -> Figure {
    let class =
        |s: &str| TaxClass::parse(s).unwrap_or_else(|_| unreachable!("constant class name"));
    let gb = TaxAddress {
        country: Some("GB".into()),
        region_id: 0,
        postcode: Some("EC1A 1BB".into()),
    };
    let table = TaxRateTable {
        rates: vec![TaxRate {
            code: "GB VAT".into(),
            title: "VAT".into(),
            country: "GB".into(),
            region_id: 0,
            postcode: Some("*".into()),
            zip_range: None,
            rate: Decimal::from(20),
        }],
        rules: vec![TaxRule {
            code: "Standard".into(),
            priority: 0,
            position: 0,
            calculate_subtotal: false,
            customer_classes: vec![class("Retail")],
            product_classes: vec![class("Standard")],
            rates: vec![0],
        }],
    };
    let settings = TaxSettings {
        algorithm,
        store_origin: gb.clone(),
        store_customer_class: Some(class("Retail")),
        ..TaxSettings::default()
    };
    let mut engine = TaxEngine::new(table, settings);
    let quotes: Vec<QuoteDetails> = workload(included)
        .chunks(LINES_PER_QUOTE)
        .map(|chunk| QuoteDetails {
            items: chunk
                .iter()
                .enumerate()
                .map(|(i, l)| QuoteDetailsItem {
                    code: format!("sequence-{i}"),
                    item_type: "product".into(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    discount_amount: l.discount_amount,
                    tax_included: included,
                    tax_class: Some(class("Standard")),
                    parent_code: None,
                    associated_item_code: None,
                    price_for_tax_calculation: None,
                })
                .collect(),
            shipping_address: Some(gb.clone()),
            billing_address: Some(gb.clone()),
            customer_tax_class: Some(class("Retail")),
        })
        .collect();
    let (lines, elapsed) = timed(budget, || {
        let mut n = 0;
        for q in &quotes {
            if let Ok(d) = engine.calculate_tax(black_box(q), true) {
                black_box(d.tax_amount);
                n += q.items.len() as u64;
            }
        }
        n
    });
    Figure {
        name: format!("service {} {}", algorithm.as_magento(), mode(included)),
        lines,
        elapsed,
    }
}

fn mode(included: bool) -> &'static str {
    if included {
        "prices incl. tax"
    } else {
        "prices excl. tax"
    }
}

/// Count the calculated lines of a vector folder (quote items, parents excluded).
fn vector_lines(dir: &Path) -> u64 {
    let Ok(files) = conformance::vector_files(dir) else {
        return 0;
    };
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| {
            let items = v
                .pointer("/quote_details/items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            let parents: std::collections::HashSet<String> = items
                .iter()
                .filter_map(|i| {
                    i.get("parent_code")
                        .and_then(|p| p.as_str())
                        .map(str::to_owned)
                })
                .collect();
            items
                .iter()
                .filter(|i| {
                    i.get("code")
                        .and_then(|c| c.as_str())
                        .is_none_or(|c| !parents.contains(c))
                })
                .count() as u64
        })
        .sum()
}

/// Run every measurement. `seconds` is the budget per figure.
pub fn run(seconds: f64, vectors: Option<&Path>, mut progress: impl FnMut(&str)) -> Report {
    let budget = Duration::from_secs_f64(seconds.max(0.05));
    let mut report = Report {
        engine: Vec::new(),
        service: Vec::new(),
        baseline: Vec::new(),
        conformance: None,
        vector_engine: None,
        seconds,
    };
    for included in [false, true] {
        progress(&format!("baseline, {}", mode(included)));
        report
            .baseline
            .push((included, measure_baseline(included, budget)));
        for algorithm in Algorithm::ALL {
            progress(&format!(
                "engine {}, {}",
                algorithm.as_magento(),
                mode(included)
            ));
            report.engine.push((
                algorithm,
                included,
                measure_engine(algorithm, included, budget),
            ));
            progress(&format!(
                "service {}, {}",
                algorithm.as_magento(),
                mode(included)
            ));
            report.service.push((
                algorithm,
                included,
                measure_service(algorithm, included, budget),
            ));
        }
    }
    if let Some(dir) = vectors {
        progress(&format!("conformance {}", dir.display()));
        let start = Instant::now();
        if let Ok(summary) = conformance::run_dir(dir, RunOptions::default(), |_| Ok(())) {
            report.conformance = Some((
                dir.to_path_buf(),
                summary.passed,
                summary.failed,
                vector_lines(dir),
                start.elapsed(),
            ));
        }
        progress(&format!("engine on the service cases of {}", dir.display()));
        report.vector_engine = measure_vector_engine(dir, budget);
    }
    report
}

/// Parse the folder's `tax_calculation_service_integration_test` cases once, then time only
/// the calculation, as Magento's figure times only its PHP calculation.
fn measure_vector_engine(dir: &Path, budget: Duration) -> Option<Figure> {
    let files = conformance::vector_files(dir).ok()?;
    let mut cases = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v.get("kind").and_then(|k| k.as_str())
            != Some("tax_calculation_service_integration_test")
        {
            continue;
        }
        if let Ok(case) = tillbridge_core::tax::conformance::service_case(&v, RunOptions::default())
        {
            cases.push(case);
        }
    }
    if cases.is_empty() {
        return None;
    }
    let (lines, elapsed) = timed(budget, || {
        let mut n = 0;
        for (engine, details) in cases.iter_mut() {
            if let Ok(d) = engine.calculate_tax(black_box(details), true) {
                n += d.items.iter().filter(|i| !i.is_parent).count() as u64;
                black_box(d.tax_amount);
            }
        }
        n
    });
    Some(Figure {
        name: format!("engine on {} vector cases", cases.len()),
        lines,
        elapsed,
    })
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

impl Report {
    /// The Markdown report.
    pub fn markdown(&self, command: &str, machine: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `{command}` on {machine}. One core (the process is single-threaded), release build."
        );
        let _ = writeln!(
            md,
            "Budget: {:.2} s per figure. Timings are never asserted in tests; re-run the command to refresh.\n",
            self.seconds
        );
        let _ = writeln!(md, "## Tax lines per second\n");
        let _ = writeln!(
            md,
            "10-line quotes of awkward prices (2–4 decimals), quantities 1–6, a discount on a third of the lines, 20 % VAT, apply-tax-after-discount on. A fresh calculator per quote, as Magento creates one per `calculateTax` call.\n"
        );
        let _ = writeln!(
            md,
            "| algorithm | prices | engine lines/s | engine ÷ baseline | service lines/s | service ÷ baseline |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
        for (algorithm, included, fig) in &self.engine {
            let base = self
                .baseline
                .iter()
                .find(|(i, _)| i == included)
                .map(|(_, f)| f.per_second())
                .unwrap_or(1.0);
            let service = self
                .service
                .iter()
                .find(|(a, i, _)| a == algorithm && i == included)
                .map(|(_, _, f)| f.per_second())
                .unwrap_or(0.0);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} | {} | {:.3} |",
                algorithm.as_magento(),
                if *included { "incl. tax" } else { "excl. tax" },
                human(fig.per_second()),
                fig.per_second() / base,
                human(service),
                service / base
            );
        }
        for (included, fig) in &self.baseline {
            let _ = writeln!(
                md,
                "| baseline: `round(price × qty × rate)` | {} | {} | 1.000 | | |",
                if *included { "incl. tax" } else { "excl. tax" },
                human(fig.per_second())
            );
        }
        let _ = writeln!(
            md,
            "\n*engine*: the calculator alone with rates already resolved. *service*: the full `calculateTax` call (rate-cache lookup, item mapping, applied taxes).\n"
        );
        if let Some((dir, passed, failed, lines, elapsed)) = &self.conformance {
            let rate = *lines as f64 / elapsed.as_secs_f64().max(1e-9);
            let _ = writeln!(md, "## Conformance run\n");
            let _ = writeln!(
                md,
                "`tillbridge conformance tax {}`: {passed} passed, {failed} failed, {lines} calculated lines in {:.3} s = {} lines/s (JSON parsing, rate resolution from the vector's tables, calculation and comparison included).",
                dir.display(),
                elapsed.as_secs_f64(),
                human(rate)
            );
            if let Some(fig) = &self.vector_engine {
                let _ = writeln!(
                    md,
                    "\nThe same cases parsed once and computed repeatedly ({}): {} lines/s.\n",
                    fig.name,
                    human(fig.per_second())
                );
                let _ = writeln!(
                    md,
                    "For scale, Magento's own PHP code computes these cases at roughly {} lines/s on this class of machine (figure quoted in the issue, not measured here): the calculation alone runs at {:.0}× that, the whole conformance run (parsing and comparing included) at {:.1}×.\n",
                    human(MAGENTO_PHP_LINES_PER_SECOND),
                    fig.per_second() / MAGENTO_PHP_LINES_PER_SECOND,
                    rate / MAGENTO_PHP_LINES_PER_SECOND
                );
            }
        }
        md
    }
}
