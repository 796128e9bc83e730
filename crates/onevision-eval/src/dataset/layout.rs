//! Which data files of a dataset repo hold one split of one config.
//!
//! In order, the first that gives files wins:
//! 1. the dataset card's `configs:` block (README.md's YAML front matter, as the Hub and
//!    `datasets` read it): the config named (or, with none named, the one marked
//!    `default: true`, else the one called `default`, else the only one), its `data_files`
//!    entry for the split, each `path` a glob (`*` within a folder, `**` across folders); a
//!    `field:` in the config is the json builder's ([`JsonOptions`]);
//! 2. the Hub's file layouts, in a base folder `B`: `B/<split>-*.<ext>` (which covers
//!    `<split>-NNNNN-of-NNNNN.parquet` and the older `...-of-NNNNN-<hash>.parquet`),
//!    `B/<split>.<ext>` and `B/<split>/*.<ext>`, `<ext>` being `parquet`, `json` or `jsonl`.
//!    With a config `C`, `B` is `C/` (`C/<split>/NNNN.parquet` is the `refs/convert/parquet`
//!    layout); without one (or with `default`), `B` is `data/`, then the repo's top folder,
//!    then `default/` (the converted layout's default config).
//!
//! Of the files found, `datasets` reads all with one builder, picked by the most common file
//! extension (parquet on a tie; datasets/load.py `infer_module_for_data_files_list`), and
//! drops the others; the same here, and a split whose files would go to another builder (csv,
//! text, images) is an error. Shards are sorted by their path, so `-00000-of-` comes first.
//! When nothing matches, the error lists the configs and splits the repo does have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json::JsonOptions;
use crate::error::{Error, Result};

/// One split's data files and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLayout {
    /// Sorted by path; all parquet or all JSON.
    pub files: Vec<PathBuf>,
    /// The card config's json builder options (none without a card).
    pub json: JsonOptions,
}

/// The data files of `split` (of `config`, None for the default config) under the repo
/// folder `dir`, sorted by path ([`split_layout`]'s files).
pub fn split_files(dir: &Path, config: Option<&str>, split: &str) -> Result<Vec<PathBuf>> {
    split_layout(dir, config, split).map(|l| l.files)
}

/// The data files of `split` (of `config`, None for the default config) under the repo
/// folder `dir`, and the card's options for reading them.
pub fn split_layout(dir: &Path, config: Option<&str>, split: &str) -> Result<SplitLayout> {
    if let Some(layout) = from_card(dir, config, split)? {
        if !layout.files.is_empty() {
            return Ok(layout);
        }
    }
    let bases: Vec<PathBuf> = match config {
        Some(c) if c != "default" => vec![dir.join(c)],
        _ => vec![dir.join("data"), dir.to_path_buf(), dir.join("default")],
    };
    for base in &bases {
        let files = in_base(base, split);
        if !files.is_empty() {
            return Ok(SplitLayout {
                files,
                json: JsonOptions::default(),
            });
        }
    }
    let looked: Vec<String> = bases
        .iter()
        .map(|b| {
            let rel = b.strip_prefix(dir).unwrap_or(b).display().to_string();
            let pre = if rel.is_empty() {
                String::new()
            } else {
                format!("{rel}/")
            };
            format!("{pre}{split}-*.parquet, {pre}{split}/*.parquet, {pre}{split}.json(l)")
        })
        .collect();
    let what = match config {
        Some(c) => format!("split `{split}` of config `{c}`"),
        None => format!("split `{split}`"),
    };
    Err(Error::Dataset {
        what: dir.display().to_string(),
        reason: format!(
            "no parquet or JSON files for {what} (looked for {}); {}",
            looked.join("; "),
            describe(&inventory(dir))
        ),
    })
}

/// The `datasets` builder a file extension (lowercase, no dot) goes to
/// (datasets/packaged_modules/__init__.py `_EXTENSION_TO_MODULE`); None for extensions no
/// builder takes (`.md`, `.py`, ...).
fn builder_of(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "parquet" => "parquet",
        "json" | "jsonl" => "json",
        "csv" | "tsv" => "csv",
        "arrow" => "arrow",
        "txt" => "text",
        "tar" => "webdataset",
        "zip" => "zip archive",
        "png" | "jpg" | "jpeg" | "gif" | "bmp" | "tif" | "tiff" | "webp" | "ico" | "pcx"
        | "ppm" | "pgm" | "pbm" | "tga" | "xbm" | "dds" | "eps" | "icns" | "im" | "msp" | "sgi"
        | "spi" => "imagefolder",
        "wav" | "mp3" | "flac" | "ogg" | "aiff" | "opus" | "m4a" | "au" => "audiofolder",
        _ => return None,
    })
}

