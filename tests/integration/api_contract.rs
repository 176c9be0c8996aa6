//! Contract details the OpenAPI document and API fuzzing rely on: 405 with
//! `Allow`, and no bounds the contract does not state.

use reqwest::Method;
use serde_json::json;

use crate::api_analyses::{new_analysis, results};
use crate::app::{Backend, TestApp, json_of, problem, spawn_app};

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let app = spawn_app(Backend::Embedded).await;
    let token = app.token("allow");
    for (method, path, allow) in [
        (Method::PUT, "/v1/me", "GET, PATCH, DELETE"),
        (Method::TRACE, "/healthz", "GET"),
        (Method::DELETE, "/v1/analyses", "GET, POST"),
        (Method::PUT, "/v1/analyses/abc", "GET, PATCH, DELETE"),
        (Method::GET, "/v1/analyses/abc/share", "POST, DELETE"),
        (Method::GET, "/v1/analyses/batch-get", "POST"),
        (Method::POST, "/v1/shared/analyses/abc", "GET"),
        (Method::OPTIONS, "/v1/personas/templates", "GET"),
    ] {
        for who in [Some(token.as_str()), None] {
            let res = app.request(method.clone(), path, who).send().await.unwrap();
            let got = res.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
            problem(res, 405, "method_not_allowed").await;
        }
    }
}

/// API.md only asks `processingTimeMs` > 0: no upper bound of our own.
async fn processing_time_has_no_invented_bound(app: TestApp) {
    let token = app.token("ptime");
    for ms in [json!(86_400_001), json!(1e12), json!(0.5), json!(f64::MAX)] {
        let mut body = new_analysis("completed", "Founder");
        body["results"]["processingTimeMs"] = ms.clone();
        let a = json_of(app.post("/v1/analyses", &token, &body).await, 201).await;
        assert_eq!(a["results"]["processingTimeMs"].as_f64(), ms.as_f64());
        let created = json_of(
            app.post("/v1/analyses", &token, &new_analysis("processing", "F"))
                .await,
            201,
        )
        .await;
        let mut r = results(false);
        r["processingTimeMs"] = ms.clone();
        let path = format!("/v1/analyses/{}", created["analysisId"].as_str().unwrap());
        let done = json_of(
            app.patch(&path, &token, &json!({"status": "completed", "results": r}))
                .await,
            200,
        )
        .await;
        assert_eq!(done["results"]["processingTimeMs"].as_f64(), ms.as_f64());
    }
    for ms in [json!(0), json!(-1), json!("5")] {
        let mut body = new_analysis("completed", "Founder");
        body["results"]["processingTimeMs"] = ms;
        problem(
            app.post("/v1/analyses", &token, &body).await,
            422,
            "validation_failed",
        )
        .await;
    }
}
crate::both_backends!(processing_time_has_no_invented_bound);
