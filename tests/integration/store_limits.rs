//! The store contract, continued: what both stores refuse (every value,
//! name and size Firestore refuses, with `InvalidArgument`).

use std::sync::Arc;

use funnelflow::store::{
    self, DocPath, Fields, Op, Query, Store, StoreError, Value, Write, limits, value, value::ValueType,
};
use serde_json::json;

use crate::support::{self, StoreBackend};

contract! {
    refuses_unset_values: embedded_refuses_unset_values, firestore_refuses_unset_values;
    refuses_bad_field_names: embedded_refuses_bad_field_names, firestore_refuses_bad_field_names;
    refuses_documents_over_1_mib: embedded_refuses_documents_over_1_mib, firestore_refuses_documents_over_1_mib;
    refuses_nested_arrays_and_depth: embedded_refuses_nested_arrays_and_depth, firestore_refuses_nested_arrays_and_depth;
    refuses_unstorable_timestamps: embedded_refuses_unstorable_timestamps, firestore_refuses_unstorable_timestamps;
    refuses_bad_geo_points_and_references: embedded_refuses_bad_geo_points_and_references, firestore_refuses_bad_geo_points_and_references;
}

fn fields(j: serde_json::Value) -> Fields {
    value::as_map(&value::from_json(&j)).cloned().unwrap_or_default()
}

fn path(s: &str) -> DocPath {
    DocPath::parse(s).unwrap()
}

fn unset() -> Value {
    Value { value_type: None }
}

fn one(name: &str, v: Value) -> Fields {
    Fields::from([(name.to_owned(), v)])
}

fn ts(seconds: i64, nanos: i32) -> Value {
    Value {
        value_type: Some(ValueType::TimestampValue(value::ProtoTimestamp {
            seconds,
            nanos,
        })),
    }
}

fn nested_maps(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |v, _| value::map(one("m", v)))
}

/// The commit fails with `InvalidArgument` and changes nothing.
async fn refused(store: &Arc<dyn Store>, writes: Vec<Write>, what: &str) {
    let paths: Vec<DocPath> = writes.iter().map(|w| w.path.clone()).collect();
    let before = store.get_all(&paths).await.unwrap();
    match store.commit(writes).await {
        Err(StoreError::InvalidArgument(_)) => {}
        other => panic!(
            "{}: {what}: expected InvalidArgument, got {other:?}",
            store.kind()
        ),
    }
    assert_eq!(
        store.get_all(&paths).await.unwrap(),
        before,
        "{what}: something was written"
    );
}

async fn accepted(store: &Arc<dyn Store>, writes: Vec<Write>, what: &str) {
    if let Err(e) = store.commit(writes).await {
        panic!("{}: {what}: refused: {e:?}", store.kind());
    }
}

async fn refuses_unset_values(store: Arc<dyn Store>) {
    let p = path("items/unset");
    refused(
        &store,
        vec![Write::set(p.clone(), one("x", unset()))],
        "top level",
    )
    .await;
    refused(
        &store,
        vec![Write::set(p.clone(), one("m", value::map(one("y", unset()))))],
        "in a map",
    )
    .await;
    refused(
        &store,
        vec![Write::set(
            p.clone(),
            one("a", value::array(vec![value::int(1), unset()])),
        )],
        "in an array",
    )
    .await;
    // The whole commit fails: the valid write beside it is not applied either.
    refused(
        &store,
        vec![
            Write::create(path("items/valid"), fields(json!({"v": 1}))),
            Write::merge(p.clone(), one("x", unset()), vec!["x".into()]),
        ],
        "masked, beside a valid write",
    )
    .await;
    refused(
        &store,
        vec![Write::merge(
            p.clone(),
            one("m", value::map(one("y", unset()))),
            vec!["m".into()],
        )],
        "masked, nested",
    )
    .await;
    refused(
        &store,
        vec![Write {
            transforms: vec![("n".into(), store::Transform::Increment(unset()))],
            ..Write::transform(p.clone())
        }],
        "a transform operand",
    )
    .await;
    // What an update's mask does not name is not written, so not checked either.
    accepted(
        &store,
        vec![Write::merge(
            p.clone(),
            Fields::from([("x".to_owned(), value::int(1)), ("ignored".to_owned(), unset())]),
            vec!["x".into()],
        )],
        "unset value outside the mask",
    )
    .await;
    // `None` from serde is null (what `PATCH {"status":"failed"}` writes as results).
    accepted(
        &store,
        vec![Write::update(
            p.clone(),
            one("results", value::from_serialize(&None::<i64>)),
            vec!["results".into()],
        )],
        "serde None",
    )
    .await;
    let doc = store.get(&p).await.unwrap().unwrap();
    assert_eq!(doc.field("results"), Some(&value::null()));
}

