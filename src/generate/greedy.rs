//! Greedy search (transformers' `_sample` without sampling): the processors run on the raw
//! logits, the highest score wins (the lowest id on ties, as `argmax`), and a row stops on an
//! EOS or at `max_length`; finished rows leave the decoder.

use rayon::prelude::*;

use super::processors::{log_sum_exp, Processors};
use super::{host_rows, stop_reason, GenerateOptions, Generated, StepDecoder};
use crate::error::Result;

/// One sentence being decoded.
struct Row {
    sentence: usize,
    tokens: Vec<u32>,
    score: f32,
}

pub fn search(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
    max_length: usize,
) -> Result<Vec<Generated>> {
    search_with(decoder, prefixes, options, max_length, &mut |scores| {
        argmax(scores)
    })
}

/// The greedy loop with another way to pick a token from a row's processed scores (sampling
/// draws one); the score recorded is the chosen token's log-probability under them.
pub fn search_with(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
    max_length: usize,
    pick: &mut dyn FnMut(&[f32]) -> usize,
) -> Result<Vec<Generated>> {
    let processors = Processors::new(options, max_length);
    let prefix_len = prefixes[0].len();
    let mut rows: Vec<Row> = prefixes
        .iter()
        .enumerate()
        .map(|(sentence, p)| Row {
            sentence,
            tokens: p.clone(),
            score: 0.0,
        })
        .collect();
    let mut out: Vec<Option<Generated>> = vec![None; prefixes.len()];
    while !rows.is_empty() {
        let last: Vec<u32> = rows.iter().map(|r| r.tokens[r.tokens.len() - 1]).collect();
        let mut logits = host_rows(&decoder.step(&last)?, rows.len())?;
        // The processors and the normalizer (a pass of exponentials over the vocabulary) are
        // independent per row: one core each. Picking stays in order (a sampler's draws).
        let norms: Vec<f32> = logits
            .par_iter_mut()
            .zip(&rows)
            .map(|(scores, row)| {
                processors.apply(&row.tokens, scores);
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
            r.tokens.len() >= max_length
                || options.eos_token_id.contains(&r.tokens[r.tokens.len() - 1])
        };
        let keep: Vec<u32> = (0..rows.len() as u32)
            .filter(|&i| !finished(&rows[i as usize]))
            .collect();
        if keep.len() == rows.len() {
            continue;
        }
        let (done, running): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| finished(r));
        for row in done {
            out[row.sentence] = Some(Generated {
                stop: stop_reason(row.tokens.len(), max_length),
                ids: row.tokens[prefix_len..].to_vec(),
                score: row.score,
            });
        }
        rows = running;
        if !rows.is_empty() {
            decoder.select(&keep)?;
        }
    }
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
