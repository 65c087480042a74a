//! The stock audit, sans-I/O: both sides' figures and Tillbridge's own view in, every
//! discrepancy with its cause out.
//!
//! The caller (`tillbridge audit`) reads the POS (every stock level of the mapped locations,
//! the catalog's variation → SKU mapping), Commerce (every source item of the mapped sources,
//! and whether each SKU exists as a product) and Tillbridge's view (the engine restored from its
//! snapshot and stored records, corrected by the outbox), and hands them over as plain data.
//! [`audit`] compares them against the stock contract (see [`super::ledger`]):
//!
//! > Commerce source quantity = max(POS on-hand, 0) + units the POS already fulfilled for web
//! > orders whose Commerce shipment does not exist yet.
//!
//! A *discrepancy* is a key where Commerce does not hold the POS figure, or does not hold what
//! the contract asks for, or where the SKU cannot be synced at all. Each one carries its
//! [`Cause`]s, and each cause a [`Verdict`]: **expected** (the contract or the sync's own pace
//! explains it: units in flight, a push queued or on its way, a till figure Tillbridge has not
//! read yet), **action** (explained, but a person must fix something: a SKU missing in
//! Commerce, a variation without a SKU, a shared SKU, a missing source item, a refused push) or
//! **unexplained** (Commerce changed behind the sync's back: the real problems). A
//! discrepancy's verdict is its worst cause's.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ledger::{Busy, InFlight, StockEntry, StockKey};
use super::orders::{OrderFlow, ShipmentState};
use super::types::{Command, CommandKind, RecordState};
use crate::pos::{Sku, SourceCode, Timestamp};

// ---------------------------------------------------------------------------------------------
// inputs

/// The POS side of a key, as read now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pos", rename_all = "snake_case")]
pub enum PosSide {
    /// The till's figure for the one variation carrying the SKU. `as_of: None`: the snapshot
    /// has no count for it at this location, which means none on hand.
    Figure {
        on_hand: Decimal,
        as_of: Option<Timestamp>,
    },
    /// No POS variation carries the SKU.
    NotAtPos,
    /// The variation does not track stock at the POS: there is nothing to compare.
    Untracked,
    /// Several POS variations carry the SKU: none of them is synced. `on_hand`: their total.
    SharedSku {
        variations: Vec<String>,
        on_hand: Decimal,
    },
}

/// A Commerce source item as read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommerceItem {
    pub quantity: Decimal,
    pub in_stock: bool,
}

/// A POS figure as Tillbridge last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFigure {
    pub on_hand: Decimal,
    pub as_of: Timestamp,
    /// When Tillbridge received it (a push of it is due since then).
    pub received_at: Timestamp,
}

/// Tillbridge's view of one key: the engine's ledger, corrected by the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncView {
    pub pos: Option<SeenFigure>,
    /// Units handed over at the till whose Commerce shipment does not exist yet.
    pub in_flight: Vec<InFlight>,
    /// What Commerce holds as far as Tillbridge knows (`None`: never confirmed).
    pub confirmed: Option<Decimal>,
    pub confirmed_at: Option<Timestamp>,
    /// A push sent and not answered yet: its quantity and when it was sent (`None`: not
    /// known, the engine's saved state only says it is on its way).
    pub push_in_progress: Option<(Decimal, Option<Timestamp>)>,
    /// The last push failed and is retried: what went wrong.
    pub push_retrying: Option<String>,
    /// Commerce refused the key (an exception is open): its message.
    pub refused: Option<String>,
    /// Where the Commerce shipment of each order with units in flight here stands, when
    /// Tillbridge has tried to create it.
    pub shipments: BTreeMap<String, ShipmentStage>,
}

/// Where a Commerce shipment for units in flight stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum ShipmentStage {
    /// Queued, or not tried yet.
    #[default]
    NotCreated,
    /// Sent to Commerce, no answer yet.
    InProgress,
    /// The last attempt failed (retried, or an exception is open): what Commerce said.
    LastAttemptFailed { detail: String },
}

impl SyncView {
    /// The engine's ledger entry as a view (the outbox may correct it: [`apply_outbox`]).
    pub fn from_entry(entry: &StockEntry) -> Self {
        Self {
            pos: entry.pos.as_ref().map(|p| SeenFigure {
                on_hand: p.on_hand,
                as_of: p.as_of,
                received_at: p.received_at,
            }),
            in_flight: entry.in_flight.clone(),
            confirmed: entry.commerce,
            confirmed_at: None,
            push_in_progress: match entry.busy {
                Some(Busy::Push { .. }) => entry.sending.map(|q| (q, None)),
                _ => None,
            },
            push_retrying: None,
            refused: entry.refused.clone(),
            shipments: BTreeMap::new(),
        }
    }

    /// What Tillbridge wants Commerce to hold for the figure it last saw.
    fn seen_target(&self) -> Option<Decimal> {
        self.pos
            .map(|p| p.on_hand.max(Decimal::ZERO) + reflected(&self.in_flight, Some(p.as_of)))
    }
}

/// In-flight units a POS figure taken at `as_of` already reflects (all of them when the
/// figure has no time: an absent count is taken as current).
fn reflected(in_flight: &[InFlight], as_of: Option<Timestamp>) -> Decimal {
    in_flight
        .iter()
        .filter(|f| as_of.is_none_or(|t| f.deducted_at.as_millis() <= t.as_millis()))
        .map(|f| f.units)
        .sum()
}

/// Everything known about one (SKU, source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    pub key: StockKey,
    pub pos: PosSide,
    /// `None`: no source item for the SKU at this source.
    pub commerce: Option<CommerceItem>,
    /// Whether the SKU exists as a Commerce product (`None`: not checked).
    pub product_exists: Option<bool>,
    /// `None`: Tillbridge has never seen the key.
    pub sync: Option<SyncView>,
}

