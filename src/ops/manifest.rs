//! `manifest.json`: what a backup holds, and the checksums restore verifies
//! before it writes anything. Written last (atomically): a backup without one
//! is incomplete.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Refused;

pub const FILE_NAME: &str = "manifest.json";
pub const FORMAT: &str = "funnelflow-backup";
pub const FORMAT_VERSION: u32 = 1;

/// Everything but the manifest's own digest, in a fixed field order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Body {
    pub format: String,
    pub format_version: u32,
    pub source: Source,
    /// RFC 3339: when the scan started and ended (the backup is not a
    /// point-in-time snapshot: writes during the scan may or may not be in it).
    pub started_at: String,
    pub finished_at: String,
    pub documents: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    pub project: String,
    pub database: String,
}

/// One NDJSON file: the documents of one top-level collection (and everything below it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    /// The top-level collection id its documents' paths start with.
    pub collection: String,
    pub documents: u64,
    pub bytes: u64,
    /// SHA-256 of the file's bytes (hex): what restore verifies.
    pub sha256: String,
    /// SHA-256 over each document's path and typed fields only (no
    /// create/update times, which a restore cannot reproduce): equal data has
    /// equal content checksums, so a backup of a restored database can be
    /// compared with the original.
    pub content_sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub body: Body,
    /// SHA-256 of the body's JSON: an edited manifest is refused.
    pub digest: String,
}

impl Manifest {
    pub fn new(body: Body) -> Self {
        let digest = digest_of(&body);
        Self { body, digest }
    }

    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut j = serde_json::to_value(&self.body)?;
        if let serde_json::Value::Object(m) = &mut j {
            m.insert("digest".into(), self.digest.clone().into());
        }
        let mut out = serde_json::to_vec_pretty(&j)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads and checks `dir/manifest.json`: present, well-formed, a known
    /// format version, and its digest matching its content.
    pub fn read(dir: &Path) -> Result<Self, Refused> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Refused::BadBackup(format!(
                    "{} is missing: the backup is incomplete (a backup writes its manifest last)",
                    path.display()
                )));
            }
            Err(e) => return Err(Refused::BadBackup(format!("cannot read {}: {e}", path.display()))),
        };
        let bad = |why: String| Refused::BadBackup(format!("{}: {why}", path.display()));
        let mut j: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let digest = j
            .as_object_mut()
            .and_then(|m| m.remove("digest"))
            .and_then(|d| d.as_str().map(str::to_owned))
            .ok_or_else(|| bad("no digest".into()))?;
        let body: Body = serde_json::from_value(j).map_err(|e| bad(format!("not a backup manifest: {e}")))?;
        if body.format != FORMAT || body.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format {} version {} is not {FORMAT} version {FORMAT_VERSION}",
                body.format, body.format_version
            )));
        }
        if digest_of(&body) != digest {
            return Err(bad(
                "its digest does not match its content: the manifest was edited".into(),
            ));
        }
        let total: u64 = body.files.iter().map(|f| f.documents).sum();
        if total != body.documents {
            return Err(bad(format!(
                "its files hold {total} documents, it says {}",
                body.documents
            )));
        }
        for f in &body.files {
            let plain = !f.name.is_empty()
                && f.name.ends_with(".ndjson")
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !f.name.starts_with('.');
            if !plain {
                return Err(bad(format!("file name {:?} is not one a backup writes", f.name)));
            }
        }
        Ok(Self { body, digest })
    }
}

fn digest_of(body: &Body) -> String {
    // Serializing a plain struct cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
