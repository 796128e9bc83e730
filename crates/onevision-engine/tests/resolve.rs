//! Model resolution against a fake Hugging Face cache laid out as `huggingface_hub` writes it:
//! directories as given, repo ids through refs and snapshots, revisions by branch and by commit,
//! the cache location's environment precedence, and errors that say what was looked for where.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use onevision_engine::resolve::{resolve_model, resolve_with, HubEnv, ResolveError};

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// A fresh directory under cargo's per-target scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("resolve")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A cache holding `llava-hf/tiny-ov` with `main` -> MAIN, a `v1` tag -> OLD, and a snapshot
/// for each.
fn fake_cache(name: &str) -> PathBuf {
    let cache = scratch(name);
    let repo = cache.join("models--llava-hf--tiny-ov");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), MAIN).unwrap();
    // huggingface_hub writes refs without a newline; tolerate one anyway.
    std::fs::write(repo.join("refs/v1"), format!("{OLD}\n")).unwrap();
    for commit in [MAIN, OLD] {
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(
            snap.join("config.json"),
            format!("{{\"commit\": \"{commit}\"}}"),
        )
        .unwrap();
        std::fs::write(snap.join("model.safetensors"), b"").unwrap();
    }
    cache
}

/// Settings that find `cache`. Built with `hub-download`, the tests stay offline: a lookup that
/// misses must not reach for the network.
fn env_with_cache(cache: &Path) -> HubEnv {
    HubEnv {
        cache_dir: Some(cache.to_path_buf()),
        offline: cfg!(feature = "hub-download"),
        ..HubEnv::default()
    }
}

fn vars(pairs: &[(&str, &str)]) -> HubEnv {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HubEnv::from_vars(|k| map.get(k).cloned())
}

#[test]
fn repo_id_resolves_through_refs_main() {
    let cache = fake_cache("refs_main");
    let m = resolve_with("llava-hf/tiny-ov", None, &env_with_cache(&cache)).unwrap();
    assert_eq!(m.served_name, "llava-hf/tiny-ov");
    assert_eq!(
        m.dir,
        cache.join("models--llava-hf--tiny-ov/snapshots").join(MAIN)
    );
    assert!(m.dir.join("config.json").is_file());
}

#[test]
fn revision_by_branch_or_tag_and_by_commit() {
    let cache = fake_cache("revisions");
    let env = env_with_cache(&cache);
    let snaps = cache.join("models--llava-hf--tiny-ov/snapshots");
    let by_tag = resolve_with("llava-hf/tiny-ov", Some("v1"), &env).unwrap();
    assert_eq!(by_tag.dir, snaps.join(OLD));
    let by_main = resolve_with("llava-hf/tiny-ov", Some("main"), &env).unwrap();
    assert_eq!(by_main.dir, snaps.join(MAIN));
    // A commit hash with no ref names its snapshot directly.
    let by_commit = resolve_with("llava-hf/tiny-ov", Some(OLD), &env).unwrap();
    assert_eq!(by_commit.dir, snaps.join(OLD));
    assert_eq!(by_commit.served_name, "llava-hf/tiny-ov");

    let e = resolve_with("llava-hf/tiny-ov", Some("v2"), &env).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ResolveError::NotCached { .. }), "{e:?}");
    assert!(msg.contains("refs/v2"), "{msg}");
    assert!(msg.contains("--revision v2"), "{msg}");

    let missing_commit = "1111111111111111111111111111111111111111";
    let e = resolve_with("llava-hf/tiny-ov", Some(missing_commit), &env).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("snapshots/{missing_commit}")),
        "{e}"
    );

    for bad in ["", "../../etc", "/abs", "a//b", "refs/./x"] {
        let e = resolve_with("llava-hf/tiny-ov", Some(bad), &env).unwrap_err();
        assert!(
            matches!(e, ResolveError::InvalidRevision { .. }),
            "{bad:?}: {e:?}"
        );
    }
}

#[test]
fn missing_repo_says_where_it_looked_and_how_to_get_it() {
    let cache = fake_cache("missing");
    let e = resolve_with("llava-hf/not-here", None, &env_with_cache(&cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ResolveError::NotCached { .. }), "{e:?}");
    assert!(msg.contains("llava-hf/not-here"), "{msg}");
    assert!(
        msg.contains(
            &cache
                .join("models--llava-hf--not-here")
                .display()
                .to_string()
        ),
        "{msg}"
    );
    assert!(
        msg.contains("huggingface-cli download llava-hf/not-here"),
        "{msg}"
    );
    if !cfg!(feature = "hub-download") {
        assert!(msg.contains("--features hub-download"), "{msg}");
    }

    // Offline: never downloads (even with the feature), and says why.
    let offline = HubEnv {
        offline: true,
        ..env_with_cache(&cache)
    };
    let e = resolve_with("llava-hf/not-here", None, &offline).unwrap_err();
    assert!(e.to_string().contains("HF_HUB_OFFLINE"), "{e}");

    let none = HubEnv {
        cache_dir: None,
        ..HubEnv::default()
    };
    let e = resolve_with("llava-hf/tiny-ov", None, &none).unwrap_err();
    assert!(matches!(e, ResolveError::NoCacheDir { .. }), "{e:?}");
    assert!(e.to_string().contains("HF_HUB_CACHE"), "{e}");
}

