//! Personas (`users/{uid}/personas/{id}`): at most 100 per user, at most one
//! default (switching it is one transaction), usage counters moved by analyses,
//! lists sorted by recency or use, and the built-in templates. The count and the
//! default are kept in the user's persona counter (`persona_counter`).

use std::sync::Arc;
use std::time::Duration;

use firestore::FirestoreTimestamp;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::feed::{Feed, Kind};
use super::idempotency::Recorder;
use super::pagination::{CursorCodec, FirstPages, Page, PageRequest, decode_page};
use super::persona_counter;
use super::user_locks::UserLocks;
use super::users;
use super::versioned::{self, Versioned};
use crate::cache::{CacheBudget, Share};
use crate::error::{AppError, AppResult, FieldError};
use crate::metrics::Metrics;
use crate::store::{self, Direction, DocPath, Fields, Precondition, Query, Store, TxOutcome, Write, value};

pub const COLLECTION: &str = "personas";
pub const MAX_PER_USER: usize = 100;
/// `system/{TEMPLATES_DOC}` holds the built-in personas (written by migration 1).
pub const TEMPLATES_DOC: &str = "personaTemplates";

fn item_lengths(items: &[String]) -> Result<(), ValidationError> {
    if items.iter().all(|s| s.chars().count() <= 200) {
        Ok(())
    } else {
        Err(ValidationError::new("length").with_message("each item must be at most 200 characters".into()))
    }
}
fn max_200(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 0, 200)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Demographics {
    #[serde(default)]
    #[validate(custom(function = "max_200"))]
    #[schema(max_length = 200)]
    pub age_range: Option<String>,
    #[serde(default)]
    #[validate(custom(function = "max_200"))]
    #[schema(max_length = 200)]
    pub occupation: Option<String>,
    #[serde(default)]
    #[validate(custom(function = "max_200"))]
    #[schema(max_length = 200)]
    pub income: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Psychographics {
    #[serde(default)]
    #[validate(length(max = 20), custom(function = "item_lengths"))]
    #[schema(schema_with = crate::domain::input::short_list)]
    pub values: Vec<String>,
    #[serde(default)]
    #[validate(length(max = 20), custom(function = "item_lengths"))]
    #[schema(schema_with = crate::domain::input::short_list)]
    pub interests: Vec<String>,
    #[serde(default)]
    #[validate(length(max = 20), custom(function = "item_lengths"))]
    #[schema(schema_with = crate::domain::input::short_list)]
    pub challenges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    #[serde(default)]
    #[validate(custom(function = "max_200"))]
    #[schema(max_length = 200)]
    pub decision_making: Option<String>,
    #[serde(default)]
    #[validate(length(max = 20), custom(function = "item_lengths"))]
    #[schema(schema_with = crate::domain::input::short_list)]
    pub media_consumption: Vec<String>,
    #[serde(default)]
    #[validate(length(max = 20), custom(function = "item_lengths"))]
    #[schema(schema_with = crate::domain::input::short_list)]
    pub purchasing_triggers: Vec<String>,
}

/// Every part is optional; absent parts are empty. Strings ≤ 200, lists ≤ 20 items.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Characteristics {
    #[serde(default, deserialize_with = "default_if_absent")]
    #[validate(nested)]
    pub demographics: Demographics,
    #[serde(default, deserialize_with = "default_if_absent")]
    #[validate(nested)]
    pub psychographics: Psychographics,
    #[serde(default, deserialize_with = "default_if_absent")]
    #[validate(nested)]
    pub behavior: Behavior,
}

fn default_if_absent<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(de: D) -> Result<T, D::Error> {
    T::deserialize(de)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonaMetadata {
    pub is_default: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: FirestoreTimestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: FirestoreTimestamp,
    pub usage_count: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<FirestoreTimestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Persona {
    pub persona_id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub characteristics: Characteristics,
    pub metadata: PersonaMetadata,
}

/// `POST /v1/personas`.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPersona {
    #[validate(custom(function = "name_len"))]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: String,
    #[validate(custom(function = "description_len"))]
    #[schema(min_length = 10, max_length = 500, nullable = false)]
    pub description: String,
    #[validate(nested)]
    pub characteristics: Characteristics,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[schema(nullable = false)]
    pub is_default: Option<bool>,
}

/// `PATCH /v1/personas/{id}`: the fields given replace the stored ones; within
/// `characteristics`, each part given (`demographics`, `psychographics`,
/// `behavior`) replaces that part and the others are kept.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonaPatch {
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(custom(function = "name_len"))]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(custom(function = "description_len"))]
    #[schema(min_length = 10, max_length = 500, nullable = false)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub characteristics: Option<CharacteristicsPatch>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[schema(nullable = false)]
    pub is_default: Option<bool>,
}

