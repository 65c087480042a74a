//! `tillbridge demo`: the whole sync, live, on one machine in a few minutes.
//!
//! A generated retail world ([`world`]: stores in UK towns, a long-tail catalogue, a trading
//! day) is seeded into the Square and Commerce emulators, both running in this process on
//! loopback; Tillbridge runs against them exactly as `tillbridge serve` would (SQLite in a
//! temporary folder, the API and dashboard on 127.0.0.1, its URL and token printed). The
//! [`driver`] then plays the compressed day: baskets and returns at the tills, web orders for
//! delivery and for collection, till staff fulfilling them, a cancel and a refund or two. At
//! closing the demo waits (bounded) for the sync to settle and measures, from both emulators,
//! what a retailer cares about: did every sale reach Commerce, how fast, was anything
//! oversold, does Commerce hold exactly what the tills hold, and is any exception left
//! unexplained.
//!
//! Exit 0 when drift is zero and every open exception is explained; 1 otherwise; 2 when the
//! demo could not run.

pub mod driver;
pub mod measure;
pub mod world;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::pos::Timestamp;

use crate::cli::{CliError, Status};
use crate::config::Settings;
use crate::store::Store;
use driver::{Driver, Endpoints};
use measure::Summary;
use world::{World, WorldSpec};

/// `tillbridge demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Length of the compressed trading day, in minutes of real time (09:00–19:00 at the
    /// shops).
    #[arg(long, default_value_t = 3.0)]
    pub minutes: f64,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Seed of the generated world: the same seed gives the same world.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of stores.
    #[arg(long, default_value_t = 10)]
    pub stores: usize,
    /// Number of SKUs in the catalogue.
    #[arg(long, default_value_t = 2_000)]
    pub skus: usize,
    /// Port of the dashboard and API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Keep the sync, its dashboard and the emulators running after the summary, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
}

/// Most stores and SKUs the demo generates (the emulators hold everything in memory).
pub const MAX_STORES: usize = 60;
pub const MAX_SKUS: usize = 20_000;

impl DemoArgs {
    fn check(&self) -> Result<WorldSpec, CliError> {
        let mut problems = Vec::new();
        if !self.minutes.is_finite() || self.minutes <= 0.0 || self.minutes > 24.0 * 60.0 {
            problems.push(format!(
                "--minutes {}: give a length above 0 (e.g. 3)",
                self.minutes
            ));
        }
        if self.stores == 0 || self.stores > MAX_STORES {
            problems.push(format!("--stores {}: give 1 to {MAX_STORES}", self.stores));
        }
        if self.skus == 0 || self.skus > MAX_SKUS {
            problems.push(format!("--skus {}: give 1 to {MAX_SKUS}", self.skus));
        }
        if !problems.is_empty() {
            return Err(CliError::Demo(problems.join("; ")));
        }
        #[allow(clippy::cast_possible_truncation)] // bounded above: at most a day of ms
        let day_ms = (self.minutes * 60_000.0).round() as i64;
        Ok(WorldSpec {
            seed: self.seed,
            stores: self.stores,
            skus: self.skus,
            day_ms,
        })
    }
}

/// How the demo's Commerce emulator is throttled: a small store's PHP pool, served one request
/// after another.
const COMMERCE_REQUESTS_PER_SECOND: f64 = 25.0;
const COMMERCE_ITEMS_PER_SECOND: f64 = 500.0;
/// Tillbridge's own ceiling, below what the store can take (the budget adapts under 429s).
const SYNC_REQUESTS_PER_SECOND: u32 = 10;
const SYNC_ITEMS_PER_SECOND: u32 = 200;
const POLL_MS: u64 = 500;

/// Run the demo; the report goes to `out`.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<Status, CliError> {
    let spec = args.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args, spec, out))
}

fn demo_err(what: &str) -> impl Fn(String) -> CliError + '_ {
    move |e| CliError::Demo(format!("{what}: {e}"))
}

