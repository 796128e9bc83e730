//! Finding a checkpoint from what a user typed: a directory is used as it is; a Hugging Face repo
//! id (`org/name`) is looked up in the local Hub cache, in the layout `huggingface_hub` writes
//! (`file_download.py`, `constants.py`):
//!
//! ```text
//! {cache}/models--{org}--{name}/refs/{revision}        a file holding a commit hash
//! {cache}/models--{org}--{name}/snapshots/{commit}/    the checkpoint's files
//! ```
//!
//! `{cache}` is `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as `huggingface_hub`
//! picks it. A repo missing from the cache is downloaded only when the crate is built with the
//! `hub-download` feature and `HF_HUB_OFFLINE` is not set; otherwise the error says how to get it.

use std::path::{Path, PathBuf};

/// The revision used when none is given, as on the Hub.
pub const DEFAULT_REVISION: &str = "main";

/// A checkpoint directory and the name to report it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub dir: PathBuf,
    /// The repo id (`org/name`) for Hub models and for directories inside a Hub cache snapshot,
    /// else the directory's own name.
    pub served_name: String,
}

/// Why a model could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{} is a file, not a checkpoint directory; pass the directory holding config.json and \
         the *.safetensors files, or a Hugging Face repo id (org/name)",
        path.display()
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "{spec:?} is neither an existing directory nor a Hugging Face repo id ({reason}); pass a \
         checkpoint directory or a repo id such as llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
    )]
    InvalidSpec { spec: String, reason: String },
    #[error(
        "--revision {revision:?} applies to Hugging Face repo ids; {} is a directory, used as it is",
        dir.display()
    )]
    RevisionForDirectory { dir: PathBuf, revision: String },
    #[error("invalid revision {revision:?}: {reason}")]
    InvalidRevision { revision: String, reason: String },
    #[error(
        "cannot look up {repo} in the Hugging Face cache: none of HF_HUB_CACHE, HF_HOME or HOME \
         is set; set HF_HUB_CACHE to the cache directory, or pass a checkpoint directory"
    )]
    NoCacheDir { repo: String },
    #[error("{repo} (revision {revision}) is not in the Hugging Face cache: {missing}; {hint}")]
    NotCached {
        repo: String,
        revision: String,
        /// What was looked for, and where.
        missing: String,
        /// How to get it.
        hint: String,
    },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[cfg(feature = "hub-download")]
    #[error("downloading {repo} (revision {revision}) from the Hugging Face Hub: {reason}")]
    Download {
        repo: String,
        revision: String,
        reason: String,
    },
}

/// The Hugging Face settings of the environment that resolution depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubEnv {
    /// The hub cache directory; `None` when no variable names it and there is no home directory.
    pub cache_dir: Option<PathBuf>,
    /// `HF_HOME` (where `huggingface-cli login` keeps its token).
    pub hf_home: Option<PathBuf>,
    /// `HF_HUB_OFFLINE` is set to a true value: never touch the network.
    pub offline: bool,
    /// `HF_ENDPOINT`, a mirror of the Hub.
    pub endpoint: Option<String>,
    /// `HF_TOKEN`.
    pub token: Option<String>,
}

impl HubEnv {
    /// The settings of this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The settings given variables looked up by `var` (empty values count as unset, as in
    /// `huggingface_hub`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from);
        let expand = |v: String| -> PathBuf {
            // `os.path.expanduser`, for values written as "~/...".
            match (v.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => h.join(rest),
                _ => PathBuf::from(v),
            }
        };
        let hf_home = var("HF_HOME").map(expand).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(expand)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .map(|c| c.join("huggingface"))
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")));
        // `huggingface_hub.utils._is_true`.
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_uppercase().as_str(),
                "1" | "ON" | "YES" | "TRUE"
            )
        });
        Self {
            cache_dir,
            hf_home,
            offline,
            endpoint: var("HF_ENDPOINT"),
            token: var("HF_TOKEN"),
        }
    }
}

