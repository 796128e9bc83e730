"""Shared pieces of the evaluation fixture generators (run them with the venv of setup_venv.sh).

- `adversarial_responses(rng, ...)`: model outputs that break naive parsers;
- `write_fixture(task, cases, results)`: fixtures/eval/metrics/<task>.json in the format
  crates/onevision-eval/tests/metrics.rs reads;
- `write_parquet(repo, rows, schema, config=None, split=...)`: a dataset laid out as the Hub
  stores it, fixtures/eval/data/<org>/<name>/[<config>/]<split>-00000-of-00001.parquet (or
  data/<split>-... when there is no config);
- `photo(name, max_side)`: a real photo from fixtures/images/photos, shrunk, as encoded bytes.
"""

import io
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS_DIR = ROOT / "fixtures" / "eval" / "metrics"
DATA_DIR = ROOT / "fixtures" / "eval" / "data"
PHOTOS = ROOT / "fixtures" / "images" / "photos"
PHOTO_NAMES = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "page.png", "rocket.jpg", "text.png"]

# Responses every recipe is tried on; each generator adds its own (options' texts, numbers...).
BASE_ADVERSARIAL = [
    "", " ", "\n", "A", "B", "C", "D", "E", "a", "b", "(B)", "B.", "B. cat", "The answer is (B).",
    "The answer is B", "Answer: C", "answer: c.", "(A) (B)", "A or B", "A, B", "I think it's D.",
    "None of the above.", "Yes", "yes", "No", "no", "Yes, it is.", "No, it is not.", "YES.",
    "yes and no", "Not sure", "Yes.\nNo.", "nope", "yesterday", "42", "42%", "4.2", "1,000",
    "1000", "3.14159", "-7", "0", "0.5", "50%", "$5", "5 dollars", "12 km", "1/2", "two",
    "Two", "TWO.", "the cat", "The Cat.", "a dog", "an apple", "cat!", "cat?", "猫", "是",
    "选项B", "答案是C", "B。", "Option B", "option (c)", "[A]", "{B}", "<C>", "A)", "B:",
    "B - cat", "Both A and C", "ABCD", "A. B. C.", "\tB\t", "  B  ", "b.", "E.", "Z", "Z.",
    "x" * 300, ("the answer is A " * 40).strip(), "A" * 50, "......", "!!!", "''", "\"B\"",
    "N/A", "none", "None", "unanswerable", "true", "false", "True", "1", "10", "100",
    "1e3", "1.0", "1.00", "01", "+5", "5.", ".5", "3,5", "twelve", "12th", "March 3, 2020",
]


def adversarial_responses(rng, extra=(), n=None):
    """BASE_ADVERSARIAL + `extra`, shuffled with `rng` (a random.Random), as lmms-eval's model
    wrapper would return them: stripped (llava_onevision.py: `response.strip()`)."""
    out = [r.strip() for r in list(BASE_ADVERSARIAL) + list(extra)]
    rng.shuffle(out)
    return out if n is None else out[:n]


def _jsonable(x):
    """numpy scalars/arrays and tuples -> plain JSON values."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_fixture(task, cases, results, generator, notes=""):
    """cases: [{"doc": {...}, "response": str, "filtered": str, "values": {metric: value}}];
    results: {"<metric>,<filter>": value, "<metric>_stderr,<filter>": value or "N/A"}."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    out = {
        "task": task,
        "generator": generator,
        "lmms_eval": "0.2.1",
        "notes": notes,
        "cases": _jsonable(cases),
        "results": _jsonable(results),
    }
    path = METRICS_DIR / f"{task}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(cases)} cases)")
    return path


def photo(name, max_side=64, fmt=None):
    """A real photo, shrunk so the longer side is `max_side`, encoded (PNG, or JPEG for .jpg)."""
    from PIL import Image

    img = Image.open(PHOTOS / name).convert("RGB")
    img.thumbnail((max_side, max_side))
    fmt = fmt or ("JPEG" if name.endswith(".jpg") else "PNG")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def image_struct(name, max_side=64):
    """The Hub's image cell: {"bytes": ..., "path": ...}."""
    return {"bytes": photo(name, max_side), "path": name}


IMAGE_TYPE = None


def image_type():
    import pyarrow as pa

    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write_parquet(repo, rows, schema, split, config=None):
    """Writes rows (a list of dicts) with a pyarrow schema as the Hub lays a dataset out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = DATA_DIR / repo
    sub = base / (config if config else "data")
    sub.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    path = sub / f"{split}-00000-of-00001.parquet"
    pq.write_table(table, path)
    print(f"wrote {path.relative_to(ROOT)} ({len(rows)} rows)")
    return path
