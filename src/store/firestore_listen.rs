//! Firestore's `Listen` stream for a documents target, on the `firestore`
//! crate's gRPC client.
//!
//! Not the crate's `FirestoreListener`: that one retries a broken stream inside
//! its own loop (after a fixed delay) and tells its callback nothing about it,
//! while the invalidation feed must know the moment its stream is down, to stop
//! trusting its caches. It also keeps resume tokens, which the feed does not
//! need: after a reconnect it re-reads its log from its own cursor. So this
//! opens one stream per call, the way the crate's listener does underneath,
//! and reports `Current` and every change; the caller reconnects.

use ::firestore::FirestoreDb;
use ::firestore::errors::FirestoreError;
use ::firestore::gcloud_sdk::google::firestore::v1 as proto;
use ::firestore::gcloud_sdk::tonic;
use futures::StreamExt;
use proto::listen_response::ResponseType;
use proto::target_change::TargetChangeType;

use super::{DocPath, ListenEvent, ListenStream, StoreError, StoreResult};

/// The one target of each stream.
const TARGET_ID: i32 = 1;

/// Opens the stream; `documents_path` is the database's `…/documents` prefix.
pub(super) async fn listen(
    db: &FirestoreDb,
    documents_path: &str,
    docs: &[DocPath],
    to_error: fn(FirestoreError) -> StoreError,
) -> StoreResult<ListenStream> {
    let request = proto::ListenRequest {
        database: db.get_database_path().clone(),
        labels: Default::default(),
        request_options: None,
        target_change: Some(proto::listen_request::TargetChange::AddTarget(proto::Target {
            target_id: TARGET_ID,
            once: false,
            expected_count: None,
            target_type: Some(proto::target::TargetType::Documents(
                proto::target::DocumentsTarget {
                    documents: docs.iter().map(|p| format!("{documents_path}/{p}")).collect(),
                },
            )),
            resume_type: None,
        })),
    };
    // The request side stays open (an ended request stream ends the call) until
    // the response stream is dropped, which drops `_open` and so ends it.
    let (open, closed) = tokio::sync::oneshot::channel::<()>();
    let requests = futures::stream::iter([request])
        .chain(futures::stream::pending())
        .take_until(closed);
    let response = db
        .client()
        .get()
        .listen(tonic::Request::new(requests))
        .await
        .map_err(|s| to_error(FirestoreError::from(s)))?
        .into_inner();
    let prefix = format!("{documents_path}/");
    let parse = move |name: &str| -> StoreResult<ListenEvent> {
        name.strip_prefix(&prefix)
            .ok_or_else(|| StoreError::Internal(format!("unexpected document name {name}")))
            .and_then(DocPath::parse)
            .map(ListenEvent::Changed)
    };
    let events = futures::stream::unfold(Some((response, open)), move |state| {
        let parse = parse.clone();
        async move {
            let (mut response, open) = state?;
            loop {
                let item = match response.next().await {
                    None => return None,
                    Some(Err(status)) => Err(to_error(FirestoreError::from(status))),
                    Some(Ok(message)) => match message.response_type {
                        Some(ResponseType::TargetChange(change)) => {
                            match TargetChangeType::try_from(change.target_change_type) {
                                Ok(TargetChangeType::Current) => Ok(ListenEvent::Current),
                                Ok(TargetChangeType::Remove) => Err(StoreError::Unavailable(format!(
                                    "Firestore removed the listen target: {}",
                                    change.cause.map(|c| c.message).unwrap_or_default()
                                ))),
                                _ => continue,
                            }
                        }
                        Some(ResponseType::DocumentChange(change)) => {
                            match change.document.as_ref().map(|d| d.name.as_str()) {
                                Some(name) => parse(name),
                                None => continue,
                            }
                        }
                        Some(ResponseType::DocumentDelete(d)) => parse(&d.document),
                        Some(ResponseType::DocumentRemove(d)) => parse(&d.document),
                        Some(ResponseType::Filter(_)) | None => continue,
                    },
                };
                // An error ends the stream.
                let next = item.is_ok().then_some((response, open));
                return Some((item, next));
            }
        }
    });
    Ok(events.boxed())
}
