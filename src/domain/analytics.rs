//! Usage analytics (`analytics/{eventId}`): batches of client events, stored
//! with the server's timestamp, the user agent and the client address
//! anonymized (IPv4 /24, IPv6 /48) — the full address is never stored or
//! logged. Admins list them with filters, newest first.
//!
//! Events live in a root collection (not under `users/{uid}`) so admins can
//! query across users and `purge` can expire them by age; erasure pseudonymizes
//! them in place (`userId` → keyed hash, `ip` and `userAgent` removed).

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use futures::FutureExt;
use regex::Regex;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::idempotency::Recorder;
use super::pagination::{CursorCodec, Page, PageRequest};
use super::retention::{ANALYTICS_COLLECTION, ANALYTICS_TIME_FIELD};
use super::versioned::Versioned;
use crate::error::{AppError, AppResult};
use crate::store::{self, Direction, DocPath, Fields, Op, Query, Store, TxOutcome, Write, value};

/// At most this many events per request.
pub const MAX_EVENTS: usize = 100;
/// `eventData` serialized as JSON is at most this many bytes.
pub const MAX_EVENT_DATA_BYTES: usize = 8 * 1024;

static EVENT_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::unwrap_used)] // a constant pattern
    Regex::new(r"^[a-z][a-z0-9_.]{0,63}$").unwrap()
});

fn valid_event_type(s: &str) -> Result<(), ValidationError> {
    if EVENT_TYPE.is_match(s) {
        Ok(())
    } else {
        Err(ValidationError::new("pattern").with_message("must match ^[a-z][a-z0-9_.]{0,63}$".into()))
    }
}

fn valid_event_data(v: &serde_json::Value) -> Result<(), ValidationError> {
    // Checked here, not by serde: the strict reader lets `null` through as an empty map.
    if !v.is_object() {
        return Err(ValidationError::new("type").with_message("expected an object".into()));
    }
    let size = serde_json::to_vec(v).map(|v| v.len()).unwrap_or(usize::MAX);
    if size <= MAX_EVENT_DATA_BYTES {
        Ok(())
    } else {
        Err(ValidationError::new("length").with_message("at most 8 KiB serialized as JSON".into()))
    }
}

fn valid_session_id(s: &str) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if (1..=128).contains(&n) {
        Ok(())
    } else {
        Err(ValidationError::new("length").with_message("must be 1 to 128 characters".into()))
    }
}

/// One client event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEvent {
    #[validate(custom(function = "valid_event_type"))]
    #[schema(pattern = "^[a-z][a-z0-9_.]{0,63}$")]
    pub event_type: String,
    /// Any JSON object, at most 8 KiB serialized.
    #[validate(custom(function = "valid_event_data"))]
    #[schema(value_type = Object)]
    pub event_data: serde_json::Value,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::input::non_null"
    )]
    #[validate(custom(function = "valid_session_id"))]
    #[schema(nullable = false, min_length = 1, max_length = 128)]
    pub session_id: Option<String>,
}

/// `POST /v1/events` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBatch {
    /// 1..100 events; one invalid event rejects the batch.
    #[validate(length(min = 1, max = 100), nested)]
    #[schema(min_items = 1, max_items = 100)]
    pub events: Vec<NewEvent>,
}

/// `202` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Accepted {
    /// Events stored (0 when the user opted out of analytics).
    pub accepted: usize,
}

/// An event as admins see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    /// The uid, or the pseudonym of an erased user.
    pub user_id: String,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub event_data: serde_json::Value,
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: String,
    #[schema(nullable = false)]
    pub user_agent: Option<String>,
    /// The anonymized client address (`203.0.113.0`, `2001:db8:1::`).
    #[schema(nullable = false)]
    pub ip: Option<String>,
}

/// Where a batch came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub user_agent: Option<String>,
    /// The client address; only its anonymized form is stored.
    pub ip: Option<IpAddr>,
}

/// The address with its host part zeroed: IPv4 keeps /24, IPv6 /48
/// (an IPv4-mapped IPv6 address counts as IPv4).
pub fn anonymize(ip: IpAddr) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4([a, b, c, 0].into())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6([s[0], s[1], s[2], 0, 0, 0, 0, 0].into())
        }
    }
}

/// `GET /v1/admin/analytics` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub user_id: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
}

fn list_query(f: &EventFilter) -> Query {
    let mut q = Query::collection(None, ANALYTICS_COLLECTION);
    if let Some(t) = &f.event_type {
        q = q.filter("eventType", Op::Eq, value::string(t.clone()));
    }
    if let Some(u) = &f.user_id {
        q = q.filter("userId", Op::Eq, value::string(u.clone()));
    }
    if let Some(t) = f.since {
        q = q.filter(ANALYTICS_TIME_FIELD, Op::Ge, value::timestamp(t));
    }
    if let Some(t) = f.until {
        q = q.filter(ANALYTICS_TIME_FIELD, Op::Lt, value::timestamp(t));
    }
    q.order(ANALYTICS_TIME_FIELD, Direction::Desc)
}

