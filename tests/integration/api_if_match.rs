//! `If-Match` lists (RFC 9110 §13.1.1) on PATCH and DELETE of analyses,
//! personas and the profile: any strong member matching the current ETag
//! matches, weak tags never do, `*` needs an existing resource, and a resource
//! that is missing or another tenant's is 404 whatever the header says.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_analyses::{new_analysis, results};
use crate::api_personas::new_persona;
use crate::app::{TestApp, json_of, problem};

/// Creates a resource; returns its path and ETag.
async fn create(app: &TestApp, token: &str, collection: &str, body: &Value) -> (String, String) {
    let res = app.post(collection, token, body).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    json_of(res, 201).await;
    (location, etag)
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    tags: &[&str],
    body: &Value,
) -> reqwest::Response {
    let mut rb = app.request(method.clone(), path, Some(token));
    for t in tags {
        rb = rb.header("if-match", *t);
    }
    if method == Method::PATCH {
        rb = rb.json(body);
    }
    rb.send().await.unwrap()
}

/// Runs every case for one kind of resource and one method.
async fn check(app: &TestApp, method: Method, collection: &str, new: &Value, patch: &Value) {
    let (alice, bob) = (app.token("ifm-alice"), app.token("ifm-bob"));
    let ok = if method == Method::PATCH { 200 } else { 204 };
    let (path, etag) = create(app, &alice, collection, new).await;
    let other = r#""1.000000000", "2.000000000""#;

    // Not the current version, however it is listed: 412, and nothing changed.
    for tags in [
        vec![other],
        vec![r#""x""#, "garbage"],
        vec![&*format!("W/{etag}")],
        vec![&*format!("W/{etag}, \"x\"")],
    ] {
        let res = send(app, method.clone(), &path, &alice, &tags, patch).await;
        problem(res, 412, "precondition_failed").await;
    }
    let res = app.get(&path, &alice).await;
    assert_eq!(
        res.headers()["etag"].to_str().unwrap(),
        etag,
        "a refused write changed nothing"
    );

    // Another tenant's resource, or a missing one: 404 even with its current tag or `*`.
    let missing = format!("{collection}/does-not-exist");
    for tags in [vec![&*format!("\"x\", {etag}")], vec!["*"]] {
        let res = send(app, method.clone(), &path, &bob, &tags, patch).await;
        problem(res, 404, "not_found").await;
        let res = send(app, method.clone(), &missing, &alice, &tags, patch).await;
        problem(res, 404, "not_found").await;
    }

    // A list holding the current tag matches, also spread over two header lines.
    let tags = [&*format!("\"x\", {etag}, W/\"y\"")];
    let res = send(app, method.clone(), &path, &alice, &tags, patch).await;
    assert_eq!(res.status(), ok, "{:?}", res.text().await);
    let (path, etag) = create(app, &alice, collection, new).await;
    let res = send(app, method.clone(), &path, &alice, &[r#""x""#, &etag], patch).await;
    assert_eq!(res.status(), ok, "{:?}", res.text().await);
    if method == Method::DELETE {
        // `*` matches any existing resource; once it is gone, 404.
        let (path, _) = create(app, &alice, collection, new).await;
        let res = send(app, Method::DELETE, &path, &alice, &["*"], patch).await;
        assert_eq!(res.status(), 204);
        let res = send(app, Method::DELETE, &path, &alice, &["*"], patch).await;
        problem(res, 404, "not_found").await;
    } else {
        let (path, _) = create(app, &alice, collection, new).await;
        let res = send(app, Method::PATCH, &path, &alice, &["*"], patch).await;
        assert_eq!(res.status(), 200);
    }
}

async fn analyses_patch(app: TestApp) {
    let new = new_analysis("processing", "Founder");
    let complete = json!({"status": "completed", "results": results(false)});
    check(&app, Method::PATCH, "/v1/analyses", &new, &complete).await;
}
crate::both_backends!(analyses_patch);

async fn analyses_delete(app: TestApp) {
    let new = new_analysis("processing", "Founder");
    check(&app, Method::DELETE, "/v1/analyses", &new, &Value::Null).await;
}
crate::both_backends!(analyses_delete);

async fn personas_patch(app: TestApp) {
    check(
        &app,
        Method::PATCH,
        "/v1/personas",
        &new_persona("Buyer"),
        &json!({"name": "Renamed"}),
    )
    .await;
}
crate::both_backends!(personas_patch);

async fn personas_delete(app: TestApp) {
    check(
        &app,
        Method::DELETE,
        "/v1/personas",
        &new_persona("Buyer"),
        &Value::Null,
    )
    .await;
}
crate::both_backends!(personas_delete);

async fn profile_patch(app: TestApp) {
    let token = app.token("ifm-profile");
    let res = app.get("/v1/me", &token).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let body = json!({"name": "Renamed"});
    let res = send(
        &app,
        Method::PATCH,
        "/v1/me",
        &token,
        &[&format!("W/{etag}")],
        &body,
    )
    .await;
    problem(res, 412, "precondition_failed").await;
    let res = send(
        &app,
        Method::PATCH,
        "/v1/me",
        &token,
        &[r#""1.000000000", "x""#],
        &body,
    )
    .await;
    problem(res, 412, "precondition_failed").await;
    let res = send(
        &app,
        Method::PATCH,
        "/v1/me",
        &token,
        &[&format!("\"x\", {etag}")],
        &body,
    )
    .await;
    assert_eq!(json_of(res, 200).await["name"], "Renamed");
}
crate::both_backends!(profile_patch);
