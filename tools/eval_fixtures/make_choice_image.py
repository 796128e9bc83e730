"""Fixtures for the single-image multiple-choice recipes (crates/onevision-eval/src/tasks/choice_image/):
mmbench_en_dev, scienceqa_img, mmstar, realworldqa, seedbench, mmmu_val.

For each task: realistic documents in the dataset's schema, paired with adversarial responses,
run through lmms-eval 0.2.1's own doc_to_text (kept as "prompt" in each case), doc_to_visual
(the image columns it returns, as "visual"), filter_list, process_results (after
`random.seed(0)`, over the cases in order, nothing else drawing from `random` in between) and
aggregation, written to fixtures/eval/metrics/<task>.json; plus a small parquet file per task in
the Hub's layout under fixtures/eval/data/.

Column names and types: lmms-lab/MMBench `en` (index int64, question, hint, answer, A-D,
category, image, source, L2-category, comment, split: the dataset card of lmms-lab/MMBench; the
card of an older revision types `en`'s index as string, but lmms-eval compares it with 1e6, so it
must be an integer where lmms-eval ran), lmms-lab/ScienceQA `ScienceQA-IMG` (its card),
Lin-Chen/MMStar (index, question, image, answer, category, l2_category, meta_info{source, split,
image_path}: the card of a copy, macabdul9/MMStar; the Hub repo keeps one `mmstar.parquet` at its
root), lmms-lab/RealWorldQA (image, question, answer: the card of xai-org/RealworldQA),
lmms-lab/SEED-Bench (answer, choice_a-d, data_id, data_type, question, question_id,
question_type_id, image: a sequence of images; taken from the card of lmms-lab/SEED-Bench-2
minus its v2-only columns, and seedbench/utils.py), lmms-lab/MMMU (id, question, options,
explanation, image_1..image_7, img_type, answer, topic_difficulty, question_type, subfield: its
card).

Without a GPT judge (no OPENAI_API_KEY; lmms-eval's default key "YOUR_API_KEY" gets a 401), every
request of MMBench's judge fails: `_post_request` is made to raise at once and `time.sleep` not to
wait, which changes nothing but the time taken.

Run: /opt/lmms-venv/bin/python tools/eval_fixtures/make_choice_image.py
"""

import json
import random
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import lmms_ref  # noqa: E402

try:  # lmms-eval logs every failed judge request and every prediction; keep the output short
    from loguru import logger

    logger.remove()
except ImportError:  # pragma: no cover
    pass

GENERATOR = "tools/eval_fixtures/make_choice_image.py"
rng = random.Random(20240807)  # the generator's own stream; `random` itself is lmms-eval's
N_CASES = 304


class FakeImage:
    """Stands in for a PIL image in doc_to_visual; remembers the column it came from."""

    def __init__(self, name):
        self.name = name

    def convert(self, mode):
        return self


def _stub(name, **attrs):
    if name not in sys.modules:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
    return sys.modules[name]


def metrics_modules():
    """(lmms_eval.api.metrics, lm_eval.api.metrics) with their heavy imports stubbed: lmms-eval's
    `mean`/`mean_stderr`, and HF evaluate's exact_match (lm_eval's exact_match_hf_evaluate, a copy
    of the code lmms-eval loads with evaluate.load("exact_match"))."""
    lmms_ref.module("api.filter")  # installs lmms_ref's package stubs
    _stub("sacrebleu")
    _stub("sklearn")
    _stub("sklearn.metrics")
    _stub("torch")
    _stub("evaluate", load=lambda *a, **k: None)
    _stub("sqlitedict", SqliteDict=object)

    def register(*a, **k):
        return lambda f: f

    _stub("lmms_eval.api.registry", register_metric=register, register_aggregation=register)
    _stub("lm_eval.api.registry", register_metric=register, register_aggregation=register)
    import importlib

    return importlib.import_module("lmms_eval.api.metrics"), importlib.import_module("lm_eval.api.metrics")


def strip_images(doc, cols):
    return {k: v for k, v in doc.items() if k not in cols}


def check_json(x):
    json.dumps(x, allow_nan=False)
    return x


def process_all(task_fn, cases, responses):
    """random.seed(0) once, then process_results over the cases in order (the evaluator's
    `--seed 0` and its postprocessing loop). Every adversarial response must be in a case."""
    missing = set(responses) - {c["response"] for c in cases}
    assert not missing, f"responses not covered: {sorted(missing)[:5]}"
    random.seed(0)
    for c in cases:
        c["values"] = task_fn(c["_doc_full"], [c["filtered"].strip()])
    for c in cases:
        del c["_doc_full"]
        check_json(c)
    return cases


