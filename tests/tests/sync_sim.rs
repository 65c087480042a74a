//! The stock contract under the reservation scenarios, in the deterministic simulator: the
//! sync engine against Magento's MSI model, with and without injected faults. Each scenario
//! ends with Commerce source quantity = POS on-hand, salable = on-hand − open web demand,
//! reservations of finished orders summing to zero, and no inconsistency.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use rust_decimal::Decimal;
use tillbridge_core::pos::FulfilmentState::{Accepted, Cancelled, Completed, Ready, Rejected};
use tillbridge_core::sync::{Delivery, Reason};
use tillbridge_tests::sim::{Faults, Sim, StoreSpec};

fn d(n: i64) -> Decimal {
    Decimal::from(n)
}

fn stores() -> Vec<StoreSpec> {
    vec![
        StoreSpec {
            source: "york",
            priority: 1,
            fulfils: true,
        },
        StoreSpec {
            source: "leeds",
            priority: 2,
            fulfils: true,
        },
        StoreSpec {
            source: "hull",
            priority: 3,
            fulfils: false,
        },
    ]
}

fn world(seed: u64, on_hand: i64) -> Sim {
    let mut sim = Sim::new(seed, &stores(), &["MUG", "TEE"], d(on_hand));
    sim.run(60_000);
    sim.assert_consistent("start");
    sim
}

fn fault_world(seed: u64, on_hand: i64) -> Sim {
    let mut sim = world(seed, on_hand);
    sim.faults = Faults {
        unavailable: 80,
        throttled: 80,
        lost_answer: 120,
    };
    sim
}

fn routed_to(sim: &Sim, order: &str) -> String {
    sim.fulfilments
        .get(order)
        .map(|(s, _)| s.to_string())
        .unwrap_or_default()
}

