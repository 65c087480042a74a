//! Web orders: where each one is fulfilled, and how its status flows back.
//!
//! The engine routes a new Commerce order to a store or warehouse by configurable rules —
//! click-and-collect goes to the chosen store; ship-from-store goes to the first source of the
//! order's stock, by priority, that has opted in and holds enough stock on hand for every line
//! — and then follows the POS fulfilment: accepted and ready become customer comments, completed
//! becomes the Commerce shipment with that `source_code` (and tracking), a store that declines
//! hands the order to the next candidate, and a Commerce cancellation cancels the fulfilment.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pos::{FulfilmentState, Sku, SourceCode, Timestamp};

/// How the customer receives the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delivery {
    /// Click and collect at a store (its source code).
    Pickup { store: SourceCode },
    /// Delivered by a carrier.
    Ship,
}

/// One order line as Commerce reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebOrderLine {
    pub item_id: u64,
    pub sku: Sku,
    pub qty_ordered: Decimal,
    #[serde(default)]
    pub qty_shipped: Decimal,
    #[serde(default)]
    pub qty_canceled: Decimal,
    #[serde(default)]
    pub qty_refunded: Decimal,
}

impl WebOrderLine {
    /// Units still to be handed over.
    pub fn open(&self) -> Decimal {
        (self.qty_ordered - self.qty_shipped - self.qty_canceled).max(Decimal::ZERO)
    }
}

/// A Commerce order as polled (`GET /V1/orders` by `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebOrder {
    pub increment_id: String,
    pub entity_id: u64,
    /// The stock the order reserves against (from its website).
    pub stock_id: u32,
    /// Magento's order state (`new`, `processing`, `complete`, `closed`, `canceled`, `holded`).
    pub state: String,
    pub updated_at: Timestamp,
    pub delivery: Delivery,
    pub lines: Vec<WebOrderLine>,
}

impl WebOrder {
    pub fn is_canceled(&self) -> bool {
        self.state == "canceled"
    }

    /// Commerce will not ship it: cancelled, or closed (refunded in full) before anything
    /// shipped.
    pub fn is_withdrawn(&self) -> bool {
        self.is_canceled()
            || (self.state == "closed" && self.lines.iter().all(|l| l.qty_shipped.is_zero()))
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "complete" | "closed" | "canceled")
    }

    /// Units of `sku` still reserved in Commerce for this order.
    pub fn open_units(&self, sku: &Sku) -> Decimal {
        if self.is_finished() {
            return Decimal::ZERO;
        }
        self.lines
            .iter()
            .filter(|l| &l.sku == sku)
            .map(|l| (l.open() - l.qty_refunded).max(Decimal::ZERO))
            .sum()
    }
}

/// A source the router may send orders to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRoute {
    pub source: SourceCode,
    /// Lower goes first (Magento's source priority).
    pub priority: u32,
    /// The stocks this source is linked to.
    pub stock_ids: Vec<u32>,
    /// A store with a till (Tillbridge manages its stock); `false` for a warehouse whose stock
    /// Commerce or an ERP manages.
    pub pos_managed: bool,
    /// The store has opted in to fulfil web orders.
    pub fulfils: bool,
    /// Display name for customer comments.
    pub name: String,
}

/// Routing rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoutingConfig {
    pub sources: Vec<SourceRoute>,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum RouteDecision {
    /// A store with a till: Tillbridge asks its POS to fulfil.
    Store { source: SourceCode },
    /// A warehouse outside Tillbridge: Commerce's own process ships it.
    Warehouse { source: SourceCode },
    /// Nobody can take it.
    Nowhere { reason: String },
}

impl RoutingConfig {
    pub fn source(&self, code: &SourceCode) -> Option<&SourceRoute> {
        self.sources.iter().find(|s| &s.source == code)
    }

