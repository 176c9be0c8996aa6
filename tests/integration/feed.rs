//! The invalidation feed between instances (`src/domain/feed/`): a change made
//! on instance A reaches instance B's warm caches within a second. Here two
//! services share one embedded store in this process; `feed_processes.rs` runs
//! two `funnelflow` processes on one emulator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use funnelflow::config::Config;
use funnelflow::domain::users::Role;
use funnelflow::metrics::Metrics;
use funnelflow::startup::Application;
use funnelflow::state::AppState;
use funnelflow::store::embedded::EmbeddedStore;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::app::init_test_logging;
use crate::support;

/// The deadline the issue sets for a change to reach another instance.
pub const PROPAGATION: Duration = Duration::from_secs(1);

/// One running instance, seen over HTTP.
pub struct Node {
    pub base: String,
    pub project_id: String,
    pub client: reqwest::Client,
}

impl Node {
    pub fn new(base: String, project_id: &str) -> Self {
        Self {
            base,
            project_id: project_id.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// A dev-auth ID token for `uid`, signed in a minute ago.
    pub fn token(&self, uid: &str) -> String {
        crate::support::dev_token(&self.project_id, uid)
    }

    pub async fn send(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> Response {
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        rb = if token.starts_with("ffk_") {
            rb.header("x-api-key", token)
        } else {
            rb.bearer_auth(token)
        };
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb.send().await.unwrap()
    }

    pub async fn status(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> u16 {
        self.send(method, path, token, body).await.status().as_u16()
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        want: u16,
    ) -> Value {
        let res = self.send(method, path, token, body).await;
        let got = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(got, want, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The value of a metric line starting with `name` (e.g. `funnelflow_feed_current`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Polls `check` until it holds; panics after `deadline`. Returns how long it took.
pub async fn within(deadline: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A key revoked on A is refused on B, whose lookup cache was warm.
pub async fn revoked_key(a: &Node, b: &Node, deadline: Duration) -> Duration {
    let owner = a.token(&format!("keys-{}", uuid::Uuid::new_v4().simple()));
    let created = a
        .json(
            Method::POST,
            "/v1/api-keys",
            &owner,
            Some(&json!({"name": "feed", "permissions": ["profile:read"]})),
            201,
        )
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(b.status(Method::GET, "/v1/me", &key, None).await, 200);
    }
    assert_eq!(
        a.status(Method::DELETE, &format!("/v1/api-keys/{key_id}"), &owner, None)
            .await,
        204
    );
    within(deadline, "B refuses the revoked key", async || {
        b.status(Method::GET, "/v1/me", &key, None).await == 401
    })
    .await
}

/// An admin demoted on A (admin API) is refused B's admin routes.
pub async fn demoted_admin(
    a: &Node,
    b: &Node,
    admin: &str,
    other_admin: &str,
    deadline: Duration,
) -> Duration {
    let (t, other) = (a.token(admin), a.token(other_admin));
    for _ in 0..3 {
        assert_eq!(b.status(Method::GET, "/v1/admin/users", &t, None).await, 200);
    }
    a.json(
        Method::PUT,
        &format!("/v1/admin/users/{admin}/role"),
        &other,
        Some(&json!({"role": "user"})),
        200,
    )
    .await;
    within(deadline, "B refuses the demoted admin", async || {
        b.status(Method::GET, "/v1/admin/users", &t, None).await == 403
    })
    .await
}

/// A plan changed on A: B shows it and enforces its quota.
pub async fn plan_change(a: &Node, b: &Node, admin: &str, deadline: Duration) -> Duration {
    let uid = format!("plan-{}", uuid::Uuid::new_v4().simple());
    let t = b.token(&uid);
    for _ in 0..10 {
        b.json(
            Method::POST,
            "/v1/analyses",
            &t,
            Some(&new_analysis("processing", "Founder")),
            201,
        )
        .await;
    }
    let me = b.json(Method::GET, "/v1/me", &t, None, 200).await;
    assert_eq!(me["subscription"]["planType"], "free");
    let over = b
        .send(
            Method::POST,
            "/v1/analyses",
            &t,
            Some(&new_analysis("processing", "Founder")),
        )
        .await;
    assert_eq!(over.status(), 429, "the free plan allows 10 a month");
    a.json(
        Method::PUT,
        &format!("/v1/admin/users/{uid}/subscription"),
        &a.token(admin),
        Some(&json!({"planType": "pro", "status": "active"})),
        200,
    )
    .await;
    let took = within(deadline, "B shows the new plan", async || {
        b.json(Method::GET, "/v1/me", &t, None, 200).await["subscription"]["planType"] == "pro"
    })
    .await;
    b.json(
        Method::POST,
        "/v1/analyses",
        &t,
        Some(&new_analysis("processing", "Founder")),
        201,
    )
    .await;
    took
}

/// A user erased on A: their old token is `account_deleted` on B.
pub async fn erasure(a: &Node, b: &Node, deadline: Duration) -> Duration {
    let uid = format!("erase-{}", uuid::Uuid::new_v4().simple());
    let t = a.token(&uid);
    for _ in 0..3 {
        assert_eq!(b.status(Method::GET, "/v1/me", &t, None).await, 200);
    }
    a.json(Method::DELETE, "/v1/me", &t, None, 200).await;
    within(deadline, "B refuses the erased user's token", async || {
        let res = b.send(Method::GET, "/v1/me", &t, None).await;
        res.status() == 401 && res.json::<Value>().await.unwrap_or_default()["code"] == "account_deleted"
    })
    .await
}

/// Two services on one shared embedded store.
async fn pair(store: &EmbeddedStore) -> (Node, Node, AppState, AppState) {
    init_test_logging();
    let project_id = support::unique_project_id("feed");
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let vars = [
            ("PORT", "0"),
            ("FUNNELFLOW_HOST", "127.0.0.1"),
            ("GOOGLE_CLOUD_PROJECT", project_id.as_str()),
            ("FUNNELFLOW_AUTH", "dev"),
            ("FUNNELFLOW_STORE", "embedded"),
        ];
        let config =
            Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
                .unwrap();
        let app = Application::build_with_store(config, Arc::new(store.clone()), Metrics::new().unwrap())
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        tokio::spawn(app.run_until_stopped());
        nodes.push((Node::new(base, &project_id), state));
    }
    let (b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap());
    (a.0, b.0, a.1, b.1)
}

async fn current(state: &AppState, want: bool, deadline: Duration) {
    within(deadline, &format!("feed current = {want}"), async || {
        state.feed.health().is_current() == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_instance_reach_the_other_within_a_second() {
    let store = EmbeddedStore::new();
    let (a, b, a_state, b_state) = pair(&store).await;
    current(&b_state, true, Duration::from_secs(5)).await;
    for uid in ["feed-admin", "feed-admin-2"] {
        a.json(Method::GET, "/v1/me", &a.token(uid), None, 200).await;
        a_state
            .admin
            .set_role("test", uid, Role::Admin, "test")
            .await
            .unwrap();
    }
    let took = revoked_key(&a, &b, PROPAGATION).await;
    eprintln!("revocation reached B in {took:?}");
    plan_change(&a, &b, "feed-admin-2", PROPAGATION).await;
    erasure(&a, &b, PROPAGATION).await;
    demoted_admin(&a, &b, "feed-admin", "feed-admin-2", PROPAGATION).await;
    // The other way round too.
    revoked_key(&b, &a, PROPAGATION).await;
    assert!(
        b.metric("funnelflow_feed_events_total{event=\"applied\"}")
            .await
            .unwrap_or(0.0)
            >= 4.0
    );
    assert_eq!(b.metric("funnelflow_feed_current").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_listener_falls_back_to_short_ttls_and_catches_up() {
    let store = EmbeddedStore::new();
    let (a, b, _a_state, b_state) = pair(&store).await;
    current(&b_state, true, Duration::from_secs(5)).await;

    // The listen stream breaks (reads and writes go on): B says so, and trusts
    // what it cached only for the short TTL.
    store.suspend_listeners(true);
    current(&b_state, false, Duration::from_secs(1)).await;
    within(Duration::from_secs(2), "the gauge says so", async || {
        b.metric("funnelflow_feed_current").await == Some(0.0)
    })
    .await;
    assert_eq!(b_state.feed.max_age(), Some(funnelflow::domain::feed::SHORT_TTL));
    // A revocation still reaches B: its periodic catch-up (or the short TTL) bounds the delay.
    let took = revoked_key(&a, &b, Duration::from_secs(4)).await;
    eprintln!("revocation reached B without its listener in {took:?}");

    // The stream comes back by itself; B is current again and fast again.
    store.suspend_listeners(false);
    current(&b_state, true, Duration::from_secs(6)).await;
    assert_eq!(b_state.feed.max_age(), None);
    revoked_key(&a, &b, PROPAGATION).await;
    assert!(
        b.metric("funnelflow_feed_events_total{event=\"disconnected\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
}

/// `funnelflow_feed_current` is the state at the moment of the scrape: read
/// right after the state flips (either way), never the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_gauge_is_current_when_scraped() {
    let store = EmbeddedStore::new();
    let (_a, b, _a_state, b_state) = pair(&store).await;
    for (suspend, want) in [
        (false, true),
        (true, false),
        (false, true),
        (true, false),
        (false, true),
    ] {
        store.suspend_listeners(suspend);
        // Polled tightly, so the scrape follows the flip within a millisecond or two.
        let start = Instant::now();
        while b_state.feed.health().is_current() != want {
            assert!(start.elapsed() < Duration::from_secs(10), "feed current = {want}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            b.metric("funnelflow_feed_current").await,
            Some(if want { 1.0 } else { 0.0 }),
            "right after the feed became {}",
            if want { "current" } else { "not current" }
        );
    }
}

/// The listen primitive, on both stores: the initial state, `Current`, then
/// each change of a listened document (writes, transforms, deletes), and
/// nothing for other documents.
async fn listen_contract(backend: support::StoreBackend) {
    use funnelflow::store::{DocPath, Fields, ListenEvent, Write};
    use futures::StreamExt;
    let store = support::store(backend, "listen").await;
    let path = |s: &str| DocPath::parse(s).unwrap();
    let (a, b, other) = (path("heads/a"), path("heads/b"), path("heads/other"));
    store
        .commit(vec![Write::set(b.clone(), Fields::new())])
        .await
        .unwrap();
    let mut stream = store.listen(&[a.clone(), b.clone()]).await.unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("no error")
    };
    // The initial state: each listened document (a missing one may be reported, as deleted).
    let mut initial = Vec::new();
    loop {
        match next().await {
            ListenEvent::Current => break,
            ListenEvent::Changed(p) => initial.push(p),
        }
    }
    assert!(initial.contains(&b), "{initial:?}");
    assert!(initial.iter().all(|p| *p == a || *p == b), "{initial:?}");
    store
        .commit(vec![Write::set(other.clone(), Fields::new())])
        .await
        .unwrap();
    store
        .commit(vec![Write::transform(a.clone()).increment("seq", 1)])
        .await
        .unwrap();
    // The emulator may repeat a document's state after `Current`: changes come
    // at least once, and only for listened documents.
    let mut until = async |want: &DocPath| loop {
        match next().await {
            ListenEvent::Changed(p) if p == *want => break,
            ListenEvent::Changed(p) => assert!(p == a || p == b, "{p:?} was not listened to"),
            ListenEvent::Current => panic!("Current twice"),
        }
    };
    until(&a).await;
    store.commit(vec![Write::delete(b.clone())]).await.unwrap();
    until(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_contract_embedded() {
    listen_contract(support::StoreBackend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_contract_firestore() {
    listen_contract(support::StoreBackend::Firestore).await;
}

/// `funnelflow purge` removes feed entries past their retention, and only those.
#[tokio::test]
async fn purge_removes_expired_feed_entries() {
    use funnelflow::ops::purge::{self, Spec};
    use funnelflow::store::{DocPath, Fields, Store, Write, value};
    let store = EmbeddedStore::new();
    let entry = |id: &str, hours_ago: i64| {
        let mut f = Fields::new();
        let at = value::now() - jiff::SignedDuration::from_hours(hours_ago);
        f.insert("at".into(), value::timestamp(at));
        f.insert("uid".into(), value::string("u"));
        Write::set(DocPath::root("invalidations", id).unwrap(), f)
    };
    store
        .commit(vec![entry("old", 3), entry("recent", 1)])
        .await
        .unwrap();
    let spec = Spec {
        retention_days: 365,
        now: value::now(),
        dry_run: false,
    };
    assert_eq!(purge::run(&store, &spec).await.unwrap().invalidations, 1);
    let left = store
        .query(&funnelflow::store::Query::collection(None, "invalidations"))
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id(), "recent");
}
