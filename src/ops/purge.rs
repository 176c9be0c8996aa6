//! `funnelflow purge [--dry-run]`: removes analytics events older than the
//! retention, idempotency records past their expiry and invalidation-feed
//! entries past theirs (`domain::feed`), a page (≤ 500) per commit.
//!
//! Safe beside the running service and against itself: each delete carries
//! the update time it was read with, so a record the service rewrote meanwhile
//! (a key reused after expiry) is kept; when a batch fails that way, its
//! documents are deleted one by one and the changed or vanished ones skipped.
//! Running it twice removes nothing the second time.

use crate::domain::retention;
use crate::store::{Doc, MAX_WRITES_PER_COMMIT, Precondition, Query, Store, StoreError, Timestamp, Write};

#[derive(Debug, Clone)]
pub struct Spec {
    pub retention_days: u32,
    pub now: Timestamp,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Removed (or, in a dry run, found).
    pub analytics: u64,
    pub idempotency: u64,
    /// Invalidation-feed entries past their retention.
    pub invalidations: u64,
    pub analytics_cutoff: Timestamp,
}

const PAGE: u32 = MAX_WRITES_PER_COMMIT as u32;

pub async fn run(store: &dyn Store, spec: &Spec) -> anyhow::Result<Report> {
    let cutoff = retention::cutoff(spec.now, spec.retention_days);
    let analytics = sweep(
        store,
        retention::expired_analytics(cutoff, PAGE),
        spec.dry_run,
        "analytics",
    )
    .await?;
    let idempotency = sweep(
        store,
        retention::expired_idempotency(spec.now, PAGE),
        spec.dry_run,
        "idempotency",
    )
    .await?;
    let invalidations = sweep(
        store,
        crate::domain::feed::expired_entries(spec.now, PAGE),
        spec.dry_run,
        "invalidations",
    )
    .await?;
    Ok(Report {
        analytics,
        idempotency,
        invalidations,
        analytics_cutoff: cutoff,
    })
}

/// Deletes (or counts) everything `query` matches, page by page. Pages go on
/// after the last document seen, so documents the service keeps are not read
/// again and the sweep ends.
async fn sweep(store: &dyn Store, query: Query, dry_run: bool, what: &str) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut cursor = None;
    loop {
        let q = query.clone().after(cursor.take());
        let (page, _) = super::with_backoff(|| store.query(&q)).await?;
        let full = page.len() >= PAGE as usize;
        cursor = page.last().map(|d| q.cursor_after(d));
        let removed = if dry_run {
            page.len() as u64
        } else {
            delete_unchanged(store, &page).await?
        };
        total += removed;
        if !page.is_empty() {
            let verb = if dry_run { "would remove" } else { "removed" };
            tracing::info!(what, removed, total, "purge {verb} a batch");
        }
        if !full {
            return Ok(total);
        }
    }
}

fn delete_if_unchanged(d: &Doc) -> Write {
    Write::delete(d.path.clone()).precondition(Precondition::UpdateTime(d.update_time))
}

/// Deletes the documents as they were read; returns how many went.
async fn delete_unchanged(store: &dyn Store, docs: &[Doc]) -> anyhow::Result<u64> {
    if docs.is_empty() {
        return Ok(0);
    }
    let batch: Vec<Write> = docs.iter().map(delete_if_unchanged).collect();
    match super::with_backoff(|| store.commit(batch.clone())).await {
        Ok(_) => return Ok(docs.len() as u64),
        Err(StoreError::FailedPrecondition(_) | StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // Something changed under us: one by one, keeping what changed.
    let mut removed = 0;
    for d in docs {
        match super::with_backoff(|| store.commit(vec![delete_if_unchanged(d)])).await {
            Ok(_) => removed += 1,
            Err(StoreError::FailedPrecondition(_) | StoreError::NotFound(_)) => {
                tracing::info!(path = %d.path, "purge: changed or removed meanwhile, kept");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}