    /// Route an order. `on_hand(sku, source)` is the stock the router may count on (the ledger's
    /// target); `exclude` are sources that already declined it.
    pub fn route(
        &self,
        order: &WebOrder,
        exclude: &[SourceCode],
        on_hand: impl Fn(&Sku, &SourceCode) -> Option<Decimal>,
    ) -> RouteDecision {
        let enough = |source: &SourceCode| {
            order
                .lines
                .iter()
                .filter(|l| l.open() > Decimal::ZERO)
                .all(|l| on_hand(&l.sku, source).is_some_and(|q| q >= l.open()))
        };
        match &order.delivery {
            Delivery::Pickup { store } => {
                let Some(route) = self.source(store) else {
                    return RouteDecision::Nowhere {
                        reason: format!("pickup store {store} is not configured for fulfilment"),
                    };
                };
                if !route.fulfils || !route.pos_managed {
                    return RouteDecision::Nowhere {
                        reason: format!(
                            "pickup store {store} has not opted in to fulfil web orders"
                        ),
                    };
                }
                if exclude.contains(store) {
                    return RouteDecision::Nowhere {
                        reason: format!("pickup store {store} declined the order"),
                    };
                }
                if !enough(store) {
                    return RouteDecision::Nowhere {
                        reason: format!("pickup store {store} does not hold every line on hand"),
                    };
                }
                RouteDecision::Store {
                    source: store.clone(),
                }
            }
            Delivery::Ship => {
                let mut candidates: Vec<&SourceRoute> = self
                    .sources
                    .iter()
                    .filter(|s| {
                        s.fulfils
                            && s.stock_ids.contains(&order.stock_id)
                            && !exclude.contains(&s.source)
                    })
                    .collect();
                candidates
                    .sort_by(|a, b| a.priority.cmp(&b.priority).then(a.source.cmp(&b.source)));
                for c in &candidates {
                    if !c.pos_managed {
                        return RouteDecision::Warehouse {
                            source: c.source.clone(),
                        };
                    }
                    if enough(&c.source) {
                        return RouteDecision::Store {
                            source: c.source.clone(),
                        };
                    }
                }
                RouteDecision::Nowhere {
                    reason: "no opted-in source of the order's stock holds every line on hand"
                        .into(),
                }
            }
        }
    }
}

/// Where the shipment of an order stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShipmentState {
    None,
    /// Handed over at the store; the Commerce shipment is queued or in progress.
    Pending {
        lines: Vec<(Sku, Decimal)>,
        tracking: Option<String>,
        command: Option<u64>,
    },
    Created,
    Failed {
        reason: String,
    },
}

/// A parcel handed over at a store: lines and the tracking number, if any.
pub type Parcel = (Vec<(Sku, Decimal)>, Option<String>);

/// The engine's view of one web order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFlow {
    pub order: WebOrder,
    /// The source the order is with (after routing).
    pub source: Option<SourceCode>,
    pub warehouse: bool,
    /// Sources that declined it.
    pub declined: Vec<SourceCode>,
    /// The POS fulfilment's state, once requested.
    pub fulfilment: Option<FulfilmentState>,
    /// A command in progress on the POS (create or cancel).
    pub pos_command: Option<u64>,
    pub shipment: ShipmentState,
    /// Cancellation requested at the POS because Commerce cancelled.
    pub cancel_sent: bool,
    /// The POS records that moved this order.
    pub records: Vec<String>,
    /// Routing gave up (an exception is open).
    pub unroutable: bool,
    /// Later parcels handed over while an earlier shipment was still in progress.
    #[serde(default)]
    pub handovers: Vec<Parcel>,
    /// Commerce shipments created for the order (numbers the idempotency key of the next).
    #[serde(default)]
    pub shipments: u32,
}

impl OrderFlow {
    pub fn new(order: WebOrder) -> Self {
        Self {
            order,
            source: None,
            warehouse: false,
            declined: Vec::new(),
            fulfilment: None,
            pos_command: None,
            shipment: ShipmentState::None,
            cancel_sent: false,
            records: Vec::new(),
            unroutable: false,
            handovers: Vec::new(),
            shipments: 0,
        }
    }
}

