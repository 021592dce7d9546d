//! `precis FILE`, `digest`, `summarize` and `translate`: models resolved once, then each
//! article through the pipeline and the engines.

use std::time::Instant;

use crate::cli::{DigestArgs, Engine, SummaryLang};
use crate::error::{Error, Result};
use crate::input::{self, Loaded};
use crate::models::{llm, ResolvedModel, Resolver, Role};
use crate::output::{self, Sink};
use crate::report::{Stop, SummaryReport, Timings};
use crate::settings::{LlmSettings, ModelSettings};
use crate::summarize::extractive;
use crate::summarize::llm::{Budget, LlmSummarizer, Prompter, SummarySpec};
use crate::tokenize::chat::{ChatFiles, ChatTokenizer};

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
fn check_combinations(settings: &ModelSettings, llm: &LlmSettings, mode: Mode) -> Result<()> {
    let uses_llm = mode.summarizes() && settings.engine == Engine::Llm;
    if llm.dump_prompt && !uses_llm {
        return Err(Error::Usage(
            "--dump-prompt shows the LLM summary prompt: use it with `summarize` or `digest` \
             and the llm engine"
                .into(),
        ));
    }
    if llm.instruction.is_some() && !uses_llm {
        return Err(Error::Usage(
            "--instruction is read by the LLM summary engine only (not by --engine extractive \
             or `translate`)"
                .into(),
        ));
    }
    Ok(())
}

pub fn run(args: &DigestArgs, mode: Mode, quiet: bool) -> Result<()> {
    let settings = ModelSettings::from_args(&args.models)?;
    let llm_settings = LlmSettings::from_args(&args.llm)?;
    check_combinations(&settings, &llm_settings, mode)?;
    let sources = super::sources(&args.io)?;
    let mut engines = resolve_engines(&settings, &llm_settings, mode, quiet)?;
    let spec = SummarySpec {
        bullets: settings.bullets,
        language: settings.summary_lang,
        instruction: llm_settings.instruction.clone(),
    };
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
        if llm_settings.dump_prompt {
            let chat = engines
                .llm
                .as_ref()
                .expect("resolved for --dump-prompt")
                .chat();
            let prompt = Prompter { chat, spec: &spec }.article_prompt(&loaded.document)?;
            let model = engines.summary.as_ref().expect("a model for --dump-prompt");
            let decoding = llm_settings.decoding(&model.generation);
            let budget = llm_settings
                .context_tokens
                .saturating_sub(decoding.max_new_tokens);
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
            return sink.write(&loaded.name, args.io.format, &prompt);
        }
        let format = args.io.format;
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
                    Some(&mut show),
                )?;
                if let Some(err) = failed {
                    return Err(err);
                }
                return sink.more(if report.raw.ends_with('\n') { "" } else { "\n" });
            }
            Mode::Summarize => {
                let report = summarize(&loaded, &settings, &spec, &mut engines, timings, None)?;
                output::summary(&report, title, format, sources.len())
            }
            Mode::Translate | Mode::Digest => return Err(engine_missing(&engines)),
        };
        sink.write(&loaded.name, format, &rendered)
    })?;
    sink.finish()
}

fn resolve_engines(
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
    let summary = match (mode.summarizes(), settings.engine) {
        (true, Engine::Llm) => Some(resolve(&settings.summary_model, Role::Summary)?),
        _ => None,
    };
    let llm = match &summary {
        Some(model) if llm_settings.dump_prompt => {
            Some(LlmEngine::Prompt(Box::new(chat_tokenizer(model)?)))
        }
        Some(model) => Some(LlmEngine::Loaded(Box::new(load_llm(
            model,
            settings,
            llm_settings,
        )?))),
        None => None,
    };
    let translation = match mode.translates() && !llm_settings.dump_prompt {
        true => Some(resolve(&settings.translation_model, Role::Translation)?),
        false => None,
    };
    Ok(Engines {
        translation,
        summary,
        llm,
    })
}

fn chat_tokenizer(model: &ResolvedModel) -> Result<ChatTokenizer> {
    ChatTokenizer::load(&ChatFiles::of(model))
}

/// Load the summary LLM once for the whole run.
fn load_llm(
    model: &ResolvedModel,
    settings: &ModelSettings,
    llm_settings: &LlmSettings,
) -> Result<LlmSummarizer> {
    let start = Instant::now();
    let chat = chat_tokenizer(model)?;
    let device = settings.device.open()?;
    if llm::gguf_file(model).is_some() && settings.dtype != crate::cli::DType::Auto {
        tracing::warn!(
            "--dtype is ignored for a GGUF model: its weights keep the file's quantization \
             and activations run in f32"
        );
    }
    let dtype = crate::settings::resolve_dtype(settings.dtype, &device);
    let lm = llm::load(model, &device, dtype)?;
    let info = lm.info().clone();
    let decoding = llm_settings.decoding(&model.generation);
    let context_tokens = llm_settings.context_tokens.min(info.context_length);
    if context_tokens < llm_settings.context_tokens {
        tracing::info!(
            "--context-tokens {} is more than the model's context ({}): using {context_tokens}",
            llm_settings.context_tokens,
            info.context_length
        );
    }
    if decoding.max_new_tokens + crate::settings::MIN_CONTEXT_TOKENS / 2 > context_tokens {
        return Err(Error::Usage(format!(
            "--max-new-tokens {} leaves no room for the article in a context of {context_tokens} tokens",
            decoding.max_new_tokens
        )));
    }
    tracing::info!(
        "summary model {} loaded in {:.2} s: {} {}, {:?} on {:?}; decoding {:?}",
        model.id,
        start.elapsed().as_secs_f64(),
        info.architecture,
        info.weights,
        info.dtype,
        info.device,
        decoding
    );
    Ok(LlmSummarizer {
        lm,
        chat,
        decoding,
        budget: Budget {
            context_tokens,
            prefill_chunk: PREFILL_CHUNK,
        },
    })
}

/// Prompt tokens fed to the model at once: attention scores stay `512 × context`.
const PREFILL_CHUNK: usize = 512;

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
    spec: &SummarySpec,
    engines: &mut Engines,
    mut timings: Timings,
    stream: Option<&mut dyn FnMut(&str)>,
) -> Result<SummaryReport> {
    if settings.engine == Engine::Llm {
        let Some(LlmEngine::Loaded(engine)) = engines.llm.as_mut() else {
            return Err(engine_missing(engines));
        };
        let model = engines.summary.as_ref().expect("an llm engine has a model");
        let start = Instant::now();
        let summary = engine.summarize(&loaded.document, spec, stream)?;
        timings.record("summarize", start);
        timings.add("prefill", summary.prefill_secs);
        timings.add("generate", summary.generate_secs);
        if summary.stop == Stop::Length {
            tracing::warn!(
                "{}: the summary was cut by the token limit (--max-new-tokens {}): \
                 its last bullet may be incomplete",
                loaded.name,
                engine.decoding.max_new_tokens
            );
        }
        if summary.bullets.len() < spec.bullets {
            tracing::warn!(
                "{}: the model wrote {} bullets, not {}",
                loaded.name,
                summary.bullets.len(),
                spec.bullets
            );
        }
        return Ok(SummaryReport {
            input: loaded.name.clone(),
            bullets: summary.bullets,
            language: spec.language,
            engine: Engine::Llm,
            model: Some(model.id.clone()),
            raw: summary.raw,
            stop: summary.stop,
            prompt_tokens: summary.prompt_tokens,
            generated_tokens: summary.generated_tokens,
            timings,
            removed: loaded.document.removed.clone(),
        });
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
