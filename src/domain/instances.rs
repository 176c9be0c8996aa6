//! Which instances of the service are running, so that per-instance rate-limit
//! budgets can add up to the configured limit (`FUNNELFLOW_RATE_LIMIT_SCOPE=global`)
//! without a store write per request.
//!
//! Each instance keeps a document `instances/{id}` fresh every [`HEARTBEAT`] and
//! counts the documents seen within [`LIVE`]: two small operations per instance
//! per heartbeat, whatever the traffic. An instance that dies without leaving
//! stops counting after [`LIVE`]; until then the others' shares are a little
//! smaller than they could be, which errs on the strict side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::store::{DocPath, Fields, Op, Query, Store, StoreResult, Write, value};

pub const COLLECTION: &str = "instances";
/// How often an instance says it is alive and re-counts the others.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// An instance not seen for this long no longer counts.
pub const LIVE: Duration = Duration::from_secs(60);
/// Kept for a TTL policy on `expireAt` (deploy/README.md): long after `LIVE`.
const EXPIRE_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// This instance's presence and its latest count of live instances (≥ 1).
#[derive(Clone)]
pub struct Presence {
    id: String,
    store: Arc<dyn Store>,
    live: Arc<AtomicU32>,
}

impl Presence {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_id(store, uuid::Uuid::new_v4().simple().to_string())
    }

    /// The presence of the instance `id` (the same id its feed entries carry as `origin`).
    pub fn with_id(store: Arc<dyn Store>, id: String) -> Self {
        Self {
            id,
            store,
            live: Arc::new(AtomicU32::new(1)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The latest count of live instances, shared with whoever divides by it.
    pub fn live(&self) -> Arc<AtomicU32> {
        self.live.clone()
    }

    fn path(&self) -> StoreResult<DocPath> {
        DocPath::root(COLLECTION, &self.id)
    }

    /// Marks this instance alive, then counts the live ones (this one included).
    pub async fn beat(&self) -> StoreResult<u32> {
        let now = value::now();
        let mut fields = Fields::new();
        if let Ok(expire) = now.checked_add(EXPIRE_AFTER) {
            fields.insert("expireAt".into(), value::timestamp(expire));
        }
        // `seenAt` is the store's clock, so the count does not depend on this instance's.
        let mask = fields.keys().cloned().collect();
        self.store
            .commit(vec![
                Write::merge(self.path()?, fields, mask).server_time("seenAt"),
            ])
            .await?;
        let since = now
            .checked_sub(jiff::SignedDuration::try_from(LIVE).unwrap_or_default())
            .unwrap_or(now);
        let n = self.store.count(&live_query(since)).await?;
        let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        self.live.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Beats every [`HEARTBEAT`] until the task is dropped; a failed beat keeps the
    /// last count (the store being down does not change how many instances run).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = 0;
            loop {
                tick.tick().await;
                match self.beat().await {
                    Ok(n) if n != last => {
                        tracing::info!(instances = n, "live instances counted");
                        last = n;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "instance heartbeat failed; keeping the last count"),
                }
            }
        })
    }

    /// Stops counting this instance at once (on a graceful shutdown).
    pub async fn leave(&self) -> StoreResult<()> {
        self.store
            .commit(vec![Write::delete(self.path()?)])
            .await
            .map(|_| ())
    }
}

fn live_query(since: crate::store::Timestamp) -> Query {
    Query::collection(None, COLLECTION).filter("seenAt", Op::Gt, value::timestamp(since))
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    vec![("instances: live ones", live_query(value::now()))]
}
