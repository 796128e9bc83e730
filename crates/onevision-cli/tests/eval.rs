//! `onevision eval` end to end on the tiny fixture checkpoint, as a user runs it:
//!
//! - one task per modality (single image, multi-image, video) plus the user's own data, read
//!   from the committed parquet fixtures (fixtures/eval/data, the Hub's layout) and videos;
//! - in-process and through `onevision serve` (`--endpoint`, concurrency 1 and 4) write
//!   identical samples files;
//! - a run interrupted (killed, and a samples file cut mid-line) and resumed writes the same
//!   results.json as an uninterrupted one (`date` aside);
//! - `onevision eval score` recomputes the same results from the samples files;
//! - documents per second in-process and through the endpoint are printed (not asserted).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const MODEL: &str = "fixtures/models/tied/checkpoint";

fn onevision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run onevision")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "onevision failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// (task flag value, --video-dir) per modality.
const IMAGE_TASK: &str = "mme";
const MULTI_TASK: &str = "muirbench";
const VIDEO_TASK: &str = "videomme";
const VIDEO_DIR_ARG: &str = "videomme=fixtures/eval/videos/videomme";
const CUSTOM: &str = "fixtures/eval/custom/tasks.jsonl";

fn eval_args<'a>(output: &'a str, tasks: &'a str, backend: &'a [&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "eval",
        "--tasks",
        tasks,
        "--data",
        "fixtures/eval/data",
        "--video-dir",
        VIDEO_DIR_ARG,
        "--output",
        output,
        "--no-progress",
        "--hf-cache",
        "/nonexistent/hf-cache",
    ];
    v.extend_from_slice(backend);
    v
}

fn all_tasks() -> String {
    format!("{IMAGE_TASK},{MULTI_TASK},{VIDEO_TASK},{CUSTOM}")
}

