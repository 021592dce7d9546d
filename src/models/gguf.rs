//! GGUF files (llama.cpp's format): typed access to the metadata, and a [`Weights`] source
//! that serves the tensors under Hugging Face names, quantized projections as `QMatMul`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Result, Tensor};

use super::layers::{Embed, Proj, Weights};
use super::llm::LoadError;

/// An open GGUF file: its header read, its tensors read on demand.
pub struct GgufFile {
    pub path: PathBuf,
    content: Content,
    file: File,
}

impl GgufFile {
    pub fn open(path: &Path) -> crate::error::Result<GgufFile> {
        let bad = |what: &str, source: Box<dyn std::error::Error + Send + Sync>| {
            crate::error::Error::ModelFile {
                path: path.to_path_buf(),
                what: what.to_string(),
                source: Some(source),
            }
        };
        let mut file = File::open(path).map_err(|e| bad("cannot open the file", Box::new(e)))?;
        let content =
            Content::read(&mut file).map_err(|e| bad("not a readable GGUF file", Box::new(e)))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            file,
        })
    }

    /// `general.architecture`, which also prefixes the model's own metadata keys.
    pub fn architecture(&self) -> Option<&str> {
        match self.content.metadata.get("general.architecture") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The quantization of the bulk of the weights (that of the first attention projection).
    pub fn weight_type(&self) -> Option<GgmlDType> {
        let infos = &self.content.tensor_infos;
        infos
            .get("blk.0.attn_q.weight")
            .or_else(|| infos.get("token_embd.weight"))
            .map(|t| t.ggml_dtype)
    }

    /// The metadata (taken out of the header) and the tensors, to read side by side.
    pub fn into_parts(mut self, device: &Device) -> (GgufMeta, GgufWeights) {
        let meta = GgufMeta {
            arch: self.architecture().unwrap_or_default().to_string(),
            metadata: std::mem::take(&mut self.content.metadata),
            dims: self
                .content
                .tensor_infos
                .iter()
                .map(|(name, t)| (name.clone(), t.shape.dims().to_vec()))
                .collect(),
        };
        let weights = GgufWeights {
            gguf: self,
            device: device.clone(),
            dequantize: false,
        };
        (meta, weights)
    }
}

/// The metadata of a GGUF file, keys relative to the architecture (`block_count` means
/// `qwen2.block_count` in a qwen2 file).
pub struct GgufMeta {
    arch: String,
    metadata: HashMap<String, Value>,
    dims: HashMap<String, Vec<usize>>,
}

impl GgufMeta {
    pub fn architecture(&self) -> &str {
        &self.arch
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(&format!("{}.{key}", self.arch))
    }

    fn missing(&self, key: &str) -> LoadError {
        LoadError::Config(format!("GGUF metadata has no '{}.{key}'", self.arch))
    }

    /// An integer value, whatever integer type the writer chose.
    pub fn usize(&self, key: &str) -> std::result::Result<usize, LoadError> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_usize(&self, key: &str) -> std::result::Result<Option<usize>, LoadError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let n = match value {
            Value::U8(v) => Some(*v as u64),
            Value::U16(v) => Some(*v as u64),
            Value::U32(v) => Some(*v as u64),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        };
        n.map(|n| Some(n as usize)).ok_or_else(|| {
            LoadError::Config(format!(
                "GGUF metadata '{}.{key}' is not a non-negative integer",
                self.arch
            ))
        })
    }

    pub fn opt_f64(&self, key: &str) -> std::result::Result<Option<f64>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v as f64)),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(_) => self.opt_usize(key).map(|n| n.map(|n| n as f64)),
        }
    }

    pub fn opt_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The dims of a tensor, PyTorch order (`[out, in]`), by its GGUF name.
    pub fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.dims.get(name).cloned()
    }
}

