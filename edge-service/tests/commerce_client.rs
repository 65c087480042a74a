//! The Commerce client against the Commerce emulator, over real HTTP on loopback: every call
//! group, Magento's errors, retries, 401 and token renewal, 429, timeouts, lost answers on
//! writes (recovered without applying twice), the shared budget, OAuth signing and the call
//! records. No test asserts a timing: waits are a few milliseconds, and the budget is checked
//! by counting requests in the emulator's call log.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_commerce_emulator::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USERNAME, DEFAULT_TOKEN, EmulatorConfig, Handle, start,
};
use tillbridge_core::inventory::{Sku, SourceCode, StockId};
use tillbridge_edge::commerce::auth::{SignatureMethod, sign, signature_base_string};
use tillbridge_edge::commerce::types::{
    Created, DocumentLine, InvoiceRequest, NewReservation, OperationStatus, OrderComment, OrderId,
    OrderProgress, RefundRequest, ReservationMetadata, ShipRequest, SkuQty, Source, SourceItem,
    SourceItemKey, SourceItemStatus, Stock, StockSourceLink,
};
use tillbridge_edge::commerce::{
    Budget, BudgetConfig, CallOutcome, CallRecord, ClientConfig, CommerceClient, Condition,
    Credentials, Direction, ErrorKind, Filter, IdempotencyKey, MemoryLog, OrderCursor, RetryPolicy,
    SearchCriteria, Secret,
};

// ----- helpers ---------------------------------------------------------------------------------

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn src(s: &str) -> SourceCode {
    SourceCode::parse(s).unwrap()
}

fn stock(n: i64) -> StockId {
    StockId::parse(n).unwrap()
}

fn item(s: &str, source: &str, qty: &str) -> SourceItem {
    SourceItem {
        sku: sku(s),
        source_code: src(source),
        quantity: d(qty),
        status: SourceItemStatus::InStock,
    }
}

/// A client that retries three times with waits of a few milliseconds and an unlimited
/// budget.
fn fast_config(base: &str, credentials: Credentials) -> ClientConfig {
    let mut c = ClientConfig::new(base, credentials);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_millis(10),
        seed: 7,
    };
    c.request_timeout = Duration::from_secs(10);
    c
}

fn unlimited() -> Budget {
    Budget::new(BudgetConfig::fixed(100_000.0, 100_000.0))
}

