//! Logits processors: small rules that change one row's next-token scores, applied in
//! transformers' order (repetition penalty, no-repeat n-gram, bad words, min length, forced
//! EOS, then log-softmax when `renormalize_logits`). Each sees the row's whole sequence,
//! prefix (decoder start token) included, as transformers' `input_ids` are.

use super::GenerateOptions;

/// A rule over one row's scores for the next token.
pub trait LogitsProcessor: std::fmt::Debug + Send + Sync {
    /// `tokens`: the row's sequence so far; `scores`: its next-token scores, changed in place.
    fn process(&self, tokens: &[u32], scores: &mut [f32]);
}

/// `repetition_penalty`: a token already in the sequence gets its score divided by the
/// penalty when positive, multiplied when negative (once, however often it occurred).
#[derive(Debug, Clone)]
pub struct RepetitionPenalty {
    pub penalty: f32,
}

impl LogitsProcessor for RepetitionPenalty {
    fn process(&self, tokens: &[u32], scores: &mut [f32]) {
        let mut seen: Vec<u32> = tokens.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = if *s < 0.0 {
                    *s * self.penalty
                } else {
                    *s / self.penalty
                };
            }
        }
    }
}

/// `no_repeat_ngram_size`: ban every token that would complete an n-gram already in the
/// sequence.
#[derive(Debug, Clone)]
pub struct NoRepeatNGram {
    pub size: usize,
}

