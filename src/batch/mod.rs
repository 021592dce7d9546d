//! Archive mode, `precis batch INPUT… -o OUT`: thousands of articles for hours, with a
//! manifest, resume, atomic outputs, progress, and shards for a cluster.
//!
//! The run loop streams inputs in chunks: each chunk's articles are read and prepared one by
//! one (failures and skips recorded at once), their sentences translated together (the
//! engines batch across articles), then each article is summarized, written and recorded
//! in the manifest before the next one starts. An article's outcome never stops the run; an
//! engine or disk failure does, after saving the manifest. Ctrl-C (or SIGTERM) stops after
//! the article in flight; rerunning the same command resumes.
//!
//! Modules: `inputs` (walking, JSONL, shards), `article` (one article in, its digest out),
//! `engine` (the engines' trait), `paths` (output names), `manifest`, `store` (atomic
//! writes), `progress`, `status`.

mod article;
pub mod engine;
mod inputs;
mod manifest;
mod paths;
mod progress;
mod status;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use article::{ArticleDigest, Prepared, Ready};
use engine::Engines;
use inputs::{Entry, Selection};
use manifest::{Line, Status};
use progress::Progress;

use crate::cli::{BatchFormat, BatchMode, BatchRunArgs, Engine, LangChoice};
use crate::error::{Error, Result};
use crate::report::{Stop, Timings};
use crate::settings::{LlmSettings, ModelSettings};

pub use status::status;

/// Articles read ahead and translated together.
const CHUNK: usize = 8;

/// Pacing for the interruption tests (milliseconds slept before each article); not a user
/// option.
const TEST_DELAY_VAR: &str = "PRECIS_BATCH_TEST_DELAY_MS";

/// The validated options of a run.
pub struct Settings {
    pub selection: Selection,
    pub out: PathBuf,
    pub format: BatchFormat,
    pub lang: LangChoice,
    pub keep_boilerplate: bool,
    pub progress_every: Duration,
}

impl Settings {
    pub fn from_args(args: &BatchRunArgs) -> Result<Settings> {
        let out = args
            .output
            .clone()
            .ok_or_else(|| Error::Usage("precis batch needs -o OUT (a folder)".into()))?;
        let shard = args.shard.as_deref().map(str::parse).transpose()?;
        if !(args.progress_every.is_finite() && args.progress_every >= 0.0) {
            return Err(Error::Usage(format!(
                "invalid --progress-every {}: give a number of seconds, 0 or more",
                args.progress_every
            )));
        }
        let selection = Selection {
            roots: args.inputs.clone(),
            glob: inputs::globset(&args.glob)?,
            shard,
            exclude: Some(out.clone()),
        };
        selection.check_roots()?;
        Ok(Settings {
            selection,
            out,
            format: args.format,
            lang: args.lang,
            keep_boilerplate: args.keep_boilerplate,
            progress_every: Duration::from_secs_f64(args.progress_every),
        })
    }

    /// What, besides the engines, changes an article's results.
    fn fingerprint(&self, engines: &dyn Engines) -> String {
        let text = format!(
            "precis {}; {}; format={:?}; lang={:?}; keep_boilerplate={}",
            env!("CARGO_PKG_VERSION"),
            engines.fingerprint(),
            self.format,
            self.lang,
            self.keep_boilerplate
        );
        article::sha256_hex(text.as_bytes())[..16].to_string()
    }
}

/// Run `precis batch INPUT… -o OUT`.
pub fn run(args: &BatchRunArgs, quiet: bool) -> Result<()> {
    let models = ModelSettings::from_args(&args.models)?;
    let llm = LlmSettings::from_args(&args.llm)?;
    llm.check_engine(args.mode != BatchMode::Translate && models.engine == Engine::Llm)?;
    let settings = Settings::from_args(args)?;
    let engines = engine::LocalEngines::load(&models, &llm, &args.search, args.mode, quiet)?;
    run_with(&settings, &engines, quiet)
}