struct Env {
    handle: Handle,
    base: String,
    log: MemoryLog,
    client: CommerceClient,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(EmulatorConfig::default(), |_| {}).await
    }

    async fn start_with(config: EmulatorConfig, tune: impl FnOnce(&mut ClientConfig)) -> Self {
        let (handle, base) = start(config).await.unwrap();
        let mut cfg = fast_config(&base, Credentials::Bearer(Secret::new(DEFAULT_TOKEN)));
        tune(&mut cfg);
        let log = MemoryLog::new(1000);
        let client =
            CommerceClient::with_observer(cfg, unlimited(), Arc::new(log.clone())).unwrap();
        let env = Self {
            handle,
            base,
            log,
            client,
        };
        env.seed();
        env
    }

    /// Another client on the same emulator.
    fn client(&self, credentials: Credentials, budget: Budget) -> CommerceClient {
        CommerceClient::with_observer(
            fast_config(&self.base, credentials),
            budget,
            Arc::new(self.log.clone()),
        )
        .unwrap()
    }

    fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        self.handle.control(method, path, &body).unwrap()
    }

    /// Source `store-01` (GB) on stock 2 "UK" selling on website `base`; TEE-S (20) and MUG
    /// (5) there.
    fn seed(&self) {
        let r = self.ctl(
            "POST",
            "ops",
            json!({"ops": [
                {"op": "create_product", "sku": "TEE-S", "type": "simple"},
                {"op": "create_product", "sku": "MUG", "type": "simple"},
                {"op": "create_source", "source_code": "store-01", "name": "Leeds", "enabled": true,
                 "country_id": "GB", "postcode": "LS1 6AA"},
                {"op": "create_stock", "stock_id": 2, "name": "UK",
                 "sales_channels": [{"type": "website", "code": "base"}]},
                {"op": "save_stock_source_links", "links": [{"stock_id": 2, "source_code": "store-01", "priority": 1}]},
                {"op": "save_source_items", "items": [
                    {"sku": "TEE-S", "source_code": "store-01", "quantity": 20, "status": 1},
                    {"sku": "MUG", "source_code": "store-01", "quantity": 5, "status": 1}
                ]}
            ]}),
        );
        assert_eq!(r["failed"], json!(false), "{r}");
    }

    fn fault(&self, rule: Value) {
        self.ctl("POST", "faults", rule);
    }

    fn clear_faults(&self) {
        self.ctl("DELETE", "faults", Value::Null);
    }

    fn calls(&self) -> Vec<Value> {
        self.ctl("GET", "calls", Value::Null)["calls"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn clear_calls(&self) {
        self.ctl("DELETE", "calls", Value::Null);
    }

    /// `(method, route, status)` of every logged call.
    fn call_lines(&self) -> Vec<(String, String, u64)> {
        self.calls()
            .iter()
            .map(|c| {
                (
                    c["method"].as_str().unwrap().to_owned(),
                    c["route"].as_str().unwrap().to_owned(),
                    c["status"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn count(&self, method: &str, route_prefix: &str, route_suffix: &str) -> usize {
        self.call_lines()
            .iter()
            .filter(|(m, r, _)| {
                m == method && r.starts_with(route_prefix) && r.ends_with(route_suffix)
            })
            .count()
    }

    fn checkout(&self, increment_id: &str, items: Value) -> OrderId {
        let o = self.ctl(
            "POST",
            "orders",
            json!({"increment_id": increment_id, "items": items,
                   "customer": {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}}),
        );
        OrderId(o["entity_id"].as_u64().unwrap())
    }

    fn advance_minutes(&self, n: i64) {
        self.ctl("POST", "clock", json!({"advance_minutes": n}));
    }

    fn last_record(&self, method: &str, route: &str) -> CallRecord {
        self.log
            .records()
            .into_iter()
            .rev()
            .find(|r| r.method == method && r.route == route)
            .unwrap()
    }

    async fn quantity(&self, s: &str) -> Decimal {
        let page = self
            .client
            .source_items(
                &SearchCriteria::new()
                    .eq("sku", s)
                    .eq("source_code", "store-01"),
            )
            .await
            .unwrap();
        page.items[0].quantity
    }
}

// ----- happy paths, one per call group ---------------------------------------------------------

#[tokio::test]
async fn sources_stocks_and_links_round_trip() {
    let e = Env::start().await;
    let c = &e.client;
    let sources = c.sources(&SearchCriteria::new()).await.unwrap();
    assert_eq!(sources.total_count, 2);
    let leeds = c.source(&src("store-01")).await.unwrap();
    assert_eq!(leeds.country_id.as_deref(), Some("GB"));
    assert_eq!(leeds.enabled, Some(true));

    let mut york = Source::new(src("store-02"), "York", "GB", "YO1 7HH");
    c.save_source(&key("source-york"), &york).await.unwrap();
    york.city = Some("York".into());
    c.update_source(&key("source-york-city"), &york)
        .await
        .unwrap();
    assert_eq!(
        c.source(&src("store-02")).await.unwrap().city.as_deref(),
        Some("York")
    );

    let eu = c
        .save_stock(
            &key("stock-eu"),
            &Stock {
                stock_id: None,
                name: "EU".into(),
                extension_attributes: None,
            },
        )
        .await
        .unwrap();
    assert!(eu.get() > 2);
    let renamed = Stock {
        stock_id: Some(eu),
        name: "EU North".into(),
        extension_attributes: None,
    };
    assert_eq!(
        c.save_stock(&key("stock-eu-rename"), &renamed)
            .await
            .unwrap(),
        eu
    );
    assert_eq!(c.stock(eu).await.unwrap().name, "EU North");
    assert_eq!(
        c.stocks(&SearchCriteria::new()).await.unwrap().total_count,
        3
    );
    assert_eq!(
        c.stock_by_website("base").await.unwrap().stock_id,
        Some(stock(2))
    );

    let link = StockSourceLink {
        stock_id: eu,
        source_code: src("store-02"),
        priority: 1,
    };
    c.save_stock_source_links(&key("link-eu-york"), std::slice::from_ref(&link))
        .await
        .unwrap();
    let links = c
        .stock_source_links(&SearchCriteria::new().eq("stock_id", eu.get()))
        .await
        .unwrap();
    assert_eq!(links.items, vec![link.clone()]);
    let by_priority: Vec<String> = c
        .sources_by_priority(eu)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.source_code.as_str().to_owned())
        .collect();
    assert_eq!(by_priority, vec!["store-02"]);
    c.delete_stock_source_links(&key("unlink-eu-york"), &[link])
        .await
        .unwrap();
    assert_eq!(
        c.stock_source_links(&SearchCriteria::new().eq("stock_id", eu.get()))
            .await
            .unwrap()
            .total_count,
        0
    );
    c.delete_stock(&key("delete-eu"), eu).await.unwrap();
    let gone = c.stock(eu).await.unwrap_err();
    assert!(gone.is_not_found());
    assert_eq!(
        gone.message().unwrap(),
        format!("Stock with id \"{}\" does not exist.", eu.get())
    );
}

#[tokio::test]
async fn source_items_are_pushed_searched_deleted_and_read_back_as_salable_quantity() {
    let e = Env::start().await;
    let c = &e.client;
    c.save_source_items(
        &key("push-1"),
        &[
            item("TEE-S", "store-01", "12"),
            item("MUG", "store-01", "7"),
        ],
    )
    .await
    .unwrap();
    let page = c
        .source_items(
            &SearchCriteria::new()
                .eq("source_code", "store-01")
                .sort("sku", Direction::Asc),
        )
        .await
        .unwrap();
    assert_eq!(page.total_count, 2);
    assert_eq!(
        page.items,
        vec![
            item("MUG", "store-01", "7"),
            item("TEE-S", "store-01", "12")
        ]
    );
    let listed = c
        .source_items(&SearchCriteria::new().and(Filter::in_list("sku", ["TEE-S", "MUG"])))
        .await
        .unwrap();
    assert_eq!(listed.total_count, 2);
    let liked = c
        .source_items(&SearchCriteria::new().filter("sku", Condition::Like, "TEE%"))
        .await
        .unwrap();
    assert_eq!(liked.items, vec![item("TEE-S", "store-01", "12")]);

    assert_eq!(
        c.salable_quantity(&sku("TEE-S"), stock(2)).await.unwrap(),
        d("12")
    );
    assert!(c.is_product_salable(&sku("TEE-S"), stock(2)).await.unwrap());
    let both = c
        .are_products_salable(&[sku("TEE-S"), sku("MUG")], stock(2))
        .await
        .unwrap();
    assert!(both.iter().all(|r| r.salable && r.stock_id == stock(2)));
    let too_many = c
        .is_product_salable_for_requested_qty(&sku("TEE-S"), stock(2), d("13"))
        .await
        .unwrap();
    assert!(!too_many.salable);
    assert!(
        too_many
            .errors
            .iter()
            .any(|e| e.code == "is_salable_with_reservations-not_enough_qty"),
        "{too_many:?}"
    );
    let mixed = c
        .are_products_salable_for_requested_qty(
            &[
                SkuQty {
                    sku: sku("TEE-S"),
                    qty: d("2"),
                },
                SkuQty {
                    sku: sku("MUG"),
                    qty: d("8"),
                },
            ],
            stock(2),
        )
        .await
        .unwrap();
    assert_eq!(
        mixed.iter().map(|r| r.salable).collect::<Vec<_>>(),
        vec![true, false]
    );

    c.delete_source_items(
        &key("unassign-mug"),
        &[SourceItemKey {
            sku: sku("MUG"),
            source_code: src("store-01"),
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        c.source_items(&SearchCriteria::new().eq("sku", "MUG"))
            .await
            .unwrap()
            .total_count,
        0
    );
    let unknown = c
        .salable_quantity(&sku("NOPE"), stock(2))
        .await
        .unwrap_err();
    assert!(unknown.is_not_found());
    assert_eq!(
        unknown.message().unwrap(),
        "The product that was requested doesn't exist. Verify the product and try again."
    );
}

#[tokio::test]
async fn paging_walks_pages_until_the_total_count() {
    let e = Env::start().await;
    let c = &e.client;
    let items: Vec<SourceItem> = (1..=5)
        .map(|i| item(&format!("P{i}"), "default", &i.to_string()))
        .collect();
    c.save_source_items(&key("push-p"), &items).await.unwrap();
    e.clear_calls();
    let criteria = SearchCriteria::new()
        .filter("sku", Condition::Like, "P%")
        .sort("sku", Direction::Asc)
        .page_size(2);
    let mut pages = c.pages::<SourceItem>(criteria.clone());
    let mut sizes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        assert_eq!(page.total_count, 5);
        sizes.push(page.items.len());
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(pages.seen(), 5);
    assert_eq!(e.calls().len(), 3);
    let all = c.search_all::<SourceItem>(criteria).await.unwrap();
    assert_eq!(all, items);
    assert_eq!(e.calls().len(), 6);
}

#[tokio::test]
async fn orders_are_polled_by_updated_at_with_a_keyset_cursor() {
    let e = Env::start().await;
    let c = &e.client;
    let a = e.checkout(
        "000000101",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    let b = e.checkout("000000102", json!([{"sku": "MUG", "qty": 1, "price": 8}]));
    e.advance_minutes(1);
    let third = e.checkout("000000103", json!([{"sku": "MUG", "qty": 1, "price": 8}]));

    // a and b share a second: the cursor still reads them one by one, in id order.
    let (first, cursor) = c
        .orders_changed_since(&OrderCursor::default(), 1)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|o| o.entity_id).collect::<Vec<_>>(),
        vec![a]
    );
    let (second, cursor) = c.orders_changed_since(&cursor, 1).await.unwrap();
    assert_eq!(
        second.iter().map(|o| o.entity_id).collect::<Vec<_>>(),
        vec![b]
    );
    let (rest, cursor) = c.orders_changed_since(&cursor, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|o| o.entity_id).collect::<Vec<_>>(),
        vec![third]
    );
    let (none, same) = c.orders_changed_since(&cursor, 10).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(same, cursor);

    // A comment bumps `updated_at`: the order comes round again.
    e.advance_minutes(1);
    c.add_order_comment(
        &key("comment-a"),
        a,
        &OrderComment {
            comment: "Synced to POS".into(),
            ..OrderComment::default()
        },
    )
    .await
    .unwrap();
    let (again, _) = c.orders_changed_since(&cursor, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|o| o.entity_id).collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(again[0].increment_id, "000000101");
    assert_eq!(again[0].items[0].qty_ordered, d("2"));
    assert_eq!(again[0].raw["customer_email"], json!("ann@example.com"));

    let page = c
        .orders(&SearchCriteria::updated_since("2000-01-01 00:00:00", 2))
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.total_count), (2, 3));
}

#[tokio::test]
async fn documents_are_created_with_markers_and_read_back() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000201",
        json!([{"sku": "TEE-S", "qty": 3, "price": 15}]),
    );
    let order = c.order(id).await.unwrap();
    let line_id = order.items[0].item_id;

    let Created::New(invoice) = c
        .invoice(
            &key("invoice-201"),
            id,
            &InvoiceRequest {
                capture: true,
                baseline: Some(OrderProgress::of(&order)),
                ..InvoiceRequest::default()
            },
        )
        .await
        .unwrap()
    else {
        panic!("a new invoice")
    };
    assert_eq!(c.invoice_by_id(invoice).await.unwrap().order_id, id.0);
    assert_eq!(
        c.invoices(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );

    let shipped = c
        .ship(
            &key("ship-201-1"),
            id,
            &ShipRequest {
                items: vec![DocumentLine {
                    order_item_id: line_id,
                    qty: d("2"),
                }],
                source_code: Some(src("store-01")),
                comment: Some("POS pickup".into()),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap();
    let Created::New(shipment_id) = shipped else {
        panic!("a new shipment: {shipped:?}")
    };
    let shipment = c.shipment(shipment_id).await.unwrap();
    assert_eq!(
        shipment
            .extension_attributes
            .unwrap()
            .source_code
            .as_deref(),
        Some("store-01")
    );
    assert_eq!(
        shipment.comments[0].comment,
        "POS pickup\n[tillbridge:ship-201-1]"
    );
    assert_eq!(
        c.shipments(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );
    assert_eq!(e.quantity("TEE-S").await, d("18"));

    assert!(
        c.add_order_comment(
            &key("comment-201"),
            id,
            &OrderComment {
                comment: "Shipped from Leeds".into(),
                ..OrderComment::default()
            }
        )
        .await
        .unwrap()
    );
    let comments = c.order_comments(id).await.unwrap();
    assert!(
        comments
            .items
            .iter()
            .any(|h| h.comment.as_deref() == Some("Shipped from Leeds\n[tillbridge:comment-201]"))
    );

    let refunded = c
        .refund_order(
            &key("refund-201"),
            id,
            &RefundRequest {
                items: vec![DocumentLine {
                    order_item_id: line_id,
                    qty: d("1"),
                }],
                return_to_stock_items: vec![line_id],
                comment: Some("POS return".into()),
                ..RefundRequest::default()
            },
        )
        .await
        .unwrap();
    let memo = refunded.id().unwrap();
    assert_eq!(c.credit_memo(memo).await.unwrap().order_id, id.0);
    assert_eq!(
        c.credit_memos(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );
    assert_eq!(c.order(id).await.unwrap().items[0].qty_refunded, d("1"));

    let other = e.checkout("000000202", json!([{"sku": "MUG", "qty": 1, "price": 8}]));
    assert!(c.cancel_order(&key("cancel-202"), other).await.unwrap());
    assert_eq!(
        c.order(other).await.unwrap().state.as_deref(),
        Some("canceled")
    );
}

#[tokio::test]
async fn asynchronous_and_bulk_pushes_are_queued_and_reported() {
    let e = Env::start().await;
    let c = &e.client;
    let one = c
        .async_save_source_items(&key("async-1"), &[item("TEE-S", "store-01", "9")])
        .await
        .unwrap();
    assert!(!one.errors);
    assert_eq!(one.request_items[0].status, "accepted");
    let status = c.bulk_status(&one.bulk_uuid).await.unwrap();
    assert_eq!(status.operations_list[0].status, OperationStatus::Open);
    assert!(!status.is_finished());

    let two = c
        .bulk_save_source_items(
            &key("bulk-1"),
            &[
                vec![item("TEE-S", "store-01", "8")],
                vec![item("MUG", "store-01", "4")],
            ],
        )
        .await
        .unwrap();
    assert_eq!(two.request_items.len(), 2);
    e.ctl("POST", "consumers/run", json!({}));
    assert!(c.bulk_status(&one.bulk_uuid).await.unwrap().is_complete());
    let detailed = c.bulk_detailed_status(&two.bulk_uuid).await.unwrap();
    assert!(detailed.is_complete());
    assert!(detailed.operations_list[0].topic_name.is_some());
    assert_eq!(
        c.bulk_operation_count(&two.bulk_uuid, OperationStatus::Complete)
            .await
            .unwrap(),
        2
    );
    assert_eq!(e.quantity("TEE-S").await, d("8"));
    assert_eq!(e.quantity("MUG").await, d("4"));
    let calls = e.calls();
    assert_eq!(calls[0]["mode"], json!("async"));
    assert_eq!(calls[0]["store"], json!("default"));
}

#[tokio::test]
async fn reservation_routes_list_sum_append_and_report_inconsistencies() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000301",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    let rows = c
        .reservations(Some(&sku("TEE-S")), Some(stock(2)))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].quantity, d("-2"));
    assert_eq!(
        c.reservations_sum(&sku("TEE-S"), stock(2)).await.unwrap(),
        d("-2")
    );
    assert!(c.reservation_inconsistencies().await.unwrap().is_empty());

    c.append_reservations(
        &key("compensation-1"),
        &[NewReservation {
            stock_id: stock(2),
            sku: sku("TEE-S"),
            quantity: d("1"),
            metadata: ReservationMetadata {
                event_type: "manual_compensation".into(),
                object_type: "order".into(),
                object_id: id.0.to_string(),
                object_increment_id: "000000301".into(),
            },
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        c.reservations_sum(&sku("TEE-S"), stock(2)).await.unwrap(),
        d("-1")
    );
    let found = c.reservation_inconsistencies().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (
            found[0].order_increment_id.as_str(),
            found[0].sku.as_str(),
            found[0].stock_id,
            found[0].compensation
        ),
        ("000000301", "TEE-S", stock(2), d("-1"))
    );
}

// ----- authentication --------------------------------------------------------------------------

#[tokio::test]
async fn a_bad_token_is_a_permanent_401_naming_the_resource() {
    let e = Env::start().await;
    let c = e.client(Credentials::Bearer(Secret::new("not-a-token")), unlimited());
    let err = c.sources(&SearchCriteria::new()).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(
        err.message().unwrap(),
        "The consumer isn't authorized to access Magento_InventoryApi::source."
    );
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.call().attempts, 1);
    assert!(err.is_permanent() && !err.is_retriable());
    assert_eq!(e.calls().len(), 1);
}

#[tokio::test]
async fn an_expired_admin_token_is_renewed_once_and_the_call_goes_through() {
    let e = Env::start().await;
    let c = e.client(
        Credentials::admin(DEFAULT_ADMIN_USERNAME, Secret::new(DEFAULT_ADMIN_PASSWORD)),
        unlimited(),
    );
    c.stock(stock(2)).await.unwrap();
    let first = c.admin_token().await.unwrap();
    // Four hours pass on Commerce's clock: the token expires there.
    e.ctl("POST", "clock", json!({"advance_hours": 5}));
    e.clear_calls();
    c.stock(stock(2)).await.unwrap();
    let lines: Vec<(String, u64)> = e
        .call_lines()
        .into_iter()
        .map(|(m, r, s)| (format!("{m} {r}"), s))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("GET /V1/inventory/stocks/2".to_owned(), 401),
            ("POST /V1/integration/admin/token".to_owned(), 200),
            ("GET /V1/inventory/stocks/2".to_owned(), 200),
        ]
    );
    let record = e.last_record("GET", "/V1/inventory/stocks/:stockId");
    assert_eq!((record.attempts, record.status), (2, Some(200)));
    assert_ne!(c.admin_token().await.unwrap(), first);
}

#[tokio::test]
async fn wrong_admin_credentials_fail_once_without_retrying() {
    let e = Env::start().await;
    let c = e.client(
        Credentials::admin(DEFAULT_ADMIN_USERNAME, Secret::new("wrong")),
        unlimited(),
    );
    let err = c.stock(stock(2)).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(
        err.message().unwrap(),
        "The account sign-in was incorrect or your account is disabled temporarily. Please wait and try again later."
    );
    assert_eq!(
        e.call_lines(),
        vec![(
            "POST".to_owned(),
            "/V1/integration/admin/token".to_owned(),
            401
        )]
    );
}

// ----- Magento's refusals ----------------------------------------------------------------------

#[tokio::test]
async fn magento_400s_are_permanent_and_rendered_with_their_parameters() {
    let e = Env::start().await;
    let c = &e.client;

    // A map parameter (`%fieldName`).
    let err = c
        .call_raw(
            reqwest::Method::POST,
            "/V1/inventory/source-items",
            Vec::new(),
            Some(json!({})),
            Some(&key("raw-1")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let body = err.magento().unwrap();
    assert_eq!(
        body.message,
        "\"%fieldName\" is required. Enter and try again."
    );
    assert_eq!(
        body.parameters.get("fieldName"),
        Some(&json!("sourceItems"))
    );
    assert_eq!(
        err.message().unwrap(),
        "\"sourceItems\" is required. Enter and try again."
    );
    assert!(err.is_permanent());
    assert_eq!(err.call().attempts, 1);

    // Aggregated validation errors, each with its own parameters.
    let mut nameless = Source::new(src("store-09"), "x", "GB", "LS1");
    nameless.name = None;
    let err = c
        .save_source(&key("source-9"), &nameless)
        .await
        .unwrap_err();
    let body = err.magento().unwrap();
    assert_eq!(body.message, "Validation Failed");
    assert!(
        body.rendered_errors()
            .contains(&"\"name\" can not be empty.".to_owned()),
        "{body:?}"
    );
    assert!(
        err.to_string().starts_with("POST /V1/inventory/sources"),
        "{err}"
    );
    assert!(err.to_string().contains("key source-9"), "{err}");

    // A list parameter (`%1`).
    e.fault(json!({"method": "GET", "path": "/V1/inventory/sources", "times": 1,
                   "kind": {"type": "status", "status": 400,
                            "body": {"message": "Invalid product data: %1", "parameters": ["Invalid attribute set entity type"]}}}));
    let err = c.sources(&SearchCriteria::new()).await.unwrap_err();
    assert_eq!(
        err.message().unwrap(),
        "Invalid product data: Invalid attribute set entity type"
    );
    assert_eq!(err.call().attempts, 1);

    // Commerce's input limit, when the client does not check it.
    let e = Env::start_with(EmulatorConfig::default(), |c| c.sync_input_limit = None).await;
    e.ctl("POST", "config", json!({"input_limits": {"enabled": true}}));
    let items: Vec<SourceItem> = (0..21)
        .map(|i| item(&format!("S{i}"), "default", "1"))
        .collect();
    let err = e
        .client
        .save_source_items(&key("too-many"), &items)
        .await
        .unwrap_err();
    assert_eq!(
        err.message().unwrap(),
        "Maximum items of type \"\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface\" is 20"
    );
    assert_eq!(err.call().attempts, 1);
}

// ----- retries ---------------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_are_retried_until_the_call_succeeds() {
    let e = Env::start().await;
    let c = &e.client;
    e.fault(
        json!({"method": "GET", "path": "/V1/inventory/sources", "times": 2,
                   "kind": {"type": "status", "status": 503}}),
    );
    assert_eq!(
        c.sources(&SearchCriteria::new()).await.unwrap().total_count,
        2
    );
    let statuses: Vec<u64> = e.call_lines().into_iter().map(|l| l.2).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    let r = e.last_record("GET", "/V1/inventory/sources");
    assert_eq!(
        (r.attempts, r.status, r.outcome),
        (3, Some(200), CallOutcome::Ok)
    );

    // An idempotent write after a 500 is simply sent again.
    e.fault(
        json!({"method": "POST", "path": "/V1/inventory/source-items", "times": 1,
                   "kind": {"type": "status", "status": 500}}),
    );
    c.save_source_items(&key("push-500"), &[item("TEE-S", "store-01", "11")])
        .await
        .unwrap();
    assert_eq!(e.quantity("TEE-S").await, d("11"));
    assert_eq!(
        e.last_record("POST", "/V1/inventory/source-items").attempts,
        2
    );
}

#[tokio::test]
async fn retries_stop_after_max_attempts_with_a_retriable_error() {
    let e = Env::start().await;
    e.fault(json!({"path": "/V1/inventory/stocks", "kind": {"type": "status", "status": 502}}));
    let err = e.client.stocks(&SearchCriteria::new()).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Server { status: 502, .. }),
        "{err}"
    );
    assert_eq!(err.message().unwrap(), "Bad Gateway");
    assert_eq!(err.call().attempts, 3);
    assert!(err.is_retriable());
    assert_eq!(e.calls().len(), 3);
}

