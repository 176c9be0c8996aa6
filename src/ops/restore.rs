//! `funnelflow restore --from DIR [--force]`.
//!
//! 1. Verify, before writing anything: the manifest (present, its digest),
//!    then every file it lists, streamed: byte count, SHA-256, document count,
//!    and every line parsed and decoded (path, times, typed fields). A file
//!    missing, changed, truncated or extra is refused with `Refused::BadBackup`.
//! 2. Refuse a target that holds any document, unless `--force` (then
//!    documents of the backup replace those at the same paths; others stay).
//! 3. Write each file's documents as exact `set` writes (the document becomes
//!    precisely the backed-up fields), in commits of ≤ 500 writes and ≤ 8 MiB,
//!    `CONCURRENCY` commits in flight, with backoff on overload/unavailability.
//!    The bytes are hashed again as they are written: a file changed after
//!    the verification stops the restore (what was written before stays).
//!
//! Paths and fields are restored exactly; create/update times cannot be
//! (Firestore sets them on write): the NDJSON keeps the originals for the record.
//!
//! Resumable: after each commit, the count of leading documents of the file
//! that are written (all commits before them succeeded) goes to a progress
//! file (`restore-progress.json` in the backup directory, or `--progress`),
//! bound to the manifest's digest and the target. A restore that finds an
//! unfinished progress file for the same backup and target skips the
//! non-empty check and those documents; re-writing a document is harmless
//! (a set is idempotent), so a commit in flight when it stopped is simply redone.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Refused;
use super::manifest::{FileEntry, Manifest};
use super::typed::{self, Root};
use crate::store::{DocPath, MAX_WRITES_PER_COMMIT, Store, Write};

/// Commits in flight at once.
pub const CONCURRENCY: usize = 4;
/// Bytes of NDJSON per commit (Firestore takes at most 10 MiB per request).
const BATCH_BYTES: usize = 8 << 20;
pub const PROGRESS_FILE: &str = "restore-progress.json";

