//! precis: bullet summaries and faithful English translations of French news articles, with
//! local transformer models. The modules follow the pipeline: `input` (decode, clean,
//! structure, segment) → `models` (registry, Hub, loading) → `tokenize` (text ↔ ids) →
//! `summarize` → `output`.

pub mod cli;
pub mod commands;
pub mod error;
pub mod generate;
pub mod input;
pub mod models;
pub mod output;
pub mod report;
pub mod settings;
pub mod summarize;
pub mod tokenize;
pub mod translate;

use std::io::IsTerminal;

/// The error and all its causes, one per line, as printed on stderr.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

/// Print an error on stderr the way precis always does.
pub fn report_error(err: &dyn std::error::Error) {
    eprintln!("precis: error: {}", error_chain(err));
}

/// Logs go to stderr: warnings by default, more with -v, errors only with -q. `RUST_LOG`
/// overrides; colour only on a terminal and never with `NO_COLOR`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("precis={level},warn")));
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .without_time()
        .init();
}
