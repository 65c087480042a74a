//! `tillbridge audit`: read both sides and Tillbridge's own view, and explain every
//! discrepancy.
//!
//! The reads, in order, each with progress on stderr:
//!
//! 1. every POS's catalog (variation → SKU, as the runner maps it: `runner::convert::Catalog`)
//!    and a full stock snapshot of its mapped locations, read from the start and never
//!    committed (the runner's cursors are not touched);
//! 2. every Commerce source item of the mapped sources (paged search, 300 a page), and for each
//!    SKU that matters whether Commerce has a product for it (`get-product-salable-quantity`
//!    answers 404 for an unknown SKU; source items carry no product check in Magento), through
//!    a client paced at the configured `requests_per_second`;
//! 3. the engine as the store has it (`crate::restore`: snapshot and the records after it),
//!    corrected by the outbox rows after the snapshot (`core::sync::audit::apply_outbox`) and
//!    the open `commerce_refused` exceptions.
//!
//! `core::sync::audit` compares and explains; this module only reads and prints. Nothing is
//! written anywhere: the audit can run beside the service.

pub mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use rust_decimal::Decimal;
use serde::Serialize;
use tillbridge_core::inventory as mage;
use tillbridge_core::mapping::MappingProblemKind;
use tillbridge_core::pos::{PosVariation, PosVariationId, Sku, SourceCode, StockLevel, Timestamp};
use tillbridge_core::sync::audit::{
    AuditInput, AuditReport, CommandFact, CommerceItem, KeyFacts, PosSide, SyncView,
    UnsyncedVariation, apply_outbox, audit,
};
use tillbridge_core::sync::{Command, Reason, StockKey};

pub use progress::Progress;

use crate::commerce::types::SourceItemStatus;
use crate::commerce::{Budget, BudgetConfig, CommerceClient, Filter, SearchCriteria};
use crate::config::Settings;
use crate::pos::{BatchPayload, Feed, PosConnector, PosCursor};
use crate::restore::restore;
use crate::runner::convert::Catalog;
use crate::runner::{RunnerError, parts};
use crate::store::{MAX_LIMIT, Store, StoreError};

/// Magento's largest page.
const PAGE_SIZE: u32 = 300;
/// Snapshot pages read per POS at most (a guard against a feed that never ends).
const MAX_POS_PAGES: usize = 100_000;

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Ask Commerce whether each SKU exists as a product (one request per SKU).
    pub product_check: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            product_check: true,
        }
    }
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading POS '{pos}': {message}")]
    Pos { pos: String, message: String },
    #[error("reading Commerce: {0}")]
    Commerce(String),
}

/// How much was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadCounts {
    pub pos_levels: usize,
    /// Stock records the POS sent that could not be read.
    pub pos_record_errors: usize,
    pub catalog_variations: usize,
    pub source_items: usize,
    pub products_checked: usize,
}

/// Where Tillbridge's view came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    /// The record the newest snapshot had seen (`None`: no snapshot).
    pub snapshot_record: Option<i64>,
    pub replayed_records: usize,
    /// Outbox rows after the snapshot that corrected the engine's view.
    pub outbox_commands: usize,
}

/// One audit: what was read, and the report.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    pub generated_at: Timestamp,
    /// The Commerce sources audited (the mapped stores').
    pub sources: Vec<String>,
    pub read: ReadCounts,
    pub engine: EngineInfo,
    /// Things the reader should know that are not discrepancies (unreadable POS records).
    pub notes: Vec<String>,
    #[serde(flatten)]
    pub report: AuditReport,
}

/// Lower-cased SKU and source: Commerce compares SKUs without case.
type JoinKey = (String, SourceCode);

fn join_key(sku: &Sku, source: &SourceCode) -> JoinKey {
    (sku.as_str().to_lowercase(), source.clone())
}

