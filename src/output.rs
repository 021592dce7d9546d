//! Output: renders reports as Markdown, text, JSON or JSON Lines, and writes them to stdout
//! or, atomically, to the `-o` file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::Format;
use crate::commands::DigestReport;
use crate::error::{Error, Result};
use crate::input::{BlockKind, Document};
use crate::report::SummaryReport;
use crate::translate::{self, TranslationReport};

/// Where rendered reports go: standard output, or a temporary file renamed over `-o FILE`
/// when everything was written, so a failed run never leaves half a file.
pub struct Sink {
    target: Target,
    /// How many reports this run renders: JSON is pretty for one, JSON Lines for several.
    pub count: usize,
    written: usize,
}

enum Target {
    Stdout,
    File {
        path: PathBuf,
        tmp: tempfile::NamedTempFile,
    },
}

impl Sink {
    pub fn new(output: Option<&Path>, count: usize) -> Result<Sink> {
        let target = match output {
            None => Target::Stdout,
            Some(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let tmp = tempfile::Builder::new()
                    .prefix(".precis-")
                    .suffix(".tmp")
                    .tempfile_in(dir)
                    .map_err(|source| Error::Output {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Target::File {
                    path: path.to_path_buf(),
                    tmp,
                }
            }
        };
        Ok(Sink {
            target,
            count,
            written: 0,
        })
    }

    /// Write one rendered report (several reports in md/text are separated by a header).
    pub fn write(&mut self, name: &str, format: Format, rendered: &str) -> Result<()> {
        self.begin(name, format, rendered)
    }

    /// Whether text written now shows on a terminal as it comes: standard output is one,
    /// and the format is for people (md, text).
    pub fn is_terminal(&self, format: Format) -> bool {
        use std::io::IsTerminal;
        matches!(self.target, Target::Stdout)
            && matches!(format, Format::Md | Format::Text)
            && std::io::stdout().is_terminal()
    }

    /// Start a report with `text` (after the header that separates several reports); more of
    /// it may follow with [`Sink::more`], e.g. a summary streamed as it is generated.
    pub fn begin(&mut self, name: &str, format: Format, text: &str) -> Result<()> {
        let mut out = String::new();
        if self.count > 1 && matches!(format, Format::Md | Format::Text) {
            if self.written > 0 {
                out.push('\n');
            }
            out.push_str(&format!("==> {name} <==\n"));
        }
        out.push_str(text);
        self.written += 1;
        self.more(&out)
    }

    /// More text of the report begun last.
    pub fn more(&mut self, text: &str) -> Result<()> {
        match &mut self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|source| Error::Output {
                        path: PathBuf::from("<stdout>"),
                        source,
                    })
            }
            Target::File { path, tmp } => {
                tmp.write_all(text.as_bytes())
                    .map_err(|source| Error::Output {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    /// Move the finished file into place.
    pub fn finish(self) -> Result<()> {
        if let Target::File { path, tmp } = self.target {
            tmp.persist(&path).map_err(|e| Error::Output {
                path,
                source: e.error,
            })?;
        }
        Ok(())
    }
}

/// JSON for one report: pretty when the run has one, a single line for JSON Lines.
pub fn json<T: Serialize>(value: &T, format: Format, count: usize) -> String {
    let pretty = format == Format::Json && count == 1;
    let mut s = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .expect("reports serialize");
    s.push('\n');
    s
}

fn kind_label(kind: BlockKind) -> &'static str {
    match kind {
        BlockKind::Paragraph => "paragraph",
        BlockKind::ListItem => "list item",
        BlockKind::Quote => "quote",
    }
}

/// `precis inspect`: title, paragraphs with numbered sentences, removed lines.
pub fn inspect(doc: &Document, format: Format, count: usize) -> String {
    if matches!(format, Format::Json | Format::Jsonl) {
        return json(doc, format, count);
    }
    let md = format == Format::Md;
    let mut out = String::new();
    let title = doc.title.as_deref().unwrap_or("(no title)");
    out.push_str(&if md {
        format!("# {title}\n\n")
    } else {
        format!("{title}\n\n")
    });
    for (i, para) in doc.paragraphs.iter().enumerate() {
        out.push_str(&format!("¶{} ({})\n", i + 1, kind_label(para.kind)));
        for (j, sentence) in para.sentences.iter().enumerate() {
            out.push_str(&format!("  {}. {sentence}\n", j + 1));
        }
        out.push('\n');
    }
    let heading = format!("Removed as boilerplate ({} lines)", doc.removed.len());
    out.push_str(&if md {
        format!("## {heading}\n\n")
    } else {
        format!("{heading}\n")
    });
    for line in &doc.removed {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// `precis summarize`: the title and the bullets.
pub fn summary(
    report: &SummaryReport,
    title: Option<&str>,
    format: Format,
    count: usize,
) -> String {
    if matches!(format, Format::Json | Format::Jsonl) {
        return json(report, format, count);
    }
    let mut out = summary_title(title, format);
    for bullet in &report.bullets {
        out.push_str(&format!("- {bullet}\n"));
    }
    out
}

/// The title block that opens a summary in md or text (empty with no title).
pub fn summary_title(title: Option<&str>, format: Format) -> String {
    match title {
        Some(title) if format == Format::Md => format!("# {title}\n\n"),
        Some(title) => format!("{title}\n\n"),
        None => String::new(),
    }
}

/// The translated article's body: title, then each paragraph's sentences joined, list items
/// and quotes marked as in the source.
fn translated_body(report: &TranslationReport, md: bool, out: &mut String) {
    for para in &report.paragraphs {
        let text = para
            .sentences
            .iter()
            .map(|s| s.target.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let line = match para.kind {
            BlockKind::ListItem => format!("- {text}\n"),
            BlockKind::Quote if md => format!("> {text}\n"),
            _ => format!("{text}\n"),
        };
        out.push_str(&line);
        // Consecutive list items form one list; everything else is its own paragraph.
        if para.kind != BlockKind::ListItem {
            out.push('\n');
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
}

fn heading(text: &str, level: usize, md: bool) -> String {
    if md {
        format!("{} {text}\n\n", "#".repeat(level))
    } else {
        format!("{text}\n\n")
    }
}

/// `precis translate`: the article in English, keeping its structure.
pub fn translation(report: &TranslationReport, format: Format, count: usize) -> String {
    if matches!(format, Format::Json | Format::Jsonl) {
        return json(report, format, count);
    }
    let md = format == Format::Md;
    let mut out = String::new();
    if let Some(title) = &report.title {
        out.push_str(&heading(&title.target, 1, md));
    }
    translated_body(report, md, &mut out);
    out
}

/// `precis FILE`: title, summary bullets, translation.
pub fn digest(report: &DigestReport, format: Format, count: usize) -> String {
    if matches!(format, Format::Json | Format::Jsonl) {
        return json(report, format, count);
    }
    let md = format == Format::Md;
    let mut out = String::new();
    let title = report
        .translation
        .title
        .as_ref()
        .map(|t: &translate::Title| t.target.clone())
        .unwrap_or_else(|| report.input.clone());
    out.push_str(&heading(&title, 1, md));
    out.push_str(&heading("Summary", 2, md));
    for bullet in &report.summary.bullets {
        out.push_str(&format!("- {bullet}\n"));
    }
    out.push('\n');
    out.push_str(&heading("Translation", 2, md));
    translated_body(&report.translation, md, &mut out);
    out
}
