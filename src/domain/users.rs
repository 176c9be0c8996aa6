//! User profiles (`users/{uid}`): provisioning from sign-in claims, reads
//! through the profile cache, rectification (PATCH) with an audit record.

use std::sync::Arc;
use std::time::Duration;

use firestore::FirestoreTimestamp;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::feed::{Feed, Kind};
use super::freshness::UserCache;
use super::user_locks::UserLocks;
use super::{audit, clock, versioned};
use crate::cache::{self, CacheBudget, Share};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::{self, DocPath, Fields, Store, Timestamp, TxOutcome, Write, value};

pub const COLLECTION: &str = "users";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Admin,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanType {
    #[default]
    Free,
    Pro,
    Enterprise,
}

impl PlanType {
    /// Monthly (analyses, copy generations); `None` is unlimited.
    pub fn limits(self) -> (Option<u32>, Option<u32>) {
        match self {
            Self::Free => (Some(10), Some(20)),
            Self::Pro => (Some(500), Some(1000)),
            Self::Enterprise => (None, None),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    #[default]
    Active,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Dark,
    Light,
    #[default]
    System,
}

/// The sign-in methods the product accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthProvider {
    Google,
    Github,
    Microsoft,
}

impl AuthProvider {
    /// Maps Firebase's `sign_in_provider`; other providers are refused.
    pub fn from_firebase(p: &str) -> Option<Self> {
        match p {
            "google.com" => Some(Self::Google),
            "github.com" => Some(Self::Github),
            "microsoft.com" => Some(Self::Microsoft),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub plan_type: PlanType,
    #[schema(value_type = String, format = DateTime)]
    pub start_date: FirestoreTimestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_date: Option<FirestoreTimestamp>,
    pub status: SubscriptionStatus,
    pub features: Vec<String>,
    /// Monthly analyses allowed by the plan; null is unlimited.
    pub analysis_limit: Option<u32>,
    /// Monthly copy generations allowed by the plan; null is unlimited.
    pub copy_limit: Option<u32>,
}

impl Subscription {
    pub fn new(plan_type: PlanType, start: FirestoreTimestamp) -> Self {
        let (analysis_limit, copy_limit) = plan_type.limits();
        Self {
            plan_type,
            start_date: start,
            end_date: None,
            status: SubscriptionStatus::Active,
            features: Vec::new(),
            analysis_limit,
            copy_limit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    pub default_persona: Option<String>,
    pub email_notifications: bool,
    pub analytics_opt_out: bool,
    pub theme: Theme,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            default_persona: None,
            email_notifications: true,
            analytics_opt_out: false,
            theme: Theme::System,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMetadata {
    pub total_analyses: i64,
    pub total_copy_generations: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_analysis_at: Option<FirestoreTimestamp>,
}

/// Counters of the current quota period (a calendar month, UTC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `YYYY-MM`.
    pub period: String,
    pub analyses: i64,
    pub copy_generations: i64,
}

impl Usage {
    pub fn empty(period: String) -> Self {
        Self {
            period,
            analyses: 0,
            copy_generations: 0,
        }
    }
}

/// The profile, as stored at `users/{uid}` and returned by `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub auth_provider: Option<AuthProvider>,
    pub profile_image: Option<String>,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: FirestoreTimestamp,
    /// The sign-in time (`auth_time`) of the newest token seen.
    #[schema(value_type = String, format = DateTime)]
    pub last_login_at: FirestoreTimestamp,
    pub subscription: Subscription,
    pub preferences: Preferences,
    pub metadata: UserMetadata,
    pub usage: Usage,
}

impl Profile {
    /// The usage of the current period (a stored usage of an older month reads as zero).
    pub fn current_usage(&self, now: jiff::Timestamp) -> Usage {
        let period = clock::period_of(now);
        if self.usage.period == period {
            self.usage.clone()
        } else {
            Usage::empty(period)
        }
    }

    /// The view returned by the API: limits follow the plan, usage is the current month's.
    pub fn for_response(&self) -> Self {
        let mut p = self.clone();
        let (a, c) = p.subscription.plan_type.limits();
        p.subscription.analysis_limit = a;
        p.subscription.copy_limit = c;
        p.usage = self.current_usage(jiff::Timestamp::now());
        p
    }
}

/// A profile with the version (update time) it was read at: the ETag's basis.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub profile: Profile,
    pub version: store::Timestamp,
}

/// Who signed in, as far as profiles are concerned (built from verified token claims).
#[derive(Debug, Clone)]
pub struct SignIn {
    pub uid: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub provider: AuthProvider,
    /// When the user authenticated (seconds since the epoch).
    pub auth_time: i64,
}

/// `PATCH /v1/me`: only these fields may change (others are 422).
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfilePatch {
    /// 1..100 characters; null is refused.
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(custom(function = "name_length"))]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: Option<String>,
    /// An http(s) URL, or null to remove the image.
    #[serde(default, deserialize_with = "crate::domain::input::nullable")]
    #[validate(custom(function = "image_url"))]
    #[schema(value_type = Option<String>, nullable, max_length = 2048)]
    pub profile_image: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(nested)]
    #[schema(nullable = false)]
    pub preferences: Option<PreferencesPatch>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesPatch {
    #[serde(default, deserialize_with = "crate::domain::input::nullable")]
    #[validate(custom(function = "persona_name"))]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, nullable)]
    pub default_persona: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[schema(nullable = false)]
    pub email_notifications: Option<bool>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[schema(nullable = false)]
    pub analytics_opt_out: Option<bool>,
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[schema(nullable = false)]
    pub theme: Option<Theme>,
}

fn name_length(s: &str) -> Result<(), validator::ValidationError> {
    length_between(s, 1, 100)
}

fn persona_name(s: &str) -> Result<(), validator::ValidationError> {
    length_between(s, 1, 100)
}

fn image_url(s: &str) -> Result<(), validator::ValidationError> {
    let ok = s.chars().count() <= 2048 && super::input::is_http_url(s);
    if ok {
        Ok(())
    } else {
        Err(validator::ValidationError::new("url")
            .with_message("must be an http(s) URL of at most 2048 characters".into()))
    }
}

pub(crate) fn length_between(s: &str, min: usize, max: usize) -> Result<(), validator::ValidationError> {
    let n = s.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("length")
            .with_message(format!("must be {min} to {max} characters long").into()))
    }
}

