//! How often weight-only quantized decoding picks f32's token, on any checkpoint (the
//! 0.5B-shaped benchmark one in particular):
//! `cargo run --release -p onevision-models --example quant_agreement -- DIR [STEPS]`.
//!
//! A fixed 16-token prompt, then STEPS (default 64) greedy steps teacher-forced on f32's
//! choices; at each step the q8_0 and q4_0 models' top-1 is compared with f32's, and the f32
//! top-1/top-2 gap is recorded so near-ties can be told apart from real disagreements.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use onevision_models::generate::all_logits;
use onevision_models::LlavaOnevision;
use onevision_nn::{ComputeDType, Quantization};

fn top2(t: &Tensor) -> (usize, f32) {
    let v: Vec<f32> = t
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    (idx[0], v[idx[0]] - v[idx[1]])
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: quant_agreement DIR [STEPS]"))?,
    );
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dev = Device::Cpu;
    let (reference, _) = LlavaOnevision::load(&dir, ComputeDType::F32, &dev)?;
    let mut models = Vec::new();
    for q in [Quantization::Q8_0, Quantization::Q4_0] {
        let (mut m, _) = LlavaOnevision::load(&dir, ComputeDType::F32, &dev)?;
        m.quantize_decode(q)?;
        models.push((q, m));
    }
    // Token ids spread over the vocabulary (below the special tokens), fixed.
    let prompt: Vec<u32> = (0..16u32).map(|i| (i * 7919 + 13) % 150_000).collect();
    let mut cr = reference.new_cache();
    let mut caches: Vec<_> = models.iter().map(|(_, m)| m.new_cache()).collect();
    let mut last = all_logits(&reference, &reference.forward_tokens(&prompt, &mut cr)?)?;
    for ((_, m), c) in models.iter().zip(&mut caches) {
        m.forward_tokens(&prompt, c)?;
    }
    let mut agree = vec![0usize; models.len()];
    let mut clear_agree = vec![0usize; models.len()];
    let mut clear = 0;
    let mut gaps = Vec::new();
    for _ in 0..steps {
        let n = last.dim(0)?;
        let (tok, _) = top2(&last.get(n - 1)?);
        let next = all_logits(
            &reference,
            &reference.forward_tokens(&[tok as u32], &mut cr)?,
        )?;
        let (want, gap) = top2(&next.get(0)?);
        gaps.push(gap);
        let is_clear = gap >= 0.1;
        clear += is_clear as usize;
        for (i, ((_, m), c)) in models.iter().zip(&mut caches).enumerate() {
            let l = all_logits(m, &m.forward_tokens(&[tok as u32], c)?)?;
            let got = top2(&l.get(0)?).0;
            agree[i] += (got == want) as usize;
            clear_agree[i] += (is_clear && got == want) as usize;
        }
        last = next;
    }
    gaps.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} steps after a 16-token prompt; f32 top-1/top-2 gap: median {:.3}, {} steps with gap >= 0.1",
        steps,
        gaps[gaps.len() / 2],
        clear
    );
    for (i, (q, _)) in models.iter().enumerate() {
        println!(
            "{q}: top-1 = f32's at {}/{} steps ({:.1} %); {}/{} where the f32 gap >= 0.1",
            agree[i],
            steps,
            100.0 * agree[i] as f64 / steps as f64,
            clear_agree[i],
            clear
        );
    }
    Ok(())
}
