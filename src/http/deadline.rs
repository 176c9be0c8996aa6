//! Gives every request its one store deadline (`store::deadline`): all of the
//! request's store calls, retries and backoff included, end by it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::state::AppState;
use crate::store::deadline;

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let budget = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.config.store_timeout);
    match budget {
        Some(budget) => deadline::per_request(budget, next.call(req)).await,
        None => next.call(req).await,
    }
}
