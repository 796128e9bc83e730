//! Continuous batching in the engine worker: mixed requests sent together give each the output
//! it gets when served alone, and the worker really ran them together.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use candle_core::Device;
use onevision_engine::{
    BatchConfig, Engine, Event, Finish, GenRequest, ImageInput, Pipeline, Request, SamplingParams,
    StopRules, VideoInput,
};
use onevision_nn::dtype::ComputeDType;
use onevision_processor::{Message, Part, Role};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pipeline() -> Pipeline {
    let dir = root().join("fixtures/models/tied/checkpoint");
    Pipeline::load(&dir, ComputeDType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
        .0
}

fn photo(name: &str) -> ImageInput {
    ImageInput::Path(root().join("fixtures/images/photos").join(name))
}

/// Twelve requests: text of several lengths, one image, a multi-image set and a video; greedy
/// and seeded sampling; stop strings and stop ids; log-probabilities; 3 to 24 new tokens.
fn requests() -> Vec<GenRequest> {
    let text = |prompt: &str| Request {
        messages: vec![Message::new(Role::User, vec![Part::Text(prompt.into())])],
        images: vec![],
        videos: vec![],
    };
    let mut out = Vec::new();
    let long = "Tell me everything about the sea, the sky and the mountains. ".repeat(12);
    let prompts = [
        "Hi.",
        "What is two plus two?",
        long.as_str(),
        "Write a short poem about a cat.",
        "Name three colors.",
        "Count to ten.",
        "Say something.",
        "Describe a forest in detail.",
    ];
    for (i, p) in prompts.iter().enumerate() {
        let mut g = GenRequest {
            request: text(p),
            sampling: SamplingParams::default(),
            stop: StopRules {
                max_new_tokens: 3 + 3 * i,
                ignore_eos: true,
                ..Default::default()
            },
            logprobs: (i % 3 == 0).then_some(2),
        };
        if i % 2 == 1 {
            g.sampling = SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: Some(100 + i as u64),
                ..Default::default()
            };
        }
        if i == 4 {
            g.stop.stop_strings = vec!["e".into()];
        }
        out.push(g);
    }
    let media = |parts: Vec<Part>, images: Vec<ImageInput>, videos: Vec<VideoInput>| Request {
        messages: vec![Message::new(Role::User, parts)],
        images,
        videos,
    };
    let ask = |request: Request, max: usize| GenRequest {
        request,
        sampling: SamplingParams::default(),
        stop: StopRules {
            max_new_tokens: max,
            ignore_eos: true,
            ..Default::default()
        },
        logprobs: Some(1),
    };
    out.push(ask(
        media(
            vec![Part::Image, Part::Text("What is this?".into())],
            vec![photo("coffee.png")],
            vec![],
        ),
        10,
    ));
    out.push(ask(
        media(
            vec![
                Part::Image,
                Part::Image,
                Part::Text("Which differs?".into()),
            ],
            vec![photo("astronaut.png"), photo("chelsea.png")],
            vec![],
        ),
        7,
    ));
    out.push(ask(
        media(
            vec![Part::Video, Part::Text("Describe the video.".into())],
            vec![],
            vec![VideoInput::Path {
                path: root().join("fixtures/video/clip_h264.mp4"),
                frames: 8,
            }],
        ),
        12,
    ));
    let mut stopped = ask(text("Tell me a story about a dragon."), 24);
    stopped.stop.ignore_eos = false;
    out.push(stopped);
    out
}

/// An alternative token: (id, log-probability bits).
type Alternative = (u32, u32);

/// What one request produced, and when.
#[derive(Debug, PartialEq)]
struct Outcome {
    token_ids: Vec<u32>,
    text: String,
    streamed: String,
    finish: Finish,
    /// Each reported token's (id, log-probability bits, alternatives' ids and bits).
    logprobs: Vec<(u32, u32, Vec<Alternative>)>,
    /// Prompt and generated positions.
    positions: usize,
}

/// Submits every request at once and waits for all; returns the outcomes in order and each
/// one's (first delta, done) times.
fn serve(config: BatchConfig, reqs: &[GenRequest]) -> (Vec<Outcome>, Vec<(Instant, Instant)>) {
    let thread = Engine::start_with(pipeline(), config);
    let out = serve_on(&thread.engine(), reqs);
    thread.shutdown();
    out
}

