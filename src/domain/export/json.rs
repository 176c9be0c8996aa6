//! The export as one JSON document:
//! `{exportedAt, userData, analysisHistory, …}`, written batch by batch as the store streams it.

use std::sync::Arc;

use futures::TryStreamExt;

use super::{Chunks, PROFILE, items, sections, send};
use crate::error::AppResult;
use crate::store::Store;

/// Writes the export of `uid` into `tx`, chunk by chunk; stops early when the
/// receiver is gone (the client left).
pub async fn write_json(
    store: Arc<dyn Store>,
    uid: String,
    profile: serde_json::Value,
    tx: Chunks,
) -> AppResult<()> {
    let head = serde_json::json!({"exportedAt": jiff::Timestamp::now().to_string()});
    let head = head.to_string();
    send(
        &tx,
        format!("{},\"{}\":{}", head.trim_end_matches('}'), PROFILE.0, profile),
    )
    .await?;
    for section in sections(&uid)? {
        send(&tx, format!(",\"{}\":[", section.json)).await?;
        let mut first = true;
        let mut batches = std::pin::pin!(items(store.as_ref(), &section));
        while let Some(batch) = batches.try_next().await? {
            let mut chunk = String::new();
            for item in &batch {
                if !first {
                    chunk.push(',');
                }
                first = false;
                chunk.push_str(&item.to_string());
            }
            if !chunk.is_empty() {
                send(&tx, chunk).await?;
            }
        }
        send(&tx, "]").await?;
    }
    send(&tx, "}").await?;
    Ok(())
}
