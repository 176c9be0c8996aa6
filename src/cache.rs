//! One memory budget for every in-process cache (`FUNNELFLOW_CACHE_MB`), split
//! among them, and the byte weights their moka weighers charge.
//!
//! Weights approximate heap bytes: the JSON size of a value (its strings
//! dominate, and serializing to a counting sink allocates nothing) plus a fixed
//! per-entry overhead for the key, moka's bookkeeping and the allocations.

use std::io;

use serde::Serialize;

/// Charged per entry on top of its key and value: moka's node, the key's
/// allocation, `Arc`s and allocator rounding.
pub const ENTRY_OVERHEAD: u64 = 160;

/// The caches that share the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// User profiles (`GET /v1/me`, every authenticated request).
    Profiles,
    /// Unfiltered first pages of analysis history: the largest values.
    HistoryPages,
    /// First pages of persona lists.
    PersonaLists,
    /// Per-day trend counters.
    Trends,
    /// Verified ID tokens.
    IdTokens,
    /// API-key lookups and the `lastUsedAt` throttle.
    ApiKeys,
    /// Rate-limit windows per principal.
    RateLimits,
    /// Per-user cache generations (see `domain::freshness`).
    Generations,
}

impl Share {
    /// Percent of the budget; they add up to 100.
    fn percent(self) -> u64 {
        match self {
            Self::Profiles => 20,
            Self::HistoryPages => 33,
            Self::PersonaLists => 15,
            Self::Trends => 10,
            Self::IdTokens => 8,
            Self::ApiKeys => 4,
            Self::RateLimits => 6,
            Self::Generations => 4,
        }
    }

    pub const ALL: [Share; 8] = [
        Self::Profiles,
        Self::HistoryPages,
        Self::PersonaLists,
        Self::Trends,
        Self::IdTokens,
        Self::ApiKeys,
        Self::RateLimits,
        Self::Generations,
    ];
}

/// The total budget in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    total: u64,
}

impl CacheBudget {
    pub fn new(total_bytes: u64) -> Self {
        Self { total: total_bytes }
    }

    /// The bytes `share` may hold (at least one large entry's worth, so a tiny
    /// budget still caches something).
    pub fn bytes(&self, share: Share) -> u64 {
        (self.total / 100 * share.percent()).max(64 * 1024)
    }
}

impl Default for CacheBudget {
    /// The default of `FUNNELFLOW_CACHE_MB`: 64 MiB.
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

/// Counts bytes written; discards them.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The JSON size of `value`, in bytes.
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut c = Counter(0);
    // Serializing our own types cannot fail; an error would only undercount.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// A moka weight: key and value bytes plus the entry overhead, saturated to `u32`.
pub fn weight(key_bytes: usize, value_bytes: u64) -> u32 {
    u32::try_from(ENTRY_OVERHEAD + key_bytes as u64 + value_bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_budget() {
        let total: u64 = Share::ALL.iter().map(|s| s.percent()).sum();
        assert_eq!(total, 100);
        let b = CacheBudget::new(64 << 20);
        let sum: u64 = Share::ALL.iter().map(|s| b.bytes(*s)).sum();
        assert!(sum <= 64 << 20, "{sum}");
        assert!(sum > 63 << 20, "{sum}");
        // A tiny budget still leaves each cache room for an entry.
        assert_eq!(CacheBudget::new(1).bytes(Share::Trends), 64 * 1024);
    }

    #[test]
    fn weights_follow_the_serialized_size() {
        assert_eq!(json_bytes("abc"), 5);
        assert_eq!(json_bytes(&vec!["x".repeat(1000); 10]), 10 * 1002 + 9 + 2);
        assert_eq!(weight(10, 100), (ENTRY_OVERHEAD + 110) as u32);
        assert_eq!(weight(0, u64::MAX / 2), u32::MAX);
    }
}
