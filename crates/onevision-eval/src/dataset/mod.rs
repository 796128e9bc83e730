//! Hugging Face datasets read offline from their parquet or JSON files.
//!
//! - [`locate`]: the repo's folder, `--data DIR/<org>/<name>/` or the hub cache's snapshot;
//! - [`layout::split_layout`]: the files of one split (the card's `configs:`, else the Hub's
//!   layouts), parquet or JSON as `datasets` picks its builder;
//! - [`Dataset`]: the split's shards. Parquet shards are opened by their footers only:
//!   [`Dataset::len`] and the column check ([`Dataset::require_columns`]) read no data;
//!   [`Dataset::read`] streams [`Row`](crate::doc::Row)s in record batches of [`BATCH_ROWS`]
//!   rows, only the columns asked for, only the row groups that hold the documents asked for.
//!   JSON and JSON Lines files (small) are parsed once, when opened, and kept in memory:
//!   [`json`] says how their values become the same rows `datasets`' json builder gives;
//! - [`Selection`]: which documents, by doc_id. A doc_id is the row's index in the split,
//!   shards concatenated in path order (lmms-eval's `doc_id`, `enumerate(dataset[split])`);
//!   the run loop asks for `--offset`/`--limit` ([`Dataset::window`]) minus what the samples
//!   file already has ([`Selection::without`]).
//!
//! How cells become JSON and images: [`convert`].
//!
//! ```no_run
//! # fn main() -> onevision_eval::Result<()> {
//! use onevision_eval::dataset::{default_hf_cache, Dataset};
//! let ds = Dataset::from_repo("lmms-lab/ai2d", None, "test", None, &default_hf_cache())?;
//! ds.require_columns(&["question", "options", "answer", "image"])?;
//! let done = std::collections::HashSet::from([0usize, 1]);
//! let todo = ds.window(0, Some(100)).without(|id| done.contains(&id));
//! for item in ds.read_columns(&todo, &["question", "options", "answer", "image"])?.with_doc_ids() {
//!     let (doc_id, row) = item?;
//!     println!("{doc_id}: {} images", row.images["image"].len());
//! }
//! # Ok(()) }
//! ```

pub mod convert;
pub mod json;
pub mod layout;
pub mod locate;
mod rows;

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::task::DatasetSpec;

pub use json::JsonOptions;
pub use layout::{split_files, split_layout, SplitLayout};
pub use locate::{cache_folder, default_hf_cache, hf_cache_from, locate};
pub use rows::{Rows, Selection, WithDocIds};

/// Rows per record batch read: small, because a row of an image dataset can be megabytes.
pub const BATCH_ROWS: usize = 32;

/// One split of a dataset: its shards in order (parquet files opened by their footers, or
/// JSON files parsed).
#[derive(Debug)]
pub struct Dataset {
    dir: Option<PathBuf>,
    shards: Vec<Shard>,
    batch_size: usize,
}

/// One data file and where its rows start in the split.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) path: PathBuf,
    pub(crate) start: usize,
    pub(crate) rows: usize,
    pub(crate) data: ShardData,
}

#[derive(Debug)]
pub(crate) enum ShardData {
    Parquet {
        /// The footer: row groups, schema.
        meta: ArrowReaderMetadata,
        /// `datasets`' features from the file's `huggingface` metadata (column -> feature).
        features: Map<String, Value>,
    },
    /// A JSON file's rows, each with every column of the split ([`json`]).
    Json {
        columns: Vec<String>,
        rows: Vec<Map<String, Value>>,
    },
}