/// Run with the given engines (the real ones, or a test's).
pub fn run_with(settings: &Settings, engines: &dyn Engines, quiet: bool) -> Result<()> {
    let mut run = Run::start(settings, engines, quiet)?;
    let outcome = run.all();
    run.end(outcome)
}

/// An article read and prepared, waiting for the engines.
struct Pending {
    key: String,
    sha256: String,
    outputs: Vec<String>,
    ready: Box<Ready>,
    /// Milliseconds spent reading and preparing it.
    prepare_ms: f64,
}

/// The state of one run.
struct Run<'a> {
    settings: &'a Settings,
    engines: &'a dyn Engines,
    fingerprint: String,
    manifest_path: PathBuf,
    /// Each input's line from earlier runs.
    previous: BTreeMap<String, Line>,
    appender: manifest::Appender,
    claims: paths::Claims,
    progress: Progress,
    interrupted: Arc<AtomicBool>,
    /// Whether the run stopped on Ctrl-C with inputs left.
    stopped: bool,
    delay: Option<Duration>,
    _lock: std::fs::File,
}

impl<'a> Run<'a> {
    fn start(settings: &'a Settings, engines: &'a dyn Engines, quiet: bool) -> Result<Run<'a>> {
        let out = &settings.out;
        let lock = store::open_output(out)?;
        let stale = store::remove_stale_temps(out)?;
        if stale > 0 {
            tracing::info!("removed {stale} temporary file(s) left by an interrupted run");
        }
        let manifest_path = out.join(manifest::FILE);
        let previous = manifest::compact(&manifest_path)?.lines;
        let total = settings.selection.entries().count();
        Ok(Run {
            settings,
            engines,
            fingerprint: settings.fingerprint(engines),
            appender: manifest::Appender::open(&manifest_path)?,
            manifest_path,
            previous,
            claims: paths::Claims::default(),
            progress: Progress::new(total, quiet, settings.progress_every),
            interrupted: interrupt_flag(),
            stopped: false,
            delay: std::env::var(TEST_DELAY_VAR)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            _lock: lock,
        })
    }

    fn all(&mut self) -> Result<()> {
        let settings = self.settings;
        let mut entries = settings.selection.entries();
        loop {
            let chunk: Vec<Entry> = entries.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            self.chunk(chunk)?;
            if self.stopped {
                return Ok(());
            }
        }
    }

    /// Save the manifest, say what happened, and turn the outcome into the exit status.
    fn end(self, outcome: Result<()>) -> Result<()> {
        manifest::compact(&self.manifest_path)?;
        self.progress.finish(&self.settings.out);
        outcome?;
        let counts = self.progress.counts;
        if self.stopped {
            return Err(Error::Interrupted {
                done: counts.finished(),
                total: self.progress.total,
                command: resume_command(),
            });
        }
        if counts.failed > 0 {
            return Err(Error::ArticlesFailed {
                failed: counts.failed,
                total: counts.finished(),
                manifest: self.manifest_path.clone(),
                out: shell_quote(&self.settings.out.to_string_lossy()),
            });
        }
        Ok(())
    }

    fn should_stop(&mut self) -> bool {
        self.stopped = self.stopped || self.interrupted.load(Ordering::SeqCst);
        self.stopped
    }

    fn chunk(&mut self, chunk: Vec<Entry>) -> Result<()> {
        let mut pending = Vec::new();
        for entry in chunk {
            if self.should_stop() {
                return Ok(());
            }
            if let Some(p) = self.prepare(entry)? {
                pending.push(p);
            }
        }
        let translations = self.translate(&pending)?;
        for (p, translation) in pending.into_iter().zip(translations) {
            if self.should_stop() {
                return Ok(());
            }
            self.finish(p, translation)?;
        }
        Ok(())
    }

    /// Name, read and prepare one input; record it at once unless it goes on to the engines.
    fn prepare(&mut self, entry: Entry) -> Result<Option<Pending>> {
        let start = Instant::now();
        let outputs = self.outputs(&entry);
        let raw = article::read(&entry.key, entry.payload);
        let unchanged = self.previous.get(&entry.key).is_some_and(|line| {
            line.is_current(&raw.sha256, &self.fingerprint, &outputs, &self.settings.out)
        });
        if unchanged {
            self.progress.resumed();
            return Ok(None);
        }
        let prepared = match raw.bytes {
            Err(err) => Prepared::Failed(err),
            Ok((kind, bytes)) => article::prepare(
                &entry.key,
                kind,
                &bytes,
                self.settings.keep_boilerplate,
                self.settings.lang,
            ),
        };
        let (status, error, sentences) = match prepared {
            Prepared::Ready(ready) => {
                return Ok(Some(Pending {
                    key: entry.key,
                    sha256: raw.sha256,
                    outputs,
                    ready,
                    prepare_ms: ms_since(start),
                }))
            }
            Prepared::Skipped(reason, sentences) => (Status::Skipped, reason, sentences),
            Prepared::Failed(err) => (Status::Failed, reason(&entry.key, &err), 0),
        };
        let mut timings = Timings::default();
        timings.record("total", start);
        self.record(Line {
            input: entry.key,
            sha256: raw.sha256,
            status,
            error: Some(error),
            output: Vec::new(),
            fingerprint: self.fingerprint.clone(),
            sentences,
            timings,
        })?;
        Ok(None)
    }

    /// The result files of an entry, relative to OUT (claimed in input order).
    fn outputs(&mut self, entry: &Entry) -> Vec<String> {
        let stem = self.claims.claim(&entry.stem, &entry.key);
        let exts: &[&str] = match self.settings.format {
            BatchFormat::Json => &["json"],
            BatchFormat::Md => &["md"],
            BatchFormat::Both => &["json", "md"],
        };
        exts.iter().map(|ext| format!("{stem}.{ext}")).collect()
    }

    /// Translate the sentences of all pending articles in one call; if that fails for a
    /// reason of its own, article by article, so that one bad article fails alone.
    fn translate(&self, pending: &[Pending]) -> Result<Vec<Option<Translated>>> {
        if !self.engines.translates() || pending.is_empty() {
            return Ok(pending.iter().map(|_| None).collect());
        }
        let start = Instant::now();
        let all: Vec<&str> = pending.iter().flat_map(|p| p.ready.sentences()).collect();
        match self.engines.translate(&all) {
            Ok(targets) if targets.len() == all.len() => {
                let share = start.elapsed().as_secs_f64() * 1000.0 / all.len().max(1) as f64;
                let mut targets = targets.into_iter();
                Ok(pending
                    .iter()
                    .map(|p| {
                        let n = p.ready.sentences().count();
                        let mine: Vec<_> = targets.by_ref().take(n).collect();
                        Some(Ok((mine, share * n as f64)))
                    })
                    .collect())
            }
            Ok(targets) => Err(Error::Unsupported {
                what: format!(
                    "the translation engine returned {} sentences for {}",
                    targets.len(),
                    all.len()
                ),
            }),
            Err(err) if engine::is_fatal(&err) => Err(err),
            Err(_) => pending.iter().map(|p| self.translate_one(p)).collect(),
        }
    }

    fn translate_one(&self, p: &Pending) -> Result<Option<Translated>> {
        let start = Instant::now();
        let sentences: Vec<&str> = p.ready.sentences().collect();
        match self.engines.translate(&sentences) {
            Ok(targets) => Ok(Some(Ok((targets, start.elapsed().as_secs_f64() * 1000.0)))),
            Err(err) if engine::is_fatal(&err) => Err(err),
            Err(err) => Ok(Some(Err(err))),
        }
    }

    /// Summarize, write the results, record the article.
    fn finish(&mut self, p: Pending, translation: Option<Translated>) -> Result<()> {
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
        let start = Instant::now();
        let mut timings = p.ready.timings.clone();
        let translation = match translation {
            None => None,
            Some(Ok((targets, ms))) => {
                timings.set("translate", ms);
                Some(targets)
            }
            Some(Err(err)) => return self.failed(p, err, start),
        };
        let summary = match self.engines.summarizes() {
            false => None,
            true => match self.engines.summarize(&p.key, &p.ready.loaded.document) {
                Ok(report) => Some(report),
                Err(err) if engine::is_fatal(&err) => return Err(err),
                Err(err) => return self.failed(p, err, start),
            },
        };
        if let Some(report) = &summary {
            timings.extend(report.timings.clone());
        }
        let digest = ArticleDigest::new(
            &p.key,
            &p.ready,
            summary,
            translation,
            self.engines.models(),
        );
        let write_start = Instant::now();
        for output in &p.outputs {
            let text = match output.ends_with(".json") {
                true => digest.json(),
                false => digest.markdown(),
            };
            store::write_atomic(&self.settings.out.join(output), text.as_bytes())?;
        }
        timings.record("write", write_start);
        set_total(&mut timings, p.prepare_ms, start);
        let sentences = p.ready.sentences().count();
        self.record(Line {
            input: p.key,
            sha256: p.sha256,
            status: Status::Done,
            error: None,
            output: p.outputs,
            fingerprint: self.fingerprint.clone(),
            sentences,
            timings,
        })
    }

    fn failed(&mut self, p: Pending, err: Error, start: Instant) -> Result<()> {
        let mut timings = p.ready.timings.clone();
        set_total(&mut timings, p.prepare_ms, start);
        self.record(Line {
            error: Some(reason(&p.key, &err)),
            input: p.key,
            sha256: p.sha256,
            status: Status::Failed,
            output: Vec::new(),
            fingerprint: self.fingerprint.clone(),
            sentences: p.ready.sentences().count(),
            timings,
        })
    }

    /// Append the article's line; remove results of an earlier run it no longer has.
    fn record(&mut self, line: Line) -> Result<()> {
        if let Some(previous) = self.previous.get(&line.input) {
            let stale: Vec<String> = previous
                .output
                .iter()
                .filter(|o| !line.output.contains(o))
                .cloned()
                .collect();
            store::remove_outputs(&self.settings.out, &stale)?;
        }
        self.appender.append(&line)?;
        if line.status == Status::Failed {
            let reason = line.error.as_deref().unwrap_or_default();
            self.progress
                .note(&format!("precis: {}: {reason}", line.input));
        }
        self.progress.finished(line.status, line.sentences);
        Ok(())
    }
}

