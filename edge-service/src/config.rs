//! `tillbridge serve` configuration: a TOML file, then `TILLBRIDGE_*` environment overrides,
//! into typed settings. Secrets are wrapped so they never print (`***`), and the API's config
//! view redacts them.
//!
//! Environment overrides name a path with double underscores:
//! `TILLBRIDGE_SERVICE__API_TOKEN=…`, `TILLBRIDGE_COMMERCE__BASE_URL=…`,
//! `TILLBRIDGE_POS__0__TOKEN=…` (list entries by index). Values are read as TOML scalars when
//! they parse as one (`8`, `true`), else as strings. A `TILLBRIDGE_*` variable without a
//! `__` (such as the test harness's `TILLBRIDGE_CHROMIUM`) is not an override.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret in configuration. Prints and serializes as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The service itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Where the HTTP API listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The bearer token of every API route but health.
    pub api_token: SecretString,
    /// `tillbridge.db` (SQLite file, the default), `sqlite://PATH` or `postgres://…`.
    #[serde(default = "default_database")]
    pub database: String,
    /// How often the POS feeds and Commerce orders are polled.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// How often fulfilment statuses are read from the POS.
    #[serde(default = "default_fulfilment_poll_ms")]
    pub fulfilment_poll_interval_ms: u64,
    /// How often the engine's state is snapshotted (restart = snapshot + replay).
    #[serde(default = "default_snapshot_ms")]
    pub snapshot_interval_ms: u64,
    /// This replica's name in the engine lease (default: host name and process id). Replicas
    /// sharing one PostgreSQL database take turns: one runs the engine, the others serve the
    /// API and take over when its lease lapses.
    #[serde(default)]
    pub replica: Option<String>,
    /// How long the engine lease lasts without renewal (renewed every third of it).
    #[serde(default = "default_lease_ms")]
    pub lease_ttl_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_database() -> String {
    "tillbridge.db".into()
}
fn default_poll_ms() -> u64 {
    2_000
}
fn default_fulfilment_poll_ms() -> u64 {
    5_000
}
fn default_snapshot_ms() -> u64 {
    60_000
}
fn default_lease_ms() -> u64 {
    15_000
}
fn default_settle_ms() -> u64 {
    5_000
}

/// Adobe Commerce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommerceSettings {
    /// Where `/rest` lives.
    pub base_url: String,
    /// An integration access token (bearer). Or `admin_username` + `admin_password`.
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub admin_username: Option<String>,
    #[serde(default)]
    pub admin_password: Option<SecretString>,
    /// Store view code in REST paths (`all` for admin-scope writes).
    #[serde(default)]
    pub store_code: Option<String>,
    /// The stock each website's orders reserve against.
    #[serde(default = "default_website_stocks")]
    pub website_stocks: BTreeMap<String, u32>,
    /// Source items per synchronous request (Magento's input limit).
    #[serde(default = "default_input_limit")]
    pub input_limit: usize,
    /// The request budget's ceiling.
    #[serde(default = "default_rps")]
    pub requests_per_second: u32,
    #[serde(default = "default_items_ps")]
    pub source_items_per_second: u32,
    /// Shipping method code of click-and-collect orders; the pickup store's source code is the
    /// order's `pickup_location_code` (Magento In-Store Pickup) or its shipping description.
    #[serde(default = "default_pickup_method")]
    pub pickup_method: String,
    /// Commerce's out-of-stock threshold (`cataloginventory/item_options/min_qty`).
    #[serde(default)]
    pub min_qty: rust_decimal::Decimal,
}

fn default_website_stocks() -> BTreeMap<String, u32> {
    BTreeMap::from([("base".to_owned(), 1)])
}
fn default_input_limit() -> usize {
    20
}
fn default_rps() -> u32 {
    8
}
fn default_items_ps() -> u32 {
    100
}
fn default_pickup_method() -> String {
    "instore_pickup".into()
}

/// One POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PosSettings {
    Square {
        id: String,
        base_url: String,
        token: SecretString,
        #[serde(default)]
        webhook_signature_key: Option<SecretString>,
        /// The URL Square signs webhooks with (this service's public webhook address).
        #[serde(default)]
        notification_url: Option<String>,
    },
    /// A till that writes CSV files into a folder (stock snapshots, stock changes, sales;
    /// see `pos/filedrop.rs`). The files' `store` column holds the `[[stores]]` `location`
    /// and their `sku` column the Commerce SKU.
    FileDrop {
        id: String,
        folder: String,
        /// A file is read once it has not changed for this long (uploads in progress).
        #[serde(default = "default_settle_ms")]
        settle_ms: u64,
        /// Only read `<name>` once `<name>.ok` exists.
        #[serde(default)]
        require_ok_marker: bool,
    },
}

