//! The engines an archive run drives, behind one small trait, so that the run loop does not
//! care which summary or translation engine is built in (and tests can plug in their own).
//!
//! `LocalEngines` is the real one: models are resolved (downloaded, checked) and loaded once
//! per run, before any article is read: the Marian translator, and the extractive summary
//! engine (archive runs do not drive the LLM summary engine yet: asking for it fails at once
//! with `Error::Unsupported` rather than after the first article).

use std::time::Instant;

use serde::Serialize;

use crate::cli::{BatchMode, Engine, SearchArgs, SummaryLang};
use crate::error::{Error, Result};
use crate::input::Document;
use crate::models::{ResolvedModel, Resolver, Role};
use crate::report::{Stop, SummaryReport, Timings};
use crate::settings::{self, ModelSettings};
use crate::summarize::extractive;
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
    /// The search options that change translations (not the batch sizes, which do not).
    search: String,
}

impl LocalEngines {
    /// Resolve the models the mode needs (once for the whole run) and refuse engines that
    /// are not built in yet.
    pub fn load(
        settings: &ModelSettings,
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
        // The LLM engine is not built in yet: say so before any work.
        if let Some(model) = &summary_model {
            return Err(not_built_in(model));
        }
        let translator = match &translation_model {
            Some(model) => {
                let (overrides, batching) = settings::search_settings(search)?;
                let device = settings.device.open()?;
                let dtype = settings::resolve_dtype(settings.dtype, &device);
                Some(Translator::load(
                    model, &device, dtype, &overrides, batching,
                )?)
            }
            None => None,
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
            search: format!(
                "beams={:?};length_penalty={:?};max_length={:?};max_length_factor={:?};no_repeat_ngram={:?};repetition_penalty={:?}",
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

/// A model that resolved and checked, for which this build has no inference engine yet.
fn not_built_in(model: &ResolvedModel) -> Error {
    Error::Unsupported {
        what: format!(
            "{} ({}): archive runs do not drive the LLM summary engine yet (precis summarize \
             does, one article at a time); for archives use `--engine extractive`",
            model.id, model.architecture
        ),
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
        if let Some(model) = &self.summary_model {
            return Err(not_built_in(model));
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
        }
        if self.translator.is_some() {
            parts.push(format!("translation_model={:?}", models.translation));
            parts.push(self.search.clone());
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
    use crate::cli::{DType, SummaryLang};
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

    #[test]
    fn extractive_engines_summarize_and_refuse_to_translate() {
        let engines = LocalEngines::load(
            &settings(2),
            &SearchArgs::default(),
            BatchMode::Summarize,
            true,
        )
        .unwrap();
        assert!(engines.summarizes() && !engines.translates());
        let doc = crate::input::document(
            "Le gouvernement a présenté hier un nouveau budget pour l’année prochaine.\n\
             Les syndicats dénoncent une hausse des impôts locaux dans plusieurs régions.\n\
             La météo sera ensoleillée sur toute la Bretagne demain et après-demain.",
            false,
        );
        let report = engines.summarize("a.txt", &doc).unwrap();
        assert_eq!(report.bullets.len(), 2);
        let err = engines.translate(&["Bonjour."]).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }) && is_fatal(&err));
        assert_eq!(engines.models(), ModelIds::default());
    }

    #[test]
    fn fingerprint_changes_with_what_changes_outputs() {
        let load = |bullets| {
            LocalEngines::load(
                &settings(bullets),
                &SearchArgs::default(),
                BatchMode::Summarize,
                true,
            )
        };
        let (three, five) = (load(3).unwrap(), load(5).unwrap());
        assert_ne!(three.fingerprint(), five.fingerprint());
        assert_eq!(five.fingerprint(), load(5).unwrap().fingerprint());
        // The extractive engine always quotes the French article: the summary language
        // does not change its output.
        let mut fr = settings(5);
        fr.summary_lang = SummaryLang::Fr;
        let fr =
            LocalEngines::load(&fr, &SearchArgs::default(), BatchMode::Summarize, true).unwrap();
        assert_eq!(fr.fingerprint(), five.fingerprint());
    }
}
