//! Two replicas of the service on one database (SQLite file, and PostgreSQL when available):
//! exactly one runs the engine, the other serves the API on standby and refuses operator
//! actions with the reason; when the active one stops, the standby takes over from the store
//! and the sync carries on.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tillbridge_edge::api::{OperatorAction, OperatorRefusal, OperatorRequest};
use tillbridge_edge::config::Settings;
use tillbridge_edge::runner::service::{Service, start};
use tillbridge_edge::runner::system_clock;

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn commerce_qty(http: &reqwest::Client, commerce: &str) -> Option<Decimal> {
    let v: Value = http
        .post(format!("{commerce}/__emulator/query"))
        .json(&json!({"check": {"source_item_qty": {"sku": "MUG", "source_code": "york"}}}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    match &v["value"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for: {what}");
}

fn settings(replica: &str, database: &str, commerce: &str, square: &str, york: &str) -> Settings {
    let toml = format!(
        r#"
[service]
api_token = "replica-test-token-0123456789"
database = "{database}"
poll_interval_ms = 100
fulfilment_poll_interval_ms = 100
replica = "{replica}"
lease_ttl_ms = 1500

[commerce]
base_url = "{commerce}"
token = "commerce-token"
website_stocks = {{ base = 2 }}

[[pos]]
kind = "square"
id = "square"
base_url = "{square}"
token = "square-token"

[[stores]]
pos = "square"
location = "{york}"
source = "york"
name = "York"
priority = 1
stocks = [2]
fulfils = true
"#
    );
    Settings::from_toml(&toml, "replicas-test.toml", Vec::new()).unwrap()
}

fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

async fn refused_on_standby(service: &Service) -> OperatorRefusal {
    let (tx, rx) = tokio::sync::oneshot::channel();
    service
        .operator()
        .send(OperatorRequest {
            action: OperatorAction::RetryException {
                id: 1,
                by: "test".into(),
            },
            reply: Some(tx),
        })
        .await
        .unwrap();
    rx.await.unwrap().unwrap_err()
}

async fn take_turns(database: &str) {
    let (_sq, square) = tillbridge_square_emulator::start(tillbridge_square_emulator::Config {
        token: "square-token".into(),
        real_time: true,
        ..tillbridge_square_emulator::Config::default()
    })
    .await
    .unwrap();
    let (_cm, commerce) =
        tillbridge_commerce_emulator::start(tillbridge_commerce_emulator::EmulatorConfig {
            token: "commerce-token".into(),
            real_time: true,
            ..tillbridge_commerce_emulator::EmulatorConfig::default()
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let seeded = post(
        &http,
        format!("{square}/__emulator/seed"),
        json!({"locations": [{"name": "York"}],
               "items": [{"name": "Mug", "variations": [{"name": "Mug", "sku": "MUG", "price": 800}]}]}),
    )
    .await;
    let york = seeded["locations"]["York"].as_str().unwrap().to_owned();
    post(
        &http,
        format!("{square}/__emulator/stock"),
        json!({"sku": "MUG", "location_id": york, "quantity": 6}),
    )
    .await;
    let res = post(
        &http,
        format!("{commerce}/__emulator/ops"),
        json!({"ops": [
            {"op": "create_source", "source_code": "york", "name": "York", "enabled": true, "country_id": "GB", "postcode": "YO1 7HH"},
            {"op": "create_stock", "stock_id": 2, "name": "UK", "sales_channels": [{"type": "website", "code": "base"}]},
            {"op": "save_stock_source_links", "links": [{"stock_id": 2, "source_code": "york", "priority": 1}]},
            {"op": "create_product", "sku": "MUG", "type": "simple"},
            {"op": "save_source_items", "items": [{"sku": "MUG", "source_code": "york", "quantity": 0, "status": 0}]}
        ]}),
    )
    .await;
    assert_eq!(res["failed"], json!(false), "{res}");

    let a = start(
        settings("replica-a", database, &commerce, &square, &york),
        system_clock(),
        listener(),
    )
    .await
    .unwrap();
    wait_for("replica a runs the engine and syncs", || async {
        a.view().role == "active" && commerce_qty(&http, &commerce).await == Some(6.into())
    })
    .await;
    let b = start(
        settings("replica-b", database, &commerce, &square, &york),
        system_clock(),
        listener(),
    )
    .await
    .unwrap();
    wait_for("replica b stands by", || async {
        b.view().role == "standby"
    })
    .await;
    assert_eq!(a.view().role, "active", "one active replica");
    let refusal = refused_on_standby(&b).await;
    assert!(
        matches!(&refusal, OperatorRefusal::Unavailable { message } if message.contains("standby")),
        "{refusal:?}"
    );
    // The standby's API is up and says what it is.
    let ready = http.get(format!("{}/ready", b.url())).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let summary: Value = http
        .get(format!("{}/api/summary", b.url()))
        .bearer_auth("replica-test-token-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["role"], "standby", "{summary}");
    let metrics = http
        .get(format!("{}/metrics", a.url()))
        .bearer_auth("replica-test-token-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tillbridge_engine_active 1"), "{metrics}");

    // The active replica stops (releasing the lease); the standby takes over from the store.
    a.stop().await.unwrap();
    wait_for("replica b takes over", || async {
        b.view().role == "active"
    })
    .await;
    post(
        &http,
        format!("{square}/__emulator/sales"),
        json!({"location_id": york, "lines": [{"sku": "MUG", "quantity": 2}]}),
    )
    .await;
    wait_for("the sale reaches Commerce through replica b", || async {
        commerce_qty(&http, &commerce).await == Some(4.into())
    })
    .await;
    // B took over from the store: the snapshot's figures, no re-push of the first 6.
    assert!(b.view().stats.pos_events >= 1);
    b.stop().await.unwrap();
}

#[actix_web::test]
async fn replicas_take_turns_on_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("tillbridge-replicas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    take_turns(&format!("sqlite://{}", dir.join("tb.db").display())).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn replicas_take_turns_on_one_postgres_database() {
    let Ok(admin_url) = std::env::var("TILLBRIDGE_TEST_PG_URL") else {
        assert_eq!(
            std::env::var("TILLBRIDGE_SKIP_PG").as_deref(),
            Ok("1"),
            "TILLBRIDGE_TEST_PG_URL is not set: run scripts/test.sh (it starts a throwaway \
             PostgreSQL) or set TILLBRIDGE_SKIP_PG=1 to skip on purpose"
        );
        return;
    };
    let name = format!("tb_replicas_{}", std::process::id());
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    take_turns(url.as_str()).await;
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
