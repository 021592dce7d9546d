//! Inputs of an archive run: the files, folders and JSONL feeds on the command line, walked
//! lazily into a stream of articles, each with a stable name, an output stem and its payload.
//!
//! Folders are walked recursively in sorted order (so names and collision suffixes are the
//! same on every run), skipping hidden files and folders, the run's own output folder, and
//! files that are not `.txt`, `.html`/`.htm` or `.jsonl`; `--glob` patterns filter files by
//! their path relative to the folder given. A file named on the command line is always read
//! (as text, unless its extension says otherwise). A JSONL feed yields one article per line,
//! read one line at a time; a bad line is one failed record. `--shard K/N` keeps the inputs
//! whose name hashes (SHA-256, stable everywhere) to part K.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::paths::{sanitize_component, sanitize_stem, strip_extension};
use crate::error::{Error, Result};

/// Inputs larger than this are not read: no news article comes near it.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// How an article's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Html,
}

/// One article to process.
#[derive(Debug)]
pub struct Entry {
    /// The name in the manifest: path relative to its input root, or `feed.jsonl#id`.
    pub key: String,
    /// Where its results go under OUT, before collision suffixes (sanitized, no extension).
    pub stem: String,
    pub payload: Payload,
}

#[derive(Debug)]
pub enum Payload {
    File {
        path: PathBuf,
        kind: Kind,
    },
    /// A JSONL record: the raw line (hashed for the manifest) and what it holds.
    Record {
        line: Vec<u8>,
        body: Result<(Kind, String), String>,
    },
    /// Something that cannot be read as an article at all; the reason.
    Broken(String),
}

/// `--shard K/N`: part K (1-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "invalid --shard '{s}': {why}; give K/N with 1 ≤ K ≤ N, e.g. --shard 2/8 \
                 (from a 0-based index such as JOB_COMPLETION_INDEX, pass \
                 $((JOB_COMPLETION_INDEX + 1))/N)"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let k: u64 = k.trim().parse().map_err(|_| bad("K is not a number"))?;
        let n: u64 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        match (k, n) {
            (_, 0) => Err(bad("N must be at least 1")),
            (0, _) => Err(bad("K counts from 1")),
            (k, n) if k > n => Err(bad("K is larger than N")),
            _ => Ok(Shard { k, n }),
        }
    }
}

impl Shard {
    /// Whether the input named `key` belongs to this shard: the first 8 bytes of its
    /// SHA-256, modulo N.
    pub fn contains(&self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        head % self.n == self.k - 1
    }
}

/// What to walk and what to keep.
#[derive(Debug)]
pub struct Selection {
    pub roots: Vec<PathBuf>,
    pub glob: Option<GlobSet>,
    pub shard: Option<Shard>,
    /// The output folder, never walked as input (it may not exist yet when the run is set
    /// up, so it is resolved when the walk meets a folder).
    pub exclude: Option<PathBuf>,
}

/// Compile `--glob` patterns (none: every file).
pub fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| {
            Error::Usage(format!(
                "invalid --glob '{pattern}': {e}; e.g. --glob '*.html' or --glob '2024/**'"
            ))
        })?;
        builder.add(glob);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| Error::Usage(format!("invalid --glob: {e}")))
}

impl Selection {
    /// Check the roots exist before any work.
    pub fn check_roots(&self) -> Result<()> {
        for root in &self.roots {
            if !root.exists() {
                return Err(Error::InputNotFound { path: root.clone() });
            }
        }
        Ok(())
    }

    /// The articles, lazily, in a stable order.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            selection: self,
            roots: self.roots.iter(),
            files: None,
            records: None,
            seen: HashSet::new(),
        }
    }
}

/// A file found under a root.
struct Found {
    /// The root as given on the command line.
    root: PathBuf,
    /// The path relative to the root (the file name for a file root).
    rel: PathBuf,
    path: PathBuf,
}

/// The stream of articles; see `Selection::entries`.
pub struct Entries<'a> {
    selection: &'a Selection,
    roots: std::slice::Iter<'a, PathBuf>,
    files: Option<Box<dyn Iterator<Item = Result<Found, Entry>> + 'a>>,
    records: Option<Records>,
    /// Names handed out so far: two inputs never share one.
    seen: HashSet<String>,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let (entry, alternative) = match self.next_raw()? {
                Raw::Unique(entry) => (entry, None),
                Raw::WithAlternative(entry, alt) => (entry, Some(alt)),
            };
            let Some(entry) = self.dedupe(entry, alternative) else {
                continue;
            };
            if self.selection.shard.is_none_or(|s| s.contains(&entry.key)) {
                return Some(entry);
            }
        }
    }
}

