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
    let list = json_of(app.get("/v1/personas", &token).await, 200).await;
    let defaults = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["isDefault"] == true)
        .count();
    assert_eq!(defaults, 1);
}
crate::both_backends!(one_default_at_a_time);

async fn caps_at_one_hundred(app: TestApp) {
    let token = app.token("cap");
    json_of(app.get("/v1/me", &token).await, 200).await;
    // 99 seeded directly, then concurrent creates race for the last place.
    let user = funnelflow::store::DocPath::root("users", "cap").unwrap();
    let mut writes = Vec::new();
    for i in 0..99 {
        let id = format!("p{i:03}");
        let mut p = new_persona(&format!("P{i}"));
        p["personaId"] = json!(id);
        p["userId"] = json!("cap");
        p["metadata"] = json!({"isDefault": false, "createdAt": null, "updatedAt": null, "usageCount": 0, "lastUsedAt": null});
        let mut f = funnelflow::store::value::as_map(&funnelflow::store::value::from_json(&p))
            .cloned()
            .unwrap();
        let ts =
            funnelflow::store::value::timestamp(jiff::Timestamp::from_second(1_700_000_000 + i).unwrap());
        funnelflow::store::value::set_path(&mut f, "metadata.createdAt", ts.clone());
        funnelflow::store::value::set_path(&mut f, "metadata.updatedAt", ts);
        writes.push(funnelflow::store::Write::set(
            user.child("personas", &id).unwrap(),
            f,
        ));
    }
    app.store().commit(writes).await.unwrap();
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
