//! The embedded in-process store: Firestore's semantics as the code relies on
//! them (total query order with ties by document path, cursors, atomic commits
//! with preconditions and transforms, subcollections, optimistic transactions),
//! held in memory and lost on exit.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::value::{self, ValueType};
use super::{
    Committed, Direction, Doc, DocPath, Filter, ListenEvent, ListenStream, Op, Precondition, Query, Store,
    StoreError, StoreResult, Timestamp, Transaction, Transform, Value, Write, WriteOp, limits,
};

/// An in-memory document store; clones share the same data.
#[derive(Clone, Default)]
pub struct EmbeddedStore {
    state: Arc<RwLock<State>>,
    changes: Arc<Changes>,
}

/// Committed writes, for listeners: the paths of each commit, in commit order.
struct Changes {
    sender: broadcast::Sender<Arc<[DocPath]>>,
    /// Test hook: listen streams fail as if the connection broke.
    suspended: AtomicBool,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(LISTEN_BUFFER),
            suspended: AtomicBool::new(false),
        }
    }
}

/// Commits a listener may fall behind by before its stream fails (it then
/// reconnects and re-reads, as after a broken connection).
const LISTEN_BUFFER: usize = 4096;

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Breaks every listen stream and refuses new ones (`true`), as a lost
    /// connection to Firestore's listen service would, while reads and writes
    /// go on; `false` lets listeners connect again. For tests of listeners.
    pub fn suspend_listeners(&self, suspended: bool) {
        self.changes.suspended.store(suspended, AtomicOrdering::SeqCst);
        if suspended {
            // Wakes every stream, which then sees the flag and fails.
            let _ = self.changes.sender.send(Arc::from(Vec::new()));
        }
    }

    /// Commits under the write lock and tells listeners, in commit order.
    fn commit_locked(&self, state: &mut State, writes: Vec<Write>) -> StoreResult<Committed> {
        let committed = state.commit(writes)?;
        if self.changes.sender.receiver_count() > 0 && !committed.writes.is_empty() {
            let paths: Arc<[DocPath]> = committed.writes.iter().map(|(p, _)| p.clone()).collect();
            let _ = self.changes.sender.send(paths);
        }
        Ok(committed)
    }

    // Nothing panics while a guard is held, so a poisoned lock still holds consistent data.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    /// Collection path (`users/u1/analyses`) → document id → document. A
    /// collection is removed with its last document, so every key holds documents.
    collections: BTreeMap<String, BTreeMap<String, Doc>>,
    last_commit: Option<Timestamp>,
}

impl State {
    fn get(&self, path: &DocPath) -> Option<&Doc> {
        self.collections.get(path.collection_path())?.get(path.id())
    }

