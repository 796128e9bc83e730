//! Choosing the next token from one position's logits: penalties, temperature, top-k / top-p /
//! min-p filters and a seeded draw, plus the log-probabilities reported to clients.
//!
//! The order, per step (the processors of transformers' `generate(do_sample=True)` and vLLM's
//! sampler, in the same order):
//! 1. `repetition_penalty` over the ids of the prompt and the output (transformers
//!    `RepetitionPenaltyLogitsProcessor`: once per distinct id, positive logits divided,
//!    negative ones multiplied);
//! 2. `frequency_penalty × count + presence_penalty` subtracted for every id of the output
//!    (OpenAI's definition, as vLLM applies it after the repetition penalty);
//! 3. log-probabilities, if asked for, of these penalized logits (see [`TokenLogprobs`]);
//! 4. temperature 0: arg-max (first index wins ties, as `torch.argmax` and
//!    `onevision_models::generate::argmax`); otherwise logits / temperature, then top-k, top-p
//!    and min-p, each on the distribution the previous one left (renormalized), then one draw.

use std::borrow::Cow;
use std::cmp::Ordering;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::request::SamplingParams;

/// Log-probabilities of one step, from the log-softmax of the logits after the penalties and
/// before temperature and the top-k/top-p/min-p filters: the model's own distribution (as
/// OpenAI and vLLM report it), so it does not change with the sampling settings, and for greedy
/// decoding it is exactly `log_softmax(model logits)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// log p(chosen token).
    pub logprob: f32,
    /// The most likely ids and their log-probabilities, best first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

/// Picks tokens for one request. Holds the request's random generator, so one `Sampler` per
/// request: the same seed and the same logits give the same tokens.
pub struct Sampler {
    params: SamplingParams,
    seed: u64,
    rng: ChaCha20Rng,
    /// How many alternatives to report; None = no log-probabilities.
    logprobs: Option<usize>,
    /// Scratch: which ids the repetition penalty already touched this step (length V).
    seen: Vec<bool>,
    /// Scratch: occurrences of each id in the output (length V).
    counts: Vec<u32>,
}

/// Descending by logit, then ascending by id: the order candidates are ranked in, total even
/// with equal logits, so filters keep the same set on every run.
fn rank(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Index of the largest value; the first one wins ties (NaN never wins), as `torch.argmax`.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `log Σ exp(l)` over the finite logits, accumulated in f64. None when no logit is finite.
fn log_sum_exp(logits: &[f32]) -> Option<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let max = max as f64;
    let sum: f64 = logits
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| (x as f64 - max).exp())
        .sum();
    Some(max + sum.ln())
}

/// The log-probability of `id` and the `k` most likely ids under `log_softmax(logits)`.
pub fn logprobs(logits: &[f32], id: u32, k: usize) -> TokenLogprobs {
    let Some(lse) = log_sum_exp(logits) else {
        return TokenLogprobs {
            logprob: f32::NAN,
            top: vec![],
        };
    };
    let lp = |x: f32| (x as f64 - lse) as f32;
    // One pass keeping the k best in a small sorted buffer: O(V·log k), no V-sized allocation.
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &x) in logits.iter().enumerate() {
            if x.is_nan() {
                continue;
            }
            let c = (i as u32, x);
            if top.len() == k && rank(&c, &top[k - 1]) != Ordering::Less {
                continue;
            }
            let at = top.partition_point(|t| rank(t, &c) == Ordering::Less);
            top.insert(at, c);
            top.truncate(k);
        }
    }
    TokenLogprobs {
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&x| lp(x)),
        top: top.into_iter().map(|(i, x)| (i, lp(x))).collect(),
    }
}

impl Sampler {
    /// A sampler with `params.seed`, or a fresh seed from the operating system's generator.
    pub fn new(params: &SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        Self {
            params: params.clone(),
            seed,
            rng: ChaCha20Rng::seed_from_u64(seed),
            logprobs: None,
            seen: vec![],
            counts: vec![],
        }
    }

    /// Also report log-probabilities with `top` alternatives per token (None = none).
    pub fn with_logprobs(mut self, top: Option<usize>) -> Self {
        self.logprobs = top;
        self
    }

    /// The seed in use (the drawn one when the request had none).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether a token is the arg-max of the penalized logits (no random draw happens).
    pub fn is_greedy(&self) -> bool {
        // A NaN temperature goes to greedy rather than to a NaN distribution.
        let t = self.params.temperature;
        t.is_nan() || t <= 0.0
    }

