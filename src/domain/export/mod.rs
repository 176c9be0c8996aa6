//! GDPR export (Art. 15/20), streamed: each section is read as a store
//! stream and written as the store answers, so memory stays flat however large the
//! account. Two formats share the sections defined here: one JSON document
//! (`json`) or a ZIP of one CSV per section (`csv`). Stored hashes
//! (`secretHash`) never leave the service.

mod csv;
mod flatten;
mod json;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::RemoteHandle;
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

pub use self::csv::write_zip;
pub use self::json::write_json;
use super::{analytics, api_keys, audit, personas, users};
use crate::error::{AppError, AppResult};
use crate::store::{Doc, Op, Query, Store, StoreResult, value};

/// Bytes gathered before they go to the response. Small on purpose: every
/// chunk in flight (the response channel's, the HTTP writer's) holds this
/// much, and chunks of hundreds of KiB (200 items at once) were most of the
/// export's peak memory (docs/benchmarks.md).
const CHUNK_BYTES: usize = 32 << 10;
/// How long a chunk may wait for the client to take it before the export
/// stops. A stalled export holds its store streams, and their unread data
/// counts against the streams connection's flow-control window that every
/// export and erasure listing shares.
pub const STALL: Duration = Duration::from_secs(30);
/// Exports at once per instance. Each one whose client stalls keeps up to
/// 2 MiB unread on the streams connection (the HTTP/2 stream window of the
/// `gcloud-sdk` channel), whose connection window is 5 MiB: three stalled
/// exports stopped every other export and erasure listing until [`STALL`]
/// (measured); two leave them room.
pub const IN_FLIGHT: usize = 2;
/// Fields never exported.
const SECRET_FIELDS: [&str; 1] = ["secretHash"];

/// Where the export's bytes go; the receiver is the HTTP response.
pub type Chunks = mpsc::Sender<Result<Bytes, AppError>>;

async fn send(tx: &Chunks, bytes: impl Into<Bytes>) -> AppResult<()> {
    send_within(tx, bytes, STALL).await
}

async fn send_within(tx: &Chunks, bytes: impl Into<Bytes>, stall: Duration) -> AppResult<()> {
    tx.send_timeout(Ok(bytes.into()), stall)
        .await
        .map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => {
                AppError::internal("the client stopped reading the export")
            }
            mpsc::error::SendTimeoutError::Closed(_) => AppError::internal("export receiver gone"),
        })
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

/// Documents read ahead per source, at most. The queries of the sections
/// after the first (personas, keys, events, audit) run while the analyses
/// stream rather than one after the other at the end, where their round
/// trips were most of an export's fixed cost (docs/benchmarks.md); a source
/// with more continues after its last one, so memory stays bounded.
const AHEAD: u32 = 50;

/// A query feeding a section, and an `actor` whose records it skips (listed already).
struct Source {
    query: Query,
    skip_actor: Option<String>,
    ahead: Ahead,
}

impl Source {
    fn new(query: Query, skip_actor: Option<String>) -> Self {
        Self {
            query,
            skip_actor,
            ahead: Ahead::No,
        }
    }

    fn keeps(&self, d: &Doc) -> bool {
        self.skip_actor
            .as_deref()
            .is_none_or(|a| d.field("actor").and_then(value::as_str) != Some(a))
    }
}

/// A source's first documents, read ahead (in its query's order).
enum Ahead {
    /// Not read ahead: the source is one stream.
    No,
    Reading(RemoteHandle<StoreResult<Vec<Doc>>>),
    Read(Vec<Doc>),
}

/// Starts reading ahead every source but the first, which is read at once.
/// Dropping the sections stops what is still running.
fn read_ahead(store: &Arc<dyn Store>, sections: &mut [Section]) {
    for source in sections.iter_mut().flat_map(|s| &mut s.sources).skip(1) {
        let (store, q) = (store.clone(), source.query.clone().limit(AHEAD));
        let (task, handle) = async move { store.query(&q).await }.remote_handle();
        tokio::spawn(task);
        source.ahead = Ahead::Reading(handle);
    }
}

/// One section of the export after the profile: its key in the JSON document,
/// its file in the ZIP, and the queries that feed it (in order).
struct Section {
    json: &'static str,
    csv: &'static str,
    sources: Vec<Source>,
}

impl Section {
    /// Waits for what is read ahead for this section.
    async fn ready(&mut self) -> AppResult<()> {
        for source in &mut self.sources {
            if let Ahead::Reading(handle) = std::mem::replace(&mut source.ahead, Ahead::No) {
                source.ahead = Ahead::Read(handle.await?);
            }
        }
        Ok(())
    }
}

/// The profile's key in the JSON document and its file in the ZIP.
const PROFILE: (&str, &str) = ("userData", "profile.csv");

fn sections(uid: &str) -> AppResult<Vec<Section>> {
    let user = users::Users::path(uid)?;
    let own = |collection| vec![Source::new(Query::collection(Some(&user), collection), None)];
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
            sources: vec![Source::new(analytics::user_query(uid), None)],
        },
        Section {
            json: "auditTrail",
            csv: "audit_trail.csv",
            sources: vec![
                Source::new(
                    Query::collection(None, audit::COLLECTION).filter(
                        "actor",
                        Op::Eq,
                        value::string(uid.to_owned()),
                    ),
                    None,
                ),
                // Records about the user by someone else (the user's own are above).
                Source::new(
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

/// A section's items, its sources one after the other, each what was read
/// ahead then one store stream of the rest (not cursor pages: linear cost),
/// one item at a time: the writer serializes each as it comes, and the store
/// is held back (gRPC flow control) while the client reads.
fn items<'a>(
    store: &'a dyn Store,
    section: &'a Section,
) -> impl Stream<Item = AppResult<serde_json::Value>> + Send + 'a {
    stream::iter(&section.sources)
        .flat_map(move |source| {
            let (ahead, rest) = match &source.ahead {
                // Fewer than asked for: that was all of them.
                Ahead::Read(docs) => (
                    docs.as_slice(),
                    docs.last()
                        .filter(|_| docs.len() >= AHEAD as usize)
                        .map(|last| Query {
                            start_after: Some(source.query.cursor_after(last)),
                            ..source.query.clone()
                        }),
                ),
                // Not read ahead (or not waited for): all in one stream.
                Ahead::No | Ahead::Reading(_) => (&[][..], Some(source.query.clone())),
            };
            let ahead = stream::iter(ahead.iter().filter(|d| source.keeps(d)).map(|d| Ok(item(d))));
            // The rest's query starts once what was read ahead is written.
            let rest = stream::iter(rest)
                .flat_map(move |q| store.query_stream(&q))
                .try_filter_map(move |d| futures::future::ready(Ok(source.keeps(&d).then(|| item(&d)))));
            ahead.chain(rest)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A client that stops reading stops the export after [`STALL`], so its
    /// store streams are dropped; one that reads on keeps it going.
    #[tokio::test]
    async fn an_export_stops_when_its_client_stops_reading() {
        let stall = Duration::from_millis(50);
        let (tx, mut rx) = mpsc::channel(1);
        send_within(&tx, "first", stall).await.unwrap();
        let started = std::time::Instant::now();
        let stalled = send_within(&tx, "second", stall).await;
        assert!(stalled.is_err(), "{stalled:?}");
        assert!(started.elapsed() >= stall);
        assert_eq!(rx.recv().await.unwrap().unwrap(), Bytes::from("first"));
        send_within(&tx, "third", stall).await.unwrap();
        drop(rx);
        assert!(send_within(&tx, "fourth", stall).await.is_err());
    }
}
