//! Connects to Firestore in the background and keeps retrying until it
//! succeeds, so the service starts (and `/readyz` reports 503) while Firestore
//! is down, and recovers by itself once it answers. Requests never make a
//! connection attempt of their own, so they cannot queue behind one another's:
//! while there is no connection, a request's call waits briefly for the one
//! being made, then fails with `Unavailable`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;

use super::deadline::Deadline;
use super::firestore::FirestoreStore;
use super::{
    Committed, Doc, DocPath, ListenStream, Query, Store, StoreError, StoreResult, Transaction, Write,
};

/// How long a request's call waits for a connection in progress.
const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// Pause between connection attempts: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub struct LazyFirestore {
    shared: Arc<Shared>,
}

struct Shared {
    project_id: String,
    database: String,
    emulator_host: Option<String>,
    timeout: Duration,
    store: OnceLock<FirestoreStore>,
    /// Turns `true` once `store` is set.
    connected: watch::Sender<bool>,
    connector_started: AtomicBool,
}

impl LazyFirestore {
    /// Starts connecting at once when called inside a tokio runtime, else on first use.
    pub fn new(project_id: &str, database: &str, emulator_host: Option<&str>, timeout: Duration) -> Self {
        let lazy = Self {
            shared: Arc::new(Shared {
                project_id: project_id.to_owned(),
                database: database.to_owned(),
                emulator_host: emulator_host.map(str::to_owned),
                timeout,
                store: OnceLock::new(),
                connected: watch::Sender::new(false),
                connector_started: AtomicBool::new(false),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            lazy.start_connector();
        }
        lazy
    }

    fn start_connector(&self) {
        if !self.shared.connector_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(connect_until_connected(Arc::downgrade(&self.shared)));
        }
    }

    async fn store(&self) -> StoreResult<&FirestoreStore> {
        if let Some(store) = self.shared.store.get() {
            return Ok(store);
        }
        self.start_connector();
        let mut connected = self.shared.connected.subscribe();
        let wait = connected.wait_for(|c| *c);
        // Inside a request: fail fast (a client can retry); outside one (startup
        // migrations, commands) wait for as long as the call may take.
        let waited = match Deadline::current() {
            Some(_) => tokio::time::timeout(CONNECT_WAIT, wait).await.ok(),
            None => Some(wait.await),
        };
        match (waited, self.shared.store.get()) {
            (Some(Ok(_)), Some(store)) => Ok(store),
            _ => Err(StoreError::Unavailable("not connected to Firestore yet".into())),
        }
    }
}

/// The background connector: one attempt at a time, each bounded by the store
/// timeout, with backoff between them; ends when connected or when the store is dropped.
async fn connect_until_connected(shared: Weak<Shared>) {
    let mut pause = RETRY_FIRST;
    let mut attempt = 0u32;
    loop {
        let Some(s) = shared.upgrade() else { return };
        attempt += 1;
        match FirestoreStore::connect(&s.project_id, &s.database, s.emulator_host.as_deref(), s.timeout).await
        {
            Ok(store) => {
                let _ = s.store.set(store);
                s.connected.send_replace(true);
                tracing::info!(attempt, "connected to Firestore");
                return;
            }
            // The first failure and then one in ten: the outage may last.
            Err(e) if attempt == 1 || attempt.is_multiple_of(10) => {
                tracing::warn!(attempt, error = %e, "cannot connect to Firestore yet; retrying in the background");
            }
            Err(e) => tracing::debug!(attempt, error = %e, "cannot connect to Firestore yet"),
        }
        drop(s);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

#[async_trait]
impl Store for LazyFirestore {
    fn kind(&self) -> &'static str {
        "firestore"
    }
    async fn ping(&self) -> StoreResult<()> {
        self.store().await?.ping().await
    }
    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        self.store().await?.get(path).await
    }
    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.store().await?.get_all(paths).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>> {
        self.store().await?.query(query).await
    }
    async fn count(&self, query: &Query) -> StoreResult<u64> {
        self.store().await?.count(query).await
    }
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        self.store().await?.commit(writes).await
    }
    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>> {
        self.store().await?.list_collection_ids(parent).await
    }
    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        self.store().await?.descendants(parent, after, limit).await
    }
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        self.store().await?.scan(after, limit).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        self.store().await?.begin().await
    }
    fn query_stream<'a>(&'a self, query: &Query) -> BoxStream<'a, StoreResult<Doc>> {
        let query = query.clone();
        stream::once(self.store())
            .map_ok(move |s| s.query_stream(&query))
            .try_flatten()
            .boxed()
    }
    fn descendants_stream<'a>(&'a self, parent: &DocPath) -> BoxStream<'a, StoreResult<DocPath>> {
        let parent = parent.clone();
        stream::once(self.store())
            .map_ok(move |s| s.descendants_stream(&parent))
            .try_flatten()
            .boxed()
    }
    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        self.store().await?.listen(docs).await
    }
}
