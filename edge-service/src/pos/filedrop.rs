//! The file-drop connector: tills that export CSV files into a folder (usually over SFTP).
//!
//! # Files
//!
//! Three kinds, told apart by configurable file-name patterns (`stock_snapshot*`,
//! `stock_changes*`, `sales*` by default) or, when no pattern matches, by the columns of the
//! header row ([`FileKindRule`]):
//!
//! - **stock snapshot**: every item's level at the stores in the file (`store, sku, quantity`
//!   and optionally `as_of`);
//! - **stock changes**: only the items that changed, still absolute levels (same columns);
//! - **sales**: one row per transaction line (`transaction_id, store, sku, quantity,
//!   unit_price, line_total, occurred_at`, optionally `type`, `discount`, `tax_code`,
//!   `tax_rate`, `tax_amount`, `tax_inclusive`, `currency`, `tender`,
//!   `original_transaction_id`, `line`). Money is in major units with a decimal point;
//!   returns are rows with `type` = `return` or a negative quantity.
//!
//! Column names ([`Columns`]) and the delimiter are configurable; files are UTF-8 with or
//! without a byte-order mark; a decimal comma can be switched on. A file is read only once it
//! has not changed for [`FileDropConfig::settle`] (and, if configured, once `<name>.ok`
//! exists), so an upload in progress is never read half-written. One connector instance owns
//! a folder (two processes on one folder would interleave their ledgers).
//!
//! # Exactly once, nothing lost
//!
//! Each file is one batch. A file is identified by **name and SHA-256 of its content**; the
//! ledger (`ledger.jsonl`, append-only, fsync'd) records every file's outcome, so the same
//! file dropped again is recognised as a duplicate and set aside, while the same name with
//! different content is new data and is processed. The file stays in the watched folder until
//! the batch is stored and the cursor committed ([`PosConnector::after_commit`]); only then is
//! it recorded in the ledger and moved to `processed/` (or `rejected/` when nothing in it was
//! usable), with `<file>.errors.json` beside it when it had errors. A crash anywhere in
//! between re-delivers the same batch (same [`BatchId`](super::BatchId)), which the inbox
//! de-duplicates. Files are never deleted.
//!
//! # Record errors
//!
//! A bad row (unknown store or SKU, a number that does not parse, negative stock, a missing
//! field, a bad date) becomes a [`RecordError`] naming file, row (header = row 1), column and
//! field; the good rows apply. A sales transaction spread over several rows is applied whole
//! or held back whole ([`RecordErrorKind::HeldBack`]): booking half a receipt would be worse
//! than booking none. A variation named in a snapshot's record errors has an **unknown**
//! level, not a zero one.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tillbridge_core::mapping::MappingIndex;
use tillbridge_core::pos::{
    Currency, Money, MoneyError, PosLineId, PosLocation, PosLocationId, PosTaxId, PosTransaction,
    PosTransactionId, PosVariationId, Sku, StockLevel, StoreCode, TaxLine, Tender, TenderKind,
    Timestamp, TransactionKind, TransactionLine, TransactionState,
};

use super::{
    BatchId, BatchPayload, BoxFuture, Capabilities, ConnectorId, Feed, PosBatch, PosConnector,
    PosCursor, PosError, RecordError, RecordErrorKind, hex,
};

// ---------------------------------------------------------------------------------------------
// configuration

/// The three kinds of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    StockSnapshot,
    StockChanges,
    Sales,
}

impl FileKind {
    pub fn feed(self) -> Feed {
        match self {
            FileKind::StockSnapshot => Feed::StockSnapshot,
            FileKind::StockChanges => Feed::StockChanges,
            FileKind::Sales => Feed::Sales,
        }
    }

    pub fn for_feed(feed: Feed) -> Self {
        match feed {
            Feed::StockSnapshot => FileKind::StockSnapshot,
            Feed::StockChanges => FileKind::StockChanges,
            Feed::Sales => FileKind::Sales,
        }
    }
}

/// How to recognise one kind of file: by name (glob patterns with `*` and `?`, compared
/// case-insensitively) or, when no rule's pattern matches the name, by the header containing
/// all of `header_columns`. Rules are tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKindRule {
    pub kind: FileKind,
    #[serde(default)]
    pub name_patterns: Vec<String>,
    #[serde(default)]
    pub header_columns: Vec<String>,
}

impl FileKindRule {
    /// The default rules: `stock_snapshot*` / `snapshot*`, `stock_changes*` / `stock_delta*` /
    /// `stock_incremental*`, `sales*` / `returns*` (or a header with `transaction_id`).
    pub fn defaults() -> Vec<FileKindRule> {
        let rule = |kind, names: &[&str], header: &[&str]| FileKindRule {
            kind,
            name_patterns: names.iter().map(|s| (*s).to_owned()).collect(),
            header_columns: header.iter().map(|s| (*s).to_owned()).collect(),
        };
        vec![
            rule(
                FileKind::StockSnapshot,
                &["stock_snapshot*", "snapshot*"],
                &[],
            ),
            rule(
                FileKind::StockChanges,
                &["stock_changes*", "stock_delta*", "stock_incremental*"],
                &[],
            ),
            rule(
                FileKind::Sales,
                &["sales*", "returns*"],
                &["transaction_id"],
            ),
        ]
    }
}

/// Header names of the columns, compared case-insensitively after trimming. Which columns
/// are required is fixed by the file kind (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Columns {
    pub store: String,
    pub sku: String,
    pub quantity: String,
    pub as_of: String,
    pub transaction_id: String,
    pub transaction_type: String,
    pub occurred_at: String,
    pub line_id: String,
    pub unit_price: String,
    pub line_total: String,
    pub discount: String,
    pub tax_code: String,
    pub tax_rate: String,
    pub tax_amount: String,
    pub tax_inclusive: String,
    pub currency: String,
    pub tender: String,
    pub original_transaction: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            store: "store".into(),
            sku: "sku".into(),
            quantity: "quantity".into(),
            as_of: "as_of".into(),
            transaction_id: "transaction_id".into(),
            transaction_type: "type".into(),
            occurred_at: "occurred_at".into(),
            line_id: "line".into(),
            unit_price: "unit_price".into(),
            line_total: "line_total".into(),
            discount: "discount".into(),
            tax_code: "tax_code".into(),
            tax_rate: "tax_rate".into(),
            tax_amount: "tax_amount".into(),
            tax_inclusive: "tax_inclusive".into(),
            currency: "currency".into(),
            tender: "tender".into(),
            original_transaction: "original_transaction_id".into(),
        }
    }
}

