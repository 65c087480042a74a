//! Orders and documents over HTTP: a storefront checkout reserves stock, the back office
//! invoices, ships (deducting the source), refunds and cancels with Magento's side effects,
//! and the REST shapes show customer, totals, comments and history.
#![allow(clippy::unwrap_used)]

mod common;

use common::Emu;
use common::scenario::{checkout, seed};
use serde_json::json;

async fn salable(emu: &Emu, sku: &str) -> serde_json::Value {
    emu.call(
        "GET",
        &format!("/V1/inventory/get-product-salable-quantity/{sku}/2"),
        None,
    )
    .await
    .body
}

#[tokio::test]
async fn a_checkout_reserves_and_shows_up_in_an_updated_at_search() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let id = checkout(
        &emu,
        "000000007",
        json!([{"sku": "TEE-S", "qty": 3, "price": 15, "tax_percent": 20}]),
    )
    .await;
    assert_eq!(salable(&emu, "TEE-S").await, json!(17));
    let r = emu
        .call(
            "GET",
            "/V1/tillbridge/reservations?sku=TEE-S&stockId=2",
            None,
        )
        .await;
    assert_eq!(r.body[0]["quantity"], json!(-3));
    assert_eq!(
        r.body[0]["metadata"],
        json!(
            "{\"event_type\":\"order_placed\",\"object_type\":\"order\",\"object_id\":\"\",\"object_increment_id\":\"000000007\"}"
        )
    );
    let o = emu
        .call("GET", &format!("/V1/orders/{id}"), None)
        .await
        .body;
    assert_eq!(o["increment_id"], json!("000000007"));
    assert_eq!(
        (o["state"].clone(), o["status"].clone()),
        (json!("new"), json!("pending"))
    );
    assert_eq!(o["subtotal"], json!(45));
    assert_eq!(o["tax_amount"], json!(9.9));
    assert_eq!(o["shipping_amount"], json!(4.5));
    assert_eq!(o["grand_total"], json!(59.4));
    assert_eq!(o["customer_email"], json!("ann@example.com"));
    assert_eq!(o["items"][0]["row_total_incl_tax"], json!(54));
    assert_eq!(
        o["extension_attributes"]["shipping_assignments"][0]["stock_id"],
        json!(2)
    );
    assert_eq!(o["created_at"], json!("2026-01-05 09:00:00"));

    emu.ctl("POST", "clock", json!({"advance_minutes": 10}))
        .await;
    emu.call(
        "POST",
        &format!("/V1/orders/{id}/comments"),
        Some(json!({"statusHistory": {"comment": "Synced", "is_customer_notified": 0, "is_visible_on_front": 0, "parent_id": id}})),
    )
    .await;
    let q = "/V1/orders?searchCriteria[filter_groups][0][filters][0][field]=updated_at&searchCriteria[filter_groups][0][filters][0][value]=2026-01-05 09:05:00&searchCriteria[filter_groups][0][filters][0][condition_type]=gteq&searchCriteria[pageSize]=10&fields=items[increment_id,updated_at],total_count";
    let r = emu.call("GET", q, None).await;
    assert_eq!(
        r.body,
        json!({"items": [{"increment_id": "000000007", "updated_at": "2026-01-05 09:10:00"}], "total_count": 1})
    );
    let r = emu
        .call("GET", &format!("/V1/orders/{id}/comments"), None)
        .await;
    assert_eq!(r.body["items"][0]["comment"], json!("Synced"));
    assert_eq!(r.body["items"][0]["status"], json!("pending"));
}

