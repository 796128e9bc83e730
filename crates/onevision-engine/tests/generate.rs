//! The generation loop (`run_request`) on the tiny fixture checkpoints: greedy equals
//! `Pipeline::generate` and transformers, seeded sampling reproduces, stop strings and stop ids
//! cut exactly, limits, cancellation, and log-probabilities equal the model's log-softmax.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device};
use onevision_engine::{
    Error, Event, Finish, GenRequest, GenerateOptions, ImageInput, Pipeline, Request,
    SamplingParams, StopRules, TokenInfo,
};
use onevision_nn::dtype::ComputeDType;
use onevision_processor::{Message, Part, Role};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pipeline(name: &str) -> &'static Pipeline {
    static TIED: OnceLock<Pipeline> = OnceLock::new();
    static GQA: OnceLock<Pipeline> = OnceLock::new();
    let cell = match name {
        "tied" => &TIED,
        "gqa" => &GQA,
        other => panic!("no fixture checkpoint {other}"),
    };
    cell.get_or_init(|| {
        let dir = root().join("fixtures/models").join(name).join("checkpoint");
        Pipeline::load(&dir, ComputeDType::F32, &Device::Cpu)
            .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
            .0
    })
}

fn text_request(prompt: &str) -> Request {
    Request {
        messages: vec![Message::new(Role::User, vec![Part::Text(prompt.into())])],
        images: vec![],
        videos: vec![],
    }
}

fn gen(request: Request, max_new_tokens: usize, ignore_eos: bool) -> GenRequest {
    GenRequest {
        request,
        sampling: SamplingParams::default(),
        stop: StopRules {
            max_new_tokens,
            ignore_eos,
            ..Default::default()
        },
        logprobs: None,
    }
}

/// A request's events, summed up.
#[derive(Debug)]
struct Run {
    started: bool,
    deltas: Vec<(String, Vec<TokenInfo>)>,
    finish: Finish,
    token_ids: Vec<u32>,
    text: String,
    completion_tokens: usize,
}

impl Run {
    fn streamed_text(&self) -> String {
        self.deltas.iter().map(|d| d.0.as_str()).collect()
    }
    fn reported(&self) -> Vec<&TokenInfo> {
        self.deltas.iter().flat_map(|d| &d.1).collect()
    }
}

/// Runs a request; the sink answers `keep(nth delta)` to each delta (1-based). Checks the
/// event order: Started, Deltas, exactly one Done (or Failed, returned as Err), nothing after.
fn run_with_sink(
    p: &Pipeline,
    req: &GenRequest,
    keep: impl Fn(usize) -> bool,
) -> Result<Run, Error> {
    let mut events = vec![];
    let mut deltas = 0;
    onevision_engine::generate::run_request(p, req, &mut |e| {
        let answer = match &e {
            Event::Delta { .. } => {
                deltas += 1;
                keep(deltas)
            }
            _ => true,
        };
        events.push(e);
        answer
    });
    let mut run = Run {
        started: false,
        deltas: vec![],
        finish: Finish::Cancelled,
        token_ids: vec![],
        text: String::new(),
        completion_tokens: 0,
    };
    let n = events.len();
    for (i, e) in events.into_iter().enumerate() {
        let last = i + 1 == n;
        match e {
            Event::Started { usage } => {
                assert_eq!(i, 0, "Started must come first");
                assert_eq!(usage.completion_tokens, 0);
                run.started = true;
            }
            Event::Delta { text, tokens } => {
                assert!(run.started && !last, "a Delta outside Started..Done");
                run.deltas.push((text, tokens));
            }
            Event::Done {
                finish,
                usage,
                token_ids,
                text,
                ..
            } => {
                assert!(last, "events after Done");
                run.finish = finish;
                run.completion_tokens = usage.completion_tokens;
                run.token_ids = token_ids;
                run.text = text;
                return Ok(run);
            }
            Event::Failed(e) => {
                assert!(last, "events after Failed");
                return Err(e);
            }
        }
    }
    panic!("no Done or Failed event")
}

fn run(p: &Pipeline, req: &GenRequest) -> Run {
    let r = run_with_sink(p, req, |_| true).unwrap_or_else(|e| panic!("request failed: {e}"));
    assert_eq!(
        r.streamed_text(),
        r.text,
        "the deltas do not add up to Done.text"
    );
    assert_eq!(r.completion_tokens, r.token_ids.len());
    let reported: Vec<u32> = r.reported().iter().map(|t| t.id).collect();
    assert!(
        r.token_ids.starts_with(&reported),
        "reported tokens {reported:?} are not a prefix of {:?}",
        r.token_ids
    );
    r
}

