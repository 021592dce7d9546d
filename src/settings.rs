//! Validated settings: the raw command-line values checked and resolved once, with every
//! invalid combination reported in words a user can act on.

use crate::cli::{self, DType, Engine, SummaryLang};
use crate::error::{Error, Result};
use crate::models::registry::{DEFAULT_SUMMARY_MODEL_CPU, DEFAULT_SUMMARY_MODEL_GPU};

/// Where models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The best this build and machine offer: CUDA, then Metal, then CPU.
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Device> {
        let bad = || {
            Error::Usage(format!(
                "invalid --device '{s}': expected auto, cpu, cuda, cuda:N (N a GPU ordinal) or metal"
            ))
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "metal" => Ok(Device::Metal),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Device::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl Device {
    /// Refuse a device this binary was built without, naming the feature to build with.
    pub fn check_available(self) -> Result<Device> {
        let missing = match self {
            Device::Cuda(_) if !cfg!(feature = "cuda") => Some(("CUDA", "cuda")),
            Device::Metal if !cfg!(feature = "metal") => Some(("Metal", "metal")),
            _ => None,
        };
        match missing {
            Some((name, feature)) => Err(Error::Usage(format!(
                "--device {}: this precis was built without {name} support; rebuild with \
                 `cargo build --release --features {feature}` (see README, \"GPU\"), \
                 or use --device cpu",
                self.label()
            ))),
            None => Ok(self),
        }
    }

    /// The candle device: `auto` takes CUDA, then Metal, when this build has them and a
    /// device answers, else the CPU. `-v` says which.
    pub fn open(self) -> Result<candle_core::Device> {
        let device = self.open_quietly()?;
        let name = match &device {
            candle_core::Device::Cpu => "the CPU".to_string(),
            candle_core::Device::Cuda(_) => "CUDA".to_string(),
            candle_core::Device::Metal(_) => "Metal".to_string(),
        };
        tracing::info!("--device {}: models run on {name}", self.label());
        Ok(device)
    }

    fn open_quietly(self) -> Result<candle_core::Device> {
        let fail = |what: &str, e: candle_core::Error| Error::Unsupported {
            what: format!(
                "--device {}: cannot open the {what} device ({e}); try --device cpu",
                self.label()
            ),
        };
        match self {
            Device::Cpu => Ok(candle_core::Device::Cpu),
            Device::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| fail("CUDA", e)),
            Device::Metal => candle_core::Device::new_metal(0).map_err(|e| fail("Metal", e)),
            Device::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(device) = candle_core::Device::new_cuda(0) {
                        return Ok(device);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(device) = candle_core::Device::new_metal(0) {
                        return Ok(device);
                    }
                }
                Ok(candle_core::Device::Cpu)
            }
        }
    }

    /// Whether models will run on a GPU: a GPU was asked for, or `auto` finds one (only a
    /// CUDA or Metal build probes; a CPU build answers at once).
    pub fn prefers_gpu(self) -> bool {
        match self {
            Device::Cpu => false,
            Device::Cuda(_) | Device::Metal => true,
            Device::Auto => {
                (candle_core::utils::cuda_is_available()
                    && candle_core::Device::new_cuda(0).is_ok())
                    || (candle_core::utils::metal_is_available()
                        && candle_core::Device::new_metal(0).is_ok())
            }
        }
    }

    pub fn label(self) -> String {
        match self {
            Device::Auto => "auto".into(),
            Device::Cpu => "cpu".into(),
            Device::Cuda(n) => format!("cuda:{n}"),
            Device::Metal => "metal".into(),
        }
    }
}

/// The weight precision: `auto` is f32 on CPU and bf16 on a GPU (f16 on Metal, whose bf16
/// support depends on the chip).
pub fn resolve_dtype(dtype: DType, device: &candle_core::Device) -> candle_core::DType {
    match (dtype, device) {
        (DType::F32, _) => candle_core::DType::F32,
        (DType::F16, _) => candle_core::DType::F16,
        (DType::Bf16, _) => candle_core::DType::BF16,
        (DType::Auto, candle_core::Device::Cpu) => candle_core::DType::F32,
        (DType::Auto, candle_core::Device::Metal(_)) => candle_core::DType::F16,
        (DType::Auto, _) => candle_core::DType::BF16,
    }
}

/// Largest bullet count accepted: beyond this a "summary" is the article.
pub const MAX_BULLETS: usize = 50;

