//! The served OpenAPI 3.1 document. Paths, parameters and schemas come from
//! the handlers' and types' utoipa attributes (next to the `validator` rules
//! they describe); this module adds what holds for every operation alike,
//! derived from the operation's shape: the error answers the shared layers
//! give (authentication, rate limit, body reading, query and path parsing,
//! store outages) as `application/problem+json`, closed request objects
//! (`http::strict` refuses unknown fields), and the cross-field rules of the
//! analysis bodies (`check_input`, `check_new`, `check_completion`).
//! `scripts/fuzz-api.sh` holds the service to this document.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::access::Access;
use super::{admin, analyses, api_keys, events, gdpr, health, me, personas, principal};

#[derive(OpenApi)]
#[openapi(
    info(title = "Funnel Flow API", version = "1.0.0",
        description = include_str!("../../docs/api-decisions.md")),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi,
        me::get_me, me::patch_me, me::get_subscription,
        analyses::create, analyses::list_analyses, analyses::get, analyses::complete, analyses::delete,
        analyses::batch_get, analyses::trends, analyses::share, analyses::unshare, analyses::shared,
        personas::create, personas::list_personas, personas::templates, personas::get, personas::patch,
        personas::delete,
        api_keys::create, api_keys::list_keys, api_keys::get, api_keys::revoke,
        admin::list_users, admin::get_user, admin::put_subscription, admin::put_role, admin::audit,
        admin::put_system, admin::get_system,
        events::post_events, events::list_events, gdpr::erase_me, gdpr::erase_user, gdpr::export,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError, principal::Permission,
        crate::domain::persona_templates::PersonaTemplates)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Firebase ID token, or an API key `ffk_…` where the route accepts API keys",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key `ffk_<keyId>_<secret><checksum>` (also accepted as `Authorization: Bearer`)",
            ))),
        );
    }
}

/// The document `GET /openapi.json` serves (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// [`document`] without `/metrics`, for a service that serves it on a private
/// port only (`FUNNELFLOW_METRICS_PORT`): the public port answers 404 there.
pub fn document_without_metrics() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = document().clone();
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            paths.remove("/metrics");
        }
        doc
    })
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            close(schema);
        }
        cross_field_rules(schemas);
    }
    // Not an operation's answer but every path's (`http::routes`).
    let mut not_allowed =
        problem("`method_not_allowed`: the path does not take this method; `Allow` lists those it takes");
    not_allowed["headers"] = json!({ "Allow": { "schema": { "type": "string" }, "required": true } });
    if let Some(c) = doc.get_mut("components").and_then(Value::as_object_mut) {
        c.insert("responses".into(), json!({ "MethodNotAllowed": not_allowed }));
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        access_rules(paths);
        for ops in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in ops.values_mut().filter_map(Value::as_object_mut) {
                error_responses(op);
            }
        }
    }
    doc
}

/// Each operation's security and the access its route declares (`http::routes`):
/// the one table the service enforces is the one the document describes.
fn access_rules(paths: &mut Map<String, Value>) {
    for route in super::route_table() {
        let method = route.method.as_str().to_ascii_lowercase();
        let Some(op) = paths
            .get_mut(&route.path)
            .and_then(|p| p.get_mut(&method))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        match route.access {
            Access::Public => {
                op.remove("security");
            }
            a if a.accepts_api_keys() => {
                op.insert("security".into(), json!([{ "bearer": [] }, { "apiKey": [] }]));
            }
            _ => {
                op.insert("security".into(), json!([{ "bearer": [] }]));
            }
        }
        let described = match op.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d}\n\n{}", route.access.describe()),
            _ => route.access.describe(),
        };
        op.insert("description".into(), Value::String(described));
    }
}

/// Objects with declared properties take no others (request bodies go
/// through `http::strict`; responses serialize exactly their fields).
fn close(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            o.values_mut().for_each(close);
        }
        Value::Array(a) => a.iter_mut().for_each(close),
        _ => {}
    }
}

/// `schema` as one branch: `edit` adjusts a copy of its properties and required list.
fn branch(schema: &Value, edit: impl FnOnce(&mut Map<String, Value>, &mut Vec<Value>)) -> Value {
    let mut b = schema.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("description");
        let mut required = o
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(props) = o.get_mut("properties").and_then(Value::as_object_mut) {
            edit(props, &mut required);
        }
        o.insert("required".into(), Value::Array(required));
    }
    b
}

/// Replaces component `name` by a `oneOf` of branches made from it.
fn one_of(schemas: &mut Map<String, Value>, name: &str, branches: impl FnOnce(&Value) -> Vec<Value>) {
    if let Some(s) = schemas.get_mut(name) {
        let description = s.get("description").cloned();
        let mut new = json!({ "oneOf": branches(s) });
        if let Some(d) = description {
            new["description"] = d;
        }
        *s = new;
    }
}

