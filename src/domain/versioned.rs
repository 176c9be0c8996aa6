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

    /// [`Versioned::decode`] consuming the document (no copy of its fields).
    pub fn from_doc(doc: store::Doc) -> AppResult<Self> {
        let version = doc.update_time;
        Ok(Self {
            item: doc.into_decoded()?,
            version,
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

/// A request's `If-Match` (RFC 9110 §13.1.1), parsed by `http::etag`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IfMatch {
    /// No header: the last write wins.
    #[default]
    Absent,
    /// `*`: any existing version.
    Any,
    /// The versions of the strong ETags listed; weak or unknown tags are left
    /// out (they never match), so an empty list matches nothing.
    Tags(Vec<store::Timestamp>),
}

impl IfMatch {
    /// Whether a resource at `version` satisfies the condition.
    pub fn matches(&self, version: store::Timestamp) -> bool {
        match self {
            Self::Absent | Self::Any => true,
            Self::Tags(tags) => tags.contains(&version),
        }
    }

    /// The one store precondition that says the same (the resource must
    /// exist in every case), or `None` when only a read can decide (a list).
    fn as_precondition(&self) -> Option<Precondition> {
        match self {
            Self::Absent | Self::Any => Some(Precondition::Exists(true)),
            Self::Tags(tags) => match tags.as_slice() {
                [] => Some(Precondition::UpdateTime(NEVER)),
                [one] => Some(Precondition::UpdateTime(*one)),
                _ => None,
            },
        }
    }
}

/// A version no stored document has. Not the epoch itself: that is the
/// protobuf default, which a store may read as "no precondition".
const NEVER: store::Timestamp = store::Timestamp::constant(1, 0);

fn moved_on(what: &str) -> AppError {
    AppError::PreconditionFailed(format!("the {what} was changed by another request"))
}

/// `If-Match` against a document read in a transaction: 412 when it moved on.
pub fn check_version(if_match: &IfMatch, doc: &store::Doc, what: &str) -> AppResult<()> {
    if if_match.matches(doc.update_time) {
        Ok(())
    } else {
        Err(moved_on(what))
    }
}

/// Commits `writes(precondition)`, where the precondition (on `path`) holds
/// exactly when `if_match` does: missing (or another tenant's) is 404, a
/// version that does not match 412. A list of tags is checked against a read
/// and the write then requires the version read, so nothing moves in between.
pub async fn commit_if_match(
    store: &dyn Store,
    path: &DocPath,
    if_match: &IfMatch,
    what: &str,
    writes: impl FnOnce(Precondition) -> Vec<Write>,
) -> AppResult<()> {
    let precondition = match if_match.as_precondition() {
        Some(p) => p,
        None => {
            let doc = store.get(path).await?.ok_or(AppError::NotFound)?;
            check_version(if_match, &doc, what)?;
            Precondition::UpdateTime(doc.update_time)
        }
    };
    match store.commit(writes(precondition)).await {
        Err(store::StoreError::FailedPrecondition(_)) => {
            // An update-time precondition fails the same way whether the document
            // moved on or is gone: tell the two apart.
            store.get(path).await?.ok_or(AppError::NotFound)?;
            Err(moved_on(what))
        }
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}

/// Deletes `path` honouring `If-Match`: missing (or another tenant's) is 404,
/// a stale version 412; without `If-Match` the delete just happens.
pub async fn delete(store: &dyn Store, path: DocPath, if_match: IfMatch, what: &str) -> AppResult<()> {
    commit_if_match(store, &path, &if_match, what, |p| {
        vec![Write::delete(path.clone()).precondition(p)]
    })
    .await
}
