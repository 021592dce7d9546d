//! `precis translate` end to end on the tiny fixture models: the CLI's output equals
//! transformers' (tokenizer, model, search and decoding together), on every sample, batched or
//! not, with long sentences split rather than cut.

mod common;

use common::{root, sample, Sandbox, SAMPLES};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;

const MODELS: &[&str] = &["tiny-shared", "tiny-separate", "tiny-tcbig"];

fn model_dir(name: &str) -> String {
    root()
        .join("tests/fixtures/marian")
        .join(name)
        .display()
        .to_string()
}

fn golden(name: &str) -> Value {
    let path = root().join(format!(
        "tests/fixtures/marian/goldens/generate-{name}.json"
    ));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Command-line flags for a golden case, or None for cases the CLI has no flag for.
fn flags(case: &str) -> Option<Vec<&'static str>> {
    Some(match case {
        "greedy" => vec!["--beams", "1"],
        "beam" => vec![],
        "beam_2" => vec!["--beams", "2"],
        "greedy_no_repeat_ngram_3" => vec!["--beams", "1", "--no-repeat-ngram", "3"],
        "beam_no_repeat_ngram_3" => vec!["--no-repeat-ngram", "3"],
        "greedy_repetition_penalty_1.3" => vec!["--beams", "1", "--repetition-penalty", "1.3"],
        "beam_repetition_penalty_1.3" => vec!["--repetition-penalty", "1.3"],
        "beam_length_penalty_0.6" => vec!["--length-penalty", "0.6"],
        "beam_length_penalty_2.0" => vec!["--length-penalty", "2.0"],
        "greedy_max_length_8" => vec!["--beams", "1", "--max-length", "8"],
        "beam_max_length_8" => vec!["--max-length", "8"],
        _ => return None,
    })
}

/// Run precis with `args`, expect success, and parse its JSON output.
fn run_json(sandbox: &Sandbox, args: &[&str]) -> Value {
    let out = sandbox.precis().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "precis {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn path_arg(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// Every (target, stop) of a translate JSON report, title first, in article order.
fn targets(report: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(title) = report["title"].as_object() {
        out.push((
            title["target"].as_str().unwrap().to_string(),
            "title".to_string(),
        ));
    }
    for para in report["paragraphs"].as_array().unwrap() {
        for s in para["sentences"].as_array().unwrap() {
            out.push((
                s["target"].as_str().unwrap().to_string(),
                s["stop"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn cli_translations_equal_transformers_for_every_case() {
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for model in MODELS {
        let golden = golden(model);
        let texts: Vec<&str> = golden["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["text"].as_str().unwrap())
            .collect();
        // One paragraph per input, kept as is (no cleaning), no title line.
        let article = sandbox.write("inputs.txt", format!("\n{}\n", texts.join("\n\n")));
        for case in golden["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let Some(flags) = flags(name) else { continue };
            for batch in [&["--batch-size", "64"][..], &["--batch-size", "1"]] {
                let dir = model_dir(model);
                let mut args = vec!["translate", "--keep-boilerplate", "--format", "json"];
                args.extend(["--translation-model", &dir]);
                args.extend(&flags);
                args.extend(batch);
                args.push(article.to_str().unwrap());
                let report = run_json(&sandbox, &args);
                let got = targets(&report);
                let expected = case["unbatched"].as_array().unwrap();
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{model} {name}: one output per input"
                );
                for (i, ((text, stop), want)) in got.iter().zip(expected).enumerate() {
                    assert_eq!(
                        text,
                        want["text"].as_str().unwrap(),
                        "{model} {name} input {i}"
                    );
                    let want_stop = if want["hit_max_length"].as_bool().unwrap() {
                        "length"
                    } else {
                        "eos"
                    };
                    if stop != "title" {
                        assert_eq!(stop, want_stop, "{model} {name} input {i}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} outputs checked");
}

#[test]
fn every_sample_translates_with_every_fixture_model() {
    let sandbox = Sandbox::new();
    for model in MODELS {
        for name in SAMPLES {
            let report = run_json(
                &sandbox,
                &[
                    "translate",
                    "--format",
                    "json",
                    "--translation-model",
                    &model_dir(model),
                    path_arg(&sample(name)),
                ],
            );
            let inspect = sandbox
                .precis()
                .args(["inspect", "--format", "json"])
                .arg(sample(name))
                .output()
                .unwrap();
            let doc: Value = serde_json::from_slice(&inspect.stdout).unwrap();
            // Same structure as the source: paragraphs, kinds, sentences, in order.
            let paras = report["paragraphs"].as_array().unwrap();
            assert_eq!(paras.len(), doc["paragraphs"].as_array().unwrap().len());
            for (p, d) in paras.iter().zip(doc["paragraphs"].as_array().unwrap()) {
                assert_eq!(p["kind"], d["kind"]);
                let sources: Vec<&Value> = p["sentences"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| &s["source"])
                    .collect();
                let expected: Vec<&Value> = d["sentences"].as_array().unwrap().iter().collect();
                assert_eq!(sources, expected);
            }
            assert_eq!(report["title"]["source"], doc["title"]);
            assert!(report["model"].as_str().unwrap().starts_with("local:/"));
        }
    }
}

/// The fixtures read at most 64 positions: a sentence longer than that is split at clause
/// boundaries and translated whole, never truncated.
#[test]
fn a_sentence_longer_than_the_model_is_split_not_cut() {
    let sandbox = Sandbox::new();
    let clause = "le président de la République a rencontré les représentants des syndicats";
    let long = format!("{}.", [clause; 8].join(", et "));
    let article = sandbox.write("long.txt", format!("{long}\n"));
    let report = run_json(
        &sandbox,
        &[
            "translate",
            "--format",
            "json",
            "--translation-model",
            &model_dir("tiny-shared"),
            path_arg(&article),
        ],
    );
    let sentence = &report["paragraphs"][0]["sentences"][0];
    assert_eq!(sentence["source"], long.as_str());
    assert!(!sentence["target"].as_str().unwrap().is_empty());
}

#[test]
fn a_length_cut_is_reported() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args([
            "translate",
            "--max-length",
            "3",
            "--translation-model",
            &model_dir("tiny-shared"),
        ])
        .arg(sample("05-ferme-soutien-de-pyongyang.txt"))
        .assert()
        .success()
        .stderr(contains("was cut by the length limit"));
}

#[test]
fn digest_with_extractive_summary_and_translation() {
    let sandbox = Sandbox::new();
    let report = run_json(
        &sandbox,
        &[
            "--engine",
            "extractive",
            "--format",
            "json",
            "--translation-model",
            &model_dir("tiny-shared"),
            path_arg(&sample("04-sommet-de-pyongyang.txt")),
        ],
    );
    assert_eq!(report["summary"]["language"], "en");
    let bullets = report["summary"]["bullets"].as_array().unwrap();
    assert_eq!(bullets.len(), 5);
    // English bullets are the translations of the picked sentences.
    let all: Vec<&Value> = report["translation"]["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["sentences"].as_array().unwrap())
        .map(|s| &s["target"])
        .collect();
    assert!(bullets.iter().all(|b| all.contains(&b)));
    sandbox
        .precis()
        .args([
            "--engine",
            "extractive",
            "--translation-model",
            &model_dir("tiny-shared"),
        ])
        .arg(sample("04-sommet-de-pyongyang.txt"))
        .assert()
        .success()
        .stdout(contains("## Summary").and(contains("## Translation")));
}
