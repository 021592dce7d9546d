//! Marian parity with Python transformers: the tiny random models under
//! `tests/fixtures/marian/` against the goldens `make_marian.py` wrote with `MarianMTModel`.
//!
//! - `logits-<model>.json`: encoder outputs and teacher-forced logits of a padded batch of 2
//!   must match within 1e-4;
//! - `generate-<model>.json`: every case (greedy, beam, and their option variants) must give
//!   the same ids and stop reason for every sentence, decoded alone and as one padded batch
//!   (greedy also streamed through two rows, sentences taking the rows others finished with),
//!   and beam search the same sequence score.
//!
//! Inputs are the goldens' token ids, so these tests do not depend on the tokenizer.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use precis::generate::{GenerateOptions, Generated, GenerationSettings};
use precis::models::marian::MarianModel;
use precis::report::Stop;
use serde::Deserialize;

const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian")
}

/// The models that have goldens of `kind` (`generate` or `logits`).
fn golden_models(kind: &str) -> Vec<String> {
    let dir = fixtures().join("goldens");
    let mut models: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let model = name
                .strip_prefix(&format!("{kind}-"))?
                .strip_suffix(".json")?;
            Some(model.to_string())
        })
        .collect();
    models.sort();
    assert!(
        !models.is_empty(),
        "no {kind}-*.json golden in {}",
        dir.display()
    );
    models
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(model: &str) -> MarianModel {
    let dir = fixtures().join(model);
    let weights = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{}: no weights", dir.display()));
    MarianModel::from_files(&dir.join("config.json"), &weights, &Device::Cpu, DType::F32)
        .unwrap_or_else(|e| panic!("{model}: {}", precis::error_chain(&e)))
}

// ------------------------------------------------------------------------------------------
// logits

#[derive(Deserialize)]
struct LogitsGolden {
    batch: Vec<LogitsItem>,
}