/// Profiles with their per-instance cache (TTL 1 h, invalidated by every write here).
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn Store>,
    cache: UserCache<(), Account>,
    metrics: Arc<Metrics>,
    /// Provisioning transactions of one user take turns (concurrent first
    /// requests would otherwise fight over the user document's lock).
    turns: UserLocks,
    /// Tells other instances about changes; while it is behind, cached profiles
    /// (roles, plans) are trusted only briefly.
    feed: Feed,
}

impl Users {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, budget: &CacheBudget, feed: Feed) -> Self {
        Self {
            feed,
            store,
            cache: UserCache::new(
                "profiles",
                Duration::from_secs(3600),
                budget.bytes(Share::Profiles),
                budget.bytes(Share::Generations) / 4,
                &[()],
                |a: &Account| cache::json_bytes(&a.profile),
            ),
            metrics,
            turns: UserLocks::default(),
        }
    }

    pub fn path(uid: &str) -> AppResult<DocPath> {
        Ok(DocPath::root(COLLECTION, uid)?)
    }

    /// Drops this instance's cached copy; every write through the service calls it before answering.
    pub async fn invalidate(&self, uid: &str) {
        self.cache.invalidate(uid).await;
    }

    /// Drops every cached profile on this instance.
    pub fn flush(&self) {
        self.cache.invalidate_all();
    }

    /// The cached profile, unless the feed is behind and it is older than the short TTL.
    async fn cached(&self, uid: &str) -> Option<Arc<Account>> {
        self.cache
            .get_within(uid, &(), &self.metrics, self.feed.max_age())
            .await
    }

    /// (entries, weighed bytes) of the profile cache.
    pub async fn cache_usage(&self) -> (u64, u64) {
        self.cache.usage().await
    }

    /// The profile of a signed-in user: cached, else read, else provisioned from
    /// the claims (exactly once, even under concurrent first requests). A newer
    /// sign-in moves `lastLoginAt`.
    ///
    /// `erased_at` is when the user was last erased: a user document created
    /// before it belongs to the erased account (an erasure that was interrupted
    /// deletes it last), which no later sign-in may see. Then this is `None`,
    /// and the erasure must be finished first.
    pub async fn profile_for(
        &self,
        sign_in: &SignIn,
        erased_at: Option<Timestamp>,
    ) -> AppResult<Option<Arc<Account>>> {
        let profile = match self.cached(&sign_in.uid).await {
            Some(p) => p,
            None => {
                let generation = self.cache.generation(&sign_in.uid).await;
                let Some(p) = self.load_or_provision(sign_in, erased_at).await? else {
                    return Ok(None);
                };
                let p = Arc::new(p);
                self.cache.insert(&sign_in.uid, generation, (), p.clone()).await;
                p
            }
        };
        if sign_in.auth_time > profile.profile.last_login_at.0.as_second() {
            return self.record_login(sign_in).await.map(Some);
        }
        Ok(Some(profile))
    }

    /// The profile `sign_in` would get, not stored: the caller of an erasure
    /// whose user document is already gone (nothing may re-create it).
    pub fn unprovisioned(sign_in: &SignIn) -> AppResult<Account> {
        Ok(Account {
            profile: decode_profile(&default_fields(sign_in)?)?,
            version: crate::store::value::now(),
        })
    }

    /// A profile by uid (no provisioning), through the cache.
    pub async fn get(&self, uid: &str) -> AppResult<Option<Arc<Account>>> {
        if let Some(p) = self.cached(uid).await {
            return Ok(Some(p));
        }
        let generation = self.cache.generation(uid).await;
        let Some(doc) = self.store.get(&Self::path(uid)?).await? else {
            return Ok(None);
        };
        let p = Arc::new(Account {
            profile: decode_profile(&doc.fields)?,
            version: doc.update_time,
        });
        self.cache.insert(uid, generation, (), p.clone()).await;
        Ok(Some(p))
    }

    async fn load_or_provision(
        &self,
        sign_in: &SignIn,
        erased_at: Option<Timestamp>,
    ) -> AppResult<Option<Account>> {
        let path = Self::path(&sign_in.uid)?;
        if let Some(doc) = self.store.get(&path).await? {
            if erased_at.is_some_and(|t| doc.create_time < t) {
                return Ok(None);
            }
            if let Ok(profile) = decode_profile(&doc.fields)
                && missing_fields(&doc.fields, &default_fields(sign_in)?).is_empty()
            {
                return Ok(Some(Account {
                    profile,
                    version: doc.update_time,
                }));
            }
        }
        let defaults = default_fields(sign_in)?;
        let _turn = self.turns.lock(&sign_in.uid).await;
        let ((merged, unchanged), committed) = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let (path, defaults) = (path.clone(), defaults.clone());
            async move {
                let existing = tx.get(&path).await?;
                let (write, merged) = match existing {
                    None => (Write::create(path, defaults.clone()), defaults),
                    Some(doc) => {
                        let mask = missing_fields(&doc.fields, &defaults);
                        let mut merged = doc.fields.clone();
                        let mut fields = Fields::new();
                        for m in &mask {
                            if let Some(v) = value::get_path(&defaults, m) {
                                value::set_path(&mut merged, m, v.clone());
                                value::set_path(&mut fields, m, v.clone());
                            }
                        }
                        if mask.is_empty() {
                            let version = Some(doc.update_time);
                            return Ok::<_, AppError>(TxOutcome::new(Vec::new(), (merged, version)));
                        }
                        let w = Write::update(path, fields, mask)
                            .precondition(store::Precondition::UpdateTime(doc.update_time));
                        (w, merged)
                    }
                };
                decode_profile(&merged)?;
                Ok(TxOutcome::new(vec![write], (merged, None)))
            }
            .boxed()
        })
        .await?;
        // The commit's update time is the ETag: no second read.
        let version = match unchanged {
            Some(v) => v,
            None => versioned::written((), &committed, &path)?.version,
        };
        Ok(Some(Account {
            profile: decode_profile(&merged)?,
            version,
        }))
    }

    /// Moves `lastLoginAt` to a newer sign-in (never backwards, even when racing:
    /// Firestore's `maximum` transform is numeric only, hence a transaction).
    async fn record_login(&self, sign_in: &SignIn) -> AppResult<Arc<Account>> {
        let path = Self::path(&sign_in.uid)?;
        let at = jiff::Timestamp::from_second(sign_in.auth_time).map_err(AppError::internal)?;
        let result = store::run_transaction_committed(self.store.as_ref(), |tx| {
            let path = path.clone();
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                let current = doc.field("lastLoginAt").and_then(value::as_timestamp);
                if current.is_some_and(|c| c >= at) {
                    return Ok(TxOutcome::new(Vec::new(), (doc.fields, Some(doc.update_time))));
                }
                let mut fields = doc.fields.clone();
                fields.insert("lastLoginAt".into(), value::timestamp(at));
                let mut changed = Fields::new();
                changed.insert("lastLoginAt".into(), value::timestamp(at));
                let w = Write::update(path, changed, vec!["lastLoginAt".into()])
                    .precondition(store::Precondition::UpdateTime(doc.update_time));
                Ok::<_, AppError>(TxOutcome::new(vec![w], (fields, None)))
            }
            .boxed()
        })
        .await;
        self.invalidate(&sign_in.uid).await;
        let ((fields, unchanged), committed) = result?;
        // The commit's update time is the ETag: no second read.
        let version = match unchanged {
            Some(v) => v,
            None => versioned::written((), &committed, &path)?.version,
        };
        Ok(Arc::new(Account {
            profile: decode_profile(&fields)?,
            version,
        }))
    }

    /// `if_match`: the version the client last saw (412 if it moved on).
    pub async fn patch(
        &self,
        uid: &str,
        patch: &ProfilePatch,
        if_match: &versioned::IfMatch,
        request_id: &str,
    ) -> AppResult<Arc<Account>> {
        let path = Self::path(uid)?;
        let mut fields = Fields::new();
        let mut mask = Vec::new();
        let mut put = |name: &str, v: store::Value| {
            value::set_path(&mut fields, name, v);
            mask.push(name.to_owned());
        };
        if let Some(name) = &patch.name {
            put("name", value::string(name.clone()));
        }
        if let Some(img) = &patch.profile_image {
            put(
                "profileImage",
                img.as_ref()
                    .map_or_else(value::null, |s| value::string(s.clone())),
            );
        }
        if let Some(p) = &patch.preferences {
            if let Some(dp) = &p.default_persona {
                put(
                    "preferences.defaultPersona",
                    dp.as_ref().map_or_else(value::null, |s| value::string(s.clone())),
                );
            }
            if let Some(b) = p.email_notifications {
                put("preferences.emailNotifications", value::boolean(b));
            }
            if let Some(b) = p.analytics_opt_out {
                put("preferences.analyticsOptOut", value::boolean(b));
            }
            if let Some(t) = p.theme {
                put("preferences.theme", value::from_serialize(&t));
            }
        }
        if !mask.is_empty() {
            let audit = audit::record(
                uid,
                "profile.update",
                &format!("users/{uid}"),
                request_id,
                serde_json::json!({ "fields": mask }),
            )?;
            let result = versioned::commit_if_match(self.store.as_ref(), &path, if_match, "profile", |p| {
                vec![Write::update(path.clone(), fields, mask).precondition(p), audit]
            })
            .await;
            self.invalidate(uid).await;
            result?;
            self.feed.publish(uid, Kind::Profile).await;
        } else if *if_match != versioned::IfMatch::Absent {
            let current = self.get(uid).await?.ok_or(AppError::NotFound)?;
            if !if_match.matches(current.version) {
                return Err(AppError::PreconditionFailed(
                    "the profile was changed by another request".into(),
                ));
            }
        }
        self.get(uid).await?.ok_or(AppError::NotFound)
    }
}

