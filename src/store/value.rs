//! Helpers over Firestore's protobuf `Value`: constructors, dotted-path access,
//! Firestore's cross-type ordering, and the serde bridge for domain structs.

use std::cmp::Ordering;

pub use ::firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use ::firestore::gcloud_sdk::google::firestore::v1::{ArrayValue, MapValue};
use ::firestore::gcloud_sdk::prost_types;
pub use ::firestore::gcloud_sdk::prost_types::Timestamp as ProtoTimestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Fields, StoreError, StoreResult, Value};

/// An instant as the store keeps it (microsecond precision in Firestore).
pub type Timestamp = ::firestore::FirestoreInstant;

pub fn null() -> Value {
    Value {
        value_type: Some(ValueType::NullValue(0)),
    }
}
pub fn int(i: i64) -> Value {
    Value {
        value_type: Some(ValueType::IntegerValue(i)),
    }
}
pub fn double(f: f64) -> Value {
    Value {
        value_type: Some(ValueType::DoubleValue(f)),
    }
}
pub fn boolean(b: bool) -> Value {
    Value {
        value_type: Some(ValueType::BooleanValue(b)),
    }
}
pub fn string(s: impl Into<String>) -> Value {
    Value {
        value_type: Some(ValueType::StringValue(s.into())),
    }
}
pub fn timestamp(t: Timestamp) -> Value {
    Value {
        value_type: Some(ValueType::TimestampValue(to_proto_ts(t))),
    }
}
pub fn map(fields: Fields) -> Value {
    Value {
        value_type: Some(ValueType::MapValue(MapValue { fields })),
    }
}
pub fn array(values: Vec<Value>) -> Value {
    Value {
        value_type: Some(ValueType::ArrayValue(ArrayValue { values })),
    }
}

/// Any serializable value (timestamps through `firestore::FirestoreTimestamp`).
/// `None` is null: the crate encodes it as a value of no type, which Firestore
/// refuses ("Cannot convert firestore.v1.Value with type unset").
pub fn from_serialize<T: Serialize>(v: &T) -> Value {
    let fv: ::firestore::FirestoreValue = From::from(v);
    match fv.value.value_type {
        None => null(),
        Some(_) => fv.value,
    }
}

pub fn as_str(v: &Value) -> Option<&str> {
    match &v.value_type {
        Some(ValueType::StringValue(s)) => Some(s),
        _ => None,
    }
}
pub fn as_i64(v: &Value) -> Option<i64> {
    match &v.value_type {
        Some(ValueType::IntegerValue(i)) => Some(*i),
        _ => None,
    }
}
pub fn as_f64(v: &Value) -> Option<f64> {
    match &v.value_type {
        Some(ValueType::IntegerValue(i)) => Some(*i as f64),
        Some(ValueType::DoubleValue(f)) => Some(*f),
        _ => None,
    }
}
pub fn as_timestamp(v: &Value) -> Option<Timestamp> {
    match &v.value_type {
        Some(ValueType::TimestampValue(t)) => from_proto_ts(t),
        _ => None,
    }
}
pub fn as_array(v: &Value) -> Option<&[Value]> {
    match &v.value_type {
        Some(ValueType::ArrayValue(a)) => Some(&a.values),
        _ => None,
    }
}
pub fn as_map(v: &Value) -> Option<&Fields> {
    match &v.value_type {
        Some(ValueType::MapValue(m)) => Some(&m.fields),
        _ => None,
    }
}

pub fn to_proto_ts(t: Timestamp) -> prost_types::Timestamp {
    ::firestore::timestamp_utils::to_timestamp(t)
}
pub fn from_proto_ts(t: &prost_types::Timestamp) -> Option<Timestamp> {
    ::firestore::timestamp_utils::from_timestamp(*t).ok()
}

/// The current instant truncated to the microsecond precision Firestore keeps,
/// so a value written and read back compares equal.
pub fn now() -> Timestamp {
    ::firestore::FirestoreTimestamp::now().0
}

/// Reads a dotted field path (`metadata.createdAt`).
pub fn get_path<'a>(fields: &'a Fields, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut current = fields.get(parts.next()?)?;
    for p in parts {
        current = as_map(current)?.get(p)?;
    }
    Some(current)
}

/// Sets a dotted field path, creating intermediate maps (and replacing non-map values).
pub fn set_path(fields: &mut Fields, dotted: &str, v: Value) {
    match dotted.split_once('.') {
        None => {
            fields.insert(dotted.to_owned(), v);
        }
        Some((head, rest)) => {
            let entry = fields
                .entry(head.to_owned())
                .or_insert_with(|| map(Fields::new()));
            if as_map(entry).is_none() {
                *entry = map(Fields::new());
            }
            if let Some(ValueType::MapValue(m)) = &mut entry.value_type {
                set_path(&mut m.fields, rest, v);
            }
        }
    }
}

/// Removes a dotted field path; returns whether something was removed.
pub fn remove_path(fields: &mut Fields, dotted: &str) -> bool {
    match dotted.split_once('.') {
        None => fields.remove(dotted).is_some(),
        Some((head, rest)) => match fields.get_mut(head).and_then(|v| v.value_type.as_mut()) {
            Some(ValueType::MapValue(m)) => remove_path(&mut m.fields, rest),
            _ => false,
        },
    }
}

/// An update's effect on `target`: each masked path takes its value in
/// `fields`, or is removed when `fields` has none.
pub fn apply_mask(target: &mut Fields, fields: &Fields, mask: &[String]) {
    for m in mask {
        match get_path(fields, m) {
            Some(v) => set_path(target, m, v.clone()),
            None => {
                remove_path(target, m);
            }
        }
    }
}

