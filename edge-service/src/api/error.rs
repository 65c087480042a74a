//! The API's error answers: `{"error": "...", "field": "...", "hint": "..."}`.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store::StoreError;

/// An error answer. `field` names what in the request is at fault (parameter, path segment,
/// body field, header); `component` names the part of the service that failed when nothing in
/// the request is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds, for `Retry-After` on 503.
    pub retry_after: Option<u32>,
}

/// The JSON body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
                component: None,
                hint: None,
            },
            retry_after: None,
        }
    }

    /// 400 naming `field`.
    pub fn bad(field: &str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error).field(field)
    }

    /// 404 naming `field`.
    pub fn not_found(field: &str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error).field(field)
    }

    /// 500 or 503 naming the failing component.
    pub fn unavailable(component: &str, error: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, error);
        e.body.component = Some(component.to_owned());
        e.retry_after = Some(5);
        e
    }

    pub fn field(mut self, field: &str) -> Self {
        self.body.field = Some(field.to_owned());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    /// A store failure (500, component `store`).
    pub fn store(e: &StoreError) -> Self {
        let mut out = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store could not answer: {e}"),
        );
        out.body.component = Some("store".into());
        out.body.hint = Some("check the database (GET /ready) and the service log".into());
        out
    }

    /// A blocking task that did not finish (500, component `api`).
    pub fn blocking(e: impl fmt::Display) -> Self {
        let mut out = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's worker failed: {e}"),
        );
        out.body.component = Some("api".into());
        out
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.body.error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        b.insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            b.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tillbridge\""));
        }
        if let Some(s) = self.retry_after {
            b.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        b.json(&self.body)
    }
}
