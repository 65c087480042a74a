//! Behaviour tests of the model's tricky rules, each asserting values.

#![allow(clippy::unwrap_used)]

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::catalog::ProductInput;
use super::cli::OrderFilter;
use super::config::{self, StockItemFields};
use super::ids::{OrderIncrementId, ProductType, Sku, SourceCode, StockId, Timestamp, WebsiteCode};
use super::model::Inventory;
use super::preview::{PreviewEvent, PreviewRequest, preview};
use super::reservations::NewReservation;
use super::sales::{DocumentLine, ItemRef, OrderLine, PlaceOrderRequest, ReturnToStock};
use super::source_items::SourceItemInput;
use super::structure::{LinkInput, SalesChannelInput, SourceInput, StockInput};

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn code(s: &str) -> SourceCode {
    SourceCode::parse(s).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_offset_seconds(0)
}

const EU: i64 = 10;

fn eu() -> StockId {
    StockId::parse(EU).unwrap()
}

fn eu_site() -> WebsiteCode {
    WebsiteCode::parse("eu").unwrap()
}

/// Sources `eu-1` (priority 1) and `eu-2` (priority 2) in stock 10, sold on website `eu`;
/// product `A` (simple, managed, no backorders) with 10 at `eu-1` and 5 at `eu-2`.
fn world() -> Inventory {
    let mut inv = Inventory::new();
    for c in ["eu-1", "eu-2"] {
        inv.save_source(&SourceInput {
            source_code: Some(c.to_owned()),
            name: Some(c.to_owned()),
            postcode: Some("75001".to_owned()),
            country_id: Some("FR".to_owned()),
            ..SourceInput::default()
        })
        .unwrap();
    }
    inv.create_website(&eu_site(), None).unwrap();
    inv.save_stock(&StockInput {
        stock_id: Some(EU),
        name: Some("EU".to_owned()),
        sales_channels: Some(vec![SalesChannelInput {
            channel_type: Some("website".to_owned()),
            code: Some("eu".to_owned()),
        }]),
    })
    .unwrap();
    inv.save_stock_source_links(&[
        LinkInput {
            stock_id: Some(EU),
            source_code: Some("eu-1".to_owned()),
            priority: Some(1),
        },
        LinkInput {
            stock_id: Some(EU),
            source_code: Some("eu-2".to_owned()),
            priority: Some(2),
        },
    ])
    .unwrap();
    inv.create_product(&ProductInput::new(sku("A"), ProductType::Simple))
        .unwrap();
    inv.save_source_items(&[
        SourceItemInput::new(&sku("A"), &code("eu-1"), dec!(10), true),
        SourceItemInput::new(&sku("A"), &code("eu-2"), dec!(5), true),
    ])
    .unwrap();
    inv
}

fn place(inv: &mut Inventory, increment: &str, qty: Decimal) -> super::sales::OrderId {
    inv.place_order(
        &PlaceOrderRequest {
            increment_id: Some(OrderIncrementId::parse(increment).unwrap()),
            website: eu_site(),
            store: None,
            lines: vec![OrderLine::Product { sku: sku("A"), qty }],
        },
        &now(),
    )
    .unwrap()
}

fn set_item(inv: &mut Inventory, fields: StockItemFields) {
    inv.save_stock_item_configuration(&sku("A"), &fields)
        .unwrap();
}

#[test]
fn salable_qty_is_index_quantity_plus_reservations_minus_threshold() {
    let mut inv = world();
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(15));
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_qty: Some(false),
            min_qty: Some(dec!(2)),
            ..StockItemFields::default()
        },
    );
    place(&mut inv, "1", dec!(3));
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(-3));
    // 15 in stock − 3 reserved − 2 threshold.
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(10));
    // An out-of-stock item does not count; the index is rebuilt by the save.
    inv.save_source_items(&[SourceItemInput::new(
        &sku("A"),
        &code("eu-2"),
        dec!(5),
        false,
    )])
    .unwrap();
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(5));
    // A SKU not assigned to the stock has salable quantity 0 (no index row).
    inv.create_product(&ProductInput::new(sku("B"), ProductType::Simple))
        .unwrap();
    assert_eq!(inv.get_product_salable_qty("B", eu()).unwrap(), dec!(0));
    // Unknown SKUs and composite types are errors, with Magento's messages and statuses.
    let e = inv.get_product_salable_qty("nope", eu()).unwrap_err();
    assert_eq!(e.http_status(), 404);
    assert_eq!(
        e.rendered(),
        "The product that was requested doesn't exist. Verify the product and try again."
    );
    inv.create_product(&ProductInput::new(sku("C"), ProductType::Configurable))
        .unwrap();
    let e = inv.get_product_salable_qty("C", eu()).unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert_eq!(
        e.rendered(),
        "Can't check requested quantity for products without Source Items support."
    );
}

