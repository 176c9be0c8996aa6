//! Per-principal rate limits (fixed windows, per instance) and the IETF
//! `RateLimit` / `RateLimit-Policy` fields that describe them.

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
        }
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
        let now = Instant::now();
        let (used, started) = match window.lock() {
            Ok(mut w) => {
                if now.duration_since(w.started) >= self.spec.window {
                    w.started = now;
                    w.used = 0;
                }
                if w.used < self.spec.requests {
                    w.used += 1;
                    (w.used, w.started)
                } else {
                    (self.spec.requests + 1, w.started)
                }
            }
            // A poisoned lock only means a panic elsewhere; do not punish the caller.
            Err(_) => (1, now),
        };
        let elapsed = now.duration_since(started);
        let reset = self.spec.window.saturating_sub(elapsed);
        Decision {
            policy: self.policy,
            allowed: used <= self.spec.requests,
            quota: self.spec.requests,
            window_secs: self.spec.window.as_secs().max(1),
            remaining: self.spec.requests.saturating_sub(used.min(self.spec.requests)),
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
}
