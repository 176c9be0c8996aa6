//! `/v1/analyses`: validation, lifecycle, quotas under concurrency, history
//! pagination, batch reads, trends, sharing, and tenant isolation.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::{TestApp, json_of, problem};

pub fn results(with_copy: bool) -> Value {
    let mut r = json!({
        "analysis": [{"category": "Headline", "score": 72, "finding": "Vague promise", "recommendation": "Name the outcome"}],
        "confidence": 0.8,
        "processingTimeMs": 1200,
    });
    if with_copy {
        r["sampleCopy"] = json!({"headline": "Ship faster", "body": "A body", "callToAction": "Start now"});
    }
    r
}

pub fn new_analysis(status: &str, persona: &str) -> Value {
    let mut b = json!({
        "input": {"offerDetails": "https://example.com/offer", "inputType": "link", "persona": persona},
        "status": status,
        "aiModel": "gpt-x",
        "version": "1.0",
        "requestId": uuid::Uuid::new_v4().to_string(),
    });
    if status == "completed" {
        b["results"] = results(false);
    }
    b
}

async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    json_of(app.post("/v1/analyses", token, body).await, 201).await
}

async fn lifecycle(app: TestApp) {
    let token = app.token("owner");
    let res = app
        .post("/v1/analyses", &token, &new_analysis("processing", "Founder"))
        .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let a = json_of(res, 201).await;
    let id = a["analysisId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/analyses/{id}"));
    assert_eq!(a["userId"], "owner");
    assert_eq!(a["metadata"]["status"], "processing");
    assert_eq!(
        a["sharing"],
        json!({"isPublic": false, "shareToken": null, "sharedAt": null})
    );
    assert_eq!(a["results"], Value::Null);
    let got = json_of(app.get(&location, &token).await, 200).await;
    assert_eq!(got, a);

    // Completing with a stale ETag fails; with the current one it works once.
    let done = json!({"status": "completed", "results": results(true)});
    let stale = "\"1.000000000\"";
    let res = app
        .request(Method::PATCH, &location, Some(&token))
        .header("if-match", stale)
        .json(&done)
        .send()
        .await
        .unwrap();
    problem(res, 412, "precondition_failed").await;
    let res = app
        .request(Method::PATCH, &location, Some(&token))
        .header("if-match", &etag)
        .json(&done)
        .send()
        .await
        .unwrap();
    let a = json_of(res, 200).await;
    assert_eq!(a["metadata"]["status"], "completed");
    assert_eq!(a["results"]["sampleCopy"]["headline"], "Ship faster");
    problem(
        app.patch(&location, &token, &json!({"status": "failed"})).await,
        409,
        "conflict",
    )
    .await;
    problem(
        app.patch(&location, &token, &json!({"status": "processing"}))
            .await,
        409,
        "conflict",
    )
    .await;

    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["usage"]["analyses"], 1);
    assert_eq!(me["usage"]["copyGenerations"], 1);
    assert_eq!(me["metadata"]["totalAnalyses"], 1);
    assert_eq!(me["metadata"]["totalCopyGenerations"], 1);
    assert!(me["metadata"]["lastAnalysisAt"].is_string());

    // Delete: 204, then 404; counters are never refunded.
    let res = app.delete(&location, &token).await;
    assert_eq!(res.status(), 204);
    problem(app.get(&location, &token).await, 404, "not_found").await;
    problem(app.delete(&location, &token).await, 404, "not_found").await;
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["metadata"]["totalAnalyses"], 1);
    assert_eq!(me["usage"]["analyses"], 1);
}
crate::both_backends!(lifecycle);

