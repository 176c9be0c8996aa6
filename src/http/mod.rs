//! The HTTP layer: routes, extractors, middleware. Handlers stay thin: parse,
//! call a domain service, shape the response.

pub mod analyses;
pub mod created;
pub mod etag;
pub mod health;
pub mod json;
pub mod list;
pub mod me;
pub mod observe;
pub mod personas;
pub mod principal;
pub mod problems;
pub mod request_id;
pub mod routes;
pub mod strict;

use actix_web::web;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Every route of the service; tests mount exactly this.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(problems::query_config())
        .app_data(problems::path_config())
        .configure(health::configure)
        .configure(me::configure)
        .configure(analyses::configure)
        .configure(personas::configure);
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Funnel Flow API", version = "1.0.0",
        description = include_str!("../../docs/api-decisions.md")),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        me::get_me, me::patch_me, me::get_subscription,
        analyses::create, analyses::list_analyses, analyses::get, analyses::complete, analyses::delete,
        analyses::batch_get, analyses::trends, analyses::share, analyses::unshare, analyses::shared,
        personas::create, personas::list_personas, personas::templates, personas::get, personas::patch,
        personas::delete,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError, principal::Permission)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Firebase ID token, or an API key `ffk_…` (also accepted as X-API-Key)",
                    ))
                    .build(),
            ),
        );
    }
}
