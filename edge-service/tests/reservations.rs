//! The reservation scenarios end to end: the runner over real HTTP against the Square emulator
//! (the tills) and the Commerce emulator (Magento MSI and sales), with its store on SQLite (a
//! temporary file) and on PostgreSQL (a database of its own per test, on the server named by
//! `TILLBRIDGE_TEST_PG_URL`; `scripts/test.sh` starts one, `TILLBRIDGE_SKIP_PG=1` skips that
//! half on purpose).
//!
//! Every scenario ends with the stock contract checked from the outside:
//!
//! * Commerce's source quantity equals the till's on-hand for every (SKU, source);
//! * salable quantity equals on-hand − open web demand − the out-of-stock threshold
//!   (`commerce.min_qty`; Magento shows 0 once that is not positive);
//! * the reservations of every finished order (complete, closed, cancelled) sum to zero;
//! * Magento's reservation inconsistency list is empty;
//! * the engine has no open exception, or exactly the one the scenario expects.
//!
//! What the till does goes through the Square emulator's control API (fulfilment moves, sales,
//! returns, counts); what the customer and the back office do goes through Commerce's REST API
//! and its storefront checkout. Nothing here asserts how long anything takes: waiting is
//! bounded by a number of runner ticks, and a scenario that does not settle fails with what
//! still differs.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::sync::{Reason, RecordState};
use tillbridge_edge::config::Settings;
use tillbridge_edge::runner::{Runner, assemble, system_clock};
use tillbridge_edge::store::RecordFilter;

// ---------------------------------------------------------------------------------------------
// one database per test, on both backends

enum Cleanup {
    Dir(std::path::PathBuf),
    PgDatabase { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PgDatabase { admin_url, name } => {
                if let Ok(mut c) = PgConnection::establish(admin_url) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

/// A fresh database for one test: `url` is the runner's `service.database`.
struct Db {
    url: String,
    _cleanup: Cleanup,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let short: String = test.chars().take(30).collect();
    format!(
        "tb_resv_{short}_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl Db {
    fn sqlite(test: &str) -> Db {
        let dir = std::env::temp_dir().join(unique(test));
        std::fs::create_dir_all(&dir).unwrap();
        Db {
            url: format!("sqlite://{}", dir.join("tillbridge.db").display()),
            _cleanup: Cleanup::Dir(dir),
        }
    }

    /// `None` only when `TILLBRIDGE_SKIP_PG=1`.
    fn postgres(test: &str) -> Option<Db> {
        let Ok(admin_url) = std::env::var("TILLBRIDGE_TEST_PG_URL") else {
            if std::env::var("TILLBRIDGE_SKIP_PG").as_deref() == Ok("1") {
                eprintln!("skipped: TILLBRIDGE_SKIP_PG=1 (the PostgreSQL half did not run)");
                return None;
            }
            panic!(
                "TILLBRIDGE_TEST_PG_URL is not set, so the PostgreSQL half of the reservation \
                 scenarios cannot run. Run scripts/test.sh (it starts a throwaway PostgreSQL and \
                 sets it), or set it to postgres://USER@HOST:PORT/DB on a server where USER may \
                 CREATE DATABASE, or set TILLBRIDGE_SKIP_PG=1 to skip these tests on purpose."
            );
        };
        let name = unique(test).chars().take(63).collect::<String>();
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("TILLBRIDGE_TEST_PG_URL={admin_url}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Db {
            url: url.to_string(),
            _cleanup: Cleanup::PgDatabase { admin_url, name },
        })
    }
}

/// Each scenario below is an async function of a [`Db`]; this runs it on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(super::Db::sqlite(stringify!($name))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(db) = super::Db::postgres(stringify!($name)) {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    ship_from_store_clears_the_reservation_with_one_deduction,
    click_and_collect_goes_to_the_chosen_store_and_clears_its_reservation,
    a_multi_line_order_ships_in_one_parcel_from_the_store,
    a_split_order_ships_parcel_by_parcel_each_its_own_shipment,
    the_rest_of_a_split_order_cancelled_at_the_till_is_raised_until_commerce_refunds_it,
    cancel_after_pick_withdraws_the_fulfilment_and_releases_the_reservation,
    cancel_racing_the_handover_raises_one_exception_and_follows_the_till,
    refund_with_return_to_stock_keeps_commerce_on_the_till_figure,
    refund_without_return_to_stock_changes_no_quantity,
    refund_before_it_ships_withdraws_the_order_from_the_till,
    in_store_sale_of_the_last_unit_while_a_web_order_is_open,
    a_push_racing_a_shipment_never_deducts_twice,
    a_crash_after_a_shipment_replays_it_without_pushing_the_shipped_units_back,
    a_crash_before_any_snapshot_replays_the_shipment_without_pushing_it_back,
    a_crash_before_a_shipments_answer_is_stored_sends_it_again_before_any_push,
    a_crash_while_a_shipment_waits_for_its_retry_ships_once_and_raises_nothing,
    a_comment_whose_answer_was_lost_is_retried_and_the_customer_told_once,
);

// ---------------------------------------------------------------------------------------------
// the world: two tills, one Commerce

const STOCK: u32 = 2;
const STORES: [(&str, &str); 2] = [("York", "york"), ("Leeds", "leeds")];
const SKUS: [&str; 3] = ["MUG", "TEE", "LAMP"];

struct World {
    square: String,
    commerce: String,
    _sq: tillbridge_square_emulator::Handle,
    _cm: tillbridge_commerce_emulator::Handle,
    /// Store name → Square location id.
    locations: BTreeMap<String, String>,
    /// Square location id → Commerce source code.
    sources: BTreeMap<String, String>,
    /// Square variation id → SKU.
    skus: BTreeMap<String, String>,
    /// Commerce's out-of-stock threshold (`cataloginventory/item_options/min_qty`).
    threshold: Decimal,
    http: reqwest::Client,
    db: Db,
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn num(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// Two stores (York priority 1, Leeds priority 2, both fulfil web orders), three products,
/// `shelves[(store, sku)]` units on each shelf (0 where absent). Commerce starts with stale
/// figures (0, out of stock) that the first sync corrects.
async fn world(db: Db, shelves: &[(&str, &str, i64)], threshold: i64) -> World {
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
                {"name": "Lamp", "variations": [{"name": "Lamp", "sku": "LAMP", "price": 2500}]},
            ],
        }),
    )
    .await;
    let mut locations = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for (name, source) in STORES {
        let id = seeded["locations"][name].as_str().unwrap().to_owned();
        sources.insert(id.clone(), source.to_owned());
        locations.insert(name.to_owned(), id);
    }
    let skus = seeded["variations_by_sku"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(sku, id)| (id.as_str().unwrap().to_owned(), sku.clone()))
        .collect();
    for (store, _) in STORES {
        for sku in SKUS {
            let q = shelves
                .iter()
                .find(|(s, k, _)| *s == store && *k == sku)
                .map_or(0, |x| x.2);
            post(
                &http,
                format!("{square}/__emulator/stock"),
                json!({"sku": sku, "location_id": locations[store], "quantity": q}),
            )
            .await;
        }
    }
    let mut items = Vec::new();
    let mut ops = vec![
        json!({"op": "create_source", "source_code": "york", "name": "York", "enabled": true, "country_id": "GB", "postcode": "YO1 7HH"}),
        json!({"op": "create_source", "source_code": "leeds", "name": "Leeds", "enabled": true, "country_id": "GB", "postcode": "LS1 1UR"}),
        json!({"op": "create_stock", "stock_id": STOCK, "name": "UK", "sales_channels": [{"type": "website", "code": "base"}]}),
        json!({"op": "save_stock_source_links", "links": [
            {"stock_id": STOCK, "source_code": "york", "priority": 1},
            {"stock_id": STOCK, "source_code": "leeds", "priority": 2}
        ]}),
    ];
    for sku in SKUS {
        ops.push(json!({"op": "create_product", "sku": sku, "type": "simple"}));
        for (_, source) in STORES {
            items.push(json!({"sku": sku, "source_code": source, "quantity": 0, "status": 0}));
        }
    }
    ops.push(json!({"op": "save_source_items", "items": items}));
    let res = post(
        &http,
        format!("{commerce}/__emulator/ops"),
        json!({"ops": ops}),
    )
    .await;
    assert_eq!(res["failed"], json!(false), "{res}");
    post(
        &http,
        format!("{commerce}/__emulator/config"),
        json!({"magento": {"cataloginventory/item_options/min_qty": threshold.to_string()}}),
    )
    .await;
    World {
        square,
        commerce,
        _sq: sq,
        _cm: cm,
        locations,
        sources,
        skus,
        threshold: Decimal::from(threshold),
        http,
        db,
    }
}

