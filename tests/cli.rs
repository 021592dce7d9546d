//! The command line as a user meets it: inputs of every kind, errors with their exit codes,
//! output formats and files, and model resolution with no network.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{sample, Sandbox, SAMPLES};
use predicates::prelude::*;
use predicates::str::contains;

const SAMPLE: &str = "05-ferme-soutien-de-pyongyang.txt";

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect()
}

#[test]
fn help_has_examples_for_each_command() {
    let sandbox = Sandbox::new();
    for cmd in [
        &[][..],
        &["digest"],
        &["summarize"],
        &["translate"],
        &["inspect"],
    ] {
        sandbox
            .precis()
            .args(cmd)
            .arg("--help")
            .assert()
            .success()
            .stdout(contains("Examples:"));
    }
}

#[test]
fn inspect_json_has_exactly_the_documented_keys() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .precis()
        .args(["inspect", "--format", "jsonl"])
        .arg(sample(SAMPLE))
        .assert()
        .success();
    let docs = json_lines(&out.get_output().stdout);
    let doc = docs[0].as_object().unwrap();
    let mut keys: Vec<_> = doc.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["paragraphs", "removed", "title"]);
    let para = doc["paragraphs"][0].as_object().unwrap();
    let mut keys: Vec<_> = para.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["kind", "sentences"]);
    assert!(doc["removed"]
        .as_array()
        .unwrap()
        .contains(&"Spread the love".into()));
}

#[test]
fn several_files_give_json_lines_in_order() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .precis()
        .args(["inspect", "--format", "json"])
        .args(SAMPLES.iter().map(|s| sample(s)))
        .assert()
        .success();
    let docs = json_lines(&out.get_output().stdout);
    assert_eq!(docs.len(), 5);
    assert_eq!(docs[2]["title"], "Kim Soutient Moscou Contre l’Ukraine");
}

#[test]
fn stdin_is_read_when_piped_or_dash() {
    let sandbox = Sandbox::new();
    let text = std::fs::read(sample(SAMPLE)).unwrap();
    for args in [&["inspect"][..], &["inspect", "-"]] {
        sandbox
            .precis()
            .args(args)
            .write_stdin(text.clone())
            .assert()
            .success()
            .stdout(contains("Poutine salue le « ferme soutien »"));
    }
}

#[test]
fn keep_boilerplate_keeps_it() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["inspect", "--keep-boilerplate"])
        .arg(sample(SAMPLE))
        .assert()
        .success()
        .stdout(contains("Spread the love").and(contains("0 lines")));
}

