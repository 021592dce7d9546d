//! Command-line arguments as clap parses them: raw values, no I/O, no validation beyond types
//! (`settings` turns them into checked settings).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  precis article.txt                          title, bullet summary and English translation
  cat article.txt | precis translate          translate standard input
  precis summarize --engine extractive a.txt  bullets with no model at all
  precis inspect --format json a.txt          what the pipeline sees
  precis models list                          the model registry and what is cached
  precis models pull opus-mt-fr-en            download a model into the Hugging Face cache";

/// Bullet summaries and faithful English translations of French news articles, with local models.
#[derive(Debug, Parser)]
#[command(
    name = "precis",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// With no subcommand, `precis FILE…` is `precis digest FILE…`.
    #[command(flatten)]
    pub digest: DigestArgs,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options that every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Title, bullet summary and English translation of each article.
    #[command(
        after_help = "Examples:\n  precis digest article.txt\n  precis digest --format json -o out.json article.txt\n  precis digest --engine extractive --translation-model ./opus-mt-fr-en article.txt"
    )]
    Digest(DigestArgs),

    /// Bullet summary of each article.
    #[command(
        after_help = "Examples:\n  precis summarize article.txt\n  precis summarize --bullets 3 --summary-lang fr article.txt\n  precis summarize --engine extractive --format json article.txt\n  precis summarize --summary-model ./qwen2.5-1.5b-instruct-q8_0.gguf article.txt\n  precis summarize --instruction \"Name every person quoted.\" article.txt\n  precis summarize --temperature 0.7 --top-p 0.9 --seed 42 article.txt\n  precis summarize --dump-prompt article.txt > prompt.txt"
    )]
    Summarize(DigestArgs),

    /// English translation of each article, paragraph by paragraph.
    #[command(
        after_help = "Examples:\n  precis translate article.txt\n  cat article.txt | precis translate --format text\n  precis translate --translation-model Helsinki-NLP/opus-mt-fr-en@refs/pr/4 article.txt"
    )]
    Translate(DigestArgs),

    /// Show what the pipeline sees: title, paragraphs, sentences, and removed boilerplate.
    #[command(
        after_help = "Examples:\n  precis inspect article.txt\n  precis inspect --format json samples/*.txt\n  precis inspect --keep-boilerplate article.txt"
    )]
    Inspect(InspectArgs),

    /// The model registry and the local Hugging Face cache.
    #[command(subcommand)]
    Models(ModelsCommand),

    /// Archive mode: every article of files, folders and JSONL feeds into OUT/, with a
    /// manifest, resume, and shards for a cluster.
    #[command(after_help = BATCH_EXAMPLES)]
    Batch(BatchArgs),
}

const BATCH_EXAMPLES: &str = "\
Examples:
  precis batch archive/ -o out/                        digest every article under archive/
  precis batch --mode summarize --engine extractive archive/ feed.jsonl -o out/
  precis batch --mode summarize archive/ -o out/       LLM bullet summaries only
  precis batch --glob '2024/**/*.html' archive/ -o out/
  precis batch archive/ -o out/                        (again) resume: finished articles are skipped
  precis batch --shard 2/8 archive/ -o out/shard-2     the 2nd of 8 disjoint parts
  precis batch status out/shard-*                      totals, throughput and failures";

/// `precis batch INPUT… -o OUT`, or `precis batch status OUT…`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub command: Option<BatchCommand>,

    #[command(flatten)]
    pub run: BatchRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Summarize the manifests of one or more batch outputs (e.g. all shards of a run).
    #[command(
        after_help = "Examples:\n  precis batch status out/\n  precis batch status out/shard-1 out/shard-2 out/shard-3\n  precis batch status --format json out/shard-*"
    )]
    Status(BatchStatusArgs),
}

#[derive(Debug, Args)]
pub struct BatchStatusArgs {
    /// Output folders of `precis batch` runs (each holds a manifest.jsonl).
    #[arg(value_name = "OUT", required = true)]
    pub outputs: Vec<PathBuf>,

