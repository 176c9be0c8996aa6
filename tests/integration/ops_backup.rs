//! `seed`, `backup` and `restore` on both stores: every Firestore value type
//! and unknown, deep and parentless paths round-trip into another project;
//! tampered, truncated and incomplete backups are refused with nothing
//! written (`ops_restore.rs`: interruptions).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use firestore::gcloud_sdk::google::r#type::LatLng;
use funnelflow::ops::Refused;
use funnelflow::ops::backup;
use funnelflow::ops::manifest::Manifest;
use funnelflow::ops::restore::{self, Options};
use funnelflow::ops::seed::{self, Spec};
use funnelflow::ops::typed::{self, Root};
use funnelflow::store::embedded::EmbeddedStore;
use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::value::{ProtoTimestamp, ValueType};
use funnelflow::store::{DocPath, Fields, Query, Store, Value, Write, value};

use crate::app::TestApp;
use crate::support;

pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("funnelflow-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh, empty database of the same kind as `app`'s, and its root.
pub async fn another_database(app: &TestApp) -> (Arc<dyn Store>, Root) {
    let (store, project) = another_project(app).await;
    (store, Root::new(&project, "(default)"))
}

async fn another_project(app: &TestApp) -> (Arc<dyn Store>, String) {
    let project = support::unique_project_id("restored");
    if app.store().kind() == "embedded" {
        return (Arc::new(EmbeddedStore::new()), project);
    }
    let store = FirestoreStore::connect(&project, "(default)", None, Duration::from_secs(10))
        .await
        .unwrap();
    (Arc::new(store), project)
}

pub fn root_of(app: &TestApp) -> Root {
    Root::new(&app.project_id, "(default)")
}

/// Every document, as `path \t typed fields`: exact, types included (NaN
/// compares equal here, as it should), references relative to `root`.
pub async fn dump(store: &dyn Store, root: &Root) -> Vec<String> {
    let mut out = Vec::new();
    let mut last: Option<DocPath> = None;
    loop {
        let page = store.scan(last.as_ref(), 300).await.unwrap();
        for d in &page {
            out.push(format!(
                "{}\t{}",
                d.path,
                serde_json::to_string(&typed::encode_fields(&d.fields, root)).unwrap()
            ));
        }
        if page.len() < 300 {
            return out;
        }
        last = page.last().map(|d| d.path.clone());
    }
}

fn v(t: ValueType) -> Value {
    Value { value_type: Some(t) }
}

/// A document with every Firestore value type, nested.
fn every_type(root: &Root) -> Fields {
    let mut f = Fields::new();
    f.insert("null".into(), value::null());
    f.insert("yes".into(), value::boolean(true));
    f.insert("no".into(), value::boolean(false));
    f.insert("int".into(), value::int(i64::MAX));
    f.insert("intNeg".into(), value::int(i64::MIN));
    f.insert("one".into(), value::int(1));
    f.insert("oneDouble".into(), value::double(1.0));
    f.insert("double".into(), value::double(std::f64::consts::PI));
    f.insert("tiny".into(), value::double(5e-324));
    f.insert("negZero".into(), value::double(-0.0));
    f.insert("nan".into(), value::double(f64::NAN));
    f.insert("inf".into(), value::double(f64::INFINITY));
    f.insert("negInf".into(), value::double(f64::NEG_INFINITY));
    f.insert("string".into(), value::string("héllo \"wörld\"\n\t\u{1F600}"));
    f.insert("bytes".into(), v(ValueType::BytesValue((0..=255).collect())));
    f.insert(
        "micros".into(),
        v(ValueType::TimestampValue(ProtoTimestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_000,
        })),
    );
    f.insert(
        "firstSecond".into(),
        v(ValueType::TimestampValue(ProtoTimestamp {
            seconds: -62_135_596_800,
            nanos: 0,
        })),
    );
    f.insert(
        "ref".into(),
        v(ValueType::ReferenceValue(format!(
            "{}/users/seed-user-0001",
            root.as_str()
        ))),
    );
    f.insert(
        "refToNothing".into(),
        v(ValueType::ReferenceValue(format!(
            "{}/ghost/x/deep/y",
            root.as_str()
        ))),
    );
    f.insert(
        "geo".into(),
        v(ValueType::GeoPointValue(LatLng {
            latitude: 48.858_37,
            longitude: -2.294_481,
        })),
    );
    let mut inner = Fields::new();
    inner.insert(
        "list".into(),
        value::array(vec![
            value::int(1),
            value::double(1.5),
            value::null(),
            value::string("s"),
        ]),
    );
    inner.insert("empty".into(), value::map(Fields::new()));
    inner.insert("emptyList".into(), value::array(vec![]));
    inner.insert("odd key.with dots`".into(), value::string("x"));
    f.insert("map".into(), value::map(inner.clone()));
    f.insert(
        "arrayOfMaps".into(),
        value::array(vec![value::map(inner), value::boolean(true)]),
    );
    f
}

