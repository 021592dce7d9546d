//! Search: turn a decoder's next-token logits into token sequences, greedily or with beam
//! search, with transformers' `generate` semantics (its logits processors, stopping rules, beam
//! bookkeeping and length penalty), so that the same model gives the same ids.
//!
//! Model-agnostic: a model takes part through [`StepDecoder`] (feed one token per row, get
//! logits; keep some rows). Each sentence of a batch starts from its own prefix (a Marian
//! decoder start token, an LLM's last prompt token) and is searched independently; a sentence
//! that is finished leaves the decoder's rows, so later steps get cheaper. Logits come back to
//! the host once per step, where the processors and the selection run on plain slices.
//!
//! Not here: tokenization, and anything about a model's layers.

pub mod beam;
pub mod greedy;
pub mod options;
pub mod processors;
pub mod sampling;

use candle_core::Tensor;

pub use options::{EarlyStopping, GenerateOptions, GenerationSettings, Sampling, TokenIds};

use crate::error::{Error, Result};
use crate::report::Stop;

/// A decoder that the search can drive, one step at a time.
pub trait StepDecoder {
    /// Feed one token per row (the token each row just took); get the logits of every row's
    /// next token, f32 [rows, vocab].
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor>;

    /// Keep these rows, in this order (a row may be repeated): beam reordering, and rows
    /// whose sentence is finished leaving.
    fn select(&mut self, rows: &[u32]) -> Result<()>;

    /// Continuous batching: start sentence `s` (an index into the search's prefixes) in row
    /// `r` for each `(r, s)`, in place of the row's finished sentence; the row's next token is
    /// the first of `s`'s prefix. Only [`stream`] asks this, of decoders made for it.
    fn restart(&mut self, restarts: &[(usize, usize)]) -> Result<()> {
        let _ = restarts;
        Err(Error::Unsupported {
            what: "this decoder cannot start a sentence in a running row".into(),
        })
    }
}

/// One sentence's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The generated ids, without the prefix (the decoder start token). As in transformers'
    /// output sequence, the last id is the EOS whenever generation ended on one, including an
    /// EOS forced at the last position by `forced_eos_token_id`; callers strip it (decoding
    /// with special tokens skipped does).
    pub ids: Vec<u32>,
    /// `Length` when the sequence reached `max_length` (even if an EOS was forced there),
    /// `Eos` when the model ended it earlier.
    pub stop: Stop,
    /// Beam search: transformers' `sequences_scores` (sum of log-probabilities over
    /// generated_len^length_penalty). Greedy: the sum of the chosen tokens' log-probabilities
    /// (after the logits processors).
    pub score: f32,
}

/// Search every sentence from its prefix: greedy when `num_beams` is 1 (drawing tokens instead
/// when `options.sampling` is set), beam search otherwise.
/// The decoder starts with one row per prefix. All prefixes must have the same length (as a
/// batch in transformers does); `max_length` counts them.
pub fn generate(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    if prefixes.is_empty() {
        return Ok(Vec::new());
    }
    let prefix_len = prefixes[0].len();
    if prefix_len == 0 || prefixes.iter().any(|p| p.len() != prefix_len) {
        return Err(Error::Usage(
            "generation needs non-empty prefixes of one length".into(),
        ));
    }
    let max_length = options.max_length_for(prefix_len);
    check_room(prefix_len, max_length)?;
    match (&options.sampling, options.num_beams) {
        (_, n) if n > 1 => beam::search(decoder, prefixes, options, max_length),
        (Some(sampling), _) => sampling::search(decoder, prefixes, options, sampling, max_length),
        (None, _) => greedy::search(decoder, prefixes, options, max_length),
    }
}

/// Search every sentence from its prefix with continuous batching: the decoder starts with one
/// row for each of the first `width` prefixes, and when a sentence finishes the next one
/// starts in its row ([`StepDecoder::restart`]); sentence `i` stops at `max_lengths[i]`
/// tokens, prefix included. Greedy, or sampling when `options.sampling` is set; beam search
/// does not stream.
pub fn stream(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    width: usize,
    max_lengths: &[usize],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    if options.num_beams > 1 {
        return Err(Error::Unsupported {
            what: "beam search decodes batch by batch, not as a stream".into(),
        });
    }
    if max_lengths.len() != prefixes.len() {
        return Err(Error::Usage(format!(
            "{} length limits for {} sentences",
            max_lengths.len(),
            prefixes.len()
        )));
    }
    for (prefix, &max_length) in prefixes.iter().zip(max_lengths) {
        if prefix.is_empty() {
            return Err(Error::Usage("generation needs non-empty prefixes".into()));
        }
        check_room(prefix.len(), max_length)?;
    }
    let lanes = greedy::Lanes { width, max_lengths };
    match &options.sampling {
        Some(sampling) => sampling::stream(decoder, prefixes, lanes, options, sampling),
        None => greedy::search_with(decoder, prefixes, lanes, options, &mut greedy::argmax),
    }
}

/// A length limit must leave room for at least one token after the prefix.
fn check_room(prefix_len: usize, max_length: usize) -> Result<()> {
    if prefix_len >= max_length {
        return Err(Error::Usage(format!(
            "max_length {max_length} leaves no room to generate after a prefix of {prefix_len} tokens"
        )));
    }
    Ok(())
}

/// The logits of a step as host rows.
fn host_rows(logits: &Tensor, rows: usize) -> Result<Vec<Vec<f32>>> {
    let inference = |e| Error::Inference {
        what: "cannot read the logits".into(),
        source: e,
    };
    let host = logits.to_vec2::<f32>().map_err(inference)?;
    if host.len() != rows {
        return Err(inference(candle_core::Error::Msg(format!(
            "{} rows of logits for {rows} decoder rows",
            host.len()
        ))));
    }
    Ok(host)
}

/// How a finished sequence stopped: it reached the length limit, or the model ended it.
fn stop_reason(len: usize, max_length: usize) -> Stop {
    if len >= max_length {
        Stop::Length
    } else {
        Stop::Eos
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    type Script = Box<dyn Fn(usize, &[u32]) -> Vec<f32>>;

    /// A decoder whose logits a closure gives from (the row's sentence, the tokens it was fed),
    /// recording every selection.
    pub struct ScriptedDecoder {
        rows: Vec<(usize, Vec<u32>)>,
        script: Script,
        pub selections: Vec<Vec<u32>>,
    }

    impl ScriptedDecoder {
        pub fn new(sentences: usize, script: impl Fn(usize, &[u32]) -> Vec<f32> + 'static) -> Self {
            ScriptedDecoder {
                rows: (0..sentences).map(|s| (s, Vec::new())).collect(),
                script: Box::new(script),
                selections: Vec::new(),
            }
        }
    }

    impl StepDecoder for ScriptedDecoder {
        fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
            assert_eq!(tokens.len(), self.rows.len());
            let mut flat = Vec::new();
            for (row, &t) in self.rows.iter_mut().zip(tokens) {
                row.1.push(t);
                flat.extend((self.script)(row.0, &row.1));
            }
            let vocab = flat.len() / tokens.len();
            Ok(Tensor::from_vec(flat, (tokens.len(), vocab), &candle_core::Device::Cpu).unwrap())
        }

        fn select(&mut self, rows: &[u32]) -> Result<()> {
            self.rows = rows
                .iter()
                .map(|&r| self.rows[r as usize].clone())
                .collect();
            self.selections.push(rows.to_vec());
            Ok(())
        }
    }
}
