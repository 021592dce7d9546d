//! The engines an archive run drives, behind one small trait, so that the run loop does not
//! care which summary or translation engine is built in (and tests can plug in their own).
//!
//! `LocalEngines` is the real one: models are resolved (downloaded, checked) and loaded once
//! per run, before any article is read: the Marian translator, the LLM summary engine, and
//! the extractive one.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

use crate::cli::{BatchMode, Engine, SearchArgs, SummaryLang};
use crate::error::{Error, Result};
use crate::input::Document;
use crate::models::{ResolvedModel, Resolver, Role};
use crate::report::{Stop, SummaryReport, Timings};
use crate::settings::{self, LlmSettings, ModelSettings};
use crate::summarize::extractive;
use crate::summarize::llm::{LlmSummarizer, SummarySpec};
use crate::translate::Translator;

/// What an archive run needs from the engines.
pub trait Engines {
    /// Translate sentences of any number of articles at once (cross-article batching); the
    /// result is in input order, one `(translation, stop reason)` per sentence.
    fn translate(&self, sentences: &[&str]) -> Result<Vec<(String, Stop)>>;
    /// Summarize one article.
    fn summarize(&self, name: &str, doc: &Document) -> Result<SummaryReport>;
    /// The options and model revisions that change outputs: a change means redo on resume.
    fn fingerprint(&self) -> String;
    /// The models that produce results, as `repo@commit` (for the reports).
    fn models(&self) -> ModelIds;
    fn translates(&self) -> bool;
    fn summarizes(&self) -> bool;
}

/// The models behind each half of a digest (null when that half is not produced, or is
/// produced with no model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelIds {
    pub summary: Option<String>,
    pub translation: Option<String>,
}

/// Whether an engine error concerns the whole run (a missing model, an engine this build
/// lacks, a full disk) rather than the one article it happened on.
pub fn is_fatal(err: &Error) -> bool {
    matches!(
        err,
        Error::Unsupported { .. }
            | Error::ModelNotCached(_)
            | Error::Download(_)
            | Error::ModelFolder { .. }
            | Error::ModelFile { .. }
            | Error::Manifest { .. }
            | Error::Output { .. }
            | Error::Io { .. }
    )
}

/// The engines this build of precis has.
pub struct LocalEngines {
    mode: BatchMode,
    settings: ModelSettings,
    summary_model: Option<ResolvedModel>,
    translation_model: Option<ResolvedModel>,
    translator: Option<Translator>,
    llm: Option<LlmEngine>,
    /// The kind of device the models run on, when any model runs (see `device_kind`).
    device: Option<&'static str>,
    /// What changes translations besides the model: the weights' dtype and the search
    /// options (not the batch sizes, which do not).
    search: String,
}

/// The LLM summary engine of a run. `LlmSummarizer::summarize` takes `&mut self` (the
/// model's KV cache) while the run shares its engines by reference: the lock hands the one
/// loaded model to one article at a time.
struct LlmEngine {
    summarizer: Mutex<LlmSummarizer>,
    spec: SummarySpec,
    /// What, besides the model's identity, changes its summaries: the instruction, the
    /// decoding options in effect (the manifest's, then the command line's), the context
    /// budget, and the dtype it computes in (a GGUF model's own, whatever `--dtype` says).
    fingerprint: String,
}

impl LlmEngine {
    fn load(
        model: &ResolvedModel,
        device: &candle_core::Device,
        settings: &ModelSettings,
        llm: &LlmSettings,
    ) -> Result<LlmEngine> {
        let summarizer = LlmSummarizer::load(model, device, settings.dtype, llm)?;
        let fingerprint = format!(
            "instruction={:?};context_tokens={};generate={:?};summary_dtype={:?}",
            llm.instruction,
            summarizer.budget.context_tokens,
            summarizer.options,
            summarizer.lm.info().dtype
        );
        Ok(LlmEngine {
            summarizer: Mutex::new(summarizer),
            spec: SummarySpec {
                bullets: settings.bullets,
                language: settings.summary_lang,
                instruction: llm.instruction.clone(),
            },
            fingerprint,
        })
    }

    fn summarize(&self, name: &str, doc: &Document, model: &str) -> Result<SummaryReport> {
        // A panic on an earlier article ends the run, so a poisoned lock is never seen here;
        // and every model call starts from an empty cache anyway.
        let mut summarizer = self
            .summarizer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        summarizer.report(name, doc, &self.spec, model, None)
    }
}

