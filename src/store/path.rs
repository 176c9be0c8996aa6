use std::fmt;

use super::{StoreError, StoreResult};

/// A document's path relative to the database root: `collection/id(/collection/id)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocPath(String);

impl DocPath {
    /// A top-level document. Ids are validated: a client-controlled id can never
    /// address another path.
    pub fn root(collection: &str, id: &str) -> StoreResult<Self> {
        check_segment(collection)?;
        check_segment(id)?;
        Ok(Self(format!("{collection}/{id}")))
    }

    /// A document in a subcollection of this one.
    pub fn child(&self, collection: &str, id: &str) -> StoreResult<Self> {
        check_segment(collection)?;
        check_segment(id)?;
        Ok(Self(format!("{}/{collection}/{id}", self.0)))
    }

    /// Parses a relative path with an even number of valid segments.
    pub fn parse(path: &str) -> StoreResult<Self> {
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2 || !segments.len().is_multiple_of(2) {
            return Err(StoreError::InvalidArgument(format!(
                "not a document path: {path}"
            )));
        }
        for s in &segments {
            check_segment(s)?;
        }
        Ok(Self(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn id(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The id of the collection holding this document.
    pub fn collection_id(&self) -> &str {
        self.0.rsplit('/').nth(1).unwrap_or_default()
    }

    /// The document owning this one's collection, `None` at the top level.
    pub fn parent(&self) -> Option<DocPath> {
        let mut it = self.0.rsplitn(3, '/');
        let (_id, _coll, rest) = (it.next(), it.next(), it.next());
        rest.map(|r| DocPath(r.to_owned()))
    }

    /// The collection path (`users/u1/analyses`).
    pub fn collection_path(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(c, _)| c)
    }

    /// True when `self` lies strictly below `ancestor`.
    pub fn is_below(&self, ancestor: &DocPath) -> bool {
        self.0.len() > ancestor.0.len() + 1
            && self.0.starts_with(&ancestor.0)
            && self.0.as_bytes()[ancestor.0.len()] == b'/'
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Firestore's id rules: non-empty, ≤1500 bytes, no `/`, not `.` or `..`, not `__.*__`.
fn check_segment(s: &str) -> StoreResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 1500
        && !s.contains('/')
        && s != "."
        && s != ".."
        && !(s.starts_with("__") && s.ends_with("__"));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "invalid document id or collection id: {s:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigates_paths() -> StoreResult<()> {
        let u = DocPath::root("users", "u1")?;
        let a = u.child("analyses", "a1")?;
        assert_eq!(a.as_str(), "users/u1/analyses/a1");
        assert_eq!(a.id(), "a1");
        assert_eq!(a.collection_id(), "analyses");
        assert_eq!(a.collection_path(), "users/u1/analyses");
        assert_eq!(a.parent(), Some(u.clone()));
        assert_eq!(u.parent(), None);
        assert!(a.is_below(&u));
        assert!(!u.is_below(&u));
        assert!(!DocPath::root("users", "u10")?.is_below(&DocPath::root("users", "u1")?));
        Ok(())
    }

    #[test]
    fn rejects_hostile_ids() {
        assert!(DocPath::root("users", "a/b").is_err());
        assert!(DocPath::root("users", "..").is_err());
        assert!(DocPath::root("users", "").is_err());
        assert!(DocPath::root("users", "__x__").is_err());
        assert!(DocPath::parse("users").is_err());
        assert!(DocPath::parse("users/a/b").is_err());
    }
}
