//! Audit records (`auditLogs/{id}`): who did what to whom. `details` never hold
//! personal data values, only field names and non-personal facts.

use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use crate::error::AppResult;
use crate::store::{self, DocPath, Write};

pub const COLLECTION: &str = "auditLogs";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: FirestoreTimestamp,
    pub request_id: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The write that records an audit entry; commit it with the change it describes.
pub fn record(
    actor: &str,
    action: &str,
    target: &str,
    request_id: &str,
    details: serde_json::Value,
) -> AppResult<Write> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let rec = AuditRecord {
        id: id.clone(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        at: FirestoreTimestamp::now(),
        request_id: request_id.to_owned(),
        details,
    };
    Ok(Write::create(
        DocPath::root(COLLECTION, &id)?,
        store::encode(&rec)?,
    ))
}
