//! GDPR export (Art. 15/20), streamed: each section is read as a store
//! stream and written as the store answers, so memory stays flat however large the
//! account. Two formats share the sections defined here: one JSON document
//! (`json`) or a ZIP of one CSV per section (`csv`). Stored hashes
//! (`secretHash`) never leave the service.

mod csv;
mod flatten;
mod json;

use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

pub use self::csv::write_zip;
pub use self::json::write_json;
use super::{analytics, api_keys, audit, personas, users};
use crate::error::{AppError, AppResult};
use crate::store::{Doc, Op, Query, Store, value};

/// Bytes gathered before they go to the response. Small on purpose: every
/// chunk in flight (the response channel's, the HTTP writer's) holds this
/// much, and chunks of hundreds of KiB (200 items at once) were most of the
/// export's peak memory (docs/benchmarks.md).
const CHUNK_BYTES: usize = 32 << 10;
/// Fields never exported.
const SECRET_FIELDS: [&str; 1] = ["secretHash"];

/// Where the export's bytes go; the receiver is the HTTP response.
pub type Chunks = mpsc::Sender<Result<Bytes, AppError>>;

async fn send(tx: &Chunks, bytes: impl Into<Bytes>) -> AppResult<()> {
    tx.send(Ok(bytes.into()))
        .await
        .map_err(|_| AppError::internal("export receiver gone"))
}

/// Sends what `out` holds once it reaches [`CHUNK_BYTES`] (everything with `all`).
async fn flush(tx: &Chunks, out: &mut Vec<u8>, all: bool) -> AppResult<()> {
    if out.len() >= CHUNK_BYTES || (all && !out.is_empty()) {
        let full = std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2)));
        send(tx, full).await?;
    }
    Ok(())
}

fn item(doc: &Doc) -> serde_json::Value {
    let mut m = value::fields_to_json(&doc.fields);
    for f in SECRET_FIELDS {
        m.remove(f);
    }
    serde_json::Value::Object(m)
}

/// A query feeding a section, and an `actor` whose records it skips (listed already).
type Source = (Query, Option<String>);

/// One section of the export after the profile: its key in the JSON document,
/// its file in the ZIP, and the queries that feed it (in order).
struct Section {
    json: &'static str,
    csv: &'static str,
    sources: Vec<Source>,
}

/// The profile's key in the JSON document and its file in the ZIP.
const PROFILE: (&str, &str) = ("userData", "profile.csv");

fn sections(uid: &str) -> AppResult<Vec<Section>> {
    let user = users::Users::path(uid)?;
    let own = |collection| vec![(Query::collection(Some(&user), collection), None)];
    Ok(vec![
        Section {
            json: "analysisHistory",
            csv: "analyses.csv",
            sources: own(super::analyses::COLLECTION),
        },
        Section {
            json: "customPersonas",
            csv: "personas.csv",
            sources: own(personas::COLLECTION),
        },
        Section {
            json: "apiKeys",
            csv: "api_keys.csv",
            sources: own(api_keys::COLLECTION),
        },
        Section {
            json: "usageAnalytics",
            csv: "usage_analytics.csv",
            sources: vec![(analytics::user_query(uid), None)],
        },
        Section {
            json: "auditTrail",
            csv: "audit_trail.csv",
            sources: vec![
                (
                    Query::collection(None, audit::COLLECTION).filter(
                        "actor",
                        Op::Eq,
                        value::string(uid.to_owned()),
                    ),
                    None,
                ),
                // Records about the user by someone else (the user's own are above).
                (
                    Query::collection(None, audit::COLLECTION).filter(
                        "target",
                        Op::In,
                        value::array(vec![
                            value::string(uid.to_owned()),
                            value::string(format!("{}/{uid}", users::COLLECTION)),
                        ]),
                    ),
                    Some(uid.to_owned()),
                ),
            ],
        },
    ])
}

/// A section's items, its sources one after the other, each read as one
/// store stream (one query per source, not cursor pages: linear cost), one
/// item at a time: the writer serializes each as it comes, and the store is
/// held back (gRPC flow control) while the client reads.
fn items<'a>(
    store: &'a dyn Store,
    section: &'a Section,
) -> impl Stream<Item = AppResult<serde_json::Value>> + Send + 'a {
    stream::iter(&section.sources)
        .flat_map(move |(q, skip_actor)| {
            store.query_stream(q).try_filter_map(move |d| {
                let skipped = skip_actor
                    .as_deref()
                    .is_some_and(|a| d.field("actor").and_then(value::as_str) == Some(a));
                futures::future::ready(Ok((!skipped).then(|| item(&d))))
            })
        })
        .map_err(AppError::from)
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