/// Open web demand per (SKU, stock): what Commerce still reserves for orders Tillbridge knows.
pub fn open_demand(orders: &BTreeMap<String, OrderFlow>, sku: &Sku, stock_id: u32) -> Decimal {
    orders
        .values()
        .filter(|f| f.order.stock_id == stock_id)
        .map(|f| f.order.open_units(sku))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn src(s: &str) -> SourceCode {
        SourceCode::parse(s).unwrap()
    }

    fn route(code: &str, priority: u32, pos: bool, fulfils: bool) -> SourceRoute {
        SourceRoute {
            source: src(code),
            priority,
            stock_ids: vec![2],
            pos_managed: pos,
            fulfils,
            name: code.into(),
        }
    }

    fn order(delivery: Delivery, qty: Decimal) -> WebOrder {
        WebOrder {
            increment_id: "100".into(),
            entity_id: 1,
            stock_id: 2,
            state: "processing".into(),
            updated_at: Timestamp::from_millis(0),
            delivery,
            lines: vec![WebOrderLine {
                item_id: 1,
                sku: sku("MUG"),
                qty_ordered: qty,
                qty_shipped: dec!(0),
                qty_canceled: dec!(0),
                qty_refunded: dec!(0),
            }],
        }
    }

    #[test]
    fn ship_orders_go_to_the_first_opted_in_source_with_stock() {
        let cfg = RoutingConfig {
            sources: vec![
                route("leeds", 2, true, true),
                route("york", 1, true, true),
                route("hull", 0, true, false),
            ],
        };
        let stock = |_: &Sku, s: &SourceCode| {
            Some(if s.as_str() == "york" {
                dec!(1)
            } else {
                dec!(5)
            })
        };
        assert_eq!(
            cfg.route(&order(Delivery::Ship, dec!(1)), &[], stock),
            RouteDecision::Store {
                source: src("york")
            }
        );
        assert_eq!(
            cfg.route(&order(Delivery::Ship, dec!(2)), &[], stock),
            RouteDecision::Store {
                source: src("leeds")
            }
        );
        assert_eq!(
            cfg.route(&order(Delivery::Ship, dec!(2)), &[src("leeds")], stock),
            RouteDecision::Nowhere {
                reason: "no opted-in source of the order's stock holds every line on hand".into()
            }
        );
    }

    #[test]
    fn a_warehouse_takes_the_order_when_it_comes_first() {
        let cfg = RoutingConfig {
            sources: vec![route("dc", 0, false, true), route("york", 1, true, true)],
        };
        assert_eq!(
            cfg.route(&order(Delivery::Ship, dec!(1)), &[], |_, _| Some(dec!(9))),
            RouteDecision::Warehouse { source: src("dc") }
        );
    }

    #[test]
    fn pickup_needs_the_chosen_store_to_opt_in_and_hold_the_goods() {
        let cfg = RoutingConfig {
            sources: vec![route("york", 1, true, true), route("hull", 0, true, false)],
        };
        let pickup = |s: &str| order(Delivery::Pickup { store: src(s) }, dec!(1));
        assert_eq!(
            cfg.route(&pickup("york"), &[], |_, _| Some(dec!(1))),
            RouteDecision::Store {
                source: src("york")
            }
        );
        assert!(matches!(
            cfg.route(&pickup("york"), &[], |_, _| Some(dec!(0))),
            RouteDecision::Nowhere { .. }
        ));
        assert!(matches!(
            cfg.route(&pickup("hull"), &[], |_, _| Some(dec!(9))),
            RouteDecision::Nowhere { .. }
        ));
    }

    #[test]
    fn open_demand_counts_unshipped_uncanceled_units_of_unfinished_orders() {
        let mut o = order(Delivery::Ship, dec!(3));
        o.lines[0].qty_shipped = dec!(1);
        let mut book = BTreeMap::new();
        book.insert("100".to_owned(), OrderFlow::new(o.clone()));
        assert_eq!(open_demand(&book, &sku("MUG"), 2), dec!(2));
        o.state = "complete".into();
        book.insert("100".to_owned(), OrderFlow::new(o));
        assert_eq!(open_demand(&book, &sku("MUG"), 2), dec!(0));
    }
}
