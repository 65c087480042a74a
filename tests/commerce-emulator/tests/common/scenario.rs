//! A storefront-to-back-office scenario that touches every route family: sources, stocks,
//! links, source items, salability, source selection, a checkout, comments, hold, invoice,
//! ship, refund, cancel, document reads, bulk, tokens and Tillbridge's reservation routes,
//! including Magento's error answers. Used by the order tests and the contract check.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value, json};

use super::Emu;

/// The world: source `store-01` (GB) on stock 2 with website `base`, products TEE-S (simple),
/// MUG (simple) and EBOOK (virtual).
pub async fn seed(emu: &Emu) {
    emu.ops(json!([
        {"op": "create_product", "sku": "TEE-S", "type": "simple"},
        {"op": "create_product", "sku": "MUG", "type": "simple"},
        {"op": "create_product", "sku": "EBOOK", "type": "virtual"}
    ]))
    .await;
    let r = emu
        .call(
            "POST",
            "/V1/inventory/sources",
            Some(json!({"source": {"source_code": "store-01", "name": "Leeds Briggate", "enabled": true,
                                   "country_id": "GB", "postcode": "LS1 6AA", "city": "Leeds"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = emu
        .call(
            "POST",
            "/V1/inventory/stocks",
            Some(json!({"stock": {"name": "UK", "extension_attributes": {"sales_channels": [{"type": "website", "code": "base"}]}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stock = r.body.as_i64().unwrap();
    let r = emu
        .call(
            "POST",
            "/V1/inventory/stock-source-links",
            Some(json!({"links": [{"stock_id": stock, "source_code": "store-01", "priority": 1}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = emu
        .call(
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": [
                {"sku": "TEE-S", "source_code": "store-01", "quantity": 20, "status": 1},
                {"sku": "MUG", "source_code": "store-01", "quantity": 5, "status": 1},
                {"sku": "EBOOK", "source_code": "store-01", "quantity": 100, "status": 1}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Places an order through the storefront control route; returns its entity id.
pub async fn checkout(emu: &Emu, increment_id: &str, items: Value) -> u64 {
    let o = emu
        .ctl(
            "POST",
            "orders",
            json!({"increment_id": increment_id,
                   "customer": {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"},
                   "items": items,
                   "shipping": {"amount": 4.5, "tax_percent": 20},
                   "address": {"street": ["2 Park Row"], "city": "Leeds", "postcode": "LS1 5HD"}}),
        )
        .await;
    o["entity_id"].as_u64().unwrap()
}

/// Runs every route family once (successes and Magento's errors).
pub async fn run_everything(emu: &Emu) {
    seed(emu).await;
    let q = "searchCriteria[filter_groups][0][filters][0][field]=sku&searchCriteria[filter_groups][0][filters][0][value]=TEE-S&searchCriteria[sortOrders][0][field]=quantity&searchCriteria[sortOrders][0][direction]=DESC&searchCriteria[pageSize]=10&searchCriteria[currentPage]=1";
    for path in [
        "/V1/inventory/sources".to_owned(),
        "/V1/inventory/sources/store-01".to_owned(),
        "/V1/inventory/sources/nope".to_owned(),
        "/V1/inventory/stocks".to_owned(),
        "/V1/inventory/stocks/2".to_owned(),
        "/V1/inventory/stocks/99".to_owned(),
        "/V1/inventory/stock-source-links?searchCriteria[pageSize]=50".to_owned(),
        "/V1/inventory/stock-source-links".to_owned(),
        format!("/V1/inventory/source-items?{q}"),
        "/V1/inventory/get-sources-assigned-to-stock-ordered-by-priority/2".to_owned(),
        "/V1/inventory/get-product-salable-quantity/TEE-S/2".to_owned(),
        "/V1/inventory/get-product-salable-quantity/UNKNOWN/2".to_owned(),
        "/V1/inventory/is-product-salable/TEE-S/2".to_owned(),
        "/V1/inventory/are-products-salable?skus[0]=TEE-S&skus[1]=MUG&stockId=2".to_owned(),
        "/V1/inventory/is-product-salable-for-requested-qty/MUG/2/9".to_owned(),
        "/V1/inventory/are-product-salable-for-requested-qty/?skuRequests[0][sku]=MUG&skuRequests[0][qty]=2&stockId=2".to_owned(),
        "/V1/inventory/stock-resolver/website/base".to_owned(),
        "/V1/inventory/stock-resolver/website/nowhere".to_owned(),
        "/V1/inventory/source-selection-algorithm-list".to_owned(),
    ] {
        emu.call("GET", &path, None).await;
    }
    emu.call(
        "POST",
        "/V1/inventory/source-selection-algorithm-result",
        Some(json!({"inventoryRequest": {"stock_id": 2, "items": [{"sku": "TEE-S", "qty": 3}]}, "algorithmCode": "priority"})),
    )
    .await;
    emu.call(
        "POST",
        "/V1/inventory/source-items",
        Some(json!({"sourceItems": [{"sku": " ", "source_code": "store 1", "quantity": 1, "status": 1}]})),
    )
    .await;
    emu.call(
        "POST",
        "/V1/inventory/source-items",
        Some(json!({"sourceItems": []})),
    )
    .await;
    emu.call(
        "POST",
        "/V1/inventory/source-items",
        Some(json!({"sourceItems": [{"sku": "TEE-S", "source_code": "store-01", "quantity": "lots", "status": 1}]})),
    )
    .await;
    emu.call(
        "PUT",
        "/V1/inventory/sources/store-01",
        Some(json!({"source": {"name": "Leeds Briggate", "country_id": "GB", "postcode": "LS1 6AA", "phone": "0113"}})),
    )
    .await;
    emu.call(
        "POST",
        "/V1/inventory/sources",
        Some(json!({"source": {"source_code": "x"}})),
    )
    .await;
    emu.call(
        "PUT",
        "/V1/inventory/stocks/2",
        Some(json!({"stock": {"name": "UK", "extension_attributes": {"sales_channels": [{"type": "website", "code": "base"}]}}})),
    )
    .await;
    emu.call("DELETE", "/V1/inventory/stocks/1", None).await;
    emu.call("DELETE", "/V1/inventory/stocks/77", None).await;
    emu.call(
        "POST",
        "/V1/inventory/stock-source-links-delete",
        Some(json!({"links": [{"stock_id": 1, "source_code": "default"}]})),
    )
    .await;
    emu.call(
        "POST",
        "/V1/inventory/source-items-delete",
        Some(json!({"sourceItems": [{"sku": "NOPE", "source_code": "store-01"}]})),
    )
    .await;

    // A checkout, then the back office.
    let id = checkout(
        emu,
        "000000101",
        json!([{"sku": "TEE-S", "qty": 3, "price": 15, "tax_percent": 20, "name": "Organic Tee"},
               {"sku": "MUG", "qty": 2, "price": 8.25, "tax_percent": 20}]),
    )
    .await;
    let id2 = checkout(
        emu,
        "000000102",
        json!([{"sku": "EBOOK", "qty": 1, "price": 5}]),
    )
    .await;
    let id3 = checkout(
        emu,
        "000000103",
        json!([{"sku": "MUG", "qty": 1, "price": 8.25}]),
    )
    .await;
    emu.ctl("POST", "clock", json!({"advance_minutes": 5}))
        .await;
    let orders_q = "/V1/orders?searchCriteria[filter_groups][0][filters][0][field]=updated_at&searchCriteria[filter_groups][0][filters][0][value]=2026-01-05 09:00:00&searchCriteria[filter_groups][0][filters][0][condition_type]=gteq&searchCriteria[sortOrders][0][field]=updated_at&searchCriteria[sortOrders][0][direction]=ASC&searchCriteria[pageSize]=100&searchCriteria[currentPage]=1";
    emu.call("GET", orders_q, None).await;
    emu.call("GET", "/V1/orders", None).await;
    emu.call("GET", &format!("/V1/orders/{id}"), None).await;
    emu.call("GET", "/V1/orders/999", None).await;
    emu.call("GET", "/V1/orders/items?searchCriteria[pageSize]=10", None)
        .await;
    emu.call("GET", "/V1/orders/items/1", None).await;
    emu.call(
        "POST",
        &format!("/V1/orders/{id}/comments"),
        Some(json!({"statusHistory": {"comment": "Synced to POS", "is_customer_notified": 0, "is_visible_on_front": 0, "parent_id": id}})),
    )
    .await;
    emu.call("GET", &format!("/V1/orders/{id}/comments"), None)
        .await;
    emu.call("GET", &format!("/V1/orders/{id}/statuses"), None)
        .await;
    emu.call("POST", &format!("/V1/orders/{id}/hold"), None)
        .await;
    emu.call("POST", &format!("/V1/order/{id}/ship"), Some(json!({})))
        .await;
    emu.call("POST", &format!("/V1/orders/{id}/unhold"), None)
        .await;
    emu.call("POST", &format!("/V1/orders/{id}/unhold"), None)
        .await;
    emu.call(
        "POST",
        &format!("/V1/order/{id}/invoice"),
        Some(json!({"capture": false, "notify": false, "comment": {"comment": "Paid at till", "is_visible_on_front": 0}})),
    )
    .await;
    emu.call(
        "POST",
        &format!("/V1/order/{id}/ship"),
        Some(
            json!({"items": [{"order_item_id": 1, "qty": 2}], "notify": false,
                    "tracks": [{"track_number": "1Z999", "title": "UPS", "carrier_code": "ups"}],
                    "comment": {"comment": "Picked at Leeds", "is_visible_on_front": 0},
                    "arguments": {"extension_attributes": {"source_code": "store-01"}}}),
        ),
    )
    .await;
    emu.call(
        "POST",
        &format!("/V1/order/{id}/ship"),
        Some(json!({"items": [{"order_item_id": 1, "qty": 50}], "arguments": {"extension_attributes": {"source_code": "default"}}})),
    )
    .await;
    emu.call(
        "POST",
        &format!("/V1/order/{id}/refund"),
        Some(json!({"items": [{"order_item_id": 2, "qty": 1}], "notify": false,
                    "arguments": {"shipping_amount": 0, "adjustment_positive": 0, "adjustment_negative": 0,
                                  "extension_attributes": {"return_to_stock_items": [2]}}})),
    )
    .await;
    emu.call("POST", &format!("/V1/order/{id2}/invoice"), Some(json!({})))
        .await;
    emu.call("POST", &format!("/V1/orders/{id3}/cancel"), None)
        .await;
    emu.call("POST", &format!("/V1/orders/{id3}/cancel"), None)
        .await;
    emu.call("POST", &format!("/V1/order/{id3}/refund"), Some(json!({})))
        .await;
    let r = emu
        .call("GET", &format!("/V1/invoices?searchCriteria[filter_groups][0][filters][0][field]=order_id&searchCriteria[filter_groups][0][filters][0][value]={id2}"), None)
        .await;
    if let Some(inv) = r.body["items"][0]["entity_id"].as_u64() {
        emu.call(
            "POST",
            &format!("/V1/invoice/{inv}/refund"),
            Some(json!({"isOnline": false})),
        )
        .await;
        emu.call("GET", &format!("/V1/invoices/{inv}"), None).await;
        emu.call("GET", &format!("/V1/invoices/{inv}/comments"), None)
            .await;
    }
    emu.call("GET", "/V1/invoices?searchCriteria[pageSize]=20", None)
        .await;
    emu.call("GET", "/V1/shipments?searchCriteria[pageSize]=20", None)
        .await;
    emu.call("GET", "/V1/shipment/1", None).await;
    emu.call("GET", "/V1/shipment/1/comments", None).await;
    emu.call("GET", "/V1/shipment/99", None).await;
    emu.call("GET", "/V1/creditmemos?searchCriteria[pageSize]=20", None)
        .await;
    let r = emu
        .call("GET", "/V1/creditmemos?searchCriteria[pageSize]=1", None)
        .await;
    if let Some(m) = r.body["items"][0]["entity_id"].as_u64() {
        emu.call("GET", &format!("/V1/creditmemo/{m}"), None).await;
        emu.call("GET", &format!("/V1/creditmemo/{m}/comments"), None)
            .await;
    }
    emu.call("GET", "/V1/invoices/77", None).await;

    // Bulk and async.
    let r = emu
        .call(
            "POST",
            "/rest/all/async/bulk/V1/inventory/source-items",
            Some(json!([{"sourceItems": [{"sku": "TEE-S", "source_code": "store-01", "quantity": 30, "status": 1}]},
                        {"sourceItems": [{"sku": "", "source_code": "store-01", "quantity": 1, "status": 1}]}])),
        )
        .await;
    let uuid = r.body["bulk_uuid"].as_str().unwrap_or("").to_owned();
    emu.call("GET", &format!("/V1/bulk/{uuid}/status"), None)
        .await;
    emu.ctl("POST", "consumers/run", json!({})).await;
    emu.call("GET", &format!("/V1/bulk/{uuid}/status"), None)
        .await;
    emu.call("GET", &format!("/V1/bulk/{uuid}/detailed-status"), None)
        .await;
    emu.call("GET", &format!("/V1/bulk/{uuid}/operation-status/1"), None)
        .await;
    emu.call("GET", "/V1/bulk?searchCriteria[pageSize]=5", None)
        .await;
    emu.call("GET", "/V1/bulk/no-such-uuid/status", None).await;

    // Tokens.
    emu.call_as(
        None,
        "POST",
        "/V1/integration/admin/token",
        Some(json!({"username": "admin", "password": "wrong"})),
    )
    .await;
    emu.call_as(
        None,
        "POST",
        "/V1/integration/admin/token",
        Some(
            json!({"username": tillbridge_commerce_emulator::DEFAULT_ADMIN_USERNAME,
                    "password": tillbridge_commerce_emulator::DEFAULT_ADMIN_PASSWORD}),
        ),
    )
    .await;
    emu.call_as(None, "POST", "/V1/integration/admin/token", Some(json!({})))
        .await;
    emu.call_as(None, "GET", "/V1/orders/1", None).await;
    emu.call_as(
        Some("nope"),
        "POST",
        "/V1/inventory/source-items",
        Some(json!({"sourceItems": []})),
    )
    .await;

    // Tillbridge's module.
    emu.call("GET", "/V1/tillbridge/reservations?sku=TEE-S", None)
        .await;
    emu.call("GET", "/V1/tillbridge/reservations-sum/TEE-S/2", None)
        .await;
    emu.call(
        "POST",
        "/V1/tillbridge/reservations",
        Some(json!({"reservations": [{"stock_id": 2, "sku": "TEE-S", "quantity": -1,
            "metadata": {"event_type": "pos_sale", "object_type": "pos_receipt", "object_id": "R-1", "object_increment_id": "R-1"}}]})),
    )
    .await;
    emu.call("GET", "/V1/tillbridge/inconsistencies", None)
        .await;
}
