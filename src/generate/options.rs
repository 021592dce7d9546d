//! Decode options: [`GenerationSettings`] is what a `generation_config.json`, a manifest's
//! `[generation]` table or the command line says (every key optional, transformers' names);
//! [`GenerateOptions`] is the one validated result the searches read, with transformers'
//! global defaults filled in.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models::ResolvedModel;

/// A token id or a list of them, as transformers' configs allow for `eos_token_id` and
/// `forced_eos_token_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// When beam search stops working on a sentence (transformers' `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawEarlyStopping")]
pub enum EarlyStopping {
    /// `false`: once it has `num_beams` finished hypotheses and the best running beam, scored
    /// at its current length, cannot beat the worst of them.
    Heuristic,
    /// `true`: as soon as it has `num_beams` finished hypotheses.
    Done,
    /// `"never"`: as `false`, but with a positive length penalty the running beam is scored at
    /// `max_length`, so the search only stops when no better hypothesis is possible.
    Never,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEarlyStopping {
    Bool(bool),
    Text(String),
}

impl TryFrom<RawEarlyStopping> for EarlyStopping {
    type Error = String;

    fn try_from(raw: RawEarlyStopping) -> std::result::Result<EarlyStopping, String> {
        match raw {
            RawEarlyStopping::Bool(false) => Ok(EarlyStopping::Heuristic),
            RawEarlyStopping::Bool(true) => Ok(EarlyStopping::Done),
            RawEarlyStopping::Text(t) if t == "never" => Ok(EarlyStopping::Never),
            RawEarlyStopping::Text(t) => Err(format!(
                "early_stopping must be true, false or \"never\", not \"{t}\""
            )),
        }
    }
}

impl std::str::FromStr for EarlyStopping {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<EarlyStopping, String> {
        match s {
            "false" => Ok(EarlyStopping::Heuristic),
            "true" => Ok(EarlyStopping::Done),
            "never" => Ok(EarlyStopping::Never),
            other => Err(format!(
                "early_stopping must be true, false or never, not '{other}'"
            )),
        }
    }
}

/// Generation settings as written in a `generation_config.json` (or a `config.json` without
/// one), a manifest, or given as overrides: every key optional; unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct GenerationSettings {
    pub num_beams: Option<usize>,
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub min_length: Option<usize>,
    pub length_penalty: Option<f64>,
    pub early_stopping: Option<EarlyStopping>,
    pub no_repeat_ngram_size: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    pub forced_eos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub decoder_start_token_id: Option<u32>,
    pub renormalize_logits: Option<bool>,
    pub num_return_sequences: Option<usize>,
    pub do_sample: Option<bool>,
    /// Sampling: scores are divided by this before top-k and top-p.
    pub temperature: Option<f64>,
    /// Sampling: keep the k most likely tokens (0: off).
    pub top_k: Option<usize>,
    /// Sampling: keep the smallest set of most likely tokens whose probability reaches p.
    pub top_p: Option<f64>,
    /// Sampling: the seed of the random draws (not a transformers key: its draws come from
    /// torch's global generator).
    pub seed: Option<u64>,
}

impl GenerationSettings {
    pub fn from_json_file(path: &Path) -> Result<GenerationSettings> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "invalid generation settings".into(),
            source: Some(Box::new(e)),
        })
    }

    /// A manifest's `[generation]` table.
    pub fn from_toml(
        table: &toml::Table,
    ) -> std::result::Result<GenerationSettings, toml::de::Error> {
        table.clone().try_into()
    }

    /// The model's own settings: `generation_config.json`, or, like transformers, the same keys
    /// in `config.json` when it has none.
    pub fn for_model(model: &ResolvedModel) -> Result<GenerationSettings> {
        match model
            .file("generation_config.json")
            .or_else(|| model.file("config.json"))
        {
            Some(path) => GenerationSettings::from_json_file(path),
            None => Ok(GenerationSettings::default()),
        }
    }

    /// These settings with every key that `over` sets replaced.
    pub fn layer(&self, over: &GenerationSettings) -> GenerationSettings {
        macro_rules! pick {
            ($($f:ident),*) => {
                GenerationSettings { $($f: over.$f.clone().or_else(|| self.$f.clone())),* }
            };
        }
        pick!(
            num_beams,
            max_length,
            max_new_tokens,
            min_length,
            length_penalty,
            early_stopping,
            no_repeat_ngram_size,
            repetition_penalty,
            bad_words_ids,
            forced_eos_token_id,
            eos_token_id,
            pad_token_id,
            bos_token_id,
            decoder_start_token_id,
            renormalize_logits,
            num_return_sequences,
            do_sample,
            temperature,
            top_k,
            top_p,
            seed
        )
    }
}

