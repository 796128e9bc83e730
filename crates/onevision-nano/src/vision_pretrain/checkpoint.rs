//! The output checkpoint: the input's files, with the trained tower tensors written over the
//! old ones in their stored dtype and every other tensor's bytes kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use onevision_models::llava_ov::weights::RENAMES;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::io;
use crate::{Error, Result};

/// The records of the run that wrote `input` (`onevision train`'s log, curves, state and
/// optimizer moments): not copied, since they describe another run than the tower's.
const RUN_RECORDS: [&str; 4] = [
    "train_log.jsonl",
    "train_curves.svg",
    "trainer_state.json",
    "optimizer.safetensors",
];

/// Copies every checkpoint file of `input` into `output` (not [`RUN_RECORDS`]), rewriting each
/// `.safetensors` file with the tower's tensors (by canonical name) in the stored dtype; every
/// other tensor keeps its name, dtype and bytes, and the file its metadata. `Err` if a trained
/// tensor is found in no file.
pub fn write_checkpoint(input: &Path, output: &Path, tower: &[(String, Tensor)]) -> Result<()> {
    std::fs::create_dir_all(output).map_err(io(output))?;
    let trained: HashMap<&str, &Tensor> = tower.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut written = HashSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(io(input))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for src in files {
        let Some(name) = src.file_name() else {
            continue;
        };
        if RUN_RECORDS.iter().any(|r| name == *r) {
            continue;
        }
        let dst = output.join(name);
        if src.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            rewrite_weights(&src, &dst, &trained, &mut written)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
        }
    }
    let missing: Vec<&str> = trained
        .keys()
        .filter(|n| !written.contains(**n))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "no .safetensors file of {} holds the trained tensors {missing:?}",
            input.display()
        )));
    }
    Ok(())
}

/// The bytes of an f32 tensor in a stored dtype (f32 -> bf16/f16 rounds to nearest even, as
/// torch's casts do).
fn encode(t: &Tensor, dtype: Dtype, name: &str) -> Result<Vec<u8>> {
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(match dtype {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        other => {
            return Err(Error::Invalid(format!(
                "{name} is stored as {other:?}; expected a float tensor (F32, F16, BF16 or F64)"
            )))
        }
    })
}

fn rewrite_weights(
    src: &Path,
    dst: &Path,
    trained: &HashMap<&str, &Tensor>,
    written: &mut HashSet<String>,
) -> Result<()> {
    let bytes = std::fs::read(src).map_err(io(src))?;
    let bad = |e: safetensors::SafeTensorError| {
        Error::Invalid(format!(
            "{}: not a readable safetensors file ({e})",
            src.display()
        ))
    };
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let mut kept = vec![];
    let mut replaced: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![];
    for (name, view) in st.tensors() {
        let canonical = RENAMES.canonical(&name);
        match canonical
            .as_deref()
            .and_then(|c| trained.get(c).map(|t| (c, t)))
        {
            Some((c, t)) => {
                if t.dims() != view.shape() {
                    return Err(Error::Invalid(format!(
                        "{name} in {} has shape {:?} but the trained tensor {:?}",
                        src.display(),
                        view.shape(),
                        t.dims()
                    )));
                }
                replaced.push((
                    name.clone(),
                    view.dtype(),
                    view.shape().to_vec(),
                    encode(t, view.dtype(), &name)?,
                ));
                written.insert(c.to_owned());
            }
            None => kept.push((name, view)),
        }
    }
    for (name, dtype, shape, data) in &replaced {
        kept.push((
            name.clone(),
            TensorView::new(*dtype, shape.clone(), data).map_err(bad)?,
        ));
    }
    // Written under a temporary name first: a crash never leaves a checkpoint that looks whole.
    let tmp = dst.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(kept, header.metadata().clone(), &tmp)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, dst).map_err(io(dst))
}