#[test]
fn legacy_and_utf16_encodings_read_like_utf8() {
    let sandbox = Sandbox::new();
    let text = std::fs::read_to_string(sample("02-visite-historique-a-pyongyang.txt")).unwrap();
    // Windows-1252 has no “ ” in Latin-1 but does in its 0x80 range; ’ likewise.
    let (latin, _, lossy) = encoding_rs::WINDOWS_1252.encode(&text);
    assert!(!lossy);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
    let reference = sandbox
        .precis()
        .args(["inspect", "--format", "json"])
        .arg(sample("02-visite-historique-a-pyongyang.txt"))
        .output()
        .unwrap()
        .stdout;
    for (name, bytes) in [("latin.txt", latin.to_vec()), ("utf16.txt", utf16)] {
        let path = sandbox.write(name, bytes);
        let out = sandbox
            .precis()
            .args(["inspect", "--format", "json"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        assert_eq!(out.stdout, reference, "{name} reads differently");
    }
}

/// Each bad input: its exit code and words that name the file and the problem.
#[test]
fn bad_inputs_fail_clearly_with_distinct_codes() {
    let sandbox = Sandbox::new();
    let empty = sandbox.write("empty.txt", "");
    let blank = sandbox.write("blank.txt", " \n\t \n");
    let binary = sandbox.write("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR");
    let only_boilerplate = sandbox.write("bp.txt", "Spread the love\nPar : Jean Dupont\n");
    std::fs::create_dir(sandbox.path().join("folder")).unwrap();
    let cases: [(&str, i32, &str); 6] = [
        ("missing.txt", 3, "missing.txt: no such file"),
        ("folder", 4, "folder: is a directory"),
        (empty.to_str().unwrap(), 6, "empty.txt: the file is empty"),
        (
            blank.to_str().unwrap(),
            6,
            "blank.txt: the file holds only whitespace",
        ),
        (binary.to_str().unwrap(), 7, "image.png: not a text article"),
        (only_boilerplate.to_str().unwrap(), 6, "--keep-boilerplate"),
    ];
    for (arg, code, message) in cases {
        sandbox
            .precis()
            .args(["inspect", arg])
            .assert()
            .code(code)
            .stdout("")
            .stderr(contains(message));
    }
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["inspect", "--format", "jsonl", "missing.txt"])
        .arg(sample(SAMPLE))
        .assert()
        .code(3)
        .stdout(contains("\"title\"").count(1))
        .stderr(contains("missing.txt: no such file").and(contains("1 of 2 inputs failed")));
}

#[test]
fn extractive_summary_bullets_and_json() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args([
            "summarize",
            "--engine",
            "extractive",
            "--bullets",
            "3",
            "-q",
        ])
        .arg(sample(SAMPLE))
        .assert()
        .success()
        .stdout(contains("\n- ").count(3))
        .stderr("");
    let out = sandbox
        .precis()
        .args(["summarize", "--engine", "extractive", "--format", "json"])
        .arg(sample(SAMPLE))
        .assert()
        .success()
        .stderr(contains("in French"));
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["engine"], "extractive");
    assert_eq!(report["bullets"].as_array().unwrap().len(), 5);
    assert_eq!(report["stop"], "eos");
    assert!(report["model"].is_null());
    assert_eq!(report["removed"][0], "Spread the love");
}

#[test]
fn output_file_is_written_and_stdout_stays_clean() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["summarize", "--engine", "extractive", "-q", "-o", "out.md"])
        .arg(sample(SAMPLE))
        .assert()
        .success()
        .stdout("");
    let written = std::fs::read_to_string(sandbox.path().join("out.md")).unwrap();
    assert!(written.starts_with("# En Corée du Nord"), "{written}");
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn failed_run_leaves_no_output_file() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["inspect", "-o", "out.json", "missing.txt"])
        .assert()
        .code(3);
    assert_eq!(std::fs::read_dir(sandbox.path()).unwrap().count(), 0);
}

#[test]
fn translate_without_a_cached_model_fails_fast_with_both_remedies() {
    let sandbox = Sandbox::new();
    let started = Instant::now();
    sandbox
        .precis()
        .arg("translate")
        .arg(sample(SAMPLE))
        .assert()
        .code(8)
        .stdout("")
        .stderr(
            contains("opus-mt-fr-en")
                .and(contains("Helsinki-NLP/opus-mt-fr-en@refs/pr/4"))
                .and(contains("precis models pull opus-mt-fr-en"))
                .and(contains("--translation-model /path/to/folder")),
        );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn llm_summary_without_a_cached_model_points_to_extractive() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .arg(sample(SAMPLE))
        .assert()
        .code(8)
        .stderr(contains("qwen2.5-1.5b-instruct").and(contains("--engine extractive")));
}

#[test]
fn unreachable_hub_fails_fast_when_not_offline() {
    let sandbox = Sandbox::new();
    let started = Instant::now();
    sandbox
        .precis()
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .args([
            "translate",
            "--translation-model",
            "Helsinki-NLP/opus-mt-de-en",
        ])
        .arg(sample(SAMPLE))
        .assert()
        .code(8)
        .stderr(contains(
            "could not download 'config.json' of Helsinki-NLP/opus-mt-de-en@main",
        ));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn invalid_options_are_usage_errors() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 4] = [
        (&["--bullets", "0"], "--bullets 0"),
        (&["--device", "tpu"], "invalid --device 'tpu'"),
        (
            &["--translation-model", "no-such-model"],
            "unknown model 'no-such-model'",
        ),
        (
            &["--translation-model", "./nowhere"],
            "no such file or folder",
        ),
    ];
    for (args, message) in cases {
        sandbox
            .precis()
            .arg("translate")
            .args(args)
            .arg(sample(SAMPLE))
            .assert()
            .failure()
            .stderr(contains(message));
    }
}

