//! The export as a ZIP of CSV files, one per section (`profile.csv` first),
//! streamed: the `zip` crate's stream writer (data descriptors, no seeking)
//! deflates into a small shared buffer that is drained into the response
//! whenever it holds [`CHUNK_BYTES`](super::CHUNK_BYTES). Each file takes two passes over its section: the
//! first gathers the column names (only the names are kept), the second
//! writes the rows.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use futures::TryStreamExt;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::flatten::{Columns, Table};
use super::{CHUNK_BYTES, Chunks, PROFILE, items, read_ahead, sections, send};
use crate::error::{AppError, AppResult};
use crate::store::Store;

/// What the ZIP writer has produced and the response has not taken yet.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn take(&self) -> Vec<u8> {
        // A Vec of bytes cannot be left half-updated: a poisoned lock is fine.
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    async fn drain(&self, tx: &Chunks) -> AppResult<()> {
        let bytes = self.take();
        if bytes.is_empty() {
            return Ok(());
        }
        send(tx, bytes).await
    }

    /// Drains once [`CHUNK_BYTES`] have gathered.
    async fn drain_full(&self, tx: &Chunks) -> AppResult<()> {
        if self.len() >= CHUNK_BYTES {
            self.drain(tx).await?;
        }
        Ok(())
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Zip = ZipWriter<StreamWriter<Buffer>>;

fn failed(e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("export zip: {e}"))
}

/// RFC 4180: CRLF line ends, fields quoted when they hold a comma, a quote or
/// a line break, quotes doubled; every row as wide as the header.
fn csv_writer(zip: &mut Zip) -> csv::Writer<&mut Zip> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .flexible(false)
        .from_writer(zip)
}

fn write_header(w: &mut csv::Writer<&mut Zip>, table: &Table) -> AppResult<()> {
    // A section without documents is an empty file (no header either).
    if !table.is_empty() {
        w.write_record(table.header()).map_err(failed)?;
    }
    Ok(())
}

/// The export time as a ZIP entry's modification time (ZIP keeps no zone: UTC).
fn modified(now: jiff::Timestamp) -> zip::DateTime {
    let t = now.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let part = |n: i8| u8::try_from(n).unwrap_or(0);
    u16::try_from(t.year())
        .ok()
        .and_then(|y| {
            zip::DateTime::from_date_and_time(
                y,
                part(t.month()),
                part(t.day()),
                part(t.hour()),
                part(t.minute()),
                part(t.second()),
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Writes the export of `uid` into `tx` as a ZIP, chunk by chunk; stops early
/// when the receiver is gone (the client left).
pub async fn write_zip(
    store: Arc<dyn Store>,
    uid: String,
    profile: serde_json::Value,
    tx: Chunks,
) -> AppResult<()> {
    let mut sections = sections(&uid)?;
    read_ahead(&store, &mut sections);
    let now = jiff::Timestamp::now();
    let buffer = Buffer::default();
    let mut zip = ZipWriter::new_stream(buffer.clone());
    zip.set_comment(format!("funnelflow export, exportedAt {now}"))
        .map_err(failed)?;
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(modified(now));

    let mut columns = Columns::default();
    columns.add(&profile)?;
    let table = columns.finish();
    zip.start_file(PROFILE.1, options).map_err(failed)?;
    {
        let mut w = csv_writer(&mut zip);
        write_header(&mut w, &table)?;
        w.write_record(table.row(&profile).iter().map(|c| c.as_bytes()))
            .map_err(failed)?;
        w.flush().map_err(failed)?;
    }
    buffer.drain(&tx).await?;

    for mut section in sections {
        section.ready().await?;
        let mut columns = Columns::default();
        let mut docs = std::pin::pin!(items(store.as_ref(), &section));
        while let Some(item) = docs.try_next().await? {
            columns.add(&item)?;
        }
        let table = columns.finish();
        zip.start_file(section.csv, options).map_err(failed)?;
        let mut w = csv_writer(&mut zip);
        write_header(&mut w, &table)?;
        let mut docs = std::pin::pin!(items(store.as_ref(), &section));
        while let Some(item) = docs.try_next().await? {
            w.write_record(table.row(&item).iter().map(|c| c.as_bytes()))
                .map_err(failed)?;
            // The CSV writer's own buffer (8 KiB) and the compressor's may hold
            // the last rows; they go out with later ones or at the end of the file.
            buffer.drain_full(&tx).await?;
        }
        w.flush().map_err(failed)?;
        drop(w);
        buffer.drain(&tx).await?;
    }
    zip.finish().map_err(failed)?;
    buffer.drain(&tx).await?;
    Ok(())
}
