"""How much of the vision tower's spread the projector keeps (docs/NANO.md, "Probes after run 2").

For a nano checkpoint and a few world images, prints for the tower's output, the projector's
output and the text embeddings: the norm of the mean token, the mean deviation from it, and the
share of the variance in the top 1, 5 and 20 principal directions. Deterministic (no sampling).

    /opt/venv/bin/python tools/nano/projector_stats.py CHECKPOINT IMAGE [IMAGE ...]
"""
import sys

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration


def report(x: torch.Tensor, name: str) -> None:
    x = x.reshape(-1, x.shape[-1])
    mu = x.mean(0)
    dev = (x - mu).norm(dim=-1).mean()
    s = torch.linalg.svdvals(x - mu)
    v = s**2 / (s**2).sum()
    print(
        f"{name}: tokens {x.shape[0]}, mean-token norm {mu.norm():.3f}, mean deviation {dev:.3f}, "
        f"token norm {x.norm(dim=-1).mean():.3f}, variance in top 1/5/20 directions "
        f"{v[0]:.2f} / {v[:5].sum():.2f} / {v[:20].sum():.2f}"
    )


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ckpt, paths = sys.argv[1], sys.argv[2:]
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(ckpt).eval()
    proc = AutoProcessor.from_pretrained(ckpt)
    images = [Image.open(p).convert("RGB") for p in paths]
    pixels = proc.image_processor(images, return_tensors="pt")["pixel_values"].flatten(0, 1)
    with torch.no_grad():
        layer = model.config.vision_feature_layer
        h = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[layer]
        p = model.model.multi_modal_projector(h)
    report(h, "tower output")
    report(p, "projector output")
    report(model.model.language_model.embed_tokens.weight.detach(), "text embeddings")


if __name__ == "__main__":
    main()
