//! ETags from documents' update times, and the `If-Match` header.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::domain::versioned::IfMatch;
use crate::error::AppResult;
use crate::store::Timestamp;

/// A strong ETag naming the exact update time (`"<seconds>.<nanos>"`).
pub fn of(version: Timestamp) -> String {
    format!("\"{}.{:09}\"", version.as_second(), version.subsec_nanosecond())
}

/// The version inside an opaque tag we issued (without its quotes).
fn parse_opaque(inner: &str) -> Option<Timestamp> {
    let (secs, nanos) = inner.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    Timestamp::new(secs.parse().ok()?, nanos.parse().ok()?).ok()
}

#[cfg(test)]
fn parse(tag: &str) -> Option<Timestamp> {
    parse_opaque(tag.trim().strip_prefix('"')?.strip_suffix('"')?)
}

/// The `If-Match` header as documented; [`if_match`] reads it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only
pub struct IfMatchHeader {
    /// `*` or a list of ETags: the write happens only when one of them is the
    /// resource's current ETag (strong comparison), else 412.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

/// 200 with the item as JSON and its ETag.
pub fn ok<T: Serialize>(item: &T, version: Timestamp) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, of(version)))
        .json(item)
}

/// The members of one `If-Match` field value: `*`, or a comma-separated list of
/// entity tags (`"…"` strong, `W/"…"` weak). Commas may occur inside quotes.
/// Returns `None` for `*`; otherwise the strong tags we could have issued.
fn members(value: &str, out: &mut Vec<Timestamp>) -> Option<()> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(());
        }
        if let Some(after) = rest.strip_prefix('*')
            && (after.is_empty() || after.starts_with([' ', '\t', ',']))
        {
            return None;
        }
        let weak = rest.starts_with("W/\"");
        let quoted = rest.strip_prefix("W/").unwrap_or(rest);
        if let Some(body) = quoted.strip_prefix('"')
            && let Some(end) = body.find('"')
        {
            // Weak tags never match under the strong comparison If-Match uses.
            if !weak && let Some(t) = parse_opaque(&body[..end]) {
                out.push(t);
            }
            rest = &body[end + 1..];
        } else {
            // Malformed member: skip to the next comma; it matches nothing.
            rest = rest.find(',').map_or("", |i| &rest[i..]);
        }
    }
}

/// `If-Match` (every field line of it) → the condition a write must meet.
/// A member we never issued (weak, malformed, unknown) matches nothing.
pub fn if_match(req: &HttpRequest) -> AppResult<IfMatch> {
    let mut lines = req.headers().get_all(header::IF_MATCH).peekable();
    if lines.peek().is_none() {
        return Ok(IfMatch::Absent);
    }
    let mut tags = Vec::new();
    for line in lines {
        // Non-ASCII bytes cannot form a tag we issued.
        let Ok(v) = line.to_str() else { continue };
        if members(v, &mut tags).is_none() {
            return Ok(IfMatch::Any);
        }
    }
    Ok(IfMatch::Tags(tags))
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

    fn list(v: &str) -> Option<Vec<Timestamp>> {
        let mut out = Vec::new();
        members(v, &mut out).map(|()| out)
    }

    #[test]
    fn parses_lists_stars_and_weak_tags() {
        let a = Timestamp::new(5, 1).unwrap();
        let b = Timestamp::new(6, 2).unwrap();
        assert_eq!(list("*"), None);
        assert_eq!(list(" * "), None);
        assert_eq!(list(&format!("\"x\", {}", of(a))), Some(vec![a]));
        assert_eq!(list(&format!("{},{}", of(a), of(b))), Some(vec![a, b]));
        assert_eq!(list(&format!("W/{}", of(a))), Some(vec![]));
        assert_eq!(list(&format!("\"a,b\", {}", of(b))), Some(vec![b]));
        assert_eq!(list(&format!("garbage, {}", of(b))), Some(vec![b]));
        assert_eq!(list("\"unterminated"), Some(vec![]));
        assert_eq!(list("*x"), Some(vec![]));
        assert_eq!(list(""), Some(vec![]));
    }
}
