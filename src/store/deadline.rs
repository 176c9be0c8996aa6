//! One deadline for all of a request's store time.
//!
//! The HTTP layer runs each request under [`per_request`] (`http::deadline`);
//! the deadline travels with the request's task (a tokio task-local). The
//! [`Deadlined`] decorator bounds every store call by what is left of it, so
//! the calls of a request, the transaction retries and the backoff between
//! them together never run past it: the request answers 503 `unavailable` in
//! time, whatever the store does. The clock starts when the request arrives,
//! so the bound holds for the whole answer as the client sees it. Calls outside
//! any request (`funnelflow migrate`, `admin`) are bounded one by one by the
//! same budget.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::time::Instant;

use super::stream::idle_bounded;
use super::{
    Committed, Doc, DocPath, ListenStream, Query, Store, StoreError, StoreResult, Transaction, Write,
};

tokio::task_local! {
    static CURRENT: Deadline;
}

/// Runs `fut` as one request whose store time ends `budget` from now.
pub async fn per_request<F: Future>(budget: Duration, fut: F) -> F::Output {
    Deadline::after(budget).scope(fut).await
}

/// When the store time of the current unit of work (a request) runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The deadline of the task this runs in, if it runs under one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|d| *d).ok()
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// A fresh deadline of the same budget: for work that must still happen
    /// after the request's deadline (releasing what it holds).
    pub fn renewed(&self) -> Self {
        Self::after(self.budget)
    }

    /// Runs `fut` with this deadline as the current one (also in a spawned task,
    /// which does not inherit its spawner's).
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

/// Runs `fut` with `deadline` as the current one, if there is one: how a spawned
/// task carries its request's deadline.
pub async fn carry<F: Future>(deadline: Option<Deadline>, fut: F) -> F::Output {
    match deadline {
        Some(d) => d.scope(fut).await,
        None => fut.await,
    }
}

/// The error of a call cut short by the deadline.
fn expired(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: the store did not answer within the request's deadline"
    ))
}

/// Sleeps `delay` (a retry's backoff), unless that would end past the current
/// deadline: then fails at once, since the retry could not finish in time anyway.
pub async fn backoff(delay: Duration) -> StoreResult<()> {
    if let Some(d) = Deadline::current()
        && Instant::now() + delay >= d.at
    {
        return Err(expired("retry"));
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

/// Waits for `fut` until the current deadline (no bound outside one); `None` when it passed first.
pub async fn within<F: Future>(fut: F) -> Option<F::Output> {
    match Deadline::current() {
        Some(d) => tokio::time::timeout_at(d.at, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// The `Store` decorator that enforces the deadline on every call.
pub struct Deadlined {
    inner: Arc<dyn Store>,
    /// Bound of a call made outside any request.
    budget: Duration,
}

impl Deadlined {
    pub fn wrap(inner: Arc<dyn Store>, budget: Duration) -> Arc<dyn Store> {
        Arc::new(Self { inner, budget })
    }
}

/// The current deadline, or `budget` from now outside one.
fn first_by(budget: Duration) -> Instant {
    Deadline::current().map_or_else(|| Instant::now() + budget, |d| d.at)
}

/// Runs `fut` until the current deadline, or for `budget` outside one.
async fn bounded<T>(op: &str, budget: Duration, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout_at(first_by(budget), fut)
        .await
        .unwrap_or_else(|_| Err(expired(op)))
}

#[async_trait]
impl Store for Deadlined {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> StoreResult<()> {
        bounded("ping", self.budget, self.inner.ping()).await
    }
    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        bounded("get", self.budget, self.inner.get(path)).await
    }
    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        bounded("get_all", self.budget, self.inner.get_all(paths)).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>> {
        bounded("query", self.budget, self.inner.query(query)).await
    }
    async fn count(&self, query: &Query) -> StoreResult<u64> {
        bounded("count", self.budget, self.inner.count(query)).await
    }
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        bounded("commit", self.budget, self.inner.commit(writes)).await
    }
    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>> {
        bounded(
            "list_collection_ids",
            self.budget,
            self.inner.list_collection_ids(parent),
        )
        .await
    }
    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        bounded(
            "descendants",
            self.budget,
            self.inner.descendants(parent, after, limit),
        )
        .await
    }
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        bounded("scan", self.budget, self.inner.scan(after, limit)).await
    }
    /// A stream is not bounded by the request's deadline as a whole (a long,
    /// healthy one must not be cut off): its first item is bounded as a call,
    /// then each item by the budget as an idle timeout.
    fn query_stream<'a>(&'a self, query: &Query) -> BoxStream<'a, StoreResult<Doc>> {
        idle_bounded(
            "query_stream",
            self.inner.query_stream(query),
            first_by(self.budget),
            self.budget,
        )
    }
    fn descendants_stream<'a>(&'a self, parent: &DocPath) -> BoxStream<'a, StoreResult<DocPath>> {
        idle_bounded(
            "descendants_stream",
            self.inner.descendants_stream(parent),
            first_by(self.budget),
            self.budget,
        )
    }
    /// Only opening the stream is bounded: it outlives any request by design.
    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        bounded("listen", self.budget, self.inner.listen(docs)).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        let inner = bounded("begin_transaction", self.budget, self.inner.begin()).await?;
        Ok(Box::new(DeadlinedTx {
            inner,
            budget: self.budget,
        }))
    }
}