#[tokio::test]
async fn throttling_429_backs_off_honours_retry_after_and_slows_the_shared_budget() {
    let e = Env::start().await;
    let budget = Budget::new(BudgetConfig {
        initial_rate: 100.0,
        min_rate: 1.0,
        max_rate: 100.0,
        burst: 100.0,
        additive_increase: 0.0,
        multiplicative_decrease: 0.5,
        decrease_cooldown: Duration::ZERO,
        slow_threshold: None,
    });
    let c = e.client(
        Credentials::Bearer(Secret::new(DEFAULT_TOKEN)),
        budget.clone(),
    );
    e.fault(json!({"path": "/V1/inventory/sources", "times": 1,
                   "kind": {"type": "status", "status": 429, "retry_after": 1}}));
    c.sources(&SearchCriteria::new()).await.unwrap();
    let s = budget.snapshot();
    assert_eq!(s.decreases, 1);
    assert!((s.rate - 50.0).abs() < 1e-9, "{s:?}");
    assert_eq!(e.last_record("GET", "/V1/inventory/sources").attempts, 2);

    e.fault(json!({"path": "/V1/inventory/stocks",
                   "kind": {"type": "status", "status": 429, "retry_after": 7}}));
    let err = c.stocks(&SearchCriteria::new()).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Throttled { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retriable());
    assert_eq!(err.call().attempts, 3);
}

