//! GDPR export (JSON) through real HTTP: exact sections and counts across
//! several store pages, nobody else's data, no stored hash, an attachment,
//! its own rate limit.

use funnelflow::store::{DocPath, Fields, Write, value};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::api_keys::key_with;
use crate::api_personas::new_persona;
use crate::app::{Backend, TestApp, json_of, problem, spawn_app_with};

async fn export_of(app: &TestApp, token: &str) -> Value {
    let res = app.get("/v1/me/export?format=json", token).await;
    assert_eq!(res.status(), 200);
    let cd = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(cd.starts_with("attachment"), "{cd}");
    let text = res.text().await.unwrap();
    assert!(!text.contains("secretHash"), "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn export_holds_everything_and_only_mine(app: TestApp) {
    let (token, other) = (app.token("exporter"), app.token("stranger"));
    for _ in 0..2 {
        json_of(
            app.post("/v1/analyses", &token, &new_analysis("completed", "founder"))
                .await,
            201,
        )
        .await;
    }
    json_of(app.post("/v1/personas", &token, &new_persona("Mine")).await, 201).await;
    let key = key_with(&app, &token, &["export:read"]).await;
    json_of(
        app.post(
            "/v1/events",
            &token,
            &json!({"events": [{"eventType": "a", "eventData": {}}, {"eventType": "b", "eventData": {}}]}),
        )
        .await,
        202,
    )
    .await;
    json_of(
        app.patch("/v1/me", &token, &json!({"preferences": {"theme": "dark"}}))
            .await,
        200,
    )
    .await;
    json_of(
        app.post(
            "/v1/analyses",
            &other,
            &new_analysis("completed", "stranger-persona"),
        )
        .await,
        201,
    )
    .await;
    json_of(
        app.post("/v1/personas", &other, &new_persona("Theirs")).await,
        201,
    )
    .await;
    // More analyses than one store page holds.
    let writes: Vec<Write> = (0..450)
        .map(|i| {
            let mut f = Fields::new();
            f.insert("analysisId".into(), value::string(format!("bulk{i:04}")));
            f.insert("userId".into(), value::string("exporter"));
            Write::set(
                DocPath::parse(&format!("users/exporter/analyses/bulk{i:04}")).unwrap(),
                f,
            )
        })
        .collect();
    app.store().commit(writes).await.unwrap();

    let e = export_of(&app, &token).await;
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "exportedAt",
        "userData",
        "analysisHistory",
        "customPersonas",
        "apiKeys",
        "usageAnalytics",
        "auditTrail",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(e["userData"]["preferences"]["theme"], "dark");
    assert_eq!(e["analysisHistory"].as_array().unwrap().len(), 452);
    let ids: std::collections::HashSet<&str> = e["analysisHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["analysisId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 452);
    assert_eq!(e["customPersonas"].as_array().unwrap().len(), 1);
    assert_eq!(e["customPersonas"][0]["name"], "Mine");
    assert_eq!(e["apiKeys"].as_array().unwrap().len(), 1);
    assert_eq!(e["usageAnalytics"].as_array().unwrap().len(), 2);
    assert!(
        e["auditTrail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "profile.update")
    );
    let text = e.to_string();
    assert!(!text.contains("stranger") && !text.contains("Theirs"), "{text}");

    // An API key with export:read may export; the export is audited.
    let r = app
        .request(Method::GET, "/v1/me/export", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = export_of(&app, &token).await;
    assert!(
        again["auditTrail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "user.export")
    );
    problem(
        app.get("/v1/me/export?format=xml", &token).await,
        400,
        "bad_request",
    )
    .await;
}
crate::both_backends!(export_holds_everything_and_only_mine);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_has_its_own_rate_limit() {
    let app = spawn_app_with(Backend::Embedded, &[("FUNNELFLOW_EXPORT_RATE_LIMIT", "2/1h")]).await;
    let token = app.token("eager");
    export_of(&app, &token).await;
    export_of(&app, &token).await;
    problem(app.get("/v1/me/export", &token).await, 429, "rate_limited").await;
    // Other routes are not limited by it.
    json_of(app.get("/v1/me", &token).await, 200).await;
}

/// A later section longer than what the export reads ahead of it (50
/// documents) is whole and in the store's order.
async fn long_later_sections_are_whole_and_in_order(app: TestApp) {
    let token = app.token("eventful");
    for batch in 0..3 {
        let events: Vec<Value> = (0..40)
            .map(|i| json!({"eventType": "step", "eventData": {"n": batch * 40 + i}}))
            .collect();
        json_of(
            app.post("/v1/events", &token, &json!({ "events": events })).await,
            202,
        )
        .await;
    }
    let stored = app
        .store()
        .query(&funnelflow::domain::analytics::user_query("eventful"))
        .await
        .unwrap();
    let want: Vec<&str> = stored
        .iter()
        .map(|d| d.field("eventId").and_then(value::as_str).unwrap())
        .collect();
    assert_eq!(want.len(), 120);
    let e = export_of(&app, &token).await;
    let got: Vec<&str> = e["usageAnalytics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
}
crate::both_backends!(long_later_sections_are_whole_and_in_order);

/// Exports whose clients stop reading hold at most the instance's two export
/// slots: a third export is 503 (with `Retry-After`) while the rest of the API
/// answers, and the slots are free again once those clients go away.
async fn stalled_exports_hold_two_slots_at_most(app: TestApp) {
    use tokio::io::AsyncWriteExt;

    let blob = "x".repeat(900_000);
    let mut stalled = Vec::new();
    for uid in ["slow0", "slow1"] {
        let token = app.token(uid);
        json_of(app.get("/v1/me", &token).await, 200).await;
        let user = DocPath::root("users", uid).unwrap();
        for i in 0..10 {
            let mut f = Fields::new();
            f.insert("blob".into(), value::string(blob.clone()));
            let doc = user.child("analyses", &format!("big{i:02}")).unwrap();
            app.store().commit(vec![Write::set(doc, f)]).await.unwrap();
        }
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr = app.address.trim_start_matches("http://").parse().unwrap();
        let mut conn = socket.connect(addr).await.unwrap();
        let request =
            format!("GET /v1/me/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        stalled.push(conn);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let other = app.token("patient");
    json_of(app.get("/v1/me", &other).await, 200).await;
    let busy = app.get("/v1/me/export", &other).await;
    assert!(busy.headers().contains_key("retry-after"));
    problem(busy, 503, "unavailable").await;

    drop(stalled);
    let mut status = 0;
    for _ in 0..50 {
        status = app.get("/v1/me/export", &other).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
}
crate::both_backends!(stalled_exports_hold_two_slots_at_most);
