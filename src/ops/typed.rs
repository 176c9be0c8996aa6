//! Firestore values as explicitly typed, canonical JSON (the shape of
//! Firestore's REST `Value`): `{"integerValue":"1"}`, `{"doubleValue":1.5}`,
//! `{"doubleValue":"NaN"}`, `{"bytesValue":"<base64>"}`, … Every value type
//! round-trips exactly, and the same data always encodes to the same bytes
//! (map keys sorted, numbers in one spelling), so backups of equal data have
//! equal checksums.
//!
//! One deliberate difference from REST: a reference into the backed-up
//! database is written relative to its documents root (`{"referenceValue":
//! "users/u1"}`), so a restore into another project points it at the restored
//! document; a reference into any other database keeps its full name and is
//! written as `{"foreignReferenceValue": "projects/…"}`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use firestore::gcloud_sdk::google::firestore::v1::{ArrayValue, MapValue};
use firestore::gcloud_sdk::google::r#type::LatLng;
use serde_json::{Map, Value as J};

use crate::store::value::{ProtoTimestamp, ValueType};
use crate::store::{DocPath, Fields, Timestamp, Value};

/// The database a backup is taken from or restored into:
/// `projects/P/databases/D/documents`.
#[derive(Debug, Clone)]
pub struct Root(String);

impl Root {
    pub fn new(project: &str, database: &str) -> Self {
        let database = if database.is_empty() {
            "(default)"
        } else {
            database
        };
        Self(format!("projects/{project}/databases/{database}/documents"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn relative<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.0.as_str())?.strip_prefix('/')
    }
    fn full(&self, relative: &str) -> String {
        format!("{}/{relative}", self.0)
    }
}

/// A document's fields, keys sorted.
pub fn encode_fields(fields: &Fields, root: &Root) -> J {
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort();
    J::Object(
        keys.into_iter()
            .map(|k| (k.clone(), encode(&fields[k], root)))
            .collect(),
    )
}

fn tagged(tag: &str, v: J) -> J {
    let mut m = Map::with_capacity(1);
    m.insert(tag.to_owned(), v);
    J::Object(m)
}

pub fn encode(v: &Value, root: &Root) -> J {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => tagged("nullValue", J::Null),
        Some(ValueType::BooleanValue(b)) => tagged("booleanValue", J::Bool(*b)),
        Some(ValueType::IntegerValue(i)) => tagged("integerValue", J::String(i.to_string())),
        Some(ValueType::DoubleValue(f)) => tagged("doubleValue", encode_double(*f)),
        Some(ValueType::TimestampValue(t)) => tagged("timestampValue", J::String(encode_ts(t))),
        Some(ValueType::StringValue(s)) => tagged("stringValue", J::String(s.clone())),
        Some(ValueType::BytesValue(b)) => tagged("bytesValue", J::String(BASE64.encode(b))),
        Some(ValueType::ReferenceValue(r)) => match root.relative(r) {
            Some(rel) => tagged("referenceValue", J::String(rel.to_owned())),
            None => tagged("foreignReferenceValue", J::String(r.clone())),
        },
        Some(ValueType::GeoPointValue(g)) => {
            let mut m = Map::with_capacity(2);
            m.insert("latitude".into(), encode_double(g.latitude));
            m.insert("longitude".into(), encode_double(g.longitude));
            tagged("geoPointValue", J::Object(m))
        }
        Some(ValueType::ArrayValue(a)) => {
            let values = a.values.iter().map(|v| encode(v, root)).collect();
            tagged("arrayValue", tagged("values", J::Array(values)))
        }
        Some(ValueType::MapValue(m)) => tagged("mapValue", tagged("fields", encode_fields(&m.fields, root))),
        // Values only a query can hold (field references, functions, pipelines).
        Some(_) => tagged("nullValue", J::Null),
    }
}

fn encode_double(f: f64) -> J {
    if f.is_nan() {
        J::String("NaN".into())
    } else if f.is_infinite() {
        J::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        // Finite doubles are always representable; -0.0 keeps its sign.
        serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
    }
}

/// RFC 3339 in UTC with exactly as many fraction digits as needed (to the nanosecond).
fn encode_ts(t: &ProtoTimestamp) -> String {
    match jiff::Timestamp::new(t.seconds, t.nanos) {
        Ok(ts) => ts.to_string(),
        // Not a valid instant: keep the raw pair so nothing is lost.
        Err(_) => format!("{}.{:09}", t.seconds, t.nanos),
    }
}

