//! `nextqa_mc_test` (lmms_eval/tasks/nextqa/{nextqa_mc_test.yaml,_default_template_yaml,
//! utils.py}): lmms-lab/NExTQA (config MC, split test), the question and five lettered options
//! (no post-prompt), MMMU's `parse_multi_choice_response` (nextqa/utils.py carries an identical
//! copy, with its `random.choice` fallback), `exact_match` = the parsed letter is
//! `OPTIONS[doc["answer"]]`, averaged (`aggregation: mean`).

use serde_json::{Map, Value};

use super::{field_i64, first_existing, video_dir, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::mmmu::parse_multi_choice_response;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const OPTIONS: [&str; 5] = ["A", "B", "C", "D", "E"];
const LAYOUT: &str = "DIR/NExTVideo/<video>.mp4";

pub struct NextQaMc;

/// `OPTIONS[i]` with Python's indexing: -5..=-1 count from the end, others are an IndexError.
fn option_at(i: i64) -> Result<&'static str, DocError> {
    let k = if i < 0 { i + 5 } else { i };
    usize::try_from(k)
        .ok()
        .and_then(|k| OPTIONS.get(k).copied())
        .ok_or_else(|| DocError::new(format!("nextqa: answer {i} is not an option index (0..5)")))
}

/// nextqa/utils.py `get_multi_choice_info`: the stripped `a0`..`a4` by letter.
fn options(doc: &Map<String, Value>) -> Result<Vec<(String, String)>, DocError> {
    (0..5)
        .map(|i| {
            let a = field_str(doc, &format!("a{i}"))?;
            Ok((OPTIONS[i].to_string(), pystr::strip(a).to_string()))
        })
        .collect()
}

impl Recipe for NextQaMc {
    /// utils.py `nextqa_doc_to_text_mc` (no pre/post prompt in the yaml).
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let mut lines = vec![pystr::strip(field_str(doc, "question")?).to_string()];
        for (letter, text) in options(doc)? {
            lines.push(format!("{letter}. {text}"));
        }
        Ok(lines.join("\n"))
    }
}

impl Task for NextQaMc {
    fn name(&self) -> &str {
        "nextqa_mc_test"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/NExTQA".into(),
            config: Some("MC".into()),
            split: "test".into(),
            columns: ["video", "question", "answer", "a0", "a1", "a2", "a3", "a4"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// `nextqa_doc_to_visual` = `get_video($HF_HOME/nextqa/NExTVideo, doc["video"])`:
    /// `str(video)` + `.mp4` (unless it ends so), then `.MP4`. Below `--video-dir DIR`:
    /// `DIR/NExTVideo/<video>.mp4`.
    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.doc_to_text(&row.fields)?;
        let dir = video_dir(ctx, self.name(), LAYOUT)?.join("NExTVideo");
        let name = py_str_value(row.get("video")?);
        let file = |suffix: &str| {
            if name.ends_with(suffix) {
                dir.join(&name)
            } else {
                dir.join(format!("{name}.{suffix}"))
            }
        };
        let path = first_existing(self.name(), vec![file("mp4"), file("MP4")])?;
        Ok(Prompt {
            text,
            visual: Visual::Video(path),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `nextqa_mc_process_results`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let index2ans = options(doc)?;
        let all_choices: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
        let parsed = parse_multi_choice_response(filtered, &all_choices, &index2ans, rng)?;
        let gold = option_at(field_i64(doc, "answer")?)?;
        Ok(vec![("exact_match".into(), Value::Bool(parsed == gold))])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("exact_match")]
    }

    fn version(&self) -> Value {
        Value::from("0.0.1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_index_is_pythons() {
        assert_eq!(option_at(0).unwrap(), "A");
        assert_eq!(option_at(-1).unwrap(), "E");
        assert!(option_at(5).is_err());
    }
}
