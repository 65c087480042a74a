//! Bearer-token check for every route but health, readiness, the static dashboard and the
//! webhooks (which their POS signs).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};

const HINT: &str = "send the header 'Authorization: Bearer <token>' with the token from service.api_token in the configuration (TILLBRIDGE_SERVICE__API_TOKEN)";

/// Whether `given` equals `expected`, in time that does not depend on where they differ (both
/// are hashed first, so neither the length nor a prefix leaks).
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Checks `Authorization: Bearer <token>`; answers 401 with what is wrong otherwise.
pub(crate) fn check(req: &ServiceRequest) -> Result<(), ApiError> {
    let unauthorized = |error: &str| {
        ApiError::new(StatusCode::UNAUTHORIZED, error)
            .field("authorization")
            .hint(HINT)
    };
    let Some(state) = req.app_data::<web::Data<ApiState>>() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the API is mounted without its state",
        ));
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(unauthorized("missing bearer token"));
    };
    let Ok(value) = value.to_str() else {
        return Err(unauthorized("the Authorization header is not text"));
    };
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(unauthorized("the bearer token is empty"));
    }
    if !token_matches(token, state.token.expose()) {
        return Err(unauthorized("the bearer token is not valid"));
    }
    Ok(())
}

/// The middleware (`actix_web::middleware::from_fn(require_token)`).
pub(crate) async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    check(&req)?;
    let mut res = next.call(req).await?;
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-token", "s3cret-tokeN"));
        assert!(!token_matches("s3cret", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
    }
}
