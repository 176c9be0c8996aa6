//! Flattening JSON documents into CSV rows: nested maps become dotted column
//! names, arrays and empty maps one JSON cell, null an empty cell.
//!
//! The columns of a file are the sorted union of the field paths of its
//! documents, gathered in a first pass that keeps only the names; past
//! [`MAX_COLUMNS`] the deepest maps are kept whole (one JSON cell each) until
//! the names fit, so memory stays bounded whatever the documents hold.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::{AppError, AppResult};

/// The most columns one CSV file gets.
pub const MAX_COLUMNS: usize = 1_000;

/// A field path: one segment per map level.
type Path = Vec<String>;

/// The column set of one file.
#[derive(Debug)]
pub struct Columns {
    paths: BTreeSet<Path>,
    /// Maps at this many levels are one JSON cell (not split further).
    depth: usize,
    max: usize,
}

impl Default for Columns {
    fn default() -> Self {
        Self::with_max(MAX_COLUMNS)
    }
}

impl Columns {
    pub fn with_max(max: usize) -> Self {
        Self {
            paths: BTreeSet::new(),
            depth: usize::MAX,
            max,
        }
    }

    /// Adds the field paths of `doc` (a JSON object).
    pub fn add(&mut self, doc: &Value) -> AppResult<()> {
        let mut path = Vec::new();
        let depth = self.depth;
        leaves(doc, &mut path, depth, &mut |p, _| {
            if !self.paths.contains(p) {
                self.paths.insert(p.to_vec());
            }
        });
        while self.paths.len() > self.max {
            let deepest = self.paths.iter().map(Vec::len).max().unwrap_or(0);
            if deepest <= 1 {
                // Top-level fields are the service's own (a few dozen per collection).
                return Err(AppError::internal(format!(
                    "export: more than {} top-level fields in one section",
                    self.max
                )));
            }
            self.depth = deepest - 1;
            let depth = self.depth;
            self.paths = std::mem::take(&mut self.paths)
                .into_iter()
                .map(|mut p| {
                    p.truncate(depth);
                    p
                })
                .collect();
        }
        Ok(())
    }

    /// The columns, fixed: what the rows are written against.
    pub fn finish(self) -> Table {
        Table {
            paths: self.paths.into_iter().collect(),
            depth: self.depth,
        }
    }
}

/// A file's columns after the first pass.
#[derive(Debug)]
pub struct Table {
    /// Sorted.
    paths: Vec<Path>,
    depth: usize,
}

impl Table {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The header: one dotted name per column, in column order.
    pub fn header(&self) -> Vec<String> {
        self.paths.iter().map(|p| name(p)).collect()
    }

    /// `doc`'s cells in column order. A field outside the columns (a document
    /// written after the first pass with a path no other had) is left out.
    pub fn row<'a>(&self, doc: &'a Value) -> Vec<Cow<'a, str>> {
        let mut row = vec![Cow::Borrowed(""); self.paths.len()];
        let mut path = Vec::new();
        leaves(doc, &mut path, self.depth, &mut |p, v| {
            if let Ok(i) = self.paths.binary_search_by(|c| c.as_slice().cmp(p)) {
                row[i] = cell(v);
            }
        });
        row
    }
}

/// Calls `f` with each leaf of `v` and its path: a scalar, an array, an empty
/// map, or a map `depth` levels down.
fn leaves<'a>(v: &'a Value, path: &mut Path, depth: usize, f: &mut impl FnMut(&[String], &'a Value)) {
    match v {
        Value::Object(m) if !m.is_empty() && path.len() < depth => {
            for (k, child) in m {
                path.push(k.clone());
                leaves(child, path, depth, f);
                path.pop();
            }
        }
        _ if path.is_empty() => {} // not a document
        _ => f(path, v),
    }
}

/// A cell: strings as they are, null empty, other scalars as in JSON, arrays
/// and maps as JSON text.
fn cell(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// A column name: the segments joined by `.`; a segment that holds `.` or
/// `` ` `` or is empty is written in backticks, `` ` `` and `\` escaped with
/// `\` (Firestore's field-path syntax), so distinct paths never share a name.
pub fn name(path: &[String]) -> String {
    let mut out = String::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if seg.is_empty() || seg.contains(['.', '`']) {
            out.push('`');
            for c in seg.chars() {
                if c == '`' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('`');
        } else {
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table(docs: &[Value], max: usize) -> (Vec<String>, Vec<Vec<String>>) {
        let mut c = Columns::with_max(max);
        for d in docs {
            c.add(d).unwrap();
        }
        let c = c.finish();
        let rows = docs
            .iter()
            .map(|d| c.row(d).into_iter().map(Cow::into_owned).collect())
            .collect();
        (c.header(), rows)
    }

    #[test]
    fn nested_maps_become_dotted_columns_and_the_rest_cells() {
        let a = json!({
            "id": "a",
            "n": 3,
            "f": 0.5,
            "ok": true,
            "none": null,
            "tags": ["x", {"y": 1}],
            "empty": {},
            "m": {"b": {"c": "deep"}, "s": "s,\"q\"\n"},
        });
        let b = json!({"id": "b", "m": {"b": "leaf here"}, "extra": "e"});
        let (header, rows) = table(&[a, b], MAX_COLUMNS);
        assert_eq!(
            header,
            [
                "empty", "extra", "f", "id", "m.b", "m.b.c", "m.s", "n", "none", "ok", "tags"
            ]
        );
        assert_eq!(
            rows[0],
            [
                "{}",
                "",
                "0.5",
                "a",
                "",
                "deep",
                "s,\"q\"\n",
                "3",
                "",
                "true",
                r#"["x",{"y":1}]"#
            ]
        );
        assert_eq!(rows[1], ["", "e", "", "b", "leaf here", "", "", "", "", "", ""]);
    }

    #[test]
    fn names_with_dots_or_backticks_are_quoted() {
        let doc = json!({"d": {"a.b": 1, "a": {"b": 2}, "t`\\": 3, "": 4, "plain\\": 5}});
        let (header, rows) = table(&[doc], MAX_COLUMNS);
        assert_eq!(header, ["d.``", "d.a.b", "d.`a.b`", "d.plain\\", "d.`t\\`\\\\`"]);
        assert_eq!(rows[0], ["4", "2", "1", "5", "3"]);
    }

    #[test]
    fn too_many_columns_keep_the_deepest_maps_whole() {
        let docs: Vec<Value> = (0..5)
            .map(|i| json!({"id": i, "data": {format!("k{i}"): {"v": i, "w": i}}}))
            .collect();
        // 11 paths at full depth, 6 with each `data.kN` whole, 2 with `data` whole.
        let (header, rows) = table(&docs, 5);
        assert_eq!(header, ["data", "id"]);
        assert_eq!(rows[3], [r#"{"k3":{"v":3,"w":3}}"#, "3"]);
        let (header, rows) = table(&docs, 8);
        assert_eq!(
            header,
            ["data.k0", "data.k1", "data.k2", "data.k3", "data.k4", "id"]
        );
        assert_eq!(rows[1], ["", r#"{"v":1,"w":1}"#, "", "", "", "1"]);
        let mut c = Columns::with_max(1);
        assert!(c.add(&json!({"a": 1, "b": 2})).is_err());
    }
}