/// Everything the file-drop connector needs.
#[derive(Debug, Clone)]
pub struct FileDropConfig {
    pub id: ConnectorId,
    /// The folder the till writes into. Only its top-level files are read; names starting
    /// with `.` and ending in `.tmp`, `.part`, `.partial`, `.filepart`, `.ok` or `~` are
    /// ignored (uploads in progress, markers).
    pub watch_dir: PathBuf,
    /// Where processed files go (default `<watch_dir>/processed`).
    pub processed_dir: PathBuf,
    /// Where unusable files go (default `<watch_dir>/rejected`).
    pub rejected_dir: PathBuf,
    /// The ledger of files seen (default `<watch_dir>/.tillbridge/ledger.jsonl`).
    pub ledger_path: PathBuf,
    pub delimiter: u8,
    /// Numbers use `,` as the decimal separator (`12,50`).
    pub decimal_comma: bool,
    pub kinds: Vec<FileKindRule>,
    pub columns: Columns,
    /// The currency of sales rows without a `currency` column.
    pub currency: Currency,
    /// Whether prices include the tax when a row has no `tax_inclusive` column (UK: yes).
    pub prices_include_tax: bool,
    /// Offset from UTC, in minutes, of times written without one (`2025-06-01 10:00:00`).
    pub local_time_offset_minutes: i32,
    /// Only read `<name>` once `<name>.ok` exists (for producers that write a marker).
    pub require_ok_marker: bool,
    /// Leave a file alone until it has not been modified for this long, so a file still
    /// being uploaded is not read (and moved) half-written. Producers that write a marker
    /// or rename into place can use zero.
    pub settle: Duration,
    /// Larger files are rejected unread.
    pub max_file_bytes: u64,
    /// Store codes and item codes the files may use.
    pub mapping: MappingIndex,
    /// The files' item codes are the Commerce SKUs themselves: any well-formed code is
    /// accepted and the mapping's item list is not consulted (store codes still are).
    pub items_are_skus: bool,
}

impl FileDropConfig {
    /// Defaults: comma-separated, decimal point, GBP, prices include tax, times in UTC,
    /// no marker files, a file must have been still for 5 s, 64 MiB per file.
    pub fn new(id: ConnectorId, watch_dir: impl Into<PathBuf>, mapping: MappingIndex) -> Self {
        let watch_dir = watch_dir.into();
        Self {
            id,
            processed_dir: watch_dir.join("processed"),
            rejected_dir: watch_dir.join("rejected"),
            ledger_path: watch_dir.join(".tillbridge").join("ledger.jsonl"),
            watch_dir,
            delimiter: b',',
            decimal_comma: false,
            kinds: FileKindRule::defaults(),
            columns: Columns::default(),
            currency: Currency::GBP,
            prices_include_tax: true,
            local_time_offset_minutes: 0,
            require_ok_marker: false,
            settle: Duration::from_secs(5),
            max_file_bytes: 64 * 1024 * 1024,
            mapping,
            items_are_skus: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ledger and cursor

/// What became of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    /// Read; its good records were delivered (some rows may have had errors).
    Processed,
    /// Nothing in it was usable (unreadable, wrong header, unknown kind, every row bad).
    Rejected,
    /// The same name and content as a file already processed: set aside, not read again.
    Duplicate,
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub name: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
    pub outcome: FileOutcome,
    /// Where the file was moved (absent if it had already gone from the folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchId>,
    pub records: usize,
    pub errors: usize,
}

/// The file drop's cursor: the last file delivered on a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FileCursor {
    #[serde(default)]
    last: Option<FileRef>,
    #[serde(default)]
    files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileRef {
    name: String,
    sha256: String,
}

/// The errors file written beside a processed or rejected file.
#[derive(Debug, Serialize)]
struct ErrorsFile<'a> {
    file: &'a str,
    sha256: &'a str,
    kind: Option<FileKind>,
    outcome: FileOutcome,
    records: usize,
    errors: &'a [RecordError],
}

// ---------------------------------------------------------------------------------------------
// the connector

/// A parsed file waiting for its batch to be committed.
#[derive(Debug, Clone)]
struct Parsed {
    kind: FileKind,
    payload: BatchPayload,
    errors: Vec<RecordError>,
    rejected: bool,
}

#[derive(Debug)]
struct State {
    ledger: File,
    entries: Vec<LedgerEntry>,
    /// First non-duplicate outcome per (name, sha256).
    done: HashMap<FileRef, LedgerEntry>,
    pending: HashMap<FileRef, Parsed>,
}

/// The file-drop connector. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct FileDropConnector {
    config: Arc<FileDropConfig>,
    state: Arc<Mutex<State>>,
}

impl FileDropConnector {
    /// Open the connector: create the folders if needed and read the ledger (cutting off a
    /// torn last line left by a crash).
    pub fn open(config: FileDropConfig) -> Result<Self, PosError> {
        for dir in [
            &config.watch_dir,
            &config.processed_dir,
            &config.rejected_dir,
        ] {
            fs::create_dir_all(dir).map_err(|e| PosError::io(&dir.display().to_string(), &e))?;
        }
        if let Some(parent) = config.ledger_path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| PosError::io(&parent.display().to_string(), &e))?;
        }
        let (entries, good_len) = read_ledger(&config.ledger_path)?;
        let ledger = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.ledger_path)
            .map_err(|e| PosError::io(&config.ledger_path.display().to_string(), &e))?;
        let len = ledger
            .metadata()
            .map_err(|e| PosError::io(&config.ledger_path.display().to_string(), &e))?
            .len();
        if len > good_len {
            ledger
                .set_len(good_len)
                .and_then(|()| ledger.sync_all())
                .map_err(|e| PosError::io(&config.ledger_path.display().to_string(), &e))?;
        }
        let mut done = HashMap::new();
        for e in &entries {
            if e.outcome != FileOutcome::Duplicate {
                done.entry(FileRef {
                    name: e.name.clone(),
                    sha256: e.sha256.clone(),
                })
                .or_insert_with(|| e.clone());
            }
        }
        Ok(Self {
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State {
                ledger,
                entries,
                done,
                pending: HashMap::new(),
            })),
        })
    }

    pub fn config(&self) -> &FileDropConfig {
        &self.config
    }

    /// Every ledger entry, oldest first.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>, PosError> {
        Ok(lock(&self.state)?.entries.clone())
    }

    fn fetch_blocking(
        config: &FileDropConfig,
        state: &Mutex<State>,
        feed: Feed,
        cursor: &PosCursor,
    ) -> Result<PosBatch, PosError> {
        let mut st = lock(state)?;
        let fc: FileCursor = cursor.decode()?.unwrap_or_default();
        // The committed cursor names a file whose tidy-up may not have run (a crash after
        // the commit): finish it first.
        if let Some(last) = &fc.last {
            finalize(config, &mut st, last)?;
        }
        let wanted = FileKind::for_feed(feed);
        let mut found: Option<(FileRef, Parsed)> = None;
        let mut has_more = false;
        for name in list_candidates(config)? {
            let Some(file) = read_candidate(config, &name)? else {
                continue;
            };
            let key = FileRef {
                name: name.clone(),
                sha256: file.sha256.clone(),
            };
            if let Some(entry) = st.done.get(&key).cloned() {
                set_aside_known(config, &mut st, &key, &entry)?;
                continue;
            }
            let content = match &file.content {
                Ok(bytes) => bytes,
                Err(err) => {
                    // Too large to read: no kind can be told from the header.
                    let kind = kind_by_name(config, &name);
                    if kind.is_none() || kind == Some(wanted) {
                        reject_now(config, &mut st, &key, kind, vec![err.clone()])?;
                    }
                    continue;
                }
            };
            let decoded = decode(content, &name);
            let kind = kind_by_name(config, &name).or_else(|| match &decoded {
                Ok(text) => kind_by_header(config, text),
                Err(_) => None,
            });
            let Some(kind) = kind else {
                let mut errors = vec![
                    RecordError::new(
                        RecordErrorKind::UnknownFileKind,
                        "the file name matches no configured pattern and its header matches no configured file kind; rename it (e.g. stock_snapshot_<date>.csv, stock_changes_<date>.csv, sales_<date>.csv) and drop it again",
                    )
                    .source(name.as_str()),
                ];
                if let Err(e) = decoded {
                    errors.push(*e);
                }
                reject_now(config, &mut st, &key, None, errors)?;
                continue;
            };
            if kind != wanted {
                continue;
            }
            if found.is_some() {
                has_more = true;
                break;
            }
            let parsed = match decoded {
                Ok(text) => parse_file(config, &name, file.modified, text, kind),
                Err(e) => Parsed {
                    kind,
                    payload: BatchPayload::empty(feed, file.modified),
                    errors: vec![*e],
                    rejected: true,
                },
            };
            found = Some((key, parsed));
        }
        let Some((key, parsed)) = found else {
            return Ok(PosBatch::new(
                config.id.clone(),
                feed,
                None,
                BatchPayload::empty(feed, Timestamp::EPOCH),
                Vec::new(),
                cursor.clone(),
                false,
            ));
        };
        let next = PosCursor::encode(&FileCursor {
            last: Some(key.clone()),
            files: fc.files + 1,
        })?;
        let batch = PosBatch::new(
            config.id.clone(),
            feed,
            Some(key.name.clone()),
            parsed.payload.clone(),
            parsed.errors.clone(),
            next,
            has_more,
        );
        st.pending.insert(key, parsed);
        Ok(batch)
    }

    fn after_commit_blocking(
        config: &FileDropConfig,
        state: &Mutex<State>,
        cursor: &PosCursor,
    ) -> Result<(), PosError> {
        let mut st = lock(state)?;
        let fc: FileCursor = cursor.decode()?.unwrap_or_default();
        match &fc.last {
            Some(last) => finalize(config, &mut st, last),
            None => Ok(()),
        }
    }
}