/// A POS variation with stock at a mapped location that has no SKU at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsyncedVariation {
    pub variation: String,
    pub source: SourceCode,
    pub on_hand: Decimal,
}

/// What [`audit`] compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditInput {
    pub now: Timestamp,
    pub keys: Vec<KeyFacts>,
    pub unsynced: Vec<UnsyncedVariation>,
}

// ---------------------------------------------------------------------------------------------
// outputs

/// How a cause weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Explained by the contract or the sync's pace; nothing to do.
    Expected,
    /// Explained, and a person must fix something.
    Action,
    /// Not explained: Commerce changed outside Tillbridge.
    Unexplained,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Expected => "expected",
            Verdict::Action => "action",
            Verdict::Unexplained => "UNEXPLAINED",
        }
    }
}

/// Why a key differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    /// Units handed over at the till for a web order whose Commerce shipment does not exist yet:
    /// Commerce keeps them on top of the POS figure until the shipment deducts them.
    InFlight {
        order: String,
        units: Decimal,
        shipment: ShipmentStage,
    },
    /// The till oversold; Commerce gets 0.
    NegativeOnHand { on_hand: Decimal },
    /// Tillbridge holds the newest figure and has not confirmed its push yet.
    PushPending {
        target: Decimal,
        /// Milliseconds since the figure arrived.
        queued_ms: Option<i64>,
        /// The last attempt failed (retrying): why.
        retrying: Option<String>,
    },
    /// A push carrying the right quantity is on its way.
    PushInProgress {
        quantity: Decimal,
        since_ms: Option<i64>,
    },
    /// The till changed after Tillbridge's last read; Commerce holds the earlier figure.
    PosNewer {
        till_as_of: Option<Timestamp>,
        seen_as_of: Option<Timestamp>,
    },
    /// Commerce refused the quantity (an exception is open).
    PushRefused { message: String },
    /// No Commerce product has the SKU.
    SkuMissingInCommerce,
    /// The product exists, but has no source item at this source.
    SourceItemMissing { confirmed: Option<Decimal> },
    /// A POS variation with stock has no SKU.
    VariationWithoutSku { variation: String },
    /// Several POS variations carry the SKU.
    SharedSku { variations: Vec<String> },
    /// Commerce holds stock at a store's source for a SKU no POS variation carries.
    NotAtPos,
    /// Commerce holds neither what the contract asks nor anything Tillbridge sent.
    Drift {
        expected: Decimal,
        confirmed: Option<Decimal>,
    },
    /// The quantity is right but the stock status says otherwise.
    StatusDrift { in_stock: bool },
}

fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 120 {
        format!("{s} s ago")
    } else if s < 7200 {
        format!("{} min ago", s / 60)
    } else {
        format!("{} h ago", s / 3600)
    }
}

fn qty(d: Decimal) -> String {
    d.normalize().to_string()
}

impl Cause {
    pub fn verdict(&self) -> Verdict {
        match self {
            Cause::InFlight { .. }
            | Cause::NegativeOnHand { .. }
            | Cause::PushPending { .. }
            | Cause::PushInProgress { .. }
            | Cause::PosNewer { .. } => Verdict::Expected,
            Cause::PushRefused { .. }
            | Cause::SkuMissingInCommerce
            | Cause::SourceItemMissing { .. }
            | Cause::VariationWithoutSku { .. }
            | Cause::SharedSku { .. }
            | Cause::NotAtPos => Verdict::Action,
            Cause::Drift { .. } | Cause::StatusDrift { .. } => Verdict::Unexplained,
        }
    }

