//! [`SqlStore`]: the [`Store`] and the [`PosInbox`] on SQLite or PostgreSQL, with diesel.
//!
//! # Choosing the database
//!
//! [`SqlStore::open`] takes the `database_url` setting: a plain path or `sqlite://PATH` opens
//! (or creates) one SQLite file, the default for a single edge replica; `postgres://...` (or
//! `postgresql://...`) connects to PostgreSQL, for several replicas sharing one database. The
//! schema is migrated when the store opens (`migrations/sqlite/`, `migrations/postgres/`,
//! embedded in the binary; on PostgreSQL under an advisory lock, so replicas starting
//! together do not race).
//!
//! # Connections
//!
//! - **SQLite**: one connection behind a mutex. SQLite has one writer at a time anyway, and each
//!   call is one short transaction, so a pool would only add `SQLITE_BUSY` waits. The file is
//!   in WAL mode (readers in other processes are not blocked), `synchronous = FULL` (a
//!   committed record survives a power cut), `foreign_keys = ON`, and a 10 s busy timeout for
//!   the rare second process (writes start `BEGIN IMMEDIATE`, so they queue instead of
//!   failing half way).
//! - **PostgreSQL**: an r2d2 pool (up to 8 connections, one kept open), so the HTTP API reads
//!   while the runner writes.
//!
//! # One implementation, two backends
//!
//! diesel types every query by backend, and `MultiConnection` does not offer `ON CONFLICT`,
//! which the idempotent inserts need. So the queries live once, in `sql/ops.rs`, and are
//! compiled twice: as `on_sqlite::ops` over `SqliteConnection` and as `on_postgres::ops` over
//! `PgConnection` (each wrapper module names its `Conn` and its migrations). [`with_conn!`]
//! runs a call in a transaction on whichever backend the store has.
//!
//! # Duplicates under concurrency
//!
//! Inbound records are unique by (kind, origin, external id), POS batches by batch id and
//! commands by idempotency key. Inserts are `INSERT ... ON CONFLICT DO NOTHING RETURNING id`
//! followed, when nothing was inserted, by a select of the row that won: two replicas storing
//! the same webhook at once get the same id, and exactly one of them is told it is new.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sqlite::SqliteConnection;
use serde_json::Value;
use tillbridge_core::mapping::MappingIndex;
use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{Command, ExceptionEntry, Journal, Reason, RecordState};

use super::pos_records::batch_records;
use super::schema::{commands, cursors, pos_batches, record_events, records, snapshots};
use super::{
    Counts, DEFAULT_LIMIT, ExceptionRow, LifeEvent, MAX_LIMIT, NewRecord, OutboxRow, Page,
    RecordFilter, RecordId, RecordKind, RecordRow, Store, StoreError,
};
use crate::pos::{
    BatchId, BoxFuture, ConnectorId, Feed, InboxError, PosBatch, PosCursor, PosInbox, StoreOutcome,
    StoredBatch,
};

mod on_postgres;
mod on_sqlite;

/// PostgreSQL advisory lock key held while migrating ("tillbrdg" in ASCII).
const MIGRATION_LOCK: i64 = 0x7469_6c6c_6272_6467;
/// Snapshots kept (the newest is the one used; two older ones help a post-mortem).
const SNAPSHOTS_KEPT: i64 = 3;
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
const PG_POOL_SIZE: u32 = 8;

/// Runs `$body` in one transaction on the store's backend, with `$ops` naming that backend's
/// query module and `$c` its connection. `write` on SQLite begins `IMMEDIATE` (takes the write
/// lock up front); `read` begins deferred.
macro_rules! with_conn {
    ($store:expr, $mode:ident, |$c:ident, $ops:ident| $body:expr) => {
        match &$store.inner.backend {
            Backend::Sqlite(conn) => {
                use on_sqlite::ops as $ops;
                let mut guard = conn.lock().map_err(|_| poisoned())?;
                let sqlite: &mut SqliteConnection = &mut guard;
                with_conn!(@sqlite $mode, sqlite, |$c| $body)
            }
            Backend::Postgres(pool) => {
                use on_postgres::ops as $ops;
                let mut pooled = pool.get().map_err(pool_error)?;
                let pg: &mut PgConnection = &mut pooled;
                pg.transaction(|$c| $body)
            }
        }
    };
    (@sqlite write, $conn:ident, |$c:ident| $body:expr) => {
        $conn.immediate_transaction(|$c| $body)
    };
    (@sqlite read, $conn:ident, |$c:ident| $body:expr) => {
        $conn.transaction(|$c| $body)
    };
}

