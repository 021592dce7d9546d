//! `precis FILE`, `digest`, `summarize` and `translate`: models resolved and loaded once,
//! then each article through the pipeline and the engines.

use std::time::Instant;

use serde::Serialize;

use crate::cli::{DigestArgs, Engine, SummaryLang};
use crate::error::{Error, Result};
use crate::input::{self, Loaded};
use crate::models::{ResolvedModel, Resolver, Role};
use crate::output::{self, Sink};
use crate::report::{Stop, SummaryReport, Timings};
use crate::settings::{self, ModelSettings};
use crate::summarize::extractive;
use crate::translate::{TranslationReport, Translator};

/// Which halves of the digest to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Digest,
    Summarize,
    Translate,
}

impl Mode {
    fn summarizes(self) -> bool {
        self != Mode::Translate
    }
    fn translates(self) -> bool {
        self != Mode::Summarize
    }
}

/// A digest: the summary and the translation of one article.
#[derive(Debug, Serialize)]
pub struct DigestReport {
    pub input: String,
    pub summary: SummaryReport,
    pub translation: TranslationReport,
}

/// The engines a run needs, resolved, checked and loaded before any article is read, so that
/// a missing model fails in a second, not after the first article.
struct Engines {
    translator: Option<Translator>,
    summary: Option<ResolvedModel>,
}

pub fn run(args: &DigestArgs, mode: Mode, quiet: bool) -> Result<()> {
    let settings = ModelSettings::from_args(&args.models)?;
    let sources = super::sources(&args.io)?;
    let engines = load_engines(args, &settings, mode, quiet)?;
    let count = sources.len();
    let format = args.io.format;
    let mut sink = Sink::new(args.io.output.as_deref(), count)?;
    super::for_each_source(&sources, |source| {
        let start = Instant::now();
        let loaded = input::load(source, args.io.keep_boilerplate)?;
        let mut timings = Timings::default();
        timings.record("input", start);
        let title = loaded.document.title.as_deref();
        let rendered = match mode {
            Mode::Summarize => {
                let report = summarize(&loaded, &settings, &engines, timings, None)?;
                output::summary(&report, title, format, count)
            }
            Mode::Translate => {
                let mut report = translate(&loaded, &engines)?;
                report.timings.extend(timings);
                output::translation(&report, format, count)
            }
            Mode::Digest => {
                let translation = translate(&loaded, &engines)?;
                let summary = summarize(&loaded, &settings, &engines, timings, Some(&translation))?;
                let report = DigestReport {
                    input: loaded.name.clone(),
                    summary,
                    translation,
                };
                output::digest(&report, format, count)
            }
        };
        sink.write(&loaded.name, format, &rendered)
    })?;
    sink.finish()
}

fn load_engines(
    args: &DigestArgs,
    settings: &ModelSettings,
    mode: Mode,
    quiet: bool,
) -> Result<Engines> {
    let resolver = Resolver::from_env(quiet)?;
    let resolve = |name: &str, role| -> Result<ResolvedModel> {
        let model = resolver.resolve(name, role)?;
        tracing::info!("{}: {} ({})", role.flag(), model.id, model.architecture);
        Ok(model)
    };
    let summary = match (mode.summarizes(), settings.engine) {
        (true, Engine::Llm) => Some(resolve(&settings.summary_model, Role::Summary)?),
        _ => None,
    };
    let extractive_en = mode.summarizes()
        && settings.engine == Engine::Extractive
        && settings.summary_lang == SummaryLang::En;
    let translator = if mode.translates() {
        Some(load_translator(
            &resolve(&settings.translation_model, Role::Translation)?,
            args,
            settings,
        )?)
    } else if extractive_en {
        // English bullets from the extractive engine need the translation model, used only
        // if it is already here: a summary never triggers a 300 MB download.
        match resolver.resolve_cached(&settings.translation_model, Role::Translation) {
            Ok(model) => Some(load_translator(&model, args, settings)?),
            Err(err) => {
                tracing::warn!(
                    "the extractive engine quotes the article, so its bullets stay in French: \
                     English needs the translation model ({})",
                    crate::error_chain(&err).lines().next().unwrap_or_default()
                );
                None
            }
        }
    } else {
        None
    };
    Ok(Engines {
        translator,
        summary,
    })
}

fn load_translator(
    model: &ResolvedModel,
    args: &DigestArgs,
    settings: &ModelSettings,
) -> Result<Translator> {
    let (overrides, batching) = settings::search_settings(&args.search)?;
    let device = settings.device.open()?;
    let dtype = settings::resolve_dtype(settings.dtype, &device);
    Translator::load(model, &device, dtype, &overrides, batching)
}

fn translate(loaded: &Loaded, engines: &Engines) -> Result<TranslationReport> {
    let translator = engines
        .translator
        .as_ref()
        .expect("translator loaded for this mode");
    translator.translate_document(&loaded.name, &loaded.document)
}

/// The LLM engine lands in its own module; until it is built in, say so plainly.
fn llm_missing(model: &ResolvedModel) -> Error {
    Error::Unsupported {
        what: format!(
            "{} ({}): the model loaded and checked, but this build of precis has no LLM \
             engine for it yet; summaries work today with `--engine extractive`",
            model.id, model.architecture
        ),
    }
}

fn summarize(
    loaded: &Loaded,
    settings: &ModelSettings,
    engines: &Engines,
    mut timings: Timings,
    translation: Option<&TranslationReport>,
) -> Result<SummaryReport> {
    if let Some(model) = &engines.summary {
        return Err(llm_missing(model));
    }
    let start = Instant::now();
    let picked = extractive::summarize(&loaded.document, settings.bullets);
    let english = settings.summary_lang == SummaryLang::En;
    let (bullets, language, stop) = match (english, translation, &engines.translator) {
        // The digest already translated every sentence: take the picked ones' translations.
        (true, Some(t), _) => {
            let pick = |p: &extractive::Picked| {
                let s = &t.paragraphs[p.paragraph].sentences[p.sentence];
                (s.target.clone(), s.stop)
            };
            let (bullets, stops): (Vec<_>, Vec<_>) = picked.iter().map(pick).unzip();
            (bullets, SummaryLang::En, worst(&stops))
        }
        (true, None, Some(translator)) => {
            let texts: Vec<&str> = picked.iter().map(|p| p.text.as_str()).collect();
            let (bullets, stops): (Vec<_>, Vec<_>) =
                translator.translate(&texts)?.into_iter().unzip();
            (bullets, SummaryLang::En, worst(&stops))
        }
        _ => (
            picked.into_iter().map(|p| p.text).collect(),
            SummaryLang::Fr,
            Stop::Eos,
        ),
    };
    timings.record("summarize", start);
    Ok(SummaryReport {
        input: loaded.name.clone(),
        raw: bullets.join("\n"),
        bullets,
        language,
        engine: Engine::Extractive,
        model: engines
            .translator
            .as_ref()
            .filter(|_| language == SummaryLang::En)
            .map(|t| t.id().to_string()),
        stop,
        prompt_tokens: 0,
        generated_tokens: 0,
        timings,
        removed: loaded.document.removed.clone(),
    })
}

fn worst(stops: &[Stop]) -> Stop {
    if stops.contains(&Stop::Length) {
        Stop::Length
    } else {
        Stop::Eos
    }
}
