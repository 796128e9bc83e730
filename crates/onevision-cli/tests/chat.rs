//! `onevision chat` driven by a script on stdin, with the tiny committed checkpoint: answers
//! stream to stdout, one status line per answer on stderr, bad commands and files print an
//! error and the chat goes on, the history grows turn by turn and /reset clears it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `onevision chat` on the tiny checkpoint with `script` as stdin (6 new tokens per
/// answer unless `extra` says otherwise).
fn chat(script: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onevision"));
    cmd.args(["chat", "--model", "fixtures/models/tied/checkpoint"]);
    if !extra.contains(&"--max-new-tokens") {
        cmd.args(["--max-new-tokens", "6"]);
    }
    let mut child = cmd
        .args(extra)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run onevision chat");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).expect("write script");
    drop(stdin);
    child.wait_with_output().expect("wait for onevision chat")
}

/// (prompt tokens, media tokens) of each answer's status line on stderr:
/// `[N tokens...; prompt P tokens (M media); ...]`.
fn turns(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?.split_once("; prompt ")?.1;
            let (prompt, rest) = rest.split_once(" tokens (")?;
            let media = rest.split_once(" media)")?.0;
            Some((prompt.parse().ok()?, media.parse().ok()?))
        })
        .collect()
}

#[test]
fn scripted_chat_answers_attaches_media_and_survives_errors() {
    let out = chat(
        "hello\n\
         /image fixtures/images/photos/no-such-photo.png\n\
         /frobnicate\n\
         /image fixtures/images/photos/chelsea.png\n\
         what is this?\n\
         /quit\n\
         never sent\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let t = turns(&stderr);
    assert_eq!(
        t.len(),
        2,
        "two answers expected (nothing after /quit): {stderr}"
    );
    // The bad path and the unknown command were reported, and the chat went on.
    assert!(
        stderr.contains("error:") && stderr.contains("no-such-photo.png"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown command /frobnicate"), "{stderr}");
    assert!(
        stderr.contains("chelsea.png (451x300) attached"),
        "{stderr}"
    );
    // Turn 1 is text only; turn 2 carries turn 1, its answer and the image.
    assert_eq!(t[0].1, 0, "{stderr}");
    assert!(t[1].1 > 0, "the image's placeholders: {stderr}");
    assert!(t[1].0 > t[0].0 + t[1].1, "history + image: {t:?}");
    // stdout holds only the answers: one line ends each.
    assert!(String::from_utf8_lossy(&out.stdout).ends_with('\n'));
}

#[test]
fn history_grows_and_reset_clears_it() {
    let out = chat("one\ntwo\n/reset\none\n", &["--system", "Be brief."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 3, "{stderr}");
    assert!(t[1].0 > t[0].0, "turn 2 includes turn 1: {t:?}");
    assert_eq!(t[2], t[0], "after /reset the first prompt again: {t:?}");
    assert!(stderr.contains("[conversation cleared]"), "{stderr}");
}

#[test]
fn video_attachments_and_a_failed_turn_keep_the_chat_going() {
    // A frame directory sampled to 2 frames; then a video that does not exist; then a turn
    // whose prompt cannot fit (too many new tokens) is dropped, and the next one still runs.
    let out = chat(
        "/video fixtures/video/frames 2\n\
         describe\n\
         /video fixtures/video/missing.mp4\n\
         next\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(2 of 10 frames) attached"), "{stderr}");
    assert!(stderr.contains("missing.mp4"), "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 2, "{stderr}");
    assert!(
        t[0].1 > 0 && t[1].1 == t[0].1,
        "one video in both prompts: {t:?}"
    );

    let out = chat(
        "hi\nthere\n",
        &["--max-new-tokens", "40000"], // over the 32768-token context
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(turns(&stderr).len(), 0, "{stderr}");
    assert_eq!(
        stderr.matches("error:").count(),
        2,
        "each failed turn is reported: {stderr}"
    );
    assert!(stderr.contains("context"), "{stderr}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let script = "tell me a story\nanother\n";
    let args = ["--temperature", "1.0", "--top-p", "0.9", "--seed", "7"];
    let a = chat(script, &args);
    let b = chat(script, &args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn bad_flags_are_refused_before_loading() {
    for (flags, expect) in [
        (vec!["--temperature", "5"], "--temperature"),
        (vec!["--top-p", "0"], "--top-p"),
        (vec!["--top-k", "0"], "--top-k"),
        (vec!["--dtype", "f8"], "f8"),
    ] {
        let out = chat("hi\n", &flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} succeeded");
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
    }
}