/// Seeded data plus the documents the code knows nothing about.
async fn populate(app: &TestApp) {
    let report = seed::run(
        &app.state,
        &Spec {
            users: 3,
            analyses_per_user: 4,
            seed: 7,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.users, 3);
    assert_eq!(report.analyses, 12);
    let root = root_of(app);
    let path = |s: &str| DocPath::parse(s).unwrap();
    app.store()
        .commit(vec![
            Write::set(path("odd/every-type"), every_type(&root)),
            Write::set(
                path("users/seed-user-0001/unknownSub/x/deeper/y"),
                every_type(&root),
            ),
            Write::set(path("ghost/nobody/things/t1"), every_type(&root)),
            Write::set(path("a-b/c"), Fields::new()),
        ])
        .await
        .unwrap();
}

/// Seed data is consistent: each user's counters match what exists.
async fn seeded_counters_match(app: &TestApp) {
    for i in 0..3 {
        let uid = seed::uid(i);
        let user = DocPath::root("users", &uid).unwrap();
        let analyses = app
            .store()
            .query(&Query::collection(Some(&user), "analyses"))
            .await
            .unwrap();
        let profile = app.store().get(&user).await.unwrap().unwrap();
        assert_eq!(
            profile.field("metadata.totalAnalyses").and_then(value::as_i64),
            Some(analyses.len() as i64),
            "{uid}"
        );
        let personas = app
            .store()
            .query(&Query::collection(Some(&user), "personas"))
            .await
            .unwrap();
        let used: i64 = personas
            .iter()
            .map(|p| p.field("metadata.usageCount").and_then(value::as_i64).unwrap())
            .sum();
        let with_persona = analyses
            .iter()
            .filter(|a| a.field("input.customPersonaId").is_some())
            .count();
        assert_eq!(used, with_persona as i64, "{uid}");
    }
}

async fn round_trip(app: TestApp) {
    populate(&app).await;
    seeded_counters_match(&app).await;
    let source = dump(app.store().as_ref(), &root_of(&app)).await;
    assert!(source.len() > 20, "{source:?}");

    let dir = temp_dir("backup");
    let summary = backup::run(app.store().as_ref(), &app.project_id, "(default)", &dir)
        .await
        .unwrap();
    let m = &summary.manifest.body;
    assert_eq!(m.documents, source.len() as u64);
    let collections: Vec<&str> = m.files.iter().map(|f| f.collection.as_str()).collect();
    // Every collection, the invalidation feed's (written by the seeded writes) included.
    assert_eq!(
        collections,
        [
            "a-b",
            "ghost",
            "invalidationHeads",
            "invalidations",
            "odd",
            "system",
            "users"
        ]
    );

    let (target, target_project) = another_project(&app).await;
    let target_root = Root::new(&target_project, "(default)");
    let report = restore::run(
        target.as_ref(),
        &target_root,
        &dir,
        &Options {
            force: false,
            progress: None,
        },
    )
    .await
    .unwrap();
    assert_eq!((report.written, report.skipped), (m.documents, 0));
    // Every document identical: path, every field, every type.
    assert_eq!(dump(target.as_ref(), &target_root).await, source);
    // References point into the restored database.
    let restored = target
        .get(&DocPath::parse("odd/every-type").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        restored.field("ref").and_then(|r| r.value_type.clone()),
        Some(ValueType::ReferenceValue(format!(
            "{}/users/seed-user-0001",
            target_root.as_str()
        )))
    );

    // A backup of the restored data holds the same content, file by file.
    let again = temp_dir("backup-again");
    let second = backup::run(target.as_ref(), &target_project, "(default)", &again)
        .await
        .unwrap();
    let digest = |m: &Manifest| {
        m.body
            .files
            .iter()
            .map(|f| (f.name.clone(), f.documents, f.content_sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(digest(&second.manifest), digest(&summary.manifest));

    // The target is not empty any more: refused without --force, fine with it.
    let options = Options {
        force: false,
        progress: Some(again.join("progress.json")),
    };
    let err = restore::run(target.as_ref(), &target_root, &dir, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Refused>(), Some(Refused::TargetNotEmpty(_))),
        "{err:#}"
    );
    let forced = Options {
        force: true,
        ..options
    };
    restore::run(target.as_ref(), &target_root, &dir, &forced)
        .await
        .unwrap();
    assert_eq!(dump(target.as_ref(), &target_root).await, source);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}
crate::both_backends!(backup_restore_round_trip, round_trip);

fn copy_dir(from: &Path, what: &str) -> PathBuf {
    let to = temp_dir(what);
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

fn largest_file(dir: &Path) -> PathBuf {
    let m = Manifest::read(dir).unwrap();
    let f = m.body.files.iter().max_by_key(|f| f.bytes).unwrap();
    dir.join(&f.name)
}

async fn tampered(app: TestApp) {
    populate(&app).await;
    let dir = temp_dir("tamper");
    backup::run(app.store().as_ref(), &app.project_id, "(default)", &dir)
        .await
        .unwrap();
    type Tamper = fn(&Path);
    let tampers: [(&str, Tamper); 8] = [
        ("changed byte", |d| {
            let p = largest_file(d);
            let mut b = std::fs::read(&p).unwrap();
            let at = b.len() / 2;
            b[at] = if b[at] == b'a' { b'b' } else { b'a' };
            std::fs::write(p, b).unwrap();
        }),
        ("changed value, still valid JSON", |d| {
            let p = largest_file(d);
            let s = std::fs::read_to_string(&p).unwrap();
            std::fs::write(p, s.replacen("\"integerValue\":\"", "\"integerValue\":\"1", 1)).unwrap();
        }),
        ("truncated mid-line", |d| {
            let p = largest_file(d);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(p, &b[..b.len() - 7]).unwrap();
        }),
        ("last line removed", |d| {
            let p = largest_file(d);
            let s = std::fs::read_to_string(&p).unwrap();
            let cut = s.trim_end_matches('\n').rfind('\n').unwrap() + 1;
            std::fs::write(p, &s[..cut]).unwrap();
        }),
        ("missing file", |d| std::fs::remove_file(largest_file(d)).unwrap()),
        ("missing manifest", |d| {
            std::fs::remove_file(d.join("manifest.json")).unwrap()
        }),
        ("edited manifest", |d| {
            let p = d.join("manifest.json");
            let s = std::fs::read_to_string(&p).unwrap();
            std::fs::write(p, s.replacen("\"project\": \"", "\"project\": \"x", 1)).unwrap();
        }),
        ("file not in the manifest", |d| {
            std::fs::write(d.join("9999-extra.ndjson"), "").unwrap()
        }),
    ];
    for (what, tamper) in tampers {
        let copy = copy_dir(&dir, "tampered");
        tamper(&copy);
        let (target, root) = another_database(&app).await;
        let options = Options {
            force: true,
            progress: None,
        };
        let err = restore::run(target.as_ref(), &root, &copy, &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Refused>(), Some(Refused::BadBackup(_))),
            "{what}: {err:#}"
        );
        assert!(
            target.scan(None, 1).await.unwrap().is_empty(),
            "{what}: something was written"
        );
        assert!(!copy.join(restore::PROGRESS_FILE).exists(), "{what}");
        let _ = std::fs::remove_dir_all(&copy);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
crate::both_backends!(tampered_backups_are_refused, tampered);
