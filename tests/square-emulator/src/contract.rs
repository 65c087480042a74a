//! Validates JSON bodies against Square's OpenAPI 3.0 document, resolving every schema from
//! the file itself (no hand-copied schemas).
//!
//! It covers the subset of OpenAPI 3.0 schema keywords that Square's document uses: `$ref`
//! (to `#/components/schemas/...`, with a sibling `nullable`), `type`, `nullable`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `minLength`,
//! `maxLength`, `minimum`, `maximum`, `minItems`, `maxItems`, `format: int64`. Descriptive keys
//! (`description`, `example`, `readOnly`, `x-*`) are ignored; `pattern` is only used on request
//! fields the emulator never returns and is reported if met.
//!
//! It is stricter than JSON Schema in one way, on purpose: a property that the schema does not
//! declare is a violation (Square's schemas leave `additionalProperties` open, so a misspelt
//! field would otherwise pass).

use serde_json::Value;

/// Square's OpenAPI document, loaded whole.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
}

/// One place where a body does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path inside the body, e.g. `$.orders[0].line_items[1].quantity`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl Spec {
    pub fn from_value(doc: Value) -> Self {
        Self { doc }
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { doc })
    }

    /// The `(path template, method)` of an `operationId`.
    pub fn operation(&self, operation_id: &str) -> Option<(String, String, &Value)> {
        let paths = self.doc.get("paths")?.as_object()?;
        for (p, item) in paths {
            for (m, op) in item.as_object()? {
                if op.get("operationId").and_then(Value::as_str) == Some(operation_id) {
                    return Some((p.clone(), m.clone(), op));
                }
            }
        }
        None
    }

    /// The response schema of an operation for an HTTP status. Square documents only `200`;
    /// its error bodies share that schema (every response type carries `errors`), so other
    /// statuses fall back to `default`, then `200`.
    pub fn response_schema(&self, operation_id: &str, status: u16) -> Option<&Value> {
        let (_, _, op) = self.operation(operation_id)?;
        let responses = op.get("responses")?;
        let r = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .or_else(|| responses.get("200"))?;
        r.get("content")?.get("application/json")?.get("schema")
    }

    /// A named schema, `components.schemas.<name>`.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    fn resolve<'a>(&'a self, reference: &str) -> Option<&'a Value> {
        let name = reference.strip_prefix("#/components/schemas/")?;
        self.schema(name)
    }

    /// Every violation of `schema` by `value` (empty when the body conforms).
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check(schema, value, "$", false, &mut out, 0);
        out
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        nullable_outer: bool,
        out: &mut Vec<Violation>,
        depth: usize,
    ) {
        let mut push = |m: String| {
            out.push(Violation {
                at: at.to_owned(),
                message: m,
            });
        };
        if depth > 64 {
            push("schema nesting too deep".into());
            return;
        }
        let nullable =
            nullable_outer || schema.get("nullable").and_then(Value::as_bool) == Some(true);
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match self.resolve(r) {
                Some(target) => self.check(target, value, at, nullable, out, depth + 1),
                None => push(format!("unresolvable $ref {r}")),
            }
            return;
        }
        if value.is_null() {
            if !nullable {
                push("null where the schema does not allow null".into());
            }
            return;
        }
        let ty = schema
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| schema.get("properties").map(|_| "object"));
        match ty {
            Some("object") => self.check_object(schema, value, at, out, depth),
            Some("array") => {
                let Some(items) = value.as_array() else {
                    push(format!("expected an array, got {}", kind(value)));
                    return;
                };
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    push(format!("{} items, more than maxItems {max}", items.len()));
                }
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < min
                {
                    push(format!("{} items, fewer than minItems {min}", items.len()));
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(item_schema, v, &format!("{at}[{i}]"), false, out, depth + 1);
                    }
                }
            }
            Some("string") => {
                let Some(s) = value.as_str() else {
                    push(format!("expected a string, got {}", kind(value)));
                    return;
                };
                let n = s.chars().count() as u64;
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                    && n > max
                {
                    push(format!("{n} characters, more than maxLength {max}"));
                }
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                    && n < min
                {
                    push(format!("{n} characters, fewer than minLength {min}"));
                }
                if let Some(e) = schema.get("enum").and_then(Value::as_array)
                    && !e.iter().any(|x| x.as_str() == Some(s))
                {
                    push(format!("`{s}` is not one of the enum values"));
                }
                if schema.get("pattern").is_some() {
                    push("pattern keyword met; this validator does not check patterns".into());
                }
            }
            Some("integer") => {
                let ok = value.as_i64().is_some() || value.as_u64().is_some();
                if !ok {
                    push(format!("expected an integer, got {value}"));
                    return;
                }
                check_bounds(schema, value, &mut push);
            }
            Some("number") => {
                if !value.is_number() {
                    push(format!("expected a number, got {}", kind(value)));
                    return;
                }
                check_bounds(schema, value, &mut push);
            }
            Some("boolean") if !value.is_boolean() => {
                push(format!("expected a boolean, got {}", kind(value)));
            }
            Some("boolean") => {}
            Some(other) => push(format!("unsupported schema type `{other}`")),
            None => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
    ) {
        let Some(obj) = value.as_object() else {
            out.push(Violation {
                at: at.to_owned(),
                message: format!("expected an object, got {}", kind(value)),
            });
            return;
        };
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push(Violation {
                        at: at.to_owned(),
                        message: format!("required property `{r}` is missing"),
                    });
                }
            }
        }
        let additional = schema.get("additionalProperties");
        for (k, v) in obj {
            let child = format!("{at}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.check(ps, v, &child, false, out, depth + 1),
                None => match additional {
                    Some(Value::Bool(true)) => {}
                    Some(s @ Value::Object(_)) => self.check(s, v, &child, false, out, depth + 1),
                    _ if props.is_none() => {}
                    _ => out.push(Violation {
                        at: child,
                        message: "property not declared in the schema".into(),
                    }),
                },
            }
        }
    }
}

