//! `tillbridge replay RECORD [--execute]`: hand one stored record to the engine again.
//!
//! **Which engine.** The record is decided against the engine's *current* state (the newest
//! snapshot and every record stored after it, `crate::restore`), not against the state just
//! before the record arrived. An operator replays a record after fixing something — a SKU at
//! the till, a `[[stores]]` entry — and wants what it means *now*: a stock figure older than
//! one the engine holds is superseded instead of overwriting Commerce with an old quantity, an
//! order the engine already routed is not routed twice, and a command already done is answered
//! by the outbox. What the record did back then is in its stored life, which is printed first.
//!
//! **What it decides.** `core::sync::replay::decide`: the commands and source-item writes only
//! this record causes (the engine's backlog after a restart is not the record's doing), and
//! what the engine journals about it.
//!
//! **Records that are not engine inputs.** A POS stock figure the runner set aside
//! (`{"rejected": level}`: location not mapped, variation without a SKU or sharing one) is
//! converted again with today's configuration and POS catalog; one that is still unusable says
//! why. Malformed POS records, sale lines (velocity only; their stored form lacks store and
//! time), webhooks and command answers are not replayable, and say so.
//!
//! **`--execute`.** A re-converted figure is stored first, as a new record (same kind and
//! origin, external id `replay:<original>`, so a second execute finds it); the record's
//! journal is applied; each command goes into the outbox (`put_command`: a key already there
//! is not executed again) and through the runner's executor; answers are stored as
//! `command_result` records. Pushes are absolute and every key names its action, so executing
//! twice never acts twice. Exceptions the engine would raise are printed, not stored: the
//! service raises its own. Fulfilment requests and their withdrawal are not executed: the
//! running service follows only the fulfilments it sends itself, so an order is routed again
//! through its exception's retry (dashboard, or `POST /api/exceptions/{id}/retry`). A running
//! service does not fold what replay did into its engine (its next figure for the item
//! supersedes it as usual), and a running service numbers its commands itself: so
//! `--execute` refuses to act while a service answers on `service.listen` — stop it first.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use tillbridge_core::pos::{StockLevel, Timestamp};
use tillbridge_core::sync::replay::{Decision, decide};
use tillbridge_core::sync::{
    Command, CommandKind, Input, Journal, Outcome, RecordState, SourceItemWrite,
};

use crate::config::Settings;
use crate::pos::{BatchPayload, ConnectorId, Feed, PosBatch, PosCursor};
use crate::restore::restore;
use crate::runner::convert::{self, Catalog};
use crate::runner::{RunnerError, exec, parts};
use crate::store::{NewRecord, RecordId, RecordKind, RecordRow, Store, StoreError};

/// What to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    pub record: RecordId,
    /// Act on the decisions (default: a dry run).
    pub execute: bool,
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The decisions were shown (dry run), or executed and every command was confirmed, or
    /// there was nothing new to do.
    Done,
    /// The record cannot be handed to the engine (the reason was printed).
    NotReplayable,
    /// A command failed or was refused, or execution was refused (the reason was printed).
    Failed,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record {0} is not stored; list records with GET /api/records")]
    NoSuchRecord(RecordId),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// The engine input a record stands for, or why there is none.
enum Replayable {
    Stored(Input),
    Reconverted(Input),
    Not(String),
}

