//! Throughput of the `gemm_nt` kernels against candle's matmul on the model's linear shapes.
//! `cargo run --release -p onevision-nn --example gemm_bench [decode]` (`decode`: only the
//! one-row sweep of a decode step). `ONEVISION_CPU_KERNELS=avx2` measures our kernels at the
//! AVX2 level; candle's matmul follows gemm's own choice (AVX2 in a build without the
//! `gemm-avx512` feature).

use std::time::Instant;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use half::bf16;
use onevision_nn::gemm_nt::gemm_nt;
use onevision_nn::quant_dot::QuantizedWeight;
use onevision_nn::Quantization;

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
    println!(
        "CPU kernel level {} (detected {}); {} threads",
        onevision_nn::cpu::level(),
        onevision_nn::cpu::detected(),
        rayon::current_num_threads()
    );
    match std::env::args().nth(1).as_deref() {
        Some("decode") => return decode_sweep(),
        Some("rows") => return rows_sweep(),
        _ => {}
    }
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
    decode_sweep()
}

/// One decode step's products for the Qwen2-0.5B shapes: 24 layers of q, k, v, o, gate, up,
/// down with distinct weights (1.4 GB in f32, past every cache), one row each, as decoding
/// reads them; weight GB/s and the token rate these products alone allow.
fn decode_sweep() -> candle_core::Result<()> {
    let (d, kv, inter) = (896, 128, 4864);
    let layer = [
        (d, d),
        (kv, d),
        (kv, d),
        (d, d),
        (inter, d),
        (inter, d),
        (d, inter),
    ];
    println!();
    println!("| decode sweep (24 layers, m = 1) | weight GB/s | tokens/s bound |");
    println!("|---|---:|---:|");
    for dt in [DType::F32, DType::BF16] {
        let mut weights = Vec::new();
        for _ in 0..24 {
            for &(n, k) in &layer {
                let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?.to_dtype(dt)?;
                weights.push((n, k, w));
            }
        }
        let bytes: usize = weights
            .iter()
            .map(|(n, k, _)| n * k * dt.size_in_bytes())
            .sum();
        let t = match dt {
            DType::F32 => {
                let ws: Vec<(usize, usize, Vec<f32>)> = weights
                    .iter()
                    .map(|(n, k, w)| (*n, *k, w.flatten_all().unwrap().to_vec1().unwrap()))
                    .collect();
                let x = vec![0.5f32; inter];
                let mut c = vec![0f32; inter];
                time(5, || {
                    for (n, k, w) in &ws {
                        assert!(gemm_nt(1, *n, *k, &x[..*k], w, &mut c[..*n]));
                    }
                })
            }
            _ => {
                let ws: Vec<(usize, usize, Vec<bf16>)> = weights
                    .iter()
                    .map(|(n, k, w)| (*n, *k, w.flatten_all().unwrap().to_vec1().unwrap()))
                    .collect();
                let x = vec![bf16::from_f32(0.5); inter];
                let mut c = vec![bf16::ZERO; inter];
                time(5, || {
                    for (n, k, w) in &ws {
                        assert!(gemm_nt(1, *n, *k, &x[..*k], w, &mut c[..*n]));
                    }
                })
            }
        };
        println!(
            "| {dt:?} | {:.1} | {:.1} |",
            bytes as f64 / t / 1e9,
            1.0 / t
        );
    }
    rows_sweep()?;
    quantized_sweep(&layer)
}

/// A (4864, 896) product for 1 to 24 rows (a batched decode step of that many sequences): below
/// `MIN_ROWS_PACKED` the dot-product kernel, from it on the packed GEMM; time per call and
/// weight GB/s.
fn rows_sweep() -> candle_core::Result<()> {
    let (n, k) = (4864, 896);
    println!();
    println!(
        "| rows (n = {n}, k = {k}; packed from {}) | f32 ms | f32 weight GB/s | bf16 ms | bf16 weight GB/s |",
        onevision_nn::gemm_nt::MIN_ROWS_PACKED
    );
    println!("|---:|---:|---:|---:|---:|");
    let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
    let wf: Vec<f32> = w.flatten_all()?.to_vec1()?;
    let wb: Vec<bf16> = wf.iter().map(|&x| bf16::from_f32(x)).collect();
    for m in [1, 2, 4, 7, 8, 12, 15, 16, 24, 32, 64, 96, 128, 256] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let mut c = vec![0f32; m * n];
        let mut cb = vec![bf16::ZERO; m * n];
        let tf = time(20, || assert!(gemm_nt(m, n, k, &x, &wf, &mut c)));
        let tb = time(20, || assert!(gemm_nt(m, n, k, &xb, &wb, &mut cb)));
        let gb = |bytes: usize, t: f64| (n * k * bytes) as f64 / t / 1e9;
        println!(
            "| {m} | {:.3} | {:.1} | {:.3} | {:.1} |",
            tf * 1e3,
            gb(4, tf),
            tb * 1e3,
            gb(2, tb)
        );
    }
    Ok(())
}

/// The same sweep with q8_0 and q4_0 weights (1.0625 / 0.5625 bytes per weight): our kernel and
/// candle's `QMatMul`, in the same run.
fn quantized_sweep(layer: &[(usize, usize)]) -> candle_core::Result<()> {
    for format in [Quantization::Q8_0, Quantization::Q4_0] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut bytes = 0f64;
        let per_weight = match format {
            Quantization::Q8_0 => 34.0 / 32.0,
            Quantization::Q4_0 => 18.0 / 32.0,
        };
        for _ in 0..24 {
            for &(n, k) in layer {
                let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
                ours.push(QuantizedWeight::quantize(&w, format)?);
                theirs.push(QMatMul::from_qtensor(QTensor::quantize(
                    &w,
                    format.ggml(),
                )?)?);
                bytes += (n * k) as f64 * per_weight;
            }
        }
        let x = vec![0.5f32; 4864];
        let mut c = vec![0f32; 4864];
        let t_ours = time(5, || {
            for q in &ours {
                q.product(1, &x[..q.k()], None, &mut c[..q.n()]);
            }
        });
        let xs: Vec<Tensor> = [896, 4864]
            .iter()
            .map(|&k| Tensor::from_vec(x[..k].to_vec(), (1, k), &Device::Cpu))
            .collect::<candle_core::Result<_>>()?;
        let t_candle = time(5, || {
            for (q, &(_, k)) in theirs.iter().zip(layer.iter().cycle()) {
                q.forward(&xs[usize::from(k != 896)]).unwrap();
            }
        });
        for (name, t) in [("ours", t_ours), ("candle QMatMul", t_candle)] {
            println!(
                "| {format} ({name}) | {:.1} | {:.1} |",
                bytes / t / 1e9,
                1.0 / t
            );
        }
    }
    Ok(())
}
