//! The engine as the store has it: what the runner starts from (at start and when it takes
//! over the engine lease), and what `tillbridge audit` and `tillbridge replay` read.
//!
//! The newest snapshot with the current configuration applied, ids above everything stored,
//! then every record stored after the snapshot handed to the engine again, then the shipments
//! the outbox holds as sent but never answered, or failed and due for a retry
//! (`Engine::replay_open`). The runner then
//! calls `Engine::resume` (pushes in flight released and sent again); the read-only tools do
//! not: they want the state, not a restart's decisions.

use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{Command, Engine, Input, RecordState};

use crate::config::Settings;
use crate::runner::{RunnerError, engine_config};
use crate::store::{MAX_LIMIT, RecordId, Store};

/// An engine restored from the store, and how.
#[derive(Debug, Clone)]
pub struct Restored {
    pub engine: Engine,
    /// The last record the snapshot had seen (`None`: no snapshot, every record replayed).
    pub snapshot_record: Option<RecordId>,
    /// When that record was received: the outbox after it holds what the snapshot missed.
    pub snapshot_at: Option<Timestamp>,
    /// Records handed to the engine after the snapshot.
    pub replayed: usize,
    /// Records after the snapshot that are not engine inputs (webhooks, unusable POS records).
    pub skipped: usize,
    /// The newest record.
    pub last: RecordId,
}

/// Restore the engine: snapshot, ids, replay (see the module documentation).
pub fn restore(
    store: &dyn Store,
    settings: &Settings,
    now: Timestamp,
) -> Result<Restored, RunnerError> {
    let cfg = engine_config(settings);
    let (mut engine, snapshot_record) = match store.snapshot()? {
        Some((json, last)) => {
            let mut e: Engine =
                serde_json::from_str(&json).map_err(|e| RunnerError::Snapshot(e.to_string()))?;
            // Configuration may have changed since the snapshot: the new one applies.
            e.reconfigure(cfg);
            (e, Some(last))
        }
        None => (Engine::new(cfg, now), None),
    };
    let snapshot_at = match snapshot_record {
        Some(id) => store.record(id)?.map(|r| r.received_at),
        None => None,
    };
    // Ids issued after the snapshot are taken (the replay below decides again): new ones
    // start above everything stored.
    let max_command = store
        .commands(None, 1, 0)?
        .items
        .first()
        .map_or(0, |c| c.command_id);
    let max_exception = store
        .exceptions(false, 1, 0)?
        .items
        .iter()
        .map(|e| e.entry.id)
        .max()
        .unwrap_or(0);
    engine.ids_above(max_command.max(max_exception));
    let mut last = snapshot_record.unwrap_or(RecordId(0));
    let (mut replayed, mut skipped) = (0, 0);
    loop {
        let rows = store.records_after(last, 500)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            last = row.id;
            // Like the runner: a payload that does not read as an input is not one.
            match row.input() {
                Ok(Some(Input::Result { command, outcome })) => {
                    // With the command it answers: the engine may not have decided it (it was
                    // issued after the snapshot), and what it did must still count.
                    match stored_command(store, command)? {
                        Some(cmd) => engine.replay_result(cmd, outcome, row.received_at),
                        None => engine.handle(Input::Result { command, outcome }, row.received_at),
                    }
                    replayed += 1;
                }
                Ok(Some(input)) => {
                    engine.handle(input, row.received_at);
                    replayed += 1;
                }
                Ok(None) | Err(_) => skipped += 1,
            }
        }
    }
    // Shipments sent and never answered: the service may have died after Commerce created
    // one and before its answer was stored. The engine holds their source items until the
    // shipment, sent again, is answered (no push in between writes the shipped units back).
    for cmd in open_shipments(store)? {
        engine.replay_open(cmd, now);
    }
    Ok(Restored {
        engine,
        snapshot_record,
        snapshot_at,
        replayed,
        skipped,
        last,
    })
}

/// The command the outbox holds under an id (`None`: not stored, e.g. an answer given from the
/// outbox to a command decided again after a restart, or a payload that does not read).
fn stored_command(store: &dyn Store, id: u64) -> Result<Option<Command>, RunnerError> {
    Ok(store
        .command(id)?
        .and_then(|row| serde_json::from_value::<Command>(row.payload).ok())
        .filter(|c| c.id == id))
}

/// The shipments the outbox holds as sent (never answered, or answered only after the last
/// journal write), oldest first.
fn open_shipments(store: &dyn Store) -> Result<Vec<Command>, RunnerError> {
    let mut out = Vec::new();
    // Sent and never answered, or failed in a way worth retrying (the attempt may have been
    // applied before its answer was lost): either way the outcome is not known.
    for state in [RecordState::Sent, RecordState::Failed] {
        let mut offset = 0;
        loop {
            let page = store.commands(Some(state), MAX_LIMIT, offset)?;
            let n = u32::try_from(page.items.len()).unwrap_or(u32::MAX);
            out.extend(
                page.items
                    .into_iter()
                    .filter(|row| row.kind == "create_shipment")
                    .filter(|row| {
                        state == RecordState::Sent
                            || tillbridge_core::sync::is_retry_detail(&row.detail)
                    })
                    .filter_map(|row| {
                        serde_json::from_value::<Command>(row.payload)
                            .ok()
                            .filter(|c| c.id == row.command_id)
                    }),
            );
            if n < MAX_LIMIT {
                break;
            }
            offset += n;
        }
    }
    out.sort_by_key(|c| c.id);
    Ok(out)
}