/// The extensions of a file name, as `datasets` counts them (`a.jsonl.gz` -> jsonl, gz).
fn suffixes(p: &Path) -> Vec<String> {
    file_name(p)
        .split('.')
        .skip(1)
        .map(str::to_lowercase)
        .collect()
}

/// datasets/load.py `infer_module_for_data_files_list`: the builder of the most common
/// extension among (the first 200 of) `files`, parquet first on a tie, then the extension
/// that sorts last.
fn pick_builder(files: &[PathBuf]) -> Option<&'static str> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in files.iter().take(200) {
        for ext in suffixes(f) {
            *counts.entry(ext).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|(a, n), (b, m)| (m, b == "parquet", b).cmp(&(n, a == "parquet", a)));
    ranked.into_iter().find_map(|(ext, _)| builder_of(&ext))
}

/// The files the builder `datasets` picks would read, the others dropped (as it drops them);
/// an error when that builder is not parquet or json, or its files are compressed.
fn read_with_one_builder(files: Vec<PathBuf>, what: &str) -> Result<Vec<PathBuf>> {
    let Some(builder) = pick_builder(&files) else {
        return Ok(vec![]);
    };
    if builder != "parquet" && builder != "json" {
        return Err(Error::Dataset {
            what: what.to_string(),
            reason: format!(
                "`datasets` would read these files with its {builder} builder; only parquet and \
                 JSON files are read here (convert them to parquet, e.g. with `datasets`' \
                 `to_parquet`)"
            ),
        });
    }
    let mut kept = vec![];
    for f in files {
        let exts = suffixes(&f);
        let last = exts.last().map(String::as_str).unwrap_or("");
        if builder_of(last) == Some(builder) {
            kept.push(f);
        } else if exts.iter().any(|e| builder_of(e) == Some(builder)) {
            return Err(Error::Dataset {
                what: f.display().to_string(),
                reason: "a compressed data file; `datasets` decompresses it, here it is not \
                         read: decompress it in place"
                    .into(),
            });
        }
    }
    Ok(kept)
}

/// A parquet or JSON file that may hold data: not one of the names `datasets` never reads as
/// data (datasets/data_files.py `FILES_TO_IGNORE`).
fn is_data(p: &Path) -> bool {
    const IGNORED: [&str; 4] = [
        "config.json",
        "dataset_info.json",
        "dataset_infos.json",
        "dataset_dict.json",
    ];
    p.extension()
        .is_some_and(|e| e == "parquet" || e == "json" || e == "jsonl")
        && !IGNORED.contains(&file_name(p))
        && p.is_file()
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => vec![],
    };
    out.sort();
    out
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// `base/<split>-*.<ext>`, `base/<split>.<ext>`, else `base/<split>/*.<ext>` (parquet,
/// json, jsonl), those of the builder `datasets` would pick.
fn in_base(base: &Path, split: &str) -> Vec<PathBuf> {
    let prefix = format!("{split}-");
    let flat: Vec<PathBuf> = sorted_dir(base)
        .into_iter()
        .filter(|p| {
            let n = file_name(p);
            let exact = n
                .strip_prefix(split)
                .is_some_and(|rest| matches!(rest, ".parquet" | ".json" | ".jsonl"));
            (n.starts_with(&prefix) || exact) && is_data(p)
        })
        .collect();
    let files = if flat.is_empty() {
        sorted_dir(&base.join(split))
            .into_iter()
            .filter(|p| is_data(p))
            .collect()
    } else {
        flat
    };
    // Only parquet and JSON files are here: the pick is one of those, nothing to refuse.
    read_with_one_builder(files, "").unwrap_or_default()
}

/// The split a flat shard's name says: `test-00000-of-00001.parquet` -> `test`.
fn split_of(name: &str) -> Option<String> {
    let stem = [".parquet", ".jsonl", ".json"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))?;
    // `<split>-NNNNN-of-NNNNN[-hash]`: the split is what comes before the shard number.
    let parts: Vec<&str> = stem.split('-').collect();
    for k in 1..parts.len() {
        if parts[k].bytes().all(|b| b.is_ascii_digit())
            && !parts[k].is_empty()
            && parts.get(k + 1) == Some(&"of")
        {
            return Some(parts[..k].join("-"));
        }
    }
    Some(stem.split('-').next().unwrap_or(stem).to_string())
}

