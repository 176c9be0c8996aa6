//! The receiving side: a listen stream on the heads, a catch-up loop over the
//! entries, and a monitor that reports the feed's health.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;

use super::{COLLECTION, Feed, Kind, MAX_REPLAY, PROBE_INTERVAL, SHORT_TTL, STALE_AFTER, head_paths};
use crate::domain::analyses::Analyses;
use crate::domain::api_keys::ApiKeys;
use crate::domain::erasure::Erasure;
use crate::domain::personas::Personas;
use crate::domain::users::Users;
use crate::store::{self, Direction, Doc, ListenEvent, Op, Query, Timestamp, value};

/// Evicting twice is harmless, missing an entry is not: read this far back.
const OVERLAP: Duration = Duration::from_millis(500);
/// Entries read per query of a catch-up.
const PAGE: u32 = 500;
/// Least time between two catch-ups, so a burst of writes costs a few reads.
const MIN_SPACING: Duration = Duration::from_millis(20);
/// Reconnection backoff of the listen stream.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The caches an entry can name.
#[derive(Clone)]
pub struct Evictor {
    pub users: Users,
    pub analyses: Analyses,
    pub personas: Personas,
    pub api_keys: ApiKeys,
    pub erasure: Erasure,
}

impl Evictor {
    async fn evict(&self, uid: &str, kind: Option<Kind>, key_ids: &[String]) {
        let everything = matches!(kind, Some(Kind::Erasure) | None);
        if everything || matches!(kind, Some(Kind::Profile | Kind::Analyses)) {
            self.users.invalidate(uid).await;
        }
        if everything || kind == Some(Kind::Analyses) {
            self.analyses.invalidate(uid).await;
        }
        if everything || matches!(kind, Some(Kind::Analyses | Kind::Personas)) {
            self.personas.invalidate(uid).await;
        }
        if everything {
            self.erasure.forget(uid).await;
        }
        for k in key_ids {
            self.api_keys.forget(k).await;
        }
    }

    async fn flush(&self) {
        self.users.flush();
        self.analyses.flush();
        self.personas.flush();
        self.api_keys.flush();
        self.erasure.flush();
    }
}

/// Starts following the feed: the listen stream, the catch-up loop and the
/// health monitor, as tasks of the current runtime (they end with it).
pub fn spawn(feed: Feed, evictor: Evictor) {
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(feed.clone(), wake.clone()));
    tokio::spawn(catch_up_loop(feed.clone(), evictor, wake));
    tokio::spawn(monitor(feed));
}

/// Keeps a listen stream on the heads open; every change wakes the catch-up.
async fn listen(feed: Feed, wake: Arc<Notify>) {
    let heads = match head_paths() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "invalidation feed: invalid head paths");
            return;
        }
    };
    let mut pause = RECONNECT_FIRST;
    loop {
        match feed.store().listen(&heads).await {
            Err(e) => tracing::debug!(error = %e, "invalidation feed: cannot listen yet"),
            Ok(mut stream) => {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(ListenEvent::Current) => {
                            feed.health().set_live(true);
                            pause = RECONNECT_FIRST;
                            wake.notify_one();
                        }
                        Ok(ListenEvent::Changed(_)) => wake.notify_one(),
                        Err(e) => {
                            tracing::debug!(error = %e, "invalidation feed: listen stream broke");
                            break;
                        }
                    }
                }
            }
        }
        if feed.health().is_live() {
            feed.metrics().feed_event("disconnected");
        }
        feed.health().set_live(false);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Where the catch-up reads from, and the entries it has already applied.
struct Cursor {
    /// The latest `at` seen.
    at: Timestamp,
    /// Entries within the overlap, by id, with their `at`.
    seen: HashMap<String, Timestamp>,
}

impl Cursor {
    fn from_now() -> Self {
        Self {
            at: minus(value::now(), OVERLAP),
            seen: HashMap::new(),
        }
    }
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(t)
}