/// The checked options of digest, summarize and translate.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub translation_model: String,
    pub summary_model: String,
    pub device: Device,
    pub dtype: DType,
    pub bullets: usize,
    pub summary_lang: SummaryLang,
    pub engine: Engine,
}

impl ModelSettings {
    pub fn from_args(args: &cli::ModelArgs) -> Result<ModelSettings> {
        if args.bullets == 0 || args.bullets > MAX_BULLETS {
            return Err(Error::Usage(format!(
                "invalid --bullets {}: give a number from 1 to {MAX_BULLETS}",
                args.bullets
            )));
        }
        let device: Device = args.device.parse()?;
        let device = device.check_available()?;
        let summary_model = match &args.summary_model {
            Some(model) => model.clone(),
            // Only the LLM engine reads it: no device probe for the others.
            None if args.engine == Engine::Llm && device.prefers_gpu() => {
                DEFAULT_SUMMARY_MODEL_GPU.into()
            }
            None => DEFAULT_SUMMARY_MODEL_CPU.into(),
        };
        for (flag, value) in [
            ("--translation-model", &args.translation_model),
            ("--summary-model", &summary_model),
        ] {
            if value.trim().is_empty() {
                return Err(Error::Usage(format!(
                    "{flag} is empty: give a registry name, a Hub id or a folder"
                )));
            }
        }
        Ok(ModelSettings {
            translation_model: args.translation_model.clone(),
            summary_model,
            device,
            dtype: args.dtype,
            bullets: args.bullets,
            summary_lang: args.summary_lang,
            engine: args.engine,
        })
    }
}

/// The checked options of the LLM summary engine.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    pub instruction: Option<String>,
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub repeat_penalty: Option<f32>,
    pub context_tokens: usize,
}

/// Fewer context tokens than this leave no room for an article.
pub const MIN_CONTEXT_TOKENS: usize = 256;

