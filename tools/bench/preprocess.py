"""Image preprocessing benchmark: onevision against transformers 5.24's LLaVA-OneVision image
processors (PIL backend and torchvision backend), same files, same machine, same run.

Each timed step is what a user pays per image: open/decode the file, AnyRes best resolution,
resize + pad + tiles + the 384x384 base, rescale and normalize to float32 pixel values.
Medians of --iters runs after one warm-up run.

    cargo build --release -p onevision-cli
    /opt/venv/bin/python tools/bench/preprocess.py [--iters 10] [IMAGE ...]

With no images it uses the committed photos plus two synthetic PNGs (1920x1080, 4000x3000)
written to a temporary directory.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers.models.llava_onevision.image_processing_llava_onevision import LlavaOnevisionImageProcessor
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "onevision"


def synthetic(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255) // (w - 1), (yy * 255) // (h - 1), ((xx + yy) * 7) % 256], -1).astype(np.uint8)


def time_python(proc, path, iters):
    times = []
    for i in range(iters + 1):
        t = time.perf_counter()
        out = proc(Image.open(path), return_tensors="np" if isinstance(proc, LlavaOnevisionImageProcessorPil) else "pt")
        _ = out["pixel_values"]
        if i:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*")
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} not found: run `cargo build --release -p onevision-cli` first")

    tmp = tempfile.TemporaryDirectory()
    images = [Path(p) for p in args.images]
    if not images:
        photos = ROOT / "fixtures" / "images" / "photos"
        images = sorted(photos.iterdir())
        for h, w in ((1080, 1920), (3000, 4000)):
            p = Path(tmp.name) / f"synthetic_{w}x{h}.png"
            Image.fromarray(synthetic(h, w), "RGB").save(p)
            images.append(p)

    ours = json.loads(subprocess.run(
        [str(BIN), "bench-preprocess", "--iters", str(args.iters)] + sum((["--image", str(p)] for p in images), []),
        check=True, capture_output=True, text=True).stdout)

    kw = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pil, tv = LlavaOnevisionImageProcessorPil(**kw), LlavaOnevisionImageProcessor(**kw)
    print(f"transformers {transformers.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs; onevision resizes on up to all CPUs; medians of {args.iters} runs, ms per image")
    header = f"{'image':28s} {'size':>10s} {'tiles':>5s} {'onevision':>10s} {'tf PIL':>9s} {'tf torchvision':>15s} {'PIL/ours':>9s} {'tv/ours':>8s}"
    print(header)
    print("-" * len(header))
    ratios_pil, ratios_tv = [], []
    for p, row in zip(images, ours):
        w, h = Image.open(p).size
        t_pil, t_tv = time_python(pil, p, args.iters), time_python(tv, p, args.iters)
        ratios_pil.append(t_pil / row["median_ms"])
        ratios_tv.append(t_tv / row["median_ms"])
        print(f"{p.name:28s} {f'{w}x{h}':>10s} {row['tiles']:5d} {row['median_ms']:10.2f} {t_pil:9.2f} {t_tv:15.2f} "
              f"{ratios_pil[-1]:8.2f}x {ratios_tv[-1]:7.2f}x")
    print(f"median speed-up: {statistics.median(ratios_pil):.2f}x vs the PIL processor, "
          f"{statistics.median(ratios_tv):.2f}x vs the torchvision processor")


if __name__ == "__main__":
    main()
