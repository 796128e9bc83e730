//! The fixture helpers live in the library (`onevision_models::fixtures`) so the CLI can use them.

#![allow(unused_imports)]

pub use onevision_models::fixtures::*;