/// transformers' default of 20 new tokens when neither max_length nor max_new_tokens is set.
const DEFAULT_MAX_NEW_TOKENS: usize = 20;

/// transformers' `GenerationConfig` defaults for sampling.
const DEFAULT_TEMPERATURE: f64 = 1.0;
const DEFAULT_TOP_K: usize = 50;
const DEFAULT_TOP_P: f64 = 1.0;

/// How to draw tokens when sampling (`do_sample`), after the logits processors: the
/// temperature, then top-k, then top-p, as transformers' warpers, then a seeded draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    /// 0: no top-k filter.
    pub top_k: usize,
    /// 1: no top-p filter.
    pub top_p: f64,
    pub seed: u64,
}

/// The validated decode options the searches read.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// 1: greedy; more: beam search with this many hypotheses per sentence.
    pub num_beams: usize,
    /// Longest output, counting the prefix (the decoder start token), as in transformers.
    pub max_length: usize,
    /// When set, wins over `max_length`: at most this many tokens after the prefix.
    pub max_new_tokens: Option<usize>,
    /// EOS is banned while the sequence (prefix included) is shorter than this.
    pub min_length: usize,
    /// Beam scores are sum_logprobs / generated_len^length_penalty.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    /// No n-gram of this size occurs twice (0: off).
    pub no_repeat_ngram_size: usize,
    /// Scores of tokens already in the sequence are divided (positive) or multiplied
    /// (negative) by this (1: off).
    pub repetition_penalty: f32,
    /// Sequences that must not be generated (EOS alone is never banned).
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Forced as the last token when the sequence reaches `max_length` - 1.
    pub forced_eos_token_id: Vec<u32>,
    /// Tokens that end a sequence.
    pub eos_token_id: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The decoder's first token (`decoder_start_token_id`, else `bos_token_id`).
    pub decoder_start_token_id: Option<u32>,
    /// Log-softmax the scores again after the processors (`renormalize_logits`).
    pub renormalize_logits: bool,
    /// Draw tokens instead of taking the most likely (`do_sample`); greedy search only.
    pub sampling: Option<Sampling>,
}

impl GenerateOptions {
    /// Fill transformers' defaults into `settings` and check them.
    pub fn new(s: &GenerationSettings) -> std::result::Result<GenerateOptions, String> {
        let max_new_tokens = match (s.max_new_tokens, s.max_length) {
            (None, None) => Some(DEFAULT_MAX_NEW_TOKENS),
            (n, _) => n,
        };
        let options = GenerateOptions {
            num_beams: s.num_beams.unwrap_or(1),
            max_length: s.max_length.unwrap_or(DEFAULT_MAX_NEW_TOKENS + 1),
            max_new_tokens,
            min_length: s.min_length.unwrap_or(0),
            length_penalty: s.length_penalty.unwrap_or(1.0),
            early_stopping: s.early_stopping.unwrap_or(EarlyStopping::Heuristic),
            no_repeat_ngram_size: s.no_repeat_ngram_size.unwrap_or(0),
            repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
            bad_words_ids: s.bad_words_ids.clone().unwrap_or_default(),
            forced_eos_token_id: s
                .forced_eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            eos_token_id: s
                .eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            pad_token_id: s.pad_token_id,
            decoder_start_token_id: s.decoder_start_token_id.or(s.bos_token_id),
            renormalize_logits: s.renormalize_logits.unwrap_or(false),
            sampling: match s.do_sample {
                Some(true) => Some(Sampling {
                    temperature: s.temperature.unwrap_or(DEFAULT_TEMPERATURE),
                    top_k: s.top_k.unwrap_or(DEFAULT_TOP_K),
                    top_p: s.top_p.unwrap_or(DEFAULT_TOP_P),
                    seed: s.seed.unwrap_or(0),
                }),
                _ => None,
            },
        };
        check_unsupported(s)?;
        options.check()?;
        Ok(options)
    }

