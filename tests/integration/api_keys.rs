//! API keys through real HTTP: format and checksum (refused without a store
//! read), keyed hashes only, revocation, expiry, the 25-key cap under
//! concurrency, `lastUsedAt` throttling, per-key rate limits, isolation.

use std::time::Duration;

use funnelflow::domain::api_keys::Permission;
use funnelflow::store::{DocPath, all_descendants};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::{Backend, TestApp, json_of, problem, spawn_app_with};

pub fn all_permissions() -> Vec<&'static str> {
    Permission::ALL.iter().map(|p| p.as_str()).collect()
}

/// Creates a key for `token`'s user; returns the response body (with `key`).
pub async fn create_key(app: &TestApp, token: &str, permissions: &[&str]) -> Value {
    json_of(
        app.post(
            "/v1/api-keys",
            token,
            &json!({"name": "test key", "permissions": permissions}),
        )
        .await,
        201,
    )
    .await
}

/// The key string of a new key with `permissions`.
pub async fn key_with(app: &TestApp, token: &str, permissions: &[&str]) -> String {
    create_key(app, token, permissions).await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn with_x_api_key(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.request(method, path, None).header("x-api-key", key)
}

/// Store operations so far, from `/metrics`, less the invalidation feed's reads
/// (it runs beside the requests).
pub async fn store_ops(app: &TestApp) -> f64 {
    let text = app.metrics_text().await;
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    sum("funnelflow_store_operation_duration_seconds_count")
        - sum("funnelflow_feed_events_total{event=\"read\"}")
}

fn checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = vec![b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}

fn stored_key_path(app: &TestApp, uid: &str, key_id: &str) -> DocPath {
    let _ = app;
    DocPath::root("users", uid)
        .unwrap()
        .child("apiKeys", key_id)
        .unwrap()
}

async fn lifecycle_format_and_storage(app: TestApp) {
    let token = app.token("kal");
    let created = create_key(&app, &token, &["profile:read", "analyses:read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    // ffk_<keyId>_<secret><checksum>, alphanumeric parts, CRC-32 base62 checksum.
    let (body, sum) = key.split_at(key.len() - 6);
    assert_eq!(checksum(body), sum, "{key}");
    let rest = body.strip_prefix("ffk_").unwrap();
    let (id, secret) = rest.split_once('_').unwrap();
    assert_eq!(id, key_id);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(secret.len() >= 22, "≥ 128 random bits of base62");
    assert_eq!(created["prefix"], format!("ffk_{key_id}"));
    assert_eq!(created["isActive"], true);
    assert_eq!(created["permissions"], json!(["profile:read", "analyses:read"]));
    assert!(created["lastUsedAt"].is_null() && created["expiresAt"].is_null());

    // Both headers authenticate; the key acts for its owner.
    let me = json_of(app.get("/v1/me", &key).await, 200).await;
    assert_eq!(me["userId"], "kal");
    let res = with_x_api_key(&app, Method::GET, "/v1/me", &key)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("ratelimit"));
    assert_eq!(json_of(res, 200).await["userId"], "kal");

    // Listed without the secret or its hash.
    let list = json_of(app.get("/v1/api-keys", &token).await, 200).await;
    let item = &list["items"][0];
    let mut fields: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "createdAt",
            "expiresAt",
            "isActive",
            "keyId",
            "lastUsedAt",
            "name",
            "permissions",
            "prefix"
        ]
    );
    assert!(!list.to_string().contains(secret));

    // Stored: a keyed hash only — not the secret, not an unkeyed hash of it.
    let doc = app
        .store()
        .get(&stored_key_path(&app, "kal", &key_id))
        .await
        .unwrap()
        .unwrap();
    let stored = serde_json::to_string(&funnelflow::store::value::fields_to_json(&doc.fields)).unwrap();
    for leaked in [
        secret.to_owned(),
        key.clone(),
        hex(&Sha256::digest(secret.as_bytes())),
        hex(&Sha256::digest(key.as_bytes())),
    ] {
        assert!(!stored.contains(&leaked), "stored document leaks {leaked}");
    }
    let everything = all_descendants(app.store().as_ref(), &DocPath::root("users", "kal").unwrap())
        .await
        .unwrap();
    for path in everything {
        let d = app.store().get(&path).await.unwrap().unwrap();
        let text = serde_json::to_string(&funnelflow::store::value::fields_to_json(&d.fields)).unwrap();
        assert!(!text.contains(secret), "{path} holds the secret");
    }

    // Revoked: refused on the very next request, still listed as inactive.
    let res = app.delete(&format!("/v1/api-keys/{key_id}"), &token).await;
    assert_eq!(res.status(), 204);
    problem(app.get("/v1/me", &key).await, 401, "unauthenticated").await;
    let res = with_x_api_key(&app, Method::GET, "/v1/me", &key)
        .send()
        .await
        .unwrap();
    problem(res, 401, "unauthenticated").await;
    let list = json_of(app.get("/v1/api-keys", &token).await, 200).await;
    assert_eq!(list["items"][0]["keyId"], key_id.as_str());
    assert_eq!(list["items"][0]["isActive"], false);
    let one = json_of(app.get(&format!("/v1/api-keys/{key_id}"), &token).await, 200).await;
    assert_eq!(one["isActive"], false);
    // Revoking again is harmless.
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{key_id}"), &token)
            .await
            .status(),
        204
    );
}
crate::both_backends!(lifecycle_format_and_storage);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn bad_keys_cost_no_store_read(app: TestApp) {
    let token = app.token("kbad");
    let created = create_key(&app, &token, &["profile:read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    json_of(app.get("/v1/me", &key).await, 200).await;
    // Let the use's background `lastUsedAt` write finish before counting.
    wait_for_last_used(
        &app,
        &stored_key_path(&app, "kbad", created["keyId"].as_str().unwrap()),
    )
    .await;
    // A typo anywhere, a made-up key, a truncated one: 401 without touching the store.
    let mut typo = key.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let made_up = "ffk_abcdef_0123456789abcdef0123456789ZZZZZZ";
    let before = store_ops(&app).await;
    for bad in [typo.as_str(), made_up, &key[..key.len() - 1], "ffk_", "ffk_a_b"] {
        problem(app.get("/v1/me", bad).await, 401, "unauthenticated").await;
        let res = with_x_api_key(&app, Method::GET, "/v1/me", bad)
            .send()
            .await
            .unwrap();
        problem(res, 401, "unauthenticated").await;
    }
    assert_eq!(
        store_ops(&app).await,
        before,
        "a bad checksum must not reach the store"
    );
    // A well-formed key nobody issued is looked up, and refused.
    let body = "ffk_nosuchkey_0123456789abcdefghij0123456789";
    let forged = format!("{body}{}", checksum(body));
    problem(app.get("/v1/me", &forged).await, 401, "unauthenticated").await;
    // The right id with a wrong secret (valid checksum): refused.
    let (id_part, _) = key.rsplit_once('_').unwrap();
    let body = format!("{id_part}_WrongSecretWrongSecretWrongSecret12");
    let wrong = format!("{body}{}", checksum(&body));
    problem(app.get("/v1/me", &wrong).await, 401, "unauthenticated").await;
}
crate::both_backends!(bad_keys_cost_no_store_read);

async fn creation_is_validated_and_idempotent(app: TestApp) {
    let token = app.token("kval");
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    for (body, field) in [
        (
            json!({"name": "k", "permissions": ["profile:read"], "expiresAt": past}),
            "expiresAt",
        ),
        (
            json!({"name": "k", "permissions": ["profile:read"], "expiresAt": "tomorrow"}),
            "expiresAt",
        ),
        (json!({"name": "k", "permissions": []}), "permissions"),
        (
            json!({"name": "k", "permissions": ["admin:all"]}),
            "permissions[0]",
        ),
        (json!({"name": "", "permissions": ["profile:read"]}), "name"),
        (
            json!({"name": "k", "permissions": ["profile:read"], "secret": "x"}),
            "secret",
        ),
        (json!({"permissions": ["profile:read"]}), "name"),
    ] {
        let p = problem(
            app.post("/v1/api-keys", &token, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    // The same Idempotency-Key replays the key without its secret.
    let body = json!({"name": "ci", "permissions": ["analyses:read"]});
    let send = || {
        app.request(Method::POST, "/v1/api-keys", Some(&token))
            .header("idempotency-key", "key-create-1")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first = json_of(first, 201).await;
    assert!(first["key"].is_string());
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    let again = json_of(again, 201).await;
    assert_eq!(again["keyId"], first["keyId"]);
    assert!(again.get("key").is_none(), "{again}");
    let list = json_of(app.get("/v1/api-keys", &token).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // The idempotency record holds no secret either.
    let secret = first["key"].as_str().unwrap();
    for path in all_descendants(app.store().as_ref(), &DocPath::root("users", "kval").unwrap())
        .await
        .unwrap()
    {
        let d = app.store().get(&path).await.unwrap().unwrap();
        let text = serde_json::to_string(&funnelflow::store::value::fields_to_json(&d.fields)).unwrap();
        assert!(
            !text.contains(&secret[secret.len() - 20..]),
            "{path} holds the secret"
        );
    }
}
crate::both_backends!(creation_is_validated_and_idempotent);

async fn expired_keys_are_refused(app: TestApp) {
    let token = app.token("kexp");
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500)).to_string();
    let created = json_of(
        app.post(
            "/v1/api-keys",
            &token,
            &json!({"name": "short", "permissions": ["profile:read"], "expiresAt": soon}),
        )
        .await,
        201,
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert!(created["expiresAt"].is_string());
    json_of(app.get("/v1/me", key).await, 200).await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    problem(app.get("/v1/me", key).await, 401, "unauthenticated").await;
    let list = json_of(app.get("/v1/api-keys", &token).await, 200).await;
    assert_eq!(list["items"][0]["isActive"], false);
}
crate::both_backends!(expired_keys_are_refused);

async fn at_most_25_active_keys_under_concurrency(app: TestApp) {
    let token = app.token("kcap");
    let body = json!({"name": "k", "permissions": ["profile:read"]});
    let requests: Vec<_> = (0..30).map(|_| app.post("/v1/api-keys", &token, &body)).collect();
    let results = futures::future::join_all(requests).await;
    let mut created = Vec::new();
    let mut refused = 0;
    for r in results {
        match r.status().as_u16() {
            201 => created.push(r.json::<Value>().await.unwrap()),
            422 => {
                let p = r.json::<Value>().await.unwrap();
                assert_eq!(p["errors"][0]["code"], "limit", "{p}");
                refused += 1;
            }
            s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!((created.len(), refused), (25, 5));
    problem(
        app.post("/v1/api-keys", &token, &body).await,
        422,
        "validation_failed",
    )
    .await;
    // Pages walk all 25 exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/api-keys?limit=7&cursor={c}"),
            None => "/v1/api-keys?limit=7".into(),
        };
        let page = json_of(app.get(&path, &token).await, 200).await;
        for i in page["items"].as_array().unwrap() {
            assert!(seen.insert(i["keyId"].as_str().unwrap().to_owned()));
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let bad = app.get("/v1/api-keys?cursor=forged.cursor", &token).await;
    problem(bad, 400, "invalid_cursor").await;
    // A revoked key frees its place.
    let id = created[0]["keyId"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{id}"), &token).await.status(),
        204
    );
    json_of(app.post("/v1/api-keys", &token, &body).await, 201).await;
    problem(
        app.post("/v1/api-keys", &token, &body).await,
        422,
        "validation_failed",
    )
    .await;
}
crate::both_backends!(at_most_25_active_keys_under_concurrency);

async fn last_used_is_throttled(app: TestApp) {
    let token = app.token("kused");
    let created = create_key(&app, &token, &["profile:read"]).await;
    let key = created["key"].as_str().unwrap();
    let path = stored_key_path(&app, "kused", created["keyId"].as_str().unwrap());
    json_of(app.get("/v1/me", key).await, 200).await;
    // Written off the request's path: wait for it.
    let first = wait_for_last_used(&app, &path).await;
    let listed = json_of(app.get("/v1/api-keys", &token).await, 200).await;
    assert!(listed["items"][0]["lastUsedAt"].is_string());
    for _ in 0..10 {
        json_of(app.get("/v1/me", key).await, 200).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = app.store().get(&path).await.unwrap().unwrap();
    assert_eq!(
        d.update_time, first,
        "lastUsedAt is written at most once a minute"
    );
}
crate::both_backends!(last_used_is_throttled);

/// Waits for the key's `lastUsedAt` to be written; its update time then.
async fn wait_for_last_used(app: &TestApp, path: &DocPath) -> funnelflow::store::Timestamp {
    for _ in 0..100 {
        let d = app.store().get(path).await.unwrap().unwrap();
        if d.field("lastUsedAt")
            .and_then(funnelflow::store::value::as_timestamp)
            .is_some()
        {
            // The write's transaction has committed; give its release a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return d.update_time;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("lastUsedAt was never written");
}

async fn keys_are_per_user(app: TestApp) {
    let (alice, bob) = (app.token("kalice"), app.token("kbob"));
    let a = create_key(&app, &alice, &["profile:read"]).await;
    let a_id = a["keyId"].as_str().unwrap();
    create_key(&app, &bob, &["profile:read"]).await;
    // Bob neither sees nor revokes Alice's key.
    problem(
        app.delete(&format!("/v1/api-keys/{a_id}"), &bob).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get(&format!("/v1/api-keys/{a_id}"), &bob).await,
        404,
        "not_found",
    )
    .await;
    let bobs = json_of(app.get("/v1/api-keys", &bob).await, 200).await;
    assert!(!bobs.to_string().contains(a_id));
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1);
    json_of(app.get("/v1/me", a["key"].as_str().unwrap()).await, 200).await;
    // Alice's cursor is no good to Bob.
    for _ in 0..2 {
        create_key(&app, &alice, &["profile:read"]).await;
    }
    let page = json_of(app.get("/v1/api-keys?limit=1", &alice).await, 200).await;
    let c = page["nextCursor"].as_str().unwrap();
    problem(
        app.get(&format!("/v1/api-keys?cursor={c}"), &bob).await,
        400,
        "invalid_cursor",
    )
    .await;
}
crate::both_backends!(keys_are_per_user);

async fn rate_limits_are_per_key(backend: Backend) {
    let app = spawn_app_with(backend, &[("FUNNELFLOW_RATE_LIMIT", "3/60s")]).await;
    let token = app.token("krate");
    let k1 = key_with(&app, &token, &["profile:read"]).await;
    let k2 = key_with(&app, &token, &["profile:read"]).await;
    for remaining in [2, 1, 0] {
        let res = app.get("/v1/me", &k1).await;
        assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=3;w=60");
        let rl = res.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(rl.starts_with(&format!("\"default\";r={remaining};")), "{rl}");
        json_of(res, 200).await;
    }
    let res = app.get("/v1/me", &k1).await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, 429, "rate_limited").await;
    // Another key of the same user has its own budget.
    json_of(app.get("/v1/me", &k2).await, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_key_embedded() {
    rate_limits_are_per_key(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_key_firestore() {
    rate_limits_are_per_key(Backend::Firestore).await;
}