/// The rules of `domain::analyses::{check_input, check_new, check_completion}`.
fn cross_field_rules(schemas: &mut Map<String, Value>) {
    // `results` exactly when the status is `completed`.
    let status_results = |s: &Value, other: &[&str]| {
        vec![
            branch(s, |p, req| {
                p.insert("status".into(), json!({ "const": "completed" }));
                req.push("results".into());
            }),
            branch(s, |p, req| {
                p.insert("status".into(), json!({ "enum": other }));
                p.remove("results");
                req.retain(|r| r != "results");
            }),
        ]
    };
    one_of(schemas, "NewAnalysis", |s| {
        status_results(s, &["processing", "failed"])
    });
    // Moving to `processing` is well formed, and refused (409) as a transition.
    one_of(schemas, "Completion", |s| {
        status_results(s, &["failed", "processing"])
    });
    // `image_url`: an http(s) URL.
    if let Some(o) = schemas
        .get_mut("ProfilePatch")
        .and_then(|s| s.pointer_mut("/properties/profileImage"))
        .and_then(Value::as_object_mut)
    {
        o.insert("format".into(), json!("uri"));
        o.insert("pattern".into(), json!(crate::domain::input::HTTP_URL_PATTERN));
    }
    // A link is an absolute http(s) URL (`check_input`).
    one_of(schemas, "AnalysisInput", |s| {
        vec![
            branch(s, |p, _| {
                p.insert("inputType".into(), json!({ "const": "link" }));
                if let Some(o) = p.get_mut("offerDetails").and_then(Value::as_object_mut) {
                    o.insert("format".into(), json!("uri"));
                    o.insert("pattern".into(), json!(crate::domain::input::HTTP_URL_PATTERN));
                }
            }),
            branch(s, |p, _| {
                p.insert("inputType".into(), json!({ "const": "text" }));
            }),
        ]
    });
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn retry_after(mut response: Value, what: &str) -> Value {
    response["headers"] = json!({
        "Retry-After": { "description": what, "schema": { "type": "integer", "minimum": 0 } }
    });
    response
}

/// Adds the answers every operation of this shape can give, and sends every
/// problem as `application/problem+json`.
fn error_responses(op: &mut Map<String, Value>) {
    // `[{}]` would mean "anonymous allowed": only a named scheme authenticates.
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
    let params: Vec<(String, String)> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    (field("in"), field("name"))
                })
                .collect()
        })
        .unwrap_or_default();
    let has = |place: &str| params.iter().any(|(p, _)| p == place);
    let has_body = op.contains_key("requestBody");
    let idempotent = params.iter().any(|(_, n)| n == "Idempotency-Key");
    let store = op
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.iter().any(|t| t == "service"));
    let responses = op.entry("responses").or_insert_with(|| json!({})).as_object_mut();
    let Some(responses) = responses else { return };

    // Problems documented by the handler: the right media type.
    for r in responses.values_mut() {
        if let Some(c) = r.get_mut("content").and_then(Value::as_object_mut)
            && let Some(j) = c.get("application/json")
            && j.pointer("/schema/$ref") == Some(&json!("#/components/schemas/Problem"))
        {
            let j = j.clone();
            c.remove("application/json");
            c.insert("application/problem+json".into(), j);
        }
    }
    let mut add = |status: &str, response: Value| {
        responses.entry(status).or_insert(response);
    };
    if has("query") || has_body || idempotent {
        add(
            "400",
            problem("`bad_request`: a malformed query parameter, header or JSON body; `invalid_cursor`"),
        );
    }
    if secured {
        let mut r =
            problem("`unauthenticated` or `account_deleted`: missing, invalid or expired credentials");
        r["headers"] = json!({ "WWW-Authenticate": { "schema": { "type": "string" } } });
        add("401", r);
        add("403", problem("`forbidden`: the credential may not do this"));
    }
    if has("path") {
        add("404", problem("`not_found`: no such resource of yours"));
    }
    if idempotent {
        add(
            "409",
            problem("`conflict`: a request with this Idempotency-Key is still in progress"),
        );
    }
    if has_body {
        add("413", problem("`payload_too_large`: the body is over 256 KiB"));
        add(
            "415",
            problem("`unsupported_media_type`: the body is not application/json"),
        );
        add(
            "422",
            problem("`validation_failed` (every invalid field in `errors`) or `idempotency_mismatch`"),
        );
    }
    if secured {
        add(
            "429",
            retry_after(
                problem("`rate_limited` or `quota_exceeded`"),
                "seconds until a retry can succeed",
            ),
        );
    }
    if store {
        add(
            "503",
            retry_after(
                problem("`unavailable`: the data store is not answering"),
                "seconds to wait",
            ),
        );
    }
    // In status order, for the reader of the snapshot.
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(sorted);
}
