//! `deploy/`: what can be checked without a cloud. The specs parse; the
//! environment they set is configuration the service reads (and accepts);
//! the probes name real routes; the Dockerfile builds what the binary
//! embeds; and the binary, started as the container starts it (environment
//! only, on "Cloud Run", firebase auth, read-only working directory), serves,
//! keeps /metrics off the public port and drains on SIGTERM.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use funnelflow::cli::Cli;
use funnelflow::config::{Config, KNOWN_VARS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");
const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";
/// Read by the log subscriber (`telemetry.rs`), not by `Config`.
const TELEMETRY_VARS: &[&str] = &["RUST_LOG"];

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The containers running the funnelflow image, with the spec's pod spec.
fn funnelflow_containers(spec: &Value) -> (Vec<Value>, Value) {
    let pod = match spec["kind"].as_str() {
        Some("Service") => &spec["spec"]["template"]["spec"],
        Some("Job") => &spec["spec"]["template"]["spec"]["template"]["spec"],
        other => panic!("unexpected kind {other:?}"),
    };
    let containers = pod["containers"].as_array().unwrap();
    let ours: Vec<Value> = containers
        .iter()
        .filter(|c| c["image"] == "IMAGE")
        .cloned()
        .collect();
    assert_eq!(ours.len(), 1, "one funnelflow container");
    (ours, pod.clone())
}

/// The literal environment of a container, and the names of secret-backed ones.
fn env_of(container: &Value) -> (HashMap<String, String>, Vec<String>) {
    let mut literal = HashMap::new();
    let mut secret = Vec::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        assert!(
            KNOWN_VARS.contains(&name.as_str()) || TELEMETRY_VARS.contains(&name.as_str()),
            "{name} is set but the service never reads it"
        );
        match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
            (Value::String(v), Value::Null) => {
                literal.insert(name, v.clone());
            }
            (Value::Null, Value::Object(r)) => {
                assert!(r["name"].is_string() && r["key"].is_string(), "{name}: {r:?}");
                secret.push(name);
            }
            other => panic!("{name}: neither a value nor a secret: {other:?}"),
        }
    }
    (literal, secret)
}

#[test]
fn specs_parse_and_set_only_configuration_the_service_reads() {
    for (path, on_cloud_run) in [
        ("deploy/service.yaml", true),
        ("deploy/job-backup.yaml", false),
        ("deploy/job-purge.yaml", false),
    ] {
        let spec = yaml(path);
        let (containers, _) = funnelflow_containers(&spec);
        let c = &containers[0];
        let (literal, secret) = env_of(c);
        // Cloud Run sets PORT itself and refuses a spec that sets it.
        assert!(!literal.contains_key("PORT"), "{path}");
        // The secret comes from Secret Manager, never inline.
        assert_eq!(secret, ["FUNNELFLOW_SECRET"], "{path}");
        assert_ne!(
            literal.get("FUNNELFLOW_AUTH").map(String::as_str),
            Some("dev"),
            "{path}"
        );
        // The arguments are a command line the binary accepts.
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let mut argv = vec!["funnelflow".to_owned()];
        argv.extend(args);
        use clap::Parser;
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{path}: {argv:?}: {e}"));
        // And the environment is a configuration the service accepts, as production.
        let mut env = literal.clone();
        env.insert("FUNNELFLOW_SECRET".into(), SECRET.into());
        if on_cloud_run {
            env.insert("K_SERVICE".into(), "funnelflow".into());
            env.insert("PORT".into(), "8080".into());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(config.project_id, "PROJECT_ID", "{path}");
        assert!(config.emulator_host.is_none(), "{path}");
        assert!(
            matches!(config.auth, funnelflow::config::AuthMode::Firebase { .. }),
            "{path}"
        );
        assert!(c["resources"]["limits"]["memory"].is_string(), "{path}");
    }
}

#[test]
fn service_probes_name_existing_routes_and_metrics_stay_private() {
    let spec = yaml("deploy/service.yaml");
    let (containers, pod) = funnelflow_containers(&spec);
    let c = &containers[0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(port, 8080);
    let paths = &funnelflow::http::openapi::document()["paths"];
    for (probe, path) in [("startupProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"].as_u64(), Some(port), "{probe}");
        assert!(paths[path]["get"].is_object(), "{path} is not a route");
    }
    // Serving settings.
    assert!(pod["containerConcurrency"].as_u64().is_some_and(|n| n > 0));
    let annotations = &spec["spec"]["template"]["metadata"]["annotations"];
    for key in [
        "autoscaling.knative.dev/minScale",
        "autoscaling.knative.dev/maxScale",
    ] {
        assert!(
            annotations[key]
                .as_str()
                .is_some_and(|v| v.parse::<u32>().is_ok()),
            "{key}"
        );
    }
    assert!(c["resources"]["limits"]["cpu"].is_string());
    // /metrics: on its own port, which the sidecar scrapes and Cloud Run does not expose.
    let (env, _) = env_of(c);
    let metrics_port: u64 = env["FUNNELFLOW_METRICS_PORT"].parse().unwrap();
    assert_ne!(metrics_port, port);
    let scrape = yaml("deploy/rungmp-config.yaml");
    assert_eq!(
        scrape["spec"]["endpoints"][0]["port"].as_u64(),
        Some(metrics_port)
    );
    assert_eq!(scrape["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn jobs_back_up_to_a_bucket_and_purge() {
    let backup = yaml("deploy/job-backup.yaml");
    let (c, pod) = funnelflow_containers(&backup);
    let args = c[0]["args"].as_array().unwrap();
    assert_eq!(args[0], "backup");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| args[i + 1].clone())
        .unwrap();
    let mount = &c[0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], out);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["csi"]["driver"], "gcsfuse.run.googleapis.com");
    assert_eq!(volume["csi"]["volumeAttributes"]["bucketName"], "BUCKET");
    let purge = yaml("deploy/job-purge.yaml");
    let (c, _) = funnelflow_containers(&purge);
    assert_eq!(c[0]["args"], json!(["purge"]));
    // deploy.sh schedules both, daily, deploys rules, indexes and the TTL policy.
    let script = read("deploy/deploy.sh");
    for needle in [
        "jobs replace",
        "services replace",
        "funnelflow-backup-daily",
        "funnelflow-purge-daily",
        "firestore:rules,firestore:indexes",
        "ttls update expiresAt --collection-group=idempotency",
    ] {
        assert!(script.contains(needle), "deploy.sh does not do {needle:?}");
    }
}

