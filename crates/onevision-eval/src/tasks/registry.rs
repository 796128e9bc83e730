//! Every task by its lmms-eval name; group names (`mvbench`, `llava_interleave_bench`) expand
//! to their tasks.

use crate::error::{Error, Result};
use crate::task::Task;

/// All built-in tasks, in a stable order.
pub fn all() -> Vec<Box<dyn Task>> {
    let mut v = super::open_image::tasks();
    v.extend(super::choice_image::tasks());
    v.extend(super::multi_video::tasks());
    v
}

/// The names `find` accepts: tasks and groups, sorted.
pub fn known_names() -> Vec<String> {
    let mut names: Vec<String> = vec![];
    for t in all() {
        names.push(t.name().to_string());
        if let Some(g) = t.group() {
            names.push(g.to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The tasks a name stands for: the task itself, or every task of a group.
pub fn find(name: &str) -> Result<Vec<Box<dyn Task>>> {
    let found: Vec<Box<dyn Task>> = all()
        .into_iter()
        .filter(|t| t.name() == name || t.group() == Some(name))
        .collect();
    if found.is_empty() {
        return Err(Error::UnknownTask {
            name: name.to_string(),
            known: known_names().join(", "),
        });
    }
    Ok(found)
}
