//! `/v1/me`: provisioning, rectification, subscription, sign-in tracking.

use funnelflow::store::{DocPath, Fields, Op, Query, Write, value};
use serde_json::{Value, json};

use crate::app::{TestApp, json_of, problem};

async fn provisions_profile_from_claims(app: TestApp) {
    let token = app.token_with("ada", |c| c["picture"] = json!("https://img.example.com/ada.png"));
    let res = app.get("/v1/me", &token).await;
    assert!(res.headers().get("etag").is_some(), "profiles carry an ETag");
    let me = json_of(res, 200).await;
    let keys: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "userId",
        "email",
        "name",
        "authProvider",
        "profileImage",
        "role",
        "createdAt",
        "lastLoginAt",
        "subscription",
        "preferences",
        "metadata",
        "usage",
    ] {
        assert!(keys.contains(&k), "missing {k} in {me}");
    }
    assert_eq!(me["userId"], "ada");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["name"], "User ada");
    assert_eq!(me["profileImage"], "https://img.example.com/ada.png");
    assert_eq!(me["role"], "user");
    assert_eq!(me["subscription"]["planType"], "free");
    assert_eq!(me["subscription"]["status"], "active");
    assert_eq!(me["subscription"]["analysisLimit"], 10);
    assert_eq!(me["subscription"]["copyLimit"], 20);
    assert_eq!(
        me["preferences"],
        json!({"defaultPersona": null, "emailNotifications": true, "analyticsOptOut": false, "theme": "system"})
    );
    assert_eq!(me["metadata"]["totalAnalyses"], 0);
    let period = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    assert_eq!(
        me["usage"],
        json!({"period": period, "analyses": 0, "copyGenerations": 0})
    );
    let created: jiff::Timestamp = me["createdAt"].as_str().unwrap().parse().unwrap();
    assert!((jiff::Timestamp::now() - created).get_seconds().abs() < 60);
    let sub = json_of(app.get("/v1/me/subscription", &token).await, 200).await;
    assert_eq!(sub, me["subscription"]);
}
crate::both_backends!(provisions_profile_from_claims);

async fn provisions_exactly_once_under_concurrent_first_requests(app: TestApp) {
    let token = app.token("racer");
    let futs = (0..12).map(|_| app.get("/v1/me", &token));
    let mut created = Vec::new();
    for res in futures::future::join_all(futs).await {
        created.push(json_of(res, 200).await["createdAt"].clone());
    }
    assert!(
        created.windows(2).all(|w| w[0] == w[1]),
        "one profile, one createdAt: {created:?}"
    );
    let docs = app
        .store()
        .query(&Query::collection(None, "users"))
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
}
crate::both_backends!(
    provisions_exactly_once_under_concurrent_first_requests,
    provisions_exactly_once_under_concurrent_first_requests
);

async fn completes_a_partial_profile_and_keeps_what_is_there(app: TestApp) {
    // What `funnelflow admin grant-admin` leaves before the first sign-in.
    let path = DocPath::root("users", "boss").unwrap();
    let mut f = Fields::new();
    f.insert("role".into(), value::string("admin"));
    value::set_path(&mut f, "preferences.theme", value::string("dark"));
    app.store().commit(vec![Write::set(path, f)]).await.unwrap();
    let me = json_of(app.get("/v1/me", &app.token("boss")).await, 200).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["preferences"]["theme"], "dark");
    assert_eq!(me["preferences"]["emailNotifications"], true);
    assert_eq!(me["subscription"]["planType"], "free");
    assert_eq!(me["email"], "boss@example.com");
}
crate::both_backends!(
    completes_a_partial_profile_and_keeps_what_is_there,
    completes_a_partial_profile_and_keeps_what_is_there
);

