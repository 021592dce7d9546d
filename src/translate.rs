//! Whole-article translation: every sentence (and the title) tokenized, sentences too long
//! for the model split at clause boundaries, all of them sorted by length and cut into
//! batches by a token budget, searched, and put back in article order and structure.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, GenerationSettings};
use crate::input::{BlockKind, Document};
use crate::models::marian::MarianModel;
use crate::models::ResolvedModel;
use crate::report::{Stop, Timings};
use crate::tokenize::marian::MarianTokenizer;

/// One translated sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sentence {
    pub source: String,
    pub target: String,
    pub stop: Stop,
}

/// A translated title: no stop reason in the documented JSON, but a cut title is warned about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Title {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paragraph {
    pub kind: BlockKind,
    pub sentences: Vec<Sentence>,
}

/// An article's translation, as `translate --format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct TranslationReport {
    pub input: String,
    pub title: Option<Title>,
    pub paragraphs: Vec<Paragraph>,
    pub model: String,
    /// Tokens generated for the whole article (EOS included).
    pub generated_tokens: usize,
    pub timings: Timings,
}

/// How batches are cut and how long outputs may grow.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most padded source tokens in one batch (rows × longest row); None: the device's default.
    pub batch_tokens: Option<usize>,
    /// Most sentences in one batch; None: the device's default.
    pub batch_size: Option<usize>,
    /// Outputs longer than this multiple of their source (in tokens) are cut, like
    /// marian-decoder's --max-length-factor; None leaves only the model's max_length.
    pub max_length_factor: Option<f32>,
}

/// Default batch limits (tokens, rows) on the CPU, where a bigger batch costs time in
/// proportion, and on a GPU, where it is nearly free until memory runs out (and then an
/// out-of-memory error halves the batch: see `search_halving`).
pub const CPU_BATCH: (usize, usize) = (4096, 64);
pub const GPU_BATCH: (usize, usize) = (32768, 256);

impl Batching {
    /// (most tokens, most rows) per batch on `device`.
    pub fn limits(&self, device: &candle_core::Device) -> (usize, usize) {
        let (tokens, rows) = if device.is_cpu() {
            CPU_BATCH
        } else {
            GPU_BATCH
        };
        (
            self.batch_tokens.unwrap_or(tokens),
            self.batch_size.unwrap_or(rows),
        )
    }
}

/// A loaded translation model with its tokenizer and search settings.
pub struct Translator {
    model: MarianModel,
    tokenizer: MarianTokenizer,
    options: GenerateOptions,
    batching: Batching,
    id: String,
    load_ms: f64,
}