#[test]
fn salable_qty_is_never_clamped_until_the_index_says_not_salable() {
    let mut inv = world();
    // A POS-side reservation larger than the stock: the index row was built before it and
    // still says salable, so the salable quantity goes negative.
    inv.append_reservations(&[NewReservation {
        stock_id: eu(),
        sku: sku("A"),
        quantity: dec!(-20),
        metadata: None,
    }])
    .unwrap();
    assert_eq!(inv.stock_item_data("A", eu()).unwrap().quantity, dec!(15));
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(-5));
    assert!(
        !inv.is_product_salable("A", eu()),
        "the live chain already says no"
    );
    // A reindex (source item save) takes the reservations into account: 0 from then on.
    inv.resave_source_items(&sku("A")).unwrap();
    assert!(!inv.stock_item_data("A", eu()).unwrap().is_salable);
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(0));
}

#[test]
fn the_salability_queue_refreshes_the_index_after_orders() {
    let mut inv = world();
    place(&mut inv, "1", dec!(15));
    assert!(
        inv.stock_item_data("A", eu()).unwrap().is_salable,
        "stale until consumed"
    );
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(0));
    assert_eq!(
        inv.process_queue("inventory.reservations.updateSalabilityStatus", None),
        1
    );
    assert!(!inv.stock_item_data("A", eu()).unwrap().is_salable);
}

#[test]
fn backorders_make_a_sku_salable_beyond_stock_with_a_negative_threshold() {
    let mut inv = world();
    // A negative threshold without backorders is ignored.
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_qty: Some(false),
            min_qty: Some(dec!(-5)),
            ..StockItemFields::default()
        },
    );
    assert_eq!(inv.salable_qty("A", eu()).unwrap(), dec!(15));
    let r = inv
        .is_product_salable_for_requested_qty("A", eu(), dec!(16))
        .unwrap();
    assert!(!r.salable);
    // With backorders it counts: 15 + 5 = 20 may be sold, 21 may not.
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_qty: Some(false),
            min_qty: Some(dec!(-5)),
            use_config_backorders: Some(false),
            backorders: Some(1),
            ..StockItemFields::default()
        },
    );
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(20));
    assert!(
        inv.is_product_salable_for_requested_qty("A", eu(), dec!(20))
            .unwrap()
            .salable
    );
    assert!(
        !inv.is_product_salable_for_requested_qty("A", eu(), dec!(21))
            .unwrap()
            .salable
    );
    // With backorders and a threshold ≥ 0, any quantity is salable.
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_qty: Some(false),
            min_qty: Some(dec!(0)),
            use_config_backorders: Some(false),
            backorders: Some(1),
            ..StockItemFields::default()
        },
    );
    assert!(
        inv.is_product_salable_for_requested_qty("A", eu(), dec!(1000))
            .unwrap()
            .salable
    );
    // The backordered part of a request is what exceeds the salable quantity.
    assert_eq!(inv.backorder_qty("A", eu(), dec!(18)).unwrap(), dec!(3));
}