/// Resolves `spec` (a directory, or a Hub repo id `org/name` at `revision`, default `main`)
/// with the Hugging Face settings of this process's environment.
pub fn resolve_model(spec: &str, revision: Option<&str>) -> Result<ResolvedModel, ResolveError> {
    resolve_with(spec, revision, &HubEnv::from_env())
}

/// [`resolve_model`] with explicit Hugging Face settings.
pub fn resolve_with(
    spec: &str,
    revision: Option<&str>,
    env: &HubEnv,
) -> Result<ResolvedModel, ResolveError> {
    let path = Path::new(spec);
    if path.exists() {
        if !path.is_dir() {
            return Err(ResolveError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        if let Some(r) = revision {
            return Err(ResolveError::RevisionForDirectory {
                dir: path.to_path_buf(),
                revision: r.to_string(),
            });
        }
        return Ok(ResolvedModel {
            dir: path.to_path_buf(),
            served_name: directory_name(path),
        });
    }
    let repo = RepoId::parse(spec).map_err(|reason| ResolveError::InvalidSpec {
        spec: spec.to_string(),
        reason,
    })?;
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    check_revision(revision)?;
    let cache = env.cache_dir.as_deref().ok_or(ResolveError::NoCacheDir {
        repo: repo.to_string(),
    })?;
    match snapshot_in(cache, &repo, revision) {
        Ok(dir) => Ok(ResolvedModel {
            dir,
            served_name: repo.to_string(),
        }),
        Err(Lookup::Io(e)) => Err(e),
        Err(Lookup::Missing(missing)) => {
            #[cfg(feature = "hub-download")]
            if !env.offline {
                download::checkpoint(env, cache, &repo, revision)?;
                return match snapshot_in(cache, &repo, revision) {
                    Ok(dir) => Ok(ResolvedModel {
                        dir,
                        served_name: repo.to_string(),
                    }),
                    Err(Lookup::Io(e)) => Err(e),
                    Err(Lookup::Missing(missing)) => Err(ResolveError::Download {
                        repo: repo.to_string(),
                        revision: revision.to_string(),
                        reason: format!("the download finished but {missing}"),
                    }),
                };
            }
            Err(ResolveError::NotCached {
                repo: repo.to_string(),
                revision: revision.to_string(),
                missing,
                hint: how_to_get(&repo, revision, env.offline, spec),
            })
        }
    }
}

/// A Hub model repo id, `org/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoId {
    org: String,
    name: String,
}

impl RepoId {
    /// `huggingface_hub.utils.validate_repo_id`, restricted to namespaced ids: letters, digits,
    /// `-`, `_`, `.`; at most 96 characters a part; no `--` or `..`; no leading or trailing
    /// `-` or `.`.
    fn parse(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split('/').collect();
        let [org, name] = parts[..] else {
            return Err(if parts.len() == 1 {
                "no such directory, and a repo id needs the form org/name".to_string()
            } else {
                "no such directory, and a repo id has exactly one '/'".to_string()
            });
        };
        for part in [org, name] {
            if part.is_empty() || part.len() > 96 {
                return Err(format!(
                    "repo id parts must be 1 to 96 characters, got {part:?}"
                ));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                return Err(format!(
                    "{c:?} cannot appear in a repo id (letters, digits, '-', '_', '.')"
                ));
            }
            if part.contains("--") || part.contains("..") {
                return Err("'--' and '..' cannot appear in a repo id".to_string());
            }
            if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
                return Err(format!(
                    "a repo id part cannot start or end with '-' or '.', got {part:?}"
                ));
            }
        }
        Ok(Self {
            org: org.to_string(),
            name: name.to_string(),
        })
    }

    /// The repo's folder in the cache (`huggingface_hub.constants.REPO_ID_SEPARATOR`).
    fn folder(&self) -> String {
        format!("models--{}--{}", self.org, self.name)
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.org, self.name)
    }
}

