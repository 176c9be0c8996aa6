//! `X-Request-Id`: kept when the client sent a sane one, generated otherwise;
//! echoed on every response, recorded on the request's span, and available to
//! error bodies through a task-local.

use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use regex::Regex;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

static SANE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._:-]{1,128}$").ok());

/// The request id, as stored in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The current request's id (for error bodies); `-` outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "-".into())
}

/// Runs `fut` (e.g. a spawned task) with the current request's id.
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(current(), fut)
}

/// Keeps `candidate` if it matches `^[A-Za-z0-9._:-]{1,128}$`, else makes a new one.
pub fn sanitize(candidate: Option<&str>) -> String {
    match (candidate, SANE.as_ref()) {
        (Some(c), Some(re)) if re.is_match(c) => c.to_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = sanitize(req.headers().get(HEADER).and_then(|v| v.to_str().ok()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = REQUEST_ID.scope(id.clone(), next.call(req)).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static(HEADER), v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        assert_eq!(sanitize(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in ["", "has space", "semi;colon", &"a".repeat(129), "ünï"] {
            assert_ne!(sanitize(Some(bad)), bad);
        }
        assert_eq!(sanitize(None).len(), 36);
    }

    #[actix_web::test]
    async fn a_spawned_task_sees_the_request_id_only_when_carried() {
        let spawn = |carried: bool| {
            REQUEST_ID.scope("r-1".into(), async move {
                if carried {
                    actix_web::rt::spawn(carry(async { current() })).await
                } else {
                    actix_web::rt::spawn(async { current() }).await
                }
            })
        };
        assert_eq!(spawn(true).await.ok().as_deref(), Some("r-1"));
        assert_eq!(spawn(false).await.ok().as_deref(), Some("-"));
    }
}
