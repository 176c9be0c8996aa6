//! `Idempotency-Key` on creating POSTs.

use serde_json::json;

use crate::api_analyses::new_analysis;
use crate::api_personas::new_persona;
use crate::app::{TestApp, json_of, problem};

async fn replays_refuses_and_never_duplicates(app: TestApp) {
    let token = app.token("idem");
    let body = new_analysis("processing", "P");
    let send = |key: &str, body: &serde_json::Value| {
        app.client
            .post(app.url("/v1/analyses"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = send("key-1", &body).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();
    let again = send("key-1", &body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.text().await.unwrap(), first_body, "the same body again");
    // Same key, other body: 422.
    problem(
        send("key-1", &new_analysis("processing", "Other")).await.unwrap(),
        422,
        "idempotency_mismatch",
    )
    .await;
    // Bad keys: 400.
    problem(send(&"k".repeat(256), &body).await.unwrap(), 400, "bad_request").await;
    problem(send("", &body).await.unwrap(), 400, "bad_request").await;
    // Concurrent duplicates with a fresh key create exactly once.
    let body2 = new_analysis("processing", "Concurrent");
    let futs = (0..8).map(|_| send("key-2", &body2));
    let mut fresh = 0;
    for r in futures::future::join_all(futs).await {
        let r = r.unwrap();
        match (
            r.status().as_u16(),
            r.headers().get("idempotent-replayed").is_some(),
        ) {
            (201, false) => fresh += 1,
            (201, true) => {}
            (409, _) => {
                problem(r, 409, "conflict").await;
            }
            (s, _) => panic!("unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(fresh, 1);
    let list = json_of(app.get("/v1/analyses?limit=100", &token).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "one per key");
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["usage"]["analyses"], 2, "a replay is not counted again");
    // Keys are per principal: another user with the same key creates their own.
    let other = app.token("idem-2");
    let r = app
        .client
        .post(app.url("/v1/analyses"))
        .bearer_auth(&other)
        .header("idempotency-key", "key-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    // Personas honour it too.
    let p = new_persona("Idem");
    let send_p = || {
        app.client
            .post(app.url("/v1/personas"))
            .bearer_auth(&token)
            .header("idempotency-key", "p-1")
            .json(&p)
            .send()
    };
    let a = json_of(send_p().await.unwrap(), 201).await;
    let b = send_p().await.unwrap();
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(b, 201).await, a);
    assert_eq!(
        json_of(app.get("/v1/personas", &token).await, 200).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
crate::both_backends!(
    replays_refuses_and_never_duplicates,
    replays_refuses_and_never_duplicates
);

async fn a_failed_request_can_be_retried_with_its_key(app: TestApp) {
    let token = app.token("retry");
    let mut b = new_analysis("processing", "P");
    b["input"]["customPersonaId"] = json!("missing");
    let send = |body: &serde_json::Value| {
        app.client
            .post(app.url("/v1/analyses"))
            .bearer_auth(&token)
            .header("idempotency-key", "k")
            .json(body)
            .send()
    };
    problem(send(&b).await.unwrap(), 422, "validation_failed").await;
    problem(send(&b).await.unwrap(), 422, "validation_failed").await;
    let ok = new_analysis("processing", "P");
    // The failed attempt left no claim, so the key is still free for the corrected body.
    json_of(send(&ok).await.unwrap(), 201).await;
}
crate::both_backends!(
    a_failed_request_can_be_retried_with_its_key,
    a_failed_request_can_be_retried_with_its_key
);
