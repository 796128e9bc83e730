"""Fixtures for the open-answer single-image recipes (crates/onevision-eval/src/tasks/open_image/):
ai2d, chartqa, docvqa_val, textvqa_val, pope, mme, scored by lmms-eval 0.2.1's own code.

    /opt/lmms-venv/bin/python tools/eval_fixtures/make_open_image.py

For each task: realistic documents in the dataset's schema x (common.adversarial_responses + the
task's own responses), then, as lmms-eval's evaluator does it:
- the yaml's filter pipeline through lmms_eval.api.filter.FilterEnsemble (ai2d: its
  utils.MultiChoiceRegexFilter with the yaml's arguments; the others: the implicit `none`
  pipeline, filters.selection.TakeFirstFilter);
- ConfigurableTask.process_results, lmms-eval's own method: its source is taken out of
  lmms_eval/api/task.py and run on a stand-in `self` (the module itself imports torch,
  accelerate, datasets, ...). It strips results[0], then calls the task's process_results, or
  (ai2d, docvqa_val) runs the yaml's metric (exact_match, anls) from lmms_eval/api/metrics.py;
- `random.seed(0)` once per task before its cases (the evaluator's --seed 0), nothing else
  consuming `random` between them;
- the yaml's aggregations over the values, with the evaluator's stderr rule (mean_stderr for
  `mean`, "N/A" for the custom ones).

lmms_eval/api/metrics.py is imported with sacrebleu/sklearn/torch stubbed (anls, mean and
mean_stderr do not use them). It loads HF evaluate's `exact_match` from the Hub at import; here
`evaluate.load` hands back lm_eval's copy of that code (lm_eval.api.metrics.exact_match_hf_evaluate,
loaded with sacrebleu and its registry stubbed), so the call path is lmms-eval's.

Each case also carries "prompt" (the task's doc_to_text with the yaml's lmms_eval_specific_kwargs
as ConfigurableTask builds them) and "target" (doc_to_target), checked by
crates/onevision-eval/tests/open_image.rs; the fixture's "yaml" key has what that test checks of
the yaml (dataset, max_new_tokens, filter, metrics, version).

Dataset fixtures (fixtures/eval/data/lmms-lab/...): a few rows per task in the Hub's schema.
Column names and types from the datasets' cards (dataset_info): lmms-lab/ai2d (README @7f7fbf8),
lmms-lab/DocVQA (README @59fed3c, config DocVQA), lmms-lab/MME (README), lmms-lab/textvqa (its
README as duplicated in pppop7/textvqa), lmms-lab/POPE (default config, as duplicated in
giobin/POPE), lmms-lab/ChartQA (type/question/answer/image as in qywang1106/chartqa_split_2_2, a
split of it; the card itself was not found) - each agrees with the columns the task's utils.py read.
"""

import ast
import copy
import json
import random
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import lmms_ref  # noqa: E402

GENERATOR = "tools/eval_fixtures/make_open_image.py"
# Found before lmms_ref swaps the package for an empty one (which has no __spec__).
LMMS_DIR = lmms_ref.lmms_eval_dir()


# ---------------------------------------------------------------------------------------------
# lmms-eval's code, imported without its heavy dependencies


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _identity_decorator(*_a, **_k):
    return lambda f: f


def _lm_eval_exact_match():
    """lm_eval.api.metrics.exact_match_hf_evaluate (HF evaluate's exact_match, copied)."""
    import importlib

    saved = {k: sys.modules.get(k) for k in ["sacrebleu", "lm_eval.api.registry"]}
    _stub("sacrebleu")
    _stub("lm_eval.api.registry", register_metric=_identity_decorator, register_aggregation=_identity_decorator)
    try:
        m = importlib.import_module("lm_eval.api.metrics")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return m.exact_match_hf_evaluate


def api_metrics():
    """lmms_eval.api.metrics (anls, mean, mean_stderr, exact_match_fn)."""
    lmms_ref.module("api.filter")  # installs lmms_ref's package stubs
    exact_match = _lm_eval_exact_match()

    class _Loaded:
        def compute(self, **kwargs):
            return exact_match(**kwargs)

    _stub("sacrebleu")
    sk = _stub("sklearn")
    sk.metrics = _stub("sklearn.metrics")
    _stub("torch")
    _stub("evaluate", load=lambda name: _Loaded())
    _stub("lmms_eval.api.registry", register_metric=_identity_decorator, register_aggregation=_identity_decorator)
    return lmms_ref.module("api.metrics")


def configurable_process_results():
    """ConfigurableTask.process_results from lmms_eval/api/task.py, its tenacity @retry left off
    (it only retries when the method raises)."""
    path = LMMS_DIR / "api" / "task.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ConfigurableTask")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "process_results")
    fn.decorator_list = []
    ns = {"np": np, "eval_logger": None}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), ns)
    return ns["process_results"]


