//! Webhook events: Square's envelope, the HMAC-SHA256 signature over notification URL + raw
//! body, and delivery from a background task (with duplicate / reorder / drop faults).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc::UnboundedSender;

use crate::state::State;
use crate::time::format_ms;

/// Square's signature: base64(HMAC-SHA256(key = signature key as UTF-8, notification URL + body)).
pub fn sign(signature_key: &str, notification_url: &str, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signature_key.as_bytes()) else {
        return String::new();
    };
    mac.update(notification_url.as_bytes());
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Where events go: the URL the emulator POSTs to, the URL it signs (Square signs the URL as
/// registered in the subscription, which may differ from the one reached behind a proxy) and the key.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Subscription {
    pub url: String,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default = "default_signature_key")]
    pub signature_key: String,
    /// Retries after a failed delivery (not 2xx, or unreachable), with `square-retry-number`
    /// counting them; Square keeps trying for 72 h, the emulator a bounded number of times.
    #[serde(default)]
    pub retries: u32,
    /// The first retry's delay in milliseconds; doubled for each further retry.
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
}

pub fn default_retry_delay_ms() -> u64 {
    1000
}

pub fn default_signature_key() -> String {
    "tillbridge-emulator-signature-key".to_owned()
}

/// One event as generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    /// The exact bytes sent (and signed).
    pub body: String,
    /// The signature for the configured subscription (empty when none is configured).
    pub signature: String,
    pub notification_url: Option<String>,
}

/// One POST to put on the wire.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    /// Retries left after this attempt fails, and the delay before the next one.
    pub retries_left: u32,
    pub retry_delay_ms: u64,
    pub event_id: String,
    pub body: String,
    pub signature: String,
    pub retry_number: u32,
    pub initial_delivery: String,
}

/// Webhook faults, set through `/__emulator/webhooks/faults`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct WebhookFaults {
    /// Deliver each of the next N events twice (same event id, `square-retry-number: 1`).
    #[serde(default)]
    pub duplicate: u32,
    /// Hold events until `/__emulator/webhooks/flush`, then send them newest first.
    #[serde(default)]
    pub reorder: bool,
    /// Do not deliver the next N events (they stay in the event list).
    #[serde(default)]
    pub drop: u32,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub retry_number: u32,
    /// HTTP status, or none when the receiver could not be reached.
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct WebhookState {
    pub subscription: Option<Subscription>,
    pub events: Vec<Event>,
    pub faults: WebhookFaults,
    pub held: Vec<Delivery>,
    pub deliveries: Vec<DeliveryRecord>,
    pub sender: Option<UnboundedSender<Delivery>>,
}

impl WebhookState {
    fn send(&mut self, d: Delivery) {
        if let Some(tx) = &self.sender {
            // The receiver lives as long as the server; a closed channel means shutdown.
            let _ = tx.send(d);
        }
    }

    /// Releases held (reordered) events, newest first.
    pub fn flush(&mut self) -> usize {
        let mut held = std::mem::take(&mut self.held);
        held.reverse();
        let n = held.len();
        for d in held {
            self.send(d);
        }
        n
    }
}

impl State {
    /// Builds, signs, records and (if a subscription is configured) queues one event.
    pub fn emit(&mut self, kind: &str, data_type: &str, data_id: String, object: Value) {
        let event_id = self.ids.uuid();
        let created_at = format_ms(self.now());
        // `catalog.version.updated` has no data id in Square's schema: pass an empty one.
        let data = if data_id.is_empty() {
            json!({"type": data_type, "object": object})
        } else {
            json!({"type": data_type, "id": data_id, "object": object})
        };
        let body = json!({
            "merchant_id": self.merchant_id, "type": kind, "event_id": event_id,
            "created_at": created_at, "data": data,
        })
        .to_string();
        let sub = self.webhooks.subscription.clone();
        let (signature, notification_url) = match &sub {
            Some(s) => {
                let n = s.notification_url.clone().unwrap_or_else(|| s.url.clone());
                (sign(&s.signature_key, &n, &body), Some(n))
            }
            None => (String::new(), None),
        };
        self.webhooks.events.push(Event {
            event_id: event_id.clone(),
            kind: kind.to_owned(),
            created_at: created_at.clone(),
            body: body.clone(),
            signature: signature.clone(),
            notification_url,
        });
        let Some(sub) = sub else {
            return;
        };
        let wh = &mut self.webhooks;
        if wh.faults.drop > 0 {
            wh.faults.drop -= 1;
            return;
        }
        let delivery = Delivery {
            url: sub.url,
            retries_left: sub.retries,
            retry_delay_ms: sub.retry_delay_ms,
            event_id,
            body,
            signature,
            retry_number: 0,
            initial_delivery: created_at,
        };
        let copies = if wh.faults.duplicate > 0 {
            wh.faults.duplicate -= 1;
            2
        } else {
            1
        };
        for n in 0..copies {
            let mut d = delivery.clone();
            d.retry_number = n;
            if wh.faults.reorder {
                wh.held.push(d);
            } else {
                wh.send(d);
            }
        }
    }
}

/// POSTs one delivery with Square's headers; 10 s timeout like Square's.
pub async fn deliver(client: &reqwest::Client, d: &Delivery) -> DeliveryRecord {
    let res = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-square-hmacsha256-signature", &d.signature)
        .header("square-environment", "Sandbox")
        .header("square-initial-delivery-timestamp", &d.initial_delivery)
        .header("square-retry-number", d.retry_number.to_string())
        .timeout(std::time::Duration::from_secs(10))
        .body(d.body.clone())
        .send()
        .await;
    match res {
        Ok(r) => DeliveryRecord {
            event_id: d.event_id.clone(),
            retry_number: d.retry_number,
            status: Some(r.status().as_u16()),
            error: None,
        },
        Err(e) => DeliveryRecord {
            event_id: d.event_id.clone(),
            retry_number: d.retry_number,
            status: None,
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Square's published test vector (square-python-sdk tests/utilities/test_webhooks_helper.py).
    #[test]
    fn signature_matches_squares_published_example() {
        let body = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
        let sig = sign(
            "Ibxx_5AKakO-3qeNVR61Dw",
            "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            body,
        );
        assert_eq!(sig, "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=");
    }
}
