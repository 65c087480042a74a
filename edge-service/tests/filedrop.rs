//! The file-drop connector over real files in temporary folders, through the real file inbox.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use tillbridge_core::mapping::{ItemMapping, LocationMapping, MappingIndex, MappingTable};
use tillbridge_core::pos::{
    Currency, Money, PosLocationId, PosVariationId, Sku, SourceCode, StoreCode, TenderKind,
    Timestamp, TransactionKind,
};
use tillbridge_edge::pos::filedrop::{
    Columns, FileDropConfig, FileDropConnector, FileKind, FileOutcome,
};
use tillbridge_edge::pos::{
    BatchPayload, ConnectorId, Feed, FileInbox, InboxError, PosBatch, PosConnector, PosCursor,
    PosError, PosInbox, RecordError, RecordErrorKind, StoreOutcome, poll_once,
};

// ---------------------------------------------------------------------------------------------
// fixtures

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!(
            "tillbridge-filedrop-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn watch(&self) -> PathBuf {
        self.0.join("drop")
    }
    fn inbox(&self) -> PathBuf {
        self.0.join("inbox")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mapping() -> MappingIndex {
    let loc = |l: &str, s: &str, src: &str| LocationMapping {
        pos_location: PosLocationId::parse(l).unwrap(),
        store: StoreCode::parse(s).unwrap(),
        source: SourceCode::parse(src).unwrap(),
    };
    let item = |v: &str| ItemMapping {
        variation: PosVariationId::parse(v).unwrap(),
        sku: Sku::parse(v).unwrap(),
    };
    MappingIndex::build(&MappingTable {
        locations: vec![
            loc("L-LEEDS", "LEEDS", "leeds"),
            loc("L-YORK", "YORK", "york"),
        ],
        items: vec![item("SKU-1"), item("SKU-2"), item("SKU-3")],
        taxes: vec![],
    })
    .unwrap()
}

fn config(dir: &TempDir) -> FileDropConfig {
    let mut cfg = FileDropConfig::new(
        ConnectorId::parse("filedrop-test").unwrap(),
        dir.watch(),
        mapping(),
    );
    cfg.settle = Duration::ZERO; // the tests write whole files at once
    cfg
}

fn open(dir: &TempDir) -> (FileDropConnector, FileInbox) {
    open_with(dir, config(dir))
}

fn open_with(dir: &TempDir, cfg: FileDropConfig) -> (FileDropConnector, FileInbox) {
    let conn = FileDropConnector::open(cfg).unwrap();
    let inbox = FileInbox::open(dir.inbox()).unwrap();
    (conn, inbox)
}

fn drop_file(dir: &TempDir, name: &str, content: &[u8]) {
    fs::create_dir_all(dir.watch()).unwrap();
    fs::write(dir.watch().join(name), content).unwrap();
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn gbp(minor: i64) -> Money {
    Money::new(minor, Currency::GBP)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// (variation, location, quantity, as_of) of every level in a stock payload.
fn levels(payload: &BatchPayload) -> Vec<(String, String, Decimal, Timestamp)> {
    let ls = match payload {
        BatchPayload::StockSnapshot { levels, .. } | BatchPayload::StockChanges { levels } => {
            levels
        }
        BatchPayload::Sales { .. } => panic!("not a stock payload"),
    };
    ls.iter()
        .map(|l| {
            (
                l.variation.to_string(),
                l.location.to_string(),
                l.available,
                l.as_of,
            )
        })
        .collect()
}

/// (kind, row, column, field) of one error.
type Where<'a> = (RecordErrorKind, Option<u64>, Option<u32>, Option<&'a str>);

/// (kind, row, column, field) of every error.
fn where_(errors: &[RecordError]) -> Vec<Where<'_>> {
    errors
        .iter()
        .map(|e| (e.kind, e.row, e.column, e.field.as_deref()))
        .collect()
}

const SNAPSHOT: &str = "store,sku,quantity,as_of\n\
LEEDS,SKU-1,5,2025-06-01T06:00:00Z\n\
LEEDS,SKU-2,0,2025-06-01T06:00:00Z\n\
YORK,SKU-1,12.5,2025-06-01T06:00:00Z\n";

// ---------------------------------------------------------------------------------------------
// delivery, exactly once

#[tokio::test]
async fn snapshot_file_is_stored_committed_and_moved_to_processed() {
    let dir = TempDir::new("snapshot");
    let (conn, inbox) = open(&dir);
    drop_file(&dir, "stock_snapshot_20250601.csv", SNAPSHOT.as_bytes());

    let report = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.record_errors, 0);
    assert_eq!(report.stored, Some(StoreOutcome::Stored { seq: 1 }));
    assert_eq!(
        report.source.as_deref(),
        Some("stock_snapshot_20250601.csv")
    );
    assert!(!report.has_more);

    let stored = inbox.batches().unwrap();
    assert_eq!(stored.len(), 1);
    let batch = &stored[0].batch;
    assert_eq!(batch.feed, Feed::StockSnapshot);
    let t = ts("2025-06-01T06:00:00Z");
    assert_eq!(
        levels(&batch.payload),
        vec![
            ("SKU-1".into(), "L-LEEDS".into(), dec("5"), t),
            ("SKU-2".into(), "L-LEEDS".into(), dec("0"), t),
            ("SKU-1".into(), "L-YORK".into(), dec("12.5"), t),
        ]
    );
    match &batch.payload {
        BatchPayload::StockSnapshot {
            as_of, locations, ..
        } => {
            assert_eq!(*as_of, t);
            let locs: Vec<&str> = locations.iter().map(|l| l.as_str()).collect();
            assert_eq!(locs, vec!["L-LEEDS", "L-YORK"]);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }

    assert_eq!(files_in(&dir.watch()), Vec::<String>::new());
    assert_eq!(
        files_in(&dir.watch().join("processed")),
        vec!["stock_snapshot_20250601.csv"]
    );
    let ledger = conn.ledger().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].outcome, FileOutcome::Processed);
    assert_eq!(ledger[0].kind, Some(FileKind::StockSnapshot));
    assert_eq!(ledger[0].records, 3);
    assert_eq!(ledger[0].batch.as_ref(), Some(&batch.id));

    let cursor = inbox
        .load_cursor(conn.id(), Feed::StockSnapshot)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor, batch.next_cursor);
    assert!(cursor.as_str().contains("stock_snapshot_20250601.csv"));

    // Nothing more: an empty poll stores and commits nothing.
    let again = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(again.stored, None);
    assert_eq!(again.records, 0);
    assert_eq!(inbox.len().unwrap(), 1);
}

