//! GDPR data-subject rights: erasure (`DELETE /v1/me`, `DELETE /v1/admin/users/{uid}`).

use actix_web::{HttpResponse, web};

use super::principal::{Admin, IdTokenPrincipal};
use super::request_id;
use crate::domain::erasure::Erased;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Erase your account (Art. 17): every document under your user document
/// (known or not), share links, analytics pseudonymized, caches; older tokens
/// are then 401 `account_deleted`. Idempotent and resumable: calling again
/// finishes an interrupted erasure, and a finished one answers zero counts.
#[utoipa::path(delete, path = "/v1/me", tag = "gdpr", operation_id = "eraseMe",
    responses((status = 200, description = "Erased (counts of what this call deleted)", body = Erased)),
    security(("bearer" = [])))]
pub async fn erase_me(state: web::Data<AppState>, principal: IdTokenPrincipal) -> AppResult<HttpResponse> {
    run(&state, principal.uid.clone(), None).await
}

/// Erase a user on their behalf (the same as `DELETE /v1/me`).
#[utoipa::path(delete, path = "/v1/admin/users/{uid}", tag = "admin", operation_id = "adminEraseUser",
    responses((status = 200, description = "Erased (counts of what this call deleted)", body = Erased)),
    security(("bearer" = [])))]
pub async fn erase_user(
    state: web::Data<AppState>,
    admin: Admin,
    uid: web::Path<String>,
) -> AppResult<HttpResponse> {
    run(&state, uid.into_inner(), Some(admin.uid.clone())).await
}

/// Runs the erasure in a task of its own: a client that disconnects does not
/// stop it half-way (calling again would finish it, but why make them).
async fn run(state: &AppState, uid: String, actor: Option<String>) -> AppResult<HttpResponse> {
    let erasure = state.erasure.clone();
    let request_id = request_id::current();
    let erased = tokio::spawn(async move { erasure.erase(&uid, actor.as_deref(), &request_id).await })
        .await
        .map_err(AppError::internal)??;
    Ok(HttpResponse::Ok().json(erased))
}
