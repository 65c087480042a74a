//! "Every outbound call is idempotent": how the client makes retries safe for calls that
//! Magento does not make idempotent.
//!
//! Every write takes an [`IdempotencyKey`] from the caller (the sync engine derives it from
//! the decision it executes, e.g. `ship:000000123:store-01:1`). The key goes into the call's
//! [`CallRecord`], into an `X-Tillbridge-Idempotency-Key` request header (Magento ignores it;
//! proxies and the emulator log it), and, for writes that leave a text behind, into a marker
//! `[tillbridge:<key>]` appended to the comment Magento stores with the document.
//!
//! A retry is only dangerous when the failed attempt **may have been applied** (see `retry`):
//! a timeout, a broken connection, a 5xx. 429, 408 and a refused connection are retried
//! freely. What happens after an ambiguous failure depends on the call:
//!
//! | Calls | Why safe | After an ambiguous failure |
//! |---|---|---|
//! | every `GET` | reads | retry |
//! | source items save, source save, links save, `PUT` stock | absolute upserts: applying twice = once | retry |
//! | async/bulk source items | each operation is an absolute upsert, consumers run FIFO; a duplicate bulk re-applies the same values before any later push | retry |
//! | source items delete, links delete, stock delete | deleting twice = once | retry; a 404 after an ambiguous attempt means done |
//! | ship, invoice, refund (order or invoice) | **not idempotent**: a second call creates a second document (a second source deduction) | probe, then retry only if not applied |
//! | order comment | not idempotent (a second history row) | probe by marker |
//! | cancel | a second cancel answers `false` | probe: state `canceled` = applied |
//! | create stock (`POST` without id) | not idempotent | probe: a new stock with that name |
//! | append reservations (our module) | not idempotent (append-only) | probe: rows with the same stock, SKU, quantity and metadata |
//!
//! **The probe** runs after the backoff wait (so a request still running in PHP has time to
//! finish) and answers *applied*, *not applied* or *unknown*:
//!
//! * Documents: list the order's shipments / invoices / credit memos and look for the marker
//!   in their comments (→ applied, with the document id). Then compare the order's per-line
//!   `qty_shipped` / `qty_invoiced` / `qty_refunded` with the **baseline** (the order as read
//!   before the write: the caller's own fresh read in `ShipRequest::baseline` etc., or one
//!   `GET /V1/orders/:id` the client makes before the first attempt): every requested line
//!   moved by at least its quantity → applied (id unknown if no marker was found: the
//!   Commerce does not return document comments); nothing moved → not applied; anything else
//!   → unknown.
//! * *Unknown*, or a probe that itself fails, ends the call with
//!   [`ErrorKind::Ambiguous`](super::errors::ErrorKind::Ambiguous): the engine must reconcile
//!   (read the order) before it tries again, and raises an exception if it cannot.
//!
//! A retry that Magento refuses (a 4xx) after an ambiguous attempt is probed once more: the
//! refusal is often the first attempt having landed late ("The order does not allow a
//! shipment to be created."), and then the call reports that attempt's document.
//!
//! Residual risk, stated: a partial document whose first attempt is still running on the
//! server when the probe reads (slower than the timeout plus the backoff wait) is seen as not
//! applied, and the retry may create a second one. Magento 2.4.7+ serialises document creation
//! per order with a lock, which narrows but does not close this window; keep the per-attempt
//! timeout and the backoff above the server's slowest document save, and leave the
//! reservation inconsistency check on.
//!
//! [`CallRecord`]: super::observe::CallRecord

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::client::CommerceClient;
use super::search::SearchCriteria;
use super::types::{
    CreditMemo, DocumentLine, Invoice, LineProgress, NewReservation, OrderId, OrderProgress,
    Shipment, Stock,
};
use tillbridge_core::inventory::{Sku, StockId};

/// The caller's name for one write (≤ 80 characters of `A–Z a–z 0–9 . _ : / -`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

/// Why a text is not an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty.
    #[error("an idempotency key can not be empty")]
    Empty,
    /// Too long.
    #[error("an idempotency key has at most 80 characters, this one has {0}")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error("an idempotency key may only hold A-Z a-z 0-9 . _ : / -, not {0:?}")]
    Character(char),
}

