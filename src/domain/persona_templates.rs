//! The built-in persona templates, `system/personaTemplates` (`{items: [...]}`):
//! written by the migrations and replaced by admins through
//! `PUT /v1/admin/system/personaTemplates`, which must hold the body to the
//! same shape, or `GET /v1/personas/templates` would serve whatever was put.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::personas::Characteristics;
use super::users;

/// The document: its only field is `items`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[validate(schema(function = "unique_ids"))]
pub struct PersonaTemplates {
    /// 0..100 templates (as many as a user may have personas), `templateId`s unique.
    #[validate(length(max = 100), nested)]
    #[schema(max_items = 100)]
    pub items: Vec<PersonaTemplate>,
}

/// A persona as it would be created from the template, with an id of its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonaTemplate {
    /// 1..100 of `A-Z a-z 0-9 _ -`, unique among the templates.
    #[validate(custom(function = "template_id"))]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub template_id: String,
    #[validate(custom(function = "name_len"))]
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[validate(custom(function = "description_len"))]
    #[schema(min_length = 10, max_length = 500)]
    pub description: String,
    #[validate(nested)]
    pub characteristics: Characteristics,
}

fn template_id(s: &str) -> Result<(), ValidationError> {
    let ok = (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new("pattern")
            .with_message("must be 1 to 100 characters of A-Z, a-z, 0-9, `_` and `-`".into()))
    }
}
fn name_len(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 1, 100)
}
fn description_len(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 10, 500)
}

fn unique_ids(t: &PersonaTemplates) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    match t.items.iter().position(|i| !seen.insert(i.template_id.as_str())) {
        None => Ok(()),
        Some(i) => {
            let mut e = ValidationError::new("unique").with_message("templateId is used twice".into());
            e.add_param("field".into(), &format!("items[{i}].templateId"));
            Err(e)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_templates_are_valid() {
        let doc = crate::domain::migrations::initial_templates();
        let t: PersonaTemplates = serde_json::from_value(doc).unwrap();
        assert_eq!(t.items.len(), 4);
        t.validate().unwrap();
    }

    #[test]
    fn ids_are_plain_and_unique() {
        assert!(template_id("saas-founder_2").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(101)] {
            assert!(template_id(bad).is_err(), "{bad}");
        }
    }
}
