//! The document-store interface the domain code uses, and its two implementations.
//!
//! The shape follows Firestore closely (documents of typed values, paths with
//! subcollections, ordered queries with cursors, atomic commits, transactions)
//! so the Firestore implementation is a thin mapping and the embedded one can
//! reproduce the semantics the code relies on. Values are Firestore's own
//! protobuf `Value`, so both stores hold exactly the same data and domain structs
//! convert through the `firestore` crate's serde bridge.

pub mod deadline;
pub mod embedded;
pub mod firestore;
mod firestore_listen;
pub mod instrumented;
pub mod lazy;
pub mod limits;
pub mod listen;

mod path;
pub mod stream;
pub mod value;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use listen::{ListenEvent, ListenStream};
pub use path::DocPath;
pub use value::Timestamp;

/// Firestore's protobuf value type, shared by both implementations.
pub use ::firestore::gcloud_sdk::google::firestore::v1::Value;

/// A document's fields.
pub type Fields = HashMap<String, Value>;

/// Largest number of writes in one atomic commit (Firestore's limit).
pub const MAX_WRITES_PER_COMMIT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("document not found: {0}")]
    NotFound(String),
    #[error("document already exists: {0}")]
    AlreadyExists(String),
    /// A write's precondition (exists / update time) did not hold.
    #[error("precondition failed: {0}")]
    FailedPrecondition(String),
    /// Contention: the transaction should be retried from the start.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The store did not answer (down, timeout, overloaded). Retryable by the client.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("invalid store request: {0}")]
    InvalidArgument(String),
    #[error("store data could not be (de)serialized: {0}")]
    Serialization(String),
    #[error("store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub path: DocPath,
    pub fields: Fields,
    pub create_time: Timestamp,
    /// Changes on every write; the basis of ETags and `UpdateTime` preconditions.
    pub update_time: Timestamp,
}

impl Doc {
    pub fn id(&self) -> &str {
        self.path.id()
    }

    /// Decodes the fields into a domain struct (timestamps via `firestore::FirestoreTimestamp`).
    pub fn decode<T: DeserializeOwned>(&self) -> StoreResult<T> {
        value::decode_fields(self.fields.clone())
    }

    /// [`Doc::decode`] consuming the document: no copy of its fields.
    pub fn into_decoded<T: DeserializeOwned>(self) -> StoreResult<T> {
        value::decode_fields(self.fields)
    }

    pub fn field(&self, dotted: &str) -> Option<&Value> {
        value::get_path(&self.fields, dotted)
    }
}

/// Encodes a domain struct as document fields.
pub fn encode<T: Serialize>(obj: &T) -> StoreResult<Fields> {
    value::encode_fields(obj)
}

/// What a successful commit reports: when it happened and, per write in order,
/// the document's update time after it (Firestore's `CommitResponse`), so a
/// writer can answer with the new ETag without reading the document again.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub commit_time: Timestamp,
    /// One per write, in the order of the writes. `None` after a delete; a write
    /// that changed nothing reports the unchanged update time.
    pub writes: Vec<(DocPath, Option<Timestamp>)>,
}