    /// Report format.
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct BatchRunArgs {
    /// Article files (.txt, .html, .htm, .jsonl) and folders, walked recursively.
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Output folder: one result per article, and manifest.jsonl.
    #[arg(short, long, value_name = "OUT", required = true)]
    pub output: Option<PathBuf>,

    /// Only files in folders whose path (relative to the folder given) matches; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub glob: Vec<String>,

    /// Which results to produce.
    #[arg(long, value_enum, default_value_t = BatchMode::Digest)]
    pub mode: BatchMode,

    /// Result files per article.
    #[arg(short, long, value_enum, default_value_t = BatchFormat::Both)]
    pub format: BatchFormat,

    /// Article language: detect it (and skip what is not French), or take every article as
    /// French.
    #[arg(long, value_enum, default_value_t = LangChoice::Auto)]
    pub lang: LangChoice,

    /// Process only part K of N (1 ≤ K ≤ N) of the inputs, chosen by a stable hash of each
    /// input's name: N runs with K = 1…N cover every input exactly once.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Keep bylines, share buttons, comment sections and other boilerplate lines.
    #[arg(long)]
    pub keep_boilerplate: bool,

    /// When stderr is not a terminal, print a progress line every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub progress_every: f64,

    #[command(flatten)]
    pub models: ModelArgs,

    #[command(flatten)]
    pub search: SearchArgs,

    #[command(flatten)]
    pub llm: LlmArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// Summary and translation.
    Digest,
    /// Summary only.
    Summarize,
    /// Translation only.
    Translate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchFormat {
    /// OUT/<name>.json
    Json,
    /// OUT/<name>.md
    Md,
    /// Both files.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangChoice {
    /// Detect each article's language; articles clearly not in French are skipped.
    Auto,
    /// Every article is French: no detection.
    Fr,
}

/// Where articles come from and where results go.
#[derive(Debug, Args, Clone)]
pub struct IoArgs {
    /// Article files; `-` (or nothing, with piped input) reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Md)]
    pub format: Format,

    /// Write the result to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Keep bylines, share buttons, comment sections and other boilerplate.
    #[arg(long)]
    pub keep_boilerplate: bool,
}

#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    #[command(flatten)]
    pub io: IoArgs,
}

#[derive(Debug, Args, Clone)]
pub struct DigestArgs {
    #[command(flatten)]
    pub io: IoArgs,

    #[command(flatten)]
    pub models: ModelArgs,

    #[command(flatten)]
    pub search: SearchArgs,

    #[command(flatten)]
    pub llm: LlmArgs,

    /// Print the exact prompt the model would read (chat template applied) and exit,
    /// without loading the weights.
    #[arg(long, help_heading = "LLM summary options")]
    pub dump_prompt: bool,
}

/// Translation search: the model's generation_config.json, overridden here.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Translation search")]
pub struct SearchArgs {
    /// Beam size; 1 is greedy (default: the model's, 4 for opus-mt).
    #[arg(long, value_name = "N")]
    pub beams: Option<usize>,

    /// Beam scores are divided by length^P: above 1 favours longer outputs.
    #[arg(long, value_name = "P")]
    pub length_penalty: Option<f64>,

    /// Longest output in tokens, counting the start token (default: the model's, 512).
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,

    /// Cut outputs longer than F times their source (like marian-decoder's --max-length-factor;
    /// with beam search, F times the longest source of the batch).
    #[arg(long, value_name = "F")]
    pub max_length_factor: Option<f32>,

    /// Never repeat an n-gram of this size.
    #[arg(long, value_name = "N")]
    pub no_repeat_ngram: Option<usize>,

    /// Penalize tokens already generated (transformers' repetition_penalty; 1 is off).
    #[arg(long, value_name = "P")]
    pub repetition_penalty: Option<f32>,

    /// Most source tokens decoded at once (sentences × longest source): sentences are sorted
    /// by length, longest first; greedy search keeps that many busy, a finished sentence
    /// handing its row to the next, and beam search cuts batches of this size [default: 4096
    /// on the CPU, 32768 on a GPU]
    #[arg(long, value_name = "N")]
    pub batch_tokens: Option<usize>,

    /// Most sentences decoded at once [default: 64 on the CPU, 256 on a GPU]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

/// How the LLM summary engine prompts and decodes.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "LLM summary options")]
pub struct LlmArgs {
    /// An extra instruction for the summary, added to the prompt's rules
    /// (e.g. "Name every person quoted.").
    #[arg(long, value_name = "TEXT")]
    pub instruction: Option<String>,

    /// Most tokens to generate per summary [default: the manifest's, else 512].
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<usize>,