impl PosSettings {
    pub fn id(&self) -> &str {
        match self {
            PosSettings::Square { id, .. } | PosSettings::FileDrop { id, .. } => id,
        }
    }
}

/// One store: its POS location, its Commerce source, and how orders may use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The POS connector's id.
    pub pos: String,
    /// The POS location id (Square `location_id`, a file's store code).
    pub location: String,
    /// The Commerce source code.
    pub source: String,
    pub name: String,
    /// Magento's source priority within the stock (lower first).
    #[serde(default)]
    pub priority: u32,
    /// The stocks the source is linked to.
    #[serde(default = "default_stocks")]
    pub stocks: Vec<u32>,
    /// The store fulfils web orders (ship-from-store, click-and-collect).
    #[serde(default)]
    pub fulfils: bool,
}

fn default_stocks() -> Vec<u32> {
    vec![1]
}

/// A Commerce source that no POS manages (a warehouse): routing may send orders there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    pub source: String,
    pub name: String,
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "default_stocks")]
    pub stocks: Vec<u32>,
}

/// Engine tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Minutes between reconciliation sweeps (0: never).
    #[serde(default = "default_sweep_minutes")]
    pub sweep_every_minutes: u64,
    /// Read salable quantity back this long after a change.
    #[serde(default = "default_verify_delay")]
    pub verify_delay_ms: i64,
    /// Of the SKUs below the velocity threshold, verify one change in this many.
    #[serde(default = "default_sample")]
    pub verify_sample_every: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            sweep_every_minutes: default_sweep_minutes(),
            verify_delay_ms: default_verify_delay(),
            verify_sample_every: default_sample(),
        }
    }
}

fn default_sweep_minutes() -> u64 {
    60
}
fn default_verify_delay() -> i64 {
    2_000
}
fn default_sample() -> u32 {
    10
}

/// Everything `tillbridge serve` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub service: ServiceSettings,
    pub commerce: CommerceSettings,
    #[serde(default)]
    pub pos: Vec<PosSettings>,
    #[serde(default)]
    pub stores: Vec<StoreSettings>,
    #[serde(default)]
    pub warehouses: Vec<WarehouseSettings>,
    #[serde(default)]
    pub engine: EngineSettings,
}

/// A configuration problem, naming where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    #[error("{origin}: {why}")]
    Invalid { origin: String, why: String },
}

fn env_value(raw: &str) -> toml::Value {
    // A scalar TOML parses as itself; anything else is a string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match root {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                t.insert(first.clone(), value);
            } else {
                let next = t.entry(first.clone()).or_insert_with(|| {
                    if rest.first().is_some_and(|r| r.parse::<usize>().is_ok()) {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(toml::Table::new())
                    }
                });
                set_path(next, rest, value);
            }
        }
        toml::Value::Array(a) => {
            if let Ok(i) = first.parse::<usize>() {
                while a.len() <= i {
                    a.push(toml::Value::Table(toml::Table::new()));
                }
                if rest.is_empty() {
                    a[i] = value;
                } else {
                    set_path(&mut a[i], rest, value);
                }
            }
        }
        _ => {}
    }
}

impl Settings {
    /// Parse TOML text, then apply `TILLBRIDGE_*` overrides from `env`.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            why: e.to_string(),
        })?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("TILLBRIDGE_") else {
                continue;
            };
            // Every setting lives in a section, so an override always names one
            // (`SECTION__KEY`). Other `TILLBRIDGE_*` variables (the test harness's
            // TILLBRIDGE_CHROMIUM, TILLBRIDGE_SHARED_DIR, ...) are not configuration.
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut root, &path, env_value(&v));
        }
        let settings: Settings =
            root.try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: format!("{origin} (after TILLBRIDGE_* overrides)"),
                    why: e.to_string(),
                })?;
        settings.validate(origin)?;
        Ok(settings)
    }

    /// Read a file and the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Self::from_toml(&text, &path.display().to_string(), std::env::vars())
    }

    /// Every problem at once.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.service.api_token.expose().len() < 16 {
            problems.push("service.api_token: use at least 16 characters".to_owned());
        }
        if self.commerce.token.is_none()
            && (self.commerce.admin_username.is_none() || self.commerce.admin_password.is_none())
        {
            problems.push(
                "commerce: set `token` (integration) or `admin_username` + `admin_password`"
                    .to_owned(),
            );
        }
        if self.commerce.input_limit == 0 {
            problems.push("commerce.input_limit: must be at least 1".to_owned());
        }
        let ids: Vec<&str> = self.pos.iter().map(PosSettings::id).collect();
        for (i, s) in self.stores.iter().enumerate() {
            if !ids.contains(&s.pos.as_str()) {
                problems.push(format!(
                    "stores[{i}].pos: no POS with id '{}' (known: {})",
                    s.pos,
                    ids.join(", ")
                ));
            }
            if tillbridge_core::pos::SourceCode::parse(&s.source).is_err() {
                problems.push(format!(
                    "stores[{i}].source: '{}' is not a valid Magento source code",
                    s.source
                ));
            }
            if self.stores[..i].iter().any(|o| o.source == s.source) {
                problems.push(format!(
                    "stores[{i}].source: '{}' is mapped twice",
                    s.source
                ));
            }
            if self.stores[..i]
                .iter()
                .any(|o| o.pos == s.pos && o.location == s.location)
            {
                problems.push(format!(
                    "stores[{i}].location: '{}' of POS '{}' is mapped twice",
                    s.location, s.pos
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                why: problems.join("; "),
            })
        }
    }

    /// The configuration as the API shows it: every secret as `***`.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[service]