fn lock(state: &Mutex<State>) -> Result<std::sync::MutexGuard<'_, State>, PosError> {
    state.lock().map_err(|_| PosError::Internal {
        message: "file-drop state lock poisoned by an earlier panic".into(),
    })
}

fn join_error(e: tokio::task::JoinError) -> PosError {
    PosError::Internal {
        message: format!("file-drop worker failed: {e}"),
    }
}

impl PosConnector for FileDropConnector {
    fn id(&self) -> &ConnectorId {
        &self.config.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            stock_snapshot: true,
            stock_changes: true,
            sales: true,
            fulfilment_requests: false,
            fulfilment_status: false,
            webhooks: false,
        }
    }

    fn locations(&self) -> BoxFuture<'_, Result<Vec<PosLocation>, PosError>> {
        let locations = self
            .config
            .mapping
            .locations()
            .map(|m| PosLocation {
                id: m.pos_location.clone(),
                name: m.store.to_string(),
                active: true,
                timezone: None,
                currency: Some(self.config.currency),
            })
            .collect();
        Box::pin(async move { Ok(locations) })
    }

    fn stock_snapshot<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        self.fetch_feed(Feed::StockSnapshot, cursor)
    }

    fn stock_changes<'a>(
        &'a self,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        self.fetch_feed(Feed::StockChanges, cursor)
    }

    fn sales<'a>(&'a self, cursor: &'a PosCursor) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        self.fetch_feed(Feed::Sales, cursor)
    }

    fn after_commit<'a>(
        &'a self,
        _feed: Feed,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<(), PosError>> {
        let config = Arc::clone(&self.config);
        let state = Arc::clone(&self.state);
        let cursor = cursor.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                Self::after_commit_blocking(&config, &state, &cursor)
            })
            .await
            .map_err(join_error)?
        })
    }
}

impl FileDropConnector {
    fn fetch_feed<'a>(
        &'a self,
        feed: Feed,
        cursor: &'a PosCursor,
    ) -> BoxFuture<'a, Result<PosBatch, PosError>> {
        let config = Arc::clone(&self.config);
        let state = Arc::clone(&self.state);
        let cursor = cursor.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                Self::fetch_blocking(&config, &state, feed, &cursor)
            })
            .await
            .map_err(join_error)?
        })
    }
}

// ---------------------------------------------------------------------------------------------
// folder work

struct Candidate {
    sha256: String,
    modified: Timestamp,
    /// The bytes, or why they were not read (too large).
    content: Result<Vec<u8>, RecordError>,
}

fn is_ignored(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".partial", ".filepart", ".ok"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
}

/// Top-level regular files in the watched folder, by name.
fn list_candidates(config: &FileDropConfig) -> Result<Vec<String>, PosError> {
    let dir = &config.watch_dir;
    let rd = fs::read_dir(dir).map_err(|e| PosError::io(&dir.display().to_string(), &e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| PosError::io(&dir.display().to_string(), &e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: cannot be named in a report; left where it is
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || is_ignored(&name) {
            continue;
        }
        if config.require_ok_marker && !dir.join(format!("{name}.ok")).exists() {
            continue;
        }
        if !config.settle.is_zero() {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            // An mtime in the future (the clock moved back) does not block a file forever.
            if age.is_some_and(|a| a < config.settle) {
                continue;
            }
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

fn read_candidate(config: &FileDropConfig, name: &str) -> Result<Option<Candidate>, PosError> {
    let path = config.watch_dir.join(name);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PosError::io(&path.display().to_string(), &e)),
    };
    let meta = f
        .metadata()
        .map_err(|e| PosError::io(&path.display().to_string(), &e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        .unwrap_or(Timestamp::EPOCH);
    let mut hasher = Sha256::new();
    let mut content = Vec::new();
    let too_large = meta.len() > config.max_file_bytes;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| PosError::io(&path.display().to_string(), &e))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        if !too_large {
            content.extend_from_slice(chunk);
        }
    }
    let content = if too_large {
        Err(RecordError::new(
            RecordErrorKind::Unreadable,
            format!(
                "the file is {} bytes, more than the configured limit of {}; split it or raise max_file_bytes",
                meta.len(),
                config.max_file_bytes
            ),
        )
        .source(name))
    } else {
        Ok(content)
    };
    Ok(Some(Candidate {
        sha256: hex(&hasher.finalize()),
        modified,
        content,
    }))
}

/// `foo.csv` → `foo.<tag>.csv`; `foo` → `foo.<tag>`.
fn tagged(name: &str, tag: &str) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}.{tag}{}", &name[..i], &name[i..]),
        _ => format!("{name}.{tag}"),
    }
}

/// A free destination path for `name` in `dir`: the name itself, else tagged with the
/// content hash, else with a counter.
fn free_destination(dir: &Path, name: &str, sha256: &str, duplicate: bool) -> PathBuf {
    let short = sha256.get(..12).unwrap_or(sha256);
    let first = if duplicate {
        tagged(name, &format!("duplicate-{short}"))
    } else {
        name.to_owned()
    };
    let p = dir.join(&first);
    if !p.exists() {
        return p;
    }
    let second = tagged(&first, short);
    let p = dir.join(&second);
    if !duplicate && !p.exists() {
        return p;
    }
    let base = if duplicate { first } else { second };
    let mut n = 1u32;
    loop {
        let p = dir.join(tagged(&base, &n.to_string()));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

fn sync_dir(dir: &Path) -> Result<(), PosError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PosError::io(&dir.display().to_string(), &e))
}

