//! What Firestore refuses in a write or a query, as the embedded store checks
//! it, so the two stores refuse the same requests with `InvalidArgument` (the
//! contract suite holds both to it). The Firestore store leaves the checks to
//! Firestore. Every figure was measured on the emulator: a document's size
//! follows https://firebase.google.com/docs/firestore/storage-size, with an
//! empty map or array counting one byte.

use super::value::{self, ValueType};
use super::{DocPath, Fields, Query, StoreError, StoreResult, Timestamp, Transform, Value, Write, WriteOp};

/// Largest document, by Firestore's size formula ("maximum entity size").
pub const MAX_DOCUMENT_BYTES: usize = 1_048_576;
/// Largest single string or bytes value (1 MiB − 89 bytes).
pub const MAX_VALUE_BYTES: usize = 1_048_487;
/// Longest field name (map key), in UTF-8 bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 1_500;
/// Most maps and arrays nested in one field value.
pub const MAX_DEPTH: usize = 20;
/// 0001-01-01T00:00:00Z, the earliest instant Firestore stores.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the last second Firestore stores (any fraction of it too).
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(msg.into())
}

/// Whether Firestore can store this instant (years 0001 to 9999).
pub fn storable(t: Timestamp) -> bool {
    (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.as_second())
}

/// The values a write sends (for an update: only what its mask names), its
/// field paths and its transform operands.
pub fn check_write(w: &Write) -> StoreResult<()> {
    match &w.op {
        WriteOp::Set(fields) => check_fields(fields, 0)?,
        WriteOp::Update { fields, mask } => {
            for m in mask {
                check_field_path(m)?;
                if let Some(v) = value::get_path(fields, m) {
                    // Each segment before the last is a map around the value.
                    check_value(m, v, m.matches('.').count())?;
                }
            }
        }
        WriteOp::Delete => {}
    }
    for (field, t) in &w.transforms {
        check_field_path(field)?;
        if let Transform::Increment(v) | Transform::Maximum(v) = t {
            check_value(field, v, 0)?;
        }
    }
    Ok(())
}

/// The values a query compares with (filters and cursor).
pub fn check_query(q: &Query) -> StoreResult<()> {
    for f in &q.filters {
        check_field_path(&f.field)?;
        check_value(&f.field, &f.value, 0)?;
    }
    if let Some(c) = &q.start_after {
        for v in &c.values {
            check_value("cursor", v, 0)?;
        }
    }
    Ok(())
}

