//! The HTTP API over real HTTP: the app on 127.0.0.1:0, a real SQLite store in a temporary
//! folder, the operator channel's receiver held by the test (it plays the runner's part), and
//! a real Square connector verifying webhook signatures.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Sha256;
use tillbridge_core::mapping::{
    MappingProblem, MappingProblemKind, MappingTable, ProblemSubject, Severity,
};
use tillbridge_core::pos::Timestamp;
use tillbridge_core::sync::{
    Command, CommandKind, ExceptionEntry, Journal, Reason, RecordState, Stats,
};
use tillbridge_edge::api::{
    self, ApiState, LatencySummary, MappingView, MetricsSnapshot, MetricsSource, OperatorAck,
    OperatorAction, OperatorRefusal, OperatorRequest, WebhookEndpoint,
};
use tillbridge_edge::commerce::auth::Secret;
use tillbridge_edge::pos::square::{self, SquareConfig, SquareConnector, WebhookConfig};
use tillbridge_edge::pos::{ConnectorId, Feed};
use tillbridge_edge::store::{NewRecord, RecordFilter, RecordId, RecordKind, SqlStore, Store};
use tokio::sync::mpsc;

const TOKEN: &str = "api-token-3f9c1e7d5b";
const SIGNING_KEY: &str = "square-signing-key-8a2b";
const NOTIFICATION_URL: &str = "https://edge.example.com/webhooks/square";

