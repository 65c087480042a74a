//! `tillbridge audit` and `tillbridge replay` over real HTTP: the Square emulator as the POS,
//! the Commerce emulator as Adobe Commerce, a real SQLite store written by the runner.
//!
//! The audit test syncs a shop, then makes one discrepancy of each kind — a till fulfilment
//! whose Commerce shipment is refused, Commerce changed and a source item deleted behind the
//! sync's back, a push Commerce keeps failing, a till sale not read yet, a SKU Commerce has no
//! product for, a shared SKU, a variation without a SKU — and asserts the audit names each
//! with its cause, exits 1 while the drift is there and 0 once it is gone. The replay test
//! re-converts a POS figure set aside for a missing SKU once the SKU exists: the dry run shows
//! the push, `--execute` makes it once, a second `--execute` makes nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::pos::{Sku, SourceCode};
use tillbridge_core::sync::StockKey;
use tillbridge_core::sync::audit::Verdict;
use tillbridge_edge::audit::{self, AuditOptions, Progress};
use tillbridge_edge::config::Settings;
use tillbridge_edge::replay::{self, ReplayEnd, ReplayOptions};
use tillbridge_edge::runner::{Runner, assemble, system_clock};
use tillbridge_edge::store::{RecordFilter, RecordId, RecordKind, Store};

const BIN: &str = env!("CARGO_BIN_EXE_tillbridge");

