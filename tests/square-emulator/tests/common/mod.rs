//! Helpers shared by the emulator's integration tests: start an emulator, call it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::{Value, json};
use tillbridge_square_emulator::{Config, DEFAULT_TOKEN, Handle, start};

pub struct Emu {
    pub handle: Handle,
    pub base: String,
    pub http: reqwest::Client,
}

impl Emu {
    pub async fn start() -> Self {
        let (handle, base) = start(Config::default()).await.unwrap();
        Self {
            handle,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// A control call; panics unless it answers 200.
    pub async fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/__emulator/{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "control {method} {path}: {v}");
        v
    }

    /// A Square call with the default token: (status, body).
    pub async fn sq(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.sq_with(method, path, body, Some(DEFAULT_TOKEN)).await
    }

    pub async fn sq_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "PUT" => self.http.put(&url),
            _ => self.http.post(&url),
        };
        req = req.header("Square-Version", "2025-08-20");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// Two shops, three variations (one SKU shared by two variations), some stock.
    pub async fn seed_basic(&self) -> Value {
        self.ctl(
            "POST",
            "seed",
            json!({
                "locations": [
                    {"id": "LEEDS0000001", "name": "Leeds"},
                    {"id": "YORK00000001", "name": "York"},
                    {"id": "CLOSED000001", "name": "Closed shop", "status": "INACTIVE"}
                ],
                "items": [
                    {"id": "ITEMTEE", "name": "Tee", "variations": [
                        {"id": "VARTEES", "name": "Small", "sku": "TEE-S", "price": 1200},
                        {"id": "VARTEEM", "name": "Medium", "sku": "TEE-M", "price": 1200}]},
                    {"id": "ITEMMUG", "name": "Mug", "variations": [
                        {"id": "VARMUG", "name": "Regular", "sku": "MUG", "price": 850},
                        {"id": "VARMUG2", "name": "Seconds", "sku": "MUG", "price": 500,
                         "track_inventory": false}]}
                ],
                "stock": [
                    {"variation_id": "VARTEES", "location_id": "LEEDS0000001", "quantity": "10"},
                    {"variation_id": "VARTEEM", "location_id": "LEEDS0000001", "quantity": "4"},
                    {"variation_id": "VARMUG", "location_id": "YORK00000001", "quantity": "2.5"}
                ]
            }),
        )
        .await
    }

    pub async fn advance_seconds(&self, s: i64) {
        self.ctl("POST", "clock", json!({"advance_seconds": s}))
            .await;
    }
}

/// `shared/specs/openapi/square-api.json`: `TILLBRIDGE_SHARED_DIR`, else a `shared/` folder
/// beside an ancestor of this crate, else `/work/shared`.
pub fn square_spec_path() -> PathBuf {
    let rel = PathBuf::from("specs/openapi/square-api.json");
    if let Ok(dir) = std::env::var("TILLBRIDGE_SHARED_DIR") {
        return PathBuf::from(dir).join(&rel);
    }
    let mut dir = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let candidate = d.join("shared").join(&rel);
        if candidate.exists() {
            return candidate;
        }
        dir = d.parent().map(PathBuf::from);
    }
    PathBuf::from("/work/shared").join(rel)
}
