"""fixtures/eval/bad/: an MME split whose second row's image is not an image (bytes cut short),
for the end-to-end test that such a document is scored as failed, counted, and the run goes on.
Run with the venv of setup_venv.sh (pyarrow)."""

import pyarrow as pa
import pyarrow.parquet as pq

from common import ROOT, image_struct

out = ROOT / "fixtures" / "eval" / "bad" / "lmms-lab" / "MME" / "data"
out.mkdir(parents=True, exist_ok=True)
good = image_struct("coffee.png", 64)
broken = {"bytes": good["bytes"][: len(good["bytes"]) // 3], "path": "coffee_cut.png"}
image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
schema = pa.schema([("question_id", pa.string()), ("image", image), ("question", pa.string()),
                    ("answer", pa.string()), ("category", pa.string())])
rows = [
    {"question_id": "existence/coffee.png", "image": good, "category": "existence",
     "question": "Is there a cup in this image? Please answer yes or no.", "answer": "Yes"},
    {"question_id": "existence/coffee.png", "image": broken, "category": "existence",
     "question": "Is there a dog in this image? Please answer yes or no.", "answer": "No"},
]
path = out / "test-00000-of-00001.parquet"
pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
print(f"wrote {path.relative_to(ROOT)}")
