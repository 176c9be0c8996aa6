//! API keys (`users/{uid}/apiKeys/{keyId}`): creation under a cap of 25 active
//! keys per user, lists, revocation, and the lookup that authenticates a key.
//!
//! - **Lookup by key id.** A key string names its `keyId`, not its owner, so the
//!   lookup is a collection-group query on `apiKeys` by `keyId` (one indexed
//!   query, a collection-group field override in `firestore.indexes.json`).
//!   A root index document (`apiKeyIndex/{keyId}` → uid) would make it a get,
//!   but would put a user's data outside `users/{uid}`, where erasure and export
//!   look for it; the query keeps everything under the user, and its result is
//!   cached (60 s) anyway.
//! - **The cap.** `users/{uid}/apiKeyCounter/current` maps each active key id to
//!   its expiry. A create reads and rewrites that one small document in its
//!   transaction (no query inside the transaction: the emulator's pessimistic
//!   query locks stall concurrent creates), and creates of one user take turns
//!   on this instance, so the 26th active key is refused exactly, however many
//!   creates race. A key stops counting when revoked or expired. A user without
//!   the document has no keys: it is written with the first key and only
//!   erasure removes it, with the keys.
//! - **Revocation** clears the instance's cached lookup before it answers; a
//!   lookup that raced it cannot store what it read (`epoch`).
//! - **`lastUsedAt`** is written at most once a minute per key, by a task of its
//!   own after the request was authenticated: never on the request's path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use firestore::FirestoreTimestamp;
use futures::FutureExt;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::feed::{Feed, Kind};
use super::idempotency::Recorder;
use super::pagination::{CursorCodec, Page, PageRequest};
use super::user_locks::UserLocks;
use super::users;
use super::versioned::{self, Versioned};
use crate::auth::api_key::{self, ParsedKey, SecretHasher};
use crate::cache;
use crate::error::{AppError, AppResult, FieldError};
use crate::metrics::Metrics;
use crate::store::{
    self, Direction, DocPath, Fields, Op, Precondition, Query, Store, TxOutcome, Write, value,
};

pub const COLLECTION: &str = "apiKeys";
pub const COUNTER_COLLECTION: &str = "apiKeyCounter";
const COUNTER_DOC: &str = "current";
pub const MAX_ACTIVE_PER_USER: usize = 25;
/// How long a key lookup is cached on an instance.
pub const LOOKUP_TTL: Duration = Duration::from_secs(60);
/// `lastUsedAt` moves at most this often per key.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);

/// API-key permissions (API.md). ID tokens hold them all.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum Permission {
    #[serde(rename = "profile:read")]
    ProfileRead,
    #[serde(rename = "analyses:read")]
    AnalysesRead,
    #[serde(rename = "analyses:write")]
    AnalysesWrite,
    #[serde(rename = "personas:read")]
    PersonasRead,
    #[serde(rename = "personas:write")]
    PersonasWrite,
    #[serde(rename = "export:read")]
    ExportRead,
    #[serde(rename = "events:write")]
    EventsWrite,
}

impl Permission {
    pub const ALL: [Self; 7] = [
        Self::ProfileRead,
        Self::AnalysesRead,
        Self::AnalysesWrite,
        Self::PersonasRead,
        Self::PersonasWrite,
        Self::ExportRead,
        Self::EventsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProfileRead => "profile:read",
            Self::AnalysesRead => "analyses:read",
            Self::AnalysesWrite => "analyses:write",
            Self::PersonasRead => "personas:read",
            Self::PersonasWrite => "personas:write",
            Self::ExportRead => "export:read",
            Self::EventsWrite => "events:write",
        }
    }
}

/// An API key as the API shows it (never the secret or its hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub key_id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: FirestoreTimestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<FirestoreTimestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<FirestoreTimestamp>,
    /// False once revoked or expired.
    pub is_active: bool,
    /// `ffk_<keyId>`: how the key string starts.
    pub prefix: String,
}

