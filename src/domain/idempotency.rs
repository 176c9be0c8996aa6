//! `Idempotency-Key` for creating POSTs. A record per (principal, endpoint,
//! key) lives under the user (`users/{uid}/idempotency/{hash}`), so erasure
//! finds it: the first request claims it (in flight), finishes it with the
//! response, and a retry within 24 h gets that response again.

use std::time::Duration;

use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::store::{self, DocPath, Precondition, Store, Write};

pub const COLLECTION: &str = "idempotency";
/// How long a key's response is replayed.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A claim older than this is considered abandoned (its process died) and may
/// be taken over. Far longer than any create can take (store timeouts and
/// transaction retries included); until then retries get 409.
const LEASE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    pub status: u16,
    /// The JSON body, as sent.
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    request_hash: String,
    endpoint: String,
    created_at: FirestoreTimestamp,
    /// For a TTL policy on the collection group (see deploy/README.md).
    expires_at: FirestoreTimestamp,
    lease_until: FirestoreTimestamp,
    response: Option<StoredResponse>,
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: run the request, then `finish` (or `release` on failure).
    Fresh(DocPath),
    /// Seen before with the same body: send this again.
    Replay(StoredResponse),
}

/// Checks the header value: 1..=255 visible ASCII characters.
pub fn validate_key(key: &str) -> AppResult<()> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ))
    }
}

/// A stable hash of a request body (its canonical JSON form).
pub fn request_hash(body: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// `principal` is the uid, or `uid/keyId` for an API key: keys are per principal.
pub fn record_path(uid: &str, principal: &str, endpoint: &str, key: &str) -> AppResult<DocPath> {
    let id = hex::encode(Sha256::digest(
        format!("{principal}\n{endpoint}\n{key}").as_bytes(),
    ));
    Ok(DocPath::root(crate::domain::users::COLLECTION, uid)?.child(COLLECTION, &id)?)
}

/// Claims `path` for a request with `hash`, or says what to answer instead.
pub async fn claim(store: &dyn Store, path: DocPath, endpoint: &str, hash: &str) -> AppResult<Claim> {
    for _ in 0..5 {
        let now = store::value::now();
        let existing = store.get(&path).await?;
        let precondition = match &existing {
            None => Precondition::Exists(false),
            Some(doc) => {
                let rec: Record = doc.decode()?;
                let expired = rec.expires_at.0 <= now;
                let abandoned = rec.response.is_none() && rec.lease_until.0 <= now;
                if !expired && !abandoned {
                    if rec.request_hash != hash {
                        return Err(AppError::IdempotencyMismatch(
                            "this Idempotency-Key was used with a different request body".into(),
                        ));
                    }
                    return match rec.response {
                        Some(r) => Ok(Claim::Replay(r)),
                        None => Err(AppError::Conflict(
                            "a request with this Idempotency-Key is still in progress".into(),
                        )),
                    };
                }
                Precondition::UpdateTime(doc.update_time)
            }
        };
        let rec = Record {
            request_hash: hash.to_owned(),
            endpoint: endpoint.to_owned(),
            created_at: FirestoreTimestamp(now),
            expires_at: FirestoreTimestamp(now + RETENTION),
            lease_until: FirestoreTimestamp(now + LEASE),
            response: None,
        };
        let write = Write::set(path.clone(), store::encode(&rec)?).precondition(precondition);
        match store.commit(vec![write]).await {
            Ok(_) => return Ok(Claim::Fresh(path)),
            // Someone claimed it between our read and write: decide again.
            Err(store::StoreError::AlreadyExists(_) | store::StoreError::FailedPrecondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict(
        "a request with this Idempotency-Key is still in progress".into(),
    ))
}

/// Records the response of a claimed request.
pub async fn finish(store: &dyn Store, path: DocPath, response: &StoredResponse) -> AppResult<()> {
    let mut fields = store::Fields::new();
    fields.insert("response".into(), store::value::from_serialize(response));
    store
        .commit(vec![Write::update(path, fields, vec!["response".into()])])
        .await?;
    Ok(())
}

/// Gives a claim up (the request failed), so a retry runs it again.
pub async fn release(store: &dyn Store, path: DocPath) {
    if let Err(e) = store.commit(vec![Write::delete(path)]).await {
        tracing::warn!(error = %e, "could not release an idempotency claim; it expires with its lease");
    }
}
