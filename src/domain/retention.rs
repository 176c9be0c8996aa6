//! What the retention rules remove (`funnelflow purge`): analytics events
//! older than the configured days, and idempotency records past `expiresAt`.
//! The queries are declared here so the index registry (`queries.rs`) sees them.

use crate::domain::idempotency;
use crate::store::{Direction, Op, Query, Timestamp, value};

/// `analytics/{eventId}`, each with a `timestamp` field.
pub const ANALYTICS_COLLECTION: &str = "analytics";
pub const ANALYTICS_TIME_FIELD: &str = "timestamp";
/// The idempotency records' expiry (`users/{uid}/idempotency/{hash}`).
pub const IDEMPOTENCY_EXPIRY_FIELD: &str = "expiresAt";

/// Analytics events strictly older than `cutoff`, oldest first.
pub fn expired_analytics(cutoff: Timestamp, page: u32) -> Query {
    Query::collection(None, ANALYTICS_COLLECTION)
        .filter(ANALYTICS_TIME_FIELD, Op::Lt, value::timestamp(cutoff))
        .order(ANALYTICS_TIME_FIELD, Direction::Asc)
        .limit(page)
}

/// Idempotency records of every user whose expiry is before `now`, oldest
/// first: a collection-group query on one field (a field override with
/// collection-group scope in `firestore.indexes.json`).
pub fn expired_idempotency(now: Timestamp, page: u32) -> Query {
    Query::group(None, idempotency::COLLECTION)
        .filter(IDEMPOTENCY_EXPIRY_FIELD, Op::Lt, value::timestamp(now))
        .order(IDEMPOTENCY_EXPIRY_FIELD, Direction::Asc)
        .limit(page)
}

/// The instant `days` before `now` (saturating at the earliest storable time:
/// a longer retention, e.g. 4,000,000 days, must not become a query Firestore
/// refuses with "Timestamp seconds exceeds limit").
pub fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    let earliest =
        Timestamp::from_second(crate::store::limits::MIN_TIMESTAMP_SECONDS).unwrap_or(Timestamp::MIN);
    now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .ok()
        .filter(|t| *t >= earliest)
        .unwrap_or(earliest)
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let now = value::now();
    vec![
        ("purge: expired analytics", expired_analytics(now, 500)),
        (
            "purge: expired idempotency records",
            expired_idempotency(now, 500),
        ),
    ]
}