/// Branch and tag names may hold '/' (`refs/pr/1`), but must stay inside `refs/`.
fn check_revision(revision: &str) -> Result<(), ResolveError> {
    let bad = |reason: &str| ResolveError::InvalidRevision {
        revision: revision.to_string(),
        reason: reason.to_string(),
    };
    if revision.is_empty() {
        return Err(bad("empty"));
    }
    if revision.starts_with('/') || revision.contains('\\') {
        return Err(bad("a branch, tag or commit hash is not a path"));
    }
    if revision
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("empty, '.' and '..' components are not allowed"));
    }
    Ok(())
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

enum Lookup {
    /// Not in the cache: what was looked for where.
    Missing(String),
    Io(ResolveError),
}

/// The snapshot directory of `repo` at `revision`: `refs/{revision}` names the commit (a
/// revision that is itself a commit hash may have no ref and names its snapshot directly, as
/// `huggingface_hub.try_to_load_from_cache` allows).
fn snapshot_in(cache: &Path, repo: &RepoId, revision: &str) -> Result<PathBuf, Lookup> {
    let repo_dir = cache.join(repo.folder());
    if !repo_dir.is_dir() {
        return Err(Lookup::Missing(format!(
            "{} does not exist",
            repo_dir.display()
        )));
    }
    let ref_file = repo_dir.join("refs").join(revision);
    let commit = if ref_file.is_file() {
        let text = std::fs::read_to_string(&ref_file).map_err(|source| {
            Lookup::Io(ResolveError::Io {
                path: ref_file.clone(),
                source,
            })
        })?;
        let commit = text.trim().to_string();
        if !is_commit_hash(&commit) {
            return Err(Lookup::Missing(format!(
                "{} holds {commit:?}, not a commit hash (a damaged cache?)",
                ref_file.display()
            )));
        }
        commit
    } else if is_commit_hash(revision) {
        revision.to_string()
    } else {
        return Err(Lookup::Missing(format!(
            "{} does not exist (no such branch or tag downloaded)",
            ref_file.display()
        )));
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(Lookup::Missing(format!(
            "{} does not exist",
            snapshot.display()
        )));
    }
    // A snapshot without config.json is an interrupted or partial download (e.g. only the
    // tokenizer was fetched); loading would fail later with a less helpful message.
    if !snapshot.join("config.json").is_file() {
        return Err(Lookup::Missing(format!(
            "{} has no config.json (a partial download?)",
            snapshot.display()
        )));
    }
    Ok(snapshot)
}

fn how_to_get(repo: &RepoId, revision: &str, offline: bool, spec: &str) -> String {
    let rev = if revision == DEFAULT_REVISION {
        String::new()
    } else {
        format!(" --revision {revision}")
    };
    let cli = format!("`huggingface-cli download {repo}{rev}` (or `hf download {repo}{rev}`)");
    let dir_note = format!("there is no directory {spec:?} either");
    if offline {
        return format!(
            "HF_HUB_OFFLINE is set, so nothing is downloaded; fetch it while online with {cli}, \
             or pass a checkpoint directory ({dir_note})"
        );
    }
    let feature = if cfg!(feature = "hub-download") {
        ""
    } else {
        ", build onevision with `--features hub-download` to download missing models \
         automatically,"
    };
    format!("fetch it with {cli}{feature} or pass a checkpoint directory ({dir_note})")
}

/// The name to serve a directory under: the repo id for a Hub cache snapshot
/// (`.../models--org--name/snapshots/<commit>`), else the directory's name.
fn directory_name(dir: &Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut parts = abs
        .components()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy());
    let last = parts.next().map(|s| s.into_owned()).unwrap_or_default();
    let parent = parts.next();
    let repo_folder = parts.next();
    if let (Some(p), Some(folder)) = (parent, repo_folder) {
        if p == "snapshots" {
            if let Some((org, name)) = folder
                .strip_prefix("models--")
                .and_then(|rest| rest.split_once("--"))
            {
                return format!("{org}/{name}");
            }
        }
    }
    if last.is_empty() {
        dir.display().to_string()
    } else {
        last
    }
}

