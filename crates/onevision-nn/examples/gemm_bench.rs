//! Throughput of the `gemm_nt` kernels against candle's matmul on the model's linear shapes.
//! `cargo run --release -p onevision-nn --example gemm_bench`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use half::bf16;
use onevision_nn::gemm_nt::gemm_nt;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> candle_core::Result<()> {
    let shapes = [
        (3713, 896, 896),
        (3713, 4864, 896),
        (3713, 896, 4864),
        (5832, 1152, 1152),
        (5832, 4304, 1152),
        (5832, 1152, 4304),
        (1, 4864, 896),
        (1, 896, 4864),
        // The tied LM head: 544 MB in f32, far past the caches (memory bound).
        (1, 151936, 896),
    ];
    println!(
        "| m | n | k | dtype | candle GFLOP/s | gemm_nt GFLOP/s | ratio | gemm_nt weight GB/s |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|");
    for (m, n, k) in shapes {
        let runs = if m == 1 { 20 } else { 3 };
        let flop = 2.0 * (m * n * k) as f64;
        for dt in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?.to_dtype(dt)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?.to_dtype(dt)?;
            let tc = time(runs, || {
                x.matmul(&w.t().unwrap()).unwrap();
            });
            let tf = match dt {
                DType::F32 => {
                    let (a, b) = (
                        x.flatten_all()?.to_vec1::<f32>()?,
                        w.flatten_all()?.to_vec1::<f32>()?,
                    );
                    let mut c = vec![0f32; m * n];
                    time(runs, || assert!(gemm_nt(m, n, k, &a, &b, &mut c)))
                }
                _ => {
                    let (a, b) = (
                        x.flatten_all()?.to_vec1::<bf16>()?,
                        w.flatten_all()?.to_vec1::<bf16>()?,
                    );
                    let mut c = vec![bf16::ZERO; m * n];
                    time(runs, || assert!(gemm_nt(m, n, k, &a, &b, &mut c)))
                }
            };
            // Few-row products are memory bound: the weight bytes read per second tell more.
            let gbs = match m {
                1 => format!("{:.1}", (n * k * dt.size_in_bytes()) as f64 / tf / 1e9),
                _ => "-".into(),
            };
            println!(
                "| {m} | {n} | {k} | {dt:?} | {:.1} | {:.1} | {:.2}x | {gbs} |",
                flop / tc / 1e9,
                flop / tf / 1e9,
                tc / tf
            );
        }
    }
    Ok(())
}
