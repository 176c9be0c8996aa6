//! Analyses (`users/{uid}/analyses/{id}`): creation under the plan's monthly
//! quota (one transaction with every counter it moves), history with filters
//! and cursors, completion, deletion, batch reads, trends and share links.

use std::sync::Arc;
use std::time::Duration;

use firestore::FirestoreTimestamp;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::feed::{Feed, Kind};
use super::idempotency::Recorder;
use super::pagination::{CursorCodec, FirstPages, Page, PageRequest, decode_page};
use super::trends::{self, TrendCounters};
use super::user_locks::UserLocks;
use super::users::{self, Profile, Usage};
use super::versioned::{self, Versioned};
use super::{clock, personas};
use crate::cache::{CacheBudget, Share};
use crate::error::{AppError, AppResult, FieldError};
use crate::metrics::Metrics;
use crate::store::{
    self, Direction, DocPath, Fields, Op, Precondition, Query, Store, TxOutcome, Write, value,
};

pub const COLLECTION: &str = "analyses";
/// The largest `results.confidence` accepted.
pub const MAX_CONFIDENCE: f64 = 1.0;
/// The largest `results.processingTimeMs` accepted: any finite number.
pub const MAX_PROCESSING_TIME_MS: f64 = f64::MAX;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    Link,
    Text,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processing,
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processing" => Some(Self::Processing),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[validate(schema(function = "check_input"))]
pub struct AnalysisInput {
    /// 10..2000 characters; an http(s) URL when `inputType` is `link`.
    #[validate(custom(function = "offer_length"))]
    #[schema(min_length = 10, max_length = 2000)]
    pub offer_details: String,
    pub input_type: InputType,
    #[validate(custom(function = "len_1_100"))]
    #[schema(min_length = 1, max_length = 100)]
    pub persona: String,
    /// One of the caller's personas.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::input::non_null"
    )]
    #[schema(nullable = false)]
    pub custom_persona_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    #[validate(custom(function = "len_1_100"))]
    #[schema(min_length = 1, max_length = 100)]
    pub category: String,
    #[validate(range(min = 0.0, max = 100.0))]
    #[schema(minimum = 0, maximum = 100)]
    pub score: f64,
    #[validate(custom(function = "len_1_2000"))]
    #[schema(min_length = 1, max_length = 2000)]
    pub finding: String,
    #[validate(custom(function = "len_1_2000"))]
    #[schema(min_length = 1, max_length = 2000)]
    pub recommendation: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SampleCopy {
    #[validate(custom(function = "len_1_200"))]
    #[schema(min_length = 1, max_length = 200)]
    pub headline: String,
    #[validate(custom(function = "len_1_5000"))]
    #[schema(min_length = 1, max_length = 5000)]
    pub body: String,
    #[validate(custom(function = "len_1_100"))]
    #[schema(min_length = 1, max_length = 100)]
    pub call_to_action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    /// 1..50 findings.
    #[validate(length(min = 1, max = 50), nested)]
    #[schema(min_items = 1, max_items = 50)]
    pub analysis: Vec<Finding>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::input::non_null"
    )]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub sample_copy: Option<SampleCopy>,
    #[validate(range(min = 0.0, max = MAX_CONFIDENCE))]
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: f64,
    /// Milliseconds, > 0 (JSON numbers are finite; `1e400` is refused as out
    /// of range). No upper bound of our own (API.md asks none): the trends'
    /// sums saturate instead.
    #[validate(range(exclusive_min = 0.0))]
    #[schema(exclusive_minimum = 0)]
    pub processing_time_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisMetadata {
    #[schema(value_type = String, format = DateTime)]
    pub created_at: FirestoreTimestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: FirestoreTimestamp,
    pub status: Status,
    pub ai_model: String,
    pub version: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sharing {
    pub is_public: bool,
    pub share_token: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub shared_at: Option<FirestoreTimestamp>,
}

/// An analysis as stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub analysis_id: String,
    /// Omitted on the public shared view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub input: AnalysisInput,
    pub results: Option<Results>,
    pub metadata: AnalysisMetadata,
    pub sharing: Sharing,
}

pub type HistoryPage = Page<Versioned<Analysis>>;