async fn patches_only_allowed_fields(app: TestApp) {
    let token = app.token("pat");
    json_of(app.get("/v1/me", &token).await, 200).await;
    let body = json!({
        "name": "Ünïcödé Pat",
        "profileImage": "https://cdn.example.com/p.png",
        "preferences": {"theme": "dark", "analyticsOptOut": true},
    });
    let me = json_of(app.patch("/v1/me", &token, &body).await, 200).await;
    assert_eq!(me["name"], "Ünïcödé Pat");
    assert_eq!(me["profileImage"], "https://cdn.example.com/p.png");
    assert_eq!(me["preferences"]["theme"], "dark");
    assert_eq!(me["preferences"]["analyticsOptOut"], true);
    assert_eq!(
        me["preferences"]["emailNotifications"], true,
        "partial preferences keep the rest"
    );
    // The cached profile was invalidated: a GET sees the change at once.
    let again = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(again["name"], "Ünïcödé Pat");
    // Removing the image.
    let me = json_of(
        app.patch("/v1/me", &token, &json!({"profileImage": null})).await,
        200,
    )
    .await;
    assert_eq!(me["profileImage"], Value::Null);
    // 100 characters (not bytes) is the limit.
    let long = "é".repeat(100);
    json_of(app.patch("/v1/me", &token, &json!({"name": long})).await, 200).await;

    let refused: Vec<(Value, &str, &str)> = vec![
        (json!({"email": "x@evil.com"}), "email", "unknown_field"),
        (json!({"role": "admin"}), "role", "unknown_field"),
        (
            json!({"subscription": {"planType": "enterprise"}}),
            "subscription",
            "unknown_field",
        ),
        (json!({"metadata": {}}), "metadata", "unknown_field"),
        (json!({"usage": {}}), "usage", "unknown_field"),
        (
            json!({"preferences": {"theme": "neon"}}),
            "preferences.theme",
            "type",
        ),
        (
            json!({"preferences": {"unknown": 1}}),
            "preferences.unknown",
            "unknown_field",
        ),
        (
            json!({"preferences": {"defaultPersona": "x".repeat(101)}}),
            "preferences.defaultPersona",
            "length",
        ),
        (json!({"name": ""}), "name", "length"),
        (json!({"name": "x".repeat(101)}), "name", "length"),
        (json!({"name": null}), "name", "required"),
        (json!({"preferences": null}), "preferences", "required"),
        (
            json!({"preferences": {"theme": null}}),
            "preferences.theme",
            "required",
        ),
        (
            json!({"preferences": {"emailNotifications": null}}),
            "preferences.emailNotifications",
            "required",
        ),
        (json!(["Hacker"]), "", "type"),
        (json!({"name": 42}), "name", "type"),
        (
            json!({"profileImage": "javascript:alert(1)"}),
            "profileImage",
            "url",
        ),
        (json!({"profileImage": "not a url"}), "profileImage", "url"),
    ];
    for (body, field, code) in refused {
        let p = problem(app.patch("/v1/me", &token, &body).await, 422, "validation_failed").await;
        let errors = p["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| e["field"] == field && e["code"] == code),
            "{body} should fail on {field} with {code}: {p}"
        );
    }
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["role"], "user");
    assert_eq!(me["email"], "pat@example.com");

    // Every change is audited with field names, never values.
    let audits = app
        .store()
        .query(&Query::collection(None, "auditLogs").filter("target", Op::Eq, value::string("users/pat")))
        .await
        .unwrap();
    assert_eq!(audits.len(), 3);
    for a in &audits {
        let j = Value::Object(value::fields_to_json(&a.fields));
        assert_eq!(j["action"], "profile.update");
        assert_eq!(j["actor"], "pat");
        assert!(
            !j.to_string().contains("Ünïcödé"),
            "audit must not hold values: {j:?}"
        );
        assert!(
            !j.to_string().contains("cdn.example.com"),
            "audit must not hold values: {j:?}"
        );
    }
}
crate::both_backends!(patches_only_allowed_fields);

async fn honours_if_match(app: TestApp) {
    let token = app.token("etag");
    let res = app.get("/v1/me", &token).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app
        .client
        .patch(app.url("/v1/me"))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"name": "First"}))
        .send()
        .await
        .unwrap();
    let new_etag = res.headers()["etag"].to_str().unwrap().to_owned();
    json_of(res, 200).await;
    assert_ne!(etag, new_etag, "a write changes the ETag");
    // The old ETag is stale now.
    let res = app
        .client
        .patch(app.url("/v1/me"))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"name": "Second"}))
        .send()
        .await
        .unwrap();
    problem(res, 412, "precondition_failed").await;
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["name"], "First", "a refused write changes nothing");
}
crate::both_backends!(honours_if_match);

async fn last_login_moves_only_with_a_newer_sign_in(app: TestApp) {
    let now = jiff::Timestamp::now().as_second();
    let first = app.token_with("log", |c| c["auth_time"] = json!(now - 3000));
    let res = app.get("/v1/me", &first).await;
    let etag1 = res.headers()["etag"].clone();
    let me = json_of(res, 200).await;
    let t1: jiff::Timestamp = me["lastLoginAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(t1.as_second(), now - 3000);
    // The same sign-in again: no rewrite (the ETag stays).
    let res = app.get("/v1/me", &first).await;
    assert_eq!(res.headers()["etag"], etag1);
    // An older sign-in never moves it back.
    let older = app.token_with("log", |c| c["auth_time"] = json!(now - 5000));
    let me = json_of(app.get("/v1/me", &older).await, 200).await;
    assert_eq!(
        me["lastLoginAt"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        t1
    );
    // A newer sign-in moves it.
    let newer = app.token_with("log", |c| c["auth_time"] = json!(now - 100));
    let me = json_of(app.get("/v1/me", &newer).await, 200).await;
    let t3: jiff::Timestamp = me["lastLoginAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(t3.as_second(), now - 100);
}
crate::both_backends!(
    last_login_moves_only_with_a_newer_sign_in,
    last_login_moves_only_with_a_newer_sign_in
);

/// Regression: 30 concurrent first requests of a new user all provisioned the
/// profile in contending transactions; on the emulator some waited out the
/// request deadline (503). They take turns now, and all answer 200.
async fn concurrent_first_requests_all_succeed(app: TestApp) {
    let token = app.token("fresh-crowd");
    let reqs: Vec<_> = (0..30).map(|_| app.get("/v1/me", &token)).collect();
    for r in futures::future::join_all(reqs).await {
        let status = r.status();
        assert_eq!(status, 200, "{}", r.text().await.unwrap());
    }
}
crate::both_backends!(concurrent_first_requests_all_succeed);
