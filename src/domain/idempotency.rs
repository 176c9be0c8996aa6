//! `Idempotency-Key` for creating POSTs. A record per (principal, endpoint,
//! key) lives under the user (`users/{uid}/idempotency/{hash}`), so erasure
//! finds it: the first request claims it (in flight), records its response, and
//! a retry within 24 h gets that response again.
//!
//! A claim is owned: it carries a random owner id, and every later write to the
//! record (the response, a release) checks that id and carries the update-time
//! precondition of the record it checked, so a request whose claim expired and
//! was taken over can never overwrite the new owner's claim. Creates record their
//! response in their own transaction ([`Recorder`]): the resource and the
//! response the key replays land in one commit, or neither does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::store::{self, Doc, DocPath, Precondition, Store, Transaction, Write};

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
    /// On a replay: the record's update time. A response recorded in its create's
    /// commit shares that commit's time with the created resource, so this is the
    /// resource's version then (its ETag); not stored.
    #[serde(skip)]
    pub version: Option<store::Timestamp>,
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
    /// Who holds the claim (absent in records written before owners existed).
    #[serde(default)]
    owner: Option<String>,
    response: Option<StoredResponse>,
}

/// The part of a record a response or release needs to see, tolerant of old records.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ownership {
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    response: Option<serde_json::Value>,
}

/// A claim held by this request.
#[derive(Debug, Clone)]
pub struct Lease {
    pub path: DocPath,
    owner: String,
}

impl Lease {
    /// Whether `doc` is still this claim, unanswered.
    fn holds(&self, doc: &Doc) -> AppResult<bool> {
        let o: Ownership = doc.decode()?;
        Ok(o.owner.as_deref() == Some(&self.owner) && o.response.is_none())
    }
}

fn taken_over() -> AppError {
    AppError::Conflict("the claim of this Idempotency-Key was taken over by another request".into())
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: run the request, recording its response (a [`Recorder`] in its
    /// transaction, or `finish`), or `release` the claim on failure.
    Fresh(Lease),
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
                        Some(r) => Ok(Claim::Replay(StoredResponse {
                            version: Some(doc.update_time),
                            ..r
                        })),
                        None => Err(AppError::Conflict(
                            "a request with this Idempotency-Key is still in progress".into(),
                        )),
                    };
                }
                Precondition::UpdateTime(doc.update_time)
            }
        };
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let rec = Record {
            request_hash: hash.to_owned(),
            endpoint: endpoint.to_owned(),
            created_at: FirestoreTimestamp(now),
            expires_at: FirestoreTimestamp(now + RETENTION),
            lease_until: FirestoreTimestamp(now + LEASE),
            owner: Some(owner.clone()),
            response: None,
        };
        let write = Write::set(path.clone(), store::encode(&rec)?).precondition(precondition);
        match store.commit(vec![write]).await {
            Ok(_) => return Ok(Claim::Fresh(Lease { path, owner })),
            // Someone claimed it between our read and write: decide again.
            Err(store::StoreError::AlreadyExists(_) | store::StoreError::FailedPrecondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict(
        "a request with this Idempotency-Key is still in progress".into(),
    ))
}

/// The write recording `response` on the claim `doc` (read just now), which
/// only applies if the record did not change since.
fn response_write(doc: &Doc, response: &StoredResponse) -> Write {
    let mut fields = store::Fields::new();
    fields.insert("response".into(), store::value::from_serialize(response));
    Write::update(doc.path.clone(), fields, vec!["response".into()])
        .precondition(Precondition::UpdateTime(doc.update_time))
}

/// Records the response of a claimed request on its own (for a create that
/// cannot take a [`Recorder`]). Refused with 409 if the claim was taken over:
/// the new owner's record is left as it is.
pub async fn finish(store: &dyn Store, lease: &Lease, response: &StoredResponse) -> AppResult<()> {
    let doc = store.get(&lease.path).await?.ok_or_else(taken_over)?;
    if !lease.holds(&doc)? {
        return Err(taken_over());
    }
    match store.commit(vec![response_write(&doc, response)]).await {
        // Taken over between the read and the write.
        Err(store::StoreError::FailedPrecondition(_)) => Err(taken_over()),
        other => other.map(|_| ()).map_err(AppError::from),
    }
}

/// Gives a claim up (the request failed), so a retry runs it again. A claim
/// taken over by another request meanwhile is left alone.
pub async fn release(store: &dyn Store, lease: &Lease) {
    let result = async {
        let Some(doc) = store.get(&lease.path).await? else {
            return Ok(());
        };
        if !lease.holds(&doc)? {
            return Ok(());
        }
        let delete =
            Write::delete(lease.path.clone()).precondition(Precondition::UpdateTime(doc.update_time));
        match store.commit(vec![delete]).await {
            Err(store::StoreError::FailedPrecondition(_)) => Ok(()),
            other => other.map(|_| ()).map_err(AppError::from),
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not release an idempotency claim; it expires with its lease");
    }
}

type Respond<T> = dyn Fn(&T) -> AppResult<StoredResponse> + Send + Sync;

/// Records an idempotent create's response in the create's own transaction:
/// the create calls [`Recorder::write`] with the item it creates and commits the
/// returned write with its own.
pub struct Recorder<T> {
    lease: Lease,
    respond: Box<Respond<T>>,
    /// Set once a transaction body asked for the write (see `was_used`).
    used: AtomicBool,
}

impl<T> Recorder<T> {
    /// `respond` turns the created item into the response to replay.
    pub fn new(
        lease: Lease,
        respond: impl Fn(&T) -> AppResult<StoredResponse> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            lease,
            respond: Box::new(respond),
            used: AtomicBool::new(false),
        })
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Reads the claim in `tx` and returns the write recording the response to
    /// `item`; 409 if the claim was taken over (then nothing is created). The
    /// record and the item share the commit's update time (the item's ETag).
    pub async fn write(&self, tx: &mut dyn Transaction, item: &T) -> AppResult<Write> {
        let doc = tx.get(&self.lease.path).await?.ok_or_else(taken_over)?;
        if !self.lease.holds(&doc)? {
            return Err(taken_over());
        }
        let response = (self.respond)(item)?;
        self.used.store(true, Ordering::Relaxed);
        Ok(response_write(&doc, &response))
    }

    /// Whether a create included the write: a create that returned `Ok` after
    /// asking for it committed it (each transaction attempt asks again).
    pub fn was_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }
}