/// Run an audit with the settings' connectors and store.
pub async fn run(
    settings: &Settings,
    options: AuditOptions,
    now: Timestamp,
    progress: &mut Progress<'_>,
) -> Result<AuditRun, AuditError> {
    let p = parts(settings)?;
    // The service paces Commerce with the engine's budget and gives the client twice the rate
    // as a burst guard; the audit has no engine, so the client itself keeps to the rate.
    let rate = f64::from(settings.commerce.requests_per_second.max(1));
    let commerce = CommerceClient::new(
        p.commerce.config().clone(),
        Budget::new(BudgetConfig {
            initial_rate: rate,
            max_rate: rate,
            burst: rate,
            ..BudgetConfig::default()
        }),
    )
    .map_err(|e| AuditError::Commerce(e.to_string()))?;

    let mut read = ReadCounts::default();
    let mut notes = Vec::new();
    // 1. The POS.
    let mut pos_sides: BTreeMap<JoinKey, (Sku, PosSide)> = BTreeMap::new();
    let mut unsynced: Vec<UnsyncedVariation> = Vec::new();
    for (pos_id, connector) in &p.pos {
        let stores: Vec<(String, SourceCode)> = settings
            .stores
            .iter()
            .filter(|s| &s.pos == pos_id)
            .filter_map(|s| Some((s.location.clone(), SourceCode::parse(&s.source).ok()?)))
            .collect();
        if stores.is_empty() {
            continue;
        }
        let (variations, catalog_errors) =
            connector.catalog().await.map_err(|e| AuditError::Pos {
                pos: pos_id.clone(),
                message: format!("catalog: {e}"),
            })?;
        read.catalog_variations += variations.len();
        if !catalog_errors.is_empty() {
            notes.push(format!(
                "POS '{pos_id}': {} catalog objects could not be read (their stock is not synced)",
                catalog_errors.len()
            ));
        }
        let (levels, errors) = read_snapshot(pos_id, connector.as_ref(), progress).await?;
        read.pos_levels += levels.len();
        read.pos_record_errors += errors;
        if errors > 0 {
            notes.push(format!(
                "POS '{pos_id}': {errors} stock records could not be read (see the stored records of kind pos_stock)"
            ));
        }
        let catalog = Catalog::from_variations(&variations, catalog_errors.len(), now);
        pos_side(
            &stores,
            &variations,
            &catalog,
            &levels,
            &mut pos_sides,
            &mut unsynced,
        );
    }

    // 2. Commerce.
    let sources: Vec<SourceCode> = settings
        .stores
        .iter()
        .filter_map(|s| SourceCode::parse(&s.source).ok())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let items = read_source_items(&commerce, &sources, progress).await?;
    read.source_items = items.len();

    // 3. Tillbridge's view.
    let store = p.store.as_ref();
    let restored = restore(store, settings, now)?;
    let facts = outbox_after(store, restored.snapshot_at)?;
    let mut views: BTreeMap<StockKey, SyncView> = restored
        .engine
        .ledger()
        .iter()
        .map(|(k, e)| (k.clone(), SyncView::from_entry(e)))
        .collect();
    apply_outbox(&mut views, restored.engine.orders(), &facts);
    for e in store.exceptions(true, MAX_LIMIT, 0)?.items {
        if e.entry.reason != Reason::CommerceRefused {
            continue;
        }
        let Some((sku, source)) = e.entry.subject.rsplit_once('@') else {
            continue;
        };
        if let (Ok(sku), Ok(source)) = (Sku::parse(sku), SourceCode::parse(source)) {
            views.entry(StockKey::new(sku, source)).or_default().refused =
                Some(e.entry.message.clone());
        }
    }
    let views: BTreeMap<JoinKey, SyncView> = views
        .into_iter()
        .map(|(k, v)| (join_key(&k.sku, &k.source), v))
        .collect();

    // Every key either side knows.
    let mut keys: BTreeMap<JoinKey, KeyFacts> = BTreeMap::new();
    for (jk, (sku, side)) in pos_sides {
        keys.insert(
            jk.clone(),
            KeyFacts {
                key: StockKey::new(sku, jk.1.clone()),
                pos: side,
                commerce: None,
                product_exists: None,
                sync: None,
            },
        );
    }
    for (sku, source, item) in items {
        let jk = join_key(&sku, &source);
        keys.entry(jk)
            .or_insert_with(|| KeyFacts {
                key: StockKey::new(sku, source),
                pos: PosSide::NotAtPos,
                commerce: None,
                product_exists: None,
                sync: None,
            })
            .commerce = Some(item);
    }
    for (jk, k) in keys.iter_mut() {
        k.sync = views.get(jk).cloned();
    }
    if options.product_check {
        read.products_checked = check_products(&commerce, settings, &mut keys, progress).await?;
    }
    let input = AuditInput {
        now,
        keys: keys.into_values().collect(),
        unsynced,
    };
    Ok(AuditRun {
        generated_at: now,
        sources: sources.iter().map(ToString::to_string).collect(),
        read,
        engine: EngineInfo {
            snapshot_record: restored.snapshot_record.map(|r| r.0),
            replayed_records: restored.replayed,
            outbox_commands: facts.len(),
        },
        notes,
        report: audit(&input),
    })
}

