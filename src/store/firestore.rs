//! The Firestore store: a thin mapping of the `Store` interface onto the
//! `firestore` crate (gRPC through `gcloud-sdk`). `FIRESTORE_EMULATOR_HOST`
//! selects the emulator.

use std::collections::HashMap;
use std::time::Duration;

use ::firestore::gcloud_sdk::google::firestore::v1 as proto;
use ::firestore::gcloud_sdk::google::firestore::v1::document_transform::FieldTransform;
use ::firestore::gcloud_sdk::google::firestore::v1::document_transform::field_transform::{
    ServerValue, TransformType,
};
use ::firestore::gcloud_sdk::{RequestTimeouts, tonic};
use ::firestore::select_builder::FirestoreSelectDocBuilder;
use ::firestore::{
    FIREBASE_DEFAULT_DATABASE_ID, FirestoreAggregation, FirestoreAggregationOperator,
    FirestoreAggregationOperatorCount, FirestoreConsistencySelector, FirestoreDb, FirestoreDbOptions,
    FirestoreQueryCollection, FirestoreQueryCursor, FirestoreQueryDirection, FirestoreQueryFilter,
    FirestoreQueryFilterCompare, FirestoreQueryFilterComposite, FirestoreQueryFilterCompositeOperator,
    FirestoreQueryOrder, FirestoreTransaction, FirestoreTransactionData, FirestoreTransactionOptions,
    FirestoreValue, errors::FirestoreError,
};
use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::embedded::effective_order;
use super::value::{self, ValueType};
use super::{
    Committed, Direction, Doc, DocPath, Fields, ListenStream, Op, Precondition, Query, Store, StoreError,
    StoreResult, Transaction, Transform, Value, Write, WriteOp, stream as streams,
};

/// Reads (and plain commits) against one database; inside a transaction the
/// same type reads through the transaction's consistency selector.
#[derive(Clone)]
pub struct FirestoreStore {
    db: FirestoreDb,
    /// A connection of its own for long server-streamed reads (exports,
    /// erasure listings). A stream whose consumer stalls (a client reading an
    /// export slowly) keeps its unread data counted against its HTTP/2
    /// connection's flow-control window; a few of them exhausted the window
    /// the API's own reads and writes shared, and every request answered 503.
    streams: FirestoreDb,
    timeout: Duration,
}

