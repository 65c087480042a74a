//! One stored record handed to the engine again, as a dry run: what it decides *now*.
//!
//! `tillbridge replay RECORD` restores the engine to its current state (snapshot and every
//! record after it) and asks [`decide`] what the record changes. The engine restored that way
//! has not polled since its snapshot, so it would also re-send work that was done long ago
//! (pushes decided after the snapshot, queued comments); those are not the record's doing.
//! [`decide`] therefore runs the engine's near future twice on copies — once without the
//! record, once with it — answering every command as if it succeeded, and keeps what differs:
//! the commands only the record causes (matched by idempotency key, which names the action,
//! not the engine's counter), the source-item writes only it causes (matched by value: pushes
//! are absolute), and the journal entries about the record.

use std::collections::BTreeSet;

use super::engine::Engine;
use super::types::{Command, CommandKind, Input, Journal, Outcome, Output, SourceItemWrite};
use crate::pos::Timestamp;

/// Polls simulated per copy (one second apart, so the budget refills).
const ROUNDS: usize = 120;
/// The simulation stops after this many polls in a row without a command.
const QUIET_ROUNDS: usize = 3;

/// What a record decides now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// What the engine journals about the record when it takes it: its states with their
    /// sentences, exceptions raised or resolved, the plans of the record's commands.
    pub journal: Vec<Journal>,
    /// Commands only the record causes (fulfilment requests, shipments, comments, credit
    /// memos, cancellations), as the engine issued them.
    pub commands: Vec<Command>,
    /// Source-item writes only the record causes.
    pub writes: Vec<SourceItemWrite>,
}

impl Decision {
    /// The record changes nothing: no command, no write.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.writes.is_empty()
    }
}

/// The stored record an input names, if it names one.
pub fn record_of(input: &Input) -> Option<&str> {
    match input {
        Input::PosStock { record, .. }
        | Input::PosSale { record, .. }
        | Input::CommerceOrder { record, .. }
        | Input::Fulfilment { record, .. }
        | Input::PosReturn { record, .. } => Some(record),
        _ => None,
    }
}

struct Run {
    /// Journal of the first poll (the record's handling and the first decisions).
    journal: Vec<Journal>,
    commands: Vec<Command>,
}

fn simulate(mut engine: Engine, input: Option<Input>, now: Timestamp) -> Run {
    if let Some(input) = input {
        engine.handle(input, now);
    }
    let mut journal = Vec::new();
    let mut commands = Vec::new();
    let mut quiet = 0;
    let mut at = now;
    for round in 0..ROUNDS {
        let mut answered = Vec::new();
        for out in engine.poll(at) {
            match out {
                Output::Command(c) => {
                    answered.push(c.id);
                    commands.push(c);
                }
                Output::Journal(j) if round == 0 => journal.push(j),
                Output::Journal(_) => {}
            }
        }
        if answered.is_empty() {
            quiet += 1;
            if quiet >= QUIET_ROUNDS {
                break;
            }
        } else {
            quiet = 0;
        }
        for command in answered {
            engine.handle(
                Input::Result {
                    command,
                    outcome: Outcome::Ok { latency_ms: 0 },
                },
                at,
            );
        }
        at = at.add_millis(1_000);
    }
    Run { journal, commands }
}

fn is_read(kind: &CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::ReadSalable { .. } | CommandKind::ReadSourceItems { .. }
    )
}

