//! Results as plain data: what each engine produced, with the models and timings that make
//! it reproducible; `output` renders them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::cli::{Engine, SummaryLang};

/// Why generation stopped: the model ended the text, or the length limit cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    Eos,
    Length,
}

/// Wall-clock timings of a run's stages, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Timings(BTreeMap<String, f64>);

impl Timings {
    /// Record the time since `start` under `stage`.
    pub fn record(&mut self, stage: &str, start: Instant) {
        self.set(stage, start.elapsed().as_secs_f64() * 1000.0);
    }

    /// Record `ms` milliseconds under `stage`.
    pub fn set(&mut self, stage: &str, ms: f64) {
        self.0
            .insert(format!("{stage}_ms"), (ms * 1000.0).round() / 1000.0);
    }

    /// Another report's timings added to these.
    pub fn merge(&mut self, other: &Timings) {
        self.0.extend(other.0.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

/// A bullet summary of one article.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryReport {
    /// The article it summarizes (a path, or `<stdin>`).
    pub input: String,
    pub bullets: Vec<String>,
    pub language: SummaryLang,
    pub engine: Engine,
    /// `repo@commit` of the model, or null for the model-free engine.
    pub model: Option<String>,
    /// The engine's raw text (for the extractive engine: the picked sentences, one a line).
    pub raw: String,
    pub stop: Stop,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub timings: Timings,
    /// Lines removed from the article as boilerplate before summarizing.
    pub removed: Vec<String>,
}
