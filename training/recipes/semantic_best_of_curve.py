"""Tempo adherence against N for best-of-N on stage S by the tempo reward.

    python training/recipes/semantic_best_of_curve.py BUNDLE [--split valid] [--nmax 32]
        [--ns 1,16,32] [--tempo assets/small/tempo [--tempo OTHER …]] [--json out.json]
        [--plot out.png]

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

With several ``--tempo`` models (e.g. one model, an ensemble, and ``ENSEMBLE@min`` for its
worst-case member) every one chooses among
the *same* candidates, and stage A's randomness is the same for all of them: the curves
differ only by the reward that chose.
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
    ap.add_argument("--ns", default="", help="only these N (comma-separated, each ≤ nmax)")
    ap.add_argument("--tempo", action="append", default=[],
                    help="tempo reward model (repeat to compare several on the same "
                         "candidates; DIR@min: an ensemble's worst-case member; default "
                         "assets/small/tempo)")
    ap.add_argument("--batch", type=int, default=16, help="clips per stage-S call")
    ap.add_argument("--json", default="", help="write the numbers here")
    ap.add_argument("--plot", default="", help="write hit rate against N here (PNG)")
    args = ap.parse_args()
    if args.nmax < 1 or args.nmax & (args.nmax - 1):
        ap.error(f"--nmax {args.nmax}: use a power of two (1, 2, 4, …)")

    import jax
    import jax.numpy as jnp

    from musicrl.data.manifest import load_clips
    from musicrl.pipeline import Pipeline
    from musicrl.sampling import sample_stage
    from rewards.tempo import TempoReward

    ns = [2 ** k for k in range(int(np.log2(args.nmax)) + 1)]
    if args.ns:
        try:
            ns = sorted({int(n) for n in args.ns.split(",")})
        except ValueError:
            ap.error(f"--ns {args.ns!r}: give whole numbers separated by commas")
        if ns[0] < 1 or ns[-1] > args.nmax:
            ap.error(f"--ns {args.ns}: every N must be in 1…--nmax ({args.nmax})")
    tempo_dirs = args.tempo or ["assets/small/tempo"]
    pipe = Pipeline.from_pretrained(args.bundle)
    rewards = [TempoReward(t.split("@")[0], combine=t.split("@")[1] if "@" in t else "mean")
               for t in tempo_dirs]
    clips = [c for c in load_clips(args.root, splits=[args.split])
             if c.captions and c.labels and c.labels.get("drums") and c.labels.get("bpm")]
    prompts = [c.captions[i % len(c.captions)] for i, c in enumerate(clips)]
    bpm = np.array([float(c.labels["bpm"]) for c in clips])
    frames, b, nmax = 250, args.batch, args.nmax
    t0 = time.time()
    scores: list[list[np.ndarray]] = [[] for _ in rewards]
    sems = []
    for i in range(0, len(prompts), b):
        p = prompts[i:i + b]
        mul = pipe.text_tokens(p)
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, nmax, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0]
        rows = [q for q in p for _ in range(nmax)]
        for out, reward in zip(scores, rewards, strict=True):
            out.append(reward(rows, sem).reshape(len(p), nmax))
        sems.append(sem.reshape(len(p), nmax, frames))
    sems = np.concatenate(sems)
    print(f"{len(clips)} {args.split} clips with drums; stage S × {nmax}: "
          f"{time.time() - t0:.0f} s", flush=True)
    cache: dict[tuple, list[float]] = {}
    curves = {t: _curve(np.concatenate(sc), sems, ns, t, clips, prompts, bpm, pipe, b, frames,
                        t0, cache) for t, sc in zip(tempo_dirs, scores, strict=True)}
    res = curves[tempo_dirs[0]]
    out = {"bundle": args.bundle, "split": args.split, "clips": len(clips), "curve": res,
           "curves": curves}
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(out, indent=2) + "\n")
    if args.plot:
        plot_curves(curves, ns, f"{Path(args.bundle).name}, {len(clips)} {args.split} drum "
                    "prompts", args.plot)


def plot_curves(curves: dict[str, dict[str, dict[str, float]]], ns: list[int], title: str,
                path: str) -> None:
    """Beat-tracker hit rate against N, one line per reward, with the first's chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = next(iter(curves.values()))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for t, c in curves.items():
        label = "within 8 %" if len(curves) == 1 else f"by {t}"
        ax.plot(ns, [c[str(n)]["within_8pct"] for n in ns], "o-", label=label)
    ax.plot(ns, [res[str(n)]["chance"] for n in ns], "k--", label="chance")
    ax.plot(ns, [2 * res[str(n)]["chance"] for n in ns], "k:", label="2 × chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (stage-S candidates)")
    ax.set_ylabel("beat tracker within 8 %")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve(scores, sems, ns, label, clips, prompts, bpm, pipe, b, frames, t0, cache):
    """Hit rate of the beat tracker for the best of the first N candidates by ``scores``.
    ``cache`` maps (batch start, chosen candidates) to the batch's estimates: a batch two
    rewards (or two N) choose alike is decoded once — its stage-A key is the same."""
    import jax
    import jax.numpy as jnp

    from musicrl.data.checks import estimate_tempo
    from musicrl.pipeline import _decode_codes
    from musicrl.sampling import sample_stage

    a_cfg = pipe.acoustic.cfg
    res: dict[str, dict[str, float]] = {}
    for n in ns:
        pick = np.nanargmax(np.where(np.isnan(scores[:, :n]), -np.inf, scores[:, :n]), 1)
        sel = sems[np.arange(len(clips)), pick]
        est = []
        for i in range(0, len(clips), b):
            key = (i, tuple(pick[i:i + b].tolist()))
            if key not in cache:
                mul = pipe.text_tokens(prompts[i:i + b])[:, :a_cfg.mulan_levels]
                aco = sample_stage(pipe.acoustic, mul, frames * a_cfg.cond_ratio,
                                   key=jax.random.fold_in(jax.random.key(1), i),
                                   cond_bt=jnp.asarray(sel[i:i + b]), guidance=3.0)
                cache[key] = [float(estimate_tempo(w))
                              for w in np.asarray(_decode_codes(pipe.codec, aco))]
            est += cache[key]
        est = np.array(est)
        hit = np.abs(est / bpm - 1) <= 0.08
        other = ~np.eye(len(clips), dtype=bool)
        chance = float(np.mean((np.abs(est[:, None] / bpm[None, :] - 1) <= 0.08)[other]))
        res[str(n)] = {"within_8pct": float(hit.mean()), "chance": chance,
                       "ratio": float(hit.mean() / chance),
                       "reward_of_chosen": float(np.nanmean(scores[np.arange(len(clips)), pick]))}
        print(f"[{label}] N = {n:3d}: within 8 % {hit.mean():.3f}  chance {chance:.3f}  "
              f"ratio {hit.mean() / chance:.2f}×  reward of the chosen "
              f"{res[str(n)]['reward_of_chosen']:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    return res


if __name__ == "__main__":
    main()
