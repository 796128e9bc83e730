#!/usr/bin/env python3
"""The losses table of docs/NANO.md from a scripts/train-nano.sh output directory.

    python3 tools/nano/losses.py OUT

Per step of the run: steps and batch, the first step's loss, the mean of the last 50 steps,
and the median throughput, from OUT/<step>/train_log.jsonl (`onevision train`) or
OUT/unimodal/dense_pretrain_log.jsonl (the dense vision pretraining, with its last-tenth
sub-cell accuracies). Standard library only.
"""
import json
import os
import statistics
import sys

STEPS = ["lm", "vision", "stage1", "stage1.5", "stage2-si", "stage2-ov"]


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(out):
    print("| step | steps | first | last 50 | samples/s (median) |")
    print("|---|---:|---:|---:|---:|")
    for step in STEPS:
        if step == "vision":
            p = os.path.join(out, "unimodal", "dense_pretrain_log.jsonl")
            rate_key = "images_per_s"
        else:
            p = os.path.join(out, step, "train_log.jsonl")
            rate_key = "samples_per_s"
        if not os.path.exists(p):
            continue
        r = rows(p)
        last = r[-50:]
        mean = statistics.fmean(x["loss"] for x in last)
        rate = statistics.median(x[rate_key] for x in r)
        extra = ""
        if step == "vision":
            tenth = r[-max(1, len(r) // 10):]
            keys = sorted(tenth[0]["accuracy"])
            acc = {k: statistics.fmean(x["accuracy"][k] for x in tenth) for k in keys}
            extra = " (last tenth: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()) + ")"
        print(f"| {step} | {len(r)} | {r[0]['loss']:.2f} | {mean:.2f}{extra} | {rate:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/nano")
