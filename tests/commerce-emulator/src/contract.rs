//! Validates response bodies against Magento's official admin REST schema
//! (`shared/specs/openapi/magento-admin-2.4.9.json`, Swagger 2.0), resolving every schema from
//! that file (no hand-copied schemas): route → path item + method → `responses[status]` (or
//! `default`) → schema, with `$ref`s into `#/definitions/...`.
//!
//! Keywords covered (all that the file uses on response schemas): `$ref`, `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`. A property the schema
//! does not declare is a violation (the schemas leave `additionalProperties` open, so a
//! misspelt field would otherwise pass).
//!
//! Three rules of Magento's web-API framework that the generated file cannot express are
//! applied, each by name, and nothing else is relaxed:
//!
//! * **void methods** have no `200` response in the file; Magento answers `[]`
//!   (`ServiceOutputProcessor`, spec §0.2): a 200 on such a route must be exactly `[]`.
//! * **required properties may be `null`**: `DataObjectProcessor` omits a null getter value
//!   only when the return type is nullable, which is also what makes the generator leave the
//!   property out of `required`; a required property with a null value is rendered as `null`
//!   (e.g. `payment.cc_last4`, a bulk operation's `error_code`). Optional properties are never
//!   null (they are omitted).
//! * **`error-parameters`** is generated as a list, but Magento renders the arguments of a
//!   phrase with named placeholders as an object (`{"fieldName": "sku"}`, spec §8.2; asserted by
//!   Magento's own web-API tests): an object of scalars is accepted there.

use serde_json::Value;

/// The schema file, loaded whole.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
}

