//! `/v1/analyses/trends` from the per-day counters: thousands of analyses
//! (older ones counted by the backfill migration, newer ones by the create,
//! completion and delete transactions) give exactly what a recount gives.

use std::collections::BTreeMap;

use firestore::FirestoreTimestamp;
use funnelflow::domain::analyses::{
    Analysis, AnalysisInput, AnalysisMetadata, Finding, InputType, Results, Sharing, Status,
};
use funnelflow::domain::trends;
use funnelflow::store::{self, DocPath, Query, Write};
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::app::{TestApp, json_of};

/// Persona names Firestore field paths would trip on, and ordinary ones.
const PERSONAS: [&str; 6] = [
    "Founder",
    "a.b",
    "__name__",
    "`tick`",
    "ñandú 😀",
    "Marketing Manager",
];
const SEEDED: usize = 2_500;

fn seeded_analysis(i: usize, uid: &str, now: jiff::Timestamp) -> Analysis {
    // Spread over ~400 days, so some fall outside even the longest window.
    let age = jiff::SignedDuration::from_secs((i as i64 * 13_841) % (400 * 86_400));
    let at = FirestoreTimestamp(now - age);
    let status = [Status::Completed, Status::Processing, Status::Failed][i % 3];
    let results = (status == Status::Completed).then(|| Results {
        analysis: vec![Finding {
            category: "c".into(),
            score: 50.0,
            finding: "f".into(),
            recommendation: "r".into(),
        }],
        sample_copy: None,
        confidence: (i % 100) as f64 / 100.0,
        processing_time_ms: 100.0 + (i % 37) as f64 * 10.5,
    });
    Analysis {
        analysis_id: format!("seed{i:05}"),
        user_id: Some(uid.into()),
        input: AnalysisInput {
            offer_details: "https://example.com/offer".into(),
            input_type: InputType::Link,
            persona: PERSONAS[i % PERSONAS.len()].into(),
            custom_persona_id: None,
        },
        results,
        metadata: AnalysisMetadata {
            created_at: at,
            updated_at: at,
            status,
            ai_model: "m".into(),
            version: "1".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
        },
        sharing: Sharing::default(),
    }
}

/// The trends of `days`, recounted from every stored analysis of `uid`.
async fn recount(app: &TestApp, uid: &str, days: u32) -> Value {
    let user = DocPath::root("users", uid).unwrap();
    let docs = app
        .store()
        .query(&Query::collection(Some(&user), "analyses"))
        .await
        .unwrap();
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(days) - 1))
        .unwrap();
    let (mut total, mut n, mut conf, mut time) = (0u64, 0u64, 0.0, 0.0);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_persona: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    for d in &docs {
        let a: Analysis = d.decode().unwrap();
        let day = a.metadata.created_at.0.to_zoned(jiff::tz::TimeZone::UTC).date();
        if day < first {
            continue;
        }
        total += 1;
        *by_status.entry(a.metadata.status.as_str().into()).or_default() += 1;
        *by_persona.entry(a.input.persona.clone()).or_default() += 1;
        *by_day.entry(day.to_string()).or_default() += 1;
        if let Some(r) = &a.results {
            n += 1;
            conf += r.confidence;
            time += r.processing_time_ms;
        }
    }
    let mut days_list = Vec::new();
    let mut d = first;
    while d <= today {
        days_list
            .push(json!({"date": d.to_string(), "count": by_day.get(&d.to_string()).copied().unwrap_or(0)}));
        d = d.tomorrow().unwrap();
    }
    json!({
        "days": days, "total": total, "byStatus": by_status, "byPersona": by_persona, "byDay": days_list,
        "averageConfidence": (n > 0).then(|| conf / n as f64),
        "averageProcessingTimeMs": (n > 0).then(|| time / n as f64),
    })
}

/// Equal, averages within floating-point summation error.
fn assert_same(got: &Value, want: &Value) {
    for avg in ["averageConfidence", "averageProcessingTimeMs"] {
        match (got[avg].as_f64(), want[avg].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{avg}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{avg}"),
        }
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["averageConfidence"] = Value::Null;
        v["averageProcessingTimeMs"] = Value::Null;
        v
    };
    assert_eq!(strip(got), strip(want));
}

async fn check(app: &TestApp, token: &str, uid: &str) {
    for days in [365, 30, 7, 1, 200] {
        let got = json_of(
            app.get(&format!("/v1/analyses/trends?days={days}"), token).await,
            200,
        )
        .await;
        assert_same(&got, &recount(app, uid, days).await);
    }
}

