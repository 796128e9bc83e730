"""Training-step benchmark: `onevision train` against PyTorch (transformers 5.24, torch 2.15) on
the random-weight LLaVA-OneVision 0.5B-shaped checkpoint, the same batch, the same machine, the
same run. Not part of CI.

    cargo build --release -p onevision-cli
    /opt/venv/bin/python tools/bench_train/bench_train.py [--model DIR] [--work-dir DIR]
        [--configs stage1,stage1-gc,stage2,stage2-gc] [--attn sdpa,eager] [--steps 3]
        [--threads 2] [--only onevision|pytorch] [--out results.md]

Checkpoint: tools/bench_vs_transformers/make_checkpoint.py (exact llava-onevision-qwen2-0.5b-ov-hf
shapes, f32, 3.6 GB), built into WORK/ov05b-f32 when missing and --model is not given; WORK
(default /tmp/onevision-bench-train) is outside the repository and is never committed.

Batch: one sample, fixtures/images/photos/astronaut.png resized to 384x384 (PIL bicubic, written
to WORK), one human turn "<image>\\n" + a question and one gpt answer of a few dozen tokens
(WORK/sample.jsonl). Stage 1 (`--stage 1`: projector only, plain template, the base tile: 729
image tokens) and stage 2 (`--stage 2-si`: everything trains, anyres_max_9: a 384x384 image is
1 base + 1 grid tile), each with and without gradient checkpointing.

onevision: `onevision train --model M --data WORK/sample.jsonl --image-folder WORK --stage S
[--gradient-checkpointing] --max-steps N --warmup-ratio 0 --no-progress --output TMP`; the step
time is `tokens / tokens_per_s` of each line of TMP/train_log.jsonl (measured inside its loop:
data prep + forward + backward + clip + AdamW + logging; model load and the final checkpoint
save are outside).

PyTorch: a worker process (this file with --tf-worker) per configuration, so that its peak RSS is
its own: `LlavaOnevisionForConditionalGeneration.from_pretrained(M, dtype=float32,
attn_implementation=...)`, `torch.set_num_threads(T)`, `model.train()`, requires_grad per stage
(stage 1: the projector; stage 2: everything), `model.gradient_checkpointing_enable()` for the
checkpointing rows (transformers' default: non-reentrant `torch.utils.checkpoint` per vision and
decoder layer), torch.optim.AdamW (foreach=False, the CPU single-tensor path; one group per part
and decay as transformers' Trainer + LLaVA-NeXT build them, the stage's lrs, weight decay 0),
the cosine schedule. The batch and the loss are tools/fixtures/make_train_fixtures.py's (the
`Pipeline` label port and PIL image processor, `batch_loss`: Σ CE over the supervised shifted
labels / their count, on the logits of every position as transformers computes them). Each
step: batch prep (image file -> pixels, label port) + forward + backward + clip_grad_norm_(1.0)
+ step + zero_grad(set_to_none=True), one clock, so batch prep is inside both engines' step
times. The feature-row count of the image (how many placeholders the label port expands) is
computed once before the first step by transformers' vision tower under no_grad and reused
(onevision computes it arithmetically).

Variants (--attn): `sdpa` (PyTorch's fast attention, the main table), `eager`, and `sdpa+sup`,
which applies the LM head only at the supervised positions, as onevision does, instead of at
every position as transformers' forward does (the logits of a 1.5k-token step are 151,936 x 1.5k
f32: 0.9 GB and 0.4 TFLOP per pass); the loss and gradients are the same.

Both: step 1 is the warm-up; the step time is the median of steps 2..N (N = --steps, default 3:
the mean of steps 2 and 3). Peak RSS is the kernel's high-water mark of the process
(`ru_maxrss` of `os.wait4`, what `/usr/bin/time -f %M` prints): weights, gradients, optimizer
state, activations, allocator caches, over the whole process (load and save included). The RSS
is also sampled every 0.25 s from /proc/PID/status to give the timeline in the JSON. A watchdog
kills a process when MemAvailable falls under 600 MiB (reported as "out of memory", not hidden).

Noise: the machine's CPUs may be shared. Before each process the harness waits (at most 10 min)
until fewer than --quiet-cores cores are busy, and it reports, per process, the CPU time the
rest of the machine used while it ran ("other CPU use", in cores): a cell with other CPU use
well above 0.05 was measured on a busy machine.

Ratios: step time PyTorch / onevision (> 1: onevision faster); peak RSS onevision / PyTorch
(< 1: onevision smaller). Targets (issue 10): step time <= 1.0x PyTorch's, peak RSS <= 0.8x.

Results: a Markdown report on stdout and in --out (default WORK/results.md), raw numbers next to
it (.json); both rewritten after every process.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "onevision"
PHOTOS = ROOT / "fixtures" / "images" / "photos"
sys.path.insert(0, str(ROOT / "tools" / "bench_vs_transformers"))
import bench as infer_bench  # noqa: E402  (ensure_checkpoint, machine, git_rev, check_versions)

PINNED = infer_bench.PINNED
IMAGE_NAME = "astronaut_384.png"
QUESTION = "<image>\nWhat is shown in this image? Describe it in detail."
ANSWER = ("An astronaut in a white spacesuit stands in front of an American flag, holding a helmet "
          "under one arm. Behind him is a space shuttle model on a stand, and the room is lit from above.")
SAMPLE = {"id": "bench", "image": IMAGE_NAME,
          "conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": ANSWER}]}
# name -> (onevision --stage, gradient checkpointing, template, single-image strategy, trained parts, lrs)
CONFIGS = {
    "stage1": ("1", False, "plain", "base", "projector", {"projector": 1e-3}),
    "stage1-gc": ("1", True, "plain", "base", "projector", {"projector": 1e-3}),
    "stage2": ("2-si", False, "qwen_1_5", "anyres", "all", {"projector": 1e-5, "vision": 2e-6, "language": 1e-5}),
    "stage2-gc": ("2-si", True, "qwen_1_5", "anyres", "all", {"projector": 1e-5, "vision": 2e-6, "language": 1e-5}),
}
MIN_AVAILABLE_MIB = 600
QUIET_CORES = 0.3
QUIET_MAX_WAIT_S = 600


# ---------------------------------------------------------------------------------------------
# Inputs


def make_inputs(work):
    from PIL import Image

    img = work / IMAGE_NAME
    if not img.exists():
        im = Image.open(PHOTOS / "astronaut.png").convert("RGB")  # 512x512
        tmp = img.with_suffix(".tmp.png")
        im.resize((384, 384), Image.BICUBIC).save(tmp)
        tmp.rename(img)
    data = work / "sample.jsonl"
    data.write_text(json.dumps(SAMPLE) + "\n")
    return data


# ---------------------------------------------------------------------------------------------
# Measuring a process


def mem_available_mib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def cpu_busy_s():
    """Busy CPU seconds of the whole machine so far (user, nice, system, irq, softirq, steal)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(threshold, max_wait_s):
    """Waits until the machine's busy cores over 3 s fall below `threshold` (other engineers'
    builds share these CPUs), at most `max_wait_s`; returns the seconds waited."""
    t0 = time.perf_counter()
    while True:
        b0 = cpu_busy_s()
        time.sleep(3)
        busy = (cpu_busy_s() - b0) / 3
        waited = time.perf_counter() - t0
        if busy < threshold or waited >= max_wait_s:
            if waited > 3.5:
                print(f"  (waited {waited:.0f} s for the CPUs to be idle; {busy:.2f} busy cores)", file=sys.stderr,
                      flush=True)
            return waited