fn decode_profile(fields: &Fields) -> AppResult<Profile> {
    store::value::decode_fields(fields.clone()).map_err(AppError::from)
}

/// A complete new profile for this sign-in.
fn default_fields(sign_in: &SignIn) -> AppResult<Fields> {
    let now = FirestoreTimestamp::now();
    let login = jiff::Timestamp::from_second(sign_in.auth_time).map_err(AppError::internal)?;
    let profile = Profile {
        user_id: sign_in.uid.clone(),
        email: sign_in.email.clone(),
        name: sign_in.name.clone(),
        auth_provider: Some(sign_in.provider),
        profile_image: sign_in.picture.clone(),
        role: Role::User,
        created_at: now,
        last_login_at: FirestoreTimestamp(login),
        subscription: Subscription::new(PlanType::Free, now),
        preferences: Preferences::default(),
        metadata: UserMetadata::default(),
        usage: Usage::empty(clock::period_of(now.0)),
    };
    Ok(store::encode(&profile)?)
}

/// Dotted paths present in `defaults` but missing in `existing` (recursing into maps).
fn missing_fields(existing: &Fields, defaults: &Fields) -> Vec<String> {
    let mut out = Vec::new();
    collect_missing(existing, defaults, "", &mut out);
    out.sort();
    out
}

