//! `/v1/admin/*` (role `admin`, ID token only) and `GET /v1/system/{docId}`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use validator::Validate;

use super::access::Access;
use super::json::JsonBody;
use super::principal::Admin;
use super::{etag, list, request_id, routes};
use crate::domain::admin::{AuditFilter, MAX_SYSTEM_DOC_BYTES, RolePut, RoleView, SubscriptionPut};
use crate::domain::audit::AuditRecord;
use crate::domain::pagination::PageRequest;
use crate::domain::persona_templates::PersonaTemplates;
use crate::domain::personas::TEMPLATES_DOC;
use crate::domain::users::{PlanType, Profile, Subscription};
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    vec![
        routes::resource("/v1/admin/users").get(Access::Admin, list_users),
        routes::resource("/v1/admin/users/{uid}")
            .get(Access::Admin, get_user)
            .delete(Access::Admin, super::gdpr::erase_user),
        routes::resource("/v1/admin/users/{uid}/subscription").put(Access::Admin, put_subscription),
        routes::resource("/v1/admin/users/{uid}/role").put(Access::Admin, put_role),
        routes::resource("/v1/admin/audit").get(Access::Admin, audit),
        routes::resource("/v1/admin/system/{docId}").put(Access::Admin, put_system),
        routes::resource("/v1/system/{docId}").get(Access::SignedIn, get_system),
    ]
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersParams {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (bound to `plan`).
    cursor: Option<String>,
    /// Only users of this plan.
    #[param(inline)]
    plan: Option<PlanType>,
}

/// Users (by uid), optionally of one plan.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", operation_id = "adminListUsers", params(UsersParams),
    responses((status = 200, description = "One page of profiles", body = list::ListPage<Profile>)),
    security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<UsersParams>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(&state.admin.list_users(q.plan, &page).await?))
}

/// One user's profile.
#[utoipa::path(get, path = "/v1/admin/users/{uid}", tag = "admin", operation_id = "adminGetUser",
    params(("uid" = String, Path, description = "The user's uid")),
    responses((status = 200, description = "The profile", body = Profile, headers(("ETag" = String)))),
    security(("bearer" = [])))]
pub async fn get_user(
    state: web::Data<AppState>,
    _admin: Admin,
    uid: web::Path<String>,
) -> AppResult<HttpResponse> {
    let v = state.admin.get_user(&uid).await?;
    Ok(etag::ok(&v.item, v.version))
}

/// Set a user's plan, status, dates and features (the limits follow the plan). Audited.
#[utoipa::path(put, path = "/v1/admin/users/{uid}/subscription", tag = "admin", operation_id = "adminPutSubscription",
    params(("uid" = String, Path, description = "The user's uid")), request_body = SubscriptionPut,
    responses((status = 200, description = "The subscription as it is now", body = Subscription),
        (status = 422, description = "`validation_failed` (also for `analysisLimit` / `copyLimit`: they follow the plan)", body = Problem)),
    security(("bearer" = [])))]
pub async fn put_subscription(
    state: web::Data<AppState>,
    admin: Admin,
    uid: web::Path<String>,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let put: SubscriptionPut = body.validated().await?;
    let s = state
        .admin
        .set_subscription(&admin.uid, &uid, &put, &request_id::current())
        .await?;
    Ok(HttpResponse::Ok().json(s))
}

/// Set a user's role. Audited.
#[utoipa::path(put, path = "/v1/admin/users/{uid}/role", tag = "admin", operation_id = "adminPutRole",
    params(("uid" = String, Path, description = "The user's uid")), request_body = RolePut,
    responses((status = 200, description = "The role as it is now", body = RoleView)),
    security(("bearer" = [])))]
