//! AdamW, the cosine schedule and gradient clipping against PyTorch: replays the run of
//! tools/fixtures/make_train_optim_fixtures.py (6 steps of `torch.optim.AdamW` under
//! `get_cosine_schedule_with_warmup` and `clip_grad_norm_(max_norm=1.0)`, 7 parameters in 6
//! param groups) and compares every step.
//!
//! Tolerances, by quantity:
//! - learning rates (f64) and the decay split: exact.
//! - gradient norms (f32): exact (the per-tensor and total norms follow ATen's summation order).
//! - parameters after each step, and the final moments: [`param_ulp`] units in the last place,
//!   0 (bit-exact) on CPUs with AVX-512, where torch's MKL square root is reproduced; without
//!   it the square root is correctly rounded, which differs from MKL's by 1 ulp on 0.6% of
//!   inputs, and 2 ulp are allowed.
//! - resume: bit for bit, always (Rust against Rust).

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use onevision_train::optim::{
    clip_grad_norm, clip_grad_norm_ordered, decays, AdamW, AdamWConfig, Grads, Group, GroupLrs,
    Param,
};
use onevision_train::schedule::{warmup_steps, CosineWithWarmup};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/train/optim");

/// The parameter and moment tolerance in ulp (see the header).
fn param_ulp() -> u32 {
    if onevision_nn::simd::has_avx512() {
        0
    } else {
        2
    }
}

struct Fixture {
    manifest: Value,
    t: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURE}/manifest.json"))
                .context("fixtures/train/optim/manifest.json (run tools/fixtures/make_train_optim_fixtures.py)")?,
        )?;
        let t =
            candle_core::safetensors::load(format!("{FIXTURE}/optim.safetensors"), &Device::Cpu)?;
        Ok(Self { manifest, t })
    }

    fn tensor(&self, key: &str) -> Result<&Tensor> {
        self.t
            .get(key)
            .with_context(|| format!("fixture tensor {key} missing"))
    }

    fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        Ok(self.tensor(key)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn steps(&self) -> usize {
        self.manifest["steps"].as_u64().unwrap_or(0) as usize
    }

    fn config(&self) -> AdamWConfig {
        let o = &self.manifest["optimizer"];
        AdamWConfig {
            beta1: o["betas"][0].as_f64().unwrap_or(f64::NAN),
            beta2: o["betas"][1].as_f64().unwrap_or(f64::NAN),
            eps: o["eps"].as_f64().unwrap_or(f64::NAN),
            weight_decay: o["weight_decay"].as_f64().unwrap_or(f64::NAN),
        }
    }

    fn base_lrs(&self) -> GroupLrs {
        let b = &self.manifest["base_lr"];
        GroupLrs {
            projector: b["projector"].as_f64().unwrap_or(f64::NAN),
            vision: b["vision"].as_f64().unwrap_or(f64::NAN),
            language: b["language"].as_f64().unwrap_or(f64::NAN),
        }
    }

    fn schedule(&self) -> CosineWithWarmup {
        let s = &self.manifest["schedule"];
        let total = s["total_steps"].as_u64().unwrap_or(0) as usize;
        CosineWithWarmup::new(
            warmup_steps(s["warmup_ratio"].as_f64().unwrap_or(f64::NAN), total),
            total,
        )
    }

    /// Fresh parameters with the fixture's initial values, in the model's order.
    fn params(&self) -> Result<Vec<Param>> {
        let mut out = vec![];
        for p in self.manifest["params"].as_array().context("params")? {
            let name = p["name"].as_str().context("name")?.to_string();
            let group: Group = p["group"].as_str().context("group")?.parse()?;
            let init = self.tensor(&format!("param.{name}"))?;
            out.push(Param {
                decay: decays(&name),
                var: Var::from_tensor(&init.copy()?)?,
                name,
                group,
            });
        }
        Ok(out)
    }

    /// The raw gradients of step k (a parameter with grad None is absent).
    fn grads(&self, k: usize, params: &[Param]) -> Result<Grads> {
        let mut g = Grads::new();
        for p in params {
            if let Some(t) = self.t.get(&format!("grad.{k}.{}", p.name)) {
                g.insert(p.name.clone(), t.copy()?);
            }
        }
        Ok(g)
    }
}

/// Distance in units in the last place (0 for +0 / -0).
fn ulps(a: f32, b: f32) -> u32 {
    let o = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i32::MIN.wrapping_sub(i)
        } else {
            i
        }
    };
    (o(a) as i64 - o(b) as i64)
        .unsigned_abs()
        .min(u32::MAX as u64) as u32
}

