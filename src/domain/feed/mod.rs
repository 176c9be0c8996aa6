//! The invalidation feed: how a write on one instance reaches the caches of
//! every other instance within about a second (DESIGN.md, "Caching").
//!
//! - **Entries.** A write that changes what another instance may have cached
//!   (a key revoked, a role or plan changed, an erasure; profiles, analyses and
//!   personas behind cached lists) adds `invalidations/{autoId}` {uid, kind,
//!   keyIds, origin, at (commit time), expireAt} to its own commit where the
//!   authorization depends on it (revocation, role and plan, erasure, the CLI),
//!   so the change and its announcement are atomic; list-only writes publish
//!   right after their commit ([`Feed::publish`]).
//! - **Heads.** Query listeners on the emulator are re-sent their whole result
//!   set on every change, so instances do not listen to `invalidations`: they
//!   listen to [`SHARDS`] fixed documents `invalidationHeads/{0..SHARDS}`, and
//!   every publication increments `seq` of a random one (sharded: production
//!   Firestore sustains about one write per second per document), after the
//!   commit and outside any transaction, so transactions never contend on a
//!   head. Concurrent announcements of one instance share one increment.
//! - **Catch-up.** On any head change an instance reads `invalidations` with
//!   `at` after its cursor (less a small overlap; evicting twice is harmless,
//!   and entries seen are skipped) and evicts what they name. One read runs at
//!   a time; changes meanwhile cause one more. Idle, it reads every
//!   [`PROBE_INTERVAL`] anyway, which also proves it is still in sync.
//! - **Health** ([`FeedHealth`]): current while the listen stream is live and a
//!   catch-up succeeded within [`STALE_AFTER`]. Otherwise API-key lookups,
//!   profiles (role, plan) and erasure tombstones older than [`SHORT_TTL`] count
//!   as misses; the `funnelflow_feed_current` gauge (computed when scraped)
//!   and a log line say so.
//!   The stream reconnects by itself, and the next catch-up replays the gap
//!   from the cursor, or flushes every cache when the gap is longer than
//!   [`MAX_REPLAY`].
//! - **Retention.** Entries expire after [`RETENTION`] (a TTL policy on
//!   `expireAt`, see `deploy/`; `funnelflow purge` removes them too), longer
//!   than any cache's TTL, so a replay of any gap shorter than that is complete.
//! - An instance skips its own entries: it evicted before it answered.
//! - Health is computed when a cached decision is read, not by a timer: on
//!   Cloud Run with CPU only during requests, an idle instance's follower
//!   barely runs, so its first requests find the feed not current and re-read
//!   keys, roles and plans until a catch-up has run (safe, a little slower).
//! - Not published: logins (`lastLoginAt`: a newer sign-in corrects a stale
//!   cached profile by itself), and the offline `seed` and `restore`.
//! - Limits: the indexed, ever-increasing `at` caps `invalidations` near 500
//!   writes/s, and production Firestore plans for ~1 sustained write/s per
//!   head; far above the rate of authorization changes, but a large fleet with
//!   many list-only writes would need more shards (or spaced increments).

mod follower;
mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use follower::{Evictor, entries_after, expired_entries, spawn};
pub use health::FeedHealth;

use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::{self, DocPath, Fields, Store, Write, value};

pub const COLLECTION: &str = "invalidations";
pub const HEADS: &str = "invalidationHeads";
/// Head documents; see the module documentation.
pub const SHARDS: u32 = 16;
/// How long entries are kept (`expireAt`): more than the longest cache TTL (1 h).
pub const RETENTION: Duration = Duration::from_secs(2 * 3600);
/// A gap longer than this is not replayed: every cache is flushed instead.
pub const MAX_REPLAY: Duration = Duration::from_secs(5 * 60);
/// Catch-up read while nothing happens.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(1500);
/// No successful catch-up for this long (or no live stream): not current.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// What authorization caches trust while the feed is not current.
pub const SHORT_TTL: Duration = Duration::from_secs(2);

/// What an entry invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// The profile: role, plan, fields.
    Profile,
    /// History and trends, and the counters in the profile and personas.
    Analyses,
    /// Persona lists.
    Personas,
    /// API-key lookups (`keyIds`).
    ApiKey,
    /// Everything of the user, the erasure tombstone and `keyIds`.
    Erasure,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Analyses => "analyses",
            Self::Personas => "personas",
            Self::ApiKey => "apiKey",
            Self::Erasure => "erasure",
        }
    }
}