/// What `input` decides when handed to `engine` at `now` (see the module documentation). The
/// engine is not changed; commands carry ids from its sequence.
pub fn decide(engine: &Engine, input: Input, now: Timestamp) -> Decision {
    let record = record_of(&input).map(str::to_owned);
    let base = simulate(engine.clone(), None, now);
    let with = simulate(engine.clone(), Some(input), now);

    let base_keys: BTreeSet<&str> = base
        .commands
        .iter()
        .filter(|c| !is_read(&c.kind))
        .map(|c| c.idempotency_key.as_str())
        .collect();
    let mut base_writes: Vec<&SourceItemWrite> = base
        .commands
        .iter()
        .filter_map(|c| match &c.kind {
            CommandKind::PushSourceItems { items } => Some(items.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut decision = Decision::default();
    for c in &with.commands {
        match &c.kind {
            CommandKind::PushSourceItems { items } => {
                for w in items {
                    match base_writes.iter().position(|b| *b == w) {
                        Some(i) => {
                            base_writes.swap_remove(i);
                        }
                        None => decision.writes.push(w.clone()),
                    }
                }
            }
            kind if is_read(kind) => {}
            _ if base_keys.contains(c.idempotency_key.as_str()) => {}
            _ => decision.commands.push(c.clone()),
        }
    }

    let new_ids: BTreeSet<u64> = decision.commands.iter().map(|c| c.id).collect();
    let base_raised: BTreeSet<(String, super::types::Reason)> = base
        .journal
        .iter()
        .filter_map(|j| match j {
            Journal::Raised(e) => Some((e.subject.clone(), e.reason)),
            _ => None,
        })
        .collect();
    decision.journal = with
        .journal
        .into_iter()
        .filter(|j| match j {
            Journal::Record { record: r, .. } => record.as_deref() == Some(r.as_str()),
            Journal::Command { command, .. } => new_ids.contains(command),
            Journal::Raised(e) => !base_raised.contains(&(e.subject.clone(), e.reason)),
            Journal::Resolved { .. } => !base.journal.contains(j),
            Journal::Latency { .. } => false,
        })
        .collect();
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::{FulfilmentState, Sku, SourceCode};
    use crate::sync::orders::{Delivery, RoutingConfig, SourceRoute, WebOrder, WebOrderLine};
    use crate::sync::types::RecordState;
    use crate::sync::{EngineConfig, StockKey};
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).expect("sku")
    }

    fn york() -> SourceCode {
        SourceCode::parse("york").expect("source")
    }

    fn engine() -> Engine {
        let cfg = EngineConfig {
            routing: RoutingConfig {
                sources: vec![SourceRoute {
                    source: york(),
                    priority: 1,
                    stock_ids: vec![2],
                    pos_managed: true,
                    fulfils: true,
                    name: "York".into(),
                }],
            },
            ..EngineConfig::default()
        };
        Engine::new(cfg, t(0))
    }

    fn stock(record: &str, s: &str, on_hand: Decimal, as_of: i64) -> Input {
        Input::PosStock {
            record: record.into(),
            sku: sku(s),
            source: york(),
            on_hand,
            as_of: t(as_of),
        }
    }

    /// An engine that holds `figures` (SKU, on hand) and has pushed none of them (as one
    /// restored from an old snapshot: its pushes are re-decided).
    fn with_backlog(figures: &[(&str, Decimal)]) -> Engine {
        let mut e = engine();
        for (i, (s, q)) in figures.iter().enumerate() {
            e.handle(stock(&format!("{}", i + 1), s, *q, 1_000), t(1_000));
        }
        e
    }

    #[test]
    fn a_new_figure_decides_its_push_and_nothing_of_the_backlog() {
        let e = with_backlog(&[("MUG", dec!(5)), ("TEE", dec!(5)), ("CAP", dec!(2))]);
        let d = decide(&e, stock("99", "MUG", dec!(3), 2_000), t(5_000));
        assert_eq!(
            d.writes,
            vec![SourceItemWrite {
                sku: sku("MUG"),
                source: york(),
                quantity: dec!(3),
                status: 1,
            }]
        );
        assert!(d.commands.is_empty(), "{:?}", d.commands);
        let states: Vec<(RecordState, &str)> = d
            .journal
            .iter()
            .filter_map(|j| match j {
                Journal::Record {
                    record,
                    state,
                    detail,
                } if record == "99" => Some((*state, detail.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(states[0].0, RecordState::Received);
        assert!(
            states
                .iter()
                .any(|(s, d)| *s == RecordState::Planned && *d == "push 3 to MUG@york"),
            "{states:?}"
        );
        // The engine itself is untouched.
        assert_eq!(
            e.ledger()[&StockKey::new(sku("MUG"), york())]
                .pos
                .as_ref()
                .map(|p| p.on_hand),
            Some(dec!(5))
        );
    }

    #[test]
    fn a_figure_the_engine_already_holds_decides_nothing() {
        let e = with_backlog(&[("MUG", dec!(5)), ("TEE", dec!(5))]);
        let d = decide(&e, stock("1", "MUG", dec!(5), 1_000), t(5_000));
        assert!(d.is_empty(), "{d:?}");
        // An older figure than the one held is superseded, and decides nothing either.
        let d = decide(&e, stock("50", "MUG", dec!(1), 500), t(5_000));
        assert!(d.is_empty(), "{d:?}");
        assert!(d.journal.iter().any(|j| matches!(
            j,
            Journal::Record { record, state: RecordState::Superseded, .. } if record == "50"
        )));
    }

    #[test]
    fn an_order_decides_its_fulfilment_request_once() {
        let e = with_backlog(&[("MUG", dec!(5))]);
        let order = WebOrder {
            increment_id: "000000007".into(),
            entity_id: 7,
            stock_id: 2,
            state: "new".into(),
            updated_at: t(1_500),
            delivery: Delivery::Ship,
            lines: vec![WebOrderLine {
                item_id: 1,
                sku: sku("MUG"),
                qty_ordered: dec!(1),
                qty_shipped: dec!(0),
                qty_canceled: dec!(0),
                qty_refunded: dec!(0),
            }],
        };
        let input = Input::CommerceOrder {
            record: "60".into(),
            order,
        };
        let d = decide(&e, input.clone(), t(5_000));
        assert_eq!(d.commands.len(), 1, "{:?}", d.commands);
        assert_eq!(d.commands[0].idempotency_key, "fulfil:000000007:york");
        // Once the engine has taken the order, the same record decides nothing new.
        let mut seen = e.clone();
        seen.handle(input.clone(), t(4_000));
        let _ = seen.poll(t(4_000));
        let d = decide(&seen, input, t(5_000));
        assert!(d.commands.is_empty(), "{:?}", d.commands);
        // A fulfilment for an order the engine never saw raises an exception.
        let d = decide(
            &e,
            Input::Fulfilment {
                record: "61".into(),
                order: "000000999".into(),
                state: FulfilmentState::Completed,
                at: t(2_000),
                tracking: None,
                lines: None,
            },
            t(5_000),
        );
        assert!(
            d.journal
                .iter()
                .any(|j| matches!(j, Journal::Raised(x) if x.subject == "order 000000999"))
        );
    }
}