impl Translator {
    /// Load the model and tokenizer; the model's generation settings with `overrides` on top.
    pub fn load(
        resolved: &ResolvedModel,
        device: &candle_core::Device,
        dtype: candle_core::DType,
        overrides: &GenerationSettings,
        batching: Batching,
    ) -> Result<Translator> {
        let start = Instant::now();
        let tokenizer = MarianTokenizer::from_model(resolved)?;
        let model = MarianModel::load(resolved, device, dtype)?;
        let options = GenerateOptions::for_model(resolved, overrides)?;
        tracing::info!(
            "translation: {} ({} beams, max_length {}) loaded in {:.0} ms",
            resolved.id,
            options.num_beams,
            options.max_length,
            start.elapsed().as_secs_f64() * 1000.0
        );
        Ok(Translator {
            tokenizer,
            model,
            options,
            batching,
            id: resolved.id.clone(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// `repo@commit` (or `local:…`) of the model.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Translate a document, keeping its title, paragraphs and list items.
    pub fn translate_document(&self, name: &str, doc: &Document) -> Result<TranslationReport> {
        let start = Instant::now();
        let mut texts: Vec<&str> = Vec::new();
        if let Some(title) = &doc.title {
            texts.push(title);
        }
        for para in &doc.paragraphs {
            texts.extend(para.sentences.iter().map(String::as_str));
        }
        let (outputs, generated_tokens) = self.translate_counting(&texts)?;
        let mut outputs = outputs.into_iter();
        let mut next = || outputs.next().expect("one output per input");
        let title = doc.title.as_ref().map(|source| {
            let (target, stop) = next();
            warn_cut(name, "the title", source, stop);
            Title {
                source: source.clone(),
                target,
            }
        });
        let paragraphs = doc
            .paragraphs
            .iter()
            .enumerate()
            .map(|(p, para)| Paragraph {
                kind: para.kind,
                sentences: para
                    .sentences
                    .iter()
                    .enumerate()
                    .map(|(s, source)| {
                        let (target, stop) = next();
                        let place = format!("sentence {} of paragraph {}", s + 1, p + 1);
                        warn_cut(name, &place, source, stop);
                        Sentence {
                            source: source.clone(),
                            target,
                            stop,
                        }
                    })
                    .collect(),
            })
            .collect();
        let mut timings = Timings::default();
        timings.record("translate", start);
        timings.set("load", self.load_ms);
        Ok(TranslationReport {
            input: name.to_string(),
            title,
            paragraphs,
            model: self.id.clone(),
            generated_tokens,
            timings,
        })
    }

    /// Translate sentences, in order: (text, stop) for each.
    pub fn translate(&self, texts: &[&str]) -> Result<Vec<(String, Stop)>> {
        Ok(self.translate_counting(texts)?.0)
    }

    /// `translate`, and the number of tokens generated.
    fn translate_counting(&self, texts: &[&str]) -> Result<(Vec<(String, Stop)>, usize)> {
        let limit = self.model.config().max_position_embeddings;
        // Each text becomes one or more pieces that fit the model's positions.
        let mut pieces: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for part in self.fit(text, limit)? {
                pieces.push((i, part));
            }
        }
        let ids: Vec<Vec<u32>> = pieces.iter().map(|(_, ids)| ids.clone()).collect();
        let generated = self.search_all(&ids)?;
        let tokens = generated.iter().map(|(ids, _)| ids.len()).sum();
        let mut out: Vec<(Vec<String>, Stop)> = vec![(Vec::new(), Stop::Eos); texts.len()];
        for ((text, _), (ids, stop)) in pieces.iter().zip(generated) {
            let target = self.tokenizer.decode(&ids, true)?;
            let slot = &mut out[*text];
            slot.0.push(target);
            if stop == Stop::Length {
                slot.1 = Stop::Length;
            }
        }
        let out = out
            .into_iter()
            .map(|(parts, stop)| (parts.join(" "), stop))
            .collect();
        Ok((out, tokens))
    }

    /// Token ids of `text`, split at clause boundaries into pieces of at most `limit` tokens.
    /// Never truncates: as a last resort a piece is cut between words.
    fn fit(&self, text: &str, limit: usize) -> Result<Vec<Vec<u32>>> {
        let ids = self.tokenizer.encode(text)?;
        if ids.len() <= limit {
            return Ok(vec![ids]);
        }
        let Some((left, right)) = split_clause(text) else {
            return Err(Error::Unsupported {
                what: format!(
                    "a {}-token word cannot be split to fit the model's {limit} positions: {text:.60}…",
                    ids.len()
                ),
            });
        };
        let mut pieces = self.fit(left, limit)?;
        pieces.extend(self.fit(right, limit)?);
        Ok(pieces)
    }

    /// Search every source: sorted by length, longest first, order restored. Greedy search
    /// streams them through as many rows as the limits allow (a finished sentence hands its
    /// row to the next); beam search cuts them into batches by the token budget.
    fn search_all(&self, sources: &[Vec<u32>]) -> Result<Vec<(Vec<u32>, Stop)>> {
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sources[i].len()));
        let limits = self.batching.limits(self.model.device());
        let mut results: Vec<Option<(Vec<u32>, Stop)>> = vec![None; sources.len()];
        if self.options.num_beams == 1 && !sources.is_empty() {
            let sorted: Vec<Vec<u32>> = order.iter().map(|&i| sources[i].clone()).collect();
            let max_lengths: Vec<usize> = sorted.iter().map(|s| self.max_length(s.len())).collect();
            let width = batch_rows(sorted[0].len(), limits);
            let generated = stream_halving(width, &mut |width| {
                self.model
                    .generate_stream(&sorted, width, &self.options, &max_lengths)
            })?;
            for (&i, g) in order.iter().zip(generated) {
                results[i] = Some((g.ids, g.stop));
            }
        } else {
            let mut search = |batch: &[usize]| {
                let rows: Vec<Vec<u32>> = batch.iter().map(|&i| sources[i].clone()).collect();
                self.search_batch(&rows)
            };
            for batch in batches(&order, sources, limits) {
                for (&i, generated) in batch.iter().zip(search_halving(batch, &mut search)?) {
                    results[i] = Some(generated);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every source searched"))
            .collect())
    }

    /// The length limit (start token included) for a source of `len` tokens: the model's, or
    /// less with `max_length_factor`.
    fn max_length(&self, len: usize) -> usize {
        let limit = self.options.max_length_for(1);
        match self.batching.max_length_factor {
            Some(factor) => limit.min(((len as f32 * factor).ceil() as usize).max(2) + 1),
            None => limit,
        }
    }

    /// Beam search over one batch; with `max_length_factor`, the batch's longest source sets
    /// its length limit.
    fn search_batch(&self, rows: &[Vec<u32>]) -> Result<Vec<(Vec<u32>, Stop)>> {
        let mut options = self.options.clone();
        let longest = rows.iter().map(Vec::len).max().unwrap_or(1);
        options.max_new_tokens = Some(self.max_length(longest) - 1);
        let generated = self.model.generate(rows, &options)?;
        Ok(generated.into_iter().map(|g| (g.ids, g.stop)).collect())
    }
}

/// Rows a batch may have when its longest source has `longest` tokens: within the token
/// budget (rows × longest), at most the row limit, at least one.
fn batch_rows(longest: usize, (tokens, rows): (usize, usize)) -> usize {
    (tokens / longest.max(1)).clamp(1, rows.max(1))
}

/// Indices (already sorted by length, longest first) cut into batches whose padded size
/// (rows × longest) stays within `tokens` and that have at most `rows` rows; a single row is
/// always allowed.
fn batches<'a>(
    order: &'a [usize],
    sources: &[Vec<u32>],
    (tokens, rows): (usize, usize),
) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let take = batch_rows(sources[order[start]].len(), (tokens, rows));
        let end = (start + take).min(order.len());
        out.push(&order[start..end]);
        start = end;
    }
    out
}