/// Every samples file of a run, by name.
fn samples(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("samples_")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A samples file with each `failed` reason replaced by a marker, and the reasons.
fn without_failure_reasons(text: &str) -> (String, Vec<String>) {
    let mut reasons = vec![];
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if let Some(r) = v.get_mut("failed") {
            reasons.push(r.as_str().unwrap().to_string());
            *r = Value::from("<failed>");
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    (out, reasons)
}

fn results(dir: &Path) -> Value {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("date");
    v
}

/// docs/s of each task, from the per-task lines on stderr.
fn throughput(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("docs/s"))
        .map(str::to_string)
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

fn serve() -> (Server, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(["serve", "--model", MODEL, "--port", &port.to_string()])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start onevision serve");
    let server = Server(child);
    let t0 = Instant::now();
    while !healthy(port) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "onevision serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

#[test]
fn in_process_and_endpoint_agree_and_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let tasks = all_tasks();

    // In-process.
    let a = dir("inproc");
    let stderr = ok(&onevision(&eval_args(&a, &tasks, &["--model", MODEL])));
    let inproc_speed = throughput(&stderr);
    let reference = samples(Path::new(&a));
    let names: Vec<&str> = reference.iter().map(|(n, _)| n.as_str()).collect();
    // The custom file has two task fields: its default (the file stem) and "counting".
    assert_eq!(
        names,
        [
            "samples_counting.jsonl",
            "samples_mme.jsonl",
            "samples_muirbench.jsonl",
            "samples_tasks.jsonl",
            "samples_videomme.jsonl"
        ]
    );
    let res = results(Path::new(&a));
    for t in [IMAGE_TASK, MULTI_TASK, VIDEO_TASK, "tasks", "counting"] {
        assert!(res["results"][t].is_object(), "{t} missing from {res}");
    }
    // The custom file's broken image is counted as failed, and the run went on.
    assert_eq!(
        res["onevision"]["tasks"]["failed"], 1,
        "{}",
        res["onevision"]
    );

    // Through onevision serve, at concurrency 1 and 4: the same samples files, byte for byte.
    let (_server, url) = serve();
    let mut endpoint_speed = vec![];
    for c in ["1", "4"] {
        let b = dir(&format!("endpoint{c}"));
        let stderr = ok(&onevision(&eval_args(
            &b,
            &tasks,
            &["--endpoint", &url, "--concurrency", c],
        )));
        endpoint_speed.push((c, throughput(&stderr)));
        let got = samples(Path::new(&b));
        assert_eq!(got.len(), reference.len());
        for ((name, want), (_, have)) in reference.iter().zip(&got) {
            // Byte for byte, except the wording of a failure: in-process names the image,
            // the endpoint's says which request part the server could not decode.
            let (w, wf) = without_failure_reasons(want);
            let (h, hf) = without_failure_reasons(have);
            assert_eq!(
                w, h,
                "{name} differs between in-process and --endpoint --concurrency {c}"
            );
            assert_eq!(wf.len(), hf.len(), "{name}: failures {wf:?} vs {hf:?}");
            for (a, b) in wf.iter().zip(&hf) {
                let both = a.contains("bad Png header") && b.contains("bad Png header");
                let video = a.contains("video not found") && a == b;
                assert!(both || video, "{a} / {b}");
            }
        }
        let mut rb = results(Path::new(&b));
        let mut ra = res.clone();
        rb.as_object_mut().unwrap().remove("config");
        ra.as_object_mut().unwrap().remove("config");
        assert_eq!(ra, rb, "results.json differs (config aside)");
    }

    // Resume: a samples file cut mid-line (a crash while writing) and one with only its first
    // document; the rerun fills in the rest and the results are the same.
    let r = dir("resumed");
    std::fs::create_dir_all(&r).unwrap();
    for (name, text) in &reference {
        let lines: Vec<&str> = text.lines().collect();
        let cut = if name.contains(IMAGE_TASK) {
            format!("{}\n{}", lines[0], &lines[1][..lines[1].len() / 2])
        } else {
            format!("{}\n", lines[0])
        };
        std::fs::write(Path::new(&r).join(name), cut).unwrap();
    }
    let stderr = ok(&onevision(&eval_args(&r, &tasks, &["--model", MODEL])));
    assert!(stderr.contains("from the samples file"), "{stderr}");
    assert_eq!(results(Path::new(&r)), res);
    assert_eq!(samples(Path::new(&r)), reference);

    // A run killed part-way, then resumed: a task of 60 questions (long enough to be caught
    // in the middle), against an uninterrupted run of it.
    let big = tmp.path().join("big.jsonl");
    let photos = root().join("fixtures/eval/custom");
    let mut lines = String::new();
    for i in 0..60 {
        let img = ["astronaut.png", "coffee.png", "chelsea.png"][i % 3];
        lines.push_str(&format!(
            "{{\"id\": {i}, \"question\": \"Question {i}?\", \"image\": \"{}\", \"answer\": \"a{i}\"}}\n",
            photos.join(img).display()
        ));
    }
    std::fs::write(&big, lines).unwrap();
    let big = big.to_string_lossy().into_owned();
    let whole = dir("big-whole");
    let big_inproc = throughput(&ok(&onevision(&eval_args(
        &whole,
        &big,
        &["--model", MODEL],
    ))));
    let mut big_endpoint = vec![];
    for c in ["1", "4"] {
        let out = dir(&format!("big-endpoint{c}"));
        let backend = ["--endpoint", url.as_str(), "--concurrency", c];
        let args = eval_args(&out, &big, &backend);
        big_endpoint.push((c, throughput(&ok(&onevision(&args)))));
        assert_eq!(samples(Path::new(&out)), samples(Path::new(&whole)));
    }
    let k = dir("big-killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(eval_args(&k, &big, &["--model", MODEL]))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = Path::new(&k).join("samples_big.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&file).map_or(true, |s| s.lines().count() < 3)
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let written = std::fs::read_to_string(&file).map_or(0, |s| s.lines().count());
    println!("killed run: {status}, {written} of 60 samples written");
    assert!(
        !status.success() && written < 60,
        "the run was not interrupted ({status}, {written} lines)"
    );
    let stderr = ok(&onevision(&eval_args(&k, &big, &["--model", MODEL])));
    // (The last line may have been cut by the kill: it is dropped and counted, not resumed.)
    assert!(stderr.contains("from the samples file"), "{stderr}");
    println!(
        "resumed: {}",
        stderr.lines().find(|l| l.starts_with("big:")).unwrap_or("")
    );
    assert_eq!(results(Path::new(&k)), results(Path::new(&whole)));
    assert_eq!(samples(Path::new(&k)), samples(Path::new(&whole)));

    // The server dies part-way: the run stops with a message naming it, keeps what it wrote,
    // and a rerun (against a new server) completes it to the same results.
    let (server2, url2) = serve();
    let d = dir("big-dead-server");
    let child = Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(eval_args(&d, &big, &["--endpoint", &url2]))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let file = Path::new(&d).join("samples_big.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&file).map_or(true, |s| s.lines().count() < 3)
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(server2); // kills onevision serve
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    let kept = std::fs::read_to_string(&file).map_or(0, |s| s.lines().count());
    println!("dead server: {}, {kept} of 60 samples kept", out.status);
    if kept < 60 {
        assert!(!out.status.success(), "{e}");
        assert!(e.contains(&url2) && e.contains("resumes"), "{e}");
    }
    ok(&onevision(&eval_args(&d, &big, &["--endpoint", &url])));
    assert_eq!(samples(Path::new(&d)), samples(Path::new(&whole)));

    // Rescoring from the samples files alone.
    let rescored = tmp.path().join("rescored.json");
    let out = onevision(&[
        "eval",
        "score",
        "--tasks",
        &tasks,
        "--samples-dir",
        &a,
        "--output",
        rescored.to_str().unwrap(),
    ]);
    ok(&out);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&rescored).unwrap()).unwrap();
    assert_eq!(v["results"], res["results"]);

    println!(
        "throughput on the tiny checkpoint, 60 one-image questions (this machine, one run each):"
    );
    println!("  in-process: {}", big_inproc.join(" "));
    for (c, lines) in &big_endpoint {
        println!(
            "  --endpoint (onevision serve) --concurrency {c}: {}",
            lines.join(" ")
        );
    }
    println!("per task of the fixture run (4 documents each, too few to time well):");
    println!("  in-process:");
    for l in &inproc_speed {
        println!("    {l}");
    }
    for (c, lines) in &endpoint_speed {
        println!("  --endpoint (onevision serve), --concurrency {c}:");
        for l in lines {
            println!("    {l}");
        }
    }
}

/// Every built-in task runs from the committed data fixtures (2 documents each), and one
/// from a Hugging Face cache layout instead of --data.
#[test]
fn every_task_runs_from_the_fixtures_and_the_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("all").to_string_lossy().into_owned();
    let list = onevision(&["eval", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    let names: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.len() >= 40, "{listing}");
    let tasks = names.join(",");
    let v = |t: &str| format!("{t}=fixtures/eval/videos/{t}");
    let videos: Vec<String> = [
        "videomme",
        "nextqa_mc_test",
        "mvbench",
        "mlvu",
        "egoschema_subset",
    ]
    .iter()
    .map(|t| v(t))
    .collect();
    let mut args = vec![
        "eval",
        "--tasks",
        &tasks,
        "--data",
        "fixtures/eval/data",
        "--limit",
        "2",
        "--output",
        &out,
        "--no-progress",
        "--hf-cache",
        "/nonexistent",
        "--model",
        MODEL,
    ];
    for d in &videos {
        args.push("--video-dir");
        args.push(d);
    }
    let stderr = ok(&onevision(&args));
    let res = results(Path::new(&out));
    for n in &names {
        let r = &res["results"][*n];
        assert!(
            r.is_object() && r.as_object().unwrap().len() > 1,
            "{n}: {r}\n{stderr}"
        );
        assert_eq!(res["n-samples"][*n]["effective"], 2, "{n}");
        // Only the fixtures' deliberately missing videos may fail.
        let failed = res["onevision"][*n]["failed"].as_u64().unwrap();
        assert!(
            failed == 0
                || n.contains("video")
                || n.starts_with("mvbench")
                || *n == "mlvu"
                || n.contains("ego")
                || n.contains("nextqa"),
            "{n}: {failed} failed\n{stderr}"
        );
    }
    for g in ["mvbench", "llava_interleave_bench"] {
        assert!(res["groups"][g].is_object(), "group {g} missing");
    }

    // The Hugging Face cache layout: datasets--org--name/snapshots/<rev>/ + refs/main.
    let cache = tmp.path().join("hf");
    let repo = cache.join("datasets--lmms-lab--MME");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::os::unix::fs::symlink(
        root().join("fixtures/eval/data/lmms-lab/MME"),
        repo.join("snapshots/0123abcd"),
    )
    .unwrap();
    let out2 = tmp.path().join("cache").to_string_lossy().into_owned();
    ok(&onevision(&[
        "eval",
        "--tasks",
        "mme",
        "--hf-cache",
        cache.to_str().unwrap(),
        "--limit",
        "2",
        "--output",
        &out2,
        "--no-progress",
        "--model",
        MODEL,
    ]));
    assert_eq!(
        results(Path::new(&out2))["results"]["mme"],
        res["results"]["mme"]
    );
}

/// `--offset`/`--limit` pick documents by doc_id; runs over other ranges of the same output
/// keep what the file already has.
#[test]
fn offset_and_limit_select_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().to_string_lossy().into_owned();
    let ids = |dir: &str| -> Vec<u64> {
        let text = std::fs::read_to_string(Path::new(dir).join("samples_mme.jsonl")).unwrap();
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["doc_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--tasks",
            "mme",
            "--data",
            "fixtures/eval/data",
            "--output",
            &o,
            "--no-progress",
            "--hf-cache",
            "/nonexistent",
            "--model",
            MODEL,
        ];
        args.extend_from_slice(extra);
        ok(&onevision(&args))
    };
    // One question of an MME pair: lmms-eval's aggregation raises; here that metric is
    // reported as not scored and the run ends normally.
    let stderr = run(&["--offset", "2", "--limit", "1"]);
    assert_eq!(ids(&o), [2]);
    assert!(
        stderr.contains("not scored: mme_percetion_score: MME only supports pairwise evaluation"),
        "{stderr}"
    );
    let r = results(Path::new(&o));
    assert_eq!(r["n-samples"]["mme"]["effective"], 1);
    assert!(
        r["onevision"]["mme"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("pairwise"),
        "{r}"
    );
    run(&["--limit", "2"]);
    assert_eq!(ids(&o), [0, 1, 2]);
    assert_eq!(results(Path::new(&o))["n-samples"]["mme"]["effective"], 2);
    let stderr = run(&["--offset", "1"]);
    assert!(stderr.contains("2 from the samples file"), "{stderr}");
    assert_eq!(ids(&o), [0, 1, 2, 3]);
    // Every document is in the file now; the whole split scores.
    let stderr = run(&[]);
    assert!(stderr.contains("4 from the samples file"), "{stderr}");
    let r = results(Path::new(&o));
    assert!(
        r["results"]["mme"]["mme_percetion_score,none"].is_number(),
        "{r}"
    );
    assert!(r["onevision"]["mme"].get("errors").is_none(), "{r}");
}

/// A dataset row whose image does not decode (fixtures/eval/bad, written by
/// tools/eval_fixtures/make_bad_data_fixtures.py) is scored as failed and counted, in process
/// and through the server alike, and the task still gets its score.
#[test]
fn an_undecodable_image_fails_its_document_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = serve();
    for (name, backend) in [
        ("inproc", vec!["--model", MODEL]),
        ("endpoint", vec!["--endpoint", url.as_str()]),
    ] {
        let o = tmp.path().join(name).to_string_lossy().into_owned();
        let mut args = vec![
            "eval",
            "--tasks",
            "mme",
            "--data",
            "fixtures/eval/bad",
            "--output",
            &o,
            "--no-progress",
            "--hf-cache",
            "/nonexistent",
        ];
        args.extend_from_slice(&backend);
        let stderr = ok(&onevision(&args));
        assert!(
            stderr.contains("mme: 2 documents (2 generated, 0 from the samples file), 1 failed"),
            "{stderr}"
        );
        let r = results(Path::new(&o));
        assert_eq!(r["onevision"]["mme"]["failed"], 1, "{r}");
        assert!(
            r["results"]["mme"]["mme_percetion_score,none"].is_number(),
            "{r}"
        );
        let text = std::fs::read_to_string(Path::new(&o).join("samples_mme.jsonl")).unwrap();
        let second: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        let why = second["failed"].as_str().unwrap();
        assert!(
            why.contains("truncated") || why.contains("end of file"),
            "{why}"
        );
        assert_eq!(second["resps"], serde_json::json!([[""]]));
    }
}

