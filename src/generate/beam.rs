//! Beam search with the bookkeeping of transformers' (vectorized) `_beam_search`, one sentence
//! at a time:
//!
//! - every step, each running beam's scores are log-softmaxed, processed, and added to the
//!   beam's running log-probability; the best `keep = max(2, 1 + #eos) * num_beams`
//!   candidates over all beams are taken (ties: lower beam, then lower token id);
//! - a candidate ending on EOS (or reaching `max_length`) is finished: among the first
//!   `num_beams` candidates it joins the sentence's hypotheses with score
//!   `sum_logprobs / generated_len^length_penalty`, where generated_len counts the new token
//!   and excludes the prefix; the next running beams are the best `num_beams` unfinished ones;
//! - a sentence is done once it has `num_beams` hypotheses and either `early_stopping` is true
//!   or its best running beam cannot beat the worst hypothesis (scored at its current length,
//!   or at `max_length` for `"never"` with a positive length penalty). transformers keeps
//!   decoding done sentences but can no longer change their hypotheses; here they leave the
//!   decoder instead, which gives the same outputs for less work.

use rayon::prelude::*;

use super::processors::{log_softmax_in_place, Processors};
use super::{host_rows, stop_reason, EarlyStopping, GenerateOptions, Generated, StepDecoder};
use crate::error::Result;

/// What transformers adds to scores it wants out of the way (finished candidates when picking
/// running beams, the not-yet-distinct initial beams).
const PUSH_DOWN: f32 = -1.0e9;

/// A running hypothesis.
#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    /// Sum of the (processed) log-probabilities of its tokens.
    score: f32,
}

/// One continuation of one beam: its running score if taken.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
}

/// A sentence's finished hypotheses, best first, at most `num_beams`.
#[derive(Debug, Clone)]
pub struct BeamHypotheses {
    num_beams: usize,
    hyps: Vec<(f32, Vec<u32>)>,
}

impl BeamHypotheses {
    pub fn new(num_beams: usize) -> BeamHypotheses {
        BeamHypotheses {
            num_beams,
            hyps: Vec::with_capacity(num_beams + 1),
        }
    }

    /// Keep `tokens` if it is among the best `num_beams`; on equal scores the hypothesis kept
    /// earlier stays ahead (as a stable top-k over old then new entries).
    pub fn add(&mut self, score: f32, tokens: Vec<u32>) {
        let pos = self.hyps.partition_point(|(s, _)| *s >= score);
        if pos < self.num_beams {
            self.hyps.insert(pos, (score, tokens));
            self.hyps.truncate(self.num_beams);
        }
    }

    pub fn is_full(&self) -> bool {
        self.hyps.len() >= self.num_beams
    }

    /// The lowest kept score (-inf when empty).
    pub fn worst(&self) -> f32 {
        self.hyps.last().map_or(f32::NEG_INFINITY, |(s, _)| *s)
    }

    pub fn best(&self) -> Option<&(f32, Vec<u32>)> {
        self.hyps.first()
    }

    pub fn len(&self) -> usize {
        self.hyps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hyps.is_empty()
    }
}

/// The fixed parameters of one search.
#[derive(Debug, Clone)]
struct Rules {
    num_beams: usize,
    keep: usize,
    eos: Vec<u32>,
    max_length: usize,
    prefix_len: usize,
    length_penalty: f64,
    early_stopping: EarlyStopping,
}

impl Rules {
    /// transformers: `score / (length ** length_penalty)`, the power in f64, the division in f32.
    fn penalised(&self, score: f32, generated_len: usize) -> f32 {
        score / (generated_len as f64).powf(self.length_penalty) as f32
    }

    /// Whether `c`, taken at length `cur_len`, ends its sequence.
    fn ends(&self, c: &Candidate, cur_len: usize) -> bool {
        self.eos.contains(&c.token) || cur_len + 1 >= self.max_length
    }