fn settings(w: &World, fulfilment_poll_ms: u64) -> Settings {
    let toml = format!(
        r#"
[service]
api_token = "test-token-0123456789"
database = "{db}"
poll_interval_ms = 100
fulfilment_poll_interval_ms = {fulfilment_poll_ms}

[commerce]
base_url = "{commerce}"
token = "commerce-token"
store_code = "all"
website_stocks = {{ base = {STOCK} }}
requests_per_second = 50
source_items_per_second = 500
min_qty = {threshold}

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
stocks = [{STOCK}]
fulfils = true

[[stores]]
pos = "square"
location = "{leeds}"
source = "leeds"
name = "Leeds"
priority = 2
stocks = [{STOCK}]
fulfils = true
"#,
        db = w.db.url,
        commerce = w.commerce,
        square = w.square,
        threshold = w.threshold,
        york = w.locations["York"],
        leeds = w.locations["Leeds"],
    );
    Settings::from_toml(&toml, "reservations-test.toml", Vec::new()).unwrap()
}

/// Start the runner and wait until Commerce holds the tills' figures.
async fn start(w: &World) -> Runner {
    start_with(w, 100).await
}

async fn start_with(w: &World, fulfilment_poll_ms: u64) -> Runner {
    let mut runner = assemble(settings(w, fulfilment_poll_ms), system_clock()).unwrap();
    settle(w, &mut runner, &[]).await;
    runner
}

// ---------------------------------------------------------------------------------------------
// what the tills show

/// The tills' on-hand (IN_STOCK) per (SKU, source).
async fn on_hand(w: &World) -> BTreeMap<(String, String), Decimal> {
    let stock: Value = w
        .http
        .get(format!("{}/__emulator/stock", w.square))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for sku in SKUS {
        for (_, source) in STORES {
            out.insert((sku.to_owned(), source.to_owned()), Decimal::ZERO);
        }
    }
    for c in stock["counts"].as_array().unwrap() {
        if c["state"] != json!("IN_STOCK") {
            continue;
        }
        let Some(source) = w.sources.get(c["location_id"].as_str().unwrap()) else {
            continue;
        };
        let sku = &w.skus[c["catalog_object_id"].as_str().unwrap()];
        out.insert((sku.clone(), source.clone()), num(&c["quantity"]));
    }
    out
}

