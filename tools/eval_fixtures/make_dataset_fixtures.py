"""Edge-case parquet files for crates/onevision-eval's dataset layer (tests/dataset.rs).

Run with the reference venv (tools/eval_fixtures/setup_venv.sh: pyarrow 22, numpy, pandas, pillow):

    /opt/lmms-venv/bin/python tools/eval_fixtures/make_dataset_fixtures.py

Writes fixtures/eval/dataset/ as a `--data DIR` tree (DIR/<org>/<name>/...), every repo under the
`edge` org:

- edge/shards: data/test-0000{0,1,2}-of-00003.parquet (4 rows, an EMPTY shard, 5 rows; row groups
  of 2 rows, so reads cross row-group and shard boundaries) and an old-style hashed name
  data/validation-00000-of-00001-8f2e1c.parquet; column `idx` = the row's doc_id in the split.
- edge/configs: en/{dev,test}-00000-of-00001.parquet and cn/dev-00000-of-00001.parquet (configs
  as top-level folders, as lmms-lab/MMBench has them).
- edge/readme: a README.md whose YAML `configs:` block maps config `full` split `test` to
  files/full_part*.parquet, a layout only the README explains.
- edge/types: data/test-00000-of-00001.parquet with every Arrow type the reader converts (ints of
  every width and sign, f16/f32/f64 with NaN and inf, bool, string/large_string/string_view,
  binary/large_binary, list/large_list/fixed_size_list, nested struct, list of struct, map,
  dictionary-encoded strings, null type, timestamps (naive s/ms/us/ns, UTC, +05:30), date32/64,
  time32/64, decimal128), image columns (`image` struct, `images` list of structs, `thumb`
  a struct with only `bytes`, `hf_image` a null-typed column the `huggingface` schema metadata
  says is an Image), a struct with bytes+path+extra (not an image), and `dur` (duration, which
  the reader refuses). Beside it expected.json: each row's fields as pyarrow's `to_pylist()`
  gives them (what `datasets` hands lmms-eval: its Python formatter is `pa_table.to_pydict()`)
  after the JSON mapping the reader documents (bytes -> base64, datetimes -> isoformat(),
  Decimal -> str, NaN/inf -> null, tuples -> arrays; floats written as {"$float": repr}), and
  each image column's images.
- edge/missing: data/test-00000-of-00002.parquet has question/answer/image, test-00001 lacks
  `answer` (MissingColumns must name the second shard).
- edge/corrupt: data/test-00000-of-00001.parquet cut in half (no footer).
- edge/garbled: data/test-00000-of-00001.parquet with its footer intact and its first column
  chunk overwritten with garbage (len() works from the footer; reading rows fails).
- edge/badpage, edge/badfooter: edge/shards' first shard with one byte changed, in a page /
  in the footer (a negative chunk offset), on which parquet 60 panics (the reader must turn
  both into errors).
"""

import base64
import datetime
import decimal
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

OUT = common.ROOT / "fixtures" / "eval" / "dataset"
IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write(path, table, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kw)
    print(f"wrote {path.relative_to(common.ROOT)} ({table.num_rows} rows, {path.stat().st_size} B)")
    return path


