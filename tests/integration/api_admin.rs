//! The admin API: refused to everyone but admins (nothing changes), plan and
//! role changes effective on the very next request, audit records without
//! personal data, system documents.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_access::make_admin;
use crate::api_analyses::new_analysis;
use crate::api_keys::{all_permissions, key_with};
use crate::app::{TestApp, json_of, problem};

fn put(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
) -> impl Future<Output = reqwest::Response> + use<> {
    let rb = app.request(Method::PUT, path, Some(token)).json(body);
    async move { rb.send().await.unwrap() }
}

async fn admin_routes_refuse_non_admins(app: TestApp) {
    let (user, victim) = (app.token("plain"), app.token("victim"));
    let before = json_of(app.get("/v1/me", &victim).await, 200).await;
    let key = key_with(&app, &user, &all_permissions()).await;
    let attempts: Vec<(Method, &str, Value)> = vec![
        (Method::GET, "/v1/admin/users", json!(null)),
        (Method::GET, "/v1/admin/users?plan=free", json!(null)),
        (Method::GET, "/v1/admin/users/victim", json!(null)),
        (
            Method::PUT,
            "/v1/admin/users/victim/subscription",
            json!({"planType": "enterprise", "status": "active"}),
        ),
        (
            Method::PUT,
            "/v1/admin/users/victim/role",
            json!({"role": "admin"}),
        ),
        (
            Method::PUT,
            "/v1/admin/users/plain/role",
            json!({"role": "admin"}),
        ),
        (Method::GET, "/v1/admin/audit", json!(null)),
        (Method::PUT, "/v1/admin/system/config", json!({"flag": true})),
    ];
    for cred in [user.as_str(), key.as_str()] {
        for (m, path, body) in &attempts {
            let mut rb = app.request(m.clone(), path, Some(cred));
            if !body.is_null() {
                rb = rb.json(body);
            }
            problem(rb.send().await.unwrap(), 403, "forbidden").await;
        }
    }
    // A role claim in the token is no role: only the stored profile counts.
    let claimed = app.token_with("plain", |c| c["role"] = json!("admin"));
    problem(app.get("/v1/admin/users", &claimed).await, 403, "forbidden").await;
    // Without credentials: 401.
    let res = app
        .request(Method::GET, "/v1/admin/users", None)
        .send()
        .await
        .unwrap();
    problem(res, 401, "unauthenticated").await;
    let after = json_of(app.get("/v1/me", &victim).await, 200).await;
    assert_eq!(before, after);
    assert_eq!(json_of(app.get("/v1/me", &user).await, 200).await["role"], "user");
    let system = app.get("/v1/system/config", &user).await;
    assert_ne!(json_of(system, 200).await.get("flag"), Some(&json!(true)));
}
crate::both_backends!(admin_routes_refuse_non_admins);

