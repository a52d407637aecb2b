"""How much tempo a MuLan audio embedding keeps, beside the signal feature it is given.

    python training/recipes/tempo_probe.py WEIGHTS [--root data/small] [--train 600]

Linear probes (standardized logistic regression, fitted on ``--train`` random train clips,
scored on every test clip) of the tempo bucket (slow < 90 ≤ medium ≤ 130 < fast BPM) from

* the model's whole-clip audio embedding (4 s windows averaged, as ``musicrl eval mulan``),
* the raw onset autocorrelation that feeds the beat-period branch (lags 0.2–2 s, averaged
  over 4 s windows; ``musicrl.mulan.features.onset_autocorrelation``).

A gap between the two means the contrastive training dropped tempo the input carried
(docs/mulan.md "Experiments": 0.65 vs 0.81 for model B).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np

BUCKETS = ("slow", "medium", "fast")
WINDOW, HOP = 200, 150            # 50 Hz mel frames: 4 s windows, 3 s apart


def _features(model, root: str, clips) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from musicrl.audio import load_audio
    from musicrl.mulan import embed_audio_long
    from musicrl.mulan.features import onset_autocorrelation
    from musicrl.spectral import log_mel

    cfg = model.cfg
    wavs = [load_audio(Path(root) / c.path, cfg.sample_rate) for c in clips]
    n = max(len(w) for w in wavs)
    wav = np.stack([np.pad(w, (0, n - len(w))) for w in wavs])
    emb = np.concatenate([embed_audio_long(model, wav[i:i + 32]) for i in range(0, len(wav), 32)])
    mel = log_mel(jnp.asarray(wav), cfg.sample_rate, cfg.mel_n_fft, cfg.hop, cfg.n_mels)
    starts = range(0, max(mel.shape[1] - WINDOW, 0) + 1, HOP)
    ac = np.mean([np.asarray(onset_autocorrelation(mel[:, s:s + WINDOW])) for s in starts], 0)
    y = np.array([BUCKETS.index(c.labels["tempo_bucket"]) for c in clips])
    return emb, ac, y


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from musicrl.data.manifest import load_clips
    from musicrl.mulan import load_mulan

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--train", type=int, default=600, help="train clips to fit the probes on")
    args = ap.parse_args()

    model, _ = load_mulan(args.weights)
    labelled = lambda cs: [c for c in cs if c.labels and "tempo_bucket" in c.labels]  # noqa: E731
    train = labelled(load_clips(args.root, ["train"]))
    test = labelled(load_clips(args.root, ["test"]))
    if len(train) < 10 or len(test) < 10:
        raise SystemExit(f"need labelled train and test clips under {args.root} "
                         f"(found {len(train)} / {len(test)}): run `musicrl data build`")
    pick = np.random.default_rng(0).choice(len(train), min(args.train, len(train)), replace=False)
    e_tr, a_tr, y_tr = _features(model, args.root, [train[i] for i in pick])
    e_te, a_te, y_te = _features(model, args.root, test)
    print(f"tempo bucket, linear probe ({len(pick)} train clips → {len(test)} test clips; "
          f"majority {np.bincount(y_te).max() / len(y_te):.3f})")
    print("| input | accuracy | " + " | ".join(BUCKETS) + " |\n|---|---|---|---|---|")
    for name, x_tr, x_te in (("MuLan audio embedding", e_tr, e_te),
                             ("raw onset autocorrelation", a_tr, a_te)):
        sc = StandardScaler().fit(x_tr)
        pred = LogisticRegression(max_iter=3000).fit(sc.transform(x_tr), y_tr).predict(
            sc.transform(x_te))
        per = " | ".join(f"{np.mean(pred[y_te == k] == k):.3f}" for k in range(len(BUCKETS)))
        print(f"| {name} | {np.mean(pred == y_te):.3f} | {per} |")


if __name__ == "__main__":
    main()
