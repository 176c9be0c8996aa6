//! `Idempotency-Key` on creating POSTs.

use funnelflow::domain::idempotency::{self, Claim, Lease, Recorder, StoredResponse};
use funnelflow::domain::personas::{NewPersona, Persona};
use funnelflow::error::AppError;
use funnelflow::store::{self, DocPath, Write};
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

/// The claim `key` of `uid` for `POST /v1/personas` with `body`, as the handler computes it.
fn persona_key(uid: &str, key: &str, body: &serde_json::Value) -> (DocPath, String) {
    let new: NewPersona = serde_json::from_value(body.clone()).unwrap();
    let hash = idempotency::request_hash(&serde_json::to_value(&new).unwrap());
    let path = idempotency::record_path(uid, uid, PERSONAS, key).unwrap();
    (path, hash)
}

const PERSONAS: &str = "POST /v1/personas";

async fn fresh(app: &TestApp, path: &DocPath, hash: &str) -> Lease {
    match idempotency::claim(app.store().as_ref(), path.clone(), PERSONAS, hash)
        .await
        .unwrap()
    {
        Claim::Fresh(lease) => lease,
        Claim::Replay(r) => panic!("expected a fresh claim, got a replay of {r:?}"),
    }
}

/// Lets the claim at `path` run out its lease, as if its owner had died.
async fn expire_lease(app: &TestApp, path: &DocPath) {
    let mut fields = store::Fields::new();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    fields.insert("leaseUntil".into(), store::value::timestamp(past));
    app.store()
        .commit(vec![Write::update(
            path.clone(),
            fields,
            vec!["leaseUntil".into()],
        )])
        .await
        .unwrap();
}

fn stored(body: &str) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: body.into(),
        location: None,
        etag: None,
        version: None,
    }
}

fn persona_response(p: &Persona) -> funnelflow::error::AppResult<StoredResponse> {
    Ok(StoredResponse {
        status: 201,
        body: serde_json::to_string(p).unwrap(),
        location: Some(format!("/v1/personas/{}", p.persona_id)),
        etag: None,
        version: None,
    })
}

/// A request whose claim expired and was taken over can neither record its
/// response, nor release the new claim, nor create under it.
async fn a_stale_owner_cannot_overwrite_a_takeover(app: TestApp) {
    let uid = "stale";
    let token = app.token(uid);
    json_of(app.get("/v1/me", &token).await, 200).await;
    let body = new_persona("Taken over");
    let (path, hash) = persona_key(uid, "k-stale", &body);
    let first = fresh(&app, &path, &hash).await;
    expire_lease(&app, &path).await;
    let second = fresh(&app, &path, &hash).await;
    let record = || async { app.store().get(&path).await.unwrap().expect("the claim") };
    let taken = record().await;

    // The first owner's finish is refused and changes nothing.
    let e = idempotency::finish(app.store().as_ref(), &first, &stored("{\"stale\":true}"))
        .await
        .unwrap_err();
    assert!(matches!(e, AppError::Conflict(_)), "{e:?}");
    // Its release leaves the new claim in place.
    idempotency::release(app.store().as_ref(), &first).await;
    assert_eq!(record().await, taken, "the new owner's claim is untouched");
    // Its create, recording under the lost claim, is refused as a whole.
    let new: NewPersona = serde_json::from_value(body.clone()).unwrap();
    let e = app
        .state
        .personas
        .create(uid, new.clone(), Some(Recorder::new(first, persona_response)))
        .await
        .unwrap_err();
    assert!(matches!(e, AppError::Conflict(_)), "{e:?}");
    assert_eq!(
        json_of(app.get("/v1/personas", &token).await, 200).await["items"],
        json!([]),
        "a refused create stores nothing"
    );
    assert_eq!(record().await, taken);
    // Meanwhile a retry of the request sees the new claim in flight.
    let retry = app
        .client
        .post(app.url("/v1/personas"))
        .bearer_auth(&token)
        .header("idempotency-key", "k-stale")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(retry, 409, "conflict").await;

    // The new owner creates, and its response lands in the create's own commit.
    let v = app
        .state
        .personas
        .create(uid, new, Some(Recorder::new(second.clone(), persona_response)))
        .await
        .unwrap();
    let rec = record().await;
    assert!(rec.field("response").is_some(), "{rec:?}");
    assert_eq!(rec.update_time, v.version, "recorded in the persona's own commit");
    // The new owner's finish and release after its create change nothing either.
    assert!(
        idempotency::finish(app.store().as_ref(), &second, &stored("{}"))
            .await
            .is_err()
    );
    idempotency::release(app.store().as_ref(), &second).await;
    assert_eq!(record().await, rec);
    // A retry replays exactly what the create recorded, with the persona's ETag.
    let replay = app
        .client
        .post(app.url("/v1/personas"))
        .bearer_auth(&token)
        .header("idempotency-key", "k-stale")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let location = format!("/v1/personas/{}", v.item.persona_id);
    assert_eq!(replay.headers()["location"], location.as_str());
    let replay_etag = replay.headers()["etag"].clone();
    let replayed = json_of(replay, 201).await;
    let current = app.get(&location, &token).await;
    assert_eq!(current.headers()["etag"], replay_etag);
    assert_eq!(json_of(current, 200).await, replayed);
}
crate::both_backends!(
    a_stale_owner_cannot_overwrite_a_takeover,
    a_stale_owner_cannot_overwrite_a_takeover
);

/// Through HTTP: the first response and its replays carry the same body and ETag,
/// which is the created resource's ETag (the record is written in its commit).
async fn replays_carry_the_created_etag(app: TestApp) {
    let token = app.token("etags");
    for (path, body) in [
        ("/v1/personas", new_persona("Etag")),
        ("/v1/analyses", new_analysis("processing", "Etag")),
    ] {
        let send = || {
            app.client
                .post(app.url(path))
                .bearer_auth(&token)
                .header("idempotency-key", "same")
                .json(&body)
                .send()
        };
        let first = send().await.unwrap();
        let etag = first.headers()["etag"].clone();
        let location = first.headers()["location"].to_str().unwrap().to_owned();
        let first = json_of(first, 201).await;
        let current = app.get(&location, &token).await;
        assert_eq!(current.headers()["etag"], etag, "{path}");
        assert_eq!(json_of(current, 200).await, first);
        for _ in 0..2 {
            let again = send().await.unwrap();
            assert_eq!(again.headers()["idempotent-replayed"], "true");
            assert_eq!(again.headers()["etag"], etag, "{path}");
            assert_eq!(json_of(again, 201).await, first);
        }
    }
}
crate::both_backends!(replays_carry_the_created_etag, replays_carry_the_created_etag);
