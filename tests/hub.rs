//! Downloads through the real hf-hub code path, against a loopback stand-in for the Hub:
//! `models pull` fills the cache in the Python layout, later runs find it offline, and a
//! second pull downloads nothing.

mod common;
#[path = "common/fake_hub.rs"]
mod fake_hub;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::Sandbox;
use predicates::prelude::*;
use predicates::str::contains;

const COMMIT: &str = "5f2d7e3a9c1b0e8d4f6a2c7b9e1d3f5a7c9b2e4d";
const REPO: &str = "Helsinki-NLP/opus-mt-fr-en";

fn model_files() -> HashMap<String, Vec<u8>> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header);
    weights.extend_from_slice(&[0; 8]);
    let files: [(&str, Vec<u8>); 7] = [
        ("config.json", br#"{"model_type": "marian"}"#.to_vec()),
        ("generation_config.json", b"{}".to_vec()),
        ("model.safetensors", weights),
        ("source.spm", b"spm-source".to_vec()),
        ("target.spm", b"spm-target".to_vec()),
        ("tokenizer_config.json", b"{}".to_vec()),
        ("vocab.json", br#"{"</s>": 0}"#.to_vec()),
    ];
    files
        .into_iter()
        .map(|(name, bytes)| (format!("{REPO}/refs/pr/4/{name}"), bytes))
        .collect()
}

#[test]
fn pull_fills_the_cache_then_everything_works_offline() {
    let hub = fake_hub::serve(COMMIT, model_files());
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", &hub.endpoint)
        .args(["models", "pull", "opus-mt-fr-en"])
        .assert()
        .success()
        .stderr(contains(format!("{REPO}@{COMMIT}")));

    // The Python layout: a ref for the revision, a snapshot of links into blobs.
    let repo_dir = sandbox
        .hf_home()
        .join("hub/models--Helsinki-NLP--opus-mt-fr-en");
    let reference = std::fs::read_to_string(repo_dir.join("refs/refs/pr/4")).unwrap();
    assert_eq!(reference.trim(), COMMIT);
    let weights = repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors");
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        model_files()[&format!("{REPO}/refs/pr/4/model.safetensors")]
    );

    // Offline from here on: the cache is enough.
    sandbox
        .precis()
        .args(["models", "path", "opus-mt-fr-en"])
        .assert()
        .success()
        .stdout(contains(COMMIT));
    sandbox
        .precis()
        .args(["models", "verify", "opus-mt-fr-en"])
        .assert()
        .success()
        .stdout(contains("sha256 ok").count(7));
    sandbox
        .precis()
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(contains("opus-mt-fr-en").and(contains("yes")));

    // A second pull, online, finds everything cached and asks the Hub nothing.
    let before = hub.requests.load(Ordering::SeqCst);
    sandbox
        .precis()
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", &hub.endpoint)
        .args(["models", "pull", "opus-mt-fr-en"])
        .assert()
        .success();
    assert_eq!(hub.requests.load(Ordering::SeqCst), before);
}

#[test]
fn missing_file_on_the_hub_is_a_clear_download_error() {
    let mut files = model_files();
    files.remove(&format!("{REPO}/refs/pr/4/target.spm"));
    let hub = fake_hub::serve(COMMIT, files);
    let sandbox = Sandbox::new();
    sandbox
        .precis()
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", &hub.endpoint)
        .args(["models", "pull", "-q", "opus-mt-fr-en"])
        .assert()
        .code(8)
        .stderr(contains(format!(
            "could not download 'target.spm' of {REPO}@refs/pr/4"
        )));
}
