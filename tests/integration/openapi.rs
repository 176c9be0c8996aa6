//! The OpenAPI document is generated from the code; a snapshot in
//! `docs/openapi.json` makes every change to the contract visible in review.
//! Regenerate it with `UPDATE_OPENAPI=1 ./scripts/test.sh openapi`.
//! The served document must also pass a real OpenAPI 3.1 validator
//! (`openapi-spec-validator`, pinned in `tests/fuzz/requirements.txt` and
//! installed into `.venv` by `scripts/install-deps.sh`); `scripts/fuzz-api.sh`
//! then holds the running service to it.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::app::{Backend, spawn_app};

#[test]
fn openapi_snapshot_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let current = serde_json::to_string_pretty(funnelflow::http::openapi::document()).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &current).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == current,
        "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 ./scripts/test.sh openapi` and review the diff"
    );
}

const VALIDATE: &str = "
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
validate(json.load(sys.stdin), cls=OpenAPIV31SpecValidator)
";

/// Runs the pinned validator on `doc`; `Err` carries its report.
fn validate(doc: &[u8]) -> Result<(), String> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let mut child = Command::new(python)
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/install-deps.sh (it creates .venv)"));
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn served_document_is_valid_openapi_3_1() {
    let app = spawn_app(Backend::Embedded).await;
    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    let body = res.bytes().await.unwrap();
    validate(&body).unwrap_or_else(|report| panic!("/openapi.json is not valid OpenAPI 3.1:\n{report}"));

    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut ids = HashSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(
                ids.insert(id.to_owned()),
                "operationId {id} repeats ({method} {path})"
            );
            // Every error answer is a problem+json document.
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        r["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is not problem+json"
                    );
                }
            }
        }
    }
}

/// The validator is real: it refuses what the old document did wrong.
#[test]
fn validator_refuses_repeated_operation_ids() {
    let mut doc = funnelflow::http::openapi::document().clone();
    doc["paths"]["/v1/personas"]["post"]["operationId"] = "createAnalysis".into();
    let report = validate(doc.to_string().as_bytes()).unwrap_err();
    assert!(report.contains("DuplicateOperationIDError"), "{report}");
}
