#!/usr/bin/env python3
"""Loads a nano checkpoint with transformers (unchanged, as any llava-hf LLaVA-OneVision) and
answers world questions greedily, to compare with `onevision eval`/`generate` on the same files.

    /opt/venv/bin/python tools/nano/check_transformers.py CKPT SAMPLES.json [N]

Prints one JSON line per sample: id, question, transformers' answer, reference answer.
Single images and multi-image sets only (a frame folder needs a video loader transformers does
not have for folders).
"""
import json
import os
import sys

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration


def main(ckpt, samples_path, n=36):
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(ckpt)
    base = os.path.dirname(os.path.abspath(samples_path))
    samples = json.load(open(samples_path))
    done = 0
    for s in samples:
        if done >= n:
            break
        if "video" in s:
            continue
        paths = s["image"] if isinstance(s["image"], list) else [s["image"]]
        images = [Image.open(os.path.join(base, p)).convert("RGB") for p in paths]
        question = s["conversations"][0]["value"].replace("<image>\n", "")
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
        prompt = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = proc(images=images, text=prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=128, do_sample=False)
        answer = proc.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        print(json.dumps({"id": s["id"], "task": s["task"], "question": question,
                          "transformers": answer.strip(), "reference": s["conversations"][1]["value"]}))
        done += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 36)