impl Shard {
    fn open(path: PathBuf, start: usize) -> Result<Self> {
        let file = File::open(&path).map_err(|e| Error::io(path.display(), e))?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
            Error::Dataset {
                what: path.display().to_string(),
                reason: format!(
                "not a readable parquet file ({e}); it may be truncated or not fully downloaded: \
                 delete it and download the dataset again"
            ),
            }
        })?;
        check_chunks(&meta, file.metadata().map(|m| m.len()).ok()).map_err(|reason| {
            Error::Dataset {
                what: path.display().to_string(),
                reason: format!(
                    "{reason}; the file is corrupt: delete it and download the dataset again"
                ),
            }
        })?;
        let rows = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as usize)
            .sum();
        let features = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "huggingface"))
            .and_then(|k| k.value.as_deref())
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .and_then(|v| v.get("info")?.get("features")?.as_object().cloned())
            .unwrap_or_default();
        Ok(Shard {
            path,
            start,
            rows,
            data: ShardData::Parquet { meta, features },
        })
    }

    pub(crate) fn columns(&self) -> Vec<String> {
        match &self.data {
            ShardData::Parquet { meta, .. } => meta
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            ShardData::Json { columns, .. } => columns.clone(),
        }
    }

    fn missing(&self, needed: &[String]) -> Option<Error> {
        let found = self.columns();
        let missing: Vec<String> = needed
            .iter()
            .filter(|c| !found.contains(c))
            .cloned()
            .collect();
        (!missing.is_empty()).then(|| Error::MissingColumns {
            path: self.path.display().to_string(),
            missing,
            needed: needed.to_vec(),
            found,
        })
    }
}

/// The footer's column chunks lie inside the file and its row counts are not negative
/// (parquet's reader asserts the offsets: a corrupt footer would otherwise be a panic).
fn check_chunks(
    meta: &ArrowReaderMetadata,
    file_len: Option<u64>,
) -> std::result::Result<(), String> {
    for (g, group) in meta.metadata().row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(format!("row group {g} has {} rows", group.num_rows()));
        }
        for (c, col) in group.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset());
            let len = col.compressed_size();
            let outside = match (start.checked_add(len), file_len) {
                (Some(end), Some(n)) => end < 0 || end as u64 > n,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if start < 0 || len < 0 || outside {
                return Err(format!(
                    "row group {g}, column {c}: the footer puts its data at bytes {start}..{} of a {}-byte file",
                    start.saturating_add(len),
                    file_len.map_or_else(|| "?".to_string(), |n| n.to_string())
                ));
            }
        }
    }
    Ok(())
}

impl Dataset {
    /// A task's split: [`locate`]s the repo, finds the split's shards, opens their footers and
    /// checks the columns the task reads ([`Dataset::require_columns`]).
    pub fn for_task(spec: &DatasetSpec, data_dir: Option<&Path>, hf_cache: &Path) -> Result<Self> {
        let ds = Self::from_repo(
            &spec.repo,
            spec.config.as_deref(),
            &spec.split,
            data_dir,
            hf_cache,
        )?;
        ds.require_columns(&spec.columns)?;
        Ok(ds)
    }

    /// [`locate`] + [`Dataset::open`].
    pub fn from_repo(
        repo: &str,
        config: Option<&str>,
        split: &str,
        data_dir: Option<&Path>,
        hf_cache: &Path,
    ) -> Result<Self> {
        Self::open(&locate(repo, data_dir, hf_cache)?, config, split)
    }

    /// The split `split` of `config` in the repo folder `dir` ([`split_layout`]).
    pub fn open(dir: &Path, config: Option<&str>, split: &str) -> Result<Self> {
        let layout = split_layout(dir, config, split)?;
        let mut ds = Self::from_files_with(layout.files, &layout.json)?;
        ds.dir = Some(dir.to_path_buf());
        Ok(ds)
    }

    /// These files, in this order, as one split: all parquet, or all JSON (`.json` and
    /// `.jsonl`, read as [`json`] says).
    pub fn from_files(files: impl IntoIterator<Item = PathBuf>) -> Result<Self> {
        Self::from_files_with(files, &JsonOptions::default())
    }

