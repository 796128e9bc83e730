//! Memory-mapped safetensors checkpoints (one file or shards), seen through one canonical naming.
//!
//! Checkpoints of the same model come with different tensor names (transformers 4 and 5 saves,
//! in-memory names, the original training code's names). A [`RenameTable`] maps every stored name
//! onto one canonical spelling at load, so model constructors spell each name once and never ask
//! which layout they were given. The loader records which tensors were used, so unused ones can be
//! reported.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};

use crate::{Error, Result};

/// Maps the stored tensor names of every accepted checkpoint layout onto canonical names.
#[derive(Debug, Clone, Copy)]
pub struct RenameTable {
    /// `(stored prefix, canonical prefix)` pairs, tried in order; the first prefix that matches
    /// is replaced. Names that match none are kept as they are.
    pub prefixes: &'static [(&'static str, &'static str)],
    /// Stored names ending in one of these are not weights (e.g. rotary `inv_freq` buffers) and
    /// are skipped silently.
    pub ignored_suffixes: &'static [&'static str],
    /// The accepted layouts, in words, for error messages.
    pub layouts: &'static str,
}

impl RenameTable {
    /// The canonical name of a stored tensor, or `None` for a skipped buffer.
    pub fn canonical(&self, stored: &str) -> Option<String> {
        if self.ignored_suffixes.iter().any(|s| stored.ends_with(s)) {
            return None;
        }
        for (from, to) in self.prefixes {
            if let Some(rest) = stored.strip_prefix(from) {
                return Some(format!("{to}{rest}"));
            }
        }
        Some(stored.to_string())
    }
}

/// Where the tensors of a [`WeightFiles`] live.
enum Source {
    /// Memory-mapped safetensors files.
    Mapped(MmapedSafetensors),
    /// Tensors already in memory, by stored name (a trainer's parameters: loading one hands
    /// out the tensor itself, so a model built from them shares their storage and gradients).
    Memory(HashMap<String, Tensor>),
}

/// The tensors of a checkpoint, memory-mapped (or held in memory), addressed by canonical name.
pub struct WeightFiles {
    files: Vec<PathBuf>,
    source: Source,
    /// canonical name -> stored name
    stored: HashMap<String, String>,
    used: Mutex<HashSet<String>>,
    table: RenameTable,
}

impl std::fmt::Debug for WeightFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFiles")
            .field("files", &self.files)
            .field("tensors", &self.stored.len())
            .finish()
    }
}

impl WeightFiles {
    /// Opens the weights of a checkpoint directory: the shards named by
    /// `model.safetensors.index.json` if present, else `model.safetensors`, else every
    /// `*.safetensors` file in the directory (sorted).
    pub fn open_dir(dir: &Path, table: RenameTable) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files = if index.is_file() {
            shard_files(&index)?
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            files
        };
        if files.is_empty() {
            return Err(Error::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        Self::open(&files, table)
    }

    /// Opens the given safetensors files as one checkpoint.
    pub fn open(files: &[PathBuf], table: RenameTable) -> Result<Self> {
        for f in files {
            // Open first, so a missing or unreadable file is an I/O error naming it.
            std::fs::File::open(f).map_err(|source| Error::Io {
                path: f.clone(),
                source,
            })?;
        }
        // SAFETY: the files are mapped read-only; like every mmap-based loader we rely on them
        // not being truncated while the model is alive.
        let st = unsafe { MmapedSafetensors::multi(files) }.map_err(|e| Error::BadSafetensors {
            path: files.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let names = st.tensors().into_iter().map(|(name, _)| name);
        let stored = canonical_map(names, &table)?;
        Ok(Self {
            files: files.to_vec(),
            source: Source::Mapped(st),
            stored,
            used: Mutex::new(HashSet::new()),
            table,
        })
    }

    /// A checkpoint whose tensors are already in memory, by stored name. Loading returns the
    /// tensor itself when dtype and device match (no copy, the same storage: a model built
    /// from trainable `Var`s computes with them), else a converted tensor (a tracked op, so
    /// gradients flow back to the original).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, table: RenameTable) -> Result<Self> {
        let stored = canonical_map(tensors.keys().cloned(), &table)?;
        Ok(Self {
            files: vec![],
            source: Source::Memory(tensors),
            stored,
            used: Mutex::new(HashSet::new()),
            table,
        })
    }

    /// A handle that loads tensors converted to `dtype` on `device`.
    pub fn weights(self: &Arc<Self>, dtype: DType, device: &Device) -> Weights {
        Weights {
            files: Arc::clone(self),
            prefix: String::new(),
            dtype,
            device: device.clone(),
        }
    }

    /// The safetensors files this checkpoint was read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Whether a tensor with this canonical name is stored.
    pub fn contains(&self, canonical: &str) -> bool {
        self.stored.contains_key(canonical)
    }

    /// Canonical names of all stored tensors, sorted.
    pub fn canonical_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.stored.keys().cloned().collect();
        v.sort();
        v
    }

    /// Stored tensors nobody has loaded so far, by their stored names, sorted.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().expect("weights lock poisoned");
        let unused: BTreeSet<&String> = self
            .stored
            .iter()
            .filter(|(c, _)| !used.contains(*c))
            .map(|(_, s)| s)
            .collect();
        unused.into_iter().cloned().collect()
    }

