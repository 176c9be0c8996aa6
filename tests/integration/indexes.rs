//! Every query shape the code issues has its index in `firestore.indexes.json`
//! (the emulator does not enforce indexes; production does).

use funnelflow::domain::queries::{RequiredIndex, all_shapes, required_index};
use funnelflow::store::Direction;
use serde_json::Value;

fn order(d: Direction) -> &'static str {
    match d {
        Direction::Asc => "ASCENDING",
        Direction::Desc => "DESCENDING",
    }
}

#[test]
fn every_declared_query_has_its_index() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/firestore.indexes.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let indexes = json["indexes"].as_array().unwrap();
    let overrides = json["fieldOverrides"].as_array().unwrap();
    let mut missing = Vec::new();
    for (name, q) in all_shapes() {
        let found = match required_index(&q) {
            RequiredIndex::Automatic => true,
            RequiredIndex::GroupFieldOverride {
                collection,
                field,
                direction,
            } => overrides.iter().any(|o| {
                o["collectionGroup"] == collection.as_str()
                    && o["fieldPath"] == field.as_str()
                    && o["indexes"].as_array().is_some_and(|ix| {
                        ix.iter()
                            .any(|i| i["queryScope"] == "COLLECTION_GROUP" && i["order"] == order(direction))
                    })
            }),
            RequiredIndex::Composite {
                collection,
                group,
                fields,
            } => indexes.iter().any(|i| {
                let scope = if group { "COLLECTION_GROUP" } else { "COLLECTION" };
                let got: Vec<(String, String)> = i["fields"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|x| {
                                (
                                    x["fieldPath"].as_str().unwrap_or_default().to_owned(),
                                    x["order"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let want: Vec<(String, String)> = fields
                    .iter()
                    .map(|(f, d)| (f.clone(), order(*d).to_owned()))
                    .collect();
                i["collectionGroup"] == collection.as_str() && i["queryScope"] == scope && got == want
            }),
        };
        if !found {
            missing.push(format!("{name}: {:?}", required_index(&q)));
        }
    }
    assert!(
        missing.is_empty(),
        "firestore.indexes.json lacks:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_check_itself_catches_a_missing_index() {
    use funnelflow::store::{Op, Query, value};
    let q = Query::collection(None, "things")
        .filter("a", Op::Eq, value::int(1))
        .order("b", Direction::Desc);
    assert!(matches!(required_index(&q), RequiredIndex::Composite { .. }));
    let q = Query::collection(None, "things").order("b", Direction::Desc);
    assert_eq!(required_index(&q), RequiredIndex::Automatic);
    let q = Query::group(None, "things").filter("t", Op::Eq, value::int(1));
    assert!(matches!(
        required_index(&q),
        RequiredIndex::GroupFieldOverride { .. }
    ));
}