def load_yaml(rel):
    """A task yaml with its `include`s merged as lmms_eval.utils.load_yaml_config does; `!function`
    tags become their names."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))
    path = LMMS_DIR / "tasks" / rel
    cfg = yaml.load(path.read_text(), Loader=Loader)
    if "include" in cfg:
        base = load_yaml(str(Path(rel).parent / cfg.pop("include")))
        base.update(cfg)
        cfg = base
    return cfg


def specific_kwargs(cfg):
    """ConfigurableTask.__init__: the yaml's lmms_eval_specific_kwargs, updated with `default`'s keys
    (llava_onevision has no entry of its own)."""
    kw = cfg.get("lmms_eval_specific_kwargs")
    if kw is None:
        return None
    kw = copy.deepcopy(kw)
    if "default" in kw:
        kw.update(kw.get("default", {}))
    return kw


PR = configurable_process_results()
METRICS = api_metrics()
FILTER = lmms_ref.module("api.filter")
SELECTION = lmms_ref.module("filters.selection")


class Recipe:
    """What the evaluator holds of one task: filter ensemble, process_results, aggregations."""

    def __init__(self, yaml_rel, utils, process_results=None, doc_to_target=None, filters=None, first_doc=None):
        self.cfg = load_yaml(yaml_rel)
        self.utils = utils
        self.kwargs = specific_kwargs(self.cfg)
        fl = self.cfg.get("filter_list")
        self.filter_name = fl[0]["name"] if fl else "none"
        self.ensemble = FILTER.FilterEnsemble(name=self.filter_name, filters=filters or [SELECTION.TakeFirstFilter()])
        metric_fns, metric_kwargs = {}, {}
        for mc in self.cfg["metric_list"]:
            name = mc["metric"]
            if process_results is not None:
                metric_fns[name], metric_kwargs[name] = None, {}
            else:
                metric_fns[name] = {"exact_match": METRICS.exact_match_fn, "anls": METRICS.anls}[name]
                metric_kwargs[name] = {k: v for k, v in mc.items() if k not in ["metric", "aggregation", "higher_is_better"]}
        test_target = doc_to_target(first_doc)
        self.doc_to_target = doc_to_target
        self.self_ = SimpleNamespace(
            OUTPUT_TYPE="generate_until",
            config=SimpleNamespace(process_results=process_results, doc_to_choice=None),
            _metric_fn_list=metric_fns,
            _metric_fn_kwargs=metric_kwargs,
            doc_to_target=doc_to_target,
            multiple_input=0,
            multiple_target=len(test_target) if type(test_target) is list else 0,
        )

    def prompt(self, doc, fn):
        return fn(doc, self.kwargs) if self.kwargs is not None else fn(doc)

    def filter(self, doc, response):
        inst = SimpleNamespace(resps=[response], filtered_resps={})
        self.ensemble.apply([inst], [doc])
        return inst.filtered_resps[self.filter_name]

    def process(self, doc, filtered):
        return PR(self.self_, doc, [filtered])

    def aggregate(self, values):
        out = {}
        for mc in self.cfg["metric_list"]:
            name = mc["metric"]
            items = [v[name] for v in values if name in v]
            if not items:
                continue
            agg = mc["aggregation"]
            key = f"{name},{self.filter_name}"
            if agg == "mean":
                out[key] = METRICS.mean(items)
                out[f"{name}_stderr,{self.filter_name}"] = METRICS.mean_stderr(items) if len(items) > 1 else "N/A"
            else:
                fn = getattr(self.utils, agg.split(".")[-1])
                import inspect

                if inspect.getfullargspec(fn).args == ["results", "args"]:
                    with tempfile.TemporaryDirectory() as d:
                        value = fn(items, SimpleNamespace(output_path=d))
                else:
                    value = fn(items)
                out[key] = value
                out[f"{name}_stderr,{self.filter_name}"] = "N/A"
        return out

    def yaml_summary(self):
        c = self.cfg
        return {
            "dataset_path": c["dataset_path"],
            "dataset_name": c.get("dataset_name"),
            "test_split": c["test_split"],
            "max_new_tokens": c.get("generation_kwargs", {}).get("max_new_tokens"),
            "filter": self.filter_name,
            "metrics": [[m["metric"], m["aggregation"]] for m in c["metric_list"]],
            "version": c["metadata"][0]["version"] if isinstance(c.get("metadata"), list) else None,
        }


def run(task, recipe, pairs, text_fn, notes, drop_results=()):
    """pairs: [(doc, response)] in doc order. Returns the fixture path."""
    cases, values = [], []
    random.seed(0)
    for doc, response in pairs:
        prompt = recipe.prompt(copy.deepcopy(doc), text_fn)
        target = recipe.doc_to_target(copy.deepcopy(doc))
        filtered = recipe.filter(doc, response)
        v = recipe.process(copy.deepcopy(doc), filtered)
        values.append(v)
        cases.append({"doc": doc, "response": response, "filtered": filtered, "values": v, "prompt": prompt, "target": target})
    results = recipe.aggregate(values)
    for k in drop_results:
        results.pop(k)
    path = common.write_fixture(task, cases, results, GENERATOR, notes)
    fx = json.loads(path.read_text())
    fx["yaml"] = recipe.yaml_summary()
    path.write_text(json.dumps(fx, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


def spread(docs, responses, passes=2):
    """Each response against `passes` different documents."""
    n = len(docs)
    return [(docs[(i + k * (n // passes + 1)) % n], r) for k in range(passes) for i, r in enumerate(responses)]


def image_rows(rows):
    """Adds an `image` cell (a real photo, <= 64 px) to each row."""
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        r["image"] = common.image_struct(common.PHOTO_NAMES[i % len(common.PHOTO_NAMES)], 32)
        out.append(r)
    return out


STR = pa.string()
STRS = pa.list_(pa.string())


# ---------------------------------------------------------------------------------------------
# ai2d

AI2D_DOCS = [
    ("Which stage comes after the larva stage?", ["egg", "pupa", "adult", "nymph"], "1"),
    ("What does the diagram show?", ["life cycle of a frog", "food web", "water cycle", "phases of the moon"], "0"),
    ("Which of these is a producer?", ["grass", "hawk", "snake", "frog"], "0"),
    ("How many stages are in the life cycle shown?", ["3", "4", "5", "6"], "1"),
    ("What is label E pointing to?", ["crust", "mantle", "outer core", "inner core"], "3"),
    ("Which organism is at the top of the food chain?", ["Eagle", "Mouse", "Grasshopper", "Plant"], "0"),
    ("Which letter represents the new moon?", ["A", "B", "C", "D"], "2"),
    ("Is the moon waxing or waning in stage C?", ["waxing", "waning"], "1"),
    ("Which layer is the thinnest?", ["crust", "mantle", "core"], "0"),
    ("What process is shown by the arrow from the leaf to the air?", ["Photosynthesis ", "respiration", "Transpiration", "evaporation"], "2"),
    ("Which part of the plant absorbs water?", ["roots", "stem", "leaves", "flower", "seed"], "0"),
    ("If the number of snakes decreases, what happens to the frogs?", ["They increase.", "They decrease.", "They stay the same.", "They die out."], "0"),
    ("What is the correct order?", ["A, B, C", "C, B, A", "B, A, C", "A, C, B"], "3"),
    ("Which label shows the stamen?", ["D.", "C.", "B.", "A."], "1"),
    ("How many legs does the adult insect have?", ["six", "eight", "four", "ten"], "0"),
    ("What is the food source of the caterpillar?", ["leaf", "nectar", "seeds", "aphids"], "0"),
    # Nine options, so that the target can be "I" (np.char.lower cuts "İ".lower() back to "i").
    ("Which label marks the mantle?", ["A", "B", "C", "D", "E", "F", "G", "H", "I"], "8"),
]

AI2D_EXTRA = [
    "A. egg", "B. pupa", "C.", "D. nymph.", "b. pupa", "pupa", "Pupa", "The answer is B.", "(B) pupa", "B)",
    "B.C.", "E. none", "Z.", "  C. adult", "B\x00", "\x00B", "\u0130", "\u0130.", "\u00df.", "B!", "B?", "'B'", "B,",
    "b!", "B-", "\u2014B", "\uff22", "[.", "AB.", "A.B.", "C\n", "D.\nE.", "\u00c9.", "\u0392.", "B\u3002", "B\u2019",
    "\u201cB\u201d", "(C)", "C)", "{C}", "c", "d.", "A\u0300.", "I\u0307", "\u0130B", "Answer: A", "A:", "A;",
    "\tD.", "B . pupa", "B .", "B.5", "Option A.", "\u212a.", "K", "a_", "_A", "A-", "--A--", "~B~", "@C", "#D",
    "B\x00.", "\u0130\x00", "\u1e9e", "\ufb00", "\u01c4.",
]


def ai2d():
    u = lmms_ref.task_module("ai2d.utils")
    rng = random.Random(2001)
    docs = [{"question": q, "options": o, "answer": a} for q, o, a in AI2D_DOCS]
    flt = u.MultiChoiceRegexFilter(group_select=0, ignore_case=True, ignore_punctuation=True, regex_pattern="([A-Z])\\.")
    recipe = Recipe("ai2d/ai2d.yaml", u, doc_to_target=lambda d: u.ai2d_doc_to_target(d, "mcq"), filters=[flt], first_doc=docs[0])
    responses = common.adversarial_responses(rng, AI2D_EXTRA)
    pairs = spread(docs, responses)
    for i, d in enumerate(docs):
        letter = u.ai2d_doc_to_target(d, "mcq")
        opt = d["options"][int(d["answer"])]
        for r in [letter, f"{letter}.", f"{letter}. {opt}", opt, f"({letter})", letter.lower(), f"{letter}{letter}"]:
            pairs.append((d, r))
    pairs += [(docs[-1], r) for r in ["\u0130", "\u0130.", "\u0131", "i", "I\u0307", "\u0130\x00", "\u0130I"]]
    rng.shuffle(pairs)
    run("ai2d", recipe, pairs, u.ai2d_doc_to_text,
        "lmms-eval's default process_results (exact_match via HF evaluate's code) after ai2d/utils.py MultiChoiceRegexFilter")
    rows = image_rows(docs[:4])
    schema = pa.schema([("question", STR), ("options", STRS), ("answer", STR), ("image", common.image_type())])
    common.write_parquet("lmms-lab/ai2d", rows, schema, split="test")


# ---------------------------------------------------------------------------------------------
# chartqa

CHARTQA_DOCS = [
    ("human_test", "How many food item is shown in the bar graph?", "14"),
    ("human_test", "What is the difference between the highest and the lowest value of the blue bar?", "38"),
    ("human_test", "Which country has the highest share of renewable energy?", "Brazil"),
    ("human_test", "In which year was the unemployment rate the lowest?", "2015"),
    ("human_test", "What percentage of respondents said they trust the news?", "45%"),
    ("human_test", "Is the value of Italy greater than the average of all countries?", "Yes"),
    ("human_test", "What is the ratio of the smallest segment to the largest segment?", "0.36"),
    ("human_test", "How many bars have a value below 10?", "0"),
    ("human_test", "What was the GDP growth in 2009?", "-4.2"),
    ("human_test", "Which two years had the same value?", "[2012, 2016]"),
    ("augmented_test", "What is the value of Germany?", "29.5"),
    ("augmented_test", "What is the sum of all the segments?", "100"),
    ("augmented_test", "What is the highest value in the chart?", "92"),
    ("augmented_test", "Which category has the lowest value?", "Other"),
    ("augmented_test", "What is the average of the two smallest values?", "17.05"),
    ("augmented_test", "What is the value of the largest segment?", "57.1"),
    ("augmented_test", "Does the line for women ever cross the line for men?", "No"),
    ("augmented_test", "How many people were surveyed (in thousands)?", "1000"),
    ("augmented_test", "What is the value for 2019?", "0.5"),
    ("augmented_test", "What is the share of online sales?", "12%"),
]

CHARTQA_EXTRA = [
    "14", "14.0", "14.7", "13.3", "13.29", "14.71", "15", "14%", "1400%", "0.14", "38", "36.1", "36.09", "39.9",
    "Brazil", "brazil", "BRAZIL", "Brazil.", "2015", "2015.0", "45", "45%", "0.45", "45 %", "45%%", "0.36", "0.378",
    "0.342", "0.3419", "-4.2", "-4.0", "-4.41", "4.2", "29.5", "30.975", "30.976", "28.025", "28.024", "100", "105",
    "95", "94.99", "92", "Other", "other", "17.05", "57.1", "no", "NO", "1,000", "1_000", "1e3", "1000.", "0.5",
    "0.525", ".5", "12%", "0.12", "12", "inf", "-inf", "Infinity", "nan", "NaN", "\uff11\uff14", "\u0661\u0664",
    "14\u00a0", "1_4", "_14", "14_", "1__4", "0x0E", "1.4e1", "1.4E+1", "140e-1", "+14", "--14", "14.0.0", "\u00bd",
    "\u00b2", "\u2163", "[2012, 2016]", "2012, 2016", "None", "0.0", "-0", "0e0", "\u0130", "\u00df", "Ss", "%", "%%", "5%",
    "0.05", "1e400", "-1e400", "1e-400", "\u2212" + "4.2", "\u0660", "\U0001d7d9\U0001d7dc",
]


def chartqa():
    u = lmms_ref.task_module("chartqa.utils")
    rng = random.Random(2002)
    docs = [{"type": t, "question": q, "answer": a} for t, q, a in CHARTQA_DOCS]
    recipe = Recipe("chartqa/chartqa.yaml", u, process_results=u.chartqa_process_results, doc_to_target=lambda d: d["answer"], first_doc=docs[0])
    responses = common.adversarial_responses(rng, CHARTQA_EXTRA)
    pairs = spread(docs, responses)
    for d in docs:
        a = d["answer"]
        pairs += [(d, a), (d, a.upper()), (d, a + ".")]
        try:
            t = float(a.rstrip("%"))
            for f in (1.04, 1.05, 1.0500001, 0.95, 0.9499999, 1.06):
                pairs.append((d, repr(t * f)))
        except ValueError:
            pass
    rng.shuffle(pairs)
    run("chartqa", recipe, pairs, u.chartqa_doc_to_text, "utils.chartqa_process_results (relaxed_correctness)")
    rows = image_rows(docs[:2] + docs[10:12])
    schema = pa.schema([("type", STR), ("question", STR), ("answer", STR), ("image", common.image_type())])
    common.write_parquet("lmms-lab/ChartQA", rows, schema, split="test")


# ---------------------------------------------------------------------------------------------
# docvqa_val

DOCVQA_DOCS = [
    ("What is the date given at the top left?", ["layout"], ["03/17/98"]),
    ("Is it an existing item?", ["form", "yes/no"], ["yes"]),
    ("What is the 'actual' value per 1000, during the year 1975?", ["table/list"], ["0.28"]),
    ("What is the name of the company?", ["layout"], ["ITC Limited", "ITC"]),
    ("To whom is the letter addressed?", ["layout"], ["Dr. John M. Smith", "John M. Smith", "Dr. Smith"]),
    ("What is the total amount?", ["form"], ["$ 1,234.00", "1,234.00"]),
    ("Which street is the office on?", ["layout"], ["Hauptstra\u00dfe"]),
    ("What is the title of the document?", ["layout"], ["ANNUAL  REPORT  1997"]),
    ("What percentage of smokers prefer menthol?", ["figure/diagram"], ["27%", "27 %"]),
    ("What is the page number?", ["layout"], ["3"]),
    ("Who signed the form?", ["handwritten", "form"], ["R. J. Reynolds"]),
    ("What is written in the stamp?", ["photograph"], ["RECEIVED"]),
    ("What is the telephone number?", ["layout"], ["(212) 555-0134", "212-555-0134"]),
    ("What is the subject of the memo?", ["running text"], ["Marketing plan for\nQ3"]),
    ("Which year has the highest sales?", ["table/list"], ["1989"]),
    ("What does the abbreviation RJR stand for?", ["running text"], [" R.J. Reynolds "]),
    ("What is the code in the box?", ["form"], [""]),
    ("What is the name of the city?", ["layout"], ["\u0130stanbul"]),
]

DOCVQA_EXTRA = [
    "03/17/98", "3/17/98", "03/17/1998", "March 17, 1998", "yes", "Yes", "YES.", "0.28", "0.29", ".28", "ITC Limited",
    "itc limited", "ITC Ltd", "ITC", "I.T.C.", "Limited", "Dr. John M. Smith", "John Smith", "Dr Smith", "Smith",
    "$ 1,234.00", "$1,234.00", "1234", "Hauptstrasse", "HAUPTSTRASSE", "Hauptstra\u00dfe", "Hauptstr.", "annual report 1997",
    "ANNUAL REPORT 1997", "ANNUAL   REPORT   1997", "annual\treport\n1997", "27%", "27", "27 percent", "3", "three",
    "page 3", "R. J. Reynolds", "RJ Reynolds", "Reynolds", "RECEIVED", "Received", "RECIEVED", "(212) 555-0134",
    "2125550134", "Marketing plan for Q3", "marketing plan", "1989", "1998", "R.J. Reynolds", "\u0130stanbul", "istanbul",
    "\u0130STANBUL", "i\u0307stanbul", "\u00df" * 6, "ss", "a", "ab", "abc", "x" * 3, " " * 5 + "ITC" + " " * 5,
    "I T C", "\ufb01", "fi", "\u1e9e", "\u0149", "\u01f0",
]


def docvqa():
    u = lmms_ref.task_module("docvqa.utils")
    rng = random.Random(2003)
    docs = []
    for i, (q, types_, answers) in enumerate(DOCVQA_DOCS):
        docs.append({
            "questionId": str(49153 + 37 * i), "question": q, "question_types": types_, "docId": 14465 + 11 * i,
            "ucsf_document_id": ["fkbg0217", "txpp0227", "jxhw0223", "snbx0223", "ffbf0023"][i % 5],
            "ucsf_document_page_no": str(1 + i % 4), "answers": answers, "data_split": "val",
        })
    recipe = Recipe("docvqa/docvqa_val.yaml", u, doc_to_target=lambda d: d["answers"], first_doc=docs[0])
    responses = common.adversarial_responses(rng, DOCVQA_EXTRA)
    pairs = spread(docs, responses)
    for d in docs:
        for a in d["answers"]:
            pairs += [(d, a.strip()), (d, a.upper().strip()), (d, a.strip()[:-1]), (d, a.strip() + "xx")]
    rng.shuffle(pairs)
    run("docvqa_val", recipe, pairs, u.docvqa_doc_to_text,
        "lmms-eval's default process_results with multiple targets: anls per reference, then 1.0 if any is non-zero")
    rows = image_rows(docs[:4])
    schema = pa.schema([
        ("questionId", STR), ("question", STR), ("question_types", STRS), ("image", common.image_type()),
        ("docId", pa.int64()), ("ucsf_document_id", STR), ("ucsf_document_page_no", STR), ("answers", STRS),
        ("data_split", STR),
    ])
    rows = [{k: r[k] for k in schema.names} for r in rows]
    common.write_parquet("lmms-lab/DocVQA", rows, schema, split="validation", config="DocVQA")


# ---------------------------------------------------------------------------------------------
# textvqa_val

TEXTVQA_DOCS = [
    ("what is the brand of this camera?", ["nous les gosses", "dakota", "clos culombu", "dakota digital", "dakota", "dakota", "dakota digital", "dakota", "dakota", "dakota"]),
    ("what does the small white text spell?", ["copenhagen"] * 7 + ["Copenhagen", "copenhagen.", "coppenhagen"]),
    ("what kind of beer is this?", ["ale", "sublimely self-righteous ale", "ale", "stone", "stone ale", "ale", "self righteous", "ale", "ale", "sublimely self-righteous"]),
    ("how many items are on the shelf?", ["two", "2", "2", "two", "2", "2", "3", "two", "2", "2"]),
    ("what year is on the coin?", ["1990", "1990", "1990", "1990", "1990", "1990", "1,990", "1990", "1990", "1990"]),
    ("Who is the author of the book?", ["J.K. Rowling", "j.k. rowling", "jk rowling", "J. K. Rowling", "rowling", "j.k. rowling", "j.k.rowling", "J.K. Rowling", "jk rowling", "j.k. rowling"]),
    ("what time is shown?", ["10:10", "10:10", "ten past ten", "10:10", "10.10", "10:10", "10:10", "10:10", "10:10", "10:10"]),
    ("is this a stop sign?", ["yes", "yes", "yes", "Yes", "yes", "yes", "no", "yes", "yes", "yes"]),
    ("what is the number on the jersey?", ["23", "23", "23", "23", "23", "23", "23", "23", "23", "23"]),
    ("what is the name of the store?", ["the home depot", "home depot", "Home Depot", "home depot", "the home depot", "homedepot", "home depot", "home depot", "the home depot", "home depot"]),
    ("what word is written on the red sign?", ["dont walk", "don't walk", "dont walk", "don't walk", "walk", "dont walk", "dont", "don't walk", "dont walk", "don't walk"]),
    ("what is the price?", ["$3.50", "3.50", "$3.50", "3.5", "$3.50", "$3.50", "3,50", "$3.50", "$3.50", "$3.50"]),
    ("what website is shown?", ["www.example.com", "example.com", "www.example.com", "www.example.com", "example", "www.example.com", "www.example.com", "www.example.com", "www.example.com", "www.example.com"]),
    ("what is the title?", ["unanswerable", "answering does not require reading text in the image", "unanswerable", "unanswerable", "unanswerable", "unanswerable", "unanswerable", "unanswerable", "unanswerable", "unanswerable"]),
    ("\u01c6ungla name on the sign?", ["\u01c6ungla"] * 10),
    ("what's the team's name?", ["bulls", "the bulls", "chicago bulls", "bulls", "bulls", "bulls", "bulls", "bulls", "chicago bulls", "bulls"]),
    # Fewer than 10 answers (statistics.mean is exact, a plain mean is not) and three matches.
    ("what is the speed limit?", ["55", "55", "55", "45", "45", "55 mph", "55"]),
    ("what letter is on the sign?", ["b", "b", "b", "d", "p", "b", "b", "b", "e"]),
    ("what color is the text?", ["red"] * 3 + ["white"] * 7),
    ("what is written? two words", ["stop here", "stop"]),
    # str.capitalize: titlecase and final sigma.
    ("\ufb01rst word on the sign?", ["open"] * 10),
    ("\u039f\u0394\u039f\u03a3 sign: WHAT does it say?", ["odos"] * 10),
    ("\u00df or ss?", ["ss"] * 10),
    ("\u10d0 word?", ["a"] * 10),
    ("\u0130stanbul or ANKARA?", ["istanbul"] * 10),
]

TEXTVQA_EXTRA = [
    "Dakota", "dakota digital", "Dakota Digital.", "the dakota", "Copenhagen", "copenhagen!", "COPENHAGEN?", "Ale",
    "stone ale", "sublimely self-righteous ale", "Two", "2", "two.", "2 items", "1990", "1,990", "1990.", "J.K. Rowling",
    "j.k. rowling", "JK Rowling", "10:10", "10.10", "ten past ten", "Yes", "yes.", "Yes, it is.", "23", "#23", "No. 23",
    "The Home Depot", "home depot", "Don't walk", "DONT WALK", "dont walk", "$3.50", "3.50", "3.5", "www.example.com",
    "example.com", "unanswerable", "Bulls", "The Bulls", "Chicago Bulls!", "the bulls'", "Bulls's", "it's", "its",
    "Its", "dont", "cant", "Ive", "Im", "wont", "yall'll", "let's", "a", "an", "the", "A Dakota", "zero", "none",
    "ten", "eleven", "one two three", "1/2", "a/b", "a / b", "x-y", "x - y", "(x)", "( x )", "x;y", "x=y", "a+b",
    "a\\b", "a_b", "a>b", "a<b", "a@b", "a`b", "a?b", "a!b", "[a]", "{a}", '"a"', "1,000", "1, 000", "3.14",
    "3.", "x.", "x.y", "1.x", "...", ". . .", "." * 40, ("a." * 40), "e.g. this", "\u01c6ungla", "\u01c4ungla",
    "\u01c5ungla", "Mr.", "U.S.A.", "u.s.a", "hello\nworld", "hello\tworld", "HELLO  WORLD", "\u0130", "\u00df",
    "caf\u00e9", "CAF\u00c9", "\u0661\u0662", "\u03a3\u0391\u03a3", "\u2018quoted\u2019", "\u00bfqu\u00e9?",
    "55", "55 mph", "45", "B", "b.", "red", "Red.", "stop", "stop here", "white",
]


def textvqa_target(doc):
    """ConfigurableTask.doc_to_target for `doc_to_target: "answer"`: textvqa has no `answer` column,
    so the string goes through utils.apply_template (jinja2), which renders "answer" as itself."""
    return doc["answer"] if "answer" in doc else "answer"


def textvqa():
    u = lmms_ref.task_module("textvqa.utils")
    rng = random.Random(2004)
    docs = []
    for i, (q, answers) in enumerate(TEXTVQA_DOCS):
        docs.append({
            "image_id": f"{0x3a1b2c + 977 * i:016x}", "question_id": 34602 + i * 3, "question": q,
            "question_tokens": q.rstrip("?").split(), "image_width": 1024, "image_height": 683 + i,
            "flickr_original_url": f"https://farm{1 + i % 8}.staticflickr.com/{1000 + i}/{5000 + i}_o.jpg",
            "flickr_300k_url": f"https://c{1 + i % 8}.staticflickr.com/{1000 + i}/{5000 + i}_z.jpg",
            "answers": answers, "image_classes": ["Poster", "Book"] if i % 2 else ["Camera"],
            "set_name": "val", "ocr_tokens": [a.split()[0] for a in answers[:3] if a.split()],
        })
    recipe = Recipe("textvqa/textvqa_val.yaml", u, process_results=u.textvqa_process_results, doc_to_target=textvqa_target, first_doc=docs[0])
    responses = common.adversarial_responses(rng, TEXTVQA_EXTRA)
    pairs = spread(docs, responses, passes=1)
    for d in docs:
        for a in sorted(set(d["answers"])):
            pairs += [(d, a), (d, a.upper() + ".")]
    rng.shuffle(pairs)
    run("textvqa_val", recipe, pairs, u.textvqa_doc_to_text,
        "utils.textvqa_process_results (EvalAIAnswerProcessor, min(1, matches/3) over the 10 leave-one-out subsets). "
        "textvqa_aggregate_submissions writes a submission file and returns None: lmms-eval reports "
        "`submission,none: null`; onevision has no number for it, so that key is left out of `results`.",
        drop_results=["submission,none", "submission_stderr,none"])
    rows = image_rows(docs[:4])
    schema = pa.schema([
        ("image_id", STR), ("question_id", pa.int32()), ("question", STR), ("question_tokens", STRS),
        ("image", common.image_type()), ("image_width", pa.int32()), ("image_height", pa.int32()),
        ("flickr_original_url", STR), ("flickr_300k_url", STR), ("answers", STRS), ("image_classes", STRS),
        ("set_name", STR), ("ocr_tokens", STRS),
    ])
    rows = [{k: r[k] for k in schema.names} for r in rows]
    common.write_parquet("lmms-lab/textvqa", rows, schema, split="validation")


# ---------------------------------------------------------------------------------------------
# pope

POPE_OBJECTS = ["snowboard", "dining table", "person", "car", "chair", "bottle", "dog", "cup", "bench", "traffic light", "umbrella", "knife"]
POPE_EXTRA = [
    "Yes", "yes", "YES", "Yes.", "yes.", "No", "no", "NO", "No.", "no.", "Yes, there is.", "No, there is not.",
    "Yes, there is a dog in the image.", "There is no dog.", "yes\n", "No\n\nThere is no car.", "Y", "N", "y", "n",
    "nO", "yEs", "\u0130", "YES\u3002", "no\u00a0", "\u200byes", "yes\u200b", "ye s", "No, ", "Nope.",
]


def pope():
    u = lmms_ref.task_module("pope.utils")
    rng = random.Random(2005)
    docs = []
    for i in range(40):
        obj = POPE_OBJECTS[i % len(POPE_OBJECTS)]
        cat = ["adversarial", "popular", "random"][i % 3]
        q = f"Is there a {obj} in the image?" + ("  " if i % 7 == 0 else "")
        docs.append({
            "id": str(i), "question_id": str(1 + i * 2), "question": q, "answer": "yes" if (i * 5) % 3 else "no",
            "image_source": f"COCO_val2014_{391895 + 113 * i:012d}", "category": cat,
        })
    docs[3]["answer"] = "Yes"
    docs[4]["answer"] = " no "
    recipe = Recipe("pope/pope.yaml", u, process_results=u.pope_process_results, doc_to_target=lambda d: d["answer"], first_doc=docs[0])
    responses = common.adversarial_responses(rng, POPE_EXTRA)
    pairs = spread(docs, responses)
    for d in docs:
        pairs.append((d, d["answer"].strip().capitalize() + "."))
    rng.shuffle(pairs)
    run("pope", recipe, pairs, u.pope_doc_to_text, "utils.pope_process_results and the five pope_aggregate_* functions")
    rows = image_rows(docs[:4])
    schema = pa.schema([
        ("id", STR), ("question_id", STR), ("question", STR), ("answer", STR), ("image_source", STR),
        ("image", common.image_type()), ("category", STR),
    ])
    rows = [{k: r[k] for k in schema.names} for r in rows]
    common.write_parquet("lmms-lab/POPE", rows, schema, split="test")


# ---------------------------------------------------------------------------------------------
# mme

MME_CATEGORIES = {
    "existence": ("Is there a {} in this image?", ["dog", "bus", "clock", "train"]),
    "count": ("Are there {} people in the image?", ["two", "three", "four"]),
    "position": ("Is the {} on the left of the table?", ["cup", "laptop", "cat"]),
    "color": ("Is there a {} car in the image?", ["red", "white", "blue"]),
    "posters": ("Is this movie titled {}?", ["the dark knight", "inception", "up"]),
    "celebrity": ("Is the actor inside the red bounding box named {}?", ["Tom Hanks", "Emma Stone"]),
    "scene": ("Is this picture captured in a place of {}?", ["beach", "library", "kitchen"]),
    "landmark": ("Is this a photo of {}?", ["the Eiffel Tower", "Big Ben", "Taj Mahal"]),
    "artwork": ("Is this artwork created by {}?", ["Vincent van Gogh", "Claude Monet"]),
    "OCR": ("Is the word in the logo \"{}\"?", ["coffee", "STARBUCKS"]),
    "commonsense_reasoning": ("Should I {} in this situation?", ["take an umbrella", "wear a coat"]),
    "numerical_calculation": ("Is the answer to the arithmetic question in the image {}?", ["65", "12"]),
    "text_translation": ("Is it appropriate to translate the Chinese in the image into English '{}' in the picture?", ["hello", "thank you"]),
    "code_reasoning": ("The image shows a python code. Is the output of the code '{}'?", ["Hello", "7"]),
}

MME_EXTRA = [
    "Yes", "No", "yes", "no", "Yes.", "No.", "YES", "NO", "y", "n", "Y.", "N.", "Yes, it is.", "No, it is not.",
    "yes and no", "no yes", "Not sure", "nope", "yep", "yeah", "Nah", "know", "noyes", "I don't know", "...yes",
    "y.e.s", "n.o.", "....", ".", "x", "ye", "yesss", "  yes  ", "Yes\nNo", "\u0130", "\u0130yes", "N\u00f6",
    "\u00c9s", "S\u00ed", "\u662f", "\u4e0d\u662f", "The answer is yes.", "There is no dog.", "no.yes", "Y E S",
    "nOT", "None", "yes!", "no?", "n/a", "Yes-", "No," , "Ye.s",
]


def mme():
    u = lmms_ref.task_module("mme.utils")
    rng = random.Random(2006)
    docs = []
    cats = list(MME_CATEGORIES)
    n_pairs = 168
    for p in range(n_pairs):
        cat = cats[p % len(cats)]
        template, fills = MME_CATEGORIES[cat]
        k = p // len(cats)
        qid = f"{cat}/{k:04d}.png" if cat not in ("posters", "celebrity") else f"{cat}/tt{1000000 + 37 * k}.jpg"
        right, wrong = fills[k % len(fills)], fills[(k + 1) % len(fills)]
        suffix = " Please answer yes or no." if p % 9 else " Please answer yes or no. "
        pair = [
            {"question_id": qid, "question": template.format(right) + suffix, "answer": "Yes", "category": cat},
            {"question_id": qid, "question": template.format(wrong) + suffix, "answer": "No", "category": cat},
        ]
        if p % 5 == 0:
            pair.reverse()
        if p % 11 == 0:
            pair[0]["answer"] = pair[0]["answer"].upper() + "."
        docs += pair
    recipe = Recipe("mme/mme.yaml", u, process_results=u.mme_process_results, doc_to_target=lambda d: d["answer"], first_doc=docs[0])
    responses = common.adversarial_responses(rng, MME_EXTRA)
    pairs = []
    for j, d in enumerate(docs):
        if j % 3 == 0:
            r = d["answer"].rstrip(".").capitalize()
        elif j % 3 == 1:
            r = responses[j % len(responses)]
        else:
            r = rng.choice(["Yes", "No", "yes", "no", "Yes.", "No."])
        pairs.append((d, r))
    run("mme", recipe, pairs, u.mme_doc_to_text, "utils.mme_process_results (parse_pred_ans) and mme_aggregate_results")
    rows = image_rows(docs[:4])
    schema = pa.schema([("question_id", STR), ("image", common.image_type()), ("question", STR), ("answer", STR), ("category", STR)])
    rows = [{k: r[k] for k in schema.names} for r in rows]
    common.write_parquet("lmms-lab/MME", rows, schema, split="test")


if __name__ == "__main__":
    only = sys.argv[1:]
    for name, fn in [("ai2d", ai2d), ("chartqa", chartqa), ("docvqa_val", docvqa), ("textvqa_val", textvqa), ("pope", pope), ("mme", mme)]:
        if not only or name in only:
            fn()
