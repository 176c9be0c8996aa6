//! The per-user persona counter, `users/{uid}/personaCounter/current`: how many
//! personas the user has and which one is the default.
//!
//! Every persona create, delete and default switch reads and writes it in its own
//! transaction. A transaction locks what it reads (pessimistically on the emulator,
//! and in Firestore's server-side transactions), so a create locks this one small
//! document instead of every persona a query would return: concurrent creates of
//! one user queue briefly on it instead of deadlocking over a hundred documents.
//!
//! It is a document of its own rather than fields of `users/{uid}`: there it would
//! change the profile's ETag and evict the cached profile on every persona write
//! (a `PATCH /v1/me` with the ETag just read would fail with 412 after an unrelated
//! persona create), and persona writes would contend with analysis creates, which
//! lock the user document for the quota.
//!
//! Counted lazily: a user without the document (personas written before it
//! existed) is counted by the first transaction that needs it, with one query over
//! their personas (at most 100), in that same transaction, so the count is exact
//! from then on. No migration has to scan every user's personas at startup.

use super::personas;
use crate::error::AppResult;
use crate::store::{Doc, DocPath, Fields, Query, Transaction, Write, value};

pub const COLLECTION: &str = "personaCounter";
const DOC: &str = "current";

/// What the counter holds, as read in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub count: i64,
    /// The id of the default persona, if any.
    pub default_id: Option<String>,
    /// Writes the first count found necessary: clearing surplus defaults (at most
    /// one persona is the default; data from before the counter might hold more).
    pub repairs: Vec<Write>,
}

pub fn path(user: &DocPath) -> AppResult<DocPath> {
    Ok(user.child(COLLECTION, DOC)?)
}

/// Reads the counter of `user` in `tx`, counting the personas when it is missing.
/// `touched` is the persona the caller writes itself (never among `repairs`).
pub async fn read(
    tx: &mut dyn Transaction,
    user: &DocPath,
    touched: &DocPath,
    now: jiff::Timestamp,
) -> AppResult<Counter> {
    if let Some(doc) = tx.get(&path(user)?).await? {
        return Ok(decode(&doc));
    }
    let mut docs = tx
        .query(&Query::collection(Some(user), personas::COLLECTION))
        .await?;
    // Keep the most recently changed default; clear the others.
    docs.sort_by_key(|d| std::cmp::Reverse(d.field("metadata.updatedAt").and_then(value::as_timestamp)));
    let mut defaults = docs
        .iter()
        .filter(|d| d.field("metadata.isDefault") == Some(&value::boolean(true)));
    let default_id = defaults.next().map(|d| d.id().to_owned());
    let repairs = defaults
        .filter(|d| d.path != *touched)
        .map(|d| clear_default(d.path.clone(), now))
        .collect();
    Ok(Counter {
        count: i64::try_from(docs.len()).unwrap_or(i64::MAX),
        default_id,
        repairs,
    })
}

fn decode(doc: &Doc) -> Counter {
    Counter {
        count: doc.field("count").and_then(value::as_i64).unwrap_or_default(),
        default_id: doc.field("defaultId").and_then(value::as_str).map(str::to_owned),
        repairs: Vec::new(),
    }
}

/// The writes storing `counter` (and its repairs), for the transaction that read it.
pub fn writes(user: &DocPath, counter: Counter) -> AppResult<Vec<Write>> {
    let mut fields = Fields::new();
    fields.insert("count".into(), value::int(counter.count.max(0)));
    fields.insert(
        "defaultId".into(),
        counter.default_id.map_or_else(value::null, value::string),
    );
    let mut writes = counter.repairs;
    writes.push(Write::set(path(user)?, fields));
    Ok(writes)
}

/// The write that makes `persona` no longer the default.
pub fn clear_default(persona: DocPath, now: jiff::Timestamp) -> Write {
    let mut fields = Fields::new();
    value::set_path(&mut fields, "metadata.isDefault", value::boolean(false));
    value::set_path(&mut fields, "metadata.updatedAt", value::timestamp(now));
    Write::update(
        persona,
        fields,
        vec!["metadata.isDefault".into(), "metadata.updatedAt".into()],
    )
}
