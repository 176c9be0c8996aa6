//! ETags from documents' update times, and `If-Match` as a store precondition.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::error::{AppError, AppResult};
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
/// `*`: the resource must exist. An ETag we never issued can never match: 412.
pub fn if_match(req: &HttpRequest) -> AppResult<Precondition> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let v = v
        .to_str()
        .map_err(|_| AppError::PreconditionFailed("If-Match does not match the current version".into()))?
        .trim();
    if v == "*" {
        return Ok(Precondition::Exists(true));
    }
    parse(v)
        .map(Precondition::UpdateTime)
        .ok_or_else(|| AppError::PreconditionFailed("If-Match does not match the current version".into()))
}

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
