"""JSON and JSON Lines dataset fixtures for crates/onevision-eval's dataset layer
(tests/dataset_json.rs), with the rows `datasets`' json builder gives for them.

Run with the reference venv (tools/eval_fixtures/setup_venv.sh):

    /opt/lmms-venv/bin/python tools/eval_fixtures/make_dataset_json_fixtures.py

The reference is the json builder of datasets 2.16.1 (the version lmms-eval 0.2.1 pins),
installed --no-deps in the venv (requirements.txt): its `Json._generate_tables`
(datasets/packaged_modules/json/json.py) is taken from the installed source with `ast` and run
as it is, on pyarrow 22, with a stand-in `self` (config: chunksize 10 MiB, encoding utf-8, the
card's `field`; `_cast_table` the identity, as without `features`). Importing `datasets` itself
would need its whole dependency tree. A split of several files: the builder's ArrowWriter takes
the first table's schema and casts the others to it; every multi-file split here has the same
schema in each file (checked), so the rows are the tables' rows concatenated. Each row is
`to_pydict()`'s (what lmms-eval's doc dicts are), mapped to JSON as the reader documents it:
datetimes -> isoformat(), NaN/inf -> null, finite floats as {"$float": repr}, so that the test
checks them bit for bit and tells 3.0 from 3.

Where the card shape comes from: the OpenGVLab/MVBench dataset card (README.md at revision
05be47e, read with the `search` tool, pages corpus: huggingface.co/datasets/OpenGVLab/MVBench/
blame/05be47e.../README.md) has
    configs:
    - config_name: action_sequence
      data_files: json/action_sequence.json
    - config_name: moving_count
      data_files: json/moving_count.json
    ...
one config per sub-task, `data_files` a single path (so the split is `train`), besides
license/extra_gated_*/task_categories/modalities keys; the repo's files are json/<sub>.json,
video/ and assert/ (its tree at 3db6ae5). Each json file is a list of records: video, question,
candidates, answer, and start/end (seconds) for the sub-tasks whose clips are bounded
(Ask-Anything's mvbench data_list). `field:` is not on any card we know of; it is a json
builder option a card config may give (datasets/load.py create_builder_configs_from_metadata_configs
passes a config's keys to the builder config), kept here because it is cheap and documented.

Writes fixtures/eval/dataset/json/ as a `--data DIR` tree, every repo under the `json` org,
each with expected.json ({"splits": {"<config>/<split>": {"columns": [sorted], "rows": [...]}}}
or, for the error repos, {"error": {"type", "message"}} as the builder raised it):

- json/mvbench: the MVBench card shape (3 configs) over json/<sub>.json lists; `start`/`end`
  mix integers and floats (a float column: 0 -> 0.0), `note` is missing from some records (null);
- json/lines: data/test-0000{0,1}-of-00002.jsonl (JSON Lines: blank lines, CRLF, two objects on
  one line, an object across lines), every type pyarrow's JSON reader infers: int, int+float,
  an integer past int64 (a double), -0 in a float column (-0.0), NaN/Infinity, ISO timestamps
  (timestamp[s], zones applied) and near-misses (strings), a column mixing both (strings),
  nested structs with keys missing, lists of structs, an all-null column, escapes;
- json/types: data/test.json, a JSON list (json.load + pa.Table.from_pydict): the same kinds as
  Python's path gives them (-0 -> 0.0, timestamps stay strings, a repeated key keeps the last
  value, NaN -> null, a lone surrogate pair escape);
- json/configs: no card; en/test.json, en/dev.jsonl, cn/test.jsonl (`<config>/<split>.json(l)`);
- json/field: a card with `field: data`: records.json {"version", "data": [records]} and
  columns.json {"data": {"question": [...], "answer": [...]}};
- errors: json/bad_lines (a JSON Lines syntax error, line 3), json/bad_list (a JSON list with a
  syntax error, line 4), json/not_object (a list whose record 2 is a number), json/not_object_lines
  (line 2 an array), json/mixed (a string where the column has integers), json/one_object (one
  object that is no row: the builder's "indicate the field"), json/big_int (2**63 in a list),
  json/bom_list (a JSON list after a UTF-8 BOM, which json.load refuses).
"""

import ast
import datetime
import io
import itertools
import json
import logging
import math
import shutil
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.json as paj  # noqa: E402

GEN = "tools/eval_fixtures/make_dataset_json_fixtures.py"
OUT = common.ROOT / "fixtures" / "eval" / "dataset" / "json"
DATASETS_VERSION = "2.16.1"