/// llama.cpp's tensor name for a Hugging Face one (Llama-family layouts).
pub fn gguf_name(hf: &str) -> String {
    let (base, suffix) = hf.rsplit_once('.').unwrap_or((hf, ""));
    let mapped = match base {
        "model.embed_tokens" => "token_embd".to_string(),
        "model.norm" => "output_norm".to_string(),
        "lm_head" => "output".to_string(),
        _ => match base
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split_once('.'))
        {
            Some((layer, module)) => {
                let module = match module {
                    "input_layernorm" => "attn_norm",
                    "post_attention_layernorm" => "ffn_norm",
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.o_proj" => "attn_output",
                    "self_attn.q_norm" => "attn_q_norm",
                    "self_attn.k_norm" => "attn_k_norm",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    other => other,
                };
                format!("blk.{layer}.{module}")
            }
            None => base.to_string(),
        },
    };
    match suffix {
        "" => mapped,
        s => format!("{mapped}.{s}"),
    }
}

/// Tensors of a GGUF file as a [`Weights`] source. Activations run in f32; matrices stay in
/// their quantization (F32/F16 ones are used as dense tensors by `QMatMul`).
pub struct GgufWeights {
    gguf: GgufFile,
    device: Device,
    dequantize: bool,
}

impl GgufWeights {
    /// Dequantize every matrix to f32 at load time: exact float arithmetic over the
    /// quantized values (what a reference implementation computes), at f32's memory cost.
    /// Without it, quantized matrices multiply 8-bit-quantized activations, as llama.cpp does.
    pub fn dequantized(mut self, yes: bool) -> GgufWeights {
        self.dequantize = yes;
        self
    }

    fn qtensor(&mut self, hf: &str) -> Result<QTensor> {
        let name = gguf_name(hf);
        if !self.gguf.content.tensor_infos.contains_key(&name) {
            candle_core::bail!("no tensor '{name}' (for '{hf}') in the GGUF file");
        }
        self.gguf
            .content
            .tensor(&mut self.gguf.file, &name, &self.device)
    }

    fn check(name: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
        if actual != expected {
            candle_core::bail!(
                "tensor '{}' has shape {actual:?}, the metadata implies {expected:?}",
                gguf_name(name)
            );
        }
        Ok(())
    }

    fn dense(&mut self, hf: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self.qtensor(hf)?;
        Self::check(hf, t.shape().dims(), dims)?;
        t.dequantize(&self.device)
    }
}

impl Weights for GgufWeights {
    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn linear(&mut self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Proj> {
        let weight_name = format!("{name}.weight");
        let weight = self.qtensor(&weight_name)?;
        Self::check(&weight_name, weight.shape().dims(), &[out_dim, in_dim])?;
        let bias = match bias {
            true => Some(self.dense(&format!("{name}.bias"), &[out_dim])?),
            false => None,
        };
        if self.dequantize {
            let weight = weight.dequantize(&self.device)?;
            return Ok(Proj::Dense(candle_nn::Linear::new(weight, bias)));
        }
        Ok(Proj::Quantized {
            weight: QMatMul::from_qtensor(weight)?,
            bias,
        })
    }

    fn vector(&mut self, name: &str, dim: usize) -> Result<Tensor> {
        self.dense(&format!("{name}.weight"), &[dim])
    }

    fn embedding(&mut self, name: &str, vocab: usize, hidden: usize) -> Result<Embed> {
        let weight_name = format!("{name}.weight");
        let table = self.qtensor(&weight_name)?;
        Self::check(&weight_name, table.shape().dims(), &[vocab, hidden])?;
        if self.dequantize {
            return Ok(Embed::Dense(table.dequantize(&self.device)?));
        }
        Ok(Embed::Quantized(Arc::new(table)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.11.self_attn.q_proj.bias",
                "blk.11.attn_q.bias",
            ),
            (
                "model.layers.1.self_attn.o_proj.weight",
                "blk.1.attn_output.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            (
                "model.layers.2.mlp.down_proj.weight",
                "blk.2.ffn_down.weight",
            ),
        ] {
            assert_eq!(gguf_name(hf), gguf);
        }
    }
}