/// Move a file (rename; copy + fsync + remove across file systems). Never deletes data that
/// was not copied first.
fn move_file(from: &Path, to: &Path) -> Result<(), PosError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) => {
            fs::copy(from, to)
                .and_then(|_| File::open(to).and_then(|f| f.sync_all()))
                .map_err(|e| PosError::io(&to.display().to_string(), &e))?;
            fs::remove_file(from).map_err(|e| PosError::io(&from.display().to_string(), &e))
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PosError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(|e| PosError::io(&tmp.display().to_string(), &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| PosError::io(&tmp.display().to_string(), &e))?;
    fs::rename(&tmp, path).map_err(|e| PosError::io(&path.display().to_string(), &e))
}

fn errors_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".errors.json");
    dest.with_file_name(name)
}

fn append_ledger(
    config: &FileDropConfig,
    st: &mut State,
    entry: LedgerEntry,
) -> Result<(), PosError> {
    let mut line = serde_json::to_vec(&entry).map_err(|e| PosError::Internal {
        message: format!("encoding ledger entry: {e}"),
    })?;
    line.push(b'\n');
    st.ledger
        .write_all(&line)
        .and_then(|()| st.ledger.sync_data())
        .map_err(|e| PosError::io(&config.ledger_path.display().to_string(), &e))?;
    if entry.outcome != FileOutcome::Duplicate {
        st.done
            .entry(FileRef {
                name: entry.name.clone(),
                sha256: entry.sha256.clone(),
            })
            .or_insert_with(|| entry.clone());
    }
    st.entries.push(entry);
    Ok(())
}

/// Record a file's outcome and move it aside: errors file first, then the ledger (the point
/// of no return), then the move. A crash after the ledger write leaves the file in the folder;
/// the next scan sees it in the ledger and completes the move.
#[allow(clippy::too_many_arguments)]
fn record_and_move(
    config: &FileDropConfig,
    st: &mut State,
    key: &FileRef,
    kind: Option<FileKind>,
    outcome: FileOutcome,
    batch: Option<BatchId>,
    records: usize,
    errors: &[RecordError],
) -> Result<(), PosError> {
    // A duplicate goes beside the file it repeats.
    let rejected = match outcome {
        FileOutcome::Rejected => true,
        FileOutcome::Processed => false,
        FileOutcome::Duplicate => st
            .done
            .get(key)
            .is_some_and(|e| e.outcome == FileOutcome::Rejected),
    };
    let dir = if rejected {
        &config.rejected_dir
    } else {
        &config.processed_dir
    };
    let src = config.watch_dir.join(&key.name);
    let dest = free_destination(
        dir,
        &key.name,
        &key.sha256,
        outcome == FileOutcome::Duplicate,
    );
    if !errors.is_empty() {
        let body = ErrorsFile {
            file: &key.name,
            sha256: &key.sha256,
            kind,
            outcome,
            records,
            errors,
        };
        let bytes = serde_json::to_vec_pretty(&body).map_err(|e| PosError::Internal {
            message: format!("encoding errors file: {e}"),
        })?;
        write_atomic(&errors_path(&dest), &bytes)?;
    }
    append_ledger(
        config,
        st,
        LedgerEntry {
            name: key.name.clone(),
            sha256: key.sha256.clone(),
            kind,
            outcome,
            moved_to: Some(dest.clone()),
            batch,
            records,
            errors: errors.len(),
        },
    )?;
    move_file(&src, &dest)?;
    let marker = config.watch_dir.join(format!("{}.ok", key.name));
    if marker.exists() {
        let mut marker_dest = dest.as_os_str().to_os_string();
        marker_dest.push(".ok");
        move_file(&marker, Path::new(&marker_dest))?;
    }
    sync_dir(dir)?;
    sync_dir(&config.watch_dir)
}

/// A file rejected before any batch (unknown kind, too large): recorded and moved now.
fn reject_now(
    config: &FileDropConfig,
    st: &mut State,
    key: &FileRef,
    kind: Option<FileKind>,
    errors: Vec<RecordError>,
) -> Result<(), PosError> {
    record_and_move(
        config,
        st,
        key,
        kind,
        FileOutcome::Rejected,
        None,
        0,
        &errors,
    )
}

/// A file already in the ledger is in the folder again: finish an interrupted move, or set
/// it aside as a duplicate.
fn set_aside_known(
    config: &FileDropConfig,
    st: &mut State,
    key: &FileRef,
    entry: &LedgerEntry,
) -> Result<(), PosError> {
    if let Some(dest) = &entry.moved_to
        && !dest.exists()
    {
        move_file(&config.watch_dir.join(&key.name), dest)?;
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        return sync_dir(&config.watch_dir);
    }
    record_and_move(
        config,
        st,
        key,
        entry.kind,
        FileOutcome::Duplicate,
        None,
        0,
        &[],
    )
}

/// The batch for `key` is committed: record the file and move it aside (idempotent).
fn finalize(config: &FileDropConfig, st: &mut State, key: &FileRef) -> Result<(), PosError> {
    if st.done.contains_key(key) {
        return Ok(());
    }
    let current = read_candidate(config, &key.name)?;
    let still_there = current.as_ref().is_some_and(|c| c.sha256 == key.sha256);
    let parsed = match st.pending.remove(key) {
        Some(p) => Some(p),
        None if still_there => current.as_ref().and_then(|c| {
            let kind = kind_by_name(config, &key.name);
            match (&c.content, kind) {
                (Ok(bytes), kind) => {
                    let decoded = decode(bytes, &key.name);
                    let kind = kind.or_else(|| match &decoded {
                        Ok(t) => kind_by_header(config, t),
                        Err(_) => None,
                    })?;
                    Some(match decoded {
                        Ok(text) => parse_file(config, &key.name, c.modified, text, kind),
                        Err(e) => Parsed {
                            kind,
                            payload: BatchPayload::empty(kind.feed(), c.modified),
                            errors: vec![*e],
                            rejected: true,
                        },
                    })
                }
                (Err(_), _) => None,
            }
        }),
        None => None,
    };
    if !still_there {
        // The file left the folder (or was replaced by new content) after its batch was
        // stored: record that it was delivered; new content is a new file.
        let (kind, records, errors) = parsed
            .as_ref()
            .map(|p| (Some(p.kind), p.payload.len(), p.errors.len()))
            .unwrap_or((None, 0, 0));
        return append_ledger(
            config,
            st,
            LedgerEntry {
                name: key.name.clone(),
                sha256: key.sha256.clone(),
                kind,
                outcome: FileOutcome::Processed,
                moved_to: None,
                batch: None,
                records,
                errors,
            },
        );
    }
    let Some(parsed) = parsed else {
        // Its batch is stored, but the file can no longer be classified (the configuration
        // changed since): set it aside as processed rather than block the feed.
        return record_and_move(config, st, key, None, FileOutcome::Processed, None, 0, &[]);
    };
    let outcome = if parsed.rejected {
        FileOutcome::Rejected
    } else {
        FileOutcome::Processed
    };
    let batch = PosBatch::new(
        config.id.clone(),
        parsed.kind.feed(),
        Some(key.name.clone()),
        parsed.payload.clone(),
        parsed.errors.clone(),
        PosCursor::start(),
        false,
    );
    record_and_move(
        config,
        st,
        key,
        Some(parsed.kind),
        outcome,
        Some(batch.id),
        parsed.payload.len(),
        &parsed.errors,
    )
}

