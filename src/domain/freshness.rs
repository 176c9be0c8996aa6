//! Keeps caches from resurrecting stale data: a fill that read the store
//! before a write invalidated the cache must not be stored after it. Every
//! invalidation bumps the user's generation; a fill is kept only if the
//! generation did not move while it was reading.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

#[derive(Clone)]
pub struct Generations(Cache<String, Arc<AtomicU64>>);

impl Default for Generations {
    fn default() -> Self {
        // Idle far longer than any request: an entry only goes when nobody reads.
        Self(
            Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(2 * 3600))
                .build(),
        )
    }
}

impl Generations {
    async fn counter(&self, uid: &str) -> Arc<AtomicU64> {
        self.0
            .get_with_by_ref(uid, async { Arc::new(AtomicU64::new(0)) })
            .await
    }

    /// Take this before reading the store for a cache fill.
    pub async fn current(&self, uid: &str) -> u64 {
        self.counter(uid).await.load(Ordering::SeqCst)
    }

    /// Call before dropping `uid`'s cached entries.
    pub async fn bump(&self, uid: &str) {
        self.counter(uid).await.fetch_add(1, Ordering::SeqCst);
    }

    /// Stores `value` unless `uid` was invalidated since generation `seen`.
    pub async fn insert_if_fresh<K, V>(&self, uid: &str, seen: u64, cache: &Cache<K, V>, key: K, value: V)
    where
        K: Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.current(uid).await != seen {
            return;
        }
        cache.insert(key.clone(), value).await;
        // An invalidation between the check and the insert: undo.
        if self.current(uid).await != seen {
            cache.invalidate(&key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fill_that_raced_a_write_is_dropped() {
        let g = Generations::default();
        let cache: Cache<String, u32> = Cache::new(10);
        let seen = g.current("u").await;
        g.bump("u").await; // a write happened while we were reading
        g.insert_if_fresh("u", seen, &cache, "k".into(), 1).await;
        assert_eq!(cache.get("k").await, None);
        let seen = g.current("u").await;
        g.insert_if_fresh("u", seen, &cache, "k".into(), 2).await;
        assert_eq!(cache.get("k").await, Some(2));
        // Other users are independent.
        let other = g.current("v").await;
        g.bump("u").await;
        g.insert_if_fresh("v", other, &cache, "kv".into(), 3).await;
        assert_eq!(cache.get("kv").await, Some(3));
    }
}
