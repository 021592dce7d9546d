//! The input pipeline: bytes → text → cleaned, structured article → French sentences.
//!
//! Every stage boundary is plain data (`Article`, `Document`) that a test can build by hand;
//! nothing here knows about models.

pub mod clean;
pub mod decode;
pub mod html;
pub mod language;
pub mod segment;
pub mod structure;

use serde::Serialize;

/// What a block of article text is, as the structure stage recognised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Paragraph,
    ListItem,
    Quote,
}

/// One block of kept article text, before sentence segmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    pub text: String,
}

/// The cleaned, structured article: what the models will read, plus what was taken out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Article {
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    /// Lines removed as boilerplate, verbatim and in input order.
    pub removed: Vec<String>,
}

/// A block split into sentences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paragraph {
    pub kind: BlockKind,
    pub sentences: Vec<String>,
}

/// The article as the engines see it: title, segmented paragraphs, removed lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    pub title: Option<String>,
    pub paragraphs: Vec<Paragraph>,
    pub removed: Vec<String>,
}

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where an article comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` means standard input; anything else is a path.
    pub fn from_arg(arg: &Path) -> Source {
        if arg == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(arg.to_path_buf())
        }
    }

    /// The name used in messages and outputs.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_string(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// An article read, decoded and run through the pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub encoding: &'static str,
    pub document: Document,
}

/// Read a source's bytes, turning I/O failures into errors that name the file.
pub fn read_bytes(source: &Source) -> Result<Vec<u8>> {
    match source {
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|source| Error::InputUnreadable {
                    name: "<stdin>".into(),
                    source,
                })?;
            Ok(bytes)
        }
        Source::File(path) => {
            if path.is_dir() {
                return Err(Error::InputIsDirectory { path: path.clone() });
            }
            std::fs::read(path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => Error::InputNotFound { path: path.clone() },
                _ => Error::InputUnreadable {
                    name: path.display().to_string(),
                    source,
                },
            })
        }
    }
}

/// Decode bytes and run cleaning, structure and segmentation.
pub fn load_bytes(name: &str, bytes: &[u8], keep_boilerplate: bool) -> Result<Loaded> {
    let decoded = decode_named(name, bytes)?;
    let document = document(&decoded.text, keep_boilerplate);
    loaded(name, decoded.encoding, document)
}

/// Decode an HTML page, extract its article (see `html`), then clean, structure and segment.
pub fn load_html_bytes(name: &str, bytes: &[u8], keep_boilerplate: bool) -> Result<Loaded> {
    let decoded = decode_named(name, bytes)?;
    let page = html::extract(&decoded.text);
    let body = page.lines.join("\n");
    let mut cleaned = if keep_boilerplate {
        clean::keep_all(&body)
    } else {
        clean::clean(&body)
    };
    let mut removed = page.removed;
    removed.append(&mut cleaned.removed);
    cleaned.removed = removed;
    let article = structure::structure_with_title(cleaned, page.title);
    loaded(name, decoded.encoding, segment_article(article))
}

fn decode_named(name: &str, bytes: &[u8]) -> Result<decode::Decoded> {
    decode::decode(bytes).map_err(|e| match e {
        decode::DecodeError::Binary(reason) => Error::InputBinary {
            name: name.to_string(),
            reason,
        },
        empty => Error::InputEmpty {
            name: name.to_string(),
            what: empty.to_string(),
        },
    })
}

/// The loaded article, or an error when nothing of it is left.
fn loaded(name: &str, encoding: &'static str, document: Document) -> Result<Loaded> {
    if document.paragraphs.is_empty() && document.title.is_none() {
        return Err(Error::InputEmpty {
            name: name.to_string(),
            what: "no article text is left once boilerplate is removed \
                   (see `precis inspect`, or pass --keep-boilerplate)"
                .into(),
        });
    }
    Ok(Loaded {
        name: name.to_string(),
        encoding,
        document,
    })
}

/// Read and run the whole input pipeline on one source.
pub fn load(source: &Source, keep_boilerplate: bool) -> Result<Loaded> {
    let bytes = read_bytes(source)?;
    load_bytes(&source.name(), &bytes, keep_boilerplate)
}

/// Clean, structure and segment decoded text.
pub fn document(text: &str, keep_boilerplate: bool) -> Document {
    let cleaned = if keep_boilerplate {
        clean::keep_all(text)
    } else {
        clean::clean(text)
    };
    segment_article(structure::structure(cleaned))
}

/// Split every block of an article into sentences.
pub fn segment_article(article: Article) -> Document {
    let paragraphs = article
        .blocks
        .iter()
        .map(|block| Paragraph {
            kind: block.kind,
            sentences: segment::split_sentences(&block.text)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
        .filter(|p| !p.sentences.is_empty())
        .collect();
    Document {
        title: article.title,
        paragraphs,
        removed: article.removed,
    }
}
