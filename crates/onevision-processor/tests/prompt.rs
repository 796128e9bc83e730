//! The prompt side against transformers 5.24: chat template rendering, tokenization and
//! placeholder expansion, on the fixtures written by tools/fixtures/make_tokenizer_fixtures.py.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use onevision_models::llava_ov::packing::{image_token_count, video_token_count, ImageLayout};
use onevision_models::LlavaOnevisionConfig;
use onevision_processor::prompt::{
    expand_placeholders, expand_placeholders_with_ranges, ChatTemplate, Message, Part, Role,
    TextTokenizer,
};
use onevision_processor::Error;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Qwen2 tokenizer and llava-hf template, loaded once: tokenizer.json is decompressed into
/// a temporary directory next to the two small files, checked against the manifest's sha256,
/// loaded, and the directory removed.
fn qwen2() -> &'static (TextTokenizer, ChatTemplate) {
    static QWEN2: OnceLock<(TextTokenizer, ChatTemplate)> = OnceLock::new();
    QWEN2.get_or_init(|| {
        let src = fixtures().join("tokenizer/qwen2");
        let dir = tempfile::tempdir().expect("temp dir");
        let xz = std::fs::read(src.join("tokenizer.json.xz")).expect("tokenizer.json.xz");
        let mut raw = Vec::new();
        lzma_rs::xz_decompress(&mut &xz[..], &mut raw).expect("unxz tokenizer.json.xz");
        let manifest = read_json(&fixtures().join("tokenizer/manifest.json"));
        let sha = format!("{:x}", Sha256::digest(&raw));
        assert_eq!(
            sha, manifest["qwen2_tokenizer_json_sha256"],
            "tokenizer.json.xz does not hold the tokenizer.json the fixtures were made with"
        );
        std::fs::write(dir.path().join("tokenizer.json"), &raw).expect("write tokenizer.json");
        for f in ["tokenizer_config.json", "chat_template.json"] {
            std::fs::copy(src.join(f), dir.path().join(f)).expect(f);
        }
        let tok = TextTokenizer::from_dir(dir.path()).expect("load Qwen2 tokenizer");
        let tpl = ChatTemplate::from_dir(dir.path()).expect("load chat_template.json");
        (tok, tpl)
    })
}

/// Only the vision geometry matters for token counts: 384-px tiles of 14-px patches (27x27),
/// the 36 standard pinpoints, anyres_max_9.
fn ov_config() -> LlavaOnevisionConfig {
    let mut pinpoints = vec![];
    for h in 1..=6 {
        for w in 1..=6 {
            pinpoints.push(json!([h * 384, w * 384]));
        }
    }
    LlavaOnevisionConfig::from_json(&json!({
        "model_type": "llava_onevision",
        "vision_config": {"image_size": 384, "patch_size": 14, "hidden_size": 1152, "num_attention_heads": 16},
        "image_grid_pinpoints": pinpoints,
        "vision_aspect_ratio": "anyres_max_9",
    }))
    .expect("config")
}

/// `[id, n]` runs back to ids.
fn unrun(v: &Value) -> Vec<u32> {
    let mut out = vec![];
    for e in v.as_array().expect("input_ids list") {
        match e {
            Value::Number(n) => out.push(n.as_u64().expect("id") as u32),
            Value::Array(r) => {
                let id = r[0].as_u64().expect("run id") as u32;
                let n = r[1].as_u64().expect("run length") as usize;
                out.extend(std::iter::repeat_n(id, n));
            }
            other => panic!("bad input_ids entry {other}"),
        }
    }
    out
}

#[test]
fn qwen2_special_tokens() {
    let (tok, _) = qwen2();
    let s = tok.special();
    assert_eq!(s.image, Some(151646));
    assert_eq!(s.video, Some(151647));
    assert_eq!(s.eos, Some(151645));
    assert_eq!(s.pad, Some(151643));
    assert_eq!(s.bos, None);
    assert_eq!(tok.token_id("<|im_start|>"), Some(151644));
    assert_eq!(tok.vocab_size(), 151648);
    // Qwen2's well-known ids for ordinary text.
    assert_eq!(tok.encode("Hello world").unwrap(), vec![9707, 1879]);
    assert_eq!(tok.encode("user\n").unwrap(), vec![872, 198]);
}

