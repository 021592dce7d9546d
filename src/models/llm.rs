//! Decoder-only language models behind one small trait, and the table of architectures this
//! build runs. Adding one (Llama, Qwen3) is a model file that exports an [`Architecture`] and
//! one line in [`ARCHITECTURES`]: file resolution, loading from safetensors or GGUF, device
//! and dtype selection and generation all go through this module.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::gguf::{GgufFile, GgufMeta};
use super::layers::{Embed, Proj, Weights};
use super::ResolvedModel;
use crate::error::{Error, Result};

/// A causal language model with its KV cache.
pub trait CausalLm: Send {
    /// Run `tokens` at positions `offset..offset + tokens.len()`, appending them to the KV
    /// cache, which must hold exactly `offset` positions. Returns the f32 logits of the last
    /// position, `[1, vocab]`.
    fn forward(&mut self, tokens: &[u32], offset: usize) -> candle_core::Result<Tensor>;
    /// Empty the KV cache (all layers).
    fn reset(&mut self);
    /// How many positions the KV cache holds.
    fn cached_len(&self) -> usize;
    fn info(&self) -> &LlmInfo;
    fn info_mut(&mut self) -> &mut LlmInfo;

    /// Feed a long prompt in chunks of at most `chunk` tokens, so that attention scores stay
    /// `chunk × context` rather than `context²`. Returns the logits after the last token.
    fn prefill(
        &mut self,
        tokens: &[u32],
        offset: usize,
        chunk: usize,
    ) -> candle_core::Result<Tensor> {
        let mut logits = None;
        let mut pos = offset;
        for part in tokens.chunks(chunk.max(1)) {
            logits = Some(self.forward(part, pos)?);
            pos += part.len();
        }
        logits.ok_or_else(|| candle_core::Error::Msg("prefill of an empty prompt".into()))
    }
}

/// What a loaded model is, for logs, limits and reports.
#[derive(Debug, Clone)]
pub struct LlmInfo {
    pub architecture: &'static str,
    /// Rows of the output layer (may exceed the tokenizer's ids: padding rows).
    pub vocab_size: usize,
    /// Positions the model was trained for.
    pub context_length: usize,
    pub device: Device,
    /// The activation dtype.
    pub dtype: DType,
    /// The weights as loaded, e.g. `safetensors f32` or `GGUF Q4K`.
    pub weights: String,
}

/// Why a model could not be built from its files.
#[derive(Debug)]
pub enum LoadError {
    /// The configuration is invalid or incomplete.
    Config(String),
    /// Valid, but asks for something this implementation does not do.
    Unsupported(String),
    /// Reading or checking a tensor failed.
    Tensor(candle_core::Error),
}

impl From<candle_core::Error> for LoadError {
    fn from(e: candle_core::Error) -> LoadError {
        LoadError::Tensor(e)
    }
}

/// What building a model from its files gives.
pub type Built = std::result::Result<Box<dyn CausalLm>, LoadError>;

/// An architecture this build runs, by its `model_type` / GGUF `general.architecture`.
pub struct Architecture {
    pub name: &'static str,
    /// From config.json and dense weights (safetensors).
    pub from_config: fn(&serde_json::Value, &mut dyn Weights) -> Built,
    /// From GGUF metadata and tensors.
    pub from_gguf: fn(&GgufMeta, &mut dyn Weights) -> Built,
}

/// The architectures this build runs.
pub const ARCHITECTURES: &[Architecture] = &[super::qwen2::ARCHITECTURE];

pub fn architecture(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

pub fn architecture_names() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.name).collect()
}

/// A causal LM driven by the shared search (`generate::StepDecoder`), one row. The whole
/// prompt is read at construction, in chunks; the search then feeds the prompt's last token
/// (whose logits are already there) and each token it takes, one per step.
pub struct LlmDecoder<'a> {
    lm: &'a mut dyn CausalLm,
    /// Logits after the prompt, for the search's first step.
    pending: Option<Tensor>,
    /// Told each generated token as the search feeds it back (for streaming).
    on_token: Option<&'a mut dyn FnMut(u32)>,
    fed: usize,
}

fn inference(e: candle_core::Error) -> Error {
    Error::Inference {
        what: "the language model failed".into(),
        source: e,
    }
}

impl<'a> LlmDecoder<'a> {
    /// Reset the model's cache and read `prompt`, `chunk` tokens at a time.
    pub fn new(
        lm: &'a mut dyn CausalLm,
        prompt: &[u32],
        chunk: usize,
        on_token: Option<&'a mut dyn FnMut(u32)>,
    ) -> Result<LlmDecoder<'a>> {
        if prompt.is_empty() {
            return Err(Error::Usage("the prompt is empty".into()));
        }
        lm.reset();
        let pending = Some(lm.prefill(prompt, 0, chunk).map_err(inference)?);
        Ok(LlmDecoder {
            lm,
            pending,
            on_token,
            fed: 0,
        })
    }

    /// How many generated tokens the search has fed back (all it took but the last).
    pub fn fed(&self) -> usize {
        self.fed
    }
}

impl crate::generate::StepDecoder for LlmDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let &[token] = tokens else {
            return Err(Error::Unsupported {
                what: format!(
                    "a causal language model decodes one sequence at a time, not {}",
                    tokens.len()
                ),
            });
        };
        if let Some(logits) = self.pending.take() {
            return Ok(logits);
        }
        if let Some(tell) = self.on_token.as_deref_mut() {
            tell(token);
        }
        self.fed += 1;
        let position = self.lm.cached_len();
        self.lm.forward(&[token], position).map_err(inference)
    }

    fn select(&mut self, rows: &[u32]) -> Result<()> {
        match rows {
            [] | [0] => Ok(()),
            _ => Err(Error::Unsupported {
                what: "beam search over a causal language model is not supported: \
                       decode greedily or sample"
                    .into(),
            }),
        }
    }
}

