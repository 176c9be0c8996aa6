//! Per-user caches that never resurrect stale data, and never scan to invalidate.
//!
//! Each user has a small fixed set of keys (`keys`: e.g. the two persona sorts),
//! so no request parameter can multiply a user's entries, and invalidating a
//! user removes exactly those keys: no predicate over the whole cache.
//!
//! A fill that read the store before a write invalidated the user must not be
//! stored after it. Every invalidation first moves the user's *generation* to a
//! fresh value; a fill takes the generation before reading and is kept only if
//! it did not move (checked before and after the insert). Generation values come
//! from one counter that only grows, so a counter evicted and recreated never
//! repeats an old value: a fill in flight then is dropped, which is safe. Counters
//! only matter while fills are in flight, so their share of the budget is small.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::cache;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Generations {
    counters: Cache<String, Arc<AtomicU64>>,
    /// The source of every generation value: strictly increasing.
    next: Arc<AtomicU64>,
}

impl Generations {
    /// Counters held within `bytes`. Losing one is safe: it comes back with a fresh value.
    pub fn new(bytes: u64) -> Self {
        Self {
            counters: Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &String, _| cache::weight(k.len(), 16))
                // Idle far longer than any request.
                .time_to_idle(Duration::from_secs(2 * 3600))
                .build(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn counter(&self, uid: &str) -> Arc<AtomicU64> {
        self.counters
            .get_with_by_ref(uid, async { Arc::new(AtomicU64::new(self.fresh())) })
            .await
    }

    /// Take this before reading the store for a cache fill.
    pub async fn current(&self, uid: &str) -> u64 {
        self.counter(uid).await.load(Ordering::SeqCst)
    }

    /// Moves `uid` to a fresh generation (call before dropping its entries).
    pub async fn bump(&self, uid: &str) {
        let fresh = self.fresh();
        self.counter(uid).await.store(fresh, Ordering::SeqCst);
    }

    pub(crate) async fn run_pending_tasks(&self) {
        self.counters.run_pending_tasks().await;
    }
}

type Key<K> = (String, K);
/// A cached value with when it was filled (for callers that trust only recent fills).
type Stamped<V> = (Instant, Arc<V>);

/// A cache of per-user values under one byte budget and TTL.
pub struct UserCache<K, V> {
    /// The cache's name in metrics.
    name: &'static str,
    cache: Cache<Key<K>, Stamped<V>>,
    generations: Generations,
    /// Every key one user can have.
    keys: Arc<[K]>,
}

// Cloning shares the cache (the values are behind `Arc`s): no bound on `V`.
impl<K: Clone, V> Clone for UserCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            cache: self.cache.clone(),
            generations: self.generations.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<K, V> UserCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// `weigh` gives a value's approximate heap bytes; `bytes` bounds them all;
    /// `generation_bytes` bounds the generation counters.
    pub fn new(
        name: &'static str,
        ttl: Duration,
        bytes: u64,
        generation_bytes: u64,
        keys: &[K],
        weigh: fn(&V) -> u64,
    ) -> Self {
        Self {
            name,
            cache: Cache::builder()
                .max_capacity(bytes)
                .weigher(move |k: &Key<K>, v: &Stamped<V>| cache::weight(k.0.len(), weigh(&v.1)))
                .time_to_live(ttl)
                .build(),
            generations: Generations::new(generation_bytes),
            keys: keys.into(),
        }
    }

    /// The generation a fill must insert under: take it before reading the store.
    pub async fn generation(&self, uid: &str) -> u64 {
        self.generations.current(uid).await
    }

    /// The cached value of `uid`'s `key`, counting a hit or a miss.
    pub async fn get(&self, uid: &str, key: &K, metrics: &Metrics) -> Option<Arc<V>> {
        self.get_within(uid, key, metrics, None).await
    }

    /// [`UserCache::get`], counting a value filled longer than `max_age` ago as a miss.
    pub async fn get_within(
        &self,
        uid: &str,
        key: &K,
        metrics: &Metrics,
        max_age: Option<Duration>,
    ) -> Option<Arc<V>> {
        let got = self
            .cache
            .get(&(uid.to_owned(), key.clone()))
            .await
            .filter(|(filled, _)| max_age.is_none_or(|m| filled.elapsed() <= m))
            .map(|(_, v)| v);
        match got {
            Some(_) => metrics.cache_hit(self.name),
            None => metrics.cache_miss(self.name),
        }
        got
    }

    /// Stores a fill that took `generation` before reading, unless `uid` was
    /// invalidated since.
    pub async fn insert(&self, uid: &str, generation: u64, key: K, value: Arc<V>) {
        if self.generations.current(uid).await != generation {
            return;
        }
        let key = (uid.to_owned(), key);
        self.cache.insert(key.clone(), (Instant::now(), value)).await;
        // An invalidation between the check and the insert: undo.
        if self.generations.current(uid).await != generation {
            self.cache.invalidate(&key).await;
        }
    }

    /// Drops every cached value of `uid` on this instance.
    pub async fn invalidate(&self, uid: &str) {
        self.generations.bump(uid).await;
        for k in self.keys.iter() {
            self.cache.invalidate(&(uid.to_owned(), k.clone())).await;
        }
    }

    /// Drops every cached value on this instance. A fill in flight may still
    /// land; it read the store after whatever made the caller flush.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// (entries, weighed bytes) after pending evictions, for metrics and tests.
    pub async fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        self.generations.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Metrics::new().unwrap_or_else(|_| std::process::abort())
    }