async fn validates_every_field(app: TestApp) {
    let token = app.token("val");
    let base = new_analysis("completed", "P");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|b| b["input"]["offerDetails"] = json!("short")),
            "input.offerDetails",
        ),
        (
            Box::new(|b| b["input"]["offerDetails"] = json!("x".repeat(2001))),
            "input.offerDetails",
        ),
        (
            Box::new(|b| b["input"]["offerDetails"] = json!("this is not a link at all")),
            "input.offerDetails",
        ),
        (
            Box::new(|b| b["input"]["offerDetails"] = json!("ftp://example.com/file")),
            "input.offerDetails",
        ),
        (
            Box::new(|b| b["input"]["inputType"] = json!("video")),
            "input.inputType",
        ),
        (Box::new(|b| b["input"]["persona"] = json!("")), "input.persona"),
        (
            Box::new(|b| b["input"]["persona"] = json!("p".repeat(101))),
            "input.persona",
        ),
        (
            Box::new(|b| b["input"]["customPersonaId"] = json!("not-mine")),
            "input.customPersonaId",
        ),
        (
            Box::new(|b| b["input"]["customPersonaId"] = json!(null)),
            "input.customPersonaId",
        ),
        (Box::new(|b| b["input"]["extra"] = json!(1)), "input.extra"),
        (
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("results");
            }),
            "results",
        ),
        (Box::new(|b| b["status"] = json!("done")), "status"),
        (
            Box::new(|b| b["results"]["analysis"] = json!([])),
            "results.analysis",
        ),
        (
            Box::new(|b| b["results"]["analysis"] = json!(vec![results(false)["analysis"][0].clone(); 51])),
            "results.analysis",
        ),
        (
            Box::new(|b| b["results"]["analysis"][0]["score"] = json!(101)),
            "results.analysis[0].score",
        ),
        (
            Box::new(|b| b["results"]["analysis"][0]["score"] = json!(-1)),
            "results.analysis[0].score",
        ),
        (
            Box::new(|b| b["results"]["analysis"][0]["score"] = json!("high")),
            "results.analysis[0].score",
        ),
        (
            Box::new(|b| b["results"]["analysis"][0]["category"] = json!("")),
            "results.analysis[0].category",
        ),
        (
            Box::new(|b| b["results"]["analysis"][0]["finding"] = json!("f".repeat(2001))),
            "results.analysis[0].finding",
        ),
        (
            Box::new(|b| b["results"]["confidence"] = json!(1.5)),
            "results.confidence",
        ),
        (
            Box::new(|b| b["results"]["processingTimeMs"] = json!(0)),
            "results.processingTimeMs",
        ),
        (
            Box::new(|b| {
                b["results"]["sampleCopy"] =
                    json!({"headline": "h".repeat(201), "body": "b", "callToAction": "c"})
            }),
            "results.sampleCopy.headline",
        ),
        (
            Box::new(|b| {
                b["results"]["sampleCopy"] = json!({"headline": "h", "body": "", "callToAction": "c"})
            }),
            "results.sampleCopy.body",
        ),
        (Box::new(|b| b["aiModel"] = json!("")), "aiModel"),
        (Box::new(|b| b["version"] = json!("v".repeat(51))), "version"),
        (Box::new(|b| b["requestId"] = json!("not-a-uuid")), "requestId"),
        (Box::new(|b| b["requestId"] = json!(null)), "requestId"),
        (
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("aiModel");
            }),
            "aiModel",
        ),
        (Box::new(|b| b["userId"] = json!("someone-else")), "userId"),
    ];
    for (edit, field) in cases {
        let mut body = base.clone();
        edit(&mut body);
        let p = problem(
            app.post("/v1/analyses", &token, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "expected an error on {field} for {body}: {p}"
        );
    }
    // processing/failed must not carry results.
    let mut b = new_analysis("failed", "P");
    b["results"] = results(false);
    let p = problem(
        app.post("/v1/analyses", &token, &b).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "results");
    // Text input needs no URL; 2000 characters (not bytes) fit.
    let mut b = new_analysis("processing", "P");
    b["input"]["inputType"] = json!("text");
    b["input"]["offerDetails"] = json!("ü".repeat(2000));
    create(&app, &token, &b).await;
    // Nothing of the refused bodies was stored or counted.
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["usage"]["analyses"], 1);
    let list = json_of(app.get("/v1/analyses", &token).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
crate::both_backends!(validates_every_field);

async fn quota_is_exact_under_concurrency(app: TestApp) {
    let token = app.token("quota");
    json_of(app.get("/v1/me", &token).await, 200).await;
    let futs = (0..25).map(|_| app.post("/v1/analyses", &token, &new_analysis("processing", "Q")));
    let (mut created, mut refused) = (0, 0);
    for res in futures::future::join_all(futs).await {
        match res.status().as_u16() {
            201 => created += 1,
            429 => {
                let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry > 0 && retry <= 31 * 86_400);
                problem(res, 429, "quota_exceeded").await;
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!((created, refused), (10, 15));
    let me = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(me["usage"]["analyses"], 10);
    assert_eq!(me["metadata"]["totalAnalyses"], 10);
    let list = json_of(app.get("/v1/analyses?limit=100", &token).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 10);
}
crate::both_backends!(quota_is_exact_under_concurrency);

async fn copy_generation_quota(app: TestApp) {
    let token = app.token("copy");
    // Pretend 20 copies were generated this month already.
    json_of(app.get("/v1/me", &token).await, 200).await;
    let period = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let mut f = funnelflow::store::Fields::new();
    funnelflow::store::value::set_path(
        &mut f,
        "usage",
        funnelflow::store::value::from_json(&json!({"period": period, "analyses": 0, "copyGenerations": 20})),
    );
    let path = funnelflow::store::DocPath::root("users", "copy").unwrap();
    app.store()
        .commit(vec![funnelflow::store::Write::update(
            path,
            f,
            vec!["usage".into()],
        )])
        .await
        .unwrap();
    app.state.users.invalidate("copy").await;
    let mut b = new_analysis("completed", "P");
    b["results"] = results(true);
    problem(app.post("/v1/analyses", &token, &b).await, 429, "quota_exceeded").await;
    // Without sample copy it is fine.
    create(&app, &token, &new_analysis("completed", "P")).await;
}
crate::both_backends!(copy_generation_quota);

async fn history_pages_walk_every_item_once(app: TestApp) {
    let token = app.token("walker");
    let mut ids = Vec::new();
    for i in 0..45 {
        let persona = if i % 3 == 0 { "Founder" } else { "Marketer" };
        let status = if i % 2 == 0 { "processing" } else { "failed" };
        let a = create(&app, &token, &new_analysis(status, persona)).await;
        ids.push(a["analysisId"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/analyses?limit=7&cursor={c}"),
            None => "/v1/analyses?limit=7".to_owned(),
        };
        let page = json_of(app.get(&url, &token).await, 200).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        for it in items {
            seen.push(it["analysisId"].as_str().unwrap().to_owned());
        }
        // New items arriving during the walk are newer than the cursor: they never show up twice or shift pages.
        if inserted < 3 {
            create(&app, &token, &new_analysis("processing", "Late")).await;
            inserted += 1;
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no item twice");
    assert_eq!(seen.len(), 45, "every original item once");
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first");
}

async fn history_pages(app: TestApp) {
    // Enough quota for the walk.
    let token = app.token("walker");
    json_of(app.get("/v1/me", &token).await, 200).await;
    let mut f = funnelflow::store::Fields::new();
    funnelflow::store::value::set_path(
        &mut f,
        "subscription.planType",
        funnelflow::store::value::string("pro"),
    );
    let path = funnelflow::store::DocPath::root("users", "walker").unwrap();
    app.store()
        .commit(vec![funnelflow::store::Write::update(
            path,
            f,
            vec!["subscription.planType".into()],
        )])
        .await
        .unwrap();
    app.state.users.invalidate("walker").await;
    history_pages_walk_every_item_once(app).await;
}
crate::both_backends!(history_pages);

async fn filters_and_cursor_binding(app: TestApp) {
    let token = app.token("filters");
    let t0 = jiff::Timestamp::now();
    for (status, persona) in [
        ("processing", "A"),
        ("failed", "A"),
        ("processing", "B"),
        ("completed", "A"),
    ] {
        create(&app, &token, &new_analysis(status, persona)).await;
    }
    let count = async |q: &str| {
        json_of(app.get(&format!("/v1/analyses?{q}"), &token).await, 200).await["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count("persona=A").await, 3);
    assert_eq!(count("status=processing").await, 2);
    assert_eq!(count("persona=A&status=processing").await, 1);
    let since = (t0 - jiff::SignedDuration::from_secs(5)).to_string();
    assert_eq!(count(&format!("since={since}")).await, 4);
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    assert_eq!(count(&format!("since={future}")).await, 0);
    assert_eq!(count(&format!("until={since}")).await, 0);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "status=done",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
    ] {
        problem(
            app.get(&format!("/v1/analyses?{bad}"), &token).await,
            400,
            "bad_request",
        )
        .await;
    }
    // No persona is longer than 100 characters; a filter past Firestore's 1,500-byte
    // limit was a 500 on the emulator.
    for bad in [
        format!("persona={}", "x".repeat(101)),
        format!("persona={}", "x".repeat(5000)),
    ] {
        problem(
            app.get(&format!("/v1/analyses?{bad}"), &token).await,
            400,
            "bad_request",
        )
        .await;
    }
    // A cursor only works for the query it came from.
    let page = json_of(app.get("/v1/analyses?persona=A&limit=1", &token).await, 200).await;
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    json_of(
        app.get(&format!("/v1/analyses?persona=A&limit=2&cursor={cursor}"), &token)
            .await,
        200,
    )
    .await;
    problem(
        app.get(&format!("/v1/analyses?persona=B&limit=1&cursor={cursor}"), &token)
            .await,
        400,
        "invalid_cursor",
    )
    .await;
    problem(
        app.get(&format!("/v1/analyses?limit=1&cursor={cursor}"), &token)
            .await,
        400,
        "invalid_cursor",
    )
    .await;
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    problem(
        app.get(
            &format!("/v1/analyses?persona=A&limit=1&cursor={tampered}"),
            &token,
        )
        .await,
        400,
        "invalid_cursor",
    )
    .await;
    problem(
        app.get("/v1/analyses?cursor=forged.cursor", &token).await,
        400,
        "invalid_cursor",
    )
    .await;
    // Another user cannot use it either.
    let other = app.token("someone");
    problem(
        app.get(&format!("/v1/analyses?persona=A&limit=1&cursor={cursor}"), &other)
            .await,
        400,
        "invalid_cursor",
    )
    .await;
}
crate::both_backends!(filters_and_cursor_binding);

async fn batch_get_and_trends(app: TestApp) {
    let token = app.token("batch");
    let a = create(&app, &token, &new_analysis("completed", "A")).await;
    let b = create(&app, &token, &new_analysis("processing", "B")).await;
    let theirs = create(&app, &app.token("other"), &new_analysis("processing", "X")).await;
    let ids = json!({"ids": [a["analysisId"], "nope", b["analysisId"], theirs["analysisId"], "../etc"]});
    let r = json_of(app.post("/v1/analyses/batch-get", &token, &ids).await, 200).await;
    let got: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["analysisId"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            a["analysisId"].as_str().unwrap(),
            b["analysisId"].as_str().unwrap()
        ]
    );
    let missing: HashSet<&str> = r["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        HashSet::from(["nope", theirs["analysisId"].as_str().unwrap(), "../etc"])
    );
    problem(
        app.post("/v1/analyses/batch-get", &token, &json!({"ids": []}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    problem(
        app.post("/v1/analyses/batch-get", &token, &json!({"ids": many}))
            .await,
        422,
        "validation_failed",
    )
    .await;

    let t = json_of(app.get("/v1/analyses/trends?days=7", &token).await, 200).await;
    assert_eq!(t["days"], 7);
    assert_eq!(t["total"], 2);
    assert_eq!(t["byStatus"], json!({"completed": 1, "processing": 1}));
    assert_eq!(t["byPersona"], json!({"A": 1, "B": 1}));
    let days = t["byDay"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(days[6], json!({"date": today, "count": 2}));
    assert_eq!(t["averageConfidence"], 0.8);
    assert_eq!(t["averageProcessingTimeMs"], 1200.0);
    let d = json_of(app.get("/v1/analyses/trends", &token).await, 200).await;
    assert_eq!(d["byDay"].as_array().unwrap().len(), 30);
    // A new analysis invalidates the cached trends at once.
    create(&app, &token, &new_analysis("failed", "A")).await;
    let t = json_of(app.get("/v1/analyses/trends?days=7", &token).await, 200).await;
    assert_eq!(t["total"], 3);
    for bad in ["0", "366", "x", "-1"] {
        problem(
            app.get(&format!("/v1/analyses/trends?days={bad}"), &token).await,
            400,
            "bad_request",
        )
        .await;
    }
}
crate::both_backends!(batch_get_and_trends);

async fn sharing(app: TestApp) {
    let token = app.token("sharer");
    let a = create(&app, &token, &new_analysis("completed", "A")).await;
    let id = a["analysisId"].as_str().unwrap();
    let s1 = json_of(
        app.post(&format!("/v1/analyses/{id}/share"), &token, &json!({}))
            .await,
        200,
    )
    .await;
    let token1 = s1["shareToken"].as_str().unwrap().to_owned();
    assert!(token1.len() >= 22, "≥128 bits");
    assert!(
        s1["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/shared/analyses/{token1}"))
    );
    let s2 = json_of(
        app.post(&format!("/v1/analyses/{id}/share"), &token, &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        s2["shareToken"],
        token1.as_str(),
        "sharing again returns the same token"
    );
    // Public view: no auth, no owner.
    let public = json_of(
        app.client
            .get(app.url(&format!("/v1/shared/analyses/{token1}")))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(public["analysisId"], id);
    assert!(public.get("userId").is_none(), "{public}");
    // Others cannot share or unshare it.
    let other = app.token("intruder");
    problem(
        app.post(&format!("/v1/analyses/{id}/share"), &other, &json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.delete(&format!("/v1/analyses/{id}/share"), &other).await,
        404,
        "not_found",
    )
    .await;
    // Revoking stops the token at once; sharing again makes a new one.
    assert_eq!(
        app.delete(&format!("/v1/analyses/{id}/share"), &token)
            .await
            .status(),
        204
    );
    problem(
        app.client
            .get(app.url(&format!("/v1/shared/analyses/{token1}")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let s3 = json_of(
        app.post(&format!("/v1/analyses/{id}/share"), &token, &json!({}))
            .await,
        200,
    )
    .await;
    let token3 = s3["shareToken"].as_str().unwrap().to_owned();
    assert_ne!(token3, token1);
    // Deleting the analysis revokes its link.
    assert_eq!(
        app.delete(&format!("/v1/analyses/{id}"), &token).await.status(),
        204
    );
    problem(
        app.client
            .get(app.url(&format!("/v1/shared/analyses/{token3}")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    for bogus in [
        "x",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "%2e%2e%2fusers",
    ] {
        problem(
            app.client
                .get(app.url(&format!("/v1/shared/analyses/{bogus}")))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
    }
}
crate::both_backends!(sharing);

async fn tenant_isolation(app: TestApp) {
    let alice = app.token("alice");
    let bob = app.token("bob");
    let a = create(&app, &alice, &new_analysis("processing", "A")).await;
    let id = a["analysisId"].as_str().unwrap();
    let path = format!("/v1/analyses/{id}");
    problem(app.get(&path, &bob).await, 404, "not_found").await;
    problem(
        app.patch(&path, &bob, &json!({"status": "failed"})).await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .request(Method::PATCH, &path, Some(&bob))
        .header("if-match", "*")
        .json(&json!({"status": "failed"}))
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    problem(app.delete(&path, &bob).await, 404, "not_found").await;
    let list = json_of(app.get("/v1/analyses", &bob).await, 200).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(list["nextCursor"], Value::Null);
    // Bob cannot use Alice's persona either.
    let persona = json_of(
        app.post("/v1/personas", &alice, &crate::api_personas::new_persona("Mine"))
            .await,
        201,
    )
    .await;
    let mut b = new_analysis("processing", "A");
    b["input"]["customPersonaId"] = persona["personaId"].clone();
    let p = problem(app.post("/v1/analyses", &bob, &b).await, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "input.customPersonaId");
    // And Alice's analysis is untouched.
    let still = json_of(app.get(&path, &alice).await, 200).await;
    assert_eq!(still["metadata"]["status"], "processing");
    // Expired and forged credentials are refused here too.
    let expired = app.token_with("alice", |c| {
        let now = jiff::Timestamp::now().as_second();
        c["exp"] = json!(now - 10);
        c["iat"] = json!(now - 100);
    });
    problem(app.get(&path, &expired).await, 401, "unauthenticated").await;
    problem(app.get(&path, "forged.token.value").await, 401, "unauthenticated").await;
}
crate::both_backends!(tenant_isolation);

async fn custom_persona_usage_is_counted(app: TestApp) {
    let token = app.token("pu");
    let p = json_of(
        app.post("/v1/personas", &token, &crate::api_personas::new_persona("Buyer"))
            .await,
        201,
    )
    .await;
    let mut b = new_analysis("processing", "Buyer");
    b["input"]["customPersonaId"] = p["personaId"].clone();
    create(&app, &token, &b).await;
    create(&app, &token, &b).await;
    let p2 = json_of(
        app.get(
            &format!("/v1/personas/{}", p["personaId"].as_str().unwrap()),
            &token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(p2["metadata"]["usageCount"], 2);
    assert!(p2["metadata"]["lastUsedAt"].is_string());
}
crate::both_backends!(custom_persona_usage_is_counted);

async fn page_fifty_costs_the_same_reads_as_page_one(app: TestApp) {
    let token = app.token("deep");
    json_of(app.get("/v1/me", &token).await, 200).await;
    // Seed 60 analyses directly (the quota is not what is tested here).
    let user = funnelflow::store::DocPath::root("users", "deep").unwrap();
    let mut writes = Vec::new();
    for i in 0..60 {
        let mut a = new_analysis("processing", "P");
        let id = format!("a{i:03}");
        a["analysisId"] = json!(id);
        a["userId"] = json!("deep");
        a["metadata"] = json!({"createdAt": null, "updatedAt": null, "status": "processing", "aiModel": "m", "version": "v", "requestId": a["requestId"]});
        a["sharing"] = json!({"isPublic": false, "shareToken": null, "sharedAt": null});
        a["results"] = Value::Null;
        let obj = a.as_object_mut().unwrap();
        obj.remove("status");
        obj.remove("aiModel");
        obj.remove("version");
        obj.remove("requestId");
        let mut fields = funnelflow::store::value::as_map(&funnelflow::store::value::from_json(&a))
            .cloned()
            .unwrap();
        let ts =
            funnelflow::store::value::timestamp(jiff::Timestamp::from_second(1_700_000_000 + i).unwrap());
        funnelflow::store::value::set_path(&mut fields, "metadata.createdAt", ts.clone());
        funnelflow::store::value::set_path(&mut fields, "metadata.updatedAt", ts);
        writes.push(funnelflow::store::Write::set(
            user.child("analyses", &id).unwrap(),
            fields,
        ));
    }
    app.store().commit(writes).await.unwrap();
    // Queries, less the invalidation feed's own reads (it runs beside the requests).
    let reads = || {
        let text = app.state.metrics.render();
        let count = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        count("funnelflow_store_operation_duration_seconds_count{op=\"query\"")
            - count("funnelflow_feed_events_total{event=\"read\"}")
    };
    let mut cursor: Option<String> = None;
    let mut per_page = Vec::new();
    for _ in 0..55 {
        let url = match &cursor {
            Some(c) => format!("/v1/analyses?limit=1&persona=P&cursor={c}"),
            None => "/v1/analyses?limit=1&persona=P".to_owned(),
        };
        let before = reads();
        let page = json_of(app.get(&url, &token).await, 200).await;
        per_page.push(reads() - before);
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert!(
        per_page.iter().all(|n| *n == 1),
        "one query per page, whatever its depth: {per_page:?}"
    );
}
crate::both_backends!(page_fifty_costs_the_same_reads_as_page_one);

async fn if_match_on_missing_or_foreign_is_404(app: TestApp) {
    let alice = app.token("im-alice");
    let bob = app.token("im-bob");
    let a = create(&app, &alice, &new_analysis("processing", "A")).await;
    let path = format!("/v1/analyses/{}", a["analysisId"].as_str().unwrap());
    for tag in [
        "garbage",
        "W/\"1.000000000\"",
        "\"1.000000000\", \"2.000000000\"",
        "*",
    ] {
        for target in ["/v1/analyses/nope", path.as_str()] {
            let who = if target == path { &bob } else { &alice };
            let res = app
                .request(Method::DELETE, target, Some(who))
                .header("if-match", tag)
                .send()
                .await
                .unwrap();
            problem(res, 404, "not_found").await;
            let res = app
                .request(Method::PATCH, target, Some(who))
                .header("if-match", tag)
                .json(&json!({"status": "failed"}))
                .send()
                .await
                .unwrap();
            problem(res, 404, "not_found").await;
        }
    }
    // On the owner's existing analysis a tag that never matches is 412, `*` matches.
    let res = app
        .request(Method::DELETE, &path, Some(&alice))
        .header("if-match", "garbage")
        .send()
        .await
        .unwrap();
    problem(res, 412, "precondition_failed").await;
    let res = app
        .request(Method::DELETE, &path, Some(&alice))
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}
crate::both_backends!(if_match_on_missing_or_foreign_is_404);

async fn hostile_bodies_are_clear_4xx(app: TestApp) {
    let token = app.token("hostile");
    let send = |body: &str| {
        app.request(Method::POST, "/v1/analyses", Some(&token))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    // An array where an object belongs, at the top or nested: 422 naming the place.
    let p = problem(
        send(r#"["x", "link", "P"]"#).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "");
    let mut b = new_analysis("processing", "P");
    b["input"] = json!(["https://example.com/offer", "link", "P"]);
    let p = problem(send(&b.to_string()).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "input");
    // A number no float holds is a bad value, not bad syntax.
    let mut b = new_analysis("completed", "P");
    b["results"]["confidence"] = json!(0.5);
    let text = b.to_string().replace("0.5", "1e400");
    problem(send(&text).await.unwrap(), 422, "validation_failed").await;
    let mut b = new_analysis("completed", "P");
    // Any finite positive duration is fine (api_contract.rs); zero is not.
    b["results"]["processingTimeMs"] = json!(0);
    let p = problem(send(&b.to_string()).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "results.processingTimeMs");
    for req_id in [
        "urn:uuid:6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a11",
        "{6f1c1f5e-3d7a-4c47-9c7e-2f1d7c0f6a11}",
        "6f1c1f5e3d7a4c479c7e2f1d7c0f6a11",
    ] {
        let mut b = new_analysis("processing", "P");
        b["requestId"] = json!(req_id);
        let p = problem(send(&b.to_string()).await.unwrap(), 422, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], "requestId");
    }
    // Nothing was stored.
    let list = json_of(app.get("/v1/analyses", &token).await, 200).await;
    assert_eq!(list["items"], json!([]));
}
crate::both_backends!(hostile_bodies_are_clear_4xx);

#[tokio::test]
async fn share_urls_use_the_configured_base_or_a_sane_host() {
    use crate::app::{Backend, spawn_app_with};
    let app = spawn_app_with(
        Backend::Embedded,
        &[("FUNNELFLOW_PUBLIC_URL", "https://api.funnelflow.test/")],
    )
    .await;
    let token = app.token("url");
    let a = create(&app, &token, &new_analysis("processing", "P")).await;
    let share = format!("/v1/analyses/{}/share", a["analysisId"].as_str().unwrap());
    let s = json_of(app.post(&share, &token, &json!({})).await, 200).await;
    let t = s["shareToken"].as_str().unwrap();
    assert_eq!(
        s["url"],
        format!("https://api.funnelflow.test/v1/shared/analyses/{t}")
    );
    let res = app
        .client
        .get(app.url(&format!("/v1/shared/analyses/{t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");

    // Without a configured base, forwarded headers are ignored unless the proxy is trusted.
    let app = crate::app::spawn_app(Backend::Embedded).await;
    let token = app.token("url");
    let a = create(&app, &token, &new_analysis("processing", "P")).await;
    let share = format!("/v1/analyses/{}/share", a["analysisId"].as_str().unwrap());
    let res = app
        .request(Method::POST, &share, Some(&token))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "javascript")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let s = json_of(res, 200).await;
    let url = s["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
}
