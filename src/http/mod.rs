//! The HTTP layer: routes, extractors, middleware. Handlers stay thin: parse,
//! call a domain service, shape the response.

pub mod access;
pub mod admin;
pub mod analyses;
pub mod api_keys;
pub mod created;
pub mod deadline;
pub mod etag;
pub mod events;
pub mod gdpr;
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

/// Every resource of the service, each route with its declared access.
fn resources() -> Vec<routes::Routes> {
    let mut all = health::resources();
    all.extend(me::resources());
    all.extend(analyses::resources());
    all.extend(personas::resources());
    all.extend(api_keys::resources());
    all.extend(admin::resources());
    all.extend(events::resources());
    all.extend(gdpr::resources());
    all
}

/// Every route of the service; tests mount exactly this.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(problems::query_config())
        .app_data(problems::path_config());
    for r in resources() {
        cfg.service(r.build());
    }
}

/// Every registered route (path, method) with the access it declared.
pub fn route_table() -> Vec<routes::RouteInfo> {
    resources().iter().flat_map(routes::Routes::table).collect()
}

pub use openapi::ApiDoc;