    /// A model's own settings, then `overrides` (e.g. from the command line) on top.
    pub fn for_model(
        model: &ResolvedModel,
        overrides: &GenerationSettings,
    ) -> Result<GenerateOptions> {
        let own = GenerationSettings::for_model(model)?;
        GenerateOptions::new(&own).map_err(|what| Error::ModelFile {
            path: model
                .file("generation_config.json")
                .or_else(|| model.file("config.json"))
                .map(Path::to_path_buf)
                .unwrap_or_else(|| model.name.clone().into()),
            what,
            source: None,
        })?;
        GenerateOptions::new(&own.layer(overrides)).map_err(Error::Usage)
    }

    /// The length limit for prefixes of `prefix_len` tokens.
    pub fn max_length_for(&self, prefix_len: usize) -> usize {
        self.max_new_tokens
            .map_or(self.max_length, |n| n + prefix_len)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.num_beams == 0 {
            return Err("num_beams must be at least 1".into());
        }
        if self.max_length == 0 || self.max_new_tokens == Some(0) {
            return Err("max_length and max_new_tokens must be at least 1".into());
        }
        if !self.length_penalty.is_finite() {
            return Err(format!(
                "length_penalty must be a number, not {}",
                self.length_penalty
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(format!(
                "repetition_penalty must be a positive number (1 is off), not {}",
                self.repetition_penalty
            ));
        }
        if self.bad_words_ids.iter().any(Vec::is_empty) {
            return Err("bad_words_ids must not hold an empty sequence".into());
        }
        if let Some(sampling) = &self.sampling {
            if !(sampling.temperature.is_finite() && sampling.temperature > 0.0) {
                return Err(format!(
                    "temperature must be a positive number when sampling, not {}",
                    sampling.temperature
                ));
            }
            if !(sampling.top_p > 0.0 && sampling.top_p <= 1.0) {
                return Err(format!("top_p must be in (0, 1], not {}", sampling.top_p));
            }
        }
        Ok(())
    }
}

/// Settings that transformers honours but these searches do not: refuse rather than ignore.
fn check_unsupported(s: &GenerationSettings) -> std::result::Result<(), String> {
    if s.num_return_sequences.is_some_and(|n| n != 1) {
        return Err("num_return_sequences other than 1 is not supported".into());
    }
    if s.do_sample == Some(true) && s.num_beams.is_some_and(|n| n > 1) {
        return Err(
            "beam sampling (do_sample with num_beams above 1) is not supported: \
                    sample with num_beams 1, or search beams without do_sample"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_opus_mt_generation_config() {
        let json = r#"{"bad_words_ids": [[59513]], "bos_token_id": 0, "decoder_start_token_id": 59513,
            "eos_token_id": 0, "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4,
            "pad_token_id": 59513, "renormalize_logits": true, "transformers_version": "4.32.0"}"#;
        let s: GenerationSettings = serde_json::from_str(json).unwrap();
        let o = GenerateOptions::new(&s).unwrap();
        assert_eq!(o.num_beams, 4);
        assert_eq!(o.max_length_for(1), 512);
        assert_eq!(o.bad_words_ids, vec![vec![59513]]);
        assert_eq!(o.eos_token_id, vec![0]);
        assert_eq!(o.forced_eos_token_id, vec![0]);
        assert_eq!(o.decoder_start_token_id, Some(59513));
        assert!(o.renormalize_logits);
        assert_eq!(o.early_stopping, EarlyStopping::Heuristic);
        assert_eq!(o.length_penalty, 1.0);
    }

    #[test]
    fn defaults_are_transformers_defaults() {
        let o = GenerateOptions::new(&GenerationSettings::default()).unwrap();
        assert_eq!(o.num_beams, 1);
        assert_eq!(o.max_length_for(1), 21);
        assert_eq!(o.repetition_penalty, 1.0);
        assert!(!o.renormalize_logits);
    }

    #[test]
    fn overrides_win_and_max_new_tokens_counts_after_the_prefix() {
        let base = GenerationSettings {
            num_beams: Some(4),
            max_length: Some(512),
            ..Default::default()
        };
        let over = GenerationSettings {
            num_beams: Some(1),
            max_new_tokens: Some(10),
            early_stopping: Some("never".parse().unwrap()),
            ..Default::default()
        };
        let o = GenerateOptions::new(&base.layer(&over)).unwrap();
        assert_eq!(o.num_beams, 1);
        assert_eq!(o.max_length_for(1), 11);
        assert_eq!(o.early_stopping, EarlyStopping::Never);
    }

    #[test]
    fn sampling_takes_transformers_defaults() {
        let json = r#"{"do_sample": true, "temperature": 0.7, "top_p": 0.8}"#;
        let s: GenerationSettings = serde_json::from_str(json).unwrap();
        let o = GenerateOptions::new(&s).unwrap();
        assert_eq!(
            o.sampling,
            Some(Sampling {
                temperature: 0.7,
                top_k: 50,
                top_p: 0.8,
                seed: 0
            })
        );
        let greedy: GenerationSettings = serde_json::from_str(r#"{"temperature": 0.7}"#).unwrap();
        assert_eq!(GenerateOptions::new(&greedy).unwrap().sampling, None);
    }

    #[test]
    fn early_stopping_reads_bool_or_never() {
        let read = |v: &str| {
            serde_json::from_str::<GenerationSettings>(&format!(r#"{{"early_stopping": {v}}}"#))
                .map(|s| s.early_stopping)
        };
        assert_eq!(read("true").unwrap(), Some(EarlyStopping::Done));
        assert_eq!(read("false").unwrap(), Some(EarlyStopping::Heuristic));
        assert_eq!(read("\"never\"").unwrap(), Some(EarlyStopping::Never));
        assert!(read("\"sometimes\"").is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            GenerationSettings {
                num_beams: Some(0),
                ..Default::default()
            },
            GenerationSettings {
                repetition_penalty: Some(0.0),
                ..Default::default()
            },
            GenerationSettings {
                bad_words_ids: Some(vec![vec![]]),
                ..Default::default()
            },
            GenerationSettings {
                num_return_sequences: Some(2),
                ..Default::default()
            },
            GenerationSettings {
                do_sample: Some(true),
                num_beams: Some(4),
                ..Default::default()
            },
            GenerationSettings {
                do_sample: Some(true),
                temperature: Some(0.0),
                ..Default::default()
            },
            GenerationSettings {
                do_sample: Some(true),
                top_p: Some(1.5),
                ..Default::default()
            },
        ] {
            assert!(GenerateOptions::new(&bad).is_err(), "{bad:?}");
        }
    }

    fn model_with(files: &[(&str, &str)]) -> (tempfile::TempDir, ResolvedModel) {
        let dir = tempfile::tempdir().unwrap();
        let mut map = std::collections::BTreeMap::new();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
            map.insert(name.to_string(), dir.path().join(name));
        }
        let model = ResolvedModel {
            name: "m".into(),
            id: "local".into(),
            architecture: "marian".into(),
            files: map,
            generation: Default::default(),
        };
        (dir, model)
    }

    #[test]
    fn model_settings_come_from_generation_config_else_config() {
        let (_d, model) = model_with(&[
            ("config.json", r#"{"num_beams": 6, "max_length": 100}"#),
            ("generation_config.json", r#"{"num_beams": 4}"#),
        ]);
        let o = GenerateOptions::for_model(&model, &GenerationSettings::default()).unwrap();
        assert_eq!(
            (o.num_beams, o.max_length_for(1)),
            (4, 21),
            "config.json is not mixed in"
        );
        let (_d, model) = model_with(&[("config.json", r#"{"num_beams": 6, "max_length": 100}"#)]);
        let o = GenerateOptions::for_model(&model, &GenerationSettings::default()).unwrap();
        assert_eq!((o.num_beams, o.max_length_for(1)), (6, 100));
    }

    #[test]
    fn bad_model_settings_and_bad_overrides_are_told_apart() {
        let (_d, model) = model_with(&[("generation_config.json", r#"{"num_beams": 0}"#)]);
        let err = GenerateOptions::for_model(&model, &GenerationSettings::default()).unwrap_err();
        assert_eq!(err.exit_code(), 9, "{err}");
        let (_d, model) = model_with(&[("generation_config.json", r#"{"num_beams": 4}"#)]);
        let over = GenerationSettings {
            repetition_penalty: Some(-1.0),
            ..Default::default()
        };
        let err = GenerateOptions::for_model(&model, &over).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("repetition_penalty"), "{err}");
    }

    #[test]
    fn manifest_table_reads() {
        let table: toml::Table = toml::from_str("num_beams = 4\nmax_length = 512\n").unwrap();
        let s = GenerationSettings::from_toml(&table).unwrap();
        assert_eq!(s.num_beams, Some(4));
        assert_eq!(s.max_length, Some(512));
    }
}