/// An entry as found, with the name to fall back on if its own is taken.
enum Raw {
    Unique(Entry),
    WithAlternative(Entry, String),
}

impl Entries<'_> {
    fn next_raw(&mut self) -> Option<Raw> {
        loop {
            if let Some(records) = &mut self.records {
                match records.next() {
                    Some(raw) => return Some(raw),
                    None => self.records = None,
                }
            }
            if let Some(files) = &mut self.files {
                match files.next() {
                    Some(Ok(found)) => match self.open(found) {
                        Some(raw) => return Some(raw),
                        None => continue,
                    },
                    Some(Err(broken)) => return Some(Raw::Unique(broken)),
                    None => self.files = None,
                }
            }
            let root = self.roots.next()?;
            self.files = Some(walk(root, self.selection));
        }
    }

    /// A file becomes an entry, or (a JSONL feed) a stream of record entries.
    fn open(&mut self, found: Found) -> Option<Raw> {
        let key = slash_path(&found.rel);
        let alternative = slash_path(&found.root.join(&found.rel));
        let name = found.path.file_name().unwrap_or_default().to_string_lossy();
        let ext = extension(&name);
        let stem = file_stem(&found.rel);
        let kind = match ext.as_str() {
            "jsonl" | "ndjson" => {
                self.records = Some(Records::open(&found.path, key, stem));
                return None;
            }
            "html" | "htm" | "xhtml" => Kind::Html,
            _ => Kind::Text,
        };
        let entry = Entry {
            key,
            stem,
            payload: Payload::File {
                path: found.path,
                kind,
            },
        };
        Some(Raw::WithAlternative(entry, alternative))
    }

    /// Give the entry its own name: its alternative (its path as given) if the name is
    /// taken, else drop it: both names taken means the same input given twice.
    fn dedupe(&mut self, mut entry: Entry, alternative: Option<String>) -> Option<Entry> {
        if self.seen.insert(entry.key.clone()) {
            self.seen.extend(alternative);
            return Some(entry);
        }
        match alternative {
            Some(alt) if self.seen.insert(alt.clone()) => {
                entry.key = alt;
                Some(entry)
            }
            _ => {
                tracing::warn!("{}: given twice; processed once", entry.key);
                None
            }
        }
    }
}

/// A path with `/` separators whatever the platform, for names in the manifest.
fn slash_path(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .map(|c| match c {
            // Joined with `/` below, an empty first part gives the leading `/`.
            std::path::Component::RootDir => String::new(),
            c => c.as_os_str().to_string_lossy().into_owned(),
        })
        .collect();
    parts.join("/")
}

fn extension(name: &str) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[dot + 1..].to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The output stem of a file: its relative path without the extension, sanitized.
fn file_stem(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.len().saturating_sub(1);
    sanitize_stem(parts.iter().enumerate().map(|(i, p)| match i == last {
        true => strip_extension(p),
        false => p.as_str(),
    }))
}

/// Whether a file found in a folder is an article input.
fn is_article_file(name: &str) -> bool {
    matches!(
        extension(name).as_str(),
        "txt" | "text" | "html" | "htm" | "xhtml" | "jsonl" | "ndjson"
    )
}

/// The files of one root: itself if it is a file, else its folder tree.
fn walk<'a>(
    root: &Path,
    selection: &'a Selection,
) -> Box<dyn Iterator<Item = Result<Found, Entry>> + 'a> {
    if !root.is_dir() {
        let rel = PathBuf::from(root.file_name().unwrap_or(root.as_os_str()));
        let found = Found {
            root: root.parent().unwrap_or(Path::new("")).to_path_buf(),
            rel,
            path: root.to_path_buf(),
        };
        return Box::new(std::iter::once(Ok(found)));
    }
    let exclude = selection.exclude.clone();
    let root_owned = root.to_path_buf();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |e| e.depth() == 0 || !skipped_dir_entry(e, exclude.as_deref()));
    Box::new(walker.filter_map(move |item| found_in_dir(&root_owned, item, selection)))
}

/// Hidden files and folders, and the output folder, are never walked.
fn skipped_dir_entry(entry: &walkdir::DirEntry, exclude: Option<&Path>) -> bool {
    if entry.file_name().to_string_lossy().starts_with('.') {
        return true;
    }
    entry.file_type().is_dir() && exclude.is_some_and(|out| same_folder(entry.path(), out))
}

