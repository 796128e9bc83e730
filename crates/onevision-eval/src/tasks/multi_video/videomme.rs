//! `videomme` as lmms-eval 0.2.1 has it (lmms_eval/tasks/videomme/{videomme.yaml,utils.py}):
//! lmms-lab/Video-MME (config videomme, split test); the options written into the prompt as
//! `str(doc["options"])`, the Python list's repr (`['A. ...', 'B. ...']`; newline-joined only
//! from lmms-eval's 2024-10 versions on); `extract_characters_regex` for the answer; and
//! `videomme_aggregate_results`: the micro accuracy x100 over all documents (its per-duration,
//! domain, sub-category and task-type lines are only logged).

use serde_json::{json, Map, Value};

use super::{field_str_list, first_existing, video_dir, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_repr_str_list;
use crate::metrics::video_choice::videomme_extract_characters_regex;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const METRIC: &str = "videomme_percetion_score";
const OPTION_PROMPT: &str = "Select the best answer to the following multiple-choice question based on the video and the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.";
const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";
const LAYOUT: &str =
    "DIR/<videoID>.mp4 (or .MP4, .mkv), or DIR/data/<videoID>.mp4 as the Hub's zips unpack";

const VIDEO_TYPE: [&str; 3] = ["short", "medium", "long"];
const CATEGORIES: [&str; 6] = [
    "Knowledge",
    "Film & Television",
    "Sports Competition",
    "Artistic Performance",
    "Life Record",
    "Multilingual",
];
const SUB_CATEGORIES: [&str; 30] = [
    "Humanity & History",
    "Literature & Art",
    "Biology & Medicine",
    "Finance & Commerce",
    "Astronomy",
    "Geography",
    "Law",
    "Life Tip",
    "Technology",
    "Animation",
    "Movie & TV Show",
    "Documentary",
    "News Report",
    "Esports",
    "Basketball",
    "Football",
    "Athletics",
    "Other Sports",
    "Stage Play",
    "Magic Show",
    "Variety Show",
    "Acrobatics",
    "Handicraft",
    "Food",
    "Fashion",
    "Daily Life",
    "Travel",
    "Pet & Animal",
    "Exercise",
    "Multilingual",
];
const TASK_CATEGORIES: [&str; 12] = [
    "Temporal Perception",
    "Spatial Perception",
    "Attribute Perception",
    "Action Recognition",
    "Object Recognition",
    "OCR Problems",
    "Counting Problem",
    "Temporal Reasoning",
    "Spatial Reasoning",
    "Action Reasoning",
    "Object Reasoning",
    "Information Synopsis",
];

pub struct VideoMme;

/// utils.py `videomme_aggregate_results`: `100 * correct / answered` over every document. A
/// document whose duration, domain, sub-category or task type is outside utils.py's lists is
/// an error, as its KeyError is upstream.
pub fn videomme_aggregate_results(values: &[Value]) -> Result<f64, String> {
    let (mut correct, mut answered) = (0usize, 0usize);
    for v in values {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a {METRIC} value without a string `{k}`: {v}"))
        };
        let known = VIDEO_TYPE.contains(&get("duration")?)
            && CATEGORIES.contains(&get("category")?)
            && SUB_CATEGORIES.contains(&get("sub_category")?)
            && TASK_CATEGORIES.contains(&get("task_category")?);
        if !known {
            return Err(format!(
                "KeyError: {}_{}_{}_{} is not one of utils.py's categories",
                get("duration")?,
                get("category")?,
                get("sub_category")?,
                get("task_category")?
            ));
        }
        answered += 1;
        if v.get("pred_answer") == v.get("answer") {
            correct += 1;
        }
    }
    Ok(if answered > 0 {
        (100 * correct) as f64 / answered as f64
    } else {
        0.0
    })
}

impl Recipe for VideoMme {
    /// utils.py `videomme_doc_to_text` with the default post_prompt.
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let question = field_str(doc, "question")?;
        let options = py_repr_str_list(&field_str_list(doc, "options")?);
        Ok(format!(
            "{OPTION_PROMPT}\n{question}\n{options}\n{POST_PROMPT}"
        ))
    }
}

impl Task for VideoMme {
    fn name(&self) -> &str {
        "videomme"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/Video-MME".into(),
            config: Some("videomme".into()),
            split: "test".into(),
            columns: [
                "videoID",
                "question_id",
                "duration",
                "domain",
                "sub_category",
                "task_type",
                "question",
                "options",
                "answer",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `videomme_doc_to_visual` looks for `$HF_HOME/videomme/<videoID>.mp4`, then `.MP4`, then
    /// `.mkv`. Below `--video-dir DIR`: `DIR/<videoID>.mp4` (`.MP4`, `.mkv`) as 0.2.1 looks,
    /// then `DIR/data/<videoID>.{mp4,MP4,mkv}`, where the Hub's `videos_chunked_*.zip` put them
    /// (lmms-eval's later versions look there).
    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.doc_to_text(&row.fields)?;
        let dir = video_dir(ctx, self.name(), LAYOUT)?;
        let id = row.str("videoID")?;
        let mut candidates = vec![];
        for base in [dir.to_path_buf(), dir.join("data")] {
            for ext in ["mp4", "MP4", "mkv"] {
                candidates.push(base.join(format!("{id}.{ext}")));
            }
        }
        let path = first_existing(self.name(), candidates)?;
        Ok(Prompt {
            text,
            visual: Visual::Video(path),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `videomme_process_results`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let get = |k: &str| crate::doc::field(doc, k).cloned();
        let v = json!({
            "question_id": get("question_id")?,
            "duration": get("duration")?,
            "category": get("domain")?,
            "sub_category": get("sub_category")?,
            "task_category": get("task_type")?,
            "pred_answer": videomme_extract_characters_regex(filtered),
            "answer": get("answer")?,
        });
        Ok(vec![(METRIC.into(), v)])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(METRIC, videomme_aggregate_results)]
    }

    fn version(&self) -> Value {
        Value::from(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_is_micro_accuracy() {
        let doc = |p: &str| {
            json!({"duration": "short", "category": "Knowledge", "sub_category": "Law",
                   "task_category": "OCR Problems", "pred_answer": p, "answer": "A"})
        };
        let v = vec![doc("A"), doc(""), doc("B")];
        assert_eq!(videomme_aggregate_results(&v).unwrap(), 100.0 / 3.0);
        let mut bad = doc("A");
        bad["duration"] = json!("extra-long");
        assert!(videomme_aggregate_results(&[bad]).is_err());
    }
}
