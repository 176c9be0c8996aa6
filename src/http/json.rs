//! Request-body handling shared by every endpoint: media type (415), size
//! (413), syntax (400), shape (422 naming the field, unknown fields included)
//! and the `validator` rules (422 with every failing field's path).

use std::borrow::Cow;
use std::future::Future;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::strict::Strict;
use crate::error::{AppError, FieldError};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body, read and parsed only when the handler asks for it:
/// after the caller was authenticated, so a stranger learns nothing from body
/// errors and the rate limit counts first.
pub struct JsonBody {
    req: HttpRequest,
    payload: Payload,
}

impl FromRequest for JsonBody {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(Ok(JsonBody {
            req: req.clone(),
            payload: payload.take(),
        }))
    }
}

impl JsonBody {
    /// Reads, parses strictly and validates the body (415, 413, 400, 422).
    pub async fn validated<T: DeserializeOwned + Validate>(mut self) -> Result<T, AppError> {
        let bytes = read_json_body(&self.req, &mut self.payload).await?;
        let value: T = parse(&bytes)?;
        value.validate().map_err(|e| AppError::Validation(flatten(&e)))?;
        Ok(value)
    }

    /// Reads the body (415, 413, 400 as for every body) without parsing it.
    pub async fn bytes(mut self) -> Result<web::Bytes, AppError> {
        read_json_body(&self.req, &mut self.payload).await
    }
}

/// Checks the media type and reads at most `MAX_BODY_BYTES`.
fn read_json_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::Bytes, AppError>> + use<> {
    let is_json =
        req.mime_type().ok().flatten().is_some_and(|m| {
            m.essence_str() == "application/json" || m.suffix().is_some_and(|s| s == "json")
        });
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    async move {
        if !is_json {
            return Err(AppError::UnsupportedMediaType(
                "request bodies must be sent as Content-Type: application/json".into(),
            ));
        }
        if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(AppError::PayloadTooLarge);
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| AppError::BadRequest(format!("could not read the request body: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(AppError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// Deserializes strictly: syntax errors are 400; shape errors (wrong type,
/// missing or unknown field, an array where an object belongs) 422 with the path.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        // Valid JSON that no f64 holds (1e400) is a bad value, not bad syntax.
        if e.to_string().starts_with("number out of range") {
            AppError::validation("", "range", "a number is out of range")
        } else {
            AppError::BadRequest(format!("malformed JSON body: {e}"))
        }
    })?;
    serde_path_to_error::deserialize(Strict(value)).map_err(|err| {
        let path = err.path().to_string();
        AppError::Validation(vec![shape_error(&path, err.inner())])
    })
}

fn shape_error(path: &str, err: &serde_json::Error) -> FieldError {
    let msg = err.to_string();
    // serde_json appends " at line L column C": not useful to API clients.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    let field = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = if field.is_empty() || field.ends_with(name) {
            if field.is_empty() { name.to_owned() } else { field }
        } else {
            format!("{field}.{name}")
        };
        return FieldError::new(field, "unknown_field", format!("unknown field `{name}`"));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        };
        return FieldError::new(field, "required", format!("`{name}` is required"));
    }
    let code = if msg.starts_with("invalid type: null") {
        "required"
    } else {
        "type"
    };
    let msg = humanize(&msg);
    FieldError::new(field, code, msg)
}

/// Says "a number" where serde names a Rust type (`u32`, `f64`, …).
fn humanize(msg: &str) -> String {
    let mut out = msg.to_owned();
    for (rust, plain) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected an array"),
    ] {
        if let Some(rest) = out.strip_suffix(rust) {
            out = format!("{rest}{plain}");
        }
    }
    out
}