/// A token nobody can guess from outside this run (not a secret worth more than the demo).
fn token(label: &str) -> String {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(format!("{label}:{}:{nanos}", std::process::id()));
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("demo-{hex}")
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usize_text(n: usize) -> String {
    thousands(u64::try_from(n).unwrap_or(u64::MAX))
}

/// The shops' clock: 09:00 at opening, 19:00 at closing.
fn shop_time(elapsed_ms: i64, day_ms: i64) -> String {
    let minutes = 9 * 60 + elapsed_ms.clamp(0, day_ms) * 600 / day_ms.max(1);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[allow(clippy::too_many_lines)]
async fn run_async(
    args: &DemoArgs,
    spec: WorldSpec,
    out: &mut dyn Write,
) -> Result<Status, CliError> {
    let started = Instant::now();
    let world = world::generate(spec);
    let dir = std::env::temp_dir().join(format!(
        "tillbridge-demo-{}-{}",
        std::process::id(),
        token("dir").trim_start_matches("demo-")
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Demo(format!("cannot create a folder in {}: {e}", dir.display())))?;
    let result = demo_in(args, &world, &dir, started, out).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_lines)]
async fn demo_in(
    args: &DemoArgs,
    world: &World,
    dir: &std::path::Path,
    started: Instant,
    out: &mut dyn Write,
) -> Result<Status, CliError> {
    let spec = world.spec;
    let counts = world.day_counts();
    let square_token = token("square");
    let commerce_token = token("commerce");
    let api_token = token("api");

    // The emulators, in this process on loopback.
    let (square_handle, square) =
        tillbridge_square_emulator::start(tillbridge_square_emulator::Config {
            token: square_token.clone(),
            seed: spec.seed,
            real_time: true,
            ..tillbridge_square_emulator::Config::default()
        })
        .await
        .map_err(|e| CliError::Demo(format!("the Square emulator could not start: {e}")))?;
    let mut settings = tillbridge_commerce_emulator::state::Settings::default();
    settings.input_limits.enabled = true;
    settings.throttle.enabled = true;
    settings.throttle.requests_per_second = COMMERCE_REQUESTS_PER_SECOND;
    settings.throttle.source_items_per_second = COMMERCE_ITEMS_PER_SECOND;
    let (commerce_handle, commerce) =
        tillbridge_commerce_emulator::start(tillbridge_commerce_emulator::EmulatorConfig {
            token: commerce_token.clone(),
            seed: spec.seed,
            real_time: true,
            settings,
            ..tillbridge_commerce_emulator::EmulatorConfig::default()
        })
        .await
        .map_err(|e| CliError::Demo(format!("the Commerce emulator could not start: {e}")))?;
    let http = reqwest::Client::new();

    writeln!(
        out,
        "Tillbridge demo: a generated retail world, synced live (seed {})",
        spec.seed
    )?;
    let names: Vec<&str> = world.stores.iter().map(|s| s.name.as_str()).collect();
    writeln!(
        out,
        "  world      {} stores ({}), {} SKUs (the best-selling tenth sells {}% of the units), {} units on the shelves",
        world.stores.len(),
        names.join(", "),
        usize_text(world.products.len()),
        world.top_tenth_share_percent(),
        world.units_on_hand().normalize()
    )?;
    writeln!(
        out,
        "  the day    09:00-19:00 in {}: {} baskets at the tills, {} returns, {} web orders ({} for delivery from a store, {} click and collect), {} cancelled and {} refunded by their customers",
        minutes_text(args.minutes),
        usize_text(counts.baskets),
        counts.returns,
        counts.web_orders,
        counts.ship_orders,
        counts.collect_orders,
        counts.cancels,
        counts.refunds
    )?;
    out.flush()?;

    // Seed both sides: the tills' catalogue and stock; Commerce's sources, stock, products and
    // last night's source items (the tills' figures but for a few).
    let seeded_at = Instant::now();
    let (locations, variations) = seed_square(&http, &square, world)
        .await
        .map_err(demo_err("seeding the Square emulator"))?;
    seed_commerce(&http, &commerce, world)
        .await
        .map_err(demo_err("seeding the Commerce emulator"))?;
    writeln!(
        out,
        "  seeded     {} till figures in Square and {} source items in Commerce ({} of them stale since last night) in {}",
        usize_text(world.stock_levels()),
        usize_text(world.stock_levels()),
        world.commerce_stale.len(),
        seconds(seeded_at.elapsed())
    )?;

    // Tillbridge, as `tillbridge serve` runs it.
    let listener = std::net::TcpListener::bind(("127.0.0.1", args.port))
        .map_err(|e| CliError::Demo(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    let database = dir.join("tillbridge.db");
    let settings = Settings::from_toml(
        &settings_toml(
            world,
            &api_token,
            &database,
            &square,
            &square_token,
            &commerce,
            &commerce_token,
            &locations,
        ),
        "the demo's configuration",
        Vec::new(),
    )?;
    let service = crate::runner::service::start(settings, crate::runner::system_clock(), listener)
        .await
        .map_err(|e| CliError::Demo(format!("the sync could not start: {e}")))?;
    writeln!(
        out,
        "  Square     emulator on {square} (control API under /__emulator/)"
    )?;
    writeln!(
        out,
        "  Commerce   emulator on {commerce}, throttled like a small store ({COMMERCE_REQUESTS_PER_SECOND} requests/s, {COMMERCE_ITEMS_PER_SECOND} source items/s); Tillbridge's budget {SYNC_REQUESTS_PER_SECOND} requests/s, {SYNC_ITEMS_PER_SECOND} items/s"
    )?;
    writeln!(out, "  database   SQLite {}", database.display())?;
    writeln!(
        out,
        "  dashboard  {}/  (API under /api; bearer token {api_token})",
        service.url()
    )?;
    out.flush()?;

    let store = service.store();
    // Opening: the tills' figures are read, Commerce's source items compared, and what differs
    // is written.
    writeln!(out)?;
    writeln!(
        out,
        "Opening: Tillbridge reads the tills' stock and brings Commerce in line"
    )?;
    out.flush()?;
    let opening_started = Instant::now();
    let opening_bound = Duration::from_secs(600);
    let mut quiet_since: Option<Instant> = None;
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if service.runner_finished() {
            return Err(CliError::Demo(
                "the sync stopped during the opening (see its last error on the dashboard)".into(),
            ));
        }
        let view = service.view();
        let read = store
            .cursor("pos:square:snapshot-done")
            .map_err(|e| CliError::Demo(format!("storage: {e}")))?
            .is_some();
        let quiet = read && view.pending_pushes == 0 && view.commands_in_flight == 0;
        if last_print.elapsed() >= Duration::from_secs(3) {
            last_print = Instant::now();
            writeln!(
                out,
                "  {:>5}  till figures read {} · items written {} · backlog {}",
                format!("{:.0}s", opening_started.elapsed().as_secs_f64()),
                thousands(view.stats.pos_events),
                thousands(view.stats.items_written),
                view.pending_pushes
            )?;
            out.flush()?;
        }
        match (quiet, quiet_since) {
            (true, Some(t)) if t.elapsed() >= Duration::from_millis(POLL_MS * 3) => break,
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        if opening_started.elapsed() > opening_bound {
            return Err(CliError::Demo(format!(
                "the opening did not finish within {} (backlog {}, {} commands in flight)",
                seconds(opening_bound),
                view.pending_pushes,
                view.commands_in_flight
            )));
        }
    }
    let opening = service.view().stats;
    let opening_time = opening_started.elapsed();
    writeln!(
        out,
        "  open after {}: {} till figures read, {} Commerce requests, {} source items written",
        seconds(opening_time),
        thousands(opening.pos_events),
        thousands(opening.commerce_requests),
        thousands(opening.items_written)
    )?;

    // The day.
    writeln!(out)?;
    writeln!(
        out,
        "The day ({}): open {}/ to watch it live",
        minutes_text(args.minutes),
        service.url()
    )?;
    out.flush()?;
    let day_from = crate::runner::system_clock()();
    let endpoints = Endpoints {
        http: http.clone(),
        square: square.clone(),
        square_handle: square_handle.clone(),
        commerce: commerce.clone(),
        commerce_token: commerce_token.clone(),
        commerce_handle: commerce_handle.clone(),
        locations,
        variations,
    };
    let opened = Instant::now();
    let mut driver = Driver::new(world, endpoints, opened);
    let progress_every = Duration::from_millis(u64::try_from(spec.day_ms / 12).unwrap_or(15_000))
        .clamp(Duration::from_secs(2), Duration::from_secs(20));
    let mut last_progress = Instant::now();
    let mut last_exception_look = Instant::now();
    loop {
        driver.step(false).await;
        for note in driver.notes.drain(..) {
            writeln!(
                out,
                "  {}  {note}",
                shop_time(
                    i64::try_from(opened.elapsed().as_millis()).unwrap_or(0),
                    spec.day_ms
                )
            )?;
        }
        if last_exception_look.elapsed() >= Duration::from_secs(1) {
            last_exception_look = Instant::now();
            let stuck = unfulfillable_orders(store.as_ref());
            driver.cancel_unfulfillable(&stuck).await;
        }
        let elapsed = driver.elapsed_ms();
        if last_progress.elapsed() >= progress_every {
            last_progress = Instant::now();
            progress_line(
                out,
                &driver,
                &service,
                store.as_ref(),
                day_from,
                elapsed,
                spec.day_ms,
            )?;
        }
        if driver.schedule_done() && elapsed >= spec.day_ms {
            break;
        }
        let wait = driver
            .next_due_ms()
            .map_or(50, |d| (d - elapsed).clamp(1, 50));
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(50))).await;
    }
    progress_line(
        out,
        &driver,
        &service,
        store.as_ref(),
        day_from,
        spec.day_ms,
        spec.day_ms,
    )?;

    // Closing: the last parcels leave, the sync settles; then measure.
    writeln!(out)?;
    writeln!(
        out,
        "Closing: the last orders leave the stores; waiting for the sync to settle"
    )?;
    out.flush()?;
    let closing = Instant::now();
    let settle_bound = Duration::from_secs(120)
        + Duration::from_millis(u64::try_from(spec.day_ms / 2).unwrap_or(0));
    let mut settled = false;
    let mut clean_checks = 0;
    let mut last_print = Instant::now();
    let mut measured = measure::measure(&driver, world);
    while closing.elapsed() < settle_bound {
        driver.step(true).await;
        for note in driver.notes.drain(..) {
            writeln!(out, "  19:00  {note}")?;
        }
        let stuck = unfulfillable_orders(store.as_ref());
        driver.cancel_unfulfillable(&stuck).await;
        let view = service.view();
        // Settled: nothing left to write and no order open. Salable-quantity reads may still be
        // draining (they only look, at the lowest priority).
        let quiet = view.pending_pushes == 0
            && view.writes_in_flight == 0
            && driver.open_till_orders() == 0
            && driver.open_web_orders() == 0;
        if quiet {
            measured = measure::measure(&driver, world);
            if measured.drift_units.is_zero() {
                clean_checks += 1;
            } else {
                clean_checks = 0;
            }
            if clean_checks >= 3 {
                settled = true;
                break;
            }
        } else {
            clean_checks = 0;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            writeln!(
                out,
                "  {:>5}  web orders open {} · till orders open {} · backlog {} · writes in flight {} · salable reads queued {}",
                format!("{:.0}s", closing.elapsed().as_secs_f64()),
                driver.open_web_orders(),
                driver.open_till_orders(),
                view.pending_pushes,
                view.writes_in_flight,
                view.verifications_waiting
            )?;
            out.flush()?;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    let settle_time = closing.elapsed();
    if !settled {
        measured = measure::measure(&driver, world);
    }
    let view = service.view();
    let samples = store.latencies(day_from).unwrap_or_default();
    let exceptions = store
        .exceptions(true, crate::store::MAX_LIMIT, 0)
        .map(|p| p.items)
        .unwrap_or_default();
    let summary = Summary::new(
        &view,
        &samples,
        &measured,
        &driver,
        world,
        &exceptions,
        measure::Timings {
            opening: opening_time,
            day: opened.elapsed().saturating_sub(settle_time),
            settle: settle_time,
            total: started.elapsed(),
            settled,
        },
        args,
        &opening,
    );
    writeln!(out)?;
    summary.write(out)?;
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary.json())
            .map_err(|e| CliError::Demo(format!("summary JSON: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| {
            CliError::Demo(format!(
                "cannot write the summary to {}: {e}",
                path.display()
            ))
        })?;
        writeln!(out, "summary written to {}", path.display())?;
    }
    let status = Status::from_all_passed(summary.passed());
    out.flush()?;

    if args.keep {
        writeln!(out)?;
        writeln!(
            out,
            "The sync keeps running: {}/ (bearer token {api_token}); stop with Ctrl-C",
            service.url()
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
    }
    let _ = service.stop().await;
    square_handle.stop().await;
    commerce_handle.stop().await;
    Ok(status)
}

fn minutes_text(minutes: f64) -> String {
    if (minutes - minutes.round()).abs() < 1e-9 {
        format!("{minutes:.0} min")
    } else {
        format!("{minutes} min")
    }
}

fn progress_line(
    out: &mut dyn Write,
    driver: &Driver<'_>,
    service: &crate::runner::service::Service,
    store: &dyn Store,
    day_from: Timestamp,
    elapsed: i64,
    day_ms: i64,
) -> Result<(), CliError> {
    let view = service.view();
    let latency =
        crate::api::LatencySummary::from_samples(&store.latencies(day_from).unwrap_or_default());
    let t = &driver.tally;
    writeln!(
        out,
        "  {}  {:>3}%  baskets {} · web orders {} │ sync: POS events {} · Commerce requests {} · items written {} · latency p50 {} · backlog {}",
        shop_time(elapsed, day_ms),
        elapsed.clamp(0, day_ms) * 100 / day_ms.max(1),
        thousands(t.baskets),
        t.web_placed,
        thousands(view.stats.pos_events),
        thousands(view.stats.commerce_requests),
        thousands(view.stats.items_written),
        latency
            .p50_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
        view.pending_pushes
    )?;
    out.flush()?;
    Ok(())
}

/// Orders Tillbridge could not place with any store (an open `unroutable` exception).
fn unfulfillable_orders(store: &dyn Store) -> std::collections::BTreeSet<String> {
    store
        .exceptions(true, crate::store::MAX_LIMIT, 0)
        .map(|p| {
            p.items
                .iter()
                .filter(|e| e.entry.reason == tillbridge_core::sync::types::Reason::Unroutable)
                .filter_map(|e| e.entry.subject.strip_prefix("order ").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn settings_toml(
    world: &World,
    api_token: &str,
    database: &std::path::Path,
    square: &str,
    square_token: &str,
    commerce: &str,
    commerce_token: &str,
    locations: &[String],
) -> String {
    let mut text = format!(
        r#"[service]
listen = "127.0.0.1:0"
api_token = "{api_token}"
database = "{db}"
poll_interval_ms = {POLL_MS}
fulfilment_poll_interval_ms = {POLL_MS}

[commerce]
base_url = "{commerce}"
token = "{commerce_token}"
store_code = "all"
website_stocks = {{ base = 2 }}
requests_per_second = {SYNC_REQUESTS_PER_SECOND}
source_items_per_second = {SYNC_ITEMS_PER_SECOND}

[engine]
sweep_every_minutes = 0
verify_delay_ms = 1000
verify_sample_every = 10

[[pos]]
kind = "square"
id = "square"
base_url = "{square}"
token = "{square_token}"
"#,
        db = database.display().to_string().replace('\\', "/"),
    );
    for (i, s) in world.stores.iter().enumerate() {
        text.push_str(&format!(
            "\n[[stores]]\npos = \"square\"\nlocation = \"{}\"\nsource = \"{}\"\nname = \"{}\"\npriority = {}\nstocks = [2]\nfulfils = true\n",
            locations[i],
            s.source,
            s.name,
            i + 1
        ));
    }
    text
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let r = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{url}: {status} {v}"))
    }
}

/// Locations, items and opening stock in Square; answers the location and variation ids.
async fn seed_square(
    http: &reqwest::Client,
    square: &str,
    world: &World,
) -> Result<(Vec<String>, Vec<String>), String> {
    let items: Vec<Value> = world
        .products
        .iter()
        .map(|p| {
            json!({"name": p.name, "variations": [{"name": "Regular", "sku": p.sku, "price": p.price_pence}]})
        })
        .collect();
    let locations: Vec<Value> = world
        .stores
        .iter()
        .map(|s| json!({"name": s.name}))
        .collect();
    let seeded = post(
        http,
        &format!("{square}/__emulator/seed"),
        &json!({"locations": locations, "items": items}),
    )
    .await?;
    let location_ids: Vec<String> = world
        .stores
        .iter()
        .map(|s| {
            seeded["locations"][&s.name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no location id for {} in {seeded}", s.name))
        })
        .collect::<Result<_, _>>()?;
    let variation_ids: Vec<String> = world
        .products
        .iter()
        .map(|p| {
            seeded["variations_by_sku"][&p.sku]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no variation id for {}", p.sku))
        })
        .collect::<Result<_, _>>()?;
    let mut stock = Vec::with_capacity(world.stock_levels());
    for (si, row) in world.stock.iter().enumerate() {
        for (pi, q) in row.iter().enumerate() {
            stock.push(
                json!({"variation_id": variation_ids[pi], "location_id": location_ids[si],
                              "quantity": q.to_string()}),
            );
        }
    }
    post(
        http,
        &format!("{square}/__emulator/seed"),
        &json!({"stock": stock}),
    )
    .await?;
    Ok((location_ids, variation_ids))
}

/// Sources, the UK stock sold on the `base` website, products and last night's source items.
async fn seed_commerce(
    http: &reqwest::Client,
    commerce: &str,
    world: &World,
) -> Result<(), String> {
    let mut ops: Vec<Value> = world
        .stores
        .iter()
        .map(|s| {
            json!({"op": "create_source", "source_code": s.source, "name": s.name, "enabled": true,
                   "country_id": "GB", "postcode": "YO1 7HH"})
        })
        .collect();
    ops.push(
        json!({"op": "create_stock", "stock_id": 2, "name": "UK stores",
                    "sales_channels": [{"type": "website", "code": "base"}]}),
    );
    ops.push(json!({"op": "save_stock_source_links", "links": world.stores.iter().enumerate().map(|(i, s)| json!({"stock_id": 2, "source_code": s.source, "priority": i + 1})).collect::<Vec<_>>()}));
    for p in &world.products {
        ops.push(json!({"op": "create_product", "sku": p.sku, "type": "simple"}));
    }
    let mut stale: std::collections::BTreeMap<(usize, usize), Decimal> =
        std::collections::BTreeMap::new();
    for (s, p, q) in &world.commerce_stale {
        stale.insert((*s, *p), *q);
    }
    let mut items = Vec::with_capacity(world.stock_levels());
    for (si, row) in world.stock.iter().enumerate() {
        for (pi, q) in row.iter().enumerate() {
            let q = stale.get(&(si, pi)).copied().unwrap_or(*q);
            items.push(
                json!({"sku": world.products[pi].sku, "source_code": world.stores[si].source,
                              "quantity": q.to_string(), "status": u8::from(q > Decimal::ZERO)}),
            );
        }
    }
    ops.push(json!({"op": "save_source_items", "items": items}));
    let res = post(
        http,
        &format!("{commerce}/__emulator/ops"),
        &json!({"ops": ops}),
    )
    .await?;
    if res["failed"] != json!(false) {
        let failure = res["results"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["ok"] == json!(false)))
            .cloned()
            .unwrap_or(res);
        return Err(format!("an op failed: {failure}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_shop_clock_runs_from_nine_to_seven() {
        assert_eq!(shop_time(0, 180_000), "09:00");
        assert_eq!(shop_time(90_000, 180_000), "14:00");
        assert_eq!(shop_time(180_000, 180_000), "19:00");
        assert_eq!(shop_time(500_000, 180_000), "19:00");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn bad_knobs_are_refused_all_at_once() {
        let args = DemoArgs {
            minutes: 0.0,
            summary_json: None,
            seed: 1,
            stores: 0,
            skus: MAX_SKUS + 1,
            port: 0,
            keep: false,
        };
        let err = args.check().unwrap_err().to_string();
        assert!(err.contains("--minutes"), "{err}");
        assert!(err.contains("--stores"), "{err}");
        assert!(err.contains("--skus"), "{err}");
    }

    #[test]
    fn the_configuration_maps_every_store_and_reads() {
        let world = world::generate(WorldSpec {
            stores: 3,
            skus: 10,
            ..WorldSpec::default()
        });
        let locations = vec!["L1".to_owned(), "L2".to_owned(), "L3".to_owned()];
        let text = settings_toml(
            &world,
            "demo-0123456789abcdef",
            std::path::Path::new("/tmp/x/tillbridge.db"),
            "http://127.0.0.1:1",
            "sq",
            "http://127.0.0.1:2",
            "cm",
            &locations,
        );
        let s = Settings::from_toml(&text, "demo", Vec::new()).unwrap();
        assert_eq!(s.stores.len(), 3);
        assert_eq!(s.stores[1].source, "leeds");
        assert_eq!(s.stores[2].location, "L3");
        assert!(s.stores.iter().all(|x| x.fulfils && x.stocks == vec![2]));
    }
}