impl FirestoreStore {
    /// Connects (eagerly: fails with `Unavailable` when Firestore cannot be
    /// reached). The client reconnects by itself after a later outage.
    /// `emulator_host` (`host:port`) overrides where the emulator is; the
    /// process's `FIRESTORE_EMULATOR_HOST` still decides that no credentials are used.
    pub async fn connect(
        project_id: &str,
        database: &str,
        emulator_host: Option<&str>,
        timeout: Duration,
    ) -> StoreResult<Self> {
        // Installed once per process; later calls fail harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let database = if database.is_empty() {
            FIREBASE_DEFAULT_DATABASE_ID
        } else {
            database
        };
        // One retry of a failed read (a connection the store closed while it
        // restarted). The crate's timeout is only a backstop: the request's one
        // deadline (`deadline::Deadlined`) bounds each call, retries included.
        let options = FirestoreDbOptions::new(project_id.to_owned())
            .with_database_id(database.to_owned())
            .with_max_retries(1)
            .with_request_timeout(timeout)
            .opt_firebase_api_url(emulator_host.map(|h| format!("http://{h}")));
        let connect = |options| async move {
            tokio::time::timeout(timeout, FirestoreDb::with_options(options))
                .await
                .map_err(|_| StoreError::Unavailable("connecting to Firestore timed out".into()))?
                .map_err(store_error)
        };
        let (db, streams) = futures::try_join!(connect(options.clone()), connect(options))?;
        Ok(Self { db, streams, timeout })
    }

    fn full_name(&self, path: &DocPath) -> String {
        format!("{}/{path}", self.db.get_documents_path())
    }

    fn parent_name(&self, parent: Option<&DocPath>) -> String {
        match parent {
            Some(p) => self.full_name(p),
            None => self.db.get_documents_path().clone(),
        }
    }

    fn parse_name(&self, name: &str) -> StoreResult<DocPath> {
        name.strip_prefix(self.db.get_documents_path().as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StoreError::Internal(format!("unexpected document name {name}")))
            .and_then(DocPath::parse)
    }

    fn to_doc(&self, d: proto::Document) -> StoreResult<Doc> {
        let time = |t: Option<&::firestore::gcloud_sdk::prost_types::Timestamp>| {
            t.and_then(value::from_proto_ts)
                .ok_or_else(|| StoreError::Internal(format!("document {} has no timestamps", d.name)))
        };
        Ok(Doc {
            path: self.parse_name(&d.name)?,
            create_time: time(d.create_time.as_ref())?,
            update_time: time(d.update_time.as_ref())?,
            fields: d.fields,
        })
    }

    fn reference(&self, path: &DocPath) -> FirestoreValue {
        FirestoreValue {
            value: Value {
                value_type: Some(ValueType::ReferenceValue(self.full_name(path))),
            },
        }
    }

    /// The query as the crate's builder: filters ANDed, the effective order then
    /// `__name__` as the tie-breaker, and a cursor after the last document's
    /// order values and full name (a cursor on values alone skips ties).
    fn select<'a>(&'a self, q: &Query) -> StoreResult<FirestoreSelectDocBuilder<'a, FirestoreDb>> {
        self.select_on(&self.db, q)
    }

    /// `q` as a query sent over `db` (the API's connection or the streams').
    fn select_on<'a>(
        &'a self,
        db: &'a FirestoreDb,
        q: &Query,
    ) -> StoreResult<FirestoreSelectDocBuilder<'a, FirestoreDb>> {
        let order = effective_order(q)?;
        let mut filters: Vec<FirestoreQueryFilter> = q
            .filters
            .iter()
            .map(|f| {
                let (field, v) = (field_path(&f.field), FirestoreValue::from(f.value.clone()));
                FirestoreQueryFilter::Compare(Some(match f.op {
                    Op::Eq => FirestoreQueryFilterCompare::Equal(field, v),
                    Op::Lt => FirestoreQueryFilterCompare::LessThan(field, v),
                    Op::Le => FirestoreQueryFilterCompare::LessThanOrEqual(field, v),
                    Op::Gt => FirestoreQueryFilterCompare::GreaterThan(field, v),
                    Op::Ge => FirestoreQueryFilterCompare::GreaterThanOrEqual(field, v),
                    Op::In => FirestoreQueryFilterCompare::In(field, v),
                    Op::ArrayContains => FirestoreQueryFilterCompare::ArrayContains(field, v),
                }))
            })
            .collect();
        let filter = if filters.len() > 1 {
            Some(FirestoreQueryFilter::Composite(
                FirestoreQueryFilterComposite::new(filters, FirestoreQueryFilterCompositeOperator::And),
            ))
        } else {
            filters.pop()
        };
        let mut orders: Vec<FirestoreQueryOrder> = order
            .iter()
            .map(|(f, d)| FirestoreQueryOrder::new(field_path(f), direction(*d)))
            .collect();
        orders.push(FirestoreQueryOrder::new(
            "__name__".into(),
            direction(q.tie_direction()),
        ));
        let mut builder = db
            .fluent()
            .select()
            .from(FirestoreQueryCollection::Single(q.collection.clone()))
            .parent(self.parent_name(q.parent.as_ref()))
            .order(move |_| orders.clone());
        if let Some(filter) = filter {
            builder = builder.filter(move |_| Some(filter.clone()));
        }
        if q.all_descendants {
            builder = builder.all_descendants();
        }
        if let Some(c) = &q.start_after {
            if c.values.len() != order.len() {
                return Err(StoreError::InvalidArgument(
                    "the cursor does not match the query's order".into(),
                ));
            }
            let mut values: Vec<FirestoreValue> =
                c.values.iter().cloned().map(FirestoreValue::from).collect();
            values.push(self.reference(&c.last));
            builder = builder.start_at(FirestoreQueryCursor::AfterValue(values));
        }
        if let Some(limit) = q.limit {
            builder = builder.limit(limit);
        }
        Ok(builder)
    }

    async fn read_one(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        let mut select = self.db.fluent().select().by_id_in(path.collection_id());
        if let Some(parent) = path.parent() {
            select = select.parent(self.full_name(&parent));
        }
        select
            .one(path.id())
            .await
            .map_err(store_error)?
            .map(|d| self.to_doc(d))
            .transpose()
    }

    /// One batch get per collection (a single round trip in the usual case of one).
    async fn read_many(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        let mut groups: HashMap<&str, Vec<&DocPath>> = HashMap::new();
        for p in paths {
            groups.entry(p.collection_path()).or_default().push(p);
        }
        let fetches = groups.into_values().map(|group| async move {
            let Some(first) = group.first() else {
                return Ok(Vec::new());
            };
            let mut select = self.db.fluent().select().by_id_in(first.collection_id());
            if let Some(parent) = first.parent() {
                select = select.parent(self.full_name(&parent));
            }
            let found: Vec<(String, Option<proto::Document>)> = select
                .batch_with_errors(group.iter().map(|p| p.id()))
                .await
                .map_err(store_error)?
                .try_collect()
                .await
                .map_err(store_error)?;
            found
                .into_iter()
                .filter_map(|(_, d)| d)
                .map(|d| self.to_doc(d))
                .collect::<StoreResult<Vec<Doc>>>()
        });
        let by_path: HashMap<DocPath, Doc> = futures::future::try_join_all(fetches)
            .await?
            .into_iter()
            .flatten()
            .map(|d| (d.path.clone(), d))
            .collect();
        Ok(paths.iter().map(|p| by_path.get(p).cloned()).collect())
    }

    /// A kindless all-descendants query: every collection at any depth,
    /// including those under missing documents, by name only.
    fn descendants_select<'a>(
        &'a self,
        db: &'a FirestoreDb,
        parent: &DocPath,
    ) -> FirestoreSelectDocBuilder<'a, FirestoreDb> {
        db.fluent()
            .select()
            .fields(["__name__"])
            .from("")
            .parent(self.full_name(parent))
            .all_descendants()
            .order(|_| {
                vec![FirestoreQueryOrder::new(
                    "__name__".into(),
                    FirestoreQueryDirection::Ascending,
                )]
            })
    }

    /// One server-streamed `RunQuery`, each document mapped by `map`. The
    /// crate bounds it by an idle timeout (the store timeout), not a total one.
    fn streamed<'a, T: Send + 'a>(
        &'a self,
        select: StoreResult<FirestoreSelectDocBuilder<'a, FirestoreDb>>,
        map: fn(&Self, proto::Document) -> StoreResult<T>,
    ) -> BoxStream<'a, StoreResult<T>> {
        let select = match select {
            Ok(s) => s,
            Err(e) => return streams::failed(e),
        };
        stream::once(async move { select.stream_query_with_errors().await.map_err(store_error) })
            .map_ok(move |docs| docs.map(move |d| d.map_err(store_error).and_then(|d| map(self, d))))
            .try_flatten()
            .boxed()
    }

    async fn run_query(&self, q: &Query) -> StoreResult<Vec<Doc>> {
        self.select(q)?
            .query()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|d| self.to_doc(d))
            .collect()
    }

    /// One `Commit` call (in `transaction` when it is not empty), reporting each
    /// write's update time.
    async fn send_commit(&self, writes: Vec<Write>, transaction: Vec<u8>) -> StoreResult<Committed> {
        let paths: Vec<DocPath> = writes.iter().map(|w| w.path.clone()).collect();
        let writes = writes
            .into_iter()
            .map(|w| self.to_proto(w))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut request = tonic::Request::new(proto::CommitRequest {
            database: self.db.get_database_path().clone(),
            writes,
            transaction,
            request_options: None,
        });
        request
            .extensions_mut()
            .insert(RequestTimeouts::new().with_total(self.timeout));
        let response = self
            .db
            .client()
            .get()
            .commit(request)
            .await
            .map_err(|status| store_error(FirestoreError::from(status)))?
            .into_inner();
        // A transaction that writes nothing commits without a commit time.
        let commit_time = match response.commit_time.as_ref().and_then(value::from_proto_ts) {
            Some(t) => t,
            None if paths.is_empty() => value::now(),
            None => return Err(StoreError::Internal("the commit reported no commit time".into())),
        };
        let mut results = response.write_results.into_iter();
        let writes = paths
            .into_iter()
            .map(|p| {
                let t = results
                    .next()
                    .and_then(|r| r.update_time)
                    .as_ref()
                    .and_then(value::from_proto_ts);
                (p, t)
            })
            .collect();
        Ok(Committed { commit_time, writes })
    }

    /// Releases a transaction's locks at once (rather than when Firestore expires it).
    async fn rollback_transaction(&self, transaction: Vec<u8>) {
        let mut request = tonic::Request::new(proto::RollbackRequest {
            database: self.db.get_database_path().clone(),
            transaction,
            request_options: None,
        });
        request
            .extensions_mut()
            .insert(RequestTimeouts::new().with_total(self.timeout));
        if let Err(status) = self.db.client().get().rollback(request).await {
            tracing::debug!(error = %status, "transaction rollback failed");
        }
    }

    fn to_proto(&self, w: Write) -> StoreResult<proto::Write> {
        let name = self.full_name(&w.path);
        let current_document = match w.precondition {
            Precondition::None => None,
            Precondition::Exists(b) => Some(proto::precondition::ConditionType::Exists(b)),
            Precondition::UpdateTime(t) => Some(proto::precondition::ConditionType::UpdateTime(
                value::to_proto_ts(t),
            )),
        }
        .map(|c| proto::Precondition {
            condition_type: Some(c),
        });
        let document = |fields: Fields| proto::Document {
            name: name.clone(),
            fields,
            create_time: None,
            update_time: None,
        };
        let (operation, update_mask) = match w.op {
            WriteOp::Delete => {
                if !w.transforms.is_empty() {
                    return Err(StoreError::InvalidArgument(
                        "a delete cannot carry transforms".into(),
                    ));
                }
                (proto::write::Operation::Delete(name.clone()), None)
            }
            WriteOp::Set(fields) => (proto::write::Operation::Update(document(fields)), None),
            WriteOp::Update { fields, mask } => {
                // Send only the masked values: what the mask names is all that is written.
                let mut masked = Fields::new();
                for m in &mask {
                    if let Some(v) = value::get_path(&fields, m) {
                        value::set_path(&mut masked, m, v.clone());
                    }
                }
                (
                    proto::write::Operation::Update(document(masked)),
                    // Always present: no mask would replace the whole document.
                    Some(proto::DocumentMask {
                        field_paths: mask.iter().map(|m| field_path(m)).collect(),
                    }),
                )
            }
        };
        let update_transforms = w
            .transforms
            .into_iter()
            .map(|(field, t)| FieldTransform {
                field_path: field_path(&field),
                transform_type: Some(match t {
                    Transform::Increment(v) => TransformType::Increment(v),
                    Transform::Maximum(v) => TransformType::Maximum(v),
                    Transform::ServerTime => TransformType::SetToServerValue(ServerValue::RequestTime as i32),
                }),
            })
            .collect();
        Ok(proto::Write {
            update_mask,
            update_transforms,
            current_document,
            operation: Some(operation),
        })
    }
}

