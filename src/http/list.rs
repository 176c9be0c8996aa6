//! Shared pieces of list endpoints.

use actix_web::HttpResponse;
use serde::Serialize;

use crate::domain::pagination::Page;
use crate::domain::versioned::Versioned;
use crate::error::{AppError, AppResult};

/// The body of every list response.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<'a, T> {
    items: Vec<&'a T>,
    /// Null exactly when there are no more items.
    next_cursor: Option<&'a str>,
}

/// `{items, nextCursor}` from a page of versioned items.
pub fn page_response<T: Serialize>(page: &Page<Versioned<T>>) -> HttpResponse {
    HttpResponse::Ok().json(ListPage {
        items: page.items.iter().map(|v| &v.item).collect(),
        next_cursor: page.next_cursor.as_deref(),
    })
}

/// An RFC 3339 query parameter the store can hold (from year 0001; the parser
/// itself stops 26 hours before Firestore's end of 9999), or 400 naming it.
pub fn timestamp_param(name: &str, v: Option<&str>) -> AppResult<Option<jiff::Timestamp>> {
    v.map(|s| {
        s.parse::<jiff::Timestamp>()
            .ok()
            .filter(|t| crate::store::limits::storable(*t))
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "{name} must be an RFC 3339 timestamp from 0001-01-01T00:00:00Z to 9999-12-30T22:00:00Z"
                ))
            })
    })
    .transpose()
}