/// The response of a create: the key and, this once, its secret string
/// (the fields of [`ApiKey`], spelled out: a flattened struct would make the
/// document an `allOf` of two closed objects).
#[derive(Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub key_id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: FirestoreTimestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<FirestoreTimestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<FirestoreTimestamp>,
    pub is_active: bool,
    pub prefix: String,
    /// The full key `ffk_<keyId>_<secret><checksum>`, shown once (absent on an idempotent replay).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key: Option<String>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CreatedKey {
    /// This key without its secret string (what a replay answers).
    pub fn without_secret(&self) -> Self {
        Self {
            key: None,
            ..self.clone()
        }
    }

    pub fn new(k: ApiKey, key: Option<String>) -> Self {
        Self {
            key_id: k.key_id,
            name: k.name,
            permissions: k.permissions,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            is_active: k.is_active,
            prefix: k.prefix,
            key,
        }
    }
}

/// The stored document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    key_id: String,
    user_id: String,
    name: String,
    permissions: Vec<Permission>,
    created_at: FirestoreTimestamp,
    last_used_at: Option<FirestoreTimestamp>,
    expires_at: Option<FirestoreTimestamp>,
    is_active: bool,
    #[serde(default)]
    revoked_at: Option<FirestoreTimestamp>,
    prefix: String,
    /// HMAC-SHA256 of the secret under the service's pepper (`auth::api_key`).
    secret_hash: String,
}

impl StoredKey {
    fn view(&self, now: jiff::Timestamp) -> ApiKey {
        ApiKey {
            key_id: self.key_id.clone(),
            name: self.name.clone(),
            permissions: self.permissions.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            is_active: self.is_active && !expired(self.expires_at, now),
            prefix: self.prefix.clone(),
        }
    }
}

fn expired(expires_at: Option<FirestoreTimestamp>, now: jiff::Timestamp) -> bool {
    expires_at.is_some_and(|e| e.0 <= now)
}

/// `POST /v1/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewApiKey {
    #[validate(custom(function = "name_len"))]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: String,
    /// At least one; repeats count once.
    #[validate(length(min = 1, max = 7))]
    #[schema(min_items = 1, max_items = 7, nullable = false)]
    pub permissions: Vec<Permission>,
    /// RFC 3339, in the future; absent or null: the key does not expire.
    #[serde(default)]
    #[validate(custom(function = "future_timestamp"))]
    #[schema(value_type = Option<String>, format = DateTime, nullable)]
    pub expires_at: Option<String>,
}

fn name_len(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 1, 100)
}

fn future_timestamp(s: &str) -> Result<(), ValidationError> {
    let t = s
        .parse::<jiff::Timestamp>()
        .map_err(|_| ValidationError::new("format").with_message("must be an RFC 3339 timestamp".into()))?;
    if !store::limits::storable(t) {
        return Err(ValidationError::new("range").with_message("must be before the year 10000".into()));
    }
    if t <= jiff::Timestamp::now() {
        return Err(ValidationError::new("past").with_message("must be in the future".into()));
    }
    Ok(())
}

/// What an authenticated key may do, for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub uid: String,
    pub key_id: String,
    pub permissions: Vec<Permission>,
    /// When the key was created (an erasure after it revokes it).
    pub created_at: jiff::Timestamp,
}

/// A cached lookup: the stored key's deciding fields (or `None`: no such key).
#[derive(Debug, Clone)]
struct KeyRecord {
    uid: String,
    secret_hash: String,
    permissions: Vec<Permission>,
    is_active: bool,
    expires_at: Option<jiff::Timestamp>,
    created_at: jiff::Timestamp,
}

pub type ApiKeyPage = Page<Versioned<ApiKey>>;

#[derive(Clone)]
pub struct ApiKeys {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    hasher: SecretHasher,
    metrics: Arc<Metrics>,
    /// Key id → (when it was read, the record or `None`: no such key).
    lookups: Cache<String, (Instant, Option<Arc<KeyRecord>>)>,
    /// Bumped by every revocation: a lookup that started before one does not fill the cache.
    epoch: Arc<AtomicU64>,
    /// Keys whose `lastUsedAt` this instance wrote (or decided not to) within the interval.
    touched: Cache<String, ()>,
    turns: UserLocks,
    /// Revocations reach other instances through it; while it is behind,
    /// cached lookups are trusted only briefly.
    feed: Feed,
}

fn unauthenticated() -> AppError {
    AppError::Unauthenticated("invalid API key".into())
}