/// The Square order the runner sent to a store for a web order.
async fn till_order(w: &World, store: &str, increment: &str) -> Option<String> {
    let v: Value = w
        .http
        .get(format!(
            "{}/__emulator/tills/{}/orders",
            w.square, w.locations[store]
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["orders"]
        .as_array()?
        .iter()
        .find(|o| o["reference_id"].as_str() == Some(increment))
        .and_then(|o| o["id"].as_str().map(str::to_owned))
}

async fn till_orders_for(w: &World, increment: &str) -> usize {
    let mut n = 0;
    for (store, _) in STORES {
        let v: Value = w
            .http
            .get(format!(
                "{}/__emulator/tills/{}/orders",
                w.square, w.locations[store]
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        n += v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["reference_id"].as_str() == Some(increment))
            .count();
    }
    n
}

async fn fulfilment_state(w: &World, square_order: &str) -> String {
    let v: Value = w
        .http
        .get(format!("{}/v2/orders/{square_order}", w.square))
        .bearer_auth("square-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["order"]["fulfillments"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Store staff move a fulfilment in Square's Order Manager.
async fn till_moves(w: &World, square_order: &str, body: Value) {
    post(
        &w.http,
        format!("{}/__emulator/orders/{square_order}/fulfillment", w.square),
        body,
    )
    .await;
}

/// A walk-in sale at a till.
async fn till_sells(w: &World, store: &str, sku: &str, quantity: i64) {
    post(
        &w.http,
        format!("{}/__emulator/sales", w.square),
        json!({"location_id": w.locations[store], "lines": [{"sku": sku, "quantity": quantity}]}),
    )
    .await;
}

/// A physical count at a till (a delivery, a shelf count).
async fn till_counts(w: &World, store: &str, sku: &str, quantity: i64) {
    post(
        &w.http,
        format!("{}/__emulator/stock", w.square),
        json!({"sku": sku, "location_id": w.locations[store], "quantity": quantity}),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// what Commerce shows

async fn commerce_qty(w: &World, sku: &str, source: &str) -> Decimal {
    let v = post(
        &w.http,
        format!("{}/__emulator/query", w.commerce),
        json!({"check": {"source_item_qty": {"sku": sku, "source_code": source}}}),
    )
    .await;
    num(&v["value"])
}

async fn salable(w: &World, sku: &str) -> Decimal {
    let v: Value = w
        .http
        .get(format!(
            "{}/__emulator/salable-qty/{sku}/{STOCK}",
            w.commerce
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    num(&v)
}

async fn rest_get(w: &World, path: &str) -> Value {
    let r = w
        .http
        .get(format!("{}/rest/V1/{path}", w.commerce))
        .bearer_auth("commerce-token")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "GET {path}: {status} {v}");
    v
}

async fn rest_post(w: &World, path: &str, body: Value) -> Value {
    let r = w
        .http
        .post(format!("{}/rest/V1/{path}", w.commerce))
        .bearer_auth("commerce-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

/// Every Commerce order, as REST shows it.
async fn orders(w: &World) -> Vec<Value> {
    let v = rest_get(w, "orders?searchCriteria[pageSize]=100").await;
    v["items"].as_array().cloned().unwrap_or_default()
}

fn is_finished(order: &Value) -> bool {
    matches!(
        order["state"].as_str(),
        Some("complete" | "closed" | "canceled")
    )
}

/// Units Commerce still owes customers: ordered − shipped − cancelled − refunded, over the lines
/// of unfinished orders.
async fn open_web_demand(w: &World, sku: &str) -> Decimal {
    let mut total = Decimal::ZERO;
    for o in orders(w).await.iter().filter(|o| !is_finished(o)) {
        for i in o["items"].as_array().unwrap() {
            if i["sku"] != json!(sku) {
                continue;
            }
            let q = |k: &str| i.get(k).map_or(Decimal::ZERO, num);
            total += (q("qty_ordered") - q("qty_shipped") - q("qty_canceled") - q("qty_refunded"))
                .max(Decimal::ZERO);
        }
    }
    total
}

/// A storefront checkout; answers (increment id, entity id).
async fn checkout(w: &World, body: Value) -> (String, u64) {
    let placed = post(&w.http, format!("{}/__emulator/orders", w.commerce), body).await;
    (
        placed["increment_id"].as_str().unwrap().to_owned(),
        placed["entity_id"].as_u64().unwrap(),
    )
}

/// Capture the payment (an invoice for everything).
async fn invoice(w: &World, entity: u64) {
    rest_post(
        w,
        &format!("order/{entity}/invoice"),
        json!({"capture": true}),
    )
    .await;
}

async fn order(w: &World, entity: u64) -> Value {
    rest_get(w, &format!("orders/{entity}")).await
}

fn item_id(order: &Value, sku: &str) -> u64 {
    order["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sku"] == json!(sku))
        .and_then(|i| i["item_id"].as_u64())
        .unwrap()
}

/// A Commerce shipment as REST shows it.
#[derive(Debug, Clone, PartialEq)]
struct Shipped {
    source: String,
    /// (SKU, quantity), sorted.
    items: Vec<(String, Decimal)>,
    tracks: Vec<String>,
    comments: Vec<String>,
}

async fn shipments(w: &World, entity: u64) -> Vec<Shipped> {
    let v = rest_get(
        w,
        &format!(
            "shipments?searchCriteria[filterGroups][0][filters][0][field]=order_id&searchCriteria[filterGroups][0][filters][0][value]={entity}"
        ),
    )
    .await;
    let list = |s: &Value, k: &str, f: &str| -> Vec<String> {
        s[k].as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x[f].as_str().map(str::to_owned))
            .collect()
    };
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let mut items: Vec<(String, Decimal)> = s["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| (i["sku"].as_str().unwrap().to_owned(), num(&i["qty"])))
                .collect();
            items.sort();
            Shipped {
                source: s["extension_attributes"]["source_code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                items,
                tracks: list(s, "tracks", "track_number"),
                comments: list(s, "comments", "comment"),
            }
        })
        .collect()
}

/// Commerce's source quantity of every (SKU, source) a shipment deducted, right after that
/// shipment, replayed from the emulator's call log (source-item writes are absolute; a
/// shipment deducts its items from its source). Starts from the seeded zeros.
async fn after_shipments(w: &World) -> Vec<(String, String, Decimal)> {
    let calls: Value = w
        .http
        .get(format!("{}/__emulator/calls", w.commerce))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut qty: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut out = Vec::new();
    for c in calls["calls"].as_array().unwrap() {
        let path = c["path"].as_str().unwrap_or_default();
        if c["method"] != json!("POST") || c["status"] != json!(200) {
            continue;
        }
        let body = &c["request_body"];
        if path.ends_with("/V1/inventory/source-items") {
            for i in body["sourceItems"].as_array().unwrap() {
                let key = (
                    i["sku"].as_str().unwrap().to_owned(),
                    i["source_code"].as_str().unwrap().to_owned(),
                );
                qty.insert(key, num(&i["quantity"]));
            }
        } else if let Some(entity) = path
            .strip_suffix("/ship")
            .and_then(|p| p.rsplit('/').next())
        {
            let o = order(w, entity.parse().unwrap()).await;
            let source = body["arguments"]["extension_attributes"]["source_code"]
                .as_str()
                .unwrap()
                .to_owned();
            for i in body["items"].as_array().unwrap() {
                let sku = o["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["item_id"] == i["order_item_id"])
                    .and_then(|x| x["sku"].as_str())
                    .unwrap()
                    .to_owned();
                let q = qty.entry((sku.clone(), source.clone())).or_default();
                *q -= num(&i["qty"]);
                out.push((sku, source.clone(), *q));
            }
        }
    }
    out
}

/// The order's comments, oldest first.
async fn comments(w: &World, entity: u64) -> Vec<String> {
    let o = order(w, entity).await;
    let mut c: Vec<String> = o["status_histories"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h["comment"].as_str().map(str::to_owned))
        .collect();
    c.reverse();
    c
}

// ---------------------------------------------------------------------------------------------
// the contract

/// Everything that differs from the stock contract now (empty: it holds). `expected`: the
/// exceptions the scenario expects to be open, as (reason, subject).
async fn violations(w: &World, runner: &Runner, expected: &[(Reason, String)]) -> Vec<String> {
    let mut out = Vec::new();
    // Magento's cron: the inventory queue consumers.
    post(
        &w.http,
        format!("{}/__emulator/consumers/run", w.commerce),
        json!({}),
    )
    .await;
    let tills = on_hand(w).await;
    for ((sku, source), q) in &tills {
        let c = commerce_qty(w, sku, source).await;
        let want = q.max(&Decimal::ZERO);
        if c != *want {
            out.push(format!("{sku}@{source}: Commerce holds {c}, the till {q}"));
        }
    }
    for sku in SKUS {
        let shelves: Decimal = tills
            .iter()
            .filter(|((s, _), _)| s == sku)
            .map(|(_, q)| q.max(&Decimal::ZERO))
            .sum();
        let demand = open_web_demand(w, sku).await;
        let expected = shelves - demand - w.threshold;
        let shown = salable(w, sku).await;
        // Magento answers 0 once the quantity left is not above the threshold.
        let ok = if expected > Decimal::ZERO {
            shown == expected
        } else {
            shown == expected || shown.is_zero()
        };
        if !ok {
            out.push(format!(
                "{sku}: salable {shown}, expected {expected} (on hand {shelves} − open web demand {demand} − threshold {})",
                w.threshold
            ));
        }
    }
    // Reservations of finished orders sum to zero.
    let all = orders(w).await;
    let finished: BTreeSet<String> = all
        .iter()
        .filter(|o| is_finished(o))
        .map(|o| o["increment_id"].as_str().unwrap().to_owned())
        .collect();
    let rows: Value = w
        .http
        .get(format!("{}/__emulator/reservations", w.commerce))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut sums: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for r in rows["reservations"].as_array().unwrap() {
        let meta: Value = r["metadata"]
            .as_str()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        let increment = meta["object_increment_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if finished.contains(&increment) {
            *sums
                .entry((increment, r["sku"].as_str().unwrap().to_owned()))
                .or_default() += num(&r["quantity"]);
        }
    }
    for ((increment, sku), q) in sums {
        if !q.is_zero() {
            out.push(format!(
                "reservations of finished order {increment} for {sku} sum to {q}"
            ));
        }
    }
    // Magento's own list (inventory:reservation:list-inconsistencies).
    let listed = rest_get(w, "tillbridge/inconsistencies").await;
    if listed.as_array().is_none_or(|l| !l.is_empty()) {
        out.push(format!("Magento lists inconsistencies: {listed}"));
    }
    // The engine's open exceptions: none, or exactly the expected ones.
    let open: BTreeSet<(Reason, String)> = runner
        .engine()
        .exceptions()
        .map(|e| (e.reason, e.subject.clone()))
        .collect();
    let want: BTreeSet<(Reason, String)> = expected.iter().cloned().collect();
    if open != want {
        let all: Vec<String> = runner
            .engine()
            .exceptions()
            .map(|e| format!("{:?} {}: {}", e.reason, e.subject, e.message))
            .collect();
        out.push(format!("open exceptions {all:?}, expected {want:?}"));
    }
    out
}

/// Tick the runner until the engine is idle and the contract holds, and still holds a few
/// polls later; fail with what differs when it does not settle.
async fn settle(w: &World, runner: &mut Runner, expected: &[(Reason, String)]) {
    let mut last = Vec::new();
    let mut held = 0;
    for round in 0..200 {
        for _ in 0..3 {
            runner.tick().await.unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !runner.engine().is_idle() {
            held = 0;
            continue;
        }
        last = violations(w, runner, expected).await;
        if last.is_empty() {
            held += 1;
            // Idle and consistent over several poll intervals: nothing is left in flight.
            if held >= 4 {
                return;
            }
        } else {
            held = 0;
        }
        let _ = round;
    }
    let store = runner.store_handle();
    let recent = store
        .records(&RecordFilter {
            limit: 25,
            ..RecordFilter::default()
        })
        .unwrap();
    let cmds = store.commands(None, 25, 0).unwrap();
    panic!(
        "the stock contract does not hold: {last:#?}\nengine idle: {}\nview: {:?}\nrecords: {:#?}\ncommands: {:#?}",
        runner.engine().is_idle(),
        runner.view().lock().unwrap().clone(),
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

/// Tick until `cond` holds (bounded; not a timing assertion).
macro_rules! until {
    ($runner:expr, $what:expr, $cond:expr) => {{
        let mut ok = false;
        for _ in 0..400 {
            $runner.tick().await.unwrap();
            if $cond {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !ok {
            let exceptions: Vec<_> = $runner.engine().exceptions().cloned().collect();
            panic!(
                "gave up waiting for: {}\nview: {:?}\nexceptions: {exceptions:#?}",
                $what,
                $runner.view().lock().unwrap().clone(),
            );
        }
    }};
}

/// Wait until the web order is on a store's till; answers the Square order id.
async fn on_the_till(w: &World, runner: &mut Runner, store: &str, increment: &str) -> String {
    let mut found = None;
    until!(runner, format!("order {increment} on the {store} till"), {
        found = till_order(w, store, increment).await;
        found.is_some()
    });
    found.unwrap()
}

fn d(n: i64) -> Decimal {
    Decimal::from(n)
}

// ---------------------------------------------------------------------------------------------
// 1. store-fulfilled web orders

async fn ship_from_store_clears_the_reservation_with_one_deduction(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(5));

    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}]})).await;
    invoice(&w, entity).await;
    assert_eq!(
        salable(&w, "MUG").await,
        d(10 - 2 - 1),
        "10 on the shelves, 2 reserved, threshold 1"
    );
    // York comes first by priority and holds both.
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;
    let said = comments(&w, entity).await;
    assert!(
        said.iter().any(|c| c.contains("being prepared at York")),
        "{said:?}"
    );
    assert_eq!(salable(&w, "MUG").await, d(10 - 2 - 1), "still reserved");
    till_moves(
        &w,
        &square_order,
        json!({"action": "shipped", "tracking_number": "RM123456785GB", "carrier": "Royal Mail"}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;

    // One shipment from York with the tracking number; deducted once.
    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(shipped[0].source, "york");
    assert_eq!(shipped[0].items, vec![("MUG".to_owned(), d(2))]);
    assert_eq!(shipped[0].tracks, vec!["RM123456785GB".to_owned()]);
    assert!(
        shipped[0]
            .comments
            .iter()
            .any(|c| c.contains("Shipped from York, tracking RM123456785GB")),
        "{shipped:?}"
    );
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));
    assert_eq!(salable(&w, "MUG").await, d(3 + 5 - 1));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
    assert_eq!(runner.engine().stats().shipments_created, 1);
    assert_eq!(till_orders_for(&w, &increment).await, 1);
}

async fn click_and_collect_goes_to_the_chosen_store_and_clears_its_reservation(db: Db) {
    let w = world(db, &[("York", "TEE", 4), ("Leeds", "TEE", 3)], 1).await;
    let mut runner = start(&w).await;

    // The customer picks Leeds although York comes first.
    let (increment, entity) = checkout(
        &w,
        json!({
            "items": [{"sku": "TEE", "qty": 1, "price": 15}],
            "shipping": {"amount": 0, "tax_percent": 0, "method": "instore_pickup", "description": "leeds"},
        }),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "Leeds", &increment).await;
    assert!(till_order(&w, "York", &increment).await.is_none());
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    till_moves(&w, &square_order, json!({"action": "ready"})).await;
    // The customer is told the order waits for them before it is collected.
    until!(
        runner,
        "the ready-for-collection comment",
        comments(&w, entity)
            .await
            .iter()
            .any(|c| c.contains("ready for collection at Leeds"))
    );
    assert_eq!(open_web_demand(&w, "TEE").await, d(1));
    till_moves(&w, &square_order, json!({"action": "picked_up"})).await;
    settle(&w, &mut runner, &[]).await;

    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(shipped[0].source, "leeds");
    assert_eq!(shipped[0].items, vec![("TEE".to_owned(), d(1))]);
    assert!(
        shipped[0]
            .comments
            .iter()
            .any(|c| c.contains("Collected at Leeds")),
        "{shipped:?}"
    );
    assert_eq!(commerce_qty(&w, "TEE", "leeds").await, d(2));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(4));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
}

// ---------------------------------------------------------------------------------------------
// 2. partial shipment
//
// Square's API creates an order with one fulfilment for every line (`line_item_application:
// ALL`); a seller can split it in Square's seller tools into `ENTRY_LIST` fulfilments (one mug
// now, the tee when it comes up from the stockroom) and complete them one at a time. Each
// completed part leaves the till's shelf when it is handed over and becomes its own Commerce
// shipment; the order completes with the last one. Without a split, the store hands over every
// line of a multi-line order in one parcel.

/// A seller splits an order's fulfilment into parcels in Square's seller tools; answers the
/// new fulfilments' uids, one per parcel, in order.
async fn till_splits(w: &World, square_order: &str, parcels: Value) -> Vec<String> {
    let v = post(
        &w.http,
        format!("{}/__emulator/orders/{square_order}/split", w.square),
        json!({ "parcels": parcels }),
    )
    .await;
    v["order"]["fulfillments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["uid"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_split_order_ships_parcel_by_parcel_each_its_own_shipment(db: Db) {
    let w = world(
        db,
        &[
            ("York", "MUG", 5),
            ("York", "TEE", 3),
            ("Leeds", "MUG", 4),
            ("Leeds", "TEE", 4),
        ],
        1,
    )
    .await;
    let mut runner = start(&w).await;
    let (increment, entity) = checkout(
        &w,
        json!({"items": [
            {"sku": "MUG", "qty": 2, "price": 8},
            {"sku": "TEE", "qty": 1, "price": 15}
        ]}),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    // The mugs are at hand, the tee is in the stockroom: the seller splits the order.
    let parts = till_splits(
        &w,
        &square_order,
        json!([[{"sku": "MUG", "quantity": "2"}], [{"sku": "TEE", "quantity": "1"}]]),
    )
    .await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    settle(&w, &mut runner, &[]).await;
    assert_eq!(open_web_demand(&w, "MUG").await, d(2));
    assert_eq!(salable(&w, "MUG").await, d(9 - 2 - 1));

    // The mugs go. Until Tillbridge has seen it, Commerce's source holds the till's figure
    // plus the units handed over without a shipment yet.
    till_moves(
        &w,
        &square_order,
        json!({"action": "shipped", "fulfillment_uid": parts[0], "tracking_number": "RM000000011GB"}),
    )
    .await;
    let shelf = on_hand(&w).await;
    assert_eq!(shelf[&("MUG".to_owned(), "york".to_owned())], d(3));
    assert_eq!(
        shelf[&("TEE".to_owned(), "york".to_owned())],
        d(3),
        "the tee is still there"
    );
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3) + d(2));
    settle(&w, &mut runner, &[]).await;

    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(shipped[0].source, "york");
    assert_eq!(shipped[0].items, vec![("MUG".to_owned(), d(2))]);
    assert_eq!(shipped[0].tracks, vec!["RM000000011GB".to_owned()]);
    assert_ne!(order(&w, entity).await["state"], json!("complete"));
    // The tee stays reserved; the mugs left the shelf and the reservation together.
    assert_eq!(open_web_demand(&w, "TEE").await, d(1));
    assert_eq!(open_web_demand(&w, "MUG").await, d(0));
    assert_eq!(salable(&w, "TEE").await, d(7 - 1 - 1));
    assert_eq!(salable(&w, "MUG").await, d(7 - 1));
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(3));

    // The service stops (snapshot on the way out, as `serve` does) and starts again: the
    // part already handed over reads the same and is not handed over again.
    runner.snapshot(system_clock()()).unwrap();
    drop(runner);
    let mut runner = start(&w).await;
    assert_eq!(shipments(&w, entity).await.len(), 1);

    // The tee comes up from the stockroom and goes too.
    till_moves(
        &w,
        &square_order,
        json!({"action": "shipped", "fulfillment_uid": parts[1], "tracking_number": "RM000000012GB"}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;

    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 2, "{shipped:?}");
    assert_eq!(shipped[1].source, "york");
    assert_eq!(shipped[1].items, vec![("TEE".to_owned(), d(1))]);
    assert_eq!(shipped[1].tracks, vec!["RM000000012GB".to_owned()]);
    // Each shipment deducted from a source that held the till's figure plus what it carried.
    assert_eq!(
        after_shipments(&w).await,
        vec![
            ("MUG".to_owned(), "york".to_owned(), d(3)),
            ("TEE".to_owned(), "york".to_owned(), d(2))
        ]
    );
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(2));
    assert_eq!(salable(&w, "TEE").await, d(6 - 1));
    assert_eq!(runner.engine().stats().shipments_created, 2);
    assert_eq!(till_orders_for(&w, &increment).await, 1);
    assert!(violations(&w, &runner, &[]).await.is_empty());
}

async fn the_rest_of_a_split_order_cancelled_at_the_till_is_raised_until_commerce_refunds_it(
    db: Db,
) {
    let w = world(
        db,
        &[
            ("York", "MUG", 5),
            ("York", "TEE", 3),
            ("Leeds", "MUG", 4),
            ("Leeds", "TEE", 4),
        ],
        1,
    )
    .await;
    let mut runner = start(&w).await;
    let (increment, entity) = checkout(
        &w,
        json!({"items": [
            {"sku": "MUG", "qty": 2, "price": 8},
            {"sku": "TEE", "qty": 1, "price": 15}
        ]}),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    let parts = till_splits(
        &w,
        &square_order,
        json!([[{"sku": "MUG", "quantity": "2"}], [{"sku": "TEE", "quantity": "1"}]]),
    )
    .await;
    till_moves(
        &w,
        &square_order,
        json!({"action": "shipped", "fulfillment_uid": parts[0]}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(shipments(&w, entity).await.len(), 1);

    // The tee turns out to be damaged: the store cancels that part. Commerce still reserves
    // it, and someone has to decide: the order is raised with what is left.
    till_moves(
        &w,
        &square_order,
        json!({"action": "cancelled", "fulfillment_uid": parts[1]}),
    )
    .await;
    let refused = (Reason::PosRefused, format!("order {increment}"));
    settle(&w, &mut runner, std::slice::from_ref(&refused)).await;
    let open: Vec<_> = runner
        .engine()
        .exceptions()
        .filter(|e| e.reason == Reason::PosRefused && e.subject == refused.1)
        .cloned()
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].message.contains("TEE × 1"), "{}", open[0].message);
    assert!(!open[0].message.contains("MUG"), "{}", open[0].message);
    assert_eq!(open_web_demand(&w, "TEE").await, d(1));
    assert_eq!(
        commerce_qty(&w, "TEE", "york").await,
        d(3),
        "the tee is on York's shelf"
    );

    // Customer service refunds the tee in Commerce: the reservation goes, the exception too,
    // and York's source keeps the till's figure.
    let o = order(&w, entity).await;
    let item = item_id(&o, "TEE");
    rest_post(
        &w,
        &format!("order/{entity}/refund"),
        json!({"items": [{"order_item_id": item, "qty": 1}], "arguments": {"shipping_amount": 0}}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;
    assert!(
        !runner.engine().exceptions().any(|e| e.subject == refused.1),
        "resolved"
    );
    assert_eq!(open_web_demand(&w, "TEE").await, d(0));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(3));
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));
    assert_eq!(salable(&w, "TEE").await, d(7 - 1));
    assert_eq!(shipments(&w, entity).await.len(), 1);
    assert!(violations(&w, &runner, &[]).await.is_empty());
}

async fn a_multi_line_order_ships_in_one_parcel_from_the_store(db: Db) {
    let w = world(
        db,
        &[
            ("York", "MUG", 4),
            ("York", "TEE", 2),
            ("Leeds", "MUG", 6),
            ("Leeds", "TEE", 6),
        ],
        1,
    )
    .await;
    let mut runner = start(&w).await;
    // York holds 4 mugs but only 2 tees; the order wants 3 of each: Leeds takes it whole.
    let (increment, entity) = checkout(
        &w,
        json!({"items": [
            {"sku": "MUG", "qty": 3, "price": 8},
            {"sku": "TEE", "qty": 3, "price": 15}
        ]}),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "Leeds", &increment).await;
    assert!(till_order(&w, "York", &increment).await.is_none());
    // Picking takes a while: the order stays reserved in full.
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    till_moves(&w, &square_order, json!({"action": "picked"})).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(open_web_demand(&w, "MUG").await, d(3));
    assert_eq!(salable(&w, "MUG").await, d(10 - 3 - 1));
    assert_eq!(salable(&w, "TEE").await, d(8 - 3 - 1));
    till_moves(&w, &square_order, json!({"action": "shipped"})).await;
    settle(&w, &mut runner, &[]).await;

    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "one parcel: {shipped:?}");
    assert_eq!(shipped[0].source, "leeds");
    assert_eq!(
        shipped[0].items,
        vec![("MUG".to_owned(), d(3)), ("TEE".to_owned(), d(3))]
    );
    assert_eq!(commerce_qty(&w, "MUG", "leeds").await, d(3));
    assert_eq!(commerce_qty(&w, "TEE", "leeds").await, d(3));
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(4));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
}

// ---------------------------------------------------------------------------------------------
// 3. cancel after pick

async fn cancel_after_pick_withdraws_the_fulfilment_and_releases_the_reservation(db: Db) {
    let w = world(db, &[("York", "TEE", 4), ("Leeds", "TEE", 4)], 1).await;
    let mut runner = start(&w).await;
    let (increment, entity) = checkout(
        &w,
        json!({
            "items": [{"sku": "TEE", "qty": 2, "price": 15}],
            "shipping": {"amount": 0, "tax_percent": 0, "method": "instore_pickup", "description": "leeds"},
        }),
    )
    .await;
    let square_order = on_the_till(&w, &mut runner, "Leeds", &increment).await;
    // The store accepts and picks it; the goods wait at the counter.
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    till_moves(&w, &square_order, json!({"action": "picked"})).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(salable(&w, "TEE").await, d(8 - 2 - 1));

    // The customer cancels in Commerce.
    let cancelled = rest_post(&w, &format!("orders/{entity}/cancel"), json!({})).await;
    assert_eq!(cancelled, json!(true));
    until!(
        runner,
        "the fulfilment is withdrawn at the till",
        fulfilment_state(&w, &square_order).await == "CANCELED"
    );
    settle(&w, &mut runner, &[]).await;
    assert_eq!(order(&w, entity).await["state"], json!("canceled"));
    // Nothing left the shelf; the reservation is released; nothing was shipped.
    assert_eq!(commerce_qty(&w, "TEE", "leeds").await, d(4));
    assert_eq!(salable(&w, "TEE").await, d(8 - 1));
    assert!(shipments(&w, entity).await.is_empty());
    assert_eq!(runner.engine().stats().shipments_created, 0);
}

async fn cancel_racing_the_handover_raises_one_exception_and_follows_the_till(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}]})).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;
    // The store hands the parcel to the carrier while the customer cancels online, before
    // Tillbridge has seen either.
    till_moves(&w, &square_order, json!({"action": "shipped"})).await;
    let cancelled = rest_post(&w, &format!("orders/{entity}/cancel"), json!({})).await;
    assert_eq!(cancelled, json!(true));
    // The goods are gone: Commerce follows the till, and a person is told to recover them.
    let handover = (Reason::CancelAfterHandover, format!("order {increment}"));
    settle(&w, &mut runner, std::slice::from_ref(&handover)).await;
    let open: Vec<_> = runner.engine().exceptions().collect();
    assert!(
        open[0].message.contains("after the store handed it over"),
        "{}",
        open[0].message
    );
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));
    assert_eq!(order(&w, entity).await["state"], json!("canceled"));
    assert!(shipments(&w, entity).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. refunds

/// A web order for `qty` of `sku` shipped from York; answers (increment, entity).
async fn shipped_from_york(w: &World, runner: &mut Runner, sku: &str, qty: i64) -> (String, u64) {
    let (increment, entity) =
        checkout(w, json!({"items": [{"sku": sku, "qty": qty, "price": 10}]})).await;
    invoice(w, entity).await;
    let square_order = on_the_till(w, runner, "York", &increment).await;
    till_moves(w, &square_order, json!({"action": "shipped"})).await;
    settle(w, runner, &[]).await;
    assert_eq!(shipments(w, entity).await.len(), 1);
    (increment, entity)
}

async fn refund_with_return_to_stock_keeps_commerce_on_the_till_figure(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 2)], 1).await;
    let mut runner = start(&w).await;
    let (_, entity) = shipped_from_york(&w, &mut runner, "MUG", 2).await;
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));

    // The customer brings one mug back to the York till, which books it back on the shelf.
    post(
        &w.http,
        format!("{}/__emulator/returns", w.square),
        json!({"location_id": w.locations["York"], "lines": [{"sku": "MUG", "quantity": 1}]}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(4));

    // The back office refunds it in Commerce with "return to stock" ticked: Magento books the
    // unit back on York's source too. The till's figure already holds it, so Commerce must
    // not count it twice.
    let o = order(&w, entity).await;
    let item = item_id(&o, "MUG");
    rest_post(
        &w,
        &format!("order/{entity}/refund"),
        json!({
            "items": [{"order_item_id": item, "qty": 1}],
            "arguments": {"shipping_amount": 0, "extension_attributes": {"return_to_stock_items": [item]}},
        }),
    )
    .await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(
        commerce_qty(&w, "MUG", "york").await,
        d(4),
        "the till's figure, not the till's plus Magento's return"
    );
    assert_eq!(salable(&w, "MUG").await, d(4 + 2 - 1));
    let o = order(&w, entity).await;
    assert_eq!(num(&o["items"][0]["qty_refunded"]), d(1));
}

