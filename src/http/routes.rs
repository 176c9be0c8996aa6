//! Route registration that knows each resource's methods, so a request with
//! any other method is 405 with an `Allow` header listing them (RFC 9110
//! §15.5.6) from the same list the routes were made of.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, ResponseError, web};

use crate::error::AppError;

/// `web::resource(path)` collecting its methods; finish with [`Routes::build`].
pub struct Routes {
    resource: Resource,
    allow: Vec<Method>,
}

pub fn resource(path: &str) -> Routes {
    Routes {
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

impl Routes {
    fn route<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.allow.push(method);
        self
    }

    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, handler)
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, handler)
    }

    pub fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PATCH, handler)
    }

    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::DELETE, handler)
    }

    /// The resource, answering 405 + `Allow` to every other method.
    pub fn build(self) -> impl HttpServiceFactory {
        let allow = self
            .allow
            .iter()
            .map(Method::as_str)
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
