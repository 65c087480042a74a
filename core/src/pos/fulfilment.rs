//! Fulfilment requests (a Commerce order sent to a store to pick up or ship) and their states.
//!
//! The core owns a small state machine that every POS maps onto: requested → accepted →
//! ready → completed, or rejected / cancelled / failed. Square's PROPOSED / RESERVED /
//! PREPARED / COMPLETED / CANCELED / FAILED map 1:1 (PROPOSED = requested). A status update
//! is applied only when its external version is newer and the move is forward
//! ([`decide_status`]), so duplicate and reordered notifications are harmless.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{FulfilmentRequestId, PosLocationId, PosVariationId, Sku};
use super::money::{Currency, Money};
use super::time::Timestamp;

/// Collect in store, or ship from store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentKind {
    Pickup,
    Shipment,
}

/// Who collects or receives the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// One line to pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentLine {
    pub variation: PosVariationId,
    pub sku: Sku,
    pub name: String,
    /// Units, positive.
    pub quantity: Decimal,
    /// Unit price the customer paid in Commerce (tax-inclusive as Commerce shows it).
    pub unit_price: Money,
}

/// A Commerce order sent to a POS location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentRequest {
    /// Our id; connectors derive their idempotency key from it, so resubmitting the same
    /// request never creates a second POS order.
    pub id: FulfilmentRequestId,
    /// The Commerce order's increment id, shown to staff at the till.
    pub order_reference: String,
    pub location: PosLocationId,
    pub kind: FulfilmentKind,
    pub recipient: Recipient,
    pub lines: Vec<FulfilmentLine>,
    pub currency: Currency,
    /// For a pickup: when the customer is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub requested_at: Timestamp,
}

/// Where a fulfilment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentState {
    /// Sent to the store, not yet acknowledged (Square PROPOSED).
    Requested,
    /// The store accepted it and is picking (Square RESERVED).
    Accepted,
    /// Packed / ready for collection (Square PREPARED).
    Ready,
    /// Collected or handed to the carrier (Square COMPLETED). Terminal.
    Completed,
    /// The store declined it. Terminal.
    Rejected,
    /// Cancelled by either side. Terminal.
    Cancelled,
    /// Could not be fulfilled (e.g. shipment failed). Terminal.
    Failed,
}

impl FulfilmentState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Rejected | Self::Cancelled | Self::Failed
        )
    }

    fn rank(self) -> u8 {
        match self {
            Self::Requested => 0,
            Self::Accepted => 1,
            Self::Ready => 2,
            Self::Completed | Self::Rejected | Self::Cancelled | Self::Failed => 3,
        }
    }

    /// Whether a fulfilment may move from `self` to `next`: forward only (steps may be
    /// skipped — a till can go straight from requested to completed), never out of a terminal
    /// state. `Rejected` is only reachable before the store accepted.
    pub fn can_become(self, next: FulfilmentState) -> bool {
        if self.is_terminal() || next == self {
            return false;
        }
        if next == Self::Rejected {
            return self == Self::Requested;
        }
        next.rank() > self.rank()
    }
}

/// How to find a fulfilment in the POS once created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FulfilmentRef {
    pub request: FulfilmentRequestId,
    /// The POS order id (Square order id).
    pub external_order_id: String,
    /// The POS fulfilment id within the order (Square fulfilment uid), where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_fulfilment_id: Option<String>,
}

/// A fulfilment's state as the POS reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentStatus {
    pub reference: FulfilmentRef,
    pub state: FulfilmentState,
    /// The POS's version of the order (Square `version`); higher is newer.
    pub version: i64,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Why it was rejected, cancelled or failed, when the POS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The parts of the order handed over on their own so far, when the store split it (Square:
    /// one per completed `ENTRY_LIST` fulfilment). Empty when the order goes as one: its
    /// completion then hands over every open line. `state` is `Completed` only once every
    /// part is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parcels: Vec<Parcel>,
}

/// Part of an order handed over on its own (a parcel): the store split the order and
/// completed this part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    /// The POS's id of the part (Square: the fulfilment's uid). A part completes once, so the
    /// id names one hand-over for good.
    pub id: String,
    pub lines: Vec<ParcelLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// When the POS says it was handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

/// Units of one POS variation in a parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelLine {
    pub variation: PosVariationId,
    /// The SKU, when the POS order carries it (Tillbridge's own orders do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// Units, positive.
    pub quantity: Decimal,
}

/// What to do with a status update, given the status held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum StatusDecision {
    /// Apply it: newer version, and a legal move (or the same state with new details).
    Apply,
    /// Same or older version than the one held: a duplicate or a reordered delivery.
    Stale,
    /// Newer version but a move the state machine forbids; keep the held state and raise it.
    IllegalTransition {
        from: FulfilmentState,
        to: FulfilmentState,
    },
}

/// Decide whether `update` replaces `held`.
pub fn decide_status(held: Option<&FulfilmentStatus>, update: &FulfilmentStatus) -> StatusDecision {
    let Some(held) = held else {
        return StatusDecision::Apply;
    };
    if update.version <= held.version {
        return StatusDecision::Stale;
    }
    if update.state == held.state || held.state.can_become(update.state) {
        StatusDecision::Apply
    } else {
        StatusDecision::IllegalTransition {
            from: held.state,
            to: update.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FulfilmentState::*;

    fn status(state: FulfilmentState, version: i64) -> FulfilmentStatus {
        FulfilmentStatus {
            reference: FulfilmentRef {
                request: FulfilmentRequestId::parse("R1").unwrap(),
                external_order_id: "O1".into(),
                external_fulfilment_id: None,
            },
            state,
            version,
            updated_at: Timestamp::from_millis(version),
            tracking_number: None,
            reason: None,
            parcels: Vec::new(),
        }
    }

    #[test]
    fn forward_moves_are_legal_and_terminal_states_are_final() {
        assert!(Requested.can_become(Accepted));
        assert!(Requested.can_become(Completed));
        assert!(Accepted.can_become(Ready));
        assert!(!Ready.can_become(Accepted));
        assert!(!Accepted.can_become(Rejected));
        assert!(!Completed.can_become(Cancelled));
        assert!(!Cancelled.can_become(Requested));
    }

    #[test]
    fn duplicate_and_reordered_updates_are_stale() {
        let held = status(Ready, 3);
        assert_eq!(
            decide_status(Some(&held), &status(Ready, 3)),
            StatusDecision::Stale
        );
        assert_eq!(
            decide_status(Some(&held), &status(Accepted, 2)),
            StatusDecision::Stale
        );
        assert_eq!(
            decide_status(Some(&held), &status(Completed, 4)),
            StatusDecision::Apply
        );
        assert_eq!(
            decide_status(None, &status(Accepted, 1)),
            StatusDecision::Apply
        );
    }

    #[test]
    fn a_status_stored_before_parcels_existed_still_reads() {
        let old = r#"{"reference":{"request":"R1","external_order_id":"O1"},"state":"completed",
            "version":4,"updated_at":"2026-01-05T09:00:00Z"}"#;
        let s: FulfilmentStatus = serde_json::from_str(old).unwrap();
        assert!(s.parcels.is_empty());
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("parcels"), "{json}");
    }

    #[test]
    fn newer_but_backward_update_is_raised_not_applied() {
        let held = status(Completed, 5);
        assert_eq!(
            decide_status(Some(&held), &status(Ready, 6)),
            StatusDecision::IllegalTransition {
                from: Completed,
                to: Ready
            }
        );
    }
}