#[tokio::test]
async fn invoice_and_ship_complete_the_order_and_deduct_the_source() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let id = checkout(
        &emu,
        "000000008",
        json!([{"sku": "MUG", "qty": 2, "price": 8.25}]),
    )
    .await;
    let inv = emu
        .call(
            "POST",
            &format!("/V1/order/{id}/invoice"),
            Some(json!({"capture": true})),
        )
        .await;
    assert_eq!(inv.status, 200);
    let o = emu
        .call("GET", &format!("/V1/orders/{id}"), None)
        .await
        .body;
    assert_eq!(o["state"], json!("processing"));
    assert_eq!(o["total_paid"], json!(21.9)); // 16.50 + 4.50 shipping + 20 % tax on shipping
    let ship = emu
        .call(
            "POST",
            &format!("/V1/order/{id}/ship"),
            Some(
                json!({"tracks": [{"track_number": "1Z1", "title": "UPS", "carrier_code": "ups"}],
                        "arguments": {"extension_attributes": {"source_code": "store-01"}}}),
            ),
        )
        .await;
    assert_eq!(ship.status, 200, "{}", ship.body);
    let s = emu
        .call("GET", &format!("/V1/shipment/{}", ship.body), None)
        .await
        .body;
    assert_eq!(s["extension_attributes"]["source_code"], json!("store-01"));
    assert_eq!(s["tracks"][0]["track_number"], json!("1Z1"));
    assert_eq!(s["total_qty"], json!(2));
    let o = emu
        .call("GET", &format!("/V1/orders/{id}"), None)
        .await
        .body;
    assert_eq!(
        (o["state"].clone(), o["status"].clone()),
        (json!("complete"), json!("complete"))
    );
    let items = emu
        .call("GET", "/V1/inventory/source-items?searchCriteria[filter_groups][0][filters][0][field]=sku&searchCriteria[filter_groups][0][filters][0][value]=MUG", None)
        .await;
    assert_eq!(items.body["items"][0]["quantity"], json!(3));
    assert_eq!(salable(&emu, "MUG").await, json!(3));
    let cleaned = emu
        .ctl("POST", "cron/cleanup-reservations", json!({}))
        .await;
    assert_eq!(
        cleaned["deleted_reservation_ids"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_held_order_refuses_documents_and_shipping_more_than_the_source_has_fails() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let id = checkout(
        &emu,
        "000000009",
        json!([{"sku": "MUG", "qty": 2, "price": 8}]),
    )
    .await;
    assert_eq!(
        emu.call("POST", &format!("/V1/orders/{id}/hold"), None)
            .await
            .body,
        json!(true)
    );
    let r = emu
        .call("POST", &format!("/V1/order/{id}/ship"), Some(json!({})))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["message"],
        json!(
            "Shipment Document Validation Error(s):\nThe order does not allow a shipment to be created."
        )
    );
    assert_eq!(
        emu.call("POST", &format!("/V1/orders/{id}/cancel"), None)
            .await
            .body,
        json!(false)
    );
    emu.call("POST", &format!("/V1/orders/{id}/unhold"), None)
        .await;
    // The POS pushes 1 while 2 are on order: the shipment cannot be saved (spec §5.5).
    emu.call(
        "POST",
        "/V1/inventory/source-items",
        Some(json!({"sourceItems": [{"sku": "MUG", "source_code": "store-01", "quantity": 1, "status": 1}]})),
    )
    .await;
    let r = emu
        .call(
            "POST",
            &format!("/V1/order/{id}/ship"),
            Some(json!({"arguments": {"extension_attributes": {"source_code": "store-01"}}})),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            400,
            json!({"message": "Could not save a shipment, see error log for details"})
        )
    );
    assert_eq!(
        emu.call("POST", &format!("/V1/orders/{id}/cancel"), None)
            .await
            .body,
        json!(true)
    );
    // The index still says "not salable" (1 on hand, 2 reserved) until the salability consumer
    // runs, as in Magento.
    assert_eq!(salable(&emu, "MUG").await, json!(0));
    emu.ctl("POST", "consumers/run", json!({})).await;
    assert_eq!(salable(&emu, "MUG").await, json!(1));
}

