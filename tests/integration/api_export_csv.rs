//! GDPR export as CSV (`format=csv`) through real HTTP: a ZIP of exactly six
//! files, each strict RFC 4180 CSV holding what the JSON export of the same
//! account holds (nasty values, dotted columns, JSON cells included), across
//! several store pages; no stored hash, nobody else's data; the same
//! permission and rate limit as the JSON export.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use funnelflow::store::{DocPath, Fields, Write, value};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::api_keys::key_with;
use crate::api_personas::new_persona;
use crate::app::{Backend, TestApp, json_of, problem, spawn_app_with};

const FILES: [&str; 6] = [
    "profile.csv",
    "analyses.csv",
    "personas.csv",
    "api_keys.csv",
    "usage_analytics.csv",
    "audit_trail.csv",
];
/// JSON export key of each file.
const SECTIONS: [&str; 6] = [
    "userData",
    "analysisHistory",
    "customPersonas",
    "apiKeys",
    "usageAnalytics",
    "auditTrail",
];
/// Commas, quotes, CR/LF, non-ASCII, and a formula.
const NASTY: &str = "=HYPERLINK(\"http://x\",\"a, b\")\r\n\"quoted\", ünïcødé ✓\nend";

/// The archive's files in order, by name, and its raw bytes.
async fn zip_export(
    app: &TestApp,
    auth: Option<&str>,
    key: Option<&str>,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut rb = app.request(Method::GET, "/v1/me/export?format=csv", auth);
    if let Some(k) = key {
        rb = rb.header("x-api-key", k);
    }
    let res = rb.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let cd = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(cd.starts_with("attachment") && cd.contains(".zip\""), "{cd}");
    let bytes = res.bytes().await.unwrap().to_vec();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
    let files = (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            (f.name().unwrap().into_owned(), text)
        })
        .collect();
    (files, bytes)
}

/// Strict RFC 4180 parse: every record as wide as the header. Each row as
/// column → cell, empty cells left out (CSV cannot tell them from null).
fn parse(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(false)
        .has_headers(true)
        .from_reader(text.as_bytes());
    if text.is_empty() {
        return Vec::new();
    }
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), header.len());
            header
                .iter()
                .zip(rec.iter())
                .filter(|(_, c)| !c.is_empty())
                .map(|(h, c)| (h.clone(), c.to_owned()))
                .collect()
        })
        .collect()
}

/// The dotted column name of a path (segments holding `.` or `` ` `` quoted).
fn column(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if s.is_empty() || s.contains('.') || s.contains('`') {
                format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"))
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A JSON export item's leaves (non-empty maps split, everything else one
/// value), null and "" left out.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(k.clone());
                leaves(c, path, out);
                path.pop();
            }
        }
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        _ => {
            out.insert(column(path), v.clone());
        }
    }
}

/// A CSV row holds exactly the JSON item's values: strings verbatim, other
/// values as JSON that parses back to the same value.
fn same(row: &BTreeMap<String, String>, item: &Value) -> bool {
    let mut want = BTreeMap::new();
    leaves(item, &mut Vec::new(), &mut want);
    row.len() == want.len()
        && want.iter().all(|(col, v)| {
            row.get(col).is_some_and(|cell| match v {
                Value::String(s) => cell == s,
                _ => serde_json::from_str::<Value>(cell).ok().as_ref() == Some(v),
            })
        })
}