#[tokio::test]
async fn same_file_dropped_again_after_restart_is_set_aside_not_reprocessed() {
    let dir = TempDir::new("dup");
    {
        let (conn, inbox) = open(&dir);
        drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
        poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    }
    // Restart: new connector and inbox over the same folders.
    let (conn, inbox) = open(&dir);
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    let report = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.stored, None);
    assert_eq!(inbox.len().unwrap(), 1, "no second batch");

    let ledger = conn.ledger().unwrap();
    let outcomes: Vec<FileOutcome> = ledger.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        vec![FileOutcome::Processed, FileOutcome::Duplicate]
    );
    assert_eq!(ledger[0].sha256, ledger[1].sha256);
    let processed = files_in(&dir.watch().join("processed"));
    assert_eq!(
        processed.len(),
        2,
        "the duplicate is kept, not deleted: {processed:?}"
    );
    assert!(processed.contains(&"stock_snapshot_1.csv".to_owned()));
    let short = &ledger[0].sha256[..12];
    assert!(processed.contains(&format!("stock_snapshot_1.duplicate-{short}.csv")));
    assert!(files_in(&dir.watch()).is_empty());
}

#[tokio::test]
async fn same_name_with_new_content_is_processed_as_new_and_recorded() {
    let dir = TempDir::new("newcontent");
    {
        let (conn, inbox) = open(&dir);
        drop_file(
            &dir,
            "stock_changes_1.csv",
            b"store,sku,quantity,as_of\nLEEDS,SKU-1,5,2025-06-01T10:00:00Z\n",
        );
        poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    }
    let (conn, inbox) = open(&dir);
    drop_file(
        &dir,
        "stock_changes_1.csv",
        b"store,sku,quantity,as_of\nLEEDS,SKU-1,4,2025-06-01T10:15:00Z\n",
    );
    let report = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(report.stored, Some(StoreOutcome::Stored { seq: 2 }));

    let stored = inbox.batches().unwrap();
    assert_eq!(
        levels(&stored[1].batch.payload),
        vec![(
            "SKU-1".into(),
            "L-LEEDS".into(),
            dec("4"),
            ts("2025-06-01T10:15:00Z")
        )]
    );
    let ledger = conn.ledger().unwrap();
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|e| e.outcome == FileOutcome::Processed));
    assert_ne!(ledger[0].sha256, ledger[1].sha256);
    let short = &ledger[1].sha256[..12];
    assert_eq!(
        files_in(&dir.watch().join("processed")),
        vec![
            "stock_changes_1.csv".to_owned(),
            format!("stock_changes_1.{short}.csv")
        ]
    );
}