    /// Applies the repetition, frequency and presence penalties in place. Ids outside the
    /// vocabulary (`>= logits.len()`) are ignored.
    pub fn penalize(&mut self, logits: &mut [f32], prompt_ids: &[u32], generated: &[u32]) {
        let v = logits.len();
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            self.seen.resize(v, false);
            for &id in prompt_ids.iter().chain(generated) {
                let i = id as usize;
                if i < v && !self.seen[i] {
                    self.seen[i] = true;
                    let x = logits[i];
                    logits[i] = if x < 0.0 {
                        x * p.repetition_penalty
                    } else {
                        x / p.repetition_penalty
                    };
                }
            }
            for &id in prompt_ids.iter().chain(generated) {
                if let Some(s) = self.seen.get_mut(id as usize) {
                    *s = false;
                }
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            self.counts.resize(v, 0);
            for &id in generated {
                if let Some(c) = self.counts.get_mut(id as usize) {
                    *c += 1;
                }
            }
            for &id in generated {
                let i = id as usize;
                if i < v && self.counts[i] > 0 {
                    logits[i] -= p.frequency_penalty * self.counts[i] as f32 + p.presence_penalty;
                    self.counts[i] = 0;
                }
            }
        }
    }

    fn has_penalties(&self) -> bool {
        let p = &self.params;
        p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0
    }

    /// The next token for one position's logits (`V` values), given the prompt ids and the ids
    /// generated so far (for the penalties), with its log-probabilities when they were asked
    /// for. A distribution with no finite logit falls back to the arg-max.
    pub fn sample(
        &mut self,
        logits: &[f32],
        prompt_ids: &[u32],
        generated: &[u32],
    ) -> (u32, Option<TokenLogprobs>) {
        let logits: Cow<[f32]> = if self.has_penalties() {
            let mut l = logits.to_vec();
            self.penalize(&mut l, prompt_ids, generated);
            Cow::Owned(l)
        } else {
            Cow::Borrowed(logits)
        };
        let id = if self.is_greedy() {
            argmax(&logits)
        } else {
            self.draw(&logits).unwrap_or_else(|| argmax(&logits))
        };
        let lp = self.logprobs.map(|k| logprobs(&logits, id, k));
        (id, lp)
    }