#[test]
fn damaged_or_partial_snapshots_are_not_cached() {
    let cache = fake_cache("damaged");
    let repo = cache.join("models--llava-hf--tiny-ov");
    let offline = HubEnv {
        offline: true,
        ..env_with_cache(&cache)
    };
    std::fs::remove_file(repo.join("snapshots").join(MAIN).join("config.json")).unwrap();
    let e = resolve_with("llava-hf/tiny-ov", None, &offline).unwrap_err();
    assert!(e.to_string().contains("no config.json"), "{e}");
    std::fs::write(repo.join("refs/main"), "not a hash").unwrap();
    let e = resolve_with("llava-hf/tiny-ov", None, &offline).unwrap_err();
    assert!(e.to_string().contains("not a commit hash"), "{e}");
}

#[test]
fn directories_are_used_as_given() {
    let dir = scratch("plain_dir").join("my-checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.display().to_string();
    let m = resolve_with(&spec, None, &HubEnv::default()).unwrap();
    assert_eq!(m.dir, dir);
    assert_eq!(m.served_name, "my-checkpoint");

    // A directory wins over a repo id of the same spelling, and takes no revision.
    let e = resolve_with(&spec, Some("main"), &HubEnv::default()).unwrap_err();
    assert!(
        matches!(e, ResolveError::RevisionForDirectory { .. }),
        "{e:?}"
    );

    // A snapshot directory passed as a path is served under its repo id.
    let cache = fake_cache("snapshot_path");
    let snap = cache.join("models--llava-hf--tiny-ov/snapshots").join(MAIN);
    let m = resolve_with(&snap.display().to_string(), None, &HubEnv::default()).unwrap();
    assert_eq!(m.served_name, "llava-hf/tiny-ov");

    let file = snap.join("config.json");
    let e = resolve_with(&file.display().to_string(), None, &HubEnv::default()).unwrap_err();
    assert!(matches!(e, ResolveError::NotADirectory { .. }), "{e:?}");
}

#[test]
fn invalid_specs_are_rejected_with_the_reason() {
    let env = env_with_cache(&fake_cache("invalid"));
    for (spec, why) in [
        ("tiny-ov", "org/name"),
        ("a/b/c", "exactly one '/'"),
        ("/no/such/dir", "exactly one '/'"),
        ("org/na me", "' '"),
        ("org/-name", "start or end"),
        ("org/na--me", "'--'"),
        ("/name", "1 to 96"),
    ] {
        let e = resolve_with(spec, None, &env).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ResolveError::InvalidSpec { .. }),
            "{spec:?}: {e:?}"
        );
        assert!(msg.contains(why), "{spec:?}: expected {why:?} in {msg}");
    }
}

#[test]
fn cache_location_precedence() {
    let home = [("HOME", "/home/u")];
    assert_eq!(
        vars(&home).cache_dir,
        Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
    );
    assert_eq!(
        vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]).cache_dir,
        Some(PathBuf::from("/xdg/huggingface/hub"))
    );
    assert_eq!(
        vars(&[
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HF_HOME", "/hf")
        ])
        .cache_dir,
        Some(PathBuf::from("/hf/hub"))
    );
    assert_eq!(
        vars(&[("HOME", "/home/u"), ("HF_HOME", "~/hf")]).cache_dir,
        Some(PathBuf::from("/home/u/hf/hub"))
    );
    assert_eq!(
        vars(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]).cache_dir,
        Some(PathBuf::from("/legacy"))
    );
    assert_eq!(
        vars(&[
            ("HF_HOME", "/hf"),
            ("HUGGINGFACE_HUB_CACHE", "/legacy"),
            ("HF_HUB_CACHE", "/cache")
        ])
        .cache_dir,
        Some(PathBuf::from("/cache"))
    );
    // Empty values count as unset.
    assert_eq!(
        vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "")]).cache_dir,
        Some(PathBuf::from("/hf/hub"))
    );
    assert_eq!(vars(&[]).cache_dir, None);

    for (v, offline) in [("1", true), ("true", true), ("ON", true), ("yes", true)]
        .into_iter()
        .chain([("0", false), ("false", false), ("", false)])
    {
        assert_eq!(vars(&[("HF_HUB_OFFLINE", v)]).offline, offline, "{v:?}");
    }
}

/// The process environment is global: tests that set it take this lock.
static ENV_LOCK: Mutex<()> = Mutex::new(());

#[test]
fn resolve_model_reads_the_process_environment() {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = fake_cache("process_env");
    let hf_home = scratch("process_env_home");
    std::fs::rename(&cache, hf_home.join("hub")).unwrap();
    let saved: Vec<(&str, Option<String>)> = [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "HF_HUB_OFFLINE",
    ]
    .into_iter()
    .map(|k| (k, std::env::var(k).ok()))
    .collect();
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HUGGINGFACE_HUB_CACHE");
    std::env::set_var("HF_HOME", &hf_home);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let via_home = resolve_model("llava-hf/tiny-ov", None);
    // HF_HUB_CACHE wins over HF_HOME: an empty cache there finds nothing.
    let empty = scratch("process_env_empty");
    std::env::set_var("HF_HUB_CACHE", &empty);
    let via_cache = resolve_model("llava-hf/tiny-ov", None);
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
    assert_eq!(
        via_home.unwrap().dir,
        hf_home
            .join("hub/models--llava-hf--tiny-ov/snapshots")
            .join(MAIN)
    );
    let e = via_cache.unwrap_err();
    assert!(e.to_string().contains(&empty.display().to_string()), "{e}");
}