async fn refuses_bad_field_names(store: Arc<dyn Store>) {
    let p = path("items/names");
    let long = "k".repeat(limits::MAX_FIELD_NAME_BYTES + 1);
    for bad in ["", "__x__", "__name__", "_____", long.as_str()] {
        refused(&store, vec![Write::set(p.clone(), one(bad, value::null()))], bad).await;
        refused(
            &store,
            vec![Write::set(
                p.clone(),
                one("m", value::map(one(bad, value::null()))),
            )],
            &format!("nested {bad}"),
        )
        .await;
    }
    refused(
        &store,
        vec![Write::merge(
            p.clone(),
            one("__x__", value::int(1)),
            vec!["__x__".into()],
        )],
        "a reserved mask path",
    )
    .await;
    refused(
        &store,
        vec![Write::transform(p.clone()).increment("__x__", 1)],
        "a reserved transform path",
    )
    .await;
    let longest = "k".repeat(limits::MAX_FIELD_NAME_BYTES);
    for ok in ["__", "____", "__a", "a__", "__a__b", longest.as_str()] {
        accepted(&store, vec![Write::set(p.clone(), one(ok, value::null()))], ok).await;
    }
}

async fn refuses_documents_over_1_mib(store: Arc<dyn Store>) {
    let p = path("items/big");
    // name 6 + 4 + 16, "s" 2 + 600,001, "t" 2 + L + 1, 32 more: at most 1 MiB.
    let largest = limits::MAX_DOCUMENT_BYTES - 26 - 2 - 600_001 - 2 - 1 - 32;
    let doc = |t_len: usize| {
        Fields::from([
            ("s".to_owned(), value::string("x".repeat(600_000))),
            ("t".to_owned(), value::string("x".repeat(t_len))),
        ])
    };
    assert_eq!(
        limits::document_size(&p, &doc(largest)),
        limits::MAX_DOCUMENT_BYTES
    );
    refused(&store, vec![Write::set(p.clone(), doc(largest + 1))], "1 MiB + 1").await;
    accepted(&store, vec![Write::set(p.clone(), doc(largest))], "exactly 1 MiB").await;
    // An update that makes the stored document too large.
    let grow = Write::update(p.clone(), one("u", value::string("xy")), vec!["u".into()]);
    match store.commit(vec![grow]).await {
        Err(StoreError::InvalidArgument(_)) => {}
        other => panic!("growing past 1 MiB: {other:?}"),
    }
    let kept = store.get(&p).await.unwrap().unwrap();
    assert!(kept.field("u").is_none());
    // One string or bytes value: at most 1 MiB − 89 bytes, whatever the document.
    let q = path("items/one");
    let s = |n: usize| one("s", value::string("x".repeat(n)));
    refused(
        &store,
        vec![Write::set(q.clone(), s(limits::MAX_VALUE_BYTES + 1))],
        "one long string",
    )
    .await;
    accepted(
        &store,
        vec![Write::set(q.clone(), s(limits::MAX_VALUE_BYTES))],
        "the longest string",
    )
    .await;
}

