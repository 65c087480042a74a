//! The runner end to end over real HTTP: the Square emulator as the POS, the Commerce emulator
//! as Adobe Commerce, a real SQLite store. An in-store sale reaches Commerce; a web order is
//! routed to a store, fulfilled at the till, and shipped in Commerce from that store's source,
//! clearing its reservation without a double deduction.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_edge::config::Settings;
use tillbridge_edge::runner::{RunnerOp, assemble, system_clock};
use tillbridge_edge::store::{RecordFilter, RecordKind};

struct World {
    square: String,
    commerce: String,
    _sq: tillbridge_square_emulator::Handle,
    _cm: tillbridge_commerce_emulator::Handle,
    locations: BTreeMap<String, String>,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn world() -> World {
    world_with(json!([])).await
}

/// `extra_items`: catalog items added to the two-product shop.
async fn world_with(extra_items: Value) -> World {
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
    // The shop: two stores, two products, 5 of each on every shelf.
    let seeded = post(&http, format!("{square}/__emulator/seed"), {
        let mut items = vec![
            json!({"name": "Mug", "variations": [{"name": "Mug", "sku": "MUG", "price": 800}]}),
            json!({"name": "Tee", "variations": [{"name": "Tee", "sku": "TEE", "price": 1500}]}),
        ];
        items.extend(extra_items.as_array().cloned().unwrap_or_default());
        json!({
            "locations": [{"name": "York"}, {"name": "Leeds"}, {"name": "Hull"}],
            "items": items,
        })
    })
    .await;
    let mut locations = BTreeMap::new();
    for name in ["York", "Leeds", "Hull"] {
        let id = seeded["locations"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no id for {name}: {seeded}"))
            .to_owned();
        locations.insert(name.to_owned(), id);
    }
    // Hull is a shop Tillbridge does not sync (no [[stores]] entry).
    for loc in locations.values() {
        for sku in ["MUG", "TEE"] {
            post(
                &http,
                format!("{square}/__emulator/stock"),
                json!({"sku": sku, "location_id": loc, "quantity": 5}),
            )
            .await;
        }
    }
    // Commerce: sources york and leeds linked to stock 2, sold on website base; Commerce
    // starts with stale figures (0) that the sync must correct.
    let ops = json!({"ops": [
        {"op": "create_source", "source_code": "york", "name": "York", "enabled": true, "country_id": "GB", "postcode": "YO1 7HH"},
        {"op": "create_source", "source_code": "leeds", "name": "Leeds", "enabled": true, "country_id": "GB", "postcode": "LS1 1UR"},
        {"op": "create_stock", "stock_id": 2, "name": "UK", "sales_channels": [{"type": "website", "code": "base"}]},
        {"op": "save_stock_source_links", "links": [{"stock_id": 2, "source_code": "york", "priority": 1}, {"stock_id": 2, "source_code": "leeds", "priority": 2}]},
        {"op": "create_product", "sku": "MUG", "type": "simple"},
        {"op": "create_product", "sku": "TEE", "type": "simple"},
        {"op": "save_source_items", "items": [
            {"sku": "MUG", "source_code": "york", "quantity": 0, "status": 0},
            {"sku": "MUG", "source_code": "leeds", "quantity": 0, "status": 0},
            {"sku": "TEE", "source_code": "york", "quantity": 0, "status": 0},
            {"sku": "TEE", "source_code": "leeds", "quantity": 0, "status": 0}
        ]}
    ]});
    let res = post(&http, format!("{commerce}/__emulator/ops"), ops).await;
    assert_eq!(res["failed"], json!(false), "{res}");
    static WORLDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = WORLDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("tillbridge-runner-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    World {
        square,
        commerce,
        _sq: sq,
        _cm: cm,
        locations,
        dir,
        http,
    }
}

fn settings(w: &World) -> Settings {
    let toml = format!(
        r#"
[service]
api_token = "test-token-0123456789"
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
        commerce = w.commerce,
        square = w.square,
        york = w.locations["York"],
        leeds = w.locations["Leeds"],
    );
    Settings::from_toml(&toml, "runner-test.toml", Vec::new()).unwrap()
}

async fn commerce_qty(w: &World, sku: &str, source: &str) -> Decimal {
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
        .map(|s| s.parse().unwrap())
        .or_else(|| q.as_f64().map(|f| Decimal::try_from(f).unwrap()))
        .unwrap_or_else(|| panic!("source item {sku}@{source}: {v}"))
}

async fn salable(w: &World, sku: &str) -> Decimal {
    let v: Value = w
        .http
        .get(format!("{}/__emulator/salable-qty/{sku}/2", w.commerce))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_f64()
        .map(|f| Decimal::try_from(f).unwrap())
        .or_else(|| {
            v.get("value")
                .and_then(Value::as_f64)
                .map(|f| Decimal::try_from(f).unwrap())
        })
        .unwrap_or_else(|| panic!("salable {sku}: {v}"))
}

/// Tick the runner until `done` holds (bounded; not a timing assertion).
macro_rules! until {
    ($runner:expr, $what:expr, $cond:expr) => {{
        let mut ok = false;
        for _ in 0..300 {
            $runner.tick().await.unwrap();
            if $cond {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if !ok {
            let view = $runner.view();
            let view = view.lock().unwrap().clone();
            let store = $runner.store_handle();
            let recent = store
                .records(&RecordFilter {
                    limit: 15,
                    ..RecordFilter::default()
                })
                .unwrap();
            let cmds = store.commands(None, 15, 0).unwrap();
            let exceptions: Vec<_> = $runner.engine().exceptions().cloned().collect();
            let counts = $runner.store_handle().counts();
            panic!(
                "gave up waiting for: {}\nstore counts: {counts:?}\nview: {view:?}\nexceptions: {exceptions:#?}\nrecords: {:#?}\ncommands: {:#?}",
                $what,
                recent
                    .items
                    .iter()
                    .map(|r| (r.id, r.kind, r.state, r.detail.clone()))
                    .collect::<Vec<_>>(),
                cmds.items
                    .iter()
                    .map(|c| (c.command_id, c.kind.clone(), c.state, c.detail.clone()))
                    .collect::<Vec<_>>()
            );
        }
    }};
}

#[actix_web::test]
async fn sales_and_store_fulfilled_web_orders_flow_through_the_runner() {
    let w = world().await;
    let mut runner = assemble(settings(&w), system_clock()).unwrap();

    // 1. The first stock snapshot corrects Commerce's stale zeros.
    until!(
        runner,
        "Commerce holds the tills' figures",
        commerce_qty(&w, "MUG", "york").await == Decimal::from(5)
            && commerce_qty(&w, "TEE", "leeds").await == Decimal::from(5)
    );

    // 2. An in-store sale reaches Commerce.
    post(
        &w.http,
        format!("{}/__emulator/sales", w.square),
        json!({"location_id": w.locations["York"], "lines": [{"sku": "MUG", "quantity": 2}]}),
    )
    .await;
    until!(
        runner,
        "the sale reaches Commerce",
        commerce_qty(&w, "MUG", "york").await == Decimal::from(3)
    );

    // 3. A web order is routed to York (first by priority with stock), fulfilled at the till
    //    and shipped in Commerce from York: one deduction, reservation cleared.
    let placed = post(
        &w.http,
        format!("{}/__emulator/orders", w.commerce),
        json!({"items": [{"sku": "TEE", "qty": 2, "price": 15}]}),
    )
    .await;
    let increment = placed["increment_id"].as_str().unwrap().to_owned();
    assert_eq!(
        salable(&w, "TEE").await,
        Decimal::from(8),
        "10 on the shelves, 2 reserved"
    );
    let store = runner.store_handle();
    until!(
        runner,
        "the order reaches the York till",
        store
            .records(&RecordFilter {
                kind: Some(RecordKind::CommandResult),
                contains: Some("create_fulfilment".into()),
                limit: 10,
                ..RecordFilter::default()
            })
            .map(|p| p.total)
            .unwrap_or(0)
            > 0
            || square_order_for(&w, &increment).await.is_some()
    );
    let square_order = loop {
        if let Some(id) = square_order_for(&w, &increment).await {
            break id;
        }
        runner.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    post(
        &w.http,
        format!("{}/__emulator/orders/{square_order}/fulfillment", w.square),
        json!({"action": "accepted"}),
    )
    .await;
    post(
        &w.http,
        format!("{}/__emulator/orders/{square_order}/fulfillment", w.square),
        json!({"action": "shipped", "tracking_number": "RM123456785GB", "carrier": "Royal Mail"}),
    )
    .await;
    until!(
        runner,
        "the shipment exists in Commerce",
        commerce_qty(&w, "TEE", "york").await == Decimal::from(3)
            && runner.engine().stats().shipments_created == 1
    );
    // Settle: no further push may move York's TEE (the till shows 3 too).
    runner.operator(RunnerOp::PollNow).unwrap().unwrap();
    for _ in 0..20 {
        runner.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(
        commerce_qty(&w, "TEE", "york").await,
        Decimal::from(3),
        "deducted once"
    );
    assert_eq!(
        salable(&w, "TEE").await,
        Decimal::from(8),
        "3 + 5 on the shelves, nothing reserved"
    );
    let open: Vec<_> = runner.engine().exceptions().collect();
    assert!(open.is_empty(), "{open:?}");
    // Every stored record has a state a person can read.
    let page = store
        .records(&RecordFilter {
            limit: 500,
            ..RecordFilter::default()
        })
        .unwrap();
    assert!(page.total > 0);
    let _ = std::fs::remove_dir_all(&w.dir);
}

async fn square_orders_for(w: &World, increment: &str) -> usize {
    let v: Value = w
        .http
        .get(format!(
            "{}/__emulator/tills/{}/orders",
            w.square, w.locations["York"]
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .cloned()
        .or_else(|| v.get("orders").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter(|o| o.get("reference_id").and_then(Value::as_str) == Some(increment))
        .count()
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
        .find(|o| {
            o.get("reference_id").and_then(Value::as_str) == Some(increment)
                || o.to_string().contains(increment)
        })
        .and_then(|o| o.get("id").and_then(Value::as_str).map(str::to_owned))
}

async fn square_get(w: &World, path: &str) -> Value {
    w.http
        .get(format!("{}{path}", w.square))
        .bearer_auth("square-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn records_with(store: &dyn tillbridge_edge::store::Store, text: &str) -> Vec<(String, String)> {
    store
        .records(&RecordFilter {
            contains: Some(text.into()),
            limit: 100,
            ..RecordFilter::default()
        })
        .unwrap()
        .items
        .into_iter()
        .map(|r| (format!("{:?}", r.state), r.detail))
        .collect()
}

#[actix_web::test]
async fn unusable_records_are_kept_and_a_cancelled_order_is_withdrawn_after_a_restart() {
    // A gift-wrap variation with no SKU, and two variations sharing one SKU: neither can be
    // synced, and each says why.
    let w = world_with(json!([
        {"name": "Gift wrap", "variations": [{"id": "WRAPVAR", "name": "Wrap", "price": 200}]},
        {"name": "Cap", "variations": [
            {"id": "CAPRED", "name": "Cap red", "sku": "CAP", "price": 1000},
            {"id": "CAPBLUE", "name": "Cap blue", "sku": "CAP", "price": 1000}
        ]}
    ]))
    .await;
    for variation in ["WRAPVAR", "CAPRED"] {
        post(
            &w.http,
            format!("{}/__emulator/stock", w.square),
            json!({"variation_id": variation, "location_id": w.locations["York"], "quantity": 7}),
        )
        .await;
    }
    let mut runner = assemble(settings(&w), system_clock()).unwrap();
    until!(
        runner,
        "Commerce holds the tills' figures",
        commerce_qty(&w, "MUG", "york").await == Decimal::from(5)
    );
    let store = runner.store_handle();
    // York's wrap and cap figures: stored, settled (not synced), each saying why.
    let wrap = records_with(store.as_ref(), "WRAPVAR");
    assert_eq!(wrap.len(), 1, "{wrap:?}");
    assert_eq!(wrap[0].0, "Settled");
    assert!(wrap[0].1.contains("has no SKU"), "{}", wrap[0].1);
    let cap = records_with(store.as_ref(), "CAPRED");
    assert_eq!(cap.len(), 1, "{cap:?}");
    assert!(
        cap[0].1.contains("'CAP' is used by POS variations"),
        "{}",
        cap[0].1
    );
    let view = runner.view().lock().unwrap().clone();
    assert_eq!(view.rejected_pos_records, 2);
    let catalog = &view.catalogs["square"];
    assert_eq!(catalog.mapped_variations, 2, "MUG and TEE only");
    assert!(
        catalog.problems.iter().any(|p| p.contains("'CAP'")),
        "{:?}",
        catalog.problems
    );
    // Hull is not read at all, and the view says it is not mapped.
    assert!(
        catalog
            .problems
            .iter()
            .any(|p| p.contains(w.locations["Hull"].as_str()) && p.contains("not mapped")),
        "{:?}",
        catalog.problems
    );
    assert!(records_with(store.as_ref(), w.locations["Hull"].as_str()).is_empty());

    // A web order routed to York; the service restarts before the till accepts it.
    let placed = post(
        &w.http,
        format!("{}/__emulator/orders", w.commerce),
        json!({"items": [{"sku": "MUG", "qty": 1, "price": 8}]}),
    )
    .await;
    let increment = placed["increment_id"].as_str().unwrap().to_owned();
    let entity = placed["entity_id"].as_u64().unwrap();
    until!(
        runner,
        "the order reaches the York till",
        square_order_for(&w, &increment).await.is_some()
    );
    let square_order = square_order_for(&w, &increment).await.unwrap();
    // Let the answer be stored, then stop without a snapshot (as a crash would) and start
    // again: the stored records are replayed.
    for _ in 0..5 {
        runner.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    drop(runner);
    let mut runner = assemble(settings(&w), system_clock()).unwrap();

    // The customer cancels in Commerce: the till's fulfilment is withdrawn.
    let r = w
        .http
        .post(format!("{}/rest/V1/orders/{entity}/cancel", w.commerce))
        .bearer_auth("commerce-token")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "cancel: {}", r.status());
    until!(
        runner,
        "the fulfilment is cancelled at the till",
        square_get(&w, &format!("/v2/orders/{square_order}")).await["order"]["fulfillments"][0]["state"]
            == json!("CANCELED")
    );
    // One Square order for it, not two (the restart did not send the request again).
    assert_eq!(square_orders_for(&w, &increment).await, 1);
    // Salable stock is whole again: 5 + 5 on the shelves, nothing reserved.
    until!(
        runner,
        "the reservation is released",
        salable(&w, "MUG").await == Decimal::from(10)
    );
    let open: Vec<_> = runner.engine().exceptions().collect();
    assert!(open.is_empty(), "{open:?}");
    let _ = std::fs::remove_dir_all(&w.dir);
}

#[actix_web::test]
async fn a_till_that_drops_files_syncs_through_the_runner() {
    // Commerce only: the till writes CSV files into a folder.
    let w = world().await;
    let drop_dir = w.dir.join("till-files");
    std::fs::create_dir_all(&drop_dir).unwrap();
    let toml = format!(
        r#"
[service]
api_token = "test-token-0123456789"
database = "{db}"
poll_interval_ms = 100

[commerce]
base_url = "{commerce}"
token = "commerce-token"
website_stocks = {{ base = 2 }}

[engine]
sweep_every_minutes = 0

[[pos]]
kind = "file_drop"
id = "backoffice"
folder = "{folder}"
settle_ms = 0

[[stores]]
pos = "backoffice"
location = "YORK01"
source = "york"
name = "York"
priority = 1
stocks = [2]
"#,
        db = w.dir.join("files.db").display(),
        commerce = w.commerce,
        folder = drop_dir.display(),
    );
    let settings = Settings::from_toml(&toml, "file-drop.toml", Vec::new()).unwrap();
    let mut runner = assemble(settings, system_clock()).unwrap();
    // A snapshot with one good row and one the till got wrong.
    std::fs::write(
        drop_dir.join("stock_snapshot_0001.csv"),
        "store,sku,quantity\nYORK01,MUG,4\nYORK01,TEE,lots\n",
    )
    .unwrap();
    until!(
        runner,
        "the file's MUG figure reaches Commerce",
        commerce_qty(&w, "MUG", "york").await == Decimal::from(4)
    );
    // The bad row is stored as failed, naming the file, the row and the column.
    let store = runner.store_handle();
    let failed = store
        .records(&RecordFilter {
            state: Some(tillbridge_core::sync::RecordState::Failed),
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(failed.total, 1, "{:?}", failed.items);
    let detail = &failed.items[0].detail;
    assert!(detail.contains("stock_snapshot_0001.csv"), "{detail}");
    assert!(detail.contains("quantity"), "{detail}");
    // The file was moved aside once stored; a change file follows.
    assert!(
        drop_dir
            .join("processed")
            .join("stock_snapshot_0001.csv")
            .exists()
    );
    std::fs::write(
        drop_dir.join("stock_changes_0002.csv"),
        "store,sku,quantity\nYORK01,MUG,1\n",
    )
    .unwrap();
    until!(
        runner,
        "the change reaches Commerce",
        commerce_qty(&w, "MUG", "york").await == Decimal::from(1)
    );
    let _ = std::fs::remove_dir_all(&w.dir);
}
