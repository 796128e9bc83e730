"""Fixtures for the multi-image and video recipes of crates/onevision-eval/src/tasks/multi_video/:
muirbench, llava_interleave_bench (3 tasks), videomme, nextqa_mc_test, mvbench (20 tasks), mlvu,
egoschema_subset, checked against lmms-eval 0.2.1's own functions.

For every task it builds realistic documents in the dataset's schema, pairs them with adversarial
responses (common.adversarial_responses plus per-document ones: option texts, "(B)", "B. text",
...), and records, per case, lmms-eval's `doc_to_text` (as "prompt"), the yaml's filter, and
`process_results`; then the yaml's aggregation over all cases. Python's global `random` is seeded
with 0 once per task (the evaluator's `--seed 0`) and consumed only by process_results, in case
order (nextqa's and egoschema's parsers fall back to `random.choice`).

It also writes, per task, a small parquet file in the Hub's column schema (fixtures/eval/data/)
and, for the video tasks, tiny videos made with the ffmpeg CLI from fixtures/images/photos under
fixtures/eval/videos/<task>/, laid out as each recipe's `--video-dir` layout expects.

Column schemas, and where they come from:
- MUIRBENCH/MUIRBENCH (data/test-*): idx, task, image_relation, image_type, question,
  options (list<string>), answer, image_list (list<image>), counterpart_idx -- from
  muirbench/utils.py's reads and the dataset card (parquet, split test);
- lmms-lab/LLaVA-NeXT-Interleave-Bench (<config>/test-*): from the dataset card's dataset_info
  (in_domain: sample_id int64, sub_task, image_0..image_11, question, answer, question_type;
  out_of_domain: + choice_list, dataset, split, num_sample int64, task_instruction, image_0..4;
  multi_view_in_domain: sample_id, sub_task, image_0..7, conversations list<{from, value}>,
  task_instruction_id int64, task_instruction null, question_type). The card revision we could
  read lists no `answer` for multi_view_in_domain, but interleave_process_results and the yaml's
  doc_to_target read doc["answer"], so the fixture has one (without it lmms-eval itself fails);
- lmms-lab/Video-MME (videomme/test-*): video_id, duration, domain, sub_category, url, videoID,
  question_id, task_type, question, options (list<string>), answer -- videomme/utils.py's reads
  and the dataset card;
- lmms-lab/NExTQA (MC/test-*): video int64, frame_count, width, height, question, answer int64,
  qid int64, type, a0..a4 -- nextqa/utils.py's reads and the dataset card;
- OpenGVLab/MVBench: laid out as the Hub repo is: README.md whose `configs:` block maps each
  sub-task config to `data_files: json/<sub_task>.json` (split train; the card's shape, read with
  the `search` tool, is described in make_dataset_json_fixtures.py), and json/<sub_task>.json, a
  JSON list of records (datasets' json builder reads it): video, question, candidates, answer --
  mvbench/utils.py's reads -- and, for the sub-tasks whose clips are bounded (Ask-Anything's
  mvbench data_list: action_sequence, action_prediction, object_interaction,
  action_localization, episodic_reasoning), start/end in seconds, mixing integers and floats
  as a float column does (the builder makes every value a float);
- sy1998/temp (data/test-*, MLVU as lmms-eval 0.2.1 reads it): video_name, question, answer,
  task_type -- only the columns mlvu/utils.py reads (the repo has no card we could read);
- lmms-lab/egoschema (Subset/test-*): question_idx, question, video_idx, option (list<string>),
  answer (string) -- egoschema/utils.py's reads.

Run: /opt/lmms-venv/bin/python tools/eval_fixtures/make_multi_video.py
"""

import ast
import json
import math
import random
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import lmms_ref  # noqa: E402

GEN = "tools/eval_fixtures/make_multi_video.py"
VIDEOS = common.ROOT / "fixtures" / "eval" / "videos"


def _lmms_mean_fns():
    """lmms_eval/api/metrics.py's `mean` and `mean_stderr`, exec'd from its source (the module
    imports sacrebleu, sklearn, torch, ... which the venv does not have)."""
    p = lmms_ref.lmms_eval_dir() / "api" / "metrics.py"
    tree = ast.parse(p.read_text())
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("mean", "sample_stddev", "mean_stderr")]
    for f in fns:
        f.decorator_list = []
    ns = {"math": math}
    exec(compile(ast.Module(body=fns, type_ignores=[]), str(p), "exec"), ns)
    return ns["mean"], ns["mean_stderr"]


LMMS_MEAN, LMMS_MEAN_STDERR = _lmms_mean_fns()


def mixed_responses(rng, docs, per_doc, extra=(), n=300):
    """n (doc, response) pairs: for two thirds the base adversarial responses (and `extra`) in
    turn, on varied documents (with n = 300 every one of them at least once), and for a third
    per-document responses (`per_doc(doc, rng)` -> list)."""
    base = common.adversarial_responses(rng, extra)
    out = []
    bi = 0
    for i in range(n):
        doc = docs[i % len(docs)]
        if i % 3 == 2:
            out.append((doc, rng.choice(per_doc(doc, rng)).strip()))
        else:
            out.append((doc, base[bi % len(base)]))
            bi += 1
    return out


def run_cases(pairs, doc_to_text, filt, process, rand_seed=True):
    """The evaluator's order: random.seed(0), then per case filter + process_results."""
    if rand_seed:
        random.seed(0)
    cases = []
    for doc, resp in pairs:
        filtered = filt(resp, doc)
        values = process(doc, [filtered])
        cases.append({"doc": doc, "prompt": doc_to_text(doc), "response": resp, "filtered": filtered, "values": values})
    return cases


