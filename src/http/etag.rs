//! ETags from documents' update times, and `If-Match` as a store precondition.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::error::AppResult;
use crate::store::{Precondition, Timestamp};

/// A strong ETag naming the exact update time (`"<seconds>.<nanos>"`).
pub fn of(version: Timestamp) -> String {
    format!("\"{}.{:09}\"", version.as_second(), version.subsec_nanosecond())
}

fn parse(tag: &str) -> Option<Timestamp> {
    let inner = tag.trim().strip_prefix('"')?.strip_suffix('"')?;
    let (secs, nanos) = inner.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    Timestamp::new(secs.parse().ok()?, nanos.parse().ok()?).ok()
}

/// 200 with the item as JSON and its ETag.
pub fn ok<T: Serialize>(item: &T, version: Timestamp) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, of(version)))
        .json(item)
}

/// `If-Match` → the precondition a write must carry. Absent: last write wins.
/// `*`: the resource must exist. An ETag we never issued (weak, malformed, a
/// list) can never match: it becomes a version no document has, so the write
/// answers 404 when the resource is missing and 412 otherwise.
pub fn if_match(req: &HttpRequest) -> AppResult<Precondition> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(Precondition::Exists(true));
    }
    Ok(Precondition::UpdateTime(parse(v).unwrap_or(NEVER)))
}

/// A version no stored document has. Not the epoch itself: that is the
/// protobuf default, which a store may read as "no precondition".
const NEVER: Timestamp = Timestamp::constant(1, 0);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Timestamp::new(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(parse(&of(t)), Some(t));
        assert_eq!(parse("W/\"1.000000000\""), None);
        assert_eq!(parse("\"abc\""), None);
    }
}
