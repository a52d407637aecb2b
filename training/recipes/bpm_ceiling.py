"""How precisely the generator's conditioning prefix can carry a clip's BPM at all.

    python training/recipes/bpm_ceiling.py [--root data/small] [--mulan assets/small/mulan]
        [--split test] [--json out.json]

Stage S sees a prompt only through its 12 MuLan tokens. This recipe asks how much of the
caption's BPM those tokens keep: the RVQ reconstruction of the tokens (the point in
MuLan's 128-d space that the codebook prefix feeds the stage) → a ridge regression of
log BPM, fitted on the train split and scored, on the ``--split`` clips with drums, as the
fraction within 8 % of the caption's BPM (the measure of ``musicrl eval generate``),
beside the same for always answering the train median and for permutation chance. Rows:

* the tokens of the clip's *audio* embedding (what half of training conditions on);
* the tokens of each caption phrasing's *text* embedding (what inference conditions on);

and, for comparison, the mode (major/minor) by logistic regression. A linear read-out is
a lower bound on what the embedding holds, but a generator that keys its tempo on the
prefix cannot be expected to beat it by much: it bounds tempo adherence from above.
Uses the token caches written by ``musicrl train lm`` (``<root>/tokens/mulan-*.npz``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression, RidgeCV

    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.estimators import tempo_scores
    from musicrl.evaluation.generation import _tempo_hit, permutation_chance
    from musicrl.lm.data import corpus_mulan_text_tokens, corpus_mulan_tokens
    from musicrl.mulan import load_mulan

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--mulan", default="assets/small/mulan")
    ap.add_argument("--split", default="test", choices=("valid", "test"))
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    root = Path(args.root)
    clips = {sp: [c for c in load_clips(root, [sp]) if c.labels]
             for sp in ("train", args.split)}
    if len(clips["train"]) < 50 or not clips[args.split]:
        raise SystemExit(f"{root}: need a built corpus with train and {args.split} clips "
                         "(`musicrl data build`)")
    ids = sorted(c.id for cs in clips.values() for c in cs)
    tok_dir = root / "tokens"
    audio = corpus_mulan_tokens(root, ids, args.mulan, tok_dir)
    text = corpus_mulan_text_tokens(root, ids, args.mulan, tok_dir)   # {id: [phrasings, m]}
    model, _ = load_mulan(args.mulan)

    def emb(tokens_bm) -> np.ndarray:
        """The RVQ reconstructions [b, e] of token rows [b, m]."""
        return np.asarray(model.embeddings_for_tokens(jnp.asarray(np.stack(tokens_bm))),
                          np.float32)

    tr, te = clips["train"], clips[args.split]
    y_tr = np.log([c.labels["bpm"] for c in tr])
    drums = np.array([bool(c.labels.get("drums")) for c in te])
    bpm = np.array([float(c.labels["bpm"]) for c in te])[drums]
    n_phr = min(np.asarray(text[c.id]).shape[0] for c in tr + te)
    x_audio = {sp: emb([audio[c.id] for c in cs]) for sp, cs in clips.items()}
    x_text = {sp: [emb([np.asarray(text[c.id])[k] for c in cs]) for k in range(n_phr)]
              for sp, cs in clips.items()}

    const = np.full(len(bpm), float(np.exp(np.median(y_tr))))
    out: dict = {"split": args.split, "clips_with_drums": int(drums.sum()),
                 "train_median_bpm": float(const[0]),
                 "median_within_8pct": tempo_scores(const, bpm)["within_8pct"], "rows": {}}

    def row(name: str, x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray) -> None:
        reg = RidgeCV(alphas=np.logspace(-3, 2, 12)).fit(x_fit, y_fit)
        est = np.exp(reg.predict(x_eval))[drums]
        acc = tempo_scores(est, bpm)["within_8pct"]
        ch = permutation_chance(est, bpm, _tempo_hit)
        out["rows"][name] = {"within_8pct": acc, "permutation_chance": ch}

    row("audio-embedding tokens", x_audio["train"], y_tr, x_audio[args.split])
    x_fit = np.concatenate(x_text["train"])
    y_fit = np.tile(y_tr, n_phr)
    for k in range(n_phr):
        row(f"caption text tokens, phrasing {k}", x_fit, y_fit, x_text[args.split][k])
    mode_tr = [c.labels["mode"] for c in tr]
    mode_te = np.array([c.labels["mode"] for c in te])
    out["mode"] = {"majority": float(max(np.mean(mode_te == m) for m in set(mode_tr)))}
    for name, xf, yf, xe in (("audio-embedding tokens", x_audio["train"], mode_tr,
                              x_audio[args.split]),
                             ("caption text tokens (all phrasings)", x_fit, mode_tr * n_phr,
                              np.concatenate(x_text[args.split]))):
        clf = LogisticRegression(max_iter=3000).fit(xf, yf)
        truth = np.tile(mode_te, len(xe) // len(mode_te))
        out["mode"][name] = float(np.mean(clf.predict(xe) == truth))

    print(f"\nBPM read linearly from the MuLan prefix (RVQ reconstruction), {args.split} clips "
          f"with drums (n = {drums.sum()}); always the train median ({const[0]:.0f} bpm): "
          f"{out['median_within_8pct']:.3f}")
    print("| prefix | within 8 % | permutation chance | ratio |\n|---|---|---|---|")
    for name, r in out["rows"].items():
        print(f"| {name} | {r['within_8pct']:.3f} | {r['permutation_chance']:.3f} | "
              f"{r['within_8pct'] / max(r['permutation_chance'], 1e-9):.2f}× |")
    print(f"\nmode by logistic regression (majority {out['mode']['majority']:.3f}): " + ", ".join(
        f"{k} {v:.3f}" for k, v in out["mode"].items() if k != "majority"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
