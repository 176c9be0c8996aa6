//! An erasure killed half-way (SIGKILL of the real binary, on the emulator) and
//! finished by calling again after a restart: nothing is left under the user,
//! as the emulator's own REST API sees it (unknown, nested and parentless
//! subcollections too), counts add up, analytics carry one pseudonym, the
//! other user is untouched, old credentials are refused, and a third call
//! answers zeros and re-creates nothing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::{self, DocPath, Fields, Op, Query, Store, Write, value};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::api_erasure::expected_counts;
use crate::api_personas::new_persona;
use crate::support::{self, EmulatorRest, dev_token};

const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");
const VICTIM: &str = "gone";
const OTHER: &str = "kept";

/// The service as a process of its own on `project`, killed when dropped.
struct Service {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Service {
    async fn start(project: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("FIRESTORE_EMULATOR_HOST", support::emulator_host())
            .env("GOOGLE_CLOUD_PROJECT", project)
            .env("FUNNELFLOW_AUTH", "dev")
            .env("FUNNELFLOW_HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            let ready = service
                .client
                .get(format!("{}/readyz", service.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return service;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn request(&self, method: reqwest::Method, path: &str, credential: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(credential)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.request(method, path, credential);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no graceful anything
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` small documents at `path(i)`, in commits of 500, four at a time.
async fn seed(store: &Arc<dyn Store>, n: usize, path: impl Fn(usize) -> String) {
    let writes: Vec<Write> = (0..n)
        .map(|i| {
            let mut f = Fields::new();
            f.insert("i".into(), value::int(i as i64));
            Write::set(DocPath::parse(&path(i)).unwrap(), f)
        })
        .collect();
    let chunks: Vec<Vec<Write>> = writes
        .chunks(store::MAX_WRITES_PER_COMMIT)
        .map(<[Write]>::to_vec)
        .collect();
    futures::stream::iter(chunks)
        .map(|c| {
            let store = store.clone();
            async move { store::commit_chunked(store.as_ref(), c).await }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
}

async fn events_of(store: &Arc<dyn Store>, user_id: &str) -> Vec<store::Doc> {
    store
        .query(&Query::collection(None, "analytics").filter("userId", Op::Eq, value::string(user_id)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_killed_half_way_is_finished_by_calling_again() {
    use reqwest::Method;
    let project = support::unique_project_id("erase-killed");
    let store: Arc<dyn Store> = Arc::new(
        FirestoreStore::connect(&project, "(default)", None, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    let rest = EmulatorRest::new(&project);
    let (victim, other) = (dev_token(&project, VICTIM), dev_token(&project, OTHER));
    let service = Service::start(&project).await;

    // Through the API: profiles, an analysis, a persona, a real API key, events.
    for t in [&victim, &other] {
        assert_eq!(service.call(Method::GET, "/v1/me", t, None).await.0, 200);
        let (s, b) = service
            .call(
                Method::POST,
                "/v1/analyses",
                t,
                Some(new_analysis("completed", "founder")),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let events = json!({"events": [{"eventType": "a", "eventData": {"k": 1}}, {"eventType": "b", "eventData": {}}]});
        assert_eq!(
            service.call(Method::POST, "/v1/events", t, Some(events)).await.0,
            202
        );
    }
    let (s, b) = service
        .call(Method::POST, "/v1/personas", &victim, Some(new_persona("One")))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = service
        .call(
            Method::POST,
            "/v1/api-keys",
            &victim,
            Some(json!({"name": "k", "permissions": ["profile:read", "analyses:write"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let key = b["key"].as_str().unwrap().to_owned();
    assert_eq!(service.call(Method::GET, "/v1/me", &key, None).await.0, 200);

    // Straight into the store: a large account, with documents the service does
    // not know (a subcollection, comments below an analysis, parentless ones).
    let u = format!("users/{VICTIM}");
    // Large enough that the erasure is still deleting when the kill comes: its
    // listing is one streamed query, and 4 commits of 500 in flight delete
    // ~4,000 documents in 0.1–0.2 s on the emulator.
    seed(&store, 8_000, |i| format!("{u}/analyses/seeded{i:05}")).await;
    seed(&store, 400, |i| format!("{u}/personas/seeded{i:05}")).await;
    seed(&store, 300, |i| format!("{u}/apiKeys/seeded{i:05}")).await;
    seed(&store, 600, |i| format!("{u}/mystery/m{i:05}")).await;
    seed(&store, 500, |i| {
        format!("{u}/analyses/seeded00000/comments/c{i:05}")
    })
    .await;
    seed(&store, 400, |i| format!("{u}/ghost/missing{i:05}/deep/d")).await;
    seed(&store, 300, |i| format!("users/{OTHER}/notes/n{i:05}")).await;
    let before = rest.descendants(&u).await;
    assert!(before.len() > 10_000, "{}", before.len());
    let others_before = rest.descendants(&format!("users/{OTHER}")).await;
    assert!(others_before.len() > 300);

    // DELETE /v1/me, and SIGKILL as soon as its first commit of deletes landed.
    let first = store::all_descendants(store.as_ref(), &DocPath::parse(&u).unwrap())
        .await
        .unwrap()
        .swap_remove(0);
    let erase = tokio::spawn(service.request(Method::DELETE, "/v1/me", &victim).send());
    let started = Instant::now();
    while store.get(&first).await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the erasure did not start"
        );
    }
    service.kill();
    assert!(erase.await.unwrap().is_err(), "the killed service answered");
    // Let a commit the emulator had already received land before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = rest.descendants(&u).await;
    eprintln!(
        "killed after {:?}: {} of {} documents deleted, {} left",
        started.elapsed(),
        before.len() - left.len(),
        before.len(),
        left.len()
    );
    assert!(left.len() < before.len(), "nothing was deleted");
    assert!(!left.is_empty(), "the erasure finished before the kill");
    assert!(rest.exists(&u).await, "the user document goes last");
    let unanonymized = events_of(&store, VICTIM).await.len();

    // Old credentials are refused already, though the erasure is unfinished.
    let service = Service::start(&project).await;
    let (s, b) = service.call(Method::GET, "/v1/me", &victim, None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("account_deleted")), "{b}");
    assert!(
        left.iter().any(|p| p.starts_with(&format!("{u}/apiKeys/"))),
        "the keys are still there"
    );
    let (s, b) = service.call(Method::GET, "/v1/me", &key, None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")), "{b}");

    // Calling again finishes it, counting what this call deleted.
    let (s, erased) = service.call(Method::DELETE, "/v1/me", &victim, None).await;
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["deleted"], expected_counts(VICTIM, &left));
    assert_eq!(erased["analyticsAnonymized"], unanonymized);
    rest.assert_nothing_under(&u).await;
    rest.assert_nothing_under(&format!("{u}/ghost/missing00000"))
        .await;
    rest.assert_nothing_under(&format!("{u}/analyses/seeded00000"))
        .await;

    // One pseudonym on all the victim's events, which name it as their tombstone.
    let tombstones = store.query(&Query::collection(None, "tombstones")).await.unwrap();
    assert_eq!(tombstones.len(), 1);
    let pseudonym = tombstones[0].path.id().to_owned();
    assert!(pseudonym.starts_with("anon_") && !pseudonym.contains(VICTIM));
    assert!(tombstones[0].field("erasedAt").is_some());
    assert!(events_of(&store, VICTIM).await.is_empty());
    let anonymized = events_of(&store, &pseudonym).await;
    assert_eq!(anonymized.len(), 2);
    assert!(
        anonymized
            .iter()
            .all(|d| d.field("ip").is_none() && d.field("userAgent").is_none())
    );

    // The other user: every document as it was, events untouched.
    assert_eq!(rest.descendants(&format!("users/{OTHER}")).await, others_before);
    let kept = events_of(&store, OTHER).await;
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|d| d.field("ip").is_some()));
    let (s, list) = service.call(Method::GET, "/v1/analyses", &other, None).await;
    assert_eq!((s, list["items"].as_array().map(Vec::len)), (200, Some(1)));

    // The old token and key stay refused; a third call: zeros, nothing re-created.
    let (s, b) = service.call(Method::GET, "/v1/me", &victim, None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("account_deleted")), "{b}");
    let (s, b) = service.call(Method::GET, "/v1/me", &key, None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")), "{b}");
    let (s, again) = service.call(Method::DELETE, "/v1/me", &victim, None).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        again,
        json!({"deleted": {"analyses": 0, "personas": 0, "apiKeys": 0, "other": 0}, "analyticsAnonymized": 0})
    );
    rest.assert_nothing_under(&u).await;
    assert_eq!(events_of(&store, &pseudonym).await.len(), 2);
}
