//! Two `funnelflow` processes on one emulator of this test's own: what one
//! changes, the other obeys within a second, with warm caches; when the
//! emulator goes away the other stops trusting them, and catches up when it is
//! back.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::feed::{Node, PROPAGATION, demoted_admin, erasure, plan_change, revoked_key, within};

const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(name: &str) -> (std::fs::File, PathBuf) {
    let path = std::env::temp_dir().join(format!("funnelflow-feed-{name}.log"));
    (std::fs::File::create(&path).unwrap(), path)
}

fn start_emulator(port: u16) -> Running {
    let (log, _) = log_file(&format!("emulator-{port}"));
    let child = crate::support::spawn_emulator(port, log);
    Running(child)
}

async fn emulator_answers(host: &str) {
    let client = reqwest::Client::new();
    within(Duration::from_secs(90), "the emulator answers", async || {
        client
            .get(format!("http://{host}/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

struct Env {
    host: String,
    project_id: String,
}

impl Env {
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("FUNNELFLOW_STORE", "firestore")
            .env("FIRESTORE_EMULATOR_HOST", &self.host)
            .env("GOOGLE_CLOUD_PROJECT", &self.project_id)
            .env("FUNNELFLOW_AUTH", "dev")
            .env("FUNNELFLOW_HOST", "127.0.0.1");
        c
    }

    fn serve(&self, name: &str) -> (Running, Node) {
        let port = free_port();
        let (log, _) = log_file(&format!("{}-{name}", self.project_id));
        let child = self
            .command()
            .env("PORT", port.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        (
            Running(child),
            Node::new(format!("http://127.0.0.1:{port}"), &self.project_id),
        )
    }

    /// `funnelflow admin grant-admin <uid>`, as an operator runs it.
    fn grant_admin(&self, uid: &str) {
        let out = self
            .command()
            .args(["admin", "grant-admin", uid])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn feed_current(node: &Node, want: bool, deadline: Duration) -> Duration {
    let want = if want { 1.0 } else { 0.0 };
    within(
        deadline,
        &format!("{} feed_current = {want}", node.base),
        async || node.metric("funnelflow_feed_current").await == Some(want),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_emulator_obey_each_others_changes() {
    let port = free_port();
    let env = Env {
        host: format!("127.0.0.1:{port}"),
        project_id: crate::support::unique_project_id("feed-procs"),
    };
    let emulator = start_emulator(port);
    emulator_answers(&env.host).await;
    let (_a_proc, a) = env.serve("a");
    let (_b_proc, b) = env.serve("b");
    for n in [&a, &b] {
        feed_current(n, true, Duration::from_secs(30)).await;
    }

    // The CLI's grant reaches B's warm profile cache.
    let admin = b.token("boss");
    for _ in 0..3 {
        assert_eq!(b.status(Method::GET, "/v1/admin/users", &admin, None).await, 403);
    }
    env.grant_admin("boss");
    within(PROPAGATION, "B obeys the CLI's grant", async || {
        b.status(Method::GET, "/v1/admin/users", &admin, None).await == 200
    })
    .await;
    env.grant_admin("boss-2");
    a.json(Method::GET, "/v1/me", &a.token("boss-2"), None, 200).await;

    revoked_key(&a, &b, PROPAGATION).await;
    demoted_admin(&a, &b, "boss", "boss-2", PROPAGATION).await;
    plan_change(&a, &b, "boss-2", PROPAGATION).await;
    erasure(&a, &b, PROPAGATION).await;
    revoked_key(&b, &a, PROPAGATION).await;

    // The emulator goes away: B says its feed is not current, and stops
    // trusting a warm key lookup (503: it cannot check) instead of obeying it.
    let owner = a.token("owner");
    let key = a
        .json(
            Method::POST,
            "/v1/api-keys",
            &owner,
            Some(&json!({"name": "k", "permissions": ["profile:read"]})),
            201,
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.status(Method::GET, "/v1/me", &key, None).await, 200);
    drop(emulator);
    feed_current(&b, false, Duration::from_secs(10)).await;
    tokio::time::sleep(funnelflow::domain::feed::SHORT_TTL).await;
    assert_eq!(b.status(Method::GET, "/v1/me", &key, None).await, 503);

    // Back (empty: the emulator keeps nothing): B reconnects by itself and is fast again.
    let _emulator = start_emulator(port);
    emulator_answers(&env.host).await;
    feed_current(&b, true, Duration::from_secs(30)).await;
    feed_current(&a, true, Duration::from_secs(30)).await;
    revoked_key(&a, &b, PROPAGATION).await;
    erasure(&a, &b, PROPAGATION).await;
}
