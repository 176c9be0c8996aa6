//! The admin API's rules: users by plan, subscription and role changes (each
//! audited, each dropping the instance's cached profile before it answers),
//! the audit log, and the `system/*` documents.

use std::sync::Arc;

use firestore::FirestoreTimestamp;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use super::audit;
use super::feed::{Feed, Kind};
use super::pagination::{CursorCodec, Page, PageRequest};
use super::users::{self, PlanType, Profile, Role, Subscription, SubscriptionStatus, Users};
use super::versioned::Versioned;
use crate::error::{AppError, AppResult, FieldError};
use crate::store::{
    self, Direction, Doc, DocPath, Fields, Op, Precondition, Query, Store, TxOutcome, Write, value,
};

pub const SYSTEM_COLLECTION: &str = "system";
/// Largest system document a PUT may store (its JSON body).
pub const MAX_SYSTEM_DOC_BYTES: usize = 64 * 1024;
/// System documents only the migrations write.
const READ_ONLY_SYSTEM_DOCS: [&str; 1] = ["schema"];

/// `PUT /v1/admin/users/{uid}/subscription`. The limits follow the plan:
/// `analysisLimit` / `copyLimit` are refused like any unknown field.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPut {
    pub plan_type: PlanType,
    pub status: SubscriptionStatus,
    /// RFC 3339; absent: now.
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(custom(function = "timestamp"))]
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    pub start_date: Option<String>,
    /// RFC 3339, not before `startDate`; absent or null: open-ended.
    #[serde(default)]
    #[validate(custom(function = "timestamp"))]
    #[schema(value_type = Option<String>, format = DateTime, nullable)]
    pub end_date: Option<String>,
    /// Feature names (at most 50, each 1..100 characters); absent: none.
    #[serde(default, deserialize_with = "crate::domain::input::non_null")]
    #[validate(length(max = 50), custom(function = "feature_names"))]
    #[schema(max_items = 50, nullable = false)]
    pub features: Option<Vec<String>>,
}

/// `PUT /v1/admin/users/{uid}/role`.
#[derive(Debug, Clone, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolePut {
    pub role: Role,
}

/// The answer of a role change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub user_id: String,
    pub role: Role,
}

fn parse_ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .filter(|t| store::limits::storable(*t))
}

fn timestamp(s: &str) -> Result<(), ValidationError> {
    parse_ts(s).map(|_| ()).ok_or_else(|| {
        ValidationError::new("format")
            .with_message("must be an RFC 3339 timestamp from year 1 to 9999".into())
    })
}

fn feature_names(items: &[String]) -> Result<(), ValidationError> {
    if items.iter().all(|s| (1..=100).contains(&s.chars().count())) {
        Ok(())
    } else {
        Err(ValidationError::new("length").with_message("each feature must be 1 to 100 characters".into()))
    }
}

/// `GET /v1/admin/audit` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
}

#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    users: Users,
    feed: Feed,
}

/// A user document as admins see it: the profile (limits following the plan,
/// the current month's usage) or, for a document that is not a complete
/// profile yet (e.g. a role granted before the first sign-in), its fields.
fn user_view(doc: &Doc) -> serde_json::Value {
    match doc.decode::<Profile>() {
        Ok(p) => serde_json::to_value(p.for_response()).unwrap_or_default(),
        Err(_) => serde_json::Value::Object(value::fields_to_json(&doc.fields)),
    }
}

fn users_query(plan: Option<PlanType>) -> Query {
    let q = Query::collection(None, users::COLLECTION);
    match plan {
        Some(p) => q.filter("subscription.planType", Op::Eq, value::from_serialize(&p)),
        None => q,
    }
}