    /// Collections whose path starts with `prefix`.
    fn collections_under<'a>(
        &'a self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'a String, &'a BTreeMap<String, Doc>)> {
        self.collections
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn query(&self, q: &Query) -> StoreResult<Vec<&Doc>> {
        limits::check_query(q)?;
        let order = effective_order(q)?;
        for f in &q.filters {
            if f.op == Op::In && as_array(&f.value).is_none() {
                return Err(StoreError::InvalidArgument(format!(
                    "the `in` filter on {} needs an array",
                    f.field
                )));
            }
        }
        if let Some(c) = &q.start_after
            && c.values.len() != order.len()
        {
            return Err(StoreError::InvalidArgument(
                "the cursor does not match the query's order".into(),
            ));
        }
        let matches = |d: &&Doc| {
            q.filters.iter().all(|f| filter_matches(d, f)) && order.iter().all(|(f, _)| d.field(f).is_some())
        };
        let mut docs: Vec<&Doc> = if q.all_descendants {
            let prefix = q.parent.as_ref().map(|p| format!("{p}/")).unwrap_or_default();
            self.collections_under(&prefix)
                .filter(|(path, _)| last_segment(path) == q.collection)
                .flat_map(|(_, docs)| docs.values())
                .filter(matches)
                .collect()
        } else {
            let path = match &q.parent {
                Some(p) => format!("{p}/{}", q.collection),
                None => q.collection.clone(),
            };
            self.collections
                .get(&path)
                .into_iter()
                .flat_map(|docs| docs.values())
                .filter(matches)
                .collect()
        };
        let tie = q.tie_direction();
        docs.sort_by(|a, b| {
            order
                .iter()
                .map(|(f, dir)| directed(compare_opt(a.field(f), b.field(f)), *dir))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| directed(cmp_paths(a.path.as_str(), b.path.as_str()), tie))
        });
        if let Some(c) = &q.start_after {
            docs.retain(|d| {
                order
                    .iter()
                    .zip(&c.values)
                    .map(|((f, dir), v)| directed(compare_opt(d.field(f), Some(v)), *dir))
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| directed(cmp_paths(d.path.as_str(), c.last.as_str()), tie))
                    .is_gt()
            });
        }
        if let Some(limit) = q.limit {
            docs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(docs)
    }

    fn next_commit_time(&mut self) -> Timestamp {
        let now = value::now();
        let t = match self.last_commit {
            Some(last) if now <= last => last
                .checked_add(jiff::SignedDuration::from_micros(1))
                .unwrap_or(last),
            _ => now,
        };
        self.last_commit = Some(t);
        t
    }

    /// Applies all writes or none; refuses, as Firestore does, what it cannot store.
    fn commit(&mut self, writes: Vec<Write>) -> StoreResult<Committed> {
        // Firestore validates the whole request before any precondition.
        writes.iter().try_for_each(limits::check_write)?;
        if writes.is_empty() {
            return Ok(Committed {
                commit_time: value::now(),
                writes: Vec::new(),
            });
        }
        let now = self.next_commit_time();
        // Writes to one document apply in order, each on the result of the previous.
        let mut staged: HashMap<DocPath, Option<Doc>> = HashMap::new();
        let mut results = Vec::with_capacity(writes.len());
        for w in writes {
            let current = match staged.get(&w.path) {
                Some(d) => d.clone(),
                None => self.get(&w.path).cloned(),
            };
            let next = apply_write(current, w.op, &w.precondition, &w.transforms, &w.path, now)?;
            if let Some(doc) = &next {
                limits::check_document(&w.path, &doc.fields)?;
            }
            results.push((w.path.clone(), next.as_ref().map(|d| d.update_time)));
            staged.insert(w.path, next);
        }
        for (path, doc) in staged {
            match doc {
                Some(doc) => {
                    self.collections
                        .entry(path.collection_path().to_owned())
                        .or_default()
                        .insert(path.id().to_owned(), doc);
                }
                None => {
                    if let Some(coll) = self.collections.get_mut(path.collection_path()) {
                        coll.remove(path.id());
                        if coll.is_empty() {
                            self.collections.remove(path.collection_path());
                        }
                    }
                }
            }
        }
        Ok(Committed {
            commit_time: now,
            writes: results,
        })
    }
}

fn apply_write(
    current: Option<Doc>,
    op: WriteOp,
    precondition: &Precondition,
    transforms: &[(String, Transform)],
    path: &DocPath,
    now: Timestamp,
) -> StoreResult<Option<Doc>> {
    match (precondition, &current) {
        (Precondition::Exists(true), None) => {
            return Err(StoreError::NotFound(path.to_string()));
        }
        (Precondition::Exists(false), Some(_)) => {
            return Err(StoreError::AlreadyExists(path.to_string()));
        }
        (Precondition::UpdateTime(t), d) if d.as_ref().map(|d| d.update_time) != Some(*t) => {
            return Err(StoreError::FailedPrecondition(format!(
                "{path} was changed since {t}"
            )));
        }
        _ => {}
    }
    let mut fields = match op {
        WriteOp::Delete => {
            if !transforms.is_empty() {
                return Err(StoreError::InvalidArgument(
                    "a delete cannot carry transforms".into(),
                ));
            }
            return Ok(None);
        }
        WriteOp::Set(fields) => fields,
        WriteOp::Update { fields, mask } => {
            let mut out = current.as_ref().map(|d| d.fields.clone()).unwrap_or_default();
            value::apply_mask(&mut out, &fields, &mask);
            out
        }
    };
    for (field, t) in transforms {
        let next = match t {
            Transform::ServerTime => value::timestamp(now),
            Transform::Increment(by) => increment(value::get_path(&fields, field), by)?,
            Transform::Maximum(v) => maximum(value::get_path(&fields, field), v)?,
        };
        value::set_path(&mut fields, field, next);
    }
    Ok(Some(match current {
        // Like Firestore, a write that changes nothing keeps the update time.
        Some(d) if d.fields == fields => d,
        Some(d) => Doc {
            fields,
            update_time: now,
            ..d
        },
        None => Doc {
            path: path.clone(),
            fields,
            create_time: now,
            update_time: now,
        },
    }))
}

