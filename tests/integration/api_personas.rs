//! `/v1/personas`: validation, the 100 cap, one default, sorting, templates, isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::{TestApp, json_of, problem};

pub fn new_persona(name: &str) -> Value {
    json!({
        "name": name,
        "description": "A persona used in tests of the service",
        "characteristics": {
            "demographics": {"ageRange": "25-40", "occupation": "Founder", "income": "high"},
            "psychographics": {"values": ["speed"], "interests": ["saas"], "challenges": ["time"]},
            "behavior": {"decisionMaking": "fast", "mediaConsumption": ["x"], "purchasingTriggers": ["trial"]},
        },
    })
}

async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    json_of(app.post("/v1/personas", token, body).await, 201).await
}

async fn crud_and_validation(app: TestApp) {
    let token = app.token("pers");
    let res = app.post("/v1/personas", &token, &new_persona("Buyer")).await;
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v1/personas/")
    );
    let p = json_of(res, 201).await;
    let id = p["personaId"].as_str().unwrap().to_owned();
    assert_eq!(p["userId"], "pers");
    assert_eq!(p["metadata"]["isDefault"], false);
    assert_eq!(p["metadata"]["usageCount"], 0);
    assert_eq!(p["metadata"]["lastUsedAt"], Value::Null);
    let path = format!("/v1/personas/{id}");
    let res = app.get(&path, &token).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(json_of(res, 200).await, p);
    let res = app
        .request(Method::PATCH, &path, Some(&token))
        .header("if-match", &etag)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    let p2 = json_of(res, 200).await;
    assert_eq!(p2["name"], "Renamed");
    assert_eq!(
        p2["description"], p["description"],
        "partial update keeps the rest"
    );
    let res = app
        .request(Method::PATCH, &path, Some(&token))
        .header("if-match", &etag)
        .json(&json!({"name": "Stale"}))
        .send()
        .await
        .unwrap();
    problem(res, 412, "precondition_failed").await;
    // A characteristics part given replaces that part; the others are kept.
    let p3 = json_of(
        app.patch(
            &path,
            &token,
            &json!({"characteristics": {"demographics": {"ageRange": "50+"}}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        p3["characteristics"]["demographics"],
        json!({"ageRange": "50+", "occupation": null, "income": null})
    );
    assert_eq!(
        p3["characteristics"]["psychographics"],
        p["characteristics"]["psychographics"]
    );
    assert_eq!(
        p3["characteristics"]["behavior"],
        p["characteristics"]["behavior"]
    );

    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name"),
        (json!({"name": "n".repeat(101)}), "name"),
        (json!({"description": "too short"}), "description"),
        (json!({"description": "d".repeat(501)}), "description"),
        (
            json!({"characteristics": {"demographics": {"ageRange": "a".repeat(201)}}}),
            "characteristics.demographics.ageRange",
        ),
        (
            json!({"characteristics": {"psychographics": {"values": vec!["v"; 21]}}}),
            "characteristics.psychographics.values",
        ),
        (
            json!({"characteristics": {"psychographics": {"values": ["x".repeat(201)]}}}),
            "characteristics.psychographics.values",
        ),
        (
            json!({"characteristics": {"behavior": {"mediaConsumption": "tv"}}}),
            "characteristics.behavior.mediaConsumption",
        ),
        (json!({"metadata": {"usageCount": 99}}), "metadata"),
        (json!({"userId": "other"}), "userId"),
        (json!({"isDefault": "yes"}), "isDefault"),
    ];
    for (body, field) in cases {
        let e = problem(app.patch(&path, &token, &body).await, 422, "validation_failed").await;
        assert!(
            e["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["field"] == field),
            "{body}: {e}"
        );
        let mut full = new_persona("X");
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        problem(
            app.post("/v1/personas", &token, &full).await,
            422,
            "validation_failed",
        )
        .await;
    }
    let mut missing = new_persona("X");
    missing.as_object_mut().unwrap().remove("description");
    problem(
        app.post("/v1/personas", &token, &missing).await,
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(app.delete(&path, &token).await.status(), 204);
    problem(app.get(&path, &token).await, 404, "not_found").await;
    let list = json_of(app.get("/v1/personas", &token).await, 200).await;
    assert_eq!(list["items"], json!([]), "refused creates stored nothing");
}
crate::both_backends!(crud_and_validation);

async fn one_default_at_a_time(app: TestApp) {
    let token = app.token("def");
    let mut a = new_persona("A");
    a["isDefault"] = json!(true);
    let a = create(&app, &token, &a).await;
    let mut b = new_persona("B");
    b["isDefault"] = json!(true);
    let b = create(&app, &token, &b).await;
    let get = async |id: &Value| {
        json_of(
            app.get(&format!("/v1/personas/{}", id.as_str().unwrap()), &token)
                .await,
            200,
        )
        .await
    };
    assert_eq!(get(&a["personaId"]).await["metadata"]["isDefault"], false);
    assert_eq!(get(&b["personaId"]).await["metadata"]["isDefault"], true);
    json_of(
        app.patch(
            &format!("/v1/personas/{}", a["personaId"].as_str().unwrap()),
            &token,
            &json!({"isDefault": true}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(get(&a["personaId"]).await["metadata"]["isDefault"], true);
    assert_eq!(get(&b["personaId"]).await["metadata"]["isDefault"], false);
    // Concurrent switches still leave exactly one default.
    let ids = [a["personaId"].clone(), b["personaId"].clone()];
    let futs = (0..6).map(|i| {
        app.patch(
            &format!("/v1/personas/{}", ids[i % 2].as_str().unwrap()),
            &token,
            &json!({"isDefault": true}),
        )
    });
    for r in futures::future::join_all(futs).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(defaults(&app, &token).await.len(), 1);
    // Switches, default creates and un-defaulting, all at once: still at most one.
    let mut d = new_persona("D");
    d["isDefault"] = json!(true);
    let switches = (0..8).map(|i| {
        app.patch(
            &format!("/v1/personas/{}", ids[i % 2].as_str().unwrap()),
            &token,
            &json!({"isDefault": true}),
        )
    });
    let creates = (0..4).map(|_| app.post("/v1/personas", &token, &d));
    let (switched, created) = futures::future::join(
        futures::future::join_all(switches),
        futures::future::join_all(creates),
    )
    .await;
    for r in switched.iter().chain(&created) {
        assert!(r.status().is_success(), "{}", r.status());
    }
    let now = defaults(&app, &token).await;
    assert_eq!(now.len(), 1, "{now:?}");
    // Deleting the default leaves none; the next switch makes exactly one again.
    assert_eq!(
        app.delete(&format!("/v1/personas/{}", now[0]), &token)
            .await
            .status(),
        204
    );
    assert_eq!(defaults(&app, &token).await.len(), 0);
    let futs = (0..4).map(|i| {
        app.patch(
            &format!("/v1/personas/{}", ids[i % 2].as_str().unwrap()),
            &token,
            &json!({"isDefault": i < 2}),
        )
    });
    for r in futures::future::join_all(futs).await {
        assert!(r.status().is_success() || r.status() == 404, "{}", r.status());
    }
    assert!(defaults(&app, &token).await.len() <= 1);
    json_of(
        app.patch(
            &format!("/v1/personas/{}", ids[0].as_str().unwrap()),
            &token,
            &json!({"isDefault": true}),
        )
        .await,
        200,
    )
    .await;
    let after = defaults(&app, &token).await;
    assert_eq!(after, [ids[0].as_str().unwrap()]);
}
crate::both_backends!(one_default_at_a_time);

/// The ids of the user's default personas.
async fn defaults(app: &TestApp, token: &str) -> Vec<String> {
    let list = json_of(app.get("/v1/personas?limit=100", token).await, 200).await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["isDefault"] == true)
        .map(|p| p["personaId"].as_str().unwrap().to_owned())
        .collect()
}

/// Personas written directly to the store (as before the persona counter existed).
async fn seed(app: &TestApp, uid: &str, n: usize, default: impl Fn(usize) -> bool) {
    let user = funnelflow::store::DocPath::root("users", uid).unwrap();
    let mut writes = Vec::new();
    for i in 0..n {
        let id = format!("p{i:03}");
        let mut p = new_persona(&format!("P{i}"));
        p["personaId"] = json!(id);
        p["userId"] = json!(uid);
        p["metadata"] = json!({"isDefault": default(i), "createdAt": null, "updatedAt": null, "usageCount": 0, "lastUsedAt": null});
        let mut f = funnelflow::store::value::as_map(&funnelflow::store::value::from_json(&p))
            .cloned()
            .unwrap();
        let ts = funnelflow::store::value::timestamp(
            jiff::Timestamp::from_second(1_700_000_000 + i64::try_from(i).unwrap()).unwrap(),
        );
        funnelflow::store::value::set_path(&mut f, "metadata.createdAt", ts.clone());
        funnelflow::store::value::set_path(&mut f, "metadata.updatedAt", ts);
        writes.push(funnelflow::store::Write::set(
            user.child("personas", &id).unwrap(),
            f,
        ));
    }
    app.store().commit(writes).await.unwrap();
}

/// Personas from before the counter are counted by the first write that needs
/// the counter (and more than one default, which only such data can hold, is repaired).
async fn counts_existing_personas_on_first_use(app: TestApp) {
    let token = app.token("legacy");
    json_of(app.get("/v1/me", &token).await, 200).await;
    seed(&app, "legacy", 4, |i| i >= 2).await;
    assert_eq!(defaults(&app, &token).await.len(), 2);
    // A delete without a counter counts nothing out; the first count will not see it.
    assert_eq!(app.delete("/v1/personas/p000", &token).await.status(), 204);
    create(&app, &token, &new_persona("New")).await;
    assert_eq!(
        defaults(&app, &token).await,
        ["p003"],
        "the newest default is kept"
    );
    // 3 seeded + 1 created: 96 more fit, not 97.
    let mut created = 0;
    for i in 0..97 {
        match app
            .post("/v1/personas", &token, &new_persona(&format!("N{i}")))
            .await
            .status()
            .as_u16()
        {
            201 => created += 1,
            422 => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(created, 96);
}
crate::both_backends!(env: &[("FUNNELFLOW_RATE_LIMIT", "10000/10s")], counts_existing_personas_on_first_use);

async fn caps_at_one_hundred(app: TestApp) {
    let token = app.token("cap");
    json_of(app.get("/v1/me", &token).await, 200).await;
    // 99 seeded directly (no counter yet), then concurrent creates race for the last place.
    seed(&app, "cap", 99, |_| false).await;
    let futs = (0..4).map(|i| app.post("/v1/personas", &token, &new_persona(&format!("Last{i}"))));
    let statuses: Vec<u16> = futures::future::join_all(futs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 422).count(), 3, "{statuses:?}");
    // Walking the list: exactly 100.
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = cursor.as_ref().map_or("/v1/personas?limit=30".to_owned(), |c| {
            format!("/v1/personas?limit=30&cursor={c}")
        });
        let page = json_of(app.get(&url, &token).await, 200).await;
        n += page["items"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(n, 100);
}
crate::both_backends!(caps_at_one_hundred);

async fn sorts_and_templates(app: TestApp) {
    let token = app.token("sorter");
    let a = create(&app, &token, &new_persona("A")).await;
    let b = create(&app, &token, &new_persona("B")).await;
    let c = create(&app, &token, &new_persona("C")).await;
    // Prime the caches, so the analyses below must invalidate them.
    json_of(app.get("/v1/personas?sort=mostUsed", &token).await, 200).await;
    json_of(app.get("/v1/personas?sort=recent", &token).await, 200).await;
    let names = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let recent = json_of(app.get("/v1/personas?sort=recent", &token).await, 200).await;
    assert_eq!(names(&recent), ["C", "B", "A"]);
    // Use A twice and B once.
    for p in [&a, &a, &b] {
        let mut an = crate::api_analyses::new_analysis("processing", "x");
        an["input"]["customPersonaId"] = p["personaId"].clone();
        json_of(app.post("/v1/analyses", &token, &an).await, 201).await;
    }
    let used = json_of(app.get("/v1/personas?sort=mostUsed", &token).await, 200).await;
    assert_eq!(names(&used), ["A", "B", "C"]);
    let _ = c;
    problem(
        app.get("/v1/personas?sort=alphabetical", &token).await,
        400,
        "bad_request",
    )
    .await;
    problem(
        app.get("/v1/personas?limit=1000", &token).await,
        400,
        "bad_request",
    )
    .await;
    // A cursor of one sort is refused by the other.
    let page = json_of(app.get("/v1/personas?sort=recent&limit=1", &token).await, 200).await;
    let cur = page["nextCursor"].as_str().unwrap();
    problem(
        app.get(
            &format!("/v1/personas?sort=mostUsed&limit=1&cursor={cur}"),
            &token,
        )
        .await,
        400,
        "invalid_cursor",
    )
    .await;

    let t = json_of(app.get("/v1/personas/templates", &token).await, 200).await;
    let items = t["items"].as_array().unwrap();
    assert!(items.len() >= 4, "{t}");
    assert!(
        items
            .iter()
            .all(|i| i["name"].is_string() && i["characteristics"].is_object())
    );
}
crate::both_backends!(sorts_and_templates);

async fn tenant_isolation(app: TestApp) {
    let alice = app.token("alice");
    let bob = app.token("bob");
    let p = create(&app, &alice, &new_persona("Secret")).await;
    let path = format!("/v1/personas/{}", p["personaId"].as_str().unwrap());
    problem(app.get(&path, &bob).await, 404, "not_found").await;
    problem(
        app.patch(&path, &bob, &json!({"name": "Hacked"})).await,
        404,
        "not_found",
    )
    .await;
    problem(app.delete(&path, &bob).await, 404, "not_found").await;
    assert_eq!(
        json_of(app.get("/v1/personas", &bob).await, 200).await["items"],
        json!([])
    );
    assert_eq!(json_of(app.get(&path, &alice).await, 200).await["name"], "Secret");
    problem(app.get(&path, "garbage").await, 401, "unauthenticated").await;
}
crate::both_backends!(tenant_isolation);

/// 110 creates for one user over 8 connections: the cap holds exactly and no
/// request stalls (a create must not lock every persona of the user).
async fn concurrent_creates_stay_prompt(app: TestApp) {
    use futures::StreamExt;
    use std::time::{Duration, Instant};
    const CONNECTIONS: usize = 8;
    let token = app.token("burst");
    json_of(app.get("/v1/me", &token).await, 200).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let started = Instant::now();
    let results: Vec<(u16, Duration)> = futures::stream::iter(0..110)
        .map(|i| {
            let rb = client
                .post(app.url("/v1/personas"))
                .bearer_auth(&token)
                .json(&new_persona(&format!("Burst {i}")));
            async move {
                let t = Instant::now();
                let status = rb.send().await.map_or(0, |r| r.status().as_u16());
                (status, t.elapsed())
            }
        })
        .buffer_unordered(CONNECTIONS)
        .collect()
        .await;
    let total = started.elapsed();
    let slowest = results.iter().map(|r| r.1).max().unwrap_or_default();
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    eprintln!("110 persona creates over {CONNECTIONS} connections: total {total:?}, slowest {slowest:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        100,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 422).count(), 10, "{statuses:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "slowest create took {slowest:?}"
    );
    assert!(total < Duration::from_secs(30), "110 creates took {total:?}");
    // The user's next requests answer at once, and the list holds exactly 100.
    let t = Instant::now();
    let page = json_of(app.get("/v1/personas?limit=100", &token).await, 200).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["nextCursor"].is_null(), "{}", page["nextCursor"]);
    let extra = app
        .post("/v1/personas", &token, &new_persona("One too many"))
        .await;
    problem(extra, 422, "validation_failed").await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "next requests took {:?}",
        t.elapsed()
    );
    // A delete frees a place again, exactly one.
    let id = page["items"][0]["personaId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/v1/personas/{id}"), &token).await.status(),
        204
    );
    let futs = (0..3).map(|i| app.post("/v1/personas", &token, &new_persona(&format!("Again {i}"))));
    let statuses: Vec<u16> = futures::future::join_all(futs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
}
// The default rate limit (100 per 10 s) would answer part of the burst 429.
crate::both_backends!(env: &[("FUNNELFLOW_RATE_LIMIT", "10000/10s")], concurrent_creates_stay_prompt);