enum Backend {
    Sqlite(Mutex<SqliteConnection>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

struct Inner {
    backend: Backend,
    /// The file path, or the PostgreSQL URL without its password (for messages and logs).
    location: String,
    mapping: RwLock<Option<Arc<MappingIndex>>>,
    known: Mutex<KnownRecords>,
}

/// Records this store has seen stored, by (kind, origin, external id) → id. A feed that reads
/// again what it read before (Square's stock and sales walks re-read the last five minutes on
/// every poll, a webhook is delivered twice) is answered from memory, not with a write
/// transaction per record. A stored record never changes its id, so a remembered answer stays
/// true, on SQLite and with several replicas on PostgreSQL alike. Two generations of at most
/// [`KNOWN_RECORDS`] keys bound the memory; a key that fell out is answered by the database.
#[derive(Debug, Default)]
struct KnownRecords {
    current: std::collections::HashMap<String, i64>,
    previous: std::collections::HashMap<String, i64>,
}

/// Keys per generation of [`KnownRecords`].
const KNOWN_RECORDS: usize = 100_000;

impl KnownRecords {
    fn key(r: &NewRecord) -> Option<String> {
        r.external_id
            .as_deref()
            .map(|e| format!("{}\u{1f}{}\u{1f}{e}", r.kind.as_str(), r.origin))
    }

    fn get(&self, key: &str) -> Option<i64> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .copied()
    }

    fn put(&mut self, key: String, id: i64) {
        if self.current.len() >= KNOWN_RECORDS {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, id);
    }
}

/// The SQL store. Cheap to clone (one shared connection or pool).
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(redact(url)));
    }
    Ok(Target::Sqlite(PathBuf::from(path)))
}

/// The database setting as it may be printed: a file path as it is, a URL without its password.
pub fn describe_url(url: &str) -> String {
    redact(url)
}

/// A URL without the password between `:` and `@` of its authority.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