    /// The machine name (`in_flight`, `drift`, ...), as in the JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::InFlight { .. } => "in_flight",
            Cause::NegativeOnHand { .. } => "negative_on_hand",
            Cause::PushPending { .. } => "push_pending",
            Cause::PushInProgress { .. } => "push_in_progress",
            Cause::PosNewer { .. } => "pos_newer",
            Cause::PushRefused { .. } => "push_refused",
            Cause::SkuMissingInCommerce => "sku_missing_in_commerce",
            Cause::SourceItemMissing { .. } => "source_item_missing",
            Cause::VariationWithoutSku { .. } => "variation_without_sku",
            Cause::SharedSku { .. } => "shared_sku",
            Cause::NotAtPos => "not_at_pos",
            Cause::Drift { .. } => "drift",
            Cause::StatusDrift { .. } => "status_drift",
        }
    }

    /// The cause as a sentence for people (what it is, and what to do when something must be
    /// done). `key` names the SKU and source it is about.
    pub fn sentence(&self, sku: Option<&Sku>, source: &SourceCode) -> String {
        let sku = sku.map_or_else(|| "the item".to_owned(), ToString::to_string);
        match self {
            Cause::InFlight {
                order,
                units,
                shipment,
            } => format!(
                "in flight: {} units fulfilled at the till for order {order}, shipment {}",
                qty(*units),
                match shipment {
                    ShipmentStage::NotCreated => "not created yet".to_owned(),
                    ShipmentStage::InProgress => "being created now".to_owned(),
                    ShipmentStage::LastAttemptFailed { detail } => format!(
                        "not created yet (the last attempt failed: {detail}; see the order's exception)"
                    ),
                }
            ),
            Cause::NegativeOnHand { on_hand } => format!(
                "the till reports {} on hand (it sold stock it did not have); Commerce gets 0 until the shelf is counted",
                qty(*on_hand)
            ),
            Cause::PushPending {
                target,
                queued_ms,
                retrying,
            } => {
                let when = queued_ms.map_or_else(String::new, |ms| format!(" (queued {})", ago(ms)));
                match retrying {
                    Some(why) => format!(
                        "push pending: {} to {sku}@{source}{when}, retrying after a failed attempt: {why}",
                        qty(*target)
                    ),
                    None => format!("push pending: {} to {sku}@{source}{when}", qty(*target)),
                }
            }
            Cause::PushInProgress { quantity, since_ms } => format!(
                "push in progress: {} sent{}, answer not in yet",
                qty(*quantity),
                since_ms.map_or_else(String::new, |ms| format!(" {}", ago(ms)))
            ),
            Cause::PosNewer {
                till_as_of,
                seen_as_of,
            } => match (till_as_of, seen_as_of) {
                (Some(t), Some(s)) => format!(
                    "POS figure newer than the last push: the till changed at {t}, Tillbridge last read the figure of {s} (the next poll picks it up)"
                ),
                (Some(t), None) => format!(
                    "POS figure newer than the last push: Tillbridge has not read the till's figure of {t} yet"
                ),
                (None, _) => "POS figure newer than the last push: the till has no count for it any more, Tillbridge has not read that yet".to_owned(),
            },
            Cause::PushRefused { message } => format!(
                "Commerce refused the push ({message}); check the SKU and its source assignment, then retry the exception"
            ),
            Cause::SkuMissingInCommerce => format!(
                "SKU missing in Commerce: there is no product {sku}; create it in Commerce (stock written for it is not for sale)"
            ),
            Cause::SourceItemMissing { confirmed } => match confirmed {
                Some(c) => format!(
                    "source item missing: {sku} has no source item at {source} although Tillbridge confirmed {} there; it was deleted or unassigned in Commerce: assign the source again",
                    qty(*c)
                ),
                None => format!(
                    "source item missing: {sku} is not assigned to source {source} in Commerce; assign it (or let Tillbridge push it)"
                ),
            },
            Cause::VariationWithoutSku { variation } => format!(
                "variation without SKU: POS variation {variation} has stock but no SKU; give it one at the POS (not synced until then)"
            ),
            Cause::SharedSku { variations } => format!(
                "shared SKU: {sku} is used by POS variations {}; give each its own SKU at the POS (not synced until then)",
                variations.join(", ")
            ),
            Cause::NotAtPos => format!(
                "no POS variation carries {sku}: Commerce's quantity at {source} is not synced; add the SKU at the till or zero it in Commerce"
            ),
            Cause::Drift {
                expected,
                confirmed,
            } => match confirmed {
                Some(c) => format!(
                    "unexplained drift: Tillbridge expects {} and last confirmed {} in Commerce; Commerce was changed outside Tillbridge",
                    qty(*expected),
                    qty(*c)
                ),
                None => format!(
                    "unexplained drift: Tillbridge expects {} and never confirmed a value here; Commerce holds a figure Tillbridge did not send",
                    qty(*expected)
                ),
            },
            Cause::StatusDrift { in_stock } => format!(
                "status drift: the quantity is right but Commerce marks it {}; Tillbridge writes the status from the quantity",
                if *in_stock { "in stock" } else { "out of stock" }
            ),
        }
    }
}

/// One discrepancy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    /// `SKU@source`, or `variation V@source` for a variation without a SKU.
    pub subject: String,
    pub sku: Option<Sku>,
    pub source: SourceCode,
    /// The POS variation, for a variation without a SKU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    /// The POS on-hand now (`None`: the POS has no figure that maps here).
    pub pos: Option<Decimal>,
    /// Commerce's source quantity now (`None`: no source item).
    pub commerce: Option<Decimal>,
    /// What the contract asks Commerce to hold (`None`: not synced).
    pub expected: Option<Decimal>,
    pub verdict: Verdict,
    pub causes: Vec<ExplainedCause>,
}

/// A cause with its verdict and sentence (what the JSON and the table show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainedCause {
    #[serde(flatten)]
    pub cause: Cause,
    pub verdict: Verdict,
    pub text: String,
}

/// The audit's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditReport {
    /// Keys (SKU, source) compared.
    pub compared: usize,
    pub discrepancies: Vec<Discrepancy>,
    pub expected: usize,
    pub action: usize,
    pub unexplained: usize,
}

impl AuditReport {
    /// Every discrepancy is explained (expected, or explained and waiting for a person).
    pub fn all_explained(&self) -> bool {
        self.unexplained == 0
    }
}

// ---------------------------------------------------------------------------------------------
// the comparison

fn discrepancy(
    subject: String,
    sku: Option<Sku>,
    source: SourceCode,
    pos: Option<Decimal>,
    commerce: Option<Decimal>,
    expected: Option<Decimal>,
    causes: Vec<Cause>,
) -> Discrepancy {
    let verdict = causes
        .iter()
        .map(Cause::verdict)
        .max()
        .unwrap_or(Verdict::Unexplained);
    let causes = causes
        .into_iter()
        .map(|c| ExplainedCause {
            verdict: c.verdict(),
            text: c.sentence(sku.as_ref(), &source),
            cause: c,
        })
        .collect();
    Discrepancy {
        subject,
        sku,
        source,
        variation: None,
        pos,
        commerce,
        expected,
        verdict,
        causes,
    }
}