fn read_ledger(path: &Path) -> Result<(Vec<LedgerEntry>, u64), PosError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(PosError::io(&path.display().to_string(), &e)),
    };
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut good = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| PosError::io(&path.display().to_string(), &e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            break; // torn write from a crash: never acknowledged
        }
        let entry: LedgerEntry = serde_json::from_slice(&buf).map_err(|e| PosError::Config {
            message: format!(
                "{} line {line_no} is unreadable ({e}); restore the ledger or move it aside",
                path.display()
            ),
        })?;
        entries.push(entry);
        good += n as u64;
    }
    Ok((entries, good))
}

// ---------------------------------------------------------------------------------------------
// recognising files

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], text) || (!text.is_empty() && glob_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => glob_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn kind_by_name(config: &FileDropConfig, name: &str) -> Option<FileKind> {
    config
        .kinds
        .iter()
        .find(|r| {
            r.name_patterns
                .iter()
                .any(|p| glob_match(p.as_bytes(), name.as_bytes()))
        })
        .map(|r| r.kind)
}

fn header_names(config: &FileDropConfig, text: &str) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(config.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    match rdr.read_record(&mut record) {
        Ok(true) => record.iter().map(|h| h.trim().to_lowercase()).collect(),
        _ => Vec::new(),
    }
}

fn kind_by_header(config: &FileDropConfig, text: &str) -> Option<FileKind> {
    let header = header_names(config, text);
    config
        .kinds
        .iter()
        .find(|r| {
            !r.header_columns.is_empty()
                && r.header_columns
                    .iter()
                    .all(|c| header.contains(&c.trim().to_lowercase()))
        })
        .map(|r| r.kind)
}

/// UTF-8 text without a byte-order mark, or a file-level error.
fn decode<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, Box<RecordError>> {
    if bytes.is_empty() {
        return Err(Box::new(
            RecordError::new(
                RecordErrorKind::Unreadable,
                "the file is empty; the till's export may have failed — export it again",
            )
            .source(name),
        ));
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(Box::new(
            RecordError::new(
                RecordErrorKind::Unreadable,
                "the file is UTF-16; export it as UTF-8 (with or without BOM)",
            )
            .source(name)
            .at(1, None),
        ));
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    std::str::from_utf8(body).map_err(|e| {
        let valid = body.get(..e.valid_up_to()).unwrap_or_default();
        let row = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        Box::new(
            RecordError::new(
                RecordErrorKind::Unreadable,
                format!(
                    "the file is not UTF-8 (invalid byte at offset {}); export it as UTF-8",
                    e.valid_up_to()
                ),
            )
            .source(name)
            .at(row, None),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// parsing rows

/// Header column positions by lower-cased name.
struct Header {
    names: Vec<String>,
}

impl Header {
    fn find(&self, column: &str) -> Option<usize> {
        let want = column.trim().to_lowercase();
        self.names.iter().position(|h| *h == want)
    }
}

/// One data row with the file's context, collecting every error it finds.
struct Row<'a> {
    file: &'a str,
    record: &'a csv::StringRecord,
    line: u64,
    header: &'a Header,
    errors: Vec<RecordError>,
}

impl<'a> Row<'a> {
    fn error(&mut self, kind: RecordErrorKind, column: &str, value: Option<&str>, message: String) {
        let idx = self.header.find(column);
        let mut e = RecordError::new(kind, message)
            .source(self.file)
            .at(self.line, idx.map(|i| i as u32 + 1))
            .field(column);
        if let Some(v) = value {
            e = e.value(v);
        }
        self.errors.push(e);
    }

    /// The trimmed value of an optional column (absent column or empty cell → `None`).
    fn opt(&self, column: &str) -> Option<&'a str> {
        let idx = self.header.find(column)?;
        self.record
            .get(idx)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The value of a required column, or a `missing_field` error.
    fn req(&mut self, column: &str) -> Option<&'a str> {
        let v = self.opt(column);
        if v.is_none() {
            let present = self
                .header
                .find(column)
                .is_some_and(|i| i < self.record.len());
            let message = if present {
                format!("'{column}' is empty; every row needs it")
            } else {
                format!("the row has no '{column}' value (it has fewer fields than the header)")
            };
            self.error(RecordErrorKind::MissingField, column, None, message);
        }
        v
    }

    fn id<T, E: std::fmt::Display>(
        &mut self,
        column: &str,
        raw: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    RecordErrorKind::BadIdentifier,
                    column,
                    Some(raw),
                    e.to_string(),
                );
                None
            }
        }
    }

    fn decimal(&mut self, column: &str, raw: &str, decimal_comma: bool) -> Option<Decimal> {
        match parse_decimal(raw, decimal_comma) {
            Ok(d) => Some(d),
            Err(why) => {
                self.error(
                    RecordErrorKind::BadNumber,
                    column,
                    Some(raw),
                    format!("'{raw}' is not a number: {why}"),
                );
                None
            }
        }
    }

    fn money(
        &mut self,
        column: &str,
        raw: &str,
        currency: Currency,
        decimal_comma: bool,
    ) -> Option<Decimal> {
        let d = self.decimal(column, raw, decimal_comma)?;
        match Money::from_major_exact(d, currency) {
            Ok(_) => Some(d),
            Err(MoneyError::TooManyDecimals { exponent, .. }) => {
                self.error(
                    RecordErrorKind::BadNumber,
                    column,
                    Some(raw),
                    format!("'{raw}' has more than {exponent} decimals for {currency}"),
                );
                None
            }
            Err(e) => {
                self.error(RecordErrorKind::BadNumber, column, Some(raw), e.to_string());
                None
            }
        }
    }

    fn timestamp(&mut self, column: &str, raw: &str, offset: i32) -> Option<Timestamp> {
        match parse_time(raw, offset) {
            Some(t) => Some(t),
            None => {
                self.error(
                    RecordErrorKind::BadTimestamp,
                    column,
                    Some(raw),
                    format!(
                        "'{raw}' is not a date-time; write 2025-06-01T10:00:00Z, 2025-06-01 10:00:00 (local time), 2025-06-01 or 20250601"
                    ),
                );
                None
            }
        }
    }
}

/// A plain decimal: optional sign, digits, optional fraction. No exponents, no thousands
/// separators (`1,234` is ambiguous between locales and is refused).
fn parse_decimal(raw: &str, decimal_comma: bool) -> Result<Decimal, &'static str> {
    let s = raw.trim();
    let normalised;
    let s = if decimal_comma {
        if s.contains('.') {
            return Err(
                "this feed uses ',' as the decimal separator; write 12,50 without thousands separators",
            );
        }
        normalised = s.replace(',', ".");
        normalised.as_str()
    } else {
        if s.contains(',') {
            return Err("use '.' as the decimal separator and no thousands separators");
        }
        s
    };
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits(int)
        && frac.is_none_or(|f| !f.is_empty() && digits(f))
        && !(int.is_empty() && frac.is_none());
    if !well_formed || body.is_empty() {
        return Err("expected digits with an optional decimal point, like 12.50");
    }
    Decimal::from_str_exact(s).map_err(|_| "out of range")
}

fn parse_time(raw: &str, offset: i32) -> Option<Timestamp> {
    if let Ok(t) = Timestamp::parse(raw) {
        return Some(t);
    }
    if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        let iso = format!("{}-{}-{}", &raw[..4], &raw[4..6], &raw[6..]);
        return Timestamp::parse_naive(&iso, offset).ok();
    }
    Timestamp::parse_naive(raw, offset).ok()
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "inclusive" | "incl" => Some(true),
        "false" | "no" | "n" | "0" | "exclusive" | "excl" => Some(false),
        _ => None,
    }
}

