//! One `tracing` span per request (request id, route, Cloud trace id, caller)
//! and the HTTP metrics.

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use tracing::Instrument;

use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};

use super::request_id::RequestId;
use crate::ratelimit::Decision;
use crate::state::AppState;

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // Metric labels take values from fixed sets only (a client must not be able
    // to create series): a route pattern of ours or `unmatched`, a standard method or `other`.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method_label = method_label(req.method());
    let method = req.method().to_string();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    // `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`
    let trace = req
        .headers()
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|t| !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned);
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        trace = trace.as_deref(),
        uid = tracing::field::Empty,
    );
    let mut res = next.call(req).instrument(span.clone()).await;
    if let Ok(r) = &mut res {
        let decision = r.request().extensions().get::<Decision>().cloned();
        if let Some(d) = decision {
            let h = r.headers_mut();
            if let (Ok(p), Ok(l)) = (
                HeaderValue::from_str(&d.policy_header()),
                HeaderValue::from_str(&d.limit_header()),
            ) {
                h.insert(HeaderName::from_static("ratelimit-policy"), p);
                h.insert(HeaderName::from_static("ratelimit"), l);
            }
        }
    }
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(m) = metrics {
        m.observe_http(&route, method_label, status, started);
    }
    span.in_scope(|| {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Cloud Run's request log already has method, status and latency: a line
        // per request of our own is debug (it costs ~40% of a cached read's
        // throughput, docs/benchmarks.md); server errors always log.
        if status >= 500 {
            tracing::warn!(status, latency_ms, "request failed");
        } else {
            tracing::debug!(status, latency_ms, "request completed");
        }
    });
    res
}

/// The `method` label: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}