#[test]
fn requested_qty_errors_carry_magentos_codes_and_messages() {
    let mut inv = world();
    let errors = |inv: &Inventory, sku: &str, qty: Decimal| {
        inv.is_product_salable_for_requested_qty(sku, eu(), qty)
            .unwrap()
            .errors
            .into_iter()
            .map(|e| (e.code, e.message))
            .collect::<Vec<_>>()
    };
    // Not enough: the union of the sufficient conditions' errors, in chain order.
    assert_eq!(
        errors(&inv, "A", dec!(16)),
        vec![
            (
                "back_order-disabled".to_owned(),
                "Backorders are disabled".to_owned()
            ),
            (
                "manage_stock-enabled".to_owned(),
                "Manage stock is enabled".to_owned()
            ),
            (
                "is_salable_with_reservations-not_enough_qty".to_owned(),
                "Not enough items for sale".to_owned()
            ),
        ]
    );
    inv.set_config("default", config::NOT_AVAILABLE_MESSAGE, "2");
    assert_eq!(
        errors(&inv, "A", dec!(16))[2].1,
        "Only 15 of 16 available",
        "the \"Only X of Y\" style"
    );
    // Quantity rules come first and stop the chain.
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_sale_qty: Some(false),
            min_sale_qty: Some(dec!(7)),
            ..StockItemFields::default()
        },
    );
    assert_eq!(
        errors(&inv, "A", dec!(1)),
        vec![(
            "is_correct_qty-min_sale_qty".to_owned(),
            "The fewest you may purchase is 7.".to_owned()
        )]
    );
    set_item(
        &mut inv,
        StockItemFields {
            use_config_min_sale_qty: Some(true),
            use_config_enable_qty_inc: Some(false),
            enable_qty_increments: Some(true),
            use_config_qty_increments: Some(false),
            qty_increments: Some(dec!(3)),
            ..StockItemFields::default()
        },
    );
    assert_eq!(
        errors(&inv, "A", dec!(4)),
        vec![(
            "is_correct_qty-qty_increment".to_owned(),
            "You can buy this product only in quantities of 3 at a time.".to_owned()
        )]
    );
    assert!(errors(&inv, "A", dec!(6)).is_empty());
    assert_eq!(
        errors(&inv, "A", dec!(1.5))[0].0,
        "is_correct_qty-qty_increment"
    );
    set_item(
        &mut inv,
        StockItemFields {
            use_config_enable_qty_inc: Some(true),
            ..StockItemFields::default()
        },
    );
    assert_eq!(
        errors(&inv, "A", dec!(1.5)),
        vec![(
            "is_correct_qty-is_qty_decimal".to_owned(),
            "You cannot use decimal quantity for this product.".to_owned()
        )]
    );
    // No in-stock item on an enabled source: a required condition.
    inv.save_source_items(&[
        SourceItemInput::new(&sku("A"), &code("eu-1"), dec!(10), false),
        SourceItemInput::new(&sku("A"), &code("eu-2"), dec!(5), false),
    ])
    .unwrap();
    assert_eq!(
        errors(&inv, "A", dec!(1)),
        vec![(
            "is_any_source_item_in_stock-no_source_items_in_stock".to_owned(),
            "There are no source items with the in stock status".to_owned()
        )]
    );
    // A SKU with no item in the stock.
    inv.create_product(&ProductInput::new(sku("B"), ProductType::Simple))
        .unwrap();
    inv.save_source_items(&[SourceItemInput::new(
        &sku("B"),
        &code("default"),
        dec!(5),
        true,
    )])
    .unwrap();
    assert_eq!(
        errors(&inv, "B", dec!(1)),
        vec![(
            "requested-sku-is-not-assigned-to-given-stock".to_owned(),
            "The requested sku is not assigned to given stock.".to_owned()
        )]
    );
    assert!(!inv.is_product_salable("B", eu()));
}

