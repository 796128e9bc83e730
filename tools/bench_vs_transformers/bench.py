"""End-to-end CPU benchmark: onevision against transformers 5.24 (torch 2.15) on LLaVA-OneVision
0.5B, same checkpoint files, same inputs, same machine, same run. Not part of CI.

    cargo build --release -p onevision-cli
    /opt/venv/bin/python tools/bench_vs_transformers/bench.py [--work-dir /tmp/onevision-bench]
        [--cases astronaut,coffee,photo1080,video32] [--dtypes f32,bf16] [--runs 3] [--warmup 1]
        [--decode-tokens 32] [--out results.md] [--model DIR] [--only onevision|transformers]

The checkpoint is random-weight with the exact llava-onevision-qwen2-0.5b-ov-hf shapes and the
real Qwen2 tokenizer (make_checkpoint.py, built into WORK/ov05b-f32 when missing, ~1 min, 3.6 GB);
random weights cost exactly what the real ones cost because decode length is fixed (EOS ignored).
bf16 uses the same float32 files: onevision `--dtype bf16` casts at load, transformers loads with
`dtype=torch.bfloat16`. `--model DIR` runs another checkpoint instead (e.g. the tiny
fixtures/models/tied/checkpoint for a smoke test).

Cases: astronaut (512x512 PNG, 5 tiles), coffee (600x400 PNG), photo1080 (a 1920x1080 PNG mosaic
of four scikit-image photos, PIL bicubic, written to WORK) and video32 (fixtures/video/
clip_h264.mp4, 48 frames at 160x120, 32 sampled). Prompt: "Describe this in detail." after the
image / video, the checkpoint's chat template, generation prompt.

Every measurement runs in its own process (`onevision bench --json`, or this file with
`--tf-worker`), so peak RSS is that process's own (VmHWM / ru_maxrss: weights, runtime, caches).
Each process: --warmup untimed runs, then --runs timed runs; medians are reported.

Stages (both engines):
  preprocess     request start -> model inputs: read + decode the file, chat template, tokenize,
                 image processor (AnyRes tiles, normalize) / video: decode all frames, linspace
                 sampling, 384x384 bicubic resize, video processor. transformers: PIL
                 `Image.open` + `LlavaOnevisionProcessor` (LlavaOnevisionImageProcessorPil, video
                 processor, mean/std 0.5); video frames through the ffmpeg CLI (the reference
                 pipeline of tools/fixtures/make_e2e_fixtures.py). onevision: its own decoders
                 (libav in-process for video).
  vision encode  SigLIP + projector + AnyRes packing / video pooling + newline. transformers:
                 `model.model.get_image_features(...)` / `get_video_features(...)` exactly as
                 `LlavaOnevisionModel.forward` calls them (pixel values cast to the model dtype
                 included). onevision: `embed` (also does the text-embedding lookup and merge,
                 which on the transformers side falls in prefill; both are negligible).
  prefill        one decoder forward over the whole prompt with a KV cache, logits of the last
                 position only, arg-max of the first token. transformers: `model(input_ids,
                 attention_mask, mm_encoder_outputs=<the features above>, use_cache=True,
                 logits_to_keep=1)` (what `generate` does; the vision tower is not run again).
  ttft           request start to the first token (preprocess + encode + prefill, one clock).
  decode         greedy tokens after the first, one token per forward with the KV cache,
                 --decode-tokens in all, EOS ignored; tokens/s = (N - 1) / time. transformers:
                 `model(input_ids=[[tok]], attention_mask, cache=..., logits_to_keep=1)` in a loop.
transformers runs under `torch.inference_mode()`, default attention implementation (SDPA, as
`from_pretrained` picks it), `torch.set_num_threads(<all CPUs>)`; onevision uses all CPUs too.

Ratios: times are transformers / onevision and rates onevision / transformers, so > 1 means
onevision is faster; peak RSS is onevision / transformers, so < 1 means onevision uses less.

Results: a Markdown report on stdout and in --out (default WORK/results.md), and the raw numbers
next to it (same name, .json).

Time: every process pays --warmup + --runs full requests. Prompts are long (astronaut 3.7k
tokens, coffee 2.7k, photo1080 7.3k from 16 tiles, video32 6.3k), so on a 2-core machine one f32
astronaut request took ~1 min (transformers) and ~2 min (onevision): the defaults (4 requests
per process, 4 cases x 2 dtypes x 2 engines) take hours there; --runs 1 cuts that in half.
The Markdown and JSON are rewritten after every case.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "onevision"
PHOTOS = ROOT / "fixtures" / "images" / "photos"
VIDEO = ROOT / "fixtures" / "video" / "clip_h264.mp4"
PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "numpy": "2.4.6", "pillow": "13.0.0"}
PROMPT = "Describe this in detail."
ALL_CASES = ["astronaut", "coffee", "photo1080", "video32"]
STAGES = [  # key, label, unit, higher is better
    ("preprocess_ms", "preprocess", "ms", False),
    ("vision_encode_ms", "vision encode", "ms", False),
    ("vision_encode_ms_per_tile", "vision encode per tile/frame", "ms", False),
    ("prefill_ms", "prefill", "ms", False),
    ("prefill_tokens_per_s", "prefill", "tokens/s", True),
    ("ttft_ms", "time to first token", "ms", False),
    ("decode_tokens_per_s", "decode", "tokens/s", True),
    ("peak_rss_mb", "peak RSS", "MiB", None),
]


def versions():
    import numpy
    import PIL
    import torch
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__}


def check_versions():
    found = versions()
    bad = [f"{k} {found[k]} (pinned {v})" for k, v in PINNED.items() if found[k] != v]
    if bad:
        sys.exit("version mismatch: " + ", ".join(bad) + "; install tools/fixtures/requirements.txt "
                 "into the venv (/opt/venv/bin/pip install -r tools/fixtures/requirements.txt)")
    return found


# ---------------------------------------------------------------------------------------------
# Inputs


def case_input(case, work):
    """(kind, path, frames) for a case name."""
    if case == "astronaut":
        return "image", PHOTOS / "astronaut.png", None
    if case == "coffee":
        return "image", PHOTOS / "coffee.png", None
    if case == "photo1080":
        return "image", work / "photo_1920x1080.png", None
    if case == "video32":
        return "video", VIDEO, 32
    sys.exit(f"unknown case {case!r} (known: {', '.join(ALL_CASES)})")


def make_photo1080(path):
    """A 1920x1080 photo mosaic: four scikit-image photos, each scaled to cover a 960x540 cell
    (PIL bicubic) and center-cropped. Deterministic for a given Pillow."""
    from PIL import Image

    if path.exists():
        return
    canvas = Image.new("RGB", (1920, 1080))
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
    for i, name in enumerate(names):
        im = Image.open(PHOTOS / name).convert("RGB")
        s = max(960 / im.width, 540 / im.height)
        w, h = round(im.width * s), round(im.height * s)
        im = im.resize((w, h), Image.BICUBIC)
        left, top = (w - 960) // 2, (h - 540) // 2
        canvas.paste(im.crop((left, top, left + 960, top + 540)), ((i % 2) * 960, (i // 2) * 540))
    tmp = path.with_suffix(".tmp.png")
    canvas.save(tmp)
    tmp.rename(path)


def ensure_checkpoint(work):
    ckpt = work / "ov05b-f32"
    if (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file():
        return ckpt
    partial = work / "ov05b-f32.partial"
    print(f"building the benchmark checkpoint in {ckpt} (~1 min, 3.6 GB) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_checkpoint.py")), str(partial),
                    "--dtype", "float32"], check=True)
    partial.rename(ckpt)
    return ckpt


# ---------------------------------------------------------------------------------------------
# transformers worker (one process per case and dtype)


def tf_worker(spec):
    import numpy as np
    import torch
    from PIL import Image, ImageOps
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

    torch.set_num_threads(spec["threads"])
    ckpt = Path(spec["model"])
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(ckpt, dtype=dtype).eval()
    cfg = model.config
    proc_cfg = json.loads((ckpt / "processor_config.json").read_text()) if (ckpt / "processor_config.json").is_file() else {}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3),
        video_processor=LlavaOnevisionVideoProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=AutoTokenizer.from_pretrained(ckpt),
        chat_template=(ckpt / "chat_template.jinja").read_text(),
        num_image_tokens=proc_cfg.get("num_image_tokens", 729),
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        vision_aspect_ratio=cfg.vision_aspect_ratio,
    )
    kind, path, n_frames, n_decode = spec["kind"], Path(spec["path"]), spec["frames"], spec["decode_tokens"]
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": spec["prompt"]}]}]

    def video_frames():
        # As tools/fixtures/make_e2e_fixtures.py: ffmpeg CLI to rgb24, linspace, PIL bicubic 384x384.
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "stream=width,height", "-of", "csv=p=0", str(path)],
                               check=True, capture_output=True, text=True).stdout.strip()
        w, h = map(int, probe.split(",")[:2])
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             check=True, capture_output=True).stdout
        frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
        total = len(frames)
        idx = range(total) if total <= n_frames else np.linspace(0, total - 1, n_frames).astype(int)
        return np.stack([np.array(Image.fromarray(frames[i], "RGB").resize((384, 384), Image.BICUBIC,
                                                                           reducing_gap=None)) for i in idx])

    def one_run():
        start = time.perf_counter()
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if kind == "image":
            inputs = processor(text=[text], images=[ImageOps.exif_transpose(Image.open(path))], return_tensors="pt")
        else:
            inputs = processor(text=[text], videos=[video_frames()], return_tensors="pt")
        t1 = time.perf_counter()

        if kind == "image":
            pv = inputs["pixel_values"].to(dtype)
            tiles = int(pv.shape[1] if pv.dim() == 5 else pv.shape[0])  # one image: base + grid tiles
            feats = model.model.get_image_features(
                pv, inputs["image_sizes"], vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                batch_num_images=inputs.get("batch_num_images"), return_dict=True)
            mm = {"image": feats}
        else:
            pv = inputs["pixel_values_videos"].to(dtype)
            tiles = int(pv.shape[0] * pv.shape[1])
            feats = model.model.get_video_features(
                pv, vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy, return_dict=True)
            mm = {"video": feats}
        t2 = time.perf_counter()

        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        out = model(input_ids=ids, attention_mask=mask, mm_encoder_outputs=mm, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        first = int(token)
        t3 = time.perf_counter()

        cache = out.cache
        for _ in range(1, n_decode):
            mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
            out = model(input_ids=token, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        int(token)
        t4 = time.perf_counter()
        media = int(((ids == cfg.image_token_id) | (ids == cfg.video_token_id)).sum())
        return {"preprocess_ms": (t1 - start) * 1e3, "vision_encode_ms": (t2 - t1) * 1e3,
                "prefill_ms": (t3 - t2) * 1e3, "ttft_ms": (t3 - start) * 1e3,
                "decode_tokens_per_s": (n_decode - 1) / (t4 - t3) if n_decode > 1 else 0.0,
                "prompt_tokens": ids.shape[1], "media_tokens": media, "tiles": tiles, "first_token": first}

    with torch.inference_mode():
        for _ in range(spec["warmup"]):
            one_run()
        runs = [one_run() for _ in range(max(1, spec["runs"]))]

    def med(k):  # as onevision's perf.rs: the upper median for an even count
        return sorted(r[k] for r in runs)[len(runs) // 2]

    last = runs[-1]
    enc, pre = med("vision_encode_ms"), med("prefill_ms")
    report = {
        "model": str(ckpt), "dtype": spec["dtype"], "input": str(path) + (f" ({n_frames} frames)" if kind == "video" else ""),
        "prompt_tokens": last["prompt_tokens"], "media_tokens": last["media_tokens"], "vision_tiles": last["tiles"],
        "runs": len(runs), "preprocess_ms": med("preprocess_ms"), "vision_encode_ms": enc,
        "vision_encode_ms_per_tile": enc / last["tiles"] if last["tiles"] else 0.0,
        "prefill_ms": pre, "prefill_tokens_per_s": last["prompt_tokens"] / (pre / 1e3), "ttft_ms": med("ttft_ms"),
        "decode_tokens": n_decode, "decode_tokens_per_s": med("decode_tokens_per_s"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "attn_implementation": cfg._attn_implementation, "threads": torch.get_num_threads(),
        "first_token": last["first_token"],
    }
    print(json.dumps(report))


# ---------------------------------------------------------------------------------------------
# Driver


def run_process(cmd, label, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        print(f"  {label}: FAILED (exit {p.returncode}) after {wall:.0f} s\n{tail}", file=sys.stderr, flush=True)
        return {"error": f"exit {p.returncode}: {tail.splitlines()[-1] if tail else ''}"}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        print(f"  {label}: no JSON on stdout:\n{p.stdout[-2000:]}", file=sys.stderr, flush=True)
        return {"error": "no JSON result on stdout"}
    line = lines[-1]
    print(f"  {label}: done in {wall:.0f} s", file=sys.stderr, flush=True)
    return json.loads(line)


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "ram_gib": round(ram, 1), "os": platform.platform(), "python": platform.python_version()}


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "MiB":
        return f"{v:,.0f}"
    if unit == "tokens/s":
        return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
    return f"{v:,.1f}" if v < 10000 else f"{v:,.0f}"


def ratio(tf, ov, higher_better):
    if tf is None or ov is None or not tf or not ov:
        return None
    if higher_better is None:  # memory: onevision / transformers
        return ov / tf
    return ov / tf if higher_better else tf / ov


def report_markdown(meta, results):
    out = ["# onevision vs transformers: LLaVA-OneVision 0.5B on CPU", ""]
    m = meta["machine"]
    out += [f"- machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical), "
            f"{m['ram_gib']} GiB RAM; {m['os']}",
            f"- versions: onevision {meta['onevision']} ({meta['git']}), transformers {meta['versions']['transformers']}, "
            f"torch {meta['versions']['torch']} ({meta['tf_threads']} threads, attention: {meta['tf_attn'] or 'n/a'}), "
            f"numpy {meta['versions']['numpy']}, pillow {meta['versions']['pillow']}, Python {m['python']}",
            f"- model: {meta['model']}",
            f"- medians of {meta['runs']} runs after {meta['warmup']} warm-up, {meta['decode_tokens']} decoded tokens "
            f"(EOS ignored), one process per engine, case and dtype; {meta['date']}",
            f"- command: `{meta['command']}`",
            *([f"- onevision decodes with {meta['quantize']} weights (`--quantize`); transformers is unquantized"]
              if meta.get("quantize") else []),
            *([f"- both engines held to {meta['cpu_level']}: onevision `ONEVISION_CPU_KERNELS={meta['cpu_level']}` "
               f"(binary {meta.get('binary')}), torch `ATEN_CPU_CAPABILITY`, `MKL_ENABLE_INSTRUCTIONS`, "
               f"`ONEDNN_MAX_CPU_ISA`"] if meta.get("cpu_level") else []),
            "- ratio: transformers time / onevision time, onevision tokens/s / transformers tokens/s "
            "(> 1: onevision faster); peak RSS: onevision / transformers (< 1: onevision smaller)", ""]

    out += ["## Summary (ratios)", "",
            "| case | dtype | prompt tokens | preprocess | vision encode | prefill | TTFT | decode | peak RSS |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    keys = [("preprocess_ms", False), ("vision_encode_ms", False), ("prefill_ms", False), ("ttft_ms", False),
            ("decode_tokens_per_s", True), ("peak_rss_mb", None)]
    for r in results:
        tf, ov = r["transformers"] or {}, r["onevision"] or {}
        cells = []
        for k, hb in keys:
            x = ratio(tf.get(k), ov.get(k), hb)
            cells.append("–" if x is None else f"{x:.2f}x")
        pt = ov.get("prompt_tokens", tf.get("prompt_tokens", "–"))
        out.append(f"| {r['case']} | {r['dtype']} | {pt} | " + " | ".join(cells) + " |")
    out.append("")

    for r in results:
        tf, ov = r["transformers"] or {}, r["onevision"] or {}
        any_ = ov if "prompt_tokens" in ov else tf
        out += [f"## {r['case']}, {r['dtype']}", "",
                f"{r['input']}: {any_.get('prompt_tokens', '?')} prompt tokens, {any_.get('media_tokens', '?')} media "
                f"tokens, {any_.get('vision_tiles', '?')} tiles/frames", ""]
        for side, d in (("transformers", tf), ("onevision", ov)):
            if "error" in d:
                out += [f"**{side} failed**: `{d['error']}`", ""]
        if ("prompt_tokens" in tf and "prompt_tokens" in ov
                and (tf["prompt_tokens"], tf["media_tokens"]) != (ov["prompt_tokens"], ov["media_tokens"])):
            out += [f"**warning**: the engines saw different prompts: transformers {tf['prompt_tokens']} tokens "
                    f"({tf['media_tokens']} media), onevision {ov['prompt_tokens']} ({ov['media_tokens']} media)", ""]
        out += ["| stage | unit | transformers | onevision | ratio |", "|---|---|---:|---:|---:|"]
        for k, label, unit, hb in STAGES:
            x = ratio(tf.get(k), ov.get(k), hb)
            out.append(f"| {label} | {unit} | {fmt(tf.get(k), unit)} | {fmt(ov.get(k), unit)} | "
                       f"{'–' if x is None else f'{x:.2f}x'} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="/tmp/onevision-bench", type=Path,
                    help="checkpoint, generated inputs and default results go here (default: %(default)s)")
    ap.add_argument("--model", type=Path, help="checkpoint directory to use instead of WORK/ov05b-f32 (built when missing)")
    ap.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated (default: %(default)s)")
    ap.add_argument("--dtypes", default="f32,bf16", help="comma-separated f32,bf16 (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per process, medians reported (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: %(default)s)")
    ap.add_argument("--decode-tokens", type=int, default=32, help="tokens generated per run, EOS ignored (default: %(default)s)")
    ap.add_argument("--prompt", default=PROMPT, help="the user's text (default: %(default)r)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch.set_num_threads for transformers (default: all usable CPUs, %(default)s)")
    ap.add_argument("--out", type=Path, help="Markdown report path (default: WORK/results.md); raw JSON goes next to it")
    ap.add_argument("--only", choices=["onevision", "transformers"], help="run one engine only (debugging)")
    ap.add_argument("--bin", type=Path, default=BIN,
                    help="the onevision binary (default: %(default)s; for --cpu-level avx2 on an AVX-512 "
                         "machine, one built with --no-default-features, so that candle's matmul runs at AVX2 too)")
    ap.add_argument("--cpu-level", choices=["avx2"],
                    help="hold both engines to this instruction level: onevision with ONEVISION_CPU_KERNELS, "
                         "torch with ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA "
                         "(an AVX2 machine simulated on an AVX-512 one)")
    ap.add_argument("--quantize", choices=["q8_0", "q4_0"],
                    help="onevision decodes with weight-only quantized decoder weights (transformers unchanged)")
    ap.add_argument("--tf-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.tf_worker:
        return tf_worker(json.loads(args.tf_worker))

    vers = check_versions()
    if args.only != "transformers" and not BIN.is_file():
        sys.exit(f"{BIN} not found: build it first with `cargo build --release -p onevision-cli`")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("f32", "bf16"):
            sys.exit(f"unknown dtype {d!r} (f32, bf16)")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    inputs = {c: case_input(c, work) for c in cases}
    if "photo1080" in cases:
        make_photo1080(work / "photo_1920x1080.png")
    model = args.model.resolve() if args.model else ensure_checkpoint(work)
    if not (model / "config.json").is_file():
        sys.exit(f"{model} has no config.json: not a checkpoint directory")

    out = (args.out or work / "results.md").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ov_version = "n/a"
    bin_ = args.bin.resolve()
    if bin_.is_file():
        ov_version = subprocess.run([str(bin_), "--version"], capture_output=True, text=True).stdout.strip() or "?"
    ov_env, tf_env = None, None
    if args.cpu_level == "avx2":
        ov_env = dict(os.environ, ONEVISION_CPU_KERNELS="avx2")
        tf_env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                      ONEDNN_MAX_CPU_ISA="AVX2", DNNL_MAX_CPU_ISA="AVX2")
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([Path(sys.executable).as_posix(), *sys.argv]),
        "machine": machine(), "versions": vers, "onevision": ov_version, "git": git_rev(), "model": str(model),
        "runs": args.runs, "warmup": args.warmup, "decode_tokens": args.decode_tokens, "prompt": args.prompt,
        "tf_threads": args.threads, "tf_attn": None, "quantize": args.quantize, "cpu_level": args.cpu_level,
        "binary": str(bin_),
    }
    m = meta["machine"]
    print(f"{m['cpu']}, {m['usable_cpus']} CPUs, {m['ram_gib']} GiB; transformers {vers['transformers']}, "
          f"torch {vers['torch']}; {ov_version}; model {model}", file=sys.stderr, flush=True)

    results = []
    for case in cases:
        kind, path, frames = inputs[case]
        for dtype in dtypes:
            print(f"{case} {dtype}:", file=sys.stderr, flush=True)
            r = {"case": case, "dtype": dtype, "input": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                 + (f" ({frames} of its frames)" if frames else ""), "onevision": None, "transformers": None}
            if args.only != "transformers":
                cmd = [str(bin_), "bench", "--model", str(model), "--dtype", dtype, "--prompt", args.prompt,
                       "--decode-tokens", str(args.decode_tokens), "--runs", str(args.runs),
                       "--warmup", str(args.warmup), "--json"]
                cmd += ["--quantize", args.quantize] if args.quantize else []
                cmd += ["--image", str(path)] if kind == "image" else ["--video", str(path), "--frames", str(frames)]
                r["onevision"] = run_process(cmd, "onevision", ov_env)
            if args.only != "onevision":
                spec = {"model": str(model), "dtype": dtype, "kind": kind, "path": str(path), "frames": frames,
                        "prompt": args.prompt, "decode_tokens": args.decode_tokens, "runs": args.runs,
                        "warmup": args.warmup, "threads": args.threads}
                r["transformers"] = run_process([sys.executable, str(Path(__file__).resolve()), "--tf-worker",
                                                 json.dumps(spec)], "transformers", tf_env)
                meta["tf_attn"] = meta["tf_attn"] or r["transformers"].get("attn_implementation")
            results.append(r)
            write_results(out, meta, results)  # after every case, so a long run that dies keeps what it has

    print(report_markdown(meta, results))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


def write_results(out, meta, results):
    out.write_text(report_markdown(meta, results) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
