#!/usr/bin/env python3
"""Markdown tables for docs/NANO.md from a scripts/train-nano.sh output directory.

    python3 tools/nano/tables.py OUT

Per family: the test split's size, chance (the share of the most frequent answer: what always
giving it scores; 0 for the free-text families scored by phrase recall, where no fixed answer
recalls a varying scene), and each graded stage's score from OUT/eval/<stage>/results.json.
Then the task-transfer table (2-SI vs 2-OV on the multi-image and video families) and the
times of OUT/times.tsv. Standard library only.
"""
import collections
import json
import os
import sys

STAGES = ["stage1", "stage1.5", "stage2-si", "stage2-ov"]
MODALITY = {
    "caption": "image", "detail": "image", "color": "image", "shape": "image", "count": "image",
    "position": "image", "choice": "image", "ocr_word": "image (text)",
    "ocr_number": "image (text)", "chart_value": "image (chart)", "chart_max": "image (chart)",
    "multi_differs": "multi-image", "multi_count": "multi-image", "multi_changed": "multi-image",
    "video_direction": "video", "video_color": "video", "video_appear": "video",
    "video_order": "video",
}


def main(out):
    test = json.load(open(os.path.join(out, "world", "test.json")))
    by = collections.defaultdict(list)
    for s in test:
        by[s["task"]].append(s)
    res = {}
    for st in STAGES:
        p = os.path.join(out, "eval", st, "results.json")
        if os.path.exists(p):
            res[st] = json.load(open(p))["results"]

    def score(st, fam):
        r = res.get(st, {}).get(fam)
        if not r:
            return None
        for k in ("exact,none", "recall,none"):
            if k in r:
                return r[k]
        return None

    def docs(st, fam):
        p = os.path.join(out, "eval", st, f"samples_{fam}.jsonl")
        if not os.path.exists(p):
            return 0
        return sum(1 for _ in open(p))

    stages = [s for s in STAGES if s in res]
    print("| family | modality | metric | chance | " + " | ".join(stages) + " |")
    print("|---|---|---|---|" + "---|" * len(stages))
    order = [f for f in MODALITY if f in by]
    for fam in order:
        samples = by[fam]
        metric = samples[0].get("metric", "exact")
        if metric == "recall":
            chance = 0.0
        else:
            answers = collections.Counter(s["conversations"][1]["value"].lower() for s in samples)
            chance = answers.most_common(1)[0][1] / len(samples)
        cells = []
        for st in stages:
            v = score(st, fam)
            cells.append("-" if v is None else f"{100 * v:.1f} ({docs(st, fam)})")
        print(f"| {fam} | {MODALITY[fam]} | {metric} | {100 * chance:.1f} | " + " | ".join(cells) + " |")
    print()
    print("Task transfer (the 2-SI checkpoint never saw a multi-image set or a video):")
    print()
    print("| family | chance | 2-SI | 2-OV |")
    print("|---|---|---|---|")
    for fam in order:
        if MODALITY[fam] not in ("multi-image", "video"):
            continue
        samples = by[fam]
        answers = collections.Counter(s["conversations"][1]["value"].lower() for s in samples)
        chance = answers.most_common(1)[0][1] / len(samples)
        a, b = score("stage2-si", fam), score("stage2-ov", fam)
        f = lambda v: "-" if v is None else f"{100 * v:.1f}"
        print(f"| {fam} | {100 * chance:.1f} | {f(a)} | {f(b)} |")
    tp = os.path.join(out, "times.tsv")
    if os.path.exists(tp):
        print()
        print("| step | seconds |")
        print("|---|---|")
        total = 0
        for line in open(tp).read().splitlines()[1:]:
            k, v = line.split("\t")
            total += int(v)
            print(f"| {k} | {v} |")
        print(f"| total | {total} |")


if __name__ == "__main__":
    main(sys.argv[1])
