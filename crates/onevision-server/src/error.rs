//! Errors as OpenAI clients expect them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`. Every way a request can fail, axum's own
//! rejections included, ends up here, so clients never see a plain-text body.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use onevision_engine::SubmitError;
use serde::Serialize;

/// A failed request: what the client receives.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault (`messages[0].content[1].image_url`), when there is one.
    pub param: Option<String>,
    /// A machine-readable reason (`model_not_found`, `invalid_api_key`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400: the request is malformed or a value is out of range; `param` names the field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, message);
        e.param = Some(param.into());
        e
    }

    /// 400 without a single field to blame (the body is not JSON, the engine refused the prompt).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message).with_code("invalid_api_key")
    }

    /// 403: a local file outside the allowed directory.
    pub fn forbidden(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, message);
        e.param = Some(param.into());
        e
    }

    /// 404 for a `model` the server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            format!("the model `{asked}` does not exist; this server serves `{served}`"),
        )
        .with_code("model_not_found");
        e.param = Some("model".into());
        e
    }

    /// 404 for an unknown path.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!(
                "no route {path}; the API has POST /v1/chat/completions, GET /v1/models, \
                 GET /health and GET /metrics"
            ),
        )
    }

    /// 405.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the limit of {limit} bytes; send smaller media or \
                 raise the server's body limit"
            ),
        )
        .with_code("request_too_large")
    }

    /// 500: the engine failed; not the client's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A request body that could not be read (too large, broken connection).
    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large(limit)
        } else {
            Self::new(
                rejection.status(),
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    }

    /// The OpenAI `type` for this status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).with_code("queue_full")
            }
            SubmitError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).with_code("shutting_down")
            }
        }
    }
}

impl From<onevision_engine::Error> for ApiError {
    /// Bad media and prompts that do not fit are the client's fault (400); anything else is
    /// the server's (500).
    fn from(e: onevision_engine::Error) -> Self {
        use onevision_engine::Error as E;
        use onevision_processor::Error as P;
        match &e {
            E::Request(_) => Self::bad_request(e.to_string()),
            E::Processor(P::Config { .. } | P::Tokenizer(_)) => Self::internal(e.to_string()),
            E::Processor(_) => Self::bad_request(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

/// `{"error": {...}}`, also sent as an SSE event when a stream fails after it started.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                message: &self.message,
                kind: self.kind(),
                param: self.param.as_deref(),
                code: self.code,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}
