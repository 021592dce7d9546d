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
use crate::settings::{self, LlmSettings, ModelSettings};
use crate::summarize::extractive;
use crate::summarize::llm::{
    generate_options, max_new_tokens, LlmSummarizer, Prompter, SummarySpec,
};
use crate::tokenize::chat::{ChatFiles, ChatTokenizer};
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
    llm: Option<LlmEngine>,
}

/// The LLM summary engine, as far as the run needs it.
enum LlmEngine {
    /// Tokenizer and chat template only: `--dump-prompt` reads no weights.
    Prompt(Box<ChatTokenizer>),
    Loaded(Box<LlmSummarizer>),
}

impl LlmEngine {
    fn chat(&self) -> &ChatTokenizer {
        match self {
            LlmEngine::Prompt(chat) => chat,
            LlmEngine::Loaded(engine) => &engine.chat,
        }
    }
}

/// Options that make sense only with the LLM engine, refused with another.
fn check_combinations(
    settings: &ModelSettings,
    llm: &LlmSettings,
    dump_prompt: bool,
    mode: Mode,
) -> Result<()> {
    let uses_llm = mode.summarizes() && settings.engine == Engine::Llm;
    if dump_prompt && !uses_llm {
        return Err(Error::Usage(
            "--dump-prompt shows the LLM summary prompt: use it with `summarize` or `digest` \
             and the llm engine"
                .into(),
        ));
    }
    llm.check_engine(uses_llm)
}

