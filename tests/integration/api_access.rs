//! The permission model, from the route table the service registers: every
//! route declares its access, the OpenAPI document describes it, each API-key
//! permission opens exactly its routes, and keys never reach the ID-token-only
//! and admin routes. Tenant isolation for keys: an under-scoped key or another
//! user's key changes nothing of this user's.

use funnelflow::http::access::Access;
use funnelflow::http::route_table;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_analyses::new_analysis;
use crate::api_keys::{all_permissions, key_with};
use crate::app::{TestApp, json_of, problem};

/// Makes `uid` an admin directly in the store (as `funnelflow admin grant-admin` does).
pub async fn make_admin(app: &TestApp, uid: &str) {
    use funnelflow::store::{DocPath, Fields, Write, value};
    let mut fields = Fields::new();
    fields.insert("role".into(), value::string("admin"));
    app.store()
        .commit(vec![Write::merge(
            DocPath::root("users", uid).unwrap(),
            fields,
            vec!["role".into()],
        )])
        .await
        .unwrap();
    app.state.users.invalidate(uid).await;
}

/// A concrete path for a route pattern.
fn concrete(path: &str) -> String {
    path.replace("{id}", "nosuchid")
        .replace("{token}", "nosuchtoken")
        .replace("{uid}", "nosuchuser")
        .replace("{docId}", "nosuchdoc")
}

fn method(m: &actix_web::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).unwrap()
}

#[test]
fn every_route_declares_its_access_and_the_document_says_it() {
    let table = route_table();
    assert!(table.len() > 30, "{}", table.len());
    let doc = funnelflow::http::openapi::document();
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (m, op) in ops.as_object().unwrap() {
            let route = table
                .iter()
                .find(|r| r.path == *path && r.method.as_str().eq_ignore_ascii_case(m))
                .unwrap_or_else(|| panic!("{m} {path} is documented but not routed"));
            documented += 1;
            let description = op["description"].as_str().unwrap_or_default();
            assert!(
                description.contains(&route.access.describe()),
                "{m} {path}: {description}"
            );
            let security = op.get("security").cloned().unwrap_or(Value::Null);
            match route.access {
                Access::Public => assert!(security.is_null(), "{m} {path}"),
                a if a.accepts_api_keys() => {
                    assert_eq!(security, json!([{"bearer": []}, {"apiKey": []}]), "{m} {path}")
                }
                _ => assert_eq!(security, json!([{"bearer": []}]), "{m} {path}"),
            }
        }
    }
    assert_eq!(documented, table.len(), "every route is documented");
    // API.md's permission of each route a key may use.
    let expect = |m: &str, p: &str| {
        table
            .iter()
            .find(|r| r.method.as_str() == m && r.path == p)
            .unwrap_or_else(|| panic!("{m} {p} is not routed"))
            .access
    };
    use funnelflow::domain::api_keys::Permission as P;
    for (m, p, a) in [
        ("GET", "/v1/me", Access::Permission(P::ProfileRead)),
        ("GET", "/v1/me/subscription", Access::Permission(P::ProfileRead)),
        ("PATCH", "/v1/me", Access::IdTokenOnly),
        ("GET", "/v1/analyses", Access::Permission(P::AnalysesRead)),
        ("POST", "/v1/analyses", Access::Permission(P::AnalysesWrite)),
        (
            "POST",
            "/v1/analyses/batch-get",
            Access::Permission(P::AnalysesRead),
        ),
        (
            "DELETE",
            "/v1/analyses/{id}/share",
            Access::Permission(P::AnalysesWrite),
        ),
        (
            "GET",
            "/v1/personas/templates",
            Access::Permission(P::PersonasRead),
        ),
        ("PATCH", "/v1/personas/{id}", Access::Permission(P::PersonasWrite)),
        ("POST", "/v1/api-keys", Access::IdTokenOnly),
        ("GET", "/v1/api-keys", Access::IdTokenOnly),
        ("DELETE", "/v1/api-keys/{id}", Access::IdTokenOnly),
        ("GET", "/v1/shared/analyses/{token}", Access::Public),
        ("GET", "/v1/system/{docId}", Access::SignedIn),
    ] {
        assert_eq!(expect(m, p), a, "{m} {p}");
    }
    for r in &table {
        if r.path.starts_with("/v1/admin/") {
            assert_eq!(r.access, Access::Admin, "{} {}", r.method, r.path);
        }
    }
}

async fn send(app: &TestApp, m: Method, path: &str, key: &str) -> reqwest::Response {
    let rb = app.request(m.clone(), path, Some(key));
    let rb = if m == Method::GET || m == Method::DELETE {
        rb
    } else {
        rb.json(&json!({}))
    };
    rb.send().await.unwrap()
}

