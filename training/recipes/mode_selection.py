"""Can stage-S selection carry the prompt's mode? A probe of major/minor on semantic tokens.

    python training/recipes/mode_selection.py BUNDLE [--root data/small] [--split valid]
        [--n 8] [--json out.json]

Mode is at chance in every generated report (0.97–1.08×): MuLan's audio tower keeps no
mode, so no conditioning path carries it. This asks whether selection can, as it did for
tempo. A logistic regression on the bag of semantic tokens (normalized histogram over the
first 10 s, fitted on the train split's real tokens and their mode labels) is the reward;
for each caption of the split that names a mode (major/minor or a mood word of the
captions: "bright", "melancholic", …), ``n`` stage-S candidates at γ = 3 are scored by the
probe's probability of the caption's mode and the best goes through stage A and the
codec; the chroma-template key estimator of the evaluation (which the probe never saw)
reads the mode of the audio. Printed beside N = 1 (the first candidate, the same stage-A
randomness) and permutation chance (estimates against the other clips' labels).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from musicrl.data.captioning import MOOD_WORDS

# a mode is named by itself ("minor") or by the captions' mood words for it ("melancholic")
_RES = {m: re.compile(r"\b(" + "|".join((m, *ws)) + r")\b", re.IGNORECASE)
        for m, ws in MOOD_WORDS.items()}


def prompt_mode(prompt: str) -> str | None:
    """The mode a prompt names by its words, or None (none, or both)."""
    found = [m for m, r in _RES.items() if r.search(prompt)]
    return found[0] if len(found) == 1 else None


def bag(tokens_s: np.ndarray, vocab: int, frames: int = 250) -> np.ndarray:
    return np.bincount(np.asarray(tokens_s[:frames]), minlength=vocab) / min(len(tokens_s),
                                                                            frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--n", type=int, default=8, help="stage-S candidates per caption")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.n < 2:
        ap.error("--n must be at least 2")

    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LogisticRegression

    from musicrl.data.manifest import load_clips
    from musicrl.data.tokens import load_tokens
    from musicrl.evaluation.estimators import key_from_chroma, mean_chroma
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage

    t0 = time.time()
    pipe = Pipeline.from_pretrained(args.bundle)
    vocab = pipe.semantic.cfg.vocab
    tok_dir = Path(args.root) / "tokens"

    def real(split):
        toks = load_tokens(tok_dir, split=split)
        clips = [c for c in load_clips(args.root, splits=[split])
                 if c.id in toks and c.labels and c.labels.get("mode")]
        return (np.stack([bag(toks[c.id][0], vocab) for c in clips]),
                np.array([c.labels["mode"] == "minor" for c in clips]), clips)

    x_tr, y_tr, _ = real("train")
    x_ev, y_ev, _ = real(args.split)
    probe = LogisticRegression(C=10.0, max_iter=5000).fit(x_tr, y_tr)
    acc_real = float(np.mean(probe.predict(x_ev) == y_ev))
    majority = float(max(y_ev.mean(), 1 - y_ev.mean()))
    print(f"probe on real {args.split} tokens: {acc_real:.3f} (majority {majority:.3f})",
          flush=True)

    clips = [c for c in load_clips(args.root, splits=[args.split])
             if c.captions and c.labels and c.labels.get("mode")]
    rows = []
    for i, c in enumerate(clips):
        cap = c.captions[i % len(c.captions)]
        m = prompt_mode(cap)
        if m is not None:
            rows.append((cap, m, c.labels["mode"]))
    prompts = [r[0] for r in rows]
    want = np.array([r[1] == "minor" for r in rows])
    label = np.array([r[2] for r in rows])
    print(f"{len(rows)} of {len(clips)} {args.split} captions name a mode; the caption's "
          f"mode is the label's in {np.mean([r[1] == r[2] for r in rows]):.3f}", flush=True)
    frames, b, n = 250, args.batch, args.n
    a_cfg = pipe.acoustic.cfg
    scores, sems = [], []
    for i in range(0, len(prompts), b):
        mul = pipe.text_tokens(prompts[i:i + b])
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, n, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0]
        p_minor = probe.predict_proba(np.stack([bag(s, vocab) for s in sem]))[:, 1]
        w = np.repeat(want[i:i + b], n)
        scores.append(np.where(w, p_minor, 1 - p_minor).reshape(-1, n))
        sems.append(sem.reshape(-1, n, frames))
    scores, sems = np.concatenate(scores), np.concatenate(sems)
    print(f"stage S × {n}: {time.time() - t0:.0f} s", flush=True)
    res = {}
    for name, pick in (("first", np.zeros(len(rows), int)), (f"best of {n}",
                                                             np.argmax(scores, 1))):
        sel = sems[np.arange(len(rows)), pick]
        est = []
        for i in range(0, len(rows), b):
            mul = pipe.text_tokens(prompts[i:i + b])[:, :a_cfg.mulan_levels]
            aco = sample_stage(pipe.acoustic, mul, frames * a_cfg.cond_ratio,
                               key=jax.random.fold_in(jax.random.key(1), i),
                               cond_bt=jnp.asarray(sel[i:i + b]), guidance=3.0)
            est += [key_from_chroma(mean_chroma(w))[1]
                    for w in np.asarray(_decode_codes(pipe.codec, aco))]
        est = np.array(est)
        acc = float(np.mean(est == label))
        other = ~np.eye(len(rows), dtype=bool)
        chance = float(np.mean((est[:, None] == label[None, :])[other]))
        res[name] = {"mode_acc": acc, "chance": chance, "ratio": acc / chance,
                     "probe_of_chosen": float(np.mean(scores[np.arange(len(rows)), pick])),
                     "estimated_minor": float(np.mean(est == "minor"))}
        print(f"{name:>10}: mode {acc:.3f}  chance {chance:.3f}  ratio {acc / chance:.2f}×  "
              f"probe of the chosen {res[name]['probe_of_chosen']:.3f}  estimated minor "
              f"{res[name]['estimated_minor']:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"bundle": args.bundle, "split": args.split, "probe_real": acc_real,
             "majority": majority, "prompts": len(rows), "n": n, "result": res}, indent=2))


if __name__ == "__main__":
    main()