impl SqlStore {
    /// Open the store named by `url` (see the module documentation) and migrate its schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        match parse_url(url)? {
            Target::Sqlite(path) => Self::open_sqlite(&path),
            Target::Postgres(url) => Self::open_postgres(&url),
        }
    }

    fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let text = path
            .to_str()
            .ok_or_else(|| StoreError::BadUrl(format!("{location} (not UTF-8)")))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", parent.display())))?;
        }
        let mut conn = SqliteConnection::establish(text)
            .map_err(|e| StoreError::Database(format!("opening {location}: {e}")))?;
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;"
        ))
        .map_err(|e| StoreError::Database(format!("configuring {location}: {e}")))?;
        on_sqlite::ops::migrate(&mut conn)?;
        Ok(Self::new(Backend::Sqlite(Mutex::new(conn)), location))
    }

    fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let location = redact(url);
        let pool = Pool::builder()
            .max_size(PG_POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(ConnectionManager::<PgConnection>::new(url))
            .map_err(|e| StoreError::Database(format!("connecting to {location}: {e}")))?;
        {
            let mut pooled = pool.get().map_err(pool_error)?;
            let conn: &mut PgConnection = &mut pooled;
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let migrated = on_postgres::ops::migrate(conn);
            let unlocked =
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            migrated?;
            unlocked?;
        }
        Ok(Self::new(Backend::Postgres(pool), location))
    }

    fn new(backend: Backend, location: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                location,
                mapping: RwLock::new(None),
                known: Mutex::new(KnownRecords::default()),
            }),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The SQLite file, or the PostgreSQL URL with its password masked.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The POS ↔ Commerce mapping the inbox uses to turn POS records into engine inputs
    /// (see `pos_records`). Without one, POS records are stored as received and settled as
    /// "not synced". Applies to batches stored from now on.
    pub fn set_mapping(&self, mapping: Option<MappingIndex>) {
        let mut slot = match self.inner.mapping.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = mapping.map(Arc::new);
    }

    fn mapping(&self) -> Option<Arc<MappingIndex>> {
        match self.inner.mapping.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Raw POS batches after inbox sequence number `after` (0: from the first), oldest first.
    pub fn batches(&self, after: u64, limit: u32) -> Result<Vec<StoredBatch>, StoreError> {
        let after = to_i64(after, "batch sequence")?;
        let limit = page_limit(limit);
        with_conn!(self, read, |c, ops| ops::batches(c, after, limit))
    }

    /// The PosInbox's store step, synchronously.
    pub fn store_batch_now(&self, batch: &PosBatch) -> Result<StoreOutcome, InboxError> {
        if !batch.id_matches_content() {
            return Err(InboxError::IdMismatch {
                batch: batch.id.clone(),
            });
        }
        let now = wall_clock();
        let mapping = self.mapping();
        let recs = batch_records(batch, mapping.as_deref(), now);
        let body = serde_json::to_string(batch).map_err(|e| InboxError::Internal {
            message: format!("encoding batch {}: {e}", batch.id),
        })?;
        let run = || -> Result<StoreOutcome, StoreError> {
            with_conn!(self, write, |c, ops| ops::store_batch(
                c, batch, &body, &recs, now
            ))
        };
        run().map_err(|e| self.inbox_error(e))
    }

    /// The PosInbox's commit step, synchronously.
    pub fn commit_cursor_now(
        &self,
        connector: &ConnectorId,
        feed: Feed,
        cursor: &PosCursor,
        after: &BatchId,
    ) -> Result<(), InboxError> {
        let key = inbox_cursor_key(connector, feed);
        let now = wall_clock();
        let run = || -> Result<bool, StoreError> {
            with_conn!(self, write, |c, ops| ops::commit_inbox_cursor(
                c,
                &key,
                cursor.as_str(),
                after.as_str(),
                now
            ))
        };
        match run() {
            Ok(true) => Ok(()),
            Ok(false) => Err(InboxError::BatchNotStored {
                batch: after.clone(),
            }),
            Err(e) => Err(self.inbox_error(e)),
        }
    }

    /// The PosInbox's committed cursor, synchronously.
    pub fn load_cursor_now(
        &self,
        connector: &ConnectorId,
        feed: Feed,
    ) -> Result<Option<PosCursor>, InboxError> {
        self.cursor(&inbox_cursor_key(connector, feed))
            .map(|c| c.map(PosCursor::from_opaque))
            .map_err(|e| self.inbox_error(e))
    }

    /// Database trouble is worth retrying (`Io`, named by the database's location); anything
    /// else needs a person.
    fn inbox_error(&self, e: StoreError) -> InboxError {
        match e {
            StoreError::Database(message) => InboxError::Io {
                path: PathBuf::from(&self.inner.location),
                message,
            },
            other => InboxError::Internal {
                message: other.to_string(),
            },
        }
    }
}

/// The cursors-table key of a POS feed (the Store's own feeds never contain `:`... but the
/// prefix keeps them apart regardless).
fn inbox_cursor_key(connector: &ConnectorId, feed: Feed) -> String {
    format!("pos:{connector}:{feed}")
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_millis(ms)
}

impl Store for SqlStore {
    fn insert_record(&self, record: &NewRecord) -> Result<(RecordId, bool), StoreError> {
        let key = KnownRecords::key(record);
        if let Some(k) = &key
            && let Some(id) = self.inner.known.lock().map_err(|_| poisoned())?.get(k)
        {
            return Ok((RecordId(id), false));
        }
        let (id, new) = with_conn!(self, write, |c, ops| ops::insert_record(c, record, None))?;
        if let Some(k) = key {
            self.inner
                .known
                .lock()
                .map_err(|_| poisoned())?
                .put(k, id.0);
        }
        Ok((id, new))
    }

