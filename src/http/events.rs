//! `POST /v1/events` (usage analytics) and `GET /v1/admin/analytics`.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::Access;
use super::created::{Created, IdempotencyKey, idempotent};
use super::json::JsonBody;
use super::principal::{Admin, Permission, Principal};
use super::{list, routes};
use crate::domain::analytics::{Accepted, Event, EventBatch, EventFilter, Origin};
use crate::domain::pagination::PageRequest;
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    vec![
        routes::resource("/v1/events").post(Access::Permission(Permission::EventsWrite), post_events),
        routes::resource("/v1/admin/analytics").get(Access::Admin, list_events),
    ]
}

/// The client's address: the first `X-Forwarded-For` entry behind a trusted
/// proxy, else the peer. Only its anonymized form is ever stored.
pub fn client_ip(req: &HttpRequest, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy {
        let first = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        if let Some(ip) = first.and_then(|s| {
            s.parse::<IpAddr>()
                .ok()
                .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        }) {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// Record usage events. With `preferences.analyticsOptOut` nothing is stored
/// (`accepted: 0`). One invalid event rejects the batch (422 naming `events[i].field`).
#[utoipa::path(post, path = "/v1/events", tag = "analytics", operation_id = "postEvents",
    request_body = EventBatch, params(IdempotencyKey),
    responses((status = 202, description = "Accepted", body = Accepted),
        (status = 422, description = "`validation_failed` naming `events[i].field`, or `idempotency_mismatch`", body = Problem)),
    security(("bearer" = [])))]
pub async fn post_events(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let batch: EventBatch = body.validated().await?;
    let origin = Origin {
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
        ip: client_ip(&req, state.config.trust_proxy),
    };
    let opted_out = principal.account.profile.preferences.analytics_opt_out;
    let (st, uid, input) = (state.clone(), principal.uid.clone(), batch.clone());
    idempotent(
        &state,
        &req,
        &principal.uid,
        &principal.idempotency_scope(),
        &batch,
        accepted,
        move |record| async move {
            st.analytics
                .record(&uid, &input, &origin, opted_out, record)
                .await
        },
    )
    .await
}

fn accepted(a: &Accepted) -> AppResult<Created> {
    Created::new(StatusCode::ACCEPTED, a)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (bound to the filters).
    cursor: Option<String>,
    /// Exact event type; empty means no filter.
    #[serde(rename = "eventType")]
    #[param(rename = "eventType")]
    event_type: Option<String>,
    /// A uid (or an erased user's pseudonym); empty means no filter.
    #[serde(rename = "userId")]
    #[param(rename = "userId")]
    user_id: Option<String>,
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

fn filter_param(name: &str, v: Option<String>) -> AppResult<Option<String>> {
    match v.filter(|s| !s.is_empty()) {
        // Firestore indexes at most 1,500 bytes of a string.
        Some(s) if s.len() > 1500 => Err(AppError::BadRequest(format!("{name} is at most 1500 bytes"))),
        other => Ok(other),
    }
}

/// Usage events of every user, newest first.
#[utoipa::path(get, path = "/v1/admin/analytics", tag = "admin", operation_id = "adminListAnalytics",
    params(AnalyticsParams),
    responses((status = 200, description = "One page of events", body = list::ListPage<Event>)),
    security(("bearer" = [])))]
pub async fn list_events(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<AnalyticsParams>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let filter = EventFilter {
        event_type: filter_param("eventType", q.event_type)?,
        user_id: filter_param("userId", q.user_id)?,
        since: list::timestamp_param("since", q.since.as_deref())?,
        until: list::timestamp_param("until", q.until.as_deref())?,
    };
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(&state.analytics.list(&filter, &page).await?))
}
