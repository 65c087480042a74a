//! The built-in dashboard: one static page, a script and a style sheet, compiled in. No data
//! is in them (the page asks for the token and calls the API), so they are served without
//! the token, under a Content-Security-Policy that allows nothing from elsewhere.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const HTML: &str = include_str!("dashboard/index.html");
const JS: &str = include_str!("dashboard/dashboard.js");
const CSS: &str = include_str!("dashboard/dashboard.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page))
        .route("/dashboard.js", web::get().to(script))
        .route("/dashboard.css", web::get().to(style));
}

fn file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn page() -> HttpResponse {
    file("text/html; charset=utf-8", HTML)
}

async fn script() -> HttpResponse {
    file("text/javascript; charset=utf-8", JS)
}

async fn style() -> HttpResponse {
    file("text/css; charset=utf-8", CSS)
}