/// The GGUF file of a resolved model, if it has one.
pub fn gguf_file(model: &ResolvedModel) -> Option<&Path> {
    model
        .files
        .iter()
        .find(|(name, _)| name.ends_with(".gguf"))
        .map(|(_, path)| path.as_path())
}

/// Build a resolved model's network on `device`: from its GGUF file when it has one, else
/// from config.json and safetensors in `dtype`.
pub fn load(model: &ResolvedModel, device: &Device, dtype: DType) -> Result<Box<dyn CausalLm>> {
    let arch = architecture(&model.architecture).ok_or_else(|| Error::Unsupported {
        what: format!(
            "{}: architecture '{}' has no language-model implementation in this build \
             (precis runs: {})",
            model.name,
            model.architecture,
            architecture_names().join(", ")
        ),
    })?;
    match gguf_file(model) {
        Some(path) => load_gguf(arch, path, device),
        None => load_safetensors(arch, model, device, dtype),
    }
}

fn load_error(path: &Path, e: LoadError) -> Error {
    match e {
        LoadError::Config(what) => Error::ModelFile {
            path: path.to_path_buf(),
            what,
            source: None,
        },
        LoadError::Unsupported(what) => Error::Unsupported {
            what: format!("{}: {what}", path.display()),
        },
        LoadError::Tensor(source) => Error::ModelFile {
            path: path.to_path_buf(),
            what: "cannot load the weights".into(),
            source: Some(Box::new(source)),
        },
    }
}

fn load_gguf(arch: &Architecture, path: &Path, device: &Device) -> Result<Box<dyn CausalLm>> {
    let gguf = GgufFile::open(path)?;
    let label = format!(
        "GGUF {}",
        gguf.weight_type()
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|| "?".into())
    );
    let (meta, mut weights) = gguf.into_parts(device);
    let mut lm = (arch.from_gguf)(&meta, &mut weights).map_err(|e| load_error(path, e))?;
    lm.info_mut().weights = label;
    Ok(lm)
}

fn load_safetensors(
    arch: &Architecture,
    model: &ResolvedModel,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn CausalLm>> {
    let config_path = model
        .file("config.json")
        .ok_or_else(|| Error::ModelFolder {
            path: PathBuf::from(&model.name),
            problem: "no config.json".into(),
        })?;
    let text = std::fs::read_to_string(config_path).map_err(|source| Error::Io {
        path: config_path.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::ModelFile {
        path: config_path.to_path_buf(),
        what: "not valid JSON".into(),
        source: Some(Box::new(e)),
    })?;
    let shards = safetensors_files(model)?;
    let first = shards[0].clone();
    // SAFETY: the files are memory-mapped read-only; precis does not write them while
    // running, and their headers were checked when the model was resolved.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&shards, dtype, device) }
        .map_err(|e| load_error(&first, e.into()))?;
    let mut weights = SafetensorsWeights { vb };
    let mut lm = (arch.from_config)(&json, &mut weights).map_err(|e| match e {
        LoadError::Tensor(_) => load_error(&first, e),
        other => load_error(config_path, other),
    })?;
    lm.info_mut().weights = format!("safetensors {dtype:?}").to_lowercase();
    Ok(lm)
}

/// `model.safetensors`, or the shards an index names (beside it).
fn safetensors_files(model: &ResolvedModel) -> Result<Vec<PathBuf>> {
    if let Some(path) = model.file("model.safetensors") {
        return Ok(vec![path.to_path_buf()]);
    }
    let index = model
        .file("model.safetensors.index.json")
        .ok_or_else(|| Error::ModelFolder {
            path: PathBuf::from(&model.name),
            problem: "no weights: expected model.safetensors or a .gguf file".into(),
        })?;
    let bad = |what: String| Error::ModelFile {
        path: index.to_path_buf(),
        what,
        source: None,
    };
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index).map_err(|source| Error::Io {
            path: index.to_path_buf(),
            source,
        })?)
        .map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let mut names: Vec<&str> = json["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no weight_map".into()))?
        .values()
        .filter_map(|v| v.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let dir = index.parent().unwrap_or(Path::new("."));
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            match path.is_file() {
                true => Ok(path),
                false => Err(bad(format!("the shard {name} it names is missing"))),
            }
        })
        .collect()
}

/// Dense weights from safetensors, by their Hugging Face names.
struct SafetensorsWeights {
    vb: VarBuilder<'static>,
}

impl Weights for SafetensorsWeights {
    fn device(&self) -> &Device {
        self.vb.device()
    }

    fn dtype(&self) -> DType {
        self.vb.dtype()
    }

    fn linear(
        &mut self,
        name: &str,
        out_dim: usize,
        in_dim: usize,
        bias: bool,
    ) -> candle_core::Result<Proj> {
        let weight = self.vb.get((out_dim, in_dim), &format!("{name}.weight"))?;
        let bias = match bias {
            true => Some(self.vb.get(out_dim, &format!("{name}.bias"))?),
            false => None,
        };
        Ok(Proj::Dense(candle_nn::Linear::new(weight, bias)))
    }

    fn vector(&mut self, name: &str, dim: usize) -> candle_core::Result<Tensor> {
        self.vb.get(dim, &format!("{name}.weight"))
    }

    fn embedding(&mut self, name: &str, vocab: usize, hidden: usize) -> candle_core::Result<Embed> {
        Ok(Embed::Dense(
            self.vb.get((vocab, hidden), &format!("{name}.weight"))?,
        ))
    }
}
