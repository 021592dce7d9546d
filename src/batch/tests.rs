//! The run loop with engines of the tests' own: cross-article batching keeps every sentence
//! with its article, an article the engine chokes on fails alone, and an engine that cannot
//! run stops the run with the manifest saved.

use std::cell::RefCell;
use std::path::Path;

use super::engine::{Engines, ModelIds};
use super::*;
use crate::cli::{BatchFormat, LangChoice};
use crate::input::Document;
use crate::report::{Stop, SummaryReport};

/// Translates by upper-casing; refuses batches holding "POISON"; `fatal` makes every call
/// fail as an engine this build lacks would.
#[derive(Default)]
struct Upper {
    calls: RefCell<Vec<usize>>,
    fatal: bool,
}

impl Engines for Upper {
    fn translate(&self, sentences: &[&str]) -> Result<Vec<(String, Stop)>> {
        self.calls.borrow_mut().push(sentences.len());
        if self.fatal {
            return Err(Error::Unsupported {
                what: "no engine".into(),
            });
        }
        if sentences.iter().any(|s| s.contains("POISON")) {
            return Err(Error::InputEmpty {
                name: "batch".into(),
                what: "poisoned".into(),
            });
        }
        Ok(sentences
            .iter()
            .map(|s| (s.to_uppercase(), Stop::Eos))
            .collect())
    }

    fn summarize(&self, _name: &str, _doc: &Document) -> Result<SummaryReport> {
        unreachable!("translate mode")
    }

    fn fingerprint(&self) -> String {
        "upper".into()
    }

    fn models(&self) -> ModelIds {
        ModelIds {
            summary: None,
            translation: Some("test/upper@0".into()),
        }
    }

    fn translates(&self) -> bool {
        true
    }

    fn summarizes(&self) -> bool {
        false
    }
}

const ARTICLE: &str = "Le gouvernement a présenté hier un nouveau budget pour l’année prochaine. \
    Les syndicats dénoncent une hausse des impôts locaux dans plusieurs régions du pays.";

fn archive(dir: &Path, poison: bool) -> Settings {
    let root = dir.join("archive");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..3 {
        let extra = match (poison, i) {
            (true, 1) => " Un mot POISON dans cette phrase française.",
            _ => "",
        };
        std::fs::write(
            root.join(format!("{i}.txt")),
            format!("{ARTICLE}{extra} Article {i}."),
        )
        .unwrap();
    }
    Settings {
        selection: Selection {
            roots: vec![root],
            glob: None,
            shard: None,
            exclude: None,
        },
        out: dir.join("out"),
        format: BatchFormat::Json,
        lang: LangChoice::Auto,
        keep_boilerplate: false,
        progress_every: Duration::from_secs(3600),
    }
}

fn digest(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
}

#[test]
fn sentences_of_a_chunk_are_translated_together_and_kept_with_their_article() {
    let dir = tempfile::tempdir().unwrap();
    let settings = archive(dir.path(), false);
    let engines = Upper::default();
    run_with(&settings, &engines, true).unwrap();
    assert_eq!(
        *engines.calls.borrow(),
        [9],
        "one call for the three articles"
    );
    for i in 0..3 {
        let d = digest(&settings.out, &format!("{i}.json"));
        let sentences = d["translation"].as_array().unwrap();
        assert_eq!(sentences.len(), 3);
        assert_eq!(sentences[2]["source"], format!("Article {i}."));
        assert_eq!(sentences[2]["target"], format!("ARTICLE {i}."));
        assert_eq!(d["models"]["translation"], "test/upper@0");
    }
    // Nothing changed: the second run redoes nothing.
    let again = Upper::default();
    run_with(&settings, &again, true).unwrap();
    assert!(again.calls.borrow().is_empty());
}

#[test]
fn an_article_the_engine_chokes_on_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let settings = archive(dir.path(), true);
    let engines = Upper::default();
    let err = run_with(&settings, &engines, true).unwrap_err();
    assert_eq!(err.exit_code(), 12, "{err}");
    // The batch, then each article on its own.
    assert_eq!(*engines.calls.borrow(), [10, 3, 4, 3]);
    let latest = manifest::read(&settings.out.join(manifest::FILE)).unwrap();
    let statuses: Vec<Status> = latest.lines.values().map(|l| l.status).collect();
    assert_eq!(statuses, [Status::Done, Status::Failed, Status::Done]);
    assert!(latest.lines["1.txt"]
        .error
        .as_deref()
        .unwrap()
        .contains("poisoned"));
    assert!(!settings.out.join("1.json").exists());
}

#[test]
fn an_engine_that_cannot_run_stops_the_run_with_the_manifest_saved() {
    let dir = tempfile::tempdir().unwrap();
    let settings = archive(dir.path(), false);
    let engines = Upper {
        fatal: true,
        ..Upper::default()
    };
    let err = run_with(&settings, &engines, true).unwrap_err();
    assert_eq!(err.exit_code(), 10);
    assert_eq!(*engines.calls.borrow(), [9], "no retry article by article");
    assert!(settings.out.join(manifest::FILE).exists());
}

#[test]
fn reasons_are_one_line_without_the_name_in_front() {
    let err = Error::InputUnreadable {
        name: "feed.jsonl#L2".into(),
        source: std::io::Error::other("line 2 is not valid JSON"),
    };
    assert_eq!(
        reason("feed.jsonl#L2", &err),
        "cannot read the input: line 2 is not valid JSON"
    );
    let usage = Error::Usage("two\nlines".into());
    assert_eq!(reason("a.txt", &usage), "two lines");
}
