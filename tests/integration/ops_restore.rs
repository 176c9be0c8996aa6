//! `restore` when things go wrong midway: a crash (it resumes), a busy store
//! (it backs off), a backup file changed under it (it stops).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use funnelflow::ops::Refused;
use funnelflow::ops::backup;
use funnelflow::ops::restore::{self, Options};
use funnelflow::ops::typed::Root;
use funnelflow::store::embedded::EmbeddedStore;
use funnelflow::store::{
    Committed, Doc, DocPath, Query, Store, StoreError, StoreResult, Transaction, Write, value,
};

use crate::app::TestApp;
use crate::ops_backup::{another_database, dump, root_of, temp_dir};

/// A store whose commits fail once `budget` of them went through (a crash),
/// and whose first `busy` commits answer UNAVAILABLE / RESOURCE_EXHAUSTED.
struct FailAfter {
    inner: Arc<dyn Store>,
    budget: AtomicI64,
    busy: AtomicI64,
}

#[async_trait]
impl Store for FailAfter {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn get(&self, p: &DocPath) -> StoreResult<Option<Doc>> {
        self.inner.get(p).await
    }
    async fn get_all(&self, p: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.inner.get_all(p).await
    }
    async fn query(&self, q: &Query) -> StoreResult<Vec<Doc>> {
        self.inner.query(q).await
    }
    async fn count(&self, q: &Query) -> StoreResult<u64> {
        self.inner.count(q).await
    }
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        if self.busy.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(StoreError::Unavailable(
                "RESOURCE_EXHAUSTED: quota exceeded".into(),
            ));
        }
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StoreError::Internal("the process was killed".into()));
        }
        self.inner.commit(writes).await
    }
    async fn list_collection_ids(&self, p: &DocPath) -> StoreResult<Vec<String>> {
        self.inner.list_collection_ids(p).await
    }
    async fn descendants(
        &self,
        p: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        self.inner.descendants(p, after, limit).await
    }
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        self.inner.scan(after, limit).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        self.inner.begin().await
    }
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
    let crashing = FailAfter {
        inner: target.clone(),
        budget: AtomicI64::new(2),
        busy: AtomicI64::new(0),
    };
    let options = Options {
        force: false,
        progress: None,
    };
    let err = restore::run(&crashing, &root, &dir, &options).await.unwrap_err();
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

/// A store that changes the backup file under the restore at its first commit.
struct ChangesTheFile {
    inner: FailAfter,
    file: PathBuf,
}

#[async_trait]
impl Store for ChangesTheFile {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn get(&self, p: &DocPath) -> StoreResult<Option<Doc>> {
        self.inner.get(p).await
    }
    async fn get_all(&self, p: &[DocPath]) -> StoreResult<Vec<Option<Doc>>> {
        self.inner.get_all(p).await
    }
    async fn query(&self, q: &Query) -> StoreResult<Vec<Doc>> {
        self.inner.query(q).await
    }
    async fn count(&self, q: &Query) -> StoreResult<u64> {
        self.inner.count(q).await
    }
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        let text = std::fs::read_to_string(&self.file).unwrap();
        std::fs::write(
            &self.file,
            text.replace("\"integerValue\":\"2299\"", "\"integerValue\":\"9\""),
        )
        .unwrap();
        self.inner.commit(writes).await
    }
    async fn list_collection_ids(&self, p: &DocPath) -> StoreResult<Vec<String>> {
        self.inner.list_collection_ids(p).await
    }
    async fn descendants(
        &self,
        p: &DocPath,
        after: Option<&DocPath>,
        limit: u32,
    ) -> StoreResult<Vec<DocPath>> {
        self.inner.descendants(p, after, limit).await
    }
    async fn scan(&self, after: Option<&DocPath>, limit: u32) -> StoreResult<Vec<Doc>> {
        self.inner.scan(after, limit).await
    }
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        self.inner.begin().await
    }
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
    let changing = ChangesTheFile {
        inner: FailAfter {
            inner: target.clone(),
            budget: AtomicI64::new(i64::MAX),
            busy: AtomicI64::new(0),
        },
        file: dir.join(&m.body.files[0].name),
    };
    let options = Options {
        force: false,
        progress: None,
    };
    let root = Root::new("q", "(default)");
    let err = restore::run(&changing, &root, &dir, &options).await.unwrap_err();
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
    let busy = FailAfter {
        inner: target.clone(),
        budget: AtomicI64::new(i64::MAX),
        busy: AtomicI64::new(4),
    };
    let options = Options {
        force: false,
        progress: None,
    };
    let root = Root::new("p", "(default)");
    let report = restore::run(&busy, &root, &dir, &options).await.unwrap();
    assert_eq!((report.written, report.commits, report.retries), (1200, 3, 4));
    assert_eq!(dump(target.as_ref(), &root).await, dump(&source, &root).await);
    let _ = std::fs::remove_dir_all(&dir);
}
