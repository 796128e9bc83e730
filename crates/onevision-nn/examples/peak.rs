//! The machine's limits that the kernels are measured against: f32 multiply-add peak per vector
//! level (a register-only loop of independent `vfmadd231ps` chains, on one thread and on every
//! thread), and memory read bandwidth (a sum over a 1 GiB buffer, every thread).
//! `cargo run --release -p onevision-nn --example peak`

use std::time::Instant;

use rayon::prelude::*;

/// Multiply-add steps per call: long enough that the call overhead vanishes.
const STEPS: usize = 1 << 22;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::STEPS;

    /// 12 independent chains of 8 lanes (FMA latency 4 x 2 ports = 8 in flight, with margin).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(seed: f32) -> f32 {
        let mut acc = [_mm256_set1_ps(seed); 12];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    /// 24 independent chains of 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(seed: f32) -> f32 {
        let mut acc = [_mm512_set1_ps(seed); 24];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..STEPS {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in acc {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }
}

fn gflops(threads: usize, flop_per_call: f64, f: impl Fn(f32) -> f32 + Sync) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let run = || {
            let t = Instant::now();
            let s: f32 = (0..threads).into_par_iter().map(|i| f(i as f32)).sum();
            std::hint::black_box(s);
            t.elapsed().as_secs_f64()
        };
        run();
        let best = (0..3).map(|_| run()).fold(f64::INFINITY, f64::min);
        threads as f64 * flop_per_call / best / 1e9
    })
}

fn main() {
    let threads = rayon::current_num_threads();
    println!(
        "detected CPU kernel level: {} ({} threads)",
        onevision_nn::cpu::detected(),
        threads
    );
    println!("| peak | 1 thread | {threads} threads |");
    println!("|---|---:|---:|");
    #[cfg(target_arch = "x86_64")]
    {
        use onevision_nn::cpu::{detected, KernelLevel};
        if detected() >= KernelLevel::Avx2 {
            let flop = (STEPS * 12 * 8 * 2) as f64;
            // SAFETY: AVX2 and FMA were detected.
            let f = |s| unsafe { x86::fma_avx2(s) };
            println!(
                "| f32 FMA, AVX2 (GFLOP/s) | {:.1} | {:.1} |",
                gflops(1, flop, f),
                gflops(threads, flop, f)
            );
        }
        if detected() >= KernelLevel::Avx512 {
            let flop = (STEPS * 24 * 16 * 2) as f64;
            // SAFETY: AVX-512F was detected.
            let f = |s| unsafe { x86::fma_avx512(s) };
            println!(
                "| f32 FMA, AVX-512 (GFLOP/s) | {:.1} | {:.1} |",
                gflops(1, flop, f),
                gflops(threads, flop, f)
            );
        }
    }
    // Read bandwidth: every thread sums its share of a buffer far larger than the caches.
    let buf = vec![1f32; 1 << 28];
    let read = || {
        let t = Instant::now();
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                // 16 partial sums: vectorizable, so the loop waits on memory, not on adds.
                let mut acc = [0f32; 16];
                for v in c.chunks_exact(16) {
                    acc.iter_mut().zip(v).for_each(|(a, x)| *a += x);
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    };
    read();
    let best = (0..5).map(|_| read()).fold(f64::INFINITY, f64::min);
    println!(
        "| memory read (GB/s) | - | {:.1} |",
        (buf.len() * 4) as f64 / best / 1e9
    );
}