/// Why Commerce holds `q` although the contract asks for `expected`: the sync's own state, or
/// drift.
fn explain_residual(
    sync: Option<&SyncView>,
    till: (Decimal, Option<Timestamp>),
    q: Option<Decimal>,
    expected: Decimal,
    now: Timestamp,
) -> Vec<Cause> {
    let (on_hand, till_as_of) = till;
    let Some(s) = sync else {
        // Tillbridge never saw the key: the till's figure is news to it.
        return vec![Cause::PosNewer {
            till_as_of,
            seen_as_of: None,
        }];
    };
    let mut causes = Vec::new();
    if let Some(message) = &s.refused {
        causes.push(Cause::PushRefused {
            message: message.clone(),
        });
        return causes;
    }
    if let Some((quantity, since)) = s.push_in_progress
        && quantity == expected
    {
        return vec![Cause::PushInProgress {
            quantity,
            since_ms: since.map(|t| now.as_millis() - t.as_millis()),
        }];
    }
    let seen_current = s.pos.is_some_and(|p| p.on_hand == on_hand);
    if !seen_current {
        // The till moved after Tillbridge's last read. Explained when Commerce holds what
        // Tillbridge wants (or last confirmed) for the figure it saw.
        let seen_as_of = s.pos.map(|p| p.as_of);
        if q.is_none() || q == s.seen_target() || q == s.confirmed {
            return vec![Cause::PosNewer {
                till_as_of,
                seen_as_of,
            }];
        }
    } else if s.confirmed != Some(expected) {
        // Tillbridge holds the current figure and has not confirmed its push: it is queued
        // (or retried); the absolute write will set Commerce right whatever it holds now.
        return vec![Cause::PushPending {
            target: expected,
            queued_ms: s.pos.map(|p| now.as_millis() - p.received_at.as_millis()),
            retrying: s.push_retrying.clone(),
        }];
    }
    let Some(_) = q else {
        return vec![Cause::SourceItemMissing {
            confirmed: s.confirmed,
        }];
    };
    vec![Cause::Drift {
        expected,
        confirmed: s.confirmed,
    }]
}

fn audit_key(k: &KeyFacts, now: Timestamp) -> Option<Discrepancy> {
    let subject = k.key.to_string();
    let sku = Some(k.key.sku.clone());
    let source = k.key.source.clone();
    let q = k.commerce.map(|c| c.quantity);
    let missing_product = k.product_exists == Some(false);
    match &k.pos {
        PosSide::Untracked => None,
        PosSide::NotAtPos => {
            let mut causes = Vec::new();
            if q.is_some_and(|q| q != Decimal::ZERO) {
                causes.push(Cause::NotAtPos);
            }
            if missing_product && !causes.is_empty() {
                causes.push(Cause::SkuMissingInCommerce);
            }
            (!causes.is_empty()).then(|| discrepancy(subject, sku, source, None, q, None, causes))
        }
        PosSide::SharedSku {
            variations,
            on_hand,
        } => {
            let same = q.unwrap_or(Decimal::ZERO) == *on_hand;
            (!same).then(|| {
                discrepancy(
                    subject,
                    sku,
                    source,
                    Some(*on_hand),
                    q,
                    None,
                    vec![Cause::SharedSku {
                        variations: variations.clone(),
                    }],
                )
            })
        }
        PosSide::Figure { on_hand, as_of } => {
            let in_flight: &[InFlight] = k.sync.as_ref().map_or(&[], |s| &s.in_flight);
            let carried = reflected(in_flight, *as_of);
            let expected = (*on_hand).max(Decimal::ZERO) + carried;
            let status_ok = k
                .commerce
                .is_none_or(|c| c.in_stock == (c.quantity > Decimal::ZERO));
            let differs = match q {
                Some(q) => q != *on_hand || q != expected || !status_ok,
                // No source item and nothing to hold: the same as none on hand.
                None => expected != Decimal::ZERO,
            };
            // A SKU Commerce has no product for matters where either side holds stock.
            let holds_stock = !on_hand.is_zero() || k.commerce.is_some();
            let reportable = differs || (missing_product && holds_stock);
            if !reportable {
                return None;
            }
            let mut causes = Vec::new();
            if missing_product {
                causes.push(Cause::SkuMissingInCommerce);
            }
            if *on_hand < Decimal::ZERO {
                causes.push(Cause::NegativeOnHand { on_hand: *on_hand });
            }
            let mut orders: BTreeMap<&str, Decimal> = BTreeMap::new();
            for f in in_flight
                .iter()
                .filter(|f| as_of.is_none_or(|t| f.deducted_at.as_millis() <= t.as_millis()))
            {
                *orders.entry(f.order.as_str()).or_default() += f.units;
            }
            for (order, units) in orders {
                causes.push(Cause::InFlight {
                    order: order.to_owned(),
                    units,
                    shipment: k
                        .sync
                        .as_ref()
                        .and_then(|s| s.shipments.get(order).cloned())
                        .unwrap_or_default(),
                });
            }
            match q {
                Some(q) if q == expected => {
                    if !status_ok {
                        causes.push(Cause::StatusDrift {
                            in_stock: k.commerce.is_some_and(|c| c.in_stock),
                        });
                    }
                }
                // A missing product explains a missing source item.
                None if missing_product => {}
                _ => causes.extend(explain_residual(
                    k.sync.as_ref(),
                    (*on_hand, *as_of),
                    q,
                    expected,
                    now,
                )),
            }
            Some(discrepancy(
                subject,
                sku,
                source,
                Some(*on_hand),
                q,
                Some(expected),
                causes,
            ))
        }
    }
}