    /// Whether nothing can change a sentence's hypotheses any more; `cur_len` counts the
    /// running beams' tokens, prefix included.
    fn is_done(&self, s: &Sentence, cur_len: usize) -> bool {
        if !s.finished.is_full() {
            return false;
        }
        if self.early_stopping == EarlyStopping::Done {
            return true;
        }
        let length = if self.early_stopping == EarlyStopping::Never && self.length_penalty > 0.0 {
            self.max_length - self.prefix_len
        } else {
            cur_len - self.prefix_len
        };
        let best_possible = self.penalised(s.beams[0].score, length);
        // transformers' test is `best > worst` (false for NaN too): done when it fails.
        best_possible.partial_cmp(&s.finished.worst()) != Some(std::cmp::Ordering::Greater)
    }
}

/// One sentence's search state.
#[derive(Debug, Clone)]
struct Sentence {
    index: usize,
    beams: Vec<Beam>,
    /// For each running beam, the decoder row (within this sentence) it continues.
    parents: Vec<usize>,
    finished: BeamHypotheses,
}

impl Sentence {
    fn new(index: usize, prefix: &[u32], num_beams: usize) -> Sentence {
        // Only the first copy may start: the others are pushed down, as in transformers.
        let beams = (0..num_beams)
            .map(|b| Beam {
                tokens: prefix.to_vec(),
                score: if b == 0 { 0.0 } else { PUSH_DOWN },
            })
            .collect();
        Sentence {
            index,
            beams,
            parents: (0..num_beams).collect(),
            finished: BeamHypotheses::new(num_beams),
        }
    }

    /// One step from this sentence's rows of log-probabilities.
    fn advance(
        &mut self,
        rows: Vec<Vec<f32>>,
        processors: &Processors,
        rules: &Rules,
        cur_len: usize,
    ) {
        let scores: Vec<Vec<f32>> = rows
            .into_par_iter()
            .zip(&self.beams)
            .map(|(mut row, beam)| {
                log_softmax_in_place(&mut row);
                processors.apply(&beam.tokens, &mut row);
                row
            })
            .collect();
        let candidates = top_candidates(&self.beams, &scores, rules.keep);
        let extend = |c: &Candidate| {
            let mut tokens = self.beams[c.beam].tokens.clone();
            tokens.push(c.token);
            tokens
        };
        let generated_len = cur_len + 1 - rules.prefix_len;
        let finished: Vec<(f32, Vec<u32>)> = candidates[..rules.num_beams.min(candidates.len())]
            .iter()
            .filter(|c| rules.ends(c, cur_len))
            .map(|c| (rules.penalised(c.score, generated_len), extend(c)))
            .collect();
        // Running beams: the best candidates once finished ones are pushed down (stable).
        let mut running: Vec<(f32, &Candidate)> = candidates
            .iter()
            .map(|c| {
                (
                    c.score
                        + if rules.ends(c, cur_len) {
                            PUSH_DOWN
                        } else {
                            0.0
                        },
                    c,
                )
            })
            .collect();
        running.sort_by(|a, b| b.0.total_cmp(&a.0));
        running.truncate(rules.num_beams);
        let beams: Vec<Beam> = running
            .iter()
            .map(|(score, c)| Beam {
                tokens: extend(c),
                score: *score,
            })
            .collect();
        self.parents = running.iter().map(|(_, c)| c.beam).collect();
        self.beams = beams;
        for (score, tokens) in finished {
            self.finished.add(score, tokens);
        }
    }

    fn finish(self, rules: &Rules) -> Generated {
        let (score, tokens) = match self.finished.best() {
            Some((score, tokens)) => (*score, tokens.clone()),
            None => {
                let beam = &self.beams[0];
                let len = beam.tokens.len() - rules.prefix_len;
                (rules.penalised(beam.score, len), beam.tokens.clone())
            }
        };
        Generated {
            stop: stop_reason(tokens.len(), rules.max_length),
            ids: tokens[rules.prefix_len..].to_vec(),
            score,
        }
    }
}