/// Whether two paths name the same folder (through links, `..`, relative paths).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn found_in_dir(
    root: &Path,
    item: walkdir::Result<walkdir::DirEntry>,
    selection: &Selection,
) -> Option<Result<Found, Entry>> {
    let entry = match item {
        Ok(entry) => entry,
        Err(err) => {
            let path = err.path().unwrap_or(root).to_path_buf();
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            return Some(Err(Entry {
                key: slash_path(&rel),
                stem: file_stem(&rel),
                payload: Payload::Broken(format!("cannot read {}: {err}", path.display())),
            }));
        }
    };
    // Symbolic links to files are read; links to folders are not followed (no cycles).
    let is_file =
        entry.file_type().is_file() || (entry.file_type().is_symlink() && entry.path().is_file());
    if !is_file || !is_article_file(&entry.file_name().to_string_lossy()) {
        return None;
    }
    let rel = entry.path().strip_prefix(root).ok()?.to_path_buf();
    if selection.glob.as_ref().is_some_and(|g| !g.is_match(&rel)) {
        return None;
    }
    Some(Ok(Found {
        root: root.to_path_buf(),
        rel,
        path: entry.into_path(),
    }))
}

/// The records of a JSONL feed, one line at a time.
struct Records {
    reader: Option<BufReader<File>>,
    /// The feed's name (relative path) and output stem.
    feed: String,
    stem: String,
    line_no: usize,
    /// An error opening the feed, reported as one broken entry.
    failed: Option<String>,
}

impl Records {
    fn open(path: &Path, feed: String, stem: String) -> Records {
        let (reader, failed) = match File::open(path) {
            Ok(file) => (Some(BufReader::new(file)), None),
            Err(err) => (None, Some(format!("cannot read {}: {err}", path.display()))),
        };
        Records {
            reader,
            feed,
            stem,
            line_no: 0,
            failed,
        }
    }

    /// The next non-blank line, at most `MAX_INPUT_BYTES` of it kept.
    fn next_line(&mut self) -> Option<std::io::Result<(Vec<u8>, bool)>> {
        let reader = self.reader.as_mut()?;
        loop {
            let mut line = Vec::new();
            let read = reader
                .by_ref()
                .take(MAX_INPUT_BYTES + 1)
                .read_until(b'\n', &mut line);
            match read {
                Ok(0) => return None,
                Err(err) => return Some(Err(err)),
                Ok(_) => {}
            }
            self.line_no += 1;
            let too_long = line.len() as u64 > MAX_INPUT_BYTES;
            if too_long && line.last() != Some(&b'\n') {
                // Skip the rest of the line without holding it.
                if let Err(err) = skip_line(reader) {
                    return Some(Err(err));
                }
            }
            while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                line.pop();
            }
            if too_long || !line.iter().all(u8::is_ascii_whitespace) {
                return Some(Ok((line, too_long)));
            }
        }
    }

    fn record(&self, line: Vec<u8>, too_long: bool) -> Raw {
        let at_line = format!("{}#L{}", self.feed, self.line_no);
        let parsed = match too_long {
            true => Err(format!(
                "line {} is longer than {} MiB",
                self.line_no,
                MAX_INPUT_BYTES >> 20
            )),
            false => parse_record(&line, self.line_no),
        };
        let (key, stem_id, body) = match parsed {
            Ok((id, body)) => (format!("{}#{id}", self.feed), id, body),
            Err(reason) => (at_line.clone(), format!("L{}", self.line_no), Err(reason)),
        };
        // The feed's stem is sanitized already; the id is one component.
        let stem = format!("{}/{}", self.stem, sanitize_component(&stem_id));
        let entry = Entry {
            key,
            stem,
            payload: Payload::Record { line, body },
        };
        Raw::WithAlternative(entry, at_line)
    }
}

impl Iterator for Records {
    type Item = Raw;

    fn next(&mut self) -> Option<Raw> {
        if let Some(reason) = self.failed.take() {
            return Some(Raw::Unique(Entry {
                key: self.feed.clone(),
                stem: self.stem.clone(),
                payload: Payload::Broken(reason),
            }));
        }
        match self.next_line()? {
            Ok((line, too_long)) => Some(self.record(line, too_long)),
            Err(err) => {
                self.reader = None;
                Some(Raw::Unique(Entry {
                    key: format!("{}#L{}", self.feed, self.line_no + 1),
                    stem: format!("{}/unreadable", self.stem),
                    payload: Payload::Broken(format!("cannot read {}: {err}", self.feed)),
                }))
            }
        }
    }
}

fn skip_line(reader: &mut BufReader<File>) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// A record's id, and its article (or why it has none). An unusable line is `Err`.
type ParsedRecord = Result<(String, Result<(Kind, String), String>), String>;