/// The parts of `characteristics` a PATCH replaces.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CharacteristicsPatch {
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub demographics: Option<Demographics>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub psychographics: Option<Psychographics>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub behavior: Option<Behavior>,
}

fn name_len(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 1, 100)
}
fn description_len(s: &str) -> Result<(), ValidationError> {
    users::length_between(s, 10, 500)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sort {
    Recent,
    MostUsed,
}

impl Sort {
    pub fn parse(s: Option<&str>) -> AppResult<Self> {
        match s {
            None | Some("recent") => Ok(Self::Recent),
            Some("mostUsed") => Ok(Self::MostUsed),
            Some(_) => Err(AppError::BadRequest("sort must be `recent` or `mostUsed`".into())),
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Recent => "recent",
            Self::MostUsed => "mostUsed",
        }
    }
}

pub fn persona_path(uid: &str, id: &str) -> AppResult<DocPath> {
    Ok(users::Users::path(uid)?.child(COLLECTION, id)?)
}

fn path_or_404(uid: &str, id: &str) -> AppResult<DocPath> {
    persona_path(uid, id).map_err(|_| AppError::NotFound)
}

/// The write an analysis makes on the persona it used (inside its transaction).
pub fn usage_write(path: DocPath, now: jiff::Timestamp) -> Write {
    let mut fields = Fields::new();
    value::set_path(&mut fields, "metadata.lastUsedAt", value::timestamp(now));
    Write::update(path, fields, vec!["metadata.lastUsedAt".into()]).increment("metadata.usageCount", 1)
}

fn list_query(user: &DocPath, sort: Sort) -> Query {
    let q = Query::collection(Some(user), COLLECTION);
    match sort {
        Sort::Recent => q.order("metadata.createdAt", Direction::Desc),
        Sort::MostUsed => q
            .order("metadata.usageCount", Direction::Desc)
            .order("metadata.createdAt", Direction::Desc),
    }
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let Ok(u) = DocPath::root(users::COLLECTION, "example") else {
        return Vec::new();
    };
    vec![
        ("personas: recent", list_query(&u, Sort::Recent)),
        ("personas: most used", list_query(&u, Sort::MostUsed)),
        (
            "personas: all (first count of the counter)",
            Query::collection(Some(&u), COLLECTION),
        ),
    ]
}

/// Makes `id` the default in `counter`, returning the write that clears the
/// previous default (read here, so a stale counter entry clears nothing).
async fn replace_default(
    tx: &mut dyn store::Transaction,
    user: &DocPath,
    counter: &mut persona_counter::Counter,
    id: &str,
    now: jiff::Timestamp,
) -> AppResult<Option<Write>> {
    let previous = counter.default_id.replace(id.to_owned());
    let Some(previous) = previous.filter(|p| p != id) else {
        return Ok(None);
    };
    let path = user.child(COLLECTION, &previous)?;
    let still_default = tx
        .get(&path)
        .await?
        .is_some_and(|d| d.field("metadata.isDefault") == Some(&value::boolean(true)));
    Ok(still_default.then(|| persona_counter::clear_default(path, now)))
}

#[derive(Clone)]
pub struct Personas {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    metrics: Arc<Metrics>,
    /// First pages per (uid, sort), 30 min.
    lists: FirstPages<Sort, Persona>,
    /// Writes that lock the user's persona counter take turns per user.
    turns: UserLocks,
    feed: Feed,
}

pub type PersonaPage = Page<Versioned<Persona>>;

impl Personas {
    pub fn new(
        store: Arc<dyn Store>,
        cursors: CursorCodec,
        metrics: Arc<Metrics>,
        budget: &CacheBudget,
        feed: Feed,
    ) -> Self {
        Self {
            store,
            cursors,
            metrics,
            feed,
            lists: FirstPages::new(
                "persona_lists",
                Duration::from_secs(30 * 60),
                &[Sort::Recent, Sort::MostUsed],
                budget.bytes(Share::PersonaLists),
                budget.bytes(Share::Generations) / 4,
            ),
            turns: UserLocks::default(),
        }
    }

    /// Drops this instance's cached lists of `uid` (every write calls it before answering).
    pub async fn invalidate(&self, uid: &str) {
        self.lists.invalidate(uid).await;
    }

    /// Drops every cached list on this instance.
    pub fn flush(&self) {
        self.lists.invalidate_all();
    }

    /// After a write committed: the other instances drop their lists too.
    async fn announce(&self, uid: &str) {
        self.feed.publish(uid, Kind::Personas).await;
    }

    /// Creates a persona under the cap; `record` adds an idempotent response to the same commit.
    pub async fn create(
        &self,
        uid: &str,
        new: NewPersona,
        record: Option<Arc<Recorder<Persona>>>,
    ) -> AppResult<Versioned<Persona>> {
        let user = users::Users::path(uid)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = user.child(COLLECTION, &id)?;
        let new = Arc::new(new);
        let turn = self.turns.lock(uid).await;
        let result = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (user, path, new, id, uid, record) = (
                user.clone(),
                path.clone(),
                new.clone(),
                id.clone(),
                uid.to_owned(),
                record.clone(),
            );
            async move {
                let now = value::now();
                // The counter, read (and so locked) here, makes the cap exact under concurrency.
                let mut counter = persona_counter::read(tx, &user, &path, now).await?;
                if counter.count >= MAX_PER_USER as i64 {
                    return Err(AppError::Validation(vec![FieldError::new(
                        "",
                        "limit",
                        format!("at most {MAX_PER_USER} personas per user"),
                    )]));
                }
                let is_default = new.is_default.unwrap_or(false);
                let persona = Persona {
                    persona_id: id.clone(),
                    user_id: uid,
                    name: new.name.clone(),
                    description: new.description.clone(),
                    characteristics: new.characteristics.clone(),
                    metadata: PersonaMetadata {
                        is_default,
                        created_at: FirestoreTimestamp(now),
                        updated_at: FirestoreTimestamp(now),
                        usage_count: 0,
                        last_used_at: None,
                    },
                };
                let mut writes = vec![Write::create(path.clone(), store::encode(&persona)?)];
                counter.count += 1;
                if is_default {
                    writes.extend(replace_default(tx, &user, &mut counter, &id, now).await?);
                }
                writes.extend(persona_counter::writes(&user, counter)?);
                if let Some(r) = record {
                    writes.push(r.write(tx, &persona).await?);
                }
                Ok(TxOutcome::new(writes, persona))
            }
            .boxed()
        })
        .await;
        drop(turn);
        self.invalidate(uid).await;
        let (persona, committed) = result?;
        self.announce(uid).await;
        versioned::written(persona, &committed, &path)
    }

    pub async fn get(&self, uid: &str, id: &str) -> AppResult<Versioned<Persona>> {
        let doc = self
            .store
            .get(&path_or_404(uid, id)?)
            .await?
            .ok_or(AppError::NotFound)?;
        Versioned::from_doc(doc)
    }

    pub async fn list(&self, uid: &str, sort: Sort, page: &PageRequest) -> AppResult<Arc<PersonaPage>> {
        let fetch = async {
            let binding = format!("{uid}|personas|sort={}", sort.as_str());
            let q = list_query(&users::Users::path(uid)?, sort);
            let (docs, next) = self.cursors.fetch(self.store.as_ref(), q, page, &binding).await?;
            decode_page(docs, next)
        };
        self.lists
            .get_or_fetch(uid, Some(sort), page, &self.metrics, fetch)
            .await
    }

    pub async fn patch(
        &self,
        uid: &str,
        id: &str,
        patch: PersonaPatch,
        if_match: versioned::IfMatch,
    ) -> AppResult<Versioned<Persona>> {
        let path = path_or_404(uid, id)?;
        let user = users::Users::path(uid)?;
        let patch = Arc::new(patch);
        // Only a default switch touches the counter.
        let turn = match patch.is_default {
            Some(_) => Some(self.turns.lock(uid).await),
            None => None,
        };
        let result = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (path, user, patch, if_match) = (path.clone(), user.clone(), patch.clone(), if_match.clone());
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                versioned::check_version(&if_match, &doc, "persona")?;
                let now = value::now();
                let mut fields = Fields::new();
                let mut mask = vec!["metadata.updatedAt".to_owned()];
                value::set_path(&mut fields, "metadata.updatedAt", value::timestamp(now));
                if let Some(n) = &patch.name {
                    fields.insert("name".into(), value::string(n.clone()));
                    mask.push("name".into());
                }
                if let Some(d) = &patch.description {
                    fields.insert("description".into(), value::string(d.clone()));
                    mask.push("description".into());
                }
                if let Some(c) = &patch.characteristics {
                    let parts = [
                        (
                            "characteristics.demographics",
                            c.demographics.as_ref().map(value::from_serialize),
                        ),
                        (
                            "characteristics.psychographics",
                            c.psychographics.as_ref().map(value::from_serialize),
                        ),
                        (
                            "characteristics.behavior",
                            c.behavior.as_ref().map(value::from_serialize),
                        ),
                    ];
                    for (field, v) in parts {
                        if let Some(v) = v {
                            value::set_path(&mut fields, field, v);
                            mask.push(field.into());
                        }
                    }
                }
                let mut writes = Vec::new();
                if let Some(d) = patch.is_default {
                    value::set_path(&mut fields, "metadata.isDefault", value::boolean(d));
                    mask.push("metadata.isDefault".into());
                    let mut counter = persona_counter::read(tx, &user, &path, now).await?;
                    let id = path.id().to_owned();
                    if d {
                        writes.extend(replace_default(tx, &user, &mut counter, &id, now).await?);
                    } else if counter.default_id.as_deref() == Some(&id) {
                        counter.default_id = None;
                    }
                    writes.extend(persona_counter::writes(&user, counter)?);
                }
                // What the document holds after the update: no second read for the answer.
                let mut updated = doc.fields.clone();
                value::apply_mask(&mut updated, &fields, &mask);
                let persona: Persona = value::decode_fields(updated)?;
                writes.push(
                    Write::update(path, fields, mask).precondition(Precondition::UpdateTime(doc.update_time)),
                );
                Ok::<_, AppError>(TxOutcome::new(writes, persona))
            }
            .boxed()
        })
        .await;
        drop(turn);
        self.invalidate(uid).await;
        let (persona, committed) = result?;
        self.announce(uid).await;
        versioned::written(persona, &committed, &path)
    }

    /// Deletes a persona and counts it out, in one transaction.
    pub async fn delete(&self, uid: &str, id: &str, if_match: versioned::IfMatch) -> AppResult<()> {
        let path = path_or_404(uid, id)?;
        let user = users::Users::path(uid)?;
        let counter_path = persona_counter::path(&user)?;
        let turn = self.turns.lock(uid).await;
        let result = store::run_transaction(self.store.as_ref(), |tx| {
            let (path, user, counter_path, if_match) =
                (path.clone(), user.clone(), counter_path.clone(), if_match.clone());
            async move {
                let docs = tx.get_all(&[path.clone(), counter_path]).await?;
                let doc = docs.first().cloned().flatten().ok_or(AppError::NotFound)?;
                versioned::check_version(&if_match, &doc, "persona")?;
                let mut writes =
                    vec![Write::delete(path.clone()).precondition(Precondition::UpdateTime(doc.update_time))];
                // Without a counter there is nothing to count out: its first count will not see this one.
                if docs.get(1).is_some_and(Option::is_some) {
                    let mut counter = persona_counter::read(tx, &user, &path, value::now()).await?;
                    counter.count -= 1;
                    if counter.default_id.as_deref() == Some(path.id()) {
                        counter.default_id = None;
                    }
                    writes.extend(persona_counter::writes(&user, counter)?);
                }
                Ok::<_, AppError>(TxOutcome::new(writes, ()))
            }
            .boxed()
        })
        .await;
        drop(turn);
        self.invalidate(uid).await;
        if result.is_ok() {
            self.announce(uid).await;
        }
        result
    }

    /// The built-in personas (`system/personaTemplates`, written by the migrations).
    pub async fn templates(&self) -> AppResult<Vec<serde_json::Value>> {
        let doc = self.store.get(&DocPath::root("system", TEMPLATES_DOC)?).await?;
        let items = doc
            .and_then(|d| d.field("items").map(value::to_json))
            .and_then(|j| j.as_array().cloned())
            .unwrap_or_default();
        Ok(items)
    }
}