/// A stored document's size against the 1 MiB limit.
pub fn check_document(path: &DocPath, fields: &Fields) -> StoreResult<()> {
    if document_size(path, fields) > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "{path}: maximum entity size is {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Firestore's storage size of a document: its name, its fields, 32 bytes.
pub fn document_size(path: &DocPath, fields: &Fields) -> usize {
    name_size(path.as_str()) + fields_size(fields) + 32
}

/// Each segment's bytes plus one, plus 16.
fn name_size(relative: &str) -> usize {
    relative.split('/').map(|s| s.len() + 1).sum::<usize>() + 16
}

fn fields_size(fields: &Fields) -> usize {
    fields.iter().map(|(k, v)| k.len() + 1 + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    match &v.value_type {
        None | Some(ValueType::NullValue(_) | ValueType::BooleanValue(_)) => 1,
        Some(ValueType::IntegerValue(_) | ValueType::DoubleValue(_) | ValueType::TimestampValue(_)) => 8,
        Some(ValueType::StringValue(s)) => s.len() + 1,
        Some(ValueType::BytesValue(b)) => b.len(),
        Some(ValueType::GeoPointValue(_)) => 16,
        Some(ValueType::ReferenceValue(r)) => r
            .split_once("/documents/")
            .map_or(r.len() + 1, |(_, rel)| name_size(rel)),
        Some(ValueType::ArrayValue(a)) => a.values.iter().map(value_size).sum::<usize>().max(1),
        Some(ValueType::MapValue(m)) => fields_size(&m.fields).max(1),
        // Not written by this service (Firestore's pipeline-only values).
        #[allow(unreachable_patterns)]
        Some(_) => 1,
    }
}

fn check_fields(fields: &Fields, depth: usize) -> StoreResult<()> {
    for (k, v) in fields {
        check_field_name(k)?;
        check_value(k, v, depth)?;
    }
    Ok(())
}

/// A dotted field path of a mask, a transform or a filter.
fn check_field_path(dotted: &str) -> StoreResult<()> {
    if dotted.is_empty() {
        return Err(invalid("empty field path"));
    }
    dotted.split('.').try_for_each(check_field_name)
}

/// Map keys: not empty, at most 1,500 bytes, not `__…__` (reserved).
fn check_field_name(name: &str) -> StoreResult<()> {
    if name.is_empty() {
        return Err(invalid("a field name is the empty string"));
    }
    if name.len() > MAX_FIELD_NAME_BYTES {
        return Err(invalid(format!(
            "a field name is longer than {MAX_FIELD_NAME_BYTES} bytes"
        )));
    }
    // `____` is accepted, `_____` is not: at least one character between.
    if name.len() > 4 && name.starts_with("__") && name.ends_with("__") {
        return Err(invalid(format!("field name {name} is reserved")));
    }
    Ok(())
}

/// One value, `depth` maps/arrays deep.
fn check_value(field: &str, v: &Value, depth: usize) -> StoreResult<()> {
    match &v.value_type {
        None => Err(invalid(format!(
            "{field}: cannot convert firestore.v1.Value with type unset"
        ))),
        Some(ValueType::TimestampValue(t)) => {
            if (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds)
                && (0..1_000_000_000).contains(&t.nanos)
            {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{field}: timestamp outside 0001-01-01..9999-12-31"
                )))
            }
        }
        Some(ValueType::StringValue(s)) if s.len() > MAX_VALUE_BYTES => Err(invalid(format!(
            "{field}: value longer than {MAX_VALUE_BYTES} bytes"
        ))),
        Some(ValueType::BytesValue(b)) if b.len() > MAX_VALUE_BYTES => Err(invalid(format!(
            "{field}: value longer than {MAX_VALUE_BYTES} bytes"
        ))),
        Some(ValueType::GeoPointValue(g))
            if !(-90.0..=90.0).contains(&g.latitude) || !(-180.0..=180.0).contains(&g.longitude) =>
        {
            Err(invalid(format!("{field}: geo point out of range")))
        }
        Some(ValueType::ReferenceValue(r)) => {
            let relative = r
                .strip_prefix("projects/")
                .and_then(|rest| rest.split_once("/documents/"))
                .filter(|(db, _)| db.contains("/databases/"))
                .map(|(_, rel)| rel);
            match relative {
                Some(rel) if DocPath::parse(rel).is_ok() => Ok(()),
                _ => Err(invalid(format!("{field}: not a document reference"))),
            }
        }
        Some(ValueType::ArrayValue(a)) => {
            if depth >= MAX_DEPTH {
                return Err(invalid(format!("{field}: nested deeper than {MAX_DEPTH}")));
            }
            for e in &a.values {
                if matches!(e.value_type, Some(ValueType::ArrayValue(_))) {
                    return Err(invalid(format!(
                        "{field}: cannot convert an array value in an array value"
                    )));
                }
                check_value(field, e, depth + 1)?;
            }
            Ok(())
        }
        Some(ValueType::MapValue(m)) => {
            if depth >= MAX_DEPTH {
                return Err(invalid(format!("{field}: nested deeper than {MAX_DEPTH}")));
            }
            check_fields(&m.fields, depth + 1)
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_path(s: &str) -> DocPath {
        DocPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sizes_match_what_the_emulator_measured() {
        // "c/a" with two strings: the largest accepted second string was 448,518 bytes.
        let mut f = Fields::new();
        f.insert("s".into(), value::string("x".repeat(600_000)));
        f.insert("t".into(), value::string("x".repeat(448_518)));
        assert_eq!(document_size(&doc_path("c/a"), &f), MAX_DOCUMENT_BYTES);
        assert!(check_document(&doc_path("c/a"), &f).is_ok());
        f.insert("t".into(), value::string("x".repeat(448_519)));
        assert!(check_document(&doc_path("c/a"), &f).is_err());
        // Empty maps and arrays weigh one byte, like null.
        assert_eq!(value_size(&value::map(Fields::new())), 1);
        assert_eq!(value_size(&value::array(Vec::new())), 1);
        assert_eq!(name_size("users/jeff/tasks/my_task_id"), 6 + 5 + 6 + 11 + 16);
    }

    #[test]
    fn reserved_names() {
        for ok in ["a", "__", "____", "__a", "a__", "__a__x"] {
            assert!(check_field_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_____", "__x__", "__name__"] {
            assert!(check_field_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamp_range() {
        let at = |s: i64| jiff::Timestamp::from_second(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(storable(at(MIN_TIMESTAMP_SECONDS)));
        assert!(!storable(at(MIN_TIMESTAMP_SECONDS - 1)));
        assert!(!storable(jiff::Timestamp::MIN));
        // jiff ends (9999-12-30T22:00Z) before Firestore does.
        assert!(storable(jiff::Timestamp::MAX));
    }
}
