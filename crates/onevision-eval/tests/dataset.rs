//! The dataset layer on the edge-case parquet files of fixtures/eval/dataset/ (written by
//! tools/eval_fixtures/make_dataset_fixtures.py with pyarrow), on Hub and hub-cache layouts
//! built in temp folders, and on every task's parquet fixture under fixtures/eval/data/.

use std::path::{Path, PathBuf};

use base64::Engine;
use onevision_eval::dataset::{locate, Dataset, Selection};
use onevision_eval::Error;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval")
}

fn edge(name: &str) -> PathBuf {
    root().join("dataset/edge").join(name)
}

fn ids(ds: &Dataset, sel: &Selection) -> Vec<(usize, i64)> {
    ds.read(sel)
        .unwrap()
        .with_doc_ids()
        .map(|r| {
            let (id, row) = r.unwrap();
            (id, row.fields["idx"].as_i64().unwrap())
        })
        .collect()
}

/// JSON equality with floats compared bit for bit (so -0.0 != 0.0 and f32 widening is exact;
/// the generator writes floats as `{"$float": repr}`, parsed here with Rust's exact parser)
/// and integers as integers.
fn strict(a: &Value, b: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(repr) = b.get("$float").and_then(Value::as_str) {
        let want: f64 = repr.parse().unwrap();
        match a.as_f64() {
            Some(got) if a.is_f64() && got.to_bits() == want.to_bits() => {}
            _ => errs.push(format!("{at}: {a} vs pyarrow float {repr}")),
        }
        return;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => {
                    x.is_f64()
                        && y.is_f64()
                        && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
                }
            };
            if !same {
                errs.push(format!("{at}: {x} vs {y}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                strict(p, q, &format!("{at}[{i}]"), errs);
            }
        }
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            for (k, p) in x {
                match y.get(k) {
                    Some(q) => strict(p, q, &format!("{at}.{k}"), errs),
                    None => errs.push(format!("{at}: no `{k}` in pyarrow's row")),
                }
            }
        }
        _ if a == b => {}
        _ => errs.push(format!("{at}: {a} vs pyarrow {b}")),
    }
}

#[test]
fn every_type_converts_as_pyarrow_gives_it() {
    let ds = Dataset::open(&edge("types"), None, "test").unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(edge("types/expected.json")).unwrap())
            .unwrap();
    let expected = expected["rows"].as_array().unwrap();
    assert_eq!(ds.len(), expected.len());
    assert_eq!(ds.image_columns(), ["image", "images", "thumb", "hf_image"]);
    // Everything but `dur` (a duration, which has no JSON form).
    let cols: Vec<String> = ds.columns().into_iter().filter(|c| c != "dur").collect();
    let rows: Vec<_> = ds
        .read_columns(&Selection::all(ds.len()), &cols)
        .unwrap()
        .collect();
    let mut errs = vec![];
    for (i, (row, want)) in rows.into_iter().zip(expected).enumerate() {
        let row = row.unwrap();
        let fields = Value::Object(row.fields.clone());
        strict(&fields, &want["fields"], &format!("row {i}"), &mut errs);
        let b64 = base64::engine::general_purpose::STANDARD;
        let images: serde_json::Map<String, Value> = row
            .images
            .iter()
            .map(|(k, v)| {
                let list = v
                    .iter()
                    .map(|img| serde_json::json!({"bytes": b64.encode(&img.bytes), "path": img.path}))
                    .collect();
                (k.clone(), Value::Array(list))
            })
            .collect();
        strict(
            &Value::Object(images),
            &want["images"],
            &format!("row {i} images"),
            &mut errs,
        );
    }
    assert!(
        errs.is_empty(),
        "{} differences:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn sequences_of_strings_are_arrays_of_strings() {
    let ds = Dataset::open(&edge("types"), None, "test").unwrap();
    let row = ds
        .read_columns(&Selection::range(0..1), &["options"])
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        row.fields["options"],
        serde_json::json!(["A. cat", "B. dog"])
    );
    assert_eq!(row.fields.len(), 1, "only the projected column is read");
    assert!(row.images.is_empty());
}

#[test]
fn unsupported_types_are_refused_naming_the_column() {
    let ds = Dataset::open(&edge("types"), None, "test").unwrap();
    let err = ds
        .read_columns(&Selection::all(ds.len()), &["i8", "dur"])
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("column `dur`") && msg.contains("Duration"),
        "{msg}"
    );
    assert!(
        msg.contains("types/data/test-00000-of-00001.parquet"),
        "{msg}"
    );
}

