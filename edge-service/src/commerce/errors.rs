//! What can go wrong on a Commerce call, and Magento's error bodies (spec §8).
//!
//! [`MagentoErrorBody`] parses what `Magento\Framework\Webapi\Rest\Response` writes: the raw
//! `message` with its `%placeholders`, `parameters` as a map (`%name`) or a list (`%1`), the
//! aggregated `errors[]`, `code` and `trace`, and the fallback shape
//! `{"messages":{"error":[{"code":500,"message":"…"}]}}`. A body that is not JSON (an HTML page
//! from a proxy) becomes a message with its first characters. [`MagentoErrorBody::rendered`]
//! substitutes the parameters the way Magento's `Renderer\Placeholder` does (`strtr`, longest
//! key first, integer key `n` → `%{n+1}`).
//!
//! [`CommerceError`] is the error of every client call: what happened ([`ErrorKind`]) and the
//! [`CallRecord`] of the call (route, status, attempts, elapsed, idempotency key), so a log
//! line or an exception shown to an operator names the call as well as the cause.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::observe::CallRecord;

/// The arguments of a Magento phrase as the REST layer renders them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Parameters {
    /// No `parameters` key (or an empty one).
    #[default]
    None,
    /// `{"name": value}`: placeholders `%name` (a numeric key `n` stands for `%{n+1}`).
    Named(Vec<(String, Value)>),
    /// `[value, …]`: placeholders `%1`, `%2`, ….
    Positional(Vec<Value>),
}

impl Parameters {
    /// Reads a `parameters` value: an object, a list, or anything else (no parameters).
    pub fn from_json(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Object(map)) if !map.is_empty() => {
                Self::Named(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            Some(Value::Array(list)) if !list.is_empty() => Self::Positional(list.clone()),
            _ => Self::None,
        }
    }

    /// The value of a named parameter (`parameters.fieldName`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Self::Named(pairs) => pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            Self::Positional(list) => name
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| list.get(i)),
            Self::None => None,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// `(placeholder, text)` pairs as `Renderer\Placeholder::keyToPlaceholder` builds them.
    fn placeholders(&self) -> Vec<(String, String)> {
        match self {
            Self::None => Vec::new(),
            Self::Named(pairs) => pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k.parse::<u64>() {
                        Ok(n) => format!("%{}", n + 1),
                        Err(_) => format!("%{k}"),
                    };
                    (key, php_string(v))
                })
                .collect(),
            Self::Positional(list) => list
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("%{}", i + 1), php_string(v)))
                .collect(),
        }
    }
}

/// PHP's string conversion of a phrase argument.
fn php_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "1".to_owned(),
        Value::Bool(false) | Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => "Array".to_owned(),
    }
}

/// PHP's `strtr($text, $pairs)`: at each position the longest matching key wins, and
/// replaced text is not scanned again.
pub fn strtr(text: &str, pairs: &[(String, String)]) -> String {
    let mut keys: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| !k.is_empty()).collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (k, v) in &keys {
            if let Some(after) = rest.strip_prefix(k.as_str()) {
                out.push_str(v);
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// One entry of `errors[]` (aggregated validation errors).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MagentoErrorDetail {
    /// The raw phrase (`"%field" can not be empty.`).
    pub message: String,
    /// Its arguments.
    pub parameters: Parameters,
}

impl MagentoErrorDetail {
    /// The message with its parameters substituted.
    pub fn rendered(&self) -> String {
        strtr(&self.message, &self.parameters.placeholders())
    }
}

/// A Magento REST error body (spec §8.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MagentoErrorBody {
    /// The raw phrase, placeholders kept.
    pub message: String,
    /// The phrase arguments.
    pub parameters: Parameters,
    /// Aggregated errors (`ValidationException`, several `InputException`s).
    pub errors: Vec<MagentoErrorDetail>,
    /// The exception code, when non-zero.
    pub code: Option<i64>,
    /// The stack trace (developer mode only).
    pub trace: Option<String>,
}