/// Every route of the table, with a key of each single permission: its own
/// routes get past the check (whatever they answer then), every other route
/// is 403. ID-token-only and admin routes are 403 even to an admin's key
/// holding every permission; public routes ignore keys.
async fn each_permission_opens_exactly_its_routes(app: TestApp) {
    let token = app.token("perm");
    make_admin(&app, "perm").await;
    let mut keys = Vec::new();
    for p in all_permissions() {
        keys.push((p, key_with(&app, &token, &[p]).await));
    }
    let all = key_with(&app, &token, &all_permissions()).await;
    let before = json_of(app.get("/v1/me", &token).await, 200).await;
    for route in route_table() {
        let path = concrete(&route.path);
        let m = method(&route.method);
        match route.access {
            Access::Public => continue,
            Access::SignedIn => {
                for (_, k) in &keys {
                    let s = send(&app, m.clone(), &path, k).await.status();
                    assert!(s != 403 && s != 401, "{m} {path}: {s}");
                }
            }
            Access::Permission(needed) => {
                for (p, k) in &keys {
                    let res = send(&app, m.clone(), &path, k).await;
                    let s = res.status().as_u16();
                    if *p == needed.as_str() {
                        assert!(s != 403 && s != 401 && s < 500, "{m} {path} with {p}: {s}");
                    } else {
                        problem(res, 403, "forbidden").await;
                    }
                }
            }
            Access::IdTokenOnly | Access::Admin => {
                let res = send(&app, m.clone(), &path, &all).await;
                let p = problem(res, 403, "forbidden").await;
                assert!(
                    p["detail"].as_str().unwrap().contains("API key"),
                    "{m} {path}: {p}"
                );
                // X-API-Key too.
                let res = app
                    .request(m.clone(), &path, None)
                    .header("x-api-key", &all)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                problem(res, 403, "forbidden").await;
            }
        }
    }
    // Nothing changed through the refused requests.
    let after = json_of(app.get("/v1/me", &token).await, 200).await;
    assert_eq!(before["name"], after["name"]);
    assert_eq!(after["role"], "admin");
    let keys_now = json_of(app.get("/v1/api-keys?limit=100", &token).await, 200).await;
    assert_eq!(keys_now["items"].as_array().unwrap().len(), 8);
    assert!(
        keys_now["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["isActive"] == true)
    );
}
crate::both_backends!(each_permission_opens_exactly_its_routes);

/// Read scopes cannot write, and another user's key reaches nothing of this user.
async fn keys_cannot_touch_what_they_may_not(app: TestApp) {
    let (alice, bob) = (app.token("isoa"), app.token("isob"));
    let a = json_of(
        app.post("/v1/analyses", &alice, &new_analysis("processing", "Founder"))
            .await,
        201,
    )
    .await;
    let a_id = a["analysisId"].as_str().unwrap().to_owned();
    let persona = json_of(
        app.post("/v1/personas", &alice, &crate::api_personas::new_persona("Mine"))
            .await,
        201,
    )
    .await;
    let p_id = persona["personaId"].as_str().unwrap().to_owned();
    let alice_read = key_with(&app, &alice, &["analyses:read", "personas:read", "profile:read"]).await;
    let bob_all = key_with(&app, &bob, &all_permissions()).await;

    // Alice's read-only key: reads, never writes.
    json_of(app.get(&format!("/v1/analyses/{a_id}"), &alice_read).await, 200).await;
    let writes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/analyses".into(),
            new_analysis("processing", "X"),
        ),
        (
            Method::PATCH,
            format!("/v1/analyses/{a_id}"),
            json!({"status": "failed"}),
        ),
        (Method::DELETE, format!("/v1/analyses/{a_id}"), json!(null)),
        (Method::POST, format!("/v1/analyses/{a_id}/share"), json!(null)),
        (
            Method::PATCH,
            format!("/v1/personas/{p_id}"),
            json!({"name": "Stolen"}),
        ),
        (Method::DELETE, format!("/v1/personas/{p_id}"), json!(null)),
        (Method::PATCH, "/v1/me".into(), json!({"name": "Stolen"})),
        (Method::DELETE, "/v1/api-keys/whatever".into(), json!(null)),
    ];
    for (m, path, body) in &writes {
        let mut rb = app.request(m.clone(), path, Some(&alice_read));
        if !body.is_null() {
            rb = rb.json(body);
        }
        problem(rb.send().await.unwrap(), 403, "forbidden").await;
    }
    // Bob's key with every permission: Alice's things do not exist for it.
    problem(
        app.get(&format!("/v1/analyses/{a_id}"), &bob_all).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get(&format!("/v1/personas/{p_id}"), &bob_all).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.patch(
            &format!("/v1/analyses/{a_id}"),
            &bob_all,
            &json!({"status": "failed"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.delete(&format!("/v1/analyses/{a_id}"), &bob_all).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.delete(&format!("/v1/personas/{p_id}"), &bob_all).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.post(&format!("/v1/analyses/{a_id}/share"), &bob_all, &json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    let batch = json_of(
        app.post("/v1/analyses/batch-get", &bob_all, &json!({"ids": [a_id]}))
            .await,
        200,
    )
    .await;
    assert_eq!(batch["missing"], json!([a_id]));
    let listed = json_of(app.get("/v1/analyses", &bob_all).await, 200).await;
    assert_eq!(listed["items"], json!([]));
    let me = json_of(app.get("/v1/me", &bob_all).await, 200).await;
    assert_eq!(me["userId"], "isob");

    // Alice's data is as it was.
    let still = json_of(app.get(&format!("/v1/analyses/{a_id}"), &alice).await, 200).await;
    assert_eq!(still["metadata"]["status"], "processing");
    assert_eq!(still["sharing"]["isPublic"], false);
    let p = json_of(app.get(&format!("/v1/personas/{p_id}"), &alice).await, 200).await;
    assert_eq!(p["name"], "Mine");
    let me = json_of(app.get("/v1/me", &alice).await, 200).await;
    assert_eq!(me["name"], "User isoa");
    let list = json_of(app.get("/v1/analyses", &alice).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
crate::both_backends!(keys_cannot_touch_what_they_may_not);
