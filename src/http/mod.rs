//! The HTTP layer: routes, extractors, middleware. Handlers stay thin: parse,
//! call a domain service, shape the response.

pub mod analyses;
pub mod created;
pub mod deadline;
pub mod etag;
pub mod health;
pub mod json;
pub mod list;
pub mod me;
pub mod observe;
pub mod openapi;
pub mod personas;
pub mod principal;
pub mod problems;
pub mod request_id;
pub mod routes;
pub mod strict;

use actix_web::web;

/// Every route of the service; tests mount exactly this.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(problems::query_config())
        .app_data(problems::path_config())
        .configure(health::configure)
        .configure(me::configure)
        .configure(analyses::configure)
        .configure(personas::configure);
}

pub use openapi::ApiDoc;