def extra_common():
    return [
        "A.", "(A)", "A)", "A:", "Answer: A", "answer (b)", "The answer is C.", "The correct option is D",
        "B\n", "B,", "(C).", ":D", ":A.", "C).", "a.", "(a)", "Option: B", "The answer is (A) or (B)",
        "I would say B because the picture shows it.", "A B", "A A", "A is correct", "A cat",
        "There are A few", "C is the answer and not D.", "D. I am not sure but D", "(D) (D)",
        "答案: B", "Ｂ", "B．", "The answer: (E)", "E", "F.", "Σ", "İ", "ǅ", "ﬁ",
    ]


# ---------------------------------------------------------------- mmbench_en_dev

MMB_QUESTIONS = [
    ("Which object is closest to the camera?", ["a cup", "a plate", "a fork", "a knife"], "object_localization", "finegrained_perception (instance-level)"),
    ("What is the dominant colour of the car?", ["red", "blue", "green", "nan colour"], "attribute_recognition", "finegrained_perception (instance-level)"),
    ("Which emotion does the person show?", ["happy", "sad", "angry"], "image_emotion", "coarse_perception"),
    ("Is the scene indoors or outdoors?", ["indoors", "outdoors"], "image_scene", "coarse_perception"),
    ("How many people are in the picture?", ["1", "2", "3", "4"], "object_localization", "finegrained_perception (instance-level)"),
    ("Which of these is a mammal?", ["shark", "dolphin", "salmon", "trout"], "nature_relation", "relation_reasoning"),
    ("What will happen next?", ["The ball falls.", "The ball rises.", "Nothing happens.", "The ball explodes."], "future_prediction", "logic_reasoning"),
    ("Which style is this painting?", ["Impressionism", "Cubism", "Baroque", "Pop Art"], "image_style", "coarse_perception"),
    ("What does the sign say?", ["STOP", "GO", "YIELD", "EXIT"], "ocr", "finegrained_perception (cross-instance)"),
    ("Which is bigger?", ["the banana", "banana", "the apple"], "physical_property_reasoning", "attribute_reasoning"),
    ("Where is the cat relative to the dog?", ["left", "right", "above", "below"], "spatial_relationship", "finegrained_perception (cross-instance)"),
    ("What is the man holding?", ["an umbrella", "a bag", "a phone", "nothing"], "action_recognition", "finegrained_perception (instance-level)"),
]
MMB_HINTS = [None, "nan", "", "The image shows a kitchen.", "Look at the background.\nIt is blurry."]


def mmbench_docs():
    docs = []
    for q_i, (question, options, category, l2) in enumerate(MMB_QUESTIONS * 3):
        base = 10 + q_i * 7
        n = len(options)
        gt = rng.randrange(n)
        hint = MMB_HINTS[q_i % len(MMB_HINTS)]
        missing = "nan" if q_i % 2 else None
        variants = n if q_i % 9 != 4 else 1  # some questions without circular copies
        for k in range(variants):
            rot = options[k:] + options[:k]
            doc = {"index": base + k * 1_000_000, "question": question, "hint": hint}
            for j, c in enumerate("ABCD"):
                doc[c] = rot[j] if j < n else missing
            doc["answer"] = "ABCD"[(gt - k) % n]
            doc.update({"category": category, "source": "MMBench", "L2-category": l2, "comment": "nan", "split": "dev"})
            docs.append(doc)
    # a circular copy whose main row is absent (never scored), and an index > 2e6 variant
    docs.append(dict(docs[0], index=docs[0]["index"] + 999 + 1_000_000))
    return docs


MMB_MODE = {}


def mmbench_response(doc, i):
    """Per question (index % 1e6) a mode, so that whole circular groups come out right, right
    but for rows only the no-judge fallback can decide, or mixed."""
    opts = {c: doc[c] for c in "ABCD" if doc[c] not in (None, "nan")}
    ans = doc["answer"]
    mode = MMB_MODE.setdefault(doc["index"] % 1_000_000, rng.choice(["right", "right", "fallback", "mixed"]))
    right = [ans, f"{ans}.", f"({ans})", f"The answer is {ans}.", f"{ans}. {opts.get(ans, '')}", opts.get(ans, ans), f"Answer: {ans}", f":{ans}"]
    if mode == "right" or (mode == "fallback" and rng.random() < 0.6):
        return rng.choice(right)
    if mode == "fallback":
        return rng.choice(["I am not sure.", "", "None of them", "E", "maybe", "A B", "It could be any"])
    r = rng.random()
    if r < 0.45:
        return rng.choice(right)
    if r < 0.6:
        other = rng.choice(sorted(opts))
        return rng.choice([other, f"{other}) {opts[other]}", opts[other].upper(), f"I think {opts[other]}"])
    return None


