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

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

/// Runs the binary (serving, unless the configuration is refused) and returns
/// its exit code and stderr; fails if it is still running after 20 s.
fn exit_of(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = funnelflow()
        .envs(env.iter().copied())
        .env("PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{env:?} was expected to refuse to start, but it runs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refuses(env: &[(&str, &str)], naming: &str) {
    let (code, stderr) = exit_of(env);
    assert_eq!(code, Some(2), "{env:?}: {stderr}");
    assert!(stderr.contains(naming), "{env:?} should name {naming}: {stderr}");
}

/// The `funnelflow` binary serving with `env` on a free port.
struct Running {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Running {
    async fn start(env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = funnelflow()
            .envs(env.iter().copied())
            .env("PORT", port.to_string())
            .env("FUNNELFLOW_HOST", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut running = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("{env:?} was expected to start, but exited with {status}");
            }
            let health = running
                .client
                .get(format!("{}/healthz", running.base))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == 200) {
                return running;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{env:?}: did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /v1/me` with a dev token minted for `project` (the token's audience).
    async fn me_with_dev_token(&self, project: &str) -> u16 {
        let token = funnelflow()
            .args(["dev-token", "--uid", "combo-user"])
            .env("FUNNELFLOW_STORE", "embedded")
            .env("GOOGLE_CLOUD_PROJECT", project)
            .output()
            .unwrap();
        assert!(
            token.status.success(),
            "{}",
            String::from_utf8_lossy(&token.stderr)
        );
        let token = String::from_utf8(token.stdout).unwrap();
        self.client
            .get(format!("{}/v1/me", self.base))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn stop(mut self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status after SIGTERM: {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Google's certificate endpoint stood in for by a local server publishing one
/// certificate under a key id dev tokens do not carry: in `firebase` mode a dev
/// token is then refused with 401.
pub fn google_certs_stand_in() -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let cert = include_str!("../../emulator/dev-keys/dev-auth-cert.pem");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new().route(
            "/certs",
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .insert_header(("cache-control", "public, max-age=3600"))
                    .json(serde_json::json!({ "google-key-1": cert }))
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

/// Every store × auth × secret combination refused at startup, with exit code 2
/// and a message naming the variable to fix.
#[test]
fn refuses_dev_credentials_against_a_real_firestore() {
    let dev_secret = funnelflow::config::DEV_SECRET;
    for real in [
        &[("GOOGLE_CLOUD_PROJECT", "prod-project")][..],
        &[
            ("FUNNELFLOW_STORE", "firestore"),
            ("GOOGLE_CLOUD_PROJECT", "prod-project"),
        ][..],
    ] {
        let with = |extra: &[(&'static str, &'static str)]| [real, extra].concat();
        for secret in [None, Some(SECRET), Some(dev_secret)] {
            let mut env = with(&[("FUNNELFLOW_AUTH", "dev")]);
            env.extend(secret.map(|s| ("FUNNELFLOW_SECRET", s)));
            refuses(&env, "FUNNELFLOW_AUTH");
        }
        // The default there is firebase, which needs a real secret; so does an explicit firebase.
        for auth in [&[][..], &[("FUNNELFLOW_AUTH", "firebase")][..]] {
            refuses(&[real, auth].concat(), "FUNNELFLOW_SECRET");
            refuses(
                &[real, auth, &[("FUNNELFLOW_SECRET", dev_secret)]].concat(),
                "FUNNELFLOW_SECRET",
            );
        }
    }
    // firebase needs a secret wherever it runs.
    let emulator = [("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")];
    refuses(
        &[&emulator[..], &[("FUNNELFLOW_AUTH", "firebase")]].concat(),
        "FUNNELFLOW_SECRET",
    );
}

/// The combinations that start, and the auth mode each one gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_each_allowed_store_and_auth_combination() {
    let certs_url = google_certs_stand_in();
    let certs = ("FUNNELFLOW_GOOGLE_CERTS_URL", certs_url.as_str());
    let emulator_host = crate::support::emulator_host();
    let project = crate::support::unique_project_id("binary");
    let emulator = [
        ("FIRESTORE_EMULATOR_HOST", emulator_host.as_str()),
        ("GOOGLE_CLOUD_PROJECT", project.as_str()),
    ];
    // The emulator: dev auth by default, or explicitly; a dev token reads the profile.
    for auth in [&[][..], &[("FUNNELFLOW_AUTH", "dev")][..]] {
        let app = Running::start(&[&emulator[..], auth].concat()).await;
        assert_eq!(app.me_with_dev_token(&project).await, 200, "{auth:?}");
        app.stop();
    }
    // firebase on the emulator or the embedded store, with a secret: a dev token is refused.
    let firebase = [
        ("FUNNELFLOW_AUTH", "firebase"),
        ("FUNNELFLOW_SECRET", SECRET),
        certs,
    ];
    for local in [
        &emulator[..],
        &[
            ("GOOGLE_CLOUD_PROJECT", project.as_str()),
            ("FUNNELFLOW_STORE", "embedded"),
        ][..],
    ] {
        let app = Running::start(&[local, &firebase[..]].concat()).await;
        assert_eq!(app.me_with_dev_token(&project).await, 401, "{local:?}");
        app.stop();
    }
    // A real Firestore (unreachable here: the service starts all the same and
    // reports it on /readyz) with a secret: firebase by default or explicitly.
    let real = [
        ("GOOGLE_CLOUD_PROJECT", "prod-project"),
        ("FUNNELFLOW_SECRET", SECRET),
        ("FUNNELFLOW_MIGRATE_ON_START", "false"),
        certs,
    ];
    for auth in [&[][..], &[("FUNNELFLOW_AUTH", "firebase")][..]] {
        let app = Running::start(&[&real[..], auth].concat()).await;
        assert_eq!(app.me_with_dev_token("prod-project").await, 401, "{auth:?}");
        app.stop();
    }
}
