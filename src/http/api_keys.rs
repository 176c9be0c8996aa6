//! `/v1/api-keys`: the caller's API keys (ID token only).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::Access::IdTokenOnly;
use super::created::{Created, IdempotencyKey, idempotent};
use super::json::JsonBody;
use super::principal::IdTokenPrincipal;
use super::{etag, list, routes};
use crate::domain::api_keys::{ApiKey, CreatedKey, NewApiKey};
use crate::domain::pagination::PageRequest;
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    vec![
        routes::resource("/v1/api-keys")
            .get(IdTokenOnly, list_keys)
            .post(IdTokenOnly, create),
        routes::resource("/v1/api-keys/{id}")
            .get(IdTokenOnly, get)
            .delete(IdTokenOnly, revoke),
    ]
}

/// Create an API key: the answer holds the key string (`key`) this once only;
/// an idempotent replay answers the same key without it. At most 25 active keys.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", operation_id = "createApiKey",
    request_body = NewApiKey, params(IdempotencyKey),
    responses((status = 201, description = "Created; `key` is the secret, shown once", body = CreatedKey,
            headers(("Location" = String), ("ETag" = String))),
        (status = 422, description = "`validation_failed` (`expiresAt` in the past; the 26th active key: `code: limit`) or `idempotency_mismatch`", body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    principal: IdTokenPrincipal,
    req: HttpRequest,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    let new: NewApiKey = body.validated().await?;
    let (st, uid, input) = (state.clone(), principal.uid.clone(), new.clone());
    idempotent(
        &state,
        &req,
        &principal.uid,
        &principal.idempotency_scope(),
        &new,
        created,
        move |record| async move { st.api_keys.create(&uid, input, record).await },
    )
    .await
}

/// The answer to a create; the replayable copy holds no secret (it is never stored).
fn created(k: &CreatedKey) -> AppResult<Created> {
    let mut c = Created::new(StatusCode::CREATED, k)?.location(format!("/v1/api-keys/{}", k.key_id));
    c.replay_body = Some(serde_json::to_value(k.without_secret()).map_err(AppError::internal)?);
    Ok(c)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Your API keys, newest first; revoked keys stay listed with `isActive: false`.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", operation_id = "listApiKeys", params(ListParams),
    responses((status = 200, description = "One page", body = list::ListPage<ApiKey>)),
    security(("bearer" = [])))]
pub async fn list_keys(
    state: web::Data<AppState>,
    principal: IdTokenPrincipal,
    q: web::Query<ListParams>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(
        &state.api_keys.list(&principal.uid, &page).await?,
    ))
}

/// Revoke an API key: refused from the very next request on.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "revokeApiKey",
    params(etag::IfMatchHeader),
    responses((status = 204, description = "Revoked (the key stays listed, inactive)"),
        (status = 412, description = "`precondition_failed`: If-Match does not match", body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    principal: IdTokenPrincipal,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    state
        .api_keys
        .revoke(&principal.uid, &id, etag::if_match(&req)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One of your API keys (never its secret or hash).
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "getApiKey",
    responses((status = 200, description = "The key", body = ApiKey, headers(("ETag" = String)))),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    principal: IdTokenPrincipal,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let v = state.api_keys.get(&principal.uid, &id).await?;
    Ok(etag::ok(&v.item, v.version))
}
