//! The dataset layer on JSON and JSON Lines data: the fixtures of fixtures/eval/dataset/json/
//! (written by tools/eval_fixtures/make_dataset_json_fixtures.py, each beside the rows
//! `datasets` 2.16.1's json builder gives for it, or the error it raises), layouts built in
//! temp folders, and MVBench's data fixture in the Hub's real layout (README.md `configs:` ->
//! json/<sub_task>.json).

use std::path::{Path, PathBuf};

use onevision_eval::dataset::{Dataset, JsonOptions, Selection};
use onevision_eval::tasks::multi_video;
use onevision_eval::Error;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval")
}

fn repo(name: &str) -> PathBuf {
    root().join("dataset/json").join(name)
}

fn expected(name: &str) -> Value {
    let path = repo(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// JSON equality with the generator's `{"$float": repr}` compared bit for bit (so 3.0 is not
/// 3 and -0.0 is not 0.0) and integers as integers.
fn strict(a: &Value, b: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(repr) = b.get("$float").and_then(Value::as_str) {
        let want: f64 = repr.parse().unwrap();
        match a.as_f64() {
            Some(got) if a.is_f64() && got.to_bits() == want.to_bits() => {}
            _ => errs.push(format!("{at}: {a} vs datasets' float {repr}")),
        }
        return;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if !(x.is_i64() && y.is_i64() && x.as_i64() == y.as_i64()) {
                errs.push(format!("{at}: {x} vs datasets' integer {y}"));
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
                    None => errs.push(format!("{at}: no `{k}` in datasets' row")),
                }
            }
        }
        _ if a == b => {}
        _ => errs.push(format!("{at}: {a} vs datasets' {b}")),
    }
}