#[derive(Debug, Clone)]
pub struct Options {
    pub force: bool,
    /// Where the progress is kept; `None`: `restore-progress.json` in the backup directory.
    pub progress: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub files: usize,
    pub documents: u64,
    pub written: u64,
    /// Written by an earlier, interrupted run of the same restore.
    pub skipped: u64,
    pub commits: u64,
    pub retries: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    path: String,
    create_time: String,
    update_time: String,
    fields: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Progress {
    manifest_digest: String,
    target: String,
    /// File name → documents written from its start.
    files: BTreeMap<String, u64>,
    complete: bool,
}

impl Progress {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// Verifies the backup in `dir` completely (see the module doc); writes nothing.
pub fn verify(dir: &Path, root: &Root) -> Result<Manifest, Refused> {
    let manifest = Manifest::read(dir)?;
    let listed: HashSet<&str> = manifest.body.files.iter().map(|f| f.name.as_str()).collect();
    if listed.len() != manifest.body.files.len() {
        return Err(Refused::BadBackup("the manifest lists a file twice".into()));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Refused::BadBackup(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ndjson") && !listed.contains(name.as_str()) {
            return Err(Refused::BadBackup(format!(
                "{name} is not in the manifest: the backup was changed"
            )));
        }
    }
    for f in &manifest.body.files {
        verify_file(dir, f, root)?;
    }
    Ok(manifest)
}

fn verify_file(dir: &Path, f: &FileEntry, root: &Root) -> Result<(), Refused> {
    let path = dir.join(&f.name);
    let bad = |why: String| Refused::BadBackup(format!("{}: {why}", path.display()));
    let file =
        File::open(&path).map_err(|e| bad(format!("cannot open it ({e}): the backup is incomplete")))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let (mut sha, mut bytes, mut documents) = (Sha256::new(), 0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| bad(format!("read error: {e}")))?;
        if n == 0 {
            break;
        }
        sha.update(&buf);
        bytes += n as u64;
        documents += 1;
        if buf.last() != Some(&b'\n') {
            return Err(bad(format!("line {documents} is cut off: the file is truncated")));
        }
        parse_line(&buf, &f.collection, root).map_err(|e| bad(format!("line {documents}: {e}")))?;
    }
    let sha = hex::encode(sha.finalize());
    if bytes != f.bytes || documents != f.documents || sha != f.sha256 {
        return Err(bad(format!(
            "holds {documents} documents in {bytes} bytes with SHA-256 {sha}; the manifest says {} in {} with {}",
            f.documents, f.bytes, f.sha256
        )));
    }
    Ok(())
}

/// One NDJSON line as the write that restores it.
fn parse_line(line: &[u8], collection: &str, root: &Root) -> anyhow::Result<Write> {
    let line: Line = serde_json::from_slice(line).context("not a backup line")?;
    let path = DocPath::parse(&line.path)?;
    if line.path.split('/').next() != Some(collection) {
        anyhow::bail!("{} is not in collection {collection}", line.path);
    }
    typed::decode_time(&line.create_time)?;
    typed::decode_time(&line.update_time)?;
    let fields = typed::decode_fields(&line.fields, root)?;
    Ok(Write::set(path, fields))
}

/// Verifies, then restores the backup in `dir` into `store` (the database `root`).
pub async fn run(store: &dyn Store, root: &Root, dir: &Path, options: &Options) -> anyhow::Result<Report> {
    let manifest = verify(dir, root)?;
    let progress_path = options
        .progress
        .clone()
        .unwrap_or_else(|| dir.join(PROGRESS_FILE));
    let previous = read_progress(&progress_path)?;
    let resuming = match previous {
        Some(p) if !p.complete && p.manifest_digest == manifest.digest && p.target == root_name(root) => {
            Some(p)
        }
        Some(p) if !p.complete && !options.force => {
            anyhow::bail!(
                "{} belongs to an unfinished restore of another backup or into another database ({}); \
                 finish that one, or delete the file",
                progress_path.display(),
                p.target
            );
        }
        _ => None,
    };
    if resuming.is_none() && !options.force {
        let (any, _) = super::with_backoff(|| store.scan(None, 1))
            .await
            .context("reading the target")?;
        if let Some(doc) = any.first() {
            return Err(Refused::TargetNotEmpty(format!(
                "the target database is not empty (it holds {} among others): restore into an empty \
                 database, or pass --force to write the backup's documents over it",
                doc.path
            ))
            .into());
        }
    }
    let mut progress = resuming.unwrap_or_else(|| Progress {
        manifest_digest: manifest.digest.clone(),
        target: root_name(root),
        files: BTreeMap::new(),
        complete: false,
    });
    progress.save(&progress_path).context(
        "the restore keeps its progress there (to resume after an interruption); \
         if the backup directory is read-only, pass --progress FILE",
    )?;

    let bar = super::progress("restore", Some(manifest.body.documents));
    let mut report = Report {
        files: manifest.body.files.len(),
        documents: manifest.body.documents,
        ..Report::default()
    };
    for f in &manifest.body.files {
        let done = progress.files.get(&f.name).copied().unwrap_or(0).min(f.documents);
        report.skipped += done;
        bar.inc(done);
        if done == f.documents {
            continue;
        }
        let batches = Batches::open(&dir.join(&f.name), done, &f.collection, root)?;
        let file_sha = batches.sha.clone();
        let mut commits = futures::stream::iter(batches)
            .map(|batch| async move {
                let writes = batch?;
                let n = writes.len() as u64;
                let (_, retries) = super::with_backoff(|| store.commit(writes.clone()))
                    .await
                    .context("writing documents")?;
                anyhow::Ok((n, retries))
            })
            .buffered(CONCURRENCY);
        let mut written = done;
        while let Some(result) = commits.next().await {
            let (n, retries) = result?;
            written += n;
            report.written += n;
            report.commits += 1;
            report.retries += u64::from(retries);
            bar.inc(n);
            progress.files.insert(f.name.clone(), written);
            progress.save(&progress_path)?;
        }
        drop(commits);
        // The file was verified before; it must not have changed since.
        let sha = std::mem::take(&mut *file_sha.lock().unwrap_or_else(PoisonError::into_inner));
        if hex::encode(sha.finalize()) != f.sha256 {
            return Err(Refused::BadBackup(format!(
                "{} changed while it was being restored; its documents up to the change are written",
                f.name
            ))
            .into());
        }
    }
    progress.complete = true;
    progress.save(&progress_path)?;
    bar.finish_and_clear();
    Ok(report)
}

fn root_name(root: &Root) -> String {
    root.as_str().to_owned()
}

fn read_progress(path: &Path) -> anyhow::Result<Option<Progress>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a restore progress file; delete it to start over",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The writes of one file, in commits, after skipping its first `skip` documents.
struct Batches {
    reader: BufReader<File>,
    /// Of every byte read, skipped lines included: the whole file once read to the end.
    sha: Arc<Mutex<Sha256>>,
    collection: String,
    root: Root,
    buf: Vec<u8>,
}

impl Batches {
    fn open(path: &Path, skip: u64, collection: &str, root: &Root) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut batches = Self {
            reader: BufReader::with_capacity(1 << 16, file),
            sha: Arc::default(),
            collection: collection.to_owned(),
            root: root.clone(),
            buf: Vec::new(),
        };
        for _ in 0..skip {
            batches.buf.clear();
            batches.reader.read_until(b'\n', &mut batches.buf)?;
            batches.hash();
        }
        Ok(batches)
    }

    fn hash(&self) {
        self.sha
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(&self.buf);
    }
}

impl Iterator for Batches {
    type Item = anyhow::Result<Vec<Write>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut writes = Vec::new();
        let mut bytes = 0usize;
        while writes.len() < MAX_WRITES_PER_COMMIT && bytes < BATCH_BYTES {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    bytes += n;
                    self.hash();
                    match parse_line(&self.buf, &self.collection, &self.root) {
                        Ok(w) => writes.push(w),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
        (!writes.is_empty()).then_some(Ok(writes))
    }
}
