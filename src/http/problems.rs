//! Makes the framework's own errors (unknown route, wrong method, bad query or
//! path) speak the same problem+json as everything else.

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, ResponseError, error, web};

use crate::error::AppError;

/// Rewrites bare 404/405 responses produced by routing into problem+json.
pub fn error_handlers<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new()
        .handler(actix_web::http::StatusCode::NOT_FOUND, |res| {
            rewrite(res, AppError::NotFound)
        })
        .handler(actix_web::http::StatusCode::METHOD_NOT_ALLOWED, |res| {
            rewrite(res, AppError::MethodNotAllowed)
        })
}

/// The CORS middleware answers a refused preflight (origin, method or header
/// not allowed) with a plain-text 400; outside it, this makes that a 400
/// `bad_request` problem+json too. Every other 400 already is one and is kept.
pub fn cors_rejections<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(actix_web::http::StatusCode::BAD_REQUEST, |res| {
        rewrite(
            res,
            AppError::BadRequest(
                "cross-origin request refused: origin, method or headers not allowed".into(),
            ),
        )
    })
}

fn rewrite<B: 'static>(res: ServiceResponse<B>, err: AppError) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, _) = res.into_parts();
    let new = err
        .error_response()
        .map_body(|_, b| EitherBody::<B, BoxBody>::right(b));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, new)))
}

/// Query-string errors are 400 `bad_request`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e: error::QueryPayloadError, _req: &HttpRequest| {
        AppError::BadRequest(format!("invalid query parameters: {e}")).into()
    })
}

/// Malformed path segments are 404: nothing lives there.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_e, _req| AppError::NotFound.into())
}