/// Compare both sides and Tillbridge's view; every discrepancy with its causes, in subject
/// order.
pub fn audit(input: &AuditInput) -> AuditReport {
    let mut discrepancies: Vec<Discrepancy> = input
        .keys
        .iter()
        .filter_map(|k| audit_key(k, input.now))
        .collect();
    for v in input.unsynced.iter().filter(|v| v.on_hand != Decimal::ZERO) {
        let mut d = discrepancy(
            format!("variation {}@{}", v.variation, v.source),
            None,
            v.source.clone(),
            Some(v.on_hand),
            None,
            None,
            vec![Cause::VariationWithoutSku {
                variation: v.variation.clone(),
            }],
        );
        d.variation = Some(v.variation.clone());
        discrepancies.push(d);
    }
    discrepancies.sort_by(|a, b| a.subject.cmp(&b.subject));
    let count = |v: Verdict| discrepancies.iter().filter(|d| d.verdict == v).count();
    AuditReport {
        compared: input.keys.len(),
        expected: count(Verdict::Expected),
        action: count(Verdict::Action),
        unexplained: count(Verdict::Unexplained),
        discrepancies,
    }
}

// ---------------------------------------------------------------------------------------------
// the outbox over the engine's view

/// An outbox row as the audit needs it: the command, where it stands, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFact {
    pub command: Command,
    pub state: RecordState,
    pub detail: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Correct the engine's views with the commands the outbox holds after its snapshot.
///
/// The engine restored from a snapshot and the records after it knows every POS figure and
/// every handover, but not the pushes and shipments decided after the snapshot (decisions are
/// not records; a restarted runner re-decides them). The outbox has them: in command order, a
/// confirmed push sets what Commerce holds, one sent and not answered is in progress, a failed
/// one is retried; a confirmed shipment the engine does not know (its parcel number is above
/// the order's count) drops its in-flight units and deducts what Commerce holds, as Magento
/// did; one sent is in progress, one that failed says why. `orders`: the engine's orders (a
/// shipment names order item ids, not SKUs; the engine's own shipment states come first).
pub fn apply_outbox(
    views: &mut BTreeMap<StockKey, SyncView>,
    orders: &BTreeMap<String, OrderFlow>,
    facts: &[CommandFact],
) {
    for (order, flow) in orders {
        let stage = match &flow.shipment {
            ShipmentState::Pending {
                command: Some(_), ..
            } => ShipmentStage::InProgress,
            ShipmentState::Failed { reason } => ShipmentStage::LastAttemptFailed {
                detail: reason.clone(),
            },
            _ => continue,
        };
        for v in views.values_mut() {
            if v.in_flight.iter().any(|f| &f.order == order) {
                v.shipments.insert(order.clone(), stage.clone());
            }
        }
    }
    let mut facts: Vec<&CommandFact> = facts.iter().collect();
    facts.sort_by_key(|f| f.command.id);
    for f in facts {
        let done = matches!(
            f.state,
            RecordState::Confirmed | RecordState::Verified | RecordState::Settled
        );
        match &f.command.kind {
            CommandKind::PushSourceItems { items } => {
                for item in items {
                    let key = StockKey::new(item.sku.clone(), item.source.clone());
                    let v = views.entry(key).or_default();
                    if done {
                        v.confirmed = Some(item.quantity);
                        v.confirmed_at = Some(f.updated_at);
                        v.push_in_progress = None;
                        v.push_retrying = None;
                    } else if matches!(f.state, RecordState::Failed | RecordState::Stalled) {
                        v.push_in_progress = None;
                        v.push_retrying = Some(f.detail.clone());
                    } else {
                        v.push_in_progress = Some((item.quantity, Some(f.created_at)));
                    }
                }
            }
            CommandKind::CreateShipment {
                order,
                source,
                items,
                ..
            } => {
                let Some(flow) = orders.get(order) else {
                    continue;
                };
                let parcel: u32 = f
                    .command
                    .idempotency_key
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                for (item_id, units) in items {
                    let Some(line) = flow.order.lines.iter().find(|l| l.item_id == *item_id) else {
                        continue;
                    };
                    if parcel <= flow.shipments {
                        continue; // the engine knows this parcel
                    }
                    let key = StockKey::new(line.sku.clone(), source.clone());
                    let v = views.entry(key).or_default();
                    if done {
                        drop_in_flight(&mut v.in_flight, order, *units);
                        v.confirmed = v.confirmed.map(|c| c - *units);
                        v.shipments.remove(order);
                    } else if matches!(f.state, RecordState::Failed | RecordState::Stalled) {
                        v.shipments.insert(
                            order.clone(),
                            ShipmentStage::LastAttemptFailed {
                                detail: f.detail.clone(),
                            },
                        );
                    } else {
                        v.shipments.insert(order.clone(), ShipmentStage::InProgress);
                    }
                }
            }
            _ => {}
        }
    }
}