fn max_dev(got: &[f32], want: &[f32]) -> (u32, f32) {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).fold((0, 0f32), |(u, a), (g, w)| {
        (u.max(ulps(*g, *w)), a.max((g - w).abs()))
    })
}

fn run_step(opt: &mut AdamW, params: &[Param], fx: &Fixture, k: usize) -> Result<f64> {
    let mut grads = fx.grads(k, params)?;
    let max_norm = fx.manifest["max_grad_norm"]
        .as_f64()
        .context("max_grad_norm")?;
    let norm = clip_grad_norm_ordered(params, &mut grads, max_norm)?;
    let lrs = fx.base_lrs().scaled(fx.schedule().multiplier(k));
    opt.step(params, &grads, |g| lrs.get(g))?;
    Ok(norm)
}

fn values(p: &Param) -> Result<Vec<f32>> {
    Ok(p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

#[test]
fn learning_rates_follow_the_schedule_exactly() -> Result<()> {
    let fx = Fixture::load()?;
    let s = fx.schedule();
    assert_eq!(
        s.warmup_steps as u64,
        fx.manifest["schedule"]["warmup_steps"]
            .as_u64()
            .context("warmup")?
    );
    let groups = fx.manifest["groups"].as_array().context("groups")?;
    for k in 0..fx.steps() {
        let want = fx.tensor(&format!("lr.{k}"))?.to_vec1::<f64>()?;
        let lrs = fx.base_lrs().scaled(s.multiplier(k));
        for (gi, g) in groups.iter().enumerate() {
            let group: Group = g["group"].as_str().context("group")?.parse()?;
            assert_eq!(
                lrs.get(group).to_bits(),
                want[gi].to_bits(),
                "step {k} {group}: {} vs {}",
                lrs.get(group),
                want[gi]
            );
        }
    }
    // Under warmup the first update has lr 0.
    assert_eq!(s.multiplier(0), 0.0);
    Ok(())
}

#[test]
fn decay_split_equals_the_trainers() -> Result<()> {
    let fx = Fixture::load()?;
    let split = fx.manifest["decay"].as_object().context("decay")?;
    assert!(split.len() > 40, "the tiny model's parameters");
    for (name, want) in split {
        assert_eq!(decays(name), want.as_bool().context("bool")?, "{name}");
    }
    Ok(())
}

#[test]
fn adamw_clipping_and_schedule_equal_torch() -> Result<()> {
    let fx = Fixture::load()?;
    let params = fx.params()?;
    let mut opt = AdamW::new(fx.config());
    let tol = param_ulp();
    let mut clipped = vec![];
    for k in 0..fx.steps() {
        let norm = run_step(&mut opt, &params, &fx, k)?;
        let want = fx.f32s(&format!("grad_norm.{k}"))?[0];
        println!("step {k}: grad_norm {norm} (torch {want})");
        assert_eq!(
            (norm as f32).to_bits(),
            want.to_bits(),
            "grad norm of step {k}: {norm} vs {want}"
        );
        clipped.push(norm > 1.0);
        for p in &params {
            let (u, a) = max_dev(&values(p)?, &fx.f32s(&format!("after.{k}.{}", p.name))?);
            println!("  {:<70} max {u} ulp, {a:.3e} abs", p.name);
            assert!(u <= tol, "step {k} {}: {u} ulp > {tol}", p.name);
        }
    }
    assert!(
        clipped.contains(&true) && clipped.contains(&false),
        "the fixture clips on some steps only: {clipped:?}"
    );

    let state: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
    for p in &params {
        for what in ["exp_avg", "exp_avg_sq"] {
            let got = state[&format!("{}.{what}", p.name)]
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (u, a) = max_dev(&got, &fx.f32s(&format!("{what}.{}", p.name))?);
            println!("  {what:<10} {:<60} max {u} ulp, {a:.3e} abs", p.name);
            assert!(u <= tol, "{what} of {}: {u} ulp", p.name);
        }
        let step = state[&format!("{}.step", p.name)]
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        assert_eq!(
            step,
            fx.f32s(&format!("step.{}", p.name))?[0],
            "step count of {}",
            p.name
        );
    }
    // The parameter without a gradient on one step has one update fewer.
    let skipped = fx.manifest["no_grad"].as_object().context("no_grad")?;
    for name in skipped.values() {
        let name = name.as_str().context("name")?;
        assert_eq!(opt.steps(name), Some(fx.steps() as u64 - 1), "{name}");
    }
    Ok(())
}

/// The per-tensor norms (ATen's 8-lane order) and the total of `get_total_norm`, on vectors of
/// lengths around the vector widths.
#[test]
fn norms_equal_torch() -> Result<()> {
    let fx = Fixture::load()?;
    let sizes = fx.manifest["norm_sizes"]
        .as_array()
        .context("norm_sizes")?
        .len();
    let mut all = Grads::new();
    let mut params = vec![];
    for i in 0..sizes {
        let x = fx.tensor(&format!("norm.x.{i}"))?.copy()?;
        let want = fx.f32s(&format!("norm.torch.{i}"))?[0];
        // One tensor: the total is the norm of the one-element stack, sqrt(fl(n * n)).
        let mut one = Grads::from([("v".to_string(), x.clone())]);
        let got = clip_grad_norm(&mut one, 0.0)? as f32;
        assert_eq!(
            got.to_bits(),
            (want * want).sqrt().to_bits(),
            "vector {i} ({} elements)",
            x.elem_count()
        );
        // Names that sort differently from the order: the ordered total must follow `params`.
        let name = format!("v{}", sizes - i);
        params.push(param(&name, x.to_vec1::<f32>()?, true)?);
        all.insert(name, x);
    }
    let total = clip_grad_norm_ordered(&params, &mut all, 0.0)? as f32;
    let want = fx.f32s("norm.total")?[0];
    println!("total norm {total} (torch {want})");
    assert_eq!(total.to_bits(), want.to_bits());
    Ok(())
}

/// Save after 3 steps, load into a new optimizer and fresh parameters, continue: bit for bit
/// the uninterrupted run, through the file and through the in-memory tensors.
#[test]
fn resume_continues_bit_for_bit() -> Result<()> {
    let fx = Fixture::load()?;
    let n = fx.steps();
    let cut = 3;

    let straight = fx.params()?;
    let mut opt = AdamW::new(fx.config());
    for k in 0..n {
        run_step(&mut opt, &straight, &fx, k)?;
    }
    let want_state = opt.state_tensors();

    let first = fx.params()?;
    let mut opt = AdamW::new(fx.config());
    for k in 0..cut {
        run_step(&mut opt, &first, &fx, k)?;
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("optimizer.safetensors");
    opt.save_state(&file)?;
    let in_memory = opt.state_tensors();

    for via_file in [true, false] {
        // A new process: parameters from the checkpoint's values, a new optimizer.
        let resumed: Vec<Param> = first
            .iter()
            .map(|p| {
                Ok(Param {
                    var: Var::from_tensor(&p.var.as_tensor().copy()?)?,
                    ..p.clone()
                })
            })
            .collect::<Result<_>>()?;
        let mut opt = AdamW::new(fx.config());
        if via_file {
            opt.load_state_file(&resumed, &file)?;
        } else {
            opt.load_state(&resumed, in_memory.clone())?;
        }
        for k in cut..n {
            run_step(&mut opt, &resumed, &fx, k)?;
        }
        for (a, b) in straight.iter().zip(&resumed) {
            let (x, y) = (values(a)?, values(b)?);
            let same = x.iter().zip(&y).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "{} differs after resuming (via file: {via_file})",
                a.name
            );
        }
        let got = opt.state_tensors();
        assert_eq!(got.len(), want_state.len());
        for ((na, ta), (nb, tb)) in want_state.iter().zip(&got) {
            assert_eq!(na, nb);
            let (x, y) = (
                ta.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                tb.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            );
            assert!(
                x.iter().zip(&y).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{na} differs after resuming"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The rules, on small cases

fn param(name: &str, values: Vec<f32>, decay: bool) -> Result<Param> {
    let n = values.len();
    Ok(Param {
        name: name.to_string(),
        var: Var::from_tensor(&Tensor::from_vec(values, n, &Device::Cpu)?)?,
        group: Group::Language,
        decay,
    })
}

#[test]
fn decay_rule_on_names() {
    for n in [
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.language_model.embed_tokens.weight",
        "model.image_newline",
        "model.vision_tower.head.probe",
        "model.multi_modal_projector.linear_1.weight",
        "lm_head.weight",
    ] {
        assert!(decays(n), "{n} decays");
    }
    for n in [
        "model.language_model.layers.0.self_attn.q_proj.bias",
        "model.language_model.layers.3.input_layernorm.weight",
        "model.language_model.layers.3.post_attention_layernorm.weight",
        "model.language_model.norm.weight",
        "model.vision_tower.encoder.layers.0.layer_norm1.weight",
        "model.vision_tower.encoder.layers.0.layer_norm2.bias",
        "model.vision_tower.post_layernorm.weight",
        "model.vision_tower.head.layernorm.weight",
        "x.q_norm.weight",
        "Norm",
    ] {
        assert!(!decays(n), "{n} does not decay");
    }
    // `norm` only as a whole component or an `_norm` suffix.
    assert!(decays("model.normal.weight"));
    assert!(decays("model.norms_table"));
}

#[test]
fn groups_parse_and_print() {
    for g in Group::ALL {
        assert_eq!(g.name().parse::<Group>().ok(), Some(g));
    }
    let e = "llm"
        .parse::<Group>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("projector, vision or language"), "{e}");
}

#[test]
fn a_parameter_without_gradient_is_skipped() -> Result<()> {
    let ps = vec![
        param("a", vec![1.0; 5], true)?,
        param("b", vec![2.0; 5], false)?,
    ];
    let mut opt = AdamW::new(AdamWConfig::default());
    let grads = Grads::from([("a".to_string(), Tensor::new(&[0.5f32; 5], &Device::Cpu)?)]);
    opt.step(&ps, &grads, |_| 0.1)?;
    assert_eq!(opt.steps("a"), Some(1));
    assert_eq!(opt.steps("b"), None);
    assert_eq!(ps[1].var.as_tensor().to_vec1::<f32>()?, vec![2.0; 5]);
    assert_eq!(opt.state_tensors().len(), 3);
    Ok(())
}

#[test]
fn mismatched_gradient_is_an_error() -> Result<()> {
    let ps = vec![param("a", vec![1.0; 5], true)?];
    let mut opt = AdamW::new(AdamWConfig::default());
    let grads = Grads::from([("a".to_string(), Tensor::new(&[0.5f32; 4], &Device::Cpu)?)]);
    let e = opt
        .step(&ps, &grads, |_| 0.1)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("gradient of a has shape [4], the parameter [5]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn clipping_measures_and_scales() -> Result<()> {
    let mut grads = Grads::from([
        ("a".to_string(), Tensor::new(&[3.0f32, 0.0], &Device::Cpu)?),
        ("b".to_string(), Tensor::new(&[4.0f32], &Device::Cpu)?),
    ]);
    let norm = clip_grad_norm(&mut grads, 0.0)?;
    assert_eq!(norm, 5.0);
    assert_eq!(grads["b"].to_vec1::<f32>()?, vec![4.0]);
    let norm = clip_grad_norm(&mut grads, 1.0)?;
    assert_eq!(norm, 5.0);
    let coef = (1.0 / (5.0f32 + 1e-6f64 as f32)) * 1.0;
    assert_eq!(grads["b"].to_vec1::<f32>()?, vec![4.0 * coef]);
    // Below max_norm the coefficient is 1.
    let n2 = clip_grad_norm(&mut grads, 10.0)?;
    assert!((n2 - 1.0).abs() < 1e-6);
    assert_eq!(grads["b"].to_vec1::<f32>()?, vec![4.0 * coef]);
    assert_eq!(clip_grad_norm(&mut Grads::new(), 1.0)?, 0.0);
    Ok(())
}

#[test]
fn load_state_rejects_foreign_or_partial_state() -> Result<()> {
    let ps = vec![param("a", vec![1.0; 3], true)?];
    let mut opt = AdamW::new(AdamWConfig::default());
    let z = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
    let step = Tensor::new(2i64, &Device::Cpu)?;
    let e = opt
        .load_state(&ps, [("b.exp_avg".to_string(), z.clone())])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("optimizer state for b, which is not a trained parameter"),
        "{e}"
    );
    let e = opt
        .load_state(&ps, [("a.exp_avg".to_string(), z.clone())])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("optimizer state for a is incomplete"), "{e}");
    let e = opt
        .load_state(&ps, [("a.moment".to_string(), z.clone())])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("unexpected tensor \"a.moment\""), "{e}");
    opt.load_state(
        &ps,
        [
            ("a.exp_avg".to_string(), z.clone()),
            ("a.exp_avg_sq".to_string(), z),
            ("a.step".to_string(), step),
        ],
    )?;
    assert_eq!(opt.steps("a"), Some(2));
    Ok(())
}