#[test]
#[cfg(not(feature = "cuda"))]
fn cuda_on_a_cpu_build_names_the_feature() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["translate", "--device", "cuda:1"])
        .arg(sample(SAMPLE))
        .assert()
        .code(2)
        .stderr(contains("--features cuda"));
}

#[test]
fn local_folder_with_a_missing_file_is_named() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "marian"}"#).unwrap();
    sandbox
        .precis()
        .args(["translate", "--translation-model", "model"])
        .arg(sample(SAMPLE))
        .assert()
        .code(9)
        .stderr(contains("model: missing source.spm"));
}

#[test]
fn models_list_path_and_verify_offline() {
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(
            contains("opus-mt-fr-en")
                .and(contains("qwen2.5-1.5b-instruct"))
                .and(contains("hf-home")),
        );
    let out = sandbox
        .precis()
        .args(["models", "list", "--format", "json"])
        .assert()
        .success();
    let rows: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(rows[0]["cached"], "no");
    sandbox
        .precis()
        .args(["models", "path", "opus-mt-fr-en"])
        .assert()
        .code(8)
        .stderr(contains("precis models pull opus-mt-fr-en"));
    sandbox
        .precis()
        .args(["models", "verify"])
        .assert()
        .success()
        .stderr(contains("no registry model is cached"));
}

/// A registry model laid out in the cache exactly as hf-hub and Python write it: refs,
/// snapshots with links into blobs named by their SHA-256.
#[test]
fn cached_registry_model_is_found_verified_and_damage_is_caught() {
    let sandbox = Sandbox::new();
    let repo = sandbox
        .hf_home()
        .join("hub/models--Helsinki-NLP--opus-mt-fr-en");
    let commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    std::fs::create_dir_all(repo.join("refs/refs/pr")).unwrap();
    std::fs::write(repo.join("refs/refs/pr/4"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header);
    weights.extend_from_slice(&[0; 4]);
    let files: [(&str, &[u8]); 7] = [
        ("config.json", br#"{"model_type": "marian"}"#),
        ("generation_config.json", b"{}"),
        ("model.safetensors", &weights),
        ("source.spm", b"spm"),
        ("target.spm", b"spm"),
        ("tokenizer_config.json", b"{}"),
        ("vocab.json", br#"{"</s>": 0}"#),
    ];
    for (name, bytes) in files {
        use sha2::Digest;
        let sum: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let blob = repo.join("blobs").join(&sum);
        std::fs::write(&blob, bytes).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(name)).unwrap();
    }
    sandbox
        .precis()
        .args(["models", "path", "opus-mt-fr-en"])
        .assert()
        .success()
        .stdout(contains(commit));
    sandbox
        .precis()
        .args(["models", "verify", "opus-mt-fr-en"])
        .assert()
        .success()
        .stdout(
            contains("ok    opus-mt-fr-en  model.safetensors  safetensors, 1 tensors")
                .and(contains("sha256 ok")),
        );
    // The model resolves (named as repo@commit) and reaches the engine.
    sandbox
        .precis()
        .args(["translate", "-v"])
        .arg(sample(SAMPLE))
        .assert()
        .stderr(contains(format!("Helsinki-NLP/opus-mt-fr-en@{commit}")));
    // A truncated download is caught.
    let blob = std::fs::canonicalize(snapshot.join("model.safetensors")).unwrap();
    std::fs::write(&blob, &weights[..weights.len() - 2]).unwrap();
    sandbox
        .precis()
        .args(["models", "verify", "opus-mt-fr-en"])
        .assert()
        .code(9)
        .stdout(contains("FAIL  opus-mt-fr-en  model.safetensors"));
}

#[test]
fn closed_pipe_is_not_an_error() {
    let sandbox = Sandbox::new();
    let many: Vec<_> = std::iter::repeat_n(sample("03-kim-soutient-moscou.txt"), 40).collect();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("precis"))
        .current_dir(sandbox.path())
        .arg("inspect")
        .args(&many)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