fn drop_in_flight(in_flight: &mut Vec<InFlight>, order: &str, units: Decimal) {
    let mut left = units;
    in_flight.retain_mut(|f| {
        if f.order != order || left <= Decimal::ZERO {
            return true;
        }
        let take = f.units.min(left);
        f.units -= take;
        left -= take;
        f.units > Decimal::ZERO
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::orders::{Delivery, WebOrder, WebOrderLine};
    use crate::sync::types::SourceItemWrite;
    use rust_decimal_macros::dec;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn key(sku: &str, source: &str) -> StockKey {
        StockKey::new(
            Sku::parse(sku).expect("sku"),
            SourceCode::parse(source).expect("source"),
        )
    }

    fn figure(on_hand: Decimal, as_of: i64) -> PosSide {
        PosSide::Figure {
            on_hand,
            as_of: Some(t(as_of)),
        }
    }

    fn item(q: Decimal) -> Option<CommerceItem> {
        Some(CommerceItem {
            quantity: q,
            in_stock: q > Decimal::ZERO,
        })
    }

    /// Tillbridge saw `on_hand` at `as_of` (received 1 s later) and confirmed `confirmed`.
    fn synced(on_hand: Decimal, as_of: i64, confirmed: Option<Decimal>) -> Option<SyncView> {
        Some(SyncView {
            pos: Some(SeenFigure {
                on_hand,
                as_of: t(as_of),
                received_at: t(as_of + 1_000),
            }),
            confirmed,
            ..SyncView::default()
        })
    }

    fn facts(pos: PosSide, commerce: Option<CommerceItem>, sync: Option<SyncView>) -> KeyFacts {
        KeyFacts {
            key: key("MUG", "york"),
            pos,
            commerce,
            product_exists: Some(true),
            sync,
        }
    }

    fn run(keys: Vec<KeyFacts>) -> AuditReport {
        audit(&AuditInput {
            now: t(100_000),
            keys,
            unsynced: Vec::new(),
        })
    }

    fn kinds(r: &AuditReport) -> Vec<(String, Vec<&'static str>, Verdict)> {
        r.discrepancies
            .iter()
            .map(|d| {
                (
                    d.subject.clone(),
                    d.causes.iter().map(|c| c.cause.kind()).collect(),
                    d.verdict,
                )
            })
            .collect()
    }

    #[test]
    fn a_key_that_matches_is_no_discrepancy() {
        let r = run(vec![facts(
            figure(dec!(5), 1_000),
            item(dec!(5)),
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(r.compared, 1);
        assert!(r.discrepancies.is_empty(), "{r:?}");
        assert!(r.all_explained());
    }

    #[test]
    fn units_fulfilled_at_the_till_before_the_shipment_are_expected() {
        let mut sync = synced(dec!(3), 5_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.in_flight.push(InFlight {
                order: "000000123".into(),
                units: dec!(2),
                deducted_at: t(4_000),
            });
        }
        let r = run(vec![facts(figure(dec!(3), 5_000), item(dec!(5)), sync)]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["in_flight"], Verdict::Expected)]
        );
        let d = &r.discrepancies[0];
        assert_eq!(
            (d.pos, d.commerce, d.expected),
            (Some(dec!(3)), Some(dec!(5)), Some(dec!(5)))
        );
        assert_eq!(
            d.causes[0].text,
            "in flight: 2 units fulfilled at the till for order 000000123, shipment not created yet"
        );
        assert!(r.all_explained());
    }

    #[test]
    fn in_flight_units_count_only_against_figures_that_reflect_them() {
        // The till's figure (5) predates the handover: Commerce should hold 5, not 7.
        let mut sync = synced(dec!(5), 1_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.in_flight.push(InFlight {
                order: "7".into(),
                units: dec!(2),
                deducted_at: t(9_000),
            });
        }
        let r = run(vec![facts(figure(dec!(5), 1_000), item(dec!(5)), sync)]);
        assert!(r.discrepancies.is_empty(), "{r:?}");
    }

    #[test]
    fn a_negative_till_figure_puts_zero_in_commerce() {
        let r = run(vec![facts(
            figure(dec!(-2), 1_000),
            item(dec!(0)),
            synced(dec!(-2), 1_000, Some(dec!(0))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![(
                "MUG@york".into(),
                vec!["negative_on_hand"],
                Verdict::Expected
            )]
        );
    }

    #[test]
    fn a_figure_not_pushed_yet_is_a_pending_push_with_its_age() {
        // Tillbridge received 4 at 61 s; Commerce still holds the 5 it confirmed before.
        let r = run(vec![facts(
            figure(dec!(4), 60_000),
            item(dec!(5)),
            synced(dec!(4), 60_000, Some(dec!(5))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["push_pending"], Verdict::Expected)]
        );
        assert_eq!(
            r.discrepancies[0].causes[0].text,
            "push pending: 4 to MUG@york (queued 39 s ago)"
        );
    }

    #[test]
    fn a_failed_push_being_retried_says_why() {
        let mut sync = synced(dec!(4), 60_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.push_retrying = Some("attempt 1: 503 Service Unavailable".into());
        }
        let r = run(vec![facts(figure(dec!(4), 60_000), item(dec!(5)), sync)]);
        let d = &r.discrepancies[0];
        assert_eq!(d.verdict, Verdict::Expected);
        assert!(
            d.causes[0]
                .text
                .ends_with("retrying after a failed attempt: attempt 1: 503 Service Unavailable"),
            "{}",
            d.causes[0].text
        );
    }

    #[test]
    fn a_push_on_its_way_is_in_progress() {
        let mut sync = synced(dec!(4), 60_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.push_in_progress = Some((dec!(4), Some(t(97_000))));
        }
        let r = run(vec![facts(figure(dec!(4), 60_000), item(dec!(5)), sync)]);
        assert_eq!(
            kinds(&r),
            vec![(
                "MUG@york".into(),
                vec!["push_in_progress"],
                Verdict::Expected
            )]
        );
        assert!(r.discrepancies[0].causes[0].text.contains("sent 3 s ago"));
    }

    #[test]
    fn a_push_the_saved_engine_has_on_its_way_is_in_progress() {
        let mut e = StockEntry::default();
        e.observe(dec!(4), t(60_000), t(61_000));
        e.commerce = Some(dec!(5));
        e.sending = Some(dec!(4));
        e.busy = Some(Busy::Push { command: 9 });
        let r = run(vec![facts(
            figure(dec!(4), 60_000),
            item(dec!(5)),
            Some(SyncView::from_entry(&e)),
        )]);
        assert_eq!(
            r.discrepancies[0].causes[0].text,
            "push in progress: 4 sent, answer not in yet"
        );
    }

    #[test]
    fn a_till_change_not_read_yet_is_a_newer_pos_figure() {
        // A sale at the till (5 → 3) after Tillbridge's last read; Commerce holds 5.
        let r = run(vec![facts(
            figure(dec!(3), 90_000),
            item(dec!(5)),
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["pos_newer"], Verdict::Expected)]
        );
        // A key Tillbridge never saw is news too.
        let r = run(vec![facts(figure(dec!(3), 90_000), item(dec!(0)), None)]);
        assert_eq!(kinds(&r)[0].1, vec!["pos_newer"]);
    }

    #[test]
    fn commerce_changed_behind_the_syncs_back_is_unexplained_drift() {
        let r = run(vec![facts(
            figure(dec!(5), 1_000),
            item(dec!(9)),
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["drift"], Verdict::Unexplained)]
        );
        assert!(!r.all_explained());
        assert_eq!(r.unexplained, 1);
        assert_eq!(
            r.discrepancies[0].causes[0].text,
            "unexplained drift: Tillbridge expects 5 and last confirmed 5 in Commerce; Commerce was changed outside Tillbridge"
        );
        // Also when the till moved on meanwhile, if Commerce holds neither figure.
        let r = run(vec![facts(
            figure(dec!(3), 90_000),
            item(dec!(9)),
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(kinds(&r)[0].1, vec!["drift"]);
    }

    #[test]
    fn a_wrong_stock_status_is_drift_too() {
        let r = run(vec![facts(
            figure(dec!(5), 1_000),
            Some(CommerceItem {
                quantity: dec!(5),
                in_stock: false,
            }),
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![(
                "MUG@york".into(),
                vec!["status_drift"],
                Verdict::Unexplained
            )]
        );
    }

    #[test]
    fn a_refused_push_needs_a_person() {
        let mut sync = synced(dec!(4), 60_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.refused = Some("Could not save Source Item".into());
        }
        let r = run(vec![facts(figure(dec!(4), 60_000), item(dec!(5)), sync)]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["push_refused"], Verdict::Action)]
        );
    }

    #[test]
    fn a_sku_without_a_commerce_product_is_reported_even_when_quantities_match() {
        let mut f = facts(
            figure(dec!(4), 1_000),
            item(dec!(4)),
            synced(dec!(4), 1_000, Some(dec!(4))),
        );
        f.product_exists = Some(false);
        let r = run(vec![f.clone()]);
        assert_eq!(
            kinds(&r),
            vec![(
                "MUG@york".into(),
                vec!["sku_missing_in_commerce"],
                Verdict::Action
            )]
        );
        // Without a source item either, the missing product is the whole story.
        f.commerce = None;
        assert_eq!(
            kinds(&run(vec![f.clone()]))[0].1,
            vec!["sku_missing_in_commerce"]
        );
        // Where neither side holds any, it is not repeated.
        f.pos = PosSide::Figure {
            on_hand: dec!(0),
            as_of: None,
        };
        assert!(run(vec![f]).discrepancies.is_empty());
    }

    #[test]
    fn a_refused_shipment_says_what_commerce_answered() {
        let k = key("MUG", "york");
        let mut sync = synced(dec!(3), 5_000, Some(dec!(5)));
        if let Some(s) = sync.as_mut() {
            s.in_flight.push(InFlight {
                order: "000000123".into(),
                units: dec!(2),
                deducted_at: t(4_000),
            });
        }
        let mut views = BTreeMap::from([(k, sync.clone().unwrap_or_default())]);
        let mut flow = order_flow(0);
        flow.shipment = ShipmentState::Failed {
            reason: "400: Could not save a shipment".into(),
        };
        apply_outbox(
            &mut views,
            &BTreeMap::from([("000000123".to_owned(), flow)]),
            &[],
        );
        let r = run(vec![facts(
            figure(dec!(3), 5_000),
            item(dec!(5)),
            views.into_values().next(),
        )]);
        assert_eq!(
            r.discrepancies[0].causes[0].text,
            "in flight: 2 units fulfilled at the till for order 000000123, shipment not created yet (the last attempt failed: 400: Could not save a shipment; see the order's exception)"
        );
        assert_eq!(r.discrepancies[0].verdict, Verdict::Expected);
    }

    #[test]
    fn a_deleted_source_item_is_missing_not_drift() {
        let r = run(vec![facts(
            figure(dec!(5), 1_000),
            None,
            synced(dec!(5), 1_000, Some(dec!(5))),
        )]);
        assert_eq!(
            kinds(&r),
            vec![(
                "MUG@york".into(),
                vec!["source_item_missing"],
                Verdict::Action
            )]
        );
        assert!(
            r.discrepancies[0].causes[0]
                .text
                .contains("confirmed 5 there")
        );
        // No source item and nothing on the shelf is no discrepancy.
        let r = run(vec![facts(
            PosSide::Figure {
                on_hand: dec!(0),
                as_of: None,
            },
            None,
            None,
        )]);
        assert!(r.discrepancies.is_empty(), "{r:?}");
    }

    #[test]
    fn variations_without_a_sku_or_sharing_one_are_not_synced() {
        let mut shared = facts(
            PosSide::SharedSku {
                variations: vec!["CAPRED".into(), "CAPBLUE".into()],
                on_hand: dec!(7),
            },
            None,
            None,
        );
        shared.key = key("CAP", "york");
        let r = audit(&AuditInput {
            now: t(0),
            keys: vec![shared],
            unsynced: vec![
                UnsyncedVariation {
                    variation: "WRAPVAR".into(),
                    source: SourceCode::parse("york").expect("source"),
                    on_hand: dec!(7),
                },
                UnsyncedVariation {
                    variation: "EMPTY".into(),
                    source: SourceCode::parse("york").expect("source"),
                    on_hand: dec!(0),
                },
            ],
        });
        assert_eq!(
            kinds(&r),
            vec![
                ("CAP@york".into(), vec!["shared_sku"], Verdict::Action),
                (
                    "variation WRAPVAR@york".into(),
                    vec!["variation_without_sku"],
                    Verdict::Action
                ),
            ]
        );
        assert_eq!(r.action, 2);
        assert!(r.all_explained());
        assert!(
            r.discrepancies[0].causes[0]
                .text
                .contains("CAP is used by POS variations CAPRED, CAPBLUE")
        );
    }

    #[test]
    fn commerce_stock_for_a_sku_no_till_carries_needs_a_person() {
        let r = run(vec![facts(PosSide::NotAtPos, item(dec!(3)), None)]);
        assert_eq!(
            kinds(&r),
            vec![("MUG@york".into(), vec!["not_at_pos"], Verdict::Action)]
        );
        assert!(
            run(vec![facts(PosSide::NotAtPos, item(dec!(0)), None)])
                .discrepancies
                .is_empty()
        );
        assert!(
            run(vec![facts(PosSide::Untracked, item(dec!(3)), None)])
                .discrepancies
                .is_empty()
        );
    }

    fn order_flow(shipments: u32) -> OrderFlow {
        let mut f = OrderFlow::new(WebOrder {
            increment_id: "000000123".into(),
            entity_id: 123,
            stock_id: 2,
            state: "processing".into(),
            updated_at: t(0),
            delivery: Delivery::Ship,
            lines: vec![WebOrderLine {
                item_id: 9,
                sku: Sku::parse("MUG").expect("sku"),
                qty_ordered: dec!(2),
                qty_shipped: dec!(0),
                qty_canceled: dec!(0),
                qty_refunded: dec!(0),
            }],
        });
        f.shipments = shipments;
        f
    }

    fn fact(id: u64, key: &str, kind: CommandKind, state: RecordState) -> CommandFact {
        CommandFact {
            command: Command {
                id,
                idempotency_key: key.into(),
                attempt: 1,
                kind,
            },
            state,
            detail: "attempt 1: 503".into(),
            created_at: t(i64::try_from(id).unwrap_or(0) * 1_000),
            updated_at: t(i64::try_from(id).unwrap_or(0) * 1_000 + 500),
        }
    }

    fn push(q: Decimal) -> CommandKind {
        CommandKind::PushSourceItems {
            items: vec![SourceItemWrite {
                sku: Sku::parse("MUG").expect("sku"),
                source: SourceCode::parse("york").expect("source"),
                quantity: q,
                status: 1,
            }],
        }
    }

    #[test]
    fn the_outbox_tells_confirmed_in_progress_and_retried_pushes() {
        let mut views = BTreeMap::new();
        let orders = BTreeMap::new();
        apply_outbox(
            &mut views,
            &orders,
            &[
                fact(3, "push:3", push(dec!(4)), RecordState::Sent),
                fact(1, "push:1", push(dec!(5)), RecordState::Confirmed),
            ],
        );
        let v = &views[&key("MUG", "york")];
        assert_eq!(v.confirmed, Some(dec!(5)));
        assert_eq!(v.confirmed_at, Some(t(1_500)));
        assert_eq!(v.push_in_progress, Some((dec!(4), Some(t(3_000)))));
        apply_outbox(
            &mut views,
            &orders,
            &[fact(4, "push:4", push(dec!(4)), RecordState::Failed)],
        );
        let v = &views[&key("MUG", "york")];
        assert_eq!(v.push_in_progress, None);
        assert_eq!(v.push_retrying.as_deref(), Some("attempt 1: 503"));
    }

    #[test]
    fn a_shipment_the_engine_missed_drops_its_units_once() {
        let k = key("MUG", "york");
        let mut views = BTreeMap::from([(
            k.clone(),
            SyncView {
                confirmed: Some(dec!(5)),
                in_flight: vec![InFlight {
                    order: "000000123".into(),
                    units: dec!(2),
                    deducted_at: t(0),
                }],
                ..SyncView::default()
            },
        )]);
        let ship = CommandKind::CreateShipment {
            order: "000000123".into(),
            entity_id: 123,
            source: SourceCode::parse("york").expect("source"),
            items: vec![(9, dec!(2))],
            tracking: None,
            comment: String::new(),
        };
        // Known to the engine already (parcel 1, one shipment counted): nothing changes.
        let orders = BTreeMap::from([("000000123".to_owned(), order_flow(1))]);
        let f = fact(
            7,
            "ship:000000123:york:1",
            ship.clone(),
            RecordState::Confirmed,
        );
        apply_outbox(&mut views, &orders, std::slice::from_ref(&f));
        assert_eq!(views[&k].in_flight.len(), 1);
        // Unknown to the engine: in progress while sent, failed with Commerce's words, then
        // the units leave.
        let orders = BTreeMap::from([("000000123".to_owned(), order_flow(0))]);
        let mut sent = f.clone();
        sent.state = RecordState::Sent;
        apply_outbox(&mut views, &orders, &[sent.clone()]);
        assert_eq!(views[&k].shipments["000000123"], ShipmentStage::InProgress);
        sent.state = RecordState::Failed;
        apply_outbox(&mut views, &orders, &[sent]);
        assert_eq!(
            views[&k].shipments["000000123"],
            ShipmentStage::LastAttemptFailed {
                detail: "attempt 1: 503".into()
            }
        );
        apply_outbox(&mut views, &orders, &[f]);
        assert!(views[&k].in_flight.is_empty());
        assert!(views[&k].shipments.is_empty());
        assert_eq!(views[&k].confirmed, Some(dec!(3)));
    }
}
