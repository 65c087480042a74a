//! The store's queries, written once and compiled twice: this file is the module
//! `on_sqlite::ops` (where `Conn` is `SqliteConnection`) and `on_postgres::ops` (where it is
//! `PgConnection`); see `sql.rs`. Every function runs inside the caller's transaction.

use std::collections::HashMap;

use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use diesel_migrations::MigrationHarness;
use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{Command, Journal, RecordState};

use super::{Conn, MIGRATIONS};
use crate::pos::{PosBatch, StoreOutcome, StoredBatch};
use crate::store::pos_records::PosRecord;
use crate::store::schema::{
    command_events, commands, cursors, exception_records, exceptions, latencies, leases,
    pos_batches, record_events, records, snapshots,
};
use crate::store::sql::{
    BatchInsert, CommandInsert, CommandSql, CursorInsert, ExceptionSql, RecordEventInsert,
    RecordInsert, RecordSql, SnapshotInsert, life_event, like_pattern, migration_error, page_limit,
    parse_json, parse_kind, parse_reason, parse_state, reason_str, state_str, to_i64, to_json,
    to_u64,
};
use crate::store::{
    Counts, ExceptionRow, LifeEvent, NewRecord, OutboxRow, Page, RecordFilter, RecordId, RecordRow,
    StoreError,
};

type Db = <Conn as Connection>::Backend;

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL `lower()` (ASCII on SQLite, Unicode on PostgreSQL).
    fn lower(x: Nullable<Text>) -> Nullable<Text>;
}

pub(crate) fn migrate(c: &mut Conn) -> Result<(), StoreError> {
    c.run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| migration_error(&*e))
}

// ---------------------------------------------------------------------------------------------
// records

/// Insert `r` unless a record with its (kind, origin, external id) exists. `settled`: settle it
/// at once with this sentence (a POS record the mapping does not cover).
pub(crate) fn insert_record(
    c: &mut Conn,
    r: &NewRecord,
    settled: Option<&str>,
) -> Result<(RecordId, bool), StoreError> {
    let payload = to_json(&r.payload, "record payload")?;
    let at = r.received_at.as_millis();
    let detail = format!("received from {}", r.origin);
    let inserted: Option<i64> = diesel::insert_into(records::table)
        .values(&RecordInsert {
            kind: r.kind.as_str(),
            origin: &r.origin,
            external_id: r.external_id.as_deref(),
            payload: &payload,
            received_at: at,
            state: state_str(RecordState::Received),
            detail: &detail,
            updated_at: at,
        })
        .on_conflict_do_nothing()
        .returning(records::id)
        .get_result(c)
        .optional()?;
    let Some(id) = inserted else {
        let Some(external_id) = r.external_id.as_deref() else {
            return Err(StoreError::Database(
                "a record without an external id was not inserted".into(),
            ));
        };
        let id: i64 = records::table
            .filter(records::kind.eq(r.kind.as_str()))
            .filter(records::origin.eq(&r.origin))
            .filter(records::external_id.eq(external_id))
            .select(records::id)
            .first(c)?;
        return Ok((RecordId(id), false));
    };
    add_record_event(c, id, RecordState::Received, &detail, at)?;
    if let Some(sentence) = settled {
        set_record_state(c, id, RecordState::Settled, sentence, at)?;
    }
    Ok((RecordId(id), true))
}

fn add_record_event(
    c: &mut Conn,
    id: i64,
    state: RecordState,
    detail: &str,
    at: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(record_events::table)
        .values(&RecordEventInsert {
            record_id: id,
            state: state_str(state),
            detail,
            at,
        })
        .execute(c)?;
    Ok(())
}

/// Move a record; false when there is no such record.
fn set_record_state(
    c: &mut Conn,
    id: i64,
    state: RecordState,
    detail: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(records::table.find(id))
        .set((
            records::state.eq(state_str(state)),
            records::detail.eq(detail),
            records::updated_at.eq(at),
        ))
        .execute(c)?;
    if n == 0 {
        return Ok(false);
    }
    add_record_event(c, id, state, detail, at)?;
    Ok(true)
}

