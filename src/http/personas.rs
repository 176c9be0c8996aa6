//! `/v1/personas`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::created::{Created, IdempotencyKey, idempotent};
use super::json::JsonBody;
use super::principal::{Permission, Principal};
use super::routes;
use super::{etag, list};
use crate::domain::pagination::PageRequest;
use crate::domain::personas::{NewPersona, Persona, PersonaPatch, Sort};
use crate::domain::versioned::Versioned;
use crate::error::{AppResult, Problem};
use crate::state::AppState;

pub fn resources() -> Vec<routes::Routes> {
    let (read, write) = (
        Access::Permission(Permission::PersonasRead),
        Access::Permission(Permission::PersonasWrite),
    );
    vec![
        routes::resource("/v1/personas")
            .get(read, list_personas)
            .post(write, create),
        routes::resource("/v1/personas/templates").get(read, templates),
        routes::resource("/v1/personas/{id}")
            .get(read, get)
            .patch(write, patch)
            .delete(write, delete),
    ]
}

fn one(v: &Versioned<Persona>) -> HttpResponse {
    etag::ok(&v.item, v.version)
}

/// Create a persona (at most 100 per user). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/personas", tag = "personas", operation_id = "createPersona",
    request_body = NewPersona, params(IdempotencyKey),
    responses((status = 201, description = "Created", body = Persona, headers(("Location" = String), ("ETag" = String))),
        (status = 422, description = "`validation_failed` (the 101st persona: `code: limit`) or `idempotency_mismatch`", body = Problem)),
    security(("bearer" = [])))]
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
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (bound to the sort).
    cursor: Option<String>,
    /// `recent` (default) or `mostUsed`.
    #[param(inline)]
    sort: Option<Sort>,
}

/// Your personas, `recent` first or `mostUsed` first.
#[utoipa::path(get, path = "/v1/personas", tag = "personas", operation_id = "listPersonas", params(ListParams),
    responses((status = 200, description = "One page", body = list::ListPage<Persona>)),
    security(("bearer" = [])))]
pub async fn list_personas(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<ListParams>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    let q = q.into_inner();
    let sort = q.sort.unwrap_or(Sort::Recent);
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(list::page_response(
        &*state.personas.list(&principal.uid, sort, &page).await?,
    ))
}

/// `{items}` of the templates endpoint.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Templates {
    /// Persona-shaped objects.
    #[schema(value_type = Vec<crate::domain::persona_templates::PersonaTemplate>)]
    items: Vec<serde_json::Value>,
}

/// The built-in persona templates.
#[utoipa::path(get, path = "/v1/personas/templates", tag = "personas", operation_id = "listPersonaTemplates",
    responses((status = 200, description = "The templates", body = Templates)), security(("bearer" = [])))]
pub async fn templates(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    Ok(HttpResponse::Ok().json(Templates {
        items: state.personas.templates().await?,
    }))
}

/// One persona.
#[utoipa::path(get, path = "/v1/personas/{id}", tag = "personas", operation_id = "getPersona",
    responses((status = 200, description = "The persona", body = Persona, headers(("ETag" = String)))),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(Permission::PersonasRead)?;
    Ok(one(&state.personas.get(&principal.uid, &id).await?))
}

/// Partial update; `isDefault: true` clears it on your other personas in the same transaction.
#[utoipa::path(patch, path = "/v1/personas/{id}", tag = "personas", operation_id = "patchPersona",
    request_body = PersonaPatch, params(etag::IfMatchHeader),
    responses((status = 200, description = "The persona as it is now", body = Persona, headers(("ETag" = String))),
        (status = 412, description = "`precondition_failed`: If-Match does not match", body = Problem)),
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

/// Delete a persona.
#[utoipa::path(delete, path = "/v1/personas/{id}", tag = "personas", operation_id = "deletePersona",
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
    principal.require(Permission::PersonasWrite)?;
    state
        .personas
        .delete(&principal.uid, &id, etag::if_match(&req)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