#[test]
fn shards_concatenate_in_order_and_doc_ids_are_split_indices() {
    let dir = edge("shards");
    let ds = Dataset::open(&dir, None, "test").unwrap();
    let names: Vec<String> = ds
        .files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "test-00000-of-00003.parquet",
            "test-00001-of-00003.parquet",
            "test-00002-of-00003.parquet"
        ]
    );
    assert_eq!(ds.len(), 9);
    assert_eq!(ds.dir(), Some(dir.as_path()));
    let all = ids(&ds, &Selection::all(9));
    assert_eq!(all, (0..9).map(|i| (i, i as i64)).collect::<Vec<_>>());
    // Across row groups (2 rows each), the empty shard and the shard boundary.
    assert_eq!(
        ids(&ds, &Selection::range(3..7)),
        [(3, 3), (4, 4), (5, 5), (6, 6)]
    );
    // --offset 2 --limit 5, resuming with 2, 4 and 5 already done.
    let todo = ds.window(2, Some(5)).without(|id| [2, 4, 5].contains(&id));
    assert_eq!(ids(&ds, &todo), [(3, 3), (6, 6)]);
    assert_eq!(
        ids(&ds, &Selection::from_ids([8, 0, 4])),
        [(0, 0), (4, 4), (8, 8)]
    );
    assert!(ds.window(20, Some(5)).is_empty());
    assert_eq!(ds.window(7, None), Selection::range(7..9));
    // Any batch size gives the same rows.
    for batch in [1, 2, 3, 64] {
        let ds = Dataset::open(&dir, None, "test")
            .unwrap()
            .with_batch_size(batch);
        assert_eq!(ids(&ds, &Selection::all(9)), all, "batch {batch}");
    }
    let rows = ds.rows(0..9).unwrap();
    assert_eq!(rows.size_hint(), (0, Some(9)));
    assert_eq!(rows.count(), 9);
    let err = ds.rows(5..10).err().unwrap().to_string();
    assert!(err.contains("doc_id 9") && err.contains("9 rows"), "{err}");
    // The older `-of-NNNNN-<hash>` names.
    let val = Dataset::open(&dir, None, "validation").unwrap();
    assert_eq!(val.len(), 2);
}

#[test]
fn configs_are_folders_and_a_wrong_split_lists_what_is_there() {
    let dir = edge("configs");
    assert_eq!(Dataset::open(&dir, Some("en"), "dev").unwrap().len(), 3);
    assert_eq!(Dataset::open(&dir, Some("cn"), "dev").unwrap().len(), 2);
    let row = Dataset::open(&dir, Some("en"), "test")
        .unwrap()
        .rows(1..2)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(row.fields["question"], "en test 1");
    let msg = Dataset::open(&dir, Some("cn"), "test")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("split `test` of config `cn`"), "{msg}");
    assert!(
        msg.contains("config `cn`: dev; config `en`: dev, test"),
        "{msg}"
    );
    let msg = Dataset::open(&dir, None, "dev").unwrap_err().to_string();
    assert!(msg.contains("config `en`: dev, test"), "{msg}");
}

#[test]
fn the_dataset_card_maps_configs_to_files() {
    let dir = edge("readme");
    let ds = Dataset::open(&dir, Some("full"), "test").unwrap();
    assert_eq!(
        ids(&ds, &Selection::all(ds.len())),
        [(0, 0), (1, 1), (2, 2)]
    );
    // The card's only config is the default one.
    assert_eq!(Dataset::open(&dir, None, "test").unwrap().len(), 3);
    let msg = Dataset::open(&dir, Some("full"), "train")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("config `full` (README.md): test"), "{msg}");
}

