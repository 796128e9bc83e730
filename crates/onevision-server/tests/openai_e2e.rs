//! End to end through a real OpenAI client (async-openai): greedy answers over HTTP equal
//! `Pipeline::generate`'s for text, image and video requests, streamed or not, with the same
//! token usage; the other endpoints; cancellation by disconnect; graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestMessageContentPartText, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    CreateChatCompletionResponse, FinishReason, ImageUrl,
};
use common::*;
use futures::StreamExt;
use onevision_engine::{GenerateOptions, GenerateOutput, ImageInput, Request, VideoInput};
use onevision_processor::{Message, Part, Role};
use serde_json::json;

const MAX_TOKENS: u32 = 12;

fn user_text(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
        content: ChatCompletionRequestUserMessageContent::Text(text.into()),
        name: None,
    })
}

fn text_conversation() -> (Vec<ChatCompletionRequestMessage>, Vec<Message>) {
    let wire = vec![
        ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(
                "You are a helpful assistant.".into(),
            ),
            name: None,
        }),
        user_text("Hello, who are you?"),
        ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
            content: Some(ChatCompletionRequestAssistantMessageContent::Text(
                "I am a tiny model.".into(),
            )),
            ..Default::default()
        }),
        user_text("Describe the sky in one sentence."),
    ];
    let engine = vec![
        Message::text(Role::System, "You are a helpful assistant."),
        Message::text(Role::User, "Hello, who are you?"),
        Message::text(Role::Assistant, "I am a tiny model."),
        Message::text(Role::User, "Describe the sky in one sentence."),
    ];
    (wire, engine)
}

fn image_conversation() -> (Vec<ChatCompletionRequestMessage>, Vec<Message>) {
    let url = fixture_data_uri("image/png", "images/photos/chelsea.png");
    let wire = vec![ChatCompletionRequestMessage::User(
        ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Array(vec![
                ChatCompletionRequestUserMessageContentPart::ImageUrl(
                    ChatCompletionRequestMessageContentPartImage {
                        image_url: ImageUrl { url, detail: None },
                        prompt_cache_breakpoint: None,
                    },
                ),
                ChatCompletionRequestUserMessageContentPart::Text(
                    ChatCompletionRequestMessageContentPartText {
                        text: "What is shown in this image?".into(),
                        prompt_cache_breakpoint: None,
                    },
                ),
            ]),
            name: None,
        },
    )];
    let engine = vec![Message::new(
        Role::User,
        vec![
            Part::Image,
            Part::Text("What is shown in this image?".into()),
        ],
    )];
    (wire, engine)
}

fn request(messages: Vec<ChatCompletionRequestMessage>) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .messages(messages)
        .max_completion_tokens(MAX_TOKENS)
        .temperature(0.0f32)
        .build()
        .expect("request builds")
}

fn reference(pipeline: &onevision_engine::Pipeline, request: &Request) -> GenerateOutput {
    pipeline
        .generate(
            request,
            GenerateOptions {
                max_new_tokens: MAX_TOKENS as usize,
                ignore_eos: false,
            },
            |_| {},
        )
        .expect("reference generation")
}

fn finish_name(f: Option<FinishReason>) -> &'static str {
    match f {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Length) => "length",
        other => panic!("unexpected finish reason {other:?}"),
    }
}

fn check_response(what: &str, r: &CreateChatCompletionResponse, expected: &GenerateOutput) {
    assert!(r.id.starts_with("chatcmpl-"), "{what}: id {}", r.id);
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.model, MODEL);
    assert_eq!(r.choices.len(), 1);
    let choice = &r.choices[0];
    assert_eq!(
        choice.message.content.as_deref(),
        Some(expected.text.as_str()),
        "{what}: answer differs from Pipeline::generate"
    );
    assert_eq!(
        finish_name(choice.finish_reason),
        expected.finish_reason,
        "{what}"
    );
    let usage = r.usage.as_ref().expect("usage");
    assert_eq!(
        usage.prompt_tokens as usize, expected.prompt_tokens,
        "{what}: prompt tokens"
    );
    assert_eq!(
        usage.completion_tokens as usize,
        expected.token_ids.len(),
        "{what}: completion tokens"
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
}