/// One place where a body does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path inside the body, e.g. `$.items[0].qty_ordered`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// What the schema says about one response.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation<'a> {
    /// Validate against this schema.
    Schema(&'a Value),
    /// A void method's 200: the body must be `[]`.
    Void,
    /// The route is not in the file (asynchronous 202 answers, Tillbridge's own routes).
    NotDescribed,
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
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

    /// The path template (`/V1/orders/{id}`) matching a concrete route (`/V1/orders/7`);
    /// literal segments beat parameters.
    pub fn template_of(&self, method: &str, route: &str) -> Option<String> {
        let want = segments(route.split('?').next().unwrap_or(route));
        let m = method.to_lowercase();
        let paths = self.doc.get("paths")?.as_object()?;
        let mut best: Option<(usize, &String)> = None;
        for (template, item) in paths {
            if item.get(&m).is_none() {
                continue;
            }
            let t = segments(template);
            if t.len() != want.len() {
                continue;
            }
            let mut literal = 0;
            let ok = t.iter().zip(&want).all(|(a, b)| {
                if a.starts_with('{') && a.ends_with('}') {
                    !b.is_empty()
                } else if a == b {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if ok && best.is_none_or(|(n, _)| literal > n) {
                best = Some((literal, template));
            }
        }
        best.map(|(_, t)| t.clone())
    }

    /// What to check a response of `method route` with `status` against.
    pub fn expectation(&self, method: &str, route: &str, status: u16) -> Expectation<'_> {
        let Some(template) = self.template_of(method, route) else {
            return Expectation::NotDescribed;
        };
        let Some(responses) = self.doc.pointer(&format!(
            "/paths/{}/{}/responses",
            template.replace('~', "~0").replace('/', "~1"),
            method.to_lowercase()
        )) else {
            return Expectation::NotDescribed;
        };
        let key = status.to_string();
        match responses.get(&key).and_then(|r| r.get("schema")) {
            Some(s) => Expectation::Schema(s),
            None if status == 200 => Expectation::Void,
            None => match responses.get("default").and_then(|r| r.get("schema")) {
                Some(s) if status >= 400 => Expectation::Schema(s),
                _ => Expectation::NotDescribed,
            },
        }
    }

    /// `definitions.<name>`.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.doc.get("definitions")?.get(name)
    }

    /// Every violation of `schema` by `value` (empty when the body conforms).
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out, 0);
        out
    }

    /// Validates a response; `None` when the route is not described.
    pub fn validate_response(
        &self,
        method: &str,
        route: &str,
        status: u16,
        body: &Value,
    ) -> Option<Vec<Violation>> {
        match self.expectation(method, route, status) {
            Expectation::Schema(s) => Some(self.validate(s, body)),
            Expectation::Void => Some(if body == &Value::Array(Vec::new()) {
                Vec::new()
            } else {
                vec![Violation {
                    at: "$".to_owned(),
                    message: format!("a void method answers [], got {body}"),
                }]
            }),
            Expectation::NotDescribed => None,
        }
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
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
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/definitions/");
            if name == Some("error-parameters") && value.is_object() {
                // Named phrase arguments (see the module docs).
                let scalar = |x: &Value| !x.is_object() && !x.is_array();
                for (k, v) in value.as_object().into_iter().flatten() {
                    if !(scalar(v) || v.as_array().is_some_and(|a| a.iter().all(scalar))) {
                        out.push(Violation {
                            at: format!("{at}.{k}"),
                            message: "a phrase argument must be a scalar".into(),
                        });
                    }
                }
                return;
            }
            match name.and_then(|n| self.definition(n)) {
                Some(target) => self.check(target, value, at, out, depth + 1),
                None => push(format!("unresolvable $ref {r}")),
            }
            return;
        }
        if value.is_null() {
            push("null where the schema does not allow null".into());
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
                if let Some(item_schema) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(item_schema, v, &format!("{at}[{i}]"), out, depth + 1);
                    }
                }
            }
            Some("string") => {
                let Some(s) = value.as_str() else {
                    push(format!("expected a string, got {}", kind(value)));
                    return;
                };
                if let Some(e) = schema.get("enum").and_then(Value::as_array)
                    && !e.iter().any(|x| x.as_str() == Some(s))
                {
                    push(format!("`{s}` is not one of the enum values"));
                }
            }
            Some("integer") => {
                if value.as_i64().is_none() && value.as_u64().is_none() {
                    push(format!("expected an integer, got {value}"));
                }
            }
            Some("number") => {
                if !value.is_number() {
                    push(format!("expected a number, got {}", kind(value)));
                }
            }
            Some("boolean") => {
                if !value.is_boolean() {
                    push(format!("expected a boolean, got {}", kind(value)));
                }
            }
            Some("mixed") | None => {}
            Some(other) => push(format!("unsupported schema type `{other}`")),
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
            // PHP renders an empty associative array as `[]`.
            if value.as_array().is_some_and(Vec::is_empty) {
                return;
            }
            out.push(Violation {
                at: at.to_owned(),
                message: format!("expected an object, got {}", kind(value)),
            });
            return;
        };
        let props = schema.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for r in &required {
            if !obj.contains_key(*r) {
                out.push(Violation {
                    at: at.to_owned(),
                    message: format!("required property `{r}` is missing"),
                });
            }
        }
        let additional = schema.get("additionalProperties");
        for (k, v) in obj {
            let child = format!("{at}.{k}");
            if v.is_null() && required.contains(&k.as_str()) {
                continue; // a required getter that returned null (see the module docs)
            }
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.check(ps, v, &child, out, depth + 1),
                None => match additional {
                    Some(Value::Bool(true)) => {}
                    Some(s @ Value::Object(_)) => self.check(s, v, &child, out, depth + 1),
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
            "paths": {
                "/V1/things/{id}": {"get": {"responses": {
                    "200": {"schema": {"$ref": "#/definitions/thing"}},
                    "default": {"schema": {"$ref": "#/definitions/error-response"}}}}},
                "/V1/things/list": {"get": {"responses": {"200": {"schema": {"type": "array", "items": {"$ref": "#/definitions/thing"}}}}}},
                "/V1/things": {"post": {"responses": {"400": {"schema": {"$ref": "#/definitions/error-response"}}}}}
            },
            "definitions": {
                "thing": {"type": "object", "required": ["id", "code"], "properties": {
                    "id": {"type": "integer"}, "code": {"type": "string"},
                    "state": {"type": "string", "enum": ["open", "closed"]},
                    "qty": {"type": "number"}}},
                "error-response": {"type": "object", "required": ["message"], "properties": {
                    "message": {"type": "string"}, "parameters": {"$ref": "#/definitions/error-parameters"}}},
                "error-parameters": {"type": "array", "items": {"$ref": "#/definitions/error-parameters-item"}},
                "error-parameters-item": {"type": "object", "properties": {"fieldName": {"type": "string"}}}
            }
        }))
    }

    #[test]
    fn routes_find_their_templates_literals_first() {
        let s = spec();
        assert_eq!(
            s.template_of("GET", "/V1/things/7").as_deref(),
            Some("/V1/things/{id}")
        );
        assert_eq!(
            s.template_of("GET", "/V1/things/list").as_deref(),
            Some("/V1/things/list")
        );
        assert_eq!(s.template_of("DELETE", "/V1/things/7"), None);
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let s = spec();
        let got: Vec<String> = s
            .validate_response(
                "GET",
                "/V1/things/7",
                200,
                &json!({"id": 1.5, "code": null, "state": "half", "extra": 1, "qty": null}),
            )
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                "$.extra: property not declared in the schema",
                "$.id: expected an integer, got 1.5",
                "$.qty: null where the schema does not allow null",
                "$.state: `half` is not one of the enum values",
            ]
        );
    }

    #[test]
    fn framework_rules_are_applied_by_name() {
        let s = spec();
        assert_eq!(
            s.validate_response("POST", "/V1/things", 200, &json!([])),
            Some(vec![])
        );
        assert_eq!(
            s.validate_response("POST", "/V1/things", 200, &json!(true))
                .map(|v| v.len()),
            Some(1)
        );
        let named =
            json!({"message": "\"%fieldName\" is required.", "parameters": {"fieldName": "sku"}});
        assert_eq!(
            s.validate_response("POST", "/V1/things", 400, &named),
            Some(vec![])
        );
        assert_eq!(
            s.validate_response("GET", "/V1/things/1", 404, &json!({"message": "x"})),
            Some(vec![])
        );
        assert_eq!(
            s.validate_response("GET", "/V1/other", 200, &json!({})),
            None
        );
    }
}