impl LocalEngines {
    /// Resolve and load the models the mode needs, once for the whole run, before any
    /// article is read.
    pub fn load(
        settings: &ModelSettings,
        llm: &LlmSettings,
        search: &SearchArgs,
        mode: BatchMode,
        quiet: bool,
    ) -> Result<LocalEngines> {
        let summarizes = mode != BatchMode::Translate;
        let translates = mode != BatchMode::Summarize;
        let needs_resolver = translates || (summarizes && settings.engine == Engine::Llm);
        let resolver = match needs_resolver {
            true => Some(Resolver::from_env(quiet)?),
            false => None,
        };
        let resolve = |name: &str, role: Role| -> Result<ResolvedModel> {
            let resolver = resolver
                .as_ref()
                .expect("a resolver when a model is needed");
            let model = resolver.resolve(name, role)?;
            tracing::info!("{}: {} ({})", role.flag(), model.id, model.architecture);
            Ok(model)
        };
        let summary_model = match summarizes && settings.engine == Engine::Llm {
            true => Some(resolve(&settings.summary_model, Role::Summary)?),
            false => None,
        };
        let translation_model = match translates {
            true => Some(resolve(&settings.translation_model, Role::Translation)?),
            false => None,
        };
        let device = match summary_model.is_some() || translation_model.is_some() {
            true => Some(settings.device.open()?),
            false => None,
        };
        let llm = match (&summary_model, &device) {
            (Some(model), Some(device)) => Some(LlmEngine::load(model, device, settings, llm)?),
            _ => None,
        };
        let translation_dtype = device
            .as_ref()
            .map(|device| settings::resolve_dtype(settings.dtype, device));
        let translator = match (&translation_model, &device, translation_dtype) {
            (Some(model), Some(device), Some(dtype)) => {
                let (overrides, batching) = settings::search_settings(search)?;
                Some(Translator::load(
                    model, device, dtype, &overrides, batching,
                )?)
            }
            _ => None,
        };
        if summarizes
            && translator.is_none()
            && settings.engine == Engine::Extractive
            && settings.summary_lang == SummaryLang::En
        {
            tracing::warn!(
                "the extractive engine quotes the article, so its bullets are in French \
                 (English bullets need the translation model: --mode digest)"
            );
        }
        Ok(LocalEngines {
            mode,
            settings: settings.clone(),
            summary_model,
            translation_model,
            translator,
            llm,
            device: device.as_ref().map(device_kind),
            search: format!(
                "translation_dtype={:?};beams={:?};length_penalty={:?};max_length={:?};max_length_factor={:?};no_repeat_ngram={:?};repetition_penalty={:?}",
                translation_dtype,
                search.beams,
                search.length_penalty,
                search.max_length,
                search.max_length_factor,
                search.no_repeat_ngram,
                search.repetition_penalty
            ),
        })
    }
}

impl Engines for LocalEngines {
    fn translate(&self, sentences: &[&str]) -> Result<Vec<(String, Stop)>> {
        match &self.translator {
            Some(translator) => translator.translate(sentences),
            None => Err(Error::Unsupported {
                what: "this run does not translate (--mode summarize)".into(),
            }),
        }
    }

    fn summarize(&self, name: &str, doc: &Document) -> Result<SummaryReport> {
        if let (Some(llm), Some(model)) = (&self.llm, &self.summary_model) {
            return llm.summarize(name, doc, &model.id);
        }
        let mut report = extractive_report(name, doc, self.settings.bullets);
        // English bullets: the picked sentences, translated.
        if let (Some(translator), SummaryLang::En) = (&self.translator, self.settings.summary_lang)
        {
            let texts: Vec<&str> = report.bullets.iter().map(String::as_str).collect();
            let (bullets, stops): (Vec<_>, Vec<_>) =
                translator.translate(&texts)?.into_iter().unzip();
            report.raw = bullets.join("\n");
            report.bullets = bullets;
            report.language = SummaryLang::En;
            report.model = Some(translator.id().to_string());
            if stops.contains(&Stop::Length) {
                report.stop = Stop::Length;
            }
        }
        Ok(report)
    }

    fn fingerprint(&self) -> String {
        let models = self.models();
        let mut parts = vec![format!("mode={:?}", self.mode)];
        if self.summarizes() {
            parts.push(format!("engine={:?}", self.settings.engine));
            parts.push(format!("bullets={}", self.settings.bullets));
            if self.settings.engine == Engine::Llm || self.translator.is_some() {
                parts.push(format!("summary_lang={:?}", self.settings.summary_lang));
            }
            parts.push(format!("summary_model={:?}", models.summary));
            if let Some(llm) = &self.llm {
                parts.push(llm.fingerprint.clone());
            }
        }
        if self.translator.is_some() {
            parts.push(format!("translation_model={:?}", models.translation));
            parts.push(self.search.clone());
        }
        if let Some(device) = self.device {
            parts.push(format!("device={device}"));
        }
        parts.join(";")
    }

