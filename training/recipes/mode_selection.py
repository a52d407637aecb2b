"""Can stage-S selection carry the prompt's mode? A probe of major/minor on semantic tokens.

    python training/recipes/mode_selection.py BUNDLE [--root data/small] [--split valid]
        [--ns 8,16] [--model DIR[@min] ...] [--json out.json] [--plot out.png]

Mode is at chance in every generated report (0.97–1.08×): MuLan's audio tower keeps no
mode, so no conditioning path carries it. This asks whether selection can, as it did for
tempo. A logistic regression on the bag of semantic tokens (normalized histogram over the
first 10 s, fitted on the train split's real tokens and their mode labels) is one reward,
each ``--model`` (``musicrl train mode``, :mod:`rewards.mode`) another;
for each caption of the split that names a mode (major/minor or a mood word of the
captions: "bright", "melancholic", …), the largest N of ``--ns`` stage-S candidates at
γ = 3 are sampled once; each reward picks, among the first N, the one most surely in the
caption's mode, and the pick goes through stage A (the same randomness for every reward and
N; a selection two rewards agree on is decoded once) and the codec; the chroma-template
key estimator of the evaluation (which no reward saw) reads the mode of the audio. Printed beside N = 1 (the first candidate, the same stage-A
randomness) and permutation chance (estimates against the other clips' labels).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rewards.mode import mode_from_prompt


def bag(tokens_s: np.ndarray, vocab: int, frames: int = 250) -> np.ndarray:
    return np.bincount(np.asarray(tokens_s[:frames]), minlength=vocab) / min(len(tokens_s),
                                                                            frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--ns", default="8", help="stage-S candidates per caption to compare, "
                    "comma-separated (N = 1, the first candidate, is always shown)")
    ap.add_argument("--model", action="append", default=[], metavar="DIR[@min]",
                    help="a mode reward model (musicrl train mode) to select by beside the probe; "
                         "DIR@min scores an ensemble by its least sure member; repeatable")
    ap.add_argument("--no-probe", action="store_true",
                    help="select by the --model rewards only (the probe's decodes cost time)")
    ap.add_argument("--ceiling", type=float, default=None,
                    help="a reference ratio to draw in the plot (mode_chain.py's stage A link)")
    ap.add_argument("--plot", default="", help="PNG of agreement/chance against N")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    try:
        if min(int(x) for x in args.ns.split(",")) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--ns {args.ns!r}: whole numbers ≥ 1, comma-separated")
    if args.no_probe and not args.model:
        ap.error("--no-probe leaves nothing to select by: give --model DIR")

    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LogisticRegression

    from musicrl.data.manifest import load_clips
    from musicrl.data.tokens import load_tokens
    from musicrl.evaluation.estimators import key_from_chroma, mean_chroma
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage
    from rewards.mode import MODES, ModeReward

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
        m = mode_from_prompt(cap)
        if m is not None:
            rows.append((cap, m, c.labels["mode"]))
    prompts = [r[0] for r in rows]
    want = np.array([r[1] == "minor" for r in rows])
    label = np.array([r[2] for r in rows])
    print(f"{len(rows)} of {len(clips)} {args.split} captions name a mode; the caption's "
          f"mode is the label's in {np.mean([r[1] == r[2] for r in rows]):.3f}", flush=True)
    frames, b = 250, args.batch
    ns = sorted({1, *(int(x) for x in args.ns.split(","))})
    n = ns[-1]
    a_cfg = pipe.acoustic.cfg

    def probe_score(sem: np.ndarray, minor: np.ndarray) -> np.ndarray:
        p = probe.predict_proba(np.stack([bag(s, vocab) for s in sem]))[:, 1]
        return np.where(minor, p, 1 - p)

    def model_score(reward: ModeReward):
        return lambda sem, minor: reward([MODES[int(x)] for x in minor], sem)

    scorers = {} if args.no_probe else {"bag-of-tokens probe": probe_score}
    for spec in args.model:
        folder, _, combine = spec.partition("@")
        scorers[spec] = model_score(ModeReward(folder, combine=combine or "mean"))
    scores = {k: [] for k in scorers}
    sems = []
    for i in range(0, len(prompts), b):
        mul = pipe.text_tokens(prompts[i:i + b])
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, n, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0]
        w = np.repeat(want[i:i + b], n)
        for k, fn in scorers.items():
            scores[k].append(np.asarray(fn(sem, w), np.float64).reshape(-1, n))
        sems.append(sem.reshape(-1, n, frames))
    scores = {k: np.concatenate(v) for k, v in scores.items()}
    sems = np.concatenate(sems)
    print(f"stage S × {n}: {time.time() - t0:.0f} s", flush=True)
    decoded: dict[bytes, np.ndarray] = {}

    def judge(pick: np.ndarray) -> np.ndarray:
        if pick.tobytes() not in decoded:
            sel = sems[np.arange(len(rows)), pick]
            est = []
            for i in range(0, len(rows), b):
                mul = pipe.text_tokens(prompts[i:i + b])[:, :a_cfg.mulan_levels]
                aco = sample_stage(pipe.acoustic, mul, frames * a_cfg.cond_ratio,
                                   key=jax.random.fold_in(jax.random.key(1), i),
                                   cond_bt=jnp.asarray(sel[i:i + b]), guidance=3.0)
                est += [key_from_chroma(mean_chroma(w))[1]
                        for w in np.asarray(_decode_codes(pipe.codec, aco))]
            decoded[pick.tobytes()] = np.array(est)
        return decoded[pick.tobytes()]

    res: dict[str, dict[str, dict[str, float]]] = {}
    other = ~np.eye(len(rows), dtype=bool)
    for name, sc in scores.items():
        res[name] = {}
        for k in ns:
            pick = np.argmax(sc[:, :k], 1) if k > 1 else np.zeros(len(rows), int)
            est = judge(pick)
            acc = float(np.mean(est == label))
            chance = float(np.mean((est[:, None] == label[None, :])[other]))
            res[name][str(k)] = {
                "mode_acc": acc, "chance": chance, "ratio": acc / chance,
                "reward_of_chosen": float(np.mean(sc[np.arange(len(rows)), pick])),
                "estimated_minor": float(np.mean(est == "minor"))}
            print(f"{name:>28} N={k:<3}: mode {acc:.3f}  chance {chance:.3f}  ratio "
                  f"{acc / chance:.2f}×  reward of the chosen "
                  f"{res[name][str(k)]['reward_of_chosen']:.3f}  estimated minor "
                  f"{res[name][str(k)]['estimated_minor']:.2f}  ({time.time() - t0:.0f} s)",
                  flush=True)
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"bundle": args.bundle, "split": args.split, "probe_real": acc_real,
             "majority": majority, "prompts": len(rows), "ns": ns, "result": res}, indent=2))
    if args.plot:
        plot_curves(res, ns, args.plot, f"mode by stage-S selection ({args.split}, "
                                         f"{len(rows)} captions that name a mode)",
                    ceiling=args.ceiling)


def plot_curves(res: dict, ns: list[int], path: str, title: str,
                ceiling: float | None = None, xlabel: str = "stage-S candidates N") -> None:
    """Agreement / chance against N for each reward; ``ceiling``: a reference ratio (e.g.
    stage A's rendering of real semantic tokens, ``mode_chain.py``) drawn dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, by_n in res.items():
        ax.plot(ns, [by_n[str(k)]["ratio"] for k in ns], "o-", label=name)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="chance")
    if ceiling is not None:
        ax.axhline(ceiling, color="C3", lw=1.0, ls=":",
                   label="stage A from real semantic tokens (mode_chain.py)")
    ax.set(xscale="log", xticks=ns, xticklabels=[str(k) for k in ns], xlabel=xlabel,
           ylabel="mode agreement / chance (chroma estimator)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
