"""Tempo adherence against N for best-of-N on stage S by the tempo reward.

    python training/recipes/semantic_best_of_curve.py BUNDLE [--split valid] [--nmax 32]
        [--tempo assets/small/tempo] [--json out.json] [--plot out.png]

On the clips *with drums* of a split (where the beat tracker is trustworthy), each caption
(phrasings rotating, as ``musicrl eval generate`` does) gets ``nmax`` stage-S candidates of
10 s at γ = 3 in one batch, scored by the tempo reward on their tokens. For every N in 1, 2,
4, … ``nmax`` the best of the *first* N candidates goes through stage A (γ = 3) and the
codec, and librosa's beat tracker (the evaluation's estimator, which the reward never saw)
reads its tempo: within 8 % of the caption's BPM, beside permutation chance (the same
estimates against the other clips' BPMs). The candidates are nested, so the curve isolates
the effect of N; stage A's randomness is the same at every N. Prints one line per N and
writes the numbers (and, with ``--plot``, hit rate against N) — choose N on valid, then
measure it on test with ``musicrl eval generate --semantic-best-of N``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--nmax", type=int, default=32, help="largest N (a power of two)")
    ap.add_argument("--tempo", default="assets/small/tempo", help="tempo reward model")
    ap.add_argument("--batch", type=int, default=16, help="clips per stage-S call")
    ap.add_argument("--json", default="", help="write the numbers here")
    ap.add_argument("--plot", default="", help="write hit rate against N here (PNG)")
    args = ap.parse_args()
    if args.nmax < 1 or args.nmax & (args.nmax - 1):
        ap.error(f"--nmax {args.nmax}: use a power of two (1, 2, 4, …)")

    import jax
    import jax.numpy as jnp

    from musicrl.data.checks import estimate_tempo
    from musicrl.data.manifest import load_clips
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage
    from rewards.tempo import TempoReward

    ns = [2 ** k for k in range(int(np.log2(args.nmax)) + 1)]
    pipe = Pipeline.from_pretrained(args.bundle)
    reward = TempoReward(args.tempo)
    clips = [c for c in load_clips(args.root, splits=[args.split])
             if c.captions and c.labels and c.labels.get("drums") and c.labels.get("bpm")]
    prompts = [c.captions[i % len(c.captions)] for i, c in enumerate(clips)]
    bpm = np.array([float(c.labels["bpm"]) for c in clips])
    frames, b, nmax = 250, args.batch, args.nmax
    a_cfg = pipe.acoustic.cfg
    t0 = time.time()
    scores, sems = [], []
    for i in range(0, len(prompts), b):
        p = prompts[i:i + b]
        mul = pipe.text_tokens(p)
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, nmax, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0]
        scores.append(reward([q for q in p for _ in range(nmax)], sem).reshape(len(p), nmax))
        sems.append(sem.reshape(len(p), nmax, frames))
    scores, sems = np.concatenate(scores), np.concatenate(sems)
    print(f"{len(clips)} {args.split} clips with drums; stage S × {nmax}: "
          f"{time.time() - t0:.0f} s", flush=True)
    res: dict[str, dict[str, float]] = {}
    for n in ns:
        pick = np.nanargmax(np.where(np.isnan(scores[:, :n]), -np.inf, scores[:, :n]), 1)
        sel = sems[np.arange(len(clips)), pick]
        est = []
        for i in range(0, len(clips), b):
            mul = pipe.text_tokens(prompts[i:i + b])[:, :a_cfg.mulan_levels]
            aco = sample_stage(pipe.acoustic, mul, frames * a_cfg.cond_ratio,
                               key=jax.random.fold_in(jax.random.key(1), i),
                               cond_bt=jnp.asarray(sel[i:i + b]), guidance=3.0)
            est += [float(estimate_tempo(w)) for w in np.asarray(_decode_codes(pipe.codec, aco))]
        est = np.array(est)
        hit = np.abs(est / bpm - 1) <= 0.08
        other = ~np.eye(len(clips), dtype=bool)
        chance = float(np.mean((np.abs(est[:, None] / bpm[None, :] - 1) <= 0.08)[other]))
        res[str(n)] = {"within_8pct": float(hit.mean()), "chance": chance,
                       "ratio": float(hit.mean() / chance),
                       "reward_of_chosen": float(np.nanmean(scores[np.arange(len(clips)), pick]))}
        print(f"N = {n:3d}: within 8 % {hit.mean():.3f}  chance {chance:.3f}  "
              f"ratio {hit.mean() / chance:.2f}×  reward of the chosen "
              f"{res[str(n)]['reward_of_chosen']:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    out = {"bundle": args.bundle, "split": args.split, "clips": len(clips), "curve": res}
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(out, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(ns, [res[str(n)]["within_8pct"] for n in ns], "o-", label="within 8 %")
        ax.plot(ns, [res[str(n)]["chance"] for n in ns], "k--", label="chance")
        ax.plot(ns, [2 * res[str(n)]["chance"] for n in ns], "k:", label="2 × chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (stage-S candidates)")
        ax.set_ylabel("beat tracker within 8 %")
        ax.set_title(f"{Path(args.bundle).name}, {len(clips)} {args.split} drum prompts")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