fn numeric_operand(v: &Value) -> StoreResult<()> {
    match v.value_type {
        Some(ValueType::IntegerValue(_) | ValueType::DoubleValue(_)) => Ok(()),
        _ => Err(StoreError::InvalidArgument(
            "a numeric transform needs a number".into(),
        )),
    }
}

/// Firestore's increment: int + int stays an int (saturating), anything with a
/// double is a double, a missing or non-numeric field becomes the operand.
fn increment(current: Option<&Value>, by: &Value) -> StoreResult<Value> {
    numeric_operand(by)?;
    Ok(match (current.map(|v| &v.value_type), &by.value_type) {
        (Some(Some(ValueType::IntegerValue(a))), Some(ValueType::IntegerValue(b))) => {
            value::int(a.saturating_add(*b))
        }
        (Some(Some(ValueType::IntegerValue(_) | ValueType::DoubleValue(_))), _) => {
            match (current.and_then(value::as_f64), value::as_f64(by)) {
                (Some(a), Some(b)) => value::double(a + b),
                _ => by.clone(),
            }
        }
        _ => by.clone(),
    })
}

/// Firestore's maximum: the larger operand (keeping the stored one on a tie),
/// NaN if either is NaN, the operand when the field is missing or not a number.
fn maximum(current: Option<&Value>, v: &Value) -> StoreResult<Value> {
    numeric_operand(v)?;
    let Some(cur) = current.filter(|c| value::as_f64(c).is_some()) else {
        return Ok(v.clone());
    };
    let (a, b) = (value::as_f64(cur).unwrap_or(0.0), value::as_f64(v).unwrap_or(0.0));
    if a.is_nan() || b.is_nan() {
        return Ok(value::double(f64::NAN));
    }
    let greater = match (&cur.value_type, &v.value_type) {
        (Some(ValueType::IntegerValue(x)), Some(ValueType::IntegerValue(y))) => y > x,
        _ => b > a,
    };
    Ok(if greater { v.clone() } else { cur.clone() })
}

fn filter_matches(doc: &Doc, f: &Filter) -> bool {
    let Some(v) = doc.field(&f.field) else {
        return false;
    };
    match f.op {
        Op::Eq => value::equals(v, &f.value),
        Op::In => as_array(&f.value).is_some_and(|a| a.iter().any(|x| value::equals(v, x))),
        Op::ArrayContains => as_array(v).is_some_and(|a| a.iter().any(|x| value::equals(x, &f.value))),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            // Range filters only match values of the filter's type; null and NaN never.
            if !comparable(v) || !comparable(&f.value) || !same_kind(v, &f.value) {
                return false;
            }
            let o = value::compare(v, &f.value);
            match f.op {
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                _ => o.is_ge(),
            }
        }
    }
}

fn comparable(v: &Value) -> bool {
    !matches!(v.value_type, None | Some(ValueType::NullValue(_)))
        && value::as_f64(v).is_none_or(|f| !f.is_nan())
}

/// Firestore's type classes for range filters (integers and doubles are one).
fn same_kind(a: &Value, b: &Value) -> bool {
    value::type_rank(a) == value::type_rank(b)
}

fn as_array(v: &Value) -> Option<&[Value]> {
    match &v.value_type {
        Some(ValueType::ArrayValue(a)) => Some(&a.values),
        _ => None,
    }
}

