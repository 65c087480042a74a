//! Asynchronous and bulk web API (spec §2.8): `/async/V1/...` queues one operation,
//! `/async/bulk/V1/...` one per element of the JSON array; both answer 202 with the bulk UUID.
//! Nothing happens until the `async.operations.all` consumer runs (control API
//! `POST /__emulator/consumers/run`); the bulk status routes report what happened.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Operation status (`OperationInterface`).
pub const STATUS_COMPLETE: u8 = 1;
pub const STATUS_RETRIABLY_FAILED: u8 = 2;
pub const STATUS_NOT_RETRIABLY_FAILED: u8 = 3;
pub const STATUS_OPEN: u8 = 4;
pub const STATUS_REJECTED: u8 = 5;

/// One queued operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `id` (global, 1-based).
    pub id: u64,
    /// The HTTP method of the synchronous route.
    pub method: String,
    /// The synchronous route it runs (`/V1/...`, path parameters filled in).
    pub route: String,
    /// The request body of that route.
    pub body: Value,
    pub topic_name: String,
    pub status: u8,
    pub result_message: Option<String>,
    pub error_code: Option<i64>,
    pub result_serialized_data: Option<String>,
}

/// One bulk (an async request is a bulk of one).
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    pub uuid: String,
    pub description: String,
    pub start_time: String,
    /// 1 integration, 2 admin.
    pub user_type: i64,
    pub user_id: i64,
    pub operations: Vec<Operation>,
}

/// Every bulk.
#[derive(Debug, Clone, Default)]
pub struct BulkStore {
    pub bulks: Vec<Bulk>,
    next_operation_id: u64,
}

/// The queue topic of a route (`async.<service class>.<method>.<http method>`, lower case).
pub fn topic_of(method: &str, route: &str) -> String {
    let segs: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    let service = match segs.as_slice() {
        ["V1", "inventory", "source-items"] => {
            "magento.inventoryapi.api.sourceitemssaveinterface.execute"
        }
        ["V1", "inventory", "source-items-delete"] => {
            "magento.inventoryapi.api.sourceitemsdeleteinterface.execute"
        }
        ["V1", "inventory", "sources", ..] => {
            "magento.inventoryapi.api.sourcerepositoryinterface.save"
        }
        ["V1", "inventory", "stocks", ..] => {
            "magento.inventoryapi.api.stockrepositoryinterface.save"
        }
        ["V1", "inventory", "stock-source-links"] => {
            "magento.inventoryapi.api.stocksourcelinkssaveinterface.execute"
        }
        ["V1", "inventory", "stock-source-links-delete"] => {
            "magento.inventoryapi.api.stocksourcelinksdeleteinterface.execute"
        }
        ["V1", "order", _, "ship"] => "magento.sales.api.shiporderinterface.execute",
        ["V1", "order", _, "invoice"] => "magento.sales.api.invoiceorderinterface.execute",
        ["V1", "order", _, "refund"] => "magento.sales.api.refundorderinterface.execute",
        ["V1", "orders", _, "comments"] => "magento.sales.api.ordermanagementinterface.addcomment",
        ["V1", "orders", _, "cancel"] => "magento.sales.api.ordermanagementinterface.cancel",
        ["V1", "tillbridge", "reservations"] => {
            "tillbridge.possync.api.appendreservationsinterface.execute"
        }
        _ => "",
    };
    if service.is_empty() {
        let generic: Vec<String> = segs.iter().map(|s| s.to_lowercase()).collect();
        format!("async.{}.{}", generic.join("."), method.to_lowercase())
    } else {
        format!("async.{service}.{}", method.to_lowercase())
    }
}

/// The PHP class and method named in a success message.
fn service_class_of(topic: &str) -> String {
    let parts: Vec<&str> = topic.split('.').collect();
    if parts.len() < 6 {
        return "Magento\\Framework\\Webapi\\Interceptor::execute".to_owned();
    }
    let method = parts[parts.len() - 2];
    let class_parts = &parts[1..parts.len() - 2];
    let class = class_parts
        .iter()
        .map(|p| match *p {
            "magento" => "Magento".to_owned(),
            "inventoryapi" => "InventoryApi".to_owned(),
            "sales" => "Sales".to_owned(),
            "api" => "Api".to_owned(),
            "tillbridge" => "Tillbridge".to_owned(),
            "possync" => "PosSync".to_owned(),
            other => interface_name(other),
        })
        .collect::<Vec<_>>()
        .join("\\");
    format!("{class}\\Interceptor::{method}")
}

fn interface_name(lower: &str) -> String {
    const WORDS: [&str; 15] = [
        "source",
        "items",
        "save",
        "delete",
        "interface",
        "repository",
        "stock",
        "links",
        "ship",
        "order",
        "invoice",
        "refund",
        "management",
        "append",
        "reservations",
    ];
    let mut out = String::new();
    let mut rest = lower;
    'outer: while !rest.is_empty() {
        for w in WORDS {
            if let Some(r) = rest.strip_prefix(w) {
                let mut cs = w.chars();
                if let Some(c) = cs.next() {
                    out.extend(c.to_uppercase());
                    out.push_str(cs.as_str());
                }
                rest = r;
                continue 'outer;
            }
        }
        out.push_str(rest);
        break;
    }
    out
}