    /// Sampling temperature; 0 (the default) decodes greedily, for reproducible summaries.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Nucleus sampling: draw only from the most likely tokens whose probabilities add up to P
    /// (with --temperature > 0) [default: 1, off].
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Draw only from the K most likely tokens (with --temperature > 0); 0 turns it off
    /// [default: 50, as transformers].
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Seed of the sampler: the same seed, model and input give the same summary.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// The summary model's repetition penalty, with transformers' semantics
    /// (`repetition_penalty`): every token already in the prompt or the summary has its logit
    /// divided by P (multiplied if negative); not llama.cpp's penalty over the last N tokens.
    /// 1 turns it off [default: the manifest's, 1.05 for qwen2.5-1.5b-instruct, else 1]. (The
    /// translation model's is --repetition-penalty.)
    #[arg(long, value_name = "P")]
    pub repeat_penalty: Option<f32>,

    /// Token budget of one model call, prompt and answer together; a longer article is
    /// summarized in parts whose bullets are then merged (capped by the model's context).
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub context_tokens: usize,
}

/// Model, device and summary options shared by digest, summarize and translate.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Translation model: a registry name, a Hub id `org/name[@revision]`, or a local folder.
    #[arg(long, value_name = "MODEL", default_value = "opus-mt-fr-en")]
    pub translation_model: String,

    /// Summary model: a registry name, a Hub id `org/name[@revision]`, a local folder, or a
    /// .gguf file with tokenizer.json and tokenizer_config.json beside it [default:
    /// qwen2.5-1.5b-instruct (GGUF q4_k_m) on the CPU, qwen2.5-1.5b-instruct-bf16 on a GPU]
    #[arg(long, value_name = "MODEL")]
    pub summary_model: Option<String>,

    /// Where models run: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,

    /// Weight precision: auto (f32 on CPU, bf16/f16 on GPU), f32, f16 or bf16.
    #[arg(long, value_enum, default_value_t = DType::Auto)]
    pub dtype: DType,

    /// Number of summary bullets.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub bullets: usize,

    /// Language of the summary.
    #[arg(long, value_enum, default_value_t = SummaryLang::En)]
    pub summary_lang: SummaryLang,

    /// Summary engine: an instruct LLM, or model-free extraction of key sentences.
    #[arg(long, value_enum, default_value_t = Engine::Llm)]
    pub engine: Engine,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registry's models and whether each is in the local cache.
    List {
        /// Output format (md and text print a table).
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Download a model's files into the Hugging Face cache, with a progress bar.
    Pull { model: String },
    /// Print the local folder holding a model's files.
    Path { model: String },
    /// Check that a model's cached files are whole: sizes, checksums, headers that parse.
    Verify {
        /// Models to check (all cached registry models when omitted).
        models: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Markdown.
    Md,
    /// Plain text.
    Text,
    /// JSON (one object per article; JSON Lines for several articles).
    Json,
    /// JSON Lines: one compact object per line.
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DType {
    Auto,
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryLang {
    En,
    Fr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Llm,
    Extractive,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_files_mean_digest() {
        let cli = Cli::try_parse_from(["precis", "a.txt", "--bullets", "3"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.digest.io.files, vec![PathBuf::from("a.txt")]);
        assert_eq!(cli.digest.models.bullets, 3);
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["precis", "inspect", "--format", "json", "a.txt"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Inspect(_))));
        let cli = Cli::try_parse_from(["precis", "models", "pull", "opus-mt-fr-en"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Models(ModelsCommand::Pull { .. }))
        ));
    }

    #[test]
    fn batch_runs_and_status_parse() {
        let cli = Cli::try_parse_from([
            "precis",
            "batch",
            "--shard",
            "1/3",
            "a/",
            "b.jsonl",
            "-o",
            "out",
            "--bullets",
            "2",
        ])
        .unwrap();
        let Some(Command::Batch(batch)) = cli.command else {
            panic!("not batch");
        };
        assert!(batch.command.is_none());
        assert_eq!(
            batch.run.inputs,
            [PathBuf::from("a/"), PathBuf::from("b.jsonl")]
        );
        assert_eq!(batch.run.models.bullets, 2);
        assert_eq!(batch.run.shard.as_deref(), Some("1/3"));
        let cli = Cli::try_parse_from(["precis", "batch", "status", "o1", "o2"]).unwrap();
        let Some(Command::Batch(batch)) = cli.command else {
            panic!("not batch");
        };
        assert!(matches!(batch.command, Some(BatchCommand::Status(s)) if s.outputs.len() == 2));
        assert!(
            Cli::try_parse_from(["precis", "batch", "a/"]).is_err(),
            "-o is required"
        );
    }
}
