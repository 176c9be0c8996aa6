//! Per-principal rate limits (fixed windows, counted per instance) and the IETF
//! `RateLimit` / `RateLimit-Policy` fields that describe them.
//!
//! With `FUNNELFLOW_RATE_LIMIT_SCOPE=global` each instance enforces its share of
//! the configured quota, `ceil(quota / live instances)` (the count comes from
//! `domain::instances`), so N instances together allow about the configured
//! quota when the load balancer spreads a principal's requests over them. No
//! request costs a store write.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::cache;
use crate::config::RateSpec;

/// Heap bytes of one window (the `Arc<Mutex<Window>>` allocation).
const WINDOW_BYTES: u64 = 48;

/// The outcome of counting one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub policy: &'static str,
    pub allowed: bool,
    pub quota: u32,
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until the window resets (≥ 1).
    pub reset_secs: u64,
}

impl Decision {
    /// `RateLimit-Policy: "default";q=100;w=10`
    pub fn policy_header(&self) -> String {
        format!("\"{}\";q={};w={}", self.policy, self.quota, self.window_secs)
    }
    /// `RateLimit: "default";r=42;t=7`
    pub fn limit_header(&self) -> String {
        format!("\"{}\";r={};t={}", self.policy, self.remaining, self.reset_secs)
    }
}

struct Window {
    started: Instant,
    used: u32,
}

#[derive(Clone)]
pub struct RateLimiter {
    policy: &'static str,
    spec: RateSpec,
    windows: Cache<String, Arc<Mutex<Window>>>,
    /// The number of instances sharing the quota (global scope), else `None`.
    instances: Option<Arc<AtomicU32>>,
}

impl RateLimiter {
    /// Windows are held within `bytes` (the rate-limit share of `FUNNELFLOW_CACHE_MB`).
    pub fn new(policy: &'static str, spec: RateSpec, bytes: u64) -> Self {
        Self {
            policy,
            spec,
            // Idle principals' windows expire with the window itself.
            windows: Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &String, _| cache::weight(k.len(), WINDOW_BYTES))
                .time_to_idle(spec.window.max(Duration::from_secs(1)))
                .build(),
            instances: None,
        }
    }

    /// Shares the quota with the instances `live` counts (global scope).
    pub fn shared_by(mut self, live: Arc<AtomicU32>) -> Self {
        self.instances = Some(live);
        self
    }

    /// How many instances share the quota (1 when counted per instance).
    fn sharers(&self) -> u32 {
        self.instances
            .as_ref()
            .map_or(1, |n| n.load(Ordering::Relaxed))
            .max(1)
    }

    /// Counts a request of `principal` and says whether it may proceed.
    pub async fn check(&self, principal: &str) -> Decision {
        let window = self
            .windows
            .get_with(principal.to_owned(), async {
                Arc::new(Mutex::new(Window {
                    started: Instant::now(),
                    used: 0,
                }))
            })
            .await;
        let sharers = self.sharers();
        // This instance's share, rounded up so a small quota never becomes 0.
        let quota = self.spec.requests.div_ceil(sharers).max(1);
        let now = Instant::now();
        let (used, started) = match window.lock() {
            Ok(mut w) => {
                if now.duration_since(w.started) >= self.spec.window {
                    w.started = now;
                    w.used = 0;
                }
                if w.used < quota {
                    w.used += 1;
                    (w.used, w.started)
                } else {
                    (quota + 1, w.started)
                }
            }
            // A poisoned lock only means a panic elsewhere; do not punish the caller.
            Err(_) => (1, now),
        };
        let elapsed = now.duration_since(started);
        let reset = self.spec.window.saturating_sub(elapsed);
        Decision {
            policy: self.policy,
            allowed: used <= quota,
            // The policy clients configure against is the whole quota; what is
            // left of it is estimated from this instance's share.
            quota: self.spec.requests,
            window_secs: self.spec.window.as_secs().max(1),
            remaining: quota
                .saturating_sub(used.min(quota))
                .saturating_mul(sharers)
                .min(self.spec.requests),
            reset_secs: reset.as_secs().max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_principal_and_resets() {
        let rl = RateLimiter::new(
            "default",
            RateSpec {
                requests: 2,
                window: Duration::from_millis(300),
            },
            1 << 20,
        );
        assert!(rl.check("a").await.allowed);
        let d = rl.check("a").await;
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!rl.check("a").await.allowed);
        assert!(rl.check("b").await.allowed, "other principals are unaffected");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(rl.check("a").await.allowed, "a new window");
        assert_eq!(d.policy_header(), "\"default\";q=2;w=1");
    }

    #[tokio::test]
    async fn a_global_quota_is_shared_by_the_live_instances() {
        let live = Arc::new(AtomicU32::new(3));
        let spec = RateSpec {
            requests: 10,
            window: Duration::from_secs(60),
        };
        let rl = RateLimiter::new("default", spec, 1 << 20).shared_by(live.clone());
        // ceil(10 / 3) = 4 on this instance.
        let first = rl.check("a").await;
        assert_eq!(
            (first.quota, first.remaining),
            (10, 9),
            "3 left here, times 3 instances"
        );
        for _ in 0..3 {
            assert!(rl.check("a").await.allowed);
        }
        let refused = rl.check("a").await;
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);

        // One instance left: the whole quota is this one's.
        live.store(1, Ordering::Relaxed);
        assert!(rl.check("a").await.allowed);
        // A count of 0 (never beaten yet) is read as 1, and a tiny quota stays ≥ 1.
        live.store(0, Ordering::Relaxed);
        assert!(rl.check("b").await.allowed);
        live.store(50, Ordering::Relaxed);
        assert!(rl.check("c").await.allowed, "ceil(10 / 50) is 1, never 0");
        assert!(!rl.check("c").await.allowed);
    }
}
