//! Documents with their version (update time): the basis of ETags, and the
//! `If-Match` rules every resource shares.

use crate::error::{AppError, AppResult};
use crate::store::{self, DocPath, Precondition, Store, Write};

/// An item with the update time it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub item: T,
    pub version: store::Timestamp,
}

impl<T: serde::de::DeserializeOwned> Versioned<T> {
    /// A stored document with its update time.
    pub fn decode(doc: &store::Doc) -> AppResult<Self> {
        Ok(Self {
            item: doc.decode()?,
            version: doc.update_time,
        })
    }
}

/// The item just written to `path`, versioned by the commit's update time (no
/// second read for the ETag).
pub fn written<T>(item: T, committed: &store::Committed, path: &DocPath) -> AppResult<Versioned<T>> {
    let version = committed
        .update_time(path)
        .ok_or_else(|| AppError::internal(format!("the commit reported no update time for {path}")))?;
    Ok(Versioned { item, version })
}

/// `If-Match` against a document read in a transaction: 412 when it moved on.
pub fn check_version(if_match: &Precondition, doc: &store::Doc, what: &str) -> AppResult<()> {
    match if_match {
        Precondition::UpdateTime(v) if *v != doc.update_time => Err(AppError::PreconditionFailed(format!(
            "the {what} was changed by another request"
        ))),
        _ => Ok(()),
    }
}

/// Deletes `path` honouring `If-Match`: missing (or another tenant's) is 404,
/// a stale version 412; without `If-Match` the delete just happens.
pub async fn delete(store: &dyn Store, path: DocPath, if_match: Precondition, what: &str) -> AppResult<()> {
    let precondition = match if_match {
        Precondition::None => Precondition::Exists(true),
        p => p,
    };
    match store
        .commit(vec![Write::delete(path.clone()).precondition(precondition)])
        .await
    {
        Err(store::StoreError::FailedPrecondition(_)) => {
            // An update-time precondition fails the same way whether the document
            // moved on or is gone: tell the two apart.
            store.get(&path).await?.ok_or(AppError::NotFound)?;
            Err(AppError::PreconditionFailed(format!(
                "the {what} was changed by another request"
            )))
        }
        other => other.map(|_| ()).map_err(AppError::from),
    }
}