#[derive(Deserialize)]
struct LogitsItem {
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
    encoder_output_row0: Vec<f32>,
    encoder_output_last_valid_row: Vec<f32>,
    decoder_input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest differences (encoder, logits) for one model.
fn logits_diffs(name: &str) -> (f32, f32) {
    let golden: LogitsGolden = read_json(&fixtures().join(format!("goldens/logits-{name}.json")));
    let model = load(name);
    let dev = Device::Cpu;
    let rows = golden.batch.len();
    let len = golden.batch[0].input_ids.len();
    let flat = |f: fn(&LogitsItem) -> &Vec<u32>| {
        golden
            .batch
            .iter()
            .flat_map(f)
            .copied()
            .collect::<Vec<u32>>()
    };
    let ids = Tensor::from_vec(flat(|i| &i.input_ids), (rows, len), &dev).unwrap();
    let mask = Tensor::from_vec(flat(|i| &i.attention_mask), (rows, len), &dev).unwrap();
    let encoded = model.encode(&ids, &mask).unwrap();
    let hidden = encoded.hidden().to_vec3::<f32>().unwrap();
    let mut enc_diff = 0f32;
    for (item, h) in golden.batch.iter().zip(&hidden) {
        let last = item.attention_mask.iter().filter(|&&m| m == 1).count() - 1;
        enc_diff = enc_diff.max(max_diff(&h[0], &item.encoder_output_row0));
        enc_diff = enc_diff.max(max_diff(&h[last], &item.encoder_output_last_valid_row));
    }
    let mut state = model.decoder_state(&encoded).unwrap();
    let mut logit_diff = 0f32;
    let steps = golden.batch[0].decoder_input_ids.len();
    for step in 0..steps {
        let tokens: Vec<u32> = golden
            .batch
            .iter()
            .map(|i| i.decoder_input_ids[step])
            .collect();
        let tokens = Tensor::from_vec(tokens, (rows, 1), &dev).unwrap();
        let logits = model
            .decode_step(&mut state, &tokens)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (item, row) in golden.batch.iter().zip(&logits) {
            logit_diff = logit_diff.max(max_diff(row, &item.logits[step]));
        }
    }
    (enc_diff, logit_diff)
}

#[test]
fn logits_match_transformers() {
    let mut failures = Vec::new();
    for name in golden_models("logits") {
        let (enc, logits) = logits_diffs(&name);
        eprintln!("{name}: max |Δ| encoder {enc:.2e}, logits {logits:.2e}");
        if !(enc <= LOGIT_TOLERANCE && logits <= LOGIT_TOLERANCE) {
            failures.push(format!("{name}: encoder {enc:e}, logits {logits:e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "beyond {LOGIT_TOLERANCE}: {failures:#?}"
    );
}

// ------------------------------------------------------------------------------------------
// generate

#[derive(Deserialize)]
struct GenerateGolden {
    inputs: Vec<Input>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Input {
    input_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    generate_kwargs: GenerationSettings,
    effective_settings: serde_json::Value,
    unbatched: Vec<Expected>,
    batched: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    ids: Vec<u32>,
    hit_max_length: bool,
    sequence_score: Option<f32>,
}

/// Our options must say what transformers used.
fn check_settings(o: &GenerateOptions, eff: &serde_json::Value) -> Vec<String> {
    let mut errs = Vec::new();
    let mut expect = |key: &str, ours: serde_json::Value| {
        let theirs = &eff[key];
        let same = match (theirs.as_f64(), ours.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            _ => *theirs == ours,
        };
        if !same {
            errs.push(format!("{key}: transformers {theirs}, ours {ours}"));
        }
    };
    use serde_json::json;
    let early = match o.early_stopping {
        precis::generate::EarlyStopping::Heuristic => json!(false),
        precis::generate::EarlyStopping::Done => json!(true),
        precis::generate::EarlyStopping::Never => json!("never"),
    };
    let one = |v: &[u32]| if v.len() == 1 { json!(v[0]) } else { json!(v) };
    expect("num_beams", json!(o.num_beams));
    expect("max_length", json!(o.max_length_for(1)));
    expect("length_penalty", json!(o.length_penalty));
    expect("early_stopping", early);
    expect("no_repeat_ngram_size", json!(o.no_repeat_ngram_size));
    expect("repetition_penalty", json!(o.repetition_penalty));
    expect("bad_words_ids", json!(o.bad_words_ids));
    expect("forced_eos_token_id", one(&o.forced_eos_token_id));
    expect("eos_token_id", one(&o.eos_token_id));
    expect("pad_token_id", json!(o.pad_token_id));
    expect("decoder_start_token_id", json!(o.decoder_start_token_id));
    expect("renormalize_logits", json!(o.renormalize_logits));
    errs
}

/// Differences between our output and transformers' for one sentence.
fn compare(got: &Generated, want: &Expected, start: u32) -> Option<String> {
    let mut full = vec![start];
    full.extend(&got.ids);
    let stop = if want.hit_max_length {
        Stop::Length
    } else {
        Stop::Eos
    };
    let mut problems = Vec::new();
    if full != want.ids {
        problems.push(format!(
            "ids\n      ours {full:?}\n      want {:?}",
            want.ids
        ));
    }
    if got.stop != stop {
        problems.push(format!("stop: ours {:?}, want {stop:?}", got.stop));
    }
    if let Some(score) = want.sequence_score {
        // Rounded to 6 significant digits in the golden.
        if (got.score - score).abs() > 1e-4 * score.abs().max(1.0) {
            problems.push(format!("score: ours {}, want {score}", got.score));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[derive(Default)]
struct Tally {
    compared: usize,
    failures: Vec<String>,
}

fn run_case(
    model: &MarianModel,
    settings: &GenerationSettings,
    inputs: &[Vec<u32>],
    case: &Case,
    tally: &mut Tally,
) {
    let options = GenerateOptions::new(&settings.layer(&case.generate_kwargs)).unwrap();
    for e in check_settings(&options, &case.effective_settings) {
        tally.failures.push(format!("{}: settings {e}", case.name));
    }
    let start = options.decoder_start_token_id.unwrap();
    for (i, (src, want)) in inputs.iter().zip(&case.unbatched).enumerate() {
        let got = model.generate(std::slice::from_ref(src), &options).unwrap();
        tally.compared += 1;
        if let Some(p) = compare(&got[0], want, start) {
            tally
                .failures
                .push(format!("{} unbatched #{i}: {p}", case.name));
        }
    }
    let got = model.generate(inputs, &options).unwrap();
    for (i, (g, want)) in got.iter().zip(&case.batched).enumerate() {
        tally.compared += 1;
        if let Some(p) = compare(g, want, start) {
            tally
                .failures
                .push(format!("{} batched #{i}: {p}", case.name));
        }
    }
    if options.num_beams == 1 {
        // Continuous batching, two rows: sentences start in rows that others finished with,
        // and must come out as they do alone.
        let limits = vec![options.max_length_for(1); inputs.len()];
        let got = model.generate_stream(inputs, 2, &options, &limits).unwrap();
        for (i, (g, want)) in got.iter().zip(&case.unbatched).enumerate() {
            tally.compared += 1;
            if let Some(p) = compare(g, want, start) {
                tally
                    .failures
                    .push(format!("{} streamed #{i}: {p}", case.name));
            }
        }
    }
}

/// Run every case whose name passes `pick`, for every model; fail on any difference.
fn generate_parity(pick: fn(&str) -> bool) {
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for name in golden_models("generate") {
        let golden: GenerateGolden =
            read_json(&fixtures().join(format!("goldens/generate-{name}.json")));
        let model = load(&name);
        let settings = GenerationSettings::from_json_file(
            &fixtures().join(&name).join("generation_config.json"),
        )
        .unwrap();
        let inputs: Vec<Vec<u32>> = golden.inputs.iter().map(|i| i.input_ids.clone()).collect();
        let cases: Vec<&Case> = golden.cases.iter().filter(|c| pick(&c.name)).collect();
        assert!(!cases.is_empty(), "{name}: no case to run");
        let mut tally = Tally::default();
        for case in &cases {
            assert_eq!(case.unbatched.len(), inputs.len(), "{name} {}", case.name);
            assert_eq!(case.batched.len(), inputs.len(), "{name} {}", case.name);
            run_case(&model, &settings, &inputs, case, &mut tally);
        }
        summary.push(format!(
            "{name}: {} cases, {} outputs compared, {} differ",
            cases.len(),
            tally.compared,
            tally.failures.len()
        ));
        failures.extend(tally.failures.into_iter().map(|f| format!("{name} {f}")));
    }
    eprintln!("{}", summary.join("\n"));
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn greedy_matches_transformers() {
    generate_parity(|name| name.starts_with("greedy"));
}

#[test]
fn beam_search_matches_transformers() {
    generate_parity(|name| name.starts_with("beam"));
}

#[test]
fn every_golden_case_is_greedy_or_beam() {
    for name in golden_models("generate") {
        let golden: GenerateGolden =
            read_json(&fixtures().join(format!("goldens/generate-{name}.json")));
        assert!(!golden.cases.is_empty(), "{name}: no cases");
        for case in &golden.cases {
            assert!(
                case.name.starts_with("greedy") || case.name.starts_with("beam"),
                "{name}: case {} would not run",
                case.name
            );
        }
    }
}