impl MagentoErrorBody {
    /// Parses an error answer. Never fails: a body that is not Magento JSON becomes a message
    /// holding its first 200 characters (or the HTTP reason when it is empty).
    pub fn parse(body: &[u8], status: u16) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Self::from_json(&v).unwrap_or_else(|| Self::text(&v.to_string(), status)),
            Err(_) => Self::text(&String::from_utf8_lossy(body), status),
        }
    }

    fn text(text: &str, status: u16) -> Self {
        let trimmed = text.trim();
        let message = if trimmed.is_empty() {
            format!("HTTP {status} with an empty body")
        } else {
            let cut: String = trimmed.chars().take(200).collect();
            if cut.len() < trimmed.len() {
                format!("{cut}…")
            } else {
                cut
            }
        };
        Self {
            message,
            ..Self::default()
        }
    }

    /// Reads the JSON shapes Magento writes; `None` when the value is neither.
    pub fn from_json(v: &Value) -> Option<Self> {
        if let Some(message) = v.get("message").and_then(Value::as_str) {
            let errors = v
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|e| MagentoErrorDetail {
                            message: e
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            parameters: Parameters::from_json(e.get("parameters")),
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Some(Self {
                message: message.to_owned(),
                parameters: Parameters::from_json(v.get("parameters")),
                errors,
                code: v.get("code").and_then(Value::as_i64),
                trace: v.get("trace").and_then(Value::as_str).map(str::to_owned),
            });
        }
        // `ErrorProcessor::_formatError` fallback.
        let first = v
            .get("messages")
            .and_then(|m| m.get("error"))
            .and_then(Value::as_array)
            .and_then(|l| l.first())?;
        Some(Self {
            message: first
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            code: first.get("code").and_then(Value::as_i64),
            ..Self::default()
        })
    }

    /// The message with its parameters substituted (`Source with code "xyz" does not exist.`).
    pub fn rendered(&self) -> String {
        strtr(&self.message, &self.parameters.placeholders())
    }

    /// Every aggregated error, rendered.
    pub fn rendered_errors(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(MagentoErrorDetail::rendered)
            .collect()
    }

    /// Whether this is the router's "no such route" answer (the endpoint does not exist on
    /// this Commerce, e.g. a module is missing), as opposed to a missing entity.
    pub fn is_route_not_found(&self) -> bool {
        self.message == "Request does not match any route."
    }
}

impl fmt::Display for MagentoErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered())?;
        let errors = self.rendered_errors();
        let extra: Vec<&String> = errors.iter().filter(|e| **e != self.rendered()).collect();
        if !extra.is_empty() {
            write!(
                f,
                " ({})",
                extra
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )?;
        }
        Ok(())
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// Magento refused the request (4xx other than 401 and 429): permanent, fix the input.
    #[error("rejected with HTTP {status}: {body}")]
    Rejected {
        /// The HTTP status (400, 404, …).
        status: u16,
        /// Magento's answer.
        body: Box<MagentoErrorBody>,
    },
    /// 401: the token is wrong, expired and not renewable, or lacks an ACL resource.
    #[error("unauthorized (HTTP 401): {body}")]
    Unauthorized {
        /// Magento's answer (`The consumer isn't authorized to access %resources.`).
        body: Box<MagentoErrorBody>,
    },
    /// 429 on every attempt.
    #[error("throttled (HTTP 429){}", retry_after.map(|d| format!(", Retry-After {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A 5xx on the last attempt.
    #[error("server error HTTP {status}: {body}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The answer (for 500 outside developer mode: `Internal Error. … Report ID: …`).
        body: Box<MagentoErrorBody>,
    },
    /// No answer within the per-attempt timeout on the last attempt.
    #[error("no answer within {}ms", timeout.as_millis())]
    Timeout {
        /// The per-attempt timeout.
        timeout: Duration,
    },
    /// The connection failed or broke on the last attempt.
    #[error("connection failed: {message}")]
    Connection {
        /// The transport's description.
        message: String,
    },
    /// A 2xx answer that is not the JSON the call expects.
    #[error("unexpected answer: {message}")]
    Decode {
        /// What did not parse.
        message: String,
    },
    /// A non-idempotent write failed in a way that may have applied it, and the probe could
    /// not tell whether it did: reconcile (read the order / documents) before trying again.
    #[error("may or may not have been applied: {reason}")]
    Ambiguous {
        /// What the probe saw.
        reason: String,
    },
    /// The client refused to send the request (over an input limit, bad configuration).
    #[error("not sent: {message}")]
    InvalidRequest {
        /// Why.
        message: String,
    },
}

/// The error of a Commerce call: what went wrong and the record of the call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{call}: {kind}")]
pub struct CommerceError {
    kind: ErrorKind,
    call: Box<CallRecord>,
}

impl CommerceError {
    /// An error of a call.
    pub fn new(kind: ErrorKind, call: CallRecord) -> Self {
        Self {
            kind,
            call: Box::new(call),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The call (route, status, attempts, elapsed, idempotency key).
    pub fn call(&self) -> &CallRecord {
        &self.call
    }

    /// The last HTTP status, if an answer came.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Rejected { status, .. } | ErrorKind::Server { status, .. } => Some(*status),
            ErrorKind::Unauthorized { .. } => Some(401),
            ErrorKind::Throttled { .. } => Some(429),
            _ => self.call.status,
        }
    }

