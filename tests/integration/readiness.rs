//! Readiness and outage behaviour against an emulator of this test's own,
//! stopped and restarted underneath a running service.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::app::{Backend, json_of, problem, spawn_app_with};

struct Emulator(Child);

impl Emulator {
    fn start(port: u16) -> Self {
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("funnelflow-readiness-{port}.log")))
                .unwrap();
        let child = crate::support::spawn_emulator(port, log);
        Self(child)
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_recovers_by_itself() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    // The service starts while Firestore is down (promptly), and says so.
    let starting = Instant::now();
    let app = spawn_app_with(Backend::Firestore, &[("FIRESTORE_EMULATOR_HOST", &host)]).await;
    assert!(
        starting.elapsed() < Duration::from_secs(3),
        "{:?}",
        starting.elapsed()
    );
    let ready = || app.client.get(app.url("/readyz")).send();
    let res = ready().await.unwrap();
    assert!(res.headers().get("retry-after").is_some());
    problem(res, 503, "unavailable").await;
    // Not connected: concurrent requests fail fast side by side, none waits for another's attempt.
    let started = Instant::now();
    let tokens: Vec<String> = (0..5).map(|i| app.token(&format!("down-{i}"))).collect();
    let all = futures::future::join_all(tokens.iter().map(|t| app.get("/v1/me", t))).await;
    for res in all {
        assert!(res.headers().get("retry-after").is_some());
        problem(res, 503, "unavailable").await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let emulator = Emulator::start(port);
    wait_for(
        "readiness after the store came up",
        Duration::from_secs(90),
        async || ready().await.is_ok_and(|r| r.status() == 200),
    )
    .await;
    json_of(app.get("/v1/me", &app.token("before")).await, 200).await;

    // Store goes away: readiness and store-backed requests answer 503 quickly, never hang or 500.
    emulator.stop();
    let started = Instant::now();
    let res = ready().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "readiness must not hang"
    );
    problem(res, 503, "unavailable").await;
    let res = app.get("/v1/me", &app.token("during")).await;
    assert!(res.headers().get("retry-after").is_some());
    problem(res, 503, "unavailable").await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness does not depend on the store");

    // Back again: the same service recovers without a restart.
    let _emulator = Emulator::start(port);
    wait_for(
        "readiness after the store came back",
        Duration::from_secs(90),
        async || ready().await.is_ok_and(|r| r.status() == 200),
    )
    .await;
    json_of(app.get("/v1/me", &app.token("after")).await, 200).await;
}

/// Sends SIGSTOP or SIGCONT to the emulator's JVM.
fn signal(emulator: &Emulator, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &emulator.0.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig}");
}

/// A store that accepts connections but never answers (a frozen JVM): every
/// request still answers 503 with `Retry-After` within the one request
/// deadline (the default, 8 s), concurrent requests in parallel rather than
/// one after the other, readiness within 3 s; then the service recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_store_answers_503_in_time_and_recovers_by_itself() {
    const DATA_BOUND: Duration = Duration::from_secs(10);
    const READY_BOUND: Duration = Duration::from_secs(3);
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let emulator = Emulator::start(port);
    // The default deadline, as deployed.
    let env = [("FIRESTORE_EMULATOR_HOST", host.as_str())];
    let app = spawn_app_with(Backend::Firestore, &env).await;
    let ready = |app: &crate::app::TestApp| app.client.get(app.url("/readyz")).send();
    wait_for(
        "readiness after the store came up",
        Duration::from_secs(90),
        async || ready(&app).await.is_ok_and(|r| r.status() == 200),
    )
    .await;
    let warm = app.token("warm");
    json_of(app.get("/v1/me", &warm).await, 200).await;

    signal(&emulator, "-STOP");
    // A second service that starts while the store is frozen: it never connected.
    let mut fresh_env = env.to_vec();
    fresh_env.push(("FUNNELFLOW_MIGRATE_ON_START", "false"));
    let fresh = spawn_app_with(Backend::Firestore, &fresh_env).await;
    // Every request built (tokens signed) first, then all sent at once, each timed on its own.
    let mut data: Vec<reqwest::RequestBuilder> = (0..6)
        .map(|i| {
            app.request(
                reqwest::Method::GET,
                "/v1/me",
                Some(&app.token(&format!("frozen-{i}"))),
            )
        })
        .collect();
    data.push(fresh.request(reqwest::Method::GET, "/v1/me", Some(&fresh.token("fresh"))));
    data.push(
        app.request(reqwest::Method::PATCH, "/v1/me", Some(&warm))
            .json(&serde_json::json!({"preferences": {"theme": "dark"}})),
    );
    data.push(
        app.request(reqwest::Method::POST, "/v1/analyses", Some(&warm))
            .header("idempotency-key", "frozen-create-1")
            .json(&serde_json::json!({
                "input": {"offerDetails": "https://example.com/offer", "inputType": "link", "persona": "Founder"},
                "status": "processing", "aiModel": "m1", "version": "1",
                "requestId": "6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a11"
            })),
    );
    let readiness = [&app, &fresh].map(|a| a.client.get(a.url("/readyz")));
    let timed = |rb: reqwest::RequestBuilder| {
        tokio::spawn(async move {
            let sent = Instant::now();
            let res = rb.send().await.expect("request");
            (sent.elapsed(), res)
        })
    };
    let started = Instant::now();
    let readiness = readiness.map(timed);
    let data: Vec<_> = data.into_iter().map(timed).collect();
    for r in readiness {
        let (took, res) = r.await.unwrap();
        assert!(took < READY_BOUND, "/readyz took {took:?}");
        problem(res, 503, "unavailable").await;
    }
    for (i, r) in data.into_iter().enumerate() {
        let (took, res) = r.await.unwrap();
        assert!(took < DATA_BOUND, "request {i} answered after {took:?}");
        assert!(res.headers().get("retry-after").is_some(), "request {i}");
        problem(res, 503, "unavailable").await;
    }
    // All were sent at once: a total under the bound means none queued behind another.
    let total = started.elapsed();
    assert!(total < DATA_BOUND, "the requests took {total:?} together");

    // The store answers again: both services recover without a restart.
    signal(&emulator, "-CONT");
    for app in [&app, &fresh] {
        wait_for(
            "readiness after the store thawed",
            Duration::from_secs(30),
            async || ready(app).await.is_ok_and(|r| r.status() == 200),
        )
        .await;
        json_of(app.get("/v1/me", &app.token("thawed")).await, 200).await;
    }
    json_of(app.get("/v1/me", &app.token("frozen-0")).await, 200).await;
}
