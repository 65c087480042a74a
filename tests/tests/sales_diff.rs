//! Replays every `document_sequence_diff` vector (`shared/vectors/sales-diff`): Magento
//! 2.4.6-p1's own invoice / credit-memo flow, document by document, each document fed the
//! order as the previous one left it (4-decimal persistence in between).
//!
//! Per document it compares the outcome (created / rejected at which stage, and for `refund`
//! the amount), the collected totals and lines (|Δ| ≤ 1e-6, NULL only where Magento left the
//! field unset), the stored document, `order_after` and `order_items_after` (exact at 4 dp,
//! NULL kept apart from 0), `flags_after` (leftovers within 1e-9), the admin's default shipping
//! refund, and the vector's `final` block. The closability prediction is checked against the
//! replay's final state too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use tillbridge_core::sales::closability::{PlannedDocument, predict};
use tillbridge_core::sales::model::Pair;
use tillbridge_core::sales::num::persist4;
use tillbridge_core::sales::{
    Adjustment, Creditmemo, CreditmemoRequest, Document, Invoice, InvoiceRequest, Order,
    OrderFlags, Rejection, admin_default_shipping_amount, create_creditmemo, create_invoice, flags,
};
use tillbridge_core::tax::conformance::{jnum, num};
use tillbridge_core::tax::documents::Amount2;
use tillbridge_tests::{json_files, vectors_dir};

/// Documents known to differ from Magento, with the reason. The test fails if one of them
/// starts passing (remove it) or if any other document fails.
const EXPECTED_FAILURES: &[(&str, u32, &str)] = &[];

#[derive(Debug, Clone)]
struct Failure {
    id: String,
    seq: u32,
    field: String,
    expected: String,
    actual: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} doc {}: {}: expected {} got {}",
            self.id, self.seq, self.field, self.expected, self.actual
        )
    }
}

/// How strictly a section compares numbers.
#[derive(Debug, Clone, Copy)]
enum Tol {
    /// Within one request: PHP doubles, |Δ| ≤ 1e-6.
    Collected,
    /// Stored 4-decimal columns: the actual value persisted, then exact.
    Stored,
    /// Leftovers: PHP doubles of 4-decimal values.
    Leftover,
}

struct Cmp<'a> {
    id: &'a str,
    seq: u32,
    out: Vec<Failure>,
}