/// A full stock snapshot from the start cursor (nothing committed). The levels, and how many
/// records could not be read.
async fn read_snapshot(
    pos_id: &str,
    connector: &dyn PosConnector,
    progress: &mut Progress<'_>,
) -> Result<(Vec<StockLevel>, usize), AuditError> {
    let what = format!("POS stock levels ({pos_id})");
    let mut cursor = PosCursor::start();
    let mut levels = Vec::new();
    let mut errors = 0;
    for _ in 0..MAX_POS_PAGES {
        let batch = connector
            .fetch(Feed::StockSnapshot, &cursor)
            .await
            .map_err(|e| AuditError::Pos {
                pos: pos_id.to_owned(),
                message: format!("stock snapshot: {e}"),
            })?;
        errors += batch.record_errors.len();
        if let BatchPayload::StockSnapshot { levels: page, .. } = batch.payload {
            levels.extend(page);
        }
        progress.update(&what, levels.len() as u64, None);
        if !batch.has_more {
            break;
        }
        cursor = batch.next_cursor;
    }
    progress.finish(&what, levels.len() as u64, None);
    Ok((levels, errors))
}

/// The POS side of every key of one POS, the way the runner maps it: a level's SKU is the
/// record's own or the catalog's; a variation sharing its SKU with another is not synced; a
/// tracked, mapped variation with no level at a covered location has none on hand.
fn pos_side(
    stores: &[(String, SourceCode)],
    variations: &[PosVariation],
    catalog: &Catalog,
    levels: &[StockLevel],
    sides: &mut BTreeMap<JoinKey, (Sku, PosSide)>,
    unsynced: &mut Vec<UnsyncedVariation>,
) {
    let source_of: BTreeMap<&str, &SourceCode> =
        stores.iter().map(|(l, s)| (l.as_str(), s)).collect();
    let tracked: BTreeMap<&PosVariationId, bool> =
        variations.iter().map(|v| (&v.id, v.tracked)).collect();
    let mut shared: BTreeMap<&PosVariationId, (&Sku, Vec<String>)> = BTreeMap::new();
    for p in &catalog.problems {
        if p.kind != MappingProblemKind::SkuUsedByTwoVariations {
            continue;
        }
        let Some(sku) = &p.subject.sku else { continue };
        let names: Vec<String> = p
            .subject
            .variations
            .iter()
            .map(ToString::to_string)
            .collect();
        for v in &p.subject.variations {
            shared.insert(v, (sku, names.clone()));
        }
    }
    // The newest level per (location, variation).
    let mut newest: BTreeMap<(&str, &PosVariationId), &StockLevel> = BTreeMap::new();
    for l in levels {
        let k = (l.location.as_str(), &l.variation);
        if newest.get(&k).is_none_or(|held| held.as_of <= l.as_of) {
            newest.insert(k, l);
        }
    }
    for ((location, variation), level) in newest {
        let Some(source) = source_of.get(location) else {
            continue;
        };
        let source = (*source).clone();
        if let Some(sku) = level.pos_sku.as_ref().or_else(|| catalog.sku(variation)) {
            sides.insert(
                join_key(sku, &source),
                (
                    sku.clone(),
                    PosSide::Figure {
                        on_hand: level.available,
                        as_of: Some(level.as_of),
                    },
                ),
            );
        } else if let Some((sku, names)) = shared.get(variation) {
            let entry = sides.entry(join_key(sku, &source)).or_insert_with(|| {
                (
                    (*sku).clone(),
                    PosSide::SharedSku {
                        variations: names.clone(),
                        on_hand: Decimal::ZERO,
                    },
                )
            });
            if let PosSide::SharedSku { on_hand, .. } = &mut entry.1 {
                *on_hand += level.available;
            }
        } else {
            unsynced.push(UnsyncedVariation {
                variation: variation.to_string(),
                source,
                on_hand: level.available,
            });
        }
    }
    // What the snapshot leaves out.
    for (_, source) in stores {
        for (variation, sku) in catalog.items() {
            let side = if tracked.get(variation).copied().unwrap_or(true) {
                PosSide::Figure {
                    on_hand: Decimal::ZERO,
                    as_of: None,
                }
            } else {
                PosSide::Untracked
            };
            sides
                .entry(join_key(sku, source))
                .or_insert_with(|| (sku.clone(), side));
        }
        for (sku, names) in shared.values() {
            sides.entry(join_key(sku, source)).or_insert_with(|| {
                (
                    (*sku).clone(),
                    PosSide::SharedSku {
                        variations: names.clone(),
                        on_hand: Decimal::ZERO,
                    },
                )
            });
        }
    }
}

