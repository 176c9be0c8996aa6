//! Every query the service issues that needs more than Firestore's automatic
//! single-field indexes, in one place. `required_index` derives the index a
//! query needs; a test checks `firestore.indexes.json` holds each of them
//! (the emulator does not enforce indexes, production does).

use crate::store::{Direction, Op, Query};

/// The index a query needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredIndex {
    /// Served by Firestore's automatic single-field indexes.
    Automatic,
    /// A collection-group query on one field: needs a field override with
    /// `COLLECTION_GROUP` scope.
    GroupFieldOverride {
        collection: String,
        field: String,
        direction: Direction,
    },
    /// A composite index, fields in order.
    Composite {
        collection: String,
        group: bool,
        fields: Vec<(String, Direction)>,
    },
}

/// The index Firestore needs for `q`: equality fields first (ascending,
/// alphabetical), then the sort fields. A range filter's field must be the
/// first sort field (the code always sorts by the field it ranges over).
pub fn required_index(q: &Query) -> RequiredIndex {
    let mut eq: Vec<&str> = q
        .filters
        .iter()
        .filter(|f| matches!(f.op, Op::Eq | Op::In | Op::ArrayContains))
        .map(|f| f.field.as_str())
        .collect();
    eq.sort_unstable();
    eq.dedup();
    let mut fields: Vec<(String, Direction)> = eq.iter().map(|f| ((*f).to_owned(), Direction::Asc)).collect();
    let mut order = q.order_by.clone();
    if order.is_empty()
        && let Some(range) = q
            .filters
            .iter()
            .find(|f| !matches!(f.op, Op::Eq | Op::In | Op::ArrayContains))
    {
        order.push((range.field.clone(), Direction::Asc));
    }
    for (f, d) in order {
        if !fields.iter().any(|(x, _)| *x == f) {
            fields.push((f, d));
        }
    }
    match (fields.len(), q.all_descendants) {
        (0, _) | (1, false) => RequiredIndex::Automatic,
        (1, true) => {
            let (field, direction) = fields.remove(0);
            RequiredIndex::GroupFieldOverride {
                collection: q.collection.clone(),
                field,
                direction,
            }
        }
        _ => RequiredIndex::Composite {
            collection: q.collection.clone(),
            group: q.all_descendants,
            fields,
        },
    }
}

/// One example of every query shape the code issues, built through the same
/// functions the services use. The index test walks this list, so a new query
/// shape must be added here (reviewers: check new `Query::` uses against it).
pub fn all_shapes() -> Vec<(&'static str, Query)> {
    use crate::domain::{
        admin, analyses, analytics, api_keys, erasure, export, instances, personas, retention, trends,
    };
    let mut shapes = analyses::query_shapes();
    shapes.extend(personas::query_shapes());
    shapes.extend(trends::query_shapes());
    shapes.extend(retention::query_shapes());
    shapes.extend(api_keys::query_shapes());
    shapes.extend(admin::query_shapes());
    shapes.extend(analytics::query_shapes());
    shapes.extend(erasure::query_shapes());
    shapes.extend(export::query_shapes());
    shapes.extend(instances::query_shapes());
    shapes.push((
        "feed: entries after a cursor",
        crate::domain::feed::entries_after(crate::store::value::now()),
    ));
    shapes.push((
        "feed: entries past the retention (purge)",
        crate::domain::feed::expired_entries(crate::store::value::now(), 500),
    ));
    shapes
}