async fn refund_without_return_to_stock_changes_no_quantity(db: Db) {
    let w = world(db, &[("York", "TEE", 3), ("Leeds", "TEE", 3)], 1).await;
    let mut runner = start(&w).await;
    let (_, entity) = shipped_from_york(&w, &mut runner, "TEE", 1).await;
    // The tee arrived damaged: refunded in full, nothing comes back to a shelf.
    let o = order(&w, entity).await;
    let item = item_id(&o, "TEE");
    rest_post(
        &w,
        &format!("order/{entity}/refund"),
        json!({"items": [{"order_item_id": item, "qty": 1}], "arguments": {"shipping_amount": 0}}),
    )
    .await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(order(&w, entity).await["state"], json!("closed"));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(2));
    assert_eq!(commerce_qty(&w, "TEE", "leeds").await, d(3));
    assert_eq!(salable(&w, "TEE").await, d(5 - 1));
}

async fn refund_before_it_ships_withdraws_the_order_from_the_till(db: Db) {
    let w = world(db, &[("York", "TEE", 3), ("Leeds", "TEE", 3)], 1).await;
    let mut runner = start(&w).await;
    let (increment, entity) = checkout(
        &w,
        json!({"items": [{"sku": "TEE", "qty": 2, "price": 15}]}),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;
    // Paid, so it cannot be cancelled: the back office refunds it in full before it ships
    // (nothing to return to stock). Magento takes the two tees off York's source; they are
    // still on York's shelf, and the store must not send them.
    let o = order(&w, entity).await;
    let item = item_id(&o, "TEE");
    rest_post(
        &w,
        &format!("order/{entity}/refund"),
        json!({"items": [{"order_item_id": item, "qty": 2}], "arguments": {"shipping_amount": 0}}),
    )
    .await;
    until!(
        runner,
        "the fulfilment is withdrawn at the till",
        fulfilment_state(&w, &square_order).await == "CANCELED"
    );
    settle(&w, &mut runner, &[]).await;
    assert_eq!(order(&w, entity).await["state"], json!("closed"));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(3));
    assert_eq!(salable(&w, "TEE").await, d(6 - 1));
}

