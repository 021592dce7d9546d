//! The `precis` binary: parse arguments, run, and map the outcome to a documented exit code.

use std::process::ExitCode;

use clap::Parser;
use precis::{cli::Cli, commands, error::Error};

fn main() -> ExitCode {
    let cli = Cli::parse();
    precis::init_logging(cli.global.verbose, cli.global.quiet);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`precis … | head`) is the reader's choice, not a failure.
        Err(Error::Output { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            precis::report_error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}