#[test]
fn a_shipment_may_not_take_a_source_below_zero() {
    let mut inv = world();
    set_item(
        &mut inv,
        StockItemFields {
            use_config_backorders: Some(false),
            backorders: Some(1),
            ..StockItemFields::default()
        },
    );
    let order = place(&mut inv, "100", dec!(12));
    let reservations_before = inv.reservations().len();
    let err = inv
        .ship(order, None, Some(&code("eu-1")), &now())
        .unwrap_err();
    assert_eq!(
        err.rendered(),
        "Not all of your products are available in the requested quantity."
    );
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-1")).unwrap().quantity,
        dec!(10),
        "nothing deducted"
    );
    assert_eq!(
        inv.reservations().len(),
        reservations_before,
        "nothing reserved"
    );
    // A missing source item is its own error.
    let err = inv
        .ship(order, None, Some(&code("default")), &now())
        .unwrap_err();
    assert_eq!(
        err.rendered(),
        "Source item not found by source code: default and sku: A."
    );
    // Shipping what the source holds works and compensates the reservation.
    let lines = [DocumentLine {
        item: ItemRef::Sku("A".to_owned()),
        qty: Some(dec!(10)),
    }];
    inv.ship(order, Some(&lines), Some(&code("eu-1")), &now())
        .unwrap();
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-1")).unwrap().quantity,
        dec!(0)
    );
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(-2));
    let last = inv.reservations().last().unwrap();
    assert_eq!(
        last.metadata.as_deref(),
        Some(
            "{\"event_type\":\"shipment_created\",\"object_type\":\"order\",\"object_id\":\"1\",\"object_increment_id\":\"100\"}"
        )
    );
}

#[test]
fn a_shipment_line_ships_at_most_what_is_left_to_ship() {
    let mut inv = world();
    let order = place(&mut inv, "101", dec!(3));
    let two = [DocumentLine {
        item: ItemRef::Sku("A".to_owned()),
        qty: Some(dec!(2)),
    }];
    inv.ship(order, Some(&two), Some(&code("eu-1")), &now())
        .unwrap();
    // Asking for 2 more ships the 1 left: the source loses 3 in all, not 4.
    inv.ship(order, Some(&two), Some(&code("eu-1")), &now())
        .unwrap();
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-1")).unwrap().quantity,
        dec!(7)
    );
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(0));
    // Nothing left: a shipment without products.
    let err = inv
        .ship(order, Some(&two), Some(&code("eu-1")), &now())
        .unwrap_err();
    assert!(err.rendered().contains("shipment"), "{}", err.rendered());
}

#[test]
fn cancel_compensates_only_what_was_neither_shipped_nor_invoiced() {
    let mut inv = world();
    let order = place(&mut inv, "7", dec!(5));
    let three = [DocumentLine {
        item: ItemRef::Sku("A".to_owned()),
        qty: Some(dec!(3)),
    }];
    inv.ship(order, Some(&three), Some(&code("eu-1")), &now())
        .unwrap();
    let four = [DocumentLine {
        item: ItemRef::Sku("A".to_owned()),
        qty: Some(dec!(4)),
    }];
    inv.invoice(order, Some(&four), true, &now()).unwrap();
    assert!(inv.cancel(order, &now()).unwrap());
    // −5 placed, +3 shipped, +(5 − max(3, 4) − 0) = +1 canceled: one unit stays reserved.
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(-1));
    assert!(
        !inv.cancel(order, &now()).unwrap(),
        "a canceled order cannot be canceled"
    );
}

#[test]
fn credit_memos_deduct_unshipped_goods_or_return_shipped_ones() {
    // Not returned to stock: the unshipped part is deducted by priority and compensated.
    let mut inv = world();
    let order = place(&mut inv, "8", dec!(4));
    inv.invoice(order, None, true, &now()).unwrap();
    inv.refund(order, None, &ReturnToStock::None, &now())
        .unwrap();
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-1")).unwrap().quantity,
        dec!(6)
    );
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(0));
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(11));

    // Shipped, then refunded with return to stock: back to the source it left.
    let mut inv = world();
    let order = place(&mut inv, "9", dec!(4));
    inv.invoice(order, None, true, &now()).unwrap();
    inv.ship(order, None, Some(&code("eu-2")), &now()).unwrap();
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-2")).unwrap().quantity,
        dec!(1)
    );
    inv.refund(
        order,
        None,
        &ReturnToStock::Items(vec![ItemRef::Sku("A".to_owned())]),
        &now(),
    )
    .unwrap();
    assert_eq!(
        inv.source_item(&sku("A"), &code("eu-2")).unwrap().quantity,
        dec!(5)
    );
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(0));
    assert_eq!(inv.get_product_salable_qty("A", eu()).unwrap(), dec!(15));
}

