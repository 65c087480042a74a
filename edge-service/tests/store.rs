#![allow(clippy::unwrap_used)]
//! The storage suite: every test runs on SQLite (a temporary file) and on PostgreSQL (its own
//! database on the server named by `TILLBRIDGE_TEST_PG_URL`, created for the test and dropped
//! after it).
//!
//! `scripts/test.sh` starts a throwaway PostgreSQL and sets the variable. Without it the
//! PostgreSQL half fails and says how to fix that; `TILLBRIDGE_SKIP_PG=1` skips it explicitly.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use rust_decimal::Decimal;
use serde_json::json;
use tillbridge_core::mapping::{ItemMapping, LocationMapping, MappingIndex, MappingTable};
use tillbridge_core::pos::{
    Currency, Money, PosLineId, PosLocation, PosLocationId, PosTransaction, PosTransactionId,
    PosVariationId, Sku, SourceCode, StockLevel, StoreCode, Timestamp, TransactionKind,
    TransactionLine, TransactionState,
};
use tillbridge_core::sync::{
    Command, CommandKind, Engine, EngineConfig, ExceptionEntry, Input, Journal, Outcome, Output,
    Reason, RecordState, SourceItemWrite, StockKey,
};
use tillbridge_edge::pos::{
    BatchPayload, BoxFuture, Capabilities, ConnectorId, Feed, InboxError, PosBatch, PosConnector,
    PosCursor, PosError, PosInbox, StoreOutcome, poll_once,
};
use tillbridge_edge::store::{
    NewRecord, RecordFilter, RecordId, RecordKind, SqlStore, Store, StoreError,
};

// ---------------------------------------------------------------------------------------------
// one database per test

enum Cleanup {
    Dir(PathBuf),
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

/// A fresh, empty database for one test; [`Db::open`] opens (or reopens) a store on it.
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
    let short: String = test.chars().take(32).collect();
    format!(
        "tb_{short}_{}_{}_{nanos}",
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
                eprintln!(
                    "skipped: TILLBRIDGE_SKIP_PG=1 (the PostgreSQL storage tests did not run)"
                );
                return None;
            }
            panic!(
                "TILLBRIDGE_TEST_PG_URL is not set, so the PostgreSQL storage tests cannot run. \
                 Run scripts/test.sh (it starts a throwaway PostgreSQL and sets it), or set it to \
                 postgres://USER@HOST:PORT/DB on a server where USER may CREATE DATABASE, or set \
                 TILLBRIDGE_SKIP_PG=1 to skip these tests on purpose."
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

    fn open(&self) -> SqlStore {
        SqlStore::open(&self.url).unwrap()
    }
}

/// Each test below is a function of a [`Db`]; this runs it on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Db::sqlite(stringify!($name)));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(db) = super::Db::postgres(stringify!($name)) {
                        super::$name(&db);
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_record_is_stored_once_per_sender_id,
    payload_is_kept_exactly_and_input_gets_the_row_id,
    record_life_received_to_verified_with_history,
    failed_and_stalled_records_say_why,
    journal_entries_about_unknown_records_are_ignored,
    outbox_row_counts_attempts_with_history,
    an_idempotency_key_belongs_to_one_command,
    a_plan_journalled_before_the_command_is_stored_is_kept,
    exceptions_are_raised_once_and_resolved,
    records_filter_by_kind_state_and_text_with_paging,
    records_after_replays_in_id_order,
    cursors_are_replaced,
    the_newest_snapshot_wins_and_old_ones_are_pruned,
    counts_group_records_commands_and_open_exceptions,
    latencies_since_a_time,
    pos_batch_is_stored_once_with_its_records,
    pos_sales_lines_become_velocity_records,
    pos_commit_refuses_a_batch_that_is_not_stored,
    pos_cursor_and_records_survive_a_reopen,
    poll_once_goes_through_the_database,
    engine_outputs_persist_end_to_end,
    concurrent_stores_of_one_sender_id_make_one_row,
    concurrent_commands_with_one_key_make_one_row,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    replicas_racing_for_an_expired_lease_elect_one,
);