/// [`serve`] on a running engine.
fn serve_on(engine: &Engine, reqs: &[GenRequest]) -> (Vec<Outcome>, Vec<(Instant, Instant)>) {
    let mut rxs = Vec::new();
    for r in reqs {
        let (tx, rx) = mpsc::channel();
        engine
            .submit(
                r.clone(),
                Box::new(move |e| tx.send((Instant::now(), e)).is_ok()),
            )
            .expect("queued");
        rxs.push(rx);
    }
    let mut outcomes = Vec::new();
    let mut spans = Vec::new();
    for rx in rxs {
        let (mut streamed, mut logprobs, mut first) = (String::new(), Vec::new(), None);
        loop {
            let (at, e) = rx
                .recv_timeout(Duration::from_secs(600))
                .expect("the request ends");
            match e {
                Event::Started { .. } => {}
                Event::Delta { text, tokens } => {
                    first.get_or_insert(at);
                    streamed.push_str(&text);
                    logprobs.extend(tokens.iter().map(|t| {
                        let top = t.top.iter().map(|a| (a.0, a.3.to_bits())).collect();
                        (t.id, t.logprob.to_bits(), top)
                    }));
                }
                Event::Done {
                    finish,
                    token_ids,
                    text,
                    usage,
                    ..
                } => {
                    spans.push((first.unwrap_or(at), at));
                    outcomes.push(Outcome {
                        positions: usage.prompt_tokens + token_ids.len(),
                        token_ids,
                        text,
                        streamed,
                        finish,
                        logprobs,
                    });
                    break;
                }
                Event::Failed(e) => panic!("a request failed: {e}"),
            }
        }
    }
    (outcomes, spans)
}

/// Twelve mixed requests sent together (up to 8 running, prompts prefilled 512 positions at a
/// time) give each exactly what it gives served alone (one request at a time, the same
/// chunks): the same tokens, text, finish and log-probabilities, bit for bit at the AVX2 and
/// AVX-512 levels (a batched decode row equals the sequence's own step). And they did run
/// together: some requests produced tokens while others were still producing theirs.
#[test]
fn batched_outputs_equal_each_request_served_alone() {
    let reqs = requests();
    let batched = BatchConfig {
        queue_capacity: 64,
        max_running: 8,
        max_batched_tokens: 512,
        encoder_cache_bytes: 0,
        kv_cache_bytes: None,
    };
    let (together, spans) = serve(batched, &reqs);
    let (alone, _) = serve(
        BatchConfig {
            max_running: 1,
            ..batched
        },
        &reqs,
    );
    let exact = onevision_nn::cpu::level() >= onevision_nn::cpu::KernelLevel::Avx2;
    for (i, (t, a)) in together.iter().zip(&alone).enumerate() {
        assert!(!t.token_ids.is_empty(), "request {i} generated nothing");
        assert_eq!(t.streamed, t.text, "request {i}: streamed text");
        if exact {
            assert_eq!(t, a, "request {i}: batched differs from alone");
        } else {
            // The reference level's matmul may block 1 and n rows differently: greedy tokens
            // stay, sampled ones may flip at a near-tie; the text request 0 is greedy.
            assert_eq!(together[0].token_ids, alone[0].token_ids);
        }
    }
    let overlapping = (0..spans.len())
        .flat_map(|i| (0..spans.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && spans[i].0 < spans[j].1 && spans[j].0 < spans[i].1)
        .count();
    assert!(
        overlapping > 0,
        "no two requests produced tokens at the same time"
    );
}

/// The second request with the same image takes its encoder output from the cache (one hit of
/// two lookups; no vision time) and answers exactly as the first.
#[test]
fn the_same_image_twice_is_encoded_once() {
    let thread = Engine::start_with(pipeline(), BatchConfig::default());
    let engine = thread.engine();
    let ask = || GenRequest {
        request: Request {
            messages: vec![Message::new(
                Role::User,
                vec![Part::Image, Part::Text("What is this?".into())],
            )],
            images: vec![photo("chelsea.png")],
            videos: vec![],
        },
        sampling: SamplingParams::default(),
        stop: StopRules {
            max_new_tokens: 4,
            ignore_eos: true,
            ..Default::default()
        },
        logprobs: None,
    };
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel();
        engine
            .submit(ask(), Box::new(move |e| tx.send(e).is_ok()))
            .expect("queued");
        loop {
            match rx.recv_timeout(Duration::from_secs(300)).expect("an event") {
                Event::Done {
                    token_ids, timings, ..
                } => {
                    answers.push((token_ids, timings.encode_ms));
                    break;
                }
                Event::Failed(e) => panic!("failed: {e}"),
                _ => {}
            }
        }
    }
    let stats = &engine.stats().encoder_cache;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (stats.queries.load(Relaxed), stats.hits.load(Relaxed)),
        (2, 1)
    );
    assert_eq!(answers[0].0, answers[1].0);
    assert!(
        answers[1].1 < answers[0].1 / 4.0,
        "the cached request still spent {} ms encoding (first: {} ms)",
        answers[1].1,
        answers[0].1
    );
    drop(engine);
    thread.shutdown();
}

