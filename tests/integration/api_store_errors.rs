//! What reaches the store through HTTP: writes it would refuse never leave the
//! service as 500s, failed writes leave no lock behind, out-of-range timestamps
//! are 400s, and a write's ETag is its commit's update time (no second read).

use std::time::{Duration, Instant};

use funnelflow::http::etag;
use funnelflow::store::DocPath;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_analyses::{new_analysis, results};
use crate::api_personas::new_persona;
use crate::app::{TestApp, json_of, problem};

crate::both_backends!(failing_an_analysis_then_deleting_it);
crate::both_backends!(unstorable_timestamps_are_400);
crate::both_backends!(unstorable_sign_in_times_are_401);
crate::both_backends!(write_etags_are_the_stored_versions);

fn etag_of(res: &reqwest::Response) -> String {
    res.headers()["etag"].to_str().unwrap().to_owned()
}

/// Store `get` calls so far (the metrics count every one).
async fn store_gets(app: &TestApp) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with("funnelflow_store_operation_duration_seconds_count{op=\"get\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `req`'s response, asserting it read no document from the store (the
/// caller's profile is cached first: an analysis write drops it).
async fn without_reads(
    app: &TestApp,
    token: &str,
    req: reqwest::RequestBuilder,
    what: &str,
) -> reqwest::Response {
    json_of(app.get("/v1/me", token).await, 200).await;
    let before = store_gets(app).await;
    let res = req.send().await.unwrap();
    assert_eq!(store_gets(app).await, before, "{what} read a document back");
    res
}

/// The ETag of the stored document at `path`, read straight from the store.
async fn stored_etag(app: &TestApp, path: &str) -> String {
    let doc = app
        .store()
        .get(&DocPath::parse(path).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} is missing"));
    etag::of(doc.update_time)
}

/// `PATCH {"status":"failed"}` wrote `results` as a value of no type: Firestore
/// refused it (500) and the failed commit kept its locks, so the next DELETE
/// waited ~2 s for a 503. Now: 200, and the DELETE goes through at once.
async fn failing_an_analysis_then_deleting_it(app: TestApp) {
    let token = app.token("fails");
    let a = json_of(
        app.post("/v1/analyses", &token, &new_analysis("processing", "Founder"))
            .await,
        201,
    )
    .await;
    let id = a["analysisId"].as_str().unwrap();
    let location = format!("/v1/analyses/{id}");
    let res = app.patch(&location, &token, &json!({"status": "failed"})).await;
    let tag = etag_of(&res);
    let failed = json_of(res, 200).await;
    assert_eq!(failed["metadata"]["status"], "failed");
    assert_eq!(failed["results"], Value::Null);
    assert_eq!(
        tag,
        stored_etag(&app, &format!("users/fails/analyses/{id}")).await
    );
    let res = app.get(&location, &token).await;
    assert_eq!(etag_of(&res), tag);
    assert_eq!(json_of(res, 200).await, failed);

    let started = Instant::now();
    let res = app.delete(&location, &token).await;
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap_or_default());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_500), "DELETE took {took:?}");
    problem(app.get(&location, &token).await, 404, "not_found").await;
}