async fn seed(app: &TestApp, token: &str, other: &str) {
    let mut nasty_analysis = new_analysis("completed", NASTY);
    nasty_analysis["results"]["analysis"][0]["finding"] = json!(NASTY);
    for body in [new_analysis("processing", "founder"), nasty_analysis] {
        json_of(app.post("/v1/analyses", token, &body).await, 201).await;
    }
    let mut persona = new_persona("=1+1, \"Mine\"");
    persona["description"] = json!(NASTY);
    json_of(app.post("/v1/personas", token, &persona).await, 201).await;
    json_of(
        app.post(
            "/v1/events",
            token,
            &json!({"events": [
                {"eventType": "a", "eventData": {}},
                {"eventType": "b", "eventData": {
                    "nested": {"deep": {"x": 1.5}, "s": NASTY},
                    "list": [1, "two", {"three": [3]}],
                    "a.b": "dotted key",
                    "a": {"b": "nested a.b"},
                    "flag": false,
                    "none": null,
                    "emptyMap": {},
                    "emptyString": "",
                }},
            ]}),
        )
        .await,
        202,
    )
    .await;
    json_of(
        app.patch(
            "/v1/me",
            token,
            &json!({"name": NASTY, "preferences": {"theme": "dark", "defaultPersona": "-2+3"}}),
        )
        .await,
        200,
    )
    .await;
    json_of(
        app.post(
            "/v1/analyses",
            other,
            &new_analysis("completed", "stranger-persona"),
        )
        .await,
        201,
    )
    .await;
    json_of(app.post("/v1/personas", other, &new_persona("Theirs")).await, 201).await;
    json_of(
        app.post(
            "/v1/events",
            other,
            &json!({"events": [{"eventType": "stranger_event", "eventData": {"who": "stranger"}}]}),
        )
        .await,
        202,
    )
    .await;
}

