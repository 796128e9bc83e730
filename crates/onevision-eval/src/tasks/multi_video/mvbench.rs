//! The `mvbench` group (lmms_eval/tasks/mvbench/{mvbench.yaml,_default_template.yaml,
//! mvbench_<sub_task>.yaml,utils.py}): 20 tasks `mvbench_<sub_task>` on OpenGVLab/MVBench
//! (config `<sub_task>`, split train; the Hub keeps them as `json/<sub_task>.json`), the
//! question, lettered candidates and the post-prompt; `mcq_acc` of the response against the
//! answer's letter; `mvbench_aggregate_results`: x100 the mean score over the documents with a
//! non-empty response.
//!
//! Media, below `--video-dir DIR` as below `$HF_HOME/mvbench`: `DIR/<folder>/<video>`, the
//! folder per sub-task from utils.py's `DATA_LIST` (`action_count` -> `perception/videos/`,
//! ...). `episodic_reasoning` stores frames: `DIR/tvqa/frames_fps3_hq/<video>/` holds its
//! `.jpg`/`.png` files, sent as [`Visual::Frames`] sorted by name (lmms-eval takes
//! `os.listdir`'s order, which the file system decides) and subsampled to the yaml's
//! `sample_frames: 32` by the backend. utils.py's fallback to `data0613/` for the clevrer and
//! star folders never fires in 0.2.1 (it tests `os.path.basename` of a folder ending in `/`,
//! which is empty), so it is not looked at here either.

use serde_json::{json, Map, Value};

use super::{field_str_list, video_dir, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::mcq_acc::mcq_acc;
use crate::metrics::pyrandom::PyRandom;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const GROUP: &str = "mvbench";
const METRIC: &str = "mvbench_accuracy";
const POST_PROMPT: &str = "Answer with the option's letter from the given choices directly.";

/// utils.py `DATA_LIST`, in mvbench.yaml's task order.
const SUB_TASKS: [(&str, &str); 20] = [
    ("action_sequence", "star/Charades_v1_480/"),
    ("moving_count", "clevrer/video_validation/"),
    ("action_prediction", "star/Charades_v1_480/"),
    ("episodic_reasoning", "tvqa/frames_fps3_hq/"),
    ("action_antonym", "ssv2_video/"),
    ("action_count", "perception/videos/"),
    ("scene_transition", "scene_qa/video/"),
    ("object_shuffle", "perception/videos/"),
    ("object_existence", "clevrer/video_validation/"),
    ("fine_grained_pose", "nturgbd/"),
    ("unexpected_action", "FunQA_test/test/"),
    ("moving_direction", "clevrer/video_validation/"),
    ("state_change", "perception/videos/"),
    ("object_interaction", "star/Charades_v1_480/"),
    ("character_order", "perception/videos/"),
    ("action_localization", "sta/sta_video/"),
    ("counterfactual_inference", "clevrer/video_validation/"),
    ("fine_grained_action", "Moments_in_Time_Raw/videos/"),
    ("moving_attribute", "clevrer/video_validation/"),
    ("egocentric_navigation", "vlnqa/"),
];

/// The sub-task whose data are frame folders (`mvbench_frames_doc_to_visual`).
const FRAMES_SUB_TASK: &str = "episodic_reasoning";

pub struct MvBench {
    name: String,
    sub_task: &'static str,
    folder: &'static str,
}

pub fn tasks() -> Vec<Box<dyn Recipe>> {
    SUB_TASKS
        .iter()
        .map(|&(sub_task, folder)| {
            Box::new(MvBench {
                name: format!("mvbench_{sub_task}"),
                sub_task,
                folder,
            }) as Box<dyn Recipe>
        })
        .collect()
}

/// utils.py `mvbench_aggregate_results`.
pub fn mvbench_aggregate_results(values: &[Value]) -> Result<f64, String> {
    let (mut answered, mut correct) = (0usize, 0.0f64);
    for v in values {
        let pred = v
            .get("pred_answer")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a {METRIC} value without a string `pred_answer`: {v}"))?;
        if !pred.is_empty() {
            answered += 1;
            correct += v
                .get("score")
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("a {METRIC} value without a numeric `score`: {v}"))?;
        }
    }
    Ok(if answered > 0 {
        100.0 * correct / answered as f64
    } else {
        0.0
    })
}

impl Recipe for MvBench {
    /// utils.py `mvbench_doc_to_text` with the sub-task yaml's post_prompt.
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let candidates = field_str_list(doc, "candidates")?;
        if candidates.len() > 26 {
            return Err(DocError::new("mvbench: more than 26 candidates"));
        }
        let mut options = String::new();
        for (i, c) in candidates.iter().enumerate() {
            options.push_str(&format!("{}. {c}\n", (b'A' + i as u8) as char));
        }
        Ok(format!(
            "{}\n{options}{POST_PROMPT}",
            field_str(doc, "question")?
        ))
    }
}

impl Task for MvBench {
    fn name(&self) -> &str {
        &self.name
    }

    fn group(&self) -> Option<&str> {
        Some(GROUP)
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "OpenGVLab/MVBench".into(),
            config: Some(self.sub_task.into()),
            split: "train".into(),
            columns: ["video", "question", "candidates", "answer"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.doc_to_text(&row.fields)?;
        let layout = format!("DIR/{}<video>", self.folder);
        let path = video_dir(ctx, &self.name, &layout)?
            .join(self.folder)
            .join(row.str("video")?);
        let visual = if self.sub_task == FRAMES_SUB_TASK {
            let entries = std::fs::read_dir(&path).map_err(|e| {
                DocError::new(format!(
                    "{}: frame folder {} not readable: {e}",
                    self.name,
                    path.display()
                ))
            })?;
            let mut frames: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".jpg") || n.ends_with(".png"))
                })
                .collect();
            frames.sort();
            if frames.is_empty() {
                return Err(DocError::new(format!(
                    "{}: no .jpg/.png frames in {}",
                    self.name,
                    path.display()
                )));
            }
            Visual::Frames(frames)
        } else {
            if !path.is_file() {
                return Err(DocError::new(format!(
                    "{}: video not found; expected {}",
                    self.name,
                    path.display()
                )));
            }
            Visual::Video(path)
        };
        Ok(Prompt { text, visual })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `mvbench_process_results`: the letter of the first candidate equal to the
    /// answer (none: upstream's `mcq_acc(None, ...)` raises, here a DocError).
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let answer = field_str(doc, "answer")?;
        let candidates = field_str_list(doc, "candidates")?;
        let gt = candidates
            .iter()
            .position(|c| c == answer)
            .filter(|&i| i < 26)
            .map(|i| ((b'A' + i as u8) as char).to_string())
            .ok_or_else(|| {
                DocError::new(format!(
                    "{}: the answer {answer:?} is none of the candidates",
                    self.name
                ))
            })?;
        let score = mcq_acc(&gt, filtered);
        let v = json!({"pred_answer": filtered, "gt_answer": gt, "score": score});
        Ok(vec![(METRIC.into(), v)])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(METRIC, mvbench_aggregate_results)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_skips_empty_responses() {
        let v = vec![
            json!({"pred_answer": "A", "score": 1}),
            json!({"pred_answer": "", "score": 0}),
            json!({"pred_answer": "C", "score": 0}),
        ];
        assert_eq!(mvbench_aggregate_results(&v).unwrap(), 50.0);
        assert_eq!(mvbench_aggregate_results(&v[1..2]).unwrap(), 0.0);
    }
}
