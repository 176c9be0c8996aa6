//! `spawn_app`: the real service on a random port, against an isolated store
//! (a fresh embedded store, or its own project id on the emulator), and a
//! client with a helper per verb.

use std::collections::HashMap;
use std::sync::Arc;

use funnelflow::config::{Config, DEV_PRIVATE_KEY_PEM};
use funnelflow::metrics::Metrics;
use funnelflow::startup::{Application, open_store};
use funnelflow::state::AppState;
use funnelflow::store::Store;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Firestore,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub project_id: String,
    pub state: AppState,
}

impl TestApp {
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    /// Claims of a valid Google sign-in for `uid`, signed with the dev key.
    pub fn claims(&self, uid: &str) -> Value {
        let mut claims = support::dev_claims(&self.project_id, uid);
        claims["name"] = json!(format!("User {uid}"));
        claims
    }

    pub fn token(&self, uid: &str) -> String {
        self.sign(&self.claims(uid))
    }

    /// A token for `uid` whose claims `edit` changed.
    pub fn token_with(&self, uid: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = self.claims(uid);
        edit(&mut c);
        self.sign(&c)
    }

    pub fn sign(&self, claims: &Value) -> String {
        funnelflow::auth::sign_claims(DEV_PRIVATE_KEY_PEM, "dev", claims).expect("sign test token")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    // These build the request at once and return a future that borrows nothing,
    // so tests can fire many of them concurrently.
    pub fn get(&self, path: &str, token: &str) -> impl Future<Output = Response> + use<> {
        send(self.request(Method::GET, path, Some(token)))
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> impl Future<Output = Response> + use<> {
        send(self.request(Method::POST, path, Some(token)).json(body))
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> impl Future<Output = Response> + use<> {
        send(self.request(Method::PATCH, path, Some(token)).json(body))
    }

    pub fn delete(&self, path: &str, token: &str) -> impl Future<Output = Response> + use<> {
        send(self.request(Method::DELETE, path, Some(token)))
    }
}

async fn send(rb: RequestBuilder) -> Response {
    rb.send().await.expect("request")
}

/// Reads a response as JSON, asserting its status (prints the body on mismatch).
pub async fn json_of(res: Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts a problem+json error with `status` and `code`; returns the body.
pub async fn problem(res: Response, status: u16, code: &str) -> Value {
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let request_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = json_of(res, status).await;
    assert_eq!(ct, "application/problem+json", "content type of {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/errors/{code}")),
        "{body}"
    );
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    assert_eq!(
        body["requestId"].as_str(),
        request_id.as_deref(),
        "requestId must match X-Request-Id"
    );
    body
}

/// Service logs in test output only with `TEST_LOG=1`.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        funnelflow::telemetry::init(funnelflow::config::LogFormat::Pretty, "test");
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the app with extra environment (`(name, value)`) on top of the test defaults.
pub async fn spawn_app_with(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    spawn_app_wrapped(backend, env, |store| store).await
}

/// [`spawn_app_with`] on the store `wrap` makes of the usual one (to inject failures).
pub async fn spawn_app_wrapped(
    backend: Backend,
    env: &[(&str, &str)],
    wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
) -> TestApp {
    let project_id = support::unique_project_id("api");
    let config = test_config(backend, &project_id, env);
    let metrics = Metrics::new().expect("metrics");
    let store = wrap(open_store(&config, metrics.clone()));
    start(config, store, metrics, project_id).await
}

/// Another instance of `first`'s service: the same store (the same embedded
/// store, or the same emulator project), caches and limits of its own.
pub async fn spawn_instance_of(first: &TestApp, env: &[(&str, &str)]) -> TestApp {
    let backend = match first.state.store.kind() {
        "embedded" => Backend::Embedded,
        _ => Backend::Firestore,
    };
    let config = test_config(backend, &first.project_id, env);
    let metrics = Metrics::new().expect("metrics");
    let store = match backend {
        Backend::Embedded => first.state.store.clone(),
        Backend::Firestore => open_store(&config, metrics.clone()),
    };
    start(config, store, metrics, first.project_id.clone()).await
}

fn test_config(backend: Backend, project_id: &str, env: &[(&str, &str)]) -> Config {
    init_test_logging();
    let mut vars: HashMap<String, String> = HashMap::from([
        ("PORT".into(), "0".into()),
        ("FUNNELFLOW_HOST".into(), "127.0.0.1".into()),
        ("GOOGLE_CLOUD_PROJECT".into(), project_id.to_owned()),
        ("FUNNELFLOW_AUTH".into(), "dev".into()),
    ]);
    match backend {
        Backend::Embedded => {
            vars.insert("FUNNELFLOW_STORE".into(), "embedded".into());
        }
        Backend::Firestore => {
            vars.insert("FUNNELFLOW_STORE".into(), "firestore".into());
            vars.insert("FIRESTORE_EMULATOR_HOST".into(), support::emulator_host());
        }
    }
    for (k, v) in env {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration")
}

async fn start(config: Config, store: Arc<dyn Store>, metrics: Arc<Metrics>, project_id: String) -> TestApp {
    let app = Application::build_with_store(config, store, metrics)
        .await
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        project_id,
        state,
    }
}

/// Runs the async test body `name(app)` once per backend: `both_backends!(name)`
/// defines the tests `name::embedded` and `name::firestore`.
#[macro_export]
macro_rules! both_backends {
    ($body:ident) => {
        $crate::both_backends!($body, $body);
    };
    // `$body` takes the backend (it spawns an app of its own, e.g. on a wrapped store).
    (backend: $body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$body($crate::app::Backend::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firestore() {
                super::$body($crate::app::Backend::Firestore).await;
            }
        }
    };
    // An app with extra environment `$env` (`&[(&str, &str)]`).
    (env: $env:expr, $body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let app = $crate::app::spawn_app_with($crate::app::Backend::Embedded, $env).await;
                super::$body(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firestore() {
                let app = $crate::app::spawn_app_with($crate::app::Backend::Firestore, $env).await;
                super::$body(app).await;
            }
        }
    };
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$body($crate::app::spawn_app($crate::app::Backend::Embedded).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firestore() {
                super::$body($crate::app::spawn_app($crate::app::Backend::Firestore).await).await;
            }
        }
    };
}