/// Flattens `validator` errors into API field paths (`results.analysis[0].score`).
pub fn flatten(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(errors, "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn walk(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (name, kind) in errors.errors() {
        let name = if name == "__all__" {
            name.to_string()
        } else {
            camel(name)
        };
        let path = if name == "__all__" {
            prefix.to_owned()
        } else if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e.message.as_ref().map_or_else(|| describe(e), Cow::to_string);
                    // Struct-level rules name the field they are about in a `field` param.
                    let path = match e.params.get("field").and_then(|f| f.as_str()) {
                        Some(f) if path.is_empty() => f.to_owned(),
                        Some(f) => format!("{path}.{f}"),
                        None => path.clone(),
                    };
                    out.push(FieldError::new(path, e.code.to_string(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => walk(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    walk(inner, &format!("{path}[{i}]"), out);
                }
            }
        }
    }
}

fn describe(e: &validator::ValidationError) -> String {
    let p = |k: &str| e.params.get(k).map(ToString::to_string);
    match e.code.as_ref() {
        "length" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("must be {min} to {max} characters (or items) long"),
            (Some(min), None) => format!("must be at least {min} characters (or items) long"),
            (None, Some(max)) => format!("must be at most {max} characters (or items) long"),
            _ => "has an invalid length".into(),
        },
        "range" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "is out of range".into(),
        },
        "url" => "must be a valid http(s) URL".into(),
        other => format!("is invalid ({other})"),
    }
}

/// `snake_case` Rust field names → the API's camelCase.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Validate)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        #[validate(length(min = 1, max = 3))]
        display_name: String,
        #[validate(nested)]
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize, Validate)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        #[validate(range(min = 0, max = 100))]
        score: i64,
    }

    fn err_of<T: DeserializeOwned + Validate>(body: &str) -> AppError {
        match parse::<T>(body.as_bytes()) {
            Err(e) => e,
            Ok(v) => AppError::Validation(flatten(&v.validate().unwrap_err())),
        }
    }

    fn fields(e: AppError) -> Vec<(String, String)> {
        match e {
            AppError::Validation(v) => v.into_iter().map(|f| (f.field, f.code)).collect(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert!(matches!(
            err_of::<Outer>("{\"displayName\": "),
            AppError::BadRequest(_)
        ));
        assert!(matches!(
            err_of::<Outer>(r#"{"displayName":"a","items":[]} {}"#),
            AppError::BadRequest(_)
        ));
    }

    #[test]
    fn shape_errors_name_the_field() {
        let f = fields(err_of::<Outer>(
            r#"{"displayName":"a","items":[{"score":1,"bogus":2}]}"#,
        ));
        assert_eq!(f, vec![("items[0].bogus".into(), "unknown_field".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":"a","items":[{"score":"x"}]}"#));
        assert_eq!(f, vec![("items[0].score".into(), "type".into())]);
        let f = fields(err_of::<Outer>(r#"{"items":[]}"#));
        assert_eq!(f, vec![("displayName".into(), "required".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":null,"items":[]}"#));
        assert_eq!(f, vec![("displayName".into(), "required".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":"a","items":[],"extra":1}"#));
        assert_eq!(f, vec![("extra".into(), "unknown_field".into())]);
        // Derived structs would take an array by position; request bodies may not.
        let f = fields(err_of::<Outer>(r#"["a", []]"#));
        assert_eq!(f, vec![("".into(), "type".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":"a","items":[[5]]}"#));
        assert_eq!(f, vec![("items[0]".into(), "type".into())]);
        let f = fields(err_of::<Outer>(
            r#"{"displayName":"a","items":[{"score":1e400}]}"#,
        ));
        assert_eq!(f, vec![("".into(), "range".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":"a","items":[{"score":1.5}]}"#));
        assert_eq!(f, vec![("items[0].score".into(), "type".into())]);
    }

    #[test]
    fn rule_errors_use_api_paths_and_count_characters() {
        let f = fields(err_of::<Outer>(
            r#"{"displayName":"ééé","items":[{"score":1},{"score":101}]}"#,
        ));
        assert_eq!(f, vec![("items[1].score".into(), "range".into())]);
        let f = fields(err_of::<Outer>(r#"{"displayName":"abcd","items":[]}"#));
        assert_eq!(f, vec![("displayName".into(), "length".into())]);
    }
}
