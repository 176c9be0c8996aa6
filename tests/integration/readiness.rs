//! Readiness and outage behaviour against an emulator of this test's own,
//! stopped and restarted underneath a running service.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::app::{Backend, json_of, problem, spawn_app_with};

const DEFAULT_JAR: &str =
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";

struct Emulator(Child);

impl Emulator {
    fn start(port: u16) -> Self {
        let jar = std::env::var("FIRESTORE_EMULATOR_JAR").unwrap_or_else(|_| DEFAULT_JAR.into());
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("funnelflow-readiness-{port}.log")))
                .unwrap();
        let child = Command::new("java")
            .args([
                "-Duser.language=en",
                "-cp",
                &jar,
                "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            ])
            .args(["start", "--host=127.0.0.1", &format!("--port={port}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the Firestore emulator (java and the emulator jar are needed)");
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
    // The service starts while Firestore is down, and says so.
    let app = spawn_app_with(
        Backend::Firestore,
        &[
            ("FIRESTORE_EMULATOR_HOST", &host),
            ("FUNNELFLOW_STORE_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let ready = || app.client.get(app.url("/readyz")).send();
    let res = ready().await.unwrap();
    assert!(res.headers().get("retry-after").is_some());
    problem(res, 503, "unavailable").await;

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