impl ApiKeys {
    /// `cache_bytes`: this service's share of `FUNNELFLOW_CACHE_MB` (lookups get
    /// most of it; the `lastUsedAt` throttle holds only ids).
    pub fn new(
        store: Arc<dyn Store>,
        cursors: CursorCodec,
        hasher: SecretHasher,
        metrics: Arc<Metrics>,
        cache_bytes: u64,
        feed: Feed,
    ) -> Self {
        Self {
            feed,
            store,
            cursors,
            hasher,
            metrics,
            lookups: Cache::builder()
                .name("api_keys")
                .max_capacity(cache_bytes / 4 * 3)
                .weigher(|k: &String, v: &(Instant, Option<Arc<KeyRecord>>)| {
                    let record = v.1.as_ref().map_or(0, |r| {
                        r.uid.len() + r.secret_hash.len() + r.permissions.len() * 16 + 32
                    });
                    cache::weight(k.len(), record as u64)
                })
                .time_to_live(LOOKUP_TTL)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            touched: Cache::builder()
                .max_capacity(cache_bytes / 4)
                .weigher(|k: &String, _: &()| cache::weight(k.len(), 0))
                .time_to_live(LAST_USED_INTERVAL)
                .build(),
            turns: UserLocks::default(),
        }
    }

    fn key_path(uid: &str, key_id: &str) -> AppResult<DocPath> {
        Ok(users::Users::path(uid)?.child(COLLECTION, key_id)?)
    }

    fn counter_path(uid: &str) -> AppResult<DocPath> {
        Ok(users::Users::path(uid)?.child(COUNTER_COLLECTION, COUNTER_DOC)?)
    }