/// Replay one record (see the module documentation). `now`: the engine's clock.
pub async fn run(
    settings: &Settings,
    options: ReplayOptions,
    now: Timestamp,
    out: &mut dyn Write,
) -> Result<ReplayEnd, ReplayError> {
    let p = parts(settings)?;
    let store = p.store.as_ref();
    let row = store
        .record(options.record)?
        .ok_or(ReplayError::NoSuchRecord(options.record))?;
    describe(store, &row, out)?;

    let input = match replayable(&row, settings, &p.pos, now).await? {
        Replayable::Not(why) => {
            writeln!(out, "not replayable: {why}")?;
            return Ok(ReplayEnd::NotReplayable);
        }
        Replayable::Stored(input) => (input, false),
        Replayable::Reconverted(input) => {
            writeln!(
                out,
                "re-converted with today's mapping: {}",
                summary(&input)
            )?;
            (input, true)
        }
    };
    let (input, reconverted) = input;

    let restored = restore(store, settings, now)?;
    writeln!(
        out,
        "engine: current state ({}, {} records replayed); the record is decided against what Tillbridge knows now",
        restored.snapshot_record.map_or_else(
            || "no snapshot".to_owned(),
            |r| format!("snapshot at record {r}")
        ),
        restored.replayed
    )?;
    let decision = decide(&restored.engine, input.clone(), now);
    let pushes = push_commands(settings, store, &decision)?;
    print_decision(&decision, &pushes, out)?;

    if decision.is_empty() {
        writeln!(
            out,
            "\nThe record changes nothing now: the engine already holds what it says. Nothing to execute."
        )?;
        return Ok(ReplayEnd::Done);
    }
    if !options.execute {
        writeln!(
            out,
            "\nDry run: nothing stored, nothing sent. Run again with --execute to act."
        )?;
        return Ok(ReplayEnd::Done);
    }
    if service_answers(&settings.service.listen).await {
        writeln!(
            out,
            "\nNot executed: a Tillbridge service answers on {}. Stop it first: a running service numbers its commands itself and would collide with the ones replay stores. (At its next start it takes the stored records again.)",
            settings.service.listen
        )?;
        return Ok(ReplayEnd::Failed);
    }
    if let Some(c) = decision.commands.iter().find(|c| {
        matches!(
            c.kind,
            CommandKind::CreateFulfilment { .. } | CommandKind::CancelFulfilment { .. }
        )
    }) {
        writeln!(
            out,
            "\nNot executed: {} is a fulfilment request at a till, and the running service follows only the fulfilments it sends itself. Route the order again through its exception's retry (dashboard, or POST /api/exceptions/{{id}}/retry).",
            c.kind.name()
        )?;
        return Ok(ReplayEnd::Failed);
    }
    execute(
        settings,
        &p,
        &row,
        input,
        reconverted,
        &decision,
        pushes,
        now,
        out,
    )
    .await
}

/// Whether a Tillbridge service answers `/health` on `listen` (an unspecified address is
/// asked on loopback).
async fn service_answers(listen: &str) -> bool {
    let addr = listen
        .replacen("0.0.0.0", "127.0.0.1", 1)
        .replacen("[::]", "[::1]", 1);
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    match client.get(format!("http://{addr}/health")).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["service"] == "tillbridge"),
        Err(_) => false,
    }
}

fn describe(store: &dyn Store, row: &RecordRow, out: &mut dyn Write) -> Result<(), ReplayError> {
    writeln!(
        out,
        "record {}: {} from {}{}, received {}",
        row.id,
        row.kind.as_str(),
        row.origin,
        row.external_id
            .as_deref()
            .map_or_else(String::new, |e| format!(" ({e})")),
        row.received_at
    )?;
    writeln!(out, "life so far:")?;
    let history = store.record_history(row.id)?;
    if history.is_empty() {
        writeln!(out, "  {:?}: {}", row.state, row.detail)?;
    }
    for h in history {
        writeln!(out, "  {}  {:<10} {}", h.at, state(h.state), h.detail)?;
    }
    Ok(())
}

