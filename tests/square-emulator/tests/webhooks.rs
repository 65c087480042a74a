//! Webhook delivery over real HTTP: Square's headers and signature, retries with
//! `square-retry-number` after a failed delivery, and the duplicate fault.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::Emu;
use serde_json::{Value, json};
use tillbridge_square_emulator::webhooks::sign;

/// What the receiver saw: (retry number, event id, signature, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A receiver that fails the first `fail_first` deliveries with 500, then answers 200.
async fn receiver(fail_first: usize) -> (actix_web::dev::ServerHandle, String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/hook",
            web::post().to(
                move |req: HttpRequest, body: web::Bytes, seen: web::Data<Seen>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let event: Value = serde_json::from_str(&body).unwrap();
                    let mut s = seen.lock().unwrap();
                    s.push((
                        h("square-retry-number"),
                        event["event_id"].as_str().unwrap().to_owned(),
                        h("x-square-hmacsha256-signature"),
                        body,
                    ));
                    if s.len() <= fail_first {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/hook", server.addrs()[0]);
    let srv = server.run();
    let handle = srv.handle();
    tokio::spawn(srv);
    (handle, url, seen)
}

async fn wait_deliveries(emu: &Emu, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let v = emu.ctl("GET", "webhooks", Value::Null).await;
        let d = v["deliveries"].as_array().unwrap().clone();
        if d.len() >= n {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deliveries did not arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_with_the_same_event_and_a_retry_number() {
    let emu = Emu::start().await;
    let (server, url, seen) = receiver(2).await;
    emu.ctl(
        "POST",
        "webhooks/subscription",
        json!({"url": url, "notification_url": "https://shop.example/square/webhooks",
               "signature_key": "k-123", "retries": 3, "retry_delay_ms": 1}),
    )
    .await;
    emu.ctl(
        "POST",
        "seed",
        json!({"locations": [{"id": "L1", "name": "Leeds"}]}),
    )
    .await;
    emu.ctl(
        "POST",
        "seed",
        json!({"items": [{"id": "I", "name": "Tee", "variations": [{"id": "V", "sku": "T", "price": 100}]}]}),
    )
    .await;
    let d = wait_deliveries(&emu, 3).await;
    let statuses: Vec<Option<u64>> = d.iter().map(|x| x["status"].as_u64()).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec!["0", "1", "2"]
    );
    assert!(
        seen.iter().all(|s| s.1 == seen[0].1),
        "one event, delivered until it lands"
    );
    for (_, _, sig, body) in &seen {
        assert_eq!(
            *sig,
            sign("k-123", "https://shop.example/square/webhooks", body),
            "signed over the registered notification URL and the exact body"
        );
    }
    let event: Value = serde_json::from_str(&seen[0].3).unwrap();
    assert_eq!(event["type"], "catalog.version.updated");
    server.stop(true).await;
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duplicate_fault_sends_an_event_twice_with_one_event_id() {
    let emu = Emu::start().await;
    let (server, url, seen) = receiver(0).await;
    emu.ctl("POST", "webhooks/subscription", json!({"url": url}))
        .await;
    emu.ctl("POST", "webhooks/faults", json!({"duplicate": 1}))
        .await;
    emu.seed_basic().await; // catalog.version.updated, then inventory.count.updated
    wait_deliveries(&emu, 3).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].1, seen[1].1,
        "the duplicate carries the same event_id"
    );
    assert_eq!((seen[0].0.as_str(), seen[1].0.as_str()), ("0", "1"));
    assert_ne!(seen[2].1, seen[0].1);
    server.stop(true).await;
    emu.handle.stop().await;
}