async fn plan_changes_take_effect_at_once(app: TestApp) {
    let (admin, victim) = (app.token("boss"), app.token("payer"));
    json_of(app.get("/v1/me", &admin).await, 200).await;
    make_admin(&app, "boss").await;
    let me = json_of(app.get("/v1/me", &victim).await, 200).await;
    assert_eq!(me["subscription"]["planType"], "free");
    for _ in 0..10 {
        json_of(
            app.post("/v1/analyses", &victim, &new_analysis("processing", "F"))
                .await,
            201,
        )
        .await;
    }
    problem(
        app.post("/v1/analyses", &victim, &new_analysis("processing", "F"))
            .await,
        429,
        "quota_exceeded",
    )
    .await;
    // Limits follow the plan: sending them is 422, and nothing changes.
    for extra in ["analysisLimit", "copyLimit"] {
        let mut body = json!({"planType": "pro", "status": "active"});
        body[extra] = json!(100000);
        let p = problem(
            put(&app, "/v1/admin/users/payer/subscription", &admin, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], extra);
    }
    let bad = json!({"planType": "pro", "status": "active",
        "startDate": "2026-12-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"});
    problem(
        put(&app, "/v1/admin/users/payer/subscription", &admin, &bad).await,
        422,
        "validation_failed",
    )
    .await;
    problem(
        put(
            &app,
            "/v1/admin/users/payer/subscription",
            &admin,
            &json!({"planType": "gold", "status": "active"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    problem(
        put(
            &app,
            "/v1/admin/users/nobody/subscription",
            &admin,
            &json!({"planType": "pro", "status": "active"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        json_of(app.get("/v1/me", &victim).await, 200).await["subscription"]["planType"],
        "free"
    );

    // Up: the very next request sees the new plan and quota.
    let body = json!({"planType": "pro", "status": "active", "startDate": "2026-01-01T00:00:00Z",
        "endDate": null, "features": ["exports"]});
    let s = json_of(
        put(&app, "/v1/admin/users/payer/subscription", &admin, &body).await,
        200,
    )
    .await;
    assert_eq!(s["planType"], "pro");
    assert_eq!(s["analysisLimit"], 500);
    assert_eq!(s["copyLimit"], 1000);
    assert_eq!(s["features"], json!(["exports"]));
    let sub = json_of(app.get("/v1/me/subscription", &victim).await, 200).await;
    assert_eq!(sub["planType"], "pro");
    assert_eq!(sub["analysisLimit"], 500);
    json_of(
        app.post("/v1/analyses", &victim, &new_analysis("processing", "F"))
            .await,
        201,
    )
    .await;
    let one = json_of(app.get("/v1/admin/users/payer", &admin).await, 200).await;
    assert_eq!(one["subscription"]["planType"], "pro");
    assert_eq!(one["usage"]["analyses"], 11);

    // Down again: refused at once.
    let free = json!({"planType": "free", "status": "active"});
    let s = json_of(
        put(&app, "/v1/admin/users/payer/subscription", &admin, &free).await,
        200,
    )
    .await;
    assert_eq!(s["analysisLimit"], 10);
    problem(
        app.post("/v1/analyses", &victim, &new_analysis("processing", "F"))
            .await,
        429,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        json_of(app.get("/v1/me", &victim).await, 200).await["subscription"]["planType"],
        "free"
    );

    // Users by plan, paginated.
    let enterprise = json!({"planType": "enterprise", "status": "active"});
    json_of(
        put(&app, "/v1/admin/users/payer/subscription", &admin, &enterprise).await,
        200,
    )
    .await;
    let page = json_of(app.get("/v1/admin/users?plan=enterprise", &admin).await, 200).await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["payer"]);
    assert!(page["items"][0]["subscription"]["analysisLimit"].is_null());
    let free_page = json_of(app.get("/v1/admin/users?plan=free", &admin).await, 200).await;
    assert!(!free_page.to_string().contains("\"payer\""));
    problem(
        app.get("/v1/admin/users?plan=gold", &admin).await,
        400,
        "bad_request",
    )
    .await;
    let mut seen = Vec::new();
    let mut path = "/v1/admin/users?limit=1".to_owned();
    loop {
        let page = json_of(app.get(&path, &admin).await, 200).await;
        for u in page["items"].as_array().unwrap() {
            seen.push(u["userId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/v1/admin/users?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["boss", "payer"]);
    let c = json_of(app.get("/v1/admin/users?limit=1", &admin).await, 200).await["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    problem(
        app.get(&format!("/v1/admin/users?plan=pro&cursor={c}"), &admin)
            .await,
        400,
        "invalid_cursor",
    )
    .await;
}
crate::both_backends!(plan_changes_take_effect_at_once);

async fn role_changes_take_effect_at_once(app: TestApp) {
    let (root, other) = (app.token("root"), app.token("helper"));
    json_of(app.get("/v1/me", &other).await, 200).await;
    make_admin(&app, "root").await;
    problem(app.get("/v1/admin/users", &other).await, 403, "forbidden").await;
    let r = json_of(
        put(
            &app,
            "/v1/admin/users/helper/role",
            &root,
            &json!({"role": "admin"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(r["role"], "admin");
    json_of(app.get("/v1/admin/users", &other).await, 200).await;
    assert_eq!(
        json_of(app.get("/v1/me", &other).await, 200).await["role"],
        "admin"
    );
    // Even an admin's key stays out of admin routes.
    let key = key_with(&app, &other, &all_permissions()).await;
    problem(app.get("/v1/admin/users", &key).await, 403, "forbidden").await;
    problem(
        put(
            &app,
            "/v1/admin/users/helper/role",
            &root,
            &json!({"role": "owner"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let r = json_of(
        put(
            &app,
            "/v1/admin/users/helper/role",
            &root,
            &json!({"role": "user"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(r["role"], "user");
    problem(app.get("/v1/admin/users", &other).await, 403, "forbidden").await;
    problem(
        put(
            &app,
            "/v1/admin/users/ghost/role",
            &root,
            &json!({"role": "admin"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}
crate::both_backends!(role_changes_take_effect_at_once);

async fn audit_records_name_fields_never_values(app: TestApp) {
    let (admin, victim) = (app.token("auditor"), app.token("subject"));
    json_of(app.get("/v1/me", &victim).await, 200).await;
    make_admin(&app, "auditor").await;
    json_of(
        app.patch("/v1/me", &victim, &json!({"name": "Secret Name"}))
            .await,
        200,
    )
    .await;
    json_of(
        put(
            &app,
            "/v1/admin/users/subject/subscription",
            &admin,
            &json!({"planType": "pro", "status": "active", "features": ["f1"]}),
        )
        .await,
        200,
    )
    .await;
    json_of(
        put(
            &app,
            "/v1/admin/users/subject/role",
            &admin,
            &json!({"role": "admin"}),
        )
        .await,
        200,
    )
    .await;
    json_of(
        put(
            &app,
            "/v1/admin/system/flags",
            &admin,
            &json!({"beta": true, "motd": "hello"}),
        )
        .await,
        200,
    )
    .await;

    let all = json_of(app.get("/v1/admin/audit", &admin).await, 200).await;
    let actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "system.update",
            "user.role.update",
            "user.subscription.update",
            "profile.update"
        ]
    );
    let text = all.to_string();
    for personal in ["Secret Name", "subject@example.com", "User subject", "hello"] {
        assert!(!text.contains(personal), "audit holds {personal}: {text}");
    }
    let first = &all["items"][0];
    for f in ["id", "actor", "action", "target", "at", "requestId", "details"] {
        assert!(first.get(f).is_some(), "{f} in {first}");
    }
    assert_eq!(first["actor"], "auditor");
    assert_eq!(first["target"], "system/flags");
    assert_eq!(first["details"]["fields"], json!(["beta", "motd"]));
    let role = &all["items"][1];
    assert_eq!(role["target"], "users/subject");
    assert_eq!(role["details"]["fields"], json!(["role"]));

    let by_actor = json_of(app.get("/v1/admin/audit?actor=auditor", &admin).await, 200).await;
    assert_eq!(by_actor["items"].as_array().unwrap().len(), 3);
    let by_target = json_of(app.get("/v1/admin/audit?target=subject", &admin).await, 200).await;
    assert_eq!(by_target["items"].as_array().unwrap().len(), 3);
    let by_path = json_of(app.get("/v1/admin/audit?target=users/subject", &admin).await, 200).await;
    assert_eq!(by_path["items"], by_target["items"]);
    let system = json_of(app.get("/v1/admin/audit?target=system/flags", &admin).await, 200).await;
    assert_eq!(system["items"].as_array().unwrap().len(), 1);
    let both = json_of(
        app.get(
            "/v1/admin/audit?target=subject&action=user.role.update&actor=auditor",
            &admin,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(both["items"].as_array().unwrap().len(), 1);
    let page = json_of(
        app.get("/v1/admin/audit?limit=2&target=subject", &admin).await,
        200,
    )
    .await;
    let c = page["nextCursor"].as_str().unwrap();
    let rest = json_of(
        app.get(
            &format!("/v1/admin/audit?limit=2&target=subject&cursor={c}"),
            &admin,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["nextCursor"].is_null());
    problem(
        app.get(&format!("/v1/admin/audit?target=other&cursor={c}"), &admin)
            .await,
        400,
        "invalid_cursor",
    )
    .await;
}
crate::both_backends!(audit_records_name_fields_never_values);

async fn system_documents(app: TestApp) {
    let (admin, user) = (app.token("sysop"), app.token("reader"));
    json_of(app.get("/v1/me", &admin).await, 200).await;
    make_admin(&app, "sysop").await;
    let doc = json!({"maintenance": false, "limits": {"maxUpload": 10}, "tags": ["a", "b"], "ratio": 0.5});
    let stored = json_of(put(&app, "/v1/admin/system/features", &admin, &doc).await, 200).await;
    assert_eq!(stored, doc);
    let got = json_of(app.get("/v1/system/features", &user).await, 200).await;
    assert_eq!(got, doc, "fields at the top level");
    // Any signed-in caller, API keys of any permission included.
    let key = key_with(&app, &user, &["events:write"]).await;
    assert_eq!(
        json_of(app.get("/v1/system/features", &key).await, 200).await,
        doc
    );
    // Replace, not merge.
    json_of(
        put(&app, "/v1/admin/system/features", &admin, &json!({"only": 1})).await,
        200,
    )
    .await;
    assert_eq!(
        json_of(app.get("/v1/system/features", &user).await, 200).await,
        json!({"only": 1})
    );
    problem(app.get("/v1/system/nothing-here", &user).await, 404, "not_found").await;
    let res = app
        .request(Method::GET, "/v1/system/features", None)
        .send()
        .await
        .unwrap();
    problem(res, 401, "unauthenticated").await;

    // ≤ 64 KiB, an object, storable.
    let big = json!({"blob": "x".repeat(64 * 1024)});
    problem(
        put(&app, "/v1/admin/system/big", &admin, &big).await,
        413,
        "payload_too_large",
    )
    .await;
    for bad in [
        json!([1, 2]),
        json!("text"),
        json!({"nested": [[1]]}),
        json!({"__reserved__": 1}),
        json!({"": 1}),
    ] {
        problem(
            put(&app, "/v1/admin/system/bad", &admin, &bad).await,
            422,
            "validation_failed",
        )
        .await;
    }
    problem(app.get("/v1/system/bad", &user).await, 404, "not_found").await;
    problem(
        put(&app, "/v1/admin/system/schema", &admin, &json!({"x": 1})).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        put(&app, "/v1/admin/system/flags", &user, &json!({"x": 1})).await,
        403,
        "forbidden",
    )
    .await;
    problem(app.get("/v1/system/flags", &user).await, 404, "not_found").await;
}
crate::both_backends!(system_documents);
