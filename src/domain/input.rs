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
