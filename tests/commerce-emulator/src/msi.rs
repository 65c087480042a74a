//! Magento's MSI test vectors over HTTP: an [`OpExecutor`] that sends ops and checks with a
//! `rest` form (and `rest_call`s) to the emulator's REST routes, and everything else to the
//! control API (`POST /__emulator/ops`, `POST /__emulator/query`), plus the folder runner behind
//! `tillbridge conformance msi DIR`.
//!
//! Any case in the format of `shared/vectors/msi/FORMAT.md` runs: the control API takes the ops
//! and checks as the format writes them (aliases already bound), so a new case needs no code
//! here unless it introduces an op kind the model does not know (reported as a failure).

// Failures are rich, cold-path reports (the core's executor trait returns them unboxed).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tillbridge_core::inventory::vectors::{
    Case, CaseOutcome, Check, Fixtures, IdOrAlias, Op, OpExecutor, OpFailure, OpKind, OpOutput,
    OrderRefs, Query, check_value_from_rest, parse_case, parse_fixtures, rest_request_for_check,
    rest_request_for_op, run_case,
};
use tillbridge_core::inventory::webapi::{RestRequest, RestResponse};

use crate::http_client::{Client, HttpError};

/// Runs vector ops and checks against an emulator over HTTP.
#[derive(Debug)]
pub struct HttpExecutor {
    client: Client,
    token: String,
    /// Shipments created through REST, by reference (for `shipment` checks).
    shipments: BTreeMap<String, u64>,
    /// REST exchanges made (method, route, status, body), for the contract check.
    pub exchanges: Vec<(String, String, u16, Value)>,
}

fn transport(e: &HttpError) -> OpFailure {
    OpFailure {
        message: format!("HTTP: {e}"),
        rendered: format!("HTTP: {e}"),
        ..OpFailure::default()
    }
}

fn failure_from_json(v: &Value) -> OpFailure {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    OpFailure {
        http_status: v
            .get("http_status")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok()),
        message: s("message"),
        rendered: s("rendered"),
        parameters: v.get("parameters").filter(|p| !p.is_null()).cloned(),
        body: v.get("body").filter(|p| !p.is_null()).cloned(),
        exception: v
            .get("exception")
            .and_then(Value::as_str)
            .map(str::to_owned),
        localized: v.get("localized").and_then(Value::as_bool).unwrap_or(false),
        unsupported: v
            .get("unsupported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn id_json(id: &IdOrAlias) -> Value {
    match id {
        IdOrAlias::Id(i) => json!(i),
        IdOrAlias::Alias(a) => json!(a),
    }
}

/// The op as FORMAT writes it, with the values the runner bound (stock aliases, captures).
pub fn bound_raw(op: &Op) -> Value {
    let mut raw = op.raw.clone();
    let Some(m) = raw.as_object_mut() else {
        return raw;
    };
    match &op.kind {
        OpKind::CreateStock { stock_id, .. }
        | OpKind::DeleteStock { stock_id }
        | OpKind::AssignSalesChannels { stock_id, .. }
        | OpKind::InsertReservationRow { stock_id, .. }
        | OpKind::UpdateStockItemConfig {
            stock_id: Some(stock_id),
            ..
        } => {
            m.insert("stock_id".to_owned(), id_json(stock_id));
        }
        OpKind::SaveStockSourceLinks { links } => {
            if let Some(Value::Array(list)) = m.get_mut("links") {
                for (v, (s, _, _)) in list.iter_mut().zip(links) {
                    v["stock_id"] = id_json(s);
                }
            }
        }
        OpKind::DeleteStockSourceLinks { links } => {
            if let Some(Value::Array(list)) = m.get_mut("links") {
                for (v, (s, _)) in list.iter_mut().zip(links) {
                    v["stock_id"] = id_json(s);
                }
            }
        }
        OpKind::Reindex {
            stock_ids: Some(ids),
        } => {
            m.insert(
                "stock_ids".to_owned(),
                Value::Array(ids.iter().map(id_json).collect()),
            );
        }
        OpKind::CreateCompensation { argument } => {
            m.insert("argument".to_owned(), json!(argument));
        }
        OpKind::AppendReservations { reservations } => {
            m.insert("reservations".to_owned(), json!(reservations));
        }
        _ => {}
    }
    m.remove("rest");
    raw
}

/// A check's kind and arguments as FORMAT writes them, with bound stock ids.
pub fn bound_check(check: &Check) -> Value {
    let mut args = check.args.clone();
    let stock = match &check.query {
        Query::SalableQty { stock_id, .. }
        | Query::IsSalable { stock_id, .. }
        | Query::IsSalableForRequestedQty { stock_id, .. }
        | Query::StockIndex { stock_id, .. }
        | Query::SourcesAssignedToStock { stock_id }
        | Query::ReservationsSum { stock_id, .. }
        | Query::SourceSelection { stock_id, .. }
        | Query::SourceSelectionForSortedSources { stock_id, .. }
        | Query::StockSalesChannels { stock_id } => Some(stock_id),
        _ => None,
    };
    if let (Some(s), Some(m)) = (stock, args.as_object_mut()) {
        m.insert("stock_id".to_owned(), id_json(s));
    }
    let mut obj = serde_json::Map::new();
    obj.insert(check.kind_name.clone(), args);
    Value::Object(obj)
}

impl HttpExecutor {
    /// An executor for the emulator at `base_url`, authenticating with `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Self, HttpError> {
        Ok(Self {
            client: Client::new(base_url)?,
            token: token.to_owned(),
            shipments: BTreeMap::new(),
            exchanges: Vec::new(),
        })
    }

    /// Resets the emulated store to install defaults (the start of every case).
    pub fn reset(&mut self) -> Result<(), HttpError> {
        self.shipments.clear();
        let r = self
            .client
            .request("POST", "/__emulator/reset", None, Some(&json!({})))?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(HttpError::Malformed(format!("reset answered {}", r.status)))
        }
    }

    fn rest(&mut self, request: &RestRequest) -> Result<RestResponse, OpFailure> {
        let target = if request.path.starts_with("/rest/") {
            request.path.clone()
        } else {
            format!("/rest/default{}", request.path)
        };
        let r = self
            .client
            .request(
                &request.method.to_uppercase(),
                &target,
                Some(&self.token),
                request.body.as_ref(),
            )
            .map_err(|e| transport(&e))?;
        self.exchanges.push((
            request.method.to_uppercase(),
            target,
            r.status,
            r.body.clone(),
        ));
        Ok(RestResponse {
            status: r.status,
            body: r.body,
        })
    }

    fn control(&self, path: &str, body: &Value) -> Result<Value, OpFailure> {
        let r = self
            .client
            .request("POST", path, None, Some(body))
            .map_err(|e| transport(&e))?;
        if r.status != 200 {
            let msg = format!("control {path} answered {}: {}", r.status, r.body);
            return Err(OpFailure {
                rendered: msg.clone(),
                message: msg,
                ..OpFailure::default()
            });
        }
        Ok(r.body)
    }
}