impl IdempotencyKey {
    /// Parses a key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let n = text.chars().count();
        if n > 80 {
            return Err(KeyError::TooLong(n));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')))
        {
            return Err(KeyError::Character(c));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker put into comments: `[tillbridge:<key>]`.
    pub fn marker(&self) -> String {
        format!("[tillbridge:{}]", self.0)
    }

    /// A comment text carrying the marker on its own line.
    pub fn mark(&self, comment: Option<&str>) -> String {
        match comment {
            Some(c) if !c.trim().is_empty() => format!("{c}\n{}", self.marker()),
            _ => self.marker(),
        }
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = KeyError;
    fn try_from(value: &str) -> Result<Self, KeyError> {
        Self::parse(value)
    }
}

/// The document a write creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `POST /V1/order/:id/ship`.
    Shipment,
    /// `POST /V1/order/:id/invoice`.
    Invoice,
    /// `POST /V1/order/:id/refund`, `POST /V1/invoice/:id/refund`.
    CreditMemo,
}

impl DocumentKind {
    fn moved(self, p: &LineProgress) -> Decimal {
        match self {
            Self::Shipment => p.shipped,
            Self::Invoice => p.invoiced,
            Self::CreditMemo => p.refunded,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Shipment => "shipped",
            Self::Invoice => "invoiced",
            Self::CreditMemo => "refunded",
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The write took effect; the value stands in for its lost answer (`null` when the
    /// created id is unknown).
    Applied(Value),
    /// It did not: retrying is safe.
    NotApplied,
    /// The probe cannot tell.
    Unknown(String),
}

/// Compares an order before and after a document write that may have been applied.
pub fn document_effect(
    kind: DocumentKind,
    before: &OrderProgress,
    after: &OrderProgress,
    lines: &[DocumentLine],
) -> Probe {
    let zero = LineProgress::default();
    let delta = |id: &u64| {
        let b = before.lines.get(id).unwrap_or(&zero);
        let a = after.lines.get(id).unwrap_or(&zero);
        kind.moved(a) - kind.moved(b)
    };
    if lines.is_empty() {
        let moved = after.lines.keys().any(|id| delta(id) > Decimal::ZERO);
        let total_moved = matches!(
            (kind, before.total_refunded, after.total_refunded),
            (DocumentKind::CreditMemo, Some(b), Some(a)) if a > b
        );
        if moved || total_moved {
            return Probe::Applied(Value::Null);
        }
        if kind == DocumentKind::CreditMemo
            && (before.total_refunded.is_none() || after.total_refunded.is_none())
        {
            return Probe::Unknown(
                "no line was refunded and the order does not show total_refunded".to_owned(),
            );
        }
        return Probe::NotApplied;
    }
    let mut requested: BTreeMap<u64, Decimal> = BTreeMap::new();
    for l in lines {
        *requested.entry(l.order_item_id).or_default() += l.qty;
    }
    let deltas: Vec<(u64, Decimal, Decimal)> = requested
        .iter()
        .map(|(id, q)| (*id, *q, delta(id)))
        .collect();
    if deltas.iter().all(|(_, _, d)| d.is_zero()) {
        return Probe::NotApplied;
    }
    if deltas.iter().all(|(_, q, d)| d >= q) {
        return Probe::Applied(Value::Null);
    }
    Probe::Unknown(
        deltas
            .iter()
            .map(|(id, q, d)| {
                format!(
                    "line {id}: {} moved by {}, the request was {}",
                    kind.name(),
                    d.normalize(),
                    q.normalize()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// What a guarded write needs for its probe.
#[derive(Debug)]
pub(crate) enum Guard<'a> {
    /// Ship, invoice, refund.
    Document {
        kind: DocumentKind,
        order_id: OrderId,
        marker: String,
        lines: &'a [DocumentLine],
        baseline: OrderProgress,
    },
    /// An order comment.
    OrderComment { order_id: OrderId, marker: String },
    /// Cancel.
    Cancel { order_id: OrderId },
    /// Append reservations.
    Reservations { rows: &'a [NewReservation] },
    /// Create a stock.
    NewStock {
        name: &'a str,
        existing: Vec<StockId>,
    },
}

fn marked(comments: &[String], marker: &str) -> bool {
    comments.iter().any(|c| c.contains(marker))
}

impl CommerceClient {
    /// Runs the probe of a guarded write.
    pub(crate) async fn probe(&self, guard: &Guard<'_>) -> Probe {
        match guard {
            Guard::Document {
                kind,
                order_id,
                marker,
                lines,
                baseline,
            } => {
                self.probe_document(*kind, *order_id, marker, lines, baseline)
                    .await
            }
            Guard::OrderComment { order_id, marker } => self.probe_comment(*order_id, marker).await,
            Guard::Cancel { order_id } => match self.order(*order_id).await {
                Ok(o) if o.state.as_deref() == Some("canceled") => Probe::Applied(json!(true)),
                Ok(_) => Probe::NotApplied,
                Err(e) => Probe::Unknown(format!("reading the order failed: {e}")),
            },
            Guard::Reservations { rows } => self.probe_reservations(rows).await,
            Guard::NewStock { name, existing } => {
                match self
                    .search::<Stock>(&SearchCriteria::new().eq("name", name))
                    .await
                {
                    Ok(r) => {
                        let new: Vec<StockId> = r
                            .items
                            .iter()
                            .filter(|s| s.name == *name)
                            .filter_map(|s| s.stock_id)
                            .filter(|id| !existing.contains(id))
                            .collect();
                        match new.as_slice() {
                            [] => Probe::NotApplied,
                            [id] => Probe::Applied(json!(id.get())),
                            _ => Probe::Unknown(format!(
                                "{} new stocks are named {name:?}",
                                new.len()
                            )),
                        }
                    }
                    Err(e) => Probe::Unknown(format!("listing stocks failed: {e}")),
                }
            }
        }
    }

    async fn probe_document(
        &self,
        kind: DocumentKind,
        order_id: OrderId,
        marker: &str,
        lines: &[DocumentLine],
        baseline: &OrderProgress,
    ) -> Probe {
        let criteria = SearchCriteria::new().eq("order_id", order_id.0);
        let docs: Result<Vec<(u64, Vec<String>)>, _> = match kind {
            DocumentKind::Shipment => self.search::<Shipment>(&criteria).await.map(|r| {
                r.items
                    .into_iter()
                    .map(|d| {
                        (
                            d.entity_id,
                            d.comments.into_iter().map(|c| c.comment).collect(),
                        )
                    })
                    .collect()
            }),
            DocumentKind::Invoice => self.search::<Invoice>(&criteria).await.map(|r| {
                r.items
                    .into_iter()
                    .map(|d| {
                        (
                            d.entity_id,
                            d.comments.into_iter().map(|c| c.comment).collect(),
                        )
                    })
                    .collect()
            }),
            DocumentKind::CreditMemo => self.search::<CreditMemo>(&criteria).await.map(|r| {
                r.items
                    .into_iter()
                    .map(|d| {
                        (
                            d.entity_id,
                            d.comments.into_iter().map(|c| c.comment).collect(),
                        )
                    })
                    .collect()
            }),
        };
        match docs {
            Ok(docs) => {
                if let Some((id, _)) = docs.iter().find(|(_, c)| marked(c, marker)) {
                    return Probe::Applied(json!(id));
                }
            }
            // This Commerce cannot list the documents: fall back to the order's quantities.
            Err(e) if e.is_route_not_found() => {}
            Err(e) => return Probe::Unknown(format!("listing the order's documents failed: {e}")),
        }
        match self.order(order_id).await {
            Ok(order) => document_effect(kind, baseline, &OrderProgress::of(&order), lines),
            Err(e) => Probe::Unknown(format!("reading the order failed: {e}")),
        }
    }

    async fn probe_comment(&self, order_id: OrderId, marker: &str) -> Probe {
        match self.order_comments(order_id).await {
            Ok(r) => {
                let texts: Vec<String> = r.items.into_iter().filter_map(|h| h.comment).collect();
                return if marked(&texts, marker) {
                    Probe::Applied(json!(true))
                } else {
                    Probe::NotApplied
                };
            }
            Err(e) if e.is_route_not_found() => {}
            Err(e) => return Probe::Unknown(format!("listing the order's comments failed: {e}")),
        }
        match self.order(order_id).await {
            Ok(order) => match order.status_histories {
                Some(list) => {
                    let texts: Vec<String> = list.into_iter().filter_map(|h| h.comment).collect();
                    if marked(&texts, marker) {
                        Probe::Applied(json!(true))
                    } else {
                        Probe::NotApplied
                    }
                }
                None => Probe::Unknown("this Commerce does not return order comments".to_owned()),
            },
            Err(e) => Probe::Unknown(format!("reading the order failed: {e}")),
        }
    }

    async fn probe_reservations(&self, rows: &[NewReservation]) -> Probe {
        let mut pairs: Vec<(&Sku, StockId)> = Vec::new();
        for r in rows {
            if !pairs
                .iter()
                .any(|(s, st)| s.key() == r.sku.key() && *st == r.stock_id)
            {
                pairs.push((&r.sku, r.stock_id));
            }
        }
        let mut existing = Vec::new();
        for (sku, stock) in &pairs {
            match self.reservations(Some(*sku), Some(*stock)).await {
                Ok(list) => existing.extend(list),
                Err(e) => return Probe::Unknown(format!("listing reservations failed: {e}")),
            }
        }
        let found = rows
            .iter()
            .filter(|want| {
                let meta = serde_json::to_value(&want.metadata).unwrap_or(Value::Null);
                existing.iter().any(|have| {
                    have.stock_id == want.stock_id
                        && have.sku.as_str().eq_ignore_ascii_case(want.sku.as_str())
                        && have.quantity == want.quantity
                        && have
                            .metadata
                            .as_deref()
                            .and_then(|m| serde_json::from_str::<Value>(m).ok())
                            .is_some_and(|m| m == meta)
                })
            })
            .count();
        if found == rows.len() {
            Probe::Applied(json!([]))
        } else if found == 0 {
            Probe::NotApplied
        } else {
            Probe::Unknown(format!(
                "{found} of {} reservations are present",
                rows.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn progress(lines: &[(u64, &str, &str, &str)]) -> OrderProgress {
        OrderProgress {
            order_id: OrderId(1),
            state: Some("processing".into()),
            total_refunded: Some(Decimal::ZERO),
            lines: lines
                .iter()
                .map(|(id, inv, ship, refund)| {
                    (
                        *id,
                        LineProgress {
                            invoiced: d(inv),
                            shipped: d(ship),
                            refunded: d(refund),
                            canceled: Decimal::ZERO,
                        },
                    )
                })
                .collect(),
        }
    }

    fn line(id: u64, qty: &str) -> DocumentLine {
        DocumentLine {
            order_item_id: id,
            qty: d(qty),
        }
    }

    #[test]
    fn keys_are_parsed() {
        assert!(IdempotencyKey::parse("ship:000000123:store-01/1_a.b").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse("a b"), Err(KeyError::Character(' ')));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(81)),
            Err(KeyError::TooLong(81))
        );
        let k = IdempotencyKey::parse("k-1").unwrap();
        assert_eq!(k.mark(Some("POS pickup")), "POS pickup\n[tillbridge:k-1]");
        assert_eq!(k.mark(None), "[tillbridge:k-1]");
        assert_eq!(k.mark(Some("  ")), "[tillbridge:k-1]");
    }

    #[test]
    fn a_shipment_that_moved_every_requested_line_was_applied() {
        let before = progress(&[(1, "0", "1", "0"), (2, "0", "0", "0")]);
        let after = progress(&[(1, "0", "3", "0"), (2, "0", "1", "0")]);
        let lines = [line(1, "2"), line(2, "1")];
        assert_eq!(
            document_effect(DocumentKind::Shipment, &before, &after, &lines),
            Probe::Applied(Value::Null)
        );
    }

    #[test]
    fn nothing_moved_means_not_applied() {
        let before = progress(&[(1, "2", "1", "0")]);
        assert_eq!(
            document_effect(DocumentKind::Shipment, &before, &before, &[line(1, "1")]),
            Probe::NotApplied
        );
        assert_eq!(
            document_effect(DocumentKind::Invoice, &before, &before, &[]),
            Probe::NotApplied
        );
    }

    #[test]
    fn a_partial_move_is_unknown_and_says_which_line() {
        let before = progress(&[(1, "0", "0", "0"), (2, "0", "0", "0")]);
        let after = progress(&[(1, "0", "2", "0"), (2, "0", "0", "0")]);
        let Probe::Unknown(why) = document_effect(
            DocumentKind::Shipment,
            &before,
            &after,
            &[line(1, "2"), line(2, "1")],
        ) else {
            panic!("expected unknown");
        };
        assert!(
            why.contains("line 2: shipped moved by 0, the request was 1"),
            "{why}"
        );
    }

    #[test]
    fn repeated_lines_add_up_and_each_kind_reads_its_own_quantity() {
        let before = progress(&[(1, "0", "0", "0")]);
        let after = progress(&[(1, "3", "0", "1")]);
        let lines = [line(1, "1"), line(1, "2")];
        assert_eq!(
            document_effect(DocumentKind::Invoice, &before, &after, &lines),
            Probe::Applied(Value::Null)
        );
        assert_eq!(
            document_effect(DocumentKind::Shipment, &before, &after, &lines),
            Probe::NotApplied
        );
        assert!(matches!(
            document_effect(DocumentKind::CreditMemo, &before, &after, &lines),
            Probe::Unknown(_)
        ));
    }

    #[test]
    fn an_adjustment_only_refund_is_judged_by_total_refunded() {
        let before = progress(&[(1, "1", "1", "0")]);
        let mut after = before.clone();
        after.total_refunded = Some(d("5"));
        assert_eq!(
            document_effect(DocumentKind::CreditMemo, &before, &after, &[]),
            Probe::Applied(Value::Null)
        );
        let mut unknown = before.clone();
        unknown.total_refunded = None;
        assert!(matches!(
            document_effect(DocumentKind::CreditMemo, &before, &unknown, &[]),
            Probe::Unknown(_)
        ));
    }
}