def gen_mmbench():
    u = lmms_ref.task_module("mmbench.en_utils")
    ev = lmms_ref.task_module("mmbench.mmbench_evals")

    def no_api(self, payload):
        raise RuntimeError("no GPT judge: the request fails as it does without an API key")

    ev.MMBench_Evaluator._post_request = no_api
    ev.time.sleep = lambda s: None
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."}
    docs = mmbench_docs()
    adv = common.adversarial_responses(rng, extra_common() + ["nan", "banana", "A banana", "It is a cup", "a plate or a fork", "Impressionism", "stop", "STOP", "left", "Left or right"])
    cases = []
    j = 0
    for i, doc in enumerate(docs):
        resp = mmbench_response(doc, i)
        if resp is None:
            resp = adv[j % len(adv)]
            j += 1
        cases.append(case(doc, resp.strip(), u.mmbench_doc_to_text(doc, kwargs), ["image"]))
    # more rows: the remaining adversarial responses on fresh questions' circular copies
    offset = 0
    while len(cases) < N_CASES:
        offset += 300
        for doc in docs[: 4 * 12]:
            if len(cases) >= N_CASES:
                break
            d = dict(doc, index=doc["index"] + offset)
            resp = mmbench_response(d, j) if j >= len(adv) else None
            if resp is None or rng.random() < 0.5:
                resp = adv[j % len(adv)]
                j += 1
            cases.append(case(d, resp.strip(), u.mmbench_doc_to_text(d, kwargs), ["image"]))
    cases = process_all(u.mmbench_process_results, cases, adv)
    args = types.SimpleNamespace(output_path=tempfile.mkdtemp())
    score = u.mmbench_aggregate_dev_results_eval([c["values"]["gpt_eval_score"] for c in cases], args)
    results = {"gpt_eval_score,none": float(score), "gpt_eval_score_stderr,none": "N/A"}
    notes = (
        "No GPT judge: rows the rule matcher (can_infer) cannot read take rd.randint(0, 4) over "
        "'ABCDE' after rd.seed(2680) in eval_result, in evaluation order. The `submission` "
        "metric's aggregation writes an xlsx and returns None; it is not in results."
    )
    common.write_fixture("mmbench_en_dev", cases, results, GENERATOR, notes)
    import pyarrow as pa

    schema = pa.schema([("index", pa.int64()), ("question", pa.string()), ("hint", pa.string()), ("answer", pa.string())]
                       + [(c, pa.string()) for c in "ABCD"]
                       + [("category", pa.string()), ("image", common.image_type()), ("source", pa.string()),
                          ("L2-category", pa.string()), ("comment", pa.string()), ("split", pa.string())])
    rows = [dict(d, image=common.image_struct(common.PHOTO_NAMES[k % 7], 32)) for k, d in enumerate(docs[:4])]
    common.write_parquet("lmms-lab/MMBench", rows, schema, split="dev", config="en")


def case(doc, response, prompt, image_cols, filtered=None, visual=None, target=None):
    """One fixture case; `prompt` is doc_to_text, `target` doc_to_target (the yaml's `answer`
    unless given), `visual` the image columns doc_to_visual returned, in order."""
    return {
        "doc": strip_images(doc, image_cols),
        "response": response,
        "filtered": response if filtered is None else filtered,
        "prompt": prompt,
        "target": doc["answer"] if target is None else target,
        **({"visual": visual} if visual is not None else {}),
        "_doc_full": doc,
    }


# ---------------------------------------------------------------- scienceqa_img

SQA = [
    ("Which of these states is farthest north?", ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], "Geography", "social science"),
    ("Identify the question that Tom's experiment can best answer.", ["Do ping pong balls stop rolling along the ground sooner after being launched from a 30° angle or a 45° angle?", "Do ping pong balls travel farther when launched from a 30° angle compared to a 45° angle?"], "Science-and-engineering-practices", "natural science"),
    ("Which animal's feet are also adapted for sticking to smooth surfaces?", ["Madagascar day gecko", "Boa constrictor"], "Adaptations", "natural science"),
    ("What is the capital of Utah?", ["Salt Lake City", "Provo", "Denver", "Santa Fe"], "Geography", "social science"),
    ("Which solution has a higher concentration of pink particles?", ["Solution A", "Solution B", "neither; their concentrations are the same"], "Chemistry", "natural science"),
    ("Think about the magnetic force between the magnets in each pair. Which of the following statements is true?", ["The magnitude of the magnetic force is the same in both pairs.", "The magnitude of the magnetic force is smaller in Pair 1.", "The magnitude of the magnetic force is smaller in Pair 2."], "Physics", "natural science"),
    ("Which type of sentence is this?", ["simple", "compound", "complex", "compound-complex", "none"], "Grammar", "language science"),
]
SQA_HINTS = ["", "Figure: Utah.", "The diagrams below show two pure samples of gas in identical closed, rigid containers.\nEach colored ball represents one gas particle.", "Read the text about an animal.\nGeckos are lizards."]