/// Every fixture split read through `Dataset::open` (layout + reader) gives the builder's
/// rows: same columns, every value of the same kind and bits.
#[test]
fn every_split_reads_as_the_json_builder_gives_it() {
    let mut checked = 0;
    for name in ["mvbench", "lines", "types", "configs", "field"] {
        let exp = expected(name);
        for (key, want) in exp["splits"].as_object().unwrap() {
            let (config, split) = key.split_once('/').unwrap();
            let config = (config != "default").then_some(config);
            let ds = Dataset::open(&repo(name), config, split)
                .unwrap_or_else(|e| panic!("{name} {key}: {e}"));
            let rows = want["rows"].as_array().unwrap();
            assert_eq!(ds.len(), rows.len(), "{name} {key}");
            let mut cols = ds.columns();
            cols.sort();
            let want_cols: Vec<String> = want["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            assert_eq!(cols, want_cols, "{name} {key}");
            assert!(ds.image_columns().is_empty());
            let mut errs = vec![];
            for (i, (row, want)) in ds.rows(0..ds.len()).unwrap().zip(rows).enumerate() {
                let row = row.unwrap_or_else(|e| panic!("{name} {key}: {e}"));
                assert!(row.images.is_empty());
                strict(
                    &Value::Object(row.fields),
                    want,
                    &format!("{name} {key} row {i}"),
                    &mut errs,
                );
                checked += 1;
            }
            assert!(
                errs.is_empty(),
                "{} differences:\n{}",
                errs.len(),
                errs.join("\n")
            );
        }
    }
    assert_eq!(checked, 9 + 7 + 4 + 9 + 5);
}

#[test]
fn an_integer_column_with_a_float_is_a_float_column() {
    let ds = Dataset::open(&repo("mvbench"), Some("action_sequence"), "train").unwrap();
    let rows: Vec<_> = ds.rows(0..3).unwrap().map(|r| r.unwrap()).collect();
    // `"start": 0` in the file, but the column has 11.1 too: datasets gives 0.0.
    assert!(
        rows[0].fields["start"].is_f64(),
        "{}",
        rows[0].fields["start"]
    );
    assert_eq!(rows[0].fields["start"].as_f64(), Some(0.0));
    assert!(rows[1].fields["end"].is_f64());
    // A key only one record has is null in the others.
    assert_eq!(rows[0].fields["note"], Value::Null);
    assert_eq!(rows[1].fields["note"], "re-annotated");
    // Integers stay integers where the column has only integers.
    let ds = Dataset::open(&repo("lines"), None, "test").unwrap();
    let idx = ds
        .read_columns(&Selection::range(0..1), &["idx"])
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(idx.fields["idx"].is_i64());
    assert_eq!(idx.fields.len(), 1, "only the asked columns");
}

#[test]
fn the_card_maps_configs_to_json_files() {
    let dir = repo("mvbench");
    for (config, n) in [
        ("action_sequence", 3),
        ("fine_grained_pose", 3),
        ("episodic_reasoning", 3),
    ] {
        let ds = Dataset::open(&dir, Some(config), "train").unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!(
            ds.files(),
            [dir.join("json").join(format!("{config}.json")).as_path()]
        );
        ds.require_columns(&["video", "question", "candidates", "answer"])
            .unwrap();
    }
    // No default config among three; no split but train.
    let msg = Dataset::open(&dir, None, "train").unwrap_err().to_string();
    assert!(
        msg.contains("config `action_sequence` (README.md): train"),
        "{msg}"
    );
    let msg = Dataset::open(&dir, Some("fine_grained_pose"), "test")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("split `test` of config `fine_grained_pose`"),
        "{msg}"
    );
    // `field:` from the card; the config marked default.
    let field = Dataset::open(&repo("field"), None, "test").unwrap();
    assert_eq!(
        field.files(),
        [repo("field").join("records.json").as_path()]
    );
    // Without the card's field the records file is one row (pyarrow reads the object as one).
    let one = Dataset::from_files([repo("field").join("records.json")]).unwrap();
    assert_eq!(one.len(), 1);
    let with = Dataset::from_files_with(
        [repo("field").join("records.json")],
        &JsonOptions {
            field: Some("data".into()),
        },
    )
    .unwrap();
    assert_eq!(with.len(), 3);
    let err = Dataset::from_files_with(
        [repo("field").join("records.json")],
        &JsonOptions {
            field: Some("rows".into()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no key `rows`") && err.contains("[\"version\", \"data\"]"),
        "{err}"
    );
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

#[test]
fn json_lines_shards_concatenate_and_doc_ids_are_split_indices() {
    let ds = Dataset::open(&repo("lines"), None, "test").unwrap();
    assert_eq!(ds.files().len(), 2);
    assert_eq!(ds.len(), 7);
    let all = ids(&ds, &Selection::all(7));
    assert_eq!(all, (0..7).map(|i| (i, i as i64)).collect::<Vec<_>>());
    assert_eq!(ids(&ds, &Selection::range(3..5)), [(3, 3), (4, 4)]);
    let todo = ds.window(1, Some(5)).without(|id| [2, 4].contains(&id));
    assert_eq!(ids(&ds, &todo), [(1, 1), (3, 3), (5, 5)]);
    assert_eq!(
        ids(&ds, &Selection::from_ids([6, 0, 4])),
        [(0, 0), (4, 4), (6, 6)]
    );
    for batch in [1, 2, 64] {
        let ds = Dataset::open(&repo("lines"), None, "test")
            .unwrap()
            .with_batch_size(batch);
        assert_eq!(ids(&ds, &Selection::all(7)), all);
    }
    let rows = ds.rows(0..7).unwrap();
    assert_eq!(rows.size_hint(), (0, Some(7)));
    assert_eq!(rows.count(), 7);
    let err = ds.rows(5..8).err().unwrap().to_string();
    assert!(err.contains("doc_id 7") && err.contains("7 rows"), "{err}");
    let err = ds.require_columns(&["idx", "image"]).unwrap_err();
    assert!(matches!(err, Error::MissingColumns { .. }), "{err}");
    assert!(
        err.to_string().contains("test-00000-of-00002.jsonl"),
        "{err}"
    );
    let err = ds
        .read_columns(&Selection::all(7), &["answer"])
        .err()
        .unwrap();
    assert!(matches!(err, Error::MissingColumns { .. }), "{err}");
}

#[test]
fn files_are_parsed_once_when_opened() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in ["test-00000-of-00002.jsonl", "test-00001-of-00002.jsonl"] {
        std::fs::copy(repo("lines").join("data").join(f), dir.join("data").join(f)).unwrap();
    }
    let ds = Dataset::open(&dir, None, "test").unwrap();
    // Gone from disk: len(), the column check and every row still come from what was parsed.
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    assert_eq!(ds.len(), 7);
    ds.require_columns(&["idx", "text"]).unwrap();
    assert_eq!(ids(&ds, &Selection::all(7)).len(), 7);
}

/// Each error fixture fails to open with a message that names the file and says where; the
/// json builder fails on each too (its error is in expected.json).
#[test]
fn bad_files_are_errors_that_say_where() {
    for (name, file, says) in [
        ("bad_lines", "test.jsonl", vec!["line 3, column 15"]),
        ("bad_list", "test.json", vec!["line 4, column 11"]),
        (
            "not_object",
            "test.json",
            vec!["record 2 of the list is a number"],
        ),
        (
            "not_object_lines",
            "test.jsonl",
            vec!["record 1 (line 2) is an array"],
        ),
        (
            "mixed",
            "test.jsonl",
            vec![
                "record 2 (line 3), column `a`",
                "strings where other values are integers",
            ],
        ),
        (
            "one_object",
            "test.json",
            vec!["one JSON object (keys [\"version\", \"data\"])", "`field:`"],
        ),
        (
            "big_int",
            "test.json",
            vec!["record 1, column `a`", "outside int64"],
        ),
        ("bom_list", "test.json", vec!["byte order mark"]),
    ] {
        let exp = expected(name);
        assert!(
            exp["error"]["type"].is_string(),
            "{name}: the builder fails too"
        );
        let err = Dataset::open(&repo(name), None, "test")
            .expect_err(name)
            .to_string();
        let path = repo(name).join("data").join(file);
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        for s in says {
            assert!(err.contains(s), "{name}: {err}");
        }
    }
}

fn put(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn hub_layouts_with_json_files() {
    let en_test = repo("configs/en/test.json"); // 3 rows
    let cn_test = repo("configs/cn/test.jsonl"); // 4 rows
    let parquet = root().join("dataset/edge/configs/en/dev-00000-of-00001.parquet"); // 3 rows
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // <split>.jsonl at the top.
    put(&cn_test, &d.join("top/test.jsonl"));
    assert_eq!(
        Dataset::open(&d.join("top"), None, "test").unwrap().len(),
        4
    );
    // data/<split>/*.json
    put(&en_test, &d.join("dsplit/data/test/a.json"));
    put(&en_test, &d.join("dsplit/data/test/b.json"));
    assert_eq!(
        Dataset::open(&d.join("dsplit"), None, "test")
            .unwrap()
            .len(),
        6
    );
    // <config>/<split>-*.jsonl
    put(&cn_test, &d.join("cfg/zh/validation-00000-of-00001.jsonl"));
    assert_eq!(
        Dataset::open(&d.join("cfg"), Some("zh"), "validation")
            .unwrap()
            .len(),
        4
    );
    // Parquet and JSON side by side: one builder, the most common extension (parquet on a
    // tie), the others dropped.
    put(&parquet, &d.join("mix/data/test-00000-of-00002.parquet"));
    put(&en_test, &d.join("mix/data/test-00001-of-00002.json"));
    let mix = Dataset::open(&d.join("mix"), None, "test").unwrap();
    assert_eq!(
        mix.files(),
        [d.join("mix/data/test-00000-of-00002.parquet").as_path()]
    );
    put(&en_test, &d.join("mix/data/test-00002-of-00002.json"));
    let mix = Dataset::open(&d.join("mix"), None, "test").unwrap();
    assert_eq!(mix.len(), 6, "two JSON files outnumber one parquet file");
    // A split given as files of both kinds is refused.
    let err = Dataset::from_files([parquet.clone(), en_test.clone()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("all parquet or all JSON"), "{err}");
    // A card mapping a split to csv files says which builder `datasets` would use.
    std::fs::create_dir_all(d.join("csv")).unwrap();
    std::fs::write(
        d.join("csv/README.md"),
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: data/*.csv\n---\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("csv/data")).unwrap();
    std::fs::write(d.join("csv/data/test.csv"), "a,b\n1,2\n").unwrap();
    let err = Dataset::open(&d.join("csv"), None, "test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("csv builder"), "{err}");
    // The inventory lists JSON configs and splits.
    let err = Dataset::open(&repo("configs"), Some("en"), "train")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config `cn`: test; config `en`: dev, test"),
        "{err}"
    );
    // An empty JSON Lines file has no rows; so has whitespace.
    std::fs::write(d.join("empty.jsonl"), "").unwrap();
    std::fs::write(d.join("blank.jsonl"), " \n\n").unwrap();
    assert_eq!(
        Dataset::from_files([d.join("empty.jsonl"), d.join("blank.jsonl")])
            .unwrap()
            .len(),
        0
    );
}

/// MVBench's data fixture is laid out as the Hub repo is (README.md `configs:` ->
/// json/<sub_task>.json, split train); every mvbench task finds its rows there, and each row is
/// the file's record with the start/end columns floats throughout.
#[test]
fn mvbench_reads_from_the_hubs_json_layout() {
    let data = root().join("data");
    let dir = data.join("OpenGVLab/MVBench");
    assert!(dir.join("README.md").is_file());
    let mut tasks = 0;
    for t in multi_video::tasks()
        .into_iter()
        .filter(|t| t.name().starts_with("mvbench_"))
    {
        let spec = t.dataset();
        let ds = Dataset::for_task(&spec, Some(&data), Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
        let config = spec.config.clone().unwrap();
        let file = dir.join("json").join(format!("{config}.json"));
        assert_eq!(ds.files(), [file.as_path()], "{}", t.name());
        let records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(ds.len(), records.len());
        for (row, record) in ds.rows(0..ds.len()).unwrap().zip(&records) {
            let row = row.unwrap();
            for (k, v) in record.as_object().unwrap() {
                let got = &row.fields[k];
                if k == "start" || k == "end" {
                    assert!(got.is_f64(), "{}: {k} = {got}", t.name());
                    assert_eq!(got.as_f64(), v.as_f64());
                } else {
                    assert_eq!(got, v, "{}: {k}", t.name());
                }
            }
            assert_eq!(row.fields.len(), record.as_object().unwrap().len());
        }
        tasks += 1;
    }
    assert_eq!(tasks, 20);
}
