//! Route registration. Every route declares who may call it ([`Access`]): the
//! builder takes no handler without one, and a middleware on the route enforces
//! it before the handler (or its body parsing) runs, so no handler can forget
//! the check. Each resource also knows its methods, so a request with any other
//! method is 405 with an `Allow` header listing them (RFC 9110 §15.5.6).
//! [`Routes::table`] lists what was declared: the OpenAPI document describes
//! each route's access from it and a test walks it.

use actix_web::body::BoxBody;
use actix_web::dev::{HttpServiceFactory, ServiceRequest};
use actix_web::http::{Method, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, ResponseError, web};

use super::access::{self, Access};
use crate::error::AppError;

/// `web::resource(path)` collecting its methods; finish with [`Routes::build`].
pub struct Routes {
    path: String,
    resource: Resource,
    allow: Vec<(Method, Access)>,
}

pub fn resource(path: &str) -> Routes {
    Routes {
        path: path.to_owned(),
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

/// One declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub path: String,
    pub method: Method,
    pub access: Access,
}

impl Routes {
    fn route<F, Args>(mut self, method: Method, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::method(method.clone()).to(handler).wrap(from_fn(
            move |req: ServiceRequest, next: Next<BoxBody>| async move {
                match access::enforce(access, req.request()).await {
                    Ok(()) => next.call(req).await,
                    // An answer, not an error: the outer layers add RateLimit fields to it.
                    Err(e) => Ok(req.error_response(e)),
                }
            },
        ));
        self.resource = self.resource.route(route);
        self.allow.push((method, access));
        self
    }

    pub fn get<F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, access, handler)
    }

    pub fn post<F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, access, handler)
    }

    pub fn put<F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PUT, access, handler)
    }

    pub fn patch<F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PATCH, access, handler)
    }

    pub fn delete<F, Args>(self, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::DELETE, access, handler)
    }

    /// The routes declared on this resource.
    pub fn table(&self) -> Vec<RouteInfo> {
        self.allow
            .iter()
            .map(|(method, access)| RouteInfo {
                path: self.path.clone(),
                method: method.clone(),
                access: *access,
            })
            .collect()
    }

    /// The resource, answering 405 + `Allow` to every other method.
    pub fn build(self) -> impl HttpServiceFactory {
        let allow = self
            .allow
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        }))
    }
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut res = AppError::MethodNotAllowed.error_response();
    if let Ok(v) = header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}