fn audit_query(f: &AuditFilter) -> Query {
    let mut q = Query::collection(None, audit::COLLECTION);
    for (field, v) in [("actor", &f.actor), ("action", &f.action)] {
        if let Some(v) = v {
            q = q.filter(field, Op::Eq, value::string(v.clone()));
        }
    }
    // Targets are resource paths (`users/<uid>`, `system/<docId>`); a bare uid names its user.
    match &f.target {
        Some(t) if !t.contains('/') => {
            let both = vec![
                value::string(t.clone()),
                value::string(format!("{}/{t}", users::COLLECTION)),
            ];
            q = q.filter("target", Op::In, value::array(both));
        }
        Some(t) => q = q.filter("target", Op::Eq, value::string(t.clone())),
        None => {}
    }
    q.order("at", Direction::Desc)
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    let s = || Some("x".to_owned());
    let mut shapes = vec![
        ("admin: users", users_query(None)),
        ("admin: users by plan", users_query(Some(PlanType::Pro))),
    ];
    for (name, f) in [
        ("admin: audit", AuditFilter::default()),
        (
            "admin: audit by actor",
            AuditFilter {
                actor: s(),
                ..Default::default()
            },
        ),
        (
            "admin: audit by target",
            AuditFilter {
                target: s(),
                ..Default::default()
            },
        ),
        (
            "admin: audit by target path",
            AuditFilter {
                target: Some("users/x".into()),
                ..Default::default()
            },
        ),
        (
            "admin: audit by action",
            AuditFilter {
                action: s(),
                ..Default::default()
            },
        ),
        (
            "admin: audit by actor, target",
            AuditFilter {
                actor: s(),
                target: s(),
                action: None,
            },
        ),
        (
            "admin: audit by actor, action",
            AuditFilter {
                actor: s(),
                target: None,
                action: s(),
            },
        ),
        (
            "admin: audit by target, action",
            AuditFilter {
                actor: None,
                target: s(),
                action: s(),
            },
        ),
        (
            "admin: audit by actor, target, action",
            AuditFilter {
                actor: s(),
                target: s(),
                action: s(),
            },
        ),
    ] {
        shapes.push((name, audit_query(&f)));
    }
    shapes
}

fn user_path(uid: &str) -> AppResult<DocPath> {
    Users::path(uid).map_err(|_| AppError::NotFound)
}

fn system_path(doc_id: &str) -> AppResult<DocPath> {
    DocPath::root(SYSTEM_COLLECTION, doc_id).map_err(|_| AppError::NotFound)
}

impl AdminService {
    pub fn new(store: Arc<dyn Store>, cursors: CursorCodec, users: Users, feed: Feed) -> Self {
        Self {
            store,
            cursors,
            users,
            feed,
        }
    }

    /// Users in document-id order, optionally of one plan.
    pub async fn list_users(
        &self,
        plan: Option<PlanType>,
        page: &PageRequest,
    ) -> AppResult<Page<Versioned<serde_json::Value>>> {
        let binding = format!(
            "admin|users|plan={}",
            plan.map(|p| value::to_json(&value::from_serialize(&p)))
                .unwrap_or_default()
        );
        let (docs, next_cursor) = self
            .cursors
            .fetch(self.store.as_ref(), users_query(plan), page, &binding)
            .await?;
        Ok(Page {
            items: docs
                .iter()
                .map(|d| Versioned {
                    item: user_view(d),
                    version: d.update_time,
                })
                .collect(),
            next_cursor,
        })
    }

    pub async fn get_user(&self, uid: &str) -> AppResult<Versioned<serde_json::Value>> {
        let doc = self
            .store
            .get(&user_path(uid)?)
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(Versioned {
            item: user_view(&doc),
            version: doc.update_time,
        })
    }

    /// Sets a user's subscription (limits from the plan), audited.
    pub async fn set_subscription(
        &self,
        actor: &str,
        uid: &str,
        put: &SubscriptionPut,
        request_id: &str,
    ) -> AppResult<Subscription> {
        let start = put
            .start_date
            .as_deref()
            .and_then(parse_ts)
            .unwrap_or_else(value::now);
        let end = put.end_date.as_deref().and_then(parse_ts);
        if end.is_some_and(|e| e < start) {
            return Err(AppError::Validation(vec![FieldError::new(
                "endDate",
                "range",
                "must not be before startDate",
            )]));
        }
        let subscription = Subscription {
            end_date: end.map(FirestoreTimestamp),
            status: put.status,
            features: put.features.clone().unwrap_or_default(),
            ..Subscription::new(put.plan_type, FirestoreTimestamp(start))
        };
        let mut fields = Fields::new();
        fields.insert("subscription".into(), value::from_serialize(&subscription));
        let mask: Vec<String> = [
            "planType",
            "status",
            "startDate",
            "endDate",
            "features",
            "analysisLimit",
            "copyLimit",
        ]
        .iter()
        .map(|f| format!("subscription.{f}"))
        .collect();
        let record = audit::record(
            actor,
            "user.subscription.update",
            &format!("{}/{uid}", users::COLLECTION),
            request_id,
            serde_json::json!({ "fields": mask }),
        )?;
        self.update_user(uid, fields, mask, record).await?;
        Ok(subscription)
    }