// ---------------------------------------------------------------------------------------------
// 5. the last unit sold in store while a web order for it is open

async fn in_store_sale_of_the_last_unit_while_a_web_order_is_open(db: Db) {
    // One lamp, in York; no threshold (or the web could not sell it at all).
    let w = world(db, &[("York", "LAMP", 1)], 0).await;
    let mut runner = start(&w).await;
    // Paid by card: authorised at checkout, captured when it ships (so it can be cancelled).
    let (increment, entity) = checkout(
        &w,
        json!({"items": [{"sku": "LAMP", "qty": 1, "price": 25}]}),
    )
    .await;
    assert_eq!(salable(&w, "LAMP").await, d(0));
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;

    // A walk-in customer buys the lamp before the store picks the web order.
    till_sells(&w, "York", "LAMP", 1).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(commerce_qty(&w, "LAMP", "york").await, d(0));
    assert_eq!(open_web_demand(&w, "LAMP").await, d(1));

    // The store cannot fulfil it and says so at the till; Leeds has none: nobody can.
    till_moves(
        &w,
        &square_order,
        json!({"action": "rejected", "failure_reason": "sold in store"}),
    )
    .await;
    let unroutable = (Reason::Unroutable, format!("order {increment}"));
    settle(&w, &mut runner, std::slice::from_ref(&unroutable)).await;
    let open: Vec<_> = runner.engine().exceptions().collect();
    assert_eq!(open.len(), 1);
    assert!(open[0].message.contains(&increment), "{}", open[0].message);
    assert!(
        open[0].message.contains("cannot be routed"),
        "{}",
        open[0].message
    );

    // Customer service cancels it in Commerce: the reservation goes, and so does the exception.
    let cancelled = rest_post(&w, &format!("orders/{entity}/cancel"), json!({})).await;
    assert_eq!(cancelled, json!(true));
    settle(&w, &mut runner, &[]).await;
    assert_eq!(order(&w, entity).await["state"], json!("canceled"));
    assert_eq!(salable(&w, "LAMP").await, d(0));
    assert_eq!(runner.engine().stats().shipments_created, 0);
}