api_token = "a-long-enough-token-123"

[commerce]
base_url = "http://127.0.0.1:9001"
token = "integration-secret"
website_stocks = { uk = 2 }

[[pos]]
kind = "square"
id = "square"
base_url = "http://127.0.0.1:9002"
token = "square-secret"

[[stores]]
pos = "square"
location = "L1"
source = "york"
name = "York"
stocks = [2]
fulfils = true
"#;

    #[test]
    fn a_file_parses_with_defaults() {
        let s = Settings::from_toml(BASE, "test.toml", Vec::new()).unwrap();
        assert_eq!(s.service.listen, "127.0.0.1:8080");
        assert_eq!(s.service.database, "tillbridge.db");
        assert_eq!(s.commerce.input_limit, 20);
        assert_eq!(s.commerce.website_stocks.get("uk"), Some(&2));
        assert_eq!(s.stores[0].source, "york");
    }

    #[test]
    fn environment_overrides_win() {
        let env = vec![
            (
                "TILLBRIDGE_SERVICE__LISTEN".to_owned(),
                "0.0.0.0:9999".to_owned(),
            ),
            (
                "TILLBRIDGE_COMMERCE__REQUESTS_PER_SECOND".to_owned(),
                "3".to_owned(),
            ),
            ("TILLBRIDGE_POS__0__TOKEN".to_owned(), "rotated".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
            // Harness variables without a section are not configuration.
            (
                "TILLBRIDGE_CHROMIUM".to_owned(),
                "/usr/bin/chromium".to_owned(),
            ),
            ("TILLBRIDGE_SKIP_PG".to_owned(), "1".to_owned()),
        ];
        let s = Settings::from_toml(BASE, "test.toml", env).unwrap();
        assert_eq!(s.service.listen, "0.0.0.0:9999");
        assert_eq!(s.commerce.requests_per_second, 3);
        match &s.pos[0] {
            PosSettings::Square { token, .. } => assert_eq!(token.expose(), "rotated"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_never_print_or_serialize() {
        let s = Settings::from_toml(BASE, "test.toml", Vec::new()).unwrap();
        let debug = format!("{s:?}");
        let json = s.redacted().to_string();
        for secret in [
            "a-long-enough-token-123",
            "integration-secret",
            "square-secret",
        ] {
            assert!(!debug.contains(secret), "Debug leaks {secret}");
            assert!(!json.contains(secret), "the API view leaks {secret}");
        }
        assert!(json.contains("\"***\""));
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let bad = BASE
            .replace("a-long-enough-token-123", "short")
            .replace("pos = \"square\"", "pos = \"nope\"")
            .replace("source = \"york\"", "source = \"york shop\"");
        let err = Settings::from_toml(&bad, "bad.toml", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.toml: "), "{err}");
        for part in ["service.api_token", "stores[0].pos", "stores[0].source"] {
            assert!(err.contains(part), "{err}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = Settings::from_toml(
            &BASE.replace("[service]", "[service]\nlisten_on = \"x\""),
            "t.toml",
            Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn the_documented_example_reads_and_env_overrides_reach_arrays() {
        let text = include_str!("../../docs/tillbridge.example.toml");
        let s = Settings::from_toml(
            text,
            "docs/tillbridge.example.toml",
            vec![
                (
                    "TILLBRIDGE_POS__0__TOKEN".to_owned(),
                    "from-env-secret".to_owned(),
                ),
                (
                    "TILLBRIDGE_SERVICE__DATABASE".to_owned(),
                    "postgres://u:p@db/tb".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.stores.len(), 2);
        assert_eq!(s.warehouses.len(), 1);
        assert_eq!(s.commerce.website_stocks["base"], 2);
        assert_eq!(s.service.database, "postgres://u:p@db/tb");
        match &s.pos[0] {
            PosSettings::Square { token, .. } => assert_eq!(token.expose(), "from-env-secret"),
            PosSettings::FileDrop { .. } => panic!("the example's POS is Square"),
        }
        assert!(!s.redacted().to_string().contains("from-env-secret"));
    }
}
