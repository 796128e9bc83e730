//! The default model, onevision-nano (docs/NANO.md): the checkpoint committed in
//! `models/onevision-nano/` is compiled into the binary, so `generate`, `chat`, `serve`, `eval`
//! and `inspect` without `--model` work wherever the binary is copied, with nothing to fetch.
//!
//! The loaders read checkpoint directories (the weights are memory-mapped), so on first use the
//! files are written once to a cache directory named by their content hash:
//! `$ONEVISION_CACHE`, else `$XDG_CACHE_HOME/onevision`, else `~/.cache/onevision`, else the
//! system temporary directory; then `onevision-nano-<hash>/`. A directory is written under a
//! temporary name and renamed into place, so concurrent first runs never see half a checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use onevision_engine::resolve::ResolvedModel;

/// The name the default model is served and reported under.
pub const NAME: &str = "onevision-nano";

macro_rules! file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../models/onevision-nano/",
                $name
            )) as &[u8],
        )
    };
}

/// Every file of the checkpoint.
pub const FILES: &[(&str, &[u8])] = &[
    file!("config.json"),
    file!("model.safetensors"),
    file!("tokenizer.json"),
    file!("tokenizer_config.json"),
    file!("chat_template.jinja"),
    file!("processor_config.json"),
    file!("generation_config.json"),
];

/// FNV-1a over the files' names and bytes: the cache directory's name.
fn content_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for b in name.bytes().chain([0]).chain(bytes.iter().copied()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn cache_root() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("ONEVISION_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("onevision")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("onevision")))
        .unwrap_or_else(|| std::env::temp_dir().join("onevision"))
}

/// True when `dir` holds every file with its full size (a complete earlier extraction).
fn complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.len() == bytes.len() as u64)
            .unwrap_or(false)
    })
}

/// The default model's directory, written on first use.
pub fn dir() -> Result<PathBuf> {
    let root = cache_root();
    let dir = root.join(format!("{NAME}-{:016x}", content_hash()));
    if complete(&dir) {
        return Ok(dir);
    }
    let tmp = root.join(format!(".{NAME}-{}-{}", std::process::id(), content_hash()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        for (name, bytes) in FILES {
            std::fs::write(tmp.join(name), bytes)?;
        }
        Ok(())
    };
    write().with_context(|| {
        format!(
            "writing the built-in model {NAME} to {} (set ONEVISION_CACHE to a writable \
             directory, or pass --model)",
            tmp.display()
        )
    })?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process put it there first (or an incomplete one is in the way).
        if !complete(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir)
                .with_context(|| format!("moving the built-in model into {}", dir.display()))?;
        } else {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(dir)
}

/// The default model as a resolved `--model`.
pub fn resolved() -> Result<ResolvedModel> {
    Ok(ResolvedModel {
        dir: dir()?,
        served_name: NAME.to_owned(),
    })
}