/// `POST /v1/analyses`.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[validate(schema(function = "check_new"))]
pub struct NewAnalysis {
    #[validate(nested)]
    pub input: AnalysisInput,
    pub status: Status,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::input::non_null"
    )]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub results: Option<Results>,
    #[validate(custom(function = "len_1_100"))]
    #[schema(min_length = 1, max_length = 100)]
    pub ai_model: String,
    #[validate(custom(function = "len_1_50"))]
    #[schema(min_length = 1, max_length = 50)]
    pub version: String,
    /// A UUID.
    #[validate(custom(function = "uuid_format"))]
    #[schema(format = Uuid)]
    pub request_id: String,
}

/// `PATCH /v1/analyses/{id}`: complete or fail a processing analysis.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[validate(schema(function = "check_completion"))]
pub struct Completion {
    pub status: Status,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub results: Option<Results>,
}

/// `GET /v1/analyses` filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFilter {
    pub persona: Option<String>,
    pub status: Option<Status>,
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
}

impl HistoryFilter {
    /// Canonical text of the filters, for cursor binding and cache keys.
    fn canonical(&self) -> String {
        format!(
            "persona={:?}|status={:?}|since={:?}|until={:?}",
            self.persona,
            self.status.map(Status::as_str),
            self.since.map(|t| t.to_string()),
            self.until.map(|t| t.to_string())
        )
    }
}

pub use super::trends::{DayCount, Trends};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareLink {
    pub share_token: String,
    #[schema(value_type = String, format = DateTime)]
    pub shared_at: FirestoreTimestamp,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub items: Vec<Analysis>,
    pub missing: Vec<String>,
}

// ---- validation rules ----

fn len(s: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    users::length_between(s, min, max)
}
fn len_1_50(s: &str) -> Result<(), ValidationError> {
    len(s, 1, 50)
}
fn len_1_100(s: &str) -> Result<(), ValidationError> {
    len(s, 1, 100)
}
fn len_1_200(s: &str) -> Result<(), ValidationError> {
    len(s, 1, 200)
}
fn len_1_2000(s: &str) -> Result<(), ValidationError> {
    len(s, 1, 2000)
}
fn len_1_5000(s: &str) -> Result<(), ValidationError> {
    len(s, 1, 5000)
}
fn offer_length(s: &str) -> Result<(), ValidationError> {
    len(s, 10, 2000)
}
fn uuid_format(s: &str) -> Result<(), ValidationError> {
    // The hyphenated form only (not `urn:uuid:` or braces).
    let hyphenated = s.len() == 36 && s.as_bytes().get(8) == Some(&b'-');
    if hyphenated && uuid::Uuid::try_parse(s).is_ok() {
        Ok(())
    } else {
        Err(ValidationError::new("format").with_message("must be a UUID".into()))
    }
}
/// A struct-level rule's error, attributed to one field (see `http::json::flatten`).
fn on_field(mut e: ValidationError, field: &'static str, message: &'static str) -> ValidationError {
    e.add_param("field".into(), &field);
    e.with_message(message.into())
}

fn check_input(i: &AnalysisInput) -> Result<(), ValidationError> {
    if i.input_type == InputType::Link && !super::input::is_http_url(&i.offer_details) {
        return Err(on_field(
            ValidationError::new("url"),
            "offerDetails",
            "must be an http(s) URL when inputType is link",
        ));
    }
    Ok(())
}
fn check_new(n: &NewAnalysis) -> Result<(), ValidationError> {
    match (n.status, &n.results) {
        (Status::Completed, None) => Err(on_field(
            ValidationError::new("required"),
            "results",
            "is required when status is completed",
        )),
        (Status::Processing | Status::Failed, Some(_)) => Err(on_field(
            ValidationError::new("not_allowed"),
            "results",
            "is only allowed when status is completed",
        )),
        _ => Ok(()),
    }
}
fn check_completion(c: &Completion) -> Result<(), ValidationError> {
    match (c.status, &c.results) {
        (Status::Completed, None) => Err(on_field(
            ValidationError::new("required"),
            "results",
            "is required when status is completed",
        )),
        // Moving to `processing` is a transition, refused with 409 by the service.
        (Status::Failed | Status::Processing, Some(_)) => Err(on_field(
            ValidationError::new("not_allowed"),
            "results",
            "is only allowed when status is completed",
        )),
        _ => Ok(()),
    }
}

// ---- queries (declared for the index registry) ----