    /// [`Dataset::from_files`] with the json builder's options the dataset card gives.
    pub fn from_files_with(
        files: impl IntoIterator<Item = PathBuf>,
        json_options: &JsonOptions,
    ) -> Result<Self> {
        let files: Vec<PathBuf> = files.into_iter().collect();
        let Some(first) = files.first() else {
            return Err(Error::Dataset {
                what: "dataset".into(),
                reason: "no parquet or JSON files given".into(),
            });
        };
        let is_json = json::is_json_name(first);
        if let Some(other) = files.iter().find(|p| json::is_json_name(p) != is_json) {
            return Err(Error::Dataset {
                what: other.display().to_string(),
                reason: format!(
                    "a split's files are all parquet or all JSON (`datasets` reads a split with                      one builder); {} is not like {}",
                    other.display(),
                    first.display()
                ),
            });
        }
        let shards = if is_json {
            Self::json_shards(files, json_options)?
        } else {
            let mut shards = vec![];
            let mut start = 0;
            for path in files {
                let shard = Shard::open(path, start)?;
                start += shard.rows;
                shards.push(shard);
            }
            shards
        };
        Ok(Dataset {
            dir: None,
            shards,
            batch_size: BATCH_ROWS,
        })
    }

    /// Parses every file once; one type per column over the split.
    fn json_shards(files: Vec<PathBuf>, options: &JsonOptions) -> Result<Vec<Shard>> {
        let parsed = files
            .iter()
            .map(|p| json::JsonFile::open(p, options))
            .collect::<Result<Vec<_>>>()?;
        let (columns, per_file) = json::split_rows(&parsed)?;
        let mut start = 0;
        Ok(files
            .into_iter()
            .zip(per_file)
            .map(|(path, rows)| {
                let shard = Shard {
                    path,
                    start,
                    rows: rows.len(),
                    data: ShardData::Json {
                        columns: columns.clone(),
                        rows,
                    },
                };
                start += shard.rows;
                shard
            })
            .collect())
    }

    /// Rows per record batch (default [`BATCH_ROWS`]).
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// The repo folder, when opened from one (a task's `Context::dataset_dir`).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The shards, in doc_id order.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Rows in the split, from the parquet footers (no data read) or the JSON files parsed
    /// when opened.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first shard's columns, in file order.
    pub fn columns(&self) -> Vec<String> {
        self.shards.first().map(Shard::columns).unwrap_or_default()
    }

    /// The first shard's image columns (they go into `Row::images`, not `Row::fields`); JSON
    /// files have none (they name media by path).
    pub fn image_columns(&self) -> Vec<String> {
        let Some(ShardData::Parquet { meta, features }) = self.shards.first().map(|s| &s.data)
        else {
            return vec![];
        };
        meta.schema()
            .fields()
            .iter()
            .filter(|f| convert::classify(f, features.get(f.name())) != convert::ColumnKind::Field)
            .map(|f| f.name().clone())
            .collect()
    }

    /// [`Error::MissingColumns`] for the first shard that lacks one of `needed` (naming the
    /// file, the missing columns, what is needed and what the file has). Every shard is
    /// checked, from the footers (or the parsed JSON) only.
    pub fn require_columns<S: AsRef<str>>(&self, needed: &[S]) -> Result<()> {
        let needed: Vec<String> = needed.iter().map(|s| s.as_ref().to_string()).collect();
        match self.shards.iter().find_map(|s| s.missing(&needed)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Documents `offset..offset+limit` (all from `offset` when `limit` is None), clamped to
    /// the split: `--offset`/`--limit`.
    pub fn window(&self, offset: usize, limit: Option<usize>) -> Selection {
        Selection::window(self.len(), offset, limit)
    }

    /// Rows `range` (doc_ids), every column; [`Rows::with_doc_ids`] pairs them with their ids.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Result<Rows<'_>> {
        self.read(&Selection::range(range))
    }

    /// The selected documents, every column, in doc_id order.
    pub fn read(&self, selection: &Selection) -> Result<Rows<'_>> {
        Rows::new(self, selection, None)
    }

    /// The selected documents with only `columns` read (the others are not decoded); a shard
    /// that lacks one is [`Error::MissingColumns`].
    pub fn read_columns<S: AsRef<str>>(
        &self,
        selection: &Selection,
        columns: &[S],
    ) -> Result<Rows<'_>> {
        let columns: Vec<String> = columns.iter().map(|s| s.as_ref().to_string()).collect();
        Rows::new(self, selection, Some(columns))
    }

    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub(crate) fn batch_size(&self) -> usize {
        self.batch_size
    }
}
