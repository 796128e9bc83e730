//! OpenAI-compatible chat completions over HTTP.