impl Cmp<'_> {
    fn fail(&mut self, field: &str, expected: &Value, actual: Option<&Value>) {
        self.out.push(Failure {
            id: self.id.to_owned(),
            seq: self.seq,
            field: field.to_owned(),
            expected: expected.to_string(),
            actual: actual.map_or("<missing>".to_owned(), Value::to_string),
        });
    }

    /// Compare every key of `expected` (recursively) against `actual`.
    fn values(&mut self, path: &str, expected: &Value, actual: Option<&Value>, tol: Tol) {
        match expected {
            Value::Object(map) => {
                for (k, v) in map {
                    let a = actual.and_then(|a| a.get(k));
                    self.values(&format!("{path}.{k}"), v, a, tol);
                }
            }
            Value::Array(items) => {
                let act = actual.and_then(Value::as_array);
                if act.map_or(0, Vec::len) != items.len() {
                    self.fail(
                        &format!("{path}.length"),
                        &json!(items.len()),
                        Some(&json!(act.map_or(0, Vec::len))),
                    );
                    return;
                }
                for (i, v) in items.iter().enumerate() {
                    self.values(&format!("{path}[{i}]"), v, act.and_then(|a| a.get(i)), tol);
                }
            }
            Value::Null => {
                if !actual.is_none_or(Value::is_null) {
                    self.fail(path, expected, actual);
                }
            }
            Value::Number(_) => {
                let e = num(expected).unwrap_or_default();
                let ok = match actual.and_then(num) {
                    None => false,
                    Some(a) => match tol {
                        Tol::Collected => (a - e).abs() <= Decimal::new(1, 6),
                        Tol::Stored => persist4(a) == e.normalize(),
                        Tol::Leftover => (a - e).abs() <= Decimal::new(1, 9),
                    },
                };
                if !ok || actual.is_some_and(|a| !a.is_number()) {
                    self.fail(path, expected, actual);
                }
            }
            _ => {
                if actual != Some(expected) {
                    self.fail(path, expected, actual);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Magento-named views of the Rust model

fn put(m: &mut Map<String, Value>, name: &str, base: &str, p: Pair) {
    match p {
        Some(a) => {
            m.insert(name.to_owned(), jnum(a.value));
            m.insert(base.to_owned(), jnum(a.base));
        }
        None => {
            m.insert(name.to_owned(), Value::Null);
            m.insert(base.to_owned(), Value::Null);
        }
    }
}

fn put2(m: &mut Map<String, Value>, name: &str, p: Pair) {
    put(m, name, &format!("base_{name}"), p);
}

fn order_view(o: &Order) -> Value {
    let mut m = Map::new();
    m.insert("state".into(), json!(o.state.as_magento()));
    m.insert("status".into(), json!(o.status));
    for (name, p) in [
        ("grand_total", o.grand_total),
        ("subtotal_invoiced", o.subtotal_invoiced),
        ("tax_invoiced", o.tax_invoiced),
        (
            "discount_tax_compensation_invoiced",
            o.discount_tax_compensation_invoiced,
        ),
        ("shipping_invoiced", o.shipping_invoiced),
        ("discount_invoiced", o.discount_invoiced),
        ("total_invoiced", o.total_invoiced),
        ("total_paid", o.total_paid),
        ("subtotal_refunded", o.subtotal_refunded),
        ("tax_refunded", o.tax_refunded),
        (
            "discount_tax_compensation_refunded",
            o.discount_tax_compensation_refunded,
        ),
        ("shipping_refunded", o.shipping_refunded),
        ("shipping_tax_refunded", o.shipping_tax_refunded),
        ("discount_refunded", o.discount_refunded),
        ("adjustment_positive", o.adjustment_positive),
        ("adjustment_negative", o.adjustment_negative),
        ("total_refunded", o.total_refunded),
        ("total_offline_refunded", o.total_offline_refunded),
    ] {
        put2(&mut m, name, p);
    }
    Value::Object(m)
}

fn order_items_view(o: &Order) -> Value {
    let mut out = Map::new();
    for i in &o.items {
        let mut m = Map::new();
        m.insert("qty_invoiced".into(), jnum(i.qty_invoiced));
        m.insert("qty_refunded".into(), jnum(i.qty_refunded));
        put2(&mut m, "row_invoiced", Some(i.row_invoiced));
        put2(&mut m, "amount_refunded", i.amount_refunded);
        put2(&mut m, "tax_invoiced", i.tax_invoiced);
        put2(&mut m, "tax_refunded", i.tax_refunded);
        put2(
            &mut m,
            "discount_tax_compensation_invoiced",
            i.discount_tax_compensation_invoiced,
        );
        put2(
            &mut m,
            "discount_tax_compensation_refunded",
            i.discount_tax_compensation_refunded,
        );
        put2(&mut m, "discount_invoiced", i.discount_invoiced);
        put2(&mut m, "discount_refunded", i.discount_refunded);
        out.insert(i.item_id.to_string(), Value::Object(m));
    }
    Value::Object(out)
}

fn flags_view(f: &OrderFlags) -> Value {
    json!({
        "can_invoice": f.can_invoice,
        "can_creditmemo": f.can_creditmemo,
        "can_ship": f.can_ship,
        "state": f.state.as_magento(),
        "is_closed": f.is_closed,
        "refundable_leftover": jnum(f.refundable_leftover),
        "base_refundable_leftover": jnum(f.base_refundable_leftover),
    })
}

#[allow(clippy::too_many_arguments)]
fn line_view(
    id: u32,
    qty: Decimal,
    price: Amount2,
    price_incl: Pair,
    row: Amount2,
    row_incl: Pair,
    tax: Pair,
    dtc: Pair,
    discount: Pair,
    is_last: Option<bool>,
) -> Value {
    let mut m = Map::new();
    m.insert("order_item_id".into(), json!(id.to_string()));
    m.insert("qty".into(), jnum(qty));
    put2(&mut m, "price", Some(price));
    put2(&mut m, "price_incl_tax", price_incl);
    put2(&mut m, "row_total", Some(row));
    put2(&mut m, "row_total_incl_tax", row_incl);
    put2(&mut m, "tax_amount", tax);
    put2(&mut m, "discount_tax_compensation_amount", dtc);
    put2(&mut m, "discount_amount", discount);
    if let Some(l) = is_last {
        m.insert("is_last".into(), json!(l));
    }
    Value::Object(m)
}

fn invoice_view(inv: &Invoice, stored: bool) -> Value {
    let mut t = Map::new();
    t.insert("total_qty".into(), jnum(inv.total_qty));
    put2(&mut t, "subtotal", Some(inv.subtotal));
    put2(&mut t, "subtotal_incl_tax", Some(inv.subtotal_incl_tax));
    put2(&mut t, "tax_amount", Some(inv.tax_amount));
    put2(
        &mut t,
        "discount_tax_compensation_amount",
        Some(inv.discount_tax_compensation_amount),
    );
    put(
        &mut t,
        "shipping_discount_tax_compensation_amount",
        "base_shipping_discount_tax_compensation_amnt",
        inv.shipping_discount_tax_compensation_amount,
    );
    put2(&mut t, "shipping_amount", inv.shipping_amount);
    put2(&mut t, "shipping_incl_tax", inv.shipping_incl_tax);
    put2(&mut t, "shipping_tax_amount", inv.shipping_tax_amount);
    put2(&mut t, "discount_amount", Some(inv.discount_amount));
    t.insert("base_cost".into(), jnum(inv.base_cost));
    put2(&mut t, "grand_total", Some(inv.grand_total));
    t.insert("state".into(), if stored { json!(2) } else { Value::Null });
    let items: Vec<Value> = inv
        .items
        .iter()
        .filter(|i| !stored || i.qty > Decimal::ZERO)
        .map(|i| {
            line_view(
                i.order_item_id,
                i.qty,
                i.price,
                i.price_incl_tax,
                i.row_total,
                i.row_total_incl_tax,
                i.tax_amount,
                i.discount_tax_compensation_amount,
                i.discount_amount,
                (!stored).then_some(i.is_last),
            )
        })
        .collect();
    json!({"is_last": inv.is_last, "totals": t, "items": items})
}

fn creditmemo_view(cm: &Creditmemo, stored: bool) -> Value {
    let mut t = Map::new();
    t.insert("total_qty".into(), jnum(cm.total_qty));
    put2(&mut t, "subtotal", Some(cm.subtotal));
    put2(&mut t, "subtotal_incl_tax", Some(cm.subtotal_incl_tax));
    put2(&mut t, "tax_amount", Some(cm.tax_amount));
    put2(
        &mut t,
        "discount_tax_compensation_amount",
        Some(cm.discount_tax_compensation_amount),
    );
    put(
        &mut t,
        "shipping_discount_tax_compensation_amount",
        "base_shipping_discount_tax_compensation_amnt",
        None,
    );
    put2(&mut t, "shipping_amount", Some(cm.shipping_amount));
    put2(&mut t, "shipping_incl_tax", Some(cm.shipping_incl_tax));
    put2(&mut t, "shipping_tax_amount", Some(cm.shipping_tax_amount));
    put2(&mut t, "discount_amount", Some(cm.discount_amount));
    put2(&mut t, "adjustment_positive", cm.adjustment_positive);
    put2(&mut t, "adjustment_negative", cm.adjustment_negative);
    put2(&mut t, "adjustment", Some(cm.adjustment));
    t.insert("base_cost".into(), jnum(cm.base_cost));
    put2(&mut t, "grand_total", Some(cm.grand_total));
    t.insert("state".into(), if stored { json!(2) } else { Value::Null });
    let items: Vec<Value> = cm
        .items
        .iter()
        .filter(|i| !stored || i.qty > Decimal::ZERO)
        .map(|i| {
            line_view(
                i.order_item_id,
                i.qty,
                i.price,
                i.price_incl_tax,
                i.row_total,
                i.row_total_incl_tax,
                i.tax_amount,
                i.discount_tax_compensation_amount,
                i.discount_amount,
                (!stored).then_some(i.is_last),
            )
        })
        .collect();
    json!({"is_last": cm.is_last, "totals": t, "items": items})
}

fn document_view(d: &Document, stored: bool) -> Value {
    match d {
        Document::Invoice(i) => invoice_view(i, stored),
        Document::Creditmemo(c) => creditmemo_view(c, stored),
    }
}

// ---------------------------------------------------------------------------------------------
// replay

fn invoice_request(req: &Value) -> Result<InvoiceRequest, String> {
    let mut qtys = BTreeMap::new();
    for (k, v) in req
        .get("qtys")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let id: u32 = k
            .parse()
            .map_err(|_| format!("request.qtys: bad item id '{k}'"))?;
        qtys.insert(
            id,
            num(v).ok_or_else(|| format!("request.qtys.{k}: not a number"))?,
        );
    }
    Ok(InvoiceRequest { qtys })
}

/// The request as posted; a memo refused before posting (no `posted`) is rebuilt from the
/// admin's inputs (the shipping amount does not matter there).
fn creditmemo_request(req: &Value) -> Result<CreditmemoRequest, String> {
    if let Some(posted) = req.get("posted") {
        return Ok(CreditmemoRequest::from_posted(posted));
    }
    let mut qtys = BTreeMap::new();
    for (k, v) in req
        .get("qtys")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let id: u32 = k
            .parse()
            .map_err(|_| format!("request.qtys: bad item id '{k}'"))?;
        qtys.insert(
            id,
            num(v).ok_or_else(|| format!("request.qtys.{k}: not a number"))?,
        );
    }
    let adj = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .map(Adjustment::parse_posted)
    };
    Ok(CreditmemoRequest {
        qtys,
        shipping_amount: None,
        adjustment_positive: adj("adjustment_positive"),
        adjustment_negative: adj("adjustment_negative"),
    })
}

/// What one vector produced.
struct Replay {
    failures: Vec<Failure>,
    documents: usize,
    final_order: Order,
    start_order: Order,
    plan: Vec<PlannedDocument>,
}

fn replay(v: &Value) -> Result<Replay, String> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("<no id>")
        .to_owned();
    let items: Vec<Value> = v
        .get("order_items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let empty = json!({});
    let mut order = Order::from_magento(
        v.get("order").ok_or("missing order")?,
        &items,
        v.get("config").unwrap_or(&empty),
    )
    .map_err(|e| e.to_string())?;
    let start_order = order.clone();
    let mut plan = Vec::new();
    let mut cmp = Cmp {
        id: &id,
        seq: 0,
        out: Vec::new(),
    };
    let docs = v
        .get("documents")
        .and_then(Value::as_array)
        .ok_or("missing documents")?;
    let mut counts = (0u32, 0u32, 0u32);
    for doc in docs {
        cmp.seq = doc.get("seq").and_then(Value::as_u64).unwrap_or(0) as u32;
        let kind = doc.get("type").and_then(Value::as_str).unwrap_or_default();
        let req = doc.get("request").ok_or("missing request")?;
        let outcome: Result<(Document, Order), Rejection> = match kind {
            "invoice" => {
                let r = invoice_request(req)?;
                plan.push(PlannedDocument::Invoice(r.clone()));
                create_invoice(&order, &r).map(|(i, o)| (Document::Invoice(i), o))
            }
            "creditmemo" => {
                let r = creditmemo_request(req)?;
                if let Some(expected) = req
                    .get("admin_default_shipping_amount")
                    .filter(|x| !x.is_null())
                {
                    match admin_default_shipping_amount(&order) {
                        Ok(a) => cmp.values(
                            "request.admin_default_shipping_amount",
                            expected,
                            Some(&jnum(a)),
                            Tol::Stored,
                        ),
                        Err(e) => cmp.fail(
                            "request.admin_default_shipping_amount",
                            expected,
                            Some(&json!(e.message)),
                        ),
                    }
                }
                plan.push(PlannedDocument::Creditmemo(r.clone()));
                create_creditmemo(&order, &r).map(|(c, o)| (Document::Creditmemo(c), o))
            }
            other => return Err(format!("doc {}: unknown type '{other}'", cmp.seq)),
        };
        let status = doc
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let collected = doc.get("collected").filter(|c| !c.is_null());
        match outcome {
            Ok((document, after)) => {
                counts.0 += 1;
                if status != "created" {
                    cmp.fail("status", &json!(status), Some(&json!("created")));
                }
                if let Some(c) = collected {
                    cmp.values(
                        "collected",
                        c,
                        Some(&document_view(&document, false)),
                        Tol::Collected,
                    );
                }
                if let Some(s) = doc.get("stored").filter(|s| !s.is_null()) {
                    let view = document_view(&document, true);
                    cmp.values(
                        "stored.totals",
                        &s["totals"],
                        view.get("totals"),
                        Tol::Stored,
                    );
                    cmp.values("stored.items", &s["items"], view.get("items"), Tol::Stored);
                }
                order = after;
            }
            Err(rej) => {
                if rej.stage.vector_name().is_none() {
                    counts.2 += 1;
                } else {
                    counts.1 += 1;
                }
                let expected_stage = doc
                    .pointer("/rejection/stage")
                    .cloned()
                    .unwrap_or(Value::Null);
                let actual_stage = rej.stage.vector_name().map_or(Value::Null, |s| json!(s));
                let expected_status = if rej.stage.vector_name().is_some() {
                    "rejected"
                } else {
                    "error"
                };
                if status != expected_status {
                    cmp.fail(
                        "status",
                        &json!(status),
                        Some(&json!(format!("{expected_status} ({})", rej.message))),
                    );
                } else if expected_stage != actual_stage {
                    cmp.fail("rejection.stage", &expected_stage, Some(&actual_stage));
                } else if let Some(msg) = doc.pointer("/rejection/message").and_then(Value::as_str)
                    && msg != rej.message
                {
                    // Magento's own message, amounts included ("… is $537.00.").
                    cmp.fail("rejection.message", &json!(msg), Some(&json!(rej.message)));
                }
                match (collected, rej.collected.as_deref()) {
                    (Some(c), Some(d)) => cmp.values(
                        "collected",
                        c,
                        Some(&document_view(d, false)),
                        Tol::Collected,
                    ),
                    (Some(c), None) => cmp.fail("collected", c, None),
                    (None, _) => {}
                }
            }
        }
        if let Some(e) = doc.get("order_after") {
            cmp.values("order_after", e, Some(&order_view(&order)), Tol::Stored);
        }
        if let Some(e) = doc.get("order_items_after") {
            cmp.values(
                "order_items_after",
                e,
                Some(&order_items_view(&order)),
                Tol::Stored,
            );
        }
        if let Some(e) = doc.get("flags_after") {
            let f = flags(&order);
            let mut fv = flags_view(&f);
            let mut e = e.clone();
            // leftovers compare as doubles
            for k in ["refundable_leftover", "base_refundable_leftover"] {
                if let (Some(exp), Some(act)) = (
                    e.as_object_mut().and_then(|m| m.remove(k)),
                    fv.as_object_mut().and_then(|m| m.remove(k)),
                ) {
                    cmp.values(&format!("flags_after.{k}"), &exp, Some(&act), Tol::Leftover);
                }
            }
            cmp.values("flags_after", &e, Some(&fv), Tol::Stored);
        }
    }
    if let Some(fin) = v.get("final") {
        cmp.seq = 0;
        let f = flags(&order);
        let all_units_refunded = order.items.iter().all(|i| i.qty_refunded == i.qty_ordered);
        let actual = json!({
            "state": f.state.as_magento(),
            "is_closed": f.is_closed,
            "can_creditmemo": f.can_creditmemo,
            "refundable_leftover": jnum(f.refundable_leftover),
            "base_refundable_leftover": jnum(f.base_refundable_leftover),
            "nonzero_leftover": f.has_leftover(),
            "all_units_refunded": all_units_refunded,
            "documents_created": counts.0,
            "documents_rejected": counts.1,
            "documents_error": counts.2,
        });
        cmp.values("final", fin, Some(&actual), Tol::Leftover);
    }
    Ok(Replay {
        failures: cmp.out,
        documents: docs.len(),
        final_order: order,
        start_order,
        plan,
    })
}

fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

#[test]
fn every_sales_diff_vector_replays_document_by_document() {
    let dir = vectors_dir("sales-diff");
    let files = json_files(&dir);
    assert!(!files.is_empty(), "no vectors in {}", dir.display());
    let mut failures: Vec<Failure> = Vec::new();
    let mut errors = Vec::new();
    let (mut vectors, mut documents, mut passed) = (0usize, 0usize, 0usize);
    for path in &files {
        let v = match load(path) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        vectors += 1;
        match replay(&v) {
            Ok(r) => {
                documents += r.documents;
                if r.failures.is_empty() {
                    passed += 1;
                }
                failures.extend(r.failures);
            }
            Err(e) => errors.push(format!("{}: cannot replay: {e}", path.display())),
        }
    }
    // Which documents failed, against the documented expected-failure list.
    let mut failing_docs: BTreeMap<(String, u32), Vec<&Failure>> = BTreeMap::new();
    for f in &failures {
        failing_docs
            .entry((f.id.clone(), f.seq))
            .or_default()
            .push(f);
    }
    let expected: BTreeMap<(String, u32), &str> = EXPECTED_FAILURES
        .iter()
        .map(|(id, seq, why)| (((*id).to_owned(), *seq), *why))
        .collect();
    let unexpected: Vec<String> = failing_docs
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .flat_map(|(_, fs)| fs.iter().take(6).map(|f| f.to_string()))
        .collect();
    let now_passing: Vec<String> = expected
        .iter()
        .filter(|(k, _)| !failing_docs.contains_key(*k))
        .map(|((id, seq), why)| format!("{id} doc {seq} ({why})"))
        .collect();
    println!(
        "sales-diff: {passed}/{vectors} vectors pass, {documents} documents replayed, {} failing documents ({} expected)",
        failing_docs.len(),
        expected.len()
    );
    for ((id, seq), fs) in &failing_docs {
        let mark = if expected.contains_key(&(id.clone(), *seq)) {
            "expected"
        } else {
            "UNEXPECTED"
        };
        println!(
            "  {mark} {id} doc {seq}: {} mismatches, first {}",
            fs.len(),
            fs[0]
        );
    }
    assert!(
        errors.is_empty(),
        "vectors that could not be replayed:\n{}",
        errors.join("\n")
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected mismatches in {} documents:\n{}",
        unexpected.len(),
        failing_docs.len(),
        unexpected
            .iter()
            .take(80)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "documents listed in EXPECTED_FAILURES now pass; remove them:\n{}",
        now_passing.join("\n")
    );
}

/// The closability prediction, run from the vector's placed order with the vector's documents
/// as the plan, agrees with Magento's final state; its leftover causes add up to the leftover;
/// and for every order that stays open the proposal (when there is one) is verified to close.
#[test]
fn closability_prediction_agrees_with_every_vector() {
    let dir = vectors_dir("sales-diff");
    let mut problems = Vec::new();
    let (mut open, mut proposed, mut unresolved) = (0usize, 0usize, Vec::new());
    for path in json_files(&dir) {
        let v = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        let r = replay(&v).unwrap_or_else(|e| panic!("{id}: {e}"));
        let report = match predict(&r.start_order, &r.plan) {
            Ok(rep) => rep,
            Err(e) => {
                problems.push(format!("{id}: predict failed: {e}"));
                continue;
            }
        };
        let expected_closed = v.pointer("/final/is_closed").and_then(Value::as_bool);
        if Some(report.run.closes) != expected_closed {
            problems.push(format!(
                "{id}: predicted closes={} but Magento is_closed={expected_closed:?}",
                report.run.closes
            ));
        }
        if report.run.flags != flags(&r.final_order) {
            problems.push(format!("{id}: predicted flags differ from the replay"));
        }
        let sum = report
            .causes
            .iter()
            .fold(Amount2::ZERO, |acc, c| acc + c.amount);
        let left = report.run.leftover();
        let tol = Decimal::new(1, 9);
        if (sum.value - left.value).abs() > tol || (sum.base - left.base).abs() > tol {
            problems.push(format!(
                "{id}: causes add up to {sum:?}, leftover is {left:?}"
            ));
        }
        if !report.run.closes {
            open += 1;
            match (&report.proposal, &report.unresolved) {
                (Some(p), _) => {
                    proposed += 1;
                    if !p.verified.closes || p.verified.rejections().next().is_some() {
                        problems.push(format!("{id}: proposal does not close cleanly"));
                    }
                    // Closed means no order-currency leftover, or exactly the fees kept.
                    let left = p.verified.leftover().value;
                    let eps = Decimal::new(1, 4);
                    if left.abs() >= eps && (left - p.verified.fees_kept.value).abs() >= eps {
                        problems.push(format!("{id}: proposal closes with leftover {left}"));
                    }
                }
                (None, Some(why)) => unresolved.push(format!("{id}: {why}")),
                (None, None) => {
                    problems.push(format!("{id}: open order without proposal or reason"))
                }
            }
        }
    }
    println!(
        "closability: {open} open orders, {proposed} verified proposals, {} unresolved",
        unresolved.len()
    );
    for u in &unresolved {
        println!("  unresolved {u}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
