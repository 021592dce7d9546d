//! Greedy search (transformers' `_sample` without sampling): the processors run on the raw
//! logits, the highest score wins (the lowest id on ties, as `argmax`), and a row stops on an
//! EOS or at `max_length`; finished rows leave the decoder.

use std::collections::HashMap;

use rayon::prelude::*;

use super::processors::{log_sum_exp, Processors};
use super::{host_rows, stop_reason, GenerateOptions, Generated, StepDecoder};
use crate::error::Result;

/// How sentences take the decoder's rows: `width` at once, a finished sentence handing its row
/// to the next one (continuous batching), each sentence with its own length limit.
#[derive(Debug, Clone, Copy)]
pub struct Lanes<'a> {
    pub width: usize,
    pub max_lengths: &'a [usize],
}

/// One sentence being decoded.
struct Row {
    sentence: usize,
    tokens: Vec<u32>,
    prefix_len: usize,
    max_length: usize,
    score: f32,
}

impl Row {
    fn generated(&self) -> Generated {
        Generated {
            stop: stop_reason(self.tokens.len(), self.max_length),
            ids: self.tokens[self.prefix_len..].to_vec(),
            score: self.score,
        }
    }
}

/// Every sentence in its own row at once, all with the same length limit.
pub fn search(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
    max_length: usize,
) -> Result<Vec<Generated>> {
    let max_lengths = vec![max_length; prefixes.len()];
    let lanes = Lanes {
        width: prefixes.len(),
        max_lengths: &max_lengths,
    };
    search_with(decoder, prefixes, lanes, options, &mut argmax)
}

/// The greedy loop with another way to pick a token from a row's processed scores (sampling
/// draws one); the score recorded is the chosen token's log-probability under them.
pub fn search_with(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    lanes: Lanes,
    options: &GenerateOptions,
    pick: &mut dyn FnMut(&[f32]) -> usize,
) -> Result<Vec<Generated>> {
    // forced_eos_token_id depends on the length limit: one set of processors per limit.
    let mut processors: HashMap<usize, Processors> = HashMap::new();
    for &m in lanes.max_lengths {
        processors
            .entry(m)
            .or_insert_with(|| Processors::new(options, m));
    }
    let new_row = |sentence: usize| Row {
        sentence,
        tokens: prefixes[sentence].clone(),
        prefix_len: prefixes[sentence].len(),
        max_length: lanes.max_lengths[sentence],
        score: 0.0,
    };
    let n = prefixes.len();
    let mut rows: Vec<Row> = (0..lanes.width.max(1).min(n)).map(new_row).collect();
    let mut next = rows.len();
    let mut out: Vec<Option<Generated>> = vec![None; n];
    let (mut steps, mut row_steps) = (0usize, 0usize);
    while !rows.is_empty() {
        steps += 1;
        row_steps += rows.len();
        let last: Vec<u32> = rows.iter().map(|r| r.tokens[r.tokens.len() - 1]).collect();
        let mut logits = host_rows(&decoder.step(&last)?, rows.len())?;
        // The processors and the normalizer (a pass of exponentials over the vocabulary) are
        // independent per row: one core each. Picking stays in order (a sampler's draws).
        let norms: Vec<f32> = logits
            .par_iter_mut()
            .zip(&rows)
            .map(|(scores, row)| {
                processors[&row.max_length].apply(&row.tokens, scores);
                match options.renormalize_logits {
                    true => 0.0,
                    false => log_sum_exp(scores),
                }
            })
            .collect();
        for ((row, scores), norm) in rows.iter_mut().zip(&logits).zip(norms) {
            let token = pick(scores);
            // The token's log-probability under the processed scores.
            row.score += scores[token] - norm;
            row.tokens.push(token as u32);
        }
        let finished = |r: &Row| {
            r.tokens.len() >= r.max_length
                || options.eos_token_id.contains(&r.tokens[r.tokens.len() - 1])
        };
        if !rows.iter().any(finished) {
            continue;
        }
        // A finished sentence hands its row to the next one; rows left over leave.
        let mut restarts = Vec::new();
        let mut keep = Vec::new();
        for (i, row) in rows.iter_mut().enumerate() {
            if !finished(row) {
                keep.push(i as u32);
                continue;
            }
            out[row.sentence] = Some(row.generated());
            if next < n {
                *row = new_row(next);
                restarts.push((i, next));
                keep.push(i as u32);
                next += 1;
            }
        }
        if !restarts.is_empty() {
            decoder.restart(&restarts)?;
        }
        if keep.len() < rows.len() {
            let mut old: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
            rows = keep
                .iter()
                .map(|&i| old[i as usize].take().expect("kept once"))
                .collect();
            if !rows.is_empty() {
                decoder.select(&keep)?;
            }
        }
    }
    tracing::debug!("greedy: {steps} decoder steps, {row_steps} rows decoded");
    Ok(out
        .into_iter()
        .map(|g| g.expect("every row finishes"))
        .collect())
}

/// Index of the highest score, the first one on ties.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests::ScriptedDecoder;
    use crate::generate::{GenerationSettings, TokenIds};
    use crate::report::Stop;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn rows_stop_on_eos_or_length_and_leave_the_decoder() {
        // vocab: 0 = EOS, 1..=3 words. Sentence 0 says 2 then EOS; sentence 1 always 3.
        let mut dec = ScriptedDecoder::new(2, |src, history| match (src, history.len()) {
            (0, 1) => vec![0.0, 0.0, 1.0, 0.0],
            (0, _) => vec![1.0, 0.0, 0.0, 0.0],
            _ => vec![0.0, 0.0, 0.0, 1.0],
        });
        let settings = GenerationSettings {
            eos_token_id: Some(TokenIds::One(0)),
            max_length: Some(5),
            ..Default::default()
        };
        let options = GenerateOptions::new(&settings).unwrap();
        let out = search(&mut dec, &[vec![9], vec![9]], &options, 5).unwrap();
        assert_eq!(out[0].ids, vec![2, 0]);
        assert_eq!(out[0].stop, Stop::Eos);
        assert_eq!(out[1].ids, vec![3, 3, 3, 3]);
        assert_eq!(out[1].stop, Stop::Length);
        assert_eq!(dec.selections, vec![vec![1]], "the finished row left");
    }
}