#[tokio::test]
async fn a_client_timeout_is_retried_and_reported_as_retriable() {
    let e = Env::start_with(EmulatorConfig::default(), |c| {
        c.request_timeout = Duration::from_millis(100);
    })
    .await;
    let c = &e.client;
    e.fault(json!({"path": "/V1/inventory/stocks/2", "times": 1,
                   "kind": {"type": "latency", "ms": 1000}}));
    assert_eq!(c.stock(stock(2)).await.unwrap().name, "UK");
    let r = e.last_record("GET", "/V1/inventory/stocks/:stockId");
    assert_eq!((r.attempts, r.status), (2, Some(200)));

    e.fault(json!({"path": "/V1/inventory/stocks/2", "kind": {"type": "latency", "ms": 1000}}));
    let err = c.stock(stock(2)).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err}");
    assert!(err.is_retriable());
    assert_eq!(err.call().attempts, 3);
    assert_eq!(err.status(), None);
}

// ----- lost answers on writes ------------------------------------------------------------------

#[tokio::test]
async fn a_lost_answer_on_a_source_item_push_is_sent_again_without_harm() {
    let e = Env::start().await;
    e.fault(
        json!({"method": "POST", "path": "/V1/inventory/source-items", "times": 1,
                   "kind": {"type": "lost_response"}}),
    );
    e.client
        .save_source_items(&key("push-lost"), &[item("TEE-S", "store-01", "3")])
        .await
        .unwrap();
    let posts: Vec<Value> = e
        .calls()
        .into_iter()
        .filter(|c| c["method"] == json!("POST"))
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|p| p["applied"] == json!(true)));
    assert_eq!(e.quantity("TEE-S").await, d("3"));
    assert_eq!(
        e.last_record("POST", "/V1/inventory/source-items").attempts,
        2
    );
}