struct World {
    square: String,
    commerce: String,
    _sq: tillbridge_square_emulator::Handle,
    _cm: tillbridge_commerce_emulator::Handle,
    locations: BTreeMap<String, String>,
    dir: std::path::PathBuf,
    http: reqwest::Client,
    /// `service.listen`'s port: free (no service runs), unless a test pretends one does.
    listen_port: u16,
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

/// A REST call to Commerce with the integration token, as a person or another tool would.
async fn rest(w: &World, path: &str, body: Value) {
    let r = w
        .http
        .post(format!("{}/rest/all/V1/{path}", w.commerce))
        .bearer_auth("commerce-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        r.text().await.unwrap()
    );
}

async fn commerce_ops(w: &World, ops: Value) {
    let res = post(
        &w.http,
        format!("{}/__emulator/ops", w.commerce),
        json!({"ops": ops}),
    )
    .await;
    assert_eq!(res["failed"], json!(false), "{res}");
}

/// Two synced stores (York, Leeds) with MUG and TEE; HAT at Leeds only; SOCK at York, which
/// Commerce has no product for; a gift wrap without a SKU and a cap whose two variations share
/// one SKU, both with stock at York.
async fn world() -> World {
    let sq_cfg = tillbridge_square_emulator::Config {
        token: "square-token".into(),
        real_time: true,
        ..tillbridge_square_emulator::Config::default()
    };
    let (sq, square) = tillbridge_square_emulator::start(sq_cfg).await.unwrap();
    let cm_cfg = tillbridge_commerce_emulator::EmulatorConfig {
        token: "commerce-token".into(),
        real_time: true,
        ..tillbridge_commerce_emulator::EmulatorConfig::default()
    };
    let (cm, commerce) = tillbridge_commerce_emulator::start(cm_cfg).await.unwrap();
    let http = reqwest::Client::new();
    let seeded = post(
        &http,
        format!("{square}/__emulator/seed"),
        json!({
            "locations": [{"name": "York"}, {"name": "Leeds"}],
            "items": [
                {"name": "Mug", "variations": [{"name": "Mug", "sku": "MUG", "price": 800}]},
                {"name": "Tee", "variations": [{"name": "Tee", "sku": "TEE", "price": 1500}]},
                {"name": "Hat", "variations": [{"name": "Hat", "sku": "HAT", "price": 1200}]},
                {"name": "Sock", "variations": [{"name": "Sock", "sku": "SOCK", "price": 400}]},
                {"id": "WRAPITEM", "name": "Gift wrap", "variations": [{"id": "WRAPVAR", "name": "Wrap", "price": 200}]},
                {"name": "Cap", "variations": [
                    {"id": "CAPRED", "name": "Cap red", "sku": "CAP", "price": 1000},
                    {"id": "CAPBLUE", "name": "Cap blue", "sku": "CAP", "price": 1000}
                ]}
            ],
        }),
    )
    .await;
    let mut locations = BTreeMap::new();
    for name in ["York", "Leeds"] {
        locations.insert(
            name.to_owned(),
            seeded["locations"][name].as_str().unwrap().to_owned(),
        );
    }
    let stock = |sku_or_var: (&str, &str), loc: &str, q: i64| {
        let mut body = json!({"location_id": loc, "quantity": q});
        body[sku_or_var.0] = json!(sku_or_var.1);
        body
    };
    let mut counts = Vec::new();
    for loc in locations.values() {
        for sku in ["MUG", "TEE"] {
            counts.push(stock(("sku", sku), loc, 5));
        }
    }
    counts.push(stock(("sku", "HAT"), &locations["Leeds"], 3));
    counts.push(stock(("sku", "SOCK"), &locations["York"], 4));
    counts.push(stock(("variation_id", "WRAPVAR"), &locations["York"], 7));
    counts.push(stock(("variation_id", "CAPRED"), &locations["York"], 7));
    post(
        &http,
        format!("{square}/__emulator/stock"),
        json!({"counts": counts}),
    )
    .await;
    let w = World {
        square,
        commerce,
        _sq: sq,
        _cm: cm,
        locations,
        dir: {
            static WORLDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = WORLDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir =
                std::env::temp_dir().join(format!("tillbridge-audit-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        },
        http,
        listen_port: std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    };
    commerce_ops(
        &w,
        json!([
            {"op": "create_source", "source_code": "york", "name": "York", "enabled": true, "country_id": "GB", "postcode": "YO1 7HH"},
            {"op": "create_source", "source_code": "leeds", "name": "Leeds", "enabled": true, "country_id": "GB", "postcode": "LS1 1UR"},
            {"op": "create_stock", "stock_id": 2, "name": "UK", "sales_channels": [{"type": "website", "code": "base"}]},
            {"op": "save_stock_source_links", "links": [{"stock_id": 2, "source_code": "york", "priority": 1}, {"stock_id": 2, "source_code": "leeds", "priority": 2}]},
            {"op": "create_product", "sku": "MUG", "type": "simple"},
            {"op": "create_product", "sku": "TEE", "type": "simple"},
            {"op": "create_product", "sku": "HAT", "type": "simple"},
            {"op": "create_product", "sku": "WRAP", "type": "simple"},
            {"op": "save_source_items", "items": [
                {"sku": "MUG", "source_code": "york", "quantity": 0, "status": 0},
                {"sku": "MUG", "source_code": "leeds", "quantity": 0, "status": 0},
                {"sku": "TEE", "source_code": "york", "quantity": 0, "status": 0},
                {"sku": "TEE", "source_code": "leeds", "quantity": 0, "status": 0}
            ]}
        ]),
    )
    .await;
    w
}

fn settings_toml(w: &World) -> String {
    format!(
        r#"
[service]
api_token = "test-token-0123456789"
listen = "127.0.0.1:{port}"
database = "{db}"
poll_interval_ms = 100
fulfilment_poll_interval_ms = 100

[commerce]
base_url = "{commerce}"
token = "commerce-token"
store_code = "all"
website_stocks = {{ base = 2 }}
requests_per_second = 50
source_items_per_second = 500

[engine]
sweep_every_minutes = 0
verify_delay_ms = 200
verify_sample_every = 1

[[pos]]
kind = "square"
id = "square"
base_url = "{square}"
token = "square-token"

[[stores]]
pos = "square"
location = "{york}"
source = "york"
name = "York"
priority = 1
stocks = [2]
fulfils = true

[[stores]]
pos = "square"
location = "{leeds}"
source = "leeds"
name = "Leeds"
priority = 2
stocks = [2]
fulfils = true
"#,
        db = w.dir.join("tillbridge.db").display(),
        port = w.listen_port,
        commerce = w.commerce,
        square = w.square,
        york = w.locations["York"],
        leeds = w.locations["Leeds"],
    )
}

fn settings(w: &World) -> Settings {
    Settings::from_toml(&settings_toml(w), "audit-test.toml", Vec::new()).unwrap()
}

/// The configuration as a file, for the binary.
fn config_file(w: &World) -> std::path::PathBuf {
    let path = w.dir.join("tillbridge.toml");
    std::fs::write(&path, settings_toml(w)).unwrap();
    path
}

async fn commerce_qty(w: &World, sku: &str, source: &str) -> Option<Decimal> {
    let v: Value = w
        .http
        .post(format!("{}/__emulator/query", w.commerce))
        .json(&json!({"check": {"source_item_qty": {"sku": sku, "source_code": source}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let q = &v["value"];
    q.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| q.as_f64().and_then(|f| Decimal::try_from(f).ok()))
}

/// Tick the runner until `cond` holds (bounded; not a timing assertion).
macro_rules! until {
    ($runner:expr, $what:expr, $cond:expr) => {{
        let mut ok = false;
        for _ in 0..1500 {
            $runner.tick().await.unwrap();
            if $cond {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "gave up waiting for: {}", $what);
    }};
}

fn key(sku: &str, source: &str) -> StockKey {
    StockKey::new(Sku::parse(sku).unwrap(), SourceCode::parse(source).unwrap())
}

fn on_hand(runner: &Runner, sku: &str, source: &str) -> Option<Decimal> {
    runner
        .engine()
        .ledger()
        .get(&key(sku, source))
        .and_then(|e| e.pos.as_ref().map(|p| p.on_hand))
}

/// The state of the newest outbox row of `kind` whose command mentions `text`.
fn newest_command(store: &dyn Store, kind: &str, text: &str) -> Option<String> {
    store
        .commands(None, 200, 0)
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.kind == kind && c.payload.to_string().contains(text))
        .map(|c| format!("{:?}", c.state))
}

async fn square_order_for(w: &World, increment: &str) -> Option<String> {
    let v: Value = w
        .http
        .get(format!(
            "{}/__emulator/tills/{}/orders",
            w.square, w.locations["York"]
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v.get("orders").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    list.iter()
        .find(|o| o.to_string().contains(increment))
        .and_then(|o| o.get("id").and_then(Value::as_str).map(str::to_owned))
}

async fn fault(w: &World, rule: Value) {
    post(&w.http, format!("{}/__emulator/faults", w.commerce), rule).await;
}

/// Run the real binary without blocking the emulators' runtime.
async fn tillbridge(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(&args)
            .env_remove("TILLBRIDGE_SERVICE__DATABASE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Sync the shop, then make one discrepancy of each kind. Returns the web order's number.
async fn sync_then_disturb(w: &World) -> String {
    let mut runner = assemble(settings(w), system_clock()).unwrap();
    until!(runner, "Commerce holds the tills' figures", {
        let mut all = true;
        for (sku, source, q) in [
            ("MUG", "york", 5),
            ("MUG", "leeds", 5),
            ("TEE", "york", 5),
            ("TEE", "leeds", 5),
            ("HAT", "leeds", 3),
            ("SOCK", "york", 4),
        ] {
            all &= commerce_qty(w, sku, source).await == Some(Decimal::from(q));
        }
        all
    });
    let store = runner.store_handle();

    // A till fulfilment whose Commerce shipment does not exist: Commerce refuses to ship.
    fault(
        w,
        json!({"method": "POST", "path": "/V1/order/*/ship", "kind": {"type": "status", "status": 400, "body": {"message": "Could not save a shipment, see error log for details"}}}),
    )
    .await;
    let placed = post(
        &w.http,
        format!("{}/__emulator/orders", w.commerce),
        json!({"items": [{"sku": "TEE", "qty": 2, "price": 15}]}),
    )
    .await;
    let increment = placed["increment_id"].as_str().unwrap().to_owned();
    until!(
        runner,
        "the order reaches the York till",
        square_order_for(w, &increment).await.is_some()
    );
    let square_order = square_order_for(w, &increment).await.unwrap();
    for action in [
        json!({"action": "accepted"}),
        json!({"action": "shipped", "tracking_number": "RM123456785GB", "carrier": "Royal Mail"}),
    ] {
        post(
            &w.http,
            format!("{}/__emulator/orders/{square_order}/fulfillment", w.square),
            action,
        )
        .await;
    }
    until!(
        runner,
        "the handover is in flight and the shipment refused",
        on_hand(&runner, "TEE", "york") == Some(Decimal::from(3))
            && runner
                .engine()
                .ledger()
                .get(&key("TEE", "york"))
                .is_some_and(|e| !e.in_flight.is_empty())
            && newest_command(store.as_ref(), "create_shipment", &increment).as_deref()
                == Some("Failed")
    );

    // Behind the sync's back: Commerce's MUG at Leeds set to 9, HAT's Leeds source item gone.
    rest(
        w,
        "inventory/source-items",
        json!({"sourceItems": [{"sku": "MUG", "source_code": "leeds", "quantity": 9, "status": 1}]}),
    )
    .await;
    rest(
        w,
        "inventory/source-items-delete",
        json!({"sourceItems": [{"sku": "HAT", "source_code": "leeds"}]}),
    )
    .await;

    // A push Commerce keeps failing (503): a TEE sold at Leeds waits for its push.
    fault(
        w,
        json!({"method": "POST", "path": "/V1/inventory/source-items", "kind": {"type": "status", "status": 503}}),
    )
    .await;
    post(
        &w.http,
        format!("{}/__emulator/sales", w.square),
        json!({"location_id": w.locations["Leeds"], "lines": [{"sku": "TEE", "quantity": 1}]}),
    )
    .await;
    until!(
        runner,
        "the push of TEE at Leeds has failed and waits for its retry",
        on_hand(&runner, "TEE", "leeds") == Some(Decimal::from(4))
            && newest_command(store.as_ref(), "push_source_items", "\"TEE\"").as_deref()
                == Some("Failed")
    );
    // The runner stops here: nothing is stored after this point.
    drop(runner);

    // A sale at the York till that Tillbridge has not read.
    post(
        &w.http,
        format!("{}/__emulator/sales", w.square),
        json!({"location_id": w.locations["York"], "lines": [{"sku": "MUG", "quantity": 2}]}),
    )
    .await;
    increment
}

#[actix_web::test]
async fn the_audit_explains_every_discrepancy_and_flags_drift() {
    let w = world().await;
    let order = sync_then_disturb(&w).await;

    let mut progress_text = Vec::new();
    let run = {
        let mut progress = Progress::new(&mut progress_text, false);
        audit::run(
            &settings(&w),
            AuditOptions::default(),
            system_clock()(),
            &mut progress,
        )
        .await
        .unwrap()
    };
    let progress_text = String::from_utf8(progress_text).unwrap();
    assert!(
        progress_text.contains("Commerce source items"),
        "{progress_text}"
    );

    let d = |n: i64| Some(Decimal::from(n));
    let found: Vec<Found<'_>> = run
        .report
        .discrepancies
        .iter()
        .map(|x| {
            (
                x.subject.clone(),
                x.pos,
                x.commerce,
                x.verdict,
                x.causes.iter().map(|c| c.cause.kind()).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "CAP@york".into(),
                d(7),
                None,
                Verdict::Action,
                vec!["shared_sku"]
            ),
            (
                "HAT@leeds".into(),
                d(3),
                None,
                Verdict::Action,
                vec!["source_item_missing"]
            ),
            (
                "MUG@leeds".into(),
                d(5),
                d(9),
                Verdict::Unexplained,
                vec!["drift"]
            ),
            (
                "MUG@york".into(),
                d(3),
                d(5),
                Verdict::Expected,
                vec!["pos_newer"]
            ),
            (
                "SOCK@york".into(),
                d(4),
                d(4),
                Verdict::Action,
                vec!["sku_missing_in_commerce"]
            ),
            (
                "TEE@leeds".into(),
                d(4),
                d(5),
                Verdict::Expected,
                vec!["push_pending"]
            ),
            (
                "TEE@york".into(),
                d(3),
                d(5),
                Verdict::Expected,
                vec!["in_flight"]
            ),
            (
                "variation WRAPVAR@york".into(),
                d(7),
                None,
                Verdict::Action,
                vec!["variation_without_sku"]
            ),
        ],
        "{:#?}",
        run.report
    );
    let text = |subject: &str| {
        run.report
            .discrepancies
            .iter()
            .find(|x| x.subject == subject)
            .map(|x| x.causes[0].text.clone())
            .unwrap()
    };
    assert!(
        text("TEE@york").starts_with(&format!(
            "in flight: 2 units fulfilled at the till for order {order}, shipment not created yet (the last attempt failed: "
        )) && text("TEE@york").contains("Could not save a shipment"),
        "{}",
        text("TEE@york")
    );
    assert_eq!(
        text("MUG@leeds"),
        "unexplained drift: Tillbridge expects 5 and last confirmed 5 in Commerce; Commerce was changed outside Tillbridge"
    );
    assert!(
        text("TEE@leeds").starts_with("push pending: 4 to TEE@leeds (queued ")
            && text("TEE@leeds").contains("retrying after a failed attempt"),
        "{}",
        text("TEE@leeds")
    );
    assert!(
        text("HAT@leeds").contains("although Tillbridge confirmed 3 there"),
        "{}",
        text("HAT@leeds")
    );
    assert!(text("MUG@york").starts_with("POS figure newer than the last push"));
    assert!(text("CAP@york").contains("used by POS variations CAPBLUE, CAPRED"));
    assert_eq!(
        (
            run.report.expected,
            run.report.action,
            run.report.unexplained
        ),
        (3, 4, 1)
    );
    assert_eq!(run.read.products_checked, 4, "MUG, TEE, HAT, SOCK");

    // The command line: the table, the JSON, exit 1 while something is unexplained.
    let config = config_file(&w);
    let json_path = w.dir.join("audit.json");
    let out = tillbridge(vec![
        "audit".into(),
        "--config".into(),
        config.display().to_string(),
        "--json".into(),
        json_path.display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let drift_line = stdout
        .lines()
        .find(|l| l.starts_with("MUG@leeds"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        drift_line.contains("UNEXPLAINED") && drift_line.contains("unexplained drift"),
        "{drift_line}"
    );
    assert!(
        stdout.contains("8 discrepancies in") && stdout.contains("1 unexplained"),
        "{stdout}"
    );
    assert!(stderr.contains("reading: "), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["unexplained"], json!(1));
    assert_eq!(report["discrepancies"].as_array().unwrap().len(), 8);
    assert_eq!(report["discrepancies"][2]["subject"], json!("MUG@leeds"));
    assert_eq!(
        report["discrepancies"][2]["causes"][0]["cause"],
        json!("drift")
    );

    // Put Commerce's figure back: every discrepancy left is explained, exit 0.
    commerce_ops(
        &w,
        json!([{"op": "save_source_items", "items": [{"sku": "MUG", "source_code": "leeds", "quantity": 5, "status": 1}]}]),
    )
    .await;
    let out = tillbridge(vec![
        "audit".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("7 discrepancies in") && stdout.contains("0 unexplained"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// POSTs of source items that carried `sku` and were applied.
async fn pushes_of(w: &World, sku: &str) -> usize {
    let v: Value = w
        .http
        .get(format!("{}/__emulator/calls", w.commerce))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["method"] == json!("POST")
                && c["route"] == json!("/V1/inventory/source-items")
                && c["status"] == json!(200)
                && c["request_body"]
                    .to_string()
                    .contains(&format!("\"{sku}\""))
        })
        .count()
}

async fn replay_text(settings: &Settings, record: RecordId, execute: bool) -> (ReplayEnd, String) {
    let mut out = Vec::new();
    let end = replay::run(
        settings,
        ReplayOptions { record, execute },
        system_clock()(),
        &mut out,
    )
    .await
    .unwrap();
    (end, String::from_utf8(out).unwrap())
}

#[actix_web::test]
async fn replay_reconverts_a_fixed_record_and_executes_it_once() {
    let w = world().await;
    let settings = settings(&w);
    let mut runner = assemble(settings.clone(), system_clock()).unwrap();
    until!(
        runner,
        "Commerce holds the tills' figures",
        commerce_qty(&w, "MUG", "york").await == Some(Decimal::from(5))
    );
    let store = runner.store_handle();
    let wrap = store
        .records(&RecordFilter {
            contains: Some("WRAPVAR".into()),
            ..RecordFilter::default()
        })
        .unwrap()
        .items;
    assert_eq!(wrap.len(), 1, "{wrap:?}");
    let wrap = wrap[0].id;
    let answer = store
        .records(&RecordFilter {
            kind: Some(RecordKind::CommandResult),
            limit: 1,
            ..RecordFilter::default()
        })
        .unwrap()
        .items[0]
        .id;
    // Stop with a snapshot, as `serve` does on the way out.
    runner.snapshot(system_clock()()).unwrap();
    drop(runner);

    // Before the fix: the reason it still cannot be used.
    let (end, text) = replay_text(&settings, wrap, false).await;
    assert_eq!(end, ReplayEnd::NotReplayable, "{text}");
    assert!(
        text.contains("still not usable with today's mapping") && text.contains("has no SKU"),
        "{text}"
    );

    // The gift wrap gets its SKU at the till.
    post(
        &w.http,
        format!("{}/__emulator/seed", w.square),
        json!({"items": [{"id": "WRAPITEM", "name": "Gift wrap", "variations": [{"id": "WRAPVAR", "name": "Wrap", "sku": "WRAP", "price": 200}]}]}),
    )
    .await;

    // Dry run: the push it decides, nothing sent.
    let (end, text) = replay_text(&settings, wrap, false).await;
    assert_eq!(end, ReplayEnd::Done, "{text}");
    assert!(
        text.contains("re-converted with today's mapping: WRAP@york on hand 7"),
        "{text}"
    );
    assert!(
        text.contains("push_source_items WRAP@york = 7 (in stock)"),
        "{text}"
    );
    assert!(
        text.contains("Dry run: nothing stored, nothing sent"),
        "{text}"
    );
    assert_eq!(pushes_of(&w, "WRAP").await, 0);
    assert_eq!(commerce_qty(&w, "WRAP", "york").await, None);

    // Not while a service runs beside it (something answers /health on service.listen).
    let listener = std::net::TcpListener::bind(("127.0.0.1", w.listen_port)).unwrap();
    let pretend = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).unwrap();
        let body = r#"{"status":"ok","service":"tillbridge","version":"0.1.0"}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let (end, text) = replay_text(&settings, wrap, true).await;
    pretend.join().unwrap();
    assert_eq!(end, ReplayEnd::Failed, "{text}");
    assert!(
        text.contains("Not executed: a Tillbridge service answers"),
        "{text}"
    );
    assert_eq!(pushes_of(&w, "WRAP").await, 0);

    // Execute: stored, pushed once, answered.
    let (end, text) = replay_text(&settings, wrap, true).await;
    assert_eq!(end, ReplayEnd::Done, "{text}");
    assert!(
        text.contains("stored the re-converted figure as record"),
        "{text}"
    );
    assert!(text.contains(": confirmed (command"), "{text}");
    assert_eq!(
        commerce_qty(&w, "WRAP", "york").await,
        Some(Decimal::from(7))
    );
    assert_eq!(pushes_of(&w, "WRAP").await, 1);
    let original = store.record(wrap).unwrap().unwrap();
    assert!(
        original.detail.starts_with("re-converted as record"),
        "{}",
        original.detail
    );
    let replayed = store
        .records(&RecordFilter {
            contains: Some(format!("replay:{wrap}")),
            ..RecordFilter::default()
        })
        .unwrap()
        .items;
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        format!("{:?}", replayed[0].state),
        "Confirmed",
        "{}",
        replayed[0].detail
    );

    // Again: nothing new, nothing sent twice.
    let (end, text) = replay_text(&settings, wrap, true).await;
    assert_eq!(end, ReplayEnd::Done, "{text}");
    assert!(text.contains("The record changes nothing now"), "{text}");
    assert_eq!(pushes_of(&w, "WRAP").await, 1);

    // The command line: a command's answer is not replayable (exit 1, the reason printed).
    let config = config_file(&w);
    let out = tillbridge(vec![
        "replay".into(),
        "--config".into(),
        config.display().to_string(),
        answer.to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not replayable: it is the answer to command"),
        "{stdout}"
    );
    let out = tillbridge(vec![
        "replay".into(),
        "--config".into(),
        config.display().to_string(),
        "999999".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("record 999999 is not stored"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// A discrepancy as the assertions read it: subject, POS figure, Commerce figure, verdict, causes.
type Found<'a> = (
    String,
    Option<Decimal>,
    Option<Decimal>,
    Verdict,
    Vec<&'a str>,
);