// ---------------------------------------------------------------------------------------------
// 6. a push racing a shipment

async fn a_push_racing_a_shipment_never_deducts_twice(db: Db) {
    let w = world(
        db,
        &[
            ("York", "MUG", 6),
            ("York", "TEE", 6),
            ("Leeds", "MUG", 6),
            ("Leeds", "TEE", 6),
        ],
        1,
    )
    .await;
    // The stock feed is read far more often than fulfilments (as in production): the till's
    // lower figure arrives before the news that the order left.
    let mut runner = start_with(&w, 1_500).await;
    let (increment, entity) = checkout(
        &w,
        json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}, {"sku": "TEE", "qty": 1, "price": 15}]}),
    )
    .await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;

    // Commerce answers source-item writes slowly for a moment, so a push is in flight while
    // the rest happens.
    post(
        &w.http,
        format!("{}/__emulator/faults", w.commerce),
        json!({"method": "POST", "path": "*/V1/inventory/source-items", "kind": {"type": "latency", "ms": 600}, "times": 3}),
    )
    .await;
    // Within one window: a walk-in buys a mug at York, the store ships the web order, a
    // delivery is counted in (tees at York), and Leeds sells two tees.
    till_sells(&w, "York", "MUG", 1).await;
    runner.tick().await.unwrap();
    till_moves(
        &w,
        &square_order,
        json!({"action": "shipped", "tracking_number": "RM000000001GB"}),
    )
    .await;
    till_counts(&w, "York", "TEE", 9).await;
    till_sells(&w, "Leeds", "TEE", 2).await;
    settle(&w, &mut runner, &[]).await;

    // Each shipment deducted from a source that held the till's figure plus the units it
    // carried: right after it, Commerce shows exactly what the till shows.
    assert_eq!(
        after_shipments(&w).await,
        vec![
            ("MUG".to_owned(), "york".to_owned(), d(3)),
            ("TEE".to_owned(), "york".to_owned(), d(9))
        ]
    );
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(6 - 1 - 2));
    assert_eq!(commerce_qty(&w, "TEE", "york").await, d(9));
    assert_eq!(commerce_qty(&w, "TEE", "leeds").await, d(4));
    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(shipped[0].source, "york");
    assert_eq!(
        shipped[0].items,
        vec![("MUG".to_owned(), d(2)), ("TEE".to_owned(), d(1))]
    );
    assert_eq!(runner.engine().stats().shipments_created, 1);
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
}