// ---------------------------------------------------------------------------------------------
// helpers

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_772_000_000_000 + ms)
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn source(s: &str) -> SourceCode {
    SourceCode::parse(s).unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn stock_input(s: &str, on_hand: &str, as_of: i64) -> serde_json::Value {
    serde_json::to_value(Input::PosStock {
        record: String::new(),
        sku: sku(s),
        source: source("leeds"),
        on_hand: dec(on_hand),
        as_of: ts(as_of),
    })
    .unwrap()
}

fn record(
    kind: RecordKind,
    origin: &str,
    ext: Option<&str>,
    payload: serde_json::Value,
) -> NewRecord {
    NewRecord {
        kind,
        origin: origin.into(),
        external_id: ext.map(str::to_owned),
        payload,
        received_at: ts(0),
    }
}

fn stock(store: &SqlStore, s: &str, ext: &str) -> RecordId {
    store
        .insert_record(&record(
            RecordKind::PosStock,
            "filedrop-leeds",
            Some(ext),
            stock_input(s, "5", 0),
        ))
        .unwrap()
        .0
}

fn move_record(id: RecordId, state: RecordState, detail: &str) -> Journal {
    Journal::Record {
        record: id.to_string(),
        state,
        detail: detail.into(),
    }
}

fn push(id: u64, key: &str, attempt: u32) -> Command {
    Command {
        id,
        idempotency_key: key.into(),
        attempt,
        kind: CommandKind::PushSourceItems {
            items: vec![SourceItemWrite {
                sku: sku("TEE-M"),
                source: source("leeds"),
                quantity: dec("5"),
                status: 1,
            }],
        },
    }
}

fn exception(id: u64, reason: Reason, records: &[RecordId]) -> ExceptionEntry {
    ExceptionEntry {
        id,
        subject: "TEE-M@leeds".into(),
        reason,
        message: "Commerce refused the write: check the SKU exists in Commerce.".into(),
        raised_at: ts(10),
        records: records.iter().map(RecordId::to_string).collect(),
    }
}

fn states(events: &[tillbridge_edge::store::LifeEvent]) -> Vec<RecordState> {
    events.iter().map(|e| e.state).collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn connector() -> ConnectorId {
    ConnectorId::parse("filedrop-leeds").unwrap()
}

fn level(location: &str, variation: &str, available: &str, as_of: i64) -> StockLevel {
    StockLevel {
        location: PosLocationId::parse(location).unwrap(),
        variation: PosVariationId::parse(variation).unwrap(),
        pos_sku: None,
        available: dec(available),
        as_of: ts(as_of),
    }
}

fn stock_batch(levels: Vec<StockLevel>, cursor: &str) -> PosBatch {
    PosBatch::new(
        connector(),
        Feed::StockChanges,
        Some(format!("{cursor}.csv")),
        BatchPayload::StockChanges { levels },
        Vec::new(),
        PosCursor::from_opaque(cursor),
        false,
    )
}

/// LEEDS → source `leeds`; variation V-TEE-M → SKU `TEE-M`. Nothing else is mapped.
fn mapping() -> MappingIndex {
    MappingIndex::build(&MappingTable {
        locations: vec![LocationMapping {
            pos_location: PosLocationId::parse("LEEDS").unwrap(),
            store: StoreCode::parse("leeds").unwrap(),
            source: source("leeds"),
        }],
        items: vec![ItemMapping {
            variation: PosVariationId::parse("V-TEE-M").unwrap(),
            sku: sku("TEE-M"),
        }],
        taxes: Vec::new(),
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// records

fn a_record_is_stored_once_per_sender_id(db: &Db) {
    let store = db.open();
    let r = record(
        RecordKind::Webhook,
        "square-main",
        Some("evt-1"),
        json!({"type": "inventory.count.updated"}),
    );
    let (first, new) = store.insert_record(&r).unwrap();
    assert!(new);
    let (again, new_again) = store.insert_record(&r).unwrap();
    assert_eq!((again, new_again), (first, false));
    // The same sender id from another origin or of another kind is another record.
    let other_origin = NewRecord {
        origin: "square-eu".into(),
        ..r.clone()
    };
    assert!(store.insert_record(&other_origin).unwrap().1);
    let other_kind = NewRecord {
        kind: RecordKind::Operator,
        ..r.clone()
    };
    assert!(store.insert_record(&other_kind).unwrap().1);
    // Without a sender id nothing is a duplicate.
    let anonymous = record(RecordKind::Operator, "api", None, json!({"retry": 3}));
    let (a, a_new) = store.insert_record(&anonymous).unwrap();
    let (b, b_new) = store.insert_record(&anonymous).unwrap();
    assert!(a_new && b_new && a != b);

    let stored = store.record(first).unwrap().unwrap();
    assert_eq!(stored.state, RecordState::Received);
    assert_eq!(stored.external_id.as_deref(), Some("evt-1"));
    assert_eq!(stored.origin, "square-main");
    assert_eq!(stored.detail, "received from square-main");
    assert_eq!(store.record_history(first).unwrap().len(), 1);
    assert_eq!(store.record(RecordId(999_999)).unwrap(), None);
}

fn payload_is_kept_exactly_and_input_gets_the_row_id(db: &Db) {
    let store = db.open();
    let payload = stock_input("TEE-M", "12.3456", 5);
    let (id, _) = store
        .insert_record(&record(
            RecordKind::PosStock,
            "filedrop-leeds",
            Some("x"),
            payload.clone(),
        ))
        .unwrap();
    let row = store.record(id).unwrap().unwrap();
    assert_eq!(row.payload, payload);
    assert_eq!(row.received_at, ts(0));
    match row.input().unwrap() {
        Some(Input::PosStock {
            record, on_hand, ..
        }) => {
            assert_eq!(record, id.to_string());
            assert_eq!(on_hand, dec("12.3456"));
        }
        other => panic!("{other:?}"),
    }
    // A raw webhook is not an engine input; a payload claiming to be one but unreadable is an
    // error, not silently skipped.
    let (hook, _) = store
        .insert_record(&record(
            RecordKind::Webhook,
            "square-main",
            Some("e"),
            json!({"a": 1}),
        ))
        .unwrap();
    assert!(
        store
            .record(hook)
            .unwrap()
            .unwrap()
            .input()
            .unwrap()
            .is_none()
    );
    let (bad, _) = store
        .insert_record(&record(
            RecordKind::PosStock,
            "filedrop-leeds",
            Some("bad"),
            json!({"input": "pos_stock", "sku": 3}),
        ))
        .unwrap();
    assert!(matches!(
        store.record(bad).unwrap().unwrap().input(),
        Err(StoreError::Corrupt { .. })
    ));
}

fn record_life_received_to_verified_with_history(db: &Db) {
    let store = db.open();
    let id = stock(&store, "TEE-M", "a");
    let steps = [
        (RecordState::Planned, "push 5 to TEE-M@leeds planned"),
        (RecordState::Sent, "push 5 to TEE-M@leeds"),
        (RecordState::Confirmed, "Commerce holds 5"),
        (RecordState::Verified, "salable quantity 5 read back"),
    ];
    for (i, (state, detail)) in steps.iter().enumerate() {
        store
            .apply_journal(&[move_record(id, *state, detail)], ts(100 * (i as i64 + 1)))
            .unwrap();
    }
    let row = store.record(id).unwrap().unwrap();
    assert_eq!(row.state, RecordState::Verified);
    assert_eq!(row.detail, "salable quantity 5 read back");
    assert_eq!(row.updated_at, ts(400));
    let history = store.record_history(id).unwrap();
    assert_eq!(
        states(&history),
        vec![
            RecordState::Received,
            RecordState::Planned,
            RecordState::Sent,
            RecordState::Confirmed,
            RecordState::Verified
        ]
    );
    assert_eq!(history[2].detail, "push 5 to TEE-M@leeds");
    assert_eq!(history[2].at, ts(200));
    assert_eq!(history[0].at, ts(0));
}

fn failed_and_stalled_records_say_why(db: &Db) {
    let store = db.open();
    let failed = stock(&store, "TEE-M", "f");
    let stalled = store
        .insert_record(&record(
            RecordKind::Fulfilment,
            "square-main",
            Some("ful-1"),
            json!({"input": "fulfilment"}),
        ))
        .unwrap()
        .0;
    let refused = "422: The SKU TEE-M does not exist. Create it in Commerce or fix the mapping.";
    store
        .apply_journal(
            &[
                move_record(failed, RecordState::Failed, refused),
                Journal::Raised(exception(7, Reason::CommerceRefused, &[failed])),
                move_record(stalled, RecordState::Stalled, "unknown order"),
                Journal::Raised(ExceptionEntry {
                    id: 8,
                    subject: "order 100000123".into(),
                    reason: Reason::UnknownOrder,
                    message: "The POS moved order 100000123, which Tillbridge does not know."
                        .into(),
                    raised_at: ts(20),
                    records: vec![stalled.to_string()],
                }),
            ],
            ts(20),
        )
        .unwrap();
    let row = store.record(failed).unwrap().unwrap();
    assert_eq!(row.state, RecordState::Failed);
    assert_eq!(row.detail, refused);
    assert_eq!(
        (row.exception, row.reason),
        (Some(7), Some(Reason::CommerceRefused))
    );
    let row = store.record(stalled).unwrap().unwrap();
    assert_eq!(row.state, RecordState::Stalled);
    assert_eq!(
        (row.exception, row.reason),
        (Some(8), Some(Reason::UnknownOrder))
    );
    // Listings carry the reason too; once resolved, it is no longer on the record.
    let page = store
        .records(&RecordFilter {
            state: Some(RecordState::Failed),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(page.items[0].reason, Some(Reason::CommerceRefused));
    store
        .apply_journal(
            &[Journal::Resolved {
                id: 7,
                at: ts(30),
                note: "SKU created".into(),
            }],
            ts(30),
        )
        .unwrap();
    let row = store.record(failed).unwrap().unwrap();
    assert_eq!((row.exception, row.reason), (None, None));
}

fn journal_entries_about_unknown_records_are_ignored(db: &Db) {
    let store = db.open();
    let id = stock(&store, "TEE-M", "u");
    store
        .apply_journal(
            &[
                Journal::Record {
                    record: "sim-7".into(),
                    state: RecordState::Settled,
                    detail: "x".into(),
                },
                move_record(RecordId(424_242), RecordState::Settled, "x"),
                move_record(id, RecordState::Settled, "sales velocity updated"),
            ],
            ts(1),
        )
        .unwrap();
    assert_eq!(
        store.record(id).unwrap().unwrap().state,
        RecordState::Settled
    );
    assert_eq!(store.record(RecordId(424_242)).unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// the outbox

fn outbox_row_counts_attempts_with_history(db: &Db) {
    let store = db.open();
    store.put_command(&push(1, "push:1", 1), ts(0)).unwrap();
    let row = store.command(1).unwrap().unwrap();
    assert_eq!(row.idempotency_key, "push:1");
    assert_eq!(row.kind, "push_source_items");
    assert_eq!(row.state, RecordState::Sent);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.created_at, ts(0));
    assert_eq!(
        serde_json::from_value::<Command>(row.payload).unwrap(),
        push(1, "push:1", 1)
    );
    // Stored again with the same attempt (a replay): nothing changes.
    store.put_command(&push(1, "push:1", 1), ts(5)).unwrap();
    assert_eq!(store.command_history(1).unwrap().len(), 1);

    store
        .apply_journal(
            &[Journal::Command {
                command: 1,
                state: RecordState::Failed,
                detail: "attempt 1: 503 Service Unavailable".into(),
            }],
            ts(10),
        )
        .unwrap();
    assert_eq!(
        store.command(1).unwrap().unwrap().state,
        RecordState::Failed
    );
    store.put_command(&push(1, "push:1", 2), ts(20)).unwrap();
    store
        .apply_journal(
            &[Journal::Command {
                command: 1,
                state: RecordState::Confirmed,
                detail: "push_source_items".into(),
            }],
            ts(30),
        )
        .unwrap();
    let row = store.command(1).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (RecordState::Confirmed, 2));
    assert_eq!((row.created_at, row.updated_at), (ts(0), ts(30)));
    let history = store.command_history(1).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (e.state, e.detail.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (RecordState::Sent, "attempt 1 sent"),
            (RecordState::Failed, "attempt 1: 503 Service Unavailable"),
            (RecordState::Sent, "attempt 2 sent"),
            (RecordState::Confirmed, "push_source_items"),
        ]
    );
    assert_eq!(store.command(2).unwrap(), None);
    let page = store.commands(Some(RecordState::Confirmed), 0, 0).unwrap();
    assert_eq!((page.total, page.items.len()), (1, 1));
    assert_eq!(
        store.commands(Some(RecordState::Sent), 0, 0).unwrap().total,
        0
    );
}

fn an_idempotency_key_belongs_to_one_command(db: &Db) {
    let store = db.open();
    store
        .put_command(&push(1, "push:TEE-M@leeds:1", 1), ts(0))
        .unwrap();
    match store.put_command(&push(2, "push:TEE-M@leeds:1", 1), ts(1)) {
        Err(StoreError::DuplicateKey {
            key,
            command,
            existing,
        }) => {
            assert_eq!(
                (key.as_str(), command, existing),
                ("push:TEE-M@leeds:1", 2, 1)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.command(2).unwrap(), None);
    match store.put_command(&push(1, "push:other", 1), ts(2)) {
        Err(StoreError::CommandIdTaken {
            command,
            stored_key,
            ..
        }) => assert_eq!((command, stored_key.as_str()), (1, "push:TEE-M@leeds:1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.commands(None, 0, 0).unwrap().total, 1);
}

fn a_plan_journalled_before_the_command_is_stored_is_kept(db: &Db) {
    let store = db.open();
    let planned = Journal::Command {
        command: 4,
        state: RecordState::Planned,
        detail: "shipment for order 100000123 from leeds".into(),
    };
    store
        .apply_journal(std::slice::from_ref(&planned), ts(0))
        .unwrap();
    assert_eq!(store.command(4).unwrap(), None);
    store
        .put_command(&push(4, "ship:100000123:leeds:1", 1), ts(5))
        .unwrap();
    // The engine's poll returns commands before its journal: a plan arriving after the
    // command was stored stays in the history without moving the command back.
    store.apply_journal(&[planned], ts(6)).unwrap();
    let row = store.command(4).unwrap().unwrap();
    assert_eq!(row.state, RecordState::Sent);
    assert_eq!(
        states(&store.command_history(4).unwrap()),
        vec![
            RecordState::Planned,
            RecordState::Sent,
            RecordState::Planned
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// exceptions, listings, replay, cursors, snapshots, counts

fn exceptions_are_raised_once_and_resolved(db: &Db) {
    let store = db.open();
    let r = stock(&store, "TEE-M", "e");
    store
        .apply_journal(
            &[
                Journal::Raised(exception(1, Reason::CommerceRefused, &[r])),
                Journal::Raised(exception(2, Reason::Timeout, &[])),
                // A replay raises the same exception again: still one.
                Journal::Raised(exception(1, Reason::CommerceRefused, &[r])),
            ],
            ts(10),
        )
        .unwrap();
    let open = store.exceptions(true, 0, 0).unwrap();
    assert_eq!(open.total, 2);
    assert_eq!(
        open.items.iter().map(|e| e.entry.id).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(
        open.items[1].entry,
        exception(1, Reason::CommerceRefused, &[r])
    );
    assert_eq!(open.items[1].resolved_at, None);

    let resolve = Journal::Resolved {
        id: 1,
        at: ts(50),
        note: "created the SKU in Commerce".into(),
    };
    store
        .apply_journal(std::slice::from_ref(&resolve), ts(50))
        .unwrap();
    // Resolving again keeps the first resolution.
    store
        .apply_journal(
            &[Journal::Resolved {
                id: 1,
                at: ts(60),
                note: "again".into(),
            }],
            ts(60),
        )
        .unwrap();
    let open = store.exceptions(true, 0, 0).unwrap();
    assert_eq!(
        open.items.iter().map(|e| e.entry.id).collect::<Vec<_>>(),
        vec![2]
    );
    let all = store.exceptions(false, 0, 0).unwrap();
    assert_eq!(all.total, 2);
    let done = all.items.iter().find(|e| e.entry.id == 1).unwrap();
    assert_eq!(done.resolved_at, Some(ts(50)));
    assert_eq!(
        done.resolution.as_deref(),
        Some("created the SKU in Commerce")
    );
    let page = store.exceptions(false, 1, 1).unwrap();
    assert_eq!((page.total, page.items[0].entry.id), (2, 1));
}

fn records_filter_by_kind_state_and_text_with_paging(db: &Db) {
    let store = db.open();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(stock(&store, &format!("TEE-{i}"), &format!("s{i}")));
    }
    let order = store
        .insert_record(&record(
            RecordKind::CommerceOrder,
            "commerce",
            Some("100000123@1"),
            json!({"input": "commerce_order", "order": {"increment_id": "100000123"}}),
        ))
        .unwrap()
        .0;
    let odd = store
        .insert_record(&record(
            RecordKind::Webhook,
            "square-main",
            Some("50%_off"),
            json!({"note": "50%_off sale"}),
        ))
        .unwrap()
        .0;
    store
        .apply_journal(
            &[
                move_record(ids[1], RecordState::Settled, "nothing to do"),
                move_record(ids[3], RecordState::Stalled, "Waiting for order 100000123"),
            ],
            ts(5),
        )
        .unwrap();

    let all = store.records(&RecordFilter::default()).unwrap();
    assert_eq!(all.total, 9);
    assert_eq!(all.items[0].id, odd, "newest first");
    let stock_only = store
        .records(&RecordFilter {
            kind: Some(RecordKind::PosStock),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(stock_only.total, 7);
    let page = store
        .records(&RecordFilter {
            kind: Some(RecordKind::PosStock),
            limit: 3,
            offset: 3,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(
        page.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2], ids[1]]
    );
    let received = store
        .records(&RecordFilter {
            kind: Some(RecordKind::PosStock),
            state: Some(RecordState::Received),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(received.total, 5);
    // Text in the payload (any case), in the detail, in the external id.
    let by_sku = store
        .records(&RecordFilter {
            contains: Some("tee-4".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(
        by_sku.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
    let by_order = store
        .records(&RecordFilter {
            contains: Some("100000123".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(
        by_order.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![order, ids[3]]
    );
    let by_state_and_text = store
        .records(&RecordFilter {
            state: Some(RecordState::Stalled),
            contains: Some("100000123".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(by_state_and_text.total, 1);
    let by_external = store
        .records(&RecordFilter {
            contains: Some("S6".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(
        by_external.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[6]]
    );
    // `%` and `_` are plain characters, not wildcards.
    let literal = store
        .records(&RecordFilter {
            contains: Some("0%_o".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(
        literal.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![odd]
    );
    let wildcard = store
        .records(&RecordFilter {
            contains: Some("TEE_".into()),
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(wildcard.total, 0);
}

fn records_after_replays_in_id_order(db: &Db) {
    let store = db.open();
    let ids: Vec<RecordId> = (0..5)
        .map(|i| stock(&store, "TEE-M", &format!("r{i}")))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let first = store.records_after(RecordId(0), 2).unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..2]);
    let rest = store.records_after(ids[1], 100).unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), ids[2..]);
    assert!(store.records_after(ids[4], 10).unwrap().is_empty());
}

fn cursors_are_replaced(db: &Db) {
    let store = db.open();
    assert_eq!(store.cursor("commerce:orders").unwrap(), None);
    store
        .save_cursor("commerce:orders", "{\"updated_at\":1}", ts(0))
        .unwrap();
    store
        .save_cursor("commerce:orders", "{\"updated_at\":2}", ts(1))
        .unwrap();
    store.save_cursor("other", "x", ts(1)).unwrap();
    assert_eq!(
        store.cursor("commerce:orders").unwrap().as_deref(),
        Some("{\"updated_at\":2}")
    );
    assert_eq!(store.cursor("other").unwrap().as_deref(), Some("x"));
}

fn the_newest_snapshot_wins_and_old_ones_are_pruned(db: &Db) {
    let store = db.open();
    assert_eq!(store.snapshot().unwrap(), None);
    let engine = Engine::new(EngineConfig::default(), ts(0));
    let json = serde_json::to_string(&engine).unwrap();
    for i in 1..=5 {
        store
            .save_snapshot(&format!("{{\"n\":{i}}}"), RecordId(i), ts(i))
            .unwrap();
    }
    store.save_snapshot(&json, RecordId(42), ts(6)).unwrap();
    let (text, last) = store.snapshot().unwrap().unwrap();
    assert_eq!(last, RecordId(42));
    let restored: Engine = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&restored).unwrap(), json);
    // Pruning keeps the newest three; a reopened store sees the same newest one.
    drop(store);
    let store = db.open();
    assert_eq!(store.snapshot().unwrap().unwrap().1, RecordId(42));
}

fn counts_group_records_commands_and_open_exceptions(db: &Db) {
    let store = db.open();
    let a = stock(&store, "TEE-M", "c1");
    stock(&store, "TEE-L", "c2");
    store
        .insert_record(&record(
            RecordKind::Webhook,
            "square-main",
            Some("w"),
            json!({}),
        ))
        .unwrap();
    store.put_command(&push(1, "k1", 1), ts(0)).unwrap();
    store.put_command(&push(2, "k2", 1), ts(0)).unwrap();
    store
        .apply_journal(
            &[
                move_record(a, RecordState::Settled, "nothing to do"),
                Journal::Command {
                    command: 2,
                    state: RecordState::Confirmed,
                    detail: "ok".into(),
                },
                Journal::Raised(exception(1, Reason::Timeout, &[])),
                Journal::Raised(exception(2, Reason::Timeout, &[])),
                Journal::Raised(exception(3, Reason::Unroutable, &[])),
                Journal::Resolved {
                    id: 3,
                    at: ts(1),
                    note: "routed by hand".into(),
                },
            ],
            ts(1),
        )
        .unwrap();
    let counts = store.counts().unwrap();
    let mut records = counts.records.clone();
    records.sort_by_key(|(k, s, _)| (*k, format!("{s:?}")));
    assert_eq!(
        records,
        vec![
            (RecordKind::PosStock, RecordState::Received, 1),
            (RecordKind::PosStock, RecordState::Settled, 1),
            (RecordKind::Webhook, RecordState::Received, 1),
        ]
    );
    let mut commands = counts.commands.clone();
    commands.sort_by_key(|(s, _)| format!("{s:?}"));
    assert_eq!(
        commands,
        vec![(RecordState::Confirmed, 1), (RecordState::Sent, 1)]
    );
    assert_eq!(counts.open_exceptions, vec![("timeout".to_owned(), 2)]);
}

fn latencies_since_a_time(db: &Db) {
    let store = db.open();
    let key = StockKey::new(sku("TEE-M"), source("leeds"));
    store
        .apply_journal(
            &[Journal::Latency {
                key: key.clone(),
                ms: 900,
            }],
            ts(1_000),
        )
        .unwrap();
    store
        .apply_journal(
            &[
                Journal::Latency {
                    key: key.clone(),
                    ms: 1_200,
                },
                Journal::Latency { key, ms: 700 },
            ],
            ts(5_000),
        )
        .unwrap();
    assert_eq!(store.latencies(ts(0)).unwrap(), vec![900, 1_200, 700]);
    assert_eq!(store.latencies(ts(2_000)).unwrap(), vec![1_200, 700]);
    assert!(store.latencies(ts(9_000)).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// the POS inbox

fn pos_batch_is_stored_once_with_its_records(db: &Db) {
    let store = db.open();
    store.set_mapping(Some(mapping()));
    let batch = stock_batch(
        vec![
            level("LEEDS", "V-TEE-M", "7", 1),
            level("LEEDS", "V-UNMAPPED", "3", 1),
            level("YORK", "V-TEE-M", "2", 1),
        ],
        "c1",
    );
    let first = block_on(store.store_batch(&batch)).unwrap();
    assert!(matches!(first, StoreOutcome::Stored { .. }));
    assert_eq!(
        block_on(store.store_batch(&batch)).unwrap(),
        StoreOutcome::AlreadyStored { seq: first.seq() }
    );
    let rows = store.records_after(RecordId(0), 100).unwrap();
    assert_eq!(rows.len(), 3, "one record per level, stored once");
    assert!(
        rows.iter()
            .all(|r| r.kind == RecordKind::PosStock && r.origin == "filedrop-leeds")
    );

    let mapped = &rows[0];
    assert_eq!(mapped.state, RecordState::Received);
    assert_eq!(
        mapped.external_id.as_deref(),
        Some(format!("LEEDS/V-TEE-M@{}", ts(1)).as_str())
    );
    assert_eq!(
        mapped.input().unwrap(),
        Some(Input::PosStock {
            record: mapped.id.to_string(),
            sku: sku("TEE-M"),
            source: source("leeds"),
            on_hand: dec("7"),
            as_of: ts(1),
        })
    );
    let unmapped = &rows[1];
    assert_eq!(unmapped.state, RecordState::Settled);
    assert_eq!(unmapped.input().unwrap(), None);
    assert!(
        unmapped.detail.contains("V-UNMAPPED has no Commerce SKU"),
        "{}",
        unmapped.detail
    );
    assert_eq!(
        states(&store.record_history(unmapped.id).unwrap()),
        vec![RecordState::Received, RecordState::Settled]
    );
    assert!(
        rows[2]
            .detail
            .contains("POS location YORK has no MSI source"),
        "{}",
        rows[2].detail
    );

    // The raw batch is kept as read.
    let raw = store.batches(0, 10).unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!((raw[0].seq, &raw[0].batch), (first.seq(), &batch));

    // A later batch with one level already seen stores only the new one.
    let later = stock_batch(
        vec![
            level("LEEDS", "V-TEE-M", "7", 1),
            level("LEEDS", "V-TEE-M", "6", 9),
        ],
        "c2",
    );
    let second = block_on(store.store_batch(&later)).unwrap();
    assert!(second.seq() > first.seq());
    assert_eq!(store.records_after(RecordId(0), 100).unwrap().len(), 4);

    // An altered batch (id no longer matches its content) is refused.
    let mut altered = batch.clone();
    altered.source = Some("other.csv".into());
    assert!(matches!(
        block_on(store.store_batch(&altered)),
        Err(InboxError::IdMismatch { .. })
    ));
}

fn sale(id: &str, kind: TransactionKind, state: TransactionState, version: i64) -> PosTransaction {
    let line = |n: &str, variation: Option<&str>, qty: &str| TransactionLine {
        id: PosLineId::parse(n).unwrap(),
        variation: variation.map(|v| PosVariationId::parse(v).unwrap()),
        pos_sku: None,
        name: None,
        quantity: dec(qty),
        unit_price: Money::new(1000, Currency::GBP),
        discount: Money::zero(Currency::GBP),
        total: Money::new(1000, Currency::GBP),
        taxes: Vec::new(),
    };
    PosTransaction {
        id: PosTransactionId::parse(id).unwrap(),
        location: PosLocationId::parse("LEEDS").unwrap(),
        kind,
        state,
        occurred_at: ts(100),
        updated_at: ts(100 + version),
        version: Some(version),
        currency: Currency::GBP,
        lines: vec![
            line("1", Some("V-TEE-M"), "2"),
            line("2", None, "1"),
            line("3", Some("V-UNMAPPED"), "1"),
        ],
        tenders: Vec::new(),
        original: None,
    }
}

fn sales_batch(transactions: Vec<PosTransaction>, cursor: &str) -> PosBatch {
    PosBatch::new(
        connector(),
        Feed::Sales,
        Some(format!("{cursor}.csv")),
        BatchPayload::Sales { transactions },
        Vec::new(),
        PosCursor::from_opaque(cursor),
        false,
    )
}

fn pos_sales_lines_become_velocity_records(db: &Db) {
    let store = db.open();
    store.set_mapping(Some(mapping()));
    let batch = sales_batch(
        vec![
            sale("T1", TransactionKind::Sale, TransactionState::Completed, 1),
            sale(
                "T2",
                TransactionKind::Return,
                TransactionState::Completed,
                1,
            ),
            sale("T3", TransactionKind::Sale, TransactionState::Open, 1),
        ],
        "s1",
    );
    block_on(store.store_batch(&batch)).unwrap();
    let rows = store.records_after(RecordId(0), 100).unwrap();
    // T1 and T2: the mapped line and the unmapped one; no custom-amount line; nothing of T3.
    assert_eq!(
        rows.iter()
            .map(|r| (r.external_id.clone().unwrap(), r.state))
            .collect::<Vec<_>>(),
        vec![
            ("T1/1".to_owned(), RecordState::Received),
            ("T1/3".to_owned(), RecordState::Settled),
            ("T2/1".to_owned(), RecordState::Received),
            ("T2/3".to_owned(), RecordState::Settled),
        ]
    );
    let units = |i: usize| match rows[i].input().unwrap() {
        Some(Input::PosSale {
            units, sku: s, at, ..
        }) => {
            assert_eq!((s, at), (sku("TEE-M"), ts(100)));
            units
        }
        other => panic!("{other:?}"),
    };
    assert_eq!((units(0), units(2)), (dec("2"), dec("-2")));
    // A correction of T1 (higher version) is not counted again; T3 completing is.
    let corrected = sales_batch(
        vec![
            sale("T1", TransactionKind::Sale, TransactionState::Completed, 2),
            sale("T3", TransactionKind::Sale, TransactionState::Completed, 2),
        ],
        "s2",
    );
    block_on(store.store_batch(&corrected)).unwrap();
    let rows = store.records_after(rows[3].id, 100).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.external_id.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["T3/1", "T3/3"]
    );
}

fn pos_commit_refuses_a_batch_that_is_not_stored(db: &Db) {
    let store = db.open();
    let batch = stock_batch(vec![level("LEEDS", "V-TEE-M", "7", 1)], "c1");
    let refused = block_on(store.commit_cursor(
        &connector(),
        Feed::StockChanges,
        &batch.next_cursor,
        &batch.id,
    ));
    assert!(
        matches!(refused, Err(InboxError::BatchNotStored { .. })),
        "{refused:?}"
    );
    assert_eq!(
        block_on(store.load_cursor(&connector(), Feed::StockChanges)).unwrap(),
        None
    );
    block_on(store.store_batch(&batch)).unwrap();
    block_on(store.commit_cursor(
        &connector(),
        Feed::StockChanges,
        &batch.next_cursor,
        &batch.id,
    ))
    .unwrap();
    assert_eq!(
        block_on(store.load_cursor(&connector(), Feed::StockChanges)).unwrap(),
        Some(PosCursor::from_opaque("c1"))
    );
    // Feeds and connectors have their own cursors, apart from the Store's own.
    assert_eq!(
        block_on(store.load_cursor(&connector(), Feed::Sales)).unwrap(),
        None
    );
    assert_eq!(store.cursor("stock_changes").unwrap(), None);
}

fn pos_cursor_and_records_survive_a_reopen(db: &Db) {
    let batch = stock_batch(vec![level("LEEDS", "V-TEE-M", "7", 1)], "c1");
    let seq = {
        let store = db.open();
        store.set_mapping(Some(mapping()));
        let seq = block_on(store.store_batch(&batch)).unwrap().seq();
        block_on(store.commit_cursor(
            &connector(),
            Feed::StockChanges,
            &batch.next_cursor,
            &batch.id,
        ))
        .unwrap();
        seq
    };
    let store = db.open();
    assert_eq!(
        block_on(store.load_cursor(&connector(), Feed::StockChanges)).unwrap(),
        Some(PosCursor::from_opaque("c1"))
    );
    // A re-delivery after the restart is recognised.
    assert_eq!(
        block_on(store.store_batch(&batch)).unwrap(),
        StoreOutcome::AlreadyStored { seq }
    );
    assert_eq!(store.records_after(RecordId(0), 10).unwrap().len(), 1);
}

/// A connector with one batch of stock changes, then nothing.
#[derive(Debug)]
struct OneBatch {
    id: ConnectorId,
    batch: PosBatch,
}

impl PosConnector for OneBatch {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            stock_changes: true,
            ..Capabilities::default()
        }
    }

    fn locations(&self) -> BoxFuture<'_, Result<Vec<PosLocation>, PosError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn stock_changes<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        let out = if cursor.is_start() {
            self.batch.clone()
        } else {
            stock_batch(Vec::new(), cursor.as_str())
        };
        Box::pin(async move { Ok(out) })
    }
}

fn poll_once_goes_through_the_database(db: &Db) {
    let store = db.open();
    store.set_mapping(Some(mapping()));
    let pos = OneBatch {
        id: connector(),
        batch: stock_batch(vec![level("LEEDS", "V-TEE-M", "4", 1)], "after-1"),
    };
    let report = block_on(poll_once(&pos, &store, Feed::StockChanges)).unwrap();
    assert_eq!(report.records, 1);
    assert!(matches!(report.stored, Some(StoreOutcome::Stored { .. })));
    let report = block_on(poll_once(&pos, &store, Feed::StockChanges)).unwrap();
    assert_eq!((report.records, report.stored), (0, None));
    assert_eq!(
        block_on(store.load_cursor(&connector(), Feed::StockChanges)).unwrap(),
        Some(PosCursor::from_opaque("after-1"))
    );
    let rows = store.records_after(RecordId(0), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(matches!(
        rows[0].input().unwrap(),
        Some(Input::PosStock { .. })
    ));
}

/// Store → engine → outbox and journal → answer → engine → journal, as the runner does it.
fn engine_outputs_persist_end_to_end(db: &Db) {
    let store = db.open();
    let mut engine = Engine::new(EngineConfig::default(), ts(0));
    let (id, _) = store
        .insert_record(&record(
            RecordKind::PosStock,
            "filedrop-leeds",
            Some("LEEDS/V-TEE-M"),
            stock_input("TEE-M", "5", 0),
        ))
        .unwrap();
    let input = store.record(id).unwrap().unwrap().input().unwrap().unwrap();
    engine.handle(input, ts(10));
    let mut sent = Vec::new();
    let mut now = ts(10);
    for _ in 0..20 {
        let outputs = engine.poll(now);
        let mut journal = Vec::new();
        for out in outputs {
            match out {
                Output::Command(cmd) => {
                    store.put_command(&cmd, now).unwrap();
                    sent.push(cmd);
                }
                Output::Journal(j) => journal.push(j),
            }
        }
        store.apply_journal(&journal, now).unwrap();
        if !sent.is_empty() {
            break;
        }
        now = engine.next_wakeup(now).unwrap_or(now.add_millis(1_000));
    }
    let cmd = sent
        .first()
        .expect("the engine pushes the new stock figure")
        .clone();
    assert!(matches!(cmd.kind, CommandKind::PushSourceItems { .. }));
    let outbox = store.command(cmd.id).unwrap().unwrap();
    assert_eq!(outbox.idempotency_key, cmd.idempotency_key);
    assert_eq!(store.record(id).unwrap().unwrap().state, RecordState::Sent);

    // The answer is itself a stored record before the engine sees it.
    let answer = Input::Result {
        command: cmd.id,
        outcome: Outcome::Ok { latency_ms: 80 },
    };
    let (answer_id, _) = store
        .insert_record(&record(
            RecordKind::CommandResult,
            "commerce",
            Some(&format!("{}:{}", cmd.id, cmd.attempt)),
            serde_json::to_value(&answer).unwrap(),
        ))
        .unwrap();
    engine.handle(
        store
            .record(answer_id)
            .unwrap()
            .unwrap()
            .input()
            .unwrap()
            .unwrap(),
        now,
    );
    let journal: Vec<Journal> = engine
        .poll(now)
        .into_iter()
        .filter_map(|o| match o {
            Output::Journal(j) => Some(j),
            Output::Command(_) => None,
        })
        .collect();
    store.apply_journal(&journal, now).unwrap();
    assert_eq!(
        store.command(cmd.id).unwrap().unwrap().state,
        RecordState::Confirmed
    );
    let history = states(&store.record_history(id).unwrap());
    assert_eq!(history.first(), Some(&RecordState::Received));
    assert!(history.contains(&RecordState::Sent), "{history:?}");
    assert_eq!(history.last(), Some(&RecordState::Confirmed), "{history:?}");
    assert!(!store.latencies(ts(0)).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// concurrency: two handles (two replicas) on one database

fn concurrent_stores_of_one_sender_id_make_one_row(db: &Db) {
    let stores = [db.open(), db.open()];
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = stores[t % 2].clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..25)
                    .map(|i| {
                        store
                            .insert_record(&record(
                                RecordKind::Webhook,
                                "square-main",
                                Some(&format!("evt-{i}")),
                                json!({"i": i}),
                            ))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<(RecordId, bool)>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for i in 0..25 {
        let ids: Vec<RecordId> = results.iter().map(|r| r[i].0).collect();
        assert!(ids.iter().all(|&id| id == ids[0]), "event {i}: {ids:?}");
        assert_eq!(
            results.iter().filter(|r| r[i].1).count(),
            1,
            "event {i}: one is new"
        );
    }
    assert_eq!(
        stores[0].records(&RecordFilter::default()).unwrap().total,
        25
    );
    // And the same batch from two replicas is stored once.
    let batch = stock_batch(vec![level("LEEDS", "V-TEE-M", "7", 1)], "c1");
    let outcomes: Vec<StoreOutcome> = std::thread::scope(|s| {
        let hs: Vec<_> = stores
            .iter()
            .map(|store| s.spawn(|| block_on(store.store_batch(&batch)).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes[0].seq(), outcomes[1].seq());
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, StoreOutcome::Stored { .. }))
            .count(),
        1
    );
    assert_eq!(stores[1].batches(0, 10).unwrap().len(), 1);
}

fn concurrent_commands_with_one_key_make_one_row(db: &Db) {
    let stores = [db.open(), db.open()];
    let barrier = Barrier::new(2);
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let hs: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    store.put_command(&push(10 + i as u64, "push:TEE-M@leeds:9", 1), ts(0))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::DuplicateKey { .. }))),
        "{results:?}"
    );
    assert_eq!(stores[0].commands(None, 0, 0).unwrap().total, 1);
}

// ---------------------------------------------------------------------------------------------
// opening

#[test]
fn open_refuses_urls_it_cannot_serve_without_showing_passwords() {
    for url in ["", "mysql://root:hunter2@db/x", "sqlite://"] {
        match SqlStore::open(url) {
            Err(StoreError::BadUrl(shown)) => assert!(!shown.contains("hunter2"), "{shown}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn sqlite_store_is_one_file_in_wal_mode_created_with_its_folder() {
    let db = Db::sqlite("wal");
    let Cleanup::Dir(dir) = &db._cleanup else {
        unreachable!()
    };
    let path = dir.join("nested/deeper/tillbridge.db");
    let store = SqlStore::open(path.to_str().unwrap()).unwrap();
    assert_eq!(store.backend(), "sqlite");
    stock(&store, "TEE-M", "w");
    assert!(path.exists());
    assert!(
        dir.join("nested/deeper/tillbridge.db-wal").exists(),
        "WAL mode keeps a -wal file"
    );
    // Reopening runs no migration twice and keeps the data.
    drop(store);
    let store = SqlStore::open(&format!("sqlite://{}", path.display())).unwrap();
    assert_eq!(store.records(&RecordFilter::default()).unwrap().total, 1);
}

#[test]
fn postgres_store_masks_its_password_in_debug_output() {
    let Some(db) = Db::postgres("debug") else {
        return;
    };
    let store = db.open();
    assert_eq!(store.backend(), "postgres");
    let shown = format!("{store:?}");
    assert!(shown.contains("postgres"), "{shown}");
    let mut url = url::Url::parse(&db.url).unwrap();
    if url.password().is_some() {
        url.set_password(Some("***")).unwrap();
        assert!(shown.contains(url.as_str()), "{shown}");
    }
}

fn a_lease_has_one_holder_until_it_expires_or_is_released(db: &Db) {
    let (a, b) = (db.open(), db.open());
    assert!(
        a.acquire_lease("engine", "replica-a", ts(1_000), 10_000)
            .unwrap()
    );
    // Held: another replica cannot take it; the holder renews it.
    assert!(
        !b.acquire_lease("engine", "replica-b", ts(5_000), 10_000)
            .unwrap()
    );
    assert!(
        a.acquire_lease("engine", "replica-a", ts(9_000), 10_000)
            .unwrap()
    );
    // Renewed until 19 000: still held at 15 000, free after.
    assert!(
        !b.acquire_lease("engine", "replica-b", ts(15_000), 10_000)
            .unwrap()
    );
    assert!(
        b.acquire_lease("engine", "replica-b", ts(19_001), 10_000)
            .unwrap()
    );
    // The old holder finds out it lost it.
    assert!(
        !a.acquire_lease("engine", "replica-a", ts(19_002), 10_000)
            .unwrap()
    );
    // Released: taken at once. Releasing someone else's lease does nothing.
    a.release_lease("engine", "replica-b-not").unwrap();
    assert!(
        !a.acquire_lease("engine", "replica-a", ts(19_003), 10_000)
            .unwrap()
    );
    b.release_lease("engine", "replica-b").unwrap();
    assert!(
        a.acquire_lease("engine", "replica-a", ts(19_004), 10_000)
            .unwrap()
    );
    // Leases are independent by name.
    assert!(
        b.acquire_lease("other", "replica-b", ts(19_005), 10_000)
            .unwrap()
    );
}

fn replicas_racing_for_an_expired_lease_elect_one(db: &Db) {
    let stores: Vec<SqlStore> = (0..4).map(|_| db.open()).collect();
    assert!(
        stores[0]
            .acquire_lease("engine", "old", ts(0), 1_000)
            .unwrap()
    );
    for round in 0..10_i64 {
        let now = ts(2_000 + round * 100_000);
        let barrier = Barrier::new(stores.len());
        let winners: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, store)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        store
                            .acquire_lease("engine", &format!("r{round}-{i}"), now, 50_000)
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            winners.iter().filter(|w| **w).count(),
            1,
            "round {round}: {winners:?}"
        );
    }
}
