"""Where MuLan loses the mode: the pitch-class branch vs the embedding.

    python training/recipes/mode_probe.py MULAN [--root data/small] [--train 600]

On the first 4 s crop (MuLan's training crop) of ``--train`` train clips and all test
clips: the chroma-template key estimator on the branch's own input (the crop's mean
chroma, :func:`musicrl.mulan.features.chroma_profile`), and logistic probes (fitted on
train, scored on test) of major/minor from the pitch-class branch's output and from the
128-d embedding; then the scale of each part of the pooled audio feature (per-dimension
std over test crops) and of its rows in ``audio_proj``: how much of each reaches the
embedding.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    from musicrl.data.loader import read_crop
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.estimators import key_from_chroma
    from musicrl.mulan import load_mulan
    from musicrl.mulan.features import chroma_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mulan")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--train", type=int, default=600)
    args = ap.parse_args()
    m, _ = load_mulan(args.mulan)
    if not m.cfg.music_features:
        raise SystemExit(f"{args.mulan} has no pitch-class branch (model.music_features=false)")
    n, mw = m.cfg.crop_samples, m.cfg.music_width

    def data(split, k):
        clips = load_clips(args.root, splits=[split])[:k or None]
        w = np.stack([read_crop(f"{args.root}/{c.path}", n, None, offset=0)[0] for c in clips])
        return w, np.array([c.labels["mode"] == "minor" for c in clips])

    def feats(w):
        prof, full, emb = [], [], []
        for i in range(0, len(w), 32):
            x = jnp.asarray(w[i:i + 32])
            prof.append(np.asarray(chroma_profile(x, m.cfg.sample_rate, m.cfg.hop)))
            full.append(np.asarray(m.audio(x)))
            emb.append(np.asarray(m.embed_audio(x)))
        return np.concatenate(prof), np.concatenate(full), np.concatenate(emb)

    (wtr, ytr), (wte, yte) = data("train", args.train), data("test", 0)
    _, ftr, etr = feats(wtr)
    pte, fte, ete = feats(wte)
    pitch = slice(-2 * mw, -mw)
    ks = np.array([key_from_chroma(p)[1] == "minor" for p in pte])
    print(f"test crops: {len(yte)}, majority {max(yte.mean(), 1 - yte.mean()):.3f}")
    print(f"chroma templates on the crop's mean chroma: {(ks == yte).mean():.3f}")
    for name, a, b in (("pitch-class branch output", ftr[:, pitch], fte[:, pitch]),
                       ("128-d embedding", etr, ete)):
        clf = LogisticRegression(max_iter=2000).fit(a, ytr)
        print(f"logistic probe, {name}: test {clf.score(b, yte):.3f} "
              f"(train {clf.score(a, ytr):.3f})")
    kernel = np.asarray(m.audio_proj.kernel[...], np.float32)
    d = kernel.shape[0]
    for name, sl in (("ConvNeXt pool", slice(0, d - 2 * mw)), ("pitch-class", pitch),
                     ("beat-period", slice(d - mw, d))):
        print(f"{name:14s} feature std {fte[:, sl].std(0).mean():.3f}, "
              f"audio_proj row norm {np.linalg.norm(kernel[sl], axis=1).mean():.3f}")


if __name__ == "__main__":
    main()
