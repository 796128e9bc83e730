//! A mixture `.yaml`, as LLaVA-NeXT's `LazySupervisedDataset.__init__` reads it:
//!
//! ```yaml
//! datasets:
//!   - json_path: llava_recap_558k.json     # relative: against this YAML file's directory
//!     sampling_strategy: first:10%          # all | first:N | end:N | random:N; N a count or P%
//!   - json_path: /data/ureader.jsonl
//! ```
//!
//! Differences from upstream, each deliberate: a relative `json_path` is resolved against the
//! YAML file's directory (upstream: the process's working directory), so a mixture and its files
//! move together; `random:N` draws from [`crate::Rng`] seeded from `--seed` and the entry's index
//! (upstream: the global `random.shuffle`), so runs repeat; a strategy upstream silently reads as
//! `all` (`first` without a count, `foo:3`) is a problem here; and `end:0` takes nothing (Python's
//! `list[-0:]` is the whole list).

use std::fmt;
use std::path::Path;

use serde_yaml_ng::Value as Yaml;

use super::media::MediaChecker;
use super::source::{load_file, Format};
use super::{Dataset, Origin, Problem};
use crate::{Error, Result, Rng};

/// `N` of a strategy: a count, or a percentage of the file's samples rounded up
/// (`math.ceil(P * len / 100)`, as upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact(usize),
    Percent(u64),
}

impl Count {
    /// How many of `len` samples this takes (never more than `len`).
    pub fn of(self, len: usize) -> usize {
        let n = match self {
            Count::Exact(n) => n as u128,
            Count::Percent(p) => (p as u128 * len as u128).div_ceil(100),
        };
        n.min(len as u128) as usize
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Exact(n) => write!(f, "{n}"),
            Count::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// LLaVA-NeXT's `sampling_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    All,
    /// The first N, in file order.
    First(Count),
    /// The last N, in file order.
    End(Count),
    /// N drawn without replacement, in the drawn order (upstream shuffles the list, then takes
    /// its head).
    Random(Count),
}

impl Strategy {
    /// Parses `all`, `first:N`, `end:N`, `random:N` (N = `123` or `10%`); the error says what was
    /// expected.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "`sampling_strategy` {s:?} is not understood; expected all, first:N, end:N or random:N, \
                 with N a count (first:1000) or a whole percentage, rounded up (random:10%)"
            )
        };
        let s_trim = s.trim();
        if s_trim == "all" {
            return Ok(Strategy::All);
        }
        let (name, n) = s_trim.split_once(':').ok_or_else(bad)?;
        let n = n.trim();
        let count = match n.strip_suffix('%') {
            Some(p) => Count::Percent(p.trim().parse().map_err(|_| bad())?),
            None => Count::Exact(n.parse().map_err(|_| bad())?),
        };
        match name.trim() {
            "first" => Ok(Strategy::First(count)),
            "end" => Ok(Strategy::End(count)),
            "random" => Ok(Strategy::Random(count)),
            _ => Err(bad()),
        }
    }

    /// The indices (into a file of `len` samples) this strategy takes.
    pub fn select(&self, len: usize, rng: &mut Rng) -> Vec<usize> {
        match *self {
            Strategy::All => (0..len).collect(),
            Strategy::First(c) => (0..c.of(len)).collect(),
            Strategy::End(c) => (len - c.of(len)..len).collect(),
            Strategy::Random(c) => {
                let mut all: Vec<usize> = (0..len).collect();
                rng.shuffle(&mut all);
                all.truncate(c.of(len));
                all
            }
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::All => write!(f, "all"),
            Strategy::First(c) => write!(f, "first:{c}"),
            Strategy::End(c) => write!(f, "end:{c}"),
            Strategy::Random(c) => write!(f, "random:{c}"),
        }
    }
}

/// The generator of mixture entry `index`: the `index`-th output of a stream seeded with `seed`
/// starts its own stream, so entries draw independently and a run repeats for a seed.
pub fn entry_rng(seed: u64, index: usize) -> Rng {
    let mut stream = Rng::new(seed);
    let mut s = stream.next_u64();
    for _ in 0..index {
        s = stream.next_u64();
    }
    Rng::new(s)
}

fn yaml_kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

const SHAPE: &str = "expected `datasets:` with a list of `- json_path: FILE.json` entries, each with an optional `sampling_strategy`";

