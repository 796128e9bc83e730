//! The task recipes, and the registry that names them. Each group of recipes lives in its own
//! module and lists its tasks in a `tasks()` function; [`registry`] gathers them.

pub mod choice_image;
pub mod custom;
pub mod multi_video;
pub mod open_image;
pub mod registry;

pub use registry::{all, find, known_names};