impl Committed {
    /// The update time `path` had after its last write in this commit.
    pub fn update_time(&self, path: &DocPath) -> Option<Timestamp> {
        self.writes
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .and_then(|(_, t)| *t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    None,
    Exists(bool),
    UpdateTime(Timestamp),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Numeric add; a missing field counts as 0.
    Increment(Value),
    /// The commit time of the write.
    ServerTime,
    /// The larger of the stored and the given value.
    Maximum(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace the whole document (create it if missing).
    Set(Fields),
    /// Write only the dotted field paths in `mask`: a path in the mask but not in
    /// `fields` is removed. Creates the document if missing unless a precondition says otherwise.
    Update {
        fields: Fields,
        mask: Vec<String>,
    },
    Delete,
}

/// One write of a commit. Transforms apply after the operation, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub path: DocPath,
    pub op: WriteOp,
    pub precondition: Precondition,
    pub transforms: Vec<(String, Transform)>,
}

impl Write {
    /// Create; the commit fails with `AlreadyExists` if the document exists.
    pub fn create(path: DocPath, fields: Fields) -> Self {
        Self::with(path, WriteOp::Set(fields), Precondition::Exists(false))
    }
    /// Create or replace.
    pub fn set(path: DocPath, fields: Fields) -> Self {
        Self::with(path, WriteOp::Set(fields), Precondition::None)
    }
    /// Change the masked fields of an existing document (`NotFound` if missing).
    pub fn update(path: DocPath, fields: Fields, mask: Vec<String>) -> Self {
        Self::with(path, WriteOp::Update { fields, mask }, Precondition::Exists(true))
    }
    /// Change the masked fields, creating the document if it is missing.
    pub fn merge(path: DocPath, fields: Fields, mask: Vec<String>) -> Self {
        Self::with(path, WriteOp::Update { fields, mask }, Precondition::None)
    }
    /// Only transforms (add them with `increment` / `server_time`); creates the document if missing.
    pub fn transform(path: DocPath) -> Self {
        Self::merge(path, Fields::new(), Vec::new())
    }
    /// Delete; deleting a missing document succeeds.
    pub fn delete(path: DocPath) -> Self {
        Self::with(path, WriteOp::Delete, Precondition::None)
    }
    pub fn precondition(mut self, precondition: Precondition) -> Self {
        self.precondition = precondition;
        self
    }
    pub fn increment(mut self, field: &str, by: i64) -> Self {
        self.transforms
            .push((field.to_owned(), Transform::Increment(value::int(by))));
        self
    }
    pub fn server_time(mut self, field: &str) -> Self {
        self.transforms.push((field.to_owned(), Transform::ServerTime));
        self
    }
    pub fn maximum(mut self, field: &str, v: Value) -> Self {
        self.transforms.push((field.to_owned(), Transform::Maximum(v)));
        self
    }
    fn with(path: DocPath, op: WriteOp, precondition: Precondition) -> Self {
        Self {
            path,
            op,
            precondition,
            transforms: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    ArrayContains,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Dotted field path, e.g. `metadata.status`.
    pub field: String,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Asc,
    Desc,
}

/// A position in an ordered result: the values of the `order_by` fields of the
/// last document seen and its path (the tie-breaker), so a page needs no extra read.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub values: Vec<Value>,
    pub last: DocPath,
}

/// A query over one collection (or, with `all_descendants`, over every
/// collection of that id below `parent`: a collection-group query).
///
/// Results are ordered by `order_by`, then by document path in the direction of
/// the last `order_by` entry (ascending when there is none): a total order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None`: the database root.
    pub parent: Option<DocPath>,
    pub collection: String,
    pub all_descendants: bool,
    /// Combined with AND.
    pub filters: Vec<Filter>,
    pub order_by: Vec<(String, Direction)>,
    pub start_after: Option<Cursor>,
    pub limit: Option<u32>,
}

impl Query {
    pub fn collection(parent: Option<&DocPath>, collection: &str) -> Self {
        Self {
            parent: parent.cloned(),
            collection: collection.to_owned(),
            all_descendants: false,
            filters: Vec::new(),
            order_by: Vec::new(),
            start_after: None,
            limit: None,
        }
    }
    /// Every collection named `collection` anywhere below `parent` (or the root).
    pub fn group(parent: Option<&DocPath>, collection: &str) -> Self {
        Self {
            all_descendants: true,
            ..Self::collection(parent, collection)
        }
    }
    pub fn filter(mut self, field: &str, op: Op, value: Value) -> Self {
        self.filters.push(Filter {
            field: field.to_owned(),
            op,
            value,
        });
        self
    }
    pub fn order(mut self, field: &str, dir: Direction) -> Self {
        self.order_by.push((field.to_owned(), dir));
        self
    }
    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.start_after = cursor;
        self
    }
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
    /// The direction of the implicit document-path tie-breaker.
    pub fn tie_direction(&self) -> Direction {
        self.order_by.last().map_or(Direction::Asc, |(_, d)| *d)
    }
    /// The cursor that continues after `doc` in this query's order.
    pub fn cursor_after(&self, doc: &Doc) -> Cursor {
        Cursor {
            values: self
                .order_by
                .iter()
                .map(|(f, _)| doc.field(f).cloned().unwrap_or_else(value::null))
                .collect(),
            last: doc.path.clone(),
        }
    }
}

/// The storage backend. Both implementations pass the same contract suite
/// (`tests/integration/store_contract.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `firestore` or `embedded`.
    fn kind(&self) -> &'static str;
    /// Answers quickly when the store is reachable.
    async fn ping(&self) -> StoreResult<()>;
    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>>;
    /// Many documents in one round trip; the result is in the order of `paths`.
    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>>;
    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>>;
    /// Number of documents matching the query (honouring `start_after` and `limit`, as Firestore does).
    async fn count(&self, query: &Query) -> StoreResult<u64>;
    /// Applies all writes atomically (at most `MAX_WRITES_PER_COMMIT`).
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed>;
    /// Ids of the subcollections directly under `parent` that hold documents.
    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>>;
    /// A page of the documents anywhere below `parent` (any depth, any
    /// collection, known or not, even under missing parents), `parent` itself
    /// excluded: at most `limit` paths, in document-path order, after `after`.
    /// Paged so that walking a large subtree (erasure) holds one page at a time.
    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>>;
    /// A page of every document in the database (any collection, any depth,
    /// under missing parents too), whole, in document-path order (segment by
    /// segment, as Firestore orders `__name__`), after `after`: a complete,
    /// resumable scan for backups.
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>>;
    /// [`Store::query`]'s results as one stream, read as it is consumed: for
    /// result sets of any size (linear cost, flat memory). Ends after an error.
    /// The default reads chunk by chunk with cursors.
    fn query_stream<'a>(&'a self, query: &Query) -> BoxStream<'a, StoreResult<Doc>> {
        stream::paged_query(self, query)
    }
    /// Every document below `parent` as [`Store::descendants`] lists them (any
    /// depth, under missing parents too, document-path order), as one stream.
    /// The default reads chunk by chunk.
    fn descendants_stream<'a>(&'a self, parent: &DocPath) -> BoxStream<'a, StoreResult<DocPath>> {
        stream::paged_descendants(self, parent)
    }
    /// Starts a read-write transaction. Prefer [`run_transaction`].
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>>;
    /// Listens to changes of `docs` (see [`listen`]). Opening is bounded like a
    /// call; the stream itself lives until the connection breaks or it is dropped.
    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        let _ = docs;
        Err(StoreError::InvalidArgument(format!(
            "the {} store cannot listen to changes",
            self.kind()
        )))
    }
}

