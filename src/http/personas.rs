//! `/v1/personas`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::created::{Created, idempotent};
use super::json::JsonBody;
use super::principal::{Permission, Principal};
use super::{etag, list};
use crate::domain::pagination::PageRequest;
use crate::domain::personas::{NewPersona, Persona, PersonaPatch, Sort};
use crate::domain::versioned::Versioned;
use crate::error::{AppResult, Problem};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/personas").get(list_personas).post(create))
        .service(web::resource("/v1/personas/templates").get(templates))
        .service(
            web::resource("/v1/personas/{id}")
                .get(get)
                .patch(patch)
                .delete(delete),
        );
}

fn one(v: &Versioned<Persona>) -> HttpResponse {
    etag::ok(&v.item, v.version)
}

/// Create a persona (at most 100 per user). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/personas", tag = "personas", request_body = NewPersona,
    responses((status = 201, body = Persona), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasWrite)?;
    let new: NewPersona = body.validated().await?;
    let (st, uid, input) = (state.clone(), principal.uid.clone(), new.clone());
    idempotent(
        &state,
        &req,
        &principal.uid,
        &principal.idempotency_scope(),
        &new,
        created,
        move |record| async move { st.personas.create(&uid, input, record).await },
    )
    .await
}

fn created(p: &Persona) -> AppResult<Created> {
    Ok(Created::new(StatusCode::CREATED, p)?.location(format!("/v1/personas/{}", p.persona_id)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    /// `recent` (default) or `mostUsed`.
    sort: Option<String>,
}

/// Your personas, `recent` first or `mostUsed` first.
#[utoipa::path(get, path = "/v1/personas", tag = "personas", params(ListParams),
    responses((status = 200, description = "{items: Persona[], nextCursor}"), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_personas(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<ListParams>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    let q = q.into_inner();
    let sort = Sort::parse(q.sort.as_deref())?;
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(
        &*state.personas.list(&principal.uid, sort, &page).await?,
    ))
}

/// The built-in persona templates.
#[utoipa::path(get, path = "/v1/personas/templates", tag = "personas",
    responses((status = 200, description = "{items: [...]}")), security(("bearer" = [])))]
pub async fn templates(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    Ok(HttpResponse::Ok().json(json!({ "items": state.personas.templates().await? })))
}

#[utoipa::path(get, path = "/v1/personas/{id}", tag = "personas",
    responses((status = 200, body = Persona), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    Ok(one(&state.personas.get(&principal.uid, &id).await?))
}

/// Partial update; `isDefault: true` clears it on your other personas in the same transaction.
#[utoipa::path(patch, path = "/v1/personas/{id}", tag = "personas", request_body = PersonaPatch,
    responses((status = 200, body = Persona), (status = 404, body = Problem), (status = 412, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: JsonBody,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasWrite)?;
    let patch: PersonaPatch = body.validated().await?;
    let if_match = etag::if_match(&req)?;
    Ok(one(&state
        .personas
        .patch(&principal.uid, &id, patch, if_match)
        .await?))
}

#[utoipa::path(delete, path = "/v1/personas/{id}", tag = "personas",
    responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasWrite)?;
    state
        .personas
        .delete(&principal.uid, &id, etag::if_match(&req)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