/// A transaction whose calls share the deadline of the request that runs it.
struct DeadlinedTx {
    inner: Box<dyn Transaction>,
    budget: Duration,
}

#[async_trait]
impl Transaction for DeadlinedTx {
    async fn get(&mut self, path: &DocPath) -> StoreResult<Option<Doc>> {
        bounded("transaction get", self.budget, self.inner.get(path)).await
    }
    async fn get_all(&mut self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        bounded("transaction get_all", self.budget, self.inner.get_all(paths)).await
    }
    async fn query(&mut self, query: &Query) -> StoreResult<Vec<Doc>> {
        bounded("transaction query", self.budget, self.inner.query(query)).await
    }
    async fn commit(self: Box<Self>, writes: Vec<Write>) -> StoreResult<Committed> {
        bounded("transaction commit", self.budget, self.inner.commit(writes)).await
    }
    /// The rollback runs in a task of its own with a fresh bound, so it still
    /// releases the transaction's locks when the request's deadline has passed
    /// (the store may answer again later); the request waits for it only while
    /// its deadline allows.
    async fn rollback(self: Box<Self>) {
        let Self { inner, budget } = *self;
        let task = tokio::spawn(async move {
            if tokio::time::timeout(budget, inner.rollback()).await.is_err() {
                tracing::warn!("a transaction rollback did not finish in time; Firestore expires it");
            }
        });
        let _ = within(task).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::future::pending;

    use super::*;
    use crate::store::{TxOutcome, run_transaction};

    /// A store that never answers, except that transactions begin at once and
    /// their commits are always aborted (endless contention); rollbacks take
    /// 300 ms and are recorded.
    #[derive(Default)]
    struct Stuck {
        rolled_back: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Store for Stuck {
        fn kind(&self) -> &'static str {
            "stuck"
        }
        async fn ping(&self) -> StoreResult<()> {
            pending().await
        }
        async fn get(&self, _: &DocPath) -> StoreResult<Option<Doc>> {
            pending().await
        }
        async fn get_all(&self, _: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
            pending().await
        }
        async fn query(&self, _: &Query) -> StoreResult<Vec<Doc>> {
            pending().await
        }
        async fn count(&self, _: &Query) -> StoreResult<u64> {
            pending().await
        }
        async fn commit(&self, _: Vec<Write>) -> StoreResult<Committed> {
            pending().await
        }
        async fn list_collection_ids(&self, _: &DocPath) -> StoreResult<Vec<String>> {
            pending().await
        }
        async fn descendants(&self, _: &DocPath, _: Option<&DocPath>, _: u32) -> StoreResult<Vec<DocPath>> {
            pending().await
        }
        async fn scan(&self, _: Option<&DocPath>, _: u32) -> StoreResult<Vec<Doc>> {
            pending().await
        }
        async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
            Ok(Box::new(Contended(self.rolled_back.clone())))
        }
    }