def gen_scienceqa():
    u = lmms_ref.task_module("scienceqa.utils")
    kwargs = {"format": "default", "pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."}
    docs = []
    for i, (q, choices, topic, subject) in enumerate(SQA * 4):
        docs.append({
            "question": q, "choices": choices, "answer": rng.randrange(len(choices)), "hint": SQA_HINTS[i % len(SQA_HINTS)],
            "task": "closed choice", "grade": f"grade{3 + i % 6}", "subject": subject, "topic": topic,
            "category": "Geography" if subject == "social science" else "Physics", "skill": "Read a map", "lecture": "Maps have four cardinal directions.", "solution": "Look at the map.",
        })
    extra = extra_common() + ["West Virginia", "Solution A", "(A) West Virginia", "a. simple", "A. simple", "AB.", "Ab", "ϒ.", "ϒ", "B. .", "C.D.", "aa"]
    responses = common.adversarial_responses(rng, extra)
    cases = []
    k = 0
    while len(cases) < N_CASES:
        for r in responses[: N_CASES - len(cases)]:
            d = docs[k % len(docs)]
            k += 1
            if k > len(responses) and rng.random() < 0.3:  # first pass: every response as it is
                r = rng.choice(["ABCDE"[d["answer"]], "abcde"[d["answer"]] + ".", " " + "ABCDE"[d["answer"]] + " "]).strip()
            cases.append(case(d, r, u.sqa_doc_to_text(d, kwargs), ["image"], target=u.sqa_doc_to_target(d)))
    cases = process_all(u.sqa_process_results, cases, responses)
    vals = [c["values"]["exact_match"] for c in cases]
    em, _ = metrics_modules()
    results = {"exact_match,none": em.mean(vals), "exact_match_stderr,none": em.mean_stderr(vals)}
    common.write_fixture("scienceqa_img", cases, results, GENERATOR)
    import pyarrow as pa

    schema = pa.schema([("image", common.image_type()), ("question", pa.string()), ("choices", pa.list_(pa.string())), ("answer", pa.int8())]
                       + [(c, pa.string()) for c in ["hint", "task", "grade", "subject", "topic", "category", "skill", "lecture", "solution"]])
    rows = [dict(d, image=common.image_struct(common.PHOTO_NAMES[k % 7], 32)) for k, d in enumerate(docs[:4])]
    common.write_parquet("lmms-lab/ScienceQA", rows, schema, split="test", config="ScienceQA-IMG")


# ---------------------------------------------------------------- mmstar

MMSTAR_L2 = {
    "coarse perception": ["image scene and topic", "image style & quality", "image emotion"],
    "fine-grained perception": ["object counting", "recognition", "localization"],
    "instance reasoning": ["single-instance reasoning", "cross-instance attribute reasoning", "cross-instance relation reasoning"],
    "logical reasoning": ["code & sequence reasoning", "diagram reasoning", "common reasoning"],
    "science & technology": ["biology & chemistry & physics", "electronics & energy & mechanical eng.", "geography & earth science & agriculture"],
    "math": ["geometry", "numeric commonsense and calculation", "statistical reasoning"],
}
MMSTAR_Q = [
    "Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase is on the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is beneath the book.",
    "What is the main feature in the background of the image?\nOptions: A: A lake, B: A mountain range, C: A forest, D: A city skyline",
    "How many apples are there in the image? Please answer yes or no.\nOptions: A: 3, B: 4, C: 5, D: 6",
    " As shown in the figure, AB is the diameter of circle O, what is the degree of angle BCD?\nOptions: A: 30°, B: 40°, C: 50°, D: 60° \n",
    "Which mood does this image convey?\nOptions: A: Cozy, B: Anxious, C: Happy, D: Angry",
]