pub fn run(args: &DigestArgs, mode: Mode, quiet: bool) -> Result<()> {
    let settings = ModelSettings::from_args(&args.models)?;
    let llm_settings = LlmSettings::from_args(&args.llm)?;
    check_combinations(&settings, &llm_settings, args.dump_prompt, mode)?;
    let sources = super::sources(&args.io)?;
    let mut engines = load_engines(args, &settings, &llm_settings, mode, quiet)?;
    let spec = SummarySpec {
        bullets: settings.bullets,
        language: settings.summary_lang,
        instruction: llm_settings.instruction.clone(),
    };
    let count = sources.len();
    let format = args.io.format;
    let mut sink = Sink::new(args.io.output.as_deref(), count)?;
    super::for_each_source(&sources, |source| {
        let start = Instant::now();
        let loaded = input::load(source, args.io.keep_boilerplate)?;
        let mut timings = Timings::default();
        timings.record("input", start);
        if args.dump_prompt {
            let prompt = dump_prompt(&loaded, &spec, &engines, &llm_settings)?;
            return sink.write(&loaded.name, format, &prompt);
        }
        let title = loaded.document.title.as_deref();
        let rendered = match mode {
            Mode::Summarize if settings.engine == Engine::Llm && sink.is_terminal(format) => {
                // On a terminal the summary shows as the model writes it.
                sink.begin(&loaded.name, format, &output::summary_title(title, format))?;
                let mut failed = None;
                let mut show = |text: &str| {
                    if failed.is_none() {
                        failed = sink.more(text).err();
                    }
                };
                let report = summarize(
                    &loaded,
                    &settings,
                    &spec,
                    &mut engines,
                    timings,
                    None,
                    Some(&mut show),
                )?;
                if let Some(err) = failed {
                    return Err(err);
                }
                return sink.more(if report.raw.ends_with('\n') { "" } else { "\n" });
            }
            Mode::Summarize => {
                let report =
                    summarize(&loaded, &settings, &spec, &mut engines, timings, None, None)?;
                output::summary(&report, title, format, count)
            }
            Mode::Translate => {
                let mut report = translate(&loaded, &engines)?;
                report.timings.extend(timings);
                output::translation(&report, format, count)
            }
            Mode::Digest => {
                let translation = translate(&loaded, &engines)?;
                let summary = summarize(
                    &loaded,
                    &settings,
                    &spec,
                    &mut engines,
                    timings,
                    Some(&translation),
                    None,
                )?;
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

/// `--dump-prompt`: the prompt the model would read for this article, byte for byte.
fn dump_prompt(
    loaded: &Loaded,
    spec: &SummarySpec,
    engines: &Engines,
    llm_settings: &LlmSettings,
) -> Result<String> {
    let chat = engines
        .llm
        .as_ref()
        .expect("resolved for --dump-prompt")
        .chat();
    let prompt = Prompter { chat, spec }.article_prompt(&loaded.document)?;
    let model = engines.summary.as_ref().expect("a model for --dump-prompt");
    let options = generate_options(
        chat.stop_ids(),
        &model.generation,
        &llm_settings.overrides(),
    )?;
    let budget = llm_settings
        .context_tokens
        .saturating_sub(max_new_tokens(&options));
    let tokens = chat.encode(&prompt)?.len();
    if tokens > budget {
        tracing::info!(
            "{}: this prompt has {tokens} tokens, over the budget of {budget} \
             (--context-tokens minus --max-new-tokens): summarize would split the \
             article into parts",
            loaded.name
        );
    } else {
        tracing::info!("{}: the prompt has {tokens} tokens", loaded.name);
    }
    Ok(prompt)
}

fn load_engines(
    args: &DigestArgs,
    settings: &ModelSettings,
    llm_settings: &LlmSettings,
    mode: Mode,
    quiet: bool,
) -> Result<Engines> {
    let resolver = Resolver::from_env(quiet)?;
    let resolve = |name: &str, role| -> Result<ResolvedModel> {
        let model = resolver.resolve(name, role)?;
        tracing::info!("{}: {} ({})", role.flag(), model.id, model.architecture);
        Ok(model)
    };
    // Opened once, by the first engine that needs it, and shared.
    let mut opened: Option<candle_core::Device> = None;
    let mut device = || -> Result<candle_core::Device> {
        if opened.is_none() {
            opened = Some(settings.device.open()?);
        }
        Ok(opened.clone().expect("opened above"))
    };
    let summary = match (mode.summarizes(), settings.engine) {
        (true, Engine::Llm) => Some(resolve(&settings.summary_model, Role::Summary)?),
        _ => None,
    };
    let llm = match &summary {
        Some(model) if args.dump_prompt => {
            Some(LlmEngine::Prompt(Box::new(chat_tokenizer(model)?)))
        }
        Some(model) => Some(LlmEngine::Loaded(Box::new(LlmSummarizer::load(
            model,
            &device()?,
            settings.dtype,
            llm_settings,
        )?))),
        None => None,
    };
    if args.dump_prompt {
        // The prompt is all this run prints: no translation model is needed.
        return Ok(Engines {
            translator: None,
            summary,
            llm,
        });
    }
    let extractive_en = mode.summarizes()
        && settings.engine == Engine::Extractive
        && settings.summary_lang == SummaryLang::En;
    let translator = if mode.translates() {
        Some(load_translator(
            &resolve(&settings.translation_model, Role::Translation)?,
            args,
            settings,
            &device()?,
        )?)
    } else if extractive_en {
        // English bullets from the extractive engine need the translation model, used only
        // if it is already here: a summary never triggers a 300 MB download.
        match resolver.resolve_cached(&settings.translation_model, Role::Translation) {
            Ok(model) => Some(load_translator(&model, args, settings, &device()?)?),
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
        llm,
    })
}

fn load_translator(
    model: &ResolvedModel,
    args: &DigestArgs,
    settings: &ModelSettings,
    device: &candle_core::Device,
) -> Result<Translator> {
    let (overrides, batching) = settings::search_settings(&args.search)?;
    let dtype = settings::resolve_dtype(settings.dtype, device);
    Translator::load(model, device, dtype, &overrides, batching)
}

fn translate(loaded: &Loaded, engines: &Engines) -> Result<TranslationReport> {
    let translator = engines
        .translator
        .as_ref()
        .expect("translator loaded for this mode");
    translator.translate_document(&loaded.name, &loaded.document)
}

fn chat_tokenizer(model: &ResolvedModel) -> Result<ChatTokenizer> {
    ChatTokenizer::load(&ChatFiles::of(model))
}

/// A summary from the LLM engine.
fn summarize_llm(
    loaded: &Loaded,
    spec: &SummarySpec,
    engines: &mut Engines,
    timings: Timings,
    stream: Option<&mut dyn FnMut(&str)>,
) -> Result<SummaryReport> {
    let Some(LlmEngine::Loaded(engine)) = engines.llm.as_mut() else {
        unreachable!("the LLM is loaded when it summarizes")
    };
    let model = engines.summary.as_ref().expect("an llm engine has a model");
    let mut report = engine.report(&loaded.name, &loaded.document, spec, &model.id, stream)?;
    report.timings.extend(timings);
    if report.stop == Stop::Length {
        tracing::warn!(
            "{}: the summary was cut by the token limit (--max-new-tokens {}): \
             its last bullet may be incomplete",
            loaded.name,
            max_new_tokens(&engine.options)
        );
    }
    if report.bullets.len() < spec.bullets {
        let wrote = report.bullets.len();
        tracing::warn!(
            "{}: the model wrote {wrote} bullet{}, not {}",
            loaded.name,
            if wrote == 1 { "" } else { "s" },
            spec.bullets
        );
    }
    Ok(report)
}

fn summarize(
    loaded: &Loaded,
    settings: &ModelSettings,
    spec: &SummarySpec,
    engines: &mut Engines,
    mut timings: Timings,
    translation: Option<&TranslationReport>,
    stream: Option<&mut dyn FnMut(&str)>,
) -> Result<SummaryReport> {
    if settings.engine == Engine::Llm {
        return summarize_llm(loaded, spec, engines, timings, stream);
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
