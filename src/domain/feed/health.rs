//! Whether this instance is in sync with the feed, read on every cached
//! authorization decision: a few atomics, no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{SHORT_TTL, STALE_AFTER};

/// Shared by the follower (which moves it) and the caches (which read it).
#[derive(Clone)]
pub struct FeedHealth {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 at which the stream became live; 0: not live.
    live_since: AtomicU64,
    /// Milliseconds since `epoch` + 1 at which the last successful catch-up
    /// started (it saw everything committed before); 0: none yet.
    synced_at: AtomicU64,
}

impl Default for FeedHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedHealth {
    /// Not current until a follower says so: a process without one (a CLI
    /// command) trusts cached authorization for [`SHORT_TTL`] only.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                live_since: AtomicU64::new(0),
                synced_at: AtomicU64::new(0),
            }),
        }
    }

    /// A point in time as stored here (never 0).
    pub(super) fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.epoch).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(super) fn set_live(&self, live: bool) {
        let v = if live { self.stamp(Instant::now()) } else { 0 };
        self.inner.live_since.store(v, Ordering::SeqCst);
    }

    pub(super) fn is_live(&self) -> bool {
        self.inner.live_since.load(Ordering::SeqCst) != 0
    }

    /// A catch-up that started at `started` succeeded.
    pub(super) fn synced(&self, started: Instant) {
        self.inner
            .synced_at
            .fetch_max(self.stamp(started), Ordering::SeqCst);
    }

    /// How long ago the last successful catch-up started (`None`: never).
    pub fn since_sync(&self) -> Option<Duration> {
        let at = self.inner.synced_at.load(Ordering::SeqCst);
        let now = self.stamp(Instant::now());
        (at != 0).then(|| Duration::from_millis(now.saturating_sub(at)))
    }

    /// Live stream, and a catch-up that started after it went live and within [`STALE_AFTER`].
    pub fn is_current(&self) -> bool {
        let live = self.inner.live_since.load(Ordering::SeqCst);
        let synced = self.inner.synced_at.load(Ordering::SeqCst);
        live != 0
            && synced >= live
            && self.stamp(Instant::now()).saturating_sub(synced) < STALE_AFTER.as_millis() as u64
    }

    /// `None` while current; else how old a cached authorization decision may be.
    pub fn max_age(&self) -> Option<Duration> {
        if self.is_current() { None } else { Some(SHORT_TTL) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_needs_a_live_stream_and_a_recent_catch_up_after_it() {
        let h = FeedHealth::new();
        assert!(!h.is_current());
        assert_eq!(h.max_age(), Some(SHORT_TTL));
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        h.set_live(true);
        // A catch-up that started before the stream went live does not count.
        h.synced(before);
        assert!(!h.is_current());
        h.synced(Instant::now());
        assert!(h.is_current());
        assert_eq!(h.max_age(), None);
        h.set_live(false);
        assert!(!h.is_current());
    }
}
