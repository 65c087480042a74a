//! Square's error envelope: `{"errors":[{"category","code","detail","field"}]}` with an HTTP status.

use serde_json::{Value, json};

/// One entry of Square's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquareError {
    pub category: String,
    pub code: String,
    pub detail: String,
    pub field: Option<String>,
}

/// A failed call: the HTTP status, Square's errors, and an optional `Retry-After` (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub errors: Vec<SquareError>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, category: &str, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![SquareError {
                category: category.to_owned(),
                code: code.to_owned(),
                detail: detail.into(),
                field: None,
            }],
            retry_after: None,
        }
    }

    /// A 400 `INVALID_REQUEST_ERROR` naming the offending field.
    pub fn invalid(code: &str, detail: impl Into<String>, field: &str) -> Self {
        let mut e = Self::new(400, "INVALID_REQUEST_ERROR", code, detail);
        e.errors[0].field = Some(field.to_owned());
        e
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "AUTHENTICATION_ERROR",
            "UNAUTHORIZED",
            "This request could not be authorized.",
        )
    }

    pub fn rate_limited(retry_after: Option<u64>) -> Self {
        let mut e = Self::new(
            429,
            "RATE_LIMIT_ERROR",
            "RATE_LIMITED",
            "Too many requests; retry later with exponential backoff.",
        );
        e.retry_after = retry_after;
        e
    }

    /// The JSON body Square sends with this error.
    pub fn body(&self) -> Value {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|e| {
                let mut v = json!({"category": e.category, "code": e.code, "detail": e.detail});
                if let (Some(f), Some(obj)) = (&e.field, v.as_object_mut()) {
                    obj.insert("field".into(), Value::String(f.clone()));
                }
                v
            })
            .collect();
        json!({ "errors": errors })
    }

    /// The category Square uses for a plain HTTP status (used by injected status faults).
    pub fn for_status(status: u16, code: Option<&str>, retry_after: Option<u64>) -> Self {
        let (category, default_code) = match status {
            401 => ("AUTHENTICATION_ERROR", "UNAUTHORIZED"),
            403 => ("AUTHENTICATION_ERROR", "FORBIDDEN"),
            404 => ("INVALID_REQUEST_ERROR", "NOT_FOUND"),
            409 => ("INVALID_REQUEST_ERROR", "CONFLICT"),
            429 => ("RATE_LIMIT_ERROR", "RATE_LIMITED"),
            500 => ("API_ERROR", "INTERNAL_SERVER_ERROR"),
            503 => ("API_ERROR", "SERVICE_UNAVAILABLE"),
            504 => ("API_ERROR", "GATEWAY_TIMEOUT"),
            s if s >= 500 => ("API_ERROR", "INTERNAL_SERVER_ERROR"),
            _ => ("INVALID_REQUEST_ERROR", "BAD_REQUEST"),
        };
        let mut e = Self::new(
            status,
            category,
            code.unwrap_or(default_code),
            format!("Injected fault: HTTP {status}."),
        );
        e.retry_after = retry_after;
        e
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