fn direction(d: Direction) -> FirestoreQueryDirection {
    match d {
        Direction::Asc => FirestoreQueryDirection::Ascending,
        Direction::Desc => FirestoreQueryDirection::Descending,
    }
}

/// A dotted path in Firestore's field-path syntax: segments that are not plain
/// identifiers are quoted with backticks.
fn field_path(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|s| {
            let plain = s
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if plain {
                s.to_owned()
            } else {
                format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"))
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Every crate error, mapped by its public code.
fn store_error(e: FirestoreError) -> StoreError {
    match e {
        FirestoreError::DataNotFoundError(e) => StoreError::NotFound(e.data_detail_message),
        FirestoreError::DataConflictError(e) => StoreError::AlreadyExists(e.details),
        FirestoreError::DatabaseError(e) => match e.public.code.as_str() {
            "NotFound" => StoreError::NotFound(e.details),
            "AlreadyExists" => StoreError::AlreadyExists(e.details),
            "FailedPrecondition" => StoreError::FailedPrecondition(e.details),
            "Aborted" => StoreError::Aborted(e.details),
            "InvalidArgument" | "OutOfRange" => StoreError::InvalidArgument(e.details),
            "Unavailable" | "DeadlineExceeded" | "ResourceExhausted" | "Cancelled" | "CONNECTION_CLOSED"
            | "CONNECTION_TIMEOUT" | "CONNECTION_ERROR" => StoreError::Unavailable(e.details),
            _ if e.retry_possible => StoreError::Unavailable(e.details),
            _ => StoreError::Internal(format!("{}: {}", e.public.code, e.details)),
        },
        // Transport and credential failures: the service cannot reach Firestore.
        FirestoreError::NetworkError(_) | FirestoreError::SystemError(_) => {
            StoreError::Unavailable(e.to_string())
        }
        FirestoreError::InvalidParametersError(_) => StoreError::InvalidArgument(e.to_string()),
        FirestoreError::SerializeError(_) | FirestoreError::DeserializeError(_) => {
            StoreError::Serialization(e.to_string())
        }
        FirestoreError::ErrorInTransaction(_) | FirestoreError::CacheError(_) => {
            StoreError::Internal(e.to_string())
        }
    }
}

#[async_trait]
impl Store for FirestoreStore {
    fn kind(&self) -> &'static str {
        "firestore"
    }

    async fn ping(&self) -> StoreResult<()> {
        // A single, unretried get of a document that is never written.
        tokio::time::timeout(self.timeout, self.db.ping())
            .await
            .map_err(|_| StoreError::Unavailable("Firestore did not answer a ping".into()))?
            .map_err(store_error)
    }

    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        self.read_one(path).await
    }

    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.read_many(paths).await
    }

    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>> {
        self.run_query(query).await
    }

    async fn count(&self, query: &Query) -> StoreResult<u64> {
        let docs = self
            .select(query)?
            .aggregate(|_| {
                vec![FirestoreAggregation::new("count".into()).with_operator(
                    FirestoreAggregationOperator::Count(FirestoreAggregationOperatorCount::new()),
                )]
            })
            .query()
            .await
            .map_err(store_error)?;
        let n = docs
            .first()
            .and_then(|d| d.fields.get("count"))
            .and_then(value::as_i64)
            .ok_or_else(|| StoreError::Internal("the count query returned no count".into()))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        if writes.is_empty() {
            return Ok(Committed {
                commit_time: value::now(),
                writes: Vec::new(),
            });
        }
        // A commit without a transaction is atomic already: one round trip. Never
        // retried here: its writes may have been applied.
        self.send_commit(writes, Vec::new()).await
    }

    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>> {
        let mut ids: Vec<String> = self
            .db
            .fluent()
            .list()
            .collections()
            .parent(self.full_name(parent))
            .stream_all_with_errors()
            .await
            .map_err(store_error)?
            .try_collect()
            .await
            .map_err(store_error)?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        let mut select = self.descendants_select(&self.db, parent).limit(limit);
        if let Some(last) = after {
            select = select.start_at(FirestoreQueryCursor::AfterValue(vec![self.reference(last)]));
        }
        select
            .query()
            .await
            .map_err(store_error)?
            .iter()
            .map(|d| self.parse_name(&d.name))
            .collect()
    }

    fn query_stream<'a>(&'a self, query: &Query) -> BoxStream<'a, StoreResult<Doc>> {
        self.streamed(self.select_on(&self.streams, query), Self::to_doc)
    }

    fn descendants_stream<'a>(&'a self, parent: &DocPath) -> BoxStream<'a, StoreResult<DocPath>> {
        self.streamed(Ok(self.descendants_select(&self.streams, parent)), |s, d| {
            s.parse_name(&d.name)
        })
    }

    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        // A kindless all-descendants query from the documents root: every
        // document of the database, including those under missing parents.
        let mut select = self
            .db
            .fluent()
            .select()
            .from("")
            .parent(self.db.get_documents_path().clone())
            .all_descendants()
            .order(|_| {
                vec![FirestoreQueryOrder::new(
                    "__name__".into(),
                    FirestoreQueryDirection::Ascending,
                )]
            })
            .limit(limit);
        if let Some(last) = after {
            select = select.start_at(FirestoreQueryCursor::AfterValue(vec![self.reference(last)]));
        }
        select
            .query()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|d| self.to_doc(d))
            .collect()
    }

    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        super::firestore_listen::listen(&self.db, self.db.get_documents_path(), docs, store_error).await
    }

    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        let data = FirestoreTransaction::new(&self.db, FirestoreTransactionOptions::new())
            .await
            .map_err(store_error)?
            .into_data();
        let reader = Self {
            db: self
                .db
                .clone_with_consistency_selector(FirestoreConsistencySelector::Transaction(
                    data.transaction_id().clone(),
                )),
            streams: self.streams.clone(),
            timeout: self.timeout,
        };
        Ok(Box::new(FirestoreTx {
            store: self.clone(),
            reader,
            data: Some(data),
        }))
    }
}