fn collect_missing(existing: &Fields, defaults: &Fields, prefix: &str, out: &mut Vec<String>) {
    for (k, dv) in defaults {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match existing.get(k) {
            None => out.push(path),
            Some(ev) => {
                if let (Some(em), Some(dm)) = (value::as_map(ev), value::as_map(dv)) {
                    collect_missing(em, dm, &path, out);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sign_in() -> SignIn {
        SignIn {
            uid: "u1".into(),
            email: Some("a@example.com".into()),
            name: Some("Ada".into()),
            picture: None,
            provider: AuthProvider::Github,
            auth_time: 1_700_000_000,
        }
    }

    #[test]
    fn partial_documents_are_completed_not_overwritten() {
        let defaults = default_fields(&sign_in()).unwrap();
        let mut existing = Fields::new();
        existing.insert("role".into(), value::string("admin"));
        value::set_path(&mut existing, "preferences.theme", value::string("dark"));
        let missing = missing_fields(&existing, &defaults);
        assert!(!missing.contains(&"role".to_string()));
        assert!(!missing.contains(&"preferences.theme".to_string()));
        assert!(missing.contains(&"preferences.emailNotifications".to_string()));
        assert!(missing.contains(&"subscription".to_string()));
        assert!(missing_fields(&defaults, &defaults).is_empty());
    }

    #[test]
    fn profile_round_trips_through_fields() {
        let fields = default_fields(&sign_in()).unwrap();
        let p = decode_profile(&fields).unwrap();
        assert_eq!(p.subscription.analysis_limit, Some(10));
        assert_eq!(p.auth_provider, Some(AuthProvider::Github));
        assert_eq!(p.last_login_at.0.as_second(), 1_700_000_000);
        assert_eq!(store::encode(&p).unwrap(), fields);
    }
}