/// Every source item of `sources`.
async fn read_source_items(
    commerce: &CommerceClient,
    sources: &[SourceCode],
    progress: &mut Progress<'_>,
) -> Result<Vec<(Sku, SourceCode, CommerceItem)>, AuditError> {
    let what = "Commerce source items";
    let mut out = Vec::new();
    if sources.is_empty() {
        return Ok(out);
    }
    let criteria = SearchCriteria::new()
        .and(Filter::in_list(
            "source_code",
            sources.iter().map(SourceCode::as_str),
        ))
        .page_size(PAGE_SIZE);
    let mut pages = commerce.pages::<crate::commerce::types::SourceItem>(criteria);
    let mut total = None;
    let mut seen = 0u64;
    while let Some(page) = pages
        .next_page()
        .await
        .map_err(|e| AuditError::Commerce(format!("source items: {e}")))?
    {
        total = Some(page.total_count);
        for i in page.items {
            seen += 1;
            // A SKU or source Tillbridge cannot name is not one it syncs.
            let (Ok(sku), Ok(source)) = (
                Sku::parse(i.sku.as_str()),
                SourceCode::parse(i.source_code.as_str()),
            ) else {
                continue;
            };
            out.push((
                sku,
                source,
                CommerceItem {
                    quantity: i.quantity,
                    in_stock: i.status == SourceItemStatus::InStock,
                },
            ));
        }
        progress.update(what, seen, total);
    }
    progress.finish(what, seen, total.or(Some(seen)));
    Ok(out)
}

/// Whether Commerce has a product for each SKU that matters (stock on either side). Returns
/// how many SKUs were checked.
async fn check_products(
    commerce: &CommerceClient,
    settings: &Settings,
    keys: &mut BTreeMap<JoinKey, KeyFacts>,
    progress: &mut Progress<'_>,
) -> Result<usize, AuditError> {
    let what = "Commerce products";
    let stock_of = |source: &SourceCode| {
        settings
            .stores
            .iter()
            .find(|s| s.source == source.as_str())
            .and_then(|s| s.stocks.first().copied())
            .or_else(|| settings.commerce.website_stocks.values().next().copied())
            .unwrap_or(1)
    };
    let mut wanted: BTreeMap<String, (Sku, u32)> = BTreeMap::new();
    for k in keys.values() {
        let matters = match &k.pos {
            PosSide::Figure { on_hand, .. } => !on_hand.is_zero() || k.commerce.is_some(),
            PosSide::NotAtPos => k.commerce.is_some_and(|c| !c.quantity.is_zero()),
            PosSide::Untracked | PosSide::SharedSku { .. } => false,
        };
        if matters {
            wanted
                .entry(k.key.sku.as_str().to_lowercase())
                .or_insert_with(|| (k.key.sku.clone(), stock_of(&k.key.source)));
        }
    }
    let total = wanted.len() as u64;
    let mut exists: BTreeMap<String, bool> = BTreeMap::new();
    for (n, (lower, (sku, stock))) in wanted.iter().enumerate() {
        progress.update(what, n as u64, Some(total));
        let (Ok(msku), Ok(stock)) = (
            mage::Sku::parse(sku.as_str()),
            mage::StockId::parse(i64::from(*stock)),
        ) else {
            continue;
        };
        match commerce.salable_quantity(&msku, stock).await {
            Ok(_) => {
                exists.insert(lower.clone(), true);
            }
            Err(e) if e.status() == Some(404) => {
                exists.insert(lower.clone(), false);
            }
            // 400: a type without source items — the product exists.
            Err(e) if e.status() == Some(400) => {
                exists.insert(lower.clone(), true);
            }
            Err(e) => return Err(AuditError::Commerce(format!("product {sku}: {e}"))),
        }
    }
    progress.finish(what, total, Some(total));
    for (jk, k) in keys.iter_mut() {
        k.product_exists = exists.get(&jk.0).copied();
    }
    Ok(exists.len())
}