fn put(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn hub_layouts() {
    let src = edge("configs/en/dev-00000-of-00001.parquet"); // 3 rows
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // refs/convert/parquet: <config>/<split>/NNNN.parquet.
    put(&src, &d.join("conv/cfg/test/0000.parquet"));
    put(&src, &d.join("conv/cfg/test/0001.parquet"));
    assert_eq!(
        Dataset::open(&d.join("conv"), Some("cfg"), "test")
            .unwrap()
            .len(),
        6
    );
    // ... and its default config.
    put(&src, &d.join("convdef/default/test/0000.parquet"));
    assert_eq!(
        Dataset::open(&d.join("convdef"), None, "test")
            .unwrap()
            .len(),
        3
    );
    // data/<split>/*.parquet
    put(&src, &d.join("dsplit/data/test/a.parquet"));
    assert_eq!(
        Dataset::open(&d.join("dsplit"), None, "test")
            .unwrap()
            .len(),
        3
    );
    // <split>-*.parquet at the top, not mixed with data/ when data/ has the split.
    put(&src, &d.join("top/test-00000-of-00001.parquet"));
    put(&src, &d.join("top/train-00000-of-00001.parquet"));
    let top = Dataset::open(&d.join("top"), None, "test").unwrap();
    assert_eq!(top.files().len(), 1);
    // `default` as a config name is the default config.
    assert_eq!(
        Dataset::open(&d.join("top"), Some("default"), "test")
            .unwrap()
            .len(),
        3
    );
    // An empty repo says so.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let msg = Dataset::open(&d.join("empty"), None, "test")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no parquet files at all"), "{msg}");
}

/// A hub cache as `huggingface-cli download` leaves it: refs/main, snapshots/<rev>/ with
/// symlinks into blobs/.
#[cfg(unix)]
fn hub_cache(cache: &Path, repo_folder: &str, revs: &[&str], main: Option<&str>) -> PathBuf {
    let root = cache.join(repo_folder);
    let blob = root.join("blobs/3f1c0a9e");
    put(&edge("shards/data/test-00002-of-00003.parquet"), &blob); // 5 rows
    for rev in revs {
        let snap = root.join("snapshots").join(rev).join("data");
        std::fs::create_dir_all(&snap).unwrap();
        std::os::unix::fs::symlink(
            "../../../blobs/3f1c0a9e",
            snap.join("test-00000-of-00001.parquet"),
        )
        .unwrap();
    }
    if let Some(m) = main {
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), format!("{m}\n")).unwrap();
    }
    root
}

#[cfg(unix)]
#[test]
fn the_hub_cache_is_found_and_its_symlinks_followed() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("hub");
    let root = hub_cache(
        &cache,
        "datasets--org--name",
        &["aaa111", "bbb222"],
        Some("aaa111"),
    );
    // refs/main wins over a newer snapshot.
    let newer = std::fs::File::open(root.join("snapshots/bbb222")).unwrap();
    newer
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let dir = locate("org/name", None, &cache).unwrap();
    assert_eq!(dir, root.join("snapshots/aaa111"));
    let ds = Dataset::from_repo("org/name", None, "test", None, &cache).unwrap();
    assert_eq!(ds.len(), 5);
    assert_eq!(ids(&ds, &Selection::all(5)).last(), Some(&(4, 8)));
    // Without refs/main: the most recently modified snapshot.
    std::fs::remove_file(root.join("refs/main")).unwrap();
    assert_eq!(
        locate("org/name", None, &cache).unwrap(),
        root.join("snapshots/bbb222")
    );
    // A stale refs/main falls back the same way.
    std::fs::write(root.join("refs/main"), "ccc333").unwrap();
    assert_eq!(
        locate("org/name", None, &cache).unwrap(),
        root.join("snapshots/bbb222")
    );
    // --data DIR/<org>/<name>/ comes first.
    let data = t.path().join("data");
    std::fs::create_dir_all(data.join("org/name")).unwrap();
    assert_eq!(
        locate("org/name", Some(&data), &cache).unwrap(),
        data.join("org/name")
    );
    // ... and is skipped when it lacks the repo.
    let other = t.path().join("other");
    assert_eq!(
        locate("org/name", Some(&other), &cache).unwrap(),
        root.join("snapshots/bbb222")
    );
}

#[test]
fn a_missing_dataset_names_the_repo_and_both_places() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let cache = t.path().join("hub");
    let err = locate("lmms-lab/ai2d", Some(&data), &cache).unwrap_err();
    assert!(matches!(err, Error::DatasetNotFound { .. }));
    let msg = err.to_string();
    assert!(msg.contains("lmms-lab/ai2d"), "{msg}");
    assert!(
        msg.contains(&data.join("lmms-lab/ai2d").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&cache.join("datasets--lmms-lab--ai2d").display().to_string()),
        "{msg}"
    );
    let msg = locate("lmms-lab/ai2d", None, &cache)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--data (not given)") && msg.contains("datasets--lmms-lab--ai2d"),
        "{msg}"
    );
}

