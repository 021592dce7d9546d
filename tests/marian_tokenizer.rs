//! The Marian tokenizer against transformers' `MarianTokenizer`: for every fixture model in
//! tests/fixtures/marian/, every case of its golden file goldens/tokenizer-<model>.json
//! (written by tests/fixtures/make_marian.py) must give identical ids, tokens and text.
//! A model folder without its golden, or a golden section this test does not know, fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use precis::models::ResolvedModel;
use precis::tokenize::MarianTokenizer;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/marian");

/// The golden sections this test checks, and the scalar ones it compares.
const KNOWN_KEYS: &[&str] = &[
    "model",
    "notes",
    "separate_vocabs",
    "eos_token_id",
    "unk_token_id",
    "pad_token_id",
    "supported_language_codes",
    "encode",
    "target_encode",
    "decode",
];

/// Failures are collected, then shown (the first few in full) before the test fails.
#[derive(Default)]
struct Report {
    checked: usize,
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, detail: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.failures.push(detail());
        }
    }
}

fn model_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/marian/ exists")
        .map(|e| e.expect("read fixture dir").path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "goldens")
        .collect();
    folders.sort();
    folders
}

fn resolved(folder: &Path) -> ResolvedModel {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        files.insert(
            path.file_name().unwrap().to_str().unwrap().to_string(),
            path,
        );
    }
    ResolvedModel {
        name: folder.display().to_string(),
        id: format!("local:{}", folder.display()),
        architecture: "marian".into(),
        files,
        generation: Default::default(),
    }
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an id list")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

fn str_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a string list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

fn text(case: &Value, key: &str) -> String {
    case[key].as_str().expect(key).to_string()
}

fn check_model(folder: &Path) -> Report {
    let name = folder.file_name().unwrap().to_str().unwrap();
    let golden_path = Path::new(FIXTURES)
        .join("goldens")
        .join(format!("tokenizer-{name}.json"));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{name}: no golden {}: {e}", golden_path.display())),
    )
    .expect("golden is JSON");
    for key in golden.as_object().unwrap().keys() {
        assert!(
            KNOWN_KEYS.contains(&key.as_str()),
            "{name}: golden section {key:?} is not checked by this test; add it"
        );
    }
    let tok = MarianTokenizer::from_model(&resolved(folder))
        .unwrap_or_else(|e| panic!("{name}: {}", precis::error_chain(&e)));
    let mut report = Report::default();

    let scalar = |key: &str| golden[key].as_u64().unwrap() as u32;
    report.check(tok.eos_id() == scalar("eos_token_id"), || "eos id".into());
    report.check(tok.unk_id() == scalar("unk_token_id"), || "unk id".into());
    report.check(tok.pad_id() == scalar("pad_token_id"), || "pad id".into());
    report.check(
        tok.separate_vocabs() == golden["separate_vocabs"].as_bool().unwrap(),
        || "separate_vocabs".into(),
    );
    let codes = str_list(&golden["supported_language_codes"]);
    report.check(tok.language_codes() == codes.as_slice(), || {
        format!(
            "language codes: expected {codes:?}, got {:?}",
            tok.language_codes()
        )
    });

    for case in golden["encode"].as_array().unwrap() {
        let input = text(case, "text");
        let expected = ids(&case["input_ids"]);
        let actual = tok.encode(&input).unwrap();
        report.check(actual == expected, || {
            format!(
                "encode {input:?}\n  expected {expected:?}\n  actual   {actual:?}\n  pieces   {:?}",
                tok.tokenize(&input)
            )
        });
        if let Some(tokens) = case.get("tokens") {
            let expected = str_list(tokens);
            let actual = tok.tokenize(&input);
            report.check(actual == expected, || {
                format!("tokenize {input:?}\n  expected {expected:?}\n  actual   {actual:?}")
            });
        }
    }
    for case in golden["target_encode"].as_array().unwrap() {
        let input = text(case, "text");
        let expected = ids(&case["input_ids"]);
        let actual = tok.encode_target(&input).unwrap();
        report.check(actual == expected, || {
            format!("encode_target {input:?}\n  expected {expected:?}\n  actual   {actual:?}")
        });
    }
    for case in golden["decode"].as_array().unwrap() {
        let input = ids(&case["ids"]);
        for (skip, key) in [(true, "text"), (false, "text_with_special_tokens")] {
            let expected = text(case, key);
            let actual = tok.decode(&input, skip).unwrap();
            report.check(actual == expected, || {
                format!(
                    "decode {input:?} (skip_special_tokens={skip})\n  expected {expected:?}\n  actual   {actual:?}"
                )
            });
        }
    }

    let gsd: Vec<&str> = golden["encode"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["group"] == "gsd")
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    let start = Instant::now();
    let encoded = tok.encode_batch(&gsd).unwrap();
    let elapsed = start.elapsed();
    let tokens: usize = encoded.iter().map(Vec::len).sum();
    println!(
        "{name}: {} checks, {} failures; encode_batch of {} GSD sentences ({tokens} ids) in {:.2} ms",
        report.checked,
        report.failures.len(),
        gsd.len(),
        elapsed.as_secs_f64() * 1e3
    );
    report
}

#[test]
fn marian_tokenizer_matches_transformers_on_every_golden_case() {
    let folders = model_folders();
    assert!(
        !folders.is_empty(),
        "no fixture models in {FIXTURES}: run tests/fixtures/make_marian.py"
    );
    let mut failed = Vec::new();
    for folder in &folders {
        let report = check_model(folder);
        if !report.failures.is_empty() {
            let name = folder.file_name().unwrap().to_string_lossy().to_string();
            for failure in report.failures.iter().take(20) {
                eprintln!("{name}: {failure}");
            }
            failed.push(format!(
                "{name}: {} of {} checks failed",
                report.failures.len(),
                report.checked
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_golden_has_its_model_folder() {
    let goldens = std::fs::read_dir(Path::new(FIXTURES).join("goldens")).unwrap();
    for entry in goldens {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if let Some(model) = name
            .strip_prefix("tokenizer-")
            .and_then(|n| n.strip_suffix(".json"))
        {
            assert!(
                Path::new(FIXTURES).join(model).is_dir(),
                "golden {name} has no model folder {model}/"
            );
        }
    }
}