fn history_query(uid_path: &DocPath, f: &HistoryFilter) -> Query {
    let mut q = Query::collection(Some(uid_path), COLLECTION);
    if let Some(p) = &f.persona {
        q = q.filter("input.persona", Op::Eq, value::string(p.clone()));
    }
    if let Some(s) = f.status {
        q = q.filter("metadata.status", Op::Eq, value::string(s.as_str()));
    }
    if let Some(t) = f.since {
        q = q.filter("metadata.createdAt", Op::Ge, value::timestamp(t));
    }
    if let Some(t) = f.until {
        q = q.filter("metadata.createdAt", Op::Lt, value::timestamp(t));
    }
    q.order("metadata.createdAt", Direction::Desc)
}

fn share_query(token: &str) -> Query {
    Query::group(None, COLLECTION)
        .filter("sharing.shareToken", Op::Eq, value::string(token))
        .limit(2)
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let u = DocPath::root(users::COLLECTION, "example").unwrap_or_else(|_| unreachable_path());
    let now = jiff::Timestamp::now();
    let all = HistoryFilter {
        persona: Some("p".into()),
        status: Some(Status::Completed),
        since: Some(now),
        until: Some(now),
    };
    vec![
        ("analyses: history", history_query(&u, &HistoryFilter::default())),
        (
            "analyses: history by persona",
            history_query(
                &u,
                &HistoryFilter {
                    persona: all.persona.clone(),
                    ..Default::default()
                },
            ),
        ),
        (
            "analyses: history by status",
            history_query(
                &u,
                &HistoryFilter {
                    status: all.status,
                    ..Default::default()
                },
            ),
        ),
        (
            "analyses: history by persona and status, ranged",
            history_query(&u, &all),
        ),
        (
            "analyses: history ranged",
            history_query(
                &u,
                &HistoryFilter {
                    since: Some(now),
                    ..Default::default()
                },
            ),
        ),
        ("analyses: share-token lookup", share_query("t")),
    ]
}

#[cold]
fn unreachable_path() -> DocPath {
    // "users/example" is a valid literal path.
    DocPath::parse("users/example").unwrap_or_else(|_| std::process::abort())
}

// ---- the service ----

/// Caches: the unfiltered first history page and the trend counters per user (15 min).
#[derive(Clone)]
pub struct Analyses {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    users: users::Users,
    personas: personas::Personas,
    metrics: Arc<Metrics>,
    /// The unfiltered first history page per user (filtered pages are never
    /// cached: filter values cannot multiply entries).
    first_pages: FirstPages<(), Analysis>,
    trends: TrendCounters,
    /// Creates lock the user document (the quota): they take turns per user.
    turns: UserLocks,
    feed: Feed,
}

/// Transaction retries are generous, so quota checks stay exact under heavy contention.
fn analysis_path(uid: &str, id: &str) -> AppResult<DocPath> {
    Ok(users::Users::path(uid)?.child(COLLECTION, id)?)
}

/// Ids from the URL that cannot be document ids are simply not found.
fn path_or_404(uid: &str, id: &str) -> AppResult<DocPath> {
    analysis_path(uid, id).map_err(|_| AppError::NotFound)
}

impl Analyses {
    pub fn new(
        store: Arc<dyn Store>,
        cursors: CursorCodec,
        users: users::Users,
        personas: personas::Personas,
        metrics: Arc<Metrics>,
        budget: &CacheBudget,
        feed: Feed,
    ) -> Self {
        Self {
            feed,
            trends: TrendCounters::new(store.clone(), metrics.clone(), budget),
            store,
            cursors,
            users,
            personas,
            metrics,
            first_pages: FirstPages::new(
                "history_first_page",
                Duration::from_secs(15 * 60),
                &[()],
                budget.bytes(Share::HistoryPages),
                budget.bytes(Share::Generations) / 4,
            ),
            turns: UserLocks::default(),
        }
    }

    /// Drops this instance's cached pages and trends of `uid` (every write calls it before answering).
    pub async fn invalidate(&self, uid: &str) {
        self.first_pages.invalidate(uid).await;
        self.trends.invalidate(uid).await;
    }

    /// (entries, weighed bytes) of the history-page and trends caches, in that order.
    pub async fn cache_usage(&self) -> [(u64, u64); 2] {
        [self.first_pages.usage().await, self.trends.cache_usage().await]
    }

    /// Drops every cached page and trend window on this instance.
    pub fn flush(&self) {
        self.first_pages.invalidate_all();
        self.trends.invalidate_all();
    }

    /// An analysis write also moves the user's counters and a persona's usage;
    /// once `committed`, the other instances hear of it.
    async fn after_write(&self, uid: &str, committed: bool) {
        self.invalidate(uid).await;
        self.personas.invalidate(uid).await;
        self.users.invalidate(uid).await;
        if committed {
            self.feed.publish(uid, Kind::Analyses).await;
        }
    }