    fn apply_journal(&self, entries: &[Journal], now: Timestamp) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        with_conn!(self, write, |c, ops| ops::apply_journal(c, entries, now))
    }

    fn put_command(&self, command: &Command, now: Timestamp) -> Result<(), StoreError> {
        with_conn!(self, write, |c, ops| ops::put_command(c, command, now))
    }

    fn record(&self, id: RecordId) -> Result<Option<RecordRow>, StoreError> {
        with_conn!(self, read, |c, ops| ops::record(c, id.0))
    }

    fn record_history(&self, id: RecordId) -> Result<Vec<LifeEvent>, StoreError> {
        with_conn!(self, read, |c, ops| ops::record_history(c, id.0))
    }

    fn records(&self, filter: &RecordFilter) -> Result<Page<RecordRow>, StoreError> {
        with_conn!(self, read, |c, ops| ops::records(c, filter))
    }

    fn records_after(&self, after: RecordId, limit: u32) -> Result<Vec<RecordRow>, StoreError> {
        let limit = page_limit(limit);
        with_conn!(self, read, |c, ops| ops::records_after(c, after.0, limit))
    }

    fn command(&self, id: u64) -> Result<Option<OutboxRow>, StoreError> {
        let id = to_i64(id, "command id")?;
        with_conn!(self, read, |c, ops| ops::command(c, id))
    }

    fn command_history(&self, id: u64) -> Result<Vec<LifeEvent>, StoreError> {
        let id = to_i64(id, "command id")?;
        with_conn!(self, read, |c, ops| ops::command_history(c, id))
    }

    fn commands(
        &self,
        state: Option<RecordState>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<OutboxRow>, StoreError> {
        let (limit, offset) = (page_limit(limit), i64::from(offset));
        with_conn!(self, read, |c, ops| ops::commands(c, state, limit, offset))
    }

    fn exceptions(
        &self,
        open_only: bool,
        limit: u32,
        offset: u32,
    ) -> Result<Page<ExceptionRow>, StoreError> {
        let (limit, offset) = (page_limit(limit), i64::from(offset));
        with_conn!(self, read, |c, ops| ops::exceptions(
            c, open_only, limit, offset
        ))
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let (now, until) = (now.as_millis(), now.as_millis().saturating_add(ttl_ms));
        with_conn!(self, write, |c, ops| ops::acquire_lease(
            c, name, holder, now, until
        ))
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        with_conn!(self, write, |c, ops| ops::release_lease(c, name, holder))
    }

    fn latencies(&self, since: Timestamp) -> Result<Vec<i64>, StoreError> {
        with_conn!(self, read, |c, ops| ops::latencies(c, since.as_millis()))
    }

    fn cursor(&self, feed: &str) -> Result<Option<String>, StoreError> {
        with_conn!(self, read, |c, ops| ops::cursor(c, feed))
    }

    fn save_cursor(&self, feed: &str, cursor: &str, now: Timestamp) -> Result<(), StoreError> {
        with_conn!(self, write, |c, ops| ops::save_cursor(
            c,
            feed,
            cursor,
            None,
            now.as_millis()
        ))
    }

    fn snapshot(&self) -> Result<Option<(String, RecordId)>, StoreError> {
        with_conn!(self, read, |c, ops| ops::snapshot(c))
    }

    fn save_snapshot(
        &self,
        engine_json: &str,
        last_record: RecordId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        with_conn!(self, write, |c, ops| ops::save_snapshot(
            c,
            engine_json,
            last_record.0,
            now.as_millis(),
            SNAPSHOTS_KEPT
        ))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        with_conn!(self, read, |c, ops| ops::counts(c))
    }
}