    fn models(&self) -> ModelIds {
        ModelIds {
            summary: self.summary_model.as_ref().map(|m| m.id.clone()),
            translation: self.translation_model.as_ref().map(|m| m.id.clone()),
        }
    }

    fn translates(&self) -> bool {
        self.mode != BatchMode::Summarize
    }

    fn summarizes(&self) -> bool {
        self.mode != BatchMode::Translate
    }
}

/// The kind of device models run on, as the fingerprint has it: results depend on the kind
/// (its kernels), not on which GPU of that kind (`--device cuda:0` or `cuda:1`).
fn device_kind(device: &candle_core::Device) -> &'static str {
    match device {
        candle_core::Device::Cpu => "cpu",
        candle_core::Device::Cuda(_) => "cuda",
        candle_core::Device::Metal(_) => "metal",
    }
}

/// The extractive engine's summary of one article, as `precis summarize` reports it.
fn extractive_report(name: &str, doc: &Document, bullets: usize) -> SummaryReport {
    let start = Instant::now();
    let picked = extractive::summarize(doc, bullets);
    let mut timings = Timings::default();
    timings.record("summarize", start);
    let bullets: Vec<String> = picked.into_iter().map(|p| p.text).collect();
    SummaryReport {
        input: name.to_string(),
        raw: bullets.join("\n"),
        bullets,
        language: SummaryLang::Fr,
        engine: Engine::Extractive,
        model: None,
        stop: Stop::Eos,
        prompt_tokens: 0,
        generated_tokens: 0,
        timings,
        removed: doc.removed.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{DType, LlmArgs, SummaryLang};
    use crate::settings::Device;

    fn settings(bullets: usize) -> ModelSettings {
        ModelSettings {
            translation_model: "opus-mt-fr-en".into(),
            summary_model: "qwen2.5-1.5b-instruct".into(),
            device: Device::Cpu,
            dtype: DType::Auto,
            bullets,
            summary_lang: SummaryLang::En,
            engine: Engine::Extractive,
        }
    }

    /// The LLM options of a command line with `set` applied to the defaults.
    fn llm(set: impl FnOnce(&mut LlmArgs)) -> LlmSettings {
        let mut args = LlmArgs {
            context_tokens: 8192,
            ..Default::default()
        };
        set(&mut args);
        LlmSettings::from_args(&args).unwrap()
    }

    fn summarize_only(settings: &ModelSettings, llm: &LlmSettings) -> LocalEngines {
        LocalEngines::load(
            settings,
            llm,
            &SearchArgs::default(),
            BatchMode::Summarize,
            true,
        )
        .unwrap()
    }

    fn article() -> Document {
        crate::input::document(
            "Le gouvernement a présenté hier un nouveau budget pour l’année prochaine.\n\
             Les syndicats dénoncent une hausse des impôts locaux dans plusieurs régions.\n\
             La météo sera ensoleillée sur toute la Bretagne demain et après-demain.",
            false,
        )
    }

    #[test]
    fn extractive_engines_summarize_and_refuse_to_translate() {
        let engines = summarize_only(&settings(2), &llm(|_| {}));
        assert!(engines.summarizes() && !engines.translates());
        let report = engines.summarize("a.txt", &article()).unwrap();
        assert_eq!(report.bullets.len(), 2);
        let err = engines.translate(&["Bonjour."]).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }) && is_fatal(&err));
        assert_eq!(engines.models(), ModelIds::default());
    }

    #[test]
    fn fingerprint_changes_with_what_changes_outputs() {
        let load = |bullets| summarize_only(&settings(bullets), &llm(|_| {}));
        let (three, five) = (load(3), load(5));
        assert_ne!(three.fingerprint(), five.fingerprint());
        assert_eq!(five.fingerprint(), load(5).fingerprint());
        // The extractive engine always quotes the French article: the summary language
        // does not change its output.
        let mut fr = settings(5);
        fr.summary_lang = SummaryLang::Fr;
        assert_eq!(
            summarize_only(&fr, &llm(|_| {})).fingerprint(),
            five.fingerprint()
        );
        // Nor do the LLM's options, which it does not read.
        let sampled = llm(|a| {
            a.max_new_tokens = Some(16);
            a.temperature = Some(0.7)
        });
        assert_eq!(
            summarize_only(&settings(5), &sampled).fingerprint(),
            five.fingerprint()
        );
    }

    /// The tiny random Qwen2 of the tests (its text is gibberish, but greedy decoding is
    /// deterministic).
    const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen2/tiny");

    fn llm_engines(model: &str, dtype: DType, set: impl FnOnce(&mut LlmArgs)) -> LocalEngines {
        let mut settings = settings(3);
        settings.engine = Engine::Llm;
        settings.summary_model = model.into();
        settings.dtype = dtype;
        summarize_only(
            &settings,
            &llm(|a| {
                a.max_new_tokens = Some(16);
                set(a)
            }),
        )
    }

    fn tiny_llm(set: impl FnOnce(&mut LlmArgs)) -> LocalEngines {
        llm_engines(TINY, DType::Auto, set)
    }

    #[test]
    fn the_llm_engine_summarizes_article_after_article() {
        let engines = tiny_llm(|_| {});
        let model = engines.models().summary.expect("a summary model");
        assert!(model.starts_with("local:"), "{model}");
        let first = engines.summarize("a.txt", &article()).unwrap();
        assert_eq!(
            (first.engine, first.language),
            (Engine::Llm, SummaryLang::En)
        );
        assert_eq!(first.model.as_deref(), Some(model.as_str()));
        assert!(first.bullets.len() <= 3 && first.generated_tokens <= 16);
        assert!(first.prompt_tokens > 0 && !first.raw.is_empty());
        // The one shared model serves the next article from a clean state.
        let second = engines.summarize("b.txt", &article()).unwrap();
        assert_eq!((second.input.as_str(), &second.raw), ("b.txt", &first.raw));
    }

    #[test]
    fn the_llm_decoding_options_in_effect_are_fingerprinted() {
        let base = tiny_llm(|_| {}).fingerprint();
        // Greedy either way, and the seed draws nothing when greedy: same summaries.
        assert_eq!(tiny_llm(|a| a.temperature = Some(0.0)).fingerprint(), base);
        assert_eq!(tiny_llm(|a| a.seed = 9).fingerprint(), base);
        let sampled = |seed| {
            tiny_llm(|a| {
                a.temperature = Some(0.7);
                a.seed = seed
            })
            .fingerprint()
        };
        let changed = [
            tiny_llm(|a| a.max_new_tokens = Some(17)).fingerprint(),
            tiny_llm(|a| a.repeat_penalty = Some(1.3)).fingerprint(),
            tiny_llm(|a| a.instruction = Some("Name every person quoted.".into())).fingerprint(),
            tiny_llm(|a| a.context_tokens = 1024).fingerprint(),
            sampled(1),
            sampled(2),
        ];
        for (i, fingerprint) in changed.iter().enumerate() {
            assert_ne!(*fingerprint, base, "change {i}");
        }
        assert_ne!(changed[4], changed[5], "the seed counts when sampling");
    }

    #[test]
    fn the_device_and_dtype_models_compute_in_are_fingerprinted() {
        // No model, nothing computed: neither changes the extractive engine's bullets.
        let mut half = settings(5);
        half.dtype = DType::F16;
        let extractive = summarize_only(&settings(5), &llm(|_| {})).fingerprint();
        assert_eq!(
            summarize_only(&half, &llm(|_| {})).fingerprint(),
            extractive
        );
        assert!(!extractive.contains("device="), "{extractive}");

        let fingerprint = |model: &str, dtype| llm_engines(model, dtype, |_| {}).fingerprint();
        let auto = fingerprint(TINY, DType::Auto);
        assert!(auto.contains(";device=cpu"), "{auto}");
        // `auto` is f32 on the CPU: the same weights, the same summaries.
        assert_eq!(fingerprint(TINY, DType::F32), auto);
        assert_ne!(fingerprint(TINY, DType::F16), auto);
        assert_ne!(fingerprint(TINY, DType::Bf16), auto);
        // A GGUF model keeps its own weights and computes in f32, whatever --dtype says.
        let gguf = format!("{TINY}/tiny-q8_0.gguf");
        assert_eq!(
            fingerprint(&gguf, DType::F16),
            fingerprint(&gguf, DType::Auto)
        );
        // The translation model's weights too.
        let translation = |dtype| {
            let mut settings = settings(5);
            settings.translation_model = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/marian/tiny-shared"
            )
            .into();
            settings.dtype = dtype;
            let search = SearchArgs {
                batch_tokens: None,
                batch_size: None,
                ..Default::default()
            };
            LocalEngines::load(&settings, &llm(|_| {}), &search, BatchMode::Translate, true)
                .unwrap()
                .fingerprint()
        };
        let f32 = translation(DType::Auto);
        assert!(f32.contains(";device=cpu"), "{f32}");
        assert_ne!(translation(DType::F16), f32);
    }
}