    /// Loads the tensor with this canonical name, converted to `dtype` on `device`.
    pub fn tensor(&self, canonical: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let stored = self
            .stored
            .get(canonical)
            .ok_or_else(|| Error::MissingTensor {
                name: canonical.to_string(),
                layouts: self.table.layouts.to_string(),
            })?;
        let t = match &self.source {
            Source::Mapped(st) => {
                let view = st.get(stored)?;
                match view.dtype() {
                    safetensors::Dtype::F32
                    | safetensors::Dtype::F16
                    | safetensors::Dtype::BF16 => {}
                    other => {
                        return Err(Error::UnsupportedStoredDType {
                            name: stored.clone(),
                            dtype: format!("{other:?}"),
                        })
                    }
                }
                let t = st.load(stored, device)?.to_dtype(dtype)?;
                release_pages(view.data());
                t
            }
            Source::Memory(map) => {
                let t = map.get(stored).expect("stored names come from the map");
                t.to_device(device)?.to_dtype(dtype)?
            }
        };
        self.used
            .lock()
            .expect("weights lock poisoned")
            .insert(canonical.to_string());
        Ok(t)
    }
}

/// canonical name -> stored name, refusing two stored names for one canonical tensor.
fn canonical_map(
    names: impl Iterator<Item = String>,
    table: &RenameTable,
) -> Result<HashMap<String, String>> {
    let mut stored: HashMap<String, String> = HashMap::new();
    for name in names {
        let Some(canonical) = table.canonical(&name) else {
            continue;
        };
        if let Some(first) = stored.get(&canonical) {
            return Err(Error::DuplicateTensor {
                first: first.clone(),
                second: name,
                canonical,
            });
        }
        stored.insert(canonical, name);
    }
    Ok(stored)
}

/// Tells the kernel we are done with these mapped file bytes (the tensor now owns a copy), so
/// they stop counting towards the process's memory: without this, loading kept both the mapped
/// file and the loaded weights resident (peak RSS 7.0 GB for a 3.6 GB f32 checkpoint). The
/// mapping stays valid; touching it again would fault the pages back in from the file.
fn release_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        const PAGE: usize = 4096;
        let start = bytes.as_ptr() as usize;
        // Only whole pages inside the slice: neighbours may still be needed.
        let first = start.div_ceil(PAGE) * PAGE;
        let end = (start + bytes.len()) / PAGE * PAGE;
        if end > first {
            // SAFETY: [first, end) lies inside a live read-only private file mapping; dropping
            // its pages cannot change what is read from it later.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let bad = |reason: String| Error::BadIndex {
        path: index.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut names = BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("the file of `{tensor}` is not a string")))?;
        names.insert(file.to_string());
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// A view of a checkpoint under a name prefix, loading tensors in one dtype on one device.
#[derive(Clone)]
pub struct Weights {
    files: Arc<WeightFiles>,
    prefix: String,
    dtype: DType,
    device: Device,
}

impl Weights {
    /// The same checkpoint under `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            prefix,
            ..self.clone()
        }
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Loads `name` and checks that it has `shape`.
    pub fn get(&self, shape: impl Into<Shape>, name: &str) -> Result<Tensor> {
        let path = self.path(name);
        let t = self.files.tensor(&path, self.dtype, &self.device)?;
        let shape: Shape = shape.into();
        if t.shape() != &shape {
            return Err(Error::ShapeMismatch {
                name: path,
                expected: shape.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// Loads `name` with whatever shape it is stored with.
    pub fn get_any_shape(&self, name: &str) -> Result<Tensor> {
        self.files
            .tensor(&self.path(name), self.dtype, &self.device)
    }

    /// Whether `name` is stored under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains(&self.path(name))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}