#[test]
fn greedy_equals_pipeline_generate() {
    for (model, prompt) in [
        ("tied", "Hello there"),
        ("tied", "What is 2+2?"),
        ("gqa", "Hello there"),
        ("gqa", "Tell me a story."),
    ] {
        let p = pipeline(model);
        for (max, ignore_eos) in [(24, true), (24, false), (1, false), (0, false)] {
            let r = run(p, &gen(text_request(prompt), max, ignore_eos));
            let mut streamed = String::new();
            let out = p
                .generate(
                    &text_request(prompt),
                    GenerateOptions {
                        max_new_tokens: max,
                        ignore_eos,
                    },
                    |piece| streamed.push_str(piece),
                )
                .expect("Pipeline::generate");
            let what = format!("{model} {prompt:?} max {max} ignore_eos {ignore_eos}");
            assert_eq!(r.token_ids, out.token_ids, "{what}");
            assert_eq!(r.text, out.text, "{what}");
            assert_eq!(streamed, out.text, "{what}");
            assert_eq!(r.finish.as_str(), out.finish_reason, "{what}");
            let ended_by_eos = r.token_ids.last().is_some_and(|t| p.eos.contains(t));
            let want = if !ignore_eos && ended_by_eos {
                Finish::Stop
            } else {
                Finish::Length
            };
            assert_eq!(r.finish, want, "{what}");
            // Every token but an ending EOS is reported once, in order.
            let reported: Vec<u32> = r.reported().iter().map(|t| t.id).collect();
            let n = r.token_ids.len() - usize::from(want == Finish::Stop);
            assert_eq!(reported, r.token_ids[..n], "{what}");
        }
    }
}

/// The transformers greedy tokens of fixtures/e2e/expected.json's `image_gray_page` case,
/// through `run_request` (vision encoder, packing and prefill included).
#[test]
fn greedy_image_request_equals_transformers() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/e2e/expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let case = expected["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "image_gray_page"))
        .expect("case image_gray_page");
    let want: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).expect("token_ids");
    let max = expected["max_new_tokens"].as_u64().expect("max_new_tokens") as usize;
    let req = Request {
        messages: vec![Message::new(
            Role::User,
            vec![
                Part::Image,
                Part::Text(case["prompt"].as_str().expect("prompt").into()),
            ],
        )],
        images: vec![ImageInput::Path(
            root().join(case["images"][0].as_str().expect("image path")),
        )],
        videos: vec![],
    };
    let p = pipeline(case["model"].as_str().expect("model"));
    let r = run(p, &gen(req, max, false));
    assert_eq!(r.token_ids, want);
    assert_eq!(r.text, case["text"].as_str().expect("text"));
}

fn sampled(seed: u64, max: usize) -> GenRequest {
    let mut g = gen(text_request("Tell me a story."), max, true);
    g.sampling = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        seed: Some(seed),
        ..Default::default()
    };
    g
}

#[test]
fn seeded_sampling_reproduces_and_seeds_differ() {
    for model in ["tied", "gqa"] {
        let p = pipeline(model);
        let a = run(p, &sampled(42, 32));
        let b = run(p, &sampled(42, 32));
        let c = run(p, &sampled(43, 32));
        assert_eq!(a.token_ids.len(), 32);
        assert_eq!(
            a.token_ids, b.token_ids,
            "{model}: same seed, different tokens"
        );
        assert_eq!(a.text, b.text);
        assert_ne!(
            a.token_ids, c.token_ids,
            "{model}: seeds 42 and 43 gave the same tokens"
        );
        let greedy = run(p, &gen(text_request("Tell me a story."), 32, true));
        assert_ne!(
            a.token_ids, greedy.token_ids,
            "{model}: sampling gave the greedy tokens"
        );
    }
}

