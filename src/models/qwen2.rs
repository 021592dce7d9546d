//! Qwen2 / Qwen2.5 decoder (transformers' `Qwen2ForCausalLM`): RMS norm, NeoX rotary
//! positions, attention with q/k/v biases and grouped-query heads, SiLU-gated MLP, embeddings
//! usually tied to the output. One forward pass for both weight formats: `Config` comes from
//! config.json here or from GGUF metadata (`qwen2_gguf.rs`), tensors from a [`Weights`] source.

use candle_core::{DType, Module, Result, Tensor};
use serde::Deserialize;

use super::gguf::GgufMeta;
use super::layers::{self, Attention, Embed, GatedMlp, Proj, RmsNorm, Rotary, Weights};
use super::llm::{Architecture, Built, CausalLm, LlmInfo, LoadError};

/// The registration of this architecture (see `llm::ARCHITECTURES`).
pub const ARCHITECTURE: Architecture = Architecture {
    name: "qwen2",
    from_config,
    from_gguf,
};

/// What loading returns.
type Loaded<T> = std::result::Result<T, LoadError>;

fn from_config(json: &serde_json::Value, weights: &mut dyn Weights) -> Built {
    let config = Config::from_json(json)?;
    Ok(Box::new(Qwen2::new(&config, weights)?))
}

fn from_gguf(meta: &GgufMeta, weights: &mut dyn Weights) -> Built {
    let config = super::qwen2_gguf::config(meta)?;
    Ok(Box::new(Qwen2::new(&config, weights)?))
}

fn default_max_position_embeddings() -> usize {
    32768
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_hidden_act() -> String {
    "silu".into()
}

/// The fields of config.json this implementation reads, with transformers' `Qwen2Config`
/// defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// transformers ≥ 5 may write `rope_parameters: {rope_type, rope_theta}` instead.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_sliding_window: bool,
}

impl Config {
    /// Parse and check config.json: what this implementation cannot run is refused here.
    pub fn from_json(json: &serde_json::Value) -> Loaded<Config> {
        let mut config: Config = serde_json::from_value(json.clone())
            .map_err(|e| LoadError::Config(format!("not a Qwen2 config: {e}")))?;
        if let Some(theta) = config
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|t| t.as_f64())
        {
            config.rope_theta = theta;
        }
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> Loaded<()> {
        let rope_type = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .filter(|v| !v.is_null())
                .map(|v| {
                    v.get("rope_type")
                        .or_else(|| v.get("type"))
                        .and_then(|t| t.as_str())
                        .unwrap_or("unknown")
                        .to_string()
                })
                .filter(|t| t != "default")
        };
        if let Some(kind) = rope_type(&self.rope_scaling).or(rope_type(&self.rope_parameters)) {
            return Err(LoadError::Unsupported(format!(
                "rope scaling '{kind}' is not supported (only the default rotary embedding)"
            )));
        }
        if self.hidden_act != "silu" {
            return Err(LoadError::Unsupported(format!(
                "hidden_act '{}' is not supported (only silu)",
                self.hidden_act
            )));
        }
        if self.use_sliding_window {
            return Err(LoadError::Unsupported(
                "sliding-window attention (use_sliding_window: true) is not supported".into(),
            ));
        }
        let kv = self.kv_heads();
        if self.num_attention_heads == 0 || kv == 0 || !self.num_attention_heads.is_multiple_of(kv)
        {
            return Err(LoadError::Config(format!(
                "{} attention heads cannot be grouped over {kv} key/value heads",
                self.num_attention_heads
            )));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return Err(LoadError::Config(format!(
                "head dimension {} is not even",
                self.head_dim()
            )));
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
}

impl DecoderLayer {
    fn new(cfg: &Config, w: &mut dyn Weights, i: usize) -> Result<DecoderLayer> {
        let p = format!("model.layers.{i}");
        let (hidden, d) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let attn = |w: &mut dyn Weights, name: &str, out: usize, inp: usize, bias| {
            w.linear(&format!("{p}.self_attn.{name}"), out, inp, bias)
        };
        let self_attn = Attention::new(
            [
                attn(w, "q_proj", h * d, hidden, true)?,
                attn(w, "k_proj", kv * d, hidden, true)?,
                attn(w, "v_proj", kv * d, hidden, true)?,
                attn(w, "o_proj", hidden, h * d, false)?,
            ],
            h,
            kv,
            d,
        );
        let inter = cfg.intermediate_size;
        let mlp = GatedMlp {
            gate_proj: w.linear(&format!("{p}.mlp.gate_proj"), inter, hidden, false)?,
            up_proj: w.linear(&format!("{p}.mlp.up_proj"), inter, hidden, false)?,
            down_proj: w.linear(&format!("{p}.mlp.down_proj"), hidden, inter, false)?,
        };
        let norm = |w: &mut dyn Weights, name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                w.vector(&format!("{p}.{name}"), hidden)?,
                cfg.rms_norm_eps,
            ))
        };
        Ok(DecoderLayer {
            input_layernorm: norm(w, "input_layernorm")?,
            self_attn,
            post_attention_layernorm: norm(w, "post_attention_layernorm")?,
            mlp,
        })
    }

    fn forward(
        &mut self,
        xs: &Tensor,
        rotary: &Rotary,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(xs)?;
        let xs = (xs + self.self_attn.forward(&h, rotary, cos_sin, mask)?)?;
        let h = self.post_attention_layernorm.forward(&xs)?;
        xs + self.mlp.forward(&h)?
    }
}