#[tokio::test]
async fn crash_between_store_and_commit_redelivers_the_batch_which_is_deduplicated() {
    let dir = TempDir::new("crash1");
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    let first_id;
    {
        let (conn, inbox) = open(&dir);
        let cursor = inbox
            .load_cursor(conn.id(), Feed::StockSnapshot)
            .await
            .unwrap()
            .unwrap_or_default();
        let batch = conn.fetch(Feed::StockSnapshot, &cursor).await.unwrap();
        assert_eq!(
            inbox.store_batch(&batch).await.unwrap(),
            StoreOutcome::Stored { seq: 1 }
        );
        first_id = batch.id.clone();
        // crash: no commit, no after_commit
    }
    assert_eq!(
        files_in(&dir.watch()),
        vec!["stock_snapshot_1.csv"],
        "the file waits"
    );

    let (conn, inbox) = open(&dir);
    assert_eq!(
        inbox
            .load_cursor(conn.id(), Feed::StockSnapshot)
            .await
            .unwrap(),
        None,
        "cursor was never committed"
    );
    let report = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(report.batch, first_id, "the same batch again");
    assert_eq!(report.stored, Some(StoreOutcome::AlreadyStored { seq: 1 }));
    assert_eq!(inbox.len().unwrap(), 1);
    assert_eq!(levels(&inbox.batches().unwrap()[0].batch.payload).len(), 3);
    assert!(
        inbox
            .load_cursor(conn.id(), Feed::StockSnapshot)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        files_in(&dir.watch().join("processed")),
        vec!["stock_snapshot_1.csv"]
    );
    assert_eq!(conn.ledger().unwrap().len(), 1);
}

#[tokio::test]
async fn crash_between_commit_and_tidy_up_finishes_the_move_on_the_next_poll() {
    let dir = TempDir::new("crash2");
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    {
        let (conn, inbox) = open(&dir);
        let batch = conn
            .fetch(Feed::StockSnapshot, &PosCursor::start())
            .await
            .unwrap();
        inbox.store_batch(&batch).await.unwrap();
        inbox
            .commit_cursor(
                conn.id(),
                Feed::StockSnapshot,
                &batch.next_cursor,
                &batch.id,
            )
            .await
            .unwrap();
        // crash before after_commit: the file is still in the folder
    }
    assert_eq!(files_in(&dir.watch()), vec!["stock_snapshot_1.csv"]);
    let (conn, inbox) = open(&dir);
    let report = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(report.records, 0, "not delivered a second time");
    assert_eq!(inbox.len().unwrap(), 1);
    assert!(files_in(&dir.watch()).is_empty());
    assert_eq!(
        files_in(&dir.watch().join("processed")),
        vec!["stock_snapshot_1.csv"]
    );
    let ledger = conn.ledger().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].outcome, FileOutcome::Processed);
}

