//! Responses of creating POSTs, with `Idempotency-Key` handling: one place so
//! every creating endpoint replays, refuses mismatches and reports conflicts alike.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use tracing::Instrument;

use super::{etag, request_id};
use crate::domain::idempotency::{self, Claim, Recorder, StoredResponse};
use crate::domain::versioned::Versioned;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::deadline::{self, Deadline};

pub const HEADER: &str = "idempotency-key";

/// What a creating handler answers (its ETag is set from the created item's version).
pub struct Created {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub location: Option<String>,
    pub etag: Option<String>,
    /// The body to replay instead of `body` (e.g. without a one-time secret).
    pub replay_body: Option<serde_json::Value>,
}

impl Created {
    pub fn new(status: StatusCode, body: &impl Serialize) -> AppResult<Self> {
        Ok(Self {
            status,
            body: serde_json::to_value(body).map_err(AppError::internal)?,
            location: None,
            etag: None,
            replay_body: None,
        })
    }
    pub fn location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
    pub fn etag(mut self, etag: String) -> Self {
        self.etag = Some(etag);
        self
    }

    /// The response a key replays.
    fn stored(self) -> StoredResponse {
        StoredResponse {
            status: self.status.as_u16(),
            body: self.replay_body.as_ref().unwrap_or(&self.body).to_string(),
            location: self.location,
            etag: self.etag,
            version: None,
        }
    }

    fn respond(
        status: u16,
        body: String,
        location: Option<&str>,
        etag: Option<&str>,
        replayed: bool,
    ) -> HttpResponse {
        let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
        res.content_type("application/json");
        if let Some(l) = location {
            res.insert_header((header::LOCATION, l));
        }
        if let Some(e) = etag {
            res.insert_header((header::ETAG, e));
        }
        if replayed {
            res.insert_header(("idempotent-replayed", "true"));
        }
        res.body(body)
    }
}

/// The `Idempotency-Key` header as documented; `idempotency::validate_key` enforces it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the header is read by `idempotent`
pub struct IdempotencyKey {
    /// 1..255 visible ASCII characters, per principal and endpoint: the same key
    /// with the same body within 24 h replays the first response.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// Runs `create` once per `Idempotency-Key` (when the request has one) and
/// answers with `respond(item)` and the item's ETag. `request` is the parsed
/// body: the same key with another body is 422.
///
/// With a key, `create` gets a [`Recorder`] to commit the response with the
/// resource, in one transaction: a create either happened and its key replays
/// it, or neither (a create that ignores the recorder has its response recorded
/// right after). It runs in a task of its own, so a client that disconnects (or
/// a request that is cancelled) cannot stop it between the create and the
/// release of a failed claim; the task keeps the request's span and request id.
pub async fn idempotent<T, F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    uid: &str,
    principal: &str,
    request: &impl Serialize,
    respond: fn(&T) -> AppResult<Created>,
    create: F,
) -> AppResult<HttpResponse>
where
    T: 'static,
    F: FnOnce(Option<Arc<Recorder<T>>>) -> Fut,
    Fut: Future<Output = AppResult<Versioned<T>>> + 'static,
{
    let answer =
        move |v: &Versioned<T>| -> AppResult<Created> { Ok(respond(&v.item)?.etag(etag::of(v.version))) };
    let Some(key) = req.headers().get(HEADER) else {
        let c = answer(&create(None).await?)?;
        return Ok(Created::respond(
            c.status.as_u16(),
            c.body.to_string(),
            c.location.as_deref(),
            c.etag.as_deref(),
            false,
        ));
    };
    let key = key
        .to_str()
        .map_err(|_| AppError::BadRequest("Idempotency-Key must be visible ASCII".into()))?;
    idempotency::validate_key(key)?;
    let endpoint = format!("{} {}", req.method(), req.match_pattern().unwrap_or_default());
    let hash = idempotency::request_hash(&serde_json::to_value(request).map_err(AppError::internal)?);
    let path = idempotency::record_path(uid, principal, &endpoint, key)?;
    match idempotency::claim(state.store.as_ref(), path, &endpoint, &hash).await? {
        Claim::Replay(r) => {
            let etag = r.etag.clone().or_else(|| r.version.map(etag::of));
            Ok(Created::respond(
                r.status,
                r.body,
                r.location.as_deref(),
                etag.as_deref(),
                true,
            ))
        }
        Claim::Fresh(lease) => {
            let store = state.store.clone();
            // The create carries the request's deadline; settling the claim gets a
            // fresh bound of its own, so a claim is settled even when the create
            // ended at the deadline.
            let request_deadline = Deadline::current();
            let settle_deadline = request_deadline.map(|d| d.renewed());
            let recorder = Recorder::new(lease.clone(), move |item: &T| Ok(respond(item)?.stored()));
            let created = create(Some(recorder.clone()));
            let task = async move {
                match deadline::carry(request_deadline, created).await {
                    Ok(v) => {
                        if !recorder.was_used() {
                            let stored = answer(&v)?.stored();
                            // The resource exists now; failing to record the response must not fail the request.
                            let finished = deadline::carry(
                                settle_deadline,
                                idempotency::finish(store.as_ref(), &lease, &stored),
                            );
                            if let Err(e) = finished.await {
                                tracing::warn!(error = %e, "could not record an idempotent response");
                            }
                        }
                        Ok(v)
                    }
                    Err(e) => {
                        deadline::carry(settle_deadline, idempotency::release(store.as_ref(), &lease)).await;
                        Err(e)
                    }
                }
            };
            // The request waits until its deadline; the task goes on settling the claim.
            let v = deadline::within(detached(task))
                .await
                .ok_or_else(|| AppError::Unavailable {
                    retry_after_secs: 1,
                    cause: "an idempotent create did not finish within the request's deadline".into(),
                })?
                .map_err(|e| AppError::internal(format!("idempotent create task failed: {e}")))??;
            let c = answer(&v)?;
            Ok(Created::respond(
                c.status.as_u16(),
                c.body.to_string(),
                c.location.as_deref(),
                c.etag.as_deref(),
                false,
            ))
        }
    }
}

/// Runs `task` to completion whatever happens to the request, keeping the
/// request's span and request id for its logs.
fn detached<T: 'static>(task: impl Future<Output = T> + 'static) -> actix_web::rt::task::JoinHandle<T> {
    actix_web::rt::spawn(request_id::carry(task).instrument(tracing::Span::current()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_detached_task_keeps_the_request_span() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = tracing::info_span!("request", request_id = "r-1");
        let inner = async { detached(async { tracing::Span::current().metadata().map(|m| m.name()) }).await }
            .instrument(span)
            .await;
        assert_eq!(inner.ok().flatten(), Some("request"));
    }
}
