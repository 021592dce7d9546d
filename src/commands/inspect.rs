//! `precis inspect`: what the input pipeline makes of each article.

use crate::cli::InspectArgs;
use crate::error::Result;
use crate::input;
use crate::output::{self, Sink};

pub fn run(args: &InspectArgs) -> Result<()> {
    let sources = super::sources(&args.io)?;
    let mut sink = Sink::new(args.io.output.as_deref(), sources.len())?;
    super::for_each_source(&sources, |source| {
        let loaded = input::load(source, args.io.keep_boilerplate)?;
        tracing::info!("{}: read as {}", loaded.name, loaded.encoding);
        let rendered = output::inspect(&loaded.document, args.io.format, sources.len());
        sink.write(&loaded.name, args.io.format, &rendered)
    })?;
    sink.finish()
}
