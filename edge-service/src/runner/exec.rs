//! Executing the engine's commands: Commerce calls through the budgeted, idempotent client;
//! fulfilment requests through the POS connector. Every command ends in inputs for the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rust_decimal::Decimal;
use tillbridge_core::inventory as mage;
use tillbridge_core::pos::{
    Currency, FulfilmentKind, FulfilmentLine, FulfilmentRequest, FulfilmentRequestId, Money,
    PosLocationId, PosVariationId, Recipient, Sku, Timestamp,
};
use tillbridge_core::sync::{Command, CommandKind, Input, Outcome};

use super::Followed;
use crate::commerce::types::{
    DocumentLine, OrderComment, RefundRequest, ShipRequest, SourceItem, SourceItemStatus, Track,
};
use crate::commerce::{CommerceClient, CommerceError, IdempotencyKey, SearchCriteria};
use crate::config::Settings;
use crate::pos::{PosConnector, PosError};

pub(crate) type FollowedMap = Arc<Mutex<BTreeMap<String, Followed>>>;

/// What a command needs to run.
#[allow(missing_debug_implementations)] // holds trait objects and a client
pub struct Context {
    pub commerce: CommerceClient,
    pub pos: BTreeMap<String, Arc<dyn PosConnector>>,
    pub settings: Arc<Settings>,
    pub variations: Arc<Mutex<BTreeMap<(String, Sku), PosVariationId>>>,
    pub catalogs: Arc<Mutex<BTreeMap<String, super::convert::Catalog>>>,
    pub(crate) followed: FollowedMap,
    pub now: Timestamp,
}

fn commerce_outcome(err: &CommerceError) -> Outcome {
    if err.is_retriable() {
        let throttled = matches!(err.status(), Some(429) | Some(500..=599));
        Outcome::Retriable {
            reason: err.to_string(),
            throttled,
        }
    } else {
        Outcome::Permanent {
            status: err.status().unwrap_or(0),
            message: err.message().unwrap_or_else(|| err.to_string()),
            skus: Vec::new(),
        }
    }
}

/// The Commerce client for a command: a repeat (attempt 2 and on: a retry, or a command sent
/// again after a restart) may follow an attempt that was applied before its answer was lost,
/// so its guarded writes look for that attempt first ([`CommerceClient::repeating`]).
fn commerce(ctx: &Context, cmd: &Command) -> CommerceClient {
    if cmd.attempt > 1 {
        ctx.commerce.repeating()
    } else {
        ctx.commerce.clone()
    }
}

/// For a write whose repeat looks for the marker of an earlier attempt first (shipments,
/// credit memos, order comments): an answer lost with the probe unable to tell whether it applied is worth
/// another attempt, which finds the document if it exists and posts it otherwise.
fn repeatable_outcome(err: &CommerceError) -> Outcome {
    if let crate::commerce::ErrorKind::Ambiguous { .. } = err.kind() {
        return Outcome::Retriable {
            reason: format!("{err} (the next attempt looks for it first)"),
            throttled: false,
        };
    }
    commerce_outcome(err)
}

fn pos_outcome(err: &PosError) -> Outcome {
    if err.is_retriable() {
        Outcome::Retriable {
            reason: err.to_string(),
            throttled: false,
        }
    } else {
        Outcome::Permanent {
            status: 0,
            message: err.to_string(),
            skus: Vec::new(),
        }
    }
}

fn key(cmd: &Command) -> Result<IdempotencyKey, Outcome> {
    // Keys are built from order numbers and codes; anything outside the client's alphabet is
    // replaced (the key stays stable for the same command).
    let clean: String = cmd
        .idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    IdempotencyKey::parse(&clean).map_err(|e| Outcome::Permanent {
        status: 0,
        message: format!("idempotency key: {e}"),
        skus: Vec::new(),
    })
}