fn text(prompt: String, max: usize) -> GenRequest {
    GenRequest {
        request: Request {
            messages: vec![Message::new(Role::User, vec![Part::Text(prompt)])],
            images: vec![],
            videos: vec![],
        },
        sampling: SamplingParams::default(),
        stop: StopRules {
            max_new_tokens: max,
            ignore_eos: true,
            ..Default::default()
        },
        logprobs: None,
    }
}

/// While `long` (one token asked for) is encoded and prefilled with prompt work cut at
/// `chunk` positions, a request that was already generating keeps producing tokens. Returns
/// the longest gap between the running request's tokens meanwhile, the long request's encode
/// + prefill time (ms) and its prompt length.
fn longest_gap_while(long: GenRequest, chunk: usize) -> (f64, f64, usize) {
    let config = BatchConfig {
        max_batched_tokens: chunk,
        ..BatchConfig::default()
    };
    let thread = Engine::start_with(pipeline(), config);
    let engine = thread.engine();
    let (tx, running) = mpsc::channel();
    engine
        .submit(
            text("Keep talking.".into(), 20_000),
            Box::new(move |e| tx.send((Instant::now(), e)).is_ok()),
        )
        .expect("queued");
    // Wait for its first tokens, then send the long prompt.
    let mut times = Vec::new();
    while times.len() < 3 {
        match running.recv().expect("the running request streams") {
            (at, Event::Delta { .. }) => times.push(at),
            (_, Event::Failed(e)) => panic!("the running request failed: {e}"),
            (_, Event::Done { finish, .. }) => panic!("the running request ended: {finish:?}"),
            _ => {}
        }
    }
    let (tx, long_rx) = mpsc::channel();
    engine
        .submit(
            long,
            Box::new(move |e| tx.send((Instant::now(), e)).is_ok()),
        )
        .expect("queued");
    let mut started = None;
    let (work_ms, prompt_tokens, done) = loop {
        match long_rx.recv().expect("the long request ends") {
            (at, Event::Started { .. }) => started = Some(at),
            (at, Event::Done { timings, usage, .. }) => {
                break (
                    timings.encode_ms + timings.prefill_ms,
                    usage.prompt_tokens,
                    at,
                );
            }
            (_, Event::Failed(e)) => panic!("the long request failed: {e}"),
            _ => {}
        }
    };
    let started = started.expect("Started");
    while let Ok((at, e)) = running.try_recv() {
        if matches!(e, Event::Delta { .. }) {
            times.push(at);
        }
    }
    drop(running); // cancels the long-running request at its next token
    drop(engine);
    thread.shutdown();
    // Gaps between the running request's tokens that end while the long one runs.
    let gaps: Vec<f64> = times
        .windows(2)
        .filter(|w| w[1] > started && w[1] <= done)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    assert!(
        gaps.len() > 4,
        "the running request made {} tokens meanwhile",
        gaps.len()
    );
    let worst = gaps.iter().cloned().fold(0f64, f64::max);
    (worst, work_ms, prompt_tokens)
}

/// Chunked prefill: while a long text prompt is prefilled 256 positions at a time, a request
/// that is already generating keeps producing tokens: the longest gap between its tokens during
/// that prefill is a fraction of the whole prefill's time (it would be all of it unchunked).
#[test]
fn a_long_prefill_does_not_stall_running_requests() {
    let (worst, prefill_ms, prompt_tokens) = longest_gap_while(text("word ".repeat(4000), 1), 256);
    eprintln!(
        "prefill of {prompt_tokens} tokens: {prefill_ms:.0} ms in chunks of 256; longest gap \
         between the running request's tokens {worst:.1} ms"
    );
    assert!(prompt_tokens > 3000, "{prompt_tokens}");
    assert!(
        worst < prefill_ms / 4.0,
        "a gap of {worst:.1} ms against a prefill of {prefill_ms:.0} ms: the prefill stalled the \
         running request"
    );
}

