//! `restore` when things go wrong midway: a crash (it resumes), a busy store
//! (it backs off), a backup file changed under it (it stops).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use funnelflow::ops::Refused;
use funnelflow::ops::backup;
use funnelflow::ops::restore::{self, Options};
use funnelflow::ops::typed::Root;
use funnelflow::store::embedded::EmbeddedStore;
use funnelflow::store::{DocPath, Store, StoreError, Write, value};

use crate::app::TestApp;
use crate::ops_backup::{another_database, dump, root_of, temp_dir};
use crate::support::OnCommit;

/// A store whose commits fail once `budget` of them went through (a crash),
/// and whose first `busy` commits answer UNAVAILABLE / RESOURCE_EXHAUSTED.
fn fail_after(inner: Arc<dyn Store>, budget: i64, busy: i64) -> Arc<dyn Store> {
    let (budget, busy) = (AtomicI64::new(budget), AtomicI64::new(busy));
    OnCommit::wrap(
        inner,
        Box::new(move |_| {
            let outcome = if busy.fetch_sub(1, Ordering::SeqCst) > 0 {
                Err(StoreError::Unavailable(
                    "RESOURCE_EXHAUSTED: quota exceeded".into(),
                ))
            } else if budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
                Err(StoreError::Internal("the process was killed".into()))
            } else {
                Ok(())
            };
            Box::pin(std::future::ready(outcome))
        }),
    )
}

async fn resumes(app: TestApp) {
    // 2,300 documents in one collection: five commits, so a crash lands midway.
    let writes: Vec<Write> = (0..2300)
        .map(|i| {
            Write::set(
                DocPath::root("bulk", &format!("{i:05}")).unwrap(),
                [("i".to_owned(), value::int(i))].into_iter().collect(),
            )
        })
        .collect();
    funnelflow::store::commit_chunked(app.store().as_ref(), writes)
        .await
        .unwrap();
    let dir = temp_dir("resume");
    backup::run(app.store().as_ref(), &app.project_id, "(default)", &dir)
        .await
        .unwrap();
    let source = dump(app.store().as_ref(), &root_of(&app)).await;

    let (target, root) = another_database(&app).await;
    let crashing = fail_after(target.clone(), 2, 0);
    let options = Options {
        force: false,
        progress: None,
    };
    let err = restore::run(crashing.as_ref(), &root, &dir, &options)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("killed"), "{err:#}");
    let partial = dump(target.as_ref(), &root).await.len();
    assert!(partial >= 1000 && partial < source.len(), "{partial}");

    // Run again: it resumes (the target is not empty, yet no --force is needed).
    let report = restore::run(target.as_ref(), &root, &dir, &options)
        .await
        .unwrap();
    assert!(report.skipped >= 1000, "{report:?}");
    assert_eq!(report.skipped + report.written, source.len() as u64);
    assert_eq!(dump(target.as_ref(), &root).await, source);
    // Finished: a third run is a new restore, refused on the non-empty target.
    let err = restore::run(target.as_ref(), &root, &dir, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Refused>(), Some(Refused::TargetNotEmpty(_))),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
crate::both_backends!(restore_resumes_after_an_interruption, resumes);

/// A store that changes the backup file under the restore at its commits.
fn changes_the_file(inner: Arc<dyn Store>, file: PathBuf) -> Arc<dyn Store> {
    OnCommit::wrap(
        inner,
        Box::new(move |_| {
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(
                &file,
                text.replace("\"integerValue\":\"2299\"", "\"integerValue\":\"9\""),
            )
            .unwrap();
            Box::pin(std::future::ready(Ok(())))
        }),
    )
}

#[tokio::test]
async fn a_file_changed_during_the_restore_stops_it() {
    let source = EmbeddedStore::new();
    let writes: Vec<Write> = (0..2300)
        .map(|i| {
            Write::set(
                DocPath::root("bulk", &format!("{i:05}")).unwrap(),
                [("i".to_owned(), value::int(i))].into_iter().collect(),
            )
        })
        .collect();
    funnelflow::store::commit_chunked(&source, writes).await.unwrap();
    let dir = temp_dir("changed");
    let m = backup::run(&source, "p", "(default)", &dir)
        .await
        .unwrap()
        .manifest;
    let target: Arc<dyn Store> = Arc::new(EmbeddedStore::new());
    let changing = changes_the_file(target.clone(), dir.join(&m.body.files[0].name));
    let options = Options {
        force: false,
        progress: None,
    };
    let root = Root::new("q", "(default)");
    let err = restore::run(changing.as_ref(), &root, &dir, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Refused>(), Some(Refused::BadBackup(_))),
        "{err:#}"
    );
    assert!(
        format!("{err:#}").contains("changed while it was being restored"),
        "{err:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An overloaded or unavailable store: the restore backs off and retries
/// until its commits go through, and says how often it had to.
#[tokio::test]
async fn restore_backs_off_while_the_store_is_busy() {
    let source = EmbeddedStore::new();
    let writes: Vec<Write> = (0..1200)
        .map(|i| {
            Write::set(
                DocPath::root("bulk", &format!("{i:05}")).unwrap(),
                [("i".to_owned(), value::int(i))].into_iter().collect(),
            )
        })
        .collect();
    funnelflow::store::commit_chunked(&source, writes).await.unwrap();
    let dir = temp_dir("busy");
    backup::run(&source, "p", "(default)", &dir).await.unwrap();
    let target: Arc<dyn Store> = Arc::new(EmbeddedStore::new());
    let busy = fail_after(target.clone(), i64::MAX, 4);
    let options = Options {
        force: false,
        progress: None,
    };
    let root = Root::new("p", "(default)");
    let report = restore::run(busy.as_ref(), &root, &dir, &options).await.unwrap();
    assert_eq!((report.written, report.commits, report.retries), (1200, 3, 4));
    assert_eq!(dump(target.as_ref(), &root).await, dump(&source, &root).await);
    let _ = std::fs::remove_dir_all(&dir);
}