    /// Sets a user's role, audited.
    pub async fn set_role(
        &self,
        actor: &str,
        uid: &str,
        role: Role,
        request_id: &str,
    ) -> AppResult<RoleView> {
        let mut fields = Fields::new();
        fields.insert("role".into(), value::from_serialize(&role));
        let record = audit::record(
            actor,
            "user.role.update",
            &format!("{}/{uid}", users::COLLECTION),
            request_id,
            serde_json::json!({ "fields": ["role"] }),
        )?;
        self.update_user(uid, fields, vec!["role".into()], record).await?;
        Ok(RoleView {
            user_id: uid.to_owned(),
            role,
        })
    }

    /// Changes an existing user document (404 if there is none) with its audit
    /// record and its invalidation entry in one commit; the cached profile is
    /// dropped here before answering, and elsewhere once the entry is announced.
    async fn update_user(
        &self,
        uid: &str,
        fields: Fields,
        mask: Vec<String>,
        record: Write,
    ) -> AppResult<()> {
        let path = user_path(uid)?;
        let entry = self.feed.entry(uid, Kind::Profile, &[])?;
        let result = store::run_transaction(self.store.as_ref(), |tx| {
            let (path, fields, mask, record) = (path.clone(), fields.clone(), mask.clone(), record.clone());
            let entry = entry.clone();
            async move {
                let doc = tx.get(&path).await?.ok_or(AppError::NotFound)?;
                let w =
                    Write::update(path, fields, mask).precondition(Precondition::UpdateTime(doc.update_time));
                Ok::<_, AppError>(TxOutcome::new(vec![w, record, entry], ()))
            }
            .boxed()
        })
        .await;
        self.users.invalidate(uid).await;
        if result.is_ok() {
            self.feed.announce().await;
        }
        result
    }

    /// The audit log, newest first.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> AppResult<Page<Versioned<serde_json::Value>>> {
        let binding = format!(
            "admin|audit|actor={:?}|target={:?}|action={:?}",
            filter.actor, filter.target, filter.action
        );
        let (docs, next_cursor) = self
            .cursors
            .fetch(self.store.as_ref(), audit_query(filter), page, &binding)
            .await?;
        Ok(Page {
            items: docs
                .iter()
                .map(|d| Versioned {
                    item: serde_json::Value::Object(value::fields_to_json(&d.fields)),
                    version: d.update_time,
                })
                .collect(),
            next_cursor,
        })
    }

    /// A system document's fields (404 if missing).
    pub async fn system(&self, doc_id: &str) -> AppResult<Versioned<serde_json::Value>> {
        let doc = self
            .store
            .get(&system_path(doc_id)?)
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(Versioned {
            item: serde_json::Value::Object(value::fields_to_json(&doc.fields)),
            version: doc.update_time,
        })
    }

    /// Replaces a system document, audited (its top-level field names only).
    pub async fn put_system(
        &self,
        actor: &str,
        doc_id: &str,
        body: &serde_json::Map<String, serde_json::Value>,
        request_id: &str,
    ) -> AppResult<Versioned<serde_json::Value>> {
        let path = system_path(doc_id)?;
        if READ_ONLY_SYSTEM_DOCS.contains(&doc_id) {
            return Err(AppError::Forbidden(format!(
                "system/{doc_id} is managed by the migrations"
            )));
        }
        let fields: Fields = body
            .iter()
            .map(|(k, v)| (k.clone(), value::from_json(v)))
            .collect();
        let stored = value::fields_to_json(&fields);
        let write = Write::set(path.clone(), fields);
        // What Firestore would refuse (reserved or empty names, nested arrays, depth) is the client's 422.
        store::limits::check_write(&write).map_err(|e| {
            AppError::validation(
                "",
                "invalid",
                format!(
                    "not storable as a document: {}",
                    e.to_string().trim_start_matches("invalid store request: ")
                ),
            )
        })?;
        let mut names: Vec<&String> = body.keys().collect();
        names.sort();
        let record = audit::record(
            actor,
            "system.update",
            &format!("system/{doc_id}"),
            request_id,
            serde_json::json!({ "fields": names }),
        )?;
        let committed = self.store.commit(vec![write, record]).await?;
        let version = committed
            .update_time(&path)
            .ok_or_else(|| AppError::internal("the commit reported no update time"))?;
        Ok(Versioned {
            item: serde_json::Value::Object(stored),
            version,
        })
    }
}