fn parse_tender(raw: &str) -> (TenderKind, Option<String>) {
    let kind = match raw.trim().to_lowercase().replace([' ', '-'], "_").as_str() {
        "cash" => TenderKind::Cash,
        "card" | "credit_card" | "debit_card" | "contactless" => TenderKind::Card,
        "gift_card" | "giftcard" | "voucher" => TenderKind::GiftCard,
        "external" => TenderKind::External,
        _ => TenderKind::Other,
    };
    (kind, Some(raw.trim().to_owned()))
}

/// Header check: every required column present, else one file-level error per column.
fn check_header(name: &str, header: &Header, required: &[&str]) -> Vec<RecordError> {
    required
        .iter()
        .filter(|c| header.find(c).is_none())
        .map(|c| {
            RecordError::new(
                RecordErrorKind::MissingField,
                format!(
                    "the header has no '{c}' column (it has: {}); fix the export or the column mapping",
                    header.names.join(", ")
                ),
            )
            .source(name)
            .at(1, None)
            .field(*c)
        })
        .collect()
}

fn parse_file(
    config: &FileDropConfig,
    name: &str,
    modified: Timestamp,
    text: &str,
    kind: FileKind,
) -> Parsed {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(config.delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = match rdr.headers() {
        Ok(h) => Header {
            names: h.iter().map(|n| n.trim().to_lowercase()).collect(),
        },
        Err(e) => {
            return Parsed {
                kind,
                payload: BatchPayload::empty(kind.feed(), modified),
                errors: vec![
                    RecordError::new(
                        RecordErrorKind::Unreadable,
                        format!("the header row cannot be read: {e}"),
                    )
                    .source(name)
                    .at(1, None),
                ],
                rejected: true,
            };
        }
    };
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for result in rdr.records() {
        match result {
            Ok(r) => records.push(r),
            Err(e) => {
                let row = e.position().map(|p| p.line());
                let mut err = RecordError::new(
                    RecordErrorKind::Unreadable,
                    format!("the row cannot be read as CSV: {e}"),
                )
                .source(name);
                err.row = row;
                errors.push(err);
                if errors.len() > 10_000 {
                    break;
                }
            }
        }
    }
    let rows_seen = records.len() + errors.len();
    let (payload, mut row_errors, good) = match kind {
        FileKind::StockSnapshot | FileKind::StockChanges => {
            let c = &config.columns;
            let missing = check_header(name, &header, &[&c.store, &c.sku, &c.quantity]);
            if !missing.is_empty() {
                return Parsed {
                    kind,
                    payload: BatchPayload::empty(kind.feed(), modified),
                    errors: missing,
                    rejected: true,
                };
            }
            let (levels, errs) = parse_stock_rows(config, name, modified, &header, &records);
            let good = levels.len();
            let payload = if kind == FileKind::StockSnapshot {
                let as_of = levels.iter().map(|l| l.as_of).max().unwrap_or(modified);
                let locations: BTreeSet<PosLocationId> =
                    levels.iter().map(|l| l.location.clone()).collect();
                BatchPayload::StockSnapshot {
                    as_of,
                    locations: locations.into_iter().collect(),
                    levels,
                }
            } else {
                BatchPayload::StockChanges { levels }
            };
            (payload, errs, good)
        }
        FileKind::Sales => {
            let c = &config.columns;
            let missing = check_header(
                name,
                &header,
                &[
                    &c.transaction_id,
                    &c.store,
                    &c.sku,
                    &c.quantity,
                    &c.unit_price,
                    &c.line_total,
                    &c.occurred_at,
                ],
            );
            if !missing.is_empty() {
                return Parsed {
                    kind,
                    payload: BatchPayload::empty(kind.feed(), modified),
                    errors: missing,
                    rejected: true,
                };
            }
            let (transactions, errs) = parse_sales_rows(config, name, modified, &header, &records);
            let good = transactions.len();
            (BatchPayload::Sales { transactions }, errs, good)
        }
    };
    errors.append(&mut row_errors);
    errors.sort_by_key(|e| e.row.unwrap_or(0));
    Parsed {
        kind,
        payload,
        rejected: rows_seen > 0 && good == 0,
        errors,
    }
}

fn parse_stock_rows(
    config: &FileDropConfig,
    name: &str,
    modified: Timestamp,
    header: &Header,
    records: &[csv::StringRecord],
) -> (Vec<StockLevel>, Vec<RecordError>) {
    let c = &config.columns;
    let mut levels: Vec<StockLevel> = Vec::new();
    let mut seen: HashMap<(PosLocationId, PosVariationId), (u64, usize)> = HashMap::new();
    let mut errors = Vec::new();
    for record in records {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let mut row = Row {
            file: name,
            record,
            line,
            header,
            errors: Vec::new(),
        };
        let location = row.req(&c.store).and_then(|raw| {
            let store = row.id(&c.store, raw, StoreCode::parse)?;
            let loc = config.mapping.location_for_store(&store).cloned();
            if loc.is_none() {
                row.error(
                    RecordErrorKind::UnknownStore,
                    &c.store,
                    Some(raw),
                    format!(
                        "store '{raw}' is not in the location mapping; add it or correct the code"
                    ),
                );
            }
            loc
        });
        let variation = row.req(&c.sku).and_then(|raw| {
            let var = row.id(&c.sku, raw, PosVariationId::parse)?;
            if !config.items_are_skus && config.mapping.sku_for(&var).is_none() {
                row.error(
                    RecordErrorKind::UnknownSku,
                    &c.sku,
                    Some(raw),
                    format!("SKU '{raw}' is not in the item mapping; add it or correct the code"),
                );
                return None;
            }
            Some(var)
        });
        let quantity = row.req(&c.quantity).and_then(|raw| {
            let q = row.decimal(&c.quantity, raw, config.decimal_comma)?;
            if q < Decimal::ZERO {
                row.error(
                    RecordErrorKind::NegativeStock,
                    &c.quantity,
                    Some(raw),
                    format!("stock {q} is negative; a level can be zero at least — check the count at the till"),
                );
                return None;
            }
            Some(q)
        });
        let as_of = match row.opt(&c.as_of) {
            Some(raw) => row.timestamp(&c.as_of, raw, config.local_time_offset_minutes),
            None => Some(modified),
        };
        let mut row_errors = std::mem::take(&mut row.errors);
        if let (Some(location), Some(variation), Some(available), Some(as_of), true) =
            (location, variation, quantity, as_of, row_errors.is_empty())
        {
            let key = (location.clone(), variation.clone());
            match seen.get(&key) {
                Some(&(first_row, idx)) => {
                    if levels.get(idx).map(|l| l.available) != Some(available) {
                        let mut r = Row {
                            file: name,
                            record,
                            line,
                            header,
                            errors: Vec::new(),
                        };
                        r.error(
                            RecordErrorKind::Inconsistent,
                            &c.quantity,
                            record.get(header.find(&c.quantity).unwrap_or(usize::MAX)),
                            format!(
                                "store and SKU already given on row {first_row} with another quantity; the first row applies — remove one of them"
                            ),
                        );
                        row_errors.append(&mut r.errors);
                    }
                }
                None => {
                    let pos_sku = Sku::parse(variation.as_str()).ok();
                    seen.insert(key, (line, levels.len()));
                    levels.push(StockLevel {
                        location,
                        variation,
                        pos_sku,
                        available,
                        as_of,
                    });
                }
            }
        }
        errors.append(&mut row_errors);
    }
    (levels, errors)
}

/// One parsed sales row.
struct SalesRow {
    line: u64,
    location: PosLocationId,
    return_line: bool,
    occurred_at: Timestamp,
    currency: Currency,
    original: Option<PosTransactionId>,
    tx_line: TransactionLine,
    tender: Option<(TenderKind, Option<String>)>,
}

struct TxnAcc {
    id: PosTransactionId,
    first_row: u64,
    rows: Vec<SalesRow>,
    bad_rows: Vec<u64>,
}

#[allow(clippy::too_many_lines)]
fn parse_sales_row(config: &FileDropConfig, row: &mut Row<'_>) -> Option<SalesRow> {
    let c = &config.columns;
    let dc = config.decimal_comma;
    let location = row.req(&c.store).and_then(|raw| {
        let store = row.id(&c.store, raw, StoreCode::parse)?;
        let loc = config.mapping.location_for_store(&store).cloned();
        if loc.is_none() {
            row.error(
                RecordErrorKind::UnknownStore,
                &c.store,
                Some(raw),
                format!("store '{raw}' is not in the location mapping; add it or correct the code"),
            );
        }
        loc
    });
    let variation = row.req(&c.sku).and_then(|raw| {
        let var = row.id(&c.sku, raw, PosVariationId::parse)?;
        if !config.items_are_skus && config.mapping.sku_for(&var).is_none() {
            row.error(
                RecordErrorKind::UnknownSku,
                &c.sku,
                Some(raw),
                format!("SKU '{raw}' is not in the item mapping; add it or correct the code"),
            );
            return None;
        }
        Some(var)
    });
    let type_return = match row.opt(&c.transaction_type) {
        None => Some(None),
        Some(raw) => match raw.to_lowercase().as_str() {
            "sale" | "s" | "sell" => Some(Some(false)),
            "return" | "r" | "refund" => Some(Some(true)),
            _ => {
                row.error(
                    RecordErrorKind::BadValue,
                    &c.transaction_type,
                    Some(raw),
                    format!("'{raw}' is not a transaction type; use 'sale' or 'return'"),
                );
                None
            }
        },
    };
    let quantity = row.req(&c.quantity).and_then(|raw| {
        let q = row.decimal(&c.quantity, raw, dc)?;
        if q == Decimal::ZERO {
            row.error(
                RecordErrorKind::BadNumber,
                &c.quantity,
                Some(raw),
                "quantity is zero; a line sells or returns at least some of an item".into(),
            );
            return None;
        }
        Some((q, raw))
    });
    let return_line = match (type_return, quantity) {
        (Some(Some(false)), Some((q, raw))) if q < Decimal::ZERO => {
            row.error(
                RecordErrorKind::Inconsistent,
                &c.quantity,
                Some(raw),
                "a negative quantity on a row typed 'sale'; type it 'return' or make it positive"
                    .into(),
            );
            None
        }
        (Some(Some(t)), Some(_)) => Some(t),
        (Some(None), Some((q, _))) => Some(q < Decimal::ZERO),
        _ => None,
    };
    let currency = match row.opt(&c.currency) {
        None => Some(config.currency),
        Some(raw) => match Currency::parse(raw) {
            Ok(cur) => Some(cur),
            Err(e) => {
                row.error(
                    RecordErrorKind::BadCurrency,
                    &c.currency,
                    Some(raw),
                    e.to_string(),
                );
                None
            }
        },
    };
    let occurred_at = row
        .req(&c.occurred_at)
        .and_then(|raw| row.timestamp(&c.occurred_at, raw, config.local_time_offset_minutes));
    // Money columns need the currency; without one they cannot be judged.
    let cur = currency.unwrap_or(config.currency);
    let is_return = return_line.unwrap_or(false);
    let money = |row: &mut Row<'_>, column: &str, required: bool| -> Option<Option<Money>> {
        let raw = if required {
            row.req(column)?
        } else {
            match row.opt(column) {
                Some(r) => r,
                None => return Some(None),
            }
        };
        let d = row.money(column, raw, cur, dc)?;
        if d < Decimal::ZERO && !is_return && column != c.discount {
            row.error(
                RecordErrorKind::BadNumber,
                column,
                Some(raw),
                format!("'{raw}' is negative on a sale row; returns are typed 'return' or have a negative quantity"),
            );
            return None;
        }
        Money::from_major_exact(d.abs(), cur).ok().map(Some)
    };
    let unit_price = money(row, &c.unit_price, true).flatten();
    let total = money(row, &c.line_total, true).flatten();
    let discount = money(row, &c.discount, false);
    let tax = match row.opt(&c.tax_rate) {
        None => Some(None),
        Some(raw_rate) => {
            let rate = row.decimal(&c.tax_rate, raw_rate, dc);
            let amount = money(row, &c.tax_amount, true).flatten();
            let inclusive = match row.opt(&c.tax_inclusive) {
                None => Some(config.prices_include_tax),
                Some(raw) => {
                    let b = parse_bool(raw);
                    if b.is_none() {
                        row.error(
                            RecordErrorKind::BadValue,
                            &c.tax_inclusive,
                            Some(raw),
                            format!("'{raw}' is not yes/no; write true or false"),
                        );
                    }
                    b
                }
            };
            let code = match row.opt(&c.tax_code) {
                None => Some(None),
                Some(raw) => row.id(&c.tax_code, raw, PosTaxId::parse).map(Some),
            };
            match (rate, amount, inclusive, code) {
                (Some(rate), Some(amount), Some(inclusive), Some(code)) => Some(Some(TaxLine {
                    tax: code,
                    name: None,
                    rate,
                    inclusive,
                    amount,
                })),
                _ => None,
            }
        }
    };
    let original = match row.opt(&c.original_transaction) {
        None => Some(None),
        Some(raw) => row
            .id(&c.original_transaction, raw, PosTransactionId::parse)
            .map(Some),
    };
    let line_id = match row.opt(&c.line_id) {
        None => PosLineId::parse(&row.line.to_string()).ok(),
        Some(raw) => row.id(&c.line_id, raw, PosLineId::parse),
    };
    let tender = row.opt(&c.tender).map(parse_tender);
    if !row.errors.is_empty() {
        return None;
    }
    let variation = variation?;
    let pos_sku = Sku::parse(variation.as_str()).ok();
    Some(SalesRow {
        line: row.line,
        location: location?,
        return_line: return_line?,
        occurred_at: occurred_at?,
        currency: currency?,
        original: original?,
        tx_line: TransactionLine {
            id: line_id?,
            variation: Some(variation),
            pos_sku,
            name: None,
            quantity: quantity?.0.abs(),
            unit_price: unit_price?,
            discount: discount?.unwrap_or(Money::zero(cur)),
            total: total?,
            taxes: tax?.into_iter().collect(),
        },
        tender,
    })
}