def gen_mmstar():
    u = lmms_ref.task_module("mmstar.utils")
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly"}
    docs = []
    i = 0
    for cat, l2s in MMSTAR_L2.items():
        for l2 in l2s:
            for _ in range(3):
                docs.append({"index": i, "question": MMSTAR_Q[i % len(MMSTAR_Q)], "answer": "ABCD"[rng.randrange(4)], "category": cat, "l2_category": l2,
                             "meta_info": {"source": "MMBench", "split": "val", "image_path": f"images/{i}.jpg"}})
                i += 1
    extra = extra_common() + ["option b", "Option C.", "option ", "option", "the answer is ", "the answer is d", "The answer is (A)", "(", "(b", "( b", "\na", "b\nc", "The answer is\nB", "ǅ", "A lake", "The suitcase is beneath the bed."]
    responses = common.adversarial_responses(rng, extra)
    cases = []
    k = 0
    while len(cases) < N_CASES:
        for r in responses[: N_CASES - len(cases)]:
            d = docs[k % len(docs)]
            k += 1
            if k > len(responses) and rng.random() < 0.3:  # first pass: every response as it is
                a = d["answer"]
                r = rng.choice([a, a.lower(), f"({a})", f"Option {a}", f"The answer is {a}", f"{a}. foo"])
            cases.append(case(d, r, u.mmstar_doc_to_text(d, kwargs), ["image"]))
    cases = process_all(u.mmstar_process_results, cases, responses)
    metrics = list(MMSTAR_L2) + ["average"]
    results = {}
    for m in metrics:
        vals = [c["values"][m] for c in cases if m in c["values"]]
        results[f"{m},none"] = u.mmstar_aggregate_results(vals)
        results[f"{m}_stderr,none"] = "N/A"
    common.write_fixture("mmstar", cases, results, GENERATOR)
    import pyarrow as pa

    meta = pa.struct([("source", pa.string()), ("split", pa.string()), ("image_path", pa.string())])
    schema = pa.schema([("index", pa.int64()), ("question", pa.string()), ("image", common.image_type()), ("answer", pa.string()),
                        ("category", pa.string()), ("l2_category", pa.string()), ("meta_info", meta)])
    rows = [dict(d, image=common.image_struct(common.PHOTO_NAMES[k % 7], 32)) for k, d in enumerate(docs[:4])]
    # The Hub repo keeps one file at its root, mmstar.parquet (the card maps split `val` to it).
    import pyarrow.parquet as pq

    path = common.DATA_DIR / "Lin-Chen" / "MMStar" / "mmstar.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    print(f"wrote {path.relative_to(common.ROOT)} ({len(rows)} rows)")
    # Its card's configs: block (reconstructed: `load_dataset("Lin-Chen/MMStar", split="val")`
    # reads mmstar.parquet as split `val`), which is how the dataset layer finds the file.
    (path.parent / "README.md").write_text(
        "---\nconfigs:\n- config_name: val\n  data_files:\n  - split: val\n    path: mmstar.parquet\n---\n"
        "# MMStar (fixture: 4 rows in the Hub's layout)\n"
    )


# ---------------------------------------------------------------- realworldqa

RWQA = [
    ("In which direction is the front wheel of the car on the right side facing?\n\nA. Left\nB. Straight\nC. Right\n\nPlease answer directly with only the letter of the correct option and nothing else.", "C"),
    ("How many pedestrians are there?\nPlease answer directly with a single word or number.", "2"),
    ("Is the traffic light green?\nPlease answer directly with a single word or number.", "Yes"),
    ("What is the closest object to the camera?\nA. A red car\nB. A bicycle\nC. A traffic cone\nD. A.B. sign\nPlease answer directly with only the letter of the correct option and nothing else.", "A"),
    ("Which lane is the truck in?\nA. the left lane\nB. the middle lane\nC. the left lane\nPlease answer directly with only the letter of the correct option and nothing else.", "B"),
    ("How far is the sign?\nA. 5 m\nB. 10.5 m\nC.   \nD. more than 20 m\nPlease answer directly with only the letter of the correct option and nothing else.", "D"),
    ("  Can the car turn left here? Answer yes or no.  ", "No"),
    ("What colour is the bus? X. red\nA.\tblue\nB. yellow", "A"),
]


