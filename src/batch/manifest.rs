//! The manifest, `OUT/manifest.jsonl`: one JSON line per input article saying what became of
//! it, which is what makes a run resumable and auditable.
//!
//! Lines are appended (and fsync'd) as articles finish, so a killed run loses at most the
//! article in flight. Reading takes the latest line per input and passes over a torn last
//! line or any line that does not parse. Compaction rewrites the file (temporary file,
//! fsync, rename) with exactly one line per input, sorted by input name; it runs at the start
//! of a run (tidying what a killed run left) and at its end.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store;
use crate::error::{Error, Result};
use crate::report::Timings;

/// The manifest's file name in OUT.
pub const FILE: &str = "manifest.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    Failed,
    Skipped,
}

/// What became of one input article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Path relative to its input root, or `feed.jsonl#id`.
    pub input: String,
    /// SHA-256 of the input's bytes (of the JSONL line, for a record).
    pub sha256: String,
    pub status: Status,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Result files, relative to OUT.
    pub output: Vec<String>,
    /// The options and models that produced it.
    pub fingerprint: String,
    /// Sentences in the article (0 when it was not read).
    #[serde(default)]
    pub sentences: usize,
    pub timings: Timings,
}

impl Line {
    /// Whether this line means the article needs no work: done, from the same bytes with
    /// the same options, and its results (named the same) still there.
    pub fn is_current(
        &self,
        sha256: &str,
        fingerprint: &str,
        output: &[String],
        out: &Path,
    ) -> bool {
        self.status == Status::Done
            && self.sha256 == sha256
            && self.fingerprint == fingerprint
            && self.output == output
            && self.output.iter().all(|o| out.join(o).is_file())
    }
}

/// The latest line of each input, and how many lines could not be read.
#[derive(Debug, Default)]
pub struct Latest {
    pub lines: BTreeMap<String, Line>,
    pub unreadable: usize,
}

/// Read a manifest (none yet: empty), latest line per input winning.
pub fn read(path: &Path) -> Result<Latest> {
    let mut latest = Latest::default();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(latest),
        Err(source) => return Err(io_error(path, source)),
    };
    for text in BufReader::new(file).split(b'\n') {
        let text = text.map_err(|source| io_error(path, source))?;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(&text) {
            Ok(line) => {
                latest.lines.insert(line.input.clone(), line);
            }
            Err(_) => latest.unreadable += 1,
        }
    }
    Ok(latest)
}

/// Rewrite the manifest with one line per input (atomically).
pub fn write_compact(path: &Path, lines: &BTreeMap<String, Line>) -> Result<()> {
    let mut text = String::new();
    for line in lines.values() {
        text.push_str(&serde_json::to_string(line).expect("manifest lines serialize"));
        text.push('\n');
    }
    store::write_atomic(path, text.as_bytes())
}

/// Compact the manifest in place; returns what it holds.
pub fn compact(path: &Path) -> Result<Latest> {
    let latest = read(path)?;
    if latest.unreadable > 0 {
        tracing::warn!(
            "{}: {} unreadable line(s) dropped (a run was killed while writing, or the file \
             was edited); their articles are redone",
            path.display(),
            latest.unreadable
        );
    }
    if path.exists() {
        write_compact(path, &latest.lines)?;
    }
    Ok(latest)
}

/// Appends lines as articles finish, each one on disk before the next article starts.
pub struct Appender {
    path: PathBuf,
    file: File,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Appender> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| output_error(path, source))?;
        Ok(Appender {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, line: &Line) -> Result<()> {
        let mut text = serde_json::to_string(line).expect("manifest lines serialize");
        text.push('\n');
        // One write per line: lines of a killed run are whole or torn at the very end.
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| output_error(&self.path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn output_error(path: &Path, source: std::io::Error) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &str, status: Status, sha: &str) -> Line {
        Line {
            input: input.into(),
            sha256: sha.into(),
            status,
            error: (status != Status::Done).then(|| "why".to_string()),
            output: match status {
                Status::Done => vec![format!("{input}.json")],
                _ => vec![],
            },
            fingerprint: "f".into(),
            sentences: 3,
            timings: Timings::default(),
        }
    }

    #[test]
    fn compaction_keeps_the_latest_line_per_input_and_drops_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut appender = Appender::open(&path).unwrap();
        appender.append(&line("b", Status::Failed, "1")).unwrap();
        appender.append(&line("a", Status::Done, "1")).unwrap();
        appender.append(&line("b", Status::Done, "2")).unwrap();
        drop(appender);
        // A run killed in the middle of a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"input":"c","sha256":"#).unwrap();
        drop(file);

        let latest = compact(&path).unwrap();
        assert_eq!(latest.unreadable, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Line> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [line("a", Status::Done, "1"), line("b", Status::Done, "2")]
        );
        // Compacting again changes nothing; appending after compaction still works.
        compact(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        Appender::open(&path)
            .unwrap()
            .append(&line("c", Status::Skipped, "3"))
            .unwrap();
        assert_eq!(read(&path).unwrap().lines.len(), 3);
    }

    #[test]
    fn a_line_is_current_only_when_nothing_changed() {
        let dir = tempfile::tempdir().unwrap();
        let done = line("a", Status::Done, "1");
        let outputs = vec!["a.json".to_string()];
        assert!(
            !done.is_current("1", "f", &outputs, dir.path()),
            "no output file"
        );
        std::fs::write(dir.path().join("a.json"), "{}").unwrap();
        assert!(done.is_current("1", "f", &outputs, dir.path()));
        assert!(
            !done.is_current("2", "f", &outputs, dir.path()),
            "input changed"
        );
        assert!(
            !done.is_current("1", "g", &outputs, dir.path()),
            "options changed"
        );
        assert!(
            !done.is_current("1", "f", &[], dir.path()),
            "outputs renamed"
        );
        let failed = line("a", Status::Failed, "1");
        assert!(!failed.is_current("1", "f", &[], dir.path()));
    }

    #[test]
    fn no_manifest_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let latest = compact(&dir.path().join(FILE)).unwrap();
        assert!(latest.lines.is_empty());
        assert!(!dir.path().join(FILE).exists());
    }
}