    /// The candidates left after temperature, top-k, top-p and min-p, with their (not yet
    /// normalized) probabilities. Empty when no logit is finite.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let p = &self.params;
        // Candidates keep their raw logits: dividing by a positive temperature does not change
        // the ranking, and the weights below divide in f64, which a tiny temperature cannot
        // overflow.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, x)| x.is_finite())
            .map(|(i, &x)| (i as u32, x))
            .collect();
        if cand.is_empty() {
            return vec![];
        }
        // top_k = 0 means off, as in transformers and vLLM.
        if let Some(k) = p.top_k.filter(|&k| k > 0 && k < cand.len()) {
            cand.select_nth_unstable_by(k - 1, rank);
            cand.truncate(k);
        }
        let t = if self.is_greedy() {
            1.0
        } else {
            p.temperature as f64
        };
        let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max) as f64;
        // exp((l − max) / T): softmax(l / T) up to normalization.
        let weight = |x: f32| ((x as f64 - max) / t).exp();
        if p.top_p < 1.0 {
            // The smallest best-first prefix whose mass reaches top_p (at least one token).
            // Sampling distributions are peaked, so the prefix is nearly always among the few
            // hundred best: rank those first, and the whole vocabulary only if they fall short.
            let total: f64 = cand.iter().map(|c| weight(c.1)).sum();
            let want = p.top_p as f64 * total;
            let head = cand.len().min(256);
            if head < cand.len() {
                cand.select_nth_unstable_by(head - 1, rank);
            }
            cand[..head].sort_unstable_by(rank);
            let mut mass = 0.0;
            let mut keep = None;
            for n in 0..cand.len() {
                if n == head {
                    cand[head..].sort_unstable_by(rank);
                }
                mass += weight(cand[n].1);
                if mass >= want {
                    keep = Some(n + 1);
                    break;
                }
            }
            // Rounding can leave the mass just short of a top_p close to 1: keep everything.
            cand.truncate(keep.unwrap_or(cand.len()));
        }
        let mut probs: Vec<(u32, f64)> = cand.iter().map(|&(i, x)| (i, weight(x))).collect();
        if p.min_p > 0.0 {
            // Relative to the most likely token, so normalization does not matter.
            let best = probs.iter().map(|c| c.1).fold(0.0, f64::max);
            let floor = p.min_p as f64 * best;
            probs.retain(|c| c.1 >= floor);
        }
        probs
    }

    /// One draw from [`Self::distribution`]; None when it is empty.
    fn draw(&mut self, logits: &[f32]) -> Option<u32> {
        let probs = self.distribution(logits);
        let total: f64 = probs.iter().map(|c| c.1).sum();
        let last = probs.last()?.0;
        let u = self.rng.random::<f64>() * total;
        let mut mass = 0.0;
        for &(id, p) in &probs {
            mass += p;
            if u < mass {
                return Some(id);
            }
        }
        // Rounding can leave u just above the summed mass.
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            seed: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn argmax_first_index_wins_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(
            argmax(&[f32::NAN, 2.0, 1.0]),
            0,
            "torch.argmax-like: index 0 holds"
        );
        assert_eq!(argmax(&[0.0, f32::NAN, 2.0]), 2);
    }

    #[test]
    fn greedy_is_argmax_and_needs_no_rng() {
        let mut s = Sampler::new(&params(0.0));
        for _ in 0..3 {
            assert_eq!(s.sample(&[0.1, 0.5, 0.5, 0.2], &[], &[]).0, 1);
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative_once_per_id() {
        let mut s = Sampler::new(&SamplingParams {
            repetition_penalty: 2.0,
            ..params(0.0)
        });
        let mut l = vec![4.0, -4.0, 4.0, -4.0, 1.0];
        // id 0 twice, id 1 in both prompt and output, id 9 out of range.
        s.penalize(&mut l, &[0, 1, 0, 9], &[1, 3]);
        assert_eq!(l, vec![2.0, -8.0, 4.0, -8.0, 1.0]);
        // The scratch is clean again: a second call gives the same.
        let mut l2 = vec![4.0, -4.0, 4.0, -4.0, 1.0];
        s.penalize(&mut l2, &[0, 1, 0, 9], &[1, 3]);
        assert_eq!(l2, l);
    }

    #[test]
    fn presence_and_frequency_count_only_the_output() {
        let mut s = Sampler::new(&SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..params(0.0)
        });
        let mut l = vec![1.0; 4];
        s.penalize(&mut l, &[0, 0, 0], &[1, 2, 2, 2, 7]);
        assert_eq!(l, vec![1.0, 1.0 - 0.75, 1.0 - 1.25, 1.0]);
    }

    #[test]
    fn penalties_change_the_greedy_choice() {
        let mut s = Sampler::new(&SamplingParams {
            repetition_penalty: 1.5,
            ..params(0.0)
        });
        // 3.0 / 1.5 = 2.0 < 2.5.
        assert_eq!(s.sample(&[3.0, 2.5], &[0], &[]).0, 1);
    }

    #[test]
    fn logprobs_are_log_softmax_with_ranked_alternatives() {
        let l = [1.0f32, 3.0, 2.0, 3.0];
        let lp = logprobs(&l, 2, 3);
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        let want = |x: f32| (x as f64 - z.ln()) as f32;
        assert!((lp.logprob - want(2.0)).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!((lp.top[0].1 - want(3.0)).abs() < 1e-6);
        assert!(logprobs(&l, 0, 0).top.is_empty());
        assert_eq!(logprobs(&l, 0, 10).top.len(), 4);
    }

    #[test]
    fn top_p_keeps_at_least_one() {
        let s = Sampler::new(&SamplingParams {
            top_p: 0.0,
            ..params(1.0)
        });
        let d = s.distribution(&[0.0, 2.0, 1.0]);
        assert_eq!(d.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1]);
    }

    /// The top-p set past the first 256 ranked candidates equals a plain full sort's.
    #[test]
    fn top_p_beyond_the_head_equals_a_full_sort() {
        // A flat distribution over 5000 ids with ties: top_p 0.9 needs ~4500 of them.
        let logits: Vec<f32> = (0..5000u32)
            .map(|i| ((i * 7919) % 13) as f32 * 0.01)
            .collect();
        let s = Sampler::new(&SamplingParams {
            top_p: 0.9,
            ..params(1.0)
        });
        let got: Vec<u32> = s.distribution(&logits).iter().map(|c| c.0).collect();
        let mut order: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as u32, x))
            .collect();
        order.sort_by(rank);
        let total: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let mut mass = 0.0;
        let mut want = vec![];
        for (i, x) in order {
            want.push(i);
            mass += (x as f64).exp();
            if mass >= 0.9 * total {
                break;
            }
        }
        assert!(want.len() > 256);
        assert_eq!(got, want);
    }

    #[test]
    fn a_tiny_temperature_is_nearly_greedy_not_nan() {
        let mut s = Sampler::new(&params(1e-30));
        for _ in 0..100 {
            assert_eq!(s.sample(&[30.0, 31.0, -5.0], &[], &[]).0, 1);
        }
    }

    #[test]
    fn no_finite_logit_falls_back_to_argmax() {
        let mut s = Sampler::new(&params(1.0));
        let (id, _) = s.sample(&[f32::NAN, f32::NEG_INFINITY], &[], &[]);
        assert_eq!(id, 0);
    }
}
