//! `PUT /v1/admin/system/personaTemplates` holds the body to the templates'
//! shape (what `GET /v1/personas/templates` serves as personas): allowed keys,
//! types, sizes, list lengths, at most 100 templates, unique ids; 422 naming
//! the field, and nothing stored.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_access::make_admin;
use crate::app::{TestApp, json_of, problem};

const PATH: &str = "/v1/admin/system/personaTemplates";

fn template(id: &str) -> Value {
    json!({
        "templateId": id,
        "name": "Agency Owner",
        "description": "Runs a small agency and resells tools to clients.",
        "characteristics": {
            "demographics": {"ageRange": "30-50", "occupation": "Agency owner", "income": null},
            "psychographics": {"values": ["reputation"], "interests": ["automation"], "challenges": []},
            "behavior": {"decisionMaking": "quick", "mediaConsumption": ["LinkedIn"], "purchasingTriggers": ["white label"]},
        },
    })
}

async fn put(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.request(Method::PUT, PATH, Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn persona_templates_are_validated(app: TestApp) {
    let (admin, user) = (app.token("curator"), app.token("reader"));
    json_of(app.get("/v1/me", &admin).await, 200).await;
    make_admin(&app, "curator").await;
    let before = json_of(app.get("/v1/personas/templates", &user).await, 200).await;
    assert!(!before["items"].as_array().unwrap().is_empty());

    // Fields that may be absent, as for personas: characteristics' parts.
    let mut minimal = template("minimal");
    minimal["characteristics"] = json!({});
    let good = json!({"items": [template("agency-owner"), minimal]});
    assert_eq!(json_of(put(&app, &admin, &good).await, 200).await, good);
    assert_eq!(
        json_of(app.get("/v1/personas/templates", &user).await, 200).await,
        good
    );
    // At most 100; none is fine too.
    let hundred: Vec<Value> = (0..100).map(|i| template(&format!("t{i}"))).collect();
    json_of(put(&app, &admin, &json!({"items": hundred})).await, 200).await;
    json_of(put(&app, &admin, &json!({"items": []})).await, 200).await;
    json_of(put(&app, &admin, &good).await, 200).await;

    type Edit = Box<dyn Fn(&mut Value)>;
    let one = |edit: Edit| -> Edit { Box::new(move |b: &mut Value| edit(&mut b["items"][1])) };
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|b| *b = json!({})), "items"),
        (Box::new(|b| *b = json!({"items": {}})), "items"),
        (Box::new(|b| b["extra"] = json!(1)), "extra"),
        (
            Box::new(|b| {
                b["items"] = json!((0..101).map(|i| template(&format!("t{i}"))).collect::<Vec<_>>())
            }),
            "items",
        ),
        (
            Box::new(|b| b["items"][1]["templateId"] = json!("agency-owner")),
            "items[1].templateId",
        ),
        (
            one(Box::new(|t| t["templateId"] = json!("has space"))),
            "items[1].templateId",
        ),
        (
            one(Box::new(|t| t["templateId"] = json!(7))),
            "items[1].templateId",
        ),
        (
            one(Box::new(|t| {
                t.as_object_mut().unwrap().remove("name");
            })),
            "items[1].name",
        ),
        (one(Box::new(|t| t["name"] = json!(""))), "items[1].name"),
        (
            one(Box::new(|t| t["name"] = json!("n".repeat(101)))),
            "items[1].name",
        ),
        (
            one(Box::new(|t| t["description"] = json!("short"))),
            "items[1].description",
        ),
        (
            one(Box::new(|t| t["description"] = json!(null))),
            "items[1].description",
        ),
        (
            one(Box::new(|t| t["isDefault"] = json!(true))),
            "items[1].isDefault",
        ),
        (
            one(Box::new(|t| t["characteristics"] = json!([]))),
            "items[1].characteristics",
        ),
        (
            one(Box::new(|t| t["characteristics"]["mood"] = json!("x"))),
            "items[1].characteristics.mood",
        ),
        (
            one(Box::new(|t| {
                t["characteristics"]["demographics"] = json!({"ageRange": "a".repeat(201)})
            })),
            "items[1].characteristics.demographics.ageRange",
        ),
        (
            one(Box::new(|t| {
                t["characteristics"]["psychographics"] = json!({"values": vec!["v"; 21]})
            })),
            "items[1].characteristics.psychographics.values",
        ),
        (
            one(Box::new(|t| {
                t["characteristics"]["behavior"] = json!({"mediaConsumption": ["m".repeat(201)]})
            })),
            "items[1].characteristics.behavior.mediaConsumption",
        ),
        (
            one(Box::new(|t| {
                t["characteristics"]["behavior"] = json!({"purchasingTriggers": [1]})
            })),
            "items[1].characteristics.behavior.purchasingTriggers[0]",
        ),
    ];
    let mut body = good.clone();
    body["items"] = json!([template("agency-owner"), template("second")]);
    for (edit, field) in cases {
        let mut b = body.clone();
        edit(&mut b);
        let p = problem(put(&app, &admin, &b).await, 422, "validation_failed").await;
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "expected an error on {field}: {p}"
        );
    }
    // Nothing of that was stored.
    assert_eq!(
        json_of(app.get("/v1/personas/templates", &user).await, 200).await,
        good
    );
    // Other system documents stay free-form.
    json_of(
        app.request(Method::PUT, "/v1/admin/system/flags", Some(&admin))
            .json(&json!({"items": 1, "any": {"thing": true}}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
}
crate::both_backends!(persona_templates_are_validated);