async fn refuses_nested_arrays_and_depth(store: Arc<dyn Store>) {
    let p = path("items/nested");
    let inner = value::array(vec![value::int(1)]);
    refused(
        &store,
        vec![Write::set(p.clone(), one("a", value::array(vec![inner.clone()])))],
        "an array in an array",
    )
    .await;
    refused(
        &store,
        vec![Write::set(
            p.clone(),
            one("m", value::map(one("a", value::array(vec![inner.clone()])))),
        )],
        "an array in an array in a map",
    )
    .await;
    accepted(
        &store,
        vec![Write::set(
            p.clone(),
            one("a", value::array(vec![value::map(one("b", inner.clone()))])),
        )],
        "an array in a map in an array",
    )
    .await;
    // 20 nested maps and arrays, no more.
    accepted(
        &store,
        vec![Write::set(p.clone(), one("m", nested_maps(20, value::null())))],
        "20 maps",
    )
    .await;
    refused(
        &store,
        vec![Write::set(p.clone(), one("m", nested_maps(21, value::null())))],
        "21 maps",
    )
    .await;
    accepted(
        &store,
        vec![Write::set(p.clone(), one("m", nested_maps(19, inner.clone())))],
        "19 maps, an array",
    )
    .await;
    refused(
        &store,
        vec![Write::set(p.clone(), one("m", nested_maps(20, inner)))],
        "20 maps, an array",
    )
    .await;
    // A masked path's segments are maps around its value.
    refused(
        &store,
        vec![Write::merge(
            p.clone(),
            {
                let mut f = Fields::new();
                value::set_path(&mut f, "a.b", nested_maps(20, value::null()));
                f
            },
            vec!["a.b".into()],
        )],
        "a masked value 21 deep",
    )
    .await;
}

async fn refuses_unstorable_timestamps(store: Arc<dyn Store>) {
    let p = path("items/ts");
    let (min, max) = (limits::MIN_TIMESTAMP_SECONDS, limits::MAX_TIMESTAMP_SECONDS);
    for (v, what) in [
        (ts(min - 1, 0), "before 0001-01-01"),
        (ts(max + 1, 0), "after 9999-12-31"),
        (ts(0, -1), "negative nanos"),
        (ts(0, 1_000_000_000), "a second of nanos"),
    ] {
        refused(&store, vec![Write::set(p.clone(), one("t", v.clone()))], what).await;
        refused(
            &store,
            vec![Write::set(p.clone(), one("a", value::array(vec![v])))],
            &format!("{what}, in an array"),
        )
        .await;
    }
    accepted(
        &store,
        vec![Write::set(p.clone(), one("t", ts(min, 0)))],
        "0001-01-01",
    )
    .await;
    accepted(
        &store,
        vec![Write::set(p.clone(), one("t", ts(max, 999_999_000)))],
        "the last microsecond of 9999",
    )
    .await;
    // Queries refuse them too.
    let q = Query::collection(None, "items").filter("t", Op::Ge, ts(min - 1, 0));
    match store.query(&q).await {
        Err(StoreError::InvalidArgument(_)) => {}
        other => panic!("{}: a query before 0001: {other:?}", store.kind()),
    }
    let q = Query::collection(None, "items").filter("t", Op::Ge, ts(min, 0));
    assert_eq!(store.query(&q).await.unwrap().len(), 1);
}

async fn refuses_bad_geo_points_and_references(store: Arc<dyn Store>) {
    use funnelflow::store::value::ValueType::{GeoPointValue, ReferenceValue};
    let p = path("items/geo");
    let geo = |latitude, longitude| Value {
        value_type: Some(GeoPointValue(::firestore::gcloud_sdk::google::r#type::LatLng {
            latitude,
            longitude,
        })),
    };
    refused(
        &store,
        vec![Write::set(p.clone(), one("g", geo(91.0, 0.0)))],
        "latitude 91",
    )
    .await;
    refused(
        &store,
        vec![Write::set(p.clone(), one("g", geo(0.0, -181.0)))],
        "longitude -181",
    )
    .await;
    accepted(
        &store,
        vec![Write::set(p.clone(), one("g", geo(-90.0, 180.0)))],
        "the corner",
    )
    .await;
    let reference = |s: &str| Value {
        value_type: Some(ReferenceValue(s.to_owned())),
    };
    refused(
        &store,
        vec![Write::set(p.clone(), one("r", reference("nonsense")))],
        "a bad reference",
    )
    .await;
}