fn parse_sales_rows(
    config: &FileDropConfig,
    name: &str,
    modified: Timestamp,
    header: &Header,
    records: &[csv::StringRecord],
) -> (Vec<PosTransaction>, Vec<RecordError>) {
    let c = &config.columns;
    let mut order: Vec<TxnAcc> = Vec::new();
    let mut index: HashMap<PosTransactionId, usize> = HashMap::new();
    let mut errors = Vec::new();
    for record in records {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let mut row = Row {
            file: name,
            record,
            line,
            header,
            errors: Vec::new(),
        };
        let id = row
            .req(&c.transaction_id)
            .and_then(|raw| row.id(&c.transaction_id, raw, PosTransactionId::parse));
        let parsed = parse_sales_row(config, &mut row);
        let mut row_errors = std::mem::take(&mut row.errors);
        for e in &mut row_errors {
            if let Some(id) = &id {
                e.record = Some(id.as_str().into());
            }
        }
        errors.append(&mut row_errors);
        let Some(id) = id else { continue };
        let i = *index.entry(id.clone()).or_insert_with(|| {
            order.push(TxnAcc {
                id: id.clone(),
                first_row: line,
                rows: Vec::new(),
                bad_rows: Vec::new(),
            });
            order.len() - 1
        });
        let Some(acc) = order.get_mut(i) else {
            continue;
        };
        match parsed {
            Some(r) => acc.rows.push(r),
            None => acc.bad_rows.push(line),
        }
    }

    let mut transactions = Vec::new();
    for acc in order {
        let mut bad = acc.bad_rows.clone();
        // Rows of one transaction must agree on its header fields.
        if let Some(first) = acc.rows.first() {
            let mut seen_lines = BTreeSet::new();
            for r in &acc.rows {
                let mut conflict = |column: &str, what: &str| {
                    errors.push(
                        RecordError::new(
                            RecordErrorKind::Inconsistent,
                            format!(
                                "transaction '{}' has a different {what} on row {} than on row {}; one transaction must have one {what}",
                                acc.id, r.line, first.line
                            ),
                        )
                        .source(name)
                        .record(acc.id.as_str())
                        .at(r.line, header.find(column).map(|i| i as u32 + 1))
                        .field(column),
                    );
                };
                let mut ok = true;
                if r.location != first.location {
                    conflict(&c.store, "store");
                    ok = false;
                }
                if r.occurred_at != first.occurred_at {
                    conflict(&c.occurred_at, "time");
                    ok = false;
                }
                if r.currency != first.currency {
                    conflict(&c.currency, "currency");
                    ok = false;
                }
                if r.return_line != first.return_line {
                    conflict(
                        &c.transaction_type,
                        "direction (sale or return); split exchanges into a sale and a return",
                    );
                    ok = false;
                }
                if r.original != first.original {
                    conflict(&c.original_transaction, "original transaction");
                    ok = false;
                }
                if !seen_lines.insert(r.tx_line.id.clone()) {
                    conflict(
                        &c.line_id,
                        "line id; line ids must be unique within a transaction, and this one repeats",
                    );
                    ok = false;
                }
                if !ok {
                    bad.push(r.line);
                }
            }
        }
        if !bad.is_empty() {
            bad.sort_unstable();
            bad.dedup();
            let rows: Vec<String> = bad.iter().map(u64::to_string).collect();
            errors.push(
                RecordError::new(
                    RecordErrorKind::HeldBack,
                    format!(
                        "transaction '{}' is held back whole because row(s) {} have errors; fix them and send the whole transaction again in a new file",
                        acc.id,
                        rows.join(", ")
                    ),
                )
                .source(name)
                .record(acc.id.as_str())
                .at(acc.first_row, None),
            );
            continue;
        }
        let Some(first) = acc.rows.first() else {
            continue;
        };
        let currency = first.currency;
        let mut tenders: Vec<Tender> = Vec::new();
        for r in &acc.rows {
            if let Some((kind, detail)) = &r.tender {
                match tenders
                    .iter_mut()
                    .find(|t| t.kind == *kind && t.detail == *detail)
                {
                    Some(t) => {
                        t.amount.minor = t.amount.minor.saturating_add(r.tx_line.total.minor)
                    }
                    None => tenders.push(Tender {
                        kind: *kind,
                        amount: r.tx_line.total,
                        detail: detail.clone(),
                    }),
                }
            }
        }
        let txn = PosTransaction {
            id: acc.id.clone(),
            location: first.location.clone(),
            kind: if first.return_line {
                TransactionKind::Return
            } else {
                TransactionKind::Sale
            },
            state: TransactionState::Completed,
            occurred_at: first.occurred_at,
            updated_at: modified.max(first.occurred_at),
            version: None,
            currency,
            lines: acc.rows.iter().map(|r| r.tx_line.clone()).collect(),
            tenders,
            original: first.original.clone(),
        };
        let problems = txn.problems();
        if problems.is_empty() {
            transactions.push(txn);
        } else {
            for p in problems {
                errors.push(
                    RecordError::new(
                        RecordErrorKind::Inconsistent,
                        format!(
                            "transaction '{}' is held back: {} {}",
                            acc.id, p.field, p.message
                        ),
                    )
                    .source(name)
                    .record(acc.id.as_str())
                    .at(acc.first_row, None)
                    .field(p.field),
                );
            }
        }
    }
    (transactions, errors)
}

