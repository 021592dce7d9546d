//! The commands: each takes validated arguments, runs the pipeline and writes its output.

mod digest;

pub use digest::DigestReport;
mod inspect;
mod models;

use std::io::IsTerminal;

use crate::cli::{Cli, Command, IoArgs};
use crate::error::{Error, Result};
use crate::input::Source;

/// Run the command line.
pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.global.quiet;
    match cli.command {
        None => digest::run(&cli.digest, digest::Mode::Digest, quiet),
        Some(Command::Digest(args)) => digest::run(&args, digest::Mode::Digest, quiet),
        Some(Command::Summarize(args)) => digest::run(&args, digest::Mode::Summarize, quiet),
        Some(Command::Translate(args)) => digest::run(&args, digest::Mode::Translate, quiet),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Models(cmd)) => models::run(cmd, quiet),
    }
}

/// The sources named on the command line: `-` or nothing (with piped input) is stdin.
fn sources(io: &IoArgs) -> Result<Vec<Source>> {
    if io.files.is_empty() {
        if std::io::stdin().is_terminal() {
            return Err(Error::NoInput);
        }
        return Ok(vec![Source::Stdin]);
    }
    let sources: Vec<Source> = io.files.iter().map(|f| Source::from_arg(f)).collect();
    if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
        return Err(Error::Usage(
            "`-` (standard input) can be given only once".into(),
        ));
    }
    Ok(sources)
}

/// Run `each` over every source; one failing input does not stop the others. With several
/// inputs, each failure is reported as it happens and the run fails at the end.
fn for_each_source(sources: &[Source], mut each: impl FnMut(&Source) -> Result<()>) -> Result<()> {
    if let [only] = sources {
        return each(only);
    }
    let mut failed: Vec<Error> = Vec::new();
    for source in sources {
        if let Err(err) = each(source) {
            if matches!(err, Error::Output { .. }) {
                return Err(err);
            }
            crate::report_error(&err);
            failed.push(err);
        }
    }
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(Error::SomeInputsFailed {
            failed: failed.len(),
            total: sources.len(),
            code: first.exit_code(),
        }),
    }
}
