//! Service endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::access::Access::Public;
use super::routes;
use crate::error::AppError;
use crate::state::AppState;

/// How long readiness waits for the store before answering 503.
const READY_DEADLINE: Duration = Duration::from_secs(2);

pub fn resources() -> Vec<routes::Routes> {
    vec![
        routes::resource("/healthz").get(Public, healthz),
        routes::resource("/readyz").get(Public, readyz),
        routes::resource("/metrics").get(Public, metrics),
        routes::resource("/openapi.json").get(Public, openapi),
    ]
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "service", operation_id = "healthz",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the store answers within 2 s, else 503 with `Retry-After`.
#[utoipa::path(get, path = "/readyz", tag = "service", operation_id = "readyz",
    responses((status = 200, description = "`{\"status\":\"ready\",\"store\":…}`", body = Object),
        (status = 503, description = "`unavailable`", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32)))))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    match tokio::time::timeout(READY_DEADLINE, state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready", "store": state.store.kind()}))),
        Ok(Err(e)) => Err(AppError::Unavailable {
            retry_after_secs: 5,
            cause: e.to_string(),
        }),
        Err(_) => Err(AppError::Unavailable {
            retry_after_secs: 5,
            cause: "store ping timed out".into(),
        }),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "getMetrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (hits, misses) = state.verifier.cache_stats();
    let tokens = state.metrics.cache_events.clone();
    // Token-cache counters live in the verifier; mirror them at scrape time.
    for (result, value) in [("hit", hits), ("miss", misses)] {
        let c = tokens.with_label_values(&["id_tokens", result]);
        c.inc_by(value.saturating_sub(c.get()));
    }
    state.feed.report_health();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "service", operation_id = "getOpenApi",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let doc = if state.config.metrics_port.is_some() {
        super::openapi::document_without_metrics()
    } else {
        super::openapi::document()
    };
    HttpResponse::Ok().json(doc)
}
