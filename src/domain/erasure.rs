//! GDPR erasure (Art. 17): everything under `users/{uid}` is deleted, analytics
//! pseudonymized, audit records re-pointed at the pseudonym, caches dropped, and
//! a tombstone refuses tokens issued before the erasure.
//!
//! - **Order.** Tombstone first (from then on old tokens are refused and nothing
//!   re-provisions the account), then every descendant document (one
//!   all-descendants listing, streamed: unknown, nested and parentless
//!   subcollections too) in commits of 500 with bounded concurrency and
//!   backoff, holding a few chunks at most, then analytics and
//!   audit records, then the user document last. An erasure stopped anywhere is
//!   finished by calling again; a finished one answers zero counts.
//! - **The tombstone** is `tombstones/{pseudonym}`: a root collection, so the
//!   erasure (which deletes everything under `users/{uid}`) never deletes it, and
//!   keyed by the pseudonym so it holds no uid. `erasedAt` is the commit time of
//!   the latest erasure; an ID token whose `auth_time` is before it is 401
//!   `account_deleted`; a later sign-in starts a fresh account, which such an
//!   old token cannot erase: it may only finish the erasure it predates
//!   (while the erased account's user document is there). An API key
//!   created before it is refused as a deleted key is, even while an interrupted
//!   erasure has not deleted it yet.
//! - **`deleted.other`** counts documents in subcollections the code does not
//!   know (also below known documents, e.g. `analyses/*/comments/*`). The
//!   service's own bookkeeping (`personaCounter`, `apiKeyCounter`, `trendDays`,
//!   `idempotency`) is deleted but not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use futures::stream::TryChunksError;
use futures::{FutureExt, StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::analyses::{self, Analyses};
use super::api_keys::{self, ApiKeys};
use super::feed::{Feed, Kind};
use super::personas::{self, Personas};
use super::retention::ANALYTICS_COLLECTION;
use super::users::{self, Users};
use super::{analytics, audit, idempotency, persona_counter, trends};
use crate::error::{AppError, AppResult};
use crate::store::{self, DocPath, Fields, Op, Query, Store, Timestamp, TxOutcome, Write, value};

pub const TOMBSTONES: &str = "tombstones";
/// Commits in flight at once while deleting.
const CONCURRENCY: usize = 4;
/// Key ids named in the erasure's last feed entry (a document has a size limit).
const MAX_ANNOUNCED_KEYS: usize = 1_000;
/// How long an instance trusts what it read of a user's tombstone.
const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeletedCounts {
    pub analyses: u64,
    pub personas: u64,
    #[serde(rename = "apiKeys")]
    pub api_keys: u64,
    /// Documents in subcollections the service does not know.
    pub other: u64,
}

/// The answer to an erasure.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    pub deleted: DeletedCounts,
    pub analytics_anonymized: u64,
}

#[derive(Clone)]
pub struct Erasure {
    store: Arc<dyn Store>,
    key: Arc<Vec<u8>>,
    users: Users,
    analyses: Analyses,
    personas: Personas,
    api_keys: ApiKeys,
    /// uid → (when it was read, `erasedAt` of its tombstone if any).
    tombstones: Cache<String, (Instant, Option<Timestamp>)>,
    feed: Feed,
}