    struct Contended(Arc<AtomicBool>);

    #[async_trait]
    impl Transaction for Contended {
        async fn get(&mut self, _: &DocPath) -> StoreResult<Option<Doc>> {
            pending().await
        }
        async fn get_all(&mut self, _: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
            Ok(Vec::new())
        }
        async fn query(&mut self, _: &Query) -> StoreResult<Vec<Doc>> {
            pending().await
        }
        async fn commit(self: Box<Self>, _: Vec<Write>) -> StoreResult<Committed> {
            Err(StoreError::Aborted("contention".into()))
        }
        async fn rollback(self: Box<Self>) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn path() -> DocPath {
        DocPath::parse("users/u").unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn every_call_ends_by_the_request_deadline_or_the_budget_outside_one() {
        let store = Deadlined::wrap(Arc::new(Stuck::default()), Duration::from_millis(200));
        let started = Instant::now();
        let r = Deadline::after(Duration::from_millis(50))
            .scope(store.get(&path()))
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(150));
        // Outside a request: the budget bounds each call.
        let started = Instant::now();
        assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn transaction_retries_and_their_backoff_end_by_the_deadline() {
        let store = Deadlined::wrap(Arc::new(Stuck::default()), Duration::from_secs(60));
        let started = Instant::now();
        // Endless contention: without the deadline, 30 attempts with backoff (~20 s).
        let r: StoreResult<()> = Deadline::after(Duration::from_millis(400))
            .scope(run_transaction(store.as_ref(), |_| {
                Box::pin(async { Ok(TxOutcome::new(Vec::new(), ())) })
            }))
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_transaction_cut_short_by_the_deadline_still_rolls_back() {
        let stuck = Stuck::default();
        let rolled_back = stuck.rolled_back.clone();
        let store = Deadlined::wrap(Arc::new(stuck), Duration::from_secs(60));
        let started = Instant::now();
        let r: StoreResult<()> = Deadline::after(Duration::from_millis(100))
            .scope(run_transaction(store.as_ref(), |tx| {
                Box::pin(async move {
                    tx.get(&path()).await?; // never answers
                    Ok(TxOutcome::new(Vec::new(), ()))
                })
            }))
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        // The request did not wait for the rollback...
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert!(!rolled_back.load(Ordering::SeqCst));
        // ...which still happened.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(rolled_back.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn backoff_fails_at_once_when_it_would_end_past_the_deadline() {
        let d = Deadline::after(Duration::from_millis(500));
        let started = Instant::now();
        let r = d.scope(backoff(Duration::from_secs(5))).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(d.scope(backoff(Duration::from_millis(10))).await.is_ok());
        // No deadline: a plain sleep.
        assert!(backoff(Duration::from_millis(10)).await.is_ok());
    }

    #[tokio::test]
    async fn one_deadline_for_the_whole_request() {
        let budget = Duration::from_millis(300);
        let (first, second) = per_request(budget, async {
            let first = Deadline::current();
            tokio::time::sleep(Duration::from_millis(20)).await;
            (first, Deadline::current())
        })
        .await;
        let first = first.unwrap_or_else(|| panic!("no deadline inside per_request"));
        assert_eq!(Some(first), second);
        assert!(first.remaining() < Duration::from_millis(290), "{first:?}");
    }

    #[tokio::test]
    async fn within_bounds_by_the_current_deadline_only() {
        let d = Deadline::after(Duration::from_millis(50));
        let started = Instant::now();
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(d.scope(within(slow)).await, None);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(Deadline::current(), None);
        assert_eq!(within(async { 7 }).await, Some(7));
        assert_eq!(d.scope(async { Deadline::current() }).await, Some(d));
        assert_eq!(carry(Some(d), async { Deadline::current() }).await, Some(d));
        assert!(d.renewed().remaining() > Duration::from_millis(40));
    }
}