// ---------------------------------------------------------------------------------------------
// 6. a crash after a shipment

/// Source-item writes Commerce accepted after the first `skip` calls: (SKU, source, quantity).
async fn writes_after(w: &World, skip: usize) -> Vec<(String, String, Decimal)> {
    let calls = calls(w).await;
    let mut out = Vec::new();
    for c in calls.iter().skip(skip) {
        let path = c["path"].as_str().unwrap_or_default();
        if c["method"] != json!("POST")
            || c["status"] != json!(200)
            || !path.ends_with("/V1/inventory/source-items")
        {
            continue;
        }
        for i in c["request_body"]["sourceItems"].as_array().unwrap() {
            out.push((
                i["sku"].as_str().unwrap().to_owned(),
                i["source_code"].as_str().unwrap().to_owned(),
                num(&i["quantity"]),
            ));
        }
    }
    out
}

async fn calls(w: &World) -> Vec<Value> {
    let v: Value = w
        .http
        .get(format!("{}/__emulator/calls", w.commerce))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["calls"].as_array().cloned().unwrap_or_default()
}

async fn a_crash_after_a_shipment_replays_it_without_pushing_the_shipped_units_back(db: Db) {
    crash_after_a_shipment(db, true).await;
}

async fn a_crash_before_any_snapshot_replays_the_shipment_without_pushing_it_back(db: Db) {
    crash_after_a_shipment(db, false).await;
}

/// A web order shipped from York, then the service dies without its closing snapshot. With
/// `snapshot`, the last one was taken before a walk-in sale and the order (so it holds an
/// older Commerce figure); without, there is none and every record is replayed.
async fn crash_after_a_shipment(db: Db, snapshot: bool) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    if snapshot {
        runner.snapshot(system_clock()()).unwrap();
    }
    // A walk-in buys a mug at York: Commerce gets 4.
    till_sells(&w, "York", "MUG", 1).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(4));

    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}]})).await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;
    till_moves(&w, &square_order, json!({"action": "shipped"})).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(shipments(&w, entity).await.len(), 1);
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(2));

    // The crash: no snapshot on the way out. The restart restores the older snapshot (or
    // none) and replays every record stored since (the sale, the order, the hand-over, the
    // answers of the push and the shipment).
    let before = calls(&w).await.len();
    drop(runner);
    let mut runner = assemble(settings(&w, 100), system_clock()).unwrap();
    settle(&w, &mut runner, &[]).await;

    // The shipment is not made again, and Commerce never gets the shipped units back: every
    // write after the restart is the till's figure.
    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    for (sku, source, q) in writes_after(&w, before).await {
        if sku == "MUG" && source == "york" {
            assert_eq!(q, d(2), "a write after the restart");
        }
    }
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(2));
    assert_eq!(salable(&w, "MUG").await, d(2 + 5 - 1));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
    assert_eq!(till_orders_for(&w, &increment).await, 1);
}

