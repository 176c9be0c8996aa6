//! The `funnelflow` binary as an operator runs it: the README's run command,
//! dev tokens, startup refusals, graceful shutdown on SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");

fn funnelflow() -> Command {
    let mut c = Command::new(BIN);
    // A clean environment: the embedded store and dev auth, as on a fresh machine.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

#[tokio::test]
async fn serves_on_the_embedded_store_and_stops_gracefully() {
    let token = funnelflow()
        .args(["dev-token", "--uid", "readme-user", "--email", "r@example.com"])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = funnelflow()
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the service did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready: serde_json::Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "embedded");
    let me = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["userId"], "readme-user");
    assert_eq!(me["email"], "r@example.com");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopping = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "did not stop within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn refuses_to_start_with_unsafe_configuration() {
    let out = funnelflow().env("FUNNELFLOW_AUTH", "firebase").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNNELFLOW_SECRET"));
    let out = funnelflow()
        .env("K_SERVICE", "funnelflow")
        .env("FUNNELFLOW_AUTH", "dev")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Cloud Run"));
    let out = funnelflow()
        .env("FUNNELFLOW_RATE_LIMIT", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNNELFLOW_RATE_LIMIT"));
}