def shard_table(first, n):
    rows = [{"idx": first + i, "question": f"question {first + i}?"} for i in range(n)]
    schema = pa.schema([("idx", pa.int64()), ("question", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def shards():
    base = OUT / "edge" / "shards" / "data"
    sizes = [4, 0, 5]
    idx = 0
    for k, n in enumerate(sizes):
        write(base / f"test-{k:05d}-of-{len(sizes):05d}.parquet", shard_table(idx, n), row_group_size=2)
        idx += n
    val = pa.table({"idx": pa.array([0, 1], pa.int64()), "question": ["v0", "v1"]})
    write(base / "validation-00000-of-00001-8f2e1c.parquet", val)


def configs():
    base = OUT / "edge" / "configs"
    for config, split, n in [("en", "dev", 3), ("en", "test", 2), ("cn", "dev", 2)]:
        table = pa.table({"index": pa.array(range(n), pa.int64()),
                          "question": [f"{config} {split} {i}" for i in range(n)]})
        write(base / config / f"{split}-00000-of-00001.parquet", table)


def readme():
    base = OUT / "edge" / "readme"
    for part, rows in [(0, [0, 1]), (1, [2])]:
        table = pa.table({"idx": pa.array(rows, pa.int64())})
        write(base / "files" / f"full_part{part}.parquet", table)
    (base / "README.md").write_text(
        "---\nlicense: mit\nconfigs:\n- config_name: full\n  data_files:\n  - split: test\n"
        "    path: files/full_part*.parquet\n---\n# edge/readme\n\nA layout only the card explains.\n"
    )
    print(f"wrote {(base / 'README.md').relative_to(common.ROOT)}")


def photo_struct(name, path=True):
    return {"bytes": common.photo(name, max_side=12), "path": name if path else None}


def types_table():
    a = photo_struct("astronaut.png")
    b = photo_struct("coffee.png", path=False)
    c = {"bytes": common.photo("rocket.jpg", max_side=12), "path": "rocket.jpg"}
    n = 4
    i64 = np.iinfo(np.int64)
    u64 = np.iinfo(np.uint64)
    ts = [0, 1_700_000_000, -1, 253402300799]  # 1970, 2023, 1969-12-31T23:59:59, 9999-12-31
    cols = {
        "i8": pa.array([-128, 127, 0, None], pa.int8()),
        "i16": pa.array([-32768, 32767, 1, -1], pa.int16()),
        "i32": pa.array([-(2**31), 2**31 - 1, 7, None], pa.int32()),
        "i64": pa.array([int(i64.min), int(i64.max), 0, 42], pa.int64()),
        "u8": pa.array([0, 255, 1, None], pa.uint8()),
        "u16": pa.array([0, 65535, 2, 3], pa.uint16()),
        "u32": pa.array([0, 2**32 - 1, 5, 6], pa.uint32()),
        "u64": pa.array([0, int(u64.max), 2**63, None], pa.uint64()),
        "f16": pa.array(np.array([1.5, 0.1, -65504, np.nan], dtype=np.float16)),
        "f32": pa.array(np.array([0.1, 1e-45, 3.4028235e38, np.inf], dtype=np.float32)),
        "f64": pa.array([0.1, -0.0, 1e308, None], pa.float64()),
        "flag": pa.array([True, False, None, True]),
        "s": pa.array(["plain", "", "ünïcödé 猫 \n\t\"q\"", None], pa.string()),
        "ls": pa.array(["large", "x" * 100, None, "z"], pa.large_string()),
        "sv": pa.array(["view", "a string longer than twelve bytes", None, ""], pa.string_view()),
        "blob": pa.array([b"\x00\x01\xff", b"", None, b"hello"], pa.binary()),
        "lblob": pa.array([b"large", None, b"\xfe", b""], pa.large_binary()),
        "options": pa.array([["A. cat", "B. dog"], [], None, ["只有一个"]], pa.list_(pa.string())),
        "nested": pa.array([[[1, 2], []], [None, [3]], None, [[4]]], pa.list_(pa.list_(pa.int64()))),
        "ll": pa.array([[1, None, 3], [], None, [2**40]], pa.large_list(pa.int64())),
        "fsl": pa.array([[0.5, 0.25], [1.0, None], [3.0, -1.5], [0.1, 0.2]], pa.list_(pa.float32(), 2)),
        "rec": pa.array(
            [{"b": 1, "a": "x", "c": {"d": True}}, {"b": None, "a": None, "c": None}, None,
             {"b": 2, "a": "y", "c": {"d": None}}],
            pa.struct([("b", pa.int32()), ("a", pa.string()), ("c", pa.struct([("d", pa.bool_())]))]),
        ),
        "recs": pa.array([[{"x": 1, "y": "one"}, {"x": 2, "y": None}], [], None, [None]],
                         pa.list_(pa.struct([("x", pa.int64()), ("y", pa.string())]))),
        "kv": pa.array([[("a", 1), ("b", None)], [], None, [("z", 26)]], pa.map_(pa.string(), pa.int32())),
        "cat": pa.array(["red", "green", None, "red"], pa.string()).dictionary_encode(),
        "nothing": pa.nulls(n),
        "ts_s": pa.array(ts, pa.timestamp("s")),
        "ts_ms_utc": pa.array([t * 1000 + 5 for t in ts[:3]] + [None], pa.timestamp("ms", tz="UTC")),
        "ts_us": pa.array([0, 1_700_000_000_123_456, -1, None], pa.timestamp("us")),
        "ts_ns": pa.array([0, 1_700_000_000_123_456_789, 1_000, 5_000_000], pa.timestamp("ns")),
        # ms: arrow-rs applies the ARROW:schema time zone only when the unit matches the file's
        # (parquet has no seconds unit, so a "s" column is stored as ms).
        "ts_off": pa.array([0, 1_700_000_000_000, None, -3_600_000], pa.timestamp("ms", tz="+05:30")),
        "d32": pa.array([datetime.date(2024, 2, 29), datetime.date(1, 1, 1), None,
                         datetime.date(1969, 12, 31)], pa.date32()),
        "d64": pa.array([datetime.date(2000, 1, 1), None, datetime.date(9999, 12, 31),
                         datetime.date(1970, 1, 1)], pa.date64()),
        "t32": pa.array([datetime.time(0, 0, 0), datetime.time(23, 59, 59), None,
                         datetime.time(12, 0, 1)], pa.time32("s")),
        "t64": pa.array([datetime.time(1, 2, 3, 4), datetime.time(0, 0), None,
                         datetime.time(23, 59, 59, 999999)], pa.time64("us")),
        "dec": pa.array([decimal.Decimal("1.500"), decimal.Decimal("-0.050"), None,
                         decimal.Decimal("1234.000")], pa.decimal128(7, 3)),
        "image": pa.array([a, None, {"bytes": None, "path": "missing.png"}, b], IMG),
        "images": pa.array([[a, c], [b, None, {"bytes": None, "path": "gone.png"}], None, []],
                           pa.list_(IMG)),
        "thumb": pa.array([{"bytes": a["bytes"]}, None, {"bytes": c["bytes"]}, {"bytes": None}],
                          pa.struct([("bytes", pa.binary())])),
        "hf_image": pa.nulls(n),
        "not_image": pa.array([{"bytes": b"\x01", "path": "p", "extra": 1}, None,
                               {"bytes": None, "path": None, "extra": None},
                               {"bytes": b"", "path": "", "extra": 0}],
                              pa.struct([("bytes", pa.binary()), ("path", pa.string()), ("extra", pa.int8())])),
        "dur": pa.array([1, 2, None, 3], pa.duration("s")),
    }
    table = pa.table(cols)
    features = {"hf_image": {"_type": "Image"}, "image": {"_type": "Image"},
                "images": {"feature": {"_type": "Image"}, "_type": "Sequence"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})


IMAGE_COLUMNS = {"image": "one", "images": "list", "thumb": "one", "hf_image": "null"}
REFUSED = {"dur"}


def to_json(v):
    """A Python value of `to_pylist()` as the reader maps it into JSON; finite floats as
    {"$float": repr(v)}, so the test parses them exactly (serde_json's default float parser
    may be 1 ulp off) and compares bits."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return {"$float": repr(v)} if math.isfinite(v) else None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()  # pandas' Timestamp (ns) is a datetime subclass with 9 digits
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    raise TypeError(f"unexpected {type(v)}: {v!r}")


def image_list(kind, cell):
    if kind == "null" or cell is None:
        return []
    cells = cell if kind == "list" else [cell]
    return [{"bytes": base64.b64encode(c["bytes"]).decode(), "path": c.get("path")}
            for c in cells if c is not None and c.get("bytes") is not None]


def types():
    path = write(OUT / "edge" / "types" / "data" / "test-00000-of-00001.parquet", types_table())
    rows = pq.read_table(path).to_pylist()
    expected = []
    for row in rows:
        fields = {k: to_json(v) for k, v in row.items() if k not in IMAGE_COLUMNS and k not in REFUSED}
        images = {k: image_list(kind, row[k]) for k, kind in IMAGE_COLUMNS.items()}
        expected.append({"fields": fields, "images": images})
    out = OUT / "edge" / "types" / "expected.json"
    out.write_text(json.dumps({"generator": "tools/eval_fixtures/make_dataset_fixtures.py",
                               "pyarrow": pa.__version__, "rows": expected},
                              ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out.relative_to(common.ROOT)}")


def missing():
    base = OUT / "edge" / "missing" / "data"
    img = photo_struct("chelsea.png")
    full = pa.table({"question": ["q0"], "answer": ["a0"], "image": pa.array([img], IMG)})
    write(base / "test-00000-of-00002.parquet", full)
    part = pa.table({"question": ["q1"], "image": pa.array([img], IMG)})
    write(base / "test-00001-of-00002.parquet", part)


def corrupt():
    table = pa.table({"question": [f"q{i}" for i in range(20)], "answer": [str(i) for i in range(20)]})
    path = write(OUT / "edge" / "corrupt" / "data" / "test-00000-of-00001.parquet", table)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    print(f"  truncated to {len(data) // 2} B")

    path = write(OUT / "edge" / "garbled" / "data" / "test-00000-of-00001.parquet", table,
                 compression="none", use_dictionary=False, write_page_index=False)
    col = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start, size = col.data_page_offset, col.total_compressed_size
    data = bytearray(path.read_bytes())
    data[start:start + size] = bytes((i * 37 + 11) % 256 for i in range(size))
    path.write_bytes(bytes(data))
    print(f"  garbled bytes {start}..{start + size}")


def one_byte_off(name, at, was, now):
    """edge/shards' first shard with the byte at `at` changed from `was` to `now` (bytes found by
    flipping bytes of the fixtures in Rust until parquet 60 panicked)."""
    path = write(OUT / "edge" / name / "data" / "test-00000-of-00001.parquet", shard_table(0, 4),
                 row_group_size=2)
    data = bytearray(path.read_bytes())
    assert len(data) == 1226 and data[at] == was, "pyarrow wrote a different file: find the byte again"
    data[at] = now
    path.write_bytes(bytes(data))
    print(f"  byte {at}: {was} -> {now}")


def badpage():
    # A page's definition levels: arrow-buffer's read_up_to_byte_from_offset asserts.
    one_byte_off("badpage", 423, 4, 161)
    # The footer's 4th column chunk gets dictionary_page_offset -363: ColumnChunkMetaData::byte_range asserts.
    one_byte_off("badfooter", 833, 132, 213)


def main():
    # Only the `edge` org: fixtures/eval/dataset/json/ is make_dataset_json_fixtures.py's.
    if (OUT / "edge").exists():
        shutil.rmtree(OUT / "edge")
    shards()
    configs()
    readme()
    types()
    missing()
    corrupt()
    badpage()
    total = sum(p.stat().st_size for p in (OUT / "edge").rglob("*") if p.is_file())
    print(f"total {total} B under {(OUT / 'edge').relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