def gen_realworldqa():
    u = lmms_ref.task_module("realworldqa.utils")
    em, hf = metrics_modules()
    kwargs = {"pre_prompt": "", "post_prompt": ""}
    docs = [{"question": q, "answer": a} for q, a in RWQA]
    f1 = u.NumberWordsToDigitsFilter()
    f2 = u.MultiChoiceRegexFilter(regex_pattern="(\\([A-Z]\\))", group_select=0, ignore_case=True, ignore_punctuation=True)
    extra = extra_common() + ["Left", "left", "Right.", "Straight!", "A red car", "a red car", "The red car", "A bicycle.", "the left lane", "the middle lane", "5 m", "10.5 m", "more than 20 m",
                              "one", "ONE", "Two", "ten", "eleven", "zero.", "2.", "Yes!", "yes.", "(No)", "blue", "yellow", "A.B. sign", "AB sign", "x = 2", "two pedestrians", "_C_", "C²", "C\u0301", "e\u0301", "\x1cC", "C\x00"]
    responses = common.adversarial_responses(rng, extra)
    cases = []
    k = 0
    while len(cases) < N_CASES:
        for r in responses[: N_CASES - len(cases)]:
            d = docs[k % len(docs)]
            k += 1
            if k > len(responses) and rng.random() < 0.3:  # first pass: every response as it is
                a = d["answer"]
                texts = {chr(65 + n): t for n, t in enumerate(__import__("re").findall(r"\b[A-Z]\.\s+([^\n]*)", d["question"]))}
                r = rng.choice([a, f"({a})", f"{a}.", a.lower(), texts.get(a, a), {"2": "two", "Yes": "Yes.", "No": "no"}.get(a, a)])
            mid = f1.apply([[r]], [d])
            filtered = f2.apply(mid, [d])[0]
            cases.append(case(d, r, u.realworldqa_doc_to_text(d, kwargs), ["image"], filtered=filtered))

    def process(doc, results):
        # ConfigurableTask.process_results for generate_until with no process_results of its
        # own: exact_match (HF evaluate) of [result] against [doc_to_target(doc)].
        score = hf.exact_match_hf_evaluate(references=[doc["answer"]], predictions=[results[0]], ignore_case=True, ignore_punctuation=True)
        return {"exact_match": float(score["exact_match"])}

    cases = process_all(process, cases, responses)
    vals = [c["values"]["exact_match"] for c in cases]
    results = {"exact_match,flexible-extract": em.mean(vals), "exact_match_stderr,flexible-extract": em.mean_stderr(vals)}
    common.write_fixture("realworldqa", cases, results, GENERATOR, "filter_list has one filter, flexible-extract (NumberWordsToDigitsFilter then realworldqa's own MultiChoiceRegexFilter).")
    import pyarrow as pa

    schema = pa.schema([("image", common.image_type()), ("question", pa.string()), ("answer", pa.string())])
    rows = [dict(d, image=common.image_struct(common.PHOTO_NAMES[k % 7], 32)) for k, d in enumerate(docs[:4])]
    common.write_parquet("lmms-lab/RealWorldQA", rows, schema, split="test")


# ---------------------------------------------------------------- seedbench

SEED = [
    ("How many towels are in the image?", ["One", "Two", "Three", "Four"], "image", 5),
    ("What is the man doing in the video?", ["Opening a door", "Closing a door", "Sitting down", "Running"], "video", 10),
    ("Where is the dog located?", ["On the sofa", "Under the table", "In the garden", "On the bed"], "image", 3),
    ("What is the relation between the two people?", ["Friends", "Strangers", "Family", "Colleagues"], "image", 4),
    ("What action is performed after picking up the cup?", ["drinking", "pouring", "washing", "putting down"], "video", 11),
]


def gen_seedbench():
    u = lmms_ref.task_module("seedbench.utils")
    docs = []
    for i, (q, ch, dt, qt) in enumerate(SEED * 4):
        n_img = 1 if dt == "image" else 8
        docs.append({"answer": "ABCD"[rng.randrange(4)], "choice_a": ch[0], "choice_b": ch[1], "choice_c": ch[2], "choice_d": ch[3],
                     "data_id": f"{1454426 + i}.jpg" if dt == "image" else f"v_{i:04d}.mp4", "data_type": dt, "question": q,
                     "question_id": str(100 + i), "question_type_id": qt, "image": [FakeImage(f"image[{j}]") for j in range(n_img)]})
    extra = extra_common() + ["Two", "a.", " b", "İA", "ǅ", "ab", "Ab", "\u00e9", "e\u0301", "A\u0301", "猫A"]
    responses = common.adversarial_responses(rng, extra)
    cases = []
    k = 0
    while len(cases) < N_CASES:
        for r in responses[: N_CASES - len(cases)]:
            d = docs[k % len(docs)]
            k += 1
            if k > len(responses) and rng.random() < 0.3:  # first pass: every response as it is
                r = rng.choice([d["answer"], d["answer"].lower() + ".", f"{d['answer']}. {d['choice_a']}"])
            visual = [im.name for im in u.seed_doc_to_visual(d)]
            cases.append(case(d, r, u.seed_doc_to_text(d), ["image"], visual=visual))
    cases = process_all(u.seed_process_result, cases, responses)
    results = {}
    for m in ["seed_image", "seed_video", "seed_all"]:
        vals = [c["values"][m] for c in cases if m in c["values"]]
        results[f"{m},none"] = u.seed_aggregation_result(vals)
        results[f"{m}_stderr,none"] = "N/A"
    common.write_fixture("seedbench", cases, results, GENERATOR, "lmms-eval keeps every row of the test split, image and video (8 frames as images) alike.")
    import pyarrow as pa

    schema = pa.schema([("answer", pa.string())] + [(f"choice_{c}", pa.string()) for c in "abcd"]
                       + [("data_id", pa.string()), ("data_type", pa.string()), ("question", pa.string()), ("question_id", pa.string()),
                          ("question_type_id", pa.int16()), ("image", pa.list_(common.image_type()))])
    rows = []
    for k, d in enumerate(docs[:4]):
        n = 1 if d["data_type"] == "image" else 3  # shortened video rows: a few frames
        rows.append(dict(d, image=[common.image_struct(common.PHOTO_NAMES[(k + j) % 7], 32) for j in range(n)]))
    common.write_parquet("lmms-lab/SEED-Bench", rows, schema, split="test")