    /// Creates a key; returns it with its one-time key string. `record` adds an
    /// idempotent response to the same commit (its replay body holds no secret).
    pub async fn create(
        &self,
        uid: &str,
        new: NewApiKey,
        record: Option<Arc<Recorder<CreatedKey>>>,
    ) -> AppResult<Versioned<CreatedKey>> {
        let expires_at = new
            .expires_at
            .as_deref()
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map_err(|_| AppError::validation("expiresAt", "format", "must be an RFC 3339 timestamp"))
            })
            .transpose()?;
        let mut permissions = new.permissions.clone();
        permissions.sort();
        permissions.dedup();
        let generated = api_key::generate();
        // The counter and the key are written together; no query in the transaction.
        let key_id = generated.key_id.clone();
        let path = Self::key_path(uid, &key_id)?;
        let counter = Self::counter_path(uid)?;
        let stored = Arc::new(StoredKey {
            key_id: key_id.clone(),
            user_id: uid.to_owned(),
            name: new.name.clone(),
            permissions,
            created_at: FirestoreTimestamp::now(),
            last_used_at: None,
            expires_at: expires_at.map(FirestoreTimestamp),
            is_active: true,
            revoked_at: None,
            prefix: api_key::display_prefix(&key_id),
            secret_hash: self.hasher.hash(&key_id, &generated.secret),
        });
        // Creates of one user queue here instead of fighting over the counter's lock.
        let created = Arc::new(CreatedKey::new(stored.view(value::now()), Some(generated.full)));
        let _turn = self.turns.lock(uid).await;
        let (_, committed) = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (path, counter, stored) = (path.clone(), counter.clone(), stored.clone());
            let (created, record) = (created.clone(), record.clone());
            async move {
                let now = value::now();
                let mut active = match tx.get(&counter).await? {
                    Some(doc) => active_keys(&doc.fields),
                    None => BTreeMap::new(),
                };
                active.retain(|_, exp| !expired(exp.map(FirestoreTimestamp), now));
                if active.len() >= MAX_ACTIVE_PER_USER {
                    return Err(AppError::Validation(vec![FieldError::new(
                        "",
                        "limit",
                        format!("at most {MAX_ACTIVE_PER_USER} active API keys per user"),
                    )]));
                }
                active.insert(stored.key_id.clone(), stored.expires_at.map(|e| e.0));
                let mut writes = vec![
                    Write::set(counter, counter_fields(&active)),
                    Write::create(path, store::encode(&*stored)?),
                ];
                if let Some(r) = record {
                    writes.push(r.write(tx, &created).await?);
                }
                Ok::<_, AppError>(TxOutcome::new(writes, ()))
            }
            .boxed()
        })
        .await?;
        // A lookup of this id before it existed may have been cached as unknown.
        self.lookups.invalidate(&key_id).await;
        versioned::written(Arc::unwrap_or_clone(created), &committed, &path)
    }

    /// The caller's keys, newest first.
    pub async fn list(&self, uid: &str, page: &PageRequest) -> AppResult<ApiKeyPage> {
        let q = list_query(&users::Users::path(uid)?);
        let binding = format!("{uid}|apiKeys");
        let (docs, next_cursor) = self.cursors.fetch(self.store.as_ref(), q, page, &binding).await?;
        let now = value::now();
        let items = docs
            .iter()
            .map(|d| {
                let k: StoredKey = d.decode()?;
                Ok(Versioned {
                    item: k.view(now),
                    version: d.update_time,
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    /// One key of `uid` (another user's is 404).
    pub async fn get(&self, uid: &str, key_id: &str) -> AppResult<Versioned<ApiKey>> {
        let path = Self::key_path(uid, key_id).map_err(|_| AppError::NotFound)?;
        let doc = self.store.get(&path).await?.ok_or(AppError::NotFound)?;
        let k: StoredKey = doc.decode()?;
        Ok(Versioned {
            item: k.view(value::now()),
            version: doc.update_time,
        })
    }

    /// Revokes a key of `uid` (it stays listed, inactive). Another user's key is 404.
    pub async fn revoke(&self, uid: &str, key_id: &str, if_match: versioned::IfMatch) -> AppResult<()> {
        let path = Self::key_path(uid, key_id).map_err(|_| AppError::NotFound)?;
        let counter = Self::counter_path(uid)?;
        // Announced in the same commit as the revocation.
        let entry = self.feed.entry(uid, Kind::ApiKey, &[key_id.to_owned()])?;
        let _turn = self.turns.lock(uid).await;
        let result = store::run_transaction(self.store.as_ref(), |tx| {
            let (path, counter, if_match) = (path.clone(), counter.clone(), if_match.clone());
            let entry = entry.clone();
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                versioned::check_version(&if_match, &doc, "API key")?;
                let counted = tx.get(&counter).await?;
                let mut writes = Vec::new();
                if let Some(c) = counted {
                    let mut active = active_keys(&c.fields);
                    if active.remove(doc.id()).is_some() {
                        writes.push(Write::set(counter, counter_fields(&active)));
                    }
                }
                if doc.field("isActive") != Some(&value::boolean(false)) {
                    let mut fields = Fields::new();
                    fields.insert("isActive".into(), value::boolean(false));
                    fields.insert("revokedAt".into(), value::timestamp(value::now()));
                    writes.push(
                        Write::update(path, fields, vec!["isActive".into(), "revokedAt".into()])
                            .precondition(Precondition::UpdateTime(doc.update_time)),
                    );
                }
                if !writes.is_empty() {
                    writes.push(entry);
                }
                Ok::<_, AppError>(TxOutcome::new(writes, ()))
            }
            .boxed()
        })
        .await;
        // Refused on the very next request here, whatever the commit's outcome.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.lookups.invalidate(key_id).await;
        if result.is_ok() {
            self.feed.announce().await;
        }
        result
    }

    /// Drops this instance's cached lookup of `key_id` (its owner was erased):
    /// a lookup racing this cannot store what it read.
    pub async fn forget(&self, key_id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.lookups.invalidate(key_id).await;
    }

    /// Drops every cached lookup on this instance.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.lookups.invalidate_all();
    }

    /// Authenticates a key whose checksum was verified: known, secret matching,
    /// active and unexpired (else 401).
    pub async fn authenticate(&self, key: &ParsedKey<'_>) -> AppResult<KeyGrant> {
        let record = self.lookup(key.key_id).await?.ok_or_else(unauthenticated)?;
        if !self.hasher.verify(key.key_id, key.secret, &record.secret_hash) {
            return Err(unauthenticated());
        }
        if !record.is_active {
            return Err(AppError::Unauthenticated("this API key was revoked".into()));
        }
        if record.expires_at.is_some_and(|e| e <= jiff::Timestamp::now()) {
            return Err(AppError::Unauthenticated("this API key has expired".into()));
        }
        Ok(KeyGrant {
            uid: record.uid.clone(),
            key_id: key.key_id.to_owned(),
            permissions: record.permissions.clone(),
            created_at: record.created_at,
        })
    }

    async fn lookup(&self, key_id: &str) -> AppResult<Option<Arc<KeyRecord>>> {
        let max_age = self.feed.max_age();
        if let Some((read_at, hit)) = self.lookups.get(key_id).await
            && max_age.is_none_or(|m| read_at.elapsed() <= m)
        {
            self.metrics.cache_hit("api_keys");
            return Ok(hit);
        }
        self.metrics.cache_miss("api_keys");
        let epoch = self.epoch.load(Ordering::SeqCst);
        let read_at = Instant::now();
        let docs = self.store.query(&lookup_query(key_id).limit(2)).await?;
        let record = match docs.as_slice() {
            [doc] => {
                let k: StoredKey = doc.decode()?;
                let uid = doc
                    .path
                    .parent()
                    .map(|p| p.id().to_owned())
                    .ok_or_else(|| AppError::internal("an API key outside a user"))?;
                Some(Arc::new(KeyRecord {
                    uid,
                    secret_hash: k.secret_hash,
                    permissions: k.permissions,
                    is_active: k.is_active,
                    expires_at: k.expires_at.map(|e| e.0),
                    created_at: k.created_at.0,
                }))
            }
            // None, or (never by construction) an ambiguous id: no key.
            _ => None,
        };
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.lookups
                .insert(key_id.to_owned(), (read_at, record.clone()))
                .await;
        }
        Ok(record)
    }

    /// Records a use of the key, at most once per [`LAST_USED_INTERVAL`], in a
    /// task of its own (the request does not wait for it).
    pub async fn touch(&self, grant: &KeyGrant) {
        let entry = self.touched.entry(grant.key_id.clone()).or_insert(()).await;
        if !entry.is_fresh() {
            return;
        }
        let (store, uid, key_id) = (self.store.clone(), grant.uid.clone(), grant.key_id.clone());
        actix_web::rt::spawn(async move {
            if let Err(e) = write_last_used(store.as_ref(), &uid, &key_id).await {
                tracing::debug!(error = %e, "could not record an API key's last use");
            }
        });
    }
}

/// Writes `lastUsedAt = now` unless another write (any instance) did within the interval.
async fn write_last_used(store: &dyn Store, uid: &str, key_id: &str) -> AppResult<()> {
    let path = ApiKeys::key_path(uid, key_id)?;
    store::run_transaction(store, |tx| {
        let path = path.clone();
        async move {
            let Some(doc) = tx.get(&path).await? else {
                return Ok::<_, AppError>(TxOutcome::new(Vec::new(), ()));
            };
            let now = value::now();
            let last = doc.field("lastUsedAt").and_then(value::as_timestamp);
            let interval = jiff::SignedDuration::try_from(LAST_USED_INTERVAL).unwrap_or_default();
            if last.is_some_and(|l| now.duration_since(l) < interval) {
                return Ok(TxOutcome::new(Vec::new(), ()));
            }
            let mut fields = Fields::new();
            fields.insert("lastUsedAt".into(), value::timestamp(now));
            let w = Write::update(path, fields, vec!["lastUsedAt".into()])
                .precondition(Precondition::UpdateTime(doc.update_time));
            Ok(TxOutcome::new(vec![w], ()))
        }
        .boxed()
    })
    .await
}

/// The counter's `active` map: key id → expiry (null: none).
fn active_keys(fields: &Fields) -> BTreeMap<String, Option<jiff::Timestamp>> {
    fields
        .get("active")
        .and_then(value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), value::as_timestamp(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn counter_fields(active: &BTreeMap<String, Option<jiff::Timestamp>>) -> Fields {
    let map = active
        .iter()
        .map(|(k, e)| (k.clone(), e.map_or_else(value::null, value::timestamp)))
        .collect();
    let mut fields = Fields::new();
    fields.insert("active".into(), value::map(map));
    fields.insert(
        "count".into(),
        value::int(i64::try_from(active.len()).unwrap_or(i64::MAX)),
    );
    fields
}

fn list_query(user: &DocPath) -> Query {
    Query::collection(Some(user), COLLECTION).order("createdAt", Direction::Desc)
}

fn lookup_query(key_id: &str) -> Query {
    Query::group(None, COLLECTION).filter("keyId", Op::Eq, value::string(key_id))
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let Ok(u) = DocPath::root(users::COLLECTION, "example") else {
        return Vec::new();
    };
    vec![
        ("apiKeys: list", list_query(&u)),
        (
            "apiKeys: lookup by keyId (collection group)",
            lookup_query("example"),
        ),
    ]
}
