//! Token generation for the summary LLM: prefill the prompt, then one token at a time with
//! transformers' logits processing (repetition penalty, temperature, top-k, top-p), greedy
//! when the temperature is 0, seeded sampling otherwise; stop on the end-of-turn ids or the
//! length limit. Streams text through tokenizers' `DecodeStream` (never one token decoded
//! alone) and decodes the whole id list for the final text.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::models::llm::CausalLm;
use crate::report::Stop;
use crate::tokenize::chat::ChatTokenizer;

/// How to pick tokens. `temperature` 0 means greedy (the default: reproducible summaries).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoding {
    pub max_new_tokens: usize,
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    pub seed: u64,
    /// transformers' `repetition_penalty` over the prompt and generated tokens; 1.0 is none.
    pub repeat_penalty: f32,
}

impl Default for Decoding {
    fn default() -> Decoding {
        Decoding {
            max_new_tokens: 512,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
            repeat_penalty: 1.0,
        }
    }
}

/// What one call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New ids, the stop token included when the model ended the text.
    pub ids: Vec<u32>,
    /// Their text, special tokens skipped.
    pub text: String,
    pub stop: Stop,
    /// Seconds spent reading the prompt, and generating.
    pub prefill_secs: f64,
    pub generate_secs: f64,
}

fn inference(e: candle_core::Error) -> Error {
    Error::Inference {
        what: "the summary model failed".into(),
        source: e,
    }
}

/// Generate after `prompt` (the KV cache is reset first).
pub fn generate(
    lm: &mut dyn CausalLm,
    chat: &ChatTokenizer,
    prompt: &[u32],
    decoding: &Decoding,
    prefill_chunk: usize,
    mut stream: Option<&mut dyn FnMut(&str)>,
) -> Result<Generation> {
    lm.reset();
    let start = std::time::Instant::now();
    let mut logits = lm.prefill(prompt, 0, prefill_chunk).map_err(inference)?;
    let prefill_secs = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let mut sampler = Sampler::new(decoding);
    let mut seen: Vec<u32> = prompt.to_vec();
    let mut ids: Vec<u32> = Vec::new();
    let mut decoder = chat.tokenizer().decode_stream(true);
    let mut stop = Stop::Length;
    while ids.len() < decoding.max_new_tokens {
        let next = sampler.pick(&logits, &seen).map_err(inference)?;
        ids.push(next);
        seen.push(next);
        if chat.stop_ids().contains(&next) {
            stop = Stop::Eos;
            break;
        }
        if let Some(sink) = stream.as_deref_mut() {
            if let Some(text) = decoder
                .step(next)
                .map_err(|e| Error::Usage(format!("cannot decode generated tokens: {e}")))?
            {
                sink(&text);
            }
        }
        if ids.len() == decoding.max_new_tokens {
            break;
        }
        logits = lm
            .forward(&[next], prompt.len() + ids.len() - 1)
            .map_err(inference)?;
    }
    let generate_secs = start.elapsed().as_secs_f64();
    let text = chat.decode(&ids, true)?;
    Ok(Generation {
        ids,
        text,
        stop,
        prefill_secs,
        generate_secs,
    })
}

/// Turns logits into the next token, as transformers' processors do: repetition penalty,
/// then temperature, top-k and top-p, then argmax or a seeded draw.
pub struct Sampler {
    decoding: Decoding,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(decoding: &Decoding) -> Sampler {
        Sampler {
            decoding: decoding.clone(),
            rng: SplitMix64(decoding.seed),
        }
    }

    pub fn pick(&mut self, logits: &Tensor, seen: &[u32]) -> candle_core::Result<u32> {
        let mut scores: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        repetition_penalty(&mut scores, seen, self.decoding.repeat_penalty);
        if self.decoding.temperature <= 0.0 {
            return Ok(argmax(&scores));
        }
        let t = self.decoding.temperature as f32;
        scores.iter_mut().for_each(|s| *s /= t);
        if let Some(k) = self.decoding.top_k.filter(|k| *k > 0) {
            top_k(&mut scores, k);
        }
        if let Some(p) = self.decoding.top_p.filter(|p| *p < 1.0) {
            top_p(&mut scores, p as f32);
        }
        Ok(sample(&scores, self.rng.next_f64()))
    }
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: every token already in the sequence
/// (prompt included) has its score divided by the penalty if positive, multiplied if negative.
pub fn repetition_penalty(scores: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; scores.len()];
    for &id in seen {
        let i = id as usize;
        if i < scores.len() && !done[i] {
            done[i] = true;
            let s = scores[i];
            scores[i] = if s < 0.0 { s * penalty } else { s / penalty };
        }
    }
}

/// The first index of the largest score (torch's argmax keeps the first on ties).
pub fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// Keep the k largest scores (ties with the k-th kept), the rest to -inf.
fn top_k(scores: &mut [f32], k: usize) {
    if k >= scores.len() {
        return;
    }
    let mut sorted: Vec<f32> = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    scores
        .iter_mut()
        .filter(|s| **s < kth)
        .for_each(|s| *s = f32::NEG_INFINITY);
}

/// Keep the most likely tokens until their probability reaches `p` (at least one).
fn top_p(scores: &mut [f32], p: f32) {
    let probs = softmax(scores);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut total = 0.0;
    let mut keep = vec![false; scores.len()];
    for &i in &order {
        keep[i] = true;
        total += probs[i];
        if total >= p {
            break;
        }
    }
    for (s, k) in scores.iter_mut().zip(keep) {
        if !k {
            *s = f32::NEG_INFINITY;
        }
    }
}

fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Draw an index with probability softmax(scores), from a uniform `u` in [0, 1).
fn sample(scores: &[f32], u: f64) -> u32 {
    let probs = softmax(scores);
    let mut acc = 0.0f64;
    let mut last = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            acc += *p as f64;
            last = i;
            if u < acc {
                return i as u32;
            }
        }
    }
    last as u32
}

/// A small, stable, seeded generator (SplitMix64): the same seed gives the same tokens on
/// every platform and every version of precis.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_follows_transformers() {
        let mut s = vec![2.0, -2.0, 1.0];
        repetition_penalty(&mut s, &[0, 1, 1], 2.0);
        assert_eq!(s, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn argmax_keeps_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn top_k_and_top_p_filter() {
        let mut s = vec![1.0, 4.0, 3.0, 2.0];
        top_k(&mut s, 2);
        assert_eq!(s[0], f32::NEG_INFINITY);
        assert_eq!(s[3], f32::NEG_INFINITY);
        let mut s = vec![10.0, 0.0, 9.0, -5.0];
        top_p(&mut s, 0.9);
        assert!(s[0].is_finite() && s[2].is_finite());
        assert!(s[1] == f32::NEG_INFINITY && s[3] == f32::NEG_INFINITY);
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let logits = Tensor::new(&[[0.0f32, 0.5, 1.0, 0.2]], &candle_core::Device::Cpu).unwrap();
        let decoding = Decoding {
            temperature: 1.0,
            seed: 7,
            ..Decoding::default()
        };
        let draw = |seed| {
            let mut s = Sampler::new(&Decoding {
                seed,
                ..decoding.clone()
            });
            (0..20)
                .map(|_| s.pick(&logits, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).iter().all(|t| *t < 4));
    }
}
