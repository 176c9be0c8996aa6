//! Usage analytics: `POST /v1/events` (validation of the whole batch, one
//! commit, anonymized addresses, opt-out, idempotency) and the admin listing
//! (filters, newest first, cursors bound to the filters, admins only).

use funnelflow::store::{Doc, Query, value};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_access::make_admin;
use crate::api_keys::key_with;
use crate::app::{Backend, TestApp, json_of, problem, spawn_app_with};

fn ev(t: &str) -> Value {
    json!({"eventType": t, "eventData": {"page": "/home", "n": 1, "nested": {"ok": true}}})
}

pub async fn stored_events(app: &TestApp) -> Vec<Doc> {
    app.store()
        .query(&Query::collection(None, "analytics"))
        .await
        .unwrap()
}

fn fields_of(e: &Value) -> Vec<String> {
    e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn events_are_stored_with_an_anonymized_address(app: TestApp) {
    let token = app.token("clicker");
    let res = app
        .request(Method::POST, "/v1/events", Some(&token))
        .header("user-agent", "TestBrowser/1.0")
        // Not trusted (FUNNELFLOW_TRUST_PROXY is off): the peer address counts.
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({"events": [ev("page.view"), {"eventType": "click", "eventData": {}, "sessionId": "s-1"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 202).await, json!({"accepted": 2}));
    let docs = stored_events(&app).await;
    assert_eq!(docs.len(), 2);
    for d in &docs {
        assert_eq!(value::as_str(d.field("userId").unwrap()), Some("clicker"));
        assert_eq!(value::as_str(d.field("ip").unwrap()), Some("127.0.0.0"));
        assert_eq!(
            value::as_str(d.field("userAgent").unwrap()),
            Some("TestBrowser/1.0")
        );
        // A Firestore timestamp (what `purge` compares), the commit's time.
        let ts = value::as_timestamp(d.field("timestamp").unwrap()).unwrap();
        assert!((value::now() - ts).get_seconds().abs() < 60);
        let all = format!("{:?}", d.fields);
        assert!(!all.contains("127.0.0.1") && !all.contains("198.51.100"), "{all}");
    }
    let click = docs
        .iter()
        .find(|d| value::as_str(d.field("eventType").unwrap()) == Some("click"))
        .unwrap();
    assert_eq!(value::as_str(click.field("sessionId").unwrap()), Some("s-1"));
    let view = docs.iter().find(|d| d.id() != click.id()).unwrap();
    assert_eq!(
        value::as_str(view.field("eventData.page").unwrap()),
        Some("/home")
    );
    assert!(view.field("sessionId").is_none());
}
crate::both_backends!(events_are_stored_with_an_anonymized_address);

async fn forwarded_addresses_only_behind_a_trusted_proxy(backend: Backend) {
    let app = spawn_app_with(backend, &[("FUNNELFLOW_TRUST_PROXY", "true")]).await;
    let token = app.token("proxied");
    for (xff, want) in [
        ("2001:db8:abcd:12:1:2:3:4, 10.0.0.1", "2001:db8:abcd::"),
        ("203.0.113.200", "203.0.113.0"),
    ] {
        let res = app
            .request(Method::POST, "/v1/events", Some(&token))
            .header("x-forwarded-for", xff)
            .json(&json!({"events": [ev("page.view")]}))
            .send()
            .await
            .unwrap();
        json_of(res, 202).await;
        let docs = stored_events(&app).await;
        assert!(
            docs.iter()
                .any(|d| value::as_str(d.field("ip").unwrap()) == Some(want)),
            "{xff}"
        );
    }
    let all = format!("{:?}", stored_events(&app).await);
    assert!(
        !all.contains("203.0.113.200") && !all.contains("12:1:2:3:4"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_embedded() {
    forwarded_addresses_only_behind_a_trusted_proxy(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_firestore() {
    forwarded_addresses_only_behind_a_trusted_proxy(Backend::Firestore).await;
}

async fn one_bad_event_rejects_the_batch(app: TestApp) {
    let token = app.token("sloppy");
    let big = "x".repeat(8 * 1024);
    let many: Vec<Value> = (0..101).map(|_| ev("a")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"events": [ev("ok"), {"eventType": "Bad", "eventData": {}}]}),
            "events[1].eventType",
        ),
        (
            json!({"events": [{"eventType": "9x", "eventData": {}}]}),
            "events[0].eventType",
        ),
        (
            json!({"events": [{"eventType": "a".repeat(65), "eventData": {}}]}),
            "events[0].eventType",
        ),
        (
            json!({"events": [ev("ok"), ev("ok"), {"eventType": "ok", "eventData": {"b": big}}]}),
            "events[2].eventData",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": [1]}]}),
            "events[0].eventData",
        ),
        (json!({"events": [{"eventType": "ok"}]}), "events[0].eventData"),
        (
            json!({"events": [{"eventType": "ok", "eventData": null}]}),
            "events[0].eventData",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": "text"}]}),
            "events[0].eventData",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": {}, "sessionId": ""}]}),
            "events[0].sessionId",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": {}, "sessionId": null}]}),
            "events[0].sessionId",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": {}, "extra": 1}]}),
            "events[0].extra",
        ),
        (
            json!({"events": [{"eventType": "ok", "eventData": {"__x__": 1}}]}),
            "events[0].eventData",
        ),
        (json!({"events": []}), "events"),
        (json!({"events": many}), "events"),
        (json!({}), "events"),
    ];
    for (body, field) in cases {
        let e = problem(
            app.post("/v1/events", &token, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert!(fields_of(&e).iter().any(|f| f == field), "{field}: {e}");
    }
    // The largest eventData allowed: 8 KiB serialized.
    let pad = "y".repeat(8 * 1024 - r#"{"b":""}"#.len());
    let fits = json!({"events": [{"eventType": "ok", "eventData": {"b": pad}}]});
    assert_eq!(
        json_of(app.post("/v1/events", &token, &fits).await, 202).await,
        json!({"accepted": 1})
    );
    let hundred: Vec<Value> = (0..100).map(|_| ev("bulk")).collect();
    assert_eq!(
        json_of(
            app.post("/v1/events", &token, &json!({"events": hundred})).await,
            202
        )
        .await,
        json!({"accepted": 100})
    );
    assert_eq!(stored_events(&app).await.len(), 101);
}
crate::both_backends!(one_bad_event_rejects_the_batch);

async fn opted_out_users_store_nothing(app: TestApp) {
    let token = app.token("private");
    json_of(
        app.patch(
            "/v1/me",
            &token,
            &json!({"preferences": {"analyticsOptOut": true}}),
        )
        .await,
        200,
    )
    .await;
    let r = app
        .post("/v1/events", &token, &json!({"events": [ev("a"), ev("b")]}))
        .await;
    assert_eq!(json_of(r, 202).await, json!({"accepted": 0}));
    assert!(stored_events(&app).await.is_empty());
}
crate::both_backends!(opted_out_users_store_nothing);

async fn a_repeated_idempotency_key_stores_once(app: TestApp) {
    let token = app.token("retrier");
    let body = json!({"events": [ev("a"), ev("b"), ev("c")]});
    let send = || {
        app.request(Method::POST, "/v1/events", Some(&token))
            .header("idempotency-key", "batch-1")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(json_of(first, 202).await, json!({"accepted": 3}));
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 202).await, json!({"accepted": 3}));
    assert_eq!(stored_events(&app).await.len(), 3);
    let other = app
        .request(Method::POST, "/v1/events", Some(&token))
        .header("idempotency-key", "batch-1")
        .json(&json!({"events": [ev("z")]}))
        .send()
        .await
        .unwrap();
    problem(other, 422, "idempotency_mismatch").await;
    assert_eq!(stored_events(&app).await.len(), 3);
}
crate::both_backends!(a_repeated_idempotency_key_stores_once);

async fn only_admins_list_and_only_events_write_keys_post(app: TestApp) {
    let token = app.token("nosy");
    problem(app.get("/v1/admin/analytics", &token).await, 403, "forbidden").await;
    let reader = key_with(&app, &token, &["analyses:read", "export:read"]).await;
    let r = app
        .request(Method::POST, "/v1/events", Some(&reader))
        .json(&json!({"events": [ev("a")]}))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    assert!(stored_events(&app).await.is_empty());
    let writer = key_with(&app, &token, &["events:write"]).await;
    let r = app
        .request(Method::POST, "/v1/events", Some(&writer))
        .json(&json!({"events": [ev("a")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r, 202).await, json!({"accepted": 1}));
    problem(app.get("/v1/admin/analytics", &writer).await, 403, "forbidden").await;
    // An admin's API key is no admin either.
    make_admin(&app, "nosy").await;
    json_of(app.get("/v1/admin/analytics", &token).await, 200).await;
    problem(app.get("/v1/admin/analytics", &writer).await, 403, "forbidden").await;
}
crate::both_backends!(only_admins_list_and_only_events_write_keys_post);

async fn walk(app: &TestApp, token: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/analytics?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = json_of(app.get(&path, token).await, 200).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn admins_list_with_filters_newest_first(app: TestApp) {
    let (admin, a, b) = (app.token("boss"), app.token("ua"), app.token("ub"));
    json_of(app.get("/v1/me", &admin).await, 200).await;
    make_admin(&app, "boss").await;
    for (t, types) in [
        (&a, ["x.one", "x.two", "x.one"]),
        (&b, ["x.one", "x.two", "x.two"]),
    ] {
        for ty in types {
            json_of(app.post("/v1/events", t, &json!({"events": [ev(ty)]})).await, 202).await;
        }
    }
    let all = walk(&app, &admin, "", 2).await;
    assert_eq!(all.len(), 6);
    let times: Vec<String> = all
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap().to_owned())
        .collect();
    let parsed: Vec<jiff::Timestamp> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(all[0]["userId"], "ub");
    assert_eq!(all[0]["eventType"], "x.two");
    assert_eq!(all[0]["eventData"]["nested"]["ok"], true);
    assert_eq!(walk(&app, &admin, "&userId=ua", 1).await.len(), 3);
    assert_eq!(walk(&app, &admin, "&eventType=x.two", 2).await.len(), 3);
    let both = walk(&app, &admin, "&eventType=x.one&userId=ua", 5).await;
    assert_eq!(both.len(), 2);
    assert!(
        both.iter()
            .all(|e| e["userId"] == "ua" && e["eventType"] == "x.one")
    );
    // since inclusive, until exclusive.
    let (newest, oldest) = (&times[0], &times[5]);
    let q = |s: &str| s.replace('+', "%2B");
    assert_eq!(
        walk(&app, &admin, &format!("&since={}", q(newest)), 3)
            .await
            .len(),
        1
    );
    assert_eq!(
        walk(&app, &admin, &format!("&until={}", q(newest)), 3)
            .await
            .len(),
        5
    );
    assert_eq!(
        walk(
            &app,
            &admin,
            &format!("&since={}&until={}&userId=ub", q(oldest), q(newest)),
            3
        )
        .await
        .len(),
        2
    );
    // A cursor is bound to its filters.
    let page = json_of(
        app.get("/v1/admin/analytics?limit=1&userId=ua", &admin).await,
        200,
    )
    .await;
    let c = page["nextCursor"].as_str().unwrap();
    problem(
        app.get(
            &format!("/v1/admin/analytics?limit=1&userId=ub&cursor={c}"),
            &admin,
        )
        .await,
        400,
        "invalid_cursor",
    )
    .await;
    problem(
        app.get("/v1/admin/analytics?since=yesterday", &admin).await,
        400,
        "bad_request",
    )
    .await;
}
crate::both_backends!(admins_list_with_filters_newest_first);