#[cfg(feature = "hub-download")]
mod download {
    //! Fetching a checkpoint from the Hub into the cache, in `huggingface_hub`'s layout (blobs,
    //! snapshot symlinks, refs), through the `hf-hub` crate's blocking client.

    use std::collections::BTreeSet;
    use std::io::IsTerminal;
    use std::path::Path;

    use hf_hub::api::sync::{ApiBuilder, ApiRepo};
    use hf_hub::{Cache, Repo, RepoType};

    use super::{HubEnv, RepoId, ResolveError};

    /// Everything but the weights that a checkpoint directory may need (config, generation
    /// defaults, tokenizer, chat template, processor settings in both layouts). Files a repo
    /// does not have are skipped.
    const FILES: &[&str] = &[
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "chat_template.json",
        "chat_template.jinja",
        "processor_config.json",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
    ];
    const INDEX: &str = "model.safetensors.index.json";
    const SINGLE: &str = "model.safetensors";

    pub(super) fn checkpoint(
        env: &HubEnv,
        cache: &Path,
        repo: &RepoId,
        revision: &str,
    ) -> Result<(), ResolveError> {
        let fail = |reason: String| ResolveError::Download {
            repo: repo.to_string(),
            revision: revision.to_string(),
            reason,
        };
        let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
            .with_progress(std::io::stderr().is_terminal());
        if let Some(endpoint) = &env.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        // HF_TOKEN, else the file `huggingface-cli login` writes.
        let token = env.token.clone().or_else(|| {
            let file = env.hf_home.as_ref()?.join("token");
            let t = std::fs::read_to_string(file).ok()?;
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_string())
        });
        if token.is_some() {
            builder = builder.with_token(token);
        }
        let api = builder.build().map_err(|e| fail(e.to_string()))?;
        let hub = api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let info = hub
            .info()
            .map_err(|e| fail(format!("listing files: {e}")))?;
        let names: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let get = |file: &str| {
            hub.get(file)
                .map_err(|e| fail(format!("fetching {file}: {e}")))
        };
        for file in FILES.iter().filter(|f| names.contains(*f)) {
            get(file)?;
        }
        for file in weight_files(&hub, &names, &fail)? {
            get(&file)?;
        }
        Ok(())
    }

    /// The weights `onevision_nn::WeightFiles::open_dir` would read: the shards of
    /// `model.safetensors.index.json`, else `model.safetensors`, else every top-level
    /// `*.safetensors`.
    fn weight_files(
        hub: &ApiRepo,
        names: &BTreeSet<&str>,
        fail: &dyn Fn(String) -> ResolveError,
    ) -> Result<Vec<String>, ResolveError> {
        let files: Vec<String> = if names.contains(INDEX) {
            let path = hub
                .get(INDEX)
                .map_err(|e| fail(format!("fetching {INDEX}: {e}")))?;
            let text = std::fs::read_to_string(&path).map_err(|source| ResolveError::Io {
                path: path.clone(),
                source,
            })?;
            let index: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| fail(format!("{INDEX} is not valid JSON: {e}")))?;
            let map = index
                .get("weight_map")
                .and_then(serde_json::Value::as_object)
                .ok_or_else(|| fail(format!("{INDEX} has no \"weight_map\" object")))?;
            let shards: BTreeSet<String> = map
                .values()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail(format!("{INDEX}: shard name {v} is not a string")))
                })
                .collect::<Result<_, _>>()?;
            shards.into_iter().collect()
        } else if names.contains(SINGLE) {
            vec![SINGLE.to_string()]
        } else {
            names
                .iter()
                .filter(|n| n.ends_with(".safetensors") && !n.contains('/'))
                .map(|n| n.to_string())
                .collect()
        };
        if files.is_empty() {
            return Err(fail(
                "the repo has no *.safetensors weights (only safetensors checkpoints are loaded)"
                    .to_string(),
            ));
        }
        Ok(files)
    }
}
