//! Shared helpers of the integration tests.

use std::sync::Arc;
use std::time::Duration;

use funnelflow::store::embedded::EmbeddedStore;
use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::{Committed, Doc, DocPath, Query, Store, StoreResult, Transaction, Write};
use futures::future::BoxFuture;

/// The emulator's `host:port`; the Firestore tests need it running.
pub fn emulator_host() -> String {
    match std::env::var("FIRESTORE_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => panic!(
            "the Firestore emulator is not running: use ./scripts/test.sh, or start it with emulator/start.sh"
        ),
    }
}

/// A project id of its own per test, so tests sharing one emulator never see each other's data.
pub fn unique_project_id(prefix: &str) -> String {
    let prefix: String = prefix
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("test-{prefix}-{}", &id[..8])
}

/// The store implementations the contract suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Embedded,
    Firestore,
}

/// A fresh, isolated store: a new embedded store, or a new emulator project.
pub async fn store(backend: StoreBackend, prefix: &str) -> Arc<dyn Store> {
    match backend {
        StoreBackend::Embedded => Arc::new(EmbeddedStore::new()),
        StoreBackend::Firestore => {
            emulator_host();
            let store = FirestoreStore::connect(
                &unique_project_id(prefix),
                "(default)",
                None,
                Duration::from_secs(10),
            )
            .await
            .expect("connect to the Firestore emulator");
            Arc::new(store)
        }
    }
}

/// The emulator's REST API, independent of the service's store code: what is
/// really left in a project (`Bearer owner` passes any security rules).
pub struct EmulatorRest {
    client: reqwest::Client,
    documents: String,
}

impl EmulatorRest {
    pub fn new(project: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            documents: format!(
                "http://{}/v1/projects/{project}/databases/(default)/documents",
                emulator_host()
            ),
        }
    }

    async fn post(&self, url: String, body: serde_json::Value) -> serde_json::Value {
        let res = self
            .client
            .post(&url)
            .bearer_auth("owner")
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: {e}: {text}"))
    }

    /// `doc` relative to the documents root (`users/u1`), or `""` for the root.
    fn url_of(&self, doc: &str) -> String {
        if doc.is_empty() {
            self.documents.clone()
        } else {
            format!("{}/{doc}", self.documents)
        }
    }

    /// The ids of the subcollections directly under `doc` (`:listCollectionIds`, every page).
    pub async fn collection_ids(&self, doc: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({"pageSize": 300});
            if let Some(t) = &token {
                body["pageToken"] = t.clone().into();
            }
            let page = self
                .post(format!("{}:listCollectionIds", self.url_of(doc)), body)
                .await;
            ids.extend(
                page["collectionIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned)),
            );
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        ids.sort();
        ids
    }

    /// Every document below `doc` found by listing collection ids and walking
    /// into every document, missing parents included (`showMissing`): paths
    /// relative to the documents root, sorted.
    pub async fn walk(&self, doc: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut todo = vec![doc.to_owned()];
        while let Some(parent) = todo.pop() {
            for collection in self.collection_ids(&parent).await {
                let prefix = if parent.is_empty() {
                    collection
                } else {
                    format!("{parent}/{collection}")
                };
                for (path, exists) in self.list_documents(&prefix).await {
                    if exists {
                        found.push(path.clone());
                    }
                    todo.push(path);
                }
            }
        }
        found.sort();
        found
    }

    /// The documents of one collection, with `showMissing` (missing parents of
    /// deeper documents): (path relative to the documents root, exists).
    async fn list_documents(&self, collection: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = format!("{}/{collection}", self.documents);
            let mut query = vec![
                ("showMissing", "true".to_owned()),
                ("pageSize", "300".to_owned()),
                ("mask.fieldPaths", "__name__".to_owned()),
            ];
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let res = self
                .client
                .get(&url)
                .query(&query)
                .bearer_auth("owner")
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = res.status();
            let page: serde_json::Value = res.json().await.unwrap_or_default();
            assert!(status.is_success(), "GET {url}: {status} {page}");
            for d in page["documents"].as_array().into_iter().flatten() {
                let name = d["name"].as_str().unwrap_or_default();
                // A missing document has no createTime.
                let exists = d.get("createTime").is_some();
                out.push((self.relative(name), exists));
            }
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out
    }

    /// Every document below `doc` in one kindless all-descendants `:runQuery`
    /// (also under missing parents): paths relative to the documents root, sorted.
    pub async fn descendants(&self, doc: &str) -> Vec<String> {
        let rows = self
            .post(
                format!("{}:runQuery", self.url_of(doc)),
                serde_json::json!({"structuredQuery": {
                    "select": {"fields": [{"fieldPath": "__name__"}]},
                    "from": [{"allDescendants": true}],
                }}),
            )
            .await;
        let mut found: Vec<String> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["document"]["name"].as_str())
            .map(|n| self.relative(n))
            .collect();
        found.sort();
        found
    }

    /// Whether the document exists.
    pub async fn exists(&self, doc: &str) -> bool {
        let url = self.url_of(doc);
        let res = self
            .client
            .get(&url)
            .bearer_auth("owner")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        match res.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("GET {url}: {s}"),
        }
    }

    /// Asserts that nothing at all is left below `doc` (nor `doc` itself), by
    /// both listings.
    pub async fn assert_nothing_under(&self, doc: &str) {
        assert!(!self.exists(doc).await, "{doc} still exists");
        assert_eq!(
            self.collection_ids(doc).await,
            Vec::<String>::new(),
            "collections under {doc}"
        );
        assert_eq!(
            self.walk(doc).await,
            Vec::<String>::new(),
            "documents under {doc} (walk)"
        );
        assert_eq!(
            self.descendants(doc).await,
            Vec::<String>::new(),
            "documents under {doc} (query)"
        );
    }

    fn relative(&self, name: &str) -> String {
        // `name` is `projects/P/databases/(default)/documents/...`.
        name.split_once("/documents/")
            .map_or_else(|| name.to_owned(), |(_, rest)| rest.to_owned())
    }
}