/// A read-write transaction: reads see a consistent snapshot, and the commit
/// fails with `Aborted` if anything read changed meanwhile.
#[async_trait]
pub trait Transaction: Send {
    async fn get(&mut self, path: &DocPath) -> StoreResult<Option<Doc>>;
    async fn get_all(&mut self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>>;
    async fn query(&mut self, query: &Query) -> StoreResult<Vec<Doc>>;
    /// Commits; whatever the outcome, the transaction holds nothing afterwards
    /// (a failed commit is rolled back before this returns).
    async fn commit(self: Box<Self>, writes: Vec<Write>) -> StoreResult<Committed>;
    async fn rollback(self: Box<Self>);
}

/// What a transaction body decides: the writes to commit and the value to return.
pub struct TxOutcome<T> {
    pub writes: Vec<Write>,
    pub value: T,
}

impl<T> TxOutcome<T> {
    pub fn new(writes: Vec<Write>, value: T) -> Self {
        Self { writes, value }
    }
}

/// Attempts before a contended transaction gives up. The emulator's pessimistic
/// locking aborts far more often than production (FIRESTORE-NOTES.md), hence generous.
const TX_ATTEMPTS: u32 = 30;

/// Runs `body` in a transaction, retrying the whole body on contention with
/// jittered exponential backoff, all within the request's deadline (`deadline`).
/// `body` may run several times: it must only read
/// through the transaction and return writes, never act outside it.
pub async fn run_transaction<T, E, F>(store: &dyn Store, body: F) -> Result<T, E>
where
    F: for<'t> Fn(&'t mut dyn Transaction) -> BoxFuture<'t, Result<TxOutcome<T>, E>>,
    E: From<StoreError>,
{
    run_transaction_committed(store, body)
        .await
        .map(|(value, _)| value)
}

