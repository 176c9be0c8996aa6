//! GDPR erasure through real HTTP: nothing left under `users/{uid}` (unknown,
//! nested and parentless subcollections too), share links gone, analytics
//! pseudonymized, audit records without the uid, tombstone refusing old tokens
//! and keys while a later sign-in starts afresh; idempotent; admins only for others.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use funnelflow::store::{
    self, DocPath, Fields, Query, Store, StoreError, Write, WriteOp, all_descendants, value,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_access::make_admin;
use crate::api_analyses::new_analysis;
use crate::api_events::stored_events;
use crate::api_keys::{all_permissions, key_with};
use crate::api_personas::new_persona;
use crate::app::{Backend, TestApp, json_of, problem, spawn_app_wrapped};
use crate::support::{EmulatorRest, OnCommit};

fn ev(t: &str) -> Value {
    json!({"eventType": t, "eventData": {"k": 1}})
}

async fn inject(app: &TestApp, path: &str) {
    let mut f = Fields::new();
    f.insert("note".into(), value::string("unknown to the service"));
    app.store()
        .commit(vec![Write::set(DocPath::parse(path).unwrap(), f)])
        .await
        .unwrap();
}

/// A user with a bit of everything; returns (an analysis share token, an API key).
async fn populate(app: &TestApp, uid: &str, token: &str) -> (String, String) {
    let mut first = String::new();
    for i in 0..3 {
        let a = json_of(
            app.post("/v1/analyses", token, &new_analysis("completed", "founder"))
                .await,
            201,
        )
        .await;
        if i == 0 {
            first = a["analysisId"].as_str().unwrap().to_owned();
        }
    }
    for n in ["One", "Two"] {
        json_of(app.post("/v1/personas", token, &new_persona(n)).await, 201).await;
    }
    let key = key_with(app, token, &all_permissions()).await;
    key_with(app, token, &["events:write"]).await;
    json_of(
        app.post("/v1/events", token, &json!({"events": [ev("a"), ev("b")]}))
            .await,
        202,
    )
    .await;
    json_of(
        app.patch("/v1/me", token, &json!({"preferences": {"theme": "dark"}}))
            .await,
        200,
    )
    .await;
    let share = json_of(
        app.request(Method::POST, &format!("/v1/analyses/{first}/share"), Some(token))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    // Documents the service does not know: a subcollection, one below an
    // analysis, and one under a parent document that does not exist.
    inject(app, &format!("users/{uid}/mystery/m1")).await;
    inject(app, &format!("users/{uid}/analyses/{first}/comments/c1")).await;
    inject(app, &format!("users/{uid}/ghost/missing/deep/d1")).await;
    (share["shareToken"].as_str().unwrap().to_owned(), key)
}

/// What an erasure of `paths` (below `users/{uid}`) reports, by the rules
/// API.md states: direct analyses, personas and API keys by name, the
/// service's bookkeeping not counted, everything else `other`.
pub fn expected_counts(uid: &str, paths: &[String]) -> Value {
    let (mut analyses, mut personas, mut keys, mut other) = (0, 0, 0, 0);
    let prefix = format!("users/{uid}/");
    for p in paths {
        let rest: Vec<&str> = p.strip_prefix(&prefix).unwrap().split('/').collect();
        match (rest.len(), rest[0]) {
            (2, "analyses") => analyses += 1,
            (2, "personas") => personas += 1,
            (2, "apiKeys") => keys += 1,
            (2, "personaCounter" | "apiKeyCounter" | "trendDays" | "idempotency") => {}
            _ => other += 1,
        }
    }
    json!({"analyses": analyses, "personas": personas, "apiKeys": keys, "other": other})
}

async fn nothing_left(app: &TestApp, uid: &str) {
    let user = DocPath::root("users", uid).unwrap();
    assert!(app.store().get(&user).await.unwrap().is_none());
    assert_eq!(
        all_descendants(app.store().as_ref(), &user).await.unwrap(),
        Vec::<DocPath>::new()
    );
    assert!(app.store().list_collection_ids(&user).await.unwrap().is_empty());
    let missing = DocPath::parse(&format!("users/{uid}/ghost/missing")).unwrap();
    assert!(
        app.store()
            .list_collection_ids(&missing)
            .await
            .unwrap()
            .is_empty()
    );
    // On the emulator, also as its REST API sees it (not through our store code).
    if app.store().kind() == "firestore" {
        let rest = EmulatorRest::new(&app.project_id);
        rest.assert_nothing_under(&format!("users/{uid}")).await;
        rest.assert_nothing_under(&format!("users/{uid}/ghost/missing"))
            .await;
    }
}

/// The emulator's REST listings do see what `populate` put there (so their
/// empty answers after an erasure mean something).
async fn rest_sees_everything(app: &TestApp, uid: &str) {
    if app.store().kind() != "firestore" {
        return;
    }
    let rest = EmulatorRest::new(&app.project_id);
    let user = DocPath::root("users", uid).unwrap();
    let mut ours: Vec<String> = all_descendants(app.store().as_ref(), &user)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    ours.sort();
    let parentless = format!("users/{uid}/ghost/missing/deep/d1");
    assert!(ours.contains(&parentless), "{ours:?}");
    assert_eq!(rest.descendants(&user.to_string()).await, ours);
    assert_eq!(rest.walk(&user.to_string()).await, ours);
    for c in ["analyses", "apiKeys", "ghost", "mystery", "personas"] {
        assert!(
            rest.collection_ids(&user.to_string())
                .await
                .contains(&c.to_owned()),
            "{c}"
        );
    }
    assert!(rest.exists(&user.to_string()).await);
    assert!(!rest.exists(&format!("users/{uid}/ghost/missing")).await);
}

async fn self_erasure_leaves_nothing_behind(app: TestApp) {
    let (token, other) = (app.token("gone"), app.token("kept"));
    let (share, key) = populate(&app, "gone", &token).await;
    rest_sees_everything(&app, "gone").await;
    json_of(
        app.post("/v1/analyses", &other, &new_analysis("completed", "founder"))
            .await,
        201,
    )
    .await;
    json_of(
        app.post("/v1/events", &other, &json!({"events": [ev("c")]}))
            .await,
        202,
    )
    .await;
    json_of(
        app.get(&format!("/v1/shared/analyses/{share}"), &other).await,
        200,
    )
    .await;

    // API keys may never erase.
    let r = app
        .request(Method::DELETE, "/v1/me", Some(&key))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    let erased = json_of(app.delete("/v1/me", &token).await, 200).await;
    assert_eq!(
        erased,
        json!({"deleted": {"analyses": 3, "personas": 2, "apiKeys": 2, "other": 3}, "analyticsAnonymized": 2})
    );
    nothing_left(&app, "gone").await;
    // Share link, old token, old key: gone; the old token provisions nothing.
    problem(
        app.get(&format!("/v1/shared/analyses/{share}"), &other).await,
        404,
        "not_found",
    )
    .await;
    problem(app.get("/v1/me", &token).await, 401, "account_deleted").await;
    problem(app.get("/v1/analyses", &token).await, 401, "account_deleted").await;
    let r = app
        .request(Method::GET, "/v1/me", Some(&key))
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
    nothing_left(&app, "gone").await;

    // Analytics: one pseudonym, no address, no user agent; the other user's untouched.
    let events = stored_events(&app).await;
    assert_eq!(events.len(), 3);
    let mine: Vec<_> = events
        .iter()
        .filter(|d| value::as_str(d.field("userId").unwrap()) != Some("kept"))
        .collect();
    assert_eq!(mine.len(), 2);
    let pseudonym = value::as_str(mine[0].field("userId").unwrap())
        .unwrap()
        .to_owned();
    assert!(pseudonym.starts_with("anon_") && !pseudonym.contains("gone"));
    for d in &mine {
        assert_eq!(
            value::as_str(d.field("userId").unwrap()),
            Some(pseudonym.as_str())
        );
        assert!(d.field("ip").is_none() && d.field("userAgent").is_none());
    }
    let kept = events
        .iter()
        .find(|d| value::as_str(d.field("userId").unwrap()) == Some("kept"))
        .unwrap();
    assert!(kept.field("ip").is_some());
    assert_eq!(
        json_of(app.get("/v1/analyses", &other).await, 200).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Audit records name the pseudonym, never the uid.
    let audit = app
        .store()
        .query(&Query::collection(None, "auditLogs"))
        .await
        .unwrap();
    let all = format!("{audit:?}");
    assert!(!all.contains("\"gone\"") && !all.contains("users/gone"), "{all}");
    assert!(audit.iter().any(
        |d| value::as_str(d.field("action").unwrap()) == Some("user.erase")
            && value::as_str(d.field("target").unwrap()) == Some(format!("users/{pseudonym}").as_str())
    ));

    // Again: zeros, nothing re-created.
    let again = json_of(app.delete("/v1/me", &token).await, 200).await;
    assert_eq!(
        again,
        json!({"deleted": {"analyses": 0, "personas": 0, "apiKeys": 0, "other": 0}, "analyticsAnonymized": 0})
    );
    nothing_left(&app, "gone").await;

    // A sign-in after the erasure starts a fresh, empty account.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = app.token_with("gone", |c| {
        c["auth_time"] = json!(jiff::Timestamp::now().as_second())
    });
    let me = json_of(app.get("/v1/me", &fresh).await, 200).await;
    assert_eq!(me["preferences"]["theme"], "system");
    // A key of the fresh account works; the old one stays dead.
    let new_key = key_with(&app, &fresh, &["profile:read"]).await;
    json_of(app.get("/v1/me", &new_key).await, 200).await;
    problem(app.get("/v1/me", &key).await, 401, "unauthenticated").await;
    assert!(
        json_of(app.get("/v1/analyses", &fresh).await, 200).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    problem(app.get("/v1/me", &token).await, 401, "account_deleted").await;
}
crate::both_backends!(self_erasure_leaves_nothing_behind);

/// A token from before an erasure may finish that erasure, never erase the
/// fresh account the same uid signed up for afterwards.
async fn an_old_token_cannot_erase_a_fresh_account(app: TestApp) {
    let old = app.token("reborn");
    populate(&app, "reborn", &old).await;
    json_of(app.delete("/v1/me", &old).await, 200).await;
    nothing_left(&app, "reborn").await;

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = app.token_with("reborn", |c| {
        c["auth_time"] = json!(jiff::Timestamp::now().as_second())
    });
    json_of(app.get("/v1/me", &fresh).await, 200).await;
    let a = json_of(
        app.post("/v1/analyses", &fresh, &new_analysis("completed", "founder"))
            .await,
        201,
    )
    .await;
    json_of(app.post("/v1/personas", &fresh, &new_persona("New")).await, 201).await;
    inject(&app, "users/reborn/mystery/m2").await;
    let user = DocPath::root("users", "reborn").unwrap();
    let before = all_descendants(app.store().as_ref(), &user).await.unwrap();

    problem(app.delete("/v1/me", &old).await, 401, "account_deleted").await;
    assert_eq!(
        all_descendants(app.store().as_ref(), &user).await.unwrap(),
        before
    );
    assert!(app.store().get(&user).await.unwrap().is_some());
    let id = a["analysisId"].as_str().unwrap();
    json_of(app.get(&format!("/v1/analyses/{id}"), &fresh).await, 200).await;
    json_of(app.get("/v1/me", &fresh).await, 200).await;

    // The fresh account's own token erases it.
    let erased = json_of(app.delete("/v1/me", &fresh).await, 200).await;
    assert_eq!(
        erased["deleted"],
        json!({"analyses": 1, "personas": 1, "apiKeys": 0, "other": 1})
    );
    nothing_left(&app, "reborn").await;
}
crate::both_backends!(an_old_token_cannot_erase_a_fresh_account);

async fn admins_erase_on_behalf(app: TestApp) {
    let (admin, victim, plain) = (app.token("dpo"), app.token("subject"), app.token("plain"));
    json_of(app.get("/v1/me", &admin).await, 200).await;
    make_admin(&app, "dpo").await;
    populate(&app, "subject", &victim).await;
    rest_sees_everything(&app, "subject").await;
    problem(
        app.delete("/v1/admin/users/subject", &plain).await,
        403,
        "forbidden",
    )
    .await;
    let key = key_with(&app, &admin, &all_permissions()).await;
    let r = app
        .request(Method::DELETE, "/v1/admin/users/subject", Some(&key))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    json_of(app.get("/v1/me", &victim).await, 200).await;
    let erased = json_of(app.delete("/v1/admin/users/subject", &admin).await, 200).await;
    assert_eq!(
        erased,
        json!({"deleted": {"analyses": 3, "personas": 2, "apiKeys": 2, "other": 3}, "analyticsAnonymized": 2})
    );
    nothing_left(&app, "subject").await;
    problem(app.get("/v1/me", &victim).await, 401, "account_deleted").await;
    // The admin is untouched.
    json_of(app.get("/v1/me", &admin).await, 200).await;
}
crate::both_backends!(admins_erase_on_behalf);

/// Lets `deletes` commits that delete something through, then refuses every
/// such commit, as if the process had died there (an `i64::MAX` budget: no limit).
fn stops_deleting(inner: Arc<dyn Store>, deletes: Arc<AtomicI64>) -> Arc<dyn Store> {
    OnCommit::wrap(
        inner,
        Box::new(move |writes| {
            let refused = writes.iter().any(|w| matches!(w.op, WriteOp::Delete))
                && deletes.fetch_sub(1, Ordering::SeqCst) <= 0;
            Box::pin(async move {
                if refused {
                    return Err(StoreError::Internal("the process died here".into()));
                }
                Ok(())
            })
        }),
    )
}

/// An erasure that stops after its first page of deletes: old keys and tokens
/// are refused already (the key's document is still there), and calling again
/// finishes the job, counting exactly what it deleted.
async fn an_interrupted_erasure_is_finished_by_calling_again(backend: Backend) {
    let deletes = Arc::new(AtomicI64::new(i64::MAX));
    let budget = deletes.clone();
    let app = spawn_app_wrapped(backend, &[], move |inner| stops_deleting(inner, budget)).await;
    let token = app.token("cut");
    populate(&app, "cut", &token).await;
    // Enough analyses for three pages, all before the API keys in path order.
    let user = DocPath::root("users", "cut").unwrap();
    let writes = (0..1_100)
        .map(|i| {
            Write::set(
                user.child("analyses", &format!("bulk{i:04}")).unwrap(),
                Fields::new(),
            )
        })
        .collect();
    store::commit_chunked(app.store().as_ref(), writes).await.unwrap();
    let key = key_with(&app, &token, &all_permissions()).await;
    json_of(app.get("/v1/me", &key).await, 200).await;
    let before = all_descendants(app.store().as_ref(), &user).await.unwrap();

    deletes.store(1, Ordering::SeqCst);
    problem(app.delete("/v1/me", &token).await, 500, "internal").await;
    deletes.store(i64::MAX, Ordering::SeqCst);
    let left = all_descendants(app.store().as_ref(), &user).await.unwrap();
    // Exactly one commit of deletes went through (which page's depends on
    // timing); the erasure awaited its other commits before answering.
    let deleted = before.len() - left.len();
    assert!(
        (1..=500).contains(&deleted),
        "one commit of deletes, got {deleted}"
    );
    assert!(app.store().get(&user).await.unwrap().is_some());
    assert!(left.iter().any(|p| p.collection_id() == "apiKeys"));

    // The analytics were rewritten meanwhile (they do not wait for the deletes).
    let events = stored_events(&app).await;
    assert_eq!(events.len(), 2);
    for d in &events {
        let who = value::as_str(d.field("userId").unwrap()).unwrap();
        assert!(who.starts_with("anon_"), "{who}");
        assert!(d.field("ip").is_none() && d.field("userAgent").is_none());
    }

    // Refused already, the key as if it were deleted.
    problem(app.get("/v1/me", &token).await, 401, "account_deleted").await;
    problem(app.get("/v1/me", &key).await, 401, "unauthenticated").await;
    problem(app.get("/v1/analyses", &key).await, 401, "unauthenticated").await;

    let left: Vec<String> = left.iter().map(ToString::to_string).collect();
    let erased = json_of(app.delete("/v1/me", &token).await, 200).await;
    assert_eq!(erased["deleted"], expected_counts("cut", &left));
    assert_eq!(erased["deleted"]["apiKeys"], 3);
    // Anonymized by the first call already.
    assert_eq!(erased["analyticsAnonymized"], 0);
    nothing_left(&app, "cut").await;
    problem(app.get("/v1/me", &key).await, 401, "unauthenticated").await;
}

/// A sign-in after an erasure that was interrupted (its user document is
/// still there) never sees the erased account: the erasure is finished first,
/// under the same tombstone, and the sign-in gets a fresh, empty account.
async fn a_sign_in_after_an_interrupted_erasure_gets_a_fresh_account(backend: Backend) {
    let deletes = Arc::new(AtomicI64::new(i64::MAX));
    let budget = deletes.clone();
    let app = spawn_app_wrapped(backend, &[], move |inner| stops_deleting(inner, budget)).await;
    let old = app.token("phoenix");
    populate(&app, "phoenix", &old).await;
    let key = key_with(&app, &old, &all_permissions()).await;
    deletes.store(0, Ordering::SeqCst);
    problem(app.delete("/v1/me", &old).await, 500, "internal").await;
    deletes.store(i64::MAX, Ordering::SeqCst);
    let user = DocPath::root("users", "phoenix").unwrap();
    assert!(
        !all_descendants(app.store().as_ref(), &user)
            .await
            .unwrap()
            .is_empty()
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = app.token_with("phoenix", |c| {
        c["auth_time"] = json!(jiff::Timestamp::now().as_second())
    });
    let me = json_of(app.get("/v1/me", &fresh).await, 200).await;
    assert_ne!(me["preferences"]["theme"], "dark", "{me}");
    assert_eq!(me["usage"]["analyses"], 0, "{me}");
    let list = json_of(app.get("/v1/analyses", &fresh).await, 200).await;
    assert_eq!(list["items"], json!([]), "{list}");
    // Nothing of the erased account is left; the fresh profile was created after.
    assert_eq!(
        all_descendants(app.store().as_ref(), &user).await.unwrap(),
        Vec::<DocPath>::new()
    );
    assert!(app.store().get(&user).await.unwrap().is_some());
    problem(app.get("/v1/me", &old).await, 401, "account_deleted").await;
    problem(app.get("/v1/me", &key).await, 401, "unauthenticated").await;
    problem(app.delete("/v1/me", &old).await, 401, "account_deleted").await;
    json_of(app.get("/v1/me", &fresh).await, 200).await;
}

crate::both_backends!(backend: a_sign_in_after_an_interrupted_erasure_gets_a_fresh_account);

crate::both_backends!(backend: an_interrupted_erasure_is_finished_by_calling_again);
