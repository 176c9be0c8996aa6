//! The store contract, continued: a failed transaction holds no lock
//! afterwards, and a commit reports each write's update time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelflow::store::{self, DocPath, Fields, Store, StoreError, TxOutcome, Value, Write, value};
use futures::FutureExt;
use serde_json::json;

use crate::support::{self, StoreBackend};

contract! {
    failed_transactions_hold_no_locks: embedded_failed_transactions_hold_no_locks, firestore_failed_transactions_hold_no_locks;
    commit_reports_update_times: embedded_commit_reports_update_times, firestore_commit_reports_update_times;
}

fn fields(j: serde_json::Value) -> Fields {
    value::as_map(&value::from_json(&j)).cloned().unwrap_or_default()
}

fn path(s: &str) -> DocPath {
    DocPath::parse(s).unwrap()
}

fn one(name: &str, v: Value) -> Fields {
    Fields::from([(name.to_owned(), v)])
}

/// Right after a transaction fails (in its body, at commit, or dropped), a write
/// and another transaction on the same document go through at once: nothing
/// waits for the emulator's lock timeout (2 s here, far longer in production).
async fn failed_transactions_hold_no_locks(store: Arc<dyn Store>) {
    let p = path("items/locked");
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 1})))])
        .await
        .unwrap();
    let bound = Duration::from_millis(1_500);

    // 1. The commit is refused (an unset value reaches the store).
    let mut tx = store.begin().await.unwrap();
    assert!(tx.get(&p).await.unwrap().is_some());
    let err = tx
        .commit(vec![Write::update(
            p.clone(),
            one("x", Value { value_type: None }),
            vec!["x".into()],
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err:?}");
    let started = Instant::now();
    store
        .commit(vec![Write::update(
            p.clone(),
            one("n", value::int(2)),
            vec!["n".into()],
        )])
        .await
        .unwrap();
    let n = store::run_transaction(store.as_ref(), |tx| {
        let p = p.clone();
        async move {
            let n = tx
                .get(&p)
                .await?
                .and_then(|d| d.field("n").and_then(value::as_i64))
                .unwrap_or(0);
            let w = Write::update(p, one("n", value::int(n + 1)), vec!["n".into()]);
            Ok::<_, StoreError>(TxOutcome::new(vec![w], n + 1))
        }
        .boxed()
    })
    .await
    .unwrap();
    assert_eq!(n, 3);
    let took = started.elapsed();
    assert!(took < bound, "{}: after a refused commit: {took:?}", store.kind());

    // 2. A precondition fails at commit.
    let mut tx = store.begin().await.unwrap();
    tx.get(&p).await.unwrap();
    let err = tx
        .commit(vec![Write::create(p.clone(), fields(json!({"n": 0})))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    let started = Instant::now();
    store.commit(vec![Write::delete(p.clone())]).await.unwrap();
    let took = started.elapsed();
    assert!(
        took < bound,
        "{}: after a failed precondition: {took:?}",
        store.kind()
    );

    // 3. The body fails after reading.
    let started = Instant::now();
    let r: Result<(), StoreError> = store::run_transaction(store.as_ref(), |tx| {
        let p = p.clone();
        async move {
            tx.get(&p).await?;
            Err(StoreError::Internal("the body gave up".into()))
        }
        .boxed()
    })
    .await;
    assert!(r.is_err());
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 5})))])
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < bound, "{}: after a failed body: {took:?}", store.kind());

    // 4. The transaction is dropped unfinished (its request was cancelled).
    let mut tx = store.begin().await.unwrap();
    tx.get(&p).await.unwrap();
    drop(tx);
    let started = Instant::now();
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 6})))])
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < bound,
        "{}: after a dropped transaction: {took:?}",
        store.kind()
    );
}

async fn commit_reports_update_times(store: Arc<dyn Store>) {
    let (a, b, c) = (path("items/a"), path("items/b"), path("items/c"));
    store
        .commit(vec![Write::create(b.clone(), fields(json!({"v": 1})))])
        .await
        .unwrap();
    let committed = store
        .commit(vec![
            Write::create(a.clone(), fields(json!({"v": 1}))),
            Write::update(b.clone(), fields(json!({"v": 2})), vec!["v".into()]),
            Write::delete(c.clone()),
        ])
        .await
        .unwrap();
    let paths: Vec<&DocPath> = committed.writes.iter().map(|(p, _)| p).collect();
    assert_eq!(paths, [&a, &b, &c]);
    let got_a = store.get(&a).await.unwrap().unwrap();
    let got_b = store.get(&b).await.unwrap().unwrap();
    assert_eq!(committed.update_time(&a), Some(got_a.update_time));
    assert_eq!(committed.update_time(&b), Some(got_b.update_time));
    assert_eq!(committed.update_time(&c), None, "a delete has no update time");
    assert_eq!(committed.commit_time, got_a.update_time);

    // A write that changes nothing reports the unchanged update time.
    let same = store
        .commit(vec![Write::update(
            b.clone(),
            fields(json!({"v": 2})),
            vec!["v".into()],
        )])
        .await
        .unwrap();
    assert_eq!(same.update_time(&b), Some(got_b.update_time));

    // Through a transaction, with transforms.
    let (n, committed) = store::run_transaction_committed(store.as_ref(), |tx| {
        let a = a.clone();
        async move {
            let doc = tx.get(&a).await?;
            let v = doc
                .and_then(|d| d.field("v").and_then(value::as_i64))
                .unwrap_or(0);
            let w = Write::update(a, one("v", value::int(v + 10)), vec!["v".into()]).server_time("at");
            Ok::<_, StoreError>(TxOutcome::new(vec![w], v + 10))
        }
        .boxed()
    })
    .await
    .unwrap();
    assert_eq!(n, 11);
    let got_a = store.get(&a).await.unwrap().unwrap();
    assert_eq!(committed.update_time(&a), Some(got_a.update_time));
    // The emulator's request time is not the commit time (it is earlier, to the millisecond).
    let at = got_a.field("at").and_then(value::as_timestamp).unwrap();
    assert!(at <= committed.commit_time);

    // A transaction that only read commits too, reporting no write.
    let ((), committed) = store::run_transaction_committed(store.as_ref(), |tx| {
        let a = a.clone();
        async move {
            tx.get(&a).await?;
            Ok::<_, StoreError>(TxOutcome::new(Vec::new(), ()))
        }
        .boxed()
    })
    .await
    .unwrap();
    assert!(committed.writes.is_empty());
}