#[test]
fn bad_input_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().to_string_lossy().into_owned();
    let out = onevision(&eval_args(&o, "no_such_task", &["--model", MODEL]));
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("unknown task `no_such_task`") && e.contains("ai2d") && e.contains("mme"),
        "{e}"
    );

    // A dataset that is nowhere: both places named.
    let out = onevision(&[
        "eval",
        "--tasks",
        "ai2d",
        "--data",
        &o,
        "--hf-cache",
        "/nonexistent/hf",
        "--output",
        &o,
        "--model",
        MODEL,
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("lmms-lab/ai2d") && e.contains(&o) && e.contains("/nonexistent/hf"),
        "{e}"
    );

    // A dead endpoint stops the run with a clear message.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = onevision(&eval_args(&o, IMAGE_TASK, &["--endpoint", &url]));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains(&url), "{e}");

    // A task file that is not there.
    let out = onevision(&eval_args(
        &o,
        "fixtures/eval/custom/nope.jsonl",
        &["--model", MODEL],
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.jsonl: no such file"));

    // A revision without a model to apply it to (with neither --model nor --endpoint the
    // built-in model runs, which has no revisions; tests/nano.rs runs it).
    let out = onevision(&eval_args(&o, IMAGE_TASK, &["--revision", "main"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}