/// The outbox rows created after `since` (every row when there is no snapshot), oldest first.
fn outbox_after(
    store: &dyn Store,
    since: Option<Timestamp>,
) -> Result<Vec<CommandFact>, StoreError> {
    let mut out = Vec::new();
    let mut offset = 0;
    'pages: loop {
        let page = store.commands(None, MAX_LIMIT, offset)?;
        if page.items.is_empty() {
            break;
        }
        offset += MAX_LIMIT;
        for row in page.items {
            if since.is_some_and(|s| row.created_at.as_millis() < s.as_millis()) {
                break 'pages;
            }
            let Ok(command) = serde_json::from_value::<Command>(row.payload.clone()) else {
                continue;
            };
            out.push(CommandFact {
                command,
                state: row.state,
                detail: row.detail,
                created_at: row.created_at,
                updated_at: row.updated_at,
            });
        }
    }
    out.reverse();
    Ok(out)
}

fn show(d: Option<Decimal>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| d.normalize().to_string())
}

/// The human table: one row per cause (a discrepancy's further causes on lines below it),
/// then the counts.
pub fn write_table(run: &AuditRun, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Tillbridge audit at {}", run.generated_at)?;
    writeln!(
        out,
        "  read     {} POS stock levels, {} catalog variations, {} Commerce source items at {}, {} products checked",
        run.read.pos_levels,
        run.read.catalog_variations,
        run.read.source_items,
        if run.sources.is_empty() {
            "no source".to_owned()
        } else {
            run.sources.join(", ")
        },
        run.read.products_checked
    )?;
    writeln!(
        out,
        "  engine   {}, {} records replayed, {} outbox commands after it",
        run.engine.snapshot_record.map_or_else(
            || "no snapshot".to_owned(),
            |r| format!("snapshot at record {r}")
        ),
        run.engine.replayed_records,
        run.engine.outbox_commands
    )?;
    for n in &run.notes {
        writeln!(out, "  note     {n}")?;
    }
    writeln!(out)?;
    let r = &run.report;
    if r.discrepancies.is_empty() {
        writeln!(
            out,
            "No discrepancies: {} items compared, POS and Commerce agree.",
            r.compared
        )?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = r
        .discrepancies
        .iter()
        .map(|d| {
            [
                d.subject.clone(),
                show(d.pos),
                show(d.commerce),
                show(d.expected),
                d.verdict.as_str().to_owned(),
            ]
        })
        .collect();
    let head = ["SUBJECT", "POS", "COMMERCE", "EXPECTED", "VERDICT"];
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    writeln!(
        out,
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  CAUSE",
        head[0],
        head[1],
        head[2],
        head[3],
        head[4],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3],
        w4 = w[4]
    )?;
    for (d, row) in r.discrepancies.iter().zip(&rows) {
        for (i, c) in d.causes.iter().enumerate() {
            let cells: [&str; 5] = if i == 0 {
                [&row[0], &row[1], &row[2], &row[3], &row[4]]
            } else {
                ["", "", "", "", ""]
            };
            let verdict = if i == 0 || c.verdict == d.verdict {
                cells[4]
            } else {
                c.verdict.as_str()
            };
            writeln!(
                out,
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                verdict,
                c.text,
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} discrepancies in {} items compared: {} expected, {} need action, {} unexplained.",
        r.discrepancies.len(),
        r.compared,
        r.expected,
        r.action,
        r.unexplained
    )?;
    if r.unexplained > 0 {
        writeln!(
            out,
            "Unexplained means Commerce was changed outside Tillbridge: find out who changed it. The reconciliation sweep (engine.sweep_every_minutes) or the till's next figure for the item puts the till's figure back."
        )?;
    }
    Ok(())
}

/// The `--json` form.
pub fn to_json(run: &AuditRun) -> serde_json::Value {
    serde_json::to_value(run).unwrap_or_default()
}

/// `tillbridge audit --config FILE [--json FILE]`: the table on `out`, progress on `err`.
/// [`crate::cli::Status::Failed`] (exit 1) when any discrepancy is unexplained.
pub fn cli(
    config: &std::path::Path,
    json: Option<&std::path::Path>,
    options: AuditOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<crate::cli::Status, crate::cli::CliError> {
    use std::io::IsTerminal;
    let settings = Settings::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let now = crate::runner::system_clock()();
    let tty = std::io::stderr().is_terminal();
    let run = {
        let mut progress = Progress::new(err, tty);
        runtime.block_on(run(&settings, options, now, &mut progress))?
    };
    write_table(&run, out)?;
    out.flush()?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&to_json(&run)).unwrap_or_default();
        std::fs::write(path, text + "\n")?;
        writeln!(err, "wrote {}", path.display())?;
    }
    Ok(crate::cli::Status::from_all_passed(
        run.report.all_explained(),
    ))
}
