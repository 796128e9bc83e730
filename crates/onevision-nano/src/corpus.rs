//! The world's text: what the tokenizer is trained over, and the language model's unimodal
//! pretraining samples.
//!
//! The language model is pretrained, before it ever sees an image, on the world told in words:
//! each scene's full description (the `detail` family's answer) stands where the image will
//! stand, followed by the same question the image samples ask and its answer. So it learns the
//! world's vocabulary and its questions' logic (counting, positions, which image differs) from
//! text, as a language model learns the world from text before LLaVA's stages connect it to a
//! vision tower. Only the train split's scenes are used.

use std::path::Path;

use onevision_world::media::media_item;
use onevision_world::task::detail;
use onevision_world::{item, Split};
use serde_json::{json, Value};

use crate::error::io;
use crate::init::SYSTEM_PROMPT;
use crate::{Error, Result};

/// A LLaVA JSON samples list, as `onevision world` writes it.
fn read_samples(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a LLaVA JSON samples list ({e}); expected the output of `onevision world`",
            path.display()
        ))
    })
}

/// Every human and gpt turn of a LLaVA JSON samples file (markers removed), plus the chat
/// template's own words: the tokenizer's training text.
pub fn sample_texts(path: &Path) -> Result<Vec<String>> {
    let samples = read_samples(path)?;
    let mut out = vec![
        format!("system\n{SYSTEM_PROMPT}"),
        "user\n".to_owned(),
        "assistant\n".to_owned(),
    ];
    for s in &samples {
        for turn in s["conversations"].as_array().into_iter().flatten() {
            if let Some(v) = turn["value"].as_str() {
                out.push(without_markers(v));
            }
        }
    }
    Ok(out)
}

/// A human turn without its `<image>` markers.
fn without_markers(turn: &str) -> String {
    turn.replace("<image>\n", "").replace("<image>", "")
}

fn text_sample(id: String, context: String, question: &str, answer: &str) -> Value {
    json!({
        "id": id,
        "conversations": [
            {"from": "human", "value": format!("{context}\n{}", without_markers(question))},
            {"from": "gpt", "value": answer},
        ]
    })
}

/// `count` text-only samples in LLaVA JSON: the scene families' questions over the scene's
/// description, and the multi-image families' over each image's description ("Image 1: ...").
/// Train-split scenes of `seed`, in the world's own order.
pub fn lm_samples(seed: u64, count: usize) -> Result<Vec<Value>> {
    let world = |e: onevision_world::Error| Error::Invalid(e.to_string());
    let mut out = Vec::with_capacity(count);
    let (mut single, mut media) = (0usize, 0usize);
    while out.len() < count {
        // Four scene questions to one multi-image question, about the world's own mix of the two.
        if out.len() % 5 != 4 {
            let it = item(Split::Train, seed, single).map_err(world)?;
            single += 1;
            let c = &it.sample.conversations;
            out.push(text_sample(
                format!("text-{}", it.sample.id),
                format!("Scene: {}", detail(&it.scene)),
                &c[0].value,
                &c[1].value,
            ));
        } else {
            let it = media_item(Split::Train, seed, media).map_err(world)?;
            media += 1;
            if it.sample.images.is_empty() {
                continue; // a video: its story is told by its frames, not one description
            }
            let context: Vec<String> = it
                .scenes
                .iter()
                .enumerate()
                .map(|(i, s)| format!("Image {}: {}", i + 1, detail(s)))
                .collect();
            let c = &it.sample.conversations;
            out.push(text_sample(
                format!("text-{}", it.sample.id),
                context.join("\n"),
                &c[0].value,
                &c[1].value,
            ));
        }
    }
    Ok(out)
}

/// Writes [`lm_samples`] to `path` as a JSON list.
pub fn write_lm_samples(path: &Path, seed: u64, count: usize) -> Result<()> {
    let samples = lm_samples(seed, count)?;
    std::fs::write(path, serde_json::to_string(&samples)?).map_err(io(path))
}

/// Splits a LLaVA JSON samples file by its samples' `task` field: writes
/// `<stem>-<task>.json` beside it for every family (so relative media paths stay valid) and
/// returns (family, samples) in name order. A sample without a `task` is counted under
/// `untasked` and written there.
pub fn split_families(path: &Path) -> Result<Vec<(String, usize)>> {
    let samples = read_samples(path)?;
    let mut by: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for s in samples {
        let task = s["task"].as_str().unwrap_or("untasked").to_owned();
        by.entry(task).or_default().push(s);
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("samples")
        .to_owned();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (task, v) in by {
        let p = dir.join(format!("{stem}-{task}.json"));
        std::fs::write(&p, serde_json::to_string(&v)?).map_err(io(&p))?;
        out.push((task, v.len()));
    }
    Ok(out)
}