#[test]
fn store_fulfilled_web_order_clears_its_reservation_without_double_deduction() {
    for faults in [false, true] {
        let mut sim = if faults {
            fault_world(11, 5)
        } else {
            world(11, 5)
        };
        sim.web_order("100000001", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        assert_eq!(
            routed_to(&sim, "100000001"),
            "york",
            "first opted-in source by priority"
        );
        assert_eq!(sim.salable("MUG"), d(15 - 2), "the order reserves 2 of 15");
        sim.store_moves("100000001", Accepted, None);
        sim.store_moves("100000001", Completed, Some("RM123456789GB"));
        sim.run(120_000);
        sim.assert_consistent("shipment");
        assert_eq!(
            sim.commerce_qty("MUG", "york"),
            d(3),
            "deducted once, by the shipment"
        );
        assert_eq!(sim.salable("MUG"), d(13));
        assert!(
            sim.comments
                .iter()
                .any(|(o, c)| o == "100000001" && c.contains("tracking RM123456789GB"))
        );
        assert_eq!(sim.engine.stats().shipments_created, 1);
    }
}

#[test]
fn cancel_after_pick_withdraws_the_fulfilment_and_releases_the_reservation() {
    let mut sim = world(12, 4);
    sim.web_order(
        "100000002",
        Delivery::Pickup {
            store: "leeds".parse().unwrap(),
        },
        &[("TEE", 1)],
    )
    .unwrap();
    sim.run(60_000);
    assert_eq!(
        routed_to(&sim, "100000002"),
        "leeds",
        "click and collect goes to the chosen store"
    );
    sim.store_moves("100000002", Accepted, None);
    sim.store_moves("100000002", Ready, None);
    assert!(
        sim.comments
            .iter()
            .all(|(_, c)| !c.contains("ready for collection")),
        "comments are sent by the engine, not yet"
    );
    sim.run(60_000);
    assert!(sim.comments.iter().any(|(o, c)| o == "100000002" && c.contains("ready for collection at the leeds store")));
    sim.commerce_cancel("100000002");
    sim.run(60_000);
    assert_eq!(
        sim.fulfilments["100000002"].1,
        tillbridge_core::pos::FulfilmentState::Cancelled
    );
    sim.assert_consistent("cancel after pick");
    assert_eq!(sim.salable("TEE"), d(12));
}

#[test]
fn refund_with_return_to_stock_books_the_goods_back_once() {
    let mut sim = fault_world(13, 3);
    sim.web_order("100000003", Delivery::Ship, &[("MUG", 1)])
        .unwrap();
    sim.run(60_000);
    sim.store_moves("100000003", Completed, None);
    sim.run(120_000);
    sim.assert_consistent("shipped");
    sim.store_return("100000003", "york", &[("MUG", 1)], true);
    sim.run(120_000);
    sim.assert_consistent("returned to the shelf");
    assert_eq!(
        sim.commerce_qty("MUG", "york"),
        d(3),
        "the till's figure, not the till's plus Magento's return"
    );
    assert!(
        sim.comments
            .iter()
            .any(|(o, c)| o == "100000003" && c.contains("refunded"))
    );
}

#[test]
fn refund_without_return_to_stock_changes_no_quantity() {
    let mut sim = world(14, 3);
    sim.web_order("100000004", Delivery::Ship, &[("TEE", 1)])
        .unwrap();
    sim.run(60_000);
    sim.store_moves("100000004", Completed, None);
    sim.run(120_000);
    sim.store_return("100000004", "york", &[("TEE", 1)], false);
    sim.run(120_000);
    sim.assert_consistent("refund, goods not restocked");
    assert_eq!(sim.commerce_qty("TEE", "york"), d(2));
}

#[test]
fn a_commerce_refund_with_return_to_stock_does_not_add_to_the_till_figure() {
    for faults in [false, true] {
        let mut sim = if faults {
            fault_world(18, 5)
        } else {
            world(18, 5)
        };
        sim.web_order("100000008", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        sim.store_moves("100000008", Completed, None);
        sim.run(120_000);
        sim.assert_consistent("shipped");
        // The customer brings one back to the York till, which books it on the shelf; the back
        // office refunds it in Commerce with "return to stock" ticked, which books it back on
        // York's source as well.
        sim.pos_sale("MUG", "york", d(-1));
        sim.run(60_000);
        sim.commerce_refund("100000008", &[("MUG", 1)], true);
        sim.run(120_000);
        sim.assert_consistent("refunded with return to stock");
        assert_eq!(
            sim.commerce_qty("MUG", "york"),
            d(4),
            "the till's figure, not the till's plus Magento's return"
        );
    }
}

#[test]
fn a_commerce_refund_of_unshipped_units_does_not_take_them_off_a_till_source() {
    let mut sim = world(19, 5);
    sim.web_order("100000009", Delivery::Ship, &[("TEE", 2)])
        .unwrap();
    sim.run(60_000);
    sim.invoice("100000009");
    // Refunded before the store picked it, nothing back to stock: Magento deducts the units
    // from the stock's first source, but they are still on York's shelf.
    sim.commerce_refund("100000009", &[("TEE", 2)], false);
    sim.run(120_000);
    sim.assert_consistent("refunded before it shipped");
    assert_eq!(sim.commerce_qty("TEE", "york"), d(5));
}

#[test]
fn a_cancel_racing_the_hand_over_raises_one_exception_and_follows_the_till() {
    // Either order of arrival: the hand-over first, or the cancellation first.
    for cancel_first in [false, true] {
        let mut sim = world(20, 5);
        sim.web_order("100000010", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        if cancel_first {
            sim.commerce_cancel("100000010");
            sim.store_hands_over("100000010", &[("MUG", 2)]);
        } else {
            sim.store_moves("100000010", Completed, None);
            sim.commerce_cancel("100000010");
        }
        sim.run(120_000);
        let open: Vec<_> = sim
            .engine
            .exceptions()
            .map(|e| (e.reason, e.subject.clone()))
            .collect();
        assert_eq!(
            open,
            vec![(Reason::CancelAfterHandover, "order 100000010".to_owned())],
            "cancel first: {cancel_first}"
        );
        sim.assert_consistent("cancelled while handed over");
        assert_eq!(sim.commerce_qty("MUG", "york"), d(3), "the till's figure");
        assert_eq!(sim.engine.stats().shipments_created, 0);
    }
}

#[test]
fn a_refund_in_full_before_it_ships_withdraws_the_order_from_the_till() {
    let mut sim = world(21, 4);
    sim.web_order("100000011", Delivery::Ship, &[("TEE", 2)])
        .unwrap();
    sim.run(60_000);
    sim.store_moves("100000011", Accepted, None);
    sim.invoice("100000011");
    sim.commerce_refund("100000011", &[("TEE", 2)], false);
    sim.run(60_000);
    assert_eq!(
        sim.fulfilments["100000011"].1,
        tillbridge_core::pos::FulfilmentState::Cancelled
    );
    sim.assert_consistent("refunded before it shipped");
    assert!(sim.engine.exceptions().next().is_none());
}

#[test]
fn partial_shipment_keeps_the_rest_reserved_until_it_ships() {
    let mut sim = world(15, 5);
    sim.web_order("100000005", Delivery::Ship, &[("MUG", 3)])
        .unwrap();
    sim.run(60_000);
    sim.store_hands_over("100000005", &[("MUG", 1)]);
    sim.run(120_000);
    sim.assert_consistent("first parcel");
    assert_eq!(sim.open_web_demand("MUG"), d(2));
    assert_eq!(sim.salable("MUG"), d(15 - 1 - 2));
    sim.store_hands_over("100000005", &[("MUG", 2)]);
    sim.run(120_000);
    sim.assert_consistent("second parcel");
    assert_eq!(sim.commerce_qty("MUG", "york"), d(2));
    assert_eq!(sim.engine.stats().shipments_created, 2);
}

#[test]
fn in_store_sale_of_the_last_unit_while_a_web_order_is_open() {
    let mut sim = Sim::new(
        16,
        &[StoreSpec {
            source: "york",
            priority: 1,
            fulfils: true,
        }],
        &["LAMP"],
        d(1),
    );
    sim.run(60_000);
    sim.web_order("100000006", Delivery::Ship, &[("LAMP", 1)])
        .unwrap();
    sim.run(60_000);
    // A walk-in customer buys the last lamp before the store picks the web order.
    sim.pos_sale("LAMP", "york", d(1));
    sim.run(60_000);
    sim.assert_consistent("last unit sold in store");
    // The web order is oversold: on hand 0 − 1 reserved. Magento shows 0 once it reindexes.
    assert_eq!(sim.open_web_demand("LAMP"), d(1));
    assert!(sim.salable("LAMP") <= d(0));
    // The store cannot fulfil; nobody else can: an exception a person can act on.
    sim.store_moves("100000006", Rejected, None);
    sim.run(60_000);
    let unroutable: Vec<_> = sim
        .engine
        .exceptions()
        .filter(|e| e.reason == Reason::Unroutable)
        .collect();
    assert_eq!(unroutable.len(), 1, "{unroutable:?}");
    assert!(unroutable[0].message.contains("100000006"));
    // Customer service cancels it, as the exception suggests: nothing is left to act on.
    sim.commerce_cancel("100000006");
    sim.run(60_000);
    sim.assert_consistent("unroutable order cancelled");
    let open: Vec<_> = sim.engine.exceptions().collect();
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(sim.open_web_demand("LAMP"), d(0));
}

#[test]
fn a_push_racing_a_shipment_never_deducts_twice() {
    for seed in 0..20 {
        let mut sim = fault_world(1_000 + seed, 6);
        sim.web_order("100000007", Delivery::Ship, &[("MUG", 2), ("TEE", 1)])
            .unwrap();
        sim.run(60_000);
        // The store hands over the parcel and sells a mug over the counter in the same instant.
        sim.store_moves("100000007", Completed, None);
        sim.pos_sale("MUG", "york", d(1));
        sim.pos_sale("TEE", "leeds", d(2));
        sim.run(300_000);
        sim.assert_consistent("push racing a shipment");
        assert_eq!(sim.commerce_qty("MUG", "york"), d(3));
    }
}

#[test]
fn a_till_figure_that_arrives_before_the_hand_over_is_not_deducted_twice() {
    for on_hand in [5, 2] {
        let mut sim = world(22, on_hand);
        sim.web_order("100000012", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        // The lower figure is pushed first; the shipment must not deduct from it again (with
        // 2 on hand, Magento would refuse a shipment from a source at 0).
        sim.store_ships_figure_first("100000012");
        sim.run(120_000);
        sim.assert_consistent("figure first, then the hand-over");
        let after: Vec<Decimal> = sim.after_shipments.iter().map(|x| x.3).collect();
        assert_eq!(
            after,
            vec![d(on_hand - 2)],
            "Commerce right after the shipment holds the till's figure"
        );
        assert!(sim.engine.exceptions().next().is_none());
    }
}

#[test]
fn random_trading_under_faults_keeps_the_contract() {
    let seeds: u64 = std::env::var("TILLBRIDGE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for seed in 0..seeds {
        let mut sim = fault_world(5_000 + seed, 8);
        sim.random_day(40);
        sim.run(600_000);
        sim.finish_open_fulfilments();
        sim.run(600_000);
        sim.assert_consistent("random day");
    }
}

#[test]
fn stuck_magento_consumers_raise_salable_did_not_move() {
    let mut sim = world(17, 2);
    // Magento's cron stops: reservations no longer update the salability status.
    sim.consumers_running = false;
    for (order, qty) in [("100000008", 2), ("100000009", 2), ("100000010", 2)] {
        sim.web_order(order, Delivery::Ship, &[("MUG", qty)])
            .unwrap();
    }
    sim.run(60_000);
    // Every mug is reserved; a till sale reindexes Commerce at "not salable".
    sim.pos_sale("MUG", "hull", d(1));
    sim.run(60_000);
    // A cancellation releases 2 reservations: customers should see 1 mug again, but the stale
    // index keeps answering 0.
    sim.commerce_cancel("100000010");
    sim.run(120_000);
    let stuck: Vec<_> = sim
        .engine
        .exceptions()
        .filter(|e| e.reason == Reason::SalableDidNotMove)
        .collect();
    assert_eq!(
        stuck.len(),
        1,
        "the engine notices Commerce's salable quantity did not move"
    );
    assert!(
        stuck[0].message.contains("shows salable 0 for MUG")
            && stuck[0].message.contains("expects 1"),
        "{}",
        stuck[0].message
    );
    // The consumers run again; the next change is verified and the exception resolves itself.
    sim.consumers_running = true;
    sim.pos_sale("MUG", "york", d(-1));
    sim.run(120_000);
    assert_eq!(
        sim.engine
            .exceptions()
            .filter(|e| e.reason == Reason::SalableDidNotMove)
            .count(),
        0
    );
    sim.assert_consistent("consumers back");
}

#[test]
fn a_second_parcel_handed_over_while_the_first_ships_is_shipped_after_it() {
    let mut sim = fault_world(18, 6);
    sim.web_order("100000011", Delivery::Ship, &[("MUG", 2), ("TEE", 2)])
        .unwrap();
    sim.run(60_000);
    sim.store_hands_over("100000011", &[("MUG", 2)]);
    // Let the first shipment go out (its answer still on the way), then the second parcel
    // arrives.
    sim.run(1);
    assert!(sim.engine.commands_in_flight() > 0);
    sim.store_hands_over("100000011", &[("TEE", 2)]);
    sim.run(300_000);
    sim.assert_consistent("two parcels");
    assert_eq!(sim.engine.stats().shipments_created, 2);
    assert_eq!(
        sim.open_web_demand("MUG") + sim.open_web_demand("TEE"),
        d(0)
    );
}

#[test]
fn a_restart_resends_what_was_in_flight_without_acting_twice() {
    let mut sim = world(19, 5);
    sim.web_order("100000012", Delivery::Ship, &[("MUG", 1)])
        .unwrap();
    sim.run(60_000);
    sim.store_moves("100000012", Completed, None);
    sim.pos_sale("TEE", "leeds", d(2));
    sim.crash_and_restart_mid_flight();
    sim.run(300_000);
    sim.assert_consistent("after the restart");
    assert_eq!(sim.commerce_qty("MUG", "york"), d(4), "shipped once");
}

#[test]
fn a_crash_after_a_shipment_restores_an_older_snapshot_without_pushing_the_shipped_units_back() {
    for snapshot in [true, false] {
        let mut sim = world(29, 5);
        sim.run(60_000);
        if snapshot {
            sim.save_snapshot();
        }
        // After the last snapshot: a walk-in sale (Commerce gets 4), then a web order handed
        // over at York and shipped (Commerce 2).
        sim.pos_sale("MUG", "york", d(1));
        sim.run(60_000);
        sim.web_order("100000013", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        sim.store_moves("100000013", Completed, None);
        sim.run(300_000);
        sim.assert_consistent("shipped");
        assert_eq!(sim.commerce_qty("MUG", "york"), d(2));

        // The service dies without its closing snapshot; the restart replays what came after.
        sim.crash_and_restore_snapshot();
        sim.run(300_000);
        sim.assert_consistent("after the restart");
        assert_eq!(
            sim.commerce_qty("MUG", "york"),
            d(2),
            "shipped units not pushed back"
        );
        assert!(
            sim.after_shipments.len() == 1,
            "one shipment: {:?}",
            sim.after_shipments
        );
    }
}

#[test]
fn a_crash_after_a_shipment_was_applied_but_not_answered_does_not_push_the_shipped_units_back() {
    for snapshot in [true, false] {
        let mut sim = world(29, 5);
        sim.run(60_000);
        if snapshot {
            sim.save_snapshot();
        }
        // After the last snapshot: a walk-in sale (Commerce gets 4), then a web order handed
        // over at York. Magento creates the shipment (Commerce 2), but the service dies before
        // the answer is stored: the outbox holds the shipment as sent.
        sim.pos_sale("MUG", "york", d(1));
        sim.run(60_000);
        sim.web_order("100000014", Delivery::Ship, &[("MUG", 2)])
            .unwrap();
        sim.run(60_000);
        sim.store_moves("100000014", Completed, None);
        assert!(sim.run_until_a_shipment_is_executed(300_000), "shipped");
        assert_eq!(sim.commerce_qty("MUG", "york"), d(2), "Magento deducted");
        sim.crash_and_restore_snapshot();

        // Another walk-in sale at York: a push is due (the till's 1 plus the 2 the restored
        // engine still counts in flight is not the 4 it last knew Commerce to hold).
        let writes = sim.writes.len();
        sim.pos_sale("MUG", "york", d(1));
        sim.run(300_000);
        sim.assert_consistent("after the restart");
        let york: Vec<Decimal> = sim.writes[writes..]
            .iter()
            .filter(|(s, so, _)| s.as_str() == "MUG" && so.as_str() == "york")
            .map(|(_, _, q)| *q)
            .collect();
        assert!(
            york.iter().all(|q| *q == d(1)),
            "snapshot {snapshot}: every write after the restart is the till's figure: {york:?}\n{}",
            sim.log.join("\n")
        );
        assert_eq!(sim.commerce_qty("MUG", "york"), d(1), "snapshot {snapshot}");
        assert_eq!(
            sim.after_shipments.len(),
            1,
            "one shipment: {:?}",
            sim.after_shipments
        );
    }
}

#[test]
fn a_start_against_a_commerce_that_already_holds_the_tills_figures_writes_only_what_differs() {
    // Commerce holds 5 of everything from last night; this morning one till sold two mugs.
    let fresh = |seed: u64| {
        let mut sim = Sim::new(seed, &stores(), &["MUG", "TEE"], d(5));
        sim.pos_sale("MUG", "york", d(2));
        sim
    };
    // Without the start's first read (the engine as built), every figure is written blind.
    let mut blind = fresh(23);
    blind.run(60_000);
    blind.assert_consistent("written blind");
    assert_eq!(blind.engine.stats().items_written, 6);

    // A start (or restart) reads Commerce's source items first and writes only the mug at York.
    let mut sim = fresh(23);
    sim.engine.resume(sim.now);
    sim.run(60_000);
    sim.assert_consistent("after the first read");
    assert_eq!(sim.commerce_qty("MUG", "york"), d(3));
    assert_eq!(sim.commerce_qty("TEE", "york"), d(5));
    assert_eq!(sim.engine.stats().items_written, 1, "{:#?}", sim.log);
}

#[test]
fn the_rest_of_a_split_order_cancelled_at_the_till_is_raised_and_released_by_a_commerce_cancel() {
    let mut sim = world(29, 5);
    sim.web_order("100000029", Delivery::Ship, &[("MUG", 2), ("TEE", 1)])
        .unwrap();
    sim.run(60_000);
    assert_eq!(routed_to(&sim, "100000029"), "york");
    sim.store_moves("100000029", Accepted, None);
    sim.run(30_000);
    // The mugs go in a parcel of their own; then the store cancels the part with the tee.
    sim.store_hands_over("100000029", &[("MUG", 2)]);
    sim.run(120_000);
    sim.store_moves("100000029", Cancelled, None);
    sim.run(120_000);
    sim.assert_consistent("rest cancelled at the till");
    let open: Vec<_> = sim
        .engine
        .exceptions()
        .filter(|e| e.reason == Reason::PosRefused && e.subject == "order 100000029")
        .collect();
    assert_eq!(open.len(), 1, "{:#?}", sim.log);
    assert!(open[0].message.contains("TEE × 1"), "{}", open[0].message);
    assert!(!open[0].message.contains("MUG"), "{}", open[0].message);
    assert_eq!(sim.open_web_demand("TEE"), d(1), "still reserved");
    // Customer service cancels the rest in Commerce: the reservation goes, so does the exception.
    sim.commerce_cancel("100000029");
    sim.run(120_000);
    sim.assert_consistent("rest cancelled in Commerce");
    assert_eq!(sim.open_web_demand("TEE"), d(0));
    assert!(
        !sim.engine
            .exceptions()
            .any(|e| e.subject == "order 100000029"),
        "resolved: {:#?}\n{:#?}",
        sim.engine.exceptions().collect::<Vec<_>>(),
        sim.log
    );
    assert_eq!(sim.commerce_qty("MUG", "york"), d(3));
}