fn check_bounds(schema: &Value, value: &Value, push: &mut impl FnMut(String)) {
    let Some(n) = value.as_f64() else {
        return;
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        push(format!("{value} is below minimum {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        push(format!("{value} is above maximum {max}"));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        Spec::from_value(json!({
            "paths": {"/v2/things": {"get": {"operationId": "ListThings", "responses": {"200": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListThingsResponse"}}}}}}}},
            "components": {"schemas": {
                "ListThingsResponse": {"type": "object", "properties": {
                    "things": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
                    "cursor": {"type": "string"}}},
                "Thing": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string", "maxLength": 4},
                    "state": {"$ref": "#/components/schemas/State", "nullable": true},
                    "amount": {"type": "integer", "format": "int64", "nullable": true},
                    "meta": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "State": {"type": "string", "enum": ["OPEN", "CLOSED"]}
            }}
        }))
    }

    #[test]
    fn a_conforming_body_has_no_violations() {
        let s = spec();
        let schema = s
            .response_schema("ListThings", 200)
            .cloned()
            .unwrap_or_default();
        let body =
            json!({"things": [{"id": "A1", "state": null, "amount": 5, "meta": {"k": "v"}}]});
        assert_eq!(s.validate(&schema, &body), vec![]);
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let s = spec();
        let schema = s
            .response_schema("ListThings", 429)
            .cloned()
            .unwrap_or_default();
        let body = json!({"things": [{"state": "HALF", "amount": 1.5, "extra": 1, "meta": {"k": 1}},
                                     {"id": "TOO-LONG"}], "cursor": 7});
        let got: Vec<String> = s
            .validate(&schema, &body)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                "$.cursor: expected a string, got a number",
                "$.things[0]: required property `id` is missing",
                "$.things[0].amount: expected an integer, got 1.5",
                "$.things[0].extra: property not declared in the schema",
                "$.things[0].meta.k: expected a string, got a number",
                "$.things[0].state: `HALF` is not one of the enum values",
                "$.things[1].id: 8 characters, more than maxLength 4",
            ]
        );
    }
}