/// Streams `req` and returns (text, finish reason, usage chunk).
async fn stream_answer(
    client: &async_openai::Client<async_openai::config::OpenAIConfig>,
    mut req: CreateChatCompletionRequest,
) -> (
    String,
    &'static str,
    async_openai::types::chat::CompletionUsage,
) {
    req.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        ..Default::default()
    });
    let mut stream = client
        .chat()
        .create_stream(req)
        .await
        .expect("stream opens");
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    let mut first = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk parses");
        assert_eq!(chunk.object, "chat.completion.chunk");
        if first {
            let role = chunk.choices[0].delta.role;
            assert!(role.is_some(), "the first chunk carries the role");
            first = false;
        }
        if let Some(u) = chunk.usage {
            assert!(chunk.choices.is_empty(), "the usage chunk has no choices");
            usage = Some(u);
        }
        for c in chunk.choices {
            if let Some(t) = c.delta.content {
                text.push_str(&t);
            }
            if c.finish_reason.is_some() {
                finish = Some(finish_name(c.finish_reason));
            }
        }
    }
    (
        text,
        finish.expect("a chunk with finish_reason"),
        usage.expect("a usage chunk"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_equal_pipeline_generate() {
    let server = TestServer::start(config()).await;
    let pipeline = tokio::task::spawn_blocking(load_pipeline)
        .await
        .expect("load");
    let client = server.openai("unused");

    let (text_wire, text_msgs) = text_conversation();
    let (image_wire, image_msgs) = image_conversation();
    let cases = [
        (
            "text",
            text_wire,
            Request {
                messages: text_msgs,
                images: vec![],
                videos: vec![],
            },
        ),
        (
            "image",
            image_wire,
            Request {
                messages: image_msgs,
                images: vec![ImageInput::Path(
                    fixtures().join("images/photos/chelsea.png"),
                )],
                videos: vec![],
            },
        ),
    ];
    for (what, wire, engine_request) in cases {
        let expected = reference(&pipeline, &engine_request);
        if what == "image" {
            assert!(expected.image_tokens > 0);
        }
        let r = client
            .chat()
            .create(request(wire.clone()))
            .await
            .expect(what);
        check_response(what, &r, &expected);

        let (text, finish, usage) = stream_answer(&client, request(wire)).await;
        assert_eq!(text, expected.text, "{what} streamed");
        assert_eq!(finish, expected.finish_reason, "{what} streamed");
        assert_eq!(usage.prompt_tokens as usize, expected.prompt_tokens);
        assert_eq!(usage.completion_tokens as usize, expected.token_ids.len());
    }

    // Video: async-openai has no `video_url` part, so the same JSON goes out by hand; the
    // answer still parses as async-openai's response type.
    let video_request = Request {
        messages: vec![Message::new(
            Role::User,
            vec![
                Part::Video,
                Part::Text("What happens in this video?".into()),
            ],
        )],
        images: vec![],
        videos: vec![VideoInput::Path {
            path: fixtures().join("video/clip_h264.mp4"),
            frames: 8,
        }],
    };
    let expected = reference(&pipeline, &video_request);
    assert_eq!(expected.image_tokens, 8 * 196 + 1);
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {
                "url": fixture_data_uri("video/mp4", "video/clip_h264.mp4"), "num_frames": 8}},
            {"type": "text", "text": "What happens in this video?"}
        ]}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0
    });
    let (status, response) = server.post(&body).await;
    assert_eq!(status, 200, "{response}");
    let r: CreateChatCompletionResponse =
        serde_json::from_value(response).expect("async-openai parses the response");
    check_response("video", &r, &expected);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .expect("stream request");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let events = sse_data(&resp.text().await.expect("stream body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    let mut usage = None;
    for e in &events[..events.len() - 1] {
        let chunk: async_openai::types::chat::CreateChatCompletionStreamResponse =
            serde_json::from_str(e).expect("chunk parses");
        for c in &chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or_default());
        }
        usage = chunk.usage.or(usage);
    }
    assert_eq!(text, expected.text, "video streamed");
    let usage = usage.expect("usage chunk");
    assert_eq!(usage.prompt_tokens as usize, expected.prompt_tokens);

    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_models_health_and_metrics() {
    let server = TestServer::start(config()).await;
    let (status, r) = server
        .post(&json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count to three."}],
            "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 3,
            "stop": ["\n\n\n\n"], "seed": 7
        }))
        .await;
    assert_eq!(status, 200, "{r}");
    let parsed: CreateChatCompletionResponse =
        serde_json::from_value(r.clone()).expect("async-openai parses logprobs");
    let content = parsed.choices[0]
        .logprobs
        .as_ref()
        .and_then(|l| l.content.as_ref())
        .expect("logprobs.content");
    assert!(!content.is_empty());
    for t in content {
        assert!(t.logprob <= 0.0);
        assert_eq!(t.top_logprobs.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert!(t.top_logprobs[0].logprob <= t.logprob + 1e-5);
    }

    let models: serde_json::Value = server
        .http
        .get(server.url("/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("models json");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["owned_by"], "onevision");

    let health = server
        .http
        .get(server.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let usage = &r["usage"];
    let generated = format!(
        "onevision:generation_tokens_total {}",
        usage["completion_tokens"]
    );
    let prompt = format!("onevision:prompt_tokens_total {}", usage["prompt_tokens"]);
    for needle in [
        "onevision:requests_total{status=\"200\"} 1",
        prompt.as_str(),
        generated.as_str(),
        "onevision:num_requests_waiting 0",
        "onevision:time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
        "onevision:time_to_first_token_seconds_sum ",
        "onevision:time_per_output_token_seconds_count 1",
        "onevision:e2e_request_latency_seconds_count 1",
    ] {
        assert!(
            metrics.contains(needle),
            "`{needle}` missing from\n{metrics}"
        );
    }
    server.stop().await.expect("clean stop");
}

/// A client that goes away mid-stream cancels its generation: the worker is free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cancels_generation() {
    let server = TestServer::start(config()).await;
    let long = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 2000, "ignore_eos": true, "temperature": 0, "stream": true
    });
    let mut resp = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .await
        .expect("stream opens");
    assert_eq!(resp.status(), 200);
    let mut received = 0;
    while received < 3 {
        let chunk = resp
            .chunk()
            .await
            .expect("chunk")
            .expect("stream still open");
        received += chunk.iter().filter(|&&b| b == b'\n').count() / 2;
    }
    drop(resp);

    server.wait_idle(Duration::from_secs(20)).await;
    let generated = server.metric("onevision:generation_tokens_total").await;
    assert!(
        generated < 1000.0,
        "the cancelled request went on generating: {generated} tokens"
    );

    let t = Instant::now();
    let (status, r) = server
        .post(&json!({
            "model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4, "temperature": 0
        }))
        .await;
    assert_eq!(status, 200, "{r}");
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the next request waited {took:?}"
    );
    eprintln!(
        "cancellation: {generated} tokens generated before the disconnect was noticed; next \
         request took {took:?}"
    );
    server.stop().await.expect("clean stop");
}

/// Shutdown while a request runs: the request completes, then `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let mut server = TestServer::start(config()).await;
    let http = server.http.clone();
    let url = server.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move {
        let resp = http
            .post(url)
            .json(&json!({
                "model": MODEL, "messages": [{"role": "user", "content": "Go on."}],
                "max_tokens": 1000, "ignore_eos": true, "temperature": 0
            }))
            .send()
            .await
            .expect("in-flight request answered");
        let status = resp.status().as_u16();
        (
            status,
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    });
    // Wait until the engine runs it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("onevision:num_requests_running").await == 0.0 {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.trigger_shutdown();
    assert!(
        !in_flight.is_finished(),
        "the request should still run when the shutdown starts"
    );
    let serve_task = server.take_task();

    let (status, body) = tokio::time::timeout(Duration::from_secs(60), in_flight)
        .await
        .expect("in-flight request finishes")
        .expect("task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 1000);
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    tokio::time::timeout(Duration::from_secs(30), serve_task)
        .await
        .expect("serve returns once drained")
        .expect("serve task")
        .expect("serve ends without error");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    server.stop().await.expect("engine joins");
}