fn state(s: RecordState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

async fn replayable(
    row: &RecordRow,
    settings: &Settings,
    pos: &BTreeMap<String, Arc<dyn crate::pos::PosConnector>>,
    now: Timestamp,
) -> Result<Replayable, ReplayError> {
    if let Some(input) = row.input()? {
        return Ok(match input {
            Input::Result { command, .. }
            | Input::Salable { command, .. }
            | Input::SourceItems { command, .. } => Replayable::Not(format!(
                "it is the answer to command {command}; an answer means something only to the engine that sent the command (a restart replays it with its command)"
            )),
            other => Replayable::Stored(other),
        });
    }
    let Some(rejected) = row.payload.get("rejected") else {
        return Ok(Replayable::Not(match row.kind {
            RecordKind::Webhook => {
                "a webhook only prompts an early poll; the records that poll read are stored on their own".to_owned()
            }
            _ => "its payload is not an engine input".to_owned(),
        }));
    };
    if row.kind != RecordKind::PosStock {
        return Ok(Replayable::Not(
            "a POS sale line only feeds sales velocity, and its stored form keeps neither the store nor the time; it is not re-converted (the till's stock figures carry the stock)".to_owned(),
        ));
    }
    let Ok(level) = serde_json::from_value::<StockLevel>(rejected.clone()) else {
        return Ok(Replayable::Not(format!(
            "the POS sent a malformed record ({}); correct it at the POS: the next read brings it again",
            row.detail
        )));
    };
    let Some(connector) = pos.get(&row.origin) else {
        return Ok(Replayable::Not(format!(
            "POS '{}' is not configured any more",
            row.origin
        )));
    };
    let Ok(cid) = ConnectorId::parse(&row.origin) else {
        return Ok(Replayable::Not(format!(
            "'{}' is not a POS connector id",
            row.origin
        )));
    };
    let catalog = match connector.catalog().await {
        Ok((variations, errors)) => Catalog::from_variations(&variations, errors.len(), now),
        Err(e) => {
            return Ok(Replayable::Not(format!(
                "the POS catalog could not be read ({e}); try again"
            )));
        }
    };
    let sources = settings
        .stores
        .iter()
        .filter_map(|s| {
            Some((
                (s.pos.clone(), s.location.clone()),
                tillbridge_core::pos::SourceCode::parse(&s.source).ok()?,
            ))
        })
        .collect();
    let batch = PosBatch::new(
        cid,
        Feed::StockChanges,
        None,
        BatchPayload::StockChanges {
            levels: vec![level],
        },
        Vec::new(),
        PosCursor::start(),
        false,
    );
    let converted = convert::pos_batch(
        &row.origin,
        &batch,
        &sources,
        Some(&catalog),
        &Mutex::new(BTreeMap::new()),
    );
    Ok(match converted.inputs.into_iter().next() {
        Some((_, _, input)) => Replayable::Reconverted(input),
        None => Replayable::Not(format!(
            "still not usable with today's mapping: {}",
            converted
                .rejected
                .first()
                .map_or("the mapping does not cover it", |r| r.detail.as_str())
        )),
    })
}

fn summary(input: &Input) -> String {
    match input {
        Input::PosStock {
            sku,
            source,
            on_hand,
            as_of,
            ..
        } => format!(
            "{sku}@{source} on hand {} as of {as_of}",
            on_hand.normalize()
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The decision's writes as push commands (the engine's shape and key), with ids above
/// everything stored and every id the decision uses.
fn push_commands(
    settings: &Settings,
    store: &dyn Store,
    decision: &Decision,
) -> Result<Vec<Command>, StoreError> {
    let stored = store
        .commands(None, 1, 0)?
        .items
        .first()
        .map_or(0, |c| c.command_id);
    let first = decision
        .commands
        .iter()
        .map(|c| c.id)
        .chain(decision.journal.iter().filter_map(|j| match j {
            Journal::Raised(e) => Some(e.id),
            _ => None,
        }))
        .fold(stored, u64::max)
        + 1;
    let out = decision
        .writes
        .chunks(settings.commerce.input_limit.max(1))
        .zip(first..)
        .map(|(chunk, id)| Command {
            id,
            idempotency_key: format!("push:{id}"),
            attempt: 1,
            kind: CommandKind::PushSourceItems {
                items: chunk.to_vec(),
            },
        })
        .collect();
    Ok(out)
}

fn describe_command(c: &Command) -> String {
    let what = match &c.kind {
        CommandKind::PushSourceItems { items } => {
            items.iter().map(write_text).collect::<Vec<_>>().join(", ")
        }
        CommandKind::CreateShipment {
            order,
            source,
            items,
            ..
        } => format!(
            "ship order {order} from {source} ({} units)",
            items.iter().map(|(_, q)| *q).sum::<Decimal>().normalize()
        ),
        CommandKind::CreateFulfilment { order, source, .. } => {
            format!("ask {source} to fulfil order {order}")
        }
        CommandKind::CancelFulfilment { order, source } => {
            format!("withdraw order {order} from {source}")
        }
        CommandKind::CancelOrder { order, .. } => format!("cancel order {order}"),
        CommandKind::CreditMemo { order, .. } => format!("refund returned items of order {order}"),
        CommandKind::OrderComment { order, comment, .. } => {
            format!("comment on order {order}: {comment}")
        }
        CommandKind::ReadSalable { sku, stock_id } => format!("read salable {sku} in {stock_id}"),
        CommandKind::ReadSourceItems { page, .. } => format!("read source items page {page}"),
    };
    format!("{} {what} (key {})", c.kind.name(), c.idempotency_key)
}

fn write_text(w: &SourceItemWrite) -> String {
    format!(
        "{}@{} = {} ({})",
        w.sku,
        w.source,
        w.quantity.normalize(),
        if w.status == 1 {
            "in stock"
        } else {
            "out of stock"
        }
    )
}

fn print_decision(
    decision: &Decision,
    pushes: &[Command],
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    writeln!(out, "decisions now:")?;
    for j in &decision.journal {
        match j {
            Journal::Record {
                state: s, detail, ..
            } => {
                writeln!(out, "  record     {:<10} {detail}", state(*s))?;
            }
            Journal::Raised(e) => writeln!(
                out,
                "  exception  {:<10} {} (printed, not stored: the service raises its own)",
                serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                e.message
            )?,
            Journal::Resolved { id, note, .. } => {
                writeln!(out, "  resolves   exception {id}: {note}")?;
            }
            Journal::Command { .. } | Journal::Latency { .. } => {}
        }
    }
    for c in decision.commands.iter().chain(pushes) {
        writeln!(out, "  command    {}", describe_command(c))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    settings: &Settings,
    p: &crate::runner::Parts,
    row: &RecordRow,
    input: Input,
    reconverted: bool,
    decision: &Decision,
    pushes: Vec<Command>,
    now: Timestamp,
    out: &mut dyn Write,
) -> Result<ReplayEnd, ReplayError> {
    let store = p.store.as_ref();
    writeln!(out, "\nexecuting:")?;
    // The record the decisions belong to.
    let record = if reconverted {
        let (id, new) = store.insert_record(&NewRecord {
            kind: row.kind,
            origin: row.origin.clone(),
            external_id: Some(format!("replay:{}", row.id)),
            payload: serde_json::to_value(&input).unwrap_or_default(),
            received_at: now,
        })?;
        if new {
            writeln!(out, "  stored the re-converted figure as record {id}")?;
            store.apply_journal(
                &[Journal::Record {
                    record: row.id.to_string(),
                    state: row.state,
                    detail: format!("re-converted as record {id} by tillbridge replay"),
                }],
                now,
            )?;
        } else {
            writeln!(
                out,
                "  an earlier replay stored the re-converted figure as record {id}"
            )?;
        }
        id
    } else {
        row.id
    };
    let placeholder = tillbridge_core::sync::replay::record_of(&input)
        .unwrap_or_default()
        .to_owned();
    let commands: Vec<Command> = decision.commands.iter().cloned().chain(pushes).collect();
    let planned: Vec<Journal> = decision
        .journal
        .iter()
        .filter_map(|j| match j {
            Journal::Record {
                record: r,
                state,
                detail,
            } if *r == placeholder => Some(Journal::Record {
                record: record.to_string(),
                state: *state,
                detail: detail.clone(),
            }),
            Journal::Command { command, .. } if commands.iter().any(|c| c.id == *command) => {
                Some(j.clone())
            }
            _ => None,
        })
        .collect();
    store.apply_journal(&planned, now)?;

    let ctx = exec::Context {
        commerce: p.commerce.clone(),
        pos: p.pos.clone(),
        settings: Arc::new(settings.clone()),
        variations: Arc::new(Mutex::new(BTreeMap::new())),
        catalogs: Arc::new(Mutex::new(BTreeMap::new())),
        followed: Arc::new(Mutex::new(BTreeMap::new())),
        now,
    };
    let mut failures = Vec::new();
    let mut done = 0;
    for cmd in &commands {
        match store.put_command(cmd, now) {
            Ok(()) => {}
            Err(StoreError::DuplicateKey { existing, .. }) => {
                let st = store
                    .command(existing)?
                    .map_or_else(|| "unknown".to_owned(), |c| state(c.state));
                writeln!(
                    out,
                    "  {}: already in the outbox as command {existing} ({st}); not sent again",
                    describe_command(cmd)
                )?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let answers = exec::execute(&ctx, cmd).await;
        let mut journal = Vec::new();
        for answer in &answers {
            store.insert_record(&NewRecord {
                kind: RecordKind::CommandResult,
                origin: "replay".to_owned(),
                external_id: Some(format!("{}:{}", cmd.id, now.as_millis())),
                payload: serde_json::to_value(answer).unwrap_or_default(),
                received_at: now,
            })?;
            let (st, detail) = match answer {
                Input::Result {
                    outcome: Outcome::Ok { .. },
                    ..
                }
                | Input::Salable { .. }
                | Input::SourceItems { .. } => (RecordState::Confirmed, cmd.kind.name().to_owned()),
                Input::Result {
                    outcome: Outcome::Retriable { reason, .. },
                    ..
                } => (
                    RecordState::Failed,
                    tillbridge_core::sync::retry_detail(1, reason),
                ),
                Input::Result {
                    outcome:
                        Outcome::Permanent {
                            status, message, ..
                        },
                    ..
                } => (RecordState::Failed, format!("{status}: {message}")),
                _ => continue,
            };
            journal.push(Journal::Command {
                command: cmd.id,
                state: st,
                detail: detail.clone(),
            });
            if st == RecordState::Confirmed {
                done += 1;
                writeln!(
                    out,
                    "  {}: confirmed (command {})",
                    describe_command(cmd),
                    cmd.id
                )?;
            } else {
                writeln!(
                    out,
                    "  {}: FAILED (command {}): {detail}",
                    describe_command(cmd),
                    cmd.id
                )?;
                failures.push(detail);
            }
        }
        store.apply_journal(&journal, now)?;
    }
    let end = if failures.is_empty() {
        store.apply_journal(
            &[Journal::Record {
                record: record.to_string(),
                state: RecordState::Confirmed,
                detail: format!("replayed: {done} commands confirmed"),
            }],
            now,
        )?;
        ReplayEnd::Done
    } else {
        store.apply_journal(
            &[Journal::Record {
                record: record.to_string(),
                state: RecordState::Failed,
                detail: format!("replayed: {}", failures.join("; ")),
            }],
            now,
        )?;
        ReplayEnd::Failed
    };
    Ok(end)
}

/// `tillbridge replay --config FILE RECORD [--execute]`: exit 0 when the decisions were shown
/// or executed, 1 when the record cannot be replayed or a command failed.
pub fn cli(
    config: &std::path::Path,
    record: i64,
    execute: bool,
    out: &mut dyn Write,
) -> Result<crate::cli::Status, crate::cli::CliError> {
    let settings = Settings::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let now = crate::runner::system_clock()();
    let end = runtime.block_on(run(
        &settings,
        ReplayOptions {
            record: RecordId(record),
            execute,
        },
        now,
        out,
    ))?;
    out.flush()?;
    Ok(crate::cli::Status::from_all_passed(end == ReplayEnd::Done))
}