    /// Creates an analysis under the plan's monthly quota, in one transaction
    /// with the user's counters and the custom persona's usage.
    /// `record` adds an idempotent response to the same commit.
    pub async fn create(
        &self,
        uid: &str,
        new: NewAnalysis,
        record: Option<Arc<Recorder<Analysis>>>,
    ) -> AppResult<Versioned<Analysis>> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let user_path = users::Users::path(uid)?;
        let path = user_path.child(COLLECTION, &id)?;
        let persona_path = match &new.input.custom_persona_id {
            Some(pid) => Some(personas::persona_path(uid, pid).map_err(|_| unknown_persona())?),
            None => None,
        };
        let copies = i64::from(new.results.as_ref().is_some_and(|r| r.sample_copy.is_some()));
        let new = Arc::new(new);
        let turn = self.turns.lock(uid).await;
        let result = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (user_path, path, persona_path, new, id) = (
                user_path.clone(),
                path.clone(),
                persona_path.clone(),
                new.clone(),
                id.clone(),
            );
            let (uid, record) = (uid.to_owned(), record.clone());
            async move {
                let mut reads = vec![user_path.clone()];
                reads.extend(persona_path.clone());
                let docs = tx.get_all(&reads).await?;
                let user_doc = docs.first().cloned().flatten().ok_or(AppError::NotFound)?;
                if persona_path.is_some() && docs.get(1).cloned().flatten().is_none() {
                    return Err(unknown_persona());
                }
                let profile: Profile = user_doc.decode()?;
                let now = value::now();
                let usage = check_quota(&profile, now, 1, copies)?;
                let ts = FirestoreTimestamp(now);
                let analysis = Analysis {
                    analysis_id: id,
                    user_id: Some(uid),
                    input: new.input.clone(),
                    results: new.results.clone(),
                    metadata: AnalysisMetadata {
                        created_at: ts,
                        updated_at: ts,
                        status: new.status,
                        ai_model: new.ai_model.clone(),
                        version: new.version.clone(),
                        request_id: new.request_id.clone(),
                    },
                    sharing: Sharing::default(),
                };
                let mut fields = store::encode(&analysis)?;
                let counters = trends::count_new(&user_path, &analysis, &mut fields)?;
                let mut writes = vec![
                    Write::create(path, fields),
                    usage_write(user_path, &usage, copies, Some(now))?,
                    counters,
                ];
                if let Some(pp) = persona_path {
                    writes.push(personas::usage_write(pp, now));
                }
                if let Some(r) = record {
                    writes.push(r.write(tx, &analysis).await?);
                }
                Ok(TxOutcome::new(writes, analysis))
            }
            .boxed()
        })
        .await;
        drop(turn);
        self.after_write(uid, result.is_ok()).await;
        let (analysis, committed) = result?;
        versioned::written(analysis, &committed, &path)
    }

    pub async fn get(&self, uid: &str, id: &str) -> AppResult<Versioned<Analysis>> {
        let doc = self
            .store
            .get(&path_or_404(uid, id)?)
            .await?
            .ok_or(AppError::NotFound)?;
        Versioned::from_doc(doc)
    }

    /// One page of history, newest first. Only the unfiltered first page is cached.
    pub async fn list(
        &self,
        uid: &str,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> AppResult<Arc<HistoryPage>> {
        let key = (*filter == HistoryFilter::default()).then_some(());
        let fetch = async {
            let binding = format!("{uid}|analyses|{}", filter.canonical());
            let q = history_query(&users::Users::path(uid)?, filter);
            let (docs, next) = self.cursors.fetch(self.store.as_ref(), q, page, &binding).await?;
            decode_page(docs, next)
        };
        self.first_pages
            .get_or_fetch(uid, key, page, &self.metrics, fetch)
            .await
    }

    /// Completes (`completed` with results) or fails a `processing` analysis; other transitions 409.
    pub async fn complete(
        &self,
        uid: &str,
        id: &str,
        c: Completion,
        if_match: versioned::IfMatch,
    ) -> AppResult<Versioned<Analysis>> {
        let path = path_or_404(uid, id)?;
        let user_path = users::Users::path(uid)?;
        let copies = i64::from(c.results.as_ref().is_some_and(|r| r.sample_copy.is_some()));
        let c = Arc::new(c);
        let result = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (path, user_path, c, if_match) =
                (path.clone(), user_path.clone(), c.clone(), if_match.clone());
            async move {
                // The user document only matters (and is only locked) when copies are counted.
                let reads = if copies > 0 {
                    vec![path.clone(), user_path.clone()]
                } else {
                    vec![path.clone()]
                };
                let docs = tx.get_all(&reads).await?;
                let doc = docs.first().cloned().flatten().ok_or(AppError::NotFound)?;
                versioned::check_version(&if_match, &doc, "analysis")?;
                let mut a: Analysis = doc.decode()?;
                let before = a.clone();
                if a.metadata.status != Status::Processing || c.status == Status::Processing {
                    return Err(AppError::Conflict(format!(
                        "cannot move an analysis from {} to {}: only processing → completed | failed",
                        a.metadata.status.as_str(),
                        c.status.as_str()
                    )));
                }
                let now = value::now();
                let mut writes = Vec::new();
                if copies > 0 {
                    let user_doc = docs.get(1).cloned().flatten().ok_or(AppError::NotFound)?;
                    let profile: Profile = user_doc.decode()?;
                    let usage = check_quota(&profile, now, 0, copies)?;
                    writes.push(usage_write(user_path.clone(), &usage, copies, None)?);
                }
                a.metadata.status = c.status;
                a.metadata.updated_at = FirestoreTimestamp(now);
                a.results = c.results.clone();
                let mut fields = Fields::new();
                value::set_path(&mut fields, "metadata.status", value::string(c.status.as_str()));
                value::set_path(&mut fields, "metadata.updatedAt", value::timestamp(now));
                fields.insert("results".into(), value::from_serialize(&a.results));
                let mask = vec![
                    "metadata.status".into(),
                    "metadata.updatedAt".into(),
                    "results".into(),
                ];
                writes.extend(trends::count_transition(&user_path, &doc, &before, &a)?);
                writes.push(
                    Write::update(path, fields, mask).precondition(Precondition::UpdateTime(doc.update_time)),
                );
                Ok(TxOutcome::new(writes, a))
            }
            .boxed()
        })
        .await;
        self.after_write(uid, result.is_ok()).await;
        let (a, committed) = result?;
        versioned::written(a, &committed, &path)
    }

    /// Deletes an analysis (and so its share link), uncounting it from the
    /// trends in the same transaction. Missing: 404.
    pub async fn delete(&self, uid: &str, id: &str, if_match: versioned::IfMatch) -> AppResult<()> {
        let path = path_or_404(uid, id)?;
        let user_path = users::Users::path(uid)?;
        let result = store::run_transaction(self.store.as_ref(), |tx| {
            let (path, user_path, if_match) = (path.clone(), user_path.clone(), if_match.clone());
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                versioned::check_version(&if_match, &doc, "analysis")?;
                let a: Analysis = doc.decode()?;
                let mut writes =
                    vec![Write::delete(path).precondition(Precondition::UpdateTime(doc.update_time))];
                writes.extend(trends::count_removal(&user_path, &doc, &a)?);
                Ok::<_, AppError>(TxOutcome::new(writes, ()))
            }
            .boxed()
        })
        .await;
        self.invalidate(uid).await;
        if result.is_ok() {
            self.feed.publish(uid, Kind::Analyses).await;
        }
        result
    }

    /// Up to 100 analyses in one round trip; ids that are not the caller's are `missing`.
    pub async fn batch_get(&self, uid: &str, ids: &[String]) -> AppResult<BatchResult> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        // Ids that cannot name a document are simply missing; the rest are read in one round trip.
        let paths: Vec<Option<DocPath>> = unique.iter().map(|id| analysis_path(uid, id).ok()).collect();
        let wanted: Vec<DocPath> = paths.iter().flatten().cloned().collect();
        let mut found = self.store.get_all(&wanted).await?.into_iter();
        let (mut items, mut missing) = (Vec::new(), Vec::new());
        for (id, path) in unique.into_iter().zip(paths) {
            match path.and(found.next()).flatten() {
                Some(d) => items.push(Versioned::from_doc(d)?.item),
                None => missing.push(id.clone()),
            }
        }
        Ok(BatchResult { items, missing })
    }

    /// Counts over the last `days` UTC days (today included), from the per-day counters.
    pub async fn trends(&self, uid: &str, days: u32) -> AppResult<Arc<Trends>> {
        self.trends.trends(uid, days).await
    }

    /// Makes an analysis public; sharing again returns the same token.
    pub async fn share(&self, uid: &str, id: &str) -> AppResult<(String, FirestoreTimestamp)> {
        let path = path_or_404(uid, id)?;
        let result = store::run_transaction(self.store.as_ref(), |tx| {
            let path = path.clone();
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                let a: Analysis = doc.decode()?;
                if let (true, Some(token), Some(at)) =
                    (a.sharing.is_public, a.sharing.share_token, a.sharing.shared_at)
                {
                    return Ok(TxOutcome::new(Vec::new(), (token, at)));
                }
                let token = new_share_token();
                let at = FirestoreTimestamp::now();
                let sharing = Sharing {
                    is_public: true,
                    share_token: Some(token.clone()),
                    shared_at: Some(at),
                };
                let mut fields = Fields::new();
                fields.insert("sharing".into(), value::from_serialize(&sharing));
                let w = Write::update(path, fields, vec!["sharing".into()])
                    .precondition(Precondition::UpdateTime(doc.update_time));
                Ok::<_, AppError>(TxOutcome::new(vec![w], (token, at)))
            }
            .boxed()
        })
        .await;
        self.invalidate(uid).await;
        if result.is_ok() {
            self.feed.publish(uid, Kind::Analyses).await;
        }
        result
    }

    /// Revokes the share link: the old token stops working at once.
    pub async fn unshare(&self, uid: &str, id: &str) -> AppResult<()> {
        let path = path_or_404(uid, id)?;
        let mut fields = Fields::new();
        fields.insert("sharing".into(), value::from_serialize(&Sharing::default()));
        let result = self
            .store
            .commit(vec![Write::update(path, fields, vec!["sharing".into()])])
            .await;
        self.invalidate(uid).await;
        result?;
        self.feed.publish(uid, Kind::Analyses).await;
        Ok(())
    }

    /// The public view of a shared analysis (no owner data). Unknown or revoked: 404.
    pub async fn shared(&self, token: &str) -> AppResult<Analysis> {
        if token.len() < 20
            || token.len() > 100
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AppError::NotFound);
        }
        let docs = self.store.query(&share_query(token)).await?;
        let doc = docs.first().ok_or(AppError::NotFound)?;
        let mut a: Analysis = doc.decode()?;
        if !a.sharing.is_public || a.sharing.share_token.as_deref() != Some(token) {
            return Err(AppError::NotFound);
        }
        a.user_id = None;
        Ok(a)
    }
}