async fn trends_equal_a_recount(app: TestApp) {
    let uid = "trender";
    let token = app.token(uid);
    // Provision the profile, then seed analyses straight into the store (as
    // data written before the counters existed), and backfill their counters.
    json_of(app.get("/v1/me", &token).await, 200).await;
    let user = DocPath::root("users", uid).unwrap();
    let now = jiff::Timestamp::now();
    let writes: Vec<Write> = (0..SEEDED)
        .map(|i| {
            let a = seeded_analysis(i, uid, now);
            Write::create(
                user.child("analyses", &a.analysis_id).unwrap(),
                store::encode(&a).unwrap(),
            )
        })
        .collect();
    store::commit_chunked(app.store().as_ref(), writes).await.unwrap();
    let counted = trends::backfill(app.store().as_ref()).await.unwrap();
    assert_eq!(counted, SEEDED as u64);
    check(&app, &token, uid).await;
    // Running it again counts nothing twice.
    assert_eq!(trends::backfill(app.store().as_ref()).await.unwrap(), 0);

    // New analyses are counted by their create, completion and delete.
    let mut created = Vec::new();
    for (status, persona) in [
        ("processing", "a.b"),
        ("processing", "New one"),
        ("completed", "__name__"),
    ] {
        let r = json_of(
            app.post("/v1/analyses", &token, &new_analysis(status, persona))
                .await,
            201,
        )
        .await;
        created.push(r["analysisId"].as_str().unwrap().to_owned());
    }
    let done = json!({"status": "completed", "results": crate::api_analyses::results(false)});
    json_of(
        app.patch(&format!("/v1/analyses/{}", created[0]), &token, &done)
            .await,
        200,
    )
    .await;
    check(&app, &token, uid).await;
    // Deleting a new and a backfilled analysis uncounts them (the persona "New one" disappears).
    for id in [created[1].as_str(), "seed00000", "seed00003"] {
        let res = app.delete(&format!("/v1/analyses/{id}"), &token).await;
        assert_eq!(res.status().as_u16(), 204, "delete {id}");
    }
    let t = json_of(app.get("/v1/analyses/trends?days=7", &token).await, 200).await;
    assert!(t["byPersona"].get("New one").is_none(), "{t}");
    check(&app, &token, uid).await;
    // The counters live under the user (so erasure finds them).
    let below = store::all_descendants(app.store().as_ref(), &user).await.unwrap();
    assert!(below.iter().any(|p| p.collection_id() == trends::COLLECTION));
}
crate::both_backends!(trends_equal_a_recount);

/// `processingTimeMs` is bounded (0 < t ≤ a day) at input, on create and on
/// completion; counters already holding out-of-range or non-finite sums (data
/// from before the bound) still give finite averages within the bounds.
async fn out_of_range_numbers_never_break_trends(app: TestApp) {
    let uid = "overflow";
    let token = app.token(uid);
    let with_time = |ms: Value| {
        let mut b = new_analysis("completed", "Founder");
        b["results"]["processingTimeMs"] = ms;
        b
    };
    // No upper bound of our own (API.md asks > 0): values near f64::MAX are
    // accepted, and their sums saturate instead of overflowing.
    for bad in [json!(0), json!(-1)] {
        let p = crate::app::problem(
            app.post("/v1/analyses", &token, &with_time(bad.clone())).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "results.processingTimeMs", "{bad}: {p}");
    }
    for big in [json!(1.7e308), json!(1.7e308)] {
        json_of(app.post("/v1/analyses", &token, &with_time(big)).await, 201).await;
    }
    let t = json_of(app.get("/v1/analyses/trends?days=3", &token).await, 200).await;
    let avg = t["averageProcessingTimeMs"]
        .as_f64()
        .unwrap_or_else(|| panic!("{t}"));
    assert!(avg.is_finite() && avg > 1e307, "{t}");

    // Stored directly: analyses near f64::MAX (their sum overflows to
    // infinity), and day counters holding infinity and NaN outright.
    let user = DocPath::root("users", uid).unwrap();
    let now = jiff::Timestamp::now();
    let writes: Vec<Write> = (0..3)
        .map(|i| {
            let mut a = seeded_analysis(0, uid, now);
            a.analysis_id = format!("huge{i}");
            if let Some(r) = a.results.as_mut() {
                r.processing_time_ms = 1.7e308;
                r.confidence = 1.0;
            }
            Write::create(
                user.child("analyses", &a.analysis_id).unwrap(),
                store::encode(&a).unwrap(),
            )
        })
        .collect();
    store::commit_chunked(app.store().as_ref(), writes).await.unwrap();
    assert_eq!(trends::backfill(app.store().as_ref()).await.unwrap(), 3);
    for (day, conf, time) in [(3, f64::INFINITY, f64::NAN), (4, f64::NAN, f64::NEG_INFINITY)] {
        let date = trends::day_of(now - jiff::SignedDuration::from_hours(24 * day));
        let mut f = store::Fields::new();
        f.insert("day".into(), store::value::string(date.clone()));
        f.insert("total".into(), store::value::int(1));
        f.insert("withResults".into(), store::value::int(1));
        f.insert("confidenceSum".into(), store::value::double(conf));
        f.insert("processingTimeMsSum".into(), store::value::double(time));
        app.store()
            .commit(vec![Write::set(user.child("trendDays", &date).unwrap(), f)])
            .await
            .unwrap();
    }
    let check = async |days: u32| {
        let res = app.get(&format!("/v1/analyses/trends?days={days}"), &token).await;
        let t = json_of(res, 200).await;
        for (avg, max) in [("averageConfidence", 1.0), ("averageProcessingTimeMs", f64::MAX)] {
            let v = t[avg]
                .as_f64()
                .unwrap_or_else(|| panic!("{avg} of {days} days: {t}"));
            assert!(
                v.is_finite() && (0.0..=max).contains(&v),
                "{avg} of {days} days: {t}"
            );
        }
    };
    // 7 first: longer than the window cached above, so read afresh.
    for days in [7, 1] {
        check(days).await;
    }
    // Uncounting one of them leaves the day's sum at infinity: still finite answers.
    let res = app.delete("/v1/analyses/huge0", &token).await;
    assert_eq!(res.status().as_u16(), 204);
    for days in [1, 7] {
        check(days).await;
    }
}
crate::both_backends!(out_of_range_numbers_never_break_trends);