#[test]
fn conversations_match_transformers() {
    let (tok, tpl) = qwen2();
    let cfg = ov_config();
    let image_id = tok.image_id().unwrap();
    let video_id = tok.video_id().unwrap();
    let fx = read_json(&fixtures().join("tokenizer/conversations.json"));
    let convs = fx["conversations"].as_array().expect("conversations");
    assert!(convs.len() >= 10);
    let mut checked = 0;
    for c in convs {
        let name = c["name"].as_str().expect("name");
        let messages: Vec<Message> =
            serde_json::from_value(c["messages"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let agp = c["add_generation_prompt"]
            .as_bool()
            .expect("add_generation_prompt");
        let prompt = tpl.render(&messages, agp).unwrap();
        assert_eq!(
            prompt,
            c["prompt"].as_str().unwrap(),
            "{name}: rendered prompt"
        );

        let ids = tok.encode(&prompt).unwrap();
        let image_counts: Vec<usize> = c["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|im| {
                let (h, w) = (
                    im["size"][0].as_u64().unwrap(),
                    im["size"][1].as_u64().unwrap(),
                );
                let layout = match im["layout"].as_str().unwrap() {
                    "anyres" => ImageLayout::AnyRes,
                    "single" => ImageLayout::Single,
                    other => panic!("{name}: layout {other}"),
                };
                let n = image_token_count((h as usize, w as usize), layout, &cfg);
                if let Some(want) = im.get("tokens").and_then(Value::as_u64) {
                    assert_eq!(
                        n as u64, want,
                        "{name}: tokens of a {h}x{w} image ({layout:?})"
                    );
                }
                n
            })
            .collect();
        let video_counts: Vec<usize> = c["videos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let n = video_token_count(v["frames"].as_u64().unwrap() as usize, &cfg);
                if let Some(want) = v.get("tokens").and_then(Value::as_u64) {
                    assert_eq!(n as u64, want, "{name}: tokens of a video");
                }
                n
            })
            .collect();

        let got =
            expand_placeholders_with_ranges(&ids, image_id, &image_counts, video_id, &video_counts);
        if let Some(err) = c.get("error") {
            // transformers refused it; so must we, naming both numbers.
            let msg = got.expect_err(name).to_string();
            assert!(
                msg.contains("2 <image> placeholders") && msg.contains("1 images"),
                "{name}: {msg} (transformers: {err})"
            );
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = unrun(&c["input_ids"]);
        assert_eq!(
            want.len() as u64,
            c["input_ids_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(got.ids.len(), want.len(), "{name}: expanded length");
        assert_eq!(got.ids, want, "{name}: input_ids");
        for (r, n) in got.images.iter().zip(&image_counts) {
            assert_eq!(r.len(), *n);
            assert!(got.ids[r.clone()].iter().all(|&x| x == image_id));
        }
        for (r, n) in got.videos.iter().zip(&video_counts) {
            assert_eq!(r.len(), *n);
            assert!(got.ids[r.clone()].iter().all(|&x| x == video_id));
        }

        // The claim id-level expansion rests on: the same as expanding the text and tokenizing
        // it (what transformers does).
        let mut text = String::new();
        let (mut ii, mut vi) = (image_counts.iter(), video_counts.iter());
        let mut rest = prompt.as_str();
        loop {
            let next = [rest.find("<image>"), rest.find("<video>")]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next else {
                text.push_str(rest);
                break;
            };
            text.push_str(&rest[..at]);
            let (tag, n) = if rest[at..].starts_with("<image>") {
                ("<image>", *ii.next().unwrap())
            } else {
                ("<video>", *vi.next().unwrap())
            };
            text.push_str(&tag.repeat(n));
            rest = &rest[at + tag.len()..];
        }
        assert_eq!(
            tok.encode(&text).unwrap(),
            want,
            "{name}: text-level expansion"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} conversations compared");
}

#[test]
fn qwen2_decode_round_trips() {
    let (tok, _) = qwen2();
    for s in [
        "你好，世界！",
        "emoji 😀🎉👍🏽 👨\u{200d}👩\u{200d}👧",
        "  two\n\nlines\t",
        "plain",
    ] {
        let ids = tok.encode(s).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), s);
    }
    let ids = tok
        .encode("<|im_start|>user\n<image>\nHi<|im_end|>")
        .unwrap();
    assert_eq!(ids[0], 151644);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\n\nHi");
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\n<image>\nHi<|im_end|>"
    );
}

#[test]
fn tiny_checkpoint_tokenizers_match_transformers() {
    let fx = read_json(&fixtures().join("tokenizer/tiny_encodings.json"));
    for (name, m) in fx["models"].as_object().unwrap() {
        let dir = fixtures().join(format!("models/{name}/checkpoint"));
        let tok = TextTokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tpl = ChatTemplate::from_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let vocab = m["vocab_size"].as_u64().unwrap() as usize;
        assert_eq!(tok.vocab_size(), vocab, "{name}");
        let ids = &m["special_ids"];
        let id = |k: &str| Some(ids[k].as_u64().unwrap() as u32);
        assert_eq!(tok.special().image, id("<image>"), "{name}");
        assert_eq!(tok.special().video, id("<video>"), "{name}");
        assert_eq!(tok.special().eos, id("<|im_end|>"), "{name}");
        assert_eq!(tok.special().pad, id("<|endoftext|>"), "{name}");
        assert_eq!(tok.token_id("<|im_start|>"), id("<|im_start|>"), "{name}");

        // The checkpoint's own ids agree: config.json placeholders, generation_config.json eos.
        let config = LlavaOnevisionConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(tok.special().image, Some(config.image_token_id), "{name}");
        assert_eq!(tok.special().video, Some(config.video_token_id), "{name}");
        let gen = read_json(&dir.join("generation_config.json"));
        assert_eq!(
            tok.special().eos.map(u64::from),
            gen["eos_token_id"].as_u64(),
            "{name}"
        );

        let chat = &m["chat"];
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        assert_eq!(
            tpl.render(&messages, true).unwrap(),
            chat["prompt"].as_str().unwrap(),
            "{name}"
        );
        for case in m["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            let got = tok.encode(text).unwrap();
            assert_eq!(got, want, "{name}: {text:?}");
            assert!(got.iter().all(|&i| (i as usize) < vocab));
            assert_eq!(
                tok.decode(&got, true).unwrap(),
                case["decoded"].as_str().unwrap(),
                "{name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Where the template comes from

const LLAVA_OV: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{{'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn user_image(text: &str) -> Vec<Message> {
    vec![Message::new(
        Role::User,
        vec![Part::Text(text.into()), Part::Image],
    )]
}

fn render_dir(dir: &Path) -> Result<String, Error> {
    ChatTemplate::from_dir(dir)?.render(&user_image("Hi"), true)
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

const WANT: &str = "<|im_start|>user\n<image>\nHi<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn template_from_jinja_file_wins() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "chat_template.jinja", LLAVA_OV);
    write(
        d.path(),
        "chat_template.json",
        &json!({"chat_template": "json"}).to_string(),
    );
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": "config"}).to_string(),
    );
    assert_eq!(render_dir(d.path()).unwrap(), WANT);
}

#[test]
fn template_from_chat_template_json() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "chat_template.json",
        &json!({"chat_template": LLAVA_OV}).to_string(),
    );
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": "config"}).to_string(),
    );
    assert_eq!(render_dir(d.path()).unwrap(), WANT);
}

#[test]
fn template_from_tokenizer_config_string() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": LLAVA_OV, "eos_token": "<|im_end|>"}).to_string(),
    );
    assert_eq!(render_dir(d.path()).unwrap(), WANT);
}