#[test]
fn missing_columns_are_named_for_the_shard_that_lacks_them() {
    let ds = Dataset::open(&edge("missing"), None, "test").unwrap();
    ds.require_columns(&["question", "image"]).unwrap();
    let cols: Vec<&str> = vec!["question"];
    ds.require_columns(&cols).unwrap();
    let err = ds
        .require_columns(&["question", "answer", "image"])
        .unwrap_err();
    let path = edge("missing/data/test-00001-of-00002.parquet");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: missing columns [\"answer\"] (this task needs [\"question\", \"answer\", \"image\"]; \
             the file has [\"question\", \"image\"])",
            path.display()
        )
    );
    // Reading the column is refused the same way, before any row.
    let err = ds
        .read_columns(&Selection::all(2), &["answer"])
        .err()
        .unwrap();
    assert!(matches!(err, Error::MissingColumns { .. }), "{err}");
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let err = Dataset::open(&edge("corrupt"), None, "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corrupt/data/test-00000-of-00001.parquet"),
        "{err}"
    );
    assert!(err.contains("not a readable parquet file"), "{err}");
}

#[test]
fn len_and_columns_come_from_the_footer_and_only_asked_columns_are_read() {
    // The first column chunk is garbage; the footer is intact.
    let ds = Dataset::open(&edge("garbled"), None, "test").unwrap();
    assert_eq!(ds.len(), 20);
    assert_eq!(ds.columns(), ["question", "answer"]);
    ds.require_columns(&["question", "answer"]).unwrap();
    // The intact column reads, without touching the garbled one.
    let answers: Vec<String> = ds
        .read_columns(&Selection::all(20), &["answer"])
        .unwrap()
        .map(|r| r.unwrap().fields["answer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answers, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    // The garbled one is an error (not a panic), and the iterator stops there.
    let mut rows = ds.rows(0..20).unwrap();
    let err = rows.next().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("garbled/data/test-00000-of-00001.parquet")
            && err.contains("reading rows failed"),
        "{err}"
    );
    assert!(rows.next().is_none());
}

#[test]
fn a_page_the_parquet_reader_panics_on_is_an_error() {
    let ds = Dataset::open(&edge("badpage"), None, "test").unwrap();
    assert_eq!(ds.len(), 4);
    let results: Vec<_> = ds.rows(0..4).unwrap().collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the changed byte makes a row unreadable")
        .to_string();
    assert!(
        err.contains("badpage/data/test-00000-of-00001.parquet") && err.contains("corrupt page"),
        "{err}"
    );
    assert!(
        results.last().unwrap().is_err(),
        "the iterator ends on the error"
    );
}

#[test]
fn a_footer_with_a_negative_offset_is_an_error() {
    let err = Dataset::open(&edge("badfooter"), None, "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("badfooter/data/test-00000-of-00001.parquet") && err.contains("bytes -363.."),
        "{err}"
    );
}

#[test]
fn datasets_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Dataset>();
    send::<onevision_eval::dataset::Rows<'static>>();
}

/// Every task's parquet fixture (written by the task generators) opens and reads to the end.
#[test]
fn every_task_data_fixture_reads() {
    let dir = root().join("data");
    let mut files = vec![];
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        println!(
            "no parquet files under {} yet: nothing to read",
            dir.display()
        );
        return;
    }
    for f in &files {
        let ds = Dataset::from_files([f.clone()]).unwrap_or_else(|e| panic!("{e}"));
        let mut n = 0;
        let mut images = 0;
        for row in ds.rows(0..ds.len()).unwrap_or_else(|e| panic!("{e}")) {
            let row = row.unwrap_or_else(|e| panic!("{e}"));
            images += row.images.values().map(Vec::len).sum::<usize>();
            n += 1;
        }
        assert_eq!(n, ds.len(), "{}", f.display());
        let rel = f.strip_prefix(&dir).unwrap_or(f);
        println!("{}: {n} rows, {images} images", rel.display());
        // The layout finder finds it where the Hub puts it: <org>/<name>/(data|<config>)/<split>-...
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 4 {
            let repo_dir = dir.join(&parts[0]).join(&parts[1]);
            let config = (parts[2] != "data").then_some(parts[2].as_str());
            let split = parts[3].split('-').next().unwrap_or_default();
            let found = Dataset::open(&repo_dir, config, split).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                found.files().contains(&f.as_path()),
                "{}: not found as {config:?}/{split}",
                f.display()
            );
        }
    }
    println!("{} task data files read", files.len());
}