/// [`run_transaction`], also returning what the commit reported (the new
/// update times: the ETags of the written documents).
pub async fn run_transaction_committed<T, E, F>(store: &dyn Store, body: F) -> Result<(T, Committed), E>
where
    F: for<'t> Fn(&'t mut dyn Transaction) -> BoxFuture<'t, Result<TxOutcome<T>, E>>,
    E: From<StoreError>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut tx = ContentionWatch {
            inner: store.begin().await?,
            aborted: None,
            unavailable: false,
        };
        let outcome = match body(&mut tx).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let aborted = tx.aborted.take();
                if tx.unavailable {
                    // A store that did not answer a read would not answer the rollback
                    // soon either: release the transaction in the background.
                    let inner = tx.inner;
                    tokio::spawn(async move { inner.rollback().await });
                } else {
                    tx.inner.rollback().await;
                }
                // A read that lost a lock race fails the body; that is contention too.
                match aborted {
                    Some(reason) if attempt < TX_ATTEMPTS => {
                        tracing::debug!(attempt, %reason, "transaction read aborted, retrying");
                        deadline::backoff(backoff(attempt)).await?;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
        };
        // Whatever it ends with, the commit leaves no lock behind (see `Transaction::commit`).
        match tx.inner.commit(outcome.writes).await {
            Ok(committed) => return Ok((outcome.value, committed)),
            Err(StoreError::Aborted(reason)) if attempt < TX_ATTEMPTS => {
                tracing::debug!(attempt, %reason, "transaction aborted, retrying");
                deadline::backoff(backoff(attempt)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Passes reads through, remembering whether one failed with `Aborted`, so the
/// retry loop can tell contention from the body's own errors (and with
/// `Unavailable`, so it does not wait for a rollback the store cannot answer).
struct ContentionWatch {
    inner: Box<dyn Transaction>,
    aborted: Option<String>,
    /// A read found the store unreachable.
    unavailable: bool,
}

impl ContentionWatch {
    fn watch<T>(&mut self, r: StoreResult<T>) -> StoreResult<T> {
        match &r {
            Err(StoreError::Aborted(reason)) => self.aborted = Some(reason.clone()),
            Err(StoreError::Unavailable(_)) => self.unavailable = true,
            _ => {}
        }
        r
    }
}

#[async_trait]
impl Transaction for ContentionWatch {
    async fn get(&mut self, path: &DocPath) -> StoreResult<Option<Doc>> {
        let r = self.inner.get(path).await;
        self.watch(r)
    }
    async fn get_all(&mut self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        let r = self.inner.get_all(paths).await;
        self.watch(r)
    }
    async fn query(&mut self, query: &Query) -> StoreResult<Vec<Doc>> {
        let r = self.inner.query(query).await;
        self.watch(r)
    }
    async fn commit(self: Box<Self>, writes: Vec<Write>) -> StoreResult<Committed> {
        self.inner.commit(writes).await
    }
    async fn rollback(self: Box<Self>) {
        self.inner.rollback().await
    }
}

/// Commits any number of writes in chunks of `MAX_WRITES_PER_COMMIT` (atomic per
/// chunk only), retrying a chunk that hit `Unavailable`/`Aborted` with backoff.
/// Every document below `parent` at once ([`Store::descendants`] page by page):
/// for small subtrees and tests; a subtree of any size is walked page by page.
pub async fn all_descendants(store: &dyn Store, parent: &DocPath) -> StoreResult<Vec<DocPath>> {
    const PAGE: u32 = 1_000;
    let mut out: Vec<DocPath> = Vec::new();
    loop {
        let page = store.descendants(parent, out.last(), PAGE).await?;
        let full = page.len() >= PAGE as usize;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

pub async fn commit_chunked(store: &dyn Store, writes: Vec<Write>) -> StoreResult<()> {
    let mut writes = writes;
    while !writes.is_empty() {
        let rest = writes.split_off(writes.len().min(MAX_WRITES_PER_COMMIT));
        let chunk = std::mem::replace(&mut writes, rest);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match store.commit(chunk.clone()).await {
                Ok(_) => break,
                Err(StoreError::Unavailable(_) | StoreError::Aborted(_)) if attempt < 6 => {
                    deadline::backoff(backoff(attempt)).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn backoff(attempt: u32) -> Duration {
    let base = 10u64.saturating_mul(1 << attempt.min(7)); // 20 ms .. 1.28 s
    let jitter = rand::random::<u64>() % base.max(1);
    Duration::from_millis((base / 2 + jitter).min(1_500))
}