#[test]
fn template_from_tokenizer_config_list_takes_default() {
    let d = tempfile::tempdir().unwrap();
    let list = json!([{"name": "tool_use", "template": "tools"}, {"name": "default", "template": LLAVA_OV}]);
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": list}).to_string(),
    );
    assert_eq!(render_dir(d.path()).unwrap(), WANT);

    let list = json!([{"name": "tool_use", "template": "tools"}]);
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": list}).to_string(),
    );
    let err = render_dir(d.path()).unwrap_err().to_string();
    assert!(err.contains("default") && err.contains("tool_use"), "{err}");
}

#[test]
fn missing_or_bad_template_is_a_config_error() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(render_dir(d.path()), Err(Error::Config { .. })));
    write(
        d.path(),
        "tokenizer_config.json",
        &json!({"chat_template": 3}).to_string(),
    );
    assert!(matches!(render_dir(d.path()), Err(Error::Config { .. })));
    write(d.path(), "tokenizer_config.json", "{not json");
    assert!(matches!(render_dir(d.path()), Err(Error::Config { .. })));
    std::fs::remove_file(d.path().join("tokenizer_config.json")).unwrap();
    write(d.path(), "chat_template.jinja", "{% for x in %}");
    assert!(matches!(render_dir(d.path()), Err(Error::Template(_))));
}

