//! Caches are bounded per user whatever a client sends: distinct filter values,
//! limits and `days` add no entries (the defect: a free user grew the service to
//! 7.8 GiB with 4,000 distinct `since` values), and what is cached stays right.

use serde_json::json;

use crate::api_analyses::new_analysis;
use crate::app::{TestApp, json_of};

async fn distinct_filters_add_no_cache_entries(app: TestApp) {
    let token = app.token("sweeper");
    for persona in ["A", "B", "C"] {
        json_of(
            app.post("/v1/analyses", &token, &new_analysis("processing", persona))
                .await,
            201,
        )
        .await;
    }
    let base = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    for i in 0..150 {
        let since = base - jiff::SignedDuration::from_secs(i);
        let page = json_of(
            app.get(&format!("/v1/analyses?limit=100&since={since}"), &token)
                .await,
            200,
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 3);
        let days = 1 + (i % 365) as u32;
        json_of(
            app.get(&format!("/v1/analyses/trends?days={days}"), &token).await,
            200,
        )
        .await;
    }
    for (status, persona) in [("status=processing", "persona=A"), ("status=failed", "persona=B")] {
        json_of(
            app.get(&format!("/v1/analyses?{status}&{persona}"), &token).await,
            200,
        )
        .await;
    }
    for limit in 1..=20 {
        json_of(app.get(&format!("/v1/analyses?limit={limit}"), &token).await, 200).await;
        json_of(
            app.get(&format!("/v1/personas?limit={limit}&sort=mostUsed"), &token)
                .await,
            200,
        )
        .await;
    }
    let [history, trends] = app.state.analyses.cache_usage().await;
    assert!(history.0 <= 1, "history pages cached for one user: {history:?}");
    assert!(trends.0 <= 1, "trend windows cached for one user: {trends:?}");
    let profiles = app.state.users.cache_usage().await;
    assert!(profiles.0 <= 1, "{profiles:?}");

    // The one cached first page follows the limit asked for, and writes.
    let two = json_of(app.get("/v1/analyses?limit=2", &token).await, 200).await;
    assert_eq!(two["items"].as_array().unwrap().len(), 2);
    assert!(two["nextCursor"].is_string());
    let three = json_of(app.get("/v1/analyses?limit=3", &token).await, 200).await;
    assert_eq!(three["items"].as_array().unwrap().len(), 3);
    assert!(three["nextCursor"].is_null());
    let again = json_of(app.get("/v1/analyses?limit=3", &token).await, 200).await;
    assert_eq!(again, three);
    json_of(
        app.post("/v1/analyses", &token, &new_analysis("failed", "D"))
            .await,
        201,
    )
    .await;
    let after = json_of(app.get("/v1/analyses?limit=3", &token).await, 200).await;
    assert_eq!(after["items"][0]["input"]["persona"], "D");
    let t = json_of(app.get("/v1/analyses/trends?days=365", &token).await, 200).await;
    assert_eq!(t["total"], 4);
    let t = json_of(app.get("/v1/analyses/trends?days=2", &token).await, 200).await;
    assert_eq!(t["byStatus"], json!({"failed": 1, "processing": 3}));
}
// Hundreds of requests in a few seconds: above the default rate limit.
crate::both_backends!(env: &[("FUNNELFLOW_RATE_LIMIT", "100000/1s")], distinct_filters_add_no_cache_entries);