/// Events of one user (or pseudonym) in document order (an automatic index):
/// what erasure and export walk, page by page.
pub fn user_query(user_id: &str) -> Query {
    Query::collection(None, ANALYTICS_COLLECTION).filter("userId", Op::Eq, value::string(user_id))
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let now = Some(value::now());
    let s = || Some("x".to_owned());
    let mut shapes = vec![("analytics: one user, document order", user_query("x"))];
    for (name, f) in [
        ("analytics: all", EventFilter::default()),
        (
            "analytics: by type",
            EventFilter {
                event_type: s(),
                ..Default::default()
            },
        ),
        (
            "analytics: by user",
            EventFilter {
                user_id: s(),
                ..Default::default()
            },
        ),
        (
            "analytics: by type and user",
            EventFilter {
                event_type: s(),
                user_id: s(),
                ..Default::default()
            },
        ),
        (
            "analytics: by type and user, window",
            EventFilter {
                event_type: s(),
                user_id: s(),
                since: now,
                until: now,
            },
        ),
        (
            "analytics: window",
            EventFilter {
                since: now,
                until: now,
                ..Default::default()
            },
        ),
    ] {
        shapes.push((name, list_query(&f)));
    }
    shapes
}

/// The stored fields of one event (`timestamp` is the commit's time, set by a transform).
fn event_fields(id: &str, uid: &str, e: &NewEvent, origin: &Origin) -> Fields {
    let mut f = Fields::new();
    f.insert("eventId".into(), value::string(id));
    f.insert("userId".into(), value::string(uid));
    f.insert("eventType".into(), value::string(e.event_type.clone()));
    f.insert("eventData".into(), value::from_json(&e.event_data));
    if let Some(s) = &e.session_id {
        f.insert("sessionId".into(), value::string(s.clone()));
    }
    if let Some(ua) = &origin.user_agent {
        f.insert("userAgent".into(), value::string(ua.clone()));
    }
    if let Some(ip) = origin.ip {
        f.insert("ip".into(), value::string(anonymize(ip).to_string()));
    }
    f
}

#[derive(Clone)]
pub struct Analytics {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
}

impl Analytics {
    pub fn new(store: Arc<dyn Store>, cursors: CursorCodec) -> Self {
        Self { store, cursors }
    }

    /// Stores a batch in one commit (none with `opted_out`); `record` adds the
    /// idempotent response to that commit.
    pub async fn record(
        &self,
        uid: &str,
        batch: &EventBatch,
        origin: &Origin,
        opted_out: bool,
        record: Option<Arc<Recorder<Accepted>>>,
    ) -> AppResult<Versioned<Accepted>> {
        let mut writes = Vec::new();
        if !opted_out {
            for (i, e) in batch.events.iter().enumerate() {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let path = DocPath::root(ANALYTICS_COLLECTION, &id)?;
                let w =
                    Write::create(path, event_fields(&id, uid, e, origin)).server_time(ANALYTICS_TIME_FIELD);
                // What Firestore would refuse in eventData (reserved or empty names, nested arrays, depth).
                store::limits::check_write(&w).map_err(|err| {
                    AppError::validation(
                        &format!("events[{i}].eventData"),
                        "invalid",
                        format!(
                            "not storable: {}",
                            err.to_string().trim_start_matches("invalid store request: ")
                        ),
                    )
                })?;
                writes.push(w);
            }
        }
        let accepted = Accepted {
            accepted: writes.len(),
        };
        let committed = match record {
            None if writes.is_empty() => {
                return Ok(Versioned {
                    item: accepted,
                    version: value::now(),
                });
            }
            None => self.store.commit(writes).await?,
            Some(r) => {
                let (writes, accepted) = (Arc::new(writes), Arc::new(accepted.clone()));
                let (_, committed) = store::run_transaction_committed(self.store.as_ref(), |tx| {
                    let (writes, accepted, r) = (writes.clone(), accepted.clone(), r.clone());
                    async move {
                        let mut all = (*writes).clone();
                        all.push(r.write(tx, &accepted).await?);
                        Ok::<_, AppError>(TxOutcome::new(all, ()))
                    }
                    .boxed()
                })
                .await?;
                committed
            }
        };
        Ok(Versioned {
            item: accepted,
            version: committed.commit_time,
        })
    }

    /// Events, newest first.
    pub async fn list(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> AppResult<Page<Versioned<serde_json::Value>>> {
        let binding = format!(
            "admin|analytics|type={:?}|user={:?}|since={:?}|until={:?}",
            filter.event_type,
            filter.user_id,
            filter.since.map(|t| t.to_string()),
            filter.until.map(|t| t.to_string()),
        );
        let (docs, next_cursor) = self
            .cursors
            .fetch(self.store.as_ref(), list_query(filter), page, &binding)
            .await?;
        Ok(Page {
            items: docs
                .iter()
                .map(|d| Versioned {
                    item: serde_json::Value::Object(value::fields_to_json(&d.fields)),
                    version: d.update_time,
                })
                .collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_host_part() {
        let a = |s: &str| anonymize(s.parse().unwrap()).to_string();
        assert_eq!(a("203.0.113.77"), "203.0.113.0");
        assert_eq!(a("2001:db8:1:2:3:4:5:6"), "2001:db8:1::");
        assert_eq!(a("::ffff:198.51.100.9"), "198.51.100.0");
    }
}