/// The configs and splits present: config (`(default)` for `data/` and the top folder) ->
/// splits; plus the card's config names.
fn inventory(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut inv: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Flat shards' split names, and the sub-folders holding parquet files.
    let scan = |base: &Path| -> (Vec<String>, Vec<String>) {
        let (mut flat, mut folders) = (vec![], vec![]);
        for p in sorted_dir(base) {
            if is_data(&p) {
                flat.extend(split_of(file_name(&p)));
            } else if p.is_dir() && sorted_dir(&p).iter().any(|f| is_data(f)) {
                folders.push(file_name(&p).to_string());
            }
        }
        (flat, folders)
    };
    let (top, subs) = scan(dir);
    inv.entry("(default)".into()).or_default().extend(top);
    for sub in sorted_dir(dir) {
        let name = file_name(&sub).to_string();
        if !sub.is_dir() || name.starts_with('.') {
            continue;
        }
        let (flat, folders) = scan(&sub);
        let numbered =
            !flat.is_empty() && flat.iter().all(|s| s.bytes().all(|b| b.is_ascii_digit()));
        if name == "data" {
            inv.entry("(default)".into())
                .or_default()
                .extend(flat.into_iter().chain(folders));
        } else if numbered && subs.contains(&name) {
            // `<split>/0000.parquet` at the top: a split of the default config.
            inv.entry("(default)".into()).or_default().insert(name);
        } else if !flat.is_empty() || !folders.is_empty() {
            inv.entry(format!("`{name}`"))
                .or_default()
                .extend(flat.into_iter().chain(folders));
        }
    }
    inv.retain(|_, s| !s.is_empty());
    for c in card_configs(dir).into_iter().flatten() {
        let splits = c
            .splits
            .into_iter()
            .map(|(s, _)| s)
            .collect::<BTreeSet<_>>();
        inv.entry(format!("`{}` (README.md)", c.name))
            .or_default()
            .extend(splits);
    }
    inv
}

fn describe(inv: &BTreeMap<String, BTreeSet<String>>) -> String {
    if inv.is_empty() {
        return "the folder has no parquet files at all, nor JSON ones".into();
    }
    let parts: Vec<String> = inv
        .iter()
        .map(|(c, s)| {
            let splits: Vec<&str> = s.iter().map(String::as_str).collect();
            format!(
                "config {c}: {}",
                if splits.is_empty() {
                    "-".into()
                } else {
                    splits.join(", ")
                }
            )
        })
        .collect();
    format!("the repo has {}", parts.join("; "))
}

/// One `configs:` entry of the dataset card.
struct CardConfig {
    name: String,
    default: bool,
    /// split -> glob patterns.
    splits: Vec<(String, Vec<String>)>,
    /// The json builder's `field`.
    field: Option<String>,
}

/// The card's `configs:` block, if README.md has one that parses.
fn card_configs(dir: &Path) -> Option<Vec<CardConfig>> {
    let text = std::fs::read_to_string(dir.join("README.md")).ok()?;
    let body = text.strip_prefix("---")?;
    let end = body.find("\n---")?;
    let yaml: Value = serde_yaml_ng::from_str(&body[..end]).ok()?;
    let configs = yaml.get("configs")?.as_array()?;
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let mut out = vec![];
    for c in configs {
        let name = c
            .get("config_name")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let default = c.get("default").and_then(Value::as_bool).unwrap_or(false);
        let splits = match c.get("data_files") {
            // `data_files: [ {split, path}, ... ]`
            Some(Value::Array(entries)) if entries.iter().all(Value::is_object) => entries
                .iter()
                .filter_map(|e| {
                    Some((
                        e.get("split")?.as_str()?.to_string(),
                        strings(e.get("path")?),
                    ))
                })
                .collect(),
            // `data_files: {split: path(s)}`
            Some(Value::Object(m)) => m.iter().map(|(s, p)| (s.clone(), strings(p))).collect(),
            // `data_files: path(s)`: everything is the train split.
            Some(v) => vec![("train".to_string(), strings(v))],
            None => vec![],
        };
        let field = c.get("field").and_then(Value::as_str).map(str::to_string);
        out.push(CardConfig {
            name,
            default,
            splits,
            field,
        });
    }
    Some(out)
}

/// The files the card maps `config`/`split` to (None when the card says nothing about them).
fn from_card(dir: &Path, config: Option<&str>, split: &str) -> Result<Option<SplitLayout>> {
    let Some(configs) = card_configs(dir) else {
        return Ok(None);
    };
    let chosen = match config {
        Some(c) => configs.iter().find(|x| x.name == c),
        None => configs
            .iter()
            .find(|x| x.default)
            .or_else(|| configs.iter().find(|x| x.name == "default"))
            .or_else(|| {
                if configs.len() == 1 {
                    configs.first()
                } else {
                    None
                }
            }),
    };
    let Some((chosen, patterns)) = chosen.and_then(|c| {
        c.splits
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, p)| (c, p))
    }) else {
        return Ok(None);
    };
    let mut files = BTreeSet::new();
    for pattern in patterns {
        let pattern = pattern.trim_start_matches("./");
        // Walk only below the pattern's literal folders.
        let literal: Vec<&str> = pattern
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[']))
            .collect();
        let literal = if literal.len() == pattern.split('/').count() {
            &literal[..literal.len() - 1]
        } else {
            &literal[..]
        };
        let start = literal.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        walk(&start, &mut |p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/");
            if glob_match(pattern, &rel) {
                files.insert(p.to_path_buf());
            }
        });
    }
    let what = format!(
        "{}: config `{}`, split `{split}`",
        dir.join("README.md").display(),
        chosen.name
    );
    let files = read_with_one_builder(files.into_iter().collect(), &what)?;
    Ok(Some(SplitLayout {
        files,
        json: JsonOptions {
            field: chosen.field.clone(),
        },
    }))
}