    fn cache(bytes: u64) -> UserCache<u8, String> {
        UserCache::new("t", Duration::from_secs(60), bytes, 1 << 20, &[0, 1], |v| {
            v.len() as u64
        })
    }

    fn text(v: Option<Arc<String>>) -> Option<String> {
        v.map(|s| s.as_ref().clone())
    }

    #[tokio::test]
    async fn a_fill_that_raced_a_write_is_never_read() {
        let (c, m) = (cache(1 << 20), metrics());
        let seen = c.generation("u").await;
        c.invalidate("u").await; // a write happened while we were reading
        c.insert("u", seen, 0, Arc::new("stale".into())).await;
        assert_eq!(text(c.get("u", &0, &m).await), None);
        let now = c.generation("u").await;
        assert_ne!(now, seen);
        c.insert("u", now, 0, Arc::new("fresh".into())).await;
        assert_eq!(text(c.get("u", &0, &m).await), Some("fresh".into()));
        // Other users are independent.
        let other = c.generation("v").await;
        c.insert("v", other, 1, Arc::new("v".into())).await;
        c.invalidate("u").await;
        assert_eq!(text(c.get("u", &0, &m).await), None);
        assert_eq!(text(c.get("v", &1, &m).await), Some("v".into()));
        // Invalidation drops every key of the user.
        c.insert("v", c.generation("v").await, 0, Arc::new("v0".into()))
            .await;
        c.invalidate("v").await;
        let (entries, _) = c.usage().await;
        assert_eq!(entries, 0);
    }

    #[tokio::test]
    async fn generations_never_repeat_even_when_evicted() {
        let g = Generations::new(1 << 20);
        let a = g.current("u").await;
        g.counters.invalidate("u").await; // evicted
        let b = g.current("u").await;
        assert!(b > a, "{a} then {b}");
        g.bump("u").await;
        assert!(g.current("u").await > b);
    }

    #[tokio::test]
    async fn the_byte_budget_bounds_the_cache() {
        let (c, m) = (cache(200_000), metrics());
        // 1,000 users × 10 KiB values: 10 MB offered to a 200 kB cache.
        for i in 0..1_000 {
            let uid = format!("user{i}");
            let g = c.generation(&uid).await;
            c.insert(&uid, g, 0, Arc::new("x".repeat(10 * 1024))).await;
            let _ = c.get(&uid, &0, &m).await;
        }
        let (entries, bytes) = c.usage().await;
        assert!(bytes <= 200_000, "{bytes} bytes cached");
        assert!(entries <= 20, "{entries} entries");
        assert!(entries >= 1, "the cache still caches");
    }
}
