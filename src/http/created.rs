//! Responses of creating POSTs, with `Idempotency-Key` handling: one place so
//! every creating endpoint replays, refuses mismatches and reports conflicts alike.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::domain::idempotency::{self, Claim, StoredResponse};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::deadline::{self, Deadline};

pub const HEADER: &str = "idempotency-key";

/// What a creating handler produced.
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

/// Runs `create` once per `Idempotency-Key` (when the request has one).
/// `request` is the parsed body: the same key with another body is 422.
///
/// With a key, the creation and the recording of its response run in a task of
/// their own: a client that disconnects (or a request that is cancelled) cannot
/// leave a created resource whose key still looks unfinished, which would let a
/// retry create it again once the claim's lease ran out.
pub async fn idempotent<F>(
    state: &AppState,
    req: &HttpRequest,
    uid: &str,
    principal: &str,
    request: &impl Serialize,
    create: F,
) -> AppResult<HttpResponse>
where
    F: Future<Output = AppResult<Created>> + 'static,
{
    let Some(key) = req.headers().get(HEADER) else {
        let c = create.await?;
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
        Claim::Replay(r) => Ok(Created::respond(
            r.status,
            r.body,
            r.location.as_deref(),
            r.etag.as_deref(),
            true,
        )),
        Claim::Fresh(path) => {
            let store = state.store.clone();
            // The create carries the request's deadline; recording its outcome gets
            // a fresh bound of its own, so a claim is settled even when the create
            // ended at the deadline.
            let request_deadline = Deadline::current();
            let settle_deadline = request_deadline.map(|d| d.renewed());
            let task = actix_web::rt::spawn(async move {
                match deadline::carry(request_deadline, create).await {
                    Ok(c) => {
                        let stored = StoredResponse {
                            status: c.status.as_u16(),
                            body: c.replay_body.as_ref().unwrap_or(&c.body).to_string(),
                            location: c.location.clone(),
                            etag: c.etag.clone(),
                        };
                        // The resource exists now; failing to record the response must not fail the request.
                        let finished = deadline::carry(
                            settle_deadline,
                            idempotency::finish(store.as_ref(), path, &stored),
                        );
                        if let Err(e) = finished.await {
                            tracing::warn!(error = %e, "could not record an idempotent response");
                        }
                        Ok(c)
                    }
                    Err(e) => {
                        deadline::carry(settle_deadline, idempotency::release(store.as_ref(), path)).await;
                        Err(e)
                    }
                }
            });
            // The request waits until its deadline; the task goes on settling the claim.
            let c = deadline::within(task)
                .await
                .ok_or_else(|| AppError::Unavailable {
                    retry_after_secs: 1,
                    cause: "an idempotent create did not finish within the request's deadline".into(),
                })?
                .map_err(|e| AppError::internal(format!("idempotent create task failed: {e}")))??;
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
