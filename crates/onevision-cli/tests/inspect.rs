//! `onevision inspect` on the tiny checkpoints, and `--model org/name` resolved through a fake
//! Hugging Face cache (HF_HUB_CACHE, offline) by `inspect`, `generate` and `chat`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn onevision(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onevision"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run onevision")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_reports_architecture_weights_and_token_counts() {
    let out = onevision(
        &[
            "inspect",
            "fixtures/models/tied/checkpoint",
            "--image-size",
            "1080x1920",
            "--image-size",
            "384x384",
            "--video-frames",
            "8",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "vision     SigLIP: hidden 32",
        "text       Qwen2: hidden 32",
        "lm head    tied to the input embeddings",
        "model.safetensors",
        // 68 tensors; the counts are the sums of the header shapes.
        "68 tensors, 90.5 k parameters",
        "stored as F32",
        // fixtures/models/token_counts.json: transformers' counts for these sizes.
        "1080x1920    7269 tokens  (3x5 tiles + base)",
        "384x384    1485 tokens",
        "8 frames    1569 tokens",
        "layout   transformers 5 (processor_config.json)",
        "template chat_template.jinja",
        "image <image> 300, video <video> 301, eos <|im_end|> 239",
    ] {
        assert!(stdout.contains(want), "expected {want:?} in\n{stdout}");
    }

    // The separate-head checkpoint, through the old spelling `info --model`, with --load.
    let out = onevision(
        &[
            "info",
            "--model",
            "fixtures/models/gqa/checkpoint",
            "--load",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("6 heads / 2 kv heads"), "{stdout}");
    assert!(stdout.contains("lm head    its own weights"), "{stdout}");
    assert!(stdout.contains("stored tensors unused"), "{stdout}");
}

#[test]
fn inspect_reports_broken_parts_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = root().join("fixtures/models/tied/checkpoint");
    for f in ["config.json", "model.safetensors", "processor_config.json"] {
        std::fs::copy(ckpt.join(f), tmp.path().join(f)).unwrap();
    }
    // No tokenizer, no chat template; a truncated copy of the weights.
    let weights = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    std::fs::write(
        tmp.path().join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let dir = tmp.path().display().to_string();
    let out = onevision(&["inspect", &dir], &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("vision     SigLIP"), "{stdout}");
    assert!(stdout.contains("not a valid safetensors file"), "{stdout}");
    assert!(stdout.contains("tokenizer.json"), "{stdout}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains("not a usable checkpoint"), "{stderr}");

    let out = onevision(&["inspect", "fixtures/models"], &[]);
    assert!(text(&out).1.contains("no config.json"), "{}", text(&out).1);
}

/// A Hub cache holding the tied checkpoint as `test-org/tiny-ov`: `main` and the tag `v1` point
/// at the same snapshot.
fn fake_cache() -> tempfile::TempDir {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--test-org--tiny-ov");
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("refs/v1"), COMMIT).unwrap();
    let ckpt = root().join("fixtures/models/tied/checkpoint");
    for entry in std::fs::read_dir(&ckpt).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snap.join(entry.file_name())).unwrap();
    }
    cache
}

#[test]
fn repo_ids_resolve_through_the_hub_cache() {
    let cache = fake_cache();
    let env = [("HF_HUB_CACHE", cache.path())];

    let out = onevision(&["inspect", "test-org/tiny-ov", "--revision", "v1"], &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("model      test-org/tiny-ov\n"),
        "{stdout}"
    );
    assert!(stdout.contains("snapshots/0123456789abcdef"), "{stdout}");

    let out = onevision(
        &[
            "generate",
            "--model",
            "test-org/tiny-ov",
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "3",
            "--json",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);

    // HF_HOME/hub is used when HF_HUB_CACHE is not set.
    let home = tempfile::tempdir().unwrap();
    std::fs::rename(cache.path(), home.path().join("hub")).unwrap();
    let out = onevision(
        &["inspect", "test-org/tiny-ov"],
        &[("HF_HOME", home.path())],
    );
    assert!(out.status.success(), "{}", text(&out).1);

    // A missing repo or revision: what was looked for where, and how to get it.
    let out = onevision(
        &["inspect", "test-org/tiny-ov", "--revision", "v2"],
        &[("HF_HOME", home.path())],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("refs/v2 does not exist"), "{stderr}");
    assert!(stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
    assert!(
        stderr.contains("huggingface-cli download test-org/tiny-ov --revision v2"),
        "{stderr}"
    );
    let out = onevision(
        &["generate", "--model", "test-org/other", "--prompt", "hi"],
        &[("HF_HOME", home.path())],
    );
    let (_, stderr) = text(&out);
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(
        stderr.contains("models--test-org--other does not exist"),
        "{stderr}"
    );
}