fn compare_opt(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => value::compare(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn directed(o: Ordering, dir: Direction) -> Ordering {
    match dir {
        Direction::Asc => o,
        Direction::Desc => o.reverse(),
    }
}

/// Document paths order segment by segment, as Firestore orders `__name__`.
fn cmp_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

/// The order a query's results come in, before the path tie-breaker: the
/// explicit `order_by`, then (as Firestore adds implicitly) every range-filtered
/// field not ordered yet, by field path, in the direction of the last order.
/// A cursor must then carry a value per entry, so such a query with a cursor
/// must order by its range fields explicitly.
pub(super) fn effective_order(q: &Query) -> StoreResult<Vec<(String, Direction)>> {
    let mut order = q.order_by.clone();
    let implicit: BTreeSet<&str> = q
        .filters
        .iter()
        .filter(|f| matches!(f.op, Op::Lt | Op::Le | Op::Gt | Op::Ge))
        .map(|f| f.field.as_str())
        .filter(|f| !q.order_by.iter().any(|(o, _)| o == f))
        .collect();
    if !implicit.is_empty() && q.start_after.is_some() {
        return Err(StoreError::InvalidArgument(
            "a query with a cursor must order by its range-filtered fields".into(),
        ));
    }
    let dir = q.tie_direction();
    order.extend(implicit.into_iter().map(|f| (f.to_owned(), dir)));
    Ok(order)
}

/// The streams (`query_stream`, `descendants_stream`) are the trait's chunked
/// defaults: each chunk is read under the lock, released between chunks, so a
/// long stream never holds it across an await.
#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn get(&self, path: &DocPath) -> StoreResult<Option<Doc>> {
        Ok(self.read().get(path).cloned())
    }

    async fn get_all(&self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        let state = self.read();
        Ok(paths.iter().map(|p| state.get(p).cloned()).collect())
    }

    async fn query(&self, query: &Query) -> StoreResult<Vec<Doc>> {
        Ok(self.read().query(query)?.into_iter().cloned().collect())
    }

    async fn count(&self, query: &Query) -> StoreResult<u64> {
        Ok(self.read().query(query)?.len() as u64)
    }

    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        self.commit_locked(&mut self.write(), writes)
    }

    async fn list_collection_ids(&self, parent: &DocPath) -> StoreResult<Vec<String>> {
        let prefix = format!("{parent}/");
        let state = self.read();
        let ids: BTreeSet<&str> = state
            .collections_under(&prefix)
            .filter_map(|(path, _)| path.get(prefix.len()..)?.split('/').next())
            .collect();
        Ok(ids.into_iter().map(str::to_owned).collect())
    }

    async fn descendants(
        &self,
        parent: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        let prefix = format!("{parent}/");
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let state = self.read();
        // The page's paths are the `limit` smallest after `after`: selected, not
        // sorted whole, so walking a large subtree page by page stays linear per page.
        let mut paths: Vec<&DocPath> = state
            .collections_under(&prefix)
            .flat_map(|(_, docs)| docs.values().map(|d| &d.path))
            .filter(|p| after.is_none_or(|a| cmp_paths(p.as_str(), a.as_str()).is_gt()))
            .collect();
        let by_path = |a: &&DocPath, b: &&DocPath| cmp_paths(a.as_str(), b.as_str());
        if paths.len() > limit {
            if limit == 0 {
                return Ok(Vec::new());
            }
            paths.select_nth_unstable_by(limit - 1, by_path);
            paths.truncate(limit);
        }
        paths.sort_unstable_by(by_path);
        Ok(paths.into_iter().cloned().collect())
    }

    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        let state = self.read();
        let mut docs: Vec<&Doc> = state
            .collections
            .values()
            .flat_map(|docs| docs.values())
            .filter(|d| after.is_none_or(|a| cmp_paths(d.path.as_str(), a.as_str()).is_gt()))
            .collect();
        docs.sort_by(|a, b| cmp_paths(a.path.as_str(), b.path.as_str()));
        docs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(docs.into_iter().cloned().collect())
    }

    /// The documents' current state, `Current`, then every commit that touches
    /// one of them, as Firestore's documents target does.
    async fn listen(&self, docs: &[DocPath]) -> StoreResult<ListenStream> {
        let suspended = || {
            self.changes
                .suspended
                .load(AtomicOrdering::SeqCst)
                .then(|| StoreError::Unavailable("listening is suspended".into()))
        };
        if let Some(e) = suspended() {
            return Err(e);
        }
        // Subscribed before the initial state is read: nothing committed in between is missed.
        let receiver = self.changes.sender.subscribe();
        let wanted: Arc<BTreeSet<DocPath>> = Arc::new(docs.iter().cloned().collect());
        let initial: Vec<StoreResult<ListenEvent>> = {
            let state = self.read();
            wanted
                .iter()
                .filter(|p| state.get(p).is_some())
                .map(|p| Ok(ListenEvent::Changed(p.clone())))
                .chain([Ok(ListenEvent::Current)])
                .collect()
        };
        let changes = self.changes.clone();
        let live = futures::stream::unfold(Some(receiver), move |receiver| {
            let (wanted, changes) = (wanted.clone(), changes.clone());
            async move {
                let mut receiver = receiver?;
                loop {
                    let failed = |why: &str| Some((vec![Err(StoreError::Unavailable(why.into()))], None));
                    match receiver.recv().await {
                        _ if changes.suspended.load(AtomicOrdering::SeqCst) => {
                            return failed("listening is suspended");
                        }
                        Ok(paths) => {
                            let hits: Vec<StoreResult<ListenEvent>> = paths
                                .iter()
                                .filter(|p| wanted.contains(*p))
                                .map(|p| Ok(ListenEvent::Changed(p.clone())))
                                .collect();
                            if !hits.is_empty() {
                                return Some((hits, Some(receiver)));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return failed("the listener fell behind the commits");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .flat_map(futures::stream::iter);
        Ok(futures::stream::iter(initial).chain(live).boxed())
    }

    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        Ok(Box::new(EmbeddedTransaction {
            store: self.clone(),
            reads: HashMap::new(),
            queries: Vec::new(),
        }))
    }
}

/// What a document looked like when read: its update time, or `None` if missing.
type Version = Option<Timestamp>;

/// Optimistic transaction: reads go to the live data and record what they saw;
/// the commit re-checks all of it under the write lock and aborts on any change.
struct EmbeddedTransaction {
    store: EmbeddedStore,
    /// The first version seen of each document read.
    reads: HashMap<DocPath, Version>,
    /// Each query run, with the paths and versions it returned.
    queries: Vec<(Query, Vec<(DocPath, Timestamp)>)>,
}

impl EmbeddedTransaction {
    fn record(&mut self, path: &DocPath, doc: Option<&Doc>) {
        self.reads
            .entry(path.clone())
            .or_insert_with(|| doc.map(|d| d.update_time));
    }
}

fn snapshot(docs: &[&Doc]) -> Vec<(DocPath, Timestamp)> {
    docs.iter().map(|d| (d.path.clone(), d.update_time)).collect()
}

#[async_trait]
impl Transaction for EmbeddedTransaction {
    async fn get(&mut self, path: &DocPath) -> StoreResult<Option<Doc>> {
        let doc = self.store.read().get(path).cloned();
        self.record(path, doc.as_ref());
        Ok(doc)
    }

    async fn get_all(&mut self, paths: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        let docs: Vec<Option<Doc>> = {
            let state = self.store.read();
            paths.iter().map(|p| state.get(p).cloned()).collect()
        };
        for (p, d) in paths.iter().zip(&docs) {
            self.record(p, d.as_ref());
        }
        Ok(docs)
    }

    async fn query(&mut self, query: &Query) -> StoreResult<Vec<Doc>> {
        let (docs, seen) = {
            let state = self.store.read();
            let docs = state.query(query)?;
            let seen = snapshot(&docs);
            (docs.into_iter().cloned().collect::<Vec<_>>(), seen)
        };
        for d in &docs {
            self.record(&d.path, Some(d));
        }
        self.queries.push((query.clone(), seen));
        Ok(docs)
    }

    async fn commit(self: Box<Self>, writes: Vec<Write>) -> StoreResult<Committed> {
        let mut state = self.store.write();
        for (path, version) in &self.reads {
            if state.get(path).map(|d| d.update_time) != *version {
                return Err(StoreError::Aborted(format!("{path} changed")));
            }
        }
        for (query, seen) in &self.queries {
            if snapshot(&state.query(query)?) != *seen {
                return Err(StoreError::Aborted(format!(
                    "the results of a query on {} changed",
                    query.collection
                )));
            }
        }
        self.store.commit_locked(&mut state, writes)
    }

    async fn rollback(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_order_by_segment() {
        assert_eq!(cmp_paths("u/a/x/1", "u/a-b/x/0"), Ordering::Less);
        assert_eq!(cmp_paths("c/a", "c/ab"), Ordering::Less);
    }

    #[test]
    fn increments_and_maximum_follow_firestore() -> StoreResult<()> {
        assert_eq!(increment(Some(&value::int(2)), &value::int(3))?, value::int(5));
        assert_eq!(
            increment(Some(&value::int(2)), &value::double(0.5))?,
            value::double(2.5)
        );
        assert_eq!(increment(None, &value::int(1))?, value::int(1));
        assert_eq!(
            increment(Some(&value::int(i64::MAX)), &value::int(1))?,
            value::int(i64::MAX)
        );
        assert_eq!(maximum(Some(&value::int(4)), &value::int(3))?, value::int(4));
        assert_eq!(
            maximum(Some(&value::int(4)), &value::double(4.5))?,
            value::double(4.5)
        );
        assert_eq!(maximum(Some(&value::string("x")), &value::int(1))?, value::int(1));
        assert!(increment(None, &value::string("x")).is_err());
        Ok(())
    }
}