/// Loads every entry of a mixture into `ds`. A YAML file that cannot be read, is not YAML or has
/// no `datasets` list is an `Err` (nothing can be loaded); a bad entry is a [`Problem`] naming the
/// YAML file and the entry's 1-based index, and the other entries still load.
pub(super) fn load_yaml(
    path: &Path,
    seed: u64,
    checker: &mut MediaChecker<'_>,
    ds: &mut Dataset,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: Yaml = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not valid YAML ({e}); {SHAPE}", path.display())))?;
    let datasets = match doc.get("datasets") {
        Some(Yaml::Sequence(list)) => list,
        Some(other) => {
            return Err(Error::Config(format!(
                "{}: `datasets` is {}; {SHAPE}",
                path.display(),
                yaml_kind(other)
            )))
        }
        None => {
            return Err(Error::Config(format!(
                "{}: no `datasets`; {SHAPE}",
                path.display()
            )))
        }
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    for (i, entry) in datasets.iter().enumerate() {
        let origin = Origin {
            file: path.to_path_buf(),
            line: i + 1,
        };
        let mut report = |what: String| {
            ds.problems.push(Problem::new(
                &origin,
                None,
                format!("entry {} of `datasets`: {what}", i + 1),
            ))
        };
        if !entry.is_mapping() {
            report(format!(
                "{}; expected a mapping with `json_path` and an optional `sampling_strategy`",
                yaml_kind(entry)
            ));
            continue;
        }
        let json_path = match entry.get("json_path") {
            Some(Yaml::String(p)) => Some(p.as_str()),
            Some(other) => {
                report(format!(
                    "`json_path` is {}; expected a path string",
                    yaml_kind(other)
                ));
                None
            }
            None => {
                report("no `json_path`; expected the path of a .json or .jsonl file".to_owned());
                None
            }
        };
        let strategy = match entry.get("sampling_strategy") {
            None => Some(Strategy::All),
            Some(Yaml::String(s)) => Strategy::parse(s).map_err(&mut report).ok(),
            Some(other) => {
                report(format!(
                    "`sampling_strategy` is {}; expected a string such as all, first:1000 or random:10%",
                    yaml_kind(other)
                ));
                None
            }
        };
        let (Some(json_path), Some(strategy)) = (json_path, strategy) else {
            continue;
        };
        let resolved = dir.join(json_path);
        let Some(format) = Format::of(&resolved) else {
            report(format!(
                "`json_path` {} is neither a .json nor a .jsonl file; expected one of those",
                resolved.display()
            ));
            continue;
        };
        let bytes = match std::fs::read(&resolved) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report(format!(
                    "`json_path` {json_path:?} not found at {}; expected a .json or .jsonl file there \
                     (a relative json_path is resolved against the YAML file's directory)",
                    resolved.display()
                ));
                continue;
            }
            Err(e) => {
                report(format!(
                    "`json_path` {} cannot be read ({e})",
                    resolved.display()
                ));
                continue;
            }
        };
        let mut rng = entry_rng(seed, i);
        load_file(&resolved, bytes, format, strategy, &mut rng, checker, ds);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse() {
        assert_eq!(Strategy::parse("all"), Ok(Strategy::All));
        assert_eq!(
            Strategy::parse("first:1000"),
            Ok(Strategy::First(Count::Exact(1000)))
        );
        assert_eq!(Strategy::parse("end:5"), Ok(Strategy::End(Count::Exact(5))));
        assert_eq!(
            Strategy::parse("random:10%"),
            Ok(Strategy::Random(Count::Percent(10)))
        );
        assert_eq!(
            Strategy::parse(" first: 3 "),
            Ok(Strategy::First(Count::Exact(3)))
        );
        for bad in [
            "",
            "first",
            "first:",
            "first:ten",
            "first:-1",
            "first:1.5%",
            "foo:3",
            "all:3",
            "first:1:2",
            "random:%",
        ] {
            let e = Strategy::parse(bad).expect_err(bad);
            assert!(
                e.starts_with(&format!(
                    "`sampling_strategy` {bad:?} is not understood; expected all, first:N"
                )),
                "{e}"
            );
        }
        assert_eq!(
            Strategy::parse("random:10%").map(|s| s.to_string()),
            Ok("random:10%".to_owned())
        );
    }

    #[test]
    fn percent_rounds_up() {
        assert_eq!(Count::Percent(10).of(15), 2); // 1.5 -> 2
        assert_eq!(Count::Percent(1).of(1), 1); // 0.01 -> 1
        assert_eq!(Count::Percent(10).of(20), 2); // exact
        assert_eq!(Count::Percent(0).of(20), 0);
        assert_eq!(Count::Percent(150).of(20), 20);
        assert_eq!(Count::Percent(33).of(0), 0);
        assert_eq!(Count::Exact(50).of(20), 20);
    }

    #[test]
    fn first_end_select_in_file_order() {
        let mut rng = Rng::new(0);
        assert_eq!(
            Strategy::First(Count::Exact(3)).select(10, &mut rng),
            [0, 1, 2]
        );
        assert_eq!(
            Strategy::End(Count::Exact(3)).select(10, &mut rng),
            [7, 8, 9]
        );
        assert_eq!(
            Strategy::End(Count::Percent(25)).select(10, &mut rng),
            [7, 8, 9]
        );
        assert_eq!(
            Strategy::End(Count::Exact(0)).select(10, &mut rng),
            Vec::<usize>::new()
        );
        assert_eq!(
            Strategy::End(Count::Exact(30)).select(3, &mut rng),
            [0, 1, 2]
        );
        assert_eq!(Strategy::All.select(3, &mut rng), [0, 1, 2]);
    }

    #[test]
    fn random_is_seeded_repeatable_and_per_entry() {
        let pick = |seed, entry| {
            Strategy::Random(Count::Exact(5)).select(100, &mut entry_rng(seed, entry))
        };
        assert_eq!(pick(7, 0), pick(7, 0));
        assert_ne!(pick(7, 0), pick(8, 0));
        assert_ne!(pick(7, 0), pick(7, 1));
        let mut p = pick(7, 2);
        assert_eq!(p.len(), 5);
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 5, "drawn without replacement");
        assert!(p.iter().all(|&i| i < 100));
        // All of a file, drawn: a permutation.
        let mut all = Strategy::Random(Count::Percent(100)).select(20, &mut entry_rng(1, 0));
        assert_ne!(all, (0..20).collect::<Vec<_>>());
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
    }
}