#[tokio::test]
async fn a_lost_shipment_answer_is_recovered_without_shipping_twice() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000401",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    let line_id = c.order(id).await.unwrap().items[0].item_id;
    e.fault(
        json!({"method": "POST", "path": "/V1/order/*/ship", "times": 1,
                   "kind": {"type": "lost_response"}}),
    );
    // Ship one of two: a blind retry would ship the second unit too.
    let shipped = c
        .ship(
            &key("ship-401"),
            id,
            &ShipRequest {
                items: vec![DocumentLine {
                    order_item_id: line_id,
                    qty: d("1"),
                }],
                source_code: Some(src("store-01")),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap();
    let Created::Recovered(shipment_id) = shipped else {
        panic!("recovered by marker: {shipped:?}")
    };
    let shipments = c
        .shipments(&SearchCriteria::new().eq("order_id", id.0))
        .await
        .unwrap();
    assert_eq!(shipments.total_count, 1);
    assert_eq!(shipments.items[0].entity_id, shipment_id.0);
    assert_eq!(c.order(id).await.unwrap().items[0].qty_shipped, d("1"));
    assert_eq!(e.quantity("TEE-S").await, d("19"));
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 1);
    let r = e.last_record("POST", "/V1/order/:orderId/ship");
    assert_eq!(r.outcome, CallOutcome::Recovered);
    assert_eq!(r.idempotency_key, Some(key("ship-401")));
}