# ---------------------------------------------------------------- mmmu_val

MMMU_MC = [
    ("Art_Theory", "Who painted <image 1>?", ["Claude Monet", "Vincent van Gogh", "Pablo Picasso", "Salvador Dalí"]),
    ("Accounting", "Each of the following situations relates to a different company. <image 1> For company B, find the missing amounts.", ["$63,020", "$58,410", "$71,320", "$77,490"]),
    ("Physics", "A block of mass m slides on <image 1>. What is its acceleration?", ["2 m/s^2", "4.9 m/s^2", "9.8 m/s^2", "0"]),
    ("Computer_Science", "Which of the graphs <image 1> and <image 2> is bipartite?", ["<image 1>", "<image 2>", "both", "neither"]),
    ("Clinical_Medicine", "What is the most likely diagnosis?", ["Pneumonia", "Pulmonary embolism", "Pneumothorax", "Lung cancer", "Heart failure"]),
    ("Math", "Compute the integral shown in <image 3>.", ["1/2", "1", "2", "e"]),
    ("Music", "Which interval is shown in <image 1>?", ["A", "B", "A minor third", "A major sixth"]),
    ("Economics", "What is the equilibrium price?", ["$10", "$20", "$30"]),
    ("Sociology", "Which theorist is associated with the concept in <image 1> and <image 1>?", ["Durkheim", "Weber", "Marx", "Simmel", "Parsons", "Goffman"]),
    ("Chemistry", "Which compound is shown? <image 1> <image 2> <image 4>", ["methane", "ethane", "propane", "butane"]),
]
MMMU_OPEN = [
    ("Finance", "What is the NPV of the project in <image 1>? (in dollars)", "1,000"),
    ("Math", "Find x in <image 1>.", "3.5"),
    ("Physics", "What is the speed of the wave?", "12"),
    ("Electronics", "What is the output voltage of the circuit <image 1>?", "-2.4"),
    ("Geography", "Which country is highlighted in <image 1>?", "Brazil"),
    ("Chemistry", "What is the pH of the solution?", "7"),
    ("Energy_and_Power", "Find the efficiency (%).", "0.45"),
    ("Literature", "Who wrote the poem?", "a"),
    ("Biology", "How many chromosomes?", "46"),
    ("Architecture_and_Engineering", "Compute the moment.", "1.2e3"),
]
MMMU_MC_EXTRA = [
    "The answer is (B) because of the reflection.", "I think the answer is B. Vincent van Gogh painted this one.",
    "Based on the image, it was painted by Claude Monet, the famous impressionist.",
    "Looking at the figure carefully, the answer should be pneumonia or maybe heart failure in the end",
    "Among the choices, both $63,020 and $58,410 look plausible but I pick $58,410 overall.",
    "(A) (B) (C)", "B C", "D.", "(E)", "E", "A)", " (C) ", "A, B", "Answer: (D)", "The correct answer is C.", "The answer is  A  ",
    "it is none of the options given here really", "1/2", "the answer is 1 of course", "Option 2 is correct",
    "This is a minor third interval in the score", "Weber.", "I would say that the answer is durkheim for sure",
    "Answer:", "'B'", "B'", ",.!?;:'A':;?!.,", "I cannot determine the answer from the image provided here",
]
MMMU_OPEN_EXTRA = [
    "The answer is 1,000.", "So the NPV is $1,000", "x = 3.5", "x = 3.50", "Therefore, x is 3.5 cm.", "The final answer is 12 m/s",
    "12.0", "The speed is 12.", "-2.4 V", "The output voltage is -2.4V", "Brazil", "It is Brazil.", "brazil", "the highlighted country is Brazil",
    "7", "pH = 7.0", "so the pH is 7", "45%", "0.45", "The efficiency is 45 %", "A", "a", "The poet is a", "46", "There are 46 chromosomes.",
    "1.2e3", "1200", "1,200 N m", "The moment is 1.2e3 N·m.", "Step 1: compute.\nStep 2: the result is 5\nSo the answer is 12",
    "The answer is 3.\nBut actually the result is 4", "It could be 7 or 8", "Thus 1,000,000", "is .5", "answer 1e-3", "=",
    "so :", "the answer is .", "Hence result 12,34 and 1,234", "Therefore ", "final", "12 is the answer", "x=1/2",
    "The value is ١٢ in Arabic digits", "１２", "1_000", "so 1_000", "The answer is 12.", "The answer is 12. The speed is high.",
    "The answer is 12. so", "Is it 5? is 6", "result = 3,5", "So 5e", "-5e-3", "− 5", "5e3e2", "2,000,000.5",
]


