//! Streamed reads: large result sets consumed item by item.
//!
//! On Firestore a cursor-paged walk costs the emulator time proportional to
//! everything after each cursor (N²/page in all), while one streamed query is
//! linear; gRPC flow control holds the server back while the consumer is busy,
//! so memory stays flat. The paged fallbacks here serve the embedded store
//! (each chunk read under the lock, released between chunks) and any `Store`
//! that does not stream.

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::time::Instant;

use super::{Doc, DocPath, Query, Store, StoreError, StoreResult};

/// Items per chunk of the paged fallbacks.
pub const CHUNK: u32 = 500;

/// A stream of one error.
pub fn failed<'a, T: Send + 'a>(e: StoreError) -> BoxStream<'a, StoreResult<T>> {
    stream::once(async move { Err(e) }).boxed()
}

/// `q` read chunk by chunk with cursors (its own cursor and limit honoured).
pub fn paged_query<'a, S: Store + ?Sized>(store: &'a S, q: &Query) -> BoxStream<'a, StoreResult<Doc>> {
    let total = q.limit;
    // (cursor to continue after, items still allowed, done)
    let state = (q.start_after.clone(), total, false);
    let q = q.clone();
    stream::try_unfold(state, move |(after, left, done)| {
        let q = q.clone();
        async move {
            let chunk = left.map_or(CHUNK, |l| l.min(CHUNK));
            if done || chunk == 0 {
                return Ok(None);
            }
            let page_q = Query {
                start_after: after,
                limit: Some(chunk),
                ..q
            };
            let docs = store.query(&page_q).await?;
            let full = docs.len() >= chunk as usize;
            let next = docs.last().map(|d| page_q.cursor_after(d));
            let left = left.map(|l| l.saturating_sub(u32::try_from(docs.len()).unwrap_or(u32::MAX)));
            Ok(Some((docs, (next, left, !full))))
        }
    })
    .map(|r| stream::iter(into_items(r)))
    .flatten()
    .boxed()
}

/// The descendants of `parent` read chunk by chunk with [`Store::descendants`].
pub fn paged_descendants<'a, S: Store + ?Sized>(
    store: &'a S,
    parent: &DocPath,
) -> BoxStream<'a, StoreResult<DocPath>> {
    let parent = parent.clone();
    stream::try_unfold((None, false), move |(after, done): (Option<DocPath>, bool)| {
        let parent = parent.clone();
        async move {
            if done {
                return Ok(None);
            }
            let page = store.descendants(&parent, after.as_ref(), CHUNK).await?;
            let full = page.len() >= CHUNK as usize;
            let next = page.last().cloned();
            Ok(Some((page, (next, !full))))
        }
    })
    .map(|r| stream::iter(into_items(r)))
    .flatten()
    .boxed()
}

fn into_items<T>(r: StoreResult<Vec<T>>) -> Vec<StoreResult<T>> {
    match r {
        Ok(items) => items.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    }
}

/// Bounds a stream by time without bounding its length: the first item must
/// come by `first` (a call's usual bound), each later one within `idle` of
/// being asked for (time the consumer spends elsewhere does not count). A
/// timeout ends the stream with `Unavailable`; the stream ends after any error.
pub fn idle_bounded<'a, T: Send + 'a>(
    op: &'static str,
    inner: BoxStream<'a, StoreResult<T>>,
    first: Instant,
    idle: std::time::Duration,
) -> BoxStream<'a, StoreResult<T>> {
    // `Some(at)`: the first item's bound; later ones count from when they are asked for.
    stream::unfold(Some((inner, Some(first))), move |state| async move {
        let (mut inner, first) = state?;
        let at = first.unwrap_or_else(|| Instant::now() + idle);
        match tokio::time::timeout_at(at, inner.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(item))) => Some((Ok(item), Some((inner, None)))),
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Err(_) => {
                let why = match first {
                    Some(_) => format!("{op}: the store did not answer in time"),
                    None => format!("{op}: the store sent nothing for {} ms", idle.as_millis()),
                };
                Some((Err(StoreError::Unavailable(why)), None))
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream::{self, StreamExt};

    use super::*;

    /// Yields `n` items, then never another.
    fn then_stalls(n: u32) -> BoxStream<'static, StoreResult<u32>> {
        stream::iter((0..n).map(Ok)).chain(stream::pending()).boxed()
    }

    #[tokio::test]
    async fn a_stalled_stream_fails_but_a_slow_consumer_does_not() {
        let idle = Duration::from_millis(100);
        let mut s = idle_bounded("t", then_stalls(2), Instant::now() + idle, idle);
        assert!(matches!(s.next().await, Some(Ok(0))));
        // The consumer is busy for longer than the idle bound: not the store's fault.
        tokio::time::sleep(idle * 3).await;
        assert!(matches!(s.next().await, Some(Ok(1))));
        let started = Instant::now();
        assert!(matches!(s.next().await, Some(Err(StoreError::Unavailable(_)))));
        assert!(started.elapsed() >= idle);
        assert!(s.next().await.is_none(), "the stream ends after its error");
    }

    #[tokio::test]
    async fn the_first_item_has_its_own_bound() {
        let first = Instant::now() + Duration::from_millis(50);
        let mut s = idle_bounded("t", then_stalls(0), first, Duration::from_secs(60));
        let started = Instant::now();
        assert!(matches!(s.next().await, Some(Err(StoreError::Unavailable(_)))));
        assert!(started.elapsed() < Duration::from_secs(5));
        // A long stream is not bounded as a whole.
        let total = Duration::from_millis(200);
        let slow = stream::iter(0..8u32)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Ok(i)
            })
            .boxed();
        let all: Vec<StoreResult<u32>> = idle_bounded("t", slow, Instant::now() + total, total)
            .collect()
            .await;
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(Result::is_ok));
    }
}