#[test]
fn stop_strings_cut_right_before_the_first_occurrence() {
    let p = pipeline("gqa");
    let base = gen(text_request("Hello there"), 24, true);
    let greedy = run(p, &base);
    let text = greedy.text.clone();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    assert!(chars.len() > 12, "greedy text too short: {text:?}");
    let mut tried = 0;
    // Every stop string of 1 to 4 characters starting in the first 12 characters of the
    // answer: at the start, inside one token, across token boundaries, around U+FFFD.
    for start in 0..12 {
        for len in 1..=4 {
            let a = chars[start].0;
            let b = chars.get(start + len).map_or(text.len(), |c| c.0);
            let stop = &text[a..b];
            let mut req = base.clone();
            req.stop.stop_strings = vec!["never appears".into(), stop.into()];
            let r = run(p, &req);
            let cut = text.find(stop).expect("a substring");
            assert_eq!(r.text, text[..cut], "stop {stop:?}");
            assert_eq!(r.finish, Finish::Stop, "stop {stop:?}");
            assert!(
                greedy.token_ids.starts_with(&r.token_ids),
                "stop {stop:?}: tokens are not the greedy ones"
            );
            let decoded = p
                .processor
                .tokenizer
                .decode(&r.token_ids, true)
                .expect("decode");
            assert!(
                decoded.contains(stop),
                "stopped before {stop:?} was complete"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 48);
    // A stop string that never completes: the held text comes out at the end.
    let mut req = base.clone();
    let tail = &text[chars[chars.len() - 1].0..];
    req.stop.stop_strings = vec![format!("{tail}\u{1}\u{2}")];
    let r = run(p, &req);
    assert_eq!((r.text.as_str(), r.finish), (text.as_str(), Finish::Length));
}

#[test]
fn stop_token_ids_end_generation_and_stay_in_token_ids() {
    let p = pipeline("gqa");
    let base = gen(text_request("Hello there"), 24, true);
    let greedy = run(p, &base);
    let stop_id = greedy.token_ids[4];
    let first = greedy
        .token_ids
        .iter()
        .position(|&t| t == stop_id)
        .expect("present");
    let mut req = base.clone();
    req.stop.stop_token_ids = vec![stop_id];
    let r = run(p, &req);
    assert_eq!(r.finish, Finish::Stop);
    assert_eq!(r.token_ids, greedy.token_ids[..=first]);
    let want = p
        .processor
        .tokenizer
        .decode(&greedy.token_ids[..first], true)
        .expect("decode");
    assert_eq!(r.text, want);
    let reported: Vec<u32> = r.reported().iter().map(|t| t.id).collect();
    assert_eq!(
        reported,
        greedy.token_ids[..first],
        "the stop id is not reported"
    );
}

#[test]
fn max_new_tokens_is_honoured() {
    let p = pipeline("tied");
    for max in [1, 7] {
        let r = run(p, &gen(text_request("Tell me a story."), max, true));
        assert_eq!((r.token_ids.len(), r.finish), (max, Finish::Length));
    }
    let r = run(p, &gen(text_request("Tell me a story."), 0, true));
    assert_eq!(
        (r.token_ids.len(), r.finish, r.text.as_str()),
        (0, Finish::Length, "")
    );
}

#[test]
fn over_the_context_fails_with_both_numbers() {
    let p = pipeline("tied");
    let context = p.model.config().text.max_position_embeddings;
    let err = run_with_sink(p, &gen(text_request("Hello there"), context, true), |_| {
        true
    })
    .expect_err("prompt + max_new_tokens > context must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Request(_)), "{err:?}");
    for n in [context.to_string(), "23 tokens".to_string()] {
        assert!(msg.contains(&n), "{msg:?} does not say {n}");
    }
    let huge = run_with_sink(
        p,
        &gen(text_request("Hello there"), usize::MAX, true),
        |_| true,
    );
    assert!(matches!(huge, Err(Error::Request(_))), "{huge:?}");
    // Exactly at the context is fine.
    let r = run(p, &gen(text_request("Hello there"), context - 23, false));
    assert_eq!(r.finish, Finish::Stop);
    // A default limit (clamp_to_context) shrinks to the room the prompt leaves instead.
    let mut clamped = gen(text_request("Hello there"), usize::MAX, false);
    clamped.stop.clamp_to_context = true;
    let r = run(p, &clamped);
    assert_eq!(r.finish, Finish::Stop, "{r:?}");
}

#[test]
fn bad_media_fails_before_started() {
    let p = pipeline("tied");
    let req = Request {
        messages: vec![Message::new(
            Role::User,
            vec![Part::Image, Part::Text("What is this?".into())],
        )],
        images: vec![ImageInput::Bytes {
            bytes: b"not an image".to_vec(),
            what: "upload 1".into(),
        }],
        videos: vec![],
    };
    let mut events = vec![];
    onevision_engine::generate::run_request(p, &gen(req, 4, false), &mut |e| {
        events.push(e);
        true
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], Event::Failed(Error::Processor(_))),
        "{events:?}"
    );
}

#[test]
fn a_sink_that_stops_listening_cancels() {
    let p = pipeline("gqa");
    let base = gen(text_request("Hello there"), 24, true);
    let full = run(p, &base);
    assert!(full.deltas.len() > 4);
    let r = run_with_sink(p, &base, |n| n < 3).expect("cancelled, not failed");
    assert_eq!(r.finish, Finish::Cancelled);
    assert_eq!(r.deltas.len(), 3, "deltas after the sink said stop");
    // Generation stopped at the token that produced the 3rd delta.
    let reported: Vec<u32> = r.reported().iter().map(|t| t.id).collect();
    assert_eq!(r.token_ids, reported);
    assert!(full.token_ids.starts_with(&r.token_ids));
    assert!(r.token_ids.len() <= 6, "{} tokens", r.token_ids.len());
    // Cancelled at Started: nothing is generated.
    let mut events = vec![];
    onevision_engine::generate::run_request(p, &base, &mut |e| {
        events.push(e);
        false
    });
    assert_eq!(events.len(), 2);
    assert!(matches!(
        &events[1],
        Event::Done { finish: Finish::Cancelled, token_ids, .. } if token_ids.is_empty()
    ));
}

/// The model's log-softmax at every step of a given token sequence, in f64.
fn model_log_softmax(p: &Pipeline, request: &Request, tokens: &[u32]) -> Vec<Vec<f64>> {
    let prompt = p.prepare(request).expect("prepare");
    let input = p.model_input(&prompt).expect("model input");
    let embeds = p.model.embed(&input).expect("embed");
    let mut cache = p.model.new_cache();
    let hidden = p
        .model
        .forward_embeds(&embeds, &mut cache)
        .expect("prefill");
    let mut last = hidden.narrow(1, hidden.dim(1).unwrap() - 1, 1).unwrap();
    let mut out = vec![];
    for &t in tokens {
        let l: Vec<f32> = p
            .model
            .logits(&last)
            .and_then(|l| Ok(l.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?))
            .expect("logits");
        let max = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        out.push(l.iter().map(|&x| x as f64 - lse).collect());
        last = p
            .model
            .forward_tokens(&[t], &mut cache)
            .expect("decode step");
    }
    out
}

/// Log-probabilities are the model's log-softmax (after penalties, which are off here, and
/// before temperature and filters), for greedy and for sampled tokens.
#[test]
fn logprobs_are_the_model_log_softmax() {
    const TOL: f64 = 1e-4;
    let p = pipeline("gqa");
    for (temperature, top_k) in [(0.0, None), (1.5, Some(3))] {
        let mut req = gen(text_request("Tell me a story."), 12, true);
        req.sampling.temperature = temperature;
        req.sampling.top_k = top_k;
        req.sampling.seed = Some(5);
        req.logprobs = Some(5);
        let r = run(p, &req);
        let tokens = r.reported();
        assert_eq!(tokens.len(), 12);
        let ls = model_log_softmax(p, &req.request, &r.token_ids);
        for (step, (t, want)) in tokens.iter().zip(&ls).enumerate() {
            let what = format!("T={temperature} step {step}");
            assert!(
                (t.logprob as f64 - want[t.id as usize]).abs() < TOL,
                "{what}"
            );
            assert_eq!(t.top.len(), 5, "{what}");
            let mass: f64 = t.top.iter().map(|a| (a.3 as f64).exp()).sum();
            assert!(mass <= 1.0 + 1e-6, "{what}: top mass {mass}");
            for w in t.top.windows(2) {
                assert!(w[0].3 >= w[1].3, "{what}: alternatives not best first");
            }
            for a in &t.top {
                assert!((a.3 as f64 - want[a.0 as usize]).abs() < TOL, "{what}");
                assert_eq!(a.1, String::from_utf8_lossy(&a.2), "{what}");
            }
            // The best alternative is the model's arg-max.
            let best = want
                .iter()
                .enumerate()
                .fold(0, |b, (i, &x)| if x > want[b] { i } else { b });
            assert_eq!(t.top[0].0 as usize, best, "{what}");
            if temperature == 0.0 {
                assert_eq!(t.id as usize, best, "{what}: greedy is not the arg-max");
            } else {
                // top_k = 3 draws only among the 3 best.
                assert!(t.top[..3].iter().any(|a| a.0 == t.id), "{what}");
            }
        }
    }
    // Without logprobs: zero and no alternatives.
    let r = run(p, &gen(text_request("Tell me a story."), 3, true));
    assert!(r
        .reported()
        .iter()
        .all(|t| t.logprob == 0.0 && t.top.is_empty()));
}

/// The bytes of the reported tokens add up to the answer's bytes (byte-level tokenizer), even
/// where single tokens hold parts of characters.
#[test]
fn token_bytes_add_up_to_the_text() {
    let p = pipeline("gqa");
    let r = run(p, &gen(text_request("Hello there"), 24, true));
    let bytes: Vec<u8> = r
        .reported()
        .iter()
        .filter(|t| !p.eos.contains(&t.id))
        .flat_map(|t| t.bytes.clone())
        .collect();
    assert!(
        r.reported().iter().any(|t| t.text.contains('\u{FFFD}')),
        "no token splits a character"
    );
    assert_eq!(String::from_utf8_lossy(&bytes), r.text);
}
