//! The OpenAPI document is generated from the code; a snapshot in
//! `docs/openapi.json` makes every change to the contract visible in review.
//! Regenerate it with `UPDATE_OPENAPI=1 ./scripts/test.sh openapi`.

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