def custom_results(cases, metric, agg, filter_name="none"):
    vals = [c["values"][metric] for c in cases]
    return {f"{metric},{filter_name}": agg(vals), f"{metric}_stderr,{filter_name}": "N/A"}


def identity(resp, doc):
    return resp


# ---------------------------------------------------------------------------------------------
# tiny videos


def make_video(path, photos, seconds=2, fps=4, side=32):
    """A `seconds`-long clip cycling through `photos`, <= side px, with the ffmpeg CLI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        n = seconds * fps
        for i in range(n):
            (Path(tmp) / f"f{i:03d}.png").write_bytes(common.photo(photos[i * len(photos) // n], side, "PNG"))
        codec = ["-c:v", "mpeg4", "-q:v", "10"] if path.suffix == ".avi" else ["-c:v", "libx264", "-crf", "40", "-pix_fmt", "yuv420p"]
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-framerate", str(fps), "-i", f"{tmp}/f%03d.png",
             "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", *codec, "-map_metadata", "-1", "-fflags", "+bitexact", str(path)],
            check=True,
        )


def make_frames(folder, photos, n=6, side=32):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i + 1:05d}.jpg").write_bytes(common.photo(photos[i % len(photos)], side, "JPEG"))


def reset_videos(task):
    d = VIDEOS / task
    if d.exists():
        shutil.rmtree(d)
    return d


# ---------------------------------------------------------------------------------------------
# muirbench

def gen_muirbench(rng):
    U = lmms_ref.task_module("muirbench.utils")
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."}
    flt = U.MultiChoiceRegexFilter(regex_pattern="([A-Z])\\.", group_select=0, ignore_case=True, ignore_punctuation=True)
    tasks = [
        ("Counting", "Complementary", "Photograph", "How many mittens are shown across the images?", ["Four", "Three", "One", "None of the choices provided", "Two"]),
        ("Visual Retrieval", "Multiview", "Photograph", "Which image shows the same building as <image>?", ["<image>", "<image>", "<image>", "None of the choices provided"]),
        ("Action Understanding", "Temporal", "Photograph", "<image><image><image> What is the person doing across these frames?", ["Cooking", "Running", "Reading a book", "Sleeping"]),
        ("Geographic Understanding", "Independent", "Maps", "Which map shows the country highlighted in the first image?", ["<image>", "<image>", "<image>", "<image>", "None of the choices provided"]),
        ("Diagram Understanding", "Similar", "Slides", "Which slide matches the chart described?\nChart: sales rose 20% in 2021.", ["The first slide", "The second slide", "The third slide", "None of the choices provided"]),
        ("Scene Understanding", "Scenes", "Photograph", "Image 1: <image>\nImage 2: <image>\nIn which image is the cat on the sofa?", ["Image 1", "Image 2", "Both", "Neither"]),
        ("Difference Spotting", "Similar", "Drawings", "Which image is different from the others?", ["A", "B", "C", "D"]),
        ("Cartoon Understanding", "Narrative", "Cartoons", "What is the story of the comic strip?", ["A dog chases a ball.", "A cat sleeps all day.", "Two friends go fishing.", "None of the choices provided"]),
        ("Image-Text Matching", "Independent", "Photograph", "Which caption matches <image>?", ["A man's hat on a table", "Ein Hund im Schnee", "猫在沙发上", "None of the choices provided"]),
        ("Ordering", "Temporal", "Photograph", "Order the images: <image> <image> <image> <image>", ["1-2-3-4", "2-1-4-3", "4-3-2-1", "3-1-2-4"]),
        ("Attribute Similarity", "Cropped/Zoomed", "Medical", "Which scan shows the same lesion as the first image?", ["The second", "The third", "The fourth", "None of the choices provided"]),
        ("Visual Grounding", "Cropped/Zoomed", "Photograph", "Where is the red car? Answer: ", ["Top left", "Top right", "Bottom left", "Bottom right"]),
    ]
    docs = []
    for i in range(36):
        task, rel, typ, q, opts = tasks[i % len(tasks)]
        opts = list(opts)
        if i >= len(tasks):
            rng.shuffle(opts)
        ans = string.ascii_uppercase[rng.randrange(len(opts))]
        docs.append({"idx": f"{task.lower().replace(' ', '_')}_{i}", "task": task, "image_relation": rel, "answer": ans,
                     "image_type": typ, "question": q, "options": opts, "counterpart_idx": f"{task.lower().replace(' ', '_')}_{i + 1}"})

    def per_doc(doc, rng):
        letters = string.ascii_uppercase[: len(doc["options"])]
        L = rng.choice(letters)
        t = doc["options"][letters.index(L)]
        return [L, f"{L}.", f"{L}. {t}", f" {L}. {t}", f"({L})", f"({L}) {t}", t, L.lower() + ".", L.lower(), f"{L}.{t}",
                f"The answer is {L}.", f"{doc['answer']}", f"{doc['answer'].lower()}", f"{doc['answer']}. ", f"\t{L}.", f"{L} .", f"{L}:"]

    pairs = mixed_responses(rng, docs, per_doc, extra=["Ａ.", "a.", "É.", "AB.", "A.B.", "\u00a0B.", "B.\nC.", "AA", "B\u3000"], n=300)
    cases = run_cases(pairs, lambda d: U.muir_doc_to_text(d, kwargs), lambda r, d: flt.apply([[r]], [d])[0], U.muir_process_results)
    # lmms-eval compares pred/answer with str.lower()/strip(): exercise Unicode case mapping too.
    results = custom_results(cases, "muirbench_score_overall", U.muir_aggregation, "flexible-extract")
    common.write_fixture("muirbench", cases, results, GEN, notes="filter: muirbench/utils.py MultiChoiceRegexFilter (^\\s*([A-Z])\\. else the response)")
    rows = []
    for i, d in enumerate(docs[:4]):
        r = dict(d)
        r["image_list"] = [common.image_struct(n, 32) for n in common.PHOTO_NAMES[i: i + 2 + i % 2]]
        rows.append(r)
    import pyarrow as pa
    schema = pa.schema([("idx", pa.string()), ("task", pa.string()), ("image_relation", pa.string()), ("image_type", pa.string()),
                        ("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
                        ("image_list", pa.list_(common.image_type())), ("counterpart_idx", pa.string())])
    common.write_parquet("MUIRBENCH/MUIRBENCH", rows, schema, split="test")


# ---------------------------------------------------------------------------------------------
# llava_interleave_bench

OE_ANSWERS = [
    "The left image has a red car while the right image has a blue car.",
    "There is no difference.",
    "Make the sky darker and add stars.",
    "The boy runs to the park. He meets his dog there. They play together.",
    "A family is having dinner at home... Then they watch TV.",
    "the cat is on the mat",
    "Two people are walking on the beach at sunset",
    "It is a photo of the Eiffel Tower. The tower is tall.",
    "猫在沙发上睡觉",
    "Yes",
    "The object moved to the left. The cube is now behind the sphere.",
    "mid-century   modern\tchair.  Wooden legs.",
]


def gen_interleave(rng):
    U = lmms_ref.task_module("llava_interleave_bench.utils")
    kwargs = {"oe_post_prompt": "", "mcq_post_prompt": ""}
    oe_subtasks = ["Spot-the-Diff", "Birds-to-Words", "CLEVR-Change", "IEdit", "HQ-Edit", "MagicBrush", "AESOP", "FlintstonesSV",
                   "PororoSV", "VIST", "WebQA", "TQA", "OCR-VQA", "DocVQA", "Unlisted-Task"]
    mc_subtasks = ["COMICS_Dialogue", "RecipeQA_VisualCloze", "MIT-States_StateCoherence", "MIT-States_PropertyCoherence", "VISION",
                   "RecipeQA_ImageCoherence", "RAVEN", "NLVR2_Mantis", "QBench"]
    mc_questions = [
        "<image>\n<image>\nWhich image shows the state after cooking?\nA. The first image\nB. The second image\nYour answer is:",
        "Image 1: <image>\nImage 2: <image>\nIs the statement true? The left image contains two dogs.\nA. True\nB. False",
        "<image><image><image><image>Pick the image that completes the sequence.\nA. <image>\nB. <image>\nC. <image>\nD. <image>",
        "Which of the following is the odd one out? (A) apple (B) banana (C) car (D) pear",
        "Choose the correct recipe step. A. Boil water B. Add pasta C. Serve D. Chop onions E. Stir",
    ]
    mc_answers = ["A", "B", "C", "(D)", "E", "A. The first image", "b", "C. car", "True", "(B)"]
    oe_questions = [
        "<image>\n<image>\nWhat is the difference between the two images?",
        "Image 1: <image> Image 2: <image> Describe the edit that turns the first image into the second.",
        "<image><image><image>Write the next sentence of the story.",
        "What is written on the sign in <image>?",
        "Describe the scene.",
    ]
    fixtures = {}

    def oe_doc(i, sub, conv=None):
        d = {"sample_id": 1000 + i, "sub_task": sub}
        if conv is None:
            d["question"] = oe_questions[i % len(oe_questions)]
        d["answer"] = OE_ANSWERS[i % len(OE_ANSWERS)]
        d["question_type"] = "open-ended"
        return d

    def per_doc(doc, rng):
        a = doc["answer"]
        if doc["question_type"] == "multi-choice":
            L = rng.choice("ABCDE")
            return [L, f"{L}.", f"{L}. option text", f"({L})", L.lower(), f"The answer is {L}", f"{L})", a, a.lower(), f"Answer: {a}",
                    f"{L}.\nmore", f"'{L}'", f'"{L}"', f"({L}", f"{L}, because", f"I choose {L}.", f"1,000 {L}", f"{L}/{L}", "e. g.", f"{L}!"]
        words = a.split()
        return [a, a.upper(), a.lower(), a + " " + a, " ".join(reversed(words)), " ".join(words[: max(1, len(words) // 2)]),
                a.replace(" ", ",  "), a.replace(".", ""), a + "." * 5, "x " * 300, (a + " ") * 20, "...a...b...", a.replace(" ", "\n"),
                "The " + a, " . ".join(words), "cat cat cat the the mat", "\u00a0" + a]

    # in_domain: questions; every category listed in utils.overall_score, plus an unlisted sub_task
    docs = []
    for i in range(45):
        if i % 3 == 0:
            sub = mc_subtasks[i % len(mc_subtasks)]
            docs.append({"sample_id": 1000 + i, "sub_task": sub, "question": mc_questions[i % len(mc_questions)],
                         "answer": mc_answers[i % len(mc_answers)], "question_type": "multi-choice"})
        else:
            docs.append(oe_doc(i, oe_subtasks[i % len(oe_subtasks)]))
    fixtures["llava_interleave_bench_in_domain"] = (docs, U.doc_to_text)

    # out_of_domain
    docs = []
    ood = [("MathVerse", "multi-choice"), ("SciVerse", "multi-choice"), ("Mantis", "multi-choice"), ("BLINK", "multi-choice"),
           ("QBench", "multi-choice"), ("MathVerse", "open-ended"), ("SciVerse", "open-ended"), ("NLVR2_Mantis", "multi-choice")]
    for i in range(40):
        sub, qt = ood[i % len(ood)]
        if qt == "multi-choice":
            d = {"sample_id": 2000 + i, "sub_task": sub, "question": mc_questions[(i + 1) % len(mc_questions)],
                 "answer": mc_answers[(i + 3) % len(mc_answers)]}
        else:
            d = {"sample_id": 2000 + i, "sub_task": sub, "question": oe_questions[i % len(oe_questions)], "answer": OE_ANSWERS[(i + 5) % len(OE_ANSWERS)]}
        d.update({"choice_list": "['A', 'B', 'C', 'D']" if qt == "multi-choice" else "None", "question_type": qt, "dataset": sub,
                  "split": "test", "num_sample": 1 + i % 4, "task_instruction": "Answer the question based on the images."})
        docs.append(d)
    fixtures["llava_interleave_bench_out_domain"] = (docs, U.doc_to_text)

    # multi_view_in_domain: the conversation is the prompt (json.dumps)
    docs = []
    mv = ["ScanQA", "ALFRED", "nuscenes", "ScanNet_chat", "ScanNet_task"]
    convs = [
        [{"from": "human", "value": "<image>\n<image>\n<image>\nWhat color is the chair next to the table?"}],
        [{"from": "human", "value": "<image><image><image><image>What should the agent do next to put the mug in the sink?"}],
        [{"from": "human", "value": "Here are six camera views <image><image><image><image><image><image>. Is there a \"pedestrian\" crossing?"}],
        [{"from": "human", "value": "<image>\nDescribe the room."}, {"from": "gpt", "value": "A bedroom with a bed."}, {"from": "human", "value": "<image>\nWhere is the lamp? Réponds."}],
        [{"from": "human", "value": "How many chairs are there in the scene?\tCount them."}],
    ]
    for i in range(40):
        docs.append({"sample_id": 3000 + i, "sub_task": mv[i % len(mv)], "conversations": convs[i % len(convs)],
                     "task_instruction_id": i % 7, "task_instruction": None, "question_type": "open-ended",
                     "answer": OE_ANSWERS[(i + 2) % len(OE_ANSWERS)]})
    fixtures["llava_interleave_bench_multi_view"] = (docs, U.doc_to_text_conversation)

    for task, (docs, to_text) in fixtures.items():
        pairs = mixed_responses(rng, docs, per_doc, extra=["A.", "a. b", "(b) is right", "E. e", "F.", "A.\n\nB", "A.   ", "cat, dog; mat", "1.5", "3,000"], n=100)
        random.seed(0)
        cases = []
        skipped = 0
        for doc, resp in pairs:
            try:
                values = U.interleave_process_results(doc, [resp])
            except ValueError:
                # rouge raises "Hypothesis is empty." when the response is only periods: lmms-eval
                # stops the run there; the Rust recipe returns a DocError (unit-tested).
                skipped += 1
                continue
            cases.append({"doc": doc, "prompt": to_text(doc, kwargs), "response": resp, "filtered": resp, "values": values})
        assert skipped < 10, skipped
        results = custom_results(cases, "overall_score", U.overall_score)
        common.write_fixture(task, cases, results, GEN, notes=f"{skipped} responses made only of periods left out (rouge raises ValueError on them)")

    import pyarrow as pa
    img = common.image_type()
    base = [("sample_id", pa.int64()), ("sub_task", pa.string())]
    d_in = fixtures["llava_interleave_bench_in_domain"][0]
    rows = []
    for i, d in enumerate(d_in[:4]):
        r = dict(d)
        for k in range(12):
            r[f"image_{k}"] = common.image_struct(common.PHOTO_NAMES[(i + k) % 7], 32) if k < 2 + i % 2 else None
        rows.append(r)
    schema = pa.schema(base + [(f"image_{k}", img) for k in range(12)] + [("question", pa.string()), ("answer", pa.string()), ("question_type", pa.string())])
    common.write_parquet("lmms-lab/LLaVA-NeXT-Interleave-Bench", rows, schema, split="test", config="in_domain")
    d_out = fixtures["llava_interleave_bench_out_domain"][0]
    rows = []
    for i, d in enumerate(d_out[:4]):
        r = dict(d)
        for k in range(5):
            r[f"image_{k}"] = common.image_struct(common.PHOTO_NAMES[(i + k + 2) % 7], 32) if k < 2 else None
        rows.append(r)
    schema = pa.schema(base + [(f"image_{k}", img) for k in range(5)] + [
        ("question", pa.string()), ("answer", pa.string()), ("choice_list", pa.string()), ("question_type", pa.string()),
        ("dataset", pa.string()), ("split", pa.string()), ("num_sample", pa.int64()), ("task_instruction", pa.string())])
    common.write_parquet("lmms-lab/LLaVA-NeXT-Interleave-Bench", rows, schema, split="test", config="out_of_domain")
    d_mv = fixtures["llava_interleave_bench_multi_view"][0]
    rows = []
    for i, d in enumerate(d_mv[:4]):
        r = dict(d)
        for k in range(8):
            r[f"image_{k}"] = common.image_struct(common.PHOTO_NAMES[(i + k + 4) % 7], 32) if k < 3 else None
        rows.append(r)
    conv_t = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))
    schema = pa.schema(base + [(f"image_{k}", img) for k in range(8)] + [
        ("conversations", conv_t), ("task_instruction_id", pa.int64()), ("task_instruction", pa.null()), ("question_type", pa.string()),
        ("answer", pa.string())])
    common.write_parquet("lmms-lab/LLaVA-NeXT-Interleave-Bench", rows, schema, split="test", config="multi_view_in_domain")


# ---------------------------------------------------------------------------------------------
# videomme

def gen_videomme(rng):
    U = lmms_ref.task_module("videomme.utils")
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."}
    questions = [
        ("What is the man in the red hat doing at the beginning of the video?", ["Cooking pasta.", "Riding a bike.", "Reading a newspaper.", "Playing the guitar."]),
        ("How many goals are scored in the video?", ["1.", "2.", "3.", "4."]),
        ("What does the sign say?", ["\"Open\".", "It's closed.", "Both 'open' and \"closed\".", "C:\\path\\to\\file."]),
        ("Which city is shown in the video?", ["Paris.", "東京.", "São Paulo.", "New York\u200b."]),
        ("What happens after the dog jumps?", ["It runs away.\nThen it sleeps.", "It barks.\tTwice.", "It eats.", "Nothing happens."]),
        ("Why did the speaker mention the data?", ["To show growth of 50%.", "To explain a 1,000-year history.", "To compare A and B.", "None of the above."]),
    ]
    docs = []
    for i in range(30):
        q, opts = questions[i % len(questions)]
        vid = f"{i // 3 + 1:03d}"
        docs.append({
            "video_id": vid, "duration": U.VIDEO_TYPE[i % 3], "domain": U.CATEGORIES[i % len(U.CATEGORIES)],
            "sub_category": U.SUB_CATEGORIES[(i * 7) % len(U.SUB_CATEGORIES)], "url": f"https://www.youtube.com/watch?v=vid{i // 3:08d}",
            "videoID": f"vid{i // 3:08d}", "question_id": f"{vid}-{i % 3 + 1}", "task_type": U.TASK_CATEGORIES[i % len(U.TASK_CATEGORIES)],
            "question": q, "options": [f"{L}. {o}" for L, o in zip("ABCD", opts)], "answer": "ABCD"[rng.randrange(4)],
        })

    def per_doc(doc, rng):
        L = rng.choice("ABCD")
        t = doc["options"]["ABCD".index(L)]
        return [L, t, f"The best answer is {L}.", f"The correct answer is ({L})", f"The answer is: {L}", f"The answer {L}", f"Best answer:Best option: {L}",
                f"The best option isThe correct option is {L}", "the video shows a man riding a bike in the park on a sunny day",
                "The video shows a man riding a bike in the park on a sunny Day", f"the video shows a man riding a bike in the park on a sunny day {L}",
                f"{L.lower()}", f"Option {L}", "Both A and B", "The best answer isThe best answer is", "The answerD", "BEST answer: C"]

    pairs = mixed_responses(rng, docs, per_doc, extra=["ABCD", "dcba", "The", "Best answer:", "Best answer:Best option:", "a b c d e f g h i j k", "a b c d e f g h i j D"], n=300)
    cases = run_cases(pairs, lambda d: U.videomme_doc_to_text(d, kwargs), identity, U.videomme_process_results)
    results = custom_results(cases, "videomme_percetion_score", U.videomme_aggregate_results)
    common.write_fixture("videomme", cases, results, GEN, notes="options as str(doc['options']) (0.2.1); extract_characters_regex; micro accuracy x100")
    import pyarrow as pa
    rows = [docs[i] for i in (0, 3, 6, 9)]
    schema = pa.schema([(k, pa.string()) for k in ("video_id", "duration", "domain", "sub_category", "url", "videoID", "question_id", "task_type", "question")]
                       + [("options", pa.list_(pa.string())), ("answer", pa.string())])
    common.write_parquet("lmms-lab/Video-MME", rows, schema, split="test", config="videomme")
    d = reset_videos("videomme")
    # The Hub's videos_chunked_*.zip unpack to data/<videoID>.mp4 (see the recipe's doc comment).
    for i, r in enumerate(rows[:3]):
        make_video(d / "data" / f"{r['videoID']}.mp4", common.PHOTO_NAMES[i: i + 2])


# ---------------------------------------------------------------------------------------------
# nextqa_mc_test

def gen_nextqa(rng):
    U = lmms_ref.task_module("nextqa.utils")
    items = [
        ("why did the boy pick up one present from the group of them and move to the sofa", ["share with the girl", "approach lady sitting there", "unwrap it", "playing with toy train", "gesture something"], "CW"),
        ("what did the lady do after the man threw the ball", ["catch the ball ", " run away", "laugh", "sit down", "throw it back"], "TN"),
        ("how many children are in the video", ["one", "two", "three", "four", "five"], "DC"),
        ("where is this video taken", ["park", "living room", "beach", "kitchen", "office"], "DL"),
        ("what is the dog doing at the beginning", ["sleeping", "eating", "running", "barking at the cat", "swimming"], "TP"),
        ("how does the man react when the baby cries", ["picks baby up", "ignores", "claps hands", "runs away", "sings a song"], "CH"),
        ("what does the girl hold in her hand while dancing", ["a (red) ribbon", "a cup.", "a phone", "the answer is a", "B"], "DO"),
        ("why is the man wearing a helmet", ["riding a bike", "safety", "cold", "fashion", "c"], "CW"),
    ]
    docs = []
    for i in range(32):
        q, opts, typ = items[i % len(items)]
        docs.append({"video": 4010069381 + i * 7919, "frame_count": 900 + 37 * i, "width": 640, "height": 480, "question": q + ("" if i % 4 else " "),
                     "answer": rng.randrange(5), "qid": i % 12, "type": typ, **{f"a{k}": opts[k] for k in range(5)}})

    def per_doc(doc, rng):
        k = rng.randrange(5)
        L = "ABCDE"[k]
        t = doc[f"a{k}"].strip()
        o = doc[f"a{(k + 1) % 5}"].strip()
        return [L, f"({L})", f"{L}.", f"{L}. {t}", t, f"I think the answer is that they {t} in the video", f"the person in the video would {t} and then {o} after that",
                f"({L}) or ({'ABCDE'[(k + 1) % 5]})", f"{L} or {'ABCDE'[(k + 2) % 5]}", f"answer {L}", f"{L}, {t}", f"'{L}'", f"{t.upper()} IS WHAT HAPPENS IN THE VIDEO",
                f"The answer is {L}. {t}", f"{L}.{'ABCDE'[(k + 3) % 5]}.", f"(A)(B)(C)", "none of these options match the video at all"]

    pairs = mixed_responses(rng, docs, per_doc, extra=["A B C D E", "E.", "(E)", "e", "AE", "A.E.", "!A!", "'B'", ",C,"], n=300)
    kwargs = {}
    cases = run_cases(pairs, lambda d: U.nextqa_doc_to_text_mc(d, kwargs), identity, U.nextqa_mc_process_results)
    vals = [c["values"]["exact_match"] for c in cases]
    results = {"exact_match,none": LMMS_MEAN(vals), "exact_match_stderr,none": LMMS_MEAN_STDERR(vals)}
    common.write_fixture("nextqa_mc_test", cases, results, GEN, notes="parse_multi_choice_response (MMMU's copy) with random.choice after random.seed(0); mean")
    import pyarrow as pa
    rows = docs[:4]
    schema = pa.schema([("video", pa.int64()), ("frame_count", pa.int64()), ("width", pa.int64()), ("height", pa.int64()), ("question", pa.string()),
                        ("answer", pa.int64()), ("qid", pa.int64()), ("type", pa.string())] + [(f"a{k}", pa.string()) for k in range(5)])
    common.write_parquet("lmms-lab/NExTQA", rows, schema, split="test", config="MC")
    d = reset_videos("nextqa_mc_test")
    for i, r in enumerate(rows[:2]):
        make_video(d / "NExTVideo" / f"{r['video']}.mp4", common.PHOTO_NAMES[i + 2: i + 4])


# ---------------------------------------------------------------------------------------------
# mvbench

MVBENCH_ITEMS = {
    "action_sequence": ("What did the person do to the clothes?", ["Threw.", "Took.", "Put down.", "Washed."]),
    "moving_count": ("How many metal objects enter the scene?", ["0", "1", "2", "3"]),
    "action_prediction": ("What will the person do next?", ["Sit on the bed.", "Open the door.", "Take the towel.", "Eat the sandwich."]),
    "episodic_reasoning": ("What is Sheldon holding when he says 'bazinga'?", ["A cup", "A book", "A phone", "Nothing"]),
    "action_antonym": ("What is the action performed by the person in the video?", ["Pushing something from left to right", "Pushing something from right to left", "Not sure"]),
    "action_count": ("How many times did the person launch objects on the table?", ["3", "5", "2"]),
    "scene_transition": ("What's the right option for how the scenes in the video change?", ["From the kitchen to the garden.", "From the street to the car.", "From the office to the bar.", "From the beach to the forest."]),
    "object_shuffle": ("Where is the hidden object at the end of the game?", ["under the first object", "under the second object", "under the third object"]),
    "object_existence": ("Are there any moving green objects when the video ends?", ["not sure", "yes", "no"]),
    "fine_grained_pose": ("What is the pose performed by the person in the video?", ["drink water", "brushing teeth", "hopping", "sitting down"]),
    "unexpected_action": ("What unexpected event contributes to the humor in the video?", ["The man slips on a banana.", "The cat's jump fails.", "The dog (a puppy) sings.", "Nothing unusual."]),
    "moving_direction": ("What direction is the cyan sphere moving in within the video?", ["Down and to the left.", "Up and to the right.", "The object is stationary.", "Down and to the right."]),
    "state_change": ("What is the state of the paper at the end?", ["folded", "torn", "unchanged"]),
    "object_interaction": ("Which object was taken by the person?", ["The pillow.", "The cup/glass/bottle.", "The laptop.", "The shoe."]),
    "character_order": ("What letter did the person write first on the paper?", ["l", "v", "e", "o"]),
    "action_localization": ("During which part of the video does the action 'cutting onion' occur?", ["At the beginning of the video.", "In the middle of the video.", "At the end of the video.", "Throughout the entire video."]),
    "counterfactual_inference": ("Which of the following will happen if the cylinder is removed?", ["The sphere collides with the cube", "The cube collides with the cylinder", "Nothing", "A. Something else"]),
    "fine_grained_action": ("What is the action performed by the person in the video?", ["swimming", "bicycling", "juggling", "skipping", "mopping"]),
    "moving_attribute": ("What color is the object that is stationary?", ["gray", "red", "blue", "yellow"]),
    "egocentric_navigation": ("This is a navigation video of an agent following instruction: \"Go up the stairs\". What is the next action it should take?", ["Move forward", "Turn left and move forward", "Stop", "Turn right and move forward"]),
}


# The sub-tasks whose records carry the clip's bounds (Ask-Anything's mvbench data_list
# `bound=True`), and the bounds the 3 data rows get (integers among floats, as in the Hub files).
MVBENCH_BOUNDED = ("action_sequence", "action_prediction", "object_interaction", "action_localization", "episodic_reasoning")
MVBENCH_BOUNDS = [{"start": 0, "end": 12.5}, {"start": 3.4, "end": 11}, {"start": 17.25, "end": 30.0}]


def write_mvbench_card():
    """OpenGVLab/MVBench's README.md: the card's front matter keys, one config per sub-task."""
    path = common.DATA_DIR / "OpenGVLab" / "MVBench" / "README.md"
    lines = ["---", "license: mit", "task_categories:", "- visual-question-answering", "- video-classification",
             "modalities:", "- Video", "- Text", "configs:"]
    for sub in MVBENCH_ITEMS:
        lines += [f"- config_name: {sub}", f"  data_files: json/{sub}.json"]
    lines += ["---", "", f"A fixture of {GEN}: the Hub repo's layout, 3 records per sub-task.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path.relative_to(common.ROOT)}")


def gen_mvbench(rng):
    U = lmms_ref.task_module("mvbench.utils")
    d_videos = reset_videos("mvbench")
    write_mvbench_card()
    # The base adversarial set is spread over the 20 subtasks (7 each, 140 >= its size), each
    # subtask file adding 9 responses built from its own documents: 16 cases per file.
    base = common.adversarial_responses(rng, ["A.", "a. b", "(b) is right", "E. e", "F.", "1,5 B", "B.C", "B..", "e.g. C"])
    for s, (sub, (q, cands)) in enumerate(MVBENCH_ITEMS.items()):
        kwargs = {"sub_task": sub, "post_prompt": "Answer with the option's letter from the given choices directly."}
        ext = ".avi" if sub == "fine_grained_pose" else ("" if sub == "episodic_reasoning" else (".webm" if sub == "action_antonym" else ".mp4"))
        docs = []
        for i in range(6):
            c = list(cands)
            rng.shuffle(c)
            name = f"{sub}_{i:04d}{ext}" if sub != "episodic_reasoning" else f"s01e{i + 1:02d}_seg02_clip_{i:02d}"
            docs.append({"video": name, "question": q, "candidates": c, "answer": rng.choice(c)})

        def per_doc(doc, rng):
            k = rng.randrange(len(doc["candidates"]))
            L = string.ascii_uppercase[k]
            t = doc["candidates"][k]
            return [L, f"({L}) {t}", f"{L}. {t}", f"{L}.{t}", f"{L}.", t, f"{L.lower()}. {t}", f"Option {L}", f"The answer is {L}.", f"({L})", f"'{L}'",
                    f"Best option: ({L}) {t}", f"{L}\n{t}", f"{L}. ", f"{L},{t}", "1,2 " + L, f"{L}/{t}", f"{L}-{t}", f"3.5 {L}"]

        pairs = [(docs[j % 6], base[(s * 7 + j) % len(base)]) for j in range(7)]
        pairs += [(docs[j % 6], rng.choice(per_doc(docs[j % 6], rng)).strip()) for j in range(9)]
        cases = run_cases(pairs, lambda d: U.mvbench_doc_to_text(d, kwargs), identity, U.mvbench_process_results)
        results = custom_results(cases, "mvbench_accuracy", U.mvbench_aggregate_results)
        common.write_fixture(f"mvbench_{sub}", cases, results, GEN, notes=f"sub_task {sub}; mcq_acc; accuracy over non-empty responses x100")
        rows = [dict(d, **MVBENCH_BOUNDS[j]) if sub in MVBENCH_BOUNDED else dict(d) for j, d in enumerate(docs[:3])]
        path = common.DATA_DIR / "OpenGVLab" / "MVBench" / "json" / f"{sub}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=4, ensure_ascii=False) + "\n")
        print(f"wrote {path.relative_to(common.ROOT)} ({len(rows)} rows)")
        folder = d_videos / U.DATA_LIST[sub]
        if sub == "episodic_reasoning":
            make_frames(folder / rows[0]["video"], common.PHOTO_NAMES[:3])
        elif sub in ("action_count", "fine_grained_pose", "moving_count"):
            make_video(folder / rows[0]["video"], common.PHOTO_NAMES[1:3])


# ---------------------------------------------------------------------------------------------
# mlvu

def gen_mlvu(rng):
    U = lmms_ref.task_module("mlvu.utils")
    items = [
        ("TR", "What is the main topic of the video?", ["Cooking", "Sports", "Travel", "Music"]),
        ("AR", "Which unusual event happens in the video?", ["A car crash", "A fire", "A flood", "Nothing"]),
        ("VS", "Summarize the video.", ["A day at the beach", "A wedding", "A concert", "A lecture"]),
        ("NQA", "What did the needle frame show?", ["A red apple", "A blue car", "A green tree", "A (yellow) sun"]),
        ("ER", "What did I put in the fridge?", ["milk", "eggs", "butter", "cheese"]),
        ("PQA", "Why did the hero leave the town?", ["To find his father", "To escape the war", "To get married", "To study"]),
        ("SSC", "Describe the sub-scene.", ["A man opens a door", "A woman sings", "A child cries", "A dog runs"]),
        ("AO", "What is the order of the actions?", ["1->2->3", "3->2->1", "2->1->3", "1->3->2"]),
        ("AC", "How many times does the man jump?", ["2", "3", "4", "5"]),
    ]
    docs = []
    for i in range(27):
        tt, q, opts = items[i % len(items)]
        body = "\n".join(f"({L}) {o}" for L, o in zip("ABCD", opts))
        docs.append({"video_name": f"{tt.lower()}_{i:03d}.mp4", "question": f"{q}\n{body}", "answer": "ABCD"[rng.randrange(4)], "task_type": tt})

    def per_doc(doc, rng):
        L = rng.choice("ABCD")
        return [f"{L})", f"({L})", f"{L}) text", f"The answer is ({L}).", L, f" {L} ", ")", f"){L}", f"{L}))", f"(({L})", f"{L.lower()})", "猫)", f"Best option: ({L})", f"{L}\n)"]

    pairs = mixed_responses(rng, docs, per_doc, extra=[")", "A)", "(B)", "C) cat", "))", "x)y)z)", "é)"], n=300)
    cases = run_cases(pairs, U.mlvu_doc_to_text, identity, U.mlvu_process_results)
    results = custom_results(cases, "mlvu_percetion_score", U.mlvu_aggregate_results)
    common.write_fixture("mlvu", cases, results, GEN, notes="0.2.1's mlvu: the character before the first ')', micro accuracy x100 over 9 task types")
    import pyarrow as pa
    rows = [docs[i] for i in (0, 1, 4, 8)]
    schema = pa.schema([("video_name", pa.string()), ("question", pa.string()), ("answer", pa.string()), ("task_type", pa.string())])
    common.write_parquet("sy1998/temp", rows, schema, split="test")
    d = reset_videos("mlvu")
    for i, r in enumerate(rows[:2]):
        make_video(d / r["video_name"], common.PHOTO_NAMES[i + 4: i + 6])


# ---------------------------------------------------------------------------------------------
# egoschema_subset

def gen_egoschema(rng):
    U = lmms_ref.task_module("egoschema.utils")
    items = [
        ("What is the overarching goal of c's actions in the video?", ["c is cleaning the kitchen.", "c is cooking a meal for the family.", "c is repairing a bicycle.", "c is painting a wall.", "c is reading a (long) book."]),
        ("Identify the primary tools c used throughout the video.", ["a spatula and a bowl", "a hammer and nails", "a brush and paint", "a knife and a board", "a phone"]),
        ("How does c's behaviour change over the video?", ["c becomes more careful.", "c gets tired.", "c speeds up.", "c stops working.", "c asks for help."]),
        ("What is the relationship between c and the man?", ["They are friends. they talk", "They are coworkers.", "They are strangers.", "They are siblings.", "It is unclear."]),
    ]
    docs = []
    for i in range(28):
        q, opts = items[i % len(items)]
        o = list(opts)
        if i >= len(items):
            rng.shuffle(o)
        docs.append({"question_idx": f"{i:04d}", "question": q, "video_idx": f"{i:08x}-{(i * 2654435761) % 65536:04x}-4b2e-9c1a-{(i * 40503) % 16**12:012x}",
                     "option": [f"{L}. {t}" for L, t in zip("ABCDE", o)], "answer": str(rng.randrange(5))})

    def per_doc(doc, rng):
        k = rng.randrange(5)
        L = "ABCDE"[k]
        t = doc["option"][k]
        u = doc["option"][(k + 2) % 5]
        return [L, f"({L})", f"{L}.", t, t.lower(), f"I believe that the correct answer here is {t}", f"the answer is {t} rather than {u}",
                f"Both {u} and {t} could be argued in this video", f"({L}) and {'ABCDE'[(k + 1) % 5]}.", f"{L} is the answer, not ({'ABCDE'[(k + 3) % 5]})",
                f"{'ABCDE'[(k + 1) % 5]}. {L}. ({L})", f"option {L}", f"{L}:", f"The answer is {L}", "none of the options describe what happens in the video clip"]

    pairs = mixed_responses(rng, docs, per_doc, extra=["A B", "(C) (D)", "E.", "e.", "A.B.C.", ". A .", "B ,", "c. e."], n=300)
    kwargs = {"pre_prompt": "", "post_prompt": ""}
    cases = run_cases(pairs, lambda d: U.egoschema_doc_to_text(d, kwargs), identity, U.egoschema_process_results_generation)
    with tempfile.TemporaryDirectory():
        score = U.egoschema_aggregate_score([c["values"]["score"] for c in cases], None)
    # The yaml's other metric, `submission`, is egoschema_aggregate_mc: it writes the EgoSchema
    # server's submission file and returns None (lmms-eval reports "submission,none": null).
    results = {"score,none": score, "score_stderr,none": "N/A"}
    common.write_fixture("egoschema_subset", cases, results, GEN,
                         notes="egoschema's own parse_multi_choice_response (all candidate kinds, the first found wins, random.choice after random.seed(0)); "
                               "`submission` (a server file, aggregated to None) is left out of results")
    import pyarrow as pa
    rows = docs[:4]
    schema = pa.schema([("question_idx", pa.string()), ("question", pa.string()), ("video_idx", pa.string()), ("option", pa.list_(pa.string())), ("answer", pa.string())])
    common.write_parquet("lmms-lab/egoschema", rows, schema, split="test", config="Subset")
    d = reset_videos("egoschema_subset")
    for i, r in enumerate(rows[:2]):
        make_video(d / "videos" / f"{r['video_idx']}.mp4", common.PHOTO_NAMES[i: i + 3: 2])


def main():
    only = set(sys.argv[1:])
    gens = {"muirbench": gen_muirbench, "interleave": gen_interleave, "videomme": gen_videomme, "nextqa": gen_nextqa,
            "mvbench": gen_mvbench, "mlvu": gen_mlvu, "egoschema": gen_egoschema}
    for name, fn in gens.items():
        if not only or name in only:
            fn(random.Random(f"multi_video:{name}"))


if __name__ == "__main__":
    main()