#[tokio::test]
async fn a_repeating_handle_finds_the_earlier_shipment_and_posts_only_when_there_is_none() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000403",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    let line_id = c.order(id).await.unwrap().items[0].item_id;
    let one = ShipRequest {
        items: vec![DocumentLine {
            order_item_id: line_id,
            qty: d("1"),
        }],
        source_code: Some(src("store-01")),
        ..ShipRequest::default()
    };
    // The first call went through, but its caller never learnt it (a restart, a lost answer
    // reported as unknown): the repeat finds it by its marker and posts nothing.
    let first = c.ship(&key("ship-403a"), id, &one).await.unwrap();
    let Created::New(first_id) = first else {
        panic!("{first:?}")
    };
    let again = c
        .repeating()
        .ship(&key("ship-403a"), id, &one)
        .await
        .unwrap();
    assert_eq!(again, Created::Recovered(first_id), "the earlier shipment");
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 1);
    assert_eq!(
        e.last_record("GET", "/V1/shipments").outcome,
        CallOutcome::Ok,
        "looked before posting"
    );
    // A repeat of a call that never ran (another key) posts once.
    let second = c
        .repeating()
        .ship(&key("ship-403b"), id, &one)
        .await
        .unwrap();
    assert!(matches!(second, Created::New(_)), "{second:?}");
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 2);
    assert_eq!(c.order(id).await.unwrap().items[0].qty_shipped, d("2"));
    // When the look itself fails, the outcome is unknown: nothing is posted.
    e.fault(
        json!({"method": "GET", "path": "/V1/shipments", "times": 10,
                   "kind": {"type": "status", "status": 503}}),
    );
    let unknown = c
        .repeating()
        .ship(&key("ship-403c"), id, &one)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown.kind(), ErrorKind::Ambiguous { .. }),
        "{unknown}"
    );
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 2);
}

