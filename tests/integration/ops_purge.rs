//! `purge`: analytics past the retention and expired idempotency records go,
//! everything else stays; a dry run removes nothing; a second run finds
//! nothing; a record the service rewrites meanwhile is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use funnelflow::ops::purge::{self, Spec};
use funnelflow::store::{DocPath, Fields, Query, Store, Write, value};
use jiff::SignedDuration;

use crate::app::TestApp;
use crate::support::OnCommit;

fn days_ago(now: jiff::Timestamp, days: i64) -> jiff::Timestamp {
    now.checked_sub(SignedDuration::from_hours(24 * days)).unwrap()
}

fn with(field: &str, t: jiff::Timestamp) -> Fields {
    let mut f = Fields::new();
    value::set_path(&mut f, field, value::timestamp(t));
    f.insert("kind".into(), value::string("test"));
    f
}

fn p(s: &str) -> DocPath {
    DocPath::parse(s).unwrap()
}

async fn exists(store: &dyn Store, path: &str) -> bool {
    store.get(&p(path)).await.unwrap().is_some()
}

/// Ages out: analytics 400 and 366 days old, idempotency records expired an
/// hour ago (one under a user that has no profile document). Stays: analytics
/// 364 days old, records expiring later, an analytics document without a timestamp.
async fn populate(store: &dyn Store, now: jiff::Timestamp) {
    let hour = SignedDuration::from_hours(1);
    let mut writes = vec![
        Write::set(p("analytics/old1"), with("timestamp", days_ago(now, 400))),
        Write::set(p("analytics/old2"), with("timestamp", days_ago(now, 366))),
        Write::set(p("analytics/recent"), with("timestamp", days_ago(now, 364))),
        Write::set(p("analytics/untimed"), Fields::new()),
        Write::set(p("users/u1"), Fields::new()),
        Write::set(
            p("users/u1/idempotency/expired"),
            with("expiresAt", now.checked_sub(hour).unwrap()),
        ),
        Write::set(
            p("users/u1/idempotency/live"),
            with("expiresAt", now.checked_add(hour).unwrap()),
        ),
        Write::set(
            p("users/gone/idempotency/expired"),
            with("expiresAt", days_ago(now, 3)),
        ),
    ];
    // More than a page of old analytics.
    writes.extend((0..620).map(|i| {
        Write::set(
            p(&format!("analytics/bulk{i:04}")),
            with("timestamp", days_ago(now, 500)),
        )
    }));
    funnelflow::store::commit_chunked(store, writes).await.unwrap();
}

async fn removes_what_has_aged(app: TestApp) {
    let store = app.store().as_ref();
    let now = value::now();
    populate(store, now).await;
    let spec = Spec {
        retention_days: 365,
        now,
        dry_run: true,
    };
    let dry = purge::run(store, &spec).await.unwrap();
    assert_eq!((dry.analytics, dry.idempotency), (622, 2));
    assert!(
        exists(store, "analytics/old1").await,
        "a dry run removed something"
    );

    let spec = Spec {
        dry_run: false,
        ..spec
    };
    let done = purge::run(store, &spec).await.unwrap();
    assert_eq!((done.analytics, done.idempotency), (622, 2));
    for gone in [
        "analytics/old1",
        "analytics/old2",
        "analytics/bulk0619",
        "users/u1/idempotency/expired",
        "users/gone/idempotency/expired",
    ] {
        assert!(!exists(store, gone).await, "{gone} is still there");
    }
    for kept in [
        "analytics/recent",
        "analytics/untimed",
        "users/u1",
        "users/u1/idempotency/live",
    ] {
        assert!(exists(store, kept).await, "{kept} was removed");
    }
    let analytics = store.query(&Query::collection(None, "analytics")).await.unwrap();
    assert_eq!(analytics.len(), 2);

    let again = purge::run(store, &spec).await.unwrap();
    assert_eq!((again.analytics, again.idempotency), (0, 0));
}
crate::both_backends!(purge_removes_what_has_aged, removes_what_has_aged);

/// A retention longer than the storable range (any `u32` of days is accepted by
/// the configuration) keeps everything; it was a query Firestore refused.
async fn a_retention_past_year_one_keeps_everything(app: TestApp) {
    let store = app.store().as_ref();
    let now = value::now();
    populate(store, now).await;
    for dry_run in [true, false] {
        let spec = Spec {
            retention_days: 4_000_000,
            now,
            dry_run,
        };
        let report = purge::run(store, &spec).await.unwrap();
        assert_eq!((report.analytics, report.idempotency), (0, 2));
        assert_eq!(report.analytics_cutoff.to_string(), "0001-01-01T00:00:00Z");
    }
    assert!(exists(store, "analytics/old1").await);
}
crate::both_backends!(purge_long_retention, a_retention_past_year_one_keeps_everything);

/// The service rewrites a record between purge's read and its delete (a key
/// reused after expiry): the fresh record survives, the rest of the batch goes.
fn rewrite_before_first_commit(inner: Arc<dyn Store>) -> Arc<dyn Store> {
    let done = Arc::new(AtomicBool::new(false));
    let target = inner.clone();
    OnCommit::wrap(
        inner,
        Box::new(move |_| {
            let (target, first) = (target.clone(), !done.swap(true, Ordering::SeqCst));
            Box::pin(async move {
                if first {
                    let later = value::now().checked_add(SignedDuration::from_hours(24)).unwrap();
                    target
                        .commit(vec![Write::set(
                            p("users/u1/idempotency/expired"),
                            with("expiresAt", later),
                        )])
                        .await?;
                }
                Ok(())
            })
        }),
    )
}

async fn keeps_a_record_rewritten_meanwhile(app: TestApp) {
    let now = value::now();
    let hour = SignedDuration::from_hours(1);
    app.store()
        .commit(vec![
            Write::set(
                p("users/u1/idempotency/expired"),
                with("expiresAt", now.checked_sub(hour).unwrap()),
            ),
            Write::set(
                p("users/u2/idempotency/expired"),
                with("expiresAt", now.checked_sub(hour).unwrap()),
            ),
        ])
        .await
        .unwrap();
    let racing = rewrite_before_first_commit(app.store().clone());
    let spec = Spec {
        retention_days: 365,
        now,
        dry_run: false,
    };
    let report = purge::run(racing.as_ref(), &spec).await.unwrap();
    assert_eq!(report.idempotency, 1);
    assert!(exists(app.store().as_ref(), "users/u1/idempotency/expired").await);
    assert!(!exists(app.store().as_ref(), "users/u2/idempotency/expired").await);
}
crate::both_backends!(
    purge_keeps_a_record_rewritten_meanwhile,
    keeps_a_record_rewritten_meanwhile
);
