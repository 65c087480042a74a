//! The emulator over real HTTP: authentication, inventory routes, and the fault and call-log
//! parts of the control API.
#![allow(clippy::unwrap_used)]

mod common;

use common::Emu;
use serde_json::json;

#[tokio::test]
async fn requests_without_a_valid_token_get_magentos_401_naming_the_resource() {
    let emu = Emu::start().await;
    let r = emu
        .call_as(None, "GET", "/V1/inventory/sources", None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"message": "The consumer isn't authorized to access %resources.",
               "parameters": {"resources": "Magento_InventoryApi::source"}})
    );
    let r = emu
        .call_as(
            Some("wrong"),
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": []})),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body["parameters"]["resources"],
        json!("Magento_InventoryApi::stock_source_item_assign")
    );
    let r = emu.call("GET", "/V1/nothing/here", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!({"message": "Request does not match any route."})
    );
}

#[tokio::test]
async fn admin_tokens_are_issued_for_the_right_credentials_and_expire() {
    let emu = Emu::start().await;
    let bad = emu
        .call_as(
            None,
            "POST",
            "/V1/integration/admin/token",
            Some(json!({"username": "admin", "password": "x"})),
        )
        .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.body["message"],
        json!(
            "The account sign-in was incorrect or your account is disabled temporarily. Please wait and try again later."
        )
    );
    let ok = emu
        .call_as(
            None,
            "POST",
            "/V1/integration/admin/token",
            Some(
                json!({"username": tillbridge_commerce_emulator::DEFAULT_ADMIN_USERNAME,
                        "password": tillbridge_commerce_emulator::DEFAULT_ADMIN_PASSWORD}),
            ),
        )
        .await;
    assert_eq!(ok.status, 200);
    let token = ok.body.as_str().unwrap().to_owned();
    let r = emu
        .call_as(Some(&token), "GET", "/V1/inventory/stocks/1", None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], json!("Default Stock"));
    emu.ctl("POST", "clock", json!({"advance_hours": 4})).await;
    let r = emu
        .call_as(Some(&token), "GET", "/V1/inventory/stocks/1", None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_token_with_a_limited_acl_reaches_only_its_routes() {
    let emu = Emu::start().await;
    emu.ctl(
        "POST",
        "tokens",
        json!({"token": "reader", "resources": ["Magento_InventoryApi::source"]}),
    )
    .await;
    let r = emu
        .call_as(Some("reader"), "GET", "/V1/inventory/sources", None)
        .await;
    assert_eq!(r.status, 200);
    let r = emu
        .call_as(
            Some("reader"),
            "GET",
            "/V1/inventory/get-product-salable-quantity/A/1",
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body["parameters"]["resources"],
        json!("Magento_InventorySalesApi::stock")
    );
}

#[tokio::test]
async fn source_items_are_saved_searched_and_sold() {
    let emu = Emu::start().await;
    emu.ops(json!([
        {"op": "create_source", "source_code": "store-01", "name": "Leeds", "enabled": true, "country_id": "GB", "postcode": "LS1 6AA"},
        {"op": "create_stock", "stock_id": 2, "name": "UK", "sales_channels": [{"type": "website", "code": "base"}]},
        {"op": "save_stock_source_links", "links": [{"stock_id": 2, "source_code": "store-01", "priority": 1}]},
        {"op": "create_product", "sku": "TEE-S", "type": "simple"}
    ]))
    .await;
    let r = emu
        .call(
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": [{"sku": "TEE-S", "source_code": "store-01", "quantity": 12, "status": 1}]})),
        )
        .await;
    assert_eq!((r.status, r.body), (200, json!([])));
    let r = emu
        .call(
            "GET",
            "/V1/inventory/source-items?searchCriteria[filter_groups][0][filters][0][field]=sku&searchCriteria[filter_groups][0][filters][0][value]=TEE-S",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total_count"], json!(1));
    assert_eq!(r.body["items"][0]["source_code"], json!("store-01"));
    assert_eq!(r.body["items"][0]["quantity"], json!(12));
    let r = emu
        .call(
            "GET",
            "/V1/inventory/get-product-salable-quantity/TEE-S/2",
            None,
        )
        .await;
    assert_eq!((r.status, r.body), (200, json!(12)));
    let r = emu
        .call(
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": [{"sku": "", "source_code": "store-01", "quantity": 1, "status": 1}]})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"message": "Validation Failed: \"sku\" can not be empty.",
               "errors": [{"message": "\"%field\" can not be empty.", "parameters": {"field": "sku"}}]})
    );
}

#[tokio::test]
async fn input_limits_refuse_long_lists_and_big_pages_when_enabled() {
    let emu = Emu::start().await;
    emu.ctl("POST", "config", json!({"input_limits": {"enabled": true}}))
        .await;
    let items: Vec<_> = (0..21)
        .map(|i| json!({"sku": format!("S{i}"), "source_code": "default", "quantity": 1, "status": 1}))
        .collect();
    let r = emu
        .call(
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": items})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"message": "Maximum items of type \"%type\" is %max",
               "parameters": {"type": "\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface", "max": 20}})
    );
    let r = emu
        .call(
            "GET",
            "/V1/inventory/source-items?searchCriteria[pageSize]=301",
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["message"],
        json!("Maximum SearchCriteria pageSize is %max")
    );
    let r = emu
        .call(
            "GET",
            "/V1/inventory/sources?searchCriteria[currentPage]=1",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["search_criteria"]["page_size"], json!(20));
}

