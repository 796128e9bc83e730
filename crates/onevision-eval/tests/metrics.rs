//! Every task's filter, `process_results` and aggregations against lmms-eval 0.2.1's own
//! functions, on the fixtures in `fixtures/eval/metrics/` (one file per task, written by the
//! generators in `tools/eval_fixtures/`). Per-document values and aggregates must be equal
//! exactly: floats bit for bit, strings byte for byte.

use std::path::PathBuf;

use onevision_eval::metrics::pyrandom::PyRandom;
use onevision_eval::results::score_task;
use onevision_eval::tasks;
use serde_json::{Map, Value};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval/metrics")
}

/// JSON equality with numbers compared as f64 (Python writes `1` or `1.0` for the same value
/// depending on its type; the scores are equal when the numbers are).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Bool(x), Value::Number(y)) | (Value::Number(y), Value::Bool(x)) => {
            y.as_f64() == Some(if *x { 1.0 } else { 0.0 })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

struct Report {
    task: String,
    cases: usize,
    failures: Vec<String>,
}

fn check_file(path: &std::path::Path) -> Report {
    let text = std::fs::read_to_string(path).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    let name = fx["task"].as_str().unwrap().to_string();
    let found = tasks::find(&name).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let task = found
        .iter()
        .find(|t| t.name() == name)
        .expect("a task, not a group");
    let mut failures = vec![];
    let mut per_doc: Vec<Map<String, Value>> = vec![];
    let cases = fx["cases"].as_array().unwrap();
    // As the generators do: random.seed(0), then process_results over the cases in order.
    let mut rng = PyRandom::seed(0);
    for (i, case) in cases.iter().enumerate() {
        let doc = case["doc"].as_object().unwrap();
        let response = case["response"].as_str().unwrap();
        let filtered = task.filter(response, doc);
        if let Some(want) = case.get("filtered") {
            if want.as_str() != Some(filtered.as_str()) {
                failures.push(format!(
                    "case {i}: filter({response:?}) = {filtered:?}, lmms-eval {want}"
                ));
            }
        }
        let want_values = case["values"].as_object().unwrap();
        match task.process(doc, &filtered, &mut rng) {
            Ok(got) => {
                let got: Map<String, Value> = got.into_iter().collect();
                for (k, w) in want_values {
                    match got.get(k) {
                        Some(g) if same(g, w) => {}
                        g => failures.push(format!(
                            "case {i} ({response:?} -> {filtered:?}): {k} = {g:?}, lmms-eval {w}"
                        )),
                    }
                }
                if got.len() != want_values.len() {
                    failures.push(format!(
                        "case {i}: metrics {:?} vs lmms-eval {:?}",
                        got.keys().collect::<Vec<_>>(),
                        want_values.keys().collect::<Vec<_>>()
                    ));
                }
                per_doc.push(got);
            }
            Err(e) => failures.push(format!("case {i}: process failed: {e}")),
        }
    }
    // The aggregates over lmms-eval's own per-document values, so that an aggregation is
    // checked on its own even where a per-document value differs.
    let reference_values: Vec<Map<String, Value>> = cases
        .iter()
        .map(|c| c["values"].as_object().unwrap().clone())
        .collect();
    match score_task(task.as_ref(), &reference_values) {
        Ok(scores) => {
            let want = fx["results"].as_object().unwrap();
            for s in &scores {
                match want.get(&s.key()) {
                    Some(w) if w.as_f64() == Some(s.value) => {}
                    w => failures.push(format!("{}: {} vs lmms-eval {w:?}", s.key(), s.value)),
                }
                if let Some(w) = want.get(&s.stderr_key()) {
                    let ok = match (s.stderr, w) {
                        (None, Value::String(n)) => n == "N/A",
                        (Some(x), w) => w.as_f64() == Some(x),
                        _ => false,
                    };
                    if !ok {
                        failures.push(format!(
                            "{}: {:?} vs lmms-eval {w}",
                            s.stderr_key(),
                            s.stderr
                        ));
                    }
                }
            }
            for k in want.keys() {
                if !k.contains("_stderr") && !scores.iter().any(|s| &s.key() == k) {
                    failures.push(format!("lmms-eval reports {k}, we do not"));
                }
            }
        }
        Err(e) => failures.push(format!("aggregation failed: {e}")),
    }
    Report {
        task: name,
        cases: cases.len(),
        failures,
    }
}

#[test]
fn every_task_scores_as_lmms_eval() {
    let dir = fixtures_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    // `EVAL_FIXTURE=mme cargo test ...` checks only the fixture files whose name contains it.
    if let Ok(only) = std::env::var("EVAL_FIXTURE") {
        files.retain(|f| f.file_name().unwrap().to_string_lossy().contains(&only));
    }
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let mut bad = 0;
    for f in &files {
        let r = check_file(f);
        println!(
            "{:<40} {:>5} cases  {}",
            r.task,
            r.cases,
            if r.failures.is_empty() {
                "ok".to_string()
            } else {
                format!("{} FAILURES", r.failures.len())
            }
        );
        for line in r.failures.iter().take(20) {
            println!("    {line}");
        }
        bad += r.failures.len();
    }
    assert_eq!(bad, 0, "scores differ from lmms-eval's");
}