#[tokio::test]
async fn a_shipment_refused_before_it_ran_is_sent_again_once() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000402",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    e.fault(
        json!({"method": "POST", "path": "/V1/order/*/ship", "times": 1,
                   "kind": {"type": "status", "status": 503}}),
    );
    let shipped = c
        .ship(
            &key("ship-402"),
            id,
            &ShipRequest {
                source_code: Some(src("store-01")),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(shipped, Created::New(_)), "{shipped:?}");
    let posts: Vec<u64> = e
        .call_lines()
        .into_iter()
        .filter(|(m, r, _)| m == "POST" && r.ends_with("/ship"))
        .map(|l| l.2)
        .collect();
    assert_eq!(posts, vec![503, 200]);
    assert_eq!(
        c.shipments(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );
    assert_eq!(e.quantity("TEE-S").await, d("18"));
}

#[tokio::test]
async fn a_shipment_that_lands_after_the_client_gave_up_is_recognised_not_repeated() {
    // The first attempt is slower than the client's timeout; Commerce still runs it. The
    // retry (ship everything) then lands after it and is refused, because nothing is left to
    // ship: the client looks again and reports the first attempt's shipment.
    let e = Env::start_with(EmulatorConfig::default(), |c| {
        c.request_timeout = Duration::from_millis(400);
    })
    .await;
    let c = &e.client;
    let id = e.checkout(
        "000000405",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    e.fault(json!({"rules": [
        {"method": "POST", "path": "/V1/order/*/ship", "times": 1, "kind": {"type": "latency", "ms": 500}},
        {"method": "POST", "path": "/V1/order/*/ship", "skip": 1, "times": 1, "kind": {"type": "latency", "ms": 200}}
    ]}));
    let shipped = c
        .ship(
            &key("ship-405"),
            id,
            &ShipRequest {
                source_code: Some(src("store-01")),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(shipped, Created::Recovered(_)), "{shipped:?}");
    assert_eq!(
        c.shipments(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );
    assert_eq!(e.quantity("TEE-S").await, d("18"));
}

#[tokio::test]
async fn without_document_listing_a_lost_shipment_is_recognised_by_the_order_quantities() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000403",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    let order = c.order(id).await.unwrap();
    e.fault(json!({"rules": [
        {"method": "POST", "path": "/V1/order/*/ship", "times": 1, "kind": {"type": "lost_response", "mode": "status", "status": 502}},
        {"method": "GET", "path": "/V1/shipments", "kind": {"type": "status", "status": 404}}
    ]}));
    let shipped = c
        .ship(
            &key("ship-403"),
            id,
            &ShipRequest {
                items: vec![DocumentLine {
                    order_item_id: order.items[0].item_id,
                    qty: d("1"),
                }],
                source_code: Some(src("store-01")),
                baseline: Some(OrderProgress::of(&order)),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(shipped, Created::AppliedWithoutId);
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 1);
    assert_eq!(c.order(id).await.unwrap().items[0].qty_shipped, d("1"));
}

#[tokio::test]
async fn an_outcome_the_probe_cannot_read_is_ambiguous_and_not_retried() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000404",
        json!([{"sku": "TEE-S", "qty": 2, "price": 15}]),
    );
    e.fault(json!({"rules": [
        {"method": "POST", "path": "/V1/order/*/ship", "times": 1, "kind": {"type": "lost_response"}},
        {"method": "GET", "path": "/V1/shipments", "kind": {"type": "status", "status": 500}}
    ]}));
    let err = c
        .ship(
            &key("ship-404"),
            id,
            &ShipRequest {
                source_code: Some(src("store-01")),
                ..ShipRequest::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Ambiguous { .. }), "{err}");
    assert!(!err.is_retriable() && !err.is_permanent());
    assert_eq!(e.count("POST", "/V1/order/", "/ship"), 1);
    e.clear_faults();
    assert_eq!(
        c.shipments(&SearchCriteria::new().eq("order_id", id.0))
            .await
            .unwrap()
            .total_count,
        1
    );
}

#[tokio::test]
async fn lost_answers_on_other_non_idempotent_writes_are_recovered() {
    let e = Env::start().await;
    let c = &e.client;
    let id = e.checkout(
        "000000501",
        json!([{"sku": "TEE-S", "qty": 3, "price": 15}]),
    );
    let line_id = c.order(id).await.unwrap().items[0].item_id;
    let lost = |path: &str| {
        e.fault(
            json!({"method": "POST", "path": path, "times": 1, "kind": {"type": "lost_response"}}),
        );
    };

    lost("/V1/order/*/invoice");
    let invoiced = c
        .invoice(&key("invoice-501"), id, &InvoiceRequest::default())
        .await
        .unwrap();
    assert!(matches!(invoiced, Created::Recovered(_)), "{invoiced:?}");
    assert_eq!(e.count("POST", "/V1/order/", "/invoice"), 1);

    lost("/V1/order/*/refund");
    let refunded = c
        .refund_order(
            &key("refund-501"),
            id,
            &RefundRequest {
                items: vec![DocumentLine {
                    order_item_id: line_id,
                    qty: d("1"),
                }],
                ..RefundRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(refunded, Created::Recovered(_)), "{refunded:?}");
    assert_eq!(e.count("POST", "/V1/order/", "/refund"), 1);
    assert_eq!(c.order(id).await.unwrap().items[0].qty_refunded, d("1"));

    lost("/V1/orders/*/comments");
    assert!(
        c.add_order_comment(
            &key("comment-501"),
            id,
            &OrderComment {
                comment: "Refunded at the till".into(),
                ..OrderComment::default()
            }
        )
        .await
        .unwrap()
    );
    let marked = c
        .order_comments(id)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|h| {
            h.comment
                .as_deref()
                .is_some_and(|t| t.contains("[tillbridge:comment-501]"))
        })
        .count();
    assert_eq!(marked, 1);

    let other = e.checkout("000000502", json!([{"sku": "MUG", "qty": 1, "price": 8}]));
    lost("/V1/orders/*/cancel");
    assert!(c.cancel_order(&key("cancel-502"), other).await.unwrap());
    assert_eq!(e.count("POST", "/V1/orders/", "/cancel"), 1);
    assert_eq!(
        e.last_record("POST", "/V1/orders/:id/cancel").outcome,
        CallOutcome::Recovered
    );

    lost("/V1/tillbridge/reservations");
    let compensation = NewReservation {
        stock_id: stock(2),
        sku: sku("MUG"),
        quantity: d("-1"),
        metadata: ReservationMetadata {
            event_type: "pos_sale".into(),
            object_type: "pos_receipt".into(),
            object_id: "R-501".into(),
            object_increment_id: "R-501".into(),
        },
    };
    c.append_reservations(&key("reserve-r501"), &[compensation])
        .await
        .unwrap();
    let rows = c
        .reservations(Some(&sku("MUG")), Some(stock(2)))
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r.metadata.as_deref().is_some_and(|m| m.contains("R-501")))
            .count(),
        1
    );

    let eu = c
        .save_stock(
            &key("stock-eu"),
            &Stock {
                stock_id: None,
                name: "EU".into(),
                extension_attributes: None,
            },
        )
        .await
        .unwrap();
    e.fault(json!({"method": "DELETE", "path": "/V1/inventory/stocks/*", "times": 1, "kind": {"type": "lost_response"}}));
    c.delete_stock(&key("delete-eu"), eu).await.unwrap();
    assert_eq!(
        e.last_record("DELETE", "/V1/inventory/stocks/:stockId")
            .outcome,
        CallOutcome::Recovered
    );
    assert!(c.stock(eu).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_lost_answer_on_a_new_stock_is_recovered_by_its_name() {
    let e = Env::start().await;
    let c = &e.client;
    e.fault(
        json!({"method": "POST", "path": "/V1/inventory/stocks", "times": 1,
                   "kind": {"type": "lost_response"}}),
    );
    let eu = c
        .save_stock(
            &key("stock-eu"),
            &Stock {
                stock_id: None,
                name: "EU".into(),
                extension_attributes: None,
            },
        )
        .await
        .unwrap();
    let named: Vec<Stock> = c
        .stocks(&SearchCriteria::new().eq("name", "EU"))
        .await
        .unwrap()
        .items;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].stock_id, Some(eu));
    assert_eq!(e.count("POST", "/V1/inventory/stocks", ""), 1);
}

// ----- the shared budget -----------------------------------------------------------------------

