//! The store contract for streamed reads (`query_stream`, `descendants_stream`):
//! same results as the paged calls, in the same order, on both stores, also
//! through the service's decorators (deadline, metrics).

use std::sync::Arc;
use std::time::Duration;

use funnelflow::metrics::Metrics;
use funnelflow::store::deadline::Deadlined;
use funnelflow::store::instrumented::Instrumented;
use funnelflow::store::{self, Direction, Doc, DocPath, Fields, Op, Query, Store, Write, value};
use futures::TryStreamExt;

use crate::support::{self, StoreBackend};

contract! {
    query_stream_order_and_completeness: embedded_query_stream_order_and_completeness, firestore_query_stream_order_and_completeness;
    descendants_stream_lists_everything: embedded_descendants_stream_lists_everything, firestore_descendants_stream_lists_everything;
}

fn path(s: &str) -> DocPath {
    DocPath::parse(s).unwrap()
}

/// The store as the service wraps it.
fn decorated(store: &Arc<dyn Store>) -> Arc<dyn Store> {
    let metrics = Metrics::new().unwrap();
    Deadlined::wrap(
        Instrumented::wrap(store.clone(), metrics),
        Duration::from_secs(10),
    )
}

async fn streamed(store: &dyn Store, q: &Query) -> Vec<String> {
    let docs: Vec<Doc> = store.query_stream(q).try_collect().await.unwrap();
    docs.into_iter().map(|d| d.path.as_str().to_owned()).collect()
}

/// More documents than a chunk of the paged fallback (500), with ties on
/// the order field, in two collections of the same id.
async fn query_stream_order_and_completeness(store: Arc<dyn Store>) {
    let parent = path("users/s");
    let writes: Vec<Write> = (0..1_100)
        .map(|i| {
            let mut f = Fields::new();
            f.insert("k".into(), value::int(i % 7));
            Write::set(parent.child("items", &format!("i{i:04}")).unwrap(), f)
        })
        .chain([
            Write::set(path("users/s/deep/d/items/x"), Fields::new()),
            Write::set(path("users/other/items/y"), Fields::new()),
        ])
        .collect();
    store::commit_chunked(store.as_ref(), writes).await.unwrap();
    let wrapped = decorated(&store);
    for s in [store.as_ref(), wrapped.as_ref()] {
        for q in [
            Query::collection(Some(&parent), "items"),
            Query::collection(Some(&parent), "items").order("k", Direction::Desc),
            Query::collection(Some(&parent), "items").order("k", Direction::Asc),
            Query::collection(Some(&parent), "items").filter("k", Op::Eq, value::int(3)),
            Query::collection(Some(&parent), "items")
                .order("k", Direction::Asc)
                .limit(777),
            Query::group(Some(&parent), "items"),
        ] {
            // Every page the paged reads give, in order.
            let mut expected = Vec::new();
            let mut cursor = None;
            loop {
                let page = s
                    .query(&q.clone().after(cursor.clone()).limit(300))
                    .await
                    .unwrap();
                expected.extend(page.iter().map(|d| d.path.as_str().to_owned()));
                match page.last() {
                    Some(last) if page.len() == 300 => cursor = Some(q.cursor_after(last)),
                    _ => break,
                }
            }
            if let Some(limit) = q.limit {
                expected.truncate(limit as usize);
            }
            assert!(!expected.is_empty());
            assert_eq!(streamed(s, &q).await, expected, "{q:?}");
        }
        // A cursor is honoured: the stream continues after it.
        let q = Query::collection(Some(&parent), "items").order("k", Direction::Asc);
        let all = streamed(s, &q).await;
        assert_eq!(all.len(), 1_100);
        let first = s.query(&q.clone().limit(10)).await.unwrap();
        let rest = streamed(s, &q.clone().after(Some(q.cursor_after(&first[9])))).await;
        assert_eq!(rest, all[10..].to_vec());
        // Nothing matches: an empty stream.
        let none = Query::collection(Some(&parent), "items").filter("k", Op::Eq, value::int(99));
        assert!(streamed(s, &none).await.is_empty());
        // A refused query fails as the call does.
        let bad = Query::collection(Some(&parent), "items")
            .order("k", Direction::Asc)
            .after(Some(store::Cursor {
                values: Vec::new(),
                last: path("users/s/items/i0001"),
            }));
        let r: Result<Vec<Doc>, _> = s.query_stream(&bad).try_collect().await;
        assert!(r.is_err());
    }
}

async fn descendants_stream_lists_everything(store: Arc<dyn Store>) {
    let user = path("users/p");
    let mut expected: Vec<DocPath> = [
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
    // More than a chunk of the paged fallback.
    expected.extend((0..1_050).map(|i| path(&format!("users/p/n/{i:04}"))));
    expected.sort_by(|a, b| a.as_str().split('/').cmp(b.as_str().split('/')));
    let writes = expected
        .iter()
        .map(|p| Write::set(p.clone(), Fields::new()))
        .chain([
            Write::set(user.clone(), Fields::new()),
            Write::set(path("users/p2/a/1"), Fields::new()),
            Write::set(path("users/o/a/1"), Fields::new()),
        ])
        .collect();
    store::commit_chunked(store.as_ref(), writes).await.unwrap();
    let wrapped = decorated(&store);
    for s in [store.as_ref(), wrapped.as_ref()] {
        let walked: Vec<DocPath> = s.descendants_stream(&user).try_collect().await.unwrap();
        assert_eq!(walked.len(), expected.len());
        assert_eq!(walked, expected);
        assert_eq!(walked, store::all_descendants(s, &user).await.unwrap());
        let none: Vec<DocPath> = s
            .descendants_stream(&path("users/nobody"))
            .try_collect()
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}