/// Commerce creates the shipment, but the service dies before its answer is stored: the outbox
/// holds it as sent, with no answer among the records. The restart restores the snapshot taken
/// before the walk-in sale and the order; a second walk-in sale makes a push due for the same
/// source item (the till's 1 plus the 2 units the engine still counts in flight is not the 4 it
/// last knew Commerce to hold). The shipment is sent again first (Commerce creates it once),
/// and no write brings the shipped units back.
async fn a_crash_before_a_shipments_answer_is_stored_sends_it_again_before_any_push(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    runner.snapshot(system_clock()()).unwrap();
    till_sells(&w, "York", "MUG", 1).await;
    settle(&w, &mut runner, &[]).await;
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(4));

    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}]})).await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;
    till_moves(&w, &square_order, json!({"action": "shipped"})).await;

    // Tick until the shipment is in the outbox, then die at once: its answer is never stored.
    let store = runner.store_handle();
    until!(runner, "the shipment sent", {
        store
            .commands(Some(RecordState::Sent), 100, 0)
            .unwrap()
            .items
            .iter()
            .any(|c| c.kind == "create_shipment")
    });
    drop(runner);
    let ship_id = store
        .commands(Some(RecordState::Sent), 100, 0)
        .unwrap()
        .items
        .iter()
        .find(|c| c.kind == "create_shipment")
        .map(|c| c.command_id)
        .unwrap();
    for _ in 0..400 {
        if !shipments(&w, entity).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(shipments(&w, entity).await.len(), 1);
    assert_eq!(
        commerce_qty(&w, "MUG", "york").await,
        d(2),
        "Magento deducted"
    );
    assert!(
        store
            .records(&RecordFilter {
                limit: 1000,
                ..RecordFilter::default()
            })
            .unwrap()
            .items
            .iter()
            .all(|r| !r
                .payload
                .to_string()
                .contains(&format!("\"command\":{ship_id},"))),
        "no answer of the shipment stored"
    );

    till_sells(&w, "York", "MUG", 1).await;
    let before = calls(&w).await.len();
    let mut runner = assemble(settings(&w, 100), system_clock()).unwrap();
    settle(&w, &mut runner, &[]).await;

    let shipped = shipments(&w, entity).await;
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    for (sku, source, q) in writes_after(&w, before).await {
        if sku == "MUG" && source == "york" {
            assert_eq!(q, d(1), "a write after the restart");
        }
    }
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(1));
    assert_eq!(salable(&w, "MUG").await, d(1 + 5 - 1));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
    assert_eq!(till_orders_for(&w, &increment).await, 1);
}

async fn a_crash_while_a_shipment_waits_for_its_retry_ships_once_and_raises_nothing(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    runner.snapshot(system_clock()()).unwrap();
    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 2, "price": 8}]})).await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;

    // Commerce creates the shipment but the answer is lost, and the client's look for it fails
    // too, so the attempt ends as one to retry (the outcome unknown).
    post(
        &w.http,
        format!("{}/__emulator/faults", w.commerce),
        json!({"rules": [
            {"method": "POST", "path": "*/ship", "kind": {"type": "lost_response", "mode": "status", "status": 502}, "times": 1},
            {"method": "GET", "path": "*/V1/shipments*", "kind": {"type": "status", "status": 503}, "times": 40}
        ]}),
    )
    .await;
    till_moves(&w, &square_order, json!({"action": "shipped"})).await;
    let store = runner.store_handle();
    until!(runner, "the shipment's attempt failed, to be retried", {
        store
            .commands(Some(RecordState::Failed), 100, 0)
            .unwrap()
            .items
            .iter()
            .any(|c| c.kind == "create_shipment")
    });
    // The service dies before the retry.
    drop(runner);
    let _ = w
        .http
        .delete(format!("{}/__emulator/faults", w.commerce))
        .send()
        .await
        .unwrap();
    assert_eq!(shipments(&w, entity).await.len(), 1, "Magento created it");

    let mut runner = assemble(settings(&w, 100), system_clock()).unwrap();
    settle(&w, &mut runner, &[]).await;
    assert_eq!(shipments(&w, entity).await.len(), 1, "shipped once");
    assert!(
        !runner
            .engine()
            .exceptions()
            .any(|e| e.reason == Reason::ShipmentFailed),
        "{:?}",
        runner.engine().exceptions().collect::<Vec<_>>()
    );
    assert_eq!(commerce_qty(&w, "MUG", "york").await, d(3));
    assert_eq!(order(&w, entity).await["state"], json!("complete"));
    assert!(violations(&w, &runner, &[]).await.is_empty());
}

async fn a_comment_whose_answer_was_lost_is_retried_and_the_customer_told_once(db: Db) {
    let w = world(db, &[("York", "MUG", 5), ("Leeds", "MUG", 5)], 1).await;
    let mut runner = start(&w).await;
    let (increment, entity) =
        checkout(&w, json!({"items": [{"sku": "MUG", "qty": 1, "price": 8}]})).await;
    invoice(&w, entity).await;
    let square_order = on_the_till(&w, &mut runner, "York", &increment).await;
    // Commerce posts the "being prepared" comment but the answer is lost, and the client's
    // look for it fails too: the attempt's outcome is unknown.
    post(
        &w.http,
        format!("{}/__emulator/faults", w.commerce),
        json!({"rules": [
            {"method": "POST", "path": "*/comments", "kind": {"type": "lost_response", "mode": "status", "status": 502}, "times": 1},
            {"method": "GET", "path": "*/comments", "kind": {"type": "status", "status": 503}, "times": 5}
        ]}),
    )
    .await;
    till_moves(&w, &square_order, json!({"action": "accepted"})).await;
    settle(&w, &mut runner, &[]).await;

    let posted = calls(&w)
        .await
        .iter()
        .filter(|c| {
            c["method"] == json!("POST")
                && c["path"].as_str().is_some_and(|p| p.ends_with("/comments"))
        })
        .count();
    assert_eq!(
        posted, 1,
        "the retry found the comment and did not post it again"
    );
    let prepared: Vec<String> = comments(&w, entity)
        .await
        .into_iter()
        .filter(|c| c.contains("being prepared"))
        .collect();
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    assert_eq!(
        runner.engine().exceptions().count(),
        0,
        "{:?}",
        runner.engine().exceptions().collect::<Vec<_>>()
    );
    assert!(
        runner.engine().stats().retries >= 1,
        "the attempt was retried"
    );
    assert!(violations(&w, &runner, &[]).await.is_empty());
}
