//! A `Store` decorator that records every operation's latency in the metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{Committed, Doc, DocPath, ListenStream, Query, Store, StoreResult, Transaction, Write};
use crate::metrics::Metrics;

pub struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(&self, op: &str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = fut.await;
        self.metrics.observe_store(op, result.is_ok(), started);
        result
    }
}

#[async_trait]
impl Store for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        self.timed("get", self.inner.get(path)).await
    }
    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.timed("get_all", self.inner.get_all(paths)).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>> {
        self.timed("query", self.inner.query(query)).await
    }
    async fn count(&self, query: &Query) -> StoreResult<u64> {
        self.timed("count", self.inner.count(query)).await
    }
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        self.timed("commit", self.inner.commit(writes)).await
    }
    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>> {
        self.timed("list_collection_ids", self.inner.list_collection_ids(parent))
            .await
    }
    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        self.timed("descendants", self.inner.descendants(parent, after, limit))
            .await
    }
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        self.timed("scan", self.inner.scan(after, limit)).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        self.timed("begin_transaction", self.inner.begin()).await
    }
    /// Times the opening of the stream only.
    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        self.timed("listen", self.inner.listen(docs)).await
    }
    fn query_stream<'a>(&'a self, query: &Query) -> BoxStream<'a, StoreResult<Doc>> {
        self.first_item("query_stream", self.inner.query_stream(query))
    }
    fn descendants_stream<'a>(&'a self, parent: &DocPath) -> BoxStream<'a, StoreResult<DocPath>> {
        self.first_item("descendants_stream", self.inner.descendants_stream(parent))
    }
}

impl Instrumented {
    /// Records a stream's latency to its first item (or its end or first
    /// error): the part comparable to a call; the rest depends on the consumer.
    fn first_item<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        inner: BoxStream<'a, StoreResult<T>>,
    ) -> BoxStream<'a, StoreResult<T>> {
        let started = Instant::now();
        let mut pending = true;
        let mut inner = inner.fuse();
        futures::stream::poll_fn(move |cx| {
            let next = inner.poll_next_unpin(cx);
            if pending && let std::task::Poll::Ready(item) = &next {
                pending = false;
                self.metrics
                    .observe_store(op, !matches!(item, Some(Err(_))), started);
            }
            next
        })
        .boxed()
    }
}