fn join_error(e: tokio::task::JoinError) -> InboxError {
    InboxError::Internal {
        message: format!("inbox worker failed: {e}"),
    }
}

impl PosInbox for SqlStore {
    fn store_batch<'a>(
        &'a self,
        batch: &'a PosBatch,
    ) -> BoxFuture<'a, Result<StoreOutcome, InboxError>> {
        let store = self.clone();
        let batch = batch.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.store_batch_now(&batch))
                .await
                .map_err(join_error)?
        })
    }

    fn commit_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
        cursor: &'a PosCursor,
        after: &'a BatchId,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        let store = self.clone();
        let (connector, cursor, after) = (connector.clone(), cursor.clone(), after.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                store.commit_cursor_now(&connector, feed, &cursor, &after)
            })
            .await
            .map_err(join_error)?
        })
    }

    fn load_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
    ) -> BoxFuture<'a, Result<Option<PosCursor>, InboxError>> {
        let store = self.clone();
        let connector = connector.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.load_cursor_now(&connector, feed))
                .await
                .map_err(join_error)?
        })
    }
}

// ---------------------------------------------------------------------------------------------
// shared by both query modules: errors, rows, conversions

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

fn poisoned() -> StoreError {
    StoreError::Database("the SQLite connection lock was poisoned by an earlier panic".into())
}

fn pool_error(e: diesel::r2d2::PoolError) -> StoreError {
    StoreError::Database(format!("no PostgreSQL connection: {e}"))
}

fn migration_error(e: &(dyn std::error::Error + Send + Sync)) -> StoreError {
    StoreError::Migration(e.to_string())
}

fn page_limit(limit: u32) -> i64 {
    i64::from(match limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    })
}

/// A `LIKE` pattern for "contains `text`", ASCII-lowercased, with `%`, `_` and `\\` escaped
/// by `\\` (the queries say `ESCAPE '\\'`).
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for ch in text.to_ascii_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt {
        what: what.to_owned(),
        why: format!("{n} does not fit a signed 64-bit column"),
    })
}

fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        what: what.to_owned(),
        why: format!("{n} is negative"),
    })
}

fn state_str(state: RecordState) -> &'static str {
    match state {
        RecordState::Received => "received",
        RecordState::Planned => "planned",
        RecordState::Sent => "sent",
        RecordState::Confirmed => "confirmed",
        RecordState::Verified => "verified",
        RecordState::Superseded => "superseded",
        RecordState::Settled => "settled",
        RecordState::Failed => "failed",
        RecordState::Stalled => "stalled",
    }
}

fn parse_state(text: &str) -> Result<RecordState, StoreError> {
    Ok(match text {
        "received" => RecordState::Received,
        "planned" => RecordState::Planned,
        "sent" => RecordState::Sent,
        "confirmed" => RecordState::Confirmed,
        "verified" => RecordState::Verified,
        "superseded" => RecordState::Superseded,
        "settled" => RecordState::Settled,
        "failed" => RecordState::Failed,
        "stalled" => RecordState::Stalled,
        other => {
            return Err(StoreError::Corrupt {
                what: "state".into(),
                why: format!("unknown state {other:?}"),
            });
        }
    })
}

fn parse_kind(text: &str) -> Result<RecordKind, StoreError> {
    RecordKind::parse(text).ok_or_else(|| StoreError::Corrupt {
        what: "record kind".into(),
        why: format!("unknown kind {text:?}"),
    })
}

fn reason_str(reason: Reason) -> Result<String, StoreError> {
    match serde_json::to_value(reason) {
        Ok(Value::String(s)) => Ok(s),
        other => Err(StoreError::Corrupt {
            what: "exception reason".into(),
            why: format!("{reason:?} serialised as {other:?}"),
        }),
    }
}

fn parse_reason(text: &str) -> Result<Reason, StoreError> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|e| StoreError::Corrupt {
        what: "exception reason".into(),
        why: format!("{text:?}: {e}"),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: String) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        why: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        why: e.to_string(),
    })
}

