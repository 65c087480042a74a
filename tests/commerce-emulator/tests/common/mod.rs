//! Test helpers: an emulator on a free port and a small client.
#![allow(dead_code, clippy::unwrap_used)]

pub mod scenario;

use serde_json::{Value, json};
use tillbridge_commerce_emulator::{DEFAULT_TOKEN, EmulatorConfig, Handle, start};

pub struct Emu {
    pub handle: Handle,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Emu {
    pub async fn start() -> Self {
        Self::start_with(EmulatorConfig::default()).await
    }

    pub async fn start_with(config: EmulatorConfig) -> Self {
        let token = config.token.clone();
        let (handle, base) = start(config).await.unwrap();
        Self {
            handle,
            base,
            http: reqwest::Client::new(),
            token,
        }
    }

    pub fn default_token() -> &'static str {
        DEFAULT_TOKEN
    }

    /// A REST call with the integration token; `path` starts with `/V1/` (or `/rest/...`).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call_as(Some(&self.token.clone()), method, path, body)
            .await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let url = if path.starts_with("/rest") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/rest/default{path}", self.base)
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, &url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Resp { status, body }
    }

    /// A control-API call; panics unless it answers 200.
    pub async fn ctl(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/__emulator/{path}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self.http.request(m, &url).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "control {method} {path}: {v}");
        v
    }

    pub async fn ops(&self, ops: Value) -> Value {
        let v = self.ctl("POST", "ops", json!({"ops": ops})).await;
        assert_eq!(v["failed"], json!(false), "{v}");
        v
    }

    pub async fn calls(&self) -> Vec<Value> {
        self.ctl("GET", "calls", Value::Null).await["calls"]
            .as_array()
            .unwrap()
            .clone()
    }
}
