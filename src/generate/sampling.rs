//! Sampling (transformers' `_sample` with `do_sample`): after the logits processors, the
//! warpers in transformers' order (temperature, top-k, top-p), then a draw from the softmax
//! with a seeded generator, so that a seed gives the same tokens on every run and platform.
//! The loop is greedy search's, with a draw in place of the argmax.

use super::greedy;
use super::{GenerateOptions, Generated, Sampling, StepDecoder};
use crate::error::Result;

pub fn search(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    options: &GenerateOptions,
    sampling: &Sampling,
    max_length: usize,
) -> Result<Vec<Generated>> {
    let max_lengths = vec![max_length; prefixes.len()];
    let lanes = greedy::Lanes {
        width: prefixes.len(),
        max_lengths: &max_lengths,
    };
    stream(decoder, prefixes, lanes, options, sampling)
}

/// Sampling with the rows laid out as `lanes` say (see [`greedy::Lanes`]).
pub fn stream(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    lanes: greedy::Lanes,
    options: &GenerateOptions,
    sampling: &Sampling,
) -> Result<Vec<Generated>> {
    let mut sampler = Sampler::new(sampling);
    greedy::search_with(decoder, prefixes, lanes, options, &mut |scores| {
        sampler.pick(scores)
    })
}

/// Draws tokens from processed scores.
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(sampling: &Sampling) -> Sampler {
        Sampler {
            sampling: sampling.clone(),
            rng: SplitMix64(sampling.seed),
        }
    }

    /// The token drawn from `scores` (after the warpers).
    pub fn pick(&mut self, scores: &[f32]) -> usize {
        let mut scores = scores.to_vec();
        warp(&mut scores, &self.sampling);
        draw(&scores, self.rng.next_f64())
    }
}

/// transformers' warpers, in its order: `TemperatureLogitsWarper`, `TopKLogitsWarper`,
/// `TopPLogitsWarper` (each keeping at least one token).
pub fn warp(scores: &mut [f32], sampling: &Sampling) {
    if sampling.temperature != 1.0 {
        let t = sampling.temperature as f32;
        scores.iter_mut().for_each(|s| *s /= t);
    }
    if sampling.top_k > 0 {
        top_k(scores, sampling.top_k);
    }
    if sampling.top_p < 1.0 {
        top_p(scores, sampling.top_p as f32);
    }
}

/// Scores below the k-th largest become -inf (ties with it stay).
fn top_k(scores: &mut [f32], k: usize) {
    if k >= scores.len() {
        return;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    for s in scores.iter_mut() {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// As transformers: sort ascending, and remove the tokens whose cumulative probability is at
/// most `1 - p`, never the most likely one.
fn top_p(scores: &mut [f32], p: f32) {
    let probs = softmax(scores);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    let mut cumulative = 0.0f32;
    let last = order.len() - 1;
    for (rank, &i) in order.iter().enumerate() {
        cumulative += probs[i];
        if cumulative <= 1.0 - p && rank < last {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The token whose cumulative probability first exceeds `u` in [0, 1).
fn draw(scores: &[f32], u: f64) -> usize {
    let probs = softmax(scores);
    let mut acc = 0.0f64;
    let mut last = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p as f64;
            last = i;
            if u < acc {
                return i;
            }
        }
    }
    last
}

/// SplitMix64: small, stable and seeded; the same seed gives the same draws everywhere and in
/// every version of precis (a generator from a crate could change its stream).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests::ScriptedDecoder;
    use crate::generate::{GenerationSettings, TokenIds};

    fn sampling(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> Sampling {
        Sampling {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn warpers_follow_transformers() {
        let mut s = vec![1.0, 4.0, 3.0, 2.0];
        warp(&mut s, &sampling(2.0, 2, 1.0, 0));
        assert_eq!(s, vec![NEG, 2.0, 1.5, NEG]);
        // probabilities ≈ 0.64, 0.24, 0.09, 0.03: top-p 0.7 keeps the first two.
        let mut s = vec![3.0, 2.0, 1.0, 0.0];
        warp(&mut s, &sampling(1.0, 0, 0.7, 0));
        assert_eq!(s, vec![3.0, 2.0, NEG, NEG]);
        // A tiny p still keeps the most likely token.
        let mut s = vec![0.0, 5.0, 1.0];
        warp(&mut s, &sampling(1.0, 0, 1e-6, 0));
        assert_eq!(s, vec![NEG, 5.0, NEG]);
    }

    #[test]
    fn draws_follow_the_probabilities_and_the_seed() {
        let scores = [0.0f32, 1.0, 2.0];
        let mut sampler = Sampler::new(&sampling(1.0, 0, 1.0, 42));
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[sampler.pick(&scores)] += 1;
        }
        let probs = softmax(&scores);
        for (c, p) in counts.iter().zip(probs) {
            assert!((*c as f32 / 20_000.0 - p).abs() < 0.02, "{counts:?}");
        }
        let draws = |seed| {
            let mut s = Sampler::new(&sampling(1.0, 0, 1.0, seed));
            (0..32).map(|_| s.pick(&scores)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn search_samples_until_eos_with_a_seed() {
        // vocab 0 = EOS; a flat distribution over 1..=3 with EOS unlikely but possible.
        let script = |_: usize, _: &[u32]| vec![-1.0, 1.0, 1.0, 1.0];
        let settings = GenerationSettings {
            eos_token_id: Some(TokenIds::One(0)),
            max_new_tokens: Some(30),
            do_sample: Some(true),
            seed: Some(3),
            ..Default::default()
        };
        let options = GenerateOptions::new(&settings).unwrap();
        let run = || {
            let mut dec = ScriptedDecoder::new(1, script);
            crate::generate::generate(&mut dec, &[vec![9]], &options).unwrap()
        };
        let first = run();
        assert_eq!(first, run(), "the same seed draws the same tokens");
        let ids = &first[0].ids;
        assert!(ids.iter().all(|&t| t < 4));
        assert!(
            ids.iter().skip(1).any(|&t| t != ids[0]),
            "draws vary: {ids:?}"
        );
    }
}