pub fn encode_time(t: Timestamp) -> String {
    t.to_string()
}

/// Why a line of a backup could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

fn bad(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

pub fn decode_fields(j: &J, root: &Root) -> Result<Fields, DecodeError> {
    let J::Object(m) = j else {
        return Err(bad("fields must be an object"));
    };
    m.iter()
        .map(|(k, v)| Ok((k.clone(), decode(v, root).map_err(|e| bad(format!("{k}: {e}")))?)))
        .collect()
}

pub fn decode(j: &J, root: &Root) -> Result<Value, DecodeError> {
    let J::Object(m) = j else {
        return Err(bad("a value must be a one-key object"));
    };
    let mut entries = m.iter();
    let (Some((tag, v)), None) = (entries.next(), entries.next()) else {
        return Err(bad("a value must be a one-key object"));
    };
    let vt = match (tag.as_str(), v) {
        ("nullValue", J::Null) => ValueType::NullValue(0),
        ("booleanValue", J::Bool(b)) => ValueType::BooleanValue(*b),
        ("integerValue", J::String(s)) => {
            ValueType::IntegerValue(s.parse().map_err(|_| bad(format!("bad integerValue {s:?}")))?)
        }
        ("doubleValue", d) => ValueType::DoubleValue(decode_double(d)?),
        ("timestampValue", J::String(s)) => ValueType::TimestampValue(decode_ts(s)?),
        ("stringValue", J::String(s)) => ValueType::StringValue(s.clone()),
        ("bytesValue", J::String(s)) => ValueType::BytesValue(
            BASE64
                .decode(s)
                .map_err(|e| bad(format!("bad bytesValue: {e}")))?,
        ),
        ("referenceValue", J::String(s)) => {
            DocPath::parse(s).map_err(|e| bad(format!("bad referenceValue: {e}")))?;
            ValueType::ReferenceValue(root.full(s))
        }
        ("foreignReferenceValue", J::String(s)) => ValueType::ReferenceValue(s.clone()),
        ("geoPointValue", J::Object(g)) => {
            let coord = |k: &str| {
                g.get(k)
                    .ok_or_else(|| bad(format!("geoPointValue without {k}")))
                    .and_then(decode_double)
            };
            if g.len() != 2 {
                return Err(bad("geoPointValue must hold latitude and longitude only"));
            }
            ValueType::GeoPointValue(LatLng {
                latitude: coord("latitude")?,
                longitude: coord("longitude")?,
            })
        }
        ("arrayValue", J::Object(a)) => {
            let values = match (a.get("values"), a.len()) {
                (Some(J::Array(vs)), 1) => vs.iter().map(|v| decode(v, root)).collect::<Result<_, _>>()?,
                (None, 0) => Vec::new(),
                _ => return Err(bad("arrayValue must be {\"values\": [...]}")),
            };
            ValueType::ArrayValue(ArrayValue { values })
        }
        ("mapValue", J::Object(mv)) => {
            let fields = match (mv.get("fields"), mv.len()) {
                (Some(f), 1) => decode_fields(f, root)?,
                (None, 0) => Fields::new(),
                _ => return Err(bad("mapValue must be {\"fields\": {...}}")),
            };
            ValueType::MapValue(MapValue { fields })
        }
        (tag, _) => return Err(bad(format!("unknown or malformed value {tag:?}"))),
    };
    Ok(Value { value_type: Some(vt) })
}

fn decode_double(j: &J) -> Result<f64, DecodeError> {
    match j {
        J::Number(n) => n.as_f64().ok_or_else(|| bad("bad doubleValue")),
        J::String(s) if s == "NaN" => Ok(f64::NAN),
        J::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        J::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(bad(format!("bad doubleValue {j}"))),
    }
}

fn decode_ts(s: &str) -> Result<ProtoTimestamp, DecodeError> {
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|e| bad(format!("bad timestampValue {s:?}: {e}")))?;
    Ok(ProtoTimestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    })
}