def gen_mmmu():
    u = lmms_ref.task_module("mmmu.utils")
    # list(set(...)) in parse_open_response orders by string hashes (PYTHONHASHSEED); an
    # insertion-ordered set keeps the same elements in first-seen order, the order the Rust
    # port returns. Nothing else in the module depends on set order (doc_to_visual sorts).
    u.set = lambda xs=(): dict.fromkeys(xs)
    docs = []
    n = 0
    for rep in range(3):
        for subj, q, opts in MMMU_MC:
            n += 1
            docs.append(mmmu_doc(n, subj, q, repr(opts), "ABCDEFG"[rng.randrange(len(opts))], "multiple-choice"))
        for subj, q, a in MMMU_OPEN:
            n += 1
            docs.append(mmmu_doc(n, subj, q, "[]", a, "open"))
    # an options string with quotes and escapes, as the dataset has some
    docs.append(mmmu_doc(n + 1, "History", 'Which "treaty" is shown in <image 1>?', "['Treaty of Paris', \"Treaty of Ghent\", 'Treaty of Versailles\\n(1919)', 'None of \\'these\\'']", "C", "multiple-choice"))
    responses = common.adversarial_responses(rng, extra_common() + MMMU_MC_EXTRA + MMMU_OPEN_EXTRA)
    cases = []
    k = 0
    while len(cases) < N_CASES:
        for r in responses[: N_CASES - len(cases)]:
            d = docs[k % len(docs)]
            k += 1
            if k > len(responses) and rng.random() < 0.25:  # first pass: every response as it is
                r = d["answer"] if d["question_type"] == "open" else rng.choice([d["answer"], f"({d['answer']})", f"The answer is {d['answer']}."])
            visual = [im.name for im in u.mmmu_doc_to_visual(d)]
            cases.append(case(d, r, u.mmmu_doc_to_text(d), [f"image_{i}" for i in range(1, 8)], visual=visual))
    cases = process_all(u.mmmu_process_results, cases, responses)
    score = u.mmmu_aggregate_results([c["values"]["mmmu_acc"] for c in cases])
    results = {"mmmu_acc,none": score, "mmmu_acc_stderr,none": "N/A"}
    notes = (
        "parse_open_response's list(set(...)) is taken in first-seen order (an insertion-ordered "
        "set patched into the module): Python's set order depends on PYTHONHASHSEED. The "
        "`submission` value is returned by process_results but has no metric_list entry."
    )
    common.write_fixture("mmmu_val", cases, results, GENERATOR, notes)
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()), ("explanation", pa.string())]
                       + [(f"image_{i}", common.image_type()) for i in range(1, 8)]
                       + [(c, pa.string()) for c in ["img_type", "answer", "topic_difficulty", "question_type", "subfield"]])
    rows = []
    for k, d in enumerate([docs[0], docs[3], docs[9], docs[10], docs[14]]):
        row = {c: d[c] for c in d if not c.startswith("image_")}
        for i in range(1, 8):
            row[f"image_{i}"] = common.image_struct(common.PHOTO_NAMES[(k + i) % 7], 32) if d[f"image_{i}"] is not None else None
        rows.append(row)
    common.write_parquet("lmms-lab/MMMU", rows, schema, split="validation")


def mmmu_doc(n, subject, question, options, answer, qtype):
    doc = {"id": f"validation_{subject}_{n}", "question": question, "options": options, "explanation": "",
           "img_type": "['Diagrams']", "answer": answer, "topic_difficulty": ["Easy", "Medium", "Hard"][n % 3],
           "question_type": qtype, "subfield": subject.replace("_", " ")}
    used = sorted({int(t) for t in __import__("re").findall(r"<image (\d+)>", question + options)} | {1})
    for i in range(1, 8):
        doc[f"image_{i}"] = FakeImage(f"image_{i}") if i in used else None
    return doc


if __name__ == "__main__":
    only = sys.argv[1:]
    for name, fn in [("mmbench_en_dev", gen_mmbench), ("scienceqa_img", gen_scienceqa), ("mmstar", gen_mmstar),
                     ("realworldqa", gen_realworldqa), ("seedbench", gen_seedbench), ("mmmu_val", gen_mmmu)]:
        if not only or name in only:
            rng.seed(name)  # each task's own stream: one task can be regenerated alone
            MMB_MODE.clear()
            fn()
