//! Contract check: drive every emulated Square endpoint (successes, paging, and Square's
//! error shapes), record every response through the emulator's call log, and validate each
//! body against the response schema that Square's own OpenAPI document gives for that
//! operation. Webhook bodies are validated against the event schemas the document marks with
//! `x-webhook`. Nothing is hand-copied: every schema is resolved from `square-api.json`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Emu, square_spec_path};
use serde_json::{Value, json};
use tillbridge_square_emulator::contract::Spec;

/// Every operation the emulator implements (kept in step with `api::operation_of`).
const OPERATIONS: &[&str] = &[
    "ListLocations",
    "RetrieveLocation",
    "ListCatalog",
    "SearchCatalogObjects",
    "BatchRetrieveCatalogObjects",
    "BatchRetrieveInventoryCounts",
    "BatchRetrieveInventoryChanges",
    "CreateOrder",
    "SearchOrders",
    "BatchRetrieveOrders",
    "RetrieveOrder",
    "UpdateOrder",
    "PayOrder",
    "CreatePayment",
    "GetPayment",
];

async fn drive_every_endpoint(emu: &Emu) {
    emu.seed_basic().await;
    emu.ctl("POST", "config", json!({"catalog_page_size": 2}))
        .await;
    emu.advance_seconds(60).await;

    // locations
    assert_eq!(emu.sq("GET", "/v2/locations", None).await.0, 200);
    assert_eq!(emu.sq("GET", "/v2/locations/main", None).await.0, 200);
    assert_eq!(emu.sq("GET", "/v2/locations/NOPE", None).await.0, 404);

    // catalog, paged
    let (_, p1) = emu
        .sq("GET", "/v2/catalog/list?types=ITEM_VARIATION", None)
        .await;
    let c = p1["cursor"].as_str().unwrap().to_owned();
    let (s, _) = emu
        .sq(
            "GET",
            &format!("/v2/catalog/list?types=ITEM_VARIATION&cursor={c}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    emu.sq("GET", "/v2/catalog/list?types=ITEM,ITEM_VARIATION", None)
        .await;
    let (s, found) = emu
        .sq(
            "POST",
            "/v2/catalog/search",
            Some(json!({"object_types": ["ITEM_VARIATION"],
                "query": {"exact_query": {"attribute_name": "sku", "attribute_value": "mug"}}})),
        )
        .await;
    assert_eq!((s, found["objects"].as_array().unwrap().len()), (200, 2));
    emu.sq(
        "POST",
        "/v2/catalog/search",
        Some(json!({"object_types": ["ITEM"], "begin_time": "2000-01-01T00:00:00Z"})),
    )
    .await;
    emu.sq(
        "POST",
        "/v2/catalog/batch-retrieve",
        Some(json!({"object_ids": ["ITEMTEE", "VARMUG", "MISSING"]})),
    )
    .await;

    // in-store activity: a sale, an offline sale replayed late, a return
    let sale = emu
        .ctl(
            "POST",
            "sales",
            json!({"location_id": "LEEDS0000001", "tender": "CARD",
                   "lines": [{"sku": "TEE-S", "quantity": "2"}],
                   "tax": {"name": "VAT", "percentage": "20", "inclusive": true}}),
        )
        .await;
    let sale_id = sale["order_id"].as_str().unwrap().to_owned();
    emu.ctl("POST", "tills/YORK00000001/offline", json!({}))
        .await;
    emu.ctl(
        "POST",
        "sales",
        json!({"location_id": "YORK00000001", "lines": [{"sku": "MUG", "quantity": "1"}]}),
    )
    .await;
    emu.ctl("POST", "clock", json!({"advance_hours": 30})).await;
    emu.ctl("POST", "tills/YORK00000001/online", json!({}))
        .await;
    emu.ctl(
        "POST",
        "returns",
        json!({"location_id": "LEEDS0000001", "source_order_id": sale_id,
               "lines": [{"sku": "TEE-S", "quantity": "1"}]}),
    )
    .await;

    // inventory, paged both ways, and a stale cursor
    let counts_req = json!({"location_ids": ["LEEDS0000001", "YORK00000001"], "limit": 1,
                            "updated_after": "2000-01-01T00:00:00Z"});
    let (_, c1) = emu
        .sq(
            "POST",
            "/v2/inventory/counts/batch-retrieve",
            Some(counts_req.clone()),
        )
        .await;
    let mut next = counts_req.clone();
    next["cursor"] = c1["cursor"].clone();
    emu.sq("POST", "/v2/inventory/counts/batch-retrieve", Some(next))
        .await;
    let mut foreign = json!({"location_ids": ["YORK00000001"]});
    foreign["cursor"] = c1["cursor"].clone();
    let (s, _) = emu
        .sq("POST", "/v2/inventory/counts/batch-retrieve", Some(foreign))
        .await;
    assert_eq!(s, 400);
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/inventory/counts/batch-retrieve",
            Some(json!({"limit": 5000})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, ch) = emu
        .sq(
            "POST",
            "/v2/inventory/changes/batch-retrieve",
            Some(json!({"location_ids": ["LEEDS0000001", "YORK00000001"], "limit": 3})),
        )
        .await;
    assert_eq!(s, 200);
    let mut next = json!({"location_ids": ["LEEDS0000001", "YORK00000001"], "limit": 3});
    next["cursor"] = ch["cursor"].clone();
    emu.sq("POST", "/v2/inventory/changes/batch-retrieve", Some(next))
        .await;

    // a web order for collection: create, pay externally, accept, pick, collect
    let (s, created) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(json!({"idempotency_key": "k-100000001", "order": {
                "location_id": "LEEDS0000001", "reference_id": "100000001",
                "source": {"name": "Tillbridge"},
                "line_items": [{"catalog_object_id": "VARTEEM", "quantity": "1",
                                "base_price_money": {"amount": 1200, "currency": "GBP"}}],
                "taxes": [{"uid": "vat", "name": "VAT", "percentage": "20", "type": "INCLUSIVE",
                           "scope": "ORDER"}],
                "fulfillments": [{"type": "PICKUP", "state": "PROPOSED", "pickup_details": {
                    "recipient": {"display_name": "Ada Lovelace", "email_address": "ada@example.com"},
                    "schedule_type": "ASAP", "note": "Web order 100000001"}}]}})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let oid = created["order"]["id"].as_str().unwrap().to_owned();
    let (s, pay) = emu
        .sq(
            "POST",
            "/v2/payments",
            Some(
                json!({"idempotency_key": "p-100000001", "source_id": "EXTERNAL",
                "amount_money": {"amount": 1200, "currency": "GBP"}, "order_id": oid,
                "external_details": {"type": "OTHER", "source": "Adobe Commerce"}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{pay}");
    let pid = pay["payment"]["id"].as_str().unwrap().to_owned();
    emu.sq("GET", &format!("/v2/payments/{pid}"), None).await;
    let (s, cur) = emu.sq("GET", &format!("/v2/orders/{oid}"), None).await;
    assert_eq!(s, 200);
    let version = cur["order"]["version"].as_i64().unwrap();
    let uid = cur["order"]["fulfillments"][0]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, upd) = emu
        .sq(
            "PUT",
            &format!("/v2/orders/{oid}"),
            Some(
                json!({"idempotency_key": "u-1", "order": {"location_id": "LEEDS0000001",
                "version": version, "fulfillments": [{"uid": uid, "state": "RESERVED"}]}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{upd}");
    let (s, _) = emu
        .sq(
            "PUT",
            &format!("/v2/orders/{oid}"),
            Some(
                json!({"idempotency_key": "u-2", "order": {"location_id": "LEEDS0000001",
                "version": version, "fulfillments": [{"uid": uid, "state": "PREPARED"}]}}),
            ),
        )
        .await;
    assert_eq!(s, 409, "a stale version is a conflict");
    emu.ctl(
        "POST",
        &format!("orders/{oid}/fulfillment"),
        json!({"action": "picked"}),
    )
    .await;
    emu.ctl(
        "POST",
        &format!("orders/{oid}/fulfillment"),
        json!({"action": "picked_up"}),
    )
    .await;

    // a shipment order paid later through PayOrder
    let (_, ship) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(json!({"idempotency_key": "k-100000002", "order": {
                "location_id": "YORK00000001", "reference_id": "100000002",
                "line_items": [{"name": "Gift wrap", "quantity": "1",
                                "base_price_money": {"amount": 300, "currency": "GBP"}}],
                "fulfillments": [{"type": "SHIPMENT", "shipment_details": {
                    "recipient": {"display_name": "Grace Hopper"}}}]}})),
        )
        .await;
    let sid = ship["order"]["id"].as_str().unwrap().to_owned();
    let (_, p2) = emu
        .sq(
            "POST",
            "/v2/payments",
            Some(json!({"idempotency_key": "p-100000002", "source_id": "EXTERNAL",
                "autocomplete": false, "amount_money": {"amount": 300, "currency": "GBP"},
                "order_id": sid, "external_details": {"type": "OTHER", "source": "Adobe Commerce"}})),
        )
        .await;
    let (s, _) = emu
        .sq(
            "POST",
            &format!("/v2/orders/{sid}/pay"),
            Some(json!({"idempotency_key": "pay-2", "payment_ids": [p2["payment"]["id"]]})),
        )
        .await;
    assert_eq!(s, 200);
    emu.ctl(
        "POST",
        &format!("orders/{sid}/fulfillment"),
        json!({"action": "shipped", "tracking_number": "JD000000001GB", "carrier": "Royal Mail"}),
    )
    .await;

    // error shapes on writes
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(
                json!({"idempotency_key": "k-100000001", "order": {"location_id": "YORK00000001",
                "line_items": [{"name": "x", "quantity": "1",
                                "base_price_money": {"amount": 1, "currency": "GBP"}}]}}),
            ),
        )
        .await;
    assert_eq!(s, 400, "idempotency key reused for another body");
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(json!({"order": {"location_id": "LEEDS0000001"}})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/payments",
            Some(
                json!({"idempotency_key": "p-x", "source_id": "cnon:card-nonce-ok",
                        "amount_money": {"amount": 1, "currency": "GBP"}}),
            ),
        )
        .await;
    assert_eq!(s, 400);
    emu.sq("GET", "/v2/orders/UNKNOWN", None).await;
    emu.sq(
        "POST",
        "/v2/orders/batch-retrieve",
        Some(json!({"order_ids": [oid, sid, "UNKNOWN"]})),
    )
    .await;

    // SearchOrders: updated_at window paged ASC, entries, and its rules
    let search = json!({"location_ids": ["LEEDS0000001", "YORK00000001"], "limit": 2,
        "query": {"filter": {"date_time_filter": {"updated_at": {"start_at": "2026-01-01T00:00:00Z"}},
                             "state_filter": {"states": ["OPEN", "COMPLETED", "CANCELED"]}},
                  "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}});
    let (_, o1) = emu
        .sq("POST", "/v2/orders/search", Some(search.clone()))
        .await;
    let mut next = search.clone();
    next["cursor"] = o1["cursor"].clone();
    emu.sq("POST", "/v2/orders/search", Some(next)).await;
    emu.sq(
        "POST",
        "/v2/orders/search",
        Some(json!({"location_ids": ["LEEDS0000001"], "return_entries": true})),
    )
    .await;
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/orders/search",
            Some(json!({"location_ids": ["LEEDS0000001"], "query": {
                "filter": {"date_time_filter": {"updated_at": {"start_at": "2026-01-01T00:00:00Z"}}},
                "sort": {"sort_field": "CREATED_AT"}}})),
        )
        .await;
    assert_eq!(s, 400, "the sort field must match the date filter");
    let eleven: Vec<String> = (0..11).map(|i| format!("L{i}")).collect();
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/orders/search",
            Some(json!({"location_ids": eleven})),
        )
        .await;
    assert_eq!(s, 400, "at most 10 locations");

    // auth, version header, rate limit and outage faults
    let (s, _) = emu
        .sq_with("GET", "/v2/locations", None, Some("wrong-token"))
        .await;
    assert_eq!(s, 401);
    let (s, _) = emu.sq_with("GET", "/v2/locations", None, None).await;
    assert_eq!(s, 401);
    emu.ctl(
        "POST",
        "faults",
        json!({"rules": [
            {"path": "/v2/inventory", "kind": {"type": "status", "status": 429, "retry_after": 1}, "times": 1},
            {"path": "/v2/orders/search", "kind": {"type": "status", "status": 503}, "times": 1}]}),
    )
    .await;
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/inventory/counts/batch-retrieve",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 429);
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/orders/search",
            Some(json!({"location_ids": ["YORK00000001"]})),
        )
        .await;
    assert_eq!(s, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_emulator_response_validates_against_squares_openapi_document() {
    let spec = Spec::load(&square_spec_path()).unwrap();
    let emu = Emu::start().await;
    drive_every_endpoint(&emu).await;

    let calls = emu.ctl("GET", "calls", json!(null)).await;
    let calls = calls["calls"].as_array().unwrap().clone();
    let mut violations = Vec::new();
    let mut per_op: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for call in &calls {
        let op = call["operation"]
            .as_str()
            .unwrap_or_else(|| panic!("unrouted call {call}"));
        let status = u16::try_from(call["status"].as_u64().unwrap()).unwrap();
        per_op.entry(op.to_owned()).or_default().insert(status);
        let schema = spec
            .response_schema(op, status)
            .unwrap_or_else(|| panic!("{op} has no response schema in square-api.json"));
        for v in spec.validate(schema, &call["response_body"]) {
            violations.push(format!(
                "{} {} -> {status}: {v}",
                call["method"], call["path"]
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "schema violations:\n{}",
        violations.join("\n")
    );

    let covered: BTreeSet<&str> = per_op.keys().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = OPERATIONS.iter().copied().collect();
    assert_eq!(covered, wanted, "every implemented operation is exercised");
    let statuses: BTreeSet<u16> = per_op.values().flatten().copied().collect();
    assert_eq!(
        statuses,
        BTreeSet::from([200, 400, 401, 404, 409, 429, 503]),
        "success and every error shape were validated"
    );
    assert!(calls.len() >= 35, "recorded {} calls", calls.len());

    // Webhook events: each against the schema whose x-webhook.event names its type.
    let hooks = emu.ctl("GET", "webhooks", json!(null)).await;
    let events = hooks["events"].as_array().unwrap();
    let mut kinds = BTreeSet::new();
    for e in events {
        let kind = e["type"].as_str().unwrap();
        kinds.insert(kind.to_owned());
        let name = event_schema_name(&spec, kind).unwrap_or_else(|| panic!("no schema for {kind}"));
        let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        let schema = spec.schema(&name).unwrap();
        let v = spec.validate(schema, &body);
        assert!(v.is_empty(), "{kind}: {v:?}");
    }
    assert_eq!(
        kinds,
        BTreeSet::from(
            [
                "catalog.version.updated",
                "inventory.count.updated",
                "order.created",
                "order.fulfillment.updated",
                "order.updated",
                "payment.created"
            ]
            .map(String::from)
        )
    );
    emu.handle.stop().await;
}

/// The component schema whose `x-webhook.event` is `kind`, found in the document itself.
fn event_schema_name(spec: &Spec, kind: &str) -> Option<String> {
    for candidate in [
        "CatalogVersionUpdatedEvent",
        "InventoryCountUpdatedEvent",
        "OrderCreatedEvent",
        "OrderUpdatedEvent",
        "OrderFulfillmentUpdatedEvent",
        "PaymentCreatedEvent",
    ] {
        let s = spec.schema(candidate)?;
        if s["x-webhook"]["event"].as_str() == Some(kind) {
            return Some(candidate.to_owned());
        }
    }
    None
}

#[tokio::test]
async fn the_validator_catches_a_response_that_breaks_the_schema() {
    // A negative control: the same machinery must flag a wrong body.
    let spec = Spec::load(&square_spec_path()).unwrap();
    let schema = spec
        .response_schema("BatchRetrieveInventoryCounts", 200)
        .unwrap();
    let bad = json!({"counts": [{"catalog_object_id": "V", "quantity": 5, "state": "LOST",
                                 "location_id": "L", "calculated_at": "x", "colour": "red"}]});
    let v: Vec<String> = spec
        .validate(schema, &bad)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        v,
        vec![
            "$.counts[0].colour: property not declared in the schema",
            "$.counts[0].quantity: expected a string, got a number",
            "$.counts[0].state: `LOST` is not one of the enum values",
        ]
    );
}