def run_measured(cmd, label, env=None, log_dir=None):
    """Runs `cmd`, samples its RSS, kills it if the machine runs out of memory. Returns a dict:
    rc, wall_s, peak_rss_mib (ru_maxrss from wait4), rss timeline [(t, MiB)], oom, stdout, stderr."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bench-train-"))
    out_p, err_p = log_dir / f"{label}.stdout", log_dir / f"{label}.stderr"
    waited = wait_quiet(QUIET_CORES, QUIET_MAX_WAIT_S)
    with open(out_p, "w") as out, open(err_p, "w") as err:
        busy0 = cpu_busy_s()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        timeline, state = [], {"oom": False, "min_avail": float("inf")}
        stop = threading.Event()

        def poll():
            status = Path(f"/proc/{p.pid}/status")
            while not stop.is_set():
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            timeline.append((round(time.perf_counter() - t0, 2), int(line.split()[1]) // 1024))
                            break
                except OSError:
                    break
                avail = mem_available_mib()
                state["min_avail"] = min(state["min_avail"], avail)
                if avail < MIN_AVAILABLE_MIB and not state["oom"]:
                    state["oom"] = True
                    os.killpg(p.pid, signal.SIGKILL)
                stop.wait(0.25)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        # CPU used by everything but this process while it ran (the harness's polling included).
        others = max(0.0, (cpu_busy_s() - busy0) - (ru.ru_utime + ru.ru_stime)) / max(wall, 1e-9)
        stop.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024.0, "oom": state["oom"],
            "min_mem_available_mib": state["min_avail"], "rss_timeline": timeline,
            "other_cpu_cores": others, "waited_s": waited,
            "stdout": out_p.read_text(), "stderr": err_p.read_text()}


def median_after_warmup(xs):
    return statistics.median(xs[1:]) if len(xs) > 1 else (xs[0] if xs else None)


def failure(r, label):
    if r["oom"]:
        why = (f"out of memory: killed at {r['peak_rss_mib'] / 1024:.1f} GiB RSS when MemAvailable fell "
               f"under {MIN_AVAILABLE_MIB} MiB")
    else:
        tail = (r["stderr"] or r["stdout"]).strip().splitlines()[-3:]
        why = f"exit {r['rc']}: " + " / ".join(tail)
    print(f"  {label}: FAILED ({why})", file=sys.stderr, flush=True)
    return {"error": why, "peak_rss_mib": r["peak_rss_mib"], "wall_s": r["wall_s"],
            "rss_timeline": r["rss_timeline"][::4]}


# ---------------------------------------------------------------------------------------------
# onevision


def run_onevision(binary, model, data, work, name, steps, threads, keep_logs):
    stage, gc = CONFIGS[name][0], CONFIGS[name][1]
    out = Path(tempfile.mkdtemp(prefix=f"ov-train-{name}-", dir=work))
    cmd = [str(binary), "train", "--model", str(model), "--data", str(data), "--image-folder", str(work),
           "--stage", stage, "--max-steps", str(steps), "--warmup-ratio", "0", "--no-progress",
           "--output", str(out)]
    if gc:
        cmd.append("--gradient-checkpointing")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    load = os.getloadavg()[0]
    r = run_measured(cmd, f"onevision-{name}", env=env, log_dir=keep_logs)
    try:
        if r["rc"] != 0:
            return failure(r, "onevision")
        recs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]
        secs = [rec["tokens"] / rec["tokens_per_s"] for rec in recs]
        res = {"step_s": median_after_warmup(secs), "steps_s": secs, "losses": [rec["loss"] for rec in recs],
               "grad_norms": [rec["grad_norm"] for rec in recs], "tokens": recs[0]["tokens"],
               "peak_rss_mib": r["peak_rss_mib"], "wall_s": r["wall_s"], "threads": threads,
               "loadavg_before": load, "other_cpu_cores": r["other_cpu_cores"], "command": shlex.join(cmd),
               "rss_timeline": r["rss_timeline"][::4]}
        print(f"  onevision: steps {', '.join(f'{s:.1f}' for s in secs)} s, peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB, loss {res['losses'][0]:.5f}, wall {r['wall_s']:.0f} s",
              file=sys.stderr, flush=True)
        return res
    finally:
        shutil.rmtree(out, ignore_errors=True)  # the saved checkpoint: GBs


# ---------------------------------------------------------------------------------------------
# PyTorch worker (one process per configuration and attention implementation)


def tf_worker(spec):
    import warnings

    import torch
    from transformers import LlavaOnevisionForConditionalGeneration, Trainer
    from transformers.optimization import get_cosine_schedule_with_warmup

    sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
    import make_train_fixtures as mtf

    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    ckpt = Path(spec["model"])
    _, gc, template, strategy, parts, lrs = CONFIGS[spec["config"]]
    mtf.IMAGES = Path(spec["image_folder"])  # where Pipeline.sample resolves the sample's image

    class Pipeline(mtf.Pipeline):
        """make_train_fixtures' Pipeline on the benchmark checkpoint, the feature-row count
        computed once."""

        def __init__(self, d):
            self.name = d.name
            self.dir = d
            self.cfg = json.loads((d / "config.json").read_text())
            self.image_processor = mtf.LlavaOnevisionImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3)
            self.video_processor = mtf.LlavaOnevisionVideoProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
            self.tok = mtf.AutoTokenizer.from_pretrained(d)
            raw = mtf.tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
            raw.no_truncation()
            raw.no_padding()
            self.checked = mtf.lab.Checked(self.tok, raw)
            self.newline_id = self.tok("\n").input_ids[0]
            self.rows = {}

        def feature_rows(self, model, m):
            key = (m["kind"], tuple(m["size"]), m["pixels"].shape[0])
            if key not in self.rows:
                self.rows[key] = super().feature_rows(model, m)
            return self.rows[key]

    def batch_loss_supervised(pipe, model, batch, step_tokens):
        """`mtf.batch_loss` with the LM head applied only where the next token is supervised
        (what onevision does) instead of at every position (what transformers does)."""
        t = max(len(ids) for ids, _, _ in batch)
        pad = pipe.tok.convert_tokens_to_ids("<|endoftext|>")
        input_ids = torch.full((len(batch), t), pad, dtype=torch.long)
        labels = torch.full((len(batch), t), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), t), dtype=torch.long)
        for i, (ids, lb, _) in enumerate(batch):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            labels[i, :len(lb)] = torch.tensor(lb)
            mask[i, :len(ids)] = 1
        embeds = model.get_input_embeddings()(input_ids)
        rows = [pipe.features(model, m) for _, _, media in batch for m in media]
        if rows:
            sel = (input_ids == pipe.cfg["image_token_index"]).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(sel, torch.cat(rows, 0).to(embeds.dtype))
        hidden = model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        shift_labels = labels[:, 1:]
        keep = shift_labels != -100
        logits = model.lm_head(hidden[:, :-1][keep]).float()
        ce = torch.nn.functional.cross_entropy(logits, shift_labels[keep], reduction="sum")
        return (ce / step_tokens,)

    attn, _, head = spec["attn"].partition("+")
    loss_fn = batch_loss_supervised if head == "sup" else mtf.batch_loss
    pipe = Pipeline(ckpt)
    model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(
        ckpt, dtype=torch.float32, attn_implementation=attn, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "mismatched_keys", "error_msgs")}
    assert not bad, f"{ckpt}: {bad}"
    model.train()
    mtf.set_trainable(model, parts)
    if gc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.gradient_checkpointing_enable()
    decay = set(Trainer.get_decay_parameter_names(None, model))
    groups = []
    for part in ("projector", "vision", "language"):
        for dec in (True, False):
            ps = [p for n, p in model.named_parameters()
                  if p.requires_grad and mtf.part_of(n) == part and (n in decay) == dec]
            if ps:
                groups.append({"params": ps, "lr": lrs[part], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lrs.get("language", lrs["projector"]), betas=(0.9, 0.999), eps=1e-8,
                            foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, 0, spec["steps"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    sample = json.loads(Path(spec["data"]).read_text().splitlines()[0])
    with torch.no_grad():
        pipe.sample(sample, template, strategy, model)  # the feature-row count, once, untimed

    steps = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        batch = [pipe.sample(sample, template, strategy, model)]
        tokens = mtf.supervised(batch[0][1])
        t1 = time.perf_counter()
        loss, *_ = loss_fn(pipe, model, batch, tokens)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0).item()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        steps.append({"step_s": t4 - t0, "prep_s": t1 - t0, "forward_s": t2 - t1, "backward_s": t3 - t2,
                      "update_s": t4 - t3, "loss": loss.item(), "grad_norm": norm,
                      "tokens": len(batch[0][0]), "supervised": tokens})
        print(f"step {len(steps)}: {t4 - t0:.2f} s (prep {t1 - t0:.2f}, forward {t2 - t1:.2f}, backward "
              f"{t3 - t2:.2f}, clip+AdamW {t4 - t3:.2f}), loss {loss.item():.5f}", file=sys.stderr, flush=True)
    import resource

    print(json.dumps({"steps": steps, "attn_implementation": model.config._attn_implementation,
                      "threads": torch.get_num_threads(),
                      "self_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def run_pytorch(model, data, work, name, attn, steps, threads, keep_logs):
    spec = {"model": str(model), "data": str(data), "image_folder": str(work), "config": name, "attn": attn,
            "steps": steps, "threads": threads}
    load = os.getloadavg()[0]
    r = run_measured([sys.executable, str(Path(__file__).resolve()), "--tf-worker", json.dumps(spec)],
                     f"pytorch-{name}-{attn}", log_dir=keep_logs)
    if r["rc"] != 0:
        return failure(r, f"pytorch {attn}")
    lines = [line for line in r["stdout"].splitlines() if line.startswith("{")]
    if not lines:
        return failure(dict(r, rc="no JSON"), f"pytorch {attn}")
    w = json.loads(lines[-1])
    secs = [s["step_s"] for s in w["steps"]]
    med = {k: median_after_warmup([s[k] for s in w["steps"]])
           for k in ("prep_s", "forward_s", "backward_s", "update_s")}
    res = {"step_s": median_after_warmup(secs), "steps_s": secs, "phases_s": med,
           "losses": [s["loss"] for s in w["steps"]], "grad_norms": [s["grad_norm"] for s in w["steps"]],
           "tokens": w["steps"][0]["tokens"], "peak_rss_mib": r["peak_rss_mib"], "wall_s": r["wall_s"],
           "attn_implementation": w["attn_implementation"], "threads": w["threads"], "loadavg_before": load,
           "other_cpu_cores": r["other_cpu_cores"],
           "rss_timeline": r["rss_timeline"][::4]}
    print(f"  pytorch {attn}: steps {', '.join(f'{s:.1f}' for s in secs)} s, peak RSS {r['peak_rss_mib']:.0f} "
          f"MiB, loss {res['losses'][0]:.5f}, wall {r['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return res


# ---------------------------------------------------------------------------------------------
# Report


def cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile")}


def fmt_s(d):
    return f"{d['step_s']:.2f}" if d and d.get("step_s") is not None else "–"


def fmt_mib(d):
    return f"{d['peak_rss_mib']:,.0f}" if d and "error" not in d and d.get("peak_rss_mib") else "–"


def cell_err(d):
    return "**" + d["error"].split(":")[0] + "**" if d and "error" in d else None


def report_markdown(meta, results):
    m = meta["machine"]
    fl = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in meta["cpu_flags"].items())
    attn = meta["table_attn"]
    out = ["# onevision vs PyTorch: one training step, LLaVA-OneVision 0.5B-shaped, f32, CPU", "",
           f"- machine: {m['cpu']} ({fl}), {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical), "
           f"{m['ram_gib']} GiB RAM; {m['os']}",
           f"- versions: {meta['onevision']} ({meta['git']}), transformers {meta['versions']['transformers']}, "
           f"torch {meta['versions']['torch']}, Python {m['python']}",
           f"- threads: onevision {meta['threads']} (RAYON_NUM_THREADS), PyTorch torch.set_num_threads({meta['threads']})",
           f"- model: {meta['model']} (random weights, f32); batch: 1 sample, {IMAGE_NAME} (384x384), "
           f"{meta['steps']} steps per process, step time = median of steps 2..{meta['steps']} (step 1 is warm-up)",
           f"- command: `{meta['command']}`; {meta['date']}",
           f"- table: PyTorch with attn_implementation=\"{attn}\"; ratio step = PyTorch / onevision (> 1: onevision "
           "faster), ratio RSS = onevision / PyTorch (< 1: onevision smaller); peak RSS = ru_maxrss of the process", ""]
    out += ["| config | tokens | onevision step s | PyTorch step s | step ratio | onevision peak RSS MiB | "
            "PyTorch peak RSS MiB | RSS ratio | loss step 1 (ov / pt) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ov, pt = r.get("onevision"), (r.get("pytorch") or {}).get(attn)
        tok = (ov or {}).get("tokens") or (pt or {}).get("tokens") or "–"
        sr = (f"{pt['step_s'] / ov['step_s']:.2f}x" if ov and pt and ov.get("step_s") and pt.get("step_s") else "–")
        rr = (f"{ov['peak_rss_mib'] / pt['peak_rss_mib']:.2f}x"
              if ov and pt and "error" not in ov and "error" not in pt else "–")
        ls = "–"
        if ov and pt and ov.get("losses") and pt.get("losses"):
            ls = f"{ov['losses'][0]:.5f} / {pt['losses'][0]:.5f}"
        out.append(f"| {r['config']} | {tok} | {cell_err(ov) or fmt_s(ov)} | {cell_err(pt) or fmt_s(pt)} | {sr} | "
                   f"{fmt_mib(ov)} | {fmt_mib(pt)} | {rr} | {ls} |")
    out.append("")
    variants = sorted({a for r in results for a in (r.get("pytorch") or {})}, key=meta["attns"].index)
    if len(variants) > 1:
        out += ["## Against every PyTorch variant", "",
                "`+sup`: the LM head only at the supervised positions (onevision's head), instead of "
                "transformers' logits at every position.", "",
                "| config | PyTorch variant | PyTorch step s | step ratio | PyTorch peak RSS MiB | RSS ratio |",
                "|---|---|---:|---:|---:|---:|"]
        for r in results:
            ov = r.get("onevision")
            for a in variants:
                pt = (r.get("pytorch") or {}).get(a)
                if not pt:
                    continue
                sr = (f"{pt['step_s'] / ov['step_s']:.2f}x" if ov and ov.get("step_s") and pt.get("step_s") else "–")
                rr = (f"{ov['peak_rss_mib'] / pt['peak_rss_mib']:.2f}x"
                      if ov and "error" not in ov and "error" not in pt else "–")
                out.append(f"| {r['config']} | {a} | {cell_err(pt) or fmt_s(pt)} | {sr} | {fmt_mib(pt)} | {rr} |")
        out.append("")
    out += ["## Every process", "",
            "| config | engine | steps s | step s | peak RSS MiB | wall s | other CPU use (cores) | note |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        rows = [("onevision", r.get("onevision"))] + [(f"PyTorch {a}", d) for a, d in (r.get("pytorch") or {}).items()]
        for eng, d in rows:
            if not d:
                continue
            if "error" in d:
                out.append(f"| {r['config']} | {eng} | – | – | {d['peak_rss_mib']:,.0f} | {d['wall_s']:.0f} | – | "
                           f"{d['error']} |")
                continue
            note = ""
            if "phases_s" in d:
                ph = d["phases_s"]
                note = (f"prep {ph['prep_s']:.2f}, forward {ph['forward_s']:.2f}, backward {ph['backward_s']:.2f}, "
                        f"clip+AdamW {ph['update_s']:.2f} s")
            out.append(f"| {r['config']} | {eng} | {', '.join(f'{s:.2f}' for s in d['steps_s'])} | {d['step_s']:.2f} | "
                       f"{d['peak_rss_mib']:,.0f} | {d['wall_s']:.0f} | {d.get('other_cpu_cores', float('nan')):.2f} | "
                       f"{note} |")
    out.append("")
    return "\n".join(out)


def write_results(out, meta, results):
    out.write_text(report_markdown(meta, results) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


def main():
    global MIN_AVAILABLE_MIB, QUIET_CORES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="/tmp/onevision-bench-train", type=Path,
                    help="checkpoint, inputs, temporary outputs and default results (default: %(default)s)")
    ap.add_argument("--model", type=Path, help="checkpoint directory instead of WORK/ov05b-f32 (built when missing)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--attn", default="sdpa,eager,sdpa+sup",
                    help="PyTorch variants, comma-separated: an attn_implementation, optionally +sup (the LM "
                         "head only at the supervised positions, as onevision computes it, instead of "
                         "transformers' every position); the main table uses the first (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per process (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="threads of both engines (default: %(default)s)")
    ap.add_argument("--only", choices=["onevision", "pytorch"], help="run one engine only")
    ap.add_argument("--out", type=Path, help="Markdown report (default WORK/results.md); JSON next to it")
    ap.add_argument("--keep-logs", type=Path, help="keep every process's stdout/stderr in this folder")
    ap.add_argument("--binary", type=Path, default=BIN,
                    help="the onevision binary (default: %(default)s; another build for before/after runs)")
    ap.add_argument("--quiet-cores", type=float, default=QUIET_CORES,
                    help="before each process, wait until fewer CPU cores than this are busy (default: %(default)s)")
    ap.add_argument("--min-available-mib", type=int, default=MIN_AVAILABLE_MIB,
                    help="kill a process when MemAvailable falls below this (default: %(default)s)")
    ap.add_argument("--tf-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tf_worker:
        return tf_worker(json.loads(args.tf_worker))

    vers = infer_bench.check_versions()
    binary = args.binary.resolve()
    if args.only != "pytorch" and not binary.is_file():
        sys.exit(f"{binary} not found: build it first with `cargo build --release -p onevision-cli`")
    MIN_AVAILABLE_MIB = args.min_available_mib
    QUIET_CORES = args.quiet_cores
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"unknown config {c!r} (known: {', '.join(CONFIGS)})")
    attns = [a.strip() for a in args.attn.split(",") if a.strip()]
    work = args.work_dir.resolve()
    if work.is_relative_to(ROOT):
        sys.exit(f"--work-dir {work} is inside the repository; the checkpoint (3.6 GB) must not be")
    work.mkdir(parents=True, exist_ok=True)
    data = make_inputs(work)
    model = args.model.resolve() if args.model else infer_bench.ensure_checkpoint(work)
    if not (model / "config.json").is_file():
        sys.exit(f"{model} has no config.json: not a checkpoint directory")
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    out = (args.out or work / "results.md").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ov_version = "onevision n/a"
    if binary.is_file():
        ov_version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip() or "?"
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join([Path(sys.executable).as_posix(), *sys.argv]),
            "machine": infer_bench.machine(), "cpu_flags": cpu_flags(), "versions": vers, "onevision": ov_version,
            "git": infer_bench.git_rev(), "model": str(model), "steps": args.steps, "threads": args.threads,
            "table_attn": attns[0] if attns else None, "attns": attns, "sample": SAMPLE}
    m = meta["machine"]
    print(f"{m['cpu']}, {m['usable_cpus']} CPUs, {m['ram_gib']} GiB ({mem_available_mib() / 1024:.1f} available); "
          f"{ov_version}; torch {vers['torch']}, transformers {vers['transformers']}; model {model}",
          file=sys.stderr, flush=True)

    results = []
    for name in configs:
        print(f"{name}:", file=sys.stderr, flush=True)
        r = {"config": name, "onevision": None, "pytorch": {}}
        results.append(r)
        if args.only != "pytorch":
            r["onevision"] = run_onevision(binary, model, data, work, name, args.steps, args.threads,
                                           args.keep_logs)
            write_results(out, meta, results)
        if args.only != "onevision":
            for attn in attns:
                r["pytorch"][attn] = run_pytorch(model, data, work, name, attn, args.steps, args.threads,
                                                 args.keep_logs)
                write_results(out, meta, results)
    print(report_markdown(meta, results))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
