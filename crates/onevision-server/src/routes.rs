//! The small endpoints (`/v1/models`, `/health`, `/ready`, `/metrics`), the API-key check, the
//! request counter and the OpenAI-shaped 404 / 405 fallbacks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use onevision_engine::{Event, GenRequest, Request as GenPrompt, StopRules};
use onevision_processor::{Message, Part, Role};

use crate::error::ApiError;
use crate::wire::{ModelCard, ModelList};
use crate::{App, CHAT_PATH};

fn card(app: &App) -> ModelCard {
    ModelCard {
        id: app.config.served_model_name.clone(),
        object: "model",
        created: app.started_unix,
        owned_by: "onevision",
        max_model_len: app.engine.info().context_length,
    }
}

pub async fn list_models(State(app): State<Arc<App>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![card(&app)],
    })
}

pub async fn get_model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if id == app.config.served_model_name {
        Json(card(&app)).into_response()
    } else {
        ApiError::model_not_found(&id, &app.config.served_model_name).into_response()
    }
}

/// The server only starts listening once the model is loaded, so answering is being healthy.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// How long the readiness generation may take before the server counts as not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Readiness (a load balancer's or Kubernetes' readiness probe): one generated token of a
/// fixed text prompt, queued on the engine like any request. 200 `{"status":"ready"}` when the
/// token came; 503 with the reason when the queue is full, the server is shutting down, or the
/// generation failed or took over a minute. Probes run one at a time (a second one waits for
/// the first and runs its own).
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    let _one = app.readiness.lock().await;
    let started = Instant::now();
    let request = GenRequest {
        request: GenPrompt {
            messages: vec![Message::new(Role::User, vec![Part::Text("Hello".into())])],
            images: vec![],
            videos: vec![],
        },
        sampling: Default::default(),
        stop: StopRules {
            max_new_tokens: 1,
            ignore_eos: true,
            ..Default::default()
        },
        logprobs: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "reason": reason})),
        )
            .into_response()
    };
    if let Err(e) = app
        .engine
        .submit(request, Box::new(move |e: Event| tx.send(e).is_ok()))
    {
        return not_ready(e.to_string());
    }
    let outcome = tokio::time::timeout(READY_TIMEOUT, async {
        loop {
            match rx.recv().await {
                Some(Event::Done { usage, .. }) if usage.completion_tokens == 1 => break Ok(()),
                Some(Event::Done { finish, .. }) => {
                    break Err(format!("the generation ended without a token ({finish:?})"))
                }
                Some(Event::Failed(e)) => break Err(format!("the generation failed: {e}")),
                Some(_) => {}
                None => break Err("the engine dropped the generation".into()),
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => Json(serde_json::json!({
            "status": "ready",
            "generation_ms": started.elapsed().as_secs_f64() * 1e3,
        }))
        .into_response(),
        Ok(Err(reason)) => not_ready(reason),
        Err(_) => not_ready(format!(
            "no token within {} s: the engine is overloaded or stuck",
            READY_TIMEOUT.as_secs()
        )),
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let stats = app.engine.stats();
    let text = app.metrics.render(crate::metrics::EngineGauges {
        waiting: stats.queued.load(Ordering::SeqCst) + stats.preempted.load(Ordering::SeqCst),
        running: stats.running.load(Ordering::SeqCst),
        preemptions: stats.preemptions.load(Ordering::Relaxed),
        kv_used_bytes: stats.kv_used_bytes.load(Ordering::Relaxed),
        kv_budget_bytes: stats.kv_budget_bytes.load(Ordering::Relaxed),
        encoder_cache_queries: stats.encoder_cache.queries.load(Ordering::Relaxed),
        encoder_cache_hits: stats.encoder_cache.hits.load(Ordering::Relaxed),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::route_not_found(uri.path())
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer <key>` on the `/v1` routes when the server has a key.
pub async fn require_api_key(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &app.config.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().trim());
    match given {
        None => {
            ApiError::unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
                .into_response()
        }
        Some(value) => {
            let key = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or_default()
                .trim();
            if same_secret(key.as_bytes(), expected.as_bytes()) {
                next.run(request).await
            } else {
                ApiError::unauthorized(
                    "incorrect API key: send the header `Authorization: Bearer <key>` with the \
                     server's key",
                )
                .into_response()
            }
        }
    }
}

/// Counts chat-completion answers by status, and logs one line per request when enabled.
pub async fn count_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if path == CHAT_PATH {
        app.metrics.count_request(status);
    }
    if app.config.log_requests {
        eprintln!(
            "onevision-server: {method} {path} {status} {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret(b"abc", b"abc"));
        assert!(!super::same_secret(b"abc", b"abd"));
        assert!(!super::same_secret(b"abc", b"ab"));
        assert!(!super::same_secret(b"", b"a"));
    }
}