#[test]
fn special_tokens_reach_the_template() {
    let d = tempfile::tempdir().unwrap();
    let cfg = json!({
        "chat_template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ tools is none }}|{{ add_generation_prompt }}",
        "bos_token": {"content": "<s>", "__type": "AddedToken"},
        "eos_token": "</s>",
        "pad_token": "<pad>",
    });
    write(d.path(), "tokenizer_config.json", &cfg.to_string());
    // Expected output from transformers' renderer.
    assert_eq!(render_dir(d.path()).unwrap(), "<s>|</s>|<pad>|True|True");
}

// ---------------------------------------------------------------------------------------------
// Rendering details, each expected string produced by transformers 5.24's
// `_compile_jinja_template(t).render(messages=..., tools=None, documents=None,
// add_generation_prompt=True, bos_token="<s>", eos_token="</s>", pad_token="<pad>")`.

fn sample() -> Vec<Message> {
    vec![
        Message::new(
            Role::User,
            vec![Part::Text("  hi there \n".into()), Part::Image],
        ),
        Message::text(Role::Assistant, "ok"),
    ]
}

fn render(src: &str) -> String {
    ChatTemplate::from_source(src)
        .unwrap()
        .render(&sample(), true)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn generation_tags_are_transparent() {
    // trim_blocks removes the newline after each block tag, generation tags included.
    let t = "{% for m in messages %}\n{% generation %}\n{{ m.role }}\n{% endgeneration %}\n{% endfor %}";
    assert_eq!(render(t), "user\nassistant\n");
    // lstrip_blocks and `-` markers act on them as on any tag.
    let t = "<s>\n  {% generation %}x{% endgeneration %}\n  {%- generation -%}\n y \n{%- endgeneration %}|";
    assert_eq!(render(t), "<s>\nxy|");
}

#[test]
fn python_string_methods_work() {
    let t = "{{ messages[0].content[0].text.strip().upper() }}|{{ messages[0].content[0].text.startswith('  hi') }}|{{ messages[0].content[0].text.lstrip().title() }}|{{ 'a-b-c'.split('-') | length }}";
    assert_eq!(render(t), "HI THERE|True|Hi There \n|3");
}

#[test]
fn tojson_is_python_json_dumps() {
    let t = "{{ messages | tojson }}\n{{ {'b': 1.5, 'a': [1, none, true, 1e-05], 'c': 'é\"\\n\\t<&>'} | tojson(indent=2) }}\n{{ messages[1] | tojson(separators=(',', ':'), sort_keys=true) }}";
    let want = "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"  hi there \\n\"}, {\"type\": \"image\"}]}, {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"ok\"}]}]\n{\n  \"b\": 1.5,\n  \"a\": [\n    1,\n    null,\n    true,\n    1e-05\n  ],\n  \"c\": \"é\\\"\\n\\t<&>\"\n}\n{\"content\":[{\"text\":\"ok\",\"type\":\"text\"}],\"role\":\"assistant\"}";
    assert_eq!(render(t), want);
}

#[test]
fn loop_controls_and_python_printing() {
    let t = "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}{% for i in range(4) %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% endfor %}";
    assert_eq!(render(t), "user013");
    let t = "{{ true }}|{{ none }}|{{ [1, 'a', none, 1.5, false] }}|{{ {'k': \"it's\", 'q': 'say \"hi\"\\n'} }}|{{ 1.0 }}|{{ 0.00001 }}|{{ undefined_var }}|{{ 7 // 2 }}|{{ 7 / 2 }}";
    assert_eq!(
        render(t),
        "True|None|[1, 'a', None, 1.5, False]|{'k': \"it's\", 'q': 'say \"hi\"\\n'}|1.0|1e-05||3|3.5"
    );
}

#[test]
fn raise_exception_is_a_template_error() {
    let t = "{% if messages[0].role != 'system' %}{{ raise_exception('first message must be system') }}{% endif %}";
    let err = ChatTemplate::from_source(t)
        .unwrap()
        .render(&sample(), true)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Template(m) if m.contains("first message must be system")),
        "{err}"
    );
}

#[test]
fn messages_have_transformers_json_shape() {
    let m = Message::new(
        Role::User,
        vec![Part::Video, Part::Text("x".into()), Part::Image],
    );
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        v,
        json!({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "x"}, {"type": "image"}]})
    );
    assert_eq!(serde_json::from_value::<Message>(v).unwrap(), m);
}

#[test]
fn expansion_errors_name_both_counts() {
    let err = expand_placeholders(&[1, 5, 5], 5, &[3], 6, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 <image> placeholders") && err.contains("1 images"),
        "{err}"
    );
}