/// A `records` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = records)]
struct RecordSql {
    id: i64,
    kind: String,
    origin: String,
    external_id: Option<String>,
    payload: String,
    received_at: i64,
    state: String,
    detail: String,
    updated_at: i64,
}

impl RecordSql {
    fn into_row(self, exception: Option<(i64, String)>) -> Result<RecordRow, StoreError> {
        let (exception, reason) = match exception {
            Some((id, reason)) => (
                Some(to_u64(id, "exception id")?),
                Some(parse_reason(&reason)?),
            ),
            None => (None, None),
        };
        Ok(RecordRow {
            id: RecordId(self.id),
            kind: parse_kind(&self.kind)?,
            origin: self.origin,
            external_id: self.external_id,
            payload: parse_json(&self.payload, format!("record {} payload", self.id))?,
            received_at: Timestamp::from_millis(self.received_at),
            state: parse_state(&self.state)?,
            detail: self.detail,
            updated_at: Timestamp::from_millis(self.updated_at),
            exception,
            reason,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = records)]
struct RecordInsert<'a> {
    kind: &'a str,
    origin: &'a str,
    external_id: Option<&'a str>,
    payload: &'a str,
    received_at: i64,
    state: &'a str,
    detail: &'a str,
    updated_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = record_events)]
struct RecordEventInsert<'a> {
    record_id: i64,
    state: &'a str,
    detail: &'a str,
    at: i64,
}

/// A `commands` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = commands)]
struct CommandSql {
    command_id: i64,
    idempotency_key: String,
    kind: String,
    payload: String,
    state: String,
    attempts: i32,
    detail: String,
    created_at: i64,
    updated_at: i64,
}

impl CommandSql {
    fn into_row(self) -> Result<OutboxRow, StoreError> {
        Ok(OutboxRow {
            command_id: to_u64(self.command_id, "command id")?,
            payload: parse_json(
                &self.payload,
                format!("command {} payload", self.command_id),
            )?,
            idempotency_key: self.idempotency_key,
            kind: self.kind,
            state: parse_state(&self.state)?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            detail: self.detail,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = commands)]
struct CommandInsert<'a> {
    command_id: i64,
    idempotency_key: &'a str,
    kind: &'a str,
    payload: &'a str,
    state: &'a str,
    attempts: i32,
    detail: &'a str,
    created_at: i64,
    updated_at: i64,
}

/// An `exceptions` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = super::schema::exceptions)]
struct ExceptionSql {
    id: i64,
    subject: String,
    reason: String,
    message: String,
    raised_at: i64,
    records: String,
    resolved_at: Option<i64>,
    resolution: Option<String>,
}

impl ExceptionSql {
    fn into_row(self) -> Result<ExceptionRow, StoreError> {
        Ok(ExceptionRow {
            entry: ExceptionEntry {
                id: to_u64(self.id, "exception id")?,
                subject: self.subject,
                reason: parse_reason(&self.reason)?,
                message: self.message,
                raised_at: Timestamp::from_millis(self.raised_at),
                records: parse_json(&self.records, format!("exception {} records", self.id))?,
            },
            resolved_at: self.resolved_at.map(Timestamp::from_millis),
            resolution: self.resolution,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = cursors)]
struct CursorInsert<'a> {
    feed: &'a str,
    cursor: &'a str,
    after_batch: Option<&'a str>,
    updated_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = snapshots)]
struct SnapshotInsert<'a> {
    engine: &'a str,
    last_record: i64,
    taken_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = pos_batches)]
struct BatchInsert<'a> {
    batch_id: &'a str,
    connector: &'a str,
    feed: &'a str,
    source: Option<&'a str>,
    body: &'a str,
    records: i32,
    record_errors: i32,
    stored_at: i64,
}