#[tokio::test]
async fn a_refund_returned_to_stock_restores_the_source() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let id = checkout(
        &emu,
        "000000010",
        json!([{"sku": "TEE-S", "qty": 2, "price": 10}]),
    )
    .await;
    emu.call("POST", &format!("/V1/order/{id}/invoice"), Some(json!({})))
        .await;
    emu.call(
        "POST",
        &format!("/V1/order/{id}/ship"),
        Some(json!({"arguments": {"extension_attributes": {"source_code": "store-01"}}})),
    )
    .await;
    let r = emu
        .call(
            "POST",
            &format!("/V1/order/{id}/refund"),
            Some(json!({"items": [{"order_item_id": 1, "qty": 1}],
                        "arguments": {"shipping_amount": 0, "extension_attributes": {"return_to_stock_items": [1]}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let memo = emu
        .call("GET", &format!("/V1/creditmemo/{}", r.body), None)
        .await
        .body;
    assert_eq!(memo["grand_total"], json!(10));
    assert_eq!(memo["items"][0]["qty"], json!(1));
    let items = emu
        .call("GET", "/V1/inventory/source-items?searchCriteria[filter_groups][0][filters][0][field]=sku&searchCriteria[filter_groups][0][filters][0][value]=TEE-S", None)
        .await;
    assert_eq!(items.body["items"][0]["quantity"], json!(19));
    let o = emu
        .call("GET", &format!("/V1/orders/{id}"), None)
        .await
        .body;
    assert_eq!(o["total_refunded"], json!(10));
    assert_eq!(o["items"][0]["qty_refunded"], json!(1));
}

#[tokio::test]
async fn async_bulk_source_items_apply_when_the_consumer_runs() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let r = emu
        .call(
            "POST",
            "/rest/all/async/bulk/V1/inventory/source-items",
            Some(json!([{"sourceItems": [{"sku": "MUG", "source_code": "store-01", "quantity": 40, "status": 1}]},
                        {"sourceItems": [{"sku": "MUG", "source_code": "nowhere", "quantity": 1, "status": 1}]}])),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["errors"], json!(false));
    assert_eq!(r.body["request_items"][1]["status"], json!("accepted"));
    let uuid = r.body["bulk_uuid"].as_str().unwrap().to_owned();
    assert_eq!(salable(&emu, "MUG").await, json!(5));
    let st = emu
        .call("GET", &format!("/V1/bulk/{uuid}/status"), None)
        .await
        .body;
    assert_eq!(st["operations_list"][0]["status"], json!(4));
    emu.ctl(
        "POST",
        "consumers/run",
        json!({"consumer": "async.operations.all"}),
    )
    .await;
    assert_eq!(salable(&emu, "MUG").await, json!(40));
    let st = emu
        .call("GET", &format!("/V1/bulk/{uuid}/status"), None)
        .await
        .body;
    assert_eq!(st["operations_list"][0]["status"], json!(1));
    assert_eq!(st["operations_list"][1]["status"], json!(3));
    assert_eq!(
        st["operations_list"][1]["result_message"],
        json!("Could not save Source Item")
    );
    let n = emu
        .call("GET", &format!("/V1/bulk/{uuid}/operation-status/3"), None)
        .await
        .body;
    assert_eq!(n, json!(1));
}

#[tokio::test]
async fn tillbridge_reservation_routes_append_and_list_inconsistencies() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let id = checkout(
        &emu,
        "000000011",
        json!([{"sku": "TEE-S", "qty": 4, "price": 10}]),
    )
    .await;
    assert!(id > 0);
    emu.ops(json!([{"op": "delete_reservations", "where": "all"}]))
        .await;
    let r = emu
        .call("GET", "/V1/tillbridge/inconsistencies", None)
        .await;
    assert_eq!(
        r.body,
        json!([{"order_increment_id": "000000011", "order_id": id, "order_status": "pending", "sku": "TEE-S",
                "stock_id": 2, "quantity": 4, "compensation": -4,
                "compensation_argument": "000000011:TEE-S:-4.000000:2"}])
    );
    let r = emu
        .call(
            "POST",
            "/V1/tillbridge/reservations",
            Some(json!({"reservations": [{"stock_id": 2, "sku": "TEE-S", "quantity": -4,
                "metadata": {"event_type": "manual_compensation", "object_type": "order", "object_id": id.to_string(), "object_increment_id": "000000011"}}]})),
        )
        .await;
    assert_eq!((r.status, r.body), (200, json!([])));
    assert_eq!(
        emu.call("GET", "/V1/tillbridge/inconsistencies", None)
            .await
            .body,
        json!([])
    );
    assert_eq!(
        emu.call("GET", "/V1/tillbridge/reservations-sum/TEE-S/2", None)
            .await
            .body,
        json!(-4)
    );
    let r = emu
        .call(
            "POST",
            "/V1/tillbridge/reservations",
            Some(json!({"reservations": []})),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (400, json!({"message": "Input data is empty"}))
    );
}

#[tokio::test]
async fn a_refused_checkout_answers_magentos_reason() {
    let emu = Emu::start().await;
    seed(&emu).await;
    let url = format!("{}/__emulator/orders", emu.base);
    let r = emu
        .http
        .post(&url)
        .json(&json!({"items": [{"sku": "MUG", "qty": 9, "price": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], json!("Not enough items for sale"));
}