#[test]
fn dockerfile_builds_locked_and_runs_unprivileged() {
    let docker = read("deploy/Dockerfile");
    assert_eq!(
        docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM ")),
        2
    );
    assert!(docker.contains("--locked"));
    assert!(docker.contains("USER nonroot"));
    assert!(docker.contains("STRIP=symbols"));
    // Every file the binary embeds is copied into the build stage.
    let mut embedded = Vec::new();
    for entry in walk(&format!("{}/src", env!("CARGO_MANIFEST_DIR"))) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for (i, _) in text.match_indices("include_str!(\"") {
            let rest = &text[i + 14..];
            let rel = &rest[..rest.find('"').unwrap()];
            let abs = std::path::Path::new(&entry).parent().unwrap().join(rel);
            let abs = abs.canonicalize().unwrap();
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .canonicalize()
                .unwrap();
            embedded.push(abs.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(!embedded.is_empty());
    for file in embedded {
        let copied = docker.lines().any(|l| {
            l.strip_prefix("COPY ")
                .and_then(|a| a.split_whitespace().next())
                .is_some_and(|src| file.starts_with(src.trim_end_matches('/')))
        });
        assert!(
            copied,
            "the Dockerfile does not copy {file}, which the binary embeds"
        );
    }
}

fn walk(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(p.to_str().unwrap()));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Firebase ID token for `project`, signed with the key the local
/// certificate server publishes as `google-key-1`.
fn firebase_token(project: &str, uid: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "iss": format!("https://securetoken.google.com/{project}"),
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "email": format!("{uid}@example.com"),
        "firebase": {"sign_in_provider": "google.com", "identities": {}},
    });
    funnelflow::auth::sign_claims(funnelflow::config::DEV_PRIVATE_KEY_PEM, "google-key-1", &claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_command_serves_and_drains_on_sigterm() {
    let certs = crate::binary::google_certs_stand_in();
    let project = crate::support::unique_project_id("container");
    let spec = yaml("deploy/service.yaml");
    let (containers, _) = funnelflow_containers(&spec);
    let (mut env, _) = env_of(&containers[0]);
    let args: Vec<String> = containers[0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let (port, metrics_port) = (free_port(), free_port());
    env.insert("GOOGLE_CLOUD_PROJECT".into(), project.clone());
    env.insert("FUNNELFLOW_SECRET".into(), SECRET.into());
    env.insert("FUNNELFLOW_METRICS_PORT".into(), metrics_port.to_string());
    // What Cloud Run adds, and the local stand-ins for Firestore and Google's certificates.
    env.insert("K_SERVICE".into(), "funnelflow".into());
    env.insert("K_REVISION".into(), "funnelflow-00001-abc".into());
    env.insert("PORT".into(), port.to_string());
    env.insert("FIRESTORE_EMULATOR_HOST".into(), crate::support::emulator_host());
    env.insert("FUNNELFLOW_GOOGLE_CERTS_URL".into(), certs);
    env.insert("RUST_LOG".into(), "warn".into());

    // A read-only working directory, as a locked-down container's.
    let cwd = crate::ops_backup::temp_dir("readonly-cwd");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o555)).unwrap();

    let mut child = Command::new(BIN)
        .env_clear()
        .envs(&env)
        .args(&args)
        .current_dir(&cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited before serving: {status}");
        }
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not ready within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let token = firebase_token(&project, "container-user");
    let me = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        200,
        "a Firebase token verified with the published certificate"
    );
    // /metrics only on the private port.
    assert_eq!(
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("# TYPE"));
    // ... and the public API's document does not offer it.
    let doc: serde_json::Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/healthz"].is_object());
    assert!(doc["paths"].get("/metrics").is_none(), "/metrics is private here");

    // A request in flight (its body still arriving) when SIGTERM comes.
    let body = json!({
        "name": "Drain",
        "description": "A persona created while the service shuts down",
        "characteristics": {},
    })
    .to_string();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /v1/personas HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // New connections are refused once it is stopping.
    let stopping = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The in-flight request completes.
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(8), slow.read_to_string(&mut answer))
        .await
        .expect("the in-flight request was not answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_dir_all(&cwd);
}