/// `search` over `batch`; when the device runs out of memory (a token budget too large for a
/// GPU), the batch is halved and each half retried, down to a single row, instead of failing
/// the run. Results come back in `batch` order.
fn search_halving<T, F>(batch: &[usize], search: &mut F) -> Result<Vec<T>>
where
    F: FnMut(&[usize]) -> Result<Vec<T>>,
{
    match search(batch) {
        Err(e) if e.is_out_of_memory() && batch.len() > 1 => {
            let (left, right) = batch.split_at(batch.len() / 2);
            tracing::warn!(
                "out of device memory on a batch of {} sentences: retrying as {} + {} \
                 (lower --batch-tokens to avoid this)",
                batch.len(),
                left.len(),
                right.len()
            );
            let mut out = search_halving(left, search)?;
            out.extend(search_halving(right, search)?);
            Ok(out)
        }
        other => other,
    }
}

/// `search` with `width` rows; when the device runs out of memory, again with half as many,
/// down to one.
fn stream_halving<T, F>(mut width: usize, search: &mut F) -> Result<T>
where
    F: FnMut(usize) -> Result<T>,
{
    loop {
        match search(width) {
            Err(e) if e.is_out_of_memory() && width > 1 => {
                tracing::warn!(
                    "out of device memory decoding {width} sentences at once: retrying with {} \
                     (lower --batch-tokens to avoid this)",
                    width / 2
                );
                width /= 2;
            }
            other => return other,
        }
    }
}

/// Where a too-long sentence is best cut: the clause boundary nearest its middle, by
/// preference `;` and `:`, then `,` and dashes, then a conjunction, then any space.
fn split_clause(text: &str) -> Option<(&str, &str)> {
    const TIERS: &[&[&str]] = &[
        &["; ", ": "],
        &[", ", " – ", " — ", " - "],
        &[
            " et ", " mais ", " ou ", " car ", " donc ", " qui ", " que ", " dont ", " où ",
        ],
        &[" "],
    ];
    let middle = text.len() / 2;
    for tier in TIERS {
        let best = tier
            .iter()
            .flat_map(|sep| {
                text.match_indices(sep).map(move |(at, s)| {
                    // Keep punctuation with the left part, a conjunction with the right.
                    let cut = if s.starts_with(' ') {
                        at
                    } else {
                        at + s.trim_end().len()
                    };
                    cut
                })
            })
            .filter(|&cut| cut > 0 && cut < text.len())
            .min_by_key(|&cut| cut.abs_diff(middle));
        if let Some(cut) = best {
            let (left, right) = text.split_at(cut);
            let (left, right) = (left.trim(), right.trim());
            if !left.is_empty() && !right.is_empty() {
                return Some((left, right));
            }
        }
    }
    None
}