impl Erasure {
    pub fn new(
        store: Arc<dyn Store>,
        secret: &str,
        users: Users,
        analyses: Analyses,
        personas: Personas,
        api_keys: ApiKeys,
        feed: Feed,
    ) -> Self {
        Self {
            feed,
            store,
            key: Arc::new(secret.as_bytes().to_vec()),
            users,
            analyses,
            personas,
            api_keys,
            tombstones: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOMBSTONE_TTL)
                .build(),
        }
    }

    /// The stable one-way pseudonym of `uid` (keyed with `FUNNELFLOW_SECRET`).
    pub fn pseudonym(&self, uid: &str) -> String {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"funnelflow erasure pseudonym\0");
        mac.update(uid.as_bytes());
        let out = mac.finalize().into_bytes();
        format!("anon_{}", hex::encode(&out[..16]))
    }

    fn tombstone_path(&self, uid: &str) -> AppResult<DocPath> {
        Ok(DocPath::root(TOMBSTONES, &self.pseudonym(uid))?)
    }

    /// When `uid` was last erased, if ever (cached for [`TOMBSTONE_TTL`]).
    /// While the feed lags, a cached read counts only for its short TTL.
    async fn erased_at(&self, uid: &str) -> AppResult<Option<Timestamp>> {
        let max_age = self.feed.max_age();
        let cached = self
            .tombstones
            .get(uid)
            .await
            .filter(|(read_at, _)| max_age.is_none_or(|m| read_at.elapsed() <= m));
        if let Some((_, t)) = cached {
            return Ok(t);
        }
        let read_at = Instant::now();
        let t = self
            .store
            .get(&self.tombstone_path(uid)?)
            .await?
            .and_then(|d| d.field("erasedAt").and_then(value::as_timestamp));
        self.tombstones.insert(uid.to_owned(), (read_at, t)).await;
        Ok(t)
    }

    /// 401 `account_deleted` when `uid` was erased after the token's sign-in;
    /// else when `uid` was last erased, if ever.
    pub async fn check_token(&self, uid: &str, auth_time: i64) -> AppResult<Option<Timestamp>> {
        match self.erased_at(uid).await? {
            Some(t) if jiff::Timestamp::from_second(auth_time).is_ok_and(|a| a < t) => {
                Err(AppError::AccountDeleted)
            }
            t => Ok(t),
        }
    }

    /// 401 `unauthenticated` for an API key created before its owner's
    /// erasure: what the key gets once the erasure deleted it, so its answer
    /// does not depend on how far an interrupted erasure got.
    pub async fn check_key(&self, uid: &str, created_at: Timestamp) -> AppResult<()> {
        match self.erased_at(uid).await? {
            Some(t) if created_at < t => Err(AppError::Unauthenticated("invalid API key".into())),
            _ => Ok(()),
        }
    }

    /// Drops this instance's cached tombstone of `uid` (it was erased elsewhere).
    pub async fn forget(&self, uid: &str) {
        self.tombstones.invalidate(uid).await;
    }

    /// Drops every cached tombstone on this instance.
    pub fn flush(&self) {
        self.tombstones.invalidate_all();
    }

    async fn drop_caches(&self, uid: &str, key_ids: &[String]) {
        self.users.invalidate(uid).await;
        self.analyses.invalidate(uid).await;
        self.personas.invalidate(uid).await;
        for k in key_ids {
            self.api_keys.forget(k).await;
        }
    }

    /// Erases `uid` on behalf of an admin (`actor`).
    pub async fn erase(&self, uid: &str, actor: &str, request_id: &str) -> AppResult<Erased> {
        self.run(uid, Some(actor), Start::Tombstone(None), request_id)
            .await
    }

    /// The user erases themself with an ID token signed in at `auth_time`. A
    /// token from before an earlier erasure may only finish that erasure: once
    /// it is done it gets zero counts and changes nothing, and once a fresh
    /// account exists (a user document created after the erasure) it is 401
    /// `account_deleted`.
    pub async fn erase_self(&self, uid: &str, auth_time: i64, request_id: &str) -> AppResult<Erased> {
        self.run(uid, None, Start::Tombstone(Some(auth_time)), request_id)
            .await
    }

    /// Finishes the erasure of `uid` committed at `erased_at` that was
    /// interrupted (its user document is still there), for a sign-in after it:
    /// the tombstone stays as it is, so that sign-in is not refused.
    pub async fn resume(&self, uid: &str, erased_at: Timestamp, request_id: &str) -> AppResult<Erased> {
        self.run(uid, None, Start::Resume(erased_at), request_id).await
    }

    /// The tombstone's commit (step 1), or `None` when an old token finds
    /// nothing left to finish.
    async fn start(&self, uid: &str, auth_time: Option<i64>) -> AppResult<Option<Timestamp>> {
        let tombstone = self.tombstone_path(uid)?;
        let mut t = Fields::new();
        t.insert("kind".into(), value::string("erasure"));
        // Announced with the tombstone: other instances refuse old tokens within a second.
        let writes = vec![
            Write::set(tombstone.clone(), t).server_time("erasedAt"),
            self.feed.entry(uid, Kind::Erasure, &[])?,
        ];
        let Some(auth_time) = auth_time else {
            return Ok(Some(self.store.commit(writes).await?.commit_time));
        };
        let signed_in = jiff::Timestamp::from_second(auth_time).map_err(AppError::internal)?;
        let user = users::Users::path(uid)?;
        // Decided and written in one transaction: a fresh account created
        // meanwhile (its user document is read here) cannot slip in between.
        let (go, committed) = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (paths, writes) = ([tombstone.clone(), user.clone()], writes.clone());
            async move {
                let docs = tx.get_all(&paths).await?;
                let erased_at = docs
                    .first()
                    .and_then(Option::as_ref)
                    .and_then(|d| d.field("erasedAt").and_then(value::as_timestamp));
                match (erased_at, docs.get(1).and_then(Option::as_ref)) {
                    // A token from after the last erasure (or none): an ordinary erasure.
                    (None, _) => {}
                    (Some(at), _) if signed_in >= at => {}
                    // The user document goes last: while the erased account's is
                    // there, the erasure is unfinished, and this token may finish it.
                    (Some(at), Some(doc)) if doc.create_time < at => {}
                    (Some(_), None) => return Ok(TxOutcome::new(Vec::new(), false)),
                    (Some(_), Some(_)) => return Err(AppError::AccountDeleted),
                }
                Ok::<_, AppError>(TxOutcome::new(writes, true))
            }
            .boxed()
        })
        .await?;
        Ok(go.then_some(committed.commit_time))
    }

    /// Erases `uid`; `actor` is the admin's uid, or `None` for the user
    /// themself.
    async fn run(&self, uid: &str, actor: Option<&str>, start: Start, request_id: &str) -> AppResult<Erased> {
        let started = Instant::now();
        let user = users::Users::path(uid)?;
        let pseudonym = self.pseudonym(uid);
        // 1. The tombstone: from its commit on, older tokens are refused.
        let erased_at = match start {
            Start::Tombstone(auth_time) => match self.start(uid, auth_time).await? {
                Some(t) => t,
                None => return Ok(Erased::default()),
            },
            Start::Resume(t) => t,
        };
        self.tombstones
            .insert(uid.to_owned(), (Instant::now(), Some(erased_at)))
            .await;
        self.users.invalidate(uid).await;
        let tombstoned = started.elapsed();

        // 2. Everything below the user document, and (meanwhile: other
        // collections, and the emulator evaluates the whole listing before its
        // first name) the analytics and audit records that name the user.
        let (deleted, rewritten) = future::join(
            async {
                let (_, deleted) = future::join(self.feed.announce(), self.delete_descendants(&user)).await;
                (deleted, started.elapsed())
            },
            self.rewrite_references(uid, &pseudonym),
        )
        .await;
        let ((counts, key_ids, first_chunk), deleted_at) = (deleted.0?, deleted.1);
        let anonymized = rewritten?;

        let actor = actor.map_or_else(|| pseudonym.clone(), str::to_owned);
        let record = audit::record(
            &actor,
            "user.erase",
            &format!("{}/{pseudonym}", users::COLLECTION),
            request_id,
            serde_json::to_value(&counts).map_err(AppError::internal)?,
        )?;
        // 3. The user document last: until it is gone, calling again finishes the job.
        // With the keys' ids: other instances drop their lookups.
        self.store
            .commit(vec![
                record,
                Write::delete(user.clone()),
                self.feed.entry(uid, Kind::Erasure, &key_ids)?,
            ])
            .await?;
        self.drop_caches(uid, &key_ids).await;
        self.feed.announce().await;
        // The pseudonym, never the uid (the audit trail names it too).
        tracing::info!(
            pseudonym,
            documents = counts.analyses + counts.personas + counts.api_keys + counts.other,
            analytics_anonymized = anonymized,
            tombstone_ms = tombstoned.as_millis() as u64,
            first_chunk_ms = first_chunk.map(|d| d.as_millis() as u64),
            deleted_ms = deleted_at.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "user erased"
        );
        Ok(Erased {
            deleted: counts,
            analytics_anonymized: anonymized,
        })
    }

    /// Deletes every descendant of `user`, whatever its collection or depth,
    /// from one streamed listing (linear, where cursor pages cost the emulator
    /// a scan each), in commits of 500 while the listing goes on; at most
    /// `CONCURRENCY` commits in flight and one chunk being gathered, and the
    /// stream is held back meanwhile: memory stays flat however large the
    /// account. Returns the counts, the deleted keys' ids (bounded), and when
    /// the first chunk of names was in.
    async fn delete_descendants(
        &self,
        user: &DocPath,
    ) -> AppResult<(DeletedCounts, Vec<String>, Option<Duration>)> {
        let started = Instant::now();
        let mut first_chunk = None;
        let mut counts = DeletedCounts::default();
        let mut key_ids = Vec::new();
        let failed = AtomicBool::new(false);
        let mut first_error = None;
        {
            let deleting = self
                .store
                .descendants_stream(user)
                .try_chunks(store::MAX_WRITES_PER_COMMIT)
                .map_err(|TryChunksError(_, e)| e)
                // After a failure no new chunk starts, and the commits in flight are
                // awaited, not dropped: a dropped commit may still land after the
                // answer, and the next call's counts would miss what it deleted.
                .take_while(|_| future::ready(!failed.load(Ordering::Relaxed)))
                .map(|page| match page {
                    Ok(page) => {
                        first_chunk.get_or_insert_with(|| started.elapsed());
                        let key_ids = tally(user, &page, &mut counts);
                        let store = self.store.clone();
                        Either::Left(async move {
                            let writes = page.into_iter().map(Write::delete).collect();
                            store::commit_chunked(store.as_ref(), writes).await?;
                            Ok::<_, store::StoreError>(key_ids)
                        })
                    }
                    Err(e) => Either::Right(future::ready(Err(e))),
                })
                .buffer_unordered(CONCURRENCY);
            let mut deleting = std::pin::pin!(deleting);
            while let Some(done) = deleting.next().await {
                match done {
                    Ok(page_keys) => {
                        // Deleted keys leave this instance's cache at once. Announced
                        // at the end too; bounded: a user holds at most 25 keys, and
                        // other instances refuse keys older than the tombstone anyway.
                        for k in &page_keys {
                            self.api_keys.forget(k).await;
                        }
                        let room = MAX_ANNOUNCED_KEYS.saturating_sub(key_ids.len());
                        key_ids.extend(page_keys.into_iter().take(room));
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok((counts, key_ids, first_chunk)),
        }
    }

    /// Analytics events and audit records that name `uid` name the pseudonym
    /// instead (events lose their address and user agent too); returns how
    /// many events were anonymized.
    async fn rewrite_references(&self, uid: &str, pseudonym: &str) -> AppResult<u64> {
        let (anonymized, repointed) = future::join(
            self.anonymize_analytics(uid, pseudonym),
            self.repoint_audit(uid, pseudonym),
        )
        .await;
        repointed?;
        anonymized
    }

    async fn anonymize_analytics(&self, uid: &str, pseudonym: &str) -> AppResult<u64> {
        let mut anonymized = 0u64;
        loop {
            let page = self
                .store
                .query(&analytics::user_query(uid).limit(store::MAX_WRITES_PER_COMMIT as u32))
                .await?;
            if page.is_empty() {
                return Ok(anonymized);
            }
            anonymized += page.len() as u64;
            let writes = page
                .iter()
                .map(|d| {
                    let mut f = Fields::new();
                    f.insert("userId".into(), value::string(pseudonym));
                    Write::update(
                        d.path.clone(),
                        f,
                        vec!["userId".into(), "ip".into(), "userAgent".into()],
                    )
                })
                .collect();
            store::commit_chunked(self.store.as_ref(), writes).await?;
        }
    }

    async fn repoint_audit(&self, uid: &str, pseudonym: &str) -> AppResult<()> {
        let as_target = format!("{}/{uid}", users::COLLECTION);
        let to_target = format!("{}/{pseudonym}", users::COLLECTION);
        for (field, from, to) in [
            ("actor", uid.to_owned(), pseudonym.to_owned()),
            ("target", as_target, to_target.clone()),
            ("target", uid.to_owned(), to_target),
        ] {
            loop {
                let q = Query::collection(None, audit::COLLECTION)
                    .filter(field, Op::Eq, value::string(from.clone()))
                    .limit(store::MAX_WRITES_PER_COMMIT as u32);
                let page = self.store.query(&q).await?;
                if page.is_empty() {
                    break;
                }
                let writes = page
                    .iter()
                    .map(|d| {
                        let mut f = Fields::new();
                        f.insert(field.into(), value::string(to.clone()));
                        Write::update(d.path.clone(), f, vec![field.into()])
                    })
                    .collect();
                store::commit_chunked(self.store.as_ref(), writes).await?;
            }
        }
        Ok(())
    }
}

/// How an erasure begins.
enum Start {
    /// With a new tombstone; for the user themself, with their token's `auth_time`.
    Tombstone(Option<i64>),
    /// Under the tombstone committed then (a sign-in after it finishes it).
    Resume(Timestamp),
}

/// Counts a page of `user`'s descendants into `counts`; returns the ids of the
/// API keys among them.
fn tally(user: &DocPath, page: &[DocPath], counts: &mut DeletedCounts) -> Vec<String> {
    let mut key_ids = Vec::new();
    for p in page {
        let direct = p.parent().is_some_and(|d| d == *user);
        match p.collection_id() {
            analyses::COLLECTION if direct => counts.analyses += 1,
            personas::COLLECTION if direct => counts.personas += 1,
            api_keys::COLLECTION if direct => {
                counts.api_keys += 1;
                key_ids.push(p.id().to_owned());
            }
            persona_counter::COLLECTION
            | api_keys::COUNTER_COLLECTION
            | trends::COLLECTION
            | idempotency::COLLECTION
                if direct => {}
            _ => counts.other += 1,
        }
    }
    key_ids
}

/// The analytics collection erasure rewrites (for the index registry: all its
/// queries are single-field equalities, served by automatic indexes).
pub fn query_shapes() -> Vec<(&'static str, Query)> {
    vec![
        (
            "erasure: audit records naming a user",
            Query::collection(None, audit::COLLECTION).filter("actor", Op::Eq, value::string("x")),
        ),
        (
            "erasure: analytics of a user",
            Query::collection(None, ANALYTICS_COLLECTION).filter("userId", Op::Eq, value::string("x")),
        ),
    ]
}
