//! The export as one JSON document:
//! `{exportedAt, userData, analysisHistory, …}`, written item by item as the store streams it, in
//! chunks of [`CHUNK_BYTES`](super::CHUNK_BYTES).

use std::io::Write as _;
use std::sync::Arc;

use futures::TryStreamExt;

use super::{CHUNK_BYTES, Chunks, PROFILE, flush, items, read_ahead, sections, send};
use crate::error::{AppError, AppResult};
use crate::store::Store;

/// Writes the export of `uid` into `tx`, chunk by chunk; stops early when the
/// receiver is gone (the client left).
pub async fn write_json(
    store: Arc<dyn Store>,
    uid: String,
    profile: serde_json::Value,
    tx: Chunks,
) -> AppResult<()> {
    let mut sections = sections(&uid)?;
    read_ahead(&store, &mut sections);
    let head = serde_json::json!({"exportedAt": jiff::Timestamp::now().to_string()});
    let head = head.to_string();
    send(
        &tx,
        format!("{},\"{}\":{}", head.trim_end_matches('}'), PROFILE.0, profile),
    )
    .await?;
    let mut out = Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2));
    for mut section in sections {
        section.ready().await?;
        write!(out, ",\"{}\":[", section.json).map_err(AppError::internal)?;
        let mut first = true;
        let mut items = std::pin::pin!(items(store.as_ref(), &section));
        while let Some(item) = items.try_next().await? {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut out, &item).map_err(AppError::internal)?;
            flush(&tx, &mut out, false).await?;
        }
        out.push(b']');
    }
    out.push(b'}');
    flush(&tx, &mut out, true).await
}