/// The newest open exception naming each of `ids`: record id → (exception id, reason).
fn open_exceptions_for(
    c: &mut Conn,
    ids: &[i64],
) -> Result<HashMap<i64, (i64, String)>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64, String)> = exception_records::table
        .inner_join(exceptions::table)
        .filter(exception_records::record_id.eq_any(ids))
        .filter(exceptions::resolved_at.is_null())
        .select((
            exception_records::record_id,
            exceptions::id,
            exceptions::reason,
        ))
        .order(exceptions::id.asc())
        .load(c)?;
    // Ascending: a newer exception overwrites an older one.
    Ok(rows
        .into_iter()
        .map(|(record, id, reason)| (record, (id, reason)))
        .collect())
}

fn into_rows(c: &mut Conn, rows: Vec<RecordSql>) -> Result<Vec<RecordRow>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut open = open_exceptions_for(c, &ids)?;
    rows.into_iter()
        .map(|r| {
            let ex = open.remove(&r.id);
            r.into_row(ex)
        })
        .collect()
}

pub(crate) fn record(c: &mut Conn, id: i64) -> Result<Option<RecordRow>, StoreError> {
    let row: Option<RecordSql> = records::table
        .find(id)
        .select(RecordSql::as_select())
        .first(c)
        .optional()?;
    match row {
        None => Ok(None),
        Some(row) => Ok(into_rows(c, vec![row])?.pop()),
    }
}

pub(crate) fn record_history(c: &mut Conn, id: i64) -> Result<Vec<LifeEvent>, StoreError> {
    let rows: Vec<(String, String, i64)> = record_events::table
        .filter(record_events::record_id.eq(id))
        .order(record_events::id.asc())
        .select((
            record_events::state,
            record_events::detail,
            record_events::at,
        ))
        .load(c)?;
    rows.into_iter()
        .map(|(state, detail, at)| life_event(&state, detail, at))
        .collect()
}

pub(crate) fn records(c: &mut Conn, filter: &RecordFilter) -> Result<Page<RecordRow>, StoreError> {
    let kind = filter.kind.map(|k| k.as_str());
    let state = filter.state.map(state_str);
    let pattern = filter
        .contains
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(like_pattern);
    let query = || {
        let mut q = records::table.into_boxed::<Db>();
        if let Some(kind) = kind {
            q = q.filter(records::kind.eq(kind));
        }
        if let Some(state) = state {
            q = q.filter(records::state.eq(state));
        }
        if let Some(p) = &pattern {
            q = q.filter(
                lower(records::payload.nullable())
                    .like(p.clone())
                    .escape('\\')
                    .or(lower(records::detail.nullable())
                        .like(p.clone())
                        .escape('\\'))
                    .or(lower(records::external_id).like(p.clone()).escape('\\')),
            );
        }
        q
    };
    let total: i64 = query().count().get_result(c)?;
    let rows: Vec<RecordSql> = query()
        .order(records::id.desc())
        .limit(page_limit(filter.limit))
        .offset(i64::from(filter.offset))
        .select(RecordSql::as_select())
        .load(c)?;
    Ok(Page {
        items: into_rows(c, rows)?,
        total: to_u64(total, "record count")?,
    })
}

pub(crate) fn records_after(
    c: &mut Conn,
    after: i64,
    limit: i64,
) -> Result<Vec<RecordRow>, StoreError> {
    let rows: Vec<RecordSql> = records::table
        .filter(records::id.gt(after))
        .order(records::id.asc())
        .limit(limit)
        .select(RecordSql::as_select())
        .load(c)?;
    into_rows(c, rows)
}

// ---------------------------------------------------------------------------------------------
// the journal