impl FromStr for FileKind {
    type Err = PosError;
    fn from_str(s: &str) -> Result<Self, PosError> {
        match s {
            "stock_snapshot" => Ok(FileKind::StockSnapshot),
            "stock_changes" => Ok(FileKind::StockChanges),
            "sales" => Ok(FileKind::Sales),
            _ => Err(PosError::Config {
                message: format!("{s:?} is not a file kind (stock_snapshot, stock_changes, sales)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_case_insensitively() {
        assert!(glob_match(
            b"stock_snapshot*",
            b"STOCK_SNAPSHOT_20250601.csv"
        ));
        assert!(glob_match(b"sales_????.csv", b"sales_0001.csv"));
        assert!(!glob_match(b"sales*", b"stock_sales.csv"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn decimals_are_plain_and_locale_is_explicit() {
        assert_eq!(parse_decimal("12.50", false), Ok(Decimal::new(1250, 2)));
        assert_eq!(parse_decimal("-3", false), Ok(Decimal::from(-3)));
        assert_eq!(parse_decimal(".5", false), Ok(Decimal::new(5, 1)));
        assert!(parse_decimal("1,234.00", false).is_err());
        assert!(parse_decimal("1e3", false).is_err());
        assert!(parse_decimal("1_000", false).is_err());
        assert!(parse_decimal("", false).is_err());
        assert!(parse_decimal("-", false).is_err());
        assert!(parse_decimal("5.", false).is_err());
        assert_eq!(parse_decimal("12,50", true), Ok(Decimal::new(1250, 2)));
        assert!(parse_decimal("12.50", true).is_err());
    }

    #[test]
    fn destinations_keep_the_extension_and_never_collide() {
        assert_eq!(tagged("a.csv", "x"), "a.x.csv");
        assert_eq!(tagged("noext", "x"), "noext.x");
        assert_eq!(tagged(".hidden", "x"), ".hidden.x");
    }

    #[test]
    fn times_in_files_accept_common_spellings() {
        let utc = Timestamp::parse("2025-06-01T00:00:00Z").ok();
        assert_eq!(parse_time("20250601", 0), utc);
        assert_eq!(parse_time("2025-06-01", 0), utc);
        assert_eq!(parse_time("2025-06-01 01:00:00", 60), utc);
        assert_eq!(parse_time("2025-06-01T00:00:00Z", 60), utc);
        assert_eq!(parse_time("01/06/2025", 0), None);
    }
}
