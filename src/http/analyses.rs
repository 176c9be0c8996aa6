//! `/v1/analyses` and the public `/v1/shared/analyses/{token}`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::access::Access;
use super::created::IdempotencyKey;
use super::created::{Created, idempotent};
use super::json::JsonBody;
use super::principal::{Permission, Principal};
use super::routes;
use super::{etag, list};
use crate::domain::analyses::{
    Analysis, BatchResult, Completion, HistoryFilter, NewAnalysis, ShareLink, Status, Trends,
};
use crate::domain::pagination::PageRequest;
use crate::domain::versioned::Versioned;
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    let (read, write) = (
        Access::Permission(Permission::AnalysesRead),
        Access::Permission(Permission::AnalysesWrite),
    );
    vec![
        routes::resource("/v1/analyses")
            .get(read, list_analyses)
            .post(write, create),
        routes::resource("/v1/analyses/batch-get").post(read, batch_get),
        routes::resource("/v1/analyses/trends").get(read, trends),
        routes::resource("/v1/analyses/{id}")
            .get(read, get)
            .patch(write, complete)
            .delete(write, delete),
        routes::resource("/v1/analyses/{id}/share")
            .post(write, share)
            .delete(write, unshare),
        routes::resource("/v1/shared/analyses/{token}").get(Access::Public, shared),
    ]
}

fn one(v: &Versioned<Analysis>) -> HttpResponse {
    etag::ok(&v.item, v.version)
}

/// Create an analysis (counts against the monthly quota). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/analyses", tag = "analyses", operation_id = "createAnalysis",
    request_body = NewAnalysis, params(IdempotencyKey),
    responses((status = 201, description = "Created", body = Analysis, headers(("Location" = String), ("ETag" = String))),
        (status = 422, description = "`validation_failed`, `unknown_persona` in `errors`, or `idempotency_mismatch`", body = Problem),
        (status = 429, description = "`quota_exceeded`: the plan's monthly limit is reached, or `rate_limited`", body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesWrite)?;
    let new: NewAnalysis = body.validated().await?;
    let (st, uid, input) = (state.clone(), principal.uid.clone(), new.clone());
    idempotent(
        &state,
        &req,
        &principal.uid,
        &principal.idempotency_scope(),
        &new,
        created,
        move |record| async move { st.analyses.create(&uid, input, record).await },
    )
    .await
}

fn created(a: &Analysis) -> AppResult<Created> {
    Ok(Created::new(StatusCode::CREATED, a)?.location(format!("/v1/analyses/{}", a.analysis_id)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (bound to these filters).
    cursor: Option<String>,
    /// Matches `input.persona`; empty means no filter.
    #[param(max_length = 100)]
    persona: Option<String>,
    #[param(inline)]
    status: Option<Status>,
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

/// History, newest first (`metadata.createdAt` desc, id desc).
#[utoipa::path(get, path = "/v1/analyses", tag = "analyses", operation_id = "listAnalyses", params(HistoryParams),
    responses((status = 200, description = "One page", body = list::ListPage<Analysis>)),
    security(("bearer" = [])))]
pub async fn list_analyses(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<HistoryParams>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesRead)?;
    let q = q.into_inner();
    let filter = HistoryFilter {
        persona: persona_param(q.persona)?,
        status: q.status,
        since: list::timestamp_param("since", q.since.as_deref())?,
        until: list::timestamp_param("until", q.until.as_deref())?,
    };
    let page = PageRequest::new(q.limit, q.cursor)?;
    let result = state.analyses.list(&principal.uid, &filter, &page).await?;
    Ok(list::page_response(&result))
}

/// A stored `input.persona` has at most 100 characters, so a longer filter is a bad
/// parameter (and one past 1,500 bytes is one Firestore refuses to query).
fn persona_param(v: Option<String>) -> AppResult<Option<String>> {
    match v.filter(|p| !p.is_empty()) {
        Some(p) if p.chars().count() > 100 => {
            Err(AppError::BadRequest("persona is at most 100 characters".into()))
        }
        other => Ok(other),
    }
}

/// One analysis.
#[utoipa::path(get, path = "/v1/analyses/{id}", tag = "analyses", operation_id = "getAnalysis",
    responses((status = 200, description = "The analysis", body = Analysis, headers(("ETag" = String)))),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesRead)?;
    Ok(one(&state.analyses.get(&principal.uid, &id).await?))
}

