//! Where a Hub dataset repo is on this machine, without any network.
//!
//! Two places, in order: `--data DIR` as `DIR/<org>/<name>/` (a plain copy, e.g. `git clone`
//! or `huggingface-cli download --local-dir`), then the Hugging Face hub cache that
//! `huggingface-cli download --repo-type dataset ORG/NAME` fills:
//! `HF_CACHE/datasets--<org>--<name>/snapshots/<rev>/`, `<rev>` being the commit `refs/main`
//! names, or when that is missing or stale, the most recently modified snapshot. The files in
//! a snapshot are symlinks into `../../blobs/`; reading follows them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The repo's folder: `data_dir/<org>/<name>/` if it exists, else the hub cache's snapshot.
/// [`Error::DatasetNotFound`] (naming the repo and both places) when neither has it.
pub fn locate(repo: &str, data_dir: Option<&Path>, hf_cache: &Path) -> Result<PathBuf> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.is_empty()
        || parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(Error::Dataset {
            what: format!("dataset `{repo}`"),
            reason: "not a Hub repo id (expected ORG/NAME)".into(),
        });
    }
    if let Some(d) = data_dir {
        let dir = parts.iter().fold(d.to_path_buf(), |p, c| p.join(c));
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    if let Some(snap) = hub_snapshot(hf_cache, repo) {
        return Ok(snap);
    }
    Err(Error::DatasetNotFound {
        repo: repo.to_string(),
        data_dir: data_dir.map(|d| parts.iter().fold(d.to_path_buf(), |p, c| p.join(c))),
        hf_cache: hf_cache.join(cache_folder(repo)),
    })
}

/// `datasets--<org>--<name>`, huggingface_hub's `repo_folder_name`.
pub fn cache_folder(repo: &str) -> String {
    format!("datasets--{}", repo.replace('/', "--"))
}

/// The snapshot folder of `repo` in the hub cache `hf_cache`, if there is one.
fn hub_snapshot(hf_cache: &Path, repo: &str) -> Option<PathBuf> {
    let root = hf_cache.join(cache_folder(repo));
    let snapshots = root.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(root.join("refs").join("main")) {
        let rev = rev.trim();
        if !rev.is_empty() && !rev.contains(['/', '\\']) {
            let dir = snapshots.join(rev);
            if dir.is_dir() {
                return Some(dir);
            }
        }
    }
    // No (usable) refs/main: the most recently modified snapshot; ties by name, so the pick
    // does not depend on the order read_dir lists them in.
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// The hub cache huggingface_hub uses (huggingface_hub/constants.py): `$HF_HUB_CACHE`, else
/// the legacy `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; a leading `~` expanded.
/// A variable set to the empty string counts as unset (Python would use `""`, the current
/// folder, which is never what was meant).
pub fn default_hf_cache() -> PathBuf {
    hf_cache_from(|k| std::env::var_os(k), home_dir())
}

/// [`default_hf_cache`] with the environment and the home folder given (for tests).
pub fn hf_cache_from(var: impl Fn(&str) -> Option<OsString>, home: Option<PathBuf>) -> PathBuf {
    let get = |k: &str| {
        var(k)
            .filter(|v| !v.is_empty())
            .map(|v| expand_user(PathBuf::from(v), home.as_deref()))
    };
    if let Some(p) = get("HF_HUB_CACHE").or_else(|| get("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    let hf_home = get("HF_HOME").unwrap_or_else(|| {
        let cache = get("XDG_CACHE_HOME")
            .unwrap_or_else(|| expand_user(PathBuf::from("~/.cache"), home.as_deref()));
        cache.join("huggingface")
    });
    hf_home.join("hub")
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `os.path.expanduser` for `~` and `~/...` (not `~user`).
fn expand_user(p: PathBuf, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cache(vars: &[(&str, &str)]) -> PathBuf {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        hf_cache_from(|k| m.get(k).cloned(), Some(PathBuf::from("/home/u")))
    }

    #[test]
    fn hf_cache_follows_huggingface_hub() {
        assert_eq!(cache(&[]), PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(
            cache(&[("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            cache(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "~/hf")]),
            PathBuf::from("/home/u/hf/hub")
        );
        assert_eq!(
            cache(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]),
            PathBuf::from("/legacy")
        );
        assert_eq!(
            cache(&[
                ("HF_HOME", "/hf"),
                ("HUGGINGFACE_HUB_CACHE", "/legacy"),
                ("HF_HUB_CACHE", "/c")
            ]),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
    }

    #[test]
    fn repo_ids_are_checked() {
        let e = locate("../etc", None, Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("not a Hub repo id"), "{e}");
        assert!(locate("a/b/c", None, Path::new("/nonexistent")).is_err());
        assert_eq!(cache_folder("lmms-lab/ai2d"), "datasets--lmms-lab--ai2d");
    }
}
