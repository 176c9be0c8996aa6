//! GDPR data-subject rights: erasure (`DELETE /v1/me`, `DELETE /v1/admin/users/{uid}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::access::Access;
use super::routes;

use super::principal::{Admin, Credential, IdTokenPrincipal, Permission, Principal};
use super::request_id;
use crate::domain::erasure::Erased;
use crate::domain::{audit, export as dump};
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
    let Credential::IdToken { auth_time } = principal.credential else {
        return Err(super::principal::api_key_refused());
    };
    let (erasure, uid, request_id) = (
        state.erasure.clone(),
        principal.uid.clone(),
        request_id::current(),
    );
    run(async move { erasure.erase_self(&uid, auth_time, &request_id).await }).await
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
    let (erasure, actor, request_id) = (state.erasure.clone(), admin.uid.clone(), request_id::current());
    run(async move { erasure.erase(&uid, &actor, &request_id).await }).await
}

/// Runs the erasure in a task of its own: a client that disconnects does not
/// stop it half-way (calling again would finish it, but why make them).
async fn run(erasure: impl Future<Output = AppResult<Erased>> + Send + 'static) -> AppResult<HttpResponse> {
    let erased = tokio::spawn(erasure).await.map_err(AppError::internal)??;
    Ok(HttpResponse::Ok().json(erased))
}

pub fn resources() -> Vec<routes::Routes> {
    vec![routes::resource("/v1/me/export").get(Access::Permission(Permission::ExportRead), export)]
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `json` (default): one JSON document; `csv`: a ZIP of one CSV file per
    /// section.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
}

/// Everything held about you (Art. 15/20), streamed as an attachment.
///
/// `format=json` (default): one JSON document `{exportedAt, userData, analysisHistory, customPersonas,
/// apiKeys (no hashes), usageAnalytics, auditTrail}`. `format=csv`: a ZIP
/// holding `profile.csv`, `analyses.csv`, `personas.csv`, `api_keys.csv`,
/// `usage_analytics.csv` and `audit_trail.csv` (RFC 4180; nested fields as
/// dotted column names, arrays as JSON in one cell). Its own rate limit
/// (`FUNNELFLOW_EXPORT_RATE_LIMIT`); audited.
#[utoipa::path(get, path = "/v1/me/export", tag = "gdpr", operation_id = "exportMe", params(ExportParams),
    responses((status = 200, description = "The export, as an attachment",
        content((Object = "application/json"), ("application/zip")),
        headers(("Content-Disposition" = String)))),
    security(("bearer" = [])))]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<ExportParams>,
) -> AppResult<HttpResponse> {
    let format = match q.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(AppError::BadRequest("format must be `json` or `csv`".into())),
    };
    // Held until the export ends (or stops: `export::STALL`); taken first, so
    // that a busy instance costs the caller no export of their quota.
    let permit = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Unavailable {
            retry_after_secs: 5,
            cause: "every export slot of this instance is in use".into(),
        })?;
    let decision = state.export_limiter.check(&principal.uid).await;
    if !decision.allowed {
        return Err(AppError::RateLimited {
            retry_after_secs: decision.reset_secs,
        });
    }
    let profile =
        serde_json::to_value(principal.account.profile.for_response()).map_err(AppError::internal)?;
    let (name, content_type, file) = match format {
        Format::Json => ("json", "application/json", "funnelflow-export.json"),
        Format::Csv => ("csv", "application/zip", "funnelflow-export.zip"),
    };
    state
        .store
        .commit(vec![audit::record(
            &principal.uid,
            "user.export",
            &format!("users/{}", principal.uid),
            &request_id::current(),
            serde_json::json!({"format": name}),
        )?])
        .await?;
    // A small channel: the writer waits for the client, so memory stays flat.
    let (tx, rx) = mpsc::channel(4);
    let (store, uid) = (state.store.clone(), principal.uid.clone());
    // Set once everything is written: a body that ends without it is cut off
    // (the connection is aborted), never a short file that looks whole.
    let whole = Arc::new(AtomicBool::new(false));
    let written_whole = whole.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let errors = tx.clone();
        let written = match format {
            Format::Json => dump::write_json(store, uid, profile, tx).await,
            Format::Csv => dump::write_zip(store, uid, profile, tx).await,
        };
        match written {
            Ok(()) => written_whole.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::warn!(error = %e, "export stopped");
                let _ = errors.try_send(Err(e));
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(futures::stream::unfold(Some(rx), move |rx| {
            let whole = whole.clone();
            async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(item) => Some((item, Some(rx))),
                    None if whole.load(Ordering::SeqCst) => None,
                    None => Some((Err(AppError::internal("the export was cut short")), None)),
                }
            }
        })))
}