/// An article's translations and the milliseconds spent on them, or why it failed.
type Translated = Result<(Vec<(String, Stop)>, f64)>;

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The time spent on the article itself: preparing, its share of the chunk's translation,
/// and its own work since `start` (not the time it waited for the rest of its chunk).
fn set_total(timings: &mut Timings, prepare_ms: f64, start: Instant) {
    let translate_ms = timings.get("translate").unwrap_or(0.0);
    timings.set("total", prepare_ms + translate_ms + ms_since(start));
}

/// An error as one line for the manifest: the message and its causes, without the input's
/// name in front (the line names the input).
fn reason(key: &str, err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let text = text.replace('\n', " ");
    match text.strip_prefix(&format!("{key}: ")) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Set on Ctrl-C (SIGINT) or SIGTERM; a second signal ends the process at once (every
/// output is whole or absent either way). Installed once per process.
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = Arc::clone(&flag);
        let installed = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                eprintln!("precis: stopped at once; rerun the same command to resume");
                std::process::exit(130);
            }
            eprintln!(
                "\nprecis: stopping after the article in flight (Ctrl-C again to stop at once)"
            );
        });
        if let Err(err) = installed {
            tracing::warn!("Ctrl-C will stop the run at once (no handler: {err})");
        }
        flag
    })
    .clone()
}

/// The command line that resumes this run: this one.
fn resume_command() -> String {
    let args: Vec<String> = std::env::args()
        .enumerate()
        .map(|(i, a)| match i {
            0 => "precis".to_string(),
            _ => shell_quote(&a),
        })
        .collect();
    args.join(" ")
}

/// Quote an argument for a POSIX shell, only when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    match plain {
        true => arg.to_string(),
        false => format!("'{}'", arg.replace('\'', r"'\''")),
    }
}

#[cfg(test)]
mod tests;