def _json_builder():
    """datasets 2.16.1's `Json._generate_tables`, from the installed source, and its version."""
    import importlib.util

    spec = importlib.util.find_spec("datasets")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"datasets=={DATASETS_VERSION} is not installed: pip install --no-deps -r requirements.txt")
    root = Path(list(spec.submodule_search_locations)[0])
    version = ast.literal_eval(
        next(line.split("=", 1)[1] for line in (root / "__init__.py").read_text().splitlines() if line.startswith("__version__"))
    )
    if version != DATASETS_VERSION:
        raise SystemExit(f"datasets {version} installed; the reference is {DATASETS_VERSION}")
    src = root / "packaged_modules" / "json" / "json.py"
    tree = ast.parse(src.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Json")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "_generate_tables")

    def readline(f):  # datasets.utils.file_utils.readline, only used for non-seekable files
        return f.readline()

    ns = {"io": io, "itertools": itertools, "json": json, "pa": pa, "paj": paj,
          "logger": logging.getLogger("datasets.json"), "readline": readline}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(src), "exec"), ns)
    return ns["_generate_tables"], version


GENERATE_TABLES, VERSION = _json_builder()


def builder_tables(files, field=None):
    """The tables the json builder yields for these files (one split)."""
    config = types.SimpleNamespace(field=field, encoding="utf-8", encoding_errors=None, chunksize=10 << 20)
    me = types.SimpleNamespace(config=config, _cast_table=lambda t: t)
    return [t for _, t in GENERATE_TABLES(me, [[str(f) for f in files]])]


