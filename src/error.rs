//! Errors: one enum for everything precis reports, each variant with its cause, the file or
//! model it concerns, a remedy, and a documented exit code.

use std::path::PathBuf;

/// Where an article came from, for messages: a path or standard input.
pub type InputName = String;

/// Everything that can go wrong in precis, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: no such file; check the path, or pass `-` to read standard input")]
    InputNotFound { path: PathBuf },

    #[error(
        "{path}: is a directory; give article files (e.g. {path}/*.txt), \
         or translate a whole folder with `precis batch {path} -o OUT/`"
    )]
    InputIsDirectory { path: PathBuf },

    #[error("{name}: cannot read the input")]
    InputUnreadable {
        name: InputName,
        #[source]
        source: std::io::Error,
    },

    #[error("{name}: {what}; there is nothing to summarize or translate")]
    InputEmpty { name: InputName, what: String },

    #[error(
        "{name}: not a text article ({reason}); precis reads UTF-8, UTF-16 with a BOM, \
         and Windows-1252/Latin-1 text files"
    )]
    InputBinary { name: InputName, reason: String },

    #[error("no input: give one or more FILEs, or pipe an article into standard input (`cat article.txt | precis ...`)")]
    NoInput,

    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    ModelNotCached(Box<MissingModel>),

    #[error(transparent)]
    Download(Box<DownloadFailed>),

    #[error(
        "unknown model '{name}': it is not in the registry (see `precis models list`), \
         not a local folder, and not a Hub id like `org/name[@revision]`"
    )]
    UnknownModel { name: String },

    #[error("model folder {path}: {problem}")]
    ModelFolder { path: PathBuf, problem: String },

    #[error("{path}: {what}")]
    ModelFile {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    #[error("models/{file}: invalid model manifest")]
    Manifest {
        file: String,
        #[source]
        source: toml::de::Error,
    },

    #[error("{what}")]
    Unsupported { what: String },

    /// A model computation failed (shapes, device, out of memory): the model cannot run here.
    #[error("{what}")]
    Inference {
        what: String,
        #[source]
        source: candle_core::Error,
    },

    #[error("cannot write {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{failed} of {total} inputs failed (see the errors above)")]
    SomeInputsFailed {
        failed: usize,
        total: usize,
        code: u8,
    },

    #[error(
        "{name}: {what}; precis reads news articles of up to {max} \
         (split the file, or check that it is an article)"
    )]
    InputTooLong {
        name: InputName,
        what: String,
        max: String,
    },

    #[error("{dir}: no manifest.jsonl here; give the OUT folder of a `precis batch … -o OUT` run")]
    ManifestMissing { dir: PathBuf },

    #[error(
        "{dir} is in use by another `precis batch` run; wait for it to end, or give each run \
         (each shard) its own -o folder"
    )]
    OutputInUse { dir: PathBuf },

    #[error(
        "{failed} of {total} articles failed; their reasons are in {manifest} \
         (`precis batch status {out}` lists them)"
    )]
    ArticlesFailed {
        failed: usize,
        total: usize,
        manifest: PathBuf,
        out: String,
    },

    #[error(
        "interrupted after {done} of {total} articles; every finished article is saved. \
         To resume, run the same command again:\n  {command}"
    )]
    Interrupted {
        done: usize,
        total: usize,
        command: String,
    },

    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error, as documented in README.md ("Exit codes").
    /// Whether this is the device running out of memory (CUDA, Metal or the host allocator as
    /// candle reports it): the caller may retry with less work at once.
    pub fn is_out_of_memory(&self) -> bool {
        let Error::Inference { source, .. } = self else {
            return false;
        };
        let text = format!("{source:?}").to_ascii_lowercase();
        [
            "out of memory",
            "out_of_memory",
            "outofmemory",
            "failed to allocate",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::NoInput | Error::UnknownModel { .. } => 2,
            Error::InputNotFound { .. } | Error::ManifestMissing { .. } => 3,
            Error::InputIsDirectory { .. } => 4,
            Error::InputUnreadable { .. } => 5,
            Error::InputEmpty { .. } => 6,
            Error::InputBinary { .. } => 7,
            Error::ModelNotCached(_) | Error::Download(_) => 8,
            Error::ModelFolder { .. } | Error::ModelFile { .. } | Error::Manifest { .. } => 9,
            Error::Unsupported { .. } | Error::Inference { .. } => 10,
            Error::Output { .. } | Error::Io { .. } | Error::OutputInUse { .. } => 11,
            Error::ArticlesFailed { .. } => 12,
            Error::InputTooLong { .. } => 13,
            Error::Interrupted { .. } => 130,
            Error::SomeInputsFailed { code, .. } => *code,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A model file that is neither in the cache nor downloadable right now.
#[derive(Debug, thiserror::Error)]
#[error(
    "model '{model}' is not available: {repo}@{revision} has no '{file}' in the local cache \
     ({cache}) and {why}.\n\
     To fix it, either:\n  \
     - run `precis models pull {model}` on a machine with internet access \
     (set HF_HOME to share or copy the cache), or\n  \
     - pass a local folder in Hugging Face layout: `{flag} /path/to/folder`{alternative}"
)]
pub struct MissingModel {
    pub model: String,
    pub repo: String,
    pub revision: String,
    pub file: String,
    pub cache: PathBuf,
    pub why: String,
    pub flag: String,
    /// Another way out, where one exists (e.g. the model-free summary engine).
    pub alternative: String,
}

/// A download from the Hub that failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not download '{file}' of {repo}@{revision} for model '{model}' from {endpoint}.\n\
     To fix it, check the connection (and HF_ENDPOINT, HF_TOKEN for gated or private repos), \
     run `precis models pull {model}` where the Hub is reachable, \
     or pass a local folder: `{flag} /path/to/folder`"
)]
pub struct DownloadFailed {
    pub model: String,
    pub repo: String,
    pub revision: String,
    pub file: String,
    pub endpoint: String,
    pub flag: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}