#[test]
fn reservations_are_dropped_for_unmanaged_stock_and_when_subtracting_is_off() {
    let mut inv = world();
    let r = NewReservation {
        stock_id: eu(),
        sku: sku("A"),
        quantity: dec!(-1),
        metadata: None,
    };
    inv.set_config("default", config::CAN_SUBTRACT, "0");
    assert!(
        inv.append_reservations(std::slice::from_ref(&r))
            .unwrap()
            .is_empty()
    );
    inv.set_config("default", config::CAN_SUBTRACT, "1");
    set_item(
        &mut inv,
        StockItemFields {
            use_config_manage_stock: Some(false),
            manage_stock: Some(false),
            ..StockItemFields::default()
        },
    );
    assert!(
        inv.append_reservations(std::slice::from_ref(&r))
            .unwrap()
            .is_empty()
    );
    assert!(inv.reservations().is_empty());
}

#[test]
fn cleanup_pools_orders_placed_before_they_had_an_id() {
    let mut inv = world();
    let a = place(&mut inv, "A-1", dec!(2));
    let b = place(&mut inv, "A-2", dec!(3));
    inv.cancel(a, &now()).unwrap();
    // Order A-1 sums to zero by increment id; its order_placed row (object_id "") shares the
    // "" group with A-2's, which does not sum to zero. The union still deletes A-1's rows.
    let deleted = inv.cleanup_reservations();
    assert_eq!(deleted.len(), 2);
    assert_eq!(inv.reservations_quantity("A", eu()), dec!(-3));
    inv.cancel(b, &now()).unwrap();
    assert_eq!(inv.cleanup_reservations().len(), 2);
    assert!(inv.reservations().is_empty());
}

#[test]
fn inconsistency_cli_prints_magentos_text_and_its_output_compensates() {
    let mut inv = world();
    // An order written without placement: no `order_placed` reservation.
    inv.create_order(
        &super::sales::SeedOrder {
            increment_id: OrderIncrementId::parse("172").unwrap(),
            state: super::sales::OrderState::Processing,
            website: eu_site(),
            items: vec![super::sales::SeedItem {
                sku: sku("A"),
                qty: dec!(2),
                product_type: "simple".to_owned(),
                child_sku: None,
            }],
            placement: super::sales::Placement::RepositorySave,
        },
        &now(),
    )
    .unwrap();
    let pretty = inv
        .list_inconsistencies(OrderFilter::All, false, 50)
        .unwrap();
    assert_eq!(
        pretty.text,
        "Order 172:\n  - Product A should be compensated by -2.000000 for stock 10"
    );
    assert_eq!(pretty.exit_code, -1);
    let raw = inv
        .list_inconsistencies(OrderFilter::All, true, 50)
        .unwrap();
    assert_eq!(raw.text, "172:A:-2.000000:10");
    // The canonical pipeline: list -r | create-compensations.
    let out = inv.create_compensations(&[raw.text]);
    assert_eq!(
        out.text,
        "Following reservations were created:\n  - Product A was compensated by -2.000000 for stock 10"
    );
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        inv.reservations().last().unwrap().metadata.as_deref(),
        Some(
            "{\"event_type\":\"manual_compensation\",\"object_type\":\"order\",\"object_id\":\"1\",\"object_increment_id\":\"172\"}"
        )
    );
    let none = inv
        .list_inconsistencies(OrderFilter::All, false, 50)
        .unwrap();
    assert_eq!(none.text, "No order inconsistencies were found");
    assert_eq!(none.exit_code, 0);
    // Unparsable arguments are reported; a missing order is Magento's fatal error.
    let out = inv.create_compensations(&["nope".to_owned()]);
    assert_eq!(out.exit_code, 1);
    assert!(out.text.contains("Error while parsing argument \"nope\"."));
    let out = inv.create_compensations(&["999:A:1:10".to_owned()]);
    assert_eq!(out.exit_code, 255);
    assert!(
        out.text
            .contains("Call to a member function getEntityId() on bool")
    );
}

