//! GDPR export (Art. 15/20) as JSON, streamed: the sections are written page by
//! page as the store answers, so memory stays flat however large the account.
//! Stored hashes (`secretHash`) never leave the service.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{analytics, api_keys, audit, personas, users};
use crate::error::{AppError, AppResult};
use crate::store::{Doc, Op, Query, Store, value};

/// Documents read per store round trip.
const PAGE: u32 = 200;
/// Fields never exported.
const SECRET_FIELDS: [&str; 1] = ["secretHash"];

fn item(doc: &Doc) -> serde_json::Value {
    let mut m = value::fields_to_json(&doc.fields);
    for f in SECRET_FIELDS {
        m.remove(f);
    }
    serde_json::Value::Object(m)
}

/// A query feeding a section, and an `actor` whose records it skips (listed already).
type Source = (Query, Option<String>);

/// Writes the export of `uid` into `tx`, chunk by chunk; stops early when the
/// receiver is gone (the client left).
pub async fn write_json(
    store: Arc<dyn Store>,
    uid: String,
    profile: serde_json::Value,
    tx: mpsc::Sender<Result<Bytes, AppError>>,
) -> AppResult<()> {
    let send = |s: String| {
        let tx = tx.clone();
        async move {
            tx.send(Ok(Bytes::from(s)))
                .await
                .map_err(|_| AppError::internal("export receiver gone"))
        }
    };
    let head = serde_json::json!({"exportedAt": jiff::Timestamp::now().to_string()});
    let head = head.to_string();
    send(format!("{},\"userData\":{}", head.trim_end_matches('}'), profile)).await?;
    let user = users::Users::path(&uid)?;
    let sections: Vec<(&str, Vec<Source>)> = vec![
        (
            "analysisHistory",
            vec![(Query::collection(Some(&user), super::analyses::COLLECTION), None)],
        ),
        (
            "customPersonas",
            vec![(Query::collection(Some(&user), personas::COLLECTION), None)],
        ),
        (
            "apiKeys",
            vec![(Query::collection(Some(&user), api_keys::COLLECTION), None)],
        ),
        ("usageAnalytics", vec![(analytics::user_query(&uid), None)]),
        (
            "auditTrail",
            vec![
                (
                    Query::collection(None, audit::COLLECTION).filter(
                        "actor",
                        Op::Eq,
                        value::string(uid.clone()),
                    ),
                    None,
                ),
                // Records about the user by someone else (the user's own are above).
                (
                    Query::collection(None, audit::COLLECTION).filter(
                        "target",
                        Op::In,
                        value::array(vec![
                            value::string(uid.clone()),
                            value::string(format!("{}/{uid}", users::COLLECTION)),
                        ]),
                    ),
                    Some(uid.clone()),
                ),
            ],
        ),
    ];
    for (name, queries) in sections {
        send(format!(",\"{name}\":[")).await?;
        let mut first = true;
        for (q, skip_actor) in queries {
            let mut after = None;
            loop {
                let page_q = q.clone().after(after.take()).limit(PAGE);
                let docs = store.query(&page_q).await?;
                let mut chunk = String::new();
                for d in &docs {
                    if let Some(a) = &skip_actor
                        && d.field("actor").and_then(value::as_str) == Some(a.as_str())
                    {
                        continue;
                    }
                    if !first {
                        chunk.push(',');
                    }
                    first = false;
                    chunk.push_str(&item(d).to_string());
                }
                if !chunk.is_empty() {
                    send(chunk).await?;
                }
                match docs.last() {
                    Some(last) if docs.len() == PAGE as usize => after = Some(page_q.cursor_after(last)),
                    _ => break,
                }
            }
        }
        send("]".into()).await?;
    }
    send("}".into()).await?;
    Ok(())
}

pub fn query_shapes() -> Vec<(&'static str, Query)> {
    vec![(
        "export: audit records about a user",
        Query::collection(None, audit::COLLECTION).filter(
            "target",
            Op::In,
            value::array(vec![value::string("x"), value::string("users/x")]),
        ),
    )]
}