/// SHA-256 (hex) of a JSON element, as `data_hash`.
pub fn data_hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl BulkStore {
    /// Queues a bulk; returns the 202 body.
    pub fn enqueue(
        &mut self,
        uuid: String,
        start_time: String,
        user_type: i64,
        ops: Vec<(String, String, Value)>,
        description: String,
    ) -> Value {
        let mut items = Vec::new();
        let mut operations = Vec::new();
        for (i, (method, route, body)) in ops.into_iter().enumerate() {
            self.next_operation_id += 1;
            items.push(json!({"id": i, "data_hash": data_hash(&body), "status": "accepted"}));
            operations.push(Operation {
                id: self.next_operation_id,
                topic_name: topic_of(&method, &route),
                method,
                route,
                body,
                status: STATUS_OPEN,
                result_message: None,
                error_code: None,
                result_serialized_data: None,
            });
        }
        self.bulks.push(Bulk {
            uuid: uuid.clone(),
            description,
            start_time,
            user_type,
            user_id: 1,
            operations,
        });
        json!({"bulk_uuid": uuid, "request_items": items, "errors": false})
    }

    /// The open operations, in queue order: (bulk index, operation index).
    pub fn open_operations(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (b, bulk) in self.bulks.iter().enumerate() {
            for (o, op) in bulk.operations.iter().enumerate() {
                if op.status == STATUS_OPEN {
                    out.push((b, o));
                }
            }
        }
        out
    }

    /// Records the result of running an operation through its synchronous route.
    pub fn finish(&mut self, at: (usize, usize), status: u16, body: &Value) {
        let Some(op) = self
            .bulks
            .get_mut(at.0)
            .and_then(|b| b.operations.get_mut(at.1))
        else {
            return;
        };
        if status < 400 {
            op.status = STATUS_COMPLETE;
            op.result_message = Some(format!(
                "Service execution success {}",
                service_class_of(&op.topic_name)
            ));
            op.result_serialized_data = Some(body.to_string());
        } else {
            op.status = if status >= 500 {
                STATUS_RETRIABLY_FAILED
            } else {
                STATUS_NOT_RETRIABLY_FAILED
            };
            op.result_message = Some(render_message(body));
            op.error_code = Some(body.get("code").and_then(Value::as_i64).unwrap_or(0));
        }
    }

    /// The bulk with a UUID.
    pub fn get(&self, uuid: &str) -> Option<&Bulk> {
        self.bulks.iter().find(|b| b.uuid == uuid)
    }
}

/// An error body's message with its parameters substituted (what the exception's
/// `getMessage()` returns).
pub fn render_message(body: &Value) -> String {
    let mut text = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match body.get("parameters") {
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
            for k in keys {
                let v = match &m[k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                text = text.replace(&format!("%{k}"), &v);
            }
        }
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate().rev() {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                text = text.replace(&format!("%{}", i + 1), &v);
            }
        }
        _ => {}
    }
    text
}

impl Operation {
    fn summary_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status,
            "result_message": self.result_message,
            "error_code": self.error_code,
        })
    }

    fn detailed_json(&self, uuid: &str) -> Value {
        let meta = self.body.to_string();
        json!({
            "id": self.id,
            "bulk_uuid": uuid,
            "topic_name": self.topic_name,
            "serialized_data": json!({"entity_id": null, "entity_link": "", "meta_information": meta}).to_string(),
            "result_serialized_data": self.result_serialized_data,
            "status": self.status,
            "result_message": self.result_message,
            "error_code": self.error_code,
        })
    }
}

impl Bulk {
    fn header(&self, list: Vec<Value>) -> Value {
        json!({
            "operations_list": list,
            "user_type": self.user_type,
            "bulk_id": self.uuid,
            "description": self.description,
            "start_time": self.start_time,
            "user_id": self.user_id,
            "operation_count": self.operations.len(),
        })
    }

    /// `GET /V1/bulk/:uuid/status`.
    pub fn status_json(&self) -> Value {
        self.header(
            self.operations
                .iter()
                .map(Operation::summary_json)
                .collect(),
        )
    }

    /// `GET /V1/bulk/:uuid/detailed-status`.
    pub fn detailed_json(&self) -> Value {
        self.header(
            self.operations
                .iter()
                .map(|o| o.detailed_json(&self.uuid))
                .collect(),
        )
    }

    /// `GET /V1/bulk/:uuid/operation-status/:status`.
    pub fn count_with_status(&self, status: u8) -> usize {
        self.operations
            .iter()
            .filter(|o| o.status == status)
            .count()
    }
}

/// The rows of `GET /V1/bulk` (operation search).
pub fn operation_rows(store: &BulkStore) -> Vec<Value> {
    store
        .bulks
        .iter()
        .flat_map(|b| {
            b.operations.iter().map(|o| {
                let mut v = o.detailed_json(&b.uuid);
                if let Some(m) = v.as_object_mut() {
                    m.insert("start_time".to_owned(), json!(b.start_time));
                }
                v
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_success_messages_name_the_service() {
        let t = topic_of("POST", "/V1/inventory/source-items");
        assert_eq!(
            t,
            "async.magento.inventoryapi.api.sourceitemssaveinterface.execute.post"
        );
        assert_eq!(
            service_class_of(&t),
            "Magento\\InventoryApi\\Api\\SourceItemsSaveInterface\\Interceptor::execute"
        );
    }

    #[test]
    fn failures_render_their_parameters() {
        let body = json!({"message": "Source with code \"%value\" does not exist.", "parameters": {"value": "x"}});
        assert_eq!(
            render_message(&body),
            "Source with code \"x\" does not exist."
        );
        let body = json!({"message": "Invalid product data: %1", "parameters": ["bad"]});
        assert_eq!(render_message(&body), "Invalid product data: bad");
    }
}
