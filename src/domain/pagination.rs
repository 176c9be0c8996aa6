//! Cursor pagination for every list: `?limit=N&cursor=C` → `{items, nextCursor}`.
//!
//! A cursor carries the position itself (the last item's sort values and
//! document path), so a page costs one query of `limit + 1` documents whatever
//! its depth. It is HMAC-signed and bound to the caller and the query (filters
//! and sort): altered, forged or replayed with other filters it is `invalid_cursor`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::freshness::UserCache;
use super::versioned::Versioned;
use crate::cache;
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::value::ValueType;
use crate::store::{self, Cursor, Doc, DocPath, Query, Store, Value, value};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A validated `limit` and the raw `cursor` of a list request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// `limit` must be 1..=100 (default 20), else 400.
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> AppResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(AppError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Self {
            limit,
            cursor: cursor.filter(|c| !c.is_empty()),
        })
    }

    pub fn is_first(&self) -> bool {
        self.cursor.is_none()
    }
}

/// One page of a list response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Null exactly when there are no more items.
    pub next_cursor: Option<String>,
}

/// Signs and verifies cursors with the service secret.
#[derive(Clone)]
pub struct CursorCodec {
    /// Keyed once; cloned per use.
    mac: Hmac<Sha256>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    /// Hash of the binding (caller + list + filters + sort).
    b: String,
    v: Vec<WireValue>,
    p: String,
}

/// The few value types sort keys use, tagged so they decode to the same type.
#[derive(Serialize, Deserialize)]
enum WireValue {
    N,
    B(bool),
    I(i64),
    D(f64),
    T(i64, i32),
    S(String),
}

impl CursorCodec {
    pub fn new(secret: &str) -> Result<Self, hmac::digest::InvalidLength> {
        // A derived key: the secret also peppers API-key hashes.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())?;
        derive.update(b"funnelflow/cursor/v1");
        let key = derive.finalize().into_bytes();
        Ok(Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&key)?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    fn binding_hash(&self, binding: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"binding:");
        mac.update(binding.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..12])
    }

    pub fn encode(&self, binding: &str, cursor: &Cursor) -> String {
        let wire = Wire {
            b: self.binding_hash(binding),
            v: cursor.values.iter().map(to_wire).collect(),
            p: cursor.last.as_str().to_owned(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    pub fn decode(&self, binding: &str, token: &str) -> AppResult<Cursor> {
        let invalid =
            || AppError::InvalidCursor("the cursor is invalid or does not belong to this query".into());
        if token.len() > 4096 {
            return Err(invalid());
        }
        let (payload, sig) = token.split_once('.').ok_or_else(invalid)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| invalid())?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if wire.b != self.binding_hash(binding) {
            return Err(invalid());
        }
        Ok(Cursor {
            values: wire.v.into_iter().map(from_wire).collect(),
            last: DocPath::parse(&wire.p).map_err(|_| invalid())?,
        })
    }

    /// Runs `query` for one page: `limit + 1` documents in one store call, the
    /// extra one only telling whether a next page exists.
    pub async fn fetch(
        &self,
        store: &dyn Store,
        query: Query,
        page: &PageRequest,
        binding: &str,
    ) -> AppResult<(Vec<Doc>, Option<String>)> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| self.decode(binding, c))
            .transpose()?;
        if let Some(c) = &after
            && c.values.len() != query.order_by.len()
        {
            return Err(AppError::InvalidCursor(
                "the cursor does not belong to this query".into(),
            ));
        }
        let query = query.after(after).limit(page.limit + 1);
        let mut docs = store.query(&query).await?;
        let next = if docs.len() > page.limit as usize {
            docs.truncate(page.limit as usize);
            docs.last().map(|d| self.encode(binding, &query.cursor_after(d)))
        } else {
            None
        };
        Ok((docs, next))
    }
}

fn to_wire(v: &Value) -> WireValue {
    match &v.value_type {
        Some(ValueType::BooleanValue(b)) => WireValue::B(*b),
        Some(ValueType::IntegerValue(i)) => WireValue::I(*i),
        Some(ValueType::DoubleValue(d)) => WireValue::D(*d),
        Some(ValueType::TimestampValue(t)) => WireValue::T(t.seconds, t.nanos),
        Some(ValueType::StringValue(s)) => WireValue::S(s.clone()),
        _ => WireValue::N,
    }
}

fn from_wire(w: WireValue) -> Value {
    match w {
        WireValue::N => value::null(),
        WireValue::B(b) => value::boolean(b),
        WireValue::I(i) => value::int(i),
        WireValue::D(d) => value::double(d),
        WireValue::T(seconds, nanos) => Value {
            value_type: Some(ValueType::TimestampValue(store::value::ProtoTimestamp {
                seconds,
                nanos,
            })),
        },
        WireValue::S(s) => value::string(s),
    }
}