/// Runs before each commit of an [`OnCommit`] store; an `Err` refuses the commit.
pub type BeforeCommit = Box<dyn Fn(&[Write]) -> BoxFuture<'static, StoreResult<()>> + Send + Sync>;

/// A store that runs a test's hook ahead of every commit (a crash, a busy
/// store, a race) and forwards everything else to `inner` unchanged.
pub struct OnCommit {
    inner: Arc<dyn Store>,
    before: BeforeCommit,
}

impl OnCommit {
    pub fn wrap(inner: Arc<dyn Store>, before: BeforeCommit) -> Arc<dyn Store> {
        Arc::new(Self { inner, before })
    }
}

#[async_trait::async_trait]
impl Store for OnCommit {
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
        (self.before)(&writes).await?;
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

/// The emulator's jar where the Cloud SDK installs it (`FIRESTORE_EMULATOR_JAR` wins).
const DEFAULT_EMULATOR_JAR: &str =
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";

/// Starts a Firestore emulator of the test's own on `port` (java directly, so
/// killing the child stops it), its output to `log`.
pub fn spawn_emulator(port: u16, log: std::fs::File) -> std::process::Child {
    let jar = std::env::var("FIRESTORE_EMULATOR_JAR").unwrap_or_else(|_| DEFAULT_EMULATOR_JAR.into());
    std::process::Command::new("java")
        .args([
            "-Duser.language=en",
            "-cp",
            &jar,
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        ])
        .args(["start", "--host=127.0.0.1", &format!("--port={port}")])
        .stdout(log.try_clone().expect("the emulator's log file"))
        .stderr(log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start the Firestore emulator (java and the emulator jar are needed)")
}

/// Claims of a valid Google sign-in for `uid` in `project` (signed in a minute ago).
pub fn dev_claims(project: &str, uid: &str) -> serde_json::Value {
    let now = jiff::Timestamp::now().as_second();
    serde_json::json!({
        "iss": format!("https://securetoken.google.com/{project}"),
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now - 10,
        "exp": now + 3600,
        "auth_time": now - 60,
        "email": format!("{uid}@example.com"),
        "firebase": {"sign_in_provider": "google.com", "identities": {}},
    })
}

/// [`dev_claims`] signed with the development key: what the dev-auth service accepts.
pub fn dev_token(project: &str, uid: &str) -> String {
    funnelflow::auth::sign_claims(
        funnelflow::config::DEV_PRIVATE_KEY_PEM,
        "dev",
        &dev_claims(project, uid),
    )
    .expect("sign a dev token")
}
