//! Per-task scores from per-document metric values, as lmms-eval's evaluator computes them:
//! `results.<task>["<metric>,<filter>"]` and its `"<metric>_stderr,<filter>"` twin.

use serde_json::{Map, Value};

use crate::metrics::aggregate::{mean, mean_stderr};
use crate::task::{Aggregation, Task};

/// One metric's aggregate and its stderr (None = "N/A").
#[derive(Debug, Clone, PartialEq)]
pub struct MetricScore {
    pub metric: String,
    pub filter: String,
    pub value: f64,
    pub stderr: Option<f64>,
}

impl MetricScore {
    pub fn key(&self) -> String {
        format!("{},{}", self.metric, self.filter)
    }

    pub fn stderr_key(&self) -> String {
        format!("{}_stderr,{}", self.metric, self.filter)
    }
}

/// Aggregates each metric of `task` over the documents' values (`per_doc[i]` is what
/// `process` returned for document i; documents that lack a metric do not count for it, as in
/// lmms-eval, where only returned keys are collected).
pub fn score_task(
    task: &dyn Task,
    per_doc: &[Map<String, Value>],
) -> Result<Vec<MetricScore>, String> {
    let mut out = vec![];
    for spec in task.metrics() {
        let values: Vec<Value> = per_doc
            .iter()
            .filter_map(|m| m.get(&spec.name).cloned())
            .collect();
        if values.is_empty() {
            continue;
        }
        let (value, stderr) = match spec.aggregation {
            Aggregation::Mean => (mean(&values)?, mean_stderr(&values)?),
            Aggregation::Custom(f) => {
                (f(&values).map_err(|e| format!("{}: {e}", spec.name))?, None)
            }
        };
        out.push(MetricScore {
            metric: spec.name.clone(),
            filter: task.filter_name().to_string(),
            value,
            stderr,
        });
    }
    Ok(out)
}

/// As [`score_task`], but a metric whose aggregation fails (lmms-eval would raise: MME on a
/// `--limit` that splits an image's question pair, a category its tables do not know) is
/// left out and its error returned beside the scores that could be computed.
pub fn score_task_each(
    task: &dyn Task,
    per_doc: &[Map<String, Value>],
) -> (Vec<MetricScore>, Vec<String>) {
    let mut scores = vec![];
    let mut errors = vec![];
    for spec in task.metrics() {
        let values: Vec<Value> = per_doc
            .iter()
            .filter_map(|m| m.get(&spec.name).cloned())
            .collect();
        if values.is_empty() {
            continue;
        }
        let computed = match spec.aggregation {
            Aggregation::Mean => mean(&values).and_then(|v| Ok((v, mean_stderr(&values)?))),
            Aggregation::Custom(f) => f(&values).map(|v| (v, None)),
        };
        match computed {
            Ok((value, stderr)) => scores.push(MetricScore {
                metric: spec.name.clone(),
                filter: task.filter_name().to_string(),
                value,
                stderr,
            }),
            Err(e) => errors.push(format!("{}: {e}", spec.name)),
        }
    }
    (scores, errors)
}

/// The scores as lmms-eval writes them under `results.<task>`: value and stderr ("N/A" when
/// lmms-eval has none), plus `alias`.
pub fn results_entry(task: &dyn Task, scores: &[MetricScore]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("alias".into(), Value::from(task.name()));
    for s in scores {
        m.insert(s.key(), Value::from(s.value));
        m.insert(
            s.stderr_key(),
            s.stderr
                .map(Value::from)
                .unwrap_or_else(|| Value::from("N/A")),
        );
    }
    m
}

/// A group's scores from its tasks', as lmms-eval 0.2.1's evaluator combines them: the mean
/// weighted by each task's document count and the pooled variance, in the group's task order,
/// bug for bug (the pooled-variance term uses the already-updated mean), then the square root.
/// `members`: (document count, scores) per task, in the group's order.
pub fn group_scores(members: &[(usize, Vec<MetricScore>)]) -> Vec<MetricScore> {
    let mut out: Vec<MetricScore> = vec![];
    // results[group][stderr] holds a variance until the end.
    let mut total_size = 0usize;
    for (current_size, scores) in members {
        for s in scores {
            let var_score = s.stderr.map_or(0.0, |x| x.powi(2));
            match out
                .iter_mut()
                .find(|g| g.metric == s.metric && g.filter == s.filter)
            {
                Some(g) => {
                    let (n, m) = (total_size as f64, *current_size as f64);
                    g.value = (g.value * n + s.value * m) / (n + m);
                    let var = g.stderr.unwrap_or(0.0);
                    g.stderr = Some(
                        ((n - 1.0) * var + (m - 1.0) * var_score) / (n + m - 1.0)
                            + n * m / ((n + m) * (n + m - 1.0)) * (g.value - s.value).powi(2),
                    );
                }
                None => out.push(MetricScore {
                    metric: s.metric.clone(),
                    filter: s.filter.clone(),
                    value: s.value,
                    stderr: Some(var_score),
                }),
            }
        }
        total_size += current_size;
    }
    for g in &mut out {
        g.stderr = g.stderr.map(f64::sqrt);
    }
    out
}

/// lmms-eval's results table (`make_table`), in Markdown.
pub fn table(rows: &[(String, Value, String, Vec<MetricScore>)]) -> String {
    let mut out = String::from("| Tasks | Version | Filter | n-shot | Metric | Value | Stderr |\n");
    out.push_str("|---|---|---|---|---|---:|---:|\n");
    for (name, version, _, scores) in rows {
        for (i, s) in scores.iter().enumerate() {
            let (n, v) = if i == 0 {
                (name.as_str(), version.to_string())
            } else {
                ("", String::new())
            };
            let stderr = s.stderr.map_or("N/A".to_string(), |e| format!("{e:.4}"));
            out.push_str(&format!(
                "| {n} | {v} | {} | 0 | {} | {:.4} | ± {stderr} |\n",
                s.filter, s.metric, s.value
            ));
        }
    }
    out
}
