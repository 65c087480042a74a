//! `tillbridge serve` as a retailer runs it: the real binary, a TOML file, both emulators over
//! HTTP, the API and dashboard on loopback, Ctrl-C to stop. Checks that a till sale reaches
//! Commerce, the API answers with the token (and only with it), operator actions reach the
//! runner, the engine's state is saved on the way out and restored on the next start, and no
//! secret from the configuration is ever printed.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

const API_TOKEN: &str = "serve-test-api-token-7f3a9c";
const COMMERCE_TOKEN: &str = "commerce-secret-4b1d";
const SQUARE_TOKEN: &str = "square-secret-93ce";

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `tillbridge serve` and wait for its banner; returns the child and the banner.
fn spawn_serve(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tillbridge"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("TILLBRIDGE_SERVICE_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    while !banner.contains("stop with Ctrl-C") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("serve exited early: {banner}\n{err}");
        }
        banner.push_str(&line);
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        rest
    });
    (child, banner)
}

/// Ctrl-C, then the exit status and stderr.
fn interrupt(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().to_string();
    let ok = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT {pid}");
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

async fn commerce_qty(http: &reqwest::Client, commerce: &str, sku: &str, source: &str) -> Value {
    let v: Value = http
        .post(format!("{commerce}/__emulator/query"))
        .json(&json!({"check": {"source_item_qty": {"sku": sku, "source_code": source}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["value"].clone()
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

/// A quantity as the emulator writes it (a JSON number or string), exactly.
fn qty(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

#[actix_web::test]
async fn serve_runs_the_sync_and_the_api_and_stops_cleanly() {
    let (_sq, square) = tillbridge_square_emulator::start(tillbridge_square_emulator::Config {
        token: SQUARE_TOKEN.into(),
        real_time: true,
        ..tillbridge_square_emulator::Config::default()
    })
    .await
    .unwrap();
    let (_cm, commerce) =
        tillbridge_commerce_emulator::start(tillbridge_commerce_emulator::EmulatorConfig {
            token: COMMERCE_TOKEN.into(),
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

    let dir = std::env::temp_dir().join(format!("tillbridge-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = dir.join("tillbridge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
listen = "127.0.0.1:{port}"
api_token = "{API_TOKEN}"
database = "{db}"
poll_interval_ms = 100
fulfilment_poll_interval_ms = 100

[commerce]
base_url = "{commerce}"
token = "{COMMERCE_TOKEN}"
website_stocks = {{ base = 2 }}

[[pos]]
kind = "square"
id = "square"
base_url = "{square}"
token = "{SQUARE_TOKEN}"

[[stores]]
pos = "square"
location = "{york}"
source = "york"
name = "York"
priority = 1
stocks = [2]
fulfils = true
"#,
            db = dir.join("tillbridge.db").display(),
        ),
    )
    .unwrap();

    let (child, banner) = spawn_serve(&config);
    let base = format!("http://127.0.0.1:{port}");
    assert!(banner.contains(&format!("{base}/")), "{banner}");

    // The first snapshot reaches Commerce; an in-store sale follows it.
    wait_for("the till's 6 reach Commerce", || async {
        qty(&commerce_qty(&http, &commerce, "MUG", "york").await) == Some(Decimal::from(6))
    })
    .await;
    post(
        &http,
        format!("{square}/__emulator/sales"),
        json!({"location_id": york, "lines": [{"sku": "MUG", "quantity": 2}]}),
    )
    .await;
    wait_for("the sale reaches Commerce", || async {
        qty(&commerce_qty(&http, &commerce, "MUG", "york").await) == Some(Decimal::from(4))
    })
    .await;

    // The API: open health, ready once the loop turns, everything else behind the token.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    wait_for("ready", || async {
        http.get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let anonymous = http
        .get(format!("{base}/api/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let summary: Value = http
        .get(format!("{base}/api/summary"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        summary.to_string().contains("pushes_confirmed"),
        "{summary}"
    );
    let mapping: Value = http
        .get(format!("{base}/api/mapping"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(mapping.to_string().contains("\"MUG\""), "{mapping}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tillbridge_"), "{metrics}");
    // An operator action reaches the runner, which refuses an exception that does not exist.
    let retry = http
        .post(format!("{base}/api/exceptions/424242/retry"))
        .bearer_auth(API_TOKEN)
        .json(&json!({"by": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 404);
    // The configuration view hides every secret.
    let cfg = http
        .get(format!("{base}/api/config"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [API_TOKEN, COMMERCE_TOKEN, SQUARE_TOKEN] {
        assert!(!cfg.contains(secret), "config view shows a secret: {cfg}");
    }

    // Ctrl-C: a clean stop, the engine's state saved.
    let (status, stderr) = interrupt(child);
    assert!(status.success(), "exit {status:?}: {stderr}");
    let store =
        tillbridge_edge::store::sql::SqlStore::open(dir.join("tillbridge.db").to_str().unwrap())
            .unwrap();
    use tillbridge_edge::store::Store;
    let (snapshot, _) = store
        .snapshot()
        .unwrap()
        .expect("a snapshot on the way out");
    assert!(snapshot.contains("MUG"), "the snapshot holds the ledger");
    drop(store);

    // The next start restores it and carries on: another sale arrives.
    let (child, banner2) = spawn_serve(&config);
    post(
        &http,
        format!("{square}/__emulator/sales"),
        json!({"location_id": york, "lines": [{"sku": "MUG", "quantity": 1}]}),
    )
    .await;
    wait_for("the sale after the restart reaches Commerce", || async {
        qty(&commerce_qty(&http, &commerce, "MUG", "york").await) == Some(Decimal::from(3))
    })
    .await;
    let (status, stderr2) = interrupt(child);
    assert!(status.success(), "exit {status:?}: {stderr2}");
    for text in [&banner, &banner2, &stderr, &stderr2] {
        for secret in [API_TOKEN, COMMERCE_TOKEN, SQUARE_TOKEN] {
            assert!(!text.contains(secret), "printed a secret: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_names_the_problem_in_a_bad_configuration() {
    let dir = std::env::temp_dir().join(format!("tillbridge-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "[service]\napi_token = \"short\"\n\n[commerce]\nbase_url = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tillbridge"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service.api_token"), "{err}");
    assert!(err.contains("commerce"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