async fn catch_up_loop(feed: Feed, evictor: Evictor, wake: Arc<Notify>) {
    let mut cursor = Cursor::from_now();
    let mut last_ok = Instant::now();
    let mut last_run: Option<Instant> = None;
    loop {
        // A wake while a catch-up ran is kept (one permit): the next one runs at once.
        let _ = tokio::time::timeout(PROBE_INTERVAL, wake.notified()).await;
        if let Some(t) = last_run
            && t.elapsed() < MIN_SPACING
        {
            tokio::time::sleep(MIN_SPACING.saturating_sub(t.elapsed())).await;
        }
        let started = Instant::now();
        last_run = Some(started);
        if last_ok.elapsed() > MAX_REPLAY {
            // Too long to replay (or entries already expired): start over.
            evictor.flush().await;
            cursor = Cursor::from_now();
            feed.metrics().feed_event("flush");
            tracing::warn!(
                gap_secs = last_ok.elapsed().as_secs(),
                "invalidation feed: out of sync for too long, flushed every cache"
            );
        }
        match catch_up(&feed, &evictor, &mut cursor).await {
            Ok(()) => {
                feed.health().synced(started);
                last_ok = started;
            }
            Err(e) => {
                feed.metrics().feed_event("catch_up_failed");
                tracing::debug!(error = %e, "invalidation feed: catch-up failed");
            }
        }
    }
}

/// Reads every entry after the cursor (page by page) and applies the new ones.
async fn catch_up(feed: &Feed, evictor: &Evictor, cursor: &mut Cursor) -> store::StoreResult<()> {
    let from = minus(cursor.at, OVERLAP);
    let mut after = None;
    loop {
        let q = entries_after(from).after(after.take()).limit(PAGE);
        let page = feed.store().query(&q).await;
        // Counted as it completes, as the store metrics count it: what the feed costs.
        feed.metrics().feed_event("read");
        let page = page?;
        for doc in &page {
            apply(feed, evictor, cursor, doc).await;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(q.cursor_after(last)),
            _ => break,
        }
    }
    cursor.seen.retain(|_, at| *at >= from);
    Ok(())
}

async fn apply(feed: &Feed, evictor: &Evictor, cursor: &mut Cursor, doc: &Doc) {
    let Some(at) = doc.field("at").and_then(value::as_timestamp) else {
        return;
    };
    if cursor.seen.insert(doc.id().to_owned(), at).is_some() {
        return;
    }
    cursor.at = cursor.at.max(at);
    let text = |f: &str| doc.field(f).and_then(value::as_str).unwrap_or_default();
    if text("origin") == feed.origin() {
        return;
    }
    let uid = text("uid");
    // An unknown kind (a newer version wrote it) evicts everything of the user.
    let kind: Option<Kind> = serde_json::from_value(serde_json::Value::String(text("kind").into())).ok();
    let key_ids: Vec<String> = doc
        .field("keyIds")
        .and_then(value::as_array)
        .map(|a| a.iter().filter_map(value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if !uid.is_empty() {
        evictor.evict(uid, kind, &key_ids).await;
    } else {
        for k in &key_ids {
            evictor.api_keys.forget(k).await;
        }
    }
    feed.metrics().feed_event("applied");
    let lag = value::now().duration_since(at);
    feed.metrics().feed_lag.observe(lag.as_secs_f64().max(0.0));
}

/// Entries committed after `from`, oldest first.
pub fn entries_after(from: Timestamp) -> Query {
    Query::collection(None, COLLECTION)
        .filter("at", Op::Gt, value::timestamp(from))
        .order("at", Direction::Asc)
}

/// Entries past the retention (for `funnelflow purge`, where no TTL policy
/// removed them), oldest first.
pub fn expired_entries(now: Timestamp, page: u32) -> Query {
    Query::collection(None, COLLECTION)
        .filter("at", Op::Lt, value::timestamp(minus(now, super::RETENTION)))
        .order("at", Direction::Asc)
        .limit(page)
}

/// Logs when the feed stops or starts being current (and sets the gauge then;
/// `/metrics` sets it again when scraped, so it is never a tick behind).
async fn monitor(feed: Feed) {
    let mut was_current = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticker.tick().await;
        let current = feed.health().is_current();
        if was_current == Some(current) {
            continue;
        }
        feed.report_health();
        let since_sync = feed.health().since_sync().map(|d| d.as_millis());
        match (was_current, current) {
            (_, true) => tracing::info!(since_sync_ms = since_sync, "invalidation feed: current"),
            (Some(true), false) => tracing::warn!(
                live = feed.health().is_live(),
                since_sync_ms = since_sync,
                stale_after_ms = STALE_AFTER.as_millis() as u64,
                short_ttl_ms = SHORT_TTL.as_millis() as u64,
                "invalidation feed: NOT current; cached keys, roles and plans now expire after the short TTL"
            ),
            _ => {}
        }
        was_current = Some(current);
    }
}
