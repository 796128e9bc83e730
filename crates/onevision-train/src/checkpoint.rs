//! Checkpoints: a directory that `onevision generate` / `serve` and transformers'
//! `LlavaOnevisionForConditionalGeneration.from_pretrained` load (safetensors in the names
//! transformers 5 saves, `config.json`, tokenizer, template and processor files carried over from
//! the input checkpoint), plus the training state that `--resume` continues from:
//! `trainer_state.json` (step, data position, generator, settings) and
//! `optimizer.safetensors` (AdamW moments).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::optim::AdamW;
use crate::params::{saved_name, ModelState};
use crate::{Error, Result};

/// The weights file of a checkpoint.
pub const WEIGHTS: &str = "model.safetensors";
/// The training state (JSON) of a checkpoint.
pub const STATE: &str = "trainer_state.json";
/// The optimizer moments of a checkpoint.
pub const OPTIMIZER: &str = "optimizer.safetensors";

/// Files of the input checkpoint that are not weights and are carried over as they are
/// (`config.json` is rewritten, see [`save`]).
const CARRIED: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
];

/// Where a run stands, enough to continue it exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// The run's planned optimizer steps (the schedule depends on it).
    pub total_steps: usize,
    /// Micro-batches consumed so far, over all epochs.
    pub micro_batches: usize,
    pub seed: u64,
    /// The settings that must not change on resume, as printed at start.
    pub fingerprint: String,
    /// Samples skipped so far (unusable once prepared), counted into the log.
    pub skipped: usize,
    /// Samples truncated so far.
    pub truncated: usize,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn save_tensors(tensors: Vec<(String, Tensor)>, path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Writes the model (and, with `state`, the training state) to `dir`, creating it.
/// `config` is the input `config.json` with the values training changed applied.
pub fn save(
    dir: &Path,
    model: &ModelState,
    config: &serde_json::Value,
    source_dir: &Path,
    state: Option<(&TrainState, &AdamW)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    // Weights first to a temporary name, then renamed: a crash mid-write never leaves a
    // checkpoint that looks whole.
    let tensors: Vec<(String, Tensor)> = model
        .tensors()
        .map(|(name, t)| (saved_name(name), t.clone()))
        .collect();
    let tmp = dir.join(format!("{WEIGHTS}.tmp"));
    save_tensors(tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join(WEIGHTS)).map_err(write_err(dir))?;
    let text = serde_json::to_string_pretty(config).expect("a JSON value serializes");
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, text + "\n").map_err(write_err(&cfg_path))?;
    if source_dir != dir {
        for name in CARRIED {
            let src = source_dir.join(name);
            if src.is_file() {
                let dst = dir.join(name);
                std::fs::copy(&src, &dst).map_err(write_err(&dst))?;
            }
        }
    }
    if let Some((st, opt)) = state {
        opt.save_state(&dir.join(OPTIMIZER))?;
        let path = dir.join(STATE);
        let text = serde_json::to_string_pretty(st).expect("the state serializes");
        std::fs::write(&path, text + "\n").map_err(write_err(&path))?;
    }
    Ok(())
}

/// Reads the training state of a checkpoint directory (the optimizer's moments are in
/// [`OPTIMIZER`] beside it, read by [`AdamW::load_state_file`]).
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let bad = |reason: String| Error::Resume {
        path: dir.to_path_buf(),
        reason,
    };
    let path = dir.join(STATE);
    if !path.is_file() {
        return Err(bad(format!(
            "no {STATE}: expected a directory written by `onevision train` (OUTPUT/checkpoint-<step>/ or OUTPUT itself)"
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| bad(format!("{STATE} is not valid: {e}")))?;
    if !dir.join(OPTIMIZER).is_file() {
        return Err(bad(format!(
            "no {OPTIMIZER} (the optimizer state) beside {STATE}"
        )));
    }
    Ok(state)
}

/// `OUTPUT/checkpoint-<step>`, as the Trainer names intermediate checkpoints.
pub fn step_dir(output: &Path, step: usize) -> PathBuf {
    output.join(format!("checkpoint-{step}"))
}