/// A Firestore read-write transaction: reads go through the transaction, the
/// commit sends the writes with its id; Firestore aborts it on contention.
struct FirestoreTx {
    store: FirestoreStore,
    reader: FirestoreStore,
    /// `None` once committed or rolled back.
    data: Option<FirestoreTransactionData>,
}

impl FirestoreTx {
    fn take(&mut self) -> StoreResult<FirestoreTransactionData> {
        self.data
            .take()
            .ok_or_else(|| StoreError::Internal("the transaction is already finished".into()))
    }
}

#[async_trait]
impl Transaction for FirestoreTx {
    async fn get(&mut self, path: &DocPath) -> StoreResult<Option<Doc>> {
        self.reader.read_one(path).await
    }

    async fn get_all(&mut self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.reader.read_many(paths).await
    }

    async fn query(&mut self, query: &Query) -> StoreResult<Vec<Doc>> {
        self.reader.run_query(query).await
    }

    /// A commit that fails for any reason is rolled back before this returns: a
    /// refused commit (an invalid value, a failed precondition) otherwise keeps
    /// its locks until Firestore expires the transaction, and the next request on
    /// the same documents waits for them (FIRESTORE-NOTES). `data` stays in
    /// `self` until the commit succeeded, so a commit cancelled midway is rolled
    /// back by `Drop`.
    async fn commit(mut self: Box<Self>, writes: Vec<Write>) -> StoreResult<Committed> {
        let id = match &self.data {
            Some(data) => data.transaction_id().clone(),
            None => return Err(StoreError::Internal("the transaction is already finished".into())),
        };
        match self.store.send_commit(writes, id.clone()).await {
            Ok(committed) => {
                self.data = None;
                Ok(committed)
            }
            // A store that does not answer would not answer the rollback either,
            // and an aborted transaction is over already (the retry should not
            // wait behind a rollback): release in the background, through `Drop`.
            Err(e @ (StoreError::Unavailable(_) | StoreError::Aborted(_))) => Err(e),
            Err(e) => {
                self.data = None;
                self.store.rollback_transaction(id).await;
                Err(e)
            }
        }
    }

    async fn rollback(mut self: Box<Self>) {
        if let Ok(data) = self.take() {
            self.store
                .rollback_transaction(data.transaction_id().clone())
                .await;
        }
    }
}

impl Drop for FirestoreTx {
    /// A transaction dropped unfinished (its request was cancelled, or its commit
    /// failed without an answer) releases its locks now rather than when
    /// Firestore expires it.
    fn drop(&mut self) {
        if let Some(data) = self.data.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            handle.spawn(async move {
                store.rollback_transaction(data.transaction_id().clone()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_field_path_segments_that_need_it() {
        assert_eq!(field_path("metadata.createdAt"), "metadata.createdAt");
        assert_eq!(field_path("applied.v3.name"), "applied.v3.name");
        assert_eq!(field_path("a.1x.b-c"), "a.`1x`.`b-c`");
        assert_eq!(field_path("we`ird"), "`we\\`ird`");
    }
}