def to_json(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return {"$float": repr(v)} if math.isfinite(v) else None
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    raise TypeError(f"unexpected {type(v)}: {v!r}")


def split_rows(files, field=None):
    """Columns (sorted: the list path's column order is a set's) and rows, as datasets gives them."""
    tables = builder_tables(files, field)
    if not tables:
        return {"columns": [], "rows": []}
    fields = lambda t: sorted((f.name, str(f.type)) for f in t.schema)  # noqa: E731
    for t in tables[1:]:
        if fields(t) != fields(tables[0]):
            raise SystemExit(f"{files}: the files' schemas differ ({fields(t)} vs {fields(tables[0])}); "
                             "the builder would cast, which this reference does not model")
    rows = []
    for t in tables:
        d = t.to_pydict()
        rows += [{k: to_json(d[k][i]) for k in sorted(d)} for i in range(t.num_rows)]
    return {"columns": sorted(tables[0].column_names), "types": dict(fields(tables[0])), "rows": rows}


def error_of(files, field=None):
    try:
        builder_tables(files, field)
    except Exception as e:  # the builder's own exception, recorded as it is
        return {"type": type(e).__name__, "message": str(e).replace(str(OUT), "<dir>")}
    raise SystemExit(f"{files}: expected the builder to fail")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    print(f"wrote {path.relative_to(common.ROOT)} ({len(data)} B)")
    return path


def write_expected(repo, splits=None, error=None):
    body = {"generator": GEN, "datasets": VERSION, "pyarrow": pa.__version__}
    if splits is not None:
        body["splits"] = splits
    if error is not None:
        body["error"] = error
    write(OUT / repo / "expected.json", json.dumps(body, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def card(configs, extra=""):
    """A README.md whose front matter has this `configs:` block (a list of YAML mappings)."""
    lines = ["---", "license: mit"]
    if extra:
        lines.append(extra.rstrip("\n"))
    lines.append("configs:")
    for c in configs:
        first = True
        for k, v in c.items():
            lines.append(f"{'- ' if first else '  '}{k}: {v}")
            first = False
    lines += ["---", "", "A fixture of tools/eval_fixtures/make_dataset_json_fixtures.py.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def mvbench():
    repo = OUT / "mvbench"
    subs = {
        "action_sequence": [
            {"video": "ZS9XR.mp4", "question": "What happened after the person took the food?",
             "candidates": ["Ate the medicine.", "Tidied up the blanket.", "Put down the cup/glass/bottle.", "Took the box."],
             "answer": "Ate the medicine.", "start": 0, "end": 15.4},
            {"video": "8V1T5.mp4", "question": "What happened after the person threw the pillow?",
             "candidates": ["Put down the shoe.", "Opened the door.", "Took the towel.", "Sat on the bed."],
             "answer": "Opened the door.", "start": 11.1, "end": 19, "note": "re-annotated"},
            {"video": "KX0Q2.mp4", "question": "What did the person do to the laptop?",
             "candidates": ["Closed.", "Opened.", "Put down.", "Took."], "answer": "Closed.", "start": 3.5, "end": 12.25},
        ],
        "fine_grained_pose": [
            {"video": "S001C001P001R001A001_rgb.avi", "question": "What is the pose performed by the person in the video?",
             "candidates": ["drink water", "brushing teeth", "hopping", "sitting down"], "answer": "drink water"},
            {"video": "S001C001P001R001A026_rgb.avi", "question": "What is the pose performed by the person in the video?",
             "candidates": ["hopping", "jump up", "kicking something"], "answer": "hopping"},
            {"video": "S001C002P003R002A042_rgb.avi", "question": "What is the pose performed by the person in the video?",
             "candidates": ["staggering", "falling", "touch head (headache)", "nausea or vomiting condition"], "answer": "falling"},
        ],
        "episodic_reasoning": [
            {"video": "s05e02_seg02_clip_00", "question": "What is Sheldon holding when he says 'bazinga'?",
             "candidates": ["A cup", "A book", "A phone", "Nothing"], "answer": "A book", "start": 59.41, "end": 68.02},
            {"video": "friends_s03e10_seg02_clip_11", "question": "Why does Ross leave the room?",
             "candidates": ["He is angry.", "He hears the phone.", "Rachel calls him.", "He is late."],
             "answer": "Rachel calls him.", "start": 2, "end": 9},
            {"video": "met_s02e14_seg02_clip_03", "question": "Where are they sitting?",
             "candidates": ["At the bar.", "In a booth.", "On the couch.", "At a desk."],
             "answer": "In a booth.", "start": 14.0, "end": 22.5},
        ],
    }
    extra = (
        "extra_gated_prompt: >-\n"
        "  (the card's terms of use, a folded block over\n"
        "  several lines)\n"
        "task_categories:\n- visual-question-answering\n- video-classification\n"
        "modalities:\n- Video\n- Text"
    )
    write(repo / "README.md", card([{"config_name": s, "data_files": f"json/{s}.json"} for s in subs], extra))
    splits = {}
    for s, rows in subs.items():
        f = write(repo / "json" / f"{s}.json", json.dumps(rows, indent=4, ensure_ascii=False) + "\n")
        splits[f"{s}/train"] = split_rows([f])
    write_expected("mvbench", splits)


def jsonl_line(obj):
    return json.dumps(obj, ensure_ascii=False)


def lines():
    repo = OUT / "lines"
    # Both files have the same kinds in each column, so each file's table schema is the
    # split's (the builder casts later files to the first one's). Literals json.dumps does not
    # write (-0, NaN, Infinity) are put in through placeholders.
    score = [1, 2.5, 3, "@-0", "@NaN", 7.25, "@Infinity"]
    big = [1, 2, 9223372036854775808, 4, 5, -99999999999999999999, 7]
    date = ["2024-02-29", "2020-01-02T01:02:03", "2020-01-01 00:00:00+05:30", "1999-12-31T23:59",
            "2020-01-01T01:02:03Z", "2000-02-29T12", "2021-06-01T00:00:00-0130"]
    when = ["2024-02-29", "2024-02-30", "2020-01-01T01:02:03.5", "yesterday", "2020-01-01", "12:00", "2020-01-01Z"]
    meta = [{"source": "a", "level": 1}, {"source": "b"}, {"level": 2.5, "tags": ["x"]}, {}, None,
            {"source": "f", "level": 3.5, "tags": []}, {"tags": ["y", "z"]}]
    options = [[1, 2], [3.5], [], None, [4], [5, 6.0], [7]]
    turns = [[{"from": "human", "value": "q"}], [{"from": "gpt"}], [], [{"value": "v", "from": "human", "n": 1}],
             None, [{"from": "gpt", "value": "a", "n": 2}], [{}]]
    text = ["caf\u00e9 \u732b", "tab\tand \"quotes\"", "emoji \U0001F600", "line\nbreak", "", "back\\slash",
            "snow \u2603 \U0001F600"]
    flag = [True, False, None, True, False, None, False]
    rows = []
    for i in range(7):
        r = {"idx": i, "score": score[i], "big": big[i], "date": date[i], "when": when[i], "meta": meta[i],
             "options": options[i], "turns": turns[i], "nothing": None, "text": text[i], "flag": flag[i]}
        if flag[i] is None:
            del r["flag"]  # a key missing from the record, not just null
        rows.append(r)

    def line(r, **kw):
        out = json.dumps(r, ensure_ascii=False, **kw)
        for lit in ("-0", "NaN", "Infinity"):
            out = out.replace(f'"@{lit}"', lit)
        return out

    # File 0: blank line, CRLF. File 1: two objects on one line, an object across lines (with
    # \u escapes, a surrogate pair among them).
    text0 = line(rows[0]) + "\n" + line(rows[1]) + "\n\n" + line(rows[2]) + "\r\n" + line(rows[3]) + "\n"
    r6 = json.dumps(rows[6], ensure_ascii=True, indent=2).replace('"@Infinity"', "Infinity")
    text1 = line(rows[4]) + line(rows[5]) + "\n   \n" + r6 + "\n"
    f0 = write(repo / "data" / "test-00000-of-00002.jsonl", text0)
    f1 = write(repo / "data" / "test-00001-of-00002.jsonl", text1)
    write_expected("lines", {"default/test": split_rows([f0, f1])})


def types_list():
    repo = OUT / "types"
    text = """[
  {"idx": 0, "score": 1, "neg": -0, "date": "2024-02-29", "flag": true, "meta": {"source": "a", "level": 1},
   "options": [1, 2], "turns": [{"from": "human", "value": "q"}], "nothing": null, "esc": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/",
   "dup": 1, "dup": 2, "huge": 1e400},
  {"idx": 1, "score": 2.5, "neg": 1.5, "date": "2020-01-01T01:02:03Z", "flag": false, "meta": {"level": 2.5, "tags": ["x"]},
   "options": [3.5], "turns": [{"from": "gpt"}], "nothing": null, "esc": "\\t", "dup": 3, "huge": -1.5},
  {"idx": 2, "score": NaN, "neg": 2, "date": "yesterday", "meta": {}, "options": [], "turns": [], "esc": "",
   "extra": "only here", "huge": Infinity},
  {"idx": 3, "score": -7, "neg": 3, "date": null, "flag": null, "meta": null, "options": null, "turns": [{}],
   "nothing": null, "esc": "\u732b", "huge": -Infinity}
]
"""
    f = write(repo / "data" / "test.json", text)
    write_expected("types", {"default/test": split_rows([f])})


def configs():
    repo = OUT / "configs"
    en_test = [{"question": f"en test {i}", "answer": ["A", "B", "C"][i], "id": i} for i in range(3)]
    f_en = write(repo / "en" / "test.json", json.dumps(en_test, indent=2) + "\n")
    en_dev = [{"question": f"en dev {i}", "answer": "A", "id": i} for i in range(2)]
    f_dev = write(repo / "en" / "dev.jsonl", "".join(jsonl_line(r) + "\n" for r in en_dev))
    cn_test = [{"question": f"中文 {i}", "answer": "B", "id": i} for i in range(4)]
    f_cn = write(repo / "cn" / "test.jsonl", "".join(jsonl_line(r) + "\n" for r in cn_test))
    write_expected("configs", {"en/test": split_rows([f_en]), "en/dev": split_rows([f_dev]), "cn/test": split_rows([f_cn])})


def field():
    repo = OUT / "field"
    write(repo / "README.md", card([
        {"config_name": "records", "data_files": "[{split: test, path: records.json}]", "field": "data", "default": "true"},
        {"config_name": "columns", "data_files": "[{split: test, path: columns.json}]", "field": "data"},
    ]))
    recs = {"version": "1.0", "data": [{"question": "q0", "answer": 1}, {"question": "q1", "answer": 2.5},
                                       {"question": "q2"}]}
    f_r = write(repo / "records.json", json.dumps(recs, indent=2) + "\n")
    cols = {"data": {"question": ["c0", "c1"], "answer": [3, None]}, "license": "mit"}
    f_c = write(repo / "columns.json", json.dumps(cols, indent=2) + "\n")
    write_expected("field", {"records/test": split_rows([f_r], field="data"), "columns/test": split_rows([f_c], field="data")})


def errors():
    cases = {
        "bad_lines": ("data/test.jsonl", '{"a": 1}\n{"a": 2}\n{"a": 3, "b": }\n{"a": 4}\n'),
        "bad_list": ("data/test.json", '[\n  {"a": 1},\n  {"a": 2},\n  {"a": 3,, "b": 4}\n]\n'),
        "not_object": ("data/test.json", '[{"a": 1}, {"a": 2}, 3, {"a": 4}]\n'),
        "not_object_lines": ("data/test.jsonl", '{"a": 1}\n[1, 2]\n'),
        "mixed": ("data/test.jsonl", '{"a": 1}\n{"a": 2}\n{"a": "three"}\n'),
        "one_object": ("data/test.json", '{\n  "version": "1.0",\n  "data": [{"a": 1}, {"a": "x"}]\n}\n'),
        "big_int": ("data/test.json", '[{"a": 1}, {"a": 9223372036854775808}]\n'),
        "bom_list": ("data/test.json", '\ufeff[{"a": 1}]\n'),
    }
    for repo, (rel, text) in cases.items():
        f = write(OUT / repo / rel, text)
        write_expected(repo, error=error_of([f]))


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    mvbench()
    lines()
    types_list()
    configs()
    field()
    errors()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {total} B under {OUT.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
