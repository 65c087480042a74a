//! Orders with several fulfilments: `ENTRY_LIST` entries checked against the order's line
//! items as Square does, a seller splitting a fulfilment into parcels (the control API's
//! `orders/{id}/split`), parcels completed one at a time through `UpdateOrder`, and the stock
//! each parcel takes off the shelf. Every recorded response and webhook body is validated
//! against `square-api.json`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Emu, square_spec_path};
use serde_json::{Value, json};
use tillbridge_square_emulator::contract::Spec;

/// (code, field) of every error in a Square error body.
fn errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_owned(),
                e["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn order_with(fulfilment: Value) -> Value {
    json!({"order": {
        "location_id": "LEEDS0000001",
        "line_items": [
            {"uid": "tee-s", "catalog_object_id": "VARTEES", "quantity": "2"},
            {"uid": "tee-m", "catalog_object_id": "VARTEEM", "quantity": "1"}],
        "fulfillments": [fulfilment]}})
}

async fn in_stock(emu: &Emu, variation: &str, location: &str) -> String {
    let v = emu.ctl("GET", "stock", json!(null)).await;
    v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["catalog_object_id"] == json!(variation)
                && c["location_id"] == json!(location)
                && c["state"] == json!("IN_STOCK")
        })
        .map(|c| c["quantity"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_list_entries_are_checked_against_the_order_lines_and_every_fault_is_named() {
    let emu = Emu::start().await;
    emu.seed_basic().await;

    // An unknown line item, a quantity that is not positive, one that is not a number, and
    // entries adding up to more than their line: all reported at once, each with its field.
    let (s, body) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(order_with(
                json!({"type": "SHIPMENT", "line_item_application": "ENTRY_LIST",
                "entries": [
                    {"line_item_uid": "nope", "quantity": "1"},
                    {"line_item_uid": "tee-m", "quantity": "0"},
                    {"line_item_uid": "tee-m", "quantity": "lots"},
                    {"line_item_uid": "tee-s", "quantity": "2"},
                    {"line_item_uid": "tee-s", "quantity": "1"}]}),
            )),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let found = errors(&body);
    let want = [
        (
            "NOT_FOUND",
            "order.fulfillments[0].entries[0].line_item_uid",
        ),
        ("INVALID_VALUE", "order.fulfillments[0].entries[1].quantity"),
        ("INVALID_VALUE", "order.fulfillments[0].entries[2].quantity"),
        ("INVALID_VALUE", "order.fulfillments[0].entries"),
    ];
    for (code, field) in want {
        assert!(
            found.contains(&(code.to_owned(), field.to_owned())),
            "{code} {field} missing from {found:?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        body.to_string()
            .contains("add up to 3, more than its quantity 2")
    );

    // ALL with entries, and an application Square does not know.
    let (s, body) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(order_with(
                json!({"type": "SHIPMENT", "line_item_application": "ALL",
                "entries": [{"line_item_uid": "tee-s", "quantity": "1"}]}),
            )),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        errors(&body),
        vec![(
            "INVALID_VALUE".to_owned(),
            "order.fulfillments[0].entries".to_owned()
        )]
    );
    let (s, body) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(order_with(
                json!({"type": "SHIPMENT", "line_item_application": "SOME"}),
            )),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        errors(&body),
        vec![(
            "INVALID_ENUM_VALUE".to_owned(),
            "order.fulfillments[0].line_item_application".to_owned()
        )]
    );

    // A valid ENTRY_LIST may leave units out (another fulfilment may take them later).
    let (s, body) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(order_with(
                json!({"type": "SHIPMENT", "line_item_application": "ENTRY_LIST",
                "entries": [{"line_item_uid": "tee-s", "quantity": "1"}]}),
            )),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let f = &body["order"]["fulfillments"][0];
    assert_eq!(f["line_item_application"], json!("ENTRY_LIST"));
    assert_eq!(f["entries"][0]["line_item_uid"], json!("tee-s"));
    assert_eq!(f["entries"][0]["quantity"], json!("1"));
    assert!(f["entries"][0]["uid"].is_string());

    // A seller's split must put every unit in exactly one parcel.
    let (_, all) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(order_with(json!({"type": "SHIPMENT"}))),
        )
        .await;
    let oid = all["order"]["id"].as_str().unwrap().to_owned();
    let res = emu
        .http
        .post(format!("{}/__emulator/orders/{oid}/split", emu.base))
        .json(&json!({"parcels": [[{"sku": "TEE-S", "quantity": 1}], [{"sku": "TEE-M", "quantity": 1}]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        errors(&body),
        vec![("INVALID_VALUE".to_owned(), "parcels".to_owned())]
    );
    assert!(
        body.to_string()
            .contains("add up to 1, less than its quantity 2"),
        "{body}"
    );
    let res = emu
        .http
        .post(format!("{}/__emulator/orders/{oid}/split", emu.base))
        .json(&json!({"parcels": [[{"sku": "MUG", "quantity": 1}], [{"sku": "TEE-M", "quantity": 1}]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400, "the order sells no mug");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        errors(&body),
        vec![("NOT_FOUND".to_owned(), "parcels[0][0]".to_owned())]
    );
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_order_completes_parcel_by_parcel_and_each_parcel_leaves_the_shelf_once() {
    let spec = Spec::load(&square_spec_path()).unwrap();
    let emu = Emu::start().await;
    emu.seed_basic().await;
    let (s, created) = emu
        .sq(
            "POST",
            "/v2/orders",
            Some(json!({"idempotency_key": "k-split", "order": {
                "location_id": "LEEDS0000001", "reference_id": "100000009",
                "line_items": [
                    {"catalog_object_id": "VARTEES", "quantity": "2",
                     "base_price_money": {"amount": 1200, "currency": "GBP"}},
                    {"catalog_object_id": "VARTEEM", "quantity": "1",
                     "base_price_money": {"amount": 1200, "currency": "GBP"}}],
                "fulfillments": [{"type": "SHIPMENT", "shipment_details": {
                    "recipient": {"display_name": "Grace Hopper"}}}]}})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let oid = created["order"]["id"].as_str().unwrap().to_owned();
    let (s, _) = emu
        .sq(
            "POST",
            "/v2/payments",
            Some(
                json!({"idempotency_key": "p-split", "source_id": "EXTERNAL",
                "amount_money": {"amount": 3600, "currency": "GBP"}, "order_id": oid,
                "external_details": {"type": "OTHER", "source": "Adobe Commerce"}}),
            ),
        )
        .await;
    assert_eq!(s, 200);
    emu.ctl(
        "POST",
        &format!("orders/{oid}/fulfillment"),
        json!({"action": "accepted"}),
    )
    .await;

    // The seller ships the small tees now and the medium one when it turns up.
    let split = emu
        .ctl(
            "POST",
            &format!("orders/{oid}/split"),
            json!({"parcels": [[{"sku": "TEE-S", "quantity": "2"}],
                               [{"variation_id": "VARTEEM", "quantity": 1}]]}),
        )
        .await;
    let fs = split["order"]["fulfillments"].as_array().unwrap().clone();
    assert_eq!(fs.len(), 2);
    for f in &fs {
        assert_eq!(f["line_item_application"], json!("ENTRY_LIST"));
        assert_eq!(f["state"], json!("RESERVED"), "the split keeps the state");
        assert_eq!(
            f["shipment_details"]["recipient"]["display_name"],
            json!("Grace Hopper")
        );
    }
    let first = fs[0]["uid"].as_str().unwrap().to_owned();
    let second = fs[1]["uid"].as_str().unwrap().to_owned();

    let update = |version: i64, uid: &str, key: &str| {
        json!({"idempotency_key": key, "order": {"location_id": "LEEDS0000001",
            "version": version, "fulfillments": [{"uid": uid, "state": "COMPLETED",
            "shipment_details": {"tracking_number": format!("RM-{key}"), "carrier": "Royal Mail"}}]}})
    };
    let version = split["order"]["version"].as_i64().unwrap();
    let (s, after) = emu
        .sq(
            "PUT",
            &format!("/v2/orders/{oid}"),
            Some(update(version, &first, "one")),
        )
        .await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["order"]["state"], json!("OPEN"), "one parcel is left");
    assert_eq!(
        after["order"]["fulfillments"][0]["state"],
        json!("COMPLETED")
    );
    assert_eq!(
        after["order"]["fulfillments"][0]["shipment_details"]["tracking_number"],
        json!("RM-one")
    );
    assert_eq!(
        after["order"]["fulfillments"][1]["state"],
        json!("RESERVED")
    );
    assert_eq!(in_stock(&emu, "VARTEES", "LEEDS0000001").await, "8");
    assert_eq!(in_stock(&emu, "VARTEEM", "LEEDS0000001").await, "4");

    let version = after["order"]["version"].as_i64().unwrap();
    let (s, done) = emu
        .sq(
            "PUT",
            &format!("/v2/orders/{oid}"),
            Some(update(version, &second, "two")),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["order"]["state"], json!("COMPLETED"));
    assert_eq!(in_stock(&emu, "VARTEES", "LEEDS0000001").await, "8");
    assert_eq!(in_stock(&emu, "VARTEEM", "LEEDS0000001").await, "3");
    let (s, _) = emu.sq("GET", &format!("/v2/orders/{oid}"), None).await;
    assert_eq!(s, 200);
    let (s, changes) = emu
        .sq(
            "POST",
            "/v2/inventory/changes/batch-retrieve",
            Some(json!({"location_ids": ["LEEDS0000001"], "types": ["ADJUSTMENT"]})),
        )
        .await;
    assert_eq!(s, 200);
    let sold: Vec<(String, String)> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["adjustment"]["to_state"] == json!("SOLD"))
        .map(|c| {
            (
                c["adjustment"]["catalog_object_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                c["adjustment"]["quantity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sold,
        vec![
            ("VARTEES".to_owned(), "2".to_owned()),
            ("VARTEEM".to_owned(), "1".to_owned())
        ],
        "each parcel leaves the shelf once, when it is handed over"
    );

    // Every response and event on the way matches Square's document.
    let calls = emu.ctl("GET", "calls", json!(null)).await;
    let mut violations = Vec::new();
    for call in calls["calls"].as_array().unwrap() {
        let op = call["operation"].as_str().unwrap();
        let status = u16::try_from(call["status"].as_u64().unwrap()).unwrap();
        let schema = spec.response_schema(op, status).unwrap();
        for v in spec.validate(schema, &call["response_body"]) {
            violations.push(format!("{op} {status}: {v}"));
        }
    }
    let hooks = emu.ctl("GET", "webhooks", json!(null)).await;
    for e in hooks["events"].as_array().unwrap() {
        let kind = e["type"].as_str().unwrap();
        let name = match kind {
            "order.updated" => "OrderUpdatedEvent",
            "order.fulfillment.updated" => "OrderFulfillmentUpdatedEvent",
            "order.created" => "OrderCreatedEvent",
            "payment.created" => "PaymentCreatedEvent",
            "inventory.count.updated" => "InventoryCountUpdatedEvent",
            _ => continue,
        };
        let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        for v in spec.validate(spec.schema(name).unwrap(), &body) {
            violations.push(format!("{kind}: {v}"));
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
    emu.handle.stop().await;
}
