//! `precis FILE`, `digest`, `summarize` and `translate`: models resolved once, then each
//! article through the pipeline and the engines.

use std::time::Instant;

use crate::cli::{DigestArgs, Engine, SummaryLang};
use crate::error::{Error, Result};
use crate::input::{self, Loaded};
use crate::models::{ResolvedModel, Resolver, Role};
use crate::output::{self, Sink};
use crate::report::{Stop, SummaryReport, Timings};
use crate::settings::ModelSettings;
use crate::summarize::extractive;

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

/// The models a run needs, resolved (and checked) before any article is read, so that a
/// missing model fails in a second, not after the first article.
struct Engines {
    translation: Option<ResolvedModel>,
    summary: Option<ResolvedModel>,
}

pub fn run(args: &DigestArgs, mode: Mode, quiet: bool) -> Result<()> {
    let settings = ModelSettings::from_args(&args.models)?;
    let sources = super::sources(&args.io)?;
    let engines = resolve_engines(&settings, mode, quiet)?;
    if mode.summarizes()
        && settings.engine == Engine::Extractive
        && settings.summary_lang == SummaryLang::En
    {
        tracing::warn!(
            "the extractive engine quotes the article, so its bullets are in French \
             (English bullets from it need the translation engine)"
        );
    }
    let mut sink = Sink::new(args.io.output.as_deref(), sources.len())?;
    super::for_each_source(&sources, |source| {
        let start = Instant::now();
        let loaded = input::load(source, args.io.keep_boilerplate)?;
        let mut timings = Timings::default();
        timings.record("input", start);
        let rendered = match mode {
            Mode::Summarize => {
                let report = summarize(&loaded, &settings, &engines, timings)?;
                output::summary(
                    &report,
                    loaded.document.title.as_deref(),
                    args.io.format,
                    sources.len(),
                )
            }
            Mode::Translate | Mode::Digest => return Err(engine_missing(&engines)),
        };
        sink.write(&loaded.name, args.io.format, &rendered)
    })?;
    sink.finish()
}

fn resolve_engines(settings: &ModelSettings, mode: Mode, quiet: bool) -> Result<Engines> {
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
    let translation = match mode.translates() {
        true => Some(resolve(&settings.translation_model, Role::Translation)?),
        false => None,
    };
    Ok(Engines {
        translation,
        summary,
    })
}

/// The model engines land in their own modules; until a model's engine is built in, say so
/// plainly rather than pretend.
fn engine_missing(engines: &Engines) -> Error {
    let model = engines
        .translation
        .as_ref()
        .or(engines.summary.as_ref())
        .map(|m| format!("{} ({})", m.id, m.architecture))
        .unwrap_or_default();
    Error::Unsupported {
        what: format!(
            "{model}: the model loaded and checked, but this build of precis has no inference \
             engine for it yet; summaries work today with `--engine extractive`"
        ),
    }
}

fn summarize(
    loaded: &Loaded,
    settings: &ModelSettings,
    engines: &Engines,
    mut timings: Timings,
) -> Result<SummaryReport> {
    if settings.engine == Engine::Llm {
        return Err(engine_missing(engines));
    }
    let start = Instant::now();
    let picked = extractive::summarize(&loaded.document, settings.bullets);
    timings.record("summarize", start);
    let bullets: Vec<String> = picked.into_iter().map(|p| p.text).collect();
    Ok(SummaryReport {
        input: loaded.name.clone(),
        raw: bullets.join("\n"),
        bullets,
        language: SummaryLang::Fr,
        engine: Engine::Extractive,
        model: None,
        stop: Stop::Eos,
        prompt_tokens: 0,
        generated_tokens: 0,
        timings,
        removed: loaded.document.removed.clone(),
    })
}