/// Firestore's type order: null < bool < number < timestamp < string < bytes <
/// reference < geo point < array < map.
pub fn type_rank(v: &Value) -> u8 {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => 0,
        Some(ValueType::BooleanValue(_)) => 1,
        Some(ValueType::IntegerValue(_) | ValueType::DoubleValue(_)) => 2,
        Some(ValueType::TimestampValue(_)) => 3,
        Some(ValueType::StringValue(_)) => 4,
        Some(ValueType::BytesValue(_)) => 5,
        Some(ValueType::ReferenceValue(_)) => 6,
        Some(ValueType::GeoPointValue(_)) => 7,
        Some(ValueType::ArrayValue(_)) => 8,
        _ => 9,
    }
}

/// Total order over values as Firestore sorts them (NaN first among numbers).
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (&a.value_type, &b.value_type) {
        (Some(ValueType::BooleanValue(x)), Some(ValueType::BooleanValue(y))) => x.cmp(y),
        (Some(ValueType::IntegerValue(x)), Some(ValueType::IntegerValue(y))) => x.cmp(y),
        (Some(ValueType::TimestampValue(x)), Some(ValueType::TimestampValue(y))) => {
            (x.seconds, x.nanos).cmp(&(y.seconds, y.nanos))
        }
        (Some(ValueType::StringValue(x)), Some(ValueType::StringValue(y))) => x.as_bytes().cmp(y.as_bytes()),
        (Some(ValueType::BytesValue(x)), Some(ValueType::BytesValue(y))) => x.cmp(y),
        (Some(ValueType::ReferenceValue(x)), Some(ValueType::ReferenceValue(y))) => x.cmp(y),
        (Some(ValueType::ArrayValue(x)), Some(ValueType::ArrayValue(y))) => {
            for (p, q) in x.values.iter().zip(&y.values) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.values.len().cmp(&y.values.len())
        }
        (Some(ValueType::MapValue(x)), Some(ValueType::MapValue(y))) => {
            let mut xs: Vec<_> = x.fields.iter().collect();
            let mut ys: Vec<_> = y.fields.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let o = kx.cmp(ky).then_with(|| compare(vx, vy));
                if o != Ordering::Equal {
                    return o;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => Ordering::Equal,
        },
    }
}

/// Equality as Firestore's `==` filter sees it (1 == 1.0).
pub fn equals(a: &Value, b: &Value) -> bool {
    type_rank(a) == type_rank(b) && compare(a, b) == Ordering::Equal
}

pub(crate) fn encode_fields<T: Serialize>(obj: &T) -> StoreResult<Fields> {
    ::firestore::firestore_document_from_serializable("_/_", obj)
        .map(|d| d.fields)
        .map_err(|e| StoreError::Serialization(e.to_string()))
}

/// Decodes by value: the fields move into the deserializer, nothing is copied
/// (`firestore_document_to_serializable` takes a reference and copies every
/// field first; on a read path that copy was a tenth of the service's CPU).
/// The crate's bridge otherwise, so types decode exactly as before; only the
/// crate's synthetic `_firestore_*` fields are absent (no domain type reads them).
pub(crate) fn decode_fields<T: DeserializeOwned>(fields: Fields) -> StoreResult<T> {
    T::deserialize(::firestore::FirestoreValue::from(map(fields)))
        .map_err(|e| StoreError::Serialization(e.to_string()))
}

/// Plain JSON (for free-form documents such as `system/*` or event data).
/// Timestamps become RFC 3339 strings.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => J::Null,
        Some(ValueType::BooleanValue(b)) => J::Bool(*b),
        Some(ValueType::IntegerValue(i)) => J::from(*i),
        Some(ValueType::DoubleValue(f)) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Some(ValueType::TimestampValue(t)) => from_proto_ts(t).map_or(J::Null, |t| J::String(t.to_string())),
        Some(ValueType::StringValue(s)) => J::String(s.clone()),
        Some(ValueType::ReferenceValue(s)) => J::String(s.clone()),
        Some(ValueType::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(ValueType::MapValue(m)) => J::Object(fields_to_json(&m.fields)),
        Some(_) => J::Null,
    }
}

pub fn fields_to_json(fields: &Fields) -> serde_json::Map<String, serde_json::Value> {
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), to_json(&fields[k])))
        .collect()
}

pub fn from_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => null(),
        J::Bool(b) => boolean(*b),
        J::Number(n) => n.as_i64().map_or_else(|| double(n.as_f64().unwrap_or(0.0)), int),
        J::String(s) => string(s.clone()),
        J::Array(a) => array(a.iter().map(from_json).collect()),
        J::Object(o) => map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_across_types_like_firestore() {
        let vals = [
            null(),
            boolean(false),
            int(1),
            double(1.5),
            timestamp(now()),
            string("a"),
            array(vec![]),
            map(Fields::new()),
        ];
        for w in vals.windows(2) {
            assert_eq!(compare(&w[0], &w[1]), Ordering::Less);
        }
        assert!(equals(&int(1), &double(1.0)));
    }

    #[test]
    fn none_serializes_as_null_never_as_an_unset_value() {
        assert_eq!(from_serialize(&None::<i64>), null());
        assert_eq!(from_serialize(&Some(2)), int(2));
    }

    #[test]
    fn dotted_paths() {
        let mut f = Fields::new();
        set_path(&mut f, "a.b.c", int(3));
        assert_eq!(get_path(&f, "a.b.c"), Some(&int(3)));
        assert!(remove_path(&mut f, "a.b.c"));
        assert_eq!(get_path(&f, "a.b.c"), None);
        assert!(get_path(&f, "a.b").is_some());
    }
}
