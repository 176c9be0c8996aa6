//! Serde helpers for request bodies: absent, `null` and present are different things.

/// For optional fields that may be absent but never `null`: `null` is a 422.
/// Use with `#[serde(default, deserialize_with = "...")]`.
pub fn non_null<'de, T, D>(de: D) -> Result<Option<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    T::deserialize(de).map(Some)
}

/// For `PATCH` bodies: distinguishes an absent field (`None`) from an explicit
/// `null` (`Some(None)`). Use with `#[serde(default, deserialize_with = "...")]`.
pub fn nullable<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(de).map(Some)
}

/// An absolute http(s) URL as request bodies take it (RFC 3986: visible ASCII
/// only). The OpenAPI document states this same pattern (with `format: uri`).
pub const HTTP_URL_PATTERN: &str = "^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$";

/// `HTTP_URL_PATTERN`, and a URL with a host that `url` parses.
pub fn is_http_url(s: &str) -> bool {
    let after_scheme = |scheme: &str| {
        s.get(..scheme.len())
            .filter(|p| p.eq_ignore_ascii_case(scheme))
            .map(|_| &s[scheme.len()..])
    };
    let rest = after_scheme("https://").or_else(|| after_scheme("http://"));
    rest.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| (b'!'..=b'~').contains(&b)))
        && url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// The schema of the personas' string lists: at most 20 items of at most 200 characters.
pub fn short_list() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200)),
        )
        .max_items(Some(20))
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_follow_the_documented_pattern() {
        let re = regex::Regex::new(HTTP_URL_PATTERN).unwrap();
        for s in [
            "https://example.com/offer",
            "HTTP://EXAMPLE.COM",
            "http://a.b/?q=1#x",
            " http://example.com",
            "http://exa mple.com",
            "http://exämple.com",
            "ftp://example.com",
            "http://",
            "https:/x.com",
            "http://[::1]:8080/",
        ] {
            assert!(
                !is_http_url(s) || re.is_match(s),
                "{s}: accepted, but not by the pattern"
            );
        }
        assert!(is_http_url("HTTPS://Example.com/a?b=c"));
        assert!(!is_http_url(" http://example.com"));
    }
}