#[tokio::test]
async fn inbox_refuses_a_cursor_whose_batch_is_not_stored() {
    let dir = TempDir::new("refuse");
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    let (conn, inbox) = open(&dir);
    let batch = conn
        .fetch(Feed::StockSnapshot, &PosCursor::start())
        .await
        .unwrap();
    let err = inbox
        .commit_cursor(
            conn.id(),
            Feed::StockSnapshot,
            &batch.next_cursor,
            &batch.id,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, InboxError::BatchNotStored { .. }), "{err}");
    assert_eq!(
        inbox
            .load_cursor(conn.id(), Feed::StockSnapshot)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn inbox_cuts_a_torn_last_line_and_keeps_everything_before_it() {
    let dir = TempDir::new("torn");
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    {
        let (conn, inbox) = open(&dir);
        poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    }
    // A crash in the middle of the next append.
    let log = dir.inbox().join("batches.jsonl");
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"seq\":2,\"batch\":{\"id\":\"ab");
    fs::write(&log, &bytes).unwrap();

    let (conn, inbox) = open(&dir);
    assert_eq!(inbox.len().unwrap(), 1);
    drop_file(
        &dir,
        "stock_changes_2.csv",
        b"store,sku,quantity\nYORK,SKU-2,3\n",
    );
    let report = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(report.stored, Some(StoreOutcome::Stored { seq: 2 }));
    let batches = inbox.batches().unwrap();
    assert_eq!(
        batches.iter().map(|b| b.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn files_are_read_in_name_order_one_batch_each_and_feeds_do_not_mix() {
    let dir = TempDir::new("order");
    let (conn, inbox) = open(&dir);
    drop_file(
        &dir,
        "stock_changes_0002.csv",
        b"store,sku,quantity\nLEEDS,SKU-1,2\n",
    );
    drop_file(
        &dir,
        "stock_changes_0001.csv",
        b"store,sku,quantity\nLEEDS,SKU-1,1\n",
    );
    drop_file(&dir, "sales_0001.csv", b"transaction_id,store,sku,quantity,unit_price,line_total,occurred_at\nT1,LEEDS,SKU-1,1,2.00,2.00,2025-06-01T10:00:00Z\n");

    let a = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(a.source.as_deref(), Some("stock_changes_0001.csv"));
    assert!(a.has_more);
    let b = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(b.source.as_deref(), Some("stock_changes_0002.csv"));
    assert!(!b.has_more);
    let c = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(c.stored, None);
    assert_eq!(
        files_in(&dir.watch()),
        vec!["sales_0001.csv"],
        "sales wait for the sales feed"
    );
    let s = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(s.records, 1);
    assert!(files_in(&dir.watch()).is_empty());
    assert_eq!(inbox.len().unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// formats

#[tokio::test]
async fn bom_semicolons_and_decimal_commas_are_read_when_configured() {
    let dir = TempDir::new("bom");
    let mut cfg = config(&dir);
    cfg.delimiter = b';';
    cfg.decimal_comma = true;
    let (conn, inbox) = open_with(&dir, cfg);
    let mut content = vec![0xEF, 0xBB, 0xBF];
    content.extend_from_slice(
        "store;sku;quantity;as_of\r\nLEEDS;SKU-1;2,5;2025-06-01 07:00:00\r\nYORK;SKU-3;\"1,25\";20250601\r\n"
            .as_bytes(),
    );
    drop_file(&dir, "stock_changes_bom.csv", &content);
    let report = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(report.record_errors, 0);
    assert_eq!(
        levels(&inbox.batches().unwrap()[0].batch.payload),
        vec![
            (
                "SKU-1".into(),
                "L-LEEDS".into(),
                dec("2.5"),
                ts("2025-06-01T07:00:00Z")
            ),
            (
                "SKU-3".into(),
                "L-YORK".into(),
                dec("1.25"),
                ts("2025-06-01T00:00:00Z")
            ),
        ]
    );
}

#[tokio::test]
async fn tab_separated_file_with_the_tills_own_column_names() {
    let dir = TempDir::new("tab");
    let mut cfg = config(&dir);
    cfg.delimiter = b'\t';
    cfg.columns = Columns {
        store: "Branch".into(),
        sku: "Item Code".into(),
        quantity: "Qty On Hand".into(),
        as_of: "Counted".into(),
        ..Columns::default()
    };
    cfg.local_time_offset_minutes = 60; // BST
    let (conn, inbox) = open_with(&dir, cfg);
    drop_file(
        &dir,
        "stock_snapshot_tab.txt",
        b"Item Code\tBranch\tQty On Hand\tCounted\nSKU-2\tYORK\t7\t2025-06-01 07:00:00\n",
    );
    poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(
        levels(&inbox.batches().unwrap()[0].batch.payload),
        vec![(
            "SKU-2".into(),
            "L-YORK".into(),
            dec("7"),
            ts("2025-06-01T06:00:00Z")
        )]
    );
}

#[tokio::test]
async fn a_header_tells_the_kind_when_the_name_does_not() {
    let dir = TempDir::new("header");
    let (conn, inbox) = open(&dir);
    drop_file(&dir, "export_20250601.csv", b"transaction_id,store,sku,quantity,unit_price,line_total,occurred_at\nT9,YORK,SKU-2,1,3.00,3.00,2025-06-01T12:00:00Z\n");
    let report = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(conn.ledger().unwrap()[0].kind, Some(FileKind::Sales));
}

#[tokio::test]
async fn a_file_still_being_written_is_left_alone_until_it_settles() {
    let dir = TempDir::new("settle");
    let mut cfg = config(&dir);
    cfg.settle = Duration::from_secs(3600);
    let (conn, inbox) = open_with(&dir, cfg);
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    let r = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(r.stored, None);
    assert_eq!(files_in(&dir.watch()), vec!["stock_snapshot_1.csv"]);
    assert!(conn.ledger().unwrap().is_empty());

    // The same folder with a short settle time reads it.
    drop((conn, inbox));
    let (conn, inbox) = open(&dir);
    let r = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(r.records, 3);
}

#[tokio::test]
async fn with_markers_required_a_file_waits_for_its_ok_marker() {
    let dir = TempDir::new("marker");
    let mut cfg = config(&dir);
    cfg.require_ok_marker = true;
    let (conn, inbox) = open_with(&dir, cfg);
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    let r = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(r.stored, None, "upload not complete yet");
    drop_file(&dir, "stock_snapshot_1.csv.ok", b"");
    let r = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(r.records, 3);
    assert_eq!(
        files_in(&dir.watch().join("processed")),
        vec!["stock_snapshot_1.csv", "stock_snapshot_1.csv.ok"]
    );
}

// ---------------------------------------------------------------------------------------------
// record-level errors

#[tokio::test]
async fn every_kind_of_bad_stock_row_is_named_while_good_rows_apply() {
    let dir = TempDir::new("badrows");
    let (conn, inbox) = open(&dir);
    let content = "store,sku,quantity,as_of\n\
LEEDS,SKU-1,5,2025-06-01T06:00:00Z\n\
HULL,SKU-1,5,2025-06-01T06:00:00Z\n\
LEEDS,SKU-99,5,2025-06-01T06:00:00Z\n\
LEEDS,SKU-2,12a,2025-06-01T06:00:00Z\n\
YORK,SKU-2,-1,2025-06-01T06:00:00Z\n\
YORK,SKU-3,,2025-06-01T06:00:00Z\n\
YORK,SKU-1\n\
YORK,SKU-2,3,yesterday\n\
LEEDS,SKU-1,6,2025-06-01T06:00:00Z\n\
YORK,SKU-3,1,2025-06-01T06:00:00Z\n";
    drop_file(&dir, "stock_snapshot_bad.csv", content.as_bytes());
    let report = poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    assert_eq!(report.records, 2);

    let batch = &inbox.batches().unwrap()[0].batch;
    let t = ts("2025-06-01T06:00:00Z");
    assert_eq!(
        levels(&batch.payload),
        vec![
            ("SKU-1".into(), "L-LEEDS".into(), dec("5"), t),
            ("SKU-3".into(), "L-YORK".into(), dec("1"), t),
        ]
    );
    use RecordErrorKind::*;
    assert_eq!(
        where_(&batch.record_errors),
        vec![
            (UnknownStore, Some(3), Some(1), Some("store")),
            (UnknownSku, Some(4), Some(2), Some("sku")),
            (BadNumber, Some(5), Some(3), Some("quantity")),
            (NegativeStock, Some(6), Some(3), Some("quantity")),
            (MissingField, Some(7), Some(3), Some("quantity")),
            (MissingField, Some(8), Some(3), Some("quantity")),
            (BadTimestamp, Some(9), Some(4), Some("as_of")),
            (Inconsistent, Some(10), Some(3), Some("quantity")),
        ]
    );
    for e in &batch.record_errors {
        assert_eq!(e.source.as_deref(), Some("stock_snapshot_bad.csv"));
        assert!(!e.message.is_empty());
    }
    assert_eq!(batch.record_errors[0].value.as_deref(), Some("HULL"));
    assert_eq!(
        batch.record_errors[0].message,
        "store 'HULL' is not in the location mapping; add it or correct the code"
    );
    assert_eq!(batch.record_errors[2].value.as_deref(), Some("12a"));

    // Processed (good rows applied), errors kept beside the file.
    let processed = dir.watch().join("processed");
    assert_eq!(
        files_in(&processed),
        vec![
            "stock_snapshot_bad.csv",
            "stock_snapshot_bad.csv.errors.json"
        ]
    );
    let errors: serde_json::Value = serde_json::from_slice(
        &fs::read(processed.join("stock_snapshot_bad.csv.errors.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(errors["outcome"], "processed");
    assert_eq!(errors["records"], 2);
    assert_eq!(errors["errors"].as_array().unwrap().len(), 8);
    assert_eq!(errors["errors"][3]["kind"], "negative_stock");
    assert_eq!(errors["errors"][3]["row"], 6);
    assert_eq!(errors["errors"][3]["column"], 3);
    assert_eq!(conn.ledger().unwrap()[0].errors, 8);
}

#[tokio::test]
async fn file_without_a_required_column_is_rejected_with_its_errors_beside_it() {
    let dir = TempDir::new("reject");
    let (conn, inbox) = open(&dir);
    drop_file(
        &dir,
        "stock_changes_1.csv",
        b"store,item,qty\nLEEDS,SKU-1,5\n",
    );
    let report = poll_once(&conn, &inbox, Feed::StockChanges).await.unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.record_errors, 2, "sku and quantity are both missing");
    let batch = &inbox.batches().unwrap()[0].batch;
    assert_eq!(
        where_(&batch.record_errors),
        vec![
            (RecordErrorKind::MissingField, Some(1), None, Some("sku")),
            (
                RecordErrorKind::MissingField,
                Some(1),
                None,
                Some("quantity")
            ),
        ]
    );
    assert!(
        batch.record_errors[0]
            .message
            .contains("it has: store, item, qty")
    );
    let rejected = dir.watch().join("rejected");
    assert_eq!(
        files_in(&rejected),
        vec!["stock_changes_1.csv", "stock_changes_1.csv.errors.json"]
    );
    assert_eq!(conn.ledger().unwrap()[0].outcome, FileOutcome::Rejected);
    let body: serde_json::Value = serde_json::from_slice(
        &fs::read(rejected.join("stock_changes_1.csv.errors.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(body["outcome"], "rejected");
    assert_eq!(body["errors"][1]["field"], "quantity");
    // The original bytes are kept.
    assert_eq!(
        fs::read(rejected.join("stock_changes_1.csv")).unwrap(),
        b"store,item,qty\nLEEDS,SKU-1,5\n"
    );
}

#[tokio::test]
async fn non_utf8_and_empty_and_unknown_files_are_rejected_never_deleted() {
    let dir = TempDir::new("unusable");
    let (conn, inbox) = open(&dir);
    // Latin-1 "£" on the third line.
    drop_file(&dir, "sales_latin1.csv", b"transaction_id,store,sku,quantity,unit_price,line_total,occurred_at\nT1,LEEDS,SKU-1,1,2.00,2.00,2025-06-01T10:00:00Z\nT2,LEEDS,SKU-1,1,\xA32.00,2.00,2025-06-01T10:00:00Z\n");
    drop_file(&dir, "sales_empty.csv", b"");
    drop_file(&dir, "prices_20250601.csv", b"sku,price\nSKU-1,2.00\n");

    let a = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    let b = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    let c = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(c.stored, None);
    let batches = inbox.batches().unwrap();
    assert_eq!(batches.len(), 2);
    let by_source = |name: &str| {
        batches
            .iter()
            .find(|b| b.batch.source.as_deref() == Some(name))
            .map(|b| b.batch.record_errors.clone())
            .unwrap()
    };
    let empty = by_source("sales_empty.csv");
    assert_eq!(empty[0].kind, RecordErrorKind::Unreadable);
    assert!(empty[0].message.contains("empty"));
    let latin = by_source("sales_latin1.csv");
    assert_eq!(latin[0].kind, RecordErrorKind::Unreadable);
    assert_eq!(latin[0].row, Some(3));
    assert!(latin[0].message.contains("not UTF-8"));
    assert_eq!(a.records + b.records, 0);

    let rejected = files_in(&dir.watch().join("rejected"));
    assert_eq!(
        rejected,
        vec![
            "prices_20250601.csv",
            "prices_20250601.csv.errors.json",
            "sales_empty.csv",
            "sales_empty.csv.errors.json",
            "sales_latin1.csv",
            "sales_latin1.csv.errors.json",
        ]
    );
    let unknown: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.watch().join("rejected/prices_20250601.csv.errors.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(unknown["errors"][0]["kind"], "unknown_file_kind");
    let outcomes: Vec<FileOutcome> = conn.ledger().unwrap().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![FileOutcome::Rejected; 3]);

    // The same unusable file again: a duplicate, kept beside the first in rejected/.
    drop_file(&dir, "prices_20250601.csv", b"sku,price\nSKU-1,2.00\n");
    poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    let last = conn.ledger().unwrap().pop().unwrap();
    assert_eq!(last.outcome, FileOutcome::Duplicate);
    let short = &last.sha256[..12];
    assert!(
        files_in(&dir.watch().join("rejected"))
            .contains(&format!("prices_20250601.duplicate-{short}.csv"))
    );
    assert!(files_in(&dir.watch()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// sales

const SALES_HEADER: &str = "transaction_id,type,store,sku,quantity,unit_price,discount,line_total,tax_code,tax_rate,tax_amount,tax_inclusive,tender,occurred_at,original_transaction_id\n";

#[tokio::test]
async fn sales_rows_become_transactions_with_minor_units_tax_lines_and_tenders() {
    let dir = TempDir::new("sales");
    let (conn, inbox) = open(&dir);
    let content = format!(
        "{SALES_HEADER}\
R100,sale,LEEDS,SKU-1,2,6.00,0,12.00,S,20,2.00,true,card,2025-06-01T10:00:00Z,\n\
R100,sale,LEEDS,SKU-2,1,4.99,0.50,4.49,S,20,0.75,true,card,2025-06-01T10:00:00Z,\n\
R101,,YORK,SKU-3,-1,10.00,,-10.00,S,20,-1.67,true,cash,2025-05-30T16:20:00Z,R050\n"
    );
    drop_file(&dir, "sales_20250601.csv", content.as_bytes());
    let report = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(report.record_errors, 0);

    let batch = &inbox.batches().unwrap()[0].batch;
    let BatchPayload::Sales { transactions } = &batch.payload else {
        panic!("not sales");
    };
    let sale = &transactions[0];
    assert_eq!(sale.id.as_str(), "R100");
    assert_eq!(sale.kind, TransactionKind::Sale);
    assert_eq!(sale.location.as_str(), "L-LEEDS");
    assert_eq!(sale.occurred_at, ts("2025-06-01T10:00:00Z"));
    assert_eq!(sale.currency, Currency::GBP);
    assert_eq!(sale.lines.len(), 2);
    assert_eq!(
        sale.lines[0].id.as_str(),
        "2",
        "line id defaults to the row"
    );
    assert_eq!(sale.lines[0].quantity, dec("2"));
    assert_eq!(sale.lines[0].unit_price, gbp(600));
    assert_eq!(sale.lines[0].total, gbp(1200));
    assert_eq!(sale.lines[1].discount, gbp(50));
    assert_eq!(sale.lines[1].taxes[0].rate, dec("20"));
    assert!(sale.lines[1].taxes[0].inclusive);
    assert_eq!(sale.lines[1].taxes[0].amount, gbp(75));
    assert_eq!(
        sale.lines[1].taxes[0].tax.as_ref().map(|t| t.as_str()),
        Some("S")
    );
    assert_eq!(sale.total(), Some(gbp(1649)));
    assert_eq!(sale.tenders.len(), 1);
    assert_eq!(sale.tenders[0].kind, TenderKind::Card);
    assert_eq!(sale.tenders[0].amount, gbp(1649));

    let ret = &transactions[1];
    assert_eq!(
        ret.kind,
        TransactionKind::Return,
        "negative quantity = return"
    );
    assert_eq!(ret.lines[0].quantity, dec("1"));
    assert_eq!(ret.lines[0].total, gbp(1000));
    assert_eq!(ret.lines[0].taxes[0].amount, gbp(167));
    assert_eq!(ret.original.as_ref().map(|o| o.as_str()), Some("R050"));
    assert_eq!(
        ret.occurred_at,
        ts("2025-05-30T16:20:00Z"),
        "a late offline sale keeps its till time"
    );
    assert!(ret.updated_at >= ret.occurred_at);
    assert_eq!(ret.tenders[0].kind, TenderKind::Cash);
}

#[tokio::test]
async fn a_bad_sales_row_holds_back_its_transaction_and_nothing_else() {
    let dir = TempDir::new("salesbad");
    let (conn, inbox) = open(&dir);
    let content = format!(
        "{SALES_HEADER}\
R200,sale,LEEDS,SKU-1,1,6.00,0,6.00,S,20,1.00,true,card,2025-06-01T10:00:00Z,\n\
R200,sale,LEEDS,SKU-2,1,4.999,0,4.99,S,20,0.83,true,card,2025-06-01T10:00:00Z,\n\
R201,sale,YORK,SKU-3,1,10.00,0,10.00,S,20,1.67,maybe,cash,2025-06-01T11:00:00Z,\n\
R202,sale,YORK,SKU-3,1,10.00,0,10.00,S,20,1.67,true,cash,2025-06-01T11:05:00Z,\n\
R203,sale,YORK,SKU-1,1,1.00,0,1.00,,,,,cash,2025-06-01T11:06:00Z,\n\
R203,sale,LEEDS,SKU-2,1,1.00,0,1.00,,,,,cash,2025-06-01T11:06:00Z,\n\
R204,exchange,YORK,SKU-1,1,1.00,0,1.00,,,,,GBP,2025-06-01T11:07:00Z,\n"
    );
    drop_file(&dir, "sales_bad.csv", content.as_bytes());
    let report = poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(report.records, 1);
    let batch = &inbox.batches().unwrap()[0].batch;
    let BatchPayload::Sales { transactions } = &batch.payload else {
        panic!("not sales");
    };
    assert_eq!(transactions.len(), 1);
    assert_eq!(transactions[0].id.as_str(), "R202");

    use RecordErrorKind::*;
    type Summary<'a> = (
        RecordErrorKind,
        Option<u64>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let summary: Vec<Summary<'_>> = batch
        .record_errors
        .iter()
        .map(|e| (e.kind, e.row, e.field.as_deref(), e.record.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (HeldBack, Some(2), None, Some("R200")),
            (BadNumber, Some(3), Some("unit_price"), Some("R200")),
            (BadValue, Some(4), Some("tax_inclusive"), Some("R201")),
            (HeldBack, Some(4), None, Some("R201")),
            (HeldBack, Some(6), None, Some("R203")),
            (Inconsistent, Some(7), Some("store"), Some("R203")),
            (BadValue, Some(8), Some("type"), Some("R204")),
            (HeldBack, Some(8), None, Some("R204")),
        ]
    );
    let bad_price = &batch.record_errors[1];
    assert_eq!(bad_price.column, Some(6));
    assert_eq!(bad_price.value.as_deref(), Some("4.999"));
    assert_eq!(
        bad_price.message,
        "'4.999' has more than 2 decimals for GBP"
    );
    assert!(batch.record_errors[0].message.contains("row(s) 3"));
    assert_eq!(conn.ledger().unwrap()[0].outcome, FileOutcome::Processed);
}

#[tokio::test]
async fn sales_file_where_every_transaction_is_bad_is_rejected() {
    let dir = TempDir::new("salesallbad");
    let (conn, inbox) = open(&dir);
    let content = format!(
        "{SALES_HEADER}R300,sale,HULL,SKU-1,1,6.00,0,6.00,S,20,1.00,true,card,2025-06-01T10:00:00Z,\n"
    );
    drop_file(&dir, "sales_allbad.csv", content.as_bytes());
    poll_once(&conn, &inbox, Feed::Sales).await.unwrap();
    assert_eq!(conn.ledger().unwrap()[0].outcome, FileOutcome::Rejected);
    assert_eq!(
        files_in(&dir.watch().join("rejected")),
        vec!["sales_allbad.csv", "sales_allbad.csv.errors.json"]
    );
    let errors = &inbox.batches().unwrap()[0].batch.record_errors;
    assert_eq!(errors[0].kind, RecordErrorKind::UnknownStore);
}

// ---------------------------------------------------------------------------------------------
// declared capabilities

#[tokio::test]
async fn file_drop_declares_no_fulfilment_and_no_webhooks() {
    let dir = TempDir::new("caps");
    let (conn, _inbox) = open(&dir);
    let caps = conn.capabilities();
    assert!(caps.stock_snapshot && caps.stock_changes && caps.sales);
    assert!(!caps.fulfilment_requests && !caps.fulfilment_status && !caps.webhooks);
    let headers = Vec::new();
    let req = tillbridge_edge::pos::WebhookRequest {
        url: "https://example.test/hook",
        headers: &headers,
        body: b"{}",
    };
    assert!(matches!(
        conn.verify_webhook(&req),
        Err(PosError::Unsupported {
            operation: "verify_webhook"
        })
    ));
    let locations = conn.locations().await.unwrap();
    let ids: Vec<&str> = locations.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, vec!["L-LEEDS", "L-YORK"]);
    // Connectors are usable as trait objects.
    let boxed: Box<dyn PosConnector> = Box::new(conn);
    assert_eq!(boxed.id().as_str(), "filedrop-test");
    let _unused: Option<PosBatch> = None;
}

#[tokio::test]
async fn stored_batches_keep_their_content_derived_id() {
    let dir = TempDir::new("ids");
    let (conn, inbox) = open(&dir);
    drop_file(&dir, "stock_snapshot_1.csv", SNAPSHOT.as_bytes());
    poll_once(&conn, &inbox, Feed::StockSnapshot).await.unwrap();
    let stored = inbox.batches().unwrap();
    assert!(stored[0].batch.id_matches_content());
    // An altered batch is refused.
    let mut altered = stored[0].batch.clone();
    altered
        .record_errors
        .push(RecordError::new(RecordErrorKind::BadNumber, "x"));
    assert!(matches!(
        inbox.store_batch(&altered).await,
        Err(InboxError::IdMismatch { .. })
    ));
    assert!(dir.path().join("inbox").join("cursors").exists());
}