impl LlmSettings {
    pub fn from_args(args: &cli::LlmArgs) -> Result<LlmSettings> {
        let usage = |m: String| Err(Error::Usage(m));
        if let Some(t) = args.temperature {
            if !t.is_finite() || t < 0.0 {
                return usage(format!(
                    "invalid --temperature {t}: give 0 (greedy) or a positive number"
                ));
            }
        }
        let sampling = args.temperature.is_some_and(|t| t > 0.0);
        if let Some(p) = args.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return usage(format!("invalid --top-p {p}: give a number in (0, 1]"));
            }
        }
        if !sampling && (args.top_p.is_some() || args.top_k.is_some()) {
            return usage(
                "--top-p and --top-k shape sampling: they need --temperature above 0 \
                 (decoding is greedy otherwise)"
                    .into(),
            );
        }
        if let Some(p) = args.repeat_penalty {
            if !p.is_finite() || p <= 0.0 {
                return usage(format!(
                    "invalid --repeat-penalty {p}: give a positive number (1 turns it off)"
                ));
            }
        }
        if args.max_new_tokens == Some(0) {
            return usage("invalid --max-new-tokens 0: give 1 or more".into());
        }
        if args.context_tokens < MIN_CONTEXT_TOKENS {
            return usage(format!(
                "invalid --context-tokens {}: give at least {MIN_CONTEXT_TOKENS}",
                args.context_tokens
            ));
        }
        if let Some(n) = args.max_new_tokens {
            if n + MIN_CONTEXT_TOKENS / 2 > args.context_tokens {
                return usage(format!(
                    "--max-new-tokens {n} leaves no room for the article in --context-tokens {}",
                    args.context_tokens
                ));
            }
        }
        Ok(LlmSettings {
            instruction: args.instruction.clone(),
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            seed: args.seed,
            repeat_penalty: args.repeat_penalty,
            context_tokens: args.context_tokens,
        })
    }

    /// Refuse options that only the LLM summary engine reads when the run does not use it.
    pub fn check_engine(&self, uses_llm: bool) -> Result<()> {
        if self.instruction.is_some() && !uses_llm {
            return Err(Error::Usage(
                "--instruction is read by the LLM summary engine only (not by --engine \
                 extractive, nor when translating only)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The decoding options the command line sets, as generation settings that override the
    /// manifest's (see `summarize::llm::generate_options`): `--temperature 0` is greedy,
    /// above 0 samples.
    pub fn overrides(&self) -> crate::generate::GenerationSettings {
        let sampling = self.temperature.map(|t| t > 0.0);
        crate::generate::GenerationSettings {
            max_new_tokens: self.max_new_tokens,
            do_sample: sampling,
            temperature: self.temperature.filter(|t| *t > 0.0),
            top_k: self.top_k,
            top_p: self.top_p,
            seed: Some(self.seed),
            repetition_penalty: self.repeat_penalty,
            ..Default::default()
        }
    }
}

/// The translation search overrides and batching, checked.
pub fn search_settings(
    args: &cli::SearchArgs,
) -> Result<(
    crate::generate::GenerationSettings,
    crate::translate::Batching,
)> {
    let bad = |flag: &str, why: &str| Err(Error::Usage(format!("invalid {flag}: {why}")));
    if args.beams == Some(0) {
        return bad("--beams 0", "give 1 (greedy) or more");
    }
    if args.max_length.is_some_and(|n| n < 2) {
        return bad(
            "--max-length",
            "give at least 2 (the start token and one more)",
        );
    }
    if args
        .max_length_factor
        .is_some_and(|f| !(f.is_finite() && f > 0.0))
    {
        return bad("--max-length-factor", "give a positive number, e.g. 2");
    }
    if args.batch_tokens == Some(0) || args.batch_size == Some(0) {
        return bad("--batch-tokens/--batch-size", "give a positive number");
    }
    let overrides = crate::generate::GenerationSettings {
        num_beams: args.beams,
        length_penalty: args.length_penalty,
        max_length: args.max_length,
        no_repeat_ngram_size: args.no_repeat_ngram,
        repetition_penalty: args.repetition_penalty,
        ..Default::default()
    };
    let batching = crate::translate::Batching {
        batch_tokens: args.batch_tokens,
        batch_size: args.batch_size,
        max_length_factor: args.max_length_factor,
    };
    Ok((overrides, batching))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:2".parse::<Device>().unwrap(), Device::Cuda(2));
        assert_eq!("metal".parse::<Device>().unwrap(), Device::Metal);
        for bad in ["gpu", "cuda:", "cuda:x", "tpu"] {
            let err = bad.parse::<Device>().unwrap_err().to_string();
            assert!(err.contains("expected auto, cpu, cuda"), "{err}");
        }
    }

    fn llm(f: impl FnOnce(&mut cli::LlmArgs)) -> Result<LlmSettings> {
        let mut args = cli::LlmArgs {
            context_tokens: 8192,
            ..Default::default()
        };
        f(&mut args);
        LlmSettings::from_args(&args)
    }

    #[test]
    fn llm_options_are_checked() {
        assert!(llm(|_| {}).is_ok());
        for (bad, needle) in [
            (llm(|a| a.temperature = Some(-1.0)), "--temperature"),
            (llm(|a| a.top_p = Some(0.9)), "need --temperature above 0"),
            (
                llm(|a| {
                    a.temperature = Some(0.7);
                    a.top_p = Some(1.5)
                }),
                "--top-p 1.5",
            ),
            (llm(|a| a.repeat_penalty = Some(0.0)), "--repeat-penalty"),
            (llm(|a| a.max_new_tokens = Some(0)), "--max-new-tokens 0"),
            (llm(|a| a.context_tokens = 10), "--context-tokens 10"),
            (llm(|a| a.max_new_tokens = Some(9000)), "no room"),
        ] {
            let err = bad.unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn temperature_zero_is_greedy_and_above_samples() {
        let o = llm(|_| {}).unwrap().overrides();
        assert_eq!((o.do_sample, o.temperature), (None, None));
        let o = llm(|a| a.temperature = Some(0.0)).unwrap().overrides();
        assert_eq!((o.do_sample, o.temperature), (Some(false), None));
        let o = llm(|a| {
            a.temperature = Some(0.7);
            a.top_k = Some(0);
            a.seed = 5
        })
        .unwrap()
        .overrides();
        assert_eq!(o.do_sample, Some(true));
        assert_eq!(
            (o.temperature, o.top_k, o.seed),
            (Some(0.7), Some(0), Some(5))
        );
    }

    #[test]
    fn auto_picks_f32_on_cpu() {
        let cpu = Device::Cpu.open().unwrap();
        assert_eq!(resolve_dtype(DType::Auto, &cpu), candle_core::DType::F32);
        assert_eq!(resolve_dtype(DType::Bf16, &cpu), candle_core::DType::BF16);
        #[cfg(not(any(feature = "cuda", feature = "metal")))]
        assert!(Device::Auto.open().unwrap().is_cpu());
    }

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn cuda_without_the_feature_names_it() {
        let err = Device::Cuda(0).check_available().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
