//! Service endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;
use utoipa::OpenApi;

use super::routes;
use crate::error::AppError;
use crate::state::AppState;

/// How long readiness waits for the store before answering 503.
const READY_DEADLINE: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(routes::resource("/healthz").get(healthz).build())
        .service(routes::resource("/readyz").get(readyz).build())
        .service(routes::resource("/metrics").get(metrics).build())
        .service(routes::resource("/openapi.json").get(openapi).build());
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the store answers within 2 s, else 503 with `Retry-After`.
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200), (status = 503)))]
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
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (hits, misses) = state.verifier.cache_stats();
    let tokens = state.metrics.cache_events.clone();
    // Token-cache counters live in the verifier; mirror them at scrape time.
    for (result, value) in [("hit", hits), ("miss", misses)] {
        let c = tokens.with_label_values(&["id_tokens", result]);
        c.inc_by(value.saturating_sub(c.get()));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::ApiDoc::openapi())
}
