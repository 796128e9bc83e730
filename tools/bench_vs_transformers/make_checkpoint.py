"""Writes a random-weight checkpoint with the exact shapes of llava-hf/llava-onevision-qwen2-0.5b-ov-hf
(SigLIP so400m 1152x26 at 384 px / 14 px, Qwen2-0.5B 896x24, 14 heads / 2 kv heads, vocab 151936,
tied embeddings) and the real Qwen2 tokenizer (fixtures/tokenizer/qwen2), in the transformers-5
layout, for benchmarks: it costs exactly what the real model costs. Not committed (3.6 GB in f32).

    /opt/venv/bin/python tools/bench_vs_transformers/make_checkpoint.py OUT_DIR [--dtype float32|bfloat16]
"""

import argparse
import json
import lzma
import shutil
import sys
from pathlib import Path

import torch
import transformers
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

ROOT = Path(__file__).resolve().parents[2]
PINNED = {"torch": "2.15.0", "transformers": "5.24.0"}


def config():
    vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                  image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                  vision_use_head=False, model_type="siglip_vision_model")
    text = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6,
                rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"}, tie_word_embeddings=True,
                hidden_act="silu", model_type="qwen2", use_sliding_window=False, sliding_window=None)
    return LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=151646,
                                video_token_index=151647, vision_feature_layer=-1,
                                vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
                                tie_word_embeddings=True, projector_hidden_act="gelu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    for k, v in PINNED.items():
        found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}[k]
        if found != v:
            sys.exit(f"{k} {found} found, {v} required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config()).to(getattr(torch, args.dtype))
    model.generation_config.eos_token_id = 151645
    model.generation_config.bos_token_id = 151643
    model.save_pretrained(out)
    tok = ROOT / "fixtures" / "tokenizer" / "qwen2"
    (out / "tokenizer.json").write_bytes(lzma.decompress((tok / "tokenizer.json.xz").read_bytes()))
    shutil.copy(tok / "tokenizer_config.json", out / "tokenizer_config.json")
    template = json.loads((tok / "chat_template.json").read_text())["chat_template"]
    (out / "chat_template.jinja").write_text(template)
    proc = json.loads((ROOT / "fixtures" / "models" / "tied" / "checkpoint" / "processor_config.json").read_text())
    proc["vision_aspect_ratio"] = "anyres_max_9"
    (out / "processor_config.json").write_text(json.dumps(proc, indent=2, sort_keys=True) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {n / 1e6:.0f} M parameters, {args.dtype}")


if __name__ == "__main__":
    main()