impl LogitsProcessor for NoRepeatNGram {
    fn process(&self, tokens: &[u32], scores: &mut [f32]) {
        let n = self.size;
        if n == 0 || tokens.len() < n {
            return;
        }
        // The n-1 last tokens; any earlier window that starts with them bans its last token.
        let prefix = &tokens[tokens.len() + 1 - n..];
        for window in tokens.windows(n) {
            if &window[..n - 1] == prefix {
                if let Some(s) = scores.get_mut(window[n - 1] as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// `bad_words_ids`: a one-token sequence is always banned; a longer one bans its last token
/// when the sequence ends with the rest of it.
#[derive(Debug, Clone)]
pub struct NoBadWords {
    sequences: Vec<Vec<u32>>,
}

impl NoBadWords {
    /// As transformers does, a sequence that is just an EOS token is dropped.
    pub fn new(bad_words_ids: &[Vec<u32>], eos: &[u32]) -> NoBadWords {
        let sequences = bad_words_ids
            .iter()
            .filter(|seq| !(seq.len() == 1 && eos.contains(&seq[0])))
            .cloned()
            .collect();
        NoBadWords { sequences }
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }
}

impl LogitsProcessor for NoBadWords {
    fn process(&self, tokens: &[u32], scores: &mut [f32]) {
        for seq in &self.sequences {
            let (last, head) = seq.split_last().expect("bad word sequences are not empty");
            if tokens.ends_with(head) {
                if let Some(s) = scores.get_mut(*last as usize) {
                    *s += f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// `min_length`: EOS is banned while the sequence is shorter.
#[derive(Debug, Clone)]
pub struct MinLength {
    pub min_length: usize,
    pub eos: Vec<u32>,
}

impl LogitsProcessor for MinLength {
    fn process(&self, tokens: &[u32], scores: &mut [f32]) {
        if tokens.len() < self.min_length {
            ban(scores, &self.eos);
        }
    }
}

/// `forced_eos_token_id`: at length `max_length - 1`, only EOS may come next (score 0, the
/// rest -inf).
#[derive(Debug, Clone)]
pub struct ForcedEos {
    pub max_length: usize,
    pub eos: Vec<u32>,
}

impl LogitsProcessor for ForcedEos {
    fn process(&self, tokens: &[u32], scores: &mut [f32]) {
        if tokens.len() + 1 == self.max_length {
            scores.fill(f32::NEG_INFINITY);
            for &e in &self.eos {
                if let Some(s) = scores.get_mut(e as usize) {
                    *s = 0.0;
                }
            }
        }
    }
}

/// `renormalize_logits`: log-softmax again after the other processors.
#[derive(Debug, Clone)]
pub struct LogitNormalization;

impl LogitsProcessor for LogitNormalization {
    fn process(&self, _tokens: &[u32], scores: &mut [f32]) {
        log_softmax_in_place(scores);
    }
}

fn ban(scores: &mut [f32], ids: &[u32]) {
    for &id in ids {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// sum(exp(x - max)) over a row of the vocabulary, as torch's kernel computes it: f32
/// exponentials summed in 16 independent lanes, the lanes added in f64 at the end. One
/// exponential per element is the whole cost (59514 per row per step, two passes per row in
/// beam search), so they are computed inline ([`exp_fast`]) where the compiler can vectorize
/// them, with AVX2 when the CPU has it, rather than by a libm call per element.
fn sum_exp_shifted(scores: &[f32], max: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { sum_exp_shifted_avx2(scores, max) };
    }
    sum_exp_shifted_generic(scores, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_shifted_avx2(scores: &[f32], max: f32) -> f64 {
    sum_exp_shifted_generic(scores, max)
}

#[inline(always)]
fn sum_exp_shifted_generic(scores: &[f32], max: f32) -> f64 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let chunks = scores.chunks_exact(LANES);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&s| exp_fast(s - max) as f64)
        .sum();
    for chunk in chunks {
        for (lane, &s) in lanes.iter_mut().zip(chunk) {
            *lane += exp_fast(s - max);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + rest
}

/// exp(x) for x ≤ 0 (a score less the row's maximum), in straight-line arithmetic that the
/// compiler can vectorize: Cephes' expf (x = n·ln 2 + r, a degree-6 polynomial in r, 2ⁿ put
/// into the exponent bits), within 2 ulp of libm's; 0 below -87.3 (and for -inf), where
/// f32 would go subnormal.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding and taking away 1.5 · 2²³ rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.max(-87.3);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * C1 - n * C2;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

/// log(sum(exp(scores))), computed from the maximum as torch does; -inf when all are -inf.
pub fn log_sum_exp(scores: &[f32]) -> f32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    max + (sum_exp_shifted(scores, max).ln() as f32)
}

/// scores - logsumexp(scores), in place: x - max - log(sum(exp(x - max))).
pub fn log_softmax_in_place(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let log_sum = sum_exp_shifted(scores, max).ln() as f32;
    for s in scores.iter_mut() {
        *s = *s - max - log_sum;
    }
}

/// The processors `options` ask for, in transformers' order.
#[derive(Debug, Default)]
pub struct Processors(Vec<Box<dyn LogitsProcessor>>);

impl Processors {
    pub fn new(options: &GenerateOptions, max_length: usize) -> Processors {
        let mut list: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        if options.repetition_penalty != 1.0 {
            list.push(Box::new(RepetitionPenalty {
                penalty: options.repetition_penalty,
            }));
        }
        if options.no_repeat_ngram_size > 0 {
            list.push(Box::new(NoRepeatNGram {
                size: options.no_repeat_ngram_size,
            }));
        }
        if !options.bad_words_ids.is_empty() {
            let bad = NoBadWords::new(&options.bad_words_ids, &options.eos_token_id);
            if !bad.is_empty() {
                list.push(Box::new(bad));
            }
        }
        if options.min_length > 0 && !options.eos_token_id.is_empty() {
            list.push(Box::new(MinLength {
                min_length: options.min_length,
                eos: options.eos_token_id.clone(),
            }));
        }
        if !options.forced_eos_token_id.is_empty() {
            list.push(Box::new(ForcedEos {
                max_length,
                eos: options.forced_eos_token_id.clone(),
            }));
        }
        if options.renormalize_logits {
            list.push(Box::new(LogitNormalization));
        }
        Processors(list)
    }

    pub fn apply(&self, tokens: &[u32], scores: &mut [f32]) {
        for p in &self.0 {
            p.process(tokens, scores);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_fast(x), x.exp());
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON * want,
                "exp({x}): {got} against {want}"
            );
            x += 0.001_3;
        }
        assert_eq!(exp_fast(0.0), 1.0);
        assert_eq!(exp_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_fast(-100.0), 0.0);
    }
    use crate::generate::GenerationSettings;

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn bad_words_ban_single_tokens_and_completed_sequences() {
        let p = NoBadWords::new(&[vec![3], vec![1, 2], vec![0]], &[0]);
        let mut s = vec![1.0; 5];
        p.process(&[4, 4], &mut s);
        assert_eq!(
            s,
            vec![1.0, 1.0, 1.0, NEG, 1.0],
            "EOS-only entry dropped, [1,2] not started"
        );
        let mut s = vec![1.0; 5];
        p.process(&[4, 1], &mut s);
        assert_eq!(s, vec![1.0, 1.0, NEG, NEG, 1.0]);
    }

    #[test]
    fn forced_eos_only_at_the_last_position() {
        let p = ForcedEos {
            max_length: 4,
            eos: vec![0],
        };
        let mut s = vec![-1.0, 2.0, 3.0];
        p.process(&[9, 1], &mut s);
        assert_eq!(s, vec![-1.0, 2.0, 3.0]);
        p.process(&[9, 1, 2], &mut s);
        assert_eq!(s, vec![0.0, NEG, NEG]);
    }

    #[test]
    fn no_repeat_ngram_bans_what_would_repeat() {
        let p = NoRepeatNGram { size: 3 };
        // tokens: 5 1 2 7 1 2 → prefix (1, 2) was followed by 7 → ban 7
        let mut s = vec![0.5; 9];
        p.process(&[5, 1, 2, 7, 1, 2], &mut s);
        let banned: Vec<usize> = (0..9).filter(|&i| s[i] == NEG).collect();
        assert_eq!(banned, vec![7]);
        // too short for a trigram: nothing banned
        let mut s = vec![0.5; 9];
        p.process(&[1, 2], &mut s);
        assert!(s.iter().all(|&x| x == 0.5));
        // bigrams: 1 1 1 → (1) was followed by 1 → ban 1
        let p2 = NoRepeatNGram { size: 2 };
        let mut s = vec![0.5; 3];
        p2.process(&[1, 1], &mut s);
        assert_eq!(s, vec![0.5, NEG, 0.5]);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once() {
        let p = RepetitionPenalty { penalty: 2.0 };
        let mut s = vec![4.0, -4.0, 4.0, -1.0];
        p.process(&[0, 1, 1, 0, 7], &mut s);
        assert_eq!(s, vec![2.0, -8.0, 4.0, -1.0]);
    }

    #[test]
    fn min_length_bans_eos_until_reached() {
        let p = MinLength {
            min_length: 3,
            eos: vec![0],
        };
        let mut s = vec![1.0, 1.0];
        p.process(&[5, 6], &mut s);
        assert_eq!(s, vec![NEG, 1.0]);
        let mut s = vec![1.0, 1.0];
        p.process(&[5, 6, 7], &mut s);
        assert_eq!(s, vec![1.0, 1.0]);
    }

    #[test]
    fn log_softmax_normalizes() {
        let mut s = vec![1.0f32, 2.0, 3.0, NEG];
        log_softmax_in_place(&mut s);
        let total: f32 = s.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(s[3], NEG);
        assert!((log_sum_exp(&[0.0, 0.0]) - 2f32.ln()).abs() < 1e-7);
    }

    #[test]
    fn order_follows_transformers() {
        let settings = GenerationSettings {
            repetition_penalty: Some(1.3),
            no_repeat_ngram_size: Some(2),
            bad_words_ids: Some(vec![vec![9]]),
            forced_eos_token_id: Some(crate::generate::TokenIds::One(0)),
            eos_token_id: Some(crate::generate::TokenIds::One(0)),
            renormalize_logits: Some(true),
            min_length: Some(2),
            ..Default::default()
        };
        let o = GenerateOptions::new(&settings).unwrap();
        let names: Vec<String> = Processors::new(&o, 8)
            .0
            .iter()
            .map(|p| {
                format!("{p:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "RepetitionPenalty",
                "NoRepeatNGram",
                "NoBadWords",
                "MinLength",
                "ForcedEos",
                "LogitNormalization"
            ]
        );
    }
}