/// `{"id": …, "text": …}` or `{"id": …, "html": …}`; the id is a string or a number.
fn parse_record(line: &[u8], line_no: usize) -> ParsedRecord {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| format!("line {line_no} is not valid JSON ({e})"))?;
    let id = match value.get("id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(format!(
                "line {line_no} has no \"id\" (a non-empty string or a number)"
            ))
        }
    };
    let body = match (value.get("html"), value.get("text")) {
        (Some(serde_json::Value::String(html)), _) => Ok((Kind::Html, html.clone())),
        (_, Some(serde_json::Value::String(text))) => Ok((Kind::Text, text.clone())),
        _ => Err(format!(
            "record \"{id}\" (line {line_no}) has no \"text\" or \"html\" string"
        )),
    };
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!("2/8".parse::<Shard>().unwrap(), Shard { k: 2, n: 8 });
        assert_eq!(" 1 / 1 ".parse::<Shard>().unwrap(), Shard { k: 1, n: 1 });
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/3/5"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains("give K/N"), "{bad}: {err}");
        }
    }

    #[test]
    fn shards_partition_names_exactly_and_stably() {
        let names: Vec<String> = (0..3000).map(|i| format!("dir/{i}.txt")).collect();
        let shards: Vec<Shard> = (1..=3).map(|k| Shard { k, n: 3 }).collect();
        let mut sizes = [0usize; 3];
        for name in &names {
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].contains(name)).collect();
            assert_eq!(owners.len(), 1, "{name}");
            sizes[owners[0]] += 1;
        }
        // Balanced within a few percent.
        assert!(sizes.iter().all(|&s| (900..1100).contains(&s)), "{sizes:?}");
        // Pinned: the same name lands in the same shard everywhere, always.
        // (Checked against Python: int.from_bytes(sha256(b"dir/0.txt").digest()[:8], "big").)
        assert!(Shard { k: 2, n: 3 }.contains("dir/0.txt"));
        assert!(Shard { k: 7, n: 8 }.contains("dir/0.txt"));
        assert!(Shard { k: 1, n: 1 }.contains("anything"));
    }

    #[test]
    fn records_parse_with_ids_of_both_kinds() {
        let (id, body) = parse_record(br#"{"id": "a/b", "text": "Bonjour."}"#, 1).unwrap();
        assert_eq!(id, "a/b");
        assert_eq!(body.unwrap(), (Kind::Text, "Bonjour.".to_string()));
        let (id, body) = parse_record(br#"{"id": 42, "html": "<p>x</p>"}"#, 2).unwrap();
        assert_eq!(id, "42");
        assert_eq!(body.unwrap(), (Kind::Html, "<p>x</p>".to_string()));
        let (_, body) = parse_record(br#"{"id": "x"}"#, 3).unwrap();
        assert!(body.unwrap_err().contains("no \"text\" or \"html\""));
        assert!(parse_record(b"{not json", 4)
            .unwrap_err()
            .contains("line 4 is not valid JSON"));
        assert!(parse_record(br#"{"text": "x"}"#, 5)
            .unwrap_err()
            .contains("no \"id\""));
    }

    fn keys(selection: &Selection) -> Vec<String> {
        selection.entries().map(|e| e.key).collect()
    }

    #[test]
    fn folders_walk_sorted_skip_hidden_and_others_and_expand_feeds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        for (name, text) in [
            ("b.txt", "b"),
            ("a/z.html", "<p>z</p>"),
            ("a/y.txt", "y"),
            (".hidden.txt", "h"),
            (".git/config.txt", "g"),
            ("photo.jpg", "j"),
            (
                "feed.jsonl",
                "{\"id\":1,\"text\":\"un\"}\n\n{bad\n{\"id\":\"1\",\"text\":\"bis\"}\n",
            ),
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut selection = Selection {
            roots: vec![root.clone(), root.join("b.txt")],
            glob: None,
            shard: None,
            exclude: None,
        };
        assert_eq!(
            keys(&selection),
            [
                "a/y.txt",
                "a/z.html",
                "b.txt",
                "feed.jsonl#1",
                "feed.jsonl#L3",
                "feed.jsonl#L4",
                // The same file given twice is one input.
            ]
        );
        selection.roots.truncate(1);
        selection.glob = globset(&["a/*".to_string()]).unwrap();
        assert_eq!(keys(&selection), ["a/y.txt", "a/z.html"]);
        let stems: Vec<String> = selection.entries().map(|e| e.stem).collect();
        assert_eq!(stems, ["a/y", "a/z"]);
        selection.glob = None;
        let stems: Vec<String> = selection.entries().map(|e| e.stem).collect();
        // Stems may repeat (ids "1" and 1); output names are made unique when claimed.
        assert_eq!(stems, ["a/y", "a/z", "b", "feed/1", "feed/L3", "feed/1"]);
    }
}
