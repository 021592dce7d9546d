//! Qwen2 from GGUF: the `qwen2.*` metadata keys that llama.cpp's `convert_hf_to_gguf.py`
//! writes, read into the same [`Config`] as config.json. The tensors keep llama.cpp's names
//! (mapped in `gguf.rs`) and Hugging Face's layout: the converter does not permute Q/K for
//! qwen2, which runs NeoX-style rotary embeddings, so the forward pass is `qwen2.rs`'s.

use super::gguf::GgufMeta;
use super::llm::LoadError;
use super::qwen2::Config;

/// The model configuration from GGUF metadata.
pub fn config(meta: &GgufMeta) -> Result<Config, LoadError> {
    let hidden = meta.usize("embedding_length")?;
    let heads = meta.usize("attention.head_count")?;
    // The vocabulary is the embedding's row count (padded beyond the tokenizer's ids).
    let vocab_size = match meta.tensor_dims("token_embd.weight").as_deref() {
        Some([rows, cols]) if *cols == hidden => *rows,
        other => {
            return Err(LoadError::Config(format!(
                "token_embd.weight has shape {other:?}, expected [vocab, {hidden}]"
            )))
        }
    };
    let head_dim = match meta.opt_usize("attention.key_length")? {
        Some(d) if d != hidden / heads.max(1) => Some(d),
        _ => None,
    };
    let config = Config {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: meta.usize("feed_forward_length")?,
        num_hidden_layers: meta.usize("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(meta.opt_usize("attention.head_count_kv")?.unwrap_or(heads)),
        head_dim,
        max_position_embeddings: meta.usize("context_length")?,
        rope_theta: meta.opt_f64("rope.freq_base")?.unwrap_or(10000.0),
        rope_parameters: None,
        rope_scaling: None,
        rms_norm_eps: meta
            .opt_f64("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-6),
        // A GGUF file ties the output to the embedding by leaving out `output.weight`.
        tie_word_embeddings: meta.tensor_dims("output.weight").is_none(),
        hidden_act: "silu".into(),
        use_sliding_window: false,
    };
    if let Some(kind) = meta.opt_str("rope.scaling.type").filter(|k| *k != "none") {
        return Err(LoadError::Unsupported(format!(
            "rope scaling '{kind}' (GGUF metadata) is not supported"
        )));
    }
    config.check()?;
    Ok(config)
}
