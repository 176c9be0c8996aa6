//! Connects to Firestore on first use and keeps retrying until it succeeds, so
//! the service starts (and `/readyz` reports 503) while Firestore is down, and
//! recovers by itself once it answers.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::firestore::FirestoreStore;
use super::{Committed, Doc, DocPath, Query, Store, StoreResult, Transaction, Write};

pub struct LazyFirestore {
    project_id: String,
    database: String,
    emulator_host: Option<String>,
    timeout: Duration,
    cell: OnceCell<FirestoreStore>,
}

impl LazyFirestore {
    pub fn new(project_id: &str, database: &str, emulator_host: Option<&str>, timeout: Duration) -> Self {
        Self {
            project_id: project_id.to_owned(),
            database: database.to_owned(),
            emulator_host: emulator_host.map(str::to_owned),
            timeout,
            cell: OnceCell::new(),
        }
    }

    async fn store(&self) -> StoreResult<&FirestoreStore> {
        self.cell
            .get_or_try_init(|| {
                FirestoreStore::connect(
                    &self.project_id,
                    &self.database,
                    self.emulator_host.as_deref(),
                    self.timeout,
                )
            })
            .await
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
    async fn descendants(&self, parent: &DocPath) -> StoreResult<Vec<DocPath>> {
        self.store().await?.descendants(parent).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        self.store().await?.begin().await
    }
}
