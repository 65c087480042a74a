//! `POST /webhooks/{name}`: a POS webhook, authenticated by its signature.
//!
//! 1. Verify the signature over the raw body and the notification URL from configuration
//!    (`PosConnector::verify_webhook`). A delivery that fails is refused (401, or 400 when
//!    signed but unreadable) and stored nowhere.
//! 2. Store it as an inbound `webhook` record (external id = the event id), so a redelivered
//!    event is stored once.
//! 3. Hand the runner an early poll (`OperatorAction::PollNow`, without waiting) for a new event.
//! 4. Answer 200 with the record id, well inside the POS's deadline (Square: 10 s).
//!
//! The payload is kept for the record's history; it is never applied as data (the early poll
//! reads the POS feeds, which are the truth).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::ApiError;
use super::params::clip;
use super::routes::send;
use super::{ApiState, OperatorAction};
use crate::pos::{Feed, HintKind, WebhookRejection, WebhookRequest, WebhookVerdict};
use crate::store::{NewRecord, RecordKind};

pub(super) async fn receive(
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let Some((endpoint, counters)) = state.webhooks.get(&name) else {
        let known: Vec<&str> = state.webhooks.keys().map(String::as_str).collect();
        return Err(ApiError::not_found(
            "name",
            format!("no webhook endpoint named '{}'", clip(&name)),
        )
        .hint(if known.is_empty() {
            "no webhook endpoint is configured".to_owned()
        } else {
            format!("configured: {}", known.join(", "))
        }));
    };
    let reject = |e: ApiError| {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        Err(e)
    };

    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let request = WebhookRequest {
        url: &endpoint.notification_url,
        headers: &headers,
        body: &body,
    };
    let hints = match endpoint.connector.verify_webhook(&request) {
        Err(e) => {
            let mut err = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("this webhook endpoint cannot verify deliveries: {e}"),
            );
            err.body.component = Some(format!("webhook {name}"));
            return reject(
                err.hint("configure the POS's webhook signature key and notification URL"),
            );
        }
        Ok(WebhookVerdict::Rejected { rejection }) => {
            let header = endpoint.signature_header.as_str();
            return reject(match rejection {
                WebhookRejection::MissingSignature => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!("missing signature header {header}"),
                )
                .field(header),
                WebhookRejection::BadSignature => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "the signature does not match the body and the notification URL {}",
                        endpoint.notification_url
                    ),
                )
                .field(header)
                .hint("check the webhook signature key, and that the subscription's notification URL is exactly the configured one"),
                WebhookRejection::Malformed { message } => {
                    ApiError::bad("body", format!("the event cannot be read: {message}"))
                }
            });
        }
        Ok(WebhookVerdict::Verified { hints }) => hints,
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reject(ApiError::bad("body", format!("the body is not JSON: {e}"))),
    };
    let event_id = hints
        .first()
        .map(|h| h.event_id.clone())
        .or_else(|| {
            payload
                .get("event_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|s| !s.is_empty());
    let Some(event_id) = event_id else {
        return reject(ApiError::bad("event_id", "the event has no event_id"));
    };

    let record = NewRecord {
        kind: RecordKind::Webhook,
        origin: endpoint.origin.clone(),
        external_id: Some(event_id.clone()),
        payload,
        received_at: (state.clock)(),
    };
    let store = state.store.clone();
    let (id, new) = web::block(move || store.insert_record(&record))
        .await
        .map_err(ApiError::blocking)?
        .map_err(|e| ApiError::store(&e).hint("the POS delivers the event again later"))?;

    if !new {
        counters.duplicate.fetch_add(1, Ordering::Relaxed);
        return Ok(HttpResponse::Ok().json(json!({
            "status": "duplicate",
            "record": id,
            "event_id": event_id,
        })));
    }
    counters.stored.fetch_add(1, Ordering::Relaxed);

    let mut feeds = BTreeSet::new();
    let mut orders = BTreeSet::new();
    let (mut catalog, mut locations) = (false, false);
    for h in &hints {
        match &h.kind {
            HintKind::StockChanged { .. } => {
                feeds.insert(Feed::StockChanges);
            }
            HintKind::SalesChanged { .. } => {
                feeds.insert(Feed::Sales);
            }
            HintKind::FulfilmentChanged {
                external_order_id, ..
            } => {
                orders.insert(external_order_id.clone());
            }
            HintKind::CatalogChanged => catalog = true,
            HintKind::LocationsChanged => locations = true,
            HintKind::Other { .. } => {}
        }
    }
    // The delivery is stored: the early poll is only a hint, so a full queue or a stopped
    // runner does not fail the delivery (the regular poll reads the same feeds).
    let early = !feeds.is_empty() || !orders.is_empty() || catalog || locations;
    let poll = early.then(|| OperatorAction::PollNow {
        connector: Some(endpoint.connector.id().as_str().to_owned()),
        feeds,
        orders,
        catalog,
        locations,
        reason: format!("webhook {} {event_id} (record {id})", endpoint.origin),
    });
    let polled = match poll {
        Some(action) => send(&state, action, None).is_ok(),
        None => false,
    };
    Ok(HttpResponse::Ok().json(json!({
        "status": "stored",
        "record": id,
        "event_id": event_id,
        "early_poll": polled,
    })))
}