/// 256 random bits, URL-safe.
fn new_share_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn unknown_persona() -> AppError {
    AppError::Validation(vec![FieldError::new(
        "input.customPersonaId",
        "unknown_persona",
        "must be the id of one of your personas",
    )])
}

/// The usage after adding `analyses`/`copies`, or 429 when the plan's limit is reached.
fn check_quota(profile: &Profile, now: jiff::Timestamp, analyses: i64, copies: i64) -> AppResult<Usage> {
    let mut usage = profile.current_usage(now);
    let (a_limit, c_limit) = profile.subscription.plan_type.limits();
    let retry = clock::secs_to_next_month(now);
    if analyses > 0 && a_limit.is_some_and(|l| usage.analyses + analyses > i64::from(l)) {
        return Err(AppError::QuotaExceeded {
            message: "the monthly analysis limit of your plan is reached".into(),
            retry_after_secs: retry,
        });
    }
    if copies > 0 && c_limit.is_some_and(|l| usage.copy_generations + copies > i64::from(l)) {
        return Err(AppError::QuotaExceeded {
            message: "the monthly copy-generation limit of your plan is reached".into(),
            retry_after_secs: retry,
        });
    }
    usage.analyses += analyses;
    usage.copy_generations += copies;
    Ok(usage)
}

/// The user-document write for new usage: the period's counters, lifetime totals.
fn usage_write(
    user_path: DocPath,
    usage: &Usage,
    copies: i64,
    analysis_at: Option<jiff::Timestamp>,
) -> AppResult<Write> {
    let mut fields = Fields::new();
    fields.insert("usage".into(), value::from_serialize(usage));
    let mut mask = vec!["usage".to_owned()];
    if let Some(at) = analysis_at {
        value::set_path(&mut fields, "metadata.lastAnalysisAt", value::timestamp(at));
        mask.push("metadata.lastAnalysisAt".into());
    }
    let mut w = Write::update(user_path, fields, mask);
    if analysis_at.is_some() {
        w = w.increment("metadata.totalAnalyses", 1);
    }
    if copies > 0 {
        w = w.increment("metadata.totalCopyGenerations", copies);
    }
    Ok(w)
}
