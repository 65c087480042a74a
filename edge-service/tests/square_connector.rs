//! The Square connector over real HTTP against the Square emulator (`tests/square-emulator`),
//! with the emulator's clock moved through its control API (no test sleeps for time to pass).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_core::pos::{
    Currency, FulfilmentKind, FulfilmentLine, FulfilmentRequest, FulfilmentRequestId,
    FulfilmentState, Money, PosLocationId, PosVariationId, Recipient, Sku, StockBook, TenderKind,
    Timestamp, TransactionKind, TransactionState,
};
use tillbridge_edge::pos::square::{
    RetryPolicy, Secret, SquareConfig, SquareConnector, WebhookConfig, WebhookIntake,
    serve_webhooks,
};
use tillbridge_edge::pos::{
    BatchPayload, ConnectorId, Feed, FileInbox, HintKind, PosBatch, PosConnector, PosCursor,
    PosError, PosInbox, RecordErrorKind, WebhookRejection, WebhookRequest, WebhookVerdict,
    poll_once,
};
use tillbridge_square_emulator::{Config, DEFAULT_TOKEN, Handle, start};

// ---------------------------------------------------------------------------------------------
// fixtures

struct Emu {
    handle: Handle,
    base: String,
    http: reqwest::Client,
}

impl Emu {
    async fn start() -> Self {
        let (handle, base) = start(Config::default()).await.unwrap();
        Self {
            handle,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/__emulator/{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "control {method} {path}: {v}");
        v
    }

    async fn advance_minutes(&self, m: i64) {
        self.ctl("POST", "clock", json!({"advance_seconds": m * 60}))
            .await;
    }

    async fn sell(&self, location: &str, sku: &str, qty: &str) -> String {
        let v = self
            .ctl(
                "POST",
                "sales",
                json!({"location_id": location, "tender": "CARD",
                       "lines": [{"sku": sku, "quantity": qty}],
                       "tax": {"name": "VAT", "percentage": "20", "inclusive": true}}),
            )
            .await;
        v["order_id"].as_str().unwrap().to_owned()
    }

    async fn set_stock(&self, variation: &str, location: &str, qty: &str) {
        self.ctl(
            "POST",
            "stock",
            json!({"variation_id": variation, "location_id": location, "quantity": qty}),
        )
        .await;
    }

    /// The emulator's IN_STOCK counts: (variation, location) → quantity.
    async fn truth(&self) -> BTreeMap<(String, String), Decimal> {
        let v = self.ctl("GET", "stock", Value::Null).await;
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "IN_STOCK")
            .map(|c| {
                (
                    (
                        c["catalog_object_id"].as_str().unwrap().to_owned(),
                        c["location_id"].as_str().unwrap().to_owned(),
                    ),
                    c["quantity"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// How many calls of one Square operation the emulator has answered, by status.
    async fn calls(&self, operation: &str) -> Vec<u16> {
        let v = self.ctl("GET", "calls", Value::Null).await;
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["operation"] == operation)
            .map(|c| u16::try_from(c["status"].as_u64().unwrap()).unwrap())
            .collect()
    }

    async fn fault(&self, rule: Value) {
        self.ctl("POST", "faults", rule).await;
    }

    /// Two active shops and a closed one; two tees, a mug and its "seconds" twin (same SKU).
    async fn seed(&self) {
        self.ctl(
            "POST",
            "seed",
            json!({
                "locations": [
                    {"id": "LEEDS0000001", "name": "Leeds"},
                    {"id": "YORK00000001", "name": "York"},
                    {"id": "CLOSED000001", "name": "Closed", "status": "INACTIVE"}
                ],
                "items": [
                    {"id": "ITEMTEE", "name": "Tee", "variations": [
                        {"id": "VARTEES", "name": "Small", "sku": "TEE-S", "price": 1200},
                        {"id": "VARTEEM", "name": "Medium", "sku": "TEE-M", "price": 1200}]},
                    {"id": "ITEMMUG", "name": "Mug", "variations": [
                        {"id": "VARMUG", "name": "Regular", "sku": "MUG", "price": 850},
                        {"id": "VARMUG2", "name": "Seconds", "sku": "MUG", "price": 500,
                         "track_inventory": false}]}
                ],
                "stock": [
                    {"variation_id": "VARTEES", "location_id": "LEEDS0000001", "quantity": "10"},
                    {"variation_id": "VARTEEM", "location_id": "LEEDS0000001", "quantity": "4"},
                    {"variation_id": "VARTEES", "location_id": "YORK00000001", "quantity": "3"},
                    {"variation_id": "VARTEEM", "location_id": "YORK00000001", "quantity": "6"},
                    {"variation_id": "VARMUG", "location_id": "YORK00000001", "quantity": "2.5"}
                ]
            }),
        )
        .await;
    }
}

fn config(base: &str) -> SquareConfig {
    let mut c = SquareConfig::new(
        ConnectorId::parse("square-test").unwrap(),
        base,
        Secret::new(DEFAULT_TOKEN),
    );
    c.counts_page_limit = 2;
    c.orders_page_limit = 2;
    c.stock_overlap = Duration::from_secs(60);
    c.sales_overlap = Duration::from_secs(60);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        jitter_seed: 1,
    };
    c
}

fn connector(base: &str) -> SquareConnector {
    SquareConnector::new(config(base)).unwrap()
}

fn levels(b: &PosBatch) -> Vec<(String, String, Decimal, Timestamp)> {
    match &b.payload {
        BatchPayload::StockChanges { levels } | BatchPayload::StockSnapshot { levels, .. } => {
            levels
                .iter()
                .map(|l| {
                    (
                        l.variation.as_str().to_owned(),
                        l.location.as_str().to_owned(),
                        l.available,
                        l.as_of,
                    )
                })
                .collect()
        }
        BatchPayload::Sales { .. } => panic!("not a stock batch"),
    }
}

fn cursor_json(c: &PosCursor) -> Value {
    if c.is_start() {
        Value::Null
    } else {
        serde_json::from_str(c.as_str()).unwrap()
    }
}

/// Reads a feed until a batch says `has_more == false`, "committing" each cursor.
async fn walk(
    conn: &SquareConnector,
    feed: Feed,
    mut cursor: PosCursor,
) -> (Vec<PosBatch>, PosCursor) {
    let mut batches = Vec::new();
    for _ in 0..100 {
        let b = conn.fetch(feed, &cursor).await.unwrap();
        cursor = b.next_cursor.clone();
        let more = b.has_more;
        batches.push(b);
        if !more {
            return (batches, cursor);
        }
    }
    panic!("walk did not end");
}

fn apply(book: &mut StockBook, batches: &[PosBatch]) {
    for b in batches {
        if let BatchPayload::StockChanges { levels } | BatchPayload::StockSnapshot { levels, .. } =
            &b.payload
        {
            for l in levels {
                book.apply(l.clone());
            }
        }
    }
}

fn book_map(book: &StockBook) -> BTreeMap<(String, String), Decimal> {
    book.iter()
        .map(|l| {
            (
                (
                    l.variation.as_str().to_owned(),
                    l.location.as_str().to_owned(),
                ),
                l.available,
            )
        })
        .collect()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// stock: newest-first paging, overlap, high-water mark

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_walk_pages_newest_first_and_moves_the_mark_only_after_the_last_page() {
    let emu = Emu::start().await;
    emu.seed().await; // 09:00
    let conn = connector(&emu.base);

    let (batches, cursor) = walk(&conn, Feed::StockChanges, PosCursor::start()).await;
    assert_eq!(batches.len(), 3, "5 counts in pages of 2");
    for b in &batches[..2] {
        assert!(b.has_more);
        assert_eq!(
            cursor_json(&b.next_cursor).get("hwm"),
            None,
            "no mark mid-walk"
        );
        assert!(cursor_json(&b.next_cursor)["walk"]["page"].is_string());
    }
    assert!(!batches[2].has_more);
    assert_eq!(
        cursor_json(&cursor),
        json!({"hwm": ts("2026-01-05T09:00:00Z").as_millis()}),
        "the mark is the newest calculated_at, set with the last page"
    );
    let mut book = StockBook::new();
    apply(&mut book, &batches);
    assert_eq!(book_map(&book), emu.truth().await);

    // 09:10 a sale at Leeds, 09:20 a recount at York.
    emu.advance_minutes(10).await;
    emu.sell("LEEDS0000001", "TEE-S", "2").await;
    emu.advance_minutes(10).await;
    emu.set_stock("VARMUG", "YORK00000001", "30").await;

    // Walk 2 starts one minute (the overlap) before 09:00: everything since is re-read.
    let (b2, cursor) = walk(&conn, Feed::StockChanges, cursor).await;
    let got: Vec<_> = b2.iter().flat_map(levels).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(
        (got[0].0.as_str(), got[0].2, got[0].3),
        ("VARMUG", Decimal::from(30), ts("2026-01-05T09:20:00Z")),
        "newest first"
    );
    assert_eq!(
        cursor_json(&cursor)["hwm"],
        json!(ts("2026-01-05T09:20:00Z").as_millis())
    );

    // Walk 3 (09:40, one more sale): only counts after 09:19 — the 09:20 recount again (the
    // overlap) and the new sale; not the 09:10 sale nor the seeds.
    emu.advance_minutes(20).await;
    emu.sell("YORK00000001", "TEE-M", "1").await;
    let (b3, cursor3) = walk(&conn, Feed::StockChanges, cursor).await;
    let got: BTreeSet<(String, String, Decimal)> = b3
        .iter()
        .flat_map(levels)
        .map(|(v, l, q, _)| (v, l, q))
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([
            ("VARMUG".into(), "YORK00000001".into(), Decimal::from(30)),
            ("VARTEEM".into(), "YORK00000001".into(), Decimal::from(5)),
        ])
    );
    apply(&mut book, &b2);
    apply(&mut book, &b3);
    assert_eq!(book_map(&book), emu.truth().await);

    // Nothing new: the walk re-reads only the overlap and keeps the mark.
    let (b4, cursor4) = walk(&conn, Feed::StockChanges, cursor3.clone()).await;
    assert_eq!(b4.iter().flat_map(levels).count(), 1);
    assert_eq!(cursor_json(&cursor4)["hwm"], cursor_json(&cursor3)["hwm"]);
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connector_resumes_the_walk_from_the_committed_cursor() {
    let emu = Emu::start().await;
    emu.seed().await;
    let dir = std::env::temp_dir().join(format!("tillbridge-square-inbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let inbox = FileInbox::open(&dir).unwrap();

    // First process: stores and commits one page, then "crashes".
    {
        let conn = connector(&emu.base);
        let r = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
        assert_eq!((r.records, r.has_more), (2, true));
    }
    let committed = inbox
        .load_cursor(
            &ConnectorId::parse("square-test").unwrap(),
            Feed::StockChanges,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(cursor_json(&committed)["walk"]["page"].is_string());

    // Second process, same inbox: picks up at page 2, finishes the walk, sets the mark.
    let conn = connector(&emu.base);
    let mut reports = Vec::new();
    loop {
        let r = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
        let more = r.has_more;
        reports.push(r);
        if !more {
            break;
        }
    }
    assert_eq!(
        reports.iter().map(|r| r.records).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let mut book = StockBook::new();
    let stored: Vec<PosBatch> = inbox
        .batches()
        .unwrap()
        .into_iter()
        .map(|s| s.batch)
        .collect();
    assert_eq!(stored.len(), 3);
    apply(&mut book, &stored);
    assert_eq!(
        book_map(&book),
        emu.truth().await,
        "nothing lost across the restart"
    );
    let done = inbox
        .load_cursor(
            &ConnectorId::parse("square-test").unwrap(),
            Feed::StockChanges,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cursor_json(&done),
        json!({"hwm": ts("2026-01-05T09:00:00Z").as_millis()})
    );
    let _ = std::fs::remove_dir_all(&dir);
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_move_mid_walk_or_come_out_of_order_are_not_lost() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);

    // A sale lands after page 1 was read: it jumps to the front of Square's newest-first
    // order, shifting the later pages.
    let b1 = conn.stock_changes(&PosCursor::start()).await.unwrap();
    emu.advance_minutes(5).await;
    emu.sell("YORK00000001", "TEE-S", "1").await;
    let (rest, cursor) = walk(&conn, Feed::StockChanges, b1.next_cursor.clone()).await;
    let mut book = StockBook::new();
    apply(&mut book, std::slice::from_ref(&b1));
    apply(&mut book, &rest);
    // The next walk starts before the mark, so it sees the moved count.
    let (again, _) = walk(&conn, Feed::StockChanges, cursor).await;
    apply(&mut book, &again);
    assert_eq!(book_map(&book), emu.truth().await);

    // Pages served oldest first (a fault): the mark is still the newest time of the walk.
    emu.fault(json!({"path": "/v2/inventory/counts", "kind": {"type": "out_of_order_pages"}}))
        .await;
    let (ooo, cursor) = walk(&conn, Feed::StockChanges, PosCursor::start()).await;
    let first = levels(&ooo[0]);
    assert_eq!(
        first[0].3,
        ts("2026-01-05T09:00:00Z"),
        "oldest served first"
    );
    assert_eq!(
        cursor_json(&cursor)["hwm"],
        json!(ts("2026-01-05T09:05:00Z").as_millis())
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_page_token_restarts_the_walk_instead_of_failing() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let b1 = conn.stock_changes(&PosCursor::start()).await.unwrap();
    let mut state = cursor_json(&b1.next_cursor);
    state["walk"]["page"] = json!("0.0.0000000000000000");
    let stale = PosCursor::from_opaque(state.to_string());
    let b = conn.stock_changes(&stale).await.unwrap();
    assert_eq!(levels(&b), levels(&b1), "the walk starts again at page 1");
    assert_eq!(
        emu.calls("BatchRetrieveInventoryCounts").await,
        vec![200, 400, 200]
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_covers_active_locations_and_ends_with_a_fresh_cursor() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let (batches, cursor) = walk(&conn, Feed::StockSnapshot, PosCursor::start()).await;
    assert!(cursor.is_start());
    let BatchPayload::StockSnapshot {
        locations, as_of, ..
    } = &batches[0].payload
    else {
        panic!("not a snapshot");
    };
    assert_eq!(
        locations
            .iter()
            .map(PosLocationId::as_str)
            .collect::<Vec<_>>(),
        vec!["LEEDS0000001", "YORK00000001"],
        "inactive locations are not covered"
    );
    assert_eq!(*as_of, ts("2026-01-05T09:00:00Z"));
    let mut book = StockBook::new();
    apply(&mut book, &batches);
    assert_eq!(book_map(&book), emu.truth().await);
    let v = book
        .get(
            &PosLocationId::parse("YORK00000001").unwrap(),
            &PosVariationId::parse("VARMUG").unwrap(),
        )
        .unwrap();
    assert_eq!(
        v.available,
        Decimal::new(25, 1),
        "fractional stock kept exactly"
    );
    emu.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// sales

fn transactions(batches: &[PosBatch]) -> Vec<tillbridge_core::pos::PosTransaction> {
    batches
        .iter()
        .flat_map(|b| match &b.payload {
            BatchPayload::Sales { transactions } => transactions.clone(),
            _ => panic!("not a sales batch"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sales_replayed_72_hours_late_arrive_with_their_original_time() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let leeds = emu.sell("LEEDS0000001", "TEE-S", "2").await; // 09:00
    emu.ctl("POST", "tills/YORK00000001/offline", json!({}))
        .await;
    emu.advance_minutes(5).await;
    let york = emu.sell("YORK00000001", "TEE-M", "1").await; // 09:05, held by the till

    let (b1, cursor) = walk(&conn, Feed::Sales, PosCursor::start()).await;
    let t1 = transactions(&b1);
    assert_eq!(
        t1.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![leeds.as_str()]
    );
    let sale = &t1[0];
    assert_eq!(sale.kind, TransactionKind::Sale);
    assert_eq!(sale.state, TransactionState::Completed);
    assert_eq!(sale.currency, Currency::GBP);
    assert_eq!(sale.occurred_at, ts("2026-01-05T09:00:00Z"));
    let line = &sale.lines[0];
    assert_eq!(line.variation.as_ref().unwrap().as_str(), "VARTEES");
    assert_eq!(line.quantity, Decimal::from(2));
    assert_eq!(line.unit_price, Money::new(1200, Currency::GBP));
    assert_eq!(line.total, Money::new(2400, Currency::GBP));
    assert_eq!(line.taxes.len(), 1);
    assert!(line.taxes[0].inclusive);
    assert_eq!(line.taxes[0].rate, Decimal::from(20));
    assert_eq!(line.taxes[0].amount, Money::new(400, Currency::GBP));
    assert_eq!(sale.tenders[0].kind, TenderKind::Card);
    assert_eq!(sale.tenders[0].amount, Money::new(2400, Currency::GBP));
    assert!(sale.problems().is_empty());

    // Three days (71 h) later the York till reconnects and uploads its sale.
    emu.advance_minutes(71 * 60).await;
    emu.ctl("POST", "tills/YORK00000001/online", json!({}))
        .await;
    let (b2, cursor2) = walk(&conn, Feed::Sales, cursor).await;
    let t2 = transactions(&b2);
    assert_eq!(
        t2.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![leeds.as_str(), york.as_str()],
        "the late sale, after the newest sale already read (re-read by the overlap, harmless)"
    );
    assert_eq!(t2[0], t1[0], "a re-read is the same record");
    assert_eq!(t2[1].occurred_at, ts("2026-01-05T09:05:00Z"));
    assert_eq!(t2[1].updated_at, ts("2026-01-08T08:05:00Z"));
    assert_eq!(
        cursor_json(&cursor2)["hwm"],
        json!(ts("2026-01-08T08:05:00Z").as_millis())
    );

    // Its stock movement carries the till's time too (the change log, for audit).
    let (moves, errors) = conn
        .inventory_history(Some(ts("2026-01-08T00:00:00Z")), None)
        .await
        .unwrap();
    assert!(errors.is_empty());
    assert_eq!(moves.len(), 1);
    assert_eq!(
        (
            moves[0].variation.as_str(),
            moves[0].to_state.as_str(),
            moves[0].occurred_at,
            moves[0].created_at
        ),
        (
            "VARTEEM",
            "SOLD",
            ts("2026-01-05T09:05:00Z"),
            ts("2026-01-08T08:05:00Z")
        )
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_are_their_own_transactions_linked_to_the_sale() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let sale = emu.sell("LEEDS0000001", "TEE-S", "2").await;
    emu.advance_minutes(30).await;
    let ret = emu
        .ctl(
            "POST",
            "returns",
            json!({"location_id": "LEEDS0000001", "source_order_id": sale,
                   "lines": [{"sku": "TEE-S", "quantity": "1"}]}),
        )
        .await;
    let (b, _) = walk(&conn, Feed::Sales, PosCursor::start()).await;
    let t = transactions(&b);
    let r = t
        .iter()
        .find(|t| t.id.as_str() == ret["order_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(r.kind, TransactionKind::Return);
    assert_eq!(r.original.as_ref().unwrap().as_str(), sale);
    assert_eq!(r.lines[0].quantity, Decimal::ONE);
    assert_eq!(r.lines[0].total, Money::new(1200, Currency::GBP));
    assert_eq!(
        emu.truth().await[&("VARTEES".into(), "LEEDS0000001".into())],
        Decimal::from(9)
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_ten_locations_are_searched_in_groups_of_ten() {
    let emu = Emu::start().await;
    let locations: Vec<Value> = (1..=12)
        .map(|i| json!({"id": format!("SHOP{i:08}"), "name": format!("Shop {i:02}")}))
        .collect();
    emu.ctl(
        "POST",
        "seed",
        json!({"locations": locations, "items": [{"id": "I", "name": "Tee",
               "variations": [{"id": "V", "sku": "T", "price": 100}]}],
               "stock": (1..=12).map(|i| json!({"variation_id": "V",
                   "location_id": format!("SHOP{i:08}"), "quantity": "5"})).collect::<Vec<_>>()}),
    )
    .await;
    for i in [1, 11, 12] {
        emu.sell(&format!("SHOP{i:08}"), "T", "1").await;
    }
    let conn = connector(&emu.base);
    let (b, _) = walk(&conn, Feed::Sales, PosCursor::start()).await;
    let locs: BTreeSet<String> = transactions(&b)
        .iter()
        .map(|t| t.location.as_str().to_owned())
        .collect();
    assert_eq!(
        locs,
        BTreeSet::from([
            "SHOP00000001".into(),
            "SHOP00000011".into(),
            "SHOP00000012".into()
        ])
    );
    assert!(
        emu.calls("SearchOrders").await.iter().all(|s| *s == 200),
        "no request named more than 10 locations"
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_become_record_errors_and_every_other_record_is_kept() {
    let emu = Emu::start().await;
    emu.seed().await;
    emu.sell("LEEDS0000001", "TEE-S", "1").await;
    emu.ctl(
        "POST",
        "inject/count",
        json!({"record": {"catalog_object_id": "VARBAD", "catalog_object_type": "ITEM_VARIATION",
            "state": "IN_STOCK", "location_id": "LEEDS0000001", "quantity": "lots",
            "calculated_at": "2026-01-05T08:30:00Z"}}),
    )
    .await;
    emu.ctl(
        "POST",
        "inject/count",
        json!({"record": {"state": "IN_STOCK", "location_id": "YORK00000001", "quantity": "1",
            "calculated_at": "2026-01-05T08:31:00Z"}}),
    )
    .await;
    emu.ctl(
        "POST",
        "inject/order",
        json!({"location_id": "LEEDS0000001", "record": {"id": "BADQTY", "location_id": "LEEDS0000001",
            "state": "COMPLETED", "created_at": "2026-01-05T08:40:00Z", "updated_at": "2026-01-05T08:40:00Z",
            "total_money": {"amount": 100, "currency": "GBP"},
            "line_items": [{"uid": "l1", "quantity": "two", "total_money": {"amount": 100, "currency": "GBP"}}]}}),
    )
    .await;
    emu.ctl(
        "POST",
        "inject/order",
        json!({"location_id": "YORK00000001", "record": {"id": "BADCUR", "location_id": "YORK00000001",
            "state": "COMPLETED", "created_at": "2026-01-05T08:41:00Z", "updated_at": "2026-01-05T08:41:00Z",
            "total_money": {"amount": 100, "currency": "pounds"},
            "line_items": [{"uid": "l1", "quantity": "1", "total_money": {"amount": 100, "currency": "GBP"}}]}}),
    )
    .await;
    let conn = connector(&emu.base);

    let (stock, _) = walk(&conn, Feed::StockChanges, PosCursor::start()).await;
    assert_eq!(
        stock.iter().flat_map(levels).count(),
        5,
        "every good count kept"
    );
    let errors: Vec<_> = stock.iter().flat_map(|b| b.record_errors.clone()).collect();
    let mut got: Vec<(RecordErrorKind, String, String)> = errors
        .iter()
        .map(|e| {
            (
                e.kind,
                e.record.as_deref().unwrap_or("").to_owned(),
                e.field.as_deref().unwrap_or("").to_owned(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let fields: Vec<&str> = got.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].0, got[0].1.as_str()),
        (RecordErrorKind::MissingField, "?@YORK00000001")
    );
    assert_eq!(
        (got[1].0, got[1].1.as_str()),
        (RecordErrorKind::BadNumber, "VARBAD@LEEDS0000001")
    );
    assert!(fields[0].ends_with(".catalog_object_id") && fields[1].ends_with(".quantity"));
    assert!(errors.iter().any(|e| e.value.as_deref() == Some("lots")));

    let (sales, _) = walk(&conn, Feed::Sales, PosCursor::start()).await;
    assert_eq!(transactions(&sales).len(), 1, "the good sale kept");
    let mut errs: Vec<(String, RecordErrorKind, String)> = sales
        .iter()
        .flat_map(|b| b.record_errors.clone())
        .map(|e| {
            (
                e.record.as_deref().unwrap_or("").to_owned(),
                e.kind,
                e.field.as_deref().unwrap_or("").to_owned(),
            )
        })
        .collect();
    errs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        errs,
        vec![
            (
                "BADCUR".into(),
                RecordErrorKind::BadCurrency,
                "orders[1].total_money.currency".into()
            ),
            (
                "BADQTY".into(),
                RecordErrorKind::BadNumber,
                "orders[0].line_items[0].quantity".into()
            ),
        ]
    );
    emu.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// errors and retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_outages_are_retried_with_backoff_then_reported() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);

    emu.fault(json!({"path": "/v2/locations",
        "kind": {"type": "status", "status": 429, "retry_after": 30}, "times": 2}))
        .await;
    let locs = conn.locations().await.unwrap();
    assert_eq!(locs.len(), 3);
    assert_eq!(emu.calls("ListLocations").await, vec![429, 429, 200]);

    emu.fault(json!({"path": "/v2/locations",
        "kind": {"type": "status", "status": 429, "retry_after": 7}}))
        .await;
    let err = conn.locations().await.unwrap_err();
    assert_eq!(
        err,
        PosError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.is_retriable());
    assert_eq!(
        emu.calls("ListLocations").await.len(),
        6,
        "three attempts, then the error"
    );
    emu.ctl("DELETE", "faults", Value::Null).await;

    emu.fault(json!({"path": "/v2/orders/search",
        "kind": {"type": "status", "status": 503}, "times": 3}))
        .await;
    let err = conn.sales(&PosCursor::start()).await.unwrap_err();
    assert!(matches!(err, PosError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("SERVICE_UNAVAILABLE"), "{err}");
    let b = conn.sales(&PosCursor::start()).await.unwrap();
    assert!(b.record_errors.is_empty());
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retriable_and_named() {
    let emu = Emu::start().await;
    emu.seed().await;
    let mut cfg = config(&emu.base);
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry.max_attempts = 2;
    let conn = SquareConnector::new(cfg).unwrap();
    emu.fault(
        json!({"path": "/v2/locations", "kind": {"type": "timeout", "ms": 2000}, "times": 1}),
    )
    .await;
    let locs = conn.locations().await.unwrap();
    assert_eq!(locs.len(), 3, "the second attempt succeeds");
    emu.fault(
        json!({"path": "/v2/locations", "kind": {"type": "timeout", "ms": 2000}, "times": 2}),
    )
    .await;
    let err = conn.locations().await.unwrap_err();
    assert!(matches!(err, PosError::Timeout { .. }), "{err:?}");
    assert!(err.is_retriable());
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_permanent_and_not_retried() {
    let emu = Emu::start().await;
    emu.seed().await;
    let mut cfg = config(&emu.base);
    cfg.access_token = Secret::new("EAAA-revoked");
    let conn = SquareConnector::new(cfg).unwrap();
    let err = conn.stock_changes(&PosCursor::start()).await.unwrap_err();
    assert_eq!(
        err,
        PosError::Auth {
            message:
                "GET /v2/locations: HTTP 401 UNAUTHORIZED: This request could not be authorized."
                    .into()
        }
    );
    assert!(!err.is_retriable());
    assert_eq!(emu.calls("ListLocations").await, vec![401]);
    assert!(
        !format!("{:?}", conn.config()).contains("revoked"),
        "the token never prints"
    );
    emu.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// catalog

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_variations_and_duplicate_skus_are_reported_as_square_has_them() {
    let emu = Emu::start().await;
    emu.seed().await;
    emu.ctl("POST", "config", json!({"catalog_page_size": 3}))
        .await;
    let conn = connector(&emu.base);
    let r = conn.catalog_variations().await;
    if r.is_err() {
        let calls = emu.ctl("GET", "calls", Value::Null).await;
        eprintln!("emulator at {} answered: {calls}", emu.base);
    }
    let (vars, errors) = r.unwrap();
    assert!(errors.is_empty());
    let got: Vec<(String, Option<String>, bool)> = vars
        .iter()
        .map(|v| {
            (
                v.id.as_str().to_owned(),
                v.sku.as_ref().map(|s| s.as_str().to_owned()),
                v.tracked,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("VARMUG".into(), Some("MUG".into()), true),
            ("VARMUG2".into(), Some("MUG".into()), false),
            ("VARTEEM".into(), Some("TEE-M".into()), true),
            ("VARTEES".into(), Some("TEE-S".into()), true),
        ]
    );
    let mugs = conn.variations_by_sku("mug").await.unwrap();
    assert_eq!(
        mugs.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        vec!["VARMUG", "VARMUG2"],
        "Square does not make SKUs unique; the mapping must refuse to guess"
    );
    emu.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// fulfilment

static REQ: AtomicU32 = AtomicU32::new(0);

fn request(kind: FulfilmentKind, location: &str) -> FulfilmentRequest {
    let n = REQ.fetch_add(1, Ordering::SeqCst);
    let gbp = |m| Money::new(m, Currency::GBP);
    FulfilmentRequest {
        id: FulfilmentRequestId::parse(&format!("req-1000000{n}-r1")).unwrap(),
        order_reference: format!("1000000{n}"),
        location: PosLocationId::parse(location).unwrap(),
        kind,
        recipient: Recipient {
            display_name: "Ada Lovelace".into(),
            email: Some("ada@example.com".into()),
            phone: None,
        },
        lines: vec![
            FulfilmentLine {
                variation: PosVariationId::parse("VARTEES").unwrap(),
                sku: Sku::parse("TEE-S").unwrap(),
                name: "Tee Small".into(),
                quantity: Decimal::from(2),
                unit_price: gbp(1200),
            },
            FulfilmentLine {
                variation: PosVariationId::parse("VARTEEM").unwrap(),
                sku: Sku::parse("TEE-M").unwrap(),
                name: "Tee Medium".into(),
                quantity: Decimal::ONE,
                unit_price: gbp(1150),
            },
        ],
        currency: Currency::GBP,
        pickup_at: None,
        note: Some("Web order".into()),
        requested_at: ts("2026-01-05T08:55:00Z"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pickup_request_reaches_the_till_once_and_its_states_flow_back() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let req = request(FulfilmentKind::Pickup, "LEEDS0000001");

    let receipt = conn.create_fulfilment(&req).await.unwrap();
    assert_eq!(receipt.state, FulfilmentState::Requested);
    assert_eq!(receipt.version, 2, "created, then paid");
    let order_id = receipt.reference.external_order_id.clone();
    let till = emu
        .ctl("GET", "tills/LEEDS0000001/orders", Value::Null)
        .await;
    let on_till: Vec<&str> = till["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        on_till,
        vec![order_id.as_str()],
        "paid, so the till shows it"
    );
    let order = &till["orders"][0];
    assert_eq!(order["reference_id"], json!(req.order_reference));
    assert_eq!(
        order["total_money"],
        json!({"amount": 3550, "currency": "GBP"})
    );
    assert_eq!(order["tenders"][0]["type"], "OTHER");

    // A retry (lost answer) returns the same order: no second order, no second payment.
    let again = conn.create_fulfilment(&req).await.unwrap();
    assert_eq!(again.reference, receipt.reference);
    assert_eq!(emu.calls("CreateOrder").await, vec![200, 200]);
    let till = emu
        .ctl("GET", "tills/LEEDS0000001/orders", Value::Null)
        .await;
    assert_eq!(till["orders"].as_array().unwrap().len(), 1);

    // The store accepts, picks and hands over; each step is read back.
    let mut seen = Vec::new();
    for action in ["accepted", "picked", "picked_up"] {
        emu.ctl(
            "POST",
            &format!("orders/{order_id}/fulfillment"),
            json!({"action": action}),
        )
        .await;
        let s = conn.fulfilment_status(&receipt.reference).await.unwrap();
        seen.push((s.state, s.version));
    }
    assert_eq!(
        seen,
        vec![
            (FulfilmentState::Accepted, 3),
            (FulfilmentState::Ready, 4),
            (FulfilmentState::Completed, 5)
        ]
    );
    // Collected: the store's stock moved by the order's lines.
    let truth = emu.truth().await;
    assert_eq!(
        truth[&("VARTEES".into(), "LEEDS0000001".into())],
        Decimal::from(8)
    );
    assert_eq!(
        truth[&("VARTEEM".into(), "LEEDS0000001".into())],
        Decimal::from(3)
    );
    // Our own orders are not POS sales.
    let (b, _) = walk(&conn, Feed::Sales, PosCursor::start()).await;
    assert!(transactions(&b).is_empty());
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_reports_tracking_and_a_cancellation_its_reason() {
    let emu = Emu::start().await;
    emu.seed().await;
    let conn = connector(&emu.base);
    let ship = conn
        .create_fulfilment(&request(FulfilmentKind::Shipment, "YORK00000001"))
        .await
        .unwrap();
    let id = &ship.reference.external_order_id;
    emu.ctl(
        "POST",
        &format!("orders/{id}/fulfillment"),
        json!({"action": "accepted"}),
    )
    .await;
    emu.ctl(
        "POST",
        &format!("orders/{id}/fulfillment"),
        json!({"action": "shipped", "tracking_number": "JD0001", "carrier": "Royal Mail"}),
    )
    .await;
    let s = conn.fulfilment_status(&ship.reference).await.unwrap();
    assert_eq!(
        (s.state, s.tracking_number.as_deref()),
        (FulfilmentState::Completed, Some("JD0001"))
    );

    let pick = conn
        .create_fulfilment(&request(FulfilmentKind::Pickup, "YORK00000001"))
        .await
        .unwrap();
    let id = &pick.reference.external_order_id;
    emu.ctl(
        "POST",
        &format!("orders/{id}/fulfillment"),
        json!({"action": "cancelled", "cancel_reason": "Damaged in store"}),
    )
    .await;
    let s = conn.fulfilment_status(&pick.reference).await.unwrap();
    assert_eq!(
        (s.state, s.reason.as_deref()),
        (FulfilmentState::Cancelled, Some("Damaged in store"))
    );

    // A fully discounted order (total 0) is paid with no payment and still reaches the till.
    let mut free = request(FulfilmentKind::Pickup, "YORK00000001");
    for l in &mut free.lines {
        l.unit_price = Money::new(0, Currency::GBP);
    }
    let r = conn.create_fulfilment(&free).await.unwrap();
    assert_eq!((r.state, r.version), (FulfilmentState::Requested, 2));
    let till = emu
        .ctl("GET", "tills/YORK00000001/orders", Value::Null)
        .await;
    assert!(
        till["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == json!(r.reference.external_order_id))
    );
    assert_eq!(emu.calls("PayOrder").await, vec![200]);

    let mut long = request(FulfilmentKind::Pickup, "YORK00000001");
    long.order_reference = "X".repeat(41);
    let err = conn.create_fulfilment(&long).await.unwrap_err();
    assert!(matches!(err, PosError::InvalidRequest { .. }), "{err:?}");
    emu.handle.stop().await;
}

// ---------------------------------------------------------------------------------------------
// webhooks

const KEY: &str = "whsec-tillbridge-test";

async fn webhook_setup(
    emu: &Emu,
) -> (
    Arc<SquareConnector>,
    Arc<WebhookIntake>,
    actix_web::dev::ServerHandle,
) {
    // Bind first to learn the URL the subscription registers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/square/webhooks");
    let mut cfg = config(&emu.base);
    cfg.webhook = Some(WebhookConfig {
        notification_url: url.clone(),
        signature_key: Secret::new(KEY),
    });
    let conn = Arc::new(SquareConnector::new(cfg).unwrap());
    let intake = Arc::new(WebhookIntake::new(conn.clone()));
    let (server, _) = serve_webhooks(intake.clone(), listener, "/square/webhooks")
        .await
        .unwrap();
    emu.ctl(
        "POST",
        "webhooks/subscription",
        json!({"url": url, "signature_key": KEY}),
    )
    .await;
    (conn, intake, server)
}

async fn events_len(emu: &Emu) -> usize {
    emu.ctl("GET", "webhooks", Value::Null).await["events"]
        .as_array()
        .unwrap()
        .len()
}

/// Waits (bounded) until the emulator has delivered `n` webhooks; returns their statuses.
async fn delivered(emu: &Emu, n: usize) -> Vec<Option<u64>> {
    for _ in 0..500 {
        let v = emu.ctl("GET", "webhooks", Value::Null).await;
        let d = v["deliveries"].as_array().unwrap();
        if d.len() >= n {
            return d.iter().map(|x| x["status"].as_u64()).collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("webhooks were not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_only_trigger_an_early_poll_and_duplicates_are_dropped() {
    let emu = Emu::start().await;
    emu.seed().await;
    let (conn, intake, server) = webhook_setup(&emu).await;
    let (b, stock_cursor) = walk(&conn, Feed::StockChanges, PosCursor::start()).await;
    let mut book = StockBook::new();
    apply(&mut book, &b);

    // Every event is delivered twice (Square retries; the same event_id).
    emu.ctl("POST", "webhooks/faults", json!({"duplicate": 2}))
        .await;
    emu.advance_minutes(3).await;
    emu.sell("LEEDS0000001", "TEE-M", "1").await; // inventory.count.updated + order.updated
    let statuses = delivered(&emu, 4).await;
    assert_eq!(
        statuses,
        vec![Some(200); 4],
        "answered at once, duplicates too"
    );

    let early = tokio::time::timeout(Duration::from_secs(30), intake.next_early_poll())
        .await
        .expect("a verified webhook wakes the poller");
    assert_eq!(
        early.feeds,
        BTreeSet::from([Feed::StockChanges, Feed::Sales])
    );
    assert!(
        intake.take_pending().is_empty(),
        "the duplicates asked for nothing more"
    );
    // The hint did not change our stock: only the poll it triggers does.
    let key = (
        PosLocationId::parse("LEEDS0000001").unwrap(),
        PosVariationId::parse("VARTEEM").unwrap(),
    );
    assert_eq!(
        book.get(&key.0, &key.1).unwrap().available,
        Decimal::from(4)
    );
    let (b, _) = walk(&conn, Feed::StockChanges, stock_cursor).await;
    apply(&mut book, &b);
    assert_eq!(
        book.get(&key.0, &key.1).unwrap().available,
        Decimal::from(3)
    );

    // The same events again, in reverse order: all recognised, nothing pending.
    let hooks = emu.ctl("GET", "webhooks", Value::Null).await;
    let events = hooks["events"].as_array().unwrap();
    let recent: Vec<&Value> = events.iter().rev().take(2).collect();
    for e in &recent {
        let headers = vec![(
            "x-square-hmacsha256-signature".to_owned(),
            e["signature"].as_str().unwrap().to_owned(),
        )];
        let req = WebhookRequest {
            url: e["notification_url"].as_str().unwrap(),
            headers: &headers,
            body: e["body"].as_str().unwrap().as_bytes(),
        };
        let out = intake.receive(&req);
        assert_eq!(out.status, 200);
        assert!(out.new_hints.is_empty() && out.duplicates >= 1, "{out:?}");
    }
    assert!(intake.take_pending().is_empty());
    server.stop(true).await;
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_fulfilment_webhooks_are_hints_and_the_status_read_is_the_latest() {
    let emu = Emu::start().await;
    emu.seed().await;
    let (conn, intake, server) = webhook_setup(&emu).await;
    let unsent = events_len(&emu).await; // the seed's events, before the subscription
    let receipt = conn
        .create_fulfilment(&request(FulfilmentKind::Pickup, "LEEDS0000001"))
        .await
        .unwrap();
    let order_id = receipt.reference.external_order_id.clone();
    let before = events_len(&emu).await - unsent;
    assert_eq!(
        before, 3,
        "order.created, order.updated (paid), payment.created"
    );
    delivered(&emu, before).await;
    intake.take_pending();

    // Hold the store's updates, then deliver them newest first.
    emu.ctl("POST", "webhooks/faults", json!({"reorder": true}))
        .await;
    for action in ["accepted", "picked"] {
        emu.ctl(
            "POST",
            &format!("orders/{order_id}/fulfillment"),
            json!({"action": action}),
        )
        .await;
    }
    let released = emu.ctl("POST", "webhooks/flush", json!({})).await;
    assert_eq!(released["released"], json!(4));
    delivered(&emu, before + 4).await;
    let early = intake.take_pending();
    assert_eq!(early.orders, BTreeSet::from([order_id.clone()]));
    let s = conn.fulfilment_status(&receipt.reference).await.unwrap();
    assert_eq!((s.state, s.version), (FulfilmentState::Ready, 4));

    // What a verified fulfilment event says, as a hint (the newest state, no data applied).
    let hooks = emu.ctl("GET", "webhooks", Value::Null).await;
    let last_fulfilment = hooks["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["type"] == "order.fulfillment.updated")
        .unwrap();
    let headers = vec![(
        "X-Square-HmacSha256-Signature".to_owned(),
        last_fulfilment["signature"].as_str().unwrap().to_owned(),
    )];
    let verdict = conn
        .verify_webhook(&WebhookRequest {
            url: last_fulfilment["notification_url"].as_str().unwrap(),
            headers: &headers,
            body: last_fulfilment["body"].as_str().unwrap().as_bytes(),
        })
        .unwrap();
    let WebhookVerdict::Verified { hints } = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(
        hints[0].kind,
        HintKind::FulfilmentChanged {
            external_order_id: order_id,
            new_state: Some(FulfilmentState::Ready)
        }
    );
    server.stop(true).await;
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_rejected_over_http_and_nothing_is_polled() {
    let emu = Emu::start().await;
    emu.seed().await;
    let (conn, intake, server) = webhook_setup(&emu).await;
    // The emulator now signs with another key (a rotated or foreign subscription).
    let url = conn
        .config()
        .webhook
        .as_ref()
        .unwrap()
        .notification_url
        .clone();
    emu.ctl(
        "POST",
        "webhooks/subscription",
        json!({"url": url, "signature_key": "someone-elses-key"}),
    )
    .await;
    emu.sell("LEEDS0000001", "TEE-S", "1").await;
    let statuses = delivered(&emu, 2).await;
    assert_eq!(statuses, vec![Some(401), Some(401)]);
    assert!(intake.take_pending().is_empty());

    // Signed for another URL, unsigned, tampered body, not JSON.
    let body = br#"{"merchant_id":"M","type":"inventory.count.updated","event_id":"e1","data":{}}"#;
    let sign = |u: &str, b: &[u8]| {
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        m.update(u.as_bytes());
        m.update(b);
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    };
    let check = |sig: Option<String>, b: &[u8]| {
        let headers: Vec<(String, String)> = sig
            .map(|s| vec![("x-square-hmacsha256-signature".to_owned(), s)])
            .unwrap_or_default();
        conn.verify_webhook(&WebhookRequest {
            url: &url,
            headers: &headers,
            body: b,
        })
        .unwrap()
    };
    let rejected = |r| WebhookVerdict::Rejected { rejection: r };
    assert_eq!(
        check(Some(sign("https://elsewhere.example/hook", body)), body),
        rejected(WebhookRejection::BadSignature)
    );
    assert_eq!(
        check(None, body),
        rejected(WebhookRejection::MissingSignature)
    );
    let tampered = String::from_utf8_lossy(body).replace("e1", "e2");
    assert_eq!(
        check(Some(sign(&url, body)), tampered.as_bytes()),
        rejected(WebhookRejection::BadSignature)
    );
    assert!(matches!(
        check(Some(sign(&url, b"not json")), b"not json"),
        WebhookVerdict::Rejected {
            rejection: WebhookRejection::Malformed { .. }
        }
    ));
    assert!(matches!(
        check(Some(sign(&url, body)), body),
        WebhookVerdict::Verified { .. }
    ));
    server.stop(true).await;
    emu.handle.stop().await;
}