/// Complete (`{"status":"completed","results":…}`) or fail (`{"status":"failed"}`) a processing analysis.
#[utoipa::path(patch, path = "/v1/analyses/{id}", tag = "analyses", operation_id = "completeAnalysis",
    request_body = Completion, params(etag::IfMatchHeader),
    responses((status = 200, description = "The analysis as it is now", body = Analysis, headers(("ETag" = String))),
        (status = 409, description = "`conflict`: only processing → completed | failed", body = Problem),
        (status = 412, description = "`precondition_failed`: If-Match does not match", body = Problem),
        (status = 429, description = "`quota_exceeded` (a sampleCopy past the plan's limit) or `rate_limited`", body = Problem)),
    security(("bearer" = [])))]
pub async fn complete(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesWrite)?;
    let completion: Completion = body.validated().await?;
    let if_match = etag::if_match(&req)?;
    Ok(one(&state
        .analyses
        .complete(&principal.uid, &id, completion, if_match)
        .await?))
}

/// Delete an analysis (its share link stops working).
#[utoipa::path(delete, path = "/v1/analyses/{id}", tag = "analyses", operation_id = "deleteAnalysis",
    params(etag::IfMatchHeader),
    responses((status = 204, description = "Deleted"),
        (status = 412, description = "`precondition_failed`: If-Match does not match", body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesWrite)?;
    state
        .analyses
        .delete(&principal.uid, &id, etag::if_match(&req)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
pub struct BatchGet {
    /// 1..100 ids.
    #[validate(length(min = 1, max = 100))]
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<String>,
}

/// Many analyses in one round trip; ids that are not yours (or do not exist) come back in `missing`.
#[utoipa::path(post, path = "/v1/analyses/batch-get", tag = "analyses", operation_id = "batchGetAnalyses",
    request_body = BatchGet, responses((status = 200, description = "Found and missing", body = BatchResult)),
    security(("bearer" = [])))]
pub async fn batch_get(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesRead)?;
    let batch: BatchGet = body.validated().await?;
    Ok(HttpResponse::Ok().json(state.analyses.batch_get(&principal.uid, &batch.ids).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// UTC days including today (default 30).
    #[param(minimum = 1, maximum = 365)]
    days: Option<u32>,
}

/// Counts and averages over the last `days` UTC days.
#[utoipa::path(get, path = "/v1/analyses/trends", tag = "analyses", operation_id = "getAnalysisTrends",
    params(TrendParams), responses((status = 200, description = "The trends", body = Trends)),
    security(("bearer" = [])))]
pub async fn trends(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<TrendParams>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesRead)?;
    let days = match q.days {
        None => 30,
        Some(d) if (1..=365).contains(&d) => d,
        Some(_) => {
            return Err(AppError::BadRequest(
                "days must be an integer from 1 to 365".into(),
            ));
        }
    };
    Ok(HttpResponse::Ok().json(&*state.analyses.trends(&principal.uid, days).await?))
}

/// Make an analysis public; calling again returns the same token.
#[utoipa::path(post, path = "/v1/analyses/{id}/share", tag = "analyses", operation_id = "shareAnalysis",
    responses((status = 200, description = "The share link", body = ShareLink)), security(("bearer" = [])))]
pub async fn share(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesWrite)?;
    let (token, at) = state.analyses.share(&principal.uid, &id).await?;
    let url = format!("{}/v1/shared/analyses/{token}", public_base(&state, &req));
    Ok(HttpResponse::Ok().json(ShareLink {
        share_token: token,
        shared_at: at,
        url,
    }))
}

/// The API's public base URL: configured, else from the request — forwarded
/// headers only behind a trusted proxy, and only a plain host name survives.
fn public_base(state: &AppState, req: &HttpRequest) -> String {
    if let Some(u) = &state.config.public_url {
        return u.clone();
    }
    let info = req.connection_info();
    let (scheme, host) = if state.config.trust_proxy {
        (info.scheme().to_owned(), info.host().to_owned())
    } else {
        let scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (scheme.to_owned(), host)
    };
    let scheme = if scheme == "https" { "https" } else { "http" };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    let host = if host_ok { host.as_str() } else { "localhost" };
    format!("{scheme}://{host}")
}

/// Revoke the share link: the old token stops working at once.
#[utoipa::path(delete, path = "/v1/analyses/{id}/share", tag = "analyses", operation_id = "unshareAnalysis",
    responses((status = 204, description = "Revoked")), security(("bearer" = [])))]
pub async fn unshare(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::AnalysesWrite)?;
    state.analyses.unshare(&principal.uid, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A shared analysis, without owner data. No authentication.
#[utoipa::path(get, path = "/v1/shared/analyses/{token}", tag = "analyses", operation_id = "getSharedAnalysis",
    responses((status = 200, description = "The shared analysis, without `userId`", body = Analysis)))]
pub async fn shared(state: web::Data<AppState>, token: web::Path<String>) -> AppResult<HttpResponse> {
    // A revoked link must stop working at once: no cache may keep the page.
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(state.analyses.shared(&token).await?))
}