    /// Magento's error body, when the answer had one.
    pub fn magento(&self) -> Option<&MagentoErrorBody> {
        match &self.kind {
            ErrorKind::Rejected { body, .. }
            | ErrorKind::Unauthorized { body }
            | ErrorKind::Server { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Magento's message with its parameters substituted, when there is one.
    pub fn message(&self) -> Option<String> {
        self.magento().map(MagentoErrorBody::rendered)
    }

    /// Worth trying again later (the call already retried within its policy): 429, 5xx,
    /// timeouts, connection failures.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled { .. }
                | ErrorKind::Server { .. }
                | ErrorKind::Timeout { .. }
                | ErrorKind::Connection { .. }
        )
    }

    /// Trying again with the same input cannot succeed (4xx, a refused request, a bad answer).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Rejected { .. }
                | ErrorKind::Unauthorized { .. }
                | ErrorKind::InvalidRequest { .. }
                | ErrorKind::Decode { .. }
        )
    }

    /// 404 for a missing entity (not a missing route).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, ErrorKind::Rejected { status: 404, body } if !body.is_route_not_found())
    }

    /// 404 "Request does not match any route.": this Commerce has no such endpoint.
    pub fn is_route_not_found(&self) -> bool {
        matches!(&self.kind, ErrorKind::Rejected { status: 404, body } if body.is_route_not_found())
    }

    /// The last `Retry-After`, for a throttled call.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Throttled { retry_after } => retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &Value) -> MagentoErrorBody {
        MagentoErrorBody::parse(v.to_string().as_bytes(), 400)
    }

    #[test]
    fn named_parameters_are_substituted() {
        let b = parse(&json!({
            "message": "Source with code \"%value\" does not exist.",
            "parameters": {"value": "xyz"}
        }));
        assert_eq!(b.message, "Source with code \"%value\" does not exist.");
        assert_eq!(b.parameters.get("value"), Some(&json!("xyz")));
        assert_eq!(b.rendered(), "Source with code \"xyz\" does not exist.");
    }

    #[test]
    fn positional_parameters_are_substituted_as_percent_one() {
        let b = parse(&json!({
            "message": "Invalid product data: %1",
            "parameters": ["Invalid attribute set entity type"]
        }));
        assert_eq!(
            b.rendered(),
            "Invalid product data: Invalid attribute set entity type"
        );
        assert_eq!(
            b.parameters.get("1"),
            Some(&json!("Invalid attribute set entity type"))
        );
    }

    #[test]
    fn numeric_map_keys_count_from_percent_one() {
        let b = parse(&json!({"message": "%1 and %2", "parameters": {"0": "a", "1": 7}}));
        assert_eq!(b.rendered(), "a and 7");
    }

    #[test]
    fn longest_placeholder_wins_and_replacements_are_not_rescanned() {
        let list: Vec<Value> = (1..=10).map(|i| json!(format!("v{i}"))).collect();
        let b = parse(&json!({"message": "%10 %1 %2", "parameters": list}));
        assert_eq!(b.rendered(), "v10 v1 v2");
        let b = parse(&json!({"message": "%a %ab", "parameters": {"a": "%ab", "ab": "X"}}));
        assert_eq!(b.rendered(), "%ab X");
    }

    #[test]
    fn php_string_conversion_of_arguments() {
        let b = parse(&json!({
            "message": "%t|%f|%n|%i|%d|%l",
            "parameters": {"t": true, "f": false, "n": null, "i": 4, "d": 2.5, "l": [1]}
        }));
        assert_eq!(b.rendered(), "1|||4|2.5|Array");
    }

    #[test]
    fn aggregated_errors_keep_their_own_parameters() {
        let b = parse(&json!({
            "message": "Validation Failed",
            "errors": [
                {"message": "\"%field\" can not be empty.", "parameters": {"field": "name"}},
                {"message": "\"%field\" can not be empty.", "parameters": {"field": "postcode"}}
            ]
        }));
        assert_eq!(
            b.rendered_errors(),
            vec![
                "\"name\" can not be empty.".to_owned(),
                "\"postcode\" can not be empty.".to_owned()
            ]
        );
        assert_eq!(
            b.to_string(),
            "Validation Failed (\"name\" can not be empty.; \"postcode\" can not be empty.)"
        );
    }

    #[test]
    fn code_trace_and_fallback_shapes() {
        let b = parse(&json!({"message": "m", "code": 5, "trace": "#0 …"}));
        assert_eq!(b.code, Some(5));
        assert_eq!(b.trace.as_deref(), Some("#0 …"));
        let b = parse(&json!({"messages": {"error": [{"code": 500, "message": "boom"}]}}));
        assert_eq!(b.message, "boom");
        assert_eq!(b.code, Some(500));
    }

    #[test]
    fn non_json_bodies_become_a_short_message() {
        let html = format!("<html>{}</html>", "x".repeat(500));
        let b = MagentoErrorBody::parse(html.as_bytes(), 503);
        assert_eq!(b.message.chars().count(), 201);
        assert!(b.message.starts_with("<html>"));
        let b = MagentoErrorBody::parse(b"", 502);
        assert_eq!(b.message, "HTTP 502 with an empty body");
    }

    #[test]
    fn parameters_without_placeholders_and_missing_parameters() {
        let b = parse(&json!({"message": "Input data is empty", "parameters": []}));
        assert!(b.parameters.is_empty());
        assert_eq!(b.rendered(), "Input data is empty");
        let b = parse(&json!({"message": "Request does not match any route."}));
        assert!(b.is_route_not_found());
    }
}