pub fn decode_time(s: &str) -> Result<Timestamp, DecodeError> {
    s.parse().map_err(|e| bad(format!("bad time {s:?}: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::value;

    fn every_type(root: &Root) -> Fields {
        let mut f = Fields::new();
        f.insert("null".into(), value::null());
        f.insert("t".into(), value::boolean(true));
        f.insert("i".into(), value::int(i64::MIN));
        f.insert("d".into(), value::double(0.1));
        f.insert("negzero".into(), value::double(-0.0));
        f.insert("nan".into(), value::double(f64::NAN));
        f.insert("inf".into(), value::double(f64::INFINITY));
        f.insert("ninf".into(), value::double(f64::NEG_INFINITY));
        f.insert(
            "ts".into(),
            Value {
                value_type: Some(ValueType::TimestampValue(ProtoTimestamp {
                    seconds: -62_135_596_800,
                    nanos: 123_456_000,
                })),
            },
        );
        f.insert(
            "bytes".into(),
            Value {
                value_type: Some(ValueType::BytesValue(vec![0, 255, 10, 13])),
            },
        );
        f.insert(
            "ref".into(),
            Value {
                value_type: Some(ValueType::ReferenceValue(root.full("users/u1/x/y"))),
            },
        );
        f.insert(
            "foreign".into(),
            Value {
                value_type: Some(ValueType::ReferenceValue(
                    "projects/other/databases/(default)/documents/a/b".into(),
                )),
            },
        );
        f.insert(
            "geo".into(),
            Value {
                value_type: Some(ValueType::GeoPointValue(LatLng {
                    latitude: -90.0,
                    longitude: 179.999_999_9,
                })),
            },
        );
        let mut inner = Fields::new();
        inner.insert(
            "a b".into(),
            value::array(vec![value::array(vec![]), value::map(Fields::new())]),
        );
        f.insert("m".into(), value::map(inner));
        f
    }

    /// NaN != NaN: compare through the canonical encoding, which is exact.
    #[test]
    fn every_type_round_trips_into_another_root() {
        let (src, dst) = (Root::new("a", "(default)"), Root::new("b", ""));
        let fields = every_type(&src);
        let json = encode_fields(&fields, &src);
        let text = serde_json::to_string(&json).unwrap();
        let back = decode_fields(&serde_json::from_str(&text).unwrap(), &dst).unwrap();
        assert_eq!(serde_json::to_string(&encode_fields(&back, &dst)).unwrap(), text);
        assert!(text.contains(r#""nan":{"doubleValue":"NaN"}"#), "{text}");
        assert!(
            text.contains(r#""ts":{"timestampValue":"0001-01-01T00:00:00.123456Z"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""ref":{"referenceValue":"users/u1/x/y"}"#),
            "{text}"
        );
        assert!(text.contains(r#""negzero":{"doubleValue":-0.0}"#), "{text}");
        let r = back.get("ref").and_then(|v| v.value_type.clone());
        assert_eq!(
            r,
            Some(ValueType::ReferenceValue(
                "projects/b/databases/(default)/documents/users/u1/x/y".into()
            ))
        );
        assert!(matches!(
            back["i"].value_type,
            Some(ValueType::IntegerValue(i64::MIN))
        ));
    }

    #[test]
    fn doubles_round_trip_bit_for_bit_through_the_text() {
        // Sums of decimals (a trend counter's `confidenceSum`) need the last digit:
        // serde_json parses them exactly only with `float_roundtrip`.
        let root = Root::new("a", "(default)");
        for f in [3.8200000000000003, 0.1 + 0.2, 1e-308, f64::MAX, -0.0, 5e-324] {
            let text = serde_json::to_string(&encode(&value::double(f), &root)).unwrap();
            let back = decode(&serde_json::from_str(&text).unwrap(), &root).unwrap();
            assert_eq!(
                value::as_f64(&back).map(f64::to_bits),
                Some(f.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_malformed_values() {
        let root = Root::new("a", "(default)");
        for bad in [
            r#"{"integerValue":1}"#,
            r#"{"integerValue":"1.5"}"#,
            r#"{"doubleValue":"nan"}"#,
            r#"{"bytesValue":"!!"}"#,
            r#"{"stringValue":"a","booleanValue":true}"#,
            r#"{"referenceValue":"users"}"#,
            r#"{"timestampValue":"yesterday"}"#,
            r#"{"geoPointValue":{"latitude":1}}"#,
            r#"{"what":1}"#,
            r#"1"#,
        ] {
            assert!(
                decode(&serde_json::from_str(bad).unwrap(), &root).is_err(),
                "{bad}"
            );
        }
    }
}
