//! Where a bad sample sits and what is wrong with it. Problems are collected, never raised one by
//! one: `onevision train --check-data` prints them all, the trainer refuses to start while there
//! are any (or skips those samples with `--skip-bad-samples`).

use std::fmt;
use std::path::PathBuf;

/// Where a sample (or a mixture entry) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based: the line in a `.jsonl` file, the element's index in a `.json` list, the entry's
    /// index in a mixture's `datasets` list. 0 names the file as a whole (a `.json` file that is
    /// not a list).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One thing wrong with the data. `what` says what was found and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// The sample's own `id`, when it has one (a sample without one is named by its origin).
    pub id: Option<String>,
    pub what: String,
}

impl Problem {
    pub(crate) fn new(origin: &Origin, id: Option<&str>, what: impl Into<String>) -> Self {
        Self {
            origin: origin.clone(),
            id: id.map(str::to_owned),
            what: what.into(),
        }
    }
}

/// `<file>:<line> (id <id>): <what>`; the id part only when the sample has an id, the line part
/// only when the problem is not about the whole file.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_id() {
        let origin = Origin {
            file: PathBuf::from("d/a.jsonl"),
            line: 3,
        };
        let p = Problem::new(&origin, Some("x7"), "bad");
        assert_eq!(p.to_string(), "d/a.jsonl:3 (id x7): bad");
        let p = Problem::new(&origin, None, "bad");
        assert_eq!(p.to_string(), "d/a.jsonl:3: bad");
        let whole = Origin {
            file: PathBuf::from("a.json"),
            line: 0,
        };
        assert_eq!(Problem::new(&whole, None, "bad").to_string(), "a.json: bad");
    }
}
