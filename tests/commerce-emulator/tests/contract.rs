//! Contract check: every response the emulator gave in these tests — a scenario touching every
//! route family (successes and errors) and the whole MSI vector run over HTTP — validates
//! against Magento's official admin schema (`shared/specs/openapi/magento-admin-2.4.9.json`),
//! read from the file (route → path + method → response status → schema).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::Emu;
use serde_json::Value;
use tillbridge_commerce_emulator::contract::Spec;
use tillbridge_commerce_emulator::msi;

fn shared() -> PathBuf {
    std::env::var("TILLBRIDGE_SHARED_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

fn spec() -> Spec {
    Spec::load(&shared().join("specs/openapi/magento-admin-2.4.9.json")).unwrap()
}

/// (method, route, status, body) of every REST exchange, from the call log.
async fn recorded(emu: &Emu) -> Vec<(String, String, u16, Value)> {
    emu.calls()
        .await
        .into_iter()
        .filter(|c| !c["route"].as_str().unwrap_or("").is_empty())
        .map(|c| {
            let route = c["route"].as_str().unwrap().to_owned();
            let route = if c["mode"] == "sync" {
                route
            } else {
                format!("/async{route}")
            };
            (
                c["method"].as_str().unwrap().to_owned(),
                route,
                u16::try_from(c["status"].as_u64().unwrap()).unwrap(),
                c["response_body"].clone(),
            )
        })
        .collect()
}

struct Report {
    validated: usize,
    not_described: BTreeSet<String>,
    pairs: BTreeSet<String>,
    failures: Vec<String>,
}

fn check_all(spec: &Spec, exchanges: &[(String, String, u16, Value)]) -> Report {
    let mut r = Report {
        validated: 0,
        not_described: BTreeSet::new(),
        pairs: BTreeSet::new(),
        failures: Vec::new(),
    };
    for (method, route, status, body) in exchanges {
        let route = route.split('?').next().unwrap_or(route);
        let route = route.strip_prefix("/rest/default").unwrap_or(route);
        match spec.validate_response(method, route, *status, body) {
            None => {
                r.not_described.insert(format!("{method} {route} {status}"));
            }
            Some(violations) => {
                r.validated += 1;
                let template = spec.template_of(method, route).unwrap_or_default();
                r.pairs.insert(format!("{method} {template} {status}"));
                for v in violations {
                    r.failures
                        .push(format!("{method} {route} {status}: {v}\n  body: {body}"));
                }
            }
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_response_matches_magentos_official_schema() {
    let spec = spec();
    let emu = Emu::start().await;
    common::scenario::run_everything(&emu).await;
    let mut exchanges = recorded(&emu).await;

    // The MSI vectors over HTTP, on their own emulator.
    let dir = shared().join("vectors/msi");
    let msi_exchanges = tokio::task::spawn_blocking(move || {
        let (fixtures, cases) = msi::load_dir(&dir).unwrap();
        let rt_handle = tokio::runtime::Handle::current();
        let config = tillbridge_commerce_emulator::EmulatorConfig::default();
        let token = config.token.clone();
        let (handle, base) = rt_handle
            .block_on(tillbridge_commerce_emulator::start(config))
            .unwrap();
        let (outcomes, exec) = msi::run_cases(&base, &token, &fixtures, &cases, |_| {}).unwrap();
        rt_handle.block_on(handle.stop());
        assert!(
            outcomes
                .iter()
                .all(tillbridge_core::inventory::vectors::CaseOutcome::passed)
        );
        exec.exchanges
    })
    .await
    .unwrap();
    assert!(
        msi_exchanges.len() >= 20,
        "the vectors make REST calls: {}",
        msi_exchanges.len()
    );
    exchanges.extend(msi_exchanges);

    let report = check_all(&spec, &exchanges);
    println!(
        "{} responses validated, {} distinct route/status pairs:",
        report.validated,
        report.pairs.len()
    );
    for p in &report.pairs {
        println!("  {p}");
    }
    println!("not in the schema (async 202, Tillbridge routes):");
    for p in &report.not_described {
        println!("  {p}");
    }
    assert!(
        report.failures.is_empty(),
        "{} violations:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
    assert!(
        report.pairs.len() >= 60,
        "coverage fell to {} pairs",
        report.pairs.len()
    );
    for p in &report.not_described {
        assert!(
            p.contains("/tillbridge/") || p.starts_with("POST /async"),
            "{p} should be in the schema"
        );
    }
}

#[test]
fn a_wrong_body_is_caught() {
    let spec = spec();
    let bad = serde_json::json!({"items": [{"sku": "A", "source_code": "s", "quantity": "12", "status": 1, "colour": "red"}],
                                 "search_criteria": {"filter_groups": []}, "total_count": 1});
    let v = spec
        .validate_response("GET", "/V1/inventory/source-items", 200, &bad)
        .unwrap();
    let text: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "$.items[0].colour: property not declared in the schema",
            "$.items[0].quantity: expected a number, got a string",
        ]
    );
    let v = spec.validate_response(
        "POST",
        "/V1/inventory/source-items",
        200,
        &serde_json::json!(true),
    );
    assert_eq!(v.map(|v| v.len()), Some(1));
}