pub async fn put_role(
    state: web::Data<AppState>,
    admin: Admin,
    uid: web::Path<String>,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let put: RolePut = body.validated().await?;
    let r = state
        .admin
        .set_role(&admin.uid, &uid, put.role, &request_id::current())
        .await?;
    Ok(HttpResponse::Ok().json(r))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (bound to the filters).
    cursor: Option<String>,
    /// Who acted (a uid, or `cli`); empty means no filter.
    actor: Option<String>,
    /// What was acted on: `users/<uid>` (or just the uid), `system/<docId>`; empty means no filter.
    target: Option<String>,
    /// e.g. `profile.update`, `user.role.update`; empty means no filter.
    action: Option<String>,
}

fn filter_param(name: &str, v: Option<String>) -> AppResult<Option<String>> {
    match v.filter(|s| !s.is_empty()) {
        // Firestore indexes at most 1,500 bytes of a string.
        Some(s) if s.len() > 1500 => Err(AppError::BadRequest(format!("{name} is at most 1500 bytes"))),
        other => Ok(other),
    }
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", operation_id = "adminListAudit", params(AuditParams),
    responses((status = 200, description = "One page of audit records", body = list::ListPage<AuditRecord>)),
    security(("bearer" = [])))]
pub async fn audit(
    state: web::Data<AppState>,
    _admin: Admin,
    q: web::Query<AuditParams>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let filter = AuditFilter {
        actor: filter_param("actor", q.actor)?,
        target: filter_param("target", q.target)?,
        action: filter_param("action", q.action)?,
    };
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(&state.admin.audit(&filter, &page).await?))
}

/// A system document (configuration, feature flags): its fields at the top level.
#[utoipa::path(get, path = "/v1/system/{docId}", tag = "system", operation_id = "getSystemDocument",
    params(("docId" = String, Path, description = "The document id, e.g. `config`")),
    responses((status = 200, description = "The document's fields", body = Object, headers(("ETag" = String)))),
    security(("bearer" = []), ("apiKey" = [])))]
pub async fn get_system(state: web::Data<AppState>, doc_id: web::Path<String>) -> AppResult<HttpResponse> {
    let v = state.admin.system(&doc_id).await?;
    Ok(etag::ok(&v.item, v.version))
}

/// Replace a system document with the body (a JSON object of at most 64 KiB). Audited.
///
/// `personaTemplates` (served by `GET /v1/personas/templates`) must be a
/// `PersonaTemplates` document: `{items}`, at most 100 templates shaped like
/// personas (`templateId`, `name`, `description`, `characteristics`; no other
/// keys), `templateId`s unique; else 422 naming the field.
#[utoipa::path(put, path = "/v1/admin/system/{docId}", tag = "admin", operation_id = "adminPutSystemDocument",
    params(("docId" = String, Path, description = "The document id")),
    request_body(content = Object, description = "The whole document: a JSON object of at most 64 KiB"),
    responses((status = 200, description = "The document as stored", body = Object, headers(("ETag" = String))),
        (status = 403, description = "`forbidden`: not an admin, an API key, or `schema` (written by the migrations only)", body = Problem),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = Problem),
        (status = 422, description = "`validation_failed`: not storable, or `personaTemplates` not shaped as `PersonaTemplates`", body = Problem)),
    security(("bearer" = [])))]
pub async fn put_system(
    state: web::Data<AppState>,
    admin: Admin,
    doc_id: web::Path<String>,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let bytes = body.bytes().await?;
    if bytes.len() > MAX_SYSTEM_DOC_BYTES {
        return Err(AppError::PayloadTooLarge);
    }
    let value: serde_json::Value = super::json::parse(&bytes)?;
    let serde_json::Value::Object(doc) = value else {
        return Err(AppError::validation(
            "",
            "type",
            "the document must be a JSON object",
        ));
    };
    // The templates are served to every user as personas: held to their shape.
    if doc_id.as_str() == TEMPLATES_DOC {
        let templates: PersonaTemplates = super::json::parse(&bytes)?;
        templates
            .validate()
            .map_err(|e| AppError::Validation(super::json::flatten(&e)))?;
    }
    let v = state
        .admin
        .put_system(&admin.uid, &doc_id, &doc, &request_id::current())
        .await?;
    Ok(etag::ok(&v.item, v.version))
}
