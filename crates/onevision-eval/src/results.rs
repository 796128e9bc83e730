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