#[tokio::test]
async fn injected_status_faults_fire_for_n_calls_and_are_logged() {
    let emu = Emu::start().await;
    emu.ctl(
        "POST",
        "faults",
        json!({"method": "GET", "path": "/V1/inventory/sources*", "kind": {"type": "status", "status": 503}, "skip": 1, "times": 2}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(emu.call("GET", "/V1/inventory/sources", None).await.status);
    }
    assert_eq!(statuses, vec![200, 503, 503, 200]);
    let calls = emu.calls().await;
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[1]["faults"], json!(["status 503"]));
    assert_eq!(calls[1]["applied"], json!(false));
    assert_eq!(calls[0]["route"], json!("/V1/inventory/sources"));
    assert_eq!(calls[0]["store"], json!("default"));
}

#[tokio::test]
async fn a_lost_response_still_applies_the_request() {
    let emu = Emu::start().await;
    emu.ctl(
        "POST",
        "faults",
        json!({"path": "/V1/inventory/source-items", "kind": {"type": "lost_response"}, "times": 1}),
    )
    .await;
    let url = format!("{}/rest/V1/inventory/source-items", emu.base);
    let sent = emu
        .http
        .post(&url)
        .bearer_auth(&emu.token)
        .json(&json!({"sourceItems": [{"sku": "A", "source_code": "default", "quantity": 5, "status": 1}]}))
        .send()
        .await;
    let lost = match sent {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    };
    assert!(lost, "the client should not get the response");
    let r = emu
        .call(
            "GET",
            "/V1/inventory/source-items?searchCriteria[pageSize]=10",
            None,
        )
        .await;
    assert_eq!(r.body["total_count"], json!(1));
    let calls = emu.calls().await;
    assert_eq!(calls[0]["applied"], json!(true));
    assert_eq!(calls[0]["faults"], json!(["lost_response reset"]));

    emu.ctl(
        "POST",
        "faults",
        json!({"path": "*/source-items", "kind": {"type": "lost_response", "mode": "status", "status": 502}, "times": 1}),
    )
    .await;
    let r = emu
        .call(
            "POST",
            "/V1/inventory/source-items",
            Some(json!({"sourceItems": [{"sku": "A", "source_code": "default", "quantity": 7, "status": 1}]})),
        )
        .await;
    assert_eq!(r.status, 502);
    let r = emu
        .call(
            "GET",
            "/V1/inventory/get-product-salable-quantity/A/1",
            None,
        )
        .await;
    assert_eq!(r.status, 404, "A is not in the catalog: {:?}", r.body);
    let r = emu
        .call("GET", "/V1/inventory/source-items?searchCriteria[filter_groups][0][filters][0][field]=sku&searchCriteria[filter_groups][0][filters][0][value]=A", None)
        .await;
    assert_eq!(r.body["items"][0]["quantity"], json!(7));
}

#[tokio::test]
async fn timeouts_and_latency_hold_the_request() {
    let emu = Emu::start().await;
    emu.ctl(
        "POST",
        "faults",
        json!({"rules": [
            {"path": "/V1/inventory/stocks", "kind": {"type": "timeout", "ms": 5}, "times": 1},
            {"path": "/V1/inventory/sources", "kind": {"type": "latency", "ms": 1}, "times": 1}
        ]}),
    )
    .await;
    let r = emu.call("GET", "/V1/inventory/stocks", None).await;
    assert_eq!(r.status, 504);
    let r = emu.call("GET", "/V1/inventory/stocks", None).await;
    assert_eq!(r.status, 200);
    let r = emu.call("GET", "/V1/inventory/sources", None).await;
    assert_eq!(r.status, 200);
    let calls = emu.calls().await;
    assert_eq!(calls[0]["faults"], json!(["timeout"]));
    assert_eq!(calls[2]["faults"], json!(["latency 1ms"]));
}

#[tokio::test]
async fn a_fraction_of_calls_fail_reproducibly() {
    let emu = Emu::start().await;
    emu.ctl("POST", "faults", json!({"path": "/V1/inventory/sources", "kind": {"type": "status", "status": 500}, "probability": 0.5}))
        .await;
    let mut failed = 0;
    for _ in 0..20 {
        if emu.call("GET", "/V1/inventory/sources", None).await.status == 500 {
            failed += 1;
        }
    }
    assert!((3..=17).contains(&failed), "{failed}");
    let rules = emu.ctl("GET", "faults", json!(null)).await;
    assert_eq!(rules["rules"][0]["fired"], json!(failed));
}

#[tokio::test]
async fn a_busy_store_answers_429_when_the_queue_is_longer_than_allowed() {
    let emu = Emu::start().await;
    emu.ctl(
        "POST",
        "config",
        json!({"throttle": {"enabled": true, "requests_per_second": 2.0, "max_wait_ms": 0}}),
    )
    .await;
    let (a, b) = tokio::join!(
        emu.call("GET", "/V1/inventory/stocks", None),
        emu.call("GET", "/V1/inventory/stocks", None)
    );
    let mut statuses = vec![a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 429]);
    let calls = emu.calls().await;
    assert!(calls.iter().any(|c| c["faults"] == json!(["throttled"])));
}
