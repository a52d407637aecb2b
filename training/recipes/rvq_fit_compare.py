"""Does a conditioning RVQ fitted on audio ∪ caption embeddings reconstruct both ≥ 0.95?

    python training/recipes/rvq_fit_compare.py MULAN_WEIGHTS   # data/small, ≈ 8 min, one core

Fits the RVQ of the given MuLan twice, on train audio embeddings (4 crops per clip) alone
and on those plus every train caption's text embedding (``rvq_text=true`` of ``musicrl
train mulan``), and prints the 12-token reconstruction cosine of valid audio and valid
captions for each.
"""

import sys
import time

import numpy as np

from musicrl.data.manifest import load_clips
from musicrl.mulan import (
    embed_audio_batched,
    embed_prompts_batched,
    fit_conditioning_rvq,
    load_mulan,
    reconstruction_cosine,
)
from training.mulan import _fixed_crops


def main(weights: str, root: str = "data/small") -> None:
    t0 = time.time()
    model, _ = load_mulan(weights)
    n = model.cfg.crop_samples
    tr = load_clips(root, splits=["train"])
    va = [c for c in load_clips(root, splits=["valid"]) if c.captions]
    a = embed_audio_batched(model, _fixed_crops(root, tr, n, seed=0, per_clip=4))
    t = embed_prompts_batched(model, [cap for c in tr for cap in c.captions])
    va_a = embed_audio_batched(model, _fixed_crops(root, va, n, seed=0))
    va_t = embed_prompts_batched(model, [cap for c in va for cap in c.captions])
    print(f"embedded {len(a)} audio crops and {len(t)} captions in {time.time() - t0:.0f} s",
          flush=True)
    for name, emb in (("audio", a), ("audio+text", np.concatenate([a, t]))):
        fit_conditioning_rvq(model, emb, ema_passes=3, seed=0)
        print(f"fit on {name}: valid audio {reconstruction_cosine(model, va_a)[-1]:.4f}, "
              f"valid captions {reconstruction_cosine(model, va_t)[-1]:.4f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