fn warn_cut(name: &str, place: &str, source: &str, stop: Stop) {
    if stop == Stop::Length {
        tracing::warn!(
            "{name}: {place} was cut by the length limit (raise --max-length): {source:.80}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_split_prefers_punctuation_near_the_middle() {
        let text =
            "Le président a parlé longuement; les ministres ont écouté, puis ils sont partis.";
        let (l, r) = split_clause(text).unwrap();
        assert_eq!(l, "Le président a parlé longuement;");
        assert_eq!(r, "les ministres ont écouté, puis ils sont partis.");
        let (l, r) = split_clause("un deux trois quatre").unwrap();
        assert_eq!(format!("{l} {r}"), "un deux trois quatre");
        assert_eq!(split_clause("mot"), None);
    }

    fn oom() -> Error {
        Error::Inference {
            what: "Marian: decoder step failed".into(),
            source: candle_core::Error::Msg(
                "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
            ),
        }
    }

    #[test]
    fn out_of_memory_halves_the_batch_and_keeps_the_order() {
        // A device that holds at most 3 rows at once.
        let mut calls = Vec::new();
        let mut search = |rows: &[usize]| {
            calls.push(rows.len());
            if rows.len() > 3 {
                Err(oom())
            } else {
                Ok(rows.iter().map(|&r| r * 10).collect())
            }
        };
        let batch: Vec<usize> = (0..10).collect();
        let out = search_halving(&batch, &mut search).unwrap();
        assert_eq!(out, (0..10).map(|r| r * 10).collect::<Vec<_>>());
        assert_eq!(calls, vec![10, 5, 2, 3, 5, 2, 3]);
    }

    #[test]
    fn out_of_memory_halves_the_stream_width() {
        // A device that holds at most 3 rows at once.
        let mut calls = Vec::new();
        let mut search = |width: usize| {
            calls.push(width);
            if width > 3 {
                Err(oom())
            } else {
                Ok(width)
            }
        };
        assert_eq!(stream_halving(29, &mut search).unwrap(), 3);
        assert_eq!(calls, vec![29, 14, 7, 3]);
        let mut fails = |_: usize| -> Result<usize> { Err(oom()) };
        assert!(stream_halving(4, &mut fails)
            .unwrap_err()
            .is_out_of_memory());
    }

    #[test]
    fn other_errors_and_single_rows_are_not_retried() {
        let mut calls = 0;
        let mut failing = |_: &[usize]| -> Result<Vec<usize>> {
            calls += 1;
            Err(Error::Usage("bad".into()))
        };
        assert!(search_halving(&[1, 2, 3, 4], &mut failing).is_err());
        assert_eq!(calls, 1);
        let mut always_oom = |_: &[usize]| -> Result<Vec<usize>> { Err(oom()) };
        let err = search_halving(&[1, 2], &mut always_oom).unwrap_err();
        assert!(err.is_out_of_memory());
    }

    #[test]
    fn batches_respect_the_budget_and_keep_every_row() {
        let sources: Vec<Vec<u32>> = [10, 9, 5, 5, 2, 1].iter().map(|&n| vec![0; n]).collect();
        let order: Vec<usize> = (0..sources.len()).collect();
        let budget = |tokens, rows| (tokens, rows);
        let cut = batches(&order, &sources, budget(20, 100));
        assert_eq!(cut, vec![&[0, 1][..], &[2, 3, 4, 5][..]]);
        assert_eq!(batches(&order, &sources, budget(1, 100)).len(), 6);
        let capped = batches(&order, &sources, budget(1000, 4));
        assert_eq!(capped, vec![&[0, 1, 2, 3][..], &[4, 5][..]]);
    }
}
