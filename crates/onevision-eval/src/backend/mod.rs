//! The model under evaluation: in-process or an OpenAI-compatible server.