/// Firestore stores years 0001 to 9999 only: anything else in a filter is the
/// client's mistake (400), not the store's (it answered 500 on Firestore).
async fn unstorable_timestamps_are_400(app: TestApp) {
    let token = app.token("times");
    json_of(
        app.post("/v1/analyses", &token, &new_analysis("processing", "P"))
            .await,
        201,
    )
    .await;
    for query in [
        "since=0000-01-01T00:00:00Z",
        "until=0000-12-31T23:59:59Z",
        "since=-000001-01-01T00:00:00Z",
        "until=%2B010000-01-01T00:00:00Z",
        "since=2024-01-01T00:00:00Z&until=0000-06-01T00:00:00Z",
    ] {
        let p = problem(
            app.get(&format!("/v1/analyses?{query}"), &token).await,
            400,
            "bad_request",
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains("0001-01-01"),
            "{query}: {p}"
        );
    }
    // The extremes Firestore does store.
    let page = json_of(
        app.get(
            "/v1/analyses?since=0001-01-01T00:00:00Z&until=9999-12-30T22:00:00Z",
            &token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

/// A token's `auth_time` becomes the profile's `lastLoginAt`: one the store
/// cannot hold (year 0) answered 500; no Firebase sign-in predates 1970.
async fn unstorable_sign_in_times_are_401(app: TestApp) {
    for auth_time in [-62_135_596_801_i64, -1] {
        let token = app.token_with("ancient", |c| c["auth_time"] = json!(auth_time));
        problem(app.get("/v1/me", &token).await, 401, "unauthenticated").await;
    }
    let token = app.token("ancient");
    json_of(app.get("/v1/me", &token).await, 200).await;
    let older = app.token_with("ancient", |c| c["auth_time"] = json!(0));
    json_of(app.get("/v1/me", &older).await, 200).await;
}

/// Every write answers with the ETag of what it stored, taken from the commit.
async fn write_etags_are_the_stored_versions(app: TestApp) {
    let token = app.token("tags");
    // Provisioning on first use, then a newer sign-in moving lastLoginAt.
    let res = app.get("/v1/me", &token).await;
    assert_eq!(etag_of(&res), stored_etag(&app, "users/tags").await);
    assert!(store_gets(&app).await > 0, "store reads are counted");
    let newer = app.token_with("tags", |c| {
        c["auth_time"] = json!(jiff::Timestamp::now().as_second());
    });
    let res = app.get("/v1/me", &newer).await;
    let tag = etag_of(&res);
    let me = json_of(res, 200).await;
    assert_eq!(tag, stored_etag(&app, "users/tags").await);
    let again = app.get("/v1/me", &newer).await;
    assert_eq!(etag_of(&again), tag);
    assert_eq!(json_of(again, 200).await, me);

    // Analyses: create, complete; no write reads its document again.
    let post = app
        .request(Method::POST, "/v1/analyses", Some(&token))
        .json(&new_analysis("processing", "P"));
    let res = without_reads(&app, &token, post, "POST /v1/analyses").await;
    let tag = etag_of(&res);
    let a = json_of(res, 201).await;
    let id = a["analysisId"].as_str().unwrap();
    let doc = format!("users/tags/analyses/{id}");
    assert_eq!(tag, stored_etag(&app, &doc).await);
    let patch = app
        .request(Method::PATCH, &format!("/v1/analyses/{id}"), Some(&token))
        .header("if-match", &tag)
        .json(&json!({"status": "completed", "results": results(true)}));
    let res = without_reads(&app, &token, patch, "PATCH /v1/analyses").await;
    let tag = etag_of(&res);
    let done = json_of(res, 200).await;
    assert_eq!(tag, stored_etag(&app, &doc).await);
    assert_eq!(
        json_of(app.get(&format!("/v1/analyses/{id}"), &token).await, 200).await,
        done
    );

    // Personas: create, patch (the answer is what a read returns).
    let post = app
        .request(Method::POST, "/v1/personas", Some(&token))
        .json(&new_persona("Buyer"));
    let res = without_reads(&app, &token, post, "POST /v1/personas").await;
    let tag = etag_of(&res);
    let p = json_of(res, 201).await;
    let pid = p["personaId"].as_str().unwrap();
    let doc = format!("users/tags/personas/{pid}");
    assert_eq!(tag, stored_etag(&app, &doc).await);
    let patch = json!({
        "name": "Renamed",
        "characteristics": {"demographics": {"ageRange": "30-50", "occupation": "CTO", "income": "high"}},
        "isDefault": true,
    });
    let req = app
        .request(Method::PATCH, &format!("/v1/personas/{pid}"), Some(&token))
        .header("if-match", &tag)
        .json(&patch);
    let res = without_reads(&app, &token, req, "PATCH /v1/personas").await;
    let tag = etag_of(&res);
    let patched = json_of(res, 200).await;
    assert_eq!(tag, stored_etag(&app, &doc).await);
    let res = app.get(&format!("/v1/personas/{pid}"), &token).await;
    assert_eq!(etag_of(&res), tag);
    assert_eq!(json_of(res, 200).await, patched);
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["characteristics"]["demographics"]["occupation"], "CTO");
    assert_eq!(patched["characteristics"]["behavior"]["decisionMaking"], "fast");
}