fn life_event(state: &str, detail: String, at: i64) -> Result<LifeEvent, StoreError> {
    Ok(LifeEvent {
        state: parse_state(state)?,
        detail,
        at: Timestamp::from_millis(at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(
            parse_url("data/tillbridge.db").ok(),
            Some(Target::Sqlite("data/tillbridge.db".into()))
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/t.db").ok(),
            Some(Target::Sqlite("/var/lib/t.db".into()))
        );
        assert_eq!(
            parse_url("sqlite://t.db").ok(),
            Some(Target::Sqlite("t.db".into()))
        );
        assert_eq!(
            parse_url("postgres://u@h/db").ok(),
            Some(Target::Postgres("postgres://u@h/db".into()))
        );
        assert!(matches!(
            parse_url("postgresql://h/db"),
            Ok(Target::Postgres(_))
        ));
        assert!(matches!(parse_url(""), Err(StoreError::BadUrl(_))));
        assert!(matches!(parse_url("sqlite://"), Err(StoreError::BadUrl(_))));
        match parse_url("mysql://root:hunter2@db/x") {
            Err(StoreError::BadUrl(shown)) => {
                assert_eq!(shown, "mysql://root:***@db/x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_record_read_again_is_answered_from_memory_even_while_another_writer_holds_the_lock() {
        let dir = std::env::temp_dir().join(format!("tillbridge-known-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.db");
        let url = path.to_str().unwrap().to_owned();
        let rec = |ext: &str| NewRecord {
            kind: super::super::RecordKind::PosStock,
            origin: "square".into(),
            external_id: Some(ext.into()),
            payload: serde_json::json!({"on_hand": "3"}),
            received_at: Timestamp::from_millis(1),
        };
        let store = SqlStore::open(&url).unwrap();
        let (id, new) = store.insert_record(&rec("stock:L1:V1:1")).unwrap();
        assert!(new);
        // Another process (a backup, `tillbridge audit`) holds the write lock: the overlap
        // re-read of a figure already stored needs no write and does not wait for it.
        let mut other = SqliteConnection::establish(&url).unwrap();
        other
            .batch_execute("PRAGMA busy_timeout = 0; BEGIN IMMEDIATE;")
            .unwrap();
        assert_eq!(
            store.insert_record(&rec("stock:L1:V1:1")).unwrap(),
            (id, false)
        );
        other.batch_execute("COMMIT").unwrap();
        let (id2, new2) = store.insert_record(&rec("stock:L1:V1:2")).unwrap();
        assert!(new2 && id2 != id);
        // A fresh process knows nothing in memory: the database answers, with the same id.
        drop(store);
        let store = SqlStore::open(&url).unwrap();
        assert_eq!(
            store.insert_record(&rec("stock:L1:V1:1")).unwrap(),
            (id, false)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn known_records_keep_two_generations() {
        let mut k = KnownRecords::default();
        for i in 0..KNOWN_RECORDS {
            k.put(format!("a{i}"), i64::try_from(i).unwrap_or(0));
        }
        k.put("b".into(), -1);
        assert_eq!(
            k.get("a0"),
            Some(0),
            "the previous generation still answers"
        );
        assert_eq!(k.get("b"), Some(-1));
        assert_eq!(k.current.len(), 1);
        for i in 0..KNOWN_RECORDS {
            k.put(format!("c{i}"), 0);
        }
        assert_eq!(k.get("a0"), None, "two generations back is forgotten");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://tb:s3cret@db.example:5432/tb"),
            "postgres://tb:***@db.example:5432/tb"
        );
        assert_eq!(redact("postgres://tb@db/tb"), "postgres://tb@db/tb");
        assert_eq!(redact("postgres://db/tb?x=a@b"), "postgres://db/tb?x=a@b");
    }

    #[test]
    fn states_round_trip_as_their_serde_names() {
        for s in [
            RecordState::Received,
            RecordState::Planned,
            RecordState::Sent,
            RecordState::Confirmed,
            RecordState::Verified,
            RecordState::Superseded,
            RecordState::Settled,
            RecordState::Failed,
            RecordState::Stalled,
        ] {
            assert_eq!(parse_state(state_str(s)).ok(), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(Value::String(state_str(s).into()))
            );
        }
    }
}