pub(crate) fn apply_journal(
    c: &mut Conn,
    entries: &[Journal],
    now: Timestamp,
) -> Result<(), StoreError> {
    let at = now.as_millis();
    for entry in entries {
        match entry {
            Journal::Record {
                record,
                state,
                detail,
            } => {
                // Only stored records reach the engine, so an id that does not parse or is
                // not here is not ours to track.
                if let Ok(id) = record.parse::<i64>() {
                    set_record_state(c, id, *state, detail, at)?;
                }
            }
            Journal::Command {
                command,
                state,
                detail,
            } => journal_command(c, to_i64(*command, "command id")?, *state, detail, at)?,
            Journal::Raised(e) => {
                let id = to_i64(e.id, "exception id")?;
                let inserted = diesel::insert_into(exceptions::table)
                    .values((
                        exceptions::id.eq(id),
                        exceptions::subject.eq(&e.subject),
                        exceptions::reason.eq(reason_str(e.reason)?),
                        exceptions::message.eq(&e.message),
                        exceptions::raised_at.eq(e.raised_at.as_millis()),
                        exceptions::records.eq(to_json(&e.records, "exception records")?),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)?;
                if inserted == 1 {
                    for record in e.records.iter().filter_map(|r| r.parse::<i64>().ok()) {
                        diesel::insert_into(exception_records::table)
                            .values((
                                exception_records::exception_id.eq(id),
                                exception_records::record_id.eq(record),
                            ))
                            .on_conflict_do_nothing()
                            .execute(c)?;
                    }
                }
            }
            Journal::Resolved { id, at, note } => {
                diesel::update(
                    exceptions::table
                        .find(to_i64(*id, "exception id")?)
                        .filter(exceptions::resolved_at.is_null()),
                )
                .set((
                    exceptions::resolved_at.eq(at.as_millis()),
                    exceptions::resolution.eq(note),
                ))
                .execute(c)?;
            }
            Journal::Latency { key, ms } => {
                diesel::insert_into(latencies::table)
                    .values((
                        latencies::stock_key.eq(key.to_string()),
                        latencies::ms.eq(ms),
                        latencies::at.eq(at),
                    ))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// A command's state from the journal: always in its history; on its row unless it is a
/// `planned` that arrives after the command was stored (sent) or went further.
fn journal_command(
    c: &mut Conn,
    id: i64,
    state: RecordState,
    detail: &str,
    at: i64,
) -> Result<(), StoreError> {
    let row: Option<(String, i32)> = commands::table
        .find(id)
        .select((commands::state, commands::attempts))
        .first(c)
        .optional()?;
    let attempt = row.as_ref().map_or(0, |r| r.1);
    diesel::insert_into(command_events::table)
        .values((
            command_events::command_id.eq(id),
            command_events::attempt.eq(attempt),
            command_events::state.eq(state_str(state)),
            command_events::detail.eq(detail),
            command_events::at.eq(at),
        ))
        .execute(c)?;
    if let Some((current, _)) = row {
        let current = parse_state(&current)?;
        let regress = state == RecordState::Planned
            && !matches!(current, RecordState::Received | RecordState::Planned);
        if !regress {
            diesel::update(commands::table.find(id))
                .set((
                    commands::state.eq(state_str(state)),
                    commands::detail.eq(detail),
                    commands::updated_at.eq(at),
                ))
                .execute(c)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the outbox

pub(crate) fn put_command(c: &mut Conn, cmd: &Command, now: Timestamp) -> Result<(), StoreError> {
    let id = to_i64(cmd.id, "command id")?;
    let attempt = i32::try_from(cmd.attempt).unwrap_or(i32::MAX);
    let at = now.as_millis();
    let payload = to_json(cmd, "command")?;
    let sent = format!("attempt {} sent", cmd.attempt);
    // Twice at most: a concurrent insert of the same id makes the second pass an update.
    for _ in 0..2 {
        let stored: Option<(String, i32)> = commands::table
            .find(id)
            .select((commands::idempotency_key, commands::attempts))
            .first(c)
            .optional()?;
        if let Some((key, attempts)) = stored {
            if key != cmd.idempotency_key {
                return Err(StoreError::CommandIdTaken {
                    command: cmd.id,
                    key: cmd.idempotency_key.clone(),
                    stored_key: key,
                });
            }
            if attempt > attempts {
                diesel::update(commands::table.find(id))
                    .set((
                        commands::attempts.eq(attempt),
                        commands::payload.eq(&payload),
                        commands::state.eq(state_str(RecordState::Sent)),
                        commands::detail.eq(&sent),
                        commands::updated_at.eq(at),
                    ))
                    .execute(c)?;
                add_command_event(c, id, attempt, RecordState::Sent, &sent, at)?;
            }
            return Ok(());
        }
        // Journalled before it was stored: start from that state unless it was only a plan.
        let earlier: Option<(String, String)> = command_events::table
            .filter(command_events::command_id.eq(id))
            .order(command_events::id.desc())
            .select((command_events::state, command_events::detail))
            .first(c)
            .optional()?;
        let (state, detail) = match earlier {
            Some((state, detail))
                if !matches!(
                    parse_state(&state)?,
                    RecordState::Received | RecordState::Planned
                ) =>
            {
                (state, detail)
            }
            _ => (state_str(RecordState::Sent).to_owned(), sent.clone()),
        };
        let inserted = diesel::insert_into(commands::table)
            .values(&CommandInsert {
                command_id: id,
                idempotency_key: &cmd.idempotency_key,
                kind: cmd.kind.name(),
                payload: &payload,
                state: &state,
                attempts: attempt,
                detail: &detail,
                created_at: at,
                updated_at: at,
            })
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted == 1 {
            add_command_event(c, id, attempt, RecordState::Sent, &sent, at)?;
            return Ok(());
        }
        let holder: Option<i64> = commands::table
            .filter(commands::idempotency_key.eq(&cmd.idempotency_key))
            .select(commands::command_id)
            .first(c)
            .optional()?;
        if let Some(existing) = holder.filter(|&h| h != id) {
            return Err(StoreError::DuplicateKey {
                key: cmd.idempotency_key.clone(),
                command: cmd.id,
                existing: to_u64(existing, "command id")?,
            });
        }
    }
    Err(StoreError::Database(format!(
        "command {} could be neither inserted nor found",
        cmd.id
    )))
}

fn add_command_event(
    c: &mut Conn,
    id: i64,
    attempt: i32,
    state: RecordState,
    detail: &str,
    at: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(command_events::table)
        .values((
            command_events::command_id.eq(id),
            command_events::attempt.eq(attempt),
            command_events::state.eq(state_str(state)),
            command_events::detail.eq(detail),
            command_events::at.eq(at),
        ))
        .execute(c)?;
    Ok(())
}

pub(crate) fn command(c: &mut Conn, id: i64) -> Result<Option<OutboxRow>, StoreError> {
    let row: Option<CommandSql> = commands::table
        .find(id)
        .select(CommandSql::as_select())
        .first(c)
        .optional()?;
    row.map(CommandSql::into_row).transpose()
}

pub(crate) fn command_history(c: &mut Conn, id: i64) -> Result<Vec<LifeEvent>, StoreError> {
    let rows: Vec<(String, String, i64)> = command_events::table
        .filter(command_events::command_id.eq(id))
        .order(command_events::id.asc())
        .select((
            command_events::state,
            command_events::detail,
            command_events::at,
        ))
        .load(c)?;
    rows.into_iter()
        .map(|(state, detail, at)| life_event(&state, detail, at))
        .collect()
}

pub(crate) fn commands(
    c: &mut Conn,
    state: Option<RecordState>,
    limit: i64,
    offset: i64,
) -> Result<Page<OutboxRow>, StoreError> {
    let state = state.map(state_str);
    let query = || {
        let mut q = commands::table.into_boxed::<Db>();
        if let Some(state) = state {
            q = q.filter(commands::state.eq(state));
        }
        q
    };
    let total: i64 = query().count().get_result(c)?;
    let rows: Vec<CommandSql> = query()
        .order(commands::command_id.desc())
        .limit(limit)
        .offset(offset)
        .select(CommandSql::as_select())
        .load(c)?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(CommandSql::into_row)
            .collect::<Result<_, _>>()?,
        total: to_u64(total, "command count")?,
    })
}

// ---------------------------------------------------------------------------------------------
// exceptions, latencies

pub(crate) fn exceptions(
    c: &mut Conn,
    open_only: bool,
    limit: i64,
    offset: i64,
) -> Result<Page<ExceptionRow>, StoreError> {
    let query = || {
        let mut q = exceptions::table.into_boxed::<Db>();
        if open_only {
            q = q.filter(exceptions::resolved_at.is_null());
        }
        q
    };
    let total: i64 = query().count().get_result(c)?;
    let rows: Vec<ExceptionSql> = query()
        .order(exceptions::id.desc())
        .limit(limit)
        .offset(offset)
        .select(ExceptionSql::as_select())
        .load(c)?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(ExceptionSql::into_row)
            .collect::<Result<_, _>>()?,
        total: to_u64(total, "exception count")?,
    })
}

pub(crate) fn latencies(c: &mut Conn, since: i64) -> Result<Vec<i64>, StoreError> {
    Ok(latencies::table
        .filter(latencies::at.ge(since))
        .order(latencies::id.asc())
        .select(latencies::ms)
        .load(c)?)
}

// ---------------------------------------------------------------------------------------------
// cursors, snapshots, counts

pub(crate) fn cursor(c: &mut Conn, feed: &str) -> Result<Option<String>, StoreError> {
    Ok(cursors::table
        .find(feed)
        .select(cursors::cursor)
        .first(c)
        .optional()?)
}

pub(crate) fn save_cursor(
    c: &mut Conn,
    feed: &str,
    cursor: &str,
    after_batch: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(cursors::table)
        .values(&CursorInsert {
            feed,
            cursor,
            after_batch,
            updated_at: at,
        })
        .on_conflict(cursors::feed)
        .do_update()
        .set((
            cursors::cursor.eq(cursor),
            cursors::after_batch.eq(after_batch),
            cursors::updated_at.eq(at),
        ))
        .execute(c)?;
    Ok(())
}

/// The PosInbox commit: false (nothing written) when `batch_id` is not stored.
pub(crate) fn commit_inbox_cursor(
    c: &mut Conn,
    key: &str,
    cursor: &str,
    batch_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let stored: Option<i64> = pos_batches::table
        .filter(pos_batches::batch_id.eq(batch_id))
        .select(pos_batches::seq)
        .first(c)
        .optional()?;
    if stored.is_none() {
        return Ok(false);
    }
    save_cursor(c, key, cursor, Some(batch_id), now.as_millis())?;
    Ok(true)
}

pub(crate) fn snapshot(c: &mut Conn) -> Result<Option<(String, RecordId)>, StoreError> {
    let row: Option<(String, i64)> = snapshots::table
        .order(snapshots::id.desc())
        .select((snapshots::engine, snapshots::last_record))
        .first(c)
        .optional()?;
    Ok(row.map(|(engine, last)| (engine, RecordId(last))))
}

pub(crate) fn save_snapshot(
    c: &mut Conn,
    engine: &str,
    last_record: i64,
    at: i64,
    keep: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(snapshots::table)
        .values(&SnapshotInsert {
            engine,
            last_record,
            taken_at: at,
        })
        .execute(c)?;
    let oldest_kept: Option<i64> = snapshots::table
        .order(snapshots::id.desc())
        .offset(keep - 1)
        .select(snapshots::id)
        .first(c)
        .optional()?;
    if let Some(oldest) = oldest_kept {
        diesel::delete(snapshots::table.filter(snapshots::id.lt(oldest))).execute(c)?;
    }
    Ok(())
}

pub(crate) fn counts(c: &mut Conn) -> Result<Counts, StoreError> {
    let recs: Vec<(String, String, i64)> = records::table
        .group_by((records::kind, records::state))
        .select((records::kind, records::state, count_star()))
        .order((records::kind.asc(), records::state.asc()))
        .load(c)?;
    let cmds: Vec<(String, i64)> = commands::table
        .group_by(commands::state)
        .select((commands::state, count_star()))
        .order(commands::state.asc())
        .load(c)?;
    let open: Vec<(String, i64)> = exceptions::table
        .filter(exceptions::resolved_at.is_null())
        .group_by(exceptions::reason)
        .select((exceptions::reason, count_star()))
        .order(exceptions::reason.asc())
        .load(c)?;
    Ok(Counts {
        records: recs
            .into_iter()
            .map(|(kind, state, n)| {
                Ok((
                    parse_kind(&kind)?,
                    parse_state(&state)?,
                    to_u64(n, "count")?,
                ))
            })
            .collect::<Result<_, StoreError>>()?,
        commands: cmds
            .into_iter()
            .map(|(state, n)| Ok((parse_state(&state)?, to_u64(n, "count")?)))
            .collect::<Result<_, StoreError>>()?,
        open_exceptions: open
            .into_iter()
            .map(|(reason, n)| {
                parse_reason(&reason)?;
                Ok((reason, to_u64(n, "count")?))
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

// ---------------------------------------------------------------------------------------------
// the POS inbox

/// Store a batch and its records in one transaction, once per batch id.
pub(crate) fn store_batch(
    c: &mut Conn,
    batch: &PosBatch,
    body: &str,
    recs: &[PosRecord],
    now: Timestamp,
) -> Result<StoreOutcome, StoreError> {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let inserted: Option<i64> = diesel::insert_into(pos_batches::table)
        .values(&BatchInsert {
            batch_id: batch.id.as_str(),
            connector: batch.connector.as_str(),
            feed: batch.feed.as_str(),
            source: batch.source.as_deref(),
            body,
            records: count(recs.len()),
            record_errors: count(batch.record_errors.len()),
            stored_at: now.as_millis(),
        })
        .on_conflict_do_nothing()
        .returning(pos_batches::seq)
        .get_result(c)
        .optional()?;
    let Some(seq) = inserted else {
        let seq: i64 = pos_batches::table
            .filter(pos_batches::batch_id.eq(batch.id.as_str()))
            .select(pos_batches::seq)
            .first(c)?;
        return Ok(StoreOutcome::AlreadyStored {
            seq: to_u64(seq, "batch sequence")?,
        });
    };
    for r in recs {
        insert_record(c, &r.record, r.settled.as_deref())?;
    }
    Ok(StoreOutcome::Stored {
        seq: to_u64(seq, "batch sequence")?,
    })
}

pub(crate) fn batches(
    c: &mut Conn,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredBatch>, StoreError> {
    let rows: Vec<(i64, String)> = pos_batches::table
        .filter(pos_batches::seq.gt(after))
        .order(pos_batches::seq.asc())
        .limit(limit)
        .select((pos_batches::seq, pos_batches::body))
        .load(c)?;
    rows.into_iter()
        .map(|(seq, body)| {
            Ok(StoredBatch {
                seq: to_u64(seq, "batch sequence")?,
                batch: parse_json::<PosBatch>(&body, format!("POS batch {seq}"))?,
            })
        })
        .collect()
}

/// Take `name` for `holder` until `until` when it is free, expired at `now`, or already the
/// holder's (a renewal); true when the holder has it afterwards. The update is conditional, so
/// of two replicas racing for an expired lease only one matches the row (PostgreSQL re-checks
/// the condition after the first one's commit; SQLite writers are serialised).
pub(crate) fn acquire_lease(
    c: &mut Conn,
    name: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool, StoreError> {
    let inserted = diesel::insert_into(leases::table)
        .values((
            leases::name.eq(name),
            leases::holder.eq(holder),
            leases::expires_at.eq(until),
        ))
        .on_conflict(leases::name)
        .do_nothing()
        .execute(c)?;
    if inserted == 1 {
        return Ok(true);
    }
    let updated = diesel::update(
        leases::table
            .filter(leases::name.eq(name))
            .filter(leases::holder.eq(holder).or(leases::expires_at.lt(now))),
    )
    .set((leases::holder.eq(holder), leases::expires_at.eq(until)))
    .execute(c)?;
    Ok(updated == 1)
}

/// Give `name` up if `holder` has it.
pub(crate) fn release_lease(c: &mut Conn, name: &str, holder: &str) -> Result<(), StoreError> {
    diesel::delete(
        leases::table
            .filter(leases::name.eq(name))
            .filter(leases::holder.eq(holder)),
    )
    .execute(c)?;
    Ok(())
}