fn msku(s: &Sku) -> Result<mage::Sku, Outcome> {
    mage::Sku::parse(s.as_str()).map_err(|e| Outcome::Permanent {
        status: 0,
        message: format!("sku {s}: {e:?}"),
        skus: vec![s.clone()],
    })
}

fn msource(s: &tillbridge_core::pos::SourceCode) -> Result<mage::SourceCode, Outcome> {
    mage::SourceCode::parse(s.as_str()).map_err(|e| Outcome::Permanent {
        status: 0,
        message: format!("source {s}: {e:?}"),
        skus: Vec::new(),
    })
}

fn lines(items: &[(u64, Decimal)]) -> Vec<DocumentLine> {
    items
        .iter()
        .map(|(i, q)| DocumentLine {
            order_item_id: *i,
            qty: *q,
        })
        .collect()
}

fn ok(started: Instant) -> Outcome {
    Outcome::Ok {
        latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Execute one command; the answer as engine inputs.
pub async fn execute(ctx: &Context, cmd: &Command) -> Vec<Input> {
    let id = cmd.id;
    let started = Instant::now();
    let result: Result<Vec<Input>, Outcome> = async {
        match &cmd.kind {
            CommandKind::PushSourceItems { items } => {
                let mut wire = Vec::with_capacity(items.len());
                for i in items {
                    wire.push(SourceItem {
                        sku: msku(&i.sku)?,
                        source_code: msource(&i.source)?,
                        quantity: i.quantity,
                        status: if i.status == 1 {
                            SourceItemStatus::InStock
                        } else {
                            SourceItemStatus::OutOfStock
                        },
                    });
                }
                ctx.commerce
                    .save_source_items(&key(cmd)?, &wire)
                    .await
                    .map_err(|e| commerce_outcome(&e))?;
                Ok(vec![Input::Result {
                    command: id,
                    outcome: ok(started),
                }])
            }
            CommandKind::CreateShipment {
                entity_id,
                source,
                items,
                tracking,
                comment,
                ..
            } => {
                let request = ShipRequest {
                    items: lines(items),
                    source_code: Some(msource(source)?),
                    notify: true,
                    comment: Some(comment.clone()),
                    tracks: tracking
                        .iter()
                        .map(|t| Track {
                            track_number: t.clone(),
                            title: "Store dispatch".into(),
                            carrier_code: "custom".into(),
                        })
                        .collect(),
                    baseline: None,
                };
                let k = key(cmd)?;
                commerce(ctx, cmd)
                    .ship(&k, mage::sales::OrderId(*entity_id), &request)
                    .await
                    .map_err(|e| repeatable_outcome(&e))?;
                Ok(vec![Input::Result {
                    command: id,
                    outcome: ok(started),
                }])
            }
            CommandKind::CancelOrder {
                entity_id, comment, ..
            } => {
                let k = key(cmd)?;
                commerce(ctx, cmd)
                    .cancel_order(&k, mage::sales::OrderId(*entity_id))
                    .await
                    .map_err(|e| commerce_outcome(&e))?;
                let ck = IdempotencyKey::parse(
                    &format!("{}:comment", k.as_str())
                        .chars()
                        .take(80)
                        .collect::<String>(),
                )
                .map_err(|e| Outcome::Permanent {
                    status: 0,
                    message: e.to_string(),
                    skus: Vec::new(),
                })?;
                let c = OrderComment {
                    comment: comment.clone(),
                    status: None,
                    notify_customer: true,
                    visible_on_front: true,
                };
                commerce(ctx, cmd)
                    .add_order_comment(&ck, mage::sales::OrderId(*entity_id), &c)
                    .await
                    .map_err(|e| commerce_outcome(&e))?;
                Ok(vec![Input::Result {
                    command: id,
                    outcome: ok(started),
                }])
            }
            CommandKind::CreditMemo {
                entity_id,
                items,
                comment,
                ..
            } => {
                let request = RefundRequest {
                    items: lines(items),
                    return_to_stock_items: Vec::new(),
                    shipping_amount: Some(Decimal::ZERO),
                    adjustment_positive: None,
                    adjustment_negative: None,
                    notify: true,
                    comment: Some(comment.clone()),
                    baseline: None,
                };
                let k = key(cmd)?;
                commerce(ctx, cmd)
                    .refund_order(&k, mage::sales::OrderId(*entity_id), &request)
                    .await
                    .map_err(|e| repeatable_outcome(&e))?;
                Ok(vec![Input::Result {
                    command: id,
                    outcome: ok(started),
                }])
            }
            CommandKind::OrderComment {
                entity_id,
                comment,
                notify,
                ..
            } => {
                let c = OrderComment {
                    comment: comment.clone(),
                    status: None,
                    notify_customer: *notify,
                    visible_on_front: true,
                };
                let k = key(cmd)?;
                let order = mage::sales::OrderId(*entity_id);
                commerce(ctx, cmd)
                    .add_order_comment(&k, order, &c)
                    .await
                    .map_err(|e| repeatable_outcome(&e))?;
                Ok(vec![Input::Result {
                    command: id,
                    outcome: ok(started),
                }])
            }
            CommandKind::ReadSalable { sku, stock_id } => {
                let stock =
                    mage::StockId::parse(i64::from(*stock_id)).map_err(|e| Outcome::Permanent {
                        status: 0,
                        message: format!("{e:?}"),
                        skus: Vec::new(),
                    })?;
                let salable = match ctx.commerce.salable_quantity(&msku(sku)?, stock).await {
                    Ok(q) => Some(q),
                    Err(e) if e.is_retriable() => return Err(commerce_outcome(&e)),
                    Err(_) => None,
                };
                Ok(vec![Input::Salable {
                    command: id,
                    sku: sku.clone(),
                    stock_id: *stock_id,
                    salable,
                }])
            }
            CommandKind::ReadSourceItems { page, page_size } => {
                let criteria = SearchCriteria::new()
                    .page_size(*page_size)
                    .current_page(*page);
                let res = ctx
                    .commerce
                    .source_items(&criteria)
                    .await
                    .map_err(|e| commerce_outcome(&e))?;
                let items = res
                    .items
                    .iter()
                    .filter_map(|i| {
                        Some((
                            Sku::parse(i.sku.as_str()).ok()?,
                            tillbridge_core::pos::SourceCode::parse(i.source_code.as_str()).ok()?,
                            i.quantity,
                        ))
                    })
                    .collect();
                let last_page = u64::from(*page) * u64::from(*page_size) >= res.total_count;
                Ok(vec![Input::SourceItems {
                    command: id,
                    items,
                    last_page,
                }])
            }
            CommandKind::CreateFulfilment {
                order,
                source,
                lines,
                pickup,
            } => create_fulfilment(ctx, cmd, order, source, lines, *pickup).await,
            CommandKind::CancelFulfilment { order, .. } => cancel_fulfilment(ctx, cmd, order).await,
        }
    }
    .await;
    match result {
        Ok(inputs) => inputs,
        Err(outcome) => vec![Input::Result {
            command: id,
            outcome,
        }],
    }
}

async fn create_fulfilment(
    ctx: &Context,
    cmd: &Command,
    order: &str,
    source: &tillbridge_core::pos::SourceCode,
    order_lines: &[(Sku, Decimal)],
    pickup: bool,
) -> Result<Vec<Input>, Outcome> {
    let store = ctx
        .settings
        .stores
        .iter()
        .find(|s| s.source == source.as_str())
        .ok_or_else(|| Outcome::Permanent {
            status: 0,
            message: format!("source {source} has no store in the configuration"),
            skus: Vec::new(),
        })?;
    let connector = ctx
        .pos
        .get(&store.pos)
        .cloned()
        .ok_or_else(|| Outcome::Permanent {
            status: 0,
            message: format!("no POS '{}'", store.pos),
            skus: Vec::new(),
        })?;
    let currency = Currency::parse("GBP").map_err(|e| Outcome::Permanent {
        status: 0,
        message: e.to_string(),
        skus: Vec::new(),
    })?;
    let mut lines = Vec::new();
    for (sku, qty) in order_lines {
        // The catalog's variation for the SKU, else the one the stock feed named.
        let variation = ctx
            .catalogs
            .lock()
            .ok()
            .and_then(|c| c.get(&store.pos).and_then(|c| c.variation(sku).cloned()))
            .or_else(|| {
                ctx.variations
                    .lock()
                    .ok()
                    .and_then(|v| v.get(&(store.pos.clone(), sku.clone())).cloned())
            })
            .ok_or_else(|| Outcome::Retriable {
                reason: format!(
                    "the POS variation of {sku} is not known yet (waiting for the POS catalog)"
                ),
                throttled: false,
            })?;
        lines.push(FulfilmentLine {
            variation,
            sku: sku.clone(),
            name: sku.to_string(),
            quantity: *qty,
            unit_price: Money::zero(currency),
        });
    }
    let request_id = FulfilmentRequestId::parse(
        &cmd.idempotency_key
            .replace(':', "-")
            .chars()
            .take(64)
            .collect::<String>(),
    )
    .map_err(|e| Outcome::Permanent {
        status: 0,
        message: e.to_string(),
        skus: Vec::new(),
    })?;
    let request = FulfilmentRequest {
        id: request_id,
        order_reference: order.to_owned(),
        location: PosLocationId::parse(&store.location).map_err(|e| Outcome::Permanent {
            status: 0,
            message: e.to_string(),
            skus: Vec::new(),
        })?,
        kind: if pickup {
            FulfilmentKind::Pickup
        } else {
            FulfilmentKind::Shipment
        },
        recipient: Recipient {
            display_name: format!("Web order {order}"),
            email: None,
            phone: None,
        },
        lines,
        currency,
        pickup_at: None,
        note: Some(format!("Commerce order {order}")),
        requested_at: ctx.now,
    };
    let receipt = connector
        .create_fulfilment(&request)
        .await
        .map_err(|e| pos_outcome(&e))?;
    if let Ok(mut f) = ctx.followed.lock() {
        f.insert(
            order.to_owned(),
            Followed {
                pos: store.pos.clone(),
                reference: receipt.reference,
                state: receipt.state,
                version: receipt.version,
                parcels: Default::default(),
            },
        );
    }
    Ok(vec![Input::Result {
        command: cmd.id,
        outcome: Outcome::Ok { latency_ms: 0 },
    }])
}

/// Withdraw the fulfilment the runner sent for `order` (Commerce cancelled the order).
async fn cancel_fulfilment(
    ctx: &Context,
    cmd: &Command,
    order: &str,
) -> Result<Vec<Input>, Outcome> {
    let followed = ctx
        .followed
        .lock()
        .ok()
        .and_then(|f| f.get(order).cloned())
        .ok_or_else(|| Outcome::Permanent {
            status: 0,
            message: format!(
                "no POS fulfilment is known for order {order}; withdraw it at the till"
            ),
            skus: Vec::new(),
        })?;
    let connector = ctx
        .pos
        .get(&followed.pos)
        .cloned()
        .ok_or_else(|| Outcome::Permanent {
            status: 0,
            message: format!("no POS '{}'", followed.pos),
            skus: Vec::new(),
        })?;
    let status = connector
        .cancel_fulfilment(&followed.reference)
        .await
        .map_err(|e| pos_outcome(&e))?;
    if let Ok(mut f) = ctx.followed.lock()
        && let Some(x) = f.get_mut(order)
    {
        x.state = status.state;
        x.version = status.version;
    }
    Ok(vec![Input::Result {
        command: cmd.id,
        outcome: Outcome::Ok { latency_ms: 0 },
    }])
}