/// The same for a prompt of about 7000 media positions (a 32-frame video and an AnyRes
/// image): its vision tower runs one tile or frame per step (a tile is 729 positions, more
/// than a 512-position chunk) and its prefill 512 positions per step, with the running
/// request's decode steps in between.
#[test]
fn a_long_media_prompt_does_not_stall_running_requests() {
    let long = GenRequest {
        request: Request {
            messages: vec![Message::new(
                Role::User,
                vec![
                    Part::Image,
                    Part::Video,
                    Part::Text("Describe both.".into()),
                ],
            )],
            images: vec![photo("coffee.png")],
            videos: vec![VideoInput::Path {
                path: root().join("fixtures/video/clip_h264.mp4"),
                frames: 32,
            }],
        },
        ..text(String::new(), 1)
    };
    let (worst, work_ms, prompt_tokens) = longest_gap_while(long, 512);
    eprintln!(
        "media prompt of {prompt_tokens} positions: encode + prefill {work_ms:.0} ms, one tile or \
         512 positions a step; longest gap between the running request's tokens {worst:.1} ms"
    );
    assert!(prompt_tokens > 6000, "{prompt_tokens}");
    assert!(
        worst < work_ms / 4.0,
        "a gap of {worst:.1} ms against {work_ms:.0} ms of encode and prefill: the media prompt \
         stalled the running request"
    );
}

/// Bytes of f32 keys and values per cache position of the test checkpoint.
fn kv_bytes_per_position() -> usize {
    let t = pipeline().model.config().text.clone();
    2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * 4
}

/// Preemption: under a KV-cache budget that holds the largest of the twelve requests alone
/// but not all of them at once, running requests are preempted and recomputed, and every
/// request ends with what it gives unconstrained (bitwise at the AVX2 and AVX-512 levels: the
/// recomputed cache is built by the same prefill chunks and decode steps).
#[test]
fn preempted_requests_complete_with_the_unconstrained_outputs() {
    let reqs = requests();
    let free = BatchConfig {
        queue_capacity: 64,
        max_running: 8,
        max_batched_tokens: 512,
        encoder_cache_bytes: 0,
        kv_cache_bytes: None,
    };
    let (unconstrained, _) = serve(free, &reqs);
    let per_position = kv_bytes_per_position();
    let largest = unconstrained
        .iter()
        .map(|o| o.positions)
        .max()
        .expect("outcomes");
    let total: usize = unconstrained.iter().map(|o| o.positions).sum();
    let block = onevision_engine::worker::KV_BLOCK;
    let budget = (largest.div_ceil(block) + 2) * block * per_position;
    assert!(
        total * per_position > 2 * budget,
        "the budget would not bind"
    );
    let thread = Engine::start_with(
        pipeline(),
        BatchConfig {
            kv_cache_bytes: Some(budget),
            ..free
        },
    );
    let (constrained, _) = serve_on(&thread.engine(), &reqs);
    let preemptions = thread
        .engine()
        .stats()
        .preemptions
        .load(std::sync::atomic::Ordering::Relaxed);
    thread.shutdown();
    eprintln!(
        "budget {budget} bytes ({largest} positions largest, {total} in all): {preemptions} \
         preemptions"
    );
    assert!(preemptions > 0, "nothing was preempted");
    let exact = onevision_nn::cpu::level() >= onevision_nn::cpu::KernelLevel::Avx2;
    for (i, (c, u)) in constrained.iter().zip(&unconstrained).enumerate() {
        if exact {
            assert_eq!(c, u, "request {i}: preempted run differs");
        } else {
            assert_eq!(c.token_ids.len(), u.token_ids.len(), "request {i}");
        }
    }
}

/// A request that could not fit the KV-cache budget even alone is refused with an error that
/// says so, and the engine goes on serving.
#[test]
fn a_request_over_the_kv_budget_is_refused_clearly() {
    let per_position = kv_bytes_per_position();
    let thread = Engine::start_with(
        pipeline(),
        BatchConfig {
            kv_cache_bytes: Some(64 * per_position),
            ..BatchConfig::default()
        },
    );
    let engine = thread.engine();
    let outcome = |r: GenRequest| {
        let (tx, rx) = mpsc::channel();
        engine
            .submit(r, Box::new(move |e| tx.send(e).is_ok()))
            .expect("queued");
        loop {
            match rx.recv_timeout(Duration::from_secs(120)).expect("an event") {
                Event::Done { token_ids, .. } => break Ok(token_ids.len()),
                Event::Failed(e) => break Err(e.to_string()),
                _ => {}
            }
        }
    };
    // The prompt alone is over 64 positions.
    let e = outcome(text("word ".repeat(100), 4)).expect_err("refused");
    assert!(
        e.contains("--kv-cache-mb") && e.contains("64 positions"),
        "{e}"
    );
    // It fits at first, then grows past the budget while generating.
    let e = outcome(text("Hi.".into(), 200)).expect_err("refused");
    assert!(e.contains("--kv-cache-mb"), "{e}");
    assert_eq!(outcome(text("Hi.".into(), 5)), Ok(5));
    drop(engine);
    thread.shutdown();
}