/// First pages of each user's lists, cached per instance (deeper pages always
/// read the store: a cursor already says where they start). One entry per user
/// and list key, whatever the `limit`: a page cached for another limit is a miss
/// and is replaced. A fill never outlives an invalidation that raced it.
pub struct FirstPages<K, T> {
    cache: UserCache<K, FirstPage<T>>,
}

impl<K: Clone, T> Clone for FirstPages<K, T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

pub struct FirstPage<T> {
    limit: u32,
    page: Arc<Page<Versioned<T>>>,
    /// Weighed once, at the fill.
    bytes: u64,
}

impl<K, T> FirstPages<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Serialize + Send + Sync + 'static,
{
    /// `keys`: every list key a user has (e.g. the sorts); `bytes`: the budget of
    /// the pages, `generation_bytes` that of the per-user generations.
    pub fn new(name: &'static str, ttl: Duration, keys: &[K], bytes: u64, generation_bytes: u64) -> Self {
        Self {
            cache: UserCache::new(name, ttl, bytes, generation_bytes, keys, |p: &FirstPage<T>| {
                p.bytes
            }),
        }
    }

    /// Drops `uid`'s cached pages on this instance.
    pub async fn invalidate(&self, uid: &str) {
        self.cache.invalidate(uid).await;
    }

    /// Drops every cached page on this instance.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// The page from the cache when it is a first page of a cached list (`key`
    /// is `None` for lists never cached, e.g. filtered ones), else from `fetch`.
    pub async fn get_or_fetch(
        &self,
        uid: &str,
        key: Option<K>,
        page: &PageRequest,
        metrics: &Metrics,
        fetch: impl Future<Output = AppResult<Page<Versioned<T>>>>,
    ) -> AppResult<Arc<Page<Versioned<T>>>> {
        let Some(key) = key.filter(|_| page.is_first()) else {
            return Ok(Arc::new(fetch.await?));
        };
        if let Some(p) = self.cache.get(uid, &key, metrics).await
            && p.limit == page.limit
        {
            return Ok(p.page.clone());
        }
        let generation = self.cache.generation(uid).await;
        let out = Arc::new(fetch.await?);
        let bytes = page_bytes(&out);
        let entry = FirstPage {
            limit: page.limit,
            page: out.clone(),
            bytes,
        };
        self.cache.insert(uid, generation, key, Arc::new(entry)).await;
        Ok(out)
    }

    /// (entries, weighed bytes) of the cached pages.
    pub async fn usage(&self) -> (u64, u64) {
        self.cache.usage().await
    }
}

/// Approximate heap bytes of a page: its items' JSON size and the cursor.
fn page_bytes<T: Serialize>(page: &Page<Versioned<T>>) -> u64 {
    page.items
        .iter()
        .map(|v| cache::json_bytes(&v.item) + 16)
        .sum::<u64>()
        + page.next_cursor.as_ref().map_or(0, |c| c.len() as u64)
}

/// Decodes a page of documents.
pub fn decode_page<T: DeserializeOwned>(
    docs: Vec<Doc>,
    next_cursor: Option<String>,
) -> AppResult<Page<Versioned<T>>> {
    let items = docs
        .into_iter()
        .map(Versioned::from_doc)
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            values: vec![value::timestamp(value::now()), value::int(3), value::string("x")],
            last: DocPath::parse("users/u1/analyses/a1").unwrap(),
        }
    }

    #[test]
    fn round_trips_and_is_bound() {
        let codec = CursorCodec::new("secret-secret-secret-secret-secret").unwrap();
        let c = cursor();
        let token = codec.encode("u1|analyses|status=done", &c);
        assert_eq!(codec.decode("u1|analyses|status=done", &token).unwrap(), c);
        // Other filters, other caller, other secret: refused.
        assert!(codec.decode("u1|analyses|status=failed", &token).is_err());
        assert!(codec.decode("u2|analyses|status=done", &token).is_err());
        let other = CursorCodec::new("another-secret-another-secret-xx").unwrap();
        assert!(other.decode("u1|analyses|status=done", &token).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let codec = CursorCodec::new("secret-secret-secret-secret-secret").unwrap();
        let token = codec.encode("b", &cursor());
        let (payload, sig) = token.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        bytes[5] ^= 1;
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(&bytes));
        for bad in [forged.as_str(), "", "abc", "a.b", &token[1..]] {
            assert!(
                matches!(codec.decode("b", bad), Err(AppError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(101), None).is_err());
        assert_eq!(PageRequest::new(None, None).unwrap().limit, 20);
    }
}