#[test]
fn preview_reports_salable_quantity_after_each_event() {
    let request: PreviewRequest = serde_json::from_value(serde_json::json!({
        "snapshot": {
            "websites": ["eu"],
            "sources": [{"source_code": "shop-1"}, {"source_code": "wh-1"}],
            "stocks": [{"stock_id": 10, "websites": ["eu"]}],
            "links": [
                {"stock_id": 10, "source_code": "wh-1", "priority": 1},
                {"stock_id": 10, "source_code": "shop-1", "priority": 2}
            ],
            "products": [{"sku": "A"}],
            "source_items": [
                {"source_code": "wh-1", "sku": "A", "quantity": 8, "status": 1},
                {"source_code": "shop-1", "sku": "A", "quantity": 2, "status": 1}
            ],
            "reservations": [{"stock_id": 10, "sku": "A", "quantity": -1,
                "metadata": "{\"event_type\":\"order_placed\",\"object_type\":\"order\",\"object_id\":\"\",\"object_increment_id\":\"000000050\"}"}],
            "orders": [{"increment_id": "000000050", "website": "eu",
                        "items": [{"sku": "A", "qty_ordered": 1}]}]
        },
        "events": [
            {"type": "order_placed", "increment_id": "000000051", "website": "eu",
             "items": [{"sku": "A", "qty": 3}]},
            {"type": "pos_stock_push", "source_code": "shop-1", "sku": "A", "quantity": 0},
            {"type": "shipment", "increment_id": "000000050", "source_code": "wh-1"},
            {"type": "order_placed", "website": "eu", "items": [{"sku": "A", "qty": 50}]},
            {"type": "cancel", "increment_id": "000000051"}
        ]
    }))
    .unwrap();
    let response = preview(&request).unwrap();
    let qty = |lines: &[super::preview::SalableLine]| {
        lines
            .iter()
            .find(|l| l.stock_id == eu())
            .and_then(|l| l.salable_qty)
    };
    assert_eq!(
        qty(&response.initial),
        Some(dec!(9)),
        "10 on hand − 1 reserved"
    );
    let got: Vec<(bool, Option<Decimal>)> = response
        .steps
        .iter()
        .map(|s| (s.ok, qty(&s.salable)))
        .collect();
    assert_eq!(
        got,
        vec![
            (true, Some(dec!(6))),  // order −3
            (true, Some(dec!(4))),  // the shop counts 0: 8 − 4 reserved
            (true, Some(dec!(4))),  // shipped 1 from wh-1: 7 on hand, −3 reserved
            (false, Some(dec!(4))), // 50 > 4: Magento refuses the order
            (true, Some(dec!(7))),  // cancel releases 3
        ]
    );
    assert_eq!(
        response.steps[3].error.as_deref(),
        Some("Not enough items for sale")
    );
    // The answer is plain JSON for the admin.
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["steps"][0]["salable"][0]["salable_qty"],
        serde_json::json!(6)
    );
}

#[test]
fn preview_events_round_trip_as_json() {
    let event = PreviewEvent::Refund {
        increment_id: OrderIncrementId::parse("1").unwrap(),
        items: None,
        return_to_stock: vec![sku("A")],
    };
    let text = serde_json::to_string(&event).unwrap();
    assert_eq!(
        text,
        "{\"type\":\"refund\",\"increment_id\":\"1\",\"items\":null,\"return_to_stock\":[\"A\"]}"
    );
    assert_eq!(serde_json::from_str::<PreviewEvent>(&text).unwrap(), event);
}

#[test]
fn a_snapshot_round_trip_keeps_salable_quantities() {
    let mut inv = world();
    place(&mut inv, "5", dec!(4));
    let snapshot = inv.snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    let copy = Inventory::from_snapshot(&serde_json::from_str(&json).unwrap()).unwrap();
    for stock in [StockId::DEFAULT, eu()] {
        assert_eq!(
            copy.get_product_salable_qty("A", stock).unwrap(),
            inv.get_product_salable_qty("A", stock).unwrap()
        );
    }
    assert_eq!(copy.get_product_salable_qty("A", eu()).unwrap(), dec!(11));
    assert_eq!(copy.orders().len(), 1);
}