/// The publishing side, shared by the services; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// This instance, in its entries (so it can skip them).
    origin: String,
    metrics: Arc<Metrics>,
    health: FeedHealth,
    /// Announcements taken (tickets) and covered by a completed head increment.
    requested: AtomicU64,
    announced: AtomicU64,
    /// One head increment at a time; the waiters behind it usually find theirs covered.
    bumping: tokio::sync::Mutex<()>,
}

impl Feed {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                origin: uuid::Uuid::new_v4().simple().to_string(),
                metrics,
                health: FeedHealth::new(),
                requested: AtomicU64::new(0),
                announced: AtomicU64::new(0),
                bumping: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn health(&self) -> &FeedHealth {
        &self.inner.health
    }

    /// Sets the `funnelflow_feed_current` gauge to the state at this moment:
    /// called when `/metrics` is scraped (a few atomic loads), so the gauge
    /// never shows a state that has already changed.
    pub fn report_health(&self) {
        let current = self.inner.health.is_current();
        self.inner.metrics.feed_current.set(i64::from(current));
    }

    /// `None` while the feed is current, else [`SHORT_TTL`]: how old a cached
    /// authorization decision may be.
    pub fn max_age(&self) -> Option<Duration> {
        self.inner.health.max_age()
    }

    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The entry to add to a commit; call [`Feed::announce`] after it committed.
    pub fn entry(&self, uid: &str, kind: Kind, key_ids: &[String]) -> AppResult<Write> {
        let path = DocPath::root(COLLECTION, &uuid::Uuid::new_v4().simple().to_string())?;
        let expire = value::now()
            .checked_add(jiff::SignedDuration::try_from(RETENTION).map_err(AppError::internal)?)
            .map_err(AppError::internal)?;
        let mut f = Fields::new();
        f.insert("uid".into(), value::string(uid));
        f.insert("kind".into(), value::string(kind.as_str()));
        f.insert(
            "keyIds".into(),
            value::array(key_ids.iter().map(|k| value::string(k.clone())).collect()),
        );
        f.insert("origin".into(), value::string(self.inner.origin.clone()));
        f.insert("expireAt".into(), value::timestamp(expire));
        Ok(Write::set(path, f).server_time("at"))
    }

    /// Wakes the other instances after a commit that carried entries: one
    /// increment of a random head, shared by announcements made meanwhile. A
    /// failure is logged, never the caller's: the others' periodic catch-up
    /// finds the entries anyway.
    pub async fn announce(&self) {
        let inner = &self.inner;
        let ticket = inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // Queued behind a slow increment no longer than the request may take.
        let Some(_turn) = store::deadline::within(inner.bumping.lock()).await else {
            inner.metrics.feed_event("announce_failed");
            return;
        };
        if inner.announced.load(Ordering::SeqCst) >= ticket {
            inner.metrics.feed_event("announce_shared");
            return;
        }
        // Every ticket taken so far belongs to a commit that is done: this increment covers them.
        let upto = inner.requested.load(Ordering::SeqCst);
        let shard = rand::random::<u32>() % SHARDS;
        let bump = head_path(shard).map(|p| vec![Write::transform(p).increment("seq", 1)]);
        match bump {
            Ok(w) => match inner.store.commit(w).await {
                Ok(_) => {
                    inner.announced.fetch_max(upto, Ordering::SeqCst);
                    inner.metrics.feed_event("announce");
                }
                Err(e) => {
                    inner.metrics.feed_event("announce_failed");
                    tracing::warn!(error = %e, "could not announce an invalidation; other instances catch up within seconds");
                }
            },
            Err(e) => tracing::error!(error = %e, "invalid head path"),
        }
    }

    /// Publishes an entry in a commit of its own, then announces it: for writes
    /// whose staleness elsewhere only affects cached lists. Failures are logged.
    pub async fn publish(&self, uid: &str, kind: Kind) {
        let written = match self.entry(uid, kind, &[]) {
            Ok(w) => store::commit_chunked(self.inner.store.as_ref(), vec![w])
                .await
                .map_err(AppError::from),
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => self.announce().await,
            Err(e) => {
                self.inner.metrics.feed_event("publish_failed");
                tracing::warn!(error = %e, uid, kind = kind.as_str(), "could not publish an invalidation; \
                    other instances keep cached lists until their TTL");
            }
        }
    }
}

pub(crate) fn head_path(shard: u32) -> AppResult<DocPath> {
    Ok(DocPath::root(HEADS, &shard.to_string())?)
}

/// Every head document (what instances listen to).
pub(crate) fn head_paths() -> AppResult<Vec<DocPath>> {
    (0..SHARDS).map(head_path).collect()
}
