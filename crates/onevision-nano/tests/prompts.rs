//! What `generate`, `chat`, `serve` and `eval` send the nano model is what it was trained on:
//! the checkpoint's chat template (with its default system prompt) rendered for a question and
//! tokenized whole gives exactly the ids `onevision train` builds for the same sample with the
//! `qwen_1_5` template (turn by turn, media markers), up to where the answer starts.

use onevision_nano::corpus::sample_texts;
use onevision_nano::init::{create, NanoDims};
use onevision_processor::{ChatTemplate, Message, Part, Role, TextTokenizer};
use onevision_train::data::{Speaker, Turn};
use onevision_train::labels::{encode, LabelMask, Template, MEDIA_MARKER};
use onevision_world::{generate, Split};
use serde_json::Value;

#[test]
fn the_chat_template_asks_what_training_taught() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    generate(&world, Split::Train, 5, 36).unwrap();
    let json = world.join("train.json");
    let ckpt = dir.path().join("ckpt");
    create(
        &ckpt,
        &NanoDims::MICRO,
        &sample_texts(&json).unwrap(),
        400,
        0,
    )
    .unwrap();
    let tok = TextTokenizer::from_dir(&ckpt).unwrap();
    let template = ChatTemplate::from_dir(&ckpt).unwrap();
    let (image_id, video_id) = (tok.image_id().unwrap(), tok.video_id().unwrap());

    let samples: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for s in &samples {
        let human = s["conversations"][0]["value"].as_str().unwrap();
        let answer = s["conversations"][1]["value"].as_str().unwrap();
        let turns = [
            Turn {
                from: Speaker::Human,
                value: human.to_owned(),
            },
            Turn {
                from: Speaker::Gpt,
                value: answer.to_owned(),
            },
        ];
        let trained = encode(&tok, &turns, Template::Qwen15, LabelMask::Original).unwrap();

        let markers = human.matches("<image>").count();
        let question = human.replace("<image>\n", "");
        let mut parts = vec![];
        if s.get("video").is_some() {
            parts.push(Part::Video);
            kinds.insert("video");
        } else {
            parts.extend(std::iter::repeat_n(Part::Image, markers));
            kinds.insert(if markers > 1 { "multi" } else { "image" });
        }
        parts.push(Part::Text(question));
        let prompt = template
            .render(&[Message::new(Role::User, parts)], true)
            .unwrap();
        let asked: Vec<i64> = tok
            .encode(&prompt)
            .unwrap()
            .into_iter()
            .map(|id| {
                if id == image_id || id == video_id {
                    MEDIA_MARKER
                } else {
                    i64::from(id)
                }
            })
            .collect();
        assert_eq!(
            asked,
            trained.ids[..asked.len().min(trained.ids.len())],
            "sample {}: the prompt {prompt:?} differs from the trained ids",
            s["id"]
        );
        // What follows is the answer, then the end of the turn.
        let rest: Vec<u32> = trained.ids[asked.len()..]
            .iter()
            .map(|&i| i as u32)
            .collect();
        let text = tok.decode(&rest, false).unwrap();
        assert_eq!(text, format!("{answer}<|im_end|>\n"), "sample {}", s["id"]);
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}