/// Every file below `dir` (symlinks followed), skipping dot-folders (`.cache`, `.git`).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for p in sorted_dir(dir) {
        if file_name(&p).starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(&p, f);
        } else if p.is_file() {
            f(&p);
        }
    }
}

/// fsspec-style glob on `/`-separated paths: `*` and `?` stay within a folder, `**` crosses
/// folders, `[abc]` is a class.
pub(crate) fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                // `**/` may also match no folder at all.
                let rest_no_slash = rest.strip_prefix(b"/").unwrap_or(rest);
                (0..=s.len()).any(|k| go(rest, &s[k..]) || go(rest_no_slash, &s[k..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for k in 0..=s.len() {
                    if go(rest, &s[k..]) {
                        return true;
                    }
                    if s.get(k) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => s.first().is_some_and(|c| *c != b'/') && go(&p[1..], &s[1..]),
            Some(b'[') => match p.iter().position(|c| *c == b']') {
                Some(close) if close > 1 => {
                    let class = &p[1..close];
                    let (neg, class) = match class.first() {
                        Some(b'!') | Some(b'^') => (true, &class[1..]),
                        _ => (false, class),
                    };
                    s.first().is_some_and(|c| class.contains(c) != neg)
                        && go(&p[close + 1..], &s[1..])
                }
                _ => s.first() == Some(&b'[') && go(&p[1..], &s[1..]),
            },
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_fsspec() {
        assert!(glob_match(
            "data/test-*",
            "data/test-00000-of-00001.parquet"
        ));
        assert!(!glob_match("data/test-*", "data/sub/test-0.parquet"));
        assert!(!glob_match("test-*", "data/test-0.parquet"));
        assert!(glob_match("**/test-*.parquet", "a/b/test-0.parquet"));
        assert!(glob_match("**/test-*.parquet", "test-0.parquet"));
        assert!(glob_match(
            "en/dev-0000?-of-*.parquet",
            "en/dev-00001-of-00002.parquet"
        ));
        assert!(glob_match("files/part[01].parquet", "files/part1.parquet"));
        assert!(!glob_match(
            "files/part[!01].parquet",
            "files/part1.parquet"
        ));
    }

    #[test]
    fn split_names_from_shard_names() {
        assert_eq!(
            split_of("test-00000-of-00001.parquet").as_deref(),
            Some("test")
        );
        assert_eq!(
            split_of("validation-00000-of-00001-8f2e1c.parquet").as_deref(),
            Some("validation")
        );
        assert_eq!(
            split_of("test-dev-00003-of-00010.parquet").as_deref(),
            Some("test-dev")
        );
        assert_eq!(split_of("train.parquet").as_deref(), Some("train"));
        assert_eq!(split_of("notes.txt"), None);
        assert_eq!(split_of("dev.jsonl").as_deref(), Some("dev"));
        assert_eq!(
            split_of("test-00000-of-00002.json").as_deref(),
            Some("test")
        );
    }

    #[test]
    fn one_builder_per_split_as_datasets_picks_it() {
        let p = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(PathBuf::from).collect() };
        assert_eq!(pick_builder(&p(&["a.json", "README.md"])), Some("json"));
        // A tie goes to parquet.
        assert_eq!(pick_builder(&p(&["a.json", "b.parquet"])), Some("parquet"));
        // Extensions are counted one by one: two .json and one .jsonl do not outnumber
        // two .parquet.
        assert_eq!(
            pick_builder(&p(&[
                "a.json",
                "b.json",
                "c.jsonl",
                "d.parquet",
                "e.parquet"
            ])),
            Some("parquet")
        );
        assert_eq!(pick_builder(&p(&["a.csv", "b.csv", "c.json"])), Some("csv"));
        assert_eq!(pick_builder(&p(&["README.md", "x.py"])), None);
        assert_eq!(
            read_with_one_builder(p(&["a.json", "b.json", "c.parquet", "n.md"]), "x").unwrap(),
            p(&["a.json", "b.json"])
        );
        let e = read_with_one_builder(p(&["a.csv"]), "x").unwrap_err();
        assert!(e.to_string().contains("csv builder"), "{e}");
        let e = read_with_one_builder(p(&["a.jsonl.gz", "b.jsonl"]), "x").unwrap_err();
        assert!(e.to_string().contains("compressed"), "{e}");
    }
}