/// A Qwen2 causal language model with its KV cache.
#[derive(Debug, Clone)]
pub struct Qwen2 {
    embed_tokens: Embed,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Proj,
    rotary: Rotary,
    /// Query heads per key/value head (grouped-query attention).
    heads_per_kv: usize,
    info: LlmInfo,
}

impl Qwen2 {
    pub fn new(cfg: &Config, w: &mut dyn Weights) -> Result<Qwen2> {
        let (device, dtype) = (w.device().clone(), w.dtype());
        let embed_tokens = w.embedding("model.embed_tokens", cfg.vocab_size, cfg.hidden_size)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, w, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(w.vector("model.norm", cfg.hidden_size)?, cfg.rms_norm_eps);
        let lm_head = match cfg.tie_word_embeddings {
            true => Proj::tied(&embed_tokens)?,
            false => w.linear("lm_head", cfg.vocab_size, cfg.hidden_size, false)?,
        };
        Ok(Qwen2 {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: Rotary::new(cfg.head_dim(), cfg.rope_theta, &device, dtype),
            heads_per_kv: cfg.num_attention_heads / cfg.kv_heads(),
            info: LlmInfo {
                architecture: ARCHITECTURE.name,
                vocab_size: cfg.vocab_size,
                context_length: cfg.max_position_embeddings,
                device,
                dtype,
                weights: String::new(),
            },
        })
    }
}

impl CausalLm for Qwen2 {
    fn forward(&mut self, tokens: &[u32], offset: usize) -> Result<Tensor> {
        let cached = self.cached_len();
        if offset != cached {
            candle_core::bail!("forward at position {offset}, but the KV cache holds {cached}");
        }
        if tokens.is_empty() {
            candle_core::bail!("forward needs at least one token");
        }
        let (device, dtype) = (&self.info.device, self.info.dtype);
        let len = tokens.len();
        let ids = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let mut xs = self.embed_tokens.forward(&ids, dtype)?;
        let cos_sin = self.rotary.at(offset, len)?;
        let rep = self.heads_per_kv;
        let mask = match len {
            1 => None,
            _ => Some(layers::causal_mask(offset, len, rep, device, dtype)?),
        };
        for layer in &mut self.layers {
            xs = layer.forward(&xs, &self.rotary, &cos_sin, mask.as_ref())?;
        }
        // Only the last position's logits are needed: norm and project that row alone.
        let last = layers::last_position(&xs)?;
        let logits = self.lm_head.forward(&self.norm.forward(&last)?)?;
        logits.to_dtype(DType::F32)
    }

    fn reset(&mut self) {
        for layer in &mut self.layers {
            layer.self_attn.reset();
        }
    }

    fn cached_len(&self) -> usize {
        self.layers
            .first()
            .map(|l| l.self_attn.cached_len())
            .unwrap_or(0)
    }

    fn info(&self) -> &LlmInfo {
        &self.info
    }

    fn info_mut(&mut self) -> &mut LlmInfo {
        &mut self.info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    const BASE: &str = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1"#;

    #[test]
    fn defaults_follow_transformers() {
        let c = Config::from_json(&json(&format!("{BASE}}}"))).unwrap();
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.rms_norm_eps, 1e-6);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.head_dim(), 4);
        assert_eq!(c.kv_heads(), 1);
    }

    #[test]
    fn rope_parameters_of_transformers_5_are_read() {
        let c = Config::from_json(&json(&format!(
            r#"{BASE}, "rope_parameters": {{"rope_type": "default", "rope_theta": 1000000.0}}}}"#
        )))
        .unwrap();
        assert_eq!(c.rope_theta, 1e6);
    }

    #[test]
    fn what_is_not_implemented_is_refused() {
        for extra in [
            r#""rope_scaling": {"type": "yarn", "factor": 4.0}"#,
            r#""hidden_act": "gelu""#,
            r#""use_sliding_window": true"#,
        ] {
            let err = Config::from_json(&json(&format!("{BASE}, {extra}}}"))).unwrap_err();
            assert!(matches!(err, LoadError::Unsupported(_)), "{extra}: {err:?}");
        }
        let err = Config::from_json(&json(r#"{"hidden_size": 8}"#)).unwrap_err();
        assert!(matches!(err, LoadError::Config(_)));
    }
}