/// The best `k` continuations over all beams, best first; ties go to the lower beam, then the
/// lower token id. NaN scores are never taken.
fn top_candidates(beams: &[Beam], scores: &[Vec<f32>], k: usize) -> Vec<Candidate> {
    let mut best: Vec<Candidate> = Vec::with_capacity(k + 1);
    for (b, (beam, row)) in beams.iter().zip(scores).enumerate() {
        for (t, &s) in row.iter().enumerate() {
            let score = s + beam.score;
            if score.is_nan() || (best.len() == k && score <= best[k - 1].score) {
                continue;
            }
            let pos = best.partition_point(|c| c.score >= score);
            best.insert(
                pos,
                Candidate {
                    beam: b,
                    token: t as u32,
                    score,
                },
            );
            best.truncate(k);
        }
    }
    best
}

pub fn search(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
    max_length: usize,
) -> Result<Vec<Generated>> {
    let nb = options.num_beams;
    let rules = Rules {
        num_beams: nb,
        keep: 2.max(1 + options.eos_token_id.len()) * nb,
        eos: options.eos_token_id.clone(),
        max_length,
        prefix_len: prefixes[0].len(),
        length_penalty: options.length_penalty,
        early_stopping: options.early_stopping,
    };
    let processors = Processors::new(options, max_length);
    let mut active: Vec<Sentence> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| Sentence::new(i, p, nb))
        .collect();
    let mut out: Vec<Option<Generated>> = vec![None; prefixes.len()];
    // Every sentence's row becomes num_beams rows.
    let expand: Vec<u32> = (0..prefixes.len() as u32)
        .flat_map(|i| std::iter::repeat_n(i, nb))
        .collect();
    decoder.select(&expand)?;
    let mut cur_len = rules.prefix_len;
    loop {
        let last: Vec<u32> = active
            .iter()
            .flat_map(|s| s.beams.iter().map(|b| b.tokens[b.tokens.len() - 1]))
            .collect();
        // Log-softmax on the host, one core per row (in `advance`): a single pass over each
        // row's scores, where candle's composite op makes six over the whole batch.
        let mut logits = host_rows(&decoder.step(&last)?, last.len())?.into_iter();
        let per_sentence: Vec<Vec<Vec<f32>>> = active
            .iter()
            .map(|_| logits.by_ref().take(nb).collect())
            .collect();
        // Sentences (and their beams, in `advance`) are independent: one core each.
        active
            .par_iter_mut()
            .zip(per_sentence)
            .for_each(|(sentence, rows)| sentence.advance(rows, &processors, &rules, cur_len));
        cur_len += 1;
        let at_limit = cur_len >= max_length;
        let mut rows = Vec::new();
        let mut still = Vec::with_capacity(active.len());
        for (slot, sentence) in active.into_iter().enumerate() {
            if at_limit || rules.is_done(&sentence, cur_len) {
                let index = sentence.index;
                out[index] = Some(sentence.finish(&rules));
            } else {
                rows.extend(sentence.parents.iter().map(|&p| (slot * nb + p) as u32));
                still.push(sentence);
            }
        }
        active = still;
        if active.is_empty() {
            break;
        }
        decoder.select(&rows)?;
    }
    Ok(out
        .into_iter()
        .map(|g| g.expect("every sentence finishes"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests::ScriptedDecoder;
    use crate::generate::{GenerationSettings, TokenIds};
    use crate::report::Stop;

    #[test]
    fn hypotheses_keep_the_best_and_old_ones_win_ties() {
        let mut h = BeamHypotheses::new(2);
        assert!(h.is_empty());
        assert_eq!(h.worst(), f32::NEG_INFINITY);
        h.add(-2.0, vec![1]);
        assert!(!h.is_full());
        h.add(-1.0, vec![2]);
        assert!(h.is_full());
        assert_eq!(h.best().unwrap().1, vec![2]);
        assert_eq!(h.worst(), -2.0);
        h.add(-3.0, vec![3]);
        assert_eq!(h.len(), 2);
        assert_eq!(h.worst(), -2.0);
        h.add(-2.0, vec![4]);
        assert_eq!(h.hyps[1].1, vec![1], "equal score: the older one stays");
        h.add(-1.5, vec![5]);
        assert_eq!(
            h.hyps.iter().map(|x| x.1[0]).collect::<Vec<_>>(),
            vec![2, 5]
        );
    }

    #[test]
    fn candidates_are_the_best_over_beams_with_ties_to_lower_indices() {
        let beams = vec![
            Beam {
                tokens: vec![],
                score: 0.0,
            },
            Beam {
                tokens: vec![],
                score: -1.0,
            },
        ];
        let scores = vec![vec![-1.0, -0.5, -3.0], vec![0.0, 0.5, -0.5]];
        let c = top_candidates(&beams, &scores, 4);
        let got: Vec<(usize, u32)> = c.iter().map(|c| (c.beam, c.token)).collect();
        // totals: b0: -1, -0.5, -3; b1: -1, -0.5, -1.5
        assert_eq!(got, vec![(0, 1), (1, 1), (0, 0), (1, 0)]);
    }

    #[test]
    fn penalty_divides_by_generated_length_to_the_power() {
        let rules = Rules {
            num_beams: 2,
            keep: 4,
            eos: vec![0],
            max_length: 10,
            prefix_len: 1,
            length_penalty: 2.0,
            early_stopping: EarlyStopping::Heuristic,
        };
        assert_eq!(rules.penalised(-8.0, 2), -2.0);
    }

    fn options(beams: usize, max_length: usize, early: EarlyStopping) -> GenerateOptions {
        GenerateOptions::new(&GenerationSettings {
            num_beams: Some(beams),
            max_length: Some(max_length),
            eos_token_id: Some(TokenIds::One(0)),
            early_stopping: Some(early),
            ..Default::default()
        })
        .unwrap()
    }

    /// log-probabilities → logits (log-softmax of them gives them back)
    fn probs(p: &[f32]) -> Vec<f32> {
        p.iter().map(|x| x.ln()).collect()
    }

    #[test]
    fn a_short_finished_hypothesis_beats_longer_worse_ones() {
        // vocab 0 = EOS, 1..=3. After the prefix: EOS 0.4; then EOS is unlikely and every
        // word costs more than the short hypothesis did, even divided by the length.
        let mut dec = ScriptedDecoder::new(1, |_, history| {
            if history.len() == 1 {
                probs(&[0.4, 0.35, 0.25, 1e-6])
            } else {
                probs(&[0.1, 0.3, 0.3, 0.3])
            }
        });
        let o = options(2, 6, EarlyStopping::Heuristic);
        let out = search(&mut dec, &[vec![7]], &o, 6).unwrap();
        assert_eq!(out[0].ids, vec![0]);
        assert_eq!(out[0].stop, Stop::Eos);
        assert!((out[0].score - 0.4f32.ln()).abs() < 1e-5);
        // Selections: the expansion, then beam reorders, and it stopped once done.
        assert_eq!(dec.selections[0], vec![0, 0]);
    }

    #[test]
    fn early_stopping_true_stops_at_num_beams_hypotheses() {
        // Every beam prefers EOS: two hypotheses after one step → done at once.
        let mut dec = ScriptedDecoder::new(2, |_, _| probs(&[0.5, 0.3, 0.2]));
        let o = options(2, 10, EarlyStopping::Done);
        let out = search(&mut dec, &[vec![7], vec![7]], &o, 10).unwrap();
        assert_eq!(
            dec.selections.len(),
            2,
            "expand, one reorder, then both sentences done"
        );
        assert_eq!(out[0].ids, vec![0]);
        assert_eq!(out[1].ids, vec![0]);
    }

    #[test]
    fn at_max_length_unfinished_beams_become_hypotheses() {
        let mut dec = ScriptedDecoder::new(1, |_, _| probs(&[0.01, 0.9, 0.09]));
        let o = options(2, 4, EarlyStopping::Never);
        let out = search(&mut dec, &[vec![7]], &o, 4).unwrap();
        assert_eq!(out[0].ids, vec![1, 1, 1]);
        assert_eq!(out[0].stop, Stop::Length);
    }
}