async fn csv_export_matches_the_json_export(app: TestApp) {
    let (token, other) = (app.token("exporter"), app.token("stranger"));
    seed(&app, &token, &other).await;
    let key = key_with(&app, &token, &["export:read"]).await;
    let weak_key = key_with(&app, &token, &["profile:read", "analyses:read"]).await;
    // More analyses than one store page holds (both passes cross pages).
    let writes: Vec<Write> = (0..450)
        .map(|i| {
            let mut f = Fields::new();
            f.insert("analysisId".into(), value::string(format!("bulk{i:04}")));
            f.insert("userId".into(), value::string("exporter"));
            f.insert("metadata".into(), value::from_json(&json!({"n": i, "tags": [i]})));
            Write::set(
                DocPath::parse(&format!("users/exporter/analyses/bulk{i:04}")).unwrap(),
                f,
            )
        })
        .collect();
    app.store().commit(writes).await.unwrap();

    let (files, bytes) = zip_export(&app, Some(&token), None).await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FILES);
    // Taken after the CSV export: its audit trail also holds that export's record.
    let res = app.get("/v1/me/export?format=json", &token).await;
    assert_eq!(res.status(), 200);
    let json: Value = res.json().await.unwrap();

    // No stored hash, in the raw bytes or any file.
    let hashes: Vec<String> = app
        .store()
        .query(&funnelflow::store::Query::collection(
            Some(&DocPath::parse("users/exporter").unwrap()),
            "apiKeys",
        ))
        .await
        .unwrap()
        .iter()
        .map(|d| value::as_str(d.field("secretHash").unwrap()).unwrap().to_owned())
        .collect();
    assert_eq!(hashes.len(), 2);
    let raw = String::from_utf8_lossy(&bytes);
    for (name, text) in &files {
        for needle in ["secretHash", "stranger", "Theirs"]
            .into_iter()
            .chain(hashes.iter().map(String::as_str))
        {
            assert!(
                !text.contains(needle) && !raw.contains(needle),
                "{needle} in {name}"
            );
        }
    }

    for ((name, text), section) in files.iter().zip(SECTIONS) {
        let rows = parse(text);
        let items = match &json[section] {
            Value::Array(a) => a.clone(),
            profile => vec![profile.clone()],
        };
        let unmatched: Vec<&BTreeMap<String, String>> = rows
            .iter()
            .filter(|r| !items.iter().any(|i| same(r, i)))
            .collect();
        assert!(unmatched.is_empty(), "{name}: {unmatched:#?}");
        if section == "auditTrail" {
            // The JSON export's own record came after the CSV export.
            assert_eq!(rows.len() + 1, items.len(), "{name}");
            assert!(rows.iter().any(|r| {
                r.get("action").map(String::as_str) == Some("user.export")
                    && r.get("details.format").map(String::as_str) == Some("csv")
            }));
        } else {
            assert_eq!(rows.len(), items.len(), "{name}");
        }
    }
    let section = |name: &str| parse(&files.iter().find(|(n, _)| n == name).unwrap().1);
    assert_eq!(section("analyses.csv").len(), 452);
    assert_eq!(section("profile.csv")[0]["name"], NASTY);
    assert_eq!(section("profile.csv")[0]["preferences.theme"], "dark");
    // Values are written verbatim (no formula escaping): `=`, `+`, `-` lead.
    assert_eq!(section("profile.csv")[0]["preferences.defaultPersona"], "-2+3");
    let personas = section("personas.csv");
    assert_eq!(personas[0]["name"], "=1+1, \"Mine\"");
    assert_eq!(personas[0]["description"], NASTY);
    assert_eq!(
        serde_json::from_str::<Value>(&personas[0]["characteristics.psychographics.values"]).unwrap(),
        json!(["speed"])
    );
    let events = section("usage_analytics.csv");
    let b = events.iter().find(|e| e["eventType"] == "b").unwrap();
    assert_eq!(b["eventData.nested.deep.x"], "1.5");
    assert_eq!(b["eventData.nested.s"], NASTY);
    assert_eq!(b["eventData.`a.b`"], "dotted key");
    assert_eq!(b["eventData.a.b"], "nested a.b");
    assert_eq!(b["eventData.flag"], "false");
    assert_eq!(b["eventData.emptyMap"], "{}");
    assert_eq!(
        serde_json::from_str::<Value>(&b["eventData.list"]).unwrap(),
        json!([1, "two", {"three": [3]}])
    );
    let a = events.iter().find(|e| e["eventType"] == "a").unwrap();
    assert_eq!(a["eventData"], "{}");
    // The header names the empty and null fields too (one strict width).
    let header = files[4].1.lines().next().unwrap();
    assert!(
        header.contains("eventData.none") && header.contains("eventData.emptyString"),
        "{header}"
    );
    // RFC 4180 on the wire: CRLF line ends, quotes doubled inside quoted fields.
    let text = &files[2].1;
    assert!(
        text.contains("\r\n") && text.contains("\"=1+1, \"\"Mine\"\"\""),
        "{text}"
    );

    // An API key needs export:read.
    let (with_key, _) = zip_export(&app, None, Some(&key)).await;
    assert_eq!(with_key.len(), 6);
    let r = app
        .request(Method::GET, "/v1/me/export?format=csv", None)
        .header("x-api-key", &weak_key)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
}
crate::both_backends!(csv_export_matches_the_json_export);

/// A new account: empty sections are empty files, still six of them.
async fn empty_sections_are_empty_files(app: TestApp) {
    let token = app.token("fresh");
    let (files, _) = zip_export(&app, Some(&token), None).await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FILES);
    for (name, text) in &files {
        match name.as_str() {
            "profile.csv" => assert_eq!(parse(text).len(), 1),
            "audit_trail.csv" => assert_eq!(parse(text).len(), 1, "its own export record"),
            _ => assert!(text.is_empty(), "{name}: {text}"),
        }
    }
}
crate::both_backends!(empty_sections_are_empty_files);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_json_share_the_export_rate_limit() {
    let app = spawn_app_with(Backend::Embedded, &[("FUNNELFLOW_EXPORT_RATE_LIMIT", "2/1h")]).await;
    let token = app.token("eager");
    zip_export(&app, Some(&token), None).await;
    assert_eq!(app.get("/v1/me/export", &token).await.status(), 200);
    problem(
        app.get("/v1/me/export?format=csv", &token).await,
        429,
        "rate_limited",
    )
    .await;
    problem(
        app.get("/v1/me/export?format=xml", &token).await,
        400,
        "bad_request",
    )
    .await;
}
