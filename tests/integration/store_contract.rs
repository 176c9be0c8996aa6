//! The store contract: every test runs against the embedded store and against
//! the Firestore emulator, so the two implementations cannot drift.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use funnelflow::store::{
    self, Direction, Doc, DocPath, Fields, Op, Precondition, Query, Store, StoreError, Transform, TxOutcome,
    Write, value,
};
use futures::FutureExt;
use serde_json::json;

use crate::support::{self, StoreBackend};

/// `name: embedded_name, firestore_name;` → one test per backend.
macro_rules! contract {
    ($($test:ident: $embedded:ident, $firestore:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $embedded() {
                $test(support::store(StoreBackend::Embedded, stringify!($test)).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $firestore() {
                $test(support::store(StoreBackend::Firestore, stringify!($test)).await).await;
            }
        )*
    };
}

contract! {
    documents_crud: embedded_documents_crud, firestore_documents_crud;
    preconditions: embedded_preconditions, firestore_preconditions;
    transforms: embedded_transforms, firestore_transforms;
    concurrent_increments: embedded_concurrent_increments, firestore_concurrent_increments;
    subcollections: embedded_subcollections, firestore_subcollections;
    descendants_of_a_large_subtree: embedded_descendants_of_a_large_subtree, firestore_descendants_of_a_large_subtree;
    descendant_pages: embedded_descendant_pages, firestore_descendant_pages;
    queries: embedded_queries, firestore_queries;
    cursor_pages_with_ties: embedded_cursor_pages_with_ties, firestore_cursor_pages_with_ties;
    collection_group_queries: embedded_collection_group_queries, firestore_collection_group_queries;
    get_all_keeps_order: embedded_get_all_keeps_order, firestore_get_all_keeps_order;
    commit_is_atomic: embedded_commit_is_atomic, firestore_commit_is_atomic;
    commit_chunked_600: embedded_commit_chunked_600, firestore_commit_chunked_600;
    transaction_counter: embedded_transaction_counter, firestore_transaction_counter;
    transaction_retries_on_change: embedded_transaction_retries_on_change, firestore_transaction_retries_on_change;
    ping: embedded_ping, firestore_ping;
    scan_every_document: embedded_scan_every_document, firestore_scan_every_document;
}

fn fields(j: serde_json::Value) -> Fields {
    value::as_map(&value::from_json(&j)).cloned().unwrap_or_default()
}

fn path(s: &str) -> DocPath {
    DocPath::parse(s).unwrap()
}

fn ids(docs: &[Doc]) -> Vec<&str> {
    docs.iter().map(|d| d.id()).collect()
}

fn paths(docs: &[Doc]) -> Vec<&str> {
    docs.iter().map(|d| d.path.as_str()).collect()
}

fn int_at(doc: &Doc, field: &str) -> Option<i64> {
    doc.field(field).and_then(value::as_i64)
}

async fn get(store: &Arc<dyn Store>, p: &DocPath) -> Doc {
    store
        .get(p)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{p} is missing"))
}

async fn documents_crud(store: Arc<dyn Store>) {
    let p = path("items/a");
    assert!(store.get(&p).await.unwrap().is_none());

    let initial = json!({"name": "A", "n": 1, "m": {"x": 1, "y": 2}, "keep": "k", "odd-key": {"a b": 1}});
    store
        .commit(vec![Write::create(p.clone(), fields(initial.clone()))])
        .await
        .unwrap();
    let created = get(&store, &p).await;
    assert_eq!(created.path, p);
    assert_eq!(created.fields, fields(initial));
    assert_eq!(created.create_time, created.update_time);

    let err = store
        .commit(vec![Write::create(p.clone(), fields(json!({})))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");

    // Only masked paths are written; a masked path absent from the fields is removed.
    let mask = ["m.x", "m.y", "name", "new.deep.v", "odd-key.a b"];
    store
        .commit(vec![Write::update(
            p.clone(),
            fields(json!({"m": {"x": 5}, "n": 99, "new": {"deep": {"v": true}}, "odd-key": {"a b": 2}})),
            mask.iter().map(|m| (*m).to_owned()).collect(),
        )])
        .await
        .unwrap();
    let updated = get(&store, &p).await;
    assert_eq!(
        updated.fields,
        fields(
            json!({"n": 1, "m": {"x": 5}, "keep": "k", "new": {"deep": {"v": true}}, "odd-key": {"a b": 2}})
        )
    );
    assert!(updated.update_time > created.update_time);
    assert_eq!(updated.create_time, created.create_time);

    store
        .commit(vec![Write::set(p.clone(), fields(json!({"only": 1})))])
        .await
        .unwrap();
    let replaced = get(&store, &p).await;
    assert_eq!(replaced.fields, fields(json!({"only": 1})));
    assert!(replaced.update_time > updated.update_time);
    assert_eq!(replaced.create_time, created.create_time);
    // As in Firestore, a write that changes nothing keeps the update time.
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"only": 1})))])
        .await
        .unwrap();
    assert_eq!(get(&store, &p).await, replaced);

    let missing = path("items/missing");
    let err = store
        .commit(vec![Write::update(
            missing.clone(),
            fields(json!({"a": 1})),
            vec!["a".into()],
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(store.get(&missing).await.unwrap().is_none());

    let merged = path("items/merged");
    store
        .commit(vec![Write::merge(
            merged.clone(),
            fields(json!({"a": {"b": 1}})),
            vec!["a.b".into()],
        )])
        .await
        .unwrap();
    assert_eq!(get(&store, &merged).await.fields, fields(json!({"a": {"b": 1}})));
    store
        .commit(vec![Write::merge(
            merged.clone(),
            fields(json!({"c": 2})),
            vec!["c".into()],
        )])
        .await
        .unwrap();
    assert_eq!(
        get(&store, &merged).await.fields,
        fields(json!({"a": {"b": 1}, "c": 2}))
    );

    store.commit(vec![Write::delete(p.clone())]).await.unwrap();
    assert!(store.get(&p).await.unwrap().is_none());
    store.commit(vec![Write::delete(p.clone())]).await.unwrap();
    let err = store
        .commit(vec![
            Write::delete(p.clone()).precondition(Precondition::Exists(true)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn preconditions(store: Arc<dyn Store>) {
    let p = path("items/p");
    let none = path("items/none");
    store
        .commit(vec![Write::create(p.clone(), fields(json!({"v": 1})))])
        .await
        .unwrap();
    let first = get(&store, &p).await;

    store
        .commit(vec![
            Write::update(p.clone(), fields(json!({"v": 2})), vec!["v".into()])
                .precondition(Precondition::UpdateTime(first.update_time)),
        ])
        .await
        .unwrap();
    let second = get(&store, &p).await;
    assert_eq!(int_at(&second, "v"), Some(2));

    let stale = store
        .commit(vec![
            Write::update(p.clone(), fields(json!({"v": 3})), vec!["v".into()])
                .precondition(Precondition::UpdateTime(first.update_time)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::FailedPrecondition(_)), "{stale:?}");
    assert_eq!(get(&store, &p).await, second);

    let gone = store
        .commit(vec![
            Write::set(none.clone(), fields(json!({"v": 1})))
                .precondition(Precondition::UpdateTime(first.update_time)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(gone, StoreError::FailedPrecondition(_)), "{gone:?}");

    let exists = store
        .commit(vec![
            Write::set(p.clone(), fields(json!({"v": 4}))).precondition(Precondition::Exists(false)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(exists, StoreError::AlreadyExists(_)), "{exists:?}");

    let missing = store
        .commit(vec![
            Write::set(none.clone(), fields(json!({"v": 1}))).precondition(Precondition::Exists(true)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    assert!(store.get(&none).await.unwrap().is_none());

    store
        .commit(vec![
            Write::set(p.clone(), fields(json!({"v": 5}))).precondition(Precondition::Exists(true)),
        ])
        .await
        .unwrap();
    assert_eq!(int_at(&get(&store, &p).await, "v"), Some(5));
}

async fn transforms(store: Arc<dyn Store>) {
    let p = path("counters/c");
    store
        .commit(vec![
            Write::transform(p.clone())
                .increment("n", 1)
                .increment("nested.hits", 2),
        ])
        .await
        .unwrap();
    let doc = get(&store, &p).await;
    assert_eq!(doc.field("n"), Some(&value::int(1)));
    assert_eq!(doc.field("nested.hits"), Some(&value::int(2)));

    store
        .commit(vec![Write::transform(p.clone()).increment("n", 41)])
        .await
        .unwrap();
    assert_eq!(get(&store, &p).await.field("n"), Some(&value::int(42)));

    let mut w = Write::transform(p.clone());
    w.transforms
        .push(("n".into(), Transform::Increment(value::double(0.5))));
    store.commit(vec![w]).await.unwrap();
    assert_eq!(get(&store, &p).await.field("n"), Some(&value::double(42.5)));

    // Transforms apply after the masked update, in the same write.
    let before = value::now();
    store
        .commit(vec![
            Write::update(p.clone(), fields(json!({"m": 5})), vec!["m".into()]).server_time("at"),
        ])
        .await
        .unwrap();
    let doc = get(&store, &p).await;
    let at = doc.field("at").and_then(value::as_timestamp).unwrap();
    assert!(at >= before.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap());
    assert!(at <= doc.update_time, "{at} > {}", doc.update_time);

    store
        .commit(vec![Write::transform(p.clone()).maximum("m", value::int(3))])
        .await
        .unwrap();
    assert_eq!(get(&store, &p).await.field("m"), Some(&value::int(5)));
    store
        .commit(vec![
            Write::transform(p.clone())
                .maximum("m", value::int(7))
                .maximum("fresh", value::int(2)),
        ])
        .await
        .unwrap();
    let doc = get(&store, &p).await;
    assert_eq!(doc.field("m"), Some(&value::int(7)));
    assert_eq!(doc.field("fresh"), Some(&value::int(2)));
}

async fn concurrent_increments(store: Arc<dyn Store>) {
    let p = path("counters/hot");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, p) = (store.clone(), p.clone());
            tokio::spawn(async move { store.commit(vec![Write::transform(p).increment("n", 1)]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(int_at(&get(&store, &p).await, "n"), Some(20));
}

async fn subcollections(store: Arc<dyn Store>) {
    let doc = |s: &str| Write::set(path(s), fields(json!({"at": s})));
    store
        .commit(vec![
            doc("users/u1"),
            doc("users/u1/analyses/a1"),
            doc("users/u1/analyses/a2"),
            doc("users/u1/personas/p1"),
            // `users/u1/x/y` does not exist, yet `x` is a subcollection of u1.
            doc("users/u1/x/y/z/w"),
            // Neither does `users/u2`.
            doc("users/u2/analyses/b1"),
            doc("users/u10/analyses/c1"),
        ])
        .await
        .unwrap();

    let u1 = path("users/u1");
    assert_eq!(
        store.list_collection_ids(&u1).await.unwrap(),
        vec!["analyses", "personas", "x"]
    );
    assert_eq!(
        store.list_collection_ids(&path("users/u2")).await.unwrap(),
        vec!["analyses"]
    );
    assert_eq!(
        store.list_collection_ids(&path("users/u1/x/y")).await.unwrap(),
        vec!["z"]
    );
    assert!(
        store
            .list_collection_ids(&path("users/nobody"))
            .await
            .unwrap()
            .is_empty()
    );

    let mut below: Vec<String> = store::all_descendants(store.as_ref(), &u1)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    below.sort();
    assert_eq!(
        below,
        vec![
            "users/u1/analyses/a1",
            "users/u1/analyses/a2",
            "users/u1/personas/p1",
            "users/u1/x/y/z/w"
        ]
    );
    assert_eq!(
        store::all_descendants(store.as_ref(), &path("users/u2"))
            .await
            .unwrap(),
        vec![path("users/u2/analyses/b1")]
    );

    let sub = store
        .query(&Query::collection(Some(&u1), "analyses"))
        .await
        .unwrap();
    assert_eq!(ids(&sub), vec!["a1", "a2"]);
    assert_eq!(
        ids(&store.query(&Query::collection(None, "users")).await.unwrap()),
        vec!["u1"]
    );
}

/// Pages of descendants: path order segment by segment (as Firestore orders
/// `__name__`), `after` exclusive, `limit` honoured, missing parents included.
async fn descendant_pages(store: Arc<dyn Store>) {
    let user = path("users/p");
    let expected: Vec<DocPath> = [
        "users/p/a/1",
        "users/p/a/1/c/x",
        "users/p/a/2",
        // `a-b` sorts after `a` by segment, before it as a flat string ('-' < '/').
        "users/p/a-b/1",
        "users/p/m/missing/deep/d",
        "users/p/z/9",
    ]
    .into_iter()
    .map(path)
    .collect();
    let writes = expected
        .iter()
        .map(|p| Write::set(p.clone(), Fields::new()))
        .chain([
            Write::set(user.clone(), Fields::new()),
            Write::set(path("users/p2/a/1"), Fields::new()),
            Write::set(path("users/o/a/1"), Fields::new()),
        ])
        .collect();
    store.commit(writes).await.unwrap();
    let mut walked = Vec::new();
    let mut after: Option<DocPath> = None;
    loop {
        let page = store.descendants(&user, after.as_ref(), 4).await.unwrap();
        assert!(page.len() <= 4);
        let done = page.len() < 4;
        walked.extend(page);
        after = walked.last().cloned();
        if done {
            break;
        }
    }
    assert_eq!(walked, expected);
    assert_eq!(
        store.descendants(&user, Some(&expected[1]), 2).await.unwrap(),
        expected[2..4].to_vec()
    );
    assert!(
        store
            .descendants(&user, expected.last(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// More documents than one page of the Firestore listing.
async fn descendants_of_a_large_subtree(store: Arc<dyn Store>) {
    let user = path("users/big");
    let mut expected: Vec<DocPath> = (0..1_050)
        .map(|i| user.child("analyses", &format!("a{i:04}")).unwrap())
        .collect();
    expected.push(path("users/big/personas/p/notes/n"));
    let writes = expected
        .iter()
        .map(|p| Write::set(p.clone(), Fields::new()))
        .chain([Write::set(path("users/bigger/analyses/x"), Fields::new())])
        .collect();
    store::commit_chunked(store.as_ref(), writes).await.unwrap();
    let mut found = store::all_descendants(store.as_ref(), &user).await.unwrap();
    found.sort();
    expected.sort();
    assert_eq!(found.len(), expected.len());
    assert_eq!(found, expected);
}

async fn seed_items(store: &Arc<dyn Store>) {
    let items = [
        (
            "i1",
            json!({"meta": {"status": "open", "score": 10, "rank": 3}, "tags": ["a", "b"]}),
        ),
        (
            "i2",
            json!({"meta": {"status": "open", "score": 20, "rank": 1}, "tags": ["b"]}),
        ),
        (
            "i3",
            json!({"meta": {"status": "closed", "score": 30, "rank": 2}, "tags": ["c"]}),
        ),
        (
            "i4",
            json!({"meta": {"status": "open", "score": 40, "rank": 3}, "tags": []}),
        ),
        ("i5", json!({"meta": {"status": "open"}, "name": "no score"})),
    ];
    store
        .commit(
            items
                .into_iter()
                .map(|(id, f)| Write::set(DocPath::root("items", id).unwrap(), fields(f)))
                .collect(),
        )
        .await
        .unwrap();
}

async fn queries(store: Arc<dyn Store>) {
    seed_items(&store).await;
    let items = || Query::collection(None, "items");
    let run = |q: Query| {
        let store = store.clone();
        async move { store.query(&q).await.unwrap() }
    };

    assert_eq!(ids(&run(items()).await), vec!["i1", "i2", "i3", "i4", "i5"]);
    // Documents without the ordered field are left out.
    let open = items()
        .filter("meta.status", Op::Eq, value::string("open"))
        .order("meta.score", Direction::Asc);
    assert_eq!(ids(&run(open.clone()).await), vec!["i1", "i2", "i4"]);
    let open_desc = items()
        .filter("meta.status", Op::Eq, value::string("open"))
        .order("meta.score", Direction::Desc);
    assert_eq!(ids(&run(open_desc).await), vec!["i4", "i2", "i1"]);

    let range = items()
        .filter("meta.score", Op::Ge, value::int(20))
        .filter("meta.score", Op::Lt, value::int(40))
        .order("meta.score", Direction::Desc);
    assert_eq!(ids(&run(range).await), vec!["i3", "i2"]);
    let range = items()
        .filter("meta.score", Op::Gt, value::int(20))
        .filter("meta.score", Op::Le, value::int(40))
        .order("meta.score", Direction::Asc);
    assert_eq!(ids(&run(range).await), vec!["i3", "i4"]);

    let multi = items()
        .order("meta.rank", Direction::Desc)
        .order("meta.score", Direction::Asc);
    assert_eq!(ids(&run(multi.clone()).await), vec!["i1", "i4", "i3", "i2"]);
    assert_eq!(ids(&run(multi.clone().limit(2)).await), vec!["i1", "i4"]);
    let first = run(multi.clone().limit(1)).await;
    let after = multi.clone().after(Some(multi.cursor_after(&first[0])));
    assert_eq!(ids(&run(after).await), vec!["i4", "i3", "i2"]);

    let tagged = items().filter("tags", Op::ArrayContains, value::string("b"));
    assert_eq!(ids(&run(tagged).await), vec!["i1", "i2"]);
    let within = items().filter(
        "meta.status",
        Op::In,
        value::array(vec![value::string("closed"), value::string("nope")]),
    );
    assert_eq!(ids(&run(within).await), vec!["i3"]);
    let nothing = items().filter("meta.status", Op::Eq, value::string("nope"));
    assert!(run(nothing).await.is_empty());

    let count_open = items().filter("meta.status", Op::Eq, value::string("open"));
    assert_eq!(store.count(&count_open).await.unwrap(), 4);
    assert_eq!(store.count(&open.clone().limit(2)).await.unwrap(), 2);
    let first = run(open.clone().limit(1)).await;
    let rest = open.clone().after(Some(open.cursor_after(&first[0])));
    assert_eq!(store.count(&rest).await.unwrap(), 2);
    assert_eq!(store.count(&items()).await.unwrap(), 5);
    assert_eq!(store.count(&Query::collection(None, "empty")).await.unwrap(), 0);

    // A cursor that does not match the order is refused, not misread.
    let bad = open.clone().after(Some(store::Cursor {
        values: Vec::new(),
        last: path("items/i1"),
    }));
    let err = store.query(&bad).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err:?}");
}

async fn cursor_pages_with_ties(store: Arc<dyn Store>) {
    let at = value::timestamp(jiff::Timestamp::from_second(1_700_000_000).unwrap());
    let mut all: Vec<String> = (0..30)
        .map(|_| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned())
        .collect();
    store
        .commit(
            all.iter()
                .map(|id| {
                    let mut f = Fields::new();
                    f.insert("at".into(), at.clone());
                    Write::set(DocPath::root("events", id).unwrap(), f)
                })
                .collect(),
        )
        .await
        .unwrap();
    all.sort();

    for dir in [Direction::Desc, Direction::Asc] {
        let query = Query::collection(None, "events").order("at", dir);
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .query(&query.clone().after(cursor.clone()).limit(7))
                .await
                .unwrap();
            assert!(page.len() <= 7);
            seen.extend(page.iter().map(|d| d.id().to_owned()));
            match page.last() {
                Some(last) if page.len() == 7 => cursor = Some(query.cursor_after(last)),
                _ => break,
            }
        }
        let mut expected = all.clone();
        if dir == Direction::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{dir:?}");
    }
}

async fn collection_group_queries(store: Arc<dyn Store>) {
    let doc = |s: &str, k: i64| Write::set(path(s), fields(json!({"k": k})));
    store
        .commit(vec![
            doc("users/u1/analyses/a1", 1),
            doc("users/u2/analyses/a2", 2),
            doc("other/o1/analyses/a3", 3),
            doc("users/u1/deep/d/analyses/a4", 4),
            doc("analyses/a5", 5),
            doc("users/u1/analysesX/z", 6),
            doc("users/u10/analyses/a6", 7),
        ])
        .await
        .unwrap();
    let u1 = path("users/u1");

    let scoped = store.query(&Query::group(Some(&u1), "analyses")).await.unwrap();
    assert_eq!(
        paths(&scoped),
        vec!["users/u1/analyses/a1", "users/u1/deep/d/analyses/a4"]
    );
    let everywhere = store.query(&Query::group(None, "analyses")).await.unwrap();
    assert_eq!(
        paths(&everywhere),
        vec![
            "analyses/a5",
            "other/o1/analyses/a3",
            "users/u1/analyses/a1",
            "users/u1/deep/d/analyses/a4",
            "users/u10/analyses/a6",
            "users/u2/analyses/a2",
        ]
    );
    let filtered = Query::group(None, "analyses")
        .filter("k", Op::Ge, value::int(2))
        .order("k", Direction::Desc)
        .limit(3);
    assert_eq!(
        ids(&store.query(&filtered).await.unwrap()),
        vec!["a6", "a5", "a4"]
    );
    assert_eq!(store.count(&Query::group(None, "analyses")).await.unwrap(), 6);
    let one = Query::group(None, "analyses").filter("k", Op::Eq, value::int(3));
    assert_eq!(
        paths(&store.query(&one).await.unwrap()),
        vec!["other/o1/analyses/a3"]
    );
    assert_eq!(
        ids(&store
            .query(&Query::collection(Some(&u1), "analyses"))
            .await
            .unwrap()),
        vec!["a1"]
    );
}

async fn get_all_keeps_order(store: Arc<dyn Store>) {
    let doc = |s: &str| Write::set(path(s), fields(json!({"p": s})));
    store
        .commit(vec![doc("items/a"), doc("items/b"), doc("items/b/sub/c")])
        .await
        .unwrap();
    let wanted = [
        path("items/b"),
        path("items/missing"),
        path("items/a"),
        path("items/b/sub/c"),
        path("items/a"),
    ];
    let got: Vec<Option<String>> = store
        .get_all(&wanted)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.map(|d| d.path.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            Some("items/b".to_owned()),
            None,
            Some("items/a".to_owned()),
            Some("items/b/sub/c".to_owned()),
            Some("items/a".to_owned()),
        ]
    );
    assert!(store.get_all(&[]).await.unwrap().is_empty());
}

async fn commit_is_atomic(store: Arc<dyn Store>) {
    let (x, y) = (path("items/x"), path("items/y"));
    store
        .commit(vec![Write::create(y.clone(), fields(json!({"v": 1})))])
        .await
        .unwrap();
    let err = store
        .commit(vec![
            Write::set(x.clone(), fields(json!({"v": 1}))),
            Write::create(y.clone(), fields(json!({"v": 2}))),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert!(store.get(&x).await.unwrap().is_none());
    assert_eq!(int_at(&get(&store, &y).await, "v"), Some(1));

    let err = store
        .commit(vec![
            Write::transform(y.clone()).increment("v", 1),
            Write::update(path("items/gone"), fields(json!({"v": 1})), vec!["v".into()]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(int_at(&get(&store, &y).await, "v"), Some(1));
}

async fn commit_chunked_600(store: Arc<dyn Store>) {
    let docs: Vec<DocPath> = (0..600)
        .map(|i| DocPath::root("bulk", &format!("b{i:03}")).unwrap())
        .collect();
    let writes = docs
        .iter()
        .map(|p| Write::set(p.clone(), fields(json!({"n": 1}))))
        .collect();
    store::commit_chunked(store.as_ref(), writes).await.unwrap();
    let bulk = Query::collection(None, "bulk");
    assert_eq!(store.count(&bulk).await.unwrap(), 600);
    assert_eq!(store.query(&bulk).await.unwrap().len(), 600);

    let deletes = docs.into_iter().map(Write::delete).collect();
    store::commit_chunked(store.as_ref(), deletes).await.unwrap();
    assert_eq!(store.count(&bulk).await.unwrap(), 0);
}

async fn increment_in_transaction(store: &dyn Store, p: &DocPath) -> Result<i64, StoreError> {
    store::run_transaction(store, |tx| {
        let p = p.clone();
        async move {
            let n = tx.get(&p).await?.and_then(|d| int_at(&d, "n")).unwrap_or(0);
            Ok(TxOutcome::new(
                vec![Write::set(p, fields(json!({"n": n + 1})))],
                n + 1,
            ))
        }
        .boxed()
    })
    .await
}

async fn transaction_counter(store: Arc<dyn Store>) {
    let p = path("counters/tx");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, p) = (store.clone(), p.clone());
            tokio::spawn(async move { increment_in_transaction(store.as_ref(), &p).await })
        })
        .collect();
    let mut results = HashSet::new();
    for t in tasks {
        results.insert(t.await.unwrap().unwrap());
    }
    // Every transaction saw a distinct value: none lost an update.
    assert_eq!(results, (1..=20).collect());
    assert_eq!(int_at(&get(&store, &p).await, "n"), Some(20));
}

/// A document read by a transaction changes before the commit: the attempt
/// must not overwrite that change. The embedded store aborts it and
/// `run_transaction` runs the body again on the new value; Firestore's locks may
/// instead hold the other writer back until the commit. Either way no update is lost.
async fn transaction_retries_on_change(store: Arc<dyn Store>) {
    type Racer = tokio::task::JoinHandle<Result<store::Committed, StoreError>>;
    let p = path("counters/raced");
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 1})))])
        .await
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let racer: Arc<std::sync::Mutex<Option<Racer>>> = Arc::default();
    let embedded = store.kind() == "embedded";
    let outcome: Result<i64, StoreError> = store::run_transaction(store.as_ref(), |tx| {
        let (p, attempts, racer, outside) = (p.clone(), attempts.clone(), racer.clone(), store.clone());
        async move {
            let n = tx.get(&p).await?.and_then(|d| int_at(&d, "n")).unwrap_or(0);
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                let p = p.clone();
                let handle = tokio::spawn(async move {
                    outside
                        .commit(vec![Write::transform(p).increment("n", 100)])
                        .await
                });
                if embedded {
                    handle.await.unwrap()?;
                } else {
                    // Don't wait: Firestore may hold this writer until we commit.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    *racer.lock().unwrap() = Some(handle);
                }
            }
            Ok(TxOutcome::new(
                vec![Write::set(p.clone(), fields(json!({"n": n + 1})))],
                n + 1,
            ))
        }
        .boxed()
    })
    .await;
    let returned = outcome.unwrap();
    let handle = racer.lock().unwrap().take();
    let racer_applied = match handle {
        Some(h) => h.await.unwrap().is_ok(),
        None => true,
    };
    let n = int_at(&get(&store, &p).await, "n").unwrap();
    let tries = attempts.load(Ordering::SeqCst);
    assert_eq!(
        n,
        if racer_applied { 102 } else { 2 },
        "returned {returned}, {tries} attempts"
    );
    if embedded {
        assert_eq!((tries, returned), (2, 102));
    }
}

async fn ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

// ---- embedded only: the optimistic checks, observed directly ----

#[tokio::test]
async fn embedded_transaction_aborts_when_a_read_changed() {
    let store = support::store(StoreBackend::Embedded, "tx").await;
    let p = path("counters/c");
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 1})))])
        .await
        .unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(tx.get(&p).await.unwrap().is_some());
    store
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 2})))])
        .await
        .unwrap();
    let err = tx
        .commit(vec![Write::set(p.clone(), fields(json!({"n": 10})))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");
    assert_eq!(int_at(&get(&store, &p).await, "n"), Some(2));

    // A missing document that appears meanwhile aborts too.
    let q = path("counters/new");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.get_all(std::slice::from_ref(&q)).await.unwrap()[0].is_none());
    store
        .commit(vec![Write::create(q.clone(), Fields::new())])
        .await
        .unwrap();
    let err = tx.commit(vec![Write::delete(q.clone())]).await.unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");

    // Unchanged reads commit.
    let mut tx = store.begin().await.unwrap();
    tx.get(&p).await.unwrap();
    tx.commit(vec![Write::set(p.clone(), fields(json!({"n": 3})))])
        .await
        .unwrap();
    assert_eq!(int_at(&get(&store, &p).await, "n"), Some(3));
}

#[tokio::test]
async fn embedded_transaction_aborts_when_a_query_result_changed() {
    let store = support::store(StoreBackend::Embedded, "txq").await;
    seed_items(&store).await;
    let open = Query::collection(None, "items").filter("meta.status", Op::Eq, value::string("open"));

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.query(&open).await.unwrap().len(), 4);
    store
        .commit(vec![Write::set(
            path("items/i9"),
            fields(json!({"meta": {"status": "open"}})),
        )])
        .await
        .unwrap();
    let err = tx
        .commit(vec![Write::set(
            path("items/summary"),
            fields(json!({"open": 4})),
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err:?}");
    assert!(store.get(&path("items/summary")).await.unwrap().is_none());

    // A change the query does not see does not abort.
    let mut tx = store.begin().await.unwrap();
    tx.query(&open).await.unwrap();
    store
        .commit(vec![Write::set(
            path("items/i3"),
            fields(json!({"meta": {"status": "closed", "x": 1}})),
        )])
        .await
        .unwrap();
    tx.commit(vec![Write::set(
        path("items/summary"),
        fields(json!({"open": 5})),
    )])
    .await
    .unwrap();
}

/// The backup's read: every document of the database, whole, in path order
/// (segment by segment), in pages, including under missing parents and in
/// collections nobody declared.
async fn scan_every_document(store: Arc<dyn Store>) {
    assert!(store.scan(None, 10).await.unwrap().is_empty());
    let mut expected = vec![
        "a/b",
        "a/b/c/d",
        "a/b/c/d/e/f",
        "a-x/c",
        "missing/parent/sub/x",
        "users/u1",
        "users/u1/analyses/a1",
        "users/u1/analyses/a2",
        "users/u2/deep/d/deeper/e",
        "z/1",
        "z/2",
    ];
    let writes = expected
        .iter()
        .map(|p| Write::set(path(p), fields(json!({"p": p, "n": {"k": [1, 2.5]}}))))
        .collect();
    store.commit(writes).await.unwrap();
    // More than a page of documents in one collection.
    let bulk: Vec<String> = (0..25).map(|i| format!("users/u1/bulk/{i:03}")).collect();
    store
        .commit(
            bulk.iter()
                .map(|p| Write::set(path(p), fields(json!({"p": p}))))
                .collect(),
        )
        .await
        .unwrap();
    expected.extend(bulk.iter().map(String::as_str));
    expected.sort_by(|a, b| a.split('/').cmp(b.split('/')));

    let mut seen: Vec<Doc> = Vec::new();
    loop {
        let page = store.scan(seen.last().map(|d| &d.path), 7).await.unwrap();
        assert!(page.len() <= 7);
        let done = page.len() < 7;
        seen.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(paths(&seen), expected);
    let one = seen.iter().find(|d| d.path.as_str() == "a/b/c/d").unwrap();
    assert_eq!(one.fields, fields(json!({"p": "a/b/c/d", "n": {"k": [1, 2.5]}})));
    assert_eq!(one.create_time, one.update_time);
    assert_eq!(store.get(&one.path).await.unwrap().as_ref(), Some(one));
    // A cursor on a document that no longer exists still continues after it.
    let rest = store.scan(Some(&path("m/zzz")), 100).await.unwrap();
    assert_eq!(paths(&rest).first(), Some(&"missing/parent/sub/x"));
}