// ---------------------------------------------------------------------------------------------
// harness

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("tillbridge-api-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The runner's view, as plain numbers the test sets.
#[derive(Default)]
struct Numbers {
    metrics: Mutex<MetricsSnapshot>,
    mapping: Mutex<MappingView>,
    not_ready: Mutex<Option<String>>,
}

impl MetricsSource for Numbers {
    fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.lock().unwrap().clone()
    }
    fn mapping(&self) -> MappingView {
        self.mapping.lock().unwrap().clone()
    }
    fn readiness(&self) -> Result<(), String> {
        match self.not_ready.lock().unwrap().clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

struct App {
    base: String,
    http: reqwest::Client,
    store: Arc<SqlStore>,
    numbers: Arc<Numbers>,
    server: actix_web::dev::ServerHandle,
    _dir: TempDir,
}

/// Secrets the configuration view is given, none of which may ever leave the API.
const CONFIG_SECRETS: [&str; 4] = [
    "commerce-token-77aa",
    "pg-password-55bb",
    SIGNING_KEY,
    "admin-password-99cc",
];

fn config() -> Value {
    json!({
        "service": {
            "listen": "127.0.0.1:8080",
            "api_token": TOKEN,
            "database": "postgres://tillbridge:pg-password-55bb@db.internal:5432/tillbridge",
        },
        "commerce": {
            "base_url": "https://shop.example.com",
            "token": "commerce-token-77aa",
            "admin_username": "integration",
            "admin_password": "admin-password-99cc",
        },
        "pos": [{
            "kind": "square", "id": "main", "base_url": "https://connect.squareup.com",
            "webhook_signature_key": SIGNING_KEY, "notification_url": NOTIFICATION_URL,
        }],
    })
}

fn square_endpoint() -> WebhookEndpoint {
    let mut cfg = SquareConfig::new(
        ConnectorId::parse("main").unwrap(),
        "http://127.0.0.1:9",
        square::Secret::new("square-access-token"),
    );
    cfg.webhook = Some(WebhookConfig {
        notification_url: NOTIFICATION_URL.to_owned(),
        signature_key: square::Secret::new(SIGNING_KEY),
    });
    WebhookEndpoint::square(Arc::new(SquareConnector::new(cfg).unwrap()))
}

impl App {
    /// The app, and the operator channel's receiving end (the runner's part).
    async fn start(tag: &str) -> (Self, mpsc::Receiver<OperatorRequest>) {
        let dir = TempDir::new(tag);
        let store =
            Arc::new(SqlStore::open(dir.0.join("tillbridge.db").to_str().unwrap()).unwrap());
        let numbers = Arc::new(Numbers::default());
        let (tx, rx) = mpsc::channel(16);
        let state = ApiState::new(store.clone(), Secret::new(TOKEN), tx, numbers.clone())
            .unwrap()
            .with_config(config(), &CONFIG_SECRETS.map(Secret::new))
            .with_webhook("square", square_endpoint())
            .unwrap()
            .with_clock(Arc::new(|| ts("2026-03-02T10:00:00Z")));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (server, addr) = api::serve(state, listener).unwrap();
        let app = Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            store,
            numbers,
            server,
            _dir: dir,
        };
        (app, rx)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the right token: status and JSON body.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn text(&self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    fn insert(&self, kind: RecordKind, external: &str, payload: Value, at: &str) -> RecordId {
        let (id, new) = self
            .store
            .insert_record(&NewRecord {
                kind,
                origin: "square:main".into(),
                external_id: Some(external.into()),
                payload,
                received_at: ts(at),
            })
            .unwrap();
        assert!(new);
        id
    }

    fn journal(&self, entries: &[Journal], at: &str) {
        self.store.apply_journal(entries, ts(at)).unwrap();
    }

    /// A record moving to `state` with `detail`.
    fn move_record(&self, id: RecordId, state: RecordState, detail: &str, at: &str) {
        self.journal(
            &[Journal::Record {
                record: id.to_string(),
                state,
                detail: detail.into(),
            }],
            at,
        );
    }

    fn raise(&self, id: u64, reason: Reason, subject: &str, message: &str, records: &[RecordId]) {
        self.journal(
            &[Journal::Raised(ExceptionEntry {
                id,
                subject: subject.into(),
                reason,
                message: message.into(),
                raised_at: ts("2026-03-02T09:00:00Z"),
                records: records.iter().map(ToString::to_string).collect(),
            })],
            "2026-03-02T09:00:00Z",
        );
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Stop accepting; the runtime ends with the test.
        drop(self.server.stop(false));
    }
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn stock(sku: &str, on_hand: i64) -> Value {
    json!({"input": "pos_stock", "record": "", "sku": sku, "source": "leeds",
           "on_hand": on_hand.to_string(), "as_of": "2026-03-02T08:00:00Z"})
}

fn sign(url: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn inventory_event(event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "merchant_id": "MERCHANT1",
        "type": "inventory.count.updated",
        "event_id": event_id,
        "created_at": "2026-03-02T09:59:58Z",
        "data": {"type": "inventory_counts", "id": "x", "object": {"inventory_counts": [
            {"catalog_object_id": "VAR1", "location_id": "LOC1", "quantity": "4",
             "state": "IN_STOCK", "calculated_at": "2026-03-02T09:59:57Z"}
        ]}}
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// auth

const PROTECTED: [&str; 9] = [
    "/metrics",
    "/api/summary",
    "/api/records",
    "/api/records/1",
    "/api/commands",
    "/api/exceptions",
    "/api/config",
    "/api/mapping",
    "/api/unknown-route",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_are_open_every_other_route_needs_the_bearer_token() {
    let (app, mut rx) = App::start("auth").await;

    let (s, body) = app.text("/health", None).await;
    assert_eq!(s, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ok");
    let (s, body) = app.text("/ready", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["store"], "ok");

    for path in PROTECTED {
        // No token.
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"tillbridge\"",
            "{path}"
        );
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], "missing bearer token", "{path}");
        assert_eq!(b["field"], "authorization");
        assert!(
            b["hint"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );

        // Wrong token (one character off), and the token under another scheme.
        let r = app
            .http
            .get(app.url(path))
            .bearer_auth("api-token-3f9c1e7d5c")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let text = r.text().await.unwrap();
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(b["error"], "the bearer token is not valid");
        assert!(
            !text.contains("3f9c1e7d5c"),
            "the given token is not echoed"
        );
        let r = app
            .http
            .get(app.url(path))
            .basic_auth("ops", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            b["error"],
            "the Authorization header must use the Bearer scheme"
        );
    }

    // Right token.
    for path in &PROTECTED[..7] {
        let (s, _) = app.text(path, Some(TOKEN)).await;
        assert!(
            s == StatusCode::OK || s == StatusCode::NOT_FOUND,
            "{path}: {s}"
        );
    }
    let (s, b) = app.get("/api/records/1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no record yet");
    assert_eq!(b["error"], "no record with id 1");
    let (s, b) = app.get("/api/unknown-route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["field"], "path");
    assert_eq!(b["error"], "no route GET /api/unknown-route");

    // An action without the token reaches nobody.
    let r = app
        .http
        .post(app.url("/api/exceptions/1/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(rx.try_recv().is_err(), "nothing reached the runner");
}

// ---------------------------------------------------------------------------------------------
// records and commands

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_filter_by_kind_state_and_text_newest_first_with_total() {
    let (app, _rx) = App::start("records").await;
    let a1 = app.insert(
        RecordKind::PosStock,
        "f1:1",
        stock("SKU-A", 4),
        "2026-03-02T08:00:01Z",
    );
    let b = app.insert(
        RecordKind::PosStock,
        "f1:2",
        stock("SKU-B", 2),
        "2026-03-02T08:00:02Z",
    );
    let order = app.insert(
        RecordKind::CommerceOrder,
        "100000123@1",
        json!({"input": "commerce_order", "record": "", "order": {"increment_id": "100000123"}}),
        "2026-03-02T08:00:03Z",
    );
    let a2 = app.insert(
        RecordKind::PosStock,
        "f1:3",
        stock("SKU-A", 3),
        "2026-03-02T08:00:04Z",
    );
    let f = app.insert(
        RecordKind::Fulfilment,
        "ful-1",
        json!({"note": "SKU-A handed over"}),
        "2026-03-02T08:00:05Z",
    );
    app.move_record(
        b,
        RecordState::Stalled,
        "Commerce shows salable 0 for SKU-B in stock 1; Tillbridge expects 2",
        "2026-03-02T08:01:00Z",
    );

    // Everything, newest first.
    let (s, all) = app.get("/api/records").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all["total"], 5);
    let ids: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![f.0, a2.0, order.0, b.0, a1.0]);

    // By kind.
    let (_, r) = app.get("/api/records?kind=pos_stock").await;
    assert_eq!(r["total"], 3);
    assert!(
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["kind"] == "pos_stock")
    );

    // By state: the stalled record, with its sentence.
    let (_, r) = app.get("/api/records?state=stalled").await;
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["id"], b.0);
    assert_eq!(r["items"][0]["state"], "stalled");
    assert_eq!(
        r["items"][0]["detail"],
        "Commerce shows salable 0 for SKU-B in stock 1; Tillbridge expects 2"
    );

    // By text, in the payload or the detail.
    let (_, r) = app.get("/api/records?contains=SKU-A&kind=pos_stock").await;
    assert_eq!(r["total"], 2);
    let (_, r) = app.get("/api/records?contains=100000123").await;
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["kind"], "commerce_order");

    // Paging: total stays the whole count.
    let (_, p1) = app.get("/api/records?limit=2").await;
    let (_, p3) = app.get("/api/records?limit=2&offset=4").await;
    assert_eq!(
        (p1["total"].clone(), p3["total"].clone()),
        (json!(5), json!(5))
    );
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["items"][0]["id"], f.0);
    assert_eq!(p3["items"].as_array().unwrap().len(), 1);
    assert_eq!(p3["items"][0]["id"], a1.0);
    assert_eq!(
        (p3["limit"].clone(), p3["offset"].clone()),
        (json!(2), json!(4))
    );

    // Bad parameters name themselves.
    for (query, field, starts) in [
        ("limit=0", "limit", "limit must be between 1 and 500"),
        ("limit=501", "limit", "limit must be between 1 and 500"),
        ("offset=-3", "offset", "offset must be a whole number"),
        (
            "state=stuck",
            "state",
            "state 'stuck' is not one of: received, planned",
        ),
        ("kind=sale", "kind", "kind 'sale' is not one of: pos_stock"),
        ("sate=stalled", "sate", "unknown parameter 'sate'"),
    ] {
        let (s, e) = app.get(&format!("/api/records?{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(e["field"], field, "{query}");
        assert!(
            e["error"].as_str().unwrap().starts_with(starts),
            "{query}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_detail_shows_its_life_history_and_the_exception_naming_it() {
    let (app, _rx) = App::start("record").await;
    let id = app.insert(
        RecordKind::PosStock,
        "f2:1",
        stock("SKU-C", 6),
        "2026-03-02T08:00:00Z",
    );
    app.move_record(
        id,
        RecordState::Planned,
        "queued for push",
        "2026-03-02T08:00:01Z",
    );
    app.move_record(id, RecordState::Sent, "push 3 sent", "2026-03-02T08:00:02Z");
    app.move_record(
        id,
        RecordState::Stalled,
        "Commerce shows salable 0 for SKU-C in stock 1",
        "2026-03-02T08:00:09Z",
    );
    app.raise(
        4,
        Reason::SalableDidNotMove,
        "SKU-C in stock 1",
        "Commerce shows salable 0 for SKU-C in stock 1; Tillbridge expects 6.",
        &[id],
    );

    let (s, r) = app.get(&format!("/api/records/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["id"], id.0);
    assert_eq!(r["kind"], "pos_stock");
    assert_eq!(r["state"], "stalled");
    assert_eq!(r["payload"]["sku"], "SKU-C");
    assert_eq!(
        r["payload"]["on_hand"], "6",
        "quantities stay decimal strings"
    );
    let history: Vec<(String, String)> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["state"].as_str().unwrap().to_owned(),
                h["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let tail = &history[history.len() - 3..];
    assert_eq!(
        tail,
        &[
            ("planned".to_owned(), "queued for push".to_owned()),
            ("sent".to_owned(), "push 3 sent".to_owned()),
            (
                "stalled".to_owned(),
                "Commerce shows salable 0 for SKU-C in stock 1".to_owned()
            ),
        ]
    );
    assert_eq!(
        r["history"][history.len() - 1]["at"],
        "2026-03-02T08:00:09.000Z"
    );
    let ex = &r["exceptions"][0];
    assert_eq!(ex["id"], 4);
    assert_eq!(ex["reason"], "salable_did_not_move");
    assert_eq!(ex["status"], "open");
    assert!(ex["guide"].as_str().unwrap().contains("indexer"));

    let (s, e) = app.get("/api/records/987654").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "no record with id 987654");
    assert_eq!(e["field"], "id");
    let (s, e) = app.get("/api/records/abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "id");
    assert_eq!(e["error"], "record id must be a whole number (got 'abc')");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_list_by_state_and_show_their_attempt_history() {
    let (app, _rx) = App::start("commands").await;
    let push = |attempt| Command {
        id: 11,
        idempotency_key: "push:11".into(),
        attempt,
        kind: CommandKind::PushSourceItems {
            items: vec![tillbridge_core::sync::SourceItemWrite {
                sku: tillbridge_core::pos::Sku::parse("SKU-D").unwrap(),
                source: tillbridge_core::pos::SourceCode::parse("leeds").unwrap(),
                quantity: Decimal::new(25, 1),
                status: 1,
            }],
        },
    };
    app.store
        .put_command(&push(1), ts("2026-03-02T08:00:00Z"))
        .unwrap();
    app.journal(
        &[Journal::Command {
            command: 11,
            state: RecordState::Sent,
            detail: "attempt 1: 503 from Commerce".into(),
        }],
        "2026-03-02T08:00:01Z",
    );
    app.store
        .put_command(&push(2), ts("2026-03-02T08:00:05Z"))
        .unwrap();
    app.journal(
        &[Journal::Command {
            command: 11,
            state: RecordState::Confirmed,
            detail: "attempt 2: 200".into(),
        }],
        "2026-03-02T08:00:06Z",
    );

    let (s, list) = app.get("/api/commands?state=confirmed").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["command_id"], 11);
    assert_eq!(list["items"][0]["kind"], "push_source_items");
    let (_, none) = app.get("/api/commands?state=failed").await;
    assert_eq!(none["total"], 0);

    let (s, c) = app.get("/api/commands/11").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["idempotency_key"], "push:11");
    assert_eq!(c["attempts"], 2);
    assert_eq!(c["state"], "confirmed");
    assert_eq!(c["payload"]["kind"]["items"][0]["quantity"], "2.5", "{c}");
    let details: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        [
            "attempt 1 sent",
            "attempt 1: 503 from Commerce",
            "attempt 2 sent",
            "attempt 2: 200"
        ]
    );

    let (s, e) = app.get("/api/commands/12").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "no command with id 12");
}

// ---------------------------------------------------------------------------------------------
// exceptions and operator actions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_list_open_resolved_or_all_and_by_reason() {
    let (app, _rx) = App::start("exceptions").await;
    app.raise(
        1,
        Reason::Timeout,
        "SKU-E@leeds",
        "3 pushes of SKU-E@leeds did not get through.",
        &[],
    );
    app.raise(
        2,
        Reason::NegativeOnHand,
        "SKU-F@leeds",
        "The till reports -2 on hand.",
        &[],
    );
    app.raise(
        3,
        Reason::Timeout,
        "SKU-G@york",
        "3 pushes of SKU-G@york did not get through.",
        &[],
    );
    app.journal(
        &[Journal::Resolved {
            id: 2,
            at: ts("2026-03-02T09:30:00Z"),
            note: "counted the shelf, till corrected".into(),
        }],
        "2026-03-02T09:30:00Z",
    );

    let (s, open) = app.get("/api/exceptions").await;
    assert_eq!(s, StatusCode::OK, "{open}");
    assert_eq!(open["status"], "open");
    assert_eq!(open["total"], 2);
    let ids: BTreeSet<u64> = open["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 3]));
    for e in open["items"].as_array().unwrap() {
        assert_eq!(e["status"], "open");
        assert_eq!(e["reason"], "timeout");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("did not get through")
        );
        assert!(
            e["guide"]
                .as_str()
                .unwrap()
                .starts_with("Retries did not get through")
        );
    }

    let (_, resolved) = app.get("/api/exceptions?status=resolved").await;
    assert_eq!(resolved["total"], 1);
    assert_eq!(resolved["items"][0]["id"], 2);
    assert_eq!(resolved["items"][0]["status"], "resolved");
    assert_eq!(
        resolved["items"][0]["resolution"],
        "counted the shelf, till corrected"
    );
    assert_eq!(resolved["items"][0]["reason"], "negative_on_hand");

    let (_, all) = app.get("/api/exceptions?status=all").await;
    assert_eq!(all["total"], 3);
    let (_, timeouts) = app
        .get("/api/exceptions?status=all&reason=timeout&limit=1")
        .await;
    assert_eq!(timeouts["total"], 2);
    assert_eq!(timeouts["items"].as_array().unwrap().len(), 1);

    let (s, e) = app.get("/api/exceptions?status=closed").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "status");
    assert_eq!(
        e["error"],
        "status 'closed' is not one of: open, resolved, all"
    );
    let (s, e) = app.get("/api/exceptions?reason=slow").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_resolve_reach_the_runner_with_their_payload_and_answer_its_reply() {
    let (app, mut rx) = App::start("actions").await;

    // Retry: the runner gets exactly the action and answers.
    let call = app.post("/api/exceptions/7/retry", Some(json!({"by": "alice"})));
    let runner = async {
        let req = rx.recv().await.unwrap();
        assert_eq!(
            req.action,
            OperatorAction::RetryException {
                id: 7,
                by: "alice".into()
            }
        );
        req.reply
            .unwrap()
            .send(Ok(OperatorAck {
                record: Some(RecordId(41)),
                message: "retry requested for SKU-E@leeds".into(),
            }))
            .unwrap();
    };
    let ((s, body), ()) = tokio::join!(call, runner);
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "done");
    assert_eq!(body["record"], 41);
    assert_eq!(body["message"], "retry requested for SKU-E@leeds");
    assert_eq!(body["action"]["action"], "retry_exception");

    // Resolve: the note travels; `by` defaults to "api".
    let call = app.post(
        "/api/exceptions/8/resolve",
        Some(json!({"note": "  goods recovered from the courier  "})),
    );
    let runner = async {
        let req = rx.recv().await.unwrap();
        assert_eq!(
            req.action,
            OperatorAction::ResolveException {
                id: 8,
                note: "goods recovered from the courier".into(),
                by: "api".into()
            }
        );
        req.reply
            .unwrap()
            .send(Ok(OperatorAck {
                record: Some(RecordId(42)),
                message: "resolved".into(),
            }))
            .unwrap();
    };
    let ((s, body), ()) = tokio::join!(call, runner);
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["action"]["note"], "goods recovered from the courier");

    // Resolve without a note: 400 naming `note`, and nothing is sent.
    for body in [
        None,
        Some(json!({})),
        Some(json!({"note": "   "})),
        Some(json!({"by": "bob"})),
    ] {
        let (s, e) = app.post("/api/exceptions/8/resolve", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(e["field"], "note", "{body:?}");
        assert!(e["error"].as_str().unwrap().starts_with("note is required"));
    }
    let (s, e) = app
        .post(
            "/api/exceptions/8/resolve",
            Some(json!({"note": "x", "nite": "y"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "nite");
    let (s, e) = app.post("/api/exceptions/eight/retry", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "id");
    assert!(rx.try_recv().is_err(), "refused requests reach nobody");

    // The runner's refusals become 404 and 409, naming the id.
    for (refusal, status) in [
        (
            OperatorRefusal::UnknownException { id: 99 },
            StatusCode::NOT_FOUND,
        ),
        (
            OperatorRefusal::AlreadyResolved { id: 99 },
            StatusCode::CONFLICT,
        ),
    ] {
        let call = app.post("/api/exceptions/99/retry", None);
        let expected = refusal.to_string();
        let runner = async {
            let req = rx.recv().await.unwrap();
            req.reply.unwrap().send(Err(refusal)).unwrap();
        };
        let ((s, e), ()) = tokio::join!(call, runner);
        assert_eq!(s, status);
        assert_eq!(e["field"], "id");
        assert_eq!(e["error"], expected);
        assert!(expected.contains("99"));
    }

    // A runner that takes the request without answering: 202 queued.
    let call = app.post("/api/exceptions/5/retry", None);
    let runner = async {
        let req = rx.recv().await.unwrap();
        drop(req.reply);
    };
    let ((s, body), ()) = tokio::join!(call, runner);
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "queued");

    // Poll now: handed over without waiting.
    let (s, body) = app
        .post(
            "/api/poll",
            Some(json!({"feeds": ["sales"], "by": "carol"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let req = rx.recv().await.unwrap();
    assert!(req.reply.is_none());
    assert_eq!(
        req.action,
        OperatorAction::PollNow {
            connector: None,
            feeds: BTreeSet::from([Feed::Sales]),
            orders: BTreeSet::new(),
            catalog: false,
            locations: false,
            reason: "operator carol".into()
        }
    );
    let (s, e) = app
        .post("/api/poll", Some(json!({"feeds": ["everything"]})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "feeds");

    // A stopped runner: 503, and /ready says why.
    rx.close();
    while rx.try_recv().is_ok() {}
    let (s, e) = app.post("/api/exceptions/7/retry", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e["component"], "runner");
}

// ---------------------------------------------------------------------------------------------
// metrics, summary, readiness

fn busy_numbers(app: &App) {
    let mut m = app.numbers.metrics.lock().unwrap();
    *m = MetricsSnapshot {
        stats: Stats {
            pos_events: 1200,
            commerce_requests: 340,
            items_written: 5000,
            pushes_confirmed: 310,
            retries: 4,
            throttles: 2,
            drift_units: Decimal::new(35, 1),
            ..Stats::default()
        },
        pending_pushes: 17,
        commands_in_flight: 3,
        budget_requests_per_second: 6,
        budget_items_per_second: 80,
        push_latency: LatencySummary::from_samples(&[120, 180, 250, 400, 2600]),
        role: "active".to_owned(),
    };
}

/// Parses the text format: every sample line's family has HELP and TYPE before it and every
/// value is a number (or NaN); returns `name{labels}` → the value as a normalised decimal.
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut helped = BTreeSet::new();
    let mut typed = std::collections::BTreeMap::new();
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "HELP before TYPE: {line}");
            typed.insert(name.to_owned(), kind.to_owned());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("tillbridge_"), "{line}");
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "summary"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "TYPE before sample: {line}");
            if series.contains('{') {
                assert!(series.ends_with('}'), "{line}");
            }
            let v = if value == "NaN" {
                value.to_owned()
            } else {
                let d: Decimal = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {line}"));
                d.normalize().to_string()
            };
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "duplicate: {line}"
            );
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_help_type_and_the_values() {
    let (app, _rx) = App::start("metrics").await;
    busy_numbers(&app);
    let id = app.insert(
        RecordKind::PosStock,
        "f3:1",
        stock("SKU-H", 1),
        "2026-03-02T08:00:00Z",
    );
    app.move_record(
        id,
        RecordState::Stalled,
        "salable did not move",
        "2026-03-02T08:00:05Z",
    );
    app.raise(
        9,
        Reason::SalableDidNotMove,
        "SKU-H in stock 1",
        "Commerce shows 0.",
        &[id],
    );

    let r = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE tillbridge_pos_events_total counter\n"));
    assert!(text.contains("# TYPE tillbridge_push_latency_seconds summary\n"));
    let m = parse_prometheus(&text);
    let v = |k: &str| {
        m.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
    };
    assert_eq!(v("tillbridge_pos_events_total"), "1200");
    assert_eq!(v("tillbridge_commerce_requests_total"), "340");
    assert_eq!(v("tillbridge_items_written_total"), "5000");
    assert_eq!(v("tillbridge_drift_units_total"), "3.5");
    assert_eq!(v("tillbridge_pending_pushes"), "17");
    assert_eq!(v("tillbridge_engine_active"), "1");
    assert_eq!(v("tillbridge_commands_in_flight"), "3");
    assert_eq!(v("tillbridge_budget_requests_per_second"), "6");
    assert_eq!(
        v("tillbridge_push_latency_seconds{quantile=\"0.5\"}"),
        "0.25"
    );
    assert_eq!(
        v("tillbridge_push_latency_seconds{quantile=\"0.99\"}"),
        "2.6"
    );
    assert_eq!(v("tillbridge_push_latency_seconds_count"), "5");
    assert_eq!(v("tillbridge_push_latency_seconds_sum"), "3.55");
    assert_eq!(
        v("tillbridge_open_exceptions{reason=\"salable_did_not_move\"}"),
        "1"
    );
    assert_eq!(
        v("tillbridge_open_exceptions{reason=\"timeout\"}"),
        "0",
        "present at zero"
    );
    assert_eq!(
        v("tillbridge_records{kind=\"pos_stock\",state=\"stalled\"}"),
        "1"
    );
    assert_eq!(v("tillbridge_ready"), "1");
    assert_eq!(v("tillbridge_store_up"), "1");
    assert_eq!(
        v("tillbridge_webhook_deliveries_total{endpoint=\"square\",outcome=\"stored\"}"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_has_the_numbers_the_dashboard_shows_first() {
    let (app, _rx) = App::start("summary").await;
    busy_numbers(&app);
    let a = app.insert(
        RecordKind::PosStock,
        "f4:1",
        stock("SKU-I", 1),
        "2026-03-02T08:00:00Z",
    );
    let b = app.insert(
        RecordKind::PosStock,
        "f4:2",
        stock("SKU-J", 1),
        "2026-03-02T08:00:01Z",
    );
    app.insert(
        RecordKind::PosSale,
        "f4:3",
        json!({"sku": "SKU-I"}),
        "2026-03-02T08:00:02Z",
    );
    app.move_record(
        a,
        RecordState::Verified,
        "salable 1 as expected",
        "2026-03-02T08:00:09Z",
    );
    app.move_record(b, RecordState::Stalled, "refused", "2026-03-02T08:00:09Z");
    app.raise(
        1,
        Reason::CommerceRefused,
        "SKU-J@leeds",
        "Commerce refused.",
        &[b],
    );
    app.raise(
        2,
        Reason::SalableDidNotMove,
        "SKU-J in stock 1",
        "Commerce shows 0.",
        &[b],
    );
    app.raise(
        3,
        Reason::SalableDidNotMove,
        "SKU-I in stock 1",
        "Commerce shows 0.",
        &[a],
    );

    let (s, sum) = app.get("/api/summary").await;
    assert_eq!(s, StatusCode::OK, "{sum}");
    assert_eq!(sum["ready"], true);
    assert_eq!(sum["open_exceptions"]["total"], 3);
    assert_eq!(
        sum["open_exceptions"]["by_reason"]["salable_did_not_move"],
        2
    );
    assert_eq!(sum["open_exceptions"]["by_reason"]["commerce_refused"], 1);
    assert_eq!(sum["open_exceptions"]["by_reason"]["unroutable"], 0);
    assert_eq!(sum["records"]["total"], 3);
    assert_eq!(sum["records"]["by_state"]["stalled"], 1);
    assert_eq!(sum["records"]["by_state"]["verified"], 1);
    assert_eq!(sum["records"]["by_state"]["received"], 1);
    assert_eq!(sum["records"]["by_kind"]["pos_stock"], 2);
    assert_eq!(sum["pending_pushes"], 17);
    assert_eq!(sum["role"], "active");
    assert_eq!(
        sum["push_latency_ms"],
        json!({"count": 5, "p50": 250, "p99": 2600})
    );
    assert_eq!(
        sum["budget"],
        json!({"requests_per_second": 6, "items_per_second": 80})
    );
    assert_eq!(sum["stats"]["drift_units"], "3.5", "decimals as strings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_each_check_that_fails() {
    let (app, mut rx) = App::start("ready").await;
    *app.numbers.not_ready.lock().unwrap() = Some("replaying 120 records".into());
    let (s, body) = app.text("/ready", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["runner"], "replaying 120 records");
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["error"], "not ready: runner");

    *app.numbers.not_ready.lock().unwrap() = None;
    rx.close();
    let (s, body) = app.text("/ready", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["checks"]["runner"], "ok");
    assert!(
        body["checks"]["operator_channel"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    let (_, metrics) = app.text("/metrics", Some(TOKEN)).await;
    assert!(metrics.contains("\ntillbridge_ready 0\n"));
}

// ---------------------------------------------------------------------------------------------
// configuration and mapping

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_view_redacts_every_secret_and_no_response_carries_one() {
    let (app, _rx) = App::start("config").await;
    let (s, cfg) = app.get("/api/config").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cfg["service"]["api_token"], "***");
    assert_eq!(cfg["service"]["listen"], "127.0.0.1:8080");
    assert_eq!(
        cfg["service"]["database"],
        "postgres://tillbridge:***@db.internal:5432/tillbridge"
    );
    assert_eq!(cfg["commerce"]["token"], "***");
    assert_eq!(cfg["commerce"]["admin_password"], "***");
    assert_eq!(cfg["commerce"]["admin_username"], "integration");
    assert_eq!(cfg["pos"][0]["webhook_signature_key"], "***");
    assert_eq!(cfg["pos"][0]["notification_url"], NOTIFICATION_URL);

    // Every response, authorised or not, and the dashboard files.
    let mut bodies = Vec::new();
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/api/summary",
        "/api/records",
        "/api/commands",
        "/api/exceptions?status=all",
        "/api/config",
        "/api/mapping",
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/nowhere",
    ] {
        bodies.push(app.text(path, Some(TOKEN)).await.1);
        bodies.push(app.text(path, None).await.1);
        bodies.push(app.text(path, Some("wrong")).await.1);
    }
    let bad = app
        .http
        .post(app.url("/webhooks/square"))
        .header("x-square-hmacsha256-signature", "bm9wZQ==")
        .body(inventory_event("evt-x"))
        .send()
        .await
        .unwrap();
    bodies.push(bad.text().await.unwrap());
    for body in &bodies {
        for secret in CONFIG_SECRETS.iter().chain([&TOKEN]) {
            assert!(!body.contains(secret), "{secret} leaked in: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_view_shows_the_table_and_its_problems() {
    let (app, _rx) = App::start("mapping").await;
    let table: MappingTable = serde_json::from_value(json!({
        "locations": [{"pos_location": "LOC1", "store": "leeds", "source": "leeds"}],
        "items": [{"variation": "VAR1", "sku": "SKU-A"}],
    }))
    .unwrap();
    *app.numbers.mapping.lock().unwrap() = MappingView {
        table,
        problems: vec![MappingProblem {
            kind: MappingProblemKind::SourceNotLinkedToStock,
            severity: Severity::Error,
            subject: ProblemSubject {
                source: Some(tillbridge_core::pos::SourceCode::parse("leeds").unwrap()),
                ..Default::default()
            },
            message: "Source 'leeds' is in no MSI stock; link it to a stock.".into(),
        }],
        checked_at: Some(ts("2026-03-02T07:00:00Z")),
    };
    let (s, m) = app.get("/api/mapping").await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["errors"], 1);
    assert_eq!(m["warnings"], 0);
    assert_eq!(m["counts"], json!({"locations": 1, "items": 1, "taxes": 0}));
    assert_eq!(m["table"]["locations"][0]["source"], "leeds");
    assert_eq!(m["problems"][0]["kind"], "source_not_linked_to_stock");
    assert_eq!(m["problems"][0]["subject"]["source"], "leeds");
    assert_eq!(m["checked_at"], "2026-03-02T07:00:00.000Z");
    let (_, sum) = app.get("/api/summary").await;
    assert_eq!(sum["mapping"]["errors"], 1);
}

// ---------------------------------------------------------------------------------------------
// webhooks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_is_stored_once_answered_200_and_asks_for_an_early_poll() {
    let (app, mut rx) = App::start("webhook").await;
    let body = inventory_event("evt-0001");
    let send = || {
        app.http
            .post(app.url("/webhooks/square"))
            .header("content-type", "application/json")
            .header(
                "x-square-hmacsha256-signature",
                sign(NOTIFICATION_URL, &body),
            )
            .body(body.clone())
            .send()
    };

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["status"], "stored");
    assert_eq!(first["event_id"], "evt-0001");
    assert_eq!(first["early_poll"], true);
    let id = first["record"].as_i64().unwrap();

    let page = app
        .store
        .records(&RecordFilter {
            kind: Some(RecordKind::Webhook),
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(page.total, 1);
    let row = &page.items[0];
    assert_eq!(row.id, RecordId(id));
    assert_eq!(row.origin, "square:main");
    assert_eq!(row.external_id.as_deref(), Some("evt-0001"));
    assert_eq!(row.received_at, ts("2026-03-02T10:00:00Z"));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(row.payload, sent, "the payload as delivered");

    let req = rx.recv().await.unwrap();
    assert!(req.reply.is_none());
    let OperatorAction::PollNow {
        connector,
        feeds,
        reason,
        ..
    } = req.action
    else {
        panic!("expected PollNow, got {:?}", req.action);
    };
    assert_eq!(connector.as_deref(), Some("main"));
    assert_eq!(feeds, BTreeSet::from([Feed::StockChanges]));
    assert_eq!(
        reason,
        format!("webhook square:main evt-0001 (record {id})")
    );

    // Square delivers again: stored once, answered 200, no second poll.
    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["record"], id);
    let total = app
        .store
        .records(&RecordFilter {
            kind: Some(RecordKind::Webhook),
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap()
        .total;
    assert_eq!(total, 1);
    assert!(rx.try_recv().is_err(), "a duplicate does not poll again");

    let (_, metrics) = app.text("/metrics", Some(TOKEN)).await;
    let m = parse_prometheus(&metrics);
    assert_eq!(
        m["tillbridge_webhook_deliveries_total{endpoint=\"square\",outcome=\"stored\"}"],
        "1"
    );
    assert_eq!(
        m["tillbridge_webhook_deliveries_total{endpoint=\"square\",outcome=\"duplicate\"}"],
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_bad_or_missing_signature_is_refused_and_stored_nowhere() {
    let (app, mut rx) = App::start("webhook-bad").await;
    let body = inventory_event("evt-0002");

    // Signed for another URL (what a proxy rewriting the host would cause).
    let r = app
        .http
        .post(app.url("/webhooks/square"))
        .header(
            "x-square-hmacsha256-signature",
            sign("https://other.example.com/hook", &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "x-square-hmacsha256-signature");
    assert_eq!(
        e["error"],
        format!(
            "the signature does not match the body and the notification URL {NOTIFICATION_URL}"
        )
    );

    // Right signature, body changed after signing.
    let mut tampered = body.clone();
    let n = tampered.len();
    tampered[n - 3] = b' ';
    let r = app
        .http
        .post(app.url("/webhooks/square"))
        .header(
            "x-square-hmacsha256-signature",
            sign(NOTIFICATION_URL, &body),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // No signature.
    let r = app
        .http
        .post(app.url("/webhooks/square"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"],
        "missing signature header x-square-hmacsha256-signature"
    );

    // The bearer token is no substitute for a signature.
    let r = app
        .http
        .post(app.url("/webhooks/square"))
        .bearer_auth(TOKEN)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // An endpoint that does not exist.
    let r = app
        .http
        .post(app.url("/webhooks/shopify"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "name");
    assert_eq!(e["hint"], "configured: square");

    let all = app
        .store
        .records(&RecordFilter {
            limit: 10,
            ..RecordFilter::default()
        })
        .unwrap();
    assert_eq!(all.total, 0, "nothing stored");
    assert!(rx.try_recv().is_err(), "nothing polled");
    let (_, metrics) = app.text("/metrics", Some(TOKEN)).await;
    let m = parse_prometheus(&metrics);
    assert_eq!(
        m["tillbridge_webhook_deliveries_total{endpoint=\"square\",outcome=\"rejected\"}"],
        "4"
    );
}

// ---------------------------------------------------------------------------------------------
// the dashboard page

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_one_self_contained_page() {
    let (app, _rx) = App::start("dashboard").await;
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
    assert!(html.contains("<label for=\"token\">API token</label>"));
    for path in ["/dashboard.js", "/dashboard.css"] {
        let (s, text) = app.text(path, None).await;
        assert_eq!(s, StatusCode::OK);
        for part in [&html, &text] {
            assert!(
                !part.contains("http://") && !part.contains("https://"),
                "no external assets"
            );
        }
    }
    let (_, js) = app.text("/dashboard.js", None).await;
    for call in [
        "/api/summary",
        "/api/exceptions?status=open",
        "/api/records?limit=",
        "/retry",
        "/resolve",
    ] {
        assert!(js.contains(call), "{call}");
    }
    assert!(!js.contains("innerHTML"), "data is written as text only");

    // A wrong method is a JSON 405 naming the method.
    let r = app.http.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "method");
}

// ---------------------------------------------------------------------------------------------
// the dashboard in a real browser

/// Where playwright-core and Chromium are: `TILLBRIDGE_PLAYWRIGHT_DIR` (a folder with
/// `node_modules/playwright-core`) and `TILLBRIDGE_CHROMIUM`, else what `scripts/test.sh`
/// installs (`/var/tmp/tillbridge-playwright`, `/usr/bin/chromium`).
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var("TILLBRIDGE_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/tillbridge-playwright"));
    let modules = dir.join("node_modules");
    let chromium = std::env::var("TILLBRIDGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"));
    (modules.join("playwright-core").is_dir() && chromium.is_file()).then_some((modules, chromium))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_signs_in_shows_exceptions_retries_and_resolves() {
    let Some((modules, chromium)) = browser_tools() else {
        assert!(
            std::env::var("TILLBRIDGE_REQUIRE_BROWSER").is_err(),
            "TILLBRIDGE_REQUIRE_BROWSER is set but Chromium or playwright-core is missing"
        );
        eprintln!(
            "skipped: Chromium or playwright-core missing (scripts/test.sh installs both; or set \
             TILLBRIDGE_PLAYWRIGHT_DIR and TILLBRIDGE_CHROMIUM)"
        );
        return;
    };
    let (app, mut rx) = App::start("browser").await;
    busy_numbers(&app);
    let ok = app.insert(
        RecordKind::PosStock,
        "f9:1",
        stock("SKU-K", 5),
        "2026-03-02T08:00:00Z",
    );
    let bad = app.insert(
        RecordKind::PosStock,
        "f9:2",
        stock("SKU-L", 2),
        "2026-03-02T08:00:01Z",
    );
    app.move_record(
        ok,
        RecordState::Verified,
        "salable 5 as expected",
        "2026-03-02T08:00:05Z",
    );
    app.move_record(
        bad,
        RecordState::Stalled,
        "salable did not move",
        "2026-03-02T08:00:06Z",
    );
    app.raise(
        21,
        Reason::SalableDidNotMove,
        "SKU-L in stock 1",
        "Commerce shows salable 0 for SKU-L in stock 1; Tillbridge expects 2.",
        &[bad],
    );
    app.raise(
        22,
        Reason::NegativeOnHand,
        "SKU-M@leeds",
        "The till reports -1 on hand for SKU-M at leeds.",
        &[],
    );

    // The runner's part: answer both actions and keep them.
    let runner = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(req) = rx.recv().await {
            if let Some(reply) = req.reply {
                let _ = reply.send(Ok(OperatorAck {
                    record: None,
                    message: "taken".into(),
                }));
            }
            seen.push(req.action);
            if seen.len() == 2 {
                break;
            }
        }
        seen
    });

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard_check.cjs");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args([base.as_str(), TOKEN, shot.to_str().unwrap()])
            .env("NODE_PATH", modules)
            .env("TILLBRIDGE_CHROMIUM", chromium)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();

    assert_eq!(seen["summary"]["ready"], "ready");
    assert_eq!(seen["summary"]["open"], "2");
    assert_eq!(seen["summary"]["stalled"], "1");
    assert_eq!(seen["summary"]["pending"], "17");
    assert_eq!(seen["summary"]["p99"], "2600 ms");
    let reasons: BTreeSet<&str> = seen["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["salable did not move: 1", "negative on hand: 1"])
    );
    let rows = seen["exceptions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let salable = rows.iter().find(|r| r[0] == "21").unwrap();
    assert_eq!(salable[1], "salable did not move");
    assert_eq!(salable[2], "SKU-L in stock 1");
    let what = salable[3].as_str().unwrap();
    assert!(
        what.starts_with("Commerce shows salable 0 for SKU-L in stock 1"),
        "{what}"
    );
    assert!(what.contains("indexer"), "the guide is shown: {what}");
    let stalled = seen["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0].as_str() == Some(bad.to_string().as_str()))
        .unwrap();
    assert_eq!(stalled[3], "stalled — salable did not move (exception 21)");

    let first: u64 = rows[0][0].as_str().unwrap().parse().unwrap();
    let second: u64 = rows[1][0].as_str().unwrap().parse().unwrap();
    assert_eq!(
        seen["retried"],
        format!("Retry of exception {first}: taken")
    );
    assert_eq!(
        seen["resolved"],
        format!("Resolution of exception {second}: taken")
    );
    assert_eq!(seen["refused"], "Signed out: the bearer token is not valid");
    assert_eq!(seen["formVisible"], true);
    assert_eq!(
        runner.await.unwrap(),
        vec![
            OperatorAction::RetryException {
                id: first,
                by: "Dana".into()
            },
            OperatorAction::ResolveException {
                id: second,
                note: "counted the shelf, corrected the till".into(),
                by: "Dana".into()
            },
        ]
    );
}