#[tokio::test]
async fn one_budget_paces_every_caller_of_every_client() {
    let config = EmulatorConfig {
        real_time: true,
        ..EmulatorConfig::default()
    };
    let e = Env::start_with(config, |_| {}).await;
    e.clear_calls();
    let rate = 10.0;
    let burst = 1.0;
    let budget = Budget::new(BudgetConfig::fixed(rate, burst));
    let a = e.client(
        Credentials::Bearer(Secret::new(DEFAULT_TOKEN)),
        budget.clone(),
    );
    let b = e.client(
        Credentials::Bearer(Secret::new(DEFAULT_TOKEN)),
        budget.clone(),
    );
    let callers = [a.clone(), a, b];
    let per_caller = 7;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    c.stock(StockId::DEFAULT).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let calls = e.calls();
    assert_eq!(calls.len(), 3 * per_caller);
    assert_eq!(budget.snapshot().granted, 3 * per_caller as u64);
    // Requests per second of Commerce's clock: never more than the burst plus one second
    // of rate (plus the callers in flight, whose arrival can bunch up on the wire).
    let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
    for c in &calls {
        *per_second
            .entry(c["at"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let bound = burst as usize + rate as usize + 3;
    assert!(
        per_second.values().all(|n| *n <= bound),
        "{per_second:?} (bound {bound})"
    );
}

// ----- observability and secrets --------------------------------------------------------------

#[tokio::test]
async fn every_call_leaves_a_record_and_no_secret_is_printed() {
    let e = Env::start().await;
    let password = DEFAULT_ADMIN_PASSWORD;
    let c = e.client(
        Credentials::admin(DEFAULT_ADMIN_USERNAME, Secret::new(password)),
        unlimited(),
    );
    c.save_source_items(&key("push-rec"), &[item("MUG", "store-01", "2")])
        .await
        .unwrap();
    let _ = c.source(&src("nope")).await.unwrap_err();
    let token = c.admin_token().await.unwrap();
    let records = e.log.records();
    let routes: Vec<(&str, Option<u16>, CallOutcome)> = records
        .iter()
        .map(|r| (r.route, r.status, r.outcome))
        .collect();
    assert_eq!(
        routes,
        vec![
            ("/V1/integration/admin/token", Some(200), CallOutcome::Ok),
            ("/V1/inventory/source-items", Some(200), CallOutcome::Ok),
            (
                "/V1/inventory/sources/:sourceCode",
                Some(404),
                CallOutcome::Failed
            ),
        ]
    );
    assert_eq!(records[1].idempotency_key, Some(key("push-rec")));
    assert_eq!(records[1].path, "/rest/V1/inventory/source-items");
    let printed = format!(
        "{} {:?} {:?} {c:?}",
        records
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        records,
        c.config()
    );
    assert!(!printed.contains(password));
    assert!(!printed.contains(token.expose()));
    assert!(printed.contains("POST /V1/inventory/source-items"));
}

// ----- OAuth 1.0a ------------------------------------------------------------------------------

/// Nonces and verdicts the OAuth server saw.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// A server that checks each request's OAuth signature against the URL it received, answers
/// the first request 503 (so the client signs a retry) and the others 200 or 401.
async fn oauth_server() -> (String, Seen, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let state = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).default_service(web::to(
            |req: HttpRequest, seen: web::Data<Seen>| async move {
                let header = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut oauth: Vec<(String, String)> = header
                    .strip_prefix("OAuth ")
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| {
                        let v = v.trim_matches('"');
                        (
                            k.trim().to_owned(),
                            percent_encoding::percent_decode_str(v)
                                .decode_utf8_lossy()
                                .into_owned(),
                        )
                    })
                    .collect();
                let signature = oauth
                    .iter()
                    .position(|(k, _)| k == "oauth_signature")
                    .map(|i| oauth.remove(i).1)
                    .unwrap_or_default();
                let nonce = oauth
                    .iter()
                    .find(|(k, _)| k == "oauth_nonce")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let mut params: Vec<(String, String)> =
                    url::form_urlencoded::parse(req.query_string().as_bytes())
                        .into_owned()
                        .collect();
                params.extend(oauth);
                let uri = format!(
                    "http://{}{}",
                    req.connection_info().host(),
                    req.uri().path()
                );
                let base = signature_base_string(req.method().as_str(), &uri, &params);
                let expected = sign(
                    SignatureMethod::HmacSha256,
                    &base,
                    &Secret::new("consumer secret"),
                    &Secret::new("token&secret"),
                );
                let ok = expected == signature;
                let first = {
                    let mut s = seen.lock().unwrap();
                    s.push((nonce, ok));
                    s.len() == 1
                };
                if first {
                    HttpResponse::ServiceUnavailable()
                        .json(json!({"message": "Service Unavailable"}))
                } else if ok {
                    HttpResponse::Ok()
                        .json(json!({"items": [], "search_criteria": {}, "total_count": 0}))
                } else {
                    HttpResponse::Unauthorized()
                        .json(json!({"message": "The signature is invalid. Verify and try again."}))
                }
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), seen, handle)
}

#[tokio::test]
async fn oauth_signatures_cover_the_query_actually_sent_and_every_retry_is_signed_afresh() {
    let (base, seen, server) = oauth_server().await;
    let c = CommerceClient::new(
        fast_config(
            &base,
            Credentials::oauth(
                "consumer-key",
                Secret::new("consumer secret"),
                Secret::new("access-token"),
                Secret::new("token&secret"),
            ),
        ),
        unlimited(),
    )
    .unwrap();
    let criteria = SearchCriteria::new()
        .filter("sku", Condition::Like, "TEE S%/ü")
        .any_of([
            Filter::eq("source_code", "store-01"),
            Filter::eq("source_code", "a+b"),
        ])
        .sort("sku", Direction::Desc)
        .page_size(20);
    let page = c.source_items(&criteria).await.unwrap();
    assert_eq!(page.total_count, 0);
    c.is_product_salable(&sku("A B/1"), StockId::DEFAULT)
        .await
        .unwrap_err();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, ok)| *ok), "{seen:?}");
    let mut nonces: Vec<&String> = seen.iter().map(|(n, _)| n).collect();
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "a fresh nonce per attempt");
    server.stop(true).await;
}