impl OrderRefs for HttpExecutor {
    fn order_entity_id(&self, reference: &str) -> Option<u64> {
        let target = format!("/__emulator/order-refs/{reference}");
        let r = self.client.request("GET", &target, None, None).ok()?;
        r.body.get("entity_id").and_then(Value::as_u64)
    }
}

impl OpExecutor for HttpExecutor {
    fn apply(&mut self, op: &Op) -> Result<OpOutput, OpFailure> {
        if let Some(request) = rest_request_for_op(op, self) {
            let response = self.rest(&request)?;
            if response.status >= 400 {
                return Err(OpFailure::from_rest(&response));
            }
            if let OpKind::Ship {
                shipment: Some(r), ..
            } = &op.kind
                && let Some(id) = response.body.as_u64()
            {
                self.shipments.insert(r.clone(), id);
            }
            let created_stock_id = match &op.kind {
                OpKind::CreateStock { .. } => response.body.as_i64(),
                _ => None,
            };
            return Ok(OpOutput {
                result: Some(response.body),
                created_stock_id,
                ..OpOutput::default()
            });
        }
        let v = self.control("/__emulator/ops", &json!({"ops": [bound_raw(op)]}))?;
        let first = v
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or(Value::Null);
        if first.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(OpOutput {
                result: first.get("result").filter(|r| !r.is_null()).cloned(),
                created_stock_id: first.get("created_stock_id").and_then(Value::as_i64),
                cart_item_qty: first.get("cart_item_qty").filter(|r| !r.is_null()).cloned(),
            })
        } else {
            Err(failure_from_json(&first))
        }
    }

    fn query(&mut self, check: &Check) -> Result<Value, OpFailure> {
        if let Some(request) = rest_request_for_check(check) {
            let response = self.rest(&request)?;
            return check_value_from_rest(check, &response);
        }
        if let Query::Shipment { shipment } = &check.query
            && let Some(id) = self.shipments.get(shipment).copied()
        {
            let response = self.rest(&RestRequest {
                method: "GET".to_owned(),
                path: format!("/V1/shipment/{id}"),
                body: None,
            })?;
            if response.status >= 400 {
                return Err(OpFailure::from_rest(&response));
            }
            let total = response
                .body
                .get("total_qty")
                .and_then(tillbridge_core::inventory::num::decimal_from_json)
                .map(tillbridge_core::inventory::num::four_dp_string);
            return Ok(json!({
                "entity_id": response.body.get("entity_id"),
                "order_id": response.body.get("order_id"),
                "total_qty": total,
                "extension_attributes": {"source_code": response.body.pointer("/extension_attributes/source_code")},
            }));
        }
        let v = self.control("/__emulator/query", &json!({"check": bound_check(check)}))?;
        match (v.get("value"), v.get("failure")) {
            (_, Some(f)) => Err(failure_from_json(f)),
            (Some(value), None) => Ok(value.clone()),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// A folder of cases could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no cases in {0} (expected cases/*.json or *.json beside fixtures.json)")]
    Empty(PathBuf),
    #[error("emulator: {0}")]
    Emulator(String),
}

fn read_json(path: &Path) -> Result<Value, VectorsError> {
    let text = std::fs::read_to_string(path).map_err(|e| VectorsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| VectorsError::File {
        path: path.to_owned(),
        message: format!("not JSON: {e}"),
    })
}

/// The cases and fixtures of a vector folder: `DIR/fixtures.json` (or the parent's) and
/// `DIR/cases/*.json` (or `DIR/*.json`), in file-name order.
pub fn load_dir(dir: &Path) -> Result<(Fixtures, Vec<Case>), VectorsError> {
    let fixtures_path = [dir.join("fixtures.json"), dir.join("../fixtures.json")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| VectorsError::File {
            path: dir.join("fixtures.json"),
            message: "not found".to_owned(),
        })?;
    let fixtures =
        parse_fixtures(&read_json(&fixtures_path)?).map_err(|message| VectorsError::File {
            path: fixtures_path.clone(),
            message,
        })?;
    let cases_dir = if dir.join("cases").is_dir() {
        dir.join("cases")
    } else {
        dir.to_owned()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .map_err(|e| VectorsError::File {
            path: cases_dir.clone(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "fixtures.json")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(VectorsError::Empty(cases_dir));
    }
    let mut cases = Vec::new();
    for p in files {
        let case = parse_case(&read_json(&p)?).map_err(|message| VectorsError::File {
            path: p.clone(),
            message,
        })?;
        cases.push(case);
    }
    Ok((fixtures, cases))
}

/// One case's result line: `PASS <id>` or `FAIL <id>: <check> expected <x> got <y>` (one line
/// per failed expectation).
pub fn outcome_lines(outcome: &CaseOutcome) -> Vec<String> {
    if outcome.passed() {
        vec![format!("PASS {}", outcome.id)]
    } else {
        outcome
            .failures
            .iter()
            .map(|f| format!("FAIL {}: {f}", outcome.id))
            .collect()
    }
}

/// Runs every case against the emulator at `base_url` (resetting it before each case);
/// `each` sees every outcome as it comes.
pub fn run_cases(
    base_url: &str,
    token: &str,
    fixtures: &Fixtures,
    cases: &[Case],
    mut each: impl FnMut(&CaseOutcome),
) -> Result<(Vec<CaseOutcome>, HttpExecutor), VectorsError> {
    let mut exec =
        HttpExecutor::new(base_url, token).map_err(|e| VectorsError::Emulator(e.to_string()))?;
    let mut outcomes = Vec::new();
    for case in cases {
        exec.reset()
            .map_err(|e| VectorsError::Emulator(e.to_string()))?;
        let outcome = run_case(case, fixtures, &mut exec);
        each(&outcome);
        outcomes.push(outcome);
    }
    Ok((outcomes, exec))
}

/// Starts an emulator on loopback (its own runtime threads), runs every case of `dir` against
/// it over HTTP, and stops it. `each` sees every outcome as it comes.
pub fn run_dir(
    dir: &Path,
    each: impl FnMut(&CaseOutcome),
) -> Result<Vec<CaseOutcome>, VectorsError> {
    let (fixtures, cases) = load_dir(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| VectorsError::Emulator(e.to_string()))?;
    let config = crate::EmulatorConfig::default();
    let token = config.token.clone();
    let (handle, base_url) = runtime
        .block_on(crate::start(config))
        .map_err(|e| VectorsError::Emulator(e.to_string()))?;
    let result = run_cases(&base_url, &token, &fixtures, &cases, each);
    runtime.block_on(handle.stop());
    result.map(|(outcomes, _)| outcomes)
}
